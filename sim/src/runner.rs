//! Runs a scenario: builds the turmoil world, starts the hosts, steps the simulation, fires the story's
//! events when their time or condition comes, and stops once every expectation can be judged.

use crate::disk_space::DiskSpace;
use crate::report::{build_report, Report};
use crate::scenario::{Action, Condition, EventSpec, Scenario};
use crate::storage::{CorruptSwitch, FreeDiskSwitch};
use crate::turmoil_host::{tracker_program, PeerProgram};
use crate::world::{DiskTrip, MarkKind, Shared};
use enjambre_core::tracker::{Registry, RegistryConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a run deviates from the scenario file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Override the scenario's seed.
    pub seed: Option<u64>,
    /// Keep every protocol message in the log (the teaching trace).
    pub trace: bool,
    /// Additionally crash `peer` right after the simulation step that reaches this simulated time, and restart
    /// it a second later (crash sweeps). Nothing happens if the peer is not running then.
    pub crash: Option<(String, Duration)>,
    /// Write checkpoints before syncing their data (the crash sweep's self-test of a broken ordering).
    pub unsafe_checkpoint_before_sync: bool,
    /// Record the disk trips of this peer (crash sweeps aim between them).
    pub watch: Option<String>,
    /// Which trace lines to keep (with `trace`).
    pub trace_filter: crate::trace_filter::TraceFilter,
    /// Never ban a peer that sends bad data (a broken invariant 4: the explorer's second self-test).
    pub unsafe_never_ban: bool,
    /// Told where the run stands about once a second of wall time (`sim run` on a terminal).
    pub progress: crate::progress::ProgressSink,
}

/// What a run saw besides its report: material for crash sweeps.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Disk trips of the watched peer, stamped with the simulated time of the step they happened in.
    pub trips: Vec<(Duration, DiskTrip)>,
    /// Intervals during which the watched peer ran (the last one ends when the run ended).
    pub up: Vec<(Duration, Duration)>,
    /// For each peer, the most pieces that failed their hash check with a single sender in one boot, per
    /// sender (what invariant 4 says must end in a ban).
    pub blamed: BTreeMap<String, BTreeMap<String, u32>>,
    /// For each peer, the times each of its downloads stopped on a disk error (all boots), by file.
    pub disk_stalls: BTreeMap<String, BTreeMap<String, u32>>,
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

/// When a run stops: once it is settled (no scripted event pending, every expectation decided) and still
/// is [`SETTLE`] later, or at the scenario's end. Both engines' loops ask it after every step.
#[derive(Debug, Default)]
pub(crate) struct Settling {
    since: Option<Duration>,
}

impl Settling {
    /// Whether the run stops at `t`, given whether it is `settled` now and when the scenario `end`s.
    pub(crate) fn stop(&mut self, t: Duration, settled: bool, end: Duration) -> bool {
        self.since = if settled {
            self.since.or(Some(t))
        } else {
            None
        };
        self.since.is_some_and(|since| t >= since + SETTLE) || t >= end
    }
}

/// How long after a sweep crash the peer is started again.
pub const SWEEP_RESTART_DELAY: Duration = Duration::from_secs(1);

/// A scripted event and where it stands: armed when its condition first held, fired once.
pub(crate) struct Pending {
    pub(crate) spec: EventSpec,
    armed_at: Option<Duration>,
    pub(crate) fired_at: Option<Duration>,
}

/// The scenario's events, none armed or fired yet.
pub(crate) fn pending_events(scenario: &Scenario) -> Vec<Pending> {
    scenario
        .events
        .iter()
        .map(|e| Pending {
            spec: e.clone(),
            armed_at: None,
            fired_at: None,
        })
        .collect()
}

/// Fire, in order, every event due at `t` (by its time, after the previous one, or after its condition first
/// held), calling `fire` for each; both engines schedule events with it. An event fired here can make a later
/// one due in the same pass.
pub(crate) fn fire_due_events(
    pending: &mut [Pending],
    t: Duration,
    scenario: &Scenario,
    world: &Shared,
    mut fire: impl FnMut(&EventSpec),
) {
    for i in 0..pending.len() {
        if pending[i].fired_at.is_some() {
            continue;
        }
        let after = pending[i].spec.after.map_or(Duration::ZERO, |s| s.0);
        let due = if pending[i].spec.after_previous {
            i.checked_sub(1)
                .and_then(|j| pending[j].fired_at)
                .map(|prev| prev.saturating_add(after))
        } else if let Some(at) = pending[i].spec.at {
            Some(at.0.saturating_add(after))
        } else {
            if pending[i].armed_at.is_none() {
                if let Some(c) = &pending[i].spec.when {
                    if condition_holds(c, scenario, world) {
                        pending[i].armed_at = Some(t);
                    }
                }
            }
            pending[i].armed_at.map(|a| a.saturating_add(after))
        };
        if due.is_some_and(|d| t >= d) {
            let spec = pending[i].spec.clone();
            fire(&spec);
            pending[i].fired_at = Some(t);
        }
    }
}

