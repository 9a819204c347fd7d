//! The UDP tracker server (BEP 15) over any [`crate::transport::Transport`]'s datagram socket: each datagram is answered by
//! the pure [`UdpTrackerService`] against the same [`Registry`] the HTTP tracker serves, so peers that
//! announce over UDP and over HTTP see each other. Expiry of silent peers is left to the HTTP server's
//! periodic task (the tracker always runs both).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enjambre_core::tracker::udp::{UdpOutcome, UdpTrackerService, MAX_DATAGRAM};
use enjambre_core::tracker::Registry;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::clock::Clock;
use crate::transport::DatagramSocket;

/// How many datagrams of each kind the server has handled (for metrics and tests).
#[derive(Debug, Default)]
pub struct UdpCounters {
    counts: [AtomicU64; 7],
}

fn slot(outcome: UdpOutcome) -> usize {
    match outcome {
        UdpOutcome::Connected => 0,
        UdpOutcome::Announced => 1,
        UdpOutcome::AnnounceRefused => 2,
        UdpOutcome::Scraped => 3,
        UdpOutcome::BadConnectionId => 4,
        UdpOutcome::Malformed => 5,
        UdpOutcome::Dropped => 6,
    }
}

impl UdpCounters {
    /// Datagrams handled with this outcome so far.
    pub fn get(&self, outcome: UdpOutcome) -> u64 {
        self.counts[slot(outcome)].load(Ordering::Relaxed)
    }

    fn add(&self, outcome: UdpOutcome) {
        self.counts[slot(outcome)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Serve the UDP tracker on `socket` until the returned future is dropped. `rng_seed` seeds both the
/// connection-id secret and the choice of peers handed out: real runs must pass an unpredictable seed.
pub async fn serve_udp<S: DatagramSocket>(
    socket: S,
    registry: Arc<Mutex<Registry>>,
    clock: impl Clock,
    rng_seed: u64,
    counters: Arc<UdpCounters>,
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
        let (reply, outcome) = {
            let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
            service.handle(&mut reg, clock.now(), from, packet, &mut rng)
        };
        counters.add(outcome);
        tracing::debug!(%from, ?outcome, "UDP tracker datagram");
        if let Some(reply) = reply {
            if let Err(e) = socket.send_to(&reply, from).await {
                tracing::debug!(%from, error = %e, "UDP tracker send failed");
            }
        }
    }
}
