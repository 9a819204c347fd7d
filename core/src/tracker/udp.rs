//! The UDP tracker protocol (BEP 15), without the sockets: packets in, packets out.
//!
//! A client first obtains a connection id (`connect`), then announces or scrapes with it. Every field is
//! big-endian. Packets:
//!
//! | packet | layout |
//! |---|---|
//! | connect request (16) | protocol id `0x41727101980` (8), action 0 (4), transaction id (4) |
//! | connect response (16) | action 0, transaction id, connection id (8) |
//! | announce request (98+) | connection id, action 1, transaction id, info hash (20), peer id (20), downloaded (8), left (8), uploaded (8), event (4: 0 none, 1 completed, 2 started, 3 stopped), IP (4, ignored), key (4), num want (4, -1 = default), port (2), then optional BEP 41 extensions (ignored) |
//! | announce response (20+) | action 1, transaction id, interval, leechers, seeders, then peers: 6 bytes each (IPv4) or 18 (IPv6), matching the family the request came over |
//! | scrape request (16 + 20n) | connection id, action 2, transaction id, info hashes |
//! | scrape response (8 + 12n) | action 2, transaction id, then per hash seeders, completed, leechers |
//! | error (8+) | action 3, transaction id, message |
//!
//! Server side: [`UdpTrackerService::handle`] answers one datagram against a [`Registry`]. Connection ids
//! are unforgeable without the server's secret: the SHA-1 of the secret, the client's address and a
//! 60-second time window, accepted for the current and the previous window (so 60 to 120 s of validity, as
//! BEP 15 asks for "at least a minute"). This is what keeps a spoofed source address from being used to
//! register peers or to reflect large answers at a victim: a client must first receive the connect answer.
//!
//! Client side: [`encode_connect_request`], [`encode_announce_request`], [`encode_scrape_request`] and
//! [`parse_response`]; [`transaction_id`] derives unguessable transaction ids from the announce key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand_core::RngCore;
use sha1::{Digest, Sha1};

use crate::metainfo::InfoHash;
use crate::time::Instant;

use super::proto::{AnnounceParams, AnnounceReply, AnnounceRequest, ID_LEN};
use super::registry::{Registry, ScrapeStats};
use super::Event;

/// The magic constant opening a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Largest datagram either side needs to read: a full scrape request is 16 + 20 * 74 = 1496 bytes, an
/// announce response with 200 IPv6 peers 3620 bytes.
pub const MAX_DATAGRAM: usize = 4096;

/// Most info hashes in one scrape (BEP 15: "up to about 74", what fits in one 1500-byte packet).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Length of the fixed part of an announce request.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;

/// How long a connection id stays valid on the client side (BEP 15: one minute).
pub const CLIENT_CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// The length of one server-side connection-id window; an id is accepted in its window and the next.
pub const CONNECTION_ID_WINDOW: Duration = Duration::from_secs(60);

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

/// Why a UDP tracker packet could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpPacketError {
    /// Shorter than its action requires.
    #[error("packet of {len} bytes is too short (need {need})")]
    TooShort {
        /// Received length.
        len: usize,
        /// Required length.
        need: usize,
    },
    /// A connect request without the protocol id.
    #[error("connect request without the BEP 15 protocol id")]
    BadProtocolId,
    /// An action this side does not handle.
    #[error("unknown action {0}")]
    UnknownAction(u32),
    /// The announce's event is not 0-3.
    #[error("unknown announce event {0}")]
    BadEvent(u32),
    /// Port 0 in an announce.
    #[error("announce with port 0")]
    BadPort,
    /// A scrape without info hashes or with a trailing partial one.
    #[error("scrape request carries {len} bytes of info hashes, not a positive multiple of 20")]
    BadScrapeLength {
        /// Bytes after the header.
        len: usize,
    },
    /// A scrape asking for more torrents than fit in one answer.
    #[error("scrape of {count} torrents (at most {MAX_SCRAPE_HASHES})")]
    TooManyInfoHashes {
        /// Torrents asked for.
        count: usize,
    },
    /// A peer list whose length is not a multiple of the entry size.
    #[error("peer list of {len} bytes is not a multiple of {unit}")]
    BadPeerListLength {
        /// Bytes of peers.
        len: usize,
        /// 6 (IPv4) or 18 (IPv6).
        unit: usize,
    },
    /// A scrape answer whose length is not a multiple of 12 after the header.
    #[error("scrape answer of {len} bytes of counts is not a multiple of 12")]
    BadScrapeAnswerLength {
        /// Bytes of counts.
        len: usize,
    },
}

