//! One torrent's swarm, kept compact: what a tracker must know of every peer in a few bytes, and the
//! monitor's details only for the peers it shows them of.
//!
//! Every peer is a [`Record`] in a vector sorted by address: its compact address (6 bytes for IPv4, 18 for
//! IPv6: the BEP 23 / BEP 7 wire form, whose byte order sorts as `SocketAddr` does), a 32-bit last-seen
//! stamp, a 32-bit tag of its peer id and two flags: 16 bytes for an IPv4 peer, 28 for IPv6. The vectors
//! grow by a quarter, not double, so that spare capacity stays small. Measured by
//! `core/tests/registry_memory.rs`: about 20 heap bytes per IPv4 peer, swarm overhead included.
//!
//! A [`Report`] (peer id, `left`, the transfer counters and rates, reported pieces, status port: about 150
//! bytes) is kept only for a peer of a torrent published in the catalog or one that sends enjambre's
//! announce extensions: what the swarm view and the console monitor show. Other peers are listed there
//! with their role only, and their non-compact answers carry no peer id (BEP 23 `no_peer_id` form).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use rand_core::RngCore;

use super::proto::{PeerInfo, ID_LEN};
use super::registry::ScrapeStats;
use super::Event;
use crate::bitfield::Bitfield;
use crate::rate::RateMeter;
use crate::time::Instant;

/// A peer's address in its compact wire form: IP then port, big-endian. Fixed-size arrays here, where
/// `crate::compact` reads and writes byte strings: a record holds its address inline.
trait CompactAddr: Copy + Ord + std::fmt::Debug {
    fn to_socket_addr(self) -> SocketAddr;
}

impl CompactAddr for [u8; 6] {
    fn to_socket_addr(self) -> SocketAddr {
        let [a, b, c, d, p0, p1] = self;
        SocketAddr::from((Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p0, p1])))
    }
}

impl CompactAddr for [u8; 18] {
    fn to_socket_addr(self) -> SocketAddr {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&self[..16]);
        SocketAddr::from((Ipv6Addr::from(ip), u16::from_be_bytes([self[16], self[17]])))
    }
}

fn compact_v4(a: &SocketAddrV4) -> [u8; 6] {
    let [a0, a1, a2, a3] = a.ip().octets();
    let [p0, p1] = a.port().to_be_bytes();
    [a0, a1, a2, a3, p0, p1]
}

fn compact_v6(a: &SocketAddrV6) -> [u8; 18] {
    let mut out = [0u8; 18];
    out[..16].copy_from_slice(&a.ip().octets());
    out[16..].copy_from_slice(&a.port().to_be_bytes());
    out
}

/// The peer has nothing left to download.
const SEEDER: u8 = 1;
/// Its `event=completed` was counted in [`Swarm::downloaded`].
const COUNTED_COMPLETE: u8 = 2;

/// What the tracker keeps of every peer.
#[derive(Debug, Clone, Copy)]
struct Record<A> {
    addr: A,
    /// When it last announced, in [`stamp`] units.
    seen: u32,
    /// [`id_tag`] of its peer id.
    id_tag: u32,
    flags: u8,
}

/// Milliseconds of `now`, wrapped to 32 bits: a peer's age is `stamp(now).wrapping_sub(seen)`, exact while
/// it is under 49 days, which [`Swarm::expire`] makes sure of.
fn stamp(now: Instant) -> u32 {
    (now.as_micros() / 1000) as u32
}

/// The longest peer timeout the stamps can measure: ages up to twice the timeout must fit in 32 bits of
/// milliseconds.
const MAX_TIMEOUT_MS: u32 = 20 * 24 * 3600 * 1000;

