//! The load generators: echo round trips over TCP, datagrams over UDP, and
//! bare connections. Each is bounded in time and checks what comes back.
//!
//! Echo: every connection sends `pipeline` messages of `size` bytes, then
//! reads the replies and compares each byte with what an uppercase (or plain)
//! echo must return; a wrong or short reply is an error, never a success.
//! Each connection cycles through 16 different requests, so a reply left over
//! from an earlier round trip cannot pass for the current one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::echo::Transform;

/// One echo load: how many connections, what messages, for how long.
#[derive(Debug, Clone, Copy)]
pub struct EchoLoad {
    pub addr: SocketAddr,
    pub conns: usize,
    pub size: usize,
    pub pipeline: usize,
    pub duration: Duration,
    pub expect: Transform,
}

/// Live counters a progress line can read while a load runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub round_trips: AtomicU64,
    pub errors: AtomicU64,
}

/// What one echo load measured.
#[derive(Debug, Clone)]
pub struct EchoOutcome {
    pub round_trips: u64,
    pub bytes: u64,
    /// Replies that differed from what the echo must return, or came short.
    pub errors: u64,
    /// Connections that could not be opened.
    pub connect_failures: u64,
    /// Connections that got no reply at all.
    pub starved: u64,
    pub elapsed: Duration,
    /// Round-trip latency, microseconds.
    pub latency: Histogram<u64>,
    /// Connect time, microseconds.
    pub connect: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The message for round trip `round` of connection `conn`: lowercase
/// letters (so upper-casing is visible) that differ every time.
fn message(conn: usize, round: u64, size: usize) -> Vec<u8> {
    let seed = (conn as u64)
        .wrapping_mul(7919)
        .wrapping_add(round.wrapping_mul(104_729));
    (0..size)
        .map(|i| b'a' + ((seed.wrapping_add(i as u64 * 13)) % 26) as u8)
        .collect()
}

/// Runs an echo load to its end.
pub async fn echo(load: EchoLoad, progress: Arc<Progress>) -> EchoOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..load.conns {
        let progress = progress.clone();
        tasks.spawn(connection(load, conn, deadline, progress));
    }
    let mut outcome = EchoOutcome {
        round_trips: 0,
        bytes: 0,
        errors: 0,
        connect_failures: 0,
        starved: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
        connect: histogram(),
    };
    while let Some(done) = tasks.join_next().await {
        let Ok(one) = done else {
            outcome.errors += 1;
            continue;
        };
        match one.connect_us {
            Some(us) => {
                let _ = outcome.connect.record(us.max(1));
            }
            None => outcome.connect_failures += 1,
        }
        if one.round_trips == 0 && one.connect_us.is_some() {
            outcome.starved += 1;
        }
        outcome.round_trips += one.round_trips;
        outcome.errors += one.errors;
        outcome.bytes += one.round_trips * load.size as u64 * 2;
        let _ = outcome.latency.add(&one.latency);
    }
    outcome.elapsed = started.elapsed();
    outcome
}

struct ConnectionOutcome {
    connect_us: Option<u64>,
    round_trips: u64,
    errors: u64,
    latency: Histogram<u64>,
}

