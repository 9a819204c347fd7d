//! The Prometheus text exposition format (version 0.0.4), written by hand: metric families with `# HELP`
//! and `# TYPE`, samples with escaped labels, and a fixed-bucket latency [`Histogram`] fed lock-free.
//!
//! Why not `prometheus-client`: every page here is written from a snapshot taken when it is asked for (the
//! node's `TorrentStats`, the tracker's registry view), with label sets (torrent names) that change between
//! scrapes. The crate is built around long-lived registered metric handles; using it would mean keeping a
//! second copy of every counter in sync, or a custom collector per page that is as long as this writer.
//! Its histogram also locks on every observation, where the tracker's request latencies go through atomics
//! here. And it writes OpenMetrics text (`_total` appended for us, `# EOF` at the end), not the 0.0.4 format
//! served here. Measured (bench/RESULTS.md, "Hand-written or crate"): it would add 3 crates and ~2 CPU s of
//! release build; what decides is the snapshot shape. This writer is checked line by line by the strict
//! parser in `tests/src/prometheus.rs`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of a metrics response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process restarts); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations (`_bucket`, `_sum`, `_count` samples).
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metrics page being written: call [`Exposition::family`] once per metric, then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Escape a label value: backslash, double quote and line feed.
fn escape_label(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escape help text: backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, infinities as `+Inf`/`-Inf`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Start the family `name` of `kind` with its help text.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(v, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Upper bounds, in seconds, of the default latency buckets: 100 µs to 5 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 5.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`], safe to feed from many tasks at once.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound (non-cumulative; made cumulative when written).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Write the `_bucket`, `_sum` and `_count` samples of family `name` with `labels`.
    pub fn write(&self, page: &mut Exposition, name: &str, labels: &[(&str, &str)]) {
        let count = self.count();
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = format_value(*bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            // Observations racing with this write may be in `count` but not yet in a bucket: never more.
            page.sample(&bucket, &l, cumulative.min(count) as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        page.sample(&bucket, &l, count as f64);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        page.sample(&format!("{name}_sum"), labels, sum);
        page.sample(&format!("{name}_count"), labels, count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut p = Exposition::new();
        p.family("a_total", Kind::Counter, "Things.\nMore \\ things.");
        p.sample("a_total", &[("k", "x\"y\\z\nw"), ("j", "2")], 3.0);
        p.single("g", Kind::Gauge, "A gauge.", 0.5);
        assert_eq!(
            p.finish(),
            "# HELP a_total Things.\\nMore \\\\ things.\n# TYPE a_total counter\n\
             a_total{k=\"x\\\"y\\\\z\\nw\",j=\"2\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 0.5\n"
        );
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e20), "100000000000000000000");
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut p = Exposition::new();
        p.family("lat_seconds", Kind::Histogram, "Latency.");
        h.write(&mut p, "lat_seconds", &[("route", "x")]);
        let text = p.finish();
        assert!(text.contains("lat_seconds_bucket{route=\"x\",le=\"0.0001\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{route=\"x\",le=\"0.0025\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{route=\"x\",le=\"0.005\"} 2\n"));
        assert!(text.contains("lat_seconds_bucket{route=\"x\",le=\"5\"} 2\n"));
        assert!(text.contains("lat_seconds_bucket{route=\"x\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("lat_seconds_count{route=\"x\"} 3\n"));
        assert!(text.contains("lat_seconds_sum{route=\"x\"} 10.00305\n"));
    }
}
