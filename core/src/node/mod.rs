//! The peer node: one sans-IO state machine for every torrent and connection of a peer.
//!
//! Drivers feed it [`Input`]s with [`Node::handle_input`], drain [`Output`]s with [`Node::poll_output`] after
//! every input, and call [`Node::handle_timeout`] when [`Node::poll_timeout`] is reached. Disk work, hashing and
//! tracker requests are outputs too: the node never blocks and never touches IO.
//!
//! Invariants kept here (DESIGN.md): a piece is announced or served only after its SHA-1 matched (1); a
//! checkpoint is requested only together with a sync of the data it claims, in one ordered disk operation (2);
//! resume trusts a checkpoint only after spot-checking it (3); bad data costs the sender strikes and then a ban
//! (4); every index, offset and length from a peer is bounds-checked before use (5); all collections are ordered
//! and all randomness comes from the seeded RNG (6).

mod conn;
mod peers;
mod torrent;
mod types;

pub use types::*;

use crate::bitfield::Bitfield;
use crate::checkpoint::spot_check_pieces;
use crate::extension::ExtHandshake;
use crate::metainfo::InfoHash;
use crate::picker::{BlockOutcome, BlockRef};
use crate::time::Instant;
use crate::tracker::{AnnounceReply, Event};
use crate::wire::{Frame, Handshake, Message};
use bytes::Bytes;
use conn::{Conn, ConnPhase};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use torrent::{Check, Torrent};

/// How many identities of closed connections are remembered for late penalties.
const HISTORY_LIMIT: usize = 4096;

/// The peer node state machine.
pub struct Node {
    config: NodeConfig,
    rng: ChaCha8Rng,
    torrents: BTreeMap<InfoHash, Torrent>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    outputs: VecDeque<Output>,
    history: BTreeMap<ConnId, SocketAddr>,
    banned_ids: BTreeSet<[u8; 20]>,
    stopping: bool,
    now: Instant,
}

impl Node {
    /// A node with `config`; all its random choices derive from `config.seed`.
    pub fn new(config: NodeConfig) -> Node {
        Node {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            torrents: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            outputs: VecDeque::new(),
            history: BTreeMap::new(),
            banned_ids: BTreeSet::new(),
            stopping: false,
            now: Instant::ZERO,
        }
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Next output to carry out, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Torrents known to the node.
    pub fn torrents(&self) -> impl Iterator<Item = InfoHash> + '_ {
        self.torrents.keys().copied()
    }

    /// A snapshot of one torrent's progress and counters.
    pub fn stats(&self, info_hash: &InfoHash) -> Option<TorrentStats> {
        let t = self.torrents.get(info_hash)?;
        Some(t.snapshot(&self.conns, self.now))
    }

