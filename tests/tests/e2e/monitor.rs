//! Seeing the swarm: the tracker's web monitor in a real browser (Debian's headless `chromium`), and the
//! `/metrics` pages of the tracker and a peer read by a strict Prometheus text parser.
//!
//! The browser test needs `chromium` (`/usr/bin/chromium`, or `ENJAMBRE_CHROMIUM`). Without it the test
//! prints `SKIP` and passes, except under CI (`CI` set, as `.ci/run` does, which installs it).

use enjambre_core::metainfo::InfoHash;
use enjambre_core::tracker::{announce_query, AnnounceParams, Event};
use enjambre_tests::bins::{self, parse_listening, PeerArgs, Tracker};
use enjambre_tests::files::{write_pattern_file, Scratch};
use enjambre_tests::http;
use enjambre_tests::proc::Proc;
use enjambre_tests::prometheus::{self, Page};
use enjambre_tests::wait_for;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const STARTUP: Duration = Duration::from_secs(20);

/// Where the tests leave what a person may want to look at: `target/test-output/monitor/`.
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/monitor");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The chromium binary, or `None` (after printing `SKIP`) when it is not installed outside CI.
fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("ENJAMBRE_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from));
    for c in candidates {
        if c.is_file() {
            return Some(c);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium is not installed (CI installs it: see .ci/run)"
    );
    eprintln!("SKIP: chromium is not installed (apt-get install chromium); the monitor is not checked in a browser");
    None
}

/// Run headless chromium on `url` with a fresh profile, letting the page run `budget_ms` of virtual time,
/// with `what` (`--dump-dom` or `--screenshot=PATH`); returns stdout.
fn run_chromium(
    chromium: &Path,
    scratch: &Scratch,
    url: &str,
    budget_ms: u32,
    what: &str,
) -> String {
    static PROFILES: AtomicUsize = AtomicUsize::new(0);
    let profile = scratch.dir(&format!(
        "chromium-profile-{}",
        PROFILES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,820",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(what)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let pid = child.id();
    // A guard kills chromium if it hangs past the deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(Duration::from_secs(90)).is_err() {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("chromium did not finish within 90 s");
    }
    let out = waiter
        .join()
        .expect("chromium waiter")
        .expect("chromium output");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of attribute `name` in the tag that starts `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let end = tag.find('>')?;
    let tag = &tag[..end];
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// The rows of the node table in the dumped DOM: node -> (role, [(file, percent)]).
fn rows(dom: &str) -> BTreeMap<String, (String, Vec<(String, String)>)> {
    let mut out = BTreeMap::new();
    let parts: Vec<&str> = dom.split("<tr data-node=").skip(1).collect();
    for part in parts {
        let tag = format!(" data-node={part}");
        let node = attr(&tag, "data-node").expect("node").to_string();
        let role = attr(&tag, "data-role").expect("role").to_string();
        let row = &part[..part.find("</tr>").expect("row end")];
        let downloads = row
            .split("<div class=\"dl\"")
            .skip(1)
            .map(|d| {
                let tag = format!("<div{d}");
                (
                    attr(&tag, "data-file").expect("file").to_string(),
                    attr(&tag, "data-percent").expect("percent").to_string(),
                )
            })
            .collect();
        out.insert(node, (role, downloads));
    }
    out
}

/// Start `peer serve --status 127.0.0.1:0 --metrics 127.0.0.1:0`; returns the process, its listen address,
/// the status and the metrics addresses, after it seeds `file`.
fn serve_with_endpoints(
    scratch: &Scratch,
    args: &PeerArgs,
    file: &str,
) -> (Proc, SocketAddr, SocketAddr, SocketAddr) {
    let cmd = args.command(&[
        "serve",
        "--status",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let mut proc = Proc::spawn("seeder", cmd, scratch.path());
    let endpoint = |prefix: &'static str| {
        move |l: &str| {
            let rest = l.strip_prefix(prefix)?.strip_prefix("http://")?;
            rest.split('/').next()?.parse::<SocketAddr>().ok()
        }
    };
    let status = proc.wait_line("`status on` line", STARTUP, endpoint("status on "));
    let metrics = proc.wait_line("`metrics on` line", STARTUP, endpoint("metrics on "));
    let addr = proc.wait_line("`listening on` line", STARTUP, parse_listening);
    proc.wait_line("`seeding` line", STARTUP, |l| {
        l.starts_with(&format!("seeding {file} ")).then_some(())
    });
    (proc, addr, status, metrics)
}

fn swarm(tracker: &Tracker) -> Value {
    tracker.get_json("/swarm")
}

/// Percent of `file` at `node` in a `/swarm` view, if it downloads it.
fn percent_in(view: &Value, node: &str, file: &str) -> Option<f64> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"] == node)?["downloading"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == file)?["percent"]
        .as_f64()
}

#[test]
fn the_web_monitor_shows_the_swarm_in_a_browser() {
    let Some(chromium) = chromium() else { return };
    let scratch = Scratch::new("monitor");
    let tracker = Tracker::start(&scratch);
    let a = scratch.dir("a");
    write_pattern_file(&a.join("film.bin"), 24_000_000, 61);
    // A slow seeder, so that the leechers are still downloading while the browser looks.
    let seeder_args = PeerArgs::new(Some(&tracker), &a).upload_rate("400KB");
    let (_seeder, seeder_addr, status_addr, _) =
        serve_with_endpoints(&scratch, &seeder_args, "film.bin");
    let mut leechers = Vec::new();
    for name in ["b", "c"] {
        let args = PeerArgs::new(Some(&tracker), &scratch.dir(name)).upload_rate("400KB");
        leechers.push(bins::get(name, &scratch, &args, &["film.bin"], &["--seed"]));
    }
    // Three nodes, both leechers with some verified progress reported.
    let view = wait_for(
        "three nodes, two leechers under way",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let view = swarm(&tracker);
            let nodes = view["nodes"].as_array()?;
            let under_way = nodes
                .iter()
                .filter(|n| {
                    n["downloading"][0]["pieces_have"]
                        .as_u64()
                        .is_some_and(|p| p >= 1)
                })
                .count();
            (nodes.len() == 3 && under_way == 2).then_some(view)
        },
    );
    let seeder = seeder_addr.to_string();
    let seeder_node = view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["role"] == "seeder")
        .expect("a seeder")["node"]
        .as_str()
        .expect("address")
        .to_string();
    assert_eq!(
        seeder_node, seeder,
        "the seeder is keyed by its listen address"
    );
    assert_eq!(
        view["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["role"] == "seeder")
            .expect("seeder")["status_port"],
        status_addr.port(),
        "the status port was announced"
    );

    let url = format!("http://{}/#node={seeder}", tracker.addr);
    let before = swarm(&tracker);
    let dom = run_chromium(&chromium, &scratch, &url, 6000, "--dump-dom");
    let after = swarm(&tracker);
    std::fs::write(output_dir().join("monitor-dom.html"), &dom).expect("save the DOM");

    assert!(
        dom.contains("<body data-state=\"ok\""),
        "the page read /swarm"
    );
    let table = rows(&dom);
    let nodes: Vec<String> = before["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].as_str().expect("node").to_string())
        .collect();
    assert_eq!(
        table.keys().cloned().collect::<Vec<_>>(),
        nodes,
        "one row per node, in the tracker's order"
    );
    for (node, (role, downloads)) in &table {
        let n = before["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node"] == node.as_str())
            .expect("node in /swarm");
        assert_eq!(n["role"], role.as_str(), "{node}: role");
        if role == "seeder" {
            assert!(downloads.is_empty(), "{node}: a seeder downloads nothing");
            continue;
        }
        assert_eq!(downloads.len(), 1, "{node}: one download bar");
        let (file, shown) = &downloads[0];
        assert_eq!(file, "film.bin");
        let shown: f64 = shown.parse().expect("percent");
        let lo = percent_in(&before, node, file).expect("percent before");
        let hi = percent_in(&after, node, file).unwrap_or(100.0);
        assert!(
            lo - 0.051 <= shown && shown <= hi + 0.051,
            "{node}: the page shows {shown}% while /swarm said {lo:.2}% before and {hi:.2}% after"
        );
        assert!(shown > 0.0 && shown < 100.0, "{node}: under way");
    }
    let hash = before["files"][0]["info_hash"].as_str().expect("hash");
    assert!(
        dom.contains(&format!("data-hash=\"{hash}\"")),
        "the availability strip of film.bin is drawn"
    );
    assert!(
        dom.contains("data-key=\"nodes\" data-value=\"3\""),
        "totals"
    );
    assert!(
        dom.contains("data-key=\"seeders\" data-value=\"1\"")
            && dom.contains("data-key=\"leechers\" data-value=\"2\""),
        "totals"
    );
    // The node named in the URL was opened: its own status endpoint was read across origins.
    assert!(
        dom.contains("data-peer-status=\"loaded\""),
        "the seeder's status panel loaded from http://{status_addr}/status"
    );

    let shot = output_dir().join("monitor.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &chromium,
        &scratch,
        &url,
        6000,
        &format!("--screenshot={}", shot.display()),
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    eprintln!("monitor screenshot: {}", shot.display());
}

/// A stand-in tracker on loopback: serves `page` at `/`, and at `/swarm` what `swarm(n)` gives for the n-th
/// request (0-based), or `503` for `None`. Returns its address and the count of `/swarm` requests.
fn fake_tracker(
    page: Vec<u8>,
    swarm: impl Fn(usize) -> Option<Vec<u8>> + Send + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let requests = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /swarm") {
                match swarm(requests.fetch_add(1, Ordering::SeqCst)) {
                    Some(body) => ("200 OK", body),
                    None => ("503 Service Unavailable", b"down".to_vec()),
                }
            } else {
                ("200 OK", page.clone())
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    (addr, count)
}

/// The real monitor page, as the tracker serves it.
fn monitor_page(scratch: &Scratch) -> (Tracker, Vec<u8>) {
    let tracker = Tracker::start(scratch);
    let page = http::get(tracker.addr, "/").expect("monitor page").body;
    (tracker, page)
}

/// A tracker that answers `/swarm` once and then fails: the page must put up its banner.
#[test]
fn the_web_monitor_shows_a_banner_when_the_tracker_stops_answering() {
    let Some(chromium) = chromium() else { return };
    let scratch = Scratch::new("monitor-banner");
    let (tracker, page) = monitor_page(&scratch);
    let view = http::get(tracker.addr, "/swarm").expect("swarm").body;
    let (addr, requests) = fake_tracker(page, move |n| (n == 0).then(|| view.clone()));
    let dom = run_chromium(
        &chromium,
        &scratch,
        &format!("http://{addr}/"),
        4000,
        "--dump-dom",
    );
    assert!(
        requests.load(Ordering::SeqCst) >= 2,
        "the page kept polling"
    );
    assert!(
        dom.contains("<body data-state=\"down\""),
        "the page noticed the tracker is gone"
    );
    assert!(
        dom.contains("The tracker is not answering (HTTP 503"),
        "the banner says so"
    );
}

/// Hundreds of nodes, refreshed several times: one row per node and one bar per download (rows are updated
/// in place, never appended), all from one consistent view.
#[test]
fn the_web_monitor_keeps_hundreds_of_nodes_in_bounds() {
    let Some(chromium) = chromium() else { return };
    let scratch = Scratch::new("monitor-many");
    let (_tracker, page) = monitor_page(&scratch);
    const NODES: usize = 400;
    let view = |n: usize| {
        let nodes: Vec<Value> = (0..NODES)
            .map(|i| {
                let node = format!("10.0.{}.{}:6881", i / 200, i % 200);
                if i % 2 == 0 {
                    serde_json::json!({"node": node, "role": "seeder", "sharing": ["big.iso"], "downloading": []})
                } else {
                    let percent = ((i + n) % 100) as f64;
                    serde_json::json!({"node": node, "role": "leecher", "sharing": [], "downloading": [
                        {"name": "big.iso", "info_hash": "00", "left": 1, "size": 100, "percent": percent,
                         "pieces_have": null, "down_rate": 1000 * i}]})
                }
            })
            .collect();
        let availability: Vec<u32> = (0..4000).map(|p| (p % 7) as u32).collect();
        let view = serde_json::json!({
            "nodes": nodes,
            "files": [{"name": "big.iso", "info_hash": "00", "pieces": 4000, "seeders": NODES / 2,
                       "leechers": NODES / 2, "unreported": 0, "availability": availability, "bytes_moved": 1}],
            "totals": {"nodes": NODES, "seeders": NODES / 2, "leechers": NODES / 2, "torrents": 1,
                       "published": 1, "bytes_moved": 1, "down_rate": 5},
        });
        Some(serde_json::to_vec(&view).expect("json"))
    };
    let (addr, requests) = fake_tracker(page, view);
    let dom = run_chromium(
        &chromium,
        &scratch,
        &format!("http://{addr}/"),
        5000,
        "--dump-dom",
    );
    assert!(
        requests.load(Ordering::SeqCst) >= 3,
        "refreshed several times"
    );
    let table = rows(&dom);
    assert_eq!(table.len(), NODES, "one row per node");
    assert_eq!(dom.matches("<tr data-node=").count(), NODES, "no row twice");
    assert_eq!(
        dom.matches("<div class=\"dl\"").count(),
        NODES / 2,
        "one bar per download"
    );
    assert_eq!(dom.matches("class=\"file\" data-hash=").count(), 1);
    // Every leecher shows the same refresh: percent = (i + n) % 100 for one n.
    let shown: Vec<(usize, u32)> = table
        .iter()
        .filter(|(_, (role, _))| role == "leecher")
        .map(|(node, (_, dl))| {
            let ip = node.trim_end_matches(":6881");
            let mut parts = ip.rsplit('.');
            let last: usize = parts.next().expect("octet").parse().expect("octet");
            let third: usize = parts.next().expect("octet").parse().expect("octet");
            let pct: f64 = dl[0].1.parse().expect("percent");
            (third * 200 + last, pct as u32)
        })
        .collect();
    let n = (shown[0].1 as usize + 100 - shown[0].0 % 100) % 100;
    for (i, pct) in shown {
        assert_eq!(
            pct as usize,
            (i + n) % 100,
            "node {i} shows another refresh"
        );
    }
}

fn announce(tracker: SocketAddr, id: u8, left: u64) {
    let q = announce_query(&AnnounceParams {
        info_hash: InfoHash([0x5a; 20]),
        peer_id: [id; 20],
        port: 7000 + u16::from(id),
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: 10,
        key: u32::from(id),
        ext: Default::default(),
    });
    let resp = http::get(tracker, &format!("/announce?{q}")).expect("announce");
    assert_eq!(resp.status, 200);
}

fn metrics(addr: SocketAddr) -> Page {
    let resp = http::get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(resp.status, 200);
    assert!(
        resp.headers
            .iter()
            .any(|h| h
                .eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
        "{:?}",
        resp.headers
    );
    prometheus::parse(&resp.text())
        .unwrap_or_else(|e| panic!("{addr}/metrics: {e}\n{}", resp.text()))
}

#[test]
fn metrics_are_prometheus_text_and_count_what_happens() {
    let scratch = Scratch::new("metrics");
    let tracker = Tracker::start(&scratch);
    let t = tracker.addr;
    let m0 = metrics(t);
    let ok0 = m0.value("enjambre_tracker_announces_total", &[("result", "ok")]);
    assert_eq!(
        m0.types["enjambre_tracker_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(m0.value("enjambre_tracker_peers", &[]), 0.0);

    announce(t, 1, 0);
    announce(t, 2, 500);
    let bad = http::get(t, "/announce?info_hash=short").expect("bad announce");
    assert_eq!(bad.status, 200);
    http::get(t, "/scrape").expect("scrape");
    let m1 = metrics(t);
    assert_eq!(
        m1.value("enjambre_tracker_announces_total", &[("result", "ok")]),
        ok0 + 2.0
    );
    assert_eq!(
        m1.value("enjambre_tracker_announces_total", &[("result", "invalid")]),
        1.0
    );
    assert_eq!(
        m1.value("enjambre_tracker_scrapes_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(m1.value("enjambre_tracker_peers", &[]), 2.0);
    assert_eq!(m1.value("enjambre_tracker_seeders", &[]), 1.0);
    assert_eq!(m1.value("enjambre_tracker_leechers", &[]), 1.0);
    assert_eq!(m1.value("enjambre_tracker_torrents", &[]), 1.0);
    assert_eq!(
        m1.value(
            "enjambre_tracker_request_duration_seconds_count",
            &[("route", "announce")]
        ),
        3.0,
        "every announce, bad ones included, was timed"
    );
    // The previous /metrics request is timed too.
    assert!(
        m1.value(
            "enjambre_tracker_request_duration_seconds_count",
            &[("route", "metrics")]
        ) >= 1.0
    );

    // A peer's metrics: a seeder publishes a file; its catalog size and its own counters show.
    let a = scratch.dir("a");
    write_pattern_file(&a.join("notes.bin"), 700_000, 62);
    let args = PeerArgs::new(Some(&tracker), &a);
    let (_seeder, _, status, peer_metrics) = serve_with_endpoints(&scratch, &args, "notes.bin");
    let p = metrics(peer_metrics);
    assert_eq!(p.value("enjambre_peer_torrents", &[]), 1.0);
    let labels = [("torrent", "notes.bin")];
    assert_eq!(p.value("enjambre_peer_pieces", &labels), 2.0);
    assert_eq!(p.value("enjambre_peer_pieces_in_torrent", &labels), 2.0);
    assert_eq!(
        p.value("enjambre_peer_downloaded_bytes_total", &labels),
        0.0
    );
    assert_eq!(p.value("enjambre_peer_banned_peers", &labels), 0.0);
    let _ = p.value("enjambre_peer_checkpoint_writes_total", &labels);
    // The status endpoint answers JSON with CORS, and knows the same torrent.
    let resp = http::get(status, "/status").expect("status");
    assert!(resp
        .headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("access-control-allow-origin: *")));
    let st: Value = serde_json::from_slice(&resp.body).expect("status JSON");
    assert_eq!(st["torrents"][0]["name"], "notes.bin");
    assert_eq!(st["torrents"][0]["pieces_have"], 2);
    let m2 = wait_for(
        "the catalog to count the published file",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let m = metrics(t);
            (m.value("enjambre_tracker_catalog_files", &[]) == 1.0).then_some(m)
        },
    );
    assert!(
        m2.value("enjambre_tracker_announces_total", &[("result", "ok")])
            >= m1.value("enjambre_tracker_announces_total", &[("result", "ok")]) + 1.0,
        "the seeder's announce was counted"
    );
}
