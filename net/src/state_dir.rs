//! The hidden state folder `DIR/.enjambre/` of a download folder: per download, `<infohash>.torrent` (the
//! metainfo) and `<infohash>.json` (the resume checkpoint), both replaced atomically; and for the whole
//! folder `stamps.json`, the [`Stamps`] of the files whose content was verified (what lets a restart trust
//! them without hashing), and `index/library.bin`, the [`library_index`]: every download's state files in
//! one, read instead of them while the folder has not changed since it was built.
//!
//! A damaged state file never stops the peer: it is skipped (or treated as "no checkpoint") with a warning,
//! and the download is rechecked from the payload instead (invariant 3).

use crate::library_index::{self, IndexEntry};
use crate::storage::{retry_io, FileLock, FileStamp, Storage, IO_TRIES};
use enjambre_core::checkpoint::Checkpoint;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the state folder inside a download folder.
pub const STATE_DIR_NAME: &str = ".enjambre";

/// Name of the lock file inside the state folder: whoever holds its lock owns the download folder.
pub const LOCK_FILE_NAME: &str = "lock";

/// Why a download folder could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process owns the folder.
    #[error("{dir} is in use by another peer ({holder}): one folder, one peer")]
    Held {
        /// The download folder.
        dir: PathBuf,
        /// Who holds it, as its lock file says (`process 1234`), or `unknown process`.
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// Name of the stamp index inside the state folder.
pub const STAMPS_FILE_NAME: &str = "stamps.json";

/// The stamp index format version this code writes and reads.
const STAMPS_VERSION: u32 = 1;

/// Largest stamp index read back (about 100 bytes per file: 64 MiB is over half a million files).
const MAX_STAMPS_BYTES: u64 = 64 * 1024 * 1024;

/// For each complete download whose content was verified, the [`FileStamp`] (length and modification
/// time) of each of its payload files, in torrent order, taken *before* that verification.
///
/// The rule, the one libtorrent applies to its resume data: a download whose checkpoint says complete and
/// whose every payload file still has exactly the recorded length and modification time is trusted without
/// reading a byte (no spot check). A file written, truncated, replaced or touched since has another stamp
/// and goes back to the ordinary resume (spot check of the checkpoint, or a full hash). What it does not
/// catch, as libtorrent does not: a change that keeps both the length and the modification time (a clock set
/// back, `touch -r`); `--recheck` hashes everything whatever the stamps say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamps {
    /// Format version.
    version: u32,
    /// Stamps by info hash.
    torrents: BTreeMap<InfoHash, Vec<FileStamp>>,
}

impl Stamps {
    /// No stamps.
    pub fn new() -> Stamps {
        Stamps {
            version: STAMPS_VERSION,
            torrents: BTreeMap::new(),
        }
    }

    /// Record that the content of `info_hash`'s files, as `files` stamps them, is verified. A stamp
    /// without a modification time is never recorded (it could not tell a change).
    pub fn insert(&mut self, info_hash: InfoHash, files: Vec<FileStamp>) {
        if files.iter().all(|f| f.modified.is_some()) {
            self.torrents.insert(info_hash, files);
        }
    }

    /// Whether `files` (as they are now) are exactly what was recorded for `info_hash`.
    pub fn matches(&self, info_hash: &InfoHash, files: &[FileStamp]) -> bool {
        files.iter().all(|f| f.modified.is_some())
            && self.torrents.get(info_hash).map(Vec::as_slice) == Some(files)
    }

    /// How many downloads have stamps.
    pub fn len(&self) -> usize {
        self.torrents.len()
    }

