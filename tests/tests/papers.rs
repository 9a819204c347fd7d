//! The papers' scenarios, scaled to run in tests (`scenarios/papers/`; the 1,000-node versions are in
//! `scenarios/scale/`): each must pass, and its verdicts and swarm measures (without the time series) must
//! match the insta snapshot `papers-NAME` (a whole summary of 100 peers' stories is 3 MB). The findings
//! `scenarios/papers/README.md` reports are asserted from the same runs' measures.

use enjambre_sim::measures::SwarmMeasures;
use enjambre_sim::{run, Report, RunOptions, Scenario};
use std::path::{Path, PathBuf};

fn papers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/papers")
}

/// Run `scenarios/papers/NAME.toml`, require it to pass and to match its snapshot; return its report.
fn check(name: &str) -> Report {
    let path = papers_dir().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let scenario = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let report: Report =
        run(&scenario, &RunOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {:.1} simulated s in {:.2} wall s",
        report.simulated_seconds, report.wall_seconds
    );
    assert!(report.passed, "{name} failed:\n{}", report.render(false));
    let mut measures = serde_json::to_value(&report.measures).expect("measures serialize");
    if let Some(m) = measures.as_object_mut() {
        m.remove("utilisation_over_time");
        m.remove("copies_over_time");
    }
    let pinned = serde_json::json!({
        "scenario": report.scenario,
        "passed": report.passed,
        "simulated_seconds": report.simulated_seconds,
        "verdicts": report.verdicts,
        "measures": measures,
    });
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!(format!("papers-{name}"), pinned);
    });
    report
}

/// The swarm measures of a report.
fn measures(report: &Report) -> &SwarmMeasures {
    report
        .measures
        .as_ref()
        .expect("the papers' scenarios have swarm measures")
}

/// Mean payload received over payload sent by the class whose name starts with `class`.
fn received_over_sent(m: &SwarmMeasures, class: &str) -> f64 {
    let (_, c) = m
        .class_bytes
        .iter()
        .find(|(name, _)| name.starts_with(class))
        .unwrap_or_else(|| panic!("no class {class}"));
    c.received as f64 / c.sent.max(1) as f64
}

#[test]
fn bharambe_flash_crowd_uses_the_uplinks_and_the_slow_class_takes_more_than_it_gives() {
    let report = check("bharambe-100");
    let m = measures(&report);
    // "Near-optimal upload utilisation": most of the capacity of peers that have what a neighbour wants.
    assert!(
        m.utilisation.is_some_and(|u| u >= 0.8),
        "{:?}",
        m.utilisation
    );
    // Rate-based tit-for-tat does not stop the 128 kbps class from downloading more than it uploads.
    let slow = received_over_sent(m, "leecher up 16 KB/s");
    assert!(
        slow > 2.0,
        "the slowest class received {slow:.2}x what it sent"
    );
}

#[test]
fn bharambe_flash_crowd_with_random_piece_selection() {
    let report = check("bharambe-100-random");
    let m = measures(&report);
    // Random selection keeps most of the uplinks busy too, a little less than rarest-first (0.80 against 0.88
    // on main at 89d96e4): a peer more often has nothing its neighbours lack.
    assert!(
        m.utilisation.is_some_and(|u| u >= 0.75),
        "{:?}",
        m.utilisation
    );
}

#[test]
fn bharambe_flash_crowd_with_a_scarce_seed() {
    check("bharambe-100-scarce-seed");
}

#[test]
fn bharambe_flash_crowd_with_a_scarce_seed_and_random_piece_selection() {
    check("bharambe-100-scarce-seed-random");
}

/// Bharambe et al.'s finding that piece selection matters when the seed is scarce, in the paper's setting: a
/// seed that only answers requests. Rarest first then gets the seed's first copy out sooner than random
/// selection: the seed is asked for pieces the crowd lacks, where random selection asks it for pieces some
/// node already holds (shipped seed: 271 against 342 s; seeds 1-4 in scenarios/papers/README.md). The last
/// completion also comes sooner on average over seeds (493 against 613 s), but one seed's spread is wide, so
/// it is not asserted on one seed. With the seed's suggestions, the default, the first copies come out
/// together (the stories above).
#[test]
fn with_a_scarce_seed_that_does_not_suggest_rarest_first_sends_the_first_copy_sooner() {
    let rarest = check("bharambe-100-scarce-seed-no-suggestions");
    let random = check("bharambe-100-scarce-seed-random-no-suggestions");
    let (rarest, random) = (measures(&rarest), measures(&random));
    let first_copy = |m: &SwarmMeasures| m.seed_copy_seconds.unwrap_or(f64::INFINITY);
    assert!(
        first_copy(rarest) < 0.95 * first_copy(random),
        "the seed's first copy: {:?} s with rarest first, {:?} s with random",
        rarest.seed_copy_seconds,
        random.seed_copy_seconds
    );
}

/// Qiu and Srikant's steady-state mean download time for this story: F/μ − 1/γ with η = 1 (the downlink's F/c
/// is shorter). 4 MiB at 500 KB/s, 4 s of seeding.
const FLUID_MEAN_SECONDS: f64 = 4_194_304.0 / 500_000.0 - 4.0;

#[test]
fn poisson_arrivals_download_in_about_the_fluid_models_mean_time() {
    let report = check("qiu-srikant-200");
    // Each arrival's download, from the moment its download was ready (after the catalog lookup, which the
    // model does not have) to its completion; the first 20 s (the swarm filling up) left out.
    let times: Vec<f64> = report
        .peers
        .iter()
        .filter(|p| p.peer.starts_with("arrivals"))
        .filter_map(|p| {
            let ready = p.resumes.first()?.at.as_secs_f64();
            let done = p.files.first()?.completed_at?;
            (ready >= 20.0).then_some(done - ready)
        })
        .collect();
    assert!(times.len() > 100, "{} steady-state downloads", times.len());
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    // Within 1.5x of the fluid model (its η = 1 is an ideal: the README says what the gap is made of), and
    // never under the downlink's bound F/c = 2.1 s.
    assert!(
        (2.1..=1.5 * FLUID_MEAN_SECONDS).contains(&mean),
        "mean download {mean:.2} s, model {FLUID_MEAN_SECONDS:.2} s"
    );
}
