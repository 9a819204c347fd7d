//! A random story from a seed: peers, files, rates, latencies, delayed joiners and a random subset of fault
//! kinds (swarm testing: each seed turns some kinds on and leaves the others off), in a form that shrinks
//! (drop a peer, a fault, a fault kind, halve the files) and renders as a scenario TOML that `sim run` replays.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Every kind of fault a story can turn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A downloader crashes at some point of its download and restarts on the disk that survived.
    Crash,
    /// A downloader is cut off from everyone, then the partition heals.
    Partition,
    /// A peer's link latency changes.
    Latency,
    /// The tracker goes down, then comes back.
    TrackerDown,
    /// A second seeder turns corrupt.
    Corrupt,
    /// A downloader's disk is full until the other program's data is deleted.
    DiskFull,
    /// Reads and writes fail now and then.
    IoErrors,
    /// Unsynced writes survive a crash in part, block by block.
    TornWrites,
    /// Unsynced writes reach the disk on their own (an OS flushing its cache).
    Writeback,
    /// Peers join late.
    DelayedJoin,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Crash,
        FaultKind::Partition,
        FaultKind::Latency,
        FaultKind::TrackerDown,
        FaultKind::Corrupt,
        FaultKind::DiskFull,
        FaultKind::IoErrors,
        FaultKind::TornWrites,
        FaultKind::Writeback,
        FaultKind::DelayedJoin,
    ];

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Partition => "partition",
            FaultKind::Latency => "latency",
            FaultKind::TrackerDown => "tracker-down",
            FaultKind::Corrupt => "corrupt",
            FaultKind::DiskFull => "disk-full",
            FaultKind::IoErrors => "io-errors",
            FaultKind::TornWrites => "torn-writes",
            FaultKind::Writeback => "writeback",
            FaultKind::DelayedJoin => "delayed-join",
        }
    }
}

/// A file of the story, or a folder shared as one multi-file torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryFile {
    /// Name.
    pub name: String,
    /// Bytes (of a folder: the sum of its files').
    pub size: u64,
    /// Piece size.
    pub piece_size: u64,
    /// A folder's files, each a path below it and a size, in torrent order; empty for a plain file.
    #[serde(default)]
    pub parts: Vec<(String, u64)>,
}

impl StoryFile {
    /// Set a folder's size to the sum of its files'.
    pub fn resize_to_parts(&mut self) {
        if !self.parts.is_empty() {
            self.size = self.parts.iter().map(|(_, n)| n).sum();
        }
    }

    /// Cut `size` bytes into 2 to 4 files at random places (so that pieces straddle files), now and then
    /// one of them empty or in a subfolder, and make this a folder named `name`.
    fn make_folder(&mut self, name: String, d: &mut Dice) {
        let count = d.range(2, 4);
        let mut cuts: Vec<u64> = (1..count).map(|_| d.below(self.size + 1)).collect();
        if d.chance(10) {
            // An empty file.
            cuts.push(cuts[0]);
        }
        cuts.push(0);
        cuts.push(self.size);
        cuts.sort_unstable();
        self.parts = cuts
            .windows(2)
            .enumerate()
            .map(|(j, w)| {
                let path = if d.chance(25) {
                    format!("sub/part{j}.bin")
                } else {
                    format!("part{j}.bin")
                };
                (path, w[1] - w[0])
            })
            .collect();
        self.name = name;
        self.resize_to_parts();
    }
}

/// A peer of the story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryPeer {
    /// Host name.
    pub name: String,
    /// Files it starts with.
    pub has: Vec<String>,
    /// Files it fetches.
    pub get: Vec<String>,
    /// Upload cap, bytes per second.
    pub upload_rate: u64,
    /// Download cap, bytes per second.
    pub download_rate: Option<u64>,
    /// Joins this many milliseconds in (a `start` event).
    pub join_ms: Option<u64>,
    /// Milliseconds per disk trip.
    pub disk_latency_ms: u64,
    /// Free space when it starts (the disk-full fault).
    pub disk_free: Option<u64>,
}

