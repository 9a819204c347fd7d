//! Choking: which interested peers we upload to.
//!
//! A fixed number of slots: all but one go to the peers with the best rate (download rate from them while we
//! leech — tit-for-tat — or upload rate to them once we seed), the last is an optimistic unchoke that rotates
//! round-robin through the other interested peers so every newcomer gets a chance. Snubbed peers (sent us
//! nothing for a long time while unchoked) lose their regular slot.

use crate::ConnId;
use std::collections::BTreeSet;

/// What the choker needs to know about one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChokeCandidate {
    /// The connection.
    pub conn: ConnId,
    /// Whether the peer wants our data.
    pub interested: bool,
    /// Bytes per second that rank this peer (download rate from it, or upload rate to it when seeding).
    pub rate: u64,
    /// The peer has sent us nothing for too long although we asked.
    pub snubbed: bool,
    /// We currently unchoke it.
    pub unchoked: bool,
}

/// What to change between two rechokes so that every upload slot serves a peer that wants our data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotChanges {
    /// Unchoked peers that are no longer interested: their slot is free.
    pub choke: Vec<ConnId>,
    /// Interested peers that take the free slots.
    pub unchoke: Vec<ConnId>,
}

/// How a torrent's open connections stand towards its upload slots, in three counts. Kept up to date as
/// connections open, close, and change interest or choke state (by the node), so that the choker is asked to
/// fill slots, and its candidate list built, only when [`Choker::would_fill`] says there is something to do:
/// every interested or not-interested message would otherwise walk every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCensus {
    /// Unchoked peers that are not interested: slots to take back.
    pub idle: u32,
    /// Unchoked peers that are interested: slots in use.
    pub busy: u32,
    /// Choked peers that are interested: peers waiting for a slot.
    pub waiting: u32,
}

impl SlotCensus {
    /// The census of `candidates`, counted from scratch.
    pub fn of(candidates: &[ChokeCandidate]) -> SlotCensus {
        let mut census = SlotCensus::default();
        for c in candidates {
            census.add(c.unchoked, c.interested);
        }
        census
    }

    /// Count one more connection, `unchoked` by us, `interested` in our data.
    pub fn add(&mut self, unchoked: bool, interested: bool) {
        if let Some(count) = self.count_of(unchoked, interested) {
            *count += 1;
        }
    }

    /// Count one connection fewer (it was `unchoked` by us and `interested` in our data).
    pub fn remove(&mut self, unchoked: bool, interested: bool) {
        if let Some(count) = self.count_of(unchoked, interested) {
            *count = count.saturating_sub(1);
        }
    }

    /// A connection went from one state to another.
    pub fn change(&mut self, before: (bool, bool), after: (bool, bool)) {
        if before != after {
            self.remove(before.0, before.1);
            self.add(after.0, after.1);
        }
    }

    fn count_of(&mut self, unchoked: bool, interested: bool) -> Option<&mut u32> {
        match (unchoked, interested) {
            (true, false) => Some(&mut self.idle),
            (true, true) => Some(&mut self.busy),
            (false, true) => Some(&mut self.waiting),
            (false, false) => None,
        }
    }
}

/// The choking policy of one torrent.
#[derive(Debug, Clone)]
pub struct Choker {
    slots: usize,
    optimistic_slot: bool,
    optimistic: Option<ConnId>,
}

impl Choker {
    /// A choker with `slots` upload slots (at least one), one of them optimistic when `optimistic_slot`.
    pub fn new(slots: usize, optimistic_slot: bool) -> Choker {
        Choker {
            slots: slots.max(1),
            optimistic_slot,
            optimistic: None,
        }
    }

    /// The peer currently holding the optimistic slot.
    pub fn optimistic(&self) -> Option<ConnId> {
        self.optimistic
    }

