//! A `connect_ex`-style port checker for `sockit probe`.
//!
//! TCP: a port is `open` when a connection is accepted, `closed` when the host
//! refuses it (RST), `timeout` when nothing answers in time (a firewall that
//! drops), and `error` with the OS's message otherwise. UDP has no handshake:
//! an empty datagram is sent, and a reply means `open`, an ICMP "port
//! unreachable" means `closed`, and silence is `no-reply` (open, or filtered:
//! UDP cannot tell). Concurrency and time are bounded.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use tokio::net::{TcpStream, UdpSocket};

use super::ports::{self, PortEntry, Protocol};

/// The most ports one probe takes.
pub const MAX_PORTS: usize = 65_536;

/// What was found on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortState {
    Open,
    Closed,
    Timeout,
    NoReply,
    Error,
}

impl std::fmt::Display for PortState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Timeout => "timeout",
            PortState::NoReply => "no-reply",
            PortState::Error => "error",
        })
    }
}

/// One port's result.
#[derive(Debug, Clone, Serialize)]
pub struct PortResult {
    pub port: u16,
    pub state: PortState,
    /// The well-known service on this port, if any.
    pub service: Option<String>,
    /// The OS's error, for `closed`, `timeout` and `error`.
    pub error: Option<String>,
    pub elapsed_ms: f64,
}

/// Parses `22,80,8000-8100` into ports, in order, without repeats.
///
/// # Errors
/// A part that is not a port or range, a backwards range, or more than
/// [`MAX_PORTS`] ports.
pub fn parse_ports(text: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    let mut seen = vec![false; 65_536];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("{s:?} is not a port (0-65535)"))
        };
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (port(low)?, port(high)?),
            None => (port(part)?, port(part)?),
        };
        if low > high {
            return Err(format!("the range {low}-{high} runs backwards"));
        }
        for p in low..=high {
            if !seen[p as usize] {
                seen[p as usize] = true;
                ports.push(p);
            }
        }
    }
    if ports.is_empty() {
        return Err("no ports given (for example 22,80,8000-8100)".to_owned());
    }
    if ports.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} ports at once"));
    }
    Ok(ports)
}

/// Probes `ports` of `address`, at most `concurrency` at a time, each bounded
/// by `timeout`. Results come in the order of `ports`.
pub async fn probe(
    address: IpAddr,
    ports: &[u16],
    protocol: Protocol,
    timeout: Duration,
    concurrency: usize,
) -> Vec<PortResult> {
    let table = ports::table();
    let mut results: Vec<PortResult> = futures::stream::iter(ports.iter().copied())
        .map(|port| probe_one(SocketAddr::new(address, port), protocol, timeout))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let order: std::collections::HashMap<u16, usize> =
        ports.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    results.sort_by_key(|r| order[&r.port]);
    for result in &mut results {
        result.service = service(&table, result.port, protocol);
    }
    results
}

fn service(table: &[PortEntry], port: u16, protocol: Protocol) -> Option<String> {
    ports::service_name(table, port, protocol).map(str::to_owned)
}

async fn probe_one(target: SocketAddr, protocol: Protocol, timeout: Duration) -> PortResult {
    let started = Instant::now();
    let (state, error) = match protocol {
        Protocol::Tcp => match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(_stream)) => (PortState::Open, None),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                (PortState::Closed, Some(err.to_string()))
            }
            Ok(Err(err)) => (PortState::Error, Some(err.to_string())),
            Err(_) => (
                PortState::Timeout,
                Some(format!("no answer within {timeout:?}")),
            ),
        },
        Protocol::Udp => probe_udp(target, timeout).await,
    };
    PortResult {
        port: target.port(),
        state,
        service: None,
        error,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

async fn probe_udp(target: SocketAddr, timeout: Duration) -> (PortState, Option<String>) {
    let local: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(err) => return (PortState::Error, Some(err.to_string())),
    };
    let sent = async {
        socket.connect(target).await?;
        socket.send(&[]).await?;
        let mut reply = [0u8; 1];
        socket.recv(&mut reply).await
    };
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(_)) => (PortState::Open, None),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            (PortState::Closed, Some(err.to_string()))
        }
        Ok(Err(err)) => (PortState::Error, Some(err.to_string())),
        Err(_) => (PortState::NoReply, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_parse() {
        assert_eq!(
            parse_ports("22,80,8000-8002"),
            Ok(vec![22, 80, 8000, 8001, 8002])
        );
        assert_eq!(parse_ports("80, 80 ,79-81"), Ok(vec![80, 79, 81]));
        assert_eq!(parse_ports("0-65535").unwrap().len(), 65_536);
        for bad in ["", "x", "70000", "9-1", "1-2-3", ","] {
            assert!(parse_ports(bad).is_err(), "{bad:?}");
        }
    }
}
