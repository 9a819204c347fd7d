//! Peer wire protocol framing: BEP 3 messages, BEP 6 fast extension and BEP 10 extended framing.
//!
//! [`Decoder`] is incremental: feed it bytes in any chunking and pull [`Frame`]s out. It checks every length
//! prefix against a configurable maximum before buffering a body, validates fixed-size messages as soon as
//! their id byte arrives, and stays poisoned after the first error. Block payloads and bitfields are split
//! out of its buffer as [`Bytes`] without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol string sent in every handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of a handshake on the wire: 1 + 19 + 8 + 20 + 20.
pub const HANDSHAKE_LEN: usize = 68;
/// Default limit on a message's length prefix (one 16 KiB block with header, plus generous slack; also
/// bounds bitfields).
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 16 * 1024 + 13 + 128 * 1024;

const ID_CHOKE: u8 = 0;
const ID_UNCHOKE: u8 = 1;
const ID_INTERESTED: u8 = 2;
const ID_NOT_INTERESTED: u8 = 3;
const ID_HAVE: u8 = 4;
const ID_BITFIELD: u8 = 5;
const ID_REQUEST: u8 = 6;
const ID_PIECE: u8 = 7;
const ID_CANCEL: u8 = 8;
const ID_PORT: u8 = 9;
const ID_SUGGEST: u8 = 0x0D;
const ID_HAVE_ALL: u8 = 0x0E;
const ID_HAVE_NONE: u8 = 0x0F;
const ID_REJECT: u8 = 0x10;
const ID_ALLOWED_FAST: u8 = 0x11;
const ID_EXTENDED: u8 = 20;

/// Byte offset of the protocol string's end (length byte plus string) within a handshake.
const PROTOCOL_END: usize = 1 + PROTOCOL.len();

/// Reserved-bit mask for the fast extension (BEP 6): byte 7, bit 0x04.
const FAST_BYTE: usize = 7;
const FAST_MASK: u8 = 0x04;
/// Reserved-bit mask for the extension protocol (BEP 10): byte 5, bit 0x10.
const EXTENDED_BYTE: usize = 5;
const EXTENDED_MASK: u8 = 0x10;
/// Reserved-bit mask for the DHT (BEP 5): byte 7, bit 0x01.
const DHT_BYTE: usize = 7;
const DHT_MASK: u8 = 0x01;

/// Reserved handshake bytes advertising the fast extension and/or the extension protocol.
pub fn reserved_bits(fast: bool, extended: bool) -> [u8; 8] {
    let mut reserved = [0u8; 8];
    if let Some(b) = reserved.get_mut(FAST_BYTE) {
        *b |= if fast { FAST_MASK } else { 0 };
    }
    if let Some(b) = reserved.get_mut(EXTENDED_BYTE) {
        *b |= if extended { EXTENDED_MASK } else { 0 };
    }
    reserved
}

/// `reserved` with the DHT bit (BEP 5) set: we run a DHT node and answer the PORT message.
pub fn with_dht_bit(mut reserved: [u8; 8]) -> [u8; 8] {
    if let Some(b) = reserved.get_mut(DHT_BYTE) {
        *b |= DHT_MASK;
    }
    reserved
}

/// Errors from decoding the peer wire stream; any of them poisons the [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The handshake does not start with `\x13BitTorrent protocol`.
    #[error("handshake does not carry the BitTorrent protocol string")]
    BadProtocolString,
    /// A length prefix exceeds the decoder's limit.
    #[error("message length {len} exceeds the limit of {max}")]
    MessageTooLong {
        /// The announced length prefix.
        len: u32,
        /// The decoder's limit.
        max: u32,
    },
    /// A message has a size its id does not allow.
    #[error("message id {id} cannot have length {len}")]
    BadLength {
        /// The message id.
        id: u8,
        /// The announced length prefix (id byte included).
        len: u32,
    },
}

/// The 68-byte handshake that opens every peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Reserved extension bits (see [`reserved_bits`]).
    pub reserved: [u8; 8],
    /// The torrent's info hash.
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// The handshake as sent on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let pstrlen = [PROTOCOL.len() as u8];
        let parts: [&[u8]; 5] = [
            &pstrlen,
            PROTOCOL,
            &self.reserved,
            &self.info_hash,
            &self.peer_id,
        ];
        let mut out = [0u8; HANDSHAKE_LEN];
        let src = parts.iter().flat_map(|p| p.iter());
        for (dst, byte) in out.iter_mut().zip(src) {
            *dst = *byte;
        }
        out
    }

    /// Whether the sender supports the fast extension (BEP 6).
    pub fn supports_fast(&self) -> bool {
        self.reserved
            .get(FAST_BYTE)
            .is_some_and(|b| b & FAST_MASK != 0)
    }

    /// Whether the sender supports the extension protocol (BEP 10).
    pub fn supports_extended(&self) -> bool {
        self.reserved
            .get(EXTENDED_BYTE)
            .is_some_and(|b| b & EXTENDED_MASK != 0)
    }

    /// Whether the sender runs a DHT node (BEP 5) and so may send or want a PORT message.
    pub fn supports_dht(&self) -> bool {
        self.reserved
            .get(DHT_BYTE)
            .is_some_and(|b| b & DHT_MASK != 0)
    }

    /// Parses a complete handshake whose protocol string was already checked.
    fn parse(raw: &[u8]) -> Option<Handshake> {
        Some(Handshake {
            reserved: array_at(raw, PROTOCOL_END)?,
            info_hash: array_at(raw, PROTOCOL_END + 8)?,
            peer_id: array_at(raw, PROTOCOL_END + 28)?,
        })
    }
}

