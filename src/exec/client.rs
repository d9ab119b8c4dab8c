//! The client side of exec: reach the server, check its key, run commands.
//!
//! The server's key is checked before the client reveals its own: against
//! `--server-key` when given, else against `known_hosts`, pinning it there on
//! first use (and saying so, with its fingerprint, as ssh does). A key that
//! differs from the pinned one is refused with a warning and nothing is sent.

use std::fmt;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;

use super::channel::{Channel, ChannelError};
use super::keys::{HostCheck, KeyError, KeyPair, KnownHosts, PublicKey};
use super::wire::{ClientMessage, Command, DataMessage, ExitStatus, Refusal, ServerMessage};
use crate::address::{AddressError, HostPort};

/// The exec port when an address has none.
pub const DEFAULT_PORT: u16 = 9999;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`, `host` (port 9999), `[v6]:port` or a bare IP.
    Tcp { host: String, port: u16 },
    /// A Unix socket path (anything with a `/`).
    Unix(PathBuf),
}

impl Target {
    /// Parses an address as the command line takes it (see [`HostPort::parse`];
    /// anything with a `/` is a Unix socket path).
    ///
    /// # Errors
    /// An address [`HostPort::parse`] rejects.
    pub fn parse(text: &str) -> Result<Target, AddressError> {
        if text.contains('/') {
            return Ok(Target::Unix(PathBuf::from(text)));
        }
        let HostPort { host, port } = HostPort::parse(text, Some(DEFAULT_PORT))?;
        Ok(Target::Tcp { host, port })
    }
}

impl fmt::Display for Target {
    /// The form `known_hosts` records: `host:port`, `[v6]:port`, or the path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How the client decides whether the server's key is the right one.
#[derive(Debug)]
pub enum ServerTrust {
    /// Exactly this key (`--server-key`).
    Key(PublicKey),
    /// Whatever `known_hosts` has pinned; pin on first use.
    KnownHosts(KnownHosts),
}

/// Why a command could not be run or finished.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the server key of {target} has changed: it is now {presented}, {pinned_where} has {pinned}; someone may be intercepting the connection, so nothing was sent"
    )]
    ServerKeyChanged {
        target: String,
        presented: String,
        pinned: String,
        pinned_where: String,
    },
    #[error(
        "the server key of {target} ({presented}) is not the expected one ({expected}); nothing was sent"
    )]
    WrongServerKey {
        target: String,
        presented: String,
        expected: String,
    },
    #[error("server rejected this key ({0})")]
    Rejected(String),
    #[error("server refused the command: {message}")]
    Refused { why: Refusal, message: String },
    #[error("{0}")]
    Channel(#[from] ChannelError),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
}

impl ClientError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::ServerKeyChanged { pinned_where, .. } => Some(format!(
                "if the server's key was replaced on purpose, delete {pinned_where} and connect again"
            )),
            ClientError::Rejected(_) => Some(
                "add this client's public key (`sockit keygen --show`) to the server's authorized_keys"
                    .to_owned(),
            ),
            ClientError::Keys(err) => err.hint(),
            _ => None,
        }
    }

    /// The exit code `sockit exec` ends with: 127 and 126 as a shell reports
    /// a missing or refused program, 255 for the connection's own failures
    /// (as ssh does).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused {
                why: Refusal::NotFound,
                ..
            } => 127,
            ClientError::Refused {
                why: Refusal::NotAllowed | Refusal::CannotStart,
                ..
            } => 126,
            _ => 255,
        }
    }
}

/// Something that is both a reader and a writer, boxed: TCP or Unix.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// An authenticated session with a server.
pub struct Session {
    channel: Channel<Box<dyn Stream>>,
    welcomed: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("channel", &self.channel)
            .finish()
    }
}

/// Input for a command: stdin messages, then the end (the channel closes).
pub type Input = mpsc::Receiver<DataMessage>;

impl Session {
    /// Connects and runs the handshake, checking the server's key.
    /// Whether the server accepts the client's key is learnt with the first
    /// answer ([`Session::welcome`] or [`Session::run`]).
    ///
    /// # Errors
    /// No connection, a failed handshake, or a server key that is refused.
    pub async fn connect(
        target: &Target,
        keys: &KeyPair,
        mut trust: ServerTrust,
    ) -> Result<(Session, Option<String>), ClientError> {
        let connect_error = |source| ClientError::Connect {
            target: target.to_string(),
            source,
        };
        let stream: Box<dyn Stream> = match target {
            Target::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect_error)?;
                stream.set_nodelay(true).map_err(connect_error)?;
                Box::new(stream)
            }
            Target::Unix(path) => Box::new(UnixStream::connect(path).await.map_err(connect_error)?),
        };
        let label = target.to_string();
        let mut verdict: Result<Option<String>, ClientError> = Ok(None);
        let channel = Channel::connect(stream, keys, |presented| {
            verdict = check_server(&label, presented, &mut trust);
            verdict.as_ref().map(drop).map_err(ToString::to_string)
        })
        .await;
        let notice = verdict?;
        Ok((
            Session {
                channel: channel?,
                welcomed: None,
            },
            notice,
        ))
    }

    /// Waits for the server to accept this client's key; returns the name
    /// the server knows it by.
    ///
    /// # Errors
    /// The server rejected the key or the connection failed.
    pub async fn welcome(&mut self) -> Result<String, ClientError> {
        if let Some(name) = &self.welcomed {
            return Ok(name.clone());
        }
        self.channel.flush().await?;
        let message = self.recv().await?;
        self.expect_welcome(message)
    }

    fn expect_welcome(&mut self, message: ServerMessage) -> Result<String, ClientError> {
        match message {
            ServerMessage::Welcome { name } => {
                self.welcomed = Some(name.clone());
                Ok(name)
            }
            ServerMessage::Refused {
                why: Refusal::UnknownKey,
                message,
            } => Err(ClientError::Rejected(message)),
            other => Err(ClientError::Protocol(format!(
                "expected a welcome, got {other:?}"
            ))),
        }
    }

    async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            if let Some(message) = self.recv_or_drain().await? {
                return Ok(message);
            }
        }
    }

    /// The next message, writing queued input meanwhile; `None` once the
    /// queue is written out.
    async fn recv_or_drain(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        let body = match self.channel.recv_or_drain(true).await {
            Err(ChannelError::Closed) if self.welcomed.is_none() => {
                return Err(ClientError::Rejected(
                    "the server closed the connection after the handshake".to_owned(),
                ));
            }
            other => other?,
        };
        body.map(|body| ServerMessage::decode(body).map_err(|err| ClientError::Channel(err.into())))
            .transpose()
    }

    fn queue(&mut self, message: ClientMessage) -> Result<(), ClientError> {
        let body = message
            .encode()
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        self.channel.queue(&body).map_err(ClientError::from)
    }

    async fn send(&mut self, message: ClientMessage) -> Result<(), ClientError> {
        let body = message
            .encode()
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        self.channel.send(&body).await.map_err(ClientError::from)
    }

    /// Runs one command: `input` feeds its stdin (the channel closing is
    /// EOF), its stdout and stderr go to `stdout` and `stderr` as they
    /// arrive, and each value from `interrupts` kills it on the server.
    ///
    /// # Errors
    /// The command was refused, or the connection failed.
    pub async fn run(
        &mut self,
        command: Command,
        mut input: Input,
        stdout: &mut (impl AsyncWrite + Unpin),
        stderr: &mut (impl AsyncWrite + Unpin),
        interrupts: &mut mpsc::Receiver<()>,
    ) -> Result<ExitStatus, ClientError> {
        self.send(ClientMessage::Run(command)).await?;
        let mut input_open = true;
        let mut interrupts_open = true;
        loop {
            // Input is queued, not awaited: the loop keeps reading output
            // while it is written (see `Channel::recv_or_drain`).
            let room = self.channel.backlog() < super::channel::MAX_BACKLOG;
            tokio::select! {
                message = self.recv_or_drain() => {
                    let Some(message) = message? else { continue };
                    match message {
                        message @ (ServerMessage::Welcome { .. } | ServerMessage::Refused { why: Refusal::UnknownKey, .. })
                            if self.welcomed.is_none() => {
                            self.expect_welcome(message)?;
                        }
                        ServerMessage::Stdout(data) => {
                            stdout.write_all(&data).await.map_err(ClientError::Output)?;
                            stdout.flush().await.map_err(ClientError::Output)?;
                        }
                        ServerMessage::Stderr(data) => {
                            stderr.write_all(&data).await.map_err(ClientError::Output)?;
                            stderr.flush().await.map_err(ClientError::Output)?;
                        }
                        ServerMessage::Exit(status) => return Ok(status),
                        ServerMessage::Refused { why, message } => {
                            return Err(ClientError::Refused { why, message });
                        }
                        ServerMessage::Welcome { .. } => {
                            return Err(ClientError::Protocol("a second welcome".to_owned()));
                        }
                    }
                }
                chunk = input.recv(), if input_open && room => {
                    match chunk {
                        Some(data) => self.channel.queue(data.body())?,
                        None => {
                            input_open = false;
                            self.queue(ClientMessage::StdinEnd)?;
                        }
                    }
                }
                interrupt = interrupts.recv(), if interrupts_open => {
                    match interrupt {
                        Some(()) => self.queue(ClientMessage::Interrupt)?,
                        None => interrupts_open = false,
                    }
                }
            }
        }
    }
}

/// Judges the server's key; on first use of `known_hosts`, pins it and
/// returns a notice for the user.
fn check_server(
    target: &str,
    presented: &PublicKey,
    trust: &mut ServerTrust,
) -> Result<Option<String>, ClientError> {
    match trust {
        ServerTrust::Key(expected) if expected == presented => Ok(None),
        ServerTrust::Key(expected) => Err(ClientError::WrongServerKey {
            target: target.to_owned(),
            presented: presented.fingerprint(),
            expected: expected.fingerprint(),
        }),
        ServerTrust::KnownHosts(hosts) => match hosts.check(target, presented) {
            HostCheck::Known => Ok(None),
            HostCheck::Unknown => {
                hosts.pin(target, *presented)?;
                Ok(Some(format!(
                    "pinned the server key of {target} ({}) in {}",
                    presented.fingerprint(),
                    hosts.path().display()
                )))
            }
            HostCheck::Changed { pinned, line } => Err(ClientError::ServerKeyChanged {
                target: target.to_owned(),
                presented: presented.fingerprint(),
                pinned: pinned.fingerprint(),
                pinned_where: format!("line {line} of {}", hosts.path().display()),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_people_write_them() {
        let tcp = |host: &str, port| Target::Tcp {
            host: host.to_owned(),
            port,
        };
        assert_eq!(Target::parse("127.0.0.1:2000"), Ok(tcp("127.0.0.1", 2000)));
        assert_eq!(Target::parse("127.0.0.1"), Ok(tcp("127.0.0.1", 9999)));
        assert_eq!(Target::parse("::1"), Ok(tcp("::1", 9999)));
        assert_eq!(Target::parse("[::1]:7"), Ok(tcp("::1", 7)));
        assert_eq!(Target::parse("[::1]"), Ok(tcp("::1", 9999)));
        assert_eq!(Target::parse("localhost"), Ok(tcp("localhost", 9999)));
        assert_eq!(
            Target::parse("./s.sock"),
            Ok(Target::Unix("./s.sock".into()))
        );
        assert!(Target::parse("h:x").is_err());
        assert_eq!(Target::parse("[::1]:7").unwrap().to_string(), "[::1]:7");
    }
}
