//! Binding the sockets services listen on, and naming them for the user.
//!
//! Services bind before they run (the caller owns addresses: tests bind port 0
//! and read the real port back), and `sockit serve` prints one [`Endpoint`] line
//! per bound socket. A failed bind is a [`BindError`] that knows which service,
//! protocol and address failed and which flag or config key moves it.
//!
//! Unix sockets leave a file behind. [`bind_unix`] replaces a stale file only
//! when nothing listens on it, and the returned [`SocketFile`] removes the file
//! when dropped, if it is still the one this process created.
//!
//! [`SetupError`] is what starting a service can fail with: a [`BindError`],
//! TLS files that cannot be used, a user store that cannot be read, a bot
//! script that does not validate, or an exec key or policy that cannot be used.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UdpSocket, UnixListener};

/// One listening socket, as printed by `sockit serve`: `echo  tcp  127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub service: &'static str,
    pub protocol: &'static str,
    pub address: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Columns line up for the usual names, and never run together.
        let service = format!("{} ", self.service);
        let protocol = format!("{} ", self.protocol);
        write!(f, "{service:<6}{protocol:<5}{}", self.address)
    }
}

/// Where a socket is configured, so an error can say how to move it.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub service: &'static str,
    pub protocol: &'static str,
    /// The command-line flag that sets the address, e.g. "sockit serve echo --tcp ADDR".
    pub flag: &'static str,
    /// The config key that sets it, e.g. "echo.port".
    pub config_key: &'static str,
}

/// A socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot listen on {} {address}", origin.service, origin.protocol)]
pub struct BindError {
    pub origin: Origin,
    pub address: String,
    #[source]
    pub source: io::Error,
}

impl BindError {
    /// Wraps the I/O error of binding `address` for the service `origin`.
    pub fn of(origin: Origin, address: String) -> impl FnOnce(io::Error) -> BindError {
        move |source| BindError {
            origin,
            address,
            source,
        }
    }
}

impl BindError {
    /// "port 8080" for a network address, the path for a Unix socket.
    fn taken(&self) -> String {
        match self.address.parse::<std::net::SocketAddr>() {
            Ok(addr) => format!("{} port {}", self.origin.protocol, addr.port()),
            Err(_) => self.address.clone(),
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        let Origin {
            service,
            flag,
            config_key,
            ..
        } = self.origin;
        match self.source.kind() {
            io::ErrorKind::AddrInUse => Some(format!(
                "another program holds {}; move {service} with `{flag}` or the config key `{config_key}`",
                self.taken()
            )),
            io::ErrorKind::PermissionDenied => Some(format!(
                "ports below 1024 need privileges; choose another with `{flag}` or `{config_key}`"
            )),
            io::ErrorKind::AddrNotAvailable => Some(format!(
                "no local interface has that address; check `--bind` or `{config_key}`"
            )),
            _ => None,
        }
    }
}

/// A service could not be set up to listen: a socket or its TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("{service}: TLS")]
    Tls {
        service: &'static str,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("users")]
    Users(#[from] crate::users::UserError),
    #[error("bot")]
    Script(#[from] crate::bot::script::ScriptError),
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecSetupError),
}

impl SetupError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            SetupError::Bind(err) => err.hint(),
            SetupError::Exec(err) => err.hint(),
            SetupError::Tls { .. } | SetupError::Users(_) | SetupError::Script(_) => None,
        }
    }
}

/// How many connections the kernel queues for `accept`. The standard
/// library's 128 overflows when a few hundred clients connect at once (the
/// overflowing SYNs are dropped and retried a second later); the kernel caps
/// this at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds a blocking TCP listener with [`LISTEN_BACKLOG`], optionally with
/// `SO_REUSEPORT` so several listeners can share the port.
///
/// # Errors
/// The socket cannot be created, bound or put in listening state.
pub fn std_tcp_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]` accepts IPv4 too, as the standard library's default does.
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Binds `count` listening sockets on one address with `SO_REUSEPORT`, one
/// per event loop; the kernel spreads new connections over them evenly (by a
/// hash of the peer's address and port). With port 0 the first socket picks
/// the port and the others join it.
///
/// # Errors
/// A socket cannot be created, bound or put in listening state.
pub fn std_tcp_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count.max(1));
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let listener = std_tcp_listener(addr, true)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds a TCP listener for the async runtime.
///
/// # Errors
/// A [`BindError`] carrying `origin`.
pub async fn bind_tcp(addr: SocketAddr, origin: Origin) -> Result<TcpListener, BindError> {
    let bound = std_tcp_listener(addr, false).and_then(|listener| {
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    });
    bound.map_err(BindError::of(origin, addr.to_string()))
}

/// Binds a UDP socket.
///
/// # Errors
/// A [`BindError`] carrying `origin`.
pub async fn bind_udp(addr: SocketAddr, origin: Origin) -> Result<UdpSocket, BindError> {
    UdpSocket::bind(addr)
        .await
        .map_err(BindError::of(origin, addr.to_string()))
}

/// A Unix socket file this process created; removed on drop.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl SocketFile {
    /// Where the socket file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Only remove the file if it is still ours: another server may have
        // replaced it after we stopped listening.
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a Unix stream listener at `path`.
///
/// An existing file at `path` is replaced only if it is a socket nobody listens
/// on (a leftover from a crashed run). A live socket, or a file that is not a
/// socket, is left alone and reported as "address in use".
///
/// # Errors
/// A [`BindError`] carrying `origin`.
pub fn bind_unix(path: &Path, origin: Origin) -> Result<(UnixListener, SocketFile), BindError> {
    let error = |source| BindError {
        origin,
        address: path.display().to_string(),
        source,
    };
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            remove_stale_socket(path).map_err(error)?;
            UnixListener::bind(path).map_err(error)?
        }
        Err(err) => return Err(error(err)),
    };
    let meta = std::fs::symlink_metadata(path).map_err(error)?;
    let file = SocketFile {
        path: path.to_owned(),
        identity: (meta.dev(), meta.ino()),
    };
    Ok((listener, file))
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "the path exists and is not a socket",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a server is already listening on this socket",
        )),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(err) => Err(err),
    }
}
