//! The disk worker: carries out a node's disk operations strictly in the order they were emitted, in
//! batches, through a [`Blocking`] runner (a thread in real runs, inline in the simulator). One exception on a
//! thread pool: a sync-and-checkpoint starts once every earlier operation finished, but the operations after it
//! do not wait for it (an `fdatasync` takes milliseconds to tens of milliseconds, and used to stall every write
//! and hash queued behind it: 37% of a 1 GiB download's wall time, `bench/RESULTS.md`). Invariant 2 holds: the
//! checkpoint still claims only pieces whose writes finished before its sync began, and is replaced only after
//! that sync returned.

use crate::state_dir::StateDir;
use crate::storage::{retry_io, Blocking, IO_TRIES};
use crate::torrent_store::TorrentStore;
use bytes::Bytes;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_core::metainfo::InfoHash;
use enjambre_core::node::{ConnId, DiskDone, DiskError, DiskOp};
use enjambre_core::picker::BlockRef;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Most operations carried out in one trip to the blocking runner.
const BATCH: usize = 64;

/// The open torrents' files, shared by the node task (which registers them) and the disk worker.
pub(crate) type Stores = Arc<Mutex<BTreeMap<InfoHash, Arc<TorrentStore>>>>;

/// Handle to a running disk worker.
pub(crate) struct DiskWorker {
    ops: mpsc::UnboundedSender<DiskOp>,
    /// Bytes of block writes queued and not yet written.
    queued: Arc<AtomicU64>,
    /// Signalled whenever the worker finishes a batch (the backlog shrank).
    relief: Arc<Notify>,
}

