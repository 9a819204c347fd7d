//! The verifier's SHA-1 throughput, for `bench/hash` (run with `cargo bench -p enjambre-net --bench verifier`).
//!
//! `verifier TORRENT DIR` hashes every piece of a torrent whose data is in DIR through
//! [`TorrentStore::hash_piece`] — the exact call the peer's disk worker makes to verify a piece (1 MiB reads
//! into a reused buffer, then the `sha1` crate) — and checks each digest against the metainfo. It prints one
//! JSON line: bytes, seconds, MB/s, and the same figure for `sha1` over an in-memory buffer (no reads), so the
//! cost of the page-cache copy shows. Without arguments it hashes 1 GiB of an in-memory buffer only.
//! Each figure is given twice: over wall time and over the thread's own CPU time (`/proc/thread-self/schedstat`,
//! user and system), the divisor `openssl speed` uses by default, so that a busy machine does not skew the
//! comparison.
//! `harness = false`: a plain program, no nightly `test` crate.

use enjambre_core::metainfo::Metainfo;
use enjambre_net::storage::StdStorage;
use enjambre_net::torrent_store::TorrentStore;
use sha1::{Digest, Sha1};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    // `cargo bench` appends `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (wall, cpu) = timed(|| memory_hash(1 << 30));
    let (memory_wall, memory_cpu) = ((1u64 << 30) as f64 / wall, (1u64 << 30) as f64 / cpu);
    match args.as_slice() {
        [torrent, dir] => {
            let mut bytes = 0;
            let (wall, cpu) = timed(|| match verify_all(torrent, dir) {
                Ok(n) => bytes = n,
                Err(e) => {
                    eprintln!("verifier: {e}");
                    std::process::exit(1);
                }
            });
            let (wall, cpu) = (bytes as f64 / wall, bytes as f64 / cpu);
            println!(
                "{{\"bytes\":{bytes},\"verifier_mb_s\":{:.1},\"verifier_cpu_mb_s\":{:.1},\"sha1_memory_mb_s\":{:.1},\"sha1_memory_cpu_mb_s\":{:.1}}}",
                wall / 1e6,
                cpu / 1e6,
                memory_wall / 1e6,
                memory_cpu / 1e6
            );
        }
        _ => println!(
            "{{\"sha1_memory_mb_s\":{:.1},\"sha1_memory_cpu_mb_s\":{:.1}}}",
            memory_wall / 1e6,
            memory_cpu / 1e6
        ),
    }
}

/// Run `f`; returns the wall seconds and this thread's CPU seconds it took.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (wall0, cpu0) = (Instant::now(), thread_cpu());
    f();
    (wall0.elapsed().as_secs_f64(), thread_cpu() - cpu0)
}

/// Seconds this thread has run on a CPU (first field of `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// Hash every piece through the store, as the disk worker does; fail on a mismatch.
fn verify_all(torrent: &str, dir: &str) -> Result<u64, String> {
    let bytes = std::fs::read(torrent).map_err(|e| format!("{torrent}: {e}"))?;
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| format!("{torrent}: {e}"))?;
    let store = TorrentStore::new(Arc::new(StdStorage), PathBuf::from(dir), &meta)
        .map_err(|e| format!("{dir}: {e}"))?;
    for piece in 0..meta.piece_count() {
        let got = store.hash_piece(piece).map_err(|e| e.to_string())?;
        if Some(got) != meta.piece_hash(piece) {
            return Err(format!("piece {piece} does not match its hash"));
        }
    }
    Ok(meta.total_length())
}

/// `sha1` over `total` bytes of a 64 KiB buffer already in memory (and in cache).
fn memory_hash(total: usize) {
    let buf: Vec<u8> = (0..1 << 16).map(|i| (i * 31 % 251) as u8).collect();
    let mut hasher = Sha1::new();
    for _ in 0..total / buf.len() {
        hasher.update(&buf);
    }
    std::hint::black_box(hasher.finalize());
}
