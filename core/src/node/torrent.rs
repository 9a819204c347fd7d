//! One torrent inside the node: its picker and choker, the resume check, the checkpoint group commit, the
//! announce schedule, its known peers and its counters.

use super::checkpointing::CheckpointState;
use super::conn::Conn;
use super::disk_faults::DiskFaults;
use super::peers::PeerBook;
use super::verify::Check;
use super::{ConnId, NodeConfig, TorrentError, TorrentStats};
use crate::backoff::Backoff;
use crate::bitfield::Bitfield;
use crate::choker::{Choker, SlotCensus};
use crate::metainfo::Metainfo;
use crate::picker::{Picker, PickerConfig};
use crate::time::Instant;
use crate::tracker::proto::MAX_ANNOUNCED_BITFIELD;
use crate::tracker::{AnnounceExtensions, AnnounceParams, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// When to talk to the tracker next.
pub(crate) struct AnnounceState {
    pub enabled: bool,
    pub started: bool,
    pub next_at: Instant,
    pub last_at: Option<Instant>,
    pub last_left: Option<u64>,
    pub interval: Duration,
    pub failures: u32,
    /// Why the last announce failed, until one succeeds.
    pub last_error: Option<String>,
    /// This torrent's place in the announce interval, as a fraction of 2^64 read from its info hash.
    pub phase: u64,
    /// Whether the regular schedule still has to be moved to [`AnnounceState::phase`].
    pub phased: bool,
}

/// The earliest a seeding torrent's first regular announce is moved to, as a fraction of the interval
/// (1/8): the rest of the interval is where the phases spread.
const EARLIEST_PHASE_EIGHTHS: u32 = 1;

impl AnnounceState {
    fn new(enabled: bool, config: &NodeConfig, now: Instant, phase: u64) -> AnnounceState {
        AnnounceState {
            enabled,
            started: false,
            next_at: now,
            last_at: None,
            last_left: None,
            interval: config.announce_interval,
            failures: 0,
            last_error: None,
            phase,
            phased: false,
        }
    }

    /// When, after a reply at `now`, the next regular announce is due. Torrents added together (a library of
    /// ten thousand files served at once) would announce together at every interval, ten thousand requests
    /// in one burst; so the first regular announce of a *seeding* torrent comes at its own phase, between
    /// 1/8 and the whole of the interval (taken from its info hash: spread like the hashes, no random draw),
    /// and every later one a whole interval after the previous. A seeder's announce only keeps it listed
    /// (it comes well before the tracker's peer timeout of 2.5 intervals); a downloading torrent keeps the
    /// plain interval, since its announces are what bring it peers.
    fn next_regular(&mut self, now: Instant, seeding: bool) -> Instant {
        if !seeding || self.phased {
            return now + self.interval;
        }
        self.phased = true;
        let nanos = self.interval.as_nanos();
        let earliest = nanos * u128::from(EARLIEST_PHASE_EIGHTHS) / 8;
        let spread = ((nanos - earliest) * u128::from(self.phase)) >> 64;
        let wait = u64::try_from(earliest + spread).unwrap_or(u64::MAX);
        now + Duration::from_nanos(wait)
    }

    pub fn on_sent(&mut self, now: Instant, _config: &NodeConfig, left: u64, event: Event) {
        self.last_at = Some(now);
        self.last_left = Some(left);
        // Until the reply comes, do not announce again on the regular schedule.
        self.next_at = now + self.interval;
        if event == Event::Started {
            self.started = true;
        }
        if event == Event::Stopped {
            self.enabled = false;
        }
    }

    /// A tracker answered; `seeding`: the torrent has every piece (see [`AnnounceState::next_regular`]).
    pub fn on_reply(
        &mut self,
        now: Instant,
        config: &NodeConfig,
        interval: Option<u32>,
        seeding: bool,
    ) {
        self.failures = 0;
        self.last_error = None;
        let secs = interval
            .map(u64::from)
            .unwrap_or(config.announce_interval.as_secs())
            .clamp(1, 3600);
        self.interval = Duration::from_secs(secs);
        self.next_at = self.next_regular(now, seeding);
    }

    /// An announce failed at `now`; `draw` (a random number from the node's seeded RNG) spreads the wait
    /// before the next one over the upper half of the backoff ([`Backoff::jittered`]). Without it, the
    /// peers of a crowd whose announces a full tracker refused together retried together, at the same
    /// offsets, and were refused together again: at 300 peers against 4 tracker connections, 5 to 8
    /// failures in a row for a tenth of the peers, which stayed without a single connection for minutes.
    pub fn on_failure(&mut self, now: Instant, config: &NodeConfig, error: &str, draw: u64) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error.to_string());
        self.next_at = now + announce_retry(config).jittered(self.failures, draw);
    }

    /// Whether progress since the last announce is worth telling the tracker about now.
    pub fn progress_due(&self, now: Instant, config: &NodeConfig) -> bool {
        self.enabled
            && self
                .last_at
                .is_some_and(|t| now >= t + config.progress_announce_interval)
    }

    /// When progress is next worth announcing.
    pub fn next_progress_at(&self, config: &NodeConfig) -> Option<Instant> {
        self.last_at.map(|t| t + config.progress_announce_interval)
    }
}

