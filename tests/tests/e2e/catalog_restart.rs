//! `tracker --state-dir`: a tracker killed with SIGKILL and started again on the same folder and address
//! still lists and serves every published file by name; the seeder re-announces by itself (it publishes
//! only once, at start), a download under way carries on, and a new peer fetches every file by name.

use enjambre_tests::bins::{get, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::http;
use enjambre_tests::wait_for;
use std::collections::BTreeMap;
use std::time::Duration;

/// `GET /files` as name -> info hash.
fn catalog(tracker: &Tracker) -> BTreeMap<String, String> {
    tracker
        .get_json("/files")
        .as_array()
        .unwrap_or_else(|| panic!("/files is not a list"))
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_string(),
                f["info_hash"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `GET /files/NAME`: the metainfo bytes.
fn metainfo(tracker: &Tracker, name: &str) -> Vec<u8> {
    let resp = http::get(tracker.addr, &format!("/files/{name}"))
        .unwrap_or_else(|e| panic!("GET /files/{name}: {e}"));
    assert_eq!(resp.status, 200, "GET /files/{name}: {}", resp.text());
    resp.body
}

/// Whether `/swarm` lists `node` as sharing `file`.
fn shares(tracker: &Tracker, node: &str, file: &str) -> bool {
    let swarm = tracker.get_json("/swarm");
    swarm["nodes"].as_array().is_some_and(|nodes| {
        nodes.iter().any(|n| {
            n["node"] == node
                && n["sharing"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|f| f == file))
        })
    })
}

#[test]
fn catalog_survives_a_tracker_sigkill() {
    const BIG: &str = "big.bin";
    const SMALL: &str = "small.txt";
    let scratch = Scratch::new("catalog-restart");
    let state = scratch.dir("tracker-state");
    let state_arg = state.to_string_lossy().into_owned();
    let args = ["--interval", "1", "--state-dir", &state_arg];
    let mut tracker = Tracker::start_with_args(&scratch, "127.0.0.1:0", &args);
    let listen = tracker.addr.to_string();

    let seed_dir = scratch.dir("seeder");
    write_pattern_file(&seed_dir.join(BIG), 12 * 1024 * 1024 + 5, 71);
    write_pattern_file(&seed_dir.join(SMALL), 3000, 72);
    let seeder = serve(
        "S",
        &scratch,
        &PeerArgs::new(Some(&tracker), &seed_dir).upload_rate("4MB"),
        &[BIG, SMALL],
    );
    let before = catalog(&tracker);
    assert_eq!(before.len(), 2, "catalog before the kill: {before:?}");
    let torrents_before: Vec<Vec<u8>> =
        [BIG, SMALL].iter().map(|n| metainfo(&tracker, n)).collect();

    // L1 starts downloading the big file (about 3 s at the seeder's cap) ...
    let l1_dir = scratch.dir("l1");
    let mut l1 = get(
        "L1",
        &scratch,
        &PeerArgs::new(Some(&tracker), &l1_dir),
        &[BIG],
        &[],
    );
    wait_for(
        "L1 to be part-way",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let len = std::fs::metadata(l1_dir.join(BIG)).ok()?.len();
            (len > 0).then_some(())
        },
    );
    // ... and the tracker dies without a chance to write anything.
    tracker.proc.kill();
    assert!(
        l1.proc.is_running(),
        "L1 ended before the tracker was killed"
    );

    let tracker = Tracker::start_with_args(&scratch, &listen, &args);
    assert_eq!(tracker.addr.to_string(), listen);
    assert_eq!(catalog(&tracker), before, "catalog after the restart");
    let torrents_after: Vec<Vec<u8>> = [BIG, SMALL].iter().map(|n| metainfo(&tracker, n)).collect();
    assert_eq!(torrents_after, torrents_before, "metainfo bytes changed");

    // The seeder announces again on its own (it published only at start), so new peers find it.
    let seeder_node = seeder.addr.to_string();
    wait_for(
        "the seeder to re-announce",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || shares(&tracker, &seeder_node, BIG).then_some(()),
    );
    let r1 = l1.reports(1, Duration::from_secs(60)).remove(0);
    assert_eq!(r1.name, BIG);
    assert_same_file(&seed_dir.join(BIG), &l1_dir.join(BIG));

    let l2_dir = scratch.dir("l2");
    let mut l2 = get(
        "L2",
        &scratch,
        &PeerArgs::new(Some(&tracker), &l2_dir),
        &[BIG, SMALL],
        &[],
    );
    let reports = l2.reports(2, Duration::from_secs(60));
    let mut names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec![BIG, SMALL]);
    for name in [BIG, SMALL] {
        assert_same_file(&seed_dir.join(name), &l2_dir.join(name));
    }
    println!(
        "after a SIGKILL the restarted tracker served {} catalog entries; L1 finished in {:.2} s",
        before.len(),
        r1.seconds
    );
}