/// Run `scenario` to its end and judge it.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, RunError> {
    run_observed(scenario, options).map(|(report, _)| report)
}

/// The simulation and everything the runner knows about its hosts.
struct Stage<'a> {
    sim: turmoil::Sim<'a>,
    scenario: Arc<Scenario>,
    world: Shared,
    programs: BTreeMap<String, PeerProgram>,
    switches: BTreeMap<String, CorruptSwitch>,
    free_disk: BTreeMap<String, FreeDiskSwitch>,
    /// Peers whose host exists in the simulation (started at least once).
    started: BTreeSet<String>,
}

/// Run `scenario` to its end, judge it, and return what was observed of the watched peer too.
pub fn run_observed(
    scenario: &Scenario,
    options: &RunOptions,
) -> Result<(Report, Observation), RunError> {
    if scenario.network.model == crate::scenario::NetworkModel::Flow {
        return crate::flow::runner::run(scenario, options);
    }
    // Wall time is measured for the report's last line only; nothing in the story depends on it.
    let wall = std::time::Instant::now();
    let seed = options.seed.unwrap_or(scenario.seed);
    let scenario = Arc::new(scenario.clone());
    let world = Shared::default();
    {
        let mut w = world.lock();
        w.trace = options.trace;
        w.trace_filter = options.trace_filter.clone();
        w.watch = options.watch.clone();
    }
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .simulation_duration(scenario.duration.0 + Duration::from_secs(60))
        .tick_duration(scenario.network.tick.0)
        .min_message_latency(scenario.network.latency.0)
        .max_message_latency(scenario.network.latency.0)
        .tcp_capacity(1024);
    builder.fs().sync_probability(scenario.disk.writeback);
    if let Some(block) = scenario.disk.torn_writes {
        builder.fs().block_size(block.0);
    }
    if scenario.disk.io_errors > 0.0 {
        builder.fs().io_error_probability(scenario.disk.io_errors);
    }
    let mut sim = builder.build();

    let registry = Arc::new(Mutex::new(Registry::new(RegistryConfig::default())));
    let config = scenario.tracker.registry_config();
    let max_connections = scenario.tracker.max_connections;
    if scenario.tracker.enabled {
        let registry = registry.clone();
        sim.host("tracker", move || {
            tracker_program(registry.clone(), config.clone(), seed, max_connections)
        });
    }
    let mut switches: BTreeMap<String, CorruptSwitch> = BTreeMap::new();
    let mut programs: BTreeMap<String, PeerProgram> = BTreeMap::new();
    let mut free_disk: BTreeMap<String, FreeDiskSwitch> = BTreeMap::new();
    for spec in &scenario.peers {
        let corrupt = CorruptSwitch::default();
        switches.insert(spec.name.clone(), corrupt.clone());
        let free = FreeDiskSwitch::default();
        free_disk.insert(spec.name.clone(), free.clone());
        programs.insert(
            spec.name.clone(),
            PeerProgram {
                scenario: scenario.clone(),
                spec: spec.clone(),
                seed,
                world: world.clone(),
                trace: options.trace,
                unsafe_checkpoint_before_sync: options.unsafe_checkpoint_before_sync,
                unsafe_never_ban: options.unsafe_never_ban,
                corrupt,
                free_disk: free,
                space: DiskSpace::new(scenario.disk.capacity.map(|c| c.0)),
            },
        );
    }
    let mut stage = Stage {
        sim,
        scenario: scenario.clone(),
        world: world.clone(),
        programs,
        switches,
        free_disk,
        started: BTreeSet::new(),
    };
    for spec in scenario.peers.iter().filter(|p| !p.delayed) {
        stage.start_peer(&spec.name);
    }
    {
        let mut w = world.lock();
        if scenario.tracker.enabled {
            w.hosts
                .insert(stage.sim.lookup("tracker"), "tracker".into());
        }
        for spec in &scenario.peers {
            w.hosts
                .insert(stage.sim.lookup(spec.name.as_str()), spec.name.clone());
        }
    }

    let mut pending = pending_events(&scenario);
    let mut extra_crash = options.crash.clone();
    let mut extra_restart: Option<(String, Duration)> = None;
    let mut settling = Settling::default();
    let mut progress = options.progress.clock();
    loop {
        stage
            .sim
            .step()
            .map_err(|e| RunError::Host(e.to_string()))?;
        let t = stage.sim.elapsed();
        world.lock().stamp_trips(t);
        progress.tick(|| crate::progress::Progress::of(&world.lock(), t));
        stage.fire_due_events(&mut pending, t);
        if let Some((peer, at)) = extra_crash.clone() {
            if t >= at {
                extra_crash = None;
                if stage.is_up(&peer) {
                    stage.crash_peer(&peer, t, "sweep: CRASH");
                    extra_restart = Some((peer, t + SWEEP_RESTART_DELAY));
                } else {
                    world.lock().note(
                        t,
                        &peer,
                        true,
                        "sweep: not running at this instant, no crash".into(),
                    );
                }
            }
        }
        if let Some((peer, at)) = extra_restart.clone() {
            if t >= at {
                extra_restart = None;
                stage.restart_peer(&peer, t, "sweep: restarting on the same disk");
            }
        }
        let settled = pending.iter().all(|p| p.fired_at.is_some())
            && extra_crash.is_none()
            && extra_restart.is_none()
            && expectations_decided(&scenario, &world, false);
        if settling.stop(t, settled, scenario.duration.0) {
            break;
        }
    }
    let elapsed = stage.sim.elapsed();
    let report = build_report(&scenario, seed, &world, elapsed, wall.elapsed());
    let observation = {
        let w = world.lock();
        let watched = options.watch.as_ref().and_then(|p| w.peers.get(p));
        let mut up = watched.map(|p| p.up_intervals.clone()).unwrap_or_default();
        if let Some(since) = watched.and_then(|p| p.up_since) {
            up.push((since, elapsed));
        }
        Observation {
            trips: w.trips.clone(),
            up,
            blamed: w
                .peers
                .iter()
                .map(|(name, p)| (name.clone(), p.blamed_most.clone()))
                .collect(),
            disk_stalls: w
                .peers
                .iter()
                .map(|(name, p)| (name.clone(), p.disk_stalls.clone()))
                .collect(),
        }
    };
    Ok((report, observation))
}

