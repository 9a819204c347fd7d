//! `peer`: share a folder, download files by name or `.torrent`, make torrents, list local files, an
//! interactive shell, and a one-command demo. The flows live in `enjambre_net::app` (and `demo`); this file
//! is the command line around them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, Parser, Subcommand};
use enjambre_core::metainfo::{InfoHash, Metainfo};
use enjambre_core::node::{NodeConfig, TorrentStats};
use enjambre_net::app::{
    self, normalize_tracker_url, AppOptions, FileReport, PeerApp, ServeEvent, TrackerUrls,
};
use enjambre_net::byte_size::{parse_bytes, parse_piece_length};
use enjambre_net::clock::TokioClock;
use enjambre_net::create::create_metainfo;
use enjambre_net::demo::{run_demo, DemoConfig, DemoOut};
use enjambre_net::library::{self, LocalEntry};
use enjambre_net::peer::{PeerEnv, PeerError};
use enjambre_net::peer_status::serve_status;
use enjambre_net::storage::{StdStorage, ThreadPool};
use enjambre_net::transport::{Listener, TokioTransport, Transport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::signal::unix::{signal, Signal, SignalKind};

// Output that never panics: a closed stdout or stderr (e.g. `peer ls | head -1`) is ignored.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! out_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout();
        let _ = write!(o, $($t)*);
        let _ = o.flush();
    }};
}
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
macro_rules! err_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

type App = PeerApp<TokioTransport, ThreadPool, TokioClock>;

/// Where a peer listens unless told otherwise.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 6881);
/// The last port tried after the default one is taken.
const LAST_DEFAULT_PORT: u16 = 6889;

