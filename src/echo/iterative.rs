//! The iterative model: one client at a time, the course's first server.
//!
//! How it works: the main thread accepts a connection, echoes it until the
//! client closes it, and only then accepts the next one. Every other client
//! waits: the kernel completes their TCP handshakes and queues them in the
//! listen backlog, but nobody reads what they send.
//!
//! What it costs: nothing per client (one thread, one buffer), and that is
//! the trouble: the second client's request waits for the whole session of
//! the first. With 50 clients that each stay connected, 49 of them starve.

use std::net::TcpListener;
use std::sync::Arc;

use tracing::warn;

use super::Transform;
use super::blocking::{Drain, serve_drained};

/// Serves clients one after the other, until `drain` stops it.
pub fn run(listener: &TcpListener, transform: Transform, drain: &Arc<Drain>) {
    for connection in listener.incoming() {
        match connection {
            Ok(stream) => serve_drained(stream, transform, "iterative", drain),
            Err(_) if drain.stopping() => return,
            Err(err) => warn!(error = %err, "accept failed"),
        }
    }
}
