//! UDP echo on tokio: each datagram is answered with one datagram.
//!
//! A datagram is a message, so there is nothing to frame: the reply to a
//! datagram of N bytes is one datagram of N bytes (up to 65 507 over IPv4,
//! 65 527 over IPv6). Errors on one datagram (an ICMP "port unreachable" left
//! over from an earlier reply, a peer that vanished) are logged and skipped:
//! they never stop the service.

use tokio::net::UdpSocket;
use tracing::debug;

use super::Transform;
use crate::shutdown::Shutdown;
use crate::stats::{self, ServiceStats};

/// Room for the largest UDP payload IPv6 can carry.
const MAX_DATAGRAM: usize = 65_536;

/// Answers datagrams on `socket` until shutdown.
pub async fn run(socket: UdpSocket, transform: Transform, shutdown: Shutdown) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let counters = stats::service("echo");
    let datagrams = stats::counter("sockit_udp_datagrams_total", &[("service", "echo")]);
    let stopping = shutdown.stopping();
    tokio::pin!(stopping);
    loop {
        let received = tokio::select! {
            () = &mut stopping => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(err) => {
                debug!(error = %err, "udp receive failed");
                continue;
            }
        };
        ServiceStats::add(&counters.bytes_in, len as u64);
        ServiceStats::add(&datagrams, 1);
        transform.apply(&mut buf[..len]);
        match socket.send_to(&buf[..len], peer).await {
            Ok(sent) => ServiceStats::add(&counters.bytes_out, sent as u64),
            Err(err) => {
                ServiceStats::add(&counters.errors, 1);
                debug!(%peer, error = %err, "udp reply failed");
            }
        }
    }
}
