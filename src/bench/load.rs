//! The load generators: echo round trips over TCP, datagrams over UDP, and
//! bare connections. Each is bounded in time and checks what comes back.
//!
//! Echo: every connection sends `pipeline` messages of `size` bytes, then
//! reads the replies and compares each byte with what an uppercase (or plain)
//! echo must return; a wrong or short reply is an error, never a success.
//! Each connection cycles through up to 16 different requests (see
//! `requests`), so a reply left over from an earlier round trip cannot pass
//! for the current one. The connections share one table of them, each
//! starting at its own place: per-connection tables outgrew the processor's
//! caches at 500 connections and cost a tenth of the round trips. The echo load runs on plain epoll loops (mio) rather
//! than Tokio tasks: a round trip then costs the generator little more than
//! its two system calls, and the server under test, not the generator, sets
//! the pace (BENCHMARKS.md compares it with a C generator). Connections are
//! made before the clock starts, as that C generator makes them: the round
//! trips per second are those of connections that are up (`sockit bench
//! connect` measures connecting), and each connect's time is recorded.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tokio::net::UdpSocket;

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
    /// Event loops (threads) generating the load.
    pub threads: usize,
}

impl EchoLoad {
    /// Messages in flight per connection.
    fn depth(&self) -> usize {
        self.pipeline.max(1)
    }
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

/// Message number `round`: lowercase letters (so upper-casing is visible)
/// that differ from one number to the next.
fn message(round: u64, size: usize) -> Vec<u8> {
    let seed = round.wrapping_mul(104_729);
    (0..size)
        .map(|i| b'a' + ((seed.wrapping_add(i as u64 * 13)) % 26) as u8)
        .collect()
}

/// Runs an echo load to its end on `load.threads` event loops of its own.
/// This call blocks until the load is over; async callers run it on the
/// blocking pool.
///
/// # Errors
/// The system refuses an event loop (an epoll instance) or a thread.
pub fn echo(load: EchoLoad, progress: Arc<Progress>) -> std::io::Result<EchoOutcome> {
    let threads = load.threads.clamp(1, load.conns.max(1));
    // Connections are dealt out in turn, so each loop gets its share. The
    // requests are built before the clock starts.
    let requests = Arc::new(requests(&load));
    let shares: Vec<Vec<usize>> = (0..threads)
        .map(|index| (index..load.conns).step_by(threads).collect())
        .collect();
    // Every loop connects its share and says so; then all start the clock
    // together. A loop whose start signal never comes (its sender dropped,
    // as when a later loop cannot start) ends at once.
    let (ready, all_ready) = mpsc::channel();
    let mut loops = Vec::new();
    let mut starts = Vec::new();
    for (index, share) in shares.into_iter().enumerate() {
        let (start, started) = mpsc::channel();
        let (progress, ready, requests) = (progress.clone(), ready.clone(), requests.clone());
        loops.push(
            std::thread::Builder::new()
                .name(format!("sockit-load-{index}"))
                .spawn(move || {
                    event_loop(&load, (&requests, share), (&ready, &started), &progress)
                })?,
        );
        starts.push(start);
    }
    drop(ready);
    for _ in 0..loops.len() {
        if all_ready.recv().is_err() {
            break;
        }
    }
    for start in &starts {
        let _ = start.send(());
    }
    let mut outcome = EchoOutcome::empty();
    for handle in loops {
        let one = handle
            .join()
            .map_err(|_| std::io::Error::other("a load thread panicked"))??;
        outcome.elapsed = outcome.elapsed.max(one.elapsed);
        outcome.add(&one);
    }
    Ok(outcome)
}

/// How long connects may take before the clock starts; connections still
/// connecting then join the load when they are up.
const CONNECT_WAIT: Duration = Duration::from_secs(1);

impl EchoOutcome {
    fn empty() -> EchoOutcome {
        EchoOutcome {
            round_trips: 0,
            bytes: 0,
            errors: 0,
            connect_failures: 0,
            starved: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
            connect: histogram(),
        }
    }

