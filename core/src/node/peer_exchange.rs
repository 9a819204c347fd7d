//! A torrent's BEP 9 and BEP 11 duties: serving its info dictionary to peers that ask over `ut_metadata`,
//! and peer exchange over `ut_pex` — learning addresses from peers, and telling each peer whom else we are
//! connected to, within the rate limits of [`crate::extension::pex::PexSender`]. Private torrents (BEP 27)
//! do neither exchange; each is off unless its switch is set ([`super::NodeConfig::serve_metadata`],
//! [`super::NodeConfig::peer_exchange`]).

use super::view::TorrentCtx;
use super::ConnId;
use crate::bencode;
use crate::extension::metadata::{self, MetadataMsg};
use crate::extension::pex::{self, PexFlags, PexMessage};
use crate::metainfo::Metainfo;
use crate::time::Instant;
use crate::wire::Message;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A torrent stops taking addresses from PEX once it knows this many.
pub(crate) const MAX_KNOWN_FROM_PEX: usize = 500;

/// The raw bencoded info dictionary of `meta` (what `ut_metadata` serves and the info hash covers).
pub(crate) fn info_bytes(meta: &Metainfo) -> Option<&[u8]> {
    let span = bencode::dict_value_span(&meta.raw, b"info")
        .ok()
        .flatten()?;
    meta.raw.get(span)
}

impl TorrentCtx<'_> {
    /// A `ut_metadata` message from connection `id`: requests are answered with the piece (or a reject);
    /// anything else, or a message that does not parse, is ignored (we always hold our metadata).
    pub fn on_metadata_message(&mut self, id: ConnId, payload: &[u8]) {
        if !self.s.config.serve_metadata {
            return;
        }
        let Ok(MetadataMsg::Request { piece }) = MetadataMsg::parse(payload) else {
            return;
        };
        self.s.trace(
            id,
            "in",
            "ut_metadata",
            MetadataMsg::Request { piece }.describe(),
        );
        let Some(remote) = self.s.remote_ext_id(id, metadata::NAME) else {
            return;
        };
        let reply = match info_bytes(&self.t.meta) {
            Some(info) if !self.t.meta.info.private => metadata::serve(info, piece),
            _ => MetadataMsg::Reject { piece },
        };
        self.s.trace(id, "out", "ut_metadata", reply.describe());
        self.s.send(
            id,
            Message::Extended {
                id: remote,
                payload: Bytes::from(reply.encode()),
            },
        );
    }

    /// A `ut_pex` message: the peers it adds become dialling candidates (up to [`MAX_KNOWN_FROM_PEX`]);
    /// those flagged as seeds are remembered as such, so that once we are complete we do not dial them.
    pub fn on_pex_message(&mut self, now: Instant, id: ConnId, payload: &[u8]) {
        if self.t.meta.info.private || !self.s.config.peer_exchange {
            return;
        }
        let Ok(msg) = PexMessage::parse(payload) else {
            return;
        };
        self.s.trace(id, "in", "ut_pex", msg.describe());
        for (addr, flags) in msg.added {
            if self.t.peers.len() >= MAX_KNOWN_FROM_PEX {
                break;
            }
            self.t.peers.add(addr, now);
            if flags.is_seed() {
                self.t.peers.mark_seed(&addr);
            }
        }
        self.connect_more(now);
    }

    /// Send each peer that speaks `ut_pex` what changed in our connections, if its minute has passed.
    pub fn send_pex(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.t.conns.iter().copied().collect();
        self.send_pex_to(now, &ids);
    }

    /// [`TorrentCtx::send_pex`] for the connections `ids` only (a peer whose extension handshake just
    /// arrived hears whom we are connected to at once; the others at their timer).
    pub fn send_pex_to(&mut self, now: Instant, ids: &[ConnId]) {
        if self.t.meta.info.private || !self.s.config.peer_exchange {
            return;
        }
        // Only connections whose peer speaks PEX and whose interval has passed can be told anything: the
        // list of members (and one per connection) is built for them only. This runs at every timer pass of
        // a downloading torrent, and building them for every connection was O(connections²) each time.
        let due: Vec<ConnId> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.s.conns.get(id).is_some_and(|c| {
                    now >= c.pex.next_allowed() && c.remote_ext.contains_key(pex::NAME)
                })
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let members: BTreeMap<ConnId, (SocketAddr, PexFlags)> = self
            .t
            .conns
            .iter()
            .filter_map(|id| {
                let c = self.s.conns.get(id)?;
                let (addr, mut flags) = if c.outbound {
                    (c.addr, PexFlags::REACHABLE)
                } else {
                    (c.listen_addr?, 0)
                };
                if c.peer_has.is_full() {
                    flags |= PexFlags::SEED;
                }
                Some((*id, (addr, PexFlags(flags))))
            })
            .collect();
        for id in due {
            let Some(c) = self.s.conns.get_mut(&id) else {
                continue;
            };
            let Some(&remote) = c.remote_ext.get(pex::NAME) else {
                continue;
            };
            let others: BTreeMap<SocketAddr, PexFlags> = members
                .iter()
                .filter(|(other, _)| **other != id)
                .map(|(_, entry)| *entry)
                .collect();
            let Some(msg) = c.pex.poll(now, &others) else {
                continue;
            };
            self.s.trace(id, "out", "ut_pex", msg.describe());
            self.s.send(
                id,
                Message::Extended {
                    id: remote,
                    payload: Bytes::from(msg.encode()),
                },
            );
        }
    }
}
