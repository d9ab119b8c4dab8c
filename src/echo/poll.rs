//! The poll model: one thread, non-blocking sockets, `poll(2)`, like the
//! course's `select`/`poll` servers.
//!
//! How it works: every socket is non-blocking, so no call ever waits. Each
//! turn of the loop hands the kernel the whole list of sockets with what we
//! wait for on each (readable, or writable when a reply is pending) and sleeps
//! in `poll` until at least one is ready; then it accepts, reads, echoes and
//! writes what it can without blocking. A reply the peer is too slow to take
//! stays pending, and that connection is not read again until it is written
//! (backpressure).
//!
//! What it costs: no thread or process per client, only a buffer. But every
//! `poll` call copies the full list into the kernel, which checks every
//! socket, and the loop then scans the full list for the ready ones: the work
//! per wake-up grows with the number of connections, idle ones included.
//! That is the cost `epoll` removes.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use tracing::warn;

use super::Transform;
use super::async_tasks::CHUNK;
use super::nonblocking::Client;

/// Serves every connection from this one thread, forever.
///
/// # Errors
/// The listener cannot be made non-blocking, or `poll` itself fails.
pub fn run(listener: TcpListener, transform: Transform) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut clients: Vec<Client> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        fds.clear();
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for client in &clients {
            let events = if client.has_pending() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            fds.push(libc::pollfd {
                fd: client.stream().as_raw_fd(),
                events,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of fds.len() pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // Walk the clients backwards so removing one keeps the others' indices.
        for index in (0..clients.len()).rev() {
            let revents = fds[index + 1].revents;
            if revents == 0 {
                continue;
            }
            if let Err(why) = clients[index].on_ready(transform, &mut buf) {
                clients.swap_remove(index).close("poll", why);
            }
        }
        if fds[0].revents != 0 {
            accept_all(&listener, &mut clients);
        }
    }
}

fn accept_all(listener: &TcpListener, clients: &mut Vec<Client>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(err) = stream.set_nonblocking(true) {
                    warn!(error = %err, "cannot make a connection non-blocking");
                    continue;
                }
                clients.push(Client::new(stream));
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) => {
                warn!(error = %err, "accept failed");
                return;
            }
        }
    }
}
