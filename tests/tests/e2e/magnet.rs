//! Magnet links (BEP 9) with the real binaries: a peer that knows only an info hash gets the info dictionary
//! from a seeding peer, stores it in its state folder, and downloads the file.

use enjambre_core::magnet::Magnet;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use enjambre_tests::bins::{get, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use std::time::Duration;

const NAME: &str = "magnet.bin";
const SIZE: u64 = 3 * 1024 * 1024 + 11;

#[test]
fn a_magnet_with_a_tracker_fetches_metadata_then_the_file() {
    let scratch = Scratch::new("magnet-tracker");
    let tracker = Tracker::start(&scratch);
    let a_dir = scratch.dir("a");
    write_pattern_file(&a_dir.join(NAME), SIZE, 91);
    let a = serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir),
        &[NAME],
    );
    let hash = a.seeding[NAME].clone();
    // A dead tracker first, then the live one: every `tr` is tried. B is given no --tracker of its own.
    let uri = format!(
        "magnet:?xt=urn:btih:{hash}&dn={NAME}&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce&tr={}",
        tracker.url().replace(':', "%3A").replace('/', "%2F")
    );
    let b_dir = scratch.dir("b");
    let mut b = get("B", &scratch, &PeerArgs::new(None, &b_dir), &[&uri], &[]);
    let reports = b.reports(1, Duration::from_secs(60));
    assert_eq!(reports[0].name, NAME);
    assert_eq!(reports[0].info_hash.to_hex(), hash);
    assert_eq!(reports[0].size, SIZE);
    assert_same_file(&a_dir.join(NAME), &b_dir.join(NAME));
    // The metainfo is stored where `peer get` keeps it, with the magnet's trackers.
    let stored = std::fs::read(b_dir.join(".enjambre").join(format!("{hash}.torrent")))
        .expect("the fetched metainfo is stored");
    let meta = Metainfo::from_bytes(&stored).unwrap();
    assert_eq!(meta.info_hash.to_hex(), hash);
    assert_eq!(meta.info.name, NAME);
    assert_eq!(meta.announce_list.len(), 2, "{:?}", meta.announce_list);
}

#[test]
fn a_magnet_with_only_a_peer_hint_and_a_base32_hash_needs_no_tracker() {
    let scratch = Scratch::new("magnet-hint");
    let a_dir = scratch.dir("a");
    write_pattern_file(&a_dir.join(NAME), SIZE, 92);
    let a = serve("A", &scratch, &PeerArgs::new(None, &a_dir), &[NAME]);
    let hash = InfoHash::from_hex(&a.seeding[NAME]).unwrap();
    let mut magnet = Magnet::new(hash);
    magnet.peers = vec![a.addr];
    let uri = magnet.to_uri().replace(&hash.to_hex(), &base32(&hash.0));
    assert_eq!(Magnet::parse(&uri).unwrap(), magnet, "{uri}");
    let b_dir = scratch.dir("b");
    let mut b = get("B", &scratch, &PeerArgs::new(None, &b_dir), &[&uri], &[]);
    let reports = b.reports(1, Duration::from_secs(60));
    assert_eq!(reports[0].info_hash, hash);
    assert!(reports[0].sources.contains_key(&a.addr), "{:?}", reports[0]);
    assert_same_file(&a_dir.join(NAME), &b_dir.join(NAME));
}

/// RFC 4648 base32 of 20 bytes (32 letters, no padding), as magnet links may carry the hash.
fn base32(bytes: &[u8; 20]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    for b in bytes {
        acc = (acc << 8) | u64::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

#[test]
fn peer_create_prints_the_magnet_of_the_torrent_it_wrote() {
    let scratch = Scratch::new("magnet-create");
    let file = scratch.path().join(NAME);
    write_pattern_file(&file, SIZE, 93);
    let out_torrent = scratch.path().join("m.torrent");
    let announce = "http://127.0.0.1:6969/announce";
    let out = std::process::Command::new(enjambre_tests::bins::bin_path("peer"))
        .arg("create")
        .arg(&file)
        .arg("-o")
        .arg(&out_torrent)
        .args(["--announce", announce])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let uri = stdout
        .lines()
        .find_map(|l| l.strip_prefix("magnet: "))
        .unwrap_or_else(|| panic!("no `magnet:` line: {stdout}"));
    let magnet = Magnet::parse(uri).unwrap();
    let meta = Metainfo::from_bytes(&std::fs::read(&out_torrent).unwrap()).unwrap();
    assert_eq!(magnet.info_hash, meta.info_hash);
    assert_eq!(magnet.name.as_deref(), Some(NAME));
    assert_eq!(magnet.trackers, vec![announce.to_string()]);
    assert!(uri.starts_with(&format!("magnet:?xt=urn:btih:{}", meta.info_hash.to_hex())));
}
