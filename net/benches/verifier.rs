//! The verifier's SHA-1 throughput, for `bench/hash` (run with `cargo bench -p enjambre-net --bench verifier`).
//!
//! `verifier TORRENT DIR` hashes every piece of a torrent whose data is in DIR through
//! [`TorrentStore::hash_piece`] — the exact call the peer's disk worker makes to verify a piece (1 MiB reads
//! into a reused buffer, then the `sha1` crate) — and checks each digest against the metainfo. It prints one
//! JSON line: bytes, seconds, MB/s, and the same figure for `sha1` over an in-memory buffer (no reads), so the
//! cost of the page-cache copy shows. Without arguments it hashes 1 GiB of an in-memory buffer only.
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
    let memory = memory_rate(1 << 30);
    match args.as_slice() {
        [torrent, dir] => {
            let (bytes, secs) = match verify_all(torrent, dir) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("verifier: {e}");
                    std::process::exit(1);
                }
            };
            println!(
                "{{\"bytes\":{bytes},\"seconds\":{secs:.6},\"verifier_mb_s\":{:.1},\"sha1_memory_mb_s\":{memory:.1}}}",
                bytes as f64 / secs / 1e6
            );
        }
        _ => println!("{{\"sha1_memory_mb_s\":{memory:.1}}}"),
    }
}

/// Hash every piece through the store, as the disk worker does; fail on a mismatch.
fn verify_all(torrent: &str, dir: &str) -> Result<(u64, f64), String> {
    let bytes = std::fs::read(torrent).map_err(|e| format!("{torrent}: {e}"))?;
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| format!("{torrent}: {e}"))?;
    let store = TorrentStore::new(Arc::new(StdStorage), PathBuf::from(dir), &meta)
        .map_err(|e| format!("{dir}: {e}"))?;
    let start = Instant::now();
    for piece in 0..meta.piece_count() {
        let got = store.hash_piece(piece).map_err(|e| e.to_string())?;
        if Some(got) != meta.piece_hash(piece) {
            return Err(format!("piece {piece} does not match its hash"));
        }
    }
    Ok((meta.total_length(), start.elapsed().as_secs_f64()))
}

/// MB/s of `sha1` over `total` bytes of a 1 MiB buffer already in memory.
fn memory_rate(total: usize) -> f64 {
    let buf: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    let mut hasher = Sha1::new();
    for _ in 0..total / buf.len() {
        hasher.update(&buf);
    }
    let digest = hasher.finalize();
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(digest);
    total as f64 / secs / 1e6
}
