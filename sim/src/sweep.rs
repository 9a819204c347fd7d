//! Crash sweeps: replay a story many times, each time crashing one peer at a different instant of its
//! download and restarting it a second later on the disk that survived, and check that nothing breaks.
//!
//! A baseline run (no extra crash) records when the peer's download runs and every trip its disk makes
//! (payload writes, payload syncs, checkpoint replacements: see [`DiskTrip`]). Because runs are deterministic,
//! a crash run is identical to the baseline up to the crash, so a crash can be aimed exactly between two disk
//! trips:
//! - *mid-checkpoint*: right after the first of a checkpoint's two trips (data synced, checkpoint not yet
//!   replaced; or, with the deliberately broken ordering, checkpoint replaced but data not yet synced);
//! - *mid-write*: right after a batch of payload writes, before the sync that would make them durable;
//! - *spread*: evenly over the time the peer runs during its download.
//!
//! Every crash run is judged on what must survive any crash: the harness's audit of every checkpoint on every
//! boot (invariant 2), completion, byte-identical files, no checkpointed piece fetched again (invariant 3),
//! bans and incompletions. Expectations about the story's own timing (`within`, `resume_at`,
//! `resumed_at_least`, `max_upload_copies`, `max_wasted_percent`, `min_sources`) are not judged: an extra crash changes them.

use crate::report::Report;
use crate::runner::{run_observed, RunError, RunOptions, SWEEP_RESTART_DELAY};
use crate::scenario::Scenario;
use crate::world::DiskTrip;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How a sweep runs.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// How many crash instants to try.
    pub points: usize,
    /// The peer to crash (default: the first peer that has a `get`).
    pub peer: Option<String>,
    /// Override the scenario's seed.
    pub seed: Option<u64>,
    /// Write checkpoints before syncing their data: the broken ordering the sweep must catch (self-test).
    pub unsafe_checkpoint_before_sync: bool,
    /// Runs carried out in parallel (0: one per available core). Each run is deterministic on its own.
    pub jobs: usize,
}

/// Why a sweep could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// No peer to crash was named and none has a `get`.
    #[error("no peer downloads anything in this scenario: name one with --peer")]
    NoPeer,
    /// The named peer is not in the scenario.
    #[error("no peer named {0:?} in this scenario")]
    UnknownPeer(String),
    /// The named peer downloads nothing.
    #[error("peer {0} downloads nothing, so there is no download to crash")]
    NotDownloading(String),
    /// At least one crash point is needed.
    #[error("--crash-points must be at least 1")]
    NoPoints,
    /// The baseline run could not be carried out.
    #[error("baseline run: {0}")]
    Baseline(#[from] RunError),
    /// The baseline run never saw the download start and finish.
    #[error("in the baseline run {0}'s download never {1}, so there is no window to crash it in")]
    NoWindow(String, &'static str),
}

/// Where a crash instant was aimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aim {
    /// Evenly spread over the download.
    Spread,
    /// After payload writes, before their sync.
    MidWrite,
    /// Between a checkpoint's data sync and its file replacement.
    MidCheckpoint,
}

impl fmt::Display for Aim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Aim::Spread => "spread",
            Aim::MidWrite => "mid-write",
            Aim::MidCheckpoint => "mid-checkpoint",
        })
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// What a restarted peer found on its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resumed {
    /// Pieces it found verified (summed over its downloads).
    pub pieces: u32,
    /// Pieces its last durable checkpoints claimed before the crash.
    pub checkpointed: u32,
}

/// Disk trips of the crashed peer during its download in the baseline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TripCounts {
    /// Trips writing payload.
    pub writes: usize,
    /// Trips syncing payload.
    pub syncs: usize,
    /// Trips replacing a checkpoint.
    pub checkpoints: usize,
}

/// One crash instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CrashPoint {
    /// 1-based position in the sweep.
    pub index: usize,
    /// Simulated time of the crash (right after the step reaching it).
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    /// Where it was aimed.
    pub aim: Aim,
}

/// What happened at one crash point.
#[derive(Debug, Clone, Serialize)]
pub struct PointOutcome {
    /// The crash instant.
    pub point: CrashPoint,
    /// Whether the crash landed (the peer was running at that instant, as in the baseline).
    pub crashed: bool,
    /// What the peer found when it came back.
    pub resumed: Option<Resumed>,
    /// Whether every judged expectation held and no invariant broke.
    pub passed: bool,
    /// What went wrong.
    pub failures: Vec<String>,
    /// Simulated seconds the run took.
    pub simulated_seconds: f64,
}

