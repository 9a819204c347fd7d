//! The tracker's state: swarms of peers per torrent, the catalog of published torrents, and views of both.
//!
//! Pure and deterministic: every collection is a `BTreeMap` or a sorted vector, time is handed in as
//! [`Instant`], and the only randomness (which peers to hand out) comes from the RNG the caller passes.
//! Each torrent's peers live in a compact swarm table (the `swarm` module says what a peer costs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::metainfo::{InfoHash, Metainfo, MetainfoError};
use crate::time::Instant;

use super::proto::{AnnounceExtensions, AnnounceRequest, AnnounceResponse};
use super::swarm::{peer_addr, Arrival, Swarm};
use super::Event;
use crate::bitfield::Bitfield;

/// Tunables of a [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Announce interval told to clients.
    pub interval: Duration,
    /// Minimum announce interval told to clients.
    pub min_interval: Duration,
    /// A peer not heard from for longer than this is dropped (about 2.5 intervals).
    pub peer_timeout: Duration,
    /// Peers handed out when the client does not send `numwant`.
    pub default_numwant: u32,
    /// Upper bound on peers handed out per announce.
    pub max_numwant: u32,
    /// Most torrents tracked at once (announces for new torrents beyond this are refused). The default,
    /// [`DEFAULT_MAX_TORRENTS`], takes a peer serving a library of tens of thousands of files.
    pub max_torrents: usize,
    /// Most peers registered per torrent. A newcomer to a full swarm is still answered with peers (a swarm
    /// that never lets it in must not leave it without one), but it is not registered, so no other peer
    /// learns it from the tracker; [`RegistryCounts::turned_away`] counts these announces. A place frees
    /// when a peer stops or times out.
    pub max_peers_per_torrent: usize,
    /// Most published torrents in the catalog; the default, [`DEFAULT_MAX_CATALOG`], takes a peer serving a
    /// library of tens of thousands of files (an entry costs about its metainfo, a few hundred bytes for a
    /// small file).
    pub max_catalog: usize,
    /// Largest metainfo accepted for publication, in bytes.
    pub max_metainfo_bytes: usize,
}

/// Default [`RegistryConfig::max_torrents`]: room for a few peers serving libraries of ten thousand files.
pub const DEFAULT_MAX_TORRENTS: usize = 100_000;

/// Default [`RegistryConfig::max_catalog`]: room for a few peers serving libraries of ten thousand files.
pub const DEFAULT_MAX_CATALOG: usize = 100_000;

impl RegistryConfig {
    /// The defaults with another announce interval; the peer timeout follows at 2.5 intervals.
    pub fn with_interval(interval: Duration) -> Self {
        RegistryConfig {
            interval,
            peer_timeout: interval * 5 / 2,
            ..Self::default()
        }
    }
}

impl Default for RegistryConfig {
    /// LAN-friendly defaults: 5 s interval, 1 s min interval, 12.5 s peer timeout, numwant 50 (max 200).
    fn default() -> Self {
        RegistryConfig {
            interval: Duration::from_secs(5),
            min_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_millis(12_500),
            default_numwant: 50,
            max_numwant: 200,
            max_torrents: DEFAULT_MAX_TORRENTS,
            max_peers_per_torrent: 10_000,
            max_catalog: DEFAULT_MAX_CATALOG,
            max_metainfo_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why an announce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// The tracker already tracks as many torrents as it may.
    #[error("tracker is full: at most {max} torrents")]
    TooManyTorrents {
        /// The limit.
        max: usize,
    },
}

/// Why a publication was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The bytes are not a valid metainfo.
    #[error("invalid metainfo: {0}")]
    Metainfo(#[from] MetainfoError),
    /// Another torrent is already published under this name.
    #[error("name {name:?} is already published with info hash {existing}")]
    NameConflict {
        /// The contested name.
        name: String,
        /// The info hash already published under it.
        existing: InfoHash,
        /// The info hash that was refused.
        rejected: InfoHash,
    },
    /// The catalog holds as many torrents as it may.
    #[error("catalog is full: at most {max} torrents")]
    Full {
        /// The limit.
        max: usize,
    },
    /// The metainfo is larger than allowed.
    #[error("metainfo is {len} bytes, at most {max} allowed")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Scrape numbers of one torrent (BEP 48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u64,
    /// Leechers.
    pub incomplete: u64,
    /// Completed downloads reported (`event=completed`), all time.
    pub downloaded: u64,
}

/// A published torrent as listed by the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    /// The torrent's name (`info.name`), its key in the catalog.
    pub name: String,
    /// Info hash, lower-case hex.
    pub info_hash: InfoHash,
    /// Total size in bytes.
    pub size: u64,
    /// Piece length in bytes.
    pub piece_length: u32,
    /// Number of pieces.
    pub pieces: u32,
    /// Seeders currently in the swarm.
    pub seeders: u64,
    /// Leechers currently in the swarm.
    pub leechers: u64,
    /// Completed downloads reported.
    pub completed: u64,
}

/// A node's role in the swarm view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Downloading nothing.
    Seeder,
    /// Downloading at least one torrent.
    Leecher,
}

impl Role {
    /// `"seeder"` or `"leecher"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seeder => "seeder",
            Role::Leecher => "leecher",
        }
    }
}

/// One download in progress, in the swarm view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadView {
    /// Catalog name, or the info hash in hex when the torrent is not published.
    pub name: String,
    /// Info hash, lower-case hex.
    pub info_hash: InfoHash,
    /// Bytes still missing, as last announced (known for peers of published torrents and peers that send
    /// enjambre's announce extensions).
    #[serde(default)]
    pub left: Option<u64>,
    /// Total size, when known from the catalog.
    pub size: Option<u64>,
    /// Progress in percent (0-100), when the size is known.
    pub percent: Option<f64>,
    /// Verified pieces, when the peer reported them (`pieces` announce key) or is complete.
    #[serde(default)]
    pub pieces_have: Option<u32>,
    /// Download rate in bytes per second between its last two announces.
    #[serde(default)]
    pub down_rate: u64,
}

/// One node (ip:port) in the swarm view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// `ip:port` of the node.
    pub node: String,
    /// Seeder if downloading nothing, else leecher.
    pub role: Role,
    /// Names of the torrents it has complete (`left == 0`).
    pub sharing: Vec<String>,
    /// Its downloads in progress.
    pub downloading: Vec<DownloadView>,
    /// Payload bytes it reported uploaded, summed over its torrents (this session of each).
    #[serde(default)]
    pub uploaded: u64,
    /// Payload bytes it reported downloaded, summed over its torrents.
    #[serde(default)]
    pub downloaded: u64,
    /// Download rate in bytes per second, summed over its torrents.
    #[serde(default)]
    pub down_rate: u64,
    /// Upload rate in bytes per second, summed over its torrents.
    #[serde(default)]
    pub up_rate: u64,
    /// Port of its HTTP status endpoint on the same IP, if it announced one (`status_port`).
    #[serde(default)]
    pub status_port: Option<u16>,
}

