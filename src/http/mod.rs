//! The browser console (B/S): the course's "Hello, World" page, health and
//! Prometheus metrics, and a live dashboard of every service.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests can
//! drive it without a socket. [`Http`] serves it: connections come from the
//! shared accept loop ([`crate::listener`]) and each is handed to hyper, which
//! speaks HTTP/1.1 or HTTP/2 as the client asks. On shutdown every connection
//! finishes its in-flight requests and closes; the live event stream ends.
//!
//! Assets (HTML, CSS, JavaScript) are embedded in the binary: there is no
//! build step and nothing to install next to it.

pub mod assets;
pub mod metrics;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::HttpSettings;
use crate::endpoint::{self, BindError, Endpoint, Origin};
use crate::listener::{self, Counted, Outcome, Peer};
use crate::shutdown::Shutdown;

/// A service as the dashboard shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceInfo {
    pub name: &'static str,
    pub endpoints: Vec<EndpointInfo>,
}

/// One listening socket of a service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointInfo {
    pub protocol: &'static str,
    pub address: String,
}

/// What every request handler can see.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    services: Vec<ServiceInfo>,
    started: Instant,
    shutdown: Shutdown,
}

impl AppState {
    /// State for a console describing `endpoints` (every service's sockets).
    pub fn new(endpoints: &[Endpoint], shutdown: Shutdown) -> AppState {
        let mut services: Vec<ServiceInfo> = Vec::new();
        for endpoint in endpoints {
            let info = EndpointInfo {
                protocol: endpoint.protocol,
                address: endpoint.address.clone(),
            };
            match services.iter_mut().find(|s| s.name == endpoint.service) {
                Some(service) => service.endpoints.push(info),
                None => services.push(ServiceInfo {
                    name: endpoint.service,
                    endpoints: vec![info],
                }),
            }
        }
        AppState {
            inner: Arc::new(StateInner {
                services,
                started: Instant::now(),
                shutdown,
            }),
        }
    }

    pub fn services(&self) -> &[ServiceInfo] {
        &self.inner.services
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/hello", get(status::hello))
        .route("/healthz", get(status::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/status", get(status::status_json))
        .route("/api/events", get(status::events))
        .route("/", get(assets::dashboard))
        .route("/assets/{name}", get(assets::asset))
        .with_state(state)
}

const ORIGIN: Origin = Origin {
    service: "http",
    protocol: "tcp",
    flag: "sockit serve http --addr ADDR",
    config_key: "http.port",
};

/// The HTTP service with its socket bound.
#[derive(Debug)]
pub struct Http {
    listener: TcpListener,
    max_connections: usize,
}

impl Http {
    /// Binds the configured address.
    ///
    /// # Errors
    /// A [`BindError`] when the address cannot be bound.
    pub async fn bind(settings: &HttpSettings) -> Result<Http, BindError> {
        Ok(Http {
            listener: endpoint::bind_tcp(settings.addr, ORIGIN).await?,
            max_connections: settings.max_connections,
        })
    }

    /// The bound socket.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.listener
            .local_addr()
            .map(|addr| Endpoint {
                service: "http",
                protocol: "tcp",
                address: addr.to_string(),
            })
            .into_iter()
            .collect()
    }

    /// Serves `app` until shutdown.
    pub async fn run(self, app: Router, shutdown: Shutdown) {
        listener::run(
            self.listener,
            "http",
            self.max_connections,
            shutdown,
            move |stream, peer, shutdown| serve_connection(app.clone(), stream, peer, shutdown),
        )
        .await
    }
}

/// Serves one connection until the client closes it or shutdown ends it
/// gracefully (in-flight requests complete first).
async fn serve_connection(
    app: Router,
    stream: tokio::net::TcpStream,
    peer: Peer,
    shutdown: Shutdown,
) -> Outcome<Box<dyn std::error::Error + Send + Sync>> {
    let (stream, traffic) = Counted::new(stream);
    let peer_addr = match peer {
        Peer::Tcp(addr) => addr,
        Peer::Unix => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let service = tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer_addr));
        app.clone().oneshot(request)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.stopping() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    Outcome {
        traffic: traffic.traffic(),
        result,
    }
}