/// The whole sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Scenario name.
    pub scenario: String,
    /// The crashed peer.
    pub peer: String,
    /// Seed used.
    pub seed: u64,
    /// Simulated time the peer's download started in the baseline run.
    #[serde(serialize_with = "secs")]
    pub window_start: Duration,
    /// Simulated time the peer's download ended in the baseline run.
    #[serde(serialize_with = "secs")]
    pub window_end: Duration,
    /// Disk trips the baseline saw in that window.
    pub trips: TripCounts,
    /// What the baseline run (no extra crash) got wrong: a story that fails without a crash fails the sweep.
    pub baseline_failures: Vec<String>,
    /// The crash points and their outcomes, in time order.
    pub points: Vec<PointOutcome>,
    /// Whether every crash point passed.
    pub passed: bool,
}

impl SweepReport {
    /// Crash points that failed.
    pub fn failed(&self) -> impl Iterator<Item = &PointOutcome> {
        self.points.iter().filter(|p| !p.passed)
    }
}

impl PointOutcome {
    /// One line for the console.
    pub fn line(&self) -> String {
        let resumed = self.resumed.map_or("-".to_string(), |r| {
            format!(
                "resumed {} pieces (checkpoint {})",
                r.pieces, r.checkpointed
            )
        });
        let mut s = format!(
            "{} #{:<3} crash at {:>8.3}s {:<15} {}",
            if self.passed { "PASS" } else { "FAIL" },
            self.point.index,
            self.point.at.as_secs_f64(),
            self.point.aim.to_string(),
            resumed
        );
        for f in &self.failures {
            s.push_str("\n         ");
            s.push_str(f);
        }
        s
    }
}

/// The peer a sweep crashes: `named`, or the first peer with a `get`.
pub fn sweep_target(scenario: &Scenario, named: Option<&str>) -> Result<String, SweepError> {
    match named {
        Some(name) => {
            let spec = scenario
                .peer(name)
                .ok_or_else(|| SweepError::UnknownPeer(name.to_string()))?;
            if spec.get.is_empty() {
                return Err(SweepError::NotDownloading(name.to_string()));
            }
            Ok(name.to_string())
        }
        None => scenario
            .peers
            .iter()
            .find(|p| !p.get.is_empty())
            .map(|p| p.name.clone())
            .ok_or(SweepError::NoPeer),
    }
}

/// The scenario as crash runs judge it: only expectations every crash must leave intact, and the crashed peer
/// must complete.
fn sweep_scenario(scenario: &Scenario, peer: &str) -> Scenario {
    let mut s = scenario.clone();
    let e = &mut s.expect;
    e.within = None;
    e.resume_at.clear();
    e.resumed_at_least.clear();
    e.max_upload_copies.clear();
    e.max_wasted_percent.clear();
    e.min_sources.clear();
    if !e.complete.iter().any(|p| p == peer) && !e.incomplete.iter().any(|p| p == peer) {
        e.complete.push(peer.to_string());
    }
    // A crash and a restart take time: leave room for them.
    s.duration.0 += Duration::from_secs(30);
    s
}

fn ceil_to_tick(t: Duration, tick: Duration) -> Duration {
    let tick = tick.as_nanos().max(1);
    let n = t.as_nanos().div_ceil(tick);
    Duration::from_nanos(u64::try_from(n * tick).unwrap_or(u64::MAX))
}

/// `k` items of `items` spread evenly.
fn pick_evenly<T: Copy>(items: &[T], k: usize) -> Vec<T> {
    if items.is_empty() || k == 0 {
        return Vec::new();
    }
    let k = k.min(items.len());
    (0..k)
        .map(|i| items[(2 * i + 1) * items.len() / (2 * k)])
        .collect()
}

