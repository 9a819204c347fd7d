//! Disks that cost no memory for content: a scenario file's bytes are a function of (seed, file, offset)
//! ([`crate::content::fill_at`]), so a simulated disk keeps only *which* ranges were written and the bytes
//! that differ from the generated content (a corrupt peer's blocks, anything written to a file the scenario
//! does not know). 1,000 hosts holding a 100 MB file take a few interval maps, not 100 GB.
//!
//! Verifying a piece must not hash gigabytes either. [`StorageFile::known_sha1`] answers for a range that is
//! entirely written, all of it equal to the generated content (no differing bytes stored over it): its SHA-1
//! is the SHA-1 of the generated range, computed once per (seed, file, range) for the whole process and
//! shared by every host. Any differing byte in the range, or any hole, makes the answer `None`, and the
//! caller hashes what it reads, which is exactly the bytes a real disk would hold. So the verdict is always
//! the one real SHA-1 gives (`known_sha1_agrees_with_real_hashing` checks it on corrupt and torn pieces).
//!
//! Writes are durable at once: crash stories (lost unsynced writes, torn writes on a crash) stay on the
//! turmoil engine, whose filesystem models them.

use super::content_blocks::ContentBlocks;
use crate::content;
use enjambre_net::storage::{Storage, StorageFile};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Where a file's generated content comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContentId {
    /// Seed of the run.
    pub seed: u64,
    /// Scenario file name.
    pub name: String,
}

/// Half-open byte ranges, merged (start -> end).
#[derive(Debug, Default, Clone)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        if let Some((&s, &e)) = self.0.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let covered: Vec<(u64, u64)> = self.0.range(start..=end).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in covered {
            self.0.remove(&s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    fn contains(&self, start: u64, end: u64) -> bool {
        start >= end
            || self
                .0
                .range(..=start)
                .next_back()
                .is_some_and(|(_, &e)| e >= end)
    }

    /// The parts of `start..end` covered.
    fn within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let first = self
            .0
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        self.0
            .range(first..end)
            .filter_map(|(&s, &e)| {
                let (a, b) = (s.max(start), e.min(end));
                (a < b).then_some((a, b))
            })
            .collect()
    }
}

#[derive(Default)]
struct FileState {
    len: u64,
    written: Ranges,
    /// Bytes that differ from the generated content, non-overlapping, by start offset.
    overlay: BTreeMap<u64, Vec<u8>>,
}

impl FileState {
    /// Drop every stored differing byte in `start..end`, keeping what lies outside.
    fn clear_overlay(&mut self, start: u64, end: u64) {
        let first = self
            .overlay
            .range(..start)
            .next_back()
            .filter(|(&s, d)| s + d.len() as u64 > start)
            .map_or(start, |(&s, _)| s);
        let hit: Vec<u64> = self.overlay.range(first..end).map(|(&s, _)| s).collect();
        for s in hit {
            let Some(data) = self.overlay.remove(&s) else {
                continue;
            };
            let e = s + data.len() as u64;
            if s < start {
                self.overlay
                    .insert(s, data[..(start - s) as usize].to_vec());
            }
            if e > end {
                self.overlay
                    .insert(end, data[(end - s) as usize..].to_vec());
            }
        }
    }

    fn overlay_touches(&self, start: u64, end: u64) -> bool {
        let before = self
            .overlay
            .range(..start)
            .next_back()
            .is_some_and(|(&s, d)| s + d.len() as u64 > start);
        before || self.overlay.range(start..end).next().is_some()
    }
}

/// A file whose written bytes equal the generated content except where an overlay says otherwise.
pub struct LazyFile {
    content: Option<ContentId>,
    /// The generated content's blocks, shared with the other hosts' files of the same content.
    blocks: Option<Arc<ContentBlocks>>,
    state: Mutex<FileState>,
}

impl LazyFile {
    fn new(content: Option<ContentId>) -> LazyFile {
        LazyFile {
            blocks: content.as_ref().map(ContentBlocks::of),
            content,
            state: Mutex::new(FileState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of memory this file holds in differing bytes.
    pub fn overlay_bytes(&self) -> u64 {
        self.lock().overlay.values().map(|d| d.len() as u64).sum()
    }

    fn generated(&self, offset: u64, buf: &mut [u8]) {
        match &self.blocks {
            Some(b) => b.fill(offset, buf),
            None => buf.fill(0),
        }
    }
}

impl StorageFile for LazyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        buf.fill(0);
        let end = offset + buf.len() as u64;
        let st = self.lock();
        for (s, e) in st.written.within(offset, end) {
            self.generated(s, &mut buf[(s - offset) as usize..(e - offset) as usize]);
        }
        let first = st
            .overlay
            .range(..offset)
            .next_back()
            .map_or(offset, |(&s, _)| s);
        for (&s, data) in st.overlay.range(first..end) {
            let e = s + data.len() as u64;
            let (a, b) = (s.max(offset), e.min(end));
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize]
                    .copy_from_slice(&data[(a - s) as usize..(b - s) as usize]);
            }
        }
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let same = self.blocks.as_ref().is_some_and(|b| b.equals(offset, data));
        let mut st = self.lock();
        st.clear_overlay(offset, end);
        if !same {
            st.overlay.insert(offset, data.to_vec());
        }
        st.written.insert(offset, end);
        st.len = st.len.max(end);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.lock();
        if len < st.len {
            st.clear_overlay(len, u64::MAX);
            let kept = st.written.within(0, len);
            st.written = Ranges::default();
            for (s, e) in kept {
                st.written.insert(s, e);
            }
        }
        st.len = len;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    fn is_written(&self, offset: u64, len: u64) -> io::Result<Option<bool>> {
        Ok(Some(self.lock().written.contains(offset, offset + len)))
    }

