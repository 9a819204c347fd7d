//! What the simulated hosts report to the runner: a timestamped log of what happened (story and trace),
//! each peer's latest progress, and invariant violations found by the harness's own audits.

use enjambre_core::dht::{DhtEvent, LookupKind};
use enjambre_core::node::{NodeEvent, TorrentError, TorrentStats};
use enjambre_core::ConnId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Simulated time.
    #[serde(serialize_with = "secs")]
    pub t: Duration,
    /// Host it happened on.
    pub host: String,
    /// Whether it belongs to the story (else only to the trace).
    pub story: bool,
    /// Human-readable text.
    pub text: String,
    /// How many times in a row this same line happened at this instant (1 = once).
    #[serde(skip_serializing_if = "is_one")]
    pub count: u32,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A trip to the disk of the watched peer (see [`World::watch`]), as the storage saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskTrip {
    /// Payload data written (not yet durable).
    Write,
    /// Payload data synced (durable).
    Sync,
    /// A checkpoint file replaced (temp file, sync, rename, folder sync).
    Checkpoint,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// A resume as the node reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResumeRecord {
    /// File name.
    pub file: String,
    /// Boot number (1 = first start).
    pub boot: u32,
    /// Pieces already held.
    pub pieces_resumed: u32,
    /// First missing piece.
    pub first_missing: Option<u32>,
    /// Simulated second at which it was ready.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    /// Pieces the last checkpoint before the crash claimed.
    pub durable_before: u32,
}

/// Something a timeline marks where it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MarkKind {
    /// A delayed peer joined.
    Start,
    /// The host was killed (unsynced writes lost).
    Crash,
    /// The host was started again on the same disk.
    Restart,
    /// Links to other hosts were cut.
    Partition,
    /// Links were repaired.
    Heal,
    /// The tracker was killed.
    TrackerDown,
    /// The tracker came back.
    TrackerUp,
    /// The peer started serving wrong bytes.
    Corrupt,
    /// The peer banned another for corrupt data.
    Banned {
        /// Host name of the banned peer.
        whom: String,
    },
    /// A download stopped on a disk error (the first time since the peer started).
    DiskStalled,
    /// Another program's data was deleted from the peer's disk: space returned.
    DiskFreed,
    /// After a restart, a download was ready again with pieces from its checkpoint.
    Resumed {
        /// File name.
        file: String,
        /// Pieces kept.
        pieces: u32,
        /// The first piece still missing.
        first_missing: Option<u32>,
    },
}

/// A timeline mark: what happened to which host, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Simulated time.
    #[serde(serialize_with = "secs")]
    pub t: Duration,
    /// Host name (`tracker` or a peer).
    pub host: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: MarkKind,
}

/// Everything known about one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerLive {
    /// Times its host started.
    pub boots: u32,
    /// Latest statistics per file name (of the current boot).
    pub stats: BTreeMap<String, TorrentStats>,
    /// Pieces in the latest durable checkpoint per file name (survives crashes).
    pub durable: BTreeMap<String, u32>,
    /// Times its checkpoint files were replaced on disk since it last started.
    pub checkpoints_replaced: u32,
    /// Resumes.
    pub resumes: Vec<ResumeRecord>,
    /// Time each file first completed.
    pub completed_at: BTreeMap<String, Duration>,
    /// SHA-1 of each finished file as read back from the peer's disk (a folder's: each of its files by
    /// path, `album/a.bin`, and a digest of those under the folder's name).
    pub digests: BTreeMap<String, [u8; 20]>,
    /// Bytes uploaded in earlier boots, per file.
    pub uploaded_before: BTreeMap<String, u64>,
    /// Bytes received in earlier boots, per file.
    pub downloaded_before: BTreeMap<String, u64>,
    /// Bytes wasted in earlier boots, per file.
    pub wasted_before: BTreeMap<String, u64>,
    /// Accepted bytes per source address in earlier boots, per file.
    pub sources_before: BTreeMap<String, BTreeMap<SocketAddr, u64>>,
    /// Peers banned in earlier boots, per file; each ban is also recorded here as it happens, so that a crash
    /// right after a ban (before the boot's stats are sampled again) does not lose it.
    pub banned_before: BTreeMap<String, BTreeSet<SocketAddr>>,
    /// When the current boot started (while up).
    pub up_since: Option<Duration>,
    /// Closed intervals during which the host ran (start, crash).
    pub up_intervals: Vec<(Duration, Duration)>,
    /// Completion over time for the timeline: (time, pieces verified, pieces in all), summed over its
    /// torrents, recorded when it changes (not while resume data is being checked).
    pub progress: Vec<(Duration, u32, u32)>,
    /// Serving wrong bytes.
    pub corrupt: bool,
    /// Times each download stopped on a disk error (all boots).
    pub disk_stalls: BTreeMap<String, u32>,
    /// Downloads whose last stop was in their preparation (before any piece), until they are tried again.
    pub stalled_preparing: BTreeSet<String>,
    /// Running (not crashed).
    pub up: bool,
    /// Pieces that failed their hash check with a single sender, per sender's host, in the current boot.
    pub blamed: BTreeMap<String, u32>,
    /// The most pieces blamed on each sender's host in any one boot.
    pub blamed_most: BTreeMap<String, u32>,
    /// Pieces as they were verified (all boots): (time, file, piece).
    pub pieces_at: Vec<(Duration, String, u32)>,
    /// Payload bytes uploaded so far over every file and boot, sampled as it changed: (time, bytes).
    pub uploads: Vec<(Duration, u64)>,
    /// Its connections as they opened and closed (all boots), for the measures' "a connected neighbour".
    pub links: Vec<Link>,
    /// The current boot's open connections: connection id → index in `links`.
    open_links: BTreeMap<ConnId, usize>,
}

