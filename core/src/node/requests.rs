//! Keeping request pipelines full: how many blocks each peer may have outstanding, and asking the picker for
//! them.

use super::conn::ConnPhase;
use super::view::TorrentCtx;
use super::ConnId;
use crate::time::Instant;
use crate::wire::Message;

impl TorrentCtx<'_> {
    /// Top up the requests out with one peer.
    pub fn refill(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.s.conns.get(&id) else {
            return;
        };
        if c.peer_choking || !c.am_interested || c.phase != ConnPhase::Open || self.s.stopping {
            return;
        }
        if c.torrent != Some(self.hash) {
            return;
        }
        let t = &mut *self.t;
        if t.check.is_some() || t.error.is_some() {
            return;
        }
        let config = &self.s.config;
        let outstanding = t.picker.outstanding(id);
        let depth = c
            .remote_reqq
            .map_or(config.pipeline, |q| config.pipeline.min(q.max(1) as usize));
        // A snubbed peer (its requests timed out) gets one request at a time until it delivers again.
        let depth = if c.snubbed_at.is_some() { 1 } else { depth };
        let mut room = depth.saturating_sub(outstanding);
        if t.disk.probing {
            let piece_blocks = t.meta.piece_length().div_ceil(crate::BLOCK_LENGTH) as usize;
            room = room.min(piece_blocks.saturating_sub(t.picker.total_outstanding()));
        }
        if room == 0 {
            return;
        }
        let blocks = t.picker.pick(id, &c.peer_has, room, now, &mut self.s.rng);
        if let Some(c) = self.s.conns.get_mut(&id) {
            for b in &blocks {
                c.on_requested(*b);
            }
        }
        for b in blocks {
            self.s.send(
                id,
                Message::Request {
                    index: b.piece,
                    begin: b.begin,
                    length: b.length,
                },
            );
        }
    }

    /// Re-evaluate interest in, and top up requests to, every peer of the torrent.
    pub fn refill_all(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.t.conns.iter().copied().collect();
        for id in ids {
            self.update_interest(id);
            self.refill(now, id);
        }
    }
}
