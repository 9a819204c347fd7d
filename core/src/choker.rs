//! Choking: which interested peers we upload to.
//!
//! A number of slots: all but one go to the peers with the best rate (download rate from them while we
//! leech — tit-for-tat — or upload rate to them once we seed), the last is an optimistic unchoke that rotates
//! round-robin through the other interested peers so every newcomer gets a chance. Snubbed peers (sent us
//! nothing for a long time while unchoked) lose their regular slot.
//!
//! How many slots: a seed, or a peer that does not know its upload capacity, uses all of them. A leecher that
//! knows its capacity (an upload cap) starts with [`LEECH_START_SLOTS`] and adds one at each rechoke that
//! finds the capacity idle while someone waits ([`UploadUse`]). Few slots make each piece a leecher serves
//! arrive sooner (a piece shared by k peers at once takes k times as long to reach any of them), so its
//! receivers can pass it on sooner: in a flash crowd the pieces spread in fewer, faster generations. A seed
//! has no such hurry: it spreads its first copy over as many leechers as it can.

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
    /// How many of our peers lack the piece it holds that most of them lack (0: it can serve none of them;
    /// [`crate::picker::Picker::lacked_most`]); worked out for peers waiting for a slot only, 0 elsewhere.
    pub offers: u32,
    /// Whole pieces' worth of payload we sent it on this connection (waiting peers only, 0 elsewhere).
    pub pieces_sent: u32,
    /// Pieces it says it holds (waiting peers only, 0 elsewhere).
    pub pieces_claimed: u32,
}

/// Pieces a peer may have received from us beyond those it says it holds (the pieces still on their way,
/// being verified, or announced by a HAVE not yet arrived) before its claim is no longer believed.
pub const UNSHARED_SLACK: u32 = 2;

impl ChokeCandidate {
    /// What the free-slot rule ranks the peer by: its offers, unless it says it holds fewer pieces than we
    /// sent it (less [`UNSHARED_SLACK`]): then it ranks as a peer with the most to offer, by its rate.
    ///
    /// The free-slot rule puts first the peers with the least to offer, and a peer that claims no pieces
    /// offers nothing; without this guard a free rider that never announces what it got would take every
    /// free slot between rechokes. It is guarded by what we know for sure: the pieces we sent it. A peer
    /// that hides them gets at most `UNSHARED_SLACK + 1` pieces from us by the rule, and then only what
    /// tit-for-tat and the optimistic slot give any peer. An honest peer is never caught: every piece we
    /// send it is announced once verified, and the slack covers those still in flight.
    pub fn free_slot_offers(&self) -> u32 {
        if self.pieces_sent > self.pieces_claimed.saturating_add(UNSHARED_SLACK) {
            u32::MAX
        } else {
            self.offers
        }
    }
}

/// Slots a leecher with a known upload capacity starts with: one by rate and the optimistic one.
pub const LEECH_START_SLOTS: usize = 2;

/// What the choker knows of our upload, to size the slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadUse {
    /// We hold the whole torrent.
    pub seeding: bool,
    /// Our upload capacity in bytes per second (the upload cap), when known.
    pub capacity: Option<u64>,
    /// What we upload now, in bytes per second.
    pub rate: u64,
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
    /// Slots in use while leeching with a known capacity (grows up to `slots`).
    leech_slots: usize,
    optimistic_slot: bool,
    optimistic: Option<ConnId>,
    /// Salt of the order in which peers that rank equal are taken ([`Choker::with_tie_order`]).
    tie_salt: u64,
}

impl Choker {
    /// A choker with `slots` upload slots (at least one), one of them optimistic when `optimistic_slot`.
    pub fn new(slots: usize, optimistic_slot: bool) -> Choker {
        Choker {
            slots: slots.max(1),
            leech_slots: LEECH_START_SLOTS.clamp(1, slots.max(1)),
            optimistic_slot,
            optimistic: None,
            tie_salt: 0,
        }
    }

    /// Take peers that rank equal (the same rate, the same offers; every newcomer at the start of a flash
    /// crowd) in an order of our own, drawn from `salt` (the node's seed), instead of connection order.
    ///
    /// Connection ids count connections in the order they opened, and the peers of a swarm open theirs in
    /// much the same order (the same tracker reply, the same newcomer dialling everyone at once), so with
    /// ties broken by id every holder of a new piece gave its free slot to the same peer: in the 1,000-peer
    /// crowd the first pieces went, all at once, to one peer after another, and the holders grew by one
    /// per piece time instead of doubling (bench/RESULTS.md). An order of each node's own gives equal
    /// peers an equal chance at every node, independently, whatever the network.
    pub fn with_tie_order(mut self, salt: u64) -> Choker {
        self.tie_salt = salt;
        self
    }

