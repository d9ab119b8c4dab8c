//! The echo service: every byte a client sends comes back, with ASCII letters
//! upper-cased as the course's servers do (`--plain` turns that off).
//!
//! Upper-casing follows Python's `bytes.upper()`: `a`..`z` become `A`..`Z` and
//! every other byte, including non-UTF-8 ones, passes through unchanged, so the
//! service is binary-safe and a reply always has the length of its request.
//!
//! [`Echo`] binds the configured TCP, UDP and Unix sockets, then runs them:
//! streams in [`async_tasks`], datagrams in [`udp`]. That is the default
//! model; the others (see [`Model`]) run from `sockit serve echo --model` on
//! plain threads, without an async runtime: [`iterative`], [`threads`],
//! [`fork`] and the blocking UDP loop share [`blocking`]; [`poll`] and
//! [`epoll`] share [`nonblocking`].

pub mod async_tasks;
pub mod blocking;
pub mod epoll;
pub mod fork;
pub mod iterative;
pub mod models;
pub mod nonblocking;
pub mod poll;
pub mod threads;
pub mod udp;

use std::path::PathBuf;

use tokio::net::{TcpListener, UdpSocket, UnixListener};

use crate::config::EchoSettings;
use crate::endpoint::{self, BindError, Endpoint, Origin, SocketFile};
use crate::shutdown::Shutdown;

/// How the TCP echo server serves many clients: the concurrency models the
/// course teaches, one module each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// One client at a time ([`iterative`]).
    Iterative,
    /// A thread per connection ([`threads`]).
    Thread,
    /// A process per connection ([`fork`]).
    Fork,
    /// One thread, `poll(2)` ([`poll`]).
    Poll,
    /// `epoll` event loops through mio ([`epoll`]).
    Epoll,
    /// tokio tasks on a multi-threaded runtime ([`async_tasks`]).
    #[default]
    Async,
}

impl Model {
    /// Every model, in the order the course teaches them.
    pub const ALL: [Model; 6] = [
        Model::Iterative,
        Model::Thread,
        Model::Fork,
        Model::Poll,
        Model::Epoll,
        Model::Async,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Model::Iterative => "iterative",
            Model::Thread => "thread",
            Model::Fork => "fork",
            Model::Poll => "poll",
            Model::Epoll => "epoll",
            Model::Async => "async",
        }
    }
}

/// What the service does to each byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Upper-case ASCII letters, as the course's servers do.
    Upper,
    /// Echo unchanged.
    Plain,
}

impl Transform {
    /// `Plain` when `plain` is set, else `Upper`.
    pub fn from_plain(plain: bool) -> Self {
        if plain {
            Transform::Plain
        } else {
            Transform::Upper
        }
    }

    /// Applies the transform in place.
    pub fn apply(self, bytes: &mut [u8]) {
        if self == Transform::Upper {
            bytes.make_ascii_uppercase();
        }
    }
}

/// The echo service with its sockets bound, ready to run.
#[derive(Debug)]
pub struct Echo {
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
    unix: Option<(UnixListener, SocketFile, PathBuf)>,
    transform: Transform,
    max_connections: usize,
}

pub(crate) const TCP_ORIGIN: Origin = Origin {
    service: "echo",
    protocol: "tcp",
    flag: "sockit serve echo --tcp ADDR",
    config_key: "echo.port",
};
pub(crate) const UDP_ORIGIN: Origin = Origin {
    service: "echo",
    protocol: "udp",
    flag: "sockit serve echo --udp ADDR",
    config_key: "echo.port",
};
const UNIX_ORIGIN: Origin = Origin {
    service: "echo",
    protocol: "unix",
    flag: "sockit serve echo --unix PATH",
    config_key: "echo.unix_path",
};

impl Echo {
    /// Binds every socket the settings ask for.
    ///
    /// # Errors
    /// The first socket that cannot be bound; nothing stays bound then.
    pub async fn bind(settings: &EchoSettings) -> Result<Echo, BindError> {
        let tcp = match settings.tcp {
            Some(addr) => Some(endpoint::bind_tcp(addr, TCP_ORIGIN).await?),
            None => None,
        };
        let udp = match settings.udp {
            Some(addr) => Some(endpoint::bind_udp(addr, UDP_ORIGIN).await?),
            None => None,
        };
        let unix = match &settings.unix {
            Some(path) => {
                let (listener, file) = endpoint::bind_unix(path, UNIX_ORIGIN)?;
                Some((listener, file, path.clone()))
            }
            None => None,
        };
        Ok(Echo {
            tcp,
            udp,
            unix,
            transform: Transform::from_plain(settings.plain),
            max_connections: settings.max_connections,
        })
    }

    /// The bound sockets, for `sockit serve` to print.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        let mut push = |protocol, address: String| {
            endpoints.push(Endpoint {
                service: "echo",
                protocol,
                address,
            })
        };
        if let Some(addr) = self.tcp.as_ref().and_then(|l| l.local_addr().ok()) {
            push("tcp", addr.to_string());
        }
        if let Some(addr) = self.udp.as_ref().and_then(|s| s.local_addr().ok()) {
            push("udp", addr.to_string());
        }
        if let Some((_, _, path)) = &self.unix {
            push("unix", path.display().to_string());
        }
        endpoints
    }

    /// Serves until `shutdown` is requested. Sessions still running then are
    /// left to the shutdown's tracker; the Unix socket file is removed on return.
    pub async fn run(self, shutdown: Shutdown) {
        let Echo {
            tcp,
            udp,
            unix,
            transform,
            max_connections,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(listener) = tcp {
            tasks.spawn(async_tasks::run(
                listener,
                transform,
                max_connections,
                shutdown.clone(),
            ));
        }
        if let Some((listener, file, _)) = unix {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                async_tasks::run(listener, transform, max_connections, shutdown).await;
                drop(file);
            });
        }
        if let Some(socket) = udp {
            tasks.spawn(udp::run(socket, transform, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_matches_python_bytes_upper() {
        let mut bytes = b"hello, World! \xc3\xa9\xff\x00 z{`a".to_vec();
        Transform::Upper.apply(&mut bytes);
        assert_eq!(bytes, b"HELLO, WORLD! \xc3\xa9\xff\x00 Z{`A".to_vec());
    }

    #[test]
    fn plain_leaves_bytes_alone() {
        let mut bytes = b"MiXed".to_vec();
        Transform::Plain.apply(&mut bytes);
        assert_eq!(bytes, b"MiXed");
    }
}
