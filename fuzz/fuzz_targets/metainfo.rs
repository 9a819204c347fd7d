//! Torrent file parser: never panics; an accepted torrent is self-consistent and its paths stay inside
//! the download folder (invariant 5).
#![no_main]

use enjambre_core::bencode;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use libfuzzer_sys::fuzz_target;
use std::path::Component;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = Metainfo::from_bytes(data) else {
        return;
    };
    // The info hash is the SHA-1 of the raw info bytes, which decode to the info dictionary.
    let span = bencode::dict_value_span(data, b"info").unwrap().unwrap();
    let raw_info = &data[span];
    assert_eq!(meta.info_hash, InfoHash::of(raw_info));
    let root = bencode::decode(data).unwrap();
    assert_eq!(root.get(b"info"), Some(&bencode::decode(raw_info).unwrap()));
    // Geometry: one hash per piece, every piece length positive and summing to the total.
    let total = meta.total_length();
    let pieces = u64::from(meta.piece_count());
    let plen = u64::from(meta.piece_length());
    assert_eq!(pieces, total.div_ceil(plen));
    if pieces > 0 {
        let last = u64::from(meta.piece_len(meta.piece_count() - 1));
        assert!(last > 0 && last <= plen);
        assert_eq!((pieces - 1) * plen + last, total);
    }
    assert_eq!(meta.piece_len(meta.piece_count()), 0);
    // No path can climb out of the download folder or be absolute.
    for path in meta.relative_paths() {
        assert!(path.components().count() > 0);
        for c in path.components() {
            assert!(
                matches!(c, Component::Normal(_)),
                "unsafe component in {path:?}"
            );
        }
    }
    // Re-parsing the stored bytes gives the same torrent.
    assert_eq!(Metainfo::from_bytes(&meta.to_bytes()).unwrap(), meta);
});
