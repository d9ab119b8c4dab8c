//! Slowing down password guessing, per client address.
//!
//! Every service that checks a secret (FTP and console passwords, exec keys)
//! keeps a [`Throttle`]. After a few free failures, each further failure from
//! the same address is answered only after a growing delay, and past a limit
//! the address is locked out for a while. Only that address waits: the delay
//! is applied by the session that failed, never by a shared lock, so other
//! clients are not slowed down. A success clears the address's record.
//!
//! Every failure is also logged by [`log_failure`], in one line of one form
//! for all services, for log watchers such as fail2ban.
//!
//! The table is bounded: records of addresses that have been quiet for the
//! whole window are dropped, and when it is full the oldest record goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Logs a failed login as one line, `login failed: service=S peer=ADDR
/// user="NAME"`, the form log watchers match on (docs/security.md). The
/// peer comes before the user name, which the client chose: it is quoted
/// and escaped (and cut to 64 characters), so it cannot fake a `peer=` or
/// end the line.
pub fn log_failure(service: &str, peer: impl std::fmt::Display, user: &str) {
    let user: String = user.chars().take(64).collect();
    tracing::warn!("login failed: service={service} peer={peer} user={user:?}");
}

/// How hard to throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures answered without delay.
    pub free_failures: u32,
    /// Delay added per failure beyond the free ones.
    pub delay_step: Duration,
    /// The longest delay before a lockout.
    pub max_delay: Duration,
    /// Failures after which the address is locked out.
    pub lockout_after: u32,
    /// How long a lockout lasts.
    pub lockout: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            free_failures: 3,
            delay_step: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            lockout_after: 10,
            lockout: Duration::from_secs(300),
            window: Duration::from_secs(900),
        }
    }
}

/// What to do with an attempt from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; if it fails, answer after [`Throttle::failure`]'s delay.
    Allowed,
    /// Refuse without checking; the lockout ends after this long.
    LockedOut { remaining: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Per-address failure records under one [`Policy`].
#[derive(Debug)]
pub struct Throttle {
    policy: Policy,
    records: Mutex<HashMap<IpAddr, Record>>,
    capacity: usize,
}

impl Throttle {
    /// A throttle remembering at most `capacity` addresses.
    pub fn new(policy: Policy, capacity: usize) -> Throttle {
        Throttle {
            policy,
            records: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether `addr` may attempt now.
    pub fn check(&self, addr: IpAddr) -> Verdict {
        let now = Instant::now();
        let records = self.records.lock().expect("throttle lock");
        match records.get(&addr).and_then(|r| r.locked_until) {
            Some(until) if until > now => Verdict::LockedOut {
                remaining: until - now,
            },
            _ => Verdict::Allowed,
        }
    }

    /// Records a failure from `addr` and returns how long to wait before
    /// answering it.
    pub fn failure(&self, addr: IpAddr) -> Duration {
        let now = Instant::now();
        let policy = self.policy;
        let mut records = self.records.lock().expect("throttle lock");
        if !records.contains_key(&addr) && records.len() >= self.capacity {
            records.retain(|_, r| now.duration_since(r.last_failure) < policy.window);
            if records.len() >= self.capacity
                && let Some(oldest) = records
                    .iter()
                    .min_by_key(|(_, r)| r.last_failure)
                    .map(|(a, _)| *a)
            {
                records.remove(&oldest);
            }
        }
        let record = records.entry(addr).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if now.duration_since(record.last_failure) >= policy.window
            || record.locked_until.is_some_and(|until| until <= now)
        {
            *record = Record {
                failures: 0,
                last_failure: now,
                locked_until: None,
            };
        }
        record.failures += 1;
        record.last_failure = now;
        if record.failures >= policy.lockout_after {
            record.locked_until = Some(now + policy.lockout);
        }
        let beyond_free = record.failures.saturating_sub(policy.free_failures);
        (policy.delay_step * beyond_free).min(policy.max_delay)
    }

    /// Clears `addr`'s record after a success.
    pub fn success(&self, addr: IpAddr) {
        self.records.lock().expect("throttle lock").remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_free_then_delayed_then_locked_out() {
        let throttle = Throttle::new(Policy::default(), 100);
        let delays: Vec<Duration> = (0..9).map(|_| throttle.failure(addr(1))).collect();
        assert_eq!(&delays[..3], &[Duration::ZERO; 3]);
        assert_eq!(delays[3], Duration::from_millis(500));
        assert_eq!(delays[8], Duration::from_secs(3));
        assert_eq!(throttle.check(addr(1)), Verdict::Allowed);
        throttle.failure(addr(1));
        assert!(matches!(throttle.check(addr(1)), Verdict::LockedOut { .. }));
        // Another address is not affected.
        assert_eq!(throttle.check(addr(2)), Verdict::Allowed);
        assert_eq!(throttle.failure(addr(2)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lockout_ends_and_starts_a_fresh_count() {
        let policy = Policy::default();
        let throttle = Throttle::new(policy, 100);
        for _ in 0..policy.lockout_after {
            throttle.failure(addr(1));
        }
        tokio::time::advance(policy.lockout + Duration::from_secs(1)).await;
        assert_eq!(throttle.check(addr(1)), Verdict::Allowed);
        assert_eq!(throttle.failure(addr(1)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_the_record() {
        let throttle = Throttle::new(Policy::default(), 100);
        for _ in 0..5 {
            throttle.failure(addr(1));
        }
        throttle.success(addr(1));
        assert_eq!(throttle.failure(addr(1)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_bounded() {
        let throttle = Throttle::new(Policy::default(), 10);
        for last in 0..50 {
            throttle.failure(addr(last));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let records = throttle.records.lock().unwrap();
        assert!(records.len() <= 10);
        assert!(
            records.contains_key(&addr(49)),
            "the newest address is remembered"
        );
        assert!(
            !records.contains_key(&addr(0)),
            "the oldest address went first"
        );
    }
}
