//! Every shipped scenario passes in the simulator, and its verdicts, final swarm state and story are pinned by
//! an insta snapshot (YAML, sorted maps): a change in behaviour shows up as a changed snapshot. Also the
//! determinism check: the same scenario and seed give the same trace, byte for byte.
//!
//! Each run also draws its timeline (`sim run --svg`): the SVG must be well-formed XML with a lane per peer,
//! is written to `target/test-output/timelines/NAME.svg`, and for `resume` and `flash-crowd` is pinned by
//! an insta snapshot of its bytes.

use enjambre_sim::timeline::render_svg;
use enjambre_sim::{run, Report, RunOptions, Scenario};
use std::path::{Path, PathBuf};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn load(name: &str) -> Scenario {
    let path = scenarios_dir().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_with(name: &str, options: &RunOptions) -> Report {
    let scenario = load(name);
    let report = run(&scenario, options).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {:.1} simulated s in {:.2} wall s",
        report.simulated_seconds, report.wall_seconds
    );
    report
}

/// Run a shipped scenario, require it to pass, and compare its summary with the committed snapshot.
fn check(name: &str) -> Report {
    let report = run_with(name, &RunOptions::default());
    assert!(
        report.passed,
        "scenario {name} failed:\n{}",
        report.render(false)
    );
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!(name, report.summary());
    });
    let svg = check_timeline(name, &report);
    if TIMELINE_SNAPSHOTS.contains(&name) {
        insta::with_settings!({ prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("{name}-timeline"), svg);
        });
    }
    report
}

/// Scenarios whose timeline SVG is pinned byte for byte.
const TIMELINE_SNAPSHOTS: [&str; 2] = ["resume", "flash-crowd"];

/// Draw the run's timeline, check it is well-formed XML with one lane per peer plus the tracker's (when the story
/// has one) and the marks
/// the story calls for, write it to `target/test-output/timelines/NAME.svg`, and return it.
fn check_timeline(name: &str, report: &Report) -> String {
    let svg = render_svg(report);
    if let Err(e) = check_xml(&svg) {
        panic!("{name}: the timeline SVG is not well-formed: {e}");
    }
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let lanes = svg.matches("<g class=\"lane\"").count();
    assert_eq!(
        lanes,
        report.peers.len() + usize::from(report.timeline.has_tracker),
        "{name}: one lane per peer and the tracker"
    );
    for p in &report.peers {
        assert!(
            svg.contains(&format!("<g class=\"lane\" data-peer=\"{}\">", p.peer)),
            "{name}: no lane for {}",
            p.peer
        );
    }
    let story = report.story_lines(false).join("\n");
    for (said, drawn) in [
        ("CRASH", "class=\"crash\""),
        ("restarting on the same disk", "class=\"restart\""),
        ("PARTITIONED", "class=\"partition\""),
        ("TRACKER DOWN", "class=\"tracker-down\""),
        ("turns CORRUPT", ">turns corrupt<"),
        ("banned ", "class=\"ban\""),
    ] {
        assert_eq!(
            story.contains(said),
            svg.contains(drawn),
            "{name}: the story says {said:?} iff the picture draws {drawn:?}"
        );
    }
    assert_eq!(svg, render_svg(report), "{name}: drawing twice differs");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/timelines");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(format!("{name}.svg"));
    std::fs::write(&path, &svg).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    svg
}

/// A small strict well-formedness check: tags nest and close, attribute values are quoted, and `&` starts
/// an entity. Enough for SVG written by our own code (no DTD, no CDATA).
fn check_xml(text: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = text;
    let mut roots = 0;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt])?;
        let after = &rest[lt + 1..];
        if let Some(body) = after.strip_prefix("!--") {
            let end = body.find("-->").ok_or("unterminated comment")?;
            rest = &body[end + 3..];
            continue;
        }
        // Find the closing '>' outside quotes.
        let mut quote = None;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => {
                    end = Some(i);
                    break;
                }
                (None, '<') => return Err(format!("'<' inside a tag near {:?}", &after[..i])),
                _ => {}
            }
        }
        let end = end.ok_or("unterminated tag")?;
        let tag = &after[..end];
        rest = &after[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let inner = tag.trim_end_matches('/');
        let name = inner.split_whitespace().next().ok_or("empty tag")?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        {
            return Err(format!("bad tag name {name:?}"));
        }
        check_attributes(&inner[name.len()..])?;
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest)?;
    match (stack.last(), roots) {
        (Some(open), _) => Err(format!("<{open}> is never closed")),
        (None, 1) => Ok(()),
        (None, n) => Err(format!("{n} root elements")),
    }
}