/// One peer wire message after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Zero-length message keeping the connection open.
    KeepAlive,
    /// The sender will not serve requests.
    Choke,
    /// The sender will serve requests.
    Unchoke,
    /// The sender wants pieces the receiver has.
    Interested,
    /// The sender wants nothing from the receiver.
    NotInterested,
    /// The sender now has a verified piece.
    Have {
        /// Piece index.
        index: u32,
    },
    /// The sender's pieces, high bit of byte 0 = piece 0 (raw bytes; validate with `Bitfield::from_wire`).
    Bitfield(Bytes),
    /// Ask for a block.
    Request {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// Block length.
        length: u32,
    },
    /// A block of data.
    Piece {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// The block bytes.
        data: Bytes,
    },
    /// Withdraw a request.
    Cancel {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// Block length.
        length: u32,
    },
    /// The sender's DHT port.
    Port(u16),
    /// BEP 6: a piece the receiver might want to fetch.
    SuggestPiece {
        /// Piece index.
        index: u32,
    },
    /// BEP 6: the sender has every piece.
    HaveAll,
    /// BEP 6: the sender has no piece.
    HaveNone,
    /// BEP 6: a request the sender will not serve.
    Reject {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// Block length.
        length: u32,
    },
    /// BEP 6: a piece the receiver may request even while choked.
    AllowedFast {
        /// Piece index.
        index: u32,
    },
    /// BEP 10: an extended message (id 0 = extended handshake).
    Extended {
        /// Extended message id.
        id: u8,
        /// The bencoded (or otherwise extension-defined) payload.
        payload: Bytes,
    },
    /// A message with an id this codec does not know; the node ignores it. Encoding an `Unknown` with a
    /// known id produces that known message on the wire.
    Unknown {
        /// Message id.
        id: u8,
        /// Everything after the id byte.
        payload: Bytes,
    },
}

impl Message {
    /// Appends the message, length prefix included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => put_header(out, ID_CHOKE, 0),
            Message::Unchoke => put_header(out, ID_UNCHOKE, 0),
            Message::Interested => put_header(out, ID_INTERESTED, 0),
            Message::NotInterested => put_header(out, ID_NOT_INTERESTED, 0),
            Message::HaveAll => put_header(out, ID_HAVE_ALL, 0),
            Message::HaveNone => put_header(out, ID_HAVE_NONE, 0),
            Message::Have { index } => put_index(out, ID_HAVE, *index),
            Message::SuggestPiece { index } => put_index(out, ID_SUGGEST, *index),
            Message::AllowedFast { index } => put_index(out, ID_ALLOWED_FAST, *index),
            Message::Request {
                index,
                begin,
                length,
            } => put_block_ref(out, ID_REQUEST, [*index, *begin, *length]),
            Message::Cancel {
                index,
                begin,
                length,
            } => put_block_ref(out, ID_CANCEL, [*index, *begin, *length]),
            Message::Reject {
                index,
                begin,
                length,
            } => put_block_ref(out, ID_REJECT, [*index, *begin, *length]),
            Message::Bitfield(bits) => put_raw(out, ID_BITFIELD, bits),
            Message::Piece { index, begin, data } => {
                encode_piece_header(*index, *begin, wire_len(data.len()), out);
                out.put_slice(data);
            }
            Message::Port(port) => {
                put_header(out, ID_PORT, 2);
                out.put_u16(*port);
            }
            Message::Extended { id, payload } => {
                put_header(out, ID_EXTENDED, wire_len(payload.len()).saturating_add(1));
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::Unknown { id, payload } => put_raw(out, *id, payload),
        }
    }

    /// The message encoded into a fresh buffer.
    pub fn encoded(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// A short lowercase name for logs and traces ("have", "piece", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Message::KeepAlive => "keep_alive",
            Message::Choke => "choke",
            Message::Unchoke => "unchoke",
            Message::Interested => "interested",
            Message::NotInterested => "not_interested",
            Message::Have { .. } => "have",
            Message::Bitfield(_) => "bitfield",
            Message::Request { .. } => "request",
            Message::Piece { .. } => "piece",
            Message::Cancel { .. } => "cancel",
            Message::Port(_) => "port",
            Message::SuggestPiece { .. } => "suggest_piece",
            Message::HaveAll => "have_all",
            Message::HaveNone => "have_none",
            Message::Reject { .. } => "reject",
            Message::AllowedFast { .. } => "allowed_fast",
            Message::Extended { .. } => "extended",
            Message::Unknown { .. } => "unknown",
        }
    }

    /// Bytes the encoded message occupies, length prefix included.
    fn encoded_len(&self) -> usize {
        let body = match self {
            Message::KeepAlive => return 4,
            Message::Bitfield(b) | Message::Unknown { payload: b, .. } => b.len(),
            Message::Piece { data, .. } => 8 + data.len(),
            Message::Extended { payload, .. } => 1 + payload.len(),
            Message::Port(_) => 2,
            Message::Have { .. } | Message::SuggestPiece { .. } | Message::AllowedFast { .. } => 4,
            Message::Request { .. } | Message::Cancel { .. } | Message::Reject { .. } => 12,
            _ => 0,
        };
        body.saturating_add(5)
    }
}

