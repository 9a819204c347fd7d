//! Torrent metainfo (BEP 3 `.torrent` files): parsing with validation, building new torrents, piece hashing.
//!
//! The info hash is the SHA-1 of the exact `info` bytes found in the file, so unknown keys and unusual key
//! order written by other clients are preserved in it. File names are validated so that none can escape the
//! download directory: every path component must pass [`is_safe_component`].

use std::fmt;
use std::path::PathBuf;

use sha1::{Digest, Sha1};

use crate::bencode::{self, BencodeError, Value};
use crate::layout::{self, FileLayout};

/// Smallest piece length accepted: 16 KiB.
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
/// Largest piece length accepted: 64 MiB.
pub const MAX_PIECE_LENGTH: u32 = 64 * 1024 * 1024;

/// The SHA-1 of a torrent's bencoded `info` dictionary: the torrent's identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InfoHash(pub [u8; 20]);

/// In JSON and other serde formats an info hash is its 40 lower-case hex digits, as people read and paste it.
impl serde::Serialize for InfoHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for InfoHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<InfoHash, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        InfoHash::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("info_hash is not 40 hex digits"))
    }
}

impl InfoHash {
    /// The SHA-1 of `info_bytes` (the raw bencoded `info` dictionary).
    pub fn of(info_bytes: &[u8]) -> InfoHash {
        InfoHash(Sha1::digest(info_bytes).into())
    }

    /// Lower-case hexadecimal, 40 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 40 hexadecimal characters (either case); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(InfoHash(out))
    }

    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

/// One file of a torrent: its path components (below the torrent name for multi-file torrents) and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components; each one passes [`is_safe_component`] once parsed.
    pub path: Vec<String>,
    /// Length in bytes (may be 0).
    pub length: u64,
}

/// The validated contents of a torrent's `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Suggested name: the file name (single-file) or the directory name (multi-file).
    pub name: String,
    /// Bytes per piece, a power of two in `MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH`.
    pub piece_length: u32,
    /// SHA-1 of every piece, in order.
    pub pieces: Vec<[u8; 20]>,
    /// The files; for a single-file torrent, one entry whose path is `[name]`.
    pub files: Vec<FileEntry>,
    /// Whether the torrent uses the multi-file (`files`) form, even with one file.
    pub multi_file: bool,
    /// The `private` flag (BEP 27).
    pub private: bool,
}

impl Info {
    /// Sum of all file lengths (validated not to overflow when parsed).
    pub fn total_length(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(f.length))
    }
}

/// A parsed torrent file together with its raw bytes and info hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The `announce` URL, if any.
    pub announce: Option<String>,
    /// The `announce-list` tiers (BEP 12); malformed entries are skipped.
    pub announce_list: Vec<Vec<String>>,
    /// The validated `info` dictionary.
    pub info: Info,
    /// SHA-1 of the raw `info` bytes.
    pub info_hash: InfoHash,
    /// The whole torrent file exactly as parsed.
    pub raw: Vec<u8>,
}

/// Why bytes are not an acceptable torrent file (or a torrent cannot be built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// Not valid bencode.
    #[error("bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// A required key is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A key holds the wrong kind of value.
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    /// A text field is not valid UTF-8.
    #[error("field `{0}` is not valid UTF-8")]
    NotUtf8(&'static str),
    /// The piece length is not a power of two between 16 KiB and 64 MiB.
    #[error("unsupported piece length {0}")]
    BadPieceLength(i64),
    /// The `pieces` string is not a whole number of 20-byte hashes.
    #[error("`pieces` is {len} bytes, not a multiple of 20")]
    PiecesLength {
        /// Length of the `pieces` string.
        len: usize,
    },
    /// The number of piece hashes does not match `ceil(total / piece_length)`.
    #[error("expected {expected} piece hashes, got {got}")]
    PieceCountMismatch {
        /// Pieces implied by the total length.
        expected: u64,
        /// Hashes present.
        got: u64,
    },
    /// A file name could escape the download directory or is otherwise unusable.
    #[error("unsafe path {0:?}")]
    UnsafePath(String),
    /// The torrent name is empty.
    #[error("empty torrent name")]
    EmptyName,
    /// A file length is negative.
    #[error("negative file length")]
    NegativeLength,
    /// Lengths overflow 64 bits (or the piece count 32 bits).
    #[error("torrent too large")]
    TooLarge,
    /// A multi-file torrent lists no files.
    #[error("torrent has no files")]
    NoFiles,
    /// The `info` dictionary has both `length` and `files`.
    #[error("info has both `length` and `files`")]
    LengthAndFiles,
}

