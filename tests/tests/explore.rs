//! The explorer checks itself: each deliberately broken build (`--unsafe-never-ban`: invariant 4 broken;
//! `--unsafe-checkpoint-before-sync`: invariant 2 broken) is caught in a story with noise around the fault
//! that shows it, and the story is shrunk to at most 3 peers and 3 events; the honest build passes the same
//! story.

use enjambre_sim::explore::check::Property;
use enjambre_sim::explore::story::FaultKind;
use enjambre_sim::explore::story::{Fault, Story, StoryFile, StoryPeer};
use enjambre_sim::explore::{shrink_story, try_story};
use enjambre_sim::ExploreOptions;

fn peer(name: &str, has: bool) -> StoryPeer {
    StoryPeer {
        name: name.into(),
        has: if has { vec!["f.bin".into()] } else { vec![] },
        get: if has { vec![] } else { vec!["f.bin".into()] },
        upload_rate: 2_000_000,
        download_rate: None,
        join_ms: None,
        disk_latency_ms: 1,
        disk_free: None,
    }
}

/// Two seeders, one turning corrupt early, three leechers, and faults that have nothing to do with it.
fn noisy_corrupt_story() -> Story {
    Story {
        seed: 5,
        latency_ms: 5,
        files: vec![StoryFile {
            name: "f.bin".into(),
            size: 2 * 1024 * 1024,
            piece_size: 64 * 1024,
            parts: Vec::new(),
        }],
        peers: vec![
            peer("seed0", true),
            peer("seed1", true),
            peer("peer2", false),
            peer("peer3", false),
            peer("peer4", false),
        ],
        faults: vec![
            Fault::TrackerDown {
                at_ms: 300,
                for_ms: 2_000,
            },
            Fault::Corrupt {
                peer: "seed1".into(),
                watch: "peer2".into(),
                percent: 0,
            },
            Fault::Latency {
                peer: "peer3".into(),
                at_ms: 500,
                latency_ms: 40,
            },
        ],
        io_errors: 0.0,
        torn_writes: None,
        writeback: 0.0,
        capacity: None,
    }
}

#[test]
fn never_banning_build_is_caught_and_shrunk_to_three_peers_and_three_events() {
    let story = noisy_corrupt_story();
    let honest = ExploreOptions::default();
    let (failures, _) = try_story(&story, &honest, false).expect("runs");
    assert!(failures.is_empty(), "the honest build fails: {failures:?}");

    let broken = ExploreOptions {
        unsafe_never_ban: true,
        shrink_runs: 40,
        ..ExploreOptions::default()
    };
    let (failures, _) = try_story(&story, &broken, false).expect("runs");
    assert!(
        failures
            .iter()
            .any(|f| f.property == Property::OffenderBanned),
        "the never-ban build was not caught: {failures:?}"
    );
    let (small, still, _runs) =
        shrink_story(&story, Property::OffenderBanned, &broken).expect("shrinks");
    assert!(still.iter().any(|f| f.property == Property::OffenderBanned));
    assert!(
        small.peers.len() <= 3 && small.event_count() <= 3,
        "shrunk only to {} peers and {} events",
        small.peers.len(),
        small.event_count()
    );
    assert!(small.corrupt_peers().contains(&"seed1"));
}