impl Stage<'_> {
    fn note(&self, t: Duration, host: &str, text: String) {
        self.world.lock().note(t, host, true, text);
    }

    fn is_up(&self, peer: &str) -> bool {
        self.world.lock().peers.get(peer).is_some_and(|p| p.up)
    }

    fn start_peer(&mut self, name: &str) {
        let Some(program) = self.programs.get(name).cloned() else {
            return;
        };
        self.started.insert(name.to_string());
        self.sim.host(name, move || program.clone().run());
    }

    /// Mark a peer down in the world (its host was crashed, or is about to be bounced).
    fn mark_down(&self, peer: &str, t: Duration) {
        let mut w = self.world.lock();
        if let Some(p) = w.peers.get_mut(peer) {
            p.mark_down(t);
        }
    }

    fn mark(&self, t: Duration, host: &str, kind: MarkKind) {
        self.world.lock().mark(t, host, kind);
    }

    fn crash_peer(&mut self, peer: &str, t: Duration, why: &str) {
        self.sim.crash(peer);
        self.mark_down(peer, t);
        self.mark(t, peer, MarkKind::Crash);
        self.note(t, peer, format!("{why} (unsynced writes are lost)"));
    }

    fn restart_peer(&mut self, peer: &str, t: Duration, why: &str) {
        if self.is_up(peer) {
            // Restarting a running host crashes it first.
            self.mark_down(peer, t);
            self.note(t, peer, "still running: crashed first".into());
        }
        self.note(t, peer, why.to_string());
        self.mark(t, peer, MarkKind::Restart);
        self.sim.bounce(peer);
    }

    fn fire_due_events(&mut self, pending: &mut [Pending], t: Duration) {
        let (scenario, world) = (Arc::clone(&self.scenario), self.world.clone());
        fire_due_events(pending, t, &scenario, &world, |spec| self.apply(spec, t));
    }

    /// Hosts running in the simulation other than `me`: `from` if given, else the tracker and every started
    /// peer. Links only exist between started hosts.
    fn others(&self, me: &str, from: &[String]) -> Vec<String> {
        let tracker = self.scenario.tracker.enabled.then(|| "tracker".to_string());
        let all: Vec<String> = tracker
            .into_iter()
            .chain(self.started.iter().cloned())
            .filter(|h| h != me)
            .collect();
        if from.is_empty() {
            all
        } else {
            from.iter().filter(|h| all.contains(h)).cloned().collect()
        }
    }

    fn apply(&mut self, e: &EventSpec, t: Duration) {
        let peer = e.peer.clone().unwrap_or_default();
        let needs_host = matches!(
            e.action,
            Action::Crash
                | Action::Restart
                | Action::Partition
                | Action::Heal
                | Action::Latency
                | Action::Corrupt
        );
        if needs_host && !self.started.contains(&peer) {
            self.note(
                t,
                &peer,
                format!("{}: has not started yet, nothing happens", e.action.name()),
            );
            return;
        }
        match e.action {
            Action::Crash => {
                if self.is_up(&peer) {
                    self.crash_peer(&peer, t, "CRASH");
                } else {
                    self.note(t, &peer, "crash: already down, nothing happens".into());
                }
            }
            Action::Restart => self.restart_peer(&peer, t, "restarting on the same disk"),
            Action::Start => {
                if self.started.contains(&peer) {
                    self.note(t, &peer, "start: already started, nothing happens".into());
                } else {
                    self.note(t, &peer, "joining the swarm".into());
                    self.mark(t, &peer, MarkKind::Start);
                    self.start_peer(&peer);
                }
            }
            Action::Partition => {
                let others = self.others(&peer, &e.from);
                self.note(t, &peer, format!("PARTITIONED from {}", others.join(", ")));
                self.mark(t, &peer, MarkKind::Partition);
                for o in others {
                    self.sim.partition(peer.as_str(), o.as_str());
                }
            }
            Action::Heal => {
                let others = self.others(&peer, &e.from);
                self.note(
                    t,
                    &peer,
                    format!("partition healed ({})", others.join(", ")),
                );
                self.mark(t, &peer, MarkKind::Heal);
                for o in others {
                    self.sim.repair(peer.as_str(), o.as_str());
                }
            }
            Action::TrackerDown => {
                self.note(t, "tracker", "TRACKER DOWN".into());
                self.mark(t, "tracker", MarkKind::TrackerDown);
                self.sim.crash("tracker");
            }
            Action::TrackerUp => {
                self.note(
                    t,
                    "tracker",
                    "tracker back up (swarm forgotten, catalog kept)".into(),
                );
                self.mark(t, "tracker", MarkKind::TrackerUp);
                self.sim.bounce("tracker");
            }
            Action::Corrupt => {
                if let Some(s) = self.switches.get(&peer) {
                    s.turn_on();
                }
                if let Some(p) = self.world.lock().peers.get_mut(&peer) {
                    p.corrupt = true;
                }
                self.note(
                    t,
                    &peer,
                    "turns CORRUPT: serves wrong bytes from now on".into(),
                );
                self.mark(t, &peer, MarkKind::Corrupt);
            }
            Action::FreeDisk => {
                if let Some(s) = self.free_disk.get(&peer) {
                    s.turn_on();
                }
                self.note(
                    t,
                    &peer,
                    "another program's data is deleted: SPACE RETURNS".into(),
                );
                self.mark(t, &peer, MarkKind::DiskFreed);
            }
            Action::Leave => {
                // Its host stops for good; a departure, not a fault, so the timeline marks no crash (the
                // flow engine's leave does the same).
                if self.is_up(&peer) {
                    self.sim.crash(peer.as_str());
                    self.mark_down(&peer, t);
                    self.note(t, &peer, "LEAVES the swarm".into());
                }
            }
            Action::Latency => {
                let d = e.latency.map_or(Duration::ZERO, |s| s.0);
                let others = self.others(&peer, &[]);
                self.note(t, &peer, format!("link latency now {} ms", d.as_millis()));
                for o in others {
                    self.sim.set_link_latency(peer.as_str(), o.as_str(), d);
                }
            }
        }
    }
}

