//! `sim explore`: random fault stories by the thousand (swarm testing: each seed turns on a random subset of
//! fault kinds), each judged on what must hold in every story ([`check`]); a failing story is shrunk
//! ([`shrink`]) and written as a scenario file that `sim run` replays.
//!
//! Seeds are independent, so a campaign splits anywhere: `--jobs` runs seeds on threads, `--shard I/N` runs
//! every N-th seed of the range and writes a [`Campaign`] file, and [`merge`] adds such files up.

pub mod check;
pub mod shrink;
pub mod story;

use crate::report::Report;
use crate::runner::{run_observed, Observation, RunError, RunOptions};
use crate::scenario::Scenario;
use check::{judge, Failure, Property};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use story::{FaultKind, Story};

/// How an exploration runs.
#[derive(Debug, Clone, Default)]
pub struct ExploreOptions {
    /// First seed.
    pub from: u64,
    /// Last seed (inclusive).
    pub to: u64,
    /// Runs at once (0: one per core).
    pub jobs: usize,
    /// Run only the seeds `from + I, from + I + N, ...` of shard `(I, N)`.
    pub shard: Option<(u64, u64)>,
    /// Where shrunk stories are written (nothing is written without it).
    pub out: Option<PathBuf>,
    /// Most runs spent shrinking one finding.
    pub shrink_runs: usize,
    /// Check determinism on every this-many-th seed by running it twice (0: never).
    pub determinism_every: u64,
    /// Self-test: checkpoints written before their data is synced (invariant 2 broken).
    pub unsafe_checkpoint_before_sync: bool,
    /// Self-test: nobody is ever banned (invariant 4 broken).
    pub unsafe_never_ban: bool,
}

/// A failing seed, shrunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// The seed.
    pub seed: u64,
    /// What broke first.
    pub property: Property,
    /// Everything that broke in the original story.
    pub failures: Vec<Failure>,
    /// What broke in the shrunk story.
    pub shrunk_failures: Vec<Failure>,
    /// Peers and events of the original story.
    pub original: (usize, usize),
    /// Peers and events of the shrunk story.
    pub shrunk: (usize, usize),
    /// Fault kinds left in the shrunk story.
    pub kinds: Vec<FaultKind>,
    /// Runs spent shrinking.
    pub shrink_runs: usize,
    /// The shrunk story, as a scenario file.
    pub scenario: String,
    /// Where it was written, if anywhere.
    pub file: Option<PathBuf>,
    /// The one-line reproduction.
    pub replay: String,
}

/// The outcome of a campaign (or of one shard of it: [`merge`] adds them up).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Campaign {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that failed.
    pub failed: u64,
    /// Seeds run with each fault kind on.
    pub kinds: BTreeMap<FaultKind, u64>,
    /// Simulated seconds in all.
    pub simulated_seconds: f64,
    /// Wall-clock seconds in all (summed over shards).
    pub wall_seconds: f64,
    /// Findings, by seed.
    pub findings: Vec<Finding>,
}

impl Campaign {
    /// Add another shard's outcome.
    pub fn absorb(&mut self, other: Campaign) {
        self.seeds += other.seeds;
        self.failed += other.failed;
        for (k, n) in other.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
        self.simulated_seconds += other.simulated_seconds;
        self.wall_seconds += other.wall_seconds;
        self.findings.extend(other.findings);
        self.findings.sort_by_key(|f| f.seed);
    }

    /// The closing summary lines.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        let mut s = format!(
            "explored {} seeds: {} failed; {:.0} simulated s in {:.1} wall s ({:.1} seeds/s); fault kinds: {}\n",
            self.seeds,
            self.failed,
            self.simulated_seconds,
            self.wall_seconds,
            if self.wall_seconds > 0.0 {
                self.seeds as f64 / self.wall_seconds
            } else {
                0.0
            },
            kinds.join(", ")
        );
        for f in &self.findings {
            s.push_str(&format!(
                "FINDING seed {}: {} — shrunk from {} peers/{} events to {} peers/{} events; replay: {}\n",
                f.seed, f.property, f.original.0, f.original.1, f.shrunk.0, f.shrunk.1, f.replay
            ));
        }
        s
    }
}

/// Why an exploration could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// The seed range is empty.
    #[error("no seeds to run: --from {0} is past --to {1}")]
    EmptyRange(u64, u64),
    /// A bad shard.
    #[error("--shard I/N needs I < N and N > 0")]
    BadShard,
    /// A generated story is not a valid scenario (a bug of the generator).
    #[error("seed {seed}: the generated story is not a valid scenario: {error}")]
    BadStory {
        /// The seed.
        seed: u64,
        /// The parse error.
        error: String,
    },
    /// A shrunk story could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// One seed's verdict.
#[derive(Debug, Clone)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// Its story.
    pub story: Story,
    /// Simulated seconds.
    pub simulated_seconds: f64,
    /// Wall-clock seconds its run took (both runs, when checked for determinism).
    pub wall_seconds: f64,
    /// What broke (empty: passed).
    pub failures: Vec<Failure>,
}

