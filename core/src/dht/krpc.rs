//! KRPC (BEP 5): the bencoded query/response/error messages DHT nodes exchange over UDP.
//!
//! [`Message::parse`] checks the datagram's size and every string's length against [`LIMITS`] before it keeps
//! anything, and names what was wrong ([`KrpcError`]). Responses do not say which query they answer: the
//! caller matches them by transaction id, so [`Response`] carries every field a response may have.
//! Compact node info is 26 bytes per IPv4 node (id, address, port) and 38 per IPv6 node (`nodes6`).

use super::id::{NodeId, ID_LEN};
use crate::bencode::{self, Value};
use crate::compact::{self, Family};
use crate::metainfo::InfoHash;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Limits on what a KRPC datagram may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KrpcLimits {
    /// Largest datagram parsed.
    pub max_datagram: usize,
    /// Longest transaction id.
    pub max_transaction: usize,
    /// Longest token.
    pub max_token: usize,
    /// Most peers kept from a `values` list.
    pub max_values: usize,
    /// Most nodes kept from `nodes` (and from `nodes6`).
    pub max_nodes: usize,
    /// Longest error message kept, in bytes.
    pub max_error_text: usize,
    /// Longest client version (`v`) kept.
    pub max_version: usize,
}

/// The limits [`Message::parse`] applies.
pub const LIMITS: KrpcLimits = KrpcLimits {
    max_datagram: 8 * 1024,
    max_transaction: 32,
    max_token: 64,
    max_values: 200,
    max_nodes: 64,
    max_error_text: 256,
    max_version: 16,
};

/// Error codes of BEP 5.
pub mod codes {
    /// Generic error.
    pub const GENERIC: i64 = 201;
    /// Server error.
    pub const SERVER: i64 = 202;
    /// Protocol error: a malformed packet, an invalid argument or a bad token.
    pub const PROTOCOL: i64 = 203;
    /// Method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// A node's id and address, as in compact node info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id chosen by the querier and echoed by the responder.
    pub transaction: Vec<u8>,
    /// The sender's client version (`v`), if any.
    pub version: Option<Vec<u8>>,
    /// BEP 43: the sender is read-only (does not answer queries).
    pub read_only: bool,
    /// What the message says.
    pub body: Body,
}

/// The three kinds of KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A query.
    Query(Query),
    /// A response.
    Response(Response),
    /// An error (`e`): a code and a message.
    Error {
        /// One of [`codes`], or another number.
        code: i64,
        /// Human-readable text.
        message: String,
    },
}

/// The queries of BEP 5, plus the ones we do not know (answered with [`codes::METHOD_UNKNOWN`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Are you there?
    Ping {
        /// The querier's id.
        id: NodeId,
    },
    /// The nodes you know closest to `target`.
    FindNode {
        /// The querier's id.
        id: NodeId,
        /// The id looked for.
        target: NodeId,
    },
    /// Peers of `info_hash`, or else the nodes you know closest to it; with a token to announce.
    GetPeers {
        /// The querier's id.
        id: NodeId,
        /// The torrent.
        info_hash: InfoHash,
    },
    /// The querier has `info_hash` on `port` (or on the port it sent from, if `implied_port`).
    AnnouncePeer {
        /// The querier's id.
        id: NodeId,
        /// The torrent.
        info_hash: InfoHash,
        /// The querier's peer port.
        port: u16,
        /// Use the UDP source port instead of `port` (BEP 5 `implied_port`).
        implied_port: bool,
        /// The token the querier got from our `get_peers` answer.
        token: Vec<u8>,
    },
    /// A method we do not know.
    Other {
        /// The querier's id.
        id: NodeId,
        /// Its name.
        method: String,
    },
}

/// A response. Which fields are set depends on the query it answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The responder's id.
    pub id: NodeId,
    /// Nodes close to the target (`nodes` and `nodes6` together).
    pub nodes: Vec<NodeInfo>,
    /// Peers of the torrent (`values`).
    pub values: Vec<SocketAddr>,
    /// A token for `announce_peer` (`get_peers` answers).
    pub token: Option<Vec<u8>>,
}

