//! `sockit connect`: the client side, generic over the stream so TCP, Unix and
//! in-memory pipes share one implementation.
//!
//! Two ways of talking, both reading the socket and the input at once, so a
//! server that speaks first (the bot, FTP, SMTP) is shown as it speaks:
//! - [`pipe`], like `nc`: input streams to the socket and the socket to output
//!   until the socket ends. At input EOF the socket's write side is half-closed,
//!   so the server sees the end of the request and can still answer.
//! - [`prompt`], the course's client for a terminal: a prompt, each line sent,
//!   everything the server sends printed as it arrives; `q` quits and empty
//!   lines are skipped.
//!
//! UDP has no stream: [`datagram_pipe`] sends each input line as one datagram
//! and prints the replies as they come; [`datagram_prompt`] is the terminal's
//! line-and-reply loop.
//!
//! Every mode takes an idle limit (`-w`): with no traffic either way for that
//! long, it ends with [`ConnectError::Idle`].

use std::cell::Cell;
use std::io;
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::listener::Traffic;

/// What a client could not do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No reply came within the timeout.
    #[error("no reply within {}", humantime::format_duration(*.timeout))]
    NoReply { timeout: Duration },
    /// Nothing went either way for the idle limit.
    #[error("no traffic for {} (--wait)", humantime::format_duration(*.limit))]
    Idle { limit: Duration },
    /// The peer's host answered that nothing listens on that UDP port.
    #[error("nothing listens on that port (ICMP port unreachable)")]
    PortUnreachable,
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// A socket or terminal operation failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// When something last happened, and a wait for a stretch without it.
struct Activity {
    last: Cell<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            last: Cell::new(Instant::now()),
        }
    }

    fn touch(&self) {
        self.last.set(Instant::now());
    }

    /// Returns once nothing has happened for `quiet`; never with `None`.
    async fn quiet_for(&self, quiet: Option<Duration>) {
        let Some(quiet) = quiet else {
            return std::future::pending().await;
        };
        loop {
            let deadline = self.last.get() + quiet;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// [`Activity::quiet_for`] the idle limit, as the error it ends a session with.
    async fn idle(&self, limit: Option<Duration>) -> ConnectError {
        self.quiet_for(limit).await;
        ConnectError::Idle {
            limit: limit.expect("quiet_for(None) never returns"),
        }
    }
}

/// Streams `input` to `stream` and `stream` to `output` until the stream ends
/// (input still unread then is left for the next caller), or until `idle`
/// passes without traffic.
///
/// # Errors
/// [`ConnectError::Idle`], or the first I/O error in either direction.
pub async fn pipe<S, I, O>(
    stream: S,
    mut input: I,
    mut output: O,
    idle: Option<Duration>,
) -> Result<Traffic, ConnectError>
where
    S: AsyncRead + AsyncWrite,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let bytes_out = Cell::new(0u64);
    let (mut from_server, mut to_server) = tokio::io::split(stream);
    let upload = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = input.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            activity.touch();
            to_server.write_all(&buffer[..read]).await?;
            bytes_out.set(bytes_out.get() + read as u64);
        }
        to_server.shutdown().await
    };
    let download = async {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut received = 0u64;
        loop {
            let read = from_server.read(&mut buffer).await?;
            if read == 0 {
                output.flush().await?;
                return Ok::<u64, io::Error>(received);
            }
            activity.touch();
            output.write_all(&buffer[..read]).await?;
            output.flush().await?;
            received += read as u64;
        }
    };
    tokio::pin!(upload, download);
    let mut uploading = true;
    loop {
        tokio::select! {
            sent = &mut upload, if uploading => {
                sent?;
                uploading = false;
            }
            received = &mut download => {
                return Ok(Traffic {
                    bytes_in: received?,
                    bytes_out: bytes_out.get(),
                });
            }
            err = activity.idle(idle) => return Err(err),
        }
    }
}

/// The prompt shown before each line.
pub const PROMPT: &str = ">> ";

/// How long the server may pause and still be in the middle of what it says:
/// the prompt returns after this much quiet.
const REPLY_SETTLE: Duration = Duration::from_millis(100);

