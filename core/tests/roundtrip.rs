//! Round-trip properties of every encoder/decoder pair in the core (run in CI with modest case counts;
//! the fuzz targets in `fuzz/` explore the decoders much further).

use bytes::{Bytes, BytesMut};
use enjambre_core::bencode::{self, Value};
use enjambre_core::bitfield::Bitfield;
use enjambre_core::checkpoint::Checkpoint;
use enjambre_core::metainfo::{build, FileEntry, InfoHash};
use enjambre_core::tracker::proto::{
    announce_query, parse_announce_query, percent_decode, percent_encode, AnnounceParams,
};
use enjambre_core::tracker::Event;
use enjambre_core::wire::{Decoder, Frame, Handshake, Message, DEFAULT_MAX_MESSAGE_LEN};
use proptest::prelude::*;

/// Cases per property: enough to catch a broken encoder, small enough for CI.
const CASES: u32 = 128;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

/// Any bencode value up to a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..8), inner, 0..6)
                .prop_map(Value::Dict),
        ]
    })
}

fn bytes_up_to(n: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
}

/// Any message the codec knows, plus unknown ids (those no BEP this codec speaks assigns).
fn message() -> impl Strategy<Value = Message> {
    let u = any::<u32>;
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        u().prop_map(|index| Message::Have { index }),
        u().prop_map(|index| Message::SuggestPiece { index }),
        u().prop_map(|index| Message::AllowedFast { index }),
        bytes_up_to(64).prop_map(Message::Bitfield),
        (u(), u(), u()).prop_map(|(index, begin, length)| Message::Request {
            index,
            begin,
            length
        }),
        (u(), u(), u()).prop_map(|(index, begin, length)| Message::Cancel {
            index,
            begin,
            length
        }),
        (u(), u(), u()).prop_map(|(index, begin, length)| Message::Reject {
            index,
            begin,
            length
        }),
        (u(), u(), bytes_up_to(600)).prop_map(|(index, begin, data)| Message::Piece {
            index,
            begin,
            data
        }),
        any::<u16>().prop_map(Message::Port),
        (any::<u8>(), bytes_up_to(64)).prop_map(|(id, payload)| Message::Extended { id, payload }),
        (
            prop::sample::select(vec![10u8, 11, 12, 18, 19, 21, 99, 255]),
            bytes_up_to(32)
        )
            .prop_map(|(id, payload)| Message::Unknown { id, payload }),
    ]
}

fn handshake() -> impl Strategy<Value = Handshake> {
    (any::<[u8; 8]>(), any::<[u8; 20]>(), any::<[u8; 20]>()).prop_map(
        |(reserved, info_hash, peer_id)| Handshake {
            reserved,
            info_hash,
            peer_id,
        },
    )
}

/// Feeds `stream` to a decoder in pieces cut at `cuts` (positions, any order) and collects the frames.
fn decode_chunked(stream: &[u8], expect_handshake: bool, cuts: &[usize]) -> Vec<Frame> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    points.dedup();
    let mut dec = Decoder::new(expect_handshake, DEFAULT_MAX_MESSAGE_LEN);
    let mut frames = Vec::new();
    for w in points.windows(2) {
        dec.feed(&stream[w[0]..w[1]]);
        while let Some(f) = dec.next_frame().expect("valid stream") {
            frames.push(f);
        }
    }
    assert_eq!(dec.buffered(), 0, "bytes left over after a whole stream");
    frames
}

fn event() -> impl Strategy<Value = Event> {
    prop::sample::select(vec![
        Event::None,
        Event::Started,
        Event::Completed,
        Event::Stopped,
    ])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn bencode_encode_then_decode_is_identity(v in value()) {
        let encoded = bencode::encode(&v);
        prop_assert_eq!(bencode::decode(&encoded), Ok(v.clone()));
        // A value followed by anything decodes as a prefix of exactly its own length.
        let mut longer = encoded.clone();
        longer.extend_from_slice(b"i1e");
        prop_assert_eq!(bencode::decode_prefix(&longer), Ok((v, encoded.len())));
    }

    #[test]
    fn wire_messages_survive_any_chunking(
        hs in prop::option::of(handshake()),
        msgs in prop::collection::vec(message(), 0..24),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut out = BytesMut::new();
        if let Some(h) = &hs {
            out.extend_from_slice(&h.encode());
        }
        for m in &msgs {
            m.encode(&mut out);
        }
        let mut expected: Vec<Frame> = hs.into_iter().map(Frame::Handshake).collect();
        expected.extend(msgs.into_iter().map(Frame::Message));
        let with_handshake = matches!(expected.first(), Some(Frame::Handshake(_)));
        prop_assert_eq!(&decode_chunked(&out, with_handshake, &cuts), &expected);
        // One byte at a time, the hardest chunking.
        let every: Vec<usize> = (0..out.len()).collect();
        prop_assert_eq!(&decode_chunked(&out, with_handshake, &every), &expected);
    }

    #[test]
    fn announce_query_build_then_parse(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        port in 1u16..,
        uploaded in any::<u64>(),
        downloaded in any::<u64>(),
        left in any::<u64>(),
        event in event(),
        numwant in any::<u32>(),
    ) {
        let p = AnnounceParams {
            info_hash: InfoHash(info_hash),
            peer_id,
            port,
            uploaded,
            downloaded,
            left,
            event,
            numwant,
            key: 0,
            ext: Default::default(),
        };
        let req = parse_announce_query(&announce_query(&p)).expect("own query parses");
        prop_assert_eq!(req.info_hash, p.info_hash);
        prop_assert_eq!(req.peer_id, peer_id);
        prop_assert_eq!(
            (req.port, req.uploaded, req.downloaded, req.left, req.event, req.numwant, req.compact),
            (port, uploaded, downloaded, left, event, Some(numwant), true)
        );
    }

    #[test]
    fn percent_encode_then_decode(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(percent_decode(&percent_encode(&bytes)), Some(bytes));
    }

    #[test]
    fn checkpoint_serialize_then_parse_and_validate(
        piece_shift in 14u32..20,
        lengths in prop::collection::vec(0u64..3_000_000, 1..5),
        seed_bits in prop::collection::vec(any::<bool>(), 0..400),
    ) {
        let piece_length = 1u32 << piece_shift;
        let files: Vec<FileEntry> = lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| FileEntry { path: vec![format!("f{i}.bin")], length })
            .collect();
        let total: u64 = lengths.iter().sum();
        let pieces = total.div_ceil(u64::from(piece_length)) as usize;
        let meta = build("t", piece_length, files, vec![[3u8; 20]; pieces], None)
            .expect("valid geometry");
        let mut verified = Bitfield::new(meta.piece_count());
        for (i, _) in seed_bits.iter().enumerate().filter(|(_, b)| **b) {
            if let Ok(i) = u32::try_from(i) {
                if i < meta.piece_count() {
                    verified.set(i);
                }
            }
        }
        let cp = Checkpoint::new(&meta, &verified);
        let parsed = Checkpoint::from_json(&cp.to_json()).expect("own checkpoint parses");
        prop_assert_eq!(&parsed, &cp);
        prop_assert_eq!(parsed.validate(&meta).expect("own checkpoint validates"), verified.clone());
        prop_assert_eq!(Bitfield::from_ranges(&verified.to_ranges(), verified.len()), Some(verified));
    }
}
