//! A token-bucket rate limit shared by every connection of a peer (`--max-upload-rate`), on the driver's
//! clock so that it also paces simulated peers.
//!
//! The bucket is small: [`BURST_TIME`] of the rate, and never less than [`MIN_BURST`]. A peer whose uplink
//! idled may then send only a block or two at once before it is paced at its rate, as a real link would let
//! it (a quarter second's worth, as before issue 14, let an idle leecher hand out a whole piece instantly
//! under turmoil, which has no link capacity, and flattered every flash crowd it simulated).
//!
//! Why so small: when the cap is the link's own rate (a LAN peer capped at its line rate), whatever the
//! bucket lets out at once stays queued in the sockets for as long as the peer keeps sending, and the link
//! shares itself fairly among the connections with bytes queued. The driver releases the blocks it serves
//! in an order that finishes one piece before the next (`enjambre_core::serve_order`); a backlog of several
//! blocks for several peers would undo that order on the wire. 64 KiB (four blocks) cost the flow engine's
//! 20-leecher flash crowd 6% (1.40x the optimum against 1.49x).

use crate::clock::Clock;
use enjambre_core::time::Instant;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How much time's worth of the rate the bucket holds.
pub const BURST_TIME: Duration = Duration::from_millis(5);

/// The smallest bucket: one 16 KiB block (its 13-byte header paid as debt), whatever the rate.
pub const MIN_BURST: u64 = 16 * 1024;

/// A shared byte-rate limit.
#[derive(Clone)]
pub struct RateLimit {
    bucket: Arc<Mutex<Bucket>>,
    clock: Clock,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1), allowing bursts of [`BURST_TIME`] (at least [`MIN_BURST`]).
    pub fn new(bytes_per_sec: u64, clock: Clock) -> RateLimit {
        RateLimit {
            bucket: Arc::new(Mutex::new(Bucket::new(bytes_per_sec, clock.now()))),
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
        match self.bucket.lock() {
            Ok(mut b) => b.spend(now, bytes),
            Err(_) => Duration::ZERO,
        }
    }
}

/// The bucket's arithmetic, on instants given to it (so that its pacing is tested without a clock).
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `bytes_per_sec` (at least 1) at `now`.
    fn new(bytes_per_sec: u64, now: Instant) -> Bucket {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate * BURST_TIME.as_secs_f64()).max(MIN_BURST as f64);
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Spend `bytes` at `now`; the wait until the debt, if any, is paid.
    fn spend(&mut self, now: Instant, bytes: u64) -> Duration {
        let elapsed = now.saturating_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = 16 * 1024 + 13;
    const RATE: u64 = 2_000_000;

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    /// Blocks a sender gets out at `now` before the bucket tells it to wait.
    fn blocks_at_once(bucket: &mut Bucket, now: Instant) -> u64 {
        let mut sent = 1;
        while bucket.spend(now, BLOCK).is_zero() {
            sent += 1;
        }
        sent
    }

    #[test]
    fn an_idle_uplink_sends_one_block_at_once_not_a_piece() {
        let mut bucket = Bucket::new(RATE, at(0));
        // One second idle refills the bucket to its cap only: 16 KiB at 2 MB/s, one block on a little debt
        // (its header); a 256 KiB piece (sixteen blocks) cannot leave at once.
        assert_eq!(blocks_at_once(&mut bucket, at(1_000_000)), 1);
        let mut bucket = Bucket::new(RATE, at(0));
        assert!(blocks_at_once(&mut bucket, at(10_000_000)) < 16);
    }

    #[test]
    fn a_fast_link_holds_five_milliseconds() {
        let rate = 100_000_000;
        let mut bucket = Bucket::new(rate, at(0));
        let sent = blocks_at_once(&mut bucket, at(1_000_000));
        assert_eq!(sent, (rate / 200).div_ceil(BLOCK));
    }

    #[test]
    fn a_busy_sender_is_paced_at_the_rate() {
        let mut bucket = Bucket::new(RATE, at(0));
        let mut now = 0u64;
        let mut sent = 0u64;
        let end = 10_000_000;
        while now < end {
            let wait = bucket.spend(at(now), BLOCK);
            sent += BLOCK;
            now += u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        }
        // Ten seconds at 2 MB/s, plus the initial bucket and one block of rounding at most.
        let most = RATE * 10 + MIN_BURST + BLOCK;
        assert!(sent <= most, "sent {sent} > {most}");
        assert!(sent >= RATE * 10, "sent {sent} < {}", RATE * 10);
    }

    #[test]
    fn a_sender_that_waits_as_told_never_gets_ahead() {
        // However the sender's blocks fall, bytes out by time t never exceed burst + rate × t (plus the block
        // that ran into debt).
        let mut bucket = Bucket::new(RATE, at(0));
        let mut now = 0u64;
        let mut sent = 0u64;
        for i in 0..2_000u64 {
            let wait = bucket.spend(at(now), BLOCK);
            sent += BLOCK;
            let allowed = MIN_BURST as f64 + RATE as f64 * now as f64 / 1e6 + BLOCK as f64;
            assert!(sent as f64 <= allowed, "block {i}: {sent} > {allowed}");
            // Sometimes idle a while between blocks, sometimes send as soon as allowed.
            let idle = if i % 7 == 0 { 30_000 } else { 0 };
            now += u64::try_from(wait.as_micros()).unwrap_or(u64::MAX) + idle;
        }
    }
}
