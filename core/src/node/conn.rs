//! One peer connection's protocol state: handshake phase, choke/interest flags, what the peer holds, the
//! requests we are serving to it, and the rate counters the choker ranks by.

use super::{ConnId, ConnStats, NodeConfig};
use crate::bitfield::Bitfield;
use crate::choker::ChokeCandidate;
use crate::extension::ExtHandshake;
use crate::metainfo::InfoHash;
use crate::picker::BlockRef;
use crate::rate::RateMeter;
use crate::time::Instant;
use crate::wire::Decoder;
use crate::wire::Handshake;
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
    /// HAVEs waited [`NodeConfig::have_delay`] in the outbox for another message: send them.
    Haves,
}

/// Most requests remembered per connection (the oldest by position are forgotten beyond it).
const MAX_ASKED: usize = 8192;

/// Unrequested payload a connection may send before it is penalised: a little slack for a client that
/// answers a request twice, far below what a flood wastes.
pub const UNREQUESTED_SLACK_BYTES: u64 = 8 * crate::BLOCK_LENGTH as u64;

/// Most suggestions remembered per connection: a peer suggests a piece or two ahead of its requests.
pub(crate) const MAX_SUGGESTED: usize = 8;

/// A peer that sent no payload for this long while we wanted some is snubbed.
const SNUB_AFTER: Duration = Duration::from_secs(60);

/// The shortest span a connection's rates are measured over (see [`RateMeter`]): long enough that one
/// block more or less does not reorder the choker's ranking, short enough to follow a peer that speeds up.
const RATE_WINDOW: Duration = Duration::from_secs(2);

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
    /// The peer said in its extension handshake that it downloads nothing more (BEP 21 `upload_only`).
    pub peer_upload_only: bool,
    /// The peer's listen address, learnt from its extension handshake (inbound connections).
    pub listen_addr: Option<SocketAddr>,
    /// Extension messages the peer supports, with the ids it wants them sent with (BEP 10).
    pub remote_ext: std::collections::BTreeMap<String, u8>,
    /// BEP 9: the size of the info dictionary the peer offers, when it offers `ut_metadata`.
    pub remote_metadata_size: Option<u32>,
    /// BEP 5: the peer already named its DHT port (only its first PORT message is passed on).
    pub dht_port_heard: bool,
    /// What we told this peer by PEX, and when (BEP 11).
    pub pex: crate::extension::pex::PexSender,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub peer_has: Bitfield,
    /// Pieces we verified and did not announce to this peer because it held them already
    /// ([`NodeConfig::send_redundant_have`] off): announced when our download completes.
    pub held_haves: Vec<u32>,
    /// HAVEs wait in the outbox for another message to this peer ([`NodeConfig::have_delay`]): they leave by
    /// this instant at the latest. `None` when the outbox holds none.
    pub haves_due: Option<Instant>,
    pub serving: BTreeSet<BlockRef>,
    /// Pieces we seed that we suggested to this peer (false) or it asked us for (true).
    pub given: std::collections::BTreeMap<u32, bool>,
    /// Pieces the peer suggested to us (BEP 6), oldest first, the last [`MAX_SUGGESTED`] only.
    pub suggested: Vec<u32>,
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
    /// Payload bytes received from this peer, and their rate.
    downloaded: u64,
    download_meter: RateMeter,
    /// Payload bytes sent to this peer, and their rate.
    uploaded: u64,
    upload_meter: RateMeter,
}

impl Conn {
    /// The peer's BEP 3 handshake for torrent `hash` was accepted: note what it said and open the connection.
    pub fn open_with(&mut self, hs: &Handshake, hash: InfoHash) {
        self.peer_id = Some(hs.peer_id);
        self.fast = hs.supports_fast();
        self.extended = hs.supports_extended();
        self.torrent = Some(hash);
        self.phase = ConnPhase::Open;
    }

