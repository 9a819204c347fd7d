//! The outcome of a run: expectations judged, the story, the final swarm table, and a JSON form.

use crate::content;
use crate::scenario::Scenario;
use crate::world::{Record, ResumeRecord, Shared};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// One expectation and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// What was expected.
    pub expectation: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub seen: String,
}

/// One file at one peer at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileOutcome {
    /// File name.
    pub file: String,
    /// Pieces held / total.
    pub pieces: String,
    /// Complete and verified.
    pub complete: bool,
    /// Simulated second it completed.
    pub completed_at: Option<f64>,
    /// Payload bytes received (last boot).
    pub downloaded: u64,
    /// Payload bytes sent (all boots).
    pub uploaded: u64,
    /// Wasted bytes (last boot).
    pub wasted: u64,
    /// Peers it banned.
    pub banned: Vec<String>,
    /// Bytes received from each source (last boot).
    pub sources: BTreeMap<String, u64>,
}

/// One peer at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerOutcome {
    /// Host name.
    pub peer: String,
    /// Times it started.
    pub boots: u32,
    /// Its resumes.
    pub resumes: Vec<ResumeRecord>,
    /// Its files.
    pub files: Vec<FileOutcome>,
}

/// The judged run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Whether every expectation held and no invariant broke.
    pub passed: bool,
    /// Simulated seconds the story took.
    pub simulated_seconds: f64,
    /// Wall-clock seconds (not part of snapshots: it varies).
    #[serde(skip)]
    pub wall_seconds: f64,
    /// Expectations.
    pub verdicts: Vec<Verdict>,
    /// Invariant violations found by the harness.
    pub violations: Vec<String>,
    /// Final state per peer.
    pub peers: Vec<PeerOutcome>,
    /// The story (and, with tracing, every protocol event).
    pub log: Vec<Record>,
}

fn round3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Judge the run and assemble its report.
pub fn build_report(
    scenario: &Scenario,
    seed: u64,
    world: &Shared,
    elapsed: Duration,
    wall: Duration,
) -> Report {
    let w = world.lock();
    let name_of = |addr: &std::net::SocketAddr| w.host_name(*addr);
    let mut peers = Vec::new();
    for spec in &scenario.peers {
        let Some(p) = w.peers.get(&spec.name) else {
            peers.push(PeerOutcome {
                peer: spec.name.clone(),
                boots: 0,
                resumes: vec![],
                files: vec![],
            });
            continue;
        };
        let files = p
            .stats
            .iter()
            .map(|(file, s)| FileOutcome {
                file: file.clone(),
                pieces: format!("{}/{}", s.pieces_have, s.pieces_total),
                complete: s.complete,
                completed_at: p.completed_at.get(file).map(|d| round3(*d)),
                downloaded: s.bytes_downloaded,
                uploaded: s.bytes_uploaded + p.uploaded_before.get(file).copied().unwrap_or(0),
                wasted: s.bytes_wasted,
                banned: s.banned.iter().map(&name_of).collect(),
                sources: s.sources.iter().map(|(a, b)| (name_of(a), *b)).collect(),
            })
            .collect();
        peers.push(PeerOutcome {
            peer: spec.name.clone(),
            boots: p.boots,
            resumes: p.resumes.clone(),
            files,
        });
    }
    let verdicts = judge(scenario, seed, &w, &peers);
    let passed = verdicts.iter().all(|v| v.ok) && w.violations.is_empty();
    Report {
        scenario: scenario.name.clone(),
        seed,
        passed,
        simulated_seconds: round3(elapsed),
        wall_seconds: wall.as_secs_f64(),
        verdicts,
        violations: w.violations.clone(),
        peers,
        log: w.log.clone(),
    }
}

