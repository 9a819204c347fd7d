//! The DHT driver: runs one [`DhtNode`] over a [`DatagramSocket`] (the seam the UDP tracker uses), so the
//! same code serves real UDP and turmoil's simulated network. [`spawn_dht`] starts it as a task and returns
//! a [`DhtHandle`] through which the rest of the program looks up peers, announces, and reads the routing
//! table to save it.

use enjambre_core::dht::krpc::LIMITS;
use enjambre_core::dht::saved::SavedTable;
use enjambre_core::dht::{
    DhtConfig, DhtEvent, DhtInput, DhtNode, DhtOutput, LookupId, LookupKind, LookupResult, NodeId,
};
use enjambre_core::metainfo::InfoHash;
use enjambre_core::time::Instant;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::transport::DatagramSocket;

/// The DHT task has stopped (its socket failed for good or the runtime is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the DHT task has stopped")]
pub struct DhtStopped;

enum Command {
    Lookup {
        target: NodeId,
        kind: LookupKind,
        reply: oneshot::Sender<LookupResult>,
    },
    Saved(oneshot::Sender<SavedTable>),
    Ping(SocketAddr),
    Stop,
}

/// Receives every [`DhtEvent`] of the node with its time (the KRPC trace, when the config asks for it).
pub type DhtEventSink = Arc<dyn Fn(Instant, &DhtEvent) + Send + Sync>;

/// A handle on a running DHT node; cheap to clone.
#[derive(Debug, Clone)]
pub struct DhtHandle {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dht command")
    }
}

impl DhtHandle {
    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn lookup(&self, target: NodeId, kind: LookupKind) -> Result<LookupResult, DhtStopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Lookup {
                target,
                kind,
                reply,
            })
            .await
            .map_err(|_| DhtStopped)?;
        answer.await.map_err(|_| DhtStopped)
    }

    /// Find peers of `info_hash`; with `announce_port`, also announce ourselves on that port to the
    /// closest nodes.
    pub async fn get_peers(
        &self,
        info_hash: InfoHash,
        announce_port: Option<u16>,
    ) -> Result<LookupResult, DhtStopped> {
        self.lookup(NodeId(info_hash.0), LookupKind::GetPeers { announce_port })
            .await
    }

    /// Find the nodes closest to `target`.
    pub async fn find_node(&self, target: NodeId) -> Result<LookupResult, DhtStopped> {
        self.lookup(target, LookupKind::FindNode).await
    }

    /// Ping a node heard of outside the DHT (a peer's PORT message, BEP 5); it joins the routing table if
    /// it answers. Dropped, not awaited, when the node is busy or stopped.
    pub fn ping(&self, addr: SocketAddr) {
        let _ = self.commands.try_send(Command::Ping(addr));
    }

    /// Stop the node (its socket is closed; every handle's calls fail with [`DhtStopped`] afterwards).
    pub async fn stop(&self) {
        let _ = self.commands.send(Command::Stop).await;
    }

    /// Our id and routing table, to save for the next run.
    pub async fn saved_table(&self) -> Result<SavedTable, DhtStopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Saved(reply))
            .await
            .map_err(|_| DhtStopped)?;
        answer.await.map_err(|_| DhtStopped)
    }
}

/// How a DHT node starts.
#[derive(Clone, Default)]
pub struct DhtStart {
    /// Node tunables (its `id` is replaced by the saved table's, if there is one).
    pub config: DhtConfig,
    /// Addresses to join through; lookups started while the routing table is empty go through them too.
    pub bootstrap: Vec<SocketAddr>,
    /// The table saved by a previous run.
    pub saved: Option<SavedTable>,
    /// Receives every event (else they are only logged).
    pub events: Option<DhtEventSink>,
}

impl std::fmt::Debug for DhtStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtStart")
            .field("config", &self.config)
            .field("bootstrap", &self.bootstrap)
            .field("saved", &self.saved)
            .finish_non_exhaustive()
    }
}

/// Start a DHT node on `socket` as a tokio task; it runs until every [`DhtHandle`] is dropped.
pub fn spawn_dht<S: DatagramSocket>(
    socket: S,
    clock: Clock,
    start: DhtStart,
) -> std::io::Result<DhtHandle> {
    let local_addr = socket.local_addr()?;
    let (commands, receiver) = mpsc::channel(64);
    tokio::spawn(run(socket, clock, start, receiver));
    Ok(DhtHandle {
        commands,
        local_addr,
    })
}

