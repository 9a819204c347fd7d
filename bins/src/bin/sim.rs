//! `sim`: replay a swarm story in the deterministic simulator.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use enjambre_sim::explore::{merge, Campaign};
use enjambre_sim::trace_filter::TraceFilter;
use enjambre_sim::{
    explore, run, sweep, timeline, ExploreOptions, Progress, ProgressSink, RunOptions, Scenario,
    SweepOptions,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// mimalloc rather than the system allocator: a simulated crowd allocates and frees a few buffers per message
/// (a 1,000-peer story sends millions), and mimalloc's per-thread free lists cut the simulator's CPU by about a
/// fifth with reports unchanged (bench/RESULTS.md, issue 13, seventh pass). Only this binary: the `peer` and
/// `tracker` keep the system allocator, whose memory figures the benchmarks record.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sim",
    about = "Replay BitTorrent swarm stories with scripted faults, bit for bit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario, tell its story and judge its expectations (exit 1 if one fails).
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Seed to use instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Print every protocol event with its simulated time (the teaching view).
        #[arg(long)]
        trace: bool,
        /// Print a machine-readable JSON report instead of the story.
        #[arg(long)]
        json: bool,
        /// Also draw the story's timeline as an SVG picture into OUT.svg.
        #[arg(long, value_name = "OUT.svg")]
        svg: Option<PathBuf>,
        /// Also write a self-contained HTML page: the timeline beside the searchable log (with `--trace`,
        /// every protocol message).
        #[arg(long, value_name = "OUT.html")]
        html: Option<PathBuf>,
        /// Trace only this peer's messages, as it sends and receives them (only it records them, so a
        /// large story costs about what it costs untraced; a group name keeps every member). Repeatable;
        /// implies `--trace`.
        #[arg(long, value_name = "PEER")]
        trace_peer: Vec<String>,
        /// Trace only messages about this piece. Repeatable; implies `--trace`.
        #[arg(long, value_name = "INDEX")]
        trace_piece: Vec<u32>,
        /// Trace only this kind of message (`request`, `piece`, `have`, `unchoke`, ..., `verified`, `metadata`, `pex`, `dht`).
        /// Repeatable; implies `--trace`.
        #[arg(long, value_name = "KIND")]
        trace_kind: Vec<String>,
        /// Self-test: write checkpoints before syncing their data (replays a story `sim explore` shrank).
        #[arg(long)]
        unsafe_checkpoint_before_sync: bool,
        /// Self-test: never ban a peer that sends bad data (replays a story `sim explore` shrank).
        #[arg(long)]
        unsafe_never_ban: bool,
    },
    /// Run every scenario (*.toml) in a folder, one line each (exit 1 if any fails).
    Check {
        /// Folder of scenario files.
        dir: PathBuf,
        /// Seed to use instead of each scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Also compare each scenario's summary with the snapshot `NAME.snap` beside it (insta's format:
        /// `cargo insta review` works on it); a difference fails with a diff.
        #[arg(long)]
        snapshots: bool,
        /// With `--snapshots`: write new or changed snapshots instead of failing on them.
        #[arg(long, requires = "snapshots")]
        update: bool,
    },
    /// Generate random fault stories from seeds, check what must hold in every one, and shrink each failure
    /// to a scenario file that `sim run` replays (exit 1 on any finding).
    Explore {
        /// Run seeds 0 to N-1.
        #[arg(long, value_name = "N", conflicts_with_all = ["from", "merge"])]
        seeds: Option<u64>,
        /// First seed.
        #[arg(long, value_name = "S", requires = "to")]
        from: Option<u64>,
        /// Last seed (inclusive).
        #[arg(long, value_name = "E", requires = "from")]
        to: Option<u64>,
        /// Runs in parallel (default: one per core).
        #[arg(long, value_name = "J", default_value_t = 0)]
        jobs: usize,
        /// Folder for shrunk stories (and, with --shard, the shard's result file).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run the I-th of N slices of the seeds (0-based) and write `DIR/shard-I-of-N.json` for --merge.
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<(u64, u64)>,
        /// Add up shard result files instead of running seeds.
        #[arg(long, value_name = "FILES", num_args = 1..)]
        merge: Vec<PathBuf>,
        /// Most runs spent shrinking one failure.
        #[arg(long, value_name = "N", default_value_t = 80)]
        shrink_runs: usize,
        /// Print only failures and the summary.
        #[arg(long, short)]
        quiet: bool,
        /// Self-test: write checkpoints before syncing their data (invariant 2 broken: must be found).
        #[arg(long)]
        unsafe_checkpoint_before_sync: bool,
        /// Self-test: never ban a peer that sends bad data (invariant 4 broken: must be found).
        #[arg(long)]
        unsafe_never_ban: bool,
    },
    /// Rerun a story crashing one peer at many instants of its download, restarting it a second later, and
    /// fail on any broken expectation or invariant (exit 1).
    Sweep {
        /// The scenario file (TOML).
        file: PathBuf,
        /// How many crash instants to try.
        #[arg(long, value_name = "N")]
        crash_points: usize,
        /// The peer to crash (default: the first peer that downloads something).
        #[arg(long, value_name = "NAME")]
        peer: Option<String>,
        /// Seed to use instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Runs in parallel (default: one per core).
        #[arg(long, value_name = "N", default_value_t = 0)]
        jobs: usize,
        /// Print a machine-readable JSON report instead of one line per crash point.
        #[arg(long)]
        json: bool,
        /// Self-test: write checkpoints before syncing their data (a broken ordering the sweep must catch).
        #[arg(long)]
        unsafe_checkpoint_before_sync: bool,
    },
    /// The DHT story: NODES mainline DHT nodes join, some never answer, some leave and are replaced, and
    /// random lookups are timed (hop counts and latency against O(log n) and published measurements).
    Dht {
        /// Nodes joining at the start.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Lookups to time.
        #[arg(long, default_value_t = 200)]
        lookups: usize,
        /// Share of nodes that never answer (0 to 1).
        #[arg(long, default_value_t = 0.1)]
        silent: f64,
        /// Share of nodes that leave during the lookups, each replaced by a newcomer (0 to 1).
        #[arg(long, default_value_t = 0.1)]
        churn: f64,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print every KRPC query and answer of the timed lookups.
        #[arg(long)]
        trace: bool,
    },
}

fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not I/N"))?;
    let (i, n): (u64, u64) = (
        i.parse().map_err(|_| format!("{i:?} is not a number"))?,
        n.parse().map_err(|_| format!("{n:?} is not a number"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

fn out_line(text: &str) {
    out(&format!("{text}\n"));
}

fn finish_campaign(campaign: &Campaign) -> Result<()> {
    out(&campaign.summary());
    if !campaign.findings.is_empty() {
        bail!(
            "{} of {} seeds broke a property",
            campaign.failed,
            campaign.seeds
        );
    }
    Ok(())
}

/// Write to stdout; a reader that went away (`sim ... | head`) ends the program quietly instead of panicking.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sim: cannot write output: {e}");
        std::process::exit(1);
    }
}

fn load(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path).with_context(|| match same_name_below(path) {
        Some(found) => format!(
            "cannot read {} (did you mean {}?)",
            path.display(),
            found.display()
        ),
        None => format!("cannot read {}", path.display()),
    })?;
    Scenario::from_toml(&text)
        .with_context(|| format!("{} is not a valid scenario", path.display()))
}

/// A file with `missing`'s name one folder below `missing`'s folder (`scenarios/flash-crowd-10000.toml` is
/// `scenarios/scale/flash-crowd-10000.toml`): the hint for a path typed one folder too high.
fn same_name_below(missing: &Path) -> Option<PathBuf> {
    let name = missing.file_name()?;
    let parent = match missing.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join(name)))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// On a terminal, a sink that keeps one line of stderr up to date while a long run goes (simulated time,
