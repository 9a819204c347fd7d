//! A client's parsers of tracker answers (announce and scrape bodies): never panic on any bytes.
#![no_main]

use enjambre_core::tracker::proto::{parse_announce_reply, parse_scrape_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = parse_announce_reply(data) {
        // Every peer came from at least 6 bytes of input.
        assert!(reply.peers.len() <= data.len() / 6);
    }
    let _ = parse_scrape_reply(data);
});
