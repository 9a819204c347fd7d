//! The tracker's persistent catalog (`tracker --state-dir DIR`): every published metainfo is kept as
//! `DIR/<infohash>.torrent`, its original bytes, replaced atomically and durably (temp file, sync, rename,
//! folder sync, through [`Storage::replace_file`]). At start [`CatalogStore::load_into`] publishes every
//! stored file again; a damaged or refused file is reported and skipped, never fatal.
//!
//! A publish is answered only once it is durable: [`publish_durably`] publishes in the registry, writes
//! the file, and takes the entry back out of the registry if the write fails.

use crate::storage::Storage;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use enjambre_core::tracker::registry::{CatalogError, FileSummary};
use enjambre_core::tracker::Registry;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Extension of a stored metainfo.
const EXTENSION: &str = "torrent";

/// Largest stored file read back (a catalog entry is far smaller; the registry refuses larger ones).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A folder holding the published metainfos.
pub struct CatalogStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
}

impl std::fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogStore")
            .field("dir", &self.dir)
            .finish()
    }
}

/// A stored file that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped (unreadable, not a torrent, refused by the registry).
    pub reason: String,
}

/// What [`CatalogStore::load_into`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Names published again, in file order.
    pub loaded: Vec<String>,
    /// Files skipped, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Why a publish with a persistent catalog failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The registry refused the metainfo.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The metainfo could not be made durable (the publish was rolled back).
    #[error("cannot store the catalog entry: {0}")]
    Store(#[from] io::Error),
}

