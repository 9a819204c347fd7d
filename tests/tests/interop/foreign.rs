//! Front ends for the foreign clients (libtorrent through `tests/interop/lt_peer.py`, aria2c, mktorrent)
//! and for what the interop tests read off enjambre's tracker (the swarm view over time, scrape).

use enjambre_core::bencode;
use enjambre_tests::bins::{bin_path, Tracker};
use enjambre_tests::files::Scratch;
use enjambre_tests::http;
use enjambre_tests::proc::{Line, Proc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Debian's `python3-libtorrent` binds to the system interpreter, not to a `python3` earlier on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

/// How long a foreign client may take to start listening.
const STARTUP: Duration = Duration::from_secs(20);

/// The libtorrent driver script.
pub fn lt_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/lt_peer.py")
}

/// A foreign program a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// python3-libtorrent, importable by `/usr/bin/python3`.
    Libtorrent,
    /// aria2c.
    Aria2,
    /// mktorrent.
    Mktorrent,
}

impl Client {
    fn describe(self) -> &'static str {
        match self {
            Client::Libtorrent => "python3-libtorrent (for /usr/bin/python3)",
            Client::Aria2 => "aria2c",
            Client::Mktorrent => "mktorrent",
        }
    }

    fn probe(self) -> bool {
        let mut cmd = match self {
            Client::Libtorrent => {
                let mut c = Command::new(PYTHON);
                c.args(["-c", "import libtorrent"]);
                c
            }
            Client::Aria2 => {
                let mut c = Command::new("aria2c");
                c.arg("--version");
                c
            }
            Client::Mktorrent => {
                let mut c = Command::new("mktorrent");
                c.arg("-h");
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn installed(self) -> bool {
        static CACHE: [OnceLock<bool>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        *CACHE[self as usize].get_or_init(|| self.probe())
    }
}

/// Whether every client `test` needs is installed. When one is missing: prints `SKIP` and returns false,
/// or fails the test under CI (`CI` set and not `false`/`0`), where `.ci/run` installs them all.
pub fn have(test: &str, clients: &[Client]) -> bool {
    let missing: Vec<&str> = clients
        .iter()
        .filter(|c| !c.installed())
        .map(|c| c.describe())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "{test}: {} not installed, and CI is set (`.ci/run` installs python3-libtorrent aria2 mktorrent)",
        missing.join(", ")
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests.
    let line = format!("SKIP: {test}: {} not installed\n", missing.join(", "));
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    false
}

/// A loopback port free right now (for clients that cannot report the port they bound).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// Send SIGTERM to a child (the shell's `kill`, to need no libc).
pub fn sigterm(proc: &Proc) {
    let status = Command::new("/bin/sh")
        .args(["-c", &format!("kill -TERM {}", proc.pid())])
        .status()
        .expect("run sh -c kill");
    assert!(status.success(), "kill -TERM {} failed", proc.pid());
}

/// Run a short command to completion; panic with its output unless it succeeds. Returns stdout.
pub fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---- torrents -------------------------------------------------------------------------------------------

/// `peer create TARGET -o OUT --piece-size SIZE --announce URL`; returns the info hash it printed.
pub fn peer_create(target: &Path, out: &Path, piece_size: &str, announce: &str) -> String {
    let stdout = run(
        "peer create",
        Command::new(bin_path("peer"))
            .arg("create")
            .arg(target)
            .arg("-o")
            .arg(out)
            .args(["--piece-size", piece_size, "--announce", announce]),
    );
    let hash = stdout
        .split("info hash ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `info hash` in peer create's output: {stdout}"));
    hash.to_string()
}

/// `mktorrent -d -l LOG2 -a URL -o OUT TARGET` (mktorrent 1.1 takes 2^15 to 2^28).
pub fn mktorrent(target: &Path, out: &Path, log2_piece: u32, announce: &str) {
    run(
        "mktorrent",
        Command::new("mktorrent")
            .args(["-d", "-l", &log2_piece.to_string(), "-a", announce, "-o"])
            .arg(out)
            .arg(target),
    );
}

/// Save the catalog's metainfo of `name` (`GET /files/NAME`) to `out`.
pub fn save_catalog_torrent(tracker: &Tracker, name: &str, out: &Path) {
    let resp = http::get(tracker.addr, &format!("/files/{name}"))
        .unwrap_or_else(|e| panic!("GET /files/{name}: {e}"));
    assert_eq!(resp.status, 200, "GET /files/{name}: {}", resp.text());
    std::fs::write(out, &resp.body).expect("write the catalog torrent");
}

// ---- libtorrent -----------------------------------------------------------------------------------------

/// One file of a torrent as libtorrent lists it (path below the save folder).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct LtFile {
    /// `name` (single file) or `name/dir/file`.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// A peer a libtorrent torrent was connected to (byte counts exact, from libtorrent's block alerts; its
/// per-torrent payload counters lag by up to a second and are not used).
#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // `peer_id`, `client` and `addrs` are for failure messages
pub struct LtPeerSeen {
    /// `enjambre`, `aria2`, `libtorrent` or `other`, from the peer id.
    pub kind: String,
    /// The peer id (latin-1).
    pub peer_id: String,
    /// Client name (extension handshake `v`, else from the peer id), when a sample of the peer list caught
    /// the connection (every 100 ms); may be empty for a short one.
    pub client: String,
    /// Remote addresses seen for it.
    pub addrs: Vec<String>,
    /// How the connection came about: `outgoing` (libtorrent dialled it), `incoming`, and libtorrent's
    /// own peer sources (`tracker`, ...).
    pub sources: Vec<String>,
    /// Payload bytes received from it (counted from block alerts).
    pub downloaded: u64,
    /// Payload bytes sent to it.
    pub uploaded: u64,
}

/// A torrent as `lt_peer.py` reports it (`info` has only the metainfo fields).
#[derive(Debug, Clone, Deserialize)]
pub struct LtTorrent {
    /// Torrent name.
    pub name: String,
    /// Info hash, hex (libtorrent's own computation).
    pub info_hash: String,
    /// Piece length.
    pub piece_length: u64,
    /// Piece count.
    pub num_pieces: u32,
    /// Total bytes.
    pub total_size: u64,
    /// Files (no pad files).
    pub files: Vec<LtFile>,
    /// Announce URLs.
    #[serde(default)]
    pub trackers: Vec<String>,
    /// `seed` or `leech` (run only).
    #[serde(default)]
    pub role: String,
    /// 0..1.
    #[serde(default)]
    pub progress: f64,
    /// Complete and verified.
    #[serde(default)]
    pub is_seeding: bool,
    /// Peers it was connected to.
    #[serde(default)]
    pub peers: Vec<LtPeerSeen>,
    /// Torrent error, if any.
    #[serde(default)]
    pub error: String,
}

impl LtTorrent {
    /// Bytes received from peers of `kind`.
    pub fn downloaded_from(&self, kind: &str) -> u64 {
        self.peers
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.downloaded)
            .sum()
    }

    /// Bytes sent to all peers.
    pub fn uploaded_to_all(&self) -> u64 {
        self.peers.iter().map(|p| p.uploaded).sum()
    }

    /// Bytes sent to peers of `kind`.
    pub fn uploaded_to(&self, kind: &str) -> u64 {
        self.peers
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.uploaded)
            .sum()
    }

    /// Kinds of the peers that sent it payload.
    pub fn served_by(&self) -> BTreeSet<String> {
        self.peers
            .iter()
            .filter(|p| p.downloaded > 0)
            .map(|p| p.kind.clone())
            .collect()
    }

    /// Whether libtorrent dialled a peer of `kind` or listed it as coming from a tracker. The tests give
    /// libtorrent no peer address, so either way it had the address from enjambre's tracker.
    pub fn found_through_tracker(&self, kind: &str) -> bool {
        self.peers
            .iter()
            .any(|p| p.kind == kind && p.sources.iter().any(|s| s == "outgoing" || s == "tracker"))
    }
}

