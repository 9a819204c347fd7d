//! Runs a scenario: builds the turmoil world, starts the hosts, steps the simulation, fires the story's
//! events when their time or condition comes, and stops once every expectation can be judged.

use crate::host::{tracker_program, PeerProgram, PEER_PORT};
use crate::report::{build_report, Report};
use crate::scenario::{Action, Condition, EventSpec, Scenario};
use crate::storage::CorruptSwitch;
use crate::world::Shared;
use enjambre_core::tracker::{Registry, RegistryConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a run deviates from the scenario file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Override the scenario's seed.
    pub seed: Option<u64>,
    /// Keep every protocol message in the log (the teaching trace).
    pub trace: bool,
    /// Additionally crash `peer` at this simulated time and restart it a second later (crash sweeps).
    pub crash: Option<(String, Duration)>,
    /// Write checkpoints before syncing their data (the crash sweep's self-test of a broken ordering).
    pub unsafe_checkpoint_before_sync: bool,
}

/// Errors that stop a run before it can be judged.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A host's software failed.
    #[error("host failed: {0}")]
    Host(String),
}

/// Simulated time a story keeps going after everything expected has happened, so late events show.
const SETTLE: Duration = Duration::from_millis(500);

struct Pending {
    spec: EventSpec,
    armed_at: Option<Duration>,
    fired_at: Option<Duration>,
}

/// Run `scenario` to its end and judge it.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, RunError> {
    let wall = std::time::Instant::now();
    let seed = options.seed.unwrap_or(scenario.seed);
    let scenario = Arc::new(scenario.clone());
    let world = Shared::default();
    world.lock().trace = options.trace;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(scenario.duration.0 + Duration::from_secs(60))
        .tick_duration(scenario.network.tick.0)
        .min_message_latency(scenario.network.latency.0)
        .max_message_latency(scenario.network.latency.0)
        .tcp_capacity(1024)
        .build();

    let registry = Arc::new(Mutex::new(Registry::new(RegistryConfig::default())));
    let interval = scenario.tracker.interval.0;
    {
        let registry = registry.clone();
        sim.host("tracker", move || {
            tracker_program(registry.clone(), interval, seed)
        });
    }
    let mut switches: BTreeMap<String, CorruptSwitch> = BTreeMap::new();
    let mut programs: BTreeMap<String, PeerProgram> = BTreeMap::new();
    for spec in &scenario.peers {
        let corrupt = CorruptSwitch::default();
        switches.insert(spec.name.clone(), corrupt.clone());
        programs.insert(
            spec.name.clone(),
            PeerProgram {
                scenario: scenario.clone(),
                spec: spec.clone(),
                seed,
                world: world.clone(),
                trace: options.trace,
                unsafe_order: options.unsafe_checkpoint_before_sync,
                corrupt,
            },
        );
    }
    for spec in scenario.peers.iter().filter(|p| !p.delayed) {
        start_peer(&mut sim, &programs[&spec.name]);
    }
    {
        let mut w = world.lock();
        w.hosts.insert(sim.lookup("tracker"), "tracker".into());
        for spec in &scenario.peers {
            w.hosts
                .insert(sim.lookup(spec.name.as_str()), spec.name.clone());
        }
    }

    let mut pending: Vec<Pending> = scenario
        .events
        .iter()
        .map(|e| Pending {
            spec: e.clone(),
            armed_at: None,
            fired_at: None,
        })
        .collect();
    let mut extra_crash = options.crash.clone();
    let mut extra_restart: Option<(String, Duration)> = None;
    let mut done_at: Option<Duration> = None;
    loop {
        sim.step().map_err(|e| RunError::Host(e.to_string()))?;
        let t = sim.elapsed();
        fire_due_events(&mut sim, &world, &programs, &switches, &mut pending, t);
        if let Some((peer, at)) = extra_crash.clone() {
            if t >= at {
                crash_peer(&mut sim, &world, &peer, t, "sweep: crash");
                extra_restart = Some((peer, t + Duration::from_secs(1)));
                extra_crash = None;
            }
        }
        if let Some((peer, at)) = extra_restart.clone() {
            if t >= at {
                world.lock().note(t, &peer, true, "sweep: restart".into());
                sim.bounce(peer.as_str());
                extra_restart = None;
            }
        }
        let settled = pending.iter().all(|p| p.fired_at.is_some())
            && extra_crash.is_none()
            && extra_restart.is_none()
            && expectations_decided(&scenario, &world);
        match (settled, done_at) {
            (true, None) => done_at = Some(t),
            (false, _) => done_at = None,
            (true, Some(d)) if t >= d + SETTLE => break,
            _ => {}
        }
        if t >= scenario.duration.0 {
            break;
        }
    }
    let elapsed = sim.elapsed();
    Ok(build_report(
        &scenario,
        seed,
        &world,
        elapsed,
        wall.elapsed(),
    ))
}

fn start_peer(sim: &mut turmoil::Sim<'_>, program: &PeerProgram) {
    let program = program.clone();
    sim.host(program.spec.name.clone().as_str(), move || {
        program.clone().run()
    });
}

fn crash_peer(sim: &mut turmoil::Sim<'_>, world: &Shared, peer: &str, t: Duration, why: &str) {
    sim.crash(peer);
    let mut w = world.lock();
    if let Some(p) = w.peers.get_mut(peer) {
        p.up = false;
    }
    w.note(t, peer, true, format!("{why} (unsynced writes are lost)"));
}