/// One connection of a peer, from its handshake to its close (or to the crash that ended it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// When it opened.
    pub opened: Duration,
    /// When it closed; `None` while open.
    pub closed: Option<Duration>,
    /// The other end's IP (one host per IP).
    pub remote: IpAddr,
}

impl Link {
    /// Whether it was open at some time in `[from, to)`.
    pub fn open_during(&self, from: Duration, to: Duration) -> bool {
        self.opened < to && self.closed.is_none_or(|c| c > from)
    }
}

impl PeerLive {
    /// The host went down at `t`: its current boot ends, and every connection it had open with it.
    pub fn mark_down(&mut self, t: Duration) {
        self.up = false;
        if let Some(since) = self.up_since.take() {
            self.up_intervals.push((since, t));
        }
        for (_, i) in std::mem::take(&mut self.open_links) {
            self.links[i].closed = Some(t);
        }
    }
}

/// State shared by the runner and every host.
#[derive(Default)]
pub struct World {
    /// The log.
    pub log: Vec<Record>,
    /// Peers by name.
    pub peers: BTreeMap<String, PeerLive>,
    /// File names by info hash (hex).
    pub names: BTreeMap<String, String>,
    /// Host names by IP.
    pub hosts: BTreeMap<IpAddr, String>,
    /// Broken invariants found by audits.
    pub violations: Vec<String>,
    /// Faults and turning points, for the timeline.
    pub marks: Vec<Mark>,
    /// Whether wire-level trace lines are kept.
    pub trace: bool,
    /// The peer whose disk trips are recorded (crash sweeps aim at them).
    pub watch: Option<String>,
    /// Disk trips of the watched peer not yet stamped by the runner.
    pub trips_pending: Vec<DiskTrip>,
    /// Disk trips of the watched peer, stamped with the simulated time of the step they happened in.
    pub trips: Vec<(Duration, DiskTrip)>,
    /// Which trace lines are kept (`--trace-peer`, `--trace-piece`, `--trace-kind`).
    pub trace_filter: crate::trace_filter::TraceFilter,
    /// Host names by DHT node id (its first 8 hex digits, as KRPC summaries show it), learnt from the
    /// queries each host sends.
    pub dht_ids: BTreeMap<String, String>,
    /// Connections whose request timeouts were already told in the story (host, connection).
    timed_out: BTreeSet<(String, u64)>,
}

/// A handle to the shared world.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<World>>);

