//! The routing table: one k-bucket per shared-prefix length with our own id (160 of them), each holding up to
//! `k` contacts and a short list of replacements.
//!
//! Bad-node policy (BEP 5): a contact is *good* while it has answered within [`QUESTIONABLE_AFTER`];
//! after that it is *questionable*; a contact that failed to answer `max_failures` queries in a row is *bad*
//! and is evicted at once, its place taken by the freshest replacement. A newcomer for a full bucket waits in
//! the replacements, and the table asks the caller to ping the bucket's stalest questionable contact, whose
//! silence then makes room.

use super::id::{Distance, NodeId, ID_BITS};
use super::krpc::NodeInfo;
use crate::time::Instant;
use std::collections::VecDeque;
use std::time::Duration;

/// A contact that has not been heard from for this long is questionable (BEP 5: 15 minutes).
pub const QUESTIONABLE_AFTER: Duration = Duration::from_secs(15 * 60);

/// One known node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Its id and address.
    pub info: NodeInfo,
    /// When it last answered us or queried us.
    pub last_seen: Instant,
    /// Queries to it that went unanswered in a row.
    pub failures: u32,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    contacts: Vec<Contact>,
    replacements: VecDeque<NodeInfo>,
    last_changed: Instant,
}

/// What the table did with a node heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Already known: its last-seen time was updated.
    Refreshed,
    /// Added to its bucket.
    Added,
    /// Its bucket is full: kept as a replacement; `ping` is the stale contact to check, if there is one.
    Waiting {
        /// A questionable contact of that bucket to ping.
        ping: Option<NodeInfo>,
    },
    /// Our own id, or a known id at a different address: ignored.
    Ignored,
}