impl Metainfo {
    /// Parses and validates a torrent file; the info hash is the SHA-1 of the raw `info` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let root = bencode::decode(bytes)?;
        if root.as_dict().is_none() {
            return Err(MetainfoError::WrongType("torrent"));
        }
        let info_value = root
            .get(b"info")
            .ok_or(MetainfoError::MissingField("info"))?;
        let info = parse_info(info_value)?;
        let span = bencode::dict_value_span(bytes, b"info")?;
        let raw_info = span
            .and_then(|s| bytes.get(s))
            .ok_or(MetainfoError::MissingField("info"))?;
        Ok(Metainfo {
            announce: optional_str(&root, "announce")?,
            announce_list: parse_announce_list(root.get(b"announce-list")),
            info,
            info_hash: InfoHash::of(raw_info),
            raw: bytes.to_vec(),
        })
    }

    /// The full torrent file bytes, exactly as parsed or built.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.raw.clone()
    }

    /// Sum of all file lengths.
    pub fn total_length(&self) -> u64 {
        self.info.total_length()
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        u32::try_from(self.info.pieces.len()).unwrap_or(u32::MAX)
    }

    /// Bytes per piece.
    pub fn piece_length(&self) -> u32 {
        self.info.piece_length
    }

    /// Length of piece `index` (the last one may be shorter); 0 if out of range.
    pub fn piece_len(&self, index: u32) -> u32 {
        layout::piece_len_for(self.total_length(), self.info.piece_length, index)
    }

    /// The expected SHA-1 of piece `index`, if it exists.
    pub fn piece_hash(&self, index: u32) -> Option<[u8; 20]> {
        let i = usize::try_from(index).ok()?;
        self.info.pieces.get(i).copied()
    }

    /// The byte layout of the torrent's files.
    pub fn layout(&self) -> FileLayout {
        let lengths: Vec<u64> = self.info.files.iter().map(|f| f.length).collect();
        FileLayout::new(&lengths, self.info.piece_length)
    }

    /// Each file's path relative to the download directory: `[name]` for single-file torrents,
    /// `name/a/b` for multi-file ones. Every component was validated safe when parsed.
    pub fn relative_paths(&self) -> Vec<PathBuf> {
        if !self.info.multi_file {
            return vec![PathBuf::from(&self.info.name)];
        }
        self.info
            .files
            .iter()
            .map(|f| {
                let mut p = PathBuf::from(&self.info.name);
                p.extend(&f.path);
                p
            })
            .collect()
    }
}

/// Builds a new torrent. One file whose path is `[name]` gives the single-file form (`length`); anything else
/// gives the multi-file form (`files`). The result is canonical bencode that other clients read, and it is
/// validated exactly as [`Metainfo::from_bytes`] validates foreign torrents.
pub fn build(
    name: &str,
    piece_length: u32,
    files: Vec<FileEntry>,
    piece_hashes: Vec<[u8; 20]>,
    announce: Option<&str>,
) -> Result<Metainfo, MetainfoError> {
    let single = match files.as_slice() {
        [only] => only.path.len() == 1 && only.path.first().map(String::as_str) == Some(name),
        _ => false,
    };
    let mut info = vec![
        ("name", Value::bytes(name)),
        ("piece length", Value::Int(i64::from(piece_length))),
        ("pieces", Value::bytes(piece_hashes.concat())),
    ];
    if single {
        let length = files.first().map_or(0, |f| f.length);
        info.push(("length", Value::Int(length_to_int(length)?)));
    } else {
        let list = files.iter().map(file_value).collect::<Result<_, _>>()?;
        info.push(("files", Value::List(list)));
    }
    let mut root = vec![("info", Value::dict(info))];
    if let Some(url) = announce {
        root.push(("announce", Value::bytes(url)));
    }
    Metainfo::from_bytes(&bencode::encode(&Value::dict(root)))
}

