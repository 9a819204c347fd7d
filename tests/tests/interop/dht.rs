//! The DHT (BEP 5) across clients, on loopback with no tracker anywhere: a libtorrent node joining through
//! an enjambre node finds the enjambre seeder that announced a torrent and downloads it from that seeder,
//! knowing only the info hash; and enjambre, joining through libtorrent's DHT node, opens a magnet without
//! `tr` seeded by libtorrent. libtorrent's settings for a loopback DHT are those of `lt_peer.py --dht`.

use crate::foreign::{have, peer_create, Client, LtOptions, LtPeer};
use enjambre_tests::bins::{get, serve, PeerArgs};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use std::time::Duration;

const SIZE: u64 = 4 * 1024 * 1024 + 909;

#[test]
fn libtorrent_finds_an_enjambre_seeder_through_the_dht() {
    const TEST: &str = "libtorrent_finds_an_enjambre_seeder_through_the_dht";
    if !have(TEST, &[Client::Libtorrent]) {
        return;
    }
    const NAME: &str = "e-dht.bin";
    let scratch = Scratch::new("interop-dht-e-seeds");
    let boot = serve(
        "E-boot",
        &scratch,
        &PeerArgs::new(None, &scratch.dir("boot")).dht(&[]),
        &[],
    );
    let e_dir = scratch.dir("enjambre");
    write_pattern_file(&e_dir.join(NAME), SIZE, 601);
    let e = serve(
        "E-seeder",
        &scratch,
        &PeerArgs::new(None, &e_dir).dht(&[boot.addr]),
        &[NAME],
    );
    let hash = e.seeding[NAME].clone();
    let lt_dir = scratch.dir("lt");
    let mut lt = LtPeer::start(
        "lt-leecher",
        &scratch,
        &lt_dir,
        &LtOptions {
            magnets: vec![format!("magnet:?xt=urn:btih:{hash}&dn={NAME}")],
            no_utp: true,
            dht: Some(vec![boot.addr]),
            timeout_secs: 50,
            ..LtOptions::default()
        },
    );
    let fin = lt.wait_final(Duration::from_secs(55));
    let t = fin.torrent(&hash);
    assert!(t.is_seeding, "{t:#?}");
    assert!(t.downloaded_from("enjambre") >= SIZE, "{t:#?}");
    let seeder = t
        .peers
        .iter()
        .find(|p| p.kind == "enjambre")
        .expect("the enjambre seeder");
    // libtorrent dialled the seeder, whose address it could only have from the DHT (no tracker, no peer
    // hint, no peer exchange or local discovery). Its peer-list sample may miss the `dht` source flag of
    // a connection that short, so the DHT reply in its log says it.
    assert!(
        seeder.sources.iter().any(|s| s == "outgoing"),
        "libtorrent dialled the seeder: {seeder:#?}"
    );
    assert!(
        lt.proc.stderr_text().contains("received DHT peers"),
        "{}",
        lt.proc.stderr_tail()
    );
    assert_same_file(&e_dir.join(NAME), &lt_dir.join(NAME));
}

#[test]
fn enjambre_finds_a_libtorrent_seeder_through_the_dht() {
    const TEST: &str = "enjambre_finds_a_libtorrent_seeder_through_the_dht";
    if !have(TEST, &[Client::Libtorrent]) {
        return;
    }
    const NAME: &str = "lt-dht.bin";
    let scratch = Scratch::new("interop-dht-lt-seeds");
    let lt_dir = scratch.dir("lt");
    write_pattern_file(&lt_dir.join(NAME), SIZE, 602);
    let torrent = scratch.path().join("lt-dht.torrent");
    // The torrent names a dead tracker: libtorrent's only way to be found is its DHT node.
    let hash = peer_create(
        &lt_dir.join(NAME),
        &torrent,
        "64KiB",
        "http://127.0.0.1:9/announce",
    );
    let mut lt = LtPeer::start(
        "lt-seeder",
        &scratch,
        &lt_dir,
        &LtOptions {
            seeds: vec![torrent],
            linger: true,
            no_utp: true,
            dht: Some(vec![]),
            timeout_secs: 90,
            ..LtOptions::default()
        },
    );
    lt.wait_ready(1, Duration::from_secs(20));
    let e_dir = scratch.dir("enjambre");
    let args = PeerArgs::new(None, &e_dir).dht(&[lt.addr]);
    let uri = format!("magnet:?xt=urn:btih:{hash}&dn={NAME}");
    let mut e = get("E", &scratch, &args, &[&uri], &[]);
    let reports = e.reports(1, Duration::from_secs(60));
    assert_eq!(reports[0].info_hash.to_hex(), hash);
    assert!(
        reports[0].sources.contains_key(&lt.addr),
        "the libtorrent seeder sent the file: {:?}",
        reports[0].sources
    );
    assert_same_file(&lt_dir.join(NAME), &e_dir.join(NAME));
    let fin = lt.stop();
    assert!(
        fin.torrent(&hash).uploaded_to("enjambre") >= SIZE,
        "{:#?}",
        fin.torrent(&hash)
    );
}
