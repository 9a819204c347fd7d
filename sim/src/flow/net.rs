//! The flow-level network: hosts with an upload and a download capacity, TCP-like connections made of two
//! flows (one per direction), and datagrams. Time is tokio's (paused, virtual) time; nothing here ticks.
//!
//! A flow is *active* while it has bytes waiting to leave its sender. Active flows share capacities max-min
//! fairly, by progressive filling kept local: when a flow starts or stops, the flows leaving its sender and
//! entering its receiver are given rates again ([`State::reshare`]): every one of them rises at the same
//! pace until a capacity it crosses is full (its sender's upload or its receiver's download, less what flows
//! outside the set use there), and the capacity a flow cannot use because it is bottlenecked at its other
//! end goes to the others. Flows further away keep their rates until one of their own ends changes, so the
//! work is O(degree²) per change, not O(flows); the sum of rates never exceeds a host's capacity. (Capacity
//! freed two hops from a change waits for the next change there: the one approximation.)
//!
//! Each written chunk leaves when its flow has transmitted it at the flow's rate, then arrives after the
//! link latency. Events (a chunk finished, a chunk arrived, a datagram arrived) are taken in one order,
//! (virtual time, sequence number): the number of events grows with the data moved, not with time.

use bytes::{Bytes, BytesMut};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;
use tokio::sync::Notify;

/// Virtual nanoseconds since the network was created.
pub type Nanos = u64;

/// Index of a host.
pub type HostId = usize;

/// Index of a flow (connection `c` has flows `2c` and `2c + 1`).
pub type FlowId = usize;

/// Bytes a sender may queue on a flow before its writes wait (a socket send buffer).
pub const SEND_BUFFER: u64 = 256 * 1024;

/// Writes this small on an idle flow (HAVE, INTEREST, CHOKE, REQUEST messages...) skip the capacity sharing
/// and only take the latency: they are a negligible share of any link, and starting and stopping a flow for
/// each would re-share two hosts' capacities per message. A batch of answers larger than this does take its
/// share: 4 KiB was tried (the 100-peer crowd ran 10% faster), but on a 16 KB/s uplink of the papers' slow class
/// a 4 KiB batch is a quarter second of the link, and letting it bypass the capacity moved bharambe-100-random
/// from 295 to 405 simulated s.
pub const SMALL_WRITE: usize = 256;

/// Largest chunk a write is cut into. A chunk arrives whole once transmitted (store and forward), so a
/// large write is cut for its first bytes to arrive as soon as they would over TCP, give or take a chunk: a
/// block message (16 KiB and 13 bytes) with a few small messages fits one, and a driver that writes many
/// blocks at once sees each arrive no later than written one by one.
pub const MAX_CHUNK: usize = 17 * 1024;

/// First ephemeral port handed to outgoing connections and unbound sockets.
const FIRST_EPHEMERAL: u16 = 40_000;

/// One side of a host's link: the capacity flows share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Up,
    Down,
}

/// A host's upload or download.
type Resource = (HostId, Side);

/// A rate level of the max-min re-share, ordered by [`f64::total_cmp`] (a heap needs a total order).
#[derive(Debug, Clone, Copy)]
struct Level(f64);

impl PartialEq for Level {
    fn eq(&self, other: &Level) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Level {}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Level) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Level {
    fn cmp(&self, other: &Level) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Capacities of one host, in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Upload capacity.
    pub up: f64,
    /// Download capacity.
    pub down: f64,
}

