//! Starting the `peer` binary's peer: a seed for the run, the listen port (the usual one or the next free
//! one), and the `--status` / `--metrics` HTTP endpoints.

use super::App;
use anyhow::Context;
use enjambre_core::node::NodeConfig;
use enjambre_net::app::{
    peer_id_from_seed, AppError, AppOptions, DhtOptions, PeerApp, TrackerUrls,
};
use enjambre_net::clock::Clock;
use enjambre_net::peer::{PeerEnv, PeerError};
use enjambre_net::peer_status::serve_status;
use enjambre_net::transport::{Listener, TokioTransport, Transport};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a peer listens unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 6881);
/// The last port tried after the default one is taken.
pub const LAST_DEFAULT_PORT: u16 = 6889;

/// How the peer is started: the binary's global options.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The tracker, if any.
    pub tracker: Option<TrackerUrls>,
    /// The download and share folder.
    pub dir: PathBuf,
    /// `--listen`, else the default port or the next free one.
    pub listen: Option<SocketAddr>,
    /// Upload cap in bytes per second.
    pub max_upload_rate: Option<u64>,
    /// Download cap in bytes per second.
    pub max_download_rate: Option<u64>,
    /// `--status ADDR`.
    pub status: Option<SocketAddr>,
    /// `--metrics ADDR`.
    pub metrics: Option<SocketAddr>,
    /// Print where the endpoints listen on stdout (`serve`), else on stderr.
    pub endpoints_on_stdout: bool,
    /// `--dht`: run a DHT node on the listen port.
    pub dht: Option<DhtOptions>,
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
pub async fn start_app(options: &StartOptions) -> anyhow::Result<App> {
    let mut endpoints = Vec::new();
    let mut status_port = None;
    let mut bound: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    for (addr, what) in [(options.status, "status"), (options.metrics, "metrics")] {
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
        if options.endpoints_on_stdout {
            out!("{line}");
        } else {
            err!("{line}");
        }
    }
    let app = start_peer(options, status_port).await?;
    for listener in endpoints {
        let peer = app.peer().clone();
        tokio::spawn(serve_status::<TokioTransport>(listener, peer, Clock::new()));
    }
    Ok(app)
}

/// Start the peer on `--listen`, or on the usual port or the next free one up to [`LAST_DEFAULT_PORT`].
async fn start_peer(options: &StartOptions, status_port: Option<u16>) -> anyhow::Result<App> {
    let seed = run_seed();
    let node = NodeConfig {
        peer_id: peer_id_from_seed(seed),
        seed,
        status_port,
        // Serve our info dictionaries to magnet users (BEP 9) and exchange peers (BEP 11).
        peer_exchange: true,
        serve_metadata: true,
        ..NodeConfig::default()
    };
    let mut app_options =
        AppOptions::new(options.dir.clone(), DEFAULT_LISTEN, options.tracker.clone());
    app_options.peer.node = node;
    app_options.peer.max_upload_rate = options.max_upload_rate;
    app_options.peer.max_download_rate = options.max_download_rate;
    app_options.dht = options.dht.clone();
    if let Some(listen) = options.listen {
        app_options.peer.listen = listen;
        return Ok(PeerApp::start(PeerEnv::real(), app_options).await?);
    }
    // The usual port, or the next free one (several peers on one machine).
    let mut port = DEFAULT_LISTEN.port();
    loop {
        app_options.peer.listen = SocketAddr::new(DEFAULT_LISTEN.ip(), port);
        match PeerApp::start(PeerEnv::real(), app_options.clone()).await {
            Err(AppError::Peer(PeerError::Listen { .. })) if port < LAST_DEFAULT_PORT => {
                port += 1;
            }
            r => return Ok(r?),
        }
    }
}
