//! Sources that fail: one killed mid-download, one serving corrupt data. The download completes from the
//! honest, living sources, byte-identical, and the corrupt source is banned.

use enjambre_tests::bins::{get, parse_listening, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::ports::PortWatch;
use enjambre_tests::proc::Proc;
use enjambre_tests::{read_checkpoint, wait_for};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

#[test]
fn download_survives_a_source_killed_midway() {
    const NAME: &str = "failover.bin";
    const SIZE: u64 = 24 * 1024 * 1024 + 3;
    let scratch = Scratch::new("failover");
    let tracker = Tracker::start(&scratch);
    let watch = PortWatch::start();
    let s1_dir = scratch.dir("s1");
    let s2_dir = scratch.dir("s2");
    write_pattern_file(&s1_dir.join(NAME), SIZE, 31);
    write_pattern_file(&s2_dir.join(NAME), SIZE, 31);
    let mut s1 = serve(
        "S1",
        &scratch,
        &PeerArgs::new(Some(&tracker), &s1_dir).upload_rate("6MB"),
        &[NAME],
    );
    let s2 = serve(
        "S2",
        &scratch,
        &PeerArgs::new(Some(&tracker), &s2_dir).upload_rate("6MB"),
        &[NAME],
    );
    assert_eq!(
        s1.seeding[NAME], s2.seeding[NAME],
        "same file, same info hash"
    );
    let hash = s1.seeding[NAME].clone();
    for (label, s) in [("S1", &s1), ("S2", &s2)] {
        watch.watch(label, s.proc.pid());
        watch.claim(label, s.addr.port());
    }

    let l_dir = scratch.dir("l");
    let mut l = get(
        "L",
        &scratch,
        &PeerArgs::new(Some(&tracker), &l_dir),
        &[NAME],
        &[],
    );
    watch.watch("L", l.proc.pid());
    wait_for(
        "L to verify a third of the pieces",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || read_checkpoint(&l_dir, &hash).filter(|cp| cp.verified_count * 3 >= cp.piece_count),
    );
    s1.proc.kill();
    let at_kill = read_checkpoint(&l_dir, &hash).expect("checkpoint");
    assert!(
        !at_kill.complete,
        "finished before the kill: lower the caps"
    );
    println!(
        "killed S1 at {}/{} pieces",
        at_kill.verified_count, at_kill.piece_count
    );

    let r = l.reports(1, Duration::from_secs(90)).remove(0);
    assert_same_file(&s2_dir.join(NAME), &l_dir.join(NAME));
    let mut from: BTreeMap<String, u64> = BTreeMap::new();
    for (addr, bytes) in &r.sources {
        let owner = watch
            .owner(addr)
            .unwrap_or_else(|| panic!("bytes from unknown {addr}: {r:?} {:?}", watch.snapshot()));
        *from.entry(owner).or_default() += bytes;
    }
    println!("L's bytes by source: {from:?}, {:.2} s", r.seconds);
    assert!(
        from.get("S1").is_some_and(|&n| n > 0),
        "S1 served nothing before it died: {from:?}"
    );
    assert!(from.get("S2").is_some_and(|&n| n > 0), "{from:?}");
    assert!(
        from.values().sum::<u64>() >= SIZE,
        "the sources do not account for the file: {from:?}"
    );
}

#[test]
fn corrupt_source_is_banned_and_the_file_completes_from_honest_ones() {
    const NAME: &str = "corrupt.bin";
    const SIZE: u64 = 8 * 1024 * 1024 + 1000;
    let scratch = Scratch::new("corrupt");
    let tracker = Tracker::start(&scratch);
    let watch = PortWatch::start();
    let h_dir = scratch.dir("honest");
    let x_dir = scratch.dir("corrupt");
    write_pattern_file(&h_dir.join(NAME), SIZE, 41);
    write_pattern_file(&x_dir.join(NAME), SIZE, 41);
    // The honest seeder is slow, the corrupt one fast: the leecher is sure to take pieces from both.
    let h = serve(
        "H",
        &scratch,
        &PeerArgs::new(Some(&tracker), &h_dir).upload_rate("3MB"),
        &[NAME],
    );
    watch.watch("H", h.proc.pid());
    watch.claim("H", h.addr.port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corrupt_peer"));
    cmd.arg("--dir").arg(&x_dir).args([
        "--file",
        NAME,
        "--tracker",
        &tracker.url(),
        "--corrupt-every",
        "2",
    ]);
    let mut x = Proc::spawn("X", cmd, scratch.path());
    let x_addr = x.wait_line("`listening on`", Duration::from_secs(20), parse_listening);
    let x_hash = x.wait_line("`seeding`", Duration::from_secs(20), |l| {
        l.strip_prefix("seeding ")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .map(str::to_string)
    });
    assert_eq!(
        x_hash, h.seeding[NAME],
        "the corrupt peer seeds the same torrent"
    );
    watch.watch("X", x.pid());
    watch.claim("X", x_addr.port());

    let l_dir = scratch.dir("l");
    let mut l = get(
        "L",
        &scratch,
        &PeerArgs::new(Some(&tracker), &l_dir),
        &[NAME],
        &[],
    );
    watch.watch("L", l.proc.pid());
    let r = l.reports(1, Duration::from_secs(90)).remove(0);
    println!("leecher report: {r:?}");
    assert_same_file(&h_dir.join(NAME), &l_dir.join(NAME));
    assert!(
        r.bytes_wasted > 0,
        "corrupt pieces must count as wasted: {r:?}"
    );
    assert!(
        !r.banned.is_empty(),
        "the corrupt peer was not banned: {r:?}"
    );
    for addr in &r.banned {
        let owner = watch.owner(addr);
        assert_eq!(
            owner.as_deref(),
            Some("X"),
            "banned {addr}, which is not the corrupt peer (ports: {:?})",
            watch.snapshot()
        );
    }
    let honest: u64 = r
        .sources
        .iter()
        .filter(|(a, _)| watch.owner(a).as_deref() == Some("H"))
        .map(|(_, b)| b)
        .sum();
    assert!(honest > 0, "nothing came from the honest seeder: {r:?}");
    assert!(x.is_running(), "the corrupt peer crashed");
    wait_for(
        "the checkpoint to say complete",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || read_checkpoint(&l_dir, &h.seeding[NAME]).filter(|cp| cp.complete),
    );
}