fn check_attributes(mut attrs: &str) -> Result<(), String> {
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return Ok(());
        }
        let eq = attrs
            .find('=')
            .ok_or(format!("attribute without value: {attrs:?}"))?;
        let name = &attrs[..eq];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        {
            return Err(format!("bad attribute name {name:?}"));
        }
        let value = &attrs[eq + 1..];
        let q = value
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or(format!("unquoted value of {name}"))?;
        let close = value[1..]
            .find(q)
            .ok_or(format!("unterminated value of {name}"))?;
        check_text(&value[1..1 + close])?;
        attrs = &value[close + 2..];
    }
}

fn check_text(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp + 1..];
        let semi = after.find(';').ok_or("'&' without ';'")?;
        let entity = &after[..semi];
        let known = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
            || entity
                .strip_prefix('#')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !known {
            return Err(format!("unknown entity &{entity};"));
        }
        rest = &after[semi + 1..];
    }
    Ok(())
}

#[test]
fn the_xml_check_catches_broken_documents() {
    assert!(check_xml("<a x=\"1\"><b/>t &amp; u</a>").is_ok());
    for bad in [
        "<a><b></a>",
        "<a>",
        "<a x=1/>",
        "<a/><b/>",
        "<a>&nope;</a>",
        "<a>& b</a>",
        "<a x=\"1></a>",
    ] {
        assert!(check_xml(bad).is_err(), "{bad}");
    }
}

/// The scenarios tested below; a scenario file added to `scenarios/` must be added here too.
const SHIPPED: [&str; 16] = [
    "capped-leecher",
    "corrupt-peer",
    "disk-full",
    "flaky-disk",
    "flash-crowd",
    "flash-crowd-1000",
    "magnet",
    "multi-source",
    "partition",
    "pex-tracker-dies",
    "resume",
    "seeder-loss",
    "six-files",
    "tracker-restart",
    "trackerless",
    "udp-tracker",
];

#[test]
fn every_scenario_file_has_a_snapshot_test() {
    let mut found: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            if path.extension()? != "toml" {
                return None;
            }
            Some(path.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    found.sort();
    assert_eq!(
        found, SHIPPED,
        "scenarios/ and the tests in scenarios.rs differ"
    );
}

#[test]
fn capped_leecher() {
    check("capped-leecher");
}

#[test]
fn corrupt_peer() {
    check("corrupt-peer");
}

#[test]
fn disk_full() {
    check("disk-full");
}

#[test]
fn flaky_disk() {
    check("flaky-disk");
}

#[test]
fn flash_crowd() {
    let report = check("flash-crowd");
    let m = report.measures.expect("a one-file swarm has its measures");
    // The seed must upload one copy at 2 MB/s: 8 MiB / 2 MB/s = 4.194 s, above 20 copies over 21 uplinks.
    assert_eq!(m.optimum_seconds, Some(4.194));
    assert!(m.optimum_ratio.is_some_and(|r| r > 1.0), "{m:?}");
    assert_eq!(m.download_times.values().map(Vec::len).sum::<usize>(), 20);
    assert!(m.seed_copy_seconds.is_some_and(|t| t > 0.0));
    assert!(m.utilisation.is_some_and(|u| u > 0.0 && u <= 1.5), "{m:?}");
    let last_copies = m.copies_over_time.last().map(|c| (c.1, c.3));
    assert_eq!(last_copies, Some((21, 21)), "every peer holds every piece");
}

/// The 1,000-peer crowd on the flow engine (issue 13): everyone completes, and the run is pinned on every test
/// run (about a minute). Its whole summary is 16 MB of YAML, so the snapshot holds the headline figures and the
/// SHA-1 of the whole summary: a run that is not deterministic, or any change in the story, changes the digest.
#[test]
fn flash_crowd_1000() {
    use sha1::{Digest, Sha1};
    let report = run_with("flash-crowd-1000", &RunOptions::default());
    assert!(report.passed, "{}", report.render(false));
    let m = report
        .measures
        .clone()
        .expect("a one-file swarm has its measures");
    assert_eq!(m.download_times.values().map(Vec::len).sum::<usize>(), 1000);
    let last_copies = m.copies_over_time.last().map(|c| (c.1, c.3));
    assert_eq!(
        last_copies,
        Some((1001, 1001)),
        "every peer holds every piece"
    );
    let summary = report.summary();
    let bytes = serde_json::to_vec(&summary).expect("a summary serialises");
    let digest: String = Sha1::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let headline = serde_json::json!({
        "scenario": summary.scenario,
        "seed": summary.seed,
        "passed": summary.passed,
        "simulated_seconds": summary.simulated_seconds,
        "verdicts": summary.verdicts.len(),
        "story_lines": summary.story.len(),
        "last_completion_seconds": m.last_completion_seconds,
        "optimum_ratio": m.optimum_ratio,
        "utilisation": m.utilisation,
        "seed_copies": m.seed_copies,
        "summary_sha1": digest,
    });
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!("flash-crowd-1000", headline);
    });
}

