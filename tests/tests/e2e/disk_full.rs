//! A real full disk: a leecher downloads into a 12 MiB tmpfs that another file already half fills. The
//! download stops with "No space left on device" on stderr while the process keeps running; the checkpoint
//! on the small filesystem stays valid (every piece it claims is on disk), through a SIGKILL too; once the
//! other file is deleted, a new `peer get` resumes from the checkpoint and the file completes byte-identical.
//!
//! Mounting needs root (CAP_SYS_ADMIN): where the machine does not allow it, the test says so and passes.

use enjambre_core::bitfield::Bitfield;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_tests::bins::{get, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::proc::Proc;
use enjambre_tests::{read_checkpoint, wait_for};
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NAME: &str = "backup.img";
const SIZE: u64 = 10_000_000;
/// The small filesystem.
const FS_SIZE: &str = "12m";
/// What another program already keeps on it.
const OTHER: u64 = 6 * 1024 * 1024;

/// A tmpfs mounted for the test, unmounted on drop (even when the test fails).
struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    /// Mount a tmpfs of `size` at `path`, or say why not.
    fn mount(path: &Path, size: &str) -> Result<SmallFs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallFs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Every piece `cp` claims has the original's bytes in `copy`.
fn assert_claims_hold(cp: &Checkpoint, copy: &Path, original: &Path) {
    let claimed = Bitfield::from_ranges(&cp.verified, cp.piece_count).expect("ranges");
    assert_eq!(claimed.count(), cp.verified_count);
    let (copy, original) = (
        std::fs::read(copy).expect("copy"),
        std::fs::read(original).expect("original"),
    );
    let piece = cp.piece_length as usize;
    for p in claimed.iter_ones() {
        let at = p as usize * piece;
        let end = (at + piece).min(original.len());
        assert_eq!(
            hex::encode(Sha1::digest(&copy[at..end])),
            hex::encode(Sha1::digest(&original[at..end])),
            "the checkpoint claims piece {p}, whose bytes on disk are wrong"
        );
    }
}

/// Wait until `proc` has told on stderr, after `skip` bytes of it, that the download stopped for lack of space.
fn wait_stopped(proc: &mut Proc, skip: usize) -> String {
    wait_for(
        "the leecher to say its download stopped on a full disk",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            assert!(
                proc.is_running(),
                "the leecher exited\n{}",
                proc.stderr_tail()
            );
            let text = proc.stderr_text();
            text.get(skip..)?
                .lines()
                .find(|l| l.contains("download stopped") && l.contains("No space left on device"))
                .map(str::to_string)
        },
    )
}

#[test]
fn a_full_disk_stops_the_download_keeps_the_checkpoint_and_resumes_when_space_returns() {
    let scratch = Scratch::new("disk-full");
    let small = scratch.dir("small");
    let _fs = match SmallFs::mount(&small, FS_SIZE) {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED: cannot mount a small filesystem on this machine ({why}); run as root to include it");
            return;
        }
    };
    let tracker = Tracker::start(&scratch);
    let seed_dir = scratch.dir("seed");
    let original = seed_dir.join(NAME);
    write_pattern_file(&original, SIZE, 41);
    let seeder = serve(
        "S",
        &scratch,
        &PeerArgs::new(Some(&tracker), &seed_dir),
        &[NAME],
    );
    let hash = seeder.seeding[NAME].clone();

    let other = small.join("other-program.dat");
    std::fs::write(&other, vec![7u8; OTHER as usize]).expect("fill the small filesystem");
    let args = PeerArgs::new(Some(&tracker), &small);
    let copy = small.join(NAME);

    // 1. The disk fills: the download stops with the error, the process waits, the checkpoint holds.
    let mut first = get("L1", &scratch, &args, &[NAME], &[]);
    let line = wait_stopped(&mut first.proc, 0);
    println!("leecher said: {line}");
    assert!(
        line.contains(NAME) && line.contains("trying again in"),
        "{line}"
    );
    let before = read_checkpoint(&small, &hash).expect("a checkpoint on the small filesystem");
    assert!(!before.complete && before.verified_count > 0, "{before:?}");
    assert_claims_hold(&before, &copy, &original);
    // It keeps trying, and keeps failing, while the disk stays full.
    let said = first.proc.stderr_text().len();
    wait_stopped(&mut first.proc, said);

    // 2. Killed while stopped: the checkpoint survives whole, and no temp file holds on to space.
    first.proc.kill();
    let after = read_checkpoint(&small, &hash).expect("the checkpoint survives the kill");
    assert!(after.verified_count >= before.verified_count);
    assert_claims_hold(&after, &copy, &original);
    let leftovers: Vec<String> = std::fs::read_dir(small.join(".enjambre"))
        .expect("state folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // The folder lock stays after a kill (it is released by the process, not removed).
        .filter(|n| !n.ends_with(".json") && !n.ends_with(".torrent") && n != "lock")
        .collect();
    assert!(
        leftovers.is_empty(),
        "left in the state folder: {leftovers:?}"
    );

    // 3. Started again on the still-full disk it resumes from the checkpoint and stops again; space returns
    // and the retry completes the file.
    let mut second = get("L2", &scratch, &args, &[NAME], &[]);
    wait_stopped(&mut second.proc, 0);
    std::fs::remove_file(&other).expect("free the space");
    let r = second.reports(1, Duration::from_secs(120)).remove(0);
    println!("resumed and finished: {r:?}");
    assert!(
        r.pieces_resumed >= after.verified_count,
        "resumed {} pieces, the checkpoint claimed {}",
        r.pieces_resumed,
        after.verified_count
    );
    let piece = u64::from(after.piece_length);
    let missing = SIZE - u64::from(r.pieces_resumed).min(SIZE / piece) * piece;
    // Each stop throws away what was in flight; allow a generous bound, but no second copy of the file.
    assert!(
        r.bytes_downloaded < missing + SIZE / 2,
        "fetched {} bytes for {missing} missing",
        r.bytes_downloaded
    );
    assert!(
        r.banned.is_empty(),
        "an honest seeder was banned: {:?}",
        r.banned
    );
    assert_same_file(&original, &copy);
    let done = read_checkpoint(&small, &hash).expect("final checkpoint");
    assert!(done.complete, "{done:?}");
}
