//! Magnet URIs (BEP 9): `magnet:?xt=urn:btih:HASH&dn=NAME&tr=URL&x.pe=HOST:PORT`.
//!
//! [`Magnet::parse`] reads the info hash in hex (40 digits) or base32 (32 letters), the display name, every
//! tracker and every peer hint, with the limits of [`LIMITS`] checked before anything is kept. Unknown keys are
//! ignored (other clients add their own); a known key with a value that cannot be read is an error, so a typo
//! in a hash is reported rather than silently opening the wrong swarm. [`Magnet::to_uri`] writes the URI back
//! in the canonical form (hex hash, percent-encoded values) that `peer create` prints.
//!
//! The base32 decoder is our own: it decodes exactly one fixed-size value (32 letters to 20 bytes), which is
//! less code than the glue a general crate would need.

use crate::bencode::{self, Value};
use crate::metainfo::{InfoHash, Metainfo, MetainfoError};
use crate::tracker::proto::{percent_decode, percent_encode};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Limits on what a magnet URI may carry; anything larger is refused before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MagnetLimits {
    /// Longest URI accepted, in bytes.
    pub max_uri_len: usize,
    /// Most `tr` parameters kept.
    pub max_trackers: usize,
    /// Most `x.pe` peer hints kept.
    pub max_peer_hints: usize,
    /// Longest display name, in bytes after percent-decoding.
    pub max_name_len: usize,
}

/// The limits [`Magnet::parse`] applies.
pub const LIMITS: MagnetLimits = MagnetLimits {
    max_uri_len: 16 * 1024,
    max_trackers: 64,
    max_peer_hints: 200,
    max_name_len: 1024,
};

/// The parts of a magnet URI enjambre uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The torrent's info hash (`xt=urn:btih:`).
    pub info_hash: InfoHash,
    /// The display name (`dn`), if given.
    pub name: Option<String>,
    /// Tracker URLs (`tr`), in the order given, without repeats.
    pub trackers: Vec<String>,
    /// Peers to try first (`x.pe`).
    pub peers: Vec<SocketAddr>,
}

/// Why a string is not a usable magnet URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// It does not start with `magnet:?`.
    #[error("not a magnet URI (it must start with 'magnet:?')")]
    NotMagnet,
    /// Longer than [`MagnetLimits::max_uri_len`].
    #[error("magnet URI is {len} bytes, more than the limit of {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No `xt=urn:btih:` parameter.
    #[error("magnet URI has no 'xt=urn:btih:' info hash")]
    MissingInfoHash,
    /// Two `xt=urn:btih:` parameters that disagree.
    #[error("magnet URI names two different info hashes")]
    ConflictingInfoHash,
    /// The hash is neither 40 hex digits nor 32 base32 letters.
    #[error("info hash '{0}' is neither 40 hex digits nor 32 base32 letters")]
    BadInfoHash(String),
    /// A value has a `%` not followed by two hex digits, or the name is not UTF-8.
    #[error("parameter '{0}' is not correctly percent-encoded text")]
    BadEncoding(String),
    /// The name is longer than [`MagnetLimits::max_name_len`].
    #[error("display name longer than {0} bytes")]
    NameTooLong(usize),
    /// More `tr` parameters than [`MagnetLimits::max_trackers`].
    #[error("more than {0} trackers")]
    TooManyTrackers(usize),
    /// More `x.pe` parameters than [`MagnetLimits::max_peer_hints`].
    #[error("more than {0} peer hints")]
    TooManyPeers(usize),
    /// An `x.pe` value that is not `IP:PORT` (IPv6 in brackets).
    #[error("peer hint '{0}' is not IP:PORT")]
    BadPeer(String),
}

const PREFIX: &str = "magnet:?";
const BTIH: &str = "urn:btih:";