    /// Whether no download has stamps.
    pub fn is_empty(&self) -> bool {
        self.torrents.is_empty()
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse a stamp index; `None` when it is not one this code wrote.
    pub fn from_json(bytes: &[u8]) -> Option<Stamps> {
        serde_json::from_slice::<Stamps>(bytes)
            .ok()
            .filter(|s| s.version == STAMPS_VERSION)
    }
}

/// Ownership of a download folder: while it lives, no other process can take the same folder.
#[derive(Debug)]
pub struct FolderLock(#[allow(dead_code)] Option<FileLock>);

/// What the state folder holds: the downloads it describes, and the state files it could not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateScan {
    /// Every download with a readable metainfo, sorted by info hash, with its usable checkpoint.
    pub downloads: Vec<(Metainfo, Option<Checkpoint>)>,
    /// Metainfo files (or the state folder itself) that could not be read even after retries, or that
    /// name another torrent.
    pub unreadable: Vec<PathBuf>,
}

/// One download's state files as read: the metainfo's bytes (or why they could not be read) and the
/// checkpoint's (`None`: no checkpoint).
struct RawEntry {
    info_hash: InfoHash,
    metainfo: Result<Vec<u8>, String>,
    checkpoint: io::Result<Option<Vec<u8>>>,
}

/// Largest metainfo file read back from the state folder.
const MAX_METAINFO_BYTES: u64 = 64 * 1024 * 1024;

/// The state folder of one download folder.
pub struct StateDir {
    storage: Arc<dyn Storage>,
    root: PathBuf,
}

impl std::fmt::Debug for StateDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDir")
            .field("root", &self.root)
            .finish()
    }
}

impl StateDir {
    /// The state folder of download folder `dir` (nothing is created until something is saved).
    pub fn new(storage: Arc<dyn Storage>, dir: &Path) -> StateDir {
        StateDir {
            storage,
            root: dir.join(STATE_DIR_NAME),
        }
    }