/// A 32-bit tag of a peer id (FNV-1a): a swarm keeps it to never hand a client its own entry under
/// another address. Two ids with the same tag (one chance in four billion) only cost one peer handed out.
fn id_tag(peer_id: &[u8; ID_LEN]) -> u32 {
    peer_id.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The peers of one address family, sorted by address.
#[derive(Debug, Clone, Default)]
struct Table<A> {
    records: Vec<Record<A>>,
}

impl<A: CompactAddr> Table<A> {
    fn find(&self, addr: &A) -> Result<usize, usize> {
        self.records.binary_search_by(|r| r.addr.cmp(addr))
    }

    /// Insert at `pos`, growing by a quarter when full (doubling would leave up to half the vector unused).
    fn insert(&mut self, pos: usize, record: Record<A>) {
        if self.records.len() == self.records.capacity() {
            self.records.reserve_exact((self.records.len() / 4).max(4));
        }
        self.records.insert(pos, record);
    }

    /// Keep the records `keep` says so of, and give back memory when most of it went unused.
    fn retain(&mut self, mut keep: impl FnMut(&Record<A>) -> bool) {
        self.records.retain(|r| keep(r));
        if self.records.capacity() > 2 * self.records.len() + 8 {
            self.records
                .shrink_to(self.records.len() + self.records.len() / 4);
        }
    }
}

/// The monitor's details of a peer (see the module docs for which peers have one).
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Its peer id.
    pub peer_id: [u8; ID_LEN],
    /// Bytes it still misses.
    pub left: u64,
    /// `uploaded` and `downloaded` as last announced.
    pub uploaded: u64,
    pub downloaded: u64,
    /// Rates measured from those totals.
    pub up_rate: RateMeter,
    pub down_rate: RateMeter,
    /// Verified pieces it reported (`pieces` key), checked against the catalog's piece count.
    pub pieces: Option<Bitfield>,
    /// Its status endpoint port (`status_port` key).
    pub status_port: Option<u16>,
}

/// Rates are measured over at least this long, so that a burst of announces does not make them jitter.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Report {
    fn new(peer_id: [u8; ID_LEN]) -> Report {
        Report {
            peer_id,
            left: 0,
            uploaded: 0,
            downloaded: 0,
            up_rate: RateMeter::new(RATE_WINDOW),
            down_rate: RateMeter::new(RATE_WINDOW),
            pieces: None,
            status_port: None,
        }
    }

    /// Take in the counters of an announce: returns the bytes downloaded since the last one (a restarted
    /// client counts from zero again).
    fn update_counters(&mut self, now: Instant, uploaded: u64, downloaded: u64) -> u64 {
        let moved = downloaded
            .checked_sub(self.downloaded)
            .unwrap_or(downloaded);
        self.up_rate.sample(now, uploaded);
        self.down_rate.sample(now, downloaded);
        self.uploaded = uploaded;
        self.downloaded = downloaded;
        moved
    }
}

/// What an announce tells the swarm about its peer.
#[derive(Debug)]
pub(crate) struct Arrival {
    /// Its address (IPv4-mapped IPv6 already made IPv4).
    pub addr: SocketAddr,
    pub peer_id: [u8; ID_LEN],
    pub left: u64,
    pub uploaded: u64,
    pub downloaded: u64,
    pub event: Event,
    pub pieces: Option<Bitfield>,
    pub status_port: Option<u16>,
    /// Keep (or start) a [`Report`] for it.
    pub report: bool,
}

/// The swarm holds as many peers as it may; a newcomer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwarmFull;

/// One peer as the views see it.
#[derive(Debug)]
pub(crate) struct Member<'a> {
    pub addr: SocketAddr,
    pub seeder: bool,
    pub report: Option<&'a Report>,
}

/// One torrent's peers and counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Swarm {
    v4: Table<[u8; 6]>,
    v6: Table<[u8; 18]>,
    /// Details of the peers that have them, by address.
    reports: BTreeMap<SocketAddr, Report>,
    /// Completed downloads reported, all time.
    pub downloaded: u64,
    /// Payload bytes reported downloaded by peers with a report, all time.
    pub bytes_moved: u64,
    /// Peers with the [`SEEDER`] flag (scrape counts without a walk).
    seeders: u32,
    /// No peer was last seen before this (a lower bound): an announce scans the swarm for silent peers
    /// only when one of them may have timed out.
    oldest_seen: Option<Instant>,
    /// The last announce: once it is older than the timeout, every peer is.
    newest_seen: Option<Instant>,
}

/// The change of a peer's seeder flag, applied to the count.
fn count_seeders(seeders: &mut u32, was: bool, is: bool) {
    match (was, is) {
        (true, false) => *seeders = seeders.saturating_sub(1),
        (false, true) => *seeders += 1,
        _ => {}
    }
}

impl Swarm {
    /// Scrape numbers.
    pub fn stats(&self) -> ScrapeStats {
        let complete = u64::from(self.seeders);
        ScrapeStats {
            complete,
            incomplete: (self.len() as u64).saturating_sub(complete),
            downloaded: self.downloaded,
        }
    }

    /// Peers in the swarm.
    pub fn len(&self) -> usize {
        self.v4.records.len() + self.v6.records.len()
    }

