//! The UDP tracker client (BEP 15) over any [`Transport`]: obtain a connection id, then announce with it.
//!
//! Each request is sent again when no answer came within its timeout, which doubles per attempt (BEP 15's
//! 15 s · 2ⁿ schedule is meant for the Internet; on a LAN a lost datagram is better retried within a
//! second, so the first timeout is [`UdpOptions::first_timeout`]). The whole call is bounded by
//! [`UdpOptions::deadline`]. Datagrams from other addresses or with another transaction id are ignored,
//! so a stray or spoofed packet cannot answer for the tracker. The connection id is not cached between
//! calls: an announce costs two round trips, which at announce intervals of seconds to minutes is nothing.
//! The socket is connected to the tracker, so a tracker host that reports its port closed fails the call at
//! once instead of at the deadline.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use enjambre_core::backoff::Backoff;
use enjambre_core::tracker::proto::{AnnounceParams, AnnounceReply, TrackerProtoError};
use enjambre_core::tracker::udp::{
    encode_announce_request, encode_connect_request, parse_response, transaction_id, UdpResponse,
    MAX_DATAGRAM,
};

use crate::tracker_client::{TrackerClientError, UdpUrl};
use crate::transport::{DatagramSocket, Transport};

/// Timing of a UDP tracker call.
#[derive(Debug, Clone, Copy)]
pub struct UdpOptions {
    /// How long the first attempt of each request waits for its answer; doubled per retry, capped at 15 s.
    pub first_timeout: Duration,
    /// The whole call (resolve, connect, announce) gives up after this long.
    pub deadline: Duration,
}

impl Default for UdpOptions {
    /// First timeout 1 s, deadline 10 s.
    fn default() -> Self {
        UdpOptions {
            first_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        }
    }
}

const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Announce to the UDP tracker at `url`.
pub async fn announce<T: Transport>(
    transport: &T,
    url: &UdpUrl,
    params: &AnnounceParams,
    opts: &UdpOptions,
) -> Result<AnnounceReply, TrackerClientError> {
    let work = async {
        let target = transport
            .resolve(&url.host, url.port)
            .await
            .map_err(TrackerClientError::Connect)?;
        let any = if target.is_ipv6() {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        };
        let socket = transport
            .bind_udp(any)
            .await
            .map_err(TrackerClientError::Connect)?;
        socket
            .connect(target)
            .await
            .map_err(TrackerClientError::Connect)?;
        let mut exchange = Exchange {
            socket: &socket,
            target,
            params,
            nonce: 0,
            first_timeout: opts.first_timeout,
        };
        let connection_id = match exchange.request(encode_connect_request).await? {
            UdpResponse::Connect { connection_id, .. } => connection_id,
            other => return Err(unexpected(&other)),
        };
        let announce = |tx| encode_announce_request(connection_id, tx, params);
        match exchange.request(announce).await? {
            UdpResponse::Announce { reply, .. } => Ok(reply),
            other => Err(unexpected(&other)),
        }
    };
    tokio::time::timeout(opts.deadline, work)
        .await
        .map_err(|_| TrackerClientError::Timeout)?
}

fn unexpected(answer: &UdpResponse) -> TrackerClientError {
    TrackerClientError::UdpUnexpected(match answer {
        UdpResponse::Connect { .. } => "connect",
        UdpResponse::Announce { .. } => "announce",
        UdpResponse::Scrape { .. } => "scrape",
        UdpResponse::Error { .. } => "error",
    })
}

/// One request/answer exchange with retransmission.
struct Exchange<'a, S> {
    socket: &'a S,
    target: SocketAddr,
    params: &'a AnnounceParams,
    nonce: u64,
    first_timeout: Duration,
}

impl<S: DatagramSocket> Exchange<'_, S> {
    /// Send `build(transaction id)` until an answer with that transaction id arrives from the tracker. An
    /// error packet becomes [`TrackerProtoError::Failure`].
    async fn request(
        &mut self,
        build: impl Fn(u32) -> Vec<u8>,
    ) -> Result<UdpResponse, TrackerClientError> {
        let waits = Backoff::new(
            self.first_timeout.max(Duration::from_millis(10)),
            MAX_ATTEMPT_TIMEOUT,
        );
        let mut attempt = 1;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            self.nonce += 1;
            let tx = transaction_id(self.params, self.nonce);
            self.socket
                .send_to(&build(tx), self.target)
                .await
                .map_err(TrackerClientError::Connect)?;
            let wait = waits.delay(attempt);
            let answer = tokio::time::timeout(wait, self.answer(tx, &mut buf)).await;
            match answer {
                Ok(Ok(UdpResponse::Error { message, .. })) => {
                    return Err(TrackerProtoError::Failure(message).into())
                }
                Ok(result) => return result,
                Err(_) => attempt += 1,
            }
        }
    }

    /// The next datagram from the tracker carrying `tx`; others are skipped.
    async fn answer(&self, tx: u32, buf: &mut [u8]) -> Result<UdpResponse, TrackerClientError> {
        let ipv6 = self.target.is_ipv6();
        loop {
            // The socket is connected: nothing listening there ("port unreachable") ends the call at once.
            let (n, from) = self
                .socket
                .recv_from(buf)
                .await
                .map_err(TrackerClientError::Connect)?;
            if from != self.target {
                continue;
            }
            let Some(packet) = buf.get(..n) else {
                continue;
            };
            match parse_response(packet, ipv6) {
                Ok(r) if r.transaction_id() == tx => return Ok(r),
                Ok(_) => continue,
                // A malformed packet is only the tracker's answer if it carries our transaction id.
                Err(e) if packet.get(4..8) == Some(&tx.to_be_bytes()[..]) => return Err(e.into()),
                Err(_) => continue,
            }
        }
    }
}
