//! The browser console (B/S): the course's "Hello, World" page, health and
//! Prometheus metrics, and a live dashboard of every service.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests can
//! drive it without a socket. [`Http`] serves it: connections come from the
//! shared accept loop ([`crate::listener`]) and each is handed to hyper, which
//! speaks HTTP/1.1 or HTTP/2 as the client asks. On shutdown every connection
//! finishes its in-flight requests and closes; the live event stream ends.
//!
//! The console runs on its own worker threads, each with a single-threaded
//! tokio runtime, as nginx runs one event loop per worker process: a
//! connection then lives on one thread, and no request pays for a wake-up
//! across threads. On two cores a bare hyper server served about 1.6 times
//! the requests per second this way than on tokio's shared multi-threaded
//! runtime (BENCHMARKS.md). Each worker accepts on a listening socket of its
//! own, all bound to the one address with `SO_REUSEPORT`, so the kernel deals
//! connections out evenly: workers sharing one socket raced for each new
//! connection, and one of them could end up with all of a load's keep-alive
//! connections while the other core idled.
//!
//! Assets (HTML, CSS, JavaScript) are embedded in the binary: there is no
//! build step and nothing to install next to it.

pub mod assets;
pub mod auth;
pub mod error;
pub mod files;
pub mod idle;
pub mod metrics;
pub mod session;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use axum::middleware::map_response;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::{Duration, timeout};
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::{debug, error};

use crate::config::HttpSettings;
use crate::endpoint::{self, BindError, Endpoint, Origin, SetupError};
use crate::listener::{self, Counted, CountedTraffic, Outcome, Peer};
use crate::quota::Quotas;
use crate::shutdown::Shutdown;
use crate::throttle::{Policy, Throttle};
use crate::tls;
use crate::users::UserStore;
use session::Sessions;

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
    users: Arc<UserStore>,
    quotas: Arc<Quotas>,
    sessions: Sessions,
    throttle: Throttle,
    secure: bool,
}

impl AppState {
    /// State for a console describing `endpoints` (every service's sockets),
    /// signing in `users`; `secure` when served over TLS (cookies get `Secure`).
    pub fn new(
        endpoints: &[Endpoint],
        users: Arc<UserStore>,
        quotas: Arc<Quotas>,
        secure: bool,
        shutdown: Shutdown,
    ) -> AppState {
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
                users,
                quotas,
                sessions: Sessions::default(),
                throttle: Throttle::new(Policy::default(), 10_000),
                secure,
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

    pub fn users(&self) -> &Arc<UserStore> {
        &self.inner.users
    }

    pub fn quotas(&self) -> &Quotas {
        &self.inner.quotas
    }

    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// True when served over TLS.
    pub fn secure(&self) -> bool {
        self.inner.secure
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
        .route(
            "/files",
            get(|| async { axum::response::Redirect::permanent("/files/") }),
        )
        .route("/", get(assets::dashboard))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route(
            "/files/",
            get(files::browse_root).layer(map_response(home_file_headers)),
        )
        .route(
            "/files/{*path}",
            get(files::browse).layer(map_response(home_file_headers)),
        )
        .route(
            "/api/upload",
            post(files::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/mkdir", post(files::mkdir))
        .route("/api/rename", post(files::rename))
        .route("/api/delete", post(files::delete))
        .route("/assets/{name}", get(assets::asset))
        .with_state(state)
}

/// What a file from a home is served under, unless the response is one of
/// the console's own pages (which carry their own, stricter policy). A user
/// may upload HTML or SVG with a script in it; `sandbox` gives such a file an
/// opaque origin with scripts off, so another user who opens it (an admin
/// whose home holds other users' files, say) runs nothing in the console's
/// origin, cannot read its CSRF token and sends no request with its cookie.
/// Sandboxing rather than `Content-Disposition: attachment` keeps the
/// listing's links viewing pictures, text and media in the browser;
/// `?download` still asks for an attachment.
const HOME_FILE_POLICY: &str = "sandbox";

/// Marks every response of the `/files/` routes `nosniff` (a browser must
/// not guess HTML in a file served as something else) and puts files from a
/// home under [`HOME_FILE_POLICY`].
async fn home_file_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HOME_FILE_POLICY),
        );
    }
    response
}

const ORIGIN: Origin = Origin {
    service: "http",
    protocol: "tcp",
    flag: "sockit serve http --addr ADDR",
    config_key: "http.port",
};

/// The HTTP service with its socket bound.
pub struct Http {
    /// One listening socket per worker, all on the same address.
    listeners: Vec<std::net::TcpListener>,
    max_connections: usize,
    idle_timeout: Duration,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("listeners", &self.listeners)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("tls", &self.is_tls())
            .finish()
    }
}

