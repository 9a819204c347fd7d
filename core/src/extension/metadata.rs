//! `ut_metadata` (BEP 9): the info dictionary of a torrent, sent between peers in 16 KiB pieces.
//!
//! A message is a bencoded dictionary (`msg_type`, `piece`, and for data `total_size`), followed for data by
//! the piece's bytes. [`MetadataMsg::parse`] checks every number against [`LIMITS`] and the piece's length
//! against the one its index implies before keeping anything. [`MetadataAssembly`] collects the pieces of one
//! torrent's metadata, remembers who sent each, and accepts the whole only when its SHA-1 is the info hash;
//! otherwise it starts over and names the senders, so that the caller can penalise them.

use crate::bencode::{self, Value};
use crate::metainfo::InfoHash;
use bytes::Bytes;
use std::collections::BTreeMap;

/// The name under which peers advertise the extension in the BEP 10 handshake.
pub const NAME: &str = "ut_metadata";
/// Size of every metadata piece but the last.
pub const PIECE_LEN: usize = 16 * 1024;

/// Limits on what a `ut_metadata` message may claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Largest info dictionary accepted (`total_size`, and the handshake's `metadata_size`).
    pub max_metadata_size: usize,
    /// Longest bencoded header before a data piece's bytes.
    pub max_header_len: usize,
}

/// The limits [`MetadataMsg::parse`] and [`MetadataAssembly::new`] apply.
pub const LIMITS: MetadataLimits = MetadataLimits {
    max_metadata_size: 8 * 1024 * 1024,
    max_header_len: 256,
};

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

/// One `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg {
    /// Ask for a piece.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// A piece of the info dictionary.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole info dictionary.
        total_size: u32,
        /// The piece's bytes ([`PIECE_LEN`], or less for the last piece).
        data: Bytes,
    },
    /// The sender will not send this piece.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

/// Why a `ut_metadata` payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The header is not bencode.
    #[error("ut_metadata header is not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// The header is not a dictionary, or is longer than [`MetadataLimits::max_header_len`].
    #[error("ut_metadata header is not a dictionary of at most {} bytes", LIMITS.max_header_len)]
    BadHeader,
    /// A required key is missing or not a non-negative integer.
    #[error("ut_metadata field '{0}' is missing or not a non-negative integer")]
    BadField(&'static str),
    /// `msg_type` is not 0, 1 or 2.
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownType(i64),
    /// `total_size` is zero or above [`MetadataLimits::max_metadata_size`].
    #[error("metadata size {0} is zero or above the limit")]
    BadTotalSize(u64),
    /// The piece index is past the last piece of `total_size`.
    #[error("metadata piece {piece} is past the last piece ({pieces} in all)")]
    PieceOutOfRange {
        /// The index given.
        piece: u32,
        /// How many pieces the metadata has.
        pieces: u32,
    },
    /// The data's length is not the one its index implies.
    #[error("metadata piece {piece} has {len} bytes, {want} expected")]
    BadPieceLength {
        /// The index given.
        piece: u32,
        /// Bytes received.
        len: usize,
        /// Bytes the piece must have.
        want: usize,
    },
    /// A request or reject carries bytes after its header.
    #[error("ut_metadata request or reject has trailing bytes")]
    TrailingData,
}

/// Pieces in metadata of `total_size` bytes.
pub fn piece_count(total_size: usize) -> usize {
    total_size.div_ceil(PIECE_LEN)
}

/// Length of piece `piece` of metadata of `total_size` bytes, `None` past the end.
pub fn piece_len(total_size: usize, piece: usize) -> Option<usize> {
    let start = piece.checked_mul(PIECE_LEN)?;
    (start < total_size).then(|| (total_size - start).min(PIECE_LEN))
}

impl MetadataMsg {
    /// One line for a trace: `request piece 0`, `data piece 1 (9291 bytes of 25675)`, `reject piece 0`.
    pub fn describe(&self) -> String {
        match self {
            MetadataMsg::Request { piece } => format!("request piece {piece}"),
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => format!("data piece {piece} ({} bytes of {total_size})", data.len()),
            MetadataMsg::Reject { piece } => format!("reject piece {piece}"),
        }
    }

