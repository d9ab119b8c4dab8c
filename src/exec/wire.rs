//! The messages of an exec session, as they travel inside Noise transport
//! messages (see `docs/protocol.md`).
//!
//! Every message is one tag byte and a body; one message fills one Noise
//! transport message, so a body is at most [`MAX_BODY`] bytes and output or
//! input larger than that is sent as several `Stdout`/`Stdin` messages.
//! Decoding is pure and total: any byte string decodes to a message or to a
//! [`WireError`] that says what was wrong, never to a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest Noise message (the Noise specification's limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;

/// Bytes the cipher's authentication tag adds to each transport message.
pub const TAG_LEN: usize = 16;

/// The largest message body: a Noise message minus the tag and the tag byte.
pub const MAX_BODY: usize = MAX_NOISE_MESSAGE - TAG_LEN - 1;

/// How the server should run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run this argv directly: the first element is the program.
    Argv(Vec<Vec<u8>>),
    /// Run this string with `sh -c`, if the server allows a shell.
    Shell(Vec<u8>),
}

impl Command {
    /// The argv it runs as: its own, or `sh -c LINE`.
    pub fn argv(&self) -> Vec<Vec<u8>> {
        match self {
            Command::Argv(argv) => argv.clone(),
            Command::Shell(line) => vec![b"sh".to_vec(), b"-c".to_vec(), line.clone()],
        }
    }
}

/// Why the server did not run a command, or ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's key is not in the server's authorized keys.
    UnknownKey,
    /// The server's policy does not allow this command.
    NotAllowed,
    /// The program does not exist (on the server's PATH).
    NotFound,
    /// Too many commands are running (for this client, or in total).
    Busy,
    /// The program exists but could not be started.
    CannotStart,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Refusal::UnknownKey => 1,
            Refusal::NotAllowed => 2,
            Refusal::NotFound => 3,
            Refusal::Busy => 4,
            Refusal::CannotStart => 5,
        }
    }

    fn from_code(code: u8) -> Option<Refusal> {
        Some(match code {
            1 => Refusal::UnknownKey,
            2 => Refusal::NotAllowed,
            3 => Refusal::NotFound,
            4 => Refusal::Busy,
            5 => Refusal::CannotStart,
            _ => return None,
        })
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(u8),
    /// A signal killed it.
    Signaled(u8),
    /// It outlived the server's timeout and its process group was killed.
    TimedOut,
}

impl ExitStatus {
    /// The shell's convention: the code itself, or 128 + the signal number.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128u8.saturating_add(signal),
            ExitStatus::TimedOut => 128 + libc::SIGKILL as u8,
        }
    }
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Start a command; the session runs one command at a time.
    Run(Command),
    /// Bytes for the command's stdin.
    Stdin(Bytes),
    /// The client's stdin ended; the command's stdin is closed.
    StdinEnd,
    /// The user pressed Ctrl-C: kill the command's process group.
    Interrupt,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The handshake succeeded and the key is authorized, under this name.
    Welcome { name: String },
    /// A refusal, with a human-readable reason.
    Refused { why: Refusal, message: String },
    /// Bytes the command wrote to its stdout.
    Stdout(Bytes),
    /// Bytes the command wrote to its stderr.
    Stderr(Bytes),
    /// The command ended; no more output follows for it.
    Exit(ExitStatus),
}

/// The streams a data message can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
}

impl Stream {
    fn tag(self) -> u8 {
        match self {
            Stream::Stdin => STDIN,
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
        }
    }
}

/// An encoded `Stdin`, `Stdout` or `Stderr` message built in place: the tag
/// byte, then data read straight in after it, so sending it copies nothing.
/// The bulk paths use this; [`ClientMessage::Stdin`] and
/// [`ServerMessage::Stdout`] are what the other side decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMessage(Bytes);

