//! Magnet links (BEP 9) across clients: enjambre opens a magnet whose metadata only a libtorrent seeder
//! has, and libtorrent opens a magnet whose metadata only an enjambre seeder has. Neither is given the
//! torrent file; the only way in is `ut_metadata` over the BEP 10 extension protocol.

use crate::foreign::{have, peer_create, Client, LtOptions, LtPeer};
use enjambre_tests::bins::{get, serve, PeerArgs};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use std::time::Duration;

const SIZE: u64 = 5 * 1024 * 1024 + 321;

#[test]
fn enjambre_opens_a_magnet_served_by_libtorrent() {
    const TEST: &str = "enjambre_opens_a_magnet_served_by_libtorrent";
    if !have(TEST, &[Client::Libtorrent]) {
        return;
    }
    const NAME: &str = "lt-magnet.bin";
    let scratch = Scratch::new("interop-magnet-lt-seeds");
    let lt_dir = scratch.dir("lt");
    // 16 KiB pieces of 14 MiB: 896 piece hashes, so the info dictionary spans two 16 KiB metadata pieces.
    const LT_SIZE: u64 = 14 * 1024 * 1024;
    write_pattern_file(&lt_dir.join(NAME), LT_SIZE, 501);
    let torrent = scratch.path().join("lt-magnet.torrent");
    let hash = peer_create(
        &lt_dir.join(NAME),
        &torrent,
        "16KiB",
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
            timeout_secs: 60,
            ..LtOptions::default()
        },
    );
    lt.wait_ready(1, Duration::from_secs(20));
    let uri = format!("magnet:?xt=urn:btih:{hash}&dn={NAME}&x.pe={}", lt.addr);
    let e_dir = scratch.dir("enjambre");
    let mut e = get("E", &scratch, &PeerArgs::new(None, &e_dir), &[&uri], &[]);
    let reports = e.reports(1, Duration::from_secs(45));
    assert_eq!(reports[0].info_hash.to_hex(), hash);
    assert_eq!(reports[0].name, NAME);
    assert_same_file(&lt_dir.join(NAME), &e_dir.join(NAME));
    assert!(
        e_dir
            .join(".enjambre")
            .join(format!("{hash}.torrent"))
            .exists(),
        "the metainfo from libtorrent is stored"
    );
    let fin = lt.stop();
    assert!(
        fin.torrent(&hash).uploaded_to("enjambre") >= LT_SIZE,
        "{:#?}",
        fin.torrent(&hash)
    );
}

#[test]
fn libtorrent_opens_a_magnet_served_by_enjambre() {
    const TEST: &str = "libtorrent_opens_a_magnet_served_by_enjambre";
    if !have(TEST, &[Client::Libtorrent]) {
        return;
    }
    const NAME: &str = "e-magnet.bin";
    let scratch = Scratch::new("interop-magnet-e-seeds");
    let e_dir = scratch.dir("enjambre");
    write_pattern_file(&e_dir.join(NAME), SIZE, 502);
    let e = serve("E", &scratch, &PeerArgs::new(None, &e_dir), &[NAME]);
    let hash = e.seeding[NAME].clone();
    let uri = format!("magnet:?xt=urn:btih:{hash}&dn={NAME}&x.pe={}", e.addr);
    let lt_dir = scratch.dir("lt");
    let mut lt = LtPeer::start(
        "lt-leecher",
        &scratch,
        &lt_dir,
        &LtOptions {
            magnets: vec![uri],
            no_utp: true,
            timeout_secs: 40,
            ..LtOptions::default()
        },
    );
    let fin = lt.wait_final(Duration::from_secs(45));
    let t = fin.torrent(&hash);
    assert!(t.is_seeding, "{t:#?}");
    assert_eq!(t.name, NAME);
    assert_eq!(t.total_size, SIZE);
    assert!(t.downloaded_from("enjambre") >= SIZE, "{t:#?}");
    assert_same_file(&e_dir.join(NAME), &lt_dir.join(NAME));
}
