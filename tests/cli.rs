//! The `sockit` binary as a user runs it: the CLI contract, `sockit serve`,
//! `sockit connect` on a pipe and on a terminal, shutdown on SIGTERM, and
//! interop with the course's own Python clients and servers.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{BIN, PATIENCE, ServeProcess, run_sockit};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn version_and_help_work() {
    let version = run_sockit(&["--version"], b"");
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sockit "));
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["serve", "echo", "--help"],
        &["connect", "--help"],
    ] {
        let help = run_sockit(args, b"");
        assert!(help.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Example"),
            "{args:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let output = run_sockit(&["serve", "--no-such-flag"], b"");
    assert_eq!(output.status.code(), Some(2));
    let output = run_sockit(&["connect", "carrier-pigeon", "x"], b"");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run_sockit(&["completions", shell], b"");
        assert!(output.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("connect"),
            "{shell}"
        );
    }
}

#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        // The reading end closed before sockit writes: every write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(BIN)
            .args(["completions", shell])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr_of(&output)
        );
        assert_eq!(stderr_of(&output), "", "{shell}");
    }
}

#[test]
fn ports_with_no_match_prints_no_table_header() {
    let output = run_sockit(&["ports", "nosuchthing"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        output.stdout,
        b"",
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(
        stderr_of(&output),
        "sockit: no port matches \"nosuchthing\"\n"
    );
}

#[test]
fn config_default_prints_a_config_that_checks() {
    let output = run_sockit(&["config", "default"], b"");
    assert!(output.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sockit.toml");
    std::fs::write(&file, &output.stdout).unwrap();
    let check = run_sockit(&["config", "check", file.to_str().unwrap()], b"");
    assert!(check.status.success(), "{}", stderr_of(&check));
}

#[test]
fn a_config_error_is_one_line_naming_the_key_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[echo]\nport = 9000\nprot = 1\n").unwrap();
    let file = file.to_str().unwrap();
    let output = run_sockit(&["serve", "--config", file, "--data-dir", file], b"");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("sockit: "), "{stderr}");
    assert!(
        stderr.contains("line 3") && stderr.contains("prot"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("bad.toml"), "[echo]\nport = \"eighty\"\n").unwrap();
    let output = run_sockit(&["config", "check", file], b"");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("line 2") && stderr.contains("`port`"),
        "{stderr}"
    );
}

#[test]
fn user_add_set_list_passwd_and_del_manage_the_store() {
    let data = tempfile::tempdir().unwrap();
    let user = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["user", "--data-dir", data.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let output = run_sockit(&all, stdin);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), stdout, stderr_of(&output))
    };
    let (code, stdout, _) = user(
        &["add", "alice", "--quota", "2G", "--password-stdin"],
        b"pw\n",
    );
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("added alice (home "), "{stdout}");

    let (code, stdout, _) = user(
        &[
            "set",
            "alice",
            "--quota",
            "500M",
            "--max-files",
            "100",
            "--read-only",
            "--admin",
        ],
        b"",
    );
    assert_eq!(code, Some(0));
    let row = stdout.lines().nth(1).unwrap_or_default();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns[..6],
        ["alice", "500.0", "MiB", "100", "read-only", "yes"],
        "{stdout}"
    );

    let (code, _, stderr) = user(&["set", "alice"], b"");
    assert_eq!(
        code,
        Some(2),
        "nothing to change is a usage error: {stderr}"
    );
    let (code, _, stderr) = user(&["set", "alice", "--quota", "1G", "--no-quota"], b"");
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) = user(&["set", "nobody", "--admin"], b"");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no user named \"nobody\""), "{stderr}");
    let moved = data.path().join("elsewhere");
    let (code, stdout, _) = user(&["set", "alice", "--home", moved.to_str().unwrap()], b"");
    assert_eq!(code, Some(0));
    assert!(
        stdout.trim_end().ends_with(moved.to_str().unwrap()),
        "{stdout}"
    );
    assert!(moved.is_dir());

    let (_, stdout, _) = user(
        &[
            "set",
            "alice",
            "--no-quota",
            "--no-max-files",
            "--read-write",
            "--no-admin",
        ],
        b"",
    );
    let row = stdout.lines().nth(1).unwrap_or_default();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns[..5],
        ["alice", "none", "none", "full", "no"],
        "{stdout}"
    );

    let (code, stdout, _) = user(&["passwd", "alice", "--password-stdin"], b"new\n");
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), "password changed for alice")
    );
    let (code, stdout, _) = user(&["list"], b"");
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let (code, stdout, _) = user(&["del", "alice"], b"");
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), "deleted alice (their files stay)")
    );
    let (_, stdout, _) = user(&["list"], b"");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn a_running_server_is_named_sockit_for_ps_and_pgrep() {
    let data = tempfile::tempdir().unwrap();
    let args = [
        "serve",
        "--data-dir",
        data.path().to_str().unwrap(),
        "ftp",
        "--addr",
        "127.0.0.1:0",
    ];
    let server = ServeProcess::start(&args, 1);
    let pid = server.pid().to_string();
    let ps = Command::new("ps")
        .args(["-o", "comm=", "-p", &pid])
        .output()
        .expect("ps (Debian's procps) must be installed");
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "sockit");
    let pgrep = Command::new("pgrep")
        .args(["-x", "sockit"])
        .output()
        .expect("pgrep (Debian's procps) must be installed");
    let found = String::from_utf8_lossy(&pgrep.stdout);
    assert!(
        found.lines().any(|line| line == pid),
        "pgrep found {found:?}, not {pid}"
    );
}

