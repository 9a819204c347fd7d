//! The disk seam: positional file IO, syncs and atomic small-file replacement, real (`std::fs`) or simulated
//! (turmoil's filesystem, plugged in by the sim), plus [`Blocking`], which says where blocking work runs.
//!
//! Methods are synchronous: a driver runs them through a [`Blocking`] runner, which is a dedicated thread pool
//! in real runs (so disk and hashing never stall the reactor) and the calling task under the simulator (so
//! runs stay deterministic).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// One open file supporting positional IO.
pub trait StorageFile: Send + Sync + 'static {
    /// Read exactly `buf.len()` bytes at `offset`; bytes past the end of the file read as zeros.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `data` at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Write `bufs`, one after the other, at `offset` (one vectored system call where the storage has one).
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for buf in bufs {
            self.write_at(buf, at)?;
            at += buf.len() as u64;
        }
        Ok(())
    }
    /// Read `buf.len()` bytes at `offset` only if that needs no wait for the device (every byte is in the
    /// page cache): `Ok(true)` when `buf` was filled, `Ok(false)` when the caller must use
    /// [`StorageFile::read_at`] on its blocking runner instead (the default: storage that cannot tell).
    fn read_cached_at(&self, _buf: &mut [u8], _offset: u64) -> io::Result<bool> {
        Ok(false)
    }
    /// Whether a read returns exactly the bytes that the last successful write there wrote, so that a piece
    /// may be hashed from the bytes in memory that were just written instead of being read back. Default
    /// no: a simulated disk may tamper with reads, and its pieces are then hashed as they are read.
    fn reads_return_writes(&self) -> bool {
        false
    }
    /// Where `offset..offset + len` of this file sits in a read-only mapping that lives as long as this file,
    /// for the kernel to copy to a socket (`writev`) without this process reading it: never dereference it in
    /// user space (a file truncated under it would fault the process; the kernel's copy just fails). Default:
    /// none, and the caller reads the bytes with [`StorageFile::read_at`] (a simulated or watched disk must see,
    /// and may tamper with, every read).
    fn mapped_for_kernel(&self, _offset: u64, _len: u64) -> Option<std::ptr::NonNull<u8>> {
        None
    }
    /// Whether every page of `offset..offset + len` is in the page cache, so that sending it from
    /// [`StorageFile::mapped_for_kernel`] will not wait for the device (default: cannot tell, `false`).
    fn is_cached(&self, _offset: u64, _len: u64) -> bool {
        false
    }
    /// Make written data durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Let the operating system drop this file's cached pages that are already on the device (a hint,
    /// called right after [`StorageFile::sync_data`]; pages written since stay). A download then recycles
    /// the same few megabytes of page cache instead of taking fresh memory for every page it writes, which
    /// on a virtual machine that returns free memory to its host costs about 2 CPU s per GiB
    /// (`bench/RESULTS.md`, issue 17). Later reads of those pages go to the device. Default: nothing.
    fn release_written_back(&self) -> io::Result<()> {
        Ok(())
    }
    /// Grow or shrink the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Whether every byte of `offset..offset + len` was written at some point (is data, not a hole of a sparse
    /// file); `Ok(None)` when this storage cannot tell. Only a hint of what may be worth hashing: it says
    /// nothing about the bytes being right or durable.
    fn is_written(&self, _offset: u64, _len: u64) -> io::Result<Option<bool>> {
        Ok(None)
    }
    /// The SHA-1 of `offset..offset + len` when this storage knows it without reading (a simulated disk whose
    /// bytes are generated); `Ok(None)` otherwise, and the caller hashes what it reads. A `Some` must be the
    /// digest of exactly the bytes `read_at` would return.
    fn known_sha1(&self, _offset: u64, _len: u64) -> io::Result<Option<[u8; 20]>> {
        Ok(None)
    }
}

