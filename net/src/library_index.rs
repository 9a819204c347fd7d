//! The state folder's index, `DIR/.enjambre/index/library.bin`: one file holding the bytes of every
//! download's state files (its metainfo and its checkpoint), so that a restart or `peer ls` on a library of
//! ten thousand downloads reads one file instead of twenty thousand (bench/manyfiles).
//!
//! It is a cache, never a source of truth: the per-download files stay what every writer writes and what
//! decides after a crash. The index is used only while the state folder's stamp (length and modification
//! time) is the one recorded in it. Every state file is replaced by a rename (temp file, sync, rename,
//! folder sync) and every download is forgotten by removing its files, and each of those changes the
//! folder's modification time; so a state folder whose stamp is the recorded one holds what the index holds.
//! A file's time moves by the kernel's clock ticks (a few milliseconds), so a change made in the same tick as
//! the recorded one would keep the stamp: the index is therefore built only from a folder that has been
//! quiet for [`QUIET_NS`] (any later change gets a later time) and saved only if the folder's stamp did not
//! move while it was read. Storages without modification times (the simulator's) never get an index.
//!
//! What it does not catch: a state file edited in place by hand (no rename), or a clock set back across the
//! recorded time. Deleting the `index` folder is always safe.
//!
//! The format (our own: a flat file read in one go, no parser of ours for a general format): a magic line,
//! the folder's stamp, the number of entries, then per entry the info hash, the metainfo's bytes and the
//! checkpoint's bytes (each length-prefixed; a checkpoint length of `u32::MAX` means none), and the SHA-1 of
//! everything before it, so that a torn or damaged index is told from a good one.

use crate::storage::{FileStamp, Storage};
use enjambre_core::metainfo::InfoHash;
use sha1::{Digest, Sha1};
use std::io;
use std::path::{Path, PathBuf};

/// Folder of the index inside the state folder (its own folder, so that writing it does not change the
/// state folder's stamp).
pub const INDEX_DIR_NAME: &str = "index";

/// The index file's name inside [`INDEX_DIR_NAME`].
pub const INDEX_FILE_NAME: &str = "library.bin";

/// How long the state folder must have been left alone before an index of it is built: well over the
/// kernel's clock tick, the step in which file times move.
pub const QUIET_NS: i64 = 100_000_000;

/// First line of an index file (names the format version).
const MAGIC: &[u8] = b"enjambre library index 1\n";

/// Largest index read back (about 500 bytes a download: 256 MiB is half a million downloads).
const MAX_INDEX_BYTES: u64 = 256 * 1024 * 1024;

/// Marks an entry without a checkpoint.
const NO_CHECKPOINT: u32 = u32::MAX;

/// One download's state files, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The info hash its files are named by.
    pub info_hash: InfoHash,
    /// The bytes of `<infohash>.torrent`.
    pub metainfo: Vec<u8>,
    /// The bytes of `<infohash>.json`, when there is one.
    pub checkpoint: Option<Vec<u8>>,
}

/// What was built: whether an index was saved, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Built {
    /// Saved, for the state folder stamped so.
    Saved(FileStamp),
    /// The saved index already describes the folder as it is.
    UpToDate(FileStamp),
    /// The folder changed less than [`QUIET_NS`] ago, or while it was read: try again later.
    NotQuiet,
    /// The storage keeps no modification times (or there is no state folder): no index.
    Unsupported,
}

/// Where the index of the state folder `state_root` lives.
pub fn index_path(state_root: &Path) -> PathBuf {
    state_root.join(INDEX_DIR_NAME).join(INDEX_FILE_NAME)
}

/// The state folder's stamp, when the storage keeps modification times.
pub fn folder_stamp(storage: &dyn Storage, state_root: &Path) -> Option<FileStamp> {
    storage
        .file_stamp(state_root)
        .ok()
        .flatten()
        .filter(|s| s.modified.is_some())
}

/// The entries of the index of `state_root` if it describes the folder as it is now; `None` when there is
/// no index, when it is damaged or when the folder changed since it was built (then read the files).
pub fn load(storage: &dyn Storage, state_root: &Path) -> Option<Vec<IndexEntry>> {
    let now = folder_stamp(storage, state_root)?;
    let (stamp, entries) = read_index(storage, state_root)?;
    (stamp == now).then_some(entries)
}

/// The stamp recorded in the saved index, if it is readable.
pub fn saved_stamp(storage: &dyn Storage, state_root: &Path) -> Option<FileStamp> {
    read_index(storage, state_root).map(|(stamp, _)| stamp)
}

fn read_index(storage: &dyn Storage, state_root: &Path) -> Option<(FileStamp, Vec<IndexEntry>)> {
    let path = index_path(state_root);
    match storage.file_len(&path) {
        Ok(Some(len)) if len <= MAX_INDEX_BYTES => {}
        _ => return None,
    }
    let bytes = storage.read_file(&path).ok()??;
    let decoded = decode(&bytes);
    if decoded.is_none() {
        tracing::warn!(path = %path.display(), "ignoring a damaged library index");
    }
    decoded
}

