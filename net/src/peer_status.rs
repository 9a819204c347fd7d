//! A peer's own HTTP endpoint (`peer serve --status ADDR`, `peer --metrics ADDR`): `GET /status` is JSON of
//! its torrents, connections and rates, `GET /metrics` the Prometheus text of its counters. Read-only, with
//! `Access-Control-Allow-Origin: *` so that the tracker's web monitor, loaded from another origin, can show
//! it when a node is clicked. Rates are measured by a sampler once a second.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enjambre_core::metainfo::InfoHash;
use enjambre_core::node::{ConnStats, TorrentStats};
use enjambre_core::rate::RateMeter;
use enjambre_core::time::Instant;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::accept::accept_next;
use crate::clock::Clock;
use crate::http::{read_request, write_response, HttpLimits, Request, Response};
use crate::peer::Peer;
use crate::prometheus::{Exposition, Kind, CONTENT_TYPE};
use crate::transport::Transport;

/// Most status connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// How often rates are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One torrent in `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TorrentStatus {
    /// Torrent name.
    pub name: String,
    /// Info hash, hex.
    pub info_hash: InfoHash,
    /// Total bytes.
    pub size: u64,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Pieces verified.
    pub pieces_have: u32,
    /// Verified share in percent.
    pub percent: f64,
    /// Every piece verified.
    pub complete: bool,
    /// Still checking resume data.
    pub checking: bool,
    /// The error that stopped it, if any.
    pub error: Option<String>,
    /// While stopped on a disk error: milliseconds until it is tried again.
    pub error_retry_in_ms: Option<u64>,
    /// Disk errors in this run.
    pub disk_errors: u32,
    /// Payload bytes received in this run.
    pub bytes_downloaded: u64,
    /// Payload bytes sent in this run.
    pub bytes_uploaded: u64,
    /// Payload bytes thrown away.
    pub bytes_wasted: u64,
    /// Pieces downloaded and verified in this run.
    pub pieces_verified: u32,
    /// Pieces that failed SHA-1.
    pub hash_failures: u32,
    /// Checkpoints written in this run.
    pub checkpoints_written: u32,
    /// Download rate, bytes per second over the last sample.
    pub down_rate: u64,
    /// Upload rate, bytes per second over the last sample.
    pub up_rate: u64,
    /// Banned peers.
    pub banned: Vec<String>,
    /// Connections.
    pub connections: Vec<ConnStats>,
}

/// Totals of `GET /status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StatusTotals {
    /// Download rate, bytes per second.
    pub down_rate: u64,
    /// Upload rate, bytes per second.
    pub up_rate: u64,
    /// Connections.
    pub peers: u64,
}

/// The body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStatus {
    /// The address the peer listens on for BitTorrent connections.
    pub listen: String,
    /// Its torrents, by name.
    pub torrents: Vec<TorrentStatus>,
    /// Totals.
    pub totals: StatusTotals,
}

/// Rates are measured over at least this long.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// A torrent's (download, upload) meters.
type Meters = (RateMeter, RateMeter);

/// Rates per torrent (info hash), updated by the sampler.
#[derive(Debug, Default)]
pub struct RateBoard {
    meters: Mutex<BTreeMap<InfoHash, Meters>>,
}

impl RateBoard {
    /// Take in a sample of every torrent at `now` (a torrent no longer listed is forgotten).
    pub fn sample(&self, now: Instant, stats: &[TorrentStats]) {
        let mut meters = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        for s in stats {
            let (mut down, mut up) = meters
                .remove(&s.info_hash)
                .unwrap_or((RateMeter::new(RATE_WINDOW), RateMeter::new(RATE_WINDOW)));
            down.sample(now, s.bytes_downloaded);
            up.sample(now, s.bytes_uploaded);
            next.insert(s.info_hash, (down, up));
        }
        *meters = next;
    }

    /// (download, upload) rate of a torrent, 0 when not sampled yet.
    pub fn rates(&self, info_hash: &InfoHash) -> (u64, u64) {
        let meters = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        meters
            .get(info_hash)
            .map_or((0, 0), |(down, up)| (down.rate(), up.rate()))
    }
}

