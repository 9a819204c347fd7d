//! Helpers for enjambre's cross-crate end-to-end tests: they run the real `tracker` and `peer` binaries on
//! loopback, each test in its own scratch folder with its own ports.
//!
//! - [`bins`]: where the binaries are, and typed front ends for `tracker`, `peer serve` and `peer get --json`.
//! - [`proc`]: a child-process guard that kills its process on drop (no orphans, even when a test panics) and
//!   reads its stdout line by line.
//! - [`files`]: scratch folders removed on success, deterministic file contents, SHA-1 and file comparison.
//! - [`ports`]: which of our processes owns a loopback port (inbound connections show ephemeral ports).
//! - [`http`]: a raw HTTP/1.1 exchange over TCP, for poking the tracker.
//! - [`prometheus`]: a strict parser of `/metrics` pages.
//! - [`wire`]: a hand-driven BitTorrent connection, for poking a peer.

pub mod bins;
pub mod files;
pub mod http;
pub mod ports;
pub mod proc;
pub mod prometheus;
pub mod wire;

use enjambre_core::checkpoint::Checkpoint;
use std::path::Path;
use std::time::{Duration, Instant};

/// The checkpoint of download `info_hash` (hex) in download folder `dir`, if one is there and readable
/// (it is replaced atomically, so a read sees a whole one).
pub fn read_checkpoint(dir: &Path, info_hash: &str) -> Option<Checkpoint> {
    let path = dir.join(".enjambre").join(format!("{info_hash}.json"));
    let bytes = std::fs::read(path).ok()?;
    Checkpoint::from_json(&bytes).ok()
}

/// Poll `f` every `every` until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}
