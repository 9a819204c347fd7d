//! Test support for the disk seam: [`ScriptedStorage`], the one storage wrapper tests use to count what a
//! driver asks of the disk and to make chosen operations fail, and [`Scratch`], the one scratch folder.
//!
//! Compiled for this crate's own tests and, behind the `test-support` feature, for other crates' tests
//! (`enjambre-net = { ..., features = ["test-support"] }` in their `[dev-dependencies]`): product builds do
//! not carry it.
//!
//! [`crate::storage::Watched`] serves storages that observe or tamper with what succeeded (a simulated disk
//! probe, a corrupting peer); this one answers the questions of a test: how many times was this file read,
//! what was synced, and what does the driver do when this call fails.

use super::{FileLock, FileStamp, Storage, StorageFile};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a [`ScriptedStorage`] counts and can fail: one kind for each call of [`Storage`] and
/// [`StorageFile`] that can fail ([`Storage::is_dir`] is passed through unseen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// [`Storage::open`].
    Open,
    /// [`StorageFile::read_at`], and [`StorageFile::read_cached_at`] when it read.
    Read,
    /// [`StorageFile::write_at`], [`StorageFile::write_vectored_at`] and [`StorageFile::set_len`].
    Write,
    /// [`StorageFile::sync_data`].
    Sync,
    /// [`Storage::file_len`], [`Storage::file_stamp`], [`StorageFile::len`] and [`StorageFile::is_written`].
    Metadata,
    /// [`Storage::read_file`] (a whole small file).
    ReadFile,
    /// [`Storage::replace_file`].
    ReplaceFile,
    /// [`Storage::list_dir`].
    ListDir,
    /// [`Storage::create_dir_all`].
    CreateDir,
    /// [`Storage::remove_file`].
    Remove,
    /// [`Storage::lock_exclusive`].
    Lock,
}

/// What the calls of one [`Op`] on one path came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls made, failed ones included.
    pub calls: u64,
    /// Bytes moved by the calls that succeeded (read, written or replaced; 0 for the other kinds).
    pub bytes: u64,
}

/// A failure to inject: calls of one [`Op`], on the paths a predicate picks, fail with an
/// [`io::ErrorKind`] for their first `times` matches, or until [cleared](ScriptedStorage::clear_faults).
///
/// A [`io::ErrorKind::NotFound`] fault on a call whose contract answers `Ok(None)` for a missing file
/// ([`Op::ReadFile`], and [`Op::Metadata`]'s `file_len` / `file_stamp`) answers `Ok(None)`, and on
/// [`Op::ListDir`] an empty list: the file or folder looks absent, as a real one would.
pub struct Fault {
    op: Op,
    kind: io::ErrorKind,
    paths: Box<dyn Fn(&Path) -> bool + Send + Sync>,
    times: Option<u64>,
}

impl Fault {
    /// Every call of `op`, on any path, fails with `kind` until cleared.
    pub fn new(op: Op, kind: io::ErrorKind) -> Fault {
        Fault {
            op,
            kind,
            paths: Box::new(|_| true),
            times: None,
        }
    }

    /// Only calls on the paths `paths` accepts fail.
    pub fn on(mut self, paths: impl Fn(&Path) -> bool + Send + Sync + 'static) -> Fault {
        self.paths = Box::new(paths);
        self
    }

    /// Only the first `times` matching calls fail; the later ones go through.
    pub fn times(mut self, times: u64) -> Fault {
        self.times = Some(times);
        self
    }

    fn matches(&self, op: Op, path: &Path) -> bool {
        self.op == op && self.times != Some(0) && (self.paths)(path)
    }
}

/// Tallies and armed faults, shared by a storage and the files it opened.
#[derive(Default)]
struct Script {
    tallies: BTreeMap<(Op, PathBuf), Tally>,
    faults: Vec<Fault>,
}

/// How an injected fault answers.
enum Injected {
    /// The file looks absent (`Ok(None)`).
    Missing,
    /// The call fails.
    Failed(io::Error),
}

