//! In what order a peer whose upload is paced (an upload cap) releases the blocks it was asked for: the piece
//! closest to completion first, then the next connection in turn.
//!
//! Served round-robin block by block, k peers asking at once each get a k-th of our upload, so every piece we
//! serve completes k times later than it could, and all k complete together. A receiver can pass a piece on
//! only once it holds it whole (it must be verified first), so that delay is the delay of every copy made
//! from it: in a flash crowd, where the seed's pieces are the only source, it is the crowd's start and its
//! tail (the seed's last pieces). Finishing one piece before starting the next leaves the total rate, and so
//! the time of the last piece, unchanged, and brings every other piece forward: shortest remaining work
//! first, the order that minimises the mean completion time. Beyond the LAN it costs nothing either: the
//! release order decides only which connection's bytes go first into its socket; a receiver slower than us
//! drains its socket at its own rate while the next piece is released to another, and a peer waits at most
//! for the pieces already started before its own (each a few of its requests long), far below any request
//! timeout.

use crate::ConnId;
use std::collections::BTreeMap;

/// How far the last piece released to each connection got, and whose turn comes next.
#[derive(Debug, Clone, Default)]
pub struct ServeOrder {
    /// Per connection: the piece it was last given a block of, and how many blocks of it in a row.
    progress: BTreeMap<ConnId, (u32, u32)>,
    /// The connection served last (the round-robin cursor for pieces not started).
    after: ConnId,
}

impl ServeOrder {
    /// Nothing released yet.
    pub fn new() -> ServeOrder {
        ServeOrder::default()
    }

    /// Which connection to release a block to next, given each waiting connection with the piece of the first
    /// block it waits for (`waiting`, in any order): the one whose piece already has the most blocks released,
    /// then the first after the last served (wrapping). None when nobody waits.
    pub fn next(&self, waiting: impl IntoIterator<Item = (ConnId, u32)>) -> Option<ConnId> {
        waiting
            .into_iter()
            .max_by_key(|&(conn, piece)| {
                let released = match self.progress.get(&conn) {
                    Some(&(p, n)) if p == piece => n,
                    _ => 0,
                };
                // Later in turn compares lower: connections after the cursor come first, in order.
                let turn = std::cmp::Reverse((conn <= self.after, conn));
                (released, turn)
            })
            .map(|(conn, _)| conn)
    }

    /// A block of `piece` was released to `conn`.
    pub fn released(&mut self, conn: ConnId, piece: u32) {
        self.after = conn;
        let entry = self.progress.entry(conn).or_insert((piece, 0));
        if entry.0 != piece {
            *entry = (piece, 0);
        }
        entry.1 += 1;
    }

    /// Forget the connections `keep` says no (closed ones), so that what is kept stays bounded by the open
    /// connections.
    pub fn retain(&mut self, mut keep: impl FnMut(ConnId) -> bool) {
        self.progress.retain(|&c, _| keep(c));
    }

    /// How many connections it remembers.
    pub fn len(&self) -> usize {
        self.progress.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.progress.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Release blocks to connections that each wait for `blocks` blocks of one piece (connection c asks for
    /// piece c), and return the order in which the pieces were completed.
    fn completion_order(conns: u64, blocks: u32) -> Vec<ConnId> {
        let mut order = ServeOrder::new();
        let mut left: BTreeMap<ConnId, u32> = (1..=conns).map(|c| (c, blocks)).collect();
        let mut done = Vec::new();
        while let Some(conn) = order.next(left.iter().map(|(&c, _)| (c, c as u32))) {
            order.released(conn, conn as u32);
            let n = left.get_mut(&conn).expect("a waiting connection");
            *n -= 1;
            if *n == 0 {
                left.remove(&conn);
                done.push(conn);
            }
        }
        done
    }

    #[test]
    fn a_started_piece_is_finished_before_the_next_one_starts() {
        let mut order = ServeOrder::new();
        let mut released = Vec::new();
        let mut left: BTreeMap<ConnId, u32> = [(1, 3), (2, 3), (3, 3)].into();
        while let Some(conn) = order.next(left.iter().map(|(&c, _)| (c, 7))) {
            order.released(conn, 7);
            released.push(conn);
            let n = left.get_mut(&conn).expect("waiting");
            *n -= 1;
            if *n == 0 {
                left.remove(&conn);
            }
        }
        assert_eq!(released, vec![1, 1, 1, 2, 2, 2, 3, 3, 3]);
        assert_eq!(completion_order(4, 16), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_connection_that_finished_a_piece_waits_its_turn_for_the_next() {
        let mut order = ServeOrder::new();
        for _ in 0..16 {
            order.released(1, 0);
        }
        // Connection 1 now waits for a block of piece 5 (a new piece); 2 waits for its first block of piece 3.
        assert_eq!(order.next([(1, 5), (2, 3)]), Some(2));
        order.released(2, 3);
        assert_eq!(
            order.next([(1, 5), (2, 3)]),
            Some(2),
            "2's piece is started"
        );
        // A piece left half done (its requests came late) goes before a new one.
        let mut order = ServeOrder::new();
        order.released(3, 9);
        order.released(1, 4);
        assert_eq!(order.next([(1, 6), (2, 2), (3, 9)]), Some(3));
    }

    #[test]
    fn new_pieces_go_round_robin_from_the_last_served() {
        let mut order = ServeOrder::new();
        order.released(2, 0);
        assert_eq!(order.next([(1, 1), (2, 1), (3, 1)]), Some(3));
        order.released(3, 0);
        assert_eq!(order.next([(1, 1), (2, 1), (3, 1)]), Some(1), "wraps");
        assert_eq!(order.next(std::iter::empty()), None);
    }

    #[test]
    fn closed_connections_are_forgotten() {
        let mut order = ServeOrder::new();
        for c in 0..10 {
            order.released(c, 0);
        }
        order.retain(|c| c % 2 == 0);
        assert_eq!(order.len(), 5);
        order.retain(|_| false);
        assert!(order.is_empty());
    }
}