    /// The storage it reads and writes.
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// The state folder itself (`DIR/.enjambre`).
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Take the folder for this process: an exclusive lock on `DIR/.enjambre/lock` (the storage creates the
    /// state folder if it has to), which records our
    /// process id for whoever finds it taken. Hold the result for as long as the folder is in use.
    pub fn lock(&self) -> Result<FolderLock, LockError> {
        let path = self.root.join(LOCK_FILE_NAME);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let note = format!("process {}\n", std::process::id());
        match self.storage.lock_exclusive(&path, note.as_bytes()) {
            Ok(held) => Ok(FolderLock(held)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let holder = self
                    .storage
                    .read_file(&path)
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "unknown process".to_string());
                Err(LockError::Held {
                    dir: self.root.parent().unwrap_or(&self.root).to_path_buf(),
                    holder,
                })
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Where the metainfo of `info_hash` is kept.
    pub fn metainfo_path(&self, info_hash: &InfoHash) -> PathBuf {
        self.root.join(format!("{}.torrent", info_hash.to_hex()))
    }

    /// Where the checkpoint of `info_hash` is kept.
    pub fn checkpoint_path(&self, info_hash: &InfoHash) -> PathBuf {
        self.root.join(format!("{}.json", info_hash.to_hex()))
    }

    fn save(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.storage
            .create_dir_all(&self.root)
            .map_err(|e| ctx(e, "creating", &self.root))?;
        self.storage
            .replace_file(path, contents)
            .map_err(|e| ctx(e, "saving", path))
    }

    /// Store the metainfo (its original bytes), atomically.
    pub fn save_metainfo(&self, meta: &Metainfo) -> io::Result<()> {
        let path = self.metainfo_path(&meta.info_hash);
        let bytes = meta.to_bytes();
        // Already there (a resumed download): writing it again would only fail on a full disk.
        if self.storage.read_file(&path).ok().flatten().as_deref() == Some(bytes.as_slice()) {
            return Ok(());
        }
        self.save(&path, &bytes)
    }

    /// Store a checkpoint, atomically and durably (temp file, sync, rename, folder sync). The caller must
    /// have synced the payload data it claims first (invariant 2).
    ///
    /// A complete checkpoint equal to the one stored is not written again: every stored checkpoint went
    /// through the same sync-then-rename, and a resumed complete torrent (ten thousand of them when a library
    /// is served) would otherwise cost two syncs each for nothing. (Only complete ones are compared: a
    /// download's checkpoints differ from each other anyway.)
    pub fn save_checkpoint(&self, checkpoint: &Checkpoint) -> io::Result<()> {
        let path = self.checkpoint_path(&checkpoint.info_hash);
        let json = checkpoint.to_json();
        if checkpoint.complete
            && self.storage.read_file(&path).ok().flatten().as_deref() == Some(json.as_slice())
        {
            return Ok(());
        }
        self.save(&path, &json)
    }

    /// The checkpoint of `info_hash`, if there is a readable one. A corrupt checkpoint, or one that names
    /// another torrent, is logged as a warning and reported as `Ok(None)`; only IO failures are errors.
    pub fn load_checkpoint(&self, info_hash: &InfoHash) -> io::Result<Option<Checkpoint>> {
        let path = self.checkpoint_path(info_hash);
        let bytes = self
            .storage
            .read_file(&path)
            .map_err(|e| ctx(e, "reading", &path))?;
        Ok(bytes.and_then(|b| self.parse_checkpoint(info_hash, &b)))
    }

    /// A checkpoint of `info_hash` from its bytes; `None` (with a warning) when corrupt or another
    /// torrent's.
    fn parse_checkpoint(&self, info_hash: &InfoHash, bytes: &[u8]) -> Option<Checkpoint> {
        match Checkpoint::from_json(bytes) {
            Ok(cp) if cp.info_hash == *info_hash => Some(cp),
            Ok(_) => {
                let path = self.checkpoint_path(info_hash);
                tracing::warn!(path = %path.display(), "ignoring checkpoint that names another torrent");
                None
            }
            Err(e) => {
                let path = self.checkpoint_path(info_hash);
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable checkpoint");
                None
            }
        }
    }

    /// Every download with a readable metainfo, sorted by info hash, each with its checkpoint when that is
    /// readable and matches the metainfo. Reads that fail are tried again ([`retry_io`]); entries still
    /// unreadable are skipped with a warning (see [`StateDir::scan_downloads`] to learn about them).
    pub fn list_downloads(&self) -> Vec<(Metainfo, Option<Checkpoint>)> {
        self.scan_downloads().downloads
    }

    /// Like [`StateDir::list_downloads`], and also names the metainfo files that could not be read: each
    /// may be an unfinished download whose partial payload must not be taken for a complete file.
    ///
    /// Reads the folder's index ([`library_index`]) when it describes the folder as it is, else every state
    /// file.
    pub fn scan_downloads(&self) -> StateScan {
        let raw = match library_index::load(self.storage.as_ref(), &self.root) {
            Some(entries) => Ok(entries
                .into_iter()
                .map(|e| RawEntry {
                    info_hash: e.info_hash,
                    metainfo: Ok(e.metainfo),
                    checkpoint: Ok(e.checkpoint),
                })
                .collect()),
            None => self.read_entries(),
        };
        let mut scan = StateScan::default();
        match raw {
            Ok(entries) => {
                for entry in entries {
                    self.parse_entry(entry, &mut scan);
                }
            }
            Err(()) => scan.unreadable.push(self.root.clone()),
        }
        scan
    }

    /// The bytes of every download's state files, as the folder lists them; `Err` when the folder cannot be
    /// listed.
    fn read_entries(&self) -> Result<Vec<RawEntry>, ()> {
        let listed = retry_io(IO_TRIES, "listing the state folder", || {
            self.storage.list_dir(&self.root)
        });
        let paths = match listed {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %self.root.display(), error = %e, "cannot list the state folder");
                return Err(());
            }
        };
        Ok(paths
            .iter()
            .filter_map(|path| {
                let info_hash = torrent_file_hash(path)?;
                let metainfo = self.read_metainfo_bytes(path);
                let checkpoint = if metainfo.is_ok() {
                    let cp = self.checkpoint_path(&info_hash);
                    retry_io(IO_TRIES, "reading a checkpoint", || {
                        self.storage
                            .read_file(&cp)
                            .map_err(|e| ctx(e, "reading", &cp))
                    })
                } else {
                    Ok(None)
                };
                Some(RawEntry {
                    info_hash,
                    metainfo,
                    checkpoint,
                })
            })
            .collect())
    }

    /// Parse one download's state files into `scan`.
    fn parse_entry(&self, entry: RawEntry, scan: &mut StateScan) {
        let RawEntry {
            info_hash: ih,
            metainfo,
            checkpoint,
        } = entry;
        let path = self.metainfo_path(&ih);
        let parsed = metainfo.and_then(|b| Metainfo::from_bytes(&b).map_err(|e| e.to_string()));
        let meta = match parsed {
            Ok(m) if m.info_hash == ih => m,
            Ok(_) => {
                tracing::warn!(path = %path.display(), "skipping metainfo whose info hash differs from its name");
                scan.unreadable.push(path);
                return;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable metainfo");
                scan.unreadable.push(path);
                return;
            }
        };
        let checkpoint = match checkpoint {
            Ok(Some(bytes)) => match self.parse_checkpoint(&ih, &bytes) {
                Some(cp) => match cp.validate(&meta) {
                    Ok(_) => Some(cp),
                    Err(e) => {
                        tracing::warn!(info_hash = %ih.to_hex(), error = %e, "ignoring checkpoint that does not match its metainfo");
                        None
                    }
                },
                None => None,
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(info_hash = %ih.to_hex(), error = %e, "ignoring unreadable checkpoint");
                None
            }
        };
        scan.downloads.push((meta, checkpoint));
    }

    fn read_metainfo_bytes(&self, path: &Path) -> Result<Vec<u8>, String> {
        let what = format!("reading {}", path.display());
        match retry_io(IO_TRIES, &what, || self.storage.file_len(path)) {
            Ok(Some(len)) if len > MAX_METAINFO_BYTES => {
                return Err(format!("{len} bytes is too large"))
            }
            Err(e) => return Err(e.to_string()),
            _ => {}
        }
        retry_io(IO_TRIES, &what, || self.storage.read_file(path))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "vanished".to_string())
    }

