//! The binaries start and describe themselves. Being an integration test of this package, this also makes
//! `cargo test --workspace` build `tracker` and `peer`, which the end-to-end tests in `tests/` run.

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