/// peers complete, pieces held), and a flag saying whether it wrote anything (to clear it after). Elsewhere
/// (pipes, tests, CI logs) no sink: nothing is written.
fn progress_line() -> (ProgressSink, Arc<AtomicBool>) {
    use std::io::IsTerminal;
    let shown = Arc::new(AtomicBool::new(false));
    if !std::io::stderr().is_terminal() {
        return (ProgressSink::default(), shown);
    }
    let started = std::time::Instant::now();
    let flag = shown.clone();
    let sink = ProgressSink::new(move |p: &Progress| {
        let share = if p.pieces_total > 0 {
            100.0 * p.pieces as f64 / p.pieces_total as f64
        } else {
            0.0
        };
        eprint!(
            "\r\x1b[Ksim: {:.1} simulated s, {}/{} peers complete, {share:.0}% of pieces held, {:.0} s",
            p.simulated.as_secs_f64(),
            p.complete,
            p.peers,
            started.elapsed().as_secs_f64()
        );
        flag.store(true, Ordering::Relaxed);
    });
    (sink, shown)
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            seed,
            trace,
            json,
            svg,
            html,
            trace_peer,
            trace_piece,
            trace_kind,
            unsafe_checkpoint_before_sync,
            unsafe_never_ban,
        } => {
            let scenario = load(&file)?;
            let trace_filter = TraceFilter {
                peers: trace_peer,
                pieces: trace_piece,
                kinds: trace_kind,
            };
            let trace = trace || !trace_filter.is_empty();
            let (progress, shown) = progress_line();
            let report = run(
                &scenario,
                &RunOptions {
                    seed,
                    trace,
                    trace_filter,
                    unsafe_checkpoint_before_sync,
                    unsafe_never_ban,
                    progress,
                    ..RunOptions::default()
                },
            );
            if shown.load(std::sync::atomic::Ordering::Relaxed) {
                eprint!("\r\x1b[K");
            }
            let report = report?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&report)?));
            } else {
                out(&report.render(trace));
            }
            if let Some(path) = svg {
                std::fs::write(&path, timeline::render_svg(&report))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = html {
                std::fs::write(&path, timeline::render_html(&report, trace))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if !report.passed {
                bail!("scenario {} failed its expectations", scenario.name);
            }
        }
        Command::Check {
            dir,
            seed,
            snapshots,
            update,
        } => check(&dir, seed, snapshots.then_some(update))?,
        Command::Explore {
            seeds,
            from,
            to,
            jobs,
            out,
            shard,
            merge: files,
            shrink_runs,
            quiet,
            unsafe_checkpoint_before_sync,
            unsafe_never_ban,
        } => {
            let campaign = if files.is_empty() {
                let (from, to) = match (seeds, from, to) {
                    (Some(0), _, _) => bail!("--seeds must be at least 1"),
                    (Some(n), _, _) => (0, n - 1),
                    (None, Some(f), Some(t)) => (f, t),
                    _ => bail!("say which seeds: --seeds N, or --from S --to E"),
                };
                if shard.is_some() && out.is_none() {
                    bail!("--shard writes its result into --out DIR: name one");
                }
                let options = ExploreOptions {
                    from,
                    to,
                    jobs,
                    shard,
                    out: out.clone(),
                    shrink_runs,
                    determinism_every: 10,
                    unsafe_checkpoint_before_sync,
                    unsafe_never_ban,
                };
                let campaign = explore(&options, &mut |o| {
                    if !quiet || !o.failures.is_empty() {
                        out_line(&o.line());
                    }
                })?;
                if let (Some((i, n)), Some(dir)) = (shard, &out) {
                    let path = dir.join(format!("shard-{i}-of-{n}.json"));
                    std::fs::create_dir_all(dir)
                        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&campaign)?))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    out_line(&format!("shard result: {}", path.display()));
                }
                campaign
            } else {
                merge(&files)?
            };
            finish_campaign(&campaign)?;
        }
        Command::Dht {
            nodes,
            lookups,
            silent,
            churn,
            seed,
            trace,
        } => {
            let story = enjambre_sim::dht_sim::DhtStory {
                nodes: nodes.max(2),
                lookups,
                silent_share: silent,
                churn_share: churn,
                seed,
                trace,
                ..Default::default()
            };
            out(&enjambre_sim::dht_sim::run_dht_story(&story).render());
        }
        Command::Sweep {
            file,
            crash_points,
            peer,
            seed,
            jobs,
            json,
            unsafe_checkpoint_before_sync,
        } => {
            let scenario = load(&file)?;
            let options = SweepOptions {
                points: crash_points,
                peer,
                seed,
                unsafe_checkpoint_before_sync,
                jobs,
            };
            let started = std::time::Instant::now();
            let report = sweep(&scenario, &options, &mut |p| {
                if !json {
                    out(&format!("{}\n", p.line()));
                }
            })?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&report)?));
            } else {
                for f in &report.baseline_failures {
                    out(&format!("FAIL baseline run (no extra crash): {f}\n"));
                }
                let failed = report.failed().count();
                out(&format!(
                    "sweep of {} (seed {}): crashed {} at {} instants between {:.3}s and {:.3}s \
                     (baseline disk trips: {} writes, {} syncs, {} checkpoints); {} passed, {} failed; {:.1} s\n",
                    report.scenario,
                    report.seed,
                    report.peer,
                    report.points.len(),
                    report.window_start.as_secs_f64(),
                    report.window_end.as_secs_f64(),
                    report.trips.writes,
                    report.trips.syncs,
                    report.trips.checkpoints,
                    report.points.len() - failed,
                    failed,
                    started.elapsed().as_secs_f64()
                ));
            }
            if !report.passed {
                bail!("the crash sweep of {} found failures", scenario.name);
            }
        }
    }
    Ok(())
}

