//! The outcome of a run: expectations judged, the story, the final swarm table, and a JSON form.

use crate::content;
use crate::scenario::Scenario;
use crate::world::{Mark, Record, ResumeRecord, Shared};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// One expectation and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Which kind of expectation (the `[expect]` field it comes from).
    pub kind: &'static str,
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
    /// Payload bytes received (all boots).
    pub downloaded: u64,
    /// Payload bytes sent (all boots).
    pub uploaded: u64,
    /// Wasted bytes: failed hashes, duplicates, data nobody asked for (all boots).
    pub wasted: u64,
    /// Peers it banned (all boots).
    pub banned: Vec<String>,
    /// Accepted payload bytes from each source (all boots).
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
    /// Version of the JSON layout.
    pub format: u32,
    /// Scenario name.
    pub scenario: String,
    /// What the scenario shows.
    pub description: String,
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
    /// Swarm measures (optimum ratio, upload utilisation, piece spread, seed copies) when the story is one
    /// file shared by seeds and downloaders.
    pub measures: Option<crate::measures::SwarmMeasures>,
    /// The story (and, with tracing, every protocol event).
    pub log: Vec<Record>,
    /// What the timeline pictures draw (see [`crate::timeline`]); not part of the JSON report.
    #[serde(skip)]
    pub timeline: Timeline,
}

/// One peer's lane in a timeline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lane {
    /// Host name.
    pub peer: String,
    /// Whether it downloads something (else it only seeds).
    pub downloads: bool,
    /// (time, pieces verified, pieces in all), summed over its torrents, when it changed.
    pub progress: Vec<(Duration, u32, u32)>,
    /// Intervals during which its host ran.
    pub up: Vec<(Duration, Duration)>,
    /// When each downloaded file completed.
    pub completed: Vec<(String, Duration)>,
}

