//! The real binaries: where they are, and front ends for `tracker`, `peer serve` and `peer get --json` as
//! the CLI contract (notes/CLI.md) describes them.

use crate::files::Scratch;
use crate::http;
use crate::proc::Proc;
use crate::wait_for;
use enjambre_net::app::FileReport;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a binary may take to print its `listening on` line.
const STARTUP: Duration = Duration::from_secs(20);

/// The path of workspace binary `name` (`tracker`, `peer`): next to the test executable's folder, i.e.
/// `target/<profile>/NAME` for a test running from `target/<profile>/deps/`. Panics with instructions when
/// it has not been built.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe
        .parent()
        .expect("the test executable is in a folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the `{name}` binary is not at {}: build the binaries of this profile first, e.g. \
         `cargo test --release --workspace` (which builds them) or \
         `cargo build --release -p enjambre --bins` before `cargo test --release -p enjambre-tests`",
        path.display()
    );
    path
}

/// Parse the address in a `... listening on ADDR ...` line (`ADDR` may be a URL such as
/// `http://127.0.0.1:6969/announce`).
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token = rest.split_whitespace().next()?;
    let token = token.strip_prefix("http://").unwrap_or(token);
    let token = token.split('/').next()?;
    token.parse().ok()
}

/// A running `tracker --listen 127.0.0.1:0`.
pub struct Tracker {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its UDP tracker (BEP 15) listens.
    pub udp_addr: SocketAddr,
}

impl Tracker {
    /// Start a tracker on a free loopback port with a 1-second announce interval.
    pub fn start(scratch: &Scratch) -> Tracker {
        Tracker::start_with_interval(scratch, 1)
    }

    /// Start a tracker on a free loopback port with an announce interval of `secs` seconds (peers expire
    /// after 2.5 intervals).
    pub fn start_with_interval(scratch: &Scratch, secs: u32) -> Tracker {
        Tracker::start_with_args(scratch, "127.0.0.1:0", &["--interval", &secs.to_string()])
    }

    /// Start `tracker --listen LISTEN EXTRA...` and wait until it listens.
    pub fn start_with_args(scratch: &Scratch, listen: &str, extra: &[&str]) -> Tracker {
        let mut cmd = Command::new(bin_path("tracker"));
        cmd.args(["--listen", listen]);
        cmd.args(extra);
        let mut proc = Proc::spawn("tracker", cmd, scratch.path());
        let addr = proc.wait_line("`listening on` line", STARTUP, parse_listening);
        let udp_addr = proc.wait_line("`UDP tracker on` line", STARTUP, |line| {
            let rest = line.strip_prefix("UDP tracker on udp://")?;
            rest.split('/').next()?.parse().ok()
        });
        Tracker {
            proc,
            addr,
            udp_addr,
        }
    }

    /// The UDP announce URL (BEP 15).
    pub fn udp_url(&self) -> String {
        format!("udp://{}/announce", self.udp_addr)
    }

    /// The announce URL.
    pub fn url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// `GET path` as JSON (panics on anything else).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = http::get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {}", resp.text()))
    }
}

/// Global options of a `peer` invocation.
#[derive(Debug, Clone)]
pub struct PeerArgs {
    /// `--tracker`.
    pub tracker: Option<String>,
    /// `--dir`.
    pub dir: PathBuf,
    /// `--listen`.
    pub listen: String,
    /// `--max-upload-rate`.
    pub max_upload_rate: Option<String>,
    /// `--max-download-rate`.
    pub max_download_rate: Option<String>,
    /// `--dht`, with a `--dht-bootstrap` for each address.
    pub dht: Option<Vec<SocketAddr>>,
}

impl PeerArgs {
    /// A peer of `tracker` (if any) keeping its files in `dir`, listening on a free loopback port.
    pub fn new(tracker: Option<&Tracker>, dir: &Path) -> PeerArgs {
        PeerArgs {
            tracker: tracker.map(Tracker::url),
            dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            max_upload_rate: None,
            max_download_rate: None,
            dht: None,
        }
    }

    /// With a DHT node joining through `bootstrap` (none: others join through it, or its saved table).
    pub fn dht(mut self, bootstrap: &[SocketAddr]) -> PeerArgs {
        self.dht = Some(bootstrap.to_vec());
        self
    }

    /// With an upload cap (`20MB`, `512KiB`...).
    pub fn upload_rate(mut self, rate: &str) -> PeerArgs {
        self.max_upload_rate = Some(rate.into());
        self
    }

    /// With a download cap.
    pub fn download_rate(mut self, rate: &str) -> PeerArgs {
        self.max_download_rate = Some(rate.into());
        self
    }

    /// The `peer` command with these global options followed by `sub`.
    pub fn command(&self, sub: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path("peer"));
        if let Some(t) = &self.tracker {
            cmd.args(["--tracker", t]);
        }
        cmd.arg("--dir").arg(&self.dir);
        cmd.args(["--listen", &self.listen]);
        if let Some(r) = &self.max_upload_rate {
            cmd.args(["--max-upload-rate", r]);
        }
        if let Some(r) = &self.max_download_rate {
            cmd.args(["--max-download-rate", r]);
        }
        if let Some(bootstrap) = &self.dht {
            cmd.arg("--dht");
            for b in bootstrap {
                cmd.arg("--dht-bootstrap").arg(b.to_string());
            }
        }
        cmd.args(sub);
        cmd
    }
}

