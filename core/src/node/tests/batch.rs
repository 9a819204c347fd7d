//! Several inputs fed as one call ([`Node::handle_inputs`]): the node does what it does for them one at a
//! time, and what it queues for one connection leaves in one `Send`.

use super::*;

/// Two requests of a choked fast peer (BEP 6: each is rejected at once), as two inputs.
fn two_requests(conn: ConnId) -> Vec<Input> {
    (0..2)
        .map(|index| {
            let mut buf = bytes::BytesMut::new();
            Message::Request {
                index,
                begin: 0,
                length: 16384,
            }
            .encode(&mut buf);
            Input::Received {
                conn,
                data: buf.freeze(),
            }
        })
        .collect()
}

/// The `Send`s a node emitted for `conn`, in order.
fn sends(node: &mut Node, conn: ConnId) -> Vec<Bytes> {
    std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::Send { conn: c, data } if c == conn => Some(data),
            _ => None,
        })
        .collect()
}

#[test]
fn a_batch_answers_as_its_inputs_one_by_one_in_one_send_per_connection() {
    let (mut w, s, p) = choked_fast_peer();
    let node = &mut w.peers[s].node;
    for input in two_requests(p.conn) {
        node.handle_input(Instant::ZERO, input);
    }
    let one_by_one = sends(node, p.conn);
    assert_eq!(one_by_one.len(), 2, "one reject per call");

    let (mut w, s, p) = choked_fast_peer();
    let node = &mut w.peers[s].node;
    node.handle_inputs(Instant::ZERO, two_requests(p.conn));
    let batched = sends(node, p.conn);
    assert_eq!(batched.len(), 1, "one write for the batch");
    assert_eq!(batched[0], one_by_one.concat());

    let mut dec = crate::wire::Decoder::new(false, crate::wire::DEFAULT_MAX_MESSAGE_LEN);
    dec.feed(&batched[0]);
    let mut rejected = Vec::new();
    while let Ok(Some(Frame::Message(Message::Reject { index, .. }))) = dec.next_frame() {
        rejected.push(index);
    }
    assert_eq!(rejected, vec![0, 1]);
}
