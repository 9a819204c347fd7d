//! End-to-end tests on loopback with the real `tracker` and `peer` binaries (and the `corrupt_peer` test
//! binary). Each test is self-contained: its own scratch folder, processes and ports.
//!
//! The binaries must have been built for the same profile: `cargo test --release --workspace` does it.

mod catalog_restart;
mod dht;
mod disk_full;
mod failover;
mod hostile_metainfo;
mod leecher_input;
mod lifecycle;
mod magnet;
mod monitor;
mod one_folder;
mod peer_input;
mod resume;
mod swarm;
mod tracker_input;
mod tracker_trouble;