fn condition_holds(c: &Condition, scenario: &Scenario, world: &Shared) -> bool {
    let w = world.lock();
    let Some(p) = w.peers.get(&c.peer) else {
        return false;
    };
    let file = c
        .file
        .clone()
        .or_else(|| scenario.peer(&c.peer).and_then(|s| s.get.first().cloned()));
    let Some(file) = file else { return false };
    let durable = p.durable.get(&file).copied().unwrap_or(0);
    let total = p.stats.get(&file).map_or(0, |s| s.pieces_total);
    if c.complete {
        return p.completed_at.contains_key(&file);
    }
    if let Some(n) = c.pieces {
        return durable >= n;
    }
    if let Some(pct) = c.percent {
        return total > 0 && f64::from(durable) * 100.0 / f64::from(total) >= pct;
    }
    false
}

fn fire_due_events(
    sim: &mut turmoil::Sim<'_>,
    world: &Shared,
    programs: &BTreeMap<String, PeerProgram>,
    switches: &BTreeMap<String, CorruptSwitch>,
    pending: &mut [Pending],
    t: Duration,
) {
    for i in 0..pending.len() {
        if pending[i].fired_at.is_some() {
            continue;
        }
        let after = pending[i].spec.after.map_or(Duration::ZERO, |s| s.0);
        let due = if pending[i].spec.after_previous {
            i.checked_sub(1)
                .and_then(|j| pending[j].fired_at)
                .map(|prev| prev + after)
        } else if let Some(at) = pending[i].spec.at {
            Some(at.0 + after)
        } else {
            let Some(scenario) = programs.values().next().map(|p| p.scenario.clone()) else {
                return;
            };
            if pending[i].armed_at.is_none() {
                if let Some(c) = &pending[i].spec.when {
                    if condition_holds(c, &scenario, world) {
                        pending[i].armed_at = Some(t);
                    }
                }
            }
            pending[i].armed_at.map(|a| a + after)
        };
        if due.is_some_and(|d| t >= d) {
            apply(sim, world, programs, switches, &pending[i].spec, t);
            pending[i].fired_at = Some(t);
        }
    }
}

fn other_hosts(programs: &BTreeMap<String, PeerProgram>, me: &str, from: &[String]) -> Vec<String> {
    if !from.is_empty() {
        return from.to_vec();
    }
    std::iter::once("tracker".to_string())
        .chain(programs.keys().cloned())
        .filter(|h| h != me)
        .collect()
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    world: &Shared,
    programs: &BTreeMap<String, PeerProgram>,
    switches: &BTreeMap<String, CorruptSwitch>,
    e: &EventSpec,
    t: Duration,
) {
    let peer = e.peer.clone().unwrap_or_default();
    let note = |text: String| {
        world.lock().note(
            t,
            if peer.is_empty() { "tracker" } else { &peer },
            true,
            text,
        )
    };
    match e.action {
        Action::Crash => crash_peer(sim, world, &peer, t, "CRASH"),
        Action::Restart => {
            note("restarting on the same disk".into());
            sim.bounce(peer.as_str());
        }
        Action::Start => {
            if let Some(p) = programs.get(&peer) {
                note("joining the swarm".into());
                start_peer(sim, p);
            }
        }
        Action::Partition => {
            let others = other_hosts(programs, &peer, &e.from);
            note(format!("PARTITIONED from {}", others.join(", ")));
            for o in others {
                sim.partition(peer.as_str(), o.as_str());
            }
        }
        Action::Heal => {
            let others = other_hosts(programs, &peer, &e.from);
            note(format!("partition healed ({})", others.join(", ")));
            for o in others {
                sim.repair(peer.as_str(), o.as_str());
            }
        }
        Action::TrackerDown => {
            note("TRACKER DOWN".into());
            sim.crash("tracker");
        }
        Action::TrackerUp => {
            note("tracker back up (swarm forgotten, catalog kept)".into());
            sim.bounce("tracker");
        }
        Action::Corrupt => {
            if let Some(s) = switches.get(&peer) {
                s.turn_on();
            }
            if let Some(p) = world.lock().peers.get_mut(&peer) {
                p.corrupt = true;
            }
            note("turns CORRUPT: serves wrong bytes from now on".into());
        }
        Action::Latency => {
            let d = e.latency.map_or(Duration::ZERO, |s| s.0);
            let others = other_hosts(programs, &peer, &[]);
            note(format!("link latency now {} ms", d.as_millis()));
            for o in others {
                sim.set_link_latency(peer.as_str(), o.as_str(), d);
            }
        }
    }
}

/// True once every `complete` expectation is met (digests read back) so the run can stop early.
fn expectations_decided(scenario: &Scenario, world: &Shared) -> bool {
    let w = world.lock();
    let wanted: Vec<&String> = if scenario.expect.complete.is_empty() {
        scenario
            .peers
            .iter()
            .filter(|p| !p.get.is_empty())
            .map(|p| &p.name)
            .collect()
    } else {
        scenario.expect.complete.iter().collect()
    };
    wanted.iter().all(|name| {
        let Some(spec) = scenario.peer(name) else {
            return true;
        };
        let Some(p) = w.peers.get(*name) else {
            return false;
        };
        p.up && spec.get.iter().all(|f| p.digests.contains_key(f))
    })
}

/// Address of a simulated peer (for matching ban lists).
pub fn peer_addr(sim_ip: std::net::IpAddr) -> SocketAddr {
    SocketAddr::new(sim_ip, PEER_PORT)
}
