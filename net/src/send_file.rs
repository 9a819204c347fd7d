//! Sending ranges of a torrent's files to a socket without reading them first (the seeder's send path, issue
//! 17): on a real TCP socket, one `writev` takes what is queued for the connection, bytes and file ranges alike,
//! the ranges straight from a read-only mapping of the file ([`StorageFile::mapped_for_kernel`]) that this
//! process never reads: the kernel copies from the page cache to the socket, once. Anywhere else (a simulated
//! socket; a file without a mapping: the simulator's disks, watched disks) a range is read with
//! [`StorageFile::read_at`] and written, one queued item a call.
//!
//! Why not `sendfile`: it was tried first (`bench/RESULTS.md`, issue 17): one `sendfile` per 16 KiB block plus
//! one `send` per PIECE header cost the seeder 0.97 CPU s per GiB against 0.65–0.76 for the copying path it
//! replaced, which writes many messages per system call. A vectored write keeps that batching and drops the
//! two copies in user space (`pread`, then into the node's outbox).
//!
//! The real TCP path is recognised by the stream's type (`tokio::net::TcpStream`), so that the transport seam
//! and the simulator's streams need nothing new.

use crate::storage::StorageFile;
use crate::transport::ByteStream;
use bytes::{Buf, Bytes};
use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Most bytes the copy path reads for one write.
const COPY_CHUNK: usize = 64 * 1024;

/// Most queued items one `writev` takes.
const MAX_IOV: usize = 64;

/// Bytes this process sent from file mappings, since it started.
static SENT_FROM_FILES: AtomicU64 = AtomicU64::new(0);

/// Bytes this process sent straight from files' mappings (the copy path is not counted): how a test or a
/// status line tells that the seeder's send path is the one without reads.
pub fn bytes_sent_from_files() -> u64 {
    SENT_FROM_FILES.load(Ordering::Relaxed)
}

/// A range of one open file to send as it is.
#[derive(Clone)]
pub struct FileRange {
    /// The file.
    pub file: Arc<dyn StorageFile>,
    /// Where the range starts in the file.
    pub offset: u64,
    /// Bytes left to send.
    pub len: u64,
}

impl std::fmt::Debug for FileRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRange")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl FileRange {
    /// `n` bytes were sent: the range now starts after them.
    pub fn advance(&mut self, n: u64) {
        let n = n.min(self.len);
        self.offset += n;
        self.len -= n;
    }
}

/// Something queued for a socket: bytes, or a range of a file.
#[derive(Debug)]
pub enum Outgoing {
    /// Bytes.
    Bytes(Bytes),
    /// A range of a file, sent from the file.
    File(FileRange),
}

impl Outgoing {
    /// Bytes left to send.
    pub fn len(&self) -> u64 {
        match self {
            Outgoing::Bytes(b) => b.len() as u64,
            Outgoing::File(r) => r.len,
        }
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drop the first `n` bytes of `queue` (they were sent).
pub fn advance_queue(queue: &mut VecDeque<Outgoing>, mut n: u64) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        let len = front.len();
        if n >= len {
            queue.pop_front();
            n -= len;
        } else {
            match front {
                Outgoing::Bytes(b) => b.advance(n as usize),
                Outgoing::File(r) => r.advance(n),
            }
            n = 0;
        }
    }
}

/// Why what was queued could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendFileError {
    /// The file ends before the range does (it was truncated under the seeder).
    #[error("the file ends before offset {offset} + {len}: truncated while being served")]
    Truncated {
        /// Where the unsent part of the range starts.
        offset: u64,
        /// Bytes of the range left unsent.
        len: u64,
    },
    /// Reading the file failed.
    #[error("reading a file range to send failed: {0}")]
    File(io::Error),
    /// Writing the socket failed.
    #[error("writing the socket failed: {0}")]
    Socket(io::Error),
}

impl SendFileError {
    /// Whether the file, not the socket, failed: the stream is then cut inside a message.
    pub fn is_file(&self) -> bool {
        !matches!(self, SendFileError::Socket(_))
    }
}

/// Write what the socket takes now of the front of `queue`: the number of bytes written (0 only for an empty
/// queue). On a real TCP socket, up to [`MAX_IOV`] items in one `writev`; elsewhere the front item.
pub fn poll_write_queue<S: ByteStream>(
    stream: &mut S,
    cx: &mut Context<'_>,
    queue: &VecDeque<Outgoing>,
) -> Poll<Result<usize, SendFileError>> {
    let Some(front) = queue.front() else {
        return Poll::Ready(Ok(0));
    };
    #[cfg(target_os = "linux")]
    if let Some(tcp) = (stream as &mut dyn Any).downcast_mut::<tokio::net::TcpStream>() {
        if let Some(iov) = linux::iovecs(queue) {
            return linux::poll_writev(tcp, cx, &iov, queue);
        }
    }
    match front {
        Outgoing::Bytes(b) => match stream.poll_write_bytes(cx, b) {
            Poll::Ready(r) => Poll::Ready(r.map_err(SendFileError::Socket)),
            Poll::Pending => Poll::Pending,
        },
        Outgoing::File(r) => poll_copy(stream, cx, r),
    }
}

