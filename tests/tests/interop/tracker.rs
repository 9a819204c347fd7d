//! libtorrent and aria2c announce to enjambre's tracker and find each other, and enjambre peers, through it.

use crate::foreign::{
    aria2, aria2_with, have, peer_create, scrape, Client, LtOptions, LtPeer, SwarmWatch,
};
use enjambre_tests::bins::{get, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::ports::PortWatch;
use std::collections::BTreeSet;
use std::time::Duration;

/// Two files, each with one foreign seeder and one foreign leecher of the other kind, so that each
/// transfer is forced: X seeded by aria2c and fetched by libtorrent, Y seeded by libtorrent and fetched by
/// aria2c. Nobody is given an address: the only way to meet is enjambre's tracker. Then an enjambre leecher
/// joins and fetches both from them.
#[test]
fn foreign_clients_meet_through_the_tracker() {
    const TEST: &str = "foreign_clients_meet_through_the_tracker";
    if !have(TEST, &[Client::Libtorrent, Client::Aria2]) {
        return;
    }
    const X: &str = "x-from-aria2.bin";
    const Y: &str = "y-from-libtorrent.bin";
    const SIZE: u64 = 5 * 1024 * 1024 + 99;
    let scratch = Scratch::new("interop-tracker");
    let tracker = Tracker::start(&scratch);
    let swarm = SwarmWatch::start(&tracker);
    let watch = PortWatch::start();
    let (as_dir, lt_dir, al_dir) = (
        scratch.dir("aria2-s"),
        scratch.dir("lt"),
        scratch.dir("aria2-l"),
    );
    write_pattern_file(&as_dir.join(X), SIZE, 404);
    write_pattern_file(&lt_dir.join(Y), SIZE, 405);
    let (x_torrent, y_torrent) = (
        scratch.path().join("x.torrent"),
        scratch.path().join("y.torrent"),
    );
    let x_hash = peer_create(&as_dir.join(X), &x_torrent, "512KiB", &tracker.url());
    let y_hash = peer_create(&lt_dir.join(Y), &y_torrent, "512KiB", &tracker.url());

    // Seeders first: aria2c for X; libtorrent seeding Y and fetching X in one session.
    let aria2_seeder = aria2("aria2-seeder", &scratch, &as_dir, &x_torrent, true);
    watch.watch("aria2-seeder", aria2_seeder.proc.pid());
    let mut lt = LtPeer::start(
        "lt",
        &scratch,
        &lt_dir,
        &LtOptions {
            seeds: vec![y_torrent.clone()],
            leeches: vec![x_torrent.clone()],
            linger: true,
            timeout_secs: 60,
            no_utp: true,
            ..LtOptions::default()
        },
    );
    watch.watch("libtorrent", lt.proc.pid());
    swarm.wait_sharing(lt.addr.port(), &y_hash, Duration::from_secs(20));
    let mut aria2_leecher = aria2("aria2-leecher", &scratch, &al_dir, &y_torrent, false);

    lt.wait_complete(&x_hash, Duration::from_secs(40));
    aria2_leecher.wait_done(Duration::from_secs(40));
    assert_same_file(&as_dir.join(X), &lt_dir.join(X));
    assert_same_file(&lt_dir.join(Y), &al_dir.join(Y));

    // Then an enjambre leecher of both, which can only learn the foreign peers from the tracker.
    let e_dir = scratch.dir("enjambre");
    let mut e = get(
        "E",
        &scratch,
        &PeerArgs::new(Some(&tracker), &e_dir),
        &[],
        &[
            "--torrent",
            x_torrent.to_str().expect("utf-8"),
            "--torrent",
            y_torrent.to_str().expect("utf-8"),
        ],
    );
    watch.watch("E", e.proc.pid());
    let reports = e.reports(2, Duration::from_secs(40));
    for r in &reports {
        let (original, allowed): (_, &[&str]) = if r.info_hash.to_hex() == x_hash {
            (as_dir.join(X), &["aria2-seeder", "libtorrent"])
        } else {
            assert_eq!(r.info_hash.to_hex(), y_hash, "{r:?}");
            (lt_dir.join(Y), &["libtorrent"])
        };
        assert_same_file(&original, &e_dir.join(&r.name));
        let owners: BTreeSet<String> = r
            .sources
            .keys()
            .map(|a| {
                watch.owner(a).unwrap_or_else(|| {
                    panic!("E got bytes from unknown {a}: {r:?} {:?}", watch.snapshot())
                })
            })
            .collect();
        assert!(
            !owners.is_empty() && owners.iter().all(|o| allowed.contains(&o.as_str())),
            "{} came from {owners:?}, expected some of {allowed:?}: {r:?}",
            r.name
        );
        assert!(r.sources.values().sum::<u64>() >= SIZE, "{r:?}");
    }

    let fin = lt.stop();
    let x = fin.torrent(&x_hash);
    let y = fin.torrent(&y_hash);
    // libtorrent fetched X from aria2c (whichever of the two dialled, it had the address from the tracker).
    assert_eq!(x.served_by(), ["aria2".to_string()].into(), "{x:#?}");
    assert!(x.downloaded_from("aria2") >= SIZE, "{x:#?}");
    // aria2c fetched Y from libtorrent: it was the only one to have it.
    assert!(y.uploaded_to("aria2") >= SIZE, "{y:#?}");
    // And sent it to enjambre, which could get it nowhere else by then.
    assert!(y.uploaded_to("enjambre") >= SIZE, "{y:#?}");

    // The tracker listed all of them, in their roles.
    swarm.assert_leeched("libtorrent", lt.addr.port(), &x_hash);
    swarm.assert_leeched("aria2c leecher", aria2_leecher.port, &y_hash);
    assert!(
        swarm.node(aria2_seeder.port).sharing.contains(&x_hash),
        "{:#?}",
        swarm.all()
    );
    assert!(
        swarm.node(lt.addr.port()).sharing.contains(&y_hash),
        "{:#?}",
        swarm.all()
    );
    let s = scrape(&tracker, &x_hash);
    assert!(
        s.complete >= 1 && s.downloaded >= 1,
        "X: aria2c seeds it, libtorrent completed it: {s:?}"
    );
}

/// The same through enjambre's UDP tracker (BEP 15): the torrent names only `udp://` so every announce is
/// over UDP. A libtorrent seeder is found by an aria2c leecher and an enjambre leecher (which has no
/// `--tracker` and so uses the torrent's), and the tracker lists all three.
#[test]
fn foreign_clients_and_enjambre_meet_through_the_udp_tracker() {
    const TEST: &str = "foreign_clients_and_enjambre_meet_through_the_udp_tracker";
    if !have(TEST, &[Client::Libtorrent, Client::Aria2]) {
        return;
    }
    const Z: &str = "z-over-udp.bin";
    const SIZE: u64 = 3 * 1024 * 1024 + 17;
    let scratch = Scratch::new("interop-udp-tracker");
    let tracker = Tracker::start(&scratch);
    let swarm = SwarmWatch::start(&tracker);
    let watch = PortWatch::start();
    let (lt_dir, a_dir, e_dir) = (
        scratch.dir("lt"),
        scratch.dir("aria2"),
        scratch.dir("enjambre"),
    );
    write_pattern_file(&lt_dir.join(Z), SIZE, 406);
    let torrent = scratch.path().join("z.torrent");
    let z_hash = peer_create(&lt_dir.join(Z), &torrent, "256KiB", &tracker.udp_url());

    let mut lt = LtPeer::start(
        "lt",
        &scratch,
        &lt_dir,
        &LtOptions {
            seeds: vec![torrent.clone()],
            linger: true,
            timeout_secs: 60,
            no_utp: true,
            ..LtOptions::default()
        },
    );
    watch.watch("libtorrent", lt.proc.pid());
    swarm.wait_sharing(lt.addr.port(), &z_hash, Duration::from_secs(20));

    let mut a = aria2_with("aria2-leecher", &scratch, &a_dir, &torrent, false, true);
    watch.watch("aria2", a.proc.pid());
    let mut e = get(
        "E",
        &scratch,
        &PeerArgs::new(None, &e_dir),
        &[],
        &["--torrent", torrent.to_str().expect("utf-8")],
    );
    watch.watch("E", e.proc.pid());
    let reports = e.reports(1, Duration::from_secs(40));
    assert_same_file(&lt_dir.join(Z), &e_dir.join(Z));
    for a in reports[0].sources.keys() {
        let owner = watch.owner(a);
        assert!(
            matches!(owner.as_deref(), Some("libtorrent" | "aria2")),
            "E got bytes from {a} ({owner:?}): {:?}",
            reports[0]
        );
    }
    a.wait_done(Duration::from_secs(40));
    assert_same_file(&lt_dir.join(Z), &a_dir.join(Z));

    // Nobody was given an address and the torrent names only the UDP tracker, so aria2c and enjambre found
    // libtorrent (and each other) through UDP announces. The swarm view cannot show it reliably: a 3 MB
    // leecher on loopback may start, complete and stop between two polls. The tracker's counters can.
    let metrics = enjambre_tests::http::get(tracker.addr, "/metrics").expect("GET /metrics");
    let udp_announces: f64 = metrics
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("enjambre_tracker_udp_datagrams_total{outcome=\"announced\"} ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no UDP announce counter: {}", metrics.text()));
    assert!(
        udp_announces >= 3.0,
        "libtorrent, aria2c and enjambre each announced over UDP: {udp_announces}"
    );
    let fin = lt.stop();
    let z = fin.torrent(&z_hash);
    assert!(
        z.uploaded_to("aria2") + z.uploaded_to("enjambre") >= SIZE,
        "{z:#?}"
    );
    let s = scrape(&tracker, &z_hash);
    // enjambre announces `completed`; aria2c, stopping at once (`--seed-time=0`), may send only `stopped`.
    assert!(
        s.downloaded >= 1,
        "enjambre completed over UDP announces: {s:?}"
    );
}
