//! SIGINT and SIGTERM as one awaitable source.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, registered up front so that a signal during startup is handled gracefully too.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// Register both signals.
    pub fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// The next signal, by name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