    /// No peer, and no completed download to remember.
    pub fn is_forgettable(&self) -> bool {
        self.len() == 0 && self.downloaded == 0
    }

    /// Every peer, by address (IPv4 first, as `SocketAddr` sorts).
    pub fn members(&self) -> impl Iterator<Item = Member<'_>> {
        let v4 = self
            .v4
            .records
            .iter()
            .map(|r| (r.addr.to_socket_addr(), r.flags));
        let v6 = self
            .v6
            .records
            .iter()
            .map(|r| (r.addr.to_socket_addr(), r.flags));
        v4.chain(v6).map(|(addr, flags)| Member {
            addr,
            seeder: flags & SEEDER != 0,
            report: self.reports.get(&addr),
        })
    }

    /// Drop every peer not heard from within `timeout`; returns how many.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> usize {
        match self.oldest_seen {
            Some(oldest) if now.saturating_since(oldest) > timeout => {}
            _ => return 0,
        }
        let before = self.len();
        let everyone_silent = self
            .newest_seen
            .is_some_and(|newest| now.saturating_since(newest) > timeout);
        if everyone_silent {
            // Also what keeps every age under 2^32 ms: a swarm nobody announced to in that long is emptied
            // whole, and otherwise every peer was seen within the timeout of the last scan.
            self.v4.records.clear();
            self.v6.records.clear();
            self.v4.records.shrink_to_fit();
            self.v6.records.shrink_to_fit();
            self.reports.clear();
            self.seeders = 0;
            self.oldest_seen = None;
            return before;
        }
        let now_ms = stamp(now);
        let limit =
            u32::try_from(timeout.as_millis()).map_or(MAX_TIMEOUT_MS, |t| t.min(MAX_TIMEOUT_MS));
        let (seeders, reports) = (&mut self.seeders, &mut self.reports);
        let mut oldest_age = 0;
        let mut keep = |seen: u32, flags: u8, addr: &dyn Fn() -> SocketAddr| {
            let age = now_ms.wrapping_sub(seen);
            if age <= limit {
                oldest_age = oldest_age.max(age);
                return true;
            }
            count_seeders(seeders, flags & SEEDER != 0, false);
            reports.remove(&addr());
            false
        };
        self.v4
            .retain(|r| keep(r.seen, r.flags, &|| r.addr.to_socket_addr()));
        self.v6
            .retain(|r| keep(r.seen, r.flags, &|| r.addr.to_socket_addr()));
        // Stamps are whole milliseconds: one more keeps the bound below the true time.
        let back = u64::from(oldest_age) * 1000 + 1000;
        self.oldest_seen =
            (self.len() > 0).then(|| Instant::from_micros(now.as_micros().saturating_sub(back)));
        before - self.len()
    }

    /// Add the announcing peer or refresh it (and its report, whose downloaded bytes since its last
    /// announce add to [`Swarm::bytes_moved`]); a newcomer past `max_peers` is refused.
    pub fn join(&mut self, now: Instant, a: Arrival, max_peers: usize) -> Result<(), SwarmFull> {
        let seeder = a.left == 0;
        let completed = a.event == Event::Completed;
        let fresh = Record {
            addr: (),
            seen: stamp(now),
            id_tag: id_tag(&a.peer_id),
            flags: if seeder { SEEDER } else { 0 },
        };
        let room = self.len() < max_peers;
        let flags = match a.addr {
            SocketAddr::V4(v4) => upsert(&mut self.v4, compact_v4(&v4), fresh, completed, room),
            SocketAddr::V6(v6) => upsert(&mut self.v6, compact_v6(&v6), fresh, completed, room),
        }
        .ok_or(SwarmFull)?;
        count_seeders(&mut self.seeders, flags.was_seeder, seeder);
        if flags.newly_completed {
            self.downloaded = self.downloaded.saturating_add(1);
        }
        self.oldest_seen.get_or_insert(now);
        self.newest_seen = Some(now);
        if a.report || self.reports.contains_key(&a.addr) {
            let report = self
                .reports
                .entry(a.addr)
                .or_insert_with(|| Report::new(a.peer_id));
            report.peer_id = a.peer_id;
            report.left = a.left;
            report.pieces = a.pieces;
            report.status_port = a.status_port;
            let moved = report.update_counters(now, a.uploaded, a.downloaded);
            self.bytes_moved = self.bytes_moved.saturating_add(moved);
        }
        Ok(())
    }

    /// Take out a peer that stopped; its report counts its last bytes.
    pub fn leave(&mut self, now: Instant, addr: SocketAddr, uploaded: u64, downloaded: u64) {
        let flags = match addr {
            SocketAddr::V4(v4) => remove(&mut self.v4, &compact_v4(&v4)),
            SocketAddr::V6(v6) => remove(&mut self.v6, &compact_v6(&v6)),
        };
        if let Some(flags) = flags {
            count_seeders(&mut self.seeders, flags & SEEDER != 0, false);
        }
        if let Some(mut report) = self.reports.remove(&addr) {
            let moved = report.update_counters(now, uploaded, downloaded);
            self.bytes_moved = self.bytes_moved.saturating_add(moved);
        }
    }

    /// Up to `numwant` peers drawn at random, never the one at `me` nor any with `peer_id`'s tag, without
    /// copying the swarm: a partial Fisher-Yates shuffle over the indices of the others ([`Shuffle`]). Unless another peer has the requester's peer id (a client restarted on another
    /// port), it draws exactly as shuffling a copy of the others would, so the same RNG picks the same peers
    /// as the copy-and-shuffle it replaces (a test checks it); such a peer is skipped when drawn.
    pub fn sample(
        &self,
        me: SocketAddr,
        peer_id: &[u8; ID_LEN],
        numwant: usize,
        rng: &mut impl RngCore,
    ) -> Vec<PeerInfo> {
        let n4 = self.v4.records.len();
        let my_index = match me {
            SocketAddr::V4(v4) => self.v4.find(&compact_v4(&v4)).ok(),
            SocketAddr::V6(v6) => self.v6.find(&compact_v6(&v6)).ok().map(|i| n4 + i),
        };
        let others = self.len() - usize::from(my_index.is_some());
        let my_tag = id_tag(peer_id);
        let mut shuffle = Shuffle::new(others);
        let mut picked = Vec::with_capacity(numwant.min(others));
        let mut i = 0;
        while picked.len() < numwant && i < others {
            let j = i + uniform(rng, others - i);
            let at_j = shuffle.swap(i, j);
            i += 1;
            let index = match my_index {
                Some(mine) if at_j >= mine => at_j + 1,
                _ => at_j,
            };
            let (addr, tag) = match self.v4.records.get(index) {
                Some(r) => (r.addr.to_socket_addr(), r.id_tag),
                None => match self.v6.records.get(index - n4) {
                    Some(r) => (r.addr.to_socket_addr(), r.id_tag),
                    None => continue,
                },
            };
            if tag == my_tag {
                continue;
            }
            picked.push(PeerInfo {
                addr,
                peer_id: self.reports.get(&addr).map(|r| r.peer_id),
            });
        }
        picked
    }
}

