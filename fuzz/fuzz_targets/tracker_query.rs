//! Tracker announce and scrape query parsers (the part of `GET /announce?...` after `?`): never panic,
//! and an accepted announce rebuilt as a client query parses back to the same request.
#![no_main]

use enjambre_core::tracker::proto::{
    announce_query, parse_announce_query, parse_scrape_query, percent_decode, percent_encode,
    AnnounceExtensions, AnnounceParams, MAX_SCRAPE_HASHES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server hands the parsers the request target as text.
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = parse_announce_query(query) {
        assert_ne!(req.port, 0);
        let params = AnnounceParams {
            info_hash: req.info_hash,
            peer_id: req.peer_id,
            port: req.port,
            uploaded: req.uploaded,
            downloaded: req.downloaded,
            left: req.left,
            event: req.event,
            numwant: req.numwant.unwrap_or(50),
            key: 0,
            ext: AnnounceExtensions::default(),
        };
        let again = parse_announce_query(&announce_query(&params)).expect("own query parses");
        assert_eq!(again.info_hash, req.info_hash);
        assert_eq!(again.peer_id, req.peer_id);
        assert_eq!(
            (
                again.port,
                again.uploaded,
                again.downloaded,
                again.left,
                again.event
            ),
            (req.port, req.uploaded, req.downloaded, req.left, req.event)
        );
    }
    if let Ok(hashes) = parse_scrape_query(query) {
        assert!(hashes.len() <= MAX_SCRAPE_HASHES);
    }
    if let Some(bytes) = percent_decode(query) {
        assert!(bytes.len() <= query.len());
        assert_eq!(percent_decode(&percent_encode(&bytes)), Some(bytes));
    }
});
