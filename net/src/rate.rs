//! A token-bucket rate limit shared by every connection of a peer (`--max-upload-rate`), on the driver's
//! clock so that it also paces simulated peers.

use crate::clock::Clock;
use enjambre_core::time::Instant;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A shared byte-rate limit.
#[derive(Clone)]
pub struct RateLimit {
    bucket: Arc<Mutex<Bucket>>,
    clock: Clock,
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1), allowing bursts of a quarter second's worth.
    pub fn new(bytes_per_sec: u64, clock: Clock) -> RateLimit {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 4.0).max(64.0 * 1024.0);
        RateLimit {
            bucket: Arc::new(Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                last: clock.now(),
            })),
            clock,
        }
    }

    /// Spend `bytes`, waiting as long as the limit requires (debt is allowed and paid by waiting).
    pub async fn take(&self, bytes: u64) {
        let now = self.clock.now();
        let wait = self.reserve(bytes);
        if wait > Duration::ZERO {
            self.clock.sleep_until(now + wait).await;
        }
    }

    /// Spend `bytes` now without waiting; returns how long the caller must wait before spending more (the
    /// debt this spending ran into, zero when the bucket covered it).
    pub fn reserve(&self, bytes: u64) -> Duration {
        let now = self.clock.now();
        let Ok(mut b) = self.bucket.lock() else {
            return Duration::ZERO;
        };
        let elapsed = now.saturating_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * b.rate).min(b.burst) - bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / b.rate)
        }
    }
}
