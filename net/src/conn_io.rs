//! The sockets of a peer's connections, read and written by the node task itself.
//!
//! A connection costs no task of its own: each socket gets one waker, made once, which puts the connection's
//! id on a ready queue and wakes the node task. The node task polls [`Sockets::poll_inputs`] in its loop: it
//! flushes what each ready connection has queued and reads what arrived, every ready connection in one call
//! (bounded), and hands the batch to the node at once. A message thus crosses one wake-up (the receiving
//! node's), not three (a writer task, a reader task, then the node's inbox), and no channel: with a thousand
//! simulated peers exchanging tens of millions of small messages (HAVEs above all), the task hops and
//! channel operations were a third of the simulator's CPU. A batch costs the node one settle, and what it
//! answers to a batch leaves in one write per connection. Real peers save the same hops; a write is tried at
//! once, from the node task, and only what the socket does not take waits in the connection's queue for its
//! waker.
//!
//! Ordering is deterministic: connections are served in the order their wakers fired, and each connection
//! yields at most one input per call (round-robin, as tasks were).

use crate::clock::Clock;
use crate::rate::RateLimit;
use crate::send_file::{advance_queue, poll_write_queue, FileRange, Outgoing, SendFileError};
use crate::transport::{ByteStream, READ_CHUNK};
use bytes::Bytes;
use enjambre_core::node::{CloseReason, ConnId, Input};
use futures_util::task::AtomicWaker;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a closed connection may take to flush what was queued for it.
const CLOSE_FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Connections whose sockets may have something to do, in the order their wakers fired.
#[derive(Default)]
struct ReadyQueue {
    ids: Mutex<VecDeque<ConnId>>,
    task: AtomicWaker,
}

/// The waker of one connection's socket (both directions).
struct ConnWaker {
    id: ConnId,
    /// Already on the ready queue (a second wake adds nothing).
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            if let Ok(mut ids) = self.ready.ids.lock() {
                ids.push_back(self.id);
            }
            self.ready.task.wake();
        }
    }
}

/// One connection's socket and what waits to be written to it.
struct Socket<S> {
    stream: S,
    flag: Arc<ConnWaker>,
    waker: Waker,
    /// Handed to the socket by the node, not yet taken by it.
    unsent: VecDeque<Outgoing>,
    unsent_bytes: u64,
    /// A write failed: what the node sends from now on is dropped (the read side reports the end).
    write_failed: bool,
    /// A file range could not be sent: the stream is cut inside a message, the connection must be dropped.
    file_failed: Option<SendFileError>,
    /// Bytes read that wait for the download limit, and the wait.
    held: Option<(Pin<Box<tokio::time::Sleep>>, Bytes)>,
}

impl<S: ByteStream> Socket<S> {
    /// Write what is queued until the socket would block (on a real socket, many items a system call:
    /// [`crate::send_file`]).
    fn flush(&mut self) {
        let mut cx = Context::from_waker(&self.waker);
        while !self.unsent.is_empty() {
            match poll_write_queue(&mut self.stream, &mut cx, &self.unsent) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.unsent_bytes -= n as u64;
                    advance_queue(&mut self.unsent, n as u64);
                }
                Poll::Ready(result) => {
                    // A socket that takes nothing or fails is over (its read side reports the end); a file
                    // that fails cuts the stream inside a message: the next poll of this connection drops it
                    // (see `poll_inputs`).
                    if let Err(e) = result {
                        if e.is_file() {
                            self.file_failed = Some(e);
                            self.waker.wake_by_ref();
                        }
                    }
                    self.write_failed = true;
                    self.unsent.clear();
                    self.unsent_bytes = 0;
                }
                Poll::Pending => return,
            }
        }
    }

    /// Read what arrived: `Some(bytes)`, `None` at the end of the stream (or an error), pending otherwise.
    /// With a download limit, bytes read are handed over once the limit allows them (as a reader task
    /// awaiting the limit did).
    fn poll_read(&mut self, down: Option<&RateLimit>, clock: &Clock) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(&self.waker);
        if let Some((sleep, _)) = self.held.as_mut() {
            if sleep.as_mut().poll(&mut cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(self.held.take().map(|(_, data)| data));
        }
        let data = match self.stream.poll_read_bytes(&mut cx, READ_CHUNK) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(data)) if !data.is_empty() => data,
            Poll::Ready(_) => return Poll::Ready(None),
        };
        if let Some(limit) = down {
            let now = clock.now();
            let wait = limit.reserve(data.len() as u64);
            if !wait.is_zero() {
                let mut sleep = Box::pin(tokio::time::sleep_until(clock.to_tokio(now + wait)));
                if sleep.as_mut().poll(&mut cx).is_pending() {
                    self.held = Some((sleep, data));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Some(data))
    }
}

