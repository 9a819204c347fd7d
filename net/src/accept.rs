//! Accepting inbound connections: one way for every server of a peer or tracker to ride out accept errors.

use crate::clock::Clock;
use crate::transport::Listener;
use std::net::SocketAddr;
use std::time::Duration;

/// The pause after a failed accept before the next try.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Wait for the next inbound connection on `listener`. A failed accept (out of file descriptors, a
/// connection reset before it was taken) is logged with `server`'s name and tried again after a short pause
/// on `clock`, so that a burst of errors neither stops the server nor spins it.
pub async fn accept_next<L: Listener>(
    listener: &mut L,
    clock: &Clock,
    server: &str,
) -> (L::Stream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(error = %e, server, "accept failed");
                clock.sleep_until(clock.now() + ACCEPT_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use std::collections::VecDeque;
    use std::io;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A listener that hands out queued results, then waits forever.
    struct Scripted(VecDeque<io::Result<(DuplexStream, SocketAddr)>>);

    impl Listener for Scripted {
        type Stream = DuplexStream;
        async fn accept(&mut self) -> io::Result<(DuplexStream, SocketAddr)> {
            match self.0.pop_front() {
                Some(result) => result,
                None => std::future::pending().await,
            }
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        }
    }

    #[tokio::test]
    async fn accept_errors_are_ridden_out_with_a_pause_each() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let from = SocketAddr::from(([10, 0, 0, 2], 6881));
        let mut listener = Scripted(VecDeque::from([
            Err(io::Error::other("too many open files")),
            Err(io::ErrorKind::ConnectionAborted.into()),
            Ok((ours, from)),
        ]));
        let clock = Clock::new();
        let started = clock.now();
        let (mut stream, addr) = accept_next(&mut listener, &clock, "test").await;
        assert_eq!(addr, from);
        assert!(clock.now().saturating_since(started) >= 2 * ACCEPT_RETRY);
        theirs.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
    }
}
