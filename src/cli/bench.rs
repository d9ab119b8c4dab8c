//! `sockit bench`: measure echo servers, UDP, connection rates, and the echo
//! models side by side.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use sockit::bench::load::{self, EchoLoad, Progress};
use sockit::bench::{self, ModelProcess, Row, report};
use sockit::echo::{Model, Transform};

/// Measure servers: echo round trips, UDP, connection rate, the echo models.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit bench echo --addr 127.0.0.1:8080 --conns 1,50 --size 64,16384 --secs 5\n  sockit bench models --secs 5 --svg models.svg --against c-epoll=127.0.0.1:9000"
)]
pub struct BenchArgs {
    /// Threads generating load. One leaves the other cores to the server
    /// under test, which usually shares this machine.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    #[command(subcommand)]
    what: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    Echo(EchoArgs),
    Udp(UdpArgs),
    Connect(ConnectArgs),
    Models(ModelsArgs),
}

/// What the echo loads share.
#[derive(Debug, Args)]
struct LoadArgs {
    /// Connection counts to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,50")]
    conns: Vec<usize>,
    /// Message sizes in bytes to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,16384")]
    size: Vec<usize>,
    /// Seconds per load.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// The server echoes unchanged (default: it upper-cases).
    #[arg(long)]
    plain: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Checks a `--secs` value: more than 0, at most an hour.
fn checked_duration(secs: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        secs > 0.0 && secs <= 3600.0,
        "--secs must be between 0 and 3600"
    );
    Ok(Duration::from_secs_f64(secs))
}

impl LoadArgs {
    fn check(&self) -> anyhow::Result<()> {
        checked_duration(self.secs)?;
        anyhow::ensure!(
            self.conns.iter().all(|c| (1..=100_000).contains(c)),
            "--conns must be 1 to 100000"
        );
        anyhow::ensure!(
            self.size.iter().all(|s| (1..=16 << 20).contains(s)),
            "--size must be 1 B to 16 MiB"
        );
        anyhow::ensure!(
            (1..=1024).contains(&self.pipeline),
            "--pipeline must be 1 to 1024"
        );
        Ok(())
    }

    fn loads(&self, addr: SocketAddr, threads: u16) -> Vec<EchoLoad> {
        let mut loads = Vec::new();
        for &conns in &self.conns {
            for &size in &self.size {
                loads.push(EchoLoad {
                    addr,
                    conns,
                    size,
                    pipeline: self.pipeline,
                    duration: Duration::from_secs_f64(self.secs),
                    expect: Transform::from_plain(self.plain),
                    threads: threads.into(),
                });
            }
        }
        loads
    }
}

/// Request/response round trips against a running echo server; every reply is checked.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sockit bench echo --addr 127.0.0.1:8080 --conns 1,50,500 --size 64 --secs 5 --json"
)]
struct EchoArgs {
    /// The server to load.
    #[arg(long)]
    addr: SocketAddr,
    #[command(flatten)]
    load: LoadArgs,
}

/// Datagrams per second and loss against a UDP echo server.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sockit bench udp --addr 127.0.0.1:8080 --sockets 16 --size 64 --secs 5"
)]
struct UdpArgs {
    #[arg(long)]
    addr: SocketAddr,
    /// Sockets sending at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
    sockets: u16,
    /// Datagram size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_507))]
    size: u32,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// How long to wait for each reply before counting it lost.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    wait: Duration,
    #[arg(long)]
    plain: bool,
    #[arg(long)]
    json: bool,
}

/// Connections opened per second.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sockit bench connect --addr 127.0.0.1:8080 --concurrency 50 --secs 5"
)]
struct ConnectArgs {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    #[arg(long)]
    json: bool,
}

