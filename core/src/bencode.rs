//! Bencode (BEP 3): a value type, a strict-but-lenient decoder and a canonical encoder.
//!
//! The decoder is strict about what changes meaning or hides ambiguity (non-canonical integers, duplicate
//! dictionary keys, trailing bytes, nesting deeper than [`MAX_DEPTH`]) and lenient about what other clients
//! commonly get wrong without harm (dictionary keys out of order). It never panics, never recurses deeper than
//! [`MAX_DEPTH`], and never allocates more than the input can justify: a claimed string length is checked
//! against the bytes actually left before anything is copied.

use std::collections::BTreeMap;
use std::ops::Range;

/// Deepest nesting of lists and dictionaries the decoder accepts.
pub const MAX_DEPTH: usize = 64;

/// A decoded bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer (`i42e`).
    Int(i64),
    /// A byte string (`4:spam`), not necessarily UTF-8.
    Bytes(Vec<u8>),
    /// A list (`l...e`).
    List(Vec<Value>),
    /// A dictionary (`d...e`) keyed by byte strings; kept sorted, as canonical encoding requires.
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why some bytes are not acceptable bencode. Offsets are byte positions in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ended in the middle of a value.
    #[error("unexpected end of input at byte {offset}")]
    UnexpectedEof {
        /// Where more input was needed.
        offset: usize,
    },
    /// An integer (or string length) is malformed: no digits, or a non-digit inside it.
    #[error("invalid integer at byte {offset}")]
    InvalidInt {
        /// Where the integer starts.
        offset: usize,
    },
    /// An integer does not fit in an `i64`.
    #[error("integer out of range at byte {offset}")]
    IntOverflow {
        /// Where the integer starts.
        offset: usize,
    },
    /// An integer or string length has a leading zero (`i03e`, `03:abc`): not canonical.
    #[error("leading zero in number at byte {offset}")]
    LeadingZero {
        /// Where the number starts.
        offset: usize,
    },
    /// The integer `i-0e`, which is not canonical.
    #[error("negative zero at byte {offset}")]
    NegativeZero {
        /// Where the integer starts.
        offset: usize,
    },
    /// The same key appears twice in one dictionary.
    #[error("duplicate dictionary key at byte {offset}")]
    DuplicateKey {
        /// Where the repeated key starts.
        offset: usize,
    },
    /// A dictionary key is not a byte string.
    #[error("dictionary key is not a byte string at byte {offset}")]
    KeyNotString {
        /// Where the offending key starts.
        offset: usize,
    },
    /// Lists and dictionaries are nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} at byte {offset}")]
    TooDeep {
        /// Where the container that went too deep starts.
        offset: usize,
    },
    /// A complete value was followed by more bytes.
    #[error("trailing data at byte {offset}")]
    TrailingData {
        /// Where the extra bytes start.
        offset: usize,
    },
    /// A byte that cannot start or continue a value here.
    #[error("invalid byte 0x{byte:02x} at byte {offset}")]
    InvalidByte {
        /// Where the byte is.
        offset: usize,
        /// The byte itself.
        byte: u8,
    },
    /// A string claims more bytes than the input holds (or more than fits in memory).
    #[error("string length at byte {offset} exceeds the input")]
    LengthOverflow {
        /// Where the length prefix starts.
        offset: usize,
    },
    /// [`dict_value_span`] was given input whose top-level value is not a dictionary.
    #[error("top-level value is not a dictionary")]
    ExpectedDict,
}

impl Value {
    /// The integer, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The raw bytes, if this is a `Bytes`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The bytes as UTF-8 text, if this is a `Bytes` holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The elements, if this is a `List`.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The map, if this is a `Dict`.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value under `key`, if this is a `Dict` holding that key.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key))
    }

    /// A `Bytes` value from anything convertible to bytes (`&str`, `String`, `Vec<u8>`, `&[u8]`).
    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }

    /// A `Dict` from `(key, value)` pairs; a later pair replaces an earlier one with the same key.
    pub fn dict<K: Into<Vec<u8>>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Dict(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Decodes exactly one value spanning the whole input; bytes after it are [`BencodeError::TrailingData`].
pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(BencodeError::TrailingData { offset: used });
    }
    Ok(value)
}

/// Decodes one value from the start of the input; returns it and how many bytes it used.
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), BencodeError> {
    let mut parser = Parser { input, pos: 0 };
    let value = parser.value(0)?;
    Ok((value, parser.pos))
}