async fn run<S: DatagramSocket>(
    socket: S,
    clock: Clock,
    start: DhtStart,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut config = start.config;
    let known = match start.saved {
        Some(saved) => {
            config.id = Some(saved.id);
            saved.nodes
        }
        None => Vec::new(),
    };
    let mut node = DhtNode::new(config, clock.now());
    // Kept to start lookups from while the table is still empty (its nodes join only once they answer).
    let saved_nodes = known.clone();
    if !start.bootstrap.is_empty() || !known.is_empty() {
        // Kademlia's join: a lookup of our own id, then of a random id in each farther bucket.
        node.handle_input(
            clock.now(),
            DhtInput::Bootstrap {
                addrs: start.bootstrap.clone(),
                known,
            },
        );
    }
    let mut waiting: BTreeMap<LookupId, oneshot::Sender<LookupResult>> = BTreeMap::new();
    let mut buf = vec![0u8; LIMITS.max_datagram + 1];
    let events = start.events;
    loop {
        flush(&mut node, &socket, &mut waiting, &clock, events.as_ref()).await;
        let deadline = node.poll_timeout();
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                None | Some(Command::Stop) => return,
                Some(Command::Lookup { target, kind, reply }) => {
                    // With no contact yet (the join still running, or it failed), go through the
                    // saved table's nodes and the bootstrap nodes rather than end at once with nothing.
                    let empty = node.table().contacts().next().is_none();
                    let (seeds, via): (&[_], &[SocketAddr]) = if empty {
                        (&saved_nodes, &start.bootstrap)
                    } else {
                        (&[], &[])
                    };
                    let id = node.start_lookup(clock.now(), target, kind, seeds, via);
                    waiting.insert(id, reply);
                }
                Some(Command::Ping(addr)) => node.ping(clock.now(), addr),
                Some(Command::Saved(reply)) => {
                    let _ = reply.send(SavedTable { id: node.id(), nodes: node.nodes() });
                }
            },
            got = socket.recv_from(&mut buf) => match got {
                Ok((n, from)) => {
                    if let Some(bytes) = buf.get(..n) {
                        node.handle_input(
                            clock.now(),
                            DhtInput::Datagram { from, bytes: bytes.to_vec() },
                        );
                    }
                }
                // Typically an ICMP error for an earlier send: never fatal.
                Err(e) => tracing::debug!(error = %e, "DHT receive failed"),
            },
            () = sleep_or_forever(&clock, deadline) => node.handle_timeout(clock.now()),
        }
    }
}

async fn sleep_or_forever(clock: &Clock, deadline: Option<enjambre_core::time::Instant>) {
    match deadline {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn flush<S: DatagramSocket>(
    node: &mut DhtNode,
    socket: &S,
    waiting: &mut BTreeMap<LookupId, oneshot::Sender<LookupResult>>,
    clock: &Clock,
    events: Option<&DhtEventSink>,
) {
    while let Some(out) = node.poll_output() {
        if let (Some(sink), DhtOutput::Event(e)) = (events, &out) {
            sink(clock.now(), e);
        }
        match out {
            DhtOutput::Send { to, bytes } => {
                if let Err(e) = socket.send_to(&bytes, to).await {
                    tracing::debug!(%to, error = %e, "DHT send failed");
                }
            }
            DhtOutput::Event(DhtEvent::LookupDone(result)) => {
                if let Some(reply) = waiting.remove(&result.id) {
                    let _ = reply.send(result);
                }
            }
            DhtOutput::Event(DhtEvent::Krpc {
                outgoing,
                peer,
                summary,
            }) => tracing::debug!(%peer, outgoing, "{summary}"),
            DhtOutput::Event(DhtEvent::Evicted(n)) => {
                tracing::debug!(id = %n.id, addr = %n.addr, "DHT contact evicted");
            }
            DhtOutput::Event(DhtEvent::Malformed { from, error }) => {
                tracing::debug!(%from, %error, "DHT datagram dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::transport::{TokioTransport, Transport};

    async fn start(seed: u64, bootstrap: Vec<SocketAddr>) -> DhtHandle {
        let socket = TokioTransport
            .bind_udp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        spawn_dht(
            socket,
            Clock::new(),
            DhtStart {
                config: DhtConfig {
                    seed,
                    query_timeout: std::time::Duration::from_millis(500),
                    ..DhtConfig::default()
                },
                bootstrap,
                saved: None,
                events: None,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn nodes_on_loopback_find_an_announced_peer_and_save_their_tables() {
        let boot = start(1, vec![]).await;
        let mut nodes = Vec::new();
        for seed in 2..12 {
            nodes.push(start(seed, vec![boot.local_addr()]).await);
        }
        // Let the joins settle.
        for n in &nodes {
            n.find_node(NodeId([seed_byte(n); 20])).await.unwrap();
        }
        let hash = InfoHash([0xab; 20]);
        let announced = nodes[0].get_peers(hash, Some(7777)).await.unwrap();
        assert!(announced.announced > 0, "{announced:?}");
        let found = nodes[9].get_peers(hash, None).await.unwrap();
        assert_eq!(found.peers, vec!["127.0.0.1:7777".parse().unwrap()]);
        let saved = nodes[9].saved_table().await.unwrap();
        assert!(saved.nodes.len() >= 5, "{saved:?}");
        assert_eq!(SavedTable::parse(&saved.encode()).unwrap(), saved);
    }

    fn seed_byte(h: &DhtHandle) -> u8 {
        (h.local_addr().port() % 251) as u8
    }
}