/// Start each echo model on an ephemeral port, load them in turn, and compare.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sockit bench models --conns 1,50,500 --size 64,16384 --secs 5 --svg docs/img/models.svg \\\n      --against python-threading=127.0.0.1:9001 --against c-epoll=127.0.0.1:9002 --idle 10000"
)]
struct ModelsArgs {
    /// Models to start, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Also load a running server: NAME=ADDR (repeatable).
    #[arg(long, value_parser = parse_against)]
    against: Vec<(String, SocketAddr)>,
    /// Also hold this many idle connections to each event-loop model (the
    /// others would not serve them all): report the memory each costs, and
    /// the round trips of 50 busy connections beside them (first --size).
    #[arg(long)]
    idle: Option<usize>,
    /// Write a chart of throughput and p99 per server.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Run every load this many times, the servers taking turns, and show
    /// each server's median round (by round trips per second; errors and
    /// failed connects of all rounds): a machine whose speed drifts then
    /// slows every server alike.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=99))]
    rounds: u16,
    #[command(flatten)]
    load: LoadArgs,
}

/// A server `bench models` loads: a model it started, or one of `--against`.
struct Target {
    name: String,
    /// The loads to run against it, one per connection count and size.
    loads: Vec<EchoLoad>,
    model: Option<(Model, ModelProcess)>,
}

impl Target {
    fn pid(&self) -> Option<u32> {
        self.model.as_ref().map(|(_, process)| process.pid())
    }
}

/// The row that stands for several rounds of one load on one server: the
/// round with the median round trips per second, carrying the errors,
/// starved connections and failed connects of every round, so none is
/// hidden by the choice.
fn median_round(mut rounds: Vec<Row>) -> Row {
    rounds.sort_by(|a, b| a.round_trips_per_sec.total_cmp(&b.round_trips_per_sec));
    let errors = rounds.iter().map(|row| row.errors).sum();
    let starved = rounds.iter().map(|row| row.starved).max().unwrap_or(0);
    let connect_failures = rounds.iter().map(|row| row.connect_failures).sum();
    let middle = rounds.len() / 2;
    Row {
        errors,
        starved,
        connect_failures,
        ..rounds.swap_remove(middle)
    }
}

