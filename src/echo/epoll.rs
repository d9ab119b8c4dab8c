//! The epoll model: an event loop on `epoll(7)` through mio; with
//! `--workers N`, N such loops on N threads, each with its own listening
//! socket on the same port (`SO_REUSEPORT`), the kernel spreading new
//! connections among them.
//!
//! How it works: each socket is registered with the kernel once, with what
//! we wait for. `epoll_wait` then returns only the sockets that became ready,
//! so a wake-up costs work in proportion to the ready sockets, not to all of
//! them: ten thousand idle connections cost memory but no time. mio's
//! registrations are edge-triggered: readiness is reported once per change,
//! so after a readable event the loop reads until the socket is drained (a
//! read shorter than the buffer says so, without a read(2) that would block)
//! or a reply is left pending, when it waits for writable instead. The
//! registration changes only when what the loop waits for changes: an echo
//! that keeps up costs one read and one write per message, no epoll_ctl.
//!
//! What it costs: a buffer per pending reply and one kernel registration per
//! socket. This is the design of nginx, Redis, and of tokio's I/O driver
//! underneath the async model.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tracing::warn;

use super::Transform;
use super::async_tasks::CHUNK;
use super::nonblocking::{Client, Progress};

const LISTENER: Token = Token(0);

/// Runs one event loop on `listener` forever.
///
/// # Errors
/// The loop cannot be set up, or `epoll_wait` fails.
pub fn run(listener: TcpListener, transform: Transform) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut next_token = 1usize;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if let Err(err) = poll.poll(&mut events, None) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut clients, &mut next_token);
                continue;
            }
            let token = event.token();
            let Some(client) = clients.get_mut(&token) else {
                continue;
            };
            // A close that arrived with the last bytes shares their edge: no
            // later event will report it, so it is read now.
            let closing = event.is_read_closed() || event.is_error();
            let was_pending = client.has_pending();
            let outcome = loop {
                match client.on_ready(transform, &mut buf) {
                    Ok(Progress::More) => continue,
                    Ok(Progress::Drained) if closing => continue,
                    Ok(Progress::Drained | Progress::Blocked) => break Ok(()),
                    Err(why) => break Err(why),
                }
            };
            let fd = client.stream().as_raw_fd();
            let rearmed = outcome.and_then(|()| {
                if client.has_pending() == was_pending {
                    return Ok(());
                }
                // Re-registering also reports what is ready now, such as
                // bytes that came while the loop waited to write.
                let interest = if client.has_pending() {
                    Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry()
                    .reregister(&mut SourceFd(&fd), token, interest)
                    .map_err(Into::into)
            });
            if let Err(why) = rearmed {
                let client = clients.remove(&token).expect("looked up above");
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
                client.close("epoll", why);
            }
        }
    }
}

fn accept_all(
    listener: &mio::net::TcpListener,
    poll: &Poll,
    clients: &mut HashMap<Token, Client>,
    next_token: &mut usize,
) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let stream = std::net::TcpStream::from(stream);
                let token = Token(*next_token);
                *next_token += 1;
                let fd = stream.as_raw_fd();
                if let Err(err) =
                    poll.registry()
                        .register(&mut SourceFd(&fd), token, Interest::READABLE)
                {
                    warn!(error = %err, "cannot watch a connection");
                    continue;
                }
                clients.insert(token, Client::new(stream));
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) => {
                warn!(error = %err, "accept failed");
                return;
            }
        }
    }
}
