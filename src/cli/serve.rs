//! `sockit serve`: run every enabled service, or one of them alone.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sockit::config::{self, EchoSettings, FileConfig, Overrides, Settings};
use sockit::echo::Model;
use sockit::echo::models::ModelServer;
use sockit::serve::Services;
use sockit::shutdown::{Drained, Shutdown};
use sockit::users::UserStore;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// Run every service enabled in the config, or one service alone.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit serve                                 every service, embedded default config\n  sockit serve --bind ::1                      the same on IPv6 loopback\n  sockit serve --config sockit.toml\n  sockit serve echo --tcp 127.0.0.1:9000 --plain"
)]
pub struct ServeArgs {
    /// Configuration file (default: the embedded config, see `sockit config default`).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Where keys, users and state live [default: $XDG_DATA_HOME/sockit or ~/.local/share/sockit].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Listen on this address instead of the config's `serve.bind`.
    #[arg(long, value_name = "IP", global = true)]
    bind: Option<IpAddr>,
    #[command(subcommand)]
    service: Option<Service>,
}

#[derive(Debug, Subcommand)]
enum Service {
    Echo(EchoArgs),
    Http(HttpArgs),
    Bot(BotArgs),
    Ftp(FtpArgs),
    Exec(ExecArgs),
}

/// Run the remote exec server alone (needs a client key in authorized_keys).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit serve exec                            on 127.0.0.1:9999\n  sockit serve exec --addr 127.0.0.1:0 --unix /tmp/exec.sock\n  sockit exec 127.0.0.1:9999 -- uname -a"
)]
struct ExecArgs {
    /// Listen on this address instead of the config's.
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
    /// Also listen on this Unix socket path.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
}

/// Run the FTP server alone (see docs/ftp.md).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit serve ftp                             on 127.0.0.1:2121\n  sockit serve ftp --addr 127.0.0.1:0\n  sockit serve ftp --root ~/public           anonymous may read ~/public\n  curl -u alice ftp://127.0.0.1:2121/"
)]
struct FtpArgs {
    /// Listen on this address instead of the config's.
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
    /// Let `anonymous` browse and download this directory, read-only.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Also serve implicit FTPS (TLS from the first byte) on this address;
    /// needs ftp.tls_cert and ftp.tls_key in the config.
    #[arg(long, value_name = "ADDR")]
    implicit_tls_addr: Option<SocketAddr>,
}

/// Run the 10086 menu bot alone (a line-based service for nc, telnet and `sockit connect`).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit serve bot                             on 127.0.0.1:10086, built-in 10086 menu\n  sockit serve bot --script menu.toml --encoding gbk\n  sockit connect tcp 127.0.0.1:10086"
)]
struct BotArgs {
    /// Listen on this address instead of the config's.
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
    /// A menu script (TOML) instead of the built-in 10086 flow.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Speak this encoding: utf-8, or gbk for legacy Windows terminals.
    #[arg(long, value_name = "NAME", value_parser = parse_encoding)]
    encoding: Option<&'static encoding_rs::Encoding>,
}

fn parse_encoding(name: &str) -> Result<&'static encoding_rs::Encoding, String> {
    config::bot_encoding(name).ok_or_else(|| format!("unknown encoding {name:?}: use utf-8 or gbk"))
}

/// Run the browser console alone: /hello, /healthz, /metrics and the dashboard.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit serve http                            on 127.0.0.1:8000\n  sockit serve http --addr [::1]:8080\n  curl http://127.0.0.1:8000/hello             prints: Hello, World"
)]
struct HttpArgs {
    /// Listen on this address instead of the config's.
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
}

