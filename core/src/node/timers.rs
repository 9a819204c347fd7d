//! A torrent's timer table: each periodic job with the instant it is due. [`super::Node::poll_timeout`] and
//! [`super::Node::handle_timeout`] both read this one table, so what wakes the driver and what runs when it
//! wakes cannot drift apart. (A connection's own timers are in [`super::conn::Conn::timers`].)

use super::torrent::Torrent;
use super::view::TorrentCtx;
use super::{CloseReason, ConnId, NodeConfig, NodeEvent};
use crate::time::Instant;
use crate::tracker::Event;
use std::collections::BTreeSet;

/// A torrent's periodic jobs, in the order a timeout pass runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TorrentTimer {
    /// Requests out with peers for longer than the request timeout go to others.
    RequestTimeout,
    /// The regular tracker announce.
    Announce,
    /// An announce that tells the tracker about progress (only when no regular one went out in this pass).
    ProgressAnnounce,
    /// A known peer becomes dialable again. (Dialling itself runs on every pass: peers that were dialable but
    /// over the connection budget are picked up as soon as a slot frees.)
    Redial,
    /// Rank peers and choose whom to upload to.
    Rechoke,
    /// Save a checkpoint that failed to save before.
    CheckpointRetry,
    /// Try a download again that stopped on a disk error.
    DiskRetry,
}

impl TorrentTimer {
    /// Every timer, in run order.
    pub const ALL: [TorrentTimer; 7] = [
        TorrentTimer::RequestTimeout,
        TorrentTimer::Announce,
        TorrentTimer::ProgressAnnounce,
        TorrentTimer::Redial,
        TorrentTimer::Rechoke,
        TorrentTimer::CheckpointRetry,
        TorrentTimer::DiskRetry,
    ];
}

/// A torrent's next deadlines, as [`Torrent::next_deadlines`] reads them from its timer table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NextDeadlines {
    /// The earliest timer that wakes the driver.
    pub waking: Option<Instant>,
    /// The earliest timer with a job, lazy ones included.
    pub any: Option<Instant>,
}

/// One armed timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timer {
    /// When its job is due.
    pub at: Instant,
    /// Whether it wakes the driver. A timer that does not is lazy: its job runs at the first timeout pass
    /// after `at` that something else caused (a rechoke of a torrent without peers, a progress announce when
    /// nothing changed since the last one).
    pub wakes: bool,
}

impl Torrent {
    /// The row of the timer table for `kind` at `now`: `None` while the timer is not armed.
    pub fn timer(&self, kind: TorrentTimer, now: Instant, config: &NodeConfig) -> Option<Timer> {
        // While resume data is checked the torrent does not download, announce or dial.
        let active = self.check.is_none();
        let wakes = |at: Instant| Timer { at, wakes: active };
        match kind {
            TorrentTimer::RequestTimeout => self
                .picker
                .next_request_deadline(config.request_timeout)
                .map(wakes),
            TorrentTimer::Announce => (active && self.announce.enabled).then_some(Timer {
                at: self.announce.next_at,
                wakes: true,
            }),
            TorrentTimer::ProgressAnnounce => {
                let at = self.announce.next_progress_at(config)?;
                (active && self.announce.enabled).then(|| Timer {
                    at,
                    wakes: self.announce.last_left != Some(self.left()),
                })
            }
            TorrentTimer::Redial => self.peers.next_retry(now).map(wakes),
            TorrentTimer::Rechoke => Some(Timer {
                at: self.next_rechoke,
                wakes: active && !self.conns.is_empty(),
            }),
            TorrentTimer::CheckpointRetry => {
                self.ckpt.retry_at.filter(|_| self.ckpt.dirty).map(wakes)
            }
            TorrentTimer::DiskRetry => self.disk.retry_at.map(wakes),
        }
    }

    /// The earliest instant a timer of this torrent wakes the driver, and the earliest instant any armed
    /// timer is due, lazy ones included (from then on a timeout pass has a job of this torrent to run): both
    /// from one reading of the timer table, as the node asks for both after every call that changed the
    /// torrent.
    pub fn next_deadlines(&self, now: Instant, config: &NodeConfig) -> NextDeadlines {
        let mut next = NextDeadlines::default();
        for kind in TorrentTimer::ALL {
            let Some(timer) = self.timer(kind, now, config) else {
                continue;
            };
            if timer.wakes {
                next.waking = Some(next.waking.map_or(timer.at, |w| w.min(timer.at)));
            }
            // A progress announce with no progress to tell has no job (see `on_timers`).
            if kind != TorrentTimer::ProgressAnnounce || timer.wakes {
                next.any = Some(next.any.map_or(timer.at, |a| a.min(timer.at)));
            }
        }
        next
    }

