//! The routing table saved between runs: our node id and the contacts, as a bencoded dictionary
//! `{id: 20 bytes, nodes: compact node info, nodes6: compact IPv6 node info}`. Reading it back is as strict as
//! reading KRPC: lengths checked, at most [`MAX_SAVED_NODES`] contacts kept.

use super::id::{NodeId, ID_LEN};
use super::krpc::NodeInfo;
use crate::bencode::{self, Value};
use crate::compact::{self, Family};
use std::collections::BTreeMap;

/// Most contacts read back from a saved table.
pub const MAX_SAVED_NODES: usize = 2000;

/// A saved routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTable {
    /// Our node id, reused so that others' tables still point at us.
    pub id: NodeId,
    /// Contacts to try first when joining again.
    pub nodes: Vec<NodeInfo>,
}

/// A saved table that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedTableError {
    /// Not bencode.
    #[error("saved DHT table is not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// A key is missing or malformed.
    #[error("saved DHT table: key '{0}' is missing or malformed")]
    Invalid(&'static str),
}

impl SavedTable {
    /// Encode for the state file.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        d.insert(b"id".to_vec(), Value::Bytes(self.id.0.to_vec()));
        for (family, key) in [(Family::V4, "nodes"), (Family::V6, "nodes6")] {
            let mut raw = Vec::new();
            for n in self.nodes.iter().filter(|n| Family::of(&n.addr) == family) {
                raw.extend_from_slice(&n.id.0);
                compact::push_addr(&n.addr, &mut raw);
            }
            d.insert(key.as_bytes().to_vec(), Value::Bytes(raw));
        }
        bencode::encode(&Value::Dict(d))
    }

    /// Read a state file.
    pub fn parse(bytes: &[u8]) -> Result<SavedTable, SavedTableError> {
        let value = bencode::decode(bytes)?;
        let id = value
            .get(b"id")
            .and_then(Value::as_bytes)
            .and_then(NodeId::from_slice)
            .ok_or(SavedTableError::Invalid("id"))?;
        let mut nodes = Vec::new();
        for (family, key) in [(Family::V4, "nodes"), (Family::V6, "nodes6")] {
            let Some(raw) = value.get(key.as_bytes()) else {
                continue;
            };
            let raw = raw.as_bytes().ok_or(SavedTableError::Invalid(key))?;
            let record = ID_LEN + family.record_len();
            if !raw.len().is_multiple_of(record) {
                return Err(SavedTableError::Invalid(key));
            }
            for chunk in raw.chunks_exact(record) {
                if nodes.len() == MAX_SAVED_NODES {
                    break;
                }
                let (id, addr) = chunk.split_at(ID_LEN);
                if let (Some(id), Some(addr)) =
                    (NodeId::from_slice(id), compact::read_addr(addr, family))
                {
                    nodes.push(NodeInfo { id, addr });
                }
            }
        }
        Ok(SavedTable { id, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files() {
        let saved = SavedTable {
            id: NodeId([7; 20]),
            nodes: vec![
                NodeInfo {
                    id: NodeId([1; 20]),
                    addr: "10.0.0.1:6881".parse().unwrap(),
                },
                NodeInfo {
                    id: NodeId([2; 20]),
                    addr: "[::1]:6881".parse().unwrap(),
                },
            ],
        };
        assert_eq!(SavedTable::parse(&saved.encode()), Ok(saved));
        assert_eq!(
            SavedTable::parse(b"d2:id3:abce"),
            Err(SavedTableError::Invalid("id"))
        );
        assert_eq!(
            SavedTable::parse(b"d2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes3:abce"),
            Err(SavedTableError::Invalid("nodes"))
        );
        assert!(matches!(
            SavedTable::parse(b"d2:id"),
            Err(SavedTableError::Bencode(_))
        ));
    }
}
