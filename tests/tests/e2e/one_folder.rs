//! One folder, one owner: a second `peer` on a `--dir` that a running peer owns exits 1 at once, naming the
//! process that holds it, and leaves the first one's files alone; once the first has gone, the folder is free.

use enjambre_tests::bins::{serve, PeerArgs};
use enjambre_tests::files::{write_pattern_file, Scratch};
use enjambre_tests::proc::Proc;
use std::time::Duration;

const NAME: &str = "owned.bin";

#[test]
fn second_peer_on_the_same_folder_exits_naming_the_owner() {
    let scratch = Scratch::new("one-folder");
    let dir = scratch.dir("shared");
    write_pattern_file(&dir.join(NAME), 700_000, 21);
    let args = PeerArgs::new(None, &dir);
    let mut first = serve("first", &scratch, &args, &[NAME]);

    let mut second = Proc::spawn("second", args.command(&["serve"]), scratch.path());
    let status = second.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "the second peer did not exit 1");
    let said = second.stderr_text();
    let owner = format!("process {}", first.proc.pid());
    assert!(
        said.contains(&owner) && said.contains("in use"),
        "the second peer did not name the owner ({owner}): {said}"
    );
    assert!(
        first.proc.is_running(),
        "the owner stopped when a second peer tried its folder"
    );

    first.proc.kill();
    // `serve` panics unless the new peer starts and seeds: the lock died with its owner, even by SIGKILL.
    let _next = serve("next", &scratch, &args, &[NAME]);
}
