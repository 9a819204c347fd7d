//! Interest says whether a request could go ([`crate::picker::Picker::wants_from`]): a holder whose pieces
//! we fetch from another, block for block, is told we are not interested, so that it gives its slot to a
//! peer that will use it, and told again that we are once a block goes free.

use super::*;

/// Which hand peer speaks.
enum From {
    A,
    B,
}

/// Feed `msgs` from `a` or `b`, then take every output and decode what the node sent to each.
fn exchange(
    node: &mut Node,
    a: &mut HandPeer,
    b: &mut HandPeer,
    from: From,
    msgs: &[Message],
) -> (Vec<Message>, Vec<Message>) {
    let mut buf = bytes::BytesMut::new();
    for m in msgs {
        m.encode(&mut buf);
    }
    match from {
        From::A => a.feed(node, buf.freeze()),
        From::B => b.feed(node, buf.freeze()),
    }
    node.check_kept_state();
    while let Some(o) = node.poll_output() {
        if let Output::Send { conn, data } = o {
            if conn == a.conn {
                a.dec.feed(&data);
            } else if conn == b.conn {
                b.dec.feed(&data);
            }
        }
    }
    let decoded = |p: &mut HandPeer| {
        let mut out = Vec::new();
        while let Ok(Some(f)) = p.dec.next_frame() {
            if let Frame::Message(m) = f {
                out.push(m);
            }
        }
        out
    };
    (decoded(a), decoded(b))
}

#[test]
fn a_holder_whose_piece_we_fetch_elsewhere_is_told_we_are_not_interested_until_a_block_frees() {
    let mut w = World::new(4 * PL as usize);
    let l = w.leecher(vec![]);
    let meta = w.peers[l].meta.clone();
    let node = &mut w.peers[l].node;
    let fast = crate::wire::reserved_bits(true, false);
    let mut a = HandPeer::open_as(node, &meta, fast, 1);
    a.drain(node);
    let mut b = HandPeer::open_as(node, &meta, fast, 2);
    b.drain(node);
    // Both hold piece 0 only (two blocks). B announces first: piece 0 is open, we are interested.
    let piece0 = Message::Bitfield(Bytes::from_static(&[0b1000_0000]));
    let (_, to_b) = exchange(node, &mut a, &mut b, From::B, std::slice::from_ref(&piece0));
    assert!(to_b.contains(&Message::Interested), "{to_b:?}");
    // A unchokes us first: both blocks of piece 0 are asked of A.
    let (to_a, _) = exchange(node, &mut a, &mut b, From::A, &[piece0, Message::Unchoke]);
    let asked = requests(&to_a);
    assert_eq!(asked.len(), 2, "{to_a:?}");
    // B unchokes us too: nothing is left to ask of it, so its slot is handed back.
    let (_, to_b) = exchange(node, &mut a, &mut b, From::B, &[Message::Unchoke]);
    assert_eq!(to_b, vec![Message::NotInterested]);
    // A chokes and rejects one block: it is free again, B is the one who can give it.
    let (index, begin, length) = *asked.iter().next().unwrap();
    let reject = Message::Reject {
        index,
        begin,
        length,
    };
    let (_, to_b) = exchange(node, &mut a, &mut b, From::A, &[Message::Choke, reject]);
    assert_eq!(to_b.first(), Some(&Message::Interested), "{to_b:?}");
    assert_eq!(requests(&to_b), [(index, begin, length)].into());
}
