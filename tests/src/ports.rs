//! Which of our child processes owns a loopback port.
//!
//! A peer reports the sources of a download, and the peers it banned, by the address of the connection. When
//! the other side dialled in, that address carries its *ephemeral* port, not its listening port, so a test
//! cannot tell who it was from the address alone. [`PortWatch`] samples `/proc/net/tcp{,6}` and the socket
//! descriptors of the processes it watches (Linux only, no libc) every 5 milliseconds while the test runs,
//! and remembers every local port it saw each of them use: listening ports and connection ports alike.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often ports are sampled: often enough to see a connection that lives a few milliseconds.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Shared {
    watched: Vec<(String, u32)>,
    owners: BTreeMap<u16, String>,
    listening: BTreeSet<u16>,
}

/// A background sampler of port ownership; stops on drop.
pub struct PortWatch {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PortWatch {
    /// Start sampling (no process is watched yet).
    pub fn start() -> PortWatch {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("port-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        sample(&shared);
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                })
                .expect("spawn port watcher")
        };
        PortWatch {
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Watch process `pid` under `label` (sampled at once, then periodically).
    pub fn watch(&self, label: &str, pid: u32) {
        lock(&self.shared).watched.push((label.to_string(), pid));
        sample(&self.shared);
    }

    /// Record that `port` belongs to `label` (a listening port known from the process's output).
    pub fn claim(&self, label: &str, port: u16) {
        lock(&self.shared).owners.insert(port, label.to_string());
    }

    /// Who used the port of `addr` (loopback addresses only), if one of the watched processes did.
    pub fn owner(&self, addr: &SocketAddr) -> Option<String> {
        if !addr.ip().is_loopback() {
            return None;
        }
        sample(&self.shared);
        lock(&self.shared).owners.get(&addr.port()).cloned()
    }

    /// Whether `port` was seen as a listening socket of a watched process (else it was a connection's).
    pub fn is_listening(&self, port: u16) -> bool {
        lock(&self.shared).listening.contains(&port)
    }

    /// Every port seen, with its owner (for failure messages).
    pub fn snapshot(&self) -> BTreeMap<u16, String> {
        lock(&self.shared).owners.clone()
    }
}

impl Drop for PortWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One pass: socket inodes of each watched process, then the local ports of those sockets.
fn sample(shared: &Mutex<Shared>) {
    let watched = lock(shared).watched.clone();
    if watched.is_empty() {
        return;
    }
    let mut inode_owner: BTreeMap<u64, String> = BTreeMap::new();
    for (label, pid) in &watched {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            {
                inode_owner.insert(inode, label.clone());
            }
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some((port, inode, listen)) = parse_tcp_line(line) {
                if let Some(label) = inode_owner.get(&inode) {
                    found.push((port, label.clone(), listen));
                }
            }
        }
    }
    let mut s = lock(shared);
    for (port, label, listen) in found {
        s.owners.insert(port, label);
        if listen {
            s.listening.insert(port);
        }
    }
}

/// `(local port, inode, listening)` of one `/proc/net/tcp` row:
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...` (state `0A` is LISTEN).
fn parse_tcp_line(line: &str) -> Option<(u16, u64, bool)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(1)?;
    let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    let listening = *fields.get(3)? == "0A";
    let inode = fields.get(9)?.parse::<u64>().ok()?;
    (inode != 0).then_some((port, inode, listening))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_proc_net_tcp_row() {
        let row = "   3: 0100007F:1F90 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(parse_tcp_line(row), Some((0x1F90, 123456, false)));
        let row = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 99 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_tcp_line(row), Some((0x1F90, 99, true)));
    }

    #[test]
    fn sees_the_ports_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let watch = PortWatch::start();
        watch.watch("me", std::process::id());
        assert_eq!(watch.owner(&addr).as_deref(), Some("me"));
        assert!(watch.is_listening(addr.port()));
        assert!(!watch.is_listening(client.local_addr().unwrap().port()));
        assert_eq!(
            watch.owner(&client.local_addr().unwrap()).as_deref(),
            Some("me")
        );
    }
}
