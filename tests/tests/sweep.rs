//! Crash sweeps of the headline story: the leecher of `resume.toml` crashed at 50 instants of its download
//! (between a checkpoint's two disk trips, after unsynced writes, and spread evenly) always resumes from what
//! its checkpoint made durable and finishes byte-identical; and the sweep catches a deliberately broken
//! checkpoint ordering (checkpoint written before its data is synced).

use enjambre_sim::sweep::Aim;
use enjambre_sim::{sweep, Scenario, SweepOptions};
use std::path::Path;

fn resume() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/resume.toml");
    Scenario::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn resume_survives_a_crash_at_fifty_instants() {
    let started = std::time::Instant::now();
    let options = SweepOptions {
        points: 50,
        ..SweepOptions::default()
    };
    let report = sweep(&resume(), &options, &mut |p| eprintln!("{}", p.line())).unwrap();
    eprintln!(
        "50-point sweep of resume.toml: {:.1} s wall",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report.peer, "leecher");
    assert_eq!(report.points.len(), 50);
    let failed: Vec<String> = report.failed().map(|p| p.line()).collect();
    assert!(
        failed.is_empty(),
        "failed crash points:\n{}",
        failed.join("\n")
    );
    assert!(report.baseline_failures.is_empty());
    assert!(report.passed);
    let aimed = |aim| report.points.iter().filter(|p| p.point.aim == aim).count();
    assert!(aimed(Aim::MidCheckpoint) >= 10, "mid-checkpoint crashes");
    assert!(aimed(Aim::MidWrite) >= 10, "mid-write crashes");
    for p in &report.points {
        assert!(p.crashed, "{}", p.line());
        let resumed = p.resumed.expect("the leecher came back");
        assert!(resumed.pieces >= resumed.checkpointed, "{}", p.line());
    }
}

#[test]
fn sweep_catches_a_checkpoint_written_before_its_data_is_synced() {
    let options = SweepOptions {
        points: 8,
        unsafe_checkpoint_before_sync: true,
        ..SweepOptions::default()
    };
    let report = sweep(&resume(), &options, &mut |p| eprintln!("{}", p.line())).unwrap();
    assert!(!report.passed, "the broken ordering went unnoticed");
    let caught: Vec<_> = report
        .failed()
        .filter(|p| p.failures.iter().any(|f| f.contains("INVARIANT 2 BROKEN")))
        .collect();
    assert!(!caught.is_empty(), "no crash point reported invariant 2");
    assert!(
        caught.iter().any(|p| p.point.aim == Aim::MidCheckpoint),
        "the crashes aimed between the checkpoint and its sync catch it"
    );
}