/// Choose `n` crash instants from a baseline's observation of the peer: a quarter aimed mid-checkpoint, a
/// quarter mid-write, the rest spread over the time the peer ran between `start` and `end`.
pub fn plan_points(
    n: usize,
    start: Duration,
    end: Duration,
    up: &[(Duration, Duration)],
    trips: &[(Duration, DiskTrip)],
    tick: Duration,
) -> Vec<CrashPoint> {
    let mut trips: Vec<(Duration, DiskTrip)> = trips
        .iter()
        .copied()
        .filter(|(t, _)| *t >= start && *t < end)
        .collect();
    trips.dedup();
    let mut checkpoint = Vec::new();
    let mut write = Vec::new();
    for (i, (t, kind)) in trips.iter().enumerate() {
        let later = trips[i + 1..].iter().find(|(u, _)| u > t);
        match (kind, later) {
            (DiskTrip::Sync, Some((_, DiskTrip::Checkpoint)))
            | (DiskTrip::Checkpoint, Some((_, DiskTrip::Sync))) => checkpoint.push(*t),
            // Only if no sync happened in this same step (the writes are still pending after it).
            (DiskTrip::Write, Some(_))
                if !trips.iter().any(|(u, k)| u == t && *k != DiskTrip::Write) =>
            {
                write.push(*t);
            }
            _ => {}
        }
    }
    checkpoint.dedup();
    write.dedup();
    let mut chosen: BTreeMap<Duration, Aim> = BTreeMap::new();
    for t in pick_evenly(&checkpoint, n / 4) {
        chosen.insert(t, Aim::MidCheckpoint);
    }
    for t in pick_evenly(&write, n / 4) {
        chosen.entry(t).or_insert(Aim::MidWrite);
    }
    let active: Vec<(Duration, Duration)> = up
        .iter()
        .map(|&(a, b)| (a.max(start), b.min(end)))
        .filter(|(a, b)| a < b)
        .collect();
    let total: Duration = active.iter().map(|(a, b)| *b - *a).sum();
    let mut spread = n.saturating_sub(chosen.len());
    let mut tries = 0;
    while chosen.len() < n && !total.is_zero() && tries < 8 {
        for j in 0..spread {
            let mut offset = total.mul_f64((j as f64 + 0.5) / spread as f64);
            for (a, b) in &active {
                if offset < *b - *a {
                    let t = ceil_to_tick(*a + offset, tick);
                    if t < *b && chosen.len() < n {
                        chosen.entry(t).or_insert(Aim::Spread);
                    }
                    break;
                }
                offset -= *b - *a;
            }
        }
        spread = spread * 2 + 1;
        tries += 1;
    }
    chosen
        .into_iter()
        .enumerate()
        .map(|(i, (at, aim))| CrashPoint {
            index: i + 1,
            at,
            aim,
        })
        .collect()
}

fn judge_point(point: CrashPoint, peer: &str, result: Result<Report, RunError>) -> PointOutcome {
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            return PointOutcome {
                point,
                crashed: false,
                resumed: None,
                passed: false,
                failures: vec![e.to_string()],
                simulated_seconds: 0.0,
            }
        }
    };
    let crashed = report
        .log
        .iter()
        .any(|r| r.host == peer && r.text.starts_with("sweep: CRASH"));
    let back = point.at + SWEEP_RESTART_DELAY;
    // Summed over every download of the first boot after the crash.
    let resumes = report
        .peers
        .iter()
        .find(|p| p.peer == peer)
        .map(|p| p.resumes.as_slice())
        .unwrap_or_default();
    let resumed = resumes.iter().find(|r| r.at >= back).map(|first| {
        resumes.iter().filter(|r| r.boot == first.boot).fold(
            Resumed {
                pieces: 0,
                checkpointed: 0,
            },
            |sum, r| Resumed {
                pieces: sum.pieces + r.pieces_resumed,
                checkpointed: sum.checkpointed + r.durable_before,
            },
        )
    });
    let mut failures: Vec<String> = report
        .verdicts
        .iter()
        .filter(|v| !v.ok)
        .map(|v| format!("{} — {}", v.expectation, v.seen))
        .collect();
    failures.extend(report.violations.iter().cloned());
    if !crashed {
        failures.push(format!(
            "the crash did not land: {peer} was not running at this instant, unlike in the baseline run \
             (nondeterminism?)"
        ));
    }
    PointOutcome {
        point,
        crashed,
        resumed,
        passed: failures.is_empty(),
        failures,
        simulated_seconds: report.simulated_seconds,
    }
}

