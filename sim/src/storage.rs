//! turmoil's simulated filesystem plugged into enjambre-net's [`Storage`] seam. Writes stay pending until
//! synced and a crash discards what is pending, so a checkpoint written before its data is synced shows up as
//! a broken invariant. New files and renames are made durable by syncing their folder, as on a real disk.

use crate::disk_space::DiskSpace;
use crate::world::{DiskTrip, Shared};
use enjambre_net::storage::{
    not_found_to_none, read_at_zero_filled, sorted_paths, Blocking, Storage, StorageFile,
    StorageWatch, Watched,
};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use turmoil::fs::shim::std::fs;

/// The simulated filesystem of the current host, with sparse files and a capacity (see [`DiskSpace`]).
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    space: DiskSpace,
}

impl SimStorage {
    /// The simulated filesystem, accounting for space in `space` (one per host, kept across restarts).
    pub fn new(space: DiskSpace) -> SimStorage {
        SimStorage { space }
    }

    /// Forget files a crash removed, so that their space is free again.
    pub fn after_boot(&self) {
        self.space.forget_missing(|p| fs::metadata(p).is_ok());
    }

    /// Fill the disk until `free` bytes are left, with another program's data written and synced at
    /// [`BALLAST`]. Tried again after an injected I/O error, it goes on from what the failed try wrote
    /// (counting that as the other program's, not as space taken by someone else: the disk-full fault once
    /// left far more room than `free` whenever a try failed, and a story with I/O errors never filled up).
    pub fn fill(&self, free: u64, capacity: u64) -> io::Result<()> {
        let path = Path::new(BALLAST);
        let done = self.space.len(path).unwrap_or(0);
        let others = self
            .space
            .used()
            .saturating_sub(done.div_ceil(crate::disk_space::BLOCK) * crate::disk_space::BLOCK);
        let size = capacity.saturating_sub(others).saturating_sub(free);
        let f = self.open(path, true)?;
        let chunk = vec![0x42u8; 1 << 20];
        let mut at = done.min(size);
        while at < size {
            let n = (size - at).min(chunk.len() as u64) as usize;
            match f.write_at(&chunk[..n], at) {
                Ok(()) => at += n as u64,
                // The last block does not fit (the capacity is not a whole number of blocks): write what
                // fits a block at a time, and the disk is then as full as it gets, which is what was asked.
                Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                    let block = crate::disk_space::BLOCK as usize;
                    while at < size {
                        let n = ((size - at) as usize).min(block);
                        if f.write_at(&chunk[..n], at).is_err() {
                            break;
                        }
                        at += n as u64;
                    }
                    f.sync_data()?;
                    break;
                }
                Err(e) => return Err(e),
            }
            f.sync_data()?;
        }
        Ok(())
    }

    /// Delete the other program's data; returns the bytes freed.
    pub fn free(&self) -> io::Result<u64> {
        let path = Path::new(BALLAST);
        let Some(len) = self.file_len(path)? else {
            return Ok(0);
        };
        self.remove_file(path)?;
        fs::sync_dir(parent_of(path))?;
        Ok(len)
    }
}

/// Where another program's data sits on a simulated disk (outside every peer's folders).
pub const BALLAST: &str = "/var/other-program.dat";

