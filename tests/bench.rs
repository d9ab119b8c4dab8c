//! `sockit bench` checks what it measures: against a server that corrupts
//! one reply in a thousand it reports the errors; against a correct one, none.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use support::{BIN, run_sockit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An uppercase echo that flips one bit in every thousandth reply; returns
/// its address and the count of replies it corrupted.
async fn broken_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let replies = Arc::new(AtomicU64::new(0));
    let corrupted = Arc::new(AtomicU64::new(0));
    let flipped = corrupted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let replies = replies.clone();
            let flipped = flipped.clone();
            tokio::spawn(async move {
                // The bench sends 64-byte messages, one at a time.
                let mut message = [0u8; 64];
                while stream.read_exact(&mut message).await.is_ok() {
                    message.make_ascii_uppercase();
                    if replies.fetch_add(1, Ordering::Relaxed) % 1000 == 999 {
                        message[17] ^= 0x01;
                        flipped.fetch_add(1, Ordering::Relaxed);
                    }
                    if stream.write_all(&message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, corrupted)
}

fn bench_json(addr: &str) -> (Option<i32>, Value) {
    let output = run_sockit(
        &[
            "bench", "echo", "--addr", addr, "--conns", "4", "--size", "64", "--secs", "1",
            "--json",
        ],
        b"",
    );
    let rows: Value = serde_json::from_slice(&output.stdout).expect("bench prints JSON");
    (output.status.code(), rows[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_replies_are_counted_as_errors() {
    let (addr, corrupted) = broken_server().await;
    let (code, row) = tokio::task::spawn_blocking(move || bench_json(&addr))
        .await
        .unwrap();
    let flipped = corrupted.load(Ordering::Relaxed);
    assert!(
        flipped > 0,
        "the load was too short to reach a corrupted reply: {row}"
    );
    let errors = row["errors"].as_u64().unwrap();
    // Replies still in flight when the time was up are neither checked nor
    // counted, so the bench may see one fewer per connection.
    assert!(
        errors <= flipped && errors + 4 >= flipped,
        "bench saw {errors} errors, server corrupted {flipped}: {row}"
    );
    assert!(errors > 0, "{row}");
    assert_eq!(code, Some(1), "a bench that saw wrong replies fails");
}

#[test]
fn a_correct_server_gives_no_errors() {
    let server = support::ServeProcess::serve(&["echo", "--tcp", "127.0.0.1:0"], 1);
    let (code, row) = bench_json(&server.address("echo", "tcp"));
    assert_eq!(code, Some(0), "{row}");
    assert_eq!(row["errors"], 0);
    assert!(row["round_trips_per_sec"].as_f64().unwrap() > 0.0);
    for field in ["p50_us", "p99_us", "p999_us", "connect_p50_us", "starved"] {
        assert!(row[field].is_u64(), "{field} in {row}");
    }
}

#[test]
fn udp_and_connect_benches_measure_a_real_server() {
    let server =
        support::ServeProcess::serve(&["echo", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"], 2);
    let udp = run_sockit(
        &[
            "bench",
            "udp",
            "--addr",
            &server.address("echo", "udp"),
            "--sockets",
            "2",
            "--secs",
            "1",
            "--json",
        ],
        b"",
    );
    assert!(
        udp.status.success(),
        "{}",
        String::from_utf8_lossy(&udp.stderr)
    );
    let report: Value = serde_json::from_slice(&udp.stdout).unwrap();
    assert!(report["answered"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");

    let connect = run_sockit(
        &[
            "bench",
            "connect",
            "--addr",
            &server.address("echo", "tcp"),
            "--concurrency",
            "4",
            "--secs",
            "1",
            "--json",
        ],
        b"",
    );
    assert!(
        connect.status.success(),
        "{}",
        String::from_utf8_lossy(&connect.stderr)
    );
    let report: Value = serde_json::from_slice(&connect.stdout).unwrap();
    assert!(report["connections"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failures"], 0, "{report}");
}

#[test]
fn a_udp_bench_against_a_server_that_upper_cases_nothing_reports_errors() {
    // A plain UDP echo: the default bench expects upper-case replies.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    let output = run_sockit(
        &[
            "bench",
            "udp",
            "--addr",
            &addr,
            "--sockets",
            "1",
            "--secs",
            "1",
            "--json",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn bench_models_starts_each_model_loads_it_and_holds_idle_connections() {
    let scratch = tempfile::tempdir().unwrap();
    let svg = scratch.path().join("models.svg");
    let output = run_sockit(
        &[
            "bench",
            "models",
            "--models",
            "poll,async",
            "--conns",
            "2",
            "--size",
            "64",
            "--secs",
            "0.3",
            "--idle",
            "300",
            "--svg",
            svg.to_str().unwrap(),
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for model in ["poll", "async"] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{model} ")))
            .unwrap_or_else(|| panic!("no {model} row in:\n{stdout}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&columns[1..3], ["2", "64"], "{row}");
        assert!(columns[3].parse::<u64>().unwrap() > 0, "round trips: {row}");
        let idle = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{model}: 300 idle connections cost")))
            .unwrap_or_else(|| panic!("no idle line for {model} in:\n{stdout}"));
        assert!(
            idle.contains("beside them 50 busy connections x 64 B made"),
            "{idle}"
        );
        assert!(!idle.contains("starved"), "{idle}");
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.contains("<svg"), "{chart}");
}

#[test]
fn bench_models_in_rounds_gives_one_row_per_server_and_load() {
    let output = run_sockit(
        &[
            "bench",
            "models",
            "--models",
            "poll,epoll",
            "--conns",
            "1,2",
            "--size",
            "64",
            "--secs",
            "0.2",
            "--rounds",
            "3",
            "--json",
        ],
        b"",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let seen: Vec<(&str, u64)> = rows
        .iter()
        .map(|row| {
            (
                row["server"].as_str().unwrap(),
                row["conns"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("poll", 1), ("poll", 2), ("epoll", 1), ("epoll", 2)]);
    for row in &rows {
        assert!(row["round_trips_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
    }
}

#[test]
fn a_bench_whose_reader_has_gone_ends_quietly() {
    let server = support::ServeProcess::serve(&["echo", "--tcp", "127.0.0.1:0"], 1);
    // Like `sockit bench echo ... | head -0`: nobody reads the table.
    let mut child = std::process::Command::new(BIN)
        .args(["bench", "echo", "--addr", &server.address("echo", "tcp")])
        .args(["--conns", "1", "--size", "64", "--secs", "0.2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