impl DataMessage {
    /// Reads up to [`MAX_BODY`] bytes from a blocking reader into a new
    /// message; `None` at the end of the reader.
    ///
    /// # Errors
    /// The read fails.
    pub fn read(
        stream: Stream,
        buffer: &mut BytesMut,
        reader: &mut impl std::io::Read,
    ) -> std::io::Result<Option<DataMessage>> {
        buffer.clear();
        buffer.resize(1 + MAX_BODY, 0);
        buffer[0] = stream.tag();
        let n = loop {
            match reader.read(&mut buffer[1..]) {
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        buffer.truncate(1 + n);
        Ok((n > 0).then(|| DataMessage(buffer.split().freeze())))
    }

    /// Reads up to [`MAX_BODY`] bytes from an async reader into a new
    /// message; `None` at the end. Cancel-safe: bytes are only taken from
    /// the reader by a read that completes.
    ///
    /// # Errors
    /// The read fails.
    pub async fn read_async(
        stream: Stream,
        buffer: &mut BytesMut,
        reader: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> std::io::Result<Option<DataMessage>> {
        use tokio::io::AsyncReadExt;
        buffer.clear();
        buffer.reserve(1 + MAX_BODY);
        buffer.put_u8(stream.tag());
        let n = reader.read_buf(&mut (&mut *buffer).limit(MAX_BODY)).await?;
        Ok((n > 0).then(|| DataMessage(buffer.split().freeze())))
    }

    /// The encoded message, ready to encrypt.
    pub fn body(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes of data it carries.
    pub fn data_len(&self) -> usize {
        self.0.len() - 1
    }
}

/// A message that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0:#04x}")]
    UnknownTag(u8),
    #[error("message type {tag:#04x} is truncated")]
    Truncated { tag: u8 },
    #[error("message type {tag:#04x} has {extra} trailing bytes")]
    Trailing { tag: u8, extra: usize },
    #[error("{0}")]
    Invalid(&'static str),
    #[error("message of {0} bytes exceeds the limit of {MAX_BODY}")]
    TooLarge(usize),
}

const RUN_ARGV: u8 = 0x01;
const RUN_SHELL: u8 = 0x02;
const STDIN: u8 = 0x03;
const STDIN_END: u8 = 0x04;
const INTERRUPT: u8 = 0x05;

const WELCOME: u8 = 0x81;
const REFUSED: u8 = 0x82;
const STDOUT: u8 = 0x83;
const STDERR: u8 = 0x84;
const EXIT: u8 = 0x85;

const EXITED: u8 = 0;
const SIGNALED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// Reads a `u32` length and that many bytes.
fn take_field(body: &mut &[u8], tag: u8) -> Result<Vec<u8>, WireError> {
    if body.len() < 4 {
        return Err(WireError::Truncated { tag });
    }
    let len = body.get_u32() as usize;
    if body.len() < len {
        return Err(WireError::Truncated { tag });
    }
    let field = body[..len].to_vec();
    body.advance(len);
    Ok(field)
}

fn expect_end(body: &[u8], tag: u8) -> Result<(), WireError> {
    match body.len() {
        0 => Ok(()),
        extra => Err(WireError::Trailing { tag, extra }),
    }
}

fn checked(out: BytesMut) -> Result<BytesMut, WireError> {
    match out.len() - 1 {
        len if len > MAX_BODY => Err(WireError::TooLarge(len)),
        _ => Ok(out),
    }
}

impl ClientMessage {
    /// The message's bytes.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] when it does not fit one Noise message (a very
    /// long command line).
    pub fn encode(&self) -> Result<BytesMut, WireError> {
        let mut out = BytesMut::new();
        match self {
            ClientMessage::Run(Command::Argv(argv)) => {
                out.put_u8(RUN_ARGV);
                for arg in argv {
                    out.put_u32(
                        arg.len()
                            .try_into()
                            .map_err(|_| WireError::TooLarge(arg.len()))?,
                    );
                    out.extend_from_slice(arg);
                }
            }
            ClientMessage::Run(Command::Shell(line)) => {
                out.put_u8(RUN_SHELL);
                out.extend_from_slice(line);
            }
            ClientMessage::Stdin(data) => {
                out.put_u8(STDIN);
                out.extend_from_slice(data);
            }
            ClientMessage::StdinEnd => out.put_u8(STDIN_END),
            ClientMessage::Interrupt => out.put_u8(INTERRUPT),
        }
        checked(out)
    }

    /// Decodes one message; data is shared with `message`, not copied.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(message: Bytes) -> Result<ClientMessage, WireError> {
        let (&tag, mut body) = message.split_first().ok_or(WireError::Empty)?;
        match tag {
            RUN_ARGV => {
                let mut argv = Vec::new();
                while !body.is_empty() {
                    argv.push(take_field(&mut body, tag)?);
                }
                if argv.is_empty() {
                    return Err(WireError::Invalid("a command needs a program"));
                }
                if argv.iter().any(|arg| arg.contains(&0)) {
                    return Err(WireError::Invalid("an argument contains a NUL byte"));
                }
                Ok(ClientMessage::Run(Command::Argv(argv)))
            }
            RUN_SHELL => {
                if body.contains(&0) {
                    return Err(WireError::Invalid("the command contains a NUL byte"));
                }
                Ok(ClientMessage::Run(Command::Shell(body.to_vec())))
            }
            STDIN => Ok(ClientMessage::Stdin(message.slice(1..))),
            STDIN_END => expect_end(body, tag).map(|()| ClientMessage::StdinEnd),
            INTERRUPT => expect_end(body, tag).map(|()| ClientMessage::Interrupt),
            other => Err(WireError::UnknownTag(other)),
        }
    }
}

impl ServerMessage {
    /// The message's bytes.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] when it does not fit one Noise message.
    pub fn encode(&self) -> Result<BytesMut, WireError> {
        let mut out = BytesMut::new();
        match self {
            ServerMessage::Welcome { name } => {
                out.put_u8(WELCOME);
                out.extend_from_slice(name.as_bytes());
            }
            ServerMessage::Refused { why, message } => {
                out.put_u8(REFUSED);
                out.put_u8(why.code());
                out.extend_from_slice(message.as_bytes());
            }
            ServerMessage::Stdout(data) => {
                out.put_u8(STDOUT);
                out.extend_from_slice(data);
            }
            ServerMessage::Stderr(data) => {
                out.put_u8(STDERR);
                out.extend_from_slice(data);
            }
            ServerMessage::Exit(status) => {
                out.put_u8(EXIT);
                match status {
                    ExitStatus::Exited(code) => out.put_slice(&[EXITED, *code]),
                    ExitStatus::Signaled(signal) => out.put_slice(&[SIGNALED, *signal]),
                    ExitStatus::TimedOut => out.put_slice(&[TIMED_OUT, 0]),
                }
            }
        }
        checked(out)
    }

    /// Decodes one message; data is shared with `message`, not copied.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(message: Bytes) -> Result<ServerMessage, WireError> {
        let (&tag, body) = message.split_first().ok_or(WireError::Empty)?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match tag {
            WELCOME => Ok(ServerMessage::Welcome { name: text(body) }),
            REFUSED => {
                let (&code, rest) = body.split_first().ok_or(WireError::Truncated { tag })?;
                let why = Refusal::from_code(code).ok_or(WireError::Invalid("unknown refusal"))?;
                Ok(ServerMessage::Refused {
                    why,
                    message: text(rest),
                })
            }
            STDOUT => Ok(ServerMessage::Stdout(message.slice(1..))),
            STDERR => Ok(ServerMessage::Stderr(message.slice(1..))),
            EXIT => match *body {
                [EXITED, code] => Ok(ServerMessage::Exit(ExitStatus::Exited(code))),
                [SIGNALED, signal] => Ok(ServerMessage::Exit(ExitStatus::Signaled(signal))),
                [TIMED_OUT, 0] => Ok(ServerMessage::Exit(ExitStatus::TimedOut)),
                [_, _] => Err(WireError::Invalid("unknown exit kind")),
                _ if body.len() < 2 => Err(WireError::Truncated { tag }),
                _ => Err(WireError::Trailing {
                    tag,
                    extra: body.len() - 2,
                }),
            },
            other => Err(WireError::UnknownTag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn client_round_trip(message: ClientMessage) {
        let bytes = message.encode().unwrap();
        assert_eq!(ClientMessage::decode(bytes.freeze()).unwrap(), message);
    }

    fn server_round_trip(message: ServerMessage) {
        let bytes = message.encode().unwrap();
        assert_eq!(ServerMessage::decode(bytes.freeze()).unwrap(), message);
    }

    #[test]
    fn every_message_round_trips() {
        client_round_trip(ClientMessage::Run(Command::Argv(vec![
            b"echo".to_vec(),
            b"".to_vec(),
            b"a b".to_vec(),
        ])));
        client_round_trip(ClientMessage::Run(Command::Shell(b"ls | wc -l".to_vec())));
        client_round_trip(ClientMessage::Stdin(Bytes::from_static(b"data")));
        client_round_trip(ClientMessage::StdinEnd);
        client_round_trip(ClientMessage::Interrupt);
        server_round_trip(ServerMessage::Welcome {
            name: "alice".into(),
        });
        server_round_trip(ServerMessage::Refused {
            why: Refusal::NotAllowed,
            message: "no".into(),
        });
        server_round_trip(ServerMessage::Stdout(Bytes::from_static(b"out")));
        server_round_trip(ServerMessage::Stderr(Bytes::new()));
        for status in [
            ExitStatus::Exited(3),
            ExitStatus::Signaled(9),
            ExitStatus::TimedOut,
        ] {
            server_round_trip(ServerMessage::Exit(status));
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(
            ClientMessage::decode(Bytes::from_static(b"")),
            Err(WireError::Empty)
        );
        assert_eq!(
            ClientMessage::decode(Bytes::from_static(&[RUN_ARGV])),
            Err(WireError::Invalid("a command needs a program"))
        );
        assert_eq!(
            ClientMessage::decode(Bytes::from_static(&[RUN_ARGV, 0, 0, 0, 9, b'x'])),
            Err(WireError::Truncated { tag: RUN_ARGV })
        );
        assert_eq!(
            ClientMessage::decode(Bytes::from_static(&[RUN_ARGV, 0, 0, 0, 2, b'x', 0])),
            Err(WireError::Invalid("an argument contains a NUL byte"))
        );
        assert_eq!(
            ClientMessage::decode(Bytes::from_static(&[STDIN_END, 1])),
            Err(WireError::Trailing {
                tag: STDIN_END,
                extra: 1
            })
        );
        assert_eq!(
            ClientMessage::decode(Bytes::from_static(&[0x7f])),
            Err(WireError::UnknownTag(0x7f))
        );
        assert_eq!(
            ServerMessage::decode(Bytes::from_static(&[EXIT, 7, 0])),
            Err(WireError::Invalid("unknown exit kind"))
        );
        assert_eq!(
            ServerMessage::decode(Bytes::from_static(&[EXIT, 0])),
            Err(WireError::Truncated { tag: EXIT })
        );
    }

    #[test]
    fn a_body_larger_than_one_noise_message_is_refused() {
        let big = Bytes::from(vec![0; MAX_BODY + 1]);
        assert_eq!(
            ClientMessage::Stdin(big).encode(),
            Err(WireError::TooLarge(MAX_BODY + 1))
        );
        assert!(
            ClientMessage::Stdin(Bytes::from(vec![0; MAX_BODY]))
                .encode()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn data_messages_built_in_place_decode_as_the_plain_ones() {
        let mut buffer = BytesMut::new();
        let mut input: &[u8] = b"abc";
        let message = DataMessage::read(Stream::Stdin, &mut buffer, &mut input)
            .unwrap()
            .unwrap();
        assert_eq!(message.data_len(), 3);
        assert_eq!(
            ClientMessage::decode(Bytes::copy_from_slice(message.body())),
            Ok(ClientMessage::Stdin(Bytes::from_static(b"abc")))
        );
        assert_eq!(
            DataMessage::read(Stream::Stdin, &mut buffer, &mut input).unwrap(),
            None
        );
        let mut output: &[u8] = b"out";
        let message = DataMessage::read_async(Stream::Stderr, &mut buffer, &mut output)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ServerMessage::decode(Bytes::copy_from_slice(message.body())),
            Ok(ServerMessage::Stderr(Bytes::from_static(b"out")))
        );
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(ExitStatus::Exited(1).code(), 1);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert_eq!(ExitStatus::TimedOut.code(), 137);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ClientMessage::decode(Bytes::from(bytes.clone()));
            let _ = ServerMessage::decode(Bytes::from(bytes));
        }
    }
}
