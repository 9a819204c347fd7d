//! The DHT node: a sans-IO state machine answering KRPC queries and running iterative lookups.
//!
//! Drivers hand it datagrams ([`DhtNode::handle_input`]), call [`DhtNode::handle_timeout`] when
//! [`DhtNode::poll_timeout`] is reached, and drain [`DhtNode::poll_output`] after each call: datagrams to
//! send and events (a lookup's result, an evicted node, the KRPC trace). Every deadline lives in one
//! [`TimerTable`]; every random choice comes from the seeded RNG of [`DhtConfig::seed`].

use super::id::NodeId;
use super::krpc::{self, Body, Message, NodeInfo, Query, Response};
use super::lookup::{Ask, Lookup, LookupKind};
use super::store::{PeerStore, StoreLimits};
use super::table::{Heard, RoutingTable};
use super::timers::TimerTable;
use super::tokens::Tokens;
use crate::metainfo::InfoHash;
use crate::time::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// Tunables of a DHT node; the defaults follow BEP 5 and common practice.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Our node id; drawn from the RNG if `None`.
    pub id: Option<NodeId>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Bucket size, and how many closest nodes a lookup converges on.
    pub k: usize,
    /// Queries a lookup keeps in flight.
    pub alpha: usize,
    /// Most queries one lookup may send.
    pub lookup_budget: u32,
    /// A query unanswered this long failed.
    pub query_timeout: Duration,
    /// Unanswered queries in a row after which a contact is bad and evicted.
    pub max_failures: u32,
    /// A bucket unchanged this long is refreshed by a lookup of a random id in it.
    pub refresh_after: Duration,
    /// How often buckets are checked for staleness and the peer store for expiry.
    pub maintenance_interval: Duration,
    /// How often the token secret is replaced (a token lives one to two of these).
    pub token_rotation: Duration,
    /// Caps and time to live of announced peers.
    pub store: StoreLimits,
    /// Most peers in one `get_peers` answer.
    pub max_values: usize,
    /// BEP 43: do not answer queries, and say so in ours.
    pub read_only: bool,
    /// Emit a [`DhtEvent::Krpc`] for every datagram sent and received.
    pub trace: bool,
    /// Client version sent as `v` (at most 16 bytes).
    pub version: Vec<u8>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            id: None,
            seed: 0,
            k: 8,
            alpha: 3,
            lookup_budget: 100,
            query_timeout: Duration::from_secs(2),
            max_failures: 2,
            refresh_after: Duration::from_secs(15 * 60),
            maintenance_interval: Duration::from_secs(60),
            token_rotation: Duration::from_secs(5 * 60),
            store: StoreLimits {
                max_torrents: 10_000,
                max_peers: 500,
                ttl: Duration::from_secs(30 * 60),
            },
            max_values: 50,
            read_only: false,
            trace: false,
            version: b"EJ01".to_vec(),
        }
    }
}

/// Identity of one lookup, allocated by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(pub u64);

/// How a finished lookup went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// Which lookup.
    pub id: LookupId,
    /// The id or info hash looked for.
    pub target: NodeId,
    /// What it was for.
    pub kind: LookupKind,
    /// Peers found (`get_peers`).
    pub peers: Vec<SocketAddr>,
    /// The closest nodes that answered, closest first.
    pub closest: Vec<NodeInfo>,
    /// Hop count of the closest node that answered.
    pub hops: u32,
    /// Queries sent.
    pub queries: u32,
    /// Queries unanswered.
    pub failures: u32,
    /// When it started.
    pub started: Instant,
    /// When it ended.
    pub finished: Instant,
    /// Nodes we sent `announce_peer` to.
    pub announced: usize,
}

