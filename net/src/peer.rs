//! The peer driver: runs one [`Node`] over any [`Transport`], [`Storage`] and [`Blocking`] runner.
//!
//! One task owns the node and its connections' sockets, which it reads and writes itself
//! ([`crate::conn_io`]: no task per connection). The disk worker, announce and connect tasks and the listener
//! report to it through channels; it feeds sockets' bytes and these reports to the node as inputs and
//! carries out the node's outputs. Disk operations run in emission order on one worker, so a hash reads what
//! earlier writes wrote and a checkpoint's sync covers every write before it (invariant 2); on a thread pool
//! later operations need not wait for that sync to end (see `disk.rs`).
//!
//! The upload limit paces the *reads* of blocks to serve, round-robin over connections, before the node sends
//! them: a block the peer cancelled or that a choke dropped meanwhile is never read, sent or counted, and no
//! socket holds more than a block or two of payload queued behind the limit.

use crate::accept::accept_next;
use crate::clock::Clock;
use crate::conn_io::Sockets;
use crate::disk::{DiskWorker, Stores};
use crate::rate::RateLimit;
use crate::resume::plan_resume;
use crate::state_dir::StateDir;
use crate::storage::{Blocking, Storage};
use crate::torrent_store::TorrentStore;
use crate::transport::{Listener, Transport};
use crate::woken::Woken;
use enjambre_core::backoff::Backoff;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use enjambre_core::node::{
    AddTorrent, CloseReason, ConnId, ConnectError, DiskError, DiskOp, FetchMetadata, Input,
    MetadataFetchError, Node, NodeConfig, NodeEvent, Output, TorrentError, TorrentStats,
};
use enjambre_core::picker::BlockRef;
use enjambre_core::serve_order::ServeOrder;
use enjambre_core::time::Instant;
use enjambre_core::tracker::TrackerTiers;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a connect attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an announce may take.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a due timer waits behind inputs that keep coming (see [`NodeTask::run`]).
const MAX_TIMER_LAG: Duration = Duration::from_millis(50);
/// Most announces in flight at once: a library of ten thousand files starting together queues its announces
/// here instead of opening ten thousand connections to the tracker at once.
const MAX_ANNOUNCES_IN_FLIGHT: usize = 16;
/// Bytes of received blocks allowed to wait for the disk before the peer stops reading its sockets.
const DISK_BACKLOG_LIMIT: u64 = 16 * 1024 * 1024;
/// Capacity of the channel into the node task (bounds memory when the node is slower than the network).
const INBOX: usize = 128;
/// Most socket reads (or disk results) handed to the node as one batch per turn of the node task: the node
/// settles once per batch, and what it answers to them leaves in one write per connection. Bounded so that
/// timers, commands and the disk backlog are looked at between batches.
const MAX_INPUTS_PER_TURN: usize = 64;
/// The node task's channels, as sources of [`Woken`].
const COMMANDS: usize = 0;
const DISK_DONE: usize = 1;
const INBOX_SOURCE: usize = 2;

/// A callback receiving every node event with its time.
pub type EventSink = Arc<dyn Fn(Instant, &NodeEvent) + Send + Sync>;

/// Receives the DHT nodes peers name in PORT messages (BEP 5), for the app's DHT node to ping.
pub type DhtNodeSink = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// What the driver needs from the world.
#[derive(Clone)]
pub struct PeerEnv<T, B> {
    /// The network.
    pub transport: T,
    /// Where disk and hash work runs.
    pub blocking: B,
    /// The filesystem.
    pub storage: Arc<dyn Storage>,
    /// The clock.
    pub clock: Clock,
}

/// The real world: tokio TCP, the blocking thread pool, `std::fs` and tokio's clock.
pub type RealEnv = PeerEnv<crate::transport::TokioTransport, crate::storage::ThreadPool>;

impl RealEnv {
    /// The environment of the real binaries.
    pub fn real() -> RealEnv {
        PeerEnv {
            transport: crate::transport::TokioTransport,
            blocking: crate::storage::ThreadPool,
            storage: Arc::new(crate::storage::StdStorage),
            clock: crate::clock::Clock::new(),
        }
    }
}

