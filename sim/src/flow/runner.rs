//! Runs a scenario on the flow engine: one tokio current-thread runtime in paused time for every host, the
//! flow network ([`super::net`]) and lazy disks ([`super::disk`]). The hosts run the real tracker server and
//! the real peer driver of enjambre-net; the story's events and the report are the turmoil runner's.
//!
//! Determinism: one thread; tokio's scheduler is FIFO and its paused clock jumps to the next timer when every
//! task is idle; every `select!` on the drivers' paths is `biased`; no blocking pool (disk work and hashing
//! run inline); the network's events are ordered by (time, sequence number); every map is a `BTreeMap`.

use super::disk::{ContentId, LazyDisk};
use super::net::{Capacity, HostId, Net};
use super::transport::FlowTransport;
use crate::host::{run_peer, HostPlan, Observer, DATA_DIR};
use crate::progress::{Progress, ProgressClock};
use crate::report::{build_report, Report};
use crate::runner::{
    expectations_decided, fire_due_events, pending_events, Observation, RunError, RunOptions,
    Settling,
};
use crate::scenario::{Action, EventSpec, PeerSpec, Scenario};
use crate::storage::CorruptSwitch;
use crate::tracker_host::{reboot_registry, run_tracker};
use crate::world::{MarkKind, Shared};
use enjambre_core::tracker::{Registry, RegistryConfig};
use enjambre_net::clock::Clock;
use enjambre_net::peer::PeerEnv;
use enjambre_net::storage::{Inline, Storage};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Capacity of a link with no rate in the scenario (and of the tracker): 1 GB/s each way.
const UNLIMITED: f64 = 1e9;

/// How often the runner looks at the story (fires due events, checks whether it is decided).
const STEP: Duration = Duration::from_millis(50);

/// Why a scenario cannot run on the flow engine, if it cannot: packet-level faults, crashes (losing
/// unsynced writes) and disk faults are turmoil's.
pub fn unsupported(s: &Scenario) -> Option<String> {
    if let Some(e) = s.events.iter().find(|e| {
        matches!(
            e.action,
            Action::Partition
                | Action::Heal
                | Action::Latency
                | Action::FreeDisk
                | Action::Crash
                | Action::Restart
        )
    }) {
        return Some(format!("the `{}` event", e.action.name()));
    }
    let d = &s.disk;
    if d.writeback > 0.0 || d.torn_writes.is_some() || d.io_errors > 0.0 || d.capacity.is_some() {
        return Some("[disk] faults".into());
    }
    if s.peers.iter().any(|p| p.disk_free.is_some()) {
        return Some("`disk_free`".into());
    }
    None
}

fn elapsed(net: &Net) -> Duration {
    Duration::from_nanos(net.now())
}

/// What every host program needs.
#[derive(Clone)]
struct Ctx {
    scenario: Arc<Scenario>,
    seed: u64,
    world: Shared,
    net: Net,
    trace: bool,
    contents: Arc<BTreeMap<PathBuf, ContentId>>,
}

/// A peer host across its boots.
struct Host {
    id: HostId,
    spec: PeerSpec,
    disk: LazyDisk,
    corrupt: CorruptSwitch,
    running: Option<JoinHandle<()>>,
}

