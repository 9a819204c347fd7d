//! The metadata phase of a magnet (BEP 9): a node that knows only an info hash gets the info dictionary from
//! another node, or from hand peers, honest and hostile.

use super::*;
use crate::extension::metadata::{MetadataMsg, PIECE_LEN};
use crate::extension::{ExtHandshake, OUR_METADATA_ID};

/// The id our hand peers want `ut_metadata` sent with.
const HAND_METADATA_ID: u8 = 5;

/// A torrent whose info dictionary spans three metadata pieces: 2,100 piece hashes (the pieces' data is never
/// needed here, so the hashes are made up).
fn big_meta() -> Arc<Metainfo> {
    let pieces = 2100u32;
    let files = vec![FileEntry {
        path: vec!["big.bin".into()],
        length: u64::from(pieces) * 16 * 1024,
    }];
    let hashes = (0..pieces).map(|i| [(i % 251) as u8; 20]).collect();
    Arc::new(build("big.bin", 16 * 1024, files, hashes, None).unwrap())
}

fn info_of(meta: &Metainfo) -> Vec<u8> {
    super::super::peer_exchange::info_bytes(meta)
        .unwrap()
        .to_vec()
}

fn fetcher(sources: Vec<SocketAddr>, hash: InfoHash) -> Node {
    let mut node = Node::new(NodeConfig {
        peer_id: peer_id(1),
        ..NodeConfig::default()
    });
    node.fetch_metadata(
        Instant::ZERO,
        FetchMetadata {
            info_hash: hash,
            sources,
            announce: false,
        },
    );
    node
}

