//! The one exponential backoff: a first wait, doubled with each failure in a row, capped. Redialling peers,
//! retrying a stopped download, re-announcing to a failing tracker, re-saving a checkpoint and the UDP
//! tracker client's resends all use it.

use std::time::Duration;

/// Doublings stop here (the cap is normally reached long before).
const MAX_DOUBLINGS: u32 = 16;

/// Waits of `first`, `2·first`, `4·first`... never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// A backoff starting at `first` and capped at `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait after `failures` failures in a row (1 for the first failure; 0 is treated as 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// [`Backoff::delay`] spread over its upper half by `draw` (a random number): a wait between half the
    /// delay and the whole of it. Clients that failed together (a crowd against a full server) then retry
    /// at different instants instead of together again, failing again together.
    pub fn jittered(&self, failures: u32, draw: u64) -> Duration {
        let delay = self.delay(failures);
        let half = delay / 2;
        let spread = u64::try_from((delay - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(draw.checked_rem(spread.saturating_add(1)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_wait_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_jittered_wait_lies_in_the_upper_half_of_the_delay_and_follows_the_draw() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        for failures in 1..=8 {
            let delay = b.delay(failures);
            let waits: Vec<Duration> = [0, 1, 12_345_678, u64::MAX / 3, u64::MAX]
                .iter()
                .map(|draw| b.jittered(failures, *draw))
                .collect();
            assert!(
                waits.iter().all(|w| *w >= delay / 2 && *w <= delay),
                "{waits:?}"
            );
            assert_eq!(waits[0], delay / 2);
            assert_ne!(waits[2], waits[3], "different draws, different waits");
        }
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::ZERO).jittered(3, 99),
            Duration::ZERO
        );
    }

    #[test]
    fn a_huge_first_wait_saturates_instead_of_overflowing() {
        let b = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.delay(40), Duration::MAX);
    }
}
