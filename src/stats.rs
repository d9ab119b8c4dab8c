//! Live counters and recent events of every service, read by the HTTP
//! console's `/metrics` and dashboard.
//!
//! The registry is process-wide, like a logger: services count without being
//! handed a registry, and the accept loop ([`crate::listener`]) keeps the
//! connection and byte counters of every stream service by itself. Counters are
//! atomics, so counting costs no lock on the data path; only the first lookup
//! of a name and the event feed take a mutex.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many recent events the feed keeps for a newly opened dashboard.
const RECENT_EVENTS: usize = 200;

/// How many events the live feed holds for a subscriber that has not read
/// them yet. The feed's buffer is made, and every slot written, with the
/// registry, so its size is memory the server keeps from the start (1 024
/// slots were 90 KiB); a dashboard further behind than this gets the next
/// status snapshot instead, and the recent list when it reloads.
const FEED_BACKLOG: usize = 128;

/// Bytes of text each kept event has room for without a new allocation;
/// most events' lines are shorter, a longer one grows its slot.
const RECENT_DETAIL_CAPACITY: usize = 120;

/// Connection and byte counters of one service.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub errors: AtomicU64,
}

/// A copy of a service's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServiceSnapshot {
    pub connections_open: u64,
    pub connections_total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
}

impl ServiceStats {
    fn snapshot(&self) -> ServiceSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServiceSnapshot {
            connections_open: read(&self.connections_open),
            connections_total: read(&self.connections_total),
            bytes_in: read(&self.bytes_in),
            bytes_out: read(&self.bytes_out),
            errors: read(&self.errors),
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Something worth showing in the dashboard's feed.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub service: &'static str,
    /// A short kind: "connection", "transfer", "command", "login-failed", ...
    pub kind: &'static str,
    /// One human-readable line.
    pub detail: String,
}

/// A labelled counter's identity: a metric name and its rendered labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterKey {
    pub name: &'static str,
    /// Label pairs, in the order given.
    pub labels: Vec<(&'static str, String)>,
}

/// The last [`RECENT_EVENTS`] events, in storage allocated once, up front.
///
/// An event's text arrives in a string its session allocated. Kept as it
/// is, each of the 200 would stay wherever the heap had room at that moment:
/// after a burst of sessions they sat scattered over the heap, one to a
/// page, and kept up to 200 of its pages resident when the server fell
/// idle (BENCHMARKS.md, "FTP against vsftpd"). Instead each slot keeps its
/// own buffer, made next to the others when the registry is, and the text
/// is copied into the oldest slot's buffer.
struct RecentEvents {
    slots: Vec<Event>,
    /// The slot the next event goes into; once every slot is used, also the oldest.
    next: usize,
    used: usize,
}

impl RecentEvents {
    fn new() -> Self {
        let empty = || Event {
            at: 0,
            service: "",
            kind: "",
            detail: String::with_capacity(RECENT_DETAIL_CAPACITY),
        };
        Self {
            slots: (0..RECENT_EVENTS).map(|_| empty()).collect(),
            next: 0,
            used: 0,
        }
    }

    fn push(&mut self, event: &Event) {
        let slot = &mut self.slots[self.next];
        slot.at = event.at;
        slot.service = event.service;
        slot.kind = event.kind;
        slot.detail.clear();
        slot.detail.push_str(&event.detail);
        self.next = (self.next + 1) % RECENT_EVENTS;
        self.used = (self.used + 1).min(RECENT_EVENTS);
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &Event> {
        let oldest = (self.next + RECENT_EVENTS - self.used) % RECENT_EVENTS;
        (0..self.used).map(move |i| &self.slots[(oldest + i) % RECENT_EVENTS])
    }
}

struct Registry {
    services: Mutex<BTreeMap<&'static str, Arc<ServiceStats>>>,
    counters: Mutex<BTreeMap<CounterKey, Arc<AtomicU64>>>,
    recent: Mutex<RecentEvents>,
    feed: broadcast::Sender<Event>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    services: Mutex::new(BTreeMap::new()),
    counters: Mutex::new(BTreeMap::new()),
    recent: Mutex::new(RecentEvents::new()),
    feed: broadcast::channel(FEED_BACKLOG).0,
});

/// The counters of `service`, created on first use.
pub fn service(service: &'static str) -> Arc<ServiceStats> {
    let mut services = REGISTRY.services.lock().expect("stats lock");
    services.entry(service).or_default().clone()
}

/// Every service's counters, by name.
pub fn services() -> Vec<(&'static str, ServiceSnapshot)> {
    let services = REGISTRY.services.lock().expect("stats lock");
    services
        .iter()
        .map(|(name, stats)| (*name, stats.snapshot()))
        .collect()
}

/// The labelled counter `name{labels}`, created at zero on first use.
pub fn counter(name: &'static str, labels: &[(&'static str, &str)]) -> Arc<AtomicU64> {
    let key = CounterKey {
        name,
        labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    };
    let mut counters = REGISTRY.counters.lock().expect("stats lock");
    counters.entry(key).or_default().clone()
}

