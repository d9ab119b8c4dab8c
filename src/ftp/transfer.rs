//! The data side of FTP: copying a file to or from a data connection.
//!
//! The copies borrow nothing of the session, so the session can keep
//! reading its control connection while one runs (that is how `ABOR` and
//! `STAT` reach a running transfer). Each copy counts its bytes in a shared
//! counter the session reads for `STAT` and the transfer log, and gives up
//! when the data connection stalls for the data timeout. `TYPE A`
//! conversion keeps its state across reads, so a CR at the end of one read
//! and its LF at the start of the next still make one line end.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::os::fd::AsRawFd;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::quota::QuotaWriter;

/// The most bytes moved per read: large, so a fast link needs few system
/// calls.
const CHUNK: usize = 256 * 1024;

/// The first read's size: most files an FTP server sees are small, and a
/// buffer of [`CHUNK`] for each of them, freed in a different order than it
/// was taken, leaves the heap holding megabytes after a burst of sessions.
const FIRST_CHUNK: usize = 16 * 1024;

/// A read buffer that starts at [`FIRST_CHUNK`] and grows to [`CHUNK`] only
/// when reads keep filling it.
struct ReadBuffer(Vec<u8>);

impl ReadBuffer {
    fn new() -> ReadBuffer {
        ReadBuffer(vec![0; FIRST_CHUNK])
    }

    /// Notes a read of `read` bytes: a full buffer grows for the next one.
    fn filled(&mut self, read: usize) {
        let len = self.0.len();
        if read == len && len < CHUNK {
            self.0.resize((len * 4).min(CHUNK), 0);
        }
    }
}

/// Why a copy stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the data connection stalled for {0:?}")]
    Stalled(Duration),
    #[error("the data connection broke: {0}")]
    Connection(io::Error),
    #[error("the file could not be read or written: {0}")]
    File(io::Error),
    #[error(transparent)]
    Quota(#[from] crate::quota::QuotaExceeded),
}

/// Line-end conversion for `TYPE A` (RFC 959 3.1.1.1: the wire carries
/// CRLF; files here use LF).
#[derive(Debug, Default)]
pub struct Ascii {
    /// Sending: the last byte of the previous chunk was a CR.
    /// Receiving: a CR ended the previous chunk and is not yet written.
    carried_cr: bool,
}

impl Ascii {
    /// Sending: LF becomes CRLF; a CR already before an LF is kept once.
    pub fn encode(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.clear();
        for &byte in bytes {
            if byte == b'\n' && !self.carried_cr {
                out.push(b'\r');
            }
            out.push(byte);
            self.carried_cr = byte == b'\r';
        }
    }

    /// Receiving: CRLF becomes LF; a lone CR is kept.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.clear();
        for &byte in bytes {
            if self.carried_cr && byte != b'\n' {
                out.push(b'\r');
            }
            self.carried_cr = byte == b'\r';
            if !self.carried_cr {
                out.push(byte);
            }
        }
    }

    /// Receiving: what is still held back at the end of the data (a final
    /// CR with no LF after it).
    pub fn finish(&mut self) -> &'static [u8] {
        if std::mem::take(&mut self.carried_cr) {
            b"\r"
        } else {
            b""
        }
    }
}

/// Runs `io` with the stall limit.
async fn within<T>(
    stall: Duration,
    io: impl Future<Output = io::Result<T>>,
) -> Result<io::Result<T>, TransferError> {
    tokio::time::timeout(stall, io)
        .await
        .map_err(|_| TransferError::Stalled(stall))
}

/// Keeps a transfer at or under a rate (`ftp.max_rate`, vsftpd's
/// `local_max_rate`): after each piece it waits until the bytes so far
/// are due at that rate, counted from the transfer's start.
#[derive(Debug)]
pub struct Pace {
    /// Bytes per second; `None`: no limit.
    rate: Option<u64>,
    started: tokio::time::Instant,
    moved: u64,
}

impl Pace {
    pub fn new(rate: Option<u64>) -> Pace {
        Pace {
            rate: rate.filter(|&rate| rate > 0),
            started: tokio::time::Instant::now(),
            moved: 0,
        }
    }

    /// The most one read or sendfile(2) call should move: a tenth of a
    /// second's worth, so a paced transfer flows instead of bursting.
    fn piece(&self, most: usize) -> usize {
        match self.rate {
            Some(rate) => most.min(usize::try_from(rate / 10).unwrap_or(most).max(1)),
            None => most,
        }
    }

