//! `peer`: share a folder, download files by name or `.torrent`, make torrents, list local files, an
//! interactive shell, and a one-command demo. The flows live in `enjambre_net::app` (and `demo`); this file
//! is the command line around them.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, Parser, Subcommand};
use enjambre::peer::local::{local_entries, print_entries};
use enjambre::peer::progress::{report_progress, serve_printer, Bars};
use enjambre::peer::shell::shell;
use enjambre::peer::signals::Signals;
use enjambre::peer::startup::{start_app, StartOptions};
use enjambre::peer::{one_line, stderr_tty, App};
use enjambre::{err, err_part, out, out_part};
use enjambre_core::magnet::Magnet;
use enjambre_core::metainfo::InfoHash;
use enjambre_net::app::serve::SERVE_JOBS;
use enjambre_net::app::{
    human_bytes, normalize_tracker_url, DhtOptions, FileReport, GetRequest, ServeOptions,
};
use enjambre_net::byte_size::{parse_bytes, parse_piece_length};
use enjambre_net::create::create_metainfo;
use enjambre_net::demo::{run_demo, DemoConfig, DemoOut};
use enjambre_net::storage::StdStorage;

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
    /// Run a DHT node (BEP 5) over UDP on the listen port: every torrent, and a magnet without a tracker,
    /// finds peers there and announces us; the routing table is kept in DIR/.enjambre.
    #[arg(long, global = true)]
    dht: bool,
    /// A DHT node to join through (repeatable; implies --dht). Not needed after a first run: the saved
    /// routing table is tried first.
    #[arg(long = "dht-bootstrap", global = true, value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
    /// More logging on stderr (-v, -vv, -vvv).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seed every complete file and folder in DIR, publish it to the tracker, resume unfinished downloads;
    /// run until stopped.
    Serve {
        /// Hash everything on disk instead of trusting checkpoints.
        #[arg(long)]
        recheck: bool,
    },
    /// Download files by catalog name, from .torrent files or magnet links, from all sources in parallel.
    Get {
        /// File names in the tracker's catalog, or magnet links ('magnet:?xt=urn:btih:HASH&dn=NAME&tr=URL').
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
    enjambre_net::heap::keep_freed_heap();
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let tracker = cli
        .tracker
        .as_deref()
        .map(normalize_tracker_url)
        .transpose()?;
    let dir = cli.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dht = if cli.dht || !cli.dht_bootstrap.is_empty() {
        let bootstrap = resolve_addrs("--dht-bootstrap", &cli.dht_bootstrap).await?;
        Some(DhtOptions::new(bootstrap))
    } else {
        None
    };
    let start = StartOptions {
        tracker: tracker.clone(),
        dir: dir.clone(),
        listen: cli.listen,
        max_upload_rate: cli.max_upload_rate,
        max_download_rate: cli.max_download_rate,
        status: cli.status,
        metrics: cli.metrics,
        endpoints_on_stdout: matches!(cli.command, Command::Serve { .. }),
        dht,
    };
    match &cli.command {
        Command::Serve { recheck } => serve(&start, *recheck).await,
        Command::Get {
            names,
            torrents,
            peers,
            seed,
            json,
            recheck,
        } => {
            let req = GetArgs {
                names,
                torrents,
                peers,
                seed: *seed,
                json: *json,
                recheck: *recheck,
            };
            get(&start, req).await
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
        Command::Shell => shell(&start).await,
        Command::Demo { rate, keep } => demo(cli.dir.clone(), *rate, *keep).await,
    }
}

/// `peer serve`: share the folder until stopped.
async fn serve(start: &StartOptions, recheck: bool) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let dir = &start.dir;
    if start.tracker.is_none() && start.dht.is_none() {
        err!("warning: no --tracker nor --dht: files are shared with peers that connect directly only");
    }
    let app = start_app(start).await?;
    out!("listening on {}", app.local_addr());
    if let Some(dht) = app.dht() {
        out!("DHT node on udp://{}", dht.local_addr());
    }
    let options = ServeOptions {
        recheck,
        jobs: SERVE_JOBS,
        ..ServeOptions::default()
    };
    let added = tokio::select! {
        r = app.serve_folder(&options, serve_printer()) => r?,
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
    // The state folder is quiet now: index it, so that the next start reads one file.
    app.save_library_index().await;
    Ok(ExitCode::SUCCESS)
}

struct GetArgs<'a> {
    names: &'a [String],
    torrents: &'a [PathBuf],
    peers: &'a [String],
    seed: bool,
    json: bool,
    recheck: bool,
}

/// Resolve the `HOST:PORT` values of option `flag`.
async fn resolve_addrs(flag: &str, addrs: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for p in addrs {
        let addr = tokio::net::lookup_host(p.as_str())
            .await
            .with_context(|| format!("bad {flag} {p:?} (expected HOST:PORT)"))?
            .next()
            .with_context(|| format!("{flag} {p:?} resolves to no address"))?;
        out.push(addr);
    }
    Ok(out)
}

/// `peer get`: download every file asked for, then seed them (`--seed`) or stop.
async fn get(start: &StartOptions, req: GetArgs<'_>) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let (magnets, names) = split_magnets(req.names)?;
    if !names.is_empty() && start.tracker.is_none() {
        bail!("no tracker given: pass --tracker URL to get files by name (or use --torrent F.torrent)");
    }
    let sources = resolve_addrs("--peer", req.peers).await?;
    let app = start_app(start).await?;
    let result = tokio::select! {
        r = fetch_and_download(&app, &req, names, magnets, sources) => r,
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

/// The magnet links among `peer get`'s arguments, parsed, and the catalog names.
fn split_magnets(args: &[String]) -> anyhow::Result<(Vec<Magnet>, Vec<String>)> {
    let mut magnets = Vec::new();
    let mut names = Vec::new();
    for a in args {
        if a.starts_with("magnet:") {
            magnets.push(Magnet::parse(a).with_context(|| format!("bad magnet link {a:?}"))?);
        } else {
            names.push(a.clone());
        }
    }
    Ok((magnets, names))
}

async fn fetch_and_download(
    app: &App,
    req: &GetArgs<'_>,
    names: Vec<String>,
    magnets: Vec<Magnet>,
    sources: Vec<SocketAddr>,
) -> anyhow::Result<Vec<FileReport>> {
    let request = GetRequest {
        names,
        magnets,
        torrents: req.torrents.to_vec(),
        peers: sources,
        recheck: req.recheck,
        catalog_retry: None,
    };
    let hashes = app.get(&request).await?;
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
                    report.summary_line()
                };
                bars.borrow().println(&line);
            },
        )
        .await?;
    bars.borrow_mut().finish();
    Ok(reports)
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
    out!("magnet: {}", Magnet::of(&meta).to_uri());
    Ok(ExitCode::SUCCESS)
}

async fn ls(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let entries = local_entries(dir)?;
    if json {
        // One write for the whole listing: ten thousand lines written one by one cost more than the listing.
        let mut text = String::new();
        for e in &entries {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        out_part!("{text}");
    } else {
        print_entries(&entries, false);
    }
    Ok(ExitCode::SUCCESS)
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
