//! The mainline DHT (BEP 5) as a pure state machine: Kademlia over KRPC.
//!
//! - [`id`]: node ids and the XOR metric.
//! - [`krpc`]: the bencoded messages, bounds-checked.
//! - [`table`]: the k-bucket routing table and its bad-node policy.
//! - [`lookup`]: one iterative lookup with α queries in flight.
//! - [`tokens`], [`store`]: `announce_peer` tokens and the peers announced to us.
//! - [`timers`]: the one table of deadlines.
//! - [`node`]: the node tying them together behind `handle_input` / `poll_output` / `poll_timeout`.

pub mod id;
pub mod krpc;
pub mod lookup;
pub mod mesh;
pub mod node;
pub mod saved;
pub mod store;
pub mod table;
pub mod timers;
pub mod tokens;

#[cfg(test)]
mod tests;

pub use id::NodeId;
pub use krpc::NodeInfo;
pub use lookup::LookupKind;
pub use node::{DhtConfig, DhtEvent, DhtInput, DhtNode, DhtOutput, LookupId, LookupResult};
