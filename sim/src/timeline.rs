//! Pictures of a story: [`render_svg`] draws a run's [`Timeline`] — simulated time across, one lane per peer
//! with its completion rising, the tracker on top, faults marked where they happened (crash, restart,
//! partition, corrupt peer banned, tracker down) and the resume point labelled — and [`render_html`] puts
//! that picture beside the searchable log in one self-contained page.
//!
//! The output depends only on the report (simulated times, names, counts) and every number is printed with
//! fixed precision, so the same scenario and seed give the same bytes.

use crate::report::{Lane, Report, Timeline};
use crate::world::MarkKind;
use std::fmt::Write as _;
use std::time::Duration;

/// Picture width in pixels.
const WIDTH: f64 = 1000.0;
/// Left margin, holding the lane names.
const LEFT: f64 = 150.0;
/// Right margin.
const RIGHT: f64 = 28.0;
/// Height of the title block.
const HEADER: f64 = 70.0;
/// Vertical distance between lanes.
const PITCH: f64 = 46.0;
/// Height of a lane's band.
const LANE: f64 = 28.0;
/// Room under the lanes for the time axis and the legend.
const FOOTER: f64 = 78.0;
/// Approximate width of a character of the 10 px label font.
const CHAR_W: f64 = 5.6;

/// Escape text for XML (and HTML) content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with one decimal.
fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// Seconds for labels: whole seconds without a fraction, else one decimal.
fn secs_label(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 1e-9 {
        format!("{}s", s.round() as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// The geometry of one picture.
struct Frame {
    duration: f64,
    plot_w: f64,
}

impl Frame {
    fn x(&self, t: Duration) -> f64 {
        LEFT + self.plot_w * (t.as_secs_f64() / self.duration).clamp(0.0, 1.0)
    }
}

/// Labels placed on one lane so far, to push overlapping ones onto another row.
#[derive(Default)]
struct Labels {
    /// Right end of the last label on each row.
    rows: Vec<f64>,
}

impl Labels {
    /// The row index for a label spanning `from..to`.
    fn row(&mut self, from: f64, to: f64) -> usize {
        for (i, end) in self.rows.iter_mut().enumerate() {
            if from >= *end + 4.0 {
                *end = to;
                return i;
            }
        }
        self.rows.push(to);
        self.rows.len() - 1
    }
}

/// Write a label at time-position `x` on a lane whose band starts at `top`: above the band, or on further
/// rows inside it when earlier labels are in the way; near the right edge it ends at `x`.
fn label(svg: &mut String, labels: &mut Labels, x: f64, top: f64, text: &str, class: &str) {
    let w = text.chars().count() as f64 * CHAR_W;
    let right_edge = WIDTH - RIGHT;
    let (start, anchor) = if x + 4.0 + w > right_edge {
        (x - 4.0 - w, "end")
    } else {
        (x + 4.0, "start")
    };
    let row = labels.row(start, start + w);
    let y = top - 4.0 + 11.0 * row as f64;
    let tx = if anchor == "end" { x - 4.0 } else { x + 4.0 };
    let _ = writeln!(
        svg,
        r#"<text class="{class}" x="{}" y="{}" text-anchor="{anchor}">{}</text>"#,
        f1(tx),
        f1(y),
        escape(text)
    );
}

/// A pleasant tick step giving at most about ten ticks.
fn tick_step(duration: f64) -> f64 {
    const STEPS: [f64; 12] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| duration / s <= 10.0)
        .unwrap_or(600.0)
}

/// The pieces a lane's torrents hold in all, as last known (for placing the resume point).
fn lane_total(lane: &Lane) -> u32 {
    lane.progress.last().map_or(0, |&(_, _, n)| n)
}

fn draw_progress(svg: &mut String, frame: &Frame, lane: &Lane, top: f64) {
    let bottom = top + LANE;
    let level = |have: u32, total: u32| {
        let frac = if total == 0 {
            0.0
        } else {
            f64::from(have) / f64::from(total)
        };
        bottom - frac * (LANE - 2.0)
    };
    let (fill, stroke) = if lane.downloads {
        ("#bfdbfe", "#2563eb")
    } else {
        ("#bbf7d0", "#16a34a")
    };
    for &(start, end) in &lane.up {
        let samples: Vec<&(Duration, u32, u32)> = lane
            .progress
            .iter()
            .filter(|(t, _, _)| *t >= start && *t <= end)
            .collect();
        let Some(first) = samples.first() else {
            continue;
        };
        let mut line = format!("M{},{}", f1(frame.x(first.0)), f1(level(first.1, first.2)));
        for s in samples.iter().skip(1) {
            let _ = write!(line, " H{} V{}", f1(frame.x(s.0)), f1(level(s.1, s.2)));
        }
        let _ = write!(line, " H{}", f1(frame.x(end)));
        let area = format!(
            "M{},{} V{}{} V{} Z",
            f1(frame.x(first.0)),
            f1(bottom),
            f1(level(first.1, first.2)),
            line.split_once(' ')
                .map_or(String::new(), |(_, rest)| format!(" {rest}")),
            f1(bottom)
        );
        let _ = writeln!(svg, r#"<path d="{area}" fill="{fill}"/>"#);
        let _ = writeln!(
            svg,
            r#"<path d="{line}" fill="none" stroke="{stroke}" stroke-width="1.5"/>"#
        );
    }
}

fn draw_lane(
    svg: &mut String,
    frame: &Frame,
    timeline: &Timeline,
    lane: &Lane,
    top: f64,
    end_x: f64,
) {
    let mid = top + LANE / 2.0;
    let _ = writeln!(
        svg,
        r#"<g class="lane" data-peer="{}">"#,
        escape(&lane.peer)
    );
    let _ = writeln!(
        svg,
        r#"<text class="name" x="{}" y="{}" text-anchor="end">{}</text>"#,
        f1(LEFT - 10.0),
        f1(mid + 4.0),
        escape(&lane.peer)
    );
    let _ = writeln!(
        svg,
        r#"<rect x="{}" y="{}" width="{}" height="{}" fill="url(#down)"/>"#,
        f1(LEFT),
        f1(top),
        f1(end_x - LEFT),
        f1(LANE)
    );
    for &(start, end) in &lane.up {
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#f8fafc" stroke="#e2e8f0"/>"##,
            f1(frame.x(start)),
            f1(top),
            f1((frame.x(end) - frame.x(start)).max(0.5)),
            f1(LANE)
        );
    }
    let marks: Vec<_> = timeline
        .marks
        .iter()
        .filter(|m| m.host == lane.peer)
        .collect();
    // Partition bands go under the completion line.
    for (i, m) in marks.iter().enumerate() {
        if m.kind == MarkKind::Partition {
            let healed = marks
                .iter()
                .skip(i + 1)
                .find(|h| h.kind == MarkKind::Heal)
                .map_or(end_x, |h| frame.x(h.t));
            let x = frame.x(m.t);
            let _ = writeln!(
                svg,
                r##"<rect class="partition" x="{}" y="{}" width="{}" height="{}" fill="#fb923c" fill-opacity="0.3"/>"##,
                f1(x),
                f1(top),
                f1((healed - x).max(1.0)),
                f1(LANE)
            );
        }
    }
    draw_progress(svg, frame, lane, top);
    let mut labels = Labels::default();
    for m in &marks {
        let x = frame.x(m.t);
        match &m.kind {
            MarkKind::Crash => {
                let _ = writeln!(
                    svg,
                    r##"<path class="crash" d="M{},{} l8,8 m0,-8 l-8,8" stroke="#dc2626" stroke-width="2.5"/>"##,
                    f1(x - 4.0),
                    f1(mid - 4.0)
                );
                label(svg, &mut labels, x, top, "crash", "l bad");
            }
            MarkKind::Restart => {
                let _ = writeln!(
                    svg,
                    r##"<path class="restart" d="M{},{} l8,5 l-8,5 z" fill="#16a34a"/>"##,
                    f1(x),
                    f1(mid - 5.0)
                );
                label(svg, &mut labels, x, top, "restart", "l good");
            }
            MarkKind::Start => label(svg, &mut labels, x, top, "joins", "l"),
            MarkKind::Partition => label(svg, &mut labels, x, top, "partitioned", "l warn"),
            MarkKind::Heal => label(svg, &mut labels, x, top, "healed", "l"),
            MarkKind::DiskStalled => label(svg, &mut labels, x, top, "disk full: stops", "l warn"),
            MarkKind::DiskFreed => label(svg, &mut labels, x, top, "space returns", "l good"),
            MarkKind::Corrupt => {
                let _ = writeln!(
                    svg,
                    r##"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#7c3aed" stroke-width="2"/>"##,
                    f1(x),
                    f1(x),
                    f1(top),
                    f1(top + LANE)
                );
                label(svg, &mut labels, x, top, "turns corrupt", "l evil");
            }
            MarkKind::Banned { whom } => {
                let _ = writeln!(
                    svg,
                    r##"<path class="ban" d="M{},{} l5,5 l-5,5 l-5,-5 z" fill="#7c3aed"/>"##,
                    f1(x),
                    f1(mid - 5.0)
                );
                label(svg, &mut labels, x, top, &format!("bans {whom}"), "l evil");
            }
            MarkKind::Resumed {
                pieces,
                first_missing,
                ..
            } => {
                let total = lane_total(lane);
                let y = if total == 0 {
                    top + LANE
                } else {
                    top + LANE - f64::from(*pieces) / f64::from(total) * (LANE - 2.0)
                };
                let _ = writeln!(
                    svg,
                    r##"<circle class="resume" cx="{}" cy="{}" r="4" fill="#1d4ed8" stroke="#fff" stroke-width="1.5"/>"##,
                    f1(x),
                    f1(y)
                );
                let text = match first_missing {
                    Some(p) => format!("resumes at piece {p} ({pieces} kept)"),
                    None => format!("resumes complete ({pieces} kept)"),
                };
                label(svg, &mut labels, x, top, &text, "l resume");
            }
            MarkKind::TrackerDown | MarkKind::TrackerUp => {}
        }
    }
    for (file, t) in &lane.completed {
        let x = frame.x(*t);
        let _ = writeln!(
            svg,
            r##"<path class="done" d="M{},{} l3,3 l6,-7" fill="none" stroke="#15803d" stroke-width="2"/>"##,
            f1(x - 4.0),
            f1(top + 6.0)
        );
        let text = if lane.completed.len() > 1 {
            format!("{file} done {}", secs_label_ms(*t))
        } else {
            format!("done {}", secs_label_ms(*t))
        };
        label(svg, &mut labels, x, top, &text, "l good");
    }
    let _ = writeln!(svg, "</g>");
}

/// Seconds with one decimal, for completion times.
fn secs_label_ms(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn draw_tracker(svg: &mut String, frame: &Frame, timeline: &Timeline, top: f64, bottom: f64) {
    let mid = top + LANE / 2.0;
    let end_x = frame.x(timeline.duration);
    let _ = writeln!(svg, r#"<g class="lane" data-peer="tracker">"#);
    let _ = writeln!(
        svg,
        r#"<text class="name" x="{}" y="{}" text-anchor="end">tracker</text>"#,
        f1(LEFT - 10.0),
        f1(mid + 4.0)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#f1f5f9" stroke="#e2e8f0"/>"##,
        f1(LEFT),
        f1(top + 8.0),
        f1(end_x - LEFT),
        f1(LANE - 16.0)
    );
    let mut labels = Labels::default();
    let mut down_since: Option<Duration> = None;
    let mut bands = Vec::new();
    for m in timeline.marks.iter().filter(|m| m.host == "tracker") {
        match m.kind {
            MarkKind::TrackerDown => down_since = down_since.or(Some(m.t)),
            MarkKind::TrackerUp => {
                if let Some(since) = down_since.take() {
                    bands.push((since, m.t, true));
                }
            }
            _ => {}
        }
    }
    if let Some(since) = down_since {
        bands.push((since, timeline.duration, false));
    }
    for (from, to, came_back) in bands {
        let (x0, x1) = (frame.x(from), frame.x(to));
        let _ = writeln!(
            svg,
            r##"<rect class="tracker-down" x="{}" y="{}" width="{}" height="{}" fill="#dc2626" fill-opacity="0.06"/>"##,
            f1(x0),
            f1(top),
            f1((x1 - x0).max(1.0)),
            f1(bottom - top)
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="url(#trackerdown)"/>"##,
            f1(x0),
            f1(top + 8.0),
            f1((x1 - x0).max(1.0)),
            f1(LANE - 16.0)
        );
        label(svg, &mut labels, x0, top, "tracker down", "l bad");
        if came_back {
            label(svg, &mut labels, x1, top, "back up", "l good");
        }
    }
    let _ = writeln!(svg, "</g>");
}

fn draw_axis(svg: &mut String, frame: &Frame, top: f64, bottom: f64) {
    let step = tick_step(frame.duration);
    let mut i = 0u32;
    loop {
        let t = f64::from(i) * step;
        if t > frame.duration + 1e-9 {
            break;
        }
        let x = LEFT + frame.plot_w * t / frame.duration;
        let _ = writeln!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#e5e7eb"/>"##,
            f1(x),
            f1(x),
            f1(top),
            f1(bottom + 4.0)
        );
        let _ = writeln!(
            svg,
            r#"<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            f1(x),
            f1(bottom + 17.0),
            secs_label(Duration::from_secs_f64(t))
        );
        i += 1;
    }
    let _ = writeln!(
        svg,
        r#"<text class="tick" x="{}" y="{}" text-anchor="end">simulated time</text>"#,
        f1(WIDTH - RIGHT),
        f1(bottom + 31.0)
    );
}

fn draw_legend(svg: &mut String, y: f64) {
    // Swatches with `X` and `Y` standing for their corner.
    const ITEMS: [(&str, &str); 8] = [
        (
            r##"<rect x="X" y="Y" width="12" height="10" fill="#bfdbfe" stroke="#2563eb"/>"##,
            "downloaded",
        ),
        (
            r##"<rect x="X" y="Y" width="12" height="10" fill="#bbf7d0" stroke="#16a34a"/>"##,
            "seeding",
        ),
        (
            r##"<rect x="X" y="Y" width="12" height="10" fill="url(#down)" stroke="#cbd5e1"/>"##,
            "not running",
        ),
        (
            r##"<rect x="X" y="Y" width="12" height="10" fill="#fb923c" fill-opacity="0.3"/>"##,
            "partitioned",
        ),
        (
            r##"<path d="MX,Y l10,10 m0,-10 l-10,10" stroke="#dc2626" stroke-width="2"/>"##,
            "crash",
        ),
        (
            r##"<path d="MX,Y l9,5 l-9,5 z" fill="#16a34a"/>"##,
            "restart",
        ),
        (
            r##"<circle cx="X" cy="Y" r="4" transform="translate(6,5)" fill="#1d4ed8"/>"##,
            "resume point",
        ),
        (
            r##"<path d="MX,Y l5,5 l-5,5 l-5,-5 z" transform="translate(6,0)" fill="#7c3aed"/>"##,
            "ban",
        ),
    ];
    let mut x = LEFT;
    for (swatch, text) in ITEMS {
        let _ = writeln!(svg, "{}", swatch.replace('X', &f1(x)).replace('Y', &f1(y)));
        let _ = writeln!(
            svg,
            r#"<text class="tick" x="{}" y="{}">{}</text>"#,
            f1(x + 16.0),
            f1(y + 9.0),
            escape(text)
        );
        x += 24.0 + text.chars().count() as f64 * 6.0;
    }
}

/// Draw the run's timeline as a standalone SVG document.
pub fn render_svg(report: &Report) -> String {
    let timeline = &report.timeline;
    let frame = Frame {
        duration: timeline.duration.as_secs_f64().max(0.001),
        plot_w: WIDTH - LEFT - RIGHT,
    };
    let lanes_top = HEADER;
    let peers_top = if timeline.has_tracker {
        lanes_top + PITCH
    } else {
        lanes_top
    };
    let lanes_bottom = peers_top + PITCH * timeline.lanes.len() as f64 - (PITCH - LANE);
    let height = lanes_bottom + FOOTER;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" data-left="{}" data-plot-width="{}" data-duration="{}" data-top="{}" data-bottom="{}">"#,
        f1(LEFT),
        f1(frame.plot_w),
        format_args!("{:.3}", frame.duration),
        f1(lanes_top),
        f1(lanes_bottom),
        w = f1(WIDTH),
        h = f1(height),
    );
    let _ = writeln!(
        svg,
        "<title>{}</title>",
        escape(&format!(
            "{} (seed {}): {}",
            report.scenario, report.seed, report.description
        ))
    );
    svg.push_str(concat!(
        "<style>text{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;fill:#1f2937}",
        ".title{font-size:17px;font-weight:700}.desc{font-size:12px;fill:#4b5563}.name{font-size:12px;font-weight:600}",
        ".tick{font-size:10px;fill:#6b7280}.l{font-size:10px;fill:#374151}.bad{fill:#b91c1c;font-weight:600}",
        ".good{fill:#15803d}.warn{fill:#c2410c;font-weight:600}.evil{fill:#6d28d9;font-weight:600}",
        ".resume{font-weight:700;fill:#1d4ed8}</style>\n",
        "<defs><pattern id=\"down\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">",
        "<rect width=\"6\" height=\"6\" fill=\"#f1f5f9\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#cbd5e1\" stroke-width=\"2\"/></pattern>",
        "<pattern id=\"trackerdown\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">",
        "<rect width=\"6\" height=\"6\" fill=\"#fee2e2\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#f87171\" stroke-width=\"2\"/></pattern></defs>\n",
    ));
    let _ = writeln!(
        svg,
        r##"<rect width="{}" height="{}" fill="#ffffff"/>"##,
        f1(WIDTH),
        f1(height)
    );
    let verdict = if report.passed { "passed" } else { "FAILED" };
    let _ = writeln!(
        svg,
        r#"<text class="title" x="16" y="26">{}</text>"#,
        escape(&format!(
            "{} — seed {}, {:.1} simulated s, {verdict}",
            report.scenario, report.seed, report.simulated_seconds
        ))
    );
    let _ = writeln!(
        svg,
        r#"<text class="desc" x="16" y="46">{}</text>"#,
        escape(&report.description)
    );
    draw_axis(&mut svg, &frame, lanes_top, lanes_bottom);
    if timeline.has_tracker {
        draw_tracker(&mut svg, &frame, timeline, lanes_top, lanes_bottom);
    }
    let end_x = frame.x(timeline.duration);
    for (i, lane) in timeline.lanes.iter().enumerate() {
        let top = peers_top + PITCH * i as f64;
        draw_lane(&mut svg, &frame, timeline, lane, top, end_x);
    }
    let _ = writeln!(
        svg,
        r##"<line id="cursor" x1="0" x2="0" y1="{}" y2="{}" stroke="#111827" stroke-dasharray="3,3" visibility="hidden"/>"##,
        f1(lanes_top),
        f1(lanes_bottom)
    );
    draw_legend(&mut svg, lanes_bottom + 44.0);
    svg.push_str("</svg>\n");
    svg
}

/// The timeline and the log (the story, or every protocol message with `with_trace`) in one self-contained
/// HTML page: the log can be searched, and clicking a line shows its instant on the picture.
pub fn render_html(report: &Report, with_trace: bool) -> String {
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>",
        escape(&format!("enjambre story: {}", report.scenario))
    );
    html.push_str(concat!(
        "<style>body{margin:0;font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2937}",
        "header{padding:14px 20px;background:#111827;color:#f9fafb}header h1{margin:0;font-size:20px}",
        "header p{margin:4px 0;color:#d1d5db}.verdicts{margin:6px 0 0;padding-left:18px}",
        ".ok{color:#86efac}.fail{color:#fca5a5;font-weight:700}",
        ".wrap{display:flex;gap:16px;padding:16px;align-items:flex-start}",
        ".pic{flex:0 0 auto;max-width:62vw;overflow:auto}.pic svg{max-width:100%;height:auto}",
        ".trace{flex:1 1 0;min-width:300px;position:sticky;top:8px}",
        "#q{width:100%;padding:6px 8px;border:1px solid #d1d5db;border-radius:6px;box-sizing:border-box}",
        "#count{color:#6b7280;font-size:12px}",
        "#lines{margin:6px 0 0;padding:0;list-style:none;max-height:80vh;overflow:auto;font:12px/1.45 ui-monospace,monospace;",
        "border:1px solid #e5e7eb;border-radius:6px}",
        "#lines li{padding:1px 8px;white-space:pre-wrap;cursor:pointer}#lines li:hover{background:#eff6ff}",
        "#lines li.story{font-weight:600}#lines li.on{background:#dbeafe}</style></head><body>\n",
    ));
    let _ = writeln!(html, "<header><h1>{}</h1>", escape(&report.scenario));
    let _ = writeln!(html, "<p>{}</p>", escape(&report.description));
    let _ = writeln!(
        html,
        "<p>seed {} · {:.3} simulated seconds · <span class=\"{}\">{}</span></p>",
        report.seed,
        report.simulated_seconds,
        if report.passed { "ok" } else { "fail" },
        if report.passed { "PASSED" } else { "FAILED" }
    );
    html.push_str("<ul class=\"verdicts\">\n");
    for v in &report.verdicts {
        let _ = writeln!(
            html,
            "<li class=\"{}\">{} {} — {}</li>",
            if v.ok { "ok" } else { "fail" },
            if v.ok { "ok" } else { "FAIL" },
            escape(&v.expectation),
            escape(&v.seen)
        );
    }
    for v in &report.violations {
        let _ = writeln!(html, "<li class=\"fail\">{}</li>", escape(v));
    }
    html.push_str("</ul></header>\n<div class=\"wrap\"><div class=\"pic\">\n");
    html.push_str(&render_svg(report));
    html.push_str("</div><div class=\"trace\"><input id=\"q\" type=\"search\" placeholder=\"search the log (host, piece, event…)\"> <span id=\"count\"></span><ol id=\"lines\">\n");
    for r in report.log.iter().filter(|r| r.story || with_trace) {
        let times = if r.count > 1 {
            format!(" (x{})", r.count)
        } else {
            String::new()
        };
        let _ = writeln!(
            html,
            "<li data-t=\"{:.3}\"{}>{}</li>",
            r.t.as_secs_f64(),
            if r.story { " class=\"story\"" } else { "" },
            escape(&format!(
                "[{:>9.3}s] {:<10} {}{times}",
                r.t.as_secs_f64(),
                r.host,
                r.text
            ))
        );
    }
    html.push_str("</ol></div></div>\n<script>\n");
    html.push_str(concat!(
        "\"use strict\";\n",
        "const q=document.getElementById('q'),lines=Array.from(document.querySelectorAll('#lines li')),count=document.getElementById('count');\n",
        "function filter(){const s=q.value.trim().toLowerCase();let n=0;for(const li of lines){const v=!s||li.textContent.toLowerCase().includes(s);li.hidden=!v;if(v)n++;}",
        "count.textContent=n+' of '+lines.length+' lines';}\n",
        "q.addEventListener('input',filter);filter();\n",
        "const svg=document.querySelector('.pic svg'),cur=document.getElementById('cursor');\n",
        "for(const li of lines)li.addEventListener('click',()=>{for(const o of lines)o.classList.remove('on');li.classList.add('on');",
        "const d=svg.dataset,x=Number(d.left)+Number(d.plotWidth)*Number(li.dataset.t)/Number(d.duration);",
        "cur.setAttribute('x1',x);cur.setAttribute('x2',x);cur.setAttribute('visibility','visible');});\n",
        "</script></body></html>\n",
    ));
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::Mark;

    #[test]
    fn escapes_and_ticks() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
        assert_eq!(escape("x\u{1}y"), "xy");
        assert_eq!(tick_step(12.0), 2.0);
        assert_eq!(tick_step(120.0), 15.0);
        assert_eq!(secs_label(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs_label(Duration::from_secs(30)), "30s");
        let mut l = Labels::default();
        assert_eq!(l.row(0.0, 50.0), 0);
        assert_eq!(l.row(40.0, 60.0), 1, "overlaps the first");
        assert_eq!(l.row(60.0, 90.0), 0);
    }

    #[test]
    fn a_small_timeline_has_its_lanes_and_marks() {
        let s = |x: u64| Duration::from_secs(x);
        let report = Report {
            format: 1,
            scenario: "t<1>".into(),
            description: "d".into(),
            seed: 3,
            passed: true,
            simulated_seconds: 10.0,
            wall_seconds: 0.0,
            verdicts: vec![],
            violations: vec![],
            peers: vec![],
            measures: None,
            log: vec![],
            timeline: Timeline {
                duration: s(10),
                lanes: vec![Lane {
                    peer: "leecher".into(),
                    downloads: true,
                    progress: vec![(s(1), 0, 10), (s(2), 5, 10), (s(6), 5, 10), (s(8), 10, 10)],
                    up: vec![(s(0), s(3)), (s(5), s(10))],
                    completed: vec![("f".into(), s(8))],
                }],
                marks: vec![
                    Mark {
                        t: s(3),
                        host: "leecher".into(),
                        kind: MarkKind::Crash,
                    },
                    Mark {
                        t: s(4),
                        host: "tracker".into(),
                        kind: MarkKind::TrackerDown,
                    },
                    Mark {
                        t: s(5),
                        host: "leecher".into(),
                        kind: MarkKind::Restart,
                    },
                    Mark {
                        t: s(6),
                        host: "leecher".into(),
                        kind: MarkKind::Resumed {
                            file: "f".into(),
                            pieces: 5,
                            first_missing: Some(5),
                        },
                    },
                ],
                has_tracker: true,
            },
        };
        let svg = render_svg(&report);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("t&lt;1&gt;"));
        assert!(svg.contains(r#"data-peer="leecher""#) && svg.contains(r#"data-peer="tracker""#));
        assert!(svg.contains(">resumes at piece 5 (5 kept)<"));
        assert!(
            svg.contains(">crash<") && svg.contains(">restart<") && svg.contains(">done 8.0s<")
        );
        assert!(svg.contains(">tracker down<") && !svg.contains(">back up<"));
        // Two boots, two completion areas: x from 150 over 822 px for 10 s.
        assert_eq!(
            svg.matches("stroke=\"#2563eb\" stroke-width=\"1.5\"")
                .count(),
            2
        );
        assert!(svg.contains("M232.2,144.0 H314.4 V131.0 H396.6"), "{svg}");
        assert_eq!(svg, render_svg(&report), "deterministic");
        let html = render_html(&report, false);
        assert!(html.contains(&svg) && html.contains("<ol id=\"lines\">"));
    }

    #[test]
    fn a_story_without_a_tracker_has_no_tracker_lane() {
        let s = |x: u64| Duration::from_secs(x);
        let report = Report {
            format: 1,
            scenario: "trackerless".into(),
            description: "d".into(),
            seed: 1,
            passed: true,
            simulated_seconds: 2.0,
            wall_seconds: 0.0,
            verdicts: vec![],
            violations: vec![],
            peers: vec![],
            measures: None,
            log: vec![],
            timeline: Timeline {
                duration: s(2),
                lanes: vec![Lane {
                    peer: "a".into(),
                    downloads: false,
                    progress: vec![],
                    up: vec![(s(0), s(2))],
                    completed: vec![],
                }],
                marks: vec![],
                has_tracker: false,
            },
        };
        let svg = render_svg(&report);
        assert!(svg.contains(r#"data-peer="a""#));
        assert!(!svg.contains(r#"data-peer="tracker""#), "{svg}");
    }
}