impl Magnet {
    /// A magnet for `info_hash` with nothing else in it.
    pub fn new(info_hash: InfoHash) -> Magnet {
        Magnet {
            info_hash,
            name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Parse a magnet URI (see the module documentation for what is accepted).
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > LIMITS.max_uri_len {
            return Err(MagnetError::TooLong {
                len: uri.len(),
                max: LIMITS.max_uri_len,
            });
        }
        let query = uri
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .and_then(|_| uri.get(PREFIX.len()..))
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut name = None;
        let mut trackers: Vec<String> = Vec::new();
        let mut peers = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "xt" => {
                    let value = decode_text(key, raw)?;
                    // Other URNs (btmh, ed2k...) may sit beside the btih one: skip them.
                    let Some(hash) = strip_prefix_ignore_case(&value, BTIH) else {
                        continue;
                    };
                    let hash = parse_info_hash(hash)?;
                    if info_hash.is_some_and(|h| h != hash) {
                        return Err(MagnetError::ConflictingInfoHash);
                    }
                    info_hash = Some(hash);
                }
                "dn" => {
                    let text = decode_text(key, &raw.replace('+', " "))?;
                    if text.len() > LIMITS.max_name_len {
                        return Err(MagnetError::NameTooLong(LIMITS.max_name_len));
                    }
                    name = Some(text);
                }
                "tr" => {
                    let url = decode_text(key, raw)?;
                    if !trackers.contains(&url) {
                        if trackers.len() == LIMITS.max_trackers {
                            return Err(MagnetError::TooManyTrackers(LIMITS.max_trackers));
                        }
                        trackers.push(url);
                    }
                }
                "x.pe" => {
                    let text = decode_text(key, raw)?;
                    let addr = text
                        .parse::<SocketAddr>()
                        .map_err(|_| MagnetError::BadPeer(text.clone()))?;
                    if peers.len() == LIMITS.max_peer_hints {
                        return Err(MagnetError::TooManyPeers(LIMITS.max_peer_hints));
                    }
                    peers.push(addr);
                }
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::MissingInfoHash)?,
            name,
            trackers,
            peers,
        })
    }

    /// The magnet of a torrent: its info hash, name, and every tracker it lists (`announce`, then the
    /// `announce-list` tiers in order), as `peer create` prints it.
    pub fn of(meta: &Metainfo) -> Magnet {
        let mut trackers: Vec<String> = Vec::new();
        for t in meta
            .announce
            .iter()
            .chain(meta.announce_list.iter().flatten())
        {
            if !trackers.contains(t) && trackers.len() < LIMITS.max_trackers {
                trackers.push(t.clone());
            }
        }
        Magnet {
            info_hash: meta.info_hash,
            name: Some(meta.info.name.clone()),
            trackers,
            peers: Vec::new(),
        }
    }

    /// The torrent file for metadata fetched for this magnet: `fetched`'s info dictionary, byte for byte
    /// (so the info hash stays), with this magnet's trackers as `announce` and one `announce-list` tier
    /// each (BEP 12), so that a download resumed from the stored file announces where the magnet said.
    pub fn metainfo(&self, fetched: &Metainfo) -> Result<Metainfo, MetainfoError> {
        let span = bencode::dict_value_span(&fetched.raw, b"info")?
            .ok_or(MetainfoError::MissingField("info"))?;
        let info = fetched
            .raw
            .get(span)
            .ok_or(MetainfoError::MissingField("info"))?;
        let mut head = BTreeMap::new();
        if let Some(first) = self.trackers.first() {
            head.insert(
                b"announce".to_vec(),
                Value::Bytes(first.as_bytes().to_vec()),
            );
            let tiers = self
                .trackers
                .iter()
                .map(|t| Value::List(vec![Value::Bytes(t.as_bytes().to_vec())]))
                .collect();
            head.insert(b"announce-list".to_vec(), Value::List(tiers));
        }
        // Keys are sorted and "info" comes after both: splice the raw info bytes in before the final `e`.
        let mut raw = bencode::encode(&Value::Dict(head));
        raw.pop();
        raw.extend_from_slice(b"4:info");
        raw.extend_from_slice(info);
        raw.push(b'e');
        Metainfo::from_bytes(&raw)
    }

    /// The canonical URI: hex hash, then `dn`, every `tr` and every `x.pe`, values percent-encoded.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("{PREFIX}xt={BTIH}{}", self.info_hash.to_hex());
        if let Some(name) = &self.name {
            uri.push_str("&dn=");
            uri.push_str(&percent_encode(name.as_bytes()));
        }
        for tr in &self.trackers {
            uri.push_str("&tr=");
            uri.push_str(&percent_encode(tr.as_bytes()));
        }
        for pe in &self.peers {
            uri.push_str("&x.pe=");
            uri.push_str(&percent_encode(pe.to_string().as_bytes()));
        }
        uri
    }
}

impl std::fmt::Display for Magnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl std::str::FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Magnet, MagnetError> {
        Magnet::parse(s)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .and_then(|_| text.get(prefix.len()..))
}

fn decode_text(key: &str, raw: &str) -> Result<String, MagnetError> {
    percent_decode(raw)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| MagnetError::BadEncoding(key.to_string()))
}

