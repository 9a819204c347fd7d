//! `corrupt_peer`: a deliberately dishonest seeder for the end-to-end tests.
//!
//! It seeds one file through the real peer driver (`enjambre_net::peer`), hashed honestly, but over a storage
//! wrapper that flips a byte in every read touching a chosen set of pieces, so the blocks it serves for those
//! pieces fail SHA-1 at the receiver.
//!
//! ```text
//! corrupt_peer --dir DIR --file NAME [--listen 127.0.0.1:0] [--tracker URL] [--corrupt-every N]
//!              [--connect HOST:PORT]...
//! ```
//! `--connect` dials a peer itself (which then sees it only as an inbound connection). Every connection it
//! opens is printed as `connected LOCAL REMOTE`, so a test can tell its ephemeral ports from others'.
//! Pieces whose index is a multiple of N (default 1: every piece) are corrupted. Prints
//! `listening on ADDR`, then `seeding NAME INFOHASH`, and serves until killed.

use enjambre_core::node::NodeConfig;
use enjambre_net::clock::Clock;
use enjambre_net::create::create_metainfo;
use enjambre_net::peer::{AddMode, Peer, PeerEnv, PeerOptions};
use enjambre_net::storage::{StdStorage, Storage, StorageWatch, ThreadPool, Watched};
use enjambre_net::transport::{TokioTransport, Transport};
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Command-line options.
struct Args {
    dir: PathBuf,
    file: String,
    listen: SocketAddr,
    tracker: Option<String>,
    corrupt_every: u32,
    connect: Vec<SocketAddr>,
}

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut file = None;
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut tracker = None;
    let mut corrupt_every = 1u32;
    let mut connect = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--file" => file = Some(value()?),
            "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--tracker" => tracker = Some(value()?),
            "--corrupt-every" => {
                corrupt_every = value()?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--corrupt-every needs a positive number")?
            }
            "--connect" => connect.push(value()?.parse().map_err(|e| format!("--connect: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        dir: dir.ok_or("--dir is required")?,
        file: file.ok_or("--file is required")?,
        listen,
        tracker,
        corrupt_every,
        connect,
    })
}

/// What turns real storage into a dishonest one: reads of `target` are corrupted in the chosen pieces.
struct CorruptReads {
    target: PathBuf,
    piece_length: u64,
    every: u64,
}

impl StorageWatch for CorruptReads {
    fn watches(&self, path: &Path) -> bool {
        path == self.target
    }

    fn after_read(&self, buf: &mut [u8], offset: u64) {
        // A single-file torrent: file offsets are torrent offsets.
        let end = offset + buf.len() as u64;
        let mut piece = offset / self.piece_length;
        while piece * self.piece_length < end {
            if piece.checked_rem(self.every) == Some(0) {
                let at = (piece * self.piece_length).max(offset) - offset;
                if let Some(b) = buf.get_mut(at as usize) {
                    *b ^= 0xFF;
                }
            }
            piece += 1;
        }
    }

    fn known_sha1_holds(&self) -> bool {
        false
    }
}

/// Real TCP, printing the local and remote address of every outbound connection.
#[derive(Debug, Clone, Copy, Default)]
struct LoggingTransport;

// `async fn` in the impl would not promise `Send` futures, which the trait requires.
#[allow(clippy::manual_async_fn)]
impl Transport for LoggingTransport {
    type Stream = <TokioTransport as Transport>::Stream;
    type Listener = <TokioTransport as Transport>::Listener;
    type Datagram = <TokioTransport as Transport>::Datagram;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        TokioTransport.bind(addr)
    }

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        async move {
            let s = TokioTransport.connect(addr).await?;
            if let Ok(local) = s.local_addr() {
                println!("connected {local} {addr}");
            }
            Ok(s)
        }
    }

    fn connect_host(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        TokioTransport.connect_host(host, port)
    }

    fn bind_udp(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Datagram>> + Send {
        TokioTransport.bind_udp(addr)
    }

    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<SocketAddr>> + Send {
        TokioTransport.resolve(host, port)
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("corrupt_peer: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let target = args.dir.join(&args.file);
    let meta = create_metainfo(
        &StdStorage,
        &target,
        enjambre_core::DEFAULT_PIECE_LENGTH,
        args.tracker.as_deref(),
        &mut |_, _| {},
    )
    .map_err(|e| format!("cannot hash {}: {e}", target.display()))?;
    let storage = Watched::new(
        StdStorage,
        CorruptReads {
            target: target.clone(),
            piece_length: u64::from(meta.piece_length()),
            every: u64::from(args.corrupt_every),
        },
    );
    let mut node = NodeConfig {
        peer_id: *b"-EJ0100-CORRUPT00000",
        ..NodeConfig::default()
    };
    let pid = std::process::id().to_string();
    let tail = &mut node.peer_id[20 - pid.len().min(5)..];
    tail.copy_from_slice(&pid.as_bytes()[pid.len() - tail.len()..]);
    node.seed = u64::from(std::process::id());
    let env = PeerEnv {
        transport: LoggingTransport,
        blocking: ThreadPool,
        storage: Arc::new(storage) as Arc<dyn Storage>,
        clock: Clock::new(),
    };
    let options = PeerOptions {
        node,
        dir: args.dir.clone(),
        listen: args.listen,
        tracker: args.tracker.clone(),
        max_upload_rate: None,
        max_download_rate: None,
        events: None,
        unsafe_checkpoint_before_sync: false,
    };
    let (peer, task) = Peer::start(env, options).await.map_err(|e| e.to_string())?;
    println!("listening on {}", peer.local_addr());
    let hash = peer
        .add(ThreadPool, meta, AddMode::Seed, args.tracker, vec![])
        .await
        .map_err(|e| e.to_string())?;
    println!("seeding {} {}", args.file, hash.to_hex());
    let _ = io::stdout().flush();
    for addr in &args.connect {
        peer.add_peer(hash, *addr);
    }
    task.await.map_err(|e| e.to_string())
}