#[test]
fn magnet() {
    let report = check("magnet");
    let story = report.story_lines(false).join("\n");
    for leecher in ["leecher-a", "leecher-b", "latecomer"] {
        assert!(
            story.contains(&format!(
                "{leecher:<10} album.flac: metadata received (25675 bytes, matches the info hash)"
            )),
            "{leecher} got the metadata from peers:\n{story}"
        );
    }
}

/// `--trace-kind metadata --trace-kind pex` shows the metadata phase and the peer exchange, message by
/// message, with hosts by name.
#[test]
fn the_trace_shows_metadata_requests_and_peer_exchange() {
    let report = run_with(
        "magnet",
        &RunOptions {
            trace: true,
            trace_filter: enjambre_sim::trace_filter::TraceFilter {
                kinds: vec!["metadata".into(), "pex".into()],
                ..Default::default()
            },
            ..RunOptions::default()
        },
    );
    let trace = report.story_lines(true).join("\n");
    for line in [
        "leecher-a  -> seeder ut_metadata request piece 0",
        "seeder     <- leecher-a ut_metadata request piece 1",
        "seeder     -> leecher-a ut_metadata data piece 1 (9291 bytes of 25675)",
        "leecher-a  <- seeder ut_metadata data piece 0 (16384 bytes of 25675)",
        "leecher-a  -> leecher-b ut_pex added seeder, dropped none",
        "leecher-b  <- seeder ut_pex added leecher-a, dropped none",
    ] {
        assert!(trace.contains(line), "no {line:?} in the trace:\n{trace}");
    }
    assert!(
        !trace.contains(" request piece 0 offset"),
        "only the kinds asked for"
    );
}

#[test]
fn multi_source() {
    check("multi-source");
}

#[test]
fn partition() {
    check("partition");
}

/// The latecomers know only the seeder (a magnet's peer hint) and the tracker is dead: whoever else they
/// got payload from, they learnt of through peer exchange.
#[test]
fn pex_tracker_dies() {
    let report = check("pex-tracker-dies");
    for p in report.peers.iter().filter(|p| p.peer.starts_with("late-")) {
        let met: Vec<&String> = p.files[0]
            .sources
            .keys()
            .filter(|s| *s != "seeder")
            .collect();
        assert!(
            met.len() >= 5,
            "{} got payload from {met:?} besides the seeder",
            p.peer
        );
    }
}

/// The same story with peer exchange off everywhere: each latecomer knows the seeder only, nobody knows the
/// latecomers, and when the seeder leaves they are stranded with part of the file.
#[test]
fn without_pex_the_latecomers_are_stranded_when_the_tracker_dies() {
    let mut scenario = load("pex-tracker-dies");
    for p in &mut scenario.peers {
        p.pex = Some(false);
    }
    scenario.duration = enjambre_sim::scenario::Span(std::time::Duration::from_secs(60));
    let report = run(&scenario, &RunOptions::default()).unwrap();
    let story = report.story_lines(false).join("\n");
    assert!(story.contains("seeder     LEAVES the swarm"), "{story}");
    for v in report.verdicts.iter().filter(|v| v.kind == "complete") {
        let late = v.expectation.starts_with("late-");
        assert_eq!(v.ok, !late, "{}: {}", v.expectation, v.seen);
    }
    for p in report.peers.iter().filter(|p| p.peer.starts_with("late-")) {
        let sources: Vec<&String> = p.files[0].sources.keys().collect();
        assert!(
            sources.iter().all(|s| *s == "seeder"),
            "{} met only the seeder: {sources:?}",
            p.peer
        );
    }
}

#[test]
fn resume() {
    check("resume");
}

#[test]
fn seeder_loss() {
    check("seeder-loss");
}

#[test]
fn six_files() {
    check("six-files");
}

#[test]
fn tracker_restart() {
    check("tracker-restart");
}