impl<S: ByteStream> Socket<S> {
    /// The connection is over on our side: write what is queued (within a grace period) and shut down.
    fn close(mut self) {
        self.flush();
        let mut stream = self.stream;
        if self.unsent.is_empty() || self.write_failed {
            let mut cx = Context::from_waker(Waker::noop());
            let _ = Pin::new(&mut stream).poll_shutdown(&mut cx);
            return;
        }
        let unsent = std::mem::take(&mut self.unsent);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_FLUSH_GRACE, async move {
                let mut unsent = unsent;
                while !unsent.is_empty() {
                    let n = std::future::poll_fn(|cx| poll_write_queue(&mut stream, cx, &unsent))
                        .await
                        .map_err(io::Error::other)?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    advance_queue(&mut unsent, n as u64);
                }
                stream.shutdown().await
            })
            .await;
        });
    }
}

/// The sockets of a peer's open connections.
pub(crate) struct Sockets<S> {
    conns: BTreeMap<ConnId, Socket<S>>,
    ready: Arc<ReadyQueue>,
    /// Connections that were ready while reading was paused (their writes were flushed).
    paused: Vec<ConnId>,
    /// Connections given file ranges since the last [`Sockets::flush_deferred`], not yet written.
    deferred: Vec<ConnId>,
    down: Option<RateLimit>,
    clock: Clock,
}

impl<S: ByteStream> Sockets<S> {
    /// No sockets yet; reads wait for `down`, if given.
    pub fn new(down: Option<RateLimit>, clock: Clock) -> Sockets<S> {
        Sockets {
            conns: BTreeMap::new(),
            ready: Arc::default(),
            paused: Vec::new(),
            deferred: Vec::new(),
            down,
            clock,
        }
    }