impl LtTorrent {
    /// Whether a peer of `kind` connected to libtorrent.
    pub fn dialled_in_by(&self, kind: &str) -> bool {
        self.peers
            .iter()
            .any(|p| p.kind == kind && p.sources.iter().any(|s| s == "incoming"))
    }
}

/// The last line of `lt_peer.py run`.
#[derive(Debug, Clone, Deserialize)]
pub struct LtFinal {
    /// Every leech complete, every seed checked complete.
    pub ok: bool,
    /// Why it stopped: `complete`, `checked`, `SIGTERM`, `timeout`, ...
    pub reason: String,
    /// Each torrent.
    pub torrents: Vec<LtTorrent>,
}

impl LtFinal {
    /// The torrent with `info_hash`.
    pub fn torrent(&self, info_hash: &str) -> &LtTorrent {
        self.torrents
            .iter()
            .find(|t| t.info_hash == info_hash)
            .unwrap_or_else(|| panic!("libtorrent has no torrent {info_hash}: {self:#?}"))
    }
}

/// `lt_peer.py info TORRENTS...`: how libtorrent reads each metainfo file.
pub fn lt_info(torrents: &[&Path]) -> Vec<LtTorrent> {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(lt_script()).arg("info").args(torrents);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run lt_peer.py info");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Vec<LtTorrent> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("libtorrent cannot read a torrent ({e}): {l}"))
        })
        .collect();
    assert!(
        out.status.success() && parsed.len() == torrents.len(),
        "lt_peer.py info failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parsed
}