/// Appends the 13-byte prefix of a piece message (length, id 7, index, begin) for a block of `data_len`
/// bytes, so the block itself can be sent from its own buffer without copying.
pub fn encode_piece_header(index: u32, begin: u32, data_len: u32, out: &mut BytesMut) {
    put_header(out, ID_PIECE, data_len.saturating_add(8));
    out.put_u32(index);
    out.put_u32(begin);
}

/// Writes a length prefix covering the id byte plus `body_len` bytes, then the id.
fn put_header(out: &mut BytesMut, id: u8, body_len: u32) {
    out.put_u32(body_len.saturating_add(1));
    out.put_u8(id);
}

/// Writes a message whose body is a single piece index.
fn put_index(out: &mut BytesMut, id: u8, index: u32) {
    put_header(out, id, 4);
    out.put_u32(index);
}

/// Writes a message whose body is (index, begin, length).
fn put_block_ref(out: &mut BytesMut, id: u8, fields: [u32; 3]) {
    put_header(out, id, 12);
    for field in fields {
        out.put_u32(field);
    }
}

/// Writes a message whose body is opaque bytes.
fn put_raw(out: &mut BytesMut, id: u8, body: &[u8]) {
    put_header(out, id, wire_len(body.len()));
    out.put_slice(body);
}

/// A payload length as a wire `u32`; lengths past `u32::MAX` saturate (no peer accepts them anyway).
fn wire_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// `N` bytes of `bytes` starting at `at`, if present.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..)?.first_chunk::<N>().copied()
}

/// The big-endian `u32` at `at`, if present.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    array_at(bytes, at).map(u32::from_be_bytes)
}

/// One decoded unit of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The peer's handshake (only ever first, and only when the decoder expects one).
    Handshake(Handshake),
    /// A message after the handshake.
    Message(Message),
}

/// The size rule for a message id, in length-prefix units (id byte included).
enum SizeRule {
    Exact(u32),
    AtLeast(u32),
}

/// The size rule for `id`; unknown ids accept any size.
fn size_rule(id: u8) -> SizeRule {
    match id {
        ID_CHOKE | ID_UNCHOKE | ID_INTERESTED | ID_NOT_INTERESTED | ID_HAVE_ALL | ID_HAVE_NONE => {
            SizeRule::Exact(1)
        }
        ID_HAVE | ID_SUGGEST | ID_ALLOWED_FAST => SizeRule::Exact(5),
        ID_REQUEST | ID_CANCEL | ID_REJECT => SizeRule::Exact(13),
        ID_PORT => SizeRule::Exact(3),
        ID_PIECE => SizeRule::AtLeast(9),
        ID_EXTENDED => SizeRule::AtLeast(2),
        _ => SizeRule::AtLeast(1),
    }
}

/// Checks a length prefix against the size rule of `id`.
fn check_len(id: u8, len: u32) -> Result<(), WireError> {
    let ok = match size_rule(id) {
        SizeRule::Exact(n) => len == n,
        SizeRule::AtLeast(n) => len >= n,
    };
    if ok {
        Ok(())
    } else {
        Err(WireError::BadLength { id, len })
    }
}

