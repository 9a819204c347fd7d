//! Resume checkpoint parser and validator: never panic; a checkpoint that validates claims only pieces
//! that exist and round-trips through its JSON.
#![no_main]

use enjambre_core::bitfield::Bitfield;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_core::metainfo::{build, FileEntry, Metainfo};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A fixed two-file torrent of 10 pieces of 16 KiB (the last one short).
fn meta() -> &'static Metainfo {
    static META: OnceLock<Metainfo> = OnceLock::new();
    META.get_or_init(|| {
        let files = vec![
            FileEntry {
                path: vec!["a.bin".into()],
                length: 100_000,
            },
            FileEntry {
                path: vec!["sub".into(), "b.bin".into()],
                length: 50_000,
            },
        ];
        build("seed", 16 * 1024, files, vec![[7u8; 20]; 10], None).expect("valid torrent")
    })
}

fuzz_target!(|data: &[u8]| {
    let meta = meta();
    // 1. The whole input as a checkpoint file.
    if let Ok(cp) = Checkpoint::from_json(data) {
        if let Ok(verified) = cp.validate(meta) {
            assert_eq!(verified.len(), meta.piece_count());
            assert_eq!(Checkpoint::new(meta, &verified), cp);
        }
        assert_eq!(Checkpoint::from_json(&cp.to_json()).ok(), Some(cp));
    }
    // 2. The input as the `verified` ranges of an otherwise matching checkpoint, to reach the range parser.
    if let Ok(text) = std::str::from_utf8(data) {
        let mut cp = Checkpoint::new(meta, &Bitfield::new(meta.piece_count()));
        cp.verified = text.to_owned();
        if let Some(bits) = Bitfield::from_ranges(text, meta.piece_count()) {
            cp.verified_count = bits.count();
            cp.first_missing = bits.first_missing();
            cp.complete = bits.is_full();
        }
        if let Ok(verified) = cp.validate(meta) {
            assert_eq!(
                Some(verified),
                Bitfield::from_ranges(text, meta.piece_count())
            );
        }
    }
});
