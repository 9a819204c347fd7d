//! Every shipped scenario passes in the simulator, and its verdicts, final swarm state and story are pinned by
//! an insta snapshot (YAML, sorted maps): a change in behaviour shows up as a changed snapshot. Also the
//! determinism check: the same scenario and seed give the same trace, byte for byte.

use enjambre_sim::{run, Report, RunOptions, Scenario};
use std::path::{Path, PathBuf};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn load(name: &str) -> Scenario {
    let path = scenarios_dir().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_with(name: &str, options: &RunOptions) -> Report {
    let scenario = load(name);
    let report = run(&scenario, options).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {:.1} simulated s in {:.2} wall s",
        report.simulated_seconds, report.wall_seconds
    );
    report
}

/// Run a shipped scenario, require it to pass, and compare its summary with the committed snapshot.
fn check(name: &str) {
    let report = run_with(name, &RunOptions::default());
    assert!(
        report.passed,
        "scenario {name} failed:\n{}",
        report.render(false)
    );
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!(name, report.summary());
    });
}

/// The scenarios tested below; a scenario file added to `scenarios/` must be added here too.
const SHIPPED: [&str; 9] = [
    "corrupt-peer",
    "flash-crowd",
    "multi-source",
    "partition",
    "resume",
    "seeder-loss",
    "six-files",
    "tracker-restart",
    "udp-tracker",
];

#[test]
fn every_scenario_file_has_a_snapshot_test() {
    let mut found: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            if path.extension()? != "toml" {
                return None;
            }
            Some(path.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    found.sort();
    assert_eq!(
        found, SHIPPED,
        "scenarios/ and the tests in scenarios.rs differ"
    );
}

#[test]
fn corrupt_peer() {
    check("corrupt-peer");
}

#[test]
fn flash_crowd() {
    check("flash-crowd");
}

#[test]
fn multi_source() {
    check("multi-source");
}

#[test]
fn partition() {
    check("partition");
}

#[test]
fn resume() {
    check("resume");
}

#[test]
fn seeder_loss() {
    check("seeder-loss");
}

#[test]
fn six_files() {
    check("six-files");
}

#[test]
fn tracker_restart() {
    check("tracker-restart");
}

#[test]
fn udp_tracker() {
    check("udp-tracker");
}

/// Invariant 6: the same scenario and seed give the same trace (every protocol message, with simulated times)
/// byte for byte; another seed tells another story.
#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let traced = |seed: Option<u64>| {
        let report = run_with(
            "corrupt-peer",
            &RunOptions {
                seed,
                trace: true,
                ..RunOptions::default()
            },
        );
        let trace = report.story_lines(true).join("\n");
        let json = serde_json::to_string(&report).unwrap();
        (trace, json)
    };
    let (trace_a, json_a) = traced(None);
    let (trace_b, json_b) = traced(None);
    assert!(
        trace_a.lines().count() > 1000,
        "the trace holds every protocol message"
    );
    assert!(trace_a.contains("-> seeder-a request piece"));
    assert!(trace_a == trace_b, "two runs with the same seed differ");
    assert!(
        json_a == json_b,
        "two JSON reports with the same seed differ"
    );
    let (trace_c, _) = traced(Some(load("corrupt-peer").seed + 1));
    assert!(trace_a != trace_c, "another seed gave the same trace");
}
