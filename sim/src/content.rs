//! Deterministic file contents: the same scenario seed and file name always give the same bytes.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// Chunk size used to generate and hash content.
const CHUNK: usize = 1 << 20;

fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    let digest = Sha1::digest(format!("{seed}/{name}").as_bytes());
    let mut key = [0u8; 32];
    key[..20].copy_from_slice(&digest);
    ChaCha8Rng::from_seed(key)
}

/// Call `sink` with the content of file `name` (of `size` bytes) in order, one chunk at a time.
pub fn generate(seed: u64, name: &str, size: u64, mut sink: impl FnMut(&[u8])) {
    let mut rng = rng_for(seed, name);
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        sink(&buf[..n]);
        left -= n as u64;
    }
}

/// Fill `buf` with the content of file `name` from `offset` on, as [`generate`] would have produced it there
/// (the generator is seekable: byte `i` is byte `i % 4` of its 32-bit word `i / 4`).
pub fn fill_at(seed: u64, name: &str, offset: u64, buf: &mut [u8]) {
    let mut rng = rng_for(seed, name);
    rng.set_word_pos(u128::from(offset / 4));
    let skip = (offset % 4) as usize;
    if skip == 0 {
        rng.fill_bytes(buf);
        return;
    }
    let mut head = [0u8; 4];
    rng.fill_bytes(&mut head);
    let n = (4 - skip).min(buf.len());
    buf[..n].copy_from_slice(&head[skip..skip + n]);
    if buf.len() > n {
        rng.fill_bytes(&mut buf[n..]);
    }
}

/// SHA-1 of the whole content of file `name` (remembered for the life of the process: crash sweeps ask for
/// the same digests run after run).
pub fn digest(seed: u64, name: &str, size: u64) -> [u8; 20] {
    type Cache = Mutex<BTreeMap<(u64, String, u64), [u8; 20]>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = (seed, name.to_string(), size);
    if let Some(d) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return d;
    }
    let mut h = Sha1::new();
    generate(seed, name, size, |c| h.update(c));
    let d: [u8; 20] = h.finalize().into();
    if let Ok(mut c) = cache.lock() {
        c.insert(key, d);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_depends_on_seed_and_name_only() {
        let mut a = Vec::new();
        generate(1, "x", 3_000_000, |c| a.extend_from_slice(c));
        let mut b = Vec::new();
        generate(1, "x", 3_000_000, |c| b.extend_from_slice(c));
        assert_eq!(a, b);
        assert_eq!(a.len(), 3_000_000);
        assert_ne!(digest(1, "x", 100), digest(2, "x", 100));
        assert_ne!(digest(1, "x", 100), digest(1, "y", 100));
        let d: [u8; 20] = Sha1::digest(&a).into();
        assert_eq!(d, digest(1, "x", 3_000_000));
        for (off, len) in [
            (0, 10),
            (1, 3),
            (2, 7),
            (3, 1),
            (1_048_575, 9),
            (2_999_990, 10),
        ] {
            let mut buf = vec![0u8; len];
            fill_at(1, "x", off as u64, &mut buf);
            assert_eq!(buf, a[off..off + len], "at {off}+{len}");
        }
    }
}
