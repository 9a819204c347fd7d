//! Smoke tests of the `peer` command line: exit codes, one-line errors, `create` and `ls`.

use enjambre_net::storage::testing::Scratch;
use std::process::Command;

fn peer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peer"))
}

#[test]
fn usage_errors_exit_2() {
    let out = peer().arg("get").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = peer()
        .args(["--max-upload-rate", "fast", "ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn runtime_errors_are_one_line_and_exit_1() {
    let scratch = Scratch::new("peer-cli", "errors");
    let dir = &scratch.0;
    let d = dir.to_str().unwrap();
    // Nothing listens on port 1.
    let out = peer()
        .args([
            "--tracker",
            "http://127.0.0.1:1",
            "--dir",
            d,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["get", "movie.mp4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the tracker"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
    // A name without a tracker, and a broken .torrent file.
    let out = peer()
        .args(["--dir", d, "--listen", "127.0.0.1:0", "get", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::write(dir.join("bad.torrent"), b"d4:junk").unwrap();
    let out = peer()
        .args(["--dir", d, "--listen", "127.0.0.1:0", "get", "--torrent"])
        .arg(dir.join("bad.torrent"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a usable .torrent file"), "{err}");
}

#[test]
fn create_then_ls() {
    let scratch = Scratch::new("peer-cli", "create");
    let dir = &scratch.0;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    let torrent = dir.join("out.torrent");
    let out = peer()
        .arg("create")
        .arg(dir.join("data.bin"))
        .arg("-o")
        .arg(&torrent)
        .args([
            "--piece-size",
            "16KiB",
            "--announce",
            "http://t.lan:6969/announce",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta =
        enjambre_core::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(meta.info.name, "data.bin");
    assert_eq!(meta.piece_count(), 7);
    assert_eq!(meta.announce.as_deref(), Some("http://t.lan:6969/announce"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&meta.info_hash.to_hex()), "{stdout}");

    let out = peer()
        .arg("--dir")
        .arg(dir)
        .args(["ls", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["data.bin", "out.torrent"]);
    assert_eq!(lines[0]["complete"], true);
    assert_eq!(lines[0]["size"], 100_000);
}
