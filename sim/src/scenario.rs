//! The scenario file format (TOML): the world, the story's events, and the expectations checked at the end.
//! `scenarios/README.md` documents every field with examples.

use enjambre_core::tracker::RegistryConfig;
use enjambre_net::byte_size::{is_piece_length, parse_byte_count};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::flow::group::{GroupSpec, Join};

/// Longest story a scenario may tell.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Largest file a scenario may declare (every simulated disk lives in memory).
const MAX_FILE_SIZE: u64 = 1 << 30;
/// Most peers a turmoil scenario may have.
const MAX_PEERS: usize = 100;
/// Most peers a flow-engine scenario may have.
pub const MAX_FLOW_PEERS: usize = 20_000;

/// Errors reading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not valid TOML or not the expected shape.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// Valid TOML that makes no sense as a story.
    #[error("scenario is inconsistent: {0}")]
    Invalid(String),
    /// A field whose value cannot work with the rest of the story.
    #[error("scenario is inconsistent: `{field}` of {owner}: {reason}")]
    BadField {
        /// The field, as spelt in the file.
        field: &'static str,
        /// Where it is: `peer NAME`, `event N (ACTION)` or `the scenario`.
        owner: String,
        /// What is wrong.
        reason: String,
    },
}

/// A duration written as `"250ms"`, `"10s"`, `"2m"` (or a bare number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

/// A byte count written as `"50MB"`, `"512KiB"`, `"1GiB"` (or a bare number of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

/// Parse `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`.
pub fn parse_span(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((t, "s"), |i| t.split_at(i));
    let value: f64 = num.trim().parse().ok()?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrNumber {
    Text(String),
    Int(u64),
    Float(f64),
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match TextOrNumber::deserialize(d)? {
            TextOrNumber::Text(t) => parse_span(&t).map(Span).ok_or_else(|| {
                de::Error::custom(format!("bad duration {t:?} (use e.g. \"250ms\", \"10s\")"))
            }),
            TextOrNumber::Int(n) => Ok(Span(Duration::from_secs(n))),
            TextOrNumber::Float(f) => Duration::try_from_secs_f64(f)
                .map(Span)
                .map_err(|_| de::Error::custom(format!("bad duration {f}"))),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match TextOrNumber::deserialize(d)? {
            TextOrNumber::Text(t) => parse_byte_count(&t).map(Size).map_err(de::Error::custom),
            TextOrNumber::Int(n) => Ok(Size(n)),
            TextOrNumber::Float(f) => Err(de::Error::custom(format!("bad size {f}"))),
        }
    }
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What the story shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (overridable with `--seed`).
    #[serde(default)]
    pub seed: u64,
    /// Longest simulated time the story may take.
    #[serde(default = "default_duration")]
    pub duration: Span,
    /// Links and simulation granularity.
    #[serde(default)]
    pub network: Network,
    /// The simulated disks.
    #[serde(default)]
    pub disk: DiskSpec,
    /// The tracker: a `[tracker]` table, or `tracker = false` for a story without one.
    #[serde(default)]
    pub tracker: TrackerSpec,
    /// The mainline DHT (BEP 5) of the peers that run it (`dht = true`).
    #[serde(default)]
    pub dht: DhtSpec,
    /// Files in the story, generated deterministically from the seed and their name.
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    /// The peers (after loading, also every member of every group).
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerSpec>,
    /// Groups of alike peers (see [`GroupSpec`]); expanded into `peers` and start/leave events on loading.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupSpec>,
    /// Faults and other happenings, by time or by condition.
    #[serde(default, rename = "event")]
    pub events: Vec<EventSpec>,
    /// What must hold at the end.
    #[serde(default)]
    pub expect: Expect,
}

fn default_duration() -> Span {
    Span(Duration::from_secs(120))
}

/// Network settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency of every link.
    #[serde(default = "default_latency")]
    pub latency: Span,
    /// Simulation step.
    #[serde(default = "default_tick")]
    pub tick: Span,
    /// Which engine runs the story: `turmoil` (default: packets, partitions, crashes with torn writes, tens
    /// of hosts) or `flow` (per-host capacities shared by flows, thousands of hosts; see [`crate::flow`]).
    #[serde(default)]
    pub model: NetworkModel,
}

/// The network model of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkModel {
    /// turmoil: packet-level, every host pair walked every tick.
    #[default]
    Turmoil,
    /// The flow-level engine in virtual time ([`crate::flow`]).
    Flow,
}

fn default_latency() -> Span {
    Span(Duration::from_millis(2))
}

fn default_tick() -> Span {
    Span(Duration::from_millis(1))
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency: default_latency(),
            tick: default_tick(),
            model: NetworkModel::default(),
        }
    }
}

/// How harsh the simulated disks are when a host crashes (every host's disk).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Probability (0 to 1) that an unsynced write reaches the disk on its own, as an OS flushing its cache
    /// would: after a crash, some data nobody synced is there anyway.
    #[serde(default)]
    pub writeback: f64,
    /// Block size of torn writes: on a crash, each unsynced write survives in part, block by block.
    #[serde(default)]
    pub torn_writes: Option<Size>,
    /// Size of every host's disk: a write that does not fit fails with "No space left on device". Enforced by
    /// the harness's sparse-file model ([`crate::disk_space`]), not by turmoil's `FsConfig::capacity`, whose
    /// accounting of unsynced writes would fill a downloading peer's disk many times too early. Unlimited
    /// when absent.
    #[serde(default)]
    pub capacity: Option<Size>,
    /// Probability (0 to 1) that a read or write fails with an I/O error, on every host (turmoil's
    /// `FsConfig::io_error_probability`).
    #[serde(default)]
    pub io_errors: f64,
}