/// No tracker host: the crowd found the seeder through the DHT (the magnets carry no peer hint) and got the
/// metadata from peers.
#[test]
fn trackerless() {
    let report = check("trackerless");
    assert!(report.peers.iter().all(|p| p.peer != "tracker"));
    let story = report.story_lines(false).join("\n");
    assert!(
        !story.contains("tracker "),
        "no tracker in the story:\n{story}"
    );
    let crowd: Vec<_> = report
        .peers
        .iter()
        .filter(|p| p.peer.starts_with("crowd-"))
        .collect();
    assert_eq!(crowd.len(), 12);
    for p in crowd {
        assert!(
            story.contains(&format!("{:<10} distro.iso: metadata received", p.peer)),
            "{} got the metadata from peers",
            p.peer
        );
    }
}

/// A folder (a multi-file torrent) opens from its magnet too: the harness names the info hash of the torrent
/// `peer serve` makes of the folder (files in sorted path order, subfolders, an empty file).
#[test]
fn a_folder_opens_from_its_magnet() {
    let text = r#"
        name = "folder-magnet"
        seed = 3
        tracker = false
        [[file]]
        name = "album"
        files = [{ path = "b.flac", size = 300000 }, { path = "a.flac", size = 200000 },
                 { path = "sub/c.txt", size = 100 }, { path = "empty", size = 0 }]
        piece_size = "16KiB"
        [[peer]]
        name = "seeder"
        has = ["album"]
        [[peer]]
        name = "leecher"
        get = ["album"]
        magnet = true
        sources = ["seeder"]
        [expect]
        complete = ["leecher"]
    "#;
    let scenario = Scenario::from_toml(text).unwrap();
    let report = run(&scenario, &RunOptions::default()).unwrap();
    assert!(report.passed, "{}", report.render(false));
    let story = report.story_lines(false).join("\n");
    assert!(story.contains("album: metadata received"), "{story}");
}

/// `--trace-kind dht` shows every KRPC query and answer, with node ids and the info hash named: a lookup
/// can be followed as it converges on the seeder's announcement.
#[test]
fn the_trace_shows_every_krpc_query_and_answer() {
    let report = run_with(
        "trackerless",
        &RunOptions {
            trace: true,
            trace_filter: enjambre_sim::trace_filter::TraceFilter {
                kinds: vec!["dht".into()],
                peers: vec!["seeder".into()],
                ..Default::default()
            },
            ..RunOptions::default()
        },
    );
    let trace = report.story_lines(true).join("\n");
    for wanted in [
        "seeder     -> bootstrap krpc query find_node t=",
        "bootstrap  <- seeder krpc query get_peers t=",
        "(seeder) info_hash=",
        "(distro.iso)",
        "seeder     -> bootstrap krpc query announce_peer t=",
        "bootstrap  -> seeder krpc response t=",
        "seeder     DHT get_peers lookup of distro.iso done:",
    ] {
        assert!(
            trace.contains(wanted),
            "no {wanted:?} in the trace:\n{trace}"
        );
    }
    let krpc = trace.lines().filter(|l| l.contains(" krpc ")).count();
    assert!(krpc > 20, "{krpc} KRPC lines");
    assert!(
        trace
            .lines()
            .filter(|l| l.contains(" krpc "))
            .all(|l| l.contains("seeder")),
        "only the seeder's messages"
    );
}

#[test]
fn udp_tracker() {
    check("udp-tracker");
}

/// Invariant 6: the same scenario and seed give the same trace (every protocol message, with simulated times)
/// byte for byte; another seed tells another story.
#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let traced = |seed: Option<u64>| {
        let report = run_with(
            "corrupt-peer",
            &RunOptions {
                seed,
                trace: true,
                ..RunOptions::default()
            },
        );
        let trace = report.story_lines(true).join("\n");
        let json = serde_json::to_string(&report).unwrap();
        (trace, json, render_svg(&report))
    };
    let (trace_a, json_a, svg_a) = traced(None);
    let (trace_b, json_b, svg_b) = traced(None);
    assert!(svg_a == svg_b, "two timelines with the same seed differ");
    assert!(
        trace_a.lines().count() > 1000,
        "the trace holds every protocol message"
    );
    assert!(trace_a.contains("-> seeder-a request piece"));
    assert!(trace_a == trace_b, "two runs with the same seed differ");
    assert!(
        json_a == json_b,
        "two JSON reports with the same seed differ"
    );
    let (trace_c, _, _) = traced(Some(load("corrupt-peer").seed + 1));
    assert!(trace_a != trace_c, "another seed gave the same trace");
}
