//! The timer hyper uses for the console's request-head deadline.
//!
//! hyper gives a client [`HttpSettings::idle_timeout`] to send each
//! request's head, counted from when the connection is ready for it. It
//! asks its timer for a new sleep before every request a keep-alive
//! connection reads and drops it once the head is in. With Tokio's timer
//! each of those files an entry in the runtime's timer wheel and takes it
//! out again: a third of a microsecond per request on `/hello`, as much as
//! all of axum's routing (BENCHMARKS.md).
//!
//! A [`LazyTimer`] serves one connection and keeps the wheel entry (the
//! alarm) of its last sleep for the next one. A later deadline is only
//! written down: the alarm stays where it is, and when it rings before the
//! deadline written down it is moved once for the rest. So a connection
//! files its alarm about once per timeout period, however many requests it
//! carries. A deadline earlier than the alarm moves the alarm at once.
//!
//! [`HttpSettings::idle_timeout`]: crate::config::HttpSettings::idle_timeout

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// An entry in Tokio's timer wheel.
type Alarm = Pin<Box<tokio::time::Sleep>>;

/// A hyper [`Timer`] for one connection, on Tokio's clock, whose sleeps
/// reuse one alarm.
#[derive(Debug, Clone, Default)]
pub struct LazyTimer {
    /// The alarm of the last sleep, once that sleep is gone.
    spare: Arc<Mutex<Option<Alarm>>>,
}

impl Timer for LazyTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let spare = self.spare.lock().ok().and_then(|mut spare| spare.take());
        let mut sleep = LazySleep {
            deadline,
            alarm: Some(spare.unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)))),
            spare: self.spare.clone(),
        };
        sleep.set_deadline(deadline);
        Box::pin(sleep)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<LazySleep>() {
            Some(lazy) => lazy
                .get_mut()
                .set_deadline(tokio::time::Instant::from_std(new_deadline)),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A sleep until `deadline`, woken by an alarm that may ring earlier than
/// the deadline but never later.
struct LazySleep {
    deadline: tokio::time::Instant,
    /// Taken out only when the sleep is dropped.
    alarm: Option<Alarm>,
    /// Where the alarm goes when this sleep is dropped.
    spare: Arc<Mutex<Option<Alarm>>>,
}

impl LazySleep {
    fn set_deadline(&mut self, deadline: tokio::time::Instant) {
        // An alarm after the new deadline would wake too late: move it now.
        // One before it is left to ring and be moved then.
        if let Some(alarm) = &mut self.alarm
            && deadline < alarm.deadline()
        {
            alarm.as_mut().reset(deadline);
        }
        self.deadline = deadline;
    }
}

impl Future for LazySleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(alarm) = &mut this.alarm else {
            return Poll::Ready(());
        };
        loop {
            ready!(alarm.as_mut().poll(cx));
            if alarm.deadline() >= this.deadline {
                return Poll::Ready(());
            }
            alarm.as_mut().reset(this.deadline);
        }
    }
}

impl Sleep for LazySleep {}

impl Drop for LazySleep {
    fn drop(&mut self) {
        // The alarm keeps its place in the wheel for the next sleep. If it
        // rings before then, it wakes the connection once, for nothing.
        if let Ok(mut spare) = self.spare.lock() {
            *spare = self.alarm.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `sleep` has come due, polled once without waiting.
    fn is_due(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        sleep.as_mut().poll(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_postponed_sleep_comes_due_at_its_new_deadline_not_before() {
        let timer = LazyTimer::default();
        let start = Instant::now();
        let mut sleep = timer.sleep(Duration::from_secs(30));
        assert!(!is_due(&mut sleep));
        timer.reset(&mut sleep, start + Duration::from_secs(50));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!is_due(&mut sleep), "due at the first deadline");
        tokio::time::advance(Duration::from_secs(18)).await;
        assert!(!is_due(&mut sleep), "due before the second deadline");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(is_due(&mut sleep));
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_sleep_reuses_the_alarm_and_still_waits_for_its_own_deadline() {
        let timer = LazyTimer::default();
        let first = timer.sleep(Duration::from_secs(5));
        drop(first);
        assert!(timer.spare.lock().unwrap().is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut second = timer.sleep(Duration::from_secs(30));
        assert!(timer.spare.lock().unwrap().is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!is_due(&mut second), "due when the reused alarm rang");
        tokio::time::advance(Duration::from_secs(26)).await;
        assert!(is_due(&mut second));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_brought_forward_comes_due_at_the_earlier_deadline() {
        let timer = LazyTimer::default();
        let start = Instant::now();
        let mut sleep = timer.sleep(Duration::from_secs(30));
        timer.reset(&mut sleep, start + Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!is_due(&mut sleep));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(is_due(&mut sleep));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_of_another_timer_is_replaced_on_reset() {
        let mut sleep: Pin<Box<dyn Sleep>> = Box::pin(Foreign);
        LazyTimer::default().reset(&mut sleep, Instant::now() + Duration::from_secs(5));
        assert!(!is_due(&mut sleep));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(is_due(&mut sleep));
    }

    /// A sleep from some other timer: never due.
    struct Foreign;

    impl Future for Foreign {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    impl Sleep for Foreign {}
}
