//! The tracker server: HTTP announce/scrape plus the catalog and swarm view, over any [`Transport`].
//!
//! Routes: `GET /announce`, `GET /scrape` (bencoded, BEP 3/23/48), `POST /files` (body = metainfo; JSON of
//! the catalog entry), `GET /files` (JSON list), `GET /files/{name}` (the metainfo bytes), `GET /swarm`
//! (JSON swarm view) and `GET /` (a small web monitor polling `/swarm`). A bad announce gets `200` with a
//! bencoded `failure reason`, as BitTorrent clients expect. The peer's IP is the connection's source
//! address. One task per connection, bounded; a periodic task expires silent peers. Connections are kept
//! alive (HTTP/1.1, or 1.0 asking for it) for a bounded number of requests and idle time; a client saying
//! `Connection: close` gets its answer and the close, as before.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use enjambre_core::tracker::proto::{
    encode_announce_response, encode_failure, encode_scrape_response, parse_announce_extensions,
    parse_announce_query, parse_scrape_query, percent_decode,
};
use enjambre_core::tracker::registry::CatalogError;
use enjambre_core::tracker::Registry;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::task::{AbortHandle, JoinSet};

use crate::accept::accept_next;
use crate::catalog_store::{publish_durably, CatalogStore, PublishError};
use crate::clock::Clock;
use crate::connection_slots::{ConnectionSlots, SlotLimits};
use crate::http::{
    write_response_keep_alive, HttpError, HttpLimits, Request, RequestReader, Response,
};
use crate::tracker_metrics::{AnnounceResult, Route, ScrapeResult, TrackerMetrics};
use crate::transport::Transport;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// Settings of [`serve`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Limits of each HTTP exchange.
    pub http: HttpLimits,
    /// Most connections served at once; past it the oldest idle one, else the oldest busy one older than
    /// `SlotLimits::busy_grace`, is closed for the newcomer, else the newcomer is ([`crate::connection_slots`]).
    pub max_connections: usize,
    /// Most connections from one address; past it that address's oldest one is closed for the newcomer.
    pub max_connections_per_address: usize,
    /// How often silent peers are expired.
    pub expiry_period: Duration,
    /// Seed of the RNG choosing which peers an announce gets.
    pub rng_seed: u64,
    /// Request counters and latencies, shown at `/metrics`; share it with other servers of the same tracker.
    pub metrics: Arc<TrackerMetrics>,
    /// Where published metainfos are kept across restarts (`None`: the catalog lives in memory only).
    pub catalog_store: Option<Arc<CatalogStore>>,
    /// How long and for how many requests a connection is kept open.
    pub keep_alive: KeepAlive,
}

/// Bounds of one kept-alive connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Most requests answered on one connection (1: every answer closes).
    pub max_requests: usize,
    /// Longest wait for the whole next request after an answer (capped by the HTTP timeout); then the
    /// connection is closed.
    pub idle_timeout: Duration,
}

impl Default for KeepAlive {
    /// 100 requests, 5 s idle.
    fn default() -> Self {
        KeepAlive {
            max_requests: 100,
            idle_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for ServerConfig {
    /// Default HTTP limits, the default [`SlotLimits`], expiry every second, seed 0, fresh metrics,
    /// catalog in memory, the default [`KeepAlive`].
    fn default() -> Self {
        let slots = SlotLimits::default();
        ServerConfig {
            http: HttpLimits::default(),
            max_connections: slots.max_total,
            max_connections_per_address: slots.max_per_address,
            expiry_period: Duration::from_secs(1),
            rng_seed: 0,
            metrics: Arc::default(),
            catalog_store: None,
            keep_alive: KeepAlive::default(),
        }
    }
}

const BENCODE: &str = "text/plain";
const JSON: &str = "application/json";
const TORRENT: &str = "application/x-bittorrent";
const HTML: &str = "text/html; charset=utf-8";

/// Shared state of a running server.
struct Ctx {
    registry: Arc<Mutex<Registry>>,
    rng: Mutex<ChaCha8Rng>,
    clock: Clock,
    config: ServerConfig,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock must not take the tracker down with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn json<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::new(status, JSON, body),
        Err(e) => json_error(500, &e.to_string()),
    }
}

fn json_error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::new(status, JSON, body)
}

impl Ctx {
    fn respond(&self, req: &Request, ip: IpAddr) -> Response {
        let path = req.path();
        match (req.method.as_str(), path) {
            ("GET", "/announce") => self.announce(req.query(), ip),
            ("GET", "/scrape") => self.scrape(req.query()),
            ("GET", "/files") => json(200, &lock(&self.registry).list()),
            ("POST", "/files") => self.publish(&req.body),
            ("GET", "/swarm") => json(200, &lock(&self.registry).swarm_view()),
            ("GET", "/") => Response::new(200, HTML, MONITOR_PAGE),
            ("GET", "/metrics") => Response::new(
                200,
                crate::prometheus::CONTENT_TYPE,
                self.config.metrics.render(&lock(&self.registry)),
            ),
            ("GET", p) if p.starts_with("/files/") => {
                self.fetch(p.get("/files/".len()..).unwrap_or_default())
            }
            (_, "/announce" | "/scrape" | "/files" | "/swarm" | "/metrics" | "/") => {
                json_error(405, "method not allowed")
            }
            (_, p) if p.starts_with("/files/") => json_error(405, "method not allowed"),
            _ => json_error(404, "no such endpoint"),
        }
    }

