//! The tracker server and client over real loopback TCP: announce, scrape, catalog, swarm view, and
//! resilience to garbage.

use std::net::SocketAddr;
use std::time::Duration;

use enjambre_core::metainfo::{self, FileEntry, InfoHash};
use enjambre_core::tracker::registry::Role;
use enjambre_core::tracker::{AnnounceParams, Event, RegistryConfig, TrackerProtoError};
use enjambre_net::http::HttpLimits;
use enjambre_net::tracker_client::{self, TrackerClientError};
use enjambre_net::tracker_server::testing::LocalTracker;
use enjambre_net::tracker_server::ServerConfig;
use enjambre_net::transport::{Listener, TokioTransport, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: u64 = 100_000;

async fn start() -> LocalTracker {
    let config = ServerConfig {
        http: HttpLimits {
            timeout: Duration::from_secs(2),
            ..HttpLimits::default()
        },
        max_connections: 8,
        ..ServerConfig::default()
    };
    LocalTracker::start(RegistryConfig::default(), config)
        .await
        .expect("tracker")
}

fn params(info_hash: InfoHash, id: u8, port: u16, left: u64, event: Event) -> AnnounceParams {
    AnnounceParams {
        info_hash,
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: 50,
        key: u32::from(id),
        ext: Default::default(),
    }
}

/// Send raw bytes, half-close, and return the whole response.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.split(' ').nth(1)?.parse().ok()
}

fn body_of(response: &[u8]) -> &[u8] {
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    &response[at..]
}

