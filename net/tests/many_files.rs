//! A folder of many small files served, at a reduced scale of `bench/manyfiles` (300 files instead of
//! 10,050): the first start hashes each file once and publishes all of them (the catalog takes them all), a
//! restart trusts the cached metainfo of files whose length and modification time did not change and reads
//! no byte of them, and a file touched since is checked again (and only that one).

use enjambre_core::tracker::RegistryConfig;
use enjambre_net::app::{
    peer_id_from_seed, AppOptions, GetRequest, PeerApp, ServeEvent, ServeOptions, ServeSink,
    TrackerUrls,
};
use enjambre_net::peer::PeerEnv;
use enjambre_net::storage::testing::{Op, Scratch, ScriptedStorage};
use enjambre_net::storage::{StdStorage, ThreadPool};
use enjambre_net::tracker_server::testing::LocalTracker;
use enjambre_net::transport::TokioTransport;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const FILES: usize = 300;

/// [`StdStorage`] counting what is read.
type Counting = ScriptedStorage<StdStorage>;

/// Bytes read from each payload file (anything outside the state folder) since the last look, by file name.
fn take_payload_reads(storage: &Counting) -> BTreeMap<String, u64> {
    let reads = storage.take(Op::Read).into_iter();
    reads
        .filter(|(path, _)| !path.components().any(|c| c.as_os_str() == ".enjambre"))
        .map(|(path, t)| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                t.bytes,
            )
        })
        .collect()
}

/// How many metainfo files of the state folder were read since the last look.
fn take_metainfo_reads(storage: &Counting) -> u64 {
    let reads = storage.take(Op::ReadFile).into_iter();
    reads
        .filter(|(path, _)| path.extension().is_some_and(|e| e == "torrent"))
        .map(|(_, t)| t.calls)
        .sum()
}

fn name(i: usize) -> String {
    format!("f{i:04}.bin")
}

/// Start a peer on `dir`, serve it with 16 jobs, wait until no torrent is being checked; returns the app
/// and the serve events.
async fn serve(
    dir: &Path,
    tracker: &TrackerUrls,
    reads: &Arc<Counting>,
) -> (PeerApp<TokioTransport, ThreadPool>, Vec<ServeEvent>) {
    let env = PeerEnv {
        storage: reads.clone(),
        ..PeerEnv::real()
    };
    let mut options = AppOptions::new(
        dir.to_path_buf(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(tracker.clone()),
    );
    options.peer.node.peer_id = peer_id_from_seed(1);
    let app = PeerApp::start(env, options).await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink: ServeSink = {
        let events = events.clone();
        Arc::new(move |e: ServeEvent| events.lock().unwrap().push(e))
    };
    let serve = ServeOptions {
        jobs: 16,
        ..ServeOptions::default()
    };
    let served = app.serve_folder(&serve, sink).await.unwrap();
    assert_eq!(served.len(), FILES);
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let stats = app.stats().await.unwrap();
            if stats.len() == FILES && stats.iter().all(|s| s.complete && !s.checking) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "torrents still checking");
    let events = events.lock().unwrap().clone();
    (app, events)
}

