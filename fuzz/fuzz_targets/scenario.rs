//! Scenario TOML loader (`sim run FILE`): never panics on any text.
#![no_main]

use enjambre_sim::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = Scenario::from_toml(text) {
            assert!(!s.peers.is_empty());
        }
    }
});
