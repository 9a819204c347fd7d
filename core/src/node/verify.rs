//! Where a piece is verified: the resume check of a torrent being added, the SHA-1 result of a downloaded
//! piece, and what follows from it (announce it, count it, or strike and ban its senders). Invariant 1: a
//! piece enters the picker's `have` only here, after its hash matched.

use super::conn::ConnPhase;
use super::view::TorrentCtx;
use super::{CloseReason, ConnId, DiskError, DiskOp, NodeEvent, Output, Resume, TorrentError};
use crate::bitfield::Bitfield;
use crate::checkpoint::spot_check_pieces;
use crate::time::Instant;
use crate::tracker::Event;
use crate::wire::Message;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// A resume check in progress.
pub(crate) struct Check {
    /// Pieces the checkpoint claims.
    pub claimed: Bitfield,
    /// Whether the claims are trusted once the spot check passes.
    pub trust_claims: bool,
    /// Whether a claimed piece failed its hash.
    pub claim_failed: bool,
    /// Pieces whose hash is awaited.
    pub pending: BTreeSet<u32>,
}

impl Check {
    pub fn new(claimed: Bitfield, trust_claims: bool, pending: impl Iterator<Item = u32>) -> Check {
        Check {
            claimed,
            trust_claims,
            claim_failed: false,
            pending: pending.collect(),
        }
    }
}