/// A running `peer serve`.
pub struct Server {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it announced it seeds: name -> info hash (hex).
    pub seeding: BTreeMap<String, String>,
}

/// Start `peer ... serve` and wait until it listens and has announced `seeding NAME HASH` for each of
/// `expect` files (hashing and publishing done).
pub fn serve(label: &str, scratch: &Scratch, args: &PeerArgs, expect: &[&str]) -> Server {
    let mut proc = Proc::spawn(label, args.command(&["serve"]), scratch.path());
    let addr = proc.wait_line("`listening on` line", STARTUP, parse_listening);
    let mut seeding = BTreeMap::new();
    while seeding.len() < expect.len() {
        let (name, hash) = proc.wait_line("`seeding NAME HASH` lines", STARTUP, |l| {
            let mut words = l.split_whitespace();
            if words.next() != Some("seeding") {
                return None;
            }
            Some((words.next()?.to_string(), words.next()?.to_string()))
        });
        assert!(
            expect.contains(&name.as_str()),
            "{label} seeds unexpected file {name} (expected {expect:?})"
        );
        seeding.insert(name, hash);
    }
    // `seeding` is printed once the file is seeded; publishing it to the catalog may still be under way.
    if let Some(tracker) = args.tracker.as_deref().and_then(tracker_addr) {
        wait_for(
            "the files to be published",
            STARTUP,
            Duration::from_millis(20),
            || {
                let resp = http::get(tracker, "/files").ok()?;
                let files: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
                let list = files.as_array()?;
                expect
                    .iter()
                    .all(|n| list.iter().any(|f| f["name"] == *n))
                    .then_some(())
            },
        );
    }
    Server {
        proc,
        addr,
        seeding,
    }
}

/// The address in a tracker URL `http://ADDR[/announce]`.
fn tracker_addr(url: &str) -> Option<SocketAddr> {
    url.strip_prefix("http://")?.split('/').next()?.parse().ok()
}

/// One line of `peer get --json` (the peer's own [`FileReport`], read back), and when the test read it.
#[derive(Debug, Clone, Deserialize)]
pub struct GetReport {
    /// What the peer reported.
    #[serde(flatten)]
    pub report: FileReport,
    /// Wall-clock seconds from starting the `peer get` process to reading this line (measured by the test;
    /// includes process start-up and the catalog and tracker round trips).
    #[serde(skip)]
    pub wall_seconds: f64,
}

impl std::ops::Deref for GetReport {
    type Target = FileReport;

    fn deref(&self) -> &FileReport {
        &self.report
    }
}

/// A running `peer ... get NAMES --json`.
pub struct Getter {
    /// The process.
    pub proc: Proc,
    started: std::time::Instant,
}

/// Start `peer ... get NAMES... --json EXTRA...`.
pub fn get(
    label: &str,
    scratch: &Scratch,
    args: &PeerArgs,
    names: &[&str],
    extra: &[&str],
) -> Getter {
    let mut sub = vec!["get"];
    sub.extend_from_slice(names);
    sub.push("--json");
    sub.extend_from_slice(extra);
    Getter {
        proc: Proc::spawn(label, args.command(&sub), scratch.path()),
        started: std::time::Instant::now(),
    }
}

impl Getter {
    /// Read `n` JSON reports from stdout, then wait for exit status 0; `timeout` covers it all.
    pub fn reports(&mut self, n: usize, timeout: Duration) -> Vec<GetReport> {
        let deadline = std::time::Instant::now() + timeout;
        let out = self.read_reports(n, timeout);
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let status = self.proc.wait_exit(left.max(Duration::from_secs(5)));
        assert!(
            status.success(),
            "{} exited with {status} after its reports\n{}",
            self.proc.name(),
            self.proc.stderr_tail()
        );
        out
    }

    /// Read `n` JSON reports from stdout within `timeout`, leaving the process running (`--seed`).
    pub fn read_reports(&mut self, n: usize, timeout: Duration) -> Vec<GetReport> {
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let label = self.proc.name().to_string();
            let mut report = self.proc.wait_line("a JSON report", left, |line| {
                let r = serde_json::from_str::<GetReport>(line);
                Some(r.unwrap_or_else(|e| {
                    panic!("{label}: stdout line is not a JSON report ({e}): {line}")
                }))
            });
            report.wall_seconds = self.started.elapsed().as_secs_f64();
            out.push(report);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        assert_eq!(
            parse_listening("listening on 127.0.0.1:6881"),
            Some("127.0.0.1:6881".parse().unwrap())
        );
        assert_eq!(
            parse_listening("tracker listening on http://127.0.0.1:7/announce (catalog: ...)"),
            Some("127.0.0.1:7".parse().unwrap())
        );
        assert_eq!(parse_listening("seeding a 00"), None);
    }

    #[test]
    fn a_get_report_is_the_peers_file_report_read_back() {
        let line = r#"{"name":"a.bin","info_hash":"0000000000000000000000000000000000000000","size":3,"pieces_total":1,"pieces_resumed":0,"bytes_downloaded":3,"bytes_wasted":0,"sources":{"127.0.0.1:7":3},"banned":[],"seconds":0.5}"#;
        let r: GetReport = serde_json::from_str(line).expect("parses");
        assert_eq!(r.name, "a.bin");
        assert_eq!(r.info_hash.0, [0; 20]);
        assert_eq!(r.sources.get(&"127.0.0.1:7".parse().unwrap()), Some(&3));
        assert_eq!(r.wall_seconds, 0.0, "measured by the test, not read");
    }
}
