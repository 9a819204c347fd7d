//! When a torrent's checkpoint is saved: a group commit with one sync-and-checkpoint in flight at a time
//! (invariant 2: the checkpoint goes out in the same ordered disk operation as the sync of what it claims),
//! and a growing wait when saves fail.

use super::view::TorrentCtx;
use super::{DiskError, DiskOp, NodeEvent, Output, TorrentError};
use crate::backoff::Backoff;
use crate::bitfield::Bitfield;
use crate::checkpoint::Checkpoint;
use crate::time::Instant;
use std::time::Duration;

/// Checkpoint group commit: one sync-and-checkpoint in flight at a time; pieces verified meanwhile ride on the
/// next one.
#[derive(Default)]
pub(crate) struct CheckpointState {
    pub generation: u64,
    pub in_flight: Option<Bitfield>,
    pub dirty: bool,
    pub durable: u32,
    pub retry_at: Option<Instant>,
    /// Saves failed in a row.
    pub failures: u32,
}

/// Waits between attempts to save a checkpoint that failed to save.
const CHECKPOINT_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

impl TorrentCtx<'_> {
    /// Ask for a checkpoint if pieces were verified since the last one and none is in flight.
    pub fn maybe_checkpoint(&mut self) {
        let t = &mut *self.t;
        // A download stopped on a disk error still saves what it verified (the save may fail too, and is
        // tried again later).
        if t.ckpt.in_flight.is_some() || !t.ckpt.dirty {
            return;
        }
        if t.ckpt.retry_at.is_some_and(|at| self.s.now < at) {
            return;
        }
        t.ckpt.retry_at = None;
        t.ckpt.generation += 1;
        t.ckpt.dirty = false;
        let have = t.picker.have().clone();
        t.ckpt.in_flight = Some(have.clone());
        let checkpoint = Checkpoint::new(&t.meta, &have);
        let generation = t.ckpt.generation;
        self.s
            .outputs
            .push_back(Output::Disk(DiskOp::SyncAndCheckpoint {
                torrent: self.hash,
                generation,
                checkpoint,
            }));
    }

    /// The driver saved (or failed to save) checkpoint `generation`.
    pub fn on_checkpoint_saved(&mut self, now: Instant, generation: u64, error: Option<DiskError>) {
        let t = &mut *self.t;
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
                // The next one waits out the interval (the retry timer asks for it then, if it is due).
                let interval = self.s.config.checkpoint_interval;
                if !interval.is_zero() {
                    t.ckpt.retry_at = Some(now + interval);
                }
                t.stats.checkpoints_written += 1;
                let first_missing = saved.first_missing();
                self.s.event(NodeEvent::CheckpointWritten {
                    torrent: self.hash,
                    verified: saved.count(),
                    first_missing,
                });
            }
            Some(e) => {
                t.ckpt.dirty = true;
                // 1 s, doubling while saves keep failing (a full disk), up to 30 s.
                t.ckpt.failures = t.ckpt.failures.saturating_add(1);
                let wait = CHECKPOINT_RETRY.delay(t.ckpt.failures);
                t.ckpt.retry_at = Some(now + wait);
                self.s.event(NodeEvent::TorrentError {
                    torrent: self.hash,
                    error: TorrentError::CheckpointNotSaved(e),
                });
                return;
            }
        }
        self.maybe_checkpoint();
    }
}