    /// Where `conn` comes among peers that rank equal: a fixed permutation of connection ids per salt.
    fn tie_rank(&self, conn: ConnId) -> u64 {
        mix64(conn ^ self.tie_salt)
    }

    /// The peer currently holding the optimistic slot.
    pub fn optimistic(&self) -> Option<ConnId> {
        self.optimistic
    }

    /// How many peers we upload to, given our upload.
    pub fn slots(&self, up: &UploadUse) -> usize {
        if up.seeding || up.capacity.is_none() {
            self.slots
        } else {
            self.leech_slots
        }
    }

    /// Keep every slot busy between rechokes: an unchoked peer that lost interest gives its slot up, and
    /// free slots go at once to interested choked peers, so that upload capacity never idles for a rechoke
    /// period while someone wants what we have. Snubbed peers come last; before them, the peer with the least
    /// to offer our other peers ([`ChokeCandidate::offers`], guarded by [`ChokeCandidate::free_slot_offers`])
    /// first, then the best rate, then our own order ([`Choker::with_tie_order`]).
    ///
    /// Least to offer first: a peer whose pieces all our other peers already hold has an uplink nobody can
    /// use, and what we send it puts that uplink to work, while a peer holding a piece many of them lack
    /// uploads anyway. In a flash crowd, where the seed's pieces must reach everyone while it sends new
    /// ones, the crowd's capacity is what decides the end: with free slots ranked by rate alone a third of
    /// the 20-leecher crowd held only pieces everyone held while the seed sent its first copy, and the
    /// backlog they left made the tail (bench/RESULTS.md). Beyond the LAN it keeps its meaning: it is a
    /// statement about pieces, whatever the rates; tit-for-tat stays at the rechoke, which ranks the regular
    /// slots by rate, so a peer that takes and never gives holds a free slot until then at most, as an
    /// optimistic unchoke would give it.
    pub fn fill_free_slots(&self, candidates: &[ChokeCandidate], up: &UploadUse) -> SlotChanges {
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
        waiting.sort_by_key(|c| {
            (
                c.snubbed,
                c.free_slot_offers(),
                std::cmp::Reverse(c.rate),
                self.tie_rank(c.conn),
                c.conn,
            )
        });
        let unchoke = waiting
            .iter()
            .take(self.slots(up).saturating_sub(busy))
            .map(|c| c.conn)
            .collect();
        SlotChanges { choke, unchoke }
    }

    /// Whether [`Choker::fill_free_slots`] would change anything for candidates counted as `census`: a slot
    /// to take back from a peer that lost interest, or a free slot and a peer waiting for one.
    pub fn would_fill(&self, census: &SlotCensus, up: &UploadUse) -> bool {
        census.idle > 0 || (census.waiting > 0 && (census.busy as usize) < self.slots(up))
    }

    /// Decide the unchoked set. With `rotate`, the optimistic slot moves to the next interested peer (in
    /// connection order, wrapping) that is not already unchoked on merit. A leecher whose upload stays under
    /// 90% of its capacity while interested peers wait choked takes one slot more first.
    pub fn rechoke(
        &mut self,
        candidates: &[ChokeCandidate],
        rotate: bool,
        up: &UploadUse,
    ) -> BTreeSet<ConnId> {
        let waiting = candidates.iter().any(|c| c.interested && !c.unchoked);
        let idle = up
            .capacity
            .is_some_and(|cap| u128::from(up.rate) * 10 < u128::from(cap) * 9);
        if !up.seeding && idle && waiting {
            self.leech_slots = (self.leech_slots + 1).min(self.slots);
        }
        let slots = self.slots(up);
        let mut ranked: Vec<&ChokeCandidate> = candidates
            .iter()
            .filter(|c| c.interested && !c.snubbed)
            .collect();
        ranked.sort_by_key(|c| (std::cmp::Reverse(c.rate), self.tie_rank(c.conn), c.conn));
        let regular = slots - usize::from(self.optimistic_slot);
        let mut unchoked: BTreeSet<ConnId> = ranked.iter().take(regular).map(|c| c.conn).collect();

        // The optimistic slot rotates in our own order of the peers, for the reason given at `with_tie_order`.
        let mut others: Vec<(u64, ConnId)> = candidates
            .iter()
            .filter(|c| c.interested && !unchoked.contains(&c.conn))
            .map(|c| (self.tie_rank(c.conn), c.conn))
            .collect();
        others.sort_unstable();
        let current = self.optimistic.map(|o| (self.tie_rank(o), o));
        let still_valid = current.filter(|o| others.contains(o));
        self.optimistic = match (self.optimistic_slot, rotate, still_valid) {
            (false, _, _) => None,
            (true, false, Some((_, o))) => Some(o),
            (true, _, _) => next_after(&others, current).map(|(_, o)| o),
        };
        if let Some(o) = self.optimistic {
            unchoked.insert(o);
        }
        // Fill slots left free (few interested peers) with the remaining ones in rank order.
        for c in ranked {
            if unchoked.len() >= slots {
                break;
            }
            unchoked.insert(c.conn);
        }
        unchoked
    }
}

