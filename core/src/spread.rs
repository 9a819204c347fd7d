//! A seed's piece suggestions (BEP 6 suggest-piece): which piece to point an unchoked peer at next.
//!
//! The peers a seed serves at once each pick their next piece without knowing what the others are fetching
//! from it: early in a flash crowd every piece is equally rare to them, so they collide, and the seed sends
//! the same piece twice while others it alone holds wait. The seed does know what it handed out, so it
//! suggests to each peer the piece it handed out least (then the one fewest of its peers announced, then the
//! lowest index): its first copy of the file goes out without duplicates, and after that its upload goes to
//! the pieces that are still rare. A suggestion is only a hint: peers that ignore it lose nothing.

use crate::bitfield::Bitfield;
use std::collections::BTreeMap;

/// How many suggestions a peer holds ahead of what it asked us for: one for the piece it starts at its
/// unchoke, one for the piece after, so that its next choice is already steered when it makes it (a peer
/// that keeps more pieces in flight than this picks the rest itself).
pub const SUGGEST_AHEAD: usize = 2;

/// Which pieces a seed handed out, and how often.
#[derive(Debug, Clone)]
pub struct Spread {
    given: Vec<u32>,
}

impl Spread {
    /// Nothing handed out yet, of `pieces` pieces.
    pub fn new(pieces: u32) -> Spread {
        Spread {
            given: vec![0; pieces as usize],
        }
    }

    /// One more peer was pointed at `piece`, or asked us for it.
    pub fn note_given(&mut self, piece: u32) {
        if let Some(g) = self.given.get_mut(piece as usize) {
            *g += 1;
        }
    }

    /// How often `piece` was handed out.
    pub fn given(&self, piece: u32) -> u32 {
        self.given.get(piece as usize).copied().unwrap_or(0)
    }

    /// The piece to suggest to a peer that holds `peer_has`: among the pieces it lacks and was not already
    /// given (the keys of `already`), the one handed out least, then the one `availability` counts least, then the lowest
    /// index. None when it lacks nothing it was not already given.
    pub fn next_for(
        &self,
        peer_has: &Bitfield,
        already: &BTreeMap<u32, bool>,
        availability: impl Fn(u32) -> u32,
    ) -> Option<u32> {
        (0..self.given.len() as u32)
            .filter(|&i| !peer_has.get(i) && !already.contains_key(&i))
            .min_by_key(|&i| (self.given(i), availability(i), i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_served_at_once_are_pointed_at_different_pieces() {
        let mut s = Spread::new(8);
        let empty = Bitfield::new(8);
        let mut picks = Vec::new();
        for _ in 0..8 {
            let p = s
                .next_for(&empty, &BTreeMap::new(), |_| 1)
                .expect("a piece");
            s.note_given(p);
            picks.push(p);
        }
        picks.sort_unstable();
        assert_eq!(
            picks,
            (0..8).collect::<Vec<_>>(),
            "one copy before any second"
        );
        let p = s.next_for(&empty, &BTreeMap::new(), |i| if i == 5 { 0 } else { 3 });
        assert_eq!(p, Some(5), "second round: the rarest in the swarm first");
    }

    #[test]
    fn a_piece_the_peer_holds_or_was_given_is_not_suggested() {
        let mut s = Spread::new(3);
        s.note_given(2);
        let mut has = Bitfield::new(3);
        has.set(0);
        let already: BTreeMap<u32, bool> = [(1, false)].into();
        assert_eq!(s.next_for(&has, &already, |_| 0), Some(2));
        has.set(2);
        assert_eq!(s.next_for(&has, &already, |_| 0), None);
    }
}