    /// Adds the counts and latencies of `other` (its `elapsed` is ignored).
    fn add(&mut self, other: &EchoOutcome) {
        self.round_trips += other.round_trips;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.connect_failures += other.connect_failures;
        self.starved += other.starved;
        let _ = self.latency.add(&other.latency);
        let _ = self.connect.add(&other.connect);
    }
}

/// One thread's share of the load: its connections driven by one epoll
/// loop, as a C load generator would. Everything is non-blocking: connects
/// complete on a writable event, requests are written as far as the socket
/// takes them, and replies are read as they arrive. The connections are
/// made first; then the loop reports on `gate.0` and waits for the start
/// on `gate.1`, and runs the load for its duration, which the outcome's
/// `elapsed` gives.
fn event_loop(
    load: &EchoLoad,
    share: (&Arc<Requests>, Vec<usize>),
    gate: (&mpsc::Sender<()>, &mpsc::Receiver<()>),
    progress: &Progress,
) -> std::io::Result<EchoOutcome> {
    let mut events = Events::with_capacity(1024);
    let connecting = connect_share(load, share, &mut events);
    let (ready, start) = gate;
    // Reported even when connecting failed, so that nobody waits for it.
    let _ = ready.send(());
    if start.recv().is_err() {
        return Err(std::io::Error::other("the load was called off"));
    }
    let (mut poll, mut connections, mut outcome) = connecting?;
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut open = 0;
    for slot in &mut connections {
        let Some(connection) = slot else { continue };
        if connection.connecting.is_none() {
            connection.sent = started;
            if connection.write().is_err() {
                outcome.errors += load.depth() as u64;
                close(slot, &poll, &mut outcome);
                continue;
            }
        }
        open += 1;
    }
    while open > 0 {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if let Err(err) = poll.poll(&mut events, Some(left)) {
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let (round_trips, errors) = (outcome.round_trips, outcome.errors);
        for event in &events {
            let slot = &mut connections[event.token().0];
            let Some(connection) = slot else { continue };
            if let Err(failure) = connection.on_event(event, load, &mut outcome) {
                if failure == Failure::Exchange {
                    outcome.errors += load.depth() as u64;
                }
                close(slot, &poll, &mut outcome);
                open -= 1;
            }
        }
        progress
            .round_trips
            .fetch_add(outcome.round_trips - round_trips, Ordering::Relaxed);
        progress
            .errors
            .fetch_add(outcome.errors - errors, Ordering::Relaxed);
    }
    for connection in connections.into_iter().flatten() {
        connection.finish(&mut outcome);
    }
    outcome.bytes = outcome.round_trips * load.size as u64 * 2;
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Opens the connections of `share` (the requests and the connections'
/// numbers) and waits, at most [`CONNECT_WAIT`] or
/// the load's duration, until each is up or has failed. Failed ones are
/// counted and left out (`None`); the others are registered with the
/// returned poll, those still connecting included.
fn connect_share(
    load: &EchoLoad,
    (requests, share): (&Arc<Requests>, Vec<usize>),
    events: &mut Events,
) -> std::io::Result<(Poll, Vec<Option<Connection>>, EchoOutcome)> {
    let mut poll = Poll::new()?;
    let mut outcome = EchoOutcome::empty();
    let mut connections: Vec<Option<Connection>> = Vec::with_capacity(share.len());
    for (slot, conn) in share.into_iter().enumerate() {
        let opened = Connection::open(load, requests.clone(), conn).and_then(|mut connection| {
            poll.registry().register(
                &mut connection.stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(connection)
        });
        match opened {
            Ok(connection) => connections.push(Some(connection)),
            Err(_) => {
                outcome.connect_failures += 1;
                connections.push(None);
            }
        }
    }
    let give_up = Instant::now() + load.duration.min(CONNECT_WAIT);
    let mut pending = connections.iter().flatten().count();
    while pending > 0 {
        let Some(left) = give_up.checked_duration_since(Instant::now()) else {
            break;
        };
        if let Err(err) = poll.poll(events, Some(left)) {
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in events.iter() {
            let slot = &mut connections[event.token().0];
            let Some(connection) = slot.as_mut().filter(|c| c.connecting.is_some()) else {
                continue;
            };
            match connection.complete_connect(&mut outcome) {
                Ok(true) => pending -= 1,
                Ok(false) => {}
                Err(_) => {
                    close(slot, &poll, &mut outcome);
                    pending -= 1;
                }
            }
        }
    }
    Ok((poll, connections, outcome))
}

/// Ends the connection in `slot` before the deadline: it leaves the poll and
/// is counted in the outcome.
fn close(slot: &mut Option<Connection>, poll: &Poll, outcome: &mut EchoOutcome) {
    if let Some(mut connection) = slot.take() {
        let _ = poll.registry().deregister(&mut connection.stream);
        connection.finish(outcome);
    }
}

/// Why a connection of the load stopped before the deadline.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The connect failed.
    Connect,
    /// A request or reply broke off: the server closed, reset, or sent more
    /// than the reply.
    Exchange,
}

/// One connection of the load and where its current round trip stands.
struct Connection {
    stream: TcpStream,
    /// When the connect began, while it has not completed.
    connecting: Option<Instant>,
    requests: Arc<Requests>,
    turn: usize,
    written: usize,
    /// One byte more than a reply: a read that fills it means the server
    /// sent bytes nobody asked for, and any other read that returns less
    /// than asked has drained the socket (TCP hands over all it has), so no
    /// read(2) is spent learning that it would block.
    reply: Vec<u8>,
    filled: usize,
    /// When the current round trip began: the end of the previous one (only
    /// checking the reply lies between them), so one clock read each.
    sent: Instant,
    round_trips: u64,
}

impl Connection {
    /// Starts a non-blocking connect for connection number `conn`, which
    /// sends `requests` in turn from its own place among them.
    fn open(load: &EchoLoad, requests: Arc<Requests>, conn: usize) -> std::io::Result<Connection> {
        let began = Instant::now();
        let turn = conn % requests.len().max(1);
        Ok(Connection {
            stream: TcpStream::connect(load.addr)?,
            connecting: Some(began),
            requests,
            turn,
            written: 0,
            reply: vec![0; load.size * load.depth() + 1],
            filled: 0,
            sent: began,
            round_trips: 0,
        })
    }

    /// After an event on a connection still connecting: true once it is
    /// up (its connect time recorded), false while it is still connecting.
    fn complete_connect(&mut self, outcome: &mut EchoOutcome) -> Result<bool, Failure> {
        let Some(began) = self.connecting else {
            return Ok(true);
        };
        // A writable event ends a connect, in success or failure; the peer
        // address tells which (mio's documented check).
        match (self.stream.take_error(), self.stream.peer_addr()) {
            (Ok(None), Ok(_)) => {}
            (Ok(None), Err(err)) if err.kind() == std::io::ErrorKind::NotConnected => {
                return Ok(false);
            }
            _ => return Err(Failure::Connect),
        }
        self.connecting = None;
        let _ = outcome
            .connect
            .record((began.elapsed().as_micros() as u64).max(1));
        let _ = self.stream.set_nodelay(true);
        Ok(true)
    }

    /// Moves the connection on as far as `event` allows. A connection that
    /// comes up after the clock started sends its first request at once.
    fn on_event(
        &mut self,
        event: &Event,
        load: &EchoLoad,
        outcome: &mut EchoOutcome,
    ) -> Result<(), Failure> {
        if self.connecting.is_some() {
            if !self.complete_connect(outcome)? {
                return Ok(());
            }
            self.sent = Instant::now();
            return self.write();
        }
        if event.is_writable() && self.written < self.requests[self.turn].0.len() {
            self.write()?;
        }
        let closing = event.is_read_closed() || event.is_error();
        if event.is_readable() || closing {
            self.read(load, outcome, closing)?;
        }
        Ok(())
    }

    /// Writes what the socket takes of the current request.
    fn write(&mut self) -> Result<(), Failure> {
        let request = &self.requests[self.turn].0;
        while self.written < request.len() {
            match self.stream.write(&request[self.written..]) {
                Ok(0) => return Err(Failure::Exchange),
                Ok(n) => self.written += n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::Exchange),
            }
        }
        Ok(())
    }

    /// Reads what has arrived of the reply; a complete reply is checked,
    /// and the next request goes out at once. When the event also reported
    /// the peer closing (`closing`), reading goes on until the close itself
    /// is read: its edge has been taken, so no other event will report it.
    fn read(
        &mut self,
        load: &EchoLoad,
        outcome: &mut EchoOutcome,
        closing: bool,
    ) -> Result<(), Failure> {
        let reply_len = self.reply.len() - 1;
        loop {
            match self.stream.read(&mut self.reply[self.filled..]) {
                Ok(0) => return Err(Failure::Exchange),
                Ok(n) => self.filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure::Exchange),
            }
            if self.filled > reply_len {
                return Err(Failure::Exchange);
            }
            if self.filled == reply_len {
                self.check(load, outcome);
                self.write()?;
            }
            // A read shorter than asked took everything there was.
            if !closing {
                return Ok(());
            }
        }
    }

    /// Compares a complete reply with what the echo must return, message by
    /// message, and starts the next round trip.
    fn check(&mut self, load: &EchoLoad, outcome: &mut EchoOutcome) {
        let received = Instant::now();
        let micros = (received.duration_since(self.sent).as_micros() as u64).max(1);
        self.sent = received;
        let expected = &self.requests[self.turn].1;
        let size = load.size.max(1);
        for (got, want) in self.reply[..self.filled]
            .chunks(size)
            .zip(expected.chunks(size))
        {
            if got == want {
                self.round_trips += 1;
                outcome.round_trips += 1;
                let _ = outcome.latency.record(micros);
            } else {
                outcome.errors += 1;
            }
        }
        self.turn = (self.turn + 1) % self.requests.len();
        self.written = 0;
        self.filled = 0;
    }

    /// Counts the connection in the outcome as it ends: a connect that never
    /// completed failed; a connection that completed no round trip starved.
    fn finish(self, outcome: &mut EchoOutcome) {
        if self.connecting.is_some() {
            outcome.connect_failures += 1;
        } else if self.round_trips == 0 {
            outcome.starved += 1;
        }
    }
}

/// The distinct requests the connections send in turn, each with the reply
/// it must get (one request is `pipeline` messages).
type Requests = Vec<(Vec<u8>, Vec<u8>)>;

/// The requests of a load: 16 distinct ones, so that a reply left over from
/// one of the last 15 round trips cannot pass for the current one and no
/// message is built on the hot path; fewer, down to two, when requests are
/// large, so that they take at most about 64 KiB (with two, a reply
/// repeated or left over from the round trip before still differs from the
/// one expected). All connections share them, each starting at its own
/// place, so a reply a server sends down the wrong connection is caught
/// unless that connection stands at the same place (1 in 16).
fn requests(load: &EchoLoad) -> Requests {
    let depth = load.depth();
    let variants = (64 * 1024 / (load.size * depth).max(1)).clamp(2, 16);
    (0..variants)
        .map(|variant| {
            let mut request = Vec::with_capacity(load.size * depth);
            for slot in 0..depth {
                request.extend_from_slice(&message((variant * depth + slot) as u64, load.size));
            }
            let mut expected = request.clone();
            load.expect.apply(&mut expected);
            (request, expected)
        })
        .collect()
}

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
                // Each socket's messages differ from every other socket's.
                let message = message(((socket_index as u64) << 32) | sent, size);
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
                match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await
                {
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

    fn load(addr: SocketAddr, conns: usize, pipeline: usize, threads: usize) -> EchoLoad {
        EchoLoad {
            addr,
            conns,
            size: 64,
            pipeline,
            duration: Duration::from_millis(300),
            expect: Transform::Upper,
            threads,
        }
    }

    /// A blocking server on a loopback port: `serve` runs on a thread of its
    /// own for each connection.
    fn server(serve: fn(std::net::TcpStream)) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream));
            }
        });
        addr
    }

    fn upper_echo(mut stream: std::net::TcpStream) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            buf[..n].make_ascii_uppercase();
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }

    #[test]
    fn a_correct_echo_gives_round_trips_on_every_connection_and_thread() {
        let addr = server(upper_echo);
        let progress = Arc::new(Progress::default());
        let outcome = echo(load(addr, 6, 4, 2), progress.clone()).unwrap();
        assert_eq!(outcome.errors, 0);
        assert_eq!(outcome.starved, 0);
        assert_eq!(outcome.connect_failures, 0);
        assert!(outcome.round_trips > 0);
        assert_eq!(outcome.round_trips % 4, 0, "whole pipelines are counted");
        assert_eq!(outcome.bytes, outcome.round_trips * 64 * 2);
        assert_eq!(outcome.latency.len(), outcome.round_trips);
        assert_eq!(outcome.connect.len(), 6);
        assert_eq!(
            progress.round_trips.load(Ordering::Relaxed),
            outcome.round_trips
        );
    }

    #[test]
    fn a_server_that_never_answers_starves_every_connection() {
        let addr = server(|mut stream| {
            let mut buf = [0u8; 4096];
            while let Ok(1..) = stream.read(&mut buf) {}
        });
        let outcome = echo(load(addr, 3, 1, 1), Arc::default()).unwrap();
        assert_eq!(outcome.round_trips, 0);
        assert_eq!(outcome.starved, 3);
        assert_eq!(outcome.errors, 0);
    }

    #[test]
    fn a_reply_with_bytes_nobody_asked_for_is_an_error() {
        let addr = server(|mut stream| {
            let mut buf = [0u8; 64];
            if stream.read_exact(&mut buf).is_ok() {
                // One write, so the extra bytes arrive with the reply.
                let reply = [buf.to_ascii_uppercase().as_slice(), b"extra"].concat();
                let _ = stream.write_all(&reply);
            }
            let _ = stream.read(&mut buf);
        });
        let outcome = echo(load(addr, 2, 1, 1), Arc::default()).unwrap();
        assert_eq!(outcome.round_trips, 0);
        assert_eq!(outcome.errors, 2);
        assert_eq!(outcome.starved, 2);
    }

    #[test]
    fn a_server_that_closes_midway_is_an_error_not_a_success() {
        let addr = server(|mut stream| {
            let mut buf = [0u8; 32];
            let _ = stream.read_exact(&mut buf);
            let _ = stream.write_all(&buf.to_ascii_uppercase());
        });
        let outcome = echo(load(addr, 2, 1, 1), Arc::default()).unwrap();
        assert_eq!(outcome.round_trips, 0);
        assert_eq!(outcome.errors, 2);
    }

    #[test]
    fn a_refused_connect_is_counted_as_a_connect_failure() {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let outcome = echo(load(addr, 4, 1, 2), Arc::default()).unwrap();
        assert_eq!(outcome.connect_failures, 4);
        assert_eq!(outcome.round_trips, 0);
        assert_eq!(outcome.starved, 0);
    }

    #[test]
    fn messages_are_lowercase_and_differ_every_round() {
        let one = message(0, 64);
        assert!(one.iter().all(u8::is_ascii_lowercase));
        for round in 1..16 {
            assert_ne!(one, message(round, 64), "{round}");
        }
    }
}
