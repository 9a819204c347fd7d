//! Peers announced to us (`announce_peer`), per info hash, each forgotten after a time to live. Both the
//! number of torrents and the peers per torrent are capped, so that announcers cannot fill our memory.

use crate::metainfo::InfoHash;
use crate::time::Instant;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Caps of a [`PeerStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Torrents we keep peers for.
    pub max_torrents: usize,
    /// Peers kept per torrent.
    pub max_peers: usize,
    /// How long an announce is remembered.
    pub ttl: Duration,
}

/// Announced peers by torrent.
#[derive(Debug, Clone)]
pub struct PeerStore {
    limits: StoreLimits,
    peers: BTreeMap<InfoHash, BTreeMap<SocketAddr, Instant>>,
}

impl PeerStore {
    /// An empty store.
    pub fn new(limits: StoreLimits) -> PeerStore {
        PeerStore {
            limits,
            peers: BTreeMap::new(),
        }
    }

    /// Remember that `peer` has `info_hash`, until `now + ttl`. Returns false if a cap refused it.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, peer: SocketAddr) -> bool {
        if !self.peers.contains_key(&info_hash) && self.peers.len() >= self.limits.max_torrents {
            return false;
        }
        let peers = self.peers.entry(info_hash).or_default();
        if !peers.contains_key(&peer) && peers.len() >= self.limits.max_peers {
            return false;
        }
        peers.insert(peer, now + self.limits.ttl);
        true
    }

    /// Up to `max` live peers of `info_hash`, starting at `offset` (wrapping), so that different
    /// askers get different samples of a large swarm.
    pub fn peers(&self, info_hash: &InfoHash, max: usize, offset: usize) -> Vec<SocketAddr> {
        let Some(peers) = self.peers.get(info_hash) else {
            return Vec::new();
        };
        let all: Vec<SocketAddr> = peers.keys().copied().collect();
        let start = offset.checked_rem(all.len()).unwrap_or(0);
        all.iter()
            .cycle()
            .skip(start)
            .take(max.min(all.len()))
            .copied()
            .collect()
    }

    /// Forget announces older than their time to live.
    pub fn expire(&mut self, now: Instant) {
        for peers in self.peers.values_mut() {
            peers.retain(|_, until| *until > now);
        }
        self.peers.retain(|_, p| !p.is_empty());
    }

    /// Torrents with at least one peer.
    pub fn torrents(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_expiry() {
        let mut s = PeerStore::new(StoreLimits {
            max_torrents: 1,
            max_peers: 2,
            ttl: Duration::from_secs(10),
        });
        let h = InfoHash([1; 20]);
        let p = |n: u16| SocketAddr::from(([10, 0, 0, 1], n));
        let t0 = Instant::ZERO;
        assert!(s.announce(t0, h, p(1)));
        assert!(s.announce(t0, h, p(2)));
        assert!(!s.announce(t0, h, p(3)), "peer cap");
        assert!(!s.announce(t0, InfoHash([2; 20]), p(1)), "torrent cap");
        assert_eq!(s.peers(&h, 5, 1), vec![p(2), p(1)]);
        s.announce(t0 + Duration::from_secs(5), h, p(2));
        s.expire(t0 + Duration::from_secs(11));
        assert_eq!(s.peers(&h, 5, 0), vec![p(2)]);
        s.expire(t0 + Duration::from_secs(16));
        assert_eq!(s.torrents(), 0);
    }
}