/// Every output of `node` until it is quiet.
fn outputs(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

#[test]
fn a_magnet_gets_its_metadata_from_a_seeding_node_and_becomes_a_torrent() {
    let meta = big_meta();
    assert!(
        info_of(&meta).len() > 2 * PIECE_LEN,
        "several metadata pieces"
    );
    let seeder_addr = SocketAddr::from(([10, 0, 0, 1], 7000));
    let mut seeder = Node::new(NodeConfig {
        peer_id: peer_id(0),
        peer_exchange: true,
        serve_metadata: true,
        ..NodeConfig::default()
    });
    seeder.add_torrent(
        Instant::ZERO,
        AddTorrent {
            meta: meta.clone(),
            resume: Resume::Complete,
            announce: false,
            sources: vec![],
        },
    );
    outputs(&mut seeder);
    let mut leecher = fetcher(vec![seeder_addr], meta.info_hash);
    assert!(leecher.is_fetching_metadata(&meta.info_hash));
    // Shuttle bytes between the two nodes: leecher conn -> seeder conn.
    let mut links: BTreeMap<ConnId, ConnId> = BTreeMap::new();
    let mut got = None;
    for _ in 0..100 {
        let mut quiet = true;
        for o in outputs(&mut leecher) {
            quiet = false;
            match o {
                Output::Connect { conn, addr } => {
                    assert_eq!(addr, seeder_addr);
                    let theirs = seeder.allocate_conn_id();
                    links.insert(conn, theirs);
                    seeder.handle_input(
                        Instant::ZERO,
                        Input::Accepted {
                            conn: theirs,
                            addr: SocketAddr::from(([10, 0, 0, 2], 50000)),
                        },
                    );
                    leecher.handle_input(Instant::ZERO, Input::Connected { conn });
                }
                Output::Send { conn, data } => {
                    let theirs = links[&conn];
                    seeder.handle_input(Instant::ZERO, Input::Received { conn: theirs, data });
                }
                Output::Metadata { result, peers, .. } => got = Some((result, peers)),
                _ => {}
            }
        }
        for o in outputs(&mut seeder) {
            if let Output::Send { conn, data } = o {
                quiet = false;
                let ours = links.iter().find(|(_, t)| **t == conn).map(|(o, _)| *o);
                if let Some(ours) = ours {
                    leecher.handle_input(Instant::ZERO, Input::Received { conn: ours, data });
                }
            }
        }
        if quiet {
            break;
        }
    }
    let (result, peers) = got.expect("the metadata phase ended");
    let fetched = result.expect("the metadata is a usable torrent");
    assert_eq!(fetched.info_hash, meta.info_hash);
    assert_eq!(fetched.info, meta.info);
    assert_eq!(info_of(&fetched), info_of(&meta), "the info bytes, exactly");
    assert_eq!(
        peers,
        vec![seeder_addr],
        "the peers met go on to the download"
    );
    assert!(!leecher.is_fetching_metadata(&meta.info_hash));
    // The driver adds it as a normal torrent: it dials the seeder again, now for pieces.
    leecher.add_torrent(
        Instant::ZERO,
        AddTorrent {
            meta: fetched,
            resume: Resume::Fresh,
            announce: false,
            sources: peers,
        },
    );
    let dials: Vec<SocketAddr> = outputs(&mut leecher)
        .into_iter()
        .filter_map(|o| match o {
            Output::Connect { addr, .. } => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(dials, vec![seeder_addr]);
}

/// A hand peer connected in to a fetching node, offering `size` bytes of metadata; the node's requests
/// it receives are returned by [`Hand::requests`].
struct Hand {
    conn: ConnId,
    dec: crate::wire::Decoder,
    closed: bool,
    events: Vec<NodeEvent>,
    metadata: Vec<Output>,
}

impl Hand {
    fn connect(node: &mut Node, hash: InfoHash, port: u16, size: usize) -> Hand {
        let conn = node.allocate_conn_id();
        node.handle_input(
            Instant::ZERO,
            Input::Accepted {
                conn,
                addr: SocketAddr::from(([10, 0, 0, 9], port + 30000)),
            },
        );
        let mut hand = Hand {
            conn,
            dec: crate::wire::Decoder::new(true, crate::wire::DEFAULT_MAX_MESSAGE_LEN),
            closed: false,
            events: Vec::new(),
            metadata: Vec::new(),
        };
        let hs = Handshake {
            reserved: crate::wire::reserved_bits(true, true),
            info_hash: hash.0,
            peer_id: [(port % 251) as u8; 20],
        };
        hand.send_raw(node, Bytes::copy_from_slice(&hs.encode()));
        let ext = ExtHandshake {
            messages: BTreeMap::from([("ut_metadata".to_string(), HAND_METADATA_ID)]),
            listen_port: Some(port),
            metadata_size: Some(size as u32),
            ..Default::default()
        };
        hand.send(
            node,
            Message::Extended {
                id: 0,
                payload: Bytes::from(ext.encode()),
            },
        );
        hand
    }

    fn send_raw(&mut self, node: &mut Node, data: Bytes) {
        node.handle_input(
            Instant::ZERO,
            Input::Received {
                conn: self.conn,
                data,
            },
        );
        for o in outputs(node) {
            match o {
                Output::Send { conn, data } if conn == self.conn => self.dec.feed(&data),
                Output::Close { conn } if conn == self.conn => self.closed = true,
                Output::Event(e) => self.events.push(e),
                o @ Output::Metadata { .. } => self.metadata.push(o),
                _ => {}
            }
        }
    }

    fn send(&mut self, node: &mut Node, msg: Message) {
        let mut buf = bytes::BytesMut::new();
        msg.encode(&mut buf);
        self.send_raw(node, buf.freeze());
    }

    /// The metadata pieces the node asked for since last time.
    fn requests(&mut self) -> Vec<u32> {
        let mut asked = Vec::new();
        while let Ok(Some(f)) = self.dec.next_frame() {
            if let Frame::Message(Message::Extended {
                id: HAND_METADATA_ID,
                payload,
            }) = f
            {
                if let Ok(MetadataMsg::Request { piece }) = MetadataMsg::parse(&payload) {
                    asked.push(piece);
                }
            }
        }
        asked
    }

    /// Answer every request with the pieces of `info` (which may be a lie), until the node stops asking or
    /// has discarded one whole set.
    fn serve(&mut self, node: &mut Node, info: &[u8]) {
        let failed = |h: &Hand| {
            h.events
                .iter()
                .filter(|e| matches!(e, NodeEvent::MetadataFailed { .. }))
                .count()
        };
        let before = failed(self);
        loop {
            if self.closed || failed(self) > before {
                return;
            }
            let asked = self.requests();
            if asked.is_empty() {
                return;
            }
            for piece in asked {
                let reply = crate::extension::metadata::serve(info, piece);
                self.send(
                    node,
                    Message::Extended {
                        id: OUR_METADATA_ID,
                        payload: Bytes::from(reply.encode()),
                    },
                );
            }
        }
    }
}

#[test]
fn metadata_that_does_not_hash_is_discarded_its_sender_struck_then_banned() {
    let meta = big_meta();
    let info = info_of(&meta);
    let mut lie = info.clone();
    let last = lie.len() - 3;
    lie[last] ^= 0xff;
    let mut node = fetcher(vec![], meta.info_hash);
    outputs(&mut node);
    let mut liar = Hand::connect(&mut node, meta.info_hash, 7100, info.len());
    liar.serve(&mut node, &lie);
    let liar_addr = SocketAddr::from(([10, 0, 0, 9], 7100));
    assert!(
        liar.events.contains(&NodeEvent::MetadataFailed {
            torrent: meta.info_hash,
            from: vec![liar_addr],
        }),
        "{:?}",
        liar.events
    );
    assert!(liar.metadata.is_empty(), "nothing was accepted");
    assert!(!liar.closed, "one strike is not a ban");
    // It is asked again from scratch, lies again, and is banned.
    liar.serve(&mut node, &lie);
    assert!(liar.closed, "the second bad set bans it: {:?}", liar.events);
    assert!(liar.events.contains(&NodeEvent::Banned {
        torrent: meta.info_hash,
        addr: liar_addr,
        strikes: 2,
    }));
    assert!(node.is_fetching_metadata(&meta.info_hash));
    // An honest peer then gives the real dictionary.
    let mut honest = Hand::connect(&mut node, meta.info_hash, 7200, info.len());
    honest.serve(&mut node, &info);
    let Some(Output::Metadata { result, peers, .. }) = honest.metadata.pop() else {
        panic!("no metadata: {:?}", honest.events);
    };
    assert_eq!(result.expect("usable").info_hash, meta.info_hash);
    assert_eq!(
        peers,
        vec![SocketAddr::from(([10, 0, 0, 9], 7200))],
        "the liar is left out"
    );
}

#[test]
fn hostile_metadata_messages_never_complete_the_phase() {
    let meta = big_meta();
    let info = info_of(&meta);
    let mut node = fetcher(vec![], meta.info_hash);
    outputs(&mut node);
    let mut hand = Hand::connect(&mut node, meta.info_hash, 7300, info.len());
    assert_eq!(hand.requests(), vec![0, 1], "two pieces asked at a time");
    // A piece of the wrong length, another total size, a piece past the end, garbage: none is kept.
    let hostile: Vec<Vec<u8>> = vec![
        {
            let mut m = b"d8:msg_typei1e5:piecei0e10:total_sizei".to_vec();
            m.extend_from_slice(format!("{}ee", info.len()).as_bytes());
            m.extend_from_slice(&[0; 10]);
            m
        },
        MetadataMsg::Data {
            piece: 0,
            total_size: info.len() as u32 + 1,
            data: Bytes::copy_from_slice(&info[..PIECE_LEN]),
        }
        .encode(),
        b"d8:msg_typei1e5:piecei99e10:total_sizei5eeabcde".to_vec(),
        b"i42e".to_vec(),
    ];
    for payload in hostile {
        hand.send(
            &mut node,
            Message::Extended {
                id: OUR_METADATA_ID,
                payload: Bytes::from(payload),
            },
        );
    }
    assert!(hand.metadata.is_empty());
    assert!(node.is_fetching_metadata(&meta.info_hash));
    // A reject sends the piece elsewhere: this peer is not asked again.
    hand.send(
        &mut node,
        Message::Extended {
            id: OUR_METADATA_ID,
            payload: Bytes::from(MetadataMsg::Reject { piece: 1 }.encode()),
        },
    );
    let _ = hand.requests();
    hand.send(&mut node, Message::KeepAlive);
    assert!(
        hand.requests().is_empty(),
        "a peer that rejects is not asked again"
    );
}
