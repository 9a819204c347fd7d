//! Test support: [`LocalTracker`], the tracker server a test runs on a free port of 127.0.0.1.
//!
//! Compiled for this crate's tests and behind the `test-support` feature (see [`crate::storage::testing`]).

use super::{serve, ServerConfig};
use crate::app::TrackerUrls;
use crate::clock::Clock;
use crate::transport::{Listener, TokioTransport, Transport};
use enjambre_core::tracker::{Registry, RegistryConfig};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// A tracker served over real TCP in this process's tokio runtime, stopped when dropped.
pub struct LocalTracker {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it knows, for the test to look at or change.
    pub registry: Arc<Mutex<Registry>>,
    task: JoinHandle<()>,
}

impl LocalTracker {
    /// A fresh registry with `registry`'s settings, served with `config` on a free port of 127.0.0.1.
    pub async fn start(registry: RegistryConfig, config: ServerConfig) -> io::Result<LocalTracker> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), registry, config).await
    }

    /// As [`LocalTracker::start`], listening on `addr` (a port the test chose and published earlier).
    pub async fn start_at(
        addr: SocketAddr,
        registry: RegistryConfig,
        config: ServerConfig,
    ) -> io::Result<LocalTracker> {
        let listener = TokioTransport.bind(addr).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Mutex::new(Registry::new(registry)));
        let task = tokio::spawn(serve::<TokioTransport>(
            listener,
            Arc::clone(&registry),
            Clock::new(),
            config,
        ));
        Ok(LocalTracker {
            addr,
            registry,
            task,
        })
    }

    /// Its announce URL, `http://ADDR/announce`.
    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Its URLs as a peer is given them.
    pub fn urls(&self) -> TrackerUrls {
        TrackerUrls {
            announce: self.announce_url(),
            base: format!("http://{}", self.addr),
        }
    }
}

impl Drop for LocalTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn serves_until_dropped() {
        let tracker = LocalTracker::start(RegistryConfig::default(), ServerConfig::default())
            .await
            .unwrap();
        let addr = tracker.addr;
        assert_eq!(tracker.urls().announce, format!("http://{addr}/announce"));
        assert_eq!(tracker.urls().base, format!("http://{addr}"));
        let listed = get(addr, "/files").await.unwrap();
        assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
        drop(tracker);
        // The listener goes with the task (once the runtime has run the abort).
        let mut refused = false;
        for _ in 0..100 {
            if get(addr, "/files").await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(refused, "the tracker still answers after it was dropped");
    }
}
