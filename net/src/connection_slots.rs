//! Who holds a server's connection slots, and who gives way when they run out.
//!
//! A pure policy (plain data in, a decision out): the accept loop asks [`ConnectionSlots::admit`] for
//! every accepted connection, which always admits the newcomer and names the connections that must be
//! closed to make room — the oldest one of the same address when that address holds its cap, else the
//! oldest one of all when every slot is taken. A connection that is still there long after it came is
//! the slowest one (a real request is answered in milliseconds), so a flood of half-sent requests can
//! never keep a newcomer out; at worst the flood evicts itself. A keep-alive connection waiting for its
//! next request is the cheapest to lose (its client reconnects), so [`ConnectionSlots::admit_preferring`]
//! evicts idle connections, oldest first, before busy ones. A busy connection younger than
//! [`SlotLimits::busy_grace`] is not evicted for a newcomer: when every slot holds one, the newcomer is
//! refused instead. Evicting those threw the work of requests in progress away: under a sustained load
//! (1,000 peers announcing every 5 s at a tracker of 8 connections, issue 13) every newcomer cut a request
//! short, the tracker served fewer than it could, and the median download waited 61 s against 46 s.

use enjambre_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// How many connections a server keeps at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Most connections in all.
    pub max_total: usize,
    /// Most connections from one address.
    pub max_per_address: usize,
    /// How long a busy connection is safe from eviction for a newcomer when every slot is taken: about one
    /// exchange of a client nearby (a slow one is cut off by the request deadline, or evicted past this).
    pub busy_grace: Duration,
}

impl Default for SlotLimits {
    /// 4,096 connections, 64 per address, busy ones safe for 50 ms.
    fn default() -> Self {
        SlotLimits {
            max_total: 4096,
            max_per_address: 64,
            busy_grace: Duration::from_millis(50),
        }
    }
}

/// Identifies one admitted connection; later connections have larger ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(u64);

/// The table of live connections, each with a handle `H` the caller uses to close it (e.g. an abort
/// handle of its task).
#[derive(Debug)]
pub struct ConnectionSlots<H> {
    limits: SlotLimits,
    next: u64,
    /// Live connections by age (oldest first), with their handle once attached.
    live: BTreeMap<SlotId, Live<H>>,
    /// Live connections of each address, by age.
    by_address: BTreeMap<IpAddr, BTreeSet<SlotId>>,
}

/// One live connection.
#[derive(Debug)]
struct Live<H> {
    ip: IpAddr,
    /// When it was admitted.
    since: Instant,
    handle: Option<H>,
}

impl<H> ConnectionSlots<H> {
    /// An empty table; limits below 1 count as 1.
    pub fn new(limits: SlotLimits) -> Self {
        ConnectionSlots {
            limits: SlotLimits {
                max_total: limits.max_total.max(1),
                max_per_address: limits.max_per_address.max(1),
                busy_grace: limits.busy_grace,
            },
            next: 0,
            live: BTreeMap::new(),
            by_address: BTreeMap::new(),
        }
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// No live connection.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Live connections from `ip`.
    pub fn from_address(&self, ip: IpAddr) -> usize {
        self.by_address.get(&ip).map_or(0, BTreeSet::len)
    }

    /// Reserve a slot for a new connection from `ip` arriving at `now` (its handle follows with
    /// [`Self::attach`]). Returns its id and the handles of the connections evicted to make room, which the
    /// caller must close; `None` when every slot holds a connection younger than
    /// [`SlotLimits::busy_grace`]: the caller closes the newcomer.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Option<(SlotId, Vec<H>)> {
        self.admit_preferring(ip, now, |_| false)
    }

