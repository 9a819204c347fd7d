//! Deciding, from what is on disk, how a torrent starts: seed, fresh download, recheck, or resume from a
//! checkpoint (which the node spot-checks before trusting), with hints: pieces the checkpoint does not claim
//! but whose bytes are all in the files, which the node hashes and keeps if they match.

use crate::peer::AddMode;
use crate::state_dir::StateDir;
use crate::storage::{retry_io, Storage, IO_TRIES};
use crate::torrent_store::TorrentStore;
use enjambre_core::bitfield::Bitfield;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_core::metainfo::Metainfo;
use enjambre_core::node::Resume;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Save the metainfo in the state folder, create missing files at their full (sparse) length, and say how the
/// node should treat what is there; a failing step is tried again ([`retry_io`]: every step is idempotent).
/// Blocking: run it on a [`crate::storage::Blocking`] runner.
pub fn plan_resume(
    storage: Arc<dyn Storage>,
    dir: &Path,
    meta: &Metainfo,
    mode: AddMode,
) -> io::Result<Resume> {
    let what = format!("preparing {}", meta.info.name);
    retry_io(IO_TRIES, &what, || {
        plan_resume_once(storage.clone(), dir, meta, mode)
    })
}

fn plan_resume_once(
    storage: Arc<dyn Storage>,
    dir: &Path,
    meta: &Metainfo,
    mode: AddMode,
) -> io::Result<Resume> {
    if mode == AddMode::Trusted {
        return Ok(Resume::Complete);
    }
    let state = StateDir::new(storage.clone(), dir);
    state.save_metainfo(meta)?;
    let store = TorrentStore::new(storage, dir.to_path_buf(), meta)?;
    let sizes_ok = store.sizes_match()?;
    let resume = match mode {
        AddMode::Seed => {
            state.save_checkpoint(&Checkpoint::new(meta, &Bitfield::full(meta.piece_count())))?;
            Resume::Complete
        }
        AddMode::Recheck => Resume::RecheckAll,
        AddMode::Trusted => Resume::Complete,
        AddMode::Download => match state.load_checkpoint(&meta.info_hash)? {
            Some(cp) => match cp.validate(meta) {
                Ok(claimed) => {
                    let hints = if sizes_ok {
                        written_beyond(&store, meta, &claimed)
                    } else {
                        Vec::new()
                    };
                    Resume::Checkpoint {
                        claimed,
                        sizes_ok,
                        hints,
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "checkpoint of {} not usable ({e}): rechecking",
                        meta.info.name
                    );
                    if sizes_ok {
                        Resume::RecheckAll
                    } else {
                        Resume::Fresh
                    }
                }
            },
            // Files already there at full size but no checkpoint: find out what they hold.
            None if sizes_ok && meta.total_length() > 0 => Resume::RecheckAll,
            None => Resume::Fresh,
        },
    };
    // A seed's files were just hashed at their full length: nothing to create, and no handle to keep open
    // (a folder of ten thousand seeds would hold ten thousand descriptors).
    if !(mode == AddMode::Seed && sizes_ok) {
        store.prepare()?;
    }
    Ok(resume)
}

/// Most bytes of hinted pieces hashed before a resumed torrent starts: beyond it (a filesystem that reports
/// every byte as written, a crash long after the last checkpoint) the pieces are downloaded again instead.
const MAX_HINT_BYTES: u64 = 256 * 1024 * 1024;

/// Pieces not in `claimed` whose bytes were all written. A checkpoint trails verification by one sync, so after
/// a crash of the process (not of the machine: the page cache kept its writes) the pieces verified since are
/// still on disk; hashing them costs milliseconds, downloading them again costs a round trip per block.
fn written_beyond(store: &TorrentStore, meta: &Metainfo, claimed: &Bitfield) -> Vec<u32> {
    let unclaimed = (0..meta.piece_count()).filter(|&p| !claimed.get(p));
    match store.written_pieces(unclaimed) {
        Ok(Some(pieces)) => {
            let bytes: u64 = pieces.iter().map(|&p| u64::from(meta.piece_len(p))).sum();
            if bytes > MAX_HINT_BYTES {
                tracing::debug!(
                    "{}: {} written pieces beyond the checkpoint, too many to hash first",
                    meta.info.name,
                    pieces.len()
                );
                return Vec::new();
            }
            pieces
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::debug!("{}: cannot look for written pieces: {e}", meta.info.name);
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::Scratch;
    use crate::storage::StdStorage;
    use enjambre_core::metainfo::{build, FileEntry, PieceHasher};

    /// Eight 64 KiB pieces in one file.
    fn meta(data: &[u8]) -> Metainfo {
        let mut h = PieceHasher::new(64 * 1024);
        h.feed(data);
        let files = vec![FileEntry {
            path: vec!["f.bin".into()],
            length: data.len() as u64,
        }];
        build("f.bin", 64 * 1024, files, h.finish(), None).unwrap()
    }

    #[test]
    fn resume_hints_the_written_pieces_the_checkpoint_does_not_claim() {
        let s = Scratch::new("resume", "hints");
        let data: Vec<u8> = (0..512 * 1024).map(|i| (i * 7 % 253) as u8).collect();
        let m = meta(&data);
        let storage: Arc<dyn Storage> = Arc::new(StdStorage);
        // A first run: files made, pieces 0, 1 and 5 written, a checkpoint claiming piece 0 only.
        assert!(matches!(
            plan_resume(storage.clone(), &s.0, &m, AddMode::Download).unwrap(),
            Resume::Fresh
        ));
        let store = TorrentStore::new(storage.clone(), s.0.clone(), &m).unwrap();
        for p in [0usize, 1, 5] {
            let at = p * 64 * 1024;
            store.write(at as u64, &data[at..at + 64 * 1024]).unwrap();
        }
        store.sync().unwrap();
        let mut claimed = Bitfield::new(8);
        claimed.set(0);
        StateDir::new(storage.clone(), &s.0)
            .save_checkpoint(&Checkpoint::new(&m, &claimed))
            .unwrap();
        drop(store);

        let Resume::Checkpoint {
            claimed: got,
            sizes_ok,
            hints,
        } = plan_resume(storage, &s.0, &m, AddMode::Download).unwrap()
        else {
            panic!("expected a checkpoint resume");
        };
        assert!(sizes_ok);
        assert_eq!(got.iter_ones().collect::<Vec<_>>(), vec![0]);
        if hints == (1..8).collect::<Vec<u32>>() {
            eprintln!("SKIP: this filesystem does not track holes (every byte reads as written)");
            return;
        }
        assert_eq!(hints, vec![1, 5]);
    }
}