/// Why a datagram is not a KRPC message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    /// Larger than [`KrpcLimits::max_datagram`].
    #[error("datagram of {0} bytes is over the limit")]
    TooLong(usize),
    /// Not bencode.
    #[error("not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// Bencode, but not a dictionary.
    #[error("not a dictionary")]
    NotADict,
    /// A required key is missing.
    #[error("missing key '{0}'")]
    Missing(&'static str),
    /// A key has the wrong type, length or range.
    #[error("key '{0}' has the wrong type, length or range")]
    Invalid(&'static str),
    /// `y` is not `q`, `r` or `e`.
    #[error("unknown message type")]
    UnknownType,
}

impl Query {
    /// The querier's id.
    pub fn sender(&self) -> NodeId {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. }
            | Query::Other { id, .. } => *id,
        }
    }

    /// The method name on the wire.
    pub fn method(&self) -> &str {
        match self {
            Query::Ping { .. } => "ping",
            Query::FindNode { .. } => "find_node",
            Query::GetPeers { .. } => "get_peers",
            Query::AnnouncePeer { .. } => "announce_peer",
            Query::Other { method, .. } => method,
        }
    }
}

fn key(k: &str) -> Vec<u8> {
    k.as_bytes().to_vec()
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// Compact node info for the nodes of `family` in `nodes`.
fn compact_nodes(nodes: &[NodeInfo], family: Family) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| Family::of(&n.addr) == family) {
        out.extend_from_slice(&n.id.0);
        compact::push_addr(&n.addr, &mut out);
    }
    out
}

fn read_nodes(raw: &[u8], family: Family, out: &mut Vec<NodeInfo>) -> Result<(), KrpcError> {
    let record = ID_LEN + family.record_len();
    let field = match family {
        Family::V4 => "nodes",
        Family::V6 => "nodes6",
    };
    if !raw.len().is_multiple_of(record) {
        return Err(KrpcError::Invalid(field));
    }
    for chunk in raw.chunks_exact(record).take(LIMITS.max_nodes) {
        let (id, addr) = chunk.split_at(ID_LEN);
        if let (Some(id), Some(addr)) = (NodeId::from_slice(id), compact::read_addr(addr, family)) {
            out.push(NodeInfo { id, addr });
        }
    }
    Ok(())
}

