//! The tracker's limits over real loopback TCP: slow-loris clients are cut off at the read deadline and
//! cannot keep real clients out, `numwant` is capped, and the catalog refuses entries past its size.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use enjambre_core::metainfo::{self, FileEntry, InfoHash};
use enjambre_core::tracker::{AnnounceParams, Event, RegistryConfig};
use enjambre_net::http::HttpLimits;
use enjambre_net::tracker_client::{self, TrackerClientError};
use enjambre_net::tracker_server::testing::LocalTracker;
use enjambre_net::tracker_server::ServerConfig;
use enjambre_net::transport::TokioTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server's read deadline in these tests.
const READ_DEADLINE: Duration = Duration::from_secs(1);
/// Connection slots of the server in these tests.
const SLOTS: usize = 4;

async fn start(registry: RegistryConfig) -> LocalTracker {
    let config = ServerConfig {
        http: HttpLimits {
            timeout: READ_DEADLINE,
            ..HttpLimits::default()
        },
        max_connections: SLOTS,
        ..ServerConfig::default()
    };
    LocalTracker::start(registry, config)
        .await
        .expect("tracker")
}

fn params(info_hash: InfoHash, id: u32, port: u16, numwant: u32) -> AnnounceParams {
    let mut peer_id = [b'p'; 20];
    peer_id[..4].copy_from_slice(&id.to_be_bytes());
    AnnounceParams {
        info_hash,
        peer_id,
        port,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: Event::Started,
        numwant,
        key: id,
        ext: Default::default(),
    }
}

/// A slow-loris client: sends a request line and then one header byte every 50 ms, never finishing, for
/// at most `give_up`. Returns how long the server let it hold its connection.
async fn slow_loris(addr: SocketAddr, give_up: Duration) -> Option<Duration> {
    let start = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut rd, mut wr) = stream.into_split();
    let trickle = async {
        let _ = wr.write_all(b"GET /announce?info_hash=").await;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let closed = async {
        // A 408 answer or a plain close both end the read.
        let mut buf = [0u8; 512];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = trickle => Some(start.elapsed()),
        () = closed => Some(start.elapsed()),
        () = tokio::time::sleep(give_up) => None,
    }
}

#[tokio::test]
async fn slow_loris_clients_are_cut_off_and_cannot_lock_out_real_clients() {
    let tracker = start(RegistryConfig::default()).await;
    let (addr, url) = (tracker.addr, tracker.announce_url());
    // Twice as many trickling clients as the server has slots, each willing to go on for 20 s.
    let give_up = Duration::from_secs(20);
    let lorises: Vec<_> = (0..2 * SLOTS)
        .map(|_| tokio::spawn(slow_loris(addr, give_up)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A real client arriving while every slot is taken is answered once the deadline frees one.
    let hash = InfoHash([7; 20]);
    let reply = tracker_client::announce(&TokioTransport, &url, &params(hash, 1, 6881, 10))
        .await
        .expect("a real client is served despite the slow-loris clients");
    assert_eq!(reply.peers, vec![]);
    let mut held = Vec::new();
    for l in lorises {
        match l.await.expect("join") {
            Some(d) => held.push(d),
            None => panic!("a slow-loris client held its connection for {give_up:?}"),
        }
    }
    held.sort();
    println!(
        "{} slow-loris clients held a connection for {:?} .. {:?} (read deadline {READ_DEADLINE:?})",
        held.len(),
        held.first(),
        held.last()
    );
}

#[tokio::test]
async fn numwant_is_capped() {
    let tracker = start(RegistryConfig {
        max_numwant: 5,
        ..RegistryConfig::default()
    })
    .await;
    let url = tracker.announce_url();
    let hash = InfoHash([8; 20]);
    for i in 0..12u16 {
        tracker_client::announce(
            &TokioTransport,
            &url,
            &params(hash, 100 + u32::from(i), 7000 + i, 0),
        )
        .await
        .expect("announce");
    }
    let greedy = params(hash, 1, 9999, u32::MAX);
    let reply = tracker_client::announce(&TokioTransport, &url, &greedy)
        .await
        .expect("announce");
    assert_eq!(reply.peers.len(), 5, "numwant=u32::MAX gets the cap");
    let modest = params(hash, 2, 9998, 3);
    let reply = tracker_client::announce(&TokioTransport, &url, &modest)
        .await
        .expect("announce");
    assert_eq!(reply.peers.len(), 3, "a numwant under the cap is honoured");
}

#[tokio::test]
async fn the_catalog_refuses_entries_past_its_cap() {
    let tracker = start(RegistryConfig {
        max_catalog: 2,
        ..RegistryConfig::default()
    })
    .await;
    let base = tracker.urls().base;
    for (i, name) in ["a.bin", "b.bin", "c.bin"].iter().enumerate() {
        let files = vec![FileEntry {
            path: vec![name.to_string()],
            length: 1000,
        }];
        let meta = metainfo::build(name, 16 * 1024, files, vec![[1; 20]], None).expect("torrent");
        let result = tracker_client::publish(&TokioTransport, &base, &meta.to_bytes()).await;
        match (i, result) {
            (0 | 1, Ok(entry)) => assert_eq!(entry.name, *name),
            (2, Err(TrackerClientError::Status { status, .. })) => assert_eq!(status, 503),
            (_, other) => panic!("publish {name}: unexpected {other:?}"),
        }
    }
    let list = tracker_client::list_files(&TokioTransport, &base)
        .await
        .expect("list");
    assert_eq!(list.len(), 2);
}