fn file_value(f: &FileEntry) -> Result<Value, MetainfoError> {
    let path = f.path.iter().map(|c| Value::bytes(c.as_str())).collect();
    Ok(Value::dict([
        ("length", Value::Int(length_to_int(f.length)?)),
        ("path", Value::List(path)),
    ]))
}

fn length_to_int(length: u64) -> Result<i64, MetainfoError> {
    i64::try_from(length).map_err(|_| MetainfoError::TooLarge)
}

/// Whether `s` is usable as one path component: non-empty, not `.` or `..`, no `/`, `\` or NUL, and not
/// starting with a drive letter such as `C:`.
pub fn is_safe_component(s: &str) -> bool {
    let b = s.as_bytes();
    let drive = matches!(b, [letter, b':', ..] if letter.is_ascii_alphabetic());
    !s.is_empty() && s != "." && s != ".." && !drive && !s.contains(['/', '\\', '\0'])
}

/// Incremental SHA-1 over a stream of bytes cut into pieces, across file boundaries.
#[derive(Clone)]
pub struct PieceHasher {
    piece_length: u64,
    hasher: Sha1,
    filled: u64,
    hashes: Vec<[u8; 20]>,
}

impl PieceHasher {
    /// A hasher for pieces of `piece_length` bytes (0 is treated as 1).
    pub fn new(piece_length: u32) -> Self {
        PieceHasher {
            piece_length: u64::from(piece_length.max(1)),
            hasher: Sha1::new(),
            filled: 0,
            hashes: Vec::new(),
        }
    }

    /// Feeds the next bytes of the torrent, in order; chunks may be of any size.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.piece_length - self.filled;
            let take = usize::try_from(room).map_or(data.len(), |r| r.min(data.len()));
            let (now, rest) = data.split_at(take);
            self.hasher.update(now);
            self.filled += now.len() as u64;
            data = rest;
            if self.filled == self.piece_length {
                self.hashes.push(self.hasher.finalize_reset().into());
                self.filled = 0;
            }
        }
    }

    /// All piece hashes, the last partial piece included; none if no bytes were fed.
    pub fn finish(mut self) -> Vec<[u8; 20]> {
        if self.filled > 0 {
            self.hashes.push(self.hasher.finalize().into());
        }
        self.hashes
    }
}

fn parse_info(v: &Value) -> Result<Info, MetainfoError> {
    if v.as_dict().is_none() {
        return Err(MetainfoError::WrongType("info"));
    }
    let name = parse_name(v)?;
    let piece_length = parse_piece_length(v)?;
    let pieces = parse_pieces(v)?;
    let private = parse_private(v)?;
    let (files, multi_file) = match (v.get(b"files"), v.get(b"length")) {
        (Some(_), Some(_)) => return Err(MetainfoError::LengthAndFiles),
        (Some(list), None) => (parse_files(list)?, true),
        (None, Some(len)) => (vec![single_file(&name, len)?], false),
        (None, None) => return Err(MetainfoError::MissingField("length")),
    };
    check_piece_count(&files, piece_length, pieces.len())?;
    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        multi_file,
        private,
    })
}

fn parse_name(v: &Value) -> Result<String, MetainfoError> {
    let name = required_str(v, "name")?;
    if name.is_empty() {
        return Err(MetainfoError::EmptyName);
    }
    if !is_safe_component(&name) {
        return Err(MetainfoError::UnsafePath(name));
    }
    Ok(name)
}

