//! The resume checkpoint: a small, human-readable JSON file per download saying which pieces are verified
//! *and durable* (invariant 2: the driver syncs data before it persists a checkpoint that claims it).
//!
//! Pure: this module only builds, (de)serialises and validates the record. On resume the driver loads it,
//! [`Checkpoint::validate`]s it against the metainfo, and hash-checks [`spot_check_pieces`] before trusting
//! the rest (invariant 3: never trust an unverified piece).

use crate::bitfield::Bitfield;
use crate::metainfo::{InfoHash, Metainfo};
use serde::{Deserialize, Serialize};

/// The checkpoint format version this code writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Largest checkpoint file [`Checkpoint::from_json`] accepts.
pub const MAX_CHECKPOINT_BYTES: usize = 16 * 1024 * 1024;

/// What is durable for one download. Field order is the JSON field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version, [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// Info hash; lowercase hex in the file (upper case is read too).
    pub info_hash: InfoHash,
    /// Torrent name.
    pub name: String,
    /// Nominal piece length in bytes.
    pub piece_length: u32,
    /// Total payload length in bytes.
    pub total_length: u64,
    /// Number of pieces.
    pub piece_count: u32,
    /// Verified pieces in [`Bitfield::to_ranges`] form, e.g. `"0-36,40"`.
    pub verified: String,
    /// Number of verified pieces (redundant, for humans; checked on load).
    pub verified_count: u32,
    /// Lowest unverified piece (redundant, for humans; checked on load).
    pub first_missing: Option<u32>,
    /// Whether every piece is verified (redundant, for humans; checked on load).
    pub complete: bool,
    /// The payload files, relative to the download folder, in torrent order.
    pub files: Vec<CheckpointFile>,
}

/// One payload file as recorded in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// Path relative to the download folder, components joined with `/`.
    pub path: String,
    /// Length in bytes.
    pub length: u64,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not valid checkpoint JSON (or too large).
    #[error("checkpoint is not valid JSON: {0}")]
    Json(String),
    /// Written by an unknown format version.
    #[error("unsupported checkpoint version {0}")]
    Version(u32),
    /// The checkpoint belongs to another torrent.
    #[error("checkpoint belongs to another torrent")]
    InfoHashMismatch,
    /// A geometry field (named) disagrees with the metainfo.
    #[error("checkpoint {0} does not match the metainfo")]
    GeometryMismatch(&'static str),
    /// The verified ranges are malformed, out of range, or disagree with the summary fields.
    #[error("checkpoint verified ranges are malformed or inconsistent")]
    BadRanges,
}

/// An info hash as hex text in a checkpoint file.
/// The download-relative path of each payload file, `/`-joined.
fn file_records(meta: &Metainfo) -> Vec<CheckpointFile> {
    meta.relative_paths()
        .iter()
        .zip(meta.info.files.iter())
        .map(|(p, f)| CheckpointFile {
            path: p
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
            length: f.length,
        })
        .collect()
}

/// Parse canonical ranges (strictly increasing, non-overlapping, as written by `to_ranges`). Rejecting
/// anything else keeps parsing linear in the input and the piece count.
fn parse_ranges(text: &str, len: u32) -> Option<Bitfield> {
    let mut next_allowed: u64 = 0;
    for part in text.split(',') {
        if text.is_empty() {
            break;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?),
            None => {
                let v = part.parse::<u32>().ok()?;
                (v, v)
            }
        };
        if (lo as u64) < next_allowed || lo > hi || hi >= len {
            return None;
        }
        next_allowed = hi as u64 + 1;
    }
    Bitfield::from_ranges(text, len)
}