impl DiskWorker {
    /// Start the worker; its results go to `done` (unbounded, so the worker never waits on the node task
    /// while the node task may be waiting on the worker's backlog). With `unsafe_checkpoint_before_sync` the
    /// worker writes a checkpoint *before* syncing the data it claims: a deliberate breach of invariant 2 that
    /// exists only so the simulator's crash sweep can show it catches one. Never set it otherwise.
    pub fn spawn<B: Blocking>(
        blocking: B,
        stores: Stores,
        state: StateDir,
        done: mpsc::UnboundedSender<DiskDone>,
        unsafe_checkpoint_before_sync: bool,
    ) -> DiskWorker {
        let (ops, mut rx) = mpsc::unbounded_channel::<DiskOp>();
        let state = Arc::new(state);
        let queued = Arc::new(AtomicU64::new(0));
        let relief = Arc::new(Notify::new());
        let (q, r) = (queued.clone(), relief.clone());
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let written: u64 = batch
                    .iter()
                    .map(|op| {
                        if let DiskOp::Write { data, .. } = op {
                            data.len() as u64
                        } else {
                            0
                        }
                    })
                    .sum();
                let mut results = Vec::new();
                let mut plain = Vec::new();
                for op in batch {
                    match op {
                        DiskOp::SyncAndCheckpoint {
                            torrent,
                            generation,
                            checkpoint,
                        } => {
                            // Every earlier operation finishes first: the sync covers their writes.
                            results.extend(
                                run_plain(&blocking, &stores, std::mem::take(&mut plain)).await,
                            );
                            let job = sync_and_checkpoint(
                                blocking.clone(),
                                stores.clone(),
                                state.clone(),
                                torrent,
                                checkpoint,
                                unsafe_checkpoint_before_sync,
                            );
                            if blocking.overlap_syncs() {
                                // Later writes and hashes go on while the disk syncs; the node has one
                                // checkpoint in flight at a time and claims only what this one saved.
                                let done = done.clone();
                                tokio::spawn(async move {
                                    let error = job.await;
                                    let _ = done.send(DiskDone::CheckpointSaved {
                                        torrent,
                                        generation,
                                        error,
                                    });
                                });
                            } else {
                                results.push(DiskDone::CheckpointSaved {
                                    torrent,
                                    generation,
                                    error: job.await,
                                });
                            }
                        }
                        DiskOp::Write {
                            torrent,
                            offset,
                            data,
                        } => plain.push(PlainOp::Write {
                            torrent,
                            offset,
                            data,
                        }),
                        DiskOp::Hash { torrent, piece } => {
                            plain.push(PlainOp::Hash { torrent, piece })
                        }
                        DiskOp::Read {
                            torrent,
                            conn,
                            block,
                        } => plain.push(PlainOp::Read {
                            torrent,
                            conn,
                            block,
                        }),
                    }
                }
                results.extend(run_plain(&blocking, &stores, plain).await);
                q.fetch_sub(written, Ordering::Relaxed);
                r.notify_one();
                for result in results {
                    if done.send(result).is_err() {
                        return;
                    }
                }
            }
        });
        DiskWorker {
            ops,
            queued,
            relief,
        }
    }

    /// Queue an operation.
    pub fn submit(&self, op: DiskOp) {
        if let DiskOp::Write { data, .. } = &op {
            self.queued.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        let _ = self.ops.send(op);
    }

    /// Bytes of block writes waiting for the disk.
    pub fn backlog(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// What to wait on for the backlog to shrink.
    pub fn relief(&self) -> Arc<Notify> {
        self.relief.clone()
    }
}

/// A [`DiskOp`] other than a checkpoint, which has its own path ([`sync_and_checkpoint`]): these run in
/// batches, one trip to the blocking runner each.
enum PlainOp {
    Write {
        torrent: InfoHash,
        offset: u64,
        data: Bytes,
    },
    Hash {
        torrent: InfoHash,
        piece: u32,
    },
    Read {
        torrent: InfoHash,
        conn: ConnId,
        block: BlockRef,
    },
}

async fn run_plain<B: Blocking>(blocking: &B, stores: &Stores, ops: Vec<PlainOp>) -> Vec<DiskDone> {
    if ops.is_empty() {
        return Vec::new();
    }
    let stores = stores.clone();
    blocking
        .run(move || {
            ops.into_iter()
                .filter_map(|op| execute(&stores, op))
                .collect()
        })
        .await
}

/// Sync the data files, then (a separate trip to the disk) replace the checkpoint.
async fn sync_and_checkpoint<B: Blocking>(
    blocking: B,
    stores: Stores,
    state: Arc<StateDir>,
    torrent: InfoHash,
    checkpoint: Checkpoint,
    unsafe_checkpoint_before_sync: bool,
) -> Option<DiskError> {
    let store = store_of(&stores, &torrent);
    let sync = move || -> Result<(), DiskError> {
        store
            .ok_or_else(not_open)?
            .sync()
            .map_err(|e| DiskError::io("sync failed", &e))
    };
    let st = state.clone();
    let save = move || -> Result<(), DiskError> {
        st.save_checkpoint(&checkpoint)
            .map_err(|e| DiskError::io("checkpoint write failed", &e))
    };
    let result = if unsafe_checkpoint_before_sync {
        match blocking.run(save).await {
            Ok(()) => blocking.run(sync).await,
            Err(e) => Err(e),
        }
    } else {
        match blocking.run(sync).await {
            Ok(()) => blocking.run(save).await,
            Err(e) => Err(e),
        }
    };
    result.err()
}

fn store_of(stores: &Stores, hash: &InfoHash) -> Option<Arc<TorrentStore>> {
    stores.lock().ok()?.get(hash).cloned()
}

/// The error for an operation on a torrent whose files are not open.
fn not_open() -> DiskError {
    DiskError::new(std::io::ErrorKind::NotFound, "torrent files are not open")
}

/// Carry out one operation; `None` when it needs no answer (a successful write).
fn execute(stores: &Stores, op: PlainOp) -> Option<DiskDone> {
    let missing = not_open;
    match op {
        PlainOp::Write {
            torrent,
            offset,
            data,
        } => {
            let result = store_of(stores, &torrent)
                .ok_or_else(missing)
                .and_then(|s| {
                    // A positional write is idempotent: one that fails now and then (EIO) is tried again
                    // before it stops the download, as a read-back is.
                    let what = format!("write at offset {offset}");
                    retry_io(IO_TRIES, &what, || s.write(offset, &data))
                        .map_err(|e| DiskError::io(&format!("write at offset {offset} failed"), &e))
                });
            result
                .err()
                .map(|error| DiskDone::WriteFailed { torrent, error })
        }
        PlainOp::Hash { torrent, piece } => {
            let hash = store_of(stores, &torrent)
                .ok_or_else(missing)
                .and_then(|s| {
                    // A read that fails now and then (EIO) must not make a checkpointed piece look lost
                    // (a failed spot check drops the checkpoint's claims): hashing is idempotent, try again.
                    let what = format!("hashing piece {piece}");
                    retry_io(IO_TRIES, &what, || s.hash_piece(piece)).map_err(DiskError::from)
                });
            Some(DiskDone::Hashed {
                torrent,
                piece,
                hash,
            })
        }
        PlainOp::Read {
            torrent,
            conn,
            block,
        } => {
            let data = store_of(stores, &torrent)
                .ok_or_else(missing)
                .and_then(|s| {
                    let offset = s.layout().piece_offset(block.piece) + u64::from(block.begin);
                    let mut buf = vec![0u8; block.length as usize];
                    s.read(offset, &mut buf)
                        .map(|()| Bytes::from(buf))
                        .map_err(DiskError::from)
                });
            Some(DiskDone::Read {
                torrent,
                conn,
                block,
                data,
            })
        }
    }
}
