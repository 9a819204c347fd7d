//! `ut_pex` (BEP 11): peers telling each other whom they are connected to.
//!
//! A message is a bencoded dictionary of compact address lists: `added` (IPv4, with one flags byte per peer in
//! `added.f`), `dropped`, and the same for IPv6 (`added6`, `added6.f`, `dropped6`). [`PexMessage::parse`]
//! refuses ragged lists and keeps at most [`LIMITS`] entries of each; [`PexSender`] is the sending policy: at
//! most one message a minute, each with at most 50 added and 50 dropped peers, telling only what changed
//! since the previous one.

use crate::bencode::{self, Value};
use crate::compact::{self, Family};
use crate::time::Instant;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The name under which peers advertise the extension in the BEP 10 handshake.
pub const NAME: &str = "ut_pex";

/// Limits of the PEX codec and sending policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PexLimits {
    /// Least time between two messages to the same peer (BEP 11: one a minute).
    pub min_interval: Duration,
    /// Most added peers we put in one message (BEP 11: 50).
    pub max_added_sent: usize,
    /// Most dropped peers we put in one message (BEP 11: 50).
    pub max_dropped_sent: usize,
    /// Most added (or dropped) peers of one family we keep from a received message; the rest is ignored.
    pub max_received: usize,
}

/// The limits the codec and [`PexSender`] apply.
pub const LIMITS: PexLimits = PexLimits {
    min_interval: Duration::from_secs(60),
    max_added_sent: 50,
    max_dropped_sent: 50,
    max_received: 100,
};

/// BEP 11 flags of an added peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// The peer prefers encrypted connections.
    pub const ENCRYPTION: u8 = 0x01;
    /// The peer is a seed (upload only).
    pub const SEED: u8 = 0x02;
    /// The peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// The peer supports the holepunch extension.
    pub const HOLEPUNCH: u8 = 0x08;
    /// The sender reached the peer by an outgoing connection (so it is reachable).
    pub const REACHABLE: u8 = 0x10;

    /// Whether the peer says it is a seed.
    pub fn is_seed(self) -> bool {
        self.0 & Self::SEED != 0
    }
}

/// One `ut_pex` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PexMessage {
    /// Peers the sender connected to since its previous message, with their flags.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers the sender disconnected from since its previous message.
    pub dropped: Vec<SocketAddr>,
}

/// Why a `ut_pex` payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    /// Not bencode.
    #[error("ut_pex message is not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// Bencode, but not a dictionary.
    #[error("ut_pex message is not a dictionary")]
    NotADict,
    /// A list is not a byte string.
    #[error("ut_pex field '{0}' is not a byte string")]
    WrongType(&'static str),
    /// A list is not a whole number of address records.
    #[error("ut_pex field '{field}': {source}")]
    Ragged {
        /// The key.
        field: &'static str,
        /// The length problem.
        source: compact::CompactLenError,
    },
}

const KEYS_V4: [&str; 3] = ["added", "added.f", "dropped"];
const KEYS_V6: [&str; 3] = ["added6", "added6.f", "dropped6"];

impl PexMessage {
    /// One line for a trace: `added 10.0.0.2:6881 10.0.0.3:6881, dropped 10.0.0.4:6881` (`none` for an
    /// empty list).
    pub fn describe(&self) -> String {
        let list = |addrs: Vec<String>| {
            if addrs.is_empty() {
                "none".to_string()
            } else {
                addrs.join(" ")
            }
        };
        format!(
            "added {}, dropped {}",
            list(self.added.iter().map(|(a, _)| a.to_string()).collect()),
            list(self.dropped.iter().map(ToString::to_string).collect())
        )
    }

    /// Whether the message tells nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }

    /// Encode as the payload of an extended message.
    pub fn encode(&self) -> Vec<u8> {
        let mut dict = BTreeMap::new();
        for (family, [added_key, flags_key, dropped_key]) in
            [(Family::V4, KEYS_V4), (Family::V6, KEYS_V6)]
        {
            let mut added = Vec::new();
            let mut flags = Vec::new();
            for (addr, f) in self.added.iter().filter(|(a, _)| Family::of(a) == family) {
                compact::push_addr(addr, &mut added);
                flags.push(f.0);
            }
            let mut dropped = Vec::new();
            for addr in self.dropped.iter().filter(|a| Family::of(a) == family) {
                compact::push_addr(addr, &mut dropped);
            }
            for (key, bytes) in [
                (added_key, added),
                (flags_key, flags),
                (dropped_key, dropped),
            ] {
                if !bytes.is_empty() || family == Family::V4 {
                    dict.insert(key.as_bytes().to_vec(), Value::Bytes(bytes));
                }
            }
        }
        bencode::encode(&Value::Dict(dict))
    }

