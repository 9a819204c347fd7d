//! The node's vocabulary: configuration, inputs, outputs, events and statistics.

use super::reasons::{
    as_text, opt_as_text, CloseReason, ConnectError, DiskError, RefuseReason, TorrentError,
};
use crate::bitfield::Bitfield;
use crate::checkpoint::Checkpoint;
use crate::metainfo::{InfoHash, Metainfo};
use crate::picker::BlockRef;
use crate::tracker::{AnnounceParams, AnnounceReply};
use bytes::Bytes;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::ConnId;

/// Tunables of a node. The defaults suit a LAN.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Our 20-byte peer id.
    pub peer_id: [u8; 20],
    /// The port we accept connections on (announced to trackers).
    pub listen_port: u16,
    /// Seed of every random choice the node makes.
    pub seed: u64,
    /// Most blocks kept requested from one peer at a time (the request queue depth).
    pub pipeline: usize,
    /// Requests kept outstanding with a peer cover this long at its measured download rate (within
    /// `pipeline`).
    pub request_queue_time: Duration,
    /// A request unanswered this long is given to someone else and the peer counts as snubbed.
    pub request_timeout: Duration,
    /// A connection that does not complete its handshake in this time is dropped.
    pub handshake_timeout: Duration,
    /// A connection silent this long is dropped (it may be partitioned away).
    pub idle_timeout: Duration,
    /// We send a keep-alive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// Upload slots per torrent (one of them optimistic); while leeching with a known `upload_capacity`, the
    /// most the choker grows to (see [`crate::choker`]).
    pub upload_slots: usize,
    /// Our upload capacity in bytes per second (the driver's upload cap), when known.
    pub upload_capacity: Option<u64>,
    /// How often the choker re-ranks peers.
    pub rechoke_interval: Duration,
    /// How often the optimistic unchoke moves on.
    pub optimistic_interval: Duration,
    /// Whether one upload slot is an optimistic unchoke (else every slot goes by rate).
    pub optimistic_unchoke: bool,
    /// Peers that sent this many pieces failing SHA-1 are banned.
    pub ban_after_failures: u32,
    /// Connections per torrent we open or accept: open connections and our dials still connecting or
    /// handshaking together, so that a dialling pass does not dial the whole budget again while the last
    /// pass's dials are in flight (in a crowd whose peers are full, a peer opened several times its cap in
    /// connections that were refused: 148,000 connections at 1,000 peers of flash-crowd-10000 against 56,000;
    /// bench/RESULTS.md, issue 13). A handshake over the cap takes the place of a connection that moved no
    /// payload either way for `evict_idle_after`, or of one of our dials in flight, or is answered by closing;
    /// a peer that answers our dial so (closes before its handshake) is dialled again only after a long wait
    /// ([`super::peers::PeerBook::refused`]). Both used to be research knobs, off by default
    /// (`count_dials_in_flight`, `back_off_refusals`); they went when they no longer cost the shipped stories
    /// anything measurable, since a knob whose only use is to restore a peer that opens several times its cap
    /// would be a second code path for a broken default (issue 13).
    pub max_peers_per_torrent: usize,
    /// How long a connection may move no payload before a newcomer over the per-torrent cap replaces it.
    pub evict_idle_after: Duration,
    /// Connections in all.
    pub max_connections: usize,
    /// Requests from one peer we queue for serving; more are refused.
    pub max_served_requests: usize,
    /// First reconnect delay; doubled per failure up to `reconnect_max`.
    pub reconnect_base: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// A known address whose dials found nobody this many times in a row is taken for dead: from then on the
    /// wait before the next dial keeps doubling from `reconnect_max` up to `dead_redial_max`, until a dial
    /// connects. Otherwise a peer that left, or a node's own old address after a restart on another port, is
    /// dialled every `reconnect_max` for as long as the node runs, in every swarm that learnt it (a tracker
    /// tells it again until the registration expires).
    pub dead_after_failed_dials: u32,
    /// Longest wait between dials of an address taken for dead.
    pub dead_redial_max: Duration,
    /// Whether a torrent we hold whole dials the peers it knows (on by default). A complete peer cannot tell
    /// a seed from a leecher before connecting, so in a swarm that finishes together every seed dials every
    /// other seed once only to close at its bitfield: connections grow with the square of the swarm. Off, a
    /// complete torrent only accepts (leechers find it through the tracker and peer exchange).
    pub dial_when_complete: bool,
    /// Announce interval used until a tracker says otherwise.
    pub announce_interval: Duration,
    /// Minimum time between progress announces while downloading.
    pub progress_announce_interval: Duration,
    /// Emit a [`NodeEvent::Wire`] for every message (the teaching trace).
    pub trace: bool,
    /// How new pieces are chosen: rarest-first (the default), random, or in index order.
    pub piece_selection: crate::picker::PieceSelection,
    /// Port of the driver's HTTP status endpoint, told to trackers (`status_port` announce key).
    pub status_port: Option<u16>,
    /// After a disk error stops a download, it is tried again after this long; the wait doubles with each
    /// failure in a row up to `disk_retry_max`.
    pub disk_retry_base: Duration,
    /// Longest wait before a download stopped on a disk error is tried again.
    pub disk_retry_max: Duration,
    /// Advertise and speak `ut_pex` (peer exchange, BEP 11) in the extension handshake.
    pub peer_exchange: bool,
    /// Send HAVE for a newly verified piece also to peers that already hold it (libtorrent's
    /// `send_redundant_have`, on by default there and here). Off, such a HAVE is held back until our download
    /// completes, and then sent in one batch, so that a peer learns we are a seed (and both ends close a
    /// connection neither needs); meanwhile its view of our pieces, which it only uses to decide its interest
    /// in us, lacks pieces it has itself.
    pub send_redundant_have: bool,
    /// How long the HAVE for a newly verified piece may wait for another message to the same peer, so that
    /// the HAVEs of pieces verified close together leave in one write (with a request, a block or each other)
    /// instead of one small message each, as Azureus/Vuze aggregate theirs (28 waiting HAVEs, a small
    /// packet's worth, leave at once). Zero sends each HAVE at once.
    pub have_delay: Duration,
    /// Least time between two checkpoints of a torrent: pieces verified meanwhile ride on the next one, which
    /// the checkpoint timer asks for when the time has passed. Zero checkpoints as soon as the previous one is
    /// saved (on a disk that syncs at once, after every piece: in the simulator a checkpoint per piece was
    /// 4-5% of a 300-peer crowd's CPU). A crash loses at most this long of verified pieces (to be fetched
    /// again; never a claim on data that is not durable, invariant 2).
    pub checkpoint_interval: Duration,
    /// The UDP port of the driver's DHT node (BEP 5), if it runs one: advertised by the DHT bit of the
    /// handshake and sent in a PORT message to every peer that sets that bit.
    pub dht_port: Option<u16>,
    /// Advertise and answer `ut_metadata` (serve our info dictionaries to magnet users, BEP 9).
    pub serve_metadata: bool,
    /// While seeding, suggest to each fast-extension peer the pieces we handed out least (BEP 6 SUGGEST_PIECE,
    /// see [`crate::spread`]; on by default). Off, a seed answers requests only, and which pieces it sends is
    /// left to its leechers' piece selection: the setting of the papers that compare rarest-first with random
    /// selection (issue 14).
    pub suggest_pieces: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            peer_id: *b"-EJ0100-000000000000",
            listen_port: 6881,
            seed: 0,
            pipeline: 64,
            request_queue_time: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(45),
            keepalive_interval: Duration::from_secs(20),
            upload_slots: 6,
            upload_capacity: None,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            optimistic_unchoke: true,
            ban_after_failures: 2,
            max_peers_per_torrent: 50,
            evict_idle_after: Duration::from_secs(60),
            max_connections: 200,
            max_served_requests: 256,
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            dead_after_failed_dials: 5,
            dead_redial_max: Duration::from_secs(600),
            dial_when_complete: true,
            announce_interval: Duration::from_secs(5),
            progress_announce_interval: Duration::from_secs(2),
            trace: false,
            piece_selection: crate::picker::PieceSelection::RarestFirst,
            status_port: None,
            disk_retry_base: Duration::from_secs(2),
            disk_retry_max: Duration::from_secs(60),
            peer_exchange: false,
            send_redundant_have: true,
            have_delay: Duration::ZERO,
            checkpoint_interval: Duration::ZERO,
            dht_port: None,
            serve_metadata: false,
            suggest_pieces: true,
        }
    }
}

