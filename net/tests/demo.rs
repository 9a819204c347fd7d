//! The demo's story at small sizes: tracker, three peers, C killed half-way and resumed, every copy verified.

use enjambre_net::demo::{run_demo, DemoConfig, DemoOut};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_story_runs_at_small_sizes() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let out: DemoOut = Arc::new(move |text| sink.lock().unwrap().push(text.to_string()));
    let config = DemoConfig::small();
    let files = config.files.len();
    let summary = match run_demo(config, out).await {
        Ok(s) => s,
        Err(e) => panic!("demo failed: {e}\n{}", lines.lock().unwrap().join("\n")),
    };
    let text = lines.lock().unwrap().join("\n");
    assert_eq!(summary.verified_files, files, "{text}");
    assert!(summary.killed_at >= summary.big_pieces / 2, "{summary:?}");
    assert!(summary.killed_at < summary.big_pieces, "{summary:?}");
    assert!(summary.resumed >= summary.durable_at_kill, "{summary:?}");
    assert!(text.contains("C resumes movie.mp4"), "{text}");
    assert!(summary.c_sources.contains_key("A"), "{summary:?}");
    assert!(
        text.contains("NODE (IP:PORT)"),
        "no swarm table printed:\n{text}"
    );
    assert!(text.contains("A = B = C"), "{text}");
    assert!(!summary.dir.exists(), "temporary folder left behind");
}
