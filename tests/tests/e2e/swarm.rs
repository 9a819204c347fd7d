//! The story of issue 2 with the real binaries: a tracker and three peers; A shares six files of mixed sizes,
//! B and C fetch all six by name, C while B is still under way; every copy is byte-identical and C gets
//! pieces from both A and B. Also the plain loopback throughput of one uncapped download.

use enjambre_tests::bins::{get, serve, GetReport, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::ports::PortWatch;
use enjambre_tests::{read_checkpoint, wait_for};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const FILES: [(&str, u64); 6] = [
    ("one-byte.bin", 1),
    ("small.bin", 100 * 1024),
    ("odd.bin", 1024 * 1024 + 7),
    ("five.bin", 5 * 1024 * 1024),
    ("twelve.bin", 12 * 1024 * 1024),
    ("fifty.bin", 50_000_000),
];

/// A's upload cap: B alone needs a few seconds for the ~68 MB, so C joins while B is under way.
const A_UPLOAD: &str = "16MB";

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-3)
}

/// Check one peer's reports: one per file, right sizes, nothing resumed or banned, every copy identical.
fn check_copies(who: &str, reports: &[GetReport], a_dir: &Path, dir: &Path) {
    let by_name: BTreeMap<&str, &GetReport> =
        reports.iter().map(|r| (r.name.as_str(), r)).collect();
    assert_eq!(by_name.len(), FILES.len(), "{who}: {reports:#?}");
    for (name, size) in FILES {
        let r = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{who}: no report for {name}: {reports:#?}"));
        assert_eq!(r.size, size, "{who}: {r:?}");
        assert_eq!(r.pieces_total as u64, size.div_ceil(512 * 1024), "{r:?}");
        assert_eq!(r.pieces_resumed, 0, "{who}: nothing was on disk: {r:?}");
        assert!(r.bytes_downloaded >= size, "{who}: {r:?}");
        assert!(
            r.sources.values().sum::<u64>() >= size,
            "{who}: sources account for less than the file: {r:?}"
        );
        assert!(r.banned.is_empty(), "{who}: nobody misbehaved: {r:?}");
        assert_same_file(&a_dir.join(name), &dir.join(name));
        let cp = read_checkpoint(dir, &r.info_hash.to_hex())
            .unwrap_or_else(|| panic!("{who}: no checkpoint for {name}"));
        assert!(cp.complete && cp.verified_count == r.pieces_total, "{cp:?}");
    }
}

fn print_rates(who: &str, reports: &[GetReport]) {
    let total: u64 = reports.iter().map(|r| r.size).sum();
    let slowest = reports.iter().map(|r| r.seconds).fold(0.0, f64::max);
    for r in reports {
        println!(
            "  {who} {:>14} {:>10} B in {:6.2} s = {:7.1} MB/s",
            r.name,
            r.size,
            r.seconds,
            mb_per_s(r.size, r.seconds)
        );
    }
    println!(
        "{who}: {total} B in {slowest:.2} s (files in parallel) = {:.1} MB/s",
        mb_per_s(total, slowest)
    );
}

#[test]
fn three_peers_share_six_files_by_name() {
    let scratch = Scratch::new("swarm");
    let tracker = Tracker::start(&scratch);
    let watch = PortWatch::start();
    let a_dir = scratch.dir("a");
    for (i, (name, size)) in FILES.iter().enumerate() {
        write_pattern_file(&a_dir.join(name), *size, 100 + i as u64);
    }
    let names: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
    let a = serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir).upload_rate(A_UPLOAD),
        &names,
    );
    watch.watch("A", a.proc.pid());
    watch.claim("A", a.addr.port());

    // The catalog lists the six files with their sizes.
    let files = tracker.get_json("/files");
    let listed = files.as_array().expect("GET /files is a list");
    for (name, size) in FILES {
        assert!(
            listed
                .iter()
                .any(|f| f["name"] == name && f["size"].as_u64() == Some(size)),
            "{name} ({size} B) missing from the catalog: {files}"
        );
    }

    let b_dir = scratch.dir("b");
    let mut b = get(
        "B",
        &scratch,
        &PeerArgs::new(Some(&tracker), &b_dir),
        &names,
        &[],
    );
    watch.watch("B", b.proc.pid());
    // C starts once B holds a good part of the big file (so B has pieces to share) but not all of it.
    let fifty_hash = a.seeding["fifty.bin"].clone();
    wait_for(
        "B to verify 20% of fifty.bin",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            read_checkpoint(&b_dir, &fifty_hash)
                .filter(|cp| cp.verified_count * 5 >= cp.piece_count)
        },
    );
    let c_dir = scratch.dir("c");
    let mut c = get(
        "C",
        &scratch,
        &PeerArgs::new(Some(&tracker), &c_dir),
        &names,
        &[],
    );
    watch.watch("C", c.proc.pid());
    let b_was_complete = read_checkpoint(&b_dir, &fifty_hash).is_some_and(|cp| cp.complete);
    assert!(
        !b_was_complete,
        "B finished before C started: raise the data or lower A's cap"
    );

    let c_reports = c.reports(FILES.len(), Duration::from_secs(90));
    let b_reports = b.reports(FILES.len(), Duration::from_secs(90));
    check_copies("B", &b_reports, &a_dir, &b_dir);
    check_copies("C", &c_reports, &a_dir, &c_dir);

    // Who C got its bytes from, with inbound connections' ephemeral ports mapped to their process.
    let mut from: BTreeMap<String, u64> = BTreeMap::new();
    for r in &c_reports {
        for (addr, bytes) in &r.sources {
            let owner = watch.owner(addr).unwrap_or_else(|| {
                panic!(
                    "C reports bytes from {addr}, which is none of A, B, C (ports seen: {:?})",
                    watch.snapshot()
                )
            });
            let kind = if watch.is_listening(addr.port()) {
                "listening address"
            } else {
                "connection's ephemeral address"
            };
            println!("  C <- {addr} ({owner}'s {kind}) for {}: {bytes} B", r.name);
            *from.entry(owner).or_default() += bytes;
        }
    }
    println!("C's bytes by source: {from:?}");
    assert!(
        from.get("A").is_some_and(|&n| n > 0),
        "C got nothing from A: {from:?}"
    );
    assert!(
        from.get("B").is_some_and(|&n| n > 0),
        "C got nothing from B: {from:?}"
    );
    assert!(
        !from.contains_key("C"),
        "C downloaded from itself: {from:?}"
    );

    println!("swarm with A's upload capped at {A_UPLOAD}/s:");
    print_rates("B", &b_reports);
    print_rates("C", &c_reports);

    // The swarm view knows A seeds all six.
    let swarm = tracker.get_json("/swarm");
    let text = swarm.to_string();
    for name in names {
        assert!(text.contains(name), "{name} missing from /swarm: {text}");
    }
}

