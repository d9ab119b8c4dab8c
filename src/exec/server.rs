//! One exec connection on the server: the handshake, the key check, then
//! commands one after another until the client leaves.
//!
//! A failed handshake or an unknown key is logged, counted against the
//! client's address in the throttle (later failures from that address wait
//! longer; nobody else does), and closes the connection: nothing runs before
//! the client has proven a listed key. While a command runs, one loop moves
//! the client's stdin to the process and its stdout and stderr back, each as
//! it comes; it never blocks on one direction while another could move, so a
//! process that writes before it reads cannot deadlock the session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::channel::{Channel, ChannelError, MAX_BACKLOG};
use super::keys::{AuthorizedKeys, KeyPair};
use super::policy::Policy;
use super::process::{self, Running};
use super::wire::{
    ClientMessage, Command, DataMessage, ExitStatus, Refusal, ServerMessage, Stream,
};
use crate::listener::{Counted, Outcome, Peer};
use crate::shutdown::Shutdown;
use crate::stats;
use crate::throttle::{Throttle, Verdict};

/// How long a client has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a timeout kills the group, how long its output may take to drain.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What every exec session shares.
#[derive(Debug)]
pub struct ExecContext {
    pub keys: KeyPair,
    /// Re-read at every connection, so removing a line revokes a key at once.
    pub authorized_keys: PathBuf,
    pub policy: Policy,
    pub throttle: Throttle,
    pub max_per_client: usize,
    pub max_commands: usize,
    /// Running commands per client key name.
    pub running: Mutex<HashMap<String, usize>>,
}

/// A slot in the command limits, given back when dropped.
struct Slot<'a> {
    context: &'a ExecContext,
    name: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut running = self.context.running.lock().expect("exec limits lock");
        if let Some(count) = running.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.name);
            }
        }
    }
}

impl ExecContext {
    /// Takes a command slot for `name`, or says which limit is reached.
    fn take_slot(&self, name: &str) -> Result<Slot<'_>, String> {
        let mut running = self.running.lock().expect("exec limits lock");
        let total: usize = running.values().sum();
        if total >= self.max_commands {
            return Err(format!(
                "the server is running its limit of {} commands",
                self.max_commands
            ));
        }
        let mine = running.entry(name.to_owned()).or_default();
        if *mine >= self.max_per_client {
            return Err(format!(
                "you are running your limit of {} commands at once",
                self.max_per_client
            ));
        }
        *mine += 1;
        Ok(Slot {
            context: self,
            name: name.to_owned(),
        })
    }
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("address locked out after repeated failures")]
    LockedOut,
    #[error("handshake took longer than {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    #[error("unknown client key {0}")]
    UnknownKey(String),
    #[error("authorized keys cannot be read: {0}")]
    AuthorizedKeys(String),
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// Serves one connection.
pub async fn session<S>(
    stream: S,
    peer: Peer,
    context: Arc<ExecContext>,
    shutdown: Shutdown,
) -> Outcome<SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (stream, traffic) = Counted::new(stream);
    let result = serve(stream, &peer, &context, &shutdown).await;
    Outcome {
        traffic: traffic.traffic(),
        result,
    }
}