/// Encodes a value canonically: dictionary keys in sorted order, integers without leading zeros.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

/// Finds the raw byte span of the value stored under `key` in the top-level dictionary of `input`.
///
/// The whole input must be valid bencode (as for [`decode`]); `Ok(None)` means the key is absent. This is how
/// the info hash is computed over the exact `info` bytes a torrent file holds, whatever their key order.
pub fn dict_value_span(input: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, BencodeError> {
    let value = decode(input)?;
    if value.as_dict().is_none() {
        return Err(BencodeError::ExpectedDict);
    }
    let mut parser = Parser { input, pos: 1 };
    while parser.peek() != Some(b'e') {
        let k = parser.byte_string()?;
        let start = parser.pos;
        parser.value(1)?;
        if k == key {
            return Ok(Some(start..parser.pos));
        }
    }
    Ok(None)
}

fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => encode_bytes(b, out),
        Value::List(items) => {
            out.push(b'l');
            items.iter().for_each(|item| encode_into(item, out));
            out.push(b'e');
        }
        Value::Dict(map) => {
            out.push(b'd');
            for (k, item) in map {
                encode_bytes(k, out);
                encode_into(item, out);
            }
            out.push(b'e');
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// A cursor over the input. Every read is bounds-checked; nesting is bounded by [`MAX_DEPTH`].
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Result<u8, BencodeError> {
        let b = self
            .peek()
            .ok_or(BencodeError::UnexpectedEof { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    /// Parses one value; `depth` is the number of containers already open around it.
    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        let offset = self.pos;
        match self.peek() {
            None => Err(BencodeError::UnexpectedEof { offset }),
            Some(b'i') => self.int().map(Value::Int),
            Some(b'0'..=b'9') => self.byte_string().map(|b| Value::Bytes(b.to_vec())),
            Some(b'l') => self.list(depth + 1),
            Some(b'd') => self.dict(depth + 1),
            Some(byte) => Err(BencodeError::InvalidByte { offset, byte }),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep { offset: self.pos });
        }
        Ok(())
    }

    fn list(&mut self, depth: usize) -> Result<Value, BencodeError> {
        self.check_depth(depth)?;
        self.pos += 1; // 'l'
        let mut items = Vec::new();
        while self.peek_or_eof()? != b'e' {
            items.push(self.value(depth)?);
        }
        self.pos += 1; // 'e'
        Ok(Value::List(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Value, BencodeError> {
        self.check_depth(depth)?;
        self.pos += 1; // 'd'
        let mut map = BTreeMap::new();
        while self.peek_or_eof()? != b'e' {
            let key_offset = self.pos;
            if !self.peek_or_eof()?.is_ascii_digit() {
                return Err(BencodeError::KeyNotString { offset: key_offset });
            }
            let key = self.byte_string()?.to_vec();
            let value = self.value(depth)?;
            if map.insert(key, value).is_some() {
                return Err(BencodeError::DuplicateKey { offset: key_offset });
            }
        }
        self.pos += 1; // 'e'
        Ok(Value::Dict(map))
    }

    fn peek_or_eof(&self) -> Result<u8, BencodeError> {
        self.peek()
            .ok_or(BencodeError::UnexpectedEof { offset: self.pos })
    }

    /// Parses `i<digits>e` into an `i64`, refusing non-canonical forms.
    fn int(&mut self) -> Result<i64, BencodeError> {
        let offset = self.pos;
        self.pos += 1; // 'i'
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits = self.digits_until(b'e', offset)?;
        check_canonical(digits, offset)?;
        if negative && digits == b"0" {
            return Err(BencodeError::NegativeZero { offset });
        }
        let magnitude = digits.iter().try_fold(0i64, |acc, d| {
            let d = i64::from(d - b'0');
            let acc = acc.checked_mul(10)?;
            if negative {
                acc.checked_sub(d)
            } else {
                acc.checked_add(d)
            }
        });
        magnitude.ok_or(BencodeError::IntOverflow { offset })
    }

    /// Parses `<len>:<bytes>` and returns the bytes, borrowed from the input.
    fn byte_string(&mut self) -> Result<&'a [u8], BencodeError> {
        let offset = self.pos;
        let digits = self.digits_until(b':', offset)?;
        check_canonical(digits, offset)?;
        let len = digits
            .iter()
            .try_fold(0usize, |acc, d| {
                acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
            })
            .ok_or(BencodeError::LengthOverflow { offset })?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.input.len())
            .ok_or(BencodeError::LengthOverflow { offset })?;
        let bytes = self
            .input
            .get(self.pos..end)
            .ok_or(BencodeError::LengthOverflow { offset })?;
        self.pos = end;
        Ok(bytes)
    }

    /// Reads ASCII digits up to (and consuming) `terminator`; returns the digits.
    fn digits_until(&mut self, terminator: u8, offset: usize) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        loop {
            let at = self.pos;
            match self.next_byte()? {
                b if b == terminator => break,
                b'0'..=b'9' => {}
                byte => return Err(BencodeError::InvalidByte { offset: at, byte }),
            }
        }
        let digits = self
            .input
            .get(start..self.pos - 1)
            .ok_or(BencodeError::InvalidInt { offset })?;
        if digits.is_empty() {
            return Err(BencodeError::InvalidInt { offset });
        }
        Ok(digits)
    }
}

/// Refuses numbers with a leading zero (a lone `0` is fine).
fn check_canonical(digits: &[u8], offset: usize) -> Result<(), BencodeError> {
    if digits.len() > 1 && digits.first() == Some(&b'0') {
        return Err(BencodeError::LeadingZero { offset });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &[u8]) -> BencodeError {
        match decode(input) {
            Err(e) => e,
            Ok(v) => panic!(
                "expected an error for {:?}, got {v:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn decodes_scalars() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"4:spam"), Ok(Value::bytes("spam")));
        assert_eq!(decode(b"0:"), Ok(Value::bytes("")));
    }

    #[test]
    fn decodes_int_extremes() {
        assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(
            err(b"i9223372036854775808e"),
            BencodeError::IntOverflow { offset: 0 }
        );
        assert_eq!(
            err(b"i-9223372036854775809e"),
            BencodeError::IntOverflow { offset: 0 }
        );
    }

    #[test]
    fn decodes_nested() {
        let v = decode(b"d4:listli1ei2ee3:str3:abce").unwrap();
        assert_eq!(
            v.get(b"list").and_then(Value::as_list).map(<[Value]>::len),
            Some(2)
        );
        assert_eq!(v.get(b"str").and_then(Value::as_str), Some("abc"));
        assert_eq!(v.get(b"missing"), None);
    }

    #[test]
    fn rejects_non_canonical_ints() {
        assert_eq!(err(b"i03e"), BencodeError::LeadingZero { offset: 0 });
        assert_eq!(err(b"i-03e"), BencodeError::LeadingZero { offset: 0 });
        assert_eq!(err(b"i-0e"), BencodeError::NegativeZero { offset: 0 });
        assert_eq!(err(b"ie"), BencodeError::InvalidInt { offset: 0 });
        assert_eq!(err(b"i-e"), BencodeError::InvalidInt { offset: 0 });
        assert_eq!(
            err(b"i1x2e"),
            BencodeError::InvalidByte {
                offset: 2,
                byte: b'x'
            }
        );
        assert_eq!(
            err(b"i+1e"),
            BencodeError::InvalidByte {
                offset: 1,
                byte: b'+'
            }
        );
        assert_eq!(err(b"03:abc"), BencodeError::LeadingZero { offset: 0 });
    }

    #[test]
    fn rejects_truncation() {
        assert_eq!(err(b""), BencodeError::UnexpectedEof { offset: 0 });
        assert_eq!(err(b"i12"), BencodeError::UnexpectedEof { offset: 3 });
        assert_eq!(err(b"l"), BencodeError::UnexpectedEof { offset: 1 });
        assert_eq!(err(b"d3:abc"), BencodeError::UnexpectedEof { offset: 6 });
        assert_eq!(err(b"5:abc"), BencodeError::LengthOverflow { offset: 0 });
        assert_eq!(err(b"12"), BencodeError::UnexpectedEof { offset: 2 });
    }

    #[test]
    fn huge_claimed_length_is_refused_without_allocating() {
        assert_eq!(
            err(b"99999999999:x"),
            BencodeError::LengthOverflow { offset: 0 }
        );
        let huge = format!("{}0:x", usize::MAX);
        assert_eq!(
            err(huge.as_bytes()),
            BencodeError::LengthOverflow { offset: 0 }
        );
    }

    #[test]
    fn rejects_bad_structure() {
        assert_eq!(err(b"i1ei2e"), BencodeError::TrailingData { offset: 3 });
        assert_eq!(
            err(b"x"),
            BencodeError::InvalidByte {
                offset: 0,
                byte: b'x'
            }
        );
        assert_eq!(
            err(b"e"),
            BencodeError::InvalidByte {
                offset: 0,
                byte: b'e'
            }
        );
        assert_eq!(err(b"di1ei2ee"), BencodeError::KeyNotString { offset: 1 });
        assert_eq!(
            err(b"d1:ai1e1:ai2ee"),
            BencodeError::DuplicateKey { offset: 7 }
        );
    }

    #[test]
    fn tolerates_unsorted_keys_and_reencodes_sorted() {
        let v = decode(b"d1:bi2e1:ai1ee").unwrap();
        assert_eq!(v.get(b"a"), Some(&Value::Int(1)));
        assert_eq!(encode(&v), b"d1:ai1e1:bi2ee");
    }

    #[test]
    fn depth_limit() {
        let ok = [vec![b'l'; MAX_DEPTH], vec![b'e'; MAX_DEPTH]].concat();
        assert!(decode(&ok).is_ok());
        let deep = [vec![b'l'; MAX_DEPTH + 1], vec![b'e'; MAX_DEPTH + 1]].concat();
        assert_eq!(
            decode(&deep),
            Err(BencodeError::TooDeep { offset: MAX_DEPTH })
        );
        let very_deep = vec![b'd'; 1_000_000];
        assert!(matches!(
            decode(&very_deep),
            Err(BencodeError::KeyNotString { .. })
        ));
        let very_deep_lists = vec![b'l'; 1_000_000];
        assert!(matches!(
            decode(&very_deep_lists),
            Err(BencodeError::TooDeep { .. })
        ));
    }

    #[test]
    fn round_trip() {
        let v = Value::dict([
            ("announce", Value::bytes("http://t/a")),
            ("n", Value::Int(-12)),
            (
                "l",
                Value::List(vec![Value::bytes(vec![0u8, 255, 10]), Value::List(vec![])]),
            ),
            ("d", Value::dict(Vec::<(&str, Value)>::new())),
        ]);
        let bytes = encode(&v);
        assert_eq!(decode(&bytes), Ok(v));
        assert_eq!(encode(&Value::Int(i64::MIN)), b"i-9223372036854775808e");
    }

    #[test]
    fn decode_prefix_reports_consumed() {
        assert_eq!(decode_prefix(b"i5eXYZ"), Ok((Value::Int(5), 3)));
        assert_eq!(decode_prefix(b"le4:rest"), Ok((Value::List(vec![]), 2)));
    }

    #[test]
    fn accessors_return_none_on_wrong_type() {
        let i = Value::Int(1);
        assert_eq!(i.as_bytes(), None);
        assert_eq!(i.as_list(), None);
        assert_eq!(i.as_dict(), None);
        assert_eq!(i.get(b"x"), None);
        assert_eq!(Value::bytes("x").as_int(), None);
        assert_eq!(Value::bytes(vec![0xff]).as_str(), None);
    }

    #[test]
    fn dict_value_span_finds_raw_bytes() {
        let input = b"d1:zi1e4:infod1:bi1e1:ai2ee1:alee";
        let span = dict_value_span(input, b"info").unwrap().unwrap();
        assert_eq!(input.get(span), Some(&b"d1:bi1e1:ai2ee"[..]));
        assert_eq!(dict_value_span(input, b"nope"), Ok(None));
        assert_eq!(
            dict_value_span(b"li1ee", b"info"),
            Err(BencodeError::ExpectedDict)
        );
        assert!(dict_value_span(b"d4:infoi1e", b"info").is_err());
        assert!(dict_value_span(b"d4:infoi1eex", b"info").is_err());
    }

    #[test]
    fn every_prefix_and_mutation_is_handled() {
        let valid = b"d8:announce10:http://t/a4:infod6:lengthi5e4:name1:x12:piece lengthi16384eee";
        assert!(decode(valid).is_ok());
        for end in 0..valid.len() {
            assert!(decode(&valid[..end]).is_err());
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut m = valid.to_vec();
            let idx = (state % m.len() as u64) as usize;
            if let Some(b) = m.get_mut(idx) {
                *b = (state >> 32) as u8;
            }
            let _ = decode(&m);
            let _ = dict_value_span(&m, b"info");
        }
    }
}
