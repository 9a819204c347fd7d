//! What a finished download reports, and when a download counts as finished.

use enjambre_core::metainfo::InfoHash;
use enjambre_core::node::TorrentStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What a finished download reports (`peer get --json` prints one per file, and the end-to-end tests read
/// it back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    /// Torrent name.
    pub name: String,
    /// Info hash, hex.
    pub info_hash: InfoHash,
    /// Total bytes.
    pub size: u64,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Pieces already held (resumed) when the download started.
    pub pieces_resumed: u32,
    /// Payload bytes received in this run, wasted ones included.
    pub bytes_downloaded: u64,
    /// Payload bytes thrown away (hash failures, duplicates).
    pub bytes_wasted: u64,
    /// Accepted payload bytes per source (`IP:PORT` in JSON).
    pub sources: BTreeMap<SocketAddr, u64>,
    /// Banned peers (`IP:PORT` in JSON).
    pub banned: Vec<SocketAddr>,
    /// Seconds from adding the download to complete and durable.
    pub seconds: f64,
}

impl FileReport {
    /// The report of a finished torrent.
    pub fn from_stats(stats: &TorrentStats, seconds: f64) -> FileReport {
        FileReport {
            name: stats.name.clone(),
            info_hash: stats.info_hash,
            size: stats.size,
            pieces_total: stats.pieces_total,
            pieces_resumed: stats.pieces_resumed,
            bytes_downloaded: stats.bytes_downloaded,
            bytes_wasted: stats.bytes_wasted,
            sources: stats.sources.clone(),
            banned: stats.banned.clone(),
            seconds: (seconds * 1000.0).round() / 1000.0,
        }
    }

    /// The report as one line for a person: `done NAME (SIZE) in S s, N fetched at R MB/s from K source(s)`,
    /// with the resumed pieces and the banned peers when there are any.
    pub fn summary_line(&self) -> String {
        let fetched = self.bytes_downloaded;
        let rate = if self.seconds > 0.0 {
            fetched as f64 / self.seconds / 1e6
        } else {
            0.0
        };
        let mut line = format!(
            "done {} ({}) in {:.1} s, {} fetched at {:.1} MB/s from {} source(s)",
            self.name,
            human_bytes(self.size),
            self.seconds,
            human_bytes(fetched),
            rate,
            self.sources.len()
        );
        if self.pieces_resumed > 0 {
            line.push_str(&format!(
                ", {} of {} pieces resumed",
                self.pieces_resumed, self.pieces_total
            ));
        }
        if !self.banned.is_empty() {
            let banned: Vec<String> = self.banned.iter().map(|a| a.to_string()).collect();
            line.push_str(&format!(", banned {}", banned.join(" ")));
        }
        line
    }
}

/// Whether a torrent is finished: every piece verified, and the durable checkpoint claims them all.
pub fn is_finished(stats: &TorrentStats) -> bool {
    stats.complete && !stats.checking && stats.pieces_durable == stats.pieces_total
}

/// A byte count for a person, in binary units: `512 B`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_the_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(50 * 1024 * 1024), "50.0 MiB");
    }

    fn sample_report() -> FileReport {
        FileReport {
            name: "a.bin".into(),
            info_hash: InfoHash([0; 20]),
            size: 2 * 1024 * 1024,
            pieces_total: 4,
            pieces_resumed: 0,
            bytes_downloaded: 2_000_000,
            bytes_wasted: 0,
            sources: BTreeMap::from([(SocketAddr::from(([10, 0, 0, 1], 6881)), 2_000_000)]),
            banned: Vec::new(),
            seconds: 2.0,
        }
    }

    #[test]
    fn summary_line_names_resumed_pieces_and_bans() {
        let mut r = sample_report();
        assert_eq!(
            r.summary_line(),
            "done a.bin (2.0 MiB) in 2.0 s, 1.9 MiB fetched at 1.0 MB/s from 1 source(s)"
        );
        r.pieces_resumed = 1;
        r.banned = vec![SocketAddr::from(([10, 0, 0, 9], 6881))];
        assert!(r
            .summary_line()
            .ends_with(", 1 of 4 pieces resumed, banned 10.0.0.9:6881"));
    }

    #[test]
    fn a_report_reads_back_from_its_json_line() {
        let mut r = sample_report();
        r.banned = vec![SocketAddr::from(([10, 0, 0, 9], 6881))];
        let line = serde_json::to_string(&r).expect("serialises");
        assert!(
            line.contains(r#""sources":{"10.0.0.1:6881":2000000},"banned":["10.0.0.9:6881"]"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<FileReport>(&line).ok(), Some(r));
    }
}
