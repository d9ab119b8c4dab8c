//! `sockit exec` and `sockit keygen`: run commands on an exec server, and
//! make the keys that prove who is asking.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bytes::BytesMut;
use clap::Args;
use sockit::exec::client::{ClientError, ServerTrust, Session, Target};
use sockit::exec::keys::{KeyPair, KnownHosts, PublicKey};
use sockit::exec::wire::{Command, DataMessage, Stream};
use tokio::sync::mpsc;

/// Run a command on a sockit exec server, over an encrypted channel on
/// which both sides prove their keys.
///
/// stdout and stderr arrive separately as the command writes them; stdin is
/// forwarded; the exit code is the command's (128+N when killed by signal N;
/// 255 when sockit itself fails, as ssh does). Ctrl-C kills the remote
/// command's process group. With no command, on a terminal: a prompt loop in
/// which each line runs through the server's shell (`exit` or `q` quits).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit keygen                                this client's key (once)\n  sockit exec 127.0.0.1:9999 -- uname -a\n  sockit exec 127.0.0.1 --shell 'ls | wc -l'\n  tar c dir | sockit exec 127.0.0.1 -- tar x -C /tmp\n  sockit exec 127.0.0.1                        the interactive loop"
)]
pub struct ExecArgs {
    /// The server: HOST[:PORT] (port 9999 if omitted), [IPv6]:PORT, or a Unix socket path.
    #[arg(value_name = "ADDR")]
    addr: String,
    /// Run this command line with the server's `sh -c`.
    #[arg(long, value_name = "COMMAND", conflicts_with = "argv")]
    shell: Option<String>,
    /// This client's private key [default: <data dir>/client.key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Accept only this server public key (base64) instead of known_hosts.
    #[arg(long, value_name = "KEY")]
    server_key: Option<PublicKey>,
    /// Where server keys are pinned [default: <data dir>/known_hosts].
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Where the client key and known_hosts live [default: $XDG_DATA_HOME/sockit or ~/.local/share/sockit].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The program and its arguments, run directly (no shell).
    #[arg(last = true, value_name = "PROG ARGS")]
    argv: Vec<OsString>,
}

/// Create a key pair for `sockit exec` (or show the public half of one).
///
/// The private key is written with mode 0600; the public key is printed on
/// stdout as one base64 line, for the server's authorized_keys.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit keygen                                the client key, in the data dir\n  sockit keygen -o alice.key\n  echo \"$(sockit keygen --show) alice\" >> authorized_keys"
)]
pub struct KeygenArgs {
    /// The private key file [default: <data dir>/client.key].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace an existing key file.
    #[arg(long)]
    force: bool,
    /// Print the public key of the existing file instead of creating one.
    #[arg(long, conflicts_with = "force")]
    show: bool,
    /// The data dir [default: $XDG_DATA_HOME/sockit or ~/.local/share/sockit].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(sockit::config::default_data_dir)
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .output
        .unwrap_or_else(|| data_dir(args.data_dir).join("client.key"));
    let pair = if args.show {
        KeyPair::load(&path)?
    } else {
        let pair = KeyPair::generate();
        pair.save(&path, args.force)?;
        eprintln!(
            "sockit: wrote the private key to {} ({}); authorize it on a server with a line `<public key> <name>` in its authorized_keys",
            path.display(),
            pair.public().fingerprint()
        );
        pair
    };
    writeln!(std::io::stdout(), "{}", pair.public())?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the command; every failure of sockit itself (a bad address, a missing
/// key, a refused connection) ends with 255, as ssh does.
pub fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    match exec(args) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(err) => {
            let code = err
                .downcast_ref::<ClientError>()
                .map_or(255, ClientError::exit_code);
            eprintln!("sockit: exec: {}", super::one_line(&err));
            Ok(ExitCode::from(code))
        }
    }
}