#[derive(Default)]
struct Listener {
    queue: VecDeque<(FlowId, SocketAddr)>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct UdpSocket {
    queue: VecDeque<(Bytes, SocketAddr)>,
    waker: Option<Waker>,
}

struct Host {
    name: String,
    cap: Capacity,
    /// Active flows sending from this host, sorted (a vector: iterated at every re-share, a few dozen long).
    up_active: Vec<FlowId>,
    /// Active flows received by this host, sorted.
    down_active: Vec<FlowId>,
    listeners: BTreeMap<u16, Listener>,
    udp: BTreeMap<u16, UdpSocket>,
    next_port: u16,
    /// Flows this host sends on (to reset them all on a crash).
    flows: BTreeSet<FlowId>,
}

/// One direction of a connection.
struct Flow {
    src: HostId,
    dst: HostId,
    latency: Nanos,
    /// Written, not yet fully transmitted (the head partly).
    queue: VecDeque<Bytes>,
    queued: u64,
    /// Bytes of the head still to transmit, as of `since`.
    head_left: f64,
    rate: f64,
    since: Nanos,
    /// Key of its pending `Sent` event, if any.
    sent_key: Option<(Nanos, u64)>,
    active: bool,
    /// Transmitted, arriving at the given time; `None` is the end of the stream.
    in_flight: VecDeque<(Nanos, Option<Bytes>)>,
    recv: VecDeque<Bytes>,
    /// The writer shut down: the end of stream follows the queued data.
    fin_sent: bool,
    /// The end of stream arrived (readable once `recv` is empty).
    fin_arrived: bool,
    /// Reset: writes and reads fail.
    reset: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Flow {
    fn new(src: HostId, dst: HostId, latency: Nanos) -> Flow {
        Flow {
            src,
            dst,
            latency,
            queue: VecDeque::new(),
            queued: 0,
            head_left: 0.0,
            rate: 0.0,
            since: 0,
            sent_key: None,
            active: false,
            in_flight: VecDeque::new(),
            recv: VecDeque::new(),
            fin_sent: false,
            fin_arrived: false,
            reset: false,
            read_waker: None,
            write_waker: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The head chunk of a flow is transmitted.
    Sent { flow: FlowId },
    /// Chunks of a flow in flight may have arrived.
    Arrive { flow: FlowId },
    /// A datagram reaches a host's port.
    Datagram {
        to: HostId,
        port: u16,
        from: SocketAddr,
        data: Vec<u8>,
    },
}

/// Events that are never moved or cancelled, in order of (time, sequence number). Most are scheduled in
/// order of time (an arrival is a send's time plus the link's latency, the same on every link of most
/// stories): those join the back of a queue, O(1); one due before the queue's back waits in a heap.
#[derive(Default)]
struct FixedEvents {
    queue: VecDeque<(Nanos, u64, Event)>,
    heap: BinaryHeap<Reverse<(Nanos, u64, Event)>>,
}

impl FixedEvents {
    /// Add `event`, due at `at`, with sequence number `seq` (greater than every one added before).
    fn push(&mut self, at: Nanos, seq: u64, event: Event) {
        if self.queue.back().is_none_or(|(last, _, _)| *last <= at) {
            self.queue.push_back((at, seq, event));
        } else {
            self.heap.push(Reverse((at, seq, event)));
        }
    }

    /// (time, sequence number) of the earliest event.
    fn first_key(&self) -> Option<(Nanos, u64)> {
        let queued = self.queue.front().map(|(t, seq, _)| (*t, *seq));
        let heaped = self.heap.peek().map(|Reverse((t, seq, _))| (*t, *seq));
        match (queued, heaped) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Remove and return the earliest event with its time.
    fn pop(&mut self) -> Option<(Nanos, Event)> {
        let queued = self.queue.front().map(|(t, seq, _)| (*t, *seq));
        let heaped = self.heap.peek().map(|Reverse((t, seq, _))| (*t, *seq));
        let from_queue = match (queued, heaped) {
            (Some(a), Some(b)) => a < b,
            (a, _) => a.is_some(),
        };
        if from_queue {
            self.queue.pop_front().map(|(t, _, e)| (t, e))
        } else {
            self.heap.pop().map(|Reverse((t, _, e))| (t, e))
        }
    }
}

struct State {
    hosts: Vec<Host>,
    by_ip: BTreeMap<IpAddr, HostId>,
    by_name: BTreeMap<String, HostId>,
    flows: Vec<Flow>,
    /// Pending `Sent` events as (time, sequence number, flow), earliest first. A flow's event is moved when its
    /// rate changes: the new one is pushed and the old one left behind, stale (the flow's `sent_key` no longer
    /// names it), to be dropped when it comes first ([`State::drop_stale_sent`]); a map's remove and insert per
    /// re-rated flow cost more than the heap's push and the later pop.
    sent: BinaryHeap<Reverse<(Nanos, u64, FlowId)>>,
    /// Pending events that are never moved or cancelled (arrivals, datagrams), by (time, sequence number):
    /// cheaper than the map for the one event of every small message. Both share the sequence numbers, and
    /// [`State::advance`] takes the earlier head of the two, so the order is one total order.
    fixed: FixedEvents,
    seq: u64,
    latency: Nanos,
    /// The time the pump sleeps until (a sooner event must wake it).
    pump_target: Option<Nanos>,
    /// Counters for the report.
    stats: NetStats,
}

/// What the network did, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Events processed.
    pub events: u64,
    /// Rate recomputations (flows whose rate was set).
    pub rate_updates: u64,
    /// Connections opened.
    pub connections: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
}

/// The network shared by every simulated host (cheap to clone).
#[derive(Clone)]
pub struct Net {
    state: Arc<Mutex<State>>,
    pump: Arc<Notify>,
    origin: tokio::time::Instant,
}

/// Add `flow` to the sorted `flows` (no duplicate).
fn insert_sorted(flows: &mut Vec<FlowId>, flow: FlowId) {
    if let Err(at) = flows.binary_search(&flow) {
        flows.insert(at, flow);
    }
}

/// Remove `flow` from the sorted `flows`, if there.
fn remove_sorted(flows: &mut Vec<FlowId>, flow: FlowId) {
    if let Ok(at) = flows.binary_search(&flow) {
        flows.remove(at);
    }
}

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Take up to `max` bytes from the front of the arrived chunks, in order, handing each piece to `put`: the one
/// drain behind both reads ([`Net::poll_read`] copies, [`Net::poll_read_bytes`] joins).
fn drain_chunks(recv: &mut VecDeque<Bytes>, max: usize, mut put: impl FnMut(&[u8])) {
    let mut left = max;
    while left > 0 {
        let Some(front) = recv.front_mut() else {
            break;
        };
        let n = front.len().min(left);
        put(&front[..n]);
        left -= n;
        if n == front.len() {
            recv.pop_front();
        } else {
            let _ = front.split_to(n);
        }
    }
}

fn host_ip(id: HostId) -> IpAddr {
    let n = id as u32 + 2;
    IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8))
}

impl Net {
    /// A network with `latency` on every link. Must be created inside the runtime that will run it.
    pub fn new(latency: Duration) -> Net {
        Net {
            state: Arc::new(Mutex::new(State {
                hosts: Vec::new(),
                by_ip: BTreeMap::new(),
                by_name: BTreeMap::new(),
                flows: Vec::new(),
                sent: BinaryHeap::new(),
                fixed: FixedEvents::default(),
                seq: 0,
                latency: nanos(latency),
                pump_target: None,
                stats: NetStats::default(),
            })),
            pump: Arc::new(Notify::new()),
            origin: tokio::time::Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Virtual time since the network was created.
    pub fn now(&self) -> Nanos {
        nanos(self.origin.elapsed())
    }

    /// Add a host; returns its id. Its address is derived from the id.
    pub fn add_host(&self, name: &str, cap: Capacity) -> HostId {
        let mut st = self.lock();
        let id = st.hosts.len();
        let ip = host_ip(id);
        st.hosts.push(Host {
            name: name.to_string(),

            cap,
            up_active: Vec::new(),
            down_active: Vec::new(),
            listeners: BTreeMap::new(),
            udp: BTreeMap::new(),
            next_port: FIRST_EPHEMERAL,
            flows: BTreeSet::new(),
        });
        st.by_ip.insert(ip, id);
        st.by_name.insert(name.to_string(), id);
        id
    }

    /// Address of a host.
    pub fn ip(&self, host: HostId) -> IpAddr {
        host_ip(host)
    }

    /// Name of the host at `ip`.
    pub fn name_of(&self, ip: IpAddr) -> Option<String> {
        let st = self.lock();
        st.by_ip.get(&ip).map(|&h| st.hosts[h].name.clone())
    }

    /// Resolve a host name or an IP literal.
    pub fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        self.lock()
            .by_name
            .get(host)
            .map(|&h| host_ip(h))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: unknown host")))
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.lock().stats
    }

    /// Run the network: wake at every due event. Spawn once on the runtime; runs forever.
    pub async fn pump(self) {
        // One timer, moved only when the next event moves (not made anew at every wake-up).
        let mut timer = Box::pin(tokio::time::sleep_until(self.origin));
        let mut armed: Option<Nanos> = None;
        let mut wakers = Vec::new();
        loop {
            let next = {
                let mut st = self.lock();
                st.advance(self.now(), &mut wakers);
                let next = st.next_event();
                st.pump_target = next;
                next
            };
            wakers.drain(..).for_each(Waker::wake);
            match next {
                Some(t) => {
                    if armed != Some(t) {
                        timer.as_mut().reset(self.origin + Duration::from_nanos(t));
                        armed = Some(t);
                    }
                    tokio::select! {
                        biased;
                        () = self.pump.notified() => {}
                        () = &mut timer => armed = None,
                    }
                }
                None => self.pump.notified().await,
            }
        }
    }

    /// Run `f` on the state brought up to now, then wake what it woke (and the pump if it must wake sooner).
    fn with<R>(&self, f: impl FnOnce(&mut State, Nanos, &mut Vec<Waker>) -> R) -> R {
        let now = self.now();
        let mut wakers = Vec::new();
        let (r, wake_pump) = {
            let mut st = self.lock();
            st.advance(now, &mut wakers);
            let r = f(&mut st, now, &mut wakers);
            let next = st.next_event();
            let wake_pump = match (next, st.pump_target) {
                (Some(n), Some(p)) => n < p,
                (Some(_), None) => true,
                _ => false,
            };
            if wake_pump {
                st.pump_target = next;
            }
            (r, wake_pump)
        };
        wakers.into_iter().for_each(Waker::wake);
        if wake_pump {
            self.pump.notify_one();
        }
        r
    }

    /// Start listening on `port` of `host` (0: an ephemeral port).
    pub fn listen(&self, host: HostId, port: u16) -> io::Result<u16> {
        self.with(|st, _, _| {
            let port = if port == 0 { st.ephemeral(host) } else { port };
            let h = &mut st.hosts[host];
            if h.listeners.contains_key(&port) {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "port in use"));
            }
            h.listeners.insert(port, Listener::default());
            Ok(port)
        })
    }

