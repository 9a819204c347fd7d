//! The program every simulated peer runs, on any network model: the real [`PeerApp`] of the `peer` binary
//! (serve the download folder, publish, resume, get files by name) over whatever transport, storage,
//! blocking runner and clock the engine hands in, plus what the harness observes (node events, progress,
//! digests of finished files, an audit of checkpoints at boot). Nothing here re-implements an application
//! flow: what the user of a host asks for is a [`HostPlan`], the same options the binary builds from its
//! command line. Engine-specific setup (simulated disks and their faults, addresses, crash and restart)
//! lives in the engine's layer (`turmoil_host` for turmoil).

use crate::content;
use crate::scenario::{FileSpec, PeerSpec, Scenario, TrackerProtocol};
use crate::world::Shared;
use enjambre_core::dht::DhtEvent;
use enjambre_core::magnet::Magnet;
use enjambre_core::metainfo::{build, FileEntry, InfoHash, Metainfo, PieceHasher};
use enjambre_core::node::{NodeConfig, NodeEvent};
use enjambre_core::DEFAULT_PIECE_LENGTH;
use enjambre_net::app::{
    AppOptions, DhtOptions, GetRequest, PeerApp, ServeEvent, ServeOptions, TrackerUrls,
};
use enjambre_net::peer::{EventSink, PeerEnv};
use enjambre_net::state_dir::StateDir;
use enjambre_net::storage::{Blocking, Storage};
use enjambre_net::torrent_store::TorrentStore;
use enjambre_net::transport::Transport;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Port every simulated peer listens on.
pub const PEER_PORT: u16 = 6881;
/// Port of the simulated tracker.
pub const TRACKER_PORT: u16 = 6969;
/// Download folder on every simulated host.
pub const DATA_DIR: &str = "/data";
/// How often a host waiting for a file name asks the catalog again.
const CATALOG_RETRY: Duration = Duration::from_millis(500);
/// How often the harness reads a host's progress.
pub(crate) const OBSERVE_EVERY: Duration = Duration::from_millis(100);
/// Tries of a harness disk operation when the scenario injects I/O errors.
const HARNESS_TRIES: u32 = 20;

/// Simulated time since the start of the run, as the engine measures it.
pub type SimTime = Arc<dyn Fn() -> Duration + Send + Sync>;

/// Where a host's observations go: the shared world, under the host's name, stamped with simulated time.
#[derive(Clone)]
pub struct Observer {
    /// The shared world.
    pub world: Shared,
    /// The host's name.
    pub host: String,
    /// Simulated time now.
    pub now: SimTime,
}

impl Observer {
    /// Log a line (`story`: part of the story, else of the trace only).
    pub fn note(&self, story: bool, text: String) {
        let t = (self.now)();
        self.world.lock().note(t, &self.host, story, text);
    }
}

/// What the user of one peer host asks of it: the options the `peer` binary would build from its command
/// line (`peer --tracker URL --dir /data serve` and `peer get NAME...`), made from the scenario.
#[derive(Clone)]
pub struct HostPlan {
    /// The application's options.
    pub app: AppOptions,
    /// How the folder is served.
    pub serve: ServeOptions,
    /// What is downloaded, by name or by magnet.
    pub get: GetRequest,
    /// The files the host's user asked for (the scenario's `get`), whichever way they are fetched: the
    /// harness reads their digests once complete.
    pub wanted: Vec<String>,
}

