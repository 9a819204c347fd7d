//! Peer exchange (BEP 11) with libtorrent: an enjambre seeder tells a libtorrent leecher about another
//! enjambre peer F it is serving (and F of libtorrent), so the two leechers meet and trade pieces. Nobody
//! runs a tracker; both leechers open a magnet that names the seeder only.

use crate::foreign::{have, Client, LtOptions, LtPeer};
use enjambre_tests::bins::{get, serve, PeerArgs};
use enjambre_tests::files::{write_pattern_file, Scratch};
use std::time::Duration;

#[test]
fn libtorrent_learns_an_enjambre_peer_through_pex() {
    const TEST: &str = "libtorrent_learns_an_enjambre_peer_through_pex";
    if !have(TEST, &[Client::Libtorrent]) {
        return;
    }
    const NAME: &str = "pex.bin";
    const SIZE: u64 = 8 * 1024 * 1024;
    let scratch = Scratch::new("interop-pex");
    let e_dir = scratch.dir("seeder");
    write_pattern_file(&e_dir.join(NAME), SIZE, 601);
    // The seeder's upload is capped so that both downloads are still under way when they meet.
    let e = serve(
        "E",
        &scratch,
        &PeerArgs::new(None, &e_dir).upload_rate("1MB"),
        &[NAME],
    );
    let hash = e.seeding[NAME].clone();
    // F, another enjambre peer, joins by magnet with the seeder's address only.
    let uri = format!("magnet:?xt=urn:btih:{hash}&x.pe={}", e.addr);
    let f_dir = scratch.dir("f");
    let _f = get(
        "F",
        &scratch,
        &PeerArgs::new(None, &f_dir),
        &[&uri],
        &["--seed"],
    );
    // libtorrent gets the same magnet: the seeder's address and nothing else.
    std::thread::sleep(Duration::from_millis(1500));
    let lt_dir = scratch.dir("lt");
    let mut lt = LtPeer::start(
        "lt-leecher",
        &scratch,
        &lt_dir,
        &LtOptions {
            magnets: vec![uri],
            pex: true,
            linger: true,
            no_utp: true,
            timeout_secs: 60,
            ..LtOptions::default()
        },
    );
    // The seeder sends its first PEX message within a second or two of the handshake.
    std::thread::sleep(Duration::from_secs(6));
    let fin = lt.stop();
    let t = fin.torrent(&hash);
    // The seeder is the peer libtorrent dialled at the address it was given; the other enjambre peer is F.
    let seeder = t
        .peers
        .iter()
        .find(|p| p.addrs.contains(&e.addr.to_string()))
        .unwrap_or_else(|| panic!("libtorrent never met the seeder: {t:#?}"));
    let f = t
        .peers
        .iter()
        .find(|p| p.kind == "enjambre" && p.peer_id != seeder.peer_id)
        .unwrap_or_else(|| panic!("libtorrent never met F: {t:#?}"));
    // libtorrent has F's address from PEX (from the seeder's message, or from F's own once F, told of
    // libtorrent by the seeder, dialled it).
    assert!(
        f.sources.iter().any(|s| s == "pex"),
        "libtorrent did not learn F through PEX: {t:#?}"
    );
    assert!(
        f.downloaded + f.uploaded > 0,
        "libtorrent and F exchanged no payload: {t:#?}"
    );
}