async fn connection(
    load: EchoLoad,
    conn: usize,
    deadline: tokio::time::Instant,
    progress: Arc<Progress>,
) -> ConnectionOutcome {
    let mut outcome = ConnectionOutcome {
        connect_us: None,
        round_trips: 0,
        errors: 0,
        latency: histogram(),
    };
    let connecting = Instant::now();
    let Ok(Ok(mut stream)) = tokio::time::timeout_at(deadline, TcpStream::connect(load.addr)).await
    else {
        return outcome;
    };
    outcome.connect_us = Some(connecting.elapsed().as_micros() as u64);
    let _ = stream.set_nodelay(true);
    let depth = load.pipeline.max(1);
    // A few distinct requests per connection, used in turn: any reply left
    // over from one of the last VARIANTS - 1 round trips cannot pass for the
    // current one, and no message is built on the hot path.
    let batches: Vec<(Vec<u8>, Vec<u8>)> = (0..VARIANTS)
        .map(|variant| {
            let mut request = Vec::with_capacity(load.size * depth);
            for slot in 0..depth {
                request.extend_from_slice(&message(
                    conn,
                    (variant * depth + slot) as u64,
                    load.size,
                ));
            }
            let mut expected = request.clone();
            load.expect.apply(&mut expected);
            (request, expected)
        })
        .collect();
    let reply_len = load.size * depth;
    // One byte more than a reply: the read that completes a reply then
    // returns less than the buffer, which tells Tokio the socket is drained,
    // so the next read waits for readiness instead of trying a read(2) that
    // can only say "would block" (a third system call per round trip).
    let mut reply = vec![0u8; reply_len + 1];
    let time_is_up = tokio::time::sleep_until(deadline);
    tokio::pin!(time_is_up);
    // One clock read per round trip: the end of one is the start of the next
    // (only checking the reply lies between them).
    let mut sent = Instant::now();
    for (request, expected) in batches.iter().cycle() {
        let exchange = async {
            if request.len() <= SEQUENTIAL_LIMIT {
                // Small enough to sit in the socket buffers: write, then read.
                stream.write_all(request).await?;
                read_reply(&mut stream, &mut reply).await
            } else {
                let (mut reader, mut writer) = stream.split();
                let (written, read) = tokio::join!(
                    writer.write_all(request),
                    read_reply(&mut reader, &mut reply)
                );
                written.and(read)
            }
        };
        let exchanged = tokio::select! {
            biased;
            _ = &mut time_is_up => break,
            exchanged = exchange => exchanged,
        };
        if exchanged.is_err() {
            outcome.errors += depth as u64;
            progress.errors.fetch_add(depth as u64, Ordering::Relaxed);
            break;
        }
        let received = Instant::now();
        let micros = (received.duration_since(sent).as_micros() as u64).max(1);
        sent = received;
        for (got, want) in reply[..reply_len]
            .chunks(load.size.max(1))
            .zip(expected.chunks(load.size.max(1)))
        {
            if got == want {
                outcome.round_trips += 1;
                let _ = outcome.latency.record(micros);
            } else {
                outcome.errors += 1;
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        progress
            .round_trips
            .fetch_add(depth as u64, Ordering::Relaxed);
    }
    outcome
}

/// Reads one reply: all of `buf` but its last byte. More than that means
/// the server sent bytes nobody asked for, which is an error.
async fn read_reply(stream: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> std::io::Result<()> {
    let want = buf.len() - 1;
    let mut filled = 0;
    while filled < want {
        match stream.read(&mut buf[filled..]).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    if filled > want {
        return Err(std::io::Error::other("the server sent more than the reply"));
    }
    Ok(())
}

/// Distinct requests each connection cycles through.
const VARIANTS: usize = 16;

/// Requests up to this size are written whole before the reply is read; larger
/// ones are written and read at once, as they may not fit in socket buffers.
const SEQUENTIAL_LIMIT: usize = 64 * 1024;

/// What a UDP load measured.
#[derive(Debug, Clone)]
pub struct UdpOutcome {
    pub sent: u64,
    pub answered: u64,
    /// Replies that differed from what the echo must return.
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

/// Sends datagrams of `size` bytes from `sockets` sockets, each waiting up to
/// `wait` for its reply before the next (a lost datagram or reply counts as
/// lost), until `duration` is over.
pub async fn udp(
    addr: SocketAddr,
    sockets: usize,
    size: usize,
    duration: Duration,
    wait: Duration,
    expect: Transform,
) -> std::io::Result<UdpOutcome> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for socket_index in 0..sockets {
        let local: SocketAddr = if addr.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            ([0u16, 0, 0, 0, 0, 0, 0, 1], 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        tasks.spawn(async move {
            let (mut sent, mut answered, mut errors) = (0u64, 0u64, 0u64);
            let mut latency = histogram();
            let mut reply = vec![0u8; 65_536];
            while tokio::time::Instant::now() < deadline {
                let message = message(socket_index, sent, size);
                let mut want = message.clone();
                expect.apply(&mut want);
                let at = Instant::now();
                if socket.send(&message).await.is_err() {
                    errors += 1;
                    sent += 1;
                    continue;
                }
                sent += 1;
                if let Ok(Ok(len)) = tokio::time::timeout(wait, socket.recv(&mut reply)).await {
                    if reply[..len] == want[..] {
                        answered += 1;
                        let _ = latency.record((at.elapsed().as_micros() as u64).max(1));
                    } else {
                        errors += 1;
                    }
                }
            }
            (sent, answered, errors, latency)
        });
    }
    let mut outcome = UdpOutcome {
        sent: 0,
        answered: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    while let Some(Ok((sent, answered, errors, latency))) = tasks.join_next().await {
        outcome.sent += sent;
        outcome.answered += answered;
        outcome.errors += errors;
        let _ = outcome.latency.add(&latency);
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// What a connect load measured.
#[derive(Debug, Clone)]
pub struct ConnectOutcome {
    pub connections: u64,
    pub failures: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

/// Opens and closes connections from `concurrency` tasks for `duration`.
pub async fn connect(addr: SocketAddr, concurrency: usize, duration: Duration) -> ConnectOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut latency = histogram();
            while tokio::time::Instant::now() < deadline {
                let at = Instant::now();
                match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        ok += 1;
                        let _ = latency.record((at.elapsed().as_micros() as u64).max(1));
                        drop(stream);
                    }
                    Ok(Err(_)) => failed += 1,
                    Err(_) => break,
                }
            }
            (ok, failed, latency)
        });
    }
    let mut outcome = ConnectOutcome {
        connections: 0,
        failures: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    while let Some(Ok((ok, failed, latency))) = tasks.join_next().await {
        outcome.connections += ok;
        outcome.failures += failed;
        let _ = outcome.latency.add(&latency);
    }
    outcome.elapsed = started.elapsed();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_differ_every_round() {
        let one = message(3, 0, 64);
        assert!(one.iter().all(u8::is_ascii_lowercase));
        assert_ne!(one, message(3, 1, 64));
        assert_ne!(one, message(4, 0, 64));
    }
}