    /// Whether a block `conn` asked for is still to be served (not cancelled, not dropped by a choke). Drivers
    /// that pace uploads ask before spending upload budget on reading it.
    pub fn is_serving(&self, conn: ConnId, block: &BlockRef) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| !c.am_choking && c.serving.contains(block))
    }

    /// Start sharing or downloading a torrent.
    pub fn add_torrent(&mut self, now: Instant, add: AddTorrent) {
        self.add_torrent_inner(now, add);
        self.flush(now);
    }

    fn add_torrent_inner(&mut self, now: Instant, add: AddTorrent) {
        self.now = self.now.max(now);
        let hash = add.meta.info_hash;
        if self.torrents.contains_key(&hash) {
            return;
        }
        let mut t = Torrent::new(&self.config, add.meta.clone(), now, add.announce);
        for addr in add.sources {
            t.peers.add(addr, now);
        }
        let to_hash = match add.resume {
            Resume::Complete => {
                for i in 0..t.meta.piece_count() {
                    t.picker.mark_have(i);
                }
                Vec::new()
            }
            Resume::Fresh => Vec::new(),
            Resume::RecheckAll => {
                let all: Vec<u32> = (0..t.meta.piece_count()).collect();
                t.check = Some(Check::new(
                    Bitfield::new(t.meta.piece_count()),
                    false,
                    all.iter().copied(),
                ));
                all
            }
            Resume::Checkpoint {
                claimed,
                sizes_ok,
                hints,
            } => {
                let mut list: BTreeSet<u32> = hints
                    .into_iter()
                    .filter(|&p| p < t.meta.piece_count())
                    .collect();
                let trust = sizes_ok;
                if trust {
                    list.extend(spot_check_pieces(&claimed, 2, &mut self.rng));
                } else {
                    list.extend(claimed.iter_ones());
                }
                t.check = Some(Check::new(claimed, trust, list.iter().copied()));
                list.into_iter().collect()
            }
        };
        for piece in &to_hash {
            self.outputs.push_back(Output::Disk(DiskOp::Hash {
                torrent: hash,
                piece: *piece,
            }));
        }
        self.torrents.insert(hash, t);
        if to_hash.is_empty() {
            self.finish_check(now, hash);
        } else {
            self.event(NodeEvent::Checking {
                torrent: hash,
                pieces: to_hash.len() as u32,
            });
        }
    }

    /// Add a peer address to try for a torrent (a `--peer` source, or a test harness).
    pub fn add_peer(&mut self, now: Instant, info_hash: &InfoHash, addr: SocketAddr) {
        if let Some(t) = self.torrents.get_mut(info_hash) {
            t.peers.add(addr, now);
        }
        self.connect_more(now, *info_hash);
        self.flush(now);
    }

    /// Announce `stopped` everywhere and close every connection; the node emits nothing new afterwards.
    pub fn shutdown(&mut self, now: Instant) {
        self.stopping = true;
        let hashes: Vec<InfoHash> = self.torrents.keys().copied().collect();
        for h in hashes {
            self.announce(now, h, Event::Stopped);
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(now, id, "shutting down");
        }
        self.flush(now);
    }

    /// Feed one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Connected { conn } => self.on_connected(now, conn),
            Input::ConnectFailed { conn, reason } => self.on_connect_failed(now, conn, &reason),
            Input::Accepted { conn, addr } => self.on_accepted(now, conn, addr),
            Input::Received { conn, data } => self.on_received(now, conn, &data),
            Input::Closed { conn } => self.close(now, conn, "closed by peer"),
            Input::Dropped { conn, reason } => self.close(now, conn, &reason),
            Input::Disk(done) => self.on_disk(now, done),
            Input::TrackerReply { torrent, reply } => self.on_tracker(now, torrent, reply),
        }
        self.flush(now);
    }

    /// Identifier for an inbound connection the driver is about to report with [`Input::Accepted`].
    pub fn allocate_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// The earliest instant at which [`Node::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        };
        for t in self.torrents.values() {
            consider(t.next_deadline(self.now, &self.config));
        }
        for c in self.conns.values() {
            consider(Some(c.next_deadline(&self.config)));
        }
        best
    }

    /// Run every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.check_connection_timers(now);
        let hashes: Vec<InfoHash> = self.torrents.keys().copied().collect();
        for h in hashes {
            self.torrent_timers(now, h);
        }
        self.flush(now);
    }

    // ----- connections -------------------------------------------------------------------------------------

    fn on_connected(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            // We gave up on this connection meanwhile (timeout, shutdown): drop the late socket.
            self.outputs.push_back(Output::Close { conn: id });
            return;
        };
        c.phase = ConnPhase::Handshaking;
        c.last_recv = now;
        let Some(hash) = c.torrent else { return };
        self.send_handshake(id, hash);
        self.event(NodeEvent::Connected {
            conn: id,
            addr: self.addr_of(id),
            outbound: true,
        });
    }

    fn on_connect_failed(&mut self, now: Instant, id: ConnId, reason: &str) {
        if let Some(c) = self.conns.remove(&id) {
            if let Some(t) = c.torrent.and_then(|h| self.torrents.get_mut(&h)) {
                t.peers.connect_failed(c.addr, now);
            }
            self.event(NodeEvent::ConnectFailed {
                addr: c.addr,
                reason: reason.to_string(),
            });
        }
    }

    fn on_accepted(&mut self, now: Instant, id: ConnId, addr: SocketAddr) {
        if self.stopping || self.conns.len() >= self.config.max_connections {
            self.outputs.push_back(Output::Close { conn: id });
            return;
        }
        self.next_conn = self.next_conn.max(id + 1);
        self.conns
            .insert(id, Conn::new(id, addr, false, None, now, &self.config));
        self.event(NodeEvent::Connected {
            conn: id,
            addr,
            outbound: false,
        });
    }

    fn send_handshake(&mut self, id: ConnId, hash: InfoHash) {
        let hs = Handshake {
            reserved: crate::wire::reserved_bits(true, true),
            info_hash: hash.0,
            peer_id: self.config.peer_id,
        };
        if let Some(c) = self.conns.get_mut(&id) {
            c.outbox.extend_from_slice(&hs.encode());
            c.sent_handshake = true;
        }
    }

    fn on_received(&mut self, now: Instant, id: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            // We gave up on this connection meanwhile (timeout, shutdown): drop the late socket.
            self.outputs.push_back(Output::Close { conn: id });
            return;
        };
        c.last_recv = now;
        c.decoder.feed(data);
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            match c.decoder.next_frame() {
                Ok(None) => return,
                Ok(Some(Frame::Handshake(hs))) => self.on_handshake(now, id, hs),
                Ok(Some(Frame::Message(m))) => self.on_message(now, id, m),
                Err(e) => {
                    self.close(now, id, &format!("protocol error: {e}"));
                    return;
                }
            }
        }
    }

    fn on_handshake(&mut self, now: Instant, id: ConnId, hs: Handshake) {
        let hash = InfoHash(hs.info_hash);
        let Some(c) = self.conns.get(&id) else { return };
        let (outbound, expected) = (c.outbound, c.torrent);
        if hs.peer_id == self.config.peer_id {
            self.close_and_forget(now, id, "connected to ourselves");
            return;
        }
        if self.banned_ids.contains(&hs.peer_id) {
            self.close(now, id, "banned peer id");
            return;
        }
        let Some(t) = self.torrents.get(&hash) else {
            self.close(now, id, "unknown info hash");
            return;
        };
        if outbound && expected != Some(hash) {
            self.close(now, id, "info hash mismatch");
            return;
        }
        if t.peers.is_banned(&c.addr) {
            self.close(now, id, "banned address");
            return;
        }
        // Outbound connections are budgeted when dialled; inbound ones are capped here, per torrent. At the cap
        // a newcomer replaces the connection idle longest, if one moved no payload for `evict_idle_after`:
        // otherwise peers that only send keep-alives could hold every slot for good.
        if !outbound && t.conns.len() >= self.config.max_peers_per_torrent {
            let idle = t
                .conns
                .iter()
                .filter(|c| **c != id)
                .filter_map(|c| self.conns.get(c).map(|conn| (conn.last_useful(), *c)))
                .filter(|(last, _)| now.saturating_since(*last) >= self.config.evict_idle_after)
                .min();
            match idle {
                Some((last, victim)) => {
                    let secs = now.saturating_since(last).as_secs();
                    self.close(
                        now,
                        victim,
                        &format!("evicted: no payload either way for {secs} s, making room for a new peer"),
                    );
                }
                None => {
                    self.close(now, id, "too many peers for this torrent");
                    return;
                }
            }
        }
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let piece_count = t.meta.piece_count();
        if let Some(dup) = self.duplicate_of(id, hash, hs.peer_id) {
            // Keep the connection opened by the peer with the lower id, so both ends agree.
            let mine_wins = self.config.peer_id < hs.peer_id;
            let keep_new = if outbound { mine_wins } else { !mine_wins };
            let victim = if keep_new { dup } else { id };
            if victim == id && !outbound {
                // Answer before hanging up, so the dialer learns who we are and does not redial.
                self.send_handshake(id, hash);
            }
            self.close_and_forget(now, victim, "duplicate connection");
            if victim == id {
                return;
            }
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.peer_id = Some(hs.peer_id);
        c.fast = hs.supports_fast();
        c.extended = hs.supports_extended();
        c.torrent = Some(hash);
        c.phase = ConnPhase::Open;
        c.peer_has = Bitfield::new(piece_count);
        if !c.sent_handshake {
            self.send_handshake(id, hash);
        }
        if let Some(t) = self.torrents.get_mut(&hash) {
            t.conns.insert(id);
        }
        self.trace(id, "in", "handshake", String::new());
        self.send_have_state(id, hash);
        if self.conns.get(&id).is_some_and(|c| c.extended) {
            let ext = ExtHandshake {
                messages: Default::default(),
                listen_port: Some(self.config.listen_port),
                client: Some(concat!("enjambre ", env!("CARGO_PKG_VERSION")).to_string()),
                reqq: u32::try_from(self.config.max_served_requests).ok(),
            };
            self.send(
                id,
                Message::Extended {
                    id: crate::extension::HANDSHAKE_ID,
                    payload: Bytes::from(ext.encode()),
                },
            );
        }
    }

    fn duplicate_of(&self, id: ConnId, hash: InfoHash, peer_id: [u8; 20]) -> Option<ConnId> {
        let t = self.torrents.get(&hash)?;
        t.conns
            .iter()
            .copied()
            .find(|&o| o != id && self.conns.get(&o).and_then(|c| c.peer_id) == Some(peer_id))
    }

    fn send_have_state(&mut self, id: ConnId, hash: InfoHash) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let have = t.picker.have().clone();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let msg = if c.fast && have.is_full() {
            Message::HaveAll
        } else if c.fast && have.count() == 0 {
            Message::HaveNone
        } else if have.count() == 0 {
            return;
        } else {
            Message::Bitfield(Bytes::copy_from_slice(have.as_bytes()))
        };
        self.send(id, msg);
    }

    fn send(&mut self, id: ConnId, msg: Message) {
        let trace = self.config.trace;
        if let Some(c) = self.conns.get_mut(&id) {
            msg.encode(&mut c.outbox);
            if trace {
                let detail = message_detail(&msg);
                self.trace(id, "out", msg.name(), detail);
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        for (id, c) in self.conns.iter_mut() {
            if !c.outbox.is_empty() {
                c.last_sent = now;
                let data = c.outbox.split().freeze();
                self.outputs.push_back(Output::Send { conn: *id, data });
            }
        }
    }

    /// Close a connection: release its requests, update peer bookkeeping and tell the driver.
    fn close(&mut self, now: Instant, id: ConnId, reason: &str) {
        self.close_inner(now, id, reason, false);
    }

    /// Close without scheduling a reconnect (self-connections, duplicates).
    fn close_and_forget(&mut self, now: Instant, id: ConnId, reason: &str) {
        self.close_inner(now, id, reason, true);
    }

    fn close_inner(&mut self, now: Instant, id: ConnId, reason: &str, forget: bool) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        if !c.outbox.is_empty() {
            let data = c.outbox.split().freeze();
            self.outputs.push_back(Output::Send { conn: id, data });
        }
        self.outputs.push_back(Output::Close { conn: id });
        self.remember(id, c.peer_addr());
        // A dialled peer we are already connected to the other way: that address is a duplicate, not a peer
        // to come back to.
        let still_connected = c.peer_id.is_some_and(|pid| {
            self.conns
                .values()
                .any(|o| o.peer_id == Some(pid) && o.torrent == c.torrent)
        });
        let forget = forget || still_connected;
        if let Some(t) = c.torrent.and_then(|h| self.torrents.get_mut(&h)) {
            t.conns.remove(&id);
            t.picker.remove_peer(id, &c.peer_has);
            if let (false, Some(listen)) = (c.outbound, c.listen_addr) {
                t.peers.disconnected(listen, now);
            }
            if c.outbound {
                if forget {
                    t.peers.forget(&c.addr);
                } else {
                    t.peers.disconnected(c.addr, now);
                }
            }
        }
        self.event(NodeEvent::Disconnected {
            conn: id,
            addr: c.addr,
            reason: reason.to_string(),
        });
        if let Some(h) = c.torrent {
            if !c.am_choking {
                self.fill_free_slots(now, h);
            }
            self.refill_all(now, h);
        }
    }

    fn remember(&mut self, id: ConnId, addr: SocketAddr) {
        self.history.insert(id, addr);
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_first();
        }
    }

    /// The address a peer is known by: its listen address when it told us (BEP 10), else the connection's.
    /// Inbound connections come from ephemeral ports, so this is what ban lists and source counts use.
    fn addr_of(&self, id: ConnId) -> SocketAddr {
        self.conns
            .get(&id)
            .map(Conn::peer_addr)
            .or_else(|| self.history.get(&id).copied())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    fn check_connection_timers(&mut self, now: Instant) {
        let mut to_close = Vec::new();
        let mut keepalive = Vec::new();
        for (id, c) in &self.conns {
            match c.timer_action(now, &self.config) {
                conn::TimerAction::None => {}
                conn::TimerAction::Close(reason) => to_close.push((*id, reason)),
                conn::TimerAction::KeepAlive => keepalive.push(*id),
            }
        }
        for (id, reason) in to_close {
            self.close(now, id, reason);
        }
        for id in keepalive {
            if let Some(c) = self.conns.get_mut(&id) {
                c.last_sent = now;
            }
            self.send(id, Message::KeepAlive);
        }
    }

    // ----- messages ----------------------------------------------------------------------------------------

    fn on_message(&mut self, now: Instant, id: ConnId, msg: Message) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(hash) = c.torrent.filter(|_| c.phase == ConnPhase::Open) else {
            self.close(now, id, "message before handshake");
            return;
        };
        if self.config.trace {
            let detail = message_detail(&msg);
            self.trace(id, "in", msg.name(), detail);
        }
        match msg {
            Message::KeepAlive | Message::Port(_) | Message::SuggestPiece { .. } => {}
            Message::Extended {
                id: ext_id,
                payload,
            } if ext_id == crate::extension::HANDSHAKE_ID => {
                self.on_extension_handshake(now, id, hash, &payload)
            }
            Message::AllowedFast { .. } | Message::Extended { .. } | Message::Unknown { .. } => {}
            Message::Choke => self.on_choke(id),
            Message::Unchoke => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.peer_choking = false;
                }
                self.refill(now, id);
            }
            Message::Interested => self.set_peer_interest(now, id, hash, true),
            Message::NotInterested => self.set_peer_interest(now, id, hash, false),
            Message::Have { index } => self.on_have(now, id, hash, index),
            Message::Bitfield(bytes) => self.on_bitfield(now, id, hash, &bytes),
            Message::HaveAll | Message::HaveNone => {
                self.on_have_all_none(now, id, hash, msg == Message::HaveAll)
            }
            Message::Request {
                index,
                begin,
                length,
            } => self.on_request(
                id,
                hash,
                BlockRef {
                    piece: index,
                    begin,
                    length,
                },
            ),
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                let block = BlockRef {
                    piece: index,
                    begin,
                    length,
                };
                let answer = self
                    .conns
                    .get_mut(&id)
                    .is_some_and(|c| c.serving.remove(&block) && c.fast);
                // BEP 6: a cancelled request is still answered once; the read in flight is dropped.
                if answer {
                    self.send_reject(id, block);
                }
            }
            Message::Reject {
                index,
                begin,
                length,
            } => {
                if let Some(t) = self.torrents.get_mut(&hash) {
                    t.picker.release(
                        id,
                        BlockRef {
                            piece: index,
                            begin,
                            length,
                        },
                    );
                }
            }
            Message::Piece { index, begin, data } => {
                self.on_piece(now, id, hash, index, begin, data)
            }
        }
    }

    fn on_extension_handshake(&mut self, now: Instant, id: ConnId, hash: InfoHash, payload: &[u8]) {
        // A malformed extension handshake only means we learn nothing from it.
        let Ok(ext) = ExtHandshake::parse(payload) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.remote_reqq = ext.reqq;
        if let (false, Some(port)) = (c.outbound, ext.listen_port) {
            let addr = SocketAddr::new(c.addr.ip(), port);
            c.listen_addr = Some(addr);
            if let Some(t) = self.torrents.get_mut(&hash) {
                if t.peers.is_banned(&addr) {
                    self.close(now, id, "banned address");
                    return;
                }
                t.peers.attach(addr, id, now);
            }
        }
    }

    fn on_choke(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.peer_choking = true;
        // BEP 6: with the fast extension a choke no longer discards our pending requests; each still gets
        // exactly one answer, its piece or a reject (which releases it). Requesting them again after the
        // unchoke would fetch them twice (libtorrent chokes a peer that is not interested yet, and our first
        // requests cross that choke on the wire). Without the extension the choke drops them all (BEP 3).
        if c.fast {
            return;
        }
        if let Some(t) = c.torrent.and_then(|h| self.torrents.get_mut(&h)) {
            t.picker.release_all(id);
        }
    }

    fn on_have(&mut self, now: Instant, id: ConnId, hash: InfoHash, index: u32) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if index >= t.meta.piece_count() {
            self.close(now, id, "have for a piece out of range");
            return;
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.peer_has.set(index) {
            t.picker.add_peer_piece(index);
        }
        self.after_peer_pieces_changed(now, id, hash);
    }

    /// A bitfield, or have-all/none, replaces what we knew of the peer's pieces. BEP 3 sends it first, but
    /// real clients also send one later (aria2 follows have-none with a bitfield), so it is accepted any time.
    fn replace_peer_pieces(&mut self, now: Instant, id: ConnId, hash: InfoHash, pieces: Bitfield) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut c.peer_has, pieces);
        t.picker.replace_peer_pieces(&old, &c.peer_has);
        self.after_peer_pieces_changed(now, id, hash);
    }

    fn on_bitfield(&mut self, now: Instant, id: ConnId, hash: InfoHash, bytes: &[u8]) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        match Bitfield::from_wire(bytes, t.meta.piece_count()) {
            Ok(b) => self.replace_peer_pieces(now, id, hash, b),
            Err(e) => self.close(now, id, &format!("bad bitfield: {e}")),
        }
    }

    fn on_have_all_none(&mut self, now: Instant, id: ConnId, hash: InfoHash, all: bool) {
        if !self.conns.get(&id).is_some_and(|c| c.fast) {
            self.close(now, id, "have-all/have-none without the fast extension");
            return;
        }
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let n = t.meta.piece_count();
        self.replace_peer_pieces(
            now,
            id,
            hash,
            if all {
                Bitfield::full(n)
            } else {
                Bitfield::new(n)
            },
        );
    }

    fn after_peer_pieces_changed(&mut self, now: Instant, id: ConnId, hash: InfoHash) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let Some(c) = self.conns.get(&id) else { return };
        let we_seed = t.picker.have().is_full();
        if we_seed && c.peer_has.is_full() {
            if let Some(t) = self.torrents.get_mut(&hash) {
                t.peers.mark_seed(&c.addr);
            }
            self.close(now, id, "both complete");
            return;
        }
        self.update_interest(id, hash);
        self.refill(now, id);
    }

    fn update_interest(&mut self, id: ConnId, hash: InfoHash) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let Some(c) = self.conns.get(&id) else { return };
        let want = t.check.is_none() && t.error.is_none() && t.picker.is_interesting(&c.peer_has);
        if want != c.am_interested {
            if let Some(c) = self.conns.get_mut(&id) {
                c.am_interested = want;
            }
            self.send(
                id,
                if want {
                    Message::Interested
                } else {
                    Message::NotInterested
                },
            );
        }
    }

    fn set_peer_interest(&mut self, now: Instant, id: ConnId, hash: InfoHash, interested: bool) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.peer_interested = interested;
        }
        // Slots follow interest at once; the periodic rechoke does the ranking.
        self.fill_free_slots(now, hash);
    }

    /// Give the slots of peers that lost interest, and any free slot, to interested peers now.
    fn fill_free_slots(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let seeding = t.picker.have().is_full();
        let candidates: Vec<crate::choker::ChokeCandidate> = t
            .conns
            .iter()
            .filter_map(|id| {
                self.conns
                    .get(id)
                    .filter(|c| c.phase == ConnPhase::Open)
                    .map(|c| c.choke_candidate(*id, now, seeding))
            })
            .collect();
        let changes = t.choker.fill_free_slots(&candidates);
        for id in changes.choke {
            self.set_choking(id, true);
        }
        for id in changes.unchoke {
            self.set_choking(id, false);
        }
    }

    fn set_choking(&mut self, id: ConnId, choke: bool) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.am_choking == choke {
            return;
        }
        c.am_choking = choke;
        let fast = c.fast;
        let dropped = if choke {
            std::mem::take(&mut c.serving)
        } else {
            BTreeSet::new()
        };
        self.send(
            id,
            if choke {
                Message::Choke
            } else {
                Message::Unchoke
            },
        );
        // BEP 6: a choke does not cancel what the peer asked for; every request we drop is rejected.
        if fast {
            for block in dropped {
                self.send_reject(id, block);
            }
        }
    }

    fn send_reject(&mut self, id: ConnId, block: BlockRef) {
        self.send(
            id,
            Message::Reject {
                index: block.piece,
                begin: block.begin,
                length: block.length,
            },
        );
    }

    fn on_request(&mut self, id: ConnId, hash: InfoHash, block: BlockRef) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let Some(c) = self.conns.get(&id) else { return };
        let valid = block.length > 0
            && block.length <= crate::MAX_REQUEST_LENGTH
            && block.piece < t.meta.piece_count()
            && u64::from(block.begin) + u64::from(block.length)
                <= u64::from(t.meta.piece_len(block.piece));
        let servable = valid && t.picker.have().get(block.piece) && !c.am_choking;
        let room = c.serving.len() < self.config.max_served_requests;
        if !(servable && room) {
            let reason = if !valid {
                "request out of bounds"
            } else if !room {
                "request queue full"
            } else {
                "request for a piece we cannot serve"
            };
            let fast = c.fast;
            self.event(NodeEvent::RequestRefused {
                conn: id,
                reason: reason.to_string(),
            });
            if fast {
                self.send_reject(id, block);
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.serving.insert(block);
        }
        self.outputs.push_back(Output::Disk(DiskOp::Read {
            torrent: hash,
            conn: id,
            block,
        }));
    }

    fn on_piece(
        &mut self,
        now: Instant,
        id: ConnId,
        hash: InfoHash,
        index: u32,
        begin: u32,
        data: Bytes,
    ) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        let len = data.len() as u64;
        let block = BlockRef {
            piece: index,
            begin,
            length: u32::try_from(data.len()).unwrap_or(u32::MAX),
        };
        let in_bounds = index < t.meta.piece_count()
            && u64::from(begin) + len <= u64::from(t.meta.piece_len(index))
            && len > 0;
        if !in_bounds {
            self.close(now, id, "piece out of bounds");
            return;
        }
        let addr = self.conns.get(&id).map(Conn::peer_addr);
        if let Some(c) = self.conns.get_mut(&id) {
            c.on_payload_received(now, len);
        }
        t.picker.on_progress(id, now);
        t.stats.bytes_received += len;
        if t.error.is_some() || t.check.is_some() {
            t.stats.bytes_wasted += len;
            return;
        }
        match t.picker.on_block(id, block) {
            BlockOutcome::Unwanted => t.stats.bytes_wasted += len,
            BlockOutcome::Accepted {
                piece_complete,
                cancel,
            } => {
                if let Some(a) = addr {
                    *t.stats.per_source.entry(a).or_default() += len;
                }
                let offset = u64::from(index) * u64::from(t.meta.piece_length()) + u64::from(begin);
                self.outputs.push_back(Output::Disk(DiskOp::Write {
                    torrent: hash,
                    offset,
                    data,
                }));
                if piece_complete {
                    self.outputs.push_back(Output::Disk(DiskOp::Hash {
                        torrent: hash,
                        piece: index,
                    }));
                }
                for other in cancel {
                    self.send(
                        other,
                        Message::Cancel {
                            index,
                            begin,
                            length: block.length,
                        },
                    );
                }
            }
        }
        self.refill(now, id);
    }

    // ----- requests ----------------------------------------------------------------------------------------

    fn refill(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(&id) else { return };
        if c.peer_choking || !c.am_interested || c.phase != ConnPhase::Open || self.stopping {
            return;
        }
        let Some(hash) = c.torrent else { return };
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if t.check.is_some() || t.error.is_some() {
            return;
        }
        let outstanding = t.picker.outstanding(id);
        let depth = request_depth(&self.config, c.download_rate(now));
        let depth = c
            .remote_reqq
            .map_or(depth, |q| depth.min(q.max(1) as usize));
        // A snubbed peer (its requests timed out) gets one request at a time until it delivers again.
        let depth = if c.snubbed_at.is_some() { 1 } else { depth };
        let mut room = depth.saturating_sub(outstanding);
        if t.disk.probing {
            let piece_blocks = t.meta.piece_length().div_ceil(crate::BLOCK_LENGTH) as usize;
            room = room.min(piece_blocks.saturating_sub(t.picker.total_outstanding()));
        }
        if room == 0 {
            return;
        }
        let blocks = t.picker.pick(id, &c.peer_has, room, now, &mut self.rng);
        for b in blocks {
            self.send(
                id,
                Message::Request {
                    index: b.piece,
                    begin: b.begin,
                    length: b.length,
                },
            );
        }
    }

    fn refill_all(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        for id in ids {
            self.update_interest(id, hash);
            self.refill(now, id);
        }
    }

    // ----- disk --------------------------------------------------------------------------------------------

    fn on_disk(&mut self, now: Instant, done: DiskDone) {
        match done {
            DiskDone::Hashed {
                torrent,
                piece,
                hash,
            } => self.on_hashed(now, torrent, piece, hash),
            DiskDone::Read {
                torrent: _,
                conn,
                block,
                data,
            } => self.on_read(now, conn, block, data),
            DiskDone::CheckpointSaved {
                torrent,
                generation,
                error,
            } => self.on_checkpoint_saved(now, torrent, generation, error),
            DiskDone::WriteFailed { torrent, error } => self.fail_torrent(now, torrent, error),
        }
    }

    fn on_read(&mut self, now: Instant, id: ConnId, block: BlockRef, data: Result<Bytes, String>) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if !c.serving.remove(&block) || c.am_choking {
            return;
        }
        let data = match data {
            Ok(d) if d.len() == block.length as usize => d,
            Ok(_) | Err(_) if c.fast => {
                // Our disk failed to read it: a BEP 6 peer is told at once and asks someone else.
                self.send_reject(id, block);
                return;
            }
            Ok(_) | Err(_) => {
                self.close(now, id, "could not read a block to serve");
                return;
            }
        };
        let len = data.len() as u64;
        c.on_payload_sent(now, len);
        let hash = c.torrent;
        if let Some(t) = hash.and_then(|h| self.torrents.get_mut(&h)) {
            t.stats.bytes_uploaded += len;
        }
        self.send(
            id,
            Message::Piece {
                index: block.piece,
                begin: block.begin,
                data,
            },
        );
    }

    fn on_hashed(
        &mut self,
        now: Instant,
        hash: InfoHash,
        piece: u32,
        digest: Result<[u8; 20], String>,
    ) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        let ok = digest.as_ref().ok() == t.meta.piece_hash(piece).as_ref();
        if let Some(check) = t.check.as_mut() {
            if check.pending.remove(&piece) {
                if ok {
                    t.picker.mark_have(piece);
                } else if check.claimed.get(piece) {
                    check.claim_failed = true;
                }
                if check.pending.is_empty() {
                    self.finish_check(now, hash);
                }
                return;
            }
        }
        if !t.picker.is_hashing(piece) {
            return;
        }
        let suspect = t.disk.suspect.remove(&piece) || t.error.is_some();
        if let Err(e) = &digest {
            // Our own disk failed to read the piece back: nobody else is at fault.
            t.picker.piece_checked(piece, false);
            let error = format!("reading piece {piece} back failed: {e}");
            self.fail_torrent(now, hash, error);
            return;
        }
        let contributors = t.picker.piece_checked(piece, ok);
        if !ok && suspect {
            // One of its writes may be what failed: fetch it again, blame nobody.
            t.stats.bytes_wasted += u64::from(t.meta.piece_len(piece));
            self.refill_all(now, hash);
            return;
        }
        let from: Vec<SocketAddr> = contributors.iter().map(|c| self.addr_of(*c)).collect();
        if ok {
            self.piece_verified(now, hash, piece, from);
        } else {
            self.piece_failed(now, hash, piece, contributors, from);
        }
    }

    fn finish_check(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if let Some(check) = t.check.as_mut() {
            if check.trust_claims && check.claim_failed {
                // A spot check failed: trust nothing the checkpoint said, hash every claimed piece.
                check.trust_claims = false;
                let rest: Vec<u32> = check
                    .claimed
                    .iter_ones()
                    .filter(|&p| !t.picker.have().get(p))
                    .collect();
                check.pending.extend(rest.iter().copied());
                self.event(NodeEvent::CheckpointDistrusted {
                    torrent: hash,
                    rechecking: rest.len() as u32,
                });
                if !rest.is_empty() {
                    for piece in rest {
                        self.outputs.push_back(Output::Disk(DiskOp::Hash {
                            torrent: hash,
                            piece,
                        }));
                    }
                    return;
                }
            } else if check.trust_claims {
                let claimed = check.claimed.clone();
                for p in claimed.iter_ones() {
                    t.picker.mark_have(p);
                }
            }
        }
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        t.check = None;
        t.stats.pieces_resumed = t.picker.have().count();
        let first_missing = t.picker.have().first_missing();
        let resumed = t.stats.pieces_resumed;
        let complete = t.picker.have().is_full();
        if complete {
            t.completed_at = Some(now);
        }
        // Record what the check established (synced first, like any checkpoint), so that
        // `pieces_durable` covers resumed pieces too and a resumed complete torrent reports itself durable.
        if resumed > 0 || complete {
            t.ckpt.dirty = true;
        }
        self.event(NodeEvent::Ready {
            torrent: hash,
            pieces_resumed: resumed,
            first_missing,
        });
        self.maybe_checkpoint(hash);
        self.announce(now, hash, Event::Started);
        self.connect_more(now, hash);
        self.refill_all(now, hash);
    }

    fn piece_verified(&mut self, now: Instant, hash: InfoHash, piece: u32, from: Vec<SocketAddr>) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        t.stats.pieces_downloaded += 1;
        t.ckpt.dirty = true;
        if t.error.is_none() {
            t.disk.failures = 0;
            t.disk.probing = false;
        }
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        let complete = t.picker.have().is_full();
        self.event(NodeEvent::PieceVerified {
            torrent: hash,
            piece,
            from,
        });
        for id in &ids {
            self.send(*id, Message::Have { index: piece });
        }
        self.maybe_checkpoint(hash);
        if complete {
            self.on_complete(now, hash);
        } else {
            self.maybe_progress_announce(now, hash);
        }
        for id in ids {
            self.update_interest(id, hash);
        }
    }

    fn on_complete(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        t.completed_at = Some(now);
        self.event(NodeEvent::Complete { torrent: hash });
        self.announce(now, hash, Event::Completed);
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let seeds: Vec<ConnId> = t
            .conns
            .iter()
            .copied()
            .filter(|id| self.conns.get(id).is_some_and(|c| c.peer_has.is_full()))
            .collect();
        for id in seeds {
            if let Some(addr) = self.conns.get(&id).map(|c| c.addr) {
                if let Some(t) = self.torrents.get_mut(&hash) {
                    t.peers.mark_seed(&addr);
                }
            }
            self.close(now, id, "both complete");
        }
    }

    fn piece_failed(
        &mut self,
        now: Instant,
        hash: InfoHash,
        piece: u32,
        conns: Vec<ConnId>,
        from: Vec<SocketAddr>,
    ) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        t.stats.bytes_wasted += u64::from(t.meta.piece_len(piece));
        t.stats.hash_failures += 1;
        self.event(NodeEvent::PieceFailed {
            torrent: hash,
            piece,
            from: from.clone(),
        });
        let threshold = self.config.ban_after_failures;
        if conns.len() != 1 {
            // Several senders: nobody is blamed yet; the picker refetches the piece from a single peer.
            self.refill_all(now, hash);
            return;
        }
        for (id, addr) in conns.iter().zip(from.iter()) {
            let Some(t) = self.torrents.get_mut(&hash) else {
                return;
            };
            let strikes = t.peers.strike(*addr);
            let peer_id = self.conns.get(id).and_then(|c| c.peer_id);
            if strikes >= threshold {
                t.peers.ban(*addr);
                if let Some(pid) = peer_id {
                    self.banned_ids.insert(pid);
                }
                self.event(NodeEvent::Banned {
                    torrent: hash,
                    addr: *addr,
                    strikes,
                });
                self.close(now, *id, "banned after sending corrupt data");
            }
        }
        self.refill_all(now, hash);
    }

    /// The disk failed under a download (a write, or reading a piece back): stop downloading it, keep serving
    /// what is verified, and try again after a wait. Blocks of pieces being assembled may not have reached the
    /// disk, so those pieces start over; requests out with peers are cancelled.
    fn fail_torrent(&mut self, now: Instant, hash: InfoHash, error: String) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if t.error.is_some() {
            return;
        }
        t.error = Some(error.clone());
        let wait = t.disk.on_failure(now, &self.config);
        let suspect = t.picker.hashing_pieces();
        t.disk.suspect.extend(suspect);
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        for id in ids {
            let Some(t) = self.torrents.get_mut(&hash) else {
                return;
            };
            for block in t.picker.release_all(id) {
                self.send(
                    id,
                    Message::Cancel {
                        index: block.piece,
                        begin: block.begin,
                        length: block.length,
                    },
                );
            }
            self.update_interest(id, hash);
        }
        if let Some(t) = self.torrents.get_mut(&hash) {
            let dropped = t.picker.abandon_partial();
            t.stats.bytes_wasted += u64::from(dropped) * u64::from(crate::BLOCK_LENGTH);
        }
        self.event(NodeEvent::DiskStalled {
            torrent: hash,
            error,
            retry_in_ms: wait.as_millis() as u64,
        });
    }

    /// A download stopped on a disk error is due to be tried again.
    fn retry_after_disk_error(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if t.disk.retry_at.is_none_or(|at| now < at) {
            return;
        }
        t.disk.retry_at = None;
        if t.error.take().is_none() {
            return;
        }
        t.disk.probing = true;
        let attempt = t.disk.failures;
        self.event(NodeEvent::DiskRetry {
            torrent: hash,
            attempt,
        });
        self.refill_all(now, hash);
    }

    fn maybe_checkpoint(&mut self, hash: InfoHash) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        // A download stopped on a disk error still saves what it verified (the save may fail too, and is
        // tried again later).
        if t.ckpt.in_flight.is_some() || !t.ckpt.dirty {
            return;
        }
        if t.ckpt.retry_at.is_some_and(|at| self.now < at) {
            return;
        }
        t.ckpt.retry_at = None;
        t.ckpt.generation += 1;
        t.ckpt.dirty = false;
        let have = t.picker.have().clone();
        t.ckpt.in_flight = Some(have.clone());
        let checkpoint = crate::checkpoint::Checkpoint::new(&t.meta, &have);
        let generation = t.ckpt.generation;
        self.outputs
            .push_back(Output::Disk(DiskOp::SyncAndCheckpoint {
                torrent: hash,
                generation,
                checkpoint,
            }));
    }

    fn on_checkpoint_saved(
        &mut self,
        now: Instant,
        hash: InfoHash,
        generation: u64,
        error: Option<String>,
    ) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if t.ckpt.generation != generation {
            return;
        }
        let Some(saved) = t.ckpt.in_flight.take() else {
            return;
        };
        match error {
            None => {
                t.ckpt.durable = saved.count();
                t.ckpt.failures = 0;
                t.stats.checkpoints_written += 1;
                let first_missing = saved.first_missing();
                self.event(NodeEvent::CheckpointWritten {
                    torrent: hash,
                    verified: saved.count(),
                    first_missing,
                });
            }
            Some(e) => {
                t.ckpt.dirty = true;
                // 1 s, doubling while saves keep failing (a full disk), up to 30 s.
                t.ckpt.failures = t.ckpt.failures.saturating_add(1);
                let wait = std::time::Duration::from_secs(1 << (t.ckpt.failures - 1).min(5))
                    .min(std::time::Duration::from_secs(30));
                t.ckpt.retry_at = Some(now + wait);
                self.event(NodeEvent::TorrentError {
                    torrent: hash,
                    error: format!("checkpoint not saved: {e}"),
                });
                return;
            }
        }
        self.maybe_checkpoint(hash);
    }

    // ----- swarm: tracker, connections, choking ------------------------------------------------------------

    fn announce(&mut self, now: Instant, hash: InfoHash, event: Event) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if !t.announce.enabled || (self.stopping && event != Event::Stopped) {
            return;
        }
        if event == Event::Stopped && !t.announce.started {
            return;
        }
        let params = t.announce_params(&self.config, event);
        t.announce.on_sent(now, &self.config, params.left, event);
        self.outputs.push_back(Output::Announce {
            torrent: hash,
            params,
        });
    }

    fn maybe_progress_announce(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        if t.announce.progress_due(now, &self.config) {
            self.announce(now, hash, Event::None);
        }
    }

    fn on_tracker(&mut self, now: Instant, hash: InfoHash, reply: Result<AnnounceReply, String>) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        match reply {
            Ok(r) => {
                t.announce.on_reply(now, &self.config, r.interval);
                let n = r.peers.len();
                for addr in r.peers {
                    t.peers.add(addr, now);
                }
                self.event(NodeEvent::TrackerReply {
                    torrent: hash,
                    peers: n as u32,
                });
                self.connect_more(now, hash);
            }
            Err(e) => {
                t.announce.on_failure(now, &self.config, &e);
                self.event(NodeEvent::TrackerError {
                    torrent: hash,
                    error: e,
                });
            }
        }
    }

    fn connect_more(&mut self, now: Instant, hash: InfoHash) {
        if self.stopping {
            return;
        }
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if t.check.is_some() || t.error.is_some() {
            return;
        }
        let complete = t.picker.have().is_full();
        let budget = self
            .config
            .max_peers_per_torrent
            .saturating_sub(t.conns.len());
        let total_budget = self.config.max_connections.saturating_sub(self.conns.len());
        let candidates = t
            .peers
            .ready_to_dial(now, complete, budget.min(total_budget));
        for addr in candidates {
            let id = self.next_conn;
            self.next_conn += 1;
            t.peers.dialing(addr, id);
            self.conns
                .insert(id, Conn::new(id, addr, true, Some(hash), now, &self.config));
            self.outputs.push_back(Output::Connect { conn: id, addr });
        }
    }

    fn torrent_timers(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        let expired = t.picker.expire_requests(now, self.config.request_timeout);
        let snubbed: BTreeSet<ConnId> = expired.iter().map(|(id, _)| *id).collect();
        for id in &snubbed {
            let addr = self.addr_of(*id);
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            c.snubbed_at = Some(now);
            let silent = now.saturating_since(c.last_recv);
            self.event(NodeEvent::RequestTimeout { conn: *id, addr });
            if silent >= self.config.request_timeout {
                // Not even a keep-alive while requests waited: the stream is dead (a partition, a vanished
                // host). Drop it now and redial, rather than wait for the idle timeout.
                self.close(
                    now,
                    *id,
                    &format!("no data for {} s with requests pending", silent.as_secs()),
                );
            }
        }
        if !expired.is_empty() {
            self.refill_all(now, hash);
        }
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        if t.announce.due(now) && t.check.is_none() {
            self.announce(now, hash, Event::None);
        } else if t.check.is_none() && t.announce.progress_due(now, &self.config) {
            self.maybe_progress_announce(now, hash);
        }
        self.connect_more(now, hash);
        self.rechoke_if_due(now, hash);
        self.maybe_checkpoint(hash);
        self.retry_after_disk_error(now, hash);
    }

    fn rechoke_if_due(&mut self, now: Instant, hash: InfoHash) {
        let Some(t) = self.torrents.get_mut(&hash) else {
            return;
        };
        if now < t.next_rechoke {
            return;
        }
        let rotate = now >= t.next_optimistic;
        t.next_rechoke = now + self.config.rechoke_interval;
        if rotate {
            t.next_optimistic = now + self.config.optimistic_interval;
        }
        let seeding = t.picker.have().is_full();
        let candidates: Vec<crate::choker::ChokeCandidate> = t
            .conns
            .iter()
            .filter_map(|id| {
                self.conns
                    .get(id)
                    .map(|c| c.choke_candidate(*id, now, seeding))
            })
            .collect();
        let unchoke = t.choker.rechoke(&candidates, rotate);
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        for id in ids {
            self.set_choking(id, !unchoke.contains(&id));
        }
        for c in self.conns.values_mut() {
            c.roll_rate_window(now);
        }
    }

    // ----- events ------------------------------------------------------------------------------------------

    fn event(&mut self, e: NodeEvent) {
        self.outputs.push_back(Output::Event(e));
    }

    fn trace(&mut self, id: ConnId, dir: &'static str, name: &'static str, detail: String) {
        if self.config.trace {
            let addr = self.addr_of(id);
            self.outputs.push_back(Output::Event(NodeEvent::Wire {
                conn: id,
                addr,
                dir,
                message: name,
                detail,
            }));
        }
    }
}

