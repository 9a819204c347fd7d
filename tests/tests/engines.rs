//! Cross-engine agreement: every shipped scenario that both engines can run (no packet-level faults, no
//! crashes, no disk faults) runs on turmoil and on the flow engine. The verdicts must match and the
//! completion times agree within 15% (mean and last completion). Prints the table (`--nocapture`).

use enjambre_sim::flow::runner::unsupported;
use enjambre_sim::scenario::NetworkModel;
use enjambre_sim::{run, Report, RunOptions, Scenario};
use std::path::Path;

/// Largest relative difference allowed between the engines' completion times.
const TOLERANCE: f64 = 0.15;

fn load(path: &Path) -> Scenario {
    let text = std::fs::read_to_string(path).unwrap();
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn completions(r: &Report) -> Vec<f64> {
    r.peers
        .iter()
        .flat_map(|p| p.files.iter().filter_map(|f| f.completed_at))
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn last(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn relative(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.max(b)
    }
}

#[test]
fn both_engines_agree_on_every_shipped_scenario_they_can_both_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut rows = vec![format!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  verdicts",
        "scenario", "mean tm", "mean flow", "diff", "last tm", "last flow", "diff"
    )];
    let mut failures = Vec::new();
    let mut compared = 0;
    for path in paths {
        let mut scenario = load(&path);
        let name = scenario.name.clone();
        // Flow-only scenarios (the 1,000-peer benchmark) have no turmoil run to agree with.
        if scenario.network.model == NetworkModel::Flow {
            continue;
        }
        if let Some(why) = unsupported(&scenario) {
            rows.push(format!("{name:<18} skipped: {why}"));
            continue;
        }
        let turmoil = run(&scenario, &RunOptions::default()).unwrap();
        scenario.network.model = NetworkModel::Flow;
        let flow = run(&scenario, &RunOptions::default()).unwrap();
        compared += 1;
        let verdicts = |r: &Report| -> Vec<(String, bool)> {
            r.verdicts
                .iter()
                .map(|v| (v.expectation.clone(), v.ok))
                .collect()
        };
        let same = verdicts(&turmoil) == verdicts(&flow) && turmoil.passed == flow.passed;
        let (ct, cf) = (completions(&turmoil), completions(&flow));
        let (dm, dl) = (
            relative(mean(&ct), mean(&cf)),
            relative(last(&ct), last(&cf)),
        );
        rows.push(format!(
            "{name:<18} {:>9.2} {:>9.2} {:>8.1}% {:>9.2} {:>9.2} {:>8.1}%  {}",
            mean(&ct),
            mean(&cf),
            dm * 100.0,
            last(&ct),
            last(&cf),
            dl * 100.0,
            if same { "same" } else { "DIFFER" }
        ));
        if !same {
            failures.push(format!(
                "{name}: verdicts differ\nturmoil:\n{}\nflow:\n{}",
                turmoil.render(false),
                flow.render(false)
            ));
        }
        if ct.len() != cf.len() || dm > TOLERANCE || dl > TOLERANCE {
            failures.push(format!(
                "{name}: completions differ ({} vs {} completed; mean {dm:.3}, last {dl:.3})",
                ct.len(),
                cf.len()
            ));
        }
    }
    println!("{}", rows.join("\n"));
    assert!(
        compared >= 3,
        "too few scenarios compared:\n{}",
        rows.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