impl Checkpoint {
    /// The checkpoint for `meta` claiming exactly the pieces in `verified`.
    pub fn new(meta: &Metainfo, verified: &Bitfield) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            info_hash: meta.info_hash,
            name: meta.info.name.clone(),
            piece_length: meta.piece_length(),
            total_length: meta.total_length(),
            piece_count: meta.piece_count(),
            verified: verified.to_ranges(),
            verified_count: verified.count(),
            first_missing: verified.first_missing(),
            complete: verified.is_full(),
            files: file_records(meta),
        }
    }

    /// Pretty JSON with a trailing newline, fields in declaration order.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail; fall back to compact output just in case.
        let mut out = serde_json::to_vec_pretty(self)
            .unwrap_or_else(|_| serde_json::to_vec(self).unwrap_or_default());
        out.push(b'\n');
        out
    }

    /// Parse a checkpoint file. Never panics; inputs over [`MAX_CHECKPOINT_BYTES`] are refused unread.
    pub fn from_json(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        if bytes.len() > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::Json(format!(
                "{} bytes exceeds the {MAX_CHECKPOINT_BYTES}-byte limit",
                bytes.len()
            )));
        }
        // Read the version first so a future format is reported as such, not as a field error.
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly =
            serde_json::from_slice(bytes).map_err(|e| CheckpointError::Json(e.to_string()))?;
        if v.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(v.version));
        }
        serde_json::from_slice(bytes).map_err(|e| CheckpointError::Json(e.to_string()))
    }

    /// Check every field against `meta` and return the claimed verified set.
    pub fn validate(&self, meta: &Metainfo) -> Result<Bitfield, CheckpointError> {
        if self.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(self.version));
        }
        if self.info_hash != meta.info_hash {
            return Err(CheckpointError::InfoHashMismatch);
        }
        if self.name != meta.info.name {
            return Err(CheckpointError::GeometryMismatch("name"));
        }
        if self.piece_length != meta.piece_length() {
            return Err(CheckpointError::GeometryMismatch("piece_length"));
        }
        if self.total_length != meta.total_length() {
            return Err(CheckpointError::GeometryMismatch("total_length"));
        }
        if self.piece_count != meta.piece_count() {
            return Err(CheckpointError::GeometryMismatch("piece_count"));
        }
        if self.files != file_records(meta) {
            return Err(CheckpointError::GeometryMismatch("files"));
        }
        let verified =
            parse_ranges(&self.verified, self.piece_count).ok_or(CheckpointError::BadRanges)?;
        if verified.count() != self.verified_count
            || verified.first_missing() != self.first_missing
            || verified.is_full() != self.complete
        {
            return Err(CheckpointError::BadRanges);
        }
        Ok(verified)
    }
}

