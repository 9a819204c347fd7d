//! Torrents' deadlines kept in order of time, so that neither [`super::Node::poll_timeout`] nor
//! [`super::Node::handle_timeout`] walks every torrent: a peer serving a library of ten thousand files spent
//! all its time evaluating the timers of torrents with nothing due (bench/manyfiles: half a core while idle).
//!
//! For each torrent, as of the end of the last call that changed it: its earliest *waking* deadline (what
//! `poll_timeout` answers), its earliest deadline of any armed timer, lazy ones included (what makes a
//! timeout pass run its jobs), and whether it is *busy* (has connections or known peers: its timeout pass
//! dials and sends peer exchange whatever its timers say). A timeout pass runs the torrents with a timer due
//! and the busy ones, in info-hash order as before; for any other torrent the pass would have done nothing.

use crate::metainfo::InfoHash;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// What is kept of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    waking: Option<Instant>,
    any: Option<Instant>,
    busy: bool,
}

/// The kept deadlines of every torrent.
#[derive(Debug, Default)]
pub(crate) struct TorrentDeadlines {
    kept: BTreeMap<InfoHash, Kept>,
    /// Waking deadlines in order of time.
    waking: BTreeSet<(Instant, InfoHash)>,
    /// Deadlines of any armed timer in order of time.
    any: BTreeSet<(Instant, InfoHash)>,
    /// Torrents with connections or known peers.
    busy: BTreeSet<InfoHash>,
}

impl TorrentDeadlines {
    /// Keep what `hash`'s timers say now.
    pub fn set(
        &mut self,
        hash: InfoHash,
        waking: Option<Instant>,
        any: Option<Instant>,
        busy: bool,
    ) {
        let new = Kept { waking, any, busy };
        if let Some(old) = self.kept.insert(hash, new) {
            if old == new {
                return;
            }
            if let Some(at) = old.waking {
                self.waking.remove(&(at, hash));
            }
            if let Some(at) = old.any {
                self.any.remove(&(at, hash));
            }
        }
        if let Some(at) = waking {
            self.waking.insert((at, hash));
        }
        if let Some(at) = any {
            self.any.insert((at, hash));
        }
        if busy {
            self.busy.insert(hash);
        } else {
            self.busy.remove(&hash);
        }
    }

    /// The earliest waking deadline. A kept deadline that is not after `now` is worked out again by
    /// `fresh` (dialable peers depend on the time), as it always was.
    pub fn earliest(
        &self,
        now: Instant,
        fresh: impl Fn(&InfoHash) -> Option<Instant>,
    ) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        for (at, hash) in &self.waking {
            let candidate = if *at > now { Some(*at) } else { fresh(hash) };
            best = match (best, candidate) {
                (Some(b), Some(c)) => Some(b.min(c)),
                (b, c) => b.or(c),
            };
            if *at > now {
                break;
            }
        }
        best
    }

    /// Whether `hash` was kept as busy (test hook: the node checks it against working it out afresh).
    #[cfg(test)]
    pub fn is_busy(&self, hash: &InfoHash) -> bool {
        self.busy.contains(hash)
    }

    /// The torrents a timeout pass at `now` must run, in info-hash order: a timer due (lazy or not), or busy.
    pub fn due(&self, now: Instant) -> BTreeSet<InfoHash> {
        let mut due: BTreeSet<InfoHash> = self
            .any
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, hash)| *hash)
            .collect();
        due.extend(self.busy.iter().copied());
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> InfoHash {
        InfoHash([n; 20])
    }

    fn at(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    #[test]
    fn only_torrents_due_or_busy_run_and_the_earliest_waking_deadline_is_kept() {
        let mut d = TorrentDeadlines::default();
        d.set(h(1), Some(at(50)), Some(at(10)), false);
        d.set(h(2), Some(at(20)), Some(at(20)), false);
        d.set(h(3), None, Some(at(500)), true);
        d.set(h(4), None, None, false);
        assert_eq!(d.earliest(at(0), |_| None), Some(at(20)));
        assert_eq!(d.due(at(5)), BTreeSet::from([h(3)]));
        assert_eq!(d.due(at(10)), BTreeSet::from([h(1), h(3)]));
        assert_eq!(d.due(at(20)), BTreeSet::from([h(1), h(2), h(3)]));
        // Past deadlines are worked out afresh.
        assert_eq!(
            d.earliest(at(30), |x| (*x == h(2)).then(|| at(40))),
            Some(at(40))
        );
        // A new deadline replaces the old one everywhere.
        d.set(h(2), Some(at(100)), Some(at(100)), false);
        d.set(h(3), None, Some(at(500)), false);
        assert_eq!(d.earliest(at(30), |_| None), Some(at(50)));
        assert_eq!(d.due(at(60)), BTreeSet::from([h(1)]));
        assert_eq!(d.due(at(1000)), BTreeSet::from([h(1), h(2), h(3)]));
    }
}
