//! Every connection's next timer deadline, kept in order of time, so that [`super::Node::poll_timeout`] (asked
//! after every input) reads the earliest instead of walking every connection's timer table: in a thousand-peer
//! swarm that walk was a tenth of the node's time.
//!
//! The deadline of a connection is a function of its phase, `opened`, `last_recv` and `last_sent`
//! ([`super::conn::Conn::timers`]), and the timer table stays its one source. The index keeps, for every
//! connection, an instant *at or before* its deadline: most changes (a byte received or sent) only push a
//! deadline later, and updating the index for each of them cost as much as the walk it replaces. So:
//! - code that may move a deadline *earlier* (a connection added or opened, a time set from a driver's clock
//!   that went back) marks the connection ([`ConnDeadlines::mark`]), and the end of every node call
//!   ([`ConnDeadlines::refresh`]) lowers the marked entries that are now too late;
//! - the same refresh then works the first entry out again until it is exact. Every other entry is at or
//!   before its own deadline, so an exact first entry is the earliest deadline of all.
//!
//! The HAVE timer ([`super::NodeConfig::have_delay`]) is kept apart: it is armed for every connection at
//! almost every verified piece and disarmed by the next write, a few milliseconds later, so as an entry of the
//! ordered index it cost two moves per connection per piece (6% of a thousand-peer crowd's CPU). Every HAVE
//! timer is armed for the call's time plus the same delay, so in order of arming is (nearly always) in order of
//! time: a queue, O(1) each. An entry of the queue holds while the connection's `haves_due` is still that
//! instant; the refresh drops stale entries from its front, so the front is exact too.

use super::conn::Conn;
use super::{ConnId, NodeConfig};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The index of connections' next deadlines.
#[derive(Debug, Default)]
pub(crate) struct ConnDeadlines {
    /// Each indexed connection's entry for its timers but the HAVE timer: at or before its deadline, and
    /// exact for the first in `by_time`.
    at: BTreeMap<ConnId, Instant>,
    by_time: BTreeSet<(Instant, ConnId)>,
    /// Connections whose deadline may have moved earlier since the last refresh (repeats allowed).
    marked: Vec<ConnId>,
    /// Armed HAVE timers in order of time, stale ones among them (see the module's doc).
    haves: VecDeque<(Instant, ConnId)>,
}

impl ConnDeadlines {
    /// Connection `id` was added or opened, or one of its times may have gone back.
    pub fn mark(&mut self, id: ConnId) {
        self.marked.push(id);
    }

    /// Connection `id`'s HAVE timer was armed for `at` (its `haves_due`).
    pub fn haves_due(&mut self, id: ConnId, at: Instant) {
        if self.haves.back().is_none_or(|(last, _)| *last <= at) {
            self.haves.push_back((at, id));
        } else {
            // Armed from a clock that went back: in its place.
            let i = self.haves.partition_point(|(t, _)| *t <= at);
            self.haves.insert(i, (at, id));
        }
    }

    /// Bring the index up to date with `conns`: marked entries lowered where needed, then the first entry
    /// made exact (a connection no longer in `conns` leaves the index when its entry comes first), and the
    /// HAVE timers' stale entries dropped from the front.
    pub fn refresh(&mut self, conns: &BTreeMap<ConnId, Conn>, config: &NodeConfig) {
        for id in std::mem::take(&mut self.marked) {
            let Some(next) = conns
                .get(&id)
                .and_then(|c| c.next_deadline_but_haves(config))
            else {
                continue;
            };
            if self.at.get(&id).is_none_or(|old| next < *old) {
                self.set(id, Some(next));
            }
        }
        while let Some(&(first, id)) = self.by_time.first() {
            let next = conns
                .get(&id)
                .and_then(|c| c.next_deadline_but_haves(config));
            if next == Some(first) {
                break;
            }
            self.set(id, next);
        }
        while let Some(&(at, id)) = self.haves.front() {
            if conns.get(&id).is_some_and(|c| c.haves_due == Some(at)) {
                break;
            }
            self.haves.pop_front();
        }
    }

    fn set(&mut self, id: ConnId, next: Option<Instant>) {
        let old = match next {
            Some(at) => self.at.insert(id, at),
            None => self.at.remove(&id),
        };
        if let Some(old) = old {
            self.by_time.remove(&(old, id));
        }
        if let Some(at) = next {
            self.by_time.insert((at, id));
        }
    }

