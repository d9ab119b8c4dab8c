//! `sockit connect`: the interactive client on a terminal, `nc` otherwise.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sockit::connect;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpStream, UdpSocket, UnixStream};

/// Connect to a server: a prompt on a terminal, a pipe like `nc` otherwise.
///
/// On a terminal each line is sent and the reply printed; `q` quits. With stdin
/// not a terminal, stdin streams to the socket and the socket to stdout until
/// both end (the write side is half-closed at stdin EOF). Over UDP each line is
/// one datagram.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit connect tcp 127.0.0.1:8080\n  printf 'hello\\n' | sockit connect tcp [::1]:8080\n  sockit connect udp localhost:8080 --timeout 500ms\n  sockit connect unix /tmp/echo.sock"
)]
pub struct ConnectArgs {
    /// Transport to use.
    transport: Transport,
    /// HOST:PORT for tcp and udp (e.g. 127.0.0.1:8080, [::1]:8080), a path for unix.
    address: String,
    /// How long to wait for a reply (UDP) or for the first bytes of one (prompt).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
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
    let result = runtime.block_on(talk(args));
    // Reading stdin blocks a thread that cannot be interrupted; do not wait for it.
    runtime.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}

async fn talk(args: ConnectArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let address = args.address.as_str();
    match args.transport {
        Transport::Tcp => {
            let stream = connect_tcp(address).await?;
            stream.set_nodelay(true)?;
            talk_over(stream, interactive, args.timeout).await
        }
        Transport::Unix => {
            let stream = UnixStream::connect(PathBuf::from(address))
                .await
                .with_context(|| format!("cannot connect to unix socket {address}"))?;
            talk_over(stream, interactive, args.timeout).await
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
            connect::datagram_lines(
                &socket,
                stdin,
                tokio::io::stdout(),
                args.timeout,
                interactive,
            )
            .await
            .with_context(|| format!("udp {peer}"))
        }
    }
}

async fn talk_over<S>(stream: S, interactive: bool, timeout: Duration) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if interactive {
        let stdin = BufReader::new(tokio::io::stdin());
        connect::prompt(stream, stdin, tokio::io::stdout(), timeout).await?;
    } else {
        connect::pipe(stream, tokio::io::stdin(), tokio::io::stdout()).await?;
    }
    Ok(())
}

async fn resolve(address: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("cannot resolve {address} (expected HOST:PORT)"))?
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