impl Message {
    /// Encode as one datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        d.insert(key("t"), bytes(&self.transaction));
        if let Some(v) = &self.version {
            d.insert(key("v"), bytes(v));
        }
        if self.read_only {
            d.insert(key("ro"), Value::Int(1));
        }
        match &self.body {
            Body::Query(q) => {
                d.insert(key("y"), bytes(b"q"));
                d.insert(key("q"), bytes(q.method().as_bytes()));
                let mut a = BTreeMap::new();
                a.insert(key("id"), bytes(&q.sender().0));
                match q {
                    Query::Ping { .. } | Query::Other { .. } => {}
                    Query::FindNode { target, .. } => {
                        a.insert(key("target"), bytes(&target.0));
                    }
                    Query::GetPeers { info_hash, .. } => {
                        a.insert(key("info_hash"), bytes(&info_hash.0));
                    }
                    Query::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                        ..
                    } => {
                        a.insert(key("info_hash"), bytes(&info_hash.0));
                        a.insert(key("port"), Value::Int(i64::from(*port)));
                        a.insert(key("token"), bytes(token));
                        if *implied_port {
                            a.insert(key("implied_port"), Value::Int(1));
                        }
                    }
                }
                d.insert(key("a"), Value::Dict(a));
            }
            Body::Response(r) => {
                d.insert(key("y"), bytes(b"r"));
                let mut a = BTreeMap::new();
                a.insert(key("id"), bytes(&r.id.0));
                for (family, name) in [(Family::V4, "nodes"), (Family::V6, "nodes6")] {
                    let packed = compact_nodes(&r.nodes, family);
                    if !packed.is_empty() {
                        a.insert(key(name), Value::Bytes(packed));
                    }
                }
                if !r.values.is_empty() {
                    let values = r
                        .values
                        .iter()
                        .map(|p| {
                            let mut one = Vec::new();
                            compact::push_addr(p, &mut one);
                            Value::Bytes(one)
                        })
                        .collect();
                    a.insert(key("values"), Value::List(values));
                }
                if let Some(t) = &r.token {
                    a.insert(key("token"), bytes(t));
                }
                d.insert(key("r"), Value::Dict(a));
            }
            Body::Error { code, message } => {
                d.insert(key("y"), bytes(b"e"));
                d.insert(
                    key("e"),
                    Value::List(vec![Value::Int(*code), bytes(message.as_bytes())]),
                );
            }
        }
        bencode::encode(&Value::Dict(d))
    }

    /// Parse one datagram.
    pub fn parse(datagram: &[u8]) -> Result<Message, KrpcError> {
        if datagram.len() > LIMITS.max_datagram {
            return Err(KrpcError::TooLong(datagram.len()));
        }
        let value = bencode::decode(datagram)?;
        let d = value.as_dict().ok_or(KrpcError::NotADict)?;
        let transaction = d
            .get(b"t".as_slice())
            .ok_or(KrpcError::Missing("t"))?
            .as_bytes()
            .filter(|t| t.len() <= LIMITS.max_transaction)
            .ok_or(KrpcError::Invalid("t"))?
            .to_vec();
        let version = d
            .get(b"v".as_slice())
            .and_then(Value::as_bytes)
            .filter(|v| v.len() <= LIMITS.max_version)
            .map(<[u8]>::to_vec);
        let read_only = d.get(b"ro".as_slice()).and_then(Value::as_int) == Some(1);
        let kind = d
            .get(b"y".as_slice())
            .ok_or(KrpcError::Missing("y"))?
            .as_bytes()
            .ok_or(KrpcError::Invalid("y"))?;
        let body = match kind {
            b"q" => Body::Query(parse_query(d)?),
            b"r" => Body::Response(parse_response(d)?),
            b"e" => parse_error(d)?,
            _ => return Err(KrpcError::UnknownType),
        };
        Ok(Message {
            transaction,
            version,
            read_only,
            body,
        })
    }
}

type Dict = BTreeMap<Vec<u8>, Value>;

fn dict_at<'a>(d: &'a Dict, k: &'static str) -> Result<&'a Dict, KrpcError> {
    d.get(k.as_bytes())
        .ok_or(KrpcError::Missing(k))?
        .as_dict()
        .ok_or(KrpcError::Invalid(k))
}

fn id_at(d: &Dict, k: &'static str) -> Result<NodeId, KrpcError> {
    let raw = d
        .get(k.as_bytes())
        .ok_or(KrpcError::Missing(k))?
        .as_bytes()
        .ok_or(KrpcError::Invalid(k))?;
    NodeId::from_slice(raw).ok_or(KrpcError::Invalid(k))
}

fn parse_query(d: &Dict) -> Result<Query, KrpcError> {
    let method = d
        .get(b"q".as_slice())
        .ok_or(KrpcError::Missing("q"))?
        .as_str()
        .filter(|m| m.len() <= 32)
        .ok_or(KrpcError::Invalid("q"))?;
    let a = dict_at(d, "a")?;
    let id = id_at(a, "id")?;
    Ok(match method {
        "ping" => Query::Ping { id },
        "find_node" => Query::FindNode {
            id,
            target: id_at(a, "target")?,
        },
        "get_peers" => Query::GetPeers {
            id,
            info_hash: InfoHash(id_at(a, "info_hash")?.0),
        },
        "announce_peer" => {
            let port = a
                .get(b"port".as_slice())
                .and_then(Value::as_int)
                .and_then(|p| u16::try_from(p).ok());
            let implied_port = a.get(b"implied_port".as_slice()).and_then(Value::as_int) == Some(1);
            let token = a
                .get(b"token".as_slice())
                .ok_or(KrpcError::Missing("token"))?
                .as_bytes()
                .filter(|t| t.len() <= LIMITS.max_token)
                .ok_or(KrpcError::Invalid("token"))?
                .to_vec();
            Query::AnnouncePeer {
                id,
                info_hash: InfoHash(id_at(a, "info_hash")?.0),
                port: match (port, implied_port) {
                    (Some(p), _) => p,
                    (None, true) => 0,
                    (None, false) => return Err(KrpcError::Invalid("port")),
                },
                implied_port,
                token,
            }
        }
        other => Query::Other {
            id,
            method: other.to_string(),
        },
    })
}