    /// The earliest deadline of any connection, as of the last refresh.
    pub fn earliest(&self) -> Option<Instant> {
        let timers = self.by_time.first().map(|(at, _)| *at);
        let haves = self.haves.front().map(|(at, _)| *at);
        timers.into_iter().chain(haves).min()
    }

    /// Connections whose entry is at or before `now` (a superset of those with a timer due), in id order.
    pub fn due(&self, now: Instant) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self
            .by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .chain(
                self.haves
                    .iter()
                    .take_while(|(at, _)| *at <= now)
                    .map(|(_, id)| *id),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::conn::ConnPhase;
    use std::net::SocketAddr;

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    #[test]
    fn the_first_entry_is_always_the_earliest_deadline() {
        let config = NodeConfig::default();
        let hs = config.handshake_timeout;
        let addr = SocketAddr::from(([10, 0, 0, 2], 6881));
        let mut conns = BTreeMap::new();
        conns.insert(1, Conn::new(addr, true, None, at(0)));
        conns.insert(2, Conn::new(addr, true, None, at(5)));
        let mut index = ConnDeadlines::default();
        index.mark(2);
        index.mark(1);
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), Some(at(0) + hs));
        assert_eq!(index.due(at(0) + hs), vec![1]);
        assert_eq!(index.due(at(5) + hs), vec![1, 2]);

        // Connection 1 opens and hears from its peer: its deadline moves later. The index finds out when its
        // entry comes first, at the next refresh, marked or not.
        let c = conns.get_mut(&1).unwrap();
        c.phase = ConnPhase::Open;
        c.last_recv = at(100);
        c.last_sent = at(100);
        assert_eq!(index.earliest(), Some(at(0) + hs));
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), Some(at(5) + hs));
        assert_eq!(index.due(at(5) + hs), vec![2]);

        // A connection removed leaves the index.
        conns.remove(&2);
        index.refresh(&conns, &config);
        let open = conns[&1].next_deadline(&config);
        assert!(open > Some(at(100)));
        assert_eq!(index.earliest(), open);
        assert!(index.due(at(99)).is_empty());

        // A deadline that moves earlier (a driver's clock went back) is taken when marked.
        let c = conns.get_mut(&1).unwrap();
        c.last_recv = at(50);
        c.last_sent = at(50);
        index.mark(1);
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), conns[&1].next_deadline(&config));
        assert!(index.earliest() < open);
    }

    /// HAVE timers: the earliest while armed, out of the way once disarmed (whenever they were armed), and a
    /// timer armed from a clock that went back takes its place in order.
    #[test]
    fn have_timers_are_exact_while_armed_and_leave_when_disarmed() {
        let config = NodeConfig::default();
        let addr = SocketAddr::from(([10, 0, 0, 2], 6881));
        let mut conns = BTreeMap::new();
        for id in [1, 2] {
            let mut c = Conn::new(addr, true, None, at(0));
            c.phase = ConnPhase::Open;
            conns.insert(id, c);
        }
        let mut index = ConnDeadlines::default();
        index.mark(1);
        index.mark(2);
        index.refresh(&conns, &config);
        let base = conns[&1].next_deadline(&config);
        assert_eq!(index.earliest(), base);

        let arm = |conns: &mut BTreeMap<ConnId, Conn>, index: &mut ConnDeadlines, id, when| {
            conns.get_mut(&id).unwrap().haves_due = Some(when);
            index.haves_due(id, when);
        };
        arm(&mut conns, &mut index, 1, at(3));
        arm(&mut conns, &mut index, 2, at(2));
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), Some(at(2)));
        assert_eq!(index.due(at(2)), vec![2]);
        assert_eq!(index.due(at(3)), vec![1, 2]);

        // Connection 2's HAVEs leave with another message: its timer is stale, the next one comes first.
        conns.get_mut(&2).unwrap().haves_due = None;
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), Some(at(3)));
        conns.get_mut(&1).unwrap().haves_due = None;
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), base);
        assert!(index.due(at(10)).is_empty());

        // Armed again, once from a clock behind the last arming; a connection armed twice is due once.
        arm(&mut conns, &mut index, 1, at(20));
        arm(&mut conns, &mut index, 2, at(15));
        index.haves_due(1, at(20));
        index.refresh(&conns, &config);
        assert_eq!(index.earliest(), Some(at(15)));
        assert_eq!(index.due(at(20)), vec![1, 2]);
    }
}
