//! Where a long run stands, for a person watching it: the runners hand a [`Progress`] to an optional
//! [`ProgressSink`] about once a second of wall time. Reading it changes nothing in the story: the runner
//! only reads the world between simulation steps, and wall time decides only when it reads.

use crate::world::World;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a sink hears of a run, in wall time.
const EVERY: Duration = Duration::from_secs(1);

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Simulated time reached.
    pub simulated: Duration,
    /// Peers holding every piece of what they share or fetch (seeds included).
    pub complete: usize,
    /// Peers that reported any progress so far.
    pub peers: usize,
    /// Pieces verified, summed over those peers.
    pub pieces: u64,
    /// Pieces they share or fetch, summed.
    pub pieces_total: u64,
}

impl Progress {
    /// Where the run stands at `simulated`, from each peer's latest completion in the world.
    pub fn of(world: &World, simulated: Duration) -> Progress {
        let mut p = Progress {
            simulated,
            complete: 0,
            peers: 0,
            pieces: 0,
            pieces_total: 0,
        };
        for &(_, have, total) in world.peers.values().filter_map(|l| l.progress.last()) {
            p.peers += 1;
            p.complete += usize::from(total > 0 && have == total);
            p.pieces += u64::from(have);
            p.pieces_total += u64::from(total);
        }
        p
    }
}

/// What a sink calls.
type Callback = Arc<dyn Fn(&Progress) + Send + Sync>;

/// A callback for [`Progress`] (none by default: tests and scripts hear nothing).
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Callback>);

impl ProgressSink {
    /// A sink that calls `f`.
    pub fn new(f: impl Fn(&Progress) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink(Some(Arc::new(f)))
    }

    /// The runner's side: a clock that tells the sink at most once per [`EVERY`] of wall time.
    pub(crate) fn clock(&self) -> ProgressClock {
        ProgressClock {
            sink: self.0.clone(),
            last: Instant::now(),
        }
    }
}

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink(set)"
        } else {
            "ProgressSink(none)"
        })
    }
}

/// A runner's handle on its sink: asks for the progress only when a second of wall time has passed.
pub(crate) struct ProgressClock {
    sink: Option<Callback>,
    last: Instant,
}

impl ProgressClock {
    /// Tell the sink where the run stands if it is time (`read` is called only then).
    pub(crate) fn tick(&mut self, read: impl FnOnce() -> Progress) {
        let Some(sink) = &self.sink else {
            return;
        };
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            sink(&read());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_each_peer_by_its_latest_completion() {
        let mut w = World::default();
        let t = Duration::from_secs(1);
        w.progress(t, "seed", 40, 40);
        w.progress(t, "a", 10, 40);
        w.progress(t * 2, "a", 40, 40);
        w.progress(t, "b", 5, 40);
        assert_eq!(
            Progress::of(&w, t * 3),
            Progress {
                simulated: t * 3,
                complete: 2,
                peers: 3,
                pieces: 85,
                pieces_total: 120,
            }
        );
    }
}
