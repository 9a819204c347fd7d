//! A torrent whose disk failed (a write, or reading a piece back): stop downloading, keep serving what is
//! verified, and try again after a wait that grows while the failures go on.

use super::view::TorrentCtx;
use super::{ConnId, NodeConfig, NodeEvent, TorrentError};
use crate::backoff::Backoff;
use crate::bitfield::Bitfield;
use crate::picker::{BlockRef, Picker};
use crate::time::Instant;
use crate::wire::Message;
use rand_core::RngCore;
use std::collections::BTreeSet;
use std::time::Duration;

/// Disk trouble of one torrent: while `retry_at` is set the download is stopped on a disk error, and at
/// `retry_at` it is tried again (a failed write stops it again, with a longer wait).
#[derive(Default)]
pub(crate) struct DiskFaults {
    /// Disk errors in a row (reset by a piece verified after a retry).
    pub failures: u32,
    /// Disk errors in this run.
    pub total: u32,
    /// When the stopped download is tried again.
    pub retry_at: Option<Instant>,
    /// Tried again after a disk error and no piece verified since: only one piece (the probe) is requested
    /// and written until it verifies, so that a disk still full wastes at most that much, and a disk that
    /// fails a write now and then gets one piece's worth of writes to prove itself, not many pieces' worth
    /// spread over every source.
    pub probing: bool,
    /// The piece being fetched while probing (chosen by the first request after the retry).
    pub probe: Option<u32>,
    /// Pieces that were waiting for the verifier when the disk failed: one of their writes may be what failed,
    /// so a SHA-1 mismatch on them blames nobody.
    pub suspect: BTreeSet<u32>,
}

impl DiskFaults {
    /// Record a failure at `now`; returns the wait before the next try.
    pub fn on_failure(&mut self, now: Instant, config: &NodeConfig) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.total = self.total.saturating_add(1);
        let wait = Backoff::new(config.disk_retry_base, config.disk_retry_max).delay(self.failures);
        self.retry_at = Some(now + wait);
        wait
    }

    /// While probing, up to `max` blocks to ask `peer` (holding `peer_has`) for: blocks of the probe piece
    /// only, and none while it waits for its verdict. With no probe piece yet (or one nobody is fetching
    /// that this peer cannot give), the first block the picker chooses for this peer makes its piece the
    /// probe.
    pub fn pick_probe(
        &mut self,
        picker: &mut Picker,
        peer: ConnId,
        peer_has: &Bitfield,
        max: usize,
        now: Instant,
        rng: &mut impl RngCore,
    ) -> Vec<BlockRef> {
        let only = |piece: u32| {
            let mut b = Bitfield::new(peer_has.len());
            b.set(piece);
            b
        };
        match self.probe.filter(|&p| !picker.have().get(p)) {
            Some(p) if picker.is_hashing(p) => Vec::new(),
            Some(p) if peer_has.get(p) => picker.pick(peer, &only(p), max, now, rng),
            Some(_) if picker.total_outstanding() > 0 => Vec::new(),
            _ => {
                let mut blocks = picker.pick(peer, peer_has, max.min(1), now, rng);
                if let Some(first) = blocks.first() {
                    let piece = first.piece;
                    self.probe = Some(piece);
                    let rest = max.saturating_sub(blocks.len());
                    blocks.extend(picker.pick(peer, &only(piece), rest, now, rng));
                }
                blocks
            }
        }
    }
}

impl TorrentCtx<'_> {
    /// The disk failed under a download: stop downloading it, keep serving what is verified, and try again
    /// after a wait. Blocks of pieces being assembled may not have reached the disk, so those pieces start
    /// over; requests out with peers are cancelled.
    pub fn fail_torrent(&mut self, now: Instant, error: TorrentError) {
        let t = &mut *self.t;
        if t.error.is_some() {
            return;
        }
        t.error = Some(error.clone());
        let wait = t.disk.on_failure(now, &self.s.config);
        let suspect = t.picker.hashing_pieces();
        t.disk.suspect.extend(suspect);
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        for id in ids {
            for block in self.t.picker.release_all(id) {
                self.s.send(
                    id,
                    Message::Cancel {
                        index: block.piece,
                        begin: block.begin,
                        length: block.length,
                    },
                );
            }
            self.update_interest(id);
        }
        let t = &mut *self.t;
        let dropped = t.picker.abandon_partial();
        t.stats.bytes_wasted += u64::from(dropped) * u64::from(crate::BLOCK_LENGTH);
        self.s.event(NodeEvent::DiskStalled {
            torrent: self.hash,
            error,
            retry_in_ms: wait.as_millis() as u64,
        });
    }

    /// A download stopped on a disk error is due to be tried again.
    pub fn retry_after_disk_error(&mut self, now: Instant) {
        let t = &mut *self.t;
        if t.disk.retry_at.is_none_or(|at| now < at) {
            return;
        }
        t.disk.retry_at = None;
        if t.error.take().is_none() {
            return;
        }
        t.disk.probing = true;
        t.disk.probe = None;
        let attempt = t.disk.failures;
        self.s.event(NodeEvent::DiskRetry {
            torrent: self.hash,
            attempt,
        });
        self.refill_all(now);
    }
}