/// Uniform index in `0..n` (`n > 0`) from one 64-bit draw (multiply-shift; bias is negligible here).
fn below(rng: &mut impl rand_core::RngCore, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// Pieces to hash-check before trusting a checkpoint's claims: the last claimed piece (the one most likely
/// to have been in flight at a crash), the first, then `extra` distinct random others chosen with `rng`.
/// No duplicates; empty when nothing is claimed.
pub fn spot_check_pieces(
    claimed: &Bitfield,
    extra: usize,
    rng: &mut impl rand_core::RngCore,
) -> Vec<u32> {
    let mut ones: Vec<u32> = claimed.iter_ones().collect();
    let (Some(&first), Some(&last)) = (ones.first(), ones.last()) else {
        return Vec::new();
    };
    let mut out = vec![last];
    if first != last {
        out.push(first);
    }
    // Partial Fisher-Yates over the members strictly between first and last.
    let middle_len = ones.len().saturating_sub(2);
    if middle_len > 0 {
        let middle = &mut ones[1..=middle_len];
        let take = extra.min(middle_len);
        for i in 0..take {
            let j = i + below(rng, middle_len - i);
            middle.swap(i, j);
        }
        out.extend_from_slice(&middle[..take]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{build, FileEntry, PieceHasher};
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 3-file torrent of 10 pieces of 16 KiB (last one shorter).
    fn meta() -> Metainfo {
        let piece = 16 * 1024;
        let lens = [70_000u64, 0, 90_000];
        let total: u64 = lens.iter().sum();
        let mut h = PieceHasher::new(piece);
        h.feed(&vec![7u8; total as usize]);
        let files = vec![
            FileEntry {
                path: vec!["a.bin".into()],
                length: lens[0],
            },
            FileEntry {
                path: vec!["sub".into(), "empty".into()],
                length: lens[1],
            },
            FileEntry {
                path: vec!["sub".into(), "b.bin".into()],
                length: lens[2],
            },
        ];
        build("demo", piece, files, h.finish(), None).unwrap()
    }

    fn some_verified(m: &Metainfo) -> Bitfield {
        let mut b = Bitfield::new(m.piece_count());
        for i in [0, 1, 2, 5, 9] {
            b.set(i);
        }
        b
    }

    #[test]
    fn round_trip_and_fields() {
        let m = meta();
        assert_eq!(m.piece_count(), 10);
        let b = some_verified(&m);
        let cp = Checkpoint::new(&m, &b);
        assert_eq!(cp.verified, "0-2,5,9");
        assert_eq!(cp.verified_count, 5);
        assert_eq!(cp.first_missing, Some(3));
        assert!(!cp.complete);
        assert_eq!(cp.files.len(), 3);
        assert_eq!(cp.files[1].path, "demo/sub/empty");
        let json = cp.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        // Human-readable and in declaration order.
        assert!(text.starts_with("{\n  \"version\": 1,\n  \"info_hash\": \""));
        assert!(text.find("\"verified\"").unwrap() < text.find("\"files\"").unwrap());
        let back = Checkpoint::from_json(&json).unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.validate(&m).unwrap(), b);
    }

    #[test]
    fn complete_and_empty_sets_validate() {
        let m = meta();
        let full = Bitfield::full(m.piece_count());
        let cp = Checkpoint::new(&m, &full);
        assert!(cp.complete);
        assert_eq!(cp.first_missing, None);
        assert_eq!(cp.verified, "0-9");
        assert_eq!(cp.validate(&m).unwrap(), full);
        let none = Checkpoint::new(&m, &Bitfield::new(m.piece_count()));
        assert_eq!(none.verified, "");
        assert_eq!(none.validate(&m).unwrap().count(), 0);
    }

    #[test]
    fn every_validation_failure_is_named() {
        let m = meta();
        let good = Checkpoint::new(&m, &some_verified(&m));
        let check = |f: &dyn Fn(&mut Checkpoint), want: CheckpointError| {
            let mut cp = good.clone();
            f(&mut cp);
            assert_eq!(cp.validate(&m), Err(want));
        };
        check(&|c| c.version = 2, CheckpointError::Version(2));
        check(
            &|c| c.info_hash = InfoHash([0; 20]),
            CheckpointError::InfoHashMismatch,
        );
        check(
            &|c| c.name = "other".into(),
            CheckpointError::GeometryMismatch("name"),
        );
        check(
            &|c| c.piece_length *= 2,
            CheckpointError::GeometryMismatch("piece_length"),
        );
        check(
            &|c| c.total_length += 1,
            CheckpointError::GeometryMismatch("total_length"),
        );
        check(
            &|c| c.piece_count += 1,
            CheckpointError::GeometryMismatch("piece_count"),
        );
        check(
            &|c| c.files[2].length -= 1,
            CheckpointError::GeometryMismatch("files"),
        );
        check(
            &|c| c.files[0].path = "../a.bin".into(),
            CheckpointError::GeometryMismatch("files"),
        );
        check(
            &|c| drop(c.files.pop()),
            CheckpointError::GeometryMismatch("files"),
        );
        check(&|c| c.verified = "0-10".into(), CheckpointError::BadRanges);
        check(&|c| c.verified = "x".into(), CheckpointError::BadRanges);
        check(
            &|c| c.verified = "5,0-2,9".into(),
            CheckpointError::BadRanges,
        );
        check(
            &|c| c.verified = "0-2,2-5,9".into(),
            CheckpointError::BadRanges,
        );
        check(
            &|c| c.verified = "0-2,5,9,".into(),
            CheckpointError::BadRanges,
        );
        check(&|c| c.verified_count = 6, CheckpointError::BadRanges);
        check(&|c| c.first_missing = None, CheckpointError::BadRanges);
        check(&|c| c.complete = true, CheckpointError::BadRanges);
        // A hex info hash in upper case is still the same torrent; one that is not hex is no checkpoint.
        let hex = m.info_hash.to_hex();
        let json = String::from_utf8(good.to_json()).expect("checkpoints are UTF-8 JSON");
        let upper = Checkpoint::from_json(json.replace(&hex, &hex.to_uppercase()).as_bytes());
        assert_eq!(upper.map(|cp| cp.validate(&m).is_ok()), Ok(true));
        assert!(matches!(
            Checkpoint::from_json(json.replace(&hex, "nonsense").as_bytes()),
            Err(CheckpointError::Json(_))
        ));
    }

    #[test]
    fn corrupt_truncated_and_huge_inputs_are_typed_errors() {
        let m = meta();
        let json = Checkpoint::new(&m, &some_verified(&m)).to_json();
        for cut in 0..json.len() - 1 {
            assert!(
                matches!(
                    Checkpoint::from_json(&json[..cut]),
                    Err(CheckpointError::Json(_))
                ),
                "cut {cut}"
            );
        }
        assert!(matches!(
            Checkpoint::from_json(b"\xff\xfe garbage"),
            Err(CheckpointError::Json(_))
        ));
        assert!(matches!(
            Checkpoint::from_json(b"[1,2,3]"),
            Err(CheckpointError::Json(_))
        ));
        assert!(matches!(
            Checkpoint::from_json(b"{\"version\": -1}"),
            Err(CheckpointError::Json(_))
        ));
        let nested = "[".repeat(100_000);
        assert!(matches!(
            Checkpoint::from_json(nested.as_bytes()),
            Err(CheckpointError::Json(_))
        ));
        let huge = vec![b' '; MAX_CHECKPOINT_BYTES + 1];
        assert!(matches!(
            Checkpoint::from_json(&huge),
            Err(CheckpointError::Json(_))
        ));
        // Future versions are reported as such even if their fields differ.
        assert_eq!(
            Checkpoint::from_json(b"{\"version\": 7, \"new\": true}"),
            Err(CheckpointError::Version(7))
        );
        // Wrong field types.
        let text = String::from_utf8(json)
            .unwrap()
            .replace("\"piece_count\": 10", "\"piece_count\": \"10\"");
        assert!(matches!(
            Checkpoint::from_json(text.as_bytes()),
            Err(CheckpointError::Json(_))
        ));
    }

    #[test]
    fn spot_check_covers_last_first_and_random_distinct_members() {
        let mut claimed = Bitfield::new(1000);
        for i in (3..900).step_by(3) {
            claimed.set(i);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let picks = spot_check_pieces(&claimed, 8, &mut rng);
        assert_eq!(picks.len(), 10);
        assert_eq!(picks[0], 897);
        assert_eq!(picks[1], 3);
        let mut sorted = picks.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), picks.len());
        assert!(picks.iter().all(|&p| claimed.get(p)));
        // Deterministic for a seed.
        assert_eq!(
            spot_check_pieces(&claimed, 8, &mut ChaCha8Rng::seed_from_u64(42)),
            picks
        );
    }

    #[test]
    fn spot_check_small_sets() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(spot_check_pieces(&Bitfield::new(5), 3, &mut rng).is_empty());
        let mut one = Bitfield::new(5);
        one.set(4);
        assert_eq!(spot_check_pieces(&one, 3, &mut rng), vec![4]);
        let full = Bitfield::full(4);
        let mut picks = spot_check_pieces(&full, 100, &mut rng);
        assert_eq!(&picks[..2], &[3, 0]);
        picks.sort_unstable();
        assert_eq!(picks, vec![0, 1, 2, 3]);
    }
}
