//! Values a front end reads from its user or makes for a run: the tracker URL and a peer id. (Byte counts
//! and rates are read by [`crate::byte_size`].)

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
    let base = parsed.base_url();
    Ok(TrackerUrls {
        announce: format!("{base}/announce"),
        base,
    })
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
    fn peer_ids_are_prefixed_and_vary() {
        let a = peer_id_from_seed(1);
        let b = peer_id_from_seed(2);
        assert_eq!(&a[..8], b"-EJ0100-");
        assert_ne!(a, b);
        assert_eq!(a, peer_id_from_seed(1));
        assert!(a.iter().all(u8::is_ascii_graphic));
    }
}
