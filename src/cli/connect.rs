//! `sockit connect`: the interactive client on a terminal, `nc` otherwise, and
//! with `--listen` the server end of such a pipe.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sockit::address::HostPort;
use sockit::connect;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};

/// Connect to a server: a prompt on a terminal, a pipe like `nc` otherwise.
///
/// The socket and the input are read at once, so what the server says shows
/// as it arrives. On a terminal each line is sent; `q` quits. With stdin not a
/// terminal, stdin streams to the socket and the socket to stdout until the
/// server closes (the write side is half-closed at stdin EOF). Over UDP each
/// line is one datagram, newline included, and replies print as they come
/// until `--timeout` passes without one after stdin ends. With `--listen`,
/// connections are accepted instead and relayed the same way.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit connect tcp 127.0.0.1:8080\n  printf 'hello\\n' | sockit connect tcp [::1]:8080\n  sockit connect udp localhost:8080 --timeout 500ms\n  sockit connect unix /tmp/echo.sock\n  sockit connect tcp -l 127.0.0.1:9000 -k        the server end, driven by hand"
)]
pub struct ConnectArgs {
    /// Transport to use.
    transport: Transport,
    /// HOST:PORT for tcp and udp (e.g. 127.0.0.1:8080, [::1]:8080), a path for unix.
    #[arg(required_unless_present = "listen")]
    address: Option<String>,
    /// Accept connections on this HOST:PORT (tcp) instead, relaying each to stdin and stdout.
    #[arg(short, long, value_name = "ADDR", conflicts_with = "address")]
    listen: Option<String>,
    /// With --listen: after a connection ends, take the next one.
    #[arg(short, long, requires = "listen")]
    keep_open: bool,
    /// How long to wait for a reply (UDP), for the first bytes of one before the
    /// prompt returns (prompt), and for more replies after stdin ends (UDP pipe).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Exit 1 after this long without traffic either way (e.g. 10s).
    #[arg(short, long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    wait: Option<Duration>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Transport {
    Tcp,
    Udp,
    Unix,
}

pub fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        match &args.listen {
            Some(address) => listen(&args, address).await,
            None => talk(&args).await,
        }
    });
    // Reading stdin blocks a thread that cannot be interrupted; do not wait for it.
    runtime.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}

async fn talk(args: &ConnectArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let address = args.address.as_deref().expect("clap requires an address");
    match args.transport {
        Transport::Tcp => {
            let stream = connect_tcp(address).await?;
            stream.set_nodelay(true)?;
            talk_over(stream, interactive, args).await
        }
        Transport::Unix => {
            let stream = UnixStream::connect(PathBuf::from(address))
                .await
                .with_context(|| format!("cannot connect to unix socket {address}"))?;
            talk_over(stream, interactive, args).await
        }
        Transport::Udp => {
            let peer = resolve(address).await?[0];
            let local: SocketAddr = if peer.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .expect("literal address");
            let socket = UdpSocket::bind(local)
                .await
                .context("cannot open a UDP socket")?;
            socket
                .connect(peer)
                .await
                .with_context(|| format!("cannot set the UDP peer {peer}"))?;
            let stdin = BufReader::new(tokio::io::stdin());
            let stdout = tokio::io::stdout();
            if interactive {
                connect::datagram_prompt(&socket, stdin, stdout, args.timeout, args.wait).await
            } else {
                connect::datagram_pipe(&socket, stdin, stdout, args.timeout, args.wait).await
            }
            .with_context(|| format!("udp {peer}"))
        }
    }
}

async fn talk_over<S>(stream: S, interactive: bool, args: &ConnectArgs) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stdout = tokio::io::stdout();
    if interactive {
        let stdin = BufReader::new(tokio::io::stdin());
        connect::prompt(stream, stdin, stdout, args.timeout, args.wait).await?;
    } else {
        connect::pipe(stream, tokio::io::stdin(), stdout, args.wait).await?;
    }
    Ok(())
}

/// `--listen`: accepts a connection and relays it to stdin and stdout, as
/// `ncat -l` does; with `--keep-open`, one connection after another, all
/// reading the same stdin.
async fn listen(args: &ConnectArgs, address: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(args.transport, Transport::Tcp),
        "--listen works over tcp only"
    );
    let addr = resolve(address).await?[0];
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on tcp {addr}"))?;
    eprintln!("sockit: listening on tcp {}", listener.local_addr()?);
    let mut stdin = tokio::io::stdin();
    loop {
        let (stream, peer) = listener.accept().await.context("cannot accept")?;
        stream.set_nodelay(true)?;
        eprintln!("sockit: connection from {peer}");
        connect::pipe(stream, &mut stdin, tokio::io::stdout(), args.wait).await?;
        if !args.keep_open {
            return Ok(());
        }
    }
}

/// The addresses `address` (HOST:PORT or [IPv6]:PORT) resolves to.
async fn resolve(address: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let HostPort { host, port } = HostPort::parse(address, None)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {address}"))?
        .collect();
    anyhow::ensure!(!addrs.is_empty(), "{address} resolves to no address");
    Ok(addrs)
}

/// Connects to the first address of `address` that accepts.
async fn connect_tcp(address: &str) -> anyhow::Result<TcpStream> {
    let mut last_error = None;
    for addr in resolve(address).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last_error = Some((addr, err)),
        }
    }
    let (addr, err) = last_error.expect("resolve returns at least one address");
    Err(err).with_context(|| format!("cannot connect to {addr}"))
}
