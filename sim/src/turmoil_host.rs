//! The turmoil engine's layer of a host: what a turmoil host closure runs. The tracker host runs the real
//! tracker server on turmoil's network; a peer host sets up its simulated disk (capacity, faults, the
//! other program's data filling it, the corrupt switch), places the user's files in its folder, then runs
//! the engine-independent [`run_peer`] program on turmoil's transport. A restarted host runs this again on
//! the disk that survived.

use crate::content;
use crate::disk_space::DiskSpace;
use crate::host::{harness_io, run_peer, HostPlan, Observer, DATA_DIR};
use crate::scenario::{PeerSpec, Scenario};
use crate::storage::{CorruptSwitch, DiskProbe, FreeDiskSwitch, SimDisk, SimStorage};
use crate::tracker_host::{reboot_registry, run_tracker};
use crate::transport::SimTransport;
use crate::world::{sim_now, Shared};
use enjambre_core::tracker::{Registry, RegistryConfig};
use enjambre_net::clock::Clock;
use enjambre_net::peer::PeerEnv;
use enjambre_net::storage::{Storage, Watched};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tracker host: the real tracker on turmoil's network (see [`run_tracker`]). Its swarm is forgotten on
/// a crash; its catalog is kept in `registry` across restarts.
pub async fn tracker_program(
    registry: Arc<Mutex<Registry>>,
    config: RegistryConfig,
    seed: u64,
    max_connections: Option<usize>,
) -> turmoil::Result {
    reboot_registry(&registry, config);
    run_tracker(SimTransport, registry, seed, max_connections).await?;
    Ok(())
}

/// Everything a peer host needs to (re)start.
#[derive(Clone)]
pub struct PeerProgram {
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// This peer.
    pub spec: PeerSpec,
    /// Seed of the run.
    pub seed: u64,
    /// Shared world.
    pub world: Shared,
    /// Whether to record wire messages.
    pub trace: bool,
    /// Write checkpoints before syncing (deliberately broken ordering, for the crash sweep's self-test).
    pub unsafe_checkpoint_before_sync: bool,
    /// Never ban anyone (a deliberately broken invariant 4, for the explorer's self-test).
    pub unsafe_never_ban: bool,
    /// Switch that makes this peer serve wrong bytes.
    pub corrupt: CorruptSwitch,
    /// Switch that deletes the other program's data filling this peer's disk.
    pub free_disk: FreeDiskSwitch,
    /// How full this host's disk is (kept across restarts, like the disk).
    pub space: DiskSpace,
}

impl PeerProgram {
    /// The host's closure: count the boot, prepare the disk, then run the peer program.
    pub async fn run(self) -> turmoil::Result {
        let name = self.spec.name.clone();
        let boot = self.world.lock().boot(sim_now(), &name);
        let sim_storage = SimStorage::new(self.space.clone());
        sim_storage.after_boot();
        if boot == 1 {
            self.fill_disk(&sim_storage)?;
        }
        if self.spec.disk_free.is_some() {
            tokio::spawn(free_disk_when_asked(
                sim_storage.clone(),
                self.free_disk.clone(),
                self.world.clone(),
                name.clone(),
            ));
        }
        self.place_own_files(Path::new(DATA_DIR))?;
        let probe = Watched::new(
            sim_storage,
            DiskProbe {
                world: self.world.clone(),
                host: name.clone(),
            },
        );
        let storage: Arc<dyn Storage> = Arc::new(self.corrupt.wrap(probe));
        let latency = self
            .spec
            .disk_latency
            .map_or(Duration::from_millis(1), |s| s.0);
        let env = PeerEnv {
            transport: SimTransport,
            blocking: SimDisk { latency },
            storage,
            clock: Clock::new(),
        };
        let mut plan = HostPlan::new(
            &self.scenario,
            &self.spec,
            self.seed,
            boot,
            self.trace,
            |host| turmoil::lookup(host),
        );
        plan.app.peer.node.trace &= self.world.lock().trace_filter.traces_host(&self.spec.name);
        plan.app.peer.unsafe_checkpoint_before_sync = self.unsafe_checkpoint_before_sync;
        if self.unsafe_never_ban {
            plan.app.peer.node.ban_after_failures = u32::MAX;
        }
        let observer = Observer {
            world: self.world.clone(),
            host: name,
            now: Arc::new(sim_now),
        };
        run_peer(env, plan, observer).await?;
        Ok(())
    }

    /// On the first boot, let another program's data fill the disk up to the scenario's `disk_free`.
    fn fill_disk(&self, storage: &SimStorage) -> turmoil::Result {
        let (Some(free), Some(capacity)) = (self.spec.disk_free, self.scenario.disk.capacity)
        else {
            return Ok(());
        };
        harness_io(|| storage.fill(free.0, capacity.0))
            .map_err(|e| format!("cannot fill the disk: {e}"))?;
        self.world.lock().note(
            sim_now(),
            &self.spec.name,
            true,
            format!(
                "another program's data fills the disk: {:.1} MiB free",
                free.0 as f64 / 1048576.0
            ),
        );
        Ok(())
    }

    /// Put the files this peer's user has (`has`) in its folder, generated from the seed, unless a crash
    /// left them there whole. This is the world's doing, not the peer's: the peer finds them when it
    /// serves the folder.
    fn place_own_files(&self, dir: &Path) -> Result<(), String> {
        // A folder's files one by one (each made with its parent folders).
        let parts = self
            .spec
            .has
            .iter()
            .filter_map(|f| self.scenario.file(f))
            .flat_map(|spec| spec.parts());
        for (file, size) in parts {
            let path = dir.join(&file);
            let storage = SimStorage::new(self.space.clone());
            if harness_io(|| storage.file_len(&path)).map_err(|e| e.to_string())? == Some(size) {
                continue;
            }
            let f = harness_io(|| storage.open(&path, true)).map_err(|e| e.to_string())?;
            let mut offset = 0u64;
            let mut result = Ok(());
            content::generate(self.seed, &file, size, |chunk| {
                if result.is_ok() {
                    // Synced chunk by chunk: turmoil 0.7.2 counts each pending write from the file's synced
                    // end, so a file written unsynced in one go would look many times its size to a capacity.
                    result = harness_io(|| f.write_at(chunk, offset))
                        .and_then(|()| harness_io(|| f.sync_data()));
                    offset += chunk.len() as u64;
                }
            });
            result
                .and_then(|()| harness_io(|| f.sync_data()))
                .map_err(|e| format!("cannot write {file}: {e}"))?;
        }
        Ok(())
    }
}

/// Wait for the story to free this host's disk, then delete the other program's data.
async fn free_disk_when_asked(
    storage: SimStorage,
    switch: FreeDiskSwitch,
    world: Shared,
    host: String,
) {
    while !switch.is_on() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = match harness_io(|| storage.free()) {
        Ok(0) => return,
        Ok(n) => format!("{:.1} MiB freed on the disk", n as f64 / 1048576.0),
        Err(e) => format!("cannot free the disk: {e}"),
    };
    world.lock().note(sim_now(), &host, true, text);
}
