//! How full each simulated disk is, with sparse files as real filesystems have them.
//!
//! turmoil's filesystem allocates a file up to its length, so a file grown with `set_len` would take its whole
//! size at once; and turmoil 0.7.2's own `FsConfig::capacity` counts every pending (unsynced) write from the
//! file's synced end, so a download with 64 blocks in flight past that end looks tens of megabytes larger than
//! it is and finds the disk full long before it is. This model keeps, per host, each file's length and the
//! 4 KiB blocks written, and refuses a write that needs more blocks than the disk has left, with the error a
//! real full disk gives (ENOSPC). Allocations count at once, synced or not, and stay after a crash (a real
//! filesystem may have allocated them too); files a crash removed are forgotten on the next boot.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Allocation unit of the simulated disks.
pub const BLOCK: u64 = 4096;

#[derive(Debug, Default)]
struct FileSpace {
    /// Length as `set_len` and writes left it.
    len: u64,
    /// Blocks written.
    blocks: BTreeSet<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    capacity: Option<u64>,
    files: BTreeMap<PathBuf, FileSpace>,
}

/// One host's disk: capacity, file lengths and allocated blocks. Cloning shares it; it outlives the host's
/// restarts as the disk does.
#[derive(Debug, Clone, Default)]
pub struct DiskSpace(Arc<Mutex<Inner>>);

fn blocks_of(offset: u64, len: u64) -> std::ops::Range<u64> {
    if len == 0 {
        return 0..0;
    }
    offset / BLOCK..(offset + len).div_ceil(BLOCK)
}

/// The error of a write that does not fit.
pub fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl DiskSpace {
    /// A disk of `capacity` bytes (unlimited when `None`).
    pub fn new(capacity: Option<u64>) -> DiskSpace {
        DiskSpace(Arc::new(Mutex::new(Inner {
            capacity,
            files: BTreeMap::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes allocated on the disk.
    pub fn used(&self) -> u64 {
        self.lock()
            .files
            .values()
            .map(|f| f.blocks.len() as u64 * BLOCK)
            .sum()
    }

    /// Claim the blocks a write of `len` bytes at `offset` of `path` needs, or fail with ENOSPC and claim
    /// nothing.
    pub fn write(&self, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let used: u64 = inner.files.values().map(|f| f.blocks.len() as u64).sum();
        let file = inner.files.entry(path.to_path_buf()).or_default();
        let new: Vec<u64> = blocks_of(offset, len)
            .filter(|b| !file.blocks.contains(b))
            .collect();
        let capacity = inner.capacity;
        if capacity.is_some_and(|cap| (used + new.len() as u64) * BLOCK > cap) {
            return Err(no_space());
        }
        let file = inner.files.entry(path.to_path_buf()).or_default();
        file.blocks.extend(new);
        file.len = file.len.max(offset + len);
        Ok(())
    }

    /// Set a file's length: growing makes a hole (no blocks), shrinking frees the blocks past the end.
    pub fn set_len(&self, path: &Path, len: u64) {
        let mut inner = self.lock();
        let file = inner.files.entry(path.to_path_buf()).or_default();
        file.len = len;
        let keep = len.div_ceil(BLOCK);
        file.blocks.retain(|b| *b < keep);
    }

    /// A file's length as the model knows it.
    pub fn len(&self, path: &Path) -> Option<u64> {
        self.lock().files.get(path).map(|f| f.len)
    }

    /// A file was deleted: its blocks are free.
    pub fn remove(&self, path: &Path) {
        self.lock().files.remove(path);
    }

    /// A file was renamed over another: the other's blocks are free.
    pub fn rename(&self, from: &Path, to: &Path) {
        let mut inner = self.lock();
        let moved = inner.files.remove(from).unwrap_or_default();
        inner.files.insert(to.to_path_buf(), moved);
    }

    /// Forget files that no longer exist (a crash removed them).
    pub fn forget_missing(&self, exists: impl Fn(&Path) -> bool) {
        self.lock().files.retain(|p, _| exists(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_take_no_space_and_writes_fill_the_disk() {
        let disk = DiskSpace::new(Some(10 * BLOCK));
        let a = Path::new("/a");
        disk.set_len(a, 1 << 30);
        assert_eq!(disk.used(), 0);
        assert_eq!(disk.len(a), Some(1 << 30));
        disk.write(a, 0, 6 * BLOCK).unwrap();
        // Rewriting the same blocks needs nothing more.
        disk.write(a, BLOCK, 2 * BLOCK).unwrap();
        assert_eq!(disk.used(), 6 * BLOCK);
        let b = Path::new("/b");
        let err = disk.write(b, 100 * BLOCK, 5 * BLOCK).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(disk.used(), 6 * BLOCK, "a refused write claims nothing");
        // A write straddling a block boundary needs both blocks.
        disk.write(b, BLOCK - 1, 2).unwrap();
        assert_eq!(disk.used(), 8 * BLOCK);
        disk.remove(a);
        assert_eq!(disk.used(), 2 * BLOCK);
        disk.write(b, 100 * BLOCK, 5 * BLOCK).unwrap();
    }

    #[test]
    fn shrinking_and_renaming_free_blocks() {
        let disk = DiskSpace::new(Some(100 * BLOCK));
        let (a, b) = (Path::new("/a"), Path::new("/b"));
        disk.write(a, 0, 10 * BLOCK).unwrap();
        disk.set_len(a, 3 * BLOCK + 1);
        assert_eq!(disk.used(), 4 * BLOCK);
        disk.write(b, 0, 2 * BLOCK).unwrap();
        disk.rename(b, a);
        assert_eq!(disk.used(), 2 * BLOCK);
        disk.forget_missing(|p| p != a);
        assert_eq!(disk.used(), 0);
    }
}