/// An info hash as 40 hex digits or 32 base32 letters (RFC 4648 alphabet, either case).
fn parse_info_hash(text: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(text.chars().take(64).collect());
    match text.len() {
        40 => InfoHash::from_hex(text).ok_or_else(bad),
        32 => base32_20(text).map(InfoHash).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Decode exactly 32 base32 letters into 20 bytes.
fn base32_20(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    let mut at = 0usize;
    for c in text.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(at)? = (acc >> bits) as u8;
            at += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (at == out.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn hex_and_base32_name_the_same_hash() {
        let hex = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}")).unwrap();
        // The same 20 bytes in RFC 4648 base32.
        let b32 = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(hex.info_hash.to_hex(), HEX);
        assert_eq!(b32.info_hash, hex.info_hash);
        let lower = Magnet::parse("MAGNET:?xt=URN:BTIH:yex6dqdlxisuvhoj6um3gnnkpqjwpkek").unwrap();
        assert_eq!(lower.info_hash, hex.info_hash);
    }

    #[test]
    fn name_trackers_and_peer_hints_are_read() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=My+file%20v2.iso&tr=http%3A%2F%2Ft1%2Fannounce\
             &tr=udp://t2:80&tr=udp://t2:80&x.pe=10.0.0.1:6881&x.pe=%5B::1%5D:7000&so=0-3&xl=99"
        ))
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("My file v2.iso"));
        assert_eq!(m.trackers, vec!["http://t1/announce", "udp://t2:80"]);
        assert_eq!(
            m.peers,
            vec![
                "10.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "[::1]:7000".parse().unwrap()
            ]
        );
    }

    #[test]
    fn to_uri_round_trips() {
        let m = Magnet {
            info_hash: InfoHash([7; 20]),
            name: Some("a b&c=d".into()),
            trackers: vec!["http://127.0.0.1:8080/announce?x=1".into()],
            peers: vec!["[::1]:6881".parse().unwrap(), "1.2.3.4:5".parse().unwrap()],
        };
        let uri = m.to_uri();
        assert!(uri.starts_with("magnet:?xt=urn:btih:0707"), "{uri}");
        assert_eq!(Magnet::parse(&uri).unwrap(), m);
        assert_eq!(uri.parse::<Magnet>().unwrap(), m);
    }

    #[test]
    fn bad_input_is_named() {
        let xt = format!("xt=urn:btih:{HEX}");
        let mut cases: Vec<(String, MagnetError)> = vec![
            ("http://x".into(), MagnetError::NotMagnet),
            ("magnet:?dn=x".into(), MagnetError::MissingInfoHash),
            (
                "magnet:?xt=urn:btih:abcd".into(),
                MagnetError::BadInfoHash("abcd".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{}", "1".repeat(32)),
                MagnetError::BadInfoHash("1".repeat(32)),
            ),
            (
                format!("magnet:?{xt}&xt=urn:btih:{}", "0".repeat(40)),
                MagnetError::ConflictingInfoHash,
            ),
            (
                format!("magnet:?{xt}&dn=%zz"),
                MagnetError::BadEncoding("dn".into()),
            ),
            (
                format!("magnet:?{xt}&dn=%ff"),
                MagnetError::BadEncoding("dn".into()),
            ),
            (
                format!("magnet:?{xt}&x.pe=host:1"),
                MagnetError::BadPeer("host:1".into()),
            ),
            (
                format!("magnet:?{xt}&dn={}", "a".repeat(2000)),
                MagnetError::NameTooLong(LIMITS.max_name_len),
            ),
            (
                format!("magnet:?{xt}{}", "&x.pe=1.1.1.1:1".repeat(201)),
                MagnetError::TooManyPeers(LIMITS.max_peer_hints),
            ),
            (
                format!(
                    "magnet:?{xt}{}",
                    (0..65).map(|i| format!("&tr=u{i}")).collect::<String>()
                ),
                MagnetError::TooManyTrackers(LIMITS.max_trackers),
            ),
        ];
        let long = format!("magnet:?{xt}&x={}", "a".repeat(17000));
        let too_long = MagnetError::TooLong {
            len: long.len(),
            max: LIMITS.max_uri_len,
        };
        cases.push((long, too_long));
        for (uri, want) in cases {
            assert_eq!(
                Magnet::parse(&uri),
                Err(want),
                "{}",
                &uri[..uri.len().min(80)]
            );
        }
    }

    #[test]
    fn other_urns_beside_btih_are_skipped() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btmh:1220abcd&xt=urn:btih:{HEX}&&foo"
        ))
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
    }

    #[test]
    fn fetched_metadata_becomes_a_torrent_with_the_magnets_trackers() {
        let files = vec![crate::metainfo::FileEntry {
            path: vec!["a.bin".into()],
            length: 20,
        }];
        let plain = crate::metainfo::build("a.bin", 16 * 1024, files, vec![[3; 20]], None).unwrap();
        let mut m = Magnet::new(plain.info_hash);
        m.trackers = vec!["http://t1/announce".into(), "udp://t2:80".into()];
        let meta = m.metainfo(&plain).unwrap();
        assert_eq!(
            meta.info_hash, plain.info_hash,
            "the info bytes are kept exactly"
        );
        assert_eq!(meta.info, plain.info);
        assert_eq!(meta.announce.as_deref(), Some("http://t1/announce"));
        assert_eq!(
            meta.announce_list,
            vec![
                vec!["http://t1/announce".to_string()],
                vec!["udp://t2:80".to_string()]
            ]
        );
        let back = Magnet::of(&meta);
        assert_eq!(
            back.trackers, m.trackers,
            "announce first, then the tiers, without repeats"
        );
        assert_eq!(back.name.as_deref(), Some("a.bin"));
        assert_eq!(Magnet::parse(&back.to_uri()).unwrap(), back);
        let bare = Magnet::new(plain.info_hash).metainfo(&plain).unwrap();
        assert_eq!(bare.announce, None);
        assert_eq!(bare.info_hash, plain.info_hash);
    }
}
