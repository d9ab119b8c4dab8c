//! The default echo model: tokio tasks on a multi-threaded runtime, one task per
//! connection, for TCP and Unix streams alike.
//!
//! Each session reads a chunk, transforms it, and writes all of it back before
//! reading again. That order is the backpressure: a client that sends but never
//! reads fills the socket buffers, `write_all` waits, the session stops reading,
//! and the server holds at most one chunk for it ([`CHUNK`] bytes).
//!
//! On shutdown a session stops reading, finishes writing what it has read,
//! half-closes its side and discards input until the peer closes, so every byte
//! the server accepted is answered and the peer sees a clean end.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Transform;
use crate::listener::{self, Accept, Outcome, Traffic};
use crate::shutdown::Shutdown;

/// The most a session reads (and so holds) at once.
pub const CHUNK: usize = 64 * 1024;

/// The buffer a session starts with.
const FIRST_CHUNK: usize = 2 * 1024;

/// Accepts on `listener` and echoes every connection until shutdown.
pub async fn run<L: Accept>(
    listener: L,
    transform: Transform,
    max_connections: usize,
    shutdown: Shutdown,
) {
    listener::run(
        listener,
        "echo",
        max_connections,
        shutdown,
        move |stream, _peer, shutdown| session(stream, transform, shutdown),
    )
    .await
}

/// Echoes one stream until the peer closes it or shutdown is requested.
pub async fn session<S>(
    mut stream: S,
    transform: Transform,
    shutdown: Shutdown,
) -> Outcome<io::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut traffic = Traffic::default();
    let result = echo_until_end(&mut stream, transform, &shutdown, &mut traffic).await;
    Outcome { traffic, result }
}

async fn echo_until_end<S>(
    stream: &mut S,
    transform: Transform,
    shutdown: &Shutdown,
    traffic: &mut Traffic,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Start small and grow while reads fill the buffer: an idle connection
    // then costs a few KiB, a busy one reads up to CHUNK at a time.
    let mut buf = vec![0u8; FIRST_CHUNK];
    // One wait for the stop, made once: polling it again costs a flag read,
    // where a wait made afresh for each read would join and leave the list of
    // waiters that every session shares, under its lock, at every message.
    let stopping = shutdown.stopping();
    tokio::pin!(stopping);
    loop {
        let read = tokio::select! {
            biased;
            () = &mut stopping => break,
            read = stream.read(&mut buf) => read?,
        };
        if read == 0 {
            return stream.shutdown().await;
        }
        traffic.bytes_in += read as u64;
        transform.apply(&mut buf[..read]);
        stream.write_all(&buf[..read]).await?;
        traffic.bytes_out += read as u64;
        if read == buf.len() && buf.len() < CHUNK {
            buf.resize((buf.len() * 2).min(CHUNK), 0);
        }
    }
    // Stopping: answer nothing more, tell the peer we are done, and wait for it
    // to close so it reads our last bytes before any reset could discard them.
    stream.shutdown().await?;
    while stream.read(&mut buf).await? != 0 {}
    Ok(())
}
