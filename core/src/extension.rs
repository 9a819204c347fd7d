//! The BEP 10 extension handshake: the bencoded dictionary sent as extended message 0. enjambre advertises
//! `ut_metadata` ([`metadata`], BEP 9) and `ut_pex` ([`pex`], BEP 11), and tells peers its listen port
//! (`p`), its client name (`v`), how many requests it queues (`reqq`) and the size of the info dictionary it
//! can serve (`metadata_size`), whether it only uploads (`upload_only`, BEP 21: it holds everything it wants),
//! and reads the same from them. Unknown keys are ignored.

pub mod metadata;
pub mod pex;

use crate::bencode::{self, Value};
use std::collections::BTreeMap;

/// Extended message id of the handshake.
pub const HANDSHAKE_ID: u8 = 0;
/// The id we ask peers to send `ut_metadata` (BEP 9) messages to us with.
pub const OUR_METADATA_ID: u8 = 1;
/// The id we ask peers to send `ut_pex` (BEP 11) messages to us with.
pub const OUR_PEX_ID: u8 = 2;

/// The extension messages enjambre supports, with the ids peers must send them to us with.
pub fn our_messages() -> BTreeMap<String, u8> {
    BTreeMap::from([
        (metadata::NAME.to_string(), OUR_METADATA_ID),
        (pex::NAME.to_string(), OUR_PEX_ID),
    ])
}

/// The fields of an extension handshake that enjambre uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Extension messages the sender supports, by name, with the id it wants them sent with.
    pub messages: BTreeMap<String, u8>,
    /// The sender's listen port.
    pub listen_port: Option<u16>,
    /// The sender's client name and version.
    pub client: Option<String>,
    /// How many outstanding requests the sender queues.
    pub reqq: Option<u32>,
    /// BEP 9: size of the sender's info dictionary, if it can serve it.
    pub metadata_size: Option<u32>,
    /// BEP 21: the sender downloads nothing more (a seed, or done with what it wanted). A handshake sent again
    /// later (BEP 10 allows it) may set it when the sender completes.
    pub upload_only: bool,
}

/// A handshake payload that is not a bencoded dictionary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    /// Not bencode.
    #[error("extension handshake is not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// Bencode, but not a dictionary.
    #[error("extension handshake is not a dictionary")]
    NotADict,
}

impl ExtHandshake {
    /// Encode as the payload of extended message 0.
    pub fn encode(&self) -> Vec<u8> {
        let mut dict = BTreeMap::new();
        let m: BTreeMap<Vec<u8>, Value> = self
            .messages
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Value::Int(i64::from(*v))))
            .collect();
        dict.insert(b"m".to_vec(), Value::Dict(m));
        if let Some(p) = self.listen_port {
            dict.insert(b"p".to_vec(), Value::Int(i64::from(p)));
        }
        if let Some(v) = &self.client {
            dict.insert(b"v".to_vec(), Value::Bytes(v.as_bytes().to_vec()));
        }
        if let Some(q) = self.reqq {
            dict.insert(b"reqq".to_vec(), Value::Int(i64::from(q)));
        }
        if let Some(size) = self.metadata_size {
            dict.insert(b"metadata_size".to_vec(), Value::Int(i64::from(size)));
        }
        if self.upload_only {
            dict.insert(b"upload_only".to_vec(), Value::Int(1));
        }
        bencode::encode(&Value::Dict(dict))
    }

    /// Parse a payload; fields of the wrong type or out of range are treated as absent.
    pub fn parse(payload: &[u8]) -> Result<ExtHandshake, ExtError> {
        let value = bencode::decode(payload)?;
        let Some(dict) = value.as_dict() else {
            return Err(ExtError::NotADict);
        };
        let messages = dict
            .get(b"m".as_slice())
            .and_then(Value::as_dict)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        let name = std::str::from_utf8(k).ok()?;
                        let id = u8::try_from(v.as_int()?).ok()?;
                        Some((name.to_string(), id))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let int = |key: &[u8]| dict.get(key).and_then(Value::as_int);
        Ok(ExtHandshake {
            messages,
            listen_port: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            client: dict
                .get(b"v".as_slice())
                .and_then(Value::as_str)
                .map(|s| s.chars().take(64).collect()),
            reqq: int(b"reqq").and_then(|q| u32::try_from(q).ok()),
            metadata_size: int(b"metadata_size")
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s > 0 && *s as usize <= metadata::LIMITS.max_metadata_size),
            upload_only: int(b"upload_only").is_some_and(|v| v != 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = ExtHandshake {
            messages: BTreeMap::from([("ut_metadata".to_string(), 3)]),
            listen_port: Some(6881),
            client: Some("enjambre 0.1".into()),
            reqq: Some(256),
            metadata_size: Some(31_235),
            upload_only: true,
        };
        assert_eq!(ExtHandshake::parse(&h.encode()).unwrap(), h);
        let h = ExtHandshake {
            upload_only: false,
            ..h
        };
        assert_eq!(ExtHandshake::parse(&h.encode()).unwrap(), h);
        assert!(!h.encode().windows(11).any(|w| w == b"upload_only"));
    }

    #[test]
    fn odd_fields_are_ignored_and_garbage_is_an_error() {
        let h = ExtHandshake::parse(b"d1:md6:ut_pexi-1ee1:pi99999e1:v3:abc4:yippi1ee").unwrap();
        assert_eq!(h.listen_port, None, "port out of range");
        assert!(h.messages.is_empty(), "negative id");
        assert_eq!(h.client.as_deref(), Some("abc"));
        assert!(!h.upload_only);
        let h = ExtHandshake::parse(b"d11:upload_onlyi1ee").unwrap();
        assert!(h.upload_only);
        let h = ExtHandshake::parse(b"d11:upload_only1:xe").unwrap();
        assert!(!h.upload_only, "not an integer");
        assert_eq!(ExtHandshake::parse(b"li1ee"), Err(ExtError::NotADict));
        assert!(matches!(
            ExtHandshake::parse(b"d1:m"),
            Err(ExtError::Bencode(_))
        ));
    }
}
