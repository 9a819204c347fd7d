//! The addresses a torrent knows peers at, keyed by IP *and port* (several peers may share one IP): when to
//! dial them again, how often they sent bad data, and who is banned.

use super::{ConnId, NodeConfig};
use crate::backoff::Backoff;
use crate::time::Instant;
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Bound;

#[derive(Debug, Clone)]
struct KnownPeer {
    conn: Option<ConnId>,
    failures: u32,
    /// Dials in a row that never connected (a connection that opened resets it).
    failed_dials: u32,
    /// Connections in a row that the peer closed before its handshake (see [`PeerBook::refused`]); a
    /// connection that got further resets it.
    refusals: u32,
    retry_at: Instant,
    strikes: u32,
    banned: bool,
    seed: bool,
}

impl KnownPeer {
    fn new(retry_at: Instant) -> KnownPeer {
        KnownPeer {
            conn: None,
            failures: 0,
            failed_dials: 0,
            refusals: 0,
            retry_at,
            strikes: 0,
            banned: false,
            seed: false,
        }
    }

    /// The peer's key in [`PeerBook::idle`]: only idle, unbanned addresses wait to be dialled.
    fn idle_key(&self) -> Option<Instant> {
        (self.conn.is_none() && !self.banned).then_some(self.retry_at)
    }

    /// The peer's key in [`PeerBook::idle_not_seeds`]: the idle key of an address not known to be a seed.
    fn idle_not_seed_key(&self) -> Option<Instant> {
        self.idle_key().filter(|_| !self.seed)
    }
}

/// Known peer addresses of one torrent.
#[derive(Debug, Clone)]
pub(crate) struct PeerBook {
    peers: BTreeMap<SocketAddr, KnownPeer>,
    /// How many idle, unbanned addresses become dialable at each instant: [`PeerBook::next_retry`] is asked
    /// after every input, so it reads one entry instead of scanning every known address. Counted by instant
    /// rather than listed by address: the addresses a tracker reply or a peer exchange brings share their
    /// instant, so the index stays a few entries long however many peers are known.
    idle: BTreeMap<Instant, u32>,
    /// The same count for the idle addresses not known to be seeds: what a complete torrent would dial. It
    /// answers [`PeerBook::dialable_now`] for a complete torrent in one read, as the node asks after every
    /// call that changed the torrent.
    idle_not_seeds: BTreeMap<Instant, u32>,
    /// The banned addresses: [`PeerBook::banned`] is read at every stats snapshot, which a driver takes
    /// often, and scanning every known address there was most of a snapshot's cost.
    banned: BTreeSet<SocketAddr>,
    redial: Backoff,
    /// Failed dials in a row past which an address is taken for dead
    /// ([`NodeConfig::dead_after_failed_dials`], see [`PeerBook::connect_failed`]).
    dead_after: u32,
    /// The longer waits, from `reconnect_max` up to [`NodeConfig::dead_redial_max`], of addresses that never
    /// answer ([`PeerBook::connect_failed`]) and of those that answer only to hang up ([`PeerBook::refused`]).
    long_redial: Backoff,
}

impl PeerBook {
    pub fn new(config: &NodeConfig) -> PeerBook {
        PeerBook {
            peers: BTreeMap::new(),
            idle: BTreeMap::new(),
            idle_not_seeds: BTreeMap::new(),
            banned: BTreeSet::new(),
            redial: Backoff::new(config.reconnect_base, config.reconnect_max),
            dead_after: config.dead_after_failed_dials.max(1),
            long_redial: Backoff::new(config.reconnect_max, config.dead_redial_max),
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
        self.insert_new(addr, now);
    }

    /// Learn `addr` with a first dial at `retry_at`, unless it is known.
    fn insert_new(&mut self, addr: SocketAddr, retry_at: Instant) {
        if let btree_map::Entry::Vacant(slot) = self.peers.entry(addr) {
            slot.insert(KnownPeer::new(retry_at));
            idle_add(&mut self.idle, retry_at);
            idle_add(&mut self.idle_not_seeds, retry_at);
        }
    }

    /// Change the known peer at `addr` (if any) and keep [`PeerBook::idle`] in step.
    fn update(&mut self, addr: SocketAddr, change: impl FnOnce(&mut KnownPeer)) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let before = (p.idle_key(), p.idle_not_seed_key());
        change(p);
        let after = (p.idle_key(), p.idle_not_seed_key());
        reindex(&mut self.idle, before.0, after.0);
        reindex(&mut self.idle_not_seeds, before.1, after.1);
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
        self.update(addr, |p| {
            p.conn.get_or_insert(conn);
            p.failed_dials = 0;
        });
    }