/// `lt_peer.py create`: a v1 torrent made by libtorrent's own creator.
pub fn lt_create(target: &Path, out: &Path, piece_size: u32, announce: &str) -> LtTorrent {
    let stdout = run(
        "lt_peer.py create",
        Command::new(PYTHON)
            .arg(lt_script())
            .arg("create")
            .arg(target)
            .arg("-o")
            .arg(out)
            .args([
                "--piece-size",
                &piece_size.to_string(),
                "--tracker",
                announce,
            ]),
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("lt create ({e}): {stdout}"))
}

/// What an `lt_peer.py run` does.
#[derive(Debug, Clone, Default)]
pub struct LtOptions {
    /// Torrents whose data is in the folder.
    pub seeds: Vec<PathBuf>,
    /// Torrents to download.
    pub leeches: Vec<PathBuf>,
    /// Magnet links to download (the metadata comes from peers, BEP 9).
    pub magnets: Vec<String>,
    /// Exchange peers (BEP 11) instead of running isolated.
    pub pex: bool,
    /// Session upload cap, bytes/s.
    pub upload_rate: Option<u64>,
    /// Keep running after the leeches complete.
    pub linger: bool,
    /// Stop once every torrent is checked.
    pub check_only: bool,
    /// Give up after this long (the script's own bound).
    pub timeout_secs: u64,
    /// TCP only: libtorrent otherwise dials peers over uTP first, which enjambre and aria2c do not speak,
    /// and waits about 3 s for that to fail before trying TCP.
    pub no_utp: bool,
    /// Run libtorrent's DHT node on the listen port, joining through these nodes (none: others join
    /// through it).
    pub dht: Option<Vec<SocketAddr>>,
}

/// A running `lt_peer.py run`: one libtorrent session.
pub struct LtPeer {
    /// The process (python).
    pub proc: Proc,
    /// Where it listens (TCP and uTP).
    pub addr: SocketAddr,
    events: Vec<Value>,
}

