//! A download whose preparation meets a full disk (the `.torrent` cannot be saved in the state folder) waits
//! for space and then downloads, as a download stopped by a failed write does (found by `sim explore`).

mod common;

use common::{complete_and_durable, peer_options, shared_file, wait_for_stats};
use enjambre_core::node::NodeEvent;
use enjambre_net::peer::{AddMode, EventSink, Peer, PeerEnv, PeerOptions};
use enjambre_net::storage::testing::{Fault, Op, Scratch, ScriptedStorage};
use enjambre_net::storage::{StdStorage, ThreadPool};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Peer `n`'s options, with a disk backoff of 20 to 100 ms and its events told to `events`.
fn options(dir: PathBuf, n: u8, events: Option<EventSink>) -> PeerOptions {
    let mut options = peer_options(dir, n);
    options.node.disk_retry_base = Duration::from_millis(20);
    options.node.disk_retry_max = Duration::from_millis(100);
    options.events = events;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_waits_for_disk_space_to_save_its_torrent_then_completes() {
    let seed_dir_scratch = Scratch::new("prepare", "seed");
    let seed_dir = seed_dir_scratch.0.clone();
    let leech_dir_scratch = Scratch::new("prepare", "leech");
    let leech_dir = leech_dir_scratch.0.clone();
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let meta = shared_file(&seed_dir, "data.bin", &data, 256 * 1024);
    let (seeder, _) = Peer::start(PeerEnv::real(), options(seed_dir.clone(), 1, None))
        .await
        .expect("seeder starts");
    seeder
        .add(ThreadPool, meta.clone(), AddMode::Seed, None, vec![])
        .await
        .expect("seeder shares");

    // The real filesystem, except that replacing a small file (the state folder's `.torrent` and
    // checkpoints) fails with ENOSPC until the faults are cleared.
    let storage = ScriptedStorage::new(StdStorage);
    storage.fail(Fault::new(Op::ReplaceFile, io::ErrorKind::StorageFull));
    let stalls = Arc::new(Mutex::new(Vec::new()));
    let seen = stalls.clone();
    let sink: EventSink = Arc::new(move |_, e: &NodeEvent| {
        if let NodeEvent::DiskStalled { error, .. } = e {
            seen.lock().expect("events").push(error.disk_error().kind);
        }
    });
    let mut env = PeerEnv::real();
    env.storage = storage.clone();
    let (leecher, _) = Peer::start(env, options(leech_dir.clone(), 2, Some(sink)))
        .await
        .expect("leecher starts");
    let add = tokio::spawn(leecher.add(
        ThreadPool,
        meta.clone(),
        AddMode::Download,
        None,
        vec![seeder.local_addr()],
    ));

    // The disk is full: the download says it is stopped, and the request is still pending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stalls.lock().expect("events").len() < 2 {
        assert!(
            !add.is_finished(),
            "the request ended on a full disk: {:?}",
            add.await
        );
        assert!(tokio::time::Instant::now() < deadline, "no stall reported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stalls
        .lock()
        .expect("events")
        .iter()
        .all(|k| *k == io::ErrorKind::StorageFull));
    assert!(leecher.stats().await.expect("stats").is_empty());

    // Space is freed: the next try prepares the download, which completes.
    storage.clear_faults();
    let hash = tokio::time::timeout(Duration::from_secs(10), add)
        .await
        .expect("added once space is freed")
        .expect("add task")
        .expect("added");
    assert_eq!(hash, meta.info_hash);
    let (within, poll) = (Duration::from_secs(30), Duration::from_millis(20));
    wait_for_stats(&leecher, "stalled", within, poll, complete_and_durable).await;
    assert_eq!(
        std::fs::read(leech_dir.join("data.bin")).expect("downloaded file"),
        data
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
}