/// Run `scenario` on the flow engine and judge it.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<(Report, Observation), RunError> {
    let wall = std::time::Instant::now();
    let seed = options.seed.unwrap_or(scenario.seed);
    if let Some(why) = unsupported(scenario) {
        return Err(RunError::Host(format!(
            "the flow engine cannot run {why}: use `[network] model = \"turmoil\"`"
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| RunError::Host(format!("cannot build the runtime: {e}")))?;
    let scenario = Arc::new(scenario.clone());
    let world = Shared::default();
    {
        let mut w = world.lock();
        w.trace = options.trace;
        w.trace_filter = options.trace_filter.clone();
    }
    let local = tokio::task::LocalSet::new();
    let end = runtime.block_on(local.run_until(story(
        scenario.clone(),
        seed,
        world.clone(),
        options.trace,
        options.progress.clock(),
    )));
    drop(local);
    drop(runtime);
    let report = build_report(&scenario, seed, &world, end, wall.elapsed());
    Ok((report, Observation::default()))
}

async fn story(
    scenario: Arc<Scenario>,
    seed: u64,
    world: Shared,
    trace: bool,
    mut progress: ProgressClock,
) -> Duration {
    let net = Net::new(scenario.network.latency.0);
    tokio::spawn(net.clone().pump());
    let big = Capacity {
        up: UNLIMITED,
        down: UNLIMITED,
    };
    let tracker = net.add_host("tracker", big);
    world.lock().hosts.insert(net.ip(tracker), "tracker".into());
    let contents: BTreeMap<PathBuf, ContentId> = scenario
        .files
        .iter()
        .flat_map(|f| f.parts())
        .map(|(name, _)| {
            (
                PathBuf::from(DATA_DIR).join(&name),
                ContentId { seed, name },
            )
        })
        .collect();
    let ctx = Ctx {
        scenario: scenario.clone(),
        seed,
        world: world.clone(),
        net: net.clone(),
        trace,
        contents: Arc::new(contents),
    };
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    for spec in &scenario.peers {
        let cap = Capacity {
            up: spec.upload_rate.map_or(UNLIMITED, |r| r.0 as f64),
            down: spec.download_rate.map_or(UNLIMITED, |r| r.0 as f64),
        };
        let id = net.add_host(&spec.name, cap);
        world.lock().hosts.insert(net.ip(id), spec.name.clone());
        hosts.insert(
            spec.name.clone(),
            Host {
                id,
                spec: spec.clone(),
                disk: LazyDisk::new(ctx.contents.clone()),
                corrupt: CorruptSwitch::default(),
                running: None,
            },
        );
    }
    let registry = Arc::new(Mutex::new(Registry::new(RegistryConfig::default())));
    let mut tracker_task = scenario
        .tracker
        .enabled
        .then(|| start_tracker(&ctx, tracker, registry.clone()));
    for spec in scenario.peers.iter().filter(|p| !p.delayed) {
        if let Some(h) = hosts.get_mut(&spec.name) {
            start_peer(&ctx, h);
        }
    }
    let mut pending = pending_events(&scenario);
    let mut settling = Settling::default();
    loop {
        tokio::time::sleep(STEP).await;
        let t = elapsed(&net);
        progress.tick(|| Progress::of(&world.lock(), t));
        fire_due_events(&mut pending, t, &scenario, &world, |spec| {
            apply(
                &ctx,
                &mut hosts,
                spec,
                t,
                tracker,
                &registry,
                &mut tracker_task,
            )
        });
        let settled = pending.iter().all(|p| p.fired_at.is_some())
            && expectations_decided(&scenario, &world, true);
        if settling.stop(t, settled, scenario.duration.0) {
            break;
        }
    }
    elapsed(&net)
}

fn note(ctx: &Ctx, t: Duration, host: &str, text: String) {
    ctx.world.lock().note(t, host, true, text);
}

fn mark_down(ctx: &Ctx, peer: &str, t: Duration) {
    let mut w = ctx.world.lock();
    if let Some(p) = w.peers.get_mut(peer) {
        p.mark_down(t);
    }
}

/// Stop a peer's host: its program is dropped (the peer node stops with its handle) and its connections
/// are reset.
fn stop_peer(ctx: &Ctx, h: &mut Host, t: Duration) {
    let Some(task) = h.running.take() else {
        return;
    };
    task.abort();
    ctx.net.crash(h.id);
    mark_down(ctx, &h.spec.name, t);
}

#[allow(clippy::too_many_arguments)]
fn apply(
    ctx: &Ctx,
    hosts: &mut BTreeMap<String, Host>,
    e: &EventSpec,
    t: Duration,
    tracker: HostId,
    registry: &Arc<Mutex<Registry>>,
    tracker_task: &mut Option<JoinHandle<()>>,
) {
    let name = e.peer.clone().unwrap_or_default();
    match e.action {
        Action::TrackerDown => {
            note(ctx, t, "tracker", "TRACKER DOWN".into());
            ctx.world.lock().mark(t, "tracker", MarkKind::TrackerDown);
            if let Some(task) = tracker_task.take() {
                task.abort();
            }
            ctx.net.crash(tracker);
            return;
        }
        Action::TrackerUp => {
            note(
                ctx,
                t,
                "tracker",
                "tracker back up (swarm forgotten, catalog kept)".into(),
            );
            ctx.world.lock().mark(t, "tracker", MarkKind::TrackerUp);
            if tracker_task.is_none() {
                *tracker_task = Some(start_tracker(ctx, tracker, registry.clone()));
            }
            return;
        }
        _ => {}
    }
    let Some(h) = hosts.get_mut(&name) else {
        return;
    };
    let up = h.running.is_some();
    match e.action {
        Action::Start if !up => {
            note(ctx, t, &name, "joining the swarm".into());
            ctx.world.lock().mark(t, &name, MarkKind::Start);
            start_peer(ctx, h);
        }
        Action::Crash if up => {
            stop_peer(ctx, h, t);
            ctx.world.lock().mark(t, &name, MarkKind::Crash);
            note(ctx, t, &name, "CRASH".into());
        }
        Action::Restart => {
            if up {
                stop_peer(ctx, h, t);
            }
            note(ctx, t, &name, "restarting on the same disk".into());
            ctx.world.lock().mark(t, &name, MarkKind::Restart);
            start_peer(ctx, h);
        }
        Action::Leave if up => {
            note(ctx, t, &name, "LEAVES the swarm".into());
            stop_peer(ctx, h, t);
        }
        Action::Corrupt => {
            h.corrupt.turn_on();
            if let Some(p) = ctx.world.lock().peers.get_mut(&name) {
                p.corrupt = true;
            }
            note(
                ctx,
                t,
                &name,
                "turns CORRUPT: serves wrong bytes from now on".into(),
            );
            ctx.world.lock().mark(t, &name, MarkKind::Corrupt);
        }
        _ => note(
            ctx,
            t,
            &name,
            format!("{}: nothing happens", e.action.name()),
        ),
    }
}

fn start_tracker(ctx: &Ctx, host: HostId, registry: Arc<Mutex<Registry>>) -> JoinHandle<()> {
    reboot_registry(&registry, ctx.scenario.tracker.registry_config());
    let transport = FlowTransport::new(ctx.net.clone(), host);
    let seed = ctx.seed;
    let max_connections = ctx.scenario.tracker.max_connections;
    tokio::spawn(async move {
        let _ = run_tracker(transport, registry, seed, max_connections).await;
    })
}

fn start_peer(ctx: &Ctx, h: &mut Host) {
    let name = h.spec.name.clone();
    let t = elapsed(&ctx.net);
    let boot = ctx.world.lock().boot(t, &name);
    ctx.world.lock().note(
        t,
        &name,
        true,
        if boot == 1 {
            "started".into()
        } else {
            format!("restarted (boot {boot})")
        },
    );
    let dir = PathBuf::from(DATA_DIR);
    if boot == 1 {
        // The user's own files are there before the peer starts: placed at no cost (generated content).
        for file in &h.spec.has {
            for (part, size) in ctx
                .scenario
                .file(file)
                .map(|f| f.parts())
                .unwrap_or_default()
            {
                h.disk.install(&dir.join(part), size);
            }
        }
    }
    let storage: Arc<dyn Storage> = Arc::new(h.corrupt.wrap(h.disk.clone()));
    let env = PeerEnv {
        transport: FlowTransport::new(ctx.net.clone(), h.id),
        blocking: Inline,
        storage,
        clock: Clock::new(),
    };
    let net = ctx.net.clone();
    let mut plan = HostPlan::new(&ctx.scenario, &h.spec, ctx.seed, boot, ctx.trace, |host| {
        net.resolve(host)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    });
    plan.app.peer.node.trace &= ctx.world.lock().trace_filter.traces_host(&name);
    let observer = Observer {
        world: ctx.world.clone(),
        host: name.clone(),
        now: Arc::new(move || elapsed(&net)),
    };
    let ctx = ctx.clone();
    // A local task: the host program's future is not provably `Send` for every lifetime (rustc's
    // higher-ranked inference), and everything runs on this one thread anyway.
    let task = tokio::task::spawn_local(async move {
        if let Err(e) = run_peer(env, plan, observer).await {
            note(&ctx, elapsed(&ctx.net), &name, format!("cannot run: {e}"));
        }
    });
    h.running = Some(task);
}