/// A filesystem.
pub trait Storage: Send + Sync + 'static {
    /// Open `path` for reading and writing, creating it (and its parent folders) when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Create a folder and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Read a whole (small) file; `Ok(None)` when it does not exist.
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Replace a small file atomically and durably: write a temp file, sync it, rename it over `path`, sync the folder.
    fn replace_file(&self, path: &Path, contents: &[u8]) -> io::Result<()>;
    /// Length of a file, `Ok(None)` when it does not exist.
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Length and modification time of a file (one `stat`), `Ok(None)` when it does not exist. Storages
    /// without modification times answer with `modified: None`, which never matches a recorded stamp.
    fn file_stamp(&self, path: &Path) -> io::Result<Option<FileStamp>> {
        Ok(self.file_len(path)?.map(|len| FileStamp {
            len,
            modified: None,
        }))
    }
    /// Entries of a folder (full paths), sorted; empty when the folder does not exist.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Whether `path` is a folder.
    fn is_dir(&self, path: &Path) -> bool;
    /// Remove a file; missing files are not an error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Whether the files of this storage [return what was written](StorageFile::reads_return_writes): a
    /// hint the disk worker reads to decide whether holding a piece's blocks until it is complete pays
    /// ([`StorageFile::reads_return_writes`] still decides, per file, how the piece is hashed). Default no.
    fn reads_return_writes(&self) -> bool {
        false
    }
    /// Take an exclusive lock on the file `path` (created with its folders if missing) that lasts as long as the returned
    /// guard, and write `note` into it for whoever finds it taken. `Err(WouldBlock)` when another holder has
    /// it. Storages with no other process to exclude (the simulator) hold nothing: `Ok(None)`.
    fn lock_exclusive(&self, _path: &Path, _note: &[u8]) -> io::Result<Option<FileLock>> {
        Ok(None)
    }
}

/// What a `stat` says of a file, enough to tell that it did not change since (see
/// [`crate::state_dir::Stamps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Length in bytes.
    pub len: u64,
    /// Modification time in nanoseconds since the Unix epoch, when the storage keeps one.
    pub modified: Option<i64>,
}

/// An exclusive lock on a file, released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] std::fs::File);

/// Where blocking work (disk IO, hashing) runs.
pub trait Blocking: Clone + Send + Sync + 'static {
    /// Run `f` to completion and return its result.
    fn run<F, R>(&self, f: F) -> impl Future<Output = R> + Send + use<Self, F, R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static;

    /// Whether a sync-and-checkpoint may run alongside the disk operations emitted after it (it still starts
    /// after every earlier one finished). True for a thread pool, where a sync would otherwise stall every
    /// write and hash behind it; false (the default) where work runs inline and order is the schedule.
    fn overlap_syncs(&self) -> bool {
        false
    }
}

/// Runs blocking work on tokio's blocking thread pool (real runs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadPool;

#[allow(clippy::manual_async_fn)]
impl Blocking for ThreadPool {
    fn run<F, R>(&self, f: F) -> impl Future<Output = R> + Send + use<F, R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        async move {
            match tokio::task::spawn_blocking(f).await {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }

    fn overlap_syncs(&self) -> bool {
        true
    }
}

/// Runs blocking work inline in the calling task (simulated runs, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl Blocking for Inline {
    fn run<F, R>(&self, f: F) -> impl Future<Output = R> + Send + use<F, R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        std::future::ready(f())
    }
}

/// The real filesystem through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdStorage;

struct StdFile(std::fs::File, FileMap);

/// A read-only mapping of a whole file that this process never reads through: `mincore` asks it which pages
/// are in the page cache (one system call per question; mapping a block's pages for each question cost the
/// seeder a fifth of its CPU in `mmap` and `munmap`), and the kernel copies from it to sockets (`writev`, see
/// [`crate::send_file`]). Remade when the file has grown past it; a mapping it replaces stays until the file
/// is dropped, since a queued send may still point into it.
#[derive(Default)]
struct FileMap(std::sync::Mutex<Maps>);

#[derive(Default)]
struct Maps {
    /// The current mapping: address and length.
    current: Option<(usize, usize)>,
    /// Mappings replaced by a larger one.
    retired: Vec<(usize, usize)>,
}

