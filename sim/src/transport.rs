//! `turmoil::net` plugged into enjambre-net's [`Transport`] seam.

use enjambre_net::transport::{Listener, Transport};
use std::future::Future;
use std::io;
use std::net::SocketAddr;

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

#[allow(clippy::manual_async_fn)]
impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
        async move { self.0.accept().await }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[allow(clippy::manual_async_fn)]
impl Transport for SimTransport {
    type Stream = turmoil::net::TcpStream;
    type Listener = SimListener;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        async move { Ok(SimListener(turmoil::net::TcpListener::bind(addr).await?)) }
    }

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        async move { turmoil::net::TcpStream::connect(addr).await }
    }

    fn connect_host(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let host = host.to_string();
        async move { turmoil::net::TcpStream::connect((host.as_str(), port)).await }
    }
}
