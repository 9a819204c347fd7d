//! Byte counts and rates written by people: `--max-upload-rate 20MB`, `--piece-size 512KiB`, a scenario's
//! `size = "50MB"`. One rule everywhere, the SI/IEC one: `K`, `M`, `G` (with or without a `B`) are powers of
//! 1000 and `KiB`, `MiB`, `GiB` powers of 1024; case-insensitive; a fraction (`1.5MB`) and a trailing `/s`
//! are allowed. So `512K` is 512,000 bytes and `512KiB` 524,288.
//!
//! Hand-written (thirty lines): the crates that parse sizes either read `K` as 1024 or accept units this
//! rule refuses, and the rule is the point.

use enjambre_core::metainfo::{MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};

/// The largest count accepted, far above any disk or rate, so that the arithmetic never overflows.
const MAX_BYTES: f64 = 1e18;

/// Why a byte count was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// Not a number with an optional unit.
    #[error("cannot read {0:?} as a byte count (examples: 1000000, 500KB, 20MB, 512KiB, 1GiB)")]
    Syntax(String),
    /// Zero where a positive count is needed (a rate, a cap).
    #[error("{0:?} is zero bytes; give a positive count (examples: 500KB, 20MB, 512KiB)")]
    Zero(String),
    /// A well-formed size that is not a power of two in 16 KiB..=64 MiB.
    #[error(
        "piece length {0} is not a power of two between 16 KiB and 64 MiB (KiB and MiB are powers of \
         1024; K and M are powers of 1000, so 512KiB is a piece length and 512K is not)"
    )]
    NotPieceLength(u64),
}

/// Parse a byte count such as `"0"`, `"1000000"`, `"20MB"`, `"20MB/s"`, `"512KiB"` or `"1.5M"` by the rule
/// at the top of this module.
pub fn parse_byte_count(text: &str) -> Result<u64, ByteSizeError> {
    let syntax = || ByteSizeError::Syntax(text.to_string());
    let t = text.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("/S"))
        .unwrap_or(t);
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(syntax()),
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err(syntax());
    }
    let value: f64 = number.parse().map_err(|_| syntax())?;
    let bytes = (value * multiplier).round();
    if !(0.0..=MAX_BYTES).contains(&bytes) {
        return Err(syntax());
    }
    Ok(bytes as u64)
}

/// Parse a positive byte count or rate (a cap, a rate): [`parse_byte_count`] without zero.
pub fn parse_bytes(text: &str) -> Result<u64, ByteSizeError> {
    match parse_byte_count(text)? {
        0 => Err(ByteSizeError::Zero(text.to_string())),
        n => Ok(n),
    }
}

/// Whether `n` may be a torrent's piece length: a power of two in 16 KiB..=64 MiB.
pub fn is_piece_length(n: u64) -> bool {
    n.is_power_of_two() && (u64::from(MIN_PIECE_LENGTH)..=u64::from(MAX_PIECE_LENGTH)).contains(&n)
}

/// Parse a piece length such as `"16384"`, `"512KiB"` or `"1MiB"`: a byte count that [`is_piece_length`].
pub fn parse_piece_length(text: &str) -> Result<u32, ByteSizeError> {
    let n = parse_byte_count(text)?;
    if !is_piece_length(n) {
        return Err(ByteSizeError::NotPieceLength(n));
    }
    u32::try_from(n).map_err(|_| ByteSizeError::NotPieceLength(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_binary_units() {
        let ok = [
            ("0", 0),
            ("1", 1),
            ("1000000", 1_000_000),
            ("20MB", 20_000_000),
            ("20mb/s", 20_000_000),
            ("16M", 16_000_000),
            ("512K", 512_000),
            ("512KiB", 512 * 1024),
            ("512 kib", 512 * 1024),
            (" 7 B ", 7),
            ("1.5MB", 1_500_000),
            ("2G", 2_000_000_000),
            ("1GiB", 1 << 30),
            ("100k", 100_000),
        ];
        for (text, want) in ok {
            assert_eq!(parse_byte_count(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "MB",
            "-5",
            "1.2.3",
            "12 parsecs",
            "1e3",
            "5TB",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_byte_count(bad),
                Err(ByteSizeError::Syntax(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn rates_and_caps_are_positive() {
        assert_eq!(parse_bytes("512K"), Ok(512_000));
        assert_eq!(parse_bytes("20MB/s"), Ok(20_000_000));
        for zero in ["0", "0KB", "0.0001"] {
            assert_eq!(parse_bytes(zero), Err(ByteSizeError::Zero(zero.into())));
        }
        assert!(matches!(parse_bytes("x"), Err(ByteSizeError::Syntax(_))));
    }

    #[test]
    fn piece_lengths_are_powers_of_two_in_range() {
        assert_eq!(parse_piece_length("16384"), Ok(16384));
        assert_eq!(parse_piece_length("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_piece_length(" 512 kib "), Ok(512 * 1024));
        assert_eq!(parse_piece_length("1MiB"), Ok(1 << 20));
        assert_eq!(parse_piece_length("64mib"), Ok(64 << 20));
        assert_eq!(parse_piece_length("16KiB"), Ok(16 << 10));
        for (text, n) in [
            ("512K", 512_000),
            ("1MB", 1_000_000),
            ("8KiB", 8 << 10),
            ("128MiB", 128 << 20),
            ("300KiB", 300 << 10),
            ("1.5MiB", 3 << 19),
            ("1GiB", 1 << 30),
            ("0", 0),
        ] {
            assert_eq!(
                parse_piece_length(text),
                Err(ByteSizeError::NotPieceLength(n)),
                "{text}"
            );
        }
        for bad in ["", "KiB", "-16384", "18446744073709551615M"] {
            assert!(
                matches!(parse_piece_length(bad), Err(ByteSizeError::Syntax(_))),
                "{bad}"
            );
        }
    }
}