    fn announce(&self, query: &str, ip: IpAddr) -> Response {
        let metrics = &self.config.metrics;
        let req = match parse_announce_query(query) {
            Ok(r) => r,
            Err(e) => {
                metrics.announce(AnnounceResult::Invalid);
                return Response::new(
                    200,
                    BENCODE,
                    encode_failure(&format!("invalid announce: {e}")),
                );
            }
        };
        let ext = parse_announce_extensions(query).unwrap_or_else(|e| {
            tracing::debug!(%ip, error = %e, "ignoring malformed announce extensions");
            Default::default()
        });
        let now = self.clock.now();
        let mut registry = lock(&self.registry);
        let mut rng = lock(&self.rng);
        match registry.announce_ext(now, ip, &req, &ext, &mut *rng) {
            Ok(resp) => {
                metrics.announce(AnnounceResult::Ok);
                Response::new(
                    200,
                    BENCODE,
                    encode_announce_response(&resp, req.compact, req.no_peer_id),
                )
            }
            Err(e) => {
                metrics.announce(AnnounceResult::Refused);
                Response::new(200, BENCODE, encode_failure(&e.to_string()))
            }
        }
    }

    fn scrape(&self, query: &str) -> Response {
        match parse_scrape_query(query) {
            Ok(hashes) => {
                self.config.metrics.scrape(ScrapeResult::Ok);
                Response::new(
                    200,
                    BENCODE,
                    encode_scrape_response(&lock(&self.registry).scrape(&hashes)),
                )
            }
            Err(e) => {
                self.config.metrics.scrape(ScrapeResult::Invalid);
                Response::new(
                    200,
                    BENCODE,
                    encode_failure(&format!("invalid scrape: {e}")),
                )
            }
        }
    }

    /// Publish; with a catalog store the (small, rare) durable write happens before the answer, under
    /// the registry lock so that a concurrent publish of the same torrent cannot be answered before it.
    fn publish(&self, body: &[u8]) -> Response {
        let store = self.config.catalog_store.as_deref();
        match publish_durably(&mut lock(&self.registry), store, body) {
            Ok(entry) => json(200, &entry),
            Err(PublishError::Catalog(e @ CatalogError::NameConflict { .. })) => {
                json_error(409, &e.to_string())
            }
            Err(PublishError::Catalog(e @ CatalogError::Full { .. })) => {
                json_error(503, &e.to_string())
            }
            Err(PublishError::Catalog(e)) => json_error(400, &e.to_string()),
            Err(e @ PublishError::Store(_)) => {
                tracing::error!(error = %e, "publish not stored");
                json_error(500, &e.to_string())
            }
        }
    }

    fn fetch(&self, raw_name: &str) -> Response {
        let Some(name) = percent_decode(raw_name).and_then(|b| String::from_utf8(b).ok()) else {
            return json_error(400, "file name is not valid percent-encoded UTF-8");
        };
        match lock(&self.registry).metainfo_bytes(&name) {
            Some(bytes) => Response::new(200, TORRENT, bytes.to_vec()),
            None => json_error(404, &format!("no published file named {name:?}")),
        }
    }

    /// Serve one connection: read a request, answer it, and while the client keeps the connection alive
    /// (and the [`KeepAlive`] bounds allow) read the next one; `idle` is set while waiting for a next
    /// request, so that slot pressure evicts such connections first.
    async fn connection<S>(&self, mut stream: S, peer: SocketAddr, idle: &AtomicBool)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let keep_alive = self.config.keep_alive;
        let mut reader = RequestReader::new();
        for served in 0..keep_alive.max_requests.max(1) {
            let wait = if served == 0 {
                self.config.http.timeout
            } else {
                keep_alive.idle_timeout.min(self.config.http.timeout)
            };
            let last = served + 1 >= keep_alive.max_requests;
            let exchange = Exchange { wait, last, idle };
            if !self
                .exchange(&mut stream, &mut reader, peer, exchange)
                .await
            {
                return;
            }
            idle.store(true, Ordering::Relaxed);
        }
    }

