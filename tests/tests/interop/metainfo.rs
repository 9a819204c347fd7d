//! Metainfo files cross the border both ways: `peer create`'s load in libtorrent (same info hash, files and
//! pieces, and libtorrent verifies the data against them); mktorrent's (and libtorrent's own creator's, for
//! 16 KiB pieces, which mktorrent 1.1 refuses), single- and multi-file with pieces of 16 KiB to 4 MiB, load in
//! enjambre and download from a libtorrent seeder.

use crate::foreign::{
    have, lt_create, lt_info, mktorrent, peer_create, Client, LtFile, LtOptions, LtPeer, SwarmWatch,
};
use enjambre_tests::bins::{get, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::ports::PortWatch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A multi-file tree under `root/NAME`: two data files split around `total`, a nested one-byte file and an
/// empty file. Returns its files as libtorrent lists them (`NAME/...`).
fn write_tree(root: &Path, name: &str, total: u64, seed: u64) -> Vec<LtFile> {
    let a = total / 2 + 1;
    let files = [
        ("a.bin", a),
        ("sub/b.bin", total - a - 1),
        ("sub/deeper/z", 1),
        ("sub/empty", 0),
    ];
    let mut out = Vec::new();
    for (i, (rel, size)) in files.iter().enumerate() {
        let path = root.join(name).join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        write_pattern_file(&path, *size, seed + i as u64);
        out.push(LtFile {
            path: format!("{name}/{rel}"),
            size: *size,
        });
    }
    out.sort();
    out
}

fn sorted(mut files: Vec<LtFile>) -> Vec<LtFile> {
    files.sort();
    files
}

#[test]
fn peer_create_metainfo_loads_in_libtorrent() {
    const TEST: &str = "peer_create_metainfo_loads_in_libtorrent";
    if !have(TEST, &[Client::Libtorrent]) {
        return;
    }
    const ANNOUNCE: &str = "http://127.0.0.1:6969/announce";
    let scratch = Scratch::new("interop-create");
    let data = scratch.dir("data");
    let single = data.join("single.bin");
    write_pattern_file(&single, 1024 * 1024 + 3, 406);
    let tree = write_tree(&data, "album", 1_500_000, 407);
    let cases: [(&Path, &str, u64, Vec<LtFile>); 4] = [
        (
            &single,
            "16KiB",
            16 * 1024,
            vec![file("single.bin", 1024 * 1024 + 3)],
        ),
        (
            &single,
            "512KiB",
            512 * 1024,
            vec![file("single.bin", 1024 * 1024 + 3)],
        ),
        (&data.join("album"), "64KiB", 64 * 1024, tree.clone()),
        (&data.join("album"), "4MiB", 4 * 1024 * 1024, tree),
    ];
    let mut torrents: Vec<PathBuf> = Vec::new();
    let mut hashes = Vec::new();
    for (i, (target, piece, _, _)) in cases.iter().enumerate() {
        let out = scratch.path().join(format!("created-{i}.torrent"));
        hashes.push(peer_create(target, &out, piece, ANNOUNCE));
        torrents.push(out);
    }
    let paths: Vec<&Path> = torrents.iter().map(PathBuf::as_path).collect();
    let infos = lt_info(&paths);
    for (((target, piece, piece_len, files), info), hash) in cases.iter().zip(&infos).zip(&hashes) {
        let what = format!("{} with {piece} pieces", target.display());
        assert_eq!(&info.info_hash, hash, "{what}: info hash");
        assert_eq!(
            info.name,
            target.file_name().unwrap().to_string_lossy(),
            "{what}"
        );
        assert_eq!(info.piece_length, *piece_len, "{what}");
        let total: u64 = files.iter().map(|f| f.size).sum();
        assert_eq!(info.total_size, total, "{what}");
        assert_eq!(info.num_pieces as u64, total.div_ceil(*piece_len), "{what}");
        assert_eq!(sorted(info.files.clone()), *files, "{what}: file list");
        assert_eq!(info.trackers, [ANNOUNCE], "{what}: announce");
    }

    // libtorrent hashes the data against enjambre's piece hashes, with its own file layout.
    let mut lt = LtPeer::start(
        "lt-check",
        &scratch,
        &data,
        &LtOptions {
            seeds: torrents.clone(),
            check_only: true,
            timeout_secs: 30,
            ..LtOptions::default()
        },
    );
    lt.wait_ready(torrents.len(), Duration::from_secs(30));
    let fin = lt.wait_final(Duration::from_secs(10));
    for hash in &hashes {
        let t = fin.torrent(hash);
        assert!(t.is_seeding && t.progress == 1.0, "{t:#?}");
    }
}

fn file(path: &str, size: u64) -> LtFile {
    LtFile {
        path: path.into(),
        size,
    }
}

#[test]
fn foreign_metainfo_loads_and_downloads_in_enjambre() {
    const TEST: &str = "foreign_metainfo_loads_and_downloads_in_enjambre";
    if !have(TEST, &[Client::Libtorrent, Client::Mktorrent]) {
        return;
    }
    let scratch = Scratch::new("interop-mktorrent");
    let tracker = Tracker::start(&scratch);
    let swarm = SwarmWatch::start(&tracker);
    let watch = PortWatch::start();
    let seed_dir = scratch.dir("lt");
    let tdir = scratch.dir("torrents");

    // For each piece size 2^14..2^22: a single file and a tree of at least 2.5 pieces (600 KiB at least),
    // made by mktorrent (2^15 and up) or libtorrent's creator (2^14).
    let mut torrents: Vec<PathBuf> = Vec::new();
    let mut expect: BTreeMap<String, (String, Vec<LtFile>)> = BTreeMap::new(); // name -> (creator, files)
    for log2 in 14..=22u32 {
        let piece = 1u64 << log2;
        let total = (piece * 5 / 2).max(600 * 1024) + u64::from(log2);
        let single = format!("single-2e{log2}.bin");
        write_pattern_file(&seed_dir.join(&single), total, 500 + u64::from(log2));
        let multi = format!("tree-2e{log2}");
        let tree = write_tree(&seed_dir, &multi, total, 600 + 10 * u64::from(log2));
        for (name, files) in [(single.clone(), vec![file(&single, total)]), (multi, tree)] {
            let out = tdir.join(format!("{name}.torrent"));
            let creator = if log2 < 15 {
                lt_create(&seed_dir.join(&name), &out, 1 << log2, &tracker.url());
                "libtorrent"
            } else {
                mktorrent(&seed_dir.join(&name), &out, log2, &tracker.url());
                "mktorrent"
            };
            torrents.push(out);
            expect.insert(name, (creator.to_string(), files));
        }
    }
    let paths: Vec<&Path> = torrents.iter().map(PathBuf::as_path).collect();
    let infos = lt_info(&paths);

    let mut lt = LtPeer::start(
        "lt-seeder",
        &scratch,
        &seed_dir,
        &LtOptions {
            seeds: torrents.clone(),
            timeout_secs: 90,
            no_utp: true,
            ..LtOptions::default()
        },
    );
    watch.watch("libtorrent", lt.proc.pid());
    watch.claim("libtorrent", lt.addr.port());
    lt.wait_ready(torrents.len(), Duration::from_secs(30));
    for info in &infos {
        swarm.wait_sharing(lt.addr.port(), &info.info_hash, Duration::from_secs(10));
    }

    let e_dir = scratch.dir("enjambre");
    let mut args: Vec<&str> = Vec::new();
    for t in &torrents {
        args.extend(["--torrent", t.to_str().expect("utf-8")]);
    }
    let mut e = get(
        "E",
        &scratch,
        &PeerArgs::new(Some(&tracker), &e_dir),
        &[],
        &args,
    );
    let reports = e.reports(torrents.len(), Duration::from_secs(60));
    let slowest = reports.iter().map(|r| r.seconds).fold(0.0, f64::max);
    for info in &infos {
        let (creator, files) = &expect[&info.name];
        let what = format!(
            "{} ({creator}, {} KiB pieces)",
            info.name,
            info.piece_length / 1024
        );
        assert_eq!(
            sorted(info.files.clone()),
            *files,
            "{what}: libtorrent's file list"
        );
        let r = reports
            .iter()
            .find(|r| r.info_hash.to_hex() == info.info_hash)
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no enjambre report with libtorrent's info hash {}: {reports:#?}",
                    info.info_hash
                )
            });
        assert_eq!(r.name, info.name, "{what}");
        assert_eq!(r.size, info.total_size, "{what}");
        assert_eq!(r.pieces_total, info.num_pieces, "{what}: piece count");
        assert!(r.banned.is_empty() && r.bytes_wasted == 0, "{what}: {r:?}");
        for addr in r.sources.keys() {
            assert_eq!(
                watch.owner(addr).as_deref(),
                Some("libtorrent"),
                "{what}: bytes from {addr}: {r:?}"
            );
        }
        for f in files {
            assert_same_file(&seed_dir.join(&f.path), &e_dir.join(&f.path));
        }
    }
    let total: u64 = reports.iter().map(|r| r.size).sum();
    println!(
        "enjambre <- libtorrent: {} torrents, {total} B, in {slowest:.2} s",
        reports.len()
    );
    let fin = lt.stop();
    let uploaded: u64 = fin.torrents.iter().map(|t| t.uploaded_to("enjambre")).sum();
    assert_eq!(
        uploaded, total,
        "libtorrent sent each byte once, to enjambre"
    );
}
