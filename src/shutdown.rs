//! Graceful shutdown shared by every service.
//!
//! A [`Shutdown`] bundles the three things a stop needs: a [`CancellationToken`]
//! that says "stop accepting and wind down", a [`TaskTracker`] that knows when every
//! session task has ended, and the grace period after which the process stops
//! waiting for them. Services get a clone; `sockit serve` (or a test) owns the
//! original and cancels it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// Stop signal, task tracker and grace period, cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
    /// Set by [`Shutdown::stop`] just before the token is cancelled: a flag
    /// read without a lock, for [`Stopping`] to check at every poll.
    stop_requested: Arc<AtomicBool>,
    tracker: TaskTracker,
    grace: Duration,
}

/// How a [`Shutdown::drain`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every tracked task finished within the grace period.
    Clean,
    /// The grace period ran out with this many tasks still running.
    TimedOut { still_running: usize },
}

impl Shutdown {
    /// A fresh, not yet cancelled shutdown with the given grace period.
    pub fn new(grace: Duration) -> Self {
        Shutdown {
            token: CancellationToken::new(),
            stop_requested: Arc::default(),
            tracker: TaskTracker::new(),
            grace,
        }
    }

    /// The tracker every session task is spawned on.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// True once a stop has been requested.
    pub fn is_stopping(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire)
    }

    /// A future that completes when a stop has been requested. Made once and
    /// polled again at every turn of a session's loop (pinned, in a
    /// `select!`), it costs a flag read per poll: it joins the token's
    /// waiters, under their lock, only at its first poll and if polled from
    /// another task.
    pub fn stopping(&self) -> Stopping<'_> {
        Stopping {
            shutdown: self,
            cancelled: None,
            waker: None,
        }
    }

    /// Requests a stop: listeners stop accepting, sessions start winding down.
    pub fn stop(&self) {
        // The flag first: a task the token wakes must find it set.
        self.stop_requested.store(true, Ordering::Release);
        self.token.cancel()
    }

    /// Requests a stop, then waits up to the grace period for tracked tasks.
    pub async fn drain(&self) -> Drained {
        self.stop();
        self.tracker.close();
        match tokio::time::timeout(self.grace, self.tracker.wait()).await {
            Ok(()) => Drained::Clean,
            Err(_) => Drained::TimedOut {
                still_running: self.tracker.len(),
            },
        }
    }
}

/// See [`Shutdown::stopping`].
#[derive(Debug)]
pub struct Stopping<'a> {
    shutdown: &'a Shutdown,
    /// The wait among the token's waiters, once polled.
    cancelled: Option<Pin<Box<WaitForCancellationFuture<'a>>>>,
    /// The waker that wait will wake.
    waker: Option<Waker>,
}

impl Future for Stopping<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown.is_stopping() {
            return Poll::Ready(());
        }
        if self
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            // Already waiting with this waker: only a stop can wake it, and
            // the flag says there is none yet.
            return Poll::Pending;
        }
        let token = &self.shutdown.token;
        let cancelled = self
            .cancelled
            .get_or_insert_with(|| Box::pin(token.cancelled()));
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tracked_tasks() {
        let shutdown = Shutdown::new(Duration::from_secs(5));
        let session = shutdown.clone();
        shutdown.tracker().spawn(async move {
            session.stopping().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        assert_eq!(shutdown.drain().await, Drained::Clean);
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(wakes: &Arc<Self>) {
            wakes.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_wait_polled_again_and_again_is_woken_by_the_stop_and_completes() {
        let shutdown = Shutdown::new(Duration::from_secs(1));
        let wakes = Arc::new(Wakes::default());
        let waker = futures::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut stopping = shutdown.stopping();
        for _ in 0..3 {
            assert!(Pin::new(&mut stopping).poll(&mut cx).is_pending());
        }
        assert_eq!(wakes.count(), 0);
        shutdown.stop();
        assert_eq!(wakes.count(), 1, "the stop wakes the waiting task");
        assert!(Pin::new(&mut stopping).poll(&mut cx).is_ready());
        assert!(shutdown.is_stopping());
    }

    #[test]
    fn a_wait_moved_to_another_task_wakes_that_task() {
        let shutdown = Shutdown::new(Duration::from_secs(1));
        let (first, second) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        let (first_waker, second_waker) = (
            futures::task::waker(first.clone()),
            futures::task::waker(second.clone()),
        );
        let mut stopping = shutdown.stopping();
        let mut cx = Context::from_waker(&first_waker);
        assert!(Pin::new(&mut stopping).poll(&mut cx).is_pending());
        let mut cx = Context::from_waker(&second_waker);
        assert!(Pin::new(&mut stopping).poll(&mut cx).is_pending());
        shutdown.stop();
        assert_eq!((first.count(), second.count()), (0, 1));
        assert!(Pin::new(&mut stopping).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_wait_made_after_the_stop_is_ready_at_once() {
        let shutdown = Shutdown::new(Duration::from_secs(1));
        shutdown.clone().stop();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut shutdown.stopping()).poll(&mut cx).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let shutdown = Shutdown::new(Duration::from_secs(5));
        shutdown.tracker().spawn(std::future::pending::<()>());
        assert_eq!(
            shutdown.drain().await,
            Drained::TimedOut { still_running: 1 }
        );
    }
}
