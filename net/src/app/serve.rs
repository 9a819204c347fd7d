//! Serving a folder: seed every complete file and subfolder in it (a subfolder as one multi-file torrent;
//! trusting cached metainfo whose files kept their [`Stamps`], spot-checking other cached metainfo, hashing
//! the rest), publish each to the tracker catalog, forget stale state and resume every unfinished download.
//! With [`ServeOptions::jobs`] above one, that many files are hashed, added and published at once (a library
//! of ten thousand files is bound by round trips and syncs, not by bytes); events still come in the folder's
//! order.

use super::{AppError, PeerApp};
use crate::create::create_metainfo;
use crate::library::{Download, PlainFile};
use crate::peer::AddMode;
use crate::state_dir::{Stamps, StateDir};
use crate::storage::{Blocking, FileStamp};
use crate::transport::Transport;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use enjambre_core::DEFAULT_PIECE_LENGTH;
use futures_util::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// [`ServeOptions::jobs`] of the `peer` binary: files hashed, added and published at once. Enough to keep
/// both the disk (its syncs overlap) and the tracker (one publication per round trip) busy.
pub const SERVE_JOBS: usize = 16;

/// What [`PeerApp::serve_folder`] is doing, for display.
#[derive(Debug, Clone, PartialEq)]
pub enum ServeEvent {
    /// Hashing a file without a cached metainfo: `done` of `total` bytes.
    Hashing {
        /// File name.
        name: String,
        /// Bytes hashed so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Progress of hashing the folder's files that had no usable metainfo (sent before the first and after
    /// each one).
    HashingFolder {
        /// Files hashed so far.
        files_done: usize,
        /// Files to hash in all.
        files: usize,
        /// Bytes hashed so far (of whole files).
        bytes_done: u64,
        /// Bytes to hash in all.
        bytes: u64,
    },
    /// A complete file is being seeded, and was published to the catalog (a failure to publish was reported
    /// as [`ServeEvent::PublishFailed`] first).
    Seeding {
        /// File name.
        name: String,
        /// Its info hash.
        info_hash: InfoHash,
        /// Whether the cached metainfo was reused (no rehash; at most a spot check).
        cached: bool,
    },
    /// An unfinished download is being resumed.
    Resuming {
        /// Torrent name.
        name: String,
        /// Its info hash.
        info_hash: InfoHash,
        /// Percentage the checkpoint claims.
        percent: f64,
    },
    /// A file could not be shared (it stays out; the rest goes on).
    Skipped {
        /// File name.
        name: String,
        /// Why.
        error: String,
    },
    /// Publishing to the tracker catalog failed (seeding goes on, publishing is tried again in the
    /// background, and peers with the `.torrent` can still come).
    PublishFailed {
        /// Torrent name.
        name: String,
        /// Why.
        error: String,
    },
}

/// A torrent [`PeerApp::serve_folder`] added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Torrent name.
    pub name: String,
    /// Its info hash.
    pub info_hash: InfoHash,
    /// Whether it is an unfinished download being resumed (else a complete file being seeded).
    pub resumed: bool,
}

/// Receives [`ServeEvent`]s.
pub type ServeSink = Arc<dyn Fn(ServeEvent) + Send + Sync>;

/// How [`PeerApp::serve_folder`] serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Hash cached and resumed data in full instead of spot-checking it (`--recheck`).
    pub recheck: bool,
    /// Piece length of the torrent made for a file, by file name; others get [`DEFAULT_PIECE_LENGTH`].
    pub piece_lengths: BTreeMap<String, u32>,
    /// Peers to connect to for every torrent, besides the tracker's.
    pub peers: Vec<SocketAddr>,
    /// Files hashed, added and published at once (0 or 1: one after the other, the simulator's choice).
    pub jobs: usize,
}