impl LtPeer {
    /// Start a session keeping its data in `dir`, wait for its `listening on` line.
    pub fn start(label: &str, scratch: &Scratch, dir: &Path, opts: &LtOptions) -> LtPeer {
        let mut cmd = Command::new(PYTHON);
        cmd.arg("-u")
            .arg(lt_script())
            .arg("run")
            .arg("--dir")
            .arg(dir);
        for t in &opts.seeds {
            cmd.arg("--seed").arg(t);
        }
        for t in &opts.leeches {
            cmd.arg("--leech").arg(t);
        }
        for m in &opts.magnets {
            cmd.arg("--magnet").arg(m);
        }
        if let Some(r) = opts.upload_rate {
            cmd.args(["--upload-rate", &r.to_string()]);
        }
        if opts.linger {
            cmd.arg("--linger");
        }
        if opts.check_only {
            cmd.arg("--check-only");
        }
        if opts.no_utp {
            cmd.arg("--no-utp");
        }
        if opts.pex {
            cmd.arg("--pex");
        }
        if let Some(bootstrap) = &opts.dht {
            cmd.arg("--dht");
            for b in bootstrap {
                cmd.arg("--dht-bootstrap").arg(b.to_string());
            }
        }
        let timeout = if opts.timeout_secs == 0 {
            60
        } else {
            opts.timeout_secs
        };
        cmd.args(["--timeout", &timeout.to_string()]);
        let mut proc = Proc::spawn(label, cmd, scratch.path());
        let addr = proc.wait_line(
            "`listening on` line",
            STARTUP,
            enjambre_tests::bins::parse_listening,
        );
        LtPeer {
            proc,
            addr,
            events: Vec::new(),
        }
    }

    /// Read events until `done(events so far)` holds; panic after `timeout` or when the script ends first.
    fn wait_events(&mut self, what: &str, timeout: Duration, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.events) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.proc.next_line(left) {
                Line::Text(line) => match serde_json::from_str::<Value>(&line) {
                    Ok(v) => self.events.push(v),
                    Err(_) => eprintln!("{}: {line}", self.proc.name()),
                },
                Line::End => panic!(
                    "{}: output ended before {what}; events: {:#?}\n{}",
                    self.proc.name(),
                    self.events,
                    self.proc.stderr_tail()
                ),
                Line::Timeout => panic!(
                    "{}: no {what} within {timeout:?}; events: {:#?}\n{}",
                    self.proc.name(),
                    self.events,
                    self.proc.stderr_tail()
                ),
            }
        }
    }

    fn of_kind(events: &[Value], kind: &str) -> Vec<LtTorrent> {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| serde_json::from_value(e.clone()).expect("a torrent event"))
            .collect()
    }

    /// Wait until `n` torrents have checked their files; every seed must check complete.
    pub fn wait_ready(&mut self, n: usize, timeout: Duration) -> Vec<LtTorrent> {
        self.wait_events("torrents checked", timeout, |ev| {
            ev.iter().filter(|e| e["event"] == "ready").count() >= n
                || ev.iter().any(|e| e["event"] == "final")
        });
        let ready = Self::of_kind(&self.events, "ready");
        assert!(
            ready.len() >= n,
            "{}: stopped before {n} torrents were checked: {:#?}\n{}",
            self.proc.name(),
            self.events,
            self.proc.stderr_tail()
        );
        for t in &ready {
            assert!(
                t.role != "seed" || t.is_seeding,
                "{}: libtorrent checked the data of seed {} as incomplete ({:.1}%)",
                self.proc.name(),
                t.name,
                t.progress * 100.0
            );
        }
        ready
    }

    /// Wait until the leech `info_hash` is complete.
    pub fn wait_complete(&mut self, info_hash: &str, timeout: Duration) -> LtTorrent {
        self.wait_events(&format!("completion of {info_hash}"), timeout, |ev| {
            ev.iter()
                .any(|e| e["event"] == "complete" && e["info_hash"] == info_hash)
        });
        Self::of_kind(&self.events, "complete")
            .into_iter()
            .find(|t| t.info_hash == info_hash)
            .expect("the complete event")
    }

    /// Wait for the final report and the exit; panic unless it is `ok` and exit status 0.
    pub fn wait_final(&mut self, timeout: Duration) -> LtFinal {
        self.wait_events("the final report", timeout, |ev| {
            ev.iter().any(|e| e["event"] == "final")
        });
        let last = self
            .events
            .iter()
            .rev()
            .find(|e| e["event"] == "final")
            .expect("final")
            .clone();
        let fin: LtFinal = serde_json::from_value(last).expect("a final report");
        let status = self.proc.wait_exit(Duration::from_secs(10));
        assert!(
            fin.ok && status.success(),
            "{}: libtorrent did not succeed ({status}, reason {}): {fin:#?}\n{}",
            self.proc.name(),
            fin.reason,
            self.proc.stderr_tail()
        );
        for t in &fin.torrents {
            assert!(
                t.error.is_empty(),
                "{}: torrent error: {t:#?}",
                self.proc.name()
            );
        }
        fin
    }

    /// SIGTERM, then the final report.
    pub fn stop(&mut self) -> LtFinal {
        sigterm(&self.proc);
        self.wait_final(Duration::from_secs(15))
    }
}

