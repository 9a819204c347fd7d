//! The app's DHT (BEP 5): one DHT node on the peer's listen port (UDP beside TCP, as libtorrent does), its
//! routing table kept in `DIR/.enjambre` across runs, and for every torrent a loop of `get_peers` lookups
//! that announce us to the closest nodes and hand the peers found to the node as any source's (a metadata
//! phase included, so that a magnet without a tracker finds its swarm).

use super::{AppError, PeerApp};
use crate::clock::Clock;
use crate::dht::{spawn_dht, DhtEventSink, DhtHandle, DhtStart};
use crate::peer::{Peer, PeerEnv, PeerError};
use crate::state_dir::STATE_DIR_NAME;
use crate::storage::{Blocking, Storage};
use crate::transport::{DatagramSocket, Transport};
use enjambre_core::dht::saved::SavedTable;
use enjambre_core::dht::DhtConfig;
use enjambre_core::metainfo::InfoHash;
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The routing table's file in the state folder.
pub const DHT_TABLE_FILE: &str = "dht.table";

/// Largest routing table file read back (2,000 IPv6 contacts take about 77 KB).
const MAX_TABLE_FILE: u64 = 1024 * 1024;

/// How the app runs its DHT node.
#[derive(Clone)]
pub struct DhtOptions {
    /// Addresses to join through (`--dht-bootstrap`); none for a node that others join through.
    pub bootstrap: Vec<SocketAddr>,
    /// Node tunables; its `seed` is mixed with the peer's, so two peers of one run differ.
    pub config: DhtConfig,
    /// Every torrent looks itself up (and announces us) this often.
    pub reannounce: Duration,
    /// ... and this often while it wants peers: a magnet still without its metadata, or a download with no
    /// peer or whose tracker fails, or when the last lookup found no node to announce to.
    pub retry: Duration,
    /// The routing table is saved this often (and on shutdown).
    pub save_every: Duration,
    /// Receives every DHT event (the KRPC trace with `config.trace`).
    pub events: Option<DhtEventSink>,
}

impl DhtOptions {
    /// Defaults as libtorrent's, joining through `bootstrap`: announces every 15 minutes, lookups every
    /// 30 s while peers are wanted, the table saved every 5 minutes.
    pub fn new(bootstrap: Vec<SocketAddr>) -> DhtOptions {
        DhtOptions {
            bootstrap,
            config: DhtConfig::default(),
            reannounce: Duration::from_secs(15 * 60),
            retry: Duration::from_secs(30),
            save_every: Duration::from_secs(5 * 60),
            events: None,
        }
    }
}

impl std::fmt::Debug for DhtOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtOptions")
            .field("bootstrap", &self.bootstrap)
            .field("reannounce", &self.reannounce)
            .field("retry", &self.retry)
            .field("save_every", &self.save_every)
            .finish_non_exhaustive()
    }
}

/// The running DHT of an app.
pub(super) struct AppDht {
    pub handle: DhtHandle,
    options: DhtOptions,
    /// Torrents whose lookup loop runs.
    looking: Mutex<BTreeSet<InfoHash>>,
}

/// Where the routing table of download folder `dir` is kept.
pub fn dht_table_path(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR_NAME).join(DHT_TABLE_FILE)
}

/// Bind the DHT's UDP socket on `listen`'s port; with port 0, on a free one. The peer then listens on
/// TCP on the same port.
pub(super) async fn bind_socket<T: Transport>(
    transport: &T,
    listen: SocketAddr,
) -> Result<T::Datagram, AppError> {
    let listen_error = |source| {
        AppError::Peer(PeerError::Listen {
            addr: listen,
            source,
        })
    };
    transport.bind_udp(listen).await.map_err(listen_error)
}

/// Start the DHT node on `socket`, joining through the saved table of `dir` and the bootstrap nodes, and
/// have `peer` hand it the DHT nodes its peers name.
pub(super) async fn start_dht<T: Transport, B: Blocking>(
    env: &PeerEnv<T, B>,
    dir: &Path,
    socket: T::Datagram,
    peer: &Peer,
    peer_seed: u64,
    options: DhtOptions,
) -> Result<AppDht, AppError> {
    let saved = load_table(env, dir).await;
    let mut config = options.config.clone();
    config.seed ^= peer_seed;
    let start = DhtStart {
        config,
        bootstrap: options.bootstrap.clone(),
        saved,
        events: options.events.clone(),
    };
    let addr = socket.local_addr().ok();
    let handle = spawn_dht(socket, env.clock, start).map_err(|source| AppError::Io {
        path: PathBuf::from(format!("udp {addr:?}")),
        source,
    })?;
    let pinger = handle.clone();
    peer.forward_dht_nodes(Arc::new(move |addr| pinger.ping(addr)));
    Ok(AppDht {
        handle,
        options,
        looking: Mutex::new(BTreeSet::new()),
    })
}

