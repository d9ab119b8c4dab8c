//! One caller's conversation with the bot, over any byte stream.
//!
//! The protocol is lines of text, so `nc`, `telnet` and `sockit connect` all
//! work. Input is cleaned before it is read as a menu choice:
//! - telnet commands (IAC ...) are removed, and option requests are refused
//!   (`DO x` is answered `WONT x`, `WILL x` with `DONT x`), so a telnet client
//!   settles into plain line mode;
//! - CR, and the NUL telnet sends after CR, are dropped; LF ends a line;
//! - a line longer than the limit is discarded up to its end and answered
//!   with an error, so the session stays in step;
//! - bytes that are not valid in the session's encoding (UTF-8, or GBK for
//!   older Windows terminals) are answered with an error, not guessed at.
//!
//! A caller who sends nothing for the idle timeout is told so and
//! disconnected.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use encoding_rs::Encoding;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::script::{Script, Step};
use crate::listener::{Outcome, Traffic};
use crate::shutdown::Shutdown;

/// How one bot service talks.
#[derive(Debug, Clone)]
pub struct BotSettings {
    pub script: Arc<Script>,
    pub encoding: &'static Encoding,
    pub idle_timeout: Duration,
    /// The longest line accepted, in bytes.
    pub max_line: usize,
}

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;

/// Where the telnet filter is inside a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    Command,
    Option(u8),
    Subnegotiation,
    SubnegotiationCommand,
}

/// Splits incoming bytes into lines, removing telnet commands.
#[derive(Debug)]
struct LineReader {
    telnet: Telnet,
    line: Vec<u8>,
    overflowed: bool,
    max_line: usize,
    after_cr: bool,
}

/// What the reader produced from some input.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    Line(Vec<u8>),
    TooLong,
}

impl LineReader {
    fn new(max_line: usize) -> LineReader {
        LineReader {
            telnet: Telnet::Data,
            line: Vec::new(),
            overflowed: false,
            max_line,
            after_cr: false,
        }
    }

    /// Consumes `bytes`; returns complete inputs, and telnet answers to send.
    fn feed(&mut self, bytes: &[u8], inputs: &mut Vec<Input>, answers: &mut Vec<u8>) {
        for &byte in bytes {
            self.telnet = match (self.telnet, byte) {
                (Telnet::Data, IAC) => Telnet::Command,
                (Telnet::Data, byte) => {
                    self.data(byte, inputs);
                    Telnet::Data
                }
                (Telnet::Command, IAC) => {
                    self.data(IAC, inputs);
                    Telnet::Data
                }
                (Telnet::Command, WILL | WONT | DO | DONT) => Telnet::Option(byte),
                (Telnet::Command, SB) => Telnet::Subnegotiation,
                (Telnet::Command, _) => Telnet::Data,
                (Telnet::Option(command), option) => {
                    match command {
                        DO => answers.extend_from_slice(&[IAC, WONT, option]),
                        WILL => answers.extend_from_slice(&[IAC, DONT, option]),
                        _ => {}
                    }
                    Telnet::Data
                }
                (Telnet::Subnegotiation, IAC) => Telnet::SubnegotiationCommand,
                (Telnet::Subnegotiation, _) => Telnet::Subnegotiation,
                (Telnet::SubnegotiationCommand, SE) => Telnet::Data,
                (Telnet::SubnegotiationCommand, _) => Telnet::Subnegotiation,
            };
        }
    }

    fn data(&mut self, byte: u8, inputs: &mut Vec<Input>) {
        let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\r' => {}
            0 if after_cr => {}
            b'\n' => {
                let line = std::mem::take(&mut self.line);
                inputs.push(if std::mem::take(&mut self.overflowed) {
                    Input::TooLong
                } else {
                    Input::Line(line)
                });
            }
            _ if self.overflowed => {}
            _ if self.line.len() >= self.max_line => {
                self.overflowed = true;
                self.line.clear();
            }
            _ => self.line.push(byte),
        }
    }
}

/// The conversation's position and what it has to say.
#[derive(Debug)]
struct Conversation {
    script: Arc<Script>,
    state: usize,
}

/// What to do after an input.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    Continue(String),
    Hangup(String),
}

impl Conversation {
    fn prompt(&self) -> String {
        format!("{}\n> ", self.script.states[self.state].prompt)
    }

    fn answer(&mut self, input: &str) -> Turn {
        let input = input.trim();
        if self
            .script
            .exit_inputs
            .iter()
            .any(|exit| exit.eq_ignore_ascii_case(input))
        {
            return Turn::Hangup(self.script.goodbye.clone());
        }
        let state = &self.script.states[self.state];
        let Some(choice) = state.choices.iter().find(|c| c.input == input) else {
            return Turn::Continue(format!("{}\n{}", state.fallback, self.prompt()));
        };
        let reply = choice.reply.clone();
        match choice.step {
            Step::Exit => Turn::Hangup(if reply.is_empty() {
                self.script.goodbye.clone()
            } else {
                reply
            }),
            Step::Goto(next) => {
                self.state = next;
                let prompt = self.prompt();
                Turn::Continue(if reply.is_empty() {
                    prompt
                } else {
                    format!("{reply}\n{prompt}")
                })
            }
        }
    }
}