/// Tracker settings.
#[derive(Debug, Clone)]
pub struct TrackerSpec {
    /// Whether the story has a tracker host at all (`tracker = false`: none; peers then find each other
    /// through `sources`, magnets' peer hints and peer exchange).
    pub enabled: bool,
    /// Announce interval it hands out.
    pub interval: Span,
    /// How peers announce: `http` (default) or `udp` (BEP 15). The tracker serves both; the catalog
    /// (files by name) is HTTP either way.
    pub protocol: TrackerProtocol,
    /// Most HTTP connections it serves at once (its `--max-connections`); `None`: the server's default.
    pub max_connections: Option<usize>,
    /// Most peers it registers per torrent ([`RegistryConfig::max_peers_per_torrent`]); `None`: the
    /// registry's default.
    pub max_peers: Option<usize>,
}

impl TrackerSpec {
    /// The configuration of the tracker's registry: the story's interval (the peer timeout follows) and
    /// swarm size limit.
    pub fn registry_config(&self) -> RegistryConfig {
        let config = RegistryConfig::with_interval(self.interval.0);
        RegistryConfig {
            max_peers_per_torrent: self.max_peers.unwrap_or(config.max_peers_per_torrent),
            ..config
        }
    }
}

/// The `[tracker]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackerTable {
    #[serde(default = "default_interval")]
    interval: Span,
    #[serde(default)]
    protocol: TrackerProtocol,
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default)]
    max_peers: Option<usize>,
}

impl<'de> Deserialize<'de> for TrackerSpec {
    /// `tracker = false` (or `true`), or a `[tracker]` table.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::Boolean(enabled) => Ok(TrackerSpec {
                enabled,
                ..TrackerSpec::default()
            }),
            table @ toml::Value::Table(_) => {
                let t = TrackerTable::deserialize(table).map_err(de::Error::custom)?;
                Ok(TrackerSpec {
                    enabled: true,
                    interval: t.interval,
                    protocol: t.protocol,
                    max_connections: t.max_connections,
                    max_peers: t.max_peers,
                })
            }
            other => Err(de::Error::custom(format!(
                "`tracker` is a [tracker] table or `false`, not {}",
                other.type_str()
            ))),
        }
    }
}

/// DHT settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhtSpec {
    /// The peer (with `dht = true`) every other DHT node joins through, as `--dht-bootstrap HOST:PORT`
    /// names one; its own node joins through nobody and learns the others as they query it.
    #[serde(default)]
    pub bootstrap: Option<String>,
}

/// The announce protocol of a scenario's peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerProtocol {
    /// `http://tracker:6969/announce`.
    #[default]
    Http,
    /// `udp://tracker:6969/announce` (BEP 15).
    Udp,
}

fn default_interval() -> Span {
    Span(Duration::from_secs(5))
}

impl Default for TrackerSpec {
    fn default() -> Self {
        TrackerSpec {
            enabled: true,
            interval: default_interval(),
            protocol: TrackerProtocol::default(),
            max_connections: None,
            max_peers: None,
        }
    }
}

/// A file of the story, or a folder of files shared as one multi-file torrent.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "FileFields")]
pub struct FileSpec {
    /// File (or folder) name, also its catalog name.
    pub name: String,
    /// Size in bytes; of a folder, the sum of its files'.
    pub size: Size,
    /// Piece size (default 512 KiB).
    pub piece_size: Option<Size>,
    /// Makes this a folder: its files, by path below the folder (`"a.bin"`, `"sub/b.bin"`) and size. Their
    /// sizes need not be multiples of the piece size, so pieces straddle files.
    pub files: Vec<PartSpec>,
}

/// One file of a folder ([`FileSpec::files`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSpec {
    /// Path below the folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: Size,
}

/// A `[[file]]` as written: `size` for a file, `files` (and optionally their total `size`) for a folder.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFields {
    name: String,
    #[serde(default)]
    size: Option<Size>,
    #[serde(default)]
    piece_size: Option<Size>,
    #[serde(default)]
    files: Vec<PartSpec>,
}

impl TryFrom<FileFields> for FileSpec {
    type Error = String;

    /// A file needs its size; a folder's size is the sum of its files', whose paths are safe and distinct.
    fn try_from(f: FileFields) -> Result<FileSpec, String> {
        let total = f
            .files
            .iter()
            .map(|p| p.size.0)
            .fold(0u64, u64::saturating_add);
        let size = match (f.size, f.files.is_empty()) {
            (None, true) => {
                return Err(format!(
                    "file {:?} needs a `size` (or `files`, for a folder)",
                    f.name
                ))
            }
            (Some(size), true) => size,
            (Some(size), false) if size.0 != total => {
                return Err(format!(
                    "folder {:?}: `size` {} is not the sum of its files' ({total})",
                    f.name, size.0
                ))
            }
            (_, false) => Size(total),
        };
        let mut paths = std::collections::BTreeSet::new();
        let inside = |a: &str, b: &str| b.starts_with(a) && b[a.len()..].starts_with('/');
        for p in &f.files {
            let safe = !p.path.is_empty()
                && p.path
                    .split('/')
                    .all(enjambre_core::metainfo::is_safe_component);
            let clash = f
                .files
                .iter()
                .any(|q| inside(&p.path, &q.path) || inside(&q.path, &p.path));
            if !safe || clash || !paths.insert(p.path.as_str()) {
                return Err(format!(
                    "folder {:?}: file path {:?} is not a plain relative path, or is used twice (or as a folder)",
                    f.name, p.path
                ));
            }
        }
        Ok(FileSpec {
            name: f.name,
            size,
            piece_size: f.piece_size,
            files: f.files,
        })
    }
}

impl FileSpec {
    /// The files on disk, each as (path below the download folder, size): the file itself, or every file
    /// of the folder in order. Each one's content is generated from the seed and this path.
    pub fn parts(&self) -> Vec<(String, u64)> {
        if self.files.is_empty() {
            return vec![(self.name.clone(), self.size.0)];
        }
        self.files
            .iter()
            .map(|p| (format!("{}/{}", self.name, p.path), p.size.0))
            .collect()
    }