    /// Parse the payload of an extended message. Missing keys are empty lists; a flags list shorter than its
    /// peers list gives the rest no flags.
    pub fn parse(payload: &[u8]) -> Result<PexMessage, PexError> {
        let value = bencode::decode(payload)?;
        let dict = value.as_dict().ok_or(PexError::NotADict)?;
        let bytes = |key: &'static str| -> Result<&[u8], PexError> {
            match dict.get(key.as_bytes()) {
                None => Ok(&[]),
                Some(v) => v.as_bytes().ok_or(PexError::WrongType(key)),
            }
        };
        let list = |key: &'static str, family| {
            compact::read_addrs(bytes(key)?, family, LIMITS.max_received)
                .map_err(|source| PexError::Ragged { field: key, source })
        };
        let mut msg = PexMessage::default();
        for (family, [added_key, flags_key, dropped_key]) in
            [(Family::V4, KEYS_V4), (Family::V6, KEYS_V6)]
        {
            let flags = bytes(flags_key)?;
            let added = list(added_key, family)?;
            msg.added.extend(
                added
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| (a, PexFlags(flags.get(i).copied().unwrap_or(0)))),
            );
            msg.dropped.extend(list(dropped_key, family)?);
        }
        Ok(msg)
    }
}

/// The PEX sending policy towards one peer: what we told it, and when.
///
/// Every open connection keeps one, so what it told is a sorted vector sized to its contents (32 bytes an
/// address) rather than a B-tree set: at 10,000 peers the sets of ~50 addresses on every connection were an
/// eighth of the simulator's heap (bench/RESULTS.md, issue 13). Lookups are binary searches over at most a
/// few dozen entries; the set changes at most once a minute.
#[derive(Debug, Clone, Default)]
pub struct PexSender {
    /// The addresses told as added and not since as dropped, sorted, without duplicates.
    told: Vec<SocketAddr>,
    last_sent: Option<Instant>,
}

impl PexSender {
    /// A sender that has told nothing yet.
    pub fn new() -> PexSender {
        PexSender::default()
    }

    /// The earliest instant a next message may go out.
    pub fn next_allowed(&self) -> Instant {
        self.last_sent
            .map_or(Instant::ZERO, |t| t + LIMITS.min_interval)
    }

    /// The message to send now given whom we are `connected` to (the receiving peer itself left out by the
    /// caller), or `None` if it is too early or nothing changed. What it returns counts as told.
    pub fn poll(
        &mut self,
        now: Instant,
        connected: &BTreeMap<SocketAddr, PexFlags>,
    ) -> Option<PexMessage> {
        if self.last_sent.is_some() && now < self.next_allowed() {
            return None;
        }
        let added: Vec<(SocketAddr, PexFlags)> = connected
            .iter()
            .filter(|(a, _)| self.told.binary_search(a).is_err())
            .take(LIMITS.max_added_sent)
            .map(|(a, f)| (*a, *f))
            .collect();
        let dropped: Vec<SocketAddr> = self
            .told
            .iter()
            .filter(|a| !connected.contains_key(a))
            .take(LIMITS.max_dropped_sent)
            .copied()
            .collect();
        let msg = PexMessage { added, dropped };
        if msg.is_empty() {
            return None;
        }
        self.told = told_after(&self.told, &msg);
        self.last_sent = Some(now);
        Some(msg)
    }
}

