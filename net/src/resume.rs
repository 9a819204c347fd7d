//! Deciding, from what is on disk, how a torrent starts: seed, fresh download, recheck, or resume from a
//! checkpoint (which the node spot-checks before trusting).

use crate::peer::AddMode;
use crate::state_dir::StateDir;
use crate::storage::Storage;
use crate::torrent_store::TorrentStore;
use enjambre_core::bitfield::Bitfield;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_core::metainfo::Metainfo;
use enjambre_core::node::Resume;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Save the metainfo in the state folder, create missing files at their full (sparse) length, and say how the
/// node should treat what is there. Blocking: run it on a [`crate::storage::Blocking`] runner.
pub fn plan_resume(
    storage: Arc<dyn Storage>,
    dir: &Path,
    meta: &Metainfo,
    mode: AddMode,
) -> io::Result<Resume> {
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
        AddMode::Download => match state.load_checkpoint(&meta.info_hash)? {
            Some(cp) => match cp.validate(meta) {
                Ok(claimed) => Resume::Checkpoint {
                    claimed,
                    sizes_ok,
                    hints: Vec::new(),
                },
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
    store.prepare()?;
    Ok(resume)
}
