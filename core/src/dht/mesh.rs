//! An in-memory network of DHT nodes in virtual time, with no IO: datagrams are delivered after a seeded
//! random latency, nodes can be made silent (they receive nothing and so never answer) or leave and come
//! back (churn). The unit tests drive hundreds of nodes with it, and the simulator's DHT story a thousand.
//! Everything is ordered (a heap keyed by time and sequence number, ordered maps): a seed gives one run.

use super::node::{DhtConfig, DhtEvent, DhtInput, DhtNode, DhtOutput, LookupResult};
use crate::time::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Index of a node in the mesh.
pub type Host = usize;

/// One datagram in flight: delivered at `.0`, ordered by `.1` among equal times.
type Flight = Reverse<(Instant, u64, Host, SocketAddr, Vec<u8>)>;

/// Latency model of a [`Mesh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshConfig {
    /// Seed of the latencies.
    pub seed: u64,
    /// Shortest one-way delay.
    pub latency_min: Duration,
    /// Longest one-way delay.
    pub latency_max: Duration,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            seed: 0,
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(150),
        }
    }
}

struct Member {
    node: DhtNode,
    addr: SocketAddr,
    silent: bool,
    online: bool,
    deadline: Option<Instant>,
}

/// A network of DHT nodes.
pub struct Mesh {
    config: MeshConfig,
    rng: ChaCha8Rng,
    now: Instant,
    seq: u64,
    members: Vec<Member>,
    by_addr: BTreeMap<SocketAddr, Host>,
    flights: BinaryHeap<Flight>,
    deadlines: BTreeSet<(Instant, Host)>,
    results: Vec<(Host, LookupResult)>,
    events: Vec<(Instant, Host, DhtEvent)>,
    datagrams: u64,
}

/// The address of host `i`: 10.x.y.z, port 6881.
pub fn addr_of(host: Host) -> SocketAddr {
    let n = u32::try_from(host + 1).unwrap_or(u32::MAX);
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)), 6881))
}

impl Mesh {
    /// An empty mesh at time zero.
    pub fn new(config: MeshConfig) -> Mesh {
        Mesh {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            now: Instant::ZERO,
            seq: 0,
            members: Vec::new(),
            by_addr: BTreeMap::new(),
            flights: BinaryHeap::new(),
            deadlines: BTreeSet::new(),
            results: Vec::new(),
            events: Vec::new(),
            datagrams: 0,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Add a node created now with `config`; it knows nobody until it is bootstrapped.
    pub fn add(&mut self, config: DhtConfig) -> Host {
        let host = self.members.len();
        let addr = addr_of(host);
        self.members.push(Member {
            node: DhtNode::new(config, self.now),
            addr,
            silent: false,
            online: true,
            deadline: None,
        });
        self.by_addr.insert(addr, host);
        self.settle(host);
        host
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the mesh has no node.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Host `host`'s node.
    pub fn node(&self, host: Host) -> Option<&DhtNode> {
        self.members.get(host).map(|m| &m.node)
    }

    /// Host `host`'s address.
    pub fn addr(&self, host: Host) -> SocketAddr {
        addr_of(host)
    }

    /// Make `host` silent (it receives nothing, so never answers) or normal again.
    pub fn set_silent(&mut self, host: Host, silent: bool) {
        if let Some(m) = self.members.get_mut(host) {
            m.silent = silent;
        }
    }

    /// Turn every node's KRPC trace on or off.
    pub fn set_trace(&mut self, on: bool) {
        for m in &mut self.members {
            m.node.set_trace(on);
        }
    }

    /// Whether `host` is silent.
    pub fn is_silent(&self, host: Host) -> bool {
        self.members.get(host).is_some_and(|m| m.silent)
    }

    /// Take `host` off the network (it neither sends, receives nor runs timers) or bring it back.
    pub fn set_online(&mut self, host: Host, online: bool) {
        if let Some(m) = self.members.get_mut(host) {
            m.online = online;
        }
        self.settle(host);
    }

    /// Whether `host` is on the network and answers.
    pub fn is_reachable(&self, host: Host) -> bool {
        self.members
            .get(host)
            .is_some_and(|m| m.online && !m.silent)
    }

    /// Hand `input` to `host` now.
    pub fn input(&mut self, host: Host, input: DhtInput) {
        let now = self.now;
        if let Some(m) = self.members.get_mut(host).filter(|m| m.online) {
            m.node.handle_input(now, input);
        }
        self.settle(host);
    }

    /// Datagrams delivered so far.
    pub fn datagrams(&self) -> u64 {
        self.datagrams
    }

    /// Lookup results gathered so far (taken).
    pub fn take_results(&mut self) -> Vec<(Host, LookupResult)> {
        std::mem::take(&mut self.results)
    }

    /// Other events gathered so far (taken): traces, evictions, malformed datagrams.
    pub fn take_events(&mut self) -> Vec<(Instant, Host, DhtEvent)> {
        std::mem::take(&mut self.events)
    }

    /// Run every delivery and timer up to `until`, then set the clock to it.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let flight = self.flights.peek().map(|Reverse((t, ..))| *t);
            let timer = self.deadlines.first().map(|(t, _)| *t);
            let next = match (flight, timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if flight == Some(next) {
                if let Some(Reverse((_, _, to, from, bytes))) = self.flights.pop() {
                    self.deliver(to, from, bytes);
                }
            } else if let Some((_, host)) = self.deadlines.pop_first() {
                let now = self.now;
                if let Some(m) = self.members.get_mut(host) {
                    m.deadline = None;
                    m.node.handle_timeout(now);
                }
                self.settle(host);
            }
        }
        self.now = self.now.max(until);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn deliver(&mut self, to: Host, from: SocketAddr, bytes: Vec<u8>) {
        let now = self.now;
        let Some(m) = self.members.get_mut(to) else {
            return;
        };
        if !m.online || m.silent {
            return;
        }
        self.datagrams += 1;
        m.node.handle_input(now, DhtInput::Datagram { from, bytes });
        self.settle(to);
    }

    /// Drain `host`'s outputs and file its next deadline.
    fn settle(&mut self, host: Host) {
        let Some(m) = self.members.get_mut(host) else {
            return;
        };
        let mut sends = Vec::new();
        while let Some(out) = m.node.poll_output() {
            match out {
                DhtOutput::Send { to, bytes } => sends.push((to, bytes)),
                DhtOutput::Event(DhtEvent::LookupDone(r)) => self.results.push((host, r)),
                DhtOutput::Event(e) => self.events.push((self.now, host, e)),
            }
        }
        let (online, from) = (m.online, m.addr);
        let deadline = if online { m.node.poll_timeout() } else { None };
        if let Some(old) = m.deadline.take() {
            self.deadlines.remove(&(old, host));
        }
        if let Some(at) = deadline {
            m.deadline = Some(at);
            self.deadlines.insert((at, host));
        }
        if !online {
            return;
        }
        for (to, bytes) in sends {
            let Some(&dest) = self.by_addr.get(&to) else {
                continue;
            };
            let span = self
                .config
                .latency_max
                .saturating_sub(self.config.latency_min)
                .as_micros() as u64;
            let jitter = self.rng.next_u64().checked_rem(span + 1).unwrap_or(0);
            let at = self.now + self.config.latency_min + Duration::from_micros(jitter);
            self.seq += 1;
            self.flights
                .push(Reverse((at, self.seq, dest, from, bytes)));
        }
    }
}