fn parse_response(d: &Dict) -> Result<Response, KrpcError> {
    let r = dict_at(d, "r")?;
    let id = id_at(r, "id")?;
    let mut nodes = Vec::new();
    for (family, name) in [(Family::V4, "nodes"), (Family::V6, "nodes6")] {
        if let Some(raw) = r.get(name.as_bytes()) {
            read_nodes(
                raw.as_bytes().ok_or(KrpcError::Invalid(name))?,
                family,
                &mut nodes,
            )?;
        }
    }
    let mut values = Vec::new();
    if let Some(list) = r.get(b"values".as_slice()) {
        let list = list.as_list().ok_or(KrpcError::Invalid("values"))?;
        for item in list.iter().take(LIMITS.max_values) {
            let raw = item.as_bytes().ok_or(KrpcError::Invalid("values"))?;
            let family = match raw.len() {
                6 => Family::V4,
                18 => Family::V6,
                _ => return Err(KrpcError::Invalid("values")),
            };
            values.extend(compact::read_addr(raw, family));
        }
    }
    let token = match r.get(b"token".as_slice()) {
        None => None,
        Some(t) => Some(
            t.as_bytes()
                .filter(|t| t.len() <= LIMITS.max_token)
                .ok_or(KrpcError::Invalid("token"))?
                .to_vec(),
        ),
    };
    Ok(Response {
        id,
        nodes,
        values,
        token,
    })
}

