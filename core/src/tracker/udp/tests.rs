use super::*;
use crate::tracker::RegistryConfig;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const HASH: InfoHash = InfoHash([7; 20]);

fn t(secs: u64) -> Instant {
    Instant::from_micros(secs * 1_000_000)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn params(id: u8, port: u16, left: u64, event: Event) -> AnnounceParams {
    AnnounceParams {
        info_hash: HASH,
        peer_id: [id; 20],
        port,
        uploaded: 11,
        downloaded: 22,
        left,
        event,
        numwant: 50,
        key: 0xdead_beef,
        ext: Default::default(),
    }
}

struct Fixture {
    service: UdpTrackerService,
    registry: Registry,
    rng: ChaCha8Rng,
}

impl Fixture {
    fn new() -> Fixture {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        Fixture {
            service: UdpTrackerService::new(&mut rng),
            registry: Registry::new(RegistryConfig::default()),
            rng,
        }
    }

    fn send(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &[u8],
    ) -> (Option<Vec<u8>>, UdpOutcome) {
        self.service
            .handle(&mut self.registry, now, from, packet, &mut self.rng)
    }

    /// Connect from `from` and return the connection id, checking the echoed transaction id.
    fn connect(&mut self, now: Instant, from: SocketAddr) -> u64 {
        let (reply, outcome) = self.send(now, from, &encode_connect_request(42));
        assert_eq!(outcome, UdpOutcome::Connected);
        match parse_response(&reply.expect("connect answer"), false) {
            Ok(UdpResponse::Connect {
                transaction_id: 42,
                connection_id,
            }) => connection_id,
            other => panic!("expected a connect answer, got {other:?}"),
        }
    }

    fn announce(&mut self, now: Instant, from: SocketAddr, p: &AnnounceParams) -> UdpResponse {
        let id = self.connect(now, from);
        let (reply, _) = self.send(now, from, &encode_announce_request(id, 9, p));
        parse_response(
            &reply.expect("announce answer"),
            from.ip().to_canonical().is_ipv6(),
        )
        .expect("parses")
    }
}

#[test]
fn protocol_id_is_the_bep15_constant() {
    assert_eq!(PROTOCOL_ID, 0x41727101980);
    let c = encode_connect_request(1);
    assert_eq!(
        c[..8],
        [0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80],
        "wire bytes of the magic"
    );
}

#[test]
fn announce_request_round_trips_field_by_field() {
    let p = params(3, 6881, 1000, Event::Started);
    let bytes = encode_announce_request(0x0102_0304_0506_0708, 77, &p);
    assert_eq!(bytes.len(), ANNOUNCE_REQUEST_LEN);
    match parse_request(&bytes) {
        Ok(UdpRequest::Announce {
            connection_id,
            transaction_id,
            request,
            key,
        }) => {
            assert_eq!(connection_id, 0x0102_0304_0506_0708);
            assert_eq!(transaction_id, 77);
            assert_eq!(key, 0xdead_beef);
            assert_eq!(request.info_hash, HASH);
            assert_eq!(request.peer_id, [3; 20]);
            assert_eq!(request.port, 6881);
            assert_eq!(
                (request.uploaded, request.downloaded, request.left),
                (11, 22, 1000)
            );
            assert_eq!(request.event, Event::Started);
            assert_eq!(request.numwant, Some(50));
            assert!(request.compact);
        }
        other => panic!("expected an announce, got {other:?}"),
    }
}

#[test]
fn every_event_code_round_trips_and_minus_one_numwant_means_default() {
    for e in [
        Event::None,
        Event::Completed,
        Event::Started,
        Event::Stopped,
    ] {
        let bytes = encode_announce_request(1, 1, &params(1, 1, 0, e));
        let Ok(UdpRequest::Announce { request, .. }) = parse_request(&bytes) else {
            panic!("announce expected");
        };
        assert_eq!(request.event, e);
    }
    let mut bytes = encode_announce_request(1, 1, &params(1, 1, 0, Event::None));
    bytes[92..96].copy_from_slice(&(-1i32).to_be_bytes());
    let Ok(UdpRequest::Announce { request, .. }) = parse_request(&bytes) else {
        panic!("announce expected");
    };
    assert_eq!(request.numwant, None);
}

#[test]
fn bep41_options_after_the_announce_are_ignored() {
    let mut bytes = encode_announce_request(1, 1, &params(1, 1, 0, Event::None));
    bytes.extend_from_slice(&[
        2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c', b'e', 0,
    ]);
    assert!(matches!(
        parse_request(&bytes),
        Ok(UdpRequest::Announce { .. })
    ));
}

#[test]
fn two_peers_find_each_other_over_udp() {
    let mut f = Fixture::new();
    let a = addr("10.0.0.1:40000");
    let b = addr("10.0.0.2:40001");
    let first = f.announce(t(1), a, &params(1, 6881, 0, Event::Started));
    let UdpResponse::Announce {
        transaction_id,
        reply,
    } = first
    else {
        panic!("announce answer expected, got {first:?}");
    };
    assert_eq!(transaction_id, 9);
    assert!(reply.peers.is_empty(), "alone in the swarm");
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(0)));

    let second = f.announce(t(2), b, &params(2, 7000, 500, Event::Started));
    let UdpResponse::Announce { reply, .. } = second else {
        panic!("announce answer expected, got {second:?}");
    };
    // The peer's port is the announced one, the IP the datagram's source.
    assert_eq!(reply.peers, vec![addr("10.0.0.1:6881")]);
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(1)));
    assert_eq!(
        reply.interval,
        Some(f.registry.config().interval.as_secs() as u32)
    );
    assert_eq!(f.registry.peer_count(), 2);
}

