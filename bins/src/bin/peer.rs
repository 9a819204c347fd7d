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
    self, normalize_tracker_url, parse_bytes, AppOptions, FileReport, PeerApp, ServeEvent,
    TrackerUrls,
};
use enjambre_net::clock::TokioClock;
use enjambre_net::create::{create_metainfo, parse_size};
use enjambre_net::demo::{run_demo, DemoConfig, DemoOut};
use enjambre_net::library::{self, LocalEntry};
use enjambre_net::peer::PeerEnv;
use enjambre_net::storage::{StdStorage, ThreadPool};
use enjambre_net::transport::TokioTransport;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::signal::unix::{signal, Signal, SignalKind};

type App = PeerApp<TokioTransport, ThreadPool, TokioClock>;

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
    /// Address to listen on for peers (`127.0.0.1:0` picks a free port).
    #[arg(
        long,
        global = true,
        default_value = "0.0.0.0:6881",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
    /// Upload cap in bytes per second (e.g. 20MB, 512KiB).
    #[arg(long, global = true, value_parser = rate, value_name = "N")]
    max_upload_rate: Option<u64>,
    /// Download cap in bytes per second (e.g. 20MB, 512KiB).
    #[arg(long, global = true, value_parser = rate, value_name = "N")]
    max_download_rate: Option<u64>,
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
        /// Piece length, a power of two from 16KiB to 64MiB.
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
        /// Upload cap of each demo peer.
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
    parse_size(text).map_err(|e| e.to_string())
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
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Don't wait for a blocked stdin reader or a slow disk call.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
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

fn env() -> PeerEnv<TokioTransport, ThreadPool, TokioClock> {
    PeerEnv {
        transport: TokioTransport,
        blocking: ThreadPool,
        storage: Arc::new(StdStorage),
        clock: TokioClock::new(),
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

async fn start_app(cli: &Cli, tracker: Option<TrackerUrls>, dir: &Path) -> anyhow::Result<App> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let seed = run_seed();
    let node = NodeConfig {
        peer_id: app::peer_id_from_seed(seed),
        seed,
        ..NodeConfig::default()
    };
    let mut options = AppOptions::new(dir.to_path_buf(), cli.listen, tracker);
    options.node = node;
    options.max_upload_rate = cli.max_upload_rate;
    options.max_download_rate = cli.max_download_rate;
    Ok(PeerApp::start(env(), options).await?)
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
                eprint!("\rhashing {name}: {pct:>3}%{end}");
                let _ = std::io::stderr().flush();
            } else if done == 0 {
                eprintln!("hashing {name} ({})", human_bytes(total));
            }
        }
        ServeEvent::Seeding {
            name, info_hash, ..
        } => println!("seeding {name} {info_hash}"),
        ServeEvent::Resuming {
            name,
            info_hash,
            percent,
        } => println!("resuming {name} {info_hash} ({percent:.1}%)"),
        ServeEvent::Skipped { name, error } => eprintln!("warning: not sharing {name}: {error}"),
        ServeEvent::PublishFailed { name, error } => {
            eprintln!("warning: {name} not published to the catalog: {error}")
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
        eprintln!("warning: no --tracker: files are shared with peers that connect directly only");
    }
    let app = start_app(cli, tracker, dir).await?;
    println!("listening on {}", app.local_addr());
    let added = tokio::select! {
        r = app.serve_folder(recheck, serve_printer()) => r?,
        sig = signals.recv() => {
            eprintln!("{sig}: stopping");
            app.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    if added.is_empty() {
        eprintln!(
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
        sig = signals.recv() => eprintln!("{sig}: stopping"),
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
                    println!("complete {} {}", s.name, s.info_hash);
                }
            }
            let last = errors.entry(s.info_hash.clone()).or_default();
            if s.error.is_some() && s.error != *last {
                eprintln!("error: {}: {}", s.name, s.error.as_deref().unwrap_or(""));
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
            eprintln!("{sig}: stopping (progress is kept; run again to resume)");
            app.shutdown().await;
            return Ok(ExitCode::from(130));
        }
    };
    if let Err(e) = result {
        app.shutdown().await;
        return Err(e);
    }
    if req.seed {
        eprintln!("seeding on {} until stopped", app.local_addr());
        let sig = signals.recv().await;
        eprintln!("{sig}: stopping");
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
    let mut bars = Bars::new(stderr_tty());
    let json = req.json;
    let reports = app
        .wait_all(
            &hashes,
            Duration::from_millis(200),
            |stats| bars.update(stats),
            |report| {
                if json {
                    match serde_json::to_string(report) {
                        Ok(line) => println!("{line}"),
                        Err(e) => eprintln!("error: cannot encode the report: {e}"),
                    }
                } else {
                    println!("{}", human_report(report));
                }
            },
        )
        .await?;
    bars.finish();
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

/// A progress bar per file on stderr, when it is a terminal.
struct Bars {
    multi: Option<MultiProgress>,
    bars: BTreeMap<String, ProgressBar>,
}

impl Bars {
    fn new(enabled: bool) -> Bars {
        Bars {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: BTreeMap::new(),
        }
    }

    fn update(&mut self, stats: &[TorrentStats]) {
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
            } else {
                bar.set_message(format!("{} source(s)", s.peers));
            }
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
                    eprint!("\rhashing: {pct:>3}%");
                    let _ = std::io::stderr().flush();
                }
            },
        )
    })
    .await
    .context("hashing task failed")?;
    if tty {
        eprintln!();
    }
    let meta = meta?;
    let out = match output {
        Some(o) => o.to_path_buf(),
        None => PathBuf::from(format!("{}.torrent", meta.info.name)),
    };
    std::fs::write(&out, meta.to_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
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
        println!("(no files)");
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
        println!(
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
            println!("{}", serde_json::to_string(e)?);
        }
    } else {
        print_entries(&entries, false);
    }
    Ok(ExitCode::SUCCESS)
}

async fn shell(_cli: &Cli, _tracker: Option<TrackerUrls>, _dir: &Path) -> anyhow::Result<ExitCode> {
    bail!("shell is not available yet")
}

async fn demo(dir: Option<PathBuf>, rate: u64, keep: bool) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let config = DemoConfig {
        dir,
        upload_rate: Some(rate),
        keep,
        ..DemoConfig::standard()
    };
    let out: DemoOut = Arc::new(|text| println!("{text}"));
    tokio::select! {
        r = run_demo(config, out) => {
            r?;
            println!("demo passed");
            Ok(ExitCode::SUCCESS)
        }
        sig = signals.recv() => {
            eprintln!("{sig}: demo interrupted");
            Ok(ExitCode::from(130))
        }
    }
}
