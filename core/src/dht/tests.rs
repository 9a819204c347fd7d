//! Hundreds of DHT nodes against each other in a [`Mesh`], with no IO.

use super::id::NodeId;
use super::krpc::{self, Body, Message, Query};
use super::lookup::LookupKind;
use super::mesh::{Host, Mesh, MeshConfig};
use super::node::{DhtConfig, DhtEvent, DhtInput, DhtNode, DhtOutput, LookupResult};
use crate::metainfo::InfoHash;
use crate::time::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::time::Duration;

fn config(seed: u64) -> DhtConfig {
    DhtConfig {
        seed,
        ..DhtConfig::default()
    }
}

/// `n` nodes joining one after another through host 0, then a minute of quiet.
fn joined_mesh(n: usize, seed: u64) -> Mesh {
    let mut mesh = Mesh::new(MeshConfig {
        seed,
        ..MeshConfig::default()
    });
    mesh.add(config(seed * 100_000));
    let boot = mesh.addr(0);
    for i in 1..n {
        let h = mesh.add(config(seed * 100_000 + i as u64));
        mesh.input(
            h,
            DhtInput::Bootstrap {
                addrs: vec![boot],
                known: vec![],
            },
        );
        mesh.run_for(Duration::from_millis(50));
    }
    mesh.run_for(Duration::from_secs(60));
    mesh.take_results();
    mesh
}

/// The reachable host other than `asker` whose id is closest to `target`.
fn true_closest(mesh: &Mesh, asker: Host, target: &NodeId) -> Option<NodeId> {
    (0..mesh.len())
        .filter(|h| *h != asker && mesh.is_reachable(*h))
        .filter_map(|h| mesh.node(h).map(DhtNode::id))
        .min_by_key(|id| id.distance(target))
}

/// Run `count` lookups of random targets from random reachable hosts, one after another.
fn lookups(mesh: &mut Mesh, count: usize, seed: u64) -> Vec<(Host, NodeId, LookupResult)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    while out.len() < count {
        let host = (rng.next_u32() as usize) % mesh.len();
        if !mesh.is_reachable(host) {
            continue;
        }
        let target = NodeId::random(&mut rng);
        mesh.input(
            host,
            DhtInput::Lookup {
                target,
                kind: LookupKind::FindNode,
            },
        );
        mesh.run_for(Duration::from_secs(30));
        let results = mesh.take_results();
        let (_, r) = results
            .into_iter()
            .find(|(h, r)| *h == host && r.target == target)
            .expect("the lookup ended within 30 s");
        out.push((host, target, r));
    }
    out
}

fn mean_hops(results: &[(Host, NodeId, LookupResult)]) -> f64 {
    results
        .iter()
        .map(|(_, _, r)| f64::from(r.hops))
        .sum::<f64>()
        / results.len() as f64
}

#[test]
fn lookups_converge_on_the_closest_node_in_few_hops() {
    let n = 300;
    let mut mesh = joined_mesh(n, 1);
    let results = lookups(&mut mesh, 60, 99);
    let exact = results
        .iter()
        .filter(|(host, target, r)| {
            r.closest.first().map(|c| c.id) == true_closest(&mesh, *host, target)
        })
        .count();
    assert_eq!(exact, results.len(), "every lookup found the closest node");
    let hops = mean_hops(&results);
    let log2n = (n as f64).log2();
    assert!(hops <= log2n, "mean hops {hops} > log2({n}) = {log2n}");
    let queries = results.iter().map(|(_, _, r)| r.queries).max().unwrap_or(0);
    assert!(queries < 100, "a lookup spent its whole budget");
    assert!(
        mesh.node(5).unwrap().table().len() >= 8,
        "tables filled by joining"
    );
}

#[test]
fn hop_counts_grow_logarithmically() {
    let mut means = Vec::new();
    for (n, seed) in [(32, 2), (512, 3)] {
        let mut mesh = joined_mesh(n, seed);
        let results = lookups(&mut mesh, 40, seed);
        means.push(mean_hops(&results));
    }
    // Sixteen times the nodes: log2 grows by 4; the hop count must grow by far less than 16-fold, and
    // stay under log2(n).
    assert!(means[1] <= 9.0, "{means:?}");
    assert!(means[1] < means[0] * 4.0, "{means:?}");
}

#[test]
fn announced_peers_are_found_by_others() {
    let mut mesh = joined_mesh(120, 4);
    let hash = InfoHash([0x5a; 20]);
    mesh.input(
        7,
        DhtInput::Lookup {
            target: NodeId(hash.0),
            kind: LookupKind::GetPeers {
                announce_port: Some(7000),
            },
        },
    );
    mesh.run_for(Duration::from_secs(30));
    let announce = mesh.take_results();
    assert_eq!(announce.len(), 1);
    assert!(announce[0].1.announced >= 4, "{:?}", announce[0].1);
    mesh.input(
        90,
        DhtInput::Lookup {
            target: NodeId(hash.0),
            kind: LookupKind::GetPeers {
                announce_port: None,
            },
        },
    );
    mesh.run_for(Duration::from_secs(30));
    let found = mesh.take_results();
    let want = SocketAddr::new(mesh.addr(7).ip(), 7000);
    assert_eq!(found[0].1.peers, vec![want]);
    assert_eq!(found[0].1.announced, 0);
}

