//! One iterative Kademlia lookup: the candidates met so far, ordered by distance to the target, and which of
//! them were asked, answered or stayed silent.
//!
//! The lookup asks the closest candidates not asked yet, keeping at most α queries in flight; every answer
//! adds the nodes it names. It ends when the `k` closest candidates that did not fail have all answered and
//! nothing is in flight, or when its query budget is spent. The hop count of a candidate is one more than the
//! hop of the node that named it (the first nodes asked are hop 1); the lookup's hop count is that of the
//! closest node that answered.

use super::id::{Distance, NodeId};
use super::krpc::{NodeInfo, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// Find the nodes closest to an id (`find_node`).
    FindNode,
    /// Find peers of a torrent (`get_peers`), then announce ourselves on `announce_port` to the closest
    /// nodes, if set.
    GetPeers {
        /// Our peer port to announce, or `None` to only look.
        announce_port: Option<u16>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    info: NodeInfo,
    hop: u32,
    state: State,
    token: Option<Vec<u8>>,
}

/// A query the lookup wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The node to ask, if its id is known (bootstrap addresses have none).
    pub id: Option<NodeId>,
    /// Where it is.
    pub addr: SocketAddr,
    /// Its hop number.
    pub hop: u32,
}

/// The state of one lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: NodeId,
    kind: LookupKind,
    candidates: BTreeMap<Distance, Candidate>,
    unnamed: Vec<SocketAddr>,
    unnamed_in_flight: usize,
    in_flight: usize,
    queries: u32,
    failures: u32,
    peers: BTreeSet<SocketAddr>,
}

impl Lookup {
    /// A lookup for `target` starting from `known` nodes (from our table) and `bootstrap` addresses.
    pub fn new(
        target: NodeId,
        kind: LookupKind,
        known: &[NodeInfo],
        bootstrap: &[SocketAddr],
    ) -> Lookup {
        let mut l = Lookup {
            target,
            kind,
            candidates: BTreeMap::new(),
            unnamed: bootstrap.to_vec(),
            unnamed_in_flight: 0,
            in_flight: 0,
            queries: 0,
            failures: 0,
            peers: BTreeSet::new(),
        };
        for info in known {
            l.offer(*info, 1);
        }
        l
    }

    /// The id looked for.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// What the lookup is for.
    pub fn kind(&self) -> LookupKind {
        self.kind
    }

    fn offer(&mut self, info: NodeInfo, hop: u32) {
        self.candidates
            .entry(info.id.distance(&self.target))
            .or_insert(Candidate {
                info,
                hop,
                state: State::Waiting,
                token: None,
            });
    }

    /// The next queries to send: the closest waiting candidates among the `k` closest live ones, while
    /// fewer than `alpha` are in flight and fewer than `budget` were sent. They count as in flight.
    pub fn next_asks(&mut self, alpha: usize, k: usize, budget: u32) -> Vec<Ask> {
        let mut asks = Vec::new();
        while self.in_flight < alpha && self.queries < budget {
            if let Some(addr) = self.unnamed.pop() {
                self.unnamed_in_flight += 1;
                self.in_flight += 1;
                self.queries += 1;
                asks.push(Ask {
                    id: None,
                    addr,
                    hop: 1,
                });
                continue;
            }
            let next = self
                .candidates
                .values_mut()
                .filter(|c| c.state != State::Failed)
                .take(k)
                .find(|c| c.state == State::Waiting);
            let Some(c) = next else { break };
            c.state = State::InFlight;
            self.in_flight += 1;
            self.queries += 1;
            asks.push(Ask {
                id: Some(c.info.id),
                addr: c.info.addr,
                hop: c.hop,
            });
        }
        asks
    }

    fn settle(&mut self, id: Option<NodeId>) -> Option<&mut Candidate> {
        match id {
            None => {
                self.unnamed_in_flight = self.unnamed_in_flight.saturating_sub(1);
                self.in_flight = self.in_flight.saturating_sub(1);
                None
            }
            Some(id) => {
                let c = self.candidates.get_mut(&id.distance(&self.target))?;
                if c.state != State::InFlight {
                    return None;
                }
                self.in_flight = self.in_flight.saturating_sub(1);
                Some(c)
            }
        }
    }

    /// An answer from the node asked as `asked` (its id, or `None` for a bootstrap address).
    pub fn answered(&mut self, asked: Ask, from: NodeInfo, response: &Response) {
        let hop = asked.hop;
        match self.settle(asked.id) {
            Some(c) => {
                c.state = State::Answered;
                c.token.clone_from(&response.token);
            }
            None if asked.id.is_none() => {
                // A bootstrap node: now that its id is known it is a candidate like the others.
                self.candidates
                    .entry(from.id.distance(&self.target))
                    .or_insert(Candidate {
                        info: from,
                        hop,
                        state: State::Answered,
                        token: response.token.clone(),
                    });
            }
            None => return,
        }
        for info in &response.nodes {
            self.offer(*info, hop + 1);
        }
        self.peers.extend(response.values.iter().copied());
    }

