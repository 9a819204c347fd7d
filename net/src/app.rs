//! Application flows of a peer, shared by the `peer` binary, the demo and tests: serve a folder (seed its
//! complete files, publish them, resume its unfinished downloads), get files by catalog name or from a
//! `.torrent` file, and wait until downloads are complete and durable.
//!
//! Generic over the driver's seams like [`Peer`], so a simulator can run the same flows.

use crate::clock::Clock;
use crate::create::{create_metainfo, CreateError};
use crate::library::{self, Download, Library, PlainFile};
use crate::peer::{AddMode, EventSink, Peer, PeerEnv, PeerError, PeerOptions};
use crate::state_dir::StateDir;
use crate::storage::Blocking;
use crate::tracker_client::{self, HttpUrl, TrackerClientError};
use crate::transport::Transport;
use enjambre_core::metainfo::{InfoHash, Metainfo, MetainfoError};
use enjambre_core::node::{NodeConfig, TorrentStats};
use enjambre_core::time::Instant;
use enjambre_core::tracker::registry::FileSummary;
use enjambre_core::DEFAULT_PIECE_LENGTH;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Largest `.torrent` file read from disk.
const MAX_TORRENT_FILE: u64 = 64 * 1024 * 1024;

/// Why an application flow failed. Every message is one line meant for a person.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The tracker URL is unusable.
    #[error("bad tracker URL {url:?}: {reason}")]
    BadTrackerUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A flow needs a tracker and none was given.
    #[error("no tracker given: pass --tracker URL to {0}")]
    NoTracker(&'static str),
    /// The tracker could not be reached (connection refused, timeout).
    #[error("cannot reach the tracker at {url}: {source}")]
    TrackerUnreachable {
        /// The tracker's base URL.
        url: String,
        /// What went wrong.
        source: TrackerClientError,
    },
    /// The tracker's catalog has no file of that name.
    #[error("no file named {0:?} in the tracker's catalog")]
    UnknownName(String),
    /// Another tracker error.
    #[error("tracker at {url}: {source}")]
    Tracker {
        /// The tracker's base URL.
        url: String,
        /// What went wrong.
        source: TrackerClientError,
    },
    /// The catalog returned a metainfo that does not parse.
    #[error("the tracker's metainfo for {name:?} is invalid: {source}")]
    BadCatalogMetainfo {
        /// The name asked for.
        name: String,
        /// Why it is invalid.
        source: MetainfoError,
    },
    /// A `.torrent` file does not parse (or names unsafe paths).
    #[error("{path}: not a usable .torrent file: {source}")]
    BadTorrentFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: MetainfoError,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The peer driver failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A torrent could not be made.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// A download was asked for that the peer does not have.
    #[error("torrent {0} is not active in this peer")]
    NotActive(InfoHash),
}

/// A tracker URL in both forms the peer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerUrls {
    /// The announce URL (`BASE/announce`).
    pub announce: String,
    /// The base URL of the catalog (`BASE`, where `/files` and `/swarm` live).
    pub base: String,
}

/// Accept `http://host:port`, `http://host:port/announce` (or `host:port`, taken as `http://`), with or
/// without a trailing `/`: the base is the URL minus a trailing `/announce`.
pub fn normalize_tracker_url(url: &str) -> Result<TrackerUrls, AppError> {
    let bad = |reason: &str| AppError::BadTrackerUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let t = url.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    let full = if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    let parsed = HttpUrl::parse(&full).map_err(|e| match e {
        TrackerClientError::BadUrl { reason, .. } => bad(reason),
        other => bad(&other.to_string()),
    })?;
    if parsed.query.is_some() || full.contains('#') {
        return Err(bad("a query or fragment is not supported"));
    }
    let trimmed = full.trim_end_matches('/');
    let base = trimmed
        .strip_suffix("/announce")
        .unwrap_or(trimmed)
        .trim_end_matches('/')
        .to_string();
    Ok(TrackerUrls {
        announce: format!("{base}/announce"),
        base,
    })
}

/// A peer id `-EJ0100-` followed by 12 characters derived from `seed`.
pub fn peer_id_from_seed(seed: u64) -> [u8; 20] {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = *b"-EJ0100-000000000000";
    let mut x = seed;
    for slot in id.iter_mut().skip(8) {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *slot = ALPHABET[(z % 36) as usize];
    }
    id
}

/// What a finished download reports (`peer get --json` prints one per file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    /// Torrent name.
    pub name: String,
    /// Info hash, hex.
    pub info_hash: String,
    /// Total bytes.
    pub size: u64,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Pieces already held (resumed) when the download started.
    pub pieces_resumed: u32,
    /// Payload bytes received in this run, wasted ones included.
    pub bytes_downloaded: u64,
    /// Payload bytes thrown away (hash failures, duplicates).
    pub bytes_wasted: u64,
    /// Accepted payload bytes per source `IP:PORT`.
    pub sources: BTreeMap<String, u64>,
    /// Banned peers `IP:PORT`.
    pub banned: Vec<String>,
    /// Seconds from adding the download to complete and durable.
    pub seconds: f64,
}