#[test]
fn serve_with_port_8080_taken_names_the_service_the_port_and_the_flag() {
    // Hold 8080 ourselves; if another program already holds it, it is taken all the same.
    let _holder = TcpListener::bind("127.0.0.1:8080");
    let data = tempfile::tempdir().unwrap();
    let output = run_sockit(&["serve", "--data-dir", data.path().to_str().unwrap()], b"");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let line = stderr.trim_end();
    assert!(line.starts_with("sockit: echo: "), "{line}");
    assert!(line.contains("port 8080"), "{line}");
    assert!(
        line.contains("--tcp") && line.contains("echo.port"),
        "{line}"
    );
}

#[test]
fn serve_runs_from_a_config_and_connect_pipes_like_nc() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("echo.sock");
    let config = format!(
        "[echo]\nport = 0\nunix_path = {:?}\n[http]\nenabled = false\n[bot]\nenabled = false\n[ftp]\nenabled = false\n",
        sock.to_str().unwrap()
    );
    let server = ServeProcess::with_config(&config, 3);
    let tcp = server.address("echo", "tcp");
    let output = run_sockit(&["connect", "tcp", &tcp], b"hello\nworld\n");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(output.stdout, b"HELLO\nWORLD\n");

    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let output = run_sockit(&["connect", "unix", sock.to_str().unwrap()], &binary);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        output.stdout == binary.to_ascii_uppercase(),
        "unix pipe mangled bytes"
    );

    let udp = server.address("echo", "udp");
    let output = run_sockit(&["connect", "udp", &udp], b"one\ntwo\n");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(output.stdout, b"ONE\nTWO\n");
}

#[test]
fn connect_over_ipv6_and_by_host_name() {
    let server = ServeProcess::serve(&["echo", "--tcp", "[::1]:0"], 1);
    let addr = server.address("echo", "tcp");
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let output = run_sockit(&["connect", "tcp", &addr], b"six\n");
    assert_eq!(output.stdout, b"SIX\n", "{}", stderr_of(&output));

    let v4 = ServeProcess::serve(&["echo", "--tcp", "127.0.0.1:0"], 1);
    let port = v4
        .address("echo", "tcp")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let output = run_sockit(
        &["connect", "tcp", &format!("localhost:{port}")],
        b"named\n",
    );
    assert_eq!(output.stdout, b"NAMED\n", "{}", stderr_of(&output));
}

#[test]
fn udp_connect_without_a_server_says_so_and_fails() {
    // A bound socket that never answers: the datagram is accepted and ignored.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let output = run_sockit(
        &["connect", "udp", &addr, "--timeout", "300ms"],
        b"anyone?\n",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(
        stderr.trim_end(),
        format!("sockit: udp {addr}: no reply within 300ms")
    );
}

#[test]
fn udp_connect_to_a_closed_port_says_nothing_listens() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let output = run_sockit(&["connect", "udp", &addr], b"anyone?\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(
        stderr.trim_end(),
        format!("sockit: udp {addr}: nothing listens on that port (ICMP port unreachable)")
    );
}

#[test]
fn connect_refused_is_a_one_line_error() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let output = run_sockit(&["connect", "tcp", &addr], b"");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.starts_with(&format!("sockit: cannot connect to {addr}")),
        "{stderr}"
    );
}

