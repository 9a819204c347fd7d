//! Swarm measures of a run, for the flash-crowd studies (issue 14): how close the last completion came to the
//! optimum, how much of the upload capacity worked while someone wanted data, how fast pieces spread, and how
//! much the seeds gave.
//!
//! Everything is computed from what the run recorded in the [`World`] (each peer's verified pieces with their
//! times, its upload counter sampled over time, its completion) and from the scenario's rates, never from the
//! network engine's internals, so any engine that fills the world gets the same measures.
//!
//! A peer "had something a connected neighbour wanted" in a time bin when one of its connections open during
//! the bin (recorded from its node's events, [`crate::world::Link`]) led to a downloader lacking a piece it
//! held at the bin's start. A peer without an upload cap has no capacity to count, so it is left out of the
//! utilisation.

use crate::scenario::{PeerSpec, Scenario};
use crate::world::{Link, World};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Width of the bins of the time series.
const BIN: Duration = Duration::from_millis(250);

/// The measures of one single-file swarm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmMeasures {
    /// The file the swarm shares.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Kumar and Ross's minimum distribution time for the peers that started at 0:
    /// `max(F/u_seed, F/d_min, N·F/(u_seed + Σu_i))`, in seconds (none when a rate is unlimited).
    pub optimum_seconds: Option<f64>,
    /// The last completion among those peers, in seconds.
    pub last_completion_seconds: Option<f64>,
    /// When the download started: the seeds' first payload byte out, in seconds, taken early by one sampling
    /// period of the upload counters (so that the ratio errs long). Before it the peers find each other
    /// (catalog, tracker, handshakes), which the optimum does not model.
    pub start_seconds: Option<f64>,
    /// The download's duration (last completion less the start) over the optimum.
    pub optimum_ratio: Option<f64>,
    /// Download times per bandwidth class, sorted: the CDF's steps.
    pub download_times: BTreeMap<String, Vec<f64>>,
    /// Bytes uploaded over the upload capacity of the peers that held a piece a running, incomplete peer
    /// connected to them lacked, from the instant every downloader held a piece to the last completion.
    pub utilisation: Option<f64>,
    /// The same ratio per bin: (bin start in seconds, ratio); bins where nobody had anything wanted are left
    /// out.
    pub utilisation_over_time: Vec<(f64, f64)>,
    /// Copies of each piece held by running peers, per bin: (bin start, min, mean, max).
    pub copies_over_time: Vec<(f64, u32, f64, u32)>,
    /// When every piece was first held by some peer other than the seeds (the seeds had sent one full copy;
    /// Legout et al.'s transient state), in seconds.
    pub seed_copy_seconds: Option<f64>,
    /// The download's first part: from the start to the seeds' first full copy (`seed_copy_seconds` less
    /// `start_seconds`), in seconds.
    pub first_copy_seconds: Option<f64>,
    /// What bounds that part: the file over the seeds' upload (`F/u_seed`), in seconds.
    pub first_copy_bound_seconds: Option<f64>,
    /// The download's second part, the tail: from the seeds' first full copy to the last completion.
    pub tail_seconds: Option<f64>,
    /// What bounds the tail with pieces: the piece the seeds sent last reaches its first downloader when the
    /// copy is out, and a downloader can pass a piece on only once it holds it whole, so it then needs hops of
    /// one piece time each (piece size over the crowd's mean upload rate), the holders doubling at each hop
    /// (each passes it to one peer) and the seeds adding one each, until every downloader holds it.
    pub tail_bound_seconds: Option<f64>,
    /// The tail's other bound: the pieces the downloaders still lacked when the seeds' first copy was out,
    /// over the upload capacity of the whole swarm (seeds and downloaders), in seconds. A tail above both
    /// bounds is lost to idle capacity in the tail; a backlog above the hop bound was lost before it, by
    /// capacity that idled while the seeds sent their first copy.
    pub tail_backlog_seconds: Option<f64>,
    /// Bytes the seeds uploaded over the file size.
    pub seed_copies: f64,
    /// Per bandwidth class: bytes received and bytes sent.
    pub class_bytes: BTreeMap<String, ClassBytes>,
}

impl SwarmMeasures {
    /// One line of the figures that matter most.
    pub fn headline(&self) -> String {
        let secs = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2} s"));
        let ratio = self
            .optimum_ratio
            .map_or(String::new(), |r| format!(" ({r:.2}x)"));
        let util = self
            .utilisation
            .map_or("-".to_string(), |u| format!("{:.0}%", u * 100.0));
        format!(
            "swarm: last completion {} (started {}), optimum {}{ratio}; upload utilisation {util}; \
             seeds sent one copy by {}; seed copies {:.2}",
            secs(self.last_completion_seconds),
            secs(self.start_seconds),
            secs(self.optimum_seconds),
            secs(self.seed_copy_seconds),
            self.seed_copies
        )
    }
}

