//! HTTP/1.1 keep-alive in the tracker server over real loopback TCP: several announces on one connection
//! (pipelined bytes kept), `Connection: close` and HTTP/1.0 honoured, error answers closing, idle connections closed after their
//! idle timeout and evicted first under slot pressure.

use std::time::Duration;

use enjambre_core::tracker::RegistryConfig;
use enjambre_net::http::HttpLimits;
use enjambre_net::tracker_server::testing::LocalTracker;
use enjambre_net::tracker_server::{KeepAlive, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_millis(300);

async fn start(max_connections: usize) -> LocalTracker {
    let config = ServerConfig {
        http: HttpLimits {
            timeout: Duration::from_secs(10),
            ..HttpLimits::default()
        },
        max_connections,
        keep_alive: KeepAlive {
            max_requests: 100,
            idle_timeout: IDLE,
        },
        ..ServerConfig::default()
    };
    LocalTracker::start(RegistryConfig::default(), config)
        .await
        .expect("tracker")
}

/// An announce of a seed with peer id `id` repeated (and a port of its own), with extra header lines `headers`.
fn announce(id: char, version: &str, headers: &str) -> String {
    let peer_id: String = std::iter::repeat_n(id, 20).collect();
    // Each peer its own port: one address and port is one peer to the registry.
    let port = 6800 + u32::from(id);
    format!(
        "GET /announce?info_hash=AAAAAAAAAAAAAAAAAAAA&peer_id={peer_id}&port={port}&uploaded=0\
         &downloaded=0&left=0&compact=1 HTTP/{version}\r\nHost: t\r\n{headers}\r\n"
    )
}

/// Read one response (head up to the blank line, then `Content-Length` bytes) from `stream`, keeping
/// bytes past it in `buf`; returns the head and the body.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .expect("content length")
                    .trim()
                    .parse()
                    .expect("number");
                while buf.len() < end + 4 + len {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.expect("read body");
                    assert!(n > 0, "closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return (head, body);
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read head");
            assert!(n > 0, "closed before a response");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("response in time")
}

/// Whether the server closes `stream` within `within` (end of stream, or a reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn three_announces_on_one_connection_get_three_answers() {
    let tracker = start(8).await;
    let addr = tracker.addr;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    s.write_all(announce('a', "1.1", "").as_bytes())
        .await
        .expect("write");
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
    assert!(body.windows(12).any(|w| w == b"8:completei1"), "one seed");

    // The third request pipelined right behind the second, in one write.
    let two = announce('b', "1.1", "") + &announce('c', "1.1", "Connection: close\r\n");
    s.write_all(two.as_bytes()).await.expect("write");
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
    assert!(
        body.windows(12).any(|w| w == b"8:completei2"),
        "two seeds: {}",
        String::from_utf8_lossy(&body)
    );
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(
        body.windows(12).any(|w| w == b"8:completei3"),
        "three seeds"
    );
    assert!(buf.is_empty(), "nothing past the third answer");
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn connection_close_http_1_0_and_errors_close_after_the_answer() {
    let tracker = start(8).await;
    let addr = tracker.addr;
    for request in [
        announce('a', "1.1", "Connection: close\r\n"),
        announce('b', "1.0", ""),
        // An error answer closes too.
        "GET /no-such-endpoint HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
    ] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        s.write_all(request.as_bytes()).await.expect("write");
        let (head, _) = read_response(&mut s, &mut buf).await;
        assert!(head.contains("Connection: close\r\n"), "{head}");
        assert!(
            closed_within(&mut s, Duration::from_secs(2)).await,
            "closed well before the idle timeout would matter"
        );
    }
    // HTTP/1.0 asking for keep-alive gets it.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    s.write_all(announce('c', "1.0", "Connection: keep-alive\r\n").as_bytes())
        .await
        .expect("write");
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_its_idle_timeout() {
    let tracker = start(8).await;
    let addr = tracker.addr;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    s.write_all(announce('a', "1.1", "").as_bytes())
        .await
        .expect("write");
    read_response(&mut s, &mut buf).await;
    let waited = std::time::Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await,
        "closed by the idle timeout, well before the 10 s request deadline"
    );
    assert!(waited.elapsed() >= IDLE / 2, "not closed right away");
}

#[tokio::test]
async fn idle_connections_are_evicted_before_busy_ones() {
    let tracker = start(2).await;
    let addr = tracker.addr;
    // The older connection is busy: half a request, still coming.
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    let request = announce('a', "1.1", "Connection: close\r\n");
    let (first_half, second_half) = request.split_at(20);
    busy.write_all(first_half.as_bytes()).await.expect("write");
    // The newer one is idle between two requests.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    idle.write_all(announce('b', "1.1", "").as_bytes())
        .await
        .expect("write");
    read_response(&mut idle, &mut buf).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A third connection needs a slot: the idle one gives way, not the oldest.
    let _newcomer = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_within(&mut idle, Duration::from_secs(2)).await);
    busy.write_all(second_half.as_bytes()).await.expect("write");
    let (head, _) = read_response(&mut busy, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}