async fn serve<S>(
    stream: S,
    peer: &Peer,
    context: &ExecContext,
    shutdown: &Shutdown,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let address: Option<IpAddr> = match peer {
        Peer::Tcp(addr) => Some(addr.ip()),
        Peer::Unix => None,
    };
    if let Some(ip) = address
        && let Verdict::LockedOut { remaining } = context.throttle.check(ip)
    {
        warn!(
            remaining_s = remaining.as_secs(),
            "exec: refused a locked-out address"
        );
        return Err(SessionError::LockedOut);
    }
    let failed = async |err: SessionError| {
        warn!(error = %err, "exec: authentication failed");
        stats::counter("sockit_auth_failures_total", &[("service", "exec")])
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(ip) = address {
            tokio::time::sleep(context.throttle.failure(ip)).await;
        }
        Err(err)
    };
    let mut channel =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, Channel::accept(stream, &context.keys)).await
        {
            Err(_) => return failed(SessionError::HandshakeTimeout).await,
            Ok(Err(err)) => return failed(err.into()).await,
            Ok(Ok(channel)) => channel,
        };
    let client_key = channel.remote();
    let authorized = match AuthorizedKeys::load(&context.authorized_keys) {
        Ok(keys) => keys,
        Err(err) => {
            let _ = send(
                &mut channel,
                refused(Refusal::UnknownKey, "the server cannot check keys now"),
            )
            .await;
            return failed(SessionError::AuthorizedKeys(err.to_string())).await;
        }
    };
    let Some(name) = authorized.name_of(&client_key).map(str::to_owned) else {
        let peer = address.map_or_else(|| "unix".to_owned(), |ip| ip.to_string());
        crate::throttle::log_failure("exec", peer, &client_key.fingerprint().to_string());
        let message = format!("this key ({}) is not authorized", client_key.fingerprint());
        let _ = send(&mut channel, refused(Refusal::UnknownKey, &message)).await;
        return failed(SessionError::UnknownKey(client_key.fingerprint())).await;
    };
    if let Some(ip) = address {
        context.throttle.success(ip);
    }
    info!(key = %name, "exec: client authenticated");
    send(&mut channel, ServerMessage::Welcome { name: name.clone() }).await?;
    loop {
        let message = tokio::select! {
            _ = shutdown.stopping() => return Ok(()),
            message = channel.recv() => message,
        };
        let message = match message {
            Err(ChannelError::Closed) => return Ok(()),
            other => ClientMessage::decode(other?).map_err(ChannelError::from)?,
        };
        match message {
            ClientMessage::Run(command) => {
                run(&mut channel, command, &name, peer, context).await?;
            }
            // Input that was in flight when the last command ended.
            ClientMessage::Stdin(_) | ClientMessage::StdinEnd | ClientMessage::Interrupt => {}
        }
    }
}

fn refused(why: Refusal, message: &str) -> ServerMessage {
    ServerMessage::Refused {
        why,
        message: message.to_owned(),
    }
}

async fn send<S>(channel: &mut Channel<S>, message: ServerMessage) -> Result<(), ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let body = message.encode()?;
    channel.send(&body).await
}

/// What one command moved, for the audit line.
#[derive(Debug, Default)]
struct Moved {
    stdin: u64,
    stdout: u64,
    stderr: u64,
}

/// Checks, runs and reports one command.
async fn run<S>(
    channel: &mut Channel<S>,
    command: Command,
    name: &str,
    peer: &Peer,
    context: &ExecContext,
) -> Result<(), ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let shown: Vec<String> = command
        .argv()
        .iter()
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let audit = |status: &str, moved: &Moved| {
        info!(
            target: "sockit::exec::audit",
            key = %name,
            %peer,
            argv = ?shown,
            status,
            duration_ms = started.elapsed().as_millis() as u64,
            stdin_bytes = moved.stdin,
            stdout_bytes = moved.stdout,
            stderr_bytes = moved.stderr,
            "command"
        );
        // "exited 1" counts as outcome "exited", code "1"; "refused (why)" as
        // outcome "refused" with no code.
        let mut words = status.split_whitespace();
        let outcome = words.next().unwrap_or(status);
        let code = words
            .next()
            .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or("");
        stats::counter(
            "sockit_exec_commands_total",
            &[("outcome", outcome), ("code", code)],
        )
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats::record(
            "exec",
            "command",
            format!("{name}@{peer}: {} → {status}", shown.join(" ")),
        );
    };
    let refuse = async |channel: &mut Channel<S>, why: Refusal, message: String| {
        audit(&format!("refused ({message})"), &Moved::default());
        send(channel, refused(why, &message)).await
    };
    let slot = match context.take_slot(name) {
        Ok(slot) => slot,
        Err(message) => return refuse(channel, Refusal::Busy, message).await,
    };
    let approved = match context.policy.approve(&command) {
        Ok(approved) => approved,
        Err((why, message)) => return refuse(channel, why, message).await,
    };
    let running = match process::spawn(approved) {
        Ok(running) => running,
        Err(err) => {
            let message = format!("{}: {err}", shown[0]);
            return refuse(channel, Refusal::CannotStart, message).await;
        }
    };
    let mut moved = Moved::default();
    let result = pump(channel, running, context.policy.timeout(), &mut moved).await;
    drop(slot);
    match result {
        Ok(status) => {
            audit(&describe(status), &moved);
            send(channel, ServerMessage::Exit(status)).await
        }
        Err(err) => {
            audit(&format!("killed (client gone: {err})"), &moved);
            Err(err)
        }
    }
}

/// The status the waiter reported; 255 if waiting failed (which would mean
/// the child was reaped elsewhere).
fn reaped(
    report: Result<
        std::io::Result<std::process::ExitStatus>,
        tokio::sync::oneshot::error::RecvError,
    >,
) -> std::process::ExitStatus {
    match report.expect("the waiter always reports") {
        Ok(status) => status,
        Err(err) => {
            warn!(error = %err, "exec: cannot wait for a command");
            std::process::ExitStatus::from_raw(255 << 8)
        }
    }
}

