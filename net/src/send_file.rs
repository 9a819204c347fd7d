//! Sending a range of a torrent's file to a socket without reading it first: `sendfile(2)` from the page cache
//! to a real TCP socket (the seeder's send path, issue 17), a read and a write anywhere else.
//!
//! The real TCP path is recognised by the stream's type (`tokio::net::TcpStream`), so that the transport seam
//! and the simulator's streams need nothing new: a simulated socket, or a file without a descriptor (the
//! simulator's disks, watched disks), takes the copy path, which reads through [`StorageFile::read_at`] as every
//! other read does.

use crate::storage::StorageFile;
use std::any::Any;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Most bytes the copy path reads for one write.
const COPY_CHUNK: usize = 64 * 1024;

/// Bytes this process sent with `sendfile`, since it started.
static SENT_FROM_FILES: AtomicU64 = AtomicU64::new(0);

/// Bytes this process sent straight from files with `sendfile` (the copy path is not counted): how a test
/// or a status line tells that the seeder's send path is the zero-copy one.
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

/// Why a file range could not be sent.
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
    /// Reading the file or writing the socket failed.
    #[error("sending a file range failed: {0}")]
    Io(#[from] io::Error),
}

/// Send what the socket takes now of `range` (at least one byte when ready): the number of bytes sent.
pub fn poll_send_range<S: AsyncWrite + Unpin + 'static>(
    stream: &mut S,
    cx: &mut Context<'_>,
    range: &FileRange,
) -> Poll<Result<usize, SendFileError>> {
    if range.len == 0 {
        return Poll::Ready(Ok(0));
    }
    #[cfg(target_os = "linux")]
    if let Some(tcp) = (stream as &mut dyn Any).downcast_mut::<tokio::net::TcpStream>() {
        if let Some(fd) = range.file.send_fd() {
            return linux::poll_sendfile(tcp, cx, fd, range);
        }
    }
    poll_copy(stream, cx, range)
}

/// Write `data` to `stream`, saying that more bytes follow at once (`MSG_MORE` on a real TCP socket: a short
/// header is then sent in one segment with the file range after it, not alone).
pub fn poll_write_more<S: AsyncWrite + Unpin + 'static>(
    stream: &mut S,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    #[cfg(target_os = "linux")]
    if let Some(tcp) = (stream as &mut dyn Any).downcast_mut::<tokio::net::TcpStream>() {
        return linux::poll_send_more(tcp, cx, data);
    }
    Pin::new(stream).poll_write(cx, data)
}

/// The copy path: read a chunk of the range and write it.
fn poll_copy<S: AsyncWrite + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    range: &FileRange,
) -> Poll<Result<usize, SendFileError>> {
    let chunk = range.len.min(COPY_CHUNK as u64) as usize;
    // `read_at` reads zeros past the end of the file: the length says whether the range is still there.
    if range.file.len()? < range.offset + chunk as u64 {
        return Poll::Ready(Err(truncated(range)));
    }
    let mut buf = vec![0u8; chunk];
    range.file.read_at(&mut buf, range.offset)?;
    match Pin::new(stream).poll_write(cx, &buf) {
        Poll::Ready(Ok(0)) => Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into())),
        Poll::Ready(r) => Poll::Ready(r.map_err(SendFileError::from)),
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
    use super::{truncated, FileRange, SendFileError};
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::task::{Context, Poll};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Most bytes one `sendfile` call moves (Linux's own cap).
    const SENDFILE_MAX: u64 = 0x7fff_f000;

    /// `sendfile` from `fd` to the socket, waiting for the socket's readiness as tokio's own writes do.
    pub fn poll_sendfile(
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        fd: BorrowedFd<'_>,
        range: &FileRange,
    ) -> Poll<Result<usize, SendFileError>> {
        let Ok(mut offset) = libc::off_t::try_from(range.offset) else {
            return Poll::Ready(Err(truncated(range)));
        };
        let count = range.len.min(SENDFILE_MAX) as usize;
        loop {
            match tcp.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) => {}
            }
            let sent = tcp.try_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the call (the socket is borrowed from `tcp`, the file
                // from its owner), and `offset` is a live local the kernel updates.
                let n =
                    unsafe { libc::sendfile(tcp.as_raw_fd(), fd.as_raw_fd(), &mut offset, count) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            return match sent {
                // Nothing left to read at that offset: the file ends before the range does.
                Ok(0) => Poll::Ready(Err(truncated(range))),
                Ok(n) => {
                    super::SENT_FROM_FILES
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    Poll::Ready(Ok(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Poll::Ready(Err(e.into())),
            };
        }
    }

    /// `send(MSG_MORE)` to the socket.
    pub fn poll_send_more(
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match tcp.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let sent = tcp.try_io(Interest::WRITABLE, || {
                // SAFETY: `data` is a live slice for the call and the socket is borrowed from `tcp`.
                let n = unsafe {
                    libc::send(
                        tcp.as_raw_fd(),
                        data.as_ptr().cast(),
                        data.len(),
                        libc::MSG_MORE | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            return match sent {
                Ok(n) => Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Poll::Ready(Err(e)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::conn_io::Sockets;
    use crate::storage::{StdStorage, Storage};
    use bytes::Bytes;
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

    /// Send `range` whole, resuming after each partial send: the number of calls that sent something.
    async fn send_all<S: AsyncWrite + Unpin + 'static>(
        stream: &mut S,
        mut range: FileRange,
    ) -> Result<usize, SendFileError> {
        let mut calls = 0;
        while range.len > 0 {
            let n = std::future::poll_fn(|cx| poll_send_range(stream, cx, &range)).await?;
            range.advance(n as u64);
            calls += 1;
        }
        Ok(calls)
    }

    async fn read_n<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        r.read_exact(&mut got).await.unwrap();
        got
    }

    /// Over real TCP the range goes by `sendfile`, in partial sends that resume where the last one stopped,
    /// and the other end reads exactly the file's bytes.
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

    /// A file shorter than the range (truncated under the seeder) gives a typed error once its bytes are sent,
    /// on the `sendfile` path and on the copy path alike.
    #[tokio::test]
    async fn a_file_truncated_under_the_range_is_a_typed_error() {
        let data = pattern(64 * 1024);
        let range = || FileRange {
            file: file_with("short", &data),
            offset: 32 * 1024,
            len: 64 * 1024,
        };
        let (mut tx, mut rx) = tcp_pair().await;
        let reader = tokio::spawn(async move { read_n(&mut rx, 32 * 1024).await });
        let err = send_all(&mut tx, range()).await.unwrap_err();
        assert!(
            matches!(
                err,
                SendFileError::Truncated {
                    offset: 65536,
                    len: 32768
                }
            ),
            "{err:?}"
        );
        assert_eq!(reader.await.unwrap(), &data[32 * 1024..]);

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
        tcp.send(1, Bytes::from_static(b"header"), 1 << 20).unwrap();
        tcp.send_ranges(1, vec![range.clone()], 1 << 20).unwrap();
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
        copy.send(2, Bytes::from_static(b"header"), 1 << 20)
            .unwrap();
        copy.send_ranges(2, vec![range], 1 << 20).unwrap();
        assert_eq!(read_n(&mut b, 50_006).await, expected);

        let short = FileRange {
            file,
            offset: 90_000,
            len: 20_000,
        };
        copy.send_ranges(2, vec![short], 1 << 20).unwrap();
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
