//! The payload files of one torrent inside a download folder, addressed in torrent space (one contiguous
//! byte range over all files, as pieces see it).
//!
//! Synchronous by design, like [`Storage`]: drivers run these calls through a [`crate::storage::Blocking`]
//! runner. Files are opened lazily and cached; [`TorrentStore::sync`] makes every write since the previous
//! sync durable, which the driver must do before persisting a checkpoint that claims those pieces
//! (invariant 2).

use crate::send_file::FileRange;
use crate::storage::{Storage, StorageFile};
use enjambre_core::layout::FileLayout;
use enjambre_core::metainfo::Metainfo;
use sha1::{Digest, Sha1};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Largest chunk read at once while hashing a piece.
const HASH_CHUNK: usize = 1024 * 1024;

/// One cached file handle and whether it was written since the last sync.
#[derive(Default)]
struct Slot {
    file: Option<Arc<dyn StorageFile>>,
    dirty: bool,
}

/// The files of one torrent inside a download folder.
pub struct TorrentStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    paths: Vec<PathBuf>,
    layout: FileLayout,
    slots: Mutex<Vec<Slot>>,
    /// A block was read to serve a peer since the last sync: the sync keeps the page cache then.
    served: AtomicBool,
}

impl std::fmt::Debug for TorrentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorrentStore")
            .field("dir", &self.dir)
            .field("files", &self.paths.len())
            .field("total_length", &self.layout.total_length())
            .finish()
    }
}

/// Join `rel` under `dir`, refusing anything that could leave `dir` lexically: absolute paths, drive
/// prefixes, `..`, `.` and empty paths (invariant 5; metainfo paths are validated already, this is the
/// second line of defence at the point of use).
pub fn join_inside(dir: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "file path {} would escape the download folder",
                        rel.display()
                    ),
                ))
            }
        }
    }
    if depth == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty file path in metainfo",
        ));
    }
    let joined = dir.join(rel);
    if !joined.starts_with(dir) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "file path {} would escape the download folder",
                rel.display()
            ),
        ));
    }
    Ok(joined)
}

