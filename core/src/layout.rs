//! Where torrent bytes live: maps torrent-space byte ranges onto `(file, offset)` segments and gives piece
//! offsets and lengths. All offsets are 64-bit; zero-length files take no space and never get a segment.

use std::ops::Range;

/// The files of a torrent laid end to end, cut into pieces of `piece_length` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// Torrent-space offset where each file starts.
    starts: Vec<u64>,
    /// Length of each file in bytes.
    lengths: Vec<u64>,
    /// Bytes per piece (the last piece may be shorter); never zero.
    piece_length: u32,
    /// Sum of all file lengths (saturating).
    total: u64,
}

/// One contiguous part of a torrent-space range that lies in a single file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the file in the torrent's file list.
    pub file_index: usize,
    /// Offset within that file.
    pub file_offset: u64,
    /// Number of bytes in this segment (never zero).
    pub len: u64,
    /// Offset of this segment within the requested range.
    pub buf_offset: u64,
}

impl FileLayout {
    /// Lays files out in order. A `piece_length` of 0 is treated as 1 so that no computation divides by zero;
    /// a total beyond `u64::MAX` saturates (metainfo parsing refuses such torrents before they get here).
    pub fn new(file_lengths: &[u64], piece_length: u32) -> FileLayout {
        let mut starts = Vec::with_capacity(file_lengths.len());
        let mut total = 0u64;
        for len in file_lengths {
            starts.push(total);
            total = total.saturating_add(*len);
        }
        FileLayout {
            starts,
            lengths: file_lengths.to_vec(),
            piece_length: piece_length.max(1),
            total,
        }
    }

    /// Total bytes in the torrent.
    pub fn total_length(&self) -> u64 {
        self.total
    }

    /// Bytes per piece (the last piece may be shorter).
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Number of pieces: `ceil(total / piece_length)`, 0 for an empty torrent (saturates at `u32::MAX`).
    pub fn piece_count(&self) -> u32 {
        u32::try_from(piece_count_for(self.total, self.piece_length)).unwrap_or(u32::MAX)
    }

    /// Length of piece `piece`: `piece_length` except for a shorter last piece; 0 if out of range.
    pub fn piece_len(&self, piece: u32) -> u32 {
        piece_len_for(self.total, self.piece_length, piece)
    }

    /// Torrent-space offset where piece `piece` starts (may lie past the end for out-of-range pieces).
    pub fn piece_offset(&self, piece: u32) -> u64 {
        u64::from(piece) * u64::from(self.piece_length)
    }

    /// Number of files, zero-length ones included.
    pub fn file_count(&self) -> usize {
        self.lengths.len()
    }

    /// Length of file `i`; 0 if out of range.
    pub fn file_length(&self, i: usize) -> u64 {
        self.lengths.get(i).copied().unwrap_or(0)
    }

    /// Torrent-space offset where file `i` starts; `total_length()` if out of range.
    pub fn file_offset(&self, i: usize) -> u64 {
        self.starts.get(i).copied().unwrap_or(self.total)
    }

    /// Splits `[offset, offset + len)`, clipped to the torrent, into per-file segments in order.
    /// Zero-length files never appear; an empty or out-of-range request yields no segments.
    pub fn segments(&self, offset: u64, len: u64) -> Vec<Segment> {
        let end = offset.saturating_add(len).min(self.total);
        if offset >= end {
            return Vec::new();
        }
        let first = self.first_file_ending_after(offset);
        let mut out = Vec::new();
        for (file_index, (start, flen)) in self.files().enumerate().skip(first) {
            if start >= end {
                break;
            }
            if let Some(seg) = segment_in_file(file_index, start, flen, offset, end) {
                out.push(seg);
            }
        }
        out
    }

    /// The pieces overlapping file `i`; empty for a zero-length or out-of-range file.
    pub fn pieces_of_file(&self, i: usize) -> Range<u32> {
        let (Some(start), Some(len)) = (self.starts.get(i), self.lengths.get(i)) else {
            return 0..0;
        };
        let pl = u64::from(self.piece_length);
        let first = to_u32(start / pl);
        if *len == 0 {
            return first..first;
        }
        let end = start.saturating_add(*len);
        first..to_u32(end.div_ceil(pl))
    }

    fn files(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.starts
            .iter()
            .copied()
            .zip(self.lengths.iter().copied())
    }