/// Run a crash sweep of `scenario`. `on_point` sees each outcome as soon as it and all earlier ones are known,
/// in time order.
pub fn sweep(
    scenario: &Scenario,
    options: &SweepOptions,
    on_point: &mut dyn FnMut(&PointOutcome),
) -> Result<SweepReport, SweepError> {
    if options.points == 0 {
        return Err(SweepError::NoPoints);
    }
    let peer = sweep_target(scenario, options.peer.as_deref())?;
    let judged = sweep_scenario(scenario, &peer);
    let (baseline, observation) = run_observed(
        &judged,
        &RunOptions {
            seed: options.seed,
            unsafe_checkpoint_before_sync: options.unsafe_checkpoint_before_sync,
            watch: Some(peer.clone()),
            ..RunOptions::default()
        },
    )?;
    let outcome = baseline.peers.iter().find(|p| p.peer == peer);
    let start = outcome
        .and_then(|p| p.resumes.first())
        .map(|r| r.at)
        .ok_or(SweepError::NoWindow(peer.clone(), "started"))?;
    let spec = scenario.peer(&peer).ok_or(SweepError::NoPeer)?;
    let mut end = Duration::ZERO;
    for file in &spec.get {
        let done = outcome
            .and_then(|p| p.files.iter().find(|f| &f.file == file))
            .and_then(|f| f.completed_at)
            .ok_or(SweepError::NoWindow(peer.clone(), "completed"))?;
        end = end.max(Duration::from_secs_f64(done));
    }
    let points = plan_points(
        options.points,
        start,
        end,
        &observation.up,
        &observation.trips,
        scenario.network.tick.0,
    );
    let count = |k: DiskTrip| {
        let mut v: Vec<&(Duration, DiskTrip)> = observation
            .trips
            .iter()
            .filter(|(t, kind)| *kind == k && *t >= start && *t < end)
            .collect();
        v.dedup();
        v.len()
    };
    let trips = TripCounts {
        writes: count(DiskTrip::Write),
        syncs: count(DiskTrip::Sync),
        checkpoints: count(DiskTrip::Checkpoint),
    };

    let jobs = if options.jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.jobs
    }
    .clamp(1, points.len().max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, PointOutcome)>();
    let mut outcomes: Vec<PointOutcome> = Vec::with_capacity(points.len());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, points, judged, peer) = (&next, &points, &judged, &peer);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(point) = points.get(i).copied() else {
                    return;
                };
                let result = run_observed(
                    judged,
                    &RunOptions {
                        seed: options.seed,
                        crash: Some((peer.clone(), point.at)),
                        unsafe_checkpoint_before_sync: options.unsafe_checkpoint_before_sync,
                        ..RunOptions::default()
                    },
                )
                .map(|(r, _)| r);
                if tx.send((i, judge_point(point, peer, result))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        // Hand outcomes on in order, whatever order the workers finish in.
        let mut waiting: BTreeMap<usize, PointOutcome> = BTreeMap::new();
        for (i, outcome) in rx {
            waiting.insert(i, outcome);
            while let Some(o) = waiting.remove(&outcomes.len()) {
                on_point(&o);
                outcomes.push(o);
            }
        }
    });
    let mut baseline_failures: Vec<String> = baseline
        .verdicts
        .iter()
        .filter(|v| !v.ok)
        .map(|v| format!("{} — {}", v.expectation, v.seen))
        .collect();
    baseline_failures.extend(baseline.violations.iter().cloned());
    let passed = baseline_failures.is_empty() && outcomes.iter().all(|o| o.passed);
    Ok(SweepReport {
        scenario: scenario.name.clone(),
        peer,
        seed: baseline.seed,
        window_start: start,
        window_end: end,
        trips,
        baseline_failures,
        points: outcomes,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn points_aim_between_checkpoint_trips_and_after_writes() {
        let trips = vec![
            (ms(10), DiskTrip::Write),
            (ms(11), DiskTrip::Write),
            (ms(12), DiskTrip::Sync),
            (ms(13), DiskTrip::Checkpoint),
            (ms(20), DiskTrip::Write),
            (ms(21), DiskTrip::Sync),
            (ms(22), DiskTrip::Checkpoint),
        ];
        let up = vec![(ms(0), ms(100))];
        let points = plan_points(8, ms(5), ms(50), &up, &trips, ms(1));
        assert_eq!(points.len(), 8);
        let at = |aim| -> Vec<Duration> {
            points
                .iter()
                .filter(|p| p.aim == aim)
                .map(|p| p.at)
                .collect()
        };
        assert_eq!(at(Aim::MidCheckpoint), vec![ms(12), ms(21)]);
        assert_eq!(at(Aim::MidWrite).len(), 2);
        assert!(points.windows(2).all(|w| w[0].at < w[1].at));
        assert!(points.iter().all(|p| p.at >= ms(5) && p.at < ms(50)));
        assert_eq!(
            points.iter().map(|p| p.index).collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn spread_points_skip_the_time_the_peer_was_down() {
        let up = vec![(ms(0), ms(100)), (ms(1100), ms(1200))];
        let points = plan_points(10, ms(50), ms(1150), &up, &[], ms(1));
        assert_eq!(points.len(), 10);
        assert!(points
            .iter()
            .all(|p| (p.at >= ms(50) && p.at < ms(100)) || (p.at >= ms(1100) && p.at < ms(1150))));
    }
}
