//! `tracker`: the enjambre HTTP and UDP tracker with its catalog, swarm view and console monitor.
//!
//! Runs the tracker server (see `enjambre_net::tracker_server`) on real TCP and the UDP tracker (BEP 15,
//! `enjambre_net::udp_tracker_server`) on the same port number over UDP, both on one registry. When stdout is a terminal the
//! swarm table is redrawn every second; with `--monitor` and stdout not a terminal (a pipe, a log file) the
//! table is printed only when it changes, without ANSI codes.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use enjambre_core::tracker::registry::{DEFAULT_MAX_CATALOG, DEFAULT_MAX_TORRENTS};
use enjambre_core::tracker::{Registry, RegistryConfig};
use enjambre_net::catalog_store::CatalogStore;
use enjambre_net::clock::Clock;
use enjambre_net::connection_slots::SlotLimits;
use enjambre_net::http::HttpLimits;
use enjambre_net::storage::StdStorage;
use enjambre_net::tracker_server::{serve, KeepAlive, ServerConfig};
use enjambre_net::transport::{DatagramSocket, Listener, TokioTransport, Transport};
use enjambre_net::udp_tracker_server::serve_udp;

/// The enjambre BitTorrent tracker.
#[derive(Debug, Parser)]
#[command(name = "tracker", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:6969")]
    listen: SocketAddr,
    /// Announce interval told to peers, in seconds (peers expire after 2.5 intervals).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: u64,
    /// Print the swarm table even when stdout is not a terminal (only when it changes).
    #[arg(long)]
    monitor: bool,
    /// Most peers handed out per announce.
    #[arg(long, default_value_t = 200)]
    max_numwant: u32,
    /// Most files in the catalog (publications beyond it are refused).
    #[arg(long, default_value_t = DEFAULT_MAX_CATALOG)]
    max_catalog: usize,
    /// Most torrents tracked at once (announces for new torrents beyond it are refused).
    #[arg(long, default_value_t = DEFAULT_MAX_TORRENTS)]
    max_torrents: usize,
    /// Most concurrent HTTP connections; past it the oldest one is closed for the newcomer.
    #[arg(long, default_value_t = SlotLimits::default().max_total)]
    max_connections: usize,
    /// Most concurrent HTTP connections from one IP address; past it that address's oldest one is closed.
    #[arg(long, default_value_t = SlotLimits::default().max_per_address)]
    max_connections_per_address: usize,
    /// Largest HTTP request head, in bytes (a scrape of 1,024 info hashes is 73 KB). Memory held for
    /// requests is at most this times --max-connections.
    #[arg(long, default_value_t = 80 * 1024)]
    max_request_bytes: usize,
    /// Seconds a client has to send its whole HTTP request (and read the answer) before it is cut off.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    request_timeout: u64,
    /// Most HTTP requests answered on one kept-alive connection (1: close after every answer).
    #[arg(long, default_value_t = KeepAlive::default().max_requests as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    keep_alive_requests: u64,
    /// Seconds a kept-alive connection may stay idle between requests before it is closed.
    #[arg(long, default_value_t = KeepAlive::default().idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=600))]
    keep_alive_idle: u64,
    /// Seed for choosing which peers each announce gets and for the UDP connection-id secret (random if
    /// not given; give one only for reproducible tests).
    #[arg(long)]
    seed: Option<u64>,
    /// Address of the UDP tracker (BEP 15) [default: the HTTP listener's address and port, over UDP].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_udp")]
    udp: Option<SocketAddr>,
    /// Do not run the UDP tracker.
    #[arg(long)]
    no_udp: bool,
    /// Threads serving requests (1: a single event loop).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Keep the catalog (published metainfos) in this folder across restarts.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    // One thread by default: the accept loop, every connection and the UDP socket on one event loop
    // (measured in bench/RESULTS.md: handing each connection to another worker thread cost more CPU in
    // wake-ups than the second thread gave).
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(args.threads));
            b
        }
    }
    .enable_all()
    .build()
    .context("cannot start the async runtime")?;
    runtime.block_on(run(args))
}

