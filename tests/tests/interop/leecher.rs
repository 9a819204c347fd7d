//! enjambre downloads from a libtorrent seeder and from an aria2c seeder, found through enjambre's
//! tracker, and the file is byte-identical.

use crate::foreign::{aria2, have, peer_create, Client, LtOptions, LtPeer, SwarmWatch};
use enjambre_tests::bins::{get, GetReport, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::ports::PortWatch;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const SIZE: u64 = 9 * 1024 * 1024 + 7;

/// `peer get --torrent T --json` against the tracker only; returns its one report after checking the copy.
fn enjambre_get(
    scratch: &Scratch,
    tracker: &Tracker,
    torrent: &Path,
    original: &Path,
) -> GetReport {
    let dir = scratch.dir("enjambre");
    let mut e = get(
        "E",
        scratch,
        &PeerArgs::new(Some(tracker), &dir),
        &[],
        &["--torrent", torrent.to_str().expect("utf-8 path")],
    );
    let r = e.reports(1, Duration::from_secs(40)).remove(0);
    assert_same_file(original, &dir.join(&r.name));
    r
}

/// Bytes per source owner; panics on a source none of the watched processes used.
fn by_owner(watch: &PortWatch, r: &GetReport) -> BTreeMap<String, u64> {
    let mut from = BTreeMap::new();
    for (addr, bytes) in &r.sources {
        let owner = watch.owner(addr).unwrap_or_else(|| {
            panic!(
                "bytes from {addr}, which is no known process: {r:?} {:?}",
                watch.snapshot()
            )
        });
        *from.entry(owner).or_insert(0) += bytes;
    }
    from
}

#[test]
fn enjambre_downloads_from_a_libtorrent_seeder() {
    const TEST: &str = "enjambre_downloads_from_a_libtorrent_seeder";
    if !have(TEST, &[Client::Libtorrent]) {
        return;
    }
    const NAME: &str = "from-libtorrent.bin";
    let scratch = Scratch::new("interop-from-lt");
    let tracker = Tracker::start(&scratch);
    let swarm = SwarmWatch::start(&tracker);
    let watch = PortWatch::start();
    let seed_dir = scratch.dir("lt");
    let original = seed_dir.join(NAME);
    write_pattern_file(&original, SIZE, 402);
    let torrent = scratch.path().join("from-libtorrent.torrent");
    let hash = peer_create(&original, &torrent, "256KiB", &tracker.url());

    // Capped, as a seeder on a real link is: libtorrent then chokes enjambre before it is interested and
    // unchokes it after, and enjambre's first requests cross the choke. Under BEP 6 they are still pending;
    // enjambre used to ask for them again and got 1 MiB twice (`bytes_wasted` below).
    let mut lt = LtPeer::start(
        "lt-seeder",
        &scratch,
        &seed_dir,
        &LtOptions {
            seeds: vec![torrent.clone()],
            upload_rate: Some(6 * 1024 * 1024),
            timeout_secs: 60,
            no_utp: true,
            ..LtOptions::default()
        },
    );
    watch.watch("libtorrent", lt.proc.pid());
    watch.claim("libtorrent", lt.addr.port());
    let ready = lt.wait_ready(1, Duration::from_secs(20));
    assert_eq!(ready[0].info_hash, hash, "libtorrent's info hash");
    swarm.wait_sharing(lt.addr.port(), &hash, Duration::from_secs(10));

    let r = enjambre_get(&scratch, &tracker, &torrent, &original);
    assert_eq!(
        (r.info_hash.to_hex().as_str(), r.size),
        (hash.as_str(), SIZE),
        "{r:?}"
    );
    assert!(r.banned.is_empty(), "{r:?}");
    assert_eq!(
        r.bytes_wasted, 0,
        "nothing fetched twice from a single source: {r:?}"
    );
    let from = by_owner(&watch, &r);
    assert_eq!(from.keys().collect::<Vec<_>>(), ["libtorrent"], "{r:?}");
    assert!(from["libtorrent"] >= SIZE, "{r:?}");

    let fin = lt.stop();
    let t = fin.torrent(&hash);
    assert_eq!(
        t.uploaded_to_all(),
        SIZE,
        "libtorrent uploaded the file exactly once, to enjambre: {t:#?}"
    );
    assert_eq!(t.uploaded_to("enjambre"), SIZE, "{t:#?}");
    println!("enjambre <- libtorrent: {SIZE} B in {:.2} s", r.seconds);
}

#[test]
fn enjambre_downloads_from_an_aria2_seeder() {
    const TEST: &str = "enjambre_downloads_from_an_aria2_seeder";
    if !have(TEST, &[Client::Aria2]) {
        return;
    }
    const NAME: &str = "from-aria2.bin";
    let scratch = Scratch::new("interop-from-aria2");
    let tracker = Tracker::start(&scratch);
    let swarm = SwarmWatch::start(&tracker);
    let watch = PortWatch::start();
    let seed_dir = scratch.dir("aria2");
    let original = seed_dir.join(NAME);
    write_pattern_file(&original, SIZE, 403);
    let torrent = scratch.path().join("from-aria2.torrent");
    let hash = peer_create(&original, &torrent, "1MiB", &tracker.url());

    let a = aria2("aria2-seeder", &scratch, &seed_dir, &torrent, true);
    watch.watch("aria2", a.proc.pid());
    watch.claim("aria2", a.port);
    // aria2c checks the data, then announces as a seeder.
    swarm.wait_sharing(a.port, &hash, Duration::from_secs(20));

    let r = enjambre_get(&scratch, &tracker, &torrent, &original);
    assert_eq!(
        (r.info_hash.to_hex().as_str(), r.size),
        (hash.as_str(), SIZE),
        "{r:?}"
    );
    assert!(r.banned.is_empty() && r.bytes_wasted == 0, "{r:?}");
    let from = by_owner(&watch, &r);
    assert_eq!(from.keys().collect::<Vec<_>>(), ["aria2"], "{r:?}");
    assert!(from["aria2"] >= SIZE, "{r:?}");
    println!("enjambre <- aria2c: {SIZE} B in {:.2} s", r.seconds);
}
