//! `sockit bench`: load generators that check every reply ([`load`]), and the
//! side-by-side measurement of the echo models ([`measure`], [`ModelProcess`]), reported as
//! a table, JSON or an SVG chart ([`report`]).
//!
//! Every run is bounded in time (`--secs`) and in connections; child servers
//! are killed when their measurement ends, however it ends.

pub mod load;
pub mod report;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use load::{EchoLoad, EchoOutcome, Progress};

/// One line of a comparison: one server under one load.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub server: String,
    pub conns: usize,
    pub size: usize,
    pub round_trips_per_sec: f64,
    pub megabytes_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub connect_p50_us: u64,
    pub errors: u64,
    pub starved: u64,
    pub connect_failures: u64,
    /// Server memory (process and children) while loaded, when known.
    pub rss_kib: Option<u64>,
}

impl Row {
    /// Summarises one load's outcome.
    pub fn new(server: &str, load: &EchoLoad, outcome: &EchoOutcome, rss_kib: Option<u64>) -> Row {
        let secs = outcome.elapsed.as_secs_f64().max(f64::EPSILON);
        Row {
            server: server.to_owned(),
            conns: load.conns,
            size: load.size,
            round_trips_per_sec: outcome.round_trips as f64 / secs,
            megabytes_per_sec: outcome.bytes as f64 / secs / 1e6,
            p50_us: outcome.latency.value_at_quantile(0.5),
            p99_us: outcome.latency.value_at_quantile(0.99),
            p999_us: outcome.latency.value_at_quantile(0.999),
            connect_p50_us: outcome.connect.value_at_quantile(0.5),
            errors: outcome.errors,
            starved: outcome.starved,
            connect_failures: outcome.connect_failures,
            rss_kib,
        }
    }
}

/// Resident memory of `pid` and all its descendants, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let own = |pid: u32| -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let mut total = own(pid)?;
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for child in children(parent) {
            total += own(child).unwrap_or(0);
            parents.push(child);
        }
    }
    Some(total)
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Runs one echo load and samples the server's memory near its end.
///
/// # Errors
/// The load's event loops cannot start.
pub async fn measure(server: &str, load: EchoLoad, pid: Option<u32>) -> std::io::Result<Row> {
    let sampling = async {
        tokio::time::sleep(load.duration.mul_f64(0.8)).await;
        pid.and_then(rss_kib)
    };
    let (outcome, rss) = tokio::join!(run_echo(load, Arc::default()), sampling);
    Ok(Row::new(server, &load, &outcome?, rss))
}

/// Runs [`load::echo`] on the blocking pool.
///
/// # Errors
/// The load's event loops cannot start.
pub async fn run_echo(load: EchoLoad, progress: Arc<Progress>) -> std::io::Result<EchoOutcome> {
    tokio::task::spawn_blocking(move || load::echo(load, progress))
        .await
        .map_err(std::io::Error::other)?
}

/// A model server started as a child process on an ephemeral port.
#[derive(Debug)]
pub struct ModelProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ModelProcess {
    /// Starts `exe serve echo --model MODEL --workers WORKERS` (the epoll
    /// model's event loops, the async model's runtime threads), allowed
    /// `max_connections` at once, and waits for its endpoint line.
    ///
    /// # Errors
    /// The process cannot start or prints no endpoint.
    pub fn start(
        exe: &std::path::Path,
        model: &str,
        workers: usize,
        max_connections: usize,
        data_dir: &std::path::Path,
    ) -> std::io::Result<ModelProcess> {
        // The async model serves `echo.max_connections` at once (10 000 by
        // default) and leaves the rest in the backlog: a bench may hold more.
        let config = data_dir.join(format!("{model}.toml"));
        std::fs::write(
            &config,
            format!("[echo]\nmax_connections = {max_connections}\n"),
        )?;
        let mut child = Command::new(exe)
            .args(["-q", "serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["echo", "--model", model, "--tcp", "127.0.0.1:0"])
            .args(["--workers", &workers.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("the {model} server printed {line:?}")));
        match addr {
            Ok(addr) => Ok(ModelProcess { child, addr }),
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ModelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What holding idle connections costs a server.
#[derive(Debug, Clone)]
pub struct IdleCost {
    /// The server's memory growth per idle connection, KiB.
    pub kib_each: f64,
    /// `busy`, run while the idle connections are held.
    pub busy: Row,
}

/// Opens `count` connections to `busy.addr`, makes one round trip on each
/// (so the server has accepted and set it up), and measures what they cost:
/// the server's memory growth per connection, and the `busy` load run while
/// they stay open (an event loop that scans every connection at each
/// wake-up slows down; one the kernel tells which are ready does not).
/// `None` when the connections cannot all be opened and answered.
pub async fn idle_cost(server: &str, pid: u32, count: usize, busy: EchoLoad) -> Option<IdleCost> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let before = rss_kib(pid)?;
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = tokio::net::TcpStream::connect(busy.addr).await.ok()?;
        stream.write_all(b"x").await.ok()?;
        let mut reply = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut reply))
            .await
            .ok()?
            .ok()?;
        let mut want = *b"x";
        busy.expect.apply(&mut want);
        if reply != want {
            return None;
        }
        held.push(stream);
    }
    let after = rss_kib(pid)?;
    let busy = measure(server, busy, Some(pid)).await.ok()?;
    drop(held);
    Some(IdleCost {
        kib_each: after.saturating_sub(before) as f64 / count as f64,
        busy,
    })
}