/// Whether a story's condition holds now (shared by both engines).
pub(crate) fn condition_holds(c: &Condition, scenario: &Scenario, world: &Shared) -> bool {
    let w = world.lock();
    let Some(p) = w.peers.get(&c.peer) else {
        return false;
    };
    // The disk is the peer's, not one download's: without a `file`, any download stalling on it counts.
    if c.disk_stalled && c.file.is_none() {
        return p.disk_stalls.values().any(|n| *n > 0);
    }
    if let Some(n) = c.checkpoints {
        return p.checkpoints_replaced >= n;
    }
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
    if c.disk_stalled {
        return p.disk_stalls.get(&file).is_some_and(|n| *n > 0);
    }
    if let Some(n) = c.pieces {
        return durable >= n;
    }
    if let Some(pct) = c.percent {
        return total > 0 && f64::from(durable) * 100.0 / f64::from(total) >= pct;
    }
    false
}

/// True once every `complete` expectation is met (digests read back) so the run can stop early. With
/// `departed_count`, a peer that completed and then went away counts as decided (the flow engine's members
/// leave after completing); without it the peer must also be up.
pub(crate) fn expectations_decided(
    scenario: &Scenario,
    world: &Shared,
    departed_count: bool,
) -> bool {
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
        (departed_count || p.up) && spec.get.iter().all(|f| p.digests.contains_key(f))
    })
}
