//! Serving a folder: seed every complete file and subfolder in it (a subfolder as one multi-file torrent;
//! trusting cached metainfo whose files kept their [`Stamps`], spot-checking other cached metainfo, hashing
//! the rest), publish each to the tracker catalog, forget stale state and resume every unfinished download.
//! With [`ServeOptions::jobs`] above one, that many files are hashed, added and published at once (a library
//! of ten thousand files is bound by round trips and syncs, not by bytes); events still come in the folder's
//! order.

use super::{AppError, PeerApp};
use crate::create::create_metainfo;
use crate::library::{Download, PlainFile};
use crate::library_index;
use crate::peer::AddMode;
use crate::state_dir::{Stamps, StateDir};
use crate::storage::{Blocking, FileStamp};
use crate::transport::Transport;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use enjambre_core::DEFAULT_PIECE_LENGTH;
use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// [`ServeOptions::jobs`] of the `peer` binary: files hashed, added and published at once. Enough to keep
/// both the disk (its syncs overlap) and the tracker (one publication per round trip) busy.
pub const SERVE_JOBS: usize = 16;

/// From this many files with a cached metainfo on, [`PeerApp::serve_folder`] lists the tracker's catalog once and
/// publishes only what it does not list already (same name, same info hash): a restart of a library of ten
/// thousand files spared ten thousand round trips to the tracker. Below it, each file is published (one round
/// trip each is less than a listing of a large catalog).
pub const LIST_CATALOG_FROM: usize = 64;

/// How often a serving peer checks whether its state folder's index must be built again.
pub const INDEX_REFRESH_EVERY: Duration = Duration::from_secs(5);

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
        let listed = if plan.trusted.len() + plan.cached.len() >= LIST_CATALOG_FROM {
            self.catalog_entries().await
        } else {
            BTreeSet::new()
        };
        let listed = &listed;

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
                        if !listed.contains(&(meta.info.name.clone(), meta.info_hash)) {
                            self.publish_reporting(&meta, report).await;
                        }
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
        self.keep_library_index();
        Ok(added)
    }

    /// Record the [`Stamps`] of the payload files of `hashes`: downloads this peer finished, whose last byte
    /// it wrote and whose complete checkpoint is durable ([`super::is_finished`]). The next `peer serve` then
    /// trusts them as it trusts the files it hashed itself, instead of spot-checking them at every start.
    /// Nothing on a storage without modification times (the simulator's); a failure only costs spot checks
    /// later, so it is logged.
    pub async fn stamp_downloads(&self, hashes: Vec<InfoHash>) {
        let (storage, dir) = (self.env.storage.clone(), self.dir.clone());
        if hashes.is_empty() || library_index::folder_stamp(storage.as_ref(), &dir).is_none() {
            return;
        }
        let saved = self
            .env
            .blocking
            .run(move || stamp_payloads(storage, &dir, &hashes))
            .await;
        if let Err(e) = saved {
            tracing::warn!("cannot record the stamps of downloaded files: {e}");
        }
    }

    /// While the app runs, build the state folder's index ([`crate::library_index`]) again whenever the
    /// folder changed and has been quiet since: checked every [`INDEX_REFRESH_EVERY`], one `stat` when
    /// nothing changed. Nothing on a storage without modification times (the simulator's).
    fn keep_library_index(&self) {
        let state = StateDir::new(self.env.storage.clone(), &self.dir);
        if library_index::folder_stamp(self.env.storage.as_ref(), state.path()).is_none() {
            return;
        }
        let (blocking, clock) = (self.env.blocking.clone(), self.env.clock);
        let state = Arc::new(state);
        self.spawn_background(async move {
            // The folder's stamp the saved index is known to describe.
            let mut indexed = None;
            loop {
                let state = state.clone();
                let built = blocking
                    .run(
                        move || match library_index::folder_stamp(state.storage(), state.path()) {
                            Some(now) if Some(now) == indexed => {
                                Ok(library_index::Built::UpToDate(now))
                            }
                            _ => state.refresh_index(library_index::wall_clock_ns()),
                        },
                    )
                    .await;
                match built {
                    Ok(library_index::Built::Saved(s) | library_index::Built::UpToDate(s)) => {
                        indexed = Some(s)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("cannot save the library index: {e}"),
                }
                clock.sleep_until(clock.now() + INDEX_REFRESH_EVERY).await;
            }
        });
    }

    /// Build the state folder's index now if it is out of date, waiting (a fraction of a second) for the
    /// folder to be quiet: what a peer that stops does last, so that the next start reads one file.
    pub async fn save_library_index(&self) {
        for _ in 0..3 {
            let state = StateDir::new(self.env.storage.clone(), &self.dir);
            let built = self
                .env
                .blocking
                .run(move || state.refresh_index(library_index::wall_clock_ns()))
                .await;
            match built {
                Ok(library_index::Built::NotQuiet) => {
                    let wait = Duration::from_nanos(library_index::QUIET_NS as u64);
                    self.env
                        .clock
                        .sleep_until(self.env.clock.now() + wait + wait / 2)
                        .await;
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!("cannot save the library index: {e}");
                    return;
                }
            }
        }
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

    /// The (name, info hash) of every file the tracker's catalog lists; empty without a tracker or when the
    /// listing fails (then every file is published, as without a listing).
    async fn catalog_entries(&self) -> BTreeSet<(String, InfoHash)> {
        if self.tracker.is_none() {
            return BTreeSet::new();
        }
        match self.list_catalog().await {
            Ok(files) => files.into_iter().map(|f| (f.name, f.info_hash)).collect(),
            Err(e) => {
                tracing::debug!("cannot list the catalog, publishing every file: {e}");
                BTreeSet::new()
            }
        }
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

/// Stamp the payload files of the downloads `hashes` of the folder `dir` (their metainfo read from its state
/// folder) and save the stamp index if that added anything.
fn stamp_payloads(
    storage: Arc<dyn crate::storage::Storage>,
    dir: &std::path::Path,
    hashes: &[InfoHash],
) -> std::io::Result<()> {
    let state = StateDir::new(storage.clone(), dir);
    let before = state.load_stamps();
    let mut stamps = before.clone();
    for hash in hashes {
        let Some(bytes) = storage.read_file(&state.metainfo_path(hash))? else {
            continue;
        };
        let Ok(meta) = Metainfo::from_bytes(&bytes) else {
            continue;
        };
        let store =
            crate::torrent_store::TorrentStore::new(storage.clone(), dir.to_path_buf(), &meta)?;
        let files: Option<Vec<FileStamp>> = store
            .paths()
            .iter()
            .map(|p| storage.file_stamp(p).ok().flatten())
            .collect();
        if let Some(files) = files {
            stamps.insert(*hash, files);
        }
    }
    if stamps != before {
        state.save_stamps(&stamps)?;
    }
    Ok(())
}