/// How a torrent's existing data is treated when it is added.
#[derive(Debug, Clone)]
pub enum Resume {
    /// Every piece is known good (we just hashed the file to create the torrent).
    Complete,
    /// Nothing is held yet.
    Fresh,
    /// Hash every piece and keep those that match (`--recheck`).
    RecheckAll,
    /// A checkpoint claims `claimed`. With `sizes_ok` the claim is spot-checked and trusted if the spot check
    /// passes; otherwise every claimed piece is hashed. `hints` are extra pieces that may be on disk (hashed,
    /// kept if they match).
    Checkpoint {
        claimed: Bitfield,
        sizes_ok: bool,
        hints: Vec<u32>,
    },
}

/// A torrent to add to the node.
#[derive(Debug, Clone)]
pub struct AddTorrent {
    /// Its metainfo.
    pub meta: Arc<Metainfo>,
    /// What is already on disk.
    pub resume: Resume,
    /// Whether to announce to a tracker (the driver knows where).
    pub announce: bool,
    /// Peer addresses to try without a tracker.
    pub sources: Vec<SocketAddr>,
}

/// Something that happened outside the node.
#[derive(Debug, Clone)]
pub enum Input {
    /// An outbound connection asked for with [`Output::Connect`] is established.
    Connected { conn: ConnId },
    /// An outbound connection could not be established.
    ConnectFailed { conn: ConnId, reason: ConnectError },
    /// An inbound connection was accepted.
    Accepted { conn: ConnId, addr: SocketAddr },
    /// Bytes arrived on a connection.
    Received { conn: ConnId, data: Bytes },
    /// The connection was closed by the other end or failed.
    Closed { conn: ConnId },
    /// The driver gave up on the connection (the peer stopped reading what we send) and closed it.
    Dropped { conn: ConnId, reason: CloseReason },
    /// A disk operation finished.
    Disk(DiskDone),
    /// A tracker announce finished.
    TrackerReply {
        torrent: InfoHash,
        reply: Result<AnnounceReply, String>,
    },
}

