//! enjambre-net: tokio drivers that run the sans-IO `enjambre-core` state machines.
//!
//! What differs between the real world and the simulator is behind small traits: [`transport::Transport`]
//! (TCP and UDP), [`storage::Storage`] (files) and [`storage::Blocking`] (where disk and hash work runs); time
//! is tokio's, which the simulators pause and advance, read in the core's time base through the one concrete
//! [`clock::Clock`]. Each driver (peer node, tracker server, tracker client) is written once against them.

pub mod accept;
pub mod app;
pub mod byte_size;
pub mod catalog_store;
pub mod clock;
mod conn_io;
pub mod connection_slots;
pub mod create;
pub mod demo;
pub mod dht;
mod disk;
pub mod heap;
pub mod http;
pub mod library;
pub mod library_index;
pub mod peer;
pub mod peer_status;
mod piece_assembly;
pub mod prometheus;
pub mod rate;
pub mod resume;
pub mod send_file;
pub mod state_dir;
pub mod storage;
pub mod torrent_store;
pub mod tracker_client;
pub mod tracker_metrics;
pub mod tracker_server;
pub mod transport;
pub mod udp_tracker_client;
pub mod udp_tracker_server;
mod woken;
