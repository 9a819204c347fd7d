//! The network seam: TCP listeners and streams and UDP sockets, real (tokio) or simulated (turmoil, plugged
//! in by the sim).

use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connected byte stream as the peer's connections use it: `AsyncRead` and `AsyncWrite`, plus reads and
/// writes of shared [`Bytes`]. A real socket copies into and out of the kernel anyway and takes the provided
/// methods; a simulated stream that carries the bytes themselves overrides them and copies nothing (a block
/// was copied five times between the sender's outbox and the receiver's decoder, `bench/RESULTS.md`).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Read what arrived, at most `max` bytes (empty at the end of the stream); pending, with the waker
    /// registered, when nothing did. The provided method reads into a per-thread scratch buffer and copies out
    /// what arrived (a waiting connection holds no buffer).
    fn poll_read_bytes(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Bytes>> {
        read_into_scratch(self, cx, max)
    }

    /// Write a prefix of `data`, as [`AsyncWrite::poll_write`] (the provided method is that call).
    fn poll_write_bytes(&mut self, cx: &mut Context<'_>, data: &Bytes) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write(cx, data)
    }
}

impl ByteStream for tokio::net::TcpStream {}
impl ByteStream for tokio::io::DuplexStream {}

/// Bytes the scratch buffer of [`read_into_scratch`] holds: the most a connection's read takes at once.
pub const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The buffer every stream on this thread reads into, see [`read_into_scratch`].
    static READ_SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// Read what `rd` has, up to `max` (at most [`READ_CHUNK`]) bytes, into a buffer of just that size (empty at
/// the end of the stream). A waiting stream holds no buffer: each poll reads into the thread's scratch buffer
/// and copies out what arrived. (Allocating the 64 KiB up front pins it for as long as the connection is idle;
/// with a thousand simulated peers of fifty connections each that was gigabytes.)
fn read_into_scratch<R: AsyncRead + Unpin + ?Sized>(
    rd: &mut R,
    cx: &mut Context<'_>,
    max: usize,
) -> Poll<io::Result<Bytes>> {
    let max = max.min(READ_CHUNK);
    READ_SCRATCH.with(|scratch| {
        let mut own;
        let mut borrowed = scratch.try_borrow_mut();
        let space: &mut [u8] = match borrowed.as_deref_mut() {
            Ok(shared) => &mut shared[..max],
            Err(_) => {
                own = vec![0; max];
                &mut own
            }
        };
        let mut buf = ReadBuf::new(space);
        Pin::new(&mut *rd)
            .poll_read(cx, &mut buf)
            .map_ok(|()| Bytes::copy_from_slice(buf.filled()))
    })
}

/// A listening socket.
pub trait Listener: Send + 'static {
    /// The stream type of accepted connections.
    type Stream: ByteStream;
    /// Wait for the next inbound connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address this listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A bound UDP socket (used by the UDP tracker, BEP 15).
pub trait DatagramSocket: Send + Sync + 'static {
    /// Send one datagram to `target`.
    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;
    /// Wait for the next datagram; returns its length (cut to `buf`) and sender.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// The address this socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Talk to `peer` only: datagrams from elsewhere are dropped, and an ICMP "port unreachable" for what
    /// was sent surfaces as `ConnectionRefused` on the next receive.
    fn connect(&self, peer: SocketAddr) -> impl Future<Output = io::Result<()>> + Send;
}

/// A network: TCP (bind, connect by address or host name), UDP sockets and name resolution.
pub trait Transport: Clone + Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: ByteStream;
    /// A listener yielding [`Self::Stream`]s.
    type Listener: Listener<Stream = Self::Stream>;
    /// A UDP socket.
    type Datagram: DatagramSocket;
    /// Bind a listener.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connect to an address.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Resolve `host` and connect to `port` on it.
    fn connect_host(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Bind a UDP socket (port 0: any free port).
    fn bind_udp(&self, addr: SocketAddr)
        -> impl Future<Output = io::Result<Self::Datagram>> + Send;
    /// Resolve `host` (a name or an IP literal) to the first address for `port`.
    fn resolve(&self, host: &str, port: u16)
        -> impl Future<Output = io::Result<SocketAddr>> + Send;
}

/// Real TCP on tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTransport;

/// A tokio TCP listener.
#[derive(Debug)]
pub struct TokioListener(tokio::net::TcpListener);

#[allow(clippy::manual_async_fn)]
impl Listener for TokioListener {
    type Stream = tokio::net::TcpStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
        async move {
            let (s, a) = self.0.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((s, a))
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A tokio UDP socket.
// sim/src/transport.rs repeats these delegations for turmoil's sockets, which share tokio's API but no trait.
#[derive(Debug)]
pub struct TokioDatagram(tokio::net::UdpSocket);

#[allow(clippy::manual_async_fn)]
impl DatagramSocket for TokioDatagram {
    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        self.0.send_to(buf, target)
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        self.0.recv_from(buf)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn connect(&self, peer: SocketAddr) -> impl Future<Output = io::Result<()>> + Send {
        self.0.connect(peer)
    }
}

#[allow(clippy::manual_async_fn)]
impl Transport for TokioTransport {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;
    type Datagram = TokioDatagram;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        async move { Ok(TokioListener(tokio::net::TcpListener::bind(addr).await?)) }
    }

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }

    fn connect_host(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let target = format!("{host}:{port}");
        async move {
            let s = tokio::net::TcpStream::connect(target).await?;
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }

    fn bind_udp(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Datagram>> + Send {
        async move { Ok(TokioDatagram(tokio::net::UdpSocket::bind(addr).await?)) }
    }

    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<SocketAddr>> + Send {
        let target = format!("{host}:{port}");
        let host = host.to_string();
        async move {
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                return Ok(SocketAddr::new(ip, port));
            }
            tokio::net::lookup_host(target)
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address found"))
                })
        }
    }
}