impl CatalogStore {
    /// The catalog kept in `dir`, created (with its parents) when missing.
    pub fn open(storage: Arc<dyn Storage>, dir: &Path) -> io::Result<CatalogStore> {
        storage
            .create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        Ok(CatalogStore {
            storage,
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the metainfo of `info_hash` is kept.
    pub fn path_of(&self, info_hash: &InfoHash) -> PathBuf {
        self.dir.join(format!("{}.{EXTENSION}", info_hash.to_hex()))
    }

    /// Store `meta` (its original bytes) atomically and durably.
    pub fn save(&self, meta: &Metainfo) -> io::Result<()> {
        let path = self.path_of(&meta.info_hash);
        self.storage
            .replace_file(&path, &meta.to_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("saving {}: {e}", path.display())))
    }

    /// Publish every stored metainfo in `registry`, in file-name order. Files that cannot be read, do not
    /// parse, sit under a name other than their info hash, or are refused (name taken, catalog full) are
    /// skipped and reported; leftover temp files from an interrupted save are ignored.
    pub fn load_into(&self, registry: &mut Registry) -> io::Result<LoadReport> {
        let mut report = LoadReport::default();
        for path in self.storage.list_dir(&self.dir)? {
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            match self.load_one(&path, registry) {
                Ok(name) => report.loaded.push(name),
                Err(reason) => report.skipped.push(Skipped { path, reason }),
            }
        }
        Ok(report)
    }

    fn load_one(&self, path: &Path, registry: &mut Registry) -> Result<String, String> {
        match self.storage.file_len(path) {
            Ok(Some(len)) if len > MAX_FILE_BYTES => {
                return Err(format!("{len} bytes, over the {MAX_FILE_BYTES}-byte limit"))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("vanished while loading".into()),
            Err(e) => return Err(format!("cannot read: {e}")),
        }
        let bytes = match self.storage.read_file(path) {
            Ok(Some(b)) => b,
            Ok(None) => return Err("vanished while loading".into()),
            Err(e) => return Err(format!("cannot read: {e}")),
        };
        let meta = Metainfo::from_bytes(&bytes).map_err(|e| format!("not a torrent: {e}"))?;
        if self.path_of(&meta.info_hash) != path {
            return Err(format!(
                "holds info hash {}, which its file name does not match",
                meta.info_hash
            ));
        }
        registry
            .publish(&bytes)
            .map(|summary| summary.name)
            .map_err(|e| format!("refused: {e}"))
    }
}

/// Publish `metainfo` in `registry` and, with a `store`, make a new entry durable before returning; if it
/// cannot be stored the entry is taken out again and the error returned. Re-publishing a stored torrent
/// writes nothing.
pub fn publish_durably(
    registry: &mut Registry,
    store: Option<&CatalogStore>,
    metainfo: &[u8],
) -> Result<FileSummary, PublishError> {
    let before = registry.catalog_len();
    let summary = registry.publish(metainfo)?;
    let Some(store) = store else {
        return Ok(summary);
    };
    if registry.catalog_len() == before {
        return Ok(summary);
    }
    let saved = match registry.metainfo(&summary.name) {
        Some(meta) => store.save(meta),
        None => Ok(()),
    };
    if let Err(e) = saved {
        registry.unpublish(&summary.name);
        return Err(PublishError::Store(e));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::Scratch;
    use crate::storage::StdStorage;
    use enjambre_core::metainfo::{build, FileEntry};
    use enjambre_core::tracker::RegistryConfig;

    fn torrent(name: &str, len: u64) -> Metainfo {
        let files = vec![FileEntry {
            path: vec![name.into()],
            length: len,
        }];
        let pieces = len.div_ceil(16 * 1024) as usize;
        build(name, 16 * 1024, files, vec![[1; 20]; pieces], None).expect("valid torrent")
    }

    fn store(dir: &Path) -> CatalogStore {
        CatalogStore::open(Arc::new(StdStorage), dir).expect("open store")
    }

    fn names(reg: &Registry) -> Vec<String> {
        reg.list().into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn published_torrents_come_back_after_a_restart() {
        let scratch = Scratch::new("catalog_store", "restart");
        let dir = scratch.0.join("state");
        let st = store(&dir);
        let mut reg = Registry::new(RegistryConfig::default());
        let (a, b) = (torrent("a.bin", 100_000), torrent("b.bin", 5));
        publish_durably(&mut reg, Some(&st), &a.raw).expect("publish a");
        publish_durably(&mut reg, Some(&st), &b.raw).expect("publish b");
        // Publishing again changes nothing on disk.
        publish_durably(&mut reg, Some(&st), &a.raw).expect("publish a again");
        assert_eq!(
            std::fs::read(st.path_of(&a.info_hash)).expect("stored"),
            a.raw
        );
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 2);

        let mut fresh = Registry::new(RegistryConfig::default());
        let report = store(&dir).load_into(&mut fresh).expect("load");
        let mut loaded = report.loaded.clone();
        loaded.sort();
        assert_eq!(loaded, vec!["a.bin", "b.bin"]);
        assert_eq!(report.skipped, vec![]);
        assert_eq!(names(&fresh), vec!["a.bin", "b.bin"]);
        assert_eq!(fresh.metainfo_bytes("b.bin"), Some(b.raw.as_slice()));
    }

    #[test]
    fn bad_files_are_reported_and_skipped() {
        let scratch = Scratch::new("catalog_store", "bad");
        let dir = scratch.0.join("state");
        let st = store(&dir);
        let good = torrent("good.bin", 10);
        st.save(&good).expect("save good");
        // Garbage under a torrent name, a valid torrent under the wrong name, a name clash, and files that
        // are not catalog entries at all (a leftover temp file, a note).
        let garbage = dir.join(format!("{}.torrent", "0".repeat(40)));
        std::fs::write(&garbage, b"d4:infoi1ee").expect("write");
        let misnamed_meta = torrent("other.bin", 20);
        let misnamed = dir.join(format!("{}.torrent", "1".repeat(40)));
        std::fs::write(&misnamed, &misnamed_meta.raw).expect("write");
        let clash = torrent("good.bin", 11);
        st.save(&clash).expect("save clash");
        std::fs::write(dir.join("x.torrent.tmp"), b"half").expect("write");
        std::fs::write(dir.join("README"), b"hi").expect("write");

        let mut reg = Registry::new(RegistryConfig::default());
        let report = st.load_into(&mut reg).expect("load");
        assert_eq!(report.loaded, vec!["good.bin"]);
        let reasons: std::collections::BTreeMap<PathBuf, String> = report
            .skipped
            .into_iter()
            .map(|s| (s.path, s.reason))
            .collect();
        // Files load in name order: of the two torrents named good.bin, the later one is refused.
        let clash_path = st
            .path_of(&good.info_hash)
            .max(st.path_of(&clash.info_hash));
        let mut expected_paths = vec![garbage.clone(), misnamed.clone(), clash_path.clone()];
        expected_paths.sort();
        assert_eq!(reasons.keys().cloned().collect::<Vec<_>>(), expected_paths);
        assert!(
            reasons[&garbage].starts_with("not a torrent"),
            "{reasons:?}"
        );
        assert!(
            reasons[&misnamed].ends_with("which its file name does not match"),
            "{reasons:?}"
        );
        assert!(
            reasons[&clash_path].starts_with("refused: name"),
            "{reasons:?}"
        );
        assert_eq!(names(&reg), vec!["good.bin"]);
    }

    #[test]
    fn a_publish_that_cannot_be_stored_is_rolled_back() {
        let scratch = Scratch::new("catalog_store", "rollback");
        let dir = scratch.0.join("state");
        let st = store(&dir);
        // Make the folder unusable: replace it by a plain file.
        std::fs::remove_dir(&dir).expect("remove");
        std::fs::write(&dir, b"not a folder").expect("write");
        let mut reg = Registry::new(RegistryConfig::default());
        let t = torrent("a.bin", 10);
        match publish_durably(&mut reg, Some(&st), &t.raw) {
            Err(PublishError::Store(_)) => {}
            other => panic!("expected a store error, got {other:?}"),
        }
        assert_eq!(names(&reg), Vec::<String>::new());
        // Without a store the same publish works (memory only).
        publish_durably(&mut reg, None, &t.raw).expect("in memory");
        assert_eq!(names(&reg), vec!["a.bin"]);
    }
}
