//! `peer demo`: the whole story in one process on loopback. A tracker and three peers A, B and C; A shares
//! six generated files and publishes them; B, then C, fetch all six by name from the catalog (so C gets
//! pieces from both A and B); C is killed half-way through the largest file, as a crash would, and started
//! again on the same folder, resuming where its last durable checkpoint left off; the tracker's swarm table
//! is printed as it goes; at the end every copy is compared by SHA-1.
//!
//! The sizes, rate cap and pacing are parameters ([`DemoConfig`]), so a test can run the same story with
//! tiny files in a second or two.

use crate::app::{
    AppError, AppOptions, FileReport, GetRequest, PeerApp, ServeOptions, TrackerUrls,
};
use crate::clock::Clock;
use crate::peer::{EventSink, Peer, PeerEnv};
use crate::storage::ThreadPool;
use crate::tracker_server::{serve, ServerConfig};
use crate::transport::{Listener, TokioTransport, Transport};
use enjambre_core::metainfo::InfoHash;
use enjambre_core::node::{NodeConfig, NodeEvent};
use enjambre_core::tracker::{Registry, RegistryConfig};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

type App = PeerApp<TokioTransport, ThreadPool>;

/// Receives the demo's output, one line (or a multi-line table) at a time.
pub type DemoOut = Arc<dyn Fn(&str) + Send + Sync>;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Folder holding the peers' folders `A`, `B`, `C`; a fresh temporary folder when `None`.
    pub dir: Option<PathBuf>,
    /// The files A shares: name and size. C is killed half-way through the largest.
    pub files: Vec<(String, u64)>,
    /// Upload cap of each peer in bytes per second (what makes the story last long enough to watch).
    pub upload_rate: Option<u64>,
    /// How often the swarm table is printed.
    pub tick: Duration,
    /// C starts once B holds this fraction of the largest file.
    pub c_starts_at: f64,
    /// Keep the folder afterwards (a temporary folder is otherwise removed after a successful run).
    pub keep: bool,
    /// The whole run fails if it takes longer than this.
    pub timeout: Duration,
}

impl DemoConfig {
    /// The standard story: six files from 1 B to 50 MB, 16 MB/s per peer, the table every second.
    pub fn standard() -> DemoConfig {
        DemoConfig {
            dir: None,
            files: vec![
                ("hello.txt".into(), 1),
                ("notes.txt".into(), 100 * 1024),
                ("photo.jpg".into(), 1024 * 1024 + 7),
                ("song.mp3".into(), 5 * 1024 * 1024),
                ("slides.pdf".into(), 12 * 1024 * 1024),
                ("movie.mp4".into(), 50_000_000),
            ],
            upload_rate: Some(16_000_000),
            tick: Duration::from_secs(1),
            c_starts_at: 0.15,
            keep: false,
            timeout: Duration::from_secs(120),
        }
    }

    /// The same story at small sizes, for tests.
    pub fn small() -> DemoConfig {
        DemoConfig {
            files: vec![
                ("hello.txt".into(), 1),
                ("notes.txt".into(), 10_000),
                ("photo.jpg".into(), 600_007),
                ("song.mp3".into(), 1_000_000),
                ("slides.pdf".into(), 1_500_000),
                ("movie.mp4".into(), 4 * 1024 * 1024 + 3),
            ],
            upload_rate: Some(6_000_000),
            tick: Duration::from_millis(500),
            c_starts_at: 0.2,
            timeout: Duration::from_secs(60),
            ..DemoConfig::standard()
        }
    }
}

/// What the demo established.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSummary {
    /// The folder the peers used.
    pub dir: PathBuf,
    /// Wall time from B's start until B and C hold every file durably.
    pub seconds: f64,
    /// Bytes B and C ended up holding.
    pub bytes: u64,
    /// Pieces of the largest file.
    pub big_pieces: u32,
    /// Pieces of the largest file C had verified when it was killed.
    pub killed_at: u32,
    /// Pieces of the largest file C's last durable checkpoint claimed when it was killed.
    pub durable_at_kill: u32,
    /// Pieces of the largest file C found verified when it restarted.
    pub resumed: u32,
    /// The first piece C still needed after the restart.
    pub first_missing: Option<u32>,
    /// Pieces C received, per source (`A`, `B`, or an address), over both of its runs.
    pub c_sources: BTreeMap<String, u32>,
    /// Files whose three copies are byte-identical.
    pub verified_files: usize,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Setting up or reading the folders failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A peer flow failed.
    #[error("{who}: {error}")]
    Peer {
        /// Which peer.
        who: &'static str,
        /// What failed.
        error: AppError,
    },
    /// The story went wrong.
    #[error("{0}")]
    Failed(String),
    /// The run took too long.
    #[error("the demo did not finish within {0:?}")]
    Timeout(Duration),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn peer_err(who: &'static str) -> impl FnOnce(AppError) -> DemoError {
    move |error| DemoError::Peer { who, error }
}