impl HostPlan {
    /// The plan of peer `spec` in `scenario`, on its `boot`-th start; `resolve` gives a host's address.
    pub fn new(
        scenario: &Scenario,
        spec: &PeerSpec,
        seed: u64,
        boot: u32,
        trace: bool,
        resolve: impl Fn(&str) -> IpAddr,
    ) -> HostPlan {
        let tracker = scenario.tracker.enabled.then(|| TrackerUrls {
            announce: match scenario.tracker.protocol {
                TrackerProtocol::Http => format!("http://tracker:{TRACKER_PORT}/announce"),
                TrackerProtocol::Udp => format!("udp://tracker:{TRACKER_PORT}/announce"),
            },
            base: format!("http://tracker:{TRACKER_PORT}"),
        });
        let listen = SocketAddr::from(([0, 0, 0, 0], PEER_PORT));
        let mut app = AppOptions::new(PathBuf::from(DATA_DIR), listen, tracker.clone());
        app.peer.node = NodeConfig {
            peer_id: peer_id(&spec.name),
            seed: node_seed(seed, &spec.name, boot),
            trace,
            peer_exchange: spec.pex_on(),
            // As in the `peer` binary: info dictionaries are served to magnet users.
            serve_metadata: true,
            ..NodeConfig::default()
        };
        if spec.sequential {
            app.peer.node.piece_selection = enjambre_core::picker::PieceSelection::Sequential;
        }
        spec.knobs.apply(&mut app.peer.node);
        if spec.dht {
            // `peer --dht --dht-bootstrap HOST:PORT`: the bootstrap peer itself joins through nobody.
            let bootstrap = scenario
                .dht
                .bootstrap
                .iter()
                .filter(|b| **b != spec.name)
                .map(|b| SocketAddr::new(resolve(b), PEER_PORT))
                .collect();
            let mut dht = DhtOptions::new(bootstrap);
            dht.config.trace = trace;
            app.dht = Some(dht);
        }
        app.peer.max_upload_rate = spec.upload_rate.map(|s| s.0);
        app.peer.max_download_rate = spec.download_rate.map(|s| s.0);
        let peers: Vec<SocketAddr> = spec
            .sources
            .iter()
            .map(|s| SocketAddr::new(resolve(s), PEER_PORT))
            .collect();
        let piece_lengths = scenario
            .files
            .iter()
            .map(|f| {
                let length = f.piece_size.map_or(DEFAULT_PIECE_LENGTH, |s| s.0 as u32);
                (f.name.clone(), length)
            })
            .collect();
        let get = if spec.magnet {
            let trackers: Vec<String> = tracker.iter().map(|t| t.announce.clone()).collect();
            GetRequest {
                magnets: spec
                    .get
                    .iter()
                    .filter_map(|f| scenario.file(f))
                    .map(|f| magnet_link(seed, f, &trackers, &peers))
                    .collect(),
                ..GetRequest::default()
            }
        } else {
            GetRequest {
                names: spec.get.clone(),
                peers: peers.clone(),
                catalog_retry: Some(CATALOG_RETRY),
                ..GetRequest::default()
            }
        };
        HostPlan {
            app,
            serve: ServeOptions {
                recheck: false,
                piece_lengths,
                peers,
                ..ServeOptions::default()
            },
            get,
            wanted: spec.get.clone(),
        }
    }
}

/// The magnet link of a story's file, as its seeders' `peer create` would print it, with `trackers` and the
/// peer hints `peers` added; read back by the core's parser, as the `peer` binary reads what its user typed.
fn magnet_link(seed: u64, file: &FileSpec, trackers: &[String], peers: &[SocketAddr]) -> Magnet {
    let magnet = Magnet {
        info_hash: generated_info_hash(seed, file),
        name: Some(file.name.clone()),
        trackers: trackers.to_vec(),
        peers: peers.to_vec(),
    };
    // The URI is what a user would paste; parsing our own canonical output cannot fail.
    Magnet::parse(&magnet.to_uri()).unwrap_or(magnet)
}

/// The info hash of the torrent a seeder makes of `file`'s generated content (its `piece_size`; a single
/// file named after it, or a folder of its files): what the magnet of the story names. Hashed once per
/// process and file.
pub fn generated_info_hash(seed: u64, file: &FileSpec) -> InfoHash {
    type Cache = Mutex<BTreeMap<(u64, String, Vec<(String, u64)>, u32), InfoHash>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let piece_length = file.piece_size.map_or(DEFAULT_PIECE_LENGTH, |s| s.0 as u32);
    let key = (seed, file.name.clone(), file.parts(), piece_length);
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(h) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return h;
    }
    // The files as `peer create` walks them: a plain file is itself; a folder's files in sorted path order,
    // each path below the folder.
    let mut parts: Vec<(Vec<String>, String, u64)> = file
        .parts()
        .into_iter()
        .map(|(path, size)| {
            let below = match path.strip_prefix(&format!("{}/", file.name)) {
                Some(rest) if file.is_folder() => rest.split('/').map(String::from).collect(),
                _ => vec![path.clone()],
            };
            (below, path, size)
        })
        .collect();
    parts.sort();
    let mut hasher = PieceHasher::new(piece_length);
    for (_, path, size) in &parts {
        content::generate(seed, path, *size, |chunk| hasher.feed(chunk));
    }
    let entries = parts
        .into_iter()
        .map(|(path, _, length)| FileEntry { path, length })
        .collect();
    let hash = match build(&file.name, piece_length, entries, hasher.finish(), None) {
        Ok(meta) => meta.info_hash,
        // A scenario's files are checked when it loads (plain names, sizes up to 1 GiB, piece sizes that
        // are powers of two): a file that makes no torrent cannot reach this point. Name a hash no one has.
        Err(_) => InfoHash([0; 20]),
    };
    if let Ok(mut c) = cache.lock() {
        c.insert(key, hash);
    }
    hash
}

