//! The HTTP tracker protocol, without the HTTP: query strings in, bencoded bodies out (and back).
//!
//! Server side: [`parse_announce_query`] and [`parse_scrape_query`] turn the query string of
//! `GET /announce` / `GET /scrape` into typed requests (binary `info_hash` / `peer_id` percent-decoded),
//! and [`encode_announce_response`], [`encode_scrape_response`] and [`encode_failure`] build the bodies
//! (compact peers per BEP 23, dictionary peers per BEP 3, scrape per BEP 48).
//!
//! Client side: [`announce_query`] builds the query of an announce and [`parse_announce_reply`] reads the
//! tracker's answer in either peer form.
//!
//! A `+` in a query value is taken literally (byte 0x2B), not as a space: binary fields are only meaningful
//! byte for byte, and every client percent-encodes the bytes it does not send literally.

use percent_encoding::{percent_decode_str, AsciiSet, NON_ALPHANUMERIC};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::bencode::{self, BencodeError, Value};
use crate::metainfo::InfoHash;

use super::registry::ScrapeStats;
use super::Event;

/// Most `info_hash` values accepted in one scrape query (a query of 1,024 is 73 KB: see the tracker's
/// request size limit).
pub const MAX_SCRAPE_HASHES: usize = 1024;

/// Length of an `info_hash` or `peer_id`.
pub const ID_LEN: usize = 20;

// ---------------------------------------------------------------------------------------------------------
// Percent encoding
// ---------------------------------------------------------------------------------------------------------

/// RFC 3986 unreserved characters, the only bytes sent literally.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode bytes for a URL: RFC 3986 unreserved characters stay literal, every other byte
/// becomes `%XX` (upper-case hex).
pub fn percent_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, UNRESERVED).to_string()
}

/// Percent-decode a URL component. `None` if a `%` is not followed by two hex digits (the crate would keep
/// such a `%` as it is; a binary field with one is refused). `+` stays `+`.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let well_formed = s.split('%').skip(1).all(|escape| {
        escape
            .as_bytes()
            .get(..2)
            .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_decode_str(s).collect())
}

// ---------------------------------------------------------------------------------------------------------
// Server side: query parsing
// ---------------------------------------------------------------------------------------------------------

/// Why an announce or scrape query was refused. Every variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A single-valued field appears more than once.
    #[error("field `{0}` appears more than once")]
    Duplicate(&'static str),
    /// A `%` escape in the field is not followed by two hex digits.
    #[error("field `{0}` has a malformed percent-escape")]
    BadEscape(&'static str),
    /// `info_hash` or `peer_id` does not decode to exactly 20 bytes.
    #[error("field `{field}` must be exactly 20 bytes, got {len}")]
    WrongLength {
        /// The field.
        field: &'static str,
        /// Its decoded length.
        len: usize,
    },
    /// The field's value is not of the expected form.
    #[error("field `{field}` is not a valid {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A scrape asked for too many torrents at once.
    #[error("too many `info_hash` values: {count} (at most {max})")]
    TooManyInfoHashes {
        /// How many were sent.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl QueryError {
    /// The name of the field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            QueryError::Missing(f) | QueryError::Duplicate(f) | QueryError::BadEscape(f) => f,
            QueryError::WrongLength { field, .. } | QueryError::Invalid { field, .. } => field,
            QueryError::TooManyInfoHashes { .. } => "info_hash",
        }
    }
}

/// A parsed `GET /announce` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer's id.
    pub peer_id: [u8; ID_LEN],
    /// The port the peer listens on (never 0).
    pub port: u16,
    /// Bytes uploaded so far.
    pub uploaded: u64,
    /// Bytes downloaded so far.
    pub downloaded: u64,
    /// Bytes still missing; 0 means the peer is a seeder.
    pub left: u64,
    /// The announce event.
    pub event: Event,
    /// How many peers the client wants; `None` = the tracker's default.
    pub numwant: Option<u32>,
    /// Compact (BEP 23) peer list wanted. Defaults to `true` when the client does not say.
    pub compact: bool,
    /// Leave `peer id` out of dictionary-form peers.
    pub no_peer_id: bool,
}

/// Split a query string into (key, raw value) pairs. Empty segments are skipped; a segment without `=`
/// has an empty value.
fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|seg| seg.split_once('=').unwrap_or((seg, "")))
}

fn set_once<T>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(QueryError::Duplicate(field));
    }
    *slot = Some(value);
    Ok(())
}

fn decode_field(field: &'static str, raw: &str) -> Result<Vec<u8>, QueryError> {
    percent_decode(raw).ok_or(QueryError::BadEscape(field))
}

fn decode_id(field: &'static str, raw: &str) -> Result<[u8; ID_LEN], QueryError> {
    let bytes = decode_field(field, raw)?;
    <[u8; ID_LEN]>::try_from(bytes.as_slice()).map_err(|_| QueryError::WrongLength {
        field,
        len: bytes.len(),
    })
}

fn decode_text(field: &'static str, raw: &str) -> Result<String, QueryError> {
    let bytes = decode_field(field, raw)?;
    String::from_utf8(bytes).map_err(|_| QueryError::Invalid {
        field,
        expected: "UTF-8 text",
    })
}

