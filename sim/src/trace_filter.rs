//! Which trace lines to keep (`sim run --trace-peer`, `--trace-piece`, `--trace-kind`), so that a
//! thousand-peer story can still be read one peer, one piece or one kind of message at a time. Story lines
//! are always kept; the filter only thins the wire trace and the piece verifications.

use enjambre_core::node::NodeEvent;
use std::net::SocketAddr;

/// Filters of the trace; an empty list lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Keep lines of these peers (the host or the other end). A group's name keeps all its members.
    pub peers: Vec<String>,
    /// Keep lines about these pieces.
    pub pieces: Vec<u32>,
    /// Keep these message kinds (`request`, `piece`, `have`, `bitfield`, `unchoke`, ..., and `verified`).
    pub kinds: Vec<String>,
}

impl TraceFilter {
    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.pieces.is_empty() && self.kinds.is_empty()
    }

    fn peer_matches(&self, name: &str) -> bool {
        self.peers.iter().any(|p| {
            name == p
                || name
                    .strip_prefix(p.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
    }

    /// Whether `host` records its peer-wire messages at all: with `--trace-peer`, only the peers named do, so
    /// that a 10,000-peer story traced for one peer costs about what it costs untraced. A named peer's own
    /// lines show every message it sends and receives (the DHT's KRPC lines are still kept from both ends).
    pub fn traces_host(&self, host: &str) -> bool {
        self.peers.is_empty() || self.peer_matches(host)
    }

    /// Whether the trace line of `e` on `host` is kept; `name_of` names a remote address.
    pub fn keeps(&self, host: &str, e: &NodeEvent, name_of: impl Fn(SocketAddr) -> String) -> bool {
        if self.is_empty() {
            return true;
        }
        let (remotes, kind, piece): (Vec<SocketAddr>, &str, Option<u32>) = match e {
            NodeEvent::Wire {
                addr,
                message,
                detail,
                ..
            } => (
                vec![*addr],
                message,
                detail
                    .strip_prefix("piece ")
                    .and_then(|d| d.split(' ').next())
                    .and_then(|n| n.parse().ok()),
            ),
            NodeEvent::PieceVerified { piece, from, .. } => {
                (from.clone(), "verified", Some(*piece))
            }
            _ => return true,
        };
        self.keeps_line(host, &remotes, kind, piece, name_of)
    }

    /// Whether a trace line of `kind` on `host`, exchanged with `remotes` and about `piece`, is kept.
    pub fn keeps_line(
        &self,
        host: &str,
        remotes: &[SocketAddr],
        kind: &str,
        piece: Option<u32>,
        name_of: impl Fn(SocketAddr) -> String,
    ) -> bool {
        (self.peers.is_empty()
            || self.peer_matches(host)
            || remotes.iter().any(|a| self.peer_matches(&name_of(*a))))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| kind_matches(k, kind)))
            && (self.pieces.is_empty() || piece.is_some_and(|p| self.pieces.contains(&p)))
    }
}

/// Short names a `--trace-kind` may use: `pex` for `ut_pex` (BEP 11), `metadata` for `ut_metadata` (BEP 9)
/// and `dht` for the KRPC messages of the DHT (BEP 5).
const KIND_ALIASES: [(&str, &str); 3] = [
    ("pex", "ut_pex"),
    ("metadata", "ut_metadata"),
    ("dht", "krpc"),
];

/// Whether the kind asked for (`asked`) names the trace line's kind.
fn kind_matches(asked: &str, kind: &str) -> bool {
    asked == kind
        || KIND_ALIASES
            .iter()
            .any(|(alias, full)| asked == *alias && kind == *full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(message: &'static str, detail: &str) -> NodeEvent {
        NodeEvent::Wire {
            conn: 1,
            addr: "10.0.0.9:6881".parse().unwrap(),
            dir: "in",
            message,
            detail: detail.into(),
        }
    }

    #[test]
    fn filters_by_peer_group_piece_and_kind() {
        let name_of = |_| "seeder".to_string();
        let f = TraceFilter {
            peers: vec!["fast".into()],
            pieces: vec![7],
            kinds: vec!["request".into()],
        };
        let req7 = wire("request", "piece 7 offset 0 len 16384");
        assert!(f.keeps("fast-012", &req7, name_of));
        assert!(!f.keeps("faster-1", &req7, name_of));
        assert!(!f.keeps("slow-1", &req7, name_of));
        assert!(!f.keeps(
            "fast-1",
            &wire("request", "piece 70 offset 0 len 16384"),
            name_of
        ));
        assert!(!f.keeps(
            "fast-1",
            &wire("piece", "piece 7 offset 0 len 16384"),
            name_of
        ));
        assert!(!f.keeps("fast-1", &wire("unchoke", ""), name_of));
        let by_remote = TraceFilter {
            peers: vec!["seeder".into()],
            ..TraceFilter::default()
        };
        assert!(by_remote.keeps("slow-1", &wire("unchoke", ""), name_of));
        assert!(TraceFilter::default().keeps("x", &wire("unchoke", ""), name_of));
        let pex = TraceFilter {
            kinds: vec!["pex".into(), "metadata".into()],
            ..TraceFilter::default()
        };
        assert!(pex.keeps("a", &wire("ut_pex", "added none, dropped none"), name_of));
        assert!(pex.keeps("a", &wire("ut_metadata", "request piece 0"), name_of));
        assert!(!pex.keeps("a", &wire("extended", ""), name_of));
    }
}