    /// Whether this is a folder (a multi-file torrent).
    pub fn is_folder(&self) -> bool {
        !self.files.is_empty()
    }
}

/// A peer of the story.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// Host name (unique).
    pub name: String,
    /// Files it starts with, complete.
    #[serde(default)]
    pub has: Vec<String>,
    /// Files it fetches by name from the tracker's catalog.
    #[serde(default)]
    pub get: Vec<String>,
    /// Other peers it is told about directly (`--peer`, or a magnet's `x.pe` hints), besides the tracker.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Get its files from magnet links (BEP 9: info hash, name, the tracker if any, `sources` as peer
    /// hints) instead of by name from the tracker's catalog: the metainfo comes from peers.
    #[serde(default)]
    pub magnet: bool,
    /// Peer exchange (BEP 11): on when absent, as in the `peer` binary. (Every peer serves its info
    /// dictionaries to magnet users, as the binary does, whatever this says.)
    #[serde(default)]
    pub pex: Option<bool>,
    /// Run a mainline DHT node (BEP 5, `peer --dht`) on UDP beside the peer's port, joining through
    /// `[dht] bootstrap`; every torrent looks itself up and announces the peer there.
    #[serde(default)]
    pub dht: bool,
    /// Upload cap (bytes per second).
    #[serde(default)]
    pub upload_rate: Option<Size>,
    /// Download cap (bytes per second).
    #[serde(default)]
    pub download_rate: Option<Size>,
    /// Fetch pieces in order (the same as `knobs = { piece_selection = "sequential" }`).
    #[serde(default)]
    pub sequential: bool,
    /// Research knobs passed to the peer's core; unset ones keep the defaults.
    #[serde(default)]
    pub knobs: Knobs,
    /// Do not start with the story; a `start` event starts it.
    #[serde(default)]
    pub delayed: bool,
    /// Simulated time of one trip to the disk.
    #[serde(default)]
    pub disk_latency: Option<Span>,
    /// Free space on this peer's disk when it first starts (needs `[disk] capacity`): another program's data
    /// takes the rest, until a `free_disk` event deletes it.
    #[serde(default)]
    pub disk_free: Option<Size>,
}

impl PeerSpec {
    /// Whether the peer exchanges peers ([`PeerSpec::pex`], on by default).
    pub fn pex_on(&self) -> bool {
        self.pex.unwrap_or(PEX_BY_DEFAULT)
    }
}

/// Peer exchange is on in the `peer` binary, so it is on in a scenario's peers unless `pex = false`.
pub const PEX_BY_DEFAULT: bool = true;

/// Research knobs (issue 14): the real core's own configuration, set per peer, so that a story can rerun a
/// paper's experiment. Each unset knob keeps the peer's default; none adds a code path of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    /// `"rarest-first"`, `"random"` or `"sequential"`.
    #[serde(default)]
    pub piece_selection: Option<enjambre_core::picker::PieceSelection>,
    /// Upload slots (one of them optimistic unless `optimistic_unchoke = false`).
    #[serde(default)]
    pub upload_slots: Option<usize>,
    /// Whether one slot is an optimistic unchoke.
    #[serde(default)]
    pub optimistic_unchoke: Option<bool>,
    /// How often the optimistic unchoke moves on.
    #[serde(default)]
    pub optimistic_interval: Option<Span>,
    /// How often the choker re-ranks peers.
    #[serde(default)]
    pub rechoke_interval: Option<Span>,
    /// Connections per torrent.
    #[serde(default)]
    pub max_peers: Option<usize>,
    /// Most blocks requested from one peer at a time.
    #[serde(default)]
    pub request_queue: Option<usize>,
    /// Requests kept outstanding cover this long at a peer's measured rate.
    #[serde(default)]
    pub request_queue_time: Option<Span>,
    /// Send HAVE also to peers that hold the piece (`NodeConfig::send_redundant_have`).
    #[serde(default)]
    pub redundant_have: Option<bool>,
    /// Whether a complete torrent dials known peers (`NodeConfig::dial_when_complete`).
    #[serde(default)]
    pub dial_when_complete: Option<bool>,
    /// How long a HAVE may wait for another message to the same peer (`NodeConfig::have_delay`).
    #[serde(default)]
    pub have_delay: Option<Span>,
    /// Least time between two checkpoints of a torrent (`NodeConfig::checkpoint_interval`).
    #[serde(default)]
    pub checkpoint_interval: Option<Span>,
    /// Whether a seed suggests the pieces it handed out least (`NodeConfig::suggest_pieces`).
    #[serde(default)]
    pub suggest_pieces: Option<bool>,
}

impl Knobs {
    /// Apply the knobs that are set to a peer's configuration.
    pub fn apply(&self, c: &mut enjambre_core::node::NodeConfig) {
        if let Some(v) = self.piece_selection {
            c.piece_selection = v;
        }
        if let Some(v) = self.upload_slots {
            c.upload_slots = v;
        }
        if let Some(v) = self.optimistic_unchoke {
            c.optimistic_unchoke = v;
        }
        if let Some(v) = self.optimistic_interval {
            c.optimistic_interval = v.0;
        }
        if let Some(v) = self.rechoke_interval {
            c.rechoke_interval = v.0;
        }
        if let Some(v) = self.max_peers {
            c.max_peers_per_torrent = v;
        }
        if let Some(v) = self.request_queue {
            c.pipeline = v;
        }
        if let Some(v) = self.request_queue_time {
            c.request_queue_time = v.0;
        }
        if let Some(v) = self.redundant_have {
            c.send_redundant_have = v;
        }
        if let Some(v) = self.dial_when_complete {
            c.dial_when_complete = v;
        }
        if let Some(v) = self.have_delay {
            c.have_delay = v.0;
        }
        if let Some(v) = self.checkpoint_interval {
            c.checkpoint_interval = v.0;
        }
        if let Some(v) = self.suggest_pieces {
            c.suggest_pieces = v;
        }
    }
}

