//! The borrowed view every per-torrent handler works on: one torrent, plus what the node shares (connections,
//! outputs, configuration, RNG). Built by [`super::Node`] once per input, so handlers never look the torrent
//! up again.

use super::conn::ConnPhase;
use super::shared::Shared;
use super::torrent::Torrent;
use super::{CloseReason, ConnId, NodeEvent};
use crate::metainfo::InfoHash;
use crate::time::Instant;

/// One torrent and the node's shared state, borrowed together.
pub(crate) struct TorrentCtx<'a> {
    /// The torrent's info hash (the key it is stored under).
    pub hash: InfoHash,
    pub t: &'a mut Torrent,
    pub s: &'a mut Shared,
}

impl TorrentCtx<'_> {
    /// Close a connection of this torrent: release its requests, update peer bookkeeping and tell the driver.
    pub fn close(&mut self, now: Instant, id: ConnId, reason: CloseReason) {
        self.close_inner(now, id, reason, false);
    }

    /// Close without scheduling a reconnect (self-connections, duplicates).
    pub fn close_and_forget(&mut self, now: Instant, id: ConnId, reason: CloseReason) {
        self.close_inner(now, id, reason, true);
    }

    fn close_inner(&mut self, now: Instant, id: ConnId, reason: CloseReason, forget: bool) {
        let Some((c, still_connected)) = self.s.remove_conn(id) else {
            return;
        };
        let ours = c.torrent == Some(self.hash);
        let forget = forget || still_connected;
        if ours {
            let t = &mut *self.t;
            if t.conns.remove(&id) {
                t.slots.remove(!c.am_choking, c.peer_interested);
            }
            t.picker.remove_peer(id, &c.peer_has);
            if let (false, Some(listen)) = (c.outbound, c.listen_addr) {
                t.peers.disconnected(listen, now);
            }
            if c.outbound {
                if forget {
                    t.peers.forget(&c.addr);
                } else if reason == CloseReason::GaveWay {
                    t.peers.withdrawn(c.addr);
                } else if c.phase == ConnPhase::Handshaking && reason == CloseReason::ClosedByPeer {
                    t.peers.refused(c.addr, now);
                } else {
                    t.peers.disconnected(c.addr, now);
                }
            }
            // A peer that held every piece (or said it only uploads, BEP 21) is a seed whichever end closed and
            // why: remembered at the address it listens on (an inbound connection's own address is a passing port), so that once we are
            // complete too we do not dial it again only to find us both complete.
            let seed = !c.peer_has.is_empty() && c.peer_has.is_full();
            if !forget && (seed || c.peer_upload_only) {
                t.peers.mark_seed(&c.peer_addr());
            }
        }
        self.s.event(NodeEvent::Disconnected {
            conn: id,
            addr: c.addr,
            reason,
        });
        if ours {
            if !c.am_choking {
                self.fill_free_slots(now);
            }
            self.refill_all(now);
        }
    }
}
