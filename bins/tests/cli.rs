//! The binaries start and describe themselves. Being an integration test of this package, this also makes
//! `cargo test --workspace` build `tracker` and `peer`, which the end-to-end tests in `tests/` run.

use enjambre_net::storage::testing::Scratch;
use std::process::Command;

fn help(bin: &str) -> String {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} --help exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tracker_help() {
    let text = help(env!("CARGO_BIN_EXE_tracker"));
    assert!(text.contains("--listen"), "{text}");
}

#[test]
fn peer_help() {
    let text = help(env!("CARGO_BIN_EXE_peer"));
    assert!(text.contains("--tracker"), "{text}");
}

/// `sim run --svg --html` writes the timeline and the page; the same run twice gives the same bytes.
#[test]
fn sim_run_draws_the_story() {
    let scratch = Scratch::new("sim-cli", "draw");
    let dir = &scratch.0;
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/resume.toml");
    let draw = |n: u32| {
        let (svg, html) = (dir.join(format!("{n}.svg")), dir.join(format!("{n}.html")));
        let out = Command::new(env!("CARGO_BIN_EXE_sim"))
            .arg("run")
            .arg(scenario)
            .arg("--svg")
            .arg(&svg)
            .arg("--html")
            .arg(&html)
            .output()
            .expect("run sim");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            std::fs::read_to_string(svg).expect("svg written"),
            std::fs::read_to_string(html).expect("html written"),
        )
    };
    let (svg, html) = draw(1);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains(">resumes at piece 37 (37 kept)<"), "{svg}");
    assert!(html.starts_with("<!doctype html>") && html.contains(&svg));
    assert!(
        html.contains("CRASH (unsynced writes are lost)"),
        "the story is beside it"
    );
    assert_eq!(draw(2), (svg, html), "same scenario and seed, same bytes");
}

/// A scenario path typed one folder too high fails with the path that exists, not only "No such file".
#[test]
fn sim_run_names_the_scenario_one_folder_down() {
    let missing = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/flash-crowd-10000.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sim"))
        .arg("run")
        .arg(missing)
        .output()
        .expect("run sim");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did you mean") && err.contains("scenarios/scale/flash-crowd-10000.toml"),
        "{err}"
    );
}
