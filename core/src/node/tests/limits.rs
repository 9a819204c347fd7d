//! Resource limits of a node, each exercised at its boundary: the global and per-torrent connection caps
//! (and eviction of peers that move no payload),
//! the handshake timeout, the idle timeout, and the bound on requests queued for serving per peer.

use super::*;
use std::time::Duration;

/// A seeding node with `config` (peer id and seed fixed) for a 4-piece file.
fn seeding_node(config: NodeConfig) -> (Node, Arc<Metainfo>) {
    let meta = meta_for(&content(4 * PL as usize));
    let mut node = Node::new(NodeConfig {
        peer_id: peer_id(0),
        ..config
    });
    node.add_torrent(
        Instant::ZERO,
        AddTorrent {
            meta: meta.clone(),
            resume: Resume::Complete,
            announce: false,
            sources: vec![],
        },
    );
    while node.poll_output().is_some() {}
    (node, meta)
}

/// Connections the node asked to close among what it output since the last call.
fn closed(node: &mut Node) -> BTreeSet<ConnId> {
    let mut out = BTreeSet::new();
    while let Some(o) = node.poll_output() {
        if let Output::Close { conn } = o {
            out.insert(conn);
        }
    }
    out
}

/// Accept a connection from 10.0.0.`n` at `now`.
fn accept(node: &mut Node, n: u8, now: Instant) -> ConnId {
    let conn = node.allocate_conn_id();
    node.handle_input(
        now,
        Input::Accepted {
            conn,
            addr: SocketAddr::from(([10, 0, 0, n], 40000)),
        },
    );
    conn
}

/// Accept a connection from peer `n` (its own address and peer id) and send its handshake.
fn dial_in(node: &mut Node, meta: &Metainfo, n: u8, now: Instant) -> ConnId {
    let conn = accept(node, n, now);
    let hs = Handshake {
        reserved: crate::wire::reserved_bits(true, false),
        info_hash: meta.info_hash.0,
        peer_id: [n; 20],
    };
    node.handle_input(
        now,
        Input::Received {
            conn,
            data: Bytes::copy_from_slice(&hs.encode()),
        },
    );
    conn
}

fn at(secs_millis: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(secs_millis)
}

#[test]
fn connections_over_the_global_cap_are_closed_at_once() {
    let (mut node, _) = seeding_node(NodeConfig {
        max_connections: 3,
        ..NodeConfig::default()
    });
    let conns: Vec<ConnId> = (1..=5)
        .map(|n| accept(&mut node, n, Instant::ZERO))
        .collect();
    assert_eq!(closed(&mut node), conns[3..].iter().copied().collect());
    // A slot frees when a connection goes away.
    node.handle_input(Instant::ZERO, Input::Closed { conn: conns[0] });
    let sixth = accept(&mut node, 6, Instant::ZERO);
    assert!(!closed(&mut node).contains(&sixth));
    let seventh = accept(&mut node, 7, Instant::ZERO);
    assert_eq!(closed(&mut node), BTreeSet::from([seventh]));
}

#[test]
fn handshakes_over_the_per_torrent_cap_are_closed() {
    let (mut node, meta) = seeding_node(NodeConfig {
        max_connections: 10,
        max_peers_per_torrent: 2,
        ..NodeConfig::default()
    });
    let a = dial_in(&mut node, &meta, 1, Instant::ZERO);
    let b = dial_in(&mut node, &meta, 2, Instant::ZERO);
    assert_eq!(closed(&mut node), BTreeSet::new());
    let c = dial_in(&mut node, &meta, 3, Instant::ZERO);
    assert_eq!(closed(&mut node), BTreeSet::from([c]));
    node.handle_input(Instant::ZERO, Input::Closed { conn: a });
    let d = dial_in(&mut node, &meta, 4, Instant::ZERO);
    assert!(!closed(&mut node).contains(&d), "d refused after a left");
    assert_eq!(
        node.stats(&meta.info_hash).map(|s| s.peers),
        Some(2),
        "b and d are the torrent's peers ({b}, {d})"
    );
}