#[test]
fn connect_into_a_closed_pipe_exits_cleanly() {
    let server = ServeProcess::serve(&["echo", "--tcp", "127.0.0.1:0"], 1);
    let addr = server.address("echo", "tcp");
    // Like `yes | sockit connect tcp ADDR | head -c 10`.
    let mut child = Command::new(BIN)
        .args(["connect", "tcp", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let line = b"y\n".repeat(1000);
        for _ in 0..10_000 {
            if stdin.write_all(&line).is_err() {
                break;
            }
        }
    });
    let mut first = [0u8; 10];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"Y\nY\nY\nY\nY\n");
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
}

/// Opens a pseudo-terminal; returns (controller, terminal) ends.
fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut controller, mut terminal) = (0, 0);
    // SAFETY: openpty writes two fds into the provided ints; the other pointer
    // arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: both fds were just returned by openpty and are owned by nobody else.
    unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    }
}

/// `sockit ARGS` with a pseudo-terminal as stdin, stdout and stderr.
struct Terminal {
    child: std::process::Child,
    keyboard: std::fs::File,
    chunks: mpsc::Receiver<Vec<u8>>,
    screen: String,
}

impl Terminal {
    fn run(args: &[&str]) -> Terminal {
        let (controller, terminal) = open_pty();
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::from(terminal.try_clone().unwrap()))
            .stdout(Stdio::from(terminal.try_clone().unwrap()))
            .stderr(Stdio::from(terminal))
            .spawn()
            .unwrap();
        let keyboard = std::fs::File::from(controller.try_clone().unwrap());
        let (tx, chunks) = mpsc::channel::<Vec<u8>>();
        let mut from_terminal = std::fs::File::from(controller);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = from_terminal.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            keyboard,
            chunks,
            screen: String::new(),
        }
    }

    fn wait_for(&mut self, needle: &str) {
        while !self.screen.contains(needle) {
            let chunk = self.chunks.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                panic!("no {needle:?} on the terminal; it shows {:?}", self.screen)
            });
            self.screen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    fn type_in(&mut self, keys: &str) {
        self.keyboard.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits for the program to exit. Only then is the controller closed:
    /// closing it earlier would hang up the terminal under the program.
    fn exit_status(self) -> std::process::ExitStatus {
        let Terminal {
            mut child,
            keyboard,
            screen,
            ..
        } = self;
        let (status_tx, status_rx) = mpsc::channel();
        std::thread::spawn(move || status_tx.send(child.wait()));
        let status = status_rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("the program does not exit; the screen: {screen:?}"))
            .unwrap();
        drop(keyboard);
        status
    }
}

#[test]
fn on_a_terminal_connect_is_the_course_client() {
    let server = ServeProcess::serve(&["echo", "--tcp", "127.0.0.1:0"], 1);
    let addr = server.address("echo", "tcp");
    let mut terminal = Terminal::run(&["connect", "tcp", &addr]);
    terminal.wait_for(">> ");
    terminal.type_in("hello\n");
    terminal.wait_for("HELLO");
    terminal.type_in("\n");
    terminal.type_in("q\n");
    let screen = terminal.screen.clone();
    assert!(terminal.exit_status().success(), "{screen}");
}

#[test]
fn on_a_terminal_a_server_that_speaks_first_shows_before_any_input() {
    let server = ServeProcess::serve(&["bot", "--addr", "127.0.0.1:0"], 1);
    let addr = server.address("bot", "tcp");
    let mut terminal = Terminal::run(&["connect", "tcp", &addr]);
    // Nothing is typed: the greeting must show by itself.
    terminal.wait_for("10086");
    terminal.type_in("q\n");
    let screen = terminal.screen.clone();
    assert!(terminal.exit_status().success(), "{screen}");
}

/// Runs `sockit ARGS` with `stdin` and waits at most `limit` for its exit.
fn run_sockit_within(args: &[&str], stdin: &[u8], limit: Duration) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let stdin = stdin.to_vec();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = tx.send(run_sockit(&args, &stdin));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("sockit did not exit within {limit:?}"))
}

