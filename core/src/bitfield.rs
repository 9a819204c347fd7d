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
        (0..self.len).filter(move |&i| self.get(i))
    }

    /// The lowest non-member, if any.
    pub fn first_missing(&self) -> Option<u32> {
        (0..self.len).find(|&i| !self.get(i))
    }

    /// Compact text form: sorted inclusive ranges such as `"0-36,40,42-43"` (empty string for none).
    pub fn to_ranges(&self) -> String {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.len {
            if self.get(i) {
                let start = i;
                while i + 1 < self.len && self.get(i + 1) {
                    i += 1;
                }
                out.push(if start == i {
                    format!("{start}")
                } else {
                    format!("{start}-{i}")
                });
            }
            i += 1;
        }
        out.join(",")
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
