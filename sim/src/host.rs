//! The programs simulated hosts run: the real tracker server and the real peer driver from enjambre-net,
//! on turmoil's network and filesystem. A restarted host runs its program again on the disk that survived.

use crate::content;
use crate::disk_space::DiskSpace;
use crate::scenario::{PeerSpec, Scenario, TrackerProtocol};
use crate::storage::{CorruptSwitch, FreeDiskSwitch, ProbeStorage, SimDisk, SimStorage};
use crate::transport::SimTransport;
use crate::world::{sim_now, Shared};
use enjambre_core::metainfo::Metainfo;
use enjambre_core::node::{NodeConfig, NodeEvent};
use enjambre_core::tracker::{Registry, RegistryConfig};
use enjambre_core::DEFAULT_PIECE_LENGTH;
use enjambre_net::clock::TokioClock;
use enjambre_net::create::create_metainfo;
use enjambre_net::peer::{AddMode, EventSink, Peer, PeerEnv, PeerOptions};
use enjambre_net::state_dir::StateDir;
use enjambre_net::storage::Storage;
use enjambre_net::torrent_store::TorrentStore;
use enjambre_net::tracker_client;
use enjambre_net::tracker_server::{serve, ServerConfig};
use enjambre_net::transport::Transport;
use enjambre_net::udp_tracker_server::serve_udp;
use sha1::{Digest, Sha1};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Port every simulated peer listens on.
pub const PEER_PORT: u16 = 6881;
/// Port of the simulated tracker.
pub const TRACKER_PORT: u16 = 6969;
/// Download folder on every simulated host.
pub const DATA_DIR: &str = "/data";

/// The announce URL of the simulated tracker in `protocol`.
fn tracker_url(protocol: TrackerProtocol) -> String {
    match protocol {
        TrackerProtocol::Http => format!("http://tracker:{TRACKER_PORT}/announce"),
        TrackerProtocol::Udp => format!("udp://tracker:{TRACKER_PORT}/announce"),
    }
}

/// Run the tracker: HTTP and UDP (BEP 15) on the same port number, one registry. Its swarm is forgotten on a crash; its catalog is kept in `registry` across restarts.
pub async fn tracker_program(
    registry: Arc<Mutex<Registry>>,
    interval: Duration,
    seed: u64,
) -> turmoil::Result {
    {
        let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = Registry::new(RegistryConfig::with_interval(interval));
        for f in reg.list() {
            if let Some(bytes) = reg.metainfo_bytes(&f.name) {
                let _ = fresh.publish(bytes);
            }
        }
        *reg = fresh;
    }
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", TRACKER_PORT)).await?;
    let any = SocketAddr::from(([0, 0, 0, 0], TRACKER_PORT));
    let socket = SimTransport.bind_udp(any).await?;
    let config = ServerConfig {
        rng_seed: seed,
        ..ServerConfig::default()
    };
    let metrics = Arc::clone(&config.metrics);
    let http = serve::<SimTransport>(
        crate::transport::SimListener::from(listener),
        Arc::clone(&registry),
        TokioClock::new(),
        config,
    );
    let udp = serve_udp(
        socket,
        registry,
        TokioClock::new(),
        seed ^ 0x5544_5000,
        metrics,
    );
    tokio::join!(http, udp);
    Ok(())
}

/// Everything a peer host needs to (re)start.
#[derive(Clone)]
pub struct PeerProgram {
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// This peer.
    pub spec: PeerSpec,
    /// Seed of the run.
    pub seed: u64,
    /// Shared world.
    pub world: Shared,
    /// Whether to record wire messages.
    pub trace: bool,
    /// Write checkpoints before syncing (deliberately broken ordering, for the crash sweep's self-test).
    pub unsafe_order: bool,
    /// Switch that makes this peer serve wrong bytes.
    pub corrupt: CorruptSwitch,
    /// Switch that deletes the other program's data filling this peer's disk.
    pub free_disk: FreeDiskSwitch,
    /// How full this host's disk is (kept across restarts, like the disk).
    pub space: DiskSpace,
}

/// Tries of a harness disk operation when the scenario injects I/O errors.
const HARNESS_TRIES: u32 = 20;

