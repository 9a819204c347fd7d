//! One peer connection's protocol state: handshake phase, choke/interest flags, what the peer holds, the
//! requests we are serving to it, and the rate counters the choker ranks by.

use super::{ConnId, ConnStats, NodeConfig};
use crate::bitfield::Bitfield;
use crate::choker::ChokeCandidate;
use crate::metainfo::InfoHash;
use crate::picker::BlockRef;
use crate::time::Instant;
use crate::wire::Decoder;
use bytes::BytesMut;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnPhase {
    /// Outbound, waiting for the driver to connect.
    Connecting,
    /// Waiting for the peer's handshake.
    Handshaking,
    /// Handshakes exchanged; messages flow.
    Open,
}

/// A connection's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnTimer {
    /// The handshake did not complete in time: close.
    Handshake,
    /// Nothing received for too long: close.
    Idle,
    /// Nothing sent for a while: send a keep-alive.
    KeepAlive,
}

/// Most requests remembered per connection (the oldest by position are forgotten beyond it).
const MAX_ASKED: usize = 8192;

/// Unrequested payload a connection may send before it is penalised: a little slack for a client that
/// answers a request twice, far below what a flood wastes.
pub const UNREQUESTED_SLACK_BYTES: u64 = 8 * crate::BLOCK_LENGTH as u64;

/// A peer that sent no payload for this long while we wanted some is snubbed.
const SNUB_AFTER: Duration = Duration::from_secs(60);

