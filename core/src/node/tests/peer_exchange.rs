//! BEP 9 serving and BEP 11 peer exchange, driven by hand peers.

use super::*;
use crate::extension::metadata::{Assembled, MetadataAssembly, MetadataMsg};
use crate::extension::pex::{PexFlags, PexMessage};
use crate::extension::{ExtHandshake, OUR_METADATA_ID, OUR_PEX_ID};

/// The ids our hand peers want `ut_metadata` and `ut_pex` sent with.
const HAND_METADATA_ID: u8 = 7;
const HAND_PEX_ID: u8 = 8;

fn node_with(resume: Resume) -> (Node, Arc<Metainfo>) {
    let meta = meta_for(&content(4 * PL as usize));
    let mut node = Node::new(NodeConfig {
        peer_id: peer_id(0),
        peer_exchange: true,
        serve_metadata: true,
        ..NodeConfig::default()
    });
    node.add_torrent(
        Instant::ZERO,
        AddTorrent {
            meta: meta.clone(),
            resume,
            announce: false,
            sources: vec![],
        },
    );
    while node.poll_output().is_some() {}
    (node, meta)
}

/// A hand peer that speaks BEP 10 with both extensions and listens on `port`; returns it and the node's
/// extension handshake.
fn extended_peer(node: &mut Node, meta: &Metainfo, port: u16) -> (HandPeer, ExtHandshake) {
    let (peer, theirs, _) = extended_peer_told(node, meta, port);
    (peer, theirs)
}

/// [`extended_peer`], also returning the PEX messages the node sent it in answer to its handshake.
fn extended_peer_told(
    node: &mut Node,
    meta: &Metainfo,
    port: u16,
) -> (HandPeer, ExtHandshake, Vec<PexMessage>) {
    // Each hand peer has its own peer id (the node drops a second connection to the same peer).
    let conn = node.allocate_conn_id();
    node.handle_input(
        Instant::ZERO,
        Input::Accepted {
            conn,
            addr: SocketAddr::from(([10, 0, 0, 9], port + 30000)),
        },
    );
    let hs = Handshake {
        reserved: crate::wire::reserved_bits(true, true),
        info_hash: meta.info_hash.0,
        peer_id: [(port % 251) as u8; 20],
    };
    let mut peer = HandPeer {
        conn,
        dec: crate::wire::Decoder::new(true, crate::wire::DEFAULT_MAX_MESSAGE_LEN),
        closed: false,
    };
    peer.feed(node, Bytes::copy_from_slice(&hs.encode()));
    let ours = ExtHandshake {
        messages: BTreeMap::from([
            ("ut_metadata".to_string(), HAND_METADATA_ID),
            ("ut_pex".to_string(), HAND_PEX_ID),
        ]),
        listen_port: Some(port),
        ..Default::default()
    };
    let (out, _) = peer.say(
        node,
        &[Message::Extended {
            id: 0,
            payload: Bytes::from(ours.encode()),
        }],
    );
    let mut theirs = out.iter().filter_map(|m| match m {
        Message::Extended { id: 0, payload } => ExtHandshake::parse(payload).ok(),
        _ => None,
    });
    let theirs = theirs
        .next()
        .expect("the node sent its extension handshake");
    let told = out
        .iter()
        .filter_map(|m| match m {
            Message::Extended {
                id: HAND_PEX_ID,
                payload,
            } => PexMessage::parse(payload).ok(),
            _ => None,
        })
        .collect();
    (peer, theirs, told)
}

#[test]
fn without_the_switch_nothing_is_advertised() {
    let meta = meta_for(&content(4 * PL as usize));
    let mut node = Node::new(NodeConfig::default());
    node.add_torrent(
        Instant::ZERO,
        AddTorrent {
            meta: meta.clone(),
            resume: Resume::Complete,
            announce: false,
            sources: vec![],
        },
    );
    while node.poll_output().is_some() {}
    let (_, theirs) = extended_peer(&mut node, &meta, 7001);
    assert!(theirs.messages.is_empty());
    assert_eq!(theirs.metadata_size, None);
}

