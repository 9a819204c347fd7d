//! KRPC datagrams (BEP 5): the parser, a live DHT node fed the datagram as a query, and a node running a
//! `get_peers` lookup fed it as the answer to its pending query (the datagram's transaction id replaced by
//! the pending one when it parses, so that hostile node lists, peer values and tokens reach the lookup).
//! Checks: never panics; an accepted message re-encodes to one that parses to the same message; a node fed
//! an unsolicited datagram answers with at most one datagram, no larger than the parser's own limit; a
//! lookup's peers and closest nodes stay within the node's caps.
#![no_main]

use enjambre_core::dht::krpc::{Body, Message, LIMITS};
use enjambre_core::dht::{DhtConfig, DhtEvent, DhtInput, DhtNode, DhtOutput, LookupKind, NodeId};
use enjambre_core::time::Instant;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let from = "10.0.0.1:6881".parse().expect("literal address");
    if let Ok(msg) = Message::parse(data) {
        let again = Message::parse(&msg.encode()).expect("a re-encoded message parses");
        assert_eq!(again, msg);
    }
    let mut node = DhtNode::new(DhtConfig::default(), Instant::ZERO);
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

    // The same bytes as the answer to a lookup's query.
    let config = DhtConfig::default();
    let (k, max_values) = (config.k, config.max_values);
    let mut node = DhtNode::new(config, Instant::ZERO);
    let kind = LookupKind::GetPeers {
        announce_port: Some(6881),
    };
    node.start_lookup(Instant::ZERO, NodeId([0x55; 20]), kind, &[], &[from]);
    let mut pending = None;
    while let Some(out) = node.poll_output() {
        if let DhtOutput::Send { bytes, .. } = out {
            pending = Message::parse(&bytes).ok().map(|m| m.transaction);
        }
    }
    let answer = match (Message::parse(data), pending) {
        (Ok(mut msg), Some(t)) if !matches!(msg.body, Body::Query(_)) => {
            msg.transaction = t;
            msg.encode()
        }
        _ => data.to_vec(),
    };
    node.handle_input(
        Instant::ZERO,
        DhtInput::Datagram {
            from,
            bytes: answer,
        },
    );
    // Nobody else answers: every other query times out until the lookup ends.
    let mut done = false;
    for step in 1..=200u64 {
        node.handle_timeout(Instant::ZERO + Duration::from_secs(3 * step));
        while let Some(out) = node.poll_output() {
            match out {
                DhtOutput::Send { bytes, .. } => assert!(bytes.len() <= LIMITS.max_datagram),
                DhtOutput::Event(DhtEvent::LookupDone(r)) => {
                    assert!(r.closest.len() <= k);
                    assert!(r.peers.len() <= LIMITS.max_values + max_values);
                    done = true;
                }
                DhtOutput::Event(_) => {}
            }
        }
        if done {
            break;
        }
    }
    assert!(done, "a lookup always ends");
});
