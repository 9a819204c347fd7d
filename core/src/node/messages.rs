//! What a peer's messages do to its torrent: what it holds, what it wants, what it asks of us and what it
//! sends us. Bounds are checked here, before anything reaches the picker (invariant 5).

use super::view::TorrentCtx;
use super::{CloseReason, ConnId, DiskError, DiskOp, NodeEvent, Output, RefuseReason};
use crate::bitfield::Bitfield;
use crate::extension::ExtHandshake;
use crate::picker::{BlockOutcome, BlockRef};
use crate::time::Instant;
use crate::wire::Message;
use bytes::Bytes;
use std::collections::BTreeSet;

impl TorrentCtx<'_> {
    /// One message from an open connection of this torrent.
    pub fn on_message(&mut self, now: Instant, id: ConnId, msg: Message) {
        match msg {
            Message::KeepAlive | Message::Port(_) => {}
            Message::SuggestPiece { index } => self.on_suggest(id, index),
            Message::Extended {
                id: ext_id,
                payload,
            } if ext_id == crate::extension::HANDSHAKE_ID => {
                self.on_extension_handshake(now, id, &payload)
            }
            Message::Extended {
                id: crate::extension::OUR_METADATA_ID,
                payload,
            } => self.on_metadata_message(id, &payload),
            Message::Extended {
                id: crate::extension::OUR_PEX_ID,
                payload,
            } => self.on_pex_message(now, id, &payload),
            Message::AllowedFast { .. } | Message::Extended { .. } | Message::Unknown { .. } => {}
            Message::Choke => self.on_choke(id),
            Message::Unchoke => {
                if let Some(c) = self.s.conns.get_mut(&id) {
                    c.peer_choking = false;
                }
                self.refill(now, id);
            }
            Message::Interested => self.set_peer_interest(now, id, true),
            Message::NotInterested => self.set_peer_interest(now, id, false),
            Message::Have { index } => self.on_have(now, id, index),
            Message::Bitfield(bytes) => self.on_bitfield(now, id, &bytes),
            Message::HaveAll | Message::HaveNone => {
                self.on_have_all_none(now, id, msg == Message::HaveAll)
            }
            Message::Request {
                index,
                begin,
                length,
            } => self.on_request(id, block_ref(index, begin, length)),
            Message::Cancel {
                index,
                begin,
                length,
            } => self.on_cancel(id, block_ref(index, begin, length)),
            Message::Reject {
                index,
                begin,
                length,
            } => self.on_reject(now, id, block_ref(index, begin, length)),
            Message::Piece { index, begin, data } => self.on_piece(now, id, index, begin, data),
        }
    }

    fn on_extension_handshake(&mut self, now: Instant, id: ConnId, payload: &[u8]) {
        // A malformed extension handshake only means we learn nothing from it.
        let Ok(ext) = ExtHandshake::parse(payload) else {
            return;
        };
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if let Some(addr) = c.take_ext_handshake(ext) {
            if self.t.peers.is_banned(&addr) {
                self.close(now, id, CloseReason::BannedAddress);
                return;
            }
            self.t.peers.attach(addr, id, now);
        }
        let upload_only = self.s.conns.get(&id).is_some_and(|c| c.peer_upload_only);
        if upload_only && self.t.picker.have().is_full() {
            // Neither end wants anything from the other (BEP 21); the close marks the peer not to be dialled.
            self.close(now, id, CloseReason::BothComplete);
            return;
        }
        // A peer that speaks ut_pex hears whom we are connected to now, not at our next timer.
        self.send_pex_to(now, &[id]);
    }

    /// BEP 6: the peer points us at a piece; the picker starts it first when it can (see
    /// [`crate::picker::Picker::pick_suggested`]). An index out of range is only a useless hint.
    fn on_suggest(&mut self, id: ConnId, index: u32) {
        if index >= self.t.meta.piece_count() {
            return;
        }
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if !c.suggested.contains(&index) {
            if c.suggested.len() >= super::conn::MAX_SUGGESTED {
                c.suggested.remove(0);
            }
            c.suggested.push(index);
        }
    }

    /// While we seed, point a fast-extension peer at the pieces we handed out least (see [`crate::spread`])
    /// until it holds [`crate::spread::SUGGEST_AHEAD`] suggestions it has not asked us for yet.
    fn suggest_ahead(&mut self, id: ConnId) {
        if !self.s.config.suggest_pieces {
            return;
        }
        let t = &mut *self.t;
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if !c.fast || !t.picker.have().is_full() {
            return;
        }
        let ahead = c
            .given
            .iter()
            .filter(|&(p, asked)| !asked && !c.peer_has.get(*p))
            .count();
        let mut pieces = Vec::new();
        for _ in ahead..crate::spread::SUGGEST_AHEAD {
            let picker = &t.picker;
            let Some(piece) = t
                .spread
                .next_for(&c.peer_has, &c.given, |i| picker.availability(i))
            else {
                break;
            };
            c.given.insert(piece, false);
            t.spread.note_given(piece);
            pieces.push(piece);
        }
        for index in pieces {
            self.s.send(id, Message::SuggestPiece { index });
        }
    }

    fn on_choke(&mut self, id: ConnId) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        c.peer_choking = true;
        // BEP 6: with the fast extension a choke no longer discards our pending requests; each still gets
        // exactly one answer, its piece or a reject (which releases it). Requesting them again after the
        // unchoke would fetch them twice (libtorrent chokes a peer that is not interested yet, and our first
        // requests cross that choke on the wire). Without the extension the choke drops them all (BEP 3).
        if c.fast {
            return;
        }
        self.t.picker.release_all(id);
    }

    fn on_have(&mut self, now: Instant, id: ConnId, index: u32) {
        if index >= self.t.meta.piece_count() {
            self.penalise(now, id, CloseReason::HaveOutOfRange);
            return;
        }
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if c.peer_has.set(index) {
            self.t.picker.add_peer_piece(index);
        }
        // A piece we lack can only make the peer interesting, so it changes nothing when the peer already is;
        // one we hold leaves our interest as it was.
        let lacked = !self.t.picker.have().get(index);
        let may_start = lacked && !c.am_interested;
        self.after_peer_pieces_changed(now, id, may_start);
    }

    /// A bitfield, or have-all/none, replaces what we knew of the peer's pieces. BEP 3 sends it first, but
    /// real clients also send one later (aria2 follows have-none with a bitfield), so it is accepted any time.
    fn replace_peer_pieces(&mut self, now: Instant, id: ConnId, pieces: Bitfield) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut c.peer_has, pieces);
        self.t.picker.replace_peer_pieces(&old, &c.peer_has);
        self.after_peer_pieces_changed(now, id, true);
    }

    fn on_bitfield(&mut self, now: Instant, id: ConnId, bytes: &[u8]) {
        match Bitfield::from_wire(bytes, self.t.meta.piece_count()) {
            Ok(b) => self.replace_peer_pieces(now, id, b),
            Err(e) => self.penalise(now, id, CloseReason::BadBitfield(e)),
        }
    }

    fn on_have_all_none(&mut self, now: Instant, id: ConnId, all: bool) {
        if !self.s.conns.get(&id).is_some_and(|c| c.fast) {
            self.close(now, id, CloseReason::HaveAllWithoutFast);
            return;
        }
        let n = self.t.meta.piece_count();
        let pieces = if all {
            Bitfield::full(n)
        } else {
            Bitfield::new(n)
        };
        self.replace_peer_pieces(now, id, pieces);
    }

    /// What the peer holds grew or was replaced: close if both ends are complete, else decide interest again
    /// (when `interest_may_change`) and top up requests.
    fn after_peer_pieces_changed(&mut self, now: Instant, id: ConnId, interest_may_change: bool) {
        let Some(c) = self.s.conns.get(&id) else {
            return;
        };
        let we_seed = self.t.picker.have().is_full();
        if we_seed && c.peer_has.is_full() {
            self.close(now, id, CloseReason::BothComplete);
            return;
        }
        if interest_may_change {
            self.update_interest(id);
        }
        self.refill(now, id);
    }

    /// Tell a peer whether we want its pieces, when that changed.
    pub fn update_interest(&mut self, id: ConnId) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        let t = &*self.t;
        let want = t.check.is_none() && t.error.is_none() && t.picker.wants_from(&c.peer_has);
        if want != c.am_interested {
            c.am_interested = want;
            self.s.send(
                id,
                if want {
                    Message::Interested
                } else {
                    Message::NotInterested
                },
            );
        }
    }

    fn set_peer_interest(&mut self, now: Instant, id: ConnId, interested: bool) {
        if let Some(c) = self.s.conns.get_mut(&id) {
            let before = (!c.am_choking, c.peer_interested);
            c.peer_interested = interested;
            if self.t.conns.contains(&id) {
                self.t.slots.change(before, (!c.am_choking, interested));
            }
        }
        // Slots follow interest at once; the periodic rechoke does the ranking.
        self.fill_free_slots(now);
    }

    /// Choke or unchoke a peer, rejecting (BEP 6) what a choke drops.
    pub fn set_choking(&mut self, id: ConnId, choke: bool) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if c.am_choking == choke {
            return;
        }
        c.am_choking = choke;
        if self.t.conns.contains(&id) {
            let interested = c.peer_interested;
            self.t
                .slots
                .change((choke, interested), (!choke, interested));
        }
        let fast = c.fast;
        let dropped = if choke {
            std::mem::take(&mut c.serving)
        } else {
            BTreeSet::new()
        };
        if !choke {
            self.suggest_ahead(id);
        }
        self.s.send(
            id,
            if choke {
                Message::Choke
            } else {
                Message::Unchoke
            },
        );
        // BEP 6: a choke does not cancel what the peer asked for; every request we drop is rejected.
        if fast {
            for block in dropped {
                self.s.send_reject(id, block);
            }
        }
    }

    /// The peer no longer wants `block`.
    fn on_cancel(&mut self, id: ConnId, block: BlockRef) {
        let answer = self
            .s
            .conns
            .get_mut(&id)
            .is_some_and(|c| c.serving.remove(&block) && c.fast);
        // BEP 6: a cancelled request is still answered once; the read in flight is dropped.
        if answer {
            self.s.send_reject(id, block);
        }
    }

    /// The peer will not send `block` (BEP 6): it goes back to the pool and is asked again at once, of this
    /// peer or another. Waiting for the next delivery would wait forever when it was the last block out (a
    /// source whose disk failed one read left a piece one block short for good: `sim explore` seed 189).
    fn on_reject(&mut self, now: Instant, id: ConnId, block: BlockRef) {
        if let Some(c) = self.s.conns.get_mut(&id) {
            c.take_asked(&block);
        }
        self.t.picker.release(id, block);
        self.refill_all(now);
    }

    fn on_request(&mut self, id: ConnId, block: BlockRef) {
        let Some(c) = self.s.conns.get(&id) else {
            return;
        };
        let t = &*self.t;
        let valid = block.length > 0
            && block.length <= crate::MAX_REQUEST_LENGTH
            && block.piece < t.meta.piece_count()
            && u64::from(block.begin) + u64::from(block.length)
                <= u64::from(t.meta.piece_len(block.piece));
        let servable = valid && t.picker.have().get(block.piece) && !c.am_choking;
        let room = c.serving.len() < self.s.config.max_served_requests;
        if !(servable && room) {
            let reason = if !valid {
                RefuseReason::OutOfBounds
            } else if !room {
                RefuseReason::QueueFull
            } else {
                RefuseReason::CannotServe
            };
            let fast = c.fast;
            self.s.event(NodeEvent::RequestRefused { conn: id, reason });
            if fast {
                self.s.send_reject(id, block);
            }
            return;
        }
        if let Some(c) = self.s.conns.get_mut(&id) {
            c.serving.insert(block);
            if c.given.insert(block.piece, true) != Some(true) && self.t.picker.have().is_full() {
                self.t.spread.note_given(block.piece);
            }
        }
        self.s.outputs.push_back(Output::Disk(DiskOp::Read {
            torrent: self.hash,
            conn: id,
            block,
        }));
        self.suggest_ahead(id);
    }

    fn on_piece(&mut self, now: Instant, id: ConnId, index: u32, begin: u32, data: Bytes) {
        let len = data.len() as u64;
        let block = block_ref(index, begin, u32::try_from(data.len()).unwrap_or(u32::MAX));
        let t = &mut *self.t;
        let in_bounds = index < t.meta.piece_count()
            && u64::from(begin) + len <= u64::from(t.meta.piece_len(index))
            && len > 0;
        if !in_bounds {
            self.penalise(now, id, CloseReason::PieceOutOfBounds);
            return;
        }
        let addr = self.s.conns.get(&id).map(|c| c.peer_addr());
        let (mut asked, mut flood) = (false, false);
        if let Some(c) = self.s.conns.get_mut(&id) {
            c.on_payload_received(now, len);
            asked = c.take_asked(&block);
            flood = !asked && c.on_unrequested(len);
        }
        t.picker.on_progress(id, now);
        t.stats.bytes_received += len;
        if !asked {
            // Never requested on this connection: not trusted, even if some piece could use it.
            t.stats.bytes_wasted += len;
            if flood {
                self.penalise(now, id, CloseReason::UnrequestedData);
            }
            return;
        }
        if t.error.is_some() || t.check.is_some() {
            t.stats.bytes_wasted += len;
            return;
        }
        match t.picker.on_block(id, block) {
            BlockOutcome::Unwanted => t.stats.bytes_wasted += len,
            BlockOutcome::Accepted {
                piece_complete,
                cancel,
            } => {
                if let Some(a) = addr {
                    *t.stats.per_source.entry(a).or_default() += len;
                }
                let offset = u64::from(index) * u64::from(t.meta.piece_length()) + u64::from(begin);
                self.s.outputs.push_back(Output::Disk(DiskOp::Write {
                    torrent: self.hash,
                    offset,
                    data,
                }));
                if piece_complete {
                    self.s.outputs.push_back(Output::Disk(DiskOp::Hash {
                        torrent: self.hash,
                        piece: index,
                    }));
                }
                for other in cancel {
                    self.s.send(
                        other,
                        Message::Cancel {
                            index,
                            begin,
                            length: block.length,
                        },
                    );
                }
            }
        }
        self.refill(now, id);
    }
}