/// Builds a message from its id and body (everything after the id byte); sizes were checked already.
fn parse_message(id: u8, len: u32, mut body: Bytes) -> Result<Message, WireError> {
    let bad = WireError::BadLength { id, len };
    let index = u32_at(&body, 0);
    let block_ref = || Some((u32_at(&body, 0)?, u32_at(&body, 4)?, u32_at(&body, 8)?));
    let msg = match id {
        ID_CHOKE => Message::Choke,
        ID_UNCHOKE => Message::Unchoke,
        ID_INTERESTED => Message::Interested,
        ID_NOT_INTERESTED => Message::NotInterested,
        ID_HAVE_ALL => Message::HaveAll,
        ID_HAVE_NONE => Message::HaveNone,
        ID_HAVE => Message::Have {
            index: index.ok_or(bad)?,
        },
        ID_SUGGEST => Message::SuggestPiece {
            index: index.ok_or(bad)?,
        },
        ID_ALLOWED_FAST => Message::AllowedFast {
            index: index.ok_or(bad)?,
        },
        ID_REQUEST | ID_CANCEL | ID_REJECT => {
            let (index, begin, length) = block_ref().ok_or(bad)?;
            block_ref_message(id, index, begin, length)
        }
        ID_PORT => Message::Port(array_at(&body, 0).map(u16::from_be_bytes).ok_or(bad)?),
        ID_BITFIELD => Message::Bitfield(body),
        ID_PIECE => {
            let (index, begin) = (index.ok_or(bad)?, u32_at(&body, 4).ok_or(bad)?);
            body.advance(8);
            Message::Piece {
                index,
                begin,
                data: body,
            }
        }
        ID_EXTENDED => {
            let ext = *body.first().ok_or(bad)?;
            body.advance(1);
            Message::Extended {
                id: ext,
                payload: body,
            }
        }
        _ => Message::Unknown { id, payload: body },
    };
    Ok(msg)
}

/// The request-shaped message for `id` (request, cancel or reject).
fn block_ref_message(id: u8, index: u32, begin: u32, length: u32) -> Message {
    match id {
        ID_CANCEL => Message::Cancel {
            index,
            begin,
            length,
        },
        ID_REJECT => Message::Reject {
            index,
            begin,
            length,
        },
        _ => Message::Request {
            index,
            begin,
            length,
        },
    }
}

/// Checks that the buffered bytes are a prefix of `\x13BitTorrent protocol` (or contain it whole).
fn check_protocol_prefix(buf: &[u8]) -> Result<(), WireError> {
    let seen = buf.len().min(PROTOCOL_END);
    let pstrlen = PROTOCOL.len() as u8;
    let expected = std::iter::once(&pstrlen).chain(PROTOCOL.iter()).take(seen);
    if buf.iter().take(seen).eq(expected) {
        Ok(())
    } else {
        Err(WireError::BadProtocolString)
    }
}

/// Incremental peer wire decoder: feed bytes in any chunking, pull frames out.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// Received bytes after `buf`'s, not copied: a chunk given to [`Decoder::feed_bytes`] while `buf` was
    /// empty, whose whole messages are cut out of it as they are (never both `buf` and `chunk` non-empty).
    chunk: Bytes,
    expect_handshake: bool,
    max_message_len: u32,
    poisoned: Option<WireError>,
}