/// Run every scenario of `dir`; with `snapshots` (`Some(update)`), compare each summary with its snapshot.
fn check(dir: &Path, seed: Option<u64>, snapshots: Option<bool>) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no scenario files (*.toml) in {}", dir.display());
    }
    let mut failed = Vec::new();
    let started = std::time::Instant::now();
    for f in &files {
        let label = f.file_stem().map_or_else(
            || f.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let outcome = load(f).and_then(|scenario| {
            run(
                &scenario,
                &RunOptions {
                    seed,
                    ..RunOptions::default()
                },
            )
            .map_err(anyhow::Error::from)
        });
        match outcome {
            Ok(report) => {
                out(&format!(
                    "{} {:<16} {:>8.1} sim s {:>7.2} wall s\n",
                    if report.passed { "PASS" } else { "FAIL" },
                    label,
                    report.simulated_seconds,
                    report.wall_seconds
                ));
                for v in report.verdicts.iter().filter(|v| !v.ok) {
                    out(&format!("     {} — {}\n", v.expectation, v.seen));
                }
                for v in &report.violations {
                    out(&format!("     {v}\n"));
                }
                let mut ok = report.passed;
                if let Some(update) = snapshots {
                    use enjambre_sim::snapshot::{compare, SnapshotOutcome};
                    match compare(f, &report, update)
                        .with_context(|| format!("snapshot of {}", f.display()))?
                    {
                        SnapshotOutcome::Matched => {}
                        SnapshotOutcome::Created(p) => {
                            out(&format!("     new snapshot {}\n", p.display()))
                        }
                        SnapshotOutcome::Updated(p) => {
                            out(&format!("     updated snapshot {}\n", p.display()))
                        }
                        SnapshotOutcome::Differs { diff, pending } => {
                            ok = false;
                            out(&format!(
                                "     SNAPSHOT DIFFERS (new one in {}; accept with --update or `cargo insta review`):\n",
                                pending.display()
                            ));
                            for line in diff.lines() {
                                out(&format!("       {line}\n"));
                            }
                        }
                    }
                }
                if !ok {
                    failed.push(label);
                }
            }
            Err(e) => {
                out(&format!("FAIL {label:<16} {e:#}\n"));
                failed.push(label);
            }
        }
    }
    out(&format!(
        "{} scenarios, {} failed, {:.1} s\n",
        files.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    ));
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