/// Disk work for the driver. Operations of one node must be carried out in the order they were emitted: a
/// hash reads what earlier writes wrote, and a checkpoint's sync covers every earlier write.
#[derive(Debug, Clone)]
pub enum DiskOp {
    /// Write a received block at a torrent-space offset.
    Write {
        torrent: InfoHash,
        offset: u64,
        data: Bytes,
    },
    /// Read a whole piece and SHA-1 it; answer with [`DiskDone::Hashed`].
    Hash { torrent: InfoHash, piece: u32 },
    /// Read a block to serve to `conn`; answer with [`DiskDone::Read`], or with [`DiskDone::Sendable`] when
    /// the driver can send the block straight from the torrent's files.
    Read {
        torrent: InfoHash,
        conn: ConnId,
        block: BlockRef,
    },
    /// Sync the torrent's data files, then replace its checkpoint atomically; answer with
    /// [`DiskDone::CheckpointSaved`].
    SyncAndCheckpoint {
        torrent: InfoHash,
        generation: u64,
        checkpoint: Checkpoint,
    },
}

/// A finished disk operation.
#[derive(Debug, Clone)]
pub enum DiskDone {
    /// The SHA-1 of a piece, or the read error.
    Hashed {
        torrent: InfoHash,
        piece: u32,
        hash: Result<[u8; 20], DiskError>,
    },
    /// A block read for serving, or the read error.
    Read {
        torrent: InfoHash,
        conn: ConnId,
        block: BlockRef,
        data: Result<Bytes, DiskError>,
    },
    /// A block to serve to `conn` that the driver sends straight from the torrent's files instead of reading
    /// it (`sendfile`): the node answers with the PIECE message's header and [`Output::SendRange`].
    Sendable {
        torrent: InfoHash,
        conn: ConnId,
        block: BlockRef,
    },
    /// A checkpoint was saved (`error: None`) or could not be.
    CheckpointSaved {
        torrent: InfoHash,
        generation: u64,
        error: Option<DiskError>,
    },
    /// A write failed (disk full, IO error): the download stops with this error.
    WriteFailed { torrent: InfoHash, error: DiskError },
}