/// Run the tracker until Ctrl-C.
async fn run(args: Args) -> anyhow::Result<()> {
    let listener = TokioTransport
        .bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr().context("listener address")?;
    println!("tracker listening on http://{local}/announce (catalog: http://{local}/files, monitor: http://{local}/)");
    let udp_socket = if args.no_udp {
        None
    } else {
        let addr = args.udp.unwrap_or(local);
        let socket = TokioTransport.bind_udp(addr).await.with_context(|| {
            format!("cannot bind the UDP tracker on {addr} (choose another with --udp ADDR, or --no-udp)")
        })?;
        let udp_local = socket.local_addr().context("UDP socket address")?;
        println!("UDP tracker on udp://{udp_local}/announce");
        Some(socket)
    };

    let config = RegistryConfig {
        max_numwant: args.max_numwant,
        max_catalog: args.max_catalog,
        max_torrents: args.max_torrents,
        ..RegistryConfig::with_interval(Duration::from_secs(args.interval))
    };
    let mut registry = Registry::new(config);
    let catalog_store = match &args.state_dir {
        Some(dir) => Some(Arc::new(load_catalog(dir, &mut registry)?)),
        None => None,
    };
    let registry = Arc::new(Mutex::new(registry));
    // Real runs: unpredictable (the UDP connection ids are keyed with it).
    let seed = args.seed.unwrap_or_else(rand::random);
    let server_config = ServerConfig {
        http: HttpLimits {
            timeout: Duration::from_secs(args.request_timeout),
            max_header_bytes: args.max_request_bytes,
            ..HttpLimits::default()
        },
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        keep_alive: KeepAlive {
            max_requests: usize::try_from(args.keep_alive_requests).unwrap_or(usize::MAX),
            idle_timeout: Duration::from_secs(args.keep_alive_idle),
        },
        rng_seed: seed,
        catalog_store,
        ..ServerConfig::default()
    };
    // One set of counters for both servers: UDP announces show in /metrics with the HTTP ones.
    let metrics = Arc::clone(&server_config.metrics);
    let server =
        serve::<TokioTransport>(listener, Arc::clone(&registry), Clock::new(), server_config);

    let udp = async {
        match udp_socket {
            Some(socket) => {
                let udp_seed = seed ^ 0x5544_5020_7472_6163;
                serve_udp(
                    socket,
                    Arc::clone(&registry),
                    Clock::new(),
                    udp_seed,
                    metrics,
                )
                .await
            }
            None => std::future::pending().await,
        }
    };

    let live = std::io::stdout().is_terminal();
    let monitor = monitor(Arc::clone(&registry), local, live, args.monitor);

    tokio::select! {
        () = server => {}
        () = udp => {}
        () = monitor => {}
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            println!("\ntracker shutting down");
        }
    }
    Ok(())
}

/// Open the catalog kept in `dir` and publish what it holds; skipped files are warnings, not errors.
fn load_catalog(dir: &std::path::Path, registry: &mut Registry) -> anyhow::Result<CatalogStore> {
    let store = CatalogStore::open(Arc::new(StdStorage), dir)
        .with_context(|| format!("cannot use state folder {}", dir.display()))?;
    let report = store
        .load_into(registry)
        .with_context(|| format!("cannot list state folder {}", dir.display()))?;
    for skipped in &report.skipped {
        eprintln!(
            "warning: catalog file {} skipped: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    println!(
        "catalog: {} file(s) loaded from {} ({} skipped)",
        report.loaded.len(),
        dir.display(),
        report.skipped.len()
    );
    Ok(store)
}

/// Print the swarm table every second: redrawn in place on a terminal, printed on change with `--monitor`
/// otherwise, not at all if neither.
async fn monitor(registry: Arc<Mutex<Registry>>, local: SocketAddr, live: bool, on_change: bool) {
    if !live && !on_change {
        return std::future::pending().await;
    }
    let mut last = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let table = {
            let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
            reg.swarm_view().render_table()
        };
        let mut out = std::io::stdout().lock();
        if live {
            let _ = write!(out, "\x1b[2J\x1b[Htracker on {local}\n\n{table}");
        } else if table != last {
            let _ = writeln!(out, "{table}");
        }
        let _ = out.flush();
        last = table;
    }
}
