//! Making a torrent from a file or folder on disk: walk it, stream every byte through
//! [`PieceHasher`] in 1 MiB reads (constant memory, whatever the size), and build the metainfo.
//!
//! Synchronous like [`Storage`]; a driver runs it through a [`crate::storage::Blocking`] runner.

use crate::byte_size::is_piece_length;
use crate::state_dir::STATE_DIR_NAME;
use crate::storage::{retry_io, Storage, IO_TRIES};
use enjambre_core::metainfo::{
    build, is_safe_component, FileEntry, Metainfo, MetainfoError, PieceHasher,
};
use std::io;
use std::path::{Path, PathBuf};

/// Bytes read per call while hashing.
const READ_CHUNK: u64 = 1024 * 1024;

/// Deepest folder nesting followed (guards against symlink loops).
const MAX_DEPTH: usize = 64;

/// Why a torrent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Reading the file system failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path does not exist.
    #[error("{0}: no such file or folder")]
    NotFound(PathBuf),
    /// The path has no usable final name (e.g. `.` or `/`); pass a canonical path instead.
    #[error("{0}: cannot derive a torrent name from this path")]
    NoName(PathBuf),
    /// A file or folder name is not UTF-8 or cannot be stored safely in a torrent.
    #[error("{0}: name is not valid UTF-8 or not a safe torrent path component")]
    UnsafeName(PathBuf),
    /// The folder holds no files to share.
    #[error("{0}: folder contains no files")]
    NoFiles(PathBuf),
    /// Folders are nested deeper than the walk follows (a symlink loop?).
    #[error("{0}: folders nested too deeply")]
    TooDeep(PathBuf),
    /// The piece length is not a power of two in 16 KiB..=64 MiB.
    #[error("piece length {0} is not a power of two between 16 KiB and 64 MiB")]
    BadPieceLength(u32),
    /// A file changed length while it was being hashed.
    #[error("{path}: changed size while hashing ({expected} bytes, now {actual})")]
    Changed {
        /// The file.
        path: PathBuf,
        /// Length when the walk saw it.
        expected: u64,
        /// Length after hashing.
        actual: u64,
    },
    /// The metainfo could not be built from what was found.
    #[error("building the metainfo: {0}")]
    Metainfo(#[from] MetainfoError),
}

/// One file found by the walk.
struct Found {
    path: PathBuf,
    components: Vec<String>,
    length: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn safe_name(path: &Path) -> Result<String, CreateError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_safe_component(n))
        .map(str::to_string)
        .ok_or_else(|| CreateError::UnsafeName(path.to_path_buf()))
}

/// Collect the files under `dir` in sorted order, skipping state folders.
fn walk(
    storage: &dyn Storage,
    dir: &Path,
    prefix: &[String],
    out: &mut Vec<Found>,
) -> Result<(), CreateError> {
    if prefix.len() >= MAX_DEPTH {
        return Err(CreateError::TooDeep(dir.to_path_buf()));
    }
    for entry in storage.list_dir(dir).map_err(io_err(dir))? {
        if entry.file_name().is_some_and(|n| n == STATE_DIR_NAME) {
            continue;
        }
        let mut components = prefix.to_vec();
        components.push(safe_name(&entry)?);
        if storage.is_dir(&entry) {
            walk(storage, &entry, &components, out)?;
        } else {
            let length = storage
                .file_len(&entry)
                .map_err(io_err(&entry))?
                .ok_or_else(|| CreateError::NotFound(entry.clone()))?;
            out.push(Found {
                path: entry,
                components,
                length,
            });
        }
    }
    Ok(())
}

