//! A torrent's place in its swarm: announcing to the tracker, dialling known peers, choking. When each
//! of these runs is in [`super::timers`].

use super::conn::Conn;
use super::view::TorrentCtx;
use super::{ConnId, NodeEvent, Output};
use crate::choker::{ChokeCandidate, UploadUse};
use crate::time::Instant;
use crate::tracker::{AnnounceReply, Event};
use rand_core::RngCore;

impl TorrentCtx<'_> {
    /// Send an announce, unless the torrent does not announce or the node is stopping.
    pub fn announce(&mut self, now: Instant, event: Event) {
        let t = &mut *self.t;
        if !t.announce.enabled || (self.s.stopping && event != Event::Stopped) {
            return;
        }
        if event == Event::Stopped && !t.announce.started {
            return;
        }
        let params = t.announce_params(&self.s.config, event);
        t.announce.on_sent(now, &self.s.config, params.left, event);
        self.s.outputs.push_back(Output::Announce {
            torrent: self.hash,
            params,
        });
    }

    /// Announce progress if the last announce is old enough.
    pub fn maybe_progress_announce(&mut self, now: Instant) {
        if self.t.announce.progress_due(now, &self.s.config) {
            self.announce(now, Event::None);
        }
    }

    /// A tracker answered (or failed to).
    pub fn on_tracker(&mut self, now: Instant, reply: Result<AnnounceReply, String>) {
        let t = &mut *self.t;
        match reply {
            Ok(r) => {
                let seeding = t.picker.have().is_full();
                t.announce
                    .on_reply(now, &self.s.config, r.interval, seeding);
                let n = r.peers.len();
                for addr in r.peers {
                    t.peers.add(addr, now);
                }
                self.s.event(NodeEvent::TrackerReply {
                    torrent: self.hash,
                    peers: n as u32,
                });
                self.connect_more(now);
            }
            Err(e) => {
                let draw = self.s.rng.next_u64();
                t.announce.on_failure(now, &self.s.config, &e, draw);
                self.s.event(NodeEvent::TrackerError {
                    torrent: self.hash,
                    error: e,
                });
            }
        }
    }

    /// Dial known peers, within the per-torrent and node-wide connection budgets.
    pub fn connect_more(&mut self, now: Instant) {
        if self.s.stopping {
            return;
        }
        let t = &mut *self.t;
        if !t.dials(&self.s.config) {
            return;
        }
        let complete = t.picker.have().is_full();
        let budget = self
            .s
            .config
            .max_peers_per_torrent
            .saturating_sub(t.conns.len());
        let total_budget = self
            .s
            .config
            .max_connections
            .saturating_sub(self.s.conns.len());
        // Asked at every timeout pass of a torrent with connections: one read of the idle index before a
        // walk over every known address.
        let budget = budget.min(total_budget);
        if (budget == 0 && complete) || !t.peers.dialable_now(now, complete) {
            return;
        }
        // Dials still connecting or handshaking count against the torrent's cap: otherwise every pass dials the
        // whole budget again while the last pass's dials are in flight, and a peer in a crowd opens several
        // times its cap in connections its full neighbours refuse.
        let in_flight = self.s.dials_in_flight(self.hash).count();
        // A downloading torrent at its cap whose connections all moved no payload for `evict_idle_after`
        // gives up one with nothing to exchange for a peer it has not tried: otherwise peers that joined
        // late together, refused by the full peers of the crowd, fill their caps with each other, hold
        // nothing between them, and wait for good (52 of 300 peers against a tracker of 4 connections,
        // bench/RESULTS.md, issue 13).
        let budget = if budget == 0 && in_flight == 0 && self.give_up_an_idle_connection(now) {
            1
        } else {
            budget.saturating_sub(in_flight)
        };
        if budget == 0 {
            return;
        }
        let t = &mut *self.t;
        let candidates = t.peers.ready_to_dial(now, complete, budget);
        for addr in candidates {
            let id = self.s.new_conn_id();
            t.peers.dialing(addr, id);
            let conn = Conn::new(addr, true, Some(self.hash), now);
            self.s.insert_conn(id, conn);
            self.s.outputs.push_back(Output::Connect { conn: id, addr });
        }
    }

    /// When no connection of this torrent moved payload for `evict_idle_after` (it is stalled, not merely
    /// full), close the one idle longest among those where neither side is interested in the other
    /// (nothing to exchange: a connection to a peer that has what we lack and only chokes us is kept);
    /// whether one was closed. A torrent that moves payload keeps its connections as they are.
    fn give_up_an_idle_connection(&mut self, now: Instant) -> bool {
        let conns = &self.s.conns;
        let evict_after = self.s.config.evict_idle_after;
        let stalled = self.t.conns.iter().all(|id| {
            conns
                .get(id)
                .is_none_or(|c| now.saturating_since(c.last_useful()) >= evict_after)
        });
        if !stalled {
            return false;
        }
        let useless = self.t.conns.iter().filter(|id| {
            conns
                .get(id)
                .is_some_and(|c| !c.am_interested && !c.peer_interested)
        });
        let idle = super::connections::idle_longest(useless, conns, now, evict_after);
        let Some((last, victim)) = idle else {
            return false;
        };
        let idle_secs = now.saturating_since(last).as_secs();
        self.close(now, victim, super::CloseReason::Evicted { idle_secs });
        true
    }

    /// What the choker ranks: this torrent's open connections, with their rates as last measured. (A
    /// connection still handshaking has shown no interest, so it could not be unchoked anyway.)
    fn choke_candidates(&self, now: Instant) -> Vec<ChokeCandidate> {
        let seeding = self.t.picker.have().is_full();
        let peers = self.t.conns.len() as u32;
        self.t
            .conns
            .iter()
            .filter_map(|id| {
                let c = self
                    .s
                    .conns
                    .get(id)
                    .filter(|c| c.phase == super::conn::ConnPhase::Open)?;
                let mut candidate = c.choke_candidate(*id, now, seeding);
                if candidate.interested && !candidate.unchoked {
                    candidate.offers = self.t.picker.lacked_most(&c.peer_has, peers);
                    let piece = u64::from(self.t.meta.piece_length()).max(1);
                    candidate.pieces_sent = u32::try_from(c.uploaded() / piece).unwrap_or(u32::MAX);
                    candidate.pieces_claimed = c.peer_has.count();
                }
                Some(candidate)
            })
            .collect()
    }

    /// What the choker sizes its slots by: whether we seed, our capacity, what this torrent uploads now.
    fn upload_use(&self) -> UploadUse {
        UploadUse {
            seeding: self.t.picker.have().is_full(),
            capacity: self.s.config.upload_capacity,
            rate: self
                .t
                .conns
                .iter()
                .filter_map(|id| self.s.conns.get(id))
                .map(|c| c.upload_rate())
                .sum(),
        }
    }

    /// What sizes the slots between rechokes: [`Choker::slots`] reads only whether we seed and whether our
    /// capacity is known, so the rate is left at 0 instead of being summed over every connection at every
    /// interested or not-interested message.
    fn slot_sizing(&self) -> UploadUse {
        UploadUse {
            seeding: self.t.picker.have().is_full(),
            capacity: self.s.config.upload_capacity,
            rate: 0,
        }
    }

    /// Give the slots of peers that lost interest, and any free slot, to interested peers now. The candidate
    /// list is built only when the kept census says a slot is to be taken back or given.
    pub fn fill_free_slots(&mut self, now: Instant) {
        let up = self.slot_sizing();
        if !self.t.choker.would_fill(&self.t.slots, &up) {
            return;
        }
        let candidates = self.choke_candidates(now);
        let changes = self.t.choker.fill_free_slots(&candidates, &up);
        for id in changes.choke {
            self.set_choking(id, true);
        }
        for id in changes.unchoke {
            self.set_choking(id, false);
        }
    }

    /// Rank this torrent's peers and choke or unchoke them (due every `rechoke_interval`).
    pub fn rechoke(&mut self, now: Instant) {
        let t = &mut *self.t;
        let rotate = now >= t.next_optimistic;
        t.next_rechoke = now + self.s.config.rechoke_interval;
        if rotate {
            t.next_optimistic = now + self.s.config.optimistic_interval;
        }
        for id in &t.conns {
            if let Some(c) = self.s.conns.get_mut(id) {
                c.sample_rates(now);
            }
        }
        let candidates = self.choke_candidates(now);
        let up = self.upload_use();
        let unchoke = self.t.choker.rechoke(&candidates, rotate, &up);
        let ids: Vec<ConnId> = self.t.conns.iter().copied().collect();
        for id in ids {
            self.set_choking(id, !unchoke.contains(&id));
        }
    }
}