/// SplitMix64's finaliser: a bijection of u64 that scatters neighbouring inputs (kept here: three lines, and
/// the RNG crates offer no stateless mixer).
fn mix64(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The first key after `current` in sorted `keys`, wrapping round; the first key when there is no current.
fn next_after<K: Ord + Copy>(keys: &[K], current: Option<K>) -> Option<K> {
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

    /// No known capacity: every slot in use.
    const ALL: UploadUse = UploadUse {
        seeding: false,
        capacity: None,
        rate: 0,
    };

    fn cand(conn: ConnId, rate: u64) -> ChokeCandidate {
        ChokeCandidate {
            conn,
            interested: true,
            rate,
            snubbed: false,
            unchoked: false,
            offers: 1,
            pieces_sent: 0,
            pieces_claimed: 0,
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
        let changes = ch.fill_free_slots(&cs, &ALL);
        assert_eq!(changes.choke, vec![1]);
        assert_eq!(changes.unchoke, vec![4], "one free slot, best rate first");
        cs[0].interested = true;
        cs[0].unchoked = false;
        cs[3].unchoked = true;
        assert_eq!(
            ch.fill_free_slots(&cs, &ALL),
            SlotChanges::default(),
            "full"
        );
    }

    #[test]
    fn a_free_slot_goes_first_to_the_waiting_peer_with_least_to_offer_the_others() {
        let ch = Choker::new(2, true);
        let mut cs = vec![cand(1, 0), cand(2, 900), cand(3, 10), cand(4, 50)];
        cs[0].unchoked = true;
        cs[1].offers = 12;
        cs[2].offers = 3;
        cs[3].offers = 3;
        assert_eq!(
            ch.fill_free_slots(&cs, &ALL).unchoke,
            vec![4],
            "fewest lack its pieces (3), then the better rate of the two"
        );
        cs[1].offers = 0;
        assert_eq!(
            ch.fill_free_slots(&cs, &ALL).unchoke,
            vec![2],
            "nobody else can use its uplink"
        );
        cs[1].snubbed = true;
        assert_eq!(
            ch.fill_free_slots(&cs, &ALL).unchoke,
            vec![4],
            "snubbed last"
        );
    }

    #[test]
    fn nodes_with_their_own_tie_order_give_equal_newcomers_different_slots() {
        // Twenty newcomers, equal in everything, waiting at eight holders whose connection ids name them
        // alike (ids count connections in the order they opened).
        let cs: Vec<ChokeCandidate> = (1..=20)
            .map(|i| ChokeCandidate {
                offers: 0,
                ..cand(i, 0)
            })
            .collect();
        let up = UploadUse {
            seeding: false,
            capacity: Some(2_000_000),
            rate: 0,
        };
        let first = |salt: u64| {
            Choker::new(4, true)
                .with_tie_order(salt)
                .fill_free_slots(&cs, &up)
                .unchoke
        };
        let picked: BTreeSet<ConnId> = (1..=8u64).flat_map(first).collect();
        assert!(
            picked.len() >= 8,
            "eight holders, two slots each, spread over {picked:?}"
        );
        assert_eq!(first(3), first(3), "a node keeps its order");
        assert_eq!(
            Choker::new(4, true).fill_free_slots(&cs, &up).unchoke,
            Choker::new(4, true).fill_free_slots(&cs, &up).unchoke
        );
        // The order breaks ties only: fewer offers, then the rate, still come first.
        let mut ranked = cs.clone();
        ranked[19].rate = 5;
        ranked[17].offers = 0;
        for c in ranked.iter_mut().take(17) {
            c.offers = 1;
        }
        for salt in 1..=8 {
            let chosen = Choker::new(4, true)
                .with_tie_order(salt)
                .fill_free_slots(&ranked, &up)
                .unchoke;
            assert_eq!(
                chosen[0], 20,
                "salt {salt}: the better rate among the least offers"
            );
            assert!([19, 18].contains(&chosen[1]), "salt {salt}: {chosen:?}");
        }
    }

    #[test]
    fn a_peer_hiding_the_pieces_we_sent_it_loses_its_place_in_the_free_slot_queue() {
        let ch = Choker::new(2, true);
        let mut cs = vec![cand(1, 0), cand(2, 10), cand(3, 50)];
        cs[0].unchoked = true;
        cs[1].offers = 0;
        cs[2].offers = 4;
        // A newcomer claiming nothing goes first, and keeps its place while its pieces are on their way.
        cs[1].pieces_sent = UNSHARED_SLACK;
        assert_eq!(ch.fill_free_slots(&cs, &ALL).unchoke, vec![2]);
        // It says it holds nothing after three pieces from us: it ranks as the one with the most to offer.
        cs[1].pieces_sent = UNSHARED_SLACK + 1;
        assert_eq!(cs[1].free_slot_offers(), u32::MAX);
        assert_eq!(ch.fill_free_slots(&cs, &ALL).unchoke, vec![3]);
        // An honest peer that announced what it got keeps its offers.
        cs[1].pieces_claimed = 1;
        assert_eq!(cs[1].free_slot_offers(), 0);
        assert_eq!(ch.fill_free_slots(&cs, &ALL).unchoke, vec![2]);
        // Guarded, it still comes before snubbed peers, by its rate.
        cs[1].pieces_claimed = 0;
        cs[2].snubbed = true;
        assert_eq!(ch.fill_free_slots(&cs, &ALL).unchoke, vec![2]);
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
                    offers: rng.gen_range(0..3),
                    pieces_sent: rng.gen_range(0..6),
                    pieces_claimed: rng.gen_range(0..3),
                })
                .collect();
            let census = SlotCensus::of(&cs);
            let up = UploadUse {
                seeding: rng.gen_bool(0.5),
                capacity: rng.gen_bool(0.5).then_some(2_000_000),
                rate: 0,
            };
            let changes = ch.fill_free_slots(&cs, &up);
            assert_eq!(
                ch.would_fill(&census, &up),
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
        let un = ch.rechoke(&cs, true, &ALL);
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
            offers: 1,
            pieces_sent: 0,
            pieces_claimed: 0,
        });
        let un = ch.rechoke(&cs, false, &ALL);
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
            ch.rechoke(&cs, true, &ALL);
            *turns.entry(ch.optimistic().unwrap()).or_default() += 1;
        }
        assert_eq!(turns.len(), 17, "every slow peer had a turn");
        assert!(turns.values().all(|&n| n == 3), "{turns:?}");
    }

    #[test]
    fn without_an_optimistic_slot_every_slot_goes_by_rate() {
        let mut ch = Choker::new(2, false);
        let cs = vec![cand(1, 10), cand(2, 500), cand(3, 300)];
        assert_eq!(ch.rechoke(&cs, true, &ALL), [2, 3].into());
        assert_eq!(ch.optimistic(), None);
    }

    #[test]
    fn optimistic_slot_is_kept_between_rotations() {
        let mut ch = Choker::new(2, true);
        let cs: Vec<ChokeCandidate> = (0..5).map(|i| cand(i, 0)).collect();
        ch.rechoke(&cs, true, &ALL);
        let first = ch.optimistic();
        ch.rechoke(&cs, false, &ALL);
        assert_eq!(ch.optimistic(), first);
        ch.rechoke(&cs, true, &ALL);
        assert_ne!(ch.optimistic(), first);
    }

    #[test]
    fn a_capped_leecher_starts_with_two_slots_and_adds_one_while_its_capacity_idles() {
        let mut ch = Choker::new(6, true);
        let cs: Vec<ChokeCandidate> = (0..10).map(|i| cand(i, 100 - i)).collect();
        let busy = UploadUse {
            seeding: false,
            capacity: Some(2_000_000),
            rate: 1_950_000,
        };
        assert_eq!(ch.rechoke(&cs, true, &busy).len(), 2, "saturated: no more");
        assert_eq!(ch.fill_free_slots(&cs, &busy).unchoke.len(), 2);
        let idle = UploadUse {
            rate: 1_000_000,
            ..busy
        };
        assert_eq!(ch.rechoke(&cs, false, &idle).len(), 3);
        assert_eq!(ch.rechoke(&cs, false, &idle).len(), 4);
        let seeding = UploadUse {
            seeding: true,
            ..busy
        };
        assert_eq!(
            ch.rechoke(&cs, false, &seeding).len(),
            6,
            "a seed uses them all"
        );
        // Nobody waiting: an idle capacity is no reason for a slot more.
        let few: Vec<ChokeCandidate> = (0..3)
            .map(|i| ChokeCandidate {
                unchoked: true,
                ..cand(i, 5)
            })
            .collect();
        let mut ch = Choker::new(6, true);
        assert_eq!(ch.rechoke(&few, false, &idle).len(), 2);
        assert_eq!(ch.slots(&idle), 2);
    }
}