    /// The piece this message is about.
    pub fn piece(&self) -> u32 {
        match self {
            MetadataMsg::Request { piece }
            | MetadataMsg::Data { piece, .. }
            | MetadataMsg::Reject { piece } => *piece,
        }
    }

    /// Encode as the payload of an extended message.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, total, data) = match self {
            MetadataMsg::Request { .. } => (MSG_REQUEST, None, &[][..]),
            MetadataMsg::Data {
                total_size, data, ..
            } => (MSG_DATA, Some(*total_size), &data[..]),
            MetadataMsg::Reject { .. } => (MSG_REJECT, None, &[][..]),
        };
        let mut dict = BTreeMap::new();
        dict.insert(b"msg_type".to_vec(), Value::Int(kind));
        dict.insert(b"piece".to_vec(), Value::Int(i64::from(self.piece())));
        if let Some(total) = total {
            dict.insert(b"total_size".to_vec(), Value::Int(i64::from(total)));
        }
        let mut out = bencode::encode(&Value::Dict(dict));
        out.extend_from_slice(data);
        out
    }

    /// Parse the payload of an extended message.
    pub fn parse(payload: &[u8]) -> Result<MetadataMsg, MetadataError> {
        let head = payload
            .get(..payload.len().min(LIMITS.max_header_len))
            .unwrap_or(payload);
        // The header is the first bencoded value; a data piece's bytes follow it.
        let (value, used) = match bencode::decode_prefix(head) {
            Ok(ok) => ok,
            // A header still unfinished at the limit is too long, whatever the decoder made of the cut.
            Err(_) if payload.len() > LIMITS.max_header_len => {
                return Err(MetadataError::BadHeader)
            }
            Err(e) => return Err(e.into()),
        };
        let dict = value.as_dict().ok_or(MetadataError::BadHeader)?;
        let field = |name: &'static str| {
            dict.get(name.as_bytes())
                .and_then(Value::as_int)
                .filter(|n| *n >= 0)
                .ok_or(MetadataError::BadField(name))
        };
        let kind = dict
            .get(b"msg_type".as_slice())
            .and_then(Value::as_int)
            .ok_or(MetadataError::BadField("msg_type"))?;
        let piece = u32::try_from(field("piece")?).map_err(|_| MetadataError::BadField("piece"))?;
        let rest = payload.get(used..).unwrap_or_default();
        match kind {
            MSG_REQUEST | MSG_REJECT => {
                if !rest.is_empty() {
                    return Err(MetadataError::TrailingData);
                }
                Ok(if kind == MSG_REQUEST {
                    MetadataMsg::Request { piece }
                } else {
                    MetadataMsg::Reject { piece }
                })
            }
            MSG_DATA => {
                let total = field("total_size")?;
                let total_size = u32::try_from(total)
                    .ok()
                    .filter(|t| *t > 0 && *t as usize <= LIMITS.max_metadata_size)
                    .ok_or(MetadataError::BadTotalSize(total.unsigned_abs()))?;
                let pieces = piece_count(total_size as usize);
                let want = piece_len(total_size as usize, piece as usize).ok_or(
                    MetadataError::PieceOutOfRange {
                        piece,
                        pieces: pieces as u32,
                    },
                )?;
                if rest.len() != want {
                    return Err(MetadataError::BadPieceLength {
                        piece,
                        len: rest.len(),
                        want,
                    });
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data: Bytes::copy_from_slice(rest),
                })
            }
            other => Err(MetadataError::UnknownType(other)),
        }
    }
}

/// What [`MetadataAssembly::insert`] made of a piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled<P> {
    /// Stored; more pieces are missing.
    Pending,
    /// Not for this assembly (wrong size, index or length) or already held: ignored.
    Ignored,
    /// Every piece is in and the whole hashes to the info hash: the raw info dictionary.
    Complete(Bytes),
    /// Every piece is in but the whole does not hash to the info hash: all pieces were discarded; these
    /// senders contributed to the bad set.
    HashMismatch(Vec<P>),
}