impl Shared {
    /// Lock the world (a poisoned lock is recovered: the data is plain bookkeeping).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Simulated time now (inside a host), zero outside a simulation.
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl World {
    /// Append a log line (a line repeating the previous one at the same instant only bumps its count).
    pub fn note(&mut self, t: Duration, host: &str, story: bool, text: String) {
        if !(story || self.trace) {
            return;
        }
        if let Some(last) = self.log.last_mut() {
            if last.t == t && last.host == host && last.story == story && last.text == text {
                last.count += 1;
                return;
            }
        }
        self.log.push(Record {
            t,
            host: host.to_string(),
            story,
            text,
            count: 1,
        });
    }

    /// Count a (re)start of `host` at `t`: what its previous life moved is kept aside, and the story says
    /// so. Returns the boot number (1 for the first start).
    pub fn boot(&mut self, t: Duration, host: &str) -> u32 {
        let p = self.peers.entry(host.to_string()).or_default();
        p.boots += 1;
        p.up = true;
        p.up_since = Some(t);
        // Connection ids start over with the new boot.
        for (_, i) in std::mem::take(&mut p.open_links) {
            p.links[i].closed.get_or_insert(t);
        }
        p.blamed.clear();
        p.checkpoints_replaced = 0;
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
        let text = if boot == 1 {
            "started".into()
        } else {
            format!("restarted (boot {boot})")
        };
        self.note(t, host, true, text);
        boot
    }

    /// Record a timeline mark.
    pub fn mark(&mut self, t: Duration, host: &str, kind: MarkKind) {
        self.marks.push(Mark {
            t,
            host: host.to_string(),
            kind,
        });
    }

    /// Record a peer's completion at `t` if it changed.
    pub fn progress(&mut self, t: Duration, host: &str, have: u32, total: u32) {
        let p = self.peers.entry(host.to_string()).or_default();
        if p.progress.last().map(|&(_, h, n)| (h, n)) != Some((have, total)) {
            p.progress.push((t, have, total));
        }
    }

    /// Record `host`'s upload counter (every file, every boot) at `t` if it changed.
    pub fn uploaded(&mut self, t: Duration, host: &str, bytes: u64) {
        let p = self.peers.entry(host.to_string()).or_default();
        if p.uploads.last().map(|&(_, b)| b) != Some(bytes) {
            p.uploads.push((t, bytes));
        }
    }

    /// Record a disk trip of `host` if it is the watched peer.
    pub fn disk_trip(&mut self, host: &str, trip: DiskTrip) {
        if trip == DiskTrip::Checkpoint {
            if let Some(p) = self.peers.get_mut(host) {
                p.checkpoints_replaced += 1;
            }
        }
        if self.watch.as_deref() == Some(host) {
            self.trips_pending.push(trip);
        }
    }

    /// Stamp the pending disk trips with the time of the step that just ran.
    pub fn stamp_trips(&mut self, t: Duration) {
        for trip in std::mem::take(&mut self.trips_pending) {
            self.trips.push((t, trip));
        }
    }

    /// Name of the host at `ip`, or the address.
    pub fn host_name(&self, addr: std::net::SocketAddr) -> String {
        self.hosts
            .get(&addr.ip())
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// A KRPC summary with each node id (`from=ID`, the ids in `[...]`) followed by its host's name when
    /// known, and the info hash by its file's name: `from=a5ed8c38(seeder)`, `info_hash=c0780243(f.iso)`.
    fn name_dht_ids(&self, summary: &str) -> String {
        let name_id = |id: &str| match self.dht_ids.get(id) {
            Some(host) => format!("{id}({host})"),
            None => id.to_string(),
        };
        summary
            .split(' ')
            .map(|word| {
                if let Some(id) = word.strip_prefix("from=") {
                    format!("from={}", name_id(id))
                } else if let Some(hash) = word.strip_prefix("info_hash=") {
                    match self.names.iter().find(|(hex, _)| hex.starts_with(hash)) {
                        Some((_, name)) => format!("info_hash={hash}({name})"),
                        None => word.to_string(),
                    }
                } else if let Some(list) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']'))
                {
                    let ids: Vec<String> = list
                        .split(',')
                        .filter(|id| !id.is_empty())
                        .map(name_id)
                        .collect();
                    format!("[{}]", ids.join(","))
                } else {
                    word.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `text` with every word that is the address of a host (a peer exchange's list, say) replaced by
    /// the host's name.
    fn name_addresses(&self, text: &str) -> String {
        if !text.contains(':') {
            return text.to_string();
        }
        text.split(' ')
            .map(|word| {
                let (addr, comma) = word.strip_suffix(',').map_or((word, ""), |w| (w, ","));
                match addr.parse::<SocketAddr>() {
                    Ok(a) if self.hosts.contains_key(&a.ip()) => {
                        format!("{}{comma}", self.host_name(a))
                    }
                    _ => word.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn file_name(&self, hex: &str) -> String {
        self.names
            .get(hex)
            .cloned()
            .unwrap_or_else(|| hex.chars().take(8).collect())
    }

    /// Record a DHT event of `host` at `t`: every KRPC query and answer (with `--trace`, kind `krpc`), and
    /// each lookup's outcome.
    pub fn on_dht_event(&mut self, t: Duration, host: &str, e: &DhtEvent) {
        if !self.trace {
            return;
        }
        let (remote, text) = match e {
            DhtEvent::Krpc {
                outgoing,
                peer,
                summary,
            } => {
                let arrow = if *outgoing { "->" } else { "<-" };
                if *outgoing {
                    // Our own id is what our messages say they are `from`.
                    if let Some(id) = summary.split(' ').find_map(|w| w.strip_prefix("from=")) {
                        self.dht_ids.insert(id.to_string(), host.to_string());
                    }
                }
                (
                    Some(*peer),
                    format!(
                        "{arrow} {} krpc {}",
                        self.host_name(*peer),
                        self.name_dht_ids(summary)
                    ),
                )
            }
            DhtEvent::LookupDone(r) => (
                None,
                format!(
                    "DHT {} lookup of {} done: {} peers, {} hops, {} queries ({} unanswered), announced to {} nodes",
                    match r.kind {
                        LookupKind::FindNode => "find_node",
                        LookupKind::GetPeers { .. } => "get_peers",
                    },
                    self.file_name(&r.target.to_hex()),
                    r.peers.len(),
                    r.hops,
                    r.queries,
                    r.failures,
                    r.announced
                ),
            ),
            DhtEvent::Evicted(n) => (
                Some(n.addr),
                format!("DHT contact {} stopped answering: evicted", self.host_name(n.addr)),
            ),
            DhtEvent::Malformed { from, error } => (
                Some(*from),
                format!("DHT datagram from {} dropped: {error}", self.host_name(*from)),
            ),
        };
        let remotes: Vec<SocketAddr> = remote.into_iter().collect();
        if !self
            .trace_filter
            .keeps_line(host, &remotes, "krpc", None, |a| self.host_name(a))
        {
            return;
        }
        self.note(t, host, false, text);
    }

    /// Record a node event of `host` at `t`.
    pub fn on_event(&mut self, t: Duration, host: &str, e: &NodeEvent) {
        match e {
            NodeEvent::PieceVerified { torrent, piece, .. } => {
                let file = self.file_name(&torrent.to_hex());
                let p = self.peers.entry(host.to_string()).or_default();
                p.pieces_at.push((t, file, *piece));
            }
            NodeEvent::Connected { conn, addr, .. } => {
                let p = self.peers.entry(host.to_string()).or_default();
                p.open_links.insert(*conn, p.links.len());
                p.links.push(Link {
                    opened: t,
                    closed: None,
                    remote: addr.ip(),
                });
            }
            NodeEvent::Disconnected { conn, .. } => {
                let p = self.peers.entry(host.to_string()).or_default();
                if let Some(i) = p.open_links.remove(conn) {
                    p.links[i].closed = Some(t);
                }
            }
            _ => {}
        }
        if self.trace && !self.trace_filter.keeps(host, e, |a| self.host_name(a)) {
            return;
        }
        let (story, text) = match e {
            NodeEvent::Connected {
                addr,
                outbound: true,
                ..
            } => (true, format!("connected to {}", self.host_name(*addr))),
            NodeEvent::Connected {
                addr,
                outbound: false,
                ..
            } => (
                false,
                format!("accepted a connection from {}", self.host_name(*addr)),
            ),
            NodeEvent::ConnectFailed { addr, reason } => (
                false,
                format!("could not connect to {}: {reason}", self.host_name(*addr)),
            ),
            NodeEvent::Disconnected { addr, reason, conn } => {
                self.timed_out.remove(&(host.to_string(), *conn));
                let important = !reason.is_routine();
                (
                    important,
                    format!("lost {}: {reason}", self.host_name(*addr)),
                )
            }
            NodeEvent::Checking { torrent, pieces } => (
                true,
                format!(
                    "{}: checking {pieces} pieces on disk",
                    self.file_name(&torrent.to_hex())
                ),
            ),
            NodeEvent::CheckpointDistrusted {
                torrent,
                rechecking,
            } => (
                true,
                format!(
                    "{}: checkpoint failed its spot check, rechecking {rechecking} pieces",
                    self.file_name(&torrent.to_hex())
                ),
            ),
            NodeEvent::Ready {
                torrent,
                pieces_resumed,
                first_missing,
            } => {
                let file = self.file_name(&torrent.to_hex());
                let peer = self.peers.entry(host.to_string()).or_default();
                let boot = peer.boots;
                let at = t;
                let durable_before = peer.durable.get(&file).copied().unwrap_or(0);
                let resumed = (boot > 1).then(|| MarkKind::Resumed {
                    file: file.clone(),
                    pieces: *pieces_resumed,
                    first_missing: *first_missing,
                });
                peer.resumes.push(ResumeRecord {
                    file: file.clone(),
                    boot,
                    pieces_resumed: *pieces_resumed,
                    first_missing: *first_missing,
                    at,
                    durable_before,
                });
                if let Some(kind) = resumed {
                    self.mark(t, host, kind);
                }
                let at = first_missing.map_or("nothing missing".to_string(), |p| {
                    format!("resuming at piece {p}")
                });
                (
                    true,
                    format!("{file}: ready with {pieces_resumed} pieces on disk, {at}"),
                )
            }
            NodeEvent::PieceVerified {
                torrent,
                piece,
                from,
            } => {
                let from: Vec<String> = from.iter().map(|a| self.host_name(*a)).collect();
                (
                    false,
                    format!(
                        "{}: piece {piece} verified (from {})",
                        self.file_name(&torrent.to_hex()),
                        from.join(", ")
                    ),
                )
            }
            NodeEvent::PieceFailed {
                torrent,
                piece,
                from,
            } => {
                let from: Vec<String> = from.iter().map(|a| self.host_name(*a)).collect();
                if let [sender] = from.as_slice() {
                    let p = self.peers.entry(host.to_string()).or_default();
                    let n = p.blamed.entry(sender.clone()).or_default();
                    *n += 1;
                    let n = *n;
                    let most = p.blamed_most.entry(sender.clone()).or_default();
                    *most = (*most).max(n);
                }
                (
                    true,
                    format!(
                        "{}: piece {piece} FAILED its hash check (from {}), discarded",
                        self.file_name(&torrent.to_hex()),
                        from.join(", ")
                    ),
                )
            }
            NodeEvent::MetadataReceived { torrent, size } => (
                true,
                format!(
                    "{}: metadata received ({size} bytes, matches the info hash)",
                    self.file_name(&torrent.to_hex())
                ),
            ),
            NodeEvent::MetadataFailed { torrent, from } => {
                let from: Vec<String> = from.iter().map(|a| self.host_name(*a)).collect();
                (
                    true,
                    format!(
                        "{}: metadata from {} does not match the info hash: discarded",
                        self.file_name(&torrent.to_hex()),
                        from.join(", ")
                    ),
                )
            }
            NodeEvent::Banned {
                torrent,
                addr,
                strikes,
            } => {
                let file = self.file_name(&torrent.to_hex());
                let p = self.peers.entry(host.to_string()).or_default();
                p.banned_before.entry(file).or_default().insert(*addr);
                let whom = self.host_name(*addr);
                self.mark(t, host, MarkKind::Banned { whom: whom.clone() });
                (
                    true,
                    format!("banned {whom} after {strikes} corrupt pieces"),
                )
            }
            NodeEvent::CheckpointWritten {
                torrent,
                verified,
                first_missing,
            } => {
                let file = self.file_name(&torrent.to_hex());
                self.peers
                    .entry(host.to_string())
                    .or_default()
                    .durable
                    .insert(file.clone(), *verified);
                let fm = first_missing.map_or(String::new(), |p| format!(", first missing {p}"));
                (
                    false,
                    format!("{file}: checkpoint durable with {verified} pieces{fm}"),
                )
            }
            NodeEvent::Complete { torrent } => {
                let file = self.file_name(&torrent.to_hex());
                self.peers
                    .entry(host.to_string())
                    .or_default()
                    .completed_at
                    .entry(file.clone())
                    .or_insert(t);
                (true, format!("{file}: COMPLETE"))
            }
            NodeEvent::TorrentError { torrent, error } => (
                true,
                format!("{}: error: {error}", self.file_name(&torrent.to_hex())),
            ),
            NodeEvent::DiskStalled {
                torrent,
                error,
                retry_in_ms,
            } => {
                let file = self.file_name(&torrent.to_hex());
                let p = self.peers.entry(host.to_string()).or_default();
                let stalls = p.disk_stalls.entry(file.clone()).or_default();
                *stalls += 1;
                let first_this_boot = p.up_since.is_some_and(|since| {
                    !self
                        .marks
                        .iter()
                        .any(|m| m.host == host && m.kind == MarkKind::DiskStalled && m.t >= since)
                });
                if matches!(error, TorrentError::Prepare(_)) {
                    p.stalled_preparing.insert(file.clone());
                } else {
                    p.stalled_preparing.remove(&file);
                }
                if first_this_boot {
                    self.mark(t, host, MarkKind::DiskStalled);
                }
                (
                    true,
                    format!(
                        "{file}: download STOPPED: {error}; trying again in {:.1} s",
                        *retry_in_ms as f64 / 1000.0
                    ),
                )
            }
            NodeEvent::DiskRetry { torrent, attempt } => {
                let file = self.file_name(&torrent.to_hex());
                let p = self.peers.entry(host.to_string()).or_default();
                let text = if p.stalled_preparing.remove(&file) {
                    format!("{file}: trying to prepare the download again ({attempt} failures in a row)")
                } else {
                    format!("{file}: trying the disk again (one piece first; {attempt} failures in a row)")
                };
                (true, text)
            }
            NodeEvent::TrackerReply { torrent, peers } => (
                false,
                format!(
                    "{}: tracker gave {peers} peers",
                    self.file_name(&torrent.to_hex())
                ),
            ),
            NodeEvent::TrackerError { torrent, error } => (
                false,
                format!(
                    "{}: tracker unreachable: {error}",
                    self.file_name(&torrent.to_hex())
                ),
            ),
            NodeEvent::RequestRefused { reason, .. } => {
                (false, format!("refused a request: {reason}"))
            }
            NodeEvent::RequestTimeout { addr, conn } => {
                // Told once per connection in the story (a stalled stream times out request after request).
                let first = self.timed_out.insert((host.to_string(), *conn));
                (
                    first,
                    format!(
                        "requests to {} timed out; asking others",
                        self.host_name(*addr)
                    ),
                )
            }
            NodeEvent::Wire {
                addr,
                dir,
                message,
                detail,
                ..
            } => {
                let arrow = if *dir == "in" { "<-" } else { "->" };
                (
                    false,
                    format!(
                        "{arrow} {} {message} {}",
                        self.host_name(*addr),
                        self.name_addresses(detail)
                    ),
                )
            }
        };
        self.note(t, host, story, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enjambre_core::metainfo::InfoHash;
    use enjambre_core::node::DiskError;
    use std::io;

    fn stalled(error: TorrentError) -> NodeEvent {
        NodeEvent::DiskStalled {
            torrent: InfoHash([7; 20]),
            error,
            retry_in_ms: 2000,
        }
    }

    fn retry(attempt: u32) -> NodeEvent {
        NodeEvent::DiskRetry {
            torrent: InfoHash([7; 20]),
            attempt,
        }
    }

    /// A retry says what is tried again: the preparation after a stall in it, a piece after a failed write.
    #[test]
    fn a_retry_names_the_step_that_stalled() {
        let mut w = World::default();
        w.names
            .insert(InfoHash([7; 20]).to_hex(), "data.bin".into());
        let full = || DiskError::io("writing", &io::Error::from(io::ErrorKind::StorageFull));
        let t = Duration::from_secs(1);
        w.on_event(t, "leecher", &stalled(TorrentError::Prepare(full())));
        w.on_event(t, "leecher", &retry(1));
        w.on_event(t, "leecher", &stalled(TorrentError::Write(full())));
        w.on_event(t, "leecher", &retry(2));
        let retries: Vec<&str> = w
            .log
            .iter()
            .map(|r| r.text.as_str())
            .filter(|t| t.contains("trying"))
            .filter(|t| !t.contains("STOPPED"))
            .collect();
        assert_eq!(
            retries,
            [
                "data.bin: trying to prepare the download again (1 failures in a row)",
                "data.bin: trying the disk again (one piece first; 2 failures in a row)",
            ]
        );
    }
}
