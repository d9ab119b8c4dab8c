//! Binding and running the teaching models (everything but async) for
//! `sockit serve echo --model`. They run on plain threads, or processes for
//! `fork`, with no async runtime anywhere in the process.

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use super::{
    Model, TCP_ORIGIN, Transform, UDP_ORIGIN, blocking, epoll, fork, iterative, poll, threads,
};
use crate::config::EchoSettings;
use crate::endpoint::{self, BindError, Endpoint};

/// A model cannot be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("the {model} model {reason}")]
    Unsupported {
        model: &'static str,
        reason: &'static str,
    },
}

impl ModelError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            ModelError::Bind(err) => err.hint(),
            ModelError::Unsupported { .. } => None,
        }
    }
}

/// A teaching model with its sockets bound.
#[derive(Debug)]
pub struct ModelServer {
    model: Model,
    tcp: Vec<TcpListener>,
    udp: Option<UdpSocket>,
    transform: Transform,
    max_threads: usize,
}

impl ModelServer {
    /// Binds the TCP (and optional UDP) sockets `settings` ask for; `workers`
    /// is the number of epoll loops, `max_threads` the thread model's cap.
    ///
    /// # Errors
    /// A socket cannot be bound, or the model does not support the request
    /// (async is not a teaching model; Unix sockets; UDP with fork).
    pub fn bind(
        model: Model,
        settings: &EchoSettings,
        workers: usize,
        max_threads: usize,
    ) -> Result<ModelServer, ModelError> {
        let unsupported = |reason| ModelError::Unsupported {
            model: model.name(),
            reason,
        };
        if model == Model::Async {
            return Err(unsupported("runs on the async runtime, not here"));
        }
        if settings.unix.is_some() {
            return Err(unsupported(
                "serves TCP and UDP only; use --model async for a Unix socket",
            ));
        }
        if settings.udp.is_some() && model == Model::Fork {
            return Err(unsupported(
                "serves TCP only: a UDP thread would exist when it forks; use --udp with another model",
            ));
        }
        let Some(addr) = settings.tcp else {
            return Err(unsupported("needs a TCP address (--tcp ADDR)"));
        };
        let tcp = if model == Model::Epoll {
            endpoint::std_tcp_listeners(addr, workers)
                .map_err(BindError::of(TCP_ORIGIN, addr.to_string()))?
        } else {
            let listener = endpoint::std_tcp_listener(addr, false);
            vec![listener.map_err(BindError::of(TCP_ORIGIN, addr.to_string()))?]
        };
        let udp = match settings.udp {
            Some(addr) => {
                Some(UdpSocket::bind(addr).map_err(BindError::of(UDP_ORIGIN, addr.to_string()))?)
            }
            None => None,
        };
        Ok(ModelServer {
            model,
            tcp,
            udp,
            transform: Transform::from_plain(settings.plain),
            max_threads,
        })
    }

    /// The bound sockets, for `sockit serve` to print.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let tcp = self
            .tcp
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|addr| Endpoint {
                service: "echo",
                protocol: "tcp",
                address: addr.to_string(),
            });
        let udp = self
            .udp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|addr| Endpoint {
                service: "echo",
                protocol: "udp",
                address: addr.to_string(),
            });
        tcp.into_iter().chain(udp).collect()
    }

    /// Serves until the process is stopped. The iterative and thread models
    /// drain on SIGTERM or SIGINT (see [`blocking::Drain`]), waiting up to
    /// `grace` for their sessions, and then return.
    ///
    /// # Errors
    /// The model's loop fails to start or dies.
    pub fn run(self, grace: Duration) -> std::io::Result<()> {
        let ModelServer {
            model,
            tcp,
            udp,
            transform,
            max_threads,
        } = self;
        // Before any thread starts: it blocks the signals it waits for.
        let drain = match model {
            Model::Iterative | Model::Thread => Some(blocking::Drain::on_signals(&tcp[0])?),
            _ => None,
        };
        if let Some(socket) = udp {
            std::thread::Builder::new()
                .name("echo-udp".to_owned())
                .spawn(move || blocking::serve_udp(socket, transform))?;
        }
        let mut listeners = tcp.into_iter();
        let first = listeners.next().expect("bind made at least one listener");
        match model {
            Model::Iterative => {
                iterative::run(&first, transform, drain.as_ref().expect("set above"));
            }
            Model::Thread => threads::run(
                &first,
                transform,
                max_threads,
                drain.as_ref().expect("set above"),
                grace,
            ),
            Model::Fork => fork::run(first, transform)?,
            Model::Poll => poll::run(first, transform)?,
            Model::Epoll => {
                let workers: Vec<_> = listeners
                    .map(|listener| {
                        std::thread::Builder::new()
                            .name("echo-epoll".to_owned())
                            .spawn(move || epoll::run(listener, transform))
                    })
                    .collect::<Result<_, _>>()?;
                epoll::run(first, transform)?;
                drop(workers);
            }
            Model::Async => unreachable!("refused in bind"),
        }
        Ok(())
    }
}