/// When an event fires: at a time, or when a condition first holds (plus an optional delay).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Simulated time at which it fires.
    #[serde(default)]
    pub at: Option<Span>,
    /// Condition that makes it fire.
    #[serde(default)]
    pub when: Option<Condition>,
    /// Delay after the condition (or after the previous event, with `after_previous`).
    #[serde(default)]
    pub after: Option<Span>,
    /// Fire `after` the previous event fired.
    #[serde(default)]
    pub after_previous: bool,
    /// What happens.
    pub action: Action,
    /// The peer it happens to (`crash`, `restart`, `start`, `corrupt`, `partition`, `heal`, `latency`).
    #[serde(default)]
    pub peer: Option<String>,
    /// The other side of a partition (default: every other host).
    #[serde(default)]
    pub from: Vec<String>,
    /// New latency for `latency`.
    #[serde(default)]
    pub latency: Option<Span>,
}

/// A condition on a peer's progress.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The peer watched.
    pub peer: String,
    /// Which of its downloads (default: its first `get`).
    #[serde(default)]
    pub file: Option<String>,
    /// Holds once this many pieces are checkpointed.
    #[serde(default)]
    pub pieces: Option<u32>,
    /// Holds once this percentage of pieces is checkpointed.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Holds once the download is complete.
    #[serde(default)]
    pub complete: bool,
    /// Holds once the download has stopped on a disk error (disk full, failed write); without `file`, once
    /// any of the peer's downloads has (the disk is shared).
    #[serde(default)]
    pub disk_stalled: bool,
    /// Holds right after the peer has replaced its checkpoint files this many times since it last started
    /// (any download): a crash aimed here lands between a checkpoint and whatever the peer does next.
    #[serde(default)]
    pub checkpoints: Option<u32>,
}

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Kill the peer's host: unsynced writes are lost.
    Crash,
    /// Start a crashed peer again on the same disk.
    Restart,
    /// Start a `delayed` peer.
    Start,
    /// Cut the peer off from `from` (or everyone): segments are silently dropped.
    Partition,
    /// Undo a partition (streams cut meanwhile stay dead; peers must reconnect).
    Heal,
    /// Stop the tracker.
    TrackerDown,
    /// Start the tracker again (its swarm is forgotten; the catalog is kept, as with `--state-dir`).
    TrackerUp,
    /// The peer starts serving wrong bytes.
    Corrupt,
    /// Change the peer's link latency to everyone.
    Latency,
    /// Delete the other program's data that fills the peer's disk (see `disk_free`): space returns.
    FreeDisk,
    /// The peer shuts down for good (announces `stopped`, closes its connections).
    Leave,
}

/// Expectations checked at the end of the story.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Peers that must complete every `get`.
    #[serde(default)]
    pub complete: Vec<String>,
    /// ... within this simulated time.
    #[serde(default)]
    pub within: Option<Span>,
    /// Peers that must not complete.
    #[serde(default)]
    pub incomplete: Vec<String>,
    /// First missing piece when a restarted peer resumed (its last resume).
    #[serde(default)]
    pub resume_at: BTreeMap<String, u32>,
    /// Pieces a restarted peer already held when it resumed (at least).
    #[serde(default)]
    pub resumed_at_least: BTreeMap<String, u32>,
    /// Peers each peer must have banned (by peer name); an empty list means it must ban nobody.
    #[serde(default)]
    pub banned: BTreeMap<String, Vec<String>>,
    /// Most copies of the files a peer may upload (uploaded bytes / size of what it has).
    #[serde(default)]
    pub max_upload_copies: BTreeMap<String, f64>,
    /// Most payload a peer may throw away (duplicates, late blocks, failed hashes), in percent of what it
    /// downloaded.
    #[serde(default)]
    pub max_wasted_percent: BTreeMap<String, f64>,
    /// Fewest distinct peers each peer must have received payload from (over all its downloads and boots).
    #[serde(default)]
    pub min_sources: BTreeMap<String, u32>,
    /// No checkpointed piece is fetched again after a restart.
    #[serde(default = "yes")]
    pub no_refetch: bool,
    /// Every finished file is byte-identical to its source.
    #[serde(default = "yes")]
    pub identical: bool,
    /// Peers whose download must have stopped on a disk error at least once.
    #[serde(default)]
    pub disk_stalled: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            complete: Vec::new(),
            within: None,
            incomplete: Vec::new(),
            resume_at: BTreeMap::new(),
            resumed_at_least: BTreeMap::new(),
            banned: BTreeMap::new(),
            max_upload_copies: BTreeMap::new(),
            max_wasted_percent: BTreeMap::new(),
            min_sources: BTreeMap::new(),
            no_refetch: true,
            identical: true,
            disk_stalled: Vec::new(),
        }
    }
}

impl Action {
    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Action::Crash => "crash",
            Action::Restart => "restart",
            Action::Start => "start",
            Action::Partition => "partition",
            Action::Heal => "heal",
            Action::TrackerDown => "tracker_down",
            Action::TrackerUp => "tracker_up",
            Action::Corrupt => "corrupt",
            Action::Latency => "latency",
            Action::FreeDisk => "free_disk",
            Action::Leave => "leave",
        }
    }
}

