//! A hand-driven BitTorrent connection for poking a peer with good and bad wire input, decoding its answers
//! with the core's own codec.

use enjambre_core::wire::{
    reserved_bits, Decoder, Frame, Handshake, Message, DEFAULT_MAX_MESSAGE_LEN, HANDSHAKE_LEN,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What a read from the peer gave.
#[derive(Debug)]
pub enum Got {
    /// A decoded frame.
    Frame(Frame),
    /// The peer closed the connection (FIN or reset).
    Closed,
    /// Nothing within the timeout.
    Nothing,
}

/// One raw connection to a peer.
pub struct WireConn {
    stream: TcpStream,
    decoder: Decoder,
    /// Every byte received so far.
    pub received: usize,
}

impl WireConn {
    /// Connect; the decoder first expects the peer's handshake.
    pub fn connect(addr: SocketAddr) -> WireConn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        WireConn {
            stream,
            decoder: Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN),
            received: 0,
        }
    }

    /// Wrap an accepted connection (we are the side being dialled; its handshake comes first).
    pub fn accepted(stream: TcpStream) -> WireConn {
        stream.set_nodelay(true).expect("nodelay");
        WireConn {
            stream,
            decoder: Decoder::new(true, DEFAULT_MAX_MESSAGE_LEN),
            received: 0,
        }
    }

    /// Send raw bytes (errors are ignored: the peer may already have hung up, which the reads then show).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Send a message.
    pub fn send(&mut self, msg: &Message) {
        let bytes = msg.encoded();
        self.send_raw(&bytes);
    }

    /// Send our handshake for `info_hash` (advertising the fast extension) and return the peer's.
    pub fn handshake(&mut self, info_hash: [u8; 20], peer_id: [u8; 20]) -> Handshake {
        let ours = Handshake {
            reserved: reserved_bits(true, false),
            info_hash,
            peer_id,
        };
        self.send_raw(&ours.encode());
        match self.next(Duration::from_secs(10)) {
            Got::Frame(Frame::Handshake(h)) => h,
            other => panic!("expected the peer's handshake, got {other:?}"),
        }
    }

    /// The next frame, or `Closed` / `Nothing` (after `timeout`).
    pub fn next(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Got::Frame(frame),
                Ok(None) => {}
                Err(e) => panic!("the peer sent bytes our decoder rejects: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Nothing;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return Got::Closed,
                Ok(n) => {
                    self.received += n;
                    self.decoder.feed(&buf[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Got::Nothing
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Got::Closed,
            }
        }
    }

    /// The next message that `pick` accepts, skipping others; panics if the connection closes or `timeout`
    /// passes first.
    pub fn expect<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Message) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::Frame(Frame::Message(m)) => match pick(&m) {
                    Some(v) => return v,
                    None => skipped.push(m.name()),
                },
                Got::Frame(Frame::Handshake(h)) => panic!("a second handshake {h:?}"),
                other => panic!("expected {what}, got {other:?} after {skipped:?}"),
            }
        }
    }

    /// Wait until the peer closes the connection; returns the messages it sent meanwhile. Panics if it is
    /// still open after `timeout`.
    pub fn expect_closed(&mut self, why: &str, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::Closed => return seen,
                Got::Frame(Frame::Message(m)) => seen.push(m),
                Got::Frame(Frame::Handshake(_)) => {}
                Got::Nothing => panic!(
                    "the peer kept the connection open {timeout:?} after {why}; it sent {:?}",
                    seen.iter().map(Message::name).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Stop sending (half-close).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A handshake's bytes with the protocol string replaced (a malformed handshake).
pub fn bad_protocol_handshake(info_hash: [u8; 20]) -> [u8; HANDSHAKE_LEN] {
    let mut h = Handshake {
        reserved: [0; 8],
        info_hash,
        peer_id: *b"-XX0000-badprotocol0",
    }
    .encode();
    h[1..20].copy_from_slice(b"BitTorrent protocoX");
    h
}