/// Wrap `e` with what was being done and to which file.
fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl TorrentStore {
    /// The store for `meta`'s files under `dir`. Fails if any file path would escape `dir`.
    pub fn new(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        meta: &Metainfo,
    ) -> io::Result<TorrentStore> {
        let layout = meta.layout();
        let rel = meta.relative_paths();
        if rel.len() != layout.file_count() {
            return Err(invalid(format!(
                "metainfo lists {} paths for {} files",
                rel.len(),
                layout.file_count()
            )));
        }
        let paths = rel
            .iter()
            .map(|r| join_inside(&dir, r))
            .collect::<io::Result<Vec<_>>>()?;
        let slots = Mutex::new((0..paths.len()).map(|_| Slot::default()).collect());
        Ok(TorrentStore {
            storage,
            dir,
            paths,
            layout,
            slots,
            served: AtomicBool::new(false),
        })
    }

    /// The download folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Full path of every payload file, in torrent order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The file layout in torrent space.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        // A panic while holding the lock cannot leave the slots inconsistent, so poisoning is ignored.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached handle of file `i`, opening it (creating it when `create`) on first use.
    fn file(&self, i: usize, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let path = self
            .paths
            .get(i)
            .ok_or_else(|| invalid(format!("file index {i} out of range")))?;
        let mut slots = self.lock();
        let slot = slots
            .get_mut(i)
            .ok_or_else(|| invalid(format!("file index {i} out of range")))?;
        if let Some(f) = &slot.file {
            return Ok(f.clone());
        }
        let f = self
            .storage
            .open(path, create)
            .map_err(|e| context(e, "opening", path))?;
        slot.file = Some(f.clone());
        Ok(f)
    }

    /// Refuse a torrent-space range that does not lie inside the payload.
    fn check_range(&self, offset: u64, len: usize) -> io::Result<()> {
        let total = self.layout.total_length();
        match offset.checked_add(len as u64) {
            Some(end) if end <= total => Ok(()),
            _ => Err(invalid(format!(
                "range {offset}+{len} outside the {total}-byte payload"
            ))),
        }
    }

    /// Write `data` at torrent-space `offset`, split across files (created on demand).
    pub fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_range(offset, data.len())?;
        for seg in self.layout.segments(offset, data.len() as u64) {
            let chunk = slice(data, seg.buf_offset, seg.len)?;
            let file = self.file(seg.file_index, true)?;
            let path = &self.paths[seg.file_index];
            file.write_at(chunk, seg.file_offset)
                .map_err(|e| context(e, "writing", path))?;
            // Mark dirty only after the write, so a concurrent sync that misses it leaves the flag set.
            if let Some(slot) = self.lock().get_mut(seg.file_index) {
                slot.dirty = true;
            }
        }
        Ok(())
    }

    /// Read `buf.len()` bytes at torrent-space `offset`, gathered across files, to serve a peer (the files'
    /// cache then stays at the next sync, see [`TorrentStore::sync`]).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check_range(offset, buf.len())?;
        self.served.store(true, Ordering::Relaxed);
        let len = buf.len() as u64;
        for seg in self.layout.segments(offset, len) {
            let chunk = slice_mut(buf, seg.buf_offset, seg.len)?;
            let file = self.file(seg.file_index, false)?;
            let path = &self.paths[seg.file_index];
            file.read_at(chunk, seg.file_offset)
                .map_err(|e| context(e, "reading", path))?;
        }
        Ok(())
    }

    /// Read `buf.len()` bytes at torrent-space `offset` only if no byte needs a wait for the device (see
    /// [`StorageFile::read_cached_at`]): `Ok(false)` sends the caller to [`TorrentStore::read`] on its
    /// blocking runner.
    pub fn read_cached(&self, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        self.check_range(offset, buf.len())?;
        self.served.store(true, Ordering::Relaxed);
        for seg in self.layout.segments(offset, buf.len() as u64) {
            let chunk = slice_mut(buf, seg.buf_offset, seg.len)?;
            let file = self.file(seg.file_index, false)?;
            if !file.read_cached_at(chunk, seg.file_offset)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `len` bytes at torrent-space `offset` can be sent to a socket straight from the files
    /// ([`TorrentStore::file_ranges`]): every file they span has a descriptor to send from and holds them in
    /// the page cache, so that the send will not wait for the device.
    pub fn sendable(&self, offset: u64, len: u64) -> bool {
        let Ok(len_usize) = usize::try_from(len) else {
            return false;
        };
        if self.check_range(offset, len_usize).is_err() {
            return false;
        }
        self.served.store(true, Ordering::Relaxed);
        self.layout.segments(offset, len).iter().all(|seg| {
            self.file(seg.file_index, false).is_ok_and(|f| {
                f.mapped_for_kernel(seg.file_offset, seg.len).is_some()
                    && f.is_cached(seg.file_offset, seg.len)
            })
        })
    }

    /// The files' ranges that hold `len` bytes at torrent-space `offset`, in order, to send as they are.
    pub fn file_ranges(&self, offset: u64, len: u64) -> io::Result<Vec<FileRange>> {
        let len_usize =
            usize::try_from(len).map_err(|_| invalid(format!("{len} bytes to send")))?;
        self.check_range(offset, len_usize)?;
        self.layout
            .segments(offset, len)
            .iter()
            .map(|seg| {
                Ok(FileRange {
                    file: self.file(seg.file_index, false)?,
                    offset: seg.file_offset,
                    len: seg.len,
                })
            })
            .collect()
    }

    /// Whether pieces written whole are likely hashed from memory ([`Storage::reads_return_writes`]): only
    /// then does holding a piece's blocks until it is complete pay for the memory it takes.
    pub fn hashes_from_memory(&self) -> bool {
        self.storage.reads_return_writes()
    }

    /// Write the whole piece `piece`, given as `blocks` that tile it in order, with one vectored write per file
    /// it spans.
    pub fn write_piece(&self, piece: u32, blocks: &[&[u8]]) -> io::Result<()> {
        let (start, len) = self.piece_range(piece)?;
        let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        if total != len {
            return Err(invalid(format!(
                "{total} bytes of blocks for piece {piece} of {len} bytes"
            )));
        }
        for seg in self.layout.segments(start, len) {
            let bufs = sub_slices(blocks, seg.buf_offset, seg.len);
            let file = self.file(seg.file_index, true)?;
            let path = &self.paths[seg.file_index];
            file.write_vectored_at(&bufs, seg.file_offset)
                .map_err(|e| context(e, "writing", path))?;
            if let Some(slot) = self.lock().get_mut(seg.file_index) {
                slot.dirty = true;
            }
        }
        Ok(())
    }

    /// SHA-1 of piece `piece` just written from `blocks` by [`TorrentStore::write_piece`]: over the bytes
    /// in memory when every file it spans [returns what was written](StorageFile::reads_return_writes),
    /// otherwise as [`TorrentStore::hash_piece`] does (the storage's known digest, or a read-back).
    pub fn hash_written_piece(&self, piece: u32, blocks: &[&[u8]]) -> io::Result<[u8; 20]> {
        let (start, len) = self.piece_range(piece)?;
        for seg in self.layout.segments(start, len) {
            if !self.file(seg.file_index, false)?.reads_return_writes() {
                return self.hash_piece(piece);
            }
        }
        let mut hasher = Sha1::new();
        for b in blocks {
            hasher.update(b);
        }
        Ok(hasher.finalize().into())
    }

    /// Torrent-space start and length of `piece`, or an error for a piece out of range.
    fn piece_range(&self, piece: u32) -> io::Result<(u64, u64)> {
        if piece >= self.layout.piece_count() {
            return Err(invalid(format!(
                "piece {piece} out of range (torrent has {})",
                self.layout.piece_count()
            )));
        }
        Ok((
            self.layout.piece_offset(piece),
            u64::from(self.layout.piece_len(piece)),
        ))
    }

    /// SHA-1 of piece `piece` as it is on disk, read in chunks of at most 1 MiB.
    pub fn hash_piece(&self, piece: u32) -> io::Result<[u8; 20]> {
        let (start, len) = self.piece_range(piece)?;
        if let [seg] = self.layout.segments(start, len).as_slice() {
            if let Some(d) = self
                .file(seg.file_index, false)
                .and_then(|f| f.known_sha1(seg.file_offset, seg.len))?
            {
                return Ok(d);
            }
        }
        let mut buf = vec![0u8; (len as usize).min(HASH_CHUNK)];
        let mut hasher = Sha1::new();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            self.read(start + done, chunk)?;
            hasher.update(&*chunk);
            done += n as u64;
        }
        Ok(hasher.finalize().into())
    }

    /// Of `pieces`, those whose every byte was written at some point (see [`StorageFile::is_written`]): after a
    /// crash of the process, pieces verified after the last checkpoint are still in the files and worth
    /// hashing instead of downloading again. `Ok(None)` when the storage cannot tell; a missing file holds
    /// nothing.
    pub fn written_pieces(
        &self,
        pieces: impl Iterator<Item = u32>,
    ) -> io::Result<Option<Vec<u32>>> {
        let mut out = Vec::new();
        'pieces: for piece in pieces.filter(|&p| p < self.layout.piece_count()) {
            let (start, len) = (
                self.layout.piece_offset(piece),
                u64::from(self.layout.piece_len(piece)),
            );
            for seg in self.layout.segments(start, len) {
                let Ok(file) = self.file(seg.file_index, false) else {
                    continue 'pieces;
                };
                match file.is_written(seg.file_offset, seg.len)? {
                    None => return Ok(None),
                    Some(false) => continue 'pieces,
                    Some(true) => {}
                }
            }
            out.push(piece);
        }
        Ok(Some(out))
    }

    /// Make every write since the last sync durable, then, unless a block was read to serve a peer since
    /// the last sync, let the OS drop those files' cached pages ([`StorageFile::release_written_back`]): a
    /// download that uploads nothing recycles its page cache instead of growing it, while one that shares
    /// what it gets (a swarm of leechers) keeps its fresh pieces cached for the peers that ask for them.
    pub fn sync(&self) -> io::Result<()> {
        let dirty: Vec<(usize, Arc<dyn StorageFile>)> = {
            let mut slots = self.lock();
            slots
                .iter_mut()
                .enumerate()
                .filter(|(_, s)| s.dirty)
                .filter_map(|(i, s)| {
                    s.dirty = false;
                    s.file.clone().map(|f| (i, f))
                })
                .collect()
        };
        let uploading = self.served.swap(false, Ordering::Relaxed);
        let mut result = Ok(());
        for (i, f) in dirty {
            let synced = f.sync_data();
            if synced.is_ok() && !uploading {
                // A hint only: a file whose cache stays is no less durable.
                let _ = f.release_written_back();
            }
            if let Err(e) = synced {
                // Keep it dirty so the next sync retries; report the first failure.
                if let Some(slot) = self.lock().get_mut(i) {
                    slot.dirty = true;
                }
                if result.is_ok() {
                    result = Err(context(e, "syncing", &self.paths[i]));
                }
            }
        }
        result
    }

    /// Create every file (and its folders) at its full length; sparse where the filesystem allows.
    /// Zero-length files are created too. Existing files of another length are resized.
    pub fn prepare(&self) -> io::Result<()> {
        for (i, path) in self.paths.iter().enumerate() {
            let want = self.layout.file_length(i);
            // A cached handle may point at a file deleted since: forget it so the file is recreated.
            let exists = self
                .storage
                .file_len(path)
                .map_err(|e| context(e, "measuring", path))?
                .is_some();
            if !exists {
                if let Some(slot) = self.lock().get_mut(i) {
                    slot.file = None;
                }
            }
            let file = self.file(i, true)?;
            let have = file.len().map_err(|e| context(e, "measuring", path))?;
            if have != want {
                file.set_len(want)
                    .map_err(|e| context(e, "resizing", path))?;
            }
            if let Some(slot) = self.lock().get_mut(i) {
                slot.dirty = true;
            }
        }
        Ok(())
    }

    /// Whether every file exists with exactly its length from the metainfo.
    pub fn sizes_match(&self) -> io::Result<bool> {
        for (i, path) in self.paths.iter().enumerate() {
            let len = self
                .storage
                .file_len(path)
                .map_err(|e| context(e, "measuring", path))?;
            if len != Some(self.layout.file_length(i)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn bounds(off: u64, len: u64, have: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(off).map_err(|_| invalid(format!("offset {off} too large")))?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| start.checked_add(l))
        .filter(|&e| e <= have)
        .ok_or_else(|| invalid(format!("segment {off}+{len} outside a {have}-byte buffer")))?;
    Ok(start..end)
}

/// The parts of the concatenation of `blocks` that lie in `off..off + len`, as slices of the blocks.
fn sub_slices<'a>(blocks: &[&'a [u8]], off: u64, len: u64) -> Vec<&'a [u8]> {
    let (mut skip, mut want) = (off, len);
    let mut out = Vec::new();
    for b in blocks {
        if want == 0 {
            break;
        }
        let blen = b.len() as u64;
        if skip >= blen {
            skip -= blen;
            continue;
        }
        let take = (blen - skip).min(want);
        // Both bounds are within `b`, which is at most usize::MAX long.
        out.push(&b[skip as usize..(skip + take) as usize]);
        want -= take;
        skip = 0;
    }
    out
}

