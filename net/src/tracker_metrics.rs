//! The tracker's metrics: request counters and latencies fed by its servers (HTTP and UDP share one
//! [`TrackerMetrics`]), and the registry's numbers read when `GET /metrics` is served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use enjambre_core::tracker::udp::UdpOutcome;
use enjambre_core::tracker::Registry;

use crate::prometheus::{Exposition, Histogram, Kind};

/// How an announce ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceResult {
    /// Peers were handed out (or a `stopped` was taken).
    Ok,
    /// The request could not be parsed.
    Invalid,
    /// The registry refused it (the tracker tracks as many torrents as it may). A full swarm does not
    /// refuse: it answers a newcomer without registering it (`enjambre_tracker_turned_away_total`).
    Refused,
}

/// How a scrape ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeResult {
    /// Answered.
    Ok,
    /// The request could not be parsed.
    Invalid,
}

/// What a request asked for, for the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/announce` (or a UDP announce).
    Announce,
    /// `/scrape` (or a UDP scrape).
    Scrape,
    /// `/files` and `/files/NAME`.
    Files,
    /// `/swarm`.
    Swarm,
    /// `/`, the web monitor page.
    Monitor,
    /// `/metrics`.
    Metrics,
    /// Anything else (errors, unknown paths).
    Other,
}

impl Route {
    const ALL: [Route; 7] = [
        Route::Announce,
        Route::Scrape,
        Route::Files,
        Route::Swarm,
        Route::Monitor,
        Route::Metrics,
        Route::Other,
    ];