/// Deterministic pseudo-random content for file number `index` (a ChaCha8 stream seeded with it;
/// incompressible, like media).
fn generate(path: &Path, size: u64, index: u64) -> io::Result<()> {
    let mut file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = ChaCha8Rng::seed_from_u64(index);
    let mut left = size;
    let mut chunk = vec![0u8; 1 << 16];
    while left > 0 {
        rng.fill_bytes(&mut chunk);
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn sha1_file(path: &Path) -> io::Result<[u8; 20]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A demo peer id: the letter's rank decides which of two duplicate connections both ends keep (the one
/// opened by the lower id), so C's outbound connections, which know A's and B's listening ports, win.
fn demo_node(rank: u8, letter: char) -> NodeConfig {
    let mut peer_id = *b"-EJ0100-demo0-peer-X";
    peer_id[12] = b'0' + rank;
    peer_id[19] = letter as u8;
    NodeConfig {
        peer_id,
        seed: u64::from(rank) + 1,
        progress_announce_interval: Duration::from_millis(500),
        ..NodeConfig::default()
    }
}

/// What C's events tell the demo.
struct CWatch {
    big: InfoHash,
    half: u32,
    verified: AtomicU32,
    durable: AtomicU32,
    killed: AtomicBool,
    killed_at: AtomicU32,
    peer: OnceLock<Peer>,
    kill_done: Notify,
    ready: Mutex<Option<(u32, Option<u32>)>>,
    ready_seen: Notify,
    sources: Mutex<BTreeMap<SocketAddr, u32>>,
}

impl CWatch {
    fn on_event(&self, event: &NodeEvent, first_run: bool) {
        match event {
            NodeEvent::PieceVerified { torrent, from, .. } => {
                if let Ok(mut s) = self.sources.lock() {
                    for addr in from {
                        *s.entry(*addr).or_default() += 1;
                    }
                }
                if first_run && *torrent == self.big {
                    let n = self.verified.fetch_add(1, Ordering::SeqCst) + 1;
                    if n >= self.half && !self.killed.swap(true, Ordering::SeqCst) {
                        self.killed_at.store(n, Ordering::SeqCst);
                        if let Some(peer) = self.peer.get() {
                            peer.abort();
                        }
                        self.kill_done.notify_one();
                    }
                }
            }
            NodeEvent::CheckpointWritten {
                torrent, verified, ..
            } if first_run && *torrent == self.big && !self.killed.load(Ordering::SeqCst) => {
                self.durable.store(*verified, Ordering::SeqCst);
            }
            NodeEvent::Ready {
                torrent,
                pieces_resumed,
                first_missing,
            } if !first_run && *torrent == self.big => {
                if let Ok(mut r) = self.ready.lock() {
                    *r = Some((*pieces_resumed, *first_missing));
                }
                self.ready_seen.notify_one();
            }
            _ => {}
        }
    }
}

/// Removes a temporary demo folder on drop unless told to keep it.
struct Cleanup {
    dir: PathBuf,
    remove: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Run the demo, printing the story to `out`.
pub async fn run_demo(config: DemoConfig, out: DemoOut) -> Result<DemoSummary, DemoError> {
    let timeout = config.timeout;
    match tokio::time::timeout(timeout, run(config, out)).await {
        Ok(r) => r,
        Err(_) => Err(DemoError::Timeout(timeout)),
    }
}

async fn run(config: DemoConfig, out: DemoOut) -> Result<DemoSummary, DemoError> {
    if config.files.is_empty() {
        return Err(DemoError::Failed("the demo needs at least one file".into()));
    }
    let (root, temporary) = match &config.dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let d = std::env::temp_dir()
                .join(format!("enjambre-demo-{}-{nanos:08x}", std::process::id()));
            (d, true)
        }
    };
    // A temporary folder goes away however the run ends (pass `keep` to inspect it).
    let _cleanup = Cleanup {
        dir: root.clone(),
        remove: temporary && !config.keep,
    };
    let dirs: Vec<PathBuf> = ["A", "B", "C"].iter().map(|l| root.join(l)).collect();
    for d in &dirs {
        let empty = match std::fs::read_dir(d) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(io_err(d)(e)),
        };
        if !empty {
            return Err(DemoError::Failed(format!(
                "{} is not empty: give the demo an empty or new folder",
                d.display()
            )));
        }
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let started = Instant::now();
    let say = {
        let out = out.clone();
        move |text: &str| {
            out(&format!(
                "[{:>5.1}s] {text}",
                started.elapsed().as_secs_f64()
            ))
        }
    };
    let say = Arc::new(say);
    out(&format!(
        "enjambre demo: a tracker and three peers on 127.0.0.1, folder {}",
        root.display()
    ));

    // The files A shares.
    let total: u64 = config.files.iter().map(|(_, s)| s).sum();
    let (big_name, big_size) = config
        .files
        .iter()
        .max_by_key(|(_, s)| *s)
        .cloned()
        .unwrap_or_default();
    {
        let files = config.files.clone();
        let a = dirs[0].clone();
        tokio::task::spawn_blocking(move || -> Result<(), DemoError> {
            for (i, (name, size)) in files.iter().enumerate() {
                let path = a.join(name);
                generate(&path, *size, i as u64).map_err(io_err(&path))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| DemoError::Failed(format!("generating files: {e}")))??;
    }
    let list: Vec<String> = config
        .files
        .iter()
        .map(|(n, s)| format!("{n} ({s} B)"))
        .collect();
    say(&format!(
        "generated {} files in A, {} in all: {}",
        config.files.len(),
        mb(total),
        list.join(", ")
    ));

    // The tracker.
    let listener = TokioTransport
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(io_err(Path::new("127.0.0.1:0")))?;
    let tracker_addr = listener
        .local_addr()
        .map_err(io_err(Path::new("127.0.0.1:0")))?;
    let registry = Arc::new(Mutex::new(Registry::new(RegistryConfig::with_interval(
        Duration::from_secs(1),
    ))));
    let server = tokio::spawn(serve::<TokioTransport>(
        listener,
        registry.clone(),
        Clock::new(),
        ServerConfig::default(),
    ));
    let _stop_server = AbortOnDrop(server);
    let tracker = TrackerUrls {
        announce: format!("http://{tracker_addr}/announce"),
        base: format!("http://{tracker_addr}"),
    };
    say(&format!(
        "tracker on {} (web monitor: {}/)",
        tracker.announce, tracker.base
    ));
    let options = |dir: &Path, rank: u8, letter: char, listen: SocketAddr| {
        let mut o = AppOptions::new(dir.to_path_buf(), listen, Some(tracker.clone()));
        o.peer.node = demo_node(rank, letter);
        o.peer.max_upload_rate = config.upload_rate;
        o
    };
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));

    // The swarm table, every tick.
    let monitor = {
        let registry = registry.clone();
        let out = out.clone();
        let tick = config.tick;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.tick().await;
            loop {
                interval.tick().await;
                let table = {
                    let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
                    reg.swarm_view().render_table()
                };
                out(&format!(
                    "--- swarm at {:.1}s ---\n{}",
                    started.elapsed().as_secs_f64(),
                    table.trim_end()
                ));
            }
        })
    };
    let _stop_monitor = AbortOnDrop(monitor);

    // A shares everything.
    let a = PeerApp::start(PeerEnv::real(), options(&dirs[0], 3, 'A', any_port))
        .await
        .map_err(peer_err("A"))?;
    let a_sink: crate::app::ServeSink = Arc::new(|_| {});
    let served = a
        .serve_folder(&ServeOptions::default(), a_sink)
        .await
        .map_err(peer_err("A"))?;
    if served.len() != config.files.len() {
        return Err(DemoError::Failed(format!(
            "A shares {} files, expected {}",
            served.len(),
            config.files.len()
        )));
    }
    say(&format!(
        "A ({}) hashed and shares all {} files, published to the tracker catalog",
        a.local_addr(),
        served.len()
    ));
    let names: Vec<String> = a
        .list_catalog()
        .await
        .map_err(peer_err("A"))?
        .into_iter()
        .map(|f| f.name)
        .collect();
    say(&format!("catalog: {}", names.join(", ")));

    // B fetches all six by name.
    let b = PeerApp::start(PeerEnv::real(), options(&dirs[1], 2, 'B', any_port))
        .await
        .map_err(peer_err("B"))?;
    let transfer_start = Instant::now();
    let by_name = GetRequest {
        names: names.clone(),
        ..GetRequest::default()
    };
    let big_meta = b.fetch_by_name(&big_name).await.map_err(peer_err("B"))?;
    let (big, big_pieces) = (big_meta.info_hash, big_meta.piece_count());
    let b_hashes = b.get(&by_name).await.map_err(peer_err("B"))?;
    say(&format!(
        "B ({}) asks the tracker for all {} files by name and starts downloading",
        b.local_addr(),
        names.len()
    ));

    // C starts once B holds part of the largest file.
    let want = ((f64::from(big_pieces) * config.c_starts_at).ceil() as u32).max(1);
    loop {
        let have = piece_count(&b, &big).await?;
        if have >= want || have >= big_pieces {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watch = Arc::new(CWatch {
        big,
        half: (big_pieces / 2).max(1),
        verified: AtomicU32::new(0),
        durable: AtomicU32::new(0),
        killed: AtomicBool::new(false),
        killed_at: AtomicU32::new(0),
        peer: OnceLock::new(),
        kill_done: Notify::new(),
        ready: Mutex::new(None),
        ready_seen: Notify::new(),
        sources: Mutex::new(BTreeMap::new()),
    });
    let sink = |first_run: bool| -> EventSink {
        let w = watch.clone();
        Arc::new(move |_, e: &NodeEvent| w.on_event(e, first_run))
    };
    let mut c_options = options(&dirs[2], 1, 'C', any_port);
    c_options.peer.events = Some(sink(true));
    let c = PeerApp::start(PeerEnv::real(), c_options)
        .await
        .map_err(peer_err("C"))?;
    let _ = watch.peer.set(c.peer().clone());
    let c_addr = c.local_addr();
    say(&format!(
        "C ({c_addr}) starts while B holds {want}/{big_pieces} pieces of {big_name}: it downloads from A and B"
    ));
    if let Err(e) = c.get(&by_name).await {
        // Killed already? Then the story goes on; anything else is a failure.
        if !watch.killed.load(Ordering::SeqCst) {
            return Err(peer_err("C")(e));
        }
    }

    // B works on while C is killed half-way through the largest file.
    let b_wait = {
        let out = say.clone();
        let hashes = b_hashes.clone();
        async move {
            b.wait_all(
                &hashes,
                Duration::from_millis(100),
                |_| {},
                |r| out(&format!("B finished {}", describe(r))),
            )
            .await
            .map_err(peer_err("B"))?;
            Ok::<_, DemoError>(b)
        }
    };
    let c_story = async {
        watch.kill_done.notified().await;
        c.abort().await;
        let killed_at = watch.killed_at.load(Ordering::SeqCst);
        let durable = watch.durable.load(Ordering::SeqCst);
        say(&format!(
            "C KILLED (like kill -9) with {killed_at}/{big_pieces} pieces of {big_name} verified; its last durable checkpoint claims {durable}"
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let c2 = start_on(&options, &dirs[2], c_addr, sink(false)).await?;
        say(&format!(
            "C restarts on the same folder ({}) and asks for the same {} files",
            c2.local_addr(),
            names.len()
        ));
        let hashes = c2.get(&by_name).await.map_err(peer_err("C"))?;
        watch.ready_seen.notified().await;
        let (resumed, first_missing) = watch
            .ready
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or((0, None));
        let fm = first_missing.map_or("none".to_string(), |p| p.to_string());
        say(&format!(
            "C resumes {big_name} with {resumed}/{big_pieces} pieces verified from its checkpoint (spot-checked); first missing piece: {fm}"
        ));
        c2.wait_all(
            &hashes,
            Duration::from_millis(100),
            |_| {},
            |r| say(&format!("C finished {}", describe(r))),
        )
        .await
        .map_err(peer_err("C"))?;
        Ok::<_, DemoError>((c2, killed_at, durable, resumed, first_missing))
    };
    let (b, c_result) = tokio::join!(b_wait, c_story);
    let b = b?;
    let (c2, killed_at, durable_at_kill, resumed, first_missing) = c_result?;
    let seconds = transfer_start.elapsed().as_secs_f64();
    drop(_stop_monitor);
    let final_table = {
        let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.swarm_view().render_table()
    };
    out(&format!(
        "--- swarm at {:.1}s ---\n{}",
        started.elapsed().as_secs_f64(),
        final_table.trim_end()
    ));

    // Every copy, byte for byte.
    let files = config.files.clone();
    let d = dirs.clone();
    let checks = tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|(name, _)| {
                let sums: Vec<io::Result<[u8; 20]>> =
                    d.iter().map(|dir| sha1_file(&dir.join(name))).collect();
                (name.clone(), sums)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| DemoError::Failed(format!("verifying: {e}")))?;
    out("verification (SHA-1 of every copy):");
    let mut verified_files = 0;
    let mut failures = Vec::new();
    for ((name, sums), (_, size)) in checks.iter().zip(&config.files) {
        let ok: Vec<[u8; 20]> = sums
            .iter()
            .filter_map(|s| s.as_ref().ok())
            .copied()
            .collect();
        let same = ok.len() == 3 && ok.iter().all(|s| *s == ok[0]);
        if same {
            verified_files += 1;
            out(&format!(
                "  {name:<12} {size:>10} B  {}  A = B = C  ok",
                hex::encode(ok[0])
            ));
        } else {
            out(&format!("  {name:<12} {size:>10} B  copies differ  FAILED"));
            failures.push(name.clone());
        }
    }

    // Where C's pieces came from.
    let labels: BTreeMap<SocketAddr, &str> = [(a.local_addr(), "A"), (b.local_addr(), "B")]
        .into_iter()
        .collect();
    let mut c_sources: BTreeMap<String, u32> = BTreeMap::new();
    if let Ok(s) = watch.sources.lock() {
        for (addr, n) in s.iter() {
            let label = labels
                .get(addr)
                .map_or_else(|| addr.to_string(), |l| l.to_string());
            *c_sources.entry(label).or_default() += n;
        }
    }
    let bytes = 2 * total;
    let summary = DemoSummary {
        dir: root.clone(),
        seconds,
        bytes,
        big_pieces,
        killed_at,
        durable_at_kill,
        resumed,
        first_missing,
        c_sources: c_sources.clone(),
        verified_files,
    };
    let from: Vec<String> = c_sources
        .iter()
        .map(|(k, v)| format!("{k}: {v} pieces"))
        .collect();
    out("summary:");
    out(&format!(
        "  B and C fetched {} ({} each) in {seconds:.1} s: {:.1} MB/s in aggregate, uploads capped at {} per peer",
        mb(bytes),
        mb(total),
        bytes as f64 / seconds.max(1e-9) / 1e6,
        config
            .upload_rate
            .map_or("nothing".to_string(), |r| format!("{}/s", mb(r)))
    ));
    out(&format!("  C's pieces came from {}", from.join(", ")));
    out(&format!(
        "  C was killed at {killed_at}/{big_pieces} pieces of {big_name} ({}); {durable_at_kill} were durable; it resumed with {resumed} and fetched the rest",
        mb(big_size)
    ));
    out(&format!(
        "  {verified_files}/{} files byte-identical in A, B and C",
        config.files.len()
    ));

    c2.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;

    if !failures.is_empty() {
        return Err(DemoError::Failed(format!(
            "copies differ: {}",
            failures.join(", ")
        )));
    }
    if resumed < durable_at_kill {
        return Err(DemoError::Failed(format!(
            "C resumed {resumed} pieces but its checkpoint had {durable_at_kill} durable"
        )));
    }
    if !c_sources.contains_key("A") || !c_sources.contains_key("B") {
        out("  note: C did not receive pieces from both A and B this time");
    }
    if !temporary || config.keep {
        out(&format!("  files kept in {}", root.display()));
    }
    Ok(summary)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn describe(r: &FileReport) -> String {
    let rate = if r.seconds > 0.0 {
        r.bytes_downloaded as f64 / r.seconds / 1e6
    } else {
        0.0
    };
    format!(
        "{} ({} B) in {:.1} s, {:.1} MB/s, {} piece(s) resumed",
        r.name, r.size, r.seconds, rate, r.pieces_resumed
    )
}

async fn piece_count(app: &App, hash: &InfoHash) -> Result<u32, DemoError> {
    let stats = app.stats().await.map_err(peer_err("B"))?;
    Ok(stats
        .iter()
        .find(|s| s.info_hash == *hash)
        .map_or(0, |s| s.pieces_have))
}

/// Start C again, on its old address if it is free again, else on a new port.
async fn start_on(
    options: &impl Fn(&Path, u8, char, SocketAddr) -> AppOptions,
    dir: &Path,
    addr: SocketAddr,
    events: EventSink,
) -> Result<App, DemoError> {
    for attempt in 0..20 {
        let listen = if attempt < 19 {
            addr
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let mut o = options(dir, 1, 'C', listen);
        o.peer.events = Some(events.clone());
        match PeerApp::start(PeerEnv::real(), o).await {
            Ok(app) => return Ok(app),
            Err(AppError::Peer(crate::peer::PeerError::Listen { .. })) if attempt < 19 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(peer_err("C")(e)),
        }
    }
    Err(DemoError::Failed("C could not restart".into()))
}