impl FileMap {
    /// The address of `offset..offset + len` of `file` in the mapping, mapping (again) if needed; `None` when
    /// the file is shorter than that or cannot be mapped.
    fn address(&self, file: &std::fs::File, offset: u64, len: u64) -> Option<usize> {
        use std::os::fd::AsRawFd;
        let start = usize::try_from(offset).ok()?;
        let end = usize::try_from(offset.checked_add(len)?).ok()?;
        let mut maps = self.0.lock().ok()?;
        if maps.current.is_none_or(|(_, mapped)| mapped < end) {
            let file_len = usize::try_from(file.metadata().ok()?.len()).ok()?;
            if file_len < end {
                return None;
            }
            // SAFETY: a fresh read-only shared mapping of an open descriptor. Nothing in this process reads
            // through it (only `mincore` and the kernel's copies in `writev` use it), so a later truncation
            // of the file cannot fault this process.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    file_len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if addr == libc::MAP_FAILED {
                return None;
            }
            if let Some(old) = maps.current.replace((addr as usize, file_len)) {
                maps.retired.push(old);
            }
        }
        maps.current.map(|(addr, _)| addr + start)
    }

    /// Whether every page of `offset..offset + len` of `file` is in the page cache (at most 256 KiB).
    fn is_cached(&self, file: &std::fs::File, offset: u64, len: u64) -> bool {
        // SAFETY: sysconf has no preconditions.
        let page = match usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) {
            Ok(p) if p.is_power_of_two() => p,
            _ => return false,
        };
        let Some(at) = self.address(file, offset, len) else {
            return false;
        };
        let first = at & !(page - 1);
        let span = at + len as usize - first;
        let pages = span.div_ceil(page);
        let mut present = [0u8; 64];
        if pages > present.len() {
            return false;
        }
        // SAFETY: `first..at + len` lies inside the mapping (`address` checked its end; the mapping starts
        // page-aligned, so `first` is inside it too), and `present` has room for one byte per page.
        let ok =
            unsafe { libc::mincore(first as *mut libc::c_void, span, present.as_mut_ptr()) } == 0;
        ok && present[..pages].iter().all(|p| p & 1 == 1)
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        if let Ok(maps) = self.0.get_mut() {
            for (addr, len) in maps
                .current
                .take()
                .into_iter()
                .chain(maps.retired.drain(..))
            {
                // SAFETY: mappings this map made; the file (and every queued send holding it) is gone.
                unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            }
        }
    }
}