/// The copy path: read a chunk of the range and write it.
fn poll_copy<S: AsyncWrite + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    range: &FileRange,
) -> Poll<Result<usize, SendFileError>> {
    let chunk = range.len.min(COPY_CHUNK as u64) as usize;
    // `read_at` reads zeros past the end of the file: the length says whether the range is still there.
    if range.file.len().map_err(SendFileError::File)? < range.offset + chunk as u64 {
        return Poll::Ready(Err(truncated(range)));
    }
    let mut buf = vec![0u8; chunk];
    range
        .file
        .read_at(&mut buf, range.offset)
        .map_err(SendFileError::File)?;
    match Pin::new(stream).poll_write(cx, &buf) {
        Poll::Ready(r) => Poll::Ready(r.map_err(SendFileError::Socket)),
        Poll::Pending => Poll::Pending,
    }
}

fn truncated(range: &FileRange) -> SendFileError {
    SendFileError::Truncated {
        offset: range.offset,
        len: range.len,
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{truncated, Outgoing, SendFileError, MAX_IOV, SENT_FROM_FILES};
    use std::collections::VecDeque;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// The vectors for the front items of `queue`, up to the first file range without a mapping; `None` when
    /// that is the front item (it takes the copy path).
    pub fn iovecs(queue: &VecDeque<Outgoing>) -> Option<Vec<libc::iovec>> {
        let mut iov = Vec::with_capacity(queue.len().min(MAX_IOV));
        for item in queue.iter().take(MAX_IOV) {
            let (base, len) = match item {
                Outgoing::Bytes(b) => (b.as_ptr().cast_mut(), b.len()),
                Outgoing::File(r) => match r.file.mapped_for_kernel(r.offset, r.len) {
                    Some(p) => (p.as_ptr(), usize::try_from(r.len).ok()?),
                    None => break,
                },
            };
            iov.push(libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            });
        }
        (!iov.is_empty()).then_some(iov)
    }

    /// `writev` of `iov` (the front items of `queue`), waiting for the socket's readiness as tokio's own writes
    /// do. A fault in a file's mapping (the file was truncated under it) is [`SendFileError::Truncated`].
    pub fn poll_writev(
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        iov: &[libc::iovec],
        queue: &VecDeque<Outgoing>,
    ) -> Poll<Result<usize, SendFileError>> {
        loop {
            match tcp.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SendFileError::Socket(e))),
                Poll::Ready(Ok(())) => {}
            }
            let wrote = tcp.try_io(Interest::WRITABLE, || {
                // SAFETY: every vector points into a live `Bytes` of `queue` or into a file mapping that
                // lives as long as its file, which `queue` holds; the kernel only reads them.
                let n = unsafe { libc::writev(tcp.as_raw_fd(), iov.as_ptr(), iov.len() as i32) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            return match wrote {
                Ok(n) => {
                    SENT_FROM_FILES.fetch_add(from_files(queue, n), Ordering::Relaxed);
                    Poll::Ready(Ok(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
                    // Nothing was written: the front item faulted. Only a file's mapping can.
                    match queue.front() {
                        Some(Outgoing::File(r)) => Poll::Ready(Err(truncated(r))),
                        _ => Poll::Ready(Err(SendFileError::Socket(e))),
                    }
                }
                Err(e) => Poll::Ready(Err(SendFileError::Socket(e))),
            };
        }
    }

    /// How many of the first `n` bytes of `queue` are file ranges.
    fn from_files(queue: &VecDeque<Outgoing>, mut n: usize) -> u64 {
        let mut files = 0;
        for item in queue {
            if n == 0 {
                break;
            }
            let take = (item.len() as usize).min(n);
            if matches!(item, Outgoing::File(_)) {
                files += take as u64;
            }
            n -= take;
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::conn_io::Sockets;
    use crate::storage::{StdStorage, Storage};
    use enjambre_core::node::{CloseReason, Input};
    use tokio::io::{AsyncRead, AsyncReadExt};
    use tokio::net::{TcpListener, TcpStream};

    fn file_with(name: &str, data: &[u8]) -> Arc<dyn StorageFile> {
        let dir = std::env::temp_dir().join(format!("enjambre-sendfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        StdStorage.open(&path, false).unwrap()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(7) % 251) as u8)
            .collect()
    }

    /// A connected pair of real TCP sockets on 127.0.0.1; the sender's buffer is small, so that a large range
    /// takes many partial sends.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        let (sender, accepted) = tokio::join!(socket.connect(addr), listener.accept());
        (sender.unwrap(), accepted.unwrap().0)
    }

    /// Send `range` whole, resuming after each partial write: the number of calls that wrote something.
    async fn send_all<S: ByteStream>(
        stream: &mut S,
        range: FileRange,
    ) -> Result<usize, SendFileError> {
        let mut queue = VecDeque::from([Outgoing::File(range)]);
        let mut calls = 0;
        while !queue.is_empty() {
            let n = std::future::poll_fn(|cx| poll_write_queue(stream, cx, &queue)).await?;
            advance_queue(&mut queue, n as u64);
            calls += 1;
        }
        Ok(calls)
    }

    async fn read_n<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        r.read_exact(&mut got).await.unwrap();
        got
    }

    /// Over real TCP the range goes from the file's mapping, in partial writes that resume where the last one
    /// stopped, and the other end reads exactly the file's bytes.
    #[tokio::test]
    async fn a_range_sent_from_the_file_arrives_whole_through_partial_sends() {
        let data = pattern(3 << 20);
        let (mut tx, mut rx) = tcp_pair().await;
        let len = (3 << 20) - 1005;
        let reader = tokio::spawn(async move { read_n(&mut rx, len).await });
        let before = bytes_sent_from_files();
        let range = FileRange {
            file: file_with("whole", &data),
            offset: 1000,
            len: len as u64,
        };
        let calls = send_all(&mut tx, range).await.unwrap();
        assert_eq!(reader.await.unwrap(), &data[1000..1000 + len]);
        assert!(
            calls > 1,
            "3 MiB into a 16 KiB socket buffer takes partial sends"
        );
        assert!(
            bytes_sent_from_files() - before >= len as u64,
            "sent by sendfile"
        );
    }

    /// A file truncated under the seeder gives a typed error once the bytes it still has are sent: on a real
    /// socket, where the range is copied by the kernel from the file's mapping (made while the file was
    /// whole), and on the copy path.
    #[tokio::test]
    async fn a_file_truncated_under_the_range_is_a_typed_error() {
        let data = pattern(128 * 1024);
        let file = file_with("short", &data);
        assert!(
            file.mapped_for_kernel(0, 128 * 1024).is_some(),
            "mapped whole"
        );
        file.set_len(64 * 1024).unwrap();
        let range = || FileRange {
            file: file.clone(),
            offset: 32 * 1024,
            len: 64 * 1024,
        };
        let (mut tx, mut rx) = tcp_pair().await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).await.unwrap();
            got
        });
        let err = send_all(&mut tx, range()).await.unwrap_err();
        drop(tx);
        // The kernel stops at the fault, or a little before it (it copies to the socket in chunks).
        let SendFileError::Truncated { offset, len } = err else {
            panic!("expected a truncated range, got {err:?}");
        };
        assert_eq!(offset + len, 96 * 1024, "{err:?}");
        assert!((32 * 1024..=64 * 1024).contains(&offset), "{err:?}");
        assert_eq!(reader.await.unwrap(), &data[32 * 1024..offset as usize]);

        let (mut a, _b) = tokio::io::duplex(1 << 20);
        let err = send_all(&mut a, range()).await.unwrap_err();
        assert!(
            matches!(
                err,
                SendFileError::Truncated {
                    offset: 32768,
                    len: 65536
                }
            ),
            "copy path: {err:?}"
        );
    }

    /// Through a connection's socket: bytes queued before a range leave before it, the range arrives as the
    /// file holds it (on a real socket and on one that takes the copy path), and a range the file no longer
    /// holds drops the connection with [`CloseReason::ServeReadFailed`].
    #[tokio::test]
    async fn sockets_send_header_then_range_and_drop_a_connection_whose_file_is_short() {
        let data = pattern(100_000);
        let file = file_with("sockets", &data);
        let range = FileRange {
            file: file.clone(),
            offset: 10,
            len: 50_000,
        };
        let mut expected = b"header".to_vec();
        expected.extend_from_slice(&data[10..50_010]);

        let (tx, mut rx) = tcp_pair().await;
        let mut tcp = Sockets::new(None, Clock::new());
        tcp.insert(1, tx);
        tcp.send_ranges(
            1,
            Bytes::from_static(b"header"),
            vec![range.clone()],
            1 << 20,
        )
        .unwrap();
        let reader = tokio::spawn(async move { read_n(&mut rx, 50_006).await });
        // The socket takes the rest as the reader drains it, flushed by each poll of the connection.
        let mut inputs = Vec::new();
        while !reader.is_finished() {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(10),
                std::future::poll_fn(|cx| tcp.poll_inputs(cx, true, 8, &mut inputs)),
            )
            .await;
        }
        assert_eq!(reader.await.unwrap(), expected);

        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut copy = Sockets::new(None, Clock::new());
        copy.insert(2, a);
        copy.send_ranges(2, Bytes::from_static(b"header"), vec![range], 1 << 20)
            .unwrap();
        copy.flush_deferred();
        assert_eq!(read_n(&mut b, 50_006).await, expected);

        let short = FileRange {
            file,
            offset: 90_000,
            len: 20_000,
        };
        copy.send_ranges(2, Bytes::new(), vec![short], 1 << 20)
            .unwrap();
        let mut inputs = Vec::new();
        std::future::poll_fn(|cx| copy.poll_inputs(cx, true, 8, &mut inputs)).await;
        assert!(
            matches!(
                inputs[..],
                [Input::Dropped {
                    conn: 2,
                    reason: CloseReason::ServeReadFailed
                }]
            ),
            "{inputs:?}"
        );
    }
}
