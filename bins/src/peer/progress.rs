//! What `serve` and `get` print while they work: serve events, completions of resumed downloads, a
//! progress bar per download on a terminal, and a line for each disk error that stops a download.

use super::{stderr_tty, App};
use enjambre_core::metainfo::InfoHash;
use enjambre_core::node::{TorrentError, TorrentStats};
use enjambre_net::app::{self, human_bytes, ServeEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Prints serve progress: `seeding NAME INFOHASH` / `resuming ...` on stdout, hashing progress and warnings
/// on stderr (on a terminal, one bar for the whole folder: files and bytes hashed; otherwise a line at the
/// start and at every tenth of the files).
pub fn serve_printer() -> app::ServeSink {
    let tty = stderr_tty();
    let hashing = std::sync::Mutex::new(FolderHashing::default());
    Arc::new(move |event| match event {
        ServeEvent::Hashing { name, done, total } => {
            if let Ok(mut h) = hashing.lock() {
                h.file(name, done, total);
            }
        }
        ServeEvent::HashingFolder {
            files_done,
            files,
            bytes_done,
            bytes,
        } => {
            if let Ok(mut h) = hashing.lock() {
                h.folder(tty, files_done, files, bytes_done, bytes);
            }
        }
        ServeEvent::Seeding {
            name, info_hash, ..
        } => out!("seeding {name} {info_hash}"),
        ServeEvent::Resuming {
            name,
            info_hash,
            percent,
        } => out!("resuming {name} {info_hash} ({percent:.1}%)"),
        ServeEvent::Skipped { name, error } => err!("warning: not sharing {name}: {error}"),
        ServeEvent::PublishFailed { name, error } => {
            err!("warning: {name} not published to the catalog: {error}")
        }
    })
}

/// The hashing of a folder's new files, as [`serve_printer`] shows it.
#[derive(Default)]
struct FolderHashing {
    bar: Option<ProgressBar>,
    /// Bytes hashed of the files being hashed now, by name.
    in_flight: BTreeMap<String, u64>,
    /// Bytes of the files hashed completely.
    bytes_done: u64,
    /// Tenths of the files reported so far (when stderr is not a terminal).
    tenths: usize,
}

impl FolderHashing {
    fn file(&mut self, name: String, done: u64, total: u64) {
        if done >= total {
            self.in_flight.remove(&name);
        } else {
            self.in_flight.insert(name, done);
        }
        self.draw();
    }

    fn folder(&mut self, tty: bool, files_done: usize, files: usize, bytes_done: u64, bytes: u64) {
        self.bytes_done = bytes_done;
        if !tty {
            let tenths = (files_done * 10).checked_div(files).unwrap_or(10);
            if files_done == 0 {
                err!("hashing {files} files ({})", human_bytes(bytes));
            } else if tenths > self.tenths || files_done == files {
                self.tenths = tenths;
                err!("hashed {files_done} of {files} files");
            }
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar =
                ProgressBar::with_draw_target(Some(bytes.max(1)), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "hashing {bar:30} {binary_bytes}/{binary_total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        bar.set_message(format!("{files_done}/{files} files"));
        if files_done >= files {
            bar.set_position(bytes.max(1));
            bar.finish();
        }
        self.draw();
    }

    fn draw(&self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.set_position(self.bytes_done + self.in_flight.values().sum::<u64>());
            }
        }
    }
}

/// Print `complete NAME INFOHASH` when a resumed download finishes, and errors that stop a torrent; runs
/// until the peer stops.
pub async fn report_progress(app: &App, resumed: Vec<InfoHash>) -> anyhow::Result<()> {
    let mut pending = resumed;
    let mut errors: BTreeMap<InfoHash, Option<TorrentError>> = BTreeMap::new();
    loop {
        let mut finished = Vec::new();
        for s in app.stats().await? {
            if app::is_finished(&s) {
                if let Some(i) = pending.iter().position(|h| *h == s.info_hash) {
                    pending.swap_remove(i);
                    out!("complete {} {}", s.name, s.info_hash);
                    finished.push(s.info_hash);
                }
            }
            let last = errors.entry(s.info_hash).or_default();
            if s.error.is_some() && s.error != *last {
                err!("{}", stalled_line(&s));
            }
            *last = s.error.clone();
        }
        app.stamp_downloads(finished).await;
        // Every torrent's stats are gathered each time (ten thousand of them for a library): twice a second
        // while a download is under way, every few seconds once only seeds are left (a seed's disk trouble
        // still shows within seconds).
        let every = if pending.is_empty() {
            SEEDS_ONLY_POLL
        } else {
            DOWNLOADING_POLL
        };
        tokio::time::sleep(every).await;
    }
}

/// How often [`report_progress`] looks while downloads are under way.
const DOWNLOADING_POLL: Duration = Duration::from_millis(500);

/// How often [`report_progress`] looks once every download is complete.
const SEEDS_ONLY_POLL: Duration = Duration::from_secs(5);

/// A progress bar per file on stderr, when it is a terminal; otherwise tracker trouble is reported as a line
/// on stderr each time it changes.
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: BTreeMap<InfoHash, ProgressBar>,
    tracker_errors: BTreeMap<InfoHash, Option<String>>,
    disk_errors: BTreeMap<InfoHash, u32>,
}