fn parse_against(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = text.split_once('=').ok_or("expected NAME=ADDR")?;
    let addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an address such as 127.0.0.1:9000"))?;
    Ok((name.to_owned(), addr))
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    sockit::listener::raise_open_file_limit();
    // Echo loads run on event loops of their own, `--threads` of them; the UDP
    // and connect loads are Tokio tasks. One thread is a current-thread
    // runtime: the tasks then run where their sockets' events are read, with
    // no hand-off between a driver thread and a worker.
    let mut builder = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads.into());
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        match args.what {
            Bench::Echo(echo_args) => echo(echo_args, args.threads).await,
            Bench::Udp(args) => udp(args).await,
            Bench::Connect(args) => connect(args).await,
            Bench::Models(models_args) => models(models_args, args.threads).await,
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

fn print_rows(rows: &[Row], json: bool) -> anyhow::Result<()> {
    if json {
        super::print_json(&rows)?;
    } else {
        write!(std::io::stdout(), "{}", report::table(rows))?;
    }
    Ok(())
}

/// Exit 1 when any reply was wrong: a benchmark of a broken server failed.
fn verdict(rows: &[Row]) -> ExitCode {
    if rows.iter().any(|r| r.errors > 0) {
        eprintln!("sockit: bench: some replies were wrong or short (see the errors column)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn echo(args: EchoArgs, threads: u16) -> anyhow::Result<ExitCode> {
    args.load.check()?;
    let mut rows = Vec::new();
    for load in args.load.loads(args.addr, threads) {
        let progress = Arc::new(Progress::default());
        let ticker = std::io::stderr().is_terminal().then(|| {
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut seconds = 0;
                loop {
                    tick.tick().await;
                    eprint!(
                        "\r{} conns x {} B: {seconds} s, {} round trips, {} errors   ",
                        load.conns,
                        load.size,
                        progress.round_trips.load(Ordering::Relaxed),
                        progress.errors.load(Ordering::Relaxed)
                    );
                    seconds += 1;
                }
            })
        });
        let outcome = bench::run_echo(load, progress)
            .await
            .context("cannot run the load")?;
        if let Some(ticker) = ticker {
            ticker.abort();
            eprint!("\r\x1b[K");
        }
        rows.push(Row::new(&args.addr.to_string(), &load, &outcome, None));
    }
    print_rows(&rows, args.load.json)?;
    Ok(verdict(&rows))
}

#[derive(Serialize)]
struct UdpReport {
    sent: u64,
    answered: u64,
    lost: u64,
    errors: u64,
    datagrams_per_sec: f64,
    loss_percent: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn udp(args: UdpArgs) -> anyhow::Result<ExitCode> {
    let outcome = load::udp(
        args.addr,
        args.sockets.into(),
        args.size as usize,
        checked_duration(args.secs)?,
        args.wait,
        Transform::from_plain(args.plain),
    )
    .await
    .context("cannot open UDP sockets")?;
    let lost =
        outcome.sent - outcome.answered - outcome.errors.min(outcome.sent - outcome.answered);
    let report = UdpReport {
        sent: outcome.sent,
        answered: outcome.answered,
        lost,
        errors: outcome.errors,
        datagrams_per_sec: outcome.answered as f64 / outcome.elapsed.as_secs_f64(),
        loss_percent: 100.0 * lost as f64 / outcome.sent.max(1) as f64,
        p50_us: outcome.latency.value_at_quantile(0.5),
        p99_us: outcome.latency.value_at_quantile(0.99),
    };
    if args.json {
        super::print_json(&report)?;
    } else {
        writeln!(
            std::io::stdout(),
            "{} datagrams/s answered, {} sent, {} lost ({:.2} %), {} wrong, p50 {} us, p99 {} us",
            report.datagrams_per_sec as u64,
            report.sent,
            report.lost,
            report.loss_percent,
            report.errors,
            report.p50_us,
            report.p99_us
        )?;
    }
    Ok(if report.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Serialize)]
struct ConnectReport {
    connections: u64,
    failures: u64,
    connections_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let outcome = load::connect(
        args.addr,
        args.concurrency.into(),
        checked_duration(args.secs)?,
    )
    .await;
    let report = ConnectReport {
        connections: outcome.connections,
        failures: outcome.failures,
        connections_per_sec: outcome.connections as f64 / outcome.elapsed.as_secs_f64(),
        p50_us: outcome.latency.value_at_quantile(0.5),
        p99_us: outcome.latency.value_at_quantile(0.99),
    };
    if args.json {
        super::print_json(&report)?;
    } else {
        writeln!(
            std::io::stdout(),
            "{} connections/s, {} failed, connect p50 {} us, p99 {} us",
            report.connections_per_sec as u64,
            report.failures,
            report.p50_us,
            report.p99_us
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn models(args: ModelsArgs, threads: u16) -> anyhow::Result<ExitCode> {
    args.load.check()?;
    let models: Vec<Model> = if args.models.is_empty() {
        Model::ALL.to_vec()
    } else {
        args.models
            .iter()
            .map(|name| {
                Model::ALL
                    .into_iter()
                    .find(|m| m.name() == name)
                    .with_context(|| format!("unknown model {name:?}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    // The servers get the cores the generator leaves: on a small machine
    // more threads would only take turns with the generator's.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = cores.saturating_sub(threads.into()).max(1);
    let max_connections = args
        .load
        .conns
        .iter()
        .max()
        .copied()
        .unwrap_or(0)
        .saturating_add(
            args.idle
                .map_or(0, |idle| idle.saturating_add(IDLE_BUSY_CONNS)),
        );
    let exe = std::env::current_exe().context("cannot find the sockit binary")?;
    let scratch = tempfile_dir()?;
    // Every server runs from the start, so that each load can go to them in
    // turn; an idle server costs no CPU.
    let mut targets = Vec::new();
    for model in models {
        let process = ModelProcess::start(&exe, model.name(), workers, max_connections, &scratch)
            .with_context(|| format!("cannot start the {} model", model.name()))?;
        targets.push(Target {
            name: model.name().to_owned(),
            loads: args.load.loads(process.addr, threads),
            model: Some((model, process)),
        });
    }
    targets.extend(args.against.iter().map(|(name, addr)| Target {
        name: name.clone(),
        loads: args.load.loads(*addr, threads),
        model: None,
    }));
    let load_count = targets.first().map_or(0, |target| target.loads.len());
    // measured[target][load]: that load's rounds on that server.
    let mut measured = vec![vec![Vec::new(); load_count]; targets.len()];
    for load_index in 0..load_count {
        for _ in 0..args.rounds {
            for (target, rounds) in targets.iter().zip(&mut measured) {
                let row = bench::measure(&target.name, target.loads[load_index], target.pid())
                    .await
                    .context("cannot run the load")?;
                rounds[load_index].push(row);
            }
        }
    }
    let rows: Vec<Row> = measured.into_iter().flatten().map(median_round).collect();
    let mut idle = Vec::new();
    if let Some(count) = args.idle {
        for target in &targets {
            let Some((model, process)) = &target.model else {
                continue;
            };
            if !matches!(model, Model::Async | Model::Epoll | Model::Poll) {
                continue;
            }
            if let Some(&first) = target.loads.first() {
                let busy = EchoLoad {
                    conns: IDLE_BUSY_CONNS,
                    ..first
                };
                let cost = bench::idle_cost(model.name(), process.pid(), count, busy).await;
                idle.push((model.name(), count, cost));
            }
        }
    }
    drop(targets);
    let _ = std::fs::remove_dir_all(&scratch);
    print_rows(&rows, args.load.json)?;
    if !args.load.json {
        for (name, count, cost) in &idle {
            let Some(cost) = cost else {
                writeln!(
                    std::io::stdout(),
                    "{name}: could not hold {count} idle connections"
                )?;
                continue;
            };
            let alone = rows.iter().find(|row| {
                row.server == *name && row.conns == cost.busy.conns && row.size == cost.busy.size
            });
            writeln!(
                std::io::stdout(),
                "{name}: {count} idle connections cost {:.2} KiB each; beside them {} busy connections x {} B made {:.0} rt/s{}{}",
                cost.kib_each,
                cost.busy.conns,
                cost.busy.size,
                cost.busy.round_trips_per_sec,
                match cost.busy.starved {
                    0 => String::new(),
                    starved => format!(", {starved} of them starved"),
                },
                alone.map_or_else(String::new, |row| format!(
                    " ({:.0} without them)",
                    row.round_trips_per_sec
                ))
            )?;
        }
    }
    if let Some(path) = &args.svg {
        report::chart(&rows, path)
            .map_err(|err| anyhow::anyhow!("cannot draw {}: {err}", path.display()))?;
    }
    let beside_idle = idle
        .iter()
        .filter_map(|(_, _, cost)| cost.as_ref().map(|cost| cost.busy.clone()));
    Ok(verdict(
        &rows.iter().cloned().chain(beside_idle).collect::<Vec<_>>(),
    ))
}

/// Busy connections run beside `--idle` ones.
const IDLE_BUSY_CONNS: usize = 50;

/// A fresh directory for the model servers' data dirs.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sockit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(round_trips_per_sec: f64, errors: u64, starved: u64) -> Row {
        Row {
            server: "epoll".to_owned(),
            conns: 50,
            size: 64,
            round_trips_per_sec,
            megabytes_per_sec: 0.0,
            p50_us: round_trips_per_sec as u64,
            p99_us: 0,
            p999_us: 0,
            connect_p50_us: 0,
            errors,
            starved,
            connect_failures: 0,
            rss_kib: None,
        }
    }

    #[test]
    fn the_median_round_stands_for_the_rounds_and_keeps_every_error() {
        let row = median_round(vec![
            round(300.0, 0, 0),
            round(100.0, 2, 1),
            round(200.0, 0, 3),
        ]);
        assert_eq!(row.round_trips_per_sec, 200.0);
        assert_eq!(row.p50_us, 200, "the whole row is the median round's");
        assert_eq!(row.errors, 2, "errors of every round");
        assert_eq!(row.starved, 3, "the most starved of any round");
    }
}