    /// Build and save the folder's index ([`library_index`]) if the folder has been quiet long enough and
    /// the saved index does not describe it already; `now_ns` is the wall clock
    /// ([`library_index::wall_clock_ns`]). An entry that cannot be read makes no index.
    pub fn refresh_index(&self, now_ns: i64) -> io::Result<library_index::Built> {
        library_index::build(self.storage.as_ref(), &self.root, now_ns, || {
            let entries = self.read_entries().ok()?;
            entries
                .into_iter()
                .map(|e| {
                    Some(IndexEntry {
                        info_hash: e.info_hash,
                        metainfo: e.metainfo.ok()?,
                        checkpoint: e.checkpoint.ok()?,
                    })
                })
                .collect()
        })
    }

    /// Where the [`Stamps`] are kept.
    pub fn stamps_path(&self) -> PathBuf {
        self.root.join(STAMPS_FILE_NAME)
    }

    /// The stamp index; empty (with a warning) when it is missing, unreadable or damaged: that only costs
    /// spot checks.
    pub fn load_stamps(&self) -> Stamps {
        let path = self.stamps_path();
        match self.storage.file_len(&path) {
            Ok(Some(len)) if len > MAX_STAMPS_BYTES => {
                tracing::warn!(path = %path.display(), "ignoring a stamp index of {len} bytes");
                return Stamps::new();
            }
            Ok(Some(_)) => {}
            Ok(None) => return Stamps::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the stamp index");
                return Stamps::new();
            }
        }
        match self.storage.read_file(&path) {
            Ok(Some(bytes)) => Stamps::from_json(&bytes).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "ignoring a damaged stamp index");
                Stamps::new()
            }),
            Ok(None) => Stamps::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the stamp index");
                Stamps::new()
            }
        }
    }

    /// Replace the stamp index, atomically.
    pub fn save_stamps(&self, stamps: &Stamps) -> io::Result<()> {
        self.save(&self.stamps_path(), &stamps.to_json())
    }

    /// Forget a download: remove its checkpoint, then its metainfo. Missing files are not an error.
    pub fn remove(&self, info_hash: &InfoHash) -> io::Result<()> {
        for path in [
            self.checkpoint_path(info_hash),
            self.metainfo_path(info_hash),
        ] {
            self.storage
                .remove_file(&path)
                .map_err(|e| ctx(e, "removing", &path))?;
        }
        Ok(())
    }
}

