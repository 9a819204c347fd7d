//! Malformed input to the real tracker over raw TCP: every bad request gets a precise answer (a bencoded
//! `failure reason` naming the field, or an HTTP 4xx for what is not HTTP), and the tracker still serves
//! correct announces and scrapes afterwards.

use enjambre_core::bencode::{self, Value};
use enjambre_core::metainfo::InfoHash;
use enjambre_core::tracker::proto::percent_encode;
use enjambre_core::tracker::{
    announce_query, parse_announce_reply, parse_scrape_reply, AnnounceParams, Event,
};
use enjambre_tests::bins::Tracker;
use enjambre_tests::files::Scratch;
use enjambre_tests::http::{self, HttpResponse};
use std::net::SocketAddr;
use std::time::Duration;

const HASH: [u8; 20] = *b"e2e-tracker-input-01";

fn failure_reason(what: &str, resp: &HttpResponse) -> String {
    assert_eq!(resp.status, 200, "{what}: {}", resp.text());
    let value = bencode::decode(&resp.body)
        .unwrap_or_else(|e| panic!("{what}: body is not bencode ({e}): {}", resp.text()));
    let reason = value
        .get(b"failure reason")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no `failure reason` in {}", resp.text()));
    reason.to_string()
}

fn announce(tracker: SocketAddr, peer: u8, port: u16, left: u64, event: Event) -> HttpResponse {
    let mut peer_id = *b"-E2E000-000000000000";
    peer_id[19] = peer;
    let q = announce_query(&AnnounceParams {
        info_hash: InfoHash(HASH),
        peer_id,
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: 50,
        key: u32::from(peer),
        ext: Default::default(),
    });
    http::get(tracker, &format!("/announce?{q}")).expect("announce exchange")
}

#[test]
fn tracker_rejects_malformed_requests_precisely_and_keeps_serving() {
    let scratch = Scratch::new("tracker-input");
    let mut tracker = Tracker::start(&scratch);
    let t = tracker.addr;
    let hash = percent_encode(&HASH);
    let id = percent_encode(b"-E2E000-000000000009");

    // Bad announces and scrapes: a bencoded failure naming the field at fault.
    let bad = [
        ("/announce".to_string(), "info_hash"),
        (
            format!("/announce?peer_id={id}&port=6881&uploaded=0&downloaded=0&left=0"),
            "info_hash",
        ),
        (
            format!("/announce?info_hash=%00%01%02&peer_id={id}&port=6881&uploaded=0&downloaded=0&left=0"),
            "info_hash",
        ),
        (
            format!("/announce?info_hash=%zz{hash}&peer_id={id}&port=6881&uploaded=0&downloaded=0&left=0"),
            "info_hash",
        ),
        (
            format!("/announce?info_hash={hash}&info_hash={hash}&peer_id={id}&port=6881&uploaded=0&downloaded=0&left=0"),
            "info_hash",
        ),
        (
            format!("/announce?info_hash={hash}&port=6881&uploaded=0&downloaded=0&left=0"),
            "peer_id",
        ),
        (
            format!("/announce?info_hash={hash}&peer_id={id}&port=99999&uploaded=0&downloaded=0&left=0"),
            "port",
        ),
        (
            format!("/announce?info_hash={hash}&peer_id={id}&port=6881&uploaded=0&downloaded=0&left=-5"),
            "left",
        ),
        ("/scrape?info_hash=%01%02".to_string(), "info_hash"),
    ];
    for (target, field) in &bad {
        let resp = http::get(t, target).unwrap_or_else(|e| panic!("GET {target}: {e}"));
        let reason = failure_reason(target, &resp);
        assert!(
            reason.contains(field),
            "GET {target}: the failure reason {reason:?} does not name `{field}`"
        );
    }

    // Not HTTP at all, or too big: a 4xx status, not a hang or a crash.
    let mut garbage: Vec<u8> = (0..2048u32).map(|i| (i * 151 % 251) as u8).collect();
    garbage.extend_from_slice(b"\r\n\r\n");
    let huge_header = format!(
        "GET /announce HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    // Past the tracker's 80 KiB request limit (which admits a scrape of 1,024 info hashes, 73 KB).
    let huge_target = format!("GET /announce?{} HTTP/1.1\r\n\r\n", "x".repeat(128 * 1024));
    let raw_cases: [(&str, &[u8]); 5] = [
        ("binary garbage", &garbage),
        (
            "a TLS client hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
        ),
        ("a header of 256 KiB", huge_header.as_bytes()),
        ("a request line of 128 KiB", huge_target.as_bytes()),
        ("a request line without version", b"GET /announce\r\n\r\n"),
    ];
    for (what, bytes) in raw_cases {
        let resp = http::exchange(t, bytes, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{what}: no HTTP answer: {e}"));
        assert!(
            (400..500).contains(&resp.status),
            "{what}: status {} ({})",
            resp.status,
            resp.text()
        );
    }
    let resp = http::get(t, "/no/such/endpoint").expect("exchange");
    assert_eq!(resp.status, 404, "{}", resp.text());
    let resp = http::exchange(
        t,
        b"DELETE /announce HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    )
    .expect("exchange");
    assert_eq!(resp.status, 405, "{}", resp.text());
    let resp = http::get(t, "/files/no-such-file.bin").expect("exchange");
    assert_eq!(resp.status, 404, "{}", resp.text());

    // A connection that sends half a request and hangs up, and one that sends nothing: no effect.
    for partial in [&b"GET /announce?info_hash="[..], b""] {
        let mut s = std::net::TcpStream::connect(t).expect("connect");
        std::io::Write::write_all(&mut s, partial).expect("write");
        drop(s);
    }

    // Still serving: two peers announce and find each other, and a scrape counts them.
    assert!(tracker.proc.is_running(), "the tracker died");
    let first = announce(t, 1, 40001, 1000, Event::Started);
    let first = parse_announce_reply(&first.body)
        .unwrap_or_else(|e| panic!("first announce: {e}: {}", first.text()));
    assert!(first.interval.is_some_and(|i| i >= 1), "{first:?}");
    assert!(first.peers.is_empty(), "{first:?}");
    let second = announce(t, 2, 40002, 0, Event::Started);
    let second = parse_announce_reply(&second.body)
        .unwrap_or_else(|e| panic!("second announce: {e}: {}", second.text()));
    let expected: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    assert_eq!(second.peers, vec![expected], "{second:?}");
    let scrape = http::get(t, &format!("/scrape?info_hash={hash}")).expect("scrape");
    let stats = parse_scrape_reply(&scrape.body)
        .unwrap_or_else(|e| panic!("scrape: {e}: {}", scrape.text()));
    let s = stats
        .get(&InfoHash(HASH))
        .unwrap_or_else(|| panic!("scrape lacks our torrent: {stats:?}"));
    assert_eq!((s.complete, s.incomplete), (1, 1), "{stats:?}");
    assert!(tracker.proc.is_running(), "the tracker died");
}