/// Options of one peer.
#[derive(Clone)]
pub struct PeerOptions {
    /// Node tunables (peer id, seed, timeouts...). `listen_port` is overwritten with the bound port.
    pub node: NodeConfig,
    /// The download folder.
    pub dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Announce URL used for every torrent (overrides the metainfo's).
    pub tracker: Option<String>,
    /// Upload cap in bytes per second.
    pub max_upload_rate: Option<u64>,
    /// Download cap in bytes per second.
    pub max_download_rate: Option<u64>,
    /// Receives every node event.
    pub events: Option<EventSink>,
    /// Write checkpoints before syncing their data: breaks invariant 2 on purpose so that the simulator's
    /// crash sweep can demonstrate catching it. Never set this in real use.
    pub unsafe_checkpoint_before_sync: bool,
}

/// Errors of the peer driver.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    /// Disk trouble preparing a torrent.
    #[error("cannot prepare {name}: {source}")]
    Prepare { name: String, source: io::Error },
    /// The peer task has stopped.
    #[error("the peer has stopped")]
    Stopped,
    /// A magnet's metadata matched its info hash but is not a usable torrent.
    #[error(transparent)]
    Metadata(#[from] MetadataFetchError),
    /// Another process owns the download folder.
    #[error(transparent)]
    FolderTaken(#[from] crate::state_dir::LockError),
}

/// How to add a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddMode {
    /// Every piece is known good (the metainfo was just made from these files): record a complete checkpoint.
    Seed,
    /// Every piece is known good and already recorded so: a complete checkpoint whose files kept the
    /// stamps taken when they were verified ([`crate::state_dir::Stamps`]). Nothing is read or written.
    Trusted,
    /// Download, resuming from whatever checkpoint is in the state folder.
    Download,
    /// Download, but hash every piece already on disk first (`--recheck`).
    Recheck,
}

/// What a metadata phase hands back: the metainfo and the peers it met, or why the metadata is unusable.
pub type MetadataResult = Result<(Arc<Metainfo>, Vec<SocketAddr>), MetadataFetchError>;

enum Command {
    Add(AddTorrent, Option<String>, oneshot::Sender<()>),
    FetchMetadata(FetchMetadata, Vec<String>, oneshot::Sender<MetadataResult>),
    AddPeer(InfoHash, SocketAddr),
    DhtNodes(DhtNodeSink),
    Stats(oneshot::Sender<Vec<TorrentStats>>),
    Shutdown(oneshot::Sender<()>),
    Abort,
}

/// Reports from the peer's tasks to the node task.
pub(crate) enum Msg<S> {
    Accepted(S, SocketAddr),
    Connected(ConnId, S),
    Input(Input),
}

/// Most bytes a connection may leave unread (queued for it and not yet taken by its socket) before it is
/// dropped as a peer that asks for data and does not read it. A peer reading at any sane speed stays far
/// below: the node serves at most `max_served_requests` (256) blocks of 16 KiB at a time per peer.
pub const MAX_UNSENT_PER_CONN: u64 = 16 * 1024 * 1024;

/// How many connections with nothing waiting the pacer's order may remember (their piece in progress) before
/// it forgets them: closed connections are never told to it, so it is pruned to the waiting ones past this.
const PACE_ORDER_SLACK: usize = 256;

/// A running peer.
#[derive(Clone)]
pub struct Peer {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    prepare_waits: PrepareWaits,
}

impl Peer {
    /// Bind the listener and start the peer's tasks.
    pub async fn start<T, B>(
        env: PeerEnv<T, B>,
        mut options: PeerOptions,
    ) -> Result<(Peer, JoinHandle<()>), PeerError>
    where
        T: Transport,
        B: Blocking,
    {
        // One folder, one owner: held by the peer task for its whole life.
        let folder_lock = StateDir::new(env.storage.clone(), &options.dir).lock()?;
        let listener =
            env.transport
                .bind(options.listen)
                .await
                .map_err(|source| PeerError::Listen {
                    addr: options.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| PeerError::Listen {
            addr: options.listen,
            source,
        })?;
        options.node.listen_port = local_addr.port();
        options.node.upload_capacity = options.max_upload_rate;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (inbox, inbox_rx) = mpsc::channel(INBOX);
        let stores: Stores = Arc::default();
        let state = StateDir::new(env.storage.clone(), &options.dir);
        let (disk_done, disk_done_rx) = mpsc::unbounded_channel();
        let disk = DiskWorker::spawn(
            env.blocking.clone(),
            stores.clone(),
            state,
            disk_done,
            options.unsafe_checkpoint_before_sync,
        );
        let limits = Limits {
            up: options
                .max_upload_rate
                .map(|r| RateLimit::new(r, env.clock)),
            down: options
                .max_download_rate
                .map(|r| RateLimit::new(r, env.clock)),
        };
        let accept = tokio::spawn(accept_loop(listener, env.clock, inbox.clone()));
        let task = NodeTask {
            node: Node::new(options.node.clone()),
            env: env.clone(),
            sockets: Sockets::new(limits.down.clone(), env.clock),
            batch: Vec::new(),
            disk,
            stores,
            inbox,
            trackers: BTreeMap::new(),
            events: options.events.clone(),
            limits,
            paced: BTreeMap::new(),
            pace_order: ServeOrder::new(),
            pace_at: None,
            dropped: Vec::new(),
            metadata_waiters: BTreeMap::new(),
            announce_slots: Arc::new(tokio::sync::Semaphore::new(MAX_ANNOUNCES_IN_FLIGHT)),
            dht_nodes: None,
            options: options.clone(),
        };
        let handle = tokio::spawn(async move {
            let _folder_lock = folder_lock;
            task.run(command_rx, inbox_rx, disk_done_rx).await;
            accept.abort();
        });
        Ok((
            Peer {
                commands,
                local_addr,
                storage: env.storage,
                dir: options.dir,
                prepare_waits: PrepareWaits {
                    clock: env.clock,
                    backoff: Backoff::new(
                        options.node.disk_retry_base,
                        options.node.disk_retry_max,
                    ),
                    events: options.events,
                },
            },
            handle,
        ))
    }

    /// The address the peer listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The download folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Add a torrent: prepare its files and resume state (on `blocking`), then hand it to the node. A download
    /// whose preparation fails on the disk (full, or failing) waits and tries again as a stopped download
    /// does ([`NodeEvent::DiskStalled`], then [`NodeEvent::DiskRetry`]): the future ends once it is added.
    pub fn add<B: Blocking>(
        &self,
        blocking: B,
        meta: Metainfo,
        mode: AddMode,
        tracker: Option<String>,
        sources: Vec<SocketAddr>,
    ) -> impl std::future::Future<Output = Result<InfoHash, PeerError>> + Send + 'static {
        let (storage, dir, commands, waits) = (
            self.storage.clone(),
            self.dir.clone(),
            self.commands.clone(),
            self.prepare_waits.clone(),
        );
        async move {
            let meta = Arc::new(meta);
            let name = meta.info.name.clone();
            let resume = match mode {
                // A trusted torrent needs no disk work: it does not wait for the blocking pool, which a
                // library's ten thousand resumed checkpoints keep busy.
                AddMode::Trusted => enjambre_core::node::Resume::Complete,
                // A file to share that cannot be recorded is reported (and skipped) by the caller.
                AddMode::Seed => prepare(blocking, storage, dir, meta.clone(), mode)
                    .await
                    .map_err(|source| PeerError::Prepare { name, source })?,
                AddMode::Download | AddMode::Recheck => {
                    prepare_download(blocking, storage, dir, meta.clone(), mode, waits)
                        .await
                        .map_err(|source| PeerError::Prepare { name, source })?
                }
            };
            let hash = meta.info_hash;
            // Whether to announce is decided with the tracker tiers, in the node task.
            let add = AddTorrent {
                meta,
                resume,
                announce: false,
                sources,
            };
            let (tx, rx) = oneshot::channel();
            commands
                .send(Command::Add(add, tracker, tx))
                .map_err(|_| PeerError::Stopped)?;
            rx.await.map_err(|_| PeerError::Stopped)?;
            Ok(hash)
        }
    }

