//! `sockit connect`: the client side, generic over the stream so TCP, Unix and
//! in-memory pipes share one implementation.
//!
//! Two ways of talking:
//! - [`pipe`], like `nc`: input streams to the socket and the socket to output,
//!   concurrently, until both directions end. At input EOF the socket's write side
//!   is half-closed, so the server sees the end of the request and can still answer.
//! - [`prompt`], the course's client for a terminal: a prompt, a line sent, the
//!   reply printed; `q` quits and empty lines are skipped.
//!
//! UDP has no stream: [`datagram_lines`] sends each input line as one datagram
//! and waits, up to a timeout, for its reply.

use std::io;
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::net::UdpSocket;

use crate::listener::Traffic;

/// What a client could not do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No reply came within the timeout.
    #[error("no reply within {}", humantime::format_duration(*.timeout))]
    NoReply { timeout: Duration },
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

/// Streams `input` to `stream` and `stream` to `output` until both directions end.
///
/// # Errors
/// The first I/O error in either direction.
pub async fn pipe<S, I, O>(stream: S, mut input: I, mut output: O) -> Result<Traffic, ConnectError>
where
    S: AsyncRead + AsyncWrite,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (mut from_server, mut to_server) = tokio::io::split(stream);
    let upload = async {
        let sent = tokio::io::copy(&mut input, &mut to_server).await?;
        to_server.shutdown().await?;
        Ok::<u64, io::Error>(sent)
    };
    let download = async {
        let received = tokio::io::copy(&mut from_server, &mut output).await?;
        output.flush().await?;
        Ok::<u64, io::Error>(received)
    };
    let (bytes_out, bytes_in) = tokio::try_join!(upload, download)?;
    Ok(Traffic {
        bytes_in,
        bytes_out,
    })
}

/// The prompt shown before each line.
pub const PROMPT: &str = ">> ";

/// How long, after the first bytes of a reply, more bytes may take to arrive and
/// still count as the same reply.
const REPLY_SETTLE: Duration = Duration::from_millis(100);

/// The course's interactive client over a stream.
///
/// Each non-empty line is sent with its newline; the reply is what arrives until
/// it ends in a newline or pauses for [`REPLY_SETTLE`]; `q` quits.
///
/// # Errors
/// [`ConnectError::NoReply`] is not an error here (a notice is printed); I/O
/// errors and a closed connection are.
pub async fn prompt<S, I, O>(
    mut stream: S,
    input: I,
    mut output: O,
    reply_timeout: Duration,
) -> Result<(), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    let mut reply = vec![0u8; 64 * 1024];
    loop {
        output.write_all(PROMPT.as_bytes()).await?;
        output.flush().await?;
        let Some(line) = lines.next_line().await? else {
            return Ok(());
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "q" {
            return Ok(());
        }
        stream.write_all(format!("{line}\n").as_bytes()).await?;
        let mut got_any = false;
        loop {
            let wait = if got_any { REPLY_SETTLE } else { reply_timeout };
            match tokio::time::timeout(wait, stream.read(&mut reply)).await {
                Err(_) if got_any => break,
                Err(_) => {
                    output
                        .write_all(b"(no reply yet; it will show after your next line)\n")
                        .await?;
                    break;
                }
                Ok(read) => {
                    let read = read?;
                    if read == 0 {
                        output.flush().await?;
                        return Err(ConnectError::Closed);
                    }
                    got_any = true;
                    output.write_all(&reply[..read]).await?;
                    if reply[read - 1] == b'\n' {
                        break;
                    }
                }
            }
        }
        output.flush().await?;
    }
}

/// Sends each line of `input` as one datagram to the connected `socket`'s peer and writes
/// each reply as a line to `output`.
///
/// With `interactive`, a prompt is shown, empty lines are skipped, `q` quits and
/// a missing reply is reported without ending the session; otherwise every line
/// is sent and a missing reply ends it with [`ConnectError::NoReply`] or
/// [`ConnectError::PortUnreachable`].
///
/// # Errors
/// As above, and any socket or output error.
pub async fn datagram_lines<I, O>(
    socket: &UdpSocket,
    input: I,
    mut output: O,
    reply_timeout: Duration,
    interactive: bool,
) -> Result<(), ConnectError>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    let mut reply = vec![0u8; 65_536];
    loop {
        if interactive {
            output.write_all(PROMPT.as_bytes()).await?;
            output.flush().await?;
        }
        let Some(line) = lines.next_line().await? else {
            return Ok(());
        };
        if interactive {
            match line.trim() {
                "" => continue,
                "q" => return Ok(()),
                _ => {}
            }
        }
        let outcome = match socket.send(line.as_bytes()).await {
            Ok(_) => tokio::time::timeout(reply_timeout, socket.recv(&mut reply)).await,
            Err(err) => Ok(Err(err)),
        };
        let err = match outcome {
            Ok(Ok(len)) => {
                output.write_all(&reply[..len]).await?;
                output.write_all(b"\n").await?;
                output.flush().await?;
                continue;
            }
            Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => {
                ConnectError::PortUnreachable
            }
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => ConnectError::NoReply {
                timeout: reply_timeout,
            },
        };
        if !interactive {
            return Err(err);
        }
        output.write_all(format!("{err}\n").as_bytes()).await?;
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
        let traffic = pipe(client, &b"abc\ndef\n"[..], &mut output).await.unwrap();
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

    #[tokio::test]
    async fn prompt_skips_empty_lines_and_stops_at_q() {
        let (client, server) = tokio::io::duplex(1024);
        tokio::spawn(crate::echo::async_tasks::session(
            server,
            crate::echo::Transform::Upper,
            crate::shutdown::Shutdown::new(Duration::from_secs(1)),
        ));
        let mut output = Vec::new();
        let input = &b"hello\n\n  \nworld\nq\nnever sent\n"[..];
        prompt(client, input, &mut output, Duration::from_secs(5))
            .await
            .unwrap();
        let output = String::from_utf8(output).unwrap();
        assert_eq!(output, ">> HELLO\n>> >> >> WORLD\n>> ");
    }
}
