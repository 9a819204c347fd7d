//! The peer application's flows on loopback, as the `peer` binary and the simulator's hosts run them: a
//! folder served with a chosen piece length while the tracker is still down (the publication is retried
//! until the tracker takes it), and a leecher asking the catalog again until the name appears.

use enjambre_core::tracker::RegistryConfig;
use enjambre_net::app::{
    peer_id_from_seed, AppOptions, GetRequest, PeerApp, ServeEvent, ServeOptions, ServeSink,
    TrackerUrls,
};
use enjambre_net::peer::PeerEnv;
use enjambre_net::storage::testing::Scratch;
use enjambre_net::tracker_server::testing::LocalTracker;
use enjambre_net::transport::{Listener, TokioTransport, Transport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn options(dir: PathBuf, tracker: &TrackerUrls, seed: u64) -> AppOptions {
    let mut o = AppOptions::new(
        dir,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(tracker.clone()),
    );
    o.peer.node.peer_id = peer_id_from_seed(seed);
    o.peer.node.seed = seed;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_published_once_the_tracker_is_up_reaches_a_leecher_waiting_for_it() {
    // A port with no tracker behind it yet.
    let probe = TokioTransport
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let tracker_addr = probe.local_addr().unwrap();
    drop(probe);
    let tracker = TrackerUrls {
        announce: format!("http://{tracker_addr}/announce"),
        base: format!("http://{tracker_addr}"),
    };

    let seed_dir_scratch = Scratch::new("app-flows", "seed");
    let seed_dir = seed_dir_scratch.0.clone();
    let leech_dir_scratch = Scratch::new("app-flows", "leech");
    let leech_dir = leech_dir_scratch.0.clone();
    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(seed_dir.join("f.bin"), &data).unwrap();

    let seeder = PeerApp::start(PeerEnv::real(), options(seed_dir.clone(), &tracker, 1))
        .await
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink: ServeSink = {
        let events = events.clone();
        Arc::new(move |e: ServeEvent| events.lock().unwrap().push(e))
    };
    let serve = ServeOptions {
        piece_lengths: BTreeMap::from([("f.bin".to_string(), 32 * 1024)]),
        ..ServeOptions::default()
    };
    let served = seeder.serve_folder(&serve, sink).await.unwrap();
    assert_eq!(served.len(), 1, "{served:?}");
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, ServeEvent::PublishFailed { name, .. } if name == "f.bin")),
        "publishing to a tracker that is down must fail first: {:?}",
        events.lock().unwrap()
    );

    let leecher = PeerApp::start(PeerEnv::real(), options(leech_dir.clone(), &tracker, 2))
        .await
        .unwrap();
    let request = GetRequest {
        names: vec!["f.bin".into()],
        peers: vec![seeder.local_addr()],
        catalog_retry: Some(Duration::from_millis(100)),
        ..GetRequest::default()
    };
    let fetched = async {
        let hashes = leecher.get(&request).await.unwrap();
        leecher
            .wait_all(&hashes, Duration::from_millis(50), |_| {}, |_| {})
            .await
            .unwrap()
    };
    // Kept outside the timed join, so that a failure below can still show the tracker's catalog.
    let server = Mutex::new(None);
    let tracker_up = async {
        // The leecher is asking by now; the tracker comes up on the port the seeder publishes to.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let up =
            LocalTracker::start_at(tracker_addr, RegistryConfig::default(), Default::default());
        *server.lock().unwrap() = Some(up.await.unwrap());
    };
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(fetched, tracker_up)
    })
    .await;
    let Ok((reports, ())) = joined else {
        panic!(
            "the leecher never got the file; catalog: {:?}; leecher: {:?}",
            seeder.list_catalog().await,
            leecher.stats().await
        );
    };

    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].name, "f.bin");
    // 700,000 bytes in pieces of 32 KiB, as the seeder was told.
    assert_eq!(reports[0].pieces_total, 22);
    assert_eq!(std::fs::read(leech_dir.join("f.bin")).unwrap(), data);
    leecher.shutdown().await;
    seeder.shutdown().await;
    drop(server);
}
