//! The tracker: a pure registry of swarms and published torrents, and the HTTP tracker protocol.
//!
//! - [`registry`]: announce, scrape, peer expiry, the catalog of published metainfos (by file name) and
//!   the swarm view. No IO and no clock: callers hand in `now` and an RNG.
//! - `swarm` (private): one torrent's peers as compact records, sampled by index.
//! - [`proto`]: the wire side of BEP 3 / 23 / 48 — parse announce and scrape query strings, encode bencoded
//!   responses, and, for clients, build an announce query and parse the reply.
//! - [`tiers`]: which tracker to announce to (BEP 12 tiers).
//! - [`udp`]: the UDP tracker protocol (BEP 15), server and client packets and the connection-id scheme.

pub mod proto;
pub mod registry;
mod swarm;
pub mod tiers;
pub mod udp;

pub use proto::{
    announce_query, parse_announce_extensions, parse_announce_reply, parse_scrape_reply,
    AnnounceExtensions, AnnounceParams, AnnounceReply, TrackerProtoError,
};
pub use registry::{Registry, RegistryConfig, RegistryCounts};
pub use tiers::TrackerTiers;

/// The `event` of an announce (BEP 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Event {
    /// A regular, periodic announce (no `event` key, or `event=empty`).
    #[default]
    None,
    /// The first announce of a download.
    Started,
    /// The download just finished.
    Completed,
    /// The peer is leaving the swarm.
    Stopped,
}

impl Event {
    /// The query-string value of this event, `None` for a regular announce.
    pub fn as_query_value(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }
}
