//! The rate meter: bytes per second of a counter that only grows, from samples of its total. A peer's
//! status page (per torrent) measures rates this way; the tracker (per peer, from announced totals) and a
//! connection's choking rate are the same measure.

use crate::time::Instant;
use std::time::Duration;

/// Bytes per second of an ever-growing counter. The rate moves on only when a sample comes at least
/// `window` after the one it was last measured from, so that a burst of samples does not make it jitter; a
/// total that went backwards (a restarted client, a reopened torrent) starts the meter over at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateMeter {
    window: Duration,
    /// The sample the next rate is measured from.
    base: Option<(Instant, u64)>,
    rate: u64,
}

impl RateMeter {
    /// A meter that has seen no sample yet (its rate is 0) and measures over at least `window`.
    pub const fn new(window: Duration) -> RateMeter {
        RateMeter {
            window,
            base: None,
            rate: 0,
        }
    }

    /// Take in the counter's `total` at `now`; returns the rate, bytes per second.
    pub fn sample(&mut self, now: Instant, total: u64) -> u64 {
        match self.base {
            Some((at, base)) if total >= base => {
                let elapsed = now.saturating_since(at);
                if elapsed >= self.window && !elapsed.is_zero() {
                    self.rate = ((total - base) as f64 / elapsed.as_secs_f64()) as u64;
                    self.base = Some((now, total));
                }
            }
            _ => {
                self.base = Some((now, total));
                self.rate = 0;
            }
        }
        self.rate
    }

    /// The rate measured by the last sample that moved it, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    #[test]
    fn rates_are_measured_over_at_least_the_window() {
        let mut m = RateMeter::new(Duration::from_secs(1));
        assert_eq!(m.sample(at(0), 100), 0, "the first sample is the base");
        assert_eq!(m.sample(at(400), 5000), 0, "too soon: no rate yet");
        assert_eq!(m.sample(at(2000), 4100), 2000, "4000 bytes over 2 s");
        assert_eq!(
            m.sample(at(2500), 9999),
            2000,
            "too soon: the last rate stays"
        );
        assert_eq!(m.sample(at(3000), 4600), 500);
        assert_eq!(m.rate(), 500);
    }

    #[test]
    fn a_total_that_goes_backwards_starts_over() {
        let mut m = RateMeter::new(Duration::from_millis(500));
        m.sample(at(0), 0);
        assert_eq!(m.sample(at(1000), 3000), 3000);
        assert_eq!(m.sample(at(2000), 10), 0, "restarted client");
        assert_eq!(m.sample(at(3000), 1010), 1000);
    }

    #[test]
    fn a_zero_window_never_divides_by_zero() {
        let mut m = RateMeter::new(Duration::ZERO);
        m.sample(at(5), 0);
        assert_eq!(m.sample(at(5), 100), 0);
        assert_eq!(m.sample(at(1005), 100), 100);
    }
}