/// An enjambre peer: share and download files over BitTorrent.
#[derive(Debug, Parser)]
#[command(name = "peer", version, about)]
struct Cli {
    /// Tracker URL: `http://host:port` or `http://host:port/announce`.
    #[arg(long, global = true, value_name = "URL")]
    tracker: Option<String>,
    /// Download and share folder (state is kept in DIR/.enjambre) [default: .]
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Address to listen on for peers (`127.0.0.1:0` picks a free port) [default: 0.0.0.0:6881, or the
    /// next free port up to 6889 when it is taken]
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Upload cap in bytes per second (e.g. 20MB, 512KiB; K, M, G are powers of 1000, KiB, MiB, GiB of 1024).
    #[arg(long, global = true, value_parser = rate, value_name = "N")]
    max_upload_rate: Option<u64>,
    /// Download cap in bytes per second (e.g. 20MB, 512KiB; K, M, G are powers of 1000, KiB, MiB, GiB of 1024).
    #[arg(long, global = true, value_parser = rate, value_name = "N")]
    max_download_rate: Option<u64>,
    /// Serve this peer's status (`GET /status`, JSON of its torrents, connections and rates) and metrics
    /// over HTTP on ADDR; its port is told to the tracker so that the web monitor can show it.
    #[arg(long, global = true, value_name = "ADDR")]
    status: Option<SocketAddr>,
    /// Serve this peer's Prometheus metrics (`GET /metrics`) over HTTP on ADDR.
    #[arg(long, global = true, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// More logging on stderr (-v, -vv, -vvv).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seed every complete file in DIR, publish it to the tracker, resume unfinished downloads; run until
    /// stopped.
    Serve {
        /// Hash everything on disk instead of trusting checkpoints.
        #[arg(long)]
        recheck: bool,
    },
    /// Download files by catalog name or from .torrent files, from all sources in parallel.
    Get {
        /// File names in the tracker's catalog.
        #[arg(value_name = "NAME", required_unless_present = "torrents")]
        names: Vec<String>,
        /// A .torrent file to download (repeatable).
        #[arg(long = "torrent", value_name = "F.torrent")]
        torrents: Vec<PathBuf>,
        /// A peer to download from besides the tracker's (repeatable).
        #[arg(long = "peer", value_name = "HOST:PORT")]
        peers: Vec<String>,
        /// Keep serving the files after they are complete.
        #[arg(long)]
        seed: bool,
        /// Print one JSON object per finished file on stdout.
        #[arg(long)]
        json: bool,
        /// Hash everything already on disk instead of trusting checkpoints.
        #[arg(long)]
        recheck: bool,
    },
    /// Make a .torrent file for a file or folder.
    Create {
        /// The file or folder.
        file: PathBuf,
        /// Where to write the torrent [default: NAME.torrent in the current folder].
        #[arg(short, long, value_name = "OUT.torrent")]
        output: Option<PathBuf>,
        /// Piece length, a power of two from 16KiB to 64MiB (KiB, MiB are powers of 1024; K, M of 1000).
        #[arg(long, default_value = "512KiB", value_parser = piece_size)]
        piece_size: u32,
        /// Announce URL written into the torrent [default: the --tracker's].
        #[arg(long, value_name = "URL")]
        announce: Option<String>,
    },
    /// List local files: complete, or partial with percent.
    Ls {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Interactive menu (download, list, open, exit) while serving DIR in the background.
    Shell,
    /// The whole story on loopback: a tracker and three peers sharing six files, one peer killed and resumed.
    Demo {
        /// Upload cap of each demo peer in bytes per second (K, M, G: powers of 1000; KiB, MiB, GiB: 1024).
        #[arg(long, default_value = "16MB", value_parser = rate, value_name = "N")]
        rate: u64,
        /// Keep the demo folder afterwards.
        #[arg(long)]
        keep: bool,
    },
}

fn rate(text: &str) -> Result<u64, String> {
    parse_bytes(text).map_err(|e| e.to_string())
}

fn piece_size(text: &str) -> Result<u32, String> {
    parse_piece_length(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info,enjambre_net=info,enjambre_core=info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Don't wait for a blocked stdin reader or a slow disk call.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            err!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, skipping causes its message already includes.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let tracker = cli
        .tracker
        .as_deref()
        .map(normalize_tracker_url)
        .transpose()?;
    let dir = cli.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    match &cli.command {
        Command::Serve { recheck } => serve(&cli, tracker, &dir, *recheck).await,
        Command::Get {
            names,
            torrents,
            peers,
            seed,
            json,
            recheck,
        } => {
            let req = GetRequest {
                names,
                torrents,
                peers,
                seed: *seed,
                json: *json,
                recheck: *recheck,
            };
            get(&cli, tracker, &dir, req).await
        }
        Command::Create {
            file,
            output,
            piece_size,
            announce,
        } => {
            let announce = announce
                .clone()
                .or_else(|| tracker.as_ref().map(|t| t.announce.clone()));
            create(file, output.as_deref(), *piece_size, announce).await
        }
        Command::Ls { json } => ls(&dir, *json).await,
        Command::Shell => shell(&cli, tracker, &dir).await,
        Command::Demo { rate, keep } => demo(cli.dir.clone(), *rate, *keep).await,
    }
}

/// A seed that differs between runs and processes (real runs only; the simulator seeds explicitly).
fn run_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Start the peer, and its `--status` / `--metrics` endpoints (bound first: the status port is announced).
/// Where they listen is printed on stdout by `serve` (`status on http://ADDR/status`), on stderr otherwise.
async fn start_app(cli: &Cli, tracker: Option<TrackerUrls>, dir: &Path) -> anyhow::Result<App> {
    let mut endpoints = Vec::new();
    let mut status_port = None;
    let mut bound: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    for (addr, what) in [(cli.status, "status"), (cli.metrics, "metrics")] {
        let Some(addr) = addr else { continue };
        // One server answers both paths: `--status A --metrics A` binds A once (port 0 means two servers).
        let shared = bound
            .iter()
            .find(|(asked, _)| *asked == addr && addr.port() != 0)
            .map(|(_, local)| *local);
        let local = match shared {
            Some(local) => local,
            None => {
                let listener = TokioTransport
                    .bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for --{what}"))?;
                let local = listener.local_addr().context("status listener address")?;
                endpoints.push(listener);
                bound.push((addr, local));
                local
            }
        };
        if what == "status" {
            status_port = Some(local.port());
        }
        let line = format!("{what} on http://{local}/{what}");
        if matches!(cli.command, Command::Serve { .. }) {
            out!("{line}");
        } else {
            err!("{line}");
        }
    }
    let app = start_peer(cli, tracker, dir, status_port).await?;
    for listener in endpoints {
        let peer = app.peer().clone();
        tokio::spawn(serve_status::<TokioTransport>(
            listener,
            peer,
            TokioClock::new(),
        ));
    }
    Ok(app)
}

async fn start_peer(
    cli: &Cli,
    tracker: Option<TrackerUrls>,
    dir: &Path,
    status_port: Option<u16>,
) -> anyhow::Result<App> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let seed = run_seed();
    let node = NodeConfig {
        peer_id: app::peer_id_from_seed(seed),
        seed,
        status_port,
        ..NodeConfig::default()
    };
    let mut options = AppOptions::new(dir.to_path_buf(), DEFAULT_LISTEN, tracker);
    options.node = node;
    options.max_upload_rate = cli.max_upload_rate;
    options.max_download_rate = cli.max_download_rate;
    if let Some(listen) = cli.listen {
        options.listen = listen;
        return Ok(PeerApp::start(PeerEnv::real(), options).await?);
    }
    // The usual port, or the next free one (several peers on one machine).
    let mut port = DEFAULT_LISTEN.port();
    loop {
        options.listen = SocketAddr::new(DEFAULT_LISTEN.ip(), port);
        match PeerApp::start(PeerEnv::real(), options.clone()).await {
            Err(app::AppError::Peer(PeerError::Listen { .. })) if port < LAST_DEFAULT_PORT => {
                port += 1;
            }
            r => return Ok(r?),
        }
    }
}

/// SIGINT and SIGTERM, registered up front so that a signal during startup is handled gracefully too.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

fn stderr_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Prints serve progress: `seeding NAME INFOHASH` / `resuming ...` on stdout, hashing progress and warnings
/// on stderr.
fn serve_printer() -> app::ServeSink {
    let tty = stderr_tty();
    Arc::new(move |event| match event {
        ServeEvent::Hashing { name, done, total } => {
            if tty {
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                let end = if done >= total { "\n" } else { "" };
                err_part!("\rhashing {name}: {pct:>3}%{end}");
                let _ = std::io::stderr().flush();
            } else if done == 0 {
                err!("hashing {name} ({})", human_bytes(total));
            }
        }
        ServeEvent::Seeding {
            name, info_hash, ..
        } => out!("seeding {name} {info_hash}"),
        ServeEvent::Resuming {
            name,
            info_hash,
            percent,
        } => out!("resuming {name} {info_hash} ({percent:.1}%)"),
        ServeEvent::Skipped { name, error } => err!("warning: not sharing {name}: {error}"),
        ServeEvent::PublishFailed { name, error } => {
            err!("warning: {name} not published to the catalog: {error}")
        }
    })
}

async fn serve(
    cli: &Cli,
    tracker: Option<TrackerUrls>,
    dir: &Path,
    recheck: bool,
) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    if tracker.is_none() {
        err!("warning: no --tracker: files are shared with peers that connect directly only");
    }
    let app = start_app(cli, tracker, dir).await?;
    out!("listening on {}", app.local_addr());
    let added = tokio::select! {
        r = app.serve_folder(recheck, serve_printer()) => r?,
        sig = signals.recv() => {
            err!("{sig}: stopping");
            app.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    if added.is_empty() {
        err!(
            "nothing to share in {} yet: waiting (add files and restart to share them)",
            dir.display()
        );
    }
    let resumed: Vec<InfoHash> = added
        .iter()
        .filter(|s| s.resumed)
        .map(|s| s.info_hash)
        .collect();
    tokio::select! {
        r = report_progress(&app, resumed) => r?,
        sig = signals.recv() => err!("{sig}: stopping"),
    }
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Print `complete NAME INFOHASH` when a resumed download finishes, and errors that stop a torrent; runs
/// until the peer stops.
async fn report_progress(app: &App, resumed: Vec<InfoHash>) -> anyhow::Result<()> {
    let mut pending: Vec<String> = resumed.iter().map(InfoHash::to_hex).collect();
    let mut errors: BTreeMap<String, Option<String>> = BTreeMap::new();
    loop {
        for s in app.stats().await? {
            if app::is_finished(&s) {
                if let Some(i) = pending.iter().position(|h| *h == s.info_hash) {
                    pending.swap_remove(i);
                    out!("complete {} {}", s.name, s.info_hash);
                }
            }
            let last = errors.entry(s.info_hash.clone()).or_default();
            if s.error.is_some() && s.error != *last {
                err!("{}", stalled_line(&s));
            }
            *last = s.error.clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct GetRequest<'a> {
    names: &'a [String],
    torrents: &'a [PathBuf],
    peers: &'a [String],
    seed: bool,
    json: bool,
    recheck: bool,
}

async fn resolve_peers(peers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for p in peers {
        let addr = tokio::net::lookup_host(p.as_str())
            .await
            .with_context(|| format!("bad --peer {p:?} (expected HOST:PORT)"))?
            .next()
            .with_context(|| format!("--peer {p:?} resolves to no address"))?;
        out.push(addr);
    }
    Ok(out)
}

async fn get(
    cli: &Cli,
    tracker: Option<TrackerUrls>,
    dir: &Path,
    req: GetRequest<'_>,
) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    if !req.names.is_empty() && tracker.is_none() {
        bail!("no tracker given: pass --tracker URL to get files by name (or use --torrent F.torrent)");
    }
    let sources = resolve_peers(req.peers).await?;
    let app = start_app(cli, tracker, dir).await?;
    let result = tokio::select! {
        r = fetch_and_download(&app, &req, sources) => r,
        sig = signals.recv() => {
            err!("{sig}: stopping (progress is kept; run again to resume)");
            app.shutdown().await;
            return Ok(ExitCode::from(130));
        }
    };
    if let Err(e) = result {
        app.shutdown().await;
        return Err(e);
    }
    if req.seed {
        err!("seeding on {} until stopped", app.local_addr());
        let sig = signals.recv().await;
        err!("{sig}: stopping");
    }
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn fetch_and_download(
    app: &App,
    req: &GetRequest<'_>,
    sources: Vec<SocketAddr>,
) -> anyhow::Result<Vec<FileReport>> {
    let mut metas: Vec<Metainfo> = Vec::new();
    for name in req.names {
        metas.push(app.fetch_by_name(name).await?);
    }
    for path in req.torrents {
        metas.push(app.load_torrent_file(path).await?);
    }
    let mut hashes: Vec<InfoHash> = Vec::new();
    for meta in metas {
        let h = app.add_download(meta, req.recheck, sources.clone()).await?;
        if !hashes.contains(&h) {
            hashes.push(h);
        }
    }
    let bars = std::cell::RefCell::new(Bars::new(stderr_tty()));
    let json = req.json;
    let reports = app
        .wait_all(
            &hashes,
            // Fine-grained, so the reported `seconds` is accurate to a few tens of milliseconds.
            Duration::from_millis(20),
            |stats| bars.borrow_mut().update(stats),
            |report| {
                let line = if json {
                    match serde_json::to_string(report) {
                        Ok(line) => line,
                        Err(e) => {
                            err!("error: cannot encode the report: {e}");
                            return;
                        }
                    }
                } else {
                    human_report(report)
                };
                bars.borrow().println(&line);
            },
        )
        .await?;
    bars.borrow_mut().finish();
    Ok(reports)
}

fn human_report(r: &FileReport) -> String {
    let fetched = r.bytes_downloaded;
    let rate = if r.seconds > 0.0 {
        fetched as f64 / r.seconds / 1e6
    } else {
        0.0
    };
    let mut line = format!(
        "done {} ({}) in {:.1} s, {} fetched at {:.1} MB/s from {} source(s)",
        r.name,
        human_bytes(r.size),
        r.seconds,
        human_bytes(fetched),
        rate,
        r.sources.len()
    );
    if r.pieces_resumed > 0 {
        line.push_str(&format!(
            ", {} of {} pieces resumed",
            r.pieces_resumed, r.pieces_total
        ));
    }
    if !r.banned.is_empty() {
        line.push_str(&format!(", banned {}", r.banned.join(" ")));
    }
    line
}

/// A progress bar per file on stderr, when it is a terminal; otherwise tracker trouble is reported as a line
/// on stderr each time it changes.
struct Bars {
    multi: Option<MultiProgress>,
    bars: BTreeMap<String, ProgressBar>,
    tracker_errors: BTreeMap<String, Option<String>>,
    disk_errors: BTreeMap<String, u32>,
}

/// The line telling that a download stopped on a disk error and when it is tried again.
fn stalled_line(s: &TorrentStats) -> String {
    let retry = s
        .error_retry_in_ms
        .map(|ms| format!("; trying again in {} s", ms.div_ceil(1000)))
        .unwrap_or_default();
    let error = s.error.as_deref().unwrap_or("disk error");
    let hint = if error.contains("No space left") || error.contains("os error 28") {
        "free some space"
    } else {
        "check the disk"
    };
    format!(
        "{}: download stopped: {error}{retry} (verified pieces are kept; {hint}, or stop and run again later to resume)",
        s.name,
    )
}

impl Bars {
    fn new(enabled: bool) -> Bars {
        Bars {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: BTreeMap::new(),
            tracker_errors: BTreeMap::new(),
            disk_errors: BTreeMap::new(),
        }
    }

    fn update(&mut self, stats: &[TorrentStats]) {
        for s in stats {
            let last = self.tracker_errors.entry(s.info_hash.clone()).or_default();
            if *last != s.tracker_error {
                if let (None, Some(e)) = (&self.multi, &s.tracker_error) {
                    eprintln!("{}: tracker unreachable, retrying: {e}", s.name);
                }
                last.clone_from(&s.tracker_error);
            }
            // Each new disk error (a retry that failed again counts) is told once, bars or not.
            let seen = self.disk_errors.entry(s.info_hash.clone()).or_default();
            if s.error.is_some() && s.disk_errors != *seen {
                *seen = s.disk_errors;
                let line = stalled_line(s);
                match &self.multi {
                    Some(multi) => multi.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
        let Some(multi) = &self.multi else { return };
        for s in stats {
            let bar = self.bars.entry(s.info_hash.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(s.size.max(1)));
                let style = ProgressStyle::with_template(
                    "{prefix:<24!} [{bar:28}] {percent:>3}% {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>3} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(s.name.clone());
                bar
            });
            if bar.is_finished() {
                continue;
            }
            let have = if s.pieces_total == 0 {
                s.size
            } else {
                (u128::from(s.size) * u128::from(s.pieces_have) / u128::from(s.pieces_total)) as u64
            };
            bar.set_position(have);
            if app::is_finished(s) {
                bar.finish_with_message("done");
            } else if s.checking {
                bar.set_message("checking");
            } else if let Some(e) = &s.error {
                let retry = s
                    .error_retry_in_ms
                    .map(|ms| format!(", retry in {} s", ms.div_ceil(1000)))
                    .unwrap_or_default();
                bar.set_message(format!("STOPPED: {e}{retry}"));
            } else if let (0, Some(e)) = (s.peers, &s.tracker_error) {
                bar.set_message(format!("tracker: {e}"));
            } else {
                bar.set_message(format!("{} source(s)", s.peers));
            }
        }
    }

    /// Print a line on stdout without tearing the bars.
    fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) => multi.suspend(|| out!("{line}")),
            None => out!("{line}"),
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

async fn create(
    file: &Path,
    output: Option<&Path>,
    piece_length: u32,
    announce: Option<String>,
) -> anyhow::Result<ExitCode> {
    let path = if file.file_name().is_none() {
        std::fs::canonicalize(file).with_context(|| format!("{}", file.display()))?
    } else {
        file.to_path_buf()
    };
    let tty = stderr_tty();
    let p = path.clone();
    let meta = tokio::task::spawn_blocking(move || {
        let mut last = u64::MAX;
        create_metainfo(
            &StdStorage,
            &p,
            piece_length,
            announce.as_deref(),
            &mut |done, total| {
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                if tty && pct != last {
                    last = pct;
                    err_part!("\rhashing: {pct:>3}%");
                    let _ = std::io::stderr().flush();
                }
            },
        )
    })
    .await
    .context("hashing task failed")?;
    if tty {
        err!();
    }
    let meta = meta?;
    let out = match output {
        Some(o) => o.to_path_buf(),
        None => PathBuf::from(format!("{}.torrent", meta.info.name)),
    };
    std::fs::write(&out, meta.to_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    out!(
        "created {}: {} ({}, {} pieces of {}) info hash {}",
        out.display(),
        meta.info.name,
        human_bytes(meta.total_length()),
        meta.piece_count(),
        human_bytes(u64::from(meta.piece_length())),
        meta.info_hash
    );
    Ok(ExitCode::SUCCESS)
}

fn local_entries(dir: &Path) -> anyhow::Result<Vec<LocalEntry>> {
    let lib = library::scan(Arc::new(StdStorage), dir)
        .with_context(|| format!("cannot list {}", dir.display()))?;
    Ok(lib.entries())
}

fn print_entries(entries: &[LocalEntry], numbered: bool) {
    if entries.is_empty() {
        out!("(no files)");
        return;
    }
    let width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    for (i, e) in entries.iter().enumerate() {
        let status = if e.complete {
            "complete".to_string()
        } else {
            format!("partial {:.1}%", e.percent)
        };
        let num = if numbered {
            format!("{:>3}) ", i + 1)
        } else {
            String::new()
        };
        out!(
            "{num}{:<width$}  {:>10}  {status}",
            e.name,
            human_bytes(e.size)
        );
    }
}

async fn ls(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let entries = local_entries(dir)?;
    if json {
        for e in &entries {
            out!("{}", serde_json::to_string(e)?);
        }
    } else {
        print_entries(&entries, false);
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines of stdin, read on a plain thread (a blocked read must not hold up shutdown); `None` at EOF.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line.trim().to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        err!("warning: cannot read stdin: {e}");
    }
    rx
}

fn prompt(text: &str) {
    out_part!("{text}");
    let _ = std::io::stdout().flush();
}

/// What the user typed, or why there is nothing to read.
enum Input {
    Line(String),
    Eof,
    Signal(&'static str),
}

async fn read_input(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    signals: &mut Signals,
) -> Input {
    tokio::select! {
        line = lines.recv() => line.map_or(Input::Eof, Input::Line),
        sig = signals.recv() => Input::Signal(sig),
    }
}

async fn shell(cli: &Cli, tracker: Option<TrackerUrls>, dir: &Path) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let app = start_app(cli, tracker, dir).await?;
    out!("listening on {}", app.local_addr());
    let quiet: app::ServeSink = Arc::new(|event| match event {
        ServeEvent::Skipped { name, error } => err!("warning: not sharing {name}: {error}"),
        ServeEvent::PublishFailed { name, error } => {
            err!("warning: {name} not published to the catalog: {error}")
        }
        _ => {}
    });
    let served = tokio::select! {
        r = app.serve_folder(false, quiet) => r,
        sig = signals.recv() => {
            err!("{sig}: stopping");
            app.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    match served {
        Ok(served) => out!(
            "sharing {} file(s) from {} in the background",
            served.len(),
            dir.display()
        ),
        Err(e) => err!("warning: cannot share {}: {e}", dir.display()),
    }
    let mut lines = stdin_lines();
    loop {
        out!();
        out!("1) download a file   2) list local files   3) open a downloaded file   4) exit");
        prompt("> ");
        let choice = match read_input(&mut lines, &mut signals).await {
            Input::Line(l) => l,
            Input::Eof => {
                out!();
                break;
            }
            Input::Signal(sig) => {
                err!("\n{sig}: stopping");
                break;
            }
        };
        let outcome = match choice.as_str() {
            "" => Ok(true),
            "1" => shell_download(&app, dir, &mut lines, &mut signals).await,
            "2" => local_entries(dir).map(|entries| {
                print_entries(&entries, false);
                true
            }),
            "3" => shell_open(dir, &mut lines, &mut signals).await,
            "4" | "q" | "quit" | "exit" => break,
            other => {
                out!("unknown choice {other:?}: type 1, 2, 3 or 4");
                Ok(true)
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => out!("error: {}", one_line(&e)),
        }
    }
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Menu 1: pick a catalog file and download it (it is then shared like the rest). `Ok(false)` = stop the shell.
async fn shell_download(
    app: &App,
    dir: &Path,
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    signals: &mut Signals,
) -> anyhow::Result<bool> {
    let files = app.list_catalog().await?;
    if files.is_empty() {
        out!("the tracker's catalog is empty");
        return Ok(true);
    }
    for (i, f) in files.iter().enumerate() {
        out!(
            "{:>3}) {:<32} {:>10}  {} seeder(s)",
            i + 1,
            f.name,
            human_bytes(f.size),
            f.seeders
        );
    }
    prompt("file number or name (empty to cancel): ");
    let answer = match read_input(lines, signals).await {
        Input::Line(l) => l,
        Input::Eof | Input::Signal(_) => return Ok(false),
    };
    if answer.is_empty() {
        return Ok(true);
    }
    let name = match answer.parse::<usize>() {
        Ok(n) if (1..=files.len()).contains(&n) => files[n - 1].name.clone(),
        _ => answer,
    };
    let meta = app.fetch_by_name(&name).await?;
    let hash = app.add_download(meta, false, Vec::new()).await?;
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    let hashes = [hash];
    let wait = app.wait_all(
        &hashes,
        Duration::from_millis(250),
        |stats| {
            if let Some(s) = stats.first() {
                let pct = library::percent(s.pieces_have, s.pieces_total);
                let line = format!(
                    "downloading {}: {pct:.1}% from {} source(s)",
                    s.name, s.peers
                );
                if tty {
                    out_part!("\r{line}   ");
                    let _ = std::io::stdout().flush();
                } else if line != last {
                    out!("{line}");
                }
                last = line;
            }
        },
        |_| {},
    );
    let reports = tokio::select! {
        r = wait => r?,
        sig = signals.recv() => {
            err!("\n{sig}: stopping (the download resumes next time)");
            return Ok(false);
        }
    };
    if tty {
        out!();
    }
    for r in &reports {
        out!("{}", human_report(r));
        out!("saved as {}", dir.join(&r.name).display());
    }
    Ok(true)
}

/// The system's opener, if there is one on PATH.
fn opener() -> Option<&'static str> {
    let path = std::env::var_os("PATH")?;
    ["xdg-open", "open"].into_iter().find(|name| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(name)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// Menu 3: pick a complete local file and open it (or print its path). `Ok(false)` = stop the shell.
async fn shell_open(
    dir: &Path,
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    signals: &mut Signals,
) -> anyhow::Result<bool> {
    let entries: Vec<LocalEntry> = local_entries(dir)?
        .into_iter()
        .filter(|e| e.complete)
        .collect();
    if entries.is_empty() {
        out!("no complete files yet");
        return Ok(true);
    }
    print_entries(&entries, true);
    prompt("file number (empty to cancel): ");
    let answer = match read_input(lines, signals).await {
        Input::Line(l) => l,
        Input::Eof | Input::Signal(_) => return Ok(false),
    };
    if answer.is_empty() {
        return Ok(true);
    }
    let entry = match answer.parse::<usize>() {
        Ok(n) if (1..=entries.len()).contains(&n) => &entries[n - 1],
        _ => match entries.iter().find(|e| e.name == answer) {
            Some(e) => e,
            None => {
                out!("no file {answer:?}");
                return Ok(true);
            }
        },
    };
    let path =
        std::fs::canonicalize(dir.join(&entry.name)).unwrap_or_else(|_| dir.join(&entry.name));
    match opener() {
        Some(cmd) => {
            let spawned = std::process::Command::new(cmd)
                .arg(&path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            match spawned {
                Ok(mut child) => {
                    // Reap it when it exits (xdg-open returns at once; `open` may linger).
                    std::thread::spawn(move || child.wait());
                    out!("opened {} with {cmd}", path.display());
                }
                Err(e) => out!("cannot run {cmd} ({e}); the file is {}", path.display()),
            }
        }
        None => out!("{}", path.display()),
    }
    Ok(true)
}

async fn demo(dir: Option<PathBuf>, rate: u64, keep: bool) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let config = DemoConfig {
        dir,
        upload_rate: Some(rate),
        keep,
        ..DemoConfig::standard()
    };
    let out: DemoOut = Arc::new(|text| out!("{text}"));
    tokio::select! {
        r = run_demo(config, out) => {
            r?;
            out!("demo passed");
            Ok(ExitCode::SUCCESS)
        }
        sig = signals.recv() => {
            err!("{sig}: demo interrupted");
            Ok(ExitCode::from(130))
        }
    }
}
