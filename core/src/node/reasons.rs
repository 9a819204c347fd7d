//! Why things stopped, as types: why a connection closed, why a dial failed, what a disk error was and what
//! it stopped. Callers match on variants and kinds, never on text; the text (`Display`) is for people, and
//! is what events and stats serialize to.

use crate::bitfield::BitfieldError;
use crate::wire::WireError;
use serde::{Serialize, Serializer};
use std::io;

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The handshake carried our own peer id.
    #[error("connected to ourselves")]
    SelfConnection,
    /// The peer id was banned (it sent corrupt data on another connection).
    #[error("banned peer id")]
    BannedPeerId,
    /// The handshake named a torrent we do not have.
    #[error("unknown info hash")]
    UnknownTorrent,
    /// A dialled peer answered for another torrent than the one we dialled it for.
    #[error("info hash mismatch")]
    InfoHashMismatch,
    /// The peer's address is banned.
    #[error("banned address")]
    BannedAddress,
    /// Closed to make room for a newcomer: no payload either way for `idle_secs`.
    #[error("evicted: no payload either way for {idle_secs} s, making room for a new peer")]
    Evicted { idle_secs: u64 },
    /// Our dial, still in flight, gave its room under the torrent's cap to a peer whose handshake arrived.
    #[error("dial given up for a peer that connected meanwhile")]
    GaveWay,
    /// The torrent is at its connection cap and nobody could be evicted.
    #[error("too many peers for this torrent")]
    TooManyPeers,
    /// Another connection to the same peer won.
    #[error("duplicate connection")]
    Duplicate,
    /// The peer broke the wire protocol.
    #[error("protocol error: {0}")]
    Protocol(WireError),
    /// A message arrived before the handshake completed.
    #[error("message before handshake")]
    MessageBeforeHandshake,
    /// A `have` named a piece past the end.
    #[error("have for a piece out of range")]
    HaveOutOfRange,
    /// A bitfield of the wrong size or with spare bits set.
    #[error("bad bitfield: {0}")]
    BadBitfield(BitfieldError),
    /// Have-all or have-none from a peer that did not announce the fast extension.
    #[error("have-all/have-none without the fast extension")]
    HaveAllWithoutFast,
    /// Both ends hold every piece: nothing to exchange.
    #[error("both complete")]
    BothComplete,
    /// A block outside its piece.
    #[error("piece out of bounds")]
    PieceOutOfBounds,
    /// More payload than a slip that we never asked this connection for (a flood).
    #[error("sent data nobody asked for")]
    UnrequestedData,
    /// Our disk could not read a block a peer without the fast extension asked for.
    #[error("could not read a block to serve")]
    ServeReadFailed,
    /// The peer sent corrupt pieces too often.
    #[error("banned after sending corrupt data")]
    BannedForCorruptData,
    /// Requests waited and not even a keep-alive came for `silent_secs`.
    #[error("no data for {silent_secs} s with requests pending")]
    Stalled { silent_secs: u64 },
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing received for the idle timeout.
    #[error("peer silent for too long")]
    Idle,
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The other end closed, or the connection failed.
    #[error("closed by peer")]
    ClosedByPeer,
    /// A magnet's metadata phase ended (the torrent dials its peers again as a normal download).
    #[error("metadata received")]
    MetadataComplete,
    /// A peer met in a metadata phase does not speak the extension protocol (BEP 10), so cannot send it.
    #[error("no extension protocol: cannot send metadata")]
    NoMetadataExtension,
    /// The driver dropped a peer that left `unread_mib` MiB we sent it unread.
    #[error("dropped: {unread_mib} MiB sent to it stay unread")]
    Unread { unread_mib: u64 },
}

impl CloseReason {
    /// Whether the close is part of normal life (not worth a user's attention): both complete, a duplicate
    /// connection, a dial given up for a peer that connected, or our own shutdown.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            CloseReason::BothComplete
                | CloseReason::Duplicate
                | CloseReason::GaveWay
                | CloseReason::ShuttingDown
                | CloseReason::MetadataComplete
        )
    }
}

/// Why a peer's request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefuseReason {
    /// Empty, too long, or outside its piece.
    #[error("request out of bounds")]
    OutOfBounds,
    /// The peer already has as many requests queued as we serve.
    #[error("request queue full")]
    QueueFull,
    /// We do not have the piece, or we choke the peer.
    #[error("request for a piece we cannot serve")]
    CannotServe,
}

