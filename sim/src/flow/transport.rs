//! enjambre-net's [`Transport`] seam on the flow network: TCP-like streams (AsyncRead + AsyncWrite), listeners
//! and UDP sockets of one simulated host.

use super::net::{FlowId, HostId, Net};
use bytes::Bytes;
use enjambre_net::transport::{ByteStream, DatagramSocket, Listener, Transport};
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The network as one host sees it.
#[derive(Clone)]
pub struct FlowTransport {
    net: Net,
    host: HostId,
}

impl FlowTransport {
    /// Host `host` of `net`.
    pub fn new(net: Net, host: HostId) -> FlowTransport {
        FlowTransport { net, host }
    }
}

/// One end of a connection: reads flow `inbound`, writes its pair (`inbound ^ 1`).
pub struct FlowStream {
    net: Net,
    inbound: FlowId,
}

impl FlowStream {
    fn outbound(&self) -> FlowId {
        self.inbound ^ 1
    }
}

impl Drop for FlowStream {
    fn drop(&mut self) {
        self.net.shutdown(self.outbound());
        self.net.abandon(self.inbound);
    }
}

/// The flow carries the written bytes themselves: a write takes a slice of the sender's bytes and a read hands
/// over what arrived, without a copy where it arrived in one chunk.
impl ByteStream for FlowStream {
    fn poll_read_bytes(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Bytes>> {
        match self
            .net
            .poll_read_bytes(self.inbound, max.max(1), cx.waker())
        {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    fn poll_write_bytes(&mut self, cx: &mut Context<'_>, data: &Bytes) -> Poll<io::Result<usize>> {
        match self.net.poll_write_bytes(self.outbound(), data, cx.waker()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl AsyncRead for FlowStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.net.poll_read(self.inbound, buf, cx.waker()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl AsyncWrite for FlowStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.net.poll_write(self.outbound(), buf, cx.waker()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.net.shutdown(self.outbound());
        Poll::Ready(Ok(()))
    }
}

/// A listening port.
pub struct FlowListener {
    net: Net,
    host: HostId,
    port: u16,
}

impl Drop for FlowListener {
    fn drop(&mut self) {
        self.net.unlisten(self.host, self.port);
    }
}

#[allow(clippy::manual_async_fn)]
impl Listener for FlowListener {
    type Stream = FlowStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(FlowStream, SocketAddr)>> + Send {
        async move {
            let (inbound, from) =
                poll_fn(
                    |cx| match self.net.poll_accept(self.host, self.port, cx.waker()) {
                        Some(r) => Poll::Ready(r),
                        None => Poll::Pending,
                    },
                )
                .await?;
            Ok((
                FlowStream {
                    net: self.net.clone(),
                    inbound,
                },
                from,
            ))
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(self.net.ip(self.host), self.port))
    }
}

/// A bound UDP port.
pub struct FlowDatagram {
    net: Net,
    host: HostId,
    port: u16,
    peer: Mutex<Option<SocketAddr>>,
}

impl Drop for FlowDatagram {
    fn drop(&mut self) {
        self.net.unbind_udp(self.host, self.port);
    }
}

#[allow(clippy::manual_async_fn)]
impl DatagramSocket for FlowDatagram {
    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        self.net.send_datagram(self.host, self.port, buf, target);
        std::future::ready(Ok(buf.len()))
    }

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        async move {
            loop {
                let (data, from) =
                    poll_fn(
                        |cx| match self.net.poll_datagram(self.host, self.port, cx.waker()) {
                            Some(r) => Poll::Ready(r),
                            None => Poll::Pending,
                        },
                    )
                    .await?;
                let wanted = *self.peer.lock().unwrap_or_else(|p| p.into_inner());
                if wanted.is_some_and(|p| p != from) {
                    continue;
                }
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                return Ok((n, from));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(self.net.ip(self.host), self.port))
    }

    fn connect(&self, peer: SocketAddr) -> impl Future<Output = io::Result<()>> + Send {
        *self.peer.lock().unwrap_or_else(|p| p.into_inner()) = Some(peer);
        std::future::ready(Ok(()))
    }
}

#[allow(clippy::manual_async_fn)]
impl Transport for FlowTransport {
    type Stream = FlowStream;
    type Listener = FlowListener;
    type Datagram = FlowDatagram;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<FlowListener>> + Send {
        let r = self
            .net
            .listen(self.host, addr.port())
            .map(|port| FlowListener {
                net: self.net.clone(),
                host: self.host,
                port,
            });
        std::future::ready(r)
    }

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<FlowStream>> + Send {
        async move {
            let (inbound, _) = self.net.connect(self.host, addr).await?;
            Ok(FlowStream {
                net: self.net.clone(),
                inbound,
            })
        }
    }

    fn connect_host(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<FlowStream>> + Send {
        let ip = self.net.resolve(host);
        async move { self.connect(SocketAddr::new(ip?, port)).await }
    }

    fn bind_udp(&self, addr: SocketAddr) -> impl Future<Output = io::Result<FlowDatagram>> + Send {
        let r = self
            .net
            .bind_udp(self.host, addr.port())
            .map(|port| FlowDatagram {
                net: self.net.clone(),
                host: self.host,
                port,
                peer: Mutex::new(None),
            });
        std::future::ready(r)
    }

    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<SocketAddr>> + Send {
        std::future::ready(self.net.resolve(host).map(|ip| SocketAddr::new(ip, port)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::net::Capacity;
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// 1 MB at 1 MB/s upload takes one second (plus latency) of virtual time, and the bytes arrive intact.
    #[test]
    fn a_transfer_takes_size_over_rate_and_keeps_bytes() {
        paused().block_on(async {
            let net = Net::new(std::time::Duration::from_millis(10));
            let a = net.add_host("a", Capacity { up: 1e6, down: 1e9 });
            let b = net.add_host("b", Capacity { up: 1e9, down: 1e9 });
            tokio::spawn(net.clone().pump());
            let (ta, tb) = (
                FlowTransport::new(net.clone(), a),
                FlowTransport::new(net.clone(), b),
            );
            let mut l = tb.bind("0.0.0.0:7000".parse().unwrap()).await.unwrap();
            let start = tokio::time::Instant::now();
            let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let sent = payload.clone();
            let server = tokio::spawn(async move {
                let (mut s, from) = l.accept().await.unwrap();
                assert_eq!(from.ip(), net.ip(a));
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                got
            });
            let mut c = ta.connect_host("b", 7000).await.unwrap();
            c.write_all(&sent).await.unwrap();
            c.shutdown().await.unwrap();
            let got = server.await.unwrap();
            let took = start.elapsed().as_secs_f64();
            assert_eq!(got, payload);
            assert!((1.02..1.05).contains(&took), "took {took}");
        });
    }

    /// Two uploads from one host share its uplink: both finish at about twice the time of one.
    #[test]
    fn concurrent_uploads_share_the_uplink() {
        paused().block_on(async {
            let net = Net::new(std::time::Duration::from_millis(1));
            let a = net.add_host("a", Capacity { up: 1e6, down: 1e9 });
            let b = net.add_host("b", Capacity { up: 1e9, down: 1e9 });
            let c = net.add_host("c", Capacity { up: 1e9, down: 1e9 });
            tokio::spawn(net.clone().pump());
            let start = tokio::time::Instant::now();
            let mut done = Vec::new();
            for (h, port) in [(b, 7001), (c, 7002)] {
                let t = FlowTransport::new(net.clone(), h);
                let mut l = t.bind(SocketAddr::new(net.ip(h), port)).await.unwrap();
                done.push(tokio::spawn(async move {
                    let (mut s, _) = l.accept().await.unwrap();
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).await.unwrap();
                    (got.len(), start.elapsed().as_secs_f64())
                }));
                let ta = FlowTransport::new(net.clone(), a);
                let ip = net.ip(h);
                tokio::spawn(async move {
                    let mut s = ta.connect(SocketAddr::new(ip, port)).await.unwrap();
                    s.write_all(&vec![1u8; 500_000]).await.unwrap();
                    s.shutdown().await.unwrap();
                });
            }
            for d in done {
                let (n, t) = d.await.unwrap();
                assert_eq!(n, 500_000);
                assert!((0.99..1.03).contains(&t), "took {t}");
            }
        });
    }

    /// Shared bytes cross a connection without a copy where they arrive in one chunk (the reader gets the
    /// writer's allocation), are joined where several chunks wait, and are cut at the reader's limit; the
    /// end of the stream reads as empty.
    #[test]
    fn shared_bytes_cross_without_a_copy() {
        paused().block_on(async {
            let net = Net::new(std::time::Duration::from_millis(5));
            let a = net.add_host("a", Capacity { up: 1e6, down: 1e9 });
            let b = net.add_host("b", Capacity { up: 1e9, down: 1e9 });
            tokio::spawn(net.clone().pump());
            let tb = FlowTransport::new(net.clone(), b);
            let mut l = tb.bind("0.0.0.0:7003".parse().unwrap()).await.unwrap();
            let accepted = tokio::spawn(async move { l.accept().await.unwrap().0 });
            let mut c = FlowTransport::new(net.clone(), a)
                .connect_host("b", 7003)
                .await
                .unwrap();
            let mut s = accepted.await.unwrap();
            async fn read(s: &mut FlowStream, max: usize) -> io::Result<Bytes> {
                poll_fn(|cx| s.poll_read_bytes(cx, max)).await
            }
            async fn write(c: &mut FlowStream, data: Bytes) -> io::Result<usize> {
                poll_fn(|cx| c.poll_write_bytes(cx, &data)).await
            }

            let block = Bytes::from((0..16_384u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
            assert_eq!(write(&mut c, block.clone()).await.unwrap(), 16_384);
            let got = read(&mut s, 64 * 1024).await.unwrap();
            assert_eq!(got, block);
            assert_eq!(
                got.as_ptr(),
                block.as_ptr(),
                "one chunk is handed over as written"
            );

            // Two small messages in flight together: one read joins them, a limit cuts them.
            write(&mut c, Bytes::from_static(b"have")).await.unwrap();
            write(&mut c, Bytes::from_static(b"piece")).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            assert_eq!(
                read(&mut s, 6).await.unwrap(),
                Bytes::from_static(b"havepi")
            );
            assert_eq!(read(&mut s, 6).await.unwrap(), Bytes::from_static(b"ece"));

            c.shutdown().await.unwrap();
            assert!(read(&mut s, 6).await.unwrap().is_empty());
        });
    }

    #[test]
    fn connecting_to_a_closed_port_is_refused() {
        paused().block_on(async {
            let net = Net::new(std::time::Duration::from_millis(1));
            let a = net.add_host("a", Capacity { up: 1e6, down: 1e6 });
            let _b = net.add_host("b", Capacity { up: 1e6, down: 1e6 });
            let ta = FlowTransport::new(net, a);
            let e = ta.connect_host("b", 1).await.err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            let e = ta.connect_host("nowhere", 1).await.err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
        });
    }
}