/// The table saved by an earlier run, if there is a readable one (a bad one is logged and ignored).
async fn load_table<T, B: Blocking>(env: &PeerEnv<T, B>, dir: &Path) -> Option<SavedTable> {
    let storage = env.storage.clone();
    let path = dht_table_path(dir);
    let p = path.clone();
    let read = env
        .blocking
        .run(move || -> io::Result<Option<Vec<u8>>> {
            match storage.file_len(&p)? {
                Some(n) if n > MAX_TABLE_FILE => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{n} bytes is too large"),
                )),
                _ => storage.read_file(&p),
            }
        })
        .await;
    match read {
        Ok(Some(bytes)) => match SavedTable::parse(&bytes) {
            Ok(table) => Some(table),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring the saved DHT table");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved DHT table");
            None
        }
    }
}

/// Save the node's routing table in the state folder, atomically.
async fn save_table<B: Blocking>(
    blocking: &B,
    storage: Arc<dyn Storage>,
    dir: &Path,
    dht: &DhtHandle,
) -> io::Result<()> {
    let Ok(table) = dht.saved_table().await else {
        return Ok(());
    };
    let path = dht_table_path(dir);
    let bytes = table.encode();
    blocking
        .run(move || {
            if let Some(parent) = path.parent() {
                storage.create_dir_all(parent)?;
            }
            storage.replace_file(&path, &bytes)
        })
        .await
}

impl<T: Transport, B: Blocking> PeerApp<T, B> {
    /// The DHT node, when the app runs one.
    pub fn dht(&self) -> Option<&DhtHandle> {
        self.dht.as_ref().map(|d| &d.handle)
    }

    /// Save the routing table now (it is also saved every [`DhtOptions::save_every`] and on shutdown).
    pub async fn save_dht_table(&self) -> Result<(), AppError> {
        let Some(dht) = &self.dht else {
            return Ok(());
        };
        save_table(
            &self.env.blocking,
            self.env.storage.clone(),
            &self.dir,
            &dht.handle,
        )
        .await
        .map_err(|source| AppError::Io {
            path: dht_table_path(&self.dir),
            source,
        })
    }

    /// Start saving the routing table every [`DhtOptions::save_every`].
    pub(super) fn start_dht_saver(&self) {
        let Some(dht) = &self.dht else { return };
        let (blocking, storage, dir) = (
            self.env.blocking.clone(),
            self.env.storage.clone(),
            self.dir.clone(),
        );
        let (handle, every) = (dht.handle.clone(), dht.options.save_every);
        self.spawn_background(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = save_table(&blocking, storage.clone(), &dir, &handle).await {
                    tracing::warn!("cannot save the DHT table: {e}");
                }
            }
        });
    }

    /// Start looking up `hash` in the DHT (once per torrent): announce us, and hand the peers found to the
    /// node, again and again for as long as the app runs.
    pub(super) fn start_dht_lookups(&self, hash: InfoHash) {
        let Some(dht) = &self.dht else { return };
        let new = dht
            .looking
            .lock()
            .map(|mut l| l.insert(hash))
            .unwrap_or(false);
        if !new {
            return;
        }
        let lookups = Lookups {
            dht: dht.handle.clone(),
            peer: self.peer.clone(),
            hash,
            port: self.local_addr().port(),
            reannounce: dht.options.reannounce,
            retry: dht.options.retry,
            clock: self.env.clock,
        };
        self.spawn_background(lookups.run());
    }

    /// Save the routing table and stop the DHT node (a clean stop).
    pub(super) async fn stop_dht(&self, save: bool) {
        let Some(dht) = &self.dht else { return };
        if save {
            if let Err(e) = self.save_dht_table().await {
                tracing::warn!("{e}");
            }
        }
        dht.handle.stop().await;
    }
}

/// The lookup loop of one torrent.
struct Lookups {
    dht: DhtHandle,
    peer: Peer,
    hash: InfoHash,
    port: u16,
    reannounce: Duration,
    retry: Duration,
    clock: Clock,
}

impl Lookups {
    async fn run(self) {
        loop {
            let Ok(found) = self.dht.get_peers(self.hash, Some(self.port)).await else {
                return;
            };
            tracing::debug!(
                torrent = %self.hash.to_hex(),
                peers = found.peers.len(),
                announced = found.announced,
                "DHT lookup done"
            );
            for addr in &found.peers {
                self.peer.add_peer(self.hash, *addr);
            }
            let wait = if found.announced == 0 || self.wants_peers().await {
                self.retry
            } else {
                self.reannounce
            };
            self.clock.sleep_until(self.clock.now() + wait).await;
        }
    }

    /// A magnet still in its metadata phase (no stats yet), or an unfinished download with no peer or
    /// whose tracker fails.
    async fn wants_peers(&self) -> bool {
        let Ok(all) = self.peer.stats().await else {
            return false;
        };
        match all.iter().find(|s| s.info_hash == self.hash) {
            None => true,
            Some(s) => !s.complete && (s.peers == 0 || s.tracker_error.is_some()),
        }
    }
}
