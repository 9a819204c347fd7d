//! What every part of the node shares besides the torrents: the configuration, the seeded RNG, the connection
//! table with its one id allocator, and the output queue. Per-torrent code reaches it through
//! [`super::view::TorrentCtx`]; connection-level code through [`super::Node`].

use super::conn::{Conn, ConnPhase};
use super::conn_deadlines::ConnDeadlines;
use super::{ConnId, NodeConfig, NodeEvent, Output};
use crate::metainfo::InfoHash;
use crate::picker::BlockRef;
use crate::time::Instant;
use crate::wire::Message;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

/// How many identities of closed connections are remembered for late penalties.
const HISTORY_LIMIT: usize = 4096;

/// HAVEs waiting for company ([`super::NodeConfig::have_delay`]) leave at once when they fill this much: 28
/// of them, one small packet. (In the flow simulator a larger write also takes its share of the uplink.)
const WAITING_HAVES_MAX_BYTES: usize = 28 * 9;

/// The node's state that is not any one torrent's.
pub(crate) struct Shared {
    pub config: NodeConfig,
    pub rng: ChaCha8Rng,
    pub conns: BTreeMap<ConnId, Conn>,
    /// Every connection's next timer deadline: whoever adds or opens a connection, or sets one of its times
    /// earlier than [`Shared::now`], marks it here (see [`ConnDeadlines`]).
    pub conn_deadlines: ConnDeadlines,
    /// The next connection id to hand out (inbound and outbound alike, see [`Shared::new_conn_id`]).
    next_conn: ConnId,
    pub outputs: VecDeque<Output>,
    /// Connections with bytes in their outbox: [`Shared::flush`] runs after every input, and visits these
    /// rather than every connection. Whoever writes to an outbox adds the connection here.
    pub unsent: BTreeSet<ConnId>,
    /// Addresses of closed connections, so that a late hash failure can still name its sender.
    history: BTreeMap<ConnId, SocketAddr>,
    pub banned_ids: BTreeSet<[u8; 20]>,
    /// Strikes against each peer id over every torrent: a peer that sends bad data in several of our torrents
    /// is a repeat offender as much as one that does it twice in one.
    pub strikes_by_id: BTreeMap<[u8; 20], u32>,
    pub stopping: bool,
    /// The latest instant the node was told about.
    pub now: Instant,
}

impl Shared {
    /// Nothing yet, with `config` and the RNG seeded from it.
    pub fn new(config: NodeConfig, rng: ChaCha8Rng) -> Shared {
        Shared {
            config,
            rng,
            conns: BTreeMap::new(),
            conn_deadlines: ConnDeadlines::default(),
            next_conn: 1,
            outputs: VecDeque::new(),
            unsent: BTreeSet::new(),
            history: BTreeMap::new(),
            banned_ids: BTreeSet::new(),
            strikes_by_id: BTreeMap::new(),
            stopping: false,
            now: Instant::ZERO,
        }
    }

    /// The one connection id allocator: outbound dials and inbound accepts both draw from it.
    pub fn new_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// Add a connection to the table.
    pub fn insert_conn(&mut self, id: ConnId, conn: Conn) {
        self.conns.insert(id, conn);
        self.conn_deadlines.mark(id);
    }