    /// The node asked as `asked` did not answer (or answered with an error).
    pub fn failed(&mut self, asked: Ask) {
        self.failures += 1;
        if let Some(c) = self.settle(asked.id) {
            c.state = State::Failed;
        }
    }

    /// Whether the lookup is over (see the module documentation).
    pub fn is_done(&self, k: usize, budget: u32) -> bool {
        if self.in_flight > 0 {
            return false;
        }
        if self.queries >= budget {
            return true;
        }
        self.unnamed.is_empty()
            && !self
                .candidates
                .values()
                .filter(|c| c.state != State::Failed)
                .take(k)
                .any(|c| c.state == State::Waiting)
    }

    /// The `k` closest nodes that answered, closest first, with the token each gave.
    pub fn closest_answered(&self, k: usize) -> Vec<(NodeInfo, Option<Vec<u8>>)> {
        self.candidates
            .values()
            .filter(|c| c.state == State::Answered)
            .take(k)
            .map(|c| (c.info, c.token.clone()))
            .collect()
    }

    /// Hop count: the hop of the closest node that answered (0 if none did).
    pub fn hops(&self) -> u32 {
        self.candidates
            .values()
            .find(|c| c.state == State::Answered)
            .map_or(0, |c| c.hop)
    }

    /// Queries sent so far.
    pub fn queries(&self) -> u32 {
        self.queries
    }

    /// Queries that went unanswered so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Queries in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Peers found so far (`get_peers`).
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(b: u8) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = b;
        NodeInfo {
            id: NodeId(id),
            addr: SocketAddr::from(([10, 0, 0, b], 1)),
        }
    }

    #[test]
    fn keeps_alpha_in_flight_and_converges_on_the_closest() {
        let known: Vec<NodeInfo> = (10..20).map(n).collect();
        let mut l = Lookup::new(n(0).id, LookupKind::FindNode, &known, &[]);
        let asks = l.next_asks(3, 4, 100);
        assert_eq!(asks.len(), 3);
        assert_eq!(asks[0].addr, n(10).addr, "closest first");
        assert!(l.next_asks(3, 4, 100).is_empty(), "alpha reached");
        // The first answer names two closer nodes: they are asked next, at hop 2.
        let resp = Response {
            id: n(10).id,
            nodes: vec![n(1), n(2)],
            ..Default::default()
        };
        l.answered(asks[0], n(10), &resp);
        l.failed(asks[1]);
        let next = l.next_asks(3, 4, 100);
        assert_eq!(
            next.iter().map(|a| a.addr).collect::<Vec<_>>(),
            vec![n(1).addr, n(2).addr]
        );
        assert!(next.iter().all(|a| a.hop == 2));
        for (ask, b) in next.iter().zip([1u8, 2]) {
            l.answered(*ask, n(b), &Response::default());
        }
        l.answered(asks[2], n(12), &Response::default());
        // Closest live four: 1, 2, 10, 12 all answered (11 failed): asking 13 is not needed.
        assert!(l.next_asks(3, 4, 100).is_empty());
        assert!(l.is_done(4, 100));
        assert_eq!(l.hops(), 2);
        assert_eq!(l.failures(), 1);
        let closest: Vec<_> = l.closest_answered(4).into_iter().map(|(i, _)| i).collect();
        assert_eq!(closest, vec![n(1), n(2), n(10), n(12)]);
    }

    #[test]
    fn bootstrap_addresses_are_asked_and_learned() {
        let boot = n(50).addr;
        let mut l = Lookup::new(n(0).id, LookupKind::FindNode, &[], &[boot]);
        let asks = l.next_asks(3, 8, 100);
        assert_eq!(
            asks,
            vec![Ask {
                id: None,
                addr: boot,
                hop: 1
            }]
        );
        assert!(!l.is_done(8, 100));
        let resp = Response {
            id: n(50).id,
            nodes: vec![n(5)],
            values: vec!["1.1.1.1:1".parse().unwrap()],
            token: Some(b"t".to_vec()),
        };
        l.answered(asks[0], n(50), &resp);
        assert_eq!(l.peers(), vec!["1.1.1.1:1".parse::<SocketAddr>().unwrap()]);
        assert_eq!(l.closest_answered(8), vec![(n(50), Some(b"t".to_vec()))]);
        assert_eq!(l.next_asks(3, 8, 100)[0].addr, n(5).addr);
        assert!(l.next_asks(3, 8, 1).is_empty(), "budget spent");
    }
}