    /// Like [`Self::admit`], but the connections whose handle `is_idle` (e.g. keep-alive connections
    /// between requests) give way first, oldest first, whatever their age; busy ones only when no idle one
    /// is left, and only past [`SlotLimits::busy_grace`].
    pub fn admit_preferring(
        &mut self,
        ip: IpAddr,
        now: Instant,
        is_idle: impl Fn(&H) -> bool,
    ) -> Option<(SlotId, Vec<H>)> {
        let idle = |live: &BTreeMap<SlotId, Live<H>>, id: &SlotId| {
            live.get(id)
                .and_then(|l| l.handle.as_ref())
                .is_some_and(&is_idle)
        };
        let mut evicted = Vec::new();
        let victim_of_address = self
            .by_address
            .get(&ip)
            .filter(|ids| ids.len() >= self.limits.max_per_address)
            .and_then(|ids| {
                ids.iter()
                    .find(|id| idle(&self.live, id))
                    .or_else(|| ids.first())
                    .copied()
            });
        if victim_of_address.is_none() && self.live.len() >= self.limits.max_total {
            let grace = self.limits.busy_grace;
            let any_idle = self.live.keys().any(|id| idle(&self.live, id));
            let oldest_past_grace = self
                .live
                .values()
                .next()
                .is_some_and(|l| now.saturating_since(l.since) >= grace);
            if !any_idle && !oldest_past_grace {
                return None;
            }
        }
        if let Some(id) = victim_of_address {
            evicted.extend(self.release(id));
        }
        while self.live.len() >= self.limits.max_total {
            let victim = self
                .live
                .keys()
                .find(|id| idle(&self.live, id))
                .or_else(|| self.live.keys().next())
                .copied();
            let Some(id) = victim else {
                break;
            };
            evicted.extend(self.release(id));
        }
        let id = SlotId(self.next);
        self.next += 1;
        self.by_address.entry(ip).or_default().insert(id);
        self.live.insert(
            id,
            Live {
                ip,
                since: now,
                handle: None,
            },
        );
        Some((id, evicted))
    }

    /// Give the connection admitted as `id` its handle. A connection released in between is not brought
    /// back.
    pub fn attach(&mut self, id: SlotId, handle: H) {
        if let Some(live) = self.live.get_mut(&id) {
            live.handle = Some(handle);
        }
    }

    /// Free the slot of a connection that ended (or is being evicted); returns its handle if it was live
    /// and had one.
    pub fn release(&mut self, id: SlotId) -> Option<H> {
        let Live { ip, handle, .. } = self.live.remove(&id)?;
        if let Some(ids) = self.by_address.get_mut(&ip) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(&ip);
            }
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// Admit and attach a connection whose handle is `name`; returns its id and the evicted names.
    fn connect(
        slots: &mut ConnectionSlots<&'static str>,
        from: IpAddr,
        name: &'static str,
    ) -> (SlotId, Vec<&'static str>) {
        let (id, evicted) = slots.admit(from, Instant::ZERO).expect("admitted");
        slots.attach(id, name);
        (id, evicted)
    }

    #[test]
    fn the_oldest_connection_gives_way_when_every_slot_is_taken() {
        let mut slots = ConnectionSlots::new(SlotLimits {
            max_total: 3,
            max_per_address: 10,
            busy_grace: Duration::ZERO,
        });
        assert!(connect(&mut slots, ip(1), "a").1.is_empty());
        let (b, _) = connect(&mut slots, ip(2), "b");
        assert!(connect(&mut slots, ip(3), "c").1.is_empty());
        assert_eq!(connect(&mut slots, ip(4), "d").1, vec!["a"]);
        assert_eq!(slots.release(b), Some("b"));
        assert_eq!(slots.release(b), None, "released once");
        assert!(
            connect(&mut slots, ip(5), "e").1.is_empty(),
            "b's slot was free"
        );
        assert_eq!(connect(&mut slots, ip(6), "f").1, vec!["c"]);
        assert_eq!(slots.len(), 3);
    }

    #[test]
    fn idle_connections_give_way_before_busy_ones() {
        let mut slots = ConnectionSlots::new(SlotLimits {
            max_total: 3,
            max_per_address: 2,
            busy_grace: Duration::ZERO,
        });
        let idle = |name: &&str| name.starts_with("idle");
        for (from, name) in [(ip(1), "busy-a"), (ip(2), "idle-b"), (ip(3), "idle-c")] {
            assert!(connect(&mut slots, from, name).1.is_empty());
        }
        let (d, evicted) = slots
            .admit_preferring(ip(4), Instant::ZERO, idle)
            .expect("admitted");
        assert_eq!(
            evicted,
            vec!["idle-b"],
            "the oldest idle one, not the oldest"
        );
        slots.attach(d, "busy-d");
        assert_eq!(
            slots
                .admit_preferring(ip(5), Instant::ZERO, idle)
                .expect("admitted")
                .1,
            vec!["idle-c"]
        );
        assert_eq!(
            slots
                .admit_preferring(ip(6), Instant::ZERO, idle)
                .expect("admitted")
                .1,
            vec!["busy-a"],
            "no idle one left: the oldest"
        );

        let mut slots = ConnectionSlots::new(SlotLimits {
            max_total: 100,
            max_per_address: 2,
            busy_grace: Duration::ZERO,
        });
        for name in ["busy-1", "idle-2"] {
            let (id, _) = slots
                .admit_preferring(ip(1), Instant::ZERO, idle)
                .expect("admitted");
            slots.attach(id, name);
        }
        assert_eq!(
            slots
                .admit_preferring(ip(1), Instant::ZERO, idle)
                .expect("admitted")
                .1,
            vec!["idle-2"],
            "an address at its cap loses its own idle one first"
        );
    }

