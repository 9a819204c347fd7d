//! A connection's life before and around its torrent: dialled or accepted, the handshake that binds it to a
//! torrent (self-connections, bans, caps, duplicates), framing of received bytes, its timers, and closing it.

use super::conn::{Conn, ConnPhase, ConnTimer};
use super::shared::message_detail;
use super::{CloseReason, ConnId, ConnectError, Node, NodeEvent, Output};
use crate::bitfield::Bitfield;
use crate::extension::ExtHandshake;
use crate::metainfo::InfoHash;
use crate::time::Instant;
use crate::wire::{Frame, Handshake, Message};
use bytes::Bytes;
use std::net::SocketAddr;

impl Node {
    pub(super) fn on_connected(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            // We gave up on this connection meanwhile (timeout, shutdown): drop the late socket.
            self.s.outputs.push_back(Output::Close { conn: id });
            return;
        };
        c.phase = ConnPhase::Handshaking;
        c.last_recv = now;
        self.s.conn_deadlines.mark(id);
        let Some(hash) = c.torrent else { return };
        let dialled = c.addr;
        if let Some(t) = self.torrents.get_mut(&hash) {
            t.peers.connected(&dialled);
        } else if let Some(f) = self.fetches.get_mut(&hash) {
            f.peers.connected(&dialled);
        }
        self.send_handshake(id, hash);
        let addr = self.s.addr_of(id);
        self.s.event(NodeEvent::Connected {
            conn: id,
            addr,
            outbound: true,
        });
    }

    pub(super) fn on_connect_failed(&mut self, now: Instant, id: ConnId, reason: ConnectError) {
        if let Some(c) = self.s.conns.remove(&id) {
            if let Some(ctx) = c.torrent.and_then(|h| self.ctx(h)) {
                ctx.t.peers.connect_failed(c.addr, now);
            } else if let Some(h) = c.torrent {
                self.fetch_connect_failed(now, h, id, c.addr);
            }
            self.s.event(NodeEvent::ConnectFailed {
                addr: c.addr,
                reason,
            });
        }
    }

    pub(super) fn on_accepted(&mut self, now: Instant, id: ConnId, addr: SocketAddr) {
        if self.s.stopping || self.s.conns.len() >= self.s.config.max_connections {
            self.s.outputs.push_back(Output::Close { conn: id });
            return;
        }
        self.s.note_conn_id(id);
        self.s.insert_conn(id, Conn::new(addr, false, None, now));
        self.s.event(NodeEvent::Connected {
            conn: id,
            addr,
            outbound: false,
        });
    }

    pub(super) fn send_handshake(&mut self, id: ConnId, hash: InfoHash) {
        let reserved = crate::wire::reserved_bits(true, true);
        let hs = Handshake {
            reserved: match self.s.config.dht_port {
                Some(_) => crate::wire::with_dht_bit(reserved),
                None => reserved,
            },
            info_hash: hash.0,
            peer_id: self.s.config.peer_id,
        };
        if let Some(c) = self.s.conns.get_mut(&id) {
            c.outbox.extend_from_slice(&hs.encode());
            c.sent_handshake = true;
            self.s.unsent.insert(id);
        }
    }

    pub(super) fn on_received(&mut self, now: Instant, id: ConnId, data: Bytes) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            // We gave up on this connection meanwhile (timeout, shutdown): drop the late socket.
            self.s.outputs.push_back(Output::Close { conn: id });
            return;
        };
        c.last_recv = now;
        if now < self.s.now {
            self.s.conn_deadlines.mark(id);
        }
        c.decoder.feed_bytes(data);
        loop {
            let Some(c) = self.s.conns.get_mut(&id) else {
                return;
            };
            match c.decoder.next_frame() {
                Ok(None) => return,
                Ok(Some(Frame::Handshake(hs))) => self.on_handshake(now, id, hs),
                Ok(Some(Frame::Message(m))) => self.on_message(now, id, m),
                Err(e) => {
                    // After the handshake, a broken frame counts against the peer like bad data.
                    let torrent = self.s.conns.get(&id).and_then(|c| c.torrent);
                    match torrent.and_then(|h| self.ctx(h)) {
                        Some(mut ctx) => ctx.penalise(now, id, CloseReason::Protocol(e)),
                        None => self.close(now, id, CloseReason::Protocol(e)),
                    }
                    return;
                }
            }
        }
    }

    fn on_handshake(&mut self, now: Instant, id: ConnId, hs: Handshake) {
        let hash = InfoHash(hs.info_hash);
        let Some(c) = self.s.conns.get(&id) else {
            return;
        };
        let (outbound, expected, addr) = (c.outbound, c.torrent, c.addr);
        if hs.peer_id == self.s.config.peer_id {
            self.close_and_forget(now, id, CloseReason::SelfConnection);
            return;
        }
        if self.s.banned_ids.contains(&hs.peer_id) {
            self.close(now, id, CloseReason::BannedPeerId);
            return;
        }
        if self.fetches.contains_key(&hash) {
            self.fetch_on_handshake(now, id, &hs);
            return;
        }
        let Some(t) = self.torrents.get(&hash) else {
            self.close(now, id, CloseReason::UnknownTorrent);
            return;
        };
        if outbound && expected != Some(hash) {
            self.close(now, id, CloseReason::InfoHashMismatch);
            return;
        }
        if t.peers.is_banned(&addr) {
            self.close(now, id, CloseReason::BannedAddress);
            return;
        }
        // A second connection to the same peer takes no room: one of the two closes here, the same one at
        // both ends.
        let replaced = match self.duplicate_of(id, hash, hs.peer_id) {
            Some(dup) => {
                // Keep the connection opened by the peer with the lower id, so both ends agree.
                let mine_wins = self.s.config.peer_id < hs.peer_id;
                let keep_new = if outbound { mine_wins } else { !mine_wins };
                let victim = if keep_new { dup } else { id };
                if victim == id && !outbound {
                    // Answer before hanging up, so the dialer learns who we are and does not redial.
                    self.send_handshake(id, hash);
                }
                self.close_and_forget(now, victim, CloseReason::Duplicate);
                if victim == id {
                    return;
                }
                true
            }
            None => false,
        };
        // Outbound connections took their room when dialled; an inbound one needs room here.
        // The duplicate rule: the connection opened by the peer with the lower id is kept.
        let newcomer_wins = hs.peer_id < self.s.config.peer_id;
        if !outbound && !replaced && !self.room_for_inbound(now, id, hash, addr, newcomer_wins) {
            self.close(now, id, CloseReason::TooManyPeers);
            return;
        }
        let Some(ctx) = self.ctx(hash) else {
            return;
        };
        let Some(c) = ctx.s.conns.get_mut(&id) else {
            return;
        };
        c.open_with(&hs, hash);
        c.peer_has = Bitfield::new(ctx.t.meta.piece_count());
        let (sent_handshake, extended) = (c.sent_handshake, c.extended);
        let (unchoked, interested) = (!c.am_choking, c.peer_interested);
        // Open, its timers are others than the handshake's (possibly sooner).
        ctx.s.conn_deadlines.mark(id);
        if ctx.t.conns.insert(id) {
            ctx.t.slots.add(unchoked, interested);
        }
        let ext = our_ext_handshake(&ctx.s.config, &ctx.t.meta, ctx.t.picker.have().is_full());
        if !sent_handshake {
            self.send_handshake(id, hash);
        }
        self.s.trace(id, "in", "handshake", String::new());
        self.send_have_state(id, hash);
        self.send_dht_port(id, &hs);
        if extended {
            self.s.send(
                id,
                Message::Extended {
                    id: crate::extension::HANDSHAKE_ID,
                    payload: Bytes::from(ext.encode()),
                },
            );
        }
    }

    /// Whether the inbound connection `id` from `from`, whose handshake names torrent `hash`, fits under the
    /// torrent's cap, which its open connections and its dials in flight share
    /// ([`super::shared::Shared::dials_in_flight`]). At the cap, room is made by closing, in this order:
    /// - the open connection that moved no payload either way for longest, if for `evict_idle_after`:
    ///   otherwise peers that only send keep-alives could hold every slot for good;
    /// - one of our dials in flight, one still connecting before one handshaking, oldest first: a peer whose
    ///   handshake is here is a neighbour for sure, a dial not yet (libtorrent too lets an incoming peer take
    ///   a connecting one's place, `torrent::attach_peer`). Without it, peers that dial their whole budget at
    ///   once, as a crowd does at its start, refuse each other until their dials come back (the 100-leecher
    ///   flow crowd ended 2.05x its optimum instead of 1.43x; 2.09x when only dials still connecting gave
    ///   way: in a crowd they are handshaking). Dials to other IPs go first. A dial to the newcomer's own
    ///   IP is most likely that very peer, dialled while it dialled us: it gives way only when the newcomer
    ///   wins the duplicate rule (`newcomer_wins`: its id is the lower), so that two peers at their caps
    ///   dialling each other keep the same one connection, the one the duplicate check would keep, instead
    ///   of each closing the half the other kept (or each refusing the other).
    ///
    /// Otherwise there is no room, and the newcomer is refused.
    fn room_for_inbound(
        &mut self,
        now: Instant,
        id: ConnId,
        hash: InfoHash,
        from: SocketAddr,
        newcomer_wins: bool,
    ) -> bool {
        let Some(t) = self.torrents.get(&hash) else {
            return false;
        };
        let cap = self.s.config.max_peers_per_torrent;
        let taken = t.conns.len() + self.s.dials_in_flight(hash).count();
        if taken < cap {
            return true;
        }
        if taken > cap {
            // Over the cap already (it was lowered, or connections came from a metadata phase): one close
            // would not make room.
            return false;
        }
        let idle = idle_longest(
            t.conns.iter().filter(|c| **c != id),
            &self.s.conns,
            now,
            self.s.config.evict_idle_after,
        );
        if let Some((last, victim)) = idle {
            let idle_secs = now.saturating_since(last).as_secs();
            self.close(now, victim, CloseReason::Evicted { idle_secs });
            return true;
        }
        let dial = self
            .s
            .dials_in_flight(hash)
            .filter(|(_, c)| c.addr.ip() != from.ip() || newcomer_wins)
            .min_by_key(|(dial, c)| {
                let same_ip = c.addr.ip() == from.ip();
                (same_ip, c.phase != ConnPhase::Connecting, *dial)
            })
            .map(|(dial, _)| dial);
        match dial {
            Some(dial) => {
                self.close(now, dial, CloseReason::GaveWay);
                true
            }
            None => false,
        }
    }

    /// BEP 5: tell a peer that runs a DHT node where ours listens (when we run one).
    pub(super) fn send_dht_port(&mut self, id: ConnId, hs: &Handshake) {
        if let Some(port) = self.s.config.dht_port.filter(|_| hs.supports_dht()) {
            self.s.send(id, Message::Port(port));
        }
    }

    /// BEP 5: a peer's PORT message names its DHT node, for the driver's DHT node to ping. Only the first
    /// one of a connection counts, so that a peer cannot have us ping every port of its address.
    fn on_dht_port(&mut self, id: ConnId, port: u16) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if self.s.config.dht_port.is_none() || port == 0 || c.dht_port_heard {
            return;
        }
        c.dht_port_heard = true;
        let addr = SocketAddr::new(c.addr.ip(), port);
        self.s.outputs.push_back(Output::DhtNode { addr });
    }

    /// Another connection of torrent `hash` to the peer `peer_id`.
    fn duplicate_of(&self, id: ConnId, hash: InfoHash, peer_id: [u8; 20]) -> Option<ConnId> {
        let t = self.torrents.get(&hash)?;
        t.conns
            .iter()
            .copied()
            .find(|&o| o != id && self.s.conns.get(&o).and_then(|c| c.peer_id) == Some(peer_id))
    }

    /// Tell a new peer what we hold: a bitfield, or have-all/none to a BEP 6 peer.
    fn send_have_state(&mut self, id: ConnId, hash: InfoHash) {
        let Some(t) = self.torrents.get(&hash) else {
            return;
        };
        let have = t.picker.have();
        let Some(c) = self.s.conns.get(&id) else {
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
        self.s.send(id, msg);
    }

    /// Route a message to its connection's torrent; messages before the handshake close the connection.
    fn on_message(&mut self, now: Instant, id: ConnId, msg: Message) {
        let Some(c) = self.s.conns.get(&id) else {
            return;
        };
        let Some(hash) = c.torrent.filter(|_| c.phase == ConnPhase::Open) else {
            self.close(now, id, CloseReason::MessageBeforeHandshake);
            return;
        };
        if self.s.config.trace {
            let detail = message_detail(&msg);
            self.s.trace(id, "in", msg.name(), detail);
        }
        if let Message::Port(port) = msg {
            self.on_dht_port(id, port);
        } else if let Some(mut ctx) = self.ctx(hash) {
            ctx.on_message(now, id, msg);
        } else if self.fetches.contains_key(&hash) {
            self.fetch_on_message(now, hash, id, msg);
        }
    }

    /// Close a connection, through its torrent when it has one.
    pub(super) fn close(&mut self, now: Instant, id: ConnId, reason: CloseReason) {
        self.close_conn(now, id, reason, false);
    }

    /// Close without scheduling a reconnect (self-connections, duplicates).
    fn close_and_forget(&mut self, now: Instant, id: ConnId, reason: CloseReason) {
        self.close_conn(now, id, reason, true);
    }

    fn close_conn(&mut self, now: Instant, id: ConnId, reason: CloseReason, forget: bool) {
        let torrent = self.s.conns.get(&id).and_then(|c| c.torrent);
        if let Some(h) = torrent.filter(|h| self.fetches.contains_key(h)) {
            self.fetch_close(now, h, id, reason, forget);
            return;
        }
        if let Some(mut ctx) = torrent.and_then(|h| self.ctx(h)) {
            if forget {
                ctx.close_and_forget(now, id, reason);
            } else {
                ctx.close(now, id, reason);
            }
            return;
        }
        let Some((c, _)) = self.s.remove_conn(id) else {
            return;
        };
        self.s.event(NodeEvent::Disconnected {
            conn: id,
            addr: c.addr,
            reason,
        });
    }

    /// Handshake timeouts, idle timeouts and keep-alives.
    pub(super) fn check_connection_timers(&mut self, now: Instant) {
        let mut to_close = Vec::new();
        let mut keepalive = Vec::new();
        let mut haves = Vec::new();
        for id in self.s.conn_deadlines.due(now) {
            let Some(c) = self.s.conns.get(&id) else {
                continue;
            };
            match c.due_timer(now, &self.s.config) {
                None => {}
                Some(ConnTimer::Handshake) => to_close.push((id, CloseReason::HandshakeTimeout)),
                Some(ConnTimer::Idle) => to_close.push((id, CloseReason::Idle)),
                Some(ConnTimer::KeepAlive) => keepalive.push(id),
                Some(ConnTimer::Haves) => haves.push(id),
            }
        }
        // HAVEs that waited long enough for company leave at this node call's flush.
        self.s.unsent.extend(haves);
        for (id, reason) in to_close {
            self.close(now, id, reason);
        }
        for id in keepalive {
            if let Some(c) = self.s.conns.get_mut(&id) {
                c.last_sent = now;
            }
            if now < self.s.now {
                self.s.conn_deadlines.mark(id);
            }
            self.s.send(id, Message::KeepAlive);
        }
    }
}

