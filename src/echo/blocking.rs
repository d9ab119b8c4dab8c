//! The blocking echo loop shared by the iterative, thread and fork models,
//! and the blocking UDP loop.
//!
//! A blocking `read` parks the calling thread until bytes arrive, so one
//! thread can serve exactly one connection at a time: the models differ only
//! in how many threads (or processes) they give to the connections.
//!
//! [`Drain`] stops the iterative and thread models on SIGTERM or SIGINT: no
//! more accepts, every session's read side shut so its loop answers what it
//! has read and ends, then the write side half-closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Transform;
use super::async_tasks::CHUNK;
use crate::listener::Traffic;

/// The stop of a blocking model: set by a signal, seen by the accept loop and
/// every session.
#[derive(Debug)]
pub struct Drain {
    stopping: AtomicBool,
    listener: RawFd,
    /// A handle on each running session, to shut its read side.
    sessions: Mutex<Vec<(u64, TcpStream)>>,
    ended: Condvar,
    next_id: AtomicU64,
}

/// A session's place in the [`Drain`]; it leaves when dropped.
pub struct Registered {
    drain: Arc<Drain>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut sessions = self.drain.sessions.lock().expect("sessions lock");
        sessions.retain(|(id, _)| *id != self.id);
        self.drain.ended.notify_all();
    }
}

impl Drain {
    /// Starts watching for SIGTERM and SIGINT on a thread of its own. Call it
    /// before any other thread starts: the signals are blocked in the caller,
    /// and so in every thread started after, so only the watcher takes them.
    ///
    /// # Errors
    /// The signal mask cannot be set or the thread cannot start.
    pub fn on_signals(listener: &TcpListener) -> io::Result<Arc<Drain>> {
        let drain = Arc::new(Drain {
            stopping: AtomicBool::new(false),
            listener: listener.as_raw_fd(),
            sessions: Mutex::new(Vec::new()),
            ended: Condvar::new(),
            next_id: AtomicU64::new(0),
        });
        // SAFETY: the set is initialised by sigemptyset before use, and
        // pthread_sigmask only changes this thread's mask.
        let signals = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            set
        };
        let watched = drain.clone();
        std::thread::Builder::new()
            .name("echo-signals".to_owned())
            .spawn(move || {
                let mut signal = 0;
                // SAFETY: `signals` is an initialised set; sigwait writes one int.
                if unsafe { libc::sigwait(&signals, &mut signal) } == 0 {
                    info!(signal, "stopping");
                    watched.stop();
                }
            })?;
        Ok(drain)
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        let sessions = self.sessions.lock().expect("sessions lock");
        self.stopping.store(true, Ordering::SeqCst);
        // SAFETY: the listener outlives the drain's use of it (the model
        // holds it until run returns); shutting down a listening socket wakes
        // the thread blocked in accept, which then fails.
        unsafe { libc::shutdown(self.listener, libc::SHUT_RD) };
        for (_, stream) in sessions.iter() {
            let _ = stream.shutdown(Shutdown::Read);
        }
    }

    /// Enters a session, unless the model is stopping.
    pub fn register(self: &Arc<Drain>, stream: &TcpStream) -> Option<Registered> {
        let handle = stream.try_clone().ok()?;
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if self.stopping() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        sessions.push((id, handle));
        Some(Registered {
            drain: self.clone(),
            id,
        })
    }

    /// Waits until every session has ended, or `grace` has passed.
    pub fn wait_for_sessions(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut sessions = self.sessions.lock().expect("sessions lock");
        while !sessions.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(sessions = sessions.len(), "grace period over; exiting");
                return;
            }
            sessions = self
                .ended
                .wait_timeout(sessions, left)
                .expect("sessions lock")
                .0;
        }
    }
}

/// Serves `stream` as a session of `drain`: echoed until the peer closes it
/// or the model stops, then half-closed.
pub fn serve_drained(
    stream: TcpStream,
    transform: Transform,
    model: &'static str,
    drain: &Arc<Drain>,
) {
    let Some(_registered) = drain.register(&stream) else {
        return;
    };
    serve_connection(stream, transform, model);
}

/// Echoes `stream` until the peer closes it (or its read side is shut);
/// half-closes it and logs the close line.
pub fn serve_connection(mut stream: TcpStream, transform: Transform, model: &'static str) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let mut traffic = Traffic::default();
    let result =
        echo(&mut stream, transform, &mut traffic).and_then(|()| stream.shutdown(Shutdown::Write));
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