    #[test]
    fn an_address_at_its_cap_loses_its_own_oldest_connection() {
        let mut slots = ConnectionSlots::new(SlotLimits {
            max_total: 100,
            max_per_address: 2,
            busy_grace: Duration::ZERO,
        });
        connect(&mut slots, ip(1), "a1");
        connect(&mut slots, ip(2), "b1");
        connect(&mut slots, ip(1), "a2");
        assert_eq!(connect(&mut slots, ip(1), "a3").1, vec!["a1"]);
        assert_eq!(connect(&mut slots, ip(1), "a4").1, vec!["a2"]);
        assert_eq!(slots.from_address(ip(1)), 2);
        assert_eq!(slots.from_address(ip(2)), 1, "another address is untouched");
        assert_eq!(slots.len(), 3);
    }

    #[test]
    fn a_newcomer_is_refused_while_every_slot_holds_a_young_busy_connection() {
        let mut slots = ConnectionSlots::new(SlotLimits {
            max_total: 2,
            max_per_address: 10,
            busy_grace: Duration::from_millis(50),
        });
        let ms = |n: u64| Instant::from_micros(n * 1000);
        let (a, _) = slots.admit(ip(1), ms(0)).expect("a free slot");
        slots.attach(a, "a");
        let (b, _) = slots.admit(ip(2), ms(30)).expect("a free slot");
        slots.attach(b, "b");
        assert!(slots.admit(ip(3), ms(49)).is_none(), "a is 49 ms old: kept");
        assert_eq!(slots.len(), 2, "the refused one took no slot");
        let (c, evicted) = slots.admit(ip(3), ms(50)).expect("a is past its grace");
        assert_eq!(evicted, vec!["a"]);
        slots.attach(c, "idle-c");
        // An idle connection gives way at any age; an address at its cap loses its own oldest at any age.
        let idle = |name: &&str| name.starts_with("idle");
        let (_, evicted) = slots
            .admit_preferring(ip(4), ms(51), idle)
            .expect("c is idle");
        assert_eq!(evicted, vec!["idle-c"]);
        let mut own = ConnectionSlots::new(SlotLimits {
            max_total: 2,
            max_per_address: 1,
            busy_grace: Duration::from_secs(1),
        });
        let (x, _) = own.admit(ip(1), ms(0)).expect("free");
        own.attach(x, "x");
        let (y, _) = own.admit(ip(2), ms(0)).expect("free");
        own.attach(y, "y");
        assert_eq!(own.admit(ip(1), ms(1)).expect("its own slot").1, vec!["x"]);
    }

    #[test]
    fn a_connection_released_before_its_handle_arrives_stays_released() {
        let mut slots = ConnectionSlots::new(SlotLimits {
            max_total: 1,
            max_per_address: 1,
            busy_grace: Duration::ZERO,
        });
        let (first, _) = slots.admit(ip(1), Instant::ZERO).expect("admitted");
        // A second one from the same address evicts the first before it got its handle.
        let (second, evicted) = slots.admit(ip(1), Instant::ZERO).expect("admitted");
        assert!(evicted.is_empty(), "no handle yet to close");
        slots.attach(first, "first");
        slots.attach(second, "second");
        assert_eq!(slots.len(), 1);
        assert_eq!(slots.release(second), Some("second"));
        assert!(slots.is_empty());
        assert_eq!(slots.from_address(ip(1)), 0);
    }
}
