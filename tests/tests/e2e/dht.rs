//! The DHT (BEP 5) with the real binaries and no tracker anywhere: a seeder and a leecher that know only a
//! third node (`peer serve --dht`), the leecher opening a magnet without `tr`; and the routing table kept
//! in `DIR/.enjambre` across a restart, so that a peer given no bootstrap node finds its way back in.

use enjambre_core::dht::saved::SavedTable;
use enjambre_net::app::dht_table_path;
use enjambre_tests::bins::{get, serve, PeerArgs, Server};
use enjambre_tests::files::{assert_same_file, write_pattern_file, Scratch};
use std::time::Duration;

const NAME: &str = "dht.bin";
const SIZE: u64 = 3 * 1024 * 1024 + 77;

/// A node with nothing to share that the others join through; its DHT listens on its peer port.
fn bootstrap_node(scratch: &Scratch) -> Server {
    let mut boot = serve(
        "boot",
        scratch,
        &PeerArgs::new(None, &scratch.dir("boot")).dht(&[]),
        &[],
    );
    let udp = boot
        .proc
        .wait_line("`DHT node on` line", Duration::from_secs(20), |l| {
            l.strip_prefix("DHT node on udp://")?
                .parse::<std::net::SocketAddr>()
                .ok()
        });
    assert_eq!(udp, boot.addr, "the DHT listens on the peer's port");
    boot
}

/// A seeder of `NAME` joining through `boot`: its magnet without `tr` or `x.pe`.
fn seeder(scratch: &Scratch, boot: &Server) -> (Server, String) {
    let dir = scratch.dir("seeder");
    write_pattern_file(&dir.join(NAME), SIZE, 181);
    let s = serve(
        "seeder",
        scratch,
        &PeerArgs::new(None, &dir).dht(&[boot.addr]),
        &[NAME],
    );
    let uri = format!("magnet:?xt=urn:btih:{}&dn={NAME}", s.seeding[NAME]);
    (s, uri)
}

#[test]
fn a_magnet_without_a_tracker_finds_its_swarm_through_the_dht() {
    let scratch = Scratch::new("dht-magnet");
    let boot = bootstrap_node(&scratch);
    let (s, uri) = seeder(&scratch, &boot);
    let l_dir = scratch.dir("leecher");
    let args = PeerArgs::new(None, &l_dir).dht(&[boot.addr]);
    let mut l = get("leecher", &scratch, &args, &[&uri], &[]);
    let reports = l.reports(1, Duration::from_secs(60));
    assert_eq!(reports[0].info_hash.to_hex(), s.seeding[NAME]);
    assert!(
        reports[0].sources.contains_key(&s.addr),
        "the seeder found through the DHT sent the file: {:?}",
        reports[0].sources
    );
    assert_same_file(&scratch.path().join("seeder").join(NAME), &l_dir.join(NAME));
}

#[test]
fn the_routing_table_is_kept_in_the_state_folder_and_rejoined_after_a_restart() {
    let scratch = Scratch::new("dht-table");
    let boot = bootstrap_node(&scratch);
    let (s, uri) = seeder(&scratch, &boot);
    // First run: join through the bootstrap node, then stop cleanly (the table is saved on shutdown).
    let l_dir = scratch.dir("leecher");
    let mut first = serve(
        "leecher-1",
        &scratch,
        &PeerArgs::new(None, &l_dir).dht(&[boot.addr]),
        &[],
    );
    std::thread::sleep(Duration::from_secs(1));
    first.proc.signal("TERM");
    let status = first.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit on SIGTERM: {status}");
    let path = dht_table_path(&l_dir);
    let saved = SavedTable::parse(&std::fs::read(&path).expect("the table is saved"))
        .expect("the saved table reads back");
    let contacts: Vec<_> = saved.nodes.iter().map(|n| n.addr).collect();
    assert!(
        contacts.contains(&boot.addr) && contacts.contains(&s.addr),
        "{contacts:?}"
    );
    // Second run, given no bootstrap node: only the saved table leads to the seeder.
    let args = PeerArgs::new(None, &l_dir).dht(&[]);
    let mut l = get("leecher-2", &scratch, &args, &[&uri], &[]);
    let reports = l.reports(1, Duration::from_secs(60));
    assert!(reports[0].sources.contains_key(&s.addr), "{reports:?}");
    assert_same_file(&scratch.path().join("seeder").join(NAME), &l_dir.join(NAME));
    let again = SavedTable::parse(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(again.id, saved.id, "the node id is kept across runs");
}