impl FileReport {
    /// The report of a finished torrent.
    pub fn from_stats(stats: &TorrentStats, seconds: f64) -> FileReport {
        FileReport {
            name: stats.name.clone(),
            info_hash: stats.info_hash.clone(),
            size: stats.size,
            pieces_total: stats.pieces_total,
            pieces_resumed: stats.pieces_resumed,
            bytes_downloaded: stats.bytes_downloaded,
            bytes_wasted: stats.bytes_wasted,
            sources: stats
                .sources
                .iter()
                .map(|(a, b)| (a.to_string(), *b))
                .collect(),
            banned: stats.banned.iter().map(|a| a.to_string()).collect(),
            seconds: (seconds * 1000.0).round() / 1000.0,
        }
    }
}

/// Whether a torrent is finished: every piece verified, and the durable checkpoint claims them all.
pub fn is_finished(stats: &TorrentStats) -> bool {
    stats.complete && !stats.checking && stats.pieces_durable == stats.pieces_total
}

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
    /// Publishing to the tracker catalog failed (seeding goes on; peers with the `.torrent` can still come).
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

/// How a peer application is set up.
#[derive(Clone)]
pub struct AppOptions {
    /// The download and share folder.
    pub dir: PathBuf,
    /// Where to listen for peers.
    pub listen: SocketAddr,
    /// The tracker, if any.
    pub tracker: Option<TrackerUrls>,
    /// Upload cap in bytes per second.
    pub max_upload_rate: Option<u64>,
    /// Download cap in bytes per second.
    pub max_download_rate: Option<u64>,
    /// Node tunables (peer id, seed...).
    pub node: NodeConfig,
    /// Receives every node event.
    pub events: Option<EventSink>,
}

impl AppOptions {
    /// Options for `dir`, listening on `listen`, with default node settings and no limits.
    pub fn new(dir: PathBuf, listen: SocketAddr, tracker: Option<TrackerUrls>) -> AppOptions {
        AppOptions {
            dir,
            listen,
            tracker,
            max_upload_rate: None,
            max_download_rate: None,
            node: NodeConfig::default(),
            events: None,
        }
    }
}

/// A running peer with the application flows on top.
pub struct PeerApp<T, B, C> {
    env: PeerEnv<T, B, C>,
    peer: Peer,
    task: Mutex<Option<JoinHandle<()>>>,
    tracker: Option<TrackerUrls>,
    dir: PathBuf,
    /// Torrents handed to the peer, with when they were added.
    added: Mutex<BTreeMap<InfoHash, Instant>>,
}

impl<T: Transport, B: Blocking, C: Clock> PeerApp<T, B, C> {
    /// Bind the listener and start the peer.
    pub async fn start(env: PeerEnv<T, B, C>, options: AppOptions) -> Result<Self, AppError> {
        let peer_options = PeerOptions {
            node: options.node,
            dir: options.dir.clone(),
            listen: options.listen,
            tracker: options.tracker.as_ref().map(|t| t.announce.clone()),
            max_upload_rate: options.max_upload_rate,
            max_download_rate: options.max_download_rate,
            events: options.events,
            unsafe_checkpoint_before_sync: false,
        };
        let (peer, task) = Peer::start(env.clone(), peer_options).await?;
        Ok(PeerApp {
            env,
            peer,
            task: Mutex::new(Some(task)),
            tracker: options.tracker,
            dir: options.dir,
            added: Mutex::new(BTreeMap::new()),
        })
    }

    /// The underlying peer driver.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The address peers reach us at (the bound port).
    pub fn local_addr(&self) -> SocketAddr {
        self.peer.local_addr()
    }

    /// The download folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tracker, if any.
    pub fn tracker(&self) -> Option<&TrackerUrls> {
        self.tracker.as_ref()
    }

    /// What the download folder holds.
    pub async fn scan(&self) -> Result<Library, AppError> {
        scan_folder(&self.env, &self.dir).await
    }

    fn tracker_for(&self, what: &'static str) -> Result<&TrackerUrls, AppError> {
        self.tracker.as_ref().ok_or(AppError::NoTracker(what))
    }