/// Something for the driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Open a connection to `addr`; answer with [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect { conn: ConnId, addr: SocketAddr },
    /// Send bytes on a connection.
    Send { conn: ConnId, data: Bytes },
    /// Send `head` on a connection, then `len` bytes of the torrent's data at torrent-space `offset`, straight
    /// from its files (the answer to [`DiskDone::Sendable`]: `head` is what was queued for the connection,
    /// ending with the PIECE message's header). If the files cannot give those bytes, the driver drops the
    /// connection ([`Input::Dropped`]): the stream is cut inside a message.
    SendRange {
        conn: ConnId,
        head: Bytes,
        torrent: InfoHash,
        offset: u64,
        len: u32,
    },
    /// Close a connection (after sending what was queued). No [`Input::Closed`] is needed.
    Close { conn: ConnId },
    /// Disk work.
    Disk(DiskOp),
    /// Announce to the torrent's tracker; answer with [`Input::TrackerReply`].
    Announce {
        torrent: InfoHash,
        params: AnnounceParams,
    },
    /// A metadata phase ([`super::Node::fetch_metadata`]) ended: the torrent's metainfo (its info
    /// dictionary checked against the info hash) and the peers it met, to add it as a normal torrent with
    /// [`super::Node::add_torrent`]; or why the metadata is unusable.
    Metadata {
        torrent: InfoHash,
        result: Result<Arc<Metainfo>, super::MetadataFetchError>,
        peers: Vec<SocketAddr>,
    },
    /// A peer told us the UDP port of its DHT node (BEP 5 PORT message; only with
    /// [`NodeConfig::dht_port`]): the driver's DHT node may ping it to learn it. Nothing answers this.
    DhtNode { addr: SocketAddr },
    /// Something worth telling the user, a log or a trace.
    Event(NodeEvent),
}

/// Observable happenings, for progress displays, logs, traces and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A connection opened.
    Connected {
        conn: ConnId,
        addr: SocketAddr,
        outbound: bool,
    },
    /// An outbound connection attempt failed.
    ConnectFailed {
        addr: SocketAddr,
        #[serde(serialize_with = "as_text")]
        reason: ConnectError,
    },
    /// A connection closed, with the reason.
    Disconnected {
        conn: ConnId,
        addr: SocketAddr,
        #[serde(serialize_with = "as_text")]
        reason: CloseReason,
    },
    /// Resume data is being checked: `pieces` are being hashed.
    Checking {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        pieces: u32,
    },
    /// A spot check failed: every piece the checkpoint claimed is being rechecked.
    CheckpointDistrusted {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        rechecking: u32,
    },
    /// The torrent is active: `pieces_resumed` were already held.
    Ready {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        pieces_resumed: u32,
        first_missing: Option<u32>,
    },
    /// A piece passed SHA-1; `from` lists who sent its blocks.
    PieceVerified {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        piece: u32,
        from: Vec<SocketAddr>,
    },
    /// A piece failed SHA-1 and was discarded.
    PieceFailed {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        piece: u32,
        from: Vec<SocketAddr>,
    },
    /// A peer was banned for sending corrupt data.
    Banned {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        addr: SocketAddr,
        strikes: u32,
    },
    /// A checkpoint claiming `verified` pieces is durable.
    CheckpointWritten {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        verified: u32,
        first_missing: Option<u32>,
    },
    /// Every piece is verified.
    Complete {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
    },
    /// The download stopped on an error (disk full, write failure).
    TorrentError {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        #[serde(serialize_with = "as_text")]
        error: TorrentError,
    },
    /// A download stopped on a disk error stops for `retry_in_ms` before it is tried again.
    DiskStalled {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        #[serde(serialize_with = "as_text")]
        error: TorrentError,
        retry_in_ms: u64,
    },
    /// A download stopped on a disk error is tried again.
    DiskRetry {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        attempt: u32,
    },
    /// A tracker answered with `peers` addresses.
    TrackerReply {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        peers: u32,
    },
    /// A tracker announce failed.
    TrackerError {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        error: String,
    },
    /// A magnet's info dictionary arrived whole and matched the info hash.
    MetadataReceived {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        size: u64,
    },
    /// A magnet's info dictionary arrived whole but did not hash to the info hash: discarded; its senders
    /// get a strike.
    MetadataFailed {
        #[serde(serialize_with = "hex")]
        torrent: InfoHash,
        from: Vec<SocketAddr>,
    },
    /// A peer's request was refused.
    RequestRefused {
        conn: ConnId,
        #[serde(serialize_with = "as_text")]
        reason: RefuseReason,
    },
    /// Requests to a peer timed out and went to others.
    RequestTimeout { conn: ConnId, addr: SocketAddr },
    /// One wire message (only with [`NodeConfig::trace`]).
    Wire {
        conn: ConnId,
        addr: SocketAddr,
        dir: &'static str,
        message: &'static str,
        detail: String,
    },
}