/// The pieces of one torrent's metadata gathered so far, with who sent each.
#[derive(Debug, Clone)]
pub struct MetadataAssembly<P> {
    info_hash: InfoHash,
    total_size: usize,
    pieces: Vec<Option<(Bytes, P)>>,
}

impl<P: Clone + Ord> MetadataAssembly<P> {
    /// Start assembling metadata of `total_size` bytes (from a peer's handshake); `None` if the size is
    /// zero or above the limit.
    pub fn new(info_hash: InfoHash, total_size: usize) -> Option<MetadataAssembly<P>> {
        if total_size == 0 || total_size > LIMITS.max_metadata_size {
            return None;
        }
        Some(MetadataAssembly {
            info_hash,
            total_size,
            pieces: vec![None; piece_count(total_size)],
        })
    }

    /// Size of the metadata being assembled.
    pub fn total_size(&self) -> usize {
        self.total_size
    }

    /// The lowest piece not yet held that is not in `skip` (pieces already asked of someone).
    pub fn next_missing(&self, skip: impl Fn(u32) -> bool) -> Option<u32> {
        (0..self.pieces.len())
            .filter(|i| self.pieces.get(*i).is_some_and(Option::is_none))
            .filter_map(|i| u32::try_from(i).ok())
            .find(|i| !skip(*i))
    }

    /// Store a data piece received from `from`.
    pub fn insert(&mut self, from: P, piece: u32, total_size: u32, data: Bytes) -> Assembled<P> {
        if total_size as usize != self.total_size
            || piece_len(self.total_size, piece as usize) != Some(data.len())
        {
            return Assembled::Ignored;
        }
        match self.pieces.get_mut(piece as usize) {
            Some(slot @ None) => *slot = Some((data, from)),
            _ => return Assembled::Ignored,
        }
        if self.pieces.iter().any(Option::is_none) {
            return Assembled::Pending;
        }
        let mut whole = Vec::with_capacity(self.total_size);
        let mut senders = Vec::new();
        for (data, from) in self.pieces.iter_mut().filter_map(Option::take) {
            whole.extend_from_slice(&data);
            senders.push(from);
        }
        if InfoHash::of(&whole) == self.info_hash {
            Assembled::Complete(Bytes::from(whole))
        } else {
            senders.sort();
            senders.dedup();
            Assembled::HashMismatch(senders)
        }
    }
}