    /// Start serving connection `id`'s socket (its first read is tried at the next poll).
    pub fn insert(&mut self, id: ConnId, stream: S) {
        let flag = Arc::new(ConnWaker {
            id,
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        let waker = Waker::from(flag.clone());
        waker.wake_by_ref();
        self.conns.insert(
            id,
            Socket {
                stream,
                flag,
                waker,
                unsent: VecDeque::new(),
                unsent_bytes: 0,
                write_failed: false,
                file_failed: None,
                held: None,
            },
        );
    }

    /// Write `data` to connection `id` (what the socket does not take now waits for it). `Err` with the
    /// bytes it would leave unsent when that exceeds `max_unsent`: nothing is queued then.
    pub fn send(&mut self, id: ConnId, data: Bytes, max_unsent: u64) -> Result<(), u64> {
        self.queue(id, vec![Outgoing::Bytes(data)], max_unsent, false)
    }

    /// Send `head`, then `ranges` of files, to connection `id` after what is queued (in one write where the
    /// socket allows it), the ranges straight from the files where the socket and the files allow it
    /// ([`crate::send_file`]); otherwise as [`Sockets::send`]. A range the files no longer hold drops the
    /// connection ([`Input::Dropped`] at the next poll).
    pub fn send_ranges(
        &mut self,
        id: ConnId,
        head: Bytes,
        ranges: Vec<FileRange>,
        max_unsent: u64,
    ) -> Result<(), u64> {
        let items = std::iter::once(Outgoing::Bytes(head))
            .filter(|h| !h.is_empty())
            .chain(ranges.into_iter().map(Outgoing::File))
            .collect();
        self.queue(id, items, max_unsent, true)
    }

    /// Write what [`Sockets::send_ranges`] queued since the last call: the blocks a turn of the node answers
    /// leave together (one `writev` on a real socket, [`crate::send_file`]) instead of one call each.
    pub fn flush_deferred(&mut self) {
        for id in std::mem::take(&mut self.deferred) {
            if let Some(s) = self.conns.get_mut(&id) {
                s.flush();
            }
        }
    }

    /// Queue `items` on connection `id` and write what the socket takes now, or (`defer`) at the next
    /// [`Sockets::flush_deferred`].
    fn queue(
        &mut self,
        id: ConnId,
        items: Vec<Outgoing>,
        max_unsent: u64,
        defer: bool,
    ) -> Result<(), u64> {
        let Some(s) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if s.write_failed {
            return Ok(());
        }
        let queued = s.unsent_bytes + items.iter().map(Outgoing::len).sum::<u64>();
        if queued > max_unsent {
            return Err(queued);
        }
        let was_empty = s.unsent.is_empty();
        s.unsent_bytes = queued;
        s.unsent.extend(items);
        if was_empty && !defer {
            s.flush();
        } else if was_empty {
            self.deferred.push(id);
        }
        Ok(())
    }

    /// Stop reading connection `id`; what is queued for it is still written (for a few seconds at most),
    /// then the socket is shut down.
    pub fn close(&mut self, id: ConnId) {
        if let Some(s) = self.conns.remove(&id) {
            s.close();
        }
    }

    /// Drop connection `id` at once (nothing queued is flushed).
    pub fn abort(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }

    /// Drop every connection at once.
    pub fn abort_all(&mut self) {
        self.conns.clear();
    }

    /// Inputs from the sockets that are ready, at most `max`, appended to `inputs`: bytes received (each read
    /// takes all the socket holds, up to 64 KiB: every complete message in it), or the end of a stream (the
    /// socket is then closed). Each connection ready when the call starts is flushed and read once, in the
    /// order its waker fired; a connection that read something goes to the back of the queue (more may have
    /// arrived), to be read at the next call. Pending when nothing was read. While `reading` is false, ready
    /// sockets are only flushed (backpressure: nothing is read).
    ///
    /// The node task hands the whole batch to [`enjambre_core::node::Node::handle_inputs`]: one settle per
    /// batch, and what the node answers to several messages of one peer leaves in one write.
    pub fn poll_inputs(
        &mut self,
        cx: &mut Context<'_>,
        reading: bool,
        max: usize,
        inputs: &mut Vec<Input>,
    ) -> Poll<()> {
        self.ready.task.register(cx.waker());
        let first = inputs.len();
        let Ok(mut ids) = self.ready.ids.lock() else {
            return Poll::Pending;
        };
        if reading {
            for id in self.paused.drain(..).rev() {
                ids.push_front(id);
            }
        }
        // This turn serves the connections queued now; those queued while it runs wait for the next one.
        let mut turn = ids.len();
        while turn > 0 && inputs.len() - first < max {
            turn -= 1;
            let Some(id) = ids.pop_front() else {
                break;
            };
            let Some(s) = self.conns.get_mut(&id) else {
                continue;
            };
            s.flag.queued.store(false, Ordering::Release);
            // The socket's wakers lock the queue: let them run while this socket is served.
            drop(ids);
            s.flush();
            if let Some(error) = s.file_failed.take() {
                tracing::warn!("connection {id}: {error}");
                self.conns.remove(&id);
                inputs.push(Input::Dropped {
                    conn: id,
                    reason: CloseReason::ServeReadFailed,
                });
            } else if !reading {
                self.paused.push(id);
            } else {
                match s.poll_read(self.down.as_ref(), &self.clock) {
                    Poll::Pending => {}
                    Poll::Ready(Some(data)) => {
                        // More may have arrived: read again at this connection's next turn.
                        s.waker.wake_by_ref();
                        inputs.push(Input::Received { conn: id, data });
                    }
                    Poll::Ready(None) => {
                        if let Some(s) = self.conns.remove(&id) {
                            s.close();
                        }
                        inputs.push(Input::Closed { conn: id });
                    }
                }
            }
            ids = match self.ready.ids.lock() {
                Ok(ids) => ids,
                Err(_) => break,
            };
        }
        if inputs.len() > first {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Bytes written through one end arrive as inputs of the other, in order; the end of the stream arrives
    /// as `Closed`; a queue over the limit is refused.
    #[tokio::test]
    async fn sockets_carry_bytes_both_ways_and_report_the_end() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut sockets = Sockets::new(None, Clock::new());
        sockets.insert(7, a);
        // More than the duplex buffer: the rest waits in the queue and is flushed as the other end reads.
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            sockets.send(7, Bytes::from(payload.clone()), 1 << 20),
            Ok(())
        );
        assert_eq!(
            sockets.send(7, Bytes::from(vec![0; 10]), 500),
            Err(10 + 936)
        );
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 1000];
            b.read_exact(&mut got).await.unwrap();
            b.write_all(b"hello").await.unwrap();
            b.shutdown().await.unwrap();
            (got, b)
        });
        let first = next_inputs(&mut sockets, 8).await;
        let [Input::Received { conn: 7, data }] = &first[..] else {
            panic!("expected bytes, got {first:?}");
        };
        assert_eq!(&data[..], b"hello");
        let end = next_inputs(&mut sockets, 8).await;
        assert!(matches!(end[..], [Input::Closed { conn: 7 }]), "{end:?}");
        let (got, _b) = reader.await.unwrap();
        assert_eq!(got, payload);
    }

    /// One call of [`Sockets::poll_inputs`], awaited until it has something.
    async fn next_inputs<S: ByteStream>(sockets: &mut Sockets<S>, max: usize) -> Vec<Input> {
        let mut inputs = Vec::new();
        std::future::poll_fn(|cx| sockets.poll_inputs(cx, true, max, &mut inputs)).await;
        inputs
    }

    /// The bytes of each `Received` input, by connection.
    fn received(inputs: &[Input]) -> Vec<(ConnId, Vec<u8>)> {
        inputs
            .iter()
            .map(|i| match i {
                Input::Received { conn, data } => (*conn, data.to_vec()),
                other => panic!("expected bytes, got {other:?}"),
            })
            .collect()
    }

    /// Every connection with bytes waiting is read in one call, in the order it became ready, at most
    /// `max` inputs per call; a connection read in a call waits behind the others for its next read.
    #[tokio::test]
    async fn one_call_reads_every_ready_connection_up_to_the_bound() {
        let mut sockets = Sockets::new(None, Clock::new());
        let mut remotes = Vec::new();
        for id in 1..=4 {
            let (a, b) = tokio::io::duplex(1024);
            sockets.insert(id, a);
            remotes.push(b);
        }
        for (i, r) in remotes.iter_mut().enumerate() {
            r.write_all(&[b'a' + i as u8; 3]).await.unwrap();
        }
        let all = next_inputs(&mut sockets, 8).await;
        assert_eq!(
            received(&all),
            vec![
                (1, b"aaa".to_vec()),
                (2, b"bbb".to_vec()),
                (3, b"ccc".to_vec()),
                (4, b"ddd".to_vec())
            ]
        );
        // Two calls with a bound of two: connection 1, which has bytes again, does not pass 3 and 4 (each
        // already waits behind the others, re-queued by its read), and every one is read once.
        for (i, r) in remotes.iter_mut().enumerate() {
            r.write_all(&[b'1' + i as u8; 2]).await.unwrap();
        }
        let first = next_inputs(&mut sockets, 2).await;
        remotes[0].write_all(b"x").await.unwrap();
        let second = next_inputs(&mut sockets, 2).await;
        let third = next_inputs(&mut sockets, 2).await;
        assert_eq!(
            received(&first),
            vec![(1, b"11".to_vec()), (2, b"22".to_vec())]
        );
        assert_eq!(
            received(&second),
            vec![(3, b"33".to_vec()), (4, b"44".to_vec())]
        );
        assert_eq!(received(&third), vec![(1, b"x".to_vec())]);
    }
}
