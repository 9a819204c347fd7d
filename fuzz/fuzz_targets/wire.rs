//! Incremental peer wire decoder under arbitrary chunking: never panics, gives the same frames (or the
//! same error) whatever the chunking, never buffers more than one message, and every decoded message
//! re-encodes to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use enjambre_core::wire::{Decoder, Frame, WireError, HANDSHAKE_LEN};
use libfuzzer_sys::fuzz_target;

/// Small limit so length checks are reached often.
const MAX_LEN: u32 = 4 * 1024;

/// Decodes `stream` fed in `chunks` (cycled chunk sizes), returning the frames and the final outcome.
fn run(stream: &[u8], expect_handshake: bool, chunks: &[u8]) -> (Vec<Frame>, Option<WireError>) {
    let mut dec = Decoder::new(expect_handshake, MAX_LEN);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .map_or(rest.len(), |&s| usize::from(s).max(1))
            .min(rest.len());
        let (now, later) = rest.split_at(n);
        rest = later;
        dec.feed(now);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    // Poisoned for good.
                    assert_eq!(dec.next_frame(), Err(e));
                    return (frames, Some(e));
                }
            }
        }
        // What is left is less than one handshake or one bounded message.
        assert!(dec.buffered() <= HANDSHAKE_LEN.max(4 + MAX_LEN as usize));
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: flags; byte 1: number of chunk sizes; then the sizes; then the stream.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (chunks, stream) = rest.split_at(n);
    let expect_handshake = flags & 1 == 1;

    let (whole_frames, whole_err) = run(stream, expect_handshake, &[]);
    let (chunk_frames, chunk_err) = run(stream, expect_handshake, chunks);
    let (byte_frames, byte_err) = run(stream, expect_handshake, &[1]);
    assert_eq!(whole_frames, chunk_frames);
    assert_eq!(whole_err, chunk_err);
    assert_eq!(whole_frames, byte_frames);
    assert_eq!(whole_err, byte_err);

    // Re-encoding the frames gives a prefix of the stream, byte for byte.
    let mut out = BytesMut::new();
    for f in &whole_frames {
        match f {
            Frame::Handshake(h) => out.extend_from_slice(&h.encode()),
            Frame::Message(m) => {
                let before = out.len();
                m.encode(&mut out);
                assert_eq!(out.len() - before, m.encoded().len());
                assert!(!m.name().is_empty());
            }
        }
    }
    assert!(
        stream.starts_with(&out),
        "re-encoded frames differ from the input"
    );
    // Without an error, the frames plus what is still buffered account for every byte.
    if whole_err.is_none() {
        let mut dec = Decoder::new(expect_handshake, MAX_LEN);
        dec.feed(stream);
        while let Ok(Some(_)) = dec.next_frame() {}
        assert_eq!(out.len() + dec.buffered(), stream.len());
    }
});
