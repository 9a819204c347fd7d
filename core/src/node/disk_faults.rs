//! A torrent whose disk failed (a write, or reading a piece back): stop downloading, keep serving what is
//! verified, and try again after a wait that grows while the failures go on.

use super::view::TorrentCtx;
use super::{ConnId, NodeEvent, TorrentError};
use crate::time::Instant;
use crate::wire::Message;

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
        let attempt = t.disk.failures;
        self.s.event(NodeEvent::DiskRetry {
            torrent: self.hash,
            attempt,
        });
        self.refill_all(now);
    }
}