#[test]
fn udp_pipe_mode_sends_every_line_with_its_newline_and_prints_every_reply() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let args = ["connect", "udp", &addr, "--timeout", "300ms"];
    let output = run_sockit_within(&args, b"l1\nl2\n", PATIENCE);
    let mut datagram = [0u8; 64];
    for expected in [&b"l1\n"[..], b"l2\n"] {
        let (len, _) = silent.recv_from(&mut datagram).unwrap();
        assert_eq!(&datagram[..len], expected);
    }
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));

    let replying = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    replying.set_read_timeout(Some(PATIENCE)).unwrap();
    let addr = replying.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (len, peer) = replying.recv_from(&mut datagram).unwrap();
            datagram[..len].make_ascii_uppercase();
            replying.send_to(&datagram[..len], peer).unwrap();
        }
    });
    let args = ["connect", "udp", &addr, "--timeout", "500ms"];
    let output = run_sockit_within(&args, b"r1\nr2\n", PATIENCE);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(output.stdout, b"R1\nR2\n");
}

#[test]
fn wait_ends_a_session_with_a_server_that_never_answers() {
    // Never accepted: the kernel completes the handshake and holds the bytes.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = mute.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let output = run_sockit_within(&["connect", "tcp", &addr, "-w", "1s"], b"x\n", PATIENCE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr_of(&output), "sockit: no traffic for 1s (--wait)\n");
}