/// Run a disk operation of the harness itself (not of the peer under test), trying again on injected I/O
/// errors so that they hit only the software under test.
fn harness_io<T, E>(mut op: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut tries = 1;
    loop {
        match op() {
            Err(_) if tries < HARNESS_TRIES => tries += 1,
            r => return r,
        }
    }
}

fn node_seed(seed: u64, name: &str, boot: u32) -> u64 {
    let d = Sha1::digest(format!("{seed}/{name}/{boot}").as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

fn peer_id(name: &str) -> [u8; 20] {
    let mut id = *b"-EJ0100-............";
    for (slot, b) in id[8..].iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    id
}

impl PeerProgram {
    /// The peer's program: audit the disk, start the driver, seed, resume, fetch, and report progress.
    pub async fn run(self) -> turmoil::Result {
        let name = self.spec.name.clone();
        let boot = {
            let mut w = self.world.lock();
            let p = w.peers.entry(name.clone()).or_default();
            p.boots += 1;
            p.up = true;
            p.up_since = Some(sim_now());
            for (file, s) in std::mem::take(&mut p.stats) {
                *p.uploaded_before.entry(file.clone()).or_default() += s.bytes_uploaded;
                *p.downloaded_before.entry(file.clone()).or_default() += s.bytes_downloaded;
                *p.wasted_before.entry(file.clone()).or_default() += s.bytes_wasted;
                let sources = p.sources_before.entry(file.clone()).or_default();
                for (addr, bytes) in s.sources {
                    *sources.entry(addr).or_default() += bytes;
                }
                p.banned_before.entry(file).or_default().extend(s.banned);
            }
            let boot = p.boots;
            w.note(
                sim_now(),
                &name,
                true,
                if boot == 1 {
                    "started".into()
                } else {
                    format!("restarted (boot {boot})")
                },
            );
            boot
        };
        let sim_storage = SimStorage::new(self.space.clone());
        sim_storage.after_boot();
        if boot == 1 {
            if let (Some(free), Some(capacity)) = (self.spec.disk_free, self.scenario.disk.capacity)
            {
                harness_io(|| sim_storage.fill(free.0, capacity.0))
                    .map_err(|e| format!("cannot fill the disk: {e}"))?;
                self.world.lock().note(
                    sim_now(),
                    &name,
                    true,
                    format!(
                        "another program's data fills the disk: {:.1} MiB free",
                        free.0 as f64 / 1048576.0
                    ),
                );
            }
        }
        if self.spec.disk_free.is_some() {
            tokio::spawn(free_disk_when_asked(
                sim_storage.clone(),
                self.free_disk.clone(),
                self.world.clone(),
                name.clone(),
            ));
        }
        let probe = ProbeStorage {
            inner: sim_storage,
            world: self.world.clone(),
            host: name.clone(),
        };
        let storage: Arc<dyn Storage> = Arc::new(self.corrupt.wrap(probe));
        let dir = PathBuf::from(DATA_DIR);
        audit_checkpoints(&self.world, &name, storage.clone(), &dir);
        self.generate_own_files(&dir)?;

        let world = self.world.clone();
        let host = name.clone();
        let sink: EventSink =
            Arc::new(move |_, e: &NodeEvent| world.lock().on_event(sim_now(), &host, e));
        let mut node = NodeConfig {
            peer_id: peer_id(&name),
            seed: node_seed(self.seed, &name, boot),
            trace: self.trace,
            ..NodeConfig::default()
        };
        if self.spec.sequential {
            node.piece_selection = enjambre_core::picker::PieceSelection::Sequential;
        }
        self.spec.knobs.apply(&mut node);
        let options = PeerOptions {
            node,
            dir: dir.clone(),
            listen: SocketAddr::from(([0, 0, 0, 0], PEER_PORT)),
            tracker: Some(tracker_url(self.scenario.tracker.protocol)),
            max_upload_rate: self.spec.upload_rate.map(|s| s.0),
            max_download_rate: self.spec.download_rate.map(|s| s.0),
            events: Some(sink),
            unsafe_checkpoint_before_sync: self.unsafe_order,
        };
        let latency = self
            .spec
            .disk_latency
            .map_or(Duration::from_millis(1), |s| s.0);
        let disk = SimDisk { latency };
        let env = PeerEnv {
            transport: SimTransport,
            blocking: disk,
            storage: storage.clone(),
            clock: TokioClock::new(),
        };
        let (peer, _task) = Peer::start(env, options).await.map_err(|e| e.to_string())?;
        let sources: Vec<SocketAddr> = self
            .spec
            .sources
            .iter()
            .map(|s| SocketAddr::new(turmoil::lookup(s.as_str()), PEER_PORT))
            .collect();

        let mut added: BTreeSet<String> = BTreeSet::new();
        for file in &self.spec.has {
            let path = dir.join(file);
            let piece = self
                .scenario
                .file(file)
                .and_then(|f| f.piece_size)
                .map_or(DEFAULT_PIECE_LENGTH, |s| s.0 as u32);
            let meta = harness_io(|| {
                create_metainfo(
                    storage.as_ref(),
                    &path,
                    piece,
                    Some(&tracker_url(self.scenario.tracker.protocol)),
                    &mut |_, _| {},
                )
            })
            .map_err(|e| e.to_string())?;
            self.learn(&meta);
            peer.add(disk, meta.clone(), AddMode::Seed, None, sources.clone())
                .await
                .map_err(|e| e.to_string())?;
            added.insert(file.clone());
            tokio::spawn(publish_until_done(meta.raw.clone()));
        }
        for (meta, _) in StateDir::new(storage.clone(), &dir).list_downloads() {
            if added.insert(meta.info.name.clone()) {
                self.learn(&meta);
                peer.add(disk, meta, AddMode::Download, None, sources.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        for file in &self.spec.get {
            if !added.contains(file) {
                let (peer, file, sources, me) =
                    (peer.clone(), file.clone(), sources.clone(), self.clone());
                tokio::spawn(me.fetch_by_name(peer, disk, file, sources));
            }
        }
        self.report_progress(&peer, storage, &dir).await
    }

    fn learn(&self, meta: &Metainfo) {
        self.world
            .lock()
            .names
            .insert(meta.info_hash.to_hex(), meta.info.name.clone());
    }

    fn generate_own_files(&self, dir: &Path) -> Result<(), String> {
        for file in &self.spec.has {
            let Some(spec) = self.scenario.file(file) else {
                continue;
            };
            let path = dir.join(file);
            let storage = SimStorage::new(self.space.clone());
            if harness_io(|| storage.file_len(&path)).map_err(|e| e.to_string())?
                == Some(spec.size.0)
            {
                continue;
            }
            let f = harness_io(|| storage.open(&path, true)).map_err(|e| e.to_string())?;
            let mut offset = 0u64;
            let mut result = Ok(());
            content::generate(self.seed, file, spec.size.0, |chunk| {
                if result.is_ok() {
                    // Synced chunk by chunk: turmoil 0.7.2 counts each pending write from the file's synced
                    // end, so a file written unsynced in one go would look many times its size to a capacity.
                    result = harness_io(|| f.write_at(chunk, offset))
                        .and_then(|()| harness_io(|| f.sync_data()));
                    offset += chunk.len() as u64;
                }
            });
            result
                .and_then(|()| harness_io(|| f.sync_data()))
                .map_err(|e| format!("cannot write {file}: {e}"))?;
        }
        Ok(())
    }

    async fn fetch_by_name(
        self,
        peer: Peer,
        disk: SimDisk,
        file: String,
        sources: Vec<SocketAddr>,
    ) {
        let base = format!("http://tracker:{TRACKER_PORT}");
        loop {
            match fetch_metainfo(base.clone(), file.clone()).await {
                Ok(bytes) => match Metainfo::from_bytes(&bytes) {
                    Ok(meta) => {
                        self.learn(&meta);
                        if let Err(e) = peer
                            .add(disk, meta, AddMode::Download, None, sources.clone())
                            .await
                        {
                            self.world.lock().note(
                                sim_now(),
                                &self.spec.name,
                                true,
                                format!("{file}: cannot start: {e}"),
                            );
                        }
                        return;
                    }
                    Err(e) => {
                        self.world.lock().note(
                            sim_now(),
                            &self.spec.name,
                            true,
                            format!("{file}: bad metainfo from tracker: {e}"),
                        );
                        return;
                    }
                },
                Err(e) => {
                    self.world.lock().note(
                        sim_now(),
                        &self.spec.name,
                        false,
                        format!("{file}: catalog lookup failed: {e}"),
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn report_progress(
        &self,
        peer: &Peer,
        storage: Arc<dyn Storage>,
        dir: &Path,
    ) -> turmoil::Result {
        let name = &self.spec.name;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(stats) = peer.stats().await else {
                continue;
            };
            let mut to_digest = Vec::new();
            {
                let mut w = self.world.lock();
                let p = w.peers.entry(name.clone()).or_default();
                for s in &stats {
                    // Downloads only: what a peer seeds from the start is the original itself.
                    if s.complete
                        && self.spec.get.contains(&s.name)
                        && s.pieces_durable == s.pieces_total
                        && !p.digests.contains_key(&s.name)
                    {
                        to_digest.push(s.name.clone());
                    }
                    p.stats.insert(s.name.clone(), s.clone());
                }
                let uploaded = stats.iter().map(|s| s.bytes_uploaded).sum::<u64>()
                    + p.uploaded_before.values().sum::<u64>();
                w.uploaded(sim_now(), name, uploaded);
                if !stats.iter().any(|s| s.checking) {
                    let have = stats.iter().map(|s| s.pieces_have).sum();
                    let total = stats.iter().map(|s| s.pieces_total).sum();
                    w.progress(sim_now(), name, have, total);
                }
            }
            for file in to_digest {
                if let Ok(d) = digest_file(storage.as_ref(), &dir.join(&file)) {
                    self.world
                        .lock()
                        .peers
                        .entry(name.clone())
                        .or_default()
                        .digests
                        .insert(file, d);
                }
            }
        }
    }
}

/// Wait for the story to free this host's disk, then delete the other program's data.
async fn free_disk_when_asked(
    storage: SimStorage,
    switch: FreeDiskSwitch,
    world: Shared,
    host: String,
) {
    while !switch.is_on() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = match harness_io(|| storage.free()) {
        Ok(0) => return,
        Ok(n) => format!("{:.1} MiB freed on the disk", n as f64 / 1048576.0),
        Err(e) => format!("cannot free the disk: {e}"),
    };
    world.lock().note(sim_now(), &host, true, text);
}

/// The catalog lookup as a boxed `Send` future (works around rustc's higher-ranked `Send` inference).
fn fetch_metainfo(
    base: String,
    file: String,
) -> std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Vec<u8>, tracker_client::TrackerClientError>>
            + Send,
    >,
> {
    Box::pin(async move { tracker_client::fetch_metainfo(&SimTransport, &base, &file).await })
}

async fn publish_until_done(bytes: Vec<u8>) {
    let base = format!("http://tracker:{TRACKER_PORT}");
    for _ in 0..600 {
        if tracker_client::publish(&SimTransport, &base, &bytes)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn digest_file(storage: &dyn Storage, path: &Path) -> std::io::Result<[u8; 20]> {
    let len = storage.file_len(path)?.unwrap_or(0);
    let f = storage.open(path, false)?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        f.read_at(&mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finalize().into())
}

/// Invariant 2, checked by the harness on every boot: every piece a checkpoint on disk claims must hash
/// correctly from what survived on disk.
fn audit_checkpoints(world: &Shared, host: &str, storage: Arc<dyn Storage>, dir: &Path) {
    let state = StateDir::new(storage.clone(), dir);
    for (meta, checkpoint) in state.list_downloads() {
        let Some(cp) = checkpoint else { continue };
        let Ok(claimed) = cp.validate(&meta) else {
            continue;
        };
        let Ok(store) = TorrentStore::new(storage.clone(), dir.to_path_buf(), &meta) else {
            continue;
        };
        let bad: Vec<u32> = claimed
            .iter_ones()
            .filter(|&p| {
                harness_io(|| store.hash_piece(p))
                    .ok()
                    .is_some_and(|h| Some(h) != meta.piece_hash(p))
            })
            .collect();
        if !bad.is_empty() {
            let mut w = world.lock();
            let text = format!(
                "INVARIANT 2 BROKEN: checkpoint of {} claims {} pieces that are not on disk (first: piece {})",
                meta.info.name,
                bad.len(),
                bad[0]
            );
            w.violations.push(format!("{host}: {text}"));
            w.note(sim_now(), host, true, text);
        }
    }
}