    /// Keep every slot busy between rechokes: an unchoked peer that lost interest gives its slot up, and
    /// free slots go at once to interested choked peers (best rate first, snubbed ones last), so that upload
    /// capacity never idles for a rechoke period while someone wants what we have.
    pub fn fill_free_slots(&self, candidates: &[ChokeCandidate]) -> SlotChanges {
        let choke: Vec<ConnId> = candidates
            .iter()
            .filter(|c| c.unchoked && !c.interested)
            .map(|c| c.conn)
            .collect();
        let busy = candidates
            .iter()
            .filter(|c| c.unchoked && c.interested)
            .count();
        let mut waiting: Vec<&ChokeCandidate> = candidates
            .iter()
            .filter(|c| !c.unchoked && c.interested)
            .collect();
        waiting.sort_by(|a, b| {
            (a.snubbed, std::cmp::Reverse(a.rate), a.conn).cmp(&(
                b.snubbed,
                std::cmp::Reverse(b.rate),
                b.conn,
            ))
        });
        let unchoke = waiting
            .iter()
            .take(self.slots.saturating_sub(busy))
            .map(|c| c.conn)
            .collect();
        SlotChanges { choke, unchoke }
    }

    /// Whether [`Choker::fill_free_slots`] would change anything for candidates counted as `census`: a slot
    /// to take back from a peer that lost interest, or a free slot and a peer waiting for one.
    pub fn would_fill(&self, census: &SlotCensus) -> bool {
        census.idle > 0 || (census.waiting > 0 && (census.busy as usize) < self.slots)
    }

    /// Decide the unchoked set. With `rotate`, the optimistic slot moves to the next interested peer (in
    /// connection order, wrapping) that is not already unchoked on merit.
    pub fn rechoke(&mut self, candidates: &[ChokeCandidate], rotate: bool) -> BTreeSet<ConnId> {
        let mut ranked: Vec<&ChokeCandidate> = candidates
            .iter()
            .filter(|c| c.interested && !c.snubbed)
            .collect();
        ranked.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.conn.cmp(&b.conn)));
        let regular = self.slots - usize::from(self.optimistic_slot);
        let mut unchoked: BTreeSet<ConnId> = ranked.iter().take(regular).map(|c| c.conn).collect();

        let mut others: Vec<ConnId> = candidates
            .iter()
            .filter(|c| c.interested && !unchoked.contains(&c.conn))
            .map(|c| c.conn)
            .collect();
        others.sort_unstable();
        let still_valid = self.optimistic.filter(|o| others.contains(o));
        self.optimistic = match (self.optimistic_slot, rotate, still_valid) {
            (false, _, _) => None,
            (true, false, Some(o)) => Some(o),
            (true, _, _) => next_after(&others, self.optimistic),
        };
        if let Some(o) = self.optimistic {
            unchoked.insert(o);
        }
        // Fill slots left free (few interested peers) with the remaining ones in rank order.
        for c in ranked {
            if unchoked.len() >= self.slots {
                break;
            }
            unchoked.insert(c.conn);
        }
        unchoked
    }
}