/// The status of a peer listening on `listen` with these torrents, rates from `board`.
pub fn peer_status(listen: SocketAddr, stats: &[TorrentStats], board: &RateBoard) -> PeerStatus {
    let mut torrents: Vec<TorrentStatus> = stats
        .iter()
        .map(|s| {
            let (down_rate, up_rate) = board.rates(&s.info_hash);
            TorrentStatus {
                name: s.name.clone(),
                info_hash: s.info_hash,
                size: s.size,
                pieces_total: s.pieces_total,
                pieces_have: s.pieces_have,
                percent: if s.pieces_total == 0 {
                    100.0
                } else {
                    f64::from(s.pieces_have) * 100.0 / f64::from(s.pieces_total)
                },
                complete: s.complete,
                checking: s.checking,
                error: s.error.as_ref().map(ToString::to_string),
                error_retry_in_ms: s.error_retry_in_ms,
                disk_errors: s.disk_errors,
                bytes_downloaded: s.bytes_downloaded,
                bytes_uploaded: s.bytes_uploaded,
                bytes_wasted: s.bytes_wasted,
                pieces_verified: s.pieces_downloaded,
                hash_failures: s.hash_failures,
                checkpoints_written: s.checkpoints_written,
                down_rate,
                up_rate,
                banned: s.banned.iter().map(ToString::to_string).collect(),
                connections: s.connections.clone(),
            }
        })
        .collect();
    torrents.sort_by(|a, b| (&a.name, &a.info_hash).cmp(&(&b.name, &b.info_hash)));
    let totals = torrents
        .iter()
        .fold(StatusTotals::default(), |t, s| StatusTotals {
            down_rate: t.down_rate + s.down_rate,
            up_rate: t.up_rate + s.up_rate,
            peers: t.peers + s.connections.len() as u64,
        });
    PeerStatus {
        listen: listen.to_string(),
        torrents,
        totals,
    }
}

/// The Prometheus page of a peer's torrents (labels `torrent` = name and `info_hash`).
pub fn peer_metrics(stats: &[TorrentStats]) -> String {
    let mut p = Exposition::new();
    p.single(
        "enjambre_peer_torrents",
        Kind::Gauge,
        "Torrents the peer shares or downloads.",
        stats.len() as f64,
    );
    type Field = fn(&TorrentStats) -> f64;
    // A table, one row per metric family: the rows look alike because only their data differs.
    let families: [(&str, Kind, &str, Field); 12] = [
        (
            "enjambre_peer_downloaded_bytes_total",
            Kind::Counter,
            "Payload bytes received in this run.",
            |s| s.bytes_downloaded as f64,
        ),
        (
            "enjambre_peer_uploaded_bytes_total",
            Kind::Counter,
            "Payload bytes sent in this run.",
            |s| s.bytes_uploaded as f64,
        ),
        (
            "enjambre_peer_wasted_bytes_total",
            Kind::Counter,
            "Payload bytes thrown away (failed hashes, duplicates).",
            |s| s.bytes_wasted as f64,
        ),
        (
            "enjambre_peer_pieces_verified_total",
            Kind::Counter,
            "Pieces downloaded whose SHA-1 matched, in this run.",
            |s| f64::from(s.pieces_downloaded),
        ),
        (
            "enjambre_peer_pieces_failed_total",
            Kind::Counter,
            "Pieces whose SHA-1 did not match, in this run.",
            |s| f64::from(s.hash_failures),
        ),
        (
            "enjambre_peer_checkpoint_writes_total",
            Kind::Counter,
            "Checkpoints made durable in this run.",
            |s| f64::from(s.checkpoints_written),
        ),
        (
            "enjambre_peer_disk_errors_total",
            Kind::Counter,
            "Disk errors that stopped the download (failed writes, failed read-backs), in this run.",
            |s| f64::from(s.disk_errors),
        ),
        (
            "enjambre_peer_download_stopped",
            Kind::Gauge,
            "1 while the download is stopped on a disk error (it is tried again later), else 0.",
            |s| f64::from(u8::from(s.error.is_some())),
        ),
        (
            "enjambre_peer_pieces",
            Kind::Gauge,
            "Pieces verified.",
            |s| f64::from(s.pieces_have),
        ),
        (
            "enjambre_peer_pieces_in_torrent",
            Kind::Gauge,
            "Pieces in the torrent.",
            |s| f64::from(s.pieces_total),
        ),
        (
            "enjambre_peer_connected_peers",
            Kind::Gauge,
            "Open connections.",
            |s| f64::from(s.peers),
        ),
        (
            "enjambre_peer_banned_peers",
            Kind::Gauge,
            "Peers banned for corrupt data.",
            |s| s.banned.len() as f64,
        ),
    ];
    for (name, kind, help, field) in families {
        p.family(name, kind, help);
        for s in stats {
            p.sample(
                name,
                &[("torrent", &s.name), ("info_hash", &s.info_hash.to_hex())],
                field(s),
            );
        }
    }
    p.finish()
}

fn respond(
    req: &Request,
    listen: SocketAddr,
    stats: &[TorrentStats],
    board: &RateBoard,
) -> Response {
    let resp = match (req.method.as_str(), req.path()) {
        ("GET", "/status" | "/") => match serde_json::to_vec(&peer_status(listen, stats, board)) {
            Ok(body) => Response::new(200, "application/json", body),
            Err(e) => Response::text(500, format!("{e}\n")),
        },
        ("GET", "/metrics") => Response::new(200, CONTENT_TYPE, peer_metrics(stats)),
        (_, "/status" | "/" | "/metrics") => Response::text(405, "method not allowed\n"),
        _ => Response::text(404, "no such endpoint: try /status or /metrics\n"),
    };
    resp.with_header("Access-Control-Allow-Origin", "*")
}

