//! Remote exec against a real `sockit serve exec`: commands, streams, exit
//! codes, timeouts and process groups, and the security properties (unknown
//! keys, replays, tampered frames, a server presenting another key, the
//! allow list and `shell = false`).
//!
//! When the tests run as root (as CI does), the server drops commands to
//! `nobody`, so the working directory is made writable for everyone.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use sockit::exec::keys::KeyPair;
use support::{BIN, PATIENCE, ServeProcess};

/// A running exec server and a client set up to talk to it.
struct Exec {
    server: ServeProcess,
    /// The client's data dir: client.key and known_hosts.
    client: tempfile::TempDir,
    /// Where commands run (writable by the command user).
    work: tempfile::TempDir,
    /// Holds authorized_keys.
    _keys: tempfile::TempDir,
    tcp: String,
    unix: PathBuf,
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Exec {
    /// Starts a server whose `[exec]` section has `extra` added.
    fn start(extra: &str) -> Exec {
        Exec::start_with_http(extra, false)
    }

    /// As [`Exec::start`], with the HTTP console on a free port when `http`.
    fn start_with_http(extra: &str, http: bool) -> Exec {
        Exec::start_bound("127.0.0.1", extra, http)
    }

    /// As [`Exec::start_with_http`], listening on `bind` (the `serve.bind` key).
    fn start_bound(bind: &str, extra: &str, http: bool) -> Exec {
        let client = tempfile::tempdir().unwrap();
        let key = KeyPair::generate();
        key.save(&client.path().join("client.key"), false).unwrap();
        let keys = tempfile::tempdir().unwrap();
        let authorized = keys.path().join("authorized_keys");
        std::fs::write(&authorized, format!("# test\n{} tester\n", key.public())).unwrap();
        let work = tempfile::tempdir().unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let unix = keys.path().join("exec.sock");
        let run_as = if running_as_root() { "nobody" } else { "" };
        let config = format!(
            "[serve]\nbind = {bind:?}\n[echo]\nenabled = false\n[http]\nenabled = {http}\nport = 0\n[bot]\nenabled = false\n[ftp]\nenabled = false\n\
             [exec]\nport = 0\nunix_path = {unix:?}\nauthorized_keys = {authorized:?}\n\
             working_dir = {work:?}\nrun_as = {run_as:?}\n{extra}\n",
            work = work.path(),
        );
        let server = ServeProcess::with_config(&config, if http { 3 } else { 2 });
        let tcp = server.address("exec", "tcp");
        Exec {
            server,
            client,
            work,
            _keys: keys,
            tcp,
            unix,
        }
    }

    /// `sockit exec --data-dir <client> ADDR ARGS...`, not yet run.
    fn command(&self, addr: &str, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(["exec", "--data-dir"])
            .arg(self.client.path())
            .arg(addr)
            .args(args);
        command
    }

    /// Runs a command over TCP with no stdin.
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(&self.tcp, args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn work(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn server_key(&self) -> String {
        KeyPair::load(&self.server.data_dir().join("exec.key"))
            .unwrap()
            .public()
            .to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &std::process::Output) -> i32 {
    output
        .status
        .code()
        .expect("the client exits, it is not killed")
}

#[test]
fn commands_run_with_their_output_and_exit_codes() {
    let exec = Exec::start("");
    let hi = exec.run(&["--", "echo", "hi"]);
    assert_eq!(text(&hi.stdout), "hi\n");
    assert_eq!(code(&hi), 0, "{}", text(&hi.stderr));
    assert!(
        text(&hi.stderr).contains("pinned the server key"),
        "first use pins: {}",
        text(&hi.stderr)
    );
    assert_eq!(code(&exec.run(&["--", "false"])), 1);
    let killed = exec.run(&["--shell", "kill -9 $$"]);
    assert_eq!(code(&killed), 137);
    let missing = exec.run(&["--", "no-such-program-sockit"]);
    assert_eq!(code(&missing), 127);
    assert!(text(&missing.stderr).contains("command not found"));
    // The second connection finds the key pinned and says nothing about it.
    let again = exec.run(&["--", "true"]);
    assert_eq!(code(&again), 0);
    assert!(
        !text(&again.stderr).contains("pinned"),
        "{}",
        text(&again.stderr)
    );
    // Every command is in the audit log, with the key's name.
    exec.server
        .wait_for_stderr("argv=[\"false\"] status=\"exited 1\"");
    assert!(exec.server.stderr().contains("key=tester"));
}

#[test]
fn an_ipv6_address_in_brackets_reaches_the_server() {
    let exec = Exec::start_bound("::", "", false);
    let port = exec.tcp.rsplit(':').next().unwrap();
    let output = exec
        .command(&format!("[::1]:{port}"), &["--", "echo", "six"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert_eq!(output.stdout, b"six\n");
}

#[test]
fn sockit_s_own_failures_exit_255_as_ssh_does() {
    let exec = Exec::start("");
    let output = exec
        .command("127.0.0.1:x", &["--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), 255, "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("the port must be a number"),
        "{}",
        text(&output.stderr)
    );

    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["exec", "--data-dir"])
        .arg(empty.path())
        .args([&exec.tcp, "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), 255, "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("client.key"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn stdout_and_stderr_arrive_on_their_own_streams() {
    let exec = Exec::start("");
    let output = exec.run(&[
        "--shell",
        "for i in 1 2 3; do echo out$i; echo err$i >&2; done",
    ]);
    assert_eq!(code(&output), 0);
    assert_eq!(text(&output.stdout), "out1\nout2\nout3\n");
    let remote_stderr: String = text(&output.stderr)
        .lines()
        .filter(|line| !line.starts_with("sockit: pinned"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(remote_stderr, "err1\nerr2\nerr3\n");
}

#[test]
fn commands_run_over_a_unix_socket_too() {
    let exec = Exec::start("");
    let output = exec
        .command(exec.unix.to_str().unwrap(), &["--", "echo", "unix"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(text(&output.stdout), "unix\n", "{}", text(&output.stderr));
}

/// Deterministic pseudo-random bytes (xorshift), so nothing compresses.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The peak resident memory of a live process, in KiB (`VmHWM`). Read from
/// /proc while the process runs: the kernel's rusage figure for a child would
/// include the test process's own memory from before the child's exec.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads `stdout` to its end, hashing it and sampling `pid`'s peak memory
/// every few MiB. Returns the hash, the byte count and the last sample.
fn hash_output(mut stdout: impl Read, pid: u32) -> (Vec<u8>, usize, u64) {
    let mut hash = Sha256::new();
    let mut total = 0;
    let mut peak = 0;
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = stdout.read(&mut buffer).unwrap();
        if n == 0 {
            break (hash.finalize().to_vec(), total, peak);
        }
        if total >> 22 != (total + n) >> 22 {
            peak = peak_rss_kib(pid).unwrap_or(peak);
        }
        total += n;
        hash.update(&buffer[..n]);
    }
}

const HUNDRED_MIB: usize = 100 << 20;
/// The client must stream: its peak memory stays far below what it moves.
const CLIENT_MEMORY_LIMIT_KIB: u64 = 48 << 10;

#[test]
fn a_hundred_mib_of_output_arrives_intact_in_bounded_client_memory() {
    let exec = Exec::start("");
    let data = noise(HUNDRED_MIB, 7);
    let file = exec.work("big");
    std::fs::write(&file, &data).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let expected = Sha256::digest(&data);
    drop(data);
    let mut child = exec
        .command(&exec.tcp, &["--", "cat", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (hash, total, peak_kib) = hash_output(child.stdout.take().unwrap(), child.id());
    let status = child.wait().unwrap().code().unwrap();
    assert_eq!(status, 0);
    assert_eq!(total, HUNDRED_MIB);
    assert_eq!(hash, expected.to_vec(), "the output differs from the file");
    assert!(
        peak_kib < CLIENT_MEMORY_LIMIT_KIB,
        "the client peaked at {peak_kib} KiB for 100 MiB"
    );
}

#[test]
fn a_hundred_mib_of_stdin_comes_back_through_cat() {
    let exec = Exec::start("");
    let mut child = exec
        .command(&exec.tcp, &["--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let data = noise(HUNDRED_MIB, 11);
        let digest = Sha256::digest(&data);
        for chunk in data.chunks(1 << 20) {
            stdin.write_all(chunk).unwrap();
        }
        digest
    });
    let (hash, total, peak_kib) = hash_output(child.stdout.take().unwrap(), child.id());
    let sent = writer.join().unwrap();
    let status = child.wait().unwrap().code().unwrap();
    assert_eq!(status, 0);
    assert_eq!(total, HUNDRED_MIB);
    assert_eq!(
        hash,
        sent.to_vec(),
        "what came back differs from what went in"
    );
    assert!(
        peak_kib < CLIENT_MEMORY_LIMIT_KIB,
        "the client peaked at {peak_kib} KiB"
    );
}

/// Every process's (pid, state, parent pid, process group), from /proc.
fn processes() -> Vec<(i32, String, i32, i32)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let number = |i: usize| fields[i].parse::<i32>().unwrap();
        all.push((pid, fields[0].to_owned(), number(1), number(2)));
    }
    all
}

/// Processes in group `pgid` that are still alive (zombies are dead: they
/// only wait for their parent to collect them).
fn live_members(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, state, _, group)| *group == pgid && state != "Z")
        .map(|(pid, ..)| pid)
        .collect()
}

/// Zombie children of `parent`: children it has not reaped.
fn zombie_children(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, state, ppid, _)| *ppid == parent && state == "Z")
        .map(|(pid, ..)| pid)
        .collect()
}

#[test]
fn a_command_that_outlives_the_timeout_dies_with_its_children() {
    let exec = Exec::start("timeout = \"2s\"");
    let output = exec.run(&["--shell", "sleep 300 & sleep 300 & echo $$; wait"]);
    assert_eq!(code(&output), 137, "{}", text(&output.stderr));
    let pgid: i32 = text(&output.stdout).trim().parse().unwrap();
    assert_eq!(
        live_members(pgid),
        Vec::<i32>::new(),
        "processes of the group survived"
    );
    exec.server.wait_for_stderr("status=\"timed_out\"");
}

/// Live processes whose command line is exactly `argv`.
fn running(argv: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    processes()
        .into_iter()
        .filter(|(_, state, ..)| state != "Z")
        .filter(|(pid, ..)| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| line == wanted)
        })
        .map(|(pid, ..)| pid)
        .collect()
}

#[test]
fn processes_that_leave_the_group_die_with_the_command() {
    let exec = Exec::start("timeout = \"2s\"");
    // `setsid -f` forks a child into a new session and exits at once.
    let output = exec.run(&["--", "setsid", "-f", "sleep", "4141"]);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    eventually("the escaped sleep after the command ended", || {
        running(&["sleep", "4141"]).is_empty()
    });
    // The same from a command that runs on into its timeout.
    let output = exec.run(&["--shell", "setsid -f sleep 4142; sleep 300"]);
    assert_eq!(code(&output), 137, "{}", text(&output.stderr));
    eventually("the escaped sleep after the timeout", || {
        running(&["sleep", "4142"]).is_empty()
    });
}

/// Polls until `done` holds; fails the test after [`PATIENCE`].
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_dropped_client_kills_the_remote_process_group() {
    let exec = Exec::start("");
    let mut child = exec
        .command(&exec.tcp, &["--shell", "sleep 300 & echo $$; sleep 300"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pgid: i32 = line.trim().parse().unwrap();
    eventually("sh and both sleeps run", || live_members(pgid).len() == 3);
    child.kill().unwrap();
    child.wait().unwrap();
    eventually("the group is killed", || live_members(pgid).is_empty());
    exec.server.wait_for_stderr("killed (client gone");
}

#[test]
fn a_thousand_commands_leave_no_zombies() {
    let exec = Exec::start("");
    let keys = KeyPair::load(&exec.client.path().join("client.key")).unwrap();
    let target = sockit::exec::client::Target::parse(&exec.tcp).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sockit::exec::client::{ServerTrust, Session};
        use sockit::exec::wire::{Command as Run, ExitStatus};
        let server_key = exec.server_key().parse().unwrap();
        let (mut session, _) = Session::connect(&target, &keys, ServerTrust::Key(server_key))
            .await
            .unwrap();
        let (_interrupt, mut interrupts) = tokio::sync::mpsc::channel(1);
        for i in 0..1000 {
            let (no_input, input) = tokio::sync::mpsc::channel(1);
            drop(no_input);
            let mut out = Vec::new();
            let status = session
                .run(
                    Run::Argv(vec![b"echo".to_vec(), i.to_string().into_bytes()]),
                    input,
                    &mut out,
                    &mut tokio::io::sink(),
                    &mut interrupts,
                )
                .await
                .unwrap();
            assert_eq!(status, ExitStatus::Exited(0));
            assert_eq!(out, format!("{i}\n").into_bytes());
        }
    });
    assert_eq!(zombie_children(exec.server.pid()), Vec::<i32>::new());
}

#[test]
fn an_unknown_key_is_rejected_and_nothing_runs() {
    let exec = Exec::start("");
    let stranger = tempfile::tempdir().unwrap();
    KeyPair::generate()
        .save(&stranger.path().join("client.key"), false)
        .unwrap();
    let marker = exec.work("marker");
    let output = Command::new(BIN)
        .args(["exec", "--data-dir"])
        .arg(stranger.path())
        .args([&exec.tcp, "--", "touch", marker.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), 255);
    assert!(
        text(&output.stderr).contains("server rejected this key"),
        "{}",
        text(&output.stderr)
    );
    assert!(!marker.exists(), "the command ran");
    exec.server.wait_for_stderr("unknown client key");
    exec.server
        .wait_for_stderr("login failed: service=exec peer=127.0.0.1 user=\"SHA256:");
}

#[test]
fn a_server_presenting_another_key_is_refused() {
    let exec = Exec::start("");
    let impostor = Exec::start("");
    let marker = impostor.work("marker");
    // The client knows the real server at the impostor's address.
    std::fs::write(
        exec.client.path().join("known_hosts"),
        format!("{} {}\n", impostor.tcp, exec.server_key()),
    )
    .unwrap();
    let output = exec
        .command(&impostor.tcp, &["--", "touch", marker.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), 255);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("server key") && stderr.contains("has changed"),
        "{stderr}"
    );
    assert!(stderr.contains("line 1 of"), "{stderr}");
    assert!(!marker.exists(), "the command ran");
    // The same with the key given on the command line.
    let output = exec
        .command(
            &impostor.tcp,
            &[
                "--server-key",
                &exec.server_key(),
                "--",
                "touch",
                marker.to_str().unwrap(),
            ],
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), 255);
    assert!(text(&output.stderr).contains("not the expected one"));
    assert!(!marker.exists(), "the command ran");
}

/// Which way a proxied frame travels.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Direction {
    ToServer,
    ToClient,
}

/// A TCP proxy in front of the server's Unix socket (Unix peers are not
/// throttled, so many bad sessions stay fast). It forwards whole frames,
/// flips one bit in the payload of frame `tamper` (if any) and records the
/// bytes sent to the server.
struct Proxy {
    address: String,
    to_server: Arc<Mutex<Vec<u8>>>,
}

fn read_frame(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut header = [0; 4];
    stream.read_exact(&mut header).ok()?;
    let mut frame = header.to_vec();
    frame.resize(4 + u32::from_be_bytes(header) as usize, 0);
    stream.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

impl Proxy {
    fn start(server: &Path, tamper: Option<(Direction, usize)>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let record = to_server.clone();
        let server = server.to_owned();
        std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let upstream = UnixStream::connect(&server).unwrap();
            let relay = move |mut from: Box<dyn Read + Send>,
                              mut to: Box<dyn Write + Send>,
                              direction: Direction,
                              record: Option<Arc<Mutex<Vec<u8>>>>| {
                let mut index = 0;
                while let Some(mut frame) = read_frame(&mut from) {
                    if tamper == Some((direction, index)) && frame.len() > 4 {
                        let middle = 4 + (frame.len() - 4) / 2;
                        frame[middle] ^= 0x10;
                    }
                    if let Some(record) = &record {
                        record.lock().unwrap().extend_from_slice(&frame);
                    }
                    if to.write_all(&frame).is_err() {
                        break;
                    }
                    index += 1;
                }
            };
            let (client_read, client_write) = (client.try_clone().unwrap(), client);
            let (server_read, server_write) = (upstream.try_clone().unwrap(), upstream);
            let up = std::thread::spawn(move || {
                relay(
                    Box::new(client_read),
                    Box::new(server_write.try_clone().unwrap()),
                    Direction::ToServer,
                    Some(record),
                );
                let _ = server_write.shutdown(std::net::Shutdown::Both);
            });
            relay(
                Box::new(server_read),
                Box::new(client_write.try_clone().unwrap()),
                Direction::ToClient,
                None,
            );
            let _ = client_write.shutdown(std::net::Shutdown::Both);
            let _ = up.join();
        });
        Proxy { address, to_server }
    }
}

#[test]
fn a_recorded_session_replayed_byte_for_byte_runs_nothing() {
    let exec = Exec::start("");
    let marker = exec.work("marker");
    let proxy = Proxy::start(&exec.unix, None);
    let output = exec
        .command(&proxy.address, &["--", "touch", marker.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert!(marker.exists(), "the recorded session ran its command");
    std::fs::remove_file(&marker).unwrap();

    let recorded = proxy.to_server.lock().unwrap().clone();
    let mut replay = UnixStream::connect(&exec.unix).unwrap();
    replay.set_read_timeout(Some(PATIENCE)).unwrap();
    replay.write_all(&recorded).unwrap();
    let mut answer = Vec::new();
    // The server answers the first message, then closes on the second.
    let _ = replay.read_to_end(&mut answer);
    exec.server.wait_for_stderr("handshake failed");
    assert!(!marker.exists(), "the replayed session ran its command");
}

#[test]
fn a_flipped_bit_in_any_frame_closes_the_connection() {
    let exec = Exec::start("");
    // To the server: handshake 1 and 3, run, stdin, end of stdin.
    // To the client: handshake 2, welcome, output, exit.
    let cases = (0..5)
        .map(|i| (Direction::ToServer, i))
        .chain((0..4).map(|i| (Direction::ToClient, i)));
    for (direction, index) in cases {
        let proxy = Proxy::start(&exec.unix, Some((direction, index)));
        let mut child = exec
            .command(&proxy.address, &["--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"x").unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            code(&output),
            255,
            "frame {index} {direction:?}: stdout {:?}, stderr {}",
            text(&output.stdout),
            text(&output.stderr)
        );
        // Until the input reached cat, or its output reached the client,
        // nothing may come out.
        let before_output = match direction {
            Direction::ToServer => index <= 3,
            Direction::ToClient => index <= 2,
        };
        if before_output {
            assert_eq!(text(&output.stdout), "", "frame {index} {direction:?}");
        }
    }
}

#[test]
fn no_shell_without_an_allow_list_is_warned_about_because_env_reaches_one() {
    let exec = Exec::start("shell = false");
    exec.server
        .wait_for_stderr("shell = false without an allow list does not stop shell commands");
    // What the warning says: a shell is one `env` away.
    let output = exec.run(&["--", "env", "sh", "-c", "echo from a shell"]);
    assert_eq!(text(&output.stdout), "from a shell\n");
    // With an allow list the same is refused.
    let exec = Exec::start("shell = false\nallow = [\"echo\"]");
    let output = exec.run(&["--", "env", "sh", "-c", "echo from a shell"]);
    assert_ne!(code(&output), 0);
    assert_eq!(text(&output.stdout), "");
    assert!(
        !exec.server.stderr().contains("without an allow list"),
        "{}",
        exec.server.stderr()
    );
}

#[test]
fn the_allow_list_and_no_shell_hold_against_evasions() {
    let exec = Exec::start("shell = false\nallow = [\"echo\", \"ls\"]");
    let marker = exec.work("marker");
    let touch = format!("touch {}", marker.display());
    // A program named like an allowed one, reachable only by a path.
    let bin = exec.work("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = bin.join("echo");
    std::fs::write(&fake, format!("#!/bin/sh\n{touch}\n")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/bin/sh", exec.work("ls")).unwrap();

    let attempts: &[&[&str]] = &[
        &["--", "sh", "-c", &touch],
        &["--", "/bin/sh", "-c", &touch],
        &["--", "/usr/bin/../bin/sh", "-c", &touch],
        &["--", "./ls", "-c", &touch],
        &["--", "ls; rm x"],
        &["--", "ls && sh"],
        &["--", "bin/echo"],
        &["--", "./bin/echo"],
        &["--", "env", "PATH=bin", "echo"],
        &["--", "touch", marker.to_str().unwrap()],
        &["--shell", &touch],
        &["--shell", "ls"],
    ];
    for attempt in attempts {
        let output = exec.run(attempt);
        assert!(
            matches!(code(&output), 126 | 127),
            "{attempt:?} was not refused: exit {} {}",
            code(&output),
            text(&output.stderr)
        );
        assert!(!marker.exists(), "{attempt:?} ran");
    }
    // What is allowed still runs, by name and by path.
    assert_eq!(text(&exec.run(&["--", "echo", "ok"]).stdout), "ok\n");
    assert_eq!(text(&exec.run(&["--", "/bin/echo", "ok"]).stdout), "ok\n");
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k");
    let output = support::run_sockit(&["keygen", "-o", file.to_str().unwrap()], b"");
    assert!(output.status.success());
    let public = text(&output.stdout);
    assert_eq!(public.trim().len(), 44, "one base64 line: {public:?}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let shown = support::run_sockit(&["keygen", "--show", "-o", file.to_str().unwrap()], b"");
    assert_eq!(text(&shown.stdout), public);
    let again = support::run_sockit(&["keygen", "-o", file.to_str().unwrap()], b"");
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn serve_without_authorized_keys_says_how_to_add_one() {
    let server = ServeProcess::with_config(
        "[echo]\nport = 0\nudp = false\n[http]\nenabled = false\n[bot]\nenabled = false\n[ftp]\nenabled = false\n",
        1,
    );
    let note = server.wait_for_stderr("exec not started");
    assert!(note.contains("sockit keygen"), "{note}");
}

#[test]
fn as_root_without_run_as_the_server_refuses_to_start() {
    if !running_as_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("ak");
    std::fs::write(&keys, format!("{} someone\n", KeyPair::generate().public())).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[exec]\nport = 0\nauthorized_keys = {keys:?}\n"),
    )
    .unwrap();
    let output = support::run_sockit(
        &[
            "serve",
            "exec",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        b"",
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("root") && stderr.contains("run_as"),
        "{stderr}"
    );
}

#[test]
fn the_console_counts_commands_by_exit_status() {
    let exec = Exec::start_with_http("", true);
    assert_eq!(code(&exec.run(&["--", "true"])), 0);
    assert_eq!(code(&exec.run(&["--", "false"])), 1);
    assert_eq!(code(&exec.run(&["--", "no-such-program-sockit"])), 127);
    exec.server.wait_for_stderr("status=\"refused");
    let mut http = std::net::TcpStream::connect(exec.server.address("http", "tcp")).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).unwrap();
    for line in [
        "sockit_exec_commands_total{outcome=\"exited\",code=\"0\"} 1",
        "sockit_exec_commands_total{outcome=\"exited\",code=\"1\"} 1",
        "sockit_exec_commands_total{outcome=\"refused\",code=\"\"} 1",
        "sockit_connections_total{service=\"exec\"} 3",
    ] {
        assert!(response.contains(line), "no `{line}` in:\n{response}");
    }
}
