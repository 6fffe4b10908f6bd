//! One bounded, lossy queue to a worker thread, for the built-in sinks' writers
//! (`report::writer`) and the metrics exports' recorders (`metrics::queue`).
//!
//! The engine's thread queues with `try_send` and never waits: what does not fit goes to
//! the caller's hook ([`Queue::push_or`]), dropped and counted or kept elsewhere (folded).
//! [`Progress`] counts what was queued and done, so that a flush needs no room in a full
//! queue and works after the senders are gone (a shutdown); queues flushed together share
//! one.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a worker thread does with its queue.
pub(crate) trait Work<T>: Send + 'static {
    /// Handles one item, in queue order.
    fn handle(&mut self, item: T);

    /// How long to wait for the next item before [`idle`](Self::idle) is called: `None`
    /// for as long as it takes, zero for not at all.
    fn patience(&mut self) -> Option<Duration> {
        None
    }

    /// Nothing came within [`patience`](Self::patience).
    fn idle(&mut self) {}
}

/// What the queues of one flush and their workers count.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Items accepted into a queue.
    queued: Padded,
    /// Items a worker has finished with.
    done: Padded,
    /// Items neither queued nor kept by the "full" hook.
    dropped: AtomicU64,
    /// Workers still running: at 0, nothing more will be done.
    running: AtomicUsize,
    /// `!n` for the least count `n` of done items a thread in
    /// [`wait_until`](Self::wait_until) waits for (0: none waits; 1: one waits for a
    /// [`wake`](Self::wake)): a worker notifies (a system call) only when it is reached, not
    /// for every item of a long queue.
    wake_at: AtomicU64,
    lock: Mutex<()>,
    progressed: Condvar,
}

/// A counter on a cache line of its own: the engine's threads count `queued` and the worker
/// `done` without taking the line from each other at every item.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Progress {
    /// Items dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every item queued before the call is done, until `deadline` (`None`:
    /// however long it takes); else the items still pending.
    pub(crate) fn flush(&self, deadline: Option<Instant>) -> Result<(), u64> {
        let target = self.queued.0.load(Ordering::Acquire);
        let mut done = 0;
        let finished = self.wait_until(deadline, Some(target), || {
            done = self.done.0.load(Ordering::Acquire);
            done >= target
        });
        if finished {
            Ok(())
        } else {
            Err(target.saturating_sub(done))
        }
    }

    /// Waits until `finished`, checked again when `done` items are done (`None`: at each
    /// [`wake`](Self::wake)), until `deadline` or every worker is gone; whether it finished.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        done: Option<u64>,
        mut finished: impl FnMut() -> bool,
    ) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Again after each notification, which clears it.
            self.wake_at
                .fetch_max(done.map_or(1, |n| !n), Ordering::Relaxed);
            // Either the worker (or `wake`) sees this, or `finished` sees what it did.
            fence(Ordering::SeqCst);
            if finished() {
                return true;
            }
            let remaining = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if self.running.load(Ordering::Acquire) == 0 || remaining.is_zero() {
                return false;
            }
            guard = self
                .progressed
                .wait_timeout(guard, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Has the threads in [`wait_until`](Self::wait_until) check again, if any: something
    /// their condition reads changed (a metrics recorder's sweep).
    #[cfg_attr(not(any(feature = "otlp", feature = "prometheus")), allow(dead_code))]
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.wake_at.load(Ordering::Relaxed) != 0 {
            self.notify();
        }
    }

    fn notify(&self) {
        // Cleared under the lock (a waiter registers under it); notified after, so that a
        // waiter does not wake into a lock still held.
        {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake_at.store(0, Ordering::Relaxed);
        }
        self.progressed.notify_all();
    }
}

/// Counts a worker as running while it lives, panics included.
struct Running(Arc<Progress>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
        self.0.notify();
    }
}

/// The engine's side of a bounded queue to a worker thread: it ends when every clone is
/// dropped.
#[derive(Clone, Debug)]
pub(crate) struct Queue<T> {
    tx: SyncSender<T>,
    progress: Arc<Progress>,
}

/// The most items a queue holds: 1,048,576 (a queue's slots are allocated when it starts).
pub(crate) const MAX_CAPACITY: usize = 1 << 20;