async fn connection<S>(mut stream: S, peer: Peer, board: Arc<RateBoard>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let limits = HttpLimits {
        max_body_bytes: 0,
        ..HttpLimits::default()
    };
    let resp = match read_request(&mut stream, &limits).await {
        Ok(req) => match peer.stats().await {
            Ok(stats) => respond(&req, peer.local_addr(), &stats, &board),
            Err(e) => Response::text(503, format!("{e}\n")),
        },
        Err(e) => match e.status() {
            Some(status) => Response::text(status, format!("{e}\n")),
            None => return,
        },
    };
    let _ = tokio::time::timeout(limits.timeout, write_response(&mut stream, &resp)).await;
}

/// Serve `GET /status` and `GET /metrics` of `peer` on `listener` until the future is dropped.
pub async fn serve_status<T: Transport>(mut listener: T::Listener, peer: Peer, clock: Clock) {
    let board = Arc::new(RateBoard::default());
    let mut tasks = JoinSet::new();
    {
        let (board, peer, clock) = (board.clone(), peer.clone(), clock);
        tasks.spawn(async move {
            loop {
                if let Ok(stats) = peer.stats().await {
                    board.sample(clock.now(), &stats);
                }
                clock.sleep_until(clock.now() + SAMPLE_EVERY).await;
            }
        });
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, _) = accept_next(&mut listener, &clock, "status endpoint").await;
        let (peer, board) = (peer.clone(), board.clone());
        tasks.spawn(async move {
            connection(stream, peer, board).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(name: &str, down: u64, up: u64) -> TorrentStats {
        TorrentStats {
            name: name.into(),
            info_hash: InfoHash([name.len() as u8; 20]),
            size: 1000,
            pieces_total: 4,
            pieces_have: 1,
            pieces_resumed: 0,
            pieces_downloaded: 1,
            pieces_durable: 0,
            bytes_downloaded: down,
            bytes_uploaded: up,
            bytes_wasted: 7,
            hash_failures: 2,
            sources: BTreeMap::new(),
            peers: 3,
            connections: Vec::new(),
            checkpoints_written: 5,
            complete: false,
            checking: false,
            error: Some(enjambre_core::node::TorrentError::Write(
                enjambre_core::node::DiskError::new(
                    std::io::ErrorKind::StorageFull,
                    "No space left on device",
                ),
            )),
            error_retry_in_ms: Some(4000),
            disk_errors: 3,
            banned: vec!["10.0.0.9:1".parse().unwrap()],
            tracker_error: None,
        }
    }

    #[test]
    fn rates_come_from_samples() {
        let board = RateBoard::default();
        let t = |ms: u64| Instant::from_micros(ms * 1000);
        board.sample(t(0), &[stats("a \"b\"", 0, 0)]);
        assert_eq!(board.rates(&stats("a \"b\"", 0, 0).info_hash), (0, 0));
        board.sample(t(100), &[stats("a \"b\"", 50, 0)]);
        assert_eq!(
            board.rates(&stats("a \"b\"", 0, 0).info_hash),
            (0, 0),
            "too soon"
        );
        board.sample(t(2000), &[stats("a \"b\"", 4000, 1000)]);
        let s = [stats("a \"b\"", 4000, 1000)];
        assert_eq!(board.rates(&s[0].info_hash), (2000, 500));
        let status = peer_status("127.0.0.1:7".parse().unwrap(), &s, &board);
        assert_eq!(status.totals.down_rate, 2000);
        assert_eq!(status.torrents[0].percent, 25.0);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["torrents"][0]["banned"][0], "10.0.0.9:1");
        let page = peer_metrics(&s);
        let labels = format!(
            "{{torrent=\"a \\\"b\\\"\",info_hash=\"{}\"}}",
            s[0].info_hash
        );
        assert!(
            page.contains(&format!(
                "enjambre_peer_downloaded_bytes_total{labels} 4000\n"
            )),
            "{page}"
        );
        assert!(page.contains(&format!("enjambre_peer_pieces_failed_total{labels} 2\n")));
        assert!(page.contains(&format!(
            "enjambre_peer_checkpoint_writes_total{labels} 5\n"
        )));
        assert!(page.contains(&format!("enjambre_peer_banned_peers{labels} 1\n")));
        assert!(page.contains(&format!("enjambre_peer_disk_errors_total{labels} 3\n")));
        assert!(page.contains(&format!("enjambre_peer_download_stopped{labels} 1\n")));
        assert_eq!(json["torrents"][0]["error_retry_in_ms"], 4000);
        assert!(page.contains("enjambre_peer_torrents 1\n"));
    }
}
