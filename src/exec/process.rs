//! A running command's process group: spawned, killed as a whole, reaped.
//!
//! Each command leads its own process group, so one `kill(-pgid)` reaches
//! everything it started, and, where the system allows it, runs in a cgroup
//! of its own ([`super::cgroup`]), which also holds what left the group with
//! `setsid` or a double fork; both are killed together. The group
//! is killed when the leader exits (a command's processes end with it), on
//! timeout, on Ctrl-C, when the client goes away, and when the
//! [`ProcessGroup`] is dropped, so no path leaves processes behind.
//!
//! The leader is reaped by a blocking waiter that first waits with
//! `WNOWAIT`: while the leader is an unreaped zombie its pid, which is the
//! group id, cannot be reused, so killing the group can never hit an
//! unrelated process. Only after the group is killed is the leader reaped.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

use super::cgroup::CommandCgroup;
use super::wire::ExitStatus;

/// The pipe size asked for the command's standard streams.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// A spawned command: its pipes, its group, and how it will end.
#[derive(Debug)]
pub struct Running {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    pub group: ProcessGroup,
    /// Resolves once the leader has exited, the group is killed, and the
    /// leader is reaped.
    pub exited: oneshot::Receiver<io::Result<std::process::ExitStatus>>,
}

/// Kills its process group (and the command's cgroup) on demand and when
/// dropped, until the leader is reaped.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: libc::pid_t,
    cgroup: Option<Arc<CommandCgroup>>,
    reaped: Arc<AtomicBool>,
}

impl ProcessGroup {
    /// Sends SIGKILL to every process in the group and the cgroup.
    pub fn kill(&self) {
        if !self.reaped.load(Ordering::Acquire) {
            kill_group(self.pgid);
            if let Some(cgroup) = &self.cgroup {
                cgroup.kill();
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill has no memory preconditions; a negative pid names a group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Spawns `command` (which must put the child in its own process group),
/// in a cgroup of its own where one can be made, and starts its waiter.
///
/// # Errors
/// The program cannot be started.
pub fn spawn(mut command: std::process::Command) -> io::Result<Running> {
    let cgroup = CommandCgroup::create().map(Arc::new);
    if let Some(cgroup) = &cgroup {
        cgroup.enter_on_exec(&mut command);
    }
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            if let Some(cgroup) = &cgroup {
                cgroup.kill_and_remove();
            }
            return Err(err);
        }
    };
    let pgid = child.id() as libc::pid_t;
    let reaped = Arc::new(AtomicBool::new(false));
    let group = ProcessGroup {
        pgid,
        cgroup: cgroup.clone(),
        reaped: reaped.clone(),
    };
    for fd in [
        child.stdin.as_ref().map(AsRawFd::as_raw_fd),
        child.stdout.as_ref().map(AsRawFd::as_raw_fd),
        child.stderr.as_ref().map(AsRawFd::as_raw_fd),
    ]
    .into_iter()
    .flatten()
    {
        // Bulk streams move in fewer, larger steps through a 1 MiB pipe
        // than through the default 64 KiB one. Best effort: the system
        // may cap pipe sizes lower.
        // SAFETY: fcntl on a pipe descriptor we own.
        unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
        }
    }
    let stdin = child.stdin.take().map(ChildStdin::from_std).transpose()?;
    let stdout = child.stdout.take().map(ChildStdout::from_std).transpose()?;
    let stderr = child.stderr.take().map(ChildStderr::from_std).transpose()?;
    let (report, exited) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let status = wait_exited(pgid).and_then(|()| {
            kill_group(pgid);
            if let Some(cgroup) = &cgroup {
                cgroup.kill_and_remove();
            }
            child.wait()
        });
        reaped.store(true, Ordering::Release);
        let _ = report.send(status);
    });
    Ok(Running {
        stdin,
        stdout,
        stderr,
        group,
        exited,
    })
}

/// Blocks until `pid` has exited, leaving it unreaped.
fn wait_exited(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: waitid writes only into the zeroed siginfo we own.
        let result = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if result == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The wire form of a process's exit status.
pub fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Exited(code as u8),
        (None, Some(signal)) => ExitStatus::Signaled(signal as u8),
        (None, None) => ExitStatus::Exited(255),
    }
}
