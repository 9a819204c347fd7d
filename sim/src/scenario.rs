//! The scenario file format (TOML): the world, the story's events, and the expectations checked at the end.
//! `scenarios/README.md` documents every field with examples.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Errors reading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not valid TOML or not the expected shape.
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// Valid TOML that makes no sense as a story.
    #[error("scenario is inconsistent: {0}")]
    Invalid(String),
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
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Parse `"50MB"`, `"512KiB"`, `"1GiB"`, `"100"`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((t, ""), |i| t.split_at(i));
    let value: f64 = num.trim().parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = value * mult;
    (0.0..1e15).contains(&bytes).then_some(bytes.round() as u64)
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
            TextOrNumber::Float(f) if f >= 0.0 && f.is_finite() => {
                Ok(Span(Duration::from_secs_f64(f)))
            }
            TextOrNumber::Float(f) => Err(de::Error::custom(format!("bad duration {f}"))),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match TextOrNumber::deserialize(d)? {
            TextOrNumber::Text(t) => parse_size(&t).map(Size).ok_or_else(|| {
                de::Error::custom(format!("bad size {t:?} (use e.g. \"50MB\", \"512KiB\")"))
            }),
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
    /// The tracker.
    #[serde(default)]
    pub tracker: TrackerSpec,
    /// Files in the story, generated deterministically from the seed and their name.
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    /// The peers.
    #[serde(rename = "peer")]
    pub peers: Vec<PeerSpec>,
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
        }
    }
}

/// Tracker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerSpec {
    /// Announce interval it hands out.
    #[serde(default = "default_interval")]
    pub interval: Span,
}

fn default_interval() -> Span {
    Span(Duration::from_secs(5))
}

impl Default for TrackerSpec {
    fn default() -> Self {
        TrackerSpec {
            interval: default_interval(),
        }
    }
}

/// A file of the story.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// File name (also its catalog name).
    pub name: String,
    /// Size in bytes.
    pub size: Size,
    /// Piece size (default 512 KiB).
    #[serde(default)]
    pub piece_size: Option<Size>,
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
    /// Other peers it is told about directly (`--peer`), besides the tracker.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Upload cap (bytes per second).
    #[serde(default)]
    pub upload_rate: Option<Size>,
    /// Download cap (bytes per second).
    #[serde(default)]
    pub download_rate: Option<Size>,
    /// Fetch pieces in order.
    #[serde(default)]
    pub sequential: bool,
    /// Do not start with the story; a `start` event starts it.
    #[serde(default)]
    pub delayed: bool,
    /// Simulated time of one trip to the disk.
    #[serde(default)]
    pub disk_latency: Option<Span>,
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
    /// Peers each peer must have banned (by peer name).
    #[serde(default)]
    pub banned: BTreeMap<String, Vec<String>>,
    /// Most copies of the files a peer may upload (uploaded bytes / size of what it has).
    #[serde(default)]
    pub max_upload_copies: BTreeMap<String, f64>,
    /// No checkpointed piece is fetched again after a restart.
    #[serde(default = "yes")]
    pub no_refetch: bool,
    /// Every finished file is byte-identical to its source.
    #[serde(default = "yes")]
    pub identical: bool,
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
            no_refetch: true,
            identical: true,
        }
    }
}

impl Scenario {
    /// Parse and check a scenario.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
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
        }
        let files: std::collections::BTreeSet<&str> =
            self.files.iter().map(|f| f.name.as_str()).collect();
        for f in &self.files {
            if !enjambre_core::metainfo::is_safe_component(&f.name) {
                return bad(format!("file name {:?} is not a plain file name", f.name));
            }
        }
        for p in &self.peers {
            for f in p.has.iter().chain(&p.get) {
                if !files.contains(f.as_str()) {
                    return bad(format!("peer {} names unknown file {f:?}", p.name));
                }
            }
            for s in &p.sources {
                if !names.contains(s.as_str()) {
                    return bad(format!("peer {} names unknown source {s:?}", p.name));
                }
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            let n = i + 1;
            if e.at.is_none() && e.when.is_none() && !e.after_previous {
                return bad(format!("event {n} needs `at`, `when` or `after_previous`"));
            }
            let needs_peer = !matches!(e.action, Action::TrackerDown | Action::TrackerUp);
            match &e.peer {
                Some(p) if !names.contains(p.as_str()) => {
                    return bad(format!("event {n} names unknown peer {p:?}"))
                }
                None if needs_peer => {
                    return bad(format!("event {n} ({:?}) needs `peer`", e.action))
                }
                _ => {}
            }
            if let Some(c) = &e.when {
                if !names.contains(c.peer.as_str()) {
                    return bad(format!("event {n} watches unknown peer {:?}", c.peer));
                }
            }
            if e.action == Action::Latency && e.latency.is_none() {
                return bad(format!("event {n} (latency) needs `latency`"));
            }
        }
        for p in self.expect.complete.iter().chain(&self.expect.incomplete) {
            if !names.contains(p.as_str()) {
                return bad(format!("expectation names unknown peer {p:?}"));
            }
        }
        Ok(())
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
        assert_eq!(parse_size("50MB"), Some(50_000_000));
        assert_eq!(parse_size("512KiB"), Some(524_288));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_span("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_span("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_span("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_span("-1s"), None);
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
}
