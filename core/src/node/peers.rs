//! The addresses a torrent knows peers at, keyed by IP *and port* (several peers may share one IP): when to
//! dial them again, how often they sent bad data, and who is banned.

use super::{ConnId, NodeConfig};
use crate::backoff::Backoff;
use crate::time::Instant;
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Clone)]
struct KnownPeer {
    conn: Option<ConnId>,
    failures: u32,
    retry_at: Instant,
    strikes: u32,
    banned: bool,
    seed: bool,
}

/// Known peer addresses of one torrent.
#[derive(Debug, Clone)]
pub(crate) struct PeerBook {
    peers: BTreeMap<SocketAddr, KnownPeer>,
    redial: Backoff,
}

impl PeerBook {
    pub fn new(config: &NodeConfig) -> PeerBook {
        PeerBook {
            peers: BTreeMap::new(),
            redial: Backoff::new(config.reconnect_base, config.reconnect_max),
        }
    }

    /// Number of known addresses.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Learn an address (from a tracker or the user); known addresses keep their state.
    pub fn add(&mut self, addr: SocketAddr, now: Instant) {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return;
        }
        self.peers.entry(addr).or_insert(KnownPeer {
            conn: None,
            failures: 0,
            retry_at: now,
            strikes: 0,
            banned: false,
            seed: false,
        });
    }

    /// Addresses to dial now, at most `budget`, fewest failures first.
    pub fn ready_to_dial(
        &self,
        now: Instant,
        we_are_complete: bool,
        budget: usize,
    ) -> Vec<SocketAddr> {
        let mut ready: Vec<(u32, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.conn.is_none() && !p.banned && p.retry_at <= now && !(we_are_complete && p.seed)
            })
            .map(|(a, p)| (p.failures, *a))
            .collect();
        ready.sort();
        ready.into_iter().take(budget).map(|(_, a)| a).collect()
    }

    /// An inbound connection turned out to come from the peer listening at `addr`: do not dial it meanwhile.
    pub fn attach(&mut self, addr: SocketAddr, conn: ConnId, now: Instant) {
        self.add(addr, now);
        if let Some(p) = self.peers.get_mut(&addr) {
            p.conn.get_or_insert(conn);
        }
    }

    pub fn dialing(&mut self, addr: SocketAddr, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&addr) {
            p.conn = Some(conn);
        }
    }

    pub fn connect_failed(&mut self, addr: SocketAddr, now: Instant) {
        self.disconnected(addr, now);
    }

    /// The connection to `addr` ended: dial again after a backoff that grows with each failure.
    pub fn disconnected(&mut self, addr: SocketAddr, now: Instant) {
        let Some(failures) = self.peers.get(&addr).map(|p| p.failures) else {
            return;
        };
        let delay = self.redial.delay(failures.saturating_add(1));
        if let Some(p) = self.peers.get_mut(&addr) {
            p.conn = None;
            p.failures = failures.saturating_add(1);
            p.retry_at = now + delay;
        }
    }

    /// Never dial `addr` again (it was ourselves, or a duplicate of another connection).
    pub fn forget(&mut self, addr: &SocketAddr) {
        self.peers.remove(addr);
    }

    pub fn mark_seed(&mut self, addr: &SocketAddr) {
        if let Some(p) = self.peers.get_mut(addr) {
            p.seed = true;
        }
    }

    /// Record one corrupt piece from `addr`; returns its strike count.
    pub fn strike(&mut self, addr: SocketAddr) -> u32 {
        let p = self.peers.entry(addr).or_insert(KnownPeer {
            conn: None,
            failures: 0,
            retry_at: Instant::ZERO,
            strikes: 0,
            banned: false,
            seed: false,
        });
        p.strikes += 1;
        p.strikes
    }

    pub fn ban(&mut self, addr: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&addr) {
            p.banned = true;
        }
    }

    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.peers.get(addr).is_some_and(|p| p.banned)
    }

    pub fn banned(&self) -> Vec<SocketAddr> {
        self.peers
            .iter()
            .filter(|(_, p)| p.banned)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Every known address that is not banned.
    pub fn known_not_banned(&self) -> Vec<SocketAddr> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.banned)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Earliest instant at which a known, idle address becomes dialable.
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| p.conn.is_none() && !p.banned && p.retry_at > now)
            .map(|p| p.retry_at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn same_ip_different_ports_are_different_peers() {
        let mut b = PeerBook::new(&NodeConfig::default());
        b.add(addr(1), Instant::ZERO);
        b.add(addr(2), Instant::ZERO);
        b.strike(addr(1));
        b.ban(addr(1));
        assert!(b.is_banned(&addr(1)));
        assert!(!b.is_banned(&addr(2)));
        assert_eq!(b.ready_to_dial(Instant::ZERO, false, 10), vec![addr(2)]);
    }

    #[test]
    fn reconnect_backoff_doubles_and_caps() {
        let cfg = NodeConfig::default();
        let mut b = PeerBook::new(&cfg);
        let t0 = Instant::ZERO;
        b.add(addr(1), t0);
        b.dialing(addr(1), 1);
        assert!(
            b.ready_to_dial(t0, false, 10).is_empty(),
            "a peer being dialled is not dialled twice"
        );
        b.disconnected(addr(1), t0);
        assert_eq!(b.next_retry(t0), Some(t0 + cfg.reconnect_base));
        b.disconnected(addr(1), t0);
        assert_eq!(b.next_retry(t0), Some(t0 + cfg.reconnect_base * 2));
        for _ in 0..20 {
            b.disconnected(addr(1), t0);
        }
        assert_eq!(b.next_retry(t0), Some(t0 + cfg.reconnect_max));
    }

    #[test]
    fn seeds_are_not_dialled_once_we_are_complete() {
        let mut b = PeerBook::new(&NodeConfig::default());
        b.add(addr(1), Instant::ZERO);
        b.mark_seed(&addr(1));
        assert!(b.ready_to_dial(Instant::ZERO, true, 10).is_empty());
        assert_eq!(b.ready_to_dial(Instant::ZERO, false, 10), vec![addr(1)]);
    }
}