#[test]
fn a_connection_that_never_completes_its_handshake_is_dropped_at_the_timeout() {
    let config = NodeConfig::default();
    let limit = config.handshake_timeout.as_millis() as u64;
    let (mut node, _) = seeding_node(config);
    let silent = accept(&mut node, 1, Instant::ZERO);
    // Half a handshake, then nothing (a slow-loris peer).
    node.handle_input(
        at(1),
        Input::Received {
            conn: silent,
            data: Bytes::from_static(b"\x13BitTorrent"),
        },
    );
    node.handle_timeout(at(limit - 1));
    assert_eq!(closed(&mut node), BTreeSet::new());
    node.handle_timeout(at(limit));
    assert_eq!(closed(&mut node), BTreeSet::from([silent]));
}

#[test]
fn a_peer_silent_after_its_handshake_is_dropped_at_the_idle_timeout() {
    let config = NodeConfig::default();
    let idle = config.idle_timeout.as_millis() as u64;
    let (mut node, meta) = seeding_node(config);
    let quiet = dial_in(&mut node, &meta, 1, Instant::ZERO);
    let chatty = dial_in(&mut node, &meta, 2, Instant::ZERO);
    assert_eq!(closed(&mut node), BTreeSet::new());
    // The chatty peer sends a keep-alive every 10 s; the quiet one sends nothing.
    let mut t = 0;
    while t + 10_000 < idle {
        t += 10_000;
        node.handle_input(
            at(t),
            Input::Received {
                conn: chatty,
                data: Bytes::from_static(&[0, 0, 0, 0]),
            },
        );
        node.handle_timeout(at(t));
        assert_eq!(closed(&mut node), BTreeSet::new(), "closed early at {t} ms");
    }
    node.handle_timeout(at(idle - 1));
    assert_eq!(closed(&mut node), BTreeSet::new());
    node.handle_timeout(at(idle));
    assert_eq!(closed(&mut node), BTreeSet::from([quiet]));
}

#[test]
fn requests_queued_for_serving_are_bounded_per_peer() {
    let (mut node, meta) = seeding_node(NodeConfig {
        max_served_requests: 4,
        ..NodeConfig::default()
    });
    let mut peer = HandPeer::open(&mut node, &meta, true);
    let (out, _) = peer.say(&mut node, &[Message::Interested]);
    assert!(out.contains(&Message::Unchoke), "not unchoked: {out:?}");
    // Ten valid requests at once, none answered yet by the disk.
    let blocks: Vec<(u32, u32, u32)> = (0..10u32)
        .map(|i| (i / 2, (i % 2) * BLOCK, BLOCK))
        .collect();
    let msgs: Vec<Message> = blocks
        .iter()
        .map(|&(index, begin, length)| Message::Request {
            index,
            begin,
            length,
        })
        .collect();
    let (out, reads) = peer.say(&mut node, &msgs);
    assert_eq!(reads.len(), 4, "reads queued");
    assert_eq!(
        rejects(&out),
        blocks[4..].iter().copied().collect(),
        "requests over the bound are rejected"
    );
    // Serving one frees one place.
    let first = reads[0];
    node.handle_input(
        Instant::ZERO,
        Input::Disk(DiskDone::Read {
            torrent: meta.info_hash,
            conn: peer.conn,
            block: first,
            data: Ok(Bytes::from(vec![0; first.length as usize])),
        }),
    );
    let (out, reads) = peer.say(
        &mut node,
        &[Message::Request {
            index: 3,
            begin: 0,
            length: BLOCK,
        }],
    );
    assert!(
        out.iter()
            .any(|m| matches!(m, Message::Piece { index, begin, .. }
            if (*index, *begin) == (first.piece, first.begin))),
        "the served block was not sent: {out:?}"
    );
    assert_eq!(reads.len(), 1);
    assert_eq!(rejects(&out), BTreeSet::new());
}

const BLOCK: u32 = crate::BLOCK_LENGTH;