/// The audit log's words for an exit status: the outcome, then the code or
/// signal number (the metric's labels).
fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("exited {code}"),
        ExitStatus::Signaled(signal) => format!("signaled {signal}"),
        ExitStatus::TimedOut => "timed_out".to_owned(),
    }
}

/// Moves bytes between the client and the process until the process has
/// exited and its output is drained. Returns how it ended; an `Err` means
/// the client went away (the process group is killed).
async fn pump<S>(
    channel: &mut Channel<S>,
    running: Running,
    timeout: Duration,
    moved: &mut Moved,
) -> Result<ExitStatus, ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Running {
        mut stdin,
        mut stdout,
        mut stderr,
        group,
        mut exited,
    } = running;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut timed_out = false;
    let mut status: Option<std::process::ExitStatus> = None;
    let mut pending_input: Option<Bytes> = None;
    let mut out_buf = BytesMut::new();
    let mut err_buf = BytesMut::new();
    // Input from the client keeps being read (and dropped) after the
    // process's stdin is closed, so Ctrl-C and a dropped client are noticed.
    while status.is_none() || stdout.is_some() || stderr.is_some() {
        tokio::select! {
            // Output is queued, and written while the client's messages are
            // read: the session never stops reading because it is writing.
            event = channel.recv_or_drain(pending_input.is_none()),
                if pending_input.is_none() || channel.backlog() > 0 => {
                let message = match event {
                    Ok(None) => continue,
                    Ok(Some(body)) => ClientMessage::decode(body).map_err(ChannelError::from),
                    Err(err) => Err(err),
                };
                match message {
                    Ok(ClientMessage::Stdin(data)) if stdin.is_some() => {
                        moved.stdin += data.len() as u64;
                        pending_input = Some(data);
                    }
                    Ok(ClientMessage::Stdin(_)) => {}
                    Ok(ClientMessage::StdinEnd) => stdin = None,
                    Ok(ClientMessage::Interrupt) => group.kill(),
                    Ok(ClientMessage::Run(_)) => {
                        group.kill();
                        return Err(ChannelError::Wire(super::wire::WireError::Invalid(
                            "a command is already running",
                        )));
                    }
                    Err(err) => {
                        group.kill();
                        return Err(err);
                    }
                }
            }
            written = async { stdin.as_mut().expect("checked").write(pending_input.as_ref().expect("checked")).await },
                if pending_input.is_some() && stdin.is_some() => {
                match written {
                    Ok(n) => {
                        let data = pending_input.as_mut().expect("checked");
                        bytes::Buf::advance(data, n);
                        if data.is_empty() {
                            pending_input = None;
                        }
                    }
                    // The process closed its stdin: drop what it will not read.
                    Err(_) => {
                        stdin = None;
                        pending_input = None;
                    }
                }
            }
            // The expression is evaluated even when the branch is disabled:
            // the async block keeps the unwrap for when it is polled.
            read = async { DataMessage::read_async(Stream::Stdout, &mut out_buf, stdout.as_mut().expect("checked")).await }, if stdout.is_some() && channel.backlog() < MAX_BACKLOG => {
                match read {
                    Ok(Some(data)) => {
                        moved.stdout += data.data_len() as u64;
                        channel.queue(data.body())?;
                    }
                    Ok(None) | Err(_) => stdout = None,
                }
            }
            // The expression is evaluated even when the branch is disabled:
            // the async block keeps the unwrap for when it is polled.
            read = async { DataMessage::read_async(Stream::Stderr, &mut err_buf, stderr.as_mut().expect("checked")).await }, if stderr.is_some() && channel.backlog() < MAX_BACKLOG => {
                match read {
                    Ok(Some(data)) => {
                        moved.stderr += data.data_len() as u64;
                        channel.queue(data.body())?;
                    }
                    Ok(None) | Err(_) => stderr = None,
                }
            }
            result = &mut exited, if status.is_none() => status = Some(reaped(result)),
            () = &mut deadline => {
                if timed_out {
                    // Output still held open by a process that left the group.
                    break;
                }
                timed_out = true;
                group.kill();
                deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
        }
    }
    let status = match status {
        Some(status) => status,
        // Killed, but output is still held open: wait for the reaping only.
        None => reaped(exited.await),
    };
    Ok(if timed_out {
        ExitStatus::TimedOut
    } else {
        process::exit_status(status)
    })
}