/// The wait before announcing again after failures: twice the redial base after the first failure,
/// doubling for five failures, at most a minute (before jitter, see [`AnnounceState::on_failure`]).
pub(crate) fn announce_retry(config: &NodeConfig) -> Backoff {
    let base = config.reconnect_base;
    Backoff::new(
        base.saturating_mul(2),
        base.saturating_mul(32).min(Duration::from_secs(60)),
    )
}

/// A torrent's announce phase: the last 8 bytes of its info hash (uniform over torrents, as SHA-1 is).
fn phase_of(meta: &Metainfo) -> u64 {
    let mut last = [0u8; 8];
    last.copy_from_slice(&meta.info_hash.0[12..]);
    u64::from_be_bytes(last)
}

/// Running totals of one torrent.
#[derive(Default)]
pub(crate) struct Counters {
    pub bytes_received: u64,
    pub bytes_uploaded: u64,
    pub bytes_wasted: u64,
    pub hash_failures: u32,
    pub per_source: BTreeMap<SocketAddr, u64>,
    pub pieces_resumed: u32,
    pub pieces_downloaded: u32,
    pub checkpoints_written: u32,
}

pub(crate) struct Torrent {
    pub meta: Arc<Metainfo>,
    pub picker: Picker,
    pub choker: Choker,
    /// How the connections in [`Torrent::conns`] stand towards the upload slots, kept as they change.
    pub slots: SlotCensus,
    /// What we handed out while seeding, for our suggestions.
    pub spread: crate::spread::Spread,
    pub check: Option<Check>,
    pub error: Option<TorrentError>,
    pub disk: DiskFaults,
    pub peers: PeerBook,
    pub conns: BTreeSet<ConnId>,
    pub announce: AnnounceState,
    pub ckpt: CheckpointState,
    pub stats: Counters,
    pub next_rechoke: Instant,
    pub next_optimistic: Instant,
    pub completed_at: Option<Instant>,
}

impl Torrent {
    pub fn new(config: &NodeConfig, meta: Arc<Metainfo>, now: Instant, announce: bool) -> Torrent {
        let have = Bitfield::new(meta.piece_count());
        let picker_config = PickerConfig {
            selection: config.piece_selection,
            ..PickerConfig::default()
        };
        let picker = Picker::new(
            picker_config,
            meta.piece_length(),
            meta.total_length(),
            have,
        );
        Torrent {
            picker,
            choker: Choker::new(config.upload_slots, config.optimistic_unchoke)
                .with_tie_order(config.seed),
            slots: SlotCensus::default(),
            spread: crate::spread::Spread::new(meta.piece_count()),
            check: None,
            error: None,
            disk: DiskFaults::default(),
            peers: PeerBook::new(config),
            conns: BTreeSet::new(),
            announce: AnnounceState::new(announce, config, now, phase_of(&meta)),
            ckpt: CheckpointState::default(),
            stats: Counters::default(),
            next_rechoke: now + config.rechoke_interval,
            next_optimistic: now,
            completed_at: None,
            meta,
        }
    }

    /// Bytes still missing.
    pub fn left(&self) -> u64 {
        let have = self.picker.have();
        let mut have_bytes = u64::from(have.count()) * u64::from(self.meta.piece_length());
        let last = self.meta.piece_count().saturating_sub(1);
        if have.get(last) {
            have_bytes -= u64::from(self.meta.piece_length() - self.meta.piece_len(last));
        }
        self.meta.total_length().saturating_sub(have_bytes)
    }