fn parse_error(d: &Dict) -> Result<Body, KrpcError> {
    let e = d
        .get(b"e".as_slice())
        .ok_or(KrpcError::Missing("e"))?
        .as_list()
        .ok_or(KrpcError::Invalid("e"))?;
    let code = e
        .first()
        .and_then(Value::as_int)
        .ok_or(KrpcError::Invalid("e"))?;
    let text = e.get(1).and_then(Value::as_bytes).unwrap_or_default();
    let mut message = String::new();
    for c in String::from_utf8_lossy(text).chars() {
        if message.len() + c.len_utf8() > LIMITS.max_error_text {
            break;
        }
        message.push(c);
    }
    Ok(Body::Error { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    fn msg(body: Body) -> Message {
        Message {
            transaction: b"aa".to_vec(),
            version: None,
            read_only: false,
            body,
        }
    }

    #[test]
    fn bep5_examples_parse_and_re_encode_byte_exact() {
        // The ping and find_node examples of BEP 5, with 20-byte ids.
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = Message::parse(ping).unwrap();
        assert_eq!(
            m,
            msg(Body::Query(Query::Ping {
                id: NodeId(*b"abcdefghij0123456789")
            }))
        );
        assert_eq!(m.encode(), ping);
        let find = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe";
        assert_eq!(Message::parse(find).unwrap().encode(), find);
        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let m = Message::parse(err).unwrap();
        assert_eq!(
            m.body,
            Body::Error {
                code: codes::GENERIC,
                message: "A Generic Error Ocurred".into()
            }
        );
        assert_eq!(m.encode(), err);
    }

    #[test]
    fn every_message_round_trips() {
        let bodies = vec![
            Body::Query(Query::FindNode {
                id: id(1),
                target: id(2),
            }),
            Body::Query(Query::GetPeers {
                id: id(1),
                info_hash: InfoHash([3; 20]),
            }),
            Body::Query(Query::AnnouncePeer {
                id: id(1),
                info_hash: InfoHash([3; 20]),
                port: 6881,
                implied_port: true,
                token: b"tok".to_vec(),
            }),
            Body::Query(Query::Other {
                id: id(1),
                method: "sample_infohashes".into(),
            }),
            Body::Response(Response {
                id: id(9),
                nodes: vec![
                    NodeInfo {
                        id: id(4),
                        addr: "1.2.3.4:5".parse().unwrap(),
                    },
                    NodeInfo {
                        id: id(5),
                        addr: "[::1]:6".parse().unwrap(),
                    },
                ],
                values: vec!["9.9.9.9:99".parse().unwrap(), "[::2]:7".parse().unwrap()],
                token: Some(b"12345678".to_vec()),
            }),
        ];
        for body in bodies {
            let mut m = msg(body);
            m.version = Some(b"EJ01".to_vec());
            m.read_only = true;
            assert_eq!(Message::parse(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn hostile_datagrams_are_named() {
        let id20 = "20:abcdefghij0123456789";
        let cases: Vec<(Vec<u8>, KrpcError)> = vec![
            (b"le".to_vec(), KrpcError::NotADict),
            (b"d1:y1:qe".to_vec(), KrpcError::Missing("t")),
            (b"d1:ti1ee".to_vec(), KrpcError::Invalid("t")),
            (
                format!("d1:t{}:{}1:y1:qe", 40, "x".repeat(40)).into_bytes(),
                KrpcError::Invalid("t"),
            ),
            (b"d1:t1:x1:y1:ze".to_vec(), KrpcError::UnknownType),
            (b"d1:t1:x1:y1:qe".to_vec(), KrpcError::Missing("q")),
            (b"d1:q4:ping1:t1:x1:y1:qe".to_vec(), KrpcError::Missing("a")),
            (
                b"d1:ad2:id3:abce1:q4:ping1:t1:x1:y1:qe".to_vec(),
                KrpcError::Invalid("id"),
            ),
            (
                format!("d1:ad2:id{id20}e1:q9:find_node1:t1:x1:y1:qe").into_bytes(),
                KrpcError::Missing("target"),
            ),
            (
                format!("d1:ad2:id{id20}9:info_hash{id20}4:porti70000e5:token1:xe1:q13:announce_peer1:t1:x1:y1:qe")
                    .into_bytes(),
                KrpcError::Invalid("port"),
            ),
            (
                format!("d1:rd2:id{id20}5:nodes3:abce1:t1:x1:y1:re").into_bytes(),
                KrpcError::Invalid("nodes"),
            ),
            (
                format!("d1:rd2:id{id20}6:valuesl5:abcdeee1:t1:x1:y1:re").into_bytes(),
                KrpcError::Invalid("values"),
            ),
            (
                format!("d1:rd2:id{id20}5:token{}:{}e1:t1:x1:y1:re", 65, "k".repeat(65))
                    .into_bytes(),
                KrpcError::Invalid("token"),
            ),
            (b"d1:el3:abce1:t1:x1:y1:ee".to_vec(), KrpcError::Invalid("e")),
            (vec![b'x'; 9000], KrpcError::TooLong(9000)),
        ];
        for (wire, want) in cases {
            let got = Message::parse(&wire);
            assert_eq!(got, Err(want), "{}", String::from_utf8_lossy(&wire));
        }
        let no_text = Message::parse(b"d1:eli201ee1:t1:x1:y1:ee").unwrap();
        assert_eq!(
            no_text.body,
            Body::Error {
                code: 201,
                message: String::new()
            }
        );
        assert!(matches!(
            Message::parse(b"d1:t"),
            Err(KrpcError::Bencode(_))
        ));
    }

    #[test]
    fn long_lists_are_capped() {
        let mut r = Response {
            id: id(1),
            ..Default::default()
        };
        r.values = (0..300u16)
            .map(|p| SocketAddr::from(([10, 0, 0, 1], p)))
            .collect();
        r.nodes = (0..100u16)
            .map(|p| NodeInfo {
                id: id(2),
                addr: SocketAddr::from(([10, 0, 0, 2], p)),
            })
            .collect();
        let m = msg(Body::Response(r));
        let Body::Response(got) = Message::parse(&m.encode()).unwrap().body else {
            panic!("not a response");
        };
        assert_eq!(got.values.len(), LIMITS.max_values);
        assert_eq!(got.nodes.len(), LIMITS.max_nodes);
    }
}
