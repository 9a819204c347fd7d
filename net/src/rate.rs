//! A token-bucket rate limit shared by every connection of a peer (`--max-upload-rate`), on the driver's
//! clock so that it also paces simulated peers.

use crate::clock::Clock;
use enjambre_core::time::Instant;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type SleepFn = dyn Fn(Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// A shared byte-rate limit.
#[derive(Clone)]
pub struct RateLimit {
    bucket: Arc<Mutex<Bucket>>,
    now: Arc<dyn Fn() -> Instant + Send + Sync>,
    sleep: Arc<SleepFn>,
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1), allowing bursts of a quarter second's worth.
    pub fn new<C: Clock>(bytes_per_sec: u64, clock: C) -> RateLimit {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 4.0).max(64.0 * 1024.0);
        let (c1, c2) = (clock.clone(), clock);
        RateLimit {
            bucket: Arc::new(Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                last: c1.now(),
            })),
            now: Arc::new(move || c1.now()),
            sleep: Arc::new(move |t| {
                let c = c2.clone();
                Box::pin(async move { c.sleep_until(t).await })
            }),
        }
    }

    /// Spend `bytes`, waiting as long as the limit requires (debt is allowed and paid by waiting).
    pub async fn take(&self, bytes: u64) {
        let now = (self.now)();
        let wait = self.reserve(bytes);
        if wait > Duration::ZERO {
            (self.sleep)(now + wait).await;
        }
    }

    /// Spend `bytes` now without waiting; returns how long the caller must wait before spending more (the
    /// debt this spending ran into, zero when the bucket covered it).
    pub fn reserve(&self, bytes: u64) -> Duration {
        let now = (self.now)();
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
