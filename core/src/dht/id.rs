//! Node ids and the XOR metric of Kademlia (BEP 5): ids and info hashes share one 160-bit space, and the
//! distance between two points is their bitwise XOR read as an unsigned number.

use rand_core::RngCore;
use std::fmt;

/// Bytes in a node id.
pub const ID_LEN: usize = 20;
/// Bits in a node id: also the number of buckets of the routing table.
pub const ID_BITS: usize = ID_LEN * 8;

/// A 160-bit DHT node id (or an info hash used as a lookup target).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; ID_LEN]);

/// The XOR distance between two ids; orders like the unsigned number it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Distance(pub [u8; ID_LEN]);

impl NodeId {
    /// A uniformly random id.
    pub fn random(rng: &mut impl RngCore) -> NodeId {
        let mut id = [0u8; ID_LEN];
        rng.fill_bytes(&mut id);
        NodeId(id)
    }

    /// Read an id from exactly [`ID_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        <[u8; ID_LEN]>::try_from(bytes).ok().map(NodeId)
    }

    /// The XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; ID_LEN];
        for (out, (a, b)) in d.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *out = a ^ b;
        }
        Distance(d)
    }

    /// Number of leading bits `self` shares with `other` ([`ID_BITS`] if equal): the index of the bucket
    /// `other` falls in, in a routing table owned by `self`.
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        self.distance(other).leading_zeros()
    }

    /// A random id sharing exactly `prefix_len` leading bits with `self` (the bit after them flipped), used
    /// to refresh one bucket. `prefix_len` at or past [`ID_BITS`] gives `self`.
    pub fn random_in_bucket(&self, prefix_len: usize, rng: &mut impl RngCore) -> NodeId {
        if prefix_len >= ID_BITS {
            return *self;
        }
        let mut out = NodeId::random(rng).0;
        for (bit, byte) in (0..=prefix_len).map(|b| (b, b / 8)) {
            let mask = 0x80u8 >> (bit % 8);
            let ours = self.0.get(byte).copied().unwrap_or(0) & mask;
            let want = if bit == prefix_len { ours ^ mask } else { ours };
            if let Some(o) = out.get_mut(byte) {
                *o = (*o & !mask) | want;
            }
        }
        NodeId(out)
    }

    /// Lower-case hex, as in traces.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Distance {
    /// Leading zero bits of the distance.
    pub fn leading_zeros(&self) -> usize {
        let mut zeros = 0;
        for b in self.0 {
            if b == 0 {
                zeros += 8;
            } else {
                return zeros + b.leading_zeros() as usize;
            }
        }
        zeros
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_hex())
    }
}

impl fmt::Display for NodeId {
    /// The first 8 hex digits: enough to tell nodes apart in a trace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().get(..8).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn xor_metric() {
        let a = NodeId([0; 20]);
        let mut b = [0u8; 20];
        b[2] = 0x10;
        let b = NodeId(b);
        assert_eq!(a.common_prefix_len(&b), 19);
        assert_eq!(a.common_prefix_len(&a), ID_BITS);
        assert_eq!(a.distance(&b), b.distance(&a));
        let mut c = [0u8; 20];
        c[19] = 1;
        assert!(a.distance(&NodeId(c)) < a.distance(&b));
    }

    #[test]
    fn random_in_bucket_lands_in_that_bucket() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let me = NodeId::random(&mut rng);
        for prefix in [0, 1, 7, 8, 9, 100, 159] {
            for _ in 0..20 {
                let id = me.random_in_bucket(prefix, &mut rng);
                assert_eq!(me.common_prefix_len(&id), prefix);
            }
        }
        assert_eq!(me.random_in_bucket(160, &mut rng), me);
    }
}