#[test]
fn a_newcomer_over_the_per_torrent_cap_replaces_a_peer_that_moved_no_payload() {
    let config = NodeConfig {
        max_connections: 10,
        max_peers_per_torrent: 2,
        ..NodeConfig::default()
    };
    let evict = config.evict_idle_after.as_millis() as u64;
    let (mut node, meta) = seeding_node(config);
    let a = dial_in(&mut node, &meta, 1, Instant::ZERO);
    let b = dial_in(&mut node, &meta, 2, at(1000));
    assert_eq!(closed(&mut node), BTreeSet::new());
    // Both only send keep-alives: alive, but useless.
    let keep_alive = |node: &mut Node, t: u64| {
        for conn in [a, b] {
            node.handle_input(
                at(t),
                Input::Received {
                    conn,
                    data: Bytes::from_static(&[0, 0, 0, 0]),
                },
            );
        }
        node.handle_timeout(at(t));
    };
    let mut t = 0;
    while t + 10_000 < evict {
        t += 10_000;
        keep_alive(&mut node, t);
    }
    assert_eq!(closed(&mut node), BTreeSet::new(), "keep-alives keep them");
    // Before either has been idle for the whole period, a newcomer is turned away.
    let early = dial_in(&mut node, &meta, 3, at(evict - 1));
    assert_eq!(closed(&mut node), BTreeSet::from([early]));
    // Then the one idle longest (a) makes room; b stays.
    keep_alive(&mut node, evict);
    let late = dial_in(&mut node, &meta, 4, at(evict));
    assert_eq!(closed(&mut node), BTreeSet::from([a]));
    let s = node.stats(&meta.info_hash).unwrap();
    assert_eq!(s.peers, 2, "b and the newcomer {late}");
    // b moved no payload either, but was connected a second later: the next newcomer waits for it.
    let next = dial_in(&mut node, &meta, 5, at(evict + 500));
    assert_eq!(closed(&mut node), BTreeSet::from([next]));
    let last = dial_in(&mut node, &meta, 6, at(evict + 1000));
    assert_eq!(closed(&mut node), BTreeSet::from([b]), "b out, {last} in");
    assert_eq!(node.stats(&meta.info_hash).unwrap().peers, 2);
}

/// A leecher of a 4-piece file that may keep `cap` connections for it and knows the peers 10.0.1.`n` for `n`
/// in `known`.
fn leecher_knowing(cap: usize, known: std::ops::RangeInclusive<u8>) -> (Node, Arc<Metainfo>) {
    let meta = meta_for(&content(4 * PL as usize));
    let mut node = Node::new(NodeConfig {
        peer_id: peer_id(0),
        max_peers_per_torrent: cap,
        ..NodeConfig::default()
    });
    node.add_torrent(
        Instant::ZERO,
        AddTorrent {
            meta: meta.clone(),
            resume: Resume::Fresh,
            announce: false,
            sources: vec![],
        },
    );
    for n in known {
        node.add_peer(
            Instant::ZERO,
            &meta.info_hash,
            SocketAddr::from(([10, 0, 1, n], 6881)),
        );
    }
    (node, meta)
}

/// The dials among what the node output since the last call.
fn dials(node: &mut Node) -> Vec<(ConnId, SocketAddr)> {
    let mut out = Vec::new();
    while let Some(o) = node.poll_output() {
        if let Output::Connect { conn, addr } = o {
            out.push((conn, addr));
        }
    }
    out
}

#[test]
fn dials_in_flight_count_against_the_per_torrent_cap() {
    let (mut node, _) = leecher_knowing(3, 1..=10);
    let first = dials(&mut node);
    assert_eq!(first.len(), 3, "the cap's worth of dials: {first:?}");
    // Passes while the dials are still connecting dial nobody more (before, each dialled the cap again).
    for ms in [1, 50, 300, 2_000] {
        node.handle_timeout(at(ms));
        assert_eq!(dials(&mut node), vec![], "at {ms} ms");
    }
    // One dial fails: one more address is dialled in its place, no more.
    node.handle_input(
        at(2_000),
        Input::ConnectFailed {
            conn: first[0].0,
            reason: ConnectError::TimedOut,
        },
    );
    node.handle_timeout(at(2_001));
    let second = dials(&mut node);
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(
        first.iter().all(|(_, a)| *a != second[0].1),
        "a new address"
    );
}

/// Accept a connection from `from` and send the handshake of peer `id` for `meta`.
fn handshake_from(
    node: &mut Node,
    meta: &Metainfo,
    from: SocketAddr,
    id: [u8; 20],
    now: Instant,
) -> ConnId {
    let conn = node.allocate_conn_id();
    node.handle_input(now, Input::Accepted { conn, addr: from });
    answer(node, meta, conn, id, now);
    conn
}