// ---------------------------------------------------------------------------------------------------------
// Byte helpers (bounds are checked by the callers' length checks; these never panic)
// ---------------------------------------------------------------------------------------------------------

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn id20(b: &[u8], at: usize) -> [u8; ID_LEN] {
    let mut a = [0u8; ID_LEN];
    if let Some(s) = b.get(at..at + ID_LEN) {
        a.copy_from_slice(s);
    }
    a
}

fn need(packet: &[u8], need: usize) -> Result<(), UdpPacketError> {
    if packet.len() < need {
        return Err(UdpPacketError::TooShort {
            len: packet.len(),
            need,
        });
    }
    Ok(())
}

/// A count as the protocol's signed 32-bit field, saturated.
fn count32(n: u64) -> u32 {
    u32::try_from(n.min(i32::MAX as u64)).unwrap_or(i32::MAX as u32)
}

fn event_code(e: Event) -> u32 {
    match e {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    }
}

fn event_of(code: u32) -> Result<Event, UdpPacketError> {
    match code {
        0 => Ok(Event::None),
        1 => Ok(Event::Completed),
        2 => Ok(Event::Started),
        3 => Ok(Event::Stopped),
        c => Err(UdpPacketError::BadEvent(c)),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Server side: requests
// ---------------------------------------------------------------------------------------------------------

/// A request a UDP tracker receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpRequest {
    /// Ask for a connection id.
    Connect {
        /// Echoed in the answer.
        transaction_id: u32,
    },
    /// Announce, with the same meaning as an HTTP announce.
    Announce {
        /// From a previous connect answer.
        connection_id: u64,
        /// Echoed in the answer.
        transaction_id: u32,
        /// The announce, in the HTTP tracker's terms (`compact` set: UDP peers are always compact).
        request: AnnounceRequest,
        /// The client's `key`.
        key: u32,
    },
    /// Scrape up to [`MAX_SCRAPE_HASHES`] torrents.
    Scrape {
        /// From a previous connect answer.
        connection_id: u64,
        /// Echoed in the answer.
        transaction_id: u32,
        /// The torrents, in the order the answer lists them.
        info_hashes: Vec<InfoHash>,
    },
}

/// A request that could not be parsed, with the transaction id when the packet was long enough to carry
/// one (the server then answers with an error packet; otherwise it stays silent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BadUdpRequest {
    /// The transaction id to answer to, if known.
    pub transaction_id: Option<u32>,
    /// What is wrong.
    pub error: UdpPacketError,
}

/// Parse a datagram sent to a UDP tracker.
pub fn parse_request(packet: &[u8]) -> Result<UdpRequest, BadUdpRequest> {
    let bad = |transaction_id, error| BadUdpRequest {
        transaction_id,
        error,
    };
    need(packet, 16).map_err(|e| bad(None, e))?;
    let connection_id = be_u64(packet, 0);
    let action = be_u32(packet, 8);
    let transaction_id = be_u32(packet, 12);
    let tx = Some(transaction_id);
    match action {
        ACTION_CONNECT => {
            if connection_id != PROTOCOL_ID {
                return Err(bad(tx, UdpPacketError::BadProtocolId));
            }
            Ok(UdpRequest::Connect { transaction_id })
        }
        ACTION_ANNOUNCE => {
            need(packet, ANNOUNCE_REQUEST_LEN).map_err(|e| bad(tx, e))?;
            let event = event_of(be_u32(packet, 80)).map_err(|e| bad(tx, e))?;
            let num_want = be_u32(packet, 92) as i32;
            let port = u16::from_be_bytes([packet[96], packet[97]]);
            if port == 0 {
                return Err(bad(tx, UdpPacketError::BadPort));
            }
            let request = AnnounceRequest {
                info_hash: InfoHash(id20(packet, 16)),
                peer_id: id20(packet, 36),
                downloaded: be_u64(packet, 56),
                left: be_u64(packet, 64),
                uploaded: be_u64(packet, 72),
                event,
                // The IP field (84..88) is ignored: the source address is the peer's address.
                numwant: u32::try_from(num_want).ok(),
                port,
                compact: true,
                no_peer_id: true,
            };
            Ok(UdpRequest::Announce {
                connection_id,
                transaction_id,
                request,
                key: be_u32(packet, 88),
            })
        }
        ACTION_SCRAPE => {
            let hashes = &packet[16..];
            if hashes.is_empty() || !hashes.len().is_multiple_of(ID_LEN) {
                return Err(bad(
                    tx,
                    UdpPacketError::BadScrapeLength { len: hashes.len() },
                ));
            }
            let count = hashes.len() / ID_LEN;
            if count > MAX_SCRAPE_HASHES {
                return Err(bad(tx, UdpPacketError::TooManyInfoHashes { count }));
            }
            let info_hashes = hashes
                .chunks_exact(ID_LEN)
                .map(|c| InfoHash(id20(c, 0)))
                .collect();
            Ok(UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            })
        }
        other => Err(bad(tx, UdpPacketError::UnknownAction(other))),
    }
}