    pub fn dialing(&mut self, addr: SocketAddr, conn: ConnId) {
        self.update(addr, |p| p.conn = Some(conn));
    }

    /// A dial of `addr` found nobody: dial again after the backoff. Past
    /// [`NodeConfig::dead_after_failed_dials`] in a row the address is taken for dead and its wait keeps
    /// doubling from `reconnect_max` up to [`NodeConfig::dead_redial_max`]. It is not forgotten: a tracker
    /// tells it again at every announce, and a new entry would start the backoff over.
    pub fn connect_failed(&mut self, addr: SocketAddr, now: Instant) {
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let (failures, failed_dials) = (
            p.failures.saturating_add(1),
            p.failed_dials.saturating_add(1),
        );
        let delay = if failed_dials <= self.dead_after {
            self.redial.delay(failures)
        } else {
            self.long_redial.delay(failed_dials - self.dead_after)
        };
        self.ended(addr, now, delay);
        self.update(addr, |p| p.failed_dials = failed_dials);
    }

    /// A connection to or from the peer listening at `addr` opened: its failed dials are behind it.
    pub fn connected(&mut self, addr: &SocketAddr) {
        if let Some(p) = self.peers.get_mut(addr) {
            p.failed_dials = 0;
        }
    }

    /// The connection to `addr` ended: dial again after a backoff that grows with each failure.
    pub fn disconnected(&mut self, addr: SocketAddr, now: Instant) {
        let Some(failures) = self.peers.get(&addr).map(|p| p.failures) else {
            return;
        };
        let delay = self.redial.delay(failures.saturating_add(1));
        self.ended(addr, now, delay);
        self.update(addr, |p| p.refusals = 0);
    }

    /// The peer at `addr` accepted our dial and hung up before its handshake: how a peer at its connection
    /// cap says no (BEP 3 has no message for it; enjambre, libtorrent and others just close). Redialled
    /// soon, it would most likely say no again, and every refused attempt costs both ends a connection: so
    /// it waits `reconnect_max` and then twice as long at each refusal in a row, up to
    /// [`NodeConfig::dead_redial_max`], as libtorrent waits `min_reconnect_time` (60 s) times one more than
    /// its failures before dialling an address again (`peer_list::find_connect_candidates`). Peers we know
    /// are many in a crowd, so meanwhile the dialler tries others.
    pub fn refused(&mut self, addr: SocketAddr, now: Instant) {
        let Some(refusals) = self.peers.get(&addr).map(|p| p.refusals.saturating_add(1)) else {
            return;
        };
        self.ended(addr, now, self.long_redial.delay(refusals));
        self.update(addr, |p| p.refusals = refusals);
    }

    /// We gave up our dial of `addr` before it connected, for a peer that connected to us meanwhile
    /// (`Node::room_for_inbound`): not the address's fault, so it keeps its failures and its turn, and is
    /// dialled again as soon as there is room.
    pub fn withdrawn(&mut self, addr: SocketAddr) {
        self.update(addr, |p| p.conn = None);
    }

    /// A connection to (or dial of) `addr` ended: one failure more, dialable again `delay` from `now`.
    fn ended(&mut self, addr: SocketAddr, now: Instant, delay: std::time::Duration) {
        self.update(addr, |p| {
            p.conn = None;
            p.failures = p.failures.saturating_add(1);
            p.retry_at = now + delay;
        });
    }

