//! A scrape of 1,024 info hashes in one HTTP request (73 KB of query) is answered in full.

use enjambre_core::metainfo::InfoHash;
use enjambre_core::tracker::proto::MAX_SCRAPE_HASHES;
use enjambre_core::tracker::{AnnounceParams, Event, RegistryConfig};
use enjambre_net::http::HttpLimits;
use enjambre_net::tracker_client;
use enjambre_net::tracker_server::testing::LocalTracker;
use enjambre_net::tracker_server::ServerConfig;
use enjambre_net::transport::TokioTransport;

fn hash(i: usize) -> InfoHash {
    let mut h = [0x5a; 20];
    h[..8].copy_from_slice(&(i as u64).to_be_bytes());
    InfoHash(h)
}

#[tokio::test]
async fn a_scrape_of_1024_info_hashes_is_answered_in_full() {
    let config = ServerConfig {
        http: HttpLimits {
            // As the tracker binary's default: room for the largest scrape.
            max_header_bytes: 80 * 1024,
            ..HttpLimits::default()
        },
        ..ServerConfig::default()
    };
    let tracker = LocalTracker::start(RegistryConfig::default(), config)
        .await
        .expect("tracker");
    let url = tracker.announce_url();
    // Two of the scraped torrents have a peer: a seeder in #3, a leecher in #1000.
    for (i, left) in [(3, 0), (1000, 7)] {
        let params = AnnounceParams {
            info_hash: hash(i),
            peer_id: [i as u8; 20],
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left,
            event: Event::Started,
            numwant: 0,
            key: 1,
            ext: Default::default(),
        };
        tracker_client::announce(&TokioTransport, &url, &params)
            .await
            .expect("announce");
    }
    assert_eq!(MAX_SCRAPE_HASHES, 1024);
    let hashes: Vec<InfoHash> = (0..MAX_SCRAPE_HASHES).map(hash).collect();
    let stats = tracker_client::scrape(&TokioTransport, &url, &hashes)
        .await
        .expect("a 1,024-hash scrape is answered");
    assert_eq!(stats.len(), MAX_SCRAPE_HASHES, "one entry per hash");
    assert_eq!(stats[&hash(3)].complete, 1);
    assert_eq!(stats[&hash(1000)].incomplete, 1);
    assert_eq!(stats[&hash(0)].complete + stats[&hash(0)].incomplete, 0);
    // One more hash than allowed is refused with a reason, not cut short.
    let too_many: Vec<InfoHash> = (0..=MAX_SCRAPE_HASHES).map(hash).collect();
    assert!(tracker_client::scrape(&TokioTransport, &url, &too_many)
        .await
        .is_err());
}
