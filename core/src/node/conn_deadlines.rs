//! Every connection's next timer deadline, kept in order of time, so that [`super::Node::poll_timeout`] (asked
//! after every input) reads the earliest instead of walking every connection's timer table: in a thousand-peer
//! swarm that walk was a tenth of the node's time.
//!
//! The deadline of a connection is a function of its phase, `opened`, `last_recv` and `last_sent`
//! ([`super::conn::Conn::timers`]), and the timer table stays its one source. The index keeps, for every
//! connection, an instant *at or before* its deadline: most changes (a byte received or sent) only push a
//! deadline later, and updating the index for each of them cost as much as the walk it replaces. So:
//! - code that may move a deadline *earlier* (a connection added or opened, a time set from a driver's clock
//!   that went back) marks the connection ([`ConnDeadlines::mark`]), and the end of every node call
//!   ([`ConnDeadlines::refresh`]) lowers the marked entries that are now too late;
//! - the same refresh then works the first entry out again until it is exact. Every other entry is at or
//!   before its own deadline, so an exact first entry is the earliest deadline of all.

use super::conn::Conn;
use super::{ConnId, NodeConfig};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// The index of connections' next deadlines.
#[derive(Debug, Default)]
pub(crate) struct ConnDeadlines {
    /// Each indexed connection's entry: at or before its deadline, and exact for the first in `by_time`.
    at: BTreeMap<ConnId, Instant>,
    by_time: BTreeSet<(Instant, ConnId)>,
    /// Connections whose deadline may have moved earlier since the last refresh (repeats allowed).
    marked: Vec<ConnId>,
}

impl ConnDeadlines {
    /// Connection `id` was added or opened, or one of its times may have gone back.
    pub fn mark(&mut self, id: ConnId) {
        self.marked.push(id);
    }

    /// Bring the index up to date with `conns`: marked entries lowered where needed, then the first entry
    /// made exact (a connection no longer in `conns` leaves the index when its entry comes first).
    pub fn refresh(&mut self, conns: &BTreeMap<ConnId, Conn>, config: &NodeConfig) {
        for id in std::mem::take(&mut self.marked) {
            let Some(next) = conns.get(&id).and_then(|c| c.next_deadline(config)) else {
                continue;
            };
            if self.at.get(&id).is_none_or(|old| next < *old) {
                self.set(id, Some(next));
            }
        }
        while let Some(&(first, id)) = self.by_time.first() {
            let next = conns.get(&id).and_then(|c| c.next_deadline(config));
            if next == Some(first) {
                break;
            }
            self.set(id, next);
        }
    }

    fn set(&mut self, id: ConnId, next: Option<Instant>) {
        let old = match next {
            Some(at) => self.at.insert(id, at),
            None => self.at.remove(&id),
        };
        if let Some(old) = old {
            self.by_time.remove(&(old, id));
        }
        if let Some(at) = next {
            self.by_time.insert((at, id));
        }
    }

    /// The earliest deadline of any connection, as of the last refresh.
    pub fn earliest(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Connections whose entry is at or before `now` (a superset of those with a timer due), in id order.
    pub fn due(&self, now: Instant) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self
            .by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::conn::ConnPhase;
    use std::net::SocketAddr;

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    #[test]
    fn the_first_entry_is_always_the_earliest_deadline() {
        let config = NodeConfig::default();
        let hs = config.handshake_timeout;
        let addr = SocketAddr::from(([10, 0, 0, 2], 6881));
        let mut conns = BTreeMap::new();
        conns.insert(1, Conn::new(addr, true, None, at(0)));
        conns.insert(2, Conn::new(addr, true, None, at(5)));
        let mut index = ConnDeadlines::default();
        index.mark(2);
        index.mark(1);
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), Some(at(0) + hs));
        assert_eq!(index.due(at(0) + hs), vec![1]);
        assert_eq!(index.due(at(5) + hs), vec![1, 2]);

        // Connection 1 opens and hears from its peer: its deadline moves later. The index finds out when its
        // entry comes first, at the next refresh, marked or not.
        let c = conns.get_mut(&1).unwrap();
        c.phase = ConnPhase::Open;
        c.last_recv = at(100);
        c.last_sent = at(100);
        assert_eq!(index.earliest(), Some(at(0) + hs));
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), Some(at(5) + hs));
        assert_eq!(index.due(at(5) + hs), vec![2]);

        // A connection removed leaves the index.
        conns.remove(&2);
        index.refresh(&conns, &config);
        let open = conns[&1].next_deadline(&config);
        assert!(open > Some(at(100)));
        assert_eq!(index.earliest(), open);
        assert!(index.due(at(99)).is_empty());

        // A deadline that moves earlier (a driver's clock went back) is taken when marked.
        let c = conns.get_mut(&1).unwrap();
        c.last_recv = at(50);
        c.last_sent = at(50);
        index.mark(1);
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), conns[&1].next_deadline(&config));
        assert!(index.earliest() < open);
    }
}
