//! In-memory swarms: several nodes wired to each other with no IO at all. The harness's disk keeps written
//! bytes apart from synced bytes, so every checkpoint is checked against what is durable (invariant 2).

use super::*;
use crate::bitfield::Bitfield;
use crate::checkpoint::Checkpoint;
use crate::metainfo::{build, FileEntry, Metainfo, PieceHasher};
use crate::wire::{Frame, Handshake, Message};
use bytes::Bytes;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

const PL: u32 = 32 * 1024;

struct Disk {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    /// A full disk: writes reaching past this offset fail and write nothing.
    full_from: Option<usize>,
    /// Checkpoints cannot be saved (no room for even that).
    checkpoints_fail: bool,
    /// Pieces whose next read-back for hashing fails.
    read_errors: BTreeSet<u32>,
    /// Pieces whose next read for serving fails.
    serve_errors: BTreeSet<u32>,
    /// Writes (counted from 0, failed ones included) that fail with an I/O error (EIO).
    failing_writes: BTreeSet<u64>,
    /// Writes asked for so far.
    writes: u64,
}

struct Peer {
    node: Node,
    addr: SocketAddr,
    meta: Arc<Metainfo>,
    disk: Disk,
    /// Pieces this peer corrupts when serving.
    corrupt: BTreeSet<u32>,
    /// A hostile source: after each of its sends it also sends a block nobody asked for (see [`Flood`]).
    flood: Option<Flood>,
    checkpoints: Vec<Checkpoint>,
    events: Vec<NodeEvent>,
    alive: bool,
}

/// What a hostile source sends unasked, after every message of its own on a connection past the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flood {
    /// Real blocks of the file, never requested.
    Unrequested,
    /// A block that reaches past the end of its piece.
    PastPieceEnd,
}

struct World {
    peers: Vec<Peer>,
    now: Instant,
    /// (peer index, conn) -> (peer index, conn)
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    queue: VecDeque<(usize, Input)>,
    source: Vec<u8>,
    /// Links of hostile sources that already carried their handshake.
    flooded_links: BTreeSet<(usize, ConnId)>,
    /// Sends made by hostile sources so far (picks the next unasked block).
    flood_sends: u64,
    /// Writes handed to the network by every peer ([`Output::Send`]).
    sends: u64,
    /// The configuration of peers added from now on (each with its own id, port and seed).
    base: NodeConfig,
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + i / 7) % 251) as u8).collect()
}

fn meta_for(data: &[u8]) -> Arc<Metainfo> {
    let mut h = PieceHasher::new(PL);
    h.feed(data);
    let files = vec![FileEntry {
        path: vec!["file.bin".into()],
        length: data.len() as u64,
    }];
    Arc::new(build("file.bin", PL, files, h.finish(), None).unwrap())
}

fn peer_id(i: usize) -> [u8; 20] {
    let mut id = *b"-EJ0100-test00000000";
    id[19] = b'a' + i as u8;
    id
}

impl World {
    fn new(len: usize) -> World {
        World {
            peers: Vec::new(),
            now: Instant::ZERO,
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            source: content(len),
            flooded_links: BTreeSet::new(),
            flood_sends: 0,
            sends: 0,
            base: NodeConfig::default(),
        }
    }

    fn add_peer(&mut self, resume: Resume, disk: Vec<u8>, sources: Vec<usize>) -> usize {
        let i = self.peers.len();
        let meta = meta_for(&self.source);
        let config = NodeConfig {
            peer_id: peer_id(i),
            listen_port: 7000 + i as u16,
            seed: i as u64,
            ..self.base.clone()
        };
        let addr = SocketAddr::from(([10, 0, 0, 1], 7000 + i as u16));
        let mut node = Node::new(config);
        let sources = sources
            .iter()
            .map(|s| SocketAddr::from(([10, 0, 0, 1], 7000 + *s as u16)))
            .collect();
        let disk = Disk {
            volatile: disk.clone(),
            durable: disk,
            full_from: None,
            checkpoints_fail: false,
            read_errors: BTreeSet::new(),
            serve_errors: BTreeSet::new(),
            failing_writes: BTreeSet::new(),
            writes: 0,
        };
        node.add_torrent(
            self.now,
            AddTorrent {
                meta: meta.clone(),
                resume,
                announce: false,
                sources,
            },
        );
        self.peers.push(Peer {
            node,
            addr,
            meta,
            disk,
            corrupt: BTreeSet::new(),
            flood: None,
            checkpoints: Vec::new(),
            events: Vec::new(),
            alive: true,
        });
        self.drain(i);
        i
    }

    fn seeder(&mut self) -> usize {
        let data = self.source.clone();
        self.add_peer(Resume::Complete, data, vec![])
    }

    fn leecher(&mut self, sources: Vec<usize>) -> usize {
        let n = self.source.len();
        self.add_peer(Resume::Fresh, vec![0; n], sources)
    }

    fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.peers.iter().position(|p| p.addr == addr && p.alive)
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.peers[i].node.poll_output() {
            self.carry_out(i, out);
        }
    }

    fn carry_out(&mut self, i: usize, out: Output) {
        match out {
            Output::Connect { conn, addr } => match self.find(addr) {
                Some(j) => {
                    let theirs = self.peers[j].node.allocate_conn_id();
                    self.links.insert((i, conn), (j, theirs));
                    self.links.insert((j, theirs), (i, conn));
                    // Inbound connections come from an ephemeral port, as on a real network.
                    let from =
                        SocketAddr::new(self.peers[i].addr.ip(), 40000 + (theirs % 20000) as u16);
                    self.queue.push_back((
                        j,
                        Input::Accepted {
                            conn: theirs,
                            addr: from,
                        },
                    ));
                    self.queue.push_back((i, Input::Connected { conn }));
                }
                None => self.queue.push_back((
                    i,
                    Input::ConnectFailed {
                        conn,
                        reason: ConnectError::Io {
                            kind: std::io::ErrorKind::ConnectionRefused,
                            message: "refused".into(),
                        },
                    },
                )),
            },
            Output::Send { conn, data } => {
                self.sends += 1;
                if let Some(&(j, theirs)) = self.links.get(&(i, conn)) {
                    self.queue
                        .push_back((j, Input::Received { conn: theirs, data }));
                    if let Some(kind) = self.peers[i].flood {
                        self.flood_sends += 1;
                        // The first send carries the handshake; frames may follow it from then on.
                        if self.flooded_links.insert((i, conn)) {
                            return;
                        }
                        let k = self.flood_sends;
                        let pieces = self.peers[i].meta.piece_count();
                        let piece = (k as u32) % pieces;
                        let begin = match kind {
                            Flood::Unrequested => 0,
                            Flood::PastPieceEnd => PL - 8 * 1024,
                        };
                        let start = (piece * PL + begin) as usize;
                        let end = (start + 16 * 1024).min(self.source.len());
                        let data = Bytes::copy_from_slice(&self.source[start..end]);
                        let frame = Message::Piece {
                            index: piece,
                            begin,
                            data,
                        }
                        .encoded();
                        self.queue.push_back((
                            j,
                            Input::Received {
                                conn: theirs,
                                data: frame,
                            },
                        ));
                    }
                }
            }
            Output::SendRange {
                conn,
                head,
                offset,
                len,
                ..
            } => {
                // What a driver does: the head, then the bytes of the range, straight from the disk.
                if let Some(&(j, theirs)) = self.links.get(&(i, conn)) {
                    let start = offset as usize;
                    let mut data = head.to_vec();
                    data.extend_from_slice(
                        &self.peers[i].disk.volatile[start..start + len as usize],
                    );
                    let data = Bytes::from(data);
                    self.queue
                        .push_back((j, Input::Received { conn: theirs, data }));
                }
            }
            Output::Close { conn } => {
                if let Some((j, theirs)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, theirs));
                    self.queue.push_back((j, Input::Closed { conn: theirs }));
                }
            }
            Output::Disk(op) => {
                let done = self.disk_op(i, op);
                if let Some(d) = done {
                    self.queue.push_back((i, Input::Disk(d)));
                }
            }
            Output::Announce { .. } | Output::DhtNode { .. } => {}
            Output::Event(e) => self.peers[i].events.push(e),
            // The world's peers all start with their metainfo.
            Output::Metadata { .. } => {}
        }
    }

    fn disk_op(&mut self, i: usize, op: DiskOp) -> Option<DiskDone> {
        let p = &mut self.peers[i];
        match op {
            DiskOp::Write {
                torrent,
                offset,
                data,
            } => {
                let at = offset as usize;
                if p.disk.full_from.is_some_and(|full| at + data.len() > full) {
                    return Some(DiskDone::WriteFailed {
                        torrent,
                        error: std::io::Error::from_raw_os_error(28).into(),
                    });
                }
                p.disk.writes += 1;
                if p.disk.failing_writes.remove(&(p.disk.writes - 1)) {
                    return Some(DiskDone::WriteFailed {
                        torrent,
                        error: std::io::Error::from_raw_os_error(5).into(),
                    });
                }
                p.disk.volatile[at..at + data.len()].copy_from_slice(&data);
                None
            }
            DiskOp::Hash { torrent, piece } if p.disk.read_errors.remove(&piece) => {
                Some(DiskDone::Hashed {
                    torrent,
                    piece,
                    hash: Err(std::io::Error::from_raw_os_error(5).into()),
                })
            }
            DiskOp::Hash { torrent, piece } => {
                let start = piece as usize * PL as usize;
                let end = start + p.meta.piece_len(piece) as usize;
                let hash: [u8; 20] = Sha1::digest(&p.disk.volatile[start..end]).into();
                Some(DiskDone::Hashed {
                    torrent,
                    piece,
                    hash: Ok(hash),
                })
            }
            DiskOp::Read {
                torrent,
                conn,
                block,
            } if p.disk.serve_errors.remove(&block.piece) => Some(DiskDone::Read {
                torrent,
                conn,
                block,
                data: Err(std::io::Error::from_raw_os_error(5).into()),
            }),
            DiskOp::Read {
                torrent,
                conn,
                block,
            } => {
                let start = block.piece as usize * PL as usize + block.begin as usize;
                let mut data = p.disk.volatile[start..start + block.length as usize].to_vec();
                if p.corrupt.contains(&block.piece) {
                    data[0] ^= 0xff;
                }
                Some(DiskDone::Read {
                    torrent,
                    conn,
                    block,
                    data: Ok(Bytes::from(data)),
                })
            }
            DiskOp::SyncAndCheckpoint {
                torrent,
                generation,
                checkpoint,
            } if p.disk.checkpoints_fail => Some(DiskDone::CheckpointSaved {
                torrent,
                generation,
                error: Some(DiskError::new(
                    std::io::ErrorKind::StorageFull,
                    format!(
                        "checkpoint write failed: No space left on device ({} pieces)",
                        checkpoint.validate(&p.meta).map_or(0, |b| b.count())
                    ),
                )),
            }),
            DiskOp::SyncAndCheckpoint {
                torrent,
                generation,
                checkpoint,
            } => {
                p.disk.durable = p.disk.volatile.clone();
                let claimed = checkpoint.validate(&p.meta).unwrap();
                for piece in claimed.iter_ones() {
                    let start = piece as usize * PL as usize;
                    let end = start + p.meta.piece_len(piece) as usize;
                    let hash: [u8; 20] = Sha1::digest(&p.disk.durable[start..end]).into();
                    assert_eq!(
                        Some(hash),
                        p.meta.piece_hash(piece),
                        "checkpoint claims non-durable piece {piece}"
                    );
                }
                p.checkpoints.push(checkpoint);
                Some(DiskDone::CheckpointSaved {
                    torrent,
                    generation,
                    error: None,
                })
            }
        }
    }

    /// Deliver queued inputs and fire timers until `done` holds or `max_secs` of simulated time pass.
    fn run_until(&mut self, max_secs: u64, done: impl Fn(&World) -> bool) -> bool {
        let deadline = self.now + std::time::Duration::from_secs(max_secs);
        loop {
            while let Some((i, input)) = self.queue.pop_front() {
                if !self.peers[i].alive {
                    continue;
                }
                let now = self.now;
                self.peers[i].node.handle_input(now, input);
                self.peers[i].node.check_kept_state();
                self.drain(i);
                if done(self) {
                    return true;
                }
            }
            let next = self
                .peers
                .iter()
                .filter(|p| p.alive)
                .filter_map(|p| {
                    // The kept deadlines must say what working them out afresh says.
                    assert_eq!(p.node.poll_timeout(), p.node.poll_timeout_uncached());
                    p.node.poll_timeout()
                })
                .min();
            let Some(next) = next else { return done(self) };
            self.now = self
                .now
                .max(next)
                .max(self.now + std::time::Duration::from_millis(1));
            if self.now > deadline {
                return done(self);
            }
            for i in 0..self.peers.len() {
                if self.peers[i].alive {
                    let now = self.now;
                    self.peers[i].node.handle_timeout(now);
                    self.peers[i].node.check_kept_state();
                    self.drain(i);
                }
            }
        }
    }

    fn complete(&self, i: usize) -> bool {
        self.stats(i).complete
    }

    fn stats(&self, i: usize) -> TorrentStats {
        let p = &self.peers[i];
        p.node.stats(&p.meta.info_hash).unwrap()
    }

    fn kill(&mut self, i: usize) {
        self.peers[i].alive = false;
        let mine: Vec<(usize, ConnId)> = self
            .links
            .keys()
            .filter(|(p, _)| *p == i)
            .copied()
            .collect();
        for k in mine {
            if let Some((j, theirs)) = self.links.remove(&k) {
                self.links.remove(&(j, theirs));
                self.queue.push_back((j, Input::Closed { conn: theirs }));
            }
        }
    }
}

#[test]
fn leecher_downloads_whole_file_from_seeder() {
    let mut w = World::new(10 * PL as usize + 1234);
    let a = w.seeder();
    let b = w.leecher(vec![a]);
    assert!(w.run_until(60, |w| w.stats(b).pieces_durable == 11));
    assert_eq!(w.peers[b].disk.volatile, w.source);
    let s = w.stats(b);
    assert_eq!(s.pieces_downloaded, 11);
    assert_eq!(s.bytes_wasted, 0);
    assert_eq!(s.sources.values().sum::<u64>(), w.source.len() as u64);
    assert!(w.peers[b]
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::Complete { .. })));
    // The final checkpoint claims everything.
    let last = w.peers[b].checkpoints.last().unwrap();
    assert!(last.complete);
}

