#![warn(missing_docs)]
//! enjambre-sim: the deterministic simulator. The real `enjambre-net` drivers run on turmoil hosts, over
//! turmoil's network and filesystem, while a runner scripts faults (crashes, partitions, a corrupt peer, the
//! tracker going down) from a TOML scenario and judges expectations at the end. The same scenario and seed
//! replay the same story byte for byte.

pub mod content;
pub mod dht_sim;
pub mod disk_space;
pub mod explore;
pub mod flow;
pub mod host;
pub mod measures;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod snapshot;
pub mod storage;
pub mod sweep;
pub mod timeline;
pub mod trace_filter;
pub mod tracker_host;
pub mod transport;
pub mod turmoil_host;
pub mod world;

pub use explore::{explore, ExploreOptions};
pub use progress::{Progress, ProgressSink};
pub use report::Report;
pub use runner::{run, RunOptions};
pub use scenario::Scenario;
pub use sweep::{sweep, SweepOptions, SweepReport};
