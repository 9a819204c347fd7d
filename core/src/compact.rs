//! Compact peer addresses (BEP 23 style): an IPv4 address and port in 6 bytes, an IPv6 address and port in
//! 18, concatenated into one byte string. Used by PEX (BEP 11) and the DHT (BEP 5), whose lists of peers and
//! nodes are strings of such records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Address family of a compact list: each family has its own record size and its own key on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 4-byte address + 2-byte port.
    V4,
    /// 16-byte address + 2-byte port.
    V6,
}

impl Family {
    /// Bytes of one address record (address and port).
    pub const fn record_len(self) -> usize {
        match self {
            Family::V4 => 6,
            Family::V6 => 18,
        }
    }

    /// The family of `addr`.
    pub fn of(addr: &SocketAddr) -> Family {
        match addr {
            SocketAddr::V4(_) => Family::V4,
            SocketAddr::V6(_) => Family::V6,
        }
    }
}

/// A compact list whose length is not a whole number of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("compact list of {len} bytes is not a multiple of {record} bytes")]
pub struct CompactLenError {
    /// The list's length.
    pub len: usize,
    /// The record size its family requires.
    pub record: usize,
}

/// Append `addr` as one compact record (6 or 18 bytes, by its family).
pub fn push_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Read one record of `family` from exactly `record_len` bytes.
pub fn read_addr(record: &[u8], family: Family) -> Option<SocketAddr> {
    if record.len() != family.record_len() {
        return None;
    }
    let (ip, port) = record.split_at(record.len() - 2);
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(port).ok()?);
    let ip = match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)),
    };
    Some(SocketAddr::new(ip, port))
}

/// Read a whole list of `family` records, keeping at most `max` (the rest is ignored, not an error: the
/// caller's limit protects memory, the sender broke no format).
pub fn read_addrs(
    bytes: &[u8],
    family: Family,
    max: usize,
) -> Result<Vec<SocketAddr>, CompactLenError> {
    let record = family.record_len();
    if !bytes.len().is_multiple_of(record) {
        return Err(CompactLenError {
            len: bytes.len(),
            record,
        });
    }
    Ok(bytes
        .chunks_exact(record)
        .take(max)
        .filter_map(|r| read_addr(r, family))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_byte_exact_and_round_trip() {
        let v4: SocketAddr = "1.2.3.4:6881".parse().unwrap();
        let v6: SocketAddr = "[::1]:258".parse().unwrap();
        let mut out = Vec::new();
        push_addr(&v4, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 0x1a, 0xe1]);
        let mut out6 = Vec::new();
        push_addr(&v6, &mut out6);
        assert_eq!(out6.len(), 18);
        assert_eq!(&out6[16..], [1, 2]);
        assert_eq!(read_addrs(&out, Family::V4, 10), Ok(vec![v4]));
        assert_eq!(read_addrs(&out6, Family::V6, 10), Ok(vec![v6]));
    }

    #[test]
    fn ragged_lists_are_refused_and_long_ones_capped() {
        assert_eq!(
            read_addrs(&[0; 7], Family::V4, 10),
            Err(CompactLenError { len: 7, record: 6 })
        );
        assert_eq!(read_addrs(&[0; 60], Family::V4, 3).unwrap().len(), 3);
        assert_eq!(read_addr(&[0; 5], Family::V4), None);
    }
}
