//! A client of the event-loop models (poll, epoll): a non-blocking socket and
//! the reply bytes it has not taken yet.
//!
//! Nothing here waits. A read takes what has arrived; a write puts in what
//! the socket buffer has room for, and whatever is left stays pending. While
//! a reply is pending the loop waits for the socket to become writable, not
//! readable, so a client that does not read its replies stops being read
//! (backpressure) and costs at most one chunk.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use tracing::info;

use super::Transform;
use crate::listener::Traffic;

/// Why a connection ends.
#[derive(Debug)]
pub enum Closed {
    ByPeer,
    Failed(io::Error),
}

impl From<io::Error> for Closed {
    fn from(err: io::Error) -> Closed {
        Closed::Failed(err)
    }
}

/// What one readiness event achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bytes were read and answered in full, and the read filled the
    /// buffer: more may be waiting.
    More,
    /// Bytes were read and answered in full, and the read took less than
    /// the buffer held: TCP hands over all it has, so the socket is drained
    /// and another read would only say it would block.
    Drained,
    /// Nothing more to do until the next readiness event: nothing to read,
    /// or a reply waits for room in the socket.
    Blocked,
}

/// One connection of an event loop.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
    traffic: Traffic,
}

impl Client {
    /// Takes a connected, already non-blocking stream.
    pub fn new(stream: TcpStream) -> Client {
        let _ = stream.set_nodelay(true);
        Client {
            stream,
            pending: Vec::new(),
            traffic: Traffic::default(),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// True while a reply waits for the socket to become writable.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Handles one readiness event: flushes a pending reply, or reads once and
    /// answers.
    ///
    /// # Errors
    /// The connection is over: closed by the peer or failed.
    pub fn on_ready(&mut self, transform: Transform, buf: &mut [u8]) -> Result<Progress, Closed> {
        if self.has_pending() {
            self.flush()?;
            return Ok(Progress::Blocked);
        }
        match self.stream.read(buf) {
            Ok(0) => Err(Closed::ByPeer),
            Ok(read) => {
                self.traffic.bytes_in += read as u64;
                transform.apply(&mut buf[..read]);
                self.pending.extend_from_slice(&buf[..read]);
                self.flush()?;
                Ok(if self.has_pending() {
                    Progress::Blocked
                } else if read == buf.len() {
                    Progress::More
                } else {
                    Progress::Drained
                })
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(Progress::Blocked),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(Progress::More),
            Err(err) => Err(err.into()),
        }
    }

    /// Writes as much of the pending reply as the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        while self.has_pending() {
            match self.stream.write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.traffic.bytes_out += written as u64;
                    self.pending.drain(..written);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Logs the close line for a connection that is over.
    pub fn close(self, model: &'static str, why: Closed) {
        let peer = self
            .stream
            .peer_addr()
            .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
        let Traffic {
            bytes_in,
            bytes_out,
        } = self.traffic;
        match why {
            Closed::ByPeer => info!(model, %peer, bytes_in, bytes_out, "connection closed"),
            Closed::Failed(err) => {
                info!(model, %peer, bytes_in, bytes_out, error = %err, "connection closed")
            }
        }
    }
}