/// One seeder, three leechers; one leecher crashes right after its first checkpoint, among faults that have
/// nothing to do with it.
fn noisy_crash_story() -> Story {
    Story {
        seed: 3,
        latency_ms: 5,
        files: vec![StoryFile {
            name: "f.bin".into(),
            size: 3 * 1024 * 1024,
            piece_size: 64 * 1024,
            parts: Vec::new(),
        }],
        peers: vec![
            StoryPeer {
                disk_latency_ms: 20,
                ..peer("seed0", true)
            },
            StoryPeer {
                disk_latency_ms: 20,
                ..peer("peer1", false)
            },
            peer("peer2", false),
            StoryPeer {
                join_ms: Some(700),
                ..peer("peer3", false)
            },
        ],
        faults: vec![
            Fault::Latency {
                peer: "peer2".into(),
                at_ms: 400,
                latency_ms: 30,
            },
            Fault::CrashAfterCheckpoint {
                peer: "peer1".into(),
                checkpoints: 1,
                down_ms: 500,
            },
            Fault::TrackerDown {
                at_ms: 200,
                for_ms: 1_500,
            },
        ],
        io_errors: 0.0,
        torn_writes: None,
        writeback: 0.0,
        capacity: None,
    }
}

#[test]
fn checkpoint_before_sync_build_is_caught_and_shrunk_to_three_peers_and_three_events() {
    let story = noisy_crash_story();
    let honest = ExploreOptions::default();
    let (failures, _) = try_story(&story, &honest, false).expect("runs");
    assert!(failures.is_empty(), "the honest build fails: {failures:?}");

    let broken = ExploreOptions {
        unsafe_checkpoint_before_sync: true,
        shrink_runs: 40,
        ..ExploreOptions::default()
    };
    let (failures, _) = try_story(&story, &broken, false).expect("runs");
    assert!(
        failures
            .iter()
            .any(|f| f.property == Property::Audit && f.detail.contains("INVARIANT 2 BROKEN")),
        "the checkpoint-before-sync build was not caught: {failures:?}"
    );
    let (small, still, _runs) = shrink_story(&story, Property::Audit, &broken).expect("shrinks");
    assert!(still.iter().any(|f| f.property == Property::Audit));
    assert!(
        small.peers.len() <= 3 && small.event_count() <= 3,
        "shrunk only to {} peers and {} events",
        small.peers.len(),
        small.event_count()
    );
    assert_eq!(small.kinds(), vec![FaultKind::Crash]);
}

/// One seeder of a folder whose three files (one empty, one in a subfolder) do not end on piece
/// boundaries, two leechers, one crashing right after its first checkpoint.
fn folder_story() -> Story {
    let album = |p: StoryPeer| StoryPeer {
        has: p.has.iter().map(|_| "album".to_string()).collect(),
        get: p.get.iter().map(|_| "album".to_string()).collect(),
        ..p
    };
    Story {
        seed: 8,
        latency_ms: 5,
        files: vec![StoryFile {
            name: "album".into(),
            size: 250_001 + 70_000,
            piece_size: 16 * 1024,
            parts: vec![
                ("part0.bin".into(), 250_001),
                ("sub/part1.bin".into(), 0),
                ("part2.bin".into(), 70_000),
            ],
        }],
        peers: vec![
            album(peer("seed0", true)),
            album(peer("peer1", false)),
            album(peer("peer2", false)),
        ],
        faults: vec![Fault::CrashAfterCheckpoint {
            peer: "peer1".into(),
            checkpoints: 1,
            down_ms: 300,
        }],
        io_errors: 0.0,
        torn_writes: None,
        writeback: 0.0,
        capacity: None,
    }
}

#[test]
fn a_folder_is_seeded_fetched_through_a_crash_and_compared_file_by_file() {
    let story = folder_story();
    let (failures, _) = try_story(&story, &ExploreOptions::default(), false).expect("runs");
    assert!(failures.is_empty(), "the folder story fails: {failures:?}");
    let scenario = enjambre_sim::Scenario::from_toml(&story.to_toml("folder", "")).expect("valid");
    let report = enjambre_sim::run(&scenario, &enjambre_sim::RunOptions::default()).expect("runs");
    let identical = report
        .verdicts
        .iter()
        .find(|v| v.kind == "identical")
        .expect("an identical verdict");
    // Two leechers times three files, the empty one included.
    assert!(identical.ok, "{}", identical.seen);
    assert_eq!(identical.seen, "6 downloaded copies identical");
}