#[derive(Default, Clone)]
struct Shared(Arc<Mutex<Script>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock already failed; its tallies are still worth reading.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a call of `op` on `path`, and the fault it meets, if any (which uses up one of its `times`).
    fn enter(&self, op: Op, path: &Path) -> Option<Injected> {
        let mut script = self.lock();
        script
            .tallies
            .entry((op, path.to_path_buf()))
            .or_default()
            .calls += 1;
        let fault = script.faults.iter_mut().find(|f| f.matches(op, path))?;
        if let Some(left) = &mut fault.times {
            *left -= 1;
        }
        Some(match fault.kind {
            io::ErrorKind::NotFound if matches!(op, Op::ReadFile | Op::Metadata | Op::ListDir) => {
                Injected::Missing
            }
            kind => Injected::Failed(io::Error::new(kind, "injected by ScriptedStorage")),
        })
    }

    /// Whether a call of `op` on `path` would meet a fault (without counting it or using the fault up).
    fn armed(&self, op: Op, path: &Path) -> bool {
        self.lock().faults.iter().any(|f| f.matches(op, path))
    }

    fn moved(&self, op: Op, path: &Path, bytes: u64) {
        if let Some(t) = self.lock().tallies.get_mut(&(op, path.to_path_buf())) {
            t.bytes += bytes;
        }
    }

    /// Run `call` as a call of `op` on `path`, unless a fault answers first.
    fn run<T>(
        &self,
        op: Op,
        path: &Path,
        missing: impl FnOnce() -> T,
        call: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        match self.enter(op, path) {
            Some(Injected::Missing) => Ok(missing()),
            Some(Injected::Failed(e)) => Err(e),
            None => call(),
        }
    }

    /// As [`Shared::run`] for a call with no "missing" answer (a `NotFound` fault fails it).
    fn run_or_fail<T>(
        &self,
        op: Op,
        path: &Path,
        call: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        match self.enter(op, path) {
            Some(Injected::Missing) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "injected by ScriptedStorage",
            )),
            Some(Injected::Failed(e)) => Err(e),
            None => call(),
        }
    }
}

/// A storage that forwards every call to the storage it wraps, counts the calls (and bytes) of each
/// [`Op`] per path, and fails the calls its armed [`Fault`]s pick.
///
/// Keep an `Arc` of it to read the tallies and arm faults while a driver uses it (it coerces to
/// `Arc<dyn Storage>`).
pub struct ScriptedStorage<S> {
    inner: S,
    script: Shared,
}

impl<S: Storage> ScriptedStorage<S> {
    /// `inner`, with nothing counted yet and no fault armed.
    pub fn new(inner: S) -> Arc<ScriptedStorage<S>> {
        Arc::new(ScriptedStorage {
            inner,
            script: Shared::default(),
        })
    }

    /// Arm `fault` (faults are tried in the order they were armed; the first that matches a call answers).
    pub fn fail(&self, fault: Fault) {
        self.script.lock().faults.push(fault);
    }

    /// Disarm every fault.
    pub fn clear_faults(&self) {
        self.script.lock().faults.clear();
    }

    /// The tallies of `op` by path since they were last taken, and forget them.
    pub fn take(&self, op: Op) -> BTreeMap<PathBuf, Tally> {
        let mut script = self.script.lock();
        let (taken, kept) = std::mem::take(&mut script.tallies)
            .into_iter()
            .partition(|((o, _), _)| *o == op);
        script.tallies = kept;
        taken.into_iter().map(|((_, p), t)| (p, t)).collect()
    }

    /// Calls of `op` on any path since they were last taken, and forget them.
    pub fn take_calls(&self, op: Op) -> u64 {
        self.take(op).values().map(|t| t.calls).sum()
    }
}

struct ScriptedFile {
    inner: Arc<dyn StorageFile>,
    path: PathBuf,
    script: Shared,
}

impl ScriptedFile {
    fn run<T>(&self, op: Op, bytes: u64, call: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let out = self.script.run_or_fail(op, &self.path, call)?;
        self.script.moved(op, &self.path, bytes);
        Ok(out)
    }
}

