//! Interop with the BitTorrent clients people run: libtorrent (python3-libtorrent, driven by
//! `tests/interop/lt_peer.py`), aria2c and mktorrent, against the real `tracker` and `peer` binaries on
//! 127.0.0.1. Each test starts what it needs on free ports and stops it (process guards kill on drop).
//!
//! A test whose client is not installed prints `SKIP: ...` and passes, except under CI (`CI` set, as
//! `.ci/run` does, which installs `python3-libtorrent aria2 mktorrent`), where a missing client fails it.
//!
//! The foreign clients run isolated (no DHT, local discovery, peer exchange, UPnP/NAT-PMP), so every peer
//! they meet came from enjambre's tracker (or dialled in after getting their address from it); `dht.rs` and
//! `pex.rs` turn on the one mechanism they test.
//!
//! libtorrent runs with its default settings in `seeder.rs` (it dials over uTP first, which enjambre does not
//! speak, and falls back to TCP after about 3 s). Elsewhere it runs TCP-only (`--no-utp`): a libtorrent
//! peer that has a uTP dial pending to an enjambre peer turns away that peer's own TCP connection as a
//! "duplicate peer-id" until the uTP attempt times out, which only costs time.

mod dht;
mod foreign;
mod leecher;
mod magnet;
mod metainfo;
mod mixed;
mod pex;
mod seeder;
mod tracker;
