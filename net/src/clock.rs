//! Time for drivers: converts tokio's clock (simulated per host under turmoil) into the core's [`Instant`].

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