impl StorageFile for ScriptedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let len = buf.len() as u64;
        self.run(Op::Read, len, || self.inner.read_at(buf, offset))
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.run(Op::Write, data.len() as u64, || {
            self.inner.write_at(data, offset)
        })
    }
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let len = bufs.iter().map(|b| b.len() as u64).sum();
        self.run(Op::Write, len, || {
            self.inner.write_vectored_at(bufs, offset)
        })
    }
    /// Counted as a [`Op::Read`] only when it read; a read a fault is armed for is sent to `read_at`, where
    /// the fault answers.
    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        if self.script.armed(Op::Read, &self.path) || !self.inner.read_cached_at(buf, offset)? {
            return Ok(false);
        }
        self.script.enter(Op::Read, &self.path);
        self.script.moved(Op::Read, &self.path, buf.len() as u64);
        Ok(true)
    }
    fn reads_return_writes(&self) -> bool {
        self.inner.reads_return_writes()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.run(Op::Sync, 0, || self.inner.sync_data())
    }
    fn release_written_back(&self) -> io::Result<()> {
        self.inner.release_written_back()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.run(Op::Write, 0, || self.inner.set_len(len))
    }
    fn len(&self) -> io::Result<u64> {
        self.run(Op::Metadata, 0, || self.inner.len())
    }
    fn is_written(&self, offset: u64, len: u64) -> io::Result<Option<bool>> {
        self.run(Op::Metadata, 0, || self.inner.is_written(offset, len))
    }
    fn known_sha1(&self, offset: u64, len: u64) -> io::Result<Option<[u8; 20]>> {
        self.inner.known_sha1(offset, len)
    }
}

impl<S: Storage> Storage for ScriptedStorage<S> {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self
            .script
            .run_or_fail(Op::Open, path, || self.inner.open(path, create))?;
        Ok(Arc::new(ScriptedFile {
            inner,
            path: path.to_path_buf(),
            script: self.script.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.script
            .run_or_fail(Op::CreateDir, path, || self.inner.create_dir_all(path))
    }
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let read = self
            .script
            .run(Op::ReadFile, path, || None, || self.inner.read_file(path))?;
        let len = read.as_ref().map_or(0, |b| b.len() as u64);
        self.script.moved(Op::ReadFile, path, len);
        Ok(read)
    }
    fn replace_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.script.run_or_fail(Op::ReplaceFile, path, || {
            self.inner.replace_file(path, contents)
        })?;
        self.script
            .moved(Op::ReplaceFile, path, contents.len() as u64);
        Ok(())
    }
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        self.script
            .run(Op::Metadata, path, || None, || self.inner.file_len(path))
    }
    fn file_stamp(&self, path: &Path) -> io::Result<Option<FileStamp>> {
        self.script
            .run(Op::Metadata, path, || None, || self.inner.file_stamp(path))
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.script
            .run(Op::ListDir, path, Vec::new, || self.inner.list_dir(path))
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.script
            .run_or_fail(Op::Remove, path, || self.inner.remove_file(path))
    }
    fn reads_return_writes(&self) -> bool {
        self.inner.reads_return_writes()
    }
    fn lock_exclusive(&self, path: &Path, note: &[u8]) -> io::Result<Option<FileLock>> {
        self.script
            .run_or_fail(Op::Lock, path, || self.inner.lock_exclusive(path, note))
    }
}