/// The course's interactive client over a stream.
///
/// Each non-empty line is sent with its newline; whatever the server sends is
/// printed as it arrives, and the prompt returns once it pauses for
/// [`REPLY_SETTLE`] at the end of a line, or `reply_timeout` after a line that
/// got no answer; `q` or the end of input quits.
///
/// # Errors
/// A closed connection, [`ConnectError::Idle`] and I/O errors.
pub async fn prompt<S, I, O>(
    stream: S,
    input: I,
    mut output: O,
    reply_timeout: Duration,
    idle: Option<Duration>,
) -> Result<(), ConnectError>
where
    S: AsyncRead + AsyncWrite,
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let (mut from_server, mut to_server) = tokio::io::split(stream);
    let mut lines = input.lines();
    let mut reply = vec![0u8; 64 * 1024];
    // The server's output ended a line (its own prompt, without one, needs no other).
    let mut at_line_start = true;
    let mut prompt_at = None;
    output.write_all(PROMPT.as_bytes()).await?;
    output.flush().await?;
    loop {
        let show_prompt = async move {
            match prompt_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else {
                    return Ok(());
                };
                activity.touch();
                match line.trim() {
                    "q" => return Ok(()),
                    "" => {
                        output.write_all(PROMPT.as_bytes()).await?;
                        prompt_at = None;
                    }
                    line => {
                        to_server.write_all(format!("{line}\n").as_bytes()).await?;
                        at_line_start = true;
                        prompt_at = Some(Instant::now() + reply_timeout);
                    }
                }
            }
            read = from_server.read(&mut reply) => {
                let read = read?;
                if read == 0 {
                    output.flush().await?;
                    return Err(ConnectError::Closed);
                }
                activity.touch();
                output.write_all(&reply[..read]).await?;
                at_line_start = reply[read - 1] == b'\n';
                prompt_at = Some(Instant::now() + REPLY_SETTLE);
            }
            () = show_prompt => {
                if at_line_start {
                    output.write_all(PROMPT.as_bytes()).await?;
                }
                prompt_at = None;
            }
            err = activity.idle(idle) => return Err(err),
        }
        output.flush().await?;
    }
}

/// The error a connected UDP socket's failure means: a refusal is the ICMP
/// "port unreachable" an earlier datagram drew.
fn datagram_error(err: io::Error) -> ConnectError {
    if err.kind() == io::ErrorKind::ConnectionRefused {
        ConnectError::PortUnreachable
    } else {
        err.into()
    }
}

/// Sends each line of `input`, newline included, as one datagram to the
/// connected `socket`'s peer, and writes each reply to `output` exactly as
/// received, as it comes. After the end of input it waits until `linger`
/// passes without a reply.
///
/// # Errors
/// [`ConnectError::NoReply`] when no reply came at all,
/// [`ConnectError::PortUnreachable`], [`ConnectError::Idle`] and I/O errors.
pub async fn datagram_pipe<I, O>(
    socket: &UdpSocket,
    mut input: I,
    mut output: O,
    linger: Duration,
    idle: Option<Duration>,
) -> Result<(), ConnectError>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let replies = Activity::new();
    let mut replied = false;
    let send = async {
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line).await? == 0 {
                return Ok::<(), ConnectError>(());
            }
            activity.touch();
            socket.send(&line).await.map_err(datagram_error)?;
        }
    };
    tokio::pin!(send);
    let mut sending = true;
    let mut reply = vec![0u8; 65_536];
    let replies = &replies;
    loop {
        let lingered = async move {
            if sending {
                std::future::pending().await
            } else {
                replies.quiet_for(Some(linger)).await;
            }
        };
        tokio::select! {
            sent = &mut send, if sending => {
                sent?;
                sending = false;
                replies.touch();
            }
            len = socket.recv(&mut reply) => {
                let len = len.map_err(datagram_error)?;
                activity.touch();
                replies.touch();
                replied = true;
                output.write_all(&reply[..len]).await?;
                output.flush().await?;
            }
            () = lingered => {
                return if replied {
                    Ok(())
                } else {
                    Err(ConnectError::NoReply { timeout: linger })
                };
            }
            err = activity.idle(idle) => return Err(err),
        }
    }
}

