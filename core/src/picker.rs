//! Piece and block selection: random first pieces, then rarest-first over connected peers' availability,
//! strict priority to finishing partial pieces, per-peer request bookkeeping, timeouts and endgame.
//!
//! The picker knows nothing about sockets or data: it hands out [`BlockRef`]s to request, records which
//! connection delivered each block, and turns a complete piece over to the verifier.

use crate::bitfield::Bitfield;
use crate::time::Instant;
use crate::ConnId;
use crate::BLOCK_LENGTH;
use rand_core::RngCore;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most peers asked at once for one block in endgame, counting only requests younger than
/// [`ENDGAME_STALE`]: the first and one duplicate. Small files fetched from crowds showed why (`sim explore`
/// seeds 2784, 3822, 4910, 5385, 6045, 6190, 6790, 9408): with an 80 ms round trip every source that unchoked
/// late found the peer idle and was given up to its whole queue of duplicates, up to three requesters per
/// block, and 2.46 copies of an 11-block file were received (`scenarios/regressions/endgame-crowd.toml`).
const ENDGAME_REQUESTERS: usize = 2;

/// Age after which an endgame request no longer counts against [`ENDGAME_REQUESTERS`]: a block whose sources
/// have sat on it this long (one stopped serving, another rejected it and was asked again) may be asked of
/// one more idle peer before the request timeout, instead of the download waiting seconds for its last block.
const ENDGAME_STALE: Duration = Duration::from_secs(1);

/// One block of one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    /// Piece index.
    pub piece: u32,
    /// Byte offset inside the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// What became of a block that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// New data for a piece we are assembling. `cancel` lists other connections that were asked for the same
    /// block (endgame) and should be sent a cancel; `piece_complete` says every block of the piece is in.
    Accepted {
        piece_complete: bool,
        cancel: Vec<ConnId>,
    },
    /// Data we already have, or for a piece we are not assembling: wasted bytes.
    Unwanted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockState {
    Free,
    Requested(Vec<ConnId>),
    Received(ConnId),
}

#[derive(Debug, Clone)]
struct PartialPiece {
    blocks: Vec<BlockState>,
    received: u32,
}

/// Tunables of the picker.
#[derive(Debug, Clone)]
pub struct PickerConfig {
    /// How many first pieces are picked at random rather than rarest-first.
    pub random_first: u32,
    /// Whether to duplicate outstanding requests once nothing else is left.
    pub endgame: bool,
    /// How new pieces are chosen.
    pub selection: PieceSelection,
}

/// How the picker chooses the next piece to start (partial pieces are always finished first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PieceSelection {
    /// The piece fewest connected peers hold (after `random_first` random ones), ties broken at random.
    #[default]
    RarestFirst,
    /// Any piece the peer has, at random (availability ignored).
    Random,
    /// In index order (streaming, or the original system's behaviour).
    Sequential,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            random_first: 4,
            endgame: true,
            selection: PieceSelection::RarestFirst,
        }
    }
}

/// The piece picker of one torrent.
#[derive(Debug, Clone)]
pub struct Picker {
    config: PickerConfig,
    piece_length: u32,
    total_length: u64,
    have: Bitfield,
    hashing: BTreeMap<u32, Vec<ConnId>>,
    availability: Vec<u32>,
    partial: BTreeMap<u32, PartialPiece>,
    /// The partial pieces with a free block: the only ones [`Picker::pick`] can take a block of outside
    /// endgame. Every request round used to walk every partial piece, and with small pieces in a large swarm
    /// nearly all of them are wholly requested. Kept by [`Picker::note_free`] after every change to a piece.
    with_free: std::collections::BTreeSet<u32>,
    requested_at: RequestTimes,
    /// Pieces that failed with several contributors: fetched again from one peer only, so blame is exact.
    exclusive: std::collections::BTreeSet<u32>,
    /// Pieces no new request can start: held, being hashed, or being assembled with every block requested.
    /// What [`Picker::wants_from`] masks a peer's pieces with. Kept by [`Picker::sync_closed`].
    closed: Bitfield,
}

