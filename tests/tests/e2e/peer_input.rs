//! Malformed wire input to a real serving peer over raw TCP: each bad connection is closed (and nothing
//! else happens), bounds-violating requests are refused without data, and the peer still serves a real
//! `peer get` afterwards.

use enjambre_core::metainfo::InfoHash;
use enjambre_core::wire::{Frame, Message};
use enjambre_tests::bins::{get, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::wire::{bad_protocol_handshake, Got, WireConn};
use std::time::Duration;

const NAME: &str = "wire.bin";
const SIZE: u64 = 3 * 1024 * 1024 + 5;
const PIECE: u64 = 512 * 1024;
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

fn peer_id(n: u8) -> [u8; 20] {
    let mut id = *b"-E2E000-wireprobe000";
    id[19] = n;
    id
}

/// Handshake and read the peer's announcement of what it has: it must be everything.
fn open(conn: &mut WireConn, hash: [u8; 20], n: u8, pieces: u32) {
    let theirs = conn.handshake(hash, peer_id(n));
    assert_eq!(
        theirs.info_hash, hash,
        "the peer answered for another torrent"
    );
    conn.expect(
        "a bitfield or have-all",
        Duration::from_secs(10),
        |m| match m {
            Message::HaveAll => Some(()),
            Message::Bitfield(bits) => {
                let full = (0..pieces).all(|i| {
                    bits.get((i / 8) as usize)
                        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
                });
                assert!(full, "a seeder announced a partial bitfield {bits:?}");
                Some(())
            }
            _ => None,
        },
    );
}

#[test]
fn serving_peer_closes_malformed_connections_and_keeps_serving() {
    let scratch = Scratch::new("peer-input");
    let tracker = Tracker::start(&scratch);
    let a_dir = scratch.dir("a");
    let original = a_dir.join(NAME);
    write_pattern_file(&original, SIZE, 11);
    let mut a = serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir),
        &[NAME],
    );
    let hash = InfoHash::from_hex(&a.seeding[NAME])
        .expect("hex info hash")
        .0;
    let pieces = SIZE.div_ceil(PIECE) as u32;

    // 1. A handshake with the wrong protocol string.
    let mut c = WireConn::connect(a.addr);
    c.send_raw(&bad_protocol_handshake(hash));
    c.expect_closed("a bad protocol string", CLOSE_WITHIN);
    assert_eq!(c.received, 0, "the peer answered a bad handshake");

    // 2. A handshake for a torrent the peer does not have.
    let mut c = WireConn::connect(a.addr);
    c.send_raw(
        &enjambre_core::wire::Handshake {
            reserved: [0; 8],
            info_hash: *b"no-such-torrent-here",
            peer_id: peer_id(2),
        }
        .encode(),
    );
    c.expect_closed("an unknown info hash", CLOSE_WITHIN);
    assert_eq!(c.received, 0, "the peer answered for an unknown torrent");

    // 3. A message where the handshake should be.
    let mut c = WireConn::connect(a.addr);
    c.send(&Message::Interested);
    c.send_raw(&[0u8; 64]);
    c.expect_closed("a message instead of a handshake", CLOSE_WITHIN);

    // 4. A good handshake, then a length prefix far over the limit.
    let mut c = WireConn::connect(a.addr);
    open(&mut c, hash, 4, pieces);
    c.send_raw(&[0x10, 0x00, 0x00, 0x00, 7, 0, 0, 0, 0]);
    c.expect_closed("a 256 MiB length prefix", CLOSE_WITHIN);

    // 5. A good handshake, then a Have for a piece that does not exist.
    let mut c = WireConn::connect(a.addr);
    open(&mut c, hash, 5, pieces);
    c.send(&Message::Have {
        index: pieces + 1000,
    });
    c.expect_closed("a have out of range", CLOSE_WITHIN);

    // 6. A good handshake, then a fixed-size message with the wrong size (a 3-byte Have).
    let mut c = WireConn::connect(a.addr);
    open(&mut c, hash, 6, pieces);
    c.send_raw(&[0, 0, 0, 4, 4, 0, 0, 1]);
    c.expect_closed("a have of the wrong size", CLOSE_WITHIN);

    // 7. Requests outside the torrent or over 128 KiB are refused (rejected, no data); a valid one on the
    //    same connection is served with the right bytes.
    let mut c = WireConn::connect(a.addr);
    open(&mut c, hash, 7, pieces);
    c.send(&Message::Interested);
    c.expect("an unchoke", Duration::from_secs(15), |m| {
        (*m == Message::Unchoke).then_some(())
    });
    let last = pieces - 1;
    let last_len = (SIZE - u64::from(last) * PIECE) as u32;
    assert!(last_len < 16384, "the last piece is a short one");
    let bad = [
        (pieces + 3, 0, 16384),         // no such piece
        (0, 0, 256 * 1024),             // larger than 128 KiB
        (last, 0, last_len + 1),        // past the end of the (5-byte) last piece
        (0, 512 * 1024 - 16384, 32768), // past the end of a piece
        (0, 0, 0),                      // empty
    ];
    for (index, begin, length) in bad {
        c.send(&Message::Request {
            index,
            begin,
            length,
        });
    }
    c.send(&Message::Request {
        index: 1,
        begin: 16384,
        length: 16384,
    });
    let mut rejected = Vec::new();
    let data = c.expect("the valid block", Duration::from_secs(15), |m| match m {
        Message::Piece { index, begin, data } => {
            assert_eq!(
                (*index, *begin),
                (1, 16384),
                "the peer served a refused request"
            );
            Some(data.clone())
        }
        Message::Reject {
            index,
            begin,
            length,
        } => {
            rejected.push((*index, *begin, *length));
            None
        }
        _ => None,
    });
    let file = std::fs::read(&original).expect("read original");
    let at = (PIECE + 16384) as usize;
    assert!(
        data[..] == file[at..at + 16384],
        "the served block differs from the file"
    );
    // Nothing is ever served for the refused requests; with the fast extension they are rejected.
    loop {
        match c.next(Duration::from_millis(500)) {
            Got::Frame(Frame::Message(Message::Piece { index, begin, .. })) => {
                panic!("the peer served refused request ({index}, {begin})")
            }
            Got::Frame(Frame::Message(Message::Reject {
                index,
                begin,
                length,
            })) => rejected.push((index, begin, length)),
            Got::Frame(_) => {}
            Got::Closed => {
                panic!("the peer closed a connection whose only fault was refusable requests")
            }
            Got::Nothing => break,
        }
    }
    rejected.sort();
    let mut expected: Vec<(u32, u32, u32)> = bad.to_vec();
    expected.sort();
    assert_eq!(rejected, expected, "every bad request is rejected (BEP 6)");
    drop(c);

    // 8. Garbage from the first byte, then a hang-up mid-handshake.
    let mut c = WireConn::connect(a.addr);
    c.send_raw(&(0..200u32).map(|i| (i * 37) as u8).collect::<Vec<_>>());
    c.expect_closed("binary garbage", CLOSE_WITHIN);
    let mut c = WireConn::connect(a.addr);
    c.send_raw(&bad_protocol_handshake(hash)[..30]);
    c.shutdown_write();
    c.expect_closed("half a handshake and a hang-up", CLOSE_WITHIN);

    // Still serving: a real download completes, byte-identical.
    assert!(a.proc.is_running(), "the serving peer died");
    let b_dir = scratch.dir("b");
    let mut b = get(
        "B",
        &scratch,
        &PeerArgs::new(Some(&tracker), &b_dir),
        &[NAME],
        &[],
    );
    let reports = b.reports(1, Duration::from_secs(60));
    assert_eq!(reports[0].name, NAME);
    assert_eq!(reports[0].size, SIZE);
    assert_same_file(&original, &b_dir.join(NAME));
    assert!(a.proc.is_running(), "the serving peer died");
}