/// Build the index of `state_root` from its files and save it, if the folder has been quiet since
/// [`QUIET_NS`] before `now_ns` (nanoseconds since the Unix epoch, the clock file times are on) and stays so
/// while it is read. `read_entries` reads the state files (the caller's reader, with its retries); an entry
/// that cannot be read makes no index (the per-file scan reports it).
pub fn build(
    storage: &dyn Storage,
    state_root: &Path,
    now_ns: i64,
    read_entries: impl FnOnce() -> Option<Vec<IndexEntry>>,
) -> io::Result<Built> {
    let Some(before) = folder_stamp(storage, state_root) else {
        return Ok(Built::Unsupported);
    };
    let dir = state_root.join(INDEX_DIR_NAME);
    if !storage.is_dir(&dir) {
        // Making the index's folder changes the state folder's stamp: the next call builds.
        storage.create_dir_all(&dir)?;
        return Ok(Built::NotQuiet);
    }
    if saved_stamp(storage, state_root) == Some(before) {
        return Ok(Built::UpToDate(before));
    }
    let changed_at = before.modified.unwrap_or(i64::MAX);
    if now_ns.saturating_sub(changed_at) < QUIET_NS {
        return Ok(Built::NotQuiet);
    }
    let Some(entries) = read_entries() else {
        return Ok(Built::NotQuiet);
    };
    if folder_stamp(storage, state_root) != Some(before) {
        return Ok(Built::NotQuiet);
    }
    storage.replace_file(&index_path(state_root), &encode(before, &entries))?;
    Ok(Built::Saved(before))
}

/// Nanoseconds since the Unix epoch now, on the clock file times are stamped with.
pub fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn encode(stamp: FileStamp, entries: &[IndexEntry]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| 28 + e.metainfo.len() + e.checkpoint.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 24 + size + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&stamp.len.to_le_bytes());
    out.extend_from_slice(&stamp.modified.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.info_hash.0);
        put_bytes(&mut out, Some(&e.metainfo));
        put_bytes(&mut out, e.checkpoint.as_deref());
    }
    let digest: [u8; 20] = Sha1::digest(&out).into();
    out.extend_from_slice(&digest);
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            // State files are far below 4 GiB (metainfo files are refused above 64 MiB).
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&NO_CHECKPOINT.to_le_bytes()),
    }
}

fn decode(bytes: &[u8]) -> Option<(FileStamp, Vec<IndexEntry>)> {
    let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(20)?)?;
    if Sha1::digest(body).as_slice() != digest {
        return None;
    }
    let mut r = Reader(body.strip_prefix(MAGIC)?);
    let len = u64::from_le_bytes(r.array()?);
    let modified = i64::from_le_bytes(r.array()?);
    let count = u64::from_le_bytes(r.array()?);
    let mut entries = Vec::with_capacity(usize::try_from(count).ok()?.min(body.len() / 28));
    for _ in 0..count {
        let info_hash = InfoHash(r.array()?);
        let metainfo = r.bytes()?.ok_or(()).ok()?.to_vec();
        let checkpoint = r.bytes()?.map(<[u8]>::to_vec);
        entries.push(IndexEntry {
            info_hash,
            metainfo,
            checkpoint,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    let stamp = FileStamp {
        len,
        modified: Some(modified),
    };
    Some((stamp, entries))
}

/// Reads an index body front to back; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A length-prefixed byte string: `Some(None)` for the "none" marker.
    fn bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let n = u32::from_le_bytes(self.array()?);
        if n == NO_CHECKPOINT {
            return Some(None);
        }
        self.take(usize::try_from(n).ok()?).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(b: u8, checkpoint: bool) -> IndexEntry {
        IndexEntry {
            info_hash: InfoHash([b; 20]),
            metainfo: vec![b; 10 + b as usize],
            checkpoint: checkpoint.then(|| vec![b ^ 0xff; 3]),
        }
    }

    #[test]
    fn encode_decode_round_trip_and_damage_is_refused() {
        let stamp = FileStamp {
            len: 4096,
            modified: Some(1_764_000_000_123_456_789),
        };
        let entries = vec![entry(1, true), entry(2, false), entry(3, true)];
        let bytes = encode(stamp, &entries);
        assert_eq!(decode(&bytes), Some((stamp, entries.clone())));
        assert_eq!(decode(&encode(stamp, &[])), Some((stamp, vec![])));
        // A torn index (any prefix) and a flipped byte anywhere are refused.
        for cut in [0, 1, MAGIC.len(), bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for at in [0, MAGIC.len() + 3, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert_eq!(decode(&bad), None, "flip at {at}");
        }
    }
}