#[tokio::test]
async fn announce_scrape_catalog_and_garbage() {
    let tracker = start().await;
    let (addr, registry) = (tracker.addr, &tracker.registry);
    let t = TokioTransport;
    let url = tracker.announce_url();
    let base = tracker.urls().base;

    // Publish a torrent and fetch it back by name.
    let pieces = SIZE.div_ceil(16 * 1024) as usize;
    let files = vec![FileEntry {
        path: vec!["demo file.bin".into()],
        length: SIZE,
    }];
    let meta = metainfo::build(
        "demo file.bin",
        16 * 1024,
        files,
        vec![[7; 20]; pieces],
        Some(&url),
    )
    .expect("build");
    let entry = tracker_client::publish(&t, &url, &meta.raw)
        .await
        .expect("publish");
    assert_eq!(
        (entry.name.as_str(), entry.size, entry.pieces),
        ("demo file.bin", SIZE, pieces as u32)
    );
    assert_eq!(entry.info_hash, meta.info_hash);
    assert_eq!(
        tracker_client::publish(&t, &base, &meta.raw)
            .await
            .expect("idempotent"),
        entry
    );
    assert_eq!(
        tracker_client::fetch_metainfo(&t, &base, "demo file.bin")
            .await
            .expect("fetch"),
        meta.raw
    );
    match tracker_client::fetch_metainfo(&t, &base, "nope").await {
        Err(TrackerClientError::Status { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }
    let other = metainfo::build(
        "demo file.bin",
        16 * 1024,
        vec![FileEntry {
            path: vec!["demo file.bin".into()],
            length: 1,
        }],
        vec![[1; 20]],
        None,
    )
    .expect("build");
    match tracker_client::publish(&t, &base, &other.raw).await {
        Err(TrackerClientError::Status {
            status: 409,
            message,
        }) => assert!(message.contains("already published")),
        other => panic!("expected conflict, got {other:?}"),
    }
    match tracker_client::publish(&t, &base, b"d4:infoi1ee").await {
        Err(TrackerClientError::Status {
            status: 400,
            message,
        }) => assert!(message.contains("invalid metainfo")),
        other => panic!("expected 400, got {other:?}"),
    }

    // Two peers on the same IP, different ports: each sees the other, never itself.
    let a = params(meta.info_hash, 1, 7001, SIZE, Event::Started);
    let b = params(meta.info_hash, 2, 7002, 0, Event::Started);
    let ra = tracker_client::announce(&t, &url, &a)
        .await
        .expect("announce a");
    assert!(ra.peers.is_empty());
    assert_eq!((ra.interval, ra.min_interval), (Some(5), Some(1)));
    let rb = tracker_client::announce(&t, &url, &b)
        .await
        .expect("announce b");
    assert_eq!(
        rb.peers,
        vec!["127.0.0.1:7001".parse::<SocketAddr>().expect("addr")]
    );
    let a_mid = AnnounceParams {
        left: SIZE / 4,
        event: Event::None,
        ..a.clone()
    };
    let ra = tracker_client::announce(&t, &url, &a_mid)
        .await
        .expect("announce a again");
    assert_eq!(
        ra.peers,
        vec!["127.0.0.1:7002".parse::<SocketAddr>().expect("addr")]
    );
    assert_eq!((ra.complete, ra.incomplete), (Some(1), Some(1)));

    // Scrape, list, swarm view.
    let stats = tracker_client::scrape(&t, &url, &[meta.info_hash])
        .await
        .expect("scrape");
    assert_eq!(
        (
            stats[&meta.info_hash].complete,
            stats[&meta.info_hash].incomplete
        ),
        (1, 1)
    );
    assert_eq!(
        tracker_client::scrape(&t, &url, &[])
            .await
            .expect("scrape all")
            .len(),
        1
    );
    let list = tracker_client::list_files(&t, &url).await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].seeders, list[0].leechers), (1, 1));
    let view = tracker_client::swarm(&t, &base).await.expect("swarm");
    assert_eq!(view.nodes.len(), 2);
    assert_eq!(
        (view.nodes[0].node.as_str(), view.nodes[0].role),
        ("127.0.0.1:7001", Role::Leecher)
    );
    assert_eq!(view.nodes[0].downloading[0].percent, Some(75.0));
    assert_eq!(view.nodes[1].sharing, vec!["demo file.bin".to_string()]);

    // Garbage of many kinds; the server answers what it can and keeps serving.
    let bad_query = raw(addr, b"GET /announce?info_hash=zz&port=1 HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&bad_query), Some(200));
    assert!(body_of(&bad_query).starts_with(b"d14:failure reason"));
    let bad_client = params(meta.info_hash, 3, 0, 1, Event::None);
    match tracker_client::announce(&t, &url, &bad_client).await {
        Err(TrackerClientError::Proto(TrackerProtoError::Failure(reason))) => {
            assert!(reason.contains("port"))
        }
        other => panic!("expected failure reason, got {other:?}"),
    }
    let mut huge = b"GET /announce HTTP/1.1\r\nX-Junk: ".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 64 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status_of(&raw(addr, &huge).await), Some(431));
    assert_eq!(
        status_of(&raw(addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").await),
        Some(400)
    );
    assert_eq!(
        status_of(&raw(addr, b"GET / HTTP/9.9\r\n\r\n").await),
        Some(505)
    );
    assert_eq!(
        status_of(
            &raw(
                addr,
                b"POST /files HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"
            )
            .await
        ),
        Some(413)
    );
    assert_eq!(
        status_of(&raw(addr, b"GET /nowhere HTTP/1.1\r\n\r\n").await),
        Some(404)
    );
    assert_eq!(
        status_of(&raw(addr, b"DELETE /files HTTP/1.1\r\n\r\n").await),
        Some(405)
    );
    assert_eq!(
        status_of(&raw(addr, b"GET /files/%zz HTTP/1.1\r\n\r\n").await),
        Some(400)
    );
    assert_eq!(
        status_of(&raw(addr, b"GET / HTTP/1.1\r\n\r\n").await),
        Some(200)
    );
    assert!(
        raw(addr, b"GET /announce HTTP/1.1\r\nHost: x")
            .await
            .is_empty(),
        "truncated: just closed"
    );
    assert!(raw(addr, b"").await.is_empty());
    // Idle connections hold a slot only until the read deadline; more of them than slots must not
    // starve real clients for longer than that. (For their first `busy_grace` they are taken for requests
    // in progress and kept: a newcomer then is refused; past it, it evicts the oldest.)
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let grace = enjambre_net::connection_slots::SlotLimits::default().busy_grace;
    tokio::time::sleep(grace + Duration::from_millis(20)).await;
    let after = tracker_client::announce(&t, &url, &a_mid)
        .await
        .expect("still serving");
    assert_eq!(after.peers.len(), 1);
    drop(idle);

    // A stopped peer leaves the swarm.
    let stop = AnnounceParams {
        event: Event::Stopped,
        ..b
    };
    tracker_client::announce(&t, &url, &stop)
        .await
        .expect("stop");
    let ra = tracker_client::announce(&t, &url, &a_mid)
        .await
        .expect("announce a");
    assert!(ra.peers.is_empty());
    assert_eq!(registry.lock().expect("lock").peer_count(), 1);
}

#[tokio::test]
async fn client_errors_are_typed() {
    let t = TokioTransport;
    let closed = {
        let l = TokioTransport
            .bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let p = params(InfoHash([1; 20]), 1, 1, 0, Event::None);
    let err = tracker_client::announce(&t, &format!("http://{closed}/announce"), &p).await;
    assert!(
        matches!(err, Err(TrackerClientError::Connect(_))),
        "{err:?}"
    );
    let err = tracker_client::announce(&t, "https://tracker/announce", &p).await;
    assert!(
        matches!(err, Err(TrackerClientError::BadUrl { .. })),
        "{err:?}"
    );
    let err = tracker_client::announce(&t, "udp://tracker/announce", &p).await;
    assert!(
        matches!(err, Err(TrackerClientError::BadUrl { .. })),
        "a UDP URL needs a port: {err:?}"
    );
    // A server that accepts and never answers: the call times out (default deadline is 10 s, so use a
    // short one through announce_with).
    let mut silent = TokioTransport
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let conn = silent.accept().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(conn);
    });
    let opts = tracker_client::ClientOptions {
        limits: HttpLimits {
            timeout: Duration::from_millis(200),
            ..HttpLimits::default()
        },
    };
    let err =
        tracker_client::announce_with(&t, &format!("http://{silent_addr}/announce"), &p, &opts)
            .await;
    assert!(matches!(err, Err(TrackerClientError::Timeout)), "{err:?}");
    hold.abort();
}