/// Encode the answer to a connect request.
pub fn encode_connect_response(transaction_id: u32, connection_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out
}

/// Encode an announce answer. Peers of the requester's address family only (`ipv6`: the request came over
/// IPv6; IPv4-mapped IPv6 peers count as IPv4).
pub fn encode_announce_response(
    transaction_id: u32,
    resp: &super::proto::AnnounceResponse,
    ipv6: bool,
) -> Vec<u8> {
    let unit = if ipv6 { 18 } else { 6 };
    let mut out = Vec::with_capacity(20 + unit * resp.peers.len());
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&resp.interval.min(i32::MAX as u32).to_be_bytes());
    out.extend_from_slice(&count32(resp.incomplete).to_be_bytes());
    out.extend_from_slice(&count32(resp.complete).to_be_bytes());
    for p in &resp.peers {
        match (p.addr.ip().to_canonical(), ipv6) {
            (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
            (IpAddr::V6(ip), true) => out.extend_from_slice(&ip.octets()),
            _ => continue,
        }
        out.extend_from_slice(&p.addr.port().to_be_bytes());
    }
    out
}

/// Encode a scrape answer, one entry per requested torrent in request order.
pub fn encode_scrape_response(transaction_id: u32, stats: &[ScrapeStats]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 12 * stats.len());
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for s in stats {
        out.extend_from_slice(&count32(s.complete).to_be_bytes());
        out.extend_from_slice(&count32(s.downloaded).to_be_bytes());
        out.extend_from_slice(&count32(s.incomplete).to_be_bytes());
    }
    out
}

/// Most bytes of an error message put in an error packet.
const MAX_ERROR_MESSAGE: usize = 256;

/// Encode an error answer (the message is cut to a few hundred bytes, at a character boundary).
pub fn encode_error(transaction_id: u32, message: &str) -> Vec<u8> {
    let mut end = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(8 + end);
    out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&message.as_bytes()[..end]);
    out
}

// ---------------------------------------------------------------------------------------------------------
// Server side: connection ids and the service
// ---------------------------------------------------------------------------------------------------------

/// Issues and checks connection ids: a keyed hash of the client's address and the time window.
#[derive(Clone)]
pub struct ConnectionIds {
    secret: [u8; 32],
}

impl std::fmt::Debug for ConnectionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionIds { secret: <hidden> }")
    }
}

impl ConnectionIds {
    /// A fresh secret drawn from `rng`.
    pub fn new(rng: &mut impl RngCore) -> ConnectionIds {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        ConnectionIds { secret }
    }

    fn window(now: Instant) -> u64 {
        now.since_origin().as_secs() / CONNECTION_ID_WINDOW.as_secs()
    }

    fn id_for(&self, window: u64, from: SocketAddr) -> u64 {
        let mut h = Sha1::new();
        h.update(self.secret);
        h.update(window.to_be_bytes());
        match from.ip().to_canonical() {
            IpAddr::V4(ip) => h.update(ip.octets()),
            IpAddr::V6(ip) => h.update(ip.octets()),
        }
        h.update(from.port().to_be_bytes());
        let d = h.finalize();
        be_u64(&d, 0)
    }

    /// The connection id for a client at `from`, now.
    pub fn issue(&self, now: Instant, from: SocketAddr) -> u64 {
        self.id_for(Self::window(now), from)
    }

    /// Whether `id` was issued to `from` in this window or the previous one.
    pub fn accepts(&self, now: Instant, from: SocketAddr, id: u64) -> bool {
        let w = Self::window(now);
        self.id_for(w, from) == id || (w > 0 && self.id_for(w - 1, from) == id)
    }
}

/// What one datagram was, for counting (metrics, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UdpOutcome {
    /// A connect request answered.
    Connected,
    /// An announce answered with peers.
    Announced,
    /// An announce refused by the registry (swarm or torrent limits).
    AnnounceRefused,
    /// A scrape answered.
    Scraped,
    /// An announce or scrape with an unknown or expired connection id.
    BadConnectionId,
    /// A malformed packet answered with an error.
    Malformed,
    /// A packet too short to answer: dropped silently.
    Dropped,
}