pub(crate) struct Conn {
    pub addr: SocketAddr,
    pub outbound: bool,
    pub phase: ConnPhase,
    pub torrent: Option<InfoHash>,
    pub decoder: Decoder,
    pub outbox: BytesMut,
    pub sent_handshake: bool,
    pub peer_id: Option<[u8; 20]>,
    pub fast: bool,
    /// The peer speaks the BEP 10 extension protocol.
    pub extended: bool,
    /// How many requests the peer queues (its `reqq`), when it said.
    pub remote_reqq: Option<u32>,
    /// The peer's listen address, learnt from its extension handshake (inbound connections).
    pub listen_addr: Option<SocketAddr>,
    /// Extension messages the peer supports, with the ids it wants them sent with (BEP 10).
    pub remote_ext: std::collections::BTreeMap<String, u8>,
    /// BEP 9: the size of the info dictionary the peer offers, when it offers `ut_metadata`.
    pub remote_metadata_size: Option<u32>,
    /// What we told this peer by PEX, and when (BEP 11).
    pub pex: crate::extension::pex::PexSender,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub peer_has: Bitfield,
    pub serving: BTreeSet<BlockRef>,
    /// Blocks we requested on this connection and have not received (kept through cancels and chokes, since
    /// an honest peer may still answer those): a block outside it was never asked for.
    pub asked: BTreeSet<BlockRef>,
    /// Payload bytes it sent that we never asked it for.
    pub unrequested_bytes: u64,
    pub opened: Instant,
    pub last_recv: Instant,
    pub last_sent: Instant,
    pub last_payload: Instant,
    /// When we last sent it payload (or when it connected).
    pub last_payload_sent: Instant,
    pub snubbed_at: Option<Instant>,
    window_start: Instant,
    window_down: u64,
    window_up: u64,
    rate_down: u64,
    rate_up: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr, outbound: bool, torrent: Option<InfoHash>, now: Instant) -> Conn {
        Conn {
            addr,
            outbound,
            phase: if outbound {
                ConnPhase::Connecting
            } else {
                ConnPhase::Handshaking
            },
            torrent,
            decoder: Decoder::new(true, crate::wire::DEFAULT_MAX_MESSAGE_LEN),
            outbox: BytesMut::new(),
            sent_handshake: false,
            peer_id: None,
            fast: false,
            extended: false,
            remote_reqq: None,
            listen_addr: None,
            remote_ext: Default::default(),
            remote_metadata_size: None,
            pex: Default::default(),
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            peer_has: Bitfield::new(0),
            serving: BTreeSet::new(),
            asked: BTreeSet::new(),
            unrequested_bytes: 0,
            opened: now,
            last_recv: now,
            last_sent: now,
            last_payload: now,
            last_payload_sent: now,
            snubbed_at: None,
            window_start: now,
            window_down: 0,
            window_up: 0,
            rate_down: 0,
            rate_up: 0,
        }
    }

    /// What a status display shows of this connection at `now` (the last input's time).
    pub fn stats(&self, now: Instant) -> ConnStats {
        // The current rate window once it is long enough to mean something, else the last closed one.
        let secs = now.saturating_since(self.window_start).as_secs_f64();
        let (down_rate, up_rate) = if secs >= 2.0 {
            (
                (self.window_down as f64 / secs) as u64,
                (self.window_up as f64 / secs) as u64,
            )
        } else {
            (self.rate_down, self.rate_up)
        };
        ConnStats {
            addr: self.peer_addr(),
            outbound: self.outbound,
            open: self.phase == ConnPhase::Open,
            am_choking: self.am_choking,
            am_interested: self.am_interested,
            peer_choking: self.peer_choking,
            peer_interested: self.peer_interested,
            peer_pieces: self.peer_has.count(),
            down_rate,
            up_rate,
        }
    }

    /// The peer's listen address when known, else the connection's remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.listen_addr.unwrap_or(self.addr)
    }

    /// Remember that we requested `block` on this connection.
    pub fn on_requested(&mut self, block: BlockRef) {
        self.asked.insert(block);
        if self.asked.len() > MAX_ASKED {
            self.asked.pop_first();
        }
    }

    /// A block arrived (or was rejected): whether we had asked this connection for it.
    pub fn take_asked(&mut self, block: &BlockRef) -> bool {
        self.asked.remove(block)
    }

    /// Count unrequested payload; whether it is now more than a slip.
    pub fn on_unrequested(&mut self, bytes: u64) -> bool {
        self.unrequested_bytes += bytes;
        self.unrequested_bytes > UNREQUESTED_SLACK_BYTES
    }

    pub fn on_payload_received(&mut self, now: Instant, bytes: u64) {
        self.window_down += bytes;
        self.last_payload = now;
        self.snubbed_at = None;
    }

    pub fn on_payload_sent(&mut self, now: Instant, bytes: u64) {
        self.window_up += bytes;
        self.last_sent = now;
        self.last_payload_sent = now;
    }

    /// When payload last went either way (or when it connected).
    pub fn last_useful(&self) -> Instant {
        self.last_payload.max(self.last_payload_sent)
    }

    /// Payload bytes per second this peer delivers to us: the current rate window once it is a second old,
    /// else the last closed one.
    pub fn download_rate(&self, now: Instant) -> u64 {
        let secs = now.saturating_since(self.window_start).as_secs_f64();
        if secs >= 1.0 {
            (self.window_down as f64 / secs) as u64
        } else {
            self.rate_down
        }
    }

    /// Close the current rate window (called at every rechoke).
    pub fn roll_rate_window(&mut self, now: Instant) {
        let secs = now
            .saturating_since(self.window_start)
            .as_secs_f64()
            .max(0.001);
        self.rate_down = (self.window_down as f64 / secs) as u64;
        self.rate_up = (self.window_up as f64 / secs) as u64;
        self.window_down = 0;
        self.window_up = 0;
        self.window_start = now;
    }

    pub fn choke_candidate(&self, id: ConnId, now: Instant, seeding: bool) -> ChokeCandidate {
        let snubbed = self.am_interested
            && !self.peer_choking
            && now.saturating_since(self.last_payload) >= SNUB_AFTER;
        ChokeCandidate {
            conn: id,
            interested: self.peer_interested,
            rate: if seeding {
                self.rate_up.max(self.window_up)
            } else {
                self.rate_down.max(self.window_down)
            },
            snubbed: snubbed || self.snubbed_at.is_some(),
            unchoked: !self.am_choking,
        }
    }

    /// The connection's timer table: every armed timer with the instant it fires, the most urgent first.
    /// [`super::Node::poll_timeout`] takes the earliest, [`super::Node::handle_timeout`] runs the first due,
    /// so the two cannot disagree.
    pub fn timers(&self, config: &NodeConfig) -> impl Iterator<Item = (Instant, ConnTimer)> {
        let rows = match self.phase {
            ConnPhase::Connecting | ConnPhase::Handshaking => [
                Some((self.opened + config.handshake_timeout, ConnTimer::Handshake)),
                None,
            ],
            ConnPhase::Open => [
                Some((self.last_recv + config.idle_timeout, ConnTimer::Idle)),
                Some((
                    self.last_sent + config.keepalive_interval,
                    ConnTimer::KeepAlive,
                )),
            ],
        };
        rows.into_iter().flatten()
    }

    /// When the next timer fires.
    pub fn next_deadline(&self, config: &NodeConfig) -> Option<Instant> {
        self.timers(config).map(|(at, _)| at).min()
    }

    /// The most urgent timer due at `now`, if any.
    pub fn due_timer(&self, now: Instant, config: &NodeConfig) -> Option<ConnTimer> {
        self.timers(config)
            .find(|(at, _)| now >= *at)
            .map(|(_, timer)| timer)
    }
}
