//! Time for drivers: converts tokio's clock into the core's [`Instant`] and back.
//!
//! Decision (issue 12): tokio time *is* the time seam. Under turmoil every host runs a paused tokio runtime
//! advanced per tick, and the flow-level engine runs all hosts on one paused runtime; in both, `tokio::time`
//! is simulated time, and in real runs it is real time. So waiting for a *duration* (an I/O timeout, a
//! pause between retries, an interval) uses `tokio::time` directly, in every driver, and is deterministic
//! under both simulators. What this module adds is the core's time base: [`Clock::now`] gives the core's
//! [`Instant`] (microseconds since the clock's origin, which a restarted simulated host resets) and
//! [`Clock::sleep_until`] waits for a deadline the core computed in that base. Every read of the current
//! time that reaches the core, and every wait for a core deadline, goes through a [`Clock`]; nothing else
//! needs to. A clock that is not tokio's could not drive tokio's timers and sockets anyway, so [`Clock`] is
//! one concrete type, not a trait: the drivers carry no clock type parameter.

use enjambre_core::time::Instant;

/// The core's time base on `tokio::time`: a monotonic clock whose origin is the moment it was created.
/// Under turmoil and the flow engine, tokio time is the host's simulated time, so the same clock serves
/// real and simulated runs.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current instant in the core's time base.
    pub fn now(&self) -> Instant {
        let micros = self.origin.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Sleep until `deadline` (in the core's time base).
    pub async fn sleep_until(&self, deadline: Instant) {
        tokio::time::sleep_until(self.to_tokio(deadline)).await
    }

    /// `at` (in the core's time base) as tokio's instant, for a [`tokio::time::Sleep`] kept across polls.
    pub fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        self.origin + at.since_origin()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
