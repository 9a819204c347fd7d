//! Malformed wire input to a real *downloading* peer: a fake seeder (this test, over raw TCP) that the
//! leecher dials with `--peer` answers with a bad bitfield, a bitfield with spare bits set, a piece outside
//! the torrent, or an absurd length prefix. The leecher drops that connection and still completes the file
//! from an honest seeder.

use enjambre_core::metainfo::InfoHash;
use enjambre_core::wire::{reserved_bits, Frame, Handshake, Message};
use enjambre_tests::bins::{get, serve, PeerArgs, Tracker};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use enjambre_tests::wire::{Got, WireConn};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NAME: &str = "leech.bin";
/// Nine pieces: the last bitfield byte has seven spare bits.
const SIZE: u64 = 4 * 512 * 1024 * 2 + 1000;
const PIECES: u32 = 9;

#[derive(Debug, Clone, Copy)]
enum Bad {
    /// A bitfield of 50 bytes for 9 pieces.
    LongBitfield,
    /// A 2-byte bitfield with the spare bits set.
    SpareBits,
    /// Have-all, then a piece whose index is past the end of the torrent, once the leecher requests.
    PieceOutOfRange,
    /// A length prefix of 4 GiB - 1.
    HugeLength,
}

/// Be the fake seeder for one connection: handshake, misbehave, and report whether the leecher hung up.
fn fake_seeder(listener: TcpListener, info_hash: [u8; 20], bad: Bad) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("the leecher never dialled the fake seeder: {e}")),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let mut c = WireConn::accepted(stream);
    match c.next(Duration::from_secs(10)) {
        Got::Frame(Frame::Handshake(h)) if h.info_hash == info_hash => {}
        other => return Err(format!("expected the leecher's handshake, got {other:?}")),
    }
    c.send_raw(
        &Handshake {
            reserved: reserved_bits(true, false),
            info_hash,
            peer_id: *b"-FAKE00-fakeseeder00",
        }
        .encode(),
    );
    match bad {
        Bad::LongBitfield => c.send_raw(&[&[0, 0, 0, 51, 5][..], &[0xFF; 50]].concat()),
        Bad::SpareBits => c.send_raw(&[0, 0, 0, 3, 5, 0xFF, 0xFF]),
        Bad::HugeLength => c.send_raw(&[0xFF, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0, 0]),
        Bad::PieceOutOfRange => {
            c.send(&Message::HaveAll);
            c.send(&Message::Unchoke);
            // Wait for a request, then answer with a piece that does not exist.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match c.next(left) {
                    Got::Frame(Frame::Message(Message::Request { begin, length, .. })) => {
                        let mut out = vec![];
                        let len = 9 + length as usize;
                        out.extend_from_slice(&(len as u32).to_be_bytes());
                        out.push(7);
                        out.extend_from_slice(&(PIECES + 100).to_be_bytes());
                        out.extend_from_slice(&begin.to_be_bytes());
                        out.extend_from_slice(&vec![0xAB; length as usize]);
                        c.send_raw(&out);
                        break;
                    }
                    Got::Frame(_) => {}
                    other => return Err(format!("the leecher never requested: {other:?}")),
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next(left) {
            Got::Closed => return Ok(()),
            Got::Frame(_) => {}
            Got::Nothing => {
                return Err(format!(
                    "the leecher kept the connection open 10 s after {bad:?}"
                ))
            }
        }
    }
}

#[test]
fn leecher_drops_malformed_sources_and_completes_from_honest_ones() {
    let scratch = Scratch::new("leecher-input");
    let tracker = Tracker::start(&scratch);
    let a_dir = scratch.dir("a");
    let original = a_dir.join(NAME);
    write_pattern_file(&original, SIZE, 61);
    // Slow enough that the leecher is still downloading while it deals with the fake.
    let a = serve(
        "A",
        &scratch,
        &PeerArgs::new(Some(&tracker), &a_dir).upload_rate("3MB"),
        &[NAME],
    );
    let hash = InfoHash::from_hex(&a.seeding[NAME]).expect("hex").0;
    for (i, bad) in [
        Bad::LongBitfield,
        Bad::SpareBits,
        Bad::PieceOutOfRange,
        Bad::HugeLength,
    ]
    .into_iter()
    .enumerate()
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let fake = listener.local_addr().expect("addr").to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(fake_seeder(listener, hash, bad));
        });
        let dir = scratch.dir(&format!("l{i}"));
        let mut l = get(
            &format!("L{i}"),
            &scratch,
            &PeerArgs::new(Some(&tracker), &dir),
            &[NAME],
            &["--peer", &fake],
        );
        let verdict = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{bad:?}: the fake seeder hung"));
        if let Err(e) = verdict {
            panic!("{bad:?}: {e}\n{}", l.proc.stderr_tail());
        }
        let r = l.reports(1, Duration::from_secs(60)).remove(0);
        assert_same_file(&original, &dir.join(NAME));
        assert!(
            r.sources.keys().all(|s| s.to_string() != fake),
            "{bad:?}: payload accepted from the fake seeder: {r:?}"
        );
    }
}
