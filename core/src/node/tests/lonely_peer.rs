//! A peer that never gets a connection (issue 13: one peer of 10,000, three of 1,000 against a small
//! tracker): its announces, refused by a full tracker, must come again within their backoff, at instants
//! of its own rather than together with the crowd that failed with it; and a downloading peer whose every
//! connection moves nothing must give one up for a peer it has not tried.

use super::*;
use crate::backoff::Backoff;
use crate::tracker::AnnounceReply;
use std::time::Duration;

/// A downloading node (nothing on disk, announcing) of a 4-piece file, with `config` and seed `seed`.
fn downloading_node(config: NodeConfig, seed: u64) -> (Node, Arc<Metainfo>) {
    let meta = meta_for(&content(4 * PL as usize));
    let mut node = Node::new(NodeConfig {
        peer_id: peer_id(0),
        seed,
        ..config
    });
    node.add_torrent(
        Instant::ZERO,
        AddTorrent {
            meta: meta.clone(),
            resume: Resume::Fresh,
            announce: true,
            sources: vec![],
        },
    );
    (node, meta)
}

/// What the node output since the last call.
fn outputs(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn announced(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Announce { .. }))
}

fn dialled(out: &[Output]) -> Vec<SocketAddr> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connect { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect()
}

/// Run the node's timers from `now` until it announces (at most `limit` later); the instant it did.
fn next_announce(node: &mut Node, now: Instant, limit: Duration) -> Option<Instant> {
    let mut at = now;
    while at <= now + limit {
        at = node.poll_timeout()?.max(at);
        node.handle_timeout(at);
        if announced(&outputs(node)) {
            return Some(at);
        }
    }
    None
}

/// The instants of the announces of a node whose first `failures` announces the tracker refuses at once.
fn announces_refused(seed: u64, failures: u32) -> (Node, Arc<Metainfo>, Vec<Instant>) {
    let (mut node, meta) = downloading_node(NodeConfig::default(), seed);
    assert!(announced(&outputs(&mut node)), "the first announce");
    let mut sent = vec![Instant::ZERO];
    for _ in 0..failures {
        let now = *sent.last().expect("one announce");
        node.handle_input(
            now,
            Input::TrackerReply {
                torrent: meta.info_hash,
                reply: Err("tracker unreachable: connection reset".into()),
            },
        );
        outputs(&mut node);
        let next =
            next_announce(&mut node, now, Duration::from_secs(120)).expect("an announce again");
        sent.push(next);
    }
    (node, meta, sent)
}

#[test]
fn refused_announces_come_again_within_their_backoff_and_the_answer_is_dialled() {
    let config = NodeConfig::default();
    let backoff = crate::node::torrent::announce_retry(&config);
    let (mut node, meta, sent) = announces_refused(3, 12);
    for (k, pair) in sent.windows(2).enumerate() {
        let waited = pair[1].saturating_since(pair[0]);
        let delay = backoff.delay(k as u32 + 1);
        assert!(
            waited >= delay / 2 && waited <= delay && waited <= Duration::from_secs(60),
            "retry {}: waited {waited:?}, backoff {delay:?}",
            k + 1
        );
    }
    // The twelfth retry is answered: the peers it brings are dialled at once.
    let now = *sent.last().expect("announces");
    let peer = SocketAddr::from(([10, 0, 0, 7], 6881));
    node.handle_input(
        now,
        Input::TrackerReply {
            torrent: meta.info_hash,
            reply: Ok(AnnounceReply {
                peers: vec![peer],
                ..AnnounceReply::default()
            }),
        },
    );
    assert_eq!(dialled(&outputs(&mut node)), vec![peer]);
}

#[test]
fn peers_refused_together_retry_at_instants_of_their_own() {
    let (_, _, a) = announces_refused(1, 6);
    let (_, _, b) = announces_refused(2, 6);
    let (_, _, a_again) = announces_refused(1, 6);
    assert_eq!(a, a_again, "the same seed, the same instants");
    // Every retry of two peers refused at the same instants comes at a different one (without jitter
    // they were all equal, and a crowd refused together came back together).
    for (k, (x, y)) in a.iter().zip(&b).enumerate().skip(1) {
        assert_ne!(x, y, "retry {k}");
    }
    let unjittered = Backoff::new(Duration::from_secs(2), Duration::from_secs(32));
    assert!(
        a.windows(2)
            .enumerate()
            .any(|(k, w)| w[1].saturating_since(w[0]) != unjittered.delay(k as u32 + 1)),
        "{a:?}"
    );
}

#[test]
fn a_downloading_peer_full_of_idle_connections_gives_a_useless_one_up_for_a_peer_it_has_not_tried()
{
    let idle = Duration::from_secs(10);
    let (mut node, meta) = downloading_node(
        NodeConfig {
            max_peers_per_torrent: 2,
            evict_idle_after: idle,
            ..NodeConfig::default()
        },
        5,
    );
    outputs(&mut node);
    // Two peers fill our cap: one that holds nothing either (a late joiner like us), and one that holds a
    // piece we lack but chokes us (worth waiting for).
    let reserved = crate::wire::reserved_bits(true, false);
    // (The choking one connects first: at equal idle times the older would go.)
    let mut choking = HandPeer::open_as(&mut node, &meta, reserved, 1);
    choking.say(&mut node, &[Message::HaveNone, Message::Have { index: 0 }]);
    let mut nothing = HandPeer::open_as(&mut node, &meta, reserved, 2);
    nothing.say(&mut node, &[Message::HaveNone]);
    outputs(&mut node);
    // The tracker tells of a third peer: no slot for it yet.
    let third = SocketAddr::from(([10, 0, 0, 3], 6881));
    node.handle_input(
        Instant::ZERO,
        Input::TrackerReply {
            torrent: meta.info_hash,
            reply: Ok(AnnounceReply {
                peers: vec![third],
                ..AnnounceReply::default()
            }),
        },
    );
    assert!(dialled(&outputs(&mut node)).is_empty(), "at the cap");
    // Before `evict_idle_after` nothing moves; from then on one idle connection gives way to the dial.
    let mut closed = BTreeSet::new();
    let mut dials = Vec::new();
    let mut now = Instant::ZERO;
    while now < Instant::ZERO + idle + Duration::from_secs(1) {
        now = node
            .poll_timeout()
            .expect("a timer")
            .max(now + Duration::from_millis(100));
        node.handle_timeout(now);
        for o in outputs(&mut node) {
            match o {
                Output::Close { conn } => {
                    assert!(now >= Instant::ZERO + idle, "closed at {now:?}");
                    closed.insert(conn);
                }
                Output::Connect { addr, .. } => dials.push(addr),
                _ => {}
            }
        }
    }
    assert_eq!(dials, vec![third]);
    assert_eq!(
        closed,
        BTreeSet::from([nothing.conn]),
        "the one with nothing to exchange is given up, the choking holder of a piece kept"
    );
}