// ---- aria2 ----------------------------------------------------------------------------------------------

/// A running aria2c on one torrent.
pub struct Aria2 {
    /// The process.
    pub proc: Proc,
    /// Its BitTorrent listen port (on every interface).
    pub port: u16,
}

/// Start aria2c on `torrent` with its data folder `dir`, isolated like the other clients. A leecher stops
/// when complete (`--seed-time=0`, exit 0); a seeder checks the data it has and seeds until killed.
pub fn aria2(label: &str, scratch: &Scratch, dir: &Path, torrent: &Path, seed: bool) -> Aria2 {
    aria2_with(label, scratch, dir, torrent, seed, false)
}

/// [`aria2`], with its UDP tracker support on when `udp_trackers`. aria2c speaks to UDP trackers only with
/// its DHT enabled (they share one UDP port); the DHT then runs on a free port with its state in the
/// scratch folder, and has no one to talk to on this machine.
pub fn aria2_with(
    label: &str,
    scratch: &Scratch,
    dir: &Path,
    torrent: &Path,
    seed: bool,
    udp_trackers: bool,
) -> Aria2 {
    let port = free_port();
    let mut cmd = Command::new("aria2c");
    if udp_trackers {
        cmd.args([
            "--enable-dht=true".to_string(),
            format!("--dht-listen-port={}", free_port()),
            format!(
                "--dht-file-path={}",
                scratch.path().join(format!("{label}-dht.dat")).display()
            ),
        ]);
    } else {
        cmd.arg("--enable-dht=false");
    }
    cmd.arg(format!("--dir={}", dir.display()))
        .args([
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            &format!("--listen-port={port}"),
            "--console-log-level=warn",
            "--summary-interval=0",
            "--bt-stop-timeout=60",
        ])
        .args(if seed {
            ["--seed-ratio=0.0", "--check-integrity=true"]
        } else {
            ["--seed-time=0", "--check-integrity=false"]
        })
        .arg(torrent);
    Aria2 {
        proc: Proc::spawn(label, cmd, scratch.path()),
        port,
    }
}

impl Aria2 {
    /// Wait for a leecher to finish; panic (with its console output) unless it exits 0.
    pub fn wait_done(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.proc.next_line(left) {
                Line::Text(l) => out.push(l),
                Line::End => break,
                Line::Timeout => panic!(
                    "{}: not done within {timeout:?}; output: {out:#?}",
                    self.proc.name()
                ),
            }
        }
        let status = self.proc.wait_exit(Duration::from_secs(10));
        assert!(
            status.success(),
            "{} exited with {status}; output: {out:#?}\n{}",
            self.proc.name(),
            self.proc.stderr_tail()
        );
    }
}

// ---- the tracker's view ---------------------------------------------------------------------------------

/// What the tracker's `/swarm` showed of one node over a test.
#[derive(Debug, Clone, Default)]
pub struct NodeSeen {
    /// Names (catalog name, else info hash) it was seen sharing, complete.
    pub sharing: BTreeSet<String>,
    /// Info hashes it was seen downloading.
    pub leeching: BTreeSet<String>,
}

