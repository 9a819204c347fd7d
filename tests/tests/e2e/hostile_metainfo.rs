//! Metainfo whose file names try to escape the download folder (`..`, absolute paths, separators inside a
//! name): the tracker's catalog refuses to publish it, and `peer get --torrent` refuses it with a clear error
//! (exit 1) and writes nothing outside its folder.

use enjambre_core::bencode::{encode, Value};
use enjambre_tests::bins::{PeerArgs, Tracker};
use enjambre_tests::files::Scratch;
use enjambre_tests::http;
use enjambre_tests::proc::{Line, Proc};
use std::path::Path;
use std::time::Duration;

const PIECE: i64 = 16 * 1024;

/// A metainfo of one 1000-byte payload: single-file named `name`, or multi-file `name` holding `path`.
fn torrent(name: &[u8], path: Option<&[&[u8]]>) -> Vec<u8> {
    let mut info = vec![
        ("name", Value::bytes(name)),
        ("piece length", Value::Int(PIECE)),
        ("pieces", Value::bytes(vec![7u8; 20])),
    ];
    match path {
        None => info.push(("length", Value::Int(1000))),
        Some(components) => info.push((
            "files",
            Value::List(vec![Value::dict([
                ("length", Value::Int(1000)),
                (
                    "path",
                    Value::List(components.iter().map(|c| Value::bytes(*c)).collect()),
                ),
            ])]),
        )),
    }
    encode(&Value::dict([
        ("announce", Value::bytes("http://127.0.0.1:1/announce")),
        ("info", Value::dict(info)),
    ]))
}

/// Every path under `root` (files and folders), sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn escaping_file_names_are_refused_by_tracker_and_peer() {
    let scratch = Scratch::new("hostile-metainfo");
    let tracker = Tracker::start(&scratch);
    let outside = scratch.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let abs = format!("{}/abs-escape", outside.display());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot name", torrent(b"..", None)),
        ("parent path in the name", torrent(b"../escape", None)),
        ("absolute name", torrent(abs.as_bytes(), None)),
        (
            "dot-dot component",
            torrent(b"folder", Some(&[b"..", b"..", b"outside", b"escape"])),
        ),
        (
            "absolute component",
            torrent(b"folder", Some(&[abs.as_bytes()])),
        ),
        (
            "separator inside a component",
            torrent(b"folder", Some(&[b"../../outside/escape"])),
        ),
        ("empty component", torrent(b"folder", Some(&[b"", b"x"]))),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        // The catalog refuses to publish it.
        let mut req = format!(
            "POST /files HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-bittorrent\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        )
        .into_bytes();
        req.extend_from_slice(bytes);
        let resp = http::exchange(tracker.addr, &req, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{what}: publish: {e}"));
        assert_eq!(
            resp.status,
            400,
            "{what}: published anyway: {}",
            resp.text()
        );

        // The peer refuses to download it: exit 1, a clear one-line error, nothing written.
        let dir = scratch.dir(&format!("p{i}/dl"));
        let file = scratch.path().join(format!("p{i}/evil.torrent"));
        std::fs::write(&file, bytes).expect("write torrent");
        let file = file.to_str().expect("utf-8 path").to_string();
        let args = PeerArgs::new(Some(&tracker), &dir);
        let mut p = Proc::spawn(
            &format!("peer-{i}"),
            args.command(&["get", "--torrent", &file, "--json"]),
            scratch.path(),
        );
        let status = p.wait_exit(Duration::from_secs(20));
        let stderr = p.stderr_tail();
        assert_eq!(status.code(), Some(1), "{what}: {status}\n{stderr}");
        assert!(
            !stderr.contains("panicked"),
            "{what}: the peer panicked\n{stderr}"
        );
        assert!(
            stderr.contains("error"),
            "{what}: no error message\n{stderr}"
        );
        assert_eq!(
            p.next_line(Duration::from_secs(1)),
            Line::End,
            "{what}: printed a report"
        );
        let written: Vec<String> = tree(&dir)
            .into_iter()
            .filter(|p| !p.starts_with(".enjambre"))
            .collect();
        assert!(written.is_empty(), "{what}: wrote {written:?}");
    }
    let leaked = tree(&outside);
    assert!(
        leaked.is_empty(),
        "files escaped the download folders: {leaked:?}"
    );
    let stray: Vec<String> = tree(scratch.path())
        .into_iter()
        .filter(|p| p.contains("escape"))
        .collect();
    assert!(
        stray.is_empty(),
        "files escaped the download folders: {stray:?}"
    );
    // Nothing unsafe made it into the catalog.
    let files = tracker.get_json("/files");
    assert_eq!(files.as_array().map(Vec::len), Some(0), "{files}");
}
