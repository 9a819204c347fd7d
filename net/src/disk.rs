//! The disk worker: carries out a node's disk operations strictly in the order they were emitted, in
//! batches, through a [`Blocking`] runner (a thread in real runs, inline in the simulator).

use crate::peer::Msg;
use crate::state_dir::StateDir;
use crate::storage::Blocking;
use crate::torrent_store::TorrentStore;
use bytes::Bytes;
use enjambre_core::metainfo::InfoHash;
use enjambre_core::node::{DiskDone, DiskOp, Input};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Most operations carried out in one trip to the blocking runner.
const BATCH: usize = 64;

/// The open torrents' files, shared by the node task (which registers them) and the disk worker.
pub(crate) type Stores = Arc<Mutex<BTreeMap<InfoHash, Arc<TorrentStore>>>>;

/// Handle to a running disk worker.
pub(crate) struct DiskWorker {
    ops: mpsc::UnboundedSender<DiskOp>,
}

impl DiskWorker {
    /// Start the worker; its results go to `inbox` as [`Input::Disk`].
    pub fn spawn<B: Blocking, S: Send + 'static>(
        blocking: B,
        stores: Stores,
        state: StateDir,
        inbox: mpsc::Sender<Msg<S>>,
    ) -> DiskWorker {
        let (ops, mut rx) = mpsc::unbounded_channel::<DiskOp>();
        let state = Arc::new(state);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let stores = stores.clone();
                let state = state.clone();
                let results = blocking
                    .run(move || execute_batch(&stores, &state, batch))
                    .await;
                for done in results {
                    if inbox.send(Msg::Input(Input::Disk(done))).await.is_err() {
                        return;
                    }
                }
            }
        });
        DiskWorker { ops }
    }

    /// Queue an operation.
    pub fn submit(&self, op: DiskOp) {
        let _ = self.ops.send(op);
    }
}

fn store_of(stores: &Stores, hash: &InfoHash) -> Option<Arc<TorrentStore>> {
    stores.lock().ok()?.get(hash).cloned()
}

fn execute_batch(stores: &Stores, state: &StateDir, batch: Vec<DiskOp>) -> Vec<DiskDone> {
    batch
        .into_iter()
        .filter_map(|op| execute(stores, state, op))
        .collect()
}

/// Carry out one operation; `None` when it needs no answer (a successful write).
fn execute(stores: &Stores, state: &StateDir, op: DiskOp) -> Option<DiskDone> {
    let missing = || "torrent files are not open".to_string();
    match op {
        DiskOp::Write {
            torrent,
            offset,
            data,
        } => {
            let result = store_of(stores, &torrent)
                .ok_or_else(missing)
                .and_then(|s| {
                    s.write(offset, &data)
                        .map_err(|e| format!("write at offset {offset} failed: {e}"))
                });
            result
                .err()
                .map(|error| DiskDone::WriteFailed { torrent, error })
        }
        DiskOp::Hash { torrent, piece } => {
            let hash = store_of(stores, &torrent)
                .ok_or_else(missing)
                .and_then(|s| s.hash_piece(piece).map_err(|e| e.to_string()));
            Some(DiskDone::Hashed {
                torrent,
                piece,
                hash,
            })
        }
        DiskOp::Read {
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
                        .map_err(|e| e.to_string())
                });
            Some(DiskDone::Read {
                torrent,
                conn,
                block,
                data,
            })
        }
        DiskOp::SyncAndCheckpoint {
            torrent,
            generation,
            checkpoint,
        } => {
            let error = store_of(stores, &torrent)
                .ok_or_else(missing)
                .and_then(|s| s.sync().map_err(|e| format!("sync failed: {e}")))
                .and_then(|()| {
                    state
                        .save_checkpoint(&checkpoint)
                        .map_err(|e| format!("checkpoint write failed: {e}"))
                })
                .err();
            Some(DiskDone::CheckpointSaved {
                torrent,
                generation,
                error,
            })
        }
    }
}