/// Run the echo service alone (uppercase echo over TCP, UDP and Unix sockets).
///
/// With none of --tcp, --udp or --unix, the config's echo endpoints are used.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit serve echo                            TCP and UDP on 127.0.0.1:8080\n  sockit serve echo --tcp [::1]:0              IPv6, a free port (printed)\n  sockit serve echo --unix /tmp/echo.sock --plain"
)]
struct EchoArgs {
    /// Serve TCP on this address, e.g. 127.0.0.1:8080 or [::1]:8080.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Serve UDP on this address.
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// Serve a Unix stream socket at this path.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Echo bytes unchanged instead of upper-casing ASCII letters.
    #[arg(long)]
    plain: bool,
    /// The concurrency model (see docs/models.md); all but async serve TCP
    /// (and UDP, in a blocking loop) without an async runtime.
    #[arg(long, value_enum, default_value_t = ModelArg::Async)]
    model: ModelArg,
    /// epoll model: event loops on their own threads, sharing the port with
    /// SO_REUSEPORT (default 1). async model: the runtime's worker threads
    /// (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// thread model: the most connection threads at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_threads: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModelArg {
    Iterative,
    Thread,
    Fork,
    Poll,
    Epoll,
    Async,
}

impl From<ModelArg> for Model {
    fn from(model: ModelArg) -> Model {
        match model {
            ModelArg::Iterative => Model::Iterative,
            ModelArg::Thread => Model::Thread,
            ModelArg::Fork => Model::Fork,
            ModelArg::Poll => Model::Poll,
            ModelArg::Epoll => Model::Epoll,
            ModelArg::Async => Model::Async,
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    sockit::listener::raise_open_file_limit();
    let origin = match &args.config {
        Some(path) => path.display().to_string(),
        None => "embedded default config".to_owned(),
    };
    let file = FileConfig::load(args.config.as_deref())?;
    let overrides = Overrides {
        bind: args.bind,
        data_dir: args.data_dir,
    };
    let async_workers = match &args.service {
        Some(Service::Echo(echo)) if echo.model == ModelArg::Async => echo.workers,
        _ => None,
    };
    let teaching_model = match &args.service {
        Some(Service::Echo(echo)) if echo.model != ModelArg::Async => Some((
            Model::from(echo.model),
            echo.workers.unwrap_or(1),
            echo.max_threads,
            echo.udp.is_some(),
        )),
        _ => None,
    };
    // With every service, exec waits for a client key; the note saying so
    // is printed once the others are up (a failed start prints one line).
    let mut exec_note = None;
    let settings = match args.service {
        Some(service) => only(service, &file, &overrides, &origin)?,
        None => {
            let mut settings = file.resolve(&overrides, &origin)?;
            if let Some(exec) = &settings.exec
                && !sockit::exec::Exec::has_clients(exec)?
            {
                exec_note = Some(format!(
                    "sockit: exec not started: no client key in {}; to add one, run `sockit keygen` on the client and append `<public key> <name>` to that file",
                    exec.authorized_keys.display()
                ));
                settings.exec = None;
            }
            settings
        }
    };
    if let Some((model, workers, max_threads, udp_asked)) = teaching_model {
        let mut echo = settings.echo.clone().expect("echo is enabled");
        // The models are about TCP; UDP runs alongside only when asked for.
        if !udp_asked {
            echo.udp = None;
        }
        return serve_model(
            model,
            &echo,
            workers.into(),
            max_threads as usize,
            settings.grace_period,
        );
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create the data dir {}", settings.data_dir.display()))?;

    let runtime = super::runtime(async_workers.map(usize::from))?;
    let result = runtime.block_on(serve(settings, exec_note));
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// Runs a teaching model: no async runtime is started in this process (the
/// fork model requires it), and it runs until the process is signalled.
/// The iterative and thread models drain then and exit 0.
fn serve_model(
    model: Model,
    echo: &EchoSettings,
    workers: usize,
    max_threads: usize,
    grace: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let server = ModelServer::bind(model, echo, workers, max_threads)?;
    let mut stdout = std::io::stdout().lock();
    for endpoint in server.endpoints() {
        writeln!(stdout, "{endpoint}")?;
    }
    stdout.flush()?;
    drop(stdout);
    server
        .run(grace)
        .with_context(|| format!("echo: the {} model stopped", model.name()))?;
    Ok(ExitCode::SUCCESS)
}

/// Settings with only the service named on the command line enabled, its
/// flags applied over its config section.
fn only(
    service: Service,
    file: &FileConfig,
    overrides: &Overrides,
    origin: &str,
) -> anyhow::Result<Settings> {
    let mut only = file.clone();
    only.echo.enabled = matches!(service, Service::Echo(_));
    only.http.enabled = matches!(service, Service::Http(_));
    only.bot.enabled = matches!(service, Service::Bot(_));
    only.ftp.enabled = matches!(service, Service::Ftp(_));
    only.exec.enabled = matches!(service, Service::Exec(_));
    let mut settings = only.resolve(overrides, origin)?;
    match service {
        Service::Echo(flags) => {
            let echo = settings.echo.as_mut().expect("echo is enabled");
            if flags.tcp.is_some() || flags.udp.is_some() || flags.unix.is_some() {
                echo.tcp = flags.tcp;
                echo.udp = flags.udp;
                echo.unix = flags.unix;
            }
            echo.plain |= flags.plain;
        }
        Service::Http(flags) => {
            let http = settings.http.as_mut().expect("http is enabled");
            if let Some(addr) = flags.addr {
                http.addr = addr;
            }
        }
        Service::Ftp(flags) => {
            let ftp = settings.ftp.as_mut().expect("ftp is enabled");
            if let Some(addr) = flags.addr {
                ftp.addr = addr;
            }
            if let Some(root) = flags.root {
                let root = std::path::absolute(&root)
                    .with_context(|| format!("--root {}", root.display()))?;
                ftp.anonymous_root = Some(root);
            }
            if let Some(addr) = flags.implicit_tls_addr {
                if ftp.tls.is_none() {
                    anyhow::bail!(
                        "--implicit-tls-addr needs ftp.tls_cert and ftp.tls_key in the config"
                    );
                }
                ftp.implicit_tls_addr = Some(addr);
            }
        }
        Service::Exec(flags) => {
            let exec = settings.exec.as_mut().expect("exec is enabled");
            if let Some(addr) = flags.addr {
                exec.tcp = Some(addr);
            }
            if flags.unix.is_some() {
                exec.unix = flags.unix;
            }
        }
        Service::Bot(flags) => {
            let bot = settings.bot.as_mut().expect("bot is enabled");
            if let Some(addr) = flags.addr {
                bot.addr = addr;
            }
            if flags.script.is_some() {
                bot.script = flags.script;
            }
            if let Some(encoding) = flags.encoding {
                bot.encoding = encoding;
            }
        }
    }
    Ok(settings)
}

/// On a data dir with no users, creates `admin` and shows its password once.
fn create_first_admin(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let users = UserStore::open(data_dir)?;
    if let Some(password) = users.ensure_admin()? {
        // One write, so that nothing reading stderr sees the line in pieces.
        let line = format!(
            "sockit: created user `admin` with password {} (shown only now; change it with `sockit user passwd admin`)\n",
            password.expose()
        );
        std::io::stderr().write_all(line.as_bytes())?;
    }
    Ok(())
}

async fn serve(settings: Settings, exec_note: Option<String>) -> anyhow::Result<ExitCode> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let services = Services::bind(&settings).await?;
    if settings.http.is_some() || settings.ftp.is_some() {
        create_first_admin(&settings.data_dir)?;
    }
    if let Some((key, created)) = services.exec_key() {
        let fingerprint = key.fingerprint();
        if created {
            info!(%key, %fingerprint, "exec: created the server key");
        } else {
            info!(%key, %fingerprint, "exec: server key");
        }
    }
    let endpoints = services.endpoints();
    if endpoints.is_empty() {
        anyhow::bail!("nothing to serve: every service is disabled in the config");
    }
    let mut stdout = std::io::stdout().lock();
    for endpoint in &endpoints {
        writeln!(stdout, "{endpoint}")?;
    }
    stdout.flush()?;
    drop(stdout);
    if let Some(note) = exec_note {
        eprintln!("{note}");
    }

    let shutdown = Shutdown::new(settings.grace_period);
    let running = tokio::spawn(services.run(shutdown.clone()));
    let signal = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    info!(signal, grace = %humantime::format_duration(settings.grace_period), "stopping");
    match shutdown.drain().await {
        Drained::Clean => info!("every session finished"),
        Drained::TimedOut { still_running } => {
            warn!(
                still_running,
                "grace period over; closing the remaining sessions"
            )
        }
    }
    running.await.context("a service panicked")?;
    Ok(ExitCode::SUCCESS)
}
