//! Small status routes: the course's "Hello, World", the health check, the
//! JSON status snapshot and the live event stream behind the dashboard.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;

use super::auth::Admin;
use super::{AppState, ServiceInfo};
use crate::stats::{self, Event, ServiceSnapshot};

/// `GET /hello`: the course's page, as plain text.
pub async fn hello() -> &'static str {
    "Hello, World"
}

/// `GET /healthz`: 200 while the process serves.
pub async fn healthz() -> &'static str {
    "ok"
}

/// One service in the status snapshot: where it listens and its counters.
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    #[serde(flatten)]
    pub info: ServiceInfo,
    pub state: &'static str,
    pub counters: ServiceSnapshot,
}

/// Everything the dashboard shows, at one moment.
#[derive(Debug, Serialize)]
pub struct Status {
    pub uptime_secs: u64,
    pub services: Vec<ServiceStatus>,
}

/// Builds the snapshot of every service.
pub fn snapshot(state: &AppState) -> Status {
    let counters = stats::services();
    let services = state
        .services()
        .iter()
        .map(|info| ServiceStatus {
            info: info.clone(),
            state: if state.shutdown().is_stopping() {
                "stopping"
            } else {
                "running"
            },
            counters: counters
                .iter()
                .find(|(name, _)| *name == info.name)
                .map(|(_, snapshot)| *snapshot)
                .unwrap_or_default(),
        })
        .collect();
    Status {
        uptime_secs: state.uptime().as_secs(),
        services,
    }
}

/// `GET /api/status`: the snapshot as JSON, for admins.
pub async fn status_json(State(state): State<AppState>, _admin: Admin) -> Json<Status> {
    Json(snapshot(&state))
}

/// How often the event stream pushes a fresh snapshot.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// `GET /api/events`: server-sent events. First the recent events (`event`),
/// then, live, a `status` snapshot every second and each new `event`. The
/// stream ends when the server shuts down.
pub async fn events(
    State(state): State<AppState>,
    _admin: Admin,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let feed = stats::subscribe();
    let backlog = stats::recent_events();
    let stream = futures::stream::unfold(
        (
            state,
            feed,
            backlog.into_iter(),
            tokio::time::interval(STATUS_INTERVAL),
        ),
        |(state, mut feed, mut backlog, mut ticks)| async move {
            if let Some(event) = backlog.next() {
                return Some((event_message(&event), (state, feed, backlog, ticks)));
            }
            let message = tokio::select! {
                _ = state.shutdown().stopping() => return None,
                _ = ticks.tick() => status_message(&state),
                received = feed.recv() => match received {
                    Ok(event) => event_message(&event),
                    // Fell behind: the next snapshot has the totals anyway.
                    Err(_) => status_message(&state),
                },
            };
            Some((message, (state, feed, backlog, ticks)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn event_message(event: &Event) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default()
        .event("event")
        .data(serde_json::to_string(event).expect("events serialise")))
}

fn status_message(state: &AppState) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default()
        .event("status")
        .data(serde_json::to_string(&snapshot(state)).expect("status serialises")))
}