#[test]
fn third_peer_gets_pieces_from_seeder_and_leecher() {
    let mut w = World::new(40 * PL as usize);
    let a = w.seeder();
    let b = w.leecher(vec![a]);
    w.run_until(60, |w| w.stats(b).pieces_have >= 10);
    let c = w.leecher(vec![a, b]);
    assert!(w.run_until(120, |w| w.complete(b) && w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
    let s = w.stats(c);
    assert!(
        s.sources.len() == 2,
        "C received from both A and B: {:?}",
        s.sources
    );
    assert!(w.stats(b).bytes_uploaded > 0, "B re-shared verified pieces");
}

/// A seeder and three leechers that all know each other (each dials those before it), with HAVEs to peers
/// that hold the piece sent or not, run until the three complete with the seeder's bytes.
fn four_complete(send_redundant_have: bool, trace: bool) -> (World, [usize; 4]) {
    let mut w = World::new(40 * PL as usize);
    w.base.send_redundant_have = send_redundant_have;
    w.base.trace = trace;
    let a = w.seeder();
    let b = w.leecher(vec![a]);
    let c = w.leecher(vec![a, b]);
    let d = w.leecher(vec![a, b, c]);
    assert!(w.run_until(300, |w| [b, c, d].iter().all(|i| w.complete(*i))));
    for i in [b, c, d] {
        assert_eq!(w.peers[i].disk.volatile, w.source);
    }
    (w, [a, b, c, d])
}

/// [`four_complete`]: how many HAVEs went out in all, and whether every connection between two complete
/// peers closed.
fn swarm_of_four(send_redundant_have: bool) -> (usize, bool) {
    let (mut w, [a, b, c, d]) = four_complete(send_redundant_have, true);
    // Closing takes a round trip once the last one completes.
    w.run_until(1, |_| false);
    let haves = w
        .peers
        .iter()
        .flat_map(|p| &p.events)
        .filter(|e| {
            matches!(
                e,
                NodeEvent::Wire {
                    dir: "out",
                    message: "have",
                    ..
                }
            )
        })
        .count();
    let seeds_apart = [a, b, c, d]
        .iter()
        .all(|i| w.stats(*i).connections.is_empty());
    (haves, seeds_apart)
}

#[test]
fn haves_held_back_from_peers_holding_the_piece_are_fewer_and_seeds_still_part() {
    let (all, apart) = swarm_of_four(true);
    assert!(apart, "complete peers close their connections");
    let (held, apart) = swarm_of_four(false);
    assert!(
        apart,
        "held HAVEs go out at completion, so complete peers still see each other complete"
    );
    assert!(held < all, "{held} HAVEs sent against {all}");
}

/// B downloads from seeder A while C knows only B: C learns what B holds from B's HAVEs alone, which B has no
/// other message to send with until C asks for blocks. With a HAVE delay they wait for the timer or a block,
/// leave several to a write, and C still completes in time: the writes of the whole story are fewer.
fn chain_of_three(have_delay: std::time::Duration) -> (u64, usize) {
    let mut w = World::new(40 * PL as usize);
    w.base.have_delay = have_delay;
    w.base.trace = true;
    let a = w.seeder();
    let b = w.leecher(vec![a]);
    let c = w.leecher(vec![b]);
    // Well before a keep-alive (20 s) could carry a waiting HAVE.
    assert!(w.run_until(5, |w| [b, c].iter().all(|i| w.complete(*i))));
    for i in [b, c] {
        assert_eq!(w.peers[i].disk.volatile, w.source);
    }
    let haves_heard = w.peers[c]
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                NodeEvent::Wire {
                    dir: "in",
                    message: "have",
                    ..
                }
            )
        })
        .count();
    (w.sends, haves_heard)
}

#[test]
fn haves_wait_for_company_but_not_for_ever() {
    let (alone, heard_alone) = chain_of_three(std::time::Duration::ZERO);
    let (together, heard_together) = chain_of_three(std::time::Duration::from_millis(50));
    assert!(
        heard_alone > 0 && heard_together > 0,
        "C learnt B's pieces from HAVEs"
    );
    assert!(
        together < alone,
        "{together} writes with a 50 ms HAVE delay against {alone} without"
    );
    // A delay longer than the story: 28 waiting HAVEs leave at once, so C still completes in time.
    let (_, heard_capped) = chain_of_three(std::time::Duration::from_secs(10));
    assert!(heard_capped > 0);
}

/// A leecher downloads 40 pieces from a seeder with `interval` between checkpoints: how many it saved. Every
/// one is checked against what is durable by the world's disk (invariant 2), and the last claims everything.
fn checkpoints_of_a_download(interval: std::time::Duration) -> usize {
    let mut w = World::new(40 * PL as usize);
    w.base.checkpoint_interval = interval;
    let a = w.seeder();
    let b = w.leecher(vec![a]);
    assert!(w.run_until(60, |w| w.stats(b).pieces_durable == 40));
    assert_eq!(w.peers[b].disk.volatile, w.source);
    let last = w.peers[b].checkpoints.last().unwrap();
    assert!(last.complete);
    w.peers[b].checkpoints.len()
}

#[test]
fn checkpoints_wait_out_their_interval_and_the_last_claims_everything() {
    let each = checkpoints_of_a_download(std::time::Duration::ZERO);
    let spaced = checkpoints_of_a_download(std::time::Duration::from_secs(1));
    assert!(
        spaced < each,
        "{spaced} checkpoints 1 s apart against {each} at once"
    );
}

/// A seeder told of two leechers that do not know it: whether they complete, and how many connections it
/// dialled.
fn seeder_told_of_leechers(dial_when_complete: bool) -> (bool, usize) {
    let mut w = World::new(20 * PL as usize);
    w.base.dial_when_complete = dial_when_complete;
    let b = w.leecher(vec![]);
    let c = w.leecher(vec![]);
    let data = w.source.clone();
    let a = w.add_peer(Resume::Complete, data, vec![b, c]);
    let done = w.run_until(60, |w| w.complete(b) && w.complete(c));
    let dialled = w.peers[a]
        .events
        .iter()
        .filter(|e| matches!(e, NodeEvent::Connected { outbound: true, .. }))
        .count();
    (done, dialled)
}

#[test]
fn a_complete_torrent_dials_only_when_told_to() {
    assert_eq!(seeder_told_of_leechers(true), (true, 2));
    let (done, dialled) = seeder_told_of_leechers(false);
    assert!(!done, "nobody dialled, so nobody downloaded");
    assert_eq!(
        dialled, 0,
        "a complete torrent that does not dial opens no connection"
    );
}

/// Two leechers that met through one's dial-in close "both complete" once both are done; neither dials the
/// other again afterwards, whichever end closed (the dialled end knew its peer only by an ephemeral port and
/// its listen address from the handshake).
#[test]
fn complete_peers_that_met_do_not_dial_each_other_again() {
    complete_peers_that_met(true);
}

/// The same with HAVEs held back from peers that hold the piece: the end closed on learns that its peer
/// completed from the BEP 21 `upload_only` sent before the close, not from HAVEs.
#[test]
fn complete_peers_that_met_do_not_dial_each_other_again_without_redundant_haves() {
    complete_peers_that_met(false);
}

fn complete_peers_that_met(send_redundant_have: bool) {
    let mut w = World::new(20 * PL as usize);
    w.base.send_redundant_have = send_redundant_have;
    let a = w.seeder();
    let b = w.leecher(vec![a]);
    let c = w.leecher(vec![a, b]);
    // Long enough for the redial backoff (1, 2, 4 s...) to have dialled the other many times.
    w.run_until(60, |_| false);
    assert!(w.complete(b) && w.complete(c));
    let dials = |from: usize, to: usize| {
        let to = w.peers[to].addr;
        w.peers[from]
            .events
            .iter()
            .filter(
                |e| matches!(e, NodeEvent::Connected { addr, outbound: true, .. } if *addr == to),
            )
            .count()
    };
    assert_eq!(dials(c, b), 1, "c dials b once, while both download");
    assert_eq!(dials(b, c), 0, "b met c by its dial-in and never dials it");
    assert_eq!(dials(b, a) + dials(c, a), 2, "each dials the seeder once");
}

#[test]
fn corrupt_source_is_banned_and_download_completes() {
    let mut w = World::new(60 * PL as usize);
    let honest = w.seeder();
    let bad = w.seeder();
    w.peers[bad].corrupt = (0..60).collect();
    let c = w.leecher(vec![honest, bad]);
    assert!(w.run_until(120, |w| w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
    let s = w.stats(c);
    assert_eq!(s.banned, vec![w.peers[bad].addr]);
    assert!(s.hash_failures >= 1);
    assert!(s.bytes_wasted >= u64::from(PL));
    assert!(w.peers[c]
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::Banned { .. })));
}