    /// Read one request within `how.wait` and answer it; `true` if the connection stays open for
    /// another (the client wants it, it is not the last one allowed, the answer is not an error). A kept-alive
    /// connection (`how.idle` set) that sends no whole request in time is closed without an answer.
    async fn exchange<S>(
        &self,
        stream: &mut S,
        reader: &mut RequestReader,
        peer: SocketAddr,
        how: Exchange<'_>,
    ) -> bool
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        // One deadline covers the whole exchange (a single timer); only an answer to a request that
        // timed out gets a short extra allowance.
        let deadline = tokio::time::sleep(how.wait);
        tokio::pin!(deadline);
        let request = tokio::select! {
            r = reader.next_untimed(stream, &self.config.http) => r,
            () = &mut deadline => Err(HttpError::Timeout),
        };
        if how.idle.swap(false, Ordering::Relaxed) && matches!(request, Err(HttpError::Timeout)) {
            tracing::debug!(%peer, "idle keep-alive connection closed");
            return false;
        }
        let started = self.clock.now();
        let (resp, keep, unread_input, route) = match request {
            Ok(req) => {
                tracing::debug!(%peer, method = %req.method, target = %req.target, "tracker request");
                let resp = self.respond(&req, peer.ip());
                // An error answer closes: a client that got one is not worth keeping a slot for.
                let keep = !how.last && req.wants_keep_alive() && resp.status < 400;
                (resp, keep, false, Route::of_path(req.path()))
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "bad HTTP request");
                match e.status() {
                    Some(status) => (
                        Response::text(status, format!("{e}\n")),
                        false,
                        true,
                        Route::Other,
                    ),
                    None => return false,
                }
            }
        };
        if deadline.is_elapsed() {
            let grace = self.config.http.timeout.min(Duration::from_secs(1));
            deadline.as_mut().reset(tokio::time::Instant::now() + grace);
        }
        let written = tokio::select! {
            r = write_response_keep_alive(stream, &resp, keep) => match r {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "writing response failed");
                    false
                }
            },
            () = &mut deadline => {
                tracing::debug!(%peer, "writing response timed out");
                false
            }
        };
        let took = self.clock.now().saturating_since(started);
        self.config.metrics.observe(route, took);
        if unread_input {
            // Lingering close: closing with unread input makes TCP reset the connection, and the client
            // may lose the error response. Discard what the client still sends, briefly and boundedly.
            let linger = self.config.http.timeout.min(Duration::from_secs(1));
            let _ = tokio::time::timeout(linger, drain(stream, LINGER_DRAIN_BYTES)).await;
        }
        keep && written
    }

    async fn expiry_loop(&self) {
        let period = self.config.expiry_period.max(Duration::from_millis(10));
        loop {
            self.clock.sleep_until(self.clock.now() + period).await;
            let dropped = lock(&self.registry).expire(self.clock.now());
            if dropped > 0 {
                tracing::debug!(dropped, "expired silent peers");
            }
        }
    }
}

/// How [`Ctx::exchange`] reads its request.
struct Exchange<'a> {
    /// Deadline of the whole request.
    wait: Duration,
    /// The last request this connection may make: its answer closes.
    last: bool,
    /// Set while the connection waits for a next request; cleared once it came (or did not).
    idle: &'a AtomicBool,
}

/// Most bytes discarded while lingering before closing after an error response.
const LINGER_DRAIN_BYTES: usize = 1024 * 1024;

/// Read and discard up to `max` bytes, until end of stream or error.
async fn drain<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, max: usize) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < max {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// Serve the tracker on `listener` until the returned future is dropped (which also stops every
/// connection task and the expiry task). Never returns on its own: accept errors are logged and retried.
pub async fn serve<T: Transport>(
    mut listener: T::Listener,
    state: Arc<Mutex<Registry>>,
    clock: Clock,
    config: ServerConfig,
) {
    let mut slots: ConnectionSlots<Slot> = ConnectionSlots::new(SlotLimits {
        max_total: config.max_connections,
        max_per_address: config.max_connections_per_address,
        ..SlotLimits::default()
    });
    let ctx = Arc::new(Ctx {
        registry: state,
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.rng_seed)),
        clock,
        config,
    });
    let mut background = JoinSet::new();
    {
        let ctx = Arc::clone(&ctx);
        background.spawn(async move { ctx.expiry_loop().await });
    }
    let mut connections = JoinSet::new();
    loop {
        // Free the slots of finished connections (evicted ones were freed when evicted).
        while let Some(done) = connections.try_join_next() {
            if let Ok(id) = done {
                slots.release(id);
            }
        }
        let (stream, peer) = accept_next(&mut listener, &ctx.clock, "tracker").await;
        // Every slot busy with a request just begun: the newcomer is closed unanswered, and retries.
        let Some((id, evicted)) = slots.admit_preferring(peer.ip(), ctx.clock.now(), Slot::is_idle)
        else {
            drop(stream);
            continue;
        };
        for connection in evicted {
            connection.task.abort();
            ctx.config.metrics.connection_evicted();
        }
        let ctx = Arc::clone(&ctx);
        let idle = Arc::new(AtomicBool::new(false));
        let task = {
            let idle = Arc::clone(&idle);
            connections.spawn(async move {
                ctx.connection(stream, peer, &idle).await;
                id
            })
        };
        slots.attach(id, Slot { task, idle });
    }
}

/// What the accept loop keeps of a live connection: how to close it, and whether it is a kept-alive
/// connection waiting for its next request (idle ones are evicted first).
struct Slot {
    task: AbortHandle,
    idle: Arc<AtomicBool>,
}

impl Slot {
    fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }
}

/// The web monitor (HTML, CSS and JavaScript in one file, no build step): polls `/swarm` every second.
const MONITOR_PAGE: &str = include_str!("monitor_page.html");
