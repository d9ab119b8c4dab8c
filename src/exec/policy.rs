//! What the exec server lets clients run, and how: the program check, the
//! environment, the working directory and the user commands run as.
//!
//! Programs are judged by what they resolve to, not by how the client spelled
//! them. A name without a slash is looked up on the server's configured PATH
//! (never the client's: clients cannot set the environment); a name with a
//! slash is taken relative to the working directory. Either way the result is
//! canonicalized (symlinks followed), compared with the allow list (itself
//! resolved the same way at start), and that exact file is executed, so the
//! file checked is the file run. With `shell = false`, every shell the system
//! lists in `/etc/shells` (and `sh`) is refused too, however it is named.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::wire::{Command, Refusal};

/// The PATH commands get when the server's own environment has none.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The exec policy as configured, before anything is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    pub shell: bool,
    /// Program names or paths; empty allows any program.
    pub allow: Vec<String>,
    pub timeout: Duration,
    /// `None`: the home directory of the user commands run as.
    pub working_dir: Option<PathBuf>,
    /// Environment variables passed from the server's environment.
    pub keep_env: Vec<String>,
    /// `None`: commands run as the server's own user.
    pub run_as: Option<String>,
}

/// Why a policy cannot be put in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("refusing to run commands as root")]
    RunningAsRoot,
    #[error("exec.run_as: no user named {0:?}")]
    NoSuchUser(String),
    #[error("exec.run_as: switching to {0:?} needs root")]
    CannotSwitch(String),
    #[error("exec.allow: program {0:?} not found on PATH")]
    AllowedProgramMissing(String),
    #[error("exec.working_dir: {0} is not a directory")]
    NoWorkingDir(PathBuf),
}

impl PolicyError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            PolicyError::RunningAsRoot => Some(
                "set exec.run_as to an unprivileged user (e.g. \"nobody\") for commands to run as"
                    .to_owned(),
            ),
            PolicyError::NoWorkingDir(_) => {
                Some("set exec.working_dir to a directory the command user can enter".to_owned())
            }
            _ => None,
        }
    }
}

/// The user commands run as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The policy in force.
#[derive(Debug, Clone)]
pub struct Policy {
    shell: bool,
    allow: Option<HashSet<PathBuf>>,
    shells: HashSet<PathBuf>,
    timeout: Duration,
    working_dir: PathBuf,
    env: Vec<(OsString, OsString)>,
    search_path: OsString,
    switch_to: Option<Identity>,
}

