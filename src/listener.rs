//! The one accept loop every stream service runs.
//!
//! [`run`] takes a bound listener (TCP or Unix), a per-connection handler and a
//! [`Shutdown`]. For each connection it first takes a permit from a semaphore
//! sized by the service's connection limit, then accepts, then spawns the handler
//! on the shutdown's task tracker with the permit moved in, so the limit holds
//! without any bookkeeping. When the handler returns, the loop logs one line
//! with the peer, bytes in and out, and the duration.
//!
//! It also keeps the service's counters in [`crate::stats`] (connections open
//! and total, bytes, sessions that ended in an error) and records a
//! "connection" event per closed connection.
//!
//! Accept errors (EMFILE, ECONNABORTED, ...) are logged and retried after a
//! doubling pause: they never stop the service and never spin.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{Instrument, info, info_span, warn};

use crate::shutdown::Shutdown;
use crate::stats::{self, ServiceStats};

/// Raises this process's open-file limit to its hard limit, so a server (or a
/// load generator) with thousands of connections does not run out of file
/// descriptors at the usual soft limit of 1024. Children inherit the limit.
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer with its address.
    Tcp(SocketAddr),
    /// A Unix-socket peer; such peers are usually unnamed.
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// A listener the accept loop can drive: TCP or Unix.
pub trait Accept: Send + 'static {
    /// The connected stream type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Peer)>> + Send;
}

impl Accept for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, Peer)> {
        let (stream, addr) = TcpListener::accept(self).await?;
        // Request/response services answer small messages; Nagle's algorithm would
        // hold each reply back waiting for the peer's delayed ACK.
        stream.set_nodelay(true)?;
        Ok((stream, Peer::Tcp(addr)))
    }
}

impl Accept for UnixListener {
    type Stream = UnixStream;

    async fn accept(&self) -> io::Result<(UnixStream, Peer)> {
        let (stream, _addr) = UnixListener::accept(self).await?;
        Ok((stream, Peer::Unix))
    }
}

/// Bytes moved over one connection, counted by its handler.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes read from the peer.
    pub bytes_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
}

/// A stream that counts the bytes read from and written to it, for handlers
/// that hand their stream to a library (hyper, TLS) and so cannot count
/// themselves.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    traffic: Arc<CountedTraffic>,
}

/// The shared counters of a [`Counted`] stream.
#[derive(Debug, Default)]
pub struct CountedTraffic {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl CountedTraffic {
    /// The bytes moved so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

impl<S> Counted<S> {
    /// Wraps `inner`; the returned counters stay readable after the stream is gone.
    pub fn new(inner: S) -> (Counted<S>, Arc<CountedTraffic>) {
        let traffic = Arc::new(CountedTraffic::default());
        (
            Counted {
                inner,
                traffic: traffic.clone(),
            },
            traffic,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.traffic
            .bytes_in
            .fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            self.traffic
                .bytes_out
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled {
            self.traffic
                .bytes_out
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a connection handler ended: what it moved, and whether it failed.
#[derive(Debug)]
pub struct Outcome<E> {
    /// Bytes moved before the end.
    pub traffic: Traffic,
    /// `Err` when the session ended on an error (a reset, a protocol violation).
    pub result: Result<(), E>,
}

/// Accepts connections until the shutdown is requested.
///
/// `service` names the service in log lines; `max_connections` bounds how many
/// handlers run at once (further peers wait in the kernel's backlog). Each
/// handler gets the stream, the peer and a clone of the shutdown so it can wind
/// down when a stop is requested.
pub async fn run<L, H, F, E>(
    listener: L,
    service: &'static str,
    max_connections: usize,
    shutdown: Shutdown,
    handler: H,
) where
    L: Accept,
    H: Fn(L::Stream, Peer, Shutdown) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome<E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let counters = stats::service(service);
    let mut backoff = Duration::ZERO;
    let stopping = shutdown.stopping();
    tokio::pin!(stopping);
    loop {
        let permit = tokio::select! {
            () = &mut stopping => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                Err(err) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    warn!(service, error = %err, pause_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        () = &mut stopping => break,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
            },
        };
        let span = info_span!("conn", service, %peer);
        ServiceStats::add(&counters.connections_open, 1);
        ServiceStats::add(&counters.connections_total, 1);
        let counters = counters.clone();
        let session = handler(stream, peer.clone(), shutdown.clone());
        shutdown.tracker().spawn(
            async move {
                let started = Instant::now();
                let outcome = session.await;
                counters.connections_open.fetch_sub(1, Ordering::Relaxed);
                ServiceStats::add(&counters.bytes_in, outcome.traffic.bytes_in);
                ServiceStats::add(&counters.bytes_out, outcome.traffic.bytes_out);
                if outcome.result.is_err() {
                    ServiceStats::add(&counters.errors, 1);
                }
                stats::record(
                    service,
                    "connection",
                    format!(
                        "{peer}: {} bytes in, {} bytes out",
                        outcome.traffic.bytes_in, outcome.traffic.bytes_out
                    ),
                );
                let duration_ms = started.elapsed().as_millis() as u64;
                let Traffic {
                    bytes_in,
                    bytes_out,
                } = outcome.traffic;
                match outcome.result {
                    Ok(()) => info!(bytes_in, bytes_out, duration_ms, "connection closed"),
                    Err(err) => {
                        info!(bytes_in, bytes_out, duration_ms, error = %err, "connection closed")
                    }
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}