/// Something the node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtEvent {
    /// A datagram sent or received (only with [`DhtConfig::trace`]).
    Krpc {
        /// Sent by us.
        outgoing: bool,
        /// The other side.
        peer: SocketAddr,
        /// One line: kind, method, transaction, the interesting fields.
        summary: String,
    },
    /// A lookup ended.
    LookupDone(LookupResult),
    /// A contact stopped answering and left the routing table.
    Evicted(NodeInfo),
    /// A datagram that is not KRPC we accept was dropped.
    Malformed {
        /// Who sent it.
        from: SocketAddr,
        /// What was wrong.
        error: krpc::KrpcError,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtOutput {
    /// Send one datagram.
    Send {
        /// Destination.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Report an event.
    Event(DhtEvent),
}

/// What the driver hands the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtInput {
    /// A datagram arrived.
    Datagram {
        /// Its source.
        from: SocketAddr,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Join the DHT through these addresses, and these nodes known from a previous run.
    Bootstrap {
        /// Bootstrap addresses (ids unknown).
        addrs: Vec<SocketAddr>,
        /// Nodes from a saved routing table.
        known: Vec<NodeInfo>,
    },
    /// Start a lookup; its [`LookupResult`] comes as an event.
    Lookup {
        /// The id or info hash looked for.
        target: NodeId,
        /// What for.
        kind: LookupKind,
    },
}

/// Counters of what the node saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Queries answered.
    pub queries_in: u64,
    /// Responses matched to a query of ours.
    pub responses_in: u64,
    /// Queries of ours that timed out.
    pub timeouts: u64,
    /// Datagrams dropped as malformed, unexpected or unmatched.
    pub dropped: u64,
    /// `announce_peer` queries refused for a bad token.
    pub bad_tokens: u64,
    /// Peers stored from `announce_peer`.
    pub announces_stored: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Query(u16),
    Maintenance,
    RotateTokens,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Lookup(LookupId, Ask),
    Ping,
    Announce,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    to: SocketAddr,
    node: Option<NodeId>,
    purpose: Purpose,
}

/// One DHT node.
#[derive(Debug)]
pub struct DhtNode {
    config: DhtConfig,
    id: NodeId,
    rng: ChaCha8Rng,
    table: RoutingTable,
    tokens: Tokens,
    store: PeerStore,
    pending: BTreeMap<u16, Pending>,
    next_transaction: u16,
    lookups: BTreeMap<LookupId, (Lookup, Instant)>,
    joining: Option<LookupId>,
    next_lookup: u64,
    timers: TimerTable<Timer>,
    out: VecDeque<DhtOutput>,
    stats: DhtStats,
}

impl DhtNode {
    /// A node with an empty routing table, its periodic timers starting at `now`.
    pub fn new(config: DhtConfig, now: Instant) -> DhtNode {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let id = config.id.unwrap_or_else(|| NodeId::random(&mut rng));
        let tokens = Tokens::new(&mut rng);
        let next_transaction = (rng.next_u32() & 0xffff) as u16;
        let mut timers = TimerTable::default();
        timers.set(Timer::Maintenance, now + config.maintenance_interval);
        timers.set(Timer::RotateTokens, now + config.token_rotation);
        DhtNode {
            table: RoutingTable::new(id, config.k, config.max_failures),
            store: PeerStore::new(config.store),
            config,
            id,
            rng,
            tokens,
            pending: BTreeMap::new(),
            next_transaction,
            lookups: BTreeMap::new(),
            joining: None,
            next_lookup: 0,
            timers,
            out: VecDeque::new(),
            stats: DhtStats::default(),
        }
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Turn the KRPC trace ([`DhtEvent::Krpc`]) on or off.
    pub fn set_trace(&mut self, on: bool) {
        self.config.trace = on;
    }

    /// Counters.
    pub fn stats(&self) -> DhtStats {
        self.stats
    }

    /// Lookups running.
    pub fn lookups_running(&self) -> usize {
        self.lookups.len()
    }

    /// Every contact of the routing table, to save for the next run.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.table.contacts().map(|c| c.info).collect()
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<DhtOutput> {
        self.out.pop_front()
    }

    /// The earliest instant at which [`DhtNode::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Feed one input.
    pub fn handle_input(&mut self, now: Instant, input: DhtInput) {
        match input {
            DhtInput::Datagram { from, bytes } => self.handle_datagram(now, from, &bytes),
            DhtInput::Bootstrap { addrs, known } => {
                let id = self.start_lookup(now, self.id, LookupKind::FindNode, &known, &addrs);
                self.joining = Some(id);
            }
            DhtInput::Lookup { target, kind } => {
                self.start_lookup(now, target, kind, &[], &[]);
            }
        }
    }

    /// Start a lookup from the routing table plus `known` nodes and `bootstrap` addresses.
    pub fn start_lookup(
        &mut self,
        now: Instant,
        target: NodeId,
        kind: LookupKind,
        known: &[NodeInfo],
        bootstrap: &[SocketAddr],
    ) -> LookupId {
        let mut seeds = self.table.closest(&target, self.config.k);
        seeds.extend(known.iter().filter(|n| n.id != self.id));
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.lookups
            .insert(id, (Lookup::new(target, kind, &seeds, bootstrap), now));
        self.advance(now, id);
        id
    }

    /// Ping `addr`, a node we heard of outside the DHT (a peer's BEP 5 PORT message): if it answers, it
    /// joins the routing table like any node that answers us. Nothing is sent while a query to `addr` is
    /// pending.
    pub fn ping(&mut self, now: Instant, addr: SocketAddr) {
        if self.pending.values().any(|p| p.to == addr) {
            return;
        }
        let q = Query::Ping { id: self.id };
        self.query(now, addr, None, q, Purpose::Ping);
    }

    /// Handle every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Query(t) => self.query_timed_out(now, t),
                Timer::Maintenance => {
                    self.store.expire(now);
                    for bucket in self.table.stale_buckets(now, self.config.refresh_after) {
                        self.table.touch_bucket(bucket, now);
                        let target = self.id.random_in_bucket(bucket, &mut self.rng);
                        self.start_lookup(now, target, LookupKind::FindNode, &[], &[]);
                    }
                    self.timers
                        .set(Timer::Maintenance, now + self.config.maintenance_interval);
                }
                Timer::RotateTokens => {
                    self.tokens.rotate(&mut self.rng);
                    self.timers
                        .set(Timer::RotateTokens, now + self.config.token_rotation);
                }
            }
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(error) => {
                self.stats.dropped += 1;
                self.event(DhtEvent::Malformed { from, error });
                return;
            }
        };
        self.trace(false, from, &msg);
        let transaction = msg.transaction.clone();
        match msg.body {
            Body::Query(q) => {
                if self.config.read_only {
                    return;
                }
                self.stats.queries_in += 1;
                let sender = q.sender();
                let reply = self.answer(now, from, q);
                self.send(from, transaction, reply);
                if !msg.read_only {
                    self.heard(
                        now,
                        NodeInfo {
                            id: sender,
                            addr: from,
                        },
                    );
                }
            }
            Body::Response(r) => self.on_response(now, from, &transaction, Some(r)),
            Body::Error { .. } => self.on_response(now, from, &transaction, None),
        }
    }

    fn answer(&mut self, now: Instant, from: SocketAddr, q: Query) -> Body {
        let me = self.id;
        match q {
            Query::Ping { .. } => Body::Response(Response {
                id: me,
                ..Default::default()
            }),
            Query::FindNode { target, .. } => Body::Response(Response {
                id: me,
                nodes: self.table.closest(&target, self.config.k),
                ..Default::default()
            }),
            Query::GetPeers { info_hash, .. } => {
                let offset = self.rng.next_u32() as usize;
                Body::Response(Response {
                    id: me,
                    nodes: self.table.closest(&NodeId(info_hash.0), self.config.k),
                    values: self.store.peers(&info_hash, self.config.max_values, offset),
                    token: Some(self.tokens.issue(from.ip()).to_vec()),
                })
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                ..
            } => {
                if !self.tokens.accepts(from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    return Body::Error {
                        code: krpc::codes::PROTOCOL,
                        message: "bad token".into(),
                    };
                }
                let port = if implied_port { from.port() } else { port };
                if port == 0 {
                    return Body::Error {
                        code: krpc::codes::PROTOCOL,
                        message: "port 0".into(),
                    };
                }
                if self
                    .store
                    .announce(now, info_hash, SocketAddr::new(from.ip(), port))
                {
                    self.stats.announces_stored += 1;
                }
                Body::Response(Response {
                    id: me,
                    ..Default::default()
                })
            }
            Query::Other { .. } => Body::Error {
                code: krpc::codes::METHOD_UNKNOWN,
                message: "method unknown".into(),
            },
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transaction: &[u8],
        response: Option<Response>,
    ) {
        let Some(t) = <[u8; 2]>::try_from(transaction)
            .ok()
            .map(u16::from_be_bytes)
        else {
            self.stats.dropped += 1;
            return;
        };
        let Some(pending) = self.pending.get(&t).copied().filter(|p| p.to == from) else {
            self.stats.dropped += 1;
            return;
        };
        self.pending.remove(&t);
        self.timers.cancel(Timer::Query(t));
        let Some(mut response) = response else {
            // An error answer: the node is alive, but the query got nothing.
            if let Purpose::Lookup(lookup, ask) = pending.purpose {
                if let Some((l, _)) = self.lookups.get_mut(&lookup) {
                    l.failed(ask);
                }
                self.advance(now, lookup);
            }
            return;
        };
        self.stats.responses_in += 1;
        let responder = NodeInfo {
            id: response.id,
            addr: from,
        };
        self.heard(now, responder);
        if let Purpose::Lookup(lookup, ask) = pending.purpose {
            let me = self.id;
            response
                .nodes
                .retain(|n| n.id != me && n.addr.port() != 0 && !n.addr.ip().is_unspecified());
            if let Some((l, _)) = self.lookups.get_mut(&lookup) {
                l.answered(ask, responder, &response);
            }
            self.advance(now, lookup);
        }
    }

    fn query_timed_out(&mut self, now: Instant, t: u16) {
        let Some(pending) = self.pending.remove(&t) else {
            return;
        };
        self.stats.timeouts += 1;
        if let Some(id) = pending.node {
            if let Some(evicted) = self.table.failed(&id) {
                self.event(DhtEvent::Evicted(evicted));
            }
        }
        if let Purpose::Lookup(lookup, ask) = pending.purpose {
            if let Some((l, _)) = self.lookups.get_mut(&lookup) {
                l.failed(ask);
            }
            self.advance(now, lookup);
        }
    }

    /// A node answered or queried us: record it, and ping a stale contact if its bucket is full.
    fn heard(&mut self, now: Instant, info: NodeInfo) {
        if let Heard::Waiting { ping: Some(stale) } = self.table.heard_from(now, info) {
            let already = self.pending.values().any(|p| p.node == Some(stale.id));
            if !already {
                let q = Query::Ping { id: self.id };
                self.query(now, stale.addr, Some(stale.id), q, Purpose::Ping);
            }
        }
    }

    /// Send a lookup's next queries, or finish it.
    fn advance(&mut self, now: Instant, id: LookupId) {
        let (alpha, k, budget) = (self.config.alpha, self.config.k, self.config.lookup_budget);
        let Some((lookup, _)) = self.lookups.get_mut(&id) else {
            return;
        };
        let asks = lookup.next_asks(alpha, k, budget);
        let (target, kind) = (lookup.target(), lookup.kind());
        for ask in asks {
            let q = match kind {
                LookupKind::FindNode => Query::FindNode {
                    id: self.id,
                    target,
                },
                LookupKind::GetPeers { .. } => Query::GetPeers {
                    id: self.id,
                    info_hash: InfoHash(target.0),
                },
            };
            self.query(now, ask.addr, ask.id, q, Purpose::Lookup(id, ask));
        }
        let done = self
            .lookups
            .get(&id)
            .is_some_and(|(l, _)| l.is_done(k, budget));
        if !done {
            return;
        }
        let Some((lookup, started)) = self.lookups.remove(&id) else {
            return;
        };
        let closest = lookup.closest_answered(k);
        if self.joining == Some(id) {
            self.joining = None;
            self.refresh_far_buckets(now, closest.first().map(|(n, _)| n.id));
        }
        let mut announced = 0;
        if let LookupKind::GetPeers {
            announce_port: Some(port),
        } = kind
        {
            for (node, token) in &closest {
                let Some(token) = token.clone() else { continue };
                let q = Query::AnnouncePeer {
                    id: self.id,
                    info_hash: InfoHash(target.0),
                    port,
                    implied_port: false,
                    token,
                };
                self.query(now, node.addr, Some(node.id), q, Purpose::Announce);
                announced += 1;
            }
        }
        self.event(DhtEvent::LookupDone(LookupResult {
            id,
            target,
            kind,
            peers: lookup.peers(),
            closest: closest.into_iter().map(|(n, _)| n).collect(),
            hops: lookup.hops(),
            queries: lookup.queries(),
            failures: lookup.failures(),
            started,
            finished: now,
            announced,
        }));
    }

    /// After joining: look up a random id in every bucket farther than our closest neighbour, so that
    /// each branch of the id space has contacts (Kademlia's join procedure).
    fn refresh_far_buckets(&mut self, now: Instant, neighbour: Option<NodeId>) {
        let deepest = neighbour.map_or(0, |n| self.id.common_prefix_len(&n));
        for bucket in 0..deepest {
            self.table.touch_bucket(bucket, now);
            let target = self.id.random_in_bucket(bucket, &mut self.rng);
            self.start_lookup(now, target, LookupKind::FindNode, &[], &[]);
        }
    }

    fn query(
        &mut self,
        now: Instant,
        to: SocketAddr,
        node: Option<NodeId>,
        q: Query,
        purpose: Purpose,
    ) {
        let mut t = self.next_transaction;
        while self.pending.contains_key(&t) {
            t = t.wrapping_add(1);
        }
        self.next_transaction = t.wrapping_add(1);
        self.pending.insert(t, Pending { to, node, purpose });
        self.timers
            .set(Timer::Query(t), now + self.config.query_timeout);
        self.send(to, t.to_be_bytes().to_vec(), Body::Query(q));
    }

    fn send(&mut self, to: SocketAddr, transaction: Vec<u8>, body: Body) {
        let msg = Message {
            transaction,
            version: Some(self.config.version.clone()),
            read_only: self.config.read_only,
            body,
        };
        self.trace(true, to, &msg);
        self.out.push_back(DhtOutput::Send {
            to,
            bytes: msg.encode(),
        });
    }

    fn trace(&mut self, outgoing: bool, peer: SocketAddr, msg: &Message) {
        if self.config.trace {
            let summary = summarize(msg);
            self.event(DhtEvent::Krpc {
                outgoing,
                peer,
                summary,
            });
        }
    }

    fn event(&mut self, e: DhtEvent) {
        self.out.push_back(DhtOutput::Event(e));
    }
}

/// One line describing a KRPC message, for traces.
pub fn summarize(msg: &Message) -> String {
    let t = hex::encode(&msg.transaction);
    match &msg.body {
        Body::Query(q) => {
            let detail = match q {
                Query::FindNode { target, .. } => format!(" target={target}"),
                Query::GetPeers { info_hash, .. } => {
                    format!(" info_hash={}", NodeId(info_hash.0))
                }
                Query::AnnouncePeer {
                    info_hash, port, ..
                } => format!(" info_hash={} port={port}", NodeId(info_hash.0)),
                Query::Ping { .. } | Query::Other { .. } => String::new(),
            };
            format!("query {} t={t} from={}{detail}", q.method(), q.sender())
        }
        Body::Response(r) => {
            let closest = r
                .nodes
                .iter()
                .map(|n| n.id.to_string())
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "response t={t} from={} nodes={} [{closest}] values={}{}",
                r.id,
                r.nodes.len(),
                r.values.len(),
                if r.token.is_some() { " token" } else { "" }
            )
        }
        Body::Error { code, message } => format!("error t={t} {code} {message}"),
    }
}
