//! Scratch folders, deterministic file contents, SHA-1 and byte-for-byte comparison.

use sha1::{Digest, Sha1};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A folder under the system temp folder for one test: emptied at creation, removed on drop when the test
/// succeeded, kept (and its path printed) when it failed.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// `TMP/enjambre-e2e-<pid>-<n>-<name>`, fresh and empty (`n` counts scratch folders in this process, so
    /// two tests can never share one).
    pub fn new(name: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("enjambre-e2e-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Scratch { path }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh subfolder.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.path.join(name);
        std::fs::create_dir_all(&d)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        d
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "scratch folder kept for inspection: {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The deterministic contents generator: a SplitMix64 stream seeded by `seed`.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The first `len` bytes of the pattern of `seed` (small sizes only).
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Pattern(seed).fill(&mut v);
    v
}

/// Write `size` pseudo-random bytes determined by `seed` to `path`; returns their SHA-1 (hex).
pub fn write_pattern_file(path: &Path, size: u64, seed: u64) -> String {
    let mut f = std::fs::File::create(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let mut pattern = Pattern(seed);
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        // Keep the stream independent of the chunking: `fill` works in whole words, and every chunk but the
        // last is a multiple of 8 bytes.
        pattern.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write pattern file");
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    f.sync_all().expect("sync pattern file");
    hex::encode(hasher.finalize())
}

/// SHA-1 of a file, hex.
pub fn sha1_file(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read file to hash");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// How two files differ: `None` when byte-identical, else a description (sizes, or the first differing
/// byte offset).
pub fn difference(original: &Path, copy: &Path) -> Option<String> {
    let open = |p: &Path| {
        std::fs::File::open(p).unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()))
    };
    let (mut a, mut b) = (open(original), open(copy));
    let (la, lb) = (
        a.metadata().expect("metadata").len(),
        b.metadata().expect("metadata").len(),
    );
    if la != lb {
        return Some(format!("{lb} bytes instead of {la}"));
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < la {
        let n = (la - offset).min(ba.len() as u64) as usize;
        a.read_exact(&mut ba[..n]).expect("read original");
        b.read_exact(&mut bb[..n]).expect("read copy");
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Some(format!("differs at byte {}", offset + i as u64));
        }
        offset += n as u64;
    }
    None
}

/// Panic unless `copy` holds exactly the bytes of `original`, saying where they differ.
pub fn assert_same_file(original: &Path, copy: &Path) {
    if let Some(diff) = difference(original, copy) {
        panic!(
            "{} is not a copy of {}: {diff}",
            copy.display(),
            original.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_seeded() {
        assert_eq!(pattern_bytes(100, 1), pattern_bytes(100, 1));
        assert_ne!(pattern_bytes(100, 1), pattern_bytes(100, 2));
        let s = Scratch::new("pattern-unit");
        let p = s.path().join("f");
        let sha = write_pattern_file(&p, (1 << 20) + 7, 3);
        assert_eq!(sha, sha1_file(&p));
        assert_eq!(std::fs::read(&p).unwrap(), pattern_bytes((1 << 20) + 7, 3));
    }

    #[test]
    fn comparison_names_the_first_difference() {
        let s = Scratch::new("compare-unit");
        let (a, b, c) = (s.path().join("a"), s.path().join("b"), s.path().join("c"));
        std::fs::write(&a, b"hello").unwrap();
        std::fs::write(&b, b"hellO").unwrap();
        std::fs::write(&c, b"hell").unwrap();
        assert_eq!(difference(&a, &b).as_deref(), Some("differs at byte 4"));
        assert_eq!(difference(&a, &c).as_deref(), Some("4 bytes instead of 5"));
        assert_eq!(difference(&a, &a), None);
        assert_same_file(&a, &a);
    }
}