/// Of the connections `ids`, the one whose payload (either way) stopped longest ago, with that instant, if it
/// moved none for `evict_after`: the one a newcomer over the torrent's cap replaces, inbound (at its
/// handshake) or outbound (a dial of a downloading torrent, see `TorrentCtx::connect_more`).
pub(super) fn idle_longest<'a>(
    ids: impl Iterator<Item = &'a ConnId>,
    conns: &std::collections::BTreeMap<ConnId, Conn>,
    now: Instant,
    evict_after: std::time::Duration,
) -> Option<(Instant, ConnId)> {
    ids.filter_map(|c| conns.get(c).map(|conn| (conn.last_useful(), *c)))
        .filter(|(last, _)| now.saturating_since(*last) >= evict_after)
        .min()
}

/// The extension handshake (BEP 10) we send on a connection of a torrent: the extensions we speak, where we
/// listen, our request queue, the size of the info dictionary we serve, and whether we only upload (BEP 21:
/// `complete`; sent again when the torrent completes).
pub(super) fn our_ext_handshake(
    config: &super::NodeConfig,
    meta: &crate::metainfo::Metainfo,
    complete: bool,
) -> ExtHandshake {
    let metadata_size = super::peer_exchange::info_bytes(meta)
        .and_then(|info| u32::try_from(info.len()).ok())
        .filter(|_| config.serve_metadata);
    ExtHandshake {
        messages: crate::extension::our_messages()
            .into_iter()
            .filter(|(name, _)| match name.as_str() {
                crate::extension::metadata::NAME => config.serve_metadata,
                crate::extension::pex::NAME => config.peer_exchange,
                _ => false,
            })
            .collect(),
        metadata_size,
        upload_only: complete,
        ..our_ext_basics(config)
    }
}

/// What every extension handshake of ours says whatever the torrent: where we listen, who we are, how many
/// requests we queue (no extension messages yet).
pub(super) fn our_ext_basics(config: &super::NodeConfig) -> ExtHandshake {
    ExtHandshake {
        listen_port: Some(config.listen_port),
        client: Some(concat!("enjambre ", env!("CARGO_PKG_VERSION")).to_string()),
        reqq: u32::try_from(config.max_served_requests).ok(),
        ..ExtHandshake::default()
    }
}