impl Http {
    /// Loads the TLS files, if any, and binds the configured address.
    ///
    /// # Errors
    /// A [`SetupError`] when the TLS files cannot be used or the address
    /// cannot be bound.
    pub async fn bind(settings: &HttpSettings) -> Result<Http, SetupError> {
        let tls = match &settings.tls {
            Some(files) => {
                let config =
                    tls::server_config(files, &[b"h2", b"http/1.1"]).map_err(|source| {
                        SetupError::Tls {
                            service: "http",
                            source,
                        }
                    })?;
                Some(TlsAcceptor::from(std::sync::Arc::new(config)))
            }
            None => None,
        };
        Ok(Http {
            listeners: endpoint::std_tcp_listeners(settings.addr, settings.workers)
                .map_err(BindError::of(ORIGIN, settings.addr.to_string()))?,
            max_connections: settings.max_connections,
            idle_timeout: settings.idle_timeout,
            tls,
        })
    }

    /// True when the console is served over HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The bound socket.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let protocol = if self.is_tls() { "https" } else { "tcp" };
        self.listeners[0]
            .local_addr()
            .map(|addr| Endpoint {
                service: "http",
                protocol,
                address: addr.to_string(),
            })
            .into_iter()
            .collect()
    }

    /// Serves `app` until shutdown, on one single-threaded runtime per
    /// worker thread (see the module docs for why), and returns once every
    /// worker has stopped accepting and its sessions have ended.
    pub async fn run(self, app: Router, shutdown: Shutdown) {
        let Http {
            listeners,
            max_connections,
            idle_timeout,
            tls,
        } = self;
        let per_worker = max_connections.div_ceil(listeners.len()).max(1);
        let mut threads = Vec::new();
        for (worker, listener) in listeners.into_iter().enumerate() {
            let (app, tls, shutdown) = (app.clone(), tls.clone(), shutdown.clone());
            let started = std::thread::Builder::new()
                .name(format!("sockit-http-{worker}"))
                .spawn(move || run_worker(listener, app, tls, per_worker, idle_timeout, shutdown));
            match started {
                // A worker that did not start takes its socket with it: the
                // kernel then deals its share of connections to the others.
                Ok(thread) => threads.push(thread),
                Err(err) => error!(worker, error = %err, "http: cannot start a worker"),
            }
        }
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    error!("http: a worker panicked");
                }
            }
        });
        let _ = joined.await;
    }
}

/// One worker: a current-thread runtime accepting on its copy of the
/// listening socket until shutdown, then turning until the sessions end (the
/// process exits at the end of the grace period regardless).
fn run_worker(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    idle_timeout: Duration,
    shutdown: Shutdown,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(error = %err, "http: cannot start a worker runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
        {
            Ok(listener) => listener,
            Err(err) => {
                error!(error = %err, "http: a worker cannot watch the listener");
                return;
            }
        };
        let handler_shutdown = shutdown.clone();
        listener::run(
            listener,
            "http",
            max_connections,
            handler_shutdown,
            move |stream, peer, shutdown| {
                let (stream, traffic) = Counted::new(stream);
                let app = app.clone();
                let tls = tls.clone();
                async move {
                    let result = match tls {
                        None => {
                            serve_connection(app, stream, peer, &traffic, idle_timeout, shutdown)
                                .await
                        }
                        Some(tls) => match timeout(TLS_HANDSHAKE_LIMIT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(
                                    app,
                                    stream,
                                    peer,
                                    &traffic,
                                    idle_timeout,
                                    shutdown,
                                )
                                .await
                            }
                            Ok(Err(err)) => Err(format!("TLS handshake: {err}").into()),
                            Err(_) => Err("TLS handshake timed out".into()),
                        },
                    };
                    Outcome {
                        traffic: traffic.traffic(),
                        result,
                    }
                }
            },
        )
        .await;
        shutdown.tracker().wait().await;
    });
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

/// Serves one connection until the client closes it, it idles (see
/// [`idle`]; `traffic` counts its bytes), or shutdown ends it gracefully
/// (in-flight requests complete first).
async fn serve_connection<S>(
    app: Router,
    stream: S,
    peer: Peer,
    traffic: &CountedTraffic,
    idle_timeout: Duration,
    shutdown: Shutdown,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer_addr = match peer {
        Peer::Tcp(addr) => addr,
        Peer::Unix => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let requests = Arc::new(idle::Requests::default());
    let counted = requests.clone();
    // axum's router is always ready, so each request calls it directly (no
    // readiness round per request, as `oneshot` would do).
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = counted.begin();
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer_addr));
        let response = app.clone().call(request);
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    });
    // hyper's own request-head timeout is left off: see `idle` for why.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    // The stop signal is polled whenever the connection wakes: a flag read
    // (see `Shutdown::stopping`).
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.stopping() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = idle::idle(traffic, &requests, idle_timeout) => {
            debug!("closing an idle connection");
            Ok(())
        }
    }
}