fn decode_u64(field: &'static str, raw: &str) -> Result<u64, QueryError> {
    let text = decode_text(field, raw)?;
    let invalid = QueryError::Invalid {
        field,
        expected: "unsigned integer",
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid);
    }
    text.parse::<u64>().map_err(|_| invalid)
}

fn decode_flag(field: &'static str, raw: &str) -> Result<bool, QueryError> {
    match decode_text(field, raw)?.as_str() {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(QueryError::Invalid {
            field,
            expected: "flag (0 or 1)",
        }),
    }
}

fn decode_event(raw: &str) -> Result<Event, QueryError> {
    match decode_text("event", raw)?.as_str() {
        "" | "empty" => Ok(Event::None),
        "started" => Ok(Event::Started),
        "completed" => Ok(Event::Completed),
        "stopped" => Ok(Event::Stopped),
        _ => Err(QueryError::Invalid {
            field: "event",
            expected: "event (started, completed, stopped or empty)",
        }),
    }
}

/// `numwant`: a non-negative integer (saturated to `u32::MAX`); a negative value (some clients send -1)
/// means "the default".
fn decode_numwant(raw: &str) -> Result<Option<u32>, QueryError> {
    let text = decode_text("numwant", raw)?;
    let invalid = QueryError::Invalid {
        field: "numwant",
        expected: "integer",
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid);
    }
    if negative {
        return Ok(None);
    }
    // Saturate absurdly long numbers rather than refusing them: the registry caps numwant anyway.
    let n = digits.parse::<u64>().unwrap_or(u64::MAX);
    Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
}

/// Parse the query string (the part after `?`, without it) of `GET /announce`.
///
/// Required: `info_hash`, `peer_id` (each exactly 20 bytes after percent-decoding), `port` (1-65535),
/// `uploaded`, `downloaded`, `left`. Optional: `event`, `numwant`, `compact` (default 1), `no_peer_id`.
/// `ip` and unknown keys are ignored: the peer's address is the connection's source address.
pub fn parse_announce_query(query: &str) -> Result<AnnounceRequest, QueryError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut uploaded = None;
    let mut downloaded = None;
    let mut left = None;
    let mut event = None;
    let mut numwant = None;
    let mut compact = None;
    let mut no_peer_id = None;
    for (key, raw) in pairs(query) {
        match key {
            "info_hash" => set_once(&mut info_hash, "info_hash", decode_id("info_hash", raw)?)?,
            "peer_id" => set_once(&mut peer_id, "peer_id", decode_id("peer_id", raw)?)?,
            "port" => {
                let p = decode_u64("port", raw)?;
                let p = u16::try_from(p)
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or(QueryError::Invalid {
                        field: "port",
                        expected: "port number (1-65535)",
                    })?;
                set_once(&mut port, "port", p)?;
            }
            "uploaded" => set_once(&mut uploaded, "uploaded", decode_u64("uploaded", raw)?)?,
            "downloaded" => set_once(
                &mut downloaded,
                "downloaded",
                decode_u64("downloaded", raw)?,
            )?,
            "left" => set_once(&mut left, "left", decode_u64("left", raw)?)?,
            "event" => set_once(&mut event, "event", decode_event(raw)?)?,
            "numwant" => set_once(&mut numwant, "numwant", decode_numwant(raw)?)?,
            "compact" => set_once(&mut compact, "compact", decode_flag("compact", raw)?)?,
            "no_peer_id" => set_once(
                &mut no_peer_id,
                "no_peer_id",
                decode_flag("no_peer_id", raw)?,
            )?,
            _ => {}
        }
    }
    Ok(AnnounceRequest {
        info_hash: InfoHash(info_hash.ok_or(QueryError::Missing("info_hash"))?),
        peer_id: peer_id.ok_or(QueryError::Missing("peer_id"))?,
        port: port.ok_or(QueryError::Missing("port"))?,
        uploaded: uploaded.ok_or(QueryError::Missing("uploaded"))?,
        downloaded: downloaded.ok_or(QueryError::Missing("downloaded"))?,
        left: left.ok_or(QueryError::Missing("left"))?,
        event: event.unwrap_or(Event::None),
        numwant: numwant.flatten(),
        compact: compact.unwrap_or(true),
        no_peer_id: no_peer_id.unwrap_or(false),
    })
}

/// Parse the query string of `GET /scrape`: zero or more `info_hash` values (zero = every torrent),
/// each exactly 20 bytes, at most [`MAX_SCRAPE_HASHES`]. Duplicates are folded; order is sorted.
pub fn parse_scrape_query(query: &str) -> Result<Vec<InfoHash>, QueryError> {
    let mut hashes = Vec::new();
    for (key, raw) in pairs(query) {
        if key == "info_hash" {
            hashes.push(InfoHash(decode_id("info_hash", raw)?));
            if hashes.len() > MAX_SCRAPE_HASHES {
                return Err(QueryError::TooManyInfoHashes {
                    count: pairs(query).filter(|(k, _)| *k == "info_hash").count(),
                    max: MAX_SCRAPE_HASHES,
                });
            }
        }
    }
    hashes.sort();
    hashes.dedup();
    Ok(hashes)
}

