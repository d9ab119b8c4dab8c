//! The echo service against real sockets: TCP over IPv4 and IPv6, UDP, Unix;
//! many concurrent clients, hostile clients, and backpressure.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sockit::config::EchoSettings;
use sockit::echo::Echo;
use sockit::endpoint::Endpoint;
use sockit::shutdown::Shutdown;
use support::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket, UnixStream};

/// An in-process echo service on port 0, stopped when dropped.
struct EchoUnderTest {
    endpoints: Vec<Endpoint>,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<()>,
}

impl EchoUnderTest {
    async fn start(settings: EchoSettings) -> EchoUnderTest {
        let echo = Echo::bind(&settings).await.expect("echo binds");
        let endpoints = echo.endpoints();
        let shutdown = Shutdown::new(Duration::from_secs(5));
        let running = tokio::spawn(echo.run(shutdown.clone()));
        EchoUnderTest {
            endpoints,
            shutdown,
            running,
        }
    }

    async fn tcp(ip: &str) -> EchoUnderTest {
        EchoUnderTest::start(EchoSettings {
            tcp: Some(format!("{ip}:0").parse().unwrap()),
            udp: None,
            unix: None,
            plain: false,
            max_connections: 10_000,
        })
        .await
    }

    fn address(&self, protocol: &str) -> SocketAddr {
        let endpoint = self
            .endpoints
            .iter()
            .find(|e| e.protocol == protocol)
            .expect("endpoint bound");
        endpoint.address.parse().unwrap()
    }

    async fn stop(self) {
        self.shutdown.drain().await;
        self.running.await.unwrap();
    }
}

/// Sends `message` and reads back exactly as many bytes, concurrently, so that
/// messages larger than the socket buffers cannot deadlock the exchange.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    let (mut reader, mut writer) = stream.split();
    let mut reply = vec![0u8; message.len()];
    let (written, read) = tokio::join!(writer.write_all(message), reader.read_exact(&mut reply));
    written.expect("send");
    read.expect("receive the whole reply");
    reply
}

fn upper(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_uppercase()
}

