//! What the tracker's swarm view shows over a peer's life: seeders sharing their files, a leecher's percent
//! moving while it downloads, and nodes leaving as soon as they stop (SIGINT, SIGTERM, or `get` finishing)
//! because they announce `stopped`, long before the tracker would expire them.

use enjambre_tests::bins::{get, serve, PeerArgs, Tracker};
use enjambre_tests::files::{write_pattern_file, Scratch};
use enjambre_tests::wait_for;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The nodes of `GET /swarm`.
fn nodes(tracker: &Tracker) -> Vec<serde_json::Value> {
    tracker.get_json("/swarm")["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("/swarm has no node list"))
}

fn node_names(tracker: &Tracker) -> BTreeSet<String> {
    nodes(tracker)
        .iter()
        .filter_map(|n| n["node"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn swarm_view_follows_peers_from_start_to_stop() {
    const BIG: u64 = 16 * 1024 * 1024;
    let scratch = Scratch::new("lifecycle");
    // A long interval: silent peers would linger for 150 s, so a prompt removal can only be `stopped`.
    let tracker = Tracker::start_with_interval(&scratch, 60);
    let a_dir = scratch.dir("a");
    let b_dir = scratch.dir("b");
    write_pattern_file(&a_dir.join("a.bin"), BIG, 51);
    write_pattern_file(&b_dir.join("b.bin"), 1000, 52);
    let mut a = serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir).upload_rate("4MB"),
        &["a.bin"],
    );
    let mut b = serve(
        "B",
        &scratch,
        &PeerArgs::new(Some(&tracker), &b_dir),
        &["b.bin"],
    );
    let (a_node, b_node) = (a.addr.to_string(), b.addr.to_string());
    wait_for(
        "A and B to show as seeders of their files",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let ns = nodes(&tracker);
            let shows = |node: &str, file: &str| {
                ns.iter().any(|n| {
                    n["node"] == node
                        && n["role"]
                            .as_str()
                            .is_some_and(|r| r.eq_ignore_ascii_case("seeder"))
                        && n["sharing"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|f| f == file))
                })
            };
            (shows(&a_node, "a.bin") && shows(&b_node, "b.bin")).then_some(())
        },
    );

    // C downloads a.bin (4 s at A's cap): the swarm view shows its percent moving.
    let c_dir = scratch.dir("c");
    let mut c = get(
        "C",
        &scratch,
        &PeerArgs::new(Some(&tracker), &c_dir),
        &["a.bin"],
        &[],
    );
    let mut percents = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.proc.is_running() && Instant::now() < deadline {
        for n in nodes(&tracker) {
            for d in n["downloading"].as_array().into_iter().flatten() {
                if d["name"] == "a.bin" {
                    if let Some(p) = d["percent"].as_f64() {
                        if percents.last() != Some(&p) {
                            percents.push(p);
                        }
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = c.reports(1, Duration::from_secs(30)).remove(0);
    println!("C's percents in /swarm: {percents:?} ({:.2} s)", r.seconds);
    assert!(
        percents.iter().any(|&p| p > 0.0 && p < 100.0),
        "the swarm view never showed C part-way: {percents:?}"
    );
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "C's percent went backwards: {percents:?}"
    );
    // `get` is done and gone: it announced `stopped`, so only A and B remain.
    wait_for(
        "C to leave the swarm",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (node_names(&tracker) == BTreeSet::from([a_node.clone(), b_node.clone()])).then_some(()),
    );

    // SIGINT and SIGTERM: exit 0, announce `stopped`.
    a.proc.signal("INT");
    let status = a.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "A exited with {status} on SIGINT");
    wait_for(
        "A to leave the swarm",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (node_names(&tracker) == BTreeSet::from([b_node.clone()])).then_some(()),
    );
    b.proc.signal("TERM");
    let status = b.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "B exited with {status} on SIGTERM");
    wait_for(
        "B to leave the swarm",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || node_names(&tracker).is_empty().then_some(()),
    );
}