fn slice(data: &[u8], off: u64, len: u64) -> io::Result<&[u8]> {
    let r = bounds(off, len, data.len())?;
    Ok(&data[r])
}

fn slice_mut(data: &mut [u8], off: u64, len: u64) -> io::Result<&mut [u8]> {
    let r = bounds(off, len, data.len())?;
    Ok(&mut data[r])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{Op, ScriptedStorage};
    use crate::storage::StdStorage;
    use enjambre_core::metainfo::{build, FileEntry, PieceHasher};

    /// A scratch folder removed on drop.
    use crate::storage::testing::Scratch;

    const PIECE: u32 = 16 * 1024;

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Files of 20000, 0, 30000 and 5 bytes: 50005 bytes, 4 pieces of 16 KiB.
    fn meta(data: &[u8]) -> Metainfo {
        let mut h = PieceHasher::new(PIECE);
        h.feed(data);
        let files = vec![
            FileEntry {
                path: vec!["a.bin".into()],
                length: 20_000,
            },
            FileEntry {
                path: vec!["empty".into()],
                length: 0,
            },
            FileEntry {
                path: vec!["d".into(), "b.bin".into()],
                length: 30_000,
            },
            FileEntry {
                path: vec!["c.txt".into()],
                length: 5,
            },
        ];
        build("multi", PIECE, files, h.finish(), None).unwrap()
    }

    fn store(dir: &Path, m: &Metainfo) -> TorrentStore {
        TorrentStore::new(Arc::new(StdStorage), dir.to_path_buf(), m).unwrap()
    }

    #[test]
    fn write_and_read_across_file_boundaries() {
        let s = Scratch::new("tstore", "rw");
        let data = payload(50_005);
        let m = meta(&data);
        let st = store(&s.0, &m);
        st.prepare().unwrap();
        // Write in odd-sized chunks that straddle every boundary, including the empty file at 20000.
        let mut off = 0;
        for chunk in data.chunks(7_777) {
            st.write(off, chunk).unwrap();
            off += chunk.len() as u64;
        }
        st.sync().unwrap();
        let mut back = vec![0u8; data.len()];
        st.read(0, &mut back).unwrap();
        assert_eq!(back, data);
        let mut mid = vec![0u8; 10_010];
        st.read(19_995, &mut mid).unwrap();
        assert_eq!(mid, &data[19_995..30_005]);
        // The files on disk hold exactly their slices.
        assert_eq!(
            std::fs::read(s.0.join("multi/a.bin")).unwrap(),
            &data[..20_000]
        );
        assert_eq!(std::fs::read(s.0.join("multi/empty")).unwrap(), b"");
        assert_eq!(
            std::fs::read(s.0.join("multi/d/b.bin")).unwrap(),
            &data[20_000..50_000]
        );
        assert_eq!(
            std::fs::read(s.0.join("multi/c.txt")).unwrap(),
            &data[50_000..]
        );
        // Out-of-range accesses are refused, not clipped.
        assert!(st.write(50_000, &[0; 6]).is_err());
        assert!(st.read(u64::MAX - 2, &mut [0; 4]).is_err());
        assert!(st.hash_piece(4).is_err());
    }

    #[test]
    fn hash_piece_matches_piece_hasher() {
        let s = Scratch::new("tstore", "hash");
        let data = payload(50_005);
        let m = meta(&data);
        let st = store(&s.0, &m);
        st.write(0, &data).unwrap();
        for p in 0..m.piece_count() {
            assert_eq!(
                st.hash_piece(p).unwrap(),
                m.piece_hash(p).unwrap(),
                "piece {p}"
            );
        }
        st.write(40_000, b"X").unwrap();
        assert_ne!(st.hash_piece(2).unwrap(), m.piece_hash(2).unwrap());
        assert_eq!(st.hash_piece(3).unwrap(), m.piece_hash(3).unwrap());
    }

    #[test]
    fn prepare_creates_everything_and_sizes_match_detects_truncation() {
        let s = Scratch::new("tstore", "sizes");
        let data = payload(50_005);
        let m = meta(&data);
        let st = store(&s.0, &m);
        assert!(!st.sizes_match().unwrap());
        st.prepare().unwrap();
        assert!(st.sizes_match().unwrap());
        assert_eq!(std::fs::metadata(s.0.join("multi/empty")).unwrap().len(), 0);
        assert_eq!(
            std::fs::metadata(s.0.join("multi/d/b.bin")).unwrap().len(),
            30_000
        );
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(s.0.join("multi/d/b.bin"))
            .unwrap();
        f.set_len(29_999).unwrap();
        assert!(!st.sizes_match().unwrap());
        std::fs::remove_file(s.0.join("multi/empty")).unwrap();
        st.prepare().unwrap();
        // A fresh store (cold cache) sees the repaired sizes.
        assert!(store(&s.0, &m).sizes_match().unwrap());
    }

    #[test]
    fn reading_a_missing_file_is_an_error_with_the_path() {
        let s = Scratch::new("tstore", "missing");
        let data = payload(50_005);
        let m = meta(&data);
        let err = store(&s.0, &m).read(0, &mut [0; 10]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("a.bin"), "{err}");
    }

    #[test]
    fn single_file_torrent_lives_at_dir_name() {
        let s = Scratch::new("tstore", "single");
        let data = payload(40_000);
        let mut h = PieceHasher::new(PIECE);
        h.feed(&data);
        let files = vec![FileEntry {
            path: vec!["one.iso".into()],
            length: 40_000,
        }];
        let m = build("one.iso", PIECE, files, h.finish(), None).unwrap();
        let st = store(&s.0, &m);
        st.write(0, &data).unwrap();
        st.sync().unwrap();
        assert_eq!(std::fs::read(s.0.join("one.iso")).unwrap(), data);
        assert_eq!(st.paths(), &[s.0.join("one.iso")]);
    }

    #[test]
    fn sync_covers_exactly_the_files_written_since_the_last_sync() {
        let s = Scratch::new("tstore", "sync");
        let storage = ScriptedStorage::new(StdStorage);
        let data = payload(50_005);
        let m = meta(&data);
        let st = TorrentStore::new(storage.clone(), s.0.clone(), &m).unwrap();
        // The files synced since the last look, with how many times each was.
        let synced = || -> Vec<(PathBuf, u64)> {
            let taken = storage.take(Op::Sync).into_iter();
            taken.map(|(path, t)| (path, t.calls)).collect()
        };
        let once = |files: &[usize]| -> Vec<(PathBuf, u64)> {
            let mut paths: Vec<PathBuf> = files.iter().map(|&i| st.paths()[i].clone()).collect();
            paths.sort();
            paths.into_iter().map(|p| (p, 1)).collect()
        };
        // A write straddling a.bin, the empty file and b.bin dirties both non-empty files.
        st.write(19_000, &data[19_000..21_000]).unwrap();
        st.sync().unwrap();
        assert_eq!(synced(), once(&[0, 2]));
        // Nothing new written: nothing synced. Reads do not dirty.
        st.read(0, &mut [0; 100]).unwrap();
        st.sync().unwrap();
        assert!(synced().is_empty());
        st.write(50_000, &data[50_000..]).unwrap();
        st.sync().unwrap();
        assert_eq!(synced(), once(&[3]));
        // prepare() creates/resizes every file, so every file is synced next.
        st.prepare().unwrap();
        st.sync().unwrap();
        assert_eq!(synced(), once(&[0, 1, 2, 3]));
    }

    /// A sync releases the cache of a download that served nothing since the last sync, and keeps it for
    /// one that did.
    #[test]
    fn sync_keeps_the_cache_of_a_download_that_serves() {
        let s = Scratch::new("tstore", "release");
        let data = payload(256 * 1024);
        let m = single(&data);
        let st = store(&s.0, &m);
        st.write(0, &data[..128 * 1024]).unwrap();
        // Probed through a handle of its own, which does not count as serving.
        let probe = StdStorage.open(&st.paths()[0], false).unwrap();
        let cached = |offset: u64| probe.read_cached_at(&mut [0; 4096], offset).unwrap();
        if !cached(0) {
            eprintln!("SKIP: this kernel or filesystem has no RWF_NOWAIT reads");
            return;
        }
        st.read(0, &mut [0; 100]).unwrap();
        st.sync().unwrap();
        assert!(cached(0), "the cache of a download that serves was dropped");
        // Nothing served since: this sync drops what the first one kept.
        st.write(128 * 1024, &data[128 * 1024..]).unwrap();
        st.sync().unwrap();
        assert!(!cached(0), "the cache of a download serving nothing stays");
    }

    #[test]
    fn paths_escaping_the_folder_are_refused() {
        let dir = Path::new("/downloads");
        for bad in ["../x", "a/../../x", "a/..", "/etc/passwd", "", ".", "./"] {
            assert!(join_inside(dir, Path::new(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(join_inside(dir, Path::new("a/b")).unwrap(), dir.join("a/b"));
        // A metainfo whose (public) fields were tampered with after parsing is refused at construction.
        let mut m = meta(&payload(50_005));
        m.info.files[2].path = vec!["..".into(), "..".into(), "evil".into()];
        let err = TorrentStore::new(Arc::new(StdStorage), dir.to_path_buf(), &m).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// A single 256 KiB file of four 64 KiB pieces (block-aligned on any filesystem).
    fn single(data: &[u8]) -> Metainfo {
        let mut h = PieceHasher::new(64 * 1024);
        h.feed(data);
        let files = vec![FileEntry {
            path: vec!["one.bin".into()],
            length: data.len() as u64,
        }];
        build("one.bin", 64 * 1024, files, h.finish(), None).unwrap()
    }

    #[test]
    fn written_pieces_finds_the_written_pieces_of_a_sparse_file() {
        let s = Scratch::new("tstore", "written");
        let data = payload(256 * 1024);
        let m = single(&data);
        let st = store(&s.0, &m);
        // No file yet: nothing written.
        assert_eq!(st.written_pieces(0..4).unwrap(), Some(vec![]));
        st.prepare().unwrap();
        st.write(0, &data[..64 * 1024]).unwrap();
        st.write(128 * 1024, &data[128 * 1024..192 * 1024]).unwrap();
        // Half of piece 3.
        st.write(192 * 1024, &data[192 * 1024..224 * 1024]).unwrap();
        let got = st.written_pieces(0..4).unwrap();
        if got == Some(vec![0, 1, 2, 3]) {
            eprintln!("SKIP: this filesystem does not track holes (every byte reads as written)");
            return;
        }
        assert_eq!(got, Some(vec![0, 2]));
        assert_eq!(
            st.written_pieces([2, 1, 9].into_iter()).unwrap(),
            Some(vec![2])
        );
    }

    /// Reads that come back with their first byte flipped, as a tampering disk would.
    struct Flip;
    impl crate::storage::StorageWatch for Flip {
        fn after_read(&self, buf: &mut [u8], _offset: u64) {
            if let Some(b) = buf.first_mut() {
                *b ^= 0xff;
            }
        }
        fn known_sha1_holds(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_piece_written_whole_across_files_reads_back_and_hashes_from_memory() {
        let s = Scratch::new("tstore", "whole");
        let data = payload(50_005);
        let m = meta(&data);
        let st = store(&s.0, &m);
        st.prepare().unwrap();
        for p in 0..m.piece_count() {
            let (start, len) = st.piece_range(p).unwrap();
            let piece = &data[start as usize..(start + len) as usize];
            // Blocks of 5000 bytes (the last one shorter): piece 1 spans a.bin, the empty file and d/b.bin.
            let blocks: Vec<&[u8]> = piece.chunks(5_000).collect();
            st.write_piece(p, &blocks).unwrap();
            assert_eq!(
                st.hash_written_piece(p, &blocks).unwrap(),
                m.piece_hash(p).unwrap(),
                "piece {p}"
            );
        }
        let mut back = vec![0u8; data.len()];
        st.read(0, &mut back).unwrap();
        assert_eq!(back, data);
        // Blocks that do not add up to the piece are refused before anything is written.
        let err = st.write_piece(0, &[&data[..100]]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(st.write_piece(4, &[]).is_err());
    }

    #[test]
    fn a_disk_that_tampers_with_reads_is_hashed_as_read_not_as_written() {
        let s = Scratch::new("tstore", "tamper");
        let data = payload(50_005);
        let m = meta(&data);
        let storage = Arc::new(crate::storage::Watched::new(StdStorage, Flip));
        let st = TorrentStore::new(storage, s.0.clone(), &m).unwrap();
        let piece = &data[..PIECE as usize];
        let blocks: Vec<&[u8]> = piece.chunks(4096).collect();
        st.write_piece(0, &blocks).unwrap();
        // The hash of the bytes in memory would match; the disk returns other bytes, and that is what counts.
        assert_ne!(
            st.hash_written_piece(0, &blocks).unwrap(),
            m.piece_hash(0).unwrap()
        );
        // The same store over the plain disk hashes from memory and matches.
        let plain = store(&s.0, &m);
        assert_eq!(
            plain.hash_written_piece(0, &blocks).unwrap(),
            m.piece_hash(0).unwrap()
        );
    }

    #[test]
    fn a_cached_read_returns_the_bytes_or_defers_to_a_blocking_read() {
        let s = Scratch::new("tstore", "cached");
        let data = payload(50_005);
        let m = meta(&data);
        let st = store(&s.0, &m);
        st.prepare().unwrap();
        st.write(0, &data).unwrap();
        // Just written: in the page cache. A range across files too.
        let mut buf = vec![0u8; 16_384];
        if st.read_cached(15_000, &mut buf).unwrap() {
            assert_eq!(buf, data[15_000..31_384]);
        } else {
            eprintln!("SKIP: this kernel or filesystem has no RWF_NOWAIT reads");
        }
        // Out of the payload: refused as `read` refuses it.
        assert!(st.read_cached(50_000, &mut [0; 6]).is_err());
        // A storage that cannot tell (a tampering watch keeps every read on `read_at`) always defers.
        let watched = Arc::new(crate::storage::Watched::new(StdStorage, Flip));
        let st = TorrentStore::new(watched, s.0.clone(), &m).unwrap();
        assert!(!st.read_cached(0, &mut buf).unwrap());
    }
}