    /// Stop listening.
    pub fn unlisten(&self, host: HostId, port: u16) {
        self.with(|st, _, _| {
            st.hosts[host].listeners.remove(&port);
        });
    }

    /// Poll for an accepted connection: the flow this host reads from and the remote address.
    pub fn poll_accept(
        &self,
        host: HostId,
        port: u16,
        waker: &Waker,
    ) -> Option<io::Result<(FlowId, SocketAddr)>> {
        self.with(|st, _, _| {
            let Some(l) = st.hosts[host].listeners.get_mut(&port) else {
                return Some(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "listener closed",
                )));
            };
            match l.queue.pop_front() {
                Some(x) => Some(Ok(x)),
                None => {
                    l.waker = Some(waker.clone());
                    None
                }
            }
        })
    }

    /// Connect `host` to `addr`: after one round trip, the flow `host` reads from (its pair writes), or an
    /// error (no such host, nothing listening).
    pub async fn connect(&self, host: HostId, addr: SocketAddr) -> io::Result<(FlowId, u16)> {
        let latency = Duration::from_nanos(self.lock().latency);
        tokio::time::sleep(latency).await;
        let made = self.with(|st, _, wakers| {
            let Some(&dst) = st.by_ip.get(&addr.ip()) else {
                return Err(io::Error::new(
                    io::ErrorKind::HostUnreachable,
                    "no such host",
                ));
            };
            if !st.hosts[dst].listeners.contains_key(&addr.port()) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "connection refused",
                ));
            }
            let port = st.ephemeral(host);
            let latency = st.latency;
            let out = st.flows.len();
            st.flows.push(Flow::new(host, dst, latency));
            st.flows.push(Flow::new(dst, host, latency));
            st.hosts[host].flows.insert(out);
            st.hosts[dst].flows.insert(out + 1);
            st.stats.connections += 1;
            let from = SocketAddr::new(host_ip(host), port);
            if let Some(l) = st.hosts[dst].listeners.get_mut(&addr.port()) {
                l.queue.push_back((out, from));
                wakers.extend(l.waker.take());
            }
            Ok((out + 1, port))
        })?;
        tokio::time::sleep(latency).await;
        Ok(made)
    }

    /// Write to flow `flow`: `Ok(n)` bytes taken, `None` when its send buffer is full (waker stored).
    pub fn poll_write(
        &self,
        flow: FlowId,
        data: &[u8],
        waker: &Waker,
    ) -> Option<io::Result<usize>> {
        self.write(
            flow,
            data.len(),
            |n| Bytes::copy_from_slice(&data[..n]),
            waker,
        )
    }

    /// [`Net::poll_write`] of shared bytes: what is taken is carried as it is (a slice of `data`, no copy).
    pub fn poll_write_bytes(
        &self,
        flow: FlowId,
        data: &Bytes,
        waker: &Waker,
    ) -> Option<io::Result<usize>> {
        self.write(flow, data.len(), |n| data.slice(..n), waker)
    }

    /// Write the first bytes of `len` to `flow`, as many as its send buffer takes; `take(n)` gives the first `n`.
    fn write(
        &self,
        flow: FlowId,
        len: usize,
        take: impl FnOnce(usize) -> Bytes,
        waker: &Waker,
    ) -> Option<io::Result<usize>> {
        self.with(|st, now, _| {
            let f = &mut st.flows[flow];
            if f.reset {
                return Some(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if f.fin_sent {
                return Some(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if f.queued >= SEND_BUFFER {
                f.write_waker = Some(waker.clone());
                return None;
            }
            let n = len.min((SEND_BUFFER - f.queued) as usize);
            if n == 0 {
                return Some(Ok(0));
            }
            let mut data = take(n);
            if f.queue.is_empty() && n <= SMALL_WRITE {
                // A control message on an idle flow: latency only, no re-sharing of two hosts' capacity.
                let at = now + f.latency;
                f.in_flight.push_back((at, Some(data)));
                st.schedule(at, Event::Arrive { flow });
                return Some(Ok(n));
            }
            if f.queue.is_empty() {
                f.head_left = data.len().min(MAX_CHUNK) as f64;
            }
            while data.len() > MAX_CHUNK {
                f.queue.push_back(data.split_to(MAX_CHUNK));
            }
            f.queue.push_back(data);
            f.queued += n as u64;
            if !f.active {
                st.set_active(flow, true, now);
            }
            Some(Ok(n))
        })
    }

    /// Read from flow `flow` into `buf`: `Ok(0)` at end of stream, `None` when nothing arrived yet.
    pub fn poll_read(
        &self,
        flow: FlowId,
        buf: &mut tokio::io::ReadBuf<'_>,
        waker: &Waker,
    ) -> Option<io::Result<()>> {
        self.with(|st, _, _| {
            let f = &mut st.flows[flow];
            if f.reset {
                return Some(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let mut copied = false;
            drain_chunks(&mut f.recv, buf.remaining(), |chunk| {
                buf.put_slice(chunk);
                copied = true;
            });
            if copied || f.fin_arrived {
                return Some(Ok(()));
            }
            f.read_waker = Some(waker.clone());
            None
        })
    }

    /// Read from flow `flow` as shared bytes, at most `max` (at least 1): what arrived, as it arrived where it
    /// came in one chunk (no copy), joined into one buffer otherwise; empty at the end of the stream; `None`
    /// when nothing arrived yet (waker stored). The bytes are those [`Net::poll_read`] would give.
    pub fn poll_read_bytes(
        &self,
        flow: FlowId,
        max: usize,
        waker: &Waker,
    ) -> Option<io::Result<Bytes>> {
        self.with(|st, _, _| {
            let f = &mut st.flows[flow];
            if f.reset {
                return Some(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let data = match f.recv.front().map(Bytes::len) {
                None if f.fin_arrived => return Some(Ok(Bytes::new())),
                None => {
                    f.read_waker = Some(waker.clone());
                    return None;
                }
                Some(len) if len > max => f.recv.front_mut()?.split_to(max),
                Some(len) if len == max || f.recv.len() == 1 => f.recv.pop_front()?,
                Some(_) => {
                    let total: usize = f.recv.iter().map(Bytes::len).sum();
                    let mut joined = BytesMut::with_capacity(total.min(max));
                    drain_chunks(&mut f.recv, max, |chunk| joined.extend_from_slice(chunk));
                    joined.freeze()
                }
            };
            Some(Ok(data))
        })
    }

    /// The writer of flow `flow` is done: the end of stream follows what is queued.
    pub fn shutdown(&self, flow: FlowId) {
        self.with(|st, now, wakers| {
            let f = &mut st.flows[flow];
            if f.fin_sent || f.reset {
                return;
            }
            f.fin_sent = true;
            if f.queue.is_empty() {
                let at = now + f.latency;
                f.in_flight.push_back((at, None));
                st.schedule(at, Event::Arrive { flow });
            }
            let _ = wakers;
        })
    }

    /// The reader of flow `flow` went away: its writer's next write fails, what is queued is dropped.
    pub fn abandon(&self, flow: FlowId) {
        self.with(|st, now, wakers| st.reset(flow, now, wakers))
    }

    /// Reset every connection of `host` (a crash) and close its listeners and sockets.
    pub fn crash(&self, host: HostId) {
        self.with(|st, now, wakers| {
            let sending: Vec<FlowId> = st.hosts[host].flows.iter().copied().collect();
            for f in sending {
                st.reset(f, now, wakers);
                st.reset(f ^ 1, now, wakers);
            }
            let h = &mut st.hosts[host];
            for (_, l) in std::mem::take(&mut h.listeners) {
                wakers.extend(l.waker);
            }
            for (_, u) in std::mem::take(&mut h.udp) {
                wakers.extend(u.waker);
            }
        })
    }

    /// Bind a UDP port on `host` (0: ephemeral).
    pub fn bind_udp(&self, host: HostId, port: u16) -> io::Result<u16> {
        self.with(|st, _, _| {
            let port = if port == 0 { st.ephemeral(host) } else { port };
            let h = &mut st.hosts[host];
            if h.udp.contains_key(&port) {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "port in use"));
            }
            h.udp.insert(port, UdpSocket::default());
            Ok(port)
        })
    }

    /// Close a UDP port.
    pub fn unbind_udp(&self, host: HostId, port: u16) {
        self.with(|st, _, _| {
            st.hosts[host].udp.remove(&port);
        });
    }

    /// Send a datagram (delivered after the latency if something listens, dropped otherwise).
    pub fn send_datagram(&self, host: HostId, port: u16, data: &[u8], to: SocketAddr) {
        self.with(|st, now, _| {
            let Some(&dst) = st.by_ip.get(&to.ip()) else {
                return;
            };
            let from = SocketAddr::new(host_ip(host), port);
            let at = now + st.latency;
            st.schedule(
                at,
                Event::Datagram {
                    to: dst,
                    port: to.port(),
                    from,
                    data: data.to_vec(),
                },
            );
        })
    }

    /// Receive a datagram on `host`'s `port`.
    pub fn poll_datagram(
        &self,
        host: HostId,
        port: u16,
        waker: &Waker,
    ) -> Option<io::Result<(Bytes, SocketAddr)>> {
        self.with(|st, _, _| {
            let Some(s) = st.hosts[host].udp.get_mut(&port) else {
                return Some(Err(io::ErrorKind::NotConnected.into()));
            };
            match s.queue.pop_front() {
                Some(d) => Some(Ok(d)),
                None => {
                    s.waker = Some(waker.clone());
                    None
                }
            }
        })
    }

    /// The rate a flow is sending at now (bytes per second; 0 when idle).
    pub fn rate(&self, flow: FlowId) -> f64 {
        let st = self.lock();
        let f = &st.flows[flow];
        if f.active {
            f.rate
        } else {
            0.0
        }
    }
}

impl State {
    fn ephemeral(&mut self, host: HostId) -> u16 {
        let h = &mut self.hosts[host];
        loop {
            let p = h.next_port;
            h.next_port = if p == u16::MAX {
                FIRST_EPHEMERAL
            } else {
                p + 1
            };
            if !h.listeners.contains_key(&p) && !h.udp.contains_key(&p) {
                return p;
            }
        }
    }

    fn schedule(&mut self, at: Nanos, event: Event) -> (Nanos, u64) {
        self.seq += 1;
        if let Event::Sent { flow } = event {
            self.sent.push(Reverse((at, self.seq, flow)));
        } else {
            self.fixed.push(at, self.seq, event);
        }
        (at, self.seq)
    }

    /// Drop the stale `Sent` events at the front of the heap (moved or cancelled since they were pushed), so
    /// that its first is the earliest pending one.
    fn drop_stale_sent(&mut self) {
        while let Some(&Reverse((t, seq, flow))) = self.sent.peek() {
            if self.flows[flow].sent_key == Some((t, seq)) {
                break;
            }
            self.sent.pop();
        }
    }

    /// Key of the earliest pending event.
    fn next_key(&mut self) -> Option<(Nanos, u64)> {
        self.drop_stale_sent();
        let moved = self.sent.peek().map(|Reverse((t, seq, _))| (*t, *seq));
        let fixed = self.fixed.first_key();
        match (moved, fixed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_event(&mut self) -> Option<Nanos> {
        self.next_key().map(|(t, _)| t)
    }

    /// Remove and return the earliest pending event.
    fn pop_event(&mut self) -> Option<(Nanos, Event)> {
        let key = self.next_key()?;
        if self
            .sent
            .peek()
            .is_some_and(|Reverse((t, seq, _))| (*t, *seq) == key)
        {
            return self
                .sent
                .pop()
                .map(|Reverse((t, _, flow))| (t, Event::Sent { flow }));
        }
        self.fixed.pop()
    }

    /// Process every event due at `now`, in order.
    fn advance(&mut self, now: Nanos, wakers: &mut Vec<Waker>) {
        while self.next_event().is_some_and(|t| t <= now) {
            let Some((t, event)) = self.pop_event() else {
                break;
            };
            self.stats.events += 1;
            match event {
                Event::Sent { flow } => {
                    self.flows[flow].sent_key = None;
                    if self.flows[flow].active {
                        self.head_sent(flow, t, wakers);
                    }
                }
                Event::Arrive { flow } => self.arrive(flow, t, wakers),
                Event::Datagram {
                    to,
                    port,
                    from,
                    data,
                } => {
                    if let Some(s) = self.hosts[to].udp.get_mut(&port) {
                        s.queue.push_back((Bytes::from(data), from));
                        wakers.extend(s.waker.take());
                    }
                }
            }
        }
    }

    /// The head chunk of `flow` finished transmitting at `t`.
    fn head_sent(&mut self, flow: FlowId, t: Nanos, wakers: &mut Vec<Waker>) {
        let f = &mut self.flows[flow];
        let Some(chunk) = f.queue.pop_front() else {
            return;
        };
        f.queued -= chunk.len() as u64;
        let arrive = t + f.latency;
        f.in_flight.push_back((arrive, Some(chunk)));
        if f.queued < SEND_BUFFER {
            wakers.extend(f.write_waker.take());
        }
        self.schedule(arrive, Event::Arrive { flow });
        let f = &mut self.flows[flow];
        if let Some(next) = f.queue.front() {
            f.head_left = next.len() as f64;
            f.since = t;
            self.schedule_sent(flow);
        } else {
            if f.fin_sent {
                f.in_flight.push_back((arrive, None));
            }
            self.set_active(flow, false, t);
        }
    }

    fn arrive(&mut self, flow: FlowId, t: Nanos, wakers: &mut Vec<Waker>) {
        let f = &mut self.flows[flow];
        let mut any = false;
        while f.in_flight.front().is_some_and(|(at, _)| *at <= t) {
            let Some((_, item)) = f.in_flight.pop_front() else {
                break;
            };
            any = true;
            match item {
                Some(data) if !f.reset => {
                    self.stats.bytes += data.len() as u64;
                    f.recv.push_back(data);
                }
                Some(_) => {}
                None => f.fin_arrived = true,
            }
        }
        if any {
            wakers.extend(f.read_waker.take());
        }
    }

    fn reset(&mut self, flow: FlowId, now: Nanos, wakers: &mut Vec<Waker>) {
        let f = &mut self.flows[flow];
        if f.reset {
            return;
        }
        f.reset = true;
        // Nothing is read or written on it again: give back the buffers' memory, not only their contents (a
        // crowd of thousands opens hundreds of thousands of connections, and the flows of every one stay).
        f.queue = VecDeque::new();
        f.queued = 0;
        f.in_flight = VecDeque::new();
        f.recv = VecDeque::new();
        wakers.extend(f.read_waker.take());
        wakers.extend(f.write_waker.take());
        let (src, dst) = (f.src, f.dst);
        if f.active {
            self.set_active(flow, false, now);
        }
        self.hosts[src].flows.remove(&flow);
        let _ = dst;
    }

    /// Start or stop `flow`, re-sharing the capacity of its two ends at `now`.
    fn set_active(&mut self, flow: FlowId, active: bool, now: Nanos) {
        let (src, dst) = (self.flows[flow].src, self.flows[flow].dst);
        // The flows sharing either end, in id order (both sets are sorted: a merge).
        let mut touched: Vec<FlowId> = Vec::with_capacity(
            self.hosts[src].up_active.len() + self.hosts[dst].down_active.len() + 1,
        );
        {
            let mut up = self.hosts[src].up_active.iter().copied().peekable();
            let mut down = self.hosts[dst].down_active.iter().copied().peekable();
            loop {
                let next = match (up.peek(), down.peek()) {
                    (Some(&a), Some(&b)) if a < b => up.next(),
                    (Some(&a), Some(&b)) if b < a => down.next(),
                    (Some(_), Some(_)) => {
                        down.next();
                        up.next()
                    }
                    (Some(_), None) => up.next(),
                    (None, Some(_)) => down.next(),
                    (None, None) => break,
                };
                touched.extend(next);
            }
        }
        for &g in &touched {
            self.settle(g, now);
        }
        self.flows[flow].active = active;
        if active {
            self.flows[flow].since = now;
            insert_sorted(&mut self.hosts[src].up_active, flow);
            insert_sorted(&mut self.hosts[dst].down_active, flow);
        } else {
            // Its pending `Sent` event goes stale.
            self.flows[flow].sent_key = None;
            remove_sorted(&mut self.hosts[src].up_active, flow);
            remove_sorted(&mut self.hosts[dst].down_active, flow);
        }
        match (touched.binary_search(&flow), active) {
            (Err(at), true) => touched.insert(at, flow),
            (Ok(at), false) => {
                touched.remove(at);
            }
            _ => {}
        }
        self.reshare(&touched);
    }

    /// Capacity of one side of a host.
    fn capacity(&self, (host, side): Resource) -> f64 {
        match side {
            Side::Up => self.hosts[host].cap.up,
            Side::Down => self.hosts[host].cap.down,
        }
    }

    /// Active flows using one side of a host.
    fn users(&self, (host, side): Resource) -> &[FlowId] {
        match side {
            Side::Up => &self.hosts[host].up_active,
            Side::Down => &self.hosts[host].down_active,
        }
    }

    /// Give the active flows `set` max-min fair rates by progressive filling, the flows outside it keeping
    /// theirs: all rise together; when a capacity they cross is full, the flows crossing it stop there, and
    /// the others go on rising. The next capacity to fill comes from a heap of levels (stale entries skipped
    /// when popped), and only the flows crossing it are visited, so a host with thousands of flows (the
    /// tracker of a 10,000-peer crowd) costs a sort of them, not a scan of them per capacity that fills.
    fn reshare(&mut self, set: &[FlowId]) {
        // The (resource, set flow) pairs: each flow crosses its sender's upload and its receiver's download;
        // sorted, the flows crossing one resource are a run, in id order.
        let mut crossing: Vec<(Resource, usize)> = Vec::with_capacity(2 * set.len());
        for (at, &g) in set.iter().enumerate() {
            let f = &self.flows[g];
            crossing.push(((f.src, Side::Up), at));
            crossing.push(((f.dst, Side::Down), at));
        }
        crossing.sort_unstable();
        // Per resource the set crosses, in key order: capacity left by flows outside the set, set flows still
        // rising, and where its run of `crossing` starts.
        let mut left: Vec<(Resource, f64, usize, usize)> = Vec::new();
        for (start, &(r, _)) in crossing.iter().enumerate() {
            match left.last_mut() {
                Some(last) if last.0 == r => last.2 += 1,
                _ => {
                    let outside: f64 = self
                        .users(r)
                        .iter()
                        .filter(|u| set.binary_search(u).is_err())
                        .map(|&u| self.flows[u].rate)
                        .sum();
                    left.push((r, (self.capacity(r) - outside).max(0.0), 1, start));
                }
            }
        }
        let slot = |left: &[(Resource, f64, usize, usize)], r: Resource| {
            left.binary_search_by(|e| e.0.cmp(&r)).ok()
        };
        // The resource that fills first is the least (level, resource): ties go to the first in key order,
        // for determinism. An entry is current while its resource still has rising flows at that level.
        let mut levels: BinaryHeap<Reverse<(Level, Resource)>> = left
            .iter()
            .map(|(r, cap, n, _)| Reverse((Level(cap / *n as f64), *r)))
            .collect();
        let mut frozen = vec![false; set.len()];
        let mut rates: Vec<(FlowId, f64)> = Vec::with_capacity(set.len());
        while let Some(Reverse((Level(level), full))) = levels.pop() {
            let Some(k) = slot(&left, full) else {
                continue;
            };
            let (_, cap, n, start) = left[k];
            if n == 0 || Level(cap / n as f64).cmp(&Level(level)) != Ordering::Equal {
                continue;
            }
            let run = crossing[start..]
                .iter()
                .take_while(|(r, _)| *r == full)
                .map(|&(_, at)| at);
            for at in run {
                if std::mem::replace(&mut frozen[at], true) {
                    continue;
                }
                let g = set[at];
                rates.push((g, level));
                let f = &self.flows[g];
                for r in [(f.src, Side::Up), (f.dst, Side::Down)] {
                    if let Some(j) = slot(&left, r) {
                        let e = &mut left[j];
                        e.1 = (e.1 - level).max(0.0);
                        e.2 -= 1;
                        if r != full && e.2 > 0 {
                            levels.push(Reverse((Level(e.1 / e.2 as f64), r)));
                        }
                    }
                }
            }
        }
        for (g, rate) in rates {
            self.rerate(g, rate);
        }
    }

    /// Bring `flow`'s transmitted bytes up to `now` at its current rate.
    fn settle(&mut self, flow: FlowId, now: Nanos) {
        let f = &mut self.flows[flow];
        if now > f.since {
            let sent = f.rate * (now - f.since) as f64 / 1e9;
            f.head_left = (f.head_left - sent).max(0.0);
            f.since = now;
        }
    }

    /// Set `flow`'s rate and schedule the end of its head chunk.
    fn rerate(&mut self, flow: FlowId, rate: f64) {
        let rate = rate.max(1.0);
        if rate == self.flows[flow].rate && self.flows[flow].sent_key.is_some() {
            return;
        }
        self.flows[flow].rate = rate;
        self.stats.rate_updates += 1;
        self.schedule_sent(flow);
    }

    /// Schedule the end of `flow`'s head chunk at its rate (an earlier `Sent` event of the flow goes stale).
    fn schedule_sent(&mut self, flow: FlowId) {
        let f = &self.flows[flow];
        let dt = (f.head_left / f.rate * 1e9).ceil();
        let at = f.since + if dt.is_finite() { dt as Nanos } else { 0 };
        let key = self.schedule(at, Event::Sent { flow });
        self.flows[flow].sent_key = Some(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Net {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async { Net::new(Duration::from_millis(1)) })
    }

    /// Start a flow from `s` to `d` with bytes to send; returns its id.
    fn start(st: &mut State, s: HostId, d: HostId) -> FlowId {
        let id = st.flows.len();
        st.flows.push(Flow::new(s, d, 0));
        st.flows.push(Flow::new(d, s, 0));
        st.flows[id].queue.push_back(Bytes::from_static(&[0; 10]));
        st.flows[id].head_left = 10.0;
        st.set_active(id, true, 0);
        id
    }

    fn load(st: &State, host: HostId, side: Side) -> f64 {
        st.users((host, side))
            .iter()
            .map(|&f| st.flows[f].rate)
            .sum()
    }

    /// Fixed events come out in (time, sequence) order whether they were scheduled in time order (the queue)
    /// or before the last one (the heap), ties by sequence number.
    #[test]
    fn fixed_events_leave_in_time_then_sequence_order() {
        let mut fixed = FixedEvents::default();
        for (at, seq) in [(10, 1), (20, 2), (15, 3), (20, 4), (5, 5), (30, 6), (15, 7)] {
            fixed.push(at, seq, Event::Arrive { flow: seq as usize });
        }
        assert!(!fixed.heap.is_empty(), "the late ones were heaped");
        let mut order = Vec::new();
        while let Some(key) = fixed.first_key() {
            let popped = fixed.pop();
            assert_eq!(popped.as_ref().map(|(t, _)| *t), Some(key.0));
            if let Some((_, Event::Arrive { flow })) = popped {
                order.push(flow);
            }
        }
        assert_eq!(order, vec![5, 1, 3, 7, 2, 4, 6]);
    }

    #[test]
    fn shares_never_exceed_capacity() {
        let net = network();
        let a = net.add_host("a", Capacity { up: 1e6, down: 1e9 });
        let b = net.add_host("b", Capacity { up: 1e9, down: 3e5 });
        let c = net.add_host("c", Capacity { up: 1e9, down: 1e9 });
        let mut st = net.lock();
        let ab = start(&mut st, a, b);
        let ac = start(&mut st, a, c);
        let cb = start(&mut st, c, b);
        // b's download (300 kB/s) is shared by a and c; a -> c took the rest of a's upload when it started
        // (700 kB/s) and keeps it: the 150 kB/s that c -> b later freed at a is two hops from c -> b.
        assert_eq!(st.flows[ab].rate, 150_000.0);
        assert_eq!(st.flows[cb].rate, 150_000.0);
        assert_eq!(st.flows[ac].rate, 700_000.0);
        assert!(load(&st, b, Side::Down) <= 3e5);
        assert!(load(&st, a, Side::Up) <= 1e6);
    }

    /// Capacity a flow cannot use, because it is bottlenecked at its other end, goes to the other flows of
    /// the host (the equal-share approximation left it idle: 500 kB/s to c instead of 800).
    #[test]
    fn capacity_a_flow_cannot_use_goes_to_the_others() {
        let net = network();
        let a = net.add_host("a", Capacity { up: 1e6, down: 1e9 });
        let b = net.add_host("b", Capacity { up: 1e9, down: 2e5 });
        let c = net.add_host("c", Capacity { up: 1e9, down: 1e9 });
        let mut st = net.lock();
        let ab = start(&mut st, a, b);
        let ac = start(&mut st, a, c);
        assert_eq!(st.flows[ab].rate, 200_000.0);
        assert_eq!(st.flows[ac].rate, 800_000.0);
        // b's flow ends: c gets all of a's upload.
        st.set_active(ab, false, 0);
        assert_eq!(st.flows[ac].rate, 1_000_000.0);
    }

    /// One host's upload shared by many flows whose downloads differ (a tracker's replies to a crowd): the
    /// rates are the water-filling answer, worked out here by sorting the downloads.
    #[test]
    fn a_busy_upload_is_filled_like_water() {
        let net = network();
        let up = 1e6;
        let hub = net.add_host("hub", Capacity { up, down: 1e9 });
        // 400 downloads from 1 kB/s to 40 kB/s: the slow ones are served in full, the rest share the remainder.
        let downs: Vec<f64> = (0..400)
            .map(|i| 1_000.0 * f64::from((i * 7) % 40 + 1))
            .collect();
        let hosts: Vec<HostId> = downs
            .iter()
            .enumerate()
            .map(|(i, &down)| net.add_host(&format!("h{i}"), Capacity { up: 1e9, down }))
            .collect();
        let mut st = net.lock();
        let flows: Vec<FlowId> = hosts.iter().map(|&h| start(&mut st, hub, h)).collect();
        let mut sorted = downs.clone();
        sorted.sort_by(f64::total_cmp);
        let (mut left, mut level) = (up, 0.0);
        for (k, &d) in sorted.iter().enumerate() {
            let share = left / (sorted.len() - k) as f64;
            if d >= share {
                level = share;
                break;
            }
            left -= d;
        }
        assert!(
            level > 1_000.0 && level < 40_000.0,
            "the upload is the bottleneck of some flows"
        );
        for (&f, &d) in flows.iter().zip(&downs) {
            let want = d.min(level);
            assert!(
                (st.flows[f].rate - want).abs() < 1e-6 * want,
                "{} against {want}",
                st.flows[f].rate
            );
        }
        assert!((load(&st, hub, Side::Up) - up).abs() < 1e-3);
    }
}
