//! A mixed swarm: a libtorrent seeder, an enjambre leecher and an aria2c leecher, all through enjambre's
//! tracker. The seeder's upload is capped so that the two leechers are in the swarm together and trade.
//! Everyone completes with the exact bytes, and less than two copies leave the seeder.

use crate::foreign::{aria2, have, peer_create, Client, LtOptions, LtPeer, SwarmWatch};
use enjambre_tests::bins::{get, GetReport, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::ports::PortWatch;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[test]
fn mixed_swarm_completes_for_everyone() {
    const TEST: &str = "mixed_swarm_completes_for_everyone";
    if !have(TEST, &[Client::Libtorrent, Client::Aria2]) {
        return;
    }
    const NAME: &str = "mixed.bin";
    const SIZE: u64 = 12 * 1024 * 1024 + 5;
    /// One copy takes the seeder 3 s: both leechers are there for all of it.
    const SEED_RATE: u64 = 4 * 1024 * 1024;
    let scratch = Scratch::new("interop-mixed");
    let tracker = Tracker::start(&scratch);
    let swarm = SwarmWatch::start(&tracker);
    let watch = PortWatch::start();
    let lt_dir = scratch.dir("lt");
    let original = lt_dir.join(NAME);
    write_pattern_file(&original, SIZE, 408);
    let torrent = scratch.path().join("mixed.torrent");
    let hash = peer_create(&original, &torrent, "256KiB", &tracker.url());

    let mut lt = LtPeer::start(
        "lt-seeder",
        &scratch,
        &lt_dir,
        &LtOptions {
            seeds: vec![torrent.clone()],
            upload_rate: Some(SEED_RATE),
            timeout_secs: 90,
            no_utp: true,
            ..LtOptions::default()
        },
    );
    watch.watch("libtorrent", lt.proc.pid());
    watch.claim("libtorrent", lt.addr.port());
    lt.wait_ready(1, Duration::from_secs(20));
    swarm.wait_sharing(lt.addr.port(), &hash, Duration::from_secs(10));

    let started = Instant::now();
    let (e_dir, a_dir) = (scratch.dir("enjambre"), scratch.dir("aria2"));
    // enjambre keeps seeding once complete (`--seed`), as the other two do.
    let mut e = get(
        "E",
        &scratch,
        &PeerArgs::new(Some(&tracker), &e_dir),
        &[],
        &["--torrent", torrent.to_str().expect("utf-8"), "--seed"],
    );
    watch.watch("E", e.proc.pid());
    let mut a = aria2("aria2-leecher", &scratch, &a_dir, &torrent, false);
    watch.watch("aria2", a.proc.pid());
    watch.claim("aria2", a.port);

    let r: GetReport = e
        .proc
        .wait_line("E's JSON report", Duration::from_secs(60), |l| {
            serde_json::from_str(l).ok()
        });
    let e_secs = started.elapsed().as_secs_f64();
    a.wait_done(Duration::from_secs(60));
    let a_secs = started.elapsed().as_secs_f64();
    assert_same_file(&original, &e_dir.join(NAME));
    assert_same_file(&original, &a_dir.join(NAME));
    assert_eq!(r.info_hash.to_hex(), hash);
    assert!(r.banned.is_empty(), "{r:?}");

    let mut from: BTreeMap<String, u64> = BTreeMap::new();
    for (addr, bytes) in &r.sources {
        let owner = watch
            .owner(addr)
            .unwrap_or_else(|| panic!("bytes from unknown {addr}: {r:?} {:?}", watch.snapshot()));
        *from.entry(owner).or_default() += bytes;
    }
    let fin = lt.stop();
    let t = fin.torrent(&hash);
    println!(
        "mixed swarm: enjambre done in {e_secs:.2} s (bytes from {from:?}, wasted {}), aria2c in {a_secs:.2} s; \
         the seeder uploaded {} B ({:.2} copies): {} B to enjambre, {} B to aria2c",
        r.bytes_wasted,
        t.uploaded_to_all(),
        t.uploaded_to_all() as f64 / SIZE as f64,
        t.uploaded_to("enjambre"),
        t.uploaded_to("aria2")
    );
    assert!(
        from.keys().all(|o| o == "libtorrent" || o == "aria2"),
        "{from:?}"
    );
    // Both ends count the same bytes, up to what was in flight at the end: libtorrent counts a block when it
    // sends it, enjambre when it reads it, and enjambre closes the connection once complete, so blocks still
    // in the socket then (at most one request pipeline, e.g. endgame duplicates) are sent but never read.
    let from_lt = from.get("libtorrent").copied().unwrap_or(0);
    assert!(from_lt > 0, "{from:?}");
    let sent = t.uploaded_to("enjambre");
    let pipeline = 64 * 16 * 1024;
    assert!(
        sent >= from_lt && sent - from_lt <= pipeline,
        "libtorrent sent {sent}, enjambre got {from_lt}: {r:?} {t:#?}"
    );
    // Two copies left the swarm's only seeder's hands in less than two copies' worth of upload: the
    // leechers fed each other (enjambre <-> aria2c).
    assert!(
        t.uploaded_to_all() < 2 * SIZE,
        "the seeder uploaded {} B, two whole copies: the leechers did not trade",
        t.uploaded_to_all()
    );
    swarm.assert_leeched("aria2c", a.port, &hash);
}