/// The terminal's UDP loop: a prompt, each non-empty line sent as one datagram
/// with its newline, its reply (or a notice that none came within
/// `reply_timeout`) printed; `q` quits.
///
/// # Errors
/// [`ConnectError::Idle`] and socket or output errors.
pub async fn datagram_prompt<I, O>(
    socket: &UdpSocket,
    input: I,
    mut output: O,
    reply_timeout: Duration,
    idle: Option<Duration>,
) -> Result<(), ConnectError>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut lines = input.lines();
    let mut reply = vec![0u8; 65_536];
    loop {
        output.write_all(PROMPT.as_bytes()).await?;
        output.flush().await?;
        let line = tokio::select! {
            line = lines.next_line() => line?,
            err = activity.idle(idle) => return Err(err),
        };
        let Some(line) = line else {
            return Ok(());
        };
        activity.touch();
        let line = match line.trim() {
            "" => continue,
            "q" => return Ok(()),
            line => format!("{line}\n"),
        };
        let outcome = match socket.send(line.as_bytes()).await {
            Ok(_) => tokio::time::timeout(reply_timeout, socket.recv(&mut reply)).await,
            Err(err) => Ok(Err(err)),
        };
        match outcome {
            Ok(Ok(len)) => {
                activity.touch();
                output.write_all(&reply[..len]).await?;
                if !reply[..len].ends_with(b"\n") {
                    output.write_all(b"\n").await?;
                }
            }
            Ok(Err(err)) => match datagram_error(err) {
                ConnectError::Io(err) => return Err(err.into()),
                notice => output.write_all(format!("{notice}\n").as_bytes()).await?,
            },
            Err(_) => {
                let notice = ConnectError::NoReply {
                    timeout: reply_timeout,
                };
                output.write_all(format!("{notice}\n").as_bytes()).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipe_half_closes_and_collects_the_whole_reply() {
        let (client, mut server) = tokio::io::duplex(64);
        let server = tokio::spawn(async move {
            let mut request = Vec::new();
            server.read_to_end(&mut request).await.unwrap();
            request.make_ascii_uppercase();
            server.write_all(&request).await.unwrap();
        });
        let mut output = Vec::new();
        let traffic = pipe(client, &b"abc\ndef\n"[..], &mut output, None)
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(output, b"ABC\nDEF\n");
        assert_eq!(
            traffic,
            Traffic {
                bytes_in: 8,
                bytes_out: 8
            }
        );
    }

    /// Reads `output` until what it has read ends with `expected`.
    async fn read_until_ends_with(
        output: &mut tokio::io::DuplexStream,
        seen: &mut Vec<u8>,
        expected: &str,
    ) {
        let mut buffer = [0u8; 1024];
        let read_all = async {
            while !seen.ends_with(expected.as_bytes()) {
                let read = output.read(&mut buffer).await.unwrap();
                assert_ne!(read, 0, "output ended: {:?}", String::from_utf8_lossy(seen));
                seen.extend_from_slice(&buffer[..read]);
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read_all)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {expected:?} at the end of {:?}",
                    String::from_utf8_lossy(seen)
                )
            });
    }

    #[tokio::test]
    async fn prompt_skips_empty_lines_and_stops_at_q() {
        let (client, server) = tokio::io::duplex(1024);
        tokio::spawn(crate::echo::async_tasks::session(
            server,
            crate::echo::Transform::Upper,
            crate::shutdown::Shutdown::new(Duration::from_secs(1)),
        ));
        let (mut typing, input) = tokio::io::duplex(1024);
        let (output, mut screen) = tokio::io::duplex(1024);
        let client = prompt(
            client,
            tokio::io::BufReader::new(input),
            output,
            Duration::from_secs(5),
            None,
        );
        let mut seen = Vec::new();
        let user = async {
            read_until_ends_with(&mut screen, &mut seen, ">> ").await;
            for (line, shows) in [
                ("hello\n", ">> HELLO\n>> "),
                ("\n", ">> HELLO\n>> >> "),
                ("  \n", ">> HELLO\n>> >> >> "),
                ("world\n", ">> HELLO\n>> >> >> WORLD\n>> "),
            ] {
                typing.write_all(line.as_bytes()).await.unwrap();
                read_until_ends_with(&mut screen, &mut seen, shows).await;
            }
            typing.write_all(b"q\nnever sent\n").await.unwrap();
        };
        let (result, ()) = tokio::join!(client, user);
        result.unwrap();
        assert_eq!(seen, b">> HELLO\n>> >> >> WORLD\n>> ");
    }

    #[tokio::test]
    async fn prompt_shows_what_the_server_says_first_before_any_input() {
        let (client, mut server) = tokio::io::duplex(1024);
        server.write_all(b"Welcome\nChoose: ").await.unwrap();
        let (_typing, input) = tokio::io::duplex(1024);
        let (output, mut screen) = tokio::io::duplex(1024);
        let client = prompt(
            client,
            tokio::io::BufReader::new(input),
            output,
            Duration::from_secs(5),
            None,
        );
        let mut seen = Vec::new();
        tokio::select! {
            result = client => panic!("the client ended: {result:?}"),
            () = read_until_ends_with(&mut screen, &mut seen, ">> Welcome\nChoose: ") => {}
        }
    }

    #[tokio::test]
    async fn pipe_ends_after_the_idle_limit_without_traffic() {
        let (client, _silent_server) = tokio::io::duplex(64);
        let (_typing, input) = tokio::io::duplex(64);
        let started = Instant::now();
        let result = pipe(
            client,
            input,
            tokio::io::sink(),
            Some(Duration::from_millis(200)),
        )
        .await;
        assert!(
            matches!(result, Err(ConnectError::Idle { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
