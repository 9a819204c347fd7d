//! The UDP tracker server (BEP 15) over any [`crate::transport::Transport`]'s datagram socket: each datagram is answered by
//! the pure [`UdpTrackerService`] against the same [`Registry`] the HTTP tracker serves, so peers that
//! announce over UDP and over HTTP see each other. Expiry of silent peers is left to the HTTP server's
//! periodic task (the tracker always runs both).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use enjambre_core::tracker::udp::{UdpOutcome, UdpTrackerService, MAX_DATAGRAM};
use enjambre_core::tracker::Registry;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::clock::Clock;
use crate::tracker_metrics::{AnnounceResult, Route, ScrapeResult, TrackerMetrics};
use crate::transport::DatagramSocket;

/// Serve the UDP tracker on `socket` until the returned future is dropped. `rng_seed` seeds both the
/// connection-id secret and the choice of peers handed out: real runs must pass an unpredictable seed.
/// Every datagram is counted in `metrics` (by outcome, and announces and scrapes with the HTTP ones).
pub async fn serve_udp<S: DatagramSocket>(
    socket: S,
    registry: Arc<Mutex<Registry>>,
    clock: Clock,
    rng_seed: u64,
    metrics: Arc<TrackerMetrics>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let service = UdpTrackerService::new(&mut rng);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // Typically an ICMP error reported for an earlier send; never fatal.
                tracing::debug!(error = %e, "UDP tracker receive failed");
                clock
                    .sleep_until(clock.now() + Duration::from_millis(1))
                    .await;
                continue;
            }
        };
        let Some(packet) = buf.get(..n) else {
            continue;
        };
        let started = clock.now();
        let (reply, outcome) = {
            let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
            service.handle(&mut reg, started, from, packet, &mut rng)
        };
        count(&metrics, outcome);
        tracing::debug!(%from, ?outcome, "UDP tracker datagram");
        if let Some(reply) = reply {
            if let Err(e) = socket.send_to(&reply, from).await {
                tracing::debug!(%from, error = %e, "UDP tracker send failed");
            }
        }
        if matches!(outcome, UdpOutcome::Announced | UdpOutcome::AnnounceRefused) {
            metrics.observe(Route::Announce, clock.now().saturating_since(started));
        }
    }
}

fn count(metrics: &TrackerMetrics, outcome: UdpOutcome) {
    metrics.udp_datagram(outcome);
    match outcome {
        UdpOutcome::Announced => metrics.announce(AnnounceResult::Ok),
        UdpOutcome::AnnounceRefused => metrics.announce(AnnounceResult::Refused),
        UdpOutcome::Scraped => metrics.scrape(ScrapeResult::Ok),
        _ => {}
    }
}