fn exec(args: ExecArgs) -> anyhow::Result<u8> {
    let target = Target::parse(&args.addr)?;
    let data = data_dir(args.data_dir);
    let command = match (args.shell, args.argv.is_empty()) {
        (Some(line), _) => Some(Command::Shell(line.into_bytes())),
        (None, false) => Some(Command::Argv(
            args.argv.into_iter().map(OsString::into_vec).collect(),
        )),
        (None, true) if std::io::stdin().is_terminal() => None,
        (None, true) => anyhow::bail!(
            "no command given: use `sockit exec ADDR -- PROG ARGS` or `--shell 'COMMAND'` (the interactive loop needs a terminal)"
        ),
    };
    let keys = KeyPair::load(&args.key.unwrap_or_else(|| data.join("client.key")))?;
    let trust = match args.server_key {
        Some(key) => ServerTrust::Key(key),
        None => ServerTrust::KnownHosts(KnownHosts::load(
            &args.known_hosts.unwrap_or_else(|| data.join("known_hosts")),
        )?),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let (mut session, notice) = Session::connect(&target, &keys, trust).await?;
        if let Some(notice) = notice {
            eprintln!("sockit: {notice}");
        }
        let interrupts = watch_interrupts();
        match command {
            Some(command) => run_one(&mut session, command, interrupts).await,
            None => interactive(&mut session, &target, interrupts).await,
        }
    });
    runtime.shutdown_background();
    Ok(result?)
}

/// Ctrl-C: each press asks the server to kill the running command; a press
/// while an earlier one is still unanswered ends the client at once.
fn watch_interrupts() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.try_send(()).is_err() {
                std::process::exit(130);
            }
        }
    });
    rx
}

/// The client's stdin in chunks, read by a thread (reads of a terminal or
/// pipe block, and must not hold up the runtime).
fn forward_stdin() -> mpsc::Receiver<DataMessage> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = BytesMut::new();
        while let Ok(Some(message)) = DataMessage::read(Stream::Stdin, &mut buffer, &mut stdin) {
            if tx.blocking_send(message).is_err() {
                break;
            }
        }
    });
    rx
}

/// Writes straight to a blocking std stream. The client's runtime has one
/// thread and one session: when stdout blocks, there is nothing else it
/// should be doing (the server waits, by TCP backpressure), and writing
/// directly saves a thread hand-off per message that tokio's stdout makes.
struct Blocking<W>(W);

impl<W: Write + Unpin> tokio::io::AsyncWrite for Blocking<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(self.0.write(buf))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.0.flush())
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

async fn run_one(
    session: &mut Session,
    command: Command,
    mut interrupts: mpsc::Receiver<()>,
) -> Result<u8, ClientError> {
    // A duplicate of fd 1: the standard library's stdout buffers by line,
    // scanning every byte for newlines, which bulk output does not need.
    let stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(ClientError::Output)?;
    let mut stdout = Blocking(std::fs::File::from(stdout));
    let mut stderr = Blocking(std::io::stderr());
    let status = session
        .run(
            command,
            forward_stdin(),
            &mut stdout,
            &mut stderr,
            &mut interrupts,
        )
        .await?;
    Ok(status.code())
}

/// The course's loop: a prompt, each line through the server's shell.
async fn interactive(
    session: &mut Session,
    target: &Target,
    mut interrupts: mpsc::Receiver<()>,
) -> Result<u8, ClientError> {
    let name = session.welcome().await?;
    eprintln!("sockit: connected to {target} as {name}; `exit` or `q` quits");
    let (lines_tx, mut lines) = mpsc::channel::<String>(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut stdout = Blocking(std::io::stdout());
    let mut stderr = Blocking(std::io::stderr());
    let mut last = 0;
    loop {
        {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, ">>: ");
            let _ = out.flush();
        }
        let Some(line) = lines.recv().await else {
            return Ok(last);
        };
        let line = line.trim();
        match line {
            "" => continue,
            "exit" | "q" | "quit" => return Ok(last),
            _ => {}
        }
        while interrupts.try_recv().is_ok() {}
        let (no_input, input) = mpsc::channel(1);
        drop(no_input);
        let command = Command::Shell(line.as_bytes().to_vec());
        match session
            .run(command, input, &mut stdout, &mut stderr, &mut interrupts)
            .await
        {
            Ok(status) => {
                last = status.code();
                if last != 0 {
                    eprintln!("[exit {last}]");
                }
            }
            Err(err @ ClientError::Refused { .. }) => {
                last = err.exit_code();
                eprintln!("sockit: {err}");
            }
            Err(err) => return Err(err),
        }
    }
}