    /// Never dial `addr` again (it was ourselves, or a duplicate of another connection).
    pub fn forget(&mut self, addr: &SocketAddr) {
        if let Some(p) = self.peers.remove(addr) {
            reindex(&mut self.idle, p.idle_key(), None);
            reindex(&mut self.idle_not_seeds, p.idle_not_seed_key(), None);
        }
        self.banned.remove(addr);
    }

    pub fn mark_seed(&mut self, addr: &SocketAddr) {
        self.update(*addr, |p| p.seed = true);
    }

    /// Record one corrupt piece from `addr`; returns its strike count.
    pub fn strike(&mut self, addr: SocketAddr) -> u32 {
        self.insert_new(addr, Instant::ZERO);
        let mut strikes = 0;
        self.update(addr, |p| {
            p.strikes += 1;
            strikes = p.strikes;
        });
        strikes
    }

    pub fn ban(&mut self, addr: SocketAddr) {
        if self.peers.contains_key(&addr) {
            self.banned.insert(addr);
        }
        self.update(addr, |p| p.banned = true);
    }

    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.peers.get(addr).is_some_and(|p| p.banned)
    }

    pub fn banned(&self) -> Vec<SocketAddr> {
        self.banned.iter().copied().collect()
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
        self.idle
            .range((Bound::Excluded(now), Bound::Unbounded))
            .next()
            .map(|(at, _)| *at)
    }

    /// Whether [`PeerBook::ready_to_dial`] would name an address at `now` given the budget: an idle, unbanned
    /// address whose retry time has come (not a seed, when we are complete). One read of an index.
    pub fn dialable_now(&self, now: Instant, we_are_complete: bool) -> bool {
        let idle = if we_are_complete {
            &self.idle_not_seeds
        } else {
            &self.idle
        };
        idle.range(..=now).next().is_some()
    }
}

/// Move one address's entry in an idle index from `before` to `after` (either may be absent).
fn reindex(idle: &mut BTreeMap<Instant, u32>, before: Option<Instant>, after: Option<Instant>) {
    if before == after {
        return;
    }
    if let Some(at) = before {
        idle_remove(idle, at);
    }
    if let Some(at) = after {
        idle_add(idle, at);
    }
}

/// One more idle address dialable at `at`.
fn idle_add(idle: &mut BTreeMap<Instant, u32>, at: Instant) {
    *idle.entry(at).or_insert(0) += 1;
}