/// The UDP tracker: answers datagrams against a registry. Pure: the driver owns the socket, the clock
/// and the registry's lock.
#[derive(Debug, Clone)]
pub struct UdpTrackerService {
    ids: ConnectionIds,
}

impl UdpTrackerService {
    /// A service with a connection-id secret drawn from `rng`.
    pub fn new(rng: &mut impl RngCore) -> UdpTrackerService {
        UdpTrackerService {
            ids: ConnectionIds::new(rng),
        }
    }

    /// Answer the datagram `packet` from `from`: the reply to send back (`None`: stay silent) and what it
    /// was. `rng` picks which peers an announce gets.
    pub fn handle(
        &self,
        registry: &mut Registry,
        now: Instant,
        from: SocketAddr,
        packet: &[u8],
        rng: &mut impl RngCore,
    ) -> (Option<Vec<u8>>, UdpOutcome) {
        let request = match parse_request(packet) {
            Ok(r) => r,
            Err(BadUdpRequest {
                transaction_id: Some(tx),
                error,
            }) => {
                return (
                    Some(encode_error(tx, &error.to_string())),
                    UdpOutcome::Malformed,
                )
            }
            Err(_) => return (None, UdpOutcome::Dropped),
        };
        let ipv6 = from.ip().to_canonical().is_ipv6();
        match request {
            UdpRequest::Connect { transaction_id } => (
                Some(encode_connect_response(
                    transaction_id,
                    self.ids.issue(now, from),
                )),
                UdpOutcome::Connected,
            ),
            UdpRequest::Announce {
                connection_id,
                transaction_id,
                request,
                ..
            } => {
                if !self.ids.accepts(now, from, connection_id) {
                    return bad_connection_id(transaction_id);
                }
                match registry.announce(now, from.ip(), &request, rng) {
                    Ok(resp) => (
                        Some(encode_announce_response(transaction_id, &resp, ipv6)),
                        UdpOutcome::Announced,
                    ),
                    Err(e) => (
                        Some(encode_error(transaction_id, &e.to_string())),
                        UdpOutcome::AnnounceRefused,
                    ),
                }
            }
            UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                if !self.ids.accepts(now, from, connection_id) {
                    return bad_connection_id(transaction_id);
                }
                let stats = registry.scrape(&info_hashes);
                let ordered: Vec<ScrapeStats> = info_hashes
                    .iter()
                    .map(|h| stats.get(h).copied().unwrap_or_default())
                    .collect();
                (
                    Some(encode_scrape_response(transaction_id, &ordered)),
                    UdpOutcome::Scraped,
                )
            }
        }
    }
}

fn bad_connection_id(transaction_id: u32) -> (Option<Vec<u8>>, UdpOutcome) {
    (
        Some(encode_error(
            transaction_id,
            "unknown or expired connection id: connect again",
        )),
        UdpOutcome::BadConnectionId,
    )
}

// ---------------------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------------------

/// Encode a connect request.
pub fn encode_connect_request(transaction_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
    out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out
}

/// Encode an announce request (98 bytes, no BEP 41 extensions).
pub fn encode_announce_request(
    connection_id: u64,
    transaction_id: u32,
    p: &AnnounceParams,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ANNOUNCE_REQUEST_LEN);
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&p.info_hash.0);
    out.extend_from_slice(&p.peer_id);
    out.extend_from_slice(&p.downloaded.to_be_bytes());
    out.extend_from_slice(&p.left.to_be_bytes());
    out.extend_from_slice(&p.uploaded.to_be_bytes());
    out.extend_from_slice(&event_code(p.event).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&p.key.to_be_bytes());
    let num_want = i32::try_from(p.numwant).unwrap_or(i32::MAX);
    out.extend_from_slice(&num_want.to_be_bytes());
    out.extend_from_slice(&p.port.to_be_bytes());
    out
}

/// Encode a scrape request (at most [`MAX_SCRAPE_HASHES`] are sent; the rest are left out).
pub fn encode_scrape_request(
    connection_id: u64,
    transaction_id: u32,
    info_hashes: &[InfoHash],
) -> Vec<u8> {
    let hashes = &info_hashes[..info_hashes.len().min(MAX_SCRAPE_HASHES)];
    let mut out = Vec::with_capacity(16 + ID_LEN * hashes.len());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for h in hashes {
        out.extend_from_slice(&h.0);
    }
    out
}