/// Split raw info-dictionary bytes into the `ut_metadata` data messages that serve them.
pub fn serve(info: &[u8], piece: u32) -> MetadataMsg {
    let start = (piece as usize).saturating_mul(PIECE_LEN);
    match (u32::try_from(info.len()), info.get(start..)) {
        (Ok(total_size), Some(rest)) if !rest.is_empty() => MetadataMsg::Data {
            piece,
            total_size,
            data: Bytes::copy_from_slice(rest.get(..rest.len().min(PIECE_LEN)).unwrap_or(rest)),
        },
        _ => MetadataMsg::Reject { piece },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_byte_exact() {
        let req = MetadataMsg::Request { piece: 3 };
        assert_eq!(req.encode(), b"d8:msg_typei0e5:piecei3ee");
        assert_eq!(MetadataMsg::parse(&req.encode()), Ok(req));
        let rej = MetadataMsg::Reject { piece: 0 };
        assert_eq!(MetadataMsg::parse(&rej.encode()), Ok(rej));
        let data = MetadataMsg::Data {
            piece: 1,
            total_size: 16 * 1024 + 5,
            data: Bytes::from_static(b"hello"),
        };
        let wire = data.encode();
        assert!(wire.starts_with(b"d8:msg_typei1e5:piecei1e10:total_sizei16389ee"));
        assert!(wire.ends_with(b"hello"));
        assert_eq!(MetadataMsg::parse(&wire), Ok(data));
    }

    #[test]
    fn hostile_messages_are_named() {
        let cases: Vec<(&[u8], MetadataError)> = vec![
            (b"li1ee", MetadataError::BadHeader),
            (b"d5:piecei0ee", MetadataError::BadField("msg_type")),
            (
                b"d8:msg_typei0e5:piecei-1ee",
                MetadataError::BadField("piece"),
            ),
            (b"d8:msg_typei7e5:piecei0ee", MetadataError::UnknownType(7)),
            (b"d8:msg_typei0e5:piecei0eexx", MetadataError::TrailingData),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei0eex",
                MetadataError::BadTotalSize(0),
            ),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei99999999eex",
                MetadataError::BadTotalSize(99_999_999),
            ),
            (
                b"d8:msg_typei1e5:piecei1e10:total_sizei3eeabc",
                MetadataError::PieceOutOfRange {
                    piece: 1,
                    pieces: 1,
                },
            ),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei3eeab",
                MetadataError::BadPieceLength {
                    piece: 0,
                    len: 2,
                    want: 3,
                },
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(
                MetadataMsg::parse(wire),
                Err(want),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        let mut long = b"d5:xxxxx".to_vec();
        long.extend(std::iter::repeat_n(b'l', 400));
        assert_eq!(MetadataMsg::parse(&long), Err(MetadataError::BadHeader));
        assert!(matches!(
            MetadataMsg::parse(b"d8:msg"),
            Err(MetadataError::Bencode(_))
        ));
    }

    fn info_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn served_pieces_assemble_into_the_info_dictionary() {
        let info = info_bytes(2 * PIECE_LEN + 100);
        let hash = InfoHash::of(&info);
        let mut asm = MetadataAssembly::<u8>::new(hash, info.len()).unwrap();
        assert_eq!(asm.next_missing(|_| false), Some(0));
        assert_eq!(asm.next_missing(|p| p == 0), Some(1));
        let mut last = Assembled::Pending;
        for piece in [2, 0, 1] {
            let MetadataMsg::Data {
                piece,
                total_size,
                data,
            } = MetadataMsg::parse(&serve(&info, piece).encode()).unwrap()
            else {
                panic!("served a reject");
            };
            last = asm.insert(piece as u8, piece, total_size, data);
        }
        assert_eq!(last, Assembled::Complete(Bytes::from(info.clone())));
        assert_eq!(serve(&info, 3), MetadataMsg::Reject { piece: 3 });
    }

    #[test]
    fn a_set_that_does_not_hash_is_discarded_and_its_senders_named() {
        let info = info_bytes(PIECE_LEN + 10);
        let mut asm = MetadataAssembly::<&str>::new(InfoHash::of(&info), info.len()).unwrap();
        let total = info.len() as u32;
        let good = Bytes::copy_from_slice(&info[..PIECE_LEN]);
        assert_eq!(
            asm.insert("honest", 0, total, good.clone()),
            Assembled::Pending
        );
        assert_eq!(
            asm.insert("liar", 1, total, Bytes::from(vec![0; 10])),
            Assembled::HashMismatch(vec!["honest", "liar"])
        );
        // Everything was discarded: piece 0 is missing again, and a correct set now completes.
        assert_eq!(asm.next_missing(|_| false), Some(0));
        assert_eq!(asm.insert("a", 0, total, good), Assembled::Pending);
        assert_eq!(
            asm.insert("a", 0, total, Bytes::from(vec![1; PIECE_LEN])),
            Assembled::Ignored,
            "a piece already held"
        );
        assert_eq!(
            asm.insert("b", 1, total + 1, Bytes::from(vec![0; 10])),
            Assembled::Ignored,
            "another size"
        );
        let tail = Bytes::copy_from_slice(&info[PIECE_LEN..]);
        assert!(matches!(
            asm.insert("b", 1, total, tail),
            Assembled::Complete(_)
        ));
        assert!(MetadataAssembly::<u8>::new(InfoHash([0; 20]), 0).is_none());
        assert!(MetadataAssembly::<u8>::new(InfoHash([0; 20]), 9 << 20).is_none());
    }
}