impl Decoder {
    /// A decoder that first expects a handshake (when `expect_handshake`), then length-prefixed messages
    /// whose length prefix may not exceed `max_message_len`.
    pub fn new(expect_handshake: bool, max_message_len: u32) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            chunk: Bytes::new(),
            expect_handshake,
            max_message_len,
            poisoned: None,
        }
    }

    /// Appends received bytes. Ignored once the decoder is poisoned.
    pub fn feed(&mut self, data: &[u8]) {
        if self.poisoned.is_none() {
            self.spill();
            self.buf.extend_from_slice(data);
        }
    }

    /// [`Decoder::feed`] of shared bytes: while no partial message is buffered, the messages `data` holds
    /// whole are cut out of it without a copy (a PIECE's block is a slice of what was received); only a
    /// partial message is copied, to wait for the rest. The frames are those `feed` gives.
    pub fn feed_bytes(&mut self, data: Bytes) {
        if self.poisoned.is_some() {
            return;
        }
        if self.buf.is_empty() && self.chunk.is_empty() {
            self.chunk = data;
        } else {
            self.spill();
            self.buf.extend_from_slice(&data);
        }
    }

    /// Move the uncopied chunk into the buffer (behind what is there: nothing, by the invariant).
    fn spill(&mut self) {
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. After an error the decoder is
    /// poisoned: its buffer is dropped and every later call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if let Some(err) = self.poisoned {
            return Err(err);
        }
        let result = if self.expect_handshake {
            self.spill();
            self.next_handshake().map(|h| h.map(Frame::Handshake))
        } else {
            self.next_message().map(|m| m.map(Frame::Message))
        };
        if let Err(err) = result {
            self.poisoned = Some(err);
            self.buf = BytesMut::new();
            self.chunk = Bytes::new();
        }
        result
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.chunk.len()
    }

    /// Decodes the handshake once all 68 bytes are in, rejecting a bad protocol string early.
    fn next_handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        check_protocol_prefix(&self.buf)?;
        if self.buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let raw = self.buf.split_to(HANDSHAKE_LEN);
        let handshake = Handshake::parse(&raw).ok_or(WireError::BadProtocolString)?;
        self.expect_handshake = false;
        Ok(Some(handshake))
    }

    /// Decodes one length-prefixed message, checking its length before waiting for the body.
    fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if !self.chunk.is_empty() {
            // `buf` is empty: the chunk's first bytes are the stream's.
            match self.head(&self.chunk)? {
                Head::KeepAlive => {
                    self.chunk.advance(4);
                    return Ok(Some(Message::KeepAlive));
                }
                Head::Whole { id, len, body_len } => {
                    self.chunk.advance(5);
                    let body = self.chunk.split_to(body_len);
                    return parse_message(id, len, body).map(Some);
                }
                Head::Partial(_) => self.spill(),
            }
        }
        match self.head(&self.buf)? {
            Head::Partial(total) => {
                if let Some(total) = total {
                    self.buf.reserve(total - self.buf.len());
                }
                Ok(None)
            }
            Head::KeepAlive => {
                self.buf.advance(4);
                Ok(Some(Message::KeepAlive))
            }
            Head::Whole { id, len, body_len } => {
                self.buf.advance(5);
                let body = self.buf.split_to(body_len).freeze();
                parse_message(id, len, body).map(Some)
            }
        }
    }

    /// What the first bytes of a stream of messages hold, checked (the prefix's limit, the id's length).
    fn head(&self, bytes: &[u8]) -> Result<Head, WireError> {
        let Some(len) = u32_at(bytes, 0) else {
            return Ok(Head::Partial(None));
        };
        if len == 0 {
            return Ok(Head::KeepAlive);
        }
        let too_long = WireError::MessageTooLong {
            len,
            max: self.max_message_len,
        };
        if len > self.max_message_len {
            return Err(too_long);
        }
        let Some(&id) = bytes.get(4) else {
            return Ok(Head::Partial(None));
        };
        check_len(id, len)?;
        let body_len = usize::try_from(len - 1).map_err(|_| too_long)?;
        let total = body_len.checked_add(5).ok_or(too_long)?;
        if bytes.len() < total {
            return Ok(Head::Partial(Some(total)));
        }
        Ok(Head::Whole { id, len, body_len })
    }
}