    pub fn announce_params(&self, config: &NodeConfig, event: Event) -> AnnounceParams {
        let left = self.left();
        // Verified pieces only (invariant 1): the picker's `have` holds pieces whose SHA-1 matched.
        let have = self.picker.have().as_bytes();
        let pieces = (left > 0 && have.len() <= MAX_ANNOUNCED_BITFIELD).then(|| have.to_vec());
        AnnounceParams {
            info_hash: self.meta.info_hash,
            peer_id: config.peer_id,
            port: config.listen_port,
            uploaded: self.stats.bytes_uploaded,
            downloaded: self.stats.bytes_received,
            left,
            event,
            numwant: 50,
            key: crate::tracker::udp::announce_key(
                config.seed,
                &config.peer_id,
                &self.meta.info_hash,
            ),
            ext: AnnounceExtensions {
                pieces,
                status_port: config.status_port,
            },
        }
    }

    pub fn snapshot(&self, conns: &BTreeMap<ConnId, Conn>, now: Instant) -> TorrentStats {
        TorrentStats {
            name: self.meta.info.name.clone(),
            info_hash: self.meta.info_hash,
            size: self.meta.total_length(),
            pieces_total: self.meta.piece_count(),
            pieces_have: self.picker.have().count(),
            pieces_resumed: self.stats.pieces_resumed,
            pieces_downloaded: self.stats.pieces_downloaded,
            pieces_durable: self.ckpt.durable,
            bytes_downloaded: self.stats.bytes_received,
            bytes_uploaded: self.stats.bytes_uploaded,
            bytes_wasted: self.stats.bytes_wasted,
            hash_failures: self.stats.hash_failures,
            sources: self.stats.per_source.clone(),
            peers: self.conns.iter().filter(|c| conns.contains_key(c)).count() as u32,
            connections: self
                .conns
                .iter()
                .filter_map(|c| conns.get(c))
                .map(|c| c.stats())
                .collect(),
            checkpoints_written: self.stats.checkpoints_written,
            complete: self.picker.have().is_full(),
            checking: self.check.is_some(),
            error: self.error.clone(),
            error_retry_in_ms: self
                .disk
                .retry_at
                .filter(|_| self.error.is_some())
                .map(|at| at.saturating_since(now).as_millis() as u64),
            disk_errors: self.disk.total,
            banned: self.peers.banned(),
            tracker_error: self.announce.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    #[test]
    fn seeders_answered_together_announce_again_spread_over_the_interval() {
        let config = NodeConfig::default();
        let interval = 1_000u64;
        let start = at(100);
        // 1,000 torrents with phases spread as info hashes are: all answered at the same instant.
        let mut next: Vec<u64> = (0..1_000u64)
            .map(|i| {
                let phase = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut a = AnnounceState::new(true, &config, start, phase);
                a.on_reply(start, &config, Some(interval as u32), true);
                a.next_at.saturating_since(start).as_secs()
            })
            .collect();
        next.sort_unstable();
        // None before 1/8 of the interval, none after it, and no tenth of the interval holds more than
        // twice its share (1,000 announces over 7/8 of the interval: about 114 per tenth).
        assert!(next[0] >= interval / 8, "{}", next[0]);
        assert!(next[999] <= interval, "{}", next[999]);
        let mut per_tenth = [0u32; 10];
        for n in &next {
            per_tenth[(*n * 10 / interval).min(9) as usize] += 1;
        }
        assert!(per_tenth.iter().all(|&c| c <= 230), "{per_tenth:?}");
        assert!(per_tenth[2..].iter().all(|&c| c >= 50), "{per_tenth:?}");
    }

    #[test]
    fn the_phase_moves_only_a_seeders_first_regular_announce() {
        let config = NodeConfig::default();
        let phase = 1u64 << 63;
        let mut seeder = AnnounceState::new(true, &config, at(0), phase);
        seeder.on_reply(at(0), &config, Some(100), true);
        // Half-way between 1/8 and the whole interval.
        assert_eq!(seeder.next_at, at(0) + Duration::from_micros(56_250_000));
        // Later replies keep the whole interval: the phase stays where it was put.
        seeder.on_reply(at(56), &config, Some(100), true);
        assert_eq!(seeder.next_at, at(156));
        // A downloading torrent keeps the plain interval (its announces bring it peers).
        let mut leecher = AnnounceState::new(true, &config, at(0), phase);
        leecher.on_reply(at(0), &config, Some(100), false);
        assert_eq!(leecher.next_at, at(100));
    }
}
