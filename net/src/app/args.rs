//! Values a front end reads from its user: the tracker URL, byte counts and rates, and a peer id for a run.

use super::AppError;
use crate::tracker_client::{HttpUrl, TrackerClientError};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A tracker URL in both forms the peer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerUrls {
    /// The announce URL (`BASE/announce`, or a `udp://` one).
    pub announce: String,
    /// The base URL of the catalog (`BASE`, where `/files` and `/swarm` live).
    pub base: String,
}

/// Accept `http://host:port`, `http://host:port/announce` (or `host:port`, taken as `http://`), with or
/// without a trailing `/`: the base is the URL minus a trailing `/announce`.
pub fn normalize_tracker_url(url: &str) -> Result<TrackerUrls, AppError> {
    let bad = |reason: &str| AppError::BadTrackerUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let t = url.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    let full = if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    let parsed = HttpUrl::parse(&full).map_err(|e| match e {
        TrackerClientError::BadUrl { reason, .. } => bad(reason),
        other => bad(&other.to_string()),
    })?;
    if parsed.query.is_some() || full.contains('#') {
        return Err(bad("a query or fragment is not supported"));
    }
    let trimmed = full.trim_end_matches('/');
    let base = trimmed
        .strip_suffix("/announce")
        .unwrap_or(trimmed)
        .trim_end_matches('/')
        .to_string();
    Ok(TrackerUrls {
        announce: format!("{base}/announce"),
        base,
    })
}

/// Why a byte count or rate was refused by [`parse_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {0:?} as a byte count (examples: 1000000, 500KB, 20MB, 512KiB, 1GiB)")]
pub struct BytesError(String);

/// Parse a byte count or rate such as `"1000000"`, `"20MB"`, `"20MB/s"`, `"512KiB"`, `"1.5M"`: `K`/`KB`, `M`/`MB`,
/// `G`/`GB` are decimal (1000), `KiB`, `MiB`, `GiB` binary (1024); case-insensitive. Must be more than 0.
pub fn parse_bytes(text: &str) -> Result<u64, BytesError> {
    let err = || BytesError(text.to_string());
    let t = text.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("/S"))
        .unwrap_or(t);
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(end);
    let multiplier: f64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let bytes = (value * multiplier).round();
    if !(1.0..=1e18).contains(&bytes) {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// A peer id `-EJ0100-` followed by 12 characters drawn from a ChaCha8 generator seeded with `seed`.
pub fn peer_id_from_seed(seed: u64) -> [u8; 20] {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut id = *b"-EJ0100-000000000000";
    for slot in id.iter_mut().skip(8) {
        *slot = ALPHABET[(rng.next_u32() % 36) as usize];
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_urls_are_normalised() {
        let want = TrackerUrls {
            announce: "http://10.0.0.5:6969/announce".into(),
            base: "http://10.0.0.5:6969".into(),
        };
        for url in [
            "http://10.0.0.5:6969",
            "http://10.0.0.5:6969/",
            "http://10.0.0.5:6969/announce",
            "http://10.0.0.5:6969/announce/",
            " 10.0.0.5:6969 ",
            "10.0.0.5:6969/announce",
        ] {
            assert_eq!(normalize_tracker_url(url).unwrap(), want, "{url}");
        }
        let sub = normalize_tracker_url("http://t.lan/swarm/announce").unwrap();
        assert_eq!(sub.base, "http://t.lan/swarm");
        assert_eq!(sub.announce, "http://t.lan/swarm/announce");
        let v6 = normalize_tracker_url("http://[::1]:7000").unwrap();
        assert_eq!(v6.announce, "http://[::1]:7000/announce");
        for bad in [
            "",
            "https://t.lan/announce",
            "http://:6969",
            "http://t.lan:0",
            "http://t.lan:99999",
            "http://t.lan/announce?passkey=1",
            "ftp://t.lan",
        ] {
            assert!(
                matches!(
                    normalize_tracker_url(bad),
                    Err(AppError::BadTrackerUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn byte_counts_and_rates() {
        let ok = [
            ("1", 1),
            ("1000000", 1_000_000),
            ("20MB", 20_000_000),
            ("20mb/s", 20_000_000),
            ("16M", 16_000_000),
            ("512KiB", 512 * 1024),
            ("512 kib", 512 * 1024),
            ("1.5MB", 1_500_000),
            ("2G", 2_000_000_000),
            ("1GiB", 1 << 30),
            ("100k", 100_000),
        ];
        for (text, want) in ok {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        for bad in ["", "0", "MB", "-5", "1.2.3", "12 parsecs", "1e3", "0.0001"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_ids_are_prefixed_and_vary() {
        let a = peer_id_from_seed(1);
        let b = peer_id_from_seed(2);
        assert_eq!(&a[..8], b"-EJ0100-");
        assert_ne!(a, b);
        assert_eq!(a, peer_id_from_seed(1));
        assert!(a.iter().all(u8::is_ascii_graphic));
    }
}
