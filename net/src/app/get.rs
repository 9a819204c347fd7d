//! Getting files: by catalog name (asking again while the name is not published yet, when told to), from
//! `.torrent` files, or from magnet links (metadata from peers, BEP 9); each started as a download from the
//! tracker's peers and any given ones.

use super::{AppError, PeerApp};
use crate::peer::AddMode;
use crate::state_dir::StateDir;
use crate::storage::{Blocking, Storage};
use crate::transport::Transport;
use enjambre_core::magnet::Magnet;
use enjambre_core::metainfo::{InfoHash, Metainfo};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest `.torrent` file read from disk.
const MAX_TORRENT_FILE: u64 = 64 * 1024 * 1024;

/// What to get (`peer get`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetRequest {
    /// File names in the tracker's catalog.
    pub names: Vec<String>,
    /// `.torrent` files.
    pub torrents: Vec<PathBuf>,
    /// Magnet links (BEP 9): the metainfo comes from peers, unless an earlier run stored it.
    pub magnets: Vec<Magnet>,
    /// Peers to download from besides the tracker's.
    pub peers: Vec<SocketAddr>,
    /// Hash whatever is already on disk in full first.
    pub recheck: bool,
    /// While a name is not in the catalog (or the tracker cannot be reached), ask again after this long
    /// instead of failing: for a peer started together with the one that publishes the file.
    pub catalog_retry: Option<Duration>,
}

impl<T: Transport, B: Blocking> PeerApp<T, B> {
    /// Start (or resume) every download of `request`: names first, each started as soon as its metainfo is
    /// known (a name already active in this app is not looked up again), then `.torrent` files. Returns the
    /// info hashes, without repeats, in that order.
    pub async fn get(&self, request: &GetRequest) -> Result<Vec<InfoHash>, AppError> {
        let mut hashes: Vec<InfoHash> = Vec::new();
        let mut push = |h: InfoHash| {
            if !hashes.contains(&h) {
                hashes.push(h);
            }
        };
        for name in &request.names {
            if let Some(hash) = self.active_named(name) {
                for p in &request.peers {
                    self.peer.add_peer(hash, *p);
                }
                push(hash);
                continue;
            }
            let meta = self
                .fetch_by_name_retrying(name, request.catalog_retry)
                .await?;
            push(
                self.add_download(meta, request.recheck, request.peers.clone())
                    .await?,
            );
        }
        for magnet in &request.magnets {
            push(self.get_magnet(magnet, request).await?);
        }
        let mut metas = Vec::new();
        for path in &request.torrents {
            metas.push(self.load_torrent_file(path).await?);
        }
        for meta in metas {
            push(
                self.add_download(meta, request.recheck, request.peers.clone())
                    .await?,
            );
        }
        Ok(hashes)
    }

    /// Start (or resume) the download of a magnet: its metainfo is the one stored by an earlier run in the
    /// state folder, or else is fetched from peers (the magnet's trackers, or ours, its `x.pe` hints, and
    /// the DHT's when the app runs one); the peers met on the way become sources.
    async fn get_magnet(
        &self,
        magnet: &Magnet,
        request: &GetRequest,
    ) -> Result<InfoHash, AppError> {
        let hash = magnet.info_hash;
        let mut sources: Vec<SocketAddr> = magnet.peers.clone();
        sources.extend(request.peers.iter().copied());
        if self.active().contains(&hash) {
            for p in &sources {
                self.peer.add_peer(hash, *p);
            }
            return Ok(hash);
        }
        let stored = StateDir::new(self.env.storage.clone(), &self.dir).metainfo_path(&hash);
        let meta = match self.load_torrent_file(&stored).await {
            Ok(meta) if meta.info_hash == hash => meta,
            _ => {
                // Peers found in the DHT meanwhile join the metadata phase.
                self.start_dht_lookups(hash);
                let (fetched, met) = self
                    .peer
                    .fetch_metadata(hash, magnet.trackers.clone(), sources.clone())
                    .await?;
                for addr in met {
                    if !sources.contains(&addr) {
                        sources.push(addr);
                    }
                }
                magnet
                    .metainfo(&fetched)
                    .map_err(|source| AppError::BadMagnetMetadata { hash, source })?
            }
        };
        self.add_download(meta, request.recheck, sources).await
    }

    /// [`PeerApp::fetch_by_name`], asking again every `retry` while the name is unknown or the tracker
    /// cannot answer (when `retry` is given).
    async fn fetch_by_name_retrying(
        &self,
        name: &str,
        retry: Option<Duration>,
    ) -> Result<Metainfo, AppError> {
        loop {
            match (self.fetch_by_name(name).await, retry) {
                (
                    Err(
                        e @ (AppError::UnknownName(_)
                        | AppError::TrackerUnreachable { .. }
                        | AppError::Tracker { .. }),
                    ),
                    Some(wait),
                ) => {
                    tracing::debug!("{name}: catalog lookup failed, asking again: {e}");
                    self.env
                        .clock
                        .sleep_until(self.env.clock.now() + wait)
                        .await;
                }
                (result, _) => return result,
            }
        }
    }

    /// Read a `.torrent` file.
    pub async fn load_torrent_file(&self, path: &Path) -> Result<Metainfo, AppError> {
        let storage = self.env.storage.clone();
        load_torrent_file(&self.env.blocking, storage, path).await
    }

    /// Start downloading (or resume) `meta` into the folder, trying `sources` besides the tracker's peers.
    /// With `recheck`, whatever is on disk is hashed in full first. Adding a torrent already active only adds
    /// the sources.
    pub async fn add_download(
        &self,
        meta: Metainfo,
        recheck: bool,
        sources: Vec<SocketAddr>,
    ) -> Result<InfoHash, AppError> {
        let mode = if recheck {
            AddMode::Recheck
        } else {
            AddMode::Download
        };
        self.add(meta, mode, sources).await
    }
}

/// Read and parse a `.torrent` file on the blocking runner.
pub async fn load_torrent_file<B: Blocking>(
    blocking: &B,
    storage: Arc<dyn Storage>,
    path: &Path,
) -> Result<Metainfo, AppError> {
    let p = path.to_path_buf();
    let io_err = |source| AppError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = blocking
        .run(move || -> io::Result<Vec<u8>> {
            match storage.file_len(&p)? {
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
                Some(n) if n > MAX_TORRENT_FILE => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{n} bytes is too large for a .torrent file"),
                )),
                Some(_) => storage
                    .read_file(&p)?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file")),
            }
        })
        .await
        .map_err(io_err)?;
    Metainfo::from_bytes(&bytes).map_err(|source| AppError::BadTorrentFile {
        path: path.to_path_buf(),
        source,
    })
}
