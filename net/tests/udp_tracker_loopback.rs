//! The UDP tracker (BEP 15) server and client over real loopback UDP: peers find each other across UDP and
//! HTTP on one registry, failures and silence are reported, lost datagrams are retransmitted and stray
//! answers ignored.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enjambre_core::metainfo::InfoHash;
use enjambre_core::time::Instant;
use enjambre_core::tracker::udp::{parse_request, UdpOutcome, UdpRequest, UdpTrackerService};
use enjambre_core::tracker::{AnnounceParams, Event, Registry, RegistryConfig, TrackerProtoError};
use enjambre_net::clock::Clock;
use enjambre_net::tracker_client::{self, TrackerClientError, UdpUrl};
use enjambre_net::tracker_metrics::{AnnounceResult, TrackerMetrics};
use enjambre_net::tracker_server::{serve, ServerConfig};
use enjambre_net::transport::{DatagramSocket, Listener, TokioTransport, Transport};
use enjambre_net::udp_tracker_client::{self, UdpOptions};
use enjambre_net::udp_tracker_server::serve_udp;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const HASH: InfoHash = InfoHash([0x42; 20]);

fn params(id: u8, port: u16, left: u64) -> AnnounceParams {
    AnnounceParams {
        info_hash: HASH,
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: 50,
        key: u32::from(id),
        ext: Default::default(),
    }
}

