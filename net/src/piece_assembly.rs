//! Received blocks held in memory until their piece is complete, so that the disk worker writes a piece with
//! one vectored write and hashes it from the bytes it wrote, instead of one write per 16 KiB block and a
//! read-back of the whole piece to hash it (`bench/RESULTS.md`, issue 17).
//!
//! Holding delays writes that nothing relies on yet: a piece is hashed only once all its blocks arrived, the
//! hash comes after the piece's write, and a checkpoint claims only hashed pieces (invariants 2 and 3 are
//! untouched; a crash loses held blocks exactly as it loses unsynced ones). Memory is bounded: a block that
//! would take the held bytes past the limit makes its piece *spill*: what it held and everything it receives
//! later is written through at once, as before, and the piece is hashed from disk.

use bytes::Bytes;
use enjambre_core::metainfo::InfoHash;
use std::collections::BTreeMap;

/// One piece's held blocks, in the order they arrived.
#[derive(Default)]
struct Held {
    blocks: Vec<(u64, Bytes)>,
    spilled: bool,
}

/// What the disk worker does with a piece it is asked to hash.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Nothing was held: hash what is on disk.
    Nothing,
    /// Every block of the piece, in offset order, tiling it exactly: write them at once, hash them.
    Whole(Vec<Bytes>),
    /// Some blocks (arrival order, with their torrent-space offsets) that do not make the piece on their own
    /// (the piece spilled, or blocks overlap): write them in that order, then hash what is on disk.
    Partial(Vec<(u64, Bytes)>),
}

/// Blocks held per piece, up to a limit of bytes over all pieces.
pub(crate) struct PieceAssembly {
    pieces: BTreeMap<(InfoHash, u32), Held>,
    held: u64,
    limit: u64,
}

impl PieceAssembly {
    /// An empty assembly holding at most `limit` bytes at once.
    pub fn new(limit: u64) -> PieceAssembly {
        PieceAssembly {
            pieces: BTreeMap::new(),
            held: 0,
            limit,
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Hold `data`, a block at torrent-space `offset` of `piece`. Returns the writes to carry out now, in
    /// order: none while the piece is held, everything it held and this block when it spills.
    pub fn hold(
        &mut self,
        torrent: InfoHash,
        piece: u32,
        offset: u64,
        data: Bytes,
    ) -> Vec<(u64, Bytes)> {
        let len = data.len() as u64;
        let fits = self.held + len <= self.limit;
        let entry = self.pieces.entry((torrent, piece)).or_default();
        if entry.spilled {
            return vec![(offset, data)];
        }
        if fits {
            entry.blocks.push((offset, data));
            self.held += len;
            return Vec::new();
        }
        entry.spilled = true;
        let mut out = std::mem::take(&mut entry.blocks);
        self.held -= out.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        out.push((offset, data));
        out
    }

    /// Take what is held of `piece`, which spans `start..start + len` in torrent space, now that it is to be
    /// hashed; the piece is held afresh from its next block (a piece that failed its hash is fetched again).
    pub fn take(&mut self, torrent: InfoHash, piece: u32, start: u64, len: u64) -> Taken {
        let Some(held) = self.pieces.remove(&(torrent, piece)) else {
            return Taken::Nothing;
        };
        self.held -= held.blocks.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        if held.spilled {
            return Taken::Partial(held.blocks);
        }
        let mut sorted: Vec<&(u64, Bytes)> = held.blocks.iter().collect();
        sorted.sort_by_key(|(offset, _)| *offset);
        let mut next = start;
        for (offset, block) in &sorted {
            if *offset != next {
                return Taken::Partial(held.blocks);
            }
            next += block.len() as u64;
        }
        if next != start + len {
            return Taken::Partial(held.blocks);
        }
        Taken::Whole(sorted.into_iter().map(|(_, b)| b.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: InfoHash = InfoHash([7; 20]);

    fn block(byte: u8, len: usize) -> Bytes {
        Bytes::from(vec![byte; len])
    }

    #[test]
    fn a_complete_piece_comes_back_whole_in_offset_order() {
        let mut a = PieceAssembly::new(1 << 20);
        // Piece 1 of 300-byte pieces: 300..600, blocks arriving out of order.
        assert!(a.hold(T, 1, 500, block(3, 100)).is_empty());
        assert!(a.hold(T, 1, 300, block(1, 100)).is_empty());
        assert!(a.hold(T, 1, 400, block(2, 100)).is_empty());
        assert_eq!(a.held(), 300);
        assert_eq!(
            a.take(T, 1, 300, 300),
            Taken::Whole(vec![block(1, 100), block(2, 100), block(3, 100)])
        );
        assert_eq!(a.held(), 0);
        assert_eq!(a.take(T, 1, 300, 300), Taken::Nothing);
    }

    #[test]
    fn a_piece_with_a_gap_or_an_overlap_is_written_as_it_came() {
        let mut a = PieceAssembly::new(1 << 20);
        a.hold(T, 0, 0, block(1, 100));
        a.hold(T, 0, 200, block(3, 100));
        assert_eq!(
            a.take(T, 0, 0, 300),
            Taken::Partial(vec![(0, block(1, 100)), (200, block(3, 100))])
        );
        a.hold(T, 0, 0, block(1, 100));
        a.hold(T, 0, 100, block(2, 200));
        a.hold(T, 0, 100, block(9, 100));
        assert_eq!(
            a.take(T, 0, 0, 300),
            Taken::Partial(vec![
                (0, block(1, 100)),
                (100, block(2, 200)),
                (100, block(9, 100))
            ])
        );
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn past_the_limit_a_piece_spills_and_then_writes_through() {
        let mut a = PieceAssembly::new(250);
        assert!(a.hold(T, 0, 0, block(1, 100)).is_empty());
        assert!(a.hold(T, 1, 300, block(4, 100)).is_empty());
        // 100 more would make 300 > 250: piece 0 spills, with what it held.
        assert_eq!(
            a.hold(T, 0, 100, block(2, 100)),
            vec![(0, block(1, 100)), (100, block(2, 100))]
        );
        assert_eq!(a.held(), 100);
        assert_eq!(a.hold(T, 0, 200, block(3, 100)), vec![(200, block(3, 100))]);
        assert_eq!(a.take(T, 0, 0, 300), Taken::Partial(Vec::new()));
        // Piece 1 kept its block and is still held whole once complete.
        assert!(a.hold(T, 1, 400, block(5, 100)).is_empty());
        assert!(a.hold(T, 1, 500, block(6, 50)).is_empty());
        assert_eq!(a.held(), 250);
        assert!(matches!(a.take(T, 1, 300, 250), Taken::Whole(b) if b.len() == 3));
        // A spilled piece is held again once hashed (fetched anew after a failed hash).
        assert!(a.hold(T, 0, 0, block(1, 100)).is_empty());
    }
}
