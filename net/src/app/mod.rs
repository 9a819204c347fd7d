//! The peer application, shared by the `peer` binary, the demo, the simulator's hosts and tests: serve a
//! folder (seed its complete files, publish them, resume its unfinished downloads), get files by catalog
//! name or from a `.torrent` file, and wait until downloads are complete and durable.
//!
//! Generic over the driver's seams like [`Peer`] (transport, storage, blocking runner): the `peer`
//! binary runs it on tokio sockets and `std::fs`, the simulator on its simulated network and disks. Each
//! flow lives in its own module: [`serve`] (a folder), [`get`] (names and `.torrent` files), [`catalog`]
//! (the tracker's catalog), [`report`] (finished downloads), [`args`] (what a front end reads from its user).

pub mod args;
pub mod catalog;
pub mod dht;
pub mod get;
pub mod report;
pub mod serve;

pub use args::{normalize_tracker_url, peer_id_from_seed, TrackerUrls};
pub use dht::{dht_table_path, DhtOptions, DHT_TABLE_FILE};
pub use get::{load_torrent_file, GetRequest};
pub use report::{human_bytes, is_finished, FileReport};
pub use serve::{ServeEvent, ServeOptions, ServeSink, Served};

use crate::create::CreateError;
use crate::library::{self, Library};
use crate::peer::{AddMode, Peer, PeerEnv, PeerError, PeerOptions};
use crate::storage::Blocking;
use crate::tracker_client::TrackerClientError;
use crate::transport::{DatagramSocket, Transport};
use enjambre_core::metainfo::{InfoHash, Metainfo, MetainfoError};
use enjambre_core::node::{NodeConfig, TorrentStats};
use enjambre_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

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
    /// A magnet's metadata matched its info hash but could not be made into a torrent file.
    #[error("the metadata of magnet {hash} is not a usable torrent: {source}")]
    BadMagnetMetadata {
        /// The magnet's info hash.
        hash: InfoHash,
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
    /// The download folder could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateFolder {
        /// The folder.
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

/// Told of every torrent handed to the peer (its metainfo), before the node reports anything about it.
pub type AddedSink = Arc<dyn Fn(&Metainfo) + Send + Sync>;

/// How a peer application is set up.
#[derive(Clone)]
pub struct AppOptions {
    /// The peer driver's options (folder, listen address, node tunables, rate caps, event sink). Its
    /// `tracker` is set from [`AppOptions::tracker`]'s announce URL.
    pub peer: PeerOptions,
    /// The tracker, if any: announced to for every torrent, and its catalog used for names.
    pub tracker: Option<TrackerUrls>,
    /// Told of every torrent added, with its metainfo.
    pub on_added: Option<AddedSink>,
    /// Run a DHT node (BEP 5) on the listen port, over UDP: every torrent looks for peers and announces
    /// itself there, and a magnet without a tracker finds its swarm.
    pub dht: Option<DhtOptions>,
}

impl AppOptions {
    /// Options for `dir`, listening on `listen`, with default node settings and no limits.
    pub fn new(dir: PathBuf, listen: SocketAddr, tracker: Option<TrackerUrls>) -> AppOptions {
        AppOptions {
            peer: PeerOptions {
                node: NodeConfig::default(),
                dir,
                listen,
                tracker: None,
                max_upload_rate: None,
                max_download_rate: None,
                events: None,
                unsafe_checkpoint_before_sync: false,
            },
            tracker,
            on_added: None,
            dht: None,
        }
    }
}

/// A torrent the app handed to the peer.
struct Added {
    name: String,
    at: Instant,
}

/// A running peer with the application flows on top.
pub struct PeerApp<T, B> {
    env: PeerEnv<T, B>,
    peer: Peer,
    task: Mutex<Option<JoinHandle<()>>>,
    tracker: Option<TrackerUrls>,
    dir: PathBuf,
    on_added: Option<AddedSink>,
    /// Torrents handed to the peer, with when they were added.
    added: Mutex<BTreeMap<InfoHash, Added>>,
    /// Tasks working for the app in the background (publications being retried, DHT lookups), stopped
    /// with it.
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The DHT node, if the app runs one.
    dht: Option<dht::AppDht>,
}

impl<T: Transport, B: Blocking> PeerApp<T, B> {
    /// Create the download folder if needed, bind the listener and start the peer.
    pub async fn start(env: PeerEnv<T, B>, options: AppOptions) -> Result<Self, AppError> {
        let AppOptions {
            mut peer,
            tracker,
            on_added,
            dht: dht_options,
        } = options;
        peer.tracker = tracker.as_ref().map(|t| t.announce.clone());
        let dir = peer.dir.clone();
        let (storage, folder) = (env.storage.clone(), dir.clone());
        env.blocking
            .run(move || storage.create_dir_all(&folder))
            .await
            .map_err(|source| AppError::CreateFolder {
                path: dir.clone(),
                source,
            })?;
        let Some(dht_options) = dht_options else {
            let (peer, task) = Peer::start(env.clone(), peer).await?;
            return Ok(PeerApp::new(env, peer, task, tracker, dir, on_added, None));
        };
        // The DHT listens on UDP on the peer's port. Asked for any port, the UDP socket picks it, and TCP
        // takes the same one (another try if that TCP port is taken).
        let any_port = peer.listen.port() == 0;
        let seed = peer.node.seed;
        let mut tries = 0;
        let (socket, peer, task) = loop {
            let socket = dht::bind_socket(&env.transport, peer.listen).await?;
            let port = socket
                .local_addr()
                .map_err(|source| PeerError::Listen {
                    addr: peer.listen,
                    source,
                })?
                .port();
            let mut options = peer.clone();
            options.listen.set_port(port);
            options.node.dht_port = Some(port);
            tries += 1;
            match Peer::start(env.clone(), options).await {
                Err(PeerError::Listen { .. }) if any_port && tries < 8 => continue,
                started => {
                    let (peer, task) = started?;
                    break (socket, peer, task);
                }
            }
        };
        let dht = dht::start_dht(&env, &dir, socket, &peer, seed, dht_options).await?;
        let app = PeerApp::new(env, peer, task, tracker, dir, on_added, Some(dht));
        app.start_dht_saver();
        Ok(app)
    }

    fn new(
        env: PeerEnv<T, B>,
        peer: Peer,
        task: JoinHandle<()>,
        tracker: Option<TrackerUrls>,
        dir: PathBuf,
        on_added: Option<AddedSink>,
        dht: Option<dht::AppDht>,
    ) -> Self {
        PeerApp {
            env,
            peer,
            task: Mutex::new(Some(task)),
            tracker,
            dir,
            on_added,
            added: Mutex::new(BTreeMap::new()),
            background: Mutex::new(Vec::new()),
            dht,
        }
    }

    /// Run `task` until the app stops.
    fn spawn_background(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let task = tokio::spawn(task);
        if let Ok(mut tasks) = self.background.lock() {
            tasks.push(task);
        }
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

    /// Hand `meta` to the peer (once: adding it again only adds `sources`).
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
        if let Some(sink) = &self.on_added {
            sink(&meta);
        }
        let tracker = self.tracker.as_ref().map(|t| t.announce.clone());
        let now = self.env.clock.now();
        let name = meta.info.name.clone();
        self.peer
            .add(self.env.blocking.clone(), meta, mode, tracker, sources)
            .await?;
        if let Ok(mut a) = self.added.lock() {
            a.insert(hash, Added { name, at: now });
        }
        self.start_dht_lookups(hash);
        Ok(hash)
    }

    /// Info hashes of the torrents this app added.
    pub fn active(&self) -> BTreeSet<InfoHash> {
        self.added
            .lock()
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The torrent named `name` this app added, if any.
    fn active_named(&self, name: &str) -> Option<InfoHash> {
        let added = self.added.lock().ok()?;
        added
            .iter()
            .find(|(_, a)| a.name == name)
            .map(|(hash, _)| *hash)
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
                let Some(s) = all.iter().find(|s| s.info_hash == *h) else {
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
                        .and_then(|a| a.get(h).map(|a| a.at))
                        .unwrap_or(now);
                    let seconds = now.saturating_since(started).as_secs_f64();
                    let report = FileReport::from_stats(s, seconds);
                    on_done(&report);
                    reports.push(report);
                }
            }
            on_tick(&current);
            if pending.is_empty() {
                self.stamp_downloads(hashes.to_vec()).await;
                return Ok(reports);
            }
            self.env.clock.sleep_until(now + poll).await;
        }
    }

    /// Announce `stopped`, close every connection and stop the peer.
    pub async fn shutdown(&self) {
        self.stop_background();
        self.stop_dht(true).await;
        self.peer.shutdown().await;
        self.join_peer_task().await;
    }

    /// Stop at once as a crash would (no `stopped` announce, nothing flushed).
    pub async fn abort(&self) {
        self.stop_background();
        self.stop_dht(false).await;
        self.peer.abort();
        self.join_peer_task().await;
    }

    fn stop_background(&self) {
        let tasks = self
            .background
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            task.abort();
        }
    }

    async fn join_peer_task(&self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Scan a download folder on the blocking runner.
pub async fn scan_folder<T, B: Blocking>(
    env: &PeerEnv<T, B>,
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
