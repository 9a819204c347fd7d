//! The network seam: TCP listeners and streams, real (tokio) or simulated (turmoil, plugged in by the sim).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// A listening socket.
pub trait Listener: Send + 'static {
    /// The stream type of accepted connections.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Wait for the next inbound connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address this listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A TCP-like network: bind, connect by address, connect by host name.
pub trait Transport: Clone + Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listener yielding [`Self::Stream`]s.
    type Listener: Listener<Stream = Self::Stream>;
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

#[allow(clippy::manual_async_fn)]
impl Transport for TokioTransport {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

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
}
