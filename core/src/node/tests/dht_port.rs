//! BEP 5 on the peer wire: a node that runs a DHT node sets the DHT bit of its handshake, sends its DHT
//! port to peers that set theirs, and hands the DHT ports peers send to its driver; a node without one
//! does none of it. A DHT lookup's peers reach a metadata phase through [`Node::add_peer`].

use super::*;
use crate::node::metadata_fetch::FetchMetadata;

const PEER: [u8; 4] = [10, 0, 0, 9];

/// A seeding node for a 2-piece file, with `dht_port`.
fn seeder(dht_port: Option<u16>) -> (Node, Arc<Metainfo>) {
    let meta = meta_for(&content(2 * PL as usize));
    let mut node = Node::new(NodeConfig {
        peer_id: peer_id(0),
        dht_port,
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
    (node, meta)
}

/// What a peer dialling in with `reserved` then sending `msgs` sees: our handshake's reserved bytes, our
/// messages, and the DHT nodes the node handed its driver.
fn dial_in(
    node: &mut Node,
    meta: &Metainfo,
    reserved: [u8; 8],
    msgs: &[Message],
) -> ([u8; 8], Vec<Message>, Vec<SocketAddr>) {
    let conn = node.allocate_conn_id();
    node.handle_input(
        Instant::ZERO,
        Input::Accepted {
            conn,
            addr: SocketAddr::from((PEER, 40000)),
        },
    );
    let hs = Handshake {
        reserved,
        info_hash: meta.info_hash.0,
        peer_id: [9; 20],
    };
    let mut bytes = bytes::BytesMut::from(&hs.encode()[..]);
    for m in msgs {
        m.encode(&mut bytes);
    }
    node.handle_input(
        Instant::ZERO,
        Input::Received {
            conn,
            data: bytes.freeze(),
        },
    );
    let mut dec = crate::wire::Decoder::new(true, crate::wire::DEFAULT_MAX_MESSAGE_LEN);
    let mut dht_nodes = Vec::new();
    while let Some(o) = node.poll_output() {
        match o {
            Output::Send { conn: c, data } if c == conn => dec.feed(&data),
            Output::DhtNode { addr } => dht_nodes.push(addr),
            _ => {}
        }
    }
    let mut ours = None;
    let mut sent = Vec::new();
    while let Ok(Some(frame)) = dec.next_frame() {
        match frame {
            Frame::Handshake(h) => ours = Some(h.reserved),
            Frame::Message(m) => sent.push(m),
        }
    }
    (
        ours.expect("the node answers the handshake"),
        sent,
        dht_nodes,
    )
}

fn ports(msgs: &[Message]) -> Vec<u16> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Port(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_with_a_dht_swaps_ports_with_a_peer_that_has_one() {
    let (mut node, meta) = seeder(Some(7001));
    let theirs = crate::wire::with_dht_bit(crate::wire::reserved_bits(true, true));
    let (ours, sent, found) = dial_in(&mut node, &meta, theirs, &[Message::Port(6000)]);
    assert_eq!(ours, theirs, "our handshake carries the DHT bit too");
    assert_eq!(ports(&sent), vec![7001], "we send our DHT port once");
    assert_eq!(found, vec![SocketAddr::from((PEER, 6000))]);
}

#[test]
fn a_peer_without_the_dht_bit_gets_no_port_and_port_zero_is_ignored() {
    let (mut node, meta) = seeder(Some(7001));
    let plain = crate::wire::reserved_bits(true, true);
    let (_, sent, found) = dial_in(&mut node, &meta, plain, &[Message::Port(0)]);
    assert_eq!(ports(&sent), Vec::<u16>::new());
    assert_eq!(found, Vec::<SocketAddr>::new());
}

#[test]
fn a_node_without_a_dht_neither_advertises_nor_forwards_ports() {
    let (mut node, meta) = seeder(None);
    let theirs = crate::wire::with_dht_bit(crate::wire::reserved_bits(true, true));
    let (ours, sent, found) = dial_in(&mut node, &meta, theirs, &[Message::Port(6000)]);
    assert_eq!(ours, crate::wire::reserved_bits(true, true));
    assert_eq!(ports(&sent), Vec::<u16>::new());
    assert_eq!(found, Vec::<SocketAddr>::new());
}

#[test]
fn peers_added_to_a_metadata_phase_are_dialled() {
    let mut node = Node::new(NodeConfig {
        peer_id: peer_id(0),
        ..NodeConfig::default()
    });
    let hash = InfoHash([0x42; 20]);
    node.fetch_metadata(
        Instant::ZERO,
        FetchMetadata {
            info_hash: hash,
            sources: vec![],
            announce: false,
        },
    );
    let dialled = |node: &mut Node| {
        let mut out = Vec::new();
        while let Some(o) = node.poll_output() {
            if let Output::Connect { addr, .. } = o {
                out.push(addr);
            }
        }
        out
    };
    assert_eq!(dialled(&mut node), Vec::<SocketAddr>::new());
    let found = SocketAddr::from((PEER, 51413));
    node.add_peer(Instant::ZERO, &hash, found);
    assert_eq!(dialled(&mut node), vec![found]);
}