/// What one bandwidth class received and sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassBytes {
    /// Peers in the class.
    pub peers: u32,
    /// Payload bytes they received.
    pub received: u64,
    /// Payload bytes they sent.
    pub sent: u64,
}

/// The class a peer belongs to: its upload and download caps.
fn class_of(spec: &PeerSpec) -> String {
    let rate = |r: Option<crate::scenario::Size>| {
        r.map_or("unlimited".to_string(), |s| {
            format!("{:.0} KB/s", s.0 as f64 / 1000.0)
        })
    };
    let role = if spec.get.is_empty() {
        "seed"
    } else {
        "leecher"
    };
    format!(
        "{role} up {} down {}",
        rate(spec.upload_rate),
        rate(spec.download_rate)
    )
}

/// Hops of one piece time until `downloaders` hold a piece that one of them holds at the start, when at each
/// hop every holder passes it to one more and each of the `seeds` sends it to one more too.
fn hops_to_reach(downloaders: usize, seeds: usize) -> u32 {
    let (mut holders, mut hops) = (1usize, 0);
    while holders < downloaders {
        holders = holders * 2 + seeds;
        hops += 1;
    }
    hops
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Which peer held which piece at the instant the bin loop of [`measure`] has reached, kept so that every
/// question it asks per bin is a count or a few words of bits, not a scan of peers times pieces (a 1,000-peer
/// crowd asked "does any downloader lack a piece this peer holds" a million times a bin).
struct Holdings {
    /// Per peer, its pieces as bits.
    bits: Vec<Vec<u64>>,
    /// Per peer, how many pieces it holds.
    counts: Vec<u32>,
    /// Per piece, how many peers other than the seeds hold it.
    others: Vec<u32>,
    /// Pieces some peer other than the seeds holds.
    others_cover: usize,
}

impl Holdings {
    fn new(peers: usize, pieces: usize) -> Holdings {
        Holdings {
            bits: vec![vec![0; pieces.div_ceil(64)]; peers],
            counts: vec![0; peers],
            others: vec![0; pieces],
            others_cover: 0,
        }
    }

    /// Peer `i` holds piece `k` from now on (`other`: it is not a seed of the file).
    fn add(&mut self, i: usize, k: usize, other: bool) {
        let (word, bit) = (k / 64, 1u64 << (k % 64));
        if self.bits[i][word] & bit != 0 {
            return;
        }
        self.bits[i][word] |= bit;
        self.counts[i] += 1;
        if other {
            self.others[k] += 1;
            if self.others[k] == 1 {
                self.others_cover += 1;
            }
        }
    }

    fn get(&self, i: usize, k: usize) -> bool {
        self.bits[i][k / 64] & (1u64 << (k % 64)) != 0
    }

    fn count(&self, i: usize) -> u32 {
        self.counts[i]
    }

    /// Every piece is held by some peer other than the seeds.
    fn all_held_by_others(&self) -> bool {
        self.others_cover == self.others.len()
    }

    /// Peer `i` holds a piece that peer `j` lacks.
    fn holds_one_lacked(&self, i: usize, j: usize) -> bool {
        self.counts[i] > self.counts[j]
            || self.bits[i]
                .iter()
                .zip(&self.bits[j])
                .any(|(a, b)| a & !b != 0)
    }
}

/// The measures of the run, when the scenario is one file shared by seeds and downloaders.
pub fn measure(scenario: &Scenario, w: &World, elapsed: Duration) -> Option<SwarmMeasures> {
    let [file] = scenario.files.as_slice() else {
        return None;
    };
    let seeds: Vec<&PeerSpec> = scenario
        .peers
        .iter()
        .filter(|p| p.has.contains(&file.name))
        .collect();
    let leechers: Vec<&PeerSpec> = scenario
        .peers
        .iter()
        .filter(|p| p.get.contains(&file.name))
        .collect();
    if seeds.is_empty() || leechers.is_empty() {
        return None;
    }
    let size = file.size.0;
    let pieces = scenario
        .peers
        .iter()
        .filter_map(|p| w.peers.get(&p.name)?.stats.get(&file.name))
        .map(|s| s.pieces_total)
        .max()?;
    let completed = |p: &PeerSpec| {
        w.peers
            .get(&p.name)
            .and_then(|l| l.completed_at.get(&file.name))
            .map(Duration::as_secs_f64)
    };

    // The optimum, for the crowd that starts at once.
    let crowd: Vec<&&PeerSpec> = leechers.iter().filter(|p| !p.delayed).collect();
    let seed_up: Option<f64> = seeds
        .iter()
        .map(|p| p.upload_rate.map(|r| r.0 as f64))
        .sum();
    let leech_up: Option<f64> = crowd
        .iter()
        .map(|p| p.upload_rate.map(|r| r.0 as f64))
        .sum();
    let d_min = crowd
        .iter()
        .filter_map(|p| p.download_rate.map(|r| r.0 as f64))
        .fold(f64::INFINITY, f64::min);
    let f = size as f64;
    let optimum = match (seed_up, leech_up) {
        (Some(us), Some(ul)) if us > 0.0 => Some(
            (f / us)
                .max(f / d_min)
                .max(crowd.len() as f64 * f / (us + ul)),
        ),
        _ => None,
    };
    let tail_bound = leech_up.filter(|&ul| ul > 0.0).map(|ul| {
        let piece_time = size.div_ceil(u64::from(pieces)) as f64 / (ul / crowd.len() as f64);
        piece_time * f64::from(hops_to_reach(crowd.len(), seeds.len()))
    });
    let crowd_done: Vec<Option<f64>> = crowd.iter().map(|p| completed(p)).collect();
    let last = if crowd_done.iter().all(Option::is_some) {
        crowd_done
            .iter()
            .flatten()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    } else {
        None
    };

    let start = seeds
        .iter()
        .filter_map(|p| w.peers.get(&p.name)?.uploads.iter().find(|(_, b)| *b > 0))
        .map(|(t, _)| t.saturating_sub(crate::host::OBSERVE_EVERY).as_secs_f64())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));

    let mut download_times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in &leechers {
        if let Some(t) = completed(p) {
            download_times
                .entry(class_of(p))
                .or_default()
                .push(round3(t));
        }
    }
    for v in download_times.values_mut() {
        v.sort_by(f64::total_cmp);
    }

    // Who held which piece when: seeds from the start, downloaders as they verified.
    let mut held: Vec<(Duration, usize, u32)> = Vec::new();
    for (i, p) in scenario.peers.iter().enumerate() {
        if p.has.contains(&file.name) {
            held.extend((0..pieces).map(|k| (Duration::ZERO, i, k)));
        } else if let Some(l) = w.peers.get(&p.name) {
            held.extend(
                l.pieces_at
                    .iter()
                    .filter(|(_, f, _)| *f == file.name)
                    .map(|(t, _, k)| (*t, i, *k)),
            );
        }
    }
    held.sort();
    let n = scenario.peers.len();
    let seeds_of_file: Vec<bool> = scenario
        .peers
        .iter()
        .map(|p| p.has.contains(&file.name))
        .collect();
    let mut have = Holdings::new(n, pieces as usize);
    let mut next = 0;
    let uploaded_at = |i: usize, t: Duration| -> u64 {
        w.peers.get(&scenario.peers[i].name).map_or(0, |l| {
            let k = l.uploads.partition_point(|(at, _)| *at <= t);
            k.checked_sub(1).map_or(0, |k| l.uploads[k].1)
        })
    };
    let up_at = |i: usize, t: Duration| -> bool {
        w.peers.get(&scenario.peers[i].name).is_some_and(|l| {
            l.up_intervals.iter().any(|(a, b)| *a <= t && t < *b)
                || l.up_since.is_some_and(|s| s <= t)
        })
    };
    // Each peer's connections, with the other end as a peer index.
    let index_of: BTreeMap<&str, usize> = scenario
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let peer_at = |ip: &std::net::IpAddr| {
        w.hosts
            .get(ip)
            .and_then(|h| index_of.get(h.as_str()).copied())
    };
    let links: Vec<Vec<(Link, usize)>> = scenario
        .peers
        .iter()
        .map(|p| {
            w.peers.get(&p.name).map_or_else(Vec::new, |l| {
                l.links
                    .iter()
                    .filter_map(|k| Some((*k, peer_at(&k.remote)?)))
                    .collect()
            })
        })
        .collect();
    let downloaders: Vec<usize> = (0..n)
        .filter(|&i| scenario.peers[i].get.contains(&file.name))
        .collect();
    let mut utilisation_over_time = Vec::new();
    let mut copies_over_time = Vec::new();
    let mut seed_copy_seconds = None;
    let mut backlog_pieces: Option<usize> = None;
    let mut past_first = None;
    let (mut work_sent, mut work_capacity) = (0.0, 0.0);
    let mut t = Duration::ZERO;
    while t < elapsed {
        let end = (t + BIN).min(elapsed);
        // The state at the start of the bin.
        while let Some(&(at, i, k)) = held.get(next) {
            if at > t {
                break;
            }
            have.add(i, k as usize, !seeds_of_file[i]);
            next += 1;
            if seed_copy_seconds.is_none() && have.all_held_by_others() {
                seed_copy_seconds = Some(round3(at.as_secs_f64()));
                backlog_pieces = Some(
                    downloaders
                        .iter()
                        .map(|&j| pieces as usize - have.count(j) as usize)
                        .sum::<usize>(),
                );
            }
        }
        if past_first.is_none() && downloaders.iter().all(|&i| have.count(i) > 0) {
            past_first = Some(t);
        }
        let running: Vec<usize> = (0..n).filter(|&i| up_at(i, t)).collect();
        let copies: Vec<u32> = (0..pieces as usize)
            .map(|k| running.iter().filter(|&&i| have.get(i, k)).count() as u32)
            .collect();
        if let (Some(min), Some(max)) = (copies.iter().min(), copies.iter().max()) {
            let mean = copies.iter().sum::<u32>() as f64 / copies.len() as f64;
            copies_over_time.push((round3(t.as_secs_f64()), *min, round3(mean), *max));
        }
        let mut wanting = vec![false; n];
        for &i in &running {
            wanting[i] = scenario.peers[i].get.contains(&file.name) && have.count(i) < pieces;
        }
        let secs = end.saturating_sub(t).as_secs_f64();
        let (mut sent, mut capacity) = (0.0, 0.0);
        for &i in &running {
            let Some(rate) = scenario.peers[i].upload_rate else {
                continue;
            };
            let wanted = links[i]
                .iter()
                .take_while(|(l, _)| l.opened < end)
                .any(|&(l, j)| {
                    l.open_during(t, end) && j != i && wanting[j] && have.holds_one_lacked(i, j)
                });
            if wanted {
                capacity += rate.0 as f64 * secs;
                sent += uploaded_at(i, end).saturating_sub(uploaded_at(i, t)) as f64;
            }
        }
        if capacity > 0.0 {
            utilisation_over_time.push((round3(t.as_secs_f64()), round3(sent / capacity)));
            let in_window =
                past_first.is_some_and(|p| t >= p) && last.is_none_or(|l| t.as_secs_f64() < l);
            if in_window {
                work_sent += sent;
                work_capacity += capacity;
            }
        }
        t = end;
    }

    let mut class_bytes: BTreeMap<String, ClassBytes> = BTreeMap::new();
    let mut seed_sent = 0;
    for p in &scenario.peers {
        let (received, sent) = w.peers.get(&p.name).map_or((0, 0), |l| {
            let now = l.stats.get(&file.name);
            let before = |m: &BTreeMap<String, u64>| m.get(&file.name).copied().unwrap_or(0);
            (
                now.map_or(0, |s| s.bytes_downloaded) + before(&l.downloaded_before),
                now.map_or(0, |s| s.bytes_uploaded) + before(&l.uploaded_before),
            )
        });
        if p.has.contains(&file.name) {
            seed_sent += sent;
        }
        let c = class_bytes.entry(class_of(p)).or_default();
        c.peers += 1;
        c.received += received;
        c.sent += sent;
    }
    Some(SwarmMeasures {
        file: file.name.clone(),
        size,
        optimum_seconds: optimum.map(round3),
        last_completion_seconds: last.map(round3),
        start_seconds: start.map(round3),
        optimum_ratio: optimum
            .zip(last)
            .map(|(o, l)| round3((l - start.unwrap_or(0.0)) / o)),
        download_times,
        utilisation: (work_capacity > 0.0).then(|| round3(work_sent / work_capacity)),
        utilisation_over_time,
        copies_over_time,
        seed_copy_seconds,
        first_copy_seconds: seed_copy_seconds.zip(start).map(|(c, s)| round3(c - s)),
        first_copy_bound_seconds: seed_up.filter(|&us| us > 0.0).map(|us| round3(f / us)),
        tail_seconds: last.zip(seed_copy_seconds).map(|(l, c)| round3(l - c)),
        tail_bound_seconds: tail_bound.map(round3),
        tail_backlog_seconds: backlog_pieces
            .zip(seed_up.zip(leech_up))
            .filter(|(_, (us, ul))| us + ul > 0.0)
            .map(|(missing, (us, ul))| {
                round3(missing as f64 * size as f64 / f64::from(pieces) / (us + ul))
            }),
        seed_copies: round3(seed_sent as f64 / size as f64),
        class_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::{hops_to_reach, measure};
    use crate::scenario::Scenario;
    use crate::world::{Link, World};
    use enjambre_core::metainfo::InfoHash;
    use enjambre_core::node::TorrentStats;
    use std::net::IpAddr;
    use std::time::Duration;

    /// A seed and two downloaders, each up from 0; the seed uploaded `seed_bytes` by 1 s.
    fn three_peers(seed_links: Vec<Link>, seed_bytes: u64) -> (Scenario, World) {
        let scenario = Scenario::from_toml(
            r#"
            name = "links"
            [network]
            model = "flow"
            [[file]]
            name = "f"
            size = "1MiB"
            piece_size = "256KiB"
            [[peer]]
            name = "seed"
            has = ["f"]
            upload_rate = "1MB"
            [[peer]]
            name = "a"
            get = ["f"]
            upload_rate = "1MB"
            [[peer]]
            name = "b"
            get = ["f"]
            upload_rate = "1MB"
            "#,
        )
        .expect("a valid scenario");
        let mut w = World::default();
        for (i, name) in ["seed", "a", "b"].into_iter().enumerate() {
            w.hosts.insert(ip(i), name.to_string());
            let p = w.peers.entry(name.to_string()).or_default();
            p.up = true;
            p.up_since = Some(Duration::ZERO);
            let stats = TorrentStats {
                name: "f".into(),
                info_hash: InfoHash([0; 20]),
                size: 1 << 20,
                pieces_total: 4,
                pieces_have: 0,
                pieces_resumed: 0,
                pieces_downloaded: 0,
                pieces_durable: 0,
                bytes_downloaded: 0,
                bytes_uploaded: 0,
                bytes_wasted: 0,
                hash_failures: 0,
                sources: Default::default(),
                peers: 0,
                connections: Vec::new(),
                checkpoints_written: 0,
                complete: false,
                checking: false,
                error: None,
                error_retry_in_ms: None,
                disk_errors: 0,
                banned: Vec::new(),
                tracker_error: None,
            };
            p.stats.insert("f".to_string(), stats);
        }
        let seed = w.peers.get_mut("seed").expect("made above");
        seed.links = seed_links;
        seed.uploads = vec![(Duration::ZERO, 0), (Duration::from_secs(1), seed_bytes)];
        (scenario, w)
    }

    fn ip(i: usize) -> IpAddr {
        IpAddr::from([10, 0, 0, i as u8 + 1])
    }

    #[test]
    fn only_an_uplink_with_a_connected_downloader_that_lacks_its_pieces_counts_as_capacity() {
        // The seed holds every piece; nobody connects to it until 0.5 s, then `a` does.
        let late = Link {
            opened: Duration::from_millis(500),
            closed: None,
            remote: ip(1),
        };
        let (scenario, w) = three_peers(vec![late], 500_000);
        let m = measure(&scenario, &w, Duration::from_secs(1))
            .expect("one file, seeds and downloaders");
        // Bins from 0.5 s only: before, the seed had nobody to send to, and the downloaders hold nothing.
        let bins: Vec<f64> = m.utilisation_over_time.iter().map(|(t, _)| *t).collect();
        assert_eq!(bins, vec![0.5, 0.75]);
        // The seed's counter is sampled at 0 and 1 s only, so its 500,000 bytes fall in the 0.75 s bin,
        // whose capacity is 250,000 bytes.
        assert_eq!(m.utilisation_over_time[1].1, 2.0);

        // Without any connection the seed's uplink never counts.
        let (scenario, w) = three_peers(Vec::new(), 0);
        let m = measure(&scenario, &w, Duration::from_secs(1)).expect("measured");
        assert!(
            m.utilisation_over_time.is_empty(),
            "{:?}",
            m.utilisation_over_time
        );
    }

    #[test]
    fn a_piece_held_once_reaches_the_crowd_in_log2_hops() {
        // Holders 1, 3, 7, 15, 31 with one seed beside them.
        assert_eq!(hops_to_reach(20, 1), 4);
        assert_eq!(hops_to_reach(1000, 1), 9);
        assert_eq!(hops_to_reach(1, 1), 0);
        // Without a seed: 1, 2, 4, 8, 16, 32.
        assert_eq!(hops_to_reach(20, 0), 5);
    }
}