/// `(hashed, cached)` counts of the `Seeding` events.
fn seeding(events: &[ServeEvent]) -> (usize, usize) {
    let cached = |c: bool| {
        events
            .iter()
            .filter(|e| matches!(e, ServeEvent::Seeding { cached, .. } if *cached == c))
            .count()
    };
    (cached(false), cached(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_trusts_unchanged_files_and_checks_a_touched_one() {
    let server = LocalTracker::start(RegistryConfig::default(), Default::default())
        .await
        .unwrap();
    let tracker = server.urls();
    let dir_scratch = Scratch::new("many-files", "restart");
    let dir = dir_scratch.0.clone();
    for i in 0..FILES {
        let data: Vec<u8> = (0..10_000 + i).map(|b| (b * 31 + i) as u8).collect();
        std::fs::write(dir.join(name(i)), data).unwrap();
    }
    let reads = ScriptedStorage::new(StdStorage);

    // First start: every file read (hashed) once, all published.
    let (app, events) = serve(&dir, &tracker, &reads).await;
    assert_eq!(seeding(&events), (FILES, 0));
    let first = take_payload_reads(&reads);
    assert_eq!(first.len(), FILES, "every file is hashed");
    for (i, (file, bytes)) in first.iter().enumerate() {
        assert_eq!(
            (file.as_str(), *bytes),
            (name(i).as_str(), (10_000 + i) as u64)
        );
    }
    // The progress of hashing the folder ends at every file and byte.
    let last = events.iter().rev().find_map(|e| match e {
        ServeEvent::HashingFolder {
            files_done,
            files,
            bytes_done,
            bytes,
        } => Some((*files_done, *files, *bytes_done, *bytes)),
        _ => None,
    });
    let total: u64 = (0..FILES).map(|i| (10_000 + i) as u64).sum();
    assert_eq!(last, Some((FILES, FILES, total, total)));
    assert_eq!(server.registry.lock().unwrap().catalog_len(), FILES);
    app.shutdown().await;
    // A peer that stops indexes its state folder (as `peer serve` does on SIGTERM).
    app.save_library_index().await;
    take_metainfo_reads(&reads);

    // Restart: nothing changed, nothing is read, and the state folder's 300 metainfos come from its index.
    let (app, events) = serve(&dir, &tracker, &reads).await;
    assert_eq!(seeding(&events), (0, FILES));
    assert_eq!(
        take_payload_reads(&reads),
        BTreeMap::new(),
        "a restart must not read payload"
    );
    assert_eq!(
        take_metainfo_reads(&reads),
        0,
        "metainfo files read at restart"
    );
    app.shutdown().await;

    // One file touched (same bytes, new modification time): that one is spot-checked, the rest trusted.
    let touched = dir.join(name(7));
    let file = std::fs::File::options().write(true).open(&touched).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(file);
    let (app, events) = serve(&dir, &tracker, &reads).await;
    assert_eq!(seeding(&events), (0, FILES));
    let read: Vec<String> = take_payload_reads(&reads).into_keys().collect();
    assert_eq!(read, vec![name(7)]);
    app.shutdown().await;

    // Its stamp was not recorded (a spot check is not a full hash), so the next start checks it again.
    let (app, _) = serve(&dir, &tracker, &reads).await;
    let read: Vec<String> = take_payload_reads(&reads).into_keys().collect();
    assert_eq!(read, vec![name(7)]);
    app.shutdown().await;
    drop(server);
}

/// A file this peer downloaded (every byte written by it, verified, the complete checkpoint durable) gets
/// its stamp as a hashed file does: the next `peer serve` of that folder trusts it without reading a byte,
/// instead of spot-checking it at every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downloaded_file_is_trusted_at_the_next_start() {
    let server = LocalTracker::start(RegistryConfig::default(), Default::default())
        .await
        .unwrap();
    let tracker = server.urls();
    let (seed_dir_scratch, leech_dir_scratch) = (
        Scratch::new("many-files", "stamp-seed"),
        Scratch::new("many-files", "stamp-leech"),
    );
    let (seed_dir, leech_dir) = (seed_dir_scratch.0.clone(), leech_dir_scratch.0.clone());
    let data: Vec<u8> = (0..700_000u32).map(|b| (b * 7 % 251) as u8).collect();
    std::fs::write(seed_dir.join("movie.bin"), &data).unwrap();
    let start = |dir: &Path, seed: u64| {
        let mut options = AppOptions::new(
            dir.to_path_buf(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(tracker.clone()),
        );
        options.peer.node.peer_id = peer_id_from_seed(seed);
        PeerApp::start(PeerEnv::real(), options)
    };
    let seeder = start(&seed_dir, 1).await.unwrap();
    let quiet: ServeSink = Arc::new(|_| {});
    seeder
        .serve_folder(&ServeOptions::default(), quiet.clone())
        .await
        .unwrap();

    let leecher = start(&leech_dir, 2).await.unwrap();
    let request = GetRequest {
        names: vec!["movie.bin".into()],
        peers: vec![seeder.local_addr()],
        ..GetRequest::default()
    };
    let hashes = leecher.get(&request).await.unwrap();
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        leecher.wait_all(&hashes, Duration::from_millis(20), |_| {}, |_| {}),
    )
    .await
    .expect("download timed out")
    .unwrap();
    assert_eq!(done.len(), 1);
    leecher.shutdown().await;
    seeder.shutdown().await;
    assert_eq!(std::fs::read(leech_dir.join("movie.bin")).unwrap(), data);

    // The leecher's folder, served again: the download is trusted as it is, not spot-checked.
    let plan = enjambre_net::library::scan(Arc::new(StdStorage), &leech_dir)
        .unwrap()
        .plan_serve();
    let trusted: Vec<&str> = plan
        .trusted
        .iter()
        .map(|(m, _)| m.info.name.as_str())
        .collect();
    assert_eq!(trusted, ["movie.bin"]);
    assert!(plan.cached.is_empty() && plan.to_hash.is_empty() && plan.resume.is_empty());
    drop(server);
}