/// A fresh folder under the system temp folder for one test, `TMP/enjambre-<group>-<pid>-<name>`: emptied
/// at creation, removed when dropped after the test succeeded, kept (and its path printed) when it failed.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// The folder of test `name` in `group` (a module or test file), fresh and empty.
    pub fn new(group: &str, name: &str) -> Scratch {
        let d =
            std::env::temp_dir().join(format!("enjambre-{group}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch folder kept for inspection: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StdStorage;

    #[test]
    fn counts_calls_and_bytes_per_path_and_kind() {
        let s = Scratch::new("scripted", "count");
        let storage = ScriptedStorage::new(StdStorage);
        let (a, b) = (s.0.join("a.bin"), s.0.join("b.bin"));
        let f = storage.open(&a, true).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.read_at(&mut [0; 3], 1).unwrap();
        f.read_at(&mut [0; 4], 0).unwrap();
        f.sync_data().unwrap();
        storage.replace_file(&b, b"12345678").unwrap();
        assert_eq!(storage.read_file(&b).unwrap().unwrap(), b"12345678");
        assert_eq!(storage.read_file(&s.0.join("none")).unwrap(), None);

        let reads = storage.take(Op::Read);
        assert_eq!(
            reads,
            BTreeMap::from([(a.clone(), Tally { calls: 2, bytes: 7 })])
        );
        assert!(storage.take(Op::Read).is_empty(), "taken tallies stay");
        assert_eq!(storage.take(Op::Write)[&a], Tally { calls: 1, bytes: 5 });
        assert_eq!(storage.take_calls(Op::Sync), 1);
        assert_eq!(storage.take_calls(Op::ReadFile), 2);
        assert_eq!(storage.take(Op::ReplaceFile)[&b].bytes, 8);
        assert_eq!(storage.take_calls(Op::Open), 1);
    }

    #[test]
    fn a_fault_fails_its_kind_on_its_paths_for_its_count() {
        let s = Scratch::new("scripted", "fault");
        let storage = ScriptedStorage::new(StdStorage);
        let (a, b) = (s.0.join("a.torrent"), s.0.join("b.json"));
        storage.replace_file(&a, b"a").unwrap();
        storage.replace_file(&b, b"b").unwrap();
        storage.fail(
            Fault::new(Op::ReadFile, io::ErrorKind::Other)
                .on(|p| p.extension().is_some_and(|e| e == "torrent"))
                .times(2),
        );
        for _ in 0..2 {
            let err = storage.read_file(&a).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Other);
            assert_eq!(storage.read_file(&b).unwrap().unwrap(), b"b");
        }
        assert_eq!(storage.read_file(&a).unwrap().unwrap(), b"a");
        // Failed calls count; their bytes do not.
        assert_eq!(storage.take(Op::ReadFile)[&a], Tally { calls: 3, bytes: 1 });
    }

    #[test]
    fn a_fault_without_a_count_lasts_until_cleared() {
        let s = Scratch::new("scripted", "clear");
        let storage = ScriptedStorage::new(StdStorage);
        let a = s.0.join("a.bin");
        let f = storage.open(&a, true).unwrap();
        storage.fail(Fault::new(Op::Sync, io::ErrorKind::StorageFull));
        storage.fail(Fault::new(Op::Write, io::ErrorKind::StorageFull));
        for _ in 0..3 {
            assert_eq!(
                f.sync_data().unwrap_err().kind(),
                io::ErrorKind::StorageFull
            );
        }
        assert_eq!(
            f.write_at(b"x", 0).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        storage.clear_faults();
        f.write_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"x");
    }

    #[test]
    fn a_not_found_fault_hides_a_file_where_missing_is_an_answer() {
        let s = Scratch::new("scripted", "hide");
        let storage = ScriptedStorage::new(StdStorage);
        let a = s.0.join("a.bin");
        std::fs::write(&a, b"abc").unwrap();
        storage.fail(Fault::new(Op::ReadFile, io::ErrorKind::NotFound));
        storage.fail(Fault::new(Op::Metadata, io::ErrorKind::NotFound));
        storage.fail(Fault::new(Op::Open, io::ErrorKind::NotFound));
        assert_eq!(storage.read_file(&a).unwrap(), None);
        assert_eq!(storage.file_len(&a).unwrap(), None);
        assert_eq!(storage.file_stamp(&a).unwrap(), None);
        // `open` has no "missing" answer: it fails as a missing file does.
        let err = storage.open(&a, false).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn cached_reads_count_as_reads_and_a_fault_sends_them_to_read_at() {
        let s = Scratch::new("scripted", "cached");
        let storage = ScriptedStorage::new(StdStorage);
        let f = storage.open(&s.0.join("a.bin"), true).unwrap();
        f.write_at(&[7; 4096], 0).unwrap();
        let mut buf = [0; 4096];
        if !f.read_cached_at(&mut buf, 0).unwrap() {
            eprintln!("SKIP: this kernel or filesystem has no RWF_NOWAIT reads");
            return;
        }
        assert_eq!(storage.take_calls(Op::Read), 1);
        storage.fail(Fault::new(Op::Read, io::ErrorKind::Other).times(1));
        assert!(!f.read_cached_at(&mut buf, 0).unwrap());
        assert_eq!(
            f.read_at(&mut buf, 0).unwrap_err().kind(),
            io::ErrorKind::Other
        );
        f.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [7; 4096]);
    }
}
