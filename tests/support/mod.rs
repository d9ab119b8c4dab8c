//! Helpers shared by the integration tests: starting the real `sockit` binary
//! and learning its endpoints from the lines it prints, plus bounded waits.
//!
//! Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod console_client;
pub mod ftp_client;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sockit");

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Awaits `future`, failing the test if it takes longer than [`PATIENCE`].
pub async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: no result within {PATIENCE:?}"),
    }
}

/// One `service  protocol  address` line printed by `sockit serve`.
#[derive(Debug, Clone)]
pub struct PrintedEndpoint {
    pub service: String,
    pub protocol: String,
    pub address: String,
}

/// A `sockit serve ...` child process, killed when dropped.
pub struct ServeProcess {
    /// The process's own data dir, removed with it.
    data: Option<tempfile::TempDir>,
    child: Option<Child>,
    pid: i32,
    pub endpoints: Vec<PrintedEndpoint>,
    stderr: Arc<(Mutex<String>, Condvar)>,
    /// Says when stderr has reached its end: all the process wrote is in.
    stderr_ended: mpsc::Receiver<()>,
}

impl ServeProcess {
    /// Runs `sockit serve --data-dir <fresh temp dir> ARGS...` and waits for
    /// `lines` endpoint lines.
    pub fn serve(args: &[&str], lines: usize) -> ServeProcess {
        let data = tempfile::tempdir().unwrap();
        let mut all = vec!["serve", "--data-dir", data.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let mut process = ServeProcess::start(&all, lines);
        process.data = Some(data);
        process
    }

    /// Runs `sockit serve` with `config` as its config file and a fresh data
    /// dir (the file lives there), and waits for `lines` endpoint lines.
    pub fn with_config(config: &str, lines: usize) -> ServeProcess {
        ServeProcess::with_config_through(&[], config, lines)
    }

    /// As [`ServeProcess::with_config`], with `sockit` started by `launcher`,
    /// a command that runs what follows it (`ip netns exec NAME` runs it in
    /// a network namespace).
    pub fn with_config_through(launcher: &[&str], config: &str, lines: usize) -> ServeProcess {
        let data = tempfile::tempdir().unwrap();
        let file = data.path().join("sockit.toml");
        std::fs::write(&file, config).unwrap();
        let dir = data.path().to_str().unwrap();
        let args = [
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            dir,
        ];
        let command = match launcher.split_first() {
            None => Command::new(BIN),
            Some((program, launcher_args)) => {
                let mut command = Command::new(program);
                command.args(launcher_args).arg(BIN);
                command
            }
        };
        let mut process = ServeProcess::spawn(command, &args, &[], lines);
        process.data = Some(data);
        process
    }

    /// The data dir of a process started by [`ServeProcess::serve`] or
    /// [`ServeProcess::with_config`].
    pub fn data_dir(&self) -> &std::path::Path {
        self.data
            .as_ref()
            .expect("started with its own data dir")
            .path()
    }

    /// Starts `sockit` with `args` and waits until it has printed `lines`
    /// endpoint lines (its readiness signal: each is printed after binding).
    pub fn start(args: &[&str], lines: usize) -> ServeProcess {
        ServeProcess::start_with_env(args, &[], lines)
    }

    /// As [`ServeProcess::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], lines: usize) -> ServeProcess {
        ServeProcess::spawn(Command::new(BIN), args, env, lines)
    }

    /// Runs `command` (sockit, or what launches it) with `args` and `env`
    /// and waits for `lines` endpoint lines.
    fn spawn(
        mut command: Command,
        args: &[&str],
        env: &[(&str, &str)],
        lines: usize,
    ) -> ServeProcess {
        let mut child = command
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the sockit binary starts");
        let stderr = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let collected = stderr.clone();
        let (ended, stderr_ended) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (text, grew) = &*collected;
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
                grew.notify_all();
            }
            let _ = ended.send(());
        });
        let (tx, rx) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = ServeProcess {
            data: None,
            pid: child.id() as i32,
            child: Some(child),
            endpoints: Vec::new(),
            stderr,
            stderr_ended,
        };
        let deadline = Instant::now() + PATIENCE;
        while process.endpoints.len() < lines {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => panic!(
                    "sockit {args:?} printed {} of {lines} endpoint lines; stderr:\n{}",
                    process.endpoints.len(),
                    process.stderr()
                ),
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "unexpected endpoint line {line:?}");
            process.endpoints.push(PrintedEndpoint {
                service: fields[0].to_owned(),
                protocol: fields[1].to_owned(),
                address: fields[2].to_owned(),
            });
        }
        process
    }

    /// The address printed for `service` over `protocol`.
    pub fn address(&self, service: &str, protocol: &str) -> String {
        self.endpoints
            .iter()
            .find(|e| e.service == service && e.protocol == protocol)
            .unwrap_or_else(|| panic!("no {service} {protocol} endpoint in {:?}", self.endpoints))
            .address
            .clone()
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("the process was not waited for yet");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(status) => {
                // The process has gone, but the last of its stderr may still
                // be in the pipe: wait for the reader to reach the end, so
                // that `stderr()` has all of it. (A child process it left
                // behind could hold the pipe open; then go on after a while.)
                let _ = self.stderr_ended.recv_timeout(PATIENCE);
                status.expect("wait for sockit")
            }
            Err(_) => {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                panic!(
                    "sockit did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                )
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` and returns the line holding it.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        // Only a whole line: a line may arrive in pieces (an unbuffered
        // stderr writes each piece of a formatted line on its own).
        let whole_line = |text: &str| {
            text.split_inclusive('\n')
                .find(|line| line.ends_with('\n') && line.contains(needle))
                .map(|line| line.trim_end().to_owned())
        };
        let (text, grew) = &*self.stderr;
        let guard = text.lock().unwrap();
        let (guard, timeout) = grew
            .wait_timeout_while(guard, PATIENCE, |text| whole_line(text).is_none())
            .unwrap();
        assert!(!timeout.timed_out(), "no {needle:?} on stderr:\n{}", *guard);
        whole_line(&guard).unwrap()
    }

    /// The password of the `admin` user `sockit serve` created on first start.
    pub fn admin_password(&self) -> String {
        let line = self.wait_for_stderr("created user `admin` with password ");
        line.split("with password ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a fresh self-signed certificate for `localhost` and its key as
/// PEM files in `dir`; returns their paths (certificate, key).
pub fn self_signed_pair(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    (cert_file, key_file)
}

/// Runs `sockit` with `args` to completion, with `stdin` as its input.
pub fn run_sockit(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sockit binary starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("sockit runs");
    writer.join().unwrap();
    output
}