/// The material of a timeline: a lane per peer (in scenario order) and the faults and turning points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    /// Simulated time the story took.
    pub duration: Duration,
    /// One lane per peer.
    pub lanes: Vec<Lane>,
    /// Marks, in time order.
    pub marks: Vec<Mark>,
    /// Whether the story has a tracker (its lane is drawn only then).
    pub has_tracker: bool,
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
        let before = |m: &BTreeMap<String, u64>, file: &str| m.get(file).copied().unwrap_or(0);
        let files = p
            .stats
            .iter()
            .map(|(file, s)| {
                // One host may have sent over an inbound and an outbound connection, and over several boots:
                // add them all up under its name.
                let mut sources: BTreeMap<String, u64> = BTreeMap::new();
                let earlier = p.sources_before.get(file).into_iter().flatten();
                for (addr, bytes) in s.sources.iter().chain(earlier) {
                    *sources.entry(name_of(addr)).or_insert(0) += *bytes;
                }
                let mut banned: Vec<String> = s
                    .banned
                    .iter()
                    .chain(p.banned_before.get(file).into_iter().flatten())
                    .map(&name_of)
                    .collect();
                banned.sort();
                banned.dedup();
                FileOutcome {
                    file: file.clone(),
                    pieces: format!("{}/{}", s.pieces_have, s.pieces_total),
                    complete: s.complete,
                    completed_at: p.completed_at.get(file).map(|d| round3(*d)),
                    downloaded: s.bytes_downloaded + before(&p.downloaded_before, file),
                    uploaded: s.bytes_uploaded + before(&p.uploaded_before, file),
                    wasted: s.bytes_wasted + before(&p.wasted_before, file),
                    banned,
                    sources,
                }
            })
            .collect();
        peers.push(PeerOutcome {
            peer: spec.name.clone(),
            boots: p.boots,
            resumes: p.resumes.clone(),
            files,
        });
    }
    let lanes = scenario
        .peers
        .iter()
        .map(|spec| {
            let p = w.peers.get(&spec.name);
            let mut up = p.map(|p| p.up_intervals.clone()).unwrap_or_default();
            if let Some(since) = p.and_then(|p| p.up_since) {
                up.push((since, elapsed));
            }
            Lane {
                peer: spec.name.clone(),
                downloads: !spec.get.is_empty(),
                progress: p.map(|p| p.progress.clone()).unwrap_or_default(),
                up,
                completed: p
                    .map(|p| {
                        p.completed_at
                            .iter()
                            .filter(|(f, _)| spec.get.contains(f))
                            .map(|(f, t)| (f.clone(), *t))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let mut marks = w.marks.clone();
    marks.sort_by_key(|m| m.t);
    let timeline = Timeline {
        duration: elapsed,
        lanes,
        marks,
        has_tracker: scenario.tracker.enabled,
    };
    let verdicts = judge(scenario, seed, &w, &peers);
    let passed = verdicts.iter().all(|v| v.ok) && w.violations.is_empty();
    Report {
        format: 1,
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        seed,
        passed,
        simulated_seconds: round3(elapsed),
        wall_seconds: wall.as_secs_f64(),
        verdicts,
        violations: w.violations.clone(),
        peers,
        measures: crate::measures::measure(scenario, &w, elapsed),
        log: w.log.clone(),
        timeline,
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
            kind: "complete",
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
            kind: "incomplete",
            expectation: format!("{name} does not complete"),
            ok: done < all,
            seen: format!("{done}/{all} complete"),
        });
    }
    for (name, piece) in &e.resume_at {
        let last = outcome(name).and_then(|p| p.resumes.iter().rfind(|r| r.boot > 1));
        out.push(Verdict {
            kind: "resume_at",
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
            kind: "resumed_at_least",
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
            kind: "no_refetch",
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
        // An empty list means: bans nobody.
        let ok = if expected.is_empty() {
            banned.is_empty()
        } else {
            expected.iter().all(|x| banned.contains(x))
        };
        let whom = if expected.is_empty() {
            "nobody".to_string()
        } else {
            expected.join(", ")
        };
        out.push(Verdict {
            kind: "banned",
            expectation: format!("{name} bans {whom}"),
            ok,
            seen: format!("banned: [{}]", banned.join(", ")),
        });
    }
    for name in &e.disk_stalled {
        let stalls: u32 = w
            .peers
            .get(name)
            .map_or(0, |p| p.disk_stalls.values().sum());
        out.push(Verdict {
            kind: "disk_stalled",
            expectation: format!("{name}'s download stops on a disk error"),
            ok: stalls > 0,
            seen: format!("stopped {stalls} times"),
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
            kind: "max_upload_copies",
            expectation: format!("{name} uploads at most {max} copies"),
            ok: copies <= *max,
            seen: format!("{copies:.2} copies"),
        });
    }
    for (name, max) in &e.max_wasted_percent {
        let files = outcome(name)
            .map(|p| p.files.as_slice())
            .unwrap_or_default();
        let wasted: u64 = files.iter().map(|f| f.wasted).sum();
        let downloaded: u64 = files.iter().map(|f| f.downloaded).sum();
        let percent = if downloaded == 0 {
            0.0
        } else {
            100.0 * wasted as f64 / downloaded as f64
        };
        out.push(Verdict {
            kind: "max_wasted_percent",
            expectation: format!("{name} wastes at most {max}% of what it downloads"),
            ok: percent <= *max,
            seen: format!("{percent:.1}% wasted ({wasted} of {downloaded} bytes)"),
        });
    }
    for (name, min) in &e.min_sources {
        let mut sources: BTreeMap<String, u64> = BTreeMap::new();
        for f in outcome(name)
            .map(|p| p.files.as_slice())
            .unwrap_or_default()
        {
            for (from, bytes) in &f.sources {
                *sources.entry(from.clone()).or_insert(0) += bytes;
            }
        }
        let seen: Vec<String> = sources
            .iter()
            .filter(|(_, b)| **b > 0)
            .map(|(k, b)| format!("{k} {:.1} MB", *b as f64 / 1e6))
            .collect();
        out.push(Verdict {
            kind: "min_sources",
            expectation: format!("{name} receives payload from at least {min} peers"),
            ok: seen.len() >= *min as usize,
            seen: format!("{} sources: {}", seen.len(), seen.join(", ")),
        });
    }
    if e.identical {
        let mut checked = 0;
        let mut bad = Vec::new();
        let mut originals: BTreeMap<String, [u8; 20]> = BTreeMap::new();
        for spec in &scenario.peers {
            let Some(p) = w.peers.get(&spec.name) else {
                continue;
            };
            for file in &spec.get {
                let parts = scenario.file(file).map(|f| f.parts()).unwrap_or_default();
                // A download is compared once digested (when complete), a folder file by file: a file
                // of it missing is a difference.
                if !parts.iter().any(|(part, _)| p.digests.contains_key(part)) {
                    continue;
                }
                for (part, size) in parts {
                    let original = *originals
                        .entry(part.clone())
                        .or_insert_with(|| content::digest(seed, &part, size));
                    checked += 1;
                    if p.digests.get(&part) != Some(&original) {
                        bad.push(format!("{}/{part}", spec.name));
                    }
                }
            }
        }
        out.push(Verdict {
            kind: "identical",
            expectation: "every downloaded file is byte-identical to its source".into(),
            ok: bad.is_empty(),
            seen: if bad.is_empty() {
                format!("{checked} downloaded copies identical")
            } else {
                format!("differ: {}", bad.join(", "))
            },
        });
    }
    out
}

/// The deterministic essence of a run, for snapshots: the verdicts, the final swarm state and the story
/// (nothing that depends on wall time).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Whether every expectation held and no invariant broke.
    pub passed: bool,
    /// Simulated seconds the story took.
    pub simulated_seconds: f64,
    /// Expectations.
    pub verdicts: Vec<Verdict>,
    /// Invariant violations found by the harness.
    pub violations: Vec<String>,
    /// The final swarm state.
    pub swarm: Vec<PeerOutcome>,
    /// The story, one line per event.
    pub story: Vec<String>,
}

impl Report {
    /// The deterministic essence of the run (see [`Summary`]).
    pub fn summary(&self) -> Summary {
        Summary {
            scenario: self.scenario.clone(),
            seed: self.seed,
            passed: self.passed,
            simulated_seconds: self.simulated_seconds,
            verdicts: self.verdicts.clone(),
            violations: self.violations.clone(),
            swarm: self.peers.clone(),
            story: self.story_lines(false),
        }
    }

    /// The log as lines of text: the story, or everything with `with_trace`.
    pub fn story_lines(&self, with_trace: bool) -> Vec<String> {
        self.log
            .iter()
            .filter(|r| r.story || with_trace)
            .map(|r| {
                let times = if r.count > 1 {
                    format!(" (x{})", r.count)
                } else {
                    String::new()
                };
                format!(
                    "[{:>9.3}s] {:<10} {}{times}",
                    r.t.as_secs_f64(),
                    r.host,
                    r.text
                )
            })
            .collect()
    }

    /// The story as text: the log (story lines, or everything with a trace), the final table and verdicts.
    pub fn render(&self, with_trace: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario {} (seed {})", self.scenario, self.seed);
        if !self.description.is_empty() {
            let _ = writeln!(s, "{}", self.description);
        }
        for line in self.story_lines(with_trace) {
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "\n{}", self.table());
        if let Some(m) = &self.measures {
            let _ = writeln!(s, "{}", m.headline());
        }
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
