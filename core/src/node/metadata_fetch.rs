//! The metadata phase of a torrent known by its info hash only (a magnet link, BEP 9).
//!
//! [`Node::fetch_metadata`] starts it: the node announces the info hash to the driver's trackers, dials the
//! addresses it learns (tracker, `x.pe` hints, inbound peers), does the BEP 3 and BEP 10 handshakes, and asks
//! every peer that offers `ut_metadata` for 16 KiB pieces of the info dictionary, a piece from one peer at a
//! time (a piece unanswered for `request_timeout`, or rejected, goes to another). The pieces are assembled
//! by [`MetadataAssembly`]: a whole that does not hash to the info hash is discarded and each of its senders
//! gets a strike (`ban_after_failures` strikes ban the address). A whole that does hash is parsed as an info
//! dictionary; then every connection of the phase is closed and [`Output::Metadata`] hands the metainfo and
//! the peers met to the driver, which adds the torrent as a normal download ([`Node::add_torrent`]).

use super::conn::Conn;
use super::peers::PeerBook;
use super::{CloseReason, ConnId, Node, NodeEvent, Output};
use crate::extension::metadata::{self, Assembled, MetadataAssembly, MetadataMsg};
use crate::extension::{ExtHandshake, HANDSHAKE_ID, OUR_METADATA_ID};
use crate::metainfo::{InfoHash, Metainfo, MetainfoError};
use crate::time::Instant;
use crate::tracker::{AnnounceParams, AnnounceReply, Event};
use crate::wire::{Handshake, Message};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Metadata pieces asked of one peer at a time.
const PIECES_PER_PEER: usize = 2;

/// What the driver gives to start a metadata phase.
#[derive(Debug, Clone)]
pub struct FetchMetadata {
    /// The torrent's info hash.
    pub info_hash: InfoHash,
    /// Peer addresses to try (a magnet's `x.pe` hints, `--peer` sources).
    pub sources: Vec<SocketAddr>,
    /// Whether to announce to a tracker (the driver knows where).
    pub announce: bool,
}

/// Why a metadata phase ended without a usable torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataFetchError {
    /// The info dictionary hashed to the info hash but is not a usable torrent (unsafe paths, bad lengths).
    #[error("the metadata matches the info hash but is not a usable torrent: {0}")]
    Invalid(MetainfoError),
}

/// One torrent in its metadata phase.
pub(crate) struct MetadataFetch {
    pub(super) peers: PeerBook,
    conns: BTreeSet<ConnId>,
    /// Started from the first `metadata_size` a peer advertised; dropped after a set that did not hash, so
    /// that another peer's size can be tried.
    assembly: Option<MetadataAssembly<SocketAddr>>,
    /// Pieces asked for, with the connection asked and when.
    asked: BTreeMap<u32, (ConnId, Instant)>,
    /// Connections that offer `ut_metadata` with the size we assemble, and did not reject us.
    able: BTreeSet<ConnId>,
    announce_started: bool,
    next_announce: Option<Instant>,
}

impl MetadataFetch {
    fn new(config: &super::NodeConfig, announce: bool, now: Instant) -> MetadataFetch {
        MetadataFetch {
            peers: PeerBook::new(config),
            conns: BTreeSet::new(),
            assembly: None,
            asked: BTreeMap::new(),
            able: BTreeSet::new(),
            announce_started: false,
            next_announce: announce.then_some(now),
        }
    }