impl<T: Transport, B: Blocking> PeerApp<T, B> {
    /// Seed every complete file of the folder (trusting cached metainfo whose files kept their stamps,
    /// spot-checking other cached metainfo, hashing the rest), publish each to the tracker catalog, and
    /// resume every unfinished download; then record the stamps of every file now known verified. Returns
    /// the torrents added.
    pub async fn serve_folder(
        &self,
        options: &ServeOptions,
        report: ServeSink,
    ) -> Result<Vec<Served>, AppError> {
        let library = self.scan().await?;
        let plan = library.plan_serve();
        let state = StateDir::new(self.env.storage.clone(), &self.dir);
        for stale in &plan.stale {
            if let Err(e) = state.remove(stale) {
                tracing::warn!("cannot forget stale state of {stale}: {e}");
            }
        }
        let jobs = options.jobs.max(1);
        let mut added = Vec::new();
        let mut stamps = Stamps::new();
        let (cached_mode, trusted_mode) = if options.recheck {
            (AddMode::Recheck, AddMode::Recheck)
        } else {
            (AddMode::Download, AddMode::Trusted)
        };
        let peers = &options.peers;

        let cached = plan
            .trusted
            .into_iter()
            .map(|(meta, stamp)| (meta, Some(stamp), trusted_mode))
            .chain(
                plan.cached
                    .into_iter()
                    .map(|meta| (meta, None, cached_mode)),
            );
        let mut seeding = stream::iter(cached)
            .map(|(meta, stamp, mode)| {
                let report = &report;
                async move {
                    let result = self.add(meta.clone(), mode, peers.clone()).await;
                    if result.is_ok() {
                        // Published before it is reported, so that whoever reads `seeding NAME` can fetch
                        // NAME.
                        self.publish_reporting(&meta, report).await;
                    }
                    (meta, stamp, mode, result)
                }
            })
            .buffered(jobs);
        while let Some((meta, stamp, mode, result)) = seeding.next().await {
            let name = meta.info.name.clone();
            match result {
                Ok(info_hash) => {
                    if let (Some(stamp), AddMode::Trusted) = (stamp, mode) {
                        stamps.insert(info_hash, vec![stamp]);
                    }
                    report(ServeEvent::Seeding {
                        name: name.clone(),
                        info_hash,
                        cached: true,
                    });
                    added.push(Served {
                        name,
                        info_hash,
                        resumed: false,
                    });
                }
                Err(e) => report(ServeEvent::Skipped {
                    name,
                    error: e.to_string(),
                }),
            }
        }
        drop(seeding);

        for file in plan.held_back {
            report(ServeEvent::Skipped {
                name: file.name,
                error: format!(
                    "not shared: the state folder has unreadable entries ({}), so it may be an unfinished download",
                    library
                        .unreadable_state
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }

        let (files, bytes) = (
            plan.to_hash.len(),
            plan.to_hash.iter().map(|f| f.size).sum::<u64>(),
        );
        let (mut files_done, mut bytes_done) = (0, 0);
        if files > 0 {
            report(ServeEvent::HashingFolder {
                files_done,
                files,
                bytes_done,
                bytes,
            });
        }
        let mut hashing = stream::iter(plan.to_hash)
            .map(|file| {
                let piece_length = options
                    .piece_lengths
                    .get(&file.name)
                    .copied()
                    .unwrap_or(DEFAULT_PIECE_LENGTH);
                let report = &report;
                async move {
                    let result = self.hash_and_seed(&file, piece_length, peers, report).await;
                    if let Ok((meta, _)) = &result {
                        self.publish_reporting(meta, report).await;
                    }
                    (file, result)
                }
            })
            .buffered(jobs);
        while let Some((file, result)) = hashing.next().await {
            files_done += 1;
            bytes_done += file.size;
            report(ServeEvent::HashingFolder {
                files_done,
                files,
                bytes_done,
                bytes,
            });
            match result {
                Ok((meta, stamp)) => {
                    if let Some(stamp) = stamp {
                        stamps.insert(meta.info_hash, vec![stamp]);
                    }
                    report(ServeEvent::Seeding {
                        name: file.name.clone(),
                        info_hash: meta.info_hash,
                        cached: false,
                    });
                    added.push(Served {
                        name: meta.info.name.clone(),
                        info_hash: meta.info_hash,
                        resumed: false,
                    });
                }
                Err(e) => report(ServeEvent::Skipped {
                    name: file.name.clone(),
                    error: e.to_string(),
                }),
            }
        }
        drop(hashing);

        for download in plan.resume {
            let Download { meta, .. } = &download;
            let name = meta.info.name.clone();
            match self.add(meta.clone(), cached_mode, peers.clone()).await {
                Ok(info_hash) => {
                    report(ServeEvent::Resuming {
                        name: name.clone(),
                        info_hash,
                        percent: download.percent(),
                    });
                    added.push(Served {
                        name,
                        info_hash,
                        resumed: true,
                    });
                }
                Err(e) => report(ServeEvent::Skipped {
                    name,
                    error: e.to_string(),
                }),
            }
        }
        self.save_stamps(stamps, &library.stamps).await;
        Ok(added)
    }

    /// Replace the folder's stamp index by `stamps` unless it holds exactly that already. A failure only
    /// costs spot checks at the next start: it is logged.
    async fn save_stamps(&self, stamps: Stamps, before: &Stamps) {
        if stamps == *before {
            return;
        }
        let state = StateDir::new(self.env.storage.clone(), &self.dir);
        let saved = self
            .env
            .blocking
            .run(move || state.save_stamps(&stamps))
            .await;
        if let Err(e) = saved {
            tracing::warn!("cannot record the stamps of verified files: {e}");
        }
    }

    /// Hash `file` into a metainfo and seed it. Also returns the file's stamp when it is the same after
    /// hashing as before (the bytes hashed are the bytes the stamp describes).
    async fn hash_and_seed(
        &self,
        file: &PlainFile,
        piece_length: u32,
        peers: &[SocketAddr],
        report: &ServeSink,
    ) -> Result<(Metainfo, Option<FileStamp>), AppError> {
        let storage = self.env.storage.clone();
        let path = file.path.clone();
        let before = file.stamp;
        let announce = self.tracker.as_ref().map(|t| t.announce.clone());
        let sink = report.clone();
        let name = file.name.clone();
        let (meta, unchanged) = self
            .env
            .blocking
            .run(move || {
                let mut last = None;
                let meta = create_metainfo(
                    storage.as_ref(),
                    &path,
                    piece_length,
                    announce.as_deref(),
                    &mut |done, total| {
                        // Report at most every 1% (and the ends).
                        let step = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
                        if last != Some(step) {
                            last = Some(step);
                            sink(ServeEvent::Hashing {
                                name: name.clone(),
                                done,
                                total,
                            });
                        }
                    },
                )?;
                let after = storage.file_stamp(&path).ok().flatten();
                Ok::<_, crate::create::CreateError>((meta, after == Some(before)))
            })
            .await?;
        self.add(meta.clone(), AddMode::Seed, peers.to_vec())
            .await?;
        Ok((meta, unchanged.then_some(before)))
    }

    /// Publish `meta` when there is a tracker; on failure, report it and keep trying in the background.
    async fn publish_reporting(&self, meta: &Metainfo, report: &ServeSink) {
        if self.tracker.is_none() {
            return;
        }
        if let Err(e) = self.publish(meta).await {
            report(ServeEvent::PublishFailed {
                name: meta.info.name.clone(),
                error: e.to_string(),
            });
            self.publish_in_background(meta);
        }
    }
}
