//! The app's DHT on loopback, as `peer --dht` runs it: a seeder and a leecher that know only a third node,
//! no tracker anywhere; the leecher opens a magnet without `tr` and finds the seeder through the DHT. And
//! the routing table kept in `DIR/.enjambre` across a restart.

use enjambre_core::dht::saved::SavedTable;
use enjambre_core::magnet::Magnet;
use enjambre_net::app::{
    dht_table_path, peer_id_from_seed, AppOptions, DhtOptions, GetRequest, PeerApp, ServeOptions,
};
use enjambre_net::peer::{PeerEnv, RealEnv};
use enjambre_net::storage::testing::Scratch;
use enjambre_net::storage::ThreadPool;
use enjambre_net::transport::TokioTransport;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

type App = PeerApp<TokioTransport, ThreadPool>;

/// A peer on a free loopback port with a DHT node joining through `bootstrap`, no tracker.
async fn start(dir: PathBuf, seed: u64, bootstrap: Vec<SocketAddr>) -> App {
    let mut o = AppOptions::new(dir, SocketAddr::from(([127, 0, 0, 1], 0)), None);
    o.peer.node.peer_id = peer_id_from_seed(seed);
    o.peer.node.seed = seed;
    o.peer.node.peer_exchange = true;
    o.peer.node.serve_metadata = true;
    let mut dht = DhtOptions::new(bootstrap);
    dht.config.query_timeout = Duration::from_millis(500);
    dht.retry = Duration::from_millis(300);
    o.dht = Some(dht);
    let env: RealEnv = PeerEnv::real();
    PeerApp::start(env, o).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_without_a_tracker_finds_its_seeder_through_the_dht() {
    let scratch = ["boot", "seed", "leech"].map(|name| Scratch::new("app-dht", name));
    let [boot_dir, seed_dir, leech_dir] = scratch.each_ref().map(|s| s.0.clone());
    let data: Vec<u8> = (0..900_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(seed_dir.join("f.bin"), &data).unwrap();

    let boot = start(boot_dir.clone(), 1, vec![]).await;
    let boot_addr = boot.dht().unwrap().local_addr();
    assert_eq!(
        boot_addr.port(),
        boot.local_addr().port(),
        "UDP on the TCP port"
    );
    let seeder = start(seed_dir.clone(), 2, vec![boot_addr]).await;
    let served = seeder
        .serve_folder(&ServeOptions::default(), Arc::new(|_| {}))
        .await
        .unwrap();
    let meta = seeder
        .load_torrent_file(
            &seed_dir
                .join(".enjambre")
                .join(format!("{}.torrent", served[0].info_hash.to_hex())),
        )
        .await
        .unwrap();
    let magnet = Magnet::new(meta.info_hash);
    assert!(magnet.trackers.is_empty() && magnet.peers.is_empty());

    let leecher = start(leech_dir.clone(), 3, vec![boot_addr]).await;
    let request = GetRequest {
        magnets: vec![magnet],
        ..GetRequest::default()
    };
    let got = tokio::time::timeout(Duration::from_secs(40), async {
        let hashes = leecher.get(&request).await.unwrap();
        leecher
            .wait_all(&hashes, Duration::from_millis(50), |_| {}, |_| {})
            .await
            .unwrap()
    })
    .await;
    let reports =
        got.unwrap_or_else(|_| panic!("no download; leecher {:?}", leecher.peer().local_addr()));
    assert_eq!(reports.len(), 1);
    assert_eq!(std::fs::read(leech_dir.join("f.bin")).unwrap(), data);
    assert!(
        reports[0].sources.contains_key(&seeder.local_addr()),
        "{:?}",
        reports[0]
    );
    for app in [&leecher, &seeder, &boot] {
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_table_is_saved_on_shutdown_and_joined_from_after_a_restart() {
    let scratch = ["table-boot", "table-peer"].map(|name| Scratch::new("app-dht", name));
    let [boot_dir, dir] = scratch.each_ref().map(|s| s.0.clone());
    let boot = start(boot_dir.clone(), 11, vec![]).await;
    let boot_addr = boot.dht().unwrap().local_addr();
    let mut others = Vec::new();
    let others_scratch: Vec<Scratch> = (12..16)
        .map(|seed| Scratch::new("app-dht", &format!("table-{seed}")))
        .collect();
    for (seed, d) in (12..).zip(&others_scratch) {
        others.push(start(d.0.clone(), seed, vec![boot_addr]).await);
    }
    let peer = start(dir.clone(), 20, vec![boot_addr]).await;
    // The others join through `boot` on their own schedule: on a loaded machine the first lookup may run
    // before `boot` has heard of them, so look again until it finds them (or give up after 10 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let before = loop {
        let found = peer
            .dht()
            .unwrap()
            .find_node(enjambre_core::dht::NodeId([7; 20]))
            .await
            .unwrap();
        if found.closest.len() >= 3 || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(before.closest.len() >= 3, "{before:?}");
    let table = peer.dht().unwrap().saved_table().await.unwrap();
    peer.shutdown().await;
    let saved = SavedTable::parse(&std::fs::read(dht_table_path(&dir)).unwrap()).unwrap();
    assert_eq!(saved.id, table.id);
    assert!(saved.nodes.len() >= 3, "{saved:?}");

    // Restarted with no bootstrap node at all: the saved table is the only way back in.
    boot.shutdown().await;
    let again = start(dir.clone(), 21, vec![]).await;
    let table = again.dht().unwrap().saved_table().await.unwrap();
    assert_eq!(table.id, saved.id, "the node id is kept");
    let after = again
        .dht()
        .unwrap()
        .find_node(enjambre_core::dht::NodeId([7; 20]))
        .await
        .unwrap();
    assert!(after.closest.len() >= 3, "{after:?}");
    again.shutdown().await;
    for o in others {
        o.shutdown().await;
    }
}