/// One fault: one or two events of the scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fault {
    /// Crash `peer` once it holds `percent`% (plus `after_ms`), restart it `down_ms` later.
    Crash {
        /// The peer.
        peer: String,
        /// Progress that triggers it.
        percent: u32,
        /// Delay after the trigger.
        after_ms: u64,
        /// Time spent down.
        down_ms: u64,
    },
    /// Crash `peer` right after it has replaced its checkpoint files `checkpoints` times, restart it
    /// `down_ms` later: aimed between a checkpoint and the peer's next disk trip (the payload sync a
    /// checkpoint written too early would be waiting for).
    CrashAfterCheckpoint {
        /// The peer.
        peer: String,
        /// Checkpoint replacements that trigger it.
        checkpoints: u32,
        /// Time spent down.
        down_ms: u64,
    },
    /// Cut `peer` off from everyone at `percent`%, heal `for_ms` later.
    Partition {
        /// The peer.
        peer: String,
        /// Progress that triggers it.
        percent: u32,
        /// How long it lasts.
        for_ms: u64,
    },
    /// At `at_ms`, `peer`'s latency becomes `latency_ms`.
    Latency {
        /// The peer.
        peer: String,
        /// When.
        at_ms: u64,
        /// New one-way latency.
        latency_ms: u64,
    },
    /// The tracker is down from `at_ms` for `for_ms`.
    TrackerDown {
        /// When.
        at_ms: u64,
        /// How long.
        for_ms: u64,
    },
    /// `peer` turns corrupt once `watch` holds `percent`%.
    Corrupt {
        /// The peer turning corrupt.
        peer: String,
        /// The downloader whose progress triggers it.
        watch: String,
        /// Progress that triggers it.
        percent: u32,
    },
    /// `peer`'s disk is freed `after_ms` after its download stalls on it.
    FreeDisk {
        /// The peer.
        peer: String,
        /// Delay after the stall.
        after_ms: u64,
    },
}

impl Fault {
    /// The kind of fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Crash { .. } | Fault::CrashAfterCheckpoint { .. } => FaultKind::Crash,
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Latency { .. } => FaultKind::Latency,
            Fault::TrackerDown { .. } => FaultKind::TrackerDown,
            Fault::Corrupt { .. } => FaultKind::Corrupt,
            Fault::FreeDisk { .. } => FaultKind::DiskFull,
        }
    }

    /// The peers it names.
    pub fn peers(&self) -> Vec<&str> {
        match self {
            Fault::Crash { peer, .. }
            | Fault::CrashAfterCheckpoint { peer, .. }
            | Fault::Partition { peer, .. }
            | Fault::Latency { peer, .. }
            | Fault::FreeDisk { peer, .. } => vec![peer],
            Fault::Corrupt { peer, watch, .. } => vec![peer, watch],
            Fault::TrackerDown { .. } => vec![],
        }
    }

    /// Events it becomes in the scenario file.
    pub fn event_count(&self) -> usize {
        match self {
            Fault::Latency { .. } | Fault::Corrupt { .. } | Fault::FreeDisk { .. } => 1,
            _ => 2,
        }
    }

    /// Worst-case time it can hold a download back, in milliseconds.
    fn delay_ms(&self) -> u64 {
        match self {
            Fault::Crash {
                after_ms, down_ms, ..
            } => after_ms + down_ms + 5_000,
            Fault::CrashAfterCheckpoint { down_ms, .. } => down_ms + 5_000,
            // A stream cut by a partition stays dead: the peer notices by its idle and request timers.
            Fault::Partition { for_ms, .. } => for_ms + 60_000,
            Fault::Latency { latency_ms, .. } => 20 * latency_ms,
            Fault::TrackerDown { for_ms, .. } => for_ms + 10_000,
            Fault::Corrupt { .. } => 15_000,
            Fault::FreeDisk { after_ms, .. } => after_ms + 35_000,
        }
    }
}