    /// Get the metainfo of a torrent known by its info hash only (a magnet link, BEP 9) from peers found
    /// through `trackers` (or the peer's own tracker when empty) and `sources`.
    pub async fn fetch_metadata(
        &self,
        info_hash: InfoHash,
        trackers: Vec<String>,
        sources: Vec<SocketAddr>,
    ) -> Result<(Arc<Metainfo>, Vec<SocketAddr>), PeerError> {
        let fetch = FetchMetadata {
            info_hash,
            sources,
            announce: false,
        };
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::FetchMetadata(fetch, trackers, tx))
            .map_err(|_| PeerError::Stopped)?;
        let result = rx.await.map_err(|_| PeerError::Stopped)?;
        Ok(result?)
    }

    /// Add a peer address to try for a torrent.
    pub fn add_peer(&self, info_hash: InfoHash, addr: SocketAddr) {
        let _ = self.commands.send(Command::AddPeer(info_hash, addr));
    }

    /// Hand the DHT nodes that peers name in PORT messages to `sink` from now on (the node sends PORT
    /// messages only when its config has a `dht_port`).
    pub fn forward_dht_nodes(&self, sink: DhtNodeSink) {
        let _ = self.commands.send(Command::DhtNodes(sink));
    }

    /// Progress of every torrent.
    pub async fn stats(&self) -> Result<Vec<TorrentStats>, PeerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(tx))
            .map_err(|_| PeerError::Stopped)?;
        rx.await.map_err(|_| PeerError::Stopped)
    }

    /// Stop at once as a crash would: no `stopped` announce, connections dropped, nothing flushed.
    pub fn abort(&self) {
        let _ = self.commands.send(Command::Abort);
    }

    /// Announce `stopped`, close every connection and stop the peer.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Plan a torrent's resume on the blocking runner. A free function, so that the closure it runs captures