/// The seed of a peer's node on one boot: differs per peer and per boot, fixed by the run's seed.
fn node_seed(seed: u64, name: &str, boot: u32) -> u64 {
    let d = Sha1::digest(format!("{seed}/{name}/{boot}").as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// A readable peer id: `-EJ0100-` and the host's name.
fn peer_id(name: &str) -> [u8; 20] {
    let mut id = *b"-EJ0100-............";
    for (slot, b) in id[8..].iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    id
}

/// Run a peer host: audit its checkpoints, start the real [`PeerApp`] with `plan`, serve the folder, get
/// the files asked for, and report progress to the world until the host is stopped.
pub async fn run_peer<T: Transport, B: Blocking>(
    env: PeerEnv<T, B>,
    mut plan: HostPlan,
    observer: Observer,
) -> Result<(), String> {
    let storage = env.storage.clone();
    let dir = plan.app.peer.dir.clone();
    audit_checkpoints(&observer, storage.clone(), &dir);
    let events: EventSink = {
        let o = observer.clone();
        Arc::new(move |_, e: &NodeEvent| o.world.lock().on_event((o.now)(), &o.host, e))
    };
    plan.app.peer.events = Some(events);
    if let Some(dht) = &mut plan.app.dht {
        let o = observer.clone();
        dht.events = Some(Arc::new(move |_, e: &DhtEvent| {
            o.world.lock().on_dht_event((o.now)(), &o.host, e)
        }));
    }
    {
        // A magnet's torrent is named before its metadata arrives, so that the story can say which file.
        let mut w = observer.world.lock();
        for m in &plan.get.magnets {
            if let Some(name) = &m.name {
                w.names.insert(m.info_hash.to_hex(), name.clone());
            }
        }
    }
    plan.app.on_added = Some({
        let world = observer.world.clone();
        Arc::new(move |meta: &Metainfo| {
            world
                .lock()
                .names
                .insert(meta.info_hash.to_hex(), meta.info.name.clone());
        })
    });
    let app = PeerApp::start(env, plan.app)
        .await
        .map_err(|e| e.to_string())?;
    let o = observer.clone();
    let on_serve = Arc::new(move |event: ServeEvent| match event {
        ServeEvent::Skipped { name, error } => o.note(true, format!("not sharing {name}: {error}")),
        ServeEvent::PublishFailed { name, error } => {
            o.note(false, format!("{name} not published yet: {error}"))
        }
        _ => {}
    });
    app.serve_folder(&plan.serve, on_serve)
        .await
        .map_err(|e| e.to_string())?;
    let get = async {
        if let Err(e) = app.get(&plan.get).await {
            observer.note(true, format!("cannot get {:?}: {e}", plan.wanted));
        }
    };
    let observe = observe_progress(&app, &plan.wanted, &observer, storage, &dir);
    tokio::join!(get, observe);
    Ok(())
}

/// Report the peer's progress to the world every [`OBSERVE_EVERY`], and the digest of each file it was
/// asked to get once that file is complete and durable. Runs until the host stops.
async fn observe_progress<T: Transport, B: Blocking>(
    app: &PeerApp<T, B>,
    wanted: &[String],
    observer: &Observer,
    storage: Arc<dyn Storage>,
    dir: &Path,
) {
    loop {
        tokio::time::sleep(OBSERVE_EVERY).await;
        let Ok(stats) = app.stats().await else {
            continue;
        };
        let now = (observer.now)();
        let mut to_digest = Vec::new();
        {
            let mut w = observer.world.lock();
            let p = w.peers.entry(observer.host.clone()).or_default();
            for s in &stats {
                // Downloads only: what a peer seeds from the start is the original itself.
                if s.complete
                    && wanted.contains(&s.name)
                    && s.pieces_durable == s.pieces_total
                    && !p.digests.contains_key(&s.name)
                {
                    to_digest.push(s.name.clone());
                }
                p.stats.insert(s.name.clone(), s.clone());
            }
            let uploaded = stats.iter().map(|s| s.bytes_uploaded).sum::<u64>()
                + p.uploaded_before.values().sum::<u64>();
            w.uploaded(now, &observer.host, uploaded);
            if !stats.iter().any(|s| s.checking) {
                let have = stats.iter().map(|s| s.pieces_have).sum();
                let total = stats.iter().map(|s| s.pieces_total).sum();
                w.progress(now, &observer.host, have, total);
            }
        }
        for file in to_digest {
            if let Ok(digests) = digest_tree(storage.as_ref(), dir, &file) {
                observer
                    .world
                    .lock()
                    .peers
                    .entry(observer.host.clone())
                    .or_default()
                    .digests
                    .extend(digests);
            }
        }
    }
}

/// Run a disk operation of the harness itself (not of the peer under test), trying again on injected I/O
/// errors so that they hit only the software under test.
pub fn harness_io<T, E>(mut op: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut tries = 1;
    loop {
        match op() {
            Err(_) if tries < HARNESS_TRIES => tries += 1,
            r => return r,
        }
    }
}

/// Digests of download `name` in `dir`, by path below `dir`: the file itself, or every file of a folder
/// (`name/a.bin`, `name/sub/b.bin`, so that copies are compared file by file) and, under the folder's own
/// name, the SHA-1 of those digests in path order (so that a digest under a download's name means, for
/// either kind, that it was read back complete).
fn digest_tree(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
) -> std::io::Result<Vec<(String, [u8; 20])>> {
    let mut out = Vec::new();
    files_digests(storage, dir, name, &mut out)?;
    if out.len() != 1 || out[0].0 != name {
        let mut h = Sha1::new();
        for (_, d) in &out {
            h.update(d);
        }
        out.push((name.to_string(), h.finalize().into()));
    }
    Ok(out)
}

fn files_digests(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    out: &mut Vec<(String, [u8; 20])>,
) -> std::io::Result<()> {
    let path = dir.join(name);
    if !storage.is_dir(&path) {
        out.push((name.to_string(), digest_file(storage, &path)?));
        return Ok(());
    }
    for entry in storage.list_dir(&path)? {
        if let Some(child) = entry.file_name().and_then(|n| n.to_str()) {
            files_digests(storage, dir, &format!("{name}/{child}"), out)?;
        }
    }
    Ok(())
}

fn digest_file(storage: &dyn Storage, path: &Path) -> std::io::Result<[u8; 20]> {
    let len = storage.file_len(path)?.unwrap_or(0);
    let f = storage.open(path, false)?;
    // The flow engine's disks know the digest of unmodified generated content without reading it.
    if let Some(d) = f.known_sha1(0, len)? {
        return Ok(d);
    }
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        f.read_at(&mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finalize().into())
}

/// Invariant 2, checked by the harness on every boot: every piece a checkpoint on disk claims must hash
/// correctly from what survived on disk.
fn audit_checkpoints(observer: &Observer, storage: Arc<dyn Storage>, dir: &Path) {
    let state = StateDir::new(storage.clone(), dir);
    for (meta, checkpoint) in state.list_downloads() {
        let Some(cp) = checkpoint else { continue };
        let Ok(claimed) = cp.validate(&meta) else {
            continue;
        };
        let Ok(store) = TorrentStore::new(storage.clone(), dir.to_path_buf(), &meta) else {
            continue;
        };
        let bad: Vec<u32> = claimed
            .iter_ones()
            .filter(|&p| {
                harness_io(|| store.hash_piece(p))
                    .ok()
                    .is_some_and(|h| Some(h) != meta.piece_hash(p))
            })
            .collect();
        if !bad.is_empty() {
            let text = format!(
                "INVARIANT 2 BROKEN: checkpoint of {} claims {} pieces that are not on disk (first: piece {})",
                meta.info.name,
                bad.len(),
                bad[0]
            );
            observer
                .world
                .lock()
                .violations
                .push(format!("{}: {text}", observer.host));
            observer.note(true, text);
        }
    }
}
