//! Real sockets on 127.0.0.1: a seeder and a leecher driven by the peer driver, with real files.

use enjambre_core::node::NodeConfig;
use enjambre_net::clock::Clock;
use enjambre_net::create::create_metainfo;
use enjambre_net::peer::{AddMode, Peer, PeerEnv, PeerOptions};
use enjambre_net::storage::{StdStorage, ThreadPool};
use enjambre_net::transport::TokioTransport;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("enjambre-loopback-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options(dir: PathBuf, n: u8) -> PeerOptions {
    let mut node = NodeConfig::default();
    node.peer_id[19] = n;
    node.seed = u64::from(n);
    PeerOptions {
        node,
        dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        tracker: None,
        max_upload_rate: None,
        max_download_rate: None,
        events: None,
        unsafe_checkpoint_before_sync: false,
    }
}

/// The seeder serves from its files with `sendfile` (its file is in the page cache: just written), the
/// leecher verifies every piece and its file equals the seeder's. With an upload limit, the same path keeps
/// the seeder's pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leecher_fetches_a_file_from_a_seeder_over_tcp() {
    fetch_from_a_seeder("seed", "leech", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_limit_paces_blocks_sent_from_files() {
    let rate = 2_000_000;
    let started = std::time::Instant::now();
    fetch_from_a_seeder("paced-seed", "paced-leech", Some(rate)).await;
    // 3 MB at 2 MB/s, less the limiter's first burst and a block: at least about 1.4 s.
    let floor = (3_000_000 - 64 * 1024 - 16 * 1024) as f64 / rate as f64;
    let took = started.elapsed().as_secs_f64();
    assert!(took >= floor, "{took:.2} s for 3 MB at 2 MB/s");
}

async fn fetch_from_a_seeder(seed: &str, leech: &str, max_upload_rate: Option<u64>) {
    let sent_from_files = enjambre_net::send_file::bytes_sent_from_files();
    let seed_dir = scratch(seed);
    let leech_dir = scratch(leech);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(seed_dir.join("data.bin"), &data).unwrap();
    let meta = create_metainfo(
        &StdStorage,
        &seed_dir.join("data.bin"),
        512 * 1024,
        None,
        &mut |_, _| {},
    )
    .unwrap();

    let mut seeder_options = options(seed_dir.clone(), 1);
    seeder_options.max_upload_rate = max_upload_rate;
    let (seeder, _) = Peer::start(PeerEnv::real(), seeder_options).await.unwrap();
    seeder
        .add(ThreadPool, meta.clone(), AddMode::Seed, None, vec![])
        .await
        .unwrap();
    let (leecher, _) = Peer::start(PeerEnv::real(), options(leech_dir.clone(), 2))
        .await
        .unwrap();
    leecher
        .add(
            ThreadPool,
            meta.clone(),
            AddMode::Download,
            None,
            vec![seeder.local_addr()],
        )
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = leecher.stats().await.unwrap();
        if stats[0].complete && stats[0].pieces_durable == stats[0].pieces_total {
            assert_eq!(stats[0].bytes_wasted, 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "download stalled: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read(leech_dir.join("data.bin")).unwrap(), data);
    let checkpoint = std::fs::read_to_string(
        leech_dir
            .join(".enjambre")
            .join(format!("{}.json", meta.info_hash.to_hex())),
    )
    .unwrap();
    assert!(checkpoint.contains("\"complete\": true"), "{checkpoint}");
    // Other tests of this binary may send from files too: the count only grows.
    let sent = enjambre_net::send_file::bytes_sent_from_files() - sent_from_files;
    assert!(sent >= data.len() as u64, "{sent} bytes sent from files");
    leecher.shutdown().await;
    seeder.shutdown().await;
    let _ = std::fs::remove_dir_all(seed_dir);
    let _ = std::fs::remove_dir_all(leech_dir);
}

/// BEP 12: the announce-list is walked in order, skipping UDP trackers and trackers that do not answer, so
/// peers still meet through the one tracker that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_meet_through_the_first_working_tracker_of_the_announce_list() {
    use enjambre_core::bencode::{self, Value};
    use enjambre_core::metainfo::Metainfo;
    use enjambre_core::tracker::{Registry, RegistryConfig};
    use enjambre_net::transport::{Listener, Transport};
    use std::sync::Mutex;

    let listener = TokioTransport
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tracker_addr = listener.local_addr().unwrap();
    let registry = Arc::new(Mutex::new(Registry::new(RegistryConfig::default())));
    let server = tokio::spawn(enjambre_net::tracker_server::serve::<TokioTransport>(
        listener,
        registry,
        Clock::new(),
        Default::default(),
    ));

    let seed_dir = scratch("tiers-seed");
    let leech_dir = scratch("tiers-leech");
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(seed_dir.join("t.bin"), &data).unwrap();
    let made = create_metainfo(
        &StdStorage,
        &seed_dir.join("t.bin"),
        256 * 1024,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    // Rewrite the torrent with a UDP tracker and a dead HTTP tracker in the first tier, the live one second.
    let mut root = bencode::decode(&made.raw).unwrap();
    let Value::Dict(dict) = &mut root else {
        panic!("torrent is a dict")
    };
    let url = |u: &str| Value::Bytes(u.as_bytes().to_vec());
    dict.insert(b"announce".to_vec(), url("udp://127.0.0.1:9/announce"));
    dict.insert(
        b"announce-list".to_vec(),
        Value::List(vec![
            Value::List(vec![
                url("udp://127.0.0.1:9/announce"),
                url("http://127.0.0.1:1/announce"),
            ]),
            Value::List(vec![url(&format!("http://{tracker_addr}/announce"))]),
        ]),
    );
    let meta = Metainfo::from_bytes(&bencode::encode(&root)).unwrap();
    assert_eq!(meta.info_hash, made.info_hash, "the info dict is untouched");

    let (seeder, _) = Peer::start(PeerEnv::real(), options(seed_dir.clone(), 11))
        .await
        .unwrap();
    seeder
        .add(ThreadPool, meta.clone(), AddMode::Seed, None, vec![])
        .await
        .unwrap();
    let (leecher, _) = Peer::start(PeerEnv::real(), options(leech_dir.clone(), 12))
        .await
        .unwrap();
    leecher
        .add(ThreadPool, meta.clone(), AddMode::Download, None, vec![])
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = leecher.stats().await.unwrap();
        if stats[0].complete {
            assert_eq!(
                stats[0].sources.keys().copied().collect::<Vec<_>>(),
                vec![seeder.local_addr()]
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never met through the tracker: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read(leech_dir.join("t.bin")).unwrap(), data);
    leecher.shutdown().await;
    seeder.shutdown().await;
    server.abort();
    let _ = std::fs::remove_dir_all(seed_dir);
    let _ = std::fs::remove_dir_all(leech_dir);
}

/// A leecher on a real disk (pieces held in memory until complete, written whole, hashed from memory) is
/// killed mid-download as `kill -9` would: every piece its checkpoint claims is on disk with the right SHA-1
/// (invariants 2 and 3 as far as a process crash can show them: the page cache survives it), and a restart
/// resumes with at least those pieces and finishes with the file byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leecher_killed_mid_download_claims_only_pieces_on_disk_and_resumes() {
    use enjambre_net::state_dir::StateDir;
    use sha1::{Digest, Sha1};
    let seed_dir = scratch("kill-seed");
    let leech_dir = scratch("kill-leech");
    let data: Vec<u8> = (0..8_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(seed_dir.join("data.bin"), &data).unwrap();
    let meta = create_metainfo(
        &StdStorage,
        &seed_dir.join("data.bin"),
        256 * 1024,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let mut seed_options = options(seed_dir.clone(), 1);
    // 4 MB/s: two seconds for the file, time enough to be killed half-way.
    seed_options.max_upload_rate = Some(4_000_000);
    let (seeder, _) = Peer::start(PeerEnv::real(), seed_options).await.unwrap();
    seeder
        .add(ThreadPool, meta.clone(), AddMode::Seed, None, vec![])
        .await
        .unwrap();
    let leech = || async {
        let (leecher, task) = Peer::start(PeerEnv::real(), options(leech_dir.clone(), 2))
            .await
            .unwrap();
        leecher
            .add(
                ThreadPool,
                meta.clone(),
                AddMode::Download,
                None,
                vec![seeder.local_addr()],
            )
            .await
            .unwrap();
        (leecher, task)
    };

    let (leecher, task) = leech().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = leecher.stats().await.unwrap();
        if stats[0].pieces_durable >= 8 {
            assert!(!stats[0].complete, "finished before it could be killed");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stalled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    leecher.abort();
    task.await.unwrap();

    let state = StateDir::new(Arc::new(StdStorage), &leech_dir);
    let claimed = state
        .load_checkpoint(&meta.info_hash)
        .unwrap()
        .expect("a checkpoint was saved")
        .validate(&meta)
        .unwrap();
    let on_disk = std::fs::read(leech_dir.join("data.bin")).unwrap();
    let piece_len = meta.piece_length() as usize;
    let claimed: Vec<u32> = claimed.iter_ones().collect();
    assert!(claimed.len() >= 8, "claims {claimed:?}");
    for &p in &claimed {
        let start = p as usize * piece_len;
        let end = (start + piece_len).min(on_disk.len());
        let digest: [u8; 20] = Sha1::digest(&on_disk[start..end]).into();
        assert_eq!(digest, meta.piece_hash(p).unwrap(), "claimed piece {p}");
    }

    let (leecher, _) = leech().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = leecher.stats().await.unwrap();
        if stats[0].complete && stats[0].pieces_durable == stats[0].pieces_total {
            assert!(
                stats[0].pieces_resumed as usize >= claimed.len(),
                "resumed {} of the {} claimed",
                stats[0].pieces_resumed,
                claimed.len()
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stalled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read(leech_dir.join("data.bin")).unwrap(), data);
    leecher.shutdown().await;
    seeder.shutdown().await;
    let _ = std::fs::remove_dir_all(seed_dir);
    let _ = std::fs::remove_dir_all(leech_dir);
}