// ---------------------------------------------------------------------------------------------------------
// enjambre's announce extensions
// ---------------------------------------------------------------------------------------------------------

/// Most bitfield bytes a client puts in an announce's `pieces` key: 16384 pieces (8 GiB of 512 KiB pieces),
/// 4 KiB of hex, well inside a tracker's header limit. Larger torrents leave the key out.
pub const MAX_ANNOUNCED_BITFIELD: usize = 2048;

/// Extra announce keys that enjambre peers send and the enjambre tracker reads for its monitor; every other
/// tracker ignores unknown keys, and clients that omit them are simply shown with less detail.
///
/// - `pieces=HEX`: the peer's verified pieces as a BEP 3 bitfield (high bit of byte 0 is piece 0), in
///   lower-case hex; sent while downloading (a seeder's `left=0` says it all), at most
///   [`MAX_ANNOUNCED_BITFIELD`] bytes. The tracker counts, per piece, how many peers hold it.
/// - `status_port=N`: the port of the peer's HTTP status endpoint (`peer serve --status`) on the same IP, so
///   that the web monitor can show the peer's own view when it is clicked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceExtensions {
    /// Bitfield bytes of the verified pieces.
    pub pieces: Option<Vec<u8>>,
    /// Port of the status endpoint.
    pub status_port: Option<u16>,
}

/// Read the [`AnnounceExtensions`] keys of an announce query (the standard keys are left to
/// [`parse_announce_query`]). A key given twice, a `pieces` value that is not hex or longer than
/// [`MAX_ANNOUNCED_BITFIELD`] bytes, or a `status_port` that is not a port number is an error; a tracker
/// should then ignore the extensions, not refuse the announce.
pub fn parse_announce_extensions(query: &str) -> Result<AnnounceExtensions, QueryError> {
    let mut ext = AnnounceExtensions::default();
    for (key, raw) in pairs(query) {
        match key {
            "pieces" => {
                let text = decode_text("pieces", raw)?;
                let bytes = hex::decode(text.as_bytes())
                    .ok()
                    .filter(|b| b.len() <= MAX_ANNOUNCED_BITFIELD)
                    .ok_or(QueryError::Invalid {
                        field: "pieces",
                        expected: "hex bitfield of at most 2048 bytes",
                    })?;
                set_once(&mut ext.pieces, "pieces", bytes)?;
            }
            "status_port" => {
                let port = u16::try_from(decode_u64("status_port", raw)?)
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or(QueryError::Invalid {
                        field: "status_port",
                        expected: "port number (1-65535)",
                    })?;
                set_once(&mut ext.status_port, "status_port", port)?;
            }
            _ => {}
        }
    }
    Ok(ext)
}

// ---------------------------------------------------------------------------------------------------------
// Server side: response encoding
// ---------------------------------------------------------------------------------------------------------

/// A peer handed out in an announce response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The peer's id, when the tracker keeps it (used only by the dictionary form, which leaves it out
    /// otherwise).
    pub peer_id: Option<[u8; ID_LEN]>,
}

/// What the registry answers to an announce, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds the client should wait before its next regular announce.
    pub interval: u32,
    /// Seconds the client must at least wait between announces.
    pub min_interval: u32,
    /// Seeders in the swarm.
    pub complete: u64,
    /// Leechers in the swarm.
    pub incomplete: u64,
    /// A sample of other peers.
    pub peers: Vec<PeerInfo>,
}