    /// The route of an HTTP request path.
    pub fn of_path(path: &str) -> Route {
        match path {
            "/announce" => Route::Announce,
            "/scrape" => Route::Scrape,
            "/files" => Route::Files,
            p if p.starts_with("/files/") => Route::Files,
            "/swarm" => Route::Swarm,
            "/" => Route::Monitor,
            "/metrics" => Route::Metrics,
            _ => Route::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Announce => "announce",
            Route::Scrape => "scrape",
            Route::Files => "files",
            Route::Swarm => "swarm",
            Route::Monitor => "monitor",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// Counters of a running tracker, shared by its servers (lock-free; wrap in an `Arc`).
#[derive(Debug, Default)]
pub struct TrackerMetrics {
    announces: [AtomicU64; 3],
    scrapes: [AtomicU64; 2],
    udp: [AtomicU64; 7],
    latency: [Histogram; 7],
    evicted: AtomicU64,
}

fn announce_index(r: AnnounceResult) -> usize {
    match r {
        AnnounceResult::Ok => 0,
        AnnounceResult::Invalid => 1,
        AnnounceResult::Refused => 2,
    }
}

/// UDP datagram outcomes with their metric labels, in counter order.
const UDP_OUTCOMES: [(UdpOutcome, &str); 7] = [
    (UdpOutcome::Connected, "connected"),
    (UdpOutcome::Announced, "announced"),
    (UdpOutcome::AnnounceRefused, "refused"),
    (UdpOutcome::Scraped, "scraped"),
    (UdpOutcome::BadConnectionId, "bad_connection_id"),
    (UdpOutcome::Malformed, "malformed"),
    (UdpOutcome::Dropped, "dropped"),
];

fn udp_index(o: UdpOutcome) -> usize {
    UDP_OUTCOMES
        .iter()
        .position(|(x, _)| *x == o)
        .unwrap_or(UDP_OUTCOMES.len() - 1)
}

fn route_index(r: Route) -> usize {
    Route::ALL.iter().position(|x| *x == r).unwrap_or(6)
}

impl TrackerMetrics {
    /// Count an announce.
    pub fn announce(&self, result: AnnounceResult) {
        self.announces[announce_index(result)].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a scrape.
    pub fn scrape(&self, result: ScrapeResult) {
        let i = usize::from(result == ScrapeResult::Invalid);
        self.scrapes[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Record how long a request took, from the request read to the response written.
    pub fn observe(&self, route: Route, took: Duration) {
        self.latency[route_index(route)].observe(took);
    }

    /// Count a datagram handled by the UDP tracker.
    pub fn udp_datagram(&self, outcome: UdpOutcome) {
        self.udp[udp_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// UDP datagrams counted with `outcome`.
    pub fn udp_datagrams(&self, outcome: UdpOutcome) -> u64 {
        self.udp[udp_index(outcome)].load(Ordering::Relaxed)
    }

    /// Count a connection closed to make room for a newer one (see [`crate::connection_slots`]).
    pub fn connection_evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed to make room for newer ones.
    pub fn connections_evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Announces counted with `result`.
    pub fn announces(&self, result: AnnounceResult) -> u64 {
        self.announces[announce_index(result)].load(Ordering::Relaxed)
    }

    /// The metrics page: these counters plus the registry's numbers.
    pub fn render(&self, registry: &Registry) -> String {
        let mut p = Exposition::new();
        p.family(
            "enjambre_tracker_announces_total",
            Kind::Counter,
            "Announces handled, by result (ok, invalid request, refused by the torrent limit).",
        );
        for (label, r) in [
            ("ok", AnnounceResult::Ok),
            ("invalid", AnnounceResult::Invalid),
            ("refused", AnnounceResult::Refused),
        ] {
            let n = self.announces(r);
            p.sample(
                "enjambre_tracker_announces_total",
                &[("result", label)],
                n as f64,
            );
        }
        p.family(
            "enjambre_tracker_scrapes_total",
            Kind::Counter,
            "Scrapes handled, by result.",
        );
        for (i, label) in ["ok", "invalid"].iter().enumerate() {
            let n = self.scrapes[i].load(Ordering::Relaxed);
            p.sample(
                "enjambre_tracker_scrapes_total",
                &[("result", label)],
                n as f64,
            );
        }
        p.family(
            "enjambre_tracker_udp_datagrams_total",
            Kind::Counter,
            "Datagrams handled by the UDP tracker (BEP 15), by outcome.",
        );
        for (outcome, label) in UDP_OUTCOMES {
            p.sample(
                "enjambre_tracker_udp_datagrams_total",
                &[("outcome", label)],
                self.udp_datagrams(outcome) as f64,
            );
        }
        p.single(
            "enjambre_tracker_connections_evicted_total",
            Kind::Counter,
            "HTTP connections closed unanswered to make room for newer ones (slots or per-address cap full).",
            self.connections_evicted() as f64,
        );
        let c = registry.counts();
        let gauges = [
            (
                "enjambre_tracker_peers",
                "Peers in all swarms (a peer in two torrents counts twice).",
                c.seeders + c.leechers,
            ),
            (
                "enjambre_tracker_seeders",
                "Peers with nothing left to download.",
                c.seeders,
            ),
            (
                "enjambre_tracker_leechers",
                "Peers still downloading.",
                c.leechers,
            ),
            (
                "enjambre_tracker_torrents",
                "Torrents with a swarm.",
                c.torrents,
            ),
            (
                "enjambre_tracker_catalog_files",
                "Torrents published in the catalog.",
                c.published,
            ),
        ];
        for (name, help, v) in gauges {
            p.single(name, Kind::Gauge, help, v as f64);
        }
        p.single(
            "enjambre_tracker_completed_total",
            Kind::Counter,
            "Completed downloads reported (event=completed) in the swarms still tracked.",
            c.completed as f64,
        );
        p.single(
            "enjambre_tracker_bytes_moved_total",
            Kind::Counter,
            "Payload bytes reported downloading by peers of published torrents (and peers sending enjambre's announce keys), in the swarms still tracked.",
            c.bytes_moved as f64,
        );
        p.single(
            "enjambre_tracker_turned_away_total",
            Kind::Counter,
            "Announces from newcomers to a full swarm (max peers per torrent), answered with peers but not registered.",
            c.turned_away as f64,
        );
        p.family(
            "enjambre_tracker_request_duration_seconds",
            Kind::Histogram,
            "Time from a request read to its response written, by route.",
        );
        for route in Route::ALL {
            self.latency[route_index(route)].write(
                &mut p,
                "enjambre_tracker_request_duration_seconds",
                &[("route", route.label())],
            );
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enjambre_core::tracker::RegistryConfig;

    #[test]
    fn counts_show_on_the_page() {
        let m = TrackerMetrics::default();
        m.announce(AnnounceResult::Ok);
        m.announce(AnnounceResult::Ok);
        m.announce(AnnounceResult::Invalid);
        m.scrape(ScrapeResult::Invalid);
        m.observe(Route::Announce, Duration::from_micros(300));
        let page = m.render(&Registry::new(RegistryConfig::default()));
        assert!(page.contains("enjambre_tracker_announces_total{result=\"ok\"} 2\n"));
        assert!(page.contains("enjambre_tracker_announces_total{result=\"invalid\"} 1\n"));
        assert!(page.contains("enjambre_tracker_announces_total{result=\"refused\"} 0\n"));
        assert!(page.contains("enjambre_tracker_scrapes_total{result=\"invalid\"} 1\n"));
        assert!(page.contains("enjambre_tracker_peers 0\n"));
        assert!(page.contains("enjambre_tracker_turned_away_total 0\n"));
        m.udp_datagram(UdpOutcome::BadConnectionId);
        let page = m.render(&Registry::new(RegistryConfig::default()));
        assert!(page
            .contains("enjambre_tracker_udp_datagrams_total{outcome=\"bad_connection_id\"} 1\n"));
        assert!(page.contains(
            "enjambre_tracker_request_duration_seconds_bucket{route=\"announce\",le=\"0.0005\"} 1\n"
        ));
        assert!(
            page.contains("enjambre_tracker_request_duration_seconds_count{route=\"swarm\"} 0\n")
        );
        assert_eq!(Route::of_path("/files/x"), Route::Files);
        assert_eq!(Route::of_path("/nope"), Route::Other);
    }
}