impl SeedOutcome {
    /// One line: `PASS seed 12 (4 peers, 3 events, crash+partition) 11.2 sim s in 0.41 s`.
    pub fn line(&self) -> String {
        let kinds: Vec<&str> = self.story.kinds().iter().map(|k| k.name()).collect();
        let head = format!(
            "{} seed {} ({} peers, {} events, {}) {:.1} sim s in {:.2} s",
            if self.failures.is_empty() {
                "PASS"
            } else {
                "FAIL"
            },
            self.seed,
            self.story.peers.len(),
            self.story.event_count(),
            if kinds.is_empty() {
                "no faults".to_string()
            } else {
                kinds.join("+")
            },
            self.simulated_seconds,
            self.wall_seconds
        );
        let mut s = head;
        for f in &self.failures {
            s.push_str(&format!("\n     {}: {}", f.property, f.detail));
        }
        s
    }
}

/// The scenario of a story (the note goes into its leading comment).
pub fn scenario_of(story: &Story, note: &str) -> Result<(Scenario, String), ExploreError> {
    let text = story.to_toml(&format!("explore-{}", story.seed), note);
    Scenario::from_toml(&text)
        .map(|s| (s, text.clone()))
        .map_err(|e| ExploreError::BadStory {
            seed: story.seed,
            error: e.to_string(),
        })
}

/// Run a story once and judge it; a panic or a failed host is a failure like any other.
pub fn try_story(
    story: &Story,
    options: &ExploreOptions,
    twice: bool,
) -> Result<(Vec<Failure>, f64), ExploreError> {
    let (scenario, _) = scenario_of(story, "")?;
    let run_options = RunOptions {
        unsafe_checkpoint_before_sync: options.unsafe_checkpoint_before_sync,
        unsafe_never_ban: options.unsafe_never_ban,
        ..RunOptions::default()
    };
    let once = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_observed(&scenario, &run_options)
        }))
    };
    let first = once();
    let mut failures = outcome_failures(story, &first);
    let seconds = match &first {
        Ok(Ok((r, _))) => r.simulated_seconds,
        _ => 0.0,
    };
    if twice {
        if let (Ok(Ok((a, _))), Ok(Ok((b, _)))) = (&first, &once()) {
            let (sa, sb) = (
                serde_json::to_string(&a.summary()).unwrap_or_default(),
                serde_json::to_string(&b.summary()).unwrap_or_default(),
            );
            if sa != sb {
                failures.push(Failure {
                    property: Property::Deterministic,
                    detail: "two runs of the same story and seed told different stories".into(),
                });
            }
        }
    }
    Ok((failures, seconds))
}

type RunResult = std::thread::Result<Result<(Report, Observation), RunError>>;

fn outcome_failures(story: &Story, outcome: &RunResult) -> Vec<Failure> {
    match outcome {
        Ok(Ok((report, observed))) => judge(story, report, observed),
        Ok(Err(e)) => vec![Failure {
            property: Property::HostFailed,
            detail: e.to_string(),
        }],
        Err(panic) => vec![Failure {
            property: Property::Panic,
            detail: panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into()),
        }],
    }
}

/// Shrink a failing story while it still breaks `property`; returns the smallest, what broke in it, and the
/// runs spent.
pub fn shrink_story(
    story: &Story,
    property: Property,
    options: &ExploreOptions,
) -> Result<(Story, Vec<Failure>, usize), ExploreError> {
    let mut best = story.clone();
    let mut best_failures = Vec::new();
    let mut runs = 0;
    'outer: loop {
        for candidate in shrink::candidates(&best) {
            if runs >= options.shrink_runs {
                break 'outer;
            }
            // A candidate that is no valid scenario (a shrink step left an event watching a peer that no
            // longer downloads) is skipped, not an error.
            if scenario_of(&candidate, "").is_err() {
                continue;
            }
            runs += 1;
            let (failures, _) = try_story(&candidate, options, false)?;
            if failures.iter().any(|f| f.property == property) {
                best = candidate;
                best_failures = failures;
                continue 'outer;
            }
        }
        break;
    }
    if best_failures.is_empty() {
        best_failures = try_story(&best, options, false)?.0;
    }
    Ok((best, best_failures, runs))
}

fn self_test_flags(options: &ExploreOptions) -> String {
    let mut s = String::new();
    if options.unsafe_checkpoint_before_sync {
        s.push_str(" --unsafe-checkpoint-before-sync");
    }
    if options.unsafe_never_ban {
        s.push_str(" --unsafe-never-ban");
    }
    s
}