impl<T: Send + 'static> Queue<T> {
    /// Starts the thread `name` handling a queue of `capacity` items (at least 1) with
    /// `work`, counted in `progress`; `quiet`: under a no-op default subscriber, so that
    /// it never traces into the engine's (no feedback from a writer that logs). The queue
    /// comes back even if the thread could not start (then it takes nothing, and every
    /// item is dropped), with the reason.
    pub(crate) fn spawn(
        name: &str,
        capacity: usize,
        progress: &Arc<Progress>,
        quiet: bool,
        work: impl Work<T>,
    ) -> (Self, io::Result<()>) {
        // The channel allocates its slots up front: a capacity beyond any real need (a
        // mistyped setting, `usize::MAX`) would abort on allocation, so it is capped.
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.clamp(1, MAX_CAPACITY));
        progress.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(progress.clone());
        let started = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // `Dispatch::none()` is not registered with tracing-core (a `Dispatch::new`
                // would be, and its missing level hint would raise the process's maximum
                // level to TRACE).
                let _quiet =
                    quiet.then(|| tracing::dispatcher::set_default(&tracing::Dispatch::none()));
                run(&rx, work, &running.0);
            });
        let queue = Self {
            tx,
            progress: progress.clone(),
        };
        (queue, started.map(drop))
    }
}

impl<T> Queue<T> {
    /// Queues `item` without waiting; counts nothing when it is refused (full, or the
    /// worker gone).
    #[inline]
    pub(crate) fn try_push(&self, item: T) -> Result<(), TrySendError<T>> {
        self.tx.try_send(item)?;
        self.progress.queued.0.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Queues `item` without waiting; when the queue is full, `full` gets it back and says
    /// whether it kept it. An item neither queued nor kept (the worker is gone, or `full`
    /// said no) is counted as dropped. Returns whether it was queued or kept.
    #[inline]
    pub(crate) fn push_or(&self, item: T, full: impl FnOnce(T) -> bool) -> bool {
        let kept = match self.try_push(item) {
            Ok(()) => return true,
            Err(TrySendError::Full(item)) => full(item),
            Err(TrySendError::Disconnected(_)) => false,
        };
        if !kept {
            self.progress.dropped.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }

    /// [`push_or`](Self::push_or), dropping what does not fit.
    #[inline]
    pub(crate) fn push(&self, item: T) -> bool {
        self.push_or(item, |_| false)
    }
}

/// The worker: each item in turn, [`Work::idle`] when none came in time, until every
/// sender is gone.
fn run<T>(rx: &Receiver<T>, mut work: impl Work<T>, progress: &Progress) {
    loop {
        let next = match work.patience() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => rx.recv_timeout(wait),
        };
        match next {
            Ok(item) => {
                work.handle(item);
                // Sequentially consistent with the waiter's fence (see `wake_at`).
                let done = progress.done.0.fetch_add(1, Ordering::SeqCst) + 1;
                let wanted = !progress.wake_at.load(Ordering::SeqCst);
                if wanted <= done {
                    progress.notify();
                }
            }
            Err(RecvTimeoutError::Timeout) => work.idle(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `.0` ms per item, and panics on item 0.
    struct Slow(u64);

    impl Work<u64> for Slow {
        fn handle(&mut self, item: u64) {
            assert_ne!(item, 0, "a worker that panics");
            std::thread::sleep(Duration::from_millis(self.0));
        }
    }

    #[test]
    fn what_does_not_fit_is_dropped_and_a_flush_after_close_waits_for_the_rest() {
        let progress: Arc<Progress> = Arc::default();
        let (queue, started) = Queue::spawn("test-queue", 2, &progress, true, Slow(5));
        started.expect("the worker starts");
        let refused = (1..=10).filter(|&i| !queue.push(i)).count() as u64;
        assert!(refused > 0, "10 items do not fit in 2 slots at once");
        assert_eq!(progress.dropped(), refused);
        drop(queue);
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(progress.flush(Some(deadline)), Ok(()));
    }

    #[test]
    fn a_worker_that_panics_ends_a_flush_at_once() {
        let progress: Arc<Progress> = Arc::default();
        let (queue, _) = Queue::spawn("test-queue", 2, &progress, true, Slow(0));
        assert!(queue.push(0));
        let started = Instant::now();
        let flushed = progress.flush(Some(started + Duration::from_secs(60)));
        assert_eq!(flushed, Err(1), "the item it panicked on is not done");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_capacity_beyond_any_need_is_capped_not_allocated() {
        let progress: Arc<Progress> = Arc::default();
        let (queue, started) = Queue::spawn("test-queue", usize::MAX, &progress, true, Slow(0));
        started.expect("the worker starts");
        assert!(queue.push(1));
        drop(queue);
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(progress.flush(Some(deadline)), Ok(()));
    }
}
