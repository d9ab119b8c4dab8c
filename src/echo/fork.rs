//! The fork model: a process per connection, like Python's
//! `socketserver.ForkingTCPServer` and the classic Unix servers.
//!
//! How it works: the parent accepts, then `fork(2)`s. The child is a copy of
//! the parent; it closes its copy of the listening socket, echoes its one
//! connection with the blocking loop, and exits. The parent closes its copy
//! of the connection and goes back to `accept`.
//!
//! Children that exit become zombies until their parent collects their exit
//! status with `wait`. Here a `SIGCHLD` handler reaps every finished child
//! with `waitpid(-1, WNOHANG)`, so none linger. Each child also asks the
//! kernel (`PR_SET_PDEATHSIG`) to be killed if the parent dies, so none is
//! left behind when the server stops.
//!
//! Forking copies the address space lazily (copy on write), but a process
//! still costs a kernel task, page tables and a few hundred KiB of private
//! memory, and `fork` takes far longer than spawning a thread. It must
//! happen before any other thread exists: a child gets only the forking
//! thread, and a lock another thread held at that moment stays locked in the
//! child forever. That is why `sockit` starts no async runtime for this model.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use tracing::warn;

use super::Transform;
use super::blocking::serve_connection;

/// Reaps every child that has exited; runs as the `SIGCHLD` handler.
extern "C" fn reap_children(_signal: libc::c_int) {
    // SAFETY: waitpid and errno access are async-signal-safe; errno is
    // restored so the interrupted code sees its own value.
    unsafe {
        let saved = *libc::__errno_location();
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        *libc::__errno_location() = saved;
    }
}

fn install_reaper() -> io::Result<()> {
    // SAFETY: a zeroed sigaction with a valid handler and flags; the handler
    // only calls async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = reap_children as *const () as usize;
        action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Serves each connection in a child process, forever.
///
/// # Errors
/// The `SIGCHLD` handler cannot be installed.
pub fn run(listener: TcpListener, transform: Transform) -> io::Result<()> {
    install_reaper()?;
    let parent = std::process::id() as libc::pid_t;
    for connection in listener.incoming() {
        let stream = match connection {
            Ok(stream) => stream,
            Err(err) => {
                warn!(error = %err, "accept failed");
                continue;
            }
        };
        // SAFETY: this process has a single thread (no runtime, no other
        // threads were started), so the child inherits no held locks.
        match unsafe { libc::fork() } {
            -1 => warn!(error = %io::Error::last_os_error(), "fork failed; the client is dropped"),
            0 => {
                // SAFETY: prctl and getppid are plain syscalls; the close is
                // of the child's own copy of the listening socket.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() != parent {
                        libc::_exit(0); // the parent died before prctl took effect
                    }
                    libc::close(listener.as_raw_fd());
                }
                serve_connection(stream, transform, "fork");
                // SAFETY: leave without running the parent's exit handlers.
                unsafe { libc::_exit(0) };
            }
            _child => drop(stream),
        }
    }
    Ok(())
}
