//! KRPC datagrams (BEP 5): the parser and a live DHT node. Checks: never panics; an accepted message
//! re-encodes to one that parses to the same message; a node fed the datagram answers with at most one
//! datagram, no larger than the parser's own limit.
#![no_main]

use enjambre_core::dht::krpc::{Message, LIMITS};
use enjambre_core::dht::{DhtConfig, DhtInput, DhtNode, DhtOutput};
use enjambre_core::time::Instant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::parse(data) {
        let again = Message::parse(&msg.encode()).expect("a re-encoded message parses");
        assert_eq!(again, msg);
    }
    let mut node = DhtNode::new(DhtConfig::default(), Instant::ZERO);
    let from = "10.0.0.1:6881".parse().expect("literal address");
    node.handle_input(
        Instant::ZERO,
        DhtInput::Datagram {
            from,
            bytes: data.to_vec(),
        },
    );
    let mut sent = 0;
    while let Some(out) = node.poll_output() {
        if let DhtOutput::Send { to, bytes } = out {
            assert_eq!(to, from);
            assert!(bytes.len() <= LIMITS.max_datagram);
            sent += 1;
        }
    }
    assert!(sent <= 1);
});
