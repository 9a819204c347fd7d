//! Memory stays bounded under abuse, measured on the real binaries (RSS from `/proc/PID/status`):
//! a seeding peer with 1000 idle connections, a seeding peer asked for data by a peer that never reads it,
//! and (ignored by default, about a minute) a tracker with 100,000 announced peers:
//!
//! ```sh
//! cargo build --release --bins
//! cargo test --release -p enjambre-tests --test limits -- --include-ignored --nocapture
//! ```

use enjambre_core::metainfo::InfoHash;
use enjambre_core::tracker::proto::{
    announce_query, parse_announce_reply, parse_scrape_reply, percent_encode,
};
use enjambre_core::tracker::{AnnounceParams, Event};
use enjambre_core::wire::{reserved_bits, Handshake, Message};
use enjambre_tests::bins::{serve, PeerArgs, Tracker};
use enjambre_tests::files::{write_pattern_file, Scratch};
use enjambre_tests::http;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Resident set size of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Whether the peer still holds `s` open: reads what is there without blocking; a FIN or reset is closed.
fn still_open(mut s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// `peer serve` defaults (`NodeConfig::default()`): connections in all, and per torrent.
const PEER_MAX_CONNECTIONS: usize = 200;
const PEER_MAX_PER_TORRENT: usize = 50;

#[test]
fn a_peer_with_1000_idle_connections_stays_bounded() {
    const NAME: &str = "idle.bin";
    let scratch = Scratch::new("limits-idle");
    let tracker = Tracker::start(&scratch);
    let dir = scratch.dir("seeder");
    write_pattern_file(&dir.join(NAME), 4 * 1024 * 1024, 5);
    let seeder = serve("S", &scratch, &PeerArgs::new(Some(&tracker), &dir), &[NAME]);
    let hash = InfoHash::from_hex(&seeder.seeding[NAME]).expect("info hash");
    let pid = seeder.proc.pid();
    let before = rss_kib(pid);

    // 1000 connections, half of them handshaking for the seeded file and then silent, half silent from
    // the start; none ever sends anything else.
    let mut conns = Vec::new();
    for i in 0..1000u32 {
        let Ok(mut s) = TcpStream::connect_timeout(&seeder.addr, Duration::from_secs(5)) else {
            continue;
        };
        if i % 2 == 0 {
            let mut peer_id = [b'i'; 20];
            peer_id[..4].copy_from_slice(&i.to_be_bytes());
            let hs = Handshake {
                reserved: reserved_bits(true, false),
                info_hash: hash.0,
                peer_id,
            };
            let _ = s.write_all(&hs.encode());
        }
        conns.push(s);
    }
    let connected = conns.len();
    std::thread::sleep(Duration::from_secs(2));
    let open = conns.iter().filter(|s| still_open(s)).count();
    let during = rss_kib(pid);
    println!(
        "peer with {connected} connections opened at it: {open} still open; RSS {before} KiB before, \
         {during} KiB with them"
    );
    assert!(
        connected >= 900,
        "only {connected} of 1000 connects went through"
    );
    assert!(
        open <= PEER_MAX_CONNECTIONS,
        "{open} connections held, over the global cap {PEER_MAX_CONNECTIONS}"
    );
    assert!(open > 0, "the peer dropped every connection at once");
    assert!(
        during < before + 64 * 1024,
        "RSS grew by {} KiB with idle connections",
        during.saturating_sub(before)
    );
    // The handshaken ones beyond the per-torrent cap were closed; the others wait for their timeouts.
    let handshaken_open = conns.iter().step_by(2).filter(|s| still_open(s)).count();
    assert!(
        handshaken_open <= PEER_MAX_PER_TORRENT,
        "{handshaken_open} handshaken idle connections held, over the per-torrent cap"
    );
}

#[test]
fn a_peer_that_asks_for_data_and_never_reads_it_is_dropped() {
    const NAME: &str = "unread.bin";
    const SIZE: u64 = 32 * 1024 * 1024;
    const BLOCK: u32 = 16 * 1024;
    let scratch = Scratch::new("limits-unread");
    let dir = scratch.dir("seeder");
    write_pattern_file(&dir.join(NAME), SIZE, 6);
    let seeder = serve("S", &scratch, &PeerArgs::new(None, &dir), &[NAME]);
    let hash = InfoHash::from_hex(&seeder.seeding[NAME]).expect("info hash");
    let pid = seeder.proc.pid();
    let before = rss_kib(pid);

    let mut s = TcpStream::connect_timeout(&seeder.addr, Duration::from_secs(5)).expect("connect");
    let hs = Handshake {
        reserved: reserved_bits(true, false),
        info_hash: hash.0,
        peer_id: *b"-XX0001-never-reads!",
    };
    s.write_all(&hs.encode()).expect("handshake");
    s.write_all(&Message::Interested.encoded())
        .expect("interested");
    // Ask for every block of the file, again and again, 200 at a time, and never read a byte of the answers.
    let blocks = (SIZE / u64::from(BLOCK)) as u32;
    let started = Instant::now();
    let mut next = 0u32;
    let mut peak = before;
    let cut = loop {
        let mut batch = Vec::new();
        for _ in 0..200 {
            let index = next * BLOCK / (512 * 1024);
            let begin = next * BLOCK % (512 * 1024);
            batch.extend_from_slice(
                &Message::Request {
                    index,
                    begin,
                    length: BLOCK,
                }
                .encoded(),
            );
            next = (next + 1) % blocks;
        }
        peak = peak.max(rss_kib(pid));
        if s.write_all(&batch).is_err() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let after = rss_kib(pid);
    println!(
        "non-reading peer: cut off after {:.1} s; seeder RSS {before} KiB before, peak {peak} KiB, {after} KiB after",
        started.elapsed().as_secs_f64()
    );
    assert!(cut, "the seeder kept a peer that reads nothing for 30 s");
    assert!(
        peak < before + 96 * 1024,
        "RSS grew by {} KiB for one peer that does not read",
        peak.saturating_sub(before)
    );
    assert!(seeder.proc.stderr_text().len() < 1 << 20);
}

#[test]
#[ignore = "about a minute: 100,000 HTTP announces; run with --include-ignored"]
fn a_tracker_with_100k_announced_peers_stays_bounded() {
    const TORRENTS: u32 = 20;
    const PER_TORRENT: u32 = 5_000;
    const NUMWANT: u32 = 50;
    const THREADS: u32 = 8;
    let scratch = Scratch::new("limits-tracker");
    // A long interval so that nobody expires while the test announces.
    let tracker = Tracker::start_with_args(
        &scratch,
        "127.0.0.1:0",
        &["--interval", "3600", "--max-numwant", &NUMWANT.to_string()],
    );
    let addr = tracker.addr;
    let pid = tracker.proc.pid();
    let before = rss_kib(pid);
    let hash = |t: u32| {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&t.to_be_bytes());
        InfoHash(h)
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            std::thread::spawn(move || {
                let mut most_peers = 0;
                for i in (w..TORRENTS * PER_TORRENT).step_by(THREADS as usize) {
                    let mut peer_id = [b'x'; 20];
                    peer_id[..4].copy_from_slice(&i.to_be_bytes());
                    let params = AnnounceParams {
                        info_hash: hash(i / PER_TORRENT),
                        peer_id,
                        port: u16::try_from(1 + i % PER_TORRENT).expect("port"),
                        uploaded: 0,
                        downloaded: 0,
                        left: u64::from(i % 2),
                        event: Event::Started,
                        numwant: u32::MAX,
                        key: i,
                        ext: Default::default(),
                    };
                    let path = format!("/announce?{}", announce_query(&params));
                    let resp = announce_once(addr, &path);
                    let reply = parse_announce_reply(&resp.body)
                        .unwrap_or_else(|e| panic!("announce {i}: {e}"));
                    most_peers = most_peers.max(reply.peers.len());
                }
                most_peers
            })
        })
        .collect();
    let most_peers = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .max()
        .unwrap_or(0);
    let secs = started.elapsed().as_secs_f64();
    let after = rss_kib(pid);

    let query: Vec<String> = (0..TORRENTS)
        .map(|t| format!("info_hash={}", percent_encode(&hash(t).0)))
        .collect();
    let resp = announce_once(addr, &format!("/scrape?{}", query.join("&")));
    let stats = parse_scrape_reply(&resp.body).expect("scrape");
    let total: u64 = stats.values().map(|s| s.complete + s.incomplete).sum();
    println!(
        "tracker with {total} announced peers in {TORRENTS} torrents: RSS {before} KiB before, {after} KiB \
         after ({:.0} bytes per peer); {:.1} s for the announces; at most {most_peers} peers per answer",
        (after.saturating_sub(before) * 1024) as f64 / total.max(1) as f64,
        secs
    );
    assert_eq!(total, u64::from(TORRENTS * PER_TORRENT));
    assert_eq!(most_peers, NUMWANT as usize, "numwant=u32::MAX is capped");
    assert!(
        after < before + 512 * 1024,
        "RSS grew by {} KiB for 100,000 peers",
        after.saturating_sub(before)
    );
}

/// One GET, retried briefly if the loopback runs out of ports for a moment.
fn announce_once(addr: SocketAddr, path: &str) -> http::HttpResponse {
    let mut last = String::new();
    for _ in 0..50 {
        match http::get(addr, path) {
            Ok(r) if r.status == 200 => return r,
            Ok(r) => panic!("GET {path}: status {} {}", r.status, r.text()),
            Err(e) => {
                last = e;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    panic!("GET {path}: {last}");
}
