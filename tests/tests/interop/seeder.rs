//! An enjambre seeder serves libtorrent and aria2c leechers that found it through enjambre's tracker.

use crate::foreign::{
    aria2, have, save_catalog_torrent, scrape, Client, LtOptions, LtPeer, SwarmWatch,
};
use enjambre_tests::bins::{serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use std::time::{Duration, Instant};

/// `peer serve` shares a file and publishes it; the metainfo is taken from the tracker's catalog (what
/// enjambre made, announce URL included). A stock libtorrent session downloads it, then (with libtorrent
/// gone) aria2c does: each finds the seeder only through the tracker, so every byte came from enjambre.
#[test]
fn enjambre_seeder_serves_libtorrent_and_aria2() {
    const TEST: &str = "enjambre_seeder_serves_libtorrent_and_aria2";
    if !have(TEST, &[Client::Libtorrent, Client::Aria2]) {
        return;
    }
    const NAME: &str = "from-enjambre.bin";
    const SIZE: u64 = 6 * 1024 * 1024 + 12_345;
    let scratch = Scratch::new("interop-seeder");
    let tracker = Tracker::start(&scratch);
    let swarm = SwarmWatch::start(&tracker);
    let e_dir = scratch.dir("enjambre");
    write_pattern_file(&e_dir.join(NAME), SIZE, 401);
    let e = serve(
        "E",
        &scratch,
        &PeerArgs::new(Some(&tracker), &e_dir),
        &[NAME],
    );
    let hash = e.seeding[NAME].clone();
    let torrent = scratch.path().join("from-enjambre.torrent");
    save_catalog_torrent(&tracker, NAME, &torrent);

    // libtorrent, default settings (it tries uTP first, which enjambre does not speak, then TCP).
    let started = Instant::now();
    let lt_dir = scratch.dir("lt");
    let mut lt = LtPeer::start(
        "lt-leecher",
        &scratch,
        &lt_dir,
        &LtOptions {
            leeches: vec![torrent.clone()],
            timeout_secs: 40,
            ..LtOptions::default()
        },
    );
    let fin = lt.wait_final(Duration::from_secs(45));
    let t = fin.torrent(&hash);
    assert!(
        t.is_seeding && t.downloaded_from("enjambre") >= SIZE,
        "{t:#?}"
    );
    assert_eq!(
        t.served_by(),
        ["enjambre".to_string()].into(),
        "libtorrent got payload from someone else: {t:#?}"
    );
    // Neither side was given the other's address: whichever dialled first (libtorrent the seeder, or the
    // seeder libtorrent, after its next announce) had it from the tracker.
    assert!(
        t.found_through_tracker("enjambre") || t.dialled_in_by("enjambre"),
        "libtorrent and the enjambre seeder did not meet through the tracker: {t:#?}"
    );
    assert_same_file(&e_dir.join(NAME), &lt_dir.join(NAME));
    println!(
        "libtorrent leecher: {SIZE} B from enjambre in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // aria2c, now the only other peer alive being the enjambre seeder.
    let started = Instant::now();
    let a_dir = scratch.dir("aria2");
    let mut a = aria2("aria2-leecher", &scratch, &a_dir, &torrent, false);
    a.wait_done(Duration::from_secs(40));
    assert_same_file(&e_dir.join(NAME), &a_dir.join(NAME));
    println!(
        "aria2c leecher: {SIZE} B from enjambre in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Both announced to enjambre's tracker as leechers of the torrent; libtorrent reported completion.
    swarm.assert_leeched("libtorrent", lt.addr.port(), &hash);
    swarm.assert_leeched("aria2c", a.port, &hash);
    assert!(swarm.node(e.addr.port()).sharing.contains(NAME));
    let s = scrape(&tracker, &hash);
    assert!(
        s.downloaded >= 1 && s.complete >= 1,
        "scrape after two completed downloads: {s:?}"
    );
}