/// The first key after `current` in sorted `keys`, wrapping round; the first key when there is no current.
fn next_after(keys: &[ConnId], current: Option<ConnId>) -> Option<ConnId> {
    match current {
        Some(cur) => keys
            .iter()
            .copied()
            .find(|&k| k > cur)
            .or_else(|| keys.first().copied()),
        None => keys.first().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cand(conn: ConnId, rate: u64) -> ChokeCandidate {
        ChokeCandidate {
            conn,
            interested: true,
            rate,
            snubbed: false,
            unchoked: false,
        }
    }

    #[test]
    fn a_slot_freed_by_a_peer_that_lost_interest_goes_to_a_waiting_one_at_once() {
        let ch = Choker::new(2, true);
        let mut cs = vec![cand(1, 0), cand(2, 0), cand(3, 10), cand(4, 50)];
        cs[0].unchoked = true;
        cs[0].interested = false;
        cs[1].unchoked = true;
        cs[2].snubbed = true;
        let changes = ch.fill_free_slots(&cs);
        assert_eq!(changes.choke, vec![1]);
        assert_eq!(changes.unchoke, vec![4], "one free slot, best rate first");
        cs[0].interested = true;
        cs[0].unchoked = false;
        cs[3].unchoked = true;
        assert_eq!(ch.fill_free_slots(&cs), SlotChanges::default(), "full");
    }

    #[test]
    fn the_census_says_when_filling_slots_changes_something() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut changed = 0;
        for round in 0..2_000 {
            let ch = Choker::new(1 + round % 5, round % 2 == 0);
            let cs: Vec<ChokeCandidate> = (0..rng.gen_range(0..12))
                .map(|i| ChokeCandidate {
                    conn: i,
                    interested: rng.gen_bool(0.6),
                    rate: rng.gen_range(0..4),
                    snubbed: rng.gen_bool(0.2),
                    unchoked: rng.gen_bool(0.4),
                })
                .collect();
            let census = SlotCensus::of(&cs);
            let changes = ch.fill_free_slots(&cs);
            assert_eq!(
                ch.would_fill(&census),
                changes != SlotChanges::default(),
                "{cs:?}"
            );
            changed += usize::from(changes != SlotChanges::default());
        }
        assert!(
            (200..1_800).contains(&changed),
            "both answers are tried: {changed}"
        );
    }

    #[test]
    fn a_census_kept_by_changes_equals_one_counted_afresh() {
        let mut cs: Vec<ChokeCandidate> = (0..6).map(|i| cand(i, 0)).collect();
        let mut kept = SlotCensus::of(&cs);
        for step in 0..60usize {
            let c = &mut cs[step * 7 % 6];
            let before = (c.unchoked, c.interested);
            if step % 3 == 0 {
                c.unchoked = !c.unchoked;
            } else {
                c.interested = !c.interested;
            }
            kept.change(before, (c.unchoked, c.interested));
            assert_eq!(kept, SlotCensus::of(&cs), "step {step}");
        }
        let gone = cs.pop().expect("six candidates");
        kept.remove(gone.unchoked, gone.interested);
        assert_eq!(kept, SlotCensus::of(&cs));
    }

    #[test]
    fn best_rates_win_regular_slots() {
        let mut ch = Choker::new(3, true);
        let cs = vec![cand(1, 10), cand(2, 500), cand(3, 300), cand(4, 1)];
        let un = ch.rechoke(&cs, true);
        assert!(un.contains(&2) && un.contains(&3));
        assert_eq!(un.len(), 3);
    }

    #[test]
    fn uninterested_and_snubbed_peers_get_no_regular_slot() {
        let mut ch = Choker::new(2, true);
        let mut cs = vec![cand(1, 1000), cand(2, 5)];
        cs[0].snubbed = true;
        cs.push(ChokeCandidate {
            conn: 3,
            interested: false,
            rate: 9999,
            snubbed: false,
            unchoked: false,
        });
        let un = ch.rechoke(&cs, false);
        assert!(!un.contains(&3));
        assert!(un.contains(&2));
    }

    #[test]
    fn optimistic_unchoke_rotates_fairly_among_twenty() {
        let mut ch = Choker::new(4, true);
        // Three fast peers hold the regular slots; seventeen others share the optimistic one.
        let cs: Vec<ChokeCandidate> = (0..20)
            .map(|i| cand(i, if i < 3 { 1000 } else { 0 }))
            .collect();
        let mut turns: BTreeMap<ConnId, u32> = BTreeMap::new();
        for _ in 0..17 * 3 {
            ch.rechoke(&cs, true);
            *turns.entry(ch.optimistic().unwrap()).or_default() += 1;
        }
        assert_eq!(turns.len(), 17, "every slow peer had a turn");
        assert!(turns.values().all(|&n| n == 3), "{turns:?}");
    }

    #[test]
    fn without_an_optimistic_slot_every_slot_goes_by_rate() {
        let mut ch = Choker::new(2, false);
        let cs = vec![cand(1, 10), cand(2, 500), cand(3, 300)];
        assert_eq!(ch.rechoke(&cs, true), [2, 3].into());
        assert_eq!(ch.optimistic(), None);
    }

    #[test]
    fn optimistic_slot_is_kept_between_rotations() {
        let mut ch = Choker::new(2, true);
        let cs: Vec<ChokeCandidate> = (0..5).map(|i| cand(i, 0)).collect();
        ch.rechoke(&cs, true);
        let first = ch.optimistic();
        ch.rechoke(&cs, false);
        assert_eq!(ch.optimistic(), first);
        ch.rechoke(&cs, true);
        assert_ne!(ch.optimistic(), first);
    }
}
