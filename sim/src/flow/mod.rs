//! The flow-level engine: a second network model for swarms of a thousand peers and more. Every host runs on
//! one tokio current-thread runtime in paused (virtual) time; the network shares per-host capacities among
//! flows instead of moving packets ([`net`]); disks keep only what differs from the generated content
//! ([`disk`]).

pub mod content_blocks;
pub mod disk;
pub mod group;
pub mod net;
pub mod runner;
pub mod transport;
