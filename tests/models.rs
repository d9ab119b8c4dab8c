//! Every concurrency model of the echo server against the same conformance
//! checks, through the real binary (`sockit serve echo --model M`): the fork
//! model must not run inside the test process.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{PATIENCE, ServeProcess};

fn start(model: &str) -> (ServeProcess, String) {
    let server = ServeProcess::serve(
        &[
            "echo",
            "--model",
            model,
            "--tcp",
            "127.0.0.1:0",
            "--workers",
            "2",
        ],
        1,
    );
    let addr = server.address("echo", "tcp");
    (server, addr)
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `message` and reads back as many bytes, writing from a second
/// thread so that large messages cannot deadlock on full buffers.
fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let outgoing = message.to_vec();
    let sending = std::thread::spawn(move || writer.write_all(&outgoing).unwrap());
    let mut reply = vec![0u8; message.len()];
    stream.read_exact(&mut reply).unwrap();
    sending.join().unwrap();
    reply
}

fn check_conformance(model: &str, concurrent_clients: usize) {
    let (_server, addr) = start(model);
    let clients: Vec<_> = (0..concurrent_clients)
        .map(|client| {
            let addr = addr.clone();
            let model = model.to_owned();
            std::thread::spawn(move || {
                let mut stream = connect(&addr);
                for (i, size) in [1usize, 7, 1000, 65_536, 300_000, 3]
                    .into_iter()
                    .enumerate()
                {
                    let message: Vec<u8> = (0..size).map(|j| (j * 31 + client + i) as u8).collect();
                    let reply = round_trip(&mut stream, &message);
                    assert!(
                        reply == message.to_ascii_uppercase(),
                        "{model}: client {client} message {i}"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
}

#[test]
fn the_thread_model_conforms() {
    check_conformance("thread", 20);
}

#[test]
fn the_fork_model_conforms() {
    check_conformance("fork", 20);
}

#[test]
fn the_poll_model_conforms() {
    check_conformance("poll", 20);
}

#[test]
fn the_epoll_model_conforms() {
    check_conformance("epoll", 20);
}

#[test]
fn the_async_model_conforms() {
    check_conformance("async", 20);
}

#[test]
fn the_iterative_model_conforms_one_client_at_a_time() {
    check_conformance("iterative", 1);
}

#[test]
fn the_iterative_model_serves_clients_in_turn() {
    let (_server, addr) = start("iterative");
    let mut first = connect(&addr);
    assert_eq!(round_trip(&mut first, b"first"), b"FIRST");
    let mut second = connect(&addr);
    second.write_all(b"second").unwrap();
    // The server is busy with the first client: another round trip with it
    // proves the server ran after the second client's bytes arrived, and
    // still the second client has no answer.
    assert_eq!(round_trip(&mut first, b"again"), b"AGAIN");
    second.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 16];
    assert_eq!(
        second.read(&mut probe).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "the iterative server answered a second client while serving the first"
    );
    second.set_nonblocking(false).unwrap();
    drop(first);
    let mut reply = [0u8; 6];
    second.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"SECOND", "served once the first client left");
}

#[test]
fn a_client_that_never_reads_stalls_only_itself_in_the_event_loops() {
    for model in ["poll", "epoll"] {
        let (_server, addr) = start(model);
        let mut greedy = connect(&addr);
        greedy
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let chunk = vec![b'a'; 1 << 20];
        let mut written = 0u64;
        while written < 1 << 30 {
            match greedy.write(&chunk) {
                Ok(n) => written += n as u64,
                Err(_stalled) => break,
            }
        }
        assert!(
            written < 1 << 30,
            "{model}: the server kept reading a client that never reads"
        );
        let mut other = connect(&addr);
        assert_eq!(
            round_trip(&mut other, b"still here"),
            b"STILL HERE",
            "{model}"
        );
    }
}

#[test]
fn a_close_sent_with_the_last_bytes_is_answered_and_seen_in_every_model() {
    // The bytes and the end of the stream leave in one go, so an
    // edge-triggered loop gets them as one event: the close must not be
    // lost behind a read that drained the bytes.
    for model in ["iterative", "thread", "fork", "poll", "epoll", "async"] {
        let (_server, addr) = start(model);
        for _ in 0..20 {
            let mut stream = connect(&addr);
            stream.write_all(b"last words").unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            stream
                .read_to_end(&mut reply)
                .unwrap_or_else(|err| panic!("{model}: the server did not close: {err}"));
            assert_eq!(reply, b"LAST WORDS", "{model}");
        }
    }
}

#[test]
fn the_async_model_runs_as_many_runtime_workers_as_asked() {
    for workers in [1usize, 3] {
        let server = ServeProcess::serve(
            &[
                "echo",
                "--workers",
                &workers.to_string(),
                "--tcp",
                "127.0.0.1:0",
            ],
            1,
        );
        // A thread takes its name once it runs, a moment after it exists.
        let named_workers = || {
            std::fs::read_dir(format!("/proc/{}/task", server.pid()))
                .unwrap()
                .flatten()
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|name| name.trim() == "tokio-rt-worker")
                })
                .count()
        };
        wait_until(&format!("{workers} Tokio worker threads"), || {
            named_workers() == workers
        });
        let mut stream = connect(&server.address("echo", "tcp"));
        assert_eq!(round_trip(&mut stream, b"ok"), b"OK");
    }
}

/// The children of `pid`, with their state letter, from /proc.
fn children(pid: i32) -> Vec<(i32, char)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the ")" that ends the command name: state, then the parent.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(pid) {
            found.push((child, state));
        }
    }
    found
}