impl Scenario {
    /// Parse and check a scenario.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario = toml::from_str(text)?;
        crate::flow::group::expand(&mut s)?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.peers.is_empty() {
            return bad("the scenario has no [[peer]]".into());
        }
        if self.duration.0.is_zero() || self.duration.0 > MAX_DURATION {
            return bad("`duration` must be more than zero and at most 24h".into());
        }
        if self.network.tick.0.is_zero() || self.network.tick.0 > Duration::from_millis(100) {
            return bad("[network] `tick` must be more than zero and at most 100ms".into());
        }
        if self.network.latency.0 > Duration::from_secs(10) {
            return bad("[network] `latency` must be at most 10s".into());
        }
        let max_peers = match self.network.model {
            NetworkModel::Turmoil => MAX_PEERS,
            NetworkModel::Flow => MAX_FLOW_PEERS,
        };
        if self.peers.len() > max_peers {
            return bad(format!(
                "{} peers: at most {max_peers} (turmoil's cost grows with the cube of the hosts; \
                 `[network] model = \"flow\"` takes up to {MAX_FLOW_PEERS})",
                self.peers.len()
            ));
        }
        if !(0.0..=1.0).contains(&self.disk.writeback) {
            return bad("[disk] `writeback` must be between 0 and 1".into());
        }
        if !(0.0..=1.0).contains(&self.disk.io_errors) {
            return bad("[disk] `io_errors` must be between 0 and 1".into());
        }
        if self
            .disk
            .capacity
            .is_some_and(|c| c.0 == 0 || c.0 > 4 * MAX_FILE_SIZE)
        {
            return bad("[disk] `capacity` must be more than zero and at most 4GiB".into());
        }
        if self.disk.torn_writes.is_some_and(|b| b.0 == 0) {
            return bad("[disk] `torn_writes` must be a block size of at least 1 byte".into());
        }
        if self.tracker.interval.0 < Duration::from_secs(1) {
            return bad("[tracker] `interval` must be at least 1s".into());
        }
        if self.tracker.max_peers == Some(0) {
            return bad("[tracker] `max_peers` must be at least 1".into());
        }
        if self.tracker.max_connections == Some(0) {
            return bad("[tracker] `max_connections` must be at least 1".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &self.peers {
            if p.name == "tracker" || !names.insert(p.name.as_str()) {
                return bad(format!(
                    "peer name {:?} is used twice (or is \"tracker\")",
                    p.name
                ));
            }
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return bad(format!(
                    "peer name {:?}: use letters, digits and '-'",
                    p.name
                ));
            }
            if let Some(free) = p.disk_free {
                match self.disk.capacity {
                    None => {
                        return bad(format!(
                            "peer {}: `disk_free` needs a [disk] `capacity`",
                            p.name
                        ))
                    }
                    Some(c) if free.0 > c.0 => {
                        return bad(format!(
                            "peer {}: `disk_free` is more than the disk's capacity",
                            p.name
                        ))
                    }
                    _ => {}
                }
            }
            for (what, rate) in [
                ("upload_rate", p.upload_rate),
                ("download_rate", p.download_rate),
            ] {
                if rate.is_some_and(|r| r.0 == 0) {
                    return bad(format!("peer {}: `{what}` must be more than zero", p.name));
                }
            }
        }
        let mut files = std::collections::BTreeSet::new();
        for f in &self.files {
            if !enjambre_core::metainfo::is_safe_component(&f.name) {
                return bad(format!("file name {:?} is not a plain file name", f.name));
            }
            if f.size.0 > MAX_FILE_SIZE {
                return bad(format!(
                    "file {:?} is larger than 1GiB (simulated disks live in memory)",
                    f.name
                ));
            }
            if !files.insert(f.name.as_str()) {
                return bad(format!("file {:?} is declared twice", f.name));
            }
            if let Some(ps) = f.piece_size {
                if !is_piece_length(ps.0) {
                    return bad(format!(
                        "file {:?}: piece_size must be a power of two from 16KiB to 64MiB",
                        f.name
                    ));
                }
            }
        }
        for p in &self.peers {
            for f in p.has.iter().chain(&p.get) {
                if !files.contains(f.as_str()) {
                    return bad(format!("peer {} names unknown file {f:?}", p.name));
                }
            }
            if let Some(f) = p.get.iter().find(|f| p.has.contains(f)) {
                return bad(format!("peer {} both has and gets {f:?}", p.name));
            }
            let field = |field: &'static str, reason: &str| {
                Err(ScenarioError::BadField {
                    field,
                    owner: format!("peer {}", p.name),
                    reason: reason.to_string(),
                })
            };
            if p.magnet && p.get.is_empty() {
                return field(
                    "magnet",
                    "the peer gets nothing, so it has no magnet to open",
                );
            }
            if !self.tracker.enabled && !p.get.is_empty() && !p.magnet {
                return field(
                    "get",
                    "files by name come from the tracker's catalog and the scenario has `tracker = false`: \
                     set `magnet = true`",
                );
            }
            for s in &p.sources {
                if !names.contains(s.as_str()) || s == &p.name {
                    return bad(format!("peer {} names unknown source {s:?}", p.name));
                }
            }
        }
        self.validate_dht()?;
        let peer_known = |p: &str, what: &str| -> Result<(), ScenarioError> {
            if names.contains(p) {
                Ok(())
            } else {
                Err(ScenarioError::Invalid(format!(
                    "{what} names unknown peer {p:?}"
                )))
            }
        };
        for (i, e) in self.events.iter().enumerate() {
            let n = i + 1;
            let what = format!("event {n} ({})", e.action.name());
            if e.at.is_none() && e.when.is_none() && !e.after_previous {
                return bad(format!("{what} needs `at`, `when` or `after_previous`"));
            }
            if [e.at.is_some(), e.when.is_some(), e.after_previous]
                .iter()
                .filter(|x| **x)
                .count()
                > 1
            {
                return bad(format!(
                    "{what}: use only one of `at`, `when` and `after_previous`"
                ));
            }
            if e.after_previous && i == 0 {
                return bad(format!("{what}: `after_previous` on the first event"));
            }
            let needs_peer = !matches!(e.action, Action::TrackerDown | Action::TrackerUp);
            if !needs_peer && !self.tracker.enabled {
                return Err(ScenarioError::BadField {
                    field: "action",
                    owner: what,
                    reason: "the scenario has no tracker (`tracker = false`)".into(),
                });
            }
            match &e.peer {
                Some(p) => peer_known(p, &what)?,
                None if needs_peer => return bad(format!("{what} needs `peer`")),
                None => {}
            }
            if !needs_peer && e.peer.is_some() {
                return bad(format!("{what} takes no `peer`"));
            }
            for f in &e.from {
                peer_known(f, &what)?;
                if Some(f) == e.peer.as_ref() {
                    return bad(format!("{what}: `from` names the peer itself"));
                }
            }
            if !e.from.is_empty() && !matches!(e.action, Action::Partition | Action::Heal) {
                return bad(format!("{what}: `from` is only for partition and heal"));
            }
            if e.latency.is_some_and(|l| l.0 > Duration::from_secs(10)) {
                return bad(format!("{what}: `latency` must be at most 10s"));
            }
            if e.action == Action::FreeDisk
                && e.peer
                    .as_deref()
                    .and_then(|p| self.peer(p))
                    .is_some_and(|p| p.disk_free.is_none())
            {
                return bad(format!(
                    "{what}: peer {} has no `disk_free`, so there is nothing to free",
                    e.peer.as_deref().unwrap_or("")
                ));
            }
            if (e.action == Action::Latency) != e.latency.is_some() {
                return bad(format!(
                    "{what}: `latency` goes with (and only with) action latency"
                ));
            }
            if let Some(c) = &e.when {
                peer_known(&c.peer, &what)?;
                let spec = self.peer(&c.peer);
                match &c.file {
                    Some(f) => {
                        if !spec.is_some_and(|s| s.get.contains(f) || s.has.contains(f)) {
                            return bad(format!(
                                "{what} watches file {f:?}, which peer {} neither has nor gets",
                                c.peer
                            ));
                        }
                    }
                    None => {
                        if spec.is_some_and(|s| s.get.is_empty()) {
                            return bad(format!(
                                "{what} watches peer {}, which gets nothing (name a `file`)",
                                c.peer
                            ));
                        }
                    }
                }
                let kinds = [
                    c.pieces.is_some(),
                    c.percent.is_some(),
                    c.complete,
                    c.disk_stalled,
                    c.checkpoints.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if kinds != 1 {
                    return bad(format!(
                        "{what}: a condition needs exactly one of `pieces`, `percent`, `complete = true`, `disk_stalled = true`, `checkpoints`"
                    ));
                }
                if c.percent.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
                    return bad(format!("{what}: `percent` must be between 0 and 100"));
                }
            }
        }
        for p in self.peers.iter().filter(|p| p.delayed) {
            let started = self
                .events
                .iter()
                .any(|e| e.action == Action::Start && e.peer.as_deref() == Some(p.name.as_str()));
            if !started {
                return bad(format!(
                    "peer {} is `delayed` but no event has action \"start\" for it",
                    p.name
                ));
            }
        }
        let e = &self.expect;
        for p in e.complete.iter().chain(&e.incomplete) {
            peer_known(p, "an expectation")?;
            if self.peer(p).is_some_and(|s| s.get.is_empty()) {
                return bad(format!(
                    "expectation: peer {p} gets nothing, so it cannot complete"
                ));
            }
        }
        for p in &e.disk_stalled {
            peer_known(p, "expectation `disk_stalled`")?;
        }
        for p in e
            .resume_at
            .keys()
            .chain(e.resumed_at_least.keys())
            .chain(e.banned.keys())
            .chain(e.max_upload_copies.keys())
            .chain(e.max_wasted_percent.keys())
            .chain(e.min_sources.keys())
        {
            peer_known(p, "an expectation")?;
        }
        for p in e.banned.values().flatten() {
            peer_known(p, "expectation `banned`")?;
        }
        if let Some((p, _)) = e
            .max_upload_copies
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return bad(format!(
                "expectation `max_upload_copies` for {p} must be a number >= 0"
            ));
        }
        if let Some((p, _)) = e
            .max_wasted_percent
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return bad(format!(
                "expectation `max_wasted_percent` for {p} must be a number >= 0"
            ));
        }
        if e.within.is_some() && e.complete.is_empty() {
            return bad("expectation `within` needs `complete`".into());
        }
        Ok(())
    }

    /// `[dht] bootstrap` names a peer that runs a DHT node, and is there whenever a peer runs one.
    fn validate_dht(&self) -> Result<(), ScenarioError> {
        let bad = |reason: String| {
            Err(ScenarioError::BadField {
                field: "bootstrap",
                owner: "[dht]".into(),
                reason,
            })
        };
        match &self.dht.bootstrap {
            None if self.peers.iter().any(|p| p.dht) => bad(
                "peers run a DHT node (`dht = true`), so one of them must be the bootstrap node"
                    .into(),
            ),
            None => Ok(()),
            Some(name) => match self.peer(name) {
                None => bad(format!("names unknown peer {name:?}")),
                Some(p) if !p.dht => bad(format!(
                    "peer {name} does not run a DHT node (`dht = true`)"
                )),
                Some(p) if p.delayed => bad(format!(
                    "peer {name} is `delayed`: the bootstrap node runs from the start"
                )),
                Some(_) => Ok(()),
            },
        }
    }

    /// The spec of a file by name.
    pub fn file(&self, name: &str) -> Option<&FileSpec> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The spec of a peer by name.
    pub fn peer(&self, name: &str) -> Option<&PeerSpec> {
        self.peers.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_spans_parse() {
        let size = |text: &str| {
            Size::deserialize(toml::Value::String(text.into()))
                .map(|s| s.0)
                .map_err(|e| e.to_string())
        };
        assert_eq!(size("50MB"), Ok(50_000_000));
        assert_eq!(
            size("512K"),
            Ok(512_000),
            "K is 1000, as on the command line"
        );
        assert_eq!(size("512KiB"), Ok(524_288));
        assert_eq!(size("7"), Ok(7));
        assert!(size("5 parsecs").is_err_and(|e| e.contains("byte count")));
        assert_eq!(parse_span("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_span("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_span("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_span("-1s"), None);
        assert_eq!(parse_span("1e300s"), None);
        assert_eq!(parse_span("nan"), None);
    }

    #[test]
    fn inconsistent_scenarios_are_named() {
        let text = r#"
            name = "x"
            [[file]]
            name = "a.bin"
            size = "1MB"
            [[peer]]
            name = "p"
            get = ["b.bin"]
        "#;
        let err = Scenario::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("unknown file \"b.bin\""), "{err}");
        let err = Scenario::from_toml("name = 3").unwrap_err().to_string();
        assert!(err.contains("invalid type"), "{err}");
    }

    fn invalid(text: &str) -> String {
        match Scenario::from_toml(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_stories_are_refused_with_the_reason() {
        let base = "name = \"x\"\n[[file]]\nname = \"f\"\nsize = 10\n[[peer]]\nname = \"a\"\nhas = [\"f\"]\n[[peer]]\nname = \"b\"\nget = [\"f\"]\n";
        let cases = [
            ("[[peer]]\nname = \"c\"\ndelayed = true\n", "no event has action \"start\""),
            ("[[event]]\naction = \"crash\"\npeer = \"a\"\n", "needs `at`, `when` or `after_previous`"),
            ("[[event]]\nat = 1\nwhen = { peer = \"b\", pieces = 1 }\naction = \"crash\"\npeer = \"a\"\n", "only one of"),
            ("[[event]]\nat = 1\naction = \"crash\"\npeer = \"z\"\n", "unknown peer \"z\""),
            ("[[event]]\nat = 1\naction = \"explode\"\npeer = \"a\"\n", "unknown variant `explode`"),
            ("[[event]]\nwhen = { peer = \"b\" }\naction = \"crash\"\npeer = \"a\"\n", "exactly one of `pieces`"),
            ("[[event]]\nwhen = { peer = \"b\", percent = 120.0 }\naction = \"crash\"\npeer = \"a\"\n", "between 0 and 100"),
            ("[[event]]\nwhen = { peer = \"a\", pieces = 3 }\naction = \"crash\"\npeer = \"b\"\n", "gets nothing"),
            ("[[event]]\nat = 1\naction = \"latency\"\npeer = \"a\"\n", "`latency` goes with"),
            ("[[event]]\nat = 1\naction = \"tracker_down\"\npeer = \"a\"\n", "takes no `peer`"),
            ("[[event]]\nat = 1\naction = \"partition\"\npeer = \"a\"\nfrom = [\"a\"]\n", "names the peer itself"),
            ("[expect]\nbanned = { b = [\"q\"] }\n", "unknown peer \"q\""),
            ("[expect]\nmin_sources = { q = 1 }\n", "unknown peer \"q\""),
            ("[expect]\ncomplete = [\"a\"]\n", "gets nothing"),
            ("[expect]\nwithin = \"3s\"\n", "`within` needs `complete`"),
            ("[expect]\nmax_upload_copies = { a = -1.0 }\n", "must be a number >= 0"),
            ("[disk]\nwriteback = 2.0\n", "between 0 and 1"),
            ("[[file]]\nname = \"h\"\nsize = \"2GiB\"\n", "larger than 1GiB"),
            ("[[file]]\nname = \"h\"\nsize = -1\n", "bad size"),
            ("[[event]]\nat = 1e300\naction = \"crash\"\npeer = \"a\"\n", "bad duration"),
            ("[network]\ntick = 0\n", "`tick` must be more than zero"),
            ("[[file]]\nname = \"../etc\"\nsize = 1\n", "not a plain file name"),
            ("[[file]]\nname = \"g\"\nsize = 1\npiece_size = \"3KiB\"\n", "power of two"),
            ("[[file]]\nname = \"f\"\nsize = 1\n", "declared twice"),
            ("[[peer]]\nname = \"a\"\n", "used twice"),
            ("[[peer]]\nname = \"c d\"\n", "letters, digits"),
            ("[[peer]]\nname = \"c\"\nupload_rate = 0\n", "must be more than zero"),
            ("[[peer]]\nname = \"c\"\nhas = [\"f\"]\nget = [\"f\"]\n", "both has and gets"),
            ("bogus = 1\n", "unknown field `bogus`"),
            ("[disk]\nio_errors = 1.5\n", "`io_errors` must be between 0 and 1"),
            ("[disk]\ncapacity = 0\n", "`capacity` must be more than zero"),
            ("[[peer]]\nname = \"c\"\ndisk_free = \"1MiB\"\n", "needs a [disk] `capacity`"),
            ("[disk]\ncapacity = \"1MiB\"\n[[peer]]\nname = \"c\"\ndisk_free = \"2MiB\"\n", "more than the disk's capacity"),
            ("[[event]]\nat = 1\naction = \"free_disk\"\npeer = \"a\"\n", "nothing to free"),
            ("[expect]\ndisk_stalled = [\"q\"]\n", "unknown peer \"q\""),
            ("[[file]]\nname = \"d\"\nfiles = [{ path = \"../x\", size = 1 }]\n", "not a plain relative path"),
            ("[[file]]\nname = \"d\"\n", "needs a `size`"),
            ("[[file]]\nname = \"d\"\nfiles = [{ path = \"a\", size = 1 }, { path = \"a/b\", size = 1 }]\n", "used twice (or as a folder)"),
            ("[[file]]\nname = \"d\"\nfiles = [{ path = \"a\", size = 1 }, { path = \"a\", size = 2 }]\n", "used twice"),
            ("[[file]]\nname = \"d\"\nsize = 5\nfiles = [{ path = \"a\", size = 1 }]\n", "not the sum of its files' (1)"),
        ];
        for (extra, expected) in cases {
            let err = invalid(&format!("{base}{extra}"));
            assert!(err.contains(expected), "{extra:?}: {err}");
        }
        assert!(invalid("name = \"x\"\n").contains("no [[peer]]"));
        assert!(invalid(&format!("duration = \"soon\"\n{base}")).contains("bad duration"));
        assert!(invalid(&format!("duration = 0\n{base}")).contains("more than zero"));
    }

    /// The field a typed error names, or the whole message for other errors.
    fn bad_field(text: &str) -> (&'static str, String) {
        match Scenario::from_toml(text) {
            Err(ScenarioError::BadField { field, owner, .. }) => (field, owner),
            other => panic!("not a bad field: {other:?}"),
        }
    }

    #[test]
    fn trackerless_magnet_and_pex_fields() {
        let peers = "[[file]]\nname = \"f\"\nsize = 10\n[[peer]]\nname = \"a\"\nhas = [\"f\"]\npex = false\n[[peer]]\nname = \"b\"\nget = [\"f\"]\nsources = [\"a\"]\n";
        let s = Scenario::from_toml(&format!(
            "name = \"x\"\ntracker = false\n{peers}magnet = true\n"
        ))
        .unwrap();
        assert!(!s.tracker.enabled);
        assert!(s.peers[1].magnet);
        assert_eq!(
            s.peers.iter().map(PeerSpec::pex_on).collect::<Vec<_>>(),
            [false, true],
            "pex is on unless turned off, as in the peer binary"
        );
        let with = Scenario::from_toml(&format!("name = \"x\"\n[tracker]\ninterval = 2\n{peers}"))
            .unwrap();
        assert!(with.tracker.enabled);
        assert_eq!(with.tracker.interval.0, Duration::from_secs(2));
        assert_eq!(with.tracker.max_connections, None, "the server's default");
        let small = Scenario::from_toml(&format!(
            "name = \"x\"\n[tracker]\nmax_connections = 8\n{peers}"
        ))
        .unwrap();
        assert_eq!(small.tracker.max_connections, Some(8));
        assert!(matches!(
            Scenario::from_toml(&format!(
                "name = \"x\"\n[tracker]\nmax_connections = 0\n{peers}"
            )),
            Err(ScenarioError::Invalid(_))
        ));
        assert!(
            Scenario::from_toml(&format!("name = \"x\"\n{peers}"))
                .unwrap()
                .tracker
                .enabled
        );
        assert_eq!(
            bad_field(&format!("name = \"x\"\ntracker = false\n{peers}")),
            ("get", "peer b".to_string()),
            "files by name need the catalog"
        );
        let tracker_down = "[[event]]\nat = 1\naction = \"tracker_down\"\n";
        assert_eq!(
            bad_field(&format!(
                "name = \"x\"\ntracker = false\n{peers}magnet = true\n{tracker_down}"
            )),
            ("action", "event 1 (tracker_down)".to_string())
        );
        let idle = "[[peer]]\nname = \"c\"\nmagnet = true\n";
        assert_eq!(
            bad_field(&format!("name = \"x\"\n{peers}{idle}")),
            ("magnet", "peer c".to_string())
        );
        let dht = "dht = true\n";
        let s = Scenario::from_toml(&format!(
            "name = \"x\"\n[dht]\nbootstrap = \"b\"\n{peers}{dht}"
        ))
        .unwrap();
        assert_eq!(s.dht.bootstrap.as_deref(), Some("b"));
        assert!(s.peers[1].dht && !s.peers[0].dht);
        for (head, tail) in [
            ("", dht),
            ("[dht]\nbootstrap = \"a\"\n", dht),
            ("[dht]\nbootstrap = \"q\"\n", dht),
        ] {
            assert_eq!(
                bad_field(&format!("name = \"x\"\n{head}{peers}{tail}")),
                ("bootstrap", "[dht]".to_string()),
                "{head:?}"
            );
        }
        for (text, expected) in [
            ("tracker = 3\n", "`tracker` is a [tracker] table or `false`"),
            ("[tracker]\nbogus = 1\n", "unknown field `bogus`"),
            (
                "[tracker]\nprotocol = \"carrier-pigeon\"\n",
                "unknown variant",
            ),
        ] {
            let err = invalid(&format!("name = \"x\"\n{text}{peers}"));
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_folder_is_its_files_in_order_and_weighs_their_sum() {
        let text = "name = \"x\"\n[[file]]\nname = \"album\"\nfiles = [{ path = \"b.bin\", size = 70000 }, { path = \"sub/a.bin\", size = 0 }, { path = \"c.bin\", size = 5 }]\n[[file]]\nname = \"f.bin\"\nsize = 9\n[[peer]]\nname = \"a\"\nhas = [\"album\", \"f.bin\"]\n";
        let s = Scenario::from_toml(text).unwrap();
        let album = s.file("album").unwrap();
        assert!(album.is_folder());
        assert_eq!(album.size.0, 70005);
        assert_eq!(
            album.parts(),
            [
                ("album/b.bin".to_string(), 70000),
                ("album/sub/a.bin".to_string(), 0),
                ("album/c.bin".to_string(), 5)
            ]
        );
        let plain = s.file("f.bin").unwrap();
        assert!(!plain.is_folder());
        assert_eq!(plain.parts(), [("f.bin".to_string(), 9)]);
    }

    #[test]
    fn the_readme_example_and_every_shipped_scenario_parse() {
        let readme = include_str!("../../scenarios/README.md");
        let complete: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.starts_with("name = \"everything\""))
            .collect();
        assert_eq!(complete.len(), 1, "one complete example in the README");
        let s = Scenario::from_toml(complete[0]).unwrap();
        assert_eq!(s.events.len(), 9);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
        let mut n = 0;
        // The benchmarks of scenarios/scale/ run for minutes, so no test runs them: here they at least parse.
        for dir in [dir.to_string(), format!("{dir}/scale")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    Scenario::from_toml(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    n += 1;
                }
            }
        }
        assert!(n >= 14, "{n} scenarios");
    }
}
