//! The command line: clap definitions, logging set-up, dispatch, and error
//! presentation. The one place `anyhow` is used.
//!
//! Each subcommand family has its own file and builds the tokio runtime it needs
//! (see `main.rs` for why `main` does not).

mod bench;
mod config;
mod connect;
mod exec;
mod serve;
mod tools;
mod user;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// sockit: echo, remote exec, FTP, a browser console and more, in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "sockit",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Examples:\n  sockit serve                         run every service from the default config\n  sockit connect tcp 127.0.0.1:8080    talk to the echo service"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Connect(connect::ConnectArgs),
    Exec(exec::ExecArgs),
    Keygen(exec::KeygenArgs),
    Config(config::ConfigArgs),
    User(user::UserArgs),
    Ports(tools::PortsArgs),
    Resolve(tools::ResolveArgs),
    Probe(tools::ProbeArgs),
    Bench(bench::BenchArgs),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  sockit completions bash > /etc/bash_completion.d/sockit")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Keygen(args) => exec::keygen(args),
        Command::Config(args) => config::run(args),
        Command::User(args) => user::run(args),
        Command::Ports(args) => tools::ports(args),
        Command::Resolve(args) => tools::resolve(args),
        Command::Probe(args) => tools::probe(args),
        Command::Bench(args) => bench::run(args),
        Command::Completions { shell } => completions(shell),
    }
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    // Generated whole, then written: some generators panic when stdout is a
    // closed pipe (`sockit completions fish | head -1`); a write error here is
    // returned, and a broken pipe ends quietly.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sockit", &mut script);
    std::io::Write::write_all(&mut std::io::stdout(), &script)?;
    Ok(ExitCode::SUCCESS)
}

/// Sends `tracing` output to stderr: `sockit=info` by default, moved by `-v`/`-q`,
/// replaced by `RUST_LOG` when that is set.
pub fn init_logging(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,sockit={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// How many tasks a runtime worker runs between two looks for new I/O
/// events: as many as its own run queue holds.
///
/// With Tokio's default, 61, a worker under more ready sessions than its
/// queue holds (500 busy echo clients on one worker) never empties its
/// queue: every look for events refills it with the sessions just served,
/// while the ones that overflowed to the runtime's shared queue wait their
/// rare turn there. The slowest 1 % of round trips then took 35-50 ms
/// where the C epoll server's took 5-7 ms. Letting the queue run dry first
/// serves every ready session in turn: 6.5-8 ms, at the same throughput
/// (BENCHMARKS.md, "Echo concurrency models").
const EVENT_INTERVAL: u32 = 256;

/// A multi-threaded runtime for the subcommands that serve, with `workers`
/// worker threads (Tokio's default, one per core, when not given).
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder
        .thread_keep_alive(sockit::memory::BLOCKING_THREAD_KEEP_ALIVE)
        .event_interval(EVENT_INTERVAL)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints `value` as pretty JSON on stdout (a closed stdout is an error the
/// caller returns, not a panic).
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(value)?
    )?;
    Ok(())
}

/// True when the error is a closed stdout (`sockit connect ... | head`), which
/// is how pipelines end, not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(broken)
            || matches!(cause.downcast_ref(), Some(sockit::connect::ConnectError::Io(io)) if broken(io))
    })
}

/// The error chain on one line, `what: why: why`, with a hint when one helps.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = format!("{err:#}").replace('\n', " ");
    let hint = err.chain().find_map(|cause| {
        let bind = cause.downcast_ref::<sockit::endpoint::BindError>();
        let setup = cause.downcast_ref::<sockit::endpoint::SetupError>();
        let model = cause.downcast_ref::<sockit::echo::models::ModelError>();
        let exec_setup = cause.downcast_ref::<sockit::exec::ExecSetupError>();
        let exec_client = cause.downcast_ref::<sockit::exec::client::ClientError>();
        let key = cause.downcast_ref::<sockit::exec::keys::KeyError>();
        bind.and_then(sockit::endpoint::BindError::hint)
            .or_else(|| setup.and_then(sockit::endpoint::SetupError::hint))
            .or_else(|| model.and_then(sockit::echo::models::ModelError::hint))
            .or_else(|| exec_setup.and_then(sockit::exec::ExecSetupError::hint))
            .or_else(|| exec_client.and_then(sockit::exec::client::ClientError::hint))
            .or_else(|| key.and_then(sockit::exec::keys::KeyError::hint))
    });
    if let Some(hint) = hint {
        line.push_str("; hint: ");
        line.push_str(&hint);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example_in_its_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                let help = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(help.contains("Example"), "`{path} --help` shows no example");
                check(sub, &path);
            }
        }
        check(&Cli::command(), "sockit");
    }
}
