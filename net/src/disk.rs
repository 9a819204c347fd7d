//! The disk worker: carries out a node's disk operations strictly in the order they were emitted, in
//! batches, through a [`Blocking`] runner (a thread in real runs, inline in the simulator). One exception on a
//! thread pool: a sync-and-checkpoint starts once every earlier operation finished, but the operations after it
//! do not wait for it (an `fdatasync` takes milliseconds to tens of milliseconds, and used to stall every write
//! and hash queued behind it: 37% of a 1 GiB download's wall time, `bench/RESULTS.md`). Invariant 2 holds: the
//! checkpoint still claims only pieces whose writes finished before its sync began, and is replaced only after
//! that sync returned.
//!
//! Two shortcuts on real disks, neither of which reorders anything that can be observed. Blocks of a piece are
//! held in memory until the piece is complete ([`PieceAssembly`]), then written with one vectored write and
//! hashed from those bytes: the hash still follows the write, the checkpoint still follows the hash. And a
//! block to serve that is in the page cache is read right here, without a trip to the thread pool (most of a
//! seeder's CPU was the wake-ups of that trip, `bench/RESULTS.md`); it may overtake queued writes, which is
//! harmless because only verified pieces are served and a piece is verified only after its write returned.
//! Where the files can go to a socket as they are (real files, their range in the page cache), a block to serve
//! is not read at all: the node is told it is [sendable](DiskDone::Sendable) and the socket sends it from the
//! file ([`crate::send_file`]).

use crate::piece_assembly::{PieceAssembly, Taken};
use crate::state_dir::StateDir;
use crate::storage::{retry_io, Blocking, IO_TRIES};
use crate::torrent_store::TorrentStore;
use bytes::Bytes;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_core::layout::FileLayout;
use enjambre_core::metainfo::InfoHash;
use enjambre_core::node::{ConnId, DiskDone, DiskError, DiskOp};
use enjambre_core::picker::BlockRef;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Most operations carried out in one trip to the blocking runner.
const BATCH: usize = 64;