    /// Seed every complete file of the folder (reusing cached metainfo when it still matches, hashing
    /// otherwise), publish each to the tracker catalog, and resume every unfinished download. With `recheck`,
    /// cached and resumed data is hashed in full instead of spot-checked. Returns the torrents added.
    pub async fn serve_folder(
        &self,
        recheck: bool,
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
        let cached_mode = if recheck {
            AddMode::Recheck
        } else {
            AddMode::Download
        };
        for meta in plan.cached {
            let name = meta.info.name.clone();
            match self.add(meta.clone(), cached_mode, Vec::new()).await {
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
        for file in plan.to_hash {
            match self.hash_and_seed(&file, &report).await {
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
            match self.add(meta.clone(), cached_mode, Vec::new()).await {
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
                    DEFAULT_PIECE_LENGTH,
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
        self.add(meta.clone(), AddMode::Seed, Vec::new()).await?;
        Ok(meta)
    }

    async fn publish_reporting(&self, meta: &Metainfo, report: &ServeSink) {
        if self.tracker.is_none() {
            return;
        }
        if let Err(e) = self.publish(meta).await {
            report(ServeEvent::PublishFailed {
                name: meta.info.name.clone(),
                error: e.to_string(),
            });
        }
    }

    /// Publish a metainfo to the tracker catalog. Publishing the same torrent again is fine.
    pub async fn publish(&self, meta: &Metainfo) -> Result<FileSummary, AppError> {
        let tracker = self.tracker_for("publish files")?;
        tracker_client::publish(&self.env.transport, &tracker.base, &meta.to_bytes())
            .await
            .map_err(|e| tracker_error(&tracker.base, e))
    }

    /// The files published in the tracker catalog.
    pub async fn list_catalog(&self) -> Result<Vec<FileSummary>, AppError> {
        let tracker = self.tracker_for("list the catalog")?;
        tracker_client::list_files(&self.env.transport, &tracker.base)
            .await
            .map_err(|e| tracker_error(&tracker.base, e))
    }

    /// The metainfo published under `name` in the tracker catalog.
    pub async fn fetch_by_name(&self, name: &str) -> Result<Metainfo, AppError> {
        let tracker = self.tracker_for("get files by name")?;
        let bytes = tracker_client::fetch_metainfo(&self.env.transport, &tracker.base, name)
            .await
            .map_err(|e| match e {
                TrackerClientError::Status { status: 404, .. } => {
                    AppError::UnknownName(name.to_string())
                }
                e => tracker_error(&tracker.base, e),
            })?;
        Metainfo::from_bytes(&bytes).map_err(|source| AppError::BadCatalogMetainfo {
            name: name.to_string(),
            source,
        })
    }

    /// Read a `.torrent` file.
    pub async fn load_torrent_file(&self, path: &Path) -> Result<Metainfo, AppError> {
        let storage = self.env.storage.clone();
        load_torrent_file(&self.env.blocking, storage, path).await
    }

    /// Start downloading (or resume) `meta` into the folder, trying `sources` besides the tracker's peers.
    /// With `recheck`, whatever is on disk is hashed in full first. Adding a torrent already active only adds
    /// the sources.
    pub async fn add_download(
        &self,
        meta: Metainfo,
        recheck: bool,
        sources: Vec<SocketAddr>,
    ) -> Result<InfoHash, AppError> {
        let mode = if recheck {
            AddMode::Recheck
        } else {
            AddMode::Download
        };
        self.add(meta, mode, sources).await
    }

    async fn add(
        &self,
        meta: Metainfo,
        mode: AddMode,
        sources: Vec<SocketAddr>,
    ) -> Result<InfoHash, AppError> {
        let hash = meta.info_hash;
        let known = self
            .added
            .lock()
            .map(|a| a.contains_key(&hash))
            .unwrap_or(false);
        if known {
            for s in sources {
                self.peer.add_peer(hash, s);
            }
            return Ok(hash);
        }
        let tracker = self.tracker.as_ref().map(|t| t.announce.clone());
        let now = self.env.clock.now();
        self.peer
            .add(self.env.blocking.clone(), meta, mode, tracker, sources)
            .await?;
        if let Ok(mut a) = self.added.lock() {
            a.insert(hash, now);
        }
        Ok(hash)
    }

    /// Info hashes of the torrents this app added.
    pub fn active(&self) -> BTreeSet<InfoHash> {
        self.added
            .lock()
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Progress of every torrent.
    pub async fn stats(&self) -> Result<Vec<TorrentStats>, AppError> {
        Ok(self.peer.stats().await?)
    }

    /// Wait until every torrent in `hashes` is finished ([`is_finished`]), polling every `poll`.
    /// `on_tick` sees the current stats of those torrents after each poll; `on_done` gets each report as
    /// its torrent finishes. A torrent stopped on a disk error does not end the wait: the node tries it
    /// again by itself (`TorrentStats::error` and `error_retry_in_ms` say so, for `on_tick` to show).
    pub async fn wait_all(
        &self,
        hashes: &[InfoHash],
        poll: Duration,
        mut on_tick: impl FnMut(&[TorrentStats]),
        mut on_done: impl FnMut(&FileReport),
    ) -> Result<Vec<FileReport>, AppError> {
        let mut pending: BTreeSet<InfoHash> = hashes.iter().copied().collect();
        let mut reports = Vec::new();
        loop {
            let all = self.peer.stats().await?;
            let now = self.env.clock.now();
            let mut current = Vec::new();
            for h in hashes {
                let hex = h.to_hex();
                let Some(s) = all.iter().find(|s| s.info_hash == hex) else {
                    return Err(AppError::NotActive(*h));
                };
                current.push(s.clone());
                if !pending.contains(h) {
                    continue;
                }
                if is_finished(s) {
                    pending.remove(h);
                    let started = self
                        .added
                        .lock()
                        .ok()
                        .and_then(|a| a.get(h).copied())
                        .unwrap_or(now);
                    let seconds = now.saturating_since(started).as_secs_f64();
                    let report = FileReport::from_stats(s, seconds);
                    on_done(&report);
                    reports.push(report);
                }
            }
            on_tick(&current);
            if pending.is_empty() {
                return Ok(reports);
            }
            self.env.clock.sleep_until(now + poll).await;
        }
    }

    /// Announce `stopped`, close every connection and stop the peer.
    pub async fn shutdown(&self) {
        self.peer.shutdown().await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Stop at once as a crash would (no `stopped` announce, nothing flushed).
    pub async fn abort(&self) {
        self.peer.abort();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn tracker_error(base: &str, e: TrackerClientError) -> AppError {
    match e {
        e @ (TrackerClientError::Connect(_) | TrackerClientError::Timeout) => {
            AppError::TrackerUnreachable {
                url: base.to_string(),
                source: e,
            }
        }
        e => AppError::Tracker {
            url: base.to_string(),
            source: e,
        },
    }
}

/// Scan a download folder on the blocking runner.
pub async fn scan_folder<T, B: Blocking, C>(
    env: &PeerEnv<T, B, C>,
    dir: &Path,
) -> Result<Library, AppError> {
    let storage = env.storage.clone();
    let d = dir.to_path_buf();
    env.blocking
        .run(move || library::scan(storage, &d))
        .await
        .map_err(|source| AppError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Read and parse a `.torrent` file on the blocking runner.
pub async fn load_torrent_file<B: Blocking>(
    blocking: &B,
    storage: Arc<dyn crate::storage::Storage>,
    path: &Path,
) -> Result<Metainfo, AppError> {
    let p = path.to_path_buf();
    let io_err = |source| AppError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = blocking
        .run(move || -> io::Result<Vec<u8>> {
            match storage.file_len(&p)? {
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
                Some(n) if n > MAX_TORRENT_FILE => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{n} bytes is too large for a .torrent file"),
                )),
                Some(_) => storage
                    .read_file(&p)?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file")),
            }
        })
        .await
        .map_err(io_err)?;
    Metainfo::from_bytes(&bytes).map_err(|source| AppError::BadTorrentFile {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_urls_are_normalised() {
        let want = TrackerUrls {
            announce: "http://10.0.0.5:6969/announce".into(),
            base: "http://10.0.0.5:6969".into(),
        };
        for url in [
            "http://10.0.0.5:6969",
            "http://10.0.0.5:6969/",
            "http://10.0.0.5:6969/announce",
            "http://10.0.0.5:6969/announce/",
            " 10.0.0.5:6969 ",
            "10.0.0.5:6969/announce",
        ] {
            assert_eq!(normalize_tracker_url(url).unwrap(), want, "{url}");
        }
        let sub = normalize_tracker_url("http://t.lan/swarm/announce").unwrap();
        assert_eq!(sub.base, "http://t.lan/swarm");
        assert_eq!(sub.announce, "http://t.lan/swarm/announce");
        let v6 = normalize_tracker_url("http://[::1]:7000").unwrap();
        assert_eq!(v6.announce, "http://[::1]:7000/announce");
        for bad in [
            "",
            "https://t.lan/announce",
            "http://:6969",
            "http://t.lan:0",
            "http://t.lan:99999",
            "http://t.lan/announce?passkey=1",
            "ftp://t.lan",
        ] {
            assert!(
                matches!(
                    normalize_tracker_url(bad),
                    Err(AppError::BadTrackerUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn peer_ids_are_prefixed_and_vary() {
        let a = peer_id_from_seed(1);
        let b = peer_id_from_seed(2);
        assert_eq!(&a[..8], b"-EJ0100-");
        assert_ne!(a, b);
        assert_eq!(a, peer_id_from_seed(1));
        assert!(a.iter().all(u8::is_ascii_graphic));
    }
}
