//! `sim`: replay a swarm story in the deterministic simulator.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use enjambre_sim::{run, RunOptions, Scenario};
use std::path::{Path, PathBuf};

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
    /// Run one scenario and tell its story.
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Seed to use instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Print every protocol event with its simulated time.
        #[arg(long)]
        trace: bool,
        /// Print a machine-readable JSON report instead of the story.
        #[arg(long)]
        json: bool,
    },
    /// Run every scenario in a folder.
    Check {
        /// Folder of scenario files.
        dir: PathBuf,
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
        eprintln!("cannot write output: {e}");
        std::process::exit(1);
    }
}

fn load(path: &Path) -> Result<Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Scenario::from_toml(&text)
        .with_context(|| format!("{} is not a valid scenario", path.display()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            seed,
            trace,
            json,
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
            if !report.passed {
                bail!("scenario {} failed its expectations", scenario.name);
            }
        }
        Command::Check { dir } => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            let mut failed = Vec::new();
            let started = std::time::Instant::now();
            for f in &files {
                let scenario = load(f)?;
                let report = run(&scenario, &RunOptions::default())?;
                out(&format!(
                    "{} {:<16} {:>8.1} sim s {:>7.2} wall s\n",
                    if report.passed { "PASS" } else { "FAIL" },
                    scenario.name,
                    report.simulated_seconds,
                    report.wall_seconds
                ));
                if !report.passed {
                    failed.push(scenario.name.clone());
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
        }
    }
    Ok(())
}
