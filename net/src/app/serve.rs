//! Serving a folder: seed every complete file and subfolder in it (a subfolder as one multi-file torrent;
//! reusing cached metainfo, hashing the rest), publish each to the tracker catalog, forget stale state and
//! resume every unfinished download.

use super::{AppError, PeerApp};
use crate::create::create_metainfo;
use crate::library::{Download, PlainFile};
use crate::peer::AddMode;
use crate::state_dir::StateDir;
use crate::storage::Blocking;
use crate::transport::Transport;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use enjambre_core::DEFAULT_PIECE_LENGTH;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

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
    /// A complete file is being seeded, and was published to the catalog (a failure to publish was reported
    /// as [`ServeEvent::PublishFailed`] first).
    Seeding {
        /// File name.
        name: String,
        /// Its info hash.
        info_hash: InfoHash,
        /// Whether the cached metainfo was reused (no rehash).
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
}

impl<T: Transport, B: Blocking> PeerApp<T, B> {
    /// Seed every complete file of the folder (reusing cached metainfo when it still matches, hashing
    /// otherwise), publish each to the tracker catalog, and resume every unfinished download. Returns the
    /// torrents added.
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
        let mut added = Vec::new();
        let cached_mode = if options.recheck {
            AddMode::Recheck
        } else {
            AddMode::Download
        };
        let peers = &options.peers;
        for meta in plan.cached {
            let name = meta.info.name.clone();
            match self.add(meta.clone(), cached_mode, peers.clone()).await {
                Ok(info_hash) => {
                    // Published before it is reported, so that whoever reads `seeding NAME` can fetch NAME.
                    self.publish_reporting(&meta, &report).await;
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
        for file in plan.to_hash {
            let piece_length = options
                .piece_lengths
                .get(&file.name)
                .copied()
                .unwrap_or(DEFAULT_PIECE_LENGTH);
            match self
                .hash_and_seed(&file, piece_length, peers, &report)
                .await
            {
                Ok(meta) => {
                    self.publish_reporting(&meta, &report).await;
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
        Ok(added)
    }

    async fn hash_and_seed(
        &self,
        file: &PlainFile,
        piece_length: u32,
        peers: &[SocketAddr],
        report: &ServeSink,
    ) -> Result<Metainfo, AppError> {
        let storage = self.env.storage.clone();
        let path = file.path.clone();
        let announce = self.tracker.as_ref().map(|t| t.announce.clone());
        let sink = report.clone();
        let name = file.name.clone();
        let meta = self
            .env
            .blocking
            .run(move || {
                let mut last = None;
                create_metainfo(
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
                )
            })
            .await?;
        self.add(meta.clone(), AddMode::Seed, peers.to_vec())
            .await?;
        Ok(meta)
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