fn judge(
    scenario: &Scenario,
    seed: u64,
    w: &crate::world::World,
    peers: &[PeerOutcome],
) -> Vec<Verdict> {
    let e = &scenario.expect;
    let mut out = Vec::new();
    let outcome = |name: &str| peers.iter().find(|p| p.peer == name);
    let complete_files = |name: &str| -> (usize, usize) {
        let Some(spec) = scenario.peer(name) else {
            return (0, 0);
        };
        let done = spec
            .get
            .iter()
            .filter(|f| {
                w.peers
                    .get(name)
                    .is_some_and(|p| p.digests.contains_key(*f))
            })
            .count();
        (done, spec.get.len())
    };
    for name in &e.complete {
        let (done, all) = complete_files(name);
        let last = w
            .peers
            .get(name)
            .and_then(|p| p.completed_at.values().max().copied());
        let in_time = match (e.within, last) {
            (Some(limit), Some(t)) => t <= limit.0,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let within = e.within.map_or(String::new(), |l| {
            format!(" within {:.1}s", l.0.as_secs_f64())
        });
        out.push(Verdict {
            expectation: format!("{name} completes all {all} downloads{within}"),
            ok: done == all && in_time,
            seen: format!(
                "{done}/{all} complete{}",
                last.map_or(String::new(), |t| format!(
                    ", last at {:.3}s",
                    t.as_secs_f64()
                ))
            ),
        });
    }
    for name in &e.incomplete {
        let (done, all) = complete_files(name);
        out.push(Verdict {
            expectation: format!("{name} does not complete"),
            ok: done < all,
            seen: format!("{done}/{all} complete"),
        });
    }
    for (name, piece) in &e.resume_at {
        let last = outcome(name).and_then(|p| p.resumes.iter().rfind(|r| r.boot > 1));
        out.push(Verdict {
            expectation: format!("{name} resumes at piece {piece}"),
            ok: last.is_some_and(|r| r.first_missing == Some(*piece)),
            seen: last.map_or("no restart".into(), |r| {
                let first = r
                    .first_missing
                    .map_or("none".to_string(), |p| p.to_string());
                format!(
                    "resumed with {} pieces, first missing piece {first}",
                    r.pieces_resumed
                )
            }),
        });
    }
    for (name, n) in &e.resumed_at_least {
        let last = outcome(name).and_then(|p| p.resumes.iter().rfind(|r| r.boot > 1));
        out.push(Verdict {
            expectation: format!("{name} resumes with at least {n} pieces"),
            ok: last.is_some_and(|r| r.pieces_resumed >= *n),
            seen: last.map_or("no restart".into(), |r| {
                format!("{} pieces", r.pieces_resumed)
            }),
        });
    }
    if e.no_refetch {
        let mut bad = Vec::new();
        for p in peers {
            for r in p.resumes.iter().filter(|r| r.boot > 1) {
                if r.pieces_resumed < r.durable_before {
                    bad.push(format!(
                        "{} resumed {} with {} pieces but {} were checkpointed",
                        p.peer, r.file, r.pieces_resumed, r.durable_before
                    ));
                }
            }
        }
        out.push(Verdict {
            expectation: "no checkpointed piece is fetched again after a restart".into(),
            ok: bad.is_empty(),
            seen: if bad.is_empty() {
                "every restart kept its checkpointed pieces".into()
            } else {
                bad.join("; ")
            },
        });
    }
    for (name, expected) in &e.banned {
        let banned: Vec<String> = outcome(name)
            .map(|p| p.files.iter().flat_map(|f| f.banned.clone()).collect())
            .unwrap_or_default();
        let ok = expected.iter().all(|x| banned.contains(x));
        out.push(Verdict {
            expectation: format!("{name} bans {}", expected.join(", ")),
            ok,
            seen: format!("banned: [{}]", banned.join(", ")),
        });
    }
    for (name, max) in &e.max_upload_copies {
        let spec = scenario.peer(name);
        let size: u64 = spec.map_or(0, |s| {
            s.has
                .iter()
                .filter_map(|f| scenario.file(f))
                .map(|f| f.size.0)
                .sum()
        });
        let up: u64 = outcome(name).map_or(0, |p| p.files.iter().map(|f| f.uploaded).sum());
        let copies = if size == 0 {
            0.0
        } else {
            up as f64 / size as f64
        };
        out.push(Verdict {
            expectation: format!("{name} uploads at most {max} copies"),
            ok: copies <= *max,
            seen: format!("{copies:.2} copies"),
        });
    }
    if e.identical {
        let mut checked = 0;
        let mut bad = Vec::new();
        for (peer, p) in &w.peers {
            for (file, d) in &p.digests {
                let Some(spec) = scenario.file(file) else {
                    continue;
                };
                checked += 1;
                if *d != content::digest(seed, file, spec.size.0) {
                    bad.push(format!("{peer}/{file}"));
                }
            }
        }
        out.push(Verdict {
            expectation: "every finished file is byte-identical to its source".into(),
            ok: bad.is_empty(),
            seen: if bad.is_empty() {
                format!("{checked} files identical")
            } else {
                format!("differ: {}", bad.join(", "))
            },
        });
    }
    out
}

impl Report {
    /// The story as text: the log (story lines, or everything with a trace), the final table and verdicts.
    pub fn render(&self, with_trace: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario {} (seed {})", self.scenario, self.seed);
        for r in self.log.iter().filter(|r| r.story || with_trace) {
            let _ = writeln!(s, "[{:>9.3}s] {:<10} {}", r.t.as_secs_f64(), r.host, r.text);
        }
        let _ = writeln!(s, "\n{}", self.table());
        for v in &self.verdicts {
            let _ = writeln!(
                s,
                "{} {} — {}",
                if v.ok { "PASS" } else { "FAIL" },
                v.expectation,
                v.seen
            );
        }
        for v in &self.violations {
            let _ = writeln!(s, "FAIL {v}");
        }
        let _ = writeln!(
            s,
            "{}: {:.3} simulated seconds in {:.2} s of wall time",
            if self.passed { "PASSED" } else { "FAILED" },
            self.simulated_seconds,
            self.wall_seconds
        );
        s
    }

    /// The final swarm table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:<5} {:<14} {:>10} {:>12} {:>12} {:>10}  SOURCES",
            "PEER", "BOOTS", "FILE", "PIECES", "DOWN", "UP", "DONE AT"
        );
        for p in &self.peers {
            for f in &p.files {
                let done = f
                    .completed_at
                    .map_or("-".to_string(), |t| format!("{t:.1}s"));
                let sources: Vec<String> = f
                    .sources
                    .iter()
                    .map(|(k, v)| format!("{k}:{:.1}MB", *v as f64 / 1e6))
                    .collect();
                let _ = writeln!(
                    s,
                    "{:<12} {:<5} {:<14} {:>10} {:>12} {:>12} {:>10}  {}",
                    p.peer,
                    p.boots,
                    f.file,
                    f.pieces,
                    f.downloaded,
                    f.uploaded,
                    done,
                    sources.join(" ")
                );
            }
        }
        s
    }
}
