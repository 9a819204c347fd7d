//! The program the simulated tracker host runs, on any network model: the real tracker server, HTTP and
//! UDP (BEP 15) on the same port number over one registry. Both engines start it (`turmoil_host` on
//! turmoil's network, `flow::runner` on the flow network); only the transport differs.

use crate::host::TRACKER_PORT;
use enjambre_core::tracker::{Registry, RegistryConfig};
use enjambre_net::clock::Clock;
use enjambre_net::tracker_server::{serve, ServerConfig};
use enjambre_net::transport::Transport;
use enjambre_net::udp_tracker_server::serve_udp;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Start the tracker's state over as a restart would, with `config`: its swarms are forgotten (they live
/// in memory), its catalog (the published metainfo) is kept.
pub fn reboot_registry(registry: &Mutex<Registry>, config: RegistryConfig) {
    let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
    let mut fresh = Registry::new(config);
    for f in reg.list() {
        if let Some(bytes) = reg.metainfo_bytes(&f.name) {
            let _ = fresh.publish(bytes);
        }
    }
    *reg = fresh;
}

/// Serve `registry` on [`TRACKER_PORT`] of every address of the host, TCP and UDP, until the task is
/// dropped; `Err` when a port cannot be bound. `max_connections`: the HTTP server's connection limit
/// (the scenario's `[tracker] max_connections`), its default when `None`.
pub async fn run_tracker<T: Transport>(
    transport: T,
    registry: Arc<Mutex<Registry>>,
    seed: u64,
    max_connections: Option<usize>,
) -> io::Result<()> {
    let any = SocketAddr::from(([0, 0, 0, 0], TRACKER_PORT));
    let listener = transport.bind(any).await?;
    let socket = transport.bind_udp(any).await?;
    let defaults = ServerConfig::default();
    let config = ServerConfig {
        rng_seed: seed,
        max_connections: max_connections.unwrap_or(defaults.max_connections),
        ..defaults
    };
    let metrics = Arc::clone(&config.metrics);
    let http = serve::<T>(listener, Arc::clone(&registry), Clock::new(), config);
    let udp = serve_udp(socket, registry, Clock::new(), seed ^ 0x5544_5000, metrics);
    tokio::join!(http, udp);
    Ok(())
}