/// The first message of a stream, as [`Decoder::head`] finds it.
enum Head {
    /// Not all there yet; the whole message's length once its prefix and id are in.
    Partial(Option<usize>),
    /// A keep-alive (a zero length prefix).
    KeepAlive,
    /// A whole message: its id, its length prefix and its body's length.
    Whole { id: u8, len: u32, body_len: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    fn handshake() -> Handshake {
        Handshake {
            reserved: reserved_bits(true, true),
            info_hash: [0xAB; 20],
            peer_id: *b"-EJ0001-abcdefghijkl",
        }
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have { index: 0xDEAD_BEEF },
            Message::Bitfield(Bytes::from_static(&[0b1010_0000, 0xFF, 0x01])),
            Message::Bitfield(Bytes::new()),
            Message::Request {
                index: 1,
                begin: 16384,
                length: 16384,
            },
            Message::Piece {
                index: 2,
                begin: 32768,
                data: Bytes::from(vec![7u8; 1000]),
            },
            Message::Piece {
                index: 3,
                begin: 0,
                data: Bytes::new(),
            },
            Message::Cancel {
                index: 4,
                begin: 5,
                length: 6,
            },
            Message::Port(6881),
            Message::SuggestPiece { index: 9 },
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject {
                index: 10,
                begin: 11,
                length: 12,
            },
            Message::AllowedFast { index: 13 },
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"d1:md6:ut_pexi1eee"),
            },
            Message::Extended {
                id: 3,
                payload: Bytes::new(),
            },
            Message::Unknown {
                id: 0x42,
                payload: Bytes::from_static(b"whatever"),
            },
            Message::Unknown {
                id: 0xFF,
                payload: Bytes::new(),
            },
        ]
    }

    /// The handshake followed by every message, as one byte string.
    fn conversation() -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(&handshake().encode());
        for msg in all_messages() {
            msg.encode(&mut out);
        }
        out.to_vec()
    }

    /// Drains every frame currently decodable.
    fn drain(dec: &mut Decoder, frames: &mut Vec<Frame>) -> Result<(), WireError> {
        while let Some(frame) = dec.next_frame()? {
            frames.push(frame);
        }
        Ok(())
    }

    fn expected_frames() -> Vec<Frame> {
        let mut frames = vec![Frame::Handshake(handshake())];
        frames.extend(all_messages().into_iter().map(Frame::Message));
        frames
    }

    fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, WireError> {
        let mut dec = Decoder::new(false, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(bytes);
        dec.next_frame()
    }

    #[test]
    fn every_message_round_trips() {
        for msg in all_messages() {
            let wire = msg.encoded();
            let mut dec = Decoder::new(false, DEFAULT_MAX_MESSAGE_LEN);
            dec.feed(&wire);
            assert_eq!(
                dec.next_frame(),
                Ok(Some(Frame::Message(msg.clone()))),
                "{}",
                msg.name()
            );
            assert_eq!(dec.buffered(), 0, "{} left bytes behind", msg.name());
            assert_eq!(dec.next_frame(), Ok(None));
        }
    }

    #[test]
    fn encodings_match_bep3_bytes() {
        assert_eq!(&Message::KeepAlive.encoded()[..], &[0, 0, 0, 0]);
        assert_eq!(&Message::Interested.encoded()[..], &[0, 0, 0, 1, 2]);
        assert_eq!(
            &Message::Have { index: 258 }.encoded()[..],
            &[0, 0, 0, 5, 4, 0, 0, 1, 2]
        );
        assert_eq!(
            &Message::Port(0x1AE1).encoded()[..],
            &[0, 0, 0, 3, 9, 0x1A, 0xE1]
        );
        assert_eq!(&Message::HaveAll.encoded()[..], &[0, 0, 0, 1, 0x0E]);
        let ext = Message::Extended {
            id: 1,
            payload: Bytes::from_static(b"de"),
        }
        .encoded();
        assert_eq!(&ext[..], &[0, 0, 0, 4, 20, 1, b'd', b'e']);
        let req = Message::Reject {
            index: 1,
            begin: 2,
            length: 3,
        }
        .encoded();
        assert_eq!(
            &req[..],
            &[0, 0, 0, 13, 0x10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
        );
    }

    #[test]
    fn piece_header_prefixes_the_full_encoding() {
        let data = Bytes::from_static(b"block bytes");
        let full = Message::Piece {
            index: 5,
            begin: 6,
            data: data.clone(),
        }
        .encoded();
        let mut header = BytesMut::new();
        encode_piece_header(5, 6, data.len() as u32, &mut header);
        assert_eq!(header.len(), 13);
        assert_eq!(&full[..13], &header[..]);
        assert_eq!(&full[13..], &data[..]);
    }

    #[test]
    fn handshake_encoding_and_flags() {
        let hs = handshake();
        let wire = hs.encode();
        assert_eq!(wire[0], 19);
        assert_eq!(&wire[1..20], PROTOCOL);
        assert_eq!(&wire[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(&wire[28..48], &[0xAB; 20]);
        assert_eq!(&wire[48..], b"-EJ0001-abcdefghijkl");
        assert!(hs.supports_fast() && hs.supports_extended());
        let plain = Handshake {
            reserved: reserved_bits(false, false),
            ..hs.clone()
        };
        assert!(!plain.supports_fast() && !plain.supports_extended());
        let fast_only = Handshake {
            reserved: reserved_bits(true, false),
            ..hs.clone()
        };
        assert!(fast_only.supports_fast() && !fast_only.supports_extended());
        assert!(!hs.supports_dht());
        let dht = Handshake {
            reserved: with_dht_bit(reserved_bits(true, true)),
            ..hs
        };
        assert_eq!(&dht.encode()[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        assert!(dht.supports_dht() && dht.supports_fast() && dht.supports_extended());
    }

    #[test]
    fn handshake_then_messages_decode() {
        let mut dec = Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&conversation());
        let mut frames = Vec::new();
        assert_eq!(drain(&mut dec, &mut frames), Ok(()));
        assert_eq!(frames, expected_frames());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn one_byte_at_a_time_decodes_identically() {
        let wire = conversation();
        let mut dec = Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN);
        let mut frames = Vec::new();
        for byte in &wire {
            dec.feed(std::slice::from_ref(byte));
            assert_eq!(drain(&mut dec, &mut frames), Ok(()));
        }
        assert_eq!(frames, expected_frames());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn random_chunks_decode_identically() {
        let wire = conversation();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
        for _round in 0..200 {
            let mut dec = Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN);
            let mut frames = Vec::new();
            let mut rest: &[u8] = &wire;
            while !rest.is_empty() {
                let n = (rng.next_u32() as usize % 300 + 1).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                // Copied or shared, as it comes: the frames are the same.
                if rng.next_u32().is_multiple_of(2) {
                    dec.feed(chunk);
                } else {
                    dec.feed_bytes(Bytes::copy_from_slice(chunk));
                }
                rest = tail;
                // Sometimes let bytes pile up before decoding.
                if rng.next_u32() % 3 != 0 {
                    assert_eq!(drain(&mut dec, &mut frames), Ok(()));
                }
            }
            assert_eq!(drain(&mut dec, &mut frames), Ok(()));
            assert_eq!(frames, expected_frames());
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn keep_alive_alone_and_between_messages() {
        let mut dec = Decoder::new(false, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&[0, 0, 0]);
        assert_eq!(dec.next_frame(), Ok(None));
        dec.feed(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(
            dec.next_frame(),
            Ok(Some(Frame::Message(Message::KeepAlive)))
        );
        assert_eq!(
            dec.next_frame(),
            Ok(Some(Frame::Message(Message::KeepAlive)))
        );
        assert_eq!(dec.next_frame(), Ok(Some(Frame::Message(Message::Unchoke))));
        assert_eq!(dec.next_frame(), Ok(None));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn oversize_length_fails_before_buffering_body() {
        let mut dec = Decoder::new(false, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let err = WireError::MessageTooLong {
            len: u32::MAX,
            max: DEFAULT_MAX_MESSAGE_LEN,
        };
        assert_eq!(dec.next_frame(), Err(err));
        assert_eq!(dec.buffered(), 0);
        assert!(
            dec.buf.capacity() < 1024,
            "no allocation for the announced body"
        );
        // Exactly at the limit is fine; one past it is not, even before the id byte arrives.
        let max = 100;
        let mut dec = Decoder::new(false, max);
        dec.feed(&Message::Bitfield(Bytes::from(vec![0u8; 99])).encoded());
        assert!(
            matches!(dec.next_frame(), Ok(Some(Frame::Message(Message::Bitfield(b)))) if b.len() == 99)
        );
        dec.feed(&101u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(WireError::MessageTooLong { len: 101, max })
        );
    }

    #[test]
    fn pending_body_reserves_only_up_to_the_limit() {
        let mut dec = Decoder::new(false, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&[0, 0, 0x40, 0x09, ID_PIECE]);
        assert_eq!(dec.next_frame(), Ok(None));
        let cap = dec.buf.capacity();
        assert!(
            cap >= 0x4009 + 4 && cap <= 2 * (DEFAULT_MAX_MESSAGE_LEN as usize),
            "cap {cap}"
        );
    }

    #[test]
    fn wrong_fixed_lengths_name_the_id() {
        let cases: &[(u8, u32)] = &[
            (ID_CHOKE, 2),
            (ID_UNCHOKE, 5),
            (ID_INTERESTED, 3),
            (ID_NOT_INTERESTED, 2),
            (ID_HAVE, 4),
            (ID_HAVE, 6),
            (ID_REQUEST, 12),
            (ID_REQUEST, 17),
            (ID_PIECE, 8),
            (ID_PIECE, 1),
            (ID_CANCEL, 14),
            (ID_PORT, 5),
            (ID_SUGGEST, 1),
            (ID_HAVE_ALL, 5),
            (ID_HAVE_NONE, 2),
            (ID_REJECT, 1),
            (ID_ALLOWED_FAST, 9),
            (ID_EXTENDED, 1),
        ];
        for &(id, len) in cases {
            // Only the length prefix and the id: the error must not wait for the body.
            let mut head = len.to_be_bytes().to_vec();
            head.push(id);
            assert_eq!(
                decode_one(&head),
                Err(WireError::BadLength { id, len }),
                "id {id} len {len}"
            );
        }
    }

    #[test]
    fn unknown_ids_accept_any_length() {
        let frame = decode_one(&[0, 0, 0, 3, 0x63, 1, 2]);
        let payload = Bytes::from_static(&[1, 2]);
        assert_eq!(
            frame,
            Ok(Some(Frame::Message(Message::Unknown { id: 0x63, payload })))
        );
    }

    #[test]
    fn bad_protocol_string_is_rejected_early() {
        let mut dec = Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&[19, b'B', b'i']);
        assert_eq!(dec.next_frame(), Ok(None));
        dec.feed(b"X");
        assert_eq!(dec.next_frame(), Err(WireError::BadProtocolString));

        let mut dec = Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&[18]);
        assert_eq!(dec.next_frame(), Err(WireError::BadProtocolString));

        let mut wire = handshake().encode();
        wire[19] = b'X';
        let mut dec = Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&wire);
        assert_eq!(dec.next_frame(), Err(WireError::BadProtocolString));
    }

    #[test]
    fn handshake_waits_for_all_68_bytes() {
        let wire = handshake().encode();
        let mut dec = Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&wire[..67]);
        assert_eq!(dec.next_frame(), Ok(None));
        dec.feed(&wire[67..]);
        assert_eq!(dec.next_frame(), Ok(Some(Frame::Handshake(handshake()))));
        // A second handshake is not expected: it now reads as a length prefix.
        dec.feed(&wire);
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn errors_poison_the_decoder() {
        let mut dec = Decoder::new(false, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&[0, 0, 0, 2, ID_HAVE]);
        let err = WireError::BadLength {
            id: ID_HAVE,
            len: 2,
        };
        assert_eq!(dec.next_frame(), Err(err));
        dec.feed(&Message::Choke.encoded());
        assert_eq!(dec.buffered(), 0, "poisoned decoder drops input");
        assert_eq!(dec.next_frame(), Err(err));
        assert_eq!(dec.next_frame(), Err(err));
    }

    /// Whether `inner` lies entirely inside the `len` bytes of memory starting at address `base`.
    fn points_into(inner: &[u8], base: usize, len: usize) -> bool {
        let p = inner.as_ptr() as usize;
        p >= base && p + inner.len() <= base + len
    }

    #[test]
    fn piece_and_bitfield_payloads_are_zero_copy() {
        let mut wire = BytesMut::new();
        Message::Bitfield(Bytes::from(vec![0xF0; 64])).encode(&mut wire);
        Message::Piece {
            index: 1,
            begin: 0,
            data: Bytes::from(vec![9u8; 16384]),
        }
        .encode(&mut wire);
        Message::Extended {
            id: 2,
            payload: Bytes::from(vec![3u8; 40]),
        }
        .encode(&mut wire);
        let mut dec = Decoder::new(false, DEFAULT_MAX_MESSAGE_LEN);
        dec.feed(&wire);
        // The decoder's buffer before anything is split out of it, and a copy of it for contrast.
        let (base, len) = (dec.buf.as_ptr() as usize, dec.buf.len());
        let copy = dec.buf.to_vec();
        let bits = match dec.next_frame() {
            Ok(Some(Frame::Message(Message::Bitfield(b)))) => b,
            other => panic!("expected bitfield, got {other:?}"),
        };
        let data = match dec.next_frame() {
            Ok(Some(Frame::Message(Message::Piece { data, .. }))) => data,
            other => panic!("expected piece, got {other:?}"),
        };
        let payload = match dec.next_frame() {
            Ok(Some(Frame::Message(Message::Extended { payload, .. }))) => payload,
            other => panic!("expected extended, got {other:?}"),
        };
        assert!(points_into(&bits, base, len), "bitfield was copied");
        assert!(points_into(&data, base, len), "piece data was copied");
        assert!(
            points_into(&payload, base, len),
            "extended payload was copied"
        );
        assert_eq!(bits.as_ptr() as usize, base + 5);
        assert_eq!(data.as_ptr() as usize, base + 4 + 65 + 13);
        assert!(
            !points_into(&data, copy.as_ptr() as usize, copy.len()),
            "a copy is detected"
        );
        assert_eq!(&data[..], &[9u8; 16384][..]);
        assert_eq!(&copy[4 + 65 + 13..4 + 65 + 13 + 16384], &data[..]);
    }

    #[test]
    fn names_are_distinct_and_lowercase() {
        let mut names: Vec<&str> = all_messages().iter().map(Message::name).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert_eq!(Message::Have { index: 1 }.name(), "have");
        assert_eq!(
            Message::Piece {
                index: 1,
                begin: 0,
                data: Bytes::new()
            }
            .name(),
            "piece"
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 18, "one name per variant");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(0xF022);
        for round in 0..2000u32 {
            let expect_handshake = round % 2 == 0;
            let max = 1 + rng.next_u32() % 4096;
            let mut dec = Decoder::new(expect_handshake, max);
            let mut bytes = vec![0u8; (rng.next_u32() % 512) as usize];
            rng.fill_bytes(&mut bytes);
            fuzz_feed(&mut dec, &bytes, &mut rng);
        }
    }

    #[test]
    fn mutated_conversations_never_panic() {
        let wire = conversation();
        let mut rng = ChaCha8Rng::seed_from_u64(0xBAD);
        for _ in 0..1000 {
            let mut bytes = wire.clone();
            for _ in 0..1 + rng.next_u32() % 4 {
                let at = rng.next_u32() as usize % bytes.len();
                if let Some(b) = bytes.get_mut(at) {
                    *b = rng.next_u32() as u8;
                }
            }
            let mut dec = Decoder::new(true, 2048);
            fuzz_feed(&mut dec, &bytes, &mut rng);
        }
    }

    /// Feeds `bytes` in random chunks, decoding all the way; checks that errors stick.
    fn fuzz_feed(dec: &mut Decoder, bytes: &[u8], rng: &mut ChaCha8Rng) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = (rng.next_u32() as usize % 64 + 1).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            if rng.next_u32().is_multiple_of(2) {
                dec.feed(chunk);
            } else {
                dec.feed_bytes(Bytes::copy_from_slice(chunk));
            }
            rest = tail;
            let mut frames = Vec::new();
            if let Err(err) = drain(dec, &mut frames) {
                assert_eq!(dec.next_frame(), Err(err));
                assert_eq!(dec.buffered(), 0);
                return;
            }
        }
    }
}
