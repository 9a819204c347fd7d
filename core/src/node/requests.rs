//! Keeping request pipelines full: how many blocks each peer may have outstanding, and asking the picker for
//! them.

use super::conn::ConnPhase;
use super::view::TorrentCtx;
use super::{ConnId, NodeConfig};
use crate::time::Instant;
use crate::wire::Message;

/// Fewest requests kept outstanding with a peer, whatever its measured rate (a new connection has none).
pub(crate) const MIN_REQUEST_DEPTH: usize = 4;

/// How many blocks to keep requested from a peer that delivers `rate` bytes per second: enough for
/// `request_queue_time` of its measured rate (as libtorrent sizes its queues), at least
/// [`MIN_REQUEST_DEPTH`], at most `pipeline`. A slow source, or one slowed by our own download cap, gets a
/// short queue, so that what we ask of it arrives before the request times out.
pub(crate) fn request_depth(config: &NodeConfig, rate: u64) -> usize {
    let bytes = rate as f64 * config.request_queue_time.as_secs_f64();
    let blocks = (bytes / f64::from(crate::BLOCK_LENGTH)).ceil() as usize;
    blocks.clamp(MIN_REQUEST_DEPTH, config.pipeline.max(MIN_REQUEST_DEPTH))
}

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
        let depth = request_depth(config, c.download_rate());
        let depth = c
            .remote_reqq
            .map_or(depth, |q| depth.min(q.max(1) as usize));
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
        let was_endgame = t.picker.in_endgame();
        let blocks = if t.disk.probing {
            let rng = &mut self.s.rng;
            t.disk
                .pick_probe(&mut t.picker, id, &c.peer_has, room, now, rng)
        } else {
            let rng = &mut self.s.rng;
            t.picker
                .pick_suggested(id, &c.peer_has, &c.suggested, room, now, rng)
        };
        // A peer that unchoked us but has nothing we would ask of it (we fetch its pieces from others) is
        // told so now, so that it gives its slot to a peer that will use it; interest decided earlier may lag
        // behind what we asked of others since.
        if blocks.is_empty() && t.picker.outstanding(id) == 0 {
            self.update_interest(id);
        }
        if let Some(c) = self.s.conns.get_mut(&id) {
            for b in &blocks {
                c.on_requested(*b);
            }
        }
        // Taking the last free block starts endgame, where every peer holding a piece we lack has blocks to
        // duplicate: interest widens (see [`crate::picker::Picker::wants_from`]).
        if !was_endgame && self.t.picker.in_endgame() {
            let ids: Vec<ConnId> = self.t.conns.iter().copied().collect();
            for other in ids {
                self.update_interest(other);
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