fn key(k: &str) -> Vec<u8> {
    k.as_bytes().to_vec()
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Encode an announce response. `compact`: IPv4 peers as one `peers` byte string of 6 bytes each
/// (BEP 23) and IPv6 peers as `peers6` (18 bytes each, only present when non-empty); otherwise `peers`
/// is a list of `{ip, port, peer id}` dictionaries (`peer id` left out when `no_peer_id`).
pub fn encode_announce_response(
    resp: &AnnounceResponse,
    compact: bool,
    no_peer_id: bool,
) -> Vec<u8> {
    if compact {
        return encode_compact_announce_response(resp);
    }
    let mut d = BTreeMap::new();
    d.insert(key("interval"), int(u64::from(resp.interval)));
    d.insert(key("min interval"), int(u64::from(resp.min_interval)));
    d.insert(key("complete"), int(resp.complete));
    d.insert(key("incomplete"), int(resp.incomplete));
    let list = resp
        .peers
        .iter()
        .map(|p| {
            let mut pd = BTreeMap::new();
            pd.insert(
                key("ip"),
                Value::Bytes(p.addr.ip().to_string().into_bytes()),
            );
            pd.insert(key("port"), int(u64::from(p.addr.port())));
            if let Some(id) = p.peer_id.filter(|_| !no_peer_id) {
                pd.insert(key("peer id"), Value::Bytes(id.to_vec()));
            }
            Value::Dict(pd)
        })
        .collect();
    d.insert(key("peers"), Value::List(list));
    bencode::encode(&Value::Dict(d))
}

/// The compact form (BEP 23) of [`encode_announce_response`], written straight out: every tracker answer
/// but the rare dictionary one, where building a bencode tree cost about ten allocations. The keys in
/// bencode's sorted order; a test checks it byte for byte against the tree.
fn encode_compact_announce_response(resp: &AnnounceResponse) -> Vec<u8> {
    use std::io::Write as _;
    let v4 = resp.peers.iter().filter(|p| p.addr.is_ipv4()).count();
    let v6 = resp.peers.len() - v4;
    let mut out = Vec::with_capacity(96 + 6 * v4 + 18 * v6);
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let _ = write!(
        out,
        "d8:completei{}e10:incompletei{}e8:intervali{}e12:min intervali{}e5:peers{}:",
        count(resp.complete),
        count(resp.incomplete),
        resp.interval,
        resp.min_interval,
        6 * v4
    );
    for p in resp.peers.iter().filter(|p| p.addr.is_ipv4()) {
        crate::compact::push_addr(&p.addr, &mut out);
    }
    if v6 > 0 {
        let _ = write!(out, "6:peers6{}:", 18 * v6);
        for p in resp.peers.iter().filter(|p| p.addr.is_ipv6()) {
            crate::compact::push_addr(&p.addr, &mut out);
        }
    }
    out.push(b'e');
    out
}

/// Encode a scrape response (BEP 48): `{files: {<20-byte hash>: {complete, downloaded, incomplete}}}`.
pub fn encode_scrape_response(stats: &BTreeMap<InfoHash, ScrapeStats>) -> Vec<u8> {
    let files = stats
        .iter()
        .map(|(hash, s)| {
            let mut f = BTreeMap::new();
            f.insert(key("complete"), int(s.complete));
            f.insert(key("downloaded"), int(s.downloaded));
            f.insert(key("incomplete"), int(s.incomplete));
            (hash.0.to_vec(), Value::Dict(f))
        })
        .collect();
    let mut d = BTreeMap::new();
    d.insert(key("files"), Value::Dict(files));
    bencode::encode(&Value::Dict(d))
}

/// Encode a `failure reason` response.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut d = BTreeMap::new();
    d.insert(
        key("failure reason"),
        Value::Bytes(reason.as_bytes().to_vec()),
    );
    bencode::encode(&Value::Dict(d))
}

// ---------------------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------------------

/// What a client tells the tracker in an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: [u8; ID_LEN],
    /// The port we listen on.
    pub port: u16,
    /// Bytes uploaded so far.
    pub uploaded: u64,
    /// Bytes downloaded (and verified) so far.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// The event, if any.
    pub event: Event,
    /// How many peers we want.
    pub numwant: u32,
    /// A random number identifying this client across IP changes (`key`; BEP 15's key field).
    pub key: u32,
    /// enjambre's own announce keys (verified pieces, status port); other trackers ignore them.
    pub ext: AnnounceExtensions,
}

/// The query string (without `?`) of an announce:
/// `info_hash=..&peer_id=..&port=..&uploaded=..&downloaded=..&left=..&compact=1&numwant=..&key=..[&event=..]`
/// (`key` as 8 hex digits), then the extension keys that are set (`&pieces=HEX&status_port=N`, see
/// [`AnnounceExtensions`]).
pub fn announce_query(p: &AnnounceParams) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}&key={:08x}",
        percent_encode(&p.info_hash.0),
        percent_encode(&p.peer_id),
        p.port,
        p.uploaded,
        p.downloaded,
        p.left,
        p.numwant,
        p.key
    );
    if let Some(ev) = p.event.as_query_value() {
        q.push_str("&event=");
        q.push_str(ev);
    }
    if let Some(pieces) = p.ext.pieces.as_deref() {
        if pieces.len() <= MAX_ANNOUNCED_BITFIELD {
            q.push_str("&pieces=");
            q.push_str(&hex::encode(pieces));
        }
    }
    if let Some(port) = p.ext.status_port {
        q.push_str(&format!("&status_port={port}"));
    }
    q
}

/// A tracker's answer to an announce, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceReply {
    /// Seconds until the next regular announce.
    pub interval: Option<u32>,
    /// Minimum seconds between announces.
    pub min_interval: Option<u32>,
    /// Peers to contact: IPv4 from `peers`, IPv6 from `peers6`, or both from the dictionary form.
    pub peers: Vec<SocketAddr>,
    /// Seeders, if the tracker said.
    pub complete: Option<u64>,
    /// Leechers, if the tracker said.
    pub incomplete: Option<u64>,
    /// `warning message`, if any.
    pub warning: Option<String>,
}