/// Polls the tracker's `/swarm` every 50 ms in the background and remembers every node ever listed.
pub struct SwarmWatch {
    seen: Arc<Mutex<BTreeMap<String, NodeSeen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn sample_swarm(addr: SocketAddr, seen: &Mutex<BTreeMap<String, NodeSeen>>) {
    let Ok(resp) = http::get(addr, "/swarm") else {
        return;
    };
    let Ok(view) = serde_json::from_slice::<Value>(&resp.body) else {
        return;
    };
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    for node in view["nodes"].as_array().into_iter().flatten() {
        let Some(name) = node["node"].as_str() else {
            continue;
        };
        let entry = seen.entry(name.to_string()).or_default();
        for s in node["sharing"].as_array().into_iter().flatten() {
            if let Some(s) = s.as_str() {
                entry.sharing.insert(s.to_string());
            }
        }
        for d in node["downloading"].as_array().into_iter().flatten() {
            if let Some(h) = d["info_hash"].as_str() {
                entry.leeching.insert(h.to_string());
            }
        }
    }
}

impl SwarmWatch {
    /// Start polling `tracker`.
    pub fn start(tracker: &Tracker) -> SwarmWatch {
        let addr = tracker.addr;
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::Builder::new()
                .name("swarm-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        sample_swarm(addr, &seen);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
                .expect("spawn swarm watcher")
        };
        SwarmWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// What was seen of `127.0.0.1:PORT`.
    pub fn node(&self, port: u16) -> NodeSeen {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&format!("127.0.0.1:{port}"))
            .cloned()
            .unwrap_or_default()
    }

    /// Everything seen, for failure messages.
    pub fn all(&self) -> BTreeMap<String, NodeSeen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait until `127.0.0.1:PORT` is listed sharing `name` (catalog name or info hash).
    pub fn wait_sharing(&self, port: u16, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.node(port).sharing.contains(name) {
            assert!(
                Instant::now() < deadline,
                "the tracker did not list 127.0.0.1:{port} sharing {name} within {timeout:?}: {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panic unless `127.0.0.1:PORT` (`who`) was seen downloading `info_hash`.
    pub fn assert_leeched(&self, who: &str, port: u16, info_hash: &str) {
        assert!(
            self.node(port).leeching.contains(info_hash),
            "the tracker never listed {who} (127.0.0.1:{port}) downloading {info_hash}: {:#?}",
            self.all()
        );
    }
}

impl Drop for SwarmWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One torrent's scrape counts (BEP 48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scrape {
    /// Seeders now.
    pub complete: i64,
    /// Leechers now.
    pub incomplete: i64,
    /// `event=completed` announces, all time.
    pub downloaded: i64,
}

/// `GET /scrape?info_hash=...` for one torrent.
pub fn scrape(tracker: &Tracker, info_hash: &str) -> Scrape {
    let raw: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&info_hash[2 * i..2 * i + 2], 16).expect("hex info hash"))
        .collect();
    let escaped: String = raw.iter().map(|b| format!("%{b:02X}")).collect();
    let resp = http::get(tracker.addr, &format!("/scrape?info_hash={escaped}"))
        .unwrap_or_else(|e| panic!("scrape: {e}"));
    assert_eq!(resp.status, 200, "scrape: {}", resp.text());
    let v = bencode::decode(&resp.body)
        .unwrap_or_else(|e| panic!("scrape is not bencode ({e:?}): {}", resp.text()));
    let entry = v
        .get(b"files")
        .and_then(|f| f.get(&raw))
        .unwrap_or_else(|| panic!("scrape has no entry for {info_hash}: {}", resp.text()));
    let n = |k: &[u8]| entry.get(k).and_then(|x| x.as_int()).unwrap_or(-1);
    Scrape {
        complete: n(b"complete"),
        incomplete: n(b"incomplete"),
        downloaded: n(b"downloaded"),
    }
}
