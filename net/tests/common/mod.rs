//! What net's loopback tests of [`Peer`] share: a peer's options, a file to share and its metainfo, and
//! waiting for a peer's torrent to reach a state.

use enjambre_core::metainfo::Metainfo;
use enjambre_core::node::{NodeConfig, TorrentStats};
use enjambre_net::create::create_metainfo;
use enjambre_net::peer::{Peer, PeerOptions};
use enjambre_net::storage::StdStorage;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of peer number `n` (its peer id's last byte and its seed) keeping its files in `dir`, listening
/// on a free port of 127.0.0.1, with no tracker.
pub fn peer_options(dir: PathBuf, n: u8) -> PeerOptions {
    let mut node = NodeConfig::default();
    node.peer_id[19] = n;
    node.seed = u64::from(n);
    PeerOptions {
        node,
        dir,
        listen: "127.0.0.1:0".parse().expect("address"),
        tracker: None,
        max_upload_rate: None,
        max_download_rate: None,
        events: None,
        unsafe_checkpoint_before_sync: false,
    }
}

/// Write `data` as `dir/name` and describe it in pieces of `piece_length` bytes.
pub fn shared_file(dir: &Path, name: &str, data: &[u8], piece_length: u32) -> Metainfo {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write the shared file");
    create_metainfo(&StdStorage, &path, piece_length, None, &mut |_, _| {}).expect("metainfo")
}

/// The stats of `peer`'s torrents once `done` holds for them, polled every `every`; panics with the last
/// stats (and `what`) when that takes more than `within`.
pub async fn wait_for_stats(
    peer: &Peer,
    what: &str,
    within: Duration,
    every: Duration,
    done: impl Fn(&[TorrentStats]) -> bool,
) -> Vec<TorrentStats> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stats = peer.stats().await.expect("stats");
        if done(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {stats:?}");
        tokio::time::sleep(every).await;
    }
}

/// Whether the first torrent is complete and every piece of it durable.
pub fn complete_and_durable(stats: &[TorrentStats]) -> bool {
    stats
        .first()
        .is_some_and(|s| s.complete && s.pieces_durable == s.pieces_total)
}
