//! The peer node: one sans-IO state machine for every torrent and connection of a peer.
//!
//! `Node` only routes: it owns the torrents and the [`shared`] state (connection table with its one id
//! allocator, output queue, configuration, seeded RNG), and hands each input to the code that owns it. Per
//! torrent work runs on a [`view::TorrentCtx`], one torrent borrowed with the shared state:
//!
//! | question | module |
//! |---|---|
//! | how a connection is accepted, dialled, handshaken, timed out, closed | [`connections`] |
//! | what a peer's message does (have, request, piece, choke...) | [`messages`] |
//! | which blocks we ask a peer for | [`requests`] |
//! | where a piece is verified, resume checks, strikes and bans | [`verify`] |
//! | when a checkpoint is saved | [`checkpointing`] |
//! | what a disk error stops and when it is retried | [`disk_faults`] |
//! | announcing, dialling, rechoking | [`swarm`] |
//! | what runs when, for a torrent (one timer table for waking and running) | [`timers`] |
//!
//! Invariants kept here (DESIGN.md): a piece is announced or served only after its SHA-1 matched (1); a
//! checkpoint is requested only together with a sync of the data it claims, in one ordered disk operation (2);
//! resume trusts a checkpoint only after spot-checking it (3); bad data costs the sender strikes and then a ban
//! (4); every index, offset and length from a peer is bounds-checked before use (5); all collections are ordered
//! and all randomness comes from the seeded RNG (6).
//!
//! # Driving a node
//!
//! The node never blocks, never reads a clock and never does IO; a driver does, under these contracts:
//!
//! - After **every** call that takes `&mut self` ([`Node::handle_input`], [`Node::handle_inputs`],
//!   [`Node::handle_timeout`], [`Node::add_torrent`], [`Node::add_peer`], [`Node::shutdown`]), drain
//!   [`Node::poll_output`] until it returns `None`, and carry the outputs out in order (disk operations in
//!   particular: see [`DiskOp`]).
//! - Then ask [`Node::poll_timeout`] again: any of those calls may move the next deadline, earlier or later.
//!   When the instant it returned is reached, call [`Node::handle_timeout`] with the current time; calling it
//!   early or more often is harmless (it does only what is due). `None` means no timer is armed: wait for
//!   the next input.
//! - Times passed in never need to be monotonic across calls; the node keeps the latest one it saw.
//! - Every [`Output::Connect`] and [`Output::Disk`] / [`Output::Announce`] is answered later by the input its
//!   doc names; answers may arrive for connections the node has since closed (they are ignored, and a late
//!   socket is closed).
//! - Inbound connections take their id from [`Node::allocate_conn_id`] before [`Input::Accepted`].

mod checkpointing;
mod conn;
mod conn_deadlines;
mod connections;
mod disk_faults;
mod messages;
mod metadata_fetch;
mod peer_exchange;
mod peers;
mod reasons;
mod requests;
mod shared;
mod swarm;
mod timers;
mod torrent;
mod torrent_deadlines;
mod types;
mod verify;
mod view;

pub use metadata_fetch::{FetchMetadata, MetadataFetchError};
pub use reasons::{CloseReason, ConnectError, DiskError, RefuseReason, TorrentError};
pub use types::*;

use crate::metainfo::InfoHash;
use crate::picker::BlockRef;
use crate::time::Instant;
use crate::tracker::Event;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shared::Shared;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use torrent::Torrent;
use view::TorrentCtx;

/// The peer node state machine.
pub struct Node {
    s: Shared,
    torrents: BTreeMap<InfoHash, Torrent>,
    /// Torrents known by info hash only, in their metadata phase ([`metadata_fetch`]).
    fetches: BTreeMap<InfoHash, metadata_fetch::MetadataFetch>,
    /// Each torrent's next wake-up, as of the end of the last call that changed it (see [`Node::settle`]).
    deadlines: torrent_deadlines::TorrentDeadlines,
    /// Torrents changed since the last [`Node::settle`] (every [`Node::ctx`] marks one).
    touched: BTreeSet<InfoHash>,
}

