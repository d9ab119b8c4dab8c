//! The blocking echo loop shared by the iterative, thread and fork models,
//! and the blocking UDP loop.
//!
//! A blocking `read` parks the calling thread until bytes arrive, so one
//! thread can serve exactly one connection at a time: the models differ only
//! in how many threads (or processes) they give to the connections.

use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Instant;

use tracing::{debug, info};

use super::Transform;
use super::async_tasks::CHUNK;
use crate::listener::Traffic;

/// Echoes `stream` until the peer closes it; logs the close line.
pub fn serve_connection(mut stream: TcpStream, transform: Transform, model: &'static str) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let mut traffic = Traffic::default();
    let result = echo(&mut stream, transform, &mut traffic);
    let duration_ms = started.elapsed().as_millis() as u64;
    let Traffic {
        bytes_in,
        bytes_out,
    } = traffic;
    match result {
        Ok(()) => info!(model, %peer, bytes_in, bytes_out, duration_ms, "connection closed"),
        Err(err) => {
            info!(model, %peer, bytes_in, bytes_out, duration_ms, error = %err, "connection closed")
        }
    }
}

fn echo(stream: &mut TcpStream, transform: Transform, traffic: &mut Traffic) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = stream.read(&mut buf)?;
        if read == 0 {
            return Ok(());
        }
        traffic.bytes_in += read as u64;
        transform.apply(&mut buf[..read]);
        stream.write_all(&buf[..read])?;
        traffic.bytes_out += read as u64;
    }
}

/// Answers datagrams on `socket` forever, one at a time.
///
/// # Errors
/// Never returns on its own; per-datagram errors are logged and skipped.
pub fn serve_udp(socket: UdpSocket, transform: Transform) -> io::Result<()> {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                transform.apply(&mut buf[..len]);
                if let Err(err) = socket.send_to(&buf[..len], peer) {
                    debug!(%peer, error = %err, "udp reply failed");
                }
            }
            Err(err) => debug!(error = %err, "udp receive failed"),
        }
    }
}