/// no borrowed lifetimes (keeps callers' futures `Send` for every lifetime).
async fn prepare<B: Blocking>(
    blocking: B,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    meta: Arc<Metainfo>,
    mode: AddMode,
) -> io::Result<enjambre_core::node::Resume> {
    blocking
        .run(move || plan_resume(storage, &dir, &meta, mode))
        .await
}

/// How a download waits out a disk that fails while it is being prepared: the node's disk backoff
/// (`disk_retry_base`, `disk_retry_max`), and the events that say so.
#[derive(Clone)]
struct PrepareWaits {
    clock: Clock,
    backoff: Backoff,
    events: Option<EventSink>,
}

impl PrepareWaits {
    fn event(&self, event: &NodeEvent) {
        if let Some(sink) = &self.events {
            sink(self.clock.now(), event);
        }
    }
}

/// Whether a failure to prepare a download is the disk's, to wait out (a full disk, an I/O error that
/// outlasted [`crate::storage::IO_TRIES`]), rather than the torrent's own (a file name that would escape the
/// folder, unreadable metainfo), which no wait can cure.
fn waits_for_disk(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
    )
}

/// Plan a download's resume ([`prepare`]), waiting and trying again while the disk fails, as the data path
/// does on a failed write: the user's request is never dropped for a full disk, and nothing is claimed before
/// the step that records it has succeeded (every step of [`plan_resume`] is idempotent).
async fn prepare_download<B: Blocking>(
    blocking: B,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    meta: Arc<Metainfo>,
    mode: AddMode,
    waits: PrepareWaits,
) -> io::Result<enjambre_core::node::Resume> {
    let torrent = meta.info_hash;
    let what = format!("preparing {}", meta.info.name);
    let mut failures: u32 = 0;
    loop {
        let e = match prepare(
            blocking.clone(),
            storage.clone(),
            dir.clone(),
            meta.clone(),
            mode,
        )
        .await
        {
            Ok(resume) => return Ok(resume),
            Err(e) if waits_for_disk(&e) => e,
            Err(e) => return Err(e),
        };
        failures = failures.saturating_add(1);
        let wait = waits.backoff.delay(failures);
        waits.event(&NodeEvent::DiskStalled {
            torrent,
            error: TorrentError::Prepare(DiskError::io(&what, &e)),
            retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        tokio::time::sleep(wait).await;
        waits.event(&NodeEvent::DiskRetry {
            torrent,
            attempt: failures,
        });
    }
}

/// Announce to the first tracker of the tiers that answers (BEP 12), promoting it in its tier; the error of
/// the last one tried when none does.
async fn announce_to_tiers<T: Transport>(
    transport: &T,
    tiers: &std::sync::Mutex<TrackerTiers>,
    params: &enjambre_core::tracker::AnnounceParams,
) -> Result<enjambre_core::tracker::AnnounceReply, String> {
    let candidates = tiers.lock().map(|t| t.candidates()).unwrap_or_default();
    let mut last_error = "no usable tracker".to_string();
    for url in candidates {
        let fut = crate::tracker_client::announce(transport, &url, params);
        match tokio::time::timeout(ANNOUNCE_TIMEOUT, fut).await {
            Ok(Ok(reply)) => {
                if let Ok(mut t) = tiers.lock() {
                    t.promote(&url);
                }
                return Ok(reply);
            }
            Ok(Err(e)) => last_error = format!("{url}: {e}"),
            Err(_) => last_error = format!("tracker {url} timed out"),
        }
    }
    Err(last_error)
}

/// Shared upload and download rate limits.
#[derive(Clone)]
struct Limits {
    up: Option<RateLimit>,
    down: Option<RateLimit>,
}

async fn accept_loop<L: Listener>(
    mut listener: L,
    clock: Clock,
    inbox: mpsc::Sender<Msg<L::Stream>>,
) {
    loop {
        let (stream, addr) = accept_next(&mut listener, &clock, "peer").await;
        if inbox.send(Msg::Accepted(stream, addr)).await.is_err() {
            return;
        }
    }
}

struct NodeTask<T: Transport, B> {
    node: Node,
    env: PeerEnv<T, B>,
    /// The open connections' sockets.
    sockets: Sockets<T::Stream>,
    /// Inputs read from the sockets in one turn, handed to the node together (kept for its capacity).
    batch: Vec<Input>,
    disk: DiskWorker,
    stores: Stores,
    inbox: mpsc::Sender<Msg<T::Stream>>,
    trackers: BTreeMap<InfoHash, Arc<std::sync::Mutex<TrackerTiers>>>,
    events: Option<EventSink>,
    limits: Limits,
    /// Reads of blocks to serve waiting for upload budget, per connection (only with an upload limit).
    paced: BTreeMap<ConnId, VecDeque<(InfoHash, BlockRef)>>,
    /// Which connection the pacer serves next (the piece closest to completion first).
    pace_order: ServeOrder,
    /// When the pacer may spend again (`None`: now).
    pace_at: Option<Instant>,
    /// Connections the driver gave up on, to tell the node.
    dropped: Vec<(ConnId, CloseReason)>,
    /// Who waits for the metadata of a magnet, by info hash.
    metadata_waiters: BTreeMap<InfoHash, Vec<oneshot::Sender<MetadataResult>>>,
    /// Permits for announces in flight ([`MAX_ANNOUNCES_IN_FLIGHT`]).
    announce_slots: Arc<tokio::sync::Semaphore>,
    /// Where DHT nodes named by peers go.
    dht_nodes: Option<DhtNodeSink>,
    options: PeerOptions,
}

impl<T: Transport, B: Blocking> NodeTask<T, B> {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inbox: mpsc::Receiver<Msg<T::Stream>>,
        mut disk_done: mpsc::UnboundedReceiver<enjambre_core::node::DiskDone>,
    ) {
        let mut shutdown_reply: Option<oneshot::Sender<()>> = None;
        let clock = self.env.clock;
        // One timer for the node's deadline, moved only when the deadline moves (a timer made and dropped
        // at every turn of the loop was a timer-wheel insertion and removal per input).
        let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
        let mut armed: Option<Instant> = None;
        // The three channels are polled only when woken since their last pending poll (see `woken`).
        let woken = Woken::new(3);
        loop {
            let mut deadline = self.node.poll_timeout();
            // Timers come after every ready input (the select is biased), but not for ever: a peer with ten
            // thousand torrents gets disk results and announce replies without pause, and its timers (the
            // announces among them) must not starve behind them.
            let now = self.env.clock.now();
            if deadline.is_some_and(|d| d + MAX_TIMER_LAG <= now) {
                self.node.handle_timeout(now);
                self.drain();
                deadline = self.node.poll_timeout();
            }
            if let Some(d) = deadline.filter(|d| armed != Some(*d)) {
                timer.as_mut().reset(clock.to_tokio(d));
                armed = Some(d);
            }
            let pacing = !self.paced.is_empty();
            let pace_at = self.pace_at;
            let pace = async {
                if let Some(at) = pace_at {
                    clock.sleep_until(at).await;
                }
            };
            // Backpressure: while too many received bytes wait for the disk, stop reading sockets (TCP then
            // slows the senders) until the disk worker catches up. Disk results have their own channel.
            let pressured = self.disk.backlog() > DISK_BACKLOG_LIMIT;
            let relief = self.disk.relief();
            let relieved = relief.notified();
            tokio::select! {
                biased;
                cmd = std::future::poll_fn(|cx| woken.poll(COMMANDS, cx, |cx| commands.poll_recv(cx))) => match cmd {
                    Some(Command::Shutdown(reply)) => {
                        self.node.shutdown(self.env.clock.now());
                        self.drain();
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(Command::Abort) | None => {
                        // A crash: no goodbye to anyone; queued disk work is dropped with the worker.
                        self.sockets.abort_all();
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                },
                done = std::future::poll_fn(|cx| woken.poll(DISK_DONE, cx, |cx| disk_done.poll_recv(cx))) => {
                    if let Some(done) = done {
                        // With the results that are already there, as one batch.
                        let more = std::iter::from_fn(|| disk_done.try_recv().ok());
                        let batch = std::iter::once(done)
                            .chain(more.take(MAX_INPUTS_PER_TURN - 1))
                            .map(Input::Disk);
                        self.node.handle_inputs(self.env.clock.now(), batch);
                    }
                }
                msg = std::future::poll_fn(|cx| woken.poll(INBOX_SOURCE, cx, |cx| inbox.poll_recv(cx))), if !pressured => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => break,
                },
                () = std::future::poll_fn(|cx| {
                    self.sockets
                        .poll_inputs(cx, !pressured, MAX_INPUTS_PER_TURN, &mut self.batch)
                }) => {
                    self.node.handle_inputs(self.env.clock.now(), self.batch.drain(..));
                }
                () = relieved, if pressured => {}
                () = &mut timer, if deadline.is_some() => {
                    armed = None;
                    self.node.handle_timeout(self.env.clock.now());
                }
                () = pace, if pacing => self.pace(),
            }
            self.drain();
        }
        // Give the `stopped` announces a moment to leave, then close everything.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.sockets.abort_all();
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = self.env.clock.now();
        match cmd {
            Command::Add(mut add, tracker, reply) => {
                let hash = add.meta.info_hash;
                let tiers = match tracker.or_else(|| self.options.tracker.clone()) {
                    Some(url) => TrackerTiers::single(&url),
                    None => {
                        // BEP 12 shuffles each tier; seeded, so simulated runs stay reproducible.
                        let mut seed = [0u8; 8];
                        seed.copy_from_slice(&hash.0[..8]);
                        let mut rng = ChaCha8Rng::seed_from_u64(
                            self.options.node.seed ^ u64::from_be_bytes(seed),
                        );
                        TrackerTiers::new(
                            add.meta.announce.as_deref(),
                            &add.meta.announce_list,
                            &mut rng,
                        )
                    }
                };
                add.announce = !tiers.is_empty();
                if add.announce {
                    self.trackers
                        .insert(hash, Arc::new(std::sync::Mutex::new(tiers)));
                }
                match TorrentStore::new(
                    self.env.storage.clone(),
                    self.options.dir.clone(),
                    &add.meta,
                ) {
                    Ok(store) => {
                        if let Ok(mut s) = self.stores.lock() {
                            s.insert(hash, Arc::new(store));
                        }
                        self.node.add_torrent(now, add);
                    }
                    Err(e) => tracing::error!("cannot open files of {}: {e}", add.meta.info.name),
                }
                let _ = reply.send(());
            }
            Command::FetchMetadata(mut fetch, trackers, reply) => {
                let hash = fetch.info_hash;
                let tiers = if trackers.is_empty() {
                    self.options.tracker.as_deref().map(TrackerTiers::single)
                } else {
                    let mut rng = ChaCha8Rng::seed_from_u64(self.options.node.seed);
                    Some(TrackerTiers::new(None, &[trackers], &mut rng))
                };
                if let Some(tiers) = tiers.filter(|t| !t.is_empty()) {
                    fetch.announce = true;
                    self.trackers
                        .insert(hash, Arc::new(std::sync::Mutex::new(tiers)));
                }
                self.metadata_waiters.entry(hash).or_default().push(reply);
                self.node.fetch_metadata(now, fetch);
            }
            Command::AddPeer(hash, addr) => self.node.add_peer(now, &hash, addr),
            Command::DhtNodes(sink) => self.dht_nodes = Some(sink),
            Command::Stats(reply) => {
                let hashes: Vec<InfoHash> = self.node.torrents().collect();
                let stats = hashes.iter().filter_map(|h| self.node.stats(h)).collect();
                let _ = reply.send(stats);
            }
            Command::Shutdown(_) | Command::Abort => {}
        }
    }

    fn on_msg(&mut self, msg: Msg<T::Stream>) {
        let now = self.env.clock.now();
        match msg {
            Msg::Accepted(stream, addr) => {
                let id = self.node.allocate_conn_id();
                self.sockets.insert(id, stream);
                self.node
                    .handle_input(now, Input::Accepted { conn: id, addr });
            }
            Msg::Connected(id, stream) => {
                self.sockets.insert(id, stream);
                self.node.handle_input(now, Input::Connected { conn: id });
            }
            Msg::Input(input) => self.node.handle_input(now, input),
        }
    }

    /// Release paced reads while the upload budget allows, in [`ServeOrder`]'s order (the piece closest to
    /// completion first, then connections in turn). Blocks the node no longer means to serve (cancelled,
    /// choked, connection gone) are dropped without spending budget.
    fn pace(&mut self) {
        let Some(limit) = self.limits.up.clone() else {
            self.paced.clear();
            return;
        };
        self.pace_at = None;
        if self.pace_order.len() > self.paced.len() + PACE_ORDER_SLACK {
            let paced = &self.paced;
            self.pace_order.retain(|c| paced.contains_key(&c));
        }
        while let Some(conn) = self.pace_order.next(
            self.paced
                .iter()
                .filter_map(|(c, q)| q.front().map(|(_, b)| (*c, b.piece))),
        ) {
            let queue = self.paced.get_mut(&conn);
            let next = queue.as_ref().and_then(|q| q.front().copied());
            let Some((torrent, block)) = next else {
                self.paced.remove(&conn);
                continue;
            };
            if let Some(q) = queue {
                q.pop_front();
                if q.is_empty() {
                    self.paced.remove(&conn);
                }
            }
            if !self.node.is_serving(conn, &block) {
                continue;
            }
            self.pace_order.released(conn, block.piece);
            self.disk.submit(DiskOp::Read {
                torrent,
                conn,
                block,
            });
            let wait = limit.reserve(u64::from(block.length));
            if !wait.is_zero() {
                self.pace_at = Some(self.env.clock.now() + wait);
                return;
            }
        }
    }

    fn drain(&mut self) {
        loop {
            while let Some(out) = self.node.poll_output() {
                self.carry_out(out);
            }
            self.sockets.flush_deferred();
            if self.dropped.is_empty() {
                return;
            }
            let now = self.env.clock.now();
            for (conn, reason) in std::mem::take(&mut self.dropped) {
                self.node.handle_input(now, Input::Dropped { conn, reason });
            }
        }
    }

    fn carry_out(&mut self, out: Output) {
        match out {
            Output::Connect { conn, addr } => {
                let transport = self.env.transport.clone();
                let inbox = self.inbox.clone();
                tokio::spawn(async move {
                    let msg = match tokio::time::timeout(CONNECT_TIMEOUT, transport.connect(addr))
                        .await
                    {
                        Ok(Ok(stream)) => Msg::Connected(conn, stream),
                        Ok(Err(e)) => Msg::Input(Input::ConnectFailed {
                            conn,
                            reason: ConnectError::from(&e),
                        }),
                        Err(_) => Msg::Input(Input::ConnectFailed {
                            conn,
                            reason: ConnectError::TimedOut,
                        }),
                    };
                    let _ = inbox.send(msg).await;
                });
            }
            Output::Send { conn, data } => {
                if let Err(queued) = self.sockets.send(conn, data, MAX_UNSENT_PER_CONN) {
                    self.sockets.abort(conn);
                    self.dropped.push((
                        conn,
                        CloseReason::Unread {
                            unread_mib: queued / (1024 * 1024),
                        },
                    ));
                }
            }
            Output::SendRange {
                conn,
                head,
                torrent,
                offset,
                len,
            } => {
                let store = self
                    .stores
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&torrent).cloned());
                let ranges = match store {
                    Some(store) => store.file_ranges(offset, u64::from(len)),
                    None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
                };
                let queued = match ranges {
                    Ok(ranges) => self
                        .sockets
                        .send_ranges(conn, head, ranges, MAX_UNSENT_PER_CONN)
                        .map_err(|queued| CloseReason::Unread {
                            unread_mib: queued / (1024 * 1024),
                        }),
                    Err(e) => {
                        tracing::warn!(
                            "connection {conn}: cannot send {len} bytes at {offset}: {e}"
                        );
                        Err(CloseReason::ServeReadFailed)
                    }
                };
                if let Err(reason) = queued {
                    self.sockets.abort(conn);
                    self.dropped.push((conn, reason));
                }
            }
            // What is queued (a goodbye, a last message) is still written, for a few seconds at most.
            Output::Close { conn } => self.sockets.close(conn),
            Output::Disk(DiskOp::Read {
                torrent,
                conn,
                block,
            }) if self.limits.up.is_some() => {
                self.paced
                    .entry(conn)
                    .or_default()
                    .push_back((torrent, block));
            }
            Output::Disk(op) => self.disk.submit(op),
            Output::Announce { torrent, params } => {
                let Some(tiers) = self.trackers.get(&torrent).cloned() else {
                    return;
                };
                let transport = self.env.transport.clone();
                let inbox = self.inbox.clone();
                let slots = self.announce_slots.clone();
                tokio::spawn(async move {
                    // The semaphore is never closed; without a permit the announce goes anyway.
                    let _slot = slots.acquire_owned().await.ok();
                    let reply = announce_to_tiers(&transport, &tiers, &params).await;
                    let _ = inbox
                        .send(Msg::Input(Input::TrackerReply { torrent, reply }))
                        .await;
                });
            }
            Output::Metadata {
                torrent,
                result,
                peers,
            } => {
                for waiter in self.metadata_waiters.remove(&torrent).unwrap_or_default() {
                    let _ = waiter.send(result.clone().map(|meta| (meta, peers.clone())));
                }
            }
            Output::DhtNode { addr } => {
                if let Some(sink) = &self.dht_nodes {
                    sink(addr);
                }
            }
            Output::Event(e) => {
                log_event(&e);
                if let Some(sink) = &self.events {
                    sink(self.env.clock.now(), &e);
                }
            }
        }
    }
}

fn log_event(e: &NodeEvent) {
    match e {
        NodeEvent::Wire { .. } => tracing::trace!("{e:?}"),
        NodeEvent::Banned { .. } | NodeEvent::PieceFailed { .. } => tracing::warn!("{e:?}"),
        NodeEvent::TorrentError { torrent, error } => {
            tracing::warn!(torrent = %torrent.to_hex(), "{error}")
        }
        // The front ends tell the user about a stopped download themselves.
        NodeEvent::DiskStalled { .. } => tracing::info!("{e:?}"),
        NodeEvent::Disconnected { .. } | NodeEvent::RequestRefused { .. } => {
            tracing::debug!("{e:?}")
        }
        _ => tracing::debug!("{e:?}"),
    }
}