    fn known_sha1(&self, offset: u64, len: u64) -> io::Result<Option<[u8; 20]>> {
        let Some(c) = &self.content else {
            return Ok(None);
        };
        let end = offset + len;
        {
            let st = self.lock();
            if end > st.len || !st.written.contains(offset, end) || st.overlay_touches(offset, end)
            {
                return Ok(None);
            }
        }
        Ok(Some(generated_sha1(c, offset, len)))
    }
}

/// SHA-1 of the generated bytes `offset..offset + len` of `c`, remembered for the life of the process.
pub fn generated_sha1(c: &ContentId, offset: u64, len: u64) -> [u8; 20] {
    type Cache = Mutex<BTreeMap<(ContentId, u64, u64), [u8; 20]>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = (c.clone(), offset, len);
    if let Some(d) = cache.lock().ok().and_then(|m| m.get(&key).copied()) {
        return d;
    }
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        content::fill_at(c.seed, &c.name, offset + done, &mut buf[..n]);
        h.update(&buf[..n]);
        done += n as u64;
    }
    let d: [u8; 20] = h.finalize().into();
    if let Ok(mut m) = cache.lock() {
        m.insert(key, d);
    }
    d
}

#[derive(Default)]
struct DiskState {
    files: BTreeMap<PathBuf, Arc<LazyFile>>,
    small: BTreeMap<PathBuf, Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
}

/// One host's disk.
#[derive(Clone)]
pub struct LazyDisk {
    state: Arc<Mutex<DiskState>>,
    /// Content identity of each path that holds a scenario file.
    contents: Arc<BTreeMap<PathBuf, ContentId>>,
}

impl LazyDisk {
    /// An empty disk on which `contents` names the generated content of each scenario file's path.
    pub fn new(contents: Arc<BTreeMap<PathBuf, ContentId>>) -> LazyDisk {
        LazyDisk {
            state: Arc::default(),
            contents,
        }
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put the complete generated file of `path` (`len` bytes) on the disk, at no cost.
    pub fn install(&self, path: &Path, len: u64) {
        let file = Arc::new(LazyFile::new(self.contents.get(path).cloned()));
        {
            let mut st = file.lock();
            st.written.insert(0, len);
            st.len = len;
        }
        let mut st = self.lock();
        // Its folders too (a folder torrent's files sit in subfolders of the download folder).
        st.dirs
            .extend(path.ancestors().skip(1).map(Path::to_path_buf));
        st.files.insert(path.to_path_buf(), file);
    }

    /// SHA-1 of a whole file, without reading it when it is the unmodified generated content.
    pub fn file_sha1(&self, path: &Path) -> io::Result<Option<[u8; 20]>> {
        let Some(file) = self.lock().files.get(path).cloned() else {
            return Ok(None);
        };
        let len = file.len()?;
        if let Some(d) = file.known_sha1(0, len)? {
            return Ok(Some(d));
        }
        let mut h = Sha1::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            file.read_at(&mut buf[..n], done)?;
            h.update(&buf[..n]);
            done += n as u64;
        }
        Ok(Some(h.finalize().into()))
    }