/// Most bytes of received blocks held in memory until their piece is complete ([`PieceAssembly`]): room for
/// 32 pieces of 512 KiB in flight at once, well inside the leecher's 64 MiB memory target.
const HOLD_LIMIT: u64 = 16 * 1024 * 1024;

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
            let mut assembly = PieceAssembly::new(HOLD_LIMIT);
            // Where a block to serve is read from the page cache (see `read_cached`).
            let mut scratch = Vec::new();
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
                        } => {
                            // Held until its piece is complete where that piece will be hashed from
                            // memory; written at once elsewhere (the simulators' disks, which need no
                            // read-back and whose thousand peers would hold their pieces for nothing).
                            let piece = store_of(&stores, &torrent)
                                .filter(|s| s.hashes_from_memory())
                                .and_then(|s| piece_holding(s.layout(), offset, data.len()));
                            let now = match piece {
                                Some(piece) => assembly.hold(torrent, piece, offset, data),
                                None => vec![(offset, data)],
                            };
                            plain.extend(now.into_iter().map(|(offset, data)| PlainOp::Write {
                                torrent,
                                offset,
                                data,
                            }));
                        }
                        DiskOp::Hash { torrent, piece } => {
                            let span = store_of(&stores, &torrent).map(|s| {
                                let l = s.layout();
                                (l.piece_offset(piece), u64::from(l.piece_len(piece)))
                            });
                            let taken = match span {
                                Some((start, len)) if piece < piece_count(&stores, &torrent) => {
                                    assembly.take(torrent, piece, start, len)
                                }
                                _ => Taken::Nothing,
                            };
                            match taken {
                                Taken::Whole(blocks) => plain.push(PlainOp::WriteAndHash {
                                    torrent,
                                    piece,
                                    blocks,
                                }),
                                Taken::Partial(writes) => {
                                    plain.extend(writes.into_iter().map(|(offset, data)| {
                                        PlainOp::Write {
                                            torrent,
                                            offset,
                                            data,
                                        }
                                    }));
                                    plain.push(PlainOp::Hash { torrent, piece });
                                }
                                Taken::Nothing => plain.push(PlainOp::Hash { torrent, piece }),
                            }
                        }
                        DiskOp::Read {
                            torrent,
                            conn,
                            block,
                        } if sendable(&stores, &torrent, &block) => {
                            // Sent from the files by the socket: nothing to read.
                            results.push(DiskDone::Sendable {
                                torrent,
                                conn,
                                block,
                            })
                        }
                        DiskOp::Read {
                            torrent,
                            conn,
                            block,
                        } => match read_cached(&stores, &torrent, &block, &mut scratch) {
                            // Served from the page cache here: no trip to the blocking runner.
                            Some(data) => results.push(DiskDone::Read {
                                torrent,
                                conn,
                                block,
                                data: Ok(data),
                            }),
                            None => plain.push(PlainOp::Read {
                                torrent,
                                conn,
                                block,
                            }),
                        },
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
    /// A whole piece's blocks in offset order: one vectored write, then the hash of those bytes.
    WriteAndHash {
        torrent: InfoHash,
        piece: u32,
        blocks: Vec<Bytes>,
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
            let mut out = Vec::new();
            for op in ops {
                execute(&stores, op, &mut out);
            }
            out
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

fn piece_count(stores: &Stores, hash: &InfoHash) -> u32 {
    store_of(stores, hash).map_or(0, |s| s.layout().piece_count())
}

/// The piece that holds all of `offset..offset + len`, if one does.
fn piece_holding(layout: &FileLayout, offset: u64, len: usize) -> Option<u32> {
    let piece = u32::try_from(offset / u64::from(layout.piece_length())).ok()?;
    let end = offset.checked_add(len as u64)?;
    (piece < layout.piece_count()
        && end <= layout.piece_offset(piece) + u64::from(layout.piece_len(piece)))
    .then_some(piece)
}

/// A block to serve read from the page cache without waiting for the device, or `None` when it must go
/// through the blocking runner (not cached, storage that cannot tell, any error: the runner reports it).
/// Read into the worker's `scratch` and copied out only when it was served: storage that cannot tell (the
/// simulator's disks) answers no to every read, and zeroing a block allocated for each was about 1% of a
/// crowd's CPU (a third of the zeroed allocations of a 50-peer crowd).
fn read_cached(
    stores: &Stores,
    torrent: &InfoHash,
    block: &BlockRef,
    scratch: &mut Vec<u8>,
) -> Option<Bytes> {
    let store = store_of(stores, torrent)?;
    let offset = store.layout().piece_offset(block.piece) + u64::from(block.begin);
    scratch.resize(block.length as usize, 0);
    matches!(store.read_cached(offset, scratch), Ok(true)).then(|| Bytes::copy_from_slice(scratch))
}

/// Whether a block to serve can go to its socket straight from the files ([`TorrentStore::sendable`]).
fn sendable(stores: &Stores, torrent: &InfoHash, block: &BlockRef) -> bool {
    store_of(stores, torrent).is_some_and(|store| {
        let offset = store.layout().piece_offset(block.piece) + u64::from(block.begin);
        store.sendable(offset, u64::from(block.length))
    })
}

/// The error for an operation on a torrent whose files are not open.
fn not_open() -> DiskError {
    DiskError::new(std::io::ErrorKind::NotFound, "torrent files are not open")
}

/// Write a whole piece at once and hash the bytes written; on a failed write, the failure and then the hash
/// of what the disk holds (the answers a failed block write and the hash after it gave).
fn write_and_hash(
    stores: &Stores,
    torrent: InfoHash,
    piece: u32,
    blocks: &[Bytes],
    out: &mut Vec<DiskDone>,
) {
    let Some(store) = store_of(stores, &torrent) else {
        out.push(DiskDone::WriteFailed {
            torrent,
            error: not_open(),
        });
        out.push(DiskDone::Hashed {
            torrent,
            piece,
            hash: Err(not_open()),
        });
        return;
    };
    let slices: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
    // Idempotent, like a block's write: tried again before it stops the download.
    let what = format!("write of piece {piece}");
    let hash = match retry_io(IO_TRIES, &what, || store.write_piece(piece, &slices)) {
        Ok(()) => {
            let what = format!("hashing piece {piece}");
            retry_io(IO_TRIES, &what, || store.hash_written_piece(piece, &slices))
        }
        Err(e) => {
            out.push(DiskDone::WriteFailed {
                torrent,
                error: DiskError::io(&format!("write of piece {piece} failed"), &e),
            });
            let what = format!("hashing piece {piece}");
            retry_io(IO_TRIES, &what, || store.hash_piece(piece))
        }
    };
    out.push(DiskDone::Hashed {
        torrent,
        piece,
        hash: hash.map_err(DiskError::from),
    });
}

/// Carry out one operation, pushing its answers to `out` (none for a successful write).
fn execute(stores: &Stores, op: PlainOp, out: &mut Vec<DiskDone>) {
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
                    let what = format_args!("write at offset {offset}");
                    retry_io(IO_TRIES, what, || s.write(offset, &data))
                        .map_err(|e| DiskError::io(&format!("write at offset {offset} failed"), &e))
                });
            if let Err(error) = result {
                out.push(DiskDone::WriteFailed { torrent, error });
            }
        }
        PlainOp::WriteAndHash {
            torrent,
            piece,
            blocks,
        } => write_and_hash(stores, torrent, piece, &blocks, out),
        PlainOp::Hash { torrent, piece } => {
            let hash = store_of(stores, &torrent)
                .ok_or_else(missing)
                .and_then(|s| {
                    // A read that fails now and then (EIO) must not make a checkpointed piece look lost
                    // (a failed spot check drops the checkpoint's claims): hashing is idempotent, try again.
                    let what = format_args!("hashing piece {piece}");
                    retry_io(IO_TRIES, what, || s.hash_piece(piece)).map_err(DiskError::from)
                });
            out.push(DiskDone::Hashed {
                torrent,
                piece,
                hash,
            });
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
            out.push(DiskDone::Read {
                torrent,
                conn,
                block,
                data,
            });
        }
    }
}
