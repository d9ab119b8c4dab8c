//! A control or data connection, in the clear or inside TLS (RFC 4217:
//! `AUTH TLS` switches the control connection, `PROT P` the data ones; the
//! server is the TLS server on both, whichever side connected).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::ServerSessionMemoryCache;
use tokio_rustls::server::TlsStream;

/// The TLS server side of one FTP session. Its control connection and its
/// data connections share a session cache of their own, so a data
/// connection can resume the control connection's TLS session and no other
/// (RFC 4217 section 10: a resumed session shows the data connection comes
/// from the client that logged in). Only the control connection issues TLS
/// 1.3 session tickets: a client that only writes on an upload's data
/// connection would never read them, and closing a socket with unread data
/// resets it, which cut uploads short.
pub struct SessionTls {
    pub control: TlsAcceptor,
    pub data: TlsAcceptor,
}

impl SessionTls {
    pub fn new(base: &ServerConfig) -> SessionTls {
        let cache = ServerSessionMemoryCache::new(SESSIONS_KEPT);
        let mut control = base.clone();
        control.session_storage = cache.clone();
        control.send_tls13_tickets = 2;
        let mut data = base.clone();
        data.session_storage = cache;
        data.send_tls13_tickets = 0;
        SessionTls {
            control: TlsAcceptor::from(Arc::new(control)),
            data: TlsAcceptor::from(Arc::new(data)),
        }
    }
}

/// TLS sessions one FTP session remembers for its data connections.
const SESSIONS_KEPT: usize = 8;

/// A connection of the session.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Left behind while the control connection is being switched to TLS.
    Switching,
}

impl Stream {
    /// Runs the server side of a TLS handshake on a plain connection, within
    /// `limit`.
    ///
    /// # Errors
    /// The handshake failed or took too long, or the stream is not plain.
    pub async fn into_tls(self, acceptor: &TlsAcceptor, limit: Duration) -> io::Result<Stream> {
        let Stream::Plain(tcp) = self else {
            return Err(io::Error::other("TLS is already on"));
        };
        match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls?))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake took too long",
            )),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Whether the TLS handshake resumed an earlier session.
    pub fn resumed_tls(&self) -> bool {
        match self {
            Stream::Tls(tls) => {
                tls.get_ref().1.handshake_kind()
                    == Some(tokio_rustls::rustls::HandshakeKind::Resumed)
            }
            _ => false,
        }
    }
}

fn switching() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection is switching to TLS",
    )
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls).poll_read(cx, buf),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls).poll_write(cx, buf),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls).poll_flush(cx),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls).poll_shutdown(cx),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }
}