impl Node {
    /// A node with `config`; all its random choices derive from `config.seed`.
    pub fn new(config: NodeConfig) -> Node {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Node {
            s: Shared::new(config, rng),
            torrents: BTreeMap::new(),
            fetches: BTreeMap::new(),
            deadlines: torrent_deadlines::TorrentDeadlines::default(),
            touched: BTreeSet::new(),
        }
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.s.config
    }

    /// Next output to carry out, if any. Drain it after every call that changes the node.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.s.outputs.pop_front()
    }

    /// Torrents known to the node.
    pub fn torrents(&self) -> impl Iterator<Item = InfoHash> + '_ {
        self.torrents.keys().copied()
    }

    /// A snapshot of one torrent's progress and counters.
    pub fn stats(&self, info_hash: &InfoHash) -> Option<TorrentStats> {
        let t = self.torrents.get(info_hash)?;
        Some(t.snapshot(&self.s.conns, self.s.now))
    }

    /// Whether a block `conn` asked for is still to be served (not cancelled, not dropped by a choke). Drivers
    /// that pace uploads ask before spending upload budget on reading it.
    pub fn is_serving(&self, conn: ConnId, block: &BlockRef) -> bool {
        self.s
            .conns
            .get(&conn)
            .is_some_and(|c| !c.am_choking && c.serving.contains(block))
    }

    /// Start sharing or downloading a torrent (a torrent already known is left as it is).
    pub fn add_torrent(&mut self, now: Instant, add: AddTorrent) {
        self.s.now = self.s.now.max(now);
        let hash = add.meta.info_hash;
        if !self.torrents.contains_key(&hash) {
            // A metadata phase of the same torrent ends here; the peers it met become sources.
            let met = self.end_fetch(hash);
            let mut t = Torrent::new(&self.s.config, add.meta.clone(), now, add.announce);
            for addr in add.sources.into_iter().chain(met) {
                t.peers.add(addr, now);
            }
            self.torrents.insert(hash, t);
            if let Some(mut ctx) = self.ctx(hash) {
                ctx.start(now, add.resume);
            }
        }
        self.settle(now);
    }

    /// Add a peer address to try for a torrent or its metadata phase (a `--peer` source, a DHT lookup's
    /// peers, or a test harness).
    pub fn add_peer(&mut self, now: Instant, info_hash: &InfoHash, addr: SocketAddr) {
        if let Some(mut ctx) = self.ctx(*info_hash) {
            ctx.t.peers.add(addr, now);
            ctx.connect_more(now);
        } else {
            self.fetch_add_peer(now, *info_hash, addr);
        }
        self.settle(now);
    }

    /// Announce `stopped` everywhere and close every connection; the node emits nothing new afterwards.
    pub fn shutdown(&mut self, now: Instant) {
        self.s.stopping = true;
        let hashes: Vec<InfoHash> = self.torrents.keys().copied().collect();
        for h in hashes {
            if let Some(mut ctx) = self.ctx(h) {
                ctx.announce(now, Event::Stopped);
            }
        }
        let ids: Vec<ConnId> = self.s.conns.keys().copied().collect();
        for id in ids {
            self.close(now, id, CloseReason::ShuttingDown);
        }
        self.settle(now);
    }

    /// Feed one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.route_input(now, input);
        self.settle(now);
    }

    /// Feed several inputs as one call: each is handled in turn as by [`Node::handle_input`], and the end of
    /// the call runs once, after the last (what they queued for one connection leaves in one
    /// [`Output::Send`], and deadlines are worked out once). Drivers that find several inputs ready at once
    /// (the sockets of many connections) save that work per input.
    pub fn handle_inputs(&mut self, now: Instant, inputs: impl IntoIterator<Item = Input>) {
        for input in inputs {
            self.route_input(now, input);
        }
        self.settle(now);
    }

    /// Hand one input to the code that owns it (the caller settles).
    fn route_input(&mut self, now: Instant, input: Input) {
        self.s.now = self.s.now.max(now);
        match input {
            Input::Connected { conn } => self.on_connected(now, conn),
            Input::ConnectFailed { conn, reason } => self.on_connect_failed(now, conn, reason),
            Input::Accepted { conn, addr } => self.on_accepted(now, conn, addr),
            Input::Received { conn, data } => self.on_received(now, conn, data),
            Input::Closed { conn } => self.close(now, conn, CloseReason::ClosedByPeer),
            Input::Dropped { conn, reason } => self.close(now, conn, reason),
            Input::Disk(done) => self.on_disk(now, done),
            Input::TrackerReply { torrent, reply } => {
                if let Some(mut ctx) = self.ctx(torrent) {
                    ctx.on_tracker(now, reply);
                } else {
                    self.fetch_on_tracker(now, torrent, reply);
                }
            }
        }
    }

    /// Identifier for an inbound connection the driver is about to report with [`Input::Accepted`]. Drawn
    /// from the same allocator as the ids of outbound connections.
    pub fn allocate_conn_id(&mut self) -> ConnId {
        self.s.new_conn_id()
    }

    /// The earliest instant at which [`Node::handle_timeout`] has work to do; `None` when no timer is armed.
    ///
    /// Cheap: torrents' deadlines are kept from the end of the call that last changed them (a deadline that
    /// has passed meanwhile is worked out again, as dialable peers depend on the time); connections' are kept
    /// in order of time ([`conn_deadlines`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.s.now;
        let torrents = self.deadlines.earliest(now, |hash| {
            self.torrents.get(hash)?.next_deadline(now, &self.s.config)
        });
        let conns = self.s.conn_deadlines.earliest();
        let fetches = self
            .fetches
            .values()
            .filter_map(|f| f.next_deadline(now, &self.s.config));
        torrents.into_iter().chain(conns).chain(fetches).min()
    }

    /// Run every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.s.now = self.s.now.max(now);
        self.check_connection_timers(now);
        // Torrents with nothing due and nobody to dial or talk to would do nothing ([`torrent_deadlines`]).
        for h in self.deadlines.due(now) {
            if let Some(mut ctx) = self.ctx(h) {
                ctx.on_timers(now);
            }
        }
        let fetching: Vec<InfoHash> = self.fetches.keys().copied().collect();
        for h in fetching {
            self.fetch_timers(now, h);
        }
        self.settle(now);
    }

    /// End of a call: hand queued bytes to the driver and note the next deadline of every torrent changed.
    fn settle(&mut self, now: Instant) {
        self.s.flush(now);
        self.s.conn_deadlines.refresh(&self.s.conns, &self.s.config);
        for hash in std::mem::take(&mut self.touched) {
            if let Some(t) = self.torrents.get(&hash) {
                let next = t.next_deadlines(self.s.now, &self.s.config);
                let busy = t.busy(self.s.now, &self.s.config);
                self.deadlines.set(hash, next.waking, next.any, busy);
            }
        }
    }

    /// One torrent borrowed together with the shared state. The only way to change a torrent, so that its
    /// deadline is worked out again at the end of the call.
    fn ctx(&mut self, hash: InfoHash) -> Option<TorrentCtx<'_>> {
        let t = self.torrents.get_mut(&hash)?;
        self.touched.insert(hash);
        Some(TorrentCtx {
            hash,
            t,
            s: &mut self.s,
        })
    }

    /// Route a finished disk operation to its torrent.
    fn on_disk(&mut self, now: Instant, done: DiskDone) {
        match done {
            DiskDone::Hashed {
                torrent,
                piece,
                hash,
            } => {
                if let Some(mut ctx) = self.ctx(torrent) {
                    ctx.on_hashed(now, piece, hash);
                }
            }
            DiskDone::Read {
                torrent: _,
                conn,
                block,
                data,
            } => {
                // The connection says which torrent it serves.
                let torrent = self.s.conns.get(&conn).and_then(|c| c.torrent);
                if let Some(mut ctx) = torrent.and_then(|h| self.ctx(h)) {
                    ctx.on_read(now, conn, block, data);
                }
            }
            DiskDone::Sendable {
                torrent: _,
                conn,
                block,
            } => {
                let torrent = self.s.conns.get(&conn).and_then(|c| c.torrent);
                if let Some(mut ctx) = torrent.and_then(|h| self.ctx(h)) {
                    ctx.on_sendable(now, conn, block);
                }
            }
            DiskDone::CheckpointSaved {
                torrent,
                generation,
                error,
            } => {
                if let Some(mut ctx) = self.ctx(torrent) {
                    ctx.on_checkpoint_saved(now, generation, error);
                }
            }
            DiskDone::WriteFailed { torrent, error } => {
                if let Some(mut ctx) = self.ctx(torrent) {
                    ctx.fail_torrent(now, TorrentError::Write(error));
                }
            }
        }
    }

    /// Test hook: choke or unchoke a connection as the choker would.
    #[cfg(test)]
    fn set_choking(&mut self, id: ConnId, choke: bool) {
        let torrent = self.s.conns.get(&id).and_then(|c| c.torrent);
        if let Some(mut ctx) = torrent.and_then(|h| self.ctx(h)) {
            ctx.set_choking(id, choke);
        }
    }

    /// Test hook: [`Node::poll_timeout`] worked out from scratch, without the kept deadlines.
    #[cfg(test)]
    fn poll_timeout_uncached(&self) -> Option<Instant> {
        let torrents = self
            .torrents
            .values()
            .filter_map(|t| t.next_deadline(self.s.now, &self.s.config));
        let conns = self
            .s
            .conns
            .values()
            .filter_map(|c| c.next_deadline(&self.s.config));
        let fetches = self
            .fetches
            .values()
            .filter_map(|f| f.next_deadline(self.s.now, &self.s.config));
        torrents.into_iter().chain(conns).chain(fetches).min()
    }

    /// Test hook: every index the node keeps to answer quickly says what working it out afresh says (the
    /// harness asks after every input and every timeout pass).
    #[cfg(test)]
    fn check_kept_state(&self) {
        use timers::TorrentTimer;
        let (now, config) = (self.s.now, &self.s.config);
        for (hash, t) in &self.torrents {
            let candidates: Vec<crate::choker::ChokeCandidate> = t
                .conns
                .iter()
                .filter_map(|id| Some((id, self.s.conns.get(id)?)))
                .filter(|(_, c)| c.phase == conn::ConnPhase::Open)
                .map(|(id, c)| c.choke_candidate(*id, now, false))
                .collect();
            assert_eq!(
                t.slots,
                crate::choker::SlotCensus::of(&candidates),
                "slot census of {hash:?}"
            );
            assert!(t.picker.free_index_is_exact(), "free blocks of {hash:?}");
            // Interest is decided again wherever it may grow, so we are interested wherever a request could
            // go, and only in peers holding a piece we lack (it may lag behind our own requests).
            for id in &t.conns {
                let Some(c) = self.s.conns.get(id) else {
                    continue;
                };
                let usable = t.check.is_none() && t.error.is_none();
                let wants = usable && t.picker.wants_from(&c.peer_has);
                let lacks = usable && t.picker.is_interesting(&c.peer_has);
                assert!(!wants || c.am_interested, "no interest in connection {id}");
                assert!(!c.am_interested || lacks, "interest in connection {id}");
            }
            let timers: Vec<(TorrentTimer, timers::Timer)> = TorrentTimer::ALL
                .iter()
                .filter_map(|kind| Some((*kind, t.timer(*kind, now, config)?)))
                .collect();
            let waking = timers.iter().filter(|(_, timer)| timer.wakes);
            let any = timers
                .iter()
                .filter(|(kind, timer)| *kind != TorrentTimer::ProgressAnnounce || timer.wakes);
            let next = t.next_deadlines(now, config);
            assert_eq!(next.waking, waking.map(|(_, timer)| timer.at).min());
            assert_eq!(next.any, any.map(|(_, timer)| timer.at).min());
            assert_eq!(next.waking, t.next_deadline(now, config));
            assert_eq!(
                self.deadlines.is_busy(hash),
                t.busy(now, config),
                "busy {hash:?}"
            );
        }
    }

    /// Test hook: end a call made through a test hook.
    #[cfg(test)]
    fn flush(&mut self, now: Instant) {
        self.settle(now);
        self.check_kept_state();
    }
}

#[cfg(test)]
mod tests;
