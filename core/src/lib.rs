//! enjambre-core: the sans-IO heart of enjambre.
//!
//! Every module here is a pure state machine or format: no sockets, no files, no clocks, no threads and no
//! global randomness. Drivers (the `enjambre-net` crate, and the simulator through it) feed inputs in and
//! drain outputs, handing in the current [`time::Instant`] and a seeded RNG.

pub mod backoff;
pub mod bencode;
pub mod bitfield;
pub mod checkpoint;
pub mod choker;
pub mod compact;
pub mod dht;
pub mod extension;
pub mod layout;
pub mod magnet;
pub mod metainfo;
pub mod node;
pub mod picker;
pub mod rate;
pub mod serve_order;
pub mod spread;
pub mod time;
pub mod tracker;
pub mod wire;

/// Identity of one connection: the one name for it in every module (the node allocates it, for outbound
/// connections and, through `node::Node::allocate_conn_id`, for inbound ones).
pub type ConnId = u64;

/// Default piece length: 512 KiB, as in the original system.
pub const DEFAULT_PIECE_LENGTH: u32 = 512 * 1024;
/// Block length used on the wire (BEP 3 de-facto standard): 16 KiB.
pub const BLOCK_LENGTH: u32 = 16 * 1024;
/// Largest block a peer may request from us; bigger requests are refused.
pub const MAX_REQUEST_LENGTH: u32 = 128 * 1024;