fn parse_piece_length(v: &Value) -> Result<u32, MetainfoError> {
    let raw = v
        .get(b"piece length")
        .ok_or(MetainfoError::MissingField("piece length"))?
        .as_int()
        .ok_or(MetainfoError::WrongType("piece length"))?;
    u32::try_from(raw)
        .ok()
        .filter(|pl| pl.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(pl))
        .ok_or(MetainfoError::BadPieceLength(raw))
}

fn parse_pieces(v: &Value) -> Result<Vec<[u8; 20]>, MetainfoError> {
    let raw = v
        .get(b"pieces")
        .ok_or(MetainfoError::MissingField("pieces"))?
        .as_bytes()
        .ok_or(MetainfoError::WrongType("pieces"))?;
    if raw.len() % 20 != 0 {
        return Err(MetainfoError::PiecesLength { len: raw.len() });
    }
    Ok(raw
        .chunks_exact(20)
        .filter_map(|c| <[u8; 20]>::try_from(c).ok())
        .collect())
}

fn parse_private(v: &Value) -> Result<bool, MetainfoError> {
    match v.get(b"private") {
        None => Ok(false),
        Some(Value::Int(i)) => Ok(*i != 0),
        Some(_) => Err(MetainfoError::WrongType("private")),
    }
}

fn single_file(name: &str, length: &Value) -> Result<FileEntry, MetainfoError> {
    Ok(FileEntry {
        path: vec![name.to_owned()],
        length: parse_length(length)?,
    })
}

fn parse_files(list: &Value) -> Result<Vec<FileEntry>, MetainfoError> {
    let entries = list.as_list().ok_or(MetainfoError::WrongType("files"))?;
    if entries.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    entries.iter().map(parse_file).collect()
}

fn parse_file(entry: &Value) -> Result<FileEntry, MetainfoError> {
    if entry.as_dict().is_none() {
        return Err(MetainfoError::WrongType("files"));
    }
    let length = parse_length(
        entry
            .get(b"length")
            .ok_or(MetainfoError::MissingField("length"))?,
    )?;
    Ok(FileEntry {
        path: parse_path(entry)?,
        length,
    })
}

fn parse_length(v: &Value) -> Result<u64, MetainfoError> {
    let raw = v.as_int().ok_or(MetainfoError::WrongType("length"))?;
    u64::try_from(raw).map_err(|_| MetainfoError::NegativeLength)
}

fn parse_path(entry: &Value) -> Result<Vec<String>, MetainfoError> {
    let parts = entry
        .get(b"path")
        .ok_or(MetainfoError::MissingField("path"))?
        .as_list()
        .ok_or(MetainfoError::WrongType("path"))?;
    let path = parts
        .iter()
        .map(|p| utf8_of(p, "path"))
        .collect::<Result<Vec<_>, _>>()?;
    if path.is_empty() || !path.iter().all(|c| is_safe_component(c)) {
        return Err(MetainfoError::UnsafePath(path.join("/")));
    }
    Ok(path)
}

fn check_piece_count(
    files: &[FileEntry],
    piece_length: u32,
    got: usize,
) -> Result<(), MetainfoError> {
    let total = files
        .iter()
        .try_fold(0u64, |acc, f| acc.checked_add(f.length))
        .ok_or(MetainfoError::TooLarge)?;
    let expected = layout::piece_count_for(total, piece_length);
    let got = got as u64;
    if expected != got {
        return Err(MetainfoError::PieceCountMismatch { expected, got });
    }
    if u32::try_from(expected).is_err() {
        return Err(MetainfoError::TooLarge);
    }
    Ok(())
}

fn utf8_of(v: &Value, field: &'static str) -> Result<String, MetainfoError> {
    let bytes = v.as_bytes().ok_or(MetainfoError::WrongType(field))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| MetainfoError::NotUtf8(field))
}