impl TorrentCtx<'_> {
    /// Start a newly added torrent: decide which pieces to hash before trusting what is on disk (invariant
    /// 3), ask for those hashes, or become ready at once when there is nothing to check.
    pub fn start(&mut self, now: Instant, resume: Resume) {
        let t = &mut *self.t;
        let to_hash = match resume {
            Resume::Complete => {
                for i in 0..t.meta.piece_count() {
                    t.picker.mark_have(i);
                }
                Vec::new()
            }
            Resume::Fresh => Vec::new(),
            Resume::RecheckAll => {
                let all: Vec<u32> = (0..t.meta.piece_count()).collect();
                t.check = Some(Check::new(
                    Bitfield::new(t.meta.piece_count()),
                    false,
                    all.iter().copied(),
                ));
                all
            }
            Resume::Checkpoint {
                claimed,
                sizes_ok,
                hints,
            } => {
                let mut list: BTreeSet<u32> = hints
                    .into_iter()
                    .filter(|&p| p < t.meta.piece_count())
                    .collect();
                let trust = sizes_ok;
                if trust {
                    list.extend(spot_check_pieces(&claimed, 2, &mut self.s.rng));
                } else {
                    list.extend(claimed.iter_ones());
                }
                t.check = Some(Check::new(claimed, trust, list.iter().copied()));
                list.into_iter().collect()
            }
        };
        for piece in &to_hash {
            self.s.outputs.push_back(Output::Disk(DiskOp::Hash {
                torrent: self.hash,
                piece: *piece,
            }));
        }
        if to_hash.is_empty() {
            self.finish_check(now);
        } else {
            self.s.event(NodeEvent::Checking {
                torrent: self.hash,
                pieces: to_hash.len() as u32,
            });
        }
    }

    /// A piece's SHA-1 (or the error reading it back) arrived.
    pub fn on_hashed(&mut self, now: Instant, piece: u32, digest: Result<[u8; 20], DiskError>) {
        let t = &mut *self.t;
        let ok = digest.as_ref().ok() == t.meta.piece_hash(piece).as_ref();
        if let Some(check) = t.check.as_mut() {
            if check.pending.remove(&piece) {
                if ok {
                    t.picker.mark_have(piece);
                } else if check.claimed.get(piece) {
                    check.claim_failed = true;
                }
                if check.pending.is_empty() {
                    self.finish_check(now);
                }
                return;
            }
        }
        if !t.picker.is_hashing(piece) {
            return;
        }
        let suspect = t.disk.suspect.remove(&piece) || t.error.is_some();
        if let Err(e) = &digest {
            // Our own disk failed to read the piece back: nobody else is at fault.
            t.picker.piece_checked(piece, false);
            let error = TorrentError::ReadBack {
                piece,
                error: e.clone(),
            };
            self.fail_torrent(now, error);
            return;
        }
        let contributors = t.picker.piece_checked(piece, ok);
        if !ok && suspect {
            // One of its writes may be what failed: fetch it again, blame nobody.
            t.stats.bytes_wasted += u64::from(t.meta.piece_len(piece));
            self.refill_all(now);
            return;
        }
        let from: Vec<SocketAddr> = contributors.iter().map(|c| self.s.addr_of(*c)).collect();
        if ok {
            self.piece_verified(now, piece, from);
        } else {
            self.piece_failed(now, piece, contributors, from);
        }
    }

    fn finish_check(&mut self, now: Instant) {
        let t = &mut *self.t;
        if let Some(check) = t.check.as_mut() {
            if check.trust_claims && check.claim_failed {
                // A spot check failed: trust nothing the checkpoint said, hash every claimed piece.
                check.trust_claims = false;
                let rest: Vec<u32> = check
                    .claimed
                    .iter_ones()
                    .filter(|&p| !t.picker.have().get(p))
                    .collect();
                check.pending.extend(rest.iter().copied());
                self.s.event(NodeEvent::CheckpointDistrusted {
                    torrent: self.hash,
                    rechecking: rest.len() as u32,
                });
                if !rest.is_empty() {
                    for piece in rest {
                        self.s.outputs.push_back(Output::Disk(DiskOp::Hash {
                            torrent: self.hash,
                            piece,
                        }));
                    }
                    return;
                }
            } else if check.trust_claims {
                let claimed = check.claimed.clone();
                for p in claimed.iter_ones() {
                    t.picker.mark_have(p);
                }
            }
        }
        t.check = None;
        t.stats.pieces_resumed = t.picker.have().count();
        let first_missing = t.picker.have().first_missing();
        let resumed = t.stats.pieces_resumed;
        let complete = t.picker.have().is_full();
        if complete {
            t.completed_at = Some(now);
        }
        // Record what the check established (synced first, like any checkpoint), so that
        // `pieces_durable` covers resumed pieces too and a resumed complete torrent reports itself durable.
        if resumed > 0 || complete {
            t.ckpt.dirty = true;
        }
        self.s.event(NodeEvent::Ready {
            torrent: self.hash,
            pieces_resumed: resumed,
            first_missing,
        });
        self.maybe_checkpoint();
        self.announce(now, Event::Started);
        self.connect_more(now);
        self.refill_all(now);
    }

    fn piece_verified(&mut self, now: Instant, piece: u32, from: Vec<SocketAddr>) {
        let t = &mut *self.t;
        t.stats.pieces_downloaded += 1;
        t.ckpt.dirty = true;
        // A piece got through after a disk error: the disk works again, every source may be asked again.
        let probed = t.error.is_none() && t.disk.probing;
        if t.error.is_none() {
            t.disk.failures = 0;
            t.disk.probing = false;
            t.disk.probe = None;
        }
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        let complete = t.picker.have().is_full();
        self.s.event(NodeEvent::PieceVerified {
            torrent: self.hash,
            piece,
            from,
        });
        let redundant = self.s.config.send_redundant_have;
        // Holding one more piece can only end our interest, and only in a peer that holds it: those are
        // noted while each connection is visited for its HAVE (one look at each, not two: with fifty
        // connections and a piece verified every few milliseconds the second look was a cache miss each).
        let mut may_end: Vec<ConnId> = Vec::new();
        for id in &ids {
            let mut ends = false;
            self.s.send_have_unless(now, *id, piece, |c| {
                let has = c.peer_has.get(piece);
                ends = c.am_interested && has;
                let held = !redundant && has;
                if held {
                    c.held_haves.push(piece);
                }
                held
            });
            if ends {
                may_end.push(*id);
            }
        }
        self.maybe_checkpoint();
        if complete {
            self.on_complete(now);
        } else {
            self.maybe_progress_announce(now);
        }
        for id in may_end {
            if self.s.conns.get(&id).is_some_and(|c| c.am_interested) {
                self.update_interest(id);
            }
        }
        if probed {
            self.refill_all(now);
        }
    }

    fn on_complete(&mut self, now: Instant) {
        self.t.completed_at = Some(now);
        self.s.event(NodeEvent::Complete { torrent: self.hash });
        self.announce(now, Event::Completed);
        // BEP 21: every peer that speaks BEP 10 hears that we only upload from now on, the seeds we close
        // below included: with HAVEs held back from peers that hold the piece, a seed would otherwise never
        // learn that we completed, and would dial us again only to find us both complete.
        let ext = super::connections::our_ext_handshake(&self.s.config, &self.t.meta, true);
        let payload = bytes::Bytes::from(ext.encode());
        for id in self.t.conns.iter() {
            let open_extended = self
                .s
                .conns
                .get(id)
                .is_some_and(|c| c.extended && c.phase == ConnPhase::Open);
            if open_extended {
                self.s.send(
                    *id,
                    Message::Extended {
                        id: crate::extension::HANDSHAKE_ID,
                        payload: payload.clone(),
                    },
                );
            }
        }
        let seeds: Vec<ConnId> = self
            .t
            .conns
            .iter()
            .copied()
            .filter(|id| self.s.conns.get(id).is_some_and(|c| c.peer_has.is_full()))
            .collect();
        for id in seeds {
            self.close(now, id, CloseReason::BothComplete);
        }
        // The other peers were not told of pieces they held: they learn now that we hold everything, so that
        // whichever of two peers completes last sees the other complete and closes.
        for id in self.t.conns.iter() {
            let held = self
                .s
                .conns
                .get_mut(id)
                .map(|c| std::mem::take(&mut c.held_haves))
                .unwrap_or_default();
            for index in held {
                self.s.send(*id, Message::Have { index });
            }
        }
    }

    fn piece_failed(
        &mut self,
        now: Instant,
        piece: u32,
        conns: Vec<ConnId>,
        from: Vec<SocketAddr>,
    ) {
        let t = &mut *self.t;
        t.stats.bytes_wasted += u64::from(t.meta.piece_len(piece));
        t.stats.hash_failures += 1;
        self.s.event(NodeEvent::PieceFailed {
            torrent: self.hash,
            piece,
            from: from.clone(),
        });
        if conns.len() != 1 {
            // Several senders: nobody is blamed yet; the picker refetches the piece from a single peer.
            self.refill_all(now);
            return;
        }
        for (id, addr) in conns.iter().zip(from.iter()) {
            let peer_id = self.s.conns.get(id).and_then(|c| c.peer_id);
            if self.strike(*addr, peer_id) {
                self.close(now, *id, CloseReason::BannedForCorruptData);
            }
        }
        self.refill_all(now);
    }

    /// One strike against the peer at `addr` (a bad piece, a protocol violation, a flood of unrequested
    /// data); at the threshold it is banned, by address and by peer id. Strikes count in this torrent by
    /// address, and over every torrent by peer id (one bad piece in each of two torrents is two strikes).
    /// Returns whether it was banned now.
    pub fn strike(&mut self, addr: SocketAddr, peer_id: Option<[u8; 20]>) -> bool {
        let here = self.t.peers.strike(addr);
        let everywhere = peer_id.map_or(0, |pid| {
            let n = self.s.strikes_by_id.entry(pid).or_insert(0);
            *n += 1;
            *n
        });
        let strikes = here.max(everywhere);
        if strikes < self.s.config.ban_after_failures || self.t.peers.is_banned(&addr) {
            return false;
        }
        self.t.peers.ban(addr);
        if let Some(pid) = peer_id {
            self.s.banned_ids.insert(pid);
        }
        self.s.event(NodeEvent::Banned {
            torrent: self.hash,
            addr,
            strikes,
        });
        true
    }

    /// Close a connection whose peer broke the protocol or flooded us, with a strike against it (invariant 4:
    /// it counts like a bad piece, so a repeat offender is banned instead of being dialled again).
    pub fn penalise(&mut self, now: Instant, id: ConnId, reason: CloseReason) {
        let target = self
            .s
            .conns
            .get(&id)
            .filter(|c| c.phase == ConnPhase::Open && c.torrent == Some(self.hash))
            .map(|c| (c.peer_addr(), c.peer_id));
        if let Some((addr, peer_id)) = target {
            self.strike(addr, peer_id);
        }
        self.close(now, id, reason);
    }
}
