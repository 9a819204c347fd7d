//! Real sockets on 127.0.0.1: a seeder and a leecher driven by the peer driver, with real files.

mod common;

use common::{complete_and_durable, peer_options, shared_file, wait_for_stats};
use enjambre_core::node::TorrentStats;
use enjambre_net::peer::{AddMode, Peer, PeerEnv};
use enjambre_net::storage::testing::Scratch;
use enjambre_net::storage::{StdStorage, ThreadPool};
use std::sync::Arc;
use std::time::Duration;

/// How long a download here may take.
const WITHIN: Duration = Duration::from_secs(30);
/// How often its progress is looked at.
const POLL: Duration = Duration::from_millis(50);

/// The seeder serves from its files without reading them (its file is in the page cache: just written), the
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
    let seed_dir_scratch = Scratch::new("loopback", seed);
    let seed_dir = seed_dir_scratch.0.clone();
    let leech_dir_scratch = Scratch::new("loopback", leech);
    let leech_dir = leech_dir_scratch.0.clone();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let meta = shared_file(&seed_dir, "data.bin", &data, 512 * 1024);

    let mut seeder_options = peer_options(seed_dir.clone(), 1);
    seeder_options.max_upload_rate = max_upload_rate;
    let (seeder, _) = Peer::start(PeerEnv::real(), seeder_options).await.unwrap();
    seeder
        .add(ThreadPool, meta.clone(), AddMode::Seed, None, vec![])
        .await
        .unwrap();
    let (leecher, _) = Peer::start(PeerEnv::real(), peer_options(leech_dir.clone(), 2))
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

    let stats = wait_for_stats(
        &leecher,
        "download stalled",
        WITHIN,
        POLL,
        complete_and_durable,
    )
    .await;
    assert_eq!(stats[0].bytes_wasted, 0);
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
}

/// BEP 12: the announce-list is walked in order, skipping UDP trackers and trackers that do not answer, so
/// peers still meet through the one tracker that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_meet_through_the_first_working_tracker_of_the_announce_list() {
    use enjambre_core::bencode::{self, Value};
    use enjambre_core::metainfo::Metainfo;
    use enjambre_core::tracker::RegistryConfig;
    use enjambre_net::tracker_server::testing::LocalTracker;

    let tracker = LocalTracker::start(RegistryConfig::default(), Default::default())
        .await
        .unwrap();

    let seed_dir_scratch = Scratch::new("loopback", "tiers-seed");
    let seed_dir = seed_dir_scratch.0.clone();
    let leech_dir_scratch = Scratch::new("loopback", "tiers-leech");
    let leech_dir = leech_dir_scratch.0.clone();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    let made = shared_file(&seed_dir, "t.bin", &data, 256 * 1024);
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
            Value::List(vec![url(&tracker.announce_url())]),
        ]),
    );
    let meta = Metainfo::from_bytes(&bencode::encode(&root)).unwrap();
    assert_eq!(meta.info_hash, made.info_hash, "the info dict is untouched");

    let (seeder, _) = Peer::start(PeerEnv::real(), peer_options(seed_dir.clone(), 11))
        .await
        .unwrap();
    seeder
        .add(ThreadPool, meta.clone(), AddMode::Seed, None, vec![])
        .await
        .unwrap();
    let (leecher, _) = Peer::start(PeerEnv::real(), peer_options(leech_dir.clone(), 12))
        .await
        .unwrap();
    leecher
        .add(ThreadPool, meta.clone(), AddMode::Download, None, vec![])
        .await
        .unwrap();

    let complete = |stats: &[TorrentStats]| stats.first().is_some_and(|s| s.complete);
    let stats = wait_for_stats(
        &leecher,
        "never met through the tracker",
        WITHIN,
        POLL,
        complete,
    )
    .await;
    assert_eq!(
        stats[0].sources.keys().copied().collect::<Vec<_>>(),
        vec![seeder.local_addr()]
    );
    assert_eq!(std::fs::read(leech_dir.join("t.bin")).unwrap(), data);
    leecher.shutdown().await;
    seeder.shutdown().await;
    drop(tracker);
}

/// A leecher on a real disk (pieces held in memory until complete, written whole, hashed from memory) is
/// killed mid-download as `kill -9` would: every piece its checkpoint claims is on disk with the right SHA-1
/// (invariants 2 and 3 as far as a process crash can show them: the page cache survives it), and a restart
/// resumes with at least those pieces and finishes with the file byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leecher_killed_mid_download_claims_only_pieces_on_disk_and_resumes() {
    use enjambre_net::state_dir::StateDir;
    use sha1::{Digest, Sha1};
    let seed_dir_scratch = Scratch::new("loopback", "kill-seed");
    let seed_dir = seed_dir_scratch.0.clone();
    let leech_dir_scratch = Scratch::new("loopback", "kill-leech");
    let leech_dir = leech_dir_scratch.0.clone();
    let data: Vec<u8> = (0..8_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let meta = shared_file(&seed_dir, "data.bin", &data, 256 * 1024);
    let mut seed_options = peer_options(seed_dir.clone(), 1);
    // 4 MB/s: two seconds for the file, time enough to be killed half-way.
    seed_options.max_upload_rate = Some(4_000_000);
    let (seeder, _) = Peer::start(PeerEnv::real(), seed_options).await.unwrap();
    seeder
        .add(ThreadPool, meta.clone(), AddMode::Seed, None, vec![])
        .await
        .unwrap();
    let leech = || async {
        let (leecher, task) = Peer::start(PeerEnv::real(), peer_options(leech_dir.clone(), 2))
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
    let half_way = |stats: &[TorrentStats]| stats.first().is_some_and(|s| s.pieces_durable >= 8);
    let stats = wait_for_stats(
        &leecher,
        "stalled",
        WITHIN,
        Duration::from_millis(10),
        half_way,
    )
    .await;
    assert!(!stats[0].complete, "finished before it could be killed");
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
    let stats = wait_for_stats(&leecher, "stalled", WITHIN, POLL, complete_and_durable).await;
    assert!(
        stats[0].pieces_resumed as usize >= claimed.len(),
        "resumed {} of the {} claimed",
        stats[0].pieces_resumed,
        claimed.len()
    );
    assert_eq!(std::fs::read(leech_dir.join("data.bin")).unwrap(), data);
    leecher.shutdown().await;
    seeder.shutdown().await;
}
