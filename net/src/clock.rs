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
//! needs to. A clock that is not tokio's could not drive tokio's timers and sockets anyway, so
//! [`TokioClock`] is the only implementation; the trait stays so that the drivers' signatures do not churn
//! while the rest of the workspace is being restructured, and can become the concrete type later.

use enjambre_core::time::Instant;

/// A monotonic clock that also knows how to sleep.
pub trait Clock: Clone + Send + Sync + 'static {
    /// The current instant in the core's time base.
    fn now(&self) -> Instant;
    /// Sleep until `deadline` (in the core's time base).
    fn sleep_until(&self, deadline: Instant) -> impl std::future::Future<Output = ()> + Send;
}

/// A clock on `tokio::time`, whose origin is the moment it was created. Under turmoil, tokio time is the
/// host's simulated time, so the same clock serves real and simulated runs.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }

    fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        self.origin + at.since_origin()
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        let micros = self.origin.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn sleep_until(&self, deadline: Instant) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep_until(self.to_tokio(deadline))
    }
}
