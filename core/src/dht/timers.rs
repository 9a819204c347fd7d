//! The DHT node's timer table: every deadline it keeps, in one ordered set read by both `poll_timeout` and
//! `handle_timeout`, so that a deadline cannot be forgotten by one and honoured by the other.

use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// Deadlines keyed by `K`; each key has at most one deadline.
#[derive(Debug, Clone)]
pub struct TimerTable<K: Ord + Copy> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: BTreeMap<K, Instant>,
}

impl<K: Ord + Copy> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            by_time: BTreeSet::new(),
            by_key: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    /// Set (or move) the deadline of `key`.
    pub fn set(&mut self, key: K, at: Instant) {
        self.cancel(key);
        self.by_time.insert((at, key));
        self.by_key.insert(key, at);
    }

    /// Remove the deadline of `key`, if any.
    pub fn cancel(&mut self, key: K) {
        if let Some(at) = self.by_key.remove(&key) {
            self.by_time.remove(&(at, key));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Remove and return one key whose deadline is at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, key) = *self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.remove(&(at, key));
        self.by_key.remove(&key);
        Some(key)
    }

    /// Number of deadlines set.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no deadline is set.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_pop_in_order_and_can_move() {
        let mut t = TimerTable::default();
        let at = Instant::from_micros;
        t.set('a', at(30));
        t.set('b', at(10));
        t.set('c', at(20));
        t.set('a', at(5));
        t.cancel('c');
        assert_eq!(t.next(), Some(at(5)));
        assert_eq!(t.pop_due(at(4)), None);
        assert_eq!(t.pop_due(at(10)), Some('a'));
        assert_eq!(t.pop_due(at(10)), Some('b'));
        assert_eq!(t.pop_due(at(99)), None);
        assert!(t.is_empty());
    }
}