    /// Whether a timeout pass may dial or send peer exchange for this torrent at `now` whatever its timers
    /// say: it has connections, or an address it would dial now but for the connection budget (a slot may
    /// free at any pass). An address waiting on its redial backoff is not a reason (the `Redial` timer wakes
    /// the torrent when the backoff ends), nor is one it would never dial (a seed once we are complete, or
    /// any while the torrent is checked, stopped on an error or, complete, told not to dial). A torrent
    /// that counted as busy for knowing any address ran at every pass: a library of ten thousand files
    /// restarted on a new port knows its old address in every swarm, and spent 60% of a core on it.
    pub fn busy(&self, now: Instant, config: &NodeConfig) -> bool {
        if !self.conns.is_empty() {
            return true;
        }
        self.dials(config) && self.peers.dialable_now(now, self.picker.have().is_full())
    }

    /// Whether the torrent dials the peers it knows at all: not while its resume data is checked, not
    /// stopped on an error, and, once complete, only when told to ([`NodeConfig::dial_when_complete`]).
    pub fn dials(&self, config: &NodeConfig) -> bool {
        self.check.is_none()
            && self.error.is_none()
            && (config.dial_when_complete || !self.picker.have().is_full())
    }

    /// The earliest instant a timer of this torrent wakes the driver.
    pub fn next_deadline(&self, now: Instant, config: &NodeConfig) -> Option<Instant> {
        TorrentTimer::ALL
            .iter()
            .filter_map(|kind| self.timer(*kind, now, config))
            .filter(|timer| timer.wakes)
            .map(|timer| timer.at)
            .min()
    }
}

impl TorrentCtx<'_> {
    /// Run every job of the torrent's timer table that is due at `now`, in table order; each row is read
    /// just before its job, after the jobs before it ran.
    pub fn on_timers(&mut self, now: Instant) {
        let mut announced = false;
        for kind in TorrentTimer::ALL {
            let due = self
                .t
                .timer(kind, now, &self.s.config)
                .is_some_and(|timer| now >= timer.at);
            match kind {
                TorrentTimer::RequestTimeout if due => self.expire_requests(now),
                TorrentTimer::Announce if due => {
                    announced = true;
                    self.announce(now, Event::None);
                }
                // Only with progress to tell: a torrent whose `left` did not move since its last announce
                // (every seeder) would otherwise announce at every pass after the progress interval, which
                // for a peer serving ten thousand files is thousands of announces a second.
                TorrentTimer::ProgressAnnounce
                    if due && !announced && self.t.announce.last_left != Some(self.t.left()) =>
                {
                    self.announce(now, Event::None)
                }
                TorrentTimer::Redial => {
                    self.send_pex(now);
                    self.connect_more(now)
                }
                TorrentTimer::Rechoke if due => self.rechoke(now),
                TorrentTimer::CheckpointRetry if due => self.maybe_checkpoint(),
                TorrentTimer::DiskRetry if due => self.retry_after_disk_error(now),
                _ => {}
            }
        }
    }

    /// Requests that waited too long go to other peers; their peer is snubbed, or dropped if it sent
    /// nothing at all meanwhile.
    fn expire_requests(&mut self, now: Instant) {
        let request_timeout = self.s.config.request_timeout;
        let expired = self.t.picker.expire_requests(now, request_timeout);
        let snubbed: BTreeSet<ConnId> = expired.iter().map(|(id, _)| *id).collect();
        for id in &snubbed {
            let addr = self.s.addr_of(*id);
            let Some(c) = self.s.conns.get_mut(id) else {
                continue;
            };
            c.snubbed_at = Some(now);
            let silent = now.saturating_since(c.last_recv);
            self.s.event(NodeEvent::RequestTimeout { conn: *id, addr });
            if silent >= request_timeout {
                // Not even a keep-alive while requests waited: the stream is dead (a partition, a vanished
                // host). Drop it now and redial, rather than wait for the idle timeout.
                self.close(
                    now,
                    *id,
                    CloseReason::Stalled {
                        silent_secs: silent.as_secs(),
                    },
                );
            }
        }
        if !expired.is_empty() {
            self.refill_all(now);
        }
    }
}