/// A generated story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Story {
    /// The seed it was generated from (also the simulation's seed).
    pub seed: u64,
    /// One-way latency of every link, milliseconds.
    pub latency_ms: u64,
    /// Files.
    pub files: Vec<StoryFile>,
    /// Peers (the first is a seeder that never fails).
    pub peers: Vec<StoryPeer>,
    /// Faults, in the order their events appear.
    pub faults: Vec<Fault>,
    /// Probability of an I/O error per disk operation.
    pub io_errors: f64,
    /// Torn-write block size.
    pub torn_writes: Option<u64>,
    /// Writeback probability.
    pub writeback: f64,
    /// Disk size of every host (the disk-full fault).
    pub capacity: Option<u64>,
}

/// The random source of a story: a seeded ChaCha8 (the same seed gives the same story everywhere).
struct Dice(ChaCha8Rng);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.next_u64() % n
        }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const KIB: u64 = 1024;
const MB: u64 = 1_000_000;
/// Mixed into the seed for the dice that turn files into folders.
const FOLDER_DICE: u64 = 0x666f_6c64_6572;

impl Story {
    /// The story of `seed`.
    pub fn generate(seed: u64) -> Story {
        let mut d = Dice(ChaCha8Rng::seed_from_u64(seed));
        let kinds: Vec<FaultKind> = FaultKind::ALL
            .iter()
            .copied()
            .filter(|_| d.chance(40))
            .collect();
        let on = |k: FaultKind| kinds.contains(&k);
        // Mostly small swarms (the simulator's cost grows with the cube of the hosts), now and then a crowd.
        let peer_count = match d.below(100) {
            0..=64 => d.range(2, 4),
            65..=94 => d.range(5, 8),
            _ => d.range(9, 30),
        } as usize;
        let crowd = peer_count > 8;
        let file_count = if crowd { 1 } else { d.range(1, 2) as usize };
        let mut files = Vec::new();
        for i in 0..file_count {
            let piece_size = *d.pick(&[16 * KIB, 32 * KIB, 64 * KIB, 256 * KIB, 512 * KIB]);
            let max_pieces = if crowd { 16 } else { 64 };
            let pieces = d.range(1, max_pieces);
            // Often a short last piece.
            let tail = if d.chance(60) { d.below(piece_size) } else { 0 };
            let size = ((pieces - 1) * piece_size + piece_size.max(1))
                .saturating_sub(tail)
                .max(1);
            files.push(StoryFile {
                name: format!("file{i}.bin"),
                size,
                piece_size,
                parts: Vec::new(),
            });
        }
        // A third of the files are folders (drawn from their own dice, so that the rest of a seed's story
        // stays what earlier versions drew).
        let mut folders = Dice(ChaCha8Rng::seed_from_u64(seed ^ FOLDER_DICE));
        for (i, f) in files.iter_mut().enumerate() {
            if folders.chance(35) {
                f.make_folder(format!("folder{i}"), &mut folders);
            }
        }
        let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        let seeders = if peer_count >= 3 && d.chance(50) {
            2
        } else {
            1
        };
        let mut peers = Vec::new();
        for i in 0..peer_count {
            let seeder = i < seeders;
            let get: Vec<String> = if seeder {
                Vec::new()
            } else {
                let mut g: Vec<String> = names.iter().filter(|_| d.chance(70)).cloned().collect();
                if g.is_empty() {
                    g.push(d.pick(&names).clone());
                }
                g
            };
            peers.push(StoryPeer {
                name: if seeder {
                    format!("seed{i}")
                } else {
                    format!("peer{i}")
                },
                has: if seeder { names.clone() } else { Vec::new() },
                get,
                upload_rate: d.range(1, 8) * MB,
                download_rate: (!seeder && d.chance(20)).then(|| d.range(1, 4) * MB / 2),
                join_ms: (!seeder && on(FaultKind::DelayedJoin) && d.chance(50))
                    .then(|| d.range(200, 5_000)),
                disk_latency_ms: *d.pick(&[1, 1, 5, 20, 50]),
                disk_free: None,
            });
        }
        let downloaders: Vec<String> = peers
            .iter()
            .filter(|p| !p.get.is_empty())
            .map(|p| p.name.clone())
            .collect();
        let mut faults = Vec::new();
        let mut capacity = None;
        for kind in &kinds {
            let times = d.range(1, 2);
            for _ in 0..times {
                let who = d.pick(&downloaders).clone();
                match kind {
                    FaultKind::Crash => {
                        // Half the crashes are aimed right after a checkpoint replacement, mostly the first
                        // of a boot: with one checkpoint in flight at a time, each later one claims only
                        // pieces the previous one's sync covered, so the first is where a checkpoint written
                        // before its data is synced shows. The rest land at some progress, a little after
                        // a checkpoint became durable.
                        // (Draws in the order earlier versions made them, so that a seed keeps its story.)
                        if d.chance(50) {
                            let checkpoints = *d.pick(&[1, 1, 1, 2, 3]);
                            faults.push(Fault::CrashAfterCheckpoint {
                                peer: who,
                                checkpoints,
                                down_ms: d.range(200, 3_000),
                            })
                        } else {
                            let after_ms = *d.pick(&[0, 10, 100, 300]);
                            faults.push(Fault::Crash {
                                peer: who,
                                percent: d.range(5, 95) as u32,
                                after_ms,
                                down_ms: d.range(200, 3_000),
                            })
                        }
                    }
                    FaultKind::Partition => faults.push(Fault::Partition {
                        peer: who,
                        percent: d.range(5, 90) as u32,
                        for_ms: d.range(500, 8_000),
                    }),
                    FaultKind::Latency => {
                        let peer = d.pick(&peers).name.clone();
                        faults.push(Fault::Latency {
                            peer,
                            at_ms: d.range(100, 5_000),
                            latency_ms: d.range(1, 150),
                        })
                    }
                    FaultKind::TrackerDown => faults.push(Fault::TrackerDown {
                        at_ms: d.range(100, 5_000),
                        for_ms: d.range(500, 10_000),
                    }),
                    FaultKind::Corrupt
                        if seeders >= 2
                            && !faults.iter().any(|f| matches!(f, Fault::Corrupt { .. })) =>
                    {
                        faults.push(Fault::Corrupt {
                            peer: peers[1].name.clone(),
                            watch: who,
                            percent: d.range(0, 80) as u32,
                        });
                    }
                    FaultKind::DiskFull => {
                        let total: u64 = files.iter().map(|f| f.size).sum();
                        capacity = Some(4 * total + 64 * MB);
                        let p = peers.iter_mut().find(|p| p.name == who);
                        if let Some(p) = p.filter(|p| p.disk_free.is_none()) {
                            let need: u64 = files
                                .iter()
                                .filter(|f| p.get.contains(&f.name))
                                .map(|f| f.size)
                                .sum();
                            p.disk_free = Some(need / 2);
                            faults.push(Fault::FreeDisk {
                                peer: who,
                                after_ms: d.range(100, 3_000),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        Story {
            seed,
            latency_ms: *d.pick(&[1, 2, 5, 20, 80]),
            files,
            peers,
            faults,
            io_errors: if on(FaultKind::IoErrors) {
                *d.pick(&[0.001, 0.005, 0.02])
            } else {
                0.0
            },
            torn_writes: on(FaultKind::TornWrites).then(|| *d.pick(&[512, 4096])),
            writeback: if on(FaultKind::Writeback) {
                *d.pick(&[0.1, 0.5])
            } else {
                0.0
            },
            capacity,
        }
    }

    /// The fault kinds this story turns on (what its faults and disk settings use).
    pub fn kinds(&self) -> Vec<FaultKind> {
        let mut k: Vec<FaultKind> = self.faults.iter().map(Fault::kind).collect();
        if self.io_errors > 0.0 {
            k.push(FaultKind::IoErrors);
        }
        if self.torn_writes.is_some() {
            k.push(FaultKind::TornWrites);
        }
        if self.writeback > 0.0 {
            k.push(FaultKind::Writeback);
        }
        if self.peers.iter().any(|p| p.join_ms.is_some()) {
            k.push(FaultKind::DelayedJoin);
        }
        k.sort();
        k.dedup();
        k
    }

    /// Peers that turn corrupt.
    pub fn corrupt_peers(&self) -> Vec<&str> {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::Corrupt { peer, .. } => Some(peer.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Events in the scenario file.
    pub fn event_count(&self) -> usize {
        self.faults.iter().map(Fault::event_count).sum::<usize>()
            + self.peers.iter().filter(|p| p.join_ms.is_some()).count()
    }

    /// Whether some peer starts with every file and never turns corrupt.
    pub fn has_honest_seeder(&self) -> bool {
        let corrupt = self.corrupt_peers();
        self.peers.iter().any(|p| {
            !corrupt.contains(&p.name.as_str())
                && self.files.iter().all(|f| p.has.contains(&f.name))
        })
    }

    /// Peers that download something.
    pub fn downloaders(&self) -> Vec<&StoryPeer> {
        self.peers.iter().filter(|p| !p.get.is_empty()).collect()
    }

    /// How long every download may take, in milliseconds: each downloader's bytes at the slowest rate that
    /// can feed it (its own cap, or the slowest honest seeder's upload shared among every downloader), three
    /// times over, plus its join time and the worst-case delay of every fault, the back-offs of the disk
    /// stops injected I/O errors may cause, and a fixed 15 s of connection set-up and announce intervals.
    pub fn completion_bound_ms(&self) -> u64 {
        let corrupt = self.corrupt_peers();
        let seed_rate = self
            .peers
            .iter()
            .filter(|p| !p.has.is_empty() && !corrupt.contains(&p.name.as_str()))
            .map(|p| p.upload_rate)
            .min()
            .unwrap_or(MB);
        let sharing = self.downloaders().len().max(1) as u64;
        let faults: u64 = self.faults.iter().map(Fault::delay_ms).sum();
        // An injected I/O error stops a download only when every try of a write or of a piece's read-back
        // failed (the peer tries each `IO_TRIES` times); each stop costs at most the node's longest disk
        // back-off, `disk_retry_max` (the retry then writes one piece, which gets through). Allow three
        // times the stops expected over every write and read-back, and two more.
        let blocks: u64 = self.files.iter().map(|f| f.size.div_ceil(16 * KIB)).sum();
        let stop = self.io_errors.powi(enjambre_net::storage::IO_TRIES as i32);
        let expected = stop * 2.0 * blocks as f64 * self.peers.len() as f64;
        let longest_backoff = enjambre_core::node::NodeConfig::default().disk_retry_max;
        let io = if self.io_errors > 0.0 {
            (3.0 * expected + 2.0) as u64
                * u64::try_from(longest_backoff.as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        };
        self.downloaders()
            .iter()
            .map(|p| {
                let bytes: u64 = self
                    .files
                    .iter()
                    .filter(|f| p.get.contains(&f.name))
                    .map(|f| f.size)
                    .sum();
                let rate = (seed_rate / sharing)
                    .min(p.download_rate.unwrap_or(u64::MAX))
                    .max(1);
                3 * bytes * 1000 / rate + p.join_ms.unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
            + faults
            + io
            + 15_000
    }

    /// The scenario file of this story: every downloader must complete within the bound, honest peers
    /// ban nobody but the corrupt peer, and (by default) copies are identical and nothing checkpointed is
    /// fetched again.
    pub fn to_toml(&self, name: &str, note: &str) -> String {
        let mut t = String::new();
        for line in note.lines() {
            let _ = writeln!(t, "# {line}");
        }
        let within = self.completion_bound_ms();
        let _ = writeln!(t, "name = {name:?}");
        let _ = writeln!(
            t,
            "description = \"Generated by sim explore from seed {}\"",
            self.seed
        );
        let _ = writeln!(t, "seed = {}", self.seed);
        let _ = writeln!(t, "duration = \"{}ms\"", within + 30_000);
        let _ = writeln!(t, "\n[network]\nlatency = \"{}ms\"", self.latency_ms);
        if self.io_errors > 0.0
            || self.torn_writes.is_some()
            || self.writeback > 0.0
            || self.capacity.is_some()
        {
            let _ = writeln!(t, "\n[disk]");
            if self.writeback > 0.0 {
                let _ = writeln!(t, "writeback = {}", self.writeback);
            }
            if let Some(b) = self.torn_writes {
                let _ = writeln!(t, "torn_writes = {b}");
            }
            if let Some(c) = self.capacity {
                let _ = writeln!(t, "capacity = {c}");
            }
            if self.io_errors > 0.0 {
                let _ = writeln!(t, "io_errors = {}", self.io_errors);
            }
        }
        for f in &self.files {
            if f.parts.is_empty() {
                let _ = writeln!(
                    t,
                    "\n[[file]]\nname = {:?}\nsize = {}\npiece_size = {}",
                    f.name, f.size, f.piece_size
                );
            } else {
                let parts: Vec<String> = f
                    .parts
                    .iter()
                    .map(|(path, size)| format!("{{ path = {path:?}, size = {size} }}"))
                    .collect();
                let _ = writeln!(
                    t,
                    "\n[[file]]\nname = {:?}\npiece_size = {}\nfiles = [{}]",
                    f.name,
                    f.piece_size,
                    parts.join(", ")
                );
            }
        }
        for p in &self.peers {
            let _ = writeln!(t, "\n[[peer]]\nname = {:?}", p.name);
            if !p.has.is_empty() {
                let _ = writeln!(t, "has = {:?}", p.has);
            }
            if !p.get.is_empty() {
                let _ = writeln!(t, "get = {:?}", p.get);
            }
            let _ = writeln!(t, "upload_rate = {}", p.upload_rate);
            if let Some(r) = p.download_rate {
                let _ = writeln!(t, "download_rate = {r}");
            }
            if p.join_ms.is_some() {
                let _ = writeln!(t, "delayed = true");
            }
            if p.disk_latency_ms != 1 {
                let _ = writeln!(t, "disk_latency = \"{}ms\"", p.disk_latency_ms);
            }
            if let Some(f) = p.disk_free {
                let _ = writeln!(t, "disk_free = {f}");
            }
        }
        for p in &self.peers {
            if let Some(ms) = p.join_ms {
                let _ = writeln!(
                    t,
                    "\n[[event]]\nat = \"{ms}ms\"\naction = \"start\"\npeer = {:?}",
                    p.name
                );
            }
        }
        for f in &self.faults {
            match f {
                Fault::Crash {
                    peer,
                    percent,
                    after_ms,
                    down_ms,
                } => {
                    let _ = writeln!(
                        t,
                        "\n[[event]]\nwhen = {{ peer = {peer:?}, percent = {percent} }}\nafter = \"{after_ms}ms\"\naction = \"crash\"\npeer = {peer:?}\n\n[[event]]\nafter_previous = true\nafter = \"{down_ms}ms\"\naction = \"restart\"\npeer = {peer:?}"
                    );
                }
                Fault::CrashAfterCheckpoint {
                    peer,
                    checkpoints,
                    down_ms,
                } => {
                    let _ = writeln!(
                        t,
                        "\n[[event]]\nwhen = {{ peer = {peer:?}, checkpoints = {checkpoints} }}\naction = \"crash\"\npeer = {peer:?}\n\n[[event]]\nafter_previous = true\nafter = \"{down_ms}ms\"\naction = \"restart\"\npeer = {peer:?}"
                    );
                }
                Fault::Partition {
                    peer,
                    percent,
                    for_ms,
                } => {
                    let _ = writeln!(
                        t,
                        "\n[[event]]\nwhen = {{ peer = {peer:?}, percent = {percent} }}\naction = \"partition\"\npeer = {peer:?}\n\n[[event]]\nafter_previous = true\nafter = \"{for_ms}ms\"\naction = \"heal\"\npeer = {peer:?}"
                    );
                }
                Fault::Latency {
                    peer,
                    at_ms,
                    latency_ms,
                } => {
                    let _ = writeln!(
                        t,
                        "\n[[event]]\nat = \"{at_ms}ms\"\naction = \"latency\"\npeer = {peer:?}\nlatency = \"{latency_ms}ms\""
                    );
                }
                Fault::TrackerDown { at_ms, for_ms } => {
                    let _ = writeln!(
                        t,
                        "\n[[event]]\nat = \"{at_ms}ms\"\naction = \"tracker_down\"\n\n[[event]]\nafter_previous = true\nafter = \"{for_ms}ms\"\naction = \"tracker_up\""
                    );
                }
                Fault::Corrupt {
                    peer,
                    watch,
                    percent,
                } => {
                    let _ = writeln!(
                        t,
                        "\n[[event]]\nwhen = {{ peer = {watch:?}, percent = {percent} }}\naction = \"corrupt\"\npeer = {peer:?}"
                    );
                }
                Fault::FreeDisk { peer, after_ms } => {
                    let _ = writeln!(
                        t,
                        "\n[[event]]\nwhen = {{ peer = {peer:?}, disk_stalled = true }}\nafter = \"{after_ms}ms\"\naction = \"free_disk\"\npeer = {peer:?}"
                    );
                }
            }
        }
        let downloaders: Vec<&str> = self.downloaders().iter().map(|p| p.name.as_str()).collect();
        let _ = writeln!(t, "\n[expect]\ncomplete = {downloaders:?}");
        let _ = writeln!(t, "within = \"{within}ms\"");
        let corrupt = self.corrupt_peers();
        if corrupt.is_empty() {
            let banned: Vec<String> = downloaders.iter().map(|n| format!("{n:?} = []")).collect();
            let _ = writeln!(t, "banned = {{ {} }}", banned.join(", "));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn every_story_is_a_valid_scenario_and_the_same_seed_gives_the_same_story_some_with_folders() {
        let mut kinds = std::collections::BTreeSet::new();
        let (mut folders, mut straddling) = (0, 0);
        for seed in 0..300 {
            let story = Story::generate(seed);
            assert_eq!(story, Story::generate(seed));
            let text = story.to_toml("s", "note");
            let scenario =
                Scenario::from_toml(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
            assert_eq!(scenario.events.len(), story.event_count(), "seed {seed}");
            assert!((2..=30).contains(&story.peers.len()));
            kinds.extend(story.kinds());
            for (f, spec) in story.files.iter().zip(&scenario.files) {
                assert_eq!((f.size, f.parts.len()), (spec.size.0, spec.files.len()));
                if !f.parts.is_empty() {
                    folders += 1;
                    // A file boundary inside a piece: some piece straddles two files.
                    let mut end = 0;
                    straddling += f.parts[..f.parts.len() - 1]
                        .iter()
                        .filter(|(_, n)| {
                            end += n;
                            end % f.piece_size != 0
                        })
                        .count();
                }
            }
        }
        assert_eq!(kinds.len(), FaultKind::ALL.len(), "kinds seen: {kinds:?}");
        assert!(folders > 50, "{folders} folders in 300 stories");
        assert!(straddling > folders, "{straddling} straddling boundaries");
    }
}
