//! A download whose only tracker is unreachable says so on stderr (and keeps retrying) instead of waiting in
//! silence.

use enjambre_tests::bins::{bin_path, PeerArgs};
use enjambre_tests::files::{write_pattern_file, Scratch};
use enjambre_tests::proc::Proc;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn an_unreachable_tracker_is_reported_while_retrying() {
    let scratch = Scratch::new("tracker-trouble");
    let src = scratch.dir("src");
    write_pattern_file(&src.join("t.bin"), 100_000, 77);
    // Nothing listens on this UDP port: the announce fails with "connection refused" at once.
    let dead_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let torrent = scratch.path().join("t.torrent");
    let status = Command::new(bin_path("peer"))
        .arg("create")
        .arg(src.join("t.bin"))
        .arg("-o")
        .arg(&torrent)
        .args([
            "--announce",
            &format!("udp://127.0.0.1:{dead_port}/announce"),
        ])
        .status()
        .expect("peer create runs");
    assert!(status.success());

    let args = PeerArgs::new(None, &scratch.dir("leech"));
    let cmd = args.command(&["get", "--torrent", torrent.to_str().expect("utf-8")]);
    let mut proc = Proc::spawn("leech", cmd, scratch.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let err = proc.stderr_text();
        if err.contains("t.bin: tracker unreachable, retrying")
            && err.contains(&format!("udp://127.0.0.1:{dead_port}/announce"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no tracker warning on stderr: {err}"
        );
        assert!(proc.is_running(), "peer get exited: {err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    proc.kill();
}
