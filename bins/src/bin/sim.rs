//! `sim`: replay a swarm story in the deterministic simulator.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use enjambre_sim::{run, sweep, timeline, RunOptions, Scenario, SweepOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    },
    /// Run every scenario (*.toml) in a folder, one line each (exit 1 if any fails).
    Check {
        /// Folder of scenario files.
        dir: PathBuf,
        /// Seed to use instead of each scenario's.
        #[arg(long)]
        seed: Option<u64>,
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
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Scenario::from_toml(&text)
        .with_context(|| format!("{} is not a valid scenario", path.display()))
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
        } => {
            let scenario = load(&file)?;
            let report = run(
                &scenario,
                &RunOptions {
                    seed,
                    trace,
                    ..RunOptions::default()
                },
            )?;
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
        Command::Check { dir, seed } => check(&dir, seed)?,
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

fn check(dir: &Path, seed: Option<u64>) -> Result<()> {
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
                if !report.passed {
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
