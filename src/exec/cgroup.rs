//! A cgroup v2 of its own for each command, so that nothing it starts
//! outlives it.
//!
//! A process group is left by `setsid`, and a double fork leaves the parent
//! chain; a cgroup is left only by a process allowed to write to another
//! cgroup's `cgroup.procs`. So where the server may create cgroups below its
//! own (cgroup v2 mounted, and the server's cgroup writable: root, or a
//! systemd unit with `Delegate=yes`), each command runs in a new child
//! cgroup, and ending the command writes `cgroup.kill`, which kills every
//! process in it at once, whatever session or parent it has by then.
//! Elsewhere [`CommandCgroup::create`] gives `None` and commands are
//! contained by their process group only ([`super::process`]).
//!
//! The command enters its cgroup between fork and exec by writing `0` to a
//! `cgroup.procs` that the server opened: the kernel checks a migration
//! against the credentials the file was opened with, so this works after
//! the child has switched to `run_as`, and the command is inside before its
//! first instruction runs.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a killed cgroup may take to empty before its directory is left
/// behind (the kernel empties it as soon as its processes have exited).
const EMPTYING_LIMIT: Duration = Duration::from_secs(2);

/// One command's cgroup.
#[derive(Debug)]
pub struct CommandCgroup {
    dir: PathBuf,
    procs: File,
}

impl CommandCgroup {
    /// A new empty cgroup below the server's own, or `None` where cgroup v2
    /// is missing or the server may not create cgroups there.
    pub fn create() -> Option<CommandCgroup> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = own_cgroup_dir()?;
        let dir = parent.join(format!(
            "sockit-exec-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).ok()?;
        match File::options().write(true).open(dir.join("cgroup.procs")) {
            Ok(procs) => Some(CommandCgroup { dir, procs }),
            Err(_) => {
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// Makes `command`'s process enter this cgroup before it execs.
    pub fn enter_on_exec(&self, command: &mut std::process::Command) {
        let procs = self.procs.as_raw_fd();
        // SAFETY: the closure runs between fork and exec and makes one
        // write(2) to a descriptor that stays open until the spawn returns
        // (`self` outlives it); it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || {
                if libc::write(procs, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
    }

    /// Kills every process in the cgroup.
    pub fn kill(&self) {
        if let Ok(mut kill) = File::options()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
        {
            let _ = kill.write_all(b"1");
        }
    }

    /// Kills every process in the cgroup, waits (briefly, blocking) for it
    /// to empty, and removes it.
    pub fn kill_and_remove(&self) {
        self.kill();
        let start = std::time::Instant::now();
        while self.populated() && start.elapsed() < EMPTYING_LIMIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(cgroup = %self.dir.display(), error = %err, "exec: cannot remove a command's cgroup");
        }
    }

    fn populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|events| !events.lines().any(|line| line == "populated 0"))
            .unwrap_or(false)
    }
}

/// The directory of the server's own cgroup in the cgroup v2 hierarchy.
fn own_cgroup_dir() -> Option<PathBuf> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = cgroup2_mount(&mountinfo)?;
    Some(mount.join(relative.trim_start_matches('/')))
}

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo`: the fifth field
/// of the line whose file system type (after the ` - `) is `cgroup2`.
fn cgroup2_mount(mountinfo: &str) -> Option<&Path> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        (rest.split(' ').next() == Some("cgroup2")).then_some(())?;
        fields.split(' ').nth(4).map(Path::new)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_among_v1_mounts() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
35 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount(mountinfo.lines().next().unwrap()), None);
    }
}
