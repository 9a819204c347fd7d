//! A peer seeding a library sits idle between its jobs: a timeout pass runs only the torrents with a job due,
//! however many addresses the torrents know that cannot be dialled yet.

use super::*;
use crate::tracker::AnnounceReply;
use std::time::Duration;

/// Answer the node's outputs at `now` until it has none: announces with `reply`, every dial with a refusal
/// (the address is dead). Returns the dials made.
fn answer(node: &mut Node, now: Instant, reply: &AnnounceReply) -> usize {
    let mut dials = 0;
    loop {
        let inputs: Vec<Input> = std::iter::from_fn(|| node.poll_output())
            .filter_map(|o| match o {
                Output::Announce { torrent, .. } => Some(Input::TrackerReply {
                    torrent,
                    reply: Ok(reply.clone()),
                }),
                Output::Connect { conn, .. } => {
                    dials += 1;
                    Some(Input::ConnectFailed {
                        conn,
                        reason: ConnectError::Io {
                            kind: std::io::ErrorKind::ConnectionRefused,
                            message: "refused".into(),
                        },
                    })
                }
                _ => None,
            })
            .collect();
        if inputs.is_empty() {
            return dials;
        }
        for input in inputs {
            node.handle_input(now, input);
        }
    }
}

/// Restarted on a new port, a peer seeding many files learns its own old, dead address in every swarm from the
/// tracker. Each torrent must keep redialling it on its backoff, ever less often once it is taken for dead, and
/// announcing on its interval, and nothing more: counting every torrent with a known address as busy made every timeout pass run every torrent (the
/// idle library of bench/manyfiles spent 60% of a core on it).
#[test]
fn a_library_that_knows_only_dead_addresses_runs_each_torrent_only_for_its_jobs() {
    const TORRENTS: usize = 40;
    const MINUTES: u64 = 5;
    let mut node = Node::new(NodeConfig::default());
    for i in 0..TORRENTS {
        let mut data = content(PL as usize + 100);
        data[0] = i as u8;
        data[1] = (i >> 8) as u8;
        node.add_torrent(
            Instant::ZERO,
            AddTorrent {
                meta: meta_for(&data),
                resume: Resume::Complete,
                announce: true,
                sources: vec![],
            },
        );
    }
    let reply = AnnounceReply {
        interval: Some(30),
        peers: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
        ..AnnounceReply::default()
    };
    let end = Instant::ZERO + Duration::from_secs(60 * MINUTES);
    let mut now = Instant::ZERO;
    let mut dials = answer(&mut node, now, &reply);
    let (mut passes, mut runs) = (0usize, 0usize);
    while let Some(at) = node.poll_timeout() {
        if at > end {
            break;
        }
        assert!(passes < 100_000, "the node keeps waking at {at:?}");
        now = now.max(at);
        runs += node.deadlines.due(now).len();
        passes += 1;
        node.handle_timeout(now);
        node.check_kept_state();
        dials += answer(&mut node, now, &reply);
    }
    // Per torrent and minute: two announces (30 s interval), under two redials (below), and six lazy rechokes (a torrent without connections rechokes
    // at the first pass after its 10 s, which in a library some other torrent's job causes); each may need
    // its own pass. Running every torrent at every pass made it about 80.
    let per_torrent_minute = runs as f64 / (TORRENTS as f64 * MINUTES as f64);
    assert!(
        per_torrent_minute <= 12.0,
        "{runs} torrent runs in {passes} passes: {per_torrent_minute:.1} per torrent and minute"
    );
    // The dead address is still tried, ever less often: at 0, 1, 3, 7 and 15 s, then taken for dead, at 31,
    // 61, 121 and 241 s (the tracker telling it again at every announce does not start the backoff over).
    assert_eq!(dials, TORRENTS * 9, "dials");
}