/// The positions of a partial Fisher-Yates shuffle of `0..n`: a table of them for a swarm of up to
/// [`DENSE_SHUFFLE_MAX`] (4 bytes each, no tree to walk: measured 17% of the UDP tracker's time with a map
/// for every swarm), above it only the positions moved so far, so a draw costs O(numwant), not O(swarm).
enum Shuffle {
    Dense(Vec<u32>),
    Sparse(BTreeMap<usize, usize>),
}

/// Largest swarm whose shuffle keeps a table of every position (16 KiB).
const DENSE_SHUFFLE_MAX: usize = 4096;

impl Shuffle {
    fn new(n: usize) -> Shuffle {
        match u32::try_from(n) {
            Ok(n32) if n <= DENSE_SHUFFLE_MAX => Shuffle::Dense((0..n32).collect()),
            _ => Shuffle::Sparse(BTreeMap::new()),
        }
    }

    /// Swap positions `i <= j`; returns what is now at `i` (position `i` is never read again).
    fn swap(&mut self, i: usize, j: usize) -> usize {
        match self {
            Shuffle::Dense(table) => {
                table.swap(i, j);
                table[i] as usize
            }
            Shuffle::Sparse(moved) => {
                let at_j = moved.get(&j).copied().unwrap_or(j);
                let at_i = moved.get(&i).copied().unwrap_or(i);
                moved.insert(j, at_i);
                at_j
            }
        }
    }
}

/// How a peer's flags moved in [`upsert`].
struct FlagChange {
    was_seeder: bool,
    newly_completed: bool,
}