    /// Counts `bytes` as moved and waits until they are due.
    async fn moved(&mut self, bytes: u64) {
        self.moved += bytes;
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.moved as f64 / rate as f64);
            tokio::time::sleep_until(self.started + due).await;
        }
    }
}

/// Sends `file` from where it stands to `data`, then closes `data`.
/// `ascii` converts line ends; `sent` counts the file's bytes sent.
///
/// # Errors
/// The file or the connection failed, or the connection stalled.
pub async fn download(
    file: &mut (impl AsyncRead + Unpin),
    data: &mut (impl AsyncWrite + Unpin),
    mut ascii: Option<Ascii>,
    sent: &AtomicU64,
    stall: Duration,
    pace: &mut Pace,
) -> Result<(), TransferError> {
    let mut buf = ReadBuffer::new();
    let mut converted = Vec::new();
    loop {
        let piece = pace.piece(buf.0.len());
        let read = file
            .read(&mut buf.0[..piece])
            .await
            .map_err(TransferError::File)?;
        if read == 0 {
            break;
        }
        let bytes = match &mut ascii {
            Some(ascii) => {
                ascii.encode(&buf.0[..read], &mut converted);
                &converted[..]
            }
            None => &buf.0[..read],
        };
        within(stall, data.write_all(bytes))
            .await?
            .map_err(TransferError::Connection)?;
        sent.fetch_add(read as u64, Ordering::Relaxed);
        buf.filled(read);
        pace.moved(read as u64).await;
    }
    within(stall, data.shutdown())
        .await?
        .map_err(TransferError::Connection)
}

/// The most one sendfile(2) call is asked to move: the socket takes what
/// fits in its buffer anyway, and reading an uncached file blocks the
/// thread for no more than this.
const SENDFILE_CHUNK: usize = 4 << 20;

/// Sends `file` from `offset` to its end over a plain TCP connection with
/// sendfile(2): the kernel moves the bytes from the page cache to the
/// socket without copying them through this process. Then closes `data`.
///
/// # Errors
/// As [`download`].
pub async fn download_zero_copy(
    file: &impl AsRawFd,
    offset: u64,
    data: &mut TcpStream,
    sent: &AtomicU64,
    stall: Duration,
    pace: &mut Pace,
) -> Result<(), TransferError> {
    let mut position = libc::off_t::try_from(offset)
        .map_err(|_| TransferError::File(io::Error::other("offset out of range")))?;
    let (socket, source) = (data.as_raw_fd(), file.as_raw_fd());
    let piece = pace.piece(SENDFILE_CHUNK);
    loop {
        let moved = data.async_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors stay open for the call, and
            // `position` is a valid off_t the call may update.
            let n = unsafe { libc::sendfile(socket, source, &mut position, piece) };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        });
        match within(stall, moved).await? {
            Ok(0) => break,
            Ok(n) => {
                sent.fetch_add(n as u64, Ordering::Relaxed);
                pace.moved(n as u64).await;
            }
            Err(err) if is_connection_error(&err) => return Err(TransferError::Connection(err)),
            Err(err) => return Err(TransferError::File(err)),
        }
    }
    within(stall, data.shutdown())
        .await?
        .map_err(TransferError::Connection)
}

/// Whether a failed sendfile(2) was the socket's fault, not the file's.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

/// How much of an upload is written without `block_in_place`. Writing into
/// the page cache takes microseconds until the kernel makes a writer that
/// has dirtied many pages wait for the disk (`balance_dirty_pages`), which
/// only a large upload does; `block_in_place` moves the worker's other
/// tasks to another thread first, a thread switch that a small upload
/// (most of them are) would pay on every file.
const WRITTEN_UNANNOUNCED: u64 = 1 << 20;