/// One idle address fewer dialable at `at` (the instant leaves the index with its last address).
fn idle_remove(idle: &mut BTreeMap<Instant, u32>, at: Instant) {
    if let btree_map::Entry::Occupied(mut entry) = idle.entry(at) {
        *entry.get_mut() -= 1;
        if *entry.get() == 0 {
            entry.remove();
        }
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

    /// [`PeerBook::next_retry`] worked out by scanning every known address.
    fn next_retry_by_scan(b: &PeerBook, now: Instant) -> Option<Instant> {
        b.peers
            .values()
            .filter(|p| p.conn.is_none() && !p.banned && p.retry_at > now)
            .map(|p| p.retry_at)
            .min()
    }

    #[test]
    fn next_retry_follows_every_change_like_a_scan() {
        let cfg = NodeConfig::default();
        let mut b = PeerBook::new(&cfg);
        let at = |ms: u64| Instant::from_micros(ms * 1000);
        let mut seen = Vec::new();
        let mut dialable_seen = [[0u32; 2]; 2];
        // A fixed walk through every operation that moves an address in or out of the idle index.
        for step in 0u64..400 {
            let now = at(step * 37);
            let a = addr(1 + (step * 7 % 23) as u16);
            match step % 8 {
                0 | 1 => b.add(a, now),
                2 => b.dialing(a, step),
                3 => b.disconnected(a, now),
                4 => b.attach(a, step, now),
                5 if step % 24 == 5 => b.forget(&a),
                6 if step % 40 == 6 => {
                    b.strike(a);
                    b.ban(a);
                }
                7 if step % 16 == 7 => b.mark_seed(&a),
                7 if step % 16 == 15 => b.refused(a, now),
                _ => b.connect_failed(a, now),
            }
            for complete in [false, true] {
                dialable_seen[usize::from(complete)][usize::from(b.dialable_now(now, complete))] +=
                    1;
                assert_eq!(
                    b.dialable_now(now, complete),
                    !b.ready_to_dial(now, complete, usize::MAX).is_empty(),
                    "step {step}, complete {complete}"
                );
            }
            let banned_by_scan: Vec<SocketAddr> = b
                .peers
                .iter()
                .filter(|(_, p)| p.banned)
                .map(|(a, _)| *a)
                .collect();
            assert_eq!(b.banned(), banned_by_scan, "step {step}");
            for probe in [now, at(step * 37 + 500), at(step * 37 + 5_000)] {
                assert_eq!(
                    b.next_retry(probe),
                    next_retry_by_scan(&b, probe),
                    "step {step}"
                );
            }
            seen.push(b.next_retry(now));
        }
        assert!(
            seen.iter().filter(|r| r.is_some()).count() > 100,
            "the walk keeps retries pending most of the time"
        );
        assert!(!b.banned().is_empty(), "the walk banned someone");
        assert!(
            dialable_seen.iter().flatten().all(|n| *n > 0),
            "the walk sees addresses dialable and not, complete or not: {dialable_seen:?}"
        );
        assert_ne!(
            dialable_seen[0], dialable_seen[1],
            "marked seeds count only while we are not complete"
        );
    }

    #[test]
    fn an_address_that_never_answers_is_dialled_ever_less_often_and_one_that_did_is_not() {
        let cfg = NodeConfig::default();
        let mut b = PeerBook::new(&cfg);
        let t0 = Instant::ZERO;
        let (dead, flaky) = (addr(1), addr(2));
        b.add(dead, t0);
        b.add(flaky, t0);
        let mut waits = Vec::new();
        for i in 0..cfg.dead_after_failed_dials + 6 {
            for a in [dead, flaky] {
                b.dialing(a, u64::from(i));
                b.connect_failed(a, t0);
            }
            waits.push(b.peers[&dead].retry_at.saturating_since(t0).as_secs());
            // The flaky one answers now and then: its failed dials start over, and its wait stays capped.
            if i % 4 == 3 {
                b.dialing(flaky, 100);
                b.connected(&flaky);
                b.disconnected(flaky, t0);
            }
            assert!(b.peers[&flaky].retry_at.saturating_since(t0) <= cfg.reconnect_max);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 60, 120, 240, 480, 600]);
        b.add(dead, t0);
        assert_eq!(
            b.next_retry(t0),
            Some(t0 + cfg.reconnect_max),
            "told again, the dead address keeps its wait; the flaky one is next"
        );
    }

    #[test]
    fn a_peer_that_refuses_waits_ever_longer_until_a_connection_gets_through() {
        let cfg = NodeConfig::default();
        let mut b = PeerBook::new(&cfg);
        let t0 = Instant::ZERO;
        let full = addr(1);
        b.add(full, t0);
        let mut waits = Vec::new();
        for i in 0..7 {
            b.dialing(full, i);
            b.connected(&full);
            b.refused(full, t0);
            waits.push(b.peers[&full].retry_at.saturating_since(t0).as_secs());
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
        // A connection that got past the handshake ends as usual, and the next refusal starts over.
        b.dialing(full, 10);
        b.connected(&full);
        b.disconnected(full, t0);
        assert!(b.peers[&full].retry_at.saturating_since(t0) <= cfg.reconnect_max);
        b.dialing(full, 11);
        b.refused(full, t0);
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