/// Peer `id`'s handshake for `meta` arrives on connection `conn`.
fn answer(node: &mut Node, meta: &Metainfo, conn: ConnId, id: [u8; 20], now: Instant) {
    let hs = Handshake {
        reserved: crate::wire::reserved_bits(true, false),
        info_hash: meta.info_hash.0,
        peer_id: id,
    };
    node.handle_input(
        now,
        Input::Received {
            conn,
            data: Bytes::copy_from_slice(&hs.encode()),
        },
    );
}

#[test]
fn at_the_cap_an_inbound_handshake_takes_a_dials_place_unless_it_is_the_dialled_peer_and_loses_the_tie(
) {
    let (mut node, meta) = leecher_knowing(2, 1..=2);
    let first = dials(&mut node);
    assert_eq!(first.len(), 2, "the cap's worth of dials: {first:?}");
    node.handle_input(at(10), Input::Connected { conn: first[1].0 });
    let peers = |node: &Node| node.stats(&meta.info_hash).map(|s| s.peers);
    // A peer whose handshake is here takes the place of a dial not yet answered: the one still
    // connecting before the one handshaking.
    let newcomer = handshake_from(
        &mut node,
        &meta,
        ([10, 0, 0, 9], 40000).into(),
        [9; 20],
        at(20),
    );
    assert_eq!(closed(&mut node), BTreeSet::from([first[0].0]));
    assert_eq!(peers(&node), Some(1), "{newcomer} in");
    // Now at the cap with one open connection and one dial in flight, to 10.0.1.2. The peer there, dialling
    // us at the same time, with an id above ours: the duplicate rule keeps our connection to it, so its own
    // is refused and our dial kept.
    let (dialled, dialled_at) = first[1];
    let loser = handshake_from(
        &mut node,
        &meta,
        (dialled_at.ip(), 50000).into(),
        [0xff; 20],
        at(30),
    );
    assert_eq!(closed(&mut node), BTreeSet::from([loser]), "refused");
    assert_eq!(peers(&node), Some(1));
    // With an id below ours its connection is the one both ends keep: our dial gives way to it.
    let winner = handshake_from(
        &mut node,
        &meta,
        (dialled_at.ip(), 50001).into(),
        [2; 20],
        at(40),
    );
    assert_eq!(closed(&mut node), BTreeSet::from([dialled]), "{winner} in");
    assert_eq!(peers(&node), Some(2));
    // At the cap with open connections only, that moved payload recently: a newcomer is refused.
    let late = handshake_from(
        &mut node,
        &meta,
        ([10, 0, 0, 7], 40000).into(),
        [7; 20],
        at(50),
    );
    assert_eq!(closed(&mut node), BTreeSet::from([late]));
    // The address whose dial gave way was not at fault: no failure counted, dialled again once there is room.
    node.handle_input(at(60), Input::Closed { conn: newcomer });
    node.handle_timeout(at(61));
    let again = dials(&mut node);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        again[0].1, first[0].1,
        "the withdrawn dial's address, at once"
    );
}