/// Shrink a failing seed and write its story.
fn make_finding(outcome: &SeedOutcome, options: &ExploreOptions) -> Result<Finding, ExploreError> {
    let property = outcome.failures[0].property;
    let (small, shrunk_failures, runs) = shrink_story(&outcome.story, property, options)?;
    let name = format!("explore-seed-{}.toml", outcome.seed);
    let file = options.out.as_ref().map(|d| d.join(&name));
    let shown = file
        .as_ref()
        .map_or_else(|| name.clone(), |p| p.display().to_string());
    let replay = format!("sim run {shown}{}", self_test_flags(options));
    let mut note = format!(
        "Found by `sim explore` (seed {}): {}.\nShrunk from {} peers and {} events to {} peers and {} events.\nReplay: {replay}\n",
        outcome.seed,
        property,
        outcome.story.peers.len(),
        outcome.story.event_count(),
        small.peers.len(),
        small.event_count()
    );
    for f in &shrunk_failures {
        note.push_str(&format!("{}: {}\n", f.property, f.detail));
    }
    let (_, text) = scenario_of(&small, &note)?;
    if let (Some(dir), Some(path)) = (&options.out, &file) {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(path, &text))
            .map_err(|source| ExploreError::Write {
                path: path.clone(),
                source,
            })?;
    }
    Ok(Finding {
        seed: outcome.seed,
        property,
        failures: outcome.failures.clone(),
        shrunk_failures,
        original: (outcome.story.peers.len(), outcome.story.event_count()),
        shrunk: (small.peers.len(), small.event_count()),
        kinds: small.kinds(),
        shrink_runs: runs,
        scenario: text,
        file,
        replay,
    })
}

/// The seeds of a campaign (or of its shard).
pub fn seeds(options: &ExploreOptions) -> Result<Vec<u64>, ExploreError> {
    if options.from > options.to {
        return Err(ExploreError::EmptyRange(options.from, options.to));
    }
    let (i, n) = options.shard.unwrap_or((0, 1));
    if n == 0 || i >= n {
        return Err(ExploreError::BadShard);
    }
    Ok((options.from..=options.to)
        .filter(|s| (s - options.from) % n == i)
        .collect())
}

/// Run a campaign: every seed, in parallel, each failure shrunk. `progress` sees each seed's outcome (in
/// seed order) as it is known.
pub fn explore(
    options: &ExploreOptions,
    progress: &mut dyn FnMut(&SeedOutcome),
) -> Result<Campaign, ExploreError> {
    let started = std::time::Instant::now();
    let seeds = seeds(options)?;
    for &seed in &seeds {
        scenario_of(&Story::generate(seed), "")?;
    }
    let jobs = match options.jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(seeds.len().max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    let mut outcomes: BTreeMap<usize, SeedOutcome> = BTreeMap::new();
    let mut first_error = None;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, seeds) = (&next, &seeds);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { return };
                let story = Story::generate(seed);
                let twice = options.determinism_every > 0 && seed % options.determinism_every == 0;
                let started = std::time::Instant::now();
                let result =
                    try_story(&story, options, twice).map(|(failures, secs)| SeedOutcome {
                        seed,
                        story,
                        simulated_seconds: secs,
                        wall_seconds: started.elapsed().as_secs_f64(),
                        failures,
                    });
                if tx.send((i, result)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut shown = 0;
        for (i, result) in rx {
            match result {
                Ok(o) => {
                    outcomes.insert(i, o);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            while let Some(o) = outcomes.get(&shown) {
                progress(o);
                shown += 1;
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut campaign = Campaign::default();
    for o in outcomes.values() {
        campaign.seeds += 1;
        campaign.simulated_seconds += o.simulated_seconds;
        for k in o.story.kinds() {
            *campaign.kinds.entry(k).or_default() += 1;
        }
    }
    // Findings shrink on every job at once: each shrink replays its story up to `shrink_runs` times.
    let failing: Vec<&SeedOutcome> = outcomes
        .values()
        .filter(|o| !o.failures.is_empty())
        .collect();
    campaign.failed = failing.len() as u64;
    for finding in in_parallel(&failing, jobs, |o| make_finding(o, options)) {
        campaign.findings.push(finding?);
    }
    campaign.wall_seconds = started.elapsed().as_secs_f64();
    Ok(campaign)
}

/// `work` applied to every item on `jobs` threads; the results in the items' order.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return mine;
                        };
                        mine.push((i, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Why shard files could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file is not a shard result.
    #[error("{path} is not a `sim explore --shard` result: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// Add up shard result files.
pub fn merge(files: &[impl AsRef<Path>]) -> Result<Campaign, MergeError> {
    let mut all = Campaign::default();
    for f in files {
        let path = f.as_ref();
        let text = std::fs::read(path).map_err(|source| MergeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let part: Campaign = serde_json::from_slice(&text).map_err(|source| MergeError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        all.absorb(part);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_in_parallel_comes_back_in_order_whatever_the_jobs() {
        let items: Vec<u64> = (0..37).collect();
        for jobs in [1, 2, 5, 100] {
            let out = in_parallel(&items, jobs, |n| n * n);
            assert_eq!(out, items.iter().map(|n| n * n).collect::<Vec<_>>());
        }
        assert!(in_parallel(&[] as &[u64], 4, |n| *n).is_empty());
    }
}