/// A hostile source that serves what it is asked but also sends what nobody asked for (`kind`): each
/// connection to it ends on a strike, the second strike bans it, and it is never dialled again.
fn hostile_source_is_struck_then_banned(kind: Flood) -> World {
    let mut w = World::new(200 * PL as usize);
    let bad = w.seeder();
    w.peers[bad].flood = Some(kind);
    let c = w.leecher(vec![bad]);
    // Long enough for the redial backoff (1, 2, 4 s...) to have dialled it many times were it not banned.
    w.run_until(60, |_| false);
    let bad_addr = w.peers[bad].addr;
    assert_eq!(
        w.stats(c).banned,
        vec![bad_addr],
        "the hostile source was not banned"
    );
    let events = &w.peers[c].events;
    let ban = events
        .iter()
        .position(|e| matches!(e, NodeEvent::Banned { addr, strikes: 2, .. } if *addr == bad_addr))
        .expect("a ban after two strikes");
    let dialled_after = events[ban..]
        .iter()
        .filter(
            |e| matches!(e, NodeEvent::Connected { addr, outbound: true, .. } if *addr == bad_addr),
        )
        .count();
    assert_eq!(dialled_after, 0, "a banned source was dialled again");
    w
}

#[test]
fn source_flooding_unrequested_blocks_is_banned_and_costs_little() {
    let w = hostile_source_is_struck_then_banned(Flood::Unrequested);
    let wasted = w.stats(1).bytes_wasted;
    // A few connections (its dial-in before the ban is struck under its ephemeral port), each cut when the
    // slack is passed (plus the block that passed it).
    let limit = 3 * (conn::UNREQUESTED_SLACK_BYTES + 16 * 1024);
    assert!(wasted > 0, "the flood was not counted as waste");
    assert!(
        wasted <= limit,
        "{wasted} bytes wasted on a flood (at most {limit})"
    );
}

#[test]
fn source_sending_past_a_piece_end_is_banned() {
    hostile_source_is_struck_then_banned(Flood::PastPieceEnd);
}