    /// Take in the peer's BEP 10 extension handshake: its request queue depth and extension ids and, on an
    /// inbound connection, the address it listens on, which is returned for the caller to check against its
    /// bans and file in its peer book.
    pub fn take_ext_handshake(&mut self, ext: ExtHandshake) -> Option<SocketAddr> {
        self.remote_reqq = ext.reqq;
        self.peer_upload_only = ext.upload_only;
        self.remote_ext = ext.messages;
        let listen = ext
            .listen_port
            .filter(|_| !self.outbound)
            .map(|port| SocketAddr::new(self.addr.ip(), port));
        if listen.is_some() {
            self.listen_addr = listen;
        }
        listen
    }

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
            peer_upload_only: false,
            listen_addr: None,
            remote_ext: Default::default(),
            remote_metadata_size: None,
            dht_port_heard: false,
            pex: Default::default(),
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            peer_has: Bitfield::new(0),
            held_haves: Vec::new(),
            haves_due: None,
            serving: BTreeSet::new(),
            given: std::collections::BTreeMap::new(),
            suggested: Vec::new(),
            asked: BTreeSet::new(),
            unrequested_bytes: 0,
            opened: now,
            last_recv: now,
            last_sent: now,
            last_payload: now,
            last_payload_sent: now,
            snubbed_at: None,
            downloaded: 0,
            download_meter: RateMeter::new(RATE_WINDOW),
            uploaded: 0,
            upload_meter: RateMeter::new(RATE_WINDOW),
        }
    }

    /// What a status display shows of this connection: its rates as last measured (at the last payload or
    /// rechoke, see [`Conn::sample_rates`]).
    pub fn stats(&self) -> ConnStats {
        ConnStats {
            addr: self.peer_addr(),
            outbound: self.outbound,
            open: self.phase == ConnPhase::Open,
            am_choking: self.am_choking,
            am_interested: self.am_interested,
            peer_choking: self.peer_choking,
            peer_interested: self.peer_interested,
            peer_pieces: self.peer_has.count(),
            down_rate: self.download_meter.rate(),
            up_rate: self.upload_meter.rate(),
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
        self.downloaded += bytes;
        self.download_meter.sample(now, self.downloaded);
        self.last_payload = now;
        self.snubbed_at = None;
    }

    pub fn on_payload_sent(&mut self, now: Instant, bytes: u64) {
        self.uploaded += bytes;
        self.upload_meter.sample(now, self.uploaded);
        self.last_sent = now;
        self.last_payload_sent = now;
    }

    /// When payload last went either way (or when it connected).
    pub fn last_useful(&self) -> Instant {
        self.last_payload.max(self.last_payload_sent)
    }

    /// Payload bytes sent to this peer on this connection.
    pub fn uploaded(&self) -> u64 {
        self.uploaded
    }

    /// Payload bytes per second we send this peer, as last measured.
    pub fn upload_rate(&self) -> u64 {
        self.upload_meter.rate()
    }

    /// Payload bytes per second this peer delivers to us, as last measured.
    pub fn download_rate(&self) -> u64 {
        self.download_meter.rate()
    }

    /// Measure both rates at `now` even if no payload moved: a peer that went quiet drops to 0 (called at
    /// every rechoke, before ranking).
    pub fn sample_rates(&mut self, now: Instant) {
        self.download_meter.sample(now, self.downloaded);
        self.upload_meter.sample(now, self.uploaded);
    }

    pub fn choke_candidate(&self, id: ConnId, now: Instant, seeding: bool) -> ChokeCandidate {
        let snubbed = self.am_interested
            && !self.peer_choking
            && now.saturating_since(self.last_payload) >= SNUB_AFTER;
        ChokeCandidate {
            conn: id,
            interested: self.peer_interested,
            rate: if seeding {
                self.upload_meter.rate()
            } else {
                self.download_meter.rate()
            },
            snubbed: snubbed || self.snubbed_at.is_some(),
            unchoked: !self.am_choking,
            offers: 0,
            pieces_sent: 0,
            pieces_claimed: 0,
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
        let haves = self.haves_due.map(|at| (at, ConnTimer::Haves));
        rows.into_iter().flatten().chain(haves)
    }

    /// When the next timer fires (the node's index keeps the HAVE timer apart: tests compare with this).
    #[cfg(test)]
    pub fn next_deadline(&self, config: &NodeConfig) -> Option<Instant> {
        self.timers(config).map(|(at, _)| at).min()
    }

    /// When the next timer other than [`ConnTimer::Haves`] fires (the HAVE timer is indexed on its own, see
    /// [`super::conn_deadlines`]).
    pub fn next_deadline_but_haves(&self, config: &NodeConfig) -> Option<Instant> {
        self.timers(config)
            .filter(|(_, timer)| *timer != ConnTimer::Haves)
            .map(|(at, _)| at)
            .min()
    }

    /// The most urgent timer due at `now`, if any.
    pub fn due_timer(&self, now: Instant, config: &NodeConfig) -> Option<ConnTimer> {
        self.timers(config)
            .find(|(at, _)| now >= *at)
            .map(|(_, timer)| timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    fn open_conn() -> Conn {
        let mut c = Conn::new(SocketAddr::from(([10, 0, 0, 2], 6881)), true, None, at(0));
        c.phase = ConnPhase::Open;
        c.peer_interested = true;
        c
    }

    #[test]
    fn rates_are_measured_over_the_window_and_a_quiet_peer_drops_to_zero_at_a_sample() {
        let mut c = open_conn();
        c.on_payload_received(at(0), 16_384);
        c.on_payload_received(at(1_000), 16_384);
        assert_eq!(c.download_rate(), 0, "less than a window measured yet");
        c.on_payload_received(at(2_000), 16_384);
        assert_eq!(c.download_rate(), 16_384, "32 KiB over 2 s");
        assert_eq!(c.stats().down_rate, 16_384);
        assert_eq!(c.choke_candidate(1, at(2_000), false).rate, 16_384);
        c.on_payload_sent(at(2_000), 1_000);
        c.on_payload_sent(at(4_000), 9_000);
        assert_eq!(c.stats().up_rate, 4_500, "9000 bytes sent over 2 s");
        assert_eq!(c.choke_candidate(1, at(4_000), true).rate, 4_500);
        c.on_payload_received(at(3_000), 16_384);
        assert_eq!(
            c.download_rate(),
            16_384,
            "the last measure stands within a window"
        );
        c.sample_rates(at(4_000));
        assert_eq!(
            c.download_rate(),
            8_192,
            "16 KiB since the last measure, over 2 s"
        );
        c.sample_rates(at(10_000));
        assert_eq!(c.download_rate(), 0, "nothing came for 6 s");
        assert_eq!(c.stats().up_rate, 0);
    }
}