fn reply(node: &mut DhtNode) -> Message {
    let mut sent = None;
    while let Some(out) = node.poll_output() {
        if let DhtOutput::Send { bytes, .. } = out {
            sent = Some(Message::parse(&bytes).unwrap());
        }
    }
    sent.expect("the node answered")
}

fn query(node: &mut DhtNode, now: Instant, from: SocketAddr, q: Query) -> Message {
    let msg = Message {
        transaction: b"xy".to_vec(),
        version: None,
        read_only: false,
        body: Body::Query(q),
    };
    node.handle_input(
        now,
        DhtInput::Datagram {
            from,
            bytes: msg.encode(),
        },
    );
    reply(node)
}

#[test]
fn tokens_are_enforced() {
    let t0 = Instant::ZERO;
    let mut node = DhtNode::new(config(5), t0);
    let alice: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    let mallory: SocketAddr = "10.0.0.66:6881".parse().unwrap();
    let hash = InfoHash([1; 20]);
    let id = NodeId([9; 20]);
    let got = query(
        &mut node,
        t0,
        alice,
        Query::GetPeers {
            id,
            info_hash: hash,
        },
    );
    let Body::Response(r) = got.body else {
        panic!("not a response: {got:?}")
    };
    let token = r.token.expect("get_peers answers carry a token");
    let announce = |token: Vec<u8>| Query::AnnouncePeer {
        id,
        info_hash: hash,
        port: 7000,
        implied_port: false,
        token,
    };
    let stolen = query(&mut node, t0, mallory, announce(token.clone()));
    assert_eq!(
        stolen.body,
        Body::Error {
            code: krpc::codes::PROTOCOL,
            message: "bad token".into()
        },
        "a token is bound to the address it was given to"
    );
    let forged = query(&mut node, t0, alice, announce(b"12345678".to_vec()));
    assert!(matches!(forged.body, Body::Error { code: 203, .. }));
    let ok = query(&mut node, t0, alice, announce(token.clone()));
    assert!(matches!(ok.body, Body::Response(_)), "{ok:?}");
    let Body::Response(r) = query(
        &mut node,
        t0,
        mallory,
        Query::GetPeers {
            id,
            info_hash: hash,
        },
    )
    .body
    else {
        panic!("not a response")
    };
    assert_eq!(
        r.values,
        vec!["10.0.0.1:7000".parse::<SocketAddr>().unwrap()]
    );
    // Two rotations later the token is refused.
    let later = t0 + Duration::from_secs(10 * 60);
    node.handle_timeout(t0 + Duration::from_secs(5 * 60));
    node.handle_timeout(later);
    while node.poll_output().is_some() {}
    let stale = query(&mut node, later, alice, announce(token));
    assert!(matches!(stale.body, Body::Error { code: 203, .. }));
    assert_eq!(node.stats().bad_tokens, 3);
    assert_eq!(node.stats().announces_stored, 1);
}

#[test]
fn unknown_methods_and_garbage_are_answered_or_dropped() {
    let t0 = Instant::ZERO;
    let mut node = DhtNode::new(config(6), t0);
    let from: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let got = query(
        &mut node,
        t0,
        from,
        Query::Other {
            id: NodeId([1; 20]),
            method: "vote".into(),
        },
    );
    assert!(matches!(got.body, Body::Error { code: 204, .. }));
    node.handle_input(
        t0,
        DhtInput::Datagram {
            from,
            bytes: b"d1:t2:zz1:y1:re".to_vec(),
        },
    );
    assert!(matches!(
        node.poll_output(),
        Some(DhtOutput::Event(DhtEvent::Malformed {
            error: krpc::KrpcError::Missing("r"),
            ..
        }))
    ));
    // A well-formed response to nothing we asked is dropped silently.
    let stray = Message {
        transaction: vec![0, 1],
        version: None,
        read_only: false,
        body: Body::Response(krpc::Response {
            id: NodeId([2; 20]),
            ..Default::default()
        }),
    };
    node.handle_input(
        t0,
        DhtInput::Datagram {
            from,
            bytes: stray.encode(),
        },
    );
    assert_eq!(node.poll_output(), None);
    assert_eq!(node.stats().dropped, 2);
    assert_eq!(node.table().len(), 1, "only the querier was learned");
}