/// Runs one session until the caller leaves, idles out, or shutdown.
pub async fn session<S>(
    stream: S,
    settings: Arc<BotSettings>,
    shutdown: Shutdown,
) -> Outcome<io::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut talk = Talk {
        stream,
        encoding: settings.encoding,
        traffic: Traffic::default(),
    };
    let result = converse(&mut talk, &settings, &shutdown).await;
    Outcome {
        traffic: talk.traffic,
        result,
    }
}

struct Talk<S> {
    stream: S,
    encoding: &'static Encoding,
    traffic: Traffic,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Talk<S> {
    /// Sends text in the session's encoding, with CRLF line ends.
    async fn say(&mut self, text: &str) -> io::Result<()> {
        let text = text.replace('\n', "\r\n");
        let (bytes, _, _) = self.encoding.encode(&text);
        self.send(&bytes).await
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.traffic.bytes_out += bytes.len() as u64;
        Ok(())
    }
}

async fn converse<S>(
    talk: &mut Talk<S>,
    settings: &BotSettings,
    shutdown: &Shutdown,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conversation = Conversation {
        script: settings.script.clone(),
        state: settings.script.start,
    };
    let mut reader = LineReader::new(settings.max_line);
    talk.say(&conversation.prompt()).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let read = tokio::select! {
            _ = shutdown.stopping() => {
                talk.say("\nThe service is shutting down. 服务即将关闭.\n").await?;
                break;
            }
            read = tokio::time::timeout(settings.idle_timeout, talk.stream.read(&mut buf)) => read,
        };
        let read = match read {
            Ok(read) => read?,
            Err(_idle) => {
                let minutes = settings.idle_timeout.as_secs_f64() / 60.0;
                talk.say(&format!(
                    "\nNo input for {minutes:.1} min; goodbye. 长时间无输入, 再见.\n"
                ))
                .await?;
                break;
            }
        };
        if read == 0 {
            break;
        }
        talk.traffic.bytes_in += read as u64;
        let (mut inputs, mut answers) = (Vec::new(), Vec::new());
        reader.feed(&buf[..read], &mut inputs, &mut answers);
        if !answers.is_empty() {
            talk.send(&answers).await?;
        }
        for input in inputs {
            let turn = match input {
                Input::TooLong => Turn::Continue(format!(
                    "Line too long (at most {} bytes). 输入过长.\n{}",
                    settings.max_line,
                    conversation.prompt()
                )),
                Input::Line(bytes) => match talk
                    .encoding
                    .decode_without_bom_handling_and_without_replacement(&bytes)
                {
                    Some(text) => conversation.answer(&text),
                    None => Turn::Continue(format!(
                        "Unreadable input: not {}. 无法识别的字符.\n{}",
                        talk.encoding.name(),
                        conversation.prompt()
                    )),
                },
            };
            match turn {
                Turn::Continue(text) => talk.say(&text).await?,
                Turn::Hangup(text) => {
                    talk.say(&format!("{text}\n")).await?;
                    return talk.stream.shutdown().await;
                }
            }
        }
    }
    talk.stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(reader: &mut LineReader, bytes: &[u8]) -> (Vec<Input>, Vec<u8>) {
        let (mut inputs, mut answers) = (Vec::new(), Vec::new());
        reader.feed(bytes, &mut inputs, &mut answers);
        (inputs, answers)
    }

    #[test]
    fn telnet_commands_are_removed_and_options_refused() {
        let mut reader = LineReader::new(100);
        let bytes = [
            IAC, DO, 1, IAC, WILL, 3, b'1', IAC, SB, 24, 1, 2, IAC, SE, b'\r', 0, b'\n',
        ];
        let (inputs, answers) = lines(&mut reader, &bytes);
        assert_eq!(inputs, vec![Input::Line(b"1".to_vec())]);
        assert_eq!(answers, vec![IAC, WONT, 1, IAC, DONT, 3]);
    }

    #[test]
    fn lines_may_arrive_in_pieces_and_crlf_is_a_line_end() {
        let mut reader = LineReader::new(100);
        assert!(lines(&mut reader, b"ex").0.is_empty());
        assert_eq!(
            lines(&mut reader, b"it\r\n2\n").0,
            vec![Input::Line(b"exit".to_vec()), Input::Line(b"2".to_vec())]
        );
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_is_read() {
        let mut reader = LineReader::new(4);
        let (inputs, _) = lines(&mut reader, b"123456789\n1\n");
        assert_eq!(inputs, vec![Input::TooLong, Input::Line(b"1".to_vec())]);
    }

    #[test]
    fn the_conversation_follows_the_script() {
        let mut conversation = Conversation {
            script: Arc::new(Script::built_in()),
            state: Script::built_in().start,
        };
        assert!(
            matches!(conversation.answer("2"), Turn::Continue(t) if t.contains("Account balance"))
        );
        assert!(
            matches!(conversation.answer("1"), Turn::Continue(t) if t.starts_with("Your balance"))
        );
        assert!(
            matches!(conversation.answer("banana"), Turn::Continue(t) if t.starts_with("Please choose again."))
        );
        assert!(matches!(conversation.answer("EXIT"), Turn::Hangup(t) if t.contains("Goodbye")));
    }
}
