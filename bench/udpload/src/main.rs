//! `udpload`: load a UDP tracker (BEP 15) the way many clients would, for `bench/tracker`.
//!
//! Each thread keeps `--window` simulated clients in flight on its own socket. A simulated client sends a
//! connect, then an announce with the connection id it got (a random info hash of the pool, a random peer
//! id and port, numwant 50), and is replaced by a fresh one once answered. A request unanswered for
//! `--timeout-ms` is counted lost and its client replaced. At the end one line of `key=value` figures
//! is printed: announces answered, announces per second, connects, errors, lost, and the latency of a
//! whole client (connect + announce) at p50 and p99.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use enjambre_core::metainfo::InfoHash;
use enjambre_core::tracker::udp::{
    encode_announce_request, encode_connect_request, parse_response, UdpResponse, MAX_DATAGRAM,
};
use enjambre_core::tracker::{AnnounceParams, Event};
use rand::Rng;

/// The UDP tracker load generator.
#[derive(Debug, Parser)]
#[command(name = "udpload", about)]
struct Args {
    /// The tracker's UDP address.
    #[arg(long)]
    server: SocketAddr,
    /// File of info hashes, 40 hex digits a line (the same pool as the HTTP load).
    #[arg(long)]
    pool: PathBuf,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sending threads, each with its own socket.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Simulated clients in flight per thread.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// A request unanswered this long is lost.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
}

/// Where a simulated client is.
#[derive(Debug, Clone, Copy)]
enum Step {
    Connecting,
    Announcing,
}

/// One simulated client in flight.
#[derive(Debug, Clone, Copy)]
struct Client {
    step: Step,
    /// The transaction id its pending request carries: the slot index in the low 16 bits.
    transaction_id: u32,
    started: Instant,
    sent: Instant,
}

/// What one thread counted.
#[derive(Debug, Default)]
struct Tally {
    announces: u64,
    connects: u64,
    errors: u64,
    lost: u64,
    /// Connect + announce latencies, in microseconds.
    latencies_us: Vec<u32>,
}

fn read_pool(path: &PathBuf) -> anyhow::Result<Vec<InfoHash>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let pool: Vec<InfoHash> = text
        .lines()
        .filter_map(|l| InfoHash::from_hex(l.trim()))
        .collect();
    anyhow::ensure!(!pool.is_empty(), "no info hash in {}", path.display());
    Ok(pool)
}

/// Run one thread's clients until `until`.
fn run_thread(args: &Args, pool: &[InfoHash], until: Instant) -> anyhow::Result<Tally> {
    let socket = UdpSocket::bind("0.0.0.0:0").context("bind")?;
    socket.connect(args.server).context("connect")?;
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .context("read timeout")?;
    let mut rng = rand::thread_rng();
    let timeout = Duration::from_millis(args.timeout_ms);
    let window = args.window.clamp(1, 1 << 16);
    let mut tally = Tally::default();
    let mut generation: u32 = 0;
    let mut start_client = |slot: usize| -> anyhow::Result<Client> {
        generation = generation.wrapping_add(1);
        let transaction_id = (generation << 16) | slot as u32;
        socket.send(&encode_connect_request(transaction_id))?;
        let now = Instant::now();
        Ok(Client {
            step: Step::Connecting,
            transaction_id,
            started: now,
            sent: now,
        })
    };
    let mut clients = Vec::with_capacity(window);
    for slot in 0..window {
        clients.push(start_client(slot)?);
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_sweep = Instant::now();
    while Instant::now() < until {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let Ok(resp) = parse_response(&buf[..n], false) else {
                    tally.errors += 1;
                    continue;
                };
                let tid = resp.transaction_id();
                let slot = (tid & 0xffff) as usize;
                let Some(client) = clients.get_mut(slot) else {
                    continue;
                };
                if client.transaction_id != tid {
                    continue; // a late answer to a request already counted lost
                }
                match (resp, client.step) {
                    (UdpResponse::Connect { connection_id, .. }, Step::Connecting) => {
                        tally.connects += 1;
                        let params = random_announce(pool, &mut rng);
                        socket.send(&encode_announce_request(connection_id, tid, &params))?;
                        client.step = Step::Announcing;
                        client.sent = Instant::now();
                    }
                    (UdpResponse::Announce { .. }, Step::Announcing) => {
                        tally.announces += 1;
                        let us = client.started.elapsed().as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                        *client = start_client(slot)?;
                    }
                    _ => {
                        tally.errors += 1;
                        *client = start_client(slot)?;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => tally.errors += 1,
            Err(e) => return Err(e).context("receive"),
        }
        if last_sweep.elapsed() >= Duration::from_millis(50) {
            last_sweep = Instant::now();
            for (slot, client) in clients.iter_mut().enumerate() {
                if client.sent.elapsed() >= timeout {
                    tally.lost += 1;
                    *client = start_client(slot)?;
                }
            }
        }
    }
    Ok(tally)
}

/// An announce of a fresh client: random torrent of the pool, random peer id and port.
fn random_announce(pool: &[InfoHash], rng: &mut impl Rng) -> AnnounceParams {
    AnnounceParams {
        info_hash: pool[rng.gen_range(0..pool.len())],
        peer_id: rng.gen(),
        port: rng.gen_range(1024..=u16::MAX),
        uploaded: 0,
        downloaded: 0,
        left: 1000,
        event: Event::None,
        numwant: 50,
        key: rng.gen(),
        ext: Default::default(),
    }
}

fn percentile(sorted: &[u32], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    f64::from(sorted[i]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = read_pool(&args.pool)?;
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let tallies: Vec<anyhow::Result<Tally>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads.max(1))
            .map(|_| s.spawn(|| run_thread(&args, &pool, until)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for t in tallies {
        let t = t?;
        total.announces += t.announces;
        total.connects += t.connects;
        total.errors += t.errors;
        total.lost += t.lost;
        total.latencies_us.extend(t.latencies_us);
    }
    total.latencies_us.sort_unstable();
    println!(
        "announces={} announces_per_s={:.0} connects={} errors={} lost={} p50_ms={:.3} p99_ms={:.3} seconds={:.2}",
        total.announces,
        total.announces as f64 / elapsed,
        total.connects,
        total.errors,
        total.lost,
        percentile(&total.latencies_us, 50),
        percentile(&total.latencies_us, 99),
        elapsed
    );
    Ok(())
}
