//! Graceful shutdown shared by every service.
//!
//! A [`Shutdown`] bundles the three things a stop needs: a [`CancellationToken`]
//! that says "stop accepting and wind down", a [`TaskTracker`] that knows when every
//! session task has ended, and the grace period after which the process stops
//! waiting for them. Services get a clone; `sockit serve` (or a test) owns the
//! original and cancels it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Stop signal, task tracker and grace period, cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
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
            tracker: TaskTracker::new(),
            grace,
        }
    }

    /// The token that is cancelled when the services must stop.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The tracker every session task is spawned on.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// True once a stop has been requested.
    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when a stop has been requested.
    pub async fn stopping(&self) {
        self.token.cancelled().await
    }

    /// Requests a stop: listeners stop accepting, sessions start winding down.
    pub fn stop(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tracked_tasks() {
        let shutdown = Shutdown::new(Duration::from_secs(5));
        let token = shutdown.token().clone();
        shutdown.tracker().spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        assert_eq!(shutdown.drain().await, Drained::Clean);
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