impl Policy {
    /// Resolves the settings: the user, the PATH, the allow list.
    ///
    /// # Errors
    /// A setting that cannot be put in force, including running as root with
    /// no `run_as`.
    pub fn new(settings: &PolicySettings) -> Result<Policy, PolicyError> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let switch_to = match &settings.run_as {
            None if root => return Err(PolicyError::RunningAsRoot),
            None => None,
            Some(name) => {
                let user =
                    lookup_user(name).ok_or_else(|| PolicyError::NoSuchUser(name.clone()))?;
                // SAFETY: getuid has no preconditions.
                if !root && user.uid != unsafe { libc::getuid() } {
                    return Err(PolicyError::CannotSwitch(name.clone()));
                }
                if user.uid == 0 {
                    return Err(PolicyError::RunningAsRoot);
                }
                Some(user)
            }
        };
        let mut env: Vec<(OsString, OsString)> = settings
            .keep_env
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|value| (name.into(), value)))
            .collect();
        if let Some(user) = &switch_to {
            env.retain(|(name, _)| {
                !["HOME", "USER", "LOGNAME"].contains(&name.to_str().unwrap_or(""))
            });
            env.push(("HOME".into(), user.home.clone().into()));
            env.push(("USER".into(), user.name.clone().into()));
            env.push(("LOGNAME".into(), user.name.clone().into()));
        }
        let search_path = match env.iter().find(|(name, _)| name == "PATH") {
            Some((_, path)) => path.clone(),
            None => {
                env.push(("PATH".into(), FALLBACK_PATH.into()));
                FALLBACK_PATH.into()
            }
        };
        let home = switch_to
            .as_ref()
            .map(|user| user.home.clone())
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
        let working_dir = match &settings.working_dir {
            Some(dir) => dir.clone(),
            None => home
                .filter(|h| h.is_dir())
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        if !working_dir.is_dir() {
            return Err(PolicyError::NoWorkingDir(working_dir));
        }
        let mut policy = Policy {
            shell: settings.shell,
            allow: None,
            shells: HashSet::new(),
            timeout: settings.timeout,
            working_dir,
            env,
            search_path,
            switch_to,
        };
        policy.shells = known_shells(&policy);
        if !settings.allow.is_empty() {
            let mut allow = HashSet::new();
            for program in &settings.allow {
                let resolved = policy
                    .resolve(OsStr::new(program))
                    .ok_or_else(|| PolicyError::AllowedProgramMissing(program.clone()))?;
                allow.insert(resolved);
            }
            policy.allow = Some(allow);
        }
        Ok(policy)
    }

    /// How long a command may run before its process group is killed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The executable `program` names: looked up on PATH, or relative to the
    /// working directory when it has a slash; canonicalized.
    fn resolve(&self, program: &OsStr) -> Option<PathBuf> {
        let is_executable_file = |path: &Path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        let found = if program.as_bytes().contains(&b'/') {
            Some(self.working_dir.join(program)).filter(|p| is_executable_file(p))
        } else if program.is_empty() {
            None
        } else {
            std::env::split_paths(&self.search_path)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join(program))
                .find(|candidate| is_executable_file(candidate))
        };
        found.and_then(|path| path.canonicalize().ok())
    }

    /// Checks a command against the policy and builds the process to spawn:
    /// its own process group, a cleared environment, the working directory,
    /// the configured user, and pipes for all three standard streams.
    ///
    /// # Errors
    /// Why the command may not run, with a message for the client.
    pub fn approve(&self, command: &Command) -> Result<std::process::Command, (Refusal, String)> {
        if matches!(command, Command::Shell(_)) && !self.shell {
            return Err((
                Refusal::NotAllowed,
                "this server does not allow shell commands".to_owned(),
            ));
        }
        let argv: Vec<OsString> = command.argv().into_iter().map(OsString::from_vec).collect();
        let program = &argv[0];
        let Some(resolved) = self.resolve(program) else {
            return Err((
                Refusal::NotFound,
                format!("{}: command not found", program.to_string_lossy()),
            ));
        };
        if matches!(command, Command::Argv(_)) && !self.shell && self.shells.contains(&resolved) {
            return Err((
                Refusal::NotAllowed,
                format!(
                    "{} is a shell, and this server does not allow shell commands",
                    program.to_string_lossy()
                ),
            ));
        }
        if let Some(allow) = &self.allow
            && !allow.contains(&resolved)
        {
            return Err((
                Refusal::NotAllowed,
                format!(
                    "{} ({}) is not in this server's allow list",
                    program.to_string_lossy(),
                    resolved.display()
                ),
            ));
        }
        let mut process = std::process::Command::new(&resolved);
        process
            .arg0(program)
            .args(&argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.working_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(user) = &self.switch_to {
            // The standard library drops supplementary groups when root sets a uid.
            process.gid(user.gid).uid(user.uid);
        }
        Ok(process)
    }
}

/// The canonical paths of the system's shells: `/etc/shells` and `sh`.
fn known_shells(policy: &Policy) -> HashSet<PathBuf> {
    let listed = std::fs::read_to_string("/etc/shells").unwrap_or_default();
    listed
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('/'))
        .filter_map(|line| Path::new(line).canonicalize().ok())
        .chain(policy.resolve(OsStr::new("sh")))
        .collect()
}