impl TorrentCtx<'_> {
    /// A block read for `id` came back from the disk: send it, unless the request was cancelled or choked
    /// meanwhile.
    pub fn on_read(
        &mut self,
        now: Instant,
        id: ConnId,
        block: BlockRef,
        data: Result<Bytes, DiskError>,
    ) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if !c.serving.remove(&block) || c.am_choking {
            return;
        }
        let data = match data {
            Ok(d) if d.len() == block.length as usize => d,
            Ok(_) | Err(_) if c.fast => {
                // Our disk failed to read it: a BEP 6 peer is told at once and asks someone else.
                self.s.send_reject(id, block);
                return;
            }
            Ok(_) | Err(_) => {
                self.close(now, id, CloseReason::ServeReadFailed);
                return;
            }
        };
        self.count_served(now, id, data.len() as u64);
        self.s.send(
            id,
            Message::Piece {
                index: block.piece,
                begin: block.begin,
                data,
            },
        );
    }

    /// The driver can send a block `id` asked for straight from the torrent's files: unless the request was
    /// cancelled or the peer choked since, the PIECE message's header goes out and the driver sends the bytes
    /// ([`Output::SendRange`]) right after it.
    pub fn on_sendable(&mut self, now: Instant, id: ConnId, block: BlockRef) {
        let Some(c) = self.s.conns.get_mut(&id) else {
            return;
        };
        if !c.serving.remove(&block) || c.am_choking {
            return;
        }
        self.count_served(now, id, u64::from(block.length));
        let offset =
            u64::from(block.piece) * u64::from(self.t.meta.piece_length()) + u64::from(block.begin);
        self.s.send_range(now, id, self.hash, offset, block);
    }

    /// `len` bytes of payload are on their way to `id`: its rate, its deadlines and the torrent's count.
    fn count_served(&mut self, now: Instant, id: ConnId, len: u64) {
        if let Some(c) = self.s.conns.get_mut(&id) {
            c.on_payload_sent(now, len);
        }
        if now < self.s.now {
            self.s.conn_deadlines.mark(id);
        }
        self.t.stats.bytes_uploaded += len;
    }
}

/// The block a request, cancel, reject or piece message names.
fn block_ref(piece: u32, begin: u32, length: u32) -> BlockRef {
    BlockRef {
        piece,
        begin,
        length,
    }
}