#[tokio::test]
async fn tcp_over_ipv4_uppercases_like_the_course() {
    let server = EchoUnderTest::tcp("127.0.0.1").await;
    let mut stream = TcpStream::connect(server.address("tcp")).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"hello").await, b"HELLO");
    assert_eq!(
        round_trip(&mut stream, b"Mixed 123 !?").await,
        b"MIXED 123 !?"
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn tcp_over_ipv6_works() {
    let server = EchoUnderTest::tcp("[::1]").await;
    assert!(server.address("tcp").is_ipv6());
    let mut stream = TcpStream::connect(server.address("tcp")).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"over six").await, b"OVER SIX");
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn non_utf8_bytes_come_back_unchanged_except_ascii_letters() {
    let server = EchoUnderTest::tcp("127.0.0.1").await;
    let mut stream = TcpStream::connect(server.address("tcp")).await.unwrap();
    let every_byte: Vec<u8> = (0..=255u8).collect();
    assert_eq!(
        round_trip(&mut stream, &every_byte).await,
        upper(&every_byte)
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn plain_mode_echoes_unchanged() {
    let server = EchoUnderTest::start(EchoSettings {
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        udp: None,
        unix: None,
        plain: true,
        max_connections: 10,
    })
    .await;
    let mut stream = TcpStream::connect(server.address("tcp")).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"keep Case").await, b"keep Case");
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn udp_answers_each_datagram_up_to_the_ipv4_maximum() {
    let server = EchoUnderTest::start(EchoSettings {
        tcp: None,
        udp: Some("127.0.0.1:0".parse().unwrap()),
        unix: None,
        plain: false,
        max_connections: 1,
    })
    .await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(server.address("udp")).await.unwrap();
    let mut reply = vec![0u8; 70_000];
    for size in [0usize, 1, 1024, 65_507] {
        let datagram: Vec<u8> = (0..size).map(|i| b"abcXYZ\xff"[i % 7]).collect();
        client.send(&datagram).await.unwrap();
        let len = bounded("udp reply", client.recv(&mut reply)).await.unwrap();
        assert_eq!(
            &reply[..len],
            upper(&datagram).as_slice(),
            "datagram of {size} bytes"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn udp_over_ipv6_works() {
    let server = EchoUnderTest::start(EchoSettings {
        tcp: None,
        udp: Some("[::1]:0".parse().unwrap()),
        unix: None,
        plain: false,
        max_connections: 1,
    })
    .await;
    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    client.connect(server.address("udp")).await.unwrap();
    client.send(b"ping").await.unwrap();
    let mut reply = [0u8; 16];
    let len = bounded("udp reply", client.recv(&mut reply)).await.unwrap();
    assert_eq!(&reply[..len], b"PING");
    server.stop().await;
}

fn unix_settings(path: PathBuf) -> EchoSettings {
    EchoSettings {
        tcp: None,
        udp: None,
        unix: Some(path),
        plain: false,
        max_connections: 10,
    }
}

#[tokio::test]
async fn unix_socket_echoes_and_is_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let server = EchoUnderTest::start(unix_settings(path.clone())).await;
    let mut stream = UnixStream::connect(&path).await.unwrap();
    stream.write_all(b"unix \x00\xfe").await.unwrap();
    let mut reply = [0u8; 7];
    bounded("unix reply", stream.read_exact(&mut reply))
        .await
        .unwrap();
    assert_eq!(&reply, b"UNIX \x00\xfe");
    drop(stream);
    server.stop().await;
    assert!(!path.exists(), "socket file left behind");
}

#[tokio::test]
async fn a_stale_unix_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    // A stale socket: bound, then its listener dropped without removing the file.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = EchoUnderTest::start(unix_settings(path.clone())).await;

    let second = Echo::bind(&unix_settings(path.clone())).await;
    let err = second.expect_err("a live socket must not be taken over");
    assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
    let mut stream = UnixStream::connect(&path)
        .await
        .expect("first server still reachable");
    stream.write_all(b"ok").await.unwrap();
    let mut reply = [0u8; 2];
    bounded("unix reply", stream.read_exact(&mut reply))
        .await
        .unwrap();
    assert_eq!(&reply, b"OK");
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn a_regular_file_at_the_socket_path_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, b"precious").unwrap();
    let err = Echo::bind(&unix_settings(path.clone())).await.unwrap_err();
    assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

/// Message sizes for one client: one of 1 byte, one of 1 MiB, and the rest
/// spread log-uniformly between 1 byte and 64 KiB (deterministic per client).
fn message_sizes(client: u64, count: usize) -> Vec<usize> {
    let mut state = client.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut sizes = vec![1, 1 << 20];
    while sizes.len() < count {
        let bits = next() % 17; // 2^0 ..= 2^16
        let size = 1 + (next() % (1u64 << bits)) as usize;
        sizes.push(size);
    }
    let rotate = (client as usize) % count;
    sizes.rotate_left(rotate);
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_get_every_byte_back() {
    let server = EchoUnderTest::tcp("127.0.0.1").await;
    let addr = server.address("tcp");
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..200u64 {
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            for (i, size) in message_sizes(client, 100).into_iter().enumerate() {
                let message: Vec<u8> = (0..size)
                    .map(|j| (j as u64 ^ client ^ i as u64) as u8)
                    .collect();
                let reply = round_trip(&mut stream, &message).await;
                assert!(
                    reply == upper(&message),
                    "client {client} message {i}: reply differs"
                );
            }
        });
    }
    bounded("200 clients", async {
        while let Some(done) = clients.join_next().await {
            done.expect("client task");
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_killed_mid_message_do_not_disturb_the_others() {
    let server = EchoUnderTest::tcp("127.0.0.1").await;
    let addr = server.address("tcp");
    let mut healthy = tokio::task::JoinSet::new();
    for client in 0..20u64 {
        healthy.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            for i in 0..200u64 {
                let message = format!("client {client} message {i} ")
                    .repeat(50)
                    .into_bytes();
                assert_eq!(round_trip(&mut stream, &message).await, upper(&message));
            }
        });
    }
    for _ in 0..50 {
        let mut victim = TcpStream::connect(addr).await.unwrap();
        // Half of a large message, then a reset (SO_LINGER 0) instead of a close.
        victim.write_all(&vec![b'x'; 300_000]).await.unwrap();
        socket2::SockRef::from(&victim)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(victim);
    }
    bounded("healthy clients", async {
        while let Some(done) = healthy.join_next().await {
            done.expect("a healthy client was disturbed");
        }
    })
    .await;
    server.stop().await;
}

/// The most a loopback TCP connection can hold in kernel buffers: both ends'
/// maximum send and receive buffers (`tcp_wmem`, `tcp_rmem`).
fn kernel_buffer_bound() -> u64 {
    let max_of = |file: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{file}")).unwrap();
        text.split_whitespace().last().unwrap().parse().unwrap()
    };
    2 * (max_of("tcp_wmem") + max_of("tcp_rmem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_make_the_server_buffer_without_bound() {
    let server = EchoUnderTest::tcp("127.0.0.1").await;
    let addr = server.address("tcp");
    let mut greedy = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut written: u64 = 0;
    const GIB: u64 = 1 << 30;
    // Write until the writes stall (the server stopped reading) or 1 GiB is gone.
    while written < GIB {
        match tokio::time::timeout(Duration::from_secs(2), greedy.write(&chunk)).await {
            Ok(result) => written += result.unwrap() as u64,
            Err(_stalled) => break,
        }
    }
    eprintln!("wrote {written} bytes before the writes stalled");
    // Everything written sits in kernel buffers plus at most one chunk the
    // session holds; a server that buffered without bound would take it all.
    let bound = kernel_buffer_bound() + sockit::echo::async_tasks::CHUNK as u64;
    assert!(
        written <= bound,
        "client wrote {written} bytes without reading; bound {bound}"
    );
    // And the server still serves everyone else.
    let mut other = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        bounded("other client", round_trip(&mut other, b"still here")).await,
        b"STILL HERE"
    );
    drop(greedy);
    drop(other);
    server.stop().await;
}