    /// Torrent `hash`'s dials still connecting or handshaking, oldest first. They count against the torrent's
    /// cap ([`NodeConfig::max_peers_per_torrent`]) as much as its open connections do, both when it dials
    /// (`TorrentCtx::connect_more`) and when a peer's handshake arrives (`Node::room_for_inbound`), so that open
    /// connections and dials in flight together never exceed the cap.
    pub fn dials_in_flight(&self, hash: InfoHash) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.conns
            .iter()
            .filter(move |(_, c)| {
                c.outbound && c.torrent == Some(hash) && c.phase != ConnPhase::Open
            })
            .map(|(id, c)| (*id, c))
    }

    /// Keep ids unique when a driver reports an inbound id it did not get from [`Shared::new_conn_id`].
    pub fn note_conn_id(&mut self, id: ConnId) {
        self.next_conn = self.next_conn.max(id + 1);
    }

    pub fn event(&mut self, e: NodeEvent) {
        self.outputs.push_back(Output::Event(e));
    }

    /// A wire trace event (only with [`NodeConfig::trace`]).
    pub fn trace(&mut self, id: ConnId, dir: &'static str, name: &'static str, detail: String) {
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

    /// The id connection `id`'s peer wants extension message `name` sent with, if it supports it.
    pub fn remote_ext_id(&self, id: ConnId, name: &str) -> Option<u8> {
        self.conns.get(&id)?.remote_ext.get(name).copied()
    }

    /// Queue a message on a connection (sent at the next flush).
    pub fn send(&mut self, id: ConnId, msg: Message) {
        self.send_unless(id, msg, |_| false);
    }

    /// Queue a message on a connection unless `hold` (which sees the connection) says to hold it back: one
    /// look-up of the connection for both.
    pub fn send_unless(&mut self, id: ConnId, msg: Message, hold: impl FnOnce(&mut Conn) -> bool) {
        let trace = self.config.trace;
        if let Some(c) = self.conns.get_mut(&id) {
            if hold(c) {
                return;
            }
            msg.encode(&mut c.outbox);
            self.unsent.insert(id);
            if trace {
                let detail = message_detail(&msg);
                self.trace(id, "out", msg.name(), detail);
            }
        }
    }

    /// Queue a HAVE for `piece` on a connection unless `hold` says to hold it back (as
    /// [`Shared::send_unless`]). With a [`super::NodeConfig::have_delay`], it waits in the outbox for the
    /// next message to that peer, for the delay to pass ([`super::conn::ConnTimer::Haves`]) or for 28 HAVEs
    /// to wait, whichever comes first.
    pub fn send_have_unless(
        &mut self,
        now: Instant,
        id: ConnId,
        piece: u32,
        hold: impl FnOnce(&mut Conn) -> bool,
    ) {
        let delay = self.config.have_delay;
        if delay.is_zero() {
            return self.send_unless(id, Message::Have { index: piece }, hold);
        }
        let trace = self.config.trace;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if hold(c) {
            return;
        }
        let msg = Message::Have { index: piece };
        msg.encode(&mut c.outbox);
        if c.outbox.len() >= WAITING_HAVES_MAX_BYTES {
            self.unsent.insert(id);
        } else if c.haves_due.is_none() {
            let due = now + delay;
            c.haves_due = Some(due);
            self.conn_deadlines.haves_due(id, due);
        }
        if trace {
            self.trace(id, "out", msg.name(), message_detail(&msg));
        }
    }

    /// Send `block` of torrent `torrent` (at torrent-space `offset`) to `id` from the torrent's files: what is
    /// queued for `id` and the PIECE message's header leave now with the range, as one [`Output::SendRange`]
    /// (one write for the driver, in the messages' order).
    pub fn send_range(
        &mut self,
        now: Instant,
        id: ConnId,
        torrent: InfoHash,
        offset: u64,
        block: BlockRef,
    ) {
        let trace = self.config.trace;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        crate::wire::encode_piece_header(block.piece, block.begin, block.length, &mut c.outbox);
        c.last_sent = now;
        let data = c.outbox.split().freeze();
        c.haves_due = None;
        self.unsent.remove(&id);
        if now < self.now {
            self.conn_deadlines.mark(id);
        }
        if trace {
            let detail = format!(
                "piece {} offset {} len {}",
                block.piece, block.begin, block.length
            );
            self.trace(id, "out", "piece", detail);
        }
        self.outputs.push_back(Output::SendRange {
            conn: id,
            head: data,
            torrent,
            offset,
            len: block.length,
        });
    }

    /// Answer a request with a BEP 6 reject.
    pub fn send_reject(&mut self, id: ConnId, block: BlockRef) {
        self.send(
            id,
            Message::Reject {
                index: block.piece,
                begin: block.begin,
                length: block.length,
            },
        );
    }

    /// Hand every connection's queued bytes to the driver.
    pub fn flush(&mut self, now: Instant) {
        for id in std::mem::take(&mut self.unsent) {
            if let Some(c) = self.conns.get_mut(&id).filter(|c| !c.outbox.is_empty()) {
                c.haves_due = None;
                c.last_sent = now;
                if now < self.now {
                    self.conn_deadlines.mark(id);
                }
                let data = c.outbox.split().freeze();
                self.outputs.push_back(Output::Send { conn: id, data });
            }
        }
    }

    /// Take a connection out of the table: its last bytes and a close go to the driver, its address is
    /// remembered. Also says whether the same peer is still connected another way (then its address is a
    /// duplicate, not a peer to come back to).
    pub fn remove_conn(&mut self, id: ConnId) -> Option<(Conn, bool)> {
        let mut c = self.conns.remove(&id)?;
        self.unsent.remove(&id);
        if !c.outbox.is_empty() {
            let data = c.outbox.split().freeze();
            self.outputs.push_back(Output::Send { conn: id, data });
        }
        self.outputs.push_back(Output::Close { conn: id });
        self.remember(id, c.peer_addr());
        let still_connected = c.peer_id.is_some_and(|pid| {
            self.conns
                .values()
                .any(|o| o.peer_id == Some(pid) && o.torrent == c.torrent)
        });
        Some((c, still_connected))
    }

    fn remember(&mut self, id: ConnId, addr: SocketAddr) {
        self.history.insert(id, addr);
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_first();
        }
    }

    /// The address a peer is known by: its listen address when it told us (BEP 10), else the connection's.
    /// Inbound connections come from ephemeral ports, so this is what ban lists and source counts use.
    pub fn addr_of(&self, id: ConnId) -> SocketAddr {
        self.conns
            .get(&id)
            .map(Conn::peer_addr)
            .or_else(|| self.history.get(&id).copied())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// The detail a wire trace shows for a message.
pub(crate) fn message_detail(m: &Message) -> String {
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