    /// Index of the first file whose end lies after `offset` (binary search; ends are non-decreasing).
    fn first_file_ending_after(&self, offset: u64) -> usize {
        let mut lo = 0usize;
        let mut hi = self.starts.len();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let end = self.file_offset(mid).saturating_add(self.file_length(mid));
            if end <= offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// The part of file `[start, start + flen)` inside the request `[offset, end)`, if any.
fn segment_in_file(
    file_index: usize,
    start: u64,
    flen: u64,
    offset: u64,
    end: u64,
) -> Option<Segment> {
    let seg_start = start.max(offset);
    let seg_end = start.saturating_add(flen).min(end);
    (seg_start < seg_end).then(|| Segment {
        file_index,
        file_offset: seg_start - start,
        len: seg_end - seg_start,
        buf_offset: seg_start - offset,
    })
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `ceil(total / piece_length)` in 64 bits; a zero piece length counts as 1.
pub(crate) fn piece_count_for(total: u64, piece_length: u32) -> u64 {
    total.div_ceil(u64::from(piece_length.max(1)))
}

/// Length of piece `index` of a torrent of `total` bytes; 0 if out of range.
pub(crate) fn piece_len_for(total: u64, piece_length: u32, index: u32) -> u32 {
    let pl = u64::from(piece_length.max(1));
    let start = u64::from(index) * pl;
    if start >= total {
        return 0;
    }
    to_u32((total - start).min(pl))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn seg(file_index: usize, file_offset: u64, len: u64, buf_offset: u64) -> Segment {
        Segment {
            file_index,
            file_offset,
            len,
            buf_offset,
        }
    }

    #[test]
    fn single_file_pieces() {
        let l = FileLayout::new(&[100], 32);
        assert_eq!(l.total_length(), 100);
        assert_eq!(l.piece_count(), 4);
        assert_eq!(
            (0..5).map(|p| l.piece_len(p)).collect::<Vec<_>>(),
            [32, 32, 32, 4, 0]
        );
        assert_eq!(l.piece_offset(3), 96);
        assert_eq!(l.segments(90, 100), vec![seg(0, 90, 10, 0)]);
    }

    #[test]
    fn exact_multiple_has_full_last_piece() {
        let l = FileLayout::new(&[64], 32);
        assert_eq!(l.piece_count(), 2);
        assert_eq!(l.piece_len(1), 32);
        assert_eq!(l.piece_len(2), 0);
    }

    #[test]
    fn empty_torrent() {
        let l = FileLayout::new(&[0], 16);
        assert_eq!(l.piece_count(), 0);
        assert_eq!(l.piece_len(0), 0);
        assert!(l.segments(0, 10).is_empty());
        assert_eq!(l.pieces_of_file(0), 0..0);
        let none = FileLayout::new(&[], 16);
        assert_eq!(none.file_count(), 0);
        assert!(none.segments(0, 1).is_empty());
    }

    #[test]
    fn zero_length_files_in_the_middle_are_skipped() {
        let l = FileLayout::new(&[10, 0, 0, 5, 0, 7], 8);
        assert_eq!(l.total_length(), 22);
        assert_eq!(
            l.segments(8, 10),
            vec![seg(0, 8, 2, 0), seg(3, 0, 5, 2), seg(5, 0, 3, 7)]
        );
        assert_eq!(l.segments(10, 5), vec![seg(3, 0, 5, 0)]);
        assert_eq!(l.pieces_of_file(1), 1..1);
        assert_eq!(l.pieces_of_file(3), 1..2);
        assert_eq!(l.pieces_of_file(5), 1..3);
        assert_eq!(l.file_offset(5), 15);
    }

    #[test]
    fn segments_clip_and_handle_degenerate_ranges() {
        let l = FileLayout::new(&[4, 4], 4);
        assert!(l.segments(8, 1).is_empty());
        assert!(l.segments(3, 0).is_empty());
        assert_eq!(l.segments(6, u64::MAX), vec![seg(1, 2, 2, 0)]);
        assert_eq!(l.segments(u64::MAX, u64::MAX), vec![]);
    }

    #[test]
    fn out_of_range_queries_are_harmless() {
        let l = FileLayout::new(&[4], 0);
        assert_eq!(l.piece_length(), 1);
        assert_eq!(l.piece_count(), 4);
        assert_eq!(l.file_length(9), 0);
        assert_eq!(l.pieces_of_file(9), 0..0);
    }

    #[test]
    fn multi_gib_layout_uses_64_bit_offsets() {
        let pl = 4 << 20;
        let l = FileLayout::new(&[3 * GIB, 0, 2 * GIB + 1, 5 * GIB], pl);
        let total = 10 * GIB + 1;
        assert_eq!(l.total_length(), total);
        assert_eq!(u64::from(l.piece_count()), total.div_ceil(u64::from(pl)));
        let last = l.piece_count() - 1;
        assert_eq!(l.piece_len(last), 1);
        assert_eq!(l.piece_offset(last), 10 * GIB);
        let around = 3 * GIB - 10;
        assert_eq!(
            l.segments(around, 20),
            vec![seg(0, 3 * GIB - 10, 10, 0), seg(2, 0, 10, 10)]
        );
        assert_eq!(
            l.segments(5 * GIB, 2),
            vec![seg(2, 2 * GIB, 1, 0), seg(3, 0, 1, 1)]
        );
        assert_eq!(l.pieces_of_file(2), 768..1281);
        assert_eq!(l.pieces_of_file(3), 1280..2561);
    }

    #[test]
    fn every_piece_is_covered_exactly_by_its_segments() {
        let l = FileLayout::new(&[5, 0, 17, 1, 0, 9], 4);
        let mut covered = 0u64;
        for p in 0..l.piece_count() {
            let segs = l.segments(l.piece_offset(p), u64::from(l.piece_len(p)));
            let sum: u64 = segs.iter().map(|s| s.len).sum();
            assert_eq!(sum, u64::from(l.piece_len(p)));
            assert!(segs.iter().all(|s| l.file_length(s.file_index) > 0));
            covered += sum;
        }
        assert_eq!(covered, l.total_length());
    }
}