/// Why an outbound connection could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No answer within the driver's connect timeout.
    #[error("timed out")]
    TimedOut,
    /// The transport refused (refused, unreachable...).
    #[error("{message}")]
    Io {
        kind: io::ErrorKind,
        message: String,
    },
}

impl From<&io::Error> for ConnectError {
    fn from(e: &io::Error) -> ConnectError {
        ConnectError::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// A disk operation that failed, as the driver reports it: its kind, and what failed for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DiskError {
    /// The kind of failure: [`io::ErrorKind::StorageFull`] for a full disk.
    pub kind: io::ErrorKind,
    /// What failed, for people.
    pub message: String,
}

impl DiskError {
    /// A disk error of `kind` described by `message`.
    pub fn new(kind: io::ErrorKind, message: impl Into<String>) -> DiskError {
        DiskError {
            kind,
            message: message.into(),
        }
    }

    /// `context: error`, keeping the error's kind.
    pub fn io(context: &str, e: &io::Error) -> DiskError {
        DiskError::new(e.kind(), format!("{context}: {e}"))
    }

    /// Whether the disk is full.
    pub fn is_storage_full(&self) -> bool {
        self.kind == io::ErrorKind::StorageFull
    }
}

impl From<io::Error> for DiskError {
    fn from(e: io::Error) -> DiskError {
        DiskError::new(e.kind(), e.to_string())
    }
}

/// What went wrong with a torrent's own data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TorrentError {
    /// A block could not be written: the download stops and is tried again later.
    #[error("{0}")]
    Write(DiskError),
    /// A piece could not be read back to verify it: the download stops and is tried again later.
    #[error("reading piece {piece} back failed: {error}")]
    ReadBack { piece: u32, error: DiskError },
    /// A checkpoint could not be saved (the download goes on; the save is tried again).
    #[error("checkpoint not saved: {0}")]
    CheckpointNotSaved(DiskError),
    /// The torrent's files or its saved metainfo could not be prepared before it starts (the driver waits
    /// and tries again).
    #[error("{0}")]
    Prepare(DiskError),
}

impl TorrentError {
    /// The disk error underneath.
    pub fn disk_error(&self) -> &DiskError {
        match self {
            TorrentError::Write(e)
            | TorrentError::ReadBack { error: e, .. }
            | TorrentError::CheckpointNotSaved(e)
            | TorrentError::Prepare(e) => e,
        }
    }

    /// Whether the disk is full.
    pub fn is_storage_full(&self) -> bool {
        self.disk_error().is_storage_full()
    }
}

/// Serialize a reason as its text.
pub(crate) fn as_text<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Serialize an optional reason as its text, or null.
pub(crate) fn opt_as_text<T: std::fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.as_ref().map(ToString::to_string).serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeEvent;

    #[test]
    fn a_full_disk_is_told_by_its_kind_not_its_text() {
        let full = DiskError::io(
            "write at offset 0 failed",
            &io::Error::from_raw_os_error(28),
        );
        assert!(full.is_storage_full());
        assert!(TorrentError::Write(full.clone()).is_storage_full());
        let eio = DiskError::from(io::Error::from_raw_os_error(5));
        assert!(!eio.is_storage_full());
        let read_back = TorrentError::ReadBack {
            piece: 3,
            error: eio.clone(),
        };
        assert_eq!(read_back.disk_error(), &eio);
        assert_eq!(
            read_back.to_string(),
            format!("reading piece 3 back failed: {}", eio.message)
        );
    }

    #[test]
    fn events_serialize_reasons_as_their_text() {
        let e = NodeEvent::Disconnected {
            conn: 7,
            addr: "10.0.0.1:6881".parse().expect("an address"),
            reason: CloseReason::Evicted { idle_secs: 60 },
        };
        let json = serde_json::to_value(&e).expect("serializable");
        assert_eq!(
            json["reason"],
            "evicted: no payload either way for 60 s, making room for a new peer"
        );
        assert!(CloseReason::BothComplete.is_routine());
        assert!(!CloseReason::Idle.is_routine());
        assert_eq!(ConnectError::TimedOut.to_string(), "timed out");
    }
}