/// Why a tracker response could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrackerProtoError {
    /// The tracker refused the request with this `failure reason`.
    #[error("tracker failure: {0}")]
    Failure(String),
    /// The body is not valid bencode.
    #[error("malformed tracker response: {0}")]
    Bencode(#[from] BencodeError),
    /// The body is not a dictionary.
    #[error("tracker response is not a dictionary")]
    NotADict,
    /// A field has the wrong type.
    #[error("tracker response field `{0}` has the wrong type")]
    WrongType(&'static str),
    /// A compact peer string whose length is not a multiple of the entry size.
    #[error("compact `{field}` length {len} is not a multiple of {unit}")]
    BadCompactLength {
        /// `peers` or `peers6`.
        field: &'static str,
        /// The string's length.
        len: usize,
        /// 6 or 18.
        unit: usize,
    },
}

fn opt_u64(
    d: &BTreeMap<Vec<u8>, Value>,
    k: &'static str,
) -> Result<Option<u64>, TrackerProtoError> {
    match d.get(k.as_bytes()) {
        None => Ok(None),
        Some(Value::Int(n)) => Ok(u64::try_from(*n).ok()),
        Some(_) => Err(TrackerProtoError::WrongType(k)),
    }
}

fn opt_u32(
    d: &BTreeMap<Vec<u8>, Value>,
    k: &'static str,
) -> Result<Option<u32>, TrackerProtoError> {
    Ok(opt_u64(d, k)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

fn compact_peers(
    bytes: &[u8],
    field: &'static str,
    ip_len: usize,
    out: &mut Vec<SocketAddr>,
) -> Result<(), TrackerProtoError> {
    let unit = ip_len + 2;
    if !bytes.chunks_exact(unit).remainder().is_empty() {
        return Err(TrackerProtoError::BadCompactLength {
            field,
            len: bytes.len(),
            unit,
        });
    }
    for chunk in bytes.chunks_exact(unit) {
        let (ip, port) = chunk.split_at(ip_len);
        let Ok(port) = <[u8; 2]>::try_from(port) else {
            continue;
        };
        let port = u16::from_be_bytes(port);
        let ip = if let Ok(a) = <[u8; 4]>::try_from(ip) {
            IpAddr::V4(Ipv4Addr::from(a))
        } else if let Ok(a) = <[u8; 16]>::try_from(ip) {
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            continue;
        };
        out.push(SocketAddr::new(ip, port));
    }
    Ok(())
}

/// Dictionary-form peers: entries whose `ip` is not an IP literal (BEP 3 allows DNS names) or whose
/// `port` is out of range are skipped rather than failing the whole reply.
fn dict_peers(list: &[Value], out: &mut Vec<SocketAddr>) {
    for entry in list {
        let ip = entry.get(b"ip").and_then(Value::as_bytes);
        let ip = ip
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<IpAddr>().ok());
        let port = entry
            .get(b"port")
            .and_then(Value::as_int)
            .and_then(|p| u16::try_from(p).ok());
        if let (Some(ip), Some(port)) = (ip, port) {
            out.push(SocketAddr::new(ip, port));
        }
    }
}

/// Parse a tracker's announce response. A `failure reason` becomes [`TrackerProtoError::Failure`];
/// `peers` may be compact (BEP 23) or a list of dictionaries; `peers6` (compact IPv6) is appended.
pub fn parse_announce_reply(body: &[u8]) -> Result<AnnounceReply, TrackerProtoError> {
    let value = bencode::decode(body)?;
    let d = value.as_dict().ok_or(TrackerProtoError::NotADict)?;
    if let Some(reason) = d.get(b"failure reason".as_slice()) {
        let reason = reason
            .as_bytes()
            .ok_or(TrackerProtoError::WrongType("failure reason"))?;
        return Err(TrackerProtoError::Failure(
            String::from_utf8_lossy(reason).into_owned(),
        ));
    }
    let mut peers = Vec::new();
    match d.get(b"peers".as_slice()) {
        None => {}
        Some(Value::Bytes(b)) => compact_peers(b, "peers", 4, &mut peers)?,
        Some(Value::List(l)) => dict_peers(l, &mut peers),
        Some(_) => return Err(TrackerProtoError::WrongType("peers")),
    }
    match d.get(b"peers6".as_slice()) {
        None => {}
        Some(Value::Bytes(b)) => compact_peers(b, "peers6", 16, &mut peers)?,
        Some(Value::List(l)) => dict_peers(l, &mut peers),
        Some(_) => return Err(TrackerProtoError::WrongType("peers6")),
    }
    let warning = match d.get(b"warning message".as_slice()) {
        None => None,
        Some(w) => Some(
            String::from_utf8_lossy(
                w.as_bytes()
                    .ok_or(TrackerProtoError::WrongType("warning message"))?,
            )
            .into_owned(),
        ),
    };
    Ok(AnnounceReply {
        interval: opt_u32(d, "interval")?,
        min_interval: opt_u32(d, "min interval")?,
        peers,
        complete: opt_u64(d, "complete")?,
        incomplete: opt_u64(d, "incomplete")?,
        warning,
    })
}

/// Parse a scrape response (BEP 48) into per-torrent numbers. Keys that are not 20 bytes long and
/// entries that are not dictionaries are skipped; missing numbers count as 0.
pub fn parse_scrape_reply(
    body: &[u8],
) -> Result<BTreeMap<InfoHash, ScrapeStats>, TrackerProtoError> {
    let value = bencode::decode(body)?;
    let d = value.as_dict().ok_or(TrackerProtoError::NotADict)?;
    if let Some(reason) = d.get(b"failure reason".as_slice()) {
        let reason = reason
            .as_bytes()
            .ok_or(TrackerProtoError::WrongType("failure reason"))?;
        return Err(TrackerProtoError::Failure(
            String::from_utf8_lossy(reason).into_owned(),
        ));
    }
    let files = match d.get(b"files".as_slice()) {
        None => return Ok(BTreeMap::new()),
        Some(f) => f.as_dict().ok_or(TrackerProtoError::WrongType("files"))?,
    };
    let mut out = BTreeMap::new();
    for (k, v) in files {
        let (Ok(hash), Some(fd)) = (<[u8; ID_LEN]>::try_from(k.as_slice()), v.as_dict()) else {
            continue;
        };
        out.insert(
            InfoHash(hash),
            ScrapeStats {
                complete: opt_u64(fd, "complete")?.unwrap_or(0),
                incomplete: opt_u64(fd, "incomplete")?.unwrap_or(0),
                downloaded: opt_u64(fd, "downloaded")?.unwrap_or(0),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(hash: [u8; 20], peer_id: [u8; 20]) -> AnnounceParams {
        AnnounceParams {
            info_hash: InfoHash(hash),
            peer_id,
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: 25,
            key: 0x0a0b_0c0d,
            ext: AnnounceExtensions::default(),
        }
    }

    fn base_query() -> String {
        announce_query(&AnnounceParams {
            event: Event::None,
            ..params([7; 20], *b"-EJ0001-abcdefghijkl")
        })
    }

    #[test]
    fn percent_round_trip_of_every_byte_value() {
        let all: Vec<u8> = (0..=255u8).collect();
        let enc = percent_encode(&all);
        assert!(enc.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(percent_decode(&enc).as_deref(), Some(all.as_slice()));
        for b in 0..=255u8 {
            let p = params([b; 20], [b.wrapping_add(1); 20]);
            let req = parse_announce_query(&announce_query(&p)).expect("own query parses");
            assert_eq!(req.info_hash, InfoHash([b; 20]));
            assert_eq!(req.peer_id, [b.wrapping_add(1); 20]);
        }
        // Lower-case hex escapes decode too; '+' is literal.
        assert_eq!(
            percent_decode("%ff%0a+").as_deref(),
            Some(&[0xff, 0x0a, b'+'][..])
        );
        for malformed in ["%", "%4", "a%g1", "%%41", "%41%"] {
            assert_eq!(percent_decode(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn announce_query_round_trip() {
        let p = params([0xab; 20], *b"-EJ0001-abcdefghijkl");
        let q = announce_query(&p);
        assert!(q.starts_with("info_hash=%AB%AB"));
        assert!(q.ends_with("&compact=1&numwant=25&key=0a0b0c0d&event=started"));
        let req = parse_announce_query(&q).expect("parses");
        assert_eq!(
            req,
            AnnounceRequest {
                info_hash: p.info_hash,
                peer_id: p.peer_id,
                port: 6881,
                uploaded: 1,
                downloaded: 2,
                left: 3,
                event: Event::Started,
                numwant: Some(25),
                compact: true,
                no_peer_id: false,
            }
        );
        let none = parse_announce_query(&base_query()).expect("parses");
        assert_eq!(none.event, Event::None);
        // Unknown keys and `ip` are ignored, optional fields parsed.
        let q = format!(
            "{}&ip=1.2.3.4&key=zz&compact=0&no_peer_id=1&event=completed",
            base_query()
        );
        let req = parse_announce_query(&q.replace("&compact=1", "")).expect("parses");
        assert!(!req.compact && req.no_peer_id);
        assert_eq!(req.event, Event::Completed);
    }

    #[test]
    fn malformed_announce_queries_name_the_field() {
        let q = base_query();
        for field in [
            "info_hash",
            "peer_id",
            "port",
            "uploaded",
            "downloaded",
            "left",
        ] {
            let without: Vec<&str> = q
                .split('&')
                .filter(|s| !s.starts_with(&format!("{field}=")))
                .collect();
            assert_eq!(
                parse_announce_query(&without.join("&")),
                Err(QueryError::Missing(field)),
                "{field}"
            );
        }
        let cases: Vec<(String, QueryError)> = vec![
            (format!("{q}&port=1"), QueryError::Duplicate("port")),
            (
                q.replacen("info_hash=%07", "info_hash=%G7", 1),
                QueryError::BadEscape("info_hash"),
            ),
            (format!("{q}&event=%4"), QueryError::BadEscape("event")),
            (
                q.replacen("info_hash=%07", "info_hash=", 1),
                QueryError::WrongLength {
                    field: "info_hash",
                    len: 19,
                },
            ),
            (
                q.replacen("peer_id=", "peer_id=xx", 1),
                QueryError::WrongLength {
                    field: "peer_id",
                    len: 22,
                },
            ),
            (
                q.replacen("port=6881", "port=0", 1),
                QueryError::Invalid {
                    field: "port",
                    expected: "port number (1-65535)",
                },
            ),
            (
                q.replacen("port=6881", "port=65536", 1),
                QueryError::Invalid {
                    field: "port",
                    expected: "port number (1-65535)",
                },
            ),
            (
                q.replacen("port=6881", "port=http", 1),
                QueryError::Invalid {
                    field: "port",
                    expected: "unsigned integer",
                },
            ),
            (
                q.replacen("uploaded=1", "uploaded=-1", 1),
                QueryError::Invalid {
                    field: "uploaded",
                    expected: "unsigned integer",
                },
            ),
            (
                q.replacen("left=3", "left=99999999999999999999999", 1),
                QueryError::Invalid {
                    field: "left",
                    expected: "unsigned integer",
                },
            ),
            (
                format!("{q}&event=paused"),
                QueryError::Invalid {
                    field: "event",
                    expected: "event (started, completed, stopped or empty)",
                },
            ),
            (
                q.replacen("compact=1", "compact=yes", 1),
                QueryError::Invalid {
                    field: "compact",
                    expected: "flag (0 or 1)",
                },
            ),
            (
                q.replacen("numwant=25", "numwant=lots", 1),
                QueryError::Invalid {
                    field: "numwant",
                    expected: "integer",
                },
            ),
        ];
        for (query, err) in cases {
            assert_eq!(parse_announce_query(&query), Err(err.clone()), "{query}");
            assert!(err.to_string().contains(err.field()));
        }
        assert_eq!(
            parse_announce_query(""),
            Err(QueryError::Missing("info_hash"))
        );
        assert_eq!(
            parse_announce_query("&&=&==&%%"),
            Err(QueryError::Missing("info_hash"))
        );
        // Negative numwant means "default"; huge numwant saturates.
        let neg = parse_announce_query(&q.replacen("numwant=25", "numwant=-1", 1)).expect("ok");
        assert_eq!(neg.numwant, None);
        let huge = parse_announce_query(&q.replacen("numwant=25", "numwant=99999999999", 1));
        assert_eq!(huge.map(|r| r.numwant), Ok(Some(u32::MAX)));
    }

    #[test]
    fn scrape_queries() {
        let a = percent_encode(&[1; 20]);
        let b = percent_encode(&[2; 20]);
        let q = format!("info_hash={b}&info_hash={a}&info_hash={b}&x=1");
        assert_eq!(
            parse_scrape_query(&q),
            Ok(vec![InfoHash([1; 20]), InfoHash([2; 20])])
        );
        assert_eq!(parse_scrape_query(""), Ok(vec![]));
        assert_eq!(
            parse_scrape_query("info_hash=abc"),
            Err(QueryError::WrongLength {
                field: "info_hash",
                len: 3
            })
        );
        assert_eq!(
            parse_scrape_query("info_hash=%zz"),
            Err(QueryError::BadEscape("info_hash"))
        );
        let many = vec![format!("info_hash={a}"); MAX_SCRAPE_HASHES + 5].join("&");
        assert_eq!(
            parse_scrape_query(&many),
            Err(QueryError::TooManyInfoHashes {
                count: MAX_SCRAPE_HASHES + 5,
                max: MAX_SCRAPE_HASHES
            })
        );
    }

    fn sample_response() -> AnnounceResponse {
        AnnounceResponse {
            interval: 5,
            min_interval: 1,
            complete: 1,
            incomplete: 2,
            peers: vec![
                PeerInfo {
                    addr: "10.0.0.1:6881".parse().expect("addr"),
                    peer_id: Some([b'a'; 20]),
                },
                PeerInfo {
                    addr: "192.168.1.2:80".parse().expect("addr"),
                    peer_id: None,
                },
            ],
        }
    }

    #[test]
    fn compact_encoding_is_byte_exact() {
        let body = encode_announce_response(&sample_response(), true, false);
        let mut expected =
            b"d8:completei1e10:incompletei2e8:intervali5e12:min intervali1e5:peers12:".to_vec();
        expected.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1, 192, 168, 1, 2, 0, 80]);
        expected.push(b'e');
        assert_eq!(body, expected);
        let reply = parse_announce_reply(&body).expect("parses");
        assert_eq!(
            reply,
            AnnounceReply {
                interval: Some(5),
                min_interval: Some(1),
                peers: sample_response().peers.iter().map(|p| p.addr).collect(),
                complete: Some(1),
                incomplete: Some(2),
                warning: None,
            }
        );
    }

    #[test]
    fn ipv6_peers_go_to_peers6() {
        let mut resp = sample_response();
        let v6: SocketAddr = "[2001:db8::1]:51413".parse().expect("addr");
        resp.peers.push(PeerInfo {
            addr: v6,
            peer_id: Some([b'c'; 20]),
        });
        let body = encode_announce_response(&resp, true, false);
        let v = bencode::decode(&body).expect("bencode");
        assert_eq!(bencode::encode(&v), body, "canonical bencode: keys sorted");
        assert_eq!(
            v.get(b"peers").and_then(Value::as_bytes).map(<[u8]>::len),
            Some(12)
        );
        assert_eq!(
            v.get(b"peers6").and_then(Value::as_bytes).map(<[u8]>::len),
            Some(18)
        );
        let reply = parse_announce_reply(&body).expect("parses");
        assert_eq!(reply.peers.last(), Some(&v6));
        assert_eq!(reply.peers.len(), 3);
        // No peers6 key at all when there are no IPv6 peers.
        let v4only = bencode::decode(&encode_announce_response(&sample_response(), true, false));
        assert!(v4only.expect("bencode").get(b"peers6").is_none());
    }

    #[test]
    fn dictionary_peers() {
        let body = encode_announce_response(&sample_response(), false, false);
        let v = bencode::decode(&body).expect("bencode");
        let list = v.get(b"peers").and_then(Value::as_list).expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].get(b"ip").and_then(Value::as_str), Some("10.0.0.1"));
        assert_eq!(list[0].get(b"port").and_then(Value::as_int), Some(6881));
        assert_eq!(
            list[0].get(b"peer id").and_then(Value::as_bytes),
            Some(&[b'a'; 20][..])
        );
        assert!(
            list[1].get(b"peer id").is_none(),
            "a peer whose id the tracker did not keep"
        );
        let reply = parse_announce_reply(&body).expect("parses");
        assert_eq!(
            reply.peers,
            sample_response()
                .peers
                .iter()
                .map(|p| p.addr)
                .collect::<Vec<_>>()
        );
        let no_id = bencode::decode(&encode_announce_response(&sample_response(), false, true));
        let no_id = no_id.expect("bencode");
        let first = no_id
            .get(b"peers")
            .and_then(Value::as_list)
            .and_then(|l| l.first().cloned());
        assert!(first.expect("peer").get(b"peer id").is_none());
        // Foreign trackers may use host names or junk: those entries are skipped.
        let odd = b"d5:peersld2:ip9:some.host4:porti1eed2:ip7:1.2.3.44:porti99999eed2:ip7:1.2.3.44:porti7eeee";
        assert_eq!(
            parse_announce_reply(odd).expect("parses").peers,
            vec!["1.2.3.4:7".parse().expect("a")]
        );
    }

    #[test]
    fn failure_and_bad_replies() {
        let body = encode_failure("unknown torrent");
        assert_eq!(body, b"d14:failure reason15:unknown torrente".to_vec());
        match parse_announce_reply(&body) {
            Err(TrackerProtoError::Failure(r)) => assert_eq!(r, "unknown torrent"),
            other => panic!("expected failure, got {other:?}"),
        }
        assert!(matches!(
            parse_announce_reply(b"le"),
            Err(TrackerProtoError::NotADict)
        ));
        assert!(matches!(
            parse_announce_reply(b"d5:peers"),
            Err(TrackerProtoError::Bencode(_))
        ));
        assert!(matches!(
            parse_announce_reply(b"d5:peers5:abcdee"),
            Err(TrackerProtoError::BadCompactLength {
                field: "peers",
                len: 5,
                unit: 6
            })
        ));
        assert!(matches!(
            parse_announce_reply(b"d8:intervali5e5:peersi3ee"),
            Err(TrackerProtoError::WrongType("peers"))
        ));
        let warn =
            parse_announce_reply(b"d15:warning message3:hah8:intervali-5ee").expect("parses");
        assert_eq!(warn.warning.as_deref(), Some("hah"));
        assert_eq!(warn.interval, None);
        assert!(warn.peers.is_empty());
    }

    #[test]
    fn scrape_encoding_round_trip() {
        let mut stats = BTreeMap::new();
        stats.insert(
            InfoHash([b'x'; 20]),
            ScrapeStats {
                complete: 3,
                incomplete: 4,
                downloaded: 5,
            },
        );
        let body = encode_scrape_response(&stats);
        let expected = format!(
            "d5:filesd20:{}d8:completei3e10:downloadedi5e10:incompletei4eeee",
            "x".repeat(20)
        );
        assert_eq!(body, expected.into_bytes());
        assert_eq!(parse_scrape_reply(&body).expect("parses"), stats);
    }

    #[test]
    fn extension_keys_round_trip_and_are_checked() {
        let mut p = params([1; 20], [2; 20]);
        assert_eq!(
            parse_announce_extensions(&announce_query(&p)).expect("parses"),
            AnnounceExtensions::default(),
            "no keys, no extensions"
        );
        p.ext = AnnounceExtensions {
            pieces: Some(vec![0xf0, 0x0a, 0x80]),
            status_port: Some(7070),
        };
        let q = announce_query(&p);
        assert!(q.ends_with("&pieces=f00a80&status_port=7070"), "{q}");
        assert_eq!(parse_announce_extensions(&q).expect("parses"), p.ext);
        // The standard parser ignores the keys, so other trackers see a plain announce.
        assert_eq!(parse_announce_query(&q).expect("parses").left, 3);
        // Too long a bitfield is left out by the client.
        p.ext.pieces = Some(vec![0xff; MAX_ANNOUNCED_BITFIELD + 1]);
        assert!(!announce_query(&p).contains("pieces="));
        for bad in [
            "pieces=abc",
            "pieces=zz",
            "status_port=0",
            "status_port=70000",
            "status_port=x",
            "pieces=00&pieces=00",
        ] {
            assert!(parse_announce_extensions(bad).is_err(), "{bad}");
        }
        let long = format!("pieces={}", "ab".repeat(MAX_ANNOUNCED_BITFIELD + 1));
        assert!(matches!(
            parse_announce_extensions(&long),
            Err(QueryError::Invalid {
                field: "pieces",
                ..
            })
        ));
        assert_eq!(
            parse_announce_extensions("pieces=ABff")
                .expect("either case")
                .pieces,
            Some(vec![0xab, 0xff])
        );
    }
}
