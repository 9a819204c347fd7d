//! Which tracker to announce to (BEP 12): the `announce-list` tiers, each shuffled once, tried in order; a
//! tracker that answers moves to the front of its tier. `http://` and `udp://` (BEP 15) trackers are used;
//! other schemes (`https://`, `wss://`) are skipped rather than failing the announce.

use rand_core::RngCore;

/// The trackers of one torrent, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerTiers {
    tiers: Vec<Vec<String>>,
}

fn usable(url: &str) -> bool {
    let has = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    has("http://") || has("udp://")
}

impl TrackerTiers {
    /// Tiers from a metainfo's `announce-list` (or its single `announce` when the list is empty), keeping
    /// only usable trackers, each tier shuffled with `rng` as BEP 12 asks.
    pub fn new(
        announce: Option<&str>,
        announce_list: &[Vec<String>],
        rng: &mut impl RngCore,
    ) -> TrackerTiers {
        let mut tiers: Vec<Vec<String>> = if announce_list.iter().any(|t| !t.is_empty()) {
            announce_list.to_vec()
        } else {
            announce
                .map(|a| vec![vec![a.to_string()]])
                .unwrap_or_default()
        };
        for tier in &mut tiers {
            tier.retain(|u| usable(u));
            // Fisher-Yates with the caller's seeded RNG.
            for i in (1..tier.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                tier.swap(i, j);
            }
        }
        tiers.retain(|t| !t.is_empty());
        TrackerTiers { tiers }
    }

    /// A single tracker (the user's `--tracker`).
    pub fn single(url: &str) -> TrackerTiers {
        TrackerTiers {
            tiers: vec![vec![url.to_string()]],
        }
    }

    /// Whether there is any tracker to announce to.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Every tracker in the order to try them.
    pub fn candidates(&self) -> Vec<String> {
        self.tiers.iter().flatten().cloned().collect()
    }

    /// `url` answered: it goes first in its tier.
    pub fn promote(&mut self, url: &str) {
        for tier in &mut self.tiers {
            if let Some(i) = tier.iter().position(|u| u == url) {
                let u = tier.remove(i);
                tier.insert(0, u);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn list(tiers: &[&[&str]]) -> Vec<Vec<String>> {
        tiers
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn tiers_are_tried_in_order_and_unsupported_schemes_are_skipped() {
        let l = list(&[
            &["https://a:1/announce", "http://b/announce"],
            &["wss://w/announce", "udp://c:80/announce"],
        ]);
        let t = TrackerTiers::new(
            Some("http://ignored/announce"),
            &l,
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert_eq!(
            t.candidates(),
            vec!["http://b/announce", "udp://c:80/announce"]
        );
    }

    #[test]
    fn single_announce_is_used_without_a_list_and_https_only_means_none() {
        let t = TrackerTiers::new(
            Some("http://x/announce"),
            &[],
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert_eq!(t.candidates(), vec!["http://x/announce"]);
        let t = TrackerTiers::new(Some("https://x/a"), &[], &mut ChaCha8Rng::seed_from_u64(1));
        assert!(t.is_empty());
        let t = TrackerTiers::new(Some("UDP://x:80"), &[], &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(t.candidates(), vec!["UDP://x:80"]);
    }

    #[test]
    fn shuffle_is_seeded_and_a_working_tracker_moves_first() {
        let l = list(&[&["http://1/a", "http://2/a", "http://3/a", "http://4/a"]]);
        let a = TrackerTiers::new(None, &l, &mut ChaCha8Rng::seed_from_u64(9));
        let b = TrackerTiers::new(None, &l, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a, b, "same seed, same order");
        let mut c = a.clone();
        let last = c.candidates()[3].clone();
        c.promote(&last);
        assert_eq!(c.candidates()[0], last);
        assert_eq!(c.candidates().len(), 4);
    }
}
