//! A fixed-length set of piece indices, with the BEP 3 wire layout (high bit of byte 0 is piece 0).

use serde::{Deserialize, Serialize};

/// Error for a wire bitfield that does not fit the torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    /// The byte length differs from `ceil(len / 8)`.
    #[error("bitfield has {got} bytes, expected {expected}")]
    WrongLength { got: usize, expected: usize },
    /// A bit past the last piece is set (BEP 3 requires spare bits to be zero).
    #[error("bitfield sets spare bits past piece {len}")]
    SpareBitsSet { len: u32 },
}

/// A set of piece indices `0..len`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// A full set over `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Parse a wire bitfield for a torrent of `len` pieces.
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
            });
        }
        let spare = expected * 8 - len as usize;
        if spare > 0 {
            let mask = (1u8 << spare) - 1;
            if bytes[expected - 1] & mask != 0 {
                return Err(BitfieldError::SpareBitsSet { len });
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// The wire representation.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of pieces this set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the set ranges over zero pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of members.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// True when every piece is a member.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Whether `index` is a member (false when out of range).
    pub fn get(&self, index: u32) -> bool {
        if index >= self.len {
            return false;
        }
        self.bytes[(index / 8) as usize] & (0x80 >> (index % 8)) != 0
    }

    /// Add `index`; returns true if it was newly added. Out-of-range indices are ignored.
    pub fn set(&mut self, index: u32) -> bool {
        if index >= self.len || self.get(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] |= 0x80 >> (index % 8);
        self.ones += 1;
        true
    }

    /// Remove `index`; returns true if it was a member.
    pub fn clear(&mut self, index: u32) -> bool {
        if !self.get(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] &= !(0x80 >> (index % 8));
        self.ones -= 1;
        true
    }

    /// Members in increasing order.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.runs().flat_map(|(first, last)| first..=last)
    }

    /// Members of `self` that are not members of `other`, in increasing order, a byte at a time (an index
    /// past `other`'s length counts as not a member of it).
    pub fn iter_difference<'a>(&'a self, other: &'a Bitfield) -> impl Iterator<Item = u32> + 'a {
        self.bytes.iter().enumerate().flat_map(move |(k, ours)| {
            let mut left = ours & !other.bytes.get(k).copied().unwrap_or(0);
            std::iter::from_fn(move || {
                if left == 0 {
                    return None;
                }
                let bit = left.leading_zeros();
                left &= !(0x80 >> bit);
                Some(k as u32 * 8 + bit)
            })
        })
    }

    /// The lowest non-member, if any.
    pub fn first_missing(&self) -> Option<u32> {
        self.next_with(0, false)
    }

    /// The lowest index from `from` on that is a member (`member`) or a non-member (`!member`), stepping
    /// over whole bytes that hold none. Spare bits past `len` are zero, so a byte of all members is whole.
    fn next_with(&self, from: u32, member: bool) -> Option<u32> {
        let skip = if member { 0x00 } else { 0xFF };
        let mut i = from;
        while i < self.len {
            if i.is_multiple_of(8) && self.bytes[(i / 8) as usize] == skip {
                i += 8;
                continue;
            }
            if self.get(i) == member {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// Members as maximal runs of consecutive indices, `(first, last)` inclusive, in increasing order.
    pub fn runs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            let first = self.next_with(from, true)?;
            let end = self.next_with(first, false).unwrap_or(self.len);
            from = end;
            Some((first, end - 1))
        })
    }

    /// Compact text form: sorted inclusive ranges such as `"0-36,40,42-43"` (empty string for none).
    /// Written into one string: a checkpoint is built with it at every verified piece.
    pub fn to_ranges(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (first, last) in self.runs() {
            if !out.is_empty() {
                out.push(',');
            }
            // Writing to a `String` cannot fail.
            let _ = if first == last {
                write!(out, "{first}")
            } else {
                write!(out, "{first}-{last}")
            };
        }
        out
    }

    /// Parse the form written by [`Bitfield::to_ranges`]; `None` if malformed or out of range.
    pub fn from_ranges(text: &str, len: u32) -> Option<Self> {
        let mut b = Bitfield::new(len);
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?),
                None => {
                    let v = part.parse::<u32>().ok()?;
                    (v, v)
                }
            };
            if lo > hi || hi >= len {
                return None;
            }
            for i in lo..=hi {
                b.set(i);
            }
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_and_spare_bits() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(Bitfield::from_wire(b.as_bytes(), 10).unwrap(), b);
        assert_eq!(
            Bitfield::from_wire(&[0x80, 0x20], 10),
            Err(BitfieldError::SpareBitsSet { len: 10 })
        );
        assert!(matches!(
            Bitfield::from_wire(&[0x80], 10),
            Err(BitfieldError::WrongLength { .. })
        ));
    }

    #[test]
    fn ranges_round_trip() {
        let mut b = Bitfield::new(50);
        for i in (0..=36).chain([40, 42, 43]) {
            b.set(i);
        }
        assert_eq!(b.to_ranges(), "0-36,40,42-43");
        assert_eq!(Bitfield::from_ranges("0-36,40,42-43", 50).unwrap(), b);
        assert_eq!(b.first_missing(), Some(37));
        assert!(Bitfield::from_ranges("0-50", 50).is_none());
        assert!(Bitfield::from_ranges("x", 50).is_none());
        assert_eq!(b.count(), 40);
    }

    /// Members, runs, ranges and differences as a bit-by-bit walk finds them, for many sets.
    #[test]
    fn byte_wise_walks_agree_with_a_bit_by_bit_walk() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for round in 0..500u32 {
            let len = rng.gen_range(0..70);
            let density = [0.0, 0.1, 0.5, 0.9, 1.0][round as usize % 5];
            let mut a = Bitfield::new(len);
            let mut b = Bitfield::new(len);
            for i in 0..len {
                if rng.gen_bool(density) {
                    a.set(i);
                }
                if rng.gen_bool(0.5) {
                    b.set(i);
                }
            }
            let ones: Vec<u32> = (0..len).filter(|&i| a.get(i)).collect();
            assert_eq!(a.iter_ones().collect::<Vec<_>>(), ones, "{a:?}");
            assert_eq!(a.first_missing(), (0..len).find(|&i| !a.get(i)));
            let diff: Vec<u32> = ones.iter().copied().filter(|&i| !b.get(i)).collect();
            assert_eq!(a.iter_difference(&b).collect::<Vec<_>>(), diff);
            let mut text = Vec::new();
            let mut i = 0;
            while i < len {
                if a.get(i) {
                    let start = i;
                    while i + 1 < len && a.get(i + 1) {
                        i += 1;
                    }
                    text.push(if start == i {
                        format!("{start}")
                    } else {
                        format!("{start}-{i}")
                    });
                }
                i += 1;
            }
            assert_eq!(a.to_ranges(), text.join(","));
            assert_eq!(Bitfield::from_ranges(&a.to_ranges(), len), Some(a.clone()));
        }
        // A shorter other set: indices past it are not its members.
        let full = Bitfield::full(20);
        let short = Bitfield::full(9);
        assert_eq!(
            full.iter_difference(&short).collect::<Vec<_>>(),
            (9..20).collect::<Vec<_>>()
        );
    }

    #[test]
    fn set_and_clear_track_count() {
        let mut b = Bitfield::new(3);
        assert!(b.set(1));
        assert!(!b.set(1));
        assert!(!b.set(7));
        assert!(b.clear(1));
        assert_eq!(b.count(), 0);
        assert!(Bitfield::full(3).is_full());
    }
}