/// Build the metainfo for the file or folder at `path`: a file gives the single-file form named after it; a
/// folder gives the multi-file form named after it, its files walked recursively in sorted order with any
/// `.enjambre` state folder skipped. Data is streamed in 1 MiB reads; `progress(done, total)` is called
/// with byte counts at the start and after every read.
pub fn create_metainfo(
    storage: &dyn Storage,
    path: &Path,
    piece_length: u32,
    announce: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Metainfo, CreateError> {
    if !is_piece_length(u64::from(piece_length)) {
        return Err(CreateError::BadPieceLength(piece_length));
    }
    if path.file_name().is_none() {
        return Err(CreateError::NoName(path.to_path_buf()));
    }
    let name = safe_name(path)?;
    let multi_file = storage.is_dir(path);
    let files = if multi_file {
        let mut found = Vec::new();
        walk(storage, path, &[], &mut found)?;
        if found.is_empty() {
            return Err(CreateError::NoFiles(path.to_path_buf()));
        }
        found
    } else {
        let length = storage
            .file_len(path)
            .map_err(io_err(path))?
            .ok_or_else(|| CreateError::NotFound(path.to_path_buf()))?;
        vec![Found {
            path: path.to_path_buf(),
            components: vec![name.clone()],
            length,
        }]
    };

    let total = files
        .iter()
        .try_fold(0u64, |acc, f| acc.checked_add(f.length))
        .ok_or(CreateError::Metainfo(MetainfoError::TooLarge))?;
    let mut hasher = PieceHasher::new(piece_length);
    let mut buf = vec![0u8; READ_CHUNK as usize];
    let mut done = 0u64;
    progress(0, total);
    for f in &files {
        hash_file(storage, f, &mut hasher, &mut buf, &mut |n| {
            done += n;
            progress(done, total);
        })?;
    }

    let entries = files
        .into_iter()
        .map(|f| FileEntry {
            path: f.components,
            length: f.length,
        })
        .collect();
    Ok(build(
        &name,
        piece_length,
        entries,
        hasher.finish(),
        announce,
    )?)
}

/// Feed one file's bytes to `hasher`, checking afterwards that it did not change size underneath us
/// (reads past the end would otherwise silently hash zeros).
fn hash_file(
    storage: &dyn Storage,
    f: &Found,
    hasher: &mut PieceHasher,
    buf: &mut [u8],
    advanced: &mut dyn FnMut(u64),
) -> Result<(), CreateError> {
    if f.length == 0 {
        return Ok(());
    }
    let what = format!("reading {}", f.path.display());
    let file =
        retry_io(IO_TRIES, &what, || storage.open(&f.path, false)).map_err(io_err(&f.path))?;
    let mut offset = 0u64;
    while offset < f.length {
        let n = (f.length - offset).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        retry_io(IO_TRIES, &what, || file.read_at(chunk, offset)).map_err(io_err(&f.path))?;
        hasher.feed(chunk);
        offset += n as u64;
        advanced(n as u64);
    }
    let actual = file.len().map_err(io_err(&f.path))?;
    if actual != f.length {
        return Err(CreateError::Changed {
            path: f.path.clone(),
            expected: f.length,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StdStorage;
    use sha1::{Digest, Sha1};

    use crate::storage::testing::Scratch;

    const PL: u32 = 16 * 1024;

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 131 + seed as usize) % 253) as u8)
            .collect()
    }

    /// Independent reference: SHA-1 of each `pl`-sized chunk of the concatenation.
    fn reference(data: &[u8], pl: usize) -> Vec<[u8; 20]> {
        data.chunks(pl).map(|c| Sha1::digest(c).into()).collect()
    }

    fn write(path: &Path, data: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    #[test]
    fn single_file_not_a_multiple_of_the_piece_size() {
        let s = Scratch::new("create", "single");
        let data = payload(3 * PL as usize + 1234, 1);
        let p = s.0.join("movie.mkv");
        write(&p, &data);
        let mut calls = Vec::new();
        let m = create_metainfo(
            &StdStorage,
            &p,
            PL,
            Some("http://t/announce"),
            &mut |d, t| calls.push((d, t)),
        )
        .unwrap();
        assert!(!m.info.multi_file);
        assert_eq!(m.info.name, "movie.mkv");
        assert_eq!(m.total_length(), data.len() as u64);
        assert_eq!(m.info.pieces, reference(&data, PL as usize));
        assert_eq!(m.piece_len(3), 1234);
        assert_eq!(m.announce.as_deref(), Some("http://t/announce"));
        assert_eq!(calls.first(), Some(&(0, data.len() as u64)));
        assert_eq!(calls.last(), Some(&(data.len() as u64, data.len() as u64)));
        // The bytes round-trip through the parser to the same torrent.
        assert_eq!(Metainfo::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn folder_walked_sorted_with_empty_files_and_state_folder_skipped() {
        let s = Scratch::new("create", "folder");
        let root = s.0.join("album");
        let (a, b, c) = (
            payload(40_000, 2),
            payload(17, 3),
            payload(PL as usize * 2, 4),
        );
        write(&root.join("b/02.flac"), &b);
        write(&root.join("a.txt"), &a);
        write(&root.join("b/01.empty"), b"");
        write(&root.join("c/deep/x.bin"), &c);
        write(&root.join(".enjambre/abc.json"), b"{}");
        write(&root.join("b/.enjambre/x"), b"state");
        std::fs::create_dir_all(root.join("emptydir")).unwrap();
        let m = create_metainfo(&StdStorage, &root, PL, None, &mut |_, _| {}).unwrap();
        assert!(m.info.multi_file);
        assert_eq!(m.info.name, "album");
        let paths: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(paths, ["a.txt", "b/01.empty", "b/02.flac", "c/deep/x.bin"]);
        let lens: Vec<u64> = m.info.files.iter().map(|f| f.length).collect();
        assert_eq!(lens, [40_000, 0, 17, PL as u64 * 2]);
        let all = [a, b, c].concat();
        assert_eq!(m.info.pieces, reference(&all, PL as usize));
        assert!(m.announce.is_none());
    }

    #[test]
    fn zero_byte_single_file_and_folders_of_zero_byte_files() {
        let s = Scratch::new("create", "zero");
        let p = s.0.join("nothing.dat");
        write(&p, b"");
        let m = create_metainfo(&StdStorage, &p, PL, None, &mut |_, _| {}).unwrap();
        assert_eq!(m.total_length(), 0);
        assert_eq!(m.piece_count(), 0);
        let d = s.0.join("blank");
        write(&d.join("x"), b"");
        write(&d.join("y"), b"");
        let m = create_metainfo(&StdStorage, &d, PL, None, &mut |_, _| {}).unwrap();
        assert_eq!(m.info.files.len(), 2);
        assert_eq!(m.piece_count(), 0);
    }

    #[test]
    fn multi_mebibyte_file_streams_in_chunks() {
        let s = Scratch::new("create", "big");
        let data = payload(3 * 1024 * 1024 + 5, 9);
        let p = s.0.join("big.bin");
        write(&p, &data);
        let mut calls = 0;
        let m = create_metainfo(&StdStorage, &p, 256 * 1024, None, &mut |_, _| calls += 1).unwrap();
        assert_eq!(m.info.pieces, reference(&data, 256 * 1024));
        assert_eq!(calls, 1 + 4); // start + four reads of at most 1 MiB
    }

    #[test]
    fn refusals_are_typed() {
        let s = Scratch::new("create", "errors");
        let p = s.0.join("f");
        write(&p, b"abc");
        let nop = &mut |_: u64, _: u64| {};
        assert!(matches!(
            create_metainfo(&StdStorage, &p, 1000, None, nop),
            Err(CreateError::BadPieceLength(1000))
        ));
        assert!(matches!(
            create_metainfo(&StdStorage, &s.0.join("missing"), PL, None, nop),
            Err(CreateError::NotFound(_))
        ));
        std::fs::create_dir_all(s.0.join("void/.enjambre")).unwrap();
        assert!(matches!(
            create_metainfo(&StdStorage, &s.0.join("void"), PL, None, nop),
            Err(CreateError::NoFiles(_))
        ));
        assert!(matches!(
            create_metainfo(&StdStorage, Path::new("/"), PL, None, nop),
            Err(CreateError::NoName(_))
        ));
        write(&s.0.join("odd/C:evil"), b"x");
        assert!(matches!(
            create_metainfo(&StdStorage, &s.0.join("odd"), PL, None, nop),
            Err(CreateError::UnsafeName(_))
        ));
    }
}