struct SimFile {
    file: fs::File,
    path: PathBuf,
    space: DiskSpace,
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_at_zero_filled(&self.file, buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.space.write(&self.path, offset, data.len() as u64)?;
        self.file.write_all_at(data, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // Growing makes a hole: turmoil's file is only shrunk, never grown (reads past its end are zeros).
        if len < self.file.metadata()?.len() {
            self.file.set_len(len)?;
        }
        self.space.set_len(&self.path, len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let written = self.file.metadata()?.len();
        Ok(written.max(self.space.len(&self.path).unwrap_or(0)))
    }
}

/// Create `dir` and its parents, syncing each parent so the new entries survive a crash.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    fs::create_dir(dir)?;
    if let Some(parent) = dir.parent() {
        fs::sync_dir(parent)?;
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

impl Storage for SimStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let existed = fs::metadata(path).is_ok();
        if create && !existed {
            create_dir_durably(&parent_of(path))?;
            self.space.remove(path);
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        if create && !existed {
            fs::sync_dir(parent_of(path))?;
        }
        Ok(Arc::new(SimFile {
            file,
            path: path.to_path_buf(),
            space: self.space.clone(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        create_dir_durably(path)
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        not_found_to_none(fs::read(path))
    }

    fn replace_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let parent = parent_of(path);
        create_dir_durably(&parent)?;
        let tmp = enjambre_net::storage::temp_path_for(path);
        let written = self
            .space
            .write(&tmp, 0, contents.len() as u64)
            .and_then(|()| fs::File::create(&tmp))
            .and_then(|f| {
                f.write_all_at(contents, 0)?;
                f.sync_all()
            });
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
            // A full disk: the old file stands, and the partial temp file must not hold on to space.
            let _ = fs::remove_file(&tmp);
            self.space.remove(&tmp);
            // turmoil's filesystem knows files by path, not by inode: a removal still pending when the next
            // attempt creates and syncs the same temp file would, once flushed, delete that new file's
            // synced data (an empty file after a crash, which no real disk would show). Flush it now.
            let _ = fs::sync_dir(&parent);
            return Err(e);
        }
        self.space.rename(&tmp, path);
        fs::sync_dir(&parent)
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        let model = self.space.len(path).unwrap_or(0);
        Ok(not_found_to_none(fs::metadata(path))?.map(|m| m.len().max(model)))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let Some(entries) = not_found_to_none(fs::read_dir(path))? else {
            return Ok(Vec::new());
        };
        sorted_paths(entries.map(|e| e.map(|e| e.path())))
    }

    fn is_dir(&self, path: &Path) -> bool {
        fs::metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.space.remove(path);
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Runs disk work inline in the host's task (deterministic), after a simulated latency so that disk steps
/// take simulated time and a crash can land between them.
#[derive(Debug, Clone, Copy)]
pub struct SimDisk {
    /// Simulated time each trip to the disk takes.
    pub latency: Duration,
}

impl Blocking for SimDisk {
    #[allow(clippy::manual_async_fn)]
    fn run<F, R>(&self, f: F) -> impl Future<Output = R> + Send + use<F, R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let latency = self.latency;
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            f()
        }
    }
}

/// A switch the story turns on to free a peer's disk: the host deletes the other program's data that filled it
/// (see [`SimStorage::fill`]).
#[derive(Debug, Clone, Default)]
pub struct FreeDiskSwitch(Arc<std::sync::atomic::AtomicBool>);

impl FreeDiskSwitch {
    /// Ask for the space back.
    pub fn turn_on(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the space was asked back.
    pub fn is_on(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A switch that makes a peer's storage return wrong bytes when its data files are read (a corrupt peer
/// serving garbage). The peer's own state folder is left alone.
#[derive(Debug, Clone, Default)]
pub struct CorruptSwitch(Arc<std::sync::atomic::AtomicBool>);

impl CorruptSwitch {
    /// Start corrupting reads.
    pub fn turn_on(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Wrap a storage with this switch.
    pub fn wrap<S: Storage>(&self, inner: S) -> Watched<S, CorruptSwitch> {
        Watched::new(inner, self.clone())
    }

    fn on(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl StorageWatch for CorruptSwitch {
    fn watches(&self, path: &Path) -> bool {
        !in_state_dir(path)
    }

    fn after_read(&self, buf: &mut [u8], _offset: u64) {
        if self.on() {
            for b in buf.iter_mut().step_by(997) {
                *b ^= 0x5a;
            }
        }
    }

    fn known_sha1_holds(&self) -> bool {
        !self.on()
    }
}

/// What tells the world about the trips to the disk the watched peer makes: payload writes, payload syncs
/// and checkpoint replacements. Crash sweeps aim their crashes between these trips.
pub struct DiskProbe {
    /// Where trips are recorded.
    pub world: Shared,
    /// The host this storage belongs to.
    pub host: String,
}

impl DiskProbe {
    fn record(&self, trip: DiskTrip) {
        self.world.lock().disk_trip(&self.host, trip);
    }
}

impl StorageWatch for DiskProbe {
    fn watches(&self, path: &Path) -> bool {
        !in_state_dir(path)
    }

    fn after_write(&self) {
        self.record(DiskTrip::Write);
    }

    fn after_sync(&self) {
        self.record(DiskTrip::Sync);
    }

    fn after_replace(&self, path: &Path) {
        if path.extension().is_some_and(|e| e == "json") {
            self.record(DiskTrip::Checkpoint);
        }
    }
}

fn in_state_dir(path: &Path) -> bool {
    path.components()
        .any(|c| c.as_os_str() == enjambre_net::state_dir::STATE_DIR_NAME)
}
