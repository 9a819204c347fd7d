//! `turmoil::net` plugged into enjambre-net's [`Transport`] seam.

use enjambre_net::transport::{ByteStream, DatagramSocket, Listener, Transport};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// TCP over turmoil's simulated network.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimTransport;

/// A simulated listener.
pub struct SimListener(turmoil::net::TcpListener);

impl From<turmoil::net::TcpListener> for SimListener {
    fn from(l: turmoil::net::TcpListener) -> Self {
        SimListener(l)
    }
}

/// A simulated TCP stream: turmoil's, under a type of this crate so that it can take net's [`ByteStream`]
/// (its provided methods: turmoil copies bytes as a socket does).
pub struct SimStream(turmoil::net::TcpStream);

impl ByteStream for SimStream {}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[allow(clippy::manual_async_fn)]
impl Listener for SimListener {
    type Stream = SimStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
        async move {
            let (s, a) = self.0.accept().await?;
            Ok((SimStream(s), a))
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A simulated UDP socket.
// The impls below repeat net's Tokio ones line for line: turmoil's sockets copy tokio's API without sharing a
// trait with it, so each needs its own delegation (a macro would hide two dozen plain lines).
pub struct SimDatagram(turmoil::net::UdpSocket);

#[allow(clippy::manual_async_fn)]
impl DatagramSocket for SimDatagram {
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
impl Transport for SimTransport {
    type Stream = SimStream;
    type Listener = SimListener;
    type Datagram = SimDatagram;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        async move { Ok(SimListener(turmoil::net::TcpListener::bind(addr).await?)) }
    }

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        async move { Ok(SimStream(turmoil::net::TcpStream::connect(addr).await?)) }
    }

    fn connect_host(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let host = host.to_string();
        async move {
            Ok(SimStream(
                turmoil::net::TcpStream::connect((host.as_str(), port)).await?,
            ))
        }
    }

    fn bind_udp(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Datagram>> + Send {
        async move { Ok(SimDatagram(turmoil::net::UdpSocket::bind(addr).await?)) }
    }

    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<SocketAddr>> + Send {
        // turmoil's own name table: an IP literal as is, a host name to its simulated address.
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => SocketAddr::new(turmoil::lookup(host), port),
        };
        std::future::ready(Ok(addr))
    }
}