/// The told set after `msg`: `told` with its added addresses (none of them in `told`) merged in and its
/// dropped ones (all of them in `told`) left out, in order and allocated to its exact size.
fn told_after(told: &[SocketAddr], msg: &PexMessage) -> Vec<SocketAddr> {
    let mut next = Vec::with_capacity(told.len() + msg.added.len() - msg.dropped.len());
    let mut added = msg.added.iter().map(|(a, _)| *a).peekable();
    let mut dropped = msg.dropped.iter().peekable();
    for a in told {
        while let Some(new) = added.next_if(|new| new < a) {
            next.push(new);
        }
        if dropped.next_if(|d| *d == a).is_none() {
            next.push(*a);
        }
    }
    next.extend(added);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_families_round_trip_with_flags() {
        let msg = PexMessage {
            added: vec![
                (addr("10.0.0.1:6881"), PexFlags(PexFlags::SEED)),
                (addr("10.0.0.2:1"), PexFlags(0)),
                (addr("[2001:db8::1]:7000"), PexFlags(PexFlags::REACHABLE)),
            ],
            dropped: vec![addr("10.0.0.9:9"), addr("[::2]:2")],
        };
        let wire = msg.encode();
        assert!(wire.starts_with(b"d5:added12:\x0a\x00\x00\x01\x1a\xe1"));
        assert_eq!(PexMessage::parse(&wire), Ok(msg));
        assert_eq!(
            PexMessage::default().encode(),
            b"d5:added0:7:added.f0:7:dropped0:e"
        );
    }

    #[test]
    fn hostile_messages_are_named_and_long_lists_capped() {
        assert_eq!(PexMessage::parse(b"le"), Err(PexError::NotADict));
        assert_eq!(
            PexMessage::parse(b"d5:addedi1ee"),
            Err(PexError::WrongType("added"))
        );
        assert_eq!(
            PexMessage::parse(b"d7:dropped5:abcdee"),
            Err(PexError::Ragged {
                field: "dropped",
                source: compact::CompactLenError { len: 5, record: 6 }
            })
        );
        let mut wire = b"d5:added1200:".to_vec();
        wire.extend([1u8; 1200]);
        wire.push(b'e');
        let msg = PexMessage::parse(&wire).unwrap();
        assert_eq!(msg.added.len(), LIMITS.max_received);
        assert_eq!(msg.added[0].1, PexFlags(0), "no flags list: no flags");
    }

    #[test]
    fn sender_keeps_to_one_message_a_minute_and_fifty_peers() {
        let mut s = PexSender::new();
        let mut connected: BTreeMap<SocketAddr, PexFlags> = (0..70u16)
            .map(|i| (SocketAddr::from(([10, 0, 0, 1], 1000 + i)), PexFlags(0)))
            .collect();
        let t0 = Instant::from_micros(5_000_000);
        let first = s.poll(t0, &connected).unwrap();
        assert_eq!(first.added.len(), 50);
        assert!(first.dropped.is_empty());
        assert_eq!(s.poll(t0 + Duration::from_secs(59), &connected), None);
        let gone = *connected.keys().next().unwrap();
        connected.remove(&gone);
        let t1 = t0 + Duration::from_secs(60);
        let second = s.poll(t1, &connected).unwrap();
        assert_eq!(second.added.len(), 20, "the rest of the 70");
        assert_eq!(second.dropped, vec![gone]);
        assert_eq!(s.next_allowed(), t1 + Duration::from_secs(60));
        assert_eq!(
            s.poll(t1 + Duration::from_secs(120), &connected),
            None,
            "nothing changed"
        );
    }

    #[test]
    fn the_told_set_follows_every_message_like_a_set() {
        // Membership churns over 200 minutes; the sorted vector must always hold what a set would (the
        // addresses told as added and not since dropped), so that the next message is what it would be.
        let mut s = PexSender::new();
        let mut model = std::collections::BTreeSet::new();
        let mut messages = 0;
        for minute in 0..200u64 {
            let connected: BTreeMap<SocketAddr, PexFlags> = (0..120u16)
                .filter(|i| (u64::from(*i) * 7 + minute * 13) % 5 < 2 + minute % 3)
                .map(|i| {
                    (
                        SocketAddr::from(([10, 0, (i % 3) as u8, 1], 1000 + i)),
                        PexFlags(0),
                    )
                })
                .collect();
            let now = Instant::from_micros(minute * 60_000_000);
            if let Some(msg) = s.poll(now, &connected) {
                messages += 1;
                for (a, _) in &msg.added {
                    assert!(model.insert(*a), "{a} added twice");
                }
                for a in &msg.dropped {
                    assert!(model.remove(a), "{a} dropped but never added");
                }
            }
            assert_eq!(
                s.told,
                model.iter().copied().collect::<Vec<_>>(),
                "minute {minute}"
            );
            assert_eq!(
                s.told.capacity(),
                s.told.len(),
                "minute {minute}: sized to its contents"
            );
        }
        assert!(messages > 100, "the walk sends most minutes: {messages}");
        assert!(model.len() > 30, "the walk ends with addresses told");
    }
}