#[test]
fn each_switch_advertises_its_own_extension() {
    let meta = meta_for(&content(4 * PL as usize));
    for (peer_exchange, serve_metadata) in [(true, false), (false, true)] {
        let mut node = Node::new(NodeConfig {
            peer_exchange,
            serve_metadata,
            ..NodeConfig::default()
        });
        node.add_torrent(
            Instant::ZERO,
            AddTorrent {
                meta: meta.clone(),
                resume: Resume::Complete,
                announce: false,
                sources: vec![],
            },
        );
        while node.poll_output().is_some() {}
        let (mut peer, theirs) = extended_peer(&mut node, &meta, 7001);
        assert_eq!(theirs.messages.contains_key("ut_pex"), peer_exchange);
        assert_eq!(theirs.messages.contains_key("ut_metadata"), serve_metadata);
        assert_eq!(theirs.metadata_size.is_some(), serve_metadata);
        let (out, _) = peer.say(
            &mut node,
            &[Message::Extended {
                id: OUR_METADATA_ID,
                payload: Bytes::from(MetadataMsg::Request { piece: 0 }.encode()),
            }],
        );
        let answered = out.iter().any(|m| {
            matches!(
                m,
                Message::Extended {
                    id: HAND_METADATA_ID,
                    ..
                }
            )
        });
        assert_eq!(
            answered, serve_metadata,
            "metadata served only when told to"
        );
    }
}

#[test]
fn metadata_is_served_in_pieces_that_hash_to_the_info_hash() {
    let (mut node, meta) = node_with(Resume::Complete);
    let (mut peer, theirs) = extended_peer(&mut node, &meta, 7001);
    assert_eq!(theirs.messages.get("ut_metadata"), Some(&OUR_METADATA_ID));
    assert_eq!(theirs.messages.get("ut_pex"), Some(&OUR_PEX_ID));
    let size = theirs.metadata_size.expect("metadata_size advertised") as usize;
    let mut assembly = MetadataAssembly::<u8>::new(meta.info_hash, size).unwrap();
    let pieces = size.div_ceil(crate::extension::metadata::PIECE_LEN) as u32;
    let mut done = None;
    for piece in 0..=pieces {
        let (out, _) = peer.say(
            &mut node,
            &[Message::Extended {
                id: OUR_METADATA_ID,
                payload: Bytes::from(MetadataMsg::Request { piece }.encode()),
            }],
        );
        let reply = out
            .iter()
            .find_map(|m| match m {
                Message::Extended {
                    id: HAND_METADATA_ID,
                    payload,
                } => MetadataMsg::parse(payload).ok(),
                _ => None,
            })
            .expect("a ut_metadata answer");
        match reply {
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                if let Assembled::Complete(info) = assembly.insert(0, piece, total_size, data) {
                    done = Some(info);
                }
            }
            MetadataMsg::Reject { piece: p } => assert_eq!(p, pieces, "only past the end"),
            MetadataMsg::Request { .. } => panic!("the node asked us"),
        }
    }
    let info = done.expect("every piece served");
    assert_eq!(crate::metainfo::InfoHash::of(&info), meta.info_hash);
}

#[test]
fn pex_adds_dialling_candidates_and_tells_each_peer_about_the_others() {
    let (mut node, meta) = node_with(Resume::Fresh);
    let (mut a, _) = extended_peer(&mut node, &meta, 7001);
    let (mut b, _, told_b) = extended_peer_told(&mut node, &meta, 7002);
    // A tells the node about a peer it has not met: the node dials it.
    let tip: SocketAddr = "10.0.0.50:6881".parse().unwrap();
    let pex = PexMessage {
        added: vec![(tip, PexFlags(PexFlags::SEED))],
        dropped: vec![],
    };
    a.feed(&mut node, {
        let mut buf = bytes::BytesMut::new();
        Message::Extended {
            id: OUR_PEX_ID,
            payload: Bytes::from(pex.encode()),
        }
        .encode(&mut buf);
        buf.freeze()
    });
    let mut dialled = Vec::new();
    let mut to_a = Vec::new();
    // B hears about A in answer to its extension handshake; A hears about B at the node's next timer.
    let mut to_b = told_b;
    let mut collect = |node: &mut Node, dialled: &mut Vec<SocketAddr>| {
        while let Some(o) = node.poll_output() {
            match o {
                Output::Connect { addr, .. } => dialled.push(addr),
                Output::Send { conn, data } if conn == a.conn => a.dec.feed(&data),
                Output::Send { conn, data } if conn == b.conn => b.dec.feed(&data),
                _ => {}
            }
        }
    };
    collect(&mut node, &mut dialled);
    assert!(dialled.contains(&tip), "{dialled:?}");
    // By the node's next timer A knows B and B knows A, by their listen addresses.
    node.handle_timeout(Instant::from_micros(1_000_000));
    collect(&mut node, &mut dialled);
    for (peer, out) in [(&mut a, &mut to_a), (&mut b, &mut to_b)] {
        while let Ok(Some(f)) = peer.dec.next_frame() {
            if let Frame::Message(Message::Extended {
                id: HAND_PEX_ID,
                payload,
            }) = f
            {
                out.push(PexMessage::parse(&payload).unwrap());
            }
        }
    }
    let told = |msgs: &[PexMessage]| -> Vec<SocketAddr> {
        msgs.iter()
            .flat_map(|m| m.added.iter().map(|(addr, _)| *addr))
            .collect()
    };
    assert!(
        told(&to_a).contains(&"10.0.0.9:7002".parse().unwrap()),
        "{to_a:?}"
    );
    assert!(
        told(&to_b).contains(&"10.0.0.9:7001".parse().unwrap()),
        "{to_b:?}"
    );
    assert!(
        !told(&to_a).contains(&"10.0.0.9:7001".parse().unwrap()),
        "not itself"
    );
    // Within the minute, nothing more is sent even though the dialled peer may connect.
    node.handle_timeout(Instant::from_micros(30_000_000));
    let mut more = Vec::new();
    while let Some(o) = node.poll_output() {
        if let Output::Send { conn, data } = o {
            if conn == a.conn {
                more.push(data);
            }
        }
    }
    let mut dec = crate::wire::Decoder::new(false, crate::wire::DEFAULT_MAX_MESSAGE_LEN);
    for d in &more {
        dec.feed(d);
    }
    while let Ok(Some(f)) = dec.next_frame() {
        assert!(
            !matches!(
                f,
                Frame::Message(Message::Extended {
                    id: HAND_PEX_ID,
                    ..
                })
            ),
            "a second PEX message within the minute"
        );
    }
}