/// Entries pointing to silent hosts, over all reachable hosts' tables.
fn silent_entries(mesh: &Mesh, silent: &[Host]) -> usize {
    let silent_ids: Vec<NodeId> = silent
        .iter()
        .filter_map(|h| mesh.node(*h).map(DhtNode::id))
        .collect();
    (0..mesh.len())
        .filter(|h| mesh.is_reachable(*h))
        .filter_map(|h| mesh.node(h))
        .flat_map(|n| n.table().contacts())
        .filter(|c| silent_ids.contains(&c.info.id))
        .count()
}

#[test]
fn nodes_that_never_answer_are_evicted_and_lookups_still_converge() {
    let mut mesh = joined_mesh(200, 7);
    let silent: Vec<Host> = (1..mesh.len()).filter(|h| h % 5 == 0).collect();
    for h in &silent {
        mesh.set_silent(*h, true);
    }
    let before = silent_entries(&mesh, &silent);
    assert!(before > 100, "silent hosts were known: {before}");
    let results = lookups(&mut mesh, 40, 8);
    for (host, target, r) in &results {
        assert_eq!(
            r.closest.first().map(|c| c.id),
            true_closest(&mesh, *host, target),
            "{r:?}"
        );
    }
    assert!(results.iter().any(|(_, _, r)| r.failures > 0));
    // Refresh rounds over an hour query the stale buckets, where the silent contacts are.
    mesh.run_for(Duration::from_secs(3600));
    let after = silent_entries(&mesh, &silent);
    let evicted = mesh
        .take_events()
        .iter()
        .filter(|(_, _, e)| matches!(e, DhtEvent::Evicted(_)))
        .count();
    assert!(evicted >= before - after && evicted > 0);
    assert!(after * 10 < before, "before {before}, after {after}");
}

#[test]
fn trace_shows_every_query_and_answer() {
    let mut mesh = Mesh::new(MeshConfig::default());
    let a = mesh.add(DhtConfig {
        trace: true,
        ..config(1)
    });
    let b = mesh.add(DhtConfig {
        trace: true,
        ..config(2)
    });
    let boot = mesh.addr(a);
    mesh.input(
        b,
        DhtInput::Bootstrap {
            addrs: vec![boot],
            known: vec![],
        },
    );
    mesh.run_for(Duration::from_secs(5));
    let lines: Vec<(Host, bool, String)> = mesh
        .take_events()
        .into_iter()
        .filter_map(|(_, h, e)| match e {
            DhtEvent::Krpc {
                outgoing, summary, ..
            } => Some((h, outgoing, summary)),
            _ => None,
        })
        .collect();
    assert!(
        lines[0].1 && lines[0].2.starts_with("query find_node"),
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|(h, out, s)| *h == a && *out && s.starts_with("response")));
    assert!(lines
        .iter()
        .any(|(h, out, s)| *h == b && !*out && s.starts_with("response")));
    assert_eq!(mesh.node(b).unwrap().table().len(), 1);
}

/// Carry every datagram between two nodes until both are quiet.
fn exchange(a: (&mut DhtNode, SocketAddr), b: (&mut DhtNode, SocketAddr), now: Instant) {
    let (a, a_addr) = a;
    let (b, b_addr) = b;
    loop {
        let mut moved = false;
        while let Some(out) = a.poll_output() {
            if let DhtOutput::Send { to, bytes } = out {
                assert_eq!(to, b_addr);
                b.handle_input(
                    now,
                    DhtInput::Datagram {
                        from: a_addr,
                        bytes,
                    },
                );
                moved = true;
            }
        }
        while let Some(out) = b.poll_output() {
            if let DhtOutput::Send { to, bytes } = out {
                assert_eq!(to, a_addr);
                a.handle_input(
                    now,
                    DhtInput::Datagram {
                        from: b_addr,
                        bytes,
                    },
                );
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn a_pinged_node_that_answers_joins_the_table_once() {
    let t0 = Instant::ZERO;
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:6881".parse().unwrap(),
    );
    let mut a = DhtNode::new(config(7), t0);
    let mut b = DhtNode::new(config(8), t0);
    a.ping(t0, b_addr);
    // A second ping while the first is pending sends nothing more.
    a.ping(t0, b_addr);
    let sent = std::iter::from_fn(|| a.poll_output()).collect::<Vec<_>>();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let DhtOutput::Send { bytes, .. } = &sent[0] else {
        panic!("not a datagram: {sent:?}")
    };
    b.handle_input(
        t0,
        DhtInput::Datagram {
            from: a_addr,
            bytes: bytes.clone(),
        },
    );
    exchange((&mut a, a_addr), (&mut b, b_addr), t0);
    assert_eq!(
        a.nodes().iter().map(|n| (n.id, n.addr)).collect::<Vec<_>>(),
        vec![(b.id(), b_addr)]
    );
    assert_eq!(a.stats().responses_in, 1);
}