/// Fewest requests kept outstanding with a peer, whatever its measured rate (a new connection has none).
const MIN_REQUEST_DEPTH: usize = 4;

/// How many blocks to keep requested from a peer that delivers `rate` bytes per second: enough for
/// `request_queue_time` of its measured rate (as libtorrent sizes its queues), at least
/// [`MIN_REQUEST_DEPTH`], at most `pipeline`. A slow source, or one slowed by our own download cap, gets a
/// short queue, so that what we ask of it arrives before the request times out.
fn request_depth(config: &NodeConfig, rate: u64) -> usize {
    let bytes = rate as f64 * config.request_queue_time.as_secs_f64();
    let blocks = (bytes / f64::from(crate::BLOCK_LENGTH)).ceil() as usize;
    blocks.clamp(MIN_REQUEST_DEPTH, config.pipeline.max(MIN_REQUEST_DEPTH))
}

fn message_detail(m: &Message) -> String {
    match m {
        Message::Have { index } => format!("piece {index}"),
        Message::Bitfield(b) => format!("{} bytes", b.len()),
        Message::Request {
            index,
            begin,
            length,
        }
        | Message::Cancel {
            index,
            begin,
            length,
        }
        | Message::Reject {
            index,
            begin,
            length,
        } => {
            format!("piece {index} offset {begin} len {length}")
        }
        Message::Piece { index, begin, data } => {
            format!("piece {index} offset {begin} len {}", data.len())
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
