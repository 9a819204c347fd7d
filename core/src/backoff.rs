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
    fn a_huge_first_wait_saturates_instead_of_overflowing() {
        let b = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.delay(40), Duration::MAX);
    }
}
