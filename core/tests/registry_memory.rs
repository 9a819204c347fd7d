//! What a registered peer costs the tracker, in heap bytes, counted by a global allocator that tracks live
//! bytes: 100,000 peers over 1,000 torrents (the full-scale figure, RSS of the running tracker with a
//! million peers, is `bench/tracker`'s).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicIsize, Ordering};

use enjambre_core::metainfo::InfoHash;
use enjambre_core::time::Instant;
use enjambre_core::tracker::proto::AnnounceRequest;
use enjambre_core::tracker::{Event, Registry, RegistryConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TORRENTS: u32 = 1_000;
const PEERS: u32 = 100_000;

/// Peer `i` announces torrent `i % TORRENTS` from its own IPv4 address and port, as a leecher.
fn announce(i: u32, info_hash: InfoHash, v6: bool) -> (IpAddr, AnnounceRequest) {
    let [_, b, c, d] = i.to_be_bytes();
    let ip = if v6 {
        IpAddr::from([
            0x2001,
            0xdb8,
            0,
            0,
            0,
            u16::from(b),
            u16::from(c),
            u16::from(d),
        ])
    } else {
        IpAddr::from([10, b, c, d])
    };
    let mut peer_id = [b'-'; 20];
    peer_id[8..12].copy_from_slice(&i.to_be_bytes());
    let req = AnnounceRequest {
        info_hash,
        peer_id,
        port: 6881 + (i % 7) as u16,
        uploaded: 0,
        downloaded: 0,
        left: 1000,
        event: Event::Started,
        numwant: Some(0),
        compact: true,
        no_peer_id: false,
    };
    (ip, req)
}

/// Heap bytes per peer of a registry that `PEERS` peers announced to.
fn bytes_per_peer(v6: bool) -> f64 {
    let hashes: Vec<InfoHash> = (0..TORRENTS)
        .map(|t| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&t.to_be_bytes());
            InfoHash(h)
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let config = RegistryConfig {
        max_torrents: TORRENTS as usize,
        ..RegistryConfig::default()
    };
    let before = LIVE.load(Ordering::Relaxed);
    let mut registry = Registry::new(config);
    let now = Instant::from_micros(1_000_000);
    for i in 0..PEERS {
        let (ip, req) = announce(i, hashes[(i % TORRENTS) as usize], v6);
        registry.announce(now, ip, &req, &mut rng).expect("room");
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(registry.peer_count(), PEERS as usize);
    let per_peer = (after - before) as f64 / f64::from(PEERS);
    drop(registry);
    per_peer
}

#[test]
fn a_registered_peer_costs_at_most_32_heap_bytes() {
    // One test runs both, one after the other: the live count is the whole process's.
    let v4 = bytes_per_peer(false);
    let v6 = bytes_per_peer(true);
    println!("heap bytes per registered peer: IPv4 {v4:.1}, IPv6 {v6:.1}");
    assert!(v4 <= 32.0, "IPv4: {v4:.1} bytes per peer");
    assert!(v6 <= 48.0, "IPv6: {v6:.1} bytes per peer");
}