/// Feed the node one `ut_pex` message from `peer`, naming `added`.
fn tell_pex(node: &mut Node, peer: &mut HandPeer, added: Vec<(SocketAddr, PexFlags)>) {
    let pex = PexMessage {
        added,
        dropped: vec![],
    };
    let mut buf = bytes::BytesMut::new();
    Message::Extended {
        id: OUR_PEX_ID,
        payload: Bytes::from(pex.encode()),
    }
    .encode(&mut buf);
    peer.feed(node, buf.freeze());
}

/// The addresses of every `Connect` the node asks for now.
fn dialled(node: &mut Node) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    while let Some(o) = node.poll_output() {
        if let Output::Connect { addr, .. } = o {
            out.push(addr);
        }
    }
    out
}

#[test]
fn a_seed_does_not_dial_peers_that_pex_flags_as_seeds() {
    let (mut node, meta) = node_with(Resume::Complete);
    let (mut a, _) = extended_peer(&mut node, &meta, 7001);
    let seed: SocketAddr = "10.0.0.50:6881".parse().unwrap();
    let leecher: SocketAddr = "10.0.0.51:6881".parse().unwrap();
    tell_pex(
        &mut node,
        &mut a,
        vec![(seed, PexFlags(PexFlags::SEED)), (leecher, PexFlags(0))],
    );
    let out = dialled(&mut node);
    assert!(out.contains(&leecher), "{out:?}");
    assert!(!out.contains(&seed), "{out:?}");
}

#[test]
fn a_leecher_still_dials_peers_that_pex_flags_as_seeds() {
    let (mut node, meta) = node_with(Resume::Fresh);
    let (mut a, _) = extended_peer(&mut node, &meta, 7001);
    let seed: SocketAddr = "10.0.0.50:6881".parse().unwrap();
    tell_pex(&mut node, &mut a, vec![(seed, PexFlags(PexFlags::SEED))]);
    assert_eq!(dialled(&mut node), vec![seed]);
}

#[test]
fn pex_flags_a_connected_peer_that_holds_everything_as_a_seed() {
    let (mut node, meta) = node_with(Resume::Fresh);
    let (mut a, _) = extended_peer(&mut node, &meta, 7001);
    let full = Bitfield::full(meta.piece_count());
    a.say(
        &mut node,
        &[Message::Bitfield(Bytes::copy_from_slice(full.as_bytes()))],
    );
    let (_b, _, told_b) = extended_peer_told(&mut node, &meta, 7002);
    let flags: Vec<(SocketAddr, PexFlags)> = told_b.iter().flat_map(|m| m.added.clone()).collect();
    let a_addr: SocketAddr = "10.0.0.9:7001".parse().unwrap();
    let a_flags = flags
        .iter()
        .find(|(addr, _)| *addr == a_addr)
        .map(|(_, f)| *f);
    assert!(a_flags.is_some_and(|f| f.is_seed()), "{flags:?}");
}