/// One torrent in the swarm view: who holds what, piece by piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    /// Catalog name, or the info hash in hex when the torrent is not published.
    pub name: String,
    /// Info hash, lower-case hex.
    pub info_hash: InfoHash,
    /// Pieces in the torrent, when known from the catalog.
    pub pieces: Option<u32>,
    /// Seeders (`left == 0`).
    pub seeders: u64,
    /// Leechers.
    pub leechers: u64,
    /// Leechers that did not report their pieces (other clients): not counted in `availability`.
    pub unreported: u64,
    /// For each piece, how many peers hold it (seeders plus reporting leechers); empty when the piece count
    /// is unknown.
    pub availability: Vec<u32>,
    /// Payload bytes its peers reported downloading, all time (while the tracker ran); counted for peers whose
    /// details the tracker keeps (the swarm module says which).
    pub bytes_moved: u64,
}

/// What [`Registry::counts`] reports. Peers are counted once per torrent they are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistryCounts {
    /// Torrents with a swarm.
    pub torrents: u64,
    /// Torrents in the catalog.
    pub published: u64,
    /// Peers with `left == 0`, over all swarms.
    pub seeders: u64,
    /// Other peers, over all swarms.
    pub leechers: u64,
    /// Completed downloads reported (`event=completed`), all torrents.
    pub completed: u64,
    /// Payload bytes peers reported downloading, all torrents (peers whose details the tracker keeps).
    pub bytes_moved: u64,
    /// Announces from peers a full swarm did not register (answered with peers all the same), since the
    /// registry was made.
    pub turned_away: u64,
}

/// Totals of the swarm view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SwarmTotals {
    /// Distinct nodes (ip:port).
    pub nodes: u64,
    /// Nodes downloading nothing.
    pub seeders: u64,
    /// Nodes downloading something.
    pub leechers: u64,
    /// Torrents with a swarm.
    pub torrents: u64,
    /// Torrents published in the catalog.
    pub published: u64,
    /// Payload bytes peers reported downloading, all torrents, all time (peers whose details are kept).
    pub bytes_moved: u64,
    /// Sum of the nodes' download rates, bytes per second.
    pub down_rate: u64,
}

/// Every node the tracker knows, across all torrents, ordered by address.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SwarmView {
    /// The nodes.
    pub nodes: Vec<NodeView>,
    /// Every torrent with a swarm or in the catalog, by name then info hash.
    #[serde(default)]
    pub files: Vec<FileView>,
    /// Totals.
    #[serde(default)]
    pub totals: SwarmTotals,
}