/// The passwd entry of `name`.
fn lookup_user(name: &str) -> Option<Identity> {
    let name_c = CString::new(name).ok()?;
    // SAFETY: getpwnam_r writes into the buffers we own and sizes; the
    // returned pointers point into `buffer`, read before it is dropped.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut buffer = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let status = libc::getpwnam_r(
            name_c.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        );
        if status != 0 || result.is_null() {
            return None;
        }
        let home = CStr::from_ptr(entry.pw_dir).to_bytes();
        Some(Identity {
            name: name.to_owned(),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home: PathBuf::from(OsStr::from_bytes(home)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PolicySettings {
        PolicySettings {
            shell: true,
            allow: Vec::new(),
            timeout: Duration::from_secs(60),
            working_dir: Some(std::env::temp_dir()),
            keep_env: vec!["PATH".into()],
            run_as: Some("nobody".into()),
        }
    }

    fn policy(settings: &PolicySettings) -> Policy {
        match Policy::new(settings) {
            Ok(policy) => policy,
            // Not root: run commands as ourselves.
            Err(PolicyError::CannotSwitch(_)) => Policy::new(&PolicySettings {
                run_as: None,
                ..settings.clone()
            })
            .unwrap(),
            Err(err) => panic!("{err}"),
        }
    }

    fn argv(words: &[&str]) -> Command {
        Command::Argv(words.iter().map(|w| w.as_bytes().to_vec()).collect())
    }

    fn refusal(policy: &Policy, command: &Command) -> Option<Refusal> {
        policy.approve(command).err().map(|(why, _)| why)
    }

    #[test]
    fn the_allow_list_judges_the_resolved_program() {
        let policy = policy(&PolicySettings {
            allow: vec!["echo".into(), "ls".into()],
            shell: false,
            ..settings()
        });
        assert_eq!(refusal(&policy, &argv(&["echo", "hi"])), None);
        assert_eq!(refusal(&policy, &argv(&["/bin/echo", "hi"])), None);
        assert_eq!(refusal(&policy, &argv(&["cat"])), Some(Refusal::NotAllowed));
        assert_eq!(refusal(&policy, &argv(&["sh"])), Some(Refusal::NotAllowed));
        assert_eq!(
            refusal(&policy, &argv(&["/bin/sh"])),
            Some(Refusal::NotAllowed)
        );
        assert_eq!(
            refusal(&policy, &argv(&["ls; rm x"])),
            Some(Refusal::NotFound)
        );
        assert_eq!(refusal(&policy, &argv(&["./ls"])), Some(Refusal::NotFound));
        assert_eq!(
            refusal(&policy, &Command::Shell(b"echo hi".to_vec())),
            Some(Refusal::NotAllowed)
        );
    }

    #[test]
    fn without_a_shell_every_shell_is_refused_however_named() {
        let policy = policy(&PolicySettings {
            shell: false,
            ..settings()
        });
        for shell in [
            "sh",
            "/bin/sh",
            "/usr/bin/sh",
            "dash",
            "bash",
            "/bin/../bin/sh",
        ] {
            if policy.resolve(OsStr::new(shell)).is_some() {
                assert_eq!(
                    refusal(&policy, &argv(&[shell, "-c", "id"])),
                    Some(Refusal::NotAllowed),
                    "{shell}"
                );
            }
        }
        assert_eq!(refusal(&policy, &argv(&["echo", "hi"])), None);
    }

    #[test]
    fn the_environment_is_cleared_but_for_the_kept_names() {
        let policy = policy(&settings());
        let approved = policy.approve(&argv(&["env"])).unwrap();
        let names: Vec<_> = approved.get_envs().map(|(k, _)| k.to_owned()).collect();
        assert!(names.iter().any(|n| n == "PATH"));
        assert!(
            !names.iter().any(|n| n == "CARGO_MANIFEST_DIR"),
            "{names:?}"
        );
    }

    #[test]
    fn a_missing_user_is_a_setup_error() {
        let err = Policy::new(&PolicySettings {
            run_as: Some("no-such-user-sockit".into()),
            ..settings()
        })
        .unwrap_err();
        assert!(matches!(err, PolicyError::NoSuchUser(_)), "{err}");
    }
}