struct Tracker {
    http: SocketAddr,
    udp: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    metrics: Arc<TrackerMetrics>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn start(config: RegistryConfig) -> Tracker {
    let localhost: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let listener = TokioTransport.bind(localhost).await.expect("bind tcp");
    let http = listener.local_addr().expect("tcp addr");
    let socket = TokioTransport.bind_udp(localhost).await.expect("bind udp");
    let udp = socket.local_addr().expect("udp addr");
    let registry = Arc::new(Mutex::new(Registry::new(config)));
    let config = ServerConfig::default();
    let metrics = Arc::clone(&config.metrics);
    let tasks = vec![
        tokio::spawn(serve::<TokioTransport>(
            listener,
            Arc::clone(&registry),
            Clock::new(),
            config,
        )),
        tokio::spawn(serve_udp(
            socket,
            Arc::clone(&registry),
            Clock::new(),
            7,
            Arc::clone(&metrics),
        )),
    ];
    Tracker {
        http,
        udp,
        registry,
        metrics,
        tasks,
    }
}

#[tokio::test]
async fn udp_and_http_peers_find_each_other_on_one_registry() {
    let tracker = start(RegistryConfig::default()).await;
    let udp_url = format!("udp://{}/announce", tracker.udp);
    let http_url = format!("http://{}/announce", tracker.http);
    let t = TokioTransport;

    let first = tracker_client::announce(&t, &udp_url, &params(1, 7001, 0))
        .await
        .expect("udp announce");
    assert!(first.peers.is_empty());
    assert_eq!((first.complete, first.incomplete), (Some(1), Some(0)));

    let second = tracker_client::announce(&t, &http_url, &params(2, 7002, 10))
        .await
        .expect("http announce");
    assert_eq!(
        second.peers,
        vec!["127.0.0.1:7001".parse::<SocketAddr>().expect("addr")]
    );

    let third = tracker_client::announce(&t, &udp_url, &params(3, 7003, 10))
        .await
        .expect("udp announce");
    let mut peers = third.peers.clone();
    peers.sort();
    assert_eq!(
        peers,
        vec![
            "127.0.0.1:7001".parse::<SocketAddr>().expect("addr"),
            "127.0.0.1:7002".parse().expect("addr")
        ]
    );
    assert_eq!((third.complete, third.incomplete), (Some(1), Some(2)));
    assert_eq!(
        third.interval,
        Some(RegistryConfig::default().interval.as_secs() as u32)
    );
    assert_eq!(tracker.registry.lock().expect("lock").peer_count(), 3);
    assert_eq!(tracker.metrics.udp_datagrams(UdpOutcome::Connected), 2);
    assert_eq!(tracker.metrics.udp_datagrams(UdpOutcome::Announced), 2);
    // UDP announces count with the HTTP ones on the tracker's /metrics page.
    assert_eq!(tracker.metrics.announces(AnnounceResult::Ok), 3);

    // Leaving over UDP takes the peer out of the swarm.
    let stop = AnnounceParams {
        event: Event::Stopped,
        ..params(1, 7001, 0)
    };
    tracker_client::announce(&t, &udp_url, &stop)
        .await
        .expect("stop");
    assert_eq!(tracker.registry.lock().expect("lock").peer_count(), 2);
}

#[tokio::test]
async fn a_full_swarm_answers_newcomers_over_udp_and_http_alike() {
    let tracker = start(RegistryConfig {
        max_peers_per_torrent: 1,
        ..RegistryConfig::default()
    })
    .await;
    let udp_url = format!("udp://{}/announce", tracker.udp);
    let http_url = format!("http://{}/announce", tracker.http);
    let t = TokioTransport;
    let member: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
    tracker_client::announce(&t, &udp_url, &params(1, 7001, 0))
        .await
        .expect("the first takes the only place");
    // The swarm is full: both newcomers get the member and neither is registered.
    for (url, id, port) in [(&udp_url, 2, 7002), (&http_url, 3, 7003)] {
        let resp = tracker_client::announce(&t, url, &params(id, port, 10))
            .await
            .unwrap_or_else(|e| panic!("{url}: a full swarm still answers: {e}"));
        assert_eq!(resp.peers, vec![member], "{url}");
        assert_eq!(
            (resp.complete, resp.incomplete),
            (Some(1), Some(0)),
            "{url}"
        );
    }
    let counts = tracker.registry.lock().expect("lock").counts();
    assert_eq!(
        (counts.seeders + counts.leechers, counts.turned_away),
        (1, 2)
    );
    assert_eq!(tracker.metrics.announces(AnnounceResult::Ok), 3);
    assert_eq!(tracker.metrics.announces(AnnounceResult::Refused), 0);
}

#[tokio::test]
async fn a_refusal_comes_back_as_the_trackers_failure_message() {
    let tracker = start(RegistryConfig {
        max_torrents: 0,
        ..RegistryConfig::default()
    })
    .await;
    let url = format!("udp://{}", tracker.udp);
    let err = tracker_client::announce(&TokioTransport, &url, &params(1, 7001, 0))
        .await
        .expect_err("refused");
    match err {
        TrackerClientError::Proto(TrackerProtoError::Failure(m)) => {
            assert!(m.contains("torrents"), "{m}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        tracker.metrics.udp_datagrams(UdpOutcome::AnnounceRefused),
        1
    );
}

#[tokio::test]
async fn bad_udp_urls_are_named() {
    for (url, reason) in [
        ("udp://host/announce", "needs a port"),
        ("udp://:80", "missing host"),
        ("udp://h:0", "bad port"),
    ] {
        match UdpUrl::parse(url) {
            Err(TrackerClientError::BadUrl { reason: r, .. }) => {
                assert!(r.contains(reason), "{url}: {r}")
            }
            other => panic!("{url}: expected a bad URL, got {other:?}"),
        }
    }
    assert_eq!(
        UdpUrl::parse("udp://[::1]:6969/announce").expect("v6"),
        UdpUrl {
            host: "::1".into(),
            port: 6969
        }
    );
}

/// A hand-run UDP tracker answering through the real service, with a fault: it ignores the first
/// `drop_first` requests of each kind, and sends a decoy answer with a wrong transaction id before each real
/// one.
async fn flaky_tracker(socket: tokio::net::UdpSocket, drop_first: usize) {
    let mut registry = Registry::new(RegistryConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let service = UdpTrackerService::new(&mut rng);
    let (mut connects, mut announces) = (0, 0);
    let mut buf = [0u8; 2048];
    loop {
        let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf)).await
        else {
            return;
        };
        let packet = &buf[..n];
        let seen = match parse_request(packet) {
            Ok(UdpRequest::Connect { .. }) => {
                connects += 1;
                connects
            }
            Ok(UdpRequest::Announce { .. }) => {
                announces += 1;
                announces
            }
            _ => usize::MAX,
        };
        if seen <= drop_first {
            continue;
        }
        let (reply, _) = service.handle(&mut registry, Instant::ZERO, from, packet, &mut rng);
        let Some(reply) = reply else { continue };
        // The decoy carries another transaction id and poisoned content: a connection id the service never
        // issued, or absurd swarm counts. A client that took it would fail the test.
        let mut decoy = reply.clone();
        decoy[4] ^= 0xff;
        for b in decoy.iter_mut().skip(8) {
            *b = 0x63;
        }
        socket.send_to(&decoy, from).await.expect("send decoy");
        socket.send_to(&reply, from).await.expect("send");
    }
}

#[tokio::test]
async fn lost_datagrams_are_sent_again_and_decoys_ignored() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let tracker = tokio::spawn(flaky_tracker(socket, 2));
    let opts = UdpOptions {
        first_timeout: Duration::from_millis(50),
        deadline: Duration::from_secs(5),
    };
    let url = UdpUrl::parse(&format!("udp://{addr}")).expect("url");
    let reply = udp_tracker_client::announce(&TokioTransport, &url, &params(1, 7001, 0), &opts)
        .await
        .expect("announce gets through after retransmissions");
    assert_eq!(reply.complete, Some(1));
    tracker.abort();
}

#[tokio::test]
async fn a_silent_tracker_times_out_after_retrying() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let counter = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
        {
            n += 1;
        }
        n
    });
    let opts = UdpOptions {
        first_timeout: Duration::from_millis(40),
        deadline: Duration::from_millis(400),
    };
    let url = UdpUrl::parse(&format!("udp://{addr}")).expect("url");
    let err = udp_tracker_client::announce(&TokioTransport, &url, &params(1, 7001, 0), &opts)
        .await
        .expect_err("nobody answers");
    assert!(matches!(err, TrackerClientError::Timeout), "{err:?}");
    let sent = counter.await.expect("counter");
    // 40 + 80 + 160 ms fit in 400 ms: at least three connect attempts.
    assert!(sent >= 3, "only {sent} connect attempts");
}

#[tokio::test]
async fn a_closed_udp_port_fails_at_once_not_at_the_deadline() {
    // Bind and drop to find a port with nothing behind it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let opts = UdpOptions {
        first_timeout: Duration::from_secs(1),
        deadline: Duration::from_secs(30),
    };
    let url = UdpUrl::parse(&format!("udp://127.0.0.1:{port}")).expect("url");
    let err = udp_tracker_client::announce(&TokioTransport, &url, &params(1, 7001, 0), &opts)
        .await
        .expect_err("nothing listens");
    match err {
        TrackerClientError::Connect(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}")
        }
        other => panic!("expected port unreachable, got {other:?}"),
    }
}