#[test]
fn flooding_source_beside_an_honest_one_wastes_little_and_the_file_completes() {
    let mut w = World::new(200 * PL as usize);
    let honest = w.seeder();
    let bad = w.seeder();
    w.peers[bad].flood = Some(Flood::Unrequested);
    let c = w.leecher(vec![honest, bad]);
    assert!(w.run_until(300, |w| w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
    let s = w.stats(c);
    let limit = 3 * (conn::UNREQUESTED_SLACK_BYTES + 16 * 1024);
    assert!(s.bytes_wasted <= limit, "{} bytes wasted", s.bytes_wasted);
    assert!(!s.banned.contains(&w.peers[honest].addr));
}

#[test]
fn honest_swarm_sends_nothing_unasked_and_bans_nobody() {
    let mut w = World::new(90 * PL as usize);
    let a = w.seeder();
    let b = w.seeder();
    let c = w.leecher(vec![a, b]);
    let d = w.leecher(vec![a, b, c]);
    assert!(w.run_until(300, |w| w.complete(c) && w.complete(d)));
    for i in [c, d] {
        let s = w.stats(i);
        assert!(
            s.banned.is_empty(),
            "an honest peer was banned: {:?}",
            s.banned
        );
        assert_eq!(w.peers[i].disk.volatile, w.source);
    }
}

#[test]
fn dead_source_fails_over_to_the_others() {
    let mut w = World::new(30 * PL as usize);
    let a = w.seeder();
    let b = w.seeder();
    let c = w.leecher(vec![a, b]);
    w.run_until(60, |w| w.stats(c).pieces_have >= 8);
    w.kill(a);
    assert!(w.run_until(120, |w| w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
}

#[test]
fn resume_trusts_a_good_checkpoint_and_fetches_only_the_rest() {
    let mut w = World::new(20 * PL as usize);
    let a = w.seeder();
    let mut disk = vec![0u8; w.source.len()];
    let held = 7 * PL as usize;
    disk[..held].copy_from_slice(&w.source[..held]);
    let claimed = Bitfield::from_ranges("0-6", 20).unwrap();
    let b = w.add_peer(
        Resume::Checkpoint {
            claimed,
            sizes_ok: true,
            hints: vec![],
        },
        disk,
        vec![a],
    );
    assert!(w.run_until(60, |w| w.complete(b)));
    assert_eq!(w.peers[b].disk.volatile, w.source);
    let s = w.stats(b);
    assert_eq!(s.pieces_resumed, 7);
    assert_eq!(
        s.bytes_downloaded,
        (w.source.len() - held) as u64,
        "no verified piece fetched twice"
    );
    assert!(w.peers[b].events.iter().any(|e| matches!(
        e,
        NodeEvent::Ready {
            pieces_resumed: 7,
            first_missing: Some(7),
            ..
        }
    )));
}

#[test]
fn resume_distrusts_a_lying_checkpoint() {
    let mut w = World::new(12 * PL as usize);
    let a = w.seeder();
    let mut disk = vec![0u8; w.source.len()];
    // Only pieces 0..3 are really there; the checkpoint claims 0..9.
    disk[..3 * PL as usize].copy_from_slice(&w.source[..3 * PL as usize]);
    let claimed = Bitfield::from_ranges("0-9", 12).unwrap();
    let b = w.add_peer(
        Resume::Checkpoint {
            claimed,
            sizes_ok: true,
            hints: vec![],
        },
        disk,
        vec![a],
    );
    assert!(w.run_until(60, |w| w.complete(b)));
    assert_eq!(w.peers[b].disk.volatile, w.source);
    assert!(w.peers[b]
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::CheckpointDistrusted { .. })));
    assert_eq!(w.stats(b).pieces_resumed, 3);
}

#[test]
fn garbage_on_the_wire_closes_only_that_connection() {
    let mut w = World::new(4 * PL as usize);
    let a = w.seeder();
    let conn = w.peers[a].node.allocate_conn_id();
    let from = SocketAddr::from(([10, 0, 0, 9], 1));
    w.peers[a]
        .node
        .handle_input(Instant::ZERO, Input::Accepted { conn, addr: from });
    w.peers[a].node.handle_input(
        Instant::ZERO,
        Input::Received {
            conn,
            data: Bytes::from_static(b"\x13NotTorrent protocol"),
        },
    );
    let mut closed = false;
    while let Some(o) = w.peers[a].node.poll_output() {
        closed |= matches!(o, Output::Close { conn: c } if c == conn);
    }
    assert!(closed);
    let b = w.leecher(vec![a]);
    assert!(
        w.run_until(60, |w| w.complete(b)),
        "the seeder still serves others"
    );
}

#[test]
fn oversized_and_out_of_range_requests_are_refused() {
    let mut w = World::new(4 * PL as usize);
    let a = w.seeder();
    let meta = w.peers[a].meta.clone();
    let conn = w.peers[a].node.allocate_conn_id();
    let node = &mut w.peers[a].node;
    node.handle_input(
        Instant::ZERO,
        Input::Accepted {
            conn,
            addr: SocketAddr::from(([10, 0, 0, 9], 1)),
        },
    );
    let hs = Handshake {
        reserved: crate::wire::reserved_bits(true, false),
        info_hash: meta.info_hash.0,
        peer_id: [9; 20],
    };
    node.handle_input(
        Instant::ZERO,
        Input::Received {
            conn,
            data: Bytes::copy_from_slice(&hs.encode()),
        },
    );
    let mut msgs = bytes::BytesMut::new();
    Message::Interested.encode(&mut msgs);
    Message::Request {
        index: 0,
        begin: 0,
        length: 256 * 1024,
    }
    .encode(&mut msgs);
    Message::Request {
        index: 99,
        begin: 0,
        length: 16384,
    }
    .encode(&mut msgs);
    Message::Request {
        index: 3,
        begin: PL - 10,
        length: 16384,
    }
    .encode(&mut msgs);
    node.handle_input(
        Instant::ZERO,
        Input::Received {
            conn,
            data: msgs.freeze(),
        },
    );
    let mut refused = 0;
    let mut reads = 0;
    while let Some(o) = node.poll_output() {
        match o {
            Output::Event(NodeEvent::RequestRefused { .. }) => refused += 1,
            Output::Disk(DiskOp::Read { .. }) => reads += 1,
            _ => {}
        }
    }
    assert_eq!((refused, reads), (3, 0));
}

#[test]
fn same_seed_same_story() {
    fn story() -> Vec<String> {
        let mut w = World::new(16 * PL as usize);
        let a = w.seeder();
        let b = w.leecher(vec![a]);
        let c = w.leecher(vec![a, b]);
        w.run_until(60, |w| w.complete(b) && w.complete(c));
        w.peers
            .iter()
            .flat_map(|p| p.events.iter().map(|e| format!("{e:?}")))
            .collect()
    }
    assert_eq!(story(), story());
}

#[test]
fn extension_handshake_is_exchanged_and_reqq_caps_our_pipeline() {
    let mut w = World::new(8 * PL as usize);
    let l = w.leecher(vec![]);
    let meta = w.peers[l].meta.clone();
    let node = &mut w.peers[l].node;
    let mut peer = HandPeer::open_with(node, &meta, crate::wire::reserved_bits(true, true));
    let ext = crate::extension::ExtHandshake {
        listen_port: Some(7777),
        reqq: Some(2),
        ..Default::default()
    };
    let (out, _) = peer.say(
        node,
        &[
            Message::Extended {
                id: 0,
                payload: Bytes::from(ext.encode()),
            },
            Message::HaveAll,
            Message::Unchoke,
        ],
    );
    let our_port = out.iter().find_map(|m| match m {
        Message::Extended { id: 0, payload } => {
            crate::extension::ExtHandshake::parse(payload)
                .unwrap()
                .listen_port
        }
        _ => None,
    });
    assert_eq!(
        requests(&out).len(),
        2,
        "the peer's reqq of 2 caps our pipeline"
    );
    assert_eq!(
        our_port,
        Some(7000 + l as u16),
        "we tell peers where we listen"
    );
}

#[test]
fn late_bitfield_replaces_what_we_knew_like_aria2_sends_it() {
    let mut w = World::new(4 * PL as usize);
    let l = w.leecher(vec![]);
    let meta = w.peers[l].meta.clone();
    let node = &mut w.peers[l].node;
    let mut peer = HandPeer::open_with(node, &meta, crate::wire::reserved_bits(true, true));
    // aria2's order: have-none, allowed-fast, and later a bitfield once it has pieces. `say` fails on a close:
    // a late bitfield is not a protocol error.
    let (out, _) = peer.say(
        node,
        &[
            Message::HaveNone,
            Message::AllowedFast { index: 1 },
            Message::Unchoke,
            Message::Bitfield(Bytes::from_static(&[0b1010_0000])),
        ],
    );
    let asked: BTreeSet<u32> = requests(&out).iter().map(|r| r.0).collect();
    assert!(
        !asked.is_empty() && asked.iter().all(|p| *p == 0 || *p == 2),
        "requests only what the bitfield offers: {asked:?}"
    );
    // A bitfield of the wrong size is still refused.
    peer.say_raw(node, &[Message::Bitfield(Bytes::from_static(&[0, 0]))]);
    assert!(peer.closed);
}

#[test]
fn corrupt_peer_dialling_in_is_banned_under_its_listen_address() {
    let mut w = World::new(40 * PL as usize);
    let honest = w.seeder();
    let c = w.leecher(vec![honest]);
    let data = w.source.clone();
    let bad = w.add_peer(Resume::Complete, data, vec![c]);
    w.peers[bad].corrupt = (0..40).collect();
    assert!(w.run_until(120, |w| w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
    let s = w.stats(c);
    assert!(
        s.hash_failures >= 2,
        "the corrupt peer did deliver bad pieces"
    );
    assert_eq!(
        s.banned,
        vec![w.peers[bad].addr],
        "banned by listen address, not an ephemeral port"
    );
    assert!(
        s.sources.keys().all(|a| a.port() < 40000),
        "sources are listen addresses: {:?}",
        s.sources
    );
}

/// A peer driven by hand on `node`'s connection `conn`.
struct HandPeer {
    conn: ConnId,
    dec: crate::wire::Decoder,
    /// The node closed this connection.
    closed: bool,
}

impl HandPeer {
    /// Dial in to `node` with a handshake advertising the fast extension or not.
    fn open(node: &mut Node, meta: &Metainfo, fast: bool) -> HandPeer {
        HandPeer::open_with(node, meta, crate::wire::reserved_bits(fast, false))
    }

    /// Dial in to `node` with a handshake carrying `reserved`.
    fn open_with(node: &mut Node, meta: &Metainfo, reserved: [u8; 8]) -> HandPeer {
        HandPeer::open_as(node, meta, reserved, 9)
    }

    /// Dial in to `node` as hand peer number `n` (each number its own address and peer id).
    fn open_as(node: &mut Node, meta: &Metainfo, reserved: [u8; 8], n: u8) -> HandPeer {
        let conn = node.allocate_conn_id();
        node.handle_input(
            Instant::ZERO,
            Input::Accepted {
                conn,
                addr: SocketAddr::from(([10, 0, 0, n], 40000)),
            },
        );
        let hs = Handshake {
            reserved,
            info_hash: meta.info_hash.0,
            peer_id: [n; 20],
        };
        let mut peer = HandPeer {
            conn,
            dec: crate::wire::Decoder::new(true, crate::wire::DEFAULT_MAX_MESSAGE_LEN),
            closed: false,
        };
        peer.feed(node, Bytes::copy_from_slice(&hs.encode()));
        peer
    }

    fn feed(&mut self, node: &mut Node, data: Bytes) {
        node.handle_input(
            Instant::ZERO,
            Input::Received {
                conn: self.conn,
                data,
            },
        );
    }

    /// Send `msgs`; return what the node sent back (messages only) and the blocks it asked the disk for.
    /// Panics if the node closes the connection.
    fn say(&mut self, node: &mut Node, msgs: &[Message]) -> (Vec<Message>, Vec<BlockRef>) {
        let out = self.say_raw(node, msgs);
        assert!(!self.closed, "node closed the hand peer");
        out
    }

    /// Like [`HandPeer::say`], but a close is only recorded in `closed`.
    fn say_raw(&mut self, node: &mut Node, msgs: &[Message]) -> (Vec<Message>, Vec<BlockRef>) {
        let mut buf = bytes::BytesMut::new();
        for m in msgs {
            m.encode(&mut buf);
        }
        self.feed(node, buf.freeze());
        self.drain(node)
    }

    fn drain(&mut self, node: &mut Node) -> (Vec<Message>, Vec<BlockRef>) {
        node.check_kept_state();
        let mut reads = Vec::new();
        while let Some(o) = node.poll_output() {
            match o {
                Output::Send { conn, data } if conn == self.conn => self.dec.feed(&data),
                Output::Close { conn } if conn == self.conn => self.closed = true,
                Output::Disk(DiskOp::Read { block, .. }) => reads.push(block),
                _ => {}
            }
        }
        let mut out = Vec::new();
        while let Ok(Some(f)) = self.dec.next_frame() {
            if let Frame::Message(m) = f {
                out.push(m);
            }
        }
        (out, reads)
    }
}

fn requests(msgs: &[Message]) -> BTreeSet<(u32, u32, u32)> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Request {
                index,
                begin,
                length,
            } => Some((*index, *begin, *length)),
            _ => None,
        })
        .collect()
}

fn rejects(msgs: &[Message]) -> BTreeSet<(u32, u32, u32)> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Reject {
                index,
                begin,
                length,
            } => Some((*index, *begin, *length)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fast_peers_choke_keeps_our_requests_pending_until_answered() {
    // libtorrent chokes a peer that is not interested yet and unchokes it once it is; our first requests
    // cross that choke on the wire. Under BEP 6 they are still pending: asking again fetched them twice.
    let mut w = World::new(4 * PL as usize);
    let l = w.leecher(vec![]);
    let meta = w.peers[l].meta.clone();
    let node = &mut w.peers[l].node;
    let mut p = HandPeer::open(node, &meta, true);
    let (sent, _) = p.say(node, &[Message::HaveAll, Message::Unchoke]);
    let first = requests(&sent);
    assert_eq!(
        first.len(),
        requests::MIN_REQUEST_DEPTH,
        "a new source's first queue"
    );
    let (sent, _) = p.say(node, &[Message::Choke, Message::Unchoke]);
    assert_eq!(
        requests(&sent),
        BTreeSet::new(),
        "the requests are still pending: asking again fetches them twice"
    );
    // A reject is the answer that frees a block: it is asked for again (once) when possible.
    let (i, b, len) = *first.iter().next().unwrap();
    let reject = Message::Reject {
        index: i,
        begin: b,
        length: len,
    };
    let (sent, _) = p.say(node, &[Message::Choke, reject, Message::Unchoke]);
    assert_eq!(requests(&sent), [(i, b, len)].into());
}

#[test]
fn a_plain_peers_choke_drops_our_requests() {
    // BEP 3 without the fast extension: a choke discards the pending requests; they are asked again.
    let mut w = World::new(4 * PL as usize);
    let l = w.leecher(vec![]);
    let meta = w.peers[l].meta.clone();
    let node = &mut w.peers[l].node;
    let mut p = HandPeer::open(node, &meta, false);
    let (sent, _) = p.say(
        node,
        &[
            Message::Bitfield(Bytes::from_static(&[0b1111_0000])),
            Message::Unchoke,
        ],
    );
    let first = requests(&sent);
    assert_eq!(first.len(), requests::MIN_REQUEST_DEPTH);
    let (sent, _) = p.say(node, &[Message::Choke, Message::Unchoke]);
    assert_eq!(requests(&sent), first);
}

/// A seeder of four pieces and a hand-driven fast-extension peer it has not unchoked, its handshake answered
/// and drained.
fn choked_fast_peer() -> (World, usize, HandPeer) {
    let mut w = World::new(4 * PL as usize);
    let s = w.seeder();
    let meta = w.peers[s].meta.clone();
    let node = &mut w.peers[s].node;
    let mut p = HandPeer::open(node, &meta, true);
    p.drain(node);
    (w, s, p)
}

/// The same peer, unchoked after its INTERESTED.
fn seeder_with_an_unchoked_fast_peer() -> (World, usize, HandPeer) {
    let (mut w, s, mut p) = choked_fast_peer();
    let (sent, _) = p.say(&mut w.peers[s].node, &[Message::Interested]);
    assert!(sent.contains(&Message::Unchoke), "{sent:?}");
    (w, s, p)
}

/// A seed points an unchoked fast peer at the pieces it handed out least (BEP 6 SUGGEST_PIECE), two
/// ahead; with `suggest_pieces` off it suggests nothing and only answers requests.
#[test]
fn a_seed_suggests_pieces_unless_told_not_to() {
    let suggested = |suggest_pieces: bool| {
        let mut w = World::new(4 * PL as usize);
        w.base.suggest_pieces = suggest_pieces;
        let s = w.seeder();
        let meta = w.peers[s].meta.clone();
        let node = &mut w.peers[s].node;
        let mut p = HandPeer::open(node, &meta, true);
        p.drain(node);
        let (sent, _) = p.say(node, &[Message::Interested]);
        assert!(sent.contains(&Message::Unchoke), "{sent:?}");
        sent.iter()
            .filter_map(|m| match m {
                Message::SuggestPiece { index } => Some(*index),
                _ => None,
            })
            .collect::<Vec<u32>>()
    };
    let on = suggested(true);
    assert_eq!(on.len(), crate::spread::SUGGEST_AHEAD, "{on:?}");
    assert_ne!(on[0], on[1], "two different pieces");
    assert!(suggested(false).is_empty());
}

#[test]
fn choking_or_cancelling_answers_a_fast_peers_requests_with_rejects() {
    // BEP 6: every request gets exactly one answer, its piece or a reject, even across a choke or cancel.
    let (mut w, s, mut p) = seeder_with_an_unchoked_fast_peer();
    let hash = w.peers[s].meta.info_hash;
    let node = &mut w.peers[s].node;
    let asked: Vec<Message> = (0..3)
        .map(|i| Message::Request {
            index: i,
            begin: 0,
            length: 16384,
        })
        .collect();
    let (_, reads) = p.say(node, &asked);
    assert_eq!(reads.len(), 3, "the requests go to the disk");
    // What the periodic rechoke does when it takes the peer's slot away.
    node.set_choking(p.conn, true);
    node.flush(Instant::ZERO);
    let (sent, _) = p.drain(node);
    assert_eq!(sent.first(), Some(&Message::Choke), "{sent:?}");
    assert_eq!(
        rejects(&sent),
        requests(&asked),
        "each pending request is rejected"
    );
    // The reads in flight come back: nothing more is sent for them.
    for block in reads {
        node.handle_input(
            Instant::ZERO,
            Input::Disk(DiskDone::Read {
                torrent: hash,
                conn: p.conn,
                block,
                data: Ok(Bytes::from(vec![0u8; block.length as usize])),
            }),
        );
    }
    let (sent, _) = p.drain(node);
    assert!(sent.is_empty(), "no piece after the reject: {sent:?}");

    // A cancelled request is answered with a reject, and its read is dropped.
    node.set_choking(p.conn, false);
    node.flush(Instant::ZERO);
    let one = Message::Request {
        index: 1,
        begin: 16384,
        length: 16384,
    };
    let (_, reads) = p.say(node, std::slice::from_ref(&one));
    assert_eq!(reads.len(), 1);
    let (sent, _) = p.say(
        node,
        &[Message::Cancel {
            index: 1,
            begin: 16384,
            length: 16384,
        }],
    );
    assert_eq!(rejects(&sent), requests(&[one]));
    node.handle_input(
        Instant::ZERO,
        Input::Disk(DiskDone::Read {
            torrent: hash,
            conn: p.conn,
            block: reads[0],
            data: Ok(Bytes::from(vec![0u8; 16384])),
        }),
    );
    let (sent, _) = p.drain(node);
    assert!(sent.is_empty(), "no piece after the reject: {sent:?}");
}

/// The node's outputs after the disk answers that `block` can be sent from the files.
fn answer_sendable(node: &mut Node, hash: InfoHash, conn: ConnId, block: BlockRef) -> Vec<Output> {
    node.handle_input(
        Instant::ZERO,
        Input::Disk(DiskDone::Sendable {
            torrent: hash,
            conn,
            block,
        }),
    );
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// A block the driver can send from the files leaves as one output: what was queued for the connection, the
/// PIECE header, and the file range: the peer decodes the message whole once the range's bytes follow.
/// The upload is counted; a block whose request was cancelled, or whose peer is choked, sends nothing.
#[test]
fn a_sendable_block_leaves_as_a_header_then_its_file_range() {
    let (mut w, s, mut p) = seeder_with_an_unchoked_fast_peer();
    let hash = w.peers[s].meta.info_hash;
    let node = &mut w.peers[s].node;
    let asked = Message::Request {
        index: 2,
        begin: 16384,
        length: 16384,
    };
    let (_, reads) = p.say(node, std::slice::from_ref(&asked));
    assert_eq!(reads.len(), 1, "the request goes to the disk");
    let before = node.stats(&hash).map(|st| st.bytes_uploaded);
    let outs = answer_sendable(node, hash, p.conn, reads[0]);
    let sends: Vec<&Output> = outs
        .iter()
        .filter(|o| matches!(o, Output::Send { .. } | Output::SendRange { .. }))
        .collect();
    let [Output::SendRange {
        conn,
        head: data,
        torrent,
        offset,
        len,
    }] = sends[..]
    else {
        panic!("expected a header and a range: {outs:?}");
    };
    assert_eq!((*conn, *torrent), (p.conn, hash));
    assert_eq!((*offset, *len), (2 * u64::from(PL) + 16384, 16384));
    // The peer gets the header, then the range's bytes, and reads one whole PIECE message.
    let payload: Vec<u8> = (0..16384u32).map(|i| (i % 253) as u8).collect();
    p.dec.feed(data);
    p.dec.feed(&payload);
    let mut got = Vec::new();
    while let Ok(Some(Frame::Message(m))) = p.dec.next_frame() {
        got.push(m);
    }
    assert_eq!(
        got,
        vec![Message::Piece {
            index: 2,
            begin: 16384,
            data: Bytes::from(payload)
        }]
    );
    let after = node.stats(&hash).map(|st| st.bytes_uploaded);
    assert_eq!(after, before.map(|b| b + 16384), "the upload is counted");

    // Cancelled, then answered: nothing is sent.
    let (_, reads) = p.say(node, std::slice::from_ref(&asked));
    let (sent, _) = p.say(
        node,
        &[Message::Cancel {
            index: 2,
            begin: 16384,
            length: 16384,
        }],
    );
    assert_eq!(rejects(&sent), requests(std::slice::from_ref(&asked)));
    let late = answer_sendable(node, hash, p.conn, reads[0]);
    assert!(
        !late
            .iter()
            .any(|o| matches!(o, Output::Send { .. } | Output::SendRange { .. })),
        "nothing after the reject: {late:?}"
    );
}

#[test]
fn a_failed_announce_is_in_the_stats_until_one_succeeds() {
    let mut w = World::new(3 * PL as usize);
    let a = w.seeder();
    let hash = w.peers[a].meta.info_hash;
    let now = w.now;
    let reply = |r| Input::TrackerReply {
        torrent: hash,
        reply: r,
    };
    w.peers[a]
        .node
        .handle_input(now, reply(Err("udp://t:1/announce: refused".into())));
    w.drain(a);
    assert_eq!(
        w.stats(a).tracker_error.as_deref(),
        Some("udp://t:1/announce: refused")
    );
    w.peers[a]
        .node
        .handle_input(now, reply(Ok(crate::tracker::AnnounceReply::default())));
    w.drain(a);
    assert_eq!(w.stats(a).tracker_error, None);
}

/// Announces carry the verified pieces (enjambre's `pieces` key) while downloading, none once complete, and
/// the status port when the driver has one.
#[test]
fn announces_report_verified_pieces_and_status_port() {
    let data = content(3 * PL as usize + 100);
    let meta = meta_for(&data);
    let announce_of = |resume: Resume| {
        let mut node = Node::new(NodeConfig {
            status_port: Some(9100),
            ..NodeConfig::default()
        });
        node.add_torrent(
            Instant::ZERO,
            AddTorrent {
                meta: meta.clone(),
                resume,
                announce: true,
                sources: vec![],
            },
        );
        std::iter::from_fn(|| node.poll_output())
            .find_map(|o| match o {
                Output::Announce { params, .. } => Some(params),
                _ => None,
            })
            .expect("an announce")
    };
    let leecher = announce_of(Resume::Fresh);
    assert_eq!(leecher.ext.pieces, Some(vec![0]), "4 pieces, none verified");
    assert_eq!(leecher.ext.status_port, Some(9100));
    let seeder = announce_of(Resume::Complete);
    assert_eq!((seeder.left, seeder.ext.pieces), (0, None));
}
mod batch;
mod dht_port;
mod idle_library;
mod interest;
mod limits;
mod lonely_peer;
mod metadata_fetch;
mod peer_exchange;

fn stalls(events: &[NodeEvent]) -> Vec<(TorrentError, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::DiskStalled {
                error, retry_in_ms, ..
            } => Some((error.clone(), *retry_in_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_disk_stops_the_download_until_space_returns_and_blames_nobody() {
    let mut w = World::new(24 * PL as usize);
    let a = w.seeder();
    let b = w.seeder();
    let c = w.leecher(vec![a, b]);
    // Room for 10 pieces' worth of offsets only.
    w.peers[c].disk.full_from = Some(10 * PL as usize);
    assert!(w.run_until(30, |w| !stalls(&w.peers[c].events).is_empty()));
    let s = w.stats(c);
    let error = s.error.clone().expect("stopped on the disk error");
    assert!(error.is_storage_full(), "{error}");
    assert!(
        error.to_string().contains("No space left on device"),
        "{error}"
    );
    assert!(s.error_retry_in_ms.is_some());
    assert!(!s.complete);

    // Stopped: over the next 20 s it only retries, each time waiting longer, and never completes.
    let before = w.stats(c).pieces_have;
    w.run_until(20, |_| false);
    let st = stalls(&w.peers[c].events);
    assert!(st.len() >= 3, "retried and stopped again: {st:?}");
    let waits: Vec<u64> = st.iter().map(|(_, ms)| *ms).collect();
    // Each wait doubles, or starts over at the base once a probe got a piece through below the full mark.
    let base = NodeConfig::default().disk_retry_base.as_millis() as u64;
    assert!(
        waits.windows(2).all(|p| p[1] == p[0] * 2 || p[1] == base),
        "{waits:?}"
    );
    assert!(waits[waits.len() - 1] > waits[0], "{waits:?}");
    assert!(w.peers[c]
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::DiskRetry { .. })));
    assert!(w.stats(c).pieces_have <= 10 && w.stats(c).pieces_have >= before);
    // What was verified before the disk filled is still checkpointed while the download is stopped, and
    // lies within the room the disk had (the harness checked each claimed piece was durable).
    let last = w.peers[c]
        .checkpoints
        .last()
        .expect("checkpointed while stopped");
    let claimed = last.validate(&w.peers[c].meta).unwrap();
    assert_eq!(claimed.count(), w.stats(c).pieces_have);
    assert!(claimed.iter_ones().all(|p| p < 10), "{claimed:?}");
    // Now not even a checkpoint fits: saves fail and are retried, the old checkpoint stands.
    w.peers[c].disk.checkpoints_fail = true;
    let saved = w.peers[c].checkpoints.len();
    w.run_until(10, |_| false);
    assert_eq!(w.peers[c].checkpoints.len(), saved);
    let s = w.stats(c);
    assert!(s.banned.is_empty(), "banned {:?}", s.banned);
    assert_eq!(
        s.hash_failures, 0,
        "a write that failed is not the senders' fault"
    );

    // Space returns: the next retry resumes and the file completes byte-identical.
    w.peers[c].disk.full_from = None;
    w.peers[c].disk.checkpoints_fail = false;
    assert!(w.run_until(120, |w| w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
    let s = w.stats(c);
    assert!(s.error.is_none() && s.error_retry_in_ms.is_none());
    assert!(s.disk_errors >= 3);
    assert!(s.banned.is_empty());
    // Once the disk had room again, the last checkpoint claims every piece (and the harness checked that
    // each claimed piece was durable when it was saved).
    w.run_until(5, |_| false);
    let last = w.peers[c]
        .checkpoints
        .last()
        .expect("a checkpoint was saved");
    assert_eq!(last.validate(&w.peers[c].meta).unwrap().count(), 24);
}

#[test]
fn a_read_error_while_verifying_stops_the_download_and_blames_nobody() {
    let mut w = World::new(12 * PL as usize);
    let a = w.seeder();
    let c = w.leecher(vec![a]);
    w.peers[c].disk.read_errors = (0..12).step_by(3).collect();
    assert!(w.run_until(120, |w| w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
    let st = stalls(&w.peers[c].events);
    assert!(
        st.iter()
            .any(|(e, _)| matches!(e, TorrentError::ReadBack { error, .. }
                if error.message.contains("Input/output error"))),
        "{st:?}"
    );
    let s = w.stats(c);
    assert!(s.banned.is_empty());
    assert_eq!(s.hash_failures, 0);
    assert!(!w.peers[c]
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::PieceFailed { .. })));
}

#[test]
fn a_disk_that_fails_a_write_now_and_then_still_completes_and_blames_nobody() {
    let mut w = World::new(32 * PL as usize);
    let sources: Vec<usize> = (0..4).map(|_| w.seeder()).collect();
    let c = w.leecher(sources);
    // Every 9th write fails with EIO (64 blocks to write: at least 7 failures).
    w.peers[c].disk.failing_writes = (1..20).map(|k| 9 * k - 1).collect();
    assert!(w.run_until(600, |w| w.complete(c)));
    // Each stop costs about one base back-off: the retry writes one piece, which gets through. (When the
    // retry spread its writes over every source, failures came in a row, back-offs doubled and this took
    // 18 s.)
    let took = w.now.since_origin();
    assert!(took <= std::time::Duration::from_secs(13), "{took:?}");
    assert_eq!(w.peers[c].disk.volatile, w.source);
    let s = w.stats(c);
    let failed = (1..20).count() - w.peers[c].disk.failing_writes.len();
    assert!(failed >= 7, "{failed}");
    // Writes already on their way when one failed may fail under the same stop.
    assert!(
        (1..=failed).contains(&(s.disk_errors as usize)),
        "{}",
        s.disk_errors
    );
    assert_eq!(s.hash_failures, 0, "a failed write is nobody's fault");
    assert!(s.banned.is_empty(), "{:?}", s.banned);
}

/// Everything `node` asked for, with the messages it sent on each of `conns` decoded.
fn outputs_by_conn(
    node: &mut Node,
    conns: &mut [&mut HandPeer],
) -> (Vec<Vec<Message>>, Vec<Output>) {
    let mut rest = Vec::new();
    while let Some(o) = node.poll_output() {
        match o {
            Output::Send { conn, data } => {
                if let Some(p) = conns.iter_mut().find(|p| p.conn == conn) {
                    p.dec.feed(&data);
                }
            }
            o => rest.push(o),
        }
    }
    let mut sent = Vec::new();
    for p in conns.iter_mut() {
        let mut msgs = Vec::new();
        while let Ok(Some(f)) = p.dec.next_frame() {
            if let Frame::Message(m) = f {
                msgs.push(m);
            }
        }
        sent.push(msgs);
    }
    (sent, rest)
}

#[test]
fn after_a_failed_write_the_retry_fetches_one_piece_until_it_verifies() {
    let mut w = World::new(16 * PL as usize);
    let source = w.source.clone();
    let l = w.leecher(vec![]);
    let meta = w.peers[l].meta.clone();
    let hash = meta.info_hash;
    let node = &mut w.peers[l].node;
    let fast = crate::wire::reserved_bits(true, false);
    let mut a = HandPeer::open_as(node, &meta, fast, 9);
    let mut b = HandPeer::open_as(node, &meta, fast, 10);
    let (first, _) = a.say(node, &[Message::HaveAll, Message::Unchoke]);
    b.say(node, &[Message::HaveAll, Message::Unchoke]);
    let &(index, begin, length) = requests(&first).iter().next().expect("asked a for blocks");
    let block = |index: u32, begin: u32, length: u32| {
        let at = (index * PL + begin) as usize;
        Message::Piece {
            index,
            begin,
            data: Bytes::copy_from_slice(&source[at..at + length as usize]),
        }
    };
    // The first block's write fails: the download stops.
    a.say(node, &[block(index, begin, length)]);
    let eio = std::io::Error::from_raw_os_error(5).into();
    node.handle_input(
        Instant::ZERO,
        Input::Disk(DiskDone::WriteFailed {
            torrent: hash,
            error: eio,
        }),
    );
    let (_, out) = outputs_by_conn(node, &mut [&mut a, &mut b]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(NodeEvent::DiskStalled { .. }))),
        "{out:?}"
    );
    // It is tried again: requests go out for one piece only, over both sources.
    let mut now = Instant::ZERO + NodeConfig::default().disk_retry_base;
    node.handle_timeout(now);
    let (sent, _) = outputs_by_conn(node, &mut [&mut a, &mut b]);
    let mut asked: Vec<(usize, (u32, u32, u32))> = (0..2)
        .flat_map(|k| requests(&sent[k]).into_iter().map(move |r| (k, r)))
        .collect();
    let probe = asked.first().expect("asked again after the retry").1 .0;
    let mut pieces_asked = BTreeSet::new();
    let mut writes = Vec::new();
    // Deliver every block asked for, one at a time, until the probe piece is complete: nothing else is
    // asked for or written in the meantime.
    while let Some((k, (index, begin, length))) = asked.pop() {
        pieces_asked.insert(index);
        now = now + std::time::Duration::from_millis(10);
        let conn = [a.conn, b.conn][k];
        let mut buf = bytes::BytesMut::new();
        block(index, begin, length).encode(&mut buf);
        node.handle_input(
            now,
            Input::Received {
                conn,
                data: buf.freeze(),
            },
        );
        let (sent, out) = outputs_by_conn(node, &mut [&mut a, &mut b]);
        for (k, msgs) in sent.iter().enumerate() {
            asked.extend(requests(msgs).into_iter().map(|r| (k, r)));
        }
        for o in out {
            if let Output::Disk(DiskOp::Write { offset, .. }) = o {
                writes.push(offset / u64::from(PL));
            }
        }
        if writes.len() as u32 == PL / crate::BLOCK_LENGTH {
            break;
        }
    }
    assert_eq!(
        pieces_asked,
        [probe].into(),
        "pieces asked for while probing"
    );
    assert!(writes.iter().all(|&p| p == u64::from(probe)), "{writes:?}");
}

#[test]
fn a_seeder_whose_disk_fails_a_read_rejects_that_request_and_keeps_the_peer() {
    let mut w = World::new(16 * PL as usize);
    let a = w.seeder();
    w.peers[a].disk.serve_errors = (0..16).step_by(2).collect();
    let c = w.leecher(vec![a]);
    assert!(w.run_until(120, |w| w.complete(c)));
    assert_eq!(w.peers[c].disk.volatile, w.source);
    assert!(
        w.peers[a].disk.serve_errors.is_empty(),
        "every failing read happened"
    );
    let dropped: Vec<&NodeEvent> = w.peers[a]
        .events
        .iter()
        .filter(|e| matches!(e, NodeEvent::Disconnected { .. }))
        .collect();
    assert!(dropped.is_empty(), "{dropped:?}");
    assert!(w.stats(c).banned.is_empty());
}

#[test]
fn request_queue_follows_the_measured_rate() {
    let c = NodeConfig {
        request_queue_time: std::time::Duration::from_secs(3),
        ..NodeConfig::default()
    };
    assert_eq!(
        requests::request_depth(&c, 0),
        requests::MIN_REQUEST_DEPTH,
        "no rate yet"
    );
    assert_eq!(requests::request_depth(&c, 60_000), 11, "3 s of 60 KB/s");
    assert_eq!(
        requests::request_depth(&c, 100_000_000),
        c.pipeline,
        "capped"
    );
}

#[test]
fn a_new_source_gets_a_short_queue_until_its_rate_is_known() {
    let mut w = World::new(8 * PL as usize);
    let l = w.leecher(vec![]);
    let meta = w.peers[l].meta.clone();
    let node = &mut w.peers[l].node;
    let mut peer = HandPeer::open_with(node, &meta, crate::wire::reserved_bits(true, false));
    let (out, _) = peer.say(node, &[Message::HaveAll, Message::Unchoke]);
    assert_eq!(requests(&out).len(), requests::MIN_REQUEST_DEPTH);
}

/// Connections opened between each pair of peers of [`four_complete`], run for a minute past completion.
fn pair_connections(send_redundant_have: bool) -> Vec<usize> {
    let (mut w, [a, b, c, d]) = four_complete(send_redundant_have, false);
    w.run_until(60, |_| false);
    let mut counts = Vec::new();
    for (i, j) in [(a, b), (a, c), (a, d), (b, c), (b, d), (c, d)] {
        let dials = |from: usize, to: usize| {
            let to = w.peers[to].addr;
            w.peers[from]
                .events
                .iter()
                .filter(|e| matches!(e, NodeEvent::Connected { addr, outbound: true, .. } if *addr == to))
                .count()
        };
        counts.push(dials(i, j) + dials(j, i));
    }
    counts
}

/// Held back, a leecher's HAVEs never reach the seeder (it holds every piece): the seeder learns that the
/// leecher completed from its BEP 21 `upload_only`, sent before it closes, and does not dial it back.
#[test]
fn complete_peers_meet_once_whether_or_not_haves_are_held_back() {
    assert_eq!(pair_connections(true), vec![1; 6]);
    assert_eq!(pair_connections(false), vec![1; 6]);
}