/// The k-bucket routing table of one node.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    k: usize,
    max_failures: u32,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table for the node `own`, with buckets of `k` and eviction after `max_failures` timeouts.
    pub fn new(own: NodeId, k: usize, max_failures: u32) -> RoutingTable {
        RoutingTable {
            own,
            k,
            max_failures: max_failures.max(1),
            buckets: vec![Bucket::default(); ID_BITS],
        }
    }

    fn bucket_of(&self, id: &NodeId) -> Option<usize> {
        let i = self.own.common_prefix_len(id);
        (i < ID_BITS).then_some(i)
    }

    /// Record that `info` answered or queried us at `now`.
    pub fn heard_from(&mut self, now: Instant, info: NodeInfo) -> Heard {
        let Some(b) = self.bucket_of(&info.id) else {
            return Heard::Ignored;
        };
        let k = self.k;
        let Some(bucket) = self.buckets.get_mut(b) else {
            return Heard::Ignored;
        };
        if let Some(c) = bucket.contacts.iter_mut().find(|c| c.info.id == info.id) {
            if c.info.addr != info.addr {
                return Heard::Ignored;
            }
            c.last_seen = now;
            c.failures = 0;
            return Heard::Refreshed;
        }
        if bucket.contacts.len() < k {
            bucket.contacts.push(Contact {
                info,
                last_seen: now,
                failures: 0,
            });
            bucket.last_changed = now;
            return Heard::Added;
        }
        bucket.replacements.retain(|r| r.id != info.id);
        if bucket.replacements.len() == k {
            bucket.replacements.pop_front();
        }
        bucket.replacements.push_back(info);
        let ping = bucket
            .contacts
            .iter()
            .filter(|c| now.saturating_since(c.last_seen) >= QUESTIONABLE_AFTER)
            .min_by_key(|c| c.last_seen)
            .map(|c| c.info);
        Heard::Waiting { ping }
    }

    /// Record that a query to `id` went unanswered. Returns the contact if that made it bad and it was
    /// evicted (a replacement, if any, takes its place).
    pub fn failed(&mut self, id: &NodeId) -> Option<NodeInfo> {
        let max_failures = self.max_failures;
        let index = self.bucket_of(id)?;
        let bucket = self.buckets.get_mut(index)?;
        if let Some(pos) = bucket.replacements.iter().position(|r| r.id == *id) {
            bucket.replacements.remove(pos);
            return None;
        }
        let pos = bucket.contacts.iter().position(|c| c.info.id == *id)?;
        let contact = bucket.contacts.get_mut(pos)?;
        contact.failures += 1;
        if contact.failures < max_failures {
            return None;
        }
        let evicted = bucket.contacts.remove(pos);
        if let Some(next) = bucket.replacements.pop_back() {
            // Promoted without a fresh answer: it starts questionable-old so a later check can drop it.
            bucket.contacts.push(Contact {
                info: next,
                last_seen: evicted.last_seen,
                failures: 0,
            });
        }
        Some(evicted.info)
    }

    /// Up to `n` contacts closest to `target`, closest first (contacts with failures come after the others
    /// at the same distance rank only by distance: the caller sees them and may skip them).
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<NodeInfo> {
        let mut all: Vec<(Distance, NodeInfo)> = self
            .buckets
            .iter()
            .flat_map(|b| b.contacts.iter())
            .filter(|c| c.failures == 0)
            .map(|c| (c.info.id.distance(target), c.info))
            .collect();
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().take(n).map(|(_, i)| i).collect()
    }

    /// Every contact, bucket by bucket.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flat_map(|b| b.contacts.iter())
    }

    /// Number of contacts.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.contacts.len()).sum()
    }

    /// Whether the table has no contact.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indices (shared-prefix lengths) of non-empty buckets that have not changed for `idle`, and the
    /// deepest bucket in use, which a lookup of our own id keeps fresh.
    pub fn stale_buckets(&self, now: Instant, idle: Duration) -> Vec<usize> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.contacts.is_empty())
            .filter(|(_, b)| now.saturating_since(b.last_changed) >= idle)
            .map(|(i, _)| i)
            .collect()
    }

    /// Mark bucket `index` as just refreshed.
    pub fn touch_bucket(&mut self, index: usize, now: Instant) {
        if let Some(b) = self.buckets.get_mut(index) {
            b.last_changed = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(first: u8, last: u8) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = first;
        id[19] = last;
        NodeInfo {
            id: NodeId(id),
            addr: std::net::SocketAddr::from(([10, 0, first, last], 6881)),
        }
    }

    #[test]
    fn full_bucket_keeps_replacements_and_asks_for_a_ping_of_a_stale_contact() {
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, 2, 2);
        let t0 = Instant::ZERO;
        // All in bucket 0 (first bit differs from ours).
        assert_eq!(t.heard_from(t0, node(0x80, 1)), Heard::Added);
        assert_eq!(t.heard_from(t0, node(0x80, 2)), Heard::Added);
        assert_eq!(t.heard_from(t0, node(0x80, 1)), Heard::Refreshed);
        assert_eq!(
            t.heard_from(t0, node(0x80, 3)),
            Heard::Waiting { ping: None },
            "both contacts are fresh"
        );
        let later = t0 + QUESTIONABLE_AFTER;
        assert_eq!(
            t.heard_from(later, node(0x80, 4)),
            Heard::Waiting {
                ping: Some(node(0x80, 1))
            }
        );
        // Node 1 fails twice: evicted, and the freshest replacement (4) takes its place.
        assert_eq!(t.failed(&node(0x80, 1).id), None);
        assert_eq!(t.failed(&node(0x80, 1).id), Some(node(0x80, 1)));
        let ids: Vec<_> = t.contacts().map(|c| c.info).collect();
        assert_eq!(ids, vec![node(0x80, 2), node(0x80, 4)]);
        assert_eq!(
            t.heard_from(
                t0,
                NodeInfo {
                    id: own,
                    ..node(1, 1)
                }
            ),
            Heard::Ignored
        );
        let moved = NodeInfo {
            addr: "9.9.9.9:1".parse().unwrap(),
            ..node(0x80, 2)
        };
        assert_eq!(t.heard_from(t0, moved), Heard::Ignored, "id moved address");
    }

    #[test]
    fn closest_orders_by_xor_distance() {
        let mut t = RoutingTable::new(NodeId([0; 20]), 8, 2);
        for (f, l) in [(0x80, 1), (0x40, 1), (0x01, 1), (0x01, 2), (0xff, 0)] {
            t.heard_from(Instant::ZERO, node(f, l));
        }
        let target = node(0x01, 3).id;
        assert_eq!(
            t.closest(&target, 3),
            vec![node(0x01, 2), node(0x01, 1), node(0x40, 1)]
        );
        assert_eq!(t.len(), 5);
        t.failed(&node(0x01, 2).id);
        assert_eq!(
            t.closest(&target, 1),
            vec![node(0x01, 1)],
            "a contact that failed is skipped"
        );
    }
}