/// A UDP tracker's answer, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpResponse {
    /// Answer to a connect.
    Connect {
        /// The request's transaction id.
        transaction_id: u32,
        /// The id to use in announces and scrapes.
        connection_id: u64,
    },
    /// Answer to an announce (`min_interval`, `warning` are never set over UDP).
    Announce {
        /// The request's transaction id.
        transaction_id: u32,
        /// Interval, counts and peers.
        reply: AnnounceReply,
    },
    /// Answer to a scrape: counts in request order.
    Scrape {
        /// The request's transaction id.
        transaction_id: u32,
        /// One per requested torrent.
        stats: Vec<ScrapeStats>,
    },
    /// The tracker refused the request.
    Error {
        /// The request's transaction id.
        transaction_id: u32,
        /// The tracker's message.
        message: String,
    },
}

impl UdpResponse {
    /// The transaction id the answer carries.
    pub fn transaction_id(&self) -> u32 {
        match self {
            UdpResponse::Connect { transaction_id, .. }
            | UdpResponse::Announce { transaction_id, .. }
            | UdpResponse::Scrape { transaction_id, .. }
            | UdpResponse::Error { transaction_id, .. } => *transaction_id,
        }
    }
}

/// Parse a tracker's datagram. `ipv6`: the tracker was reached over IPv6, so announce peers are 18 bytes
/// each (6 otherwise).
pub fn parse_response(packet: &[u8], ipv6: bool) -> Result<UdpResponse, UdpPacketError> {
    need(packet, 8)?;
    let action = be_u32(packet, 0);
    let transaction_id = be_u32(packet, 4);
    match action {
        ACTION_CONNECT => {
            need(packet, 16)?;
            Ok(UdpResponse::Connect {
                transaction_id,
                connection_id: be_u64(packet, 8),
            })
        }
        ACTION_ANNOUNCE => {
            need(packet, 20)?;
            let unit = if ipv6 { 18 } else { 6 };
            let list = &packet[20..];
            if !list.len().is_multiple_of(unit) {
                return Err(UdpPacketError::BadPeerListLength {
                    len: list.len(),
                    unit,
                });
            }
            let peers = list
                .chunks_exact(unit)
                .map(|c| {
                    let (ip, port) = c.split_at(unit - 2);
                    let ip = if ipv6 {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(ip);
                        IpAddr::V6(Ipv6Addr::from(a))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
                    };
                    SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]))
                })
                .filter(|a| a.port() != 0)
                .collect();
            Ok(UdpResponse::Announce {
                transaction_id,
                reply: AnnounceReply {
                    interval: Some(be_u32(packet, 8).min(i32::MAX as u32)),
                    min_interval: None,
                    peers,
                    complete: Some(u64::from(be_u32(packet, 16))),
                    incomplete: Some(u64::from(be_u32(packet, 12))),
                    warning: None,
                },
            })
        }
        ACTION_SCRAPE => {
            let counts = &packet[8..];
            if !counts.len().is_multiple_of(12) {
                return Err(UdpPacketError::BadScrapeAnswerLength { len: counts.len() });
            }
            let stats = counts
                .chunks_exact(12)
                .map(|c| ScrapeStats {
                    complete: u64::from(be_u32(c, 0)),
                    downloaded: u64::from(be_u32(c, 4)),
                    incomplete: u64::from(be_u32(c, 8)),
                })
                .collect();
            Ok(UdpResponse::Scrape {
                transaction_id,
                stats,
            })
        }
        ACTION_ERROR => Ok(UdpResponse::Error {
            transaction_id,
            message: String::from_utf8_lossy(&packet[8..]).into_owned(),
        }),
        other => Err(UdpPacketError::UnknownAction(other)),
    }
}

/// A transaction id for the `attempt`-th packet of an exchange: unguessable to anyone who does not know
/// the announce `key` and our peer id, and different for every packet.
pub fn transaction_id(p: &AnnounceParams, nonce: u64) -> u32 {
    let mut h = Sha1::new();
    h.update(p.key.to_be_bytes());
    h.update(p.peer_id);
    h.update(p.info_hash.0);
    h.update(nonce.to_be_bytes());
    let d = h.finalize();
    be_u32(&d, 0)
}

/// The announce `key` of a torrent: stable for the node's lifetime, derived from its seed and peer id.
pub fn announce_key(seed: u64, peer_id: &[u8; ID_LEN], info_hash: &InfoHash) -> u32 {
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(peer_id);
    h.update(info_hash.0);
    let d = h.finalize();
    be_u32(&d, 0)
}

#[cfg(test)]
mod tests;