/// Refresh the record at `addr` or insert `fresh` there (when there is `room`); `None`: no room.
fn upsert<A: CompactAddr>(
    table: &mut Table<A>,
    addr: A,
    fresh: Record<()>,
    completed: bool,
    room: bool,
) -> Option<FlagChange> {
    match table.find(&addr) {
        Ok(pos) => {
            let r = &mut table.records[pos];
            let was_seeder = r.flags & SEEDER != 0;
            let newly_completed = completed && r.flags & COUNTED_COMPLETE == 0;
            let counted = if newly_completed {
                COUNTED_COMPLETE
            } else {
                r.flags & COUNTED_COMPLETE
            };
            r.seen = fresh.seen;
            r.id_tag = fresh.id_tag;
            r.flags = fresh.flags | counted;
            Some(FlagChange {
                was_seeder,
                newly_completed,
            })
        }
        Err(_) if !room => None,
        Err(pos) => {
            let counted = if completed { COUNTED_COMPLETE } else { 0 };
            table.insert(
                pos,
                Record {
                    addr,
                    seen: fresh.seen,
                    id_tag: fresh.id_tag,
                    flags: fresh.flags | counted,
                },
            );
            Some(FlagChange {
                was_seeder: false,
                newly_completed: completed,
            })
        }
    }
}

/// Take the record at `addr` out; returns its flags if it was there.
fn remove<A: CompactAddr>(table: &mut Table<A>, addr: &A) -> Option<u8> {
    let pos = table.find(addr).ok()?;
    Some(table.records.remove(pos).flags)
}

/// A uniform integer in `0..n` (`n > 0`), by rejection sampling.
fn uniform(rng: &mut impl RngCore, n: usize) -> usize {
    let n64 = n as u64;
    let limit = u64::MAX - u64::MAX % n64;
    loop {
        let x = rng.next_u64();
        if x < limit {
            return (x % n64) as usize;
        }
    }
}