/// Receives `data` into `file` until the client closes it, charging every
/// byte to `quota` before it is written, then closes `data` in turn (in TLS
/// a client may wait for that). `received` counts the bytes written to the
/// file, which is not synced.
///
/// The file is written in place on this worker thread: a hand-off to the
/// blocking pool for every chunk measured 5–10% slower for 1 GiB uploads,
/// and no write outlives the transfer when it is cancelled by ABOR. Past
/// its first [`WRITTEN_UNANNOUNCED`] bytes, each write is announced to the
/// runtime with `block_in_place` (so this needs Tokio's multi-thread
/// runtime, which `sockit serve` runs).
///
/// # Errors
/// The quota is exceeded (nothing past it is written), the file or the
/// connection failed, or the connection stalled.
pub async fn upload(
    data: &mut (impl AsyncRead + AsyncWrite + Unpin),
    file: &mut std::fs::File,
    mut ascii: Option<Ascii>,
    quota: &QuotaWriter,
    received: &AtomicU64,
    stall: Duration,
    pace: &mut Pace,
) -> Result<(), TransferError> {
    let mut buf = ReadBuffer::new();
    let mut converted = Vec::new();
    let mut writeback = Writeback::at(file).map_err(TransferError::File)?;
    loop {
        let piece = pace.piece(buf.0.len());
        let read = within(stall, data.read(&mut buf.0[..piece]))
            .await?
            .map_err(TransferError::Connection)?;
        let bytes = match (&mut ascii, read) {
            (Some(ascii), 0) => ascii.finish(),
            (None, 0) => b"",
            (Some(ascii), _) => {
                ascii.decode(&buf.0[..read], &mut converted);
                &converted[..]
            }
            (None, _) => &buf.0[..read],
        };
        quota.charge(bytes.len() as u64)?;
        if !bytes.is_empty() {
            let mut write = || {
                std::io::Write::write_all(file, bytes)?;
                writeback.wrote(file, bytes.len() as u64);
                Ok(())
            };
            if received.load(Ordering::Relaxed) < WRITTEN_UNANNOUNCED {
                write()
            } else {
                tokio::task::block_in_place(write)
            }
            .map_err(TransferError::File)?;
            received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        if read == 0 {
            break;
        }
        buf.filled(read);
        pace.moved(read as u64).await;
    }
    // Everything arrived; a client that already left is no failure.
    let _ = within(stall, data.shutdown()).await;
    Ok(())
}

/// Starts the disk write of an upload while it still arrives: when an
/// upload replaces a file, the session syncs it before renaming it into
/// place, and without this every byte would wait in the page cache for that
/// sync, so a large upload would take the network's time plus the disk's
/// (a new file is not synced, but its bytes need not pile up either). Each
/// [`WRITEBACK_STEP`] written is handed to the disk at once
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`, which does not wait
/// for it), and the final sync waits only for the last step or so.
struct Writeback {
    /// Where the bytes not yet handed to the disk start.
    pending_from: u64,
    /// How many bytes were written from there.
    pending: u64,
}

/// How much of an upload is written before it is handed to the disk.
const WRITEBACK_STEP: u64 = 8 << 20;

impl Writeback {
    /// Starts at the file's current position (an upload may append).
    fn at(file: &mut std::fs::File) -> io::Result<Writeback> {
        Ok(Writeback {
            pending_from: io::Seek::stream_position(file)?,
            pending: 0,
        })
    }

    /// Counts `len` bytes just written; hands a full step to the disk. Only
    /// a head start: should the kernel refuse it, the final sync still
    /// writes everything and reports any write error.
    fn wrote(&mut self, file: &std::fs::File, len: u64) {
        self.pending += len;
        if self.pending < WRITEBACK_STEP {
            return;
        }
        // SAFETY: a range of an open file descriptor; no memory is passed.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                self.pending_from as libc::off64_t,
                self.pending as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.pending_from += self.pending;
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_in(chunks: &[&[u8]]) -> Vec<u8> {
        let mut ascii = Ascii::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            ascii.encode(chunk, &mut out);
            all.extend_from_slice(&out);
        }
        all
    }

    fn decode_in(chunks: &[&[u8]]) -> Vec<u8> {
        let mut ascii = Ascii::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            ascii.decode(chunk, &mut out);
            all.extend_from_slice(&out);
        }
        all.extend_from_slice(ascii.finish());
        all
    }

    /// An upload in TYPE I, unpaced, with a 5 s stall limit.
    async fn upload_binary(
        data: &mut std::io::Cursor<Vec<u8>>,
        file: &mut std::fs::File,
        quota: &QuotaWriter,
        received: &AtomicU64,
    ) -> Result<(), TransferError> {
        let stall = Duration::from_secs(5);
        upload(
            data,
            file,
            None,
            quota,
            received,
            stall,
            &mut Pace::new(None),
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_transfer_waits_until_its_bytes_are_due() {
        let mut pace = Pace::new(Some(1000));
        assert_eq!(pace.piece(CHUNK), 100, "a tenth of a second's worth");
        let started = tokio::time::Instant::now();
        pace.moved(500).await;
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        pace.moved(1500).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));

        let mut unlimited = Pace::new(None);
        assert_eq!(unlimited.piece(CHUNK), CHUNK);
        unlimited.moved(1 << 40).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(Pace::new(Some(0)).piece(CHUNK), CHUNK, "0 is no limit");
    }

    #[test]
    fn the_read_buffer_grows_only_while_reads_fill_it() {
        let mut buf = ReadBuffer::new();
        buf.filled(FIRST_CHUNK - 1);
        assert_eq!(buf.0.len(), FIRST_CHUNK);
        while buf.0.len() < CHUNK {
            let before = buf.0.len();
            buf.filled(before);
            assert!(buf.0.len() > before);
        }
        buf.filled(CHUNK);
        assert_eq!(buf.0.len(), CHUNK);
    }

    #[test]
    fn ascii_converts_line_ends_both_ways() {
        assert_eq!(encode_in(&[b"a\nb\r\nc"]), b"a\r\nb\r\nc");
        assert_eq!(decode_in(&[b"a\r\nb\nc\r"]), b"a\nb\nc\r");
        assert_eq!(decode_in(&[b"a\rb"]), b"a\rb");
    }

    #[test]
    fn a_crlf_split_between_reads_is_one_line_end() {
        assert_eq!(
            decode_in(&[b"one\r", b"\ntwo\r", b"", b"\n"]),
            b"one\ntwo\n"
        );
        assert_eq!(decode_in(&[b"x\r", b"y"]), b"x\ry");
        assert_eq!(encode_in(&[b"one\r", b"\ntwo", b"\n"]), b"one\r\ntwo\r\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_upload_stops_at_the_quota_with_nothing_past_it_written() {
        let home = tempfile::tempdir().unwrap();
        let quotas = crate::quota::Quotas::default();
        let quota = quotas
            .writer(
                "alice",
                home.path(),
                crate::quota::Limits {
                    bytes: Some(10),
                    entries: None,
                },
            )
            .await
            .unwrap();
        let received = AtomicU64::new(0);
        let path = home.path().join("upload");
        let mut file = std::fs::File::create(&path).unwrap();
        let mut data = std::io::Cursor::new(vec![7u8; 64]);
        let result = upload_binary(&mut data, &mut file, &quota, &received).await;
        assert!(matches!(result, Err(TransferError::Quota(_))), "{result:?}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(received.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_upload_arrives_whole() {
        let home = tempfile::tempdir().unwrap();
        let quotas = crate::quota::Quotas::default();
        let quota = quotas
            .writer("bob", home.path(), Default::default())
            .await
            .unwrap();
        let received = AtomicU64::new(0);
        let path = home.path().join("upload");
        let mut file = std::fs::File::create(&path).unwrap();
        let content: Vec<u8> = (0..3 * CHUNK + 1234).map(|i| (i % 251) as u8).collect();
        let mut data = std::io::Cursor::new(content.clone());
        upload_binary(&mut data, &mut file, &quota, &received)
            .await
            .unwrap();
        assert!(std::fs::read(&path).unwrap() == content);
        assert_eq!(received.load(Ordering::Relaxed), content.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_upload_resumed_past_several_writeback_steps_arrives_whole() {
        let home = tempfile::tempdir().unwrap();
        let quotas = crate::quota::Quotas::default();
        let quota = quotas
            .writer("carol", home.path(), Default::default())
            .await
            .unwrap();
        let received = AtomicU64::new(0);
        let path = home.path().join("upload");
        let kept = vec![1u8; 4321];
        std::fs::write(&path, &kept).unwrap();
        // As the session resumes: the partial file, positioned at its end.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        io::Seek::seek(&mut file, io::SeekFrom::End(0)).unwrap();
        let rest: Vec<u8> = (0..2 * WRITEBACK_STEP as usize + 77)
            .map(|i| (i % 253) as u8)
            .collect();
        let mut data = std::io::Cursor::new(rest.clone());
        upload_binary(&mut data, &mut file, &quota, &received)
            .await
            .unwrap();
        file.sync_all().unwrap();
        let landed = std::fs::read(&path).unwrap();
        assert!(landed[..kept.len()] == kept[..] && landed[kept.len()..] == rest[..]);
    }
}