/// Polls /proc until `done` holds. No event tells another process that a
/// child was reaped, so this checks every few milliseconds, within a bound.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_fork_model_leaves_no_zombie_after_a_thousand_connections() {
    let (server, addr) = start("fork");
    for i in 0..1000u32 {
        let mut stream = connect(&addr);
        let message = format!("connection {i}");
        assert_eq!(
            round_trip(&mut stream, message.as_bytes()),
            message.to_uppercase().as_bytes()
        );
    }
    // Every child exits when its client leaves; the parent must reap each one.
    wait_until("every child reaped", || children(server.pid()).is_empty());
}

#[test]
fn fork_children_do_not_outlive_the_server() {
    let (mut server, addr) = start("fork");
    let mut client = connect(&addr);
    assert_eq!(round_trip(&mut client, b"hold"), b"HOLD");
    let kids = children(server.pid());
    assert_eq!(kids.len(), 1, "one child per connection: {kids:?}");
    server.signal(libc::SIGTERM);
    server.wait_exit(PATIENCE);
    let child = kids[0].0;
    wait_until("the child is gone", || {
        !std::path::Path::new(&format!("/proc/{child}")).exists()
    });
    drop(client);
}

/// A client mid-session when SIGTERM (or SIGINT) arrives gets the answer to
/// what it sent, then the end of the stream, and the server exits 0.
fn drains_on(model: &str, signal: i32) {
    let (mut server, addr) = start(model);
    let mut client = connect(&addr);
    assert_eq!(round_trip(&mut client, b"before\n"), b"BEFORE\n");
    client.write_all(b"late\n").unwrap();
    server.signal(signal);
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .unwrap_or_else(|err| panic!("{model}: {err}; stderr:\n{}", server.stderr()));
    assert_eq!(rest, b"LATE\n", "{model}");
    let status = server.wait_exit(PATIENCE);
    assert_eq!(
        status.code(),
        Some(0),
        "{model}: {status:?}\n{}",
        server.stderr()
    );
}

#[test]
fn the_iterative_model_drains_on_sigterm_and_sigint() {
    drains_on("iterative", libc::SIGTERM);
    drains_on("iterative", libc::SIGINT);
}

#[test]
fn the_thread_model_drains_on_sigterm_and_sigint() {
    drains_on("thread", libc::SIGTERM);
    drains_on("thread", libc::SIGINT);
}