impl SwarmView {
    /// Render as the console monitor table `NODE (IP:PORT) | ROLE | SHARING | DOWNLOADING (%)`.
    pub fn render_table(&self) -> String {
        let header = ["NODE (IP:PORT)", "ROLE", "SHARING", "DOWNLOADING (%)"];
        let rows: Vec<[String; 4]> = self
            .nodes
            .iter()
            .map(|n| {
                let sharing = if n.sharing.is_empty() {
                    "-".to_string()
                } else {
                    n.sharing.join(", ")
                };
                let downloading = if n.downloading.is_empty() {
                    "-".to_string()
                } else {
                    n.downloading
                        .iter()
                        .map(|d| match d.percent {
                            Some(p) => format!("{} ({p:.1}%)", d.name),
                            None => format!("{} (?%)", d.name),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                [
                    n.node.clone(),
                    n.role.as_str().to_string(),
                    sharing,
                    downloading,
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: [&str; 4]| {
            let [a, b, c, d] = cells;
            let _ = writeln!(
                out,
                "{a:<wa$} | {b:<wb$} | {c:<wc$} | {d}",
                wa = widths[0],
                wb = widths[1],
                wc = widths[2]
            );
        };
        line(&mut out, header);
        let total = widths.iter().sum::<usize>() + 9;
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for row in &rows {
            line(&mut out, [&row[0], &row[1], &row[2], &row[3]]);
        }
        if rows.is_empty() {
            out.push_str("(no nodes)\n");
        }
        out
    }
}

/// The tracker registry: swarms, catalog, views. See the module docs.
#[derive(Debug, Clone)]
pub struct Registry {
    config: RegistryConfig,
    swarms: BTreeMap<InfoHash, Swarm>,
    /// Published torrents by name.
    catalog: BTreeMap<String, Metainfo>,
    /// Name of each published info hash.
    names: BTreeMap<InfoHash, String>,
    /// Announces a full swarm answered without registering the peer ([`RegistryCounts::turned_away`]).
    turned_away: u64,
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Registry {
    /// An empty registry.
    pub fn new(config: RegistryConfig) -> Self {
        Registry {
            config,
            swarms: BTreeMap::new(),
            catalog: BTreeMap::new(),
            names: BTreeMap::new(),
            turned_away: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Handle an announce from `ip` (the connection's source address; the query's `ip` is never trusted).
    /// The peer is keyed by (ip, `req.port`). Returns the swarm counts and a random sample of up to
    /// `numwant` (default / capped by the config) other peers — never the requester itself. A newcomer to
    /// a swarm of [`RegistryConfig::max_peers_per_torrent`] peers gets its sample too but is not
    /// registered (counted in [`RegistryCounts::turned_away`]); only a tracker at
    /// [`RegistryConfig::max_torrents`] refuses an announce.
    pub fn announce(
        &mut self,
        now: Instant,
        ip: IpAddr,
        req: &AnnounceRequest,
        rng: &mut impl RngCore,
    ) -> Result<AnnounceResponse, AnnounceError> {
        self.announce_ext(now, ip, req, &AnnounceExtensions::default(), rng)
    }

    /// [`Registry::announce`] with enjambre's extension keys: the reported pieces are kept (when they fit
    /// the catalog's piece count; else dropped) for the availability of [`Registry::swarm_view`], and the
    /// status port is shown there. An announce without them forgets what an earlier one said.
    pub fn announce_ext(
        &mut self,
        now: Instant,
        ip: IpAddr,
        req: &AnnounceRequest,
        ext: &AnnounceExtensions,
        rng: &mut impl RngCore,
    ) -> Result<AnnounceResponse, AnnounceError> {
        let addr = peer_addr(ip, req.port);
        let mut response = AnnounceResponse {
            interval: secs(self.config.interval).max(1),
            min_interval: secs(self.config.min_interval),
            complete: 0,
            incomplete: 0,
            peers: Vec::new(),
        };

        if req.event == Event::Stopped {
            if let Some(swarm) = self.swarms.get_mut(&req.info_hash) {
                swarm.leave(now, addr, req.uploaded, req.downloaded);
                let stats = swarm.stats();
                (response.complete, response.incomplete) = (stats.complete, stats.incomplete);
                if swarm.is_forgettable() {
                    self.swarms.remove(&req.info_hash);
                }
            }
            return Ok(response);
        }

        if !self.swarms.contains_key(&req.info_hash)
            && self.swarms.len() >= self.config.max_torrents
        {
            return Err(AnnounceError::TooManyTorrents {
                max: self.config.max_torrents,
            });
        }
        let piece_count = self
            .names
            .get(&req.info_hash)
            .and_then(|n| self.catalog.get(n))
            .map(Metainfo::piece_count);
        let pieces = match (&ext.pieces, piece_count) {
            (Some(bytes), Some(count)) if req.left > 0 => Bitfield::from_wire(bytes, count).ok(),
            _ => None,
        };
        let arrival = Arrival {
            addr,
            peer_id: req.peer_id,
            left: req.left,
            uploaded: req.uploaded,
            downloaded: req.downloaded,
            event: req.event,
            pieces,
            status_port: ext.status_port,
            report: piece_count.is_some() || ext.pieces.is_some() || ext.status_port.is_some(),
        };
        let max_peers = self.config.max_peers_per_torrent;
        let numwant = req
            .numwant
            .unwrap_or(self.config.default_numwant)
            .min(self.config.max_numwant) as usize;
        let swarm = self.swarms.entry(req.info_hash).or_default();
        swarm.expire(now, self.config.peer_timeout);
        if swarm.join(now, arrival, max_peers).is_err() {
            // Full: the newcomer is not registered, but it is answered as a member would be (it is not in
            // the swarm, so the sample cannot hand it itself).
            self.turned_away = self.turned_away.saturating_add(1);
        }
        let stats = swarm.stats();
        (response.complete, response.incomplete) = (stats.complete, stats.incomplete);
        response.peers = swarm.sample(addr, &req.peer_id, numwant, rng);
        if swarm.is_forgettable() {
            self.swarms.remove(&req.info_hash);
        }
        Ok(response)
    }

    /// Drop every peer not heard from within the peer timeout, and swarms left empty with nothing to
    /// remember. Returns how many peers were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.config.peer_timeout;
        let dropped = self
            .swarms
            .values_mut()
            .map(|s| s.expire(now, timeout))
            .sum();
        self.swarms.retain(|_, s| !s.is_forgettable());
        dropped
    }

    /// Scrape numbers for the given torrents (unknown ones report zeros), or for every torrent tracked or
    /// published when `hashes` is empty.
    pub fn scrape(&self, hashes: &[InfoHash]) -> BTreeMap<InfoHash, ScrapeStats> {
        let stats_of = |h: &InfoHash| self.swarms.get(h).map(Swarm::stats).unwrap_or_default();
        if hashes.is_empty() {
            self.swarms
                .keys()
                .chain(self.names.keys())
                .map(|h| (*h, stats_of(h)))
                .collect()
        } else {
            hashes.iter().map(|h| (*h, stats_of(h))).collect()
        }
    }

    /// Publish a metainfo in the catalog under its `info.name`. Publishing the same torrent again is a
    /// no-op; another torrent under a taken name is a [`CatalogError::NameConflict`].
    pub fn publish(&mut self, metainfo: &[u8]) -> Result<FileSummary, CatalogError> {
        let max = self.config.max_metainfo_bytes;
        if metainfo.len() > max {
            return Err(CatalogError::TooLarge {
                len: metainfo.len(),
                max,
            });
        }
        let meta = Metainfo::from_bytes(metainfo)?;
        let name = meta.info.name.clone();
        if let Some(existing) = self.catalog.get(&name) {
            if existing.info_hash == meta.info_hash {
                return Ok(self.summarize(existing));
            }
            return Err(CatalogError::NameConflict {
                name,
                existing: existing.info_hash,
                rejected: meta.info_hash,
            });
        }
        if self.catalog.len() >= self.config.max_catalog {
            return Err(CatalogError::Full {
                max: self.config.max_catalog,
            });
        }
        let summary = self.summarize(&meta);
        self.names.insert(meta.info_hash, name.clone());
        self.catalog.insert(name, meta);
        Ok(summary)
    }

    /// Take a published torrent out of the catalog (its swarm, if any, stays); returns it if it was there.
    /// The tracker uses this to roll back a publish it could not make durable.
    pub fn unpublish(&mut self, name: &str) -> Option<Metainfo> {
        let meta = self.catalog.remove(name)?;
        self.names.remove(&meta.info_hash);
        Some(meta)
    }

    fn summarize(&self, meta: &Metainfo) -> FileSummary {
        let stats = self
            .swarms
            .get(&meta.info_hash)
            .map(Swarm::stats)
            .unwrap_or_default();
        FileSummary {
            name: meta.info.name.clone(),
            info_hash: meta.info_hash,
            size: meta.total_length(),
            piece_length: meta.piece_length(),
            pieces: meta.piece_count(),
            seeders: stats.complete,
            leechers: stats.incomplete,
            completed: stats.downloaded,
        }
    }

    /// Every published torrent, by name.
    pub fn list(&self) -> Vec<FileSummary> {
        self.catalog.values().map(|m| self.summarize(m)).collect()
    }

    /// The catalog entry of `name`.
    pub fn file(&self, name: &str) -> Option<FileSummary> {
        self.catalog.get(name).map(|m| self.summarize(m))
    }

    /// The published metainfo file bytes of `name`.
    pub fn metainfo_bytes(&self, name: &str) -> Option<&[u8]> {
        self.catalog.get(name).map(|m| m.raw.as_slice())
    }

    /// The parsed published metainfo of `name`.
    pub fn metainfo(&self, name: &str) -> Option<&Metainfo> {
        self.catalog.get(name)
    }

    /// The catalog name of a published info hash.
    pub fn name_of(&self, info_hash: &InfoHash) -> Option<&str> {
        self.names.get(info_hash).map(String::as_str)
    }

    /// Number of published torrents in the catalog.
    pub fn catalog_len(&self) -> usize {
        self.catalog.len()
    }

    /// Number of torrents with a swarm.
    pub fn torrent_count(&self) -> usize {
        self.swarms.len()
    }

    /// Number of peers across all swarms.
    pub fn peer_count(&self) -> usize {
        self.swarms.values().map(Swarm::len).sum()
    }

    /// The registry's numbers at a glance (for metrics), without building a view.
    pub fn counts(&self) -> RegistryCounts {
        let mut c = RegistryCounts {
            torrents: self.swarms.len() as u64,
            published: self.catalog.len() as u64,
            turned_away: self.turned_away,
            ..RegistryCounts::default()
        };
        for swarm in self.swarms.values() {
            let stats = swarm.stats();
            c.seeders += stats.complete;
            c.leechers += stats.incomplete;
            c.completed = c.completed.saturating_add(stats.downloaded);
            c.bytes_moved = c.bytes_moved.saturating_add(swarm.bytes_moved);
        }
        c
    }

    /// Every node (ip:port) across all swarms with its role, what it shares and what it downloads
    /// (nodes by address, torrents by name), every torrent's piece availability, and totals.
    pub fn swarm_view(&self) -> SwarmView {
        let mut nodes: BTreeMap<SocketAddr, NodeView> = BTreeMap::new();
        let mut files = Vec::new();
        let mut totals = SwarmTotals {
            torrents: self.swarms.len() as u64,
            published: self.catalog.len() as u64,
            ..SwarmTotals::default()
        };
        for (hash, swarm) in &self.swarms {
            let meta = self.names.get(hash).and_then(|n| self.catalog.get(n));
            let name = meta
                .map(|m| m.info.name.clone())
                .unwrap_or_else(|| hash.to_hex());
            let size = meta.map(Metainfo::total_length);
            let piece_count = meta.map(Metainfo::piece_count);
            for member in swarm.members() {
                let node = nodes.entry(member.addr).or_insert_with(|| NodeView {
                    node: member.addr.to_string(),
                    role: Role::Seeder,
                    sharing: Vec::new(),
                    downloading: Vec::new(),
                    uploaded: 0,
                    downloaded: 0,
                    down_rate: 0,
                    up_rate: 0,
                    status_port: None,
                });
                let report = member.report;
                if let Some(r) = report {
                    node.uploaded = node.uploaded.saturating_add(r.uploaded);
                    node.downloaded = node.downloaded.saturating_add(r.downloaded);
                    node.down_rate = node.down_rate.saturating_add(r.down_rate.rate());
                    node.up_rate = node.up_rate.saturating_add(r.up_rate.rate());
                    node.status_port = node.status_port.or(r.status_port);
                }
                if member.seeder {
                    node.sharing.push(name.clone());
                } else {
                    node.role = Role::Leecher;
                    let left = report.map(|r| r.left);
                    let percent = size.zip(left).map(|(s, left)| {
                        if s == 0 {
                            100.0
                        } else {
                            s.saturating_sub(left) as f64 * 100.0 / s as f64
                        }
                    });
                    node.downloading.push(DownloadView {
                        name: name.clone(),
                        info_hash: *hash,
                        left,
                        size,
                        percent,
                        pieces_have: report.and_then(|r| r.pieces.as_ref()).map(Bitfield::count),
                        down_rate: report.map_or(0, |r| r.down_rate.rate()),
                    });
                }
            }
            totals.bytes_moved = totals.bytes_moved.saturating_add(swarm.bytes_moved);
            files.push(file_view(name, hash, piece_count, Some(swarm)));
        }
        for (name, meta) in &self.catalog {
            if !self.swarms.contains_key(&meta.info_hash) {
                files.push(file_view(
                    name.clone(),
                    &meta.info_hash,
                    Some(meta.piece_count()),
                    None,
                ));
            }
        }
        files.sort_by(|a, b| (&a.name, &a.info_hash).cmp(&(&b.name, &b.info_hash)));
        let mut nodes: Vec<NodeView> = nodes.into_values().collect();
        for n in &mut nodes {
            n.sharing.sort();
            n.downloading
                .sort_by(|a, b| (&a.name, &a.info_hash).cmp(&(&b.name, &b.info_hash)));
            totals.nodes += 1;
            match n.role {
                Role::Seeder => totals.seeders += 1,
                Role::Leecher => totals.leechers += 1,
            }
            totals.down_rate = totals.down_rate.saturating_add(n.down_rate);
        }
        SwarmView {
            nodes,
            files,
            totals,
        }
    }
}

/// The availability of one torrent: seeders hold every piece, reporting leechers the pieces they said.
fn file_view(
    name: String,
    hash: &InfoHash,
    piece_count: Option<u32>,
    swarm: Option<&Swarm>,
) -> FileView {
    let stats = swarm.map(Swarm::stats).unwrap_or_default();
    let mut availability = vec![0u32; piece_count.unwrap_or(0) as usize];
    let mut unreported = 0;
    for member in swarm.iter().flat_map(|s| s.members()) {
        if member.seeder {
            availability.iter_mut().for_each(|a| *a += 1);
        } else if let Some(pieces) = member.report.and_then(|r| r.pieces.as_ref()) {
            for i in pieces.iter_ones() {
                if let Some(a) = availability.get_mut(i as usize) {
                    *a += 1;
                }
            }
        } else {
            unreported += 1;
        }
    }
    FileView {
        name,
        info_hash: *hash,
        pieces: piece_count,
        seeders: stats.complete,
        leechers: stats.incomplete,
        unreported,
        availability,
        bytes_moved: swarm.map_or(0, |s| s.bytes_moved),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{self, FileEntry};
    use crate::tracker::proto::PeerInfo;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;

    const HASH: InfoHash = InfoHash([9; 20]);

    fn t(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    fn req(port: u16, id: u8, left: u64, event: Event) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: HASH,
            peer_id: [id; 20],
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: None,
            compact: true,
            no_peer_id: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    fn torrent(name: &str, size: u64) -> Metainfo {
        let pieces = size.div_ceil(16 * 1024) as usize;
        let files = vec![FileEntry {
            path: vec![name.to_string()],
            length: size,
        }];
        metainfo::build(name, 16 * 1024, files, vec![[1; 20]; pieces], None).expect("build")
    }

    #[test]
    fn defaults_suit_a_lan() {
        let c = RegistryConfig::default();
        assert_eq!(
            (c.interval, c.min_interval),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
        assert_eq!((c.default_numwant, c.max_numwant), (50, 200));
        assert_eq!(
            RegistryConfig::with_interval(Duration::from_secs(10)).peer_timeout,
            Duration::from_secs(25)
        );
    }

    #[test]
    fn a_library_of_ten_thousand_files_fits_the_defaults() {
        // One peer serving 10,050 files: every one is published and announced, none refused.
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        const FILES: u32 = 10_050;
        for i in 0..FILES {
            let meta = torrent(&format!("f{i:05}.bin"), 100 * 1024);
            reg.publish(&meta.raw).expect("the catalog takes it");
            let announce = AnnounceRequest {
                info_hash: meta.info_hash,
                ..req(6881, 1, 0, Event::Started)
            };
            reg.announce(t(0), ip("10.0.0.1"), &announce, &mut rng)
                .expect("the tracker tracks it");
        }
        assert_eq!(reg.catalog_len(), FILES as usize);
        assert_eq!(reg.list().len(), FILES as usize);
        assert!(reg.catalog_len() > 1_000);
    }

    #[test]
    fn peers_expire_after_a_missed_interval() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        reg.announce(
            t(0),
            ip("10.0.0.1"),
            &req(1000, 1, 10, Event::Started),
            &mut rng,
        )
        .expect("ok");
        reg.announce(
            t(10),
            ip("10.0.0.2"),
            &req(1000, 2, 10, Event::Started),
            &mut rng,
        )
        .expect("ok");
        assert_eq!(reg.expire(t(12)), 0, "still within 2.5 intervals");
        assert_eq!(reg.expire(t(13)), 1, "the silent peer is gone");
        assert_eq!(reg.scrape(&[HASH])[&HASH].incomplete, 1);
        // A peer that keeps announcing never expires.
        reg.announce(
            t(20),
            ip("10.0.0.2"),
            &req(1000, 2, 10, Event::None),
            &mut rng,
        )
        .expect("ok");
        assert_eq!(reg.expire(t(30)), 0);
        assert_eq!(reg.expire(t(40)), 1);
        assert_eq!(reg.torrent_count(), 0, "empty swarm dropped");
        assert_eq!(reg.peer_count(), 0);
    }

    #[test]
    fn seeder_counts_follow_peers_that_come_change_and_go() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        let walk = |reg: &Registry| -> Vec<(usize, usize)> {
            reg.swarms
                .values()
                .map(|s| {
                    let walked = s.members().filter(|m| m.seeder).count();
                    (s.stats().complete as usize, walked)
                })
                .collect()
        };
        // (time, port, id, left, event): join as leecher and seeder, finish, fall back, stop, go silent.
        let steps = [
            (0, 1, 1, 10, Event::Started),
            (0, 2, 2, 0, Event::Started),
            (1, 1, 1, 0, Event::Completed),
            (2, 1, 1, 0, Event::None),
            (3, 2, 2, 5, Event::None),
            (4, 3, 3, 0, Event::Started),
            (5, 3, 3, 0, Event::Stopped),
            (6, 4, 4, 0, Event::Started),
            (20, 5, 5, 1, Event::Started),
        ];
        for (secs, port, id, left, event) in steps {
            reg.announce(
                t(secs),
                ip("10.0.0.1"),
                &req(port, id, left, event),
                &mut rng,
            )
            .expect("ok");
            for (kept, counted) in walk(&reg) {
                assert_eq!(kept, counted, "after {secs} s");
            }
        }
        // At 20 s every peer but the newest went silent for longer than the timeout.
        assert_eq!(
            reg.scrape(&[])
                .values()
                .next()
                .map(|s| (s.complete, s.incomplete)),
            Some((0, 1))
        );
        reg.expire(t(60));
        // The swarm stays (it remembers a completed download), empty.
        assert_eq!(walk(&reg), vec![(0, 0)]);
    }

    #[test]
    fn stale_peers_are_not_handed_out_before_expiry_runs() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        reg.announce(
            t(0),
            ip("10.0.0.1"),
            &req(1000, 1, 10, Event::Started),
            &mut rng,
        )
        .expect("ok");
        let r = reg.announce(
            t(20),
            ip("10.0.0.2"),
            &req(1000, 2, 10, Event::Started),
            &mut rng,
        );
        assert!(r.expect("ok").peers.is_empty());
    }

    #[test]
    fn same_ip_different_ports_are_distinct_peers() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        let a = reg.announce(
            t(0),
            ip("10.0.0.1"),
            &req(6881, 1, 10, Event::Started),
            &mut rng,
        );
        assert!(
            a.expect("ok").peers.is_empty(),
            "never the requester itself"
        );
        let b = reg.announce(
            t(1),
            ip("10.0.0.1"),
            &req(6882, 2, 0, Event::Started),
            &mut rng,
        );
        let b = b.expect("ok");
        assert_eq!(
            b.peers.iter().map(|p| p.addr).collect::<Vec<_>>(),
            vec!["10.0.0.1:6881".parse().expect("a")]
        );
        assert_eq!((b.complete, b.incomplete), (1, 1));
        let a = reg.announce(
            t(2),
            ip("10.0.0.1"),
            &req(6881, 1, 10, Event::None),
            &mut rng,
        );
        let a = a.expect("ok");
        assert_eq!(
            a.peers,
            vec![PeerInfo {
                addr: "10.0.0.1:6882".parse().expect("a"),
                peer_id: None
            }]
        );
        // Re-announcing updates rather than duplicates.
        assert_eq!(reg.peer_count(), 2);
        // An IPv4-mapped IPv6 source is the same node as the IPv4 one.
        reg.announce(
            t(3),
            ip("::ffff:10.0.0.1"),
            &req(6881, 1, 10, Event::None),
            &mut rng,
        )
        .expect("ok");
        assert_eq!(reg.peer_count(), 2);
    }

    #[test]
    fn numwant_default_and_cap_and_random_sample() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        for i in 0..300u16 {
            let r = req(1000 + i, (i % 250) as u8, 5, Event::Started);
            let r = AnnounceRequest {
                peer_id: [(i % 200) as u8 + 1; 20],
                ..r
            };
            reg.announce(t(0), ip("10.0.0.1"), &r, &mut rng)
                .expect("ok");
        }
        let me = AnnounceRequest {
            peer_id: [0; 20],
            ..req(999, 0, 5, Event::Started)
        };
        let count = |reg: &mut Registry, rng: &mut ChaCha8Rng, numwant: Option<u32>| {
            let r = AnnounceRequest {
                numwant,
                ..me.clone()
            };
            let resp = reg.announce(t(1), ip("10.0.0.1"), &r, rng).expect("ok");
            let set: BTreeSet<SocketAddr> = resp.peers.iter().map(|p| p.addr).collect();
            assert_eq!(set.len(), resp.peers.len(), "no duplicates");
            assert!(
                !set.contains(&"10.0.0.1:999".parse().expect("a")),
                "never itself"
            );
            resp.peers
        };
        assert_eq!(count(&mut reg, &mut rng, None).len(), 50);
        assert_eq!(count(&mut reg, &mut rng, Some(1000)).len(), 200);
        assert_eq!(count(&mut reg, &mut rng, Some(7)).len(), 7);
        assert_eq!(count(&mut reg, &mut rng, Some(0)).len(), 0);
        // Samples differ between draws and cover the swarm; the same seed gives the same sample.
        let first = count(&mut reg, &mut rng, Some(10));
        let second = count(&mut reg, &mut rng, Some(10));
        assert_ne!(first, second);
        // 1,000 draws of 10 miss one of the 300 with odds of about 1e-12 (200 draws: about 30%).
        let mut seen = BTreeSet::new();
        for _ in 0..1000 {
            seen.extend(count(&mut reg, &mut rng, Some(10)).iter().map(|p| p.addr));
        }
        assert_eq!(seen.len(), 300);
        let mut a = reg.clone();
        let mut b = reg.clone();
        assert_eq!(
            count(&mut a, &mut self::rng(), Some(10)),
            count(&mut b, &mut self::rng(), Some(10))
        );
    }

    #[test]
    fn same_peer_id_is_never_returned_to_its_owner() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        // The same client restarted on another port: its stale entry is not handed back to it.
        reg.announce(
            t(0),
            ip("10.0.0.1"),
            &req(1000, 1, 10, Event::Started),
            &mut rng,
        )
        .expect("ok");
        let r = reg.announce(
            t(1),
            ip("10.0.0.1"),
            &req(1001, 1, 10, Event::Started),
            &mut rng,
        );
        assert!(r.expect("ok").peers.is_empty());
    }

    #[test]
    fn stopped_removes_and_completed_counts_once() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        reg.announce(
            t(0),
            ip("10.0.0.1"),
            &req(1, 1, 10, Event::Started),
            &mut rng,
        )
        .expect("ok");
        reg.announce(
            t(0),
            ip("10.0.0.2"),
            &req(1, 2, 10, Event::Started),
            &mut rng,
        )
        .expect("ok");
        reg.announce(
            t(0),
            ip("10.0.0.3"),
            &req(1, 3, 0, Event::Started),
            &mut rng,
        )
        .expect("ok");
        assert_eq!(
            reg.scrape(&[HASH])[&HASH],
            ScrapeStats {
                complete: 1,
                incomplete: 2,
                downloaded: 0
            }
        );
        reg.announce(
            t(1),
            ip("10.0.0.1"),
            &req(1, 1, 0, Event::Completed),
            &mut rng,
        )
        .expect("ok");
        reg.announce(
            t(2),
            ip("10.0.0.1"),
            &req(1, 1, 0, Event::Completed),
            &mut rng,
        )
        .expect("ok");
        assert_eq!(
            reg.scrape(&[HASH])[&HASH],
            ScrapeStats {
                complete: 2,
                incomplete: 1,
                downloaded: 1
            }
        );
        let s = reg
            .announce(
                t(3),
                ip("10.0.0.2"),
                &req(1, 2, 10, Event::Stopped),
                &mut rng,
            )
            .expect("ok");
        assert!(s.peers.is_empty());
        assert_eq!((s.complete, s.incomplete), (2, 0));
        assert_eq!(
            reg.scrape(&[HASH])[&HASH],
            ScrapeStats {
                complete: 2,
                incomplete: 0,
                downloaded: 1
            }
        );
        let other = reg.announce(
            t(4),
            ip("10.0.0.9"),
            &req(1, 9, 10, Event::Started),
            &mut rng,
        );
        let addrs: Vec<SocketAddr> = other.expect("ok").peers.iter().map(|p| p.addr).collect();
        assert!(!addrs.contains(&"10.0.0.2:1".parse().expect("a")));
        assert_eq!(addrs.len(), 2);
        // Stopping an unknown peer or torrent is harmless.
        let unknown = AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            ..req(1, 1, 0, Event::Stopped)
        };
        assert!(reg
            .announce(t(5), ip("10.0.0.1"), &unknown, &mut rng)
            .is_ok());
        assert_eq!(reg.torrent_count(), 1);
    }

    #[test]
    fn scrape_unknown_and_all() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        reg.announce(
            t(0),
            ip("10.0.0.1"),
            &req(1, 1, 0, Event::Started),
            &mut rng,
        )
        .expect("ok");
        let published = reg.publish(&torrent("a.bin", 1000).raw).expect("publish");
        let unknown = InfoHash([3; 20]);
        assert_eq!(reg.scrape(&[unknown])[&unknown], ScrapeStats::default());
        let all = reg.scrape(&[]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[&HASH].complete, 1);
        let hash = published.info_hash;
        assert_eq!(all[&hash], ScrapeStats::default());
    }

    #[test]
    fn a_newcomer_to_a_full_swarm_gets_peers_and_is_not_registered() {
        let config = RegistryConfig {
            max_peers_per_torrent: 3,
            ..RegistryConfig::default()
        };
        let mut reg = Registry::new(config);
        let mut rng = rng();
        let members = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
        for (i, a) in members.iter().enumerate() {
            let left = if i == 0 { 0 } else { 100 };
            reg.announce(
                t(0),
                ip(a),
                &req(6881, i as u8 + 1, left, Event::Started),
                &mut rng,
            )
            .expect("room for it");
        }
        let newcomer = req(6881, 9, 100, Event::Started);
        let resp = reg
            .announce(t(1), ip("10.0.0.9"), &newcomer, &mut rng)
            .expect("a full swarm still answers");
        // Every member, and not the newcomer itself.
        let handed: BTreeSet<SocketAddr> = resp.peers.iter().map(|p| p.addr).collect();
        let expected: BTreeSet<SocketAddr> = members
            .iter()
            .map(|a| SocketAddr::new(ip(a), 6881))
            .collect();
        assert_eq!(handed, expected);
        assert_eq!((resp.complete, resp.incomplete), (1, 2));
        // Not registered: the swarm still holds the three, and no member is handed the newcomer.
        assert_eq!(reg.peer_count(), 3);
        let member = reg
            .announce(
                t(1),
                ip("10.0.0.2"),
                &req(6881, 2, 100, Event::None),
                &mut rng,
            )
            .expect("a member re-announces");
        assert!(member
            .peers
            .iter()
            .all(|p| p.addr != SocketAddr::new(ip("10.0.0.9"), 6881)));
        // Each announce it makes is turned away while the swarm is full, and counted.
        reg.announce(
            t(2),
            ip("10.0.0.9"),
            &req(6881, 9, 100, Event::None),
            &mut rng,
        )
        .expect("answered again");
        assert_eq!(reg.counts().turned_away, 2);
        assert_eq!(reg.peer_count(), 3);

        // A member that stops frees its place: the newcomer's next announce registers it.
        reg.announce(
            t(3),
            ip("10.0.0.3"),
            &req(6881, 3, 100, Event::Stopped),
            &mut rng,
        )
        .expect("stopped");
        let resp = reg
            .announce(
                t(4),
                ip("10.0.0.9"),
                &req(6881, 9, 100, Event::None),
                &mut rng,
            )
            .expect("room now");
        assert_eq!(resp.peers.len(), 2);
        assert_eq!(reg.peer_count(), 3);
        assert_eq!(reg.counts().turned_away, 2);
        let member = reg
            .announce(
                t(4),
                ip("10.0.0.2"),
                &req(6881, 2, 100, Event::None),
                &mut rng,
            )
            .expect("a member re-announces");
        assert!(member
            .peers
            .iter()
            .any(|p| p.addr == SocketAddr::new(ip("10.0.0.9"), 6881)));
    }

    #[test]
    fn limits_on_torrents_and_swarm_size() {
        let config = RegistryConfig {
            max_torrents: 1,
            max_peers_per_torrent: 2,
            ..RegistryConfig::default()
        };
        let mut reg = Registry::new(config);
        let mut rng = rng();
        reg.announce(
            t(0),
            ip("10.0.0.1"),
            &req(1, 1, 0, Event::Started),
            &mut rng,
        )
        .expect("ok");
        reg.announce(
            t(0),
            ip("10.0.0.2"),
            &req(1, 2, 0, Event::Started),
            &mut rng,
        )
        .expect("ok");
        // A third peer is answered but not registered.
        reg.announce(
            t(0),
            ip("10.0.0.3"),
            &req(1, 3, 0, Event::Started),
            &mut rng,
        )
        .expect("a full swarm still answers");
        assert_eq!(reg.peer_count(), 2);
        // Known peers can still re-announce.
        assert!(reg
            .announce(t(1), ip("10.0.0.2"), &req(1, 2, 0, Event::None), &mut rng)
            .is_ok());
        assert_eq!(reg.counts().turned_away, 1);
        let other = AnnounceRequest {
            info_hash: InfoHash([4; 20]),
            ..req(1, 1, 0, Event::Started)
        };
        assert_eq!(
            reg.announce(t(0), ip("10.0.0.1"), &other, &mut rng),
            Err(AnnounceError::TooManyTorrents { max: 1 })
        );
    }

    #[test]
    fn catalog_publish_is_idempotent_and_names_are_unique() {
        let mut reg = Registry::new(RegistryConfig {
            max_catalog: 2,
            ..RegistryConfig::default()
        });
        let a = torrent("a.bin", 100_000);
        let first = reg.publish(&a.raw).expect("publish");
        assert_eq!(
            first,
            FileSummary {
                name: "a.bin".into(),
                info_hash: a.info_hash,
                size: 100_000,
                piece_length: 16 * 1024,
                pieces: 7,
                seeders: 0,
                leechers: 0,
                completed: 0,
            }
        );
        assert_eq!(reg.publish(&a.raw).expect("again"), first);
        assert_eq!(reg.list().len(), 1);
        let impostor = torrent("a.bin", 5);
        match reg.publish(&impostor.raw) {
            Err(CatalogError::NameConflict {
                name,
                existing,
                rejected,
            }) => {
                assert_eq!(
                    (name.as_str(), existing, rejected),
                    ("a.bin", a.info_hash, impostor.info_hash)
                );
            }
            other => panic!("expected conflict, got {other:?}"),
        }
        assert!(matches!(
            reg.publish(b"not a torrent"),
            Err(CatalogError::Metainfo(_))
        ));
        reg.publish(&torrent("b.bin", 10).raw).expect("publish b");
        assert!(matches!(
            reg.publish(&torrent("c.bin", 10).raw),
            Err(CatalogError::Full { max: 2 })
        ));
        assert_eq!(
            reg.list()
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            vec!["a.bin", "b.bin"]
        );
        assert_eq!(reg.metainfo_bytes("a.bin"), Some(a.raw.as_slice()));
        assert_eq!(reg.metainfo_bytes("zzz"), None);
        assert_eq!(reg.name_of(&a.info_hash), Some("a.bin"));
        // Unpublishing frees the name and a catalog slot.
        assert_eq!(
            reg.unpublish("b.bin").map(|m| m.info.name),
            Some("b.bin".into())
        );
        assert_eq!(reg.unpublish("b.bin"), None);
        assert_eq!(reg.file("b.bin"), None);
        reg.publish(&torrent("c.bin", 10).raw).expect("room again");
        assert_eq!((reg.list().len(), reg.catalog_len()), (2, 2));
        let small = RegistryConfig {
            max_metainfo_bytes: 10,
            ..RegistryConfig::default()
        };
        assert!(matches!(
            Registry::new(small).publish(&a.raw),
            Err(CatalogError::TooLarge { max: 10, .. })
        ));
    }

    #[test]
    fn catalog_listing_reports_swarm_numbers() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        let a = torrent("a.bin", 1000);
        reg.publish(&a.raw).expect("publish");
        let r = |port, id, left, event| AnnounceRequest {
            info_hash: a.info_hash,
            ..req(port, id, left, event)
        };
        reg.announce(t(0), ip("10.0.0.1"), &r(1, 1, 0, Event::Started), &mut rng)
            .expect("ok");
        reg.announce(
            t(0),
            ip("10.0.0.2"),
            &r(1, 2, 500, Event::Started),
            &mut rng,
        )
        .expect("ok");
        reg.announce(
            t(0),
            ip("10.0.0.3"),
            &r(1, 3, 0, Event::Completed),
            &mut rng,
        )
        .expect("ok");
        let f = reg.file("a.bin").expect("listed");
        assert_eq!((f.seeders, f.leechers, f.completed), (2, 1, 1));
    }

    #[test]
    fn swarm_view_roles_sharing_and_percent() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        let a = torrent("movie.mkv", 1000);
        reg.publish(&a.raw).expect("publish");
        let on_a = |port, id, left| AnnounceRequest {
            info_hash: a.info_hash,
            ..req(port, id, left, Event::None)
        };
        let unknown = InfoHash([0xcd; 20]);
        // 10.0.0.1:1 seeds movie.mkv and an unpublished torrent.
        reg.announce(t(0), ip("10.0.0.1"), &on_a(1, 1, 0), &mut rng)
            .expect("ok");
        let r = AnnounceRequest {
            info_hash: unknown,
            ..req(1, 1, 0, Event::None)
        };
        reg.announce(t(0), ip("10.0.0.1"), &r, &mut rng)
            .expect("ok");
        // 10.0.0.1:2 (same IP) downloads movie.mkv, 25% done, and the unknown torrent.
        reg.announce(t(0), ip("10.0.0.1"), &on_a(2, 2, 750), &mut rng)
            .expect("ok");
        let r = AnnounceRequest {
            info_hash: unknown,
            ..req(2, 2, 123, Event::None)
        };
        reg.announce(t(0), ip("10.0.0.1"), &r, &mut rng)
            .expect("ok");
        let view = reg.swarm_view();
        assert_eq!(view.nodes.len(), 2);
        let seeder = &view.nodes[0];
        assert_eq!(seeder.node, "10.0.0.1:1");
        assert_eq!(seeder.role, Role::Seeder);
        assert_eq!(
            seeder.sharing,
            vec![unknown.to_hex(), "movie.mkv".to_string()]
        );
        assert!(seeder.downloading.is_empty());
        let leecher = &view.nodes[1];
        assert_eq!(leecher.node, "10.0.0.1:2");
        assert_eq!(leecher.role, Role::Leecher);
        assert!(leecher.sharing.is_empty());
        assert_eq!(leecher.downloading.len(), 2);
        let unknown_dl = &leecher.downloading[0];
        assert_eq!(
            (unknown_dl.name.clone(), unknown_dl.size, unknown_dl.percent),
            (unknown.to_hex(), None, None)
        );
        let movie = &leecher.downloading[1];
        assert_eq!(
            (movie.name.as_str(), movie.size, movie.percent),
            ("movie.mkv", Some(1000), Some(25.0))
        );
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["nodes"][1]["role"], "leecher");
        assert_eq!(json["nodes"][1]["downloading"][1]["percent"], 25.0);
        let table = view.render_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NODE (IP:PORT)") && lines[0].contains("| ROLE"));
        assert!(lines[0].ends_with("| DOWNLOADING (%)"));
        assert!(
            lines[2].starts_with("10.0.0.1:1")
                && lines[2].contains("seeder")
                && lines[2].contains("movie.mkv")
        );
        assert!(lines[3].contains("leecher") && lines[3].ends_with("movie.mkv (25.0%)"));
        assert!(SwarmView::default().render_table().contains("(no nodes)"));
    }

    #[test]
    fn swarm_view_availability_rates_and_totals() {
        let mut reg = Registry::new(RegistryConfig::default());
        let mut rng = rng();
        // 10 pieces of 16 KiB (the last one short).
        let a = torrent("film.bin", 9 * 16 * 1024 + 100);
        reg.publish(&a.raw).expect("publish");
        reg.publish(&torrent("idle.bin", 10).raw).expect("publish");
        let on_a = |port, id, left, uploaded, downloaded| AnnounceRequest {
            info_hash: a.info_hash,
            uploaded,
            downloaded,
            ..req(port, id, left, Event::None)
        };
        let pieces = |bytes: &[u8]| AnnounceExtensions {
            pieces: Some(bytes.to_vec()),
            status_port: Some(9000),
        };
        let none = AnnounceExtensions::default();
        // A seeder, a leecher holding pieces 0, 1 and 9, one holding piece 1, and a foreign leecher.
        let seed = on_a(1, 1, 0, 0, 0);
        reg.announce_ext(t(0), ip("10.0.0.1"), &seed, &none, &mut rng)
            .expect("ok");
        let l2 = on_a(2, 2, 1000, 0, 0);
        reg.announce_ext(t(0), ip("10.0.0.2"), &l2, &pieces(&[0xc0, 0x40]), &mut rng)
            .expect("ok");
        let l3 = on_a(3, 3, 1000, 0, 0);
        reg.announce_ext(t(0), ip("10.0.0.3"), &l3, &pieces(&[0x40, 0x00]), &mut rng)
            .expect("ok");
        let l4 = on_a(4, 4, 1000, 0, 0);
        reg.announce(t(0), ip("10.0.0.4"), &l4, &mut rng)
            .expect("ok");
        let view = reg.swarm_view();
        let film = view
            .files
            .iter()
            .find(|f| f.name == "film.bin")
            .expect("film");
        assert_eq!(film.pieces, Some(10));
        assert_eq!(film.availability, vec![2, 3, 1, 1, 1, 1, 1, 1, 1, 2]);
        assert_eq!((film.seeders, film.leechers, film.unreported), (1, 3, 1));
        let idle = view
            .files
            .iter()
            .find(|f| f.name == "idle.bin")
            .expect("idle");
        assert_eq!((idle.pieces, idle.availability.clone()), (Some(1), vec![0]));
        assert_eq!(view.nodes[1].downloading[0].pieces_have, Some(3));
        assert_eq!(view.nodes[1].status_port, Some(9000));
        assert_eq!(view.nodes[3].downloading[0].pieces_have, None);

        // A bitfield of the wrong length or with spare bits set is dropped, not trusted.
        for bad in [&[0xff][..], &[0xff, 0xff][..], &[0, 0, 0][..]] {
            reg.announce_ext(t(0), ip("10.0.0.3"), &l3, &pieces(bad), &mut rng)
                .expect("still a good announce");
            let view = reg.swarm_view();
            assert_eq!(view.nodes[2].downloading[0].pieces_have, None, "{bad:?}");
        }

        // Rates: bytes between announces at least a second apart; bytes moved add up, across a restart.
        reg.announce(t(2), ip("10.0.0.2"), &on_a(2, 2, 900, 10, 4000), &mut rng)
            .expect("ok");
        reg.announce(t(2), ip("10.0.0.1"), &on_a(1, 1, 0, 4000, 0), &mut rng)
            .expect("ok");
        let view = reg.swarm_view();
        assert_eq!((view.nodes[1].down_rate, view.nodes[1].up_rate), (2000, 5));
        assert_eq!(view.nodes[1].downloading[0].down_rate, 2000);
        assert_eq!(view.nodes[0].up_rate, 2000);
        // Half a second later: counters move, the rate waits for a full window.
        reg.announce(
            t(2) + Duration::from_millis(500),
            ip("10.0.0.2"),
            &on_a(2, 2, 800, 10, 5000),
            &mut rng,
        )
        .expect("ok");
        assert_eq!(reg.swarm_view().nodes[1].down_rate, 2000);
        // The client restarted: counters from zero again.
        reg.announce(t(4), ip("10.0.0.2"), &on_a(2, 2, 700, 0, 300), &mut rng)
            .expect("ok");
        let view = reg.swarm_view();
        assert_eq!(view.nodes[1].down_rate, 0);
        assert_eq!(view.totals.bytes_moved, 5300);
        assert_eq!(
            view.totals,
            SwarmTotals {
                nodes: 4,
                seeders: 1,
                leechers: 3,
                torrents: 1,
                published: 2,
                bytes_moved: 5300,
                down_rate: 0,
            }
        );
        // A stopped announce counts its last bytes and leaves.
        let stop = AnnounceRequest {
            event: Event::Stopped,
            ..on_a(2, 2, 700, 0, 1300)
        };
        reg.announce(t(5), ip("10.0.0.2"), &stop, &mut rng)
            .expect("ok");
        let view = reg.swarm_view();
        assert_eq!((view.totals.nodes, view.totals.bytes_moved), (3, 6300));
        let counts = reg.counts();
        assert_eq!(
            (
                counts.seeders,
                counts.leechers,
                counts.torrents,
                counts.published
            ),
            (1, 2, 1, 2)
        );
        assert_eq!(counts.bytes_moved, 6300);
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["files"][0]["availability"][0], 1);
        assert_eq!(json["totals"]["leechers"], 2);
        // Older views without the new fields still read.
        let old: SwarmView = serde_json::from_str(r#"{"nodes":[]}"#).expect("old view");
        assert!(old.files.is_empty());
    }
}