/// The address a peer is kept under: the connection's IP (IPv4-mapped IPv6 made IPv4) and its port.
pub(crate) fn peer_addr(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.to_canonical(), port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn records_are_sixteen_bytes_for_ipv4_and_twenty_eight_for_ipv6() {
        assert_eq!(std::mem::size_of::<Record<[u8; 6]>>(), 16);
        assert_eq!(std::mem::size_of::<Record<[u8; 18]>>(), 28);
    }

    #[test]
    fn compact_addresses_sort_and_read_back_as_socket_addresses() {
        let addrs: Vec<SocketAddr> = [
            "10.0.0.2:1",
            "10.0.0.1:65535",
            "9.255.255.255:80",
            "10.0.0.1:2",
        ]
        .iter()
        .map(|s| s.parse().expect("addr"))
        .collect();
        let mut compact: Vec<[u8; 6]> = addrs
            .iter()
            .map(|a| match a {
                SocketAddr::V4(v4) => compact_v4(v4),
                SocketAddr::V6(_) => unreachable!("v4 only"),
            })
            .collect();
        compact.sort();
        let mut sorted = addrs.clone();
        sorted.sort();
        let back: Vec<SocketAddr> = compact.iter().map(|c| c.to_socket_addr()).collect();
        assert_eq!(back, sorted);
        let v6: SocketAddr = "[2001:db8::1]:6881".parse().expect("v6");
        let SocketAddr::V6(inner) = v6 else {
            unreachable!()
        };
        assert_eq!(compact_v6(&inner).to_socket_addr(), v6);
    }

    fn arrival(addr: &str, id: u32, left: u64) -> Arrival {
        let mut peer_id = [b'-'; ID_LEN];
        peer_id[..4].copy_from_slice(&id.to_be_bytes());
        Arrival {
            addr: addr.parse().expect("addr"),
            peer_id,
            left,
            uploaded: 0,
            downloaded: 0,
            event: Event::None,
            pieces: None,
            status_port: None,
            report: false,
        }
    }

    /// The copy-and-shuffle the sampling replaced: every other peer copied out, then a partial shuffle.
    fn copy_and_shuffle(
        swarm: &Swarm,
        me: SocketAddr,
        peer_id: &[u8; ID_LEN],
        numwant: usize,
        rng: &mut impl RngCore,
    ) -> Vec<SocketAddr> {
        let tag = id_tag(peer_id);
        let tags: BTreeMap<SocketAddr, u32> = swarm
            .v4
            .records
            .iter()
            .map(|r| (r.addr.to_socket_addr(), r.id_tag))
            .chain(
                swarm
                    .v6
                    .records
                    .iter()
                    .map(|r| (r.addr.to_socket_addr(), r.id_tag)),
            )
            .collect();
        let mut candidates: Vec<SocketAddr> = tags
            .iter()
            .filter(|(a, t)| **a != me && **t != tag)
            .map(|(a, _)| *a)
            .collect();
        let k = numwant.min(candidates.len());
        for i in 0..k {
            let j = i + uniform(rng, candidates.len() - i);
            candidates.swap(i, j);
        }
        candidates.truncate(k);
        candidates
    }

    /// A swarm of `n` peers, one in seven over IPv6.
    fn swarm_of(n: u32) -> Swarm {
        let mut swarm = Swarm::default();
        let now = Instant::from_micros(0);
        for i in 0..n {
            let addr = if i % 7 == 0 {
                format!("[2001:db8::{i:x}]:{}", 1000 + i % 60_000)
            } else {
                format!(
                    "10.{}.{}.{}:{}",
                    i / 60_000,
                    (i / 200) % 250,
                    i % 200,
                    6881 + i % 3
                )
            };
            swarm
                .join(now, arrival(&addr, i, 5), 100_000)
                .expect("room");
        }
        swarm
    }

    #[test]
    fn sampling_by_index_picks_what_shuffling_a_copy_picked() {
        // 300 peers: a table of positions; 6,000: only the moved ones.
        for (n, requesters) in [
            (
                300,
                [
                    "10.0.0.1:6882",
                    "10.0.1.50:6881",
                    "[2001:db8::7]:1007",
                    "10.9.9.9:1",
                ],
            ),
            (
                6000,
                [
                    "10.0.0.1:6882",
                    "10.0.20.50:6881",
                    "[2001:db8::7]:1007",
                    "10.9.9.9:1",
                ],
            ),
        ] {
            let swarm = swarm_of(n);
            assert_eq!(swarm.len(), n as usize);
            for me in requesters {
                let me: SocketAddr = me.parse().expect("me");
                for (seed, numwant) in [(0, 50), (1, 200), (2, 10), (3, 0), (4, 100_000)] {
                    let id = [3; ID_LEN]; // nobody else's
                    let mut a = ChaCha8Rng::seed_from_u64(seed);
                    let mut b = ChaCha8Rng::seed_from_u64(seed);
                    let sampled: Vec<SocketAddr> = swarm
                        .sample(me, &id, numwant, &mut a)
                        .iter()
                        .map(|p| p.addr)
                        .collect();
                    let copied = copy_and_shuffle(&swarm, me, &id, numwant, &mut b);
                    assert_eq!(sampled, copied, "{n} peers, {me}, numwant {numwant}");
                    assert!(!sampled.contains(&me));
                }
            }
        }
    }

    #[test]
    fn a_peer_with_the_requesters_id_is_never_handed_out() {
        let mut swarm = Swarm::default();
        let now = Instant::from_micros(0);
        for port in 1..=20 {
            swarm
                .join(now, arrival(&format!("10.0.0.1:{port}"), 9, 5), 100)
                .expect("room");
        }
        swarm
            .join(now, arrival("10.0.0.2:1", 2, 5), 100)
            .expect("room");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mine = arrival("10.0.0.1:1", 9, 5).peer_id;
        let got = swarm.sample("10.0.0.1:1".parse().expect("me"), &mine, 50, &mut rng);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].addr, "10.0.0.2:1".parse::<SocketAddr>().expect("a"));
        assert_eq!(got[0].peer_id, None, "no report, no peer id");
    }

    #[test]
    fn ages_survive_the_stamp_wrapping_around() {
        let timeout = Duration::from_secs(10);
        let wrap = 1u64 << 32; // ms
        let at = |ms: u64| Instant::from_micros(ms * 1000);
        let mut swarm = Swarm::default();
        swarm
            .join(at(wrap - 4_000), arrival("10.0.0.1:1", 1, 5), 10)
            .expect("room");
        swarm
            .join(at(wrap + 3_000), arrival("10.0.0.2:1", 2, 5), 10)
            .expect("room");
        assert_eq!(
            swarm.expire(at(wrap + 6_000), timeout),
            0,
            "10 s old, not older"
        );
        assert_eq!(swarm.expire(at(wrap + 6_001), timeout), 1);
        assert_eq!(swarm.len(), 1);
        // Long silence: everyone goes, whatever the stamps say after wrapping.
        assert_eq!(swarm.expire(at(2 * wrap + 3_000), timeout), 1);
        assert_eq!(swarm.len(), 0);
    }
}
