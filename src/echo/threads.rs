//! The thread model: a thread per connection, like Python's
//! `socketserver.ThreadingTCPServer`.
//!
//! How it works: the main thread only accepts; each connection gets its own
//! OS thread running the blocking echo loop. While one thread waits in
//! `read`, the kernel runs the others, so slow clients no longer block fast
//! ones.
//!
//! What it costs: each thread has its own stack (8 MiB reserved, of which a
//! few pages are touched), a kernel task, and a context switch whenever it
//! blocks or wakes. Creating a thread per connection adds tens of
//! microseconds to every connect. The cap (`--max-threads`) keeps a flood of
//! clients from exhausting memory: past it, new clients wait in the listen
//! backlog until a thread finishes.

use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing::warn;

use super::Transform;
use super::blocking::{Drain, serve_drained};

/// Counts live connection threads and lets the acceptor wait for a free slot.
#[derive(Debug)]
struct Slots {
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Slots {
    fn take(&self) {
        let mut busy = self.busy.lock().expect("slots lock");
        while *busy >= self.max {
            busy = self.freed.wait(busy).expect("slots lock");
        }
        *busy += 1;
    }

    fn give_back(&self) {
        *self.busy.lock().expect("slots lock") -= 1;
        self.freed.notify_one();
    }
}

/// Serves each connection on its own thread, at most `max_threads` at once,
/// until `drain` stops it; then waits up to `grace` for the sessions to end.
pub fn run(
    listener: &TcpListener,
    transform: Transform,
    max_threads: usize,
    drain: &Arc<Drain>,
    grace: Duration,
) {
    let slots = Arc::new(Slots {
        busy: Mutex::new(0),
        freed: Condvar::new(),
        max: max_threads.max(1),
    });
    for connection in listener.incoming() {
        let stream = match connection {
            Ok(stream) => stream,
            Err(_) if drain.stopping() => break,
            Err(err) => {
                warn!(error = %err, "accept failed");
                continue;
            }
        };
        slots.take();
        let held = slots.clone();
        let drain = drain.clone();
        let spawned = std::thread::Builder::new()
            .name("echo-client".to_owned())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve_drained(stream, transform, "thread", &drain);
                held.give_back();
            });
        if let Err(err) = spawned {
            warn!(error = %err, "cannot start a thread; the client is dropped");
            slots.give_back();
        }
    }
    drain.wait_for_sessions(grace);
}