#[test]
fn loopback_throughput_of_one_uncapped_download() {
    const SIZE: u64 = 50_000_000;
    let scratch = Scratch::new("throughput");
    let tracker = Tracker::start(&scratch);
    let a_dir = scratch.dir("a");
    write_pattern_file(&a_dir.join("big.bin"), SIZE, 7);
    let a = serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir),
        &["big.bin"],
    );
    let hash = a.seeding["big.bin"].clone();
    let b_dir = scratch.dir("b");
    let started = std::time::Instant::now();
    let mut b = get(
        "B",
        &scratch,
        &PeerArgs::new(Some(&tracker), &b_dir),
        &["big.bin"],
        &[],
    );
    // The peer reports `seconds` to the resolution of its 200 ms progress poll; watching the checkpoint
    // every 5 ms times the completion more closely (from process start, so start-up is included).
    let done = wait_for(
        "B's checkpoint to say complete",
        Duration::from_secs(90),
        Duration::from_millis(5),
        || {
            read_checkpoint(&b_dir, &hash)
                .filter(|cp| cp.complete)
                .map(|_| started.elapsed().as_secs_f64())
        },
    );
    let r = b.reports(1, Duration::from_secs(90)).remove(0);
    assert_eq!(r.size, SIZE);
    assert_eq!(r.bytes_wasted, 0, "{r:?}");
    assert_same_file(&a_dir.join("big.bin"), &b_dir.join("big.bin"));
    println!(
        "loopback throughput, one uncapped source: {SIZE} B complete on disk {done:.3} s after starting \
         `peer get` = {:.1} MB/s (its report: {:.2} s = {:.1} MB/s, to the 200 ms poll; report read after \
         {:.2} s)",
        mb_per_s(SIZE, done),
        r.seconds,
        mb_per_s(SIZE, r.seconds),
        r.wall_seconds
    );
}