#[test]
fn a_forged_connection_id_is_refused_and_registers_nothing() {
    let mut f = Fixture::new();
    let from = addr("10.0.0.1:40000");
    let packet = encode_announce_request(0x1234, 5, &params(1, 6881, 0, Event::Started));
    let (reply, outcome) = f.send(t(1), from, &packet);
    assert_eq!(outcome, UdpOutcome::BadConnectionId);
    match parse_response(&reply.expect("an error answer"), false) {
        Ok(UdpResponse::Error {
            transaction_id: 5,
            message,
        }) => assert!(message.contains("connection id"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(f.registry.peer_count(), 0);
}

#[test]
fn a_connection_id_is_bound_to_the_address_and_expires_after_two_windows() {
    let f = Fixture::new();
    let from = addr("10.0.0.1:40000");
    let id = f.service.ids.issue(t(30), from);
    assert!(f.service.ids.accepts(t(30), from, id));
    assert!(
        f.service.ids.accepts(t(119), from, id),
        "still valid in the next window"
    );
    assert!(
        !f.service.ids.accepts(t(120), from, id),
        "expired two windows later"
    );
    assert!(
        !f.service.ids.accepts(t(30), addr("10.0.0.1:40001"), id),
        "other port"
    );
    assert!(
        !f.service.ids.accepts(t(30), addr("10.0.0.9:40000"), id),
        "other host"
    );
    // Another server (another secret) does not accept it either.
    let other = UdpTrackerService::new(&mut ChaCha8Rng::seed_from_u64(6));
    assert!(!other.ids.accepts(t(30), from, id));
}

#[test]
fn scrape_answers_in_request_order_with_zeros_for_unknown_torrents() {
    let mut f = Fixture::new();
    let a = addr("10.0.0.1:40000");
    f.announce(t(1), a, &params(1, 6881, 0, Event::Started));
    f.announce(
        t(1),
        addr("10.0.0.2:1"),
        &params(2, 6882, 10, Event::Started),
    );
    let unknown = InfoHash([1; 20]);
    let id = f.connect(t(2), a);
    let (reply, outcome) = f.send(t(2), a, &encode_scrape_request(id, 3, &[unknown, HASH]));
    assert_eq!(outcome, UdpOutcome::Scraped);
    match parse_response(&reply.expect("scrape answer"), false) {
        Ok(UdpResponse::Scrape {
            transaction_id: 3,
            stats,
        }) => {
            assert_eq!(stats.len(), 2);
            assert_eq!(stats[0], ScrapeStats::default());
            assert_eq!((stats[1].complete, stats[1].incomplete), (1, 1));
        }
        other => panic!("expected a scrape answer, got {other:?}"),
    }
}

#[test]
fn scrape_limits_are_enforced_on_both_sides() {
    let many: Vec<InfoHash> = (0..100u8).map(|i| InfoHash([i; 20])).collect();
    let request = encode_scrape_request(1, 1, &many);
    assert_eq!(
        request.len(),
        16 + 20 * MAX_SCRAPE_HASHES,
        "client sends at most 74"
    );
    let mut oversized = request.clone();
    oversized.extend_from_slice(&[0; 20]);
    assert_eq!(
        parse_request(&oversized).map_err(|e| e.error),
        Err(UdpPacketError::TooManyInfoHashes { count: 75 })
    );
    assert_eq!(
        parse_request(&request[..16]).map_err(|e| e.error),
        Err(UdpPacketError::BadScrapeLength { len: 0 })
    );
    assert_eq!(
        parse_request(&request[..16 + 25]).map_err(|e| e.error),
        Err(UdpPacketError::BadScrapeLength { len: 25 })
    );
}

#[test]
fn malformed_packets_get_an_error_or_silence_never_a_panic() {
    let mut f = Fixture::new();
    let from = addr("10.0.0.1:40000");
    // Too short to carry a transaction id: silence.
    for len in 0..16 {
        let (reply, outcome) = f.send(t(1), from, &vec![0xff; len]);
        assert_eq!((reply, outcome), (None, UdpOutcome::Dropped), "len {len}");
    }
    // A connect without the magic, an unknown action, a truncated announce, port 0, a bad event.
    let mut no_magic = encode_connect_request(8);
    no_magic[0] = 1;
    let mut unknown = encode_connect_request(8);
    unknown[8..12].copy_from_slice(&9u32.to_be_bytes());
    let announce = encode_announce_request(1, 8, &params(1, 6881, 0, Event::None));
    let mut port0 = announce.clone();
    port0[96..98].copy_from_slice(&[0, 0]);
    let mut bad_event = announce.clone();
    bad_event[80..84].copy_from_slice(&4u32.to_be_bytes());
    let cases: [(&[u8], UdpPacketError); 5] = [
        (&no_magic, UdpPacketError::BadProtocolId),
        (&unknown, UdpPacketError::UnknownAction(9)),
        (
            &announce[..97],
            UdpPacketError::TooShort { len: 97, need: 98 },
        ),
        (&port0, UdpPacketError::BadPort),
        (&bad_event, UdpPacketError::BadEvent(4)),
    ];
    for (packet, expected) in cases {
        assert_eq!(
            parse_request(packet),
            Err(BadUdpRequest {
                transaction_id: Some(8),
                error: expected.clone()
            })
        );
        let (reply, outcome) = f.send(t(1), from, packet);
        assert_eq!(outcome, UdpOutcome::Malformed);
        match parse_response(&reply.expect("error answer"), false) {
            Ok(UdpResponse::Error {
                transaction_id: 8,
                message,
            }) => assert_eq!(message, expected.to_string()),
            other => panic!("expected an error answer, got {other:?}"),
        }
    }
    assert_eq!(f.registry.peer_count(), 0);
}

#[test]
fn ipv6_clients_get_18_byte_ipv6_peers_and_ipv4_clients_6_byte_ipv4_peers() {
    let mut f = Fixture::new();
    f.announce(
        t(1),
        addr("10.0.0.1:1"),
        &params(1, 6881, 0, Event::Started),
    );
    f.announce(
        t(1),
        addr("[fd00::1]:1"),
        &params(2, 6882, 0, Event::Started),
    );
    let v6 = f.announce(
        t(2),
        addr("[fd00::2]:1"),
        &params(3, 6883, 9, Event::Started),
    );
    let UdpResponse::Announce { reply, .. } = v6 else {
        panic!("announce answer expected");
    };
    assert_eq!(reply.peers, vec![addr("[fd00::1]:6882")]);
    let v4 = f.announce(
        t(2),
        addr("10.0.0.3:1"),
        &params(4, 6884, 9, Event::Started),
    );
    let UdpResponse::Announce { reply, .. } = v4 else {
        panic!("announce answer expected");
    };
    assert_eq!(reply.peers, vec![addr("10.0.0.1:6881")]);
    // IPv4-mapped IPv6 sources count as IPv4.
    let mapped = f.announce(
        t(2),
        addr("[::ffff:10.0.0.4]:1"),
        &params(5, 6885, 9, Event::Started),
    );
    let UdpResponse::Announce { reply, .. } = mapped else {
        panic!("announce answer expected");
    };
    assert!(reply.peers.contains(&addr("10.0.0.1:6881")));
}

#[test]
fn client_rejects_ragged_answers() {
    let mut announce = Vec::new();
    announce.extend_from_slice(&1u32.to_be_bytes());
    announce.extend_from_slice(&1u32.to_be_bytes());
    announce.extend_from_slice(&[0; 12]);
    announce.extend_from_slice(&[1, 2, 3, 4, 5]);
    assert_eq!(
        parse_response(&announce, false),
        Err(UdpPacketError::BadPeerListLength { len: 5, unit: 6 })
    );
    let mut scrape = Vec::new();
    scrape.extend_from_slice(&2u32.to_be_bytes());
    scrape.extend_from_slice(&1u32.to_be_bytes());
    scrape.extend_from_slice(&[0; 13]);
    assert_eq!(
        parse_response(&scrape, false),
        Err(UdpPacketError::BadScrapeAnswerLength { len: 13 })
    );
    assert_eq!(
        parse_response(&[0, 0, 0, 7, 0, 0, 0, 1], false),
        Err(UdpPacketError::UnknownAction(7))
    );
    assert_eq!(
        parse_response(&[0, 0, 0, 0, 0, 0, 0, 1, 9], false),
        Err(UdpPacketError::TooShort { len: 9, need: 16 })
    );
}

#[test]
fn long_error_messages_are_cut_at_a_character_boundary() {
    let message = "é".repeat(300);
    let packet = encode_error(1, &message);
    let Ok(UdpResponse::Error { message: got, .. }) = parse_response(&packet, false) else {
        panic!("error answer expected");
    };
    assert_eq!(got.len(), 256);
    assert!(got.chars().all(|c| c == 'é'));
}

#[test]
fn transaction_ids_differ_per_packet_and_keys_per_torrent() {
    let p = params(1, 1, 0, Event::None);
    let ids: std::collections::BTreeSet<u32> = (0..64).map(|n| transaction_id(&p, n)).collect();
    assert_eq!(ids.len(), 64);
    let k1 = announce_key(1, &[1; 20], &HASH);
    assert_eq!(k1, announce_key(1, &[1; 20], &HASH), "stable");
    assert_ne!(k1, announce_key(1, &[1; 20], &InfoHash([8; 20])));
    assert_ne!(k1, announce_key(2, &[1; 20], &HASH));
}