/// The line telling that a download stopped on a disk error and when it is tried again.
pub fn stalled_line(s: &TorrentStats) -> String {
    let retry = s
        .error_retry_in_ms
        .map(|ms| format!("; trying again in {} s", ms.div_ceil(1000)))
        .unwrap_or_default();
    let error = s
        .error
        .as_ref()
        .map_or_else(|| "disk error".to_string(), ToString::to_string);
    let hint = if s.error.as_ref().is_some_and(|e| e.is_storage_full()) {
        "free some space"
    } else {
        "check the disk"
    };
    format!(
        "{}: download stopped: {error}{retry} (verified pieces are kept; {hint}, or stop and run again later to resume)",
        s.name,
    )
}

impl Bars {
    /// Bars on stderr when `enabled`, else plain lines.
    pub fn new(enabled: bool) -> Bars {
        Bars {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: BTreeMap::new(),
            tracker_errors: BTreeMap::new(),
            disk_errors: BTreeMap::new(),
        }
    }

    /// Show the latest stats.
    pub fn update(&mut self, stats: &[TorrentStats]) {
        for s in stats {
            let last = self.tracker_errors.entry(s.info_hash).or_default();
            if *last != s.tracker_error {
                if let (None, Some(e)) = (&self.multi, &s.tracker_error) {
                    eprintln!("{}: tracker unreachable, retrying: {e}", s.name);
                }
                last.clone_from(&s.tracker_error);
            }
            // Each new disk error (a retry that failed again counts) is told once, bars or not.
            let seen = self.disk_errors.entry(s.info_hash).or_default();
            if s.error.is_some() && s.disk_errors != *seen {
                *seen = s.disk_errors;
                let line = stalled_line(s);
                match &self.multi {
                    Some(multi) => multi.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
        let Some(multi) = &self.multi else { return };
        for s in stats {
            let bar = self.bars.entry(s.info_hash).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(s.size.max(1)));
                let style = ProgressStyle::with_template(
                    "{prefix:<24!} [{bar:28}] {percent:>3}% {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>3} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(s.name.clone());
                bar
            });
            if bar.is_finished() {
                continue;
            }
            let have = if s.pieces_total == 0 {
                s.size
            } else {
                (u128::from(s.size) * u128::from(s.pieces_have) / u128::from(s.pieces_total)) as u64
            };
            bar.set_position(have);
            if app::is_finished(s) {
                bar.finish_with_message("done");
            } else if s.checking {
                bar.set_message("checking");
            } else if let Some(e) = &s.error {
                let retry = s
                    .error_retry_in_ms
                    .map(|ms| format!(", retry in {} s", ms.div_ceil(1000)))
                    .unwrap_or_default();
                bar.set_message(format!("STOPPED: {e}{retry}"));
            } else if let (0, Some(e)) = (s.peers, &s.tracker_error) {
                bar.set_message(format!("tracker: {e}"));
            } else {
                bar.set_message(format!("{} source(s)", s.peers));
            }
        }
    }

    /// Print a line on stdout without tearing the bars.
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) => multi.suspend(|| out!("{line}")),
            None => out!("{line}"),
        }
    }

    /// Stop drawing (unfinished bars stay as they are).
    pub fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}
