//! When the console lets a connection go: the idle watchdog every
//! connection runs beside hyper.
//!
//! Once per `http.idle_timeout` period the watchdog looks at what the
//! period brought, and closes the connection when
//! - it moved no bytes either way: a client that connected and sent
//!   nothing, an idle keep-alive or HTTP/2 connection, an upload or a
//!   download that stalled; or
//! - for two periods running, bytes came in but no request started and
//!   none was being answered or sent: a request head sent a byte at a time
//!   (slowloris). Two periods, so that a head that merely straddles the end
//!   of a period is not taken for one.
//!
//! This costs one timer per connection, filed once per period, and a few
//! counter updates per request. hyper's own request-head timeout asks for a
//! new timer before every request; tried first, it cost twice as much per
//! request (callgrind counts in BENCHMARKS.md), and it covers neither a
//! connection silent before its first byte (while hyper still tells HTTP/1
//! from HTTP/2) nor HTTP/2.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::listener::{CountedTraffic, Traffic};

/// The requests of one connection, counted by its service.
#[derive(Debug, Default)]
pub struct Requests {
    started: AtomicU64,
    in_flight: AtomicU64,
}

impl Requests {
    /// Counts a request as started and being answered until the returned
    /// guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request being answered; dropped when its handler is done.
#[derive(Debug)]
pub struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a connection had done by some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    traffic: Traffic,
    requests_started: u64,
}

impl Snapshot {
    fn of(traffic: &CountedTraffic, requests: &Requests) -> Snapshot {
        Snapshot {
            traffic: traffic.traffic(),
            requests_started: requests.started.load(Ordering::Relaxed),
        }
    }
}

/// What one period of a connection was like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    /// No bytes either way.
    Silent,
    /// Bytes came in, yet no request started, none was being answered and
    /// nothing went out.
    NoRequest,
    Active,
}

impl Period {
    fn between(before: Snapshot, after: Snapshot, in_flight: u64) -> Period {
        let bytes_in = after.traffic.bytes_in != before.traffic.bytes_in;
        let bytes_out = after.traffic.bytes_out != before.traffic.bytes_out;
        let request_started = after.requests_started != before.requests_started;
        if !bytes_in && !bytes_out {
            Period::Silent
        } else if !bytes_out && !request_started && in_flight == 0 {
            Period::NoRequest
        } else {
            Period::Active
        }
    }
}

/// Completes when the connection behind `traffic` and `requests` should be
/// closed as idle (see the module docs), checking once per `period`.
pub async fn idle(traffic: &CountedTraffic, requests: &Requests, period: Duration) {
    let mut before = Snapshot::of(traffic, requests);
    let mut no_request_before = false;
    loop {
        tokio::time::sleep(period).await;
        let after = Snapshot::of(traffic, requests);
        match Period::between(before, after, requests.in_flight.load(Ordering::Relaxed)) {
            Period::Silent => return,
            Period::NoRequest if no_request_before => return,
            Period::NoRequest => no_request_before = true,
            Period::Active => no_request_before = false,
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(bytes_in: u64, bytes_out: u64, requests_started: u64) -> Snapshot {
        Snapshot {
            traffic: Traffic {
                bytes_in,
                bytes_out,
            },
            requests_started,
        }
    }

    #[test]
    fn a_period_without_bytes_is_silent_even_with_a_request_in_flight() {
        assert_eq!(Period::between(at(5, 9, 1), at(5, 9, 1), 0), Period::Silent);
        assert_eq!(Period::between(at(5, 9, 1), at(5, 9, 1), 1), Period::Silent);
    }

    #[test]
    fn bytes_in_without_a_request_are_no_request() {
        assert_eq!(
            Period::between(at(5, 9, 1), at(6, 9, 1), 0),
            Period::NoRequest
        );
    }

    #[test]
    fn a_started_request_an_answer_or_a_running_handler_is_activity() {
        assert_eq!(
            Period::between(at(5, 9, 1), at(60, 9, 2), 0),
            Period::Active
        );
        assert_eq!(
            Period::between(at(5, 9, 1), at(5, 90, 1), 0),
            Period::Active
        );
        assert_eq!(
            Period::between(at(5, 9, 1), at(60, 9, 1), 1),
            Period::Active
        );
    }

    #[test]
    fn a_request_counts_as_in_flight_until_its_guard_drops() {
        let requests = Arc::new(Requests::default());
        let guard = requests.begin();
        assert_eq!(requests.in_flight.load(Ordering::Relaxed), 1);
        assert_eq!(requests.started.load(Ordering::Relaxed), 1);
        drop(guard);
        assert_eq!(requests.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(requests.started.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_goes_after_one_period_a_slow_head_after_two() {
        let period = Duration::from_secs(60);
        let requests = Requests::default();

        let (_, silent) = crate::listener::Counted::new(());
        let started = tokio::time::Instant::now();
        idle(&silent, &requests, period).await;
        assert_eq!(started.elapsed(), period);

        // One byte of a head per ten seconds, never a request.
        let (mut trickle, counters) = crate::listener::Counted::new(tokio::io::repeat(b'x'));
        let started = tokio::time::Instant::now();
        let watchdog = idle(&counters, &requests, period);
        let client = async {
            loop {
                tokio::io::AsyncReadExt::read(&mut trickle, &mut [0u8; 1])
                    .await
                    .ok();
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        };
        tokio::select! {
            () = watchdog => {}
            () = client => unreachable!(),
        }
        assert_eq!(started.elapsed(), 2 * period);
    }
}