/// The lines a child writes to one of its outputs, as they come.
fn lines_of(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn listen_relays_a_connection_both_ways_and_keep_open_takes_the_next() {
    let mut child = Command::new(BIN)
        .args(["connect", "tcp", "-l", "127.0.0.1:0", "-k"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let listening = stderr.recv_timeout(PATIENCE).expect("a listening line");
    let addr = listening
        .strip_prefix("sockit: listening on tcp ")
        .unwrap_or_else(|| panic!("{listening}"))
        .to_owned();

    let mut first = std::net::TcpStream::connect(&addr).unwrap();
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    first.write_all(b"from the client\n").unwrap();
    assert_eq!(stdout.recv_timeout(PATIENCE).unwrap(), "from the client");
    stdin.write_all(b"from stdin\n").unwrap();
    let mut line = String::new();
    BufReader::new(&first).read_line(&mut line).unwrap();
    assert_eq!(line, "from stdin\n");
    drop(first);

    let mut second = std::net::TcpStream::connect(&addr).unwrap();
    second.write_all(b"the second\n").unwrap();
    assert_eq!(stdout.recv_timeout(PATIENCE).unwrap(), "the second");
    assert!(child.try_wait().unwrap().is_none(), "-k keeps listening");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn listen_without_keep_open_exits_after_one_connection() {
    let mut child = Command::new(BIN)
        .args(["connect", "tcp", "--listen", "[::1]:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let listening = stderr.recv_timeout(PATIENCE).expect("a listening line");
    let addr = listening.strip_prefix("sockit: listening on tcp ").unwrap();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"only\n").unwrap();
    assert_eq!(stdout.recv_timeout(PATIENCE).unwrap(), "only");
    drop(client);
    let (status_tx, status_rx) = mpsc::channel();
    std::thread::spawn(move || status_tx.send(child.wait()));
    let status = status_rx.recv_timeout(PATIENCE).expect("exits").unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_with_50_busy_clients_exits_0_and_every_byte_read_was_echoed() {
    // A grace period that a loaded machine cannot run out: the test is about
    // what a drain does, not how fast 50 busy clients finish it.
    let mut server = ServeProcess::with_config(
        "[serve]\ngrace_period = \"30s\"\n[echo]\nport = 0\nudp = false\n\
         [http]\nenabled = false\n[bot]\nenabled = false\n[ftp]\nenabled = false\n",
        1,
    );
    let addr: SocketAddr = server.address("echo", "tcp").parse().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let clients: Vec<_> = (0..50)
        .map(|client| {
            let started = started_tx.clone();
            std::thread::spawn(move || busy_client(addr, client, started))
        })
        .collect();
    for _ in 0..50 {
        started_rx
            .recv_timeout(PATIENCE)
            .expect("every client got a first reply");
    }
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(30) + PATIENCE / 6);
    assert_eq!(status.code(), Some(0), "{}", server.stderr());

    let log = server.stderr();
    assert!(
        !log.contains("grace period over"),
        "the drain finished: {log}"
    );
    for client in clients {
        let (port, sent, received) = client.join().unwrap();
        assert!(!received.is_empty());
        assert!(
            received == sent[..received.len()].to_ascii_uppercase(),
            "client on port {port}: the reply is not the upper-cased prefix of what it sent"
        );
        // The server's own count for this connection: all it read, it wrote back.
        let line = log
            .lines()
            .find(|l| {
                l.contains(&format!("peer=127.0.0.1:{port}}}")) && l.contains("connection closed")
            })
            .unwrap_or_else(|| panic!("no close line for port {port} in:\n{log}"));
        let field = |name: &str| -> usize {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(field("bytes_in"), field("bytes_out"), "{line}");
        assert_eq!(field("bytes_out"), received.len(), "{line}");
    }
}

/// Sends continuously while reading replies, until the server ends the
/// connection; returns (local port, bytes sent, bytes received).
fn busy_client(addr: SocketAddr, client: u8, started: mpsc::Sender<()>) -> (u16, Vec<u8>, Vec<u8>) {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let port = stream.local_addr().unwrap().port();
    let mut reader = stream.try_clone().unwrap();
    let mut writer = stream;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let sending = std::thread::spawn(move || {
        let mut sent = Vec::new();
        let mut n: u32 = 0;
        // Bounded: at most 64 MiB per client, far more than the test needs.
        while sent.len() < 64 << 20 && done_rx.try_recv().is_err() {
            let chunk = format!("client {client} chunk {n};")
                .repeat(20)
                .into_bytes();
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent.extend_from_slice(&chunk);
            n += 1;
        }
        let _ = writer.shutdown(std::net::Shutdown::Write);
        sent
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut announced = false;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
        if !announced {
            announced = true;
            started.send(()).unwrap();
        }
    }
    let _ = done_tx.send(());
    (port, sending.join().unwrap(), received)
}

fn python_peer(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.arg(format!(
        "{}/tests/peers/{script}",
        env!("CARGO_MANIFEST_DIR")
    ));
    command
}

#[test]
fn the_course_python_clients_talk_to_sockit() {
    let server = ServeProcess::serve(&["echo", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"], 2);
    for (script, protocol) in [
        ("course_tcp_client.py", "tcp"),
        ("course_udp_client.py", "udp"),
    ] {
        let addr: SocketAddr = server.address("echo", protocol).parse().unwrap();
        let mut child = python_peer(script)
            .args([addr.ip().to_string(), addr.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 is installed (scripts/test installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all("hello\n\nsocket 世界\nq\nnot sent\n".as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{script}: {}", stderr_of(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "HELLO\nSOCKET 世界\n",
            "{script}"
        );
    }
}

#[test]
fn sockit_connect_talks_to_the_course_python_servers() {
    for (script, protocol) in [
        ("course_tcp_server.py", "tcp"),
        ("course_udp_server.py", "udp"),
    ] {
        let mut server = python_peer(script)
            .arg("0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is installed (scripts/test installs it)");
        let mut port = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let addr = format!("127.0.0.1:{}", port.trim());
        let output = run_sockit(&["connect", protocol, &addr], b"hello\nsockets\n");
        let _ = server.kill();
        let _ = server.wait();
        assert!(output.status.success(), "{script}: {}", stderr_of(&output));
        assert_eq!(output.stdout, b"HELLO\nSOCKETS\n", "{script}");
    }
}

/// Connects once to a fresh `sockit serve echo` started with `args` and
/// `rust_log`, stops it, and returns its stderr.
fn log_of_one_connection(args: &[&str], rust_log: Option<&str>) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut all = vec!["serve", "--data-dir", data.path().to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["echo", "--tcp", "127.0.0.1:0"]);
    let env: Vec<(&str, &str)> = rust_log.map(|f| ("RUST_LOG", f)).into_iter().collect();
    let mut server = ServeProcess::start_with_env(&all, &env, 1);
    let output = run_sockit(&["connect", "tcp", &server.address("echo", "tcp")], b"x\n");
    assert!(output.status.success());
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    server.stderr()
}

#[test]
fn verbosity_flags_and_rust_log_change_the_log() {
    let normal = log_of_one_connection(&[], None);
    assert!(normal.contains("connection closed"), "{normal}");
    assert!(!normal.contains("DEBUG"), "{normal}");
    let quiet = log_of_one_connection(&["-q"], None);
    assert!(!quiet.contains("connection closed"), "{quiet}");
    let verbose = log_of_one_connection(&["-v"], Some("sockit=error"));
    assert!(
        !verbose.contains("connection closed"),
        "RUST_LOG wins: {verbose}"
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/sockit.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/sockit serve"));
    // Verified against the binary under test, where it is installed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sockit.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/sockit", support::BIN)).unwrap();
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (scripts/test installs systemd)");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "warnings");
}