    /// Bytes held in memory for differing content and small files.
    pub fn memory_bytes(&self) -> u64 {
        let st = self.lock();
        st.files.values().map(|f| f.overlay_bytes()).sum::<u64>()
            + st.small.values().map(|d| d.len() as u64).sum::<u64>()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Storage for LazyDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = self.lock();
        if let Some(f) = st.files.get(path) {
            return Ok(f.clone());
        }
        if !create {
            return Err(not_found(path));
        }
        let file = Arc::new(LazyFile::new(self.contents.get(path).cloned()));
        if let Some(small) = st.small.remove(path) {
            file.write_at(&small, 0)?;
        }
        let mut parent = path.parent();
        while let Some(p) = parent {
            st.dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        st.files.insert(path.to_path_buf(), file.clone());
        Ok(file)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let mut p = Some(path);
        while let Some(d) = p {
            st.dirs.insert(d.to_path_buf());
            p = d.parent();
        }
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let file = {
            let st = self.lock();
            if let Some(d) = st.small.get(path) {
                return Ok(Some(d.clone()));
            }
            st.files.get(path).cloned()
        };
        let Some(file) = file else { return Ok(None) };
        let mut buf = vec![0u8; file.len()? as usize];
        file.read_at(&mut buf, 0)?;
        Ok(Some(buf))
    }

    fn replace_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        st.files.remove(path);
        st.small.insert(path.to_path_buf(), contents.to_vec());
        let mut parent = path.parent();
        while let Some(p) = parent {
            st.dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        Ok(())
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        let file = {
            let st = self.lock();
            if let Some(d) = st.small.get(path) {
                return Ok(Some(d.len() as u64));
            }
            st.files.get(path).cloned()
        };
        file.map(|f| f.len()).transpose()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let st = self.lock();
        let mut out: BTreeSet<PathBuf> = BTreeSet::new();
        let keys = st.files.keys().chain(st.small.keys()).chain(st.dirs.iter());
        for p in keys {
            if p.parent() == Some(path) {
                out.insert(p.clone());
            }
        }
        Ok(out.into_iter().collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.lock().dirs.contains(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.files.remove(path);
        st.small.remove(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> (LazyDisk, PathBuf) {
        let path = PathBuf::from("/data/f.bin");
        let contents = BTreeMap::from([(
            path.clone(),
            ContentId {
                seed: 9,
                name: "f.bin".into(),
            },
        )]);
        (LazyDisk::new(Arc::new(contents)), path)
    }

    fn real_sha1(f: &dyn StorageFile, offset: u64, len: u64) -> [u8; 20] {
        let mut buf = vec![0u8; len as usize];
        f.read_at(&mut buf, offset).unwrap();
        Sha1::digest(&buf).into()
    }

    /// The shortcut answers only where real hashing of the bytes read gives the generated digest, and every
    /// verdict (matches the piece hash or not) equals the real one: clean, corrupt, torn, unwritten and
    /// repaired pieces.
    #[test]
    fn known_sha1_agrees_with_real_hashing() {
        let (d, path) = disk();
        let piece = 64 * 1024u64;
        let f = d.open(&path, true).unwrap();
        let mut original = vec![0u8; (piece * 6) as usize];
        content::fill_at(9, "f.bin", 0, &mut original);
        let expected: Vec<[u8; 20]> = original
            .chunks(piece as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        // 0: clean. 1: one corrupt block. 2: torn (first half only). 3: unwritten.
        // 4: corrupt then rewritten clean. 5: clean except one byte past a block boundary.
        for p in [0u64, 1, 4, 5] {
            let at = p * piece;
            f.write_at(&original[at as usize..(at + piece) as usize], at)
                .unwrap();
        }
        f.write_at(&[0xAA; 16384], piece + 16384).unwrap();
        f.write_at(
            &original[(2 * piece) as usize..(2 * piece + piece / 2) as usize],
            2 * piece,
        )
        .unwrap();
        f.write_at(&[0x55; 16384], 4 * piece).unwrap();
        f.write_at(
            &original[(4 * piece) as usize..(4 * piece + 16384) as usize],
            4 * piece,
        )
        .unwrap();
        let flipped = original[(5 * piece + 16384) as usize] ^ 1;
        f.write_at(&[flipped], 5 * piece + 16384).unwrap();
        let mut shortcuts = 0;
        for p in 0..6u64 {
            let real = real_sha1(f.as_ref(), p * piece, piece);
            let known = f.known_sha1(p * piece, piece).unwrap();
            if let Some(k) = known {
                assert_eq!(k, real, "piece {p}");
                shortcuts += 1;
            }
            let verdict = known.unwrap_or(real) == expected[p as usize];
            assert_eq!(verdict, real == expected[p as usize], "piece {p}");
            assert_eq!(verdict, p == 0 || p == 4, "piece {p}");
        }
        assert_eq!(shortcuts, 2);
        assert!(d.memory_bytes() < 16384 + 16);
    }

    #[test]
    fn installed_files_cost_nothing_and_read_as_generated() {
        let (d, path) = disk();
        d.install(&path, 10_000_000);
        assert_eq!(d.memory_bytes(), 0);
        let f = d.open(&path, false).unwrap();
        let mut buf = vec![0u8; 1000];
        f.read_at(&mut buf, 4_000_001).unwrap();
        let mut want = vec![0u8; 1000];
        content::fill_at(9, "f.bin", 4_000_001, &mut want);
        assert_eq!(buf, want);
        assert_eq!(
            d.file_sha1(&path).unwrap().unwrap(),
            content::digest(9, "f.bin", 10_000_000)
        );
    }

    #[test]
    fn small_files_and_folders() {
        let (d, _) = disk();
        d.replace_file(Path::new("/data/.state/a.json"), b"one")
            .unwrap();
        d.replace_file(Path::new("/data/.state/a.json"), b"two")
            .unwrap();
        assert_eq!(
            d.read_file(Path::new("/data/.state/a.json")).unwrap(),
            Some(b"two".to_vec())
        );
        assert!(d.is_dir(Path::new("/data/.state")));
        assert_eq!(
            d.list_dir(Path::new("/data")).unwrap(),
            vec![PathBuf::from("/data/.state")]
        );
        d.remove_file(Path::new("/data/.state/a.json")).unwrap();
        assert_eq!(d.read_file(Path::new("/data/.state/a.json")).unwrap(), None);
    }
}