fn required_str(v: &Value, field: &'static str) -> Result<String, MetainfoError> {
    let value = v
        .get(field.as_bytes())
        .ok_or(MetainfoError::MissingField(field))?;
    utf8_of(value, field)
}

fn optional_str(v: &Value, field: &'static str) -> Result<Option<String>, MetainfoError> {
    v.get(field.as_bytes())
        .map(|value| utf8_of(value, field))
        .transpose()
}

/// BEP 12 tiers; entries that are not lists of UTF-8 strings are skipped, empty tiers dropped.
fn parse_announce_list(v: Option<&Value>) -> Vec<Vec<String>> {
    let Some(tiers) = v.and_then(Value::as_list) else {
        return Vec::new();
    };
    tiers
        .iter()
        .filter_map(Value::as_list)
        .map(|tier| {
            tier.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PL: u32 = 16 * 1024;

    fn hashes_of(data: &[u8], pl: u32) -> Vec<[u8; 20]> {
        let mut h = PieceHasher::new(pl);
        h.feed(data);
        h.finish()
    }

    fn file(path: &[&str], length: u64) -> FileEntry {
        FileEntry {
            path: path.iter().map(|s| s.to_string()).collect(),
            length,
        }
    }

    fn info_value(extra: Vec<(&'static str, Value)>) -> Value {
        let mut pairs = vec![
            ("name", Value::bytes("x")),
            ("piece length", Value::Int(i64::from(PL))),
            ("pieces", Value::bytes(vec![7u8; 20])),
            ("length", Value::Int(5)),
        ];
        pairs.extend(extra);
        Value::dict(pairs)
    }

    fn torrent(info: Value) -> Vec<u8> {
        bencode::encode(&Value::dict([("info", info)]))
    }

    fn parse_err(bytes: &[u8]) -> MetainfoError {
        match Metainfo::from_bytes(bytes) {
            Err(e) => e,
            Ok(m) => panic!("expected an error, parsed {m:?}"),
        }
    }

    fn with_files(files: Value) -> Vec<u8> {
        let mut v = info_value(vec![("files", files)]);
        if let Value::Dict(d) = &mut v {
            d.remove(&b"length"[..]);
        }
        torrent(v)
    }

    fn one_file_at(path: Value) -> Vec<u8> {
        with_files(Value::List(vec![Value::dict([
            ("length", Value::Int(5)),
            ("path", path),
        ])]))
    }

    #[test]
    fn known_info_hash_vector() {
        let m = build(
            "a.txt",
            PL,
            vec![file(&["a.txt"], 3)],
            hashes_of(b"abc", PL),
            None,
        )
        .unwrap();
        assert_eq!(
            m.info_hash.to_hex(),
            "351c57d9dcabc5c94d4597b137e1b94bea21504c"
        );
        let mut expected =
            b"d4:infod6:lengthi3e4:name5:a.txt12:piece lengthi16384e6:pieces20:".to_vec();
        expected.extend_from_slice(&Sha1::digest(b"abc"));
        expected.extend_from_slice(b"ee");
        assert_eq!(m.to_bytes(), expected);
        assert!(!m.info.multi_file);
    }

    #[test]
    fn build_single_file_round_trip() {
        let data = vec![9u8; 40_000];
        let m = build(
            "f.bin",
            PL,
            vec![file(&["f.bin"], 40_000)],
            hashes_of(&data, PL),
            Some("http://t:1/announce"),
        )
        .unwrap();
        let again = Metainfo::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(again, m);
        assert_eq!(m.announce.as_deref(), Some("http://t:1/announce"));
        assert_eq!(m.piece_count(), 3);
        assert_eq!(m.piece_length(), PL);
        assert_eq!(m.piece_len(0), PL);
        assert_eq!(m.piece_len(2), 40_000 - 2 * PL);
        assert_eq!(m.piece_len(3), 0);
        assert_eq!(
            m.piece_hash(2),
            Some(Sha1::digest(&data[2 * PL as usize..]).into())
        );
        assert_eq!(m.piece_hash(3), None);
        assert_eq!(m.relative_paths(), vec![PathBuf::from("f.bin")]);
        assert_eq!(m.layout().total_length(), 40_000);
    }

    #[test]
    fn build_multi_file_with_zero_length_file() {
        let files = vec![
            file(&["a"], 10),
            file(&["sub", "empty"], 0),
            file(&["sub", "b"], PL as u64),
        ];
        let data = vec![1u8; 10 + PL as usize];
        let m = build("dir", PL, files.clone(), hashes_of(&data, PL), None).unwrap();
        assert!(m.info.multi_file);
        assert_eq!(m.info.files, files);
        assert_eq!(m.total_length(), 10 + u64::from(PL));
        assert_eq!(m.piece_count(), 2);
        assert_eq!(m.piece_len(1), 10);
        assert_eq!(
            m.relative_paths(),
            ["dir/a", "dir/sub/empty", "dir/sub/b"]
                .map(PathBuf::from)
                .to_vec()
        );
        assert_eq!(m.layout().file_count(), 3);
        assert_eq!(Metainfo::from_bytes(&m.raw).unwrap().info_hash, m.info_hash);
    }

    #[test]
    fn one_file_not_named_like_torrent_stays_multi_file() {
        let m = build("dir", PL, vec![file(&["a"], 1)], hashes_of(b"z", PL), None).unwrap();
        assert!(m.info.multi_file);
        assert_eq!(m.relative_paths(), vec![PathBuf::from("dir/a")]);
    }

    #[test]
    fn zero_byte_torrent_has_no_pieces() {
        let m = build(
            "empty",
            PL,
            vec![file(&["empty"], 0)],
            hashes_of(b"", PL),
            None,
        )
        .unwrap();
        assert_eq!(m.piece_count(), 0);
        assert_eq!(m.total_length(), 0);
        assert_eq!(m.piece_len(0), 0);
        let err = build("empty", PL, vec![file(&["empty"], 0)], vec![[0; 20]], None).unwrap_err();
        assert_eq!(
            err,
            MetainfoError::PieceCountMismatch {
                expected: 0,
                got: 1
            }
        );
    }

    #[test]
    fn info_hash_covers_raw_bytes_with_unknown_keys_and_order() {
        let mut pieces = b"6:pieces20:".to_vec();
        pieces.extend_from_slice(&[7u8; 20]);
        let info = [
            b"d4:name1:x".as_slice(),
            b"8:x-customli1ei2ee",
            b"12:piece lengthi16384e",
            &pieces,
            b"6:lengthi5e",
            b"e",
        ]
        .concat();
        let file = [b"d7:comment2:hi4:info".as_slice(), &info, b"e"].concat();
        let m = Metainfo::from_bytes(&file).unwrap();
        assert_eq!(m.info_hash, InfoHash::of(&info));
        assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(&info)));
        let reencoded = bencode::encode(&bencode::decode(&info).unwrap());
        assert_ne!(
            InfoHash::of(&reencoded),
            m.info_hash,
            "key order is part of the hash"
        );
        let without_custom = torrent(info_value(vec![]));
        assert_ne!(
            Metainfo::from_bytes(&without_custom).unwrap().info_hash,
            m.info_hash
        );
        assert_eq!(m.to_bytes(), file);
    }

    #[test]
    fn announce_list_is_parsed_leniently() {
        let root = Value::dict([
            ("info", info_value(vec![])),
            (
                "announce-list",
                Value::List(vec![
                    Value::List(vec![Value::bytes("http://a"), Value::Int(3)]),
                    Value::Int(1),
                    Value::List(vec![]),
                    Value::List(vec![Value::bytes("http://b"), Value::bytes("http://c")]),
                ]),
            ),
        ]);
        let m = Metainfo::from_bytes(&bencode::encode(&root)).unwrap();
        assert_eq!(m.announce, None);
        assert_eq!(
            m.announce_list,
            vec![vec!["http://a"], vec!["http://b", "http://c"]]
        );
    }

    #[test]
    fn private_flag() {
        let m =
            Metainfo::from_bytes(&torrent(info_value(vec![("private", Value::Int(1))]))).unwrap();
        assert!(m.info.private);
        let bad = torrent(info_value(vec![("private", Value::bytes("1"))]));
        assert_eq!(parse_err(&bad), MetainfoError::WrongType("private"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in ["..", ".", "", "a/b", "a\\b", "nul\0", "C:evil", "/etc"] {
            let bytes = one_file_at(Value::List(vec![Value::bytes("ok"), Value::bytes(bad)]));
            assert_eq!(
                parse_err(&bytes),
                MetainfoError::UnsafePath(format!("ok/{bad}")),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_err(&one_file_at(Value::List(vec![]))),
            MetainfoError::UnsafePath(String::new())
        );
        let bad_name = torrent(info_value(vec![("name", Value::bytes(".."))]));
        assert_eq!(parse_err(&bad_name), MetainfoError::UnsafePath("..".into()));
        let err = build(
            "d",
            PL,
            vec![file(&["..", "x"], 1)],
            hashes_of(b"z", PL),
            None,
        )
        .unwrap_err();
        assert_eq!(err, MetainfoError::UnsafePath("../x".into()));
    }

    #[test]
    fn is_safe_component_cases() {
        assert!(is_safe_component("file.txt"));
        assert!(is_safe_component("..."));
        assert!(is_safe_component("ab:c"));
        assert!(!is_safe_component("a:b"));
        assert!(!is_safe_component("c:"));
        assert!(!is_safe_component("Z:\\x"));
    }

    #[test]
    fn malformed_fields_map_to_named_errors() {
        use MetainfoError::*;
        let cases: Vec<(Vec<u8>, MetainfoError)> = vec![
            (b"i1e".to_vec(), WrongType("torrent")),
            (b"d4:infoi1ee".to_vec(), WrongType("info")),
            (b"de".to_vec(), MissingField("info")),
            (
                b"d4:info".to_vec(),
                Bencode(BencodeError::UnexpectedEof { offset: 7 }),
            ),
            (
                torrent(info_value(vec![("name", Value::bytes(""))])),
                EmptyName,
            ),
            (
                torrent(info_value(vec![("name", Value::bytes(vec![0xffu8]))])),
                NotUtf8("name"),
            ),
            (
                torrent(info_value(vec![("name", Value::Int(1))])),
                WrongType("name"),
            ),
            (
                torrent(info_value(vec![("piece length", Value::Int(1000))])),
                BadPieceLength(1000),
            ),
            (
                torrent(info_value(vec![("piece length", Value::Int(0))])),
                BadPieceLength(0),
            ),
            (
                torrent(info_value(vec![("piece length", Value::Int(-16384))])),
                BadPieceLength(-16384),
            ),
            (
                torrent(info_value(vec![("piece length", Value::Int(1 << 27))])),
                BadPieceLength(1 << 27),
            ),
            (
                torrent(info_value(vec![("pieces", Value::bytes(vec![0u8; 19]))])),
                PiecesLength { len: 19 },
            ),
            (
                torrent(info_value(vec![("pieces", Value::bytes(vec![0u8; 40]))])),
                PieceCountMismatch {
                    expected: 1,
                    got: 2,
                },
            ),
            (
                torrent(info_value(vec![("length", Value::Int(-1))])),
                NegativeLength,
            ),
            (
                torrent(info_value(vec![("length", Value::bytes("5"))])),
                WrongType("length"),
            ),
            (
                torrent(info_value(vec![("files", Value::List(vec![]))])),
                LengthAndFiles,
            ),
            (with_files(Value::List(vec![])), NoFiles),
            (with_files(Value::Int(3)), WrongType("files")),
            (
                with_files(Value::List(vec![Value::Int(3)])),
                WrongType("files"),
            ),
            (one_file_at(Value::bytes("a")), WrongType("path")),
            (
                one_file_at(Value::List(vec![Value::bytes(vec![0xc3u8])])),
                NotUtf8("path"),
            ),
            (
                bencode::encode(&Value::dict([
                    ("info", info_value(vec![])),
                    ("announce", Value::Int(1)),
                ])),
                WrongType("announce"),
            ),
        ];
        for (i, (bytes, expected)) in cases.into_iter().enumerate() {
            assert_eq!(parse_err(&bytes), expected, "case {i}");
        }
        let mut no_length = info_value(vec![]);
        if let Value::Dict(d) = &mut no_length {
            d.remove(&b"length"[..]);
        }
        assert_eq!(parse_err(&torrent(no_length)), MissingField("length"));
    }

    #[test]
    fn total_length_overflow_is_refused() {
        let big = Value::dict([
            ("length", Value::Int(i64::MAX)),
            ("path", Value::List(vec![Value::bytes("a")])),
        ]);
        let bytes = with_files(Value::List(vec![big.clone(), big.clone(), big]));
        assert_eq!(parse_err(&bytes), MetainfoError::TooLarge);
        let err = build("n", PL, vec![file(&["n"], u64::MAX)], vec![], None).unwrap_err();
        assert_eq!(err, MetainfoError::TooLarge);
    }

    #[test]
    fn piece_hasher_ignores_chunking() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = hashes_of(&data, PL);
        assert_eq!(whole.len(), 7);
        let mut h = PieceHasher::new(PL);
        for chunk in data.chunks(999) {
            h.feed(chunk);
        }
        assert_eq!(h.finish(), whole);
        assert_eq!(
            whole.last(),
            Some(&<[u8; 20]>::from(Sha1::digest(&data[6 * PL as usize..])))
        );
        assert_eq!(hashes_of(&[0u8; 2 * PL as usize], PL).len(), 2);
        assert!(PieceHasher::new(PL).finish().is_empty());
        assert_eq!(hashes_of(b"ab", 0).len(), 2);
    }

    #[test]
    fn info_hash_hex() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(h.to_hex(), "ab".repeat(20));
        assert_eq!(InfoHash::from_hex(&"AB".repeat(20)), Some(h));
        assert_eq!(h.to_string(), h.to_hex());
        assert_eq!(format!("{h:?}"), format!("InfoHash({})", h.to_hex()));
        assert_eq!(h.as_bytes(), &[0xab; 20]);
        assert_eq!(InfoHash::from_hex("ab"), None);
        assert_eq!(InfoHash::from_hex(&"zz".repeat(20)), None);
        assert_eq!(InfoHash::from_hex(&"é".repeat(20)), None);
    }

    #[test]
    fn every_prefix_and_mutation_of_a_torrent_is_handled() {
        let files = vec![file(&["a"], 20_000), file(&["b", "c"], 0), file(&["d"], 30)];
        let m = build(
            "t",
            PL,
            files,
            hashes_of(&[3u8; 20_030], PL),
            Some("http://x/a"),
        )
        .unwrap();
        let valid = m.to_bytes();
        for end in 0..valid.len() {
            assert!(Metainfo::from_bytes(&valid[..end]).is_err());
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = valid.clone();
            for k in 0..1 + state % 3 {
                let idx = ((state >> (8 * k)) % bytes.len() as u64) as usize;
                if let Some(b) = bytes.get_mut(idx) {
                    *b = (state >> 40) as u8 ^ k as u8;
                }
            }
            if let Ok(parsed) = Metainfo::from_bytes(&bytes) {
                assert!(parsed.relative_paths().iter().all(|p| p.is_relative()));
                assert_eq!(
                    u64::from(parsed.piece_count()),
                    u64::from(parsed.layout().piece_count())
                );
            }
        }
    }
}
