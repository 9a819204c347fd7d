//! SIGKILL a real leecher during a 50 MB download, twice, and start it again each time: it resumes from its
//! checkpoint without re-fetching verified pieces and without trusting unverified ones, and finishes with a
//! byte-identical file. The first restart is `peer serve` (which resumes unfinished downloads in its folder),
//! the second `peer get`.

use enjambre_core::bitfield::Bitfield;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_tests::bins::{get, parse_listening, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::proc::Proc;
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
    hex::encode(Sha1::digest(&buf))
}

/// SIGKILL `proc` as soon as a checkpoint in `dir` claims `num/den` of the pieces. Returns the last
/// checkpoint read before the kill and the one on disk after it, having checked that the download was not
/// finished, that the checkpoint did not go backwards, and that every piece it claims is really on disk.
fn kill_at(
    proc: &mut Proc,
    dir: &Path,
    hash: &str,
    num: u32,
    den: u32,
    original: &Path,
) -> (Checkpoint, Checkpoint) {
    let seen = wait_for(
        "the checkpoint to reach the kill point",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || read_checkpoint(dir, hash).filter(|cp| cp.verified_count * den >= cp.piece_count * num),
    );
    proc.kill();
    let after = read_checkpoint(dir, hash).expect("the checkpoint survives the kill");
    println!(
        "killed {} with {} of {} pieces in its last checkpoint read ({} after the kill)",
        proc.name(),
        seen.verified_count,
        seen.piece_count,
        after.verified_count
    );
    assert!(
        !after.complete,
        "the download finished before the kill: lower the seeder's upload cap"
    );
    assert!(
        after.verified_count >= seen.verified_count,
        "the checkpoint went backwards"
    );
    // Invariants 2 and 3 from the outside: every piece the checkpoint claims is really on disk.
    let claimed = Bitfield::from_ranges(&after.verified, after.piece_count).expect("ranges");
    assert_eq!(claimed.count(), after.verified_count);
    let piece_len = u64::from(after.piece_length);
    for p in claimed.iter_ones() {
        let off = u64::from(p) * piece_len;
        let len = piece_len.min(SIZE - off);
        assert_eq!(
            sha1_range(&dir.join(NAME), off, len),
            sha1_range(original, off, len),
            "the checkpoint claims piece {p}, whose bytes on disk are wrong"
        );
    }
    (seen, after)
}

#[test]
fn sigkilled_leecher_resumes_without_refetching_verified_pieces() {
    let scratch = Scratch::new("resume");
    let tracker = Tracker::start(&scratch);
    let a_dir = scratch.dir("a");
    let original = a_dir.join(NAME);
    write_pattern_file(&original, SIZE, 21);
    let a = enjambre_tests::bins::serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir).upload_rate("20MB"),
        &[NAME],
    );
    let hash = a.seeding[NAME].clone();
    let l_dir = scratch.dir("l");
    let args = PeerArgs::new(Some(&tracker), &l_dir);

    // 1. `get`, killed at a third.
    let mut first = get("L1", &scratch, &args, &[NAME], &[]);
    let (seen1, after1) = kill_at(&mut first.proc, &l_dir, &hash, 1, 3, &original);

    // 2. `serve` in the same folder resumes the unfinished download; killed at two thirds.
    let mut second = Proc::spawn("L2", args.command(&["serve"]), scratch.path());
    second.wait_line("`listening on`", Duration::from_secs(20), parse_listening);
    let percent = second.wait_line("`resuming NAME HASH (P%)`", Duration::from_secs(20), |l| {
        let rest = l.strip_prefix(&format!("resuming {NAME} {hash} ("))?;
        rest.strip_suffix("%)")?.parse::<f64>().ok()
    });
    let claimed_pct = 100.0 * f64::from(after1.verified_count) / f64::from(after1.piece_count);
    assert!(
        percent + 0.1 >= claimed_pct,
        "serve resumes at {percent}%, but the checkpoint claimed {claimed_pct:.1}%"
    );
    let (seen2, after2) = kill_at(&mut second, &l_dir, &hash, 2, 3, &original);
    assert!(
        seen2.verified_count > after1.verified_count,
        "serve made no progress"
    );

    // 3. `get` finishes it.
    let mut third = get("L3", &scratch, &args, &[NAME], &[]);
    let r = third.reports(1, Duration::from_secs(90)).remove(0);
    println!("resumed: {r:?}");
    assert_eq!(r.size, SIZE);
    assert!(
        r.pieces_resumed >= seen2.verified_count,
        "resumed {} pieces, but {} were verified and durable before the kill",
        r.pieces_resumed,
        seen2.verified_count
    );
    assert!(r.pieces_resumed < r.pieces_total, "{r:?}");
    let piece_len = u64::from(after2.piece_length);
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
    assert_same_file(&original, &l_dir.join(NAME));
    let cp = read_checkpoint(&l_dir, &hash).expect("final checkpoint");
    assert!(cp.complete && cp.verified_count == cp.piece_count, "{cp:?}");
    // Only the first run started from nothing.
    assert!(seen1.verified_count > 0);
}