impl Picker {
    /// A picker for a torrent of `total_length` bytes in pieces of `piece_length`, already holding `have`.
    pub fn new(
        config: PickerConfig,
        piece_length: u32,
        total_length: u64,
        have: Bitfield,
    ) -> Picker {
        let count = have.len() as usize;
        Picker {
            config,
            piece_length,
            total_length,
            hashing: BTreeMap::new(),
            availability: vec![0; count],
            partial: BTreeMap::new(),
            with_free: std::collections::BTreeSet::new(),
            requested_at: RequestTimes::default(),
            exclusive: std::collections::BTreeSet::new(),
            closed: have.clone(),
            have,
        }
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Number of pieces in the torrent.
    pub fn piece_count(&self) -> u32 {
        self.have.len()
    }

    /// Length of piece `index` (the last one may be short); 0 when out of range.
    pub fn piece_len(&self, index: u32) -> u32 {
        if index >= self.piece_count() {
            return 0;
        }
        let start = u64::from(index) * u64::from(self.piece_length);
        (self.total_length - start).min(u64::from(self.piece_length)) as u32
    }

    /// How many connected peers hold `index`.
    pub fn availability(&self, index: u32) -> u32 {
        self.availability.get(index as usize).copied().unwrap_or(0)
    }

    /// How many of `peers` connected peers lack the piece of `peer_has` that most of them lack (its holder
    /// counted among the `peers`): 0 when it holds nothing, or only pieces they all hold, so that it can
    /// serve none of our other peers. The scan stops at a piece only its holder has.
    pub fn lacked_most(&self, peer_has: &Bitfield, peers: u32) -> u32 {
        let mut fewest = peers;
        for i in peer_has.iter_ones() {
            fewest = fewest.min(self.availability(i));
            if fewest <= 1 {
                break;
            }
        }
        peers.saturating_sub(fewest)
    }

    /// Count a newly connected peer's pieces.
    pub fn add_peer_pieces(&mut self, pieces: &Bitfield) {
        for i in pieces.iter_ones() {
            self.add_peer_piece(i);
        }
    }

    /// A peer's piece set changed wholesale (a late bitfield): move availability from `old` to `new`.
    pub fn replace_peer_pieces(&mut self, old: &Bitfield, new: &Bitfield) {
        for i in old.iter_ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
        self.add_peer_pieces(new);
    }

    /// Count one piece a peer announced (HAVE).
    pub fn add_peer_piece(&mut self, index: u32) {
        if let Some(a) = self.availability.get_mut(index as usize) {
            *a += 1;
        }
    }

    /// Forget a departed peer: its pieces no longer count and its outstanding requests return to the pool.
    /// The blocks it delivered of a piece fetched from one source only (see `exclusive`) go too: nobody else
    /// may finish that piece, so it starts again whole from another peer.
    pub fn remove_peer(&mut self, peer: ConnId, pieces: &Bitfield) {
        for i in pieces.iter_ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
        self.release_all(peer);
        for piece in &self.exclusive {
            if let Some(p) = self.partial.get_mut(piece) {
                for b in &mut p.blocks {
                    if *b == BlockState::Received(peer) {
                        *b = BlockState::Free;
                        p.received -= 1;
                        self.with_free.insert(*piece);
                        self.closed.clear(*piece);
                    }
                }
            }
        }
    }

    /// Keep [`Picker::with_free`] in step with `piece` after a change to its blocks or its being partial.
    fn note_free(&mut self, piece: u32) {
        let free = self
            .partial
            .get(&piece)
            .is_some_and(|p| p.blocks.contains(&BlockState::Free));
        if free {
            self.with_free.insert(piece);
        } else {
            self.with_free.remove(&piece);
        }
        self.sync_closed(piece);
    }

    /// Keep [`Picker::closed`] in step with `piece` after a change to its being held, hashed or requested.
    fn sync_closed(&mut self, piece: u32) {
        let closed = self.have.get(piece)
            || self.hashing.contains_key(&piece)
            || (self.partial.contains_key(&piece) && !self.with_free.contains(&piece));
        if closed {
            self.closed.set(piece);
        } else {
            self.closed.clear(piece);
        }
    }

    /// Test hook: whether [`Picker::with_free`] lists exactly the partial pieces with a free block.
    #[cfg(test)]
    pub fn free_index_is_exact(&self) -> bool {
        let scanned: std::collections::BTreeSet<u32> = self
            .partial
            .iter()
            .filter(|(_, p)| p.blocks.contains(&BlockState::Free))
            .map(|(i, _)| *i)
            .collect();
        let mut closed = self.have.clone();
        for piece in self.hashing.keys() {
            closed.set(*piece);
        }
        for piece in self.partial.keys() {
            if !scanned.contains(piece) {
                closed.set(*piece);
            }
        }
        scanned == self.with_free && closed == self.closed
    }

    /// Return every request outstanding with `peer` to the pool (it choked us, or left).
    pub fn release_all(&mut self, peer: ConnId) -> Vec<BlockRef> {
        let blocks = self.requested_at.blocks_of(peer);
        for b in &blocks {
            self.release(peer, *b);
        }
        blocks
    }

    /// Return one request to the pool (the peer rejected it, or it timed out).
    pub fn release(&mut self, peer: ConnId, block: BlockRef) {
        self.requested_at.remove(&(peer, block));
        let Some(state) = self.block_state_mut(block) else {
            return;
        };
        if let BlockState::Requested(peers) = state {
            peers.retain(|p| *p != peer);
            if peers.is_empty() {
                *state = BlockState::Free;
                self.with_free.insert(block.piece);
                self.closed.clear(block.piece);
            }
        }
    }

    /// `peer` delivered a block at `now`: it is alive and working through our queue, so every request still
    /// outstanding with it counts its timeout from now. A request times out only when its peer delivered
    /// nothing for the whole timeout, however long the queue (our own download cap may make it slow).
    pub fn on_progress(&mut self, peer: ConnId, now: Instant) {
        self.requested_at.progress(peer, now);
    }

    /// Requests outstanding with every peer.
    pub fn total_outstanding(&self) -> usize {
        self.requested_at.len()
    }

    /// Requests outstanding with `peer`.
    pub fn outstanding(&self, peer: ConnId) -> usize {
        self.requested_at.count_of(peer)
    }

    /// Whether `peer_has` holds a piece we lack.
    pub fn is_interesting(&self, peer_has: &Bitfield) -> bool {
        !self.have.is_full() && holds_one_outside(peer_has, &self.have)
    }

    /// Whether a peer holding `peer_has` has a block we would ask it for now: a piece we lack that nobody
    /// started, or one being assembled with a block nobody was asked for; in endgame, any piece we lack
    /// (an idle peer asks for duplicates). What we tell a peer by interested / not interested.
    ///
    /// Narrower than [`Picker::is_interesting`] on purpose: a peer whose pieces we lack but are fetching
    /// from others, block for block, would leave a slot it was given unused, while the peers waiting for
    /// that slot would ask for its pieces (a flash crowd of 100 showed a quarter of the peers holding a
    /// piece idle this way, their slots given to peers that fetched those pieces elsewhere, with 40
    /// interested peers waiting choked each: bench/RESULTS.md). BEP 3 leaves interest to the downloader;
    /// saying it honestly frees the uploader's slot for one who will use it, on any network. Blocks that go
    /// free again (a reject, a choke, a timeout, a departed peer, a failed hash) make us decide interest
    /// afresh for every peer ([`Picker::release`] is followed by a refill of all), so interest is never
    /// missing where a request could go.
    pub fn wants_from(&self, peer_has: &Bitfield) -> bool {
        if self.in_endgame() {
            return self.is_interesting(peer_has);
        }
        !self.have.is_full() && holds_one_outside(peer_has, &self.closed)
    }

    /// True once every missing piece is being assembled or checked and no block is free: endgame.
    pub fn in_endgame(&self) -> bool {
        let missing = self.piece_count() - self.have.count();
        let active = self.partial.len() + self.hashing.len();
        missing > 0 && missing as usize == active && self.with_free.is_empty()
    }

    /// Choose up to `max` blocks to request from `peer`, which holds `peer_has`, and mark them requested.
    pub fn pick(
        &mut self,
        peer: ConnId,
        peer_has: &Bitfield,
        max: usize,
        now: Instant,
        rng: &mut impl RngCore,
    ) -> Vec<BlockRef> {
        self.pick_suggested(peer, peer_has, &[], max, now, rng)
    }

    /// [`Picker::pick`], starting new pieces from `suggested` first (the pieces `peer` pointed us at with
    /// BEP 6 suggest-piece, oldest first) when it holds them and nobody started them yet. A seed suggests
    /// the pieces it has handed out least, which it knows and we cannot: following it, the peers a seed
    /// serves at once fetch different pieces instead of colliding on the same rarest ones.
    pub fn pick_suggested(
        &mut self,
        peer: ConnId,
        peer_has: &Bitfield,
        suggested: &[u32],
        max: usize,
        now: Instant,
        rng: &mut impl RngCore,
    ) -> Vec<BlockRef> {
        // Pieces stay single-sourced whenever possible, so that a piece failing its hash has one sender to
        // blame: finish our own and abandoned partial pieces first, then start new ones, and only then help
        // with pieces other peers are fetching.
        // A partial piece that others hold too does not go before a rarer new one: a scarce source (the only
        // seed, early on) must be spent on the pieces nobody else can give.
        let mut out = Vec::new();
        self.take_free_blocks(peer, peer_has, max, &mut out, false, true);
        while out.len() < max {
            let next = suggested
                .iter()
                .copied()
                .find(|&i| self.is_new_piece(peer_has, i))
                .or_else(|| self.choose_new_piece(peer_has, rng));
            let Some(piece) = next else {
                break;
            };
            self.start_piece(piece);
            self.take_blocks_of(piece, peer, max, &mut out);
        }
        if out.len() < max {
            self.take_free_blocks(peer, peer_has, max, &mut out, false, false);
        }
        if out.len() < max {
            self.take_free_blocks(peer, peer_has, max, &mut out, true, false);
        }
        // Endgame duplicates go only to a peer with nothing else outstanding, one block at a time, and each
        // block is asked of [`ENDGAME_REQUESTERS`] peers at most: every duplicate that loses the race is
        // wasted, so a peer asks again for a block another is fetching only once it has gone idle.
        if out.is_empty() && self.outstanding(peer) == 0 && self.config.endgame && self.in_endgame()
        {
            self.take_endgame_block(peer, peer_has, now, &mut out);
        }
        for b in &out {
            self.requested_at.insert(peer, *b, now);
        }
        out
    }

    fn take_free_blocks(
        &mut self,
        peer: ConnId,
        peer_has: &Bitfield,
        max: usize,
        out: &mut Vec<BlockRef>,
        share: bool,
        no_rarer_new: bool,
    ) {
        // Pieces this peer already works on first, then partial pieces nobody else is fetching (abandoned by
        // a peer that left or choked us), with `no_rarer_new` only those held by no more peers than the
        // rarest new piece `peer` could start; with `share`, also pieces other peers are fetching. Only
        // pieces with a free block can give one.
        // The rarest new piece is looked for only once a partial piece passed every other test: the scan
        // walks every piece, and with several seeds (availability above 1 everywhere) running it at each
        // request round was 16% of a 1 GiB three-seed leecher's CPU (bench/RESULTS.md).
        let rarest_new = std::cell::OnceCell::new();
        let mut order: Vec<(bool, u32)> = self
            .with_free
            .iter()
            .copied()
            .filter(|&i| peer_has.get(i))
            .map(|i| (!self.peer_works_on(i, peer), i))
            .filter(|&(others, i)| !others || !self.exclusive.contains(&i) || self.untouched(i))
            .filter(|&(others, i)| !others || share || !self.others_fetching(i, peer))
            .filter(|&(others, i)| {
                !others
                    || !no_rarer_new
                    || self.availability(i)
                        <= *rarest_new.get_or_init(|| self.rarest_new_availability(peer_has))
            })
            .collect();
        order.sort();
        for (_, piece) in order {
            if out.len() >= max {
                break;
            }
            self.take_blocks_of(piece, peer, max, out);
        }
    }

    fn others_fetching(&self, piece: u32, peer: ConnId) -> bool {
        self.partial.get(&piece).is_some_and(|p| {
            p.blocks
                .iter()
                .any(|b| matches!(b, BlockState::Requested(ps) if ps.iter().any(|x| *x != peer)))
        })
    }

    fn untouched(&self, piece: u32) -> bool {
        self.partial
            .get(&piece)
            .is_some_and(|p| p.blocks.iter().all(|b| *b == BlockState::Free))
    }

    fn peer_works_on(&self, piece: u32, peer: ConnId) -> bool {
        self.partial.get(&piece).is_some_and(|p| {
            p.blocks.iter().any(|b| match b {
                BlockState::Requested(ps) => ps.contains(&peer),
                BlockState::Received(p) => *p == peer,
                BlockState::Free => false,
            })
        })
    }

    fn take_blocks_of(&mut self, piece: u32, peer: ConnId, max: usize, out: &mut Vec<BlockRef>) {
        let piece_len = self.piece_len(piece);
        let Some(p) = self.partial.get_mut(&piece) else {
            return;
        };
        for (i, state) in p.blocks.iter_mut().enumerate() {
            if out.len() >= max {
                break;
            }
            if *state == BlockState::Free {
                *state = BlockState::Requested(vec![peer]);
                out.push(block_at(piece, i as u32, piece_len));
            }
        }
        self.note_free(piece);
    }

    /// One endgame duplicate for the idle `peer`: the block with the fewest recent requests (younger than
    /// [`ENDGAME_STALE`]), below [`ENDGAME_REQUESTERS`], first in piece order among equals.
    fn take_endgame_block(
        &mut self,
        peer: ConnId,
        peer_has: &Bitfield,
        now: Instant,
        out: &mut Vec<BlockRef>,
    ) {
        let mut best: Option<(usize, BlockRef)> = None;
        for (&piece, p) in &self.partial {
            if !peer_has.get(piece) || self.exclusive.contains(&piece) {
                continue;
            }
            let piece_len = self.piece_len(piece);
            for (i, state) in p.blocks.iter().enumerate() {
                let BlockState::Requested(ps) = state else {
                    continue;
                };
                if ps.contains(&peer) {
                    continue;
                }
                let block = block_at(piece, i as u32, piece_len);
                let recent = ps
                    .iter()
                    .filter(|r| {
                        self.requested_at
                            .at
                            .get(&(**r, block))
                            .is_some_and(|t| now.saturating_since(*t) < ENDGAME_STALE)
                    })
                    .count();
                if recent < ENDGAME_REQUESTERS && best.is_none_or(|(n, _)| recent < n) {
                    best = Some((recent, block));
                }
            }
        }
        if let Some((_, b)) = best {
            if let Some(BlockState::Requested(ps)) = self.block_state_mut(b) {
                ps.push(peer);
                out.push(b);
            }
        }
    }

    /// The availability of the rarest piece `peer_has` that nobody started yet, when rarest-first applies
    /// (else no limit).
    fn rarest_new_availability(&self, peer_has: &Bitfield) -> u32 {
        let rarest_first = self.config.selection == PieceSelection::RarestFirst
            && self.have.count() >= self.config.random_first;
        if !rarest_first {
            return u32::MAX;
        }
        let mut rarest = u32::MAX;
        let count = self.piece_count();
        // What the peer has and we lack, a byte at a time.
        for i in peer_has
            .iter_difference(&self.have)
            .take_while(|&i| i < count)
            .filter(|i| !self.partial.contains_key(i) && !self.hashing.contains_key(i))
        {
            rarest = rarest.min(self.availability(i));
            // A piece `peer` has is held by one peer at least: nothing rarer can follow. Stopping here keeps
            // this scan, run for every request round, from walking every piece (14.7% of a 1 GiB one-to-one
            // leecher's CPU, bench/RESULTS.md).
            if rarest <= 1 {
                break;
            }
        }
        rarest
    }

    /// A piece `peer_has` that we lack and nobody started or is hashing: one a new request may start.
    fn is_new_piece(&self, peer_has: &Bitfield, i: u32) -> bool {
        peer_has.get(i)
            && !self.have.get(i)
            && !self.partial.contains_key(&i)
            && !self.hashing.contains_key(&i)
    }

    fn choose_new_piece(&self, peer_has: &Bitfield, rng: &mut impl RngCore) -> Option<u32> {
        let count = self.piece_count();
        // What the peer has and we lack (a byte at a time), in index order, and nobody started yet.
        let mut eligible = peer_has
            .iter_difference(&self.have)
            .take_while(|&i| i < count)
            .filter(|i| !self.partial.contains_key(i) && !self.hashing.contains_key(i));
        if self.config.selection == PieceSelection::Sequential {
            return eligible.next();
        }
        let random_phase = self.config.selection == PieceSelection::Random
            || self.have.count() < self.config.random_first;
        let mut best: Vec<u32> = Vec::new();
        let mut best_avail = u32::MAX;
        for i in eligible {
            let avail = if random_phase {
                0
            } else {
                self.availability(i)
            };
            if avail < best_avail {
                best_avail = avail;
                best.clear();
            }
            if avail == best_avail {
                best.push(i);
            }
        }
        if best.is_empty() {
            return None;
        }
        let pick = (rng.next_u64() % best.len() as u64) as usize;
        best.get(pick).copied()
    }

    fn start_piece(&mut self, piece: u32) {
        let n = self.piece_len(piece).div_ceil(BLOCK_LENGTH) as usize;
        self.partial.insert(
            piece,
            PartialPiece {
                blocks: vec![BlockState::Free; n],
                received: 0,
            },
        );
        self.note_free(piece);
    }

    fn block_state_mut(&mut self, b: BlockRef) -> Option<&mut BlockState> {
        if !b.begin.is_multiple_of(BLOCK_LENGTH) {
            return None;
        }
        self.partial
            .get_mut(&b.piece)?
            .blocks
            .get_mut((b.begin / BLOCK_LENGTH) as usize)
    }

    /// Record a block that arrived from `peer`. Only exact blocks of a piece being assembled are accepted.
    pub fn on_block(&mut self, peer: ConnId, block: BlockRef) -> BlockOutcome {
        let expected = block_at(
            block.piece,
            block.begin / BLOCK_LENGTH,
            self.piece_len(block.piece),
        );
        if expected != block {
            return BlockOutcome::Unwanted;
        }
        self.requested_at.remove(&(peer, block));
        let Some(state) = self.block_state_mut(block) else {
            return BlockOutcome::Unwanted;
        };
        let cancel = match state {
            BlockState::Received(_) => return BlockOutcome::Unwanted,
            BlockState::Free => Vec::new(),
            BlockState::Requested(ps) => ps.iter().copied().filter(|p| *p != peer).collect(),
        };
        *state = BlockState::Received(peer);
        for other in &cancel {
            self.requested_at.remove(&(*other, block));
        }
        let Some(p) = self.partial.get_mut(&block.piece) else {
            return BlockOutcome::Unwanted;
        };
        p.received += 1;
        let piece_complete = p.received as usize == p.blocks.len();
        if piece_complete {
            let contributors = self.contributors_partial(block.piece);
            self.partial.remove(&block.piece);
            self.hashing.insert(block.piece, contributors);
        }
        self.note_free(block.piece);
        BlockOutcome::Accepted {
            piece_complete,
            cancel,
        }
    }

    /// Connections that delivered blocks of a piece being assembled.
    pub fn contributors_partial(&self, piece: u32) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self
            .partial
            .get(&piece)
            .map(|p| {
                p.blocks
                    .iter()
                    .filter_map(|b| {
                        if let BlockState::Received(c) = b {
                            Some(*c)
                        } else {
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The verifier's verdict on a complete piece: kept when `ok`, otherwise back to missing. Returns the
    /// connections that delivered its blocks.
    pub fn piece_checked(&mut self, piece: u32, ok: bool) -> Vec<ConnId> {
        let contributors = self.hashing.remove(&piece).unwrap_or_default();
        if ok {
            self.have.set(piece);
            self.exclusive.remove(&piece);
        } else if contributors.len() > 1 {
            self.exclusive.insert(piece);
        }
        self.sync_closed(piece);
        contributors
    }

    /// Whether `piece` is complete and waiting for the verifier.
    pub fn is_hashing(&self, piece: u32) -> bool {
        self.hashing.contains_key(&piece)
    }

    /// Forget every piece being assembled and every outstanding request (the disk failed: blocks of those
    /// pieces may never have reached it). They are picked again from scratch later. Pieces already complete
    /// and waiting for the verifier are kept: the verifier reads them back from disk. Returns the number of
    /// received blocks thrown away.
    pub fn abandon_partial(&mut self) -> u32 {
        let dropped = self.partial.values().map(|p| p.received).sum();
        self.partial.clear();
        self.with_free.clear();
        self.requested_at.clear();
        self.closed = self.have.clone();
        for piece in self.hashing.keys() {
            self.closed.set(*piece);
        }
        dropped
    }

    /// Pieces complete and waiting for the verifier, in index order.
    pub fn hashing_pieces(&self) -> Vec<u32> {
        self.hashing.keys().copied().collect()
    }

    /// Mark a piece as held without downloading it (a resume check proved it on disk).
    pub fn mark_have(&mut self, piece: u32) {
        self.partial.remove(&piece);
        self.with_free.remove(&piece);
        self.hashing.remove(&piece);
        self.have.set(piece);
        self.closed.set(piece);
    }

    /// Requests older than `timeout`, released back to the pool and returned for cancelling.
    pub fn expire_requests(&mut self, now: Instant, timeout: Duration) -> Vec<(ConnId, BlockRef)> {
        let old = self.requested_at.expired(now, timeout);
        for (peer, b) in &old {
            self.release(*peer, *b);
        }
        old
    }

    /// The earliest instant at which an outstanding request would time out.
    pub fn next_request_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.requested_at.oldest().map(|t| t + timeout)
    }
}

/// When each outstanding request was sent (or its peer last made progress), indexed both by request and by
/// time: the timer table asks for the oldest after every input, and a scan over every request there was the
/// picker's largest cost in a thousand-peer swarm.
#[derive(Debug, Clone, Default)]
struct RequestTimes {
    at: BTreeMap<(ConnId, BlockRef), Instant>,
    by_time: std::collections::BTreeSet<(Instant, ConnId, BlockRef)>,
}

impl RequestTimes {
    fn insert(&mut self, peer: ConnId, block: BlockRef, now: Instant) {
        if let Some(old) = self.at.insert((peer, block), now) {
            self.by_time.remove(&(old, peer, block));
        }
        self.by_time.insert((now, peer, block));
    }

    fn remove(&mut self, key: &(ConnId, BlockRef)) {
        if let Some(old) = self.at.remove(key) {
            self.by_time.remove(&(old, key.0, key.1));
        }
    }

    fn clear(&mut self) {
        self.at.clear();
        self.by_time.clear();
    }

    fn len(&self) -> usize {
        self.at.len()
    }

    fn count_of(&self, peer: ConnId) -> usize {
        self.at
            .range((peer, BlockRef::MIN)..=(peer, BlockRef::MAX))
            .count()
    }

    /// The blocks outstanding with `peer`, in block order.
    fn blocks_of(&self, peer: ConnId) -> Vec<BlockRef> {
        self.at
            .range((peer, BlockRef::MIN)..=(peer, BlockRef::MAX))
            .map(|((_, b), _)| *b)
            .collect()
    }

    /// Every request of `peer` counts its time from `now` at the earliest.
    fn progress(&mut self, peer: ConnId, now: Instant) {
        for ((_, block), t) in self
            .at
            .range_mut((peer, BlockRef::MIN)..=(peer, BlockRef::MAX))
        {
            if *t < now {
                self.by_time.remove(&(*t, peer, *block));
                self.by_time.insert((now, peer, *block));
                *t = now;
            }
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.by_time.first().map(|(t, _, _)| *t)
    }

    /// Requests at least `timeout` old at `now`, in (peer, block) order.
    fn expired(&self, now: Instant, timeout: Duration) -> Vec<(ConnId, BlockRef)> {
        let mut old: Vec<(ConnId, BlockRef)> = self
            .by_time
            .iter()
            .take_while(|(t, _, _)| now.saturating_since(*t) >= timeout)
            .map(|(_, peer, block)| (*peer, *block))
            .collect();
        old.sort();
        old
    }
}

impl BlockRef {
    const MIN: BlockRef = BlockRef {
        piece: 0,
        begin: 0,
        length: 0,
    };
    const MAX: BlockRef = BlockRef {
        piece: u32::MAX,
        begin: u32::MAX,
        length: u32::MAX,
    };
}

/// The `index`-th block of a piece of length `piece_len`.
fn block_at(piece: u32, index: u32, piece_len: u32) -> BlockRef {
    let begin = index.saturating_mul(BLOCK_LENGTH);
    BlockRef {
        piece,
        begin,
        length: piece_len.saturating_sub(begin).min(BLOCK_LENGTH),
    }
}

/// Whether `peer_has` holds a piece that `mask` does not. Byte by byte when both have the torrent's length
/// (bits past it are zero), else bit by bit.
fn holds_one_outside(peer_has: &Bitfield, mask: &Bitfield) -> bool {
    if peer_has.len() == mask.len() {
        (peer_has.as_bytes().iter())
            .zip(mask.as_bytes())
            .any(|(theirs, masked)| theirs & !masked != 0)
    } else {
        peer_has.iter_ones().any(|i| !mask.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const PL: u32 = 4 * BLOCK_LENGTH;

    fn picker(pieces: u32) -> Picker {
        let total = u64::from(pieces) * u64::from(PL) - 100;
        Picker::new(
            PickerConfig {
                random_first: 0,
                endgame: true,
                selection: PieceSelection::RarestFirst,
            },
            PL,
            total,
            Bitfield::new(pieces),
        )
    }

    fn all(n: u32) -> Bitfield {
        Bitfield::full(n)
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    /// A random walk through every operation that frees or takes blocks, or starts, completes, verifies or
    /// abandons pieces: after each step the index of pieces with a free block is what a scan finds.
    #[test]
    fn the_free_block_index_follows_every_change_like_a_scan() {
        use rand::{Rng, SeedableRng};
        let mut walk = rand::rngs::StdRng::seed_from_u64(11);
        let mut p = picker(12);
        let mut has: Vec<Bitfield> = (0..4).map(|_| Bitfield::new(12)).collect();
        for (peer, h) in has.iter_mut().enumerate() {
            for i in 0..12 {
                if walk.gen_bool(0.7) || peer == 0 {
                    h.set(i);
                }
            }
            p.add_peer_pieces(h);
        }
        let mut out: Vec<(ConnId, BlockRef)> = Vec::new();
        let (mut freed, mut taken) = (0, 0);
        for step in 0..3_000u64 {
            let now = Instant::from_micros(step * 1_000);
            let peer = walk.gen_range(0..4usize);
            let id = peer as ConnId;
            match walk.gen_range(0..10) {
                0..=3 => {
                    let got = p.pick(id, &has[peer], walk.gen_range(1..6), now, &mut rng());
                    taken += got.len();
                    out.extend(got.into_iter().map(|b| (id, b)));
                }
                4..=5 if !out.is_empty() => {
                    let (who, b) = out.swap_remove(walk.gen_range(0..out.len()));
                    if let BlockOutcome::Accepted {
                        piece_complete: true,
                        ..
                    } = p.on_block(who, b)
                    {
                        p.piece_checked(b.piece, walk.gen_bool(0.8));
                    }
                }
                6 if !out.is_empty() => {
                    let (who, b) = out.swap_remove(walk.gen_range(0..out.len()));
                    p.release(who, b);
                    freed += 1;
                }
                7 => {
                    p.remove_peer(id, &has[peer]);
                    p.add_peer_pieces(&has[peer]);
                    out.retain(|(who, _)| *who != id);
                }
                8 if step % 5 == 0 => {
                    p.expire_requests(now, Duration::from_millis(200));
                }
                9 if step % 97 == 0 => {
                    p.abandon_partial();
                    out.clear();
                }
                _ => {}
            }
            out.retain(|(who, b)| p.requested_at.at.contains_key(&(*who, *b)));
            assert!(p.free_index_is_exact(), "step {step}");
            if p.have().is_full() {
                p = picker(12);
                for h in &has {
                    p.add_peer_pieces(h);
                }
                out.clear();
            }
        }
        assert!(freed > 100 && taken > 1_000, "{freed} {taken}");
    }

    #[test]
    fn a_suggested_piece_starts_before_the_rarest_unless_it_is_taken() {
        let mut p = picker(8);
        p.add_peer_pieces(&all(8));
        p.add_peer_pieces(&all(8));
        let mut common = Bitfield::new(8);
        common.set(6);
        p.add_peer_pieces(&common);
        let now = Instant::ZERO;
        // Piece 6 is the most common one, but the seed pointed us at it: it goes first.
        let got = p.pick_suggested(1, &all(8), &[9, 6], 4, now, &mut rng());
        assert!(got.iter().all(|b| b.piece == 6), "{got:?}");
        // Started by connection 1, it is no longer a new piece for connection 2, which picks by rarity.
        let got = p.pick_suggested(2, &all(8), &[6], 4, now, &mut rng());
        assert!(got.iter().all(|b| b.piece != 6), "{got:?}");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn rarest_piece_is_picked_first() {
        let mut p = picker(8);
        p.add_peer_pieces(&all(8));
        p.add_peer_pieces(&all(8));
        let mut rare = Bitfield::new(8);
        rare.set(5);
        p.add_peer_pieces(&rare);
        let mut has = Bitfield::new(8);
        has.set(5);
        has.set(2);
        // Piece 5 is held by three peers, piece 2 by two: 2 is rarer.
        let got = p.pick(9, &has, 1, Instant::ZERO, &mut rng());
        assert_eq!(got[0].piece, 2);
    }

    #[test]
    fn partial_pieces_finish_before_new_ones_start() {
        let mut p = picker(8);
        p.add_peer_pieces(&all(8));
        let first = p.pick(1, &all(8), 2, Instant::ZERO, &mut rng());
        assert!(first.iter().all(|b| b.piece == first[0].piece));
        p.release_all(1);
        let second = p.pick(2, &all(8), 4, Instant::ZERO, &mut rng());
        assert!(
            second.iter().all(|b| b.piece == first[0].piece),
            "{second:?}"
        );
    }

    #[test]
    fn last_block_of_short_last_piece_has_exact_length() {
        let mut p = picker(2);
        let mut has = Bitfield::new(2);
        has.set(1);
        p.add_peer_pieces(&has);
        let got = p.pick(1, &has, 10, Instant::ZERO, &mut rng());
        assert_eq!(got.len(), 4);
        assert_eq!(got[3].length, BLOCK_LENGTH - 100);
        let total: u32 = got.iter().map(|b| b.length).sum();
        assert_eq!(total, p.piece_len(1));
    }

    #[test]
    fn complete_piece_goes_to_hashing_and_failure_reopens_it() {
        let mut p = picker(1);
        let got = p.pick(1, &all(1), 10, Instant::ZERO, &mut rng());
        let mut last = None;
        for b in &got {
            last = Some(p.on_block(1, *b));
        }
        assert_eq!(
            last,
            Some(BlockOutcome::Accepted {
                piece_complete: true,
                cancel: vec![]
            })
        );
        assert!(
            p.pick(2, &all(1), 10, Instant::ZERO, &mut rng()).is_empty(),
            "piece under check is not re-picked"
        );
        assert_eq!(
            p.piece_checked(0, false),
            vec![1],
            "contributors are reported with the verdict"
        );
        assert_eq!(p.pick(2, &all(1), 10, Instant::ZERO, &mut rng()).len(), 4);
    }

    #[test]
    fn piece_failed_by_several_peers_is_refetched_from_one() {
        let mut p = picker(1);
        let a = p.pick(1, &all(1), 2, Instant::ZERO, &mut rng());
        let b = p.pick(2, &all(1), 2, Instant::ZERO, &mut rng());
        for x in &a {
            p.on_block(1, *x);
        }
        for x in &b {
            p.on_block(2, *x);
        }
        assert_eq!(p.piece_checked(0, false), vec![1, 2]);
        assert_eq!(p.pick(1, &all(1), 1, Instant::ZERO, &mut rng()).len(), 1);
        assert!(
            p.pick(2, &all(1), 4, Instant::ZERO, &mut rng()).is_empty(),
            "one source only"
        );
        assert_eq!(p.pick(1, &all(1), 4, Instant::ZERO, &mut rng()).len(), 3);
    }

    #[test]
    fn a_single_source_piece_whose_source_left_goes_whole_to_another_peer() {
        let mut p = picker(1);
        let a = p.pick(1, &all(1), 2, Instant::ZERO, &mut rng());
        let b = p.pick(2, &all(1), 2, Instant::ZERO, &mut rng());
        for x in a.iter().chain(&b) {
            p.on_block(if a.contains(x) { 1 } else { 2 }, *x);
        }
        p.piece_checked(0, false);
        // Peer 3 starts the piece again alone, delivers three blocks and leaves before the fourth.
        let c = p.pick(3, &all(1), 3, Instant::ZERO, &mut rng());
        for x in &c {
            p.on_block(3, *x);
        }
        assert!(p.pick(4, &all(1), 4, Instant::ZERO, &mut rng()).is_empty());
        p.remove_peer(3, &all(1));
        assert_eq!(
            p.pick(4, &all(1), 4, Instant::ZERO, &mut rng()).len(),
            4,
            "peer 4 fetches the whole piece"
        );
    }

    #[test]
    fn lacked_most_counts_the_peers_lacking_the_rarest_piece_a_peer_holds() {
        // Four peers: A holds 0 and 1, B holds 0, C holds 0 and 2, D holds nothing.
        let mut p = picker(3);
        let bits = |ones: &[u32]| {
            let mut b = Bitfield::new(3);
            for &i in ones {
                b.set(i);
            }
            b
        };
        let (a, b, c, d) = (bits(&[0, 1]), bits(&[0]), bits(&[0, 2]), bits(&[]));
        for peer in [&a, &b, &c, &d] {
            p.add_peer_pieces(peer);
        }
        assert_eq!(p.lacked_most(&a, 4), 3, "piece 1: only A holds it");
        assert_eq!(p.lacked_most(&b, 4), 1, "piece 0: D alone lacks it");
        assert_eq!(p.lacked_most(&d, 4), 0, "holds nothing");
        p.add_peer_pieces(&bits(&[0]));
        assert_eq!(p.lacked_most(&b, 5), 1, "a fifth peer holding piece 0");
        p.remove_peer(9, &bits(&[0]));
        p.replace_peer_pieces(&d, &bits(&[0]));
        assert_eq!(p.lacked_most(&b, 4), 0, "everyone holds piece 0 now");
    }

    #[test]
    fn a_peer_whose_pieces_we_fetch_elsewhere_is_wanted_again_when_a_block_frees_or_endgame_starts()
    {
        // Two pieces of four blocks; peer 2 holds only piece 0, peer 1 holds both.
        let mut p = picker(2);
        let mut only0 = Bitfield::new(2);
        only0.set(0);
        p.add_peer_pieces(&all(2));
        p.add_peer_pieces(&only0);
        assert!(p.wants_from(&only0));
        // Peer 1 is asked for every block of piece 0: peer 2 has nothing left to give us.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let taken = p.pick(1, &only0, 4, Instant::ZERO, &mut rng);
        assert_eq!(taken.len(), 4);
        assert!(
            p.is_interesting(&only0),
            "peer 2 still holds a piece we lack"
        );
        assert!(
            !p.wants_from(&only0),
            "but every block of it is asked of peer 1"
        );
        assert!(p.wants_from(&all(2)), "piece 1 is open");
        assert!(p.free_index_is_exact());
        // A rejected block goes back to the pool: peer 2 could give it.
        p.release(1, taken[0]);
        assert!(p.wants_from(&only0));
        assert!(p.free_index_is_exact());
        // Piece 1 asked of peer 1 too, and piece 0's free block as well: endgame, duplicates from anyone.
        let rest = p.pick(1, &all(2), 8, Instant::ZERO, &mut rng);
        assert_eq!(rest.len(), 5);
        assert!(p.in_endgame());
        assert!(
            p.wants_from(&only0),
            "an idle peer 2 would duplicate a block of piece 0"
        );
        assert!(p.free_index_is_exact());
        // Piece 0 arrives and verifies: nothing of peer 2's is missing any more.
        for b in taken.iter().chain(&rest).filter(|b| b.piece == 0) {
            p.on_block(1, *b);
        }
        assert!(p.free_index_is_exact());
        p.piece_checked(0, true);
        assert!(!p.wants_from(&only0));
        assert!(p.free_index_is_exact());
    }

    #[test]
    fn peers_start_their_own_pieces_before_sharing_one() {
        let mut p = picker(4);
        p.add_peer_pieces(&all(4));
        let a = p.pick(1, &all(4), 2, Instant::ZERO, &mut rng());
        let b = p.pick(2, &all(4), 2, Instant::ZERO, &mut rng());
        assert!(
            a.iter().all(|x| b.iter().all(|y| x.piece != y.piece)),
            "{a:?} {b:?}"
        );
        // Once nothing new is left, a peer helps with pieces others are fetching rather than idling.
        let c = p.pick(3, &all(4), 12, Instant::ZERO, &mut rng());
        assert_eq!(c.len(), 12);
        assert!(
            c.iter().all(|x| !a.contains(x) && !b.contains(x)),
            "free blocks first, no duplicates yet"
        );
    }

    #[test]
    fn endgame_duplicates_then_cancels() {
        let mut p = picker(1);
        let a = p.pick(1, &all(1), 10, Instant::ZERO, &mut rng());
        assert_eq!(a.len(), 4);
        assert!(p.in_endgame());
        let b = p.pick(2, &all(1), 10, Instant::ZERO, &mut rng());
        assert_eq!(
            b,
            vec![a[0]],
            "an idle peer duplicates one outstanding block"
        );
        match p.on_block(2, b[0]) {
            BlockOutcome::Accepted { cancel, .. } => assert_eq!(cancel, vec![1]),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            p.on_block(1, b[0]),
            BlockOutcome::Unwanted,
            "the slow copy is wasted"
        );
    }

    #[test]
    fn departed_peer_releases_requests_for_others() {
        let mut p = picker(1);
        p.add_peer_pieces(&all(1));
        let a = p.pick(1, &all(1), 2, Instant::ZERO, &mut rng());
        assert_eq!(p.outstanding(1), 2);
        p.remove_peer(1, &all(1));
        assert_eq!(p.outstanding(1), 0);
        assert_eq!(p.availability(0), 0);
        let b = p.pick(2, &all(1), 4, Instant::ZERO, &mut rng());
        assert!(a.iter().all(|x| b.contains(x)));
    }

    #[test]
    fn requests_time_out_and_return_to_pool() {
        let mut p = picker(1);
        let t0 = Instant::from_micros(1_000);
        p.pick(1, &all(1), 4, t0, &mut rng());
        assert_eq!(
            p.next_request_deadline(Duration::from_secs(5)),
            Some(t0 + Duration::from_secs(5))
        );
        assert!(p
            .expire_requests(t0 + Duration::from_secs(4), Duration::from_secs(5))
            .is_empty());
        assert_eq!(
            p.expire_requests(t0 + Duration::from_secs(5), Duration::from_secs(5))
                .len(),
            4
        );
        assert_eq!(p.outstanding(1), 0);
        assert_eq!(p.pick(2, &all(1), 4, t0, &mut rng()).len(), 4);
    }

    #[test]
    fn a_delivering_peer_never_times_out_however_long_its_queue() {
        let mut p = picker(2);
        let t0 = Instant::from_micros(1_000);
        let timeout = Duration::from_secs(5);
        let got = p.pick(1, &all(2), 8, t0, &mut rng());
        // One block every 3 s: slow (our cap, say), but the peer is alive and its queue moves.
        for (i, b) in got.iter().take(4).enumerate() {
            let now = t0 + Duration::from_secs(3 * (i as u64 + 1));
            p.on_progress(1, now);
            p.on_block(1, *b);
            assert!(p.expire_requests(now, timeout).is_empty(), "at {now:?}");
        }
        assert_eq!(p.outstanding(1), 4);
        // Then nothing for the whole timeout: the rest go back to the pool.
        let silent = t0 + Duration::from_secs(12) + timeout;
        assert_eq!(p.expire_requests(silent, timeout).len(), 4);
    }

    #[test]
    fn endgame_duplicates_go_only_to_idle_peers() {
        let mut p = picker(1);
        let a = p.pick(1, &all(1), 2, Instant::ZERO, &mut rng());
        let b = p.pick(2, &all(1), 1, Instant::ZERO, &mut rng());
        let c = p.pick(3, &all(1), 1, Instant::ZERO, &mut rng());
        assert_eq!((a.len(), b.len(), c.len()), (2, 1, 1));
        assert!(p.in_endgame());
        assert!(
            p.pick(2, &all(1), 4, Instant::ZERO, &mut rng()).is_empty(),
            "a peer with requests of its own outstanding does not duplicate others'"
        );
        p.on_block(3, c[0]);
        let dup = p.pick(3, &all(1), 4, Instant::ZERO, &mut rng());
        assert_eq!(dup.len(), 1, "an idle peer duplicates one block at a time");
        assert!(dup.iter().all(|x| a.contains(x) || b.contains(x)));
    }

    #[test]
    fn endgame_asks_each_block_of_two_recent_sources_one_duplicate_per_idle_peer() {
        // Eight blocks out with peer 1; twenty idle peers join in turn, as a crowd unchoking one by one does.
        let mut p = picker(2);
        let t0 = Instant::from_micros(1_000);
        let mut first = p.pick(1, &all(2), 8, t0, &mut rng());
        assert_eq!(first.len(), 8);
        first.sort();
        assert!(p.in_endgame());
        let mut duplicates = Vec::new();
        for peer in 2..22 {
            duplicates.extend(p.pick(peer, &all(2), 16, t0, &mut rng()));
        }
        duplicates.sort();
        assert_eq!(
            duplicates, first,
            "every outstanding block gets a second source, none a third"
        );
        for peer in 2..10 {
            assert_eq!(p.outstanding(peer), 1, "one duplicate per idle peer");
        }
        assert_eq!(p.outstanding(10), 0, "nothing left to duplicate");
        // Both sources sat on their requests: one more idle peer may ask for each block.
        let later = t0 + ENDGAME_STALE;
        let third = p.pick(10, &all(2), 16, later, &mut rng());
        assert_eq!(third.len(), 1);
        assert!(first.contains(&third[0]));
        assert!(
            p.pick(11, &all(2), 16, later, &mut rng()).len() == 1,
            "another stale block for the next idle peer"
        );
    }

    #[test]
    fn a_rarer_new_piece_goes_before_a_common_abandoned_one() {
        let mut p = picker(4);
        p.add_peer_pieces(&all(4)); // the seed
        let mut common = Bitfield::new(4);
        common.set(0);
        common.set(1);
        common.set(2);
        p.add_peer_pieces(&common); // a leecher holding pieces 0-2
        let mut one = Bitfield::new(4);
        one.set(0);
        let a = p.pick(7, &one, 2, Instant::ZERO, &mut rng());
        assert_eq!(a[0].piece, 0);
        p.release_all(7); // piece 0 is abandoned half-asked
        let got = p.pick(9, &all(4), 4, Instant::ZERO, &mut rng());
        assert!(got.iter().all(|b| b.piece == 3), "{got:?}");
    }

    #[test]
    fn misaligned_or_unknown_blocks_are_unwanted() {
        let mut p = picker(2);
        p.pick(1, &all(2), 1, Instant::ZERO, &mut rng());
        assert_eq!(
            p.on_block(
                1,
                BlockRef {
                    piece: 0,
                    begin: 1,
                    length: 10
                }
            ),
            BlockOutcome::Unwanted
        );
        assert_eq!(
            p.on_block(
                1,
                BlockRef {
                    piece: 99,
                    begin: 0,
                    length: BLOCK_LENGTH
                }
            ),
            BlockOutcome::Unwanted
        );
        assert_eq!(
            p.on_block(
                1,
                BlockRef {
                    piece: 0,
                    begin: 0,
                    length: BLOCK_LENGTH - 1
                }
            ),
            BlockOutcome::Unwanted
        );
    }

    #[test]
    fn sequential_mode_takes_pieces_in_order() {
        let mut p = Picker::new(
            PickerConfig {
                selection: PieceSelection::Sequential,
                ..PickerConfig::default()
            },
            PL,
            u64::from(PL) * 6,
            Bitfield::new(6),
        );
        let mut rare = Bitfield::new(6);
        rare.set(5);
        p.add_peer_pieces(&rare);
        let got = p.pick(1, &all(6), 8, Instant::ZERO, &mut rng());
        assert_eq!(
            got.iter().map(|b| b.piece).collect::<Vec<_>>(),
            vec![0, 0, 0, 0, 1, 1, 1, 1]
        );
    }

    #[test]
    fn random_first_phase_spreads_choices_by_seed() {
        let mut chosen = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let mut p = Picker::new(
                PickerConfig::default(),
                PL,
                u64::from(PL) * 50,
                Bitfield::new(50),
            );
            let got = p.pick(
                1,
                &all(50),
                1,
                Instant::ZERO,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            chosen.insert(got[0].piece);
        }
        assert!(
            chosen.len() > 5,
            "random first pieces vary with the seed: {chosen:?}"
        );
    }
}
