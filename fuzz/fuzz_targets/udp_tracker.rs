//! The UDP tracker (BEP 15) on any datagram: the server's parser and the whole service against a registry
//! answer or stay silent, never panic; an answer is never larger than the biggest legitimate one; and the
//! client's parser takes any bytes, in both address families. (That a forged connection id registers
//! nothing is a unit test: here the secret is fixed, so libFuzzer's comparison tracing could learn the id.)
#![no_main]

use enjambre_core::time::Instant;
use enjambre_core::tracker::udp::{parse_request, parse_response, UdpTrackerService, MAX_DATAGRAM};
use enjambre_core::tracker::{Registry, RegistryConfig};
use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(data);
    let _ = parse_response(data, false);
    let _ = parse_response(data, true);

    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let service = UdpTrackerService::new(&mut rng);
    let mut registry = Registry::new(RegistryConfig::default());
    let from = "10.0.0.1:4000".parse().expect("address");
    let (reply, _) = service.handle(&mut registry, Instant::ZERO, from, data, &mut rng);
    if let Some(reply) = reply {
        assert!(reply.len() <= MAX_DATAGRAM, "answer of {} bytes", reply.len());
    }
});