fn hex<S: serde::Serializer>(h: &InfoHash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_hex())
}

/// One connection as a status display shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnStats {
    /// The peer's listen address when known, else the connection's remote address.
    pub addr: SocketAddr,
    /// We dialled it.
    pub outbound: bool,
    /// Handshakes done (else still connecting or handshaking).
    pub open: bool,
    /// We choke it.
    pub am_choking: bool,
    /// We want its pieces.
    pub am_interested: bool,
    /// It chokes us.
    pub peer_choking: bool,
    /// It wants our pieces.
    pub peer_interested: bool,
    /// Pieces it says it has.
    pub peer_pieces: u32,
    /// Payload bytes per second received from it, over the current choker window (or the last one while
    /// the current one is under 2 s old).
    pub down_rate: u64,
    /// Payload bytes per second sent to it (likewise).
    pub up_rate: u64,
}

/// Progress and counters of one torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TorrentStats {
    /// Torrent name.
    pub name: String,
    /// Info hash (hex in JSON).
    #[serde(serialize_with = "hex")]
    pub info_hash: InfoHash,
    /// Total bytes.
    pub size: u64,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Pieces verified.
    pub pieces_have: u32,
    /// Pieces already held when the torrent became active (resume).
    pub pieces_resumed: u32,
    /// Pieces downloaded and verified in this run.
    pub pieces_downloaded: u32,
    /// Pieces claimed by the last durable checkpoint.
    pub pieces_durable: u32,
    /// Payload bytes received (all of them, wasted included).
    pub bytes_downloaded: u64,
    /// Payload bytes sent.
    pub bytes_uploaded: u64,
    /// Payload bytes thrown away: failed hashes, duplicates, unrequested data.
    pub bytes_wasted: u64,
    /// Pieces that failed SHA-1.
    pub hash_failures: u32,
    /// Accepted payload bytes per source address.
    pub sources: BTreeMap<SocketAddr, u64>,
    /// Open connections.
    pub peers: u32,
    /// Every connection of this torrent, in connection order.
    pub connections: Vec<ConnStats>,
    /// Checkpoints written in this run.
    pub checkpoints_written: u32,
    /// Whether every piece is verified.
    pub complete: bool,
    /// Still checking resume data.
    pub checking: bool,
    /// The error that stopped the download, if any (a disk error: the download is tried again later).
    #[serde(serialize_with = "opt_as_text")]
    pub error: Option<TorrentError>,
    /// While stopped on an error: milliseconds until the download is tried again.
    pub error_retry_in_ms: Option<u64>,
    /// Disk errors (failed writes, failed reads of our own pieces) in this run.
    pub disk_errors: u32,
    /// Banned peer addresses.
    pub banned: Vec<SocketAddr>,
    /// Why the last announce failed (every tracker tried), until an announce succeeds.
    pub tracker_error: Option<String>,
}