/// The info hash named by a `<40 hex>.torrent` state file, if `path` is one.
fn torrent_file_hash(path: &Path) -> Option<InfoHash> {
    let name = path.file_name()?.to_str()?;
    InfoHash::from_hex(name.strip_suffix(".torrent")?)
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StdStorage;
    use enjambre_core::bitfield::Bitfield;
    use enjambre_core::metainfo::{build, FileEntry, PieceHasher};

    use crate::storage::testing::Scratch;

    fn meta(name: &str, len: usize) -> Metainfo {
        let data = vec![name.len() as u8; len];
        let mut h = PieceHasher::new(16 * 1024);
        h.feed(&data);
        let files = vec![FileEntry {
            path: vec![name.into()],
            length: len as u64,
        }];
        build(
            name,
            16 * 1024,
            files,
            h.finish(),
            Some("http://tracker.test/announce"),
        )
        .unwrap()
    }

    fn half(m: &Metainfo) -> Bitfield {
        let mut b = Bitfield::new(m.piece_count());
        for i in 0..m.piece_count() / 2 {
            b.set(i);
        }
        b
    }

    #[test]
    fn save_load_list_remove() {
        let s = Scratch::new("statedir", "basic");
        let sd = StateDir::new(Arc::new(StdStorage), &s.0);
        let (a, b) = (meta("alpha.bin", 100_000), meta("beta.bin", 50_000));
        assert!(sd.list_downloads().is_empty());
        assert_eq!(sd.load_checkpoint(&a.info_hash).unwrap(), None);
        sd.save_metainfo(&a).unwrap();
        sd.save_metainfo(&b).unwrap();
        let cp = Checkpoint::new(&a, &half(&a));
        sd.save_checkpoint(&cp).unwrap();
        assert_eq!(sd.load_checkpoint(&a.info_hash).unwrap(), Some(cp.clone()));
        // No temp files are left behind and the layout is the documented one.
        let names: Vec<String> = std::fs::read_dir(s.0.join(".enjambre"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&format!("{}.json", a.info_hash.to_hex())));
        let mut list = sd.list_downloads();
        list.sort_by_key(|(m, _)| m.info_hash);
        let mut want = vec![(a.clone(), Some(cp)), (b.clone(), None)];
        want.sort_by_key(|(m, _)| m.info_hash);
        assert_eq!(list, want);
        sd.remove(&a.info_hash).unwrap();
        sd.remove(&a.info_hash).unwrap();
        assert_eq!(sd.list_downloads(), vec![(b, None)]);
    }

    #[test]
    fn corrupt_entries_are_skipped_not_fatal() {
        let s = Scratch::new("statedir", "corrupt");
        let sd = StateDir::new(Arc::new(StdStorage), &s.0);
        let (a, b, c) = (meta("a", 70_000), meta("b", 70_000), meta("c", 70_000));
        for m in [&a, &b, &c] {
            sd.save_metainfo(m).unwrap();
            sd.save_checkpoint(&Checkpoint::new(m, &half(m))).unwrap();
        }
        // a: checkpoint truncated mid-write (as if not replaced atomically).
        let pa = sd.checkpoint_path(&a.info_hash);
        let bytes = std::fs::read(&pa).unwrap();
        std::fs::write(&pa, &bytes[..bytes.len() / 2]).unwrap();
        // b: checkpoint is well-formed JSON but claims another torrent's geometry.
        let mut wrong = Checkpoint::new(&b, &half(&b));
        wrong.total_length += 1;
        std::fs::write(sd.checkpoint_path(&b.info_hash), wrong.to_json()).unwrap();
        // c: metainfo itself is garbage; a stray file and a temp file lie around too.
        std::fs::write(sd.metainfo_path(&c.info_hash), b"d4:junk").unwrap();
        std::fs::write(s.0.join(".enjambre/notes.txt"), b"hi").unwrap();
        std::fs::write(s.0.join(".enjambre/zz.torrent.tmp"), b"hi").unwrap();

        assert_eq!(sd.load_checkpoint(&a.info_hash).unwrap(), None);
        // b's checkpoint parses; it is only rejected against the metainfo.
        assert_eq!(sd.load_checkpoint(&b.info_hash).unwrap(), Some(wrong));
        let mut list = sd.list_downloads();
        list.sort_by_key(|(m, _)| m.info_hash);
        let mut want = vec![(a, None), (b, None)];
        want.sort_by_key(|(m, _)| m.info_hash);
        assert_eq!(list, want);
    }

    #[test]
    fn checkpoint_filed_under_the_wrong_hash_is_ignored() {
        let s = Scratch::new("statedir", "wronghash");
        let sd = StateDir::new(Arc::new(StdStorage), &s.0);
        let (a, b) = (meta("a", 20_000), meta("b", 20_000));
        std::fs::create_dir_all(sd.path()).unwrap();
        std::fs::write(
            sd.checkpoint_path(&a.info_hash),
            Checkpoint::new(&b, &half(&b)).to_json(),
        )
        .unwrap();
        assert_eq!(sd.load_checkpoint(&a.info_hash).unwrap(), None);
        // An info hash that is not hex (a path, say) cannot even be held by a checkpoint: such a file is
        // ignored, as a corrupt one is.
        let json = String::from_utf8(Checkpoint::new(&a, &half(&a)).to_json()).unwrap();
        let bad = json.replace(&a.info_hash.to_hex(), "../../etc/passwd");
        std::fs::write(sd.checkpoint_path(&a.info_hash), bad).unwrap();
        assert_eq!(sd.load_checkpoint(&a.info_hash).unwrap(), None);
    }

    #[test]
    fn stamps_round_trip_and_a_damaged_index_is_empty() {
        let s = Scratch::new("statedir", "stamps");
        let sd = StateDir::new(Arc::new(StdStorage), &s.0);
        assert_eq!(sd.load_stamps(), Stamps::new());
        let (a, b) = (meta("a", 20_000), meta("b", 20_000));
        let stamp = FileStamp {
            len: 20_000,
            modified: Some(1_764_000_000_123_456_789),
        };
        let mut stamps = Stamps::new();
        stamps.insert(a.info_hash, vec![stamp]);
        // A storage without modification times cannot tell a change: nothing is recorded.
        stamps.insert(
            b.info_hash,
            vec![FileStamp {
                len: 20_000,
                modified: None,
            }],
        );
        assert_eq!(stamps.len(), 1);
        sd.save_stamps(&stamps).unwrap();
        let back = sd.load_stamps();
        assert_eq!(back, stamps);
        assert!(back.matches(&a.info_hash, &[stamp]));
        let later = FileStamp {
            modified: Some(1_764_000_000_123_456_790),
            ..stamp
        };
        assert!(!back.matches(&a.info_hash, &[later]));
        assert!(!back.matches(&b.info_hash, &[stamp]));
        std::fs::write(sd.stamps_path(), b"{\"version\":1,\"torrents\":").unwrap();
        assert_eq!(sd.load_stamps(), Stamps::new());
    }

    #[test]
    fn an_unchanged_checkpoint_is_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let s = Scratch::new("statedir", "same-checkpoint");
        let sd = StateDir::new(Arc::new(StdStorage), &s.0);
        let m = meta("a", 70_000);
        let inode = || {
            std::fs::metadata(sd.checkpoint_path(&m.info_hash))
                .unwrap()
                .ino()
        };
        let full = Checkpoint::new(&m, &Bitfield::full(m.piece_count()));
        sd.save_checkpoint(&full).unwrap();
        let first = inode();
        // Replacing goes through a new file renamed over the old one: a new inode. The same complete
        // checkpoint again is left alone.
        sd.save_checkpoint(&full).unwrap();
        assert_eq!(inode(), first);
        // Another checkpoint replaces it, and an incomplete one is written even when unchanged.
        sd.save_checkpoint(&Checkpoint::new(&m, &half(&m))).unwrap();
        let second = inode();
        assert_ne!(second, first);
        sd.save_checkpoint(&Checkpoint::new(&m, &half(&m))).unwrap();
        assert_ne!(inode(), second);
    }

    #[test]
    fn a_folder_has_one_owner_until_it_lets_go() {
        let s = Scratch::new("statedir", "lock");
        let first = StateDir::new(Arc::new(StdStorage), &s.0);
        let second = StateDir::new(Arc::new(StdStorage), &s.0);
        let held = first.lock().unwrap();
        match second.lock() {
            Err(LockError::Held { dir, holder }) => {
                assert_eq!(dir, s.0);
                assert_eq!(holder, format!("process {}", std::process::id()));
            }
            other => panic!("second lock on a held folder: {other:?}"),
        }
        drop(held);
        second.lock().unwrap();
    }
}
