//! Which of a task's input sources were woken since they last said "pending", so that a turn of the task's
//! loop polls only those.
//!
//! The node task waits on several channels at once (commands, disk results, the inbox) beside its sockets.
//! A biased `select!` polls every channel at every turn, and a turn is one batch of inputs: in a thousand-peer
//! simulation an empty tokio channel's poll (two looks at its list and a waker registration) ran millions of
//! times, 5% of the CPU. Here each source is polled with a waker of its own, which sets the source's flag and
//! wakes the task; a source whose flag is clear returned pending at its last poll and nothing arrived since,
//! so it is not polled again: the same source is chosen as a full poll would choose (nothing is reordered).

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// What the sources' wakers share: the flags and the task to wake.
#[derive(Default)]
struct Shared {
    flags: AtomicU32,
    task: AtomicWaker,
}

/// The waker one source is polled with.
struct SourceWaker {
    bit: u32,
    shared: Arc<Shared>,
}

impl Wake for SourceWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.flags.fetch_or(self.bit, Ordering::AcqRel);
        self.shared.task.wake();
    }
}

/// Up to 32 sources of one task, each with a flag that says it may be ready.
pub(crate) struct Woken {
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
}

impl Woken {
    /// `count` sources (at most 32), all flagged: each is polled at least once.
    pub fn new(count: usize) -> Woken {
        let count = count.min(32);
        let all = if count == 32 {
            u32::MAX
        } else {
            (1u32 << count) - 1
        };
        let shared = Arc::new(Shared {
            flags: AtomicU32::new(all),
            task: AtomicWaker::new(),
        });
        let wakers = (0..count)
            .map(|i| {
                Waker::from(Arc::new(SourceWaker {
                    bit: 1 << i,
                    shared: shared.clone(),
                }))
            })
            .collect();
        Woken { shared, wakers }
    }

    /// Poll source `source` with `poll` if it was woken since it last returned pending (or was never
    /// polled); pending without a poll otherwise. A source that returns ready stays flagged (it may hold
    /// more). `cx` is the task's context: the task is woken when the source is.
    pub fn poll<T>(
        &self,
        source: usize,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let Some(waker) = self.wakers.get(source) else {
            return poll(cx);
        };
        let bit = 1u32 << source;
        if self.shared.flags.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            return Poll::Pending;
        }
        self.shared.task.register(cx.waker());
        let result = poll(&mut Context::from_waker(waker));
        if result.is_ready() {
            self.shared.flags.fetch_or(bit, Ordering::AcqRel);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A task waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A source is polled first, not again after a pending poll until its waker fires (which wakes the task),
    /// and again after a ready poll; each source's flag is its own.
    #[test]
    fn a_source_is_polled_only_when_it_may_be_ready() {
        let woken = Woken::new(2);
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);
        let polls = AtomicUsize::new(0);
        let kept: std::sync::Mutex<Option<Waker>> = std::sync::Mutex::new(None);
        let pending = |cx: &mut Context<'_>| {
            polls.fetch_add(1, Ordering::SeqCst);
            *kept.lock().unwrap() = Some(cx.waker().clone());
            Poll::<()>::Pending
        };

        assert!(woken.poll(0, &mut cx, pending).is_pending());
        assert!(woken.poll(0, &mut cx, pending).is_pending());
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "not polled again before a wake"
        );

        let waker = kept.lock().unwrap().take();
        waker.expect("the source kept its waker").wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(woken.poll(0, &mut cx, pending).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2, "polled after its wake");

        // A ready source stays flagged; the other source was never polled, so it is.
        let ready = |_: &mut Context<'_>| Poll::Ready(7);
        assert_eq!(woken.poll(1, &mut cx, ready), Poll::Ready(7));
        assert_eq!(woken.poll(1, &mut cx, ready), Poll::Ready(7));
        assert!(woken.poll(0, &mut cx, pending).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2, "source 0 still not woken");
    }
}