#[test]
fn open_connections_and_dials_in_flight_never_exceed_the_cap_under_a_burst_both_ways() {
    const CAP: usize = 5;
    let (mut node, meta) = leecher_knowing(CAP, 1..=40);
    // What the node has: dials in flight (and whether each connected), and open connections.
    let mut dialling: BTreeMap<ConnId, (SocketAddr, bool)> = BTreeMap::new();
    let mut open: BTreeSet<ConnId> = BTreeSet::new();
    let (mut at_cap, mut refused, mut gave_way) = (0, 0, 0);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..2_000u64 {
        let now = at(step * 7);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pick = |n: usize| (x >> 24) as usize % n.max(1);
        let mut accepted = None;
        match x % 8 {
            // A burst of inbound handshakes, from peers with ids above and below ours.
            0..=2 => {
                let n = (step % 200) as u8;
                let id = if step % 2 == 0 {
                    [n; 20]
                } else {
                    [0x80 | n; 20]
                };
                let ip = if step % 5 == 0 { 1 } else { 0 };
                let from = SocketAddr::from(([10, 0, ip, n % 41], 40000 + step as u16));
                accepted = Some(handshake_from(&mut node, &meta, from, id, now));
            }
            // A dial connects, or answers its handshake once connected.
            3 | 4 => {
                if let Some((&conn, &(addr, connected))) = dialling.iter().nth(pick(dialling.len()))
                {
                    if connected {
                        let n = match addr.ip() {
                            std::net::IpAddr::V4(v4) => v4.octets()[3],
                            std::net::IpAddr::V6(_) => 0,
                        };
                        answer(&mut node, &meta, conn, [0x40 + n; 20], now);
                        dialling.remove(&conn);
                        open.insert(conn);
                    } else {
                        node.handle_input(now, Input::Connected { conn });
                        dialling.insert(conn, (addr, true));
                    }
                }
            }
            // A dial fails, or a connected one is refused (closed before its handshake).
            5 => {
                if let Some((&conn, &(_, connected))) = dialling.iter().nth(pick(dialling.len())) {
                    let input = if connected {
                        Input::Closed { conn }
                    } else {
                        Input::ConnectFailed {
                            conn,
                            reason: ConnectError::TimedOut,
                        }
                    };
                    node.handle_input(now, input);
                    dialling.remove(&conn);
                }
            }
            // An open connection ends.
            6 => {
                if let Some(&conn) = open.iter().nth(pick(open.len())) {
                    node.handle_input(now, Input::Closed { conn });
                    open.remove(&conn);
                }
            }
            _ => node.handle_timeout(now),
        }
        if let Some(conn) = accepted {
            open.insert(conn);
        }
        let full = open.len() + dialling.len() >= CAP;
        let (mut gone_dials, mut gone_inbound) = (0, 0);
        while let Some(o) = node.poll_output() {
            match o {
                Output::Connect { conn, addr } => {
                    dialling.insert(conn, (addr, false));
                }
                Output::Close { conn } => {
                    gone_dials += usize::from(dialling.remove(&conn).is_some());
                    if open.remove(&conn) && Some(conn) == accepted {
                        gone_inbound += 1;
                    }
                }
                _ => {}
            }
        }
        if accepted.is_some() && full {
            at_cap += 1;
            refused += gone_inbound;
            gave_way += gone_dials;
        }
        assert!(
            open.len() + dialling.len() <= CAP,
            "step {step}: {} open, {} dialling",
            open.len(),
            dialling.len()
        );
        assert_eq!(
            node.stats(&meta.info_hash).map(|s| s.peers as usize),
            Some(open.len()),
            "step {step}"
        );
    }
    assert!(at_cap > 100, "the burst reached the cap often: {at_cap}");
    assert!(refused > 50, "newcomers refused at the cap: {refused}");
    assert!(
        gave_way > 50,
        "dials that gave way to newcomers: {gave_way}"
    );
}

#[test]
fn a_peer_that_hangs_up_before_its_handshake_is_dialled_again_only_after_reconnect_max() {
    let config = NodeConfig::default();
    let (mut node, _) = leecher_knowing(50, 1..=2);
    let first = dials(&mut node);
    assert_eq!(first.len(), 2);
    let ((full, full_addr), (away, away_addr)) = (first[0], first[1]);
    // `full` accepts the connection and closes it before its handshake, as a peer at its cap does; `away`
    // never answers.
    node.handle_input(at(20), Input::Connected { conn: full });
    node.handle_input(at(40), Input::Closed { conn: full });
    node.handle_input(
        at(20),
        Input::ConnectFailed {
            conn: away,
            reason: ConnectError::TimedOut,
        },
    );
    let mut redials: Vec<(u64, SocketAddr)> = Vec::new();
    let end = config.reconnect_max.as_millis() as u64 + 1_000;
    for ms in (100..end).step_by(100) {
        node.handle_timeout(at(ms));
        for (conn, addr) in dials(&mut node) {
            redials.push((ms, addr));
            if addr == away_addr {
                node.handle_input(
                    at(ms),
                    Input::ConnectFailed {
                        conn,
                        reason: ConnectError::TimedOut,
                    },
                );
            }
        }
    }
    let full_redials: Vec<u64> = redials
        .iter()
        .filter(|(_, a)| *a == full_addr)
        .map(|(ms, _)| *ms)
        .collect();
    // Refused at 40 ms: dialable again at reconnect_max + 40 ms, dialled at the next pass (every 100 ms).
    let due = 40 + config.reconnect_max.as_millis() as u64;
    assert_eq!(
        full_redials,
        vec![due.next_multiple_of(100)],
        "the refusing peer once, after reconnect_max"
    );
    assert!(
        redials.iter().filter(|(_, a)| *a == away_addr).count() >= 4,
        "the silent one on its usual backoff: {redials:?}"
    );
}