    /// The next instant one of the phase's timers has work to do.
    pub fn next_deadline(&self, now: Instant, config: &super::NodeConfig) -> Option<Instant> {
        let requests = self
            .asked
            .values()
            .map(|(_, at)| *at + config.request_timeout)
            .min();
        [self.next_announce, self.peers.next_retry(now), requests]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Node {
    /// Start the metadata phase of a torrent known by its info hash only (nothing happens if the torrent
    /// or its phase is already known: the sources are added).
    pub fn fetch_metadata(&mut self, now: Instant, fetch: FetchMetadata) {
        self.s.now = self.s.now.max(now);
        let hash = fetch.info_hash;
        if self.torrents.contains_key(&hash) {
            for addr in fetch.sources {
                self.add_peer(now, &hash, addr);
            }
            return;
        }
        let f = self
            .fetches
            .entry(hash)
            .or_insert_with(|| MetadataFetch::new(&self.s.config, fetch.announce, now));
        for addr in fetch.sources {
            f.peers.add(addr, now);
        }
        self.fetch_timers(now, hash);
        self.settle(now);
    }

    /// Whether `hash` is in its metadata phase.
    pub fn is_fetching_metadata(&self, hash: &InfoHash) -> bool {
        self.fetches.contains_key(hash)
    }

    /// Announces and dials that are due, and pieces asked too long ago, of one metadata phase.
    pub(super) fn fetch_timers(&mut self, now: Instant, hash: InfoHash) {
        let timeout = self.s.config.request_timeout;
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        f.asked
            .retain(|_, (_, at)| now.saturating_since(*at) < timeout);
        if f.next_announce.is_some_and(|at| at <= now) && !self.s.stopping {
            let event = if f.announce_started {
                Event::None
            } else {
                Event::Started
            };
            f.announce_started = true;
            f.next_announce = Some(now + self.s.config.announce_interval);
            let params = fetch_announce_params(&self.s.config, hash, event);
            self.s.outputs.push_back(Output::Announce {
                torrent: hash,
                params,
            });
        }
        self.fetch_connect_more(now, hash);
        self.fetch_request_all(now, hash);
    }

    /// A tracker answered an announce of a metadata phase.
    pub(super) fn fetch_on_tracker(
        &mut self,
        now: Instant,
        hash: InfoHash,
        reply: Result<AnnounceReply, String>,
    ) {
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        match reply {
            Ok(r) => {
                if let Some(secs) = r.interval {
                    let interval = std::time::Duration::from_secs(u64::from(secs));
                    f.next_announce = Some(now + interval.max(self.s.config.announce_interval));
                }
                let n = r.peers.len();
                for addr in r.peers {
                    f.peers.add(addr, now);
                }
                self.s.event(NodeEvent::TrackerReply {
                    torrent: hash,
                    peers: n as u32,
                });
                self.fetch_connect_more(now, hash);
            }
            Err(error) => self.s.event(NodeEvent::TrackerError {
                torrent: hash,
                error,
            }),
        }
    }

    /// A peer address for a metadata phase, from outside (a DHT lookup): dialled like a tracker's.
    pub(super) fn fetch_add_peer(&mut self, now: Instant, hash: InfoHash, addr: SocketAddr) {
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        f.peers.add(addr, now);
        self.fetch_connect_more(now, hash);
    }

    /// Dial known peers of a metadata phase, within the connection budgets.
    fn fetch_connect_more(&mut self, now: Instant, hash: InfoHash) {
        if self.s.stopping {
            return;
        }
        let total_budget = self
            .s
            .config
            .max_connections
            .saturating_sub(self.s.conns.len());
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        let budget = self
            .s
            .config
            .max_peers_per_torrent
            .saturating_sub(f.conns.len())
            .min(total_budget);
        for addr in f.peers.ready_to_dial(now, false, budget) {
            let id = self.s.new_conn_id();
            f.peers.dialing(addr, id);
            f.conns.insert(id);
            self.s
                .conns
                .insert(id, Conn::new(addr, true, Some(hash), now));
            self.s.outputs.push_back(Output::Connect { conn: id, addr });
        }
    }

    /// The peer's handshake on a connection of a metadata phase: answer it with ours and our extension
    /// handshake (we only speak `ut_metadata` here, and hold no piece).
    pub(super) fn fetch_on_handshake(&mut self, now: Instant, id: ConnId, hs: &Handshake) {
        let hash = InfoHash(hs.info_hash);
        let Some(c) = self.s.conns.get(&id) else {
            return;
        };
        let (outbound, expected, addr) = (c.outbound, c.torrent, c.addr);
        if outbound && expected != Some(hash) {
            self.close(now, id, CloseReason::InfoHashMismatch);
            return;
        }
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        if f.peers.is_banned(&addr) {
            self.close(now, id, CloseReason::BannedAddress);
            return;
        }
        if !outbound && f.conns.len() >= self.s.config.max_peers_per_torrent {
            self.close(now, id, CloseReason::TooManyPeers);
            return;
        }
        f.conns.insert(id);
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        c.open_with(hs, hash);
        let (sent_handshake, extended) = (c.sent_handshake, c.extended);
        self.s.conn_deadlines.mark(id);
        if !sent_handshake {
            self.send_handshake(id, hash);
        }
        self.s.trace(id, "in", "handshake", String::new());
        if !extended {
            // Without BEP 10 the peer cannot send metadata: nothing to do with it.
            self.close(now, id, CloseReason::NoMetadataExtension);
            return;
        }
        if let Some(c) = self.s.conns.get(&id) {
            if c.fast {
                self.s.send(id, Message::HaveNone);
            }
        }
        self.send_dht_port(id, hs);
        let ext = ExtHandshake {
            messages: BTreeMap::from([(metadata::NAME.to_string(), OUR_METADATA_ID)]),
            ..super::connections::our_ext_basics(&self.s.config)
        };
        self.s.send(
            id,
            Message::Extended {
                id: HANDSHAKE_ID,
                payload: Bytes::from(ext.encode()),
            },
        );
    }

    /// A message on a connection of a metadata phase: the extension handshake and `ut_metadata` matter,
    /// the rest is ignored (the peer does not know we hold nothing yet).
    pub(super) fn fetch_on_message(
        &mut self,
        now: Instant,
        hash: InfoHash,
        id: ConnId,
        msg: Message,
    ) {
        match msg {
            Message::Extended {
                id: HANDSHAKE_ID,
                payload,
            } => self.fetch_on_extension_handshake(now, hash, id, &payload),
            Message::Extended {
                id: OUR_METADATA_ID,
                payload,
            } => self.fetch_on_metadata(now, hash, id, &payload),
            _ => {}
        }
    }

    fn fetch_on_extension_handshake(
        &mut self,
        now: Instant,
        hash: InfoHash,
        id: ConnId,
        payload: &[u8],
    ) {
        let Ok(ext) = ExtHandshake::parse(payload) else {
            return;
        };
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        let metadata_size = ext.metadata_size;
        let listen = c.take_ext_handshake(ext);
        let offers = c.remote_ext.contains_key(metadata::NAME);
        if let Some(addr) = listen {
            if let Some(f) = self.fetches.get_mut(&hash) {
                if f.peers.is_banned(&addr) {
                    self.close(now, id, CloseReason::BannedAddress);
                    return;
                }
                f.peers.attach(addr, id, now);
            }
        }
        c.remote_metadata_size = metadata_size.filter(|_| offers);
        if self.fetch_adopt(hash, id) {
            self.fetch_request(now, hash, id);
        }
    }

    /// Count connection `id` among those asked for pieces if it offers metadata of the size being assembled
    /// (the first size offered starts the assembly).
    fn fetch_adopt(&mut self, hash: InfoHash, id: ConnId) -> bool {
        let Some(size) = self.s.conns.get(&id).and_then(|c| c.remote_metadata_size) else {
            return false;
        };
        let Some(f) = self.fetches.get_mut(&hash) else {
            return false;
        };
        if f.assembly.is_none() {
            f.assembly = MetadataAssembly::new(hash, size as usize);
        }
        let fits = f
            .assembly
            .as_ref()
            .is_some_and(|a| a.total_size() == size as usize);
        if fits {
            f.able.insert(id);
        }
        fits
    }

    /// Ask connection `id` for missing pieces nobody is asked for, up to [`PIECES_PER_PEER`].
    fn fetch_request(&mut self, now: Instant, hash: InfoHash, id: ConnId) {
        let Some(remote) = self.s.remote_ext_id(id, metadata::NAME) else {
            return;
        };
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        let Some(assembly) = f.assembly.as_ref() else {
            return;
        };
        let mut mine = f.asked.values().filter(|(c, _)| *c == id).count();
        let mut pieces = Vec::new();
        while mine < PIECES_PER_PEER {
            let asked = &f.asked;
            let Some(piece) =
                assembly.next_missing(|p| asked.contains_key(&p) || pieces.contains(&p))
            else {
                break;
            };
            pieces.push(piece);
            mine += 1;
        }
        for piece in pieces {
            f.asked.insert(piece, (id, now));
            let req = MetadataMsg::Request { piece };
            self.s.trace(id, "out", "ut_metadata", req.describe());
            self.s.send(
                id,
                Message::Extended {
                    id: remote,
                    payload: Bytes::from(req.encode()),
                },
            );
        }
    }

    fn fetch_on_metadata(&mut self, now: Instant, hash: InfoHash, id: ConnId, payload: &[u8]) {
        let addr = self.s.addr_of(id);
        let Ok(msg) = MetadataMsg::parse(payload) else {
            // A piece that does not parse is as bad as one that does not hash.
            self.fetch_strike(now, hash, vec![addr]);
            return;
        };
        self.s.trace(id, "in", "ut_metadata", msg.describe());
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        let (piece, total_size, data) = match msg {
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => (piece, total_size, data),
            MetadataMsg::Reject { piece } => {
                if f.asked.get(&piece).is_some_and(|(c, _)| *c == id) {
                    f.asked.remove(&piece);
                }
                // A peer that rejects is not asked again; others take its pieces.
                f.able.remove(&id);
                self.fetch_request_all(now, hash);
                return;
            }
            // We hold no metadata to serve yet.
            MetadataMsg::Request { piece } => {
                if let Some(remote) = self
                    .s
                    .conns
                    .get(&id)
                    .and_then(|c| c.remote_ext.get(metadata::NAME))
                    .copied()
                {
                    self.s.send(
                        id,
                        Message::Extended {
                            id: remote,
                            payload: Bytes::from(MetadataMsg::Reject { piece }.encode()),
                        },
                    );
                }
                return;
            }
        };
        if f.asked.get(&piece).is_some_and(|(c, _)| *c == id) {
            f.asked.remove(&piece);
        }
        let Some(assembly) = f.assembly.as_mut() else {
            return;
        };
        match assembly.insert(addr, piece, total_size, data) {
            Assembled::Pending | Assembled::Ignored => self.fetch_request(now, hash, id),
            Assembled::HashMismatch(senders) => {
                f.assembly = None;
                f.asked.clear();
                f.able.clear();
                self.s.event(NodeEvent::MetadataFailed {
                    torrent: hash,
                    from: senders.clone(),
                });
                self.fetch_strike(now, hash, senders);
            }
            Assembled::Complete(info) => self.fetch_complete(hash, &info),
        }
    }

    fn fetch_request_all(&mut self, now: Instant, hash: InfoHash) {
        let ids: Vec<ConnId> = self
            .fetches
            .get(&hash)
            .map(|f| f.able.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.fetch_request(now, hash, id);
        }
    }

    /// A strike for each sender of bad metadata; those with `ban_after_failures` strikes are banned and
    /// their connections closed. The others keep their connections, and send their size again when asked
    /// (so the next attempt may start from another peer's size).
    fn fetch_strike(&mut self, now: Instant, hash: InfoHash, senders: Vec<SocketAddr>) {
        let ban_after = self.s.config.ban_after_failures;
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        let mut banned = Vec::new();
        for addr in senders {
            let strikes = f.peers.strike(addr);
            if strikes >= ban_after {
                f.peers.ban(addr);
                banned.push((addr, strikes));
            }
        }
        let conns: Vec<ConnId> = f.conns.iter().copied().collect();
        for (addr, strikes) in banned {
            self.s.event(NodeEvent::Banned {
                torrent: hash,
                addr,
                strikes,
            });
            for id in &conns {
                if self.s.addr_of(*id) == addr {
                    self.close(now, *id, CloseReason::BannedForCorruptData);
                }
            }
        }
        // Everything was discarded: start again from the sizes the remaining peers advertised.
        let remaining: Vec<ConnId> = self
            .fetches
            .get(&hash)
            .map(|f| f.conns.iter().copied().collect())
            .unwrap_or_default();
        for id in remaining {
            self.fetch_adopt(hash, id);
        }
        self.fetch_request_all(now, hash);
    }

    /// The metadata is complete and matches the info hash: end the phase and hand the torrent to the driver.
    fn fetch_complete(&mut self, hash: InfoHash, info: &[u8]) {
        let mut raw = b"d4:info".to_vec();
        raw.extend_from_slice(info);
        raw.push(b'e');
        let result = Metainfo::from_bytes(&raw)
            .map(Arc::new)
            .map_err(MetadataFetchError::Invalid);
        let peers = self.end_fetch(hash);
        if result.is_ok() {
            self.s.event(NodeEvent::MetadataReceived {
                torrent: hash,
                size: info.len() as u64,
            });
        }
        self.s.outputs.push_back(Output::Metadata {
            torrent: hash,
            result,
            peers,
        });
    }

    /// End a metadata phase: close its connections (they are dialled again by the torrent), and return the
    /// addresses it knew that are not banned.
    pub(super) fn end_fetch(&mut self, hash: InfoHash) -> Vec<SocketAddr> {
        let Some(f) = self.fetches.remove(&hash) else {
            return Vec::new();
        };
        for id in &f.conns {
            if let Some((c, _)) = self.s.remove_conn(*id) {
                self.s.event(NodeEvent::Disconnected {
                    conn: *id,
                    addr: c.addr,
                    reason: CloseReason::MetadataComplete,
                });
            }
        }
        f.peers.known_not_banned()
    }

    /// Close a connection of a metadata phase; its pieces go to others, its address is dialled again later
    /// (unless `forget`).
    pub(super) fn fetch_close(
        &mut self,
        now: Instant,
        hash: InfoHash,
        id: ConnId,
        reason: CloseReason,
        forget: bool,
    ) {
        let Some((c, _)) = self.s.remove_conn(id) else {
            return;
        };
        if let Some(f) = self.fetches.get_mut(&hash) {
            f.conns.remove(&id);
            f.able.remove(&id);
            f.asked.retain(|_, (conn, _)| *conn != id);
            if forget {
                f.peers.forget(&c.peer_addr());
            } else {
                f.peers.disconnected(c.peer_addr(), now);
            }
        }
        self.s.event(NodeEvent::Disconnected {
            conn: id,
            addr: c.addr,
            reason,
        });
        self.fetch_request_all(now, hash);
    }

    /// A dial of a metadata phase failed.
    pub(super) fn fetch_connect_failed(
        &mut self,
        now: Instant,
        hash: InfoHash,
        id: ConnId,
        addr: SocketAddr,
    ) {
        if let Some(f) = self.fetches.get_mut(&hash) {
            f.conns.remove(&id);
            f.peers.connect_failed(addr, now);
        }
    }
}

/// What a metadata phase tells trackers: nothing held, size unknown (`left` 1, so that it counts as a
/// leecher).
fn fetch_announce_params(
    config: &super::NodeConfig,
    hash: InfoHash,
    event: Event,
) -> AnnounceParams {
    AnnounceParams {
        info_hash: hash,
        peer_id: config.peer_id,
        port: config.listen_port,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event,
        numwant: 50,
        key: crate::tracker::udp::announce_key(config.seed, &config.peer_id, &hash),
        ext: Default::default(),
    }
}