impl StorageFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_at_zero_filled(&self.0, buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.0.write_all_at(data, offset)
    }

    /// `pwritev`, at most [`IOV_MAX`] buffers a call, resumed after a short write.
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut rest: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
        let mut first = 0;
        let mut at = offset;
        while first < rest.len() {
            let iov: Vec<libc::iovec> = rest[first..]
                .iter()
                .take(IOV_MAX)
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            let off = libc::off_t::try_from(at)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            // SAFETY: every iovec points into a live slice of `rest` for the duration of the call, and the
            // descriptor is owned by this `File`.
            let n =
                unsafe { libc::pwritev(self.0.as_raw_fd(), iov.as_ptr(), iov.len() as i32, off) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let mut n = n as usize;
            at += n as u64;
            while n > 0 {
                let b = rest[first];
                if n >= b.len() {
                    n -= b.len();
                    first += 1;
                } else {
                    rest[first] = &b[n..];
                    n = 0;
                }
            }
        }
        Ok(())
    }

    /// `preadv2(RWF_NOWAIT)`: the kernel copies from the page cache or says `EAGAIN` without touching the
    /// device. A short read (part cached, or the end of the file) also sends the caller to its runner.
    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Ok(off) = libc::off_t::try_from(offset) else {
            return Ok(false);
        };
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: the iovec covers `buf`, which is exclusively borrowed for the call; the descriptor is
        // owned by this `File`.
        let n = unsafe { libc::preadv2(self.0.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // Not cached, not supported here, or interrupted: the blocking path reads it.
                Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::EINTR) => Ok(false),
                _ => Err(e),
            };
        }
        Ok(n as usize == buf.len())
    }

    /// A local file returns what was written (short of the hardware failing, which no hash of a fresh
    /// read would catch reliably either: it would come from the same page cache).
    fn reads_return_writes(&self) -> bool {
        true
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    /// `posix_fadvise(POSIX_FADV_DONTNEED)` over the whole file: Linux drops the clean pages and starts
    /// (without waiting for) the write-back of dirty ones, which stay cached.
    fn release_written_back(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: an advisory call on a descriptor this `File` owns; it touches no memory of ours.
        let err =
            unsafe { libc::posix_fadvise(self.0.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if err == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(err))
        }
    }

    /// Through `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` (the file position is unused: all IO is positional).
    /// A filesystem without hole tracking reports everything as data.
    fn is_written(&self, offset: u64, len: u64) -> io::Result<Option<bool>> {
        use std::os::fd::AsRawFd;
        let (Ok(start), Ok(end)) = (
            libc::off_t::try_from(offset),
            libc::off_t::try_from(offset.saturating_add(len)),
        ) else {
            return Ok(None);
        };
        let fd = self.0.as_raw_fd();
        // SAFETY: lseek on a descriptor this `File` owns; it only moves the (unused) file position.
        let data = unsafe { libc::lseek(fd, start, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            // ENXIO: no data at or after `offset`.
            return match e.raw_os_error() {
                Some(libc::ENXIO) => Ok(Some(false)),
                Some(libc::EINVAL) => Ok(None),
                _ => Err(e),
            };
        }
        if data != start {
            return Ok(Some(false));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(hole >= end))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn mapped_for_kernel(&self, offset: u64, len: u64) -> Option<std::ptr::NonNull<u8>> {
        std::ptr::NonNull::new(self.1.address(&self.0, offset, len)? as *mut u8)
    }

    /// `mincore` over the file's kept mapping ([`FileMap`]); at most 256 KiB a question.
    fn is_cached(&self, offset: u64, len: u64) -> bool {
        len == 0 || self.1.is_cached(&self.0, offset, len)
    }
}

/// Most buffers handed to one `pwritev` (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Tries of a disk operation before an I/O error is final: a disk that fails now and then (an EIO found by
/// `sim explore`) must not stop a download before it starts or keep a file from being shared.
pub const IO_TRIES: u32 = 4;

/// Run the idempotent `op` up to `tries` times while it fails with an error a retry may get past (anything
/// but a full disk, which waits for space instead); the last error is returned. `what` is formatted only when
/// a try fails (a block write's `format_args!` costs nothing when the write succeeds).
pub fn retry_io<T>(
    tries: u32,
    what: impl std::fmt::Display,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut tried = 1;
    loop {
        match op() {
            Err(e) if tried < tries && e.kind() != io::ErrorKind::StorageFull => {
                tracing::warn!("{what} failed ({e}): trying again");
                tried += 1;
            }
            r => return r,
        }
    }
}

/// Fill `buf` from `offset` of any positional file (real or simulated); bytes past the end read as zeros.
pub fn read_at_zero_filled<F: std::os::unix::fs::FileExt + ?Sized>(
    file: &F,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            buf[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}

/// `Ok(None)` for a file that does not exist, the value or the other errors otherwise.
pub fn not_found_to_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A folder's entries as [`Storage::list_dir`] returns them: sorted, or the first error reading them.
pub fn sorted_paths(
    entries: impl IntoIterator<Item = io::Result<PathBuf>>,
) -> io::Result<Vec<PathBuf>> {
    let mut out = entries.into_iter().collect::<io::Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// The temp-file name used while replacing `path`.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

impl Storage for StdStorage {
    fn reads_return_writes(&self) -> bool {
        true
    }

    fn lock_exclusive(&self, path: &Path, note: &[u8]) -> io::Result<Option<FileLock>> {
        use std::io::Write;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        f.set_len(0)?;
        f.write_all(note)?;
        Ok(Some(FileLock(f)))
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        if create {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(StdFile(f, FileMap::default())))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        not_found_to_none(std::fs::read(path))
    }

    fn replace_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = temp_path_for(path);
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            // A full disk: the old file stands, and the partial temp file must not hold on to space.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(parent) = path.parent() {
            let dir = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        Ok(not_found_to_none(std::fs::metadata(path))?.map(|m| m.len()))
    }

    fn file_stamp(&self, path: &Path) -> io::Result<Option<FileStamp>> {
        use std::os::unix::fs::MetadataExt;
        Ok(
            not_found_to_none(std::fs::metadata(path))?.map(|m| FileStamp {
                len: m.len(),
                modified: Some(
                    m.mtime()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(m.mtime_nsec()),
                ),
            }),
        )
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let Some(entries) = not_found_to_none(std::fs::read_dir(path))? else {
            return Ok(Vec::new());
        };
        sorted_paths(entries.map(|e| e.map(|e| e.path())))
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// What a [`Watched`] storage adds to the storage it wraps: hooks called after the trips it cares about,
/// each doing nothing by default. A storage that only observes or tampers (a simulated disk probe, a
/// corrupting peer) is one of these, not one more wrapper forwarding every method.
pub trait StorageWatch: Send + Sync + 'static {
    /// Whether files opened at `path` go through the file hooks below (default: every file).
    fn watches(&self, _path: &Path) -> bool {
        true
    }
    /// After `buf` was read at `offset` from a watched file; may change what the caller gets.
    fn after_read(&self, _buf: &mut [u8], _offset: u64) {}
    /// After a write to a watched file succeeded.
    fn after_write(&self) {}
    /// After a sync of a watched file succeeded.
    fn after_sync(&self) {}
    /// After `path` was replaced (any file, watched or not).
    fn after_replace(&self, _path: &Path) {}
    /// Whether the wrapped file's [`StorageFile::known_sha1`] still describes what reads return now
    /// (default: yes; a watch that changes reads says no, and the caller hashes what it reads).
    fn known_sha1_holds(&self) -> bool {
        true
    }
}

/// A storage that forwards every call to `inner` and calls `watch`'s hooks after the trips it watches.
pub struct Watched<S, W> {
    inner: S,
    watch: Arc<W>,
}

impl<S: Storage, W: StorageWatch> Watched<S, W> {
    /// `inner`, watched by `watch`.
    pub fn new(inner: S, watch: W) -> Self {
        Watched {
            inner,
            watch: Arc::new(watch),
        }
    }
}

struct WatchedFile<W> {
    inner: Arc<dyn StorageFile>,
    watch: Arc<W>,
}

impl<W: StorageWatch> StorageFile for WatchedFile<W> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)?;
        self.watch.after_read(buf, offset);
        Ok(())
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(data, offset)?;
        self.watch.after_write();
        Ok(())
    }
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.inner.write_vectored_at(bufs, offset)?;
        self.watch.after_write();
        Ok(())
    }
    // `read_cached_at` keeps its default (no): every read goes through `read_at` and its hook.
    fn reads_return_writes(&self) -> bool {
        self.watch.known_sha1_holds() && self.inner.reads_return_writes()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()?;
        self.watch.after_sync();
        Ok(())
    }
    fn release_written_back(&self) -> io::Result<()> {
        self.inner.release_written_back()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn is_written(&self, offset: u64, len: u64) -> io::Result<Option<bool>> {
        self.inner.is_written(offset, len)
    }
    fn known_sha1(&self, offset: u64, len: u64) -> io::Result<Option<[u8; 20]>> {
        if !self.watch.known_sha1_holds() {
            return Ok(None);
        }
        self.inner.known_sha1(offset, len)
    }
}

impl<S: Storage, W: StorageWatch> Storage for Watched<S, W> {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, create)?;
        if !self.watch.watches(path) {
            return Ok(inner);
        }
        Ok(Arc::new(WatchedFile {
            inner,
            watch: Arc::clone(&self.watch),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.inner.read_file(path)
    }
    fn replace_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.inner.replace_file(path, contents)?;
        self.watch.after_replace(path);
        Ok(())
    }
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        self.inner.file_len(path)
    }
    fn file_stamp(&self, path: &Path) -> io::Result<Option<FileStamp>> {
        self.inner.file_stamp(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn lock_exclusive(&self, path: &Path, note: &[u8]) -> io::Result<Option<FileLock>> {
        self.inner.lock_exclusive(path, note)
    }
    fn reads_return_writes(&self) -> bool {
        self.watch.known_sha1_holds() && self.inner.reads_return_writes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("enjambre-storage-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn positional_io_and_zero_fill_past_end() {
        let dir = scratch("pos");
        let f = StdStorage.open(&dir.join("a/b.bin"), true).unwrap();
        f.write_at(b"hello", 10).unwrap();
        let mut buf = [7u8; 20];
        f.read_at(&mut buf, 5).unwrap();
        assert_eq!(&buf[..5], &[0; 5]);
        assert_eq!(&buf[5..10], b"hello");
        assert_eq!(&buf[10..], &[0; 10]);
        assert_eq!(f.len().unwrap(), 15);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn vectored_writes_land_in_order_and_cached_reads_see_them() {
        let dir = scratch("vectored");
        let f = StdStorage.open(&dir.join("v.bin"), true).unwrap();
        // More buffers than one pwritev takes, of uneven sizes, some empty.
        let parts: Vec<Vec<u8>> = (0..IOV_MAX + 300)
            .map(|i| vec![(i % 251) as u8; i % 7])
            .collect();
        let bufs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        f.write_vectored_at(&bufs, 3).unwrap();
        let want: Vec<u8> = parts.concat();
        let mut back = vec![0u8; want.len()];
        f.read_at(&mut back, 3).unwrap();
        assert_eq!(back, want);
        assert_eq!(f.len().unwrap(), 3 + want.len() as u64);
        assert!(f.reads_return_writes());
        let mut cached = vec![0u8; want.len()];
        if f.read_cached_at(&mut cached, 3).unwrap() {
            assert_eq!(cached, want);
            // A read past the end is short: the caller is sent to `read_at`, which zero-fills.
            let mut past = vec![0u8; 16];
            assert!(!f
                .read_cached_at(&mut past, 3 + want.len() as u64 - 8)
                .unwrap());
        } else {
            eprintln!("SKIP: this kernel or filesystem has no RWF_NOWAIT reads");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Synced pages leave the page cache when released; pages written after the sync stay.
    #[test]
    fn released_pages_are_no_longer_cached_but_still_read() {
        let dir = scratch("release");
        let f = StdStorage.open(&dir.join("r.bin"), true).unwrap();
        let synced: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 253) as u8).collect();
        f.write_at(&synced, 0).unwrap();
        f.sync_data().unwrap();
        let mut probe = vec![0u8; 4096];
        if !f.read_cached_at(&mut probe, 0).unwrap() {
            eprintln!("SKIP: this kernel or filesystem has no RWF_NOWAIT reads");
            std::fs::remove_dir_all(dir).unwrap();
            return;
        }
        // `is_cached` (the seeder's question before it sends a range from the file) agrees.
        assert!(f.is_cached(1000, 16384), "a page just written is cached");
        assert!(!f.is_cached(250 * 1024, 16384), "a range past the end");
        f.release_written_back().unwrap();
        assert!(
            !f.read_cached_at(&mut probe, 0).unwrap(),
            "synced page still cached"
        );
        assert!(!f.is_cached(1000, 16384), "released pages are not cached");
        // Grown past the kept mapping: asked again, it answers for the new pages.
        f.write_at(&synced, synced.len() as u64).unwrap();
        assert!(f.is_cached(synced.len() as u64 + 4096, 16384));
        let mut back = vec![0u8; synced.len()];
        f.read_at(&mut back, 0).unwrap();
        assert_eq!(back, synced);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn replace_is_whole_and_leaves_no_temp() {
        let dir = scratch("replace");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        StdStorage.replace_file(&p, b"one").unwrap();
        StdStorage.replace_file(&p, b"two").unwrap();
        assert_eq!(StdStorage.read_file(&p).unwrap().unwrap(), b"two");
        assert_eq!(StdStorage.list_dir(&dir).unwrap(), vec![p.clone()]);
        assert_eq!(StdStorage.read_file(&dir.join("none")).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