/// Every labelled counter with its value.
pub fn counters() -> Vec<(CounterKey, u64)> {
    let counters = REGISTRY.counters.lock().expect("stats lock");
    counters
        .iter()
        .map(|(key, value)| (key.clone(), value.load(Ordering::Relaxed)))
        .collect()
}

/// Records an event in the recent list and sends it to live subscribers.
pub fn record(service: &'static str, kind: &'static str, detail: String) {
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let event = Event {
        at,
        service,
        kind,
        detail,
    };
    REGISTRY.recent.lock().expect("stats lock").push(&event);
    // No subscriber is fine: nobody has the dashboard open.
    let _ = REGISTRY.feed.send(event);
}

/// The most recent events, oldest first.
pub fn recent_events() -> Vec<Event> {
    REGISTRY
        .recent
        .lock()
        .expect("stats lock")
        .iter()
        .cloned()
        .collect()
}

/// A live feed of events from now on. A subscriber that falls behind loses
/// the oldest events rather than slowing any service.
pub fn subscribe() -> broadcast::Receiver<Event> {
    REGISTRY.feed.subscribe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_keeps_one_set_of_counters() {
        let first = service("stats-test");
        ServiceStats::add(&first.bytes_in, 5);
        ServiceStats::add(&service("stats-test").bytes_in, 7);
        let snapshot = services()
            .into_iter()
            .find(|(name, _)| *name == "stats-test")
            .unwrap()
            .1;
        assert_eq!(snapshot.bytes_in, 12);
    }

    #[test]
    fn labelled_counters_are_distinct_per_label() {
        counter("stats_test_total", &[("status", "0")]).fetch_add(1, Ordering::Relaxed);
        counter("stats_test_total", &[("status", "1")]).fetch_add(2, Ordering::Relaxed);
        let values: Vec<u64> = counters()
            .into_iter()
            .filter(|(key, _)| key.name == "stats_test_total")
            .map(|(_, value)| value)
            .collect();
        assert_eq!(values, vec![1, 2]);
    }

    #[test]
    fn events_reach_subscribers_and_the_recent_list() {
        let mut feed = subscribe();
        record("stats-test", "connection", "from somewhere".to_owned());
        let event = feed.try_recv().unwrap();
        assert_eq!(event.detail, "from somewhere");
        assert!(recent_events().iter().any(|e| e.detail == "from somewhere"));
    }

    #[test]
    fn the_recent_list_keeps_the_newest_events_oldest_first() {
        let mut recent = RecentEvents::new();
        let event = |n: usize| Event {
            at: n as u64,
            service: "stats-test",
            kind: "connection",
            detail: format!("event {n} {}", "x".repeat(n % 3 * RECENT_DETAIL_CAPACITY)),
        };
        recent.push(&event(0));
        recent.push(&event(1));
        let kept: Vec<u64> = recent.iter().map(|e| e.at).collect();
        assert_eq!(kept, vec![0, 1]);

        for n in 2..RECENT_EVENTS + 50 {
            recent.push(&event(n));
        }
        let kept: Vec<&Event> = recent.iter().collect();
        assert_eq!(kept.len(), RECENT_EVENTS);
        for (kept, n) in kept.iter().zip(50..) {
            assert_eq!(kept.at, n as u64);
            assert_eq!(kept.detail, event(n).detail);
        }
    }
}
