//! SIGKILL a real leecher half-way through a 50 MB download and start it again: it resumes from its
//! checkpoint without re-fetching verified pieces and without trusting unverified ones, and finishes with a
//! byte-identical file.

use enjambre_core::bitfield::Bitfield;
use enjambre_tests::bins::{get, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, hex, write_pattern_file, Scratch};
use enjambre_tests::{read_checkpoint, wait_for};
use sha1::{Digest, Sha1};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

const NAME: &str = "resume.bin";
const SIZE: u64 = 50_000_000;

/// SHA-1 (hex) of `len` bytes of `path` at `offset`.
fn sha1_range(path: &Path, offset: u64, len: u64) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).expect("read piece");
    hex(&Sha1::digest(&buf))
}

#[test]
fn sigkilled_leecher_resumes_without_refetching_verified_pieces() {
    let scratch = Scratch::new("resume");
    let tracker = Tracker::start(&scratch);
    let a_dir = scratch.dir("a");
    let original = a_dir.join(NAME);
    write_pattern_file(&original, SIZE, 21);
    let a = serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir).upload_rate("20MB"),
        &[NAME],
    );
    let hash = a.seeding[NAME].clone();

    let l_dir = scratch.dir("l");
    let args = PeerArgs::new(Some(&tracker), &l_dir);
    let mut first = get("L1", &scratch, &args, &[NAME], &[]);
    // Kill it once a durable checkpoint claims half the pieces; remember the last checkpoint read before.
    let seen = wait_for(
        "a checkpoint with half the pieces",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || read_checkpoint(&l_dir, &hash).filter(|cp| cp.verified_count * 2 >= cp.piece_count),
    );
    first.proc.kill();
    let after = read_checkpoint(&l_dir, &hash).expect("the checkpoint survives the kill");
    println!(
        "killed L1 with {} of {} pieces in its last checkpoint read ({} after the kill)",
        seen.verified_count, seen.piece_count, after.verified_count
    );
    assert!(
        !after.complete,
        "the download finished before the kill: lower the seeder's upload cap"
    );
    assert!(
        after.verified_count >= seen.verified_count,
        "the checkpoint went backwards"
    );

    // Invariant 2/3 from the outside: every piece the checkpoint claims is really on disk.
    let claimed = Bitfield::from_ranges(&after.verified, after.piece_count).expect("ranges");
    let piece_len = u64::from(after.piece_length);
    let partial = l_dir.join(NAME);
    for p in claimed.iter_ones() {
        let off = u64::from(p) * piece_len;
        let len = piece_len.min(SIZE - off);
        assert_eq!(
            sha1_range(&partial, off, len),
            sha1_range(&original, off, len),
            "the checkpoint claims piece {p}, whose bytes on disk are wrong"
        );
    }

    let mut second = get("L2", &scratch, &args, &[NAME], &[]);
    let r = second.reports(1, Duration::from_secs(90)).remove(0);
    println!("resumed: {r:?}");
    assert_eq!(r.size, SIZE);
    assert!(
        r.pieces_resumed >= seen.verified_count,
        "resumed {} pieces, but {} were verified and durable before the kill",
        r.pieces_resumed,
        seen.verified_count
    );
    assert!(r.pieces_resumed < r.pieces_total, "{r:?}");
    let missing = SIZE - u64::from(r.pieces_resumed) * piece_len;
    let bound = missing + piece_len * r.sources.len().max(1) as u64;
    assert!(
        r.bytes_downloaded <= bound,
        "fetched {} bytes after resuming {} pieces; at most {bound} (missing bytes + one piece per source) allowed",
        r.bytes_downloaded,
        r.pieces_resumed
    );
    assert!(
        r.bytes_downloaded >= missing.saturating_sub(piece_len),
        "{r:?}"
    );
    assert_same_file(&original, &partial);
    let cp = read_checkpoint(&l_dir, &hash).expect("final checkpoint");
    assert!(cp.complete && cp.verified_count == cp.piece_count, "{cp:?}");
}
