//! One FTP control connection: its state, and what each command does.
//!
//! The session owns its control stream and its state: the login (an enum,
//! not flags), the current directory inside the user's jail, the transfer
//! type, and a passive data listener once PASV or EPSV made one. Every path
//! goes through [`crate::vfs`]; every password check through
//! [`UserStore::verify`]; uploads charge the shared [`crate::quota`] ledger
//! and land by rename, so an interrupted STOR never damages the old file.
//!
//! Commands that go through [`crate::storage`] (RETR, SIZE, MDTM, MFMT,
//! SITE CHMOD and the opening of an upload's partial file) run each whole
//! storage operation in one hop to the blocking pool, as that layer's
//! blocking policy says. The commands still on the path-based jail make
//! their microsecond calls (stat, rename, unlink, mkdir) in place on the
//! runtime's worker; what can take long stays on the pool: checking a
//! password, listing a directory, emptying one for RMD.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tracing::info;

use super::command::{self, Command, MAX_LINE, TransferType};
use super::listing::{self, Format, ListingText};
use super::stream::{SessionTls, Stream};
use super::transfer::{self, Ascii, TransferError};
use crate::listener::{Outcome, Traffic};
use crate::memory;
use crate::quota::{self, QuotaExceeded, QuotaWriter, Quotas, Usage};
use crate::shutdown::Shutdown;
use crate::stats;
use crate::storage::{self, Home, StorageError};
use crate::throttle::{Throttle, Verdict};
use crate::users::{Permissions, User, UserStore};
use crate::vfs::{self, DirEntry, Jail, UPLOAD_PREFIX, VfsError, VirtualPath};

/// What every session of one FTP service shares.
pub struct FtpContext {
    pub users: Arc<UserStore>,
    pub quotas: Arc<Quotas>,
    pub throttle: Throttle,
    /// A control connection silent this long is closed (421).
    pub idle_timeout: Duration,
    /// How long a client may take to open a data connection, and how long a
    /// data connection may stall.
    pub data_timeout: Duration,
    /// Control connections one address may hold at once.
    pub max_per_ip: usize,
    /// Control connections per address now.
    pub per_ip: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    /// Ports passive data connections listen on; `None`: any.
    pub passive_ports: Option<std::ops::RangeInclusive<u16>>,
    /// The address PASV announces; `None`: the control connection's own.
    pub passive_address: Option<std::net::Ipv4Addr>,
    /// The partial files that an upload is writing now.
    pub uploading: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// The TLS server setup for AUTH TLS, implicit FTPS and PROT P; `None`:
    /// no TLS.
    pub tls: Option<Arc<ServerConfig>>,
    /// Logins and data connections must be encrypted.
    pub require_tls: bool,
    /// TLS data connections must resume the control connection's session.
    pub require_tls_resumption: bool,
    /// The most bytes per second one upload or download moves; `None`: no
    /// limit.
    pub max_rate: Option<u64>,
    /// Where `anonymous` logs in, read-only; `None`: no anonymous login.
    pub anonymous_root: Option<PathBuf>,
}

impl std::fmt::Debug for FtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpContext")
            .field("idle_timeout", &self.idle_timeout)
            .field("data_timeout", &self.data_timeout)
            .field("max_per_ip", &self.max_per_ip)
            .field("tls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .finish_non_exhaustive()
    }
}

/// Marks a partial file as being written; unmarks it when dropped, so two
/// uploads never write one partial file at once.
struct UploadClaim<'a> {
    context: &'a FtpContext,
    partial: PathBuf,
}

impl<'a> UploadClaim<'a> {
    fn take(context: &'a FtpContext, partial: &std::path::Path) -> Option<UploadClaim<'a>> {
        let mut uploading = context.uploading.lock().expect("uploads lock");
        uploading.insert(partial.to_owned()).then(|| UploadClaim {
            context,
            partial: partial.to_owned(),
        })
    }
}

impl Drop for UploadClaim<'_> {
    fn drop(&mut self) {
        self.context
            .uploading
            .lock()
            .expect("uploads lock")
            .remove(&self.partial);
    }
}

/// Holds one of an address's session slots; frees it when dropped. When
/// the last session of all ends, the heap's free pages go back to the
/// system a little later ([`memory::release_free_heap_later`]).
struct IpSlot<'a> {
    context: &'a FtpContext,
    ip: IpAddr,
}

impl<'a> IpSlot<'a> {
    /// Takes a slot for `ip`, or `None` when the address has them all.
    fn take(context: &'a FtpContext, ip: IpAddr) -> Option<IpSlot<'a>> {
        let mut per_ip = context.per_ip.lock().expect("per-ip lock");
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= context.max_per_ip {
            return None;
        }
        *count += 1;
        Some(IpSlot { context, ip })
    }
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let mut per_ip = self.context.per_ip.lock().expect("per-ip lock");
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        let last_session = per_ip.is_empty();
        drop(per_ip);
        if last_session {
            memory::release_free_heap_later();
        }
    }
}

/// Where the login stands.
enum Login {
    AwaitingUser,
    AwaitingPass { user: String },
    LoggedIn { user: User, jail: Jail, home: Home },
}

struct Session {
    /// The control connection (switched to TLS by AUTH TLS).
    control: BufReader<Stream>,
    /// The session's TLS server side, once TLS is on.
    tls: Option<SessionTls>,
    /// PBSZ was given (RFC 4217 wants it before PROT).
    protection_buffer_set: bool,
    /// PROT P: data connections are encrypted too.
    protect_data: bool,
    peer: SocketAddr,
    local_ip: IpAddr,
    login: Login,
    cwd: VirtualPath,
    transfer_type: TransferType,
    passive: Option<TcpListener>,
    /// The client's address for the next data connection, set by PORT/EPRT.
    active: Option<SocketAddr>,
    /// The client said `EPSV ALL`: PASV, PORT and EPRT are refused.
    epsv_all: bool,
    /// The offset of the next RETR or STOR, set by REST.
    restart: u64,
    /// The path named by RNFR, waiting for RNTO.
    rename_from: Option<(VirtualPath, PathBuf)>,
    context: Arc<FtpContext>,
    traffic: Traffic,
    /// The control line read so far (kept here, so a read interrupted by a
    /// finished transfer loses nothing).
    line: Vec<u8>,
    /// The line being read is over [`MAX_LINE`] and is being skipped.
    line_too_long: bool,
    /// The last line ended with a CR whose LF has not arrived yet.
    skip_lf: bool,
    /// Lines that arrived during a transfer, to run after it.
    pending: std::collections::VecDeque<Line>,
}

/// How a control connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// In the clear; the client may switch to TLS with `AUTH TLS`.
    Plain,
    /// Implicit FTPS: a TLS handshake before the greeting, and data
    /// connections encrypted unless the client asks for `PROT C`.
    ImplicitTls,
}

/// Runs one control connection until QUIT, a drop, idleness or shutdown.
pub async fn session(
    stream: TcpStream,
    start: Start,
    context: Arc<FtpContext>,
    shutdown: Shutdown,
) -> Outcome<io::Error> {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let local_ip = stream
        .local_addr()
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let Some(slot) = IpSlot::take(&context, peer.ip()) else {
        let mut stream = stream;
        let refusal = b"421 Too many connections from your address\r\n";
        let result = stream.write_all(refusal).await;
        return Outcome {
            traffic: Traffic {
                bytes_in: 0,
                bytes_out: refusal.len() as u64,
            },
            result,
        };
    };
    let context_for_session = context.clone();
    // Urgent data stays in line: a client that sends ABOR as urgent data
    // (Python's ftplib does) would otherwise lose a byte of it.
    let _ = socket2::SockRef::from(&stream).set_out_of_band_inline(true);
    // Replies are whole lines, each written at once: sent at once too, or
    // Nagle holds a 226 until the client acknowledges the 150 before it.
    let _ = stream.set_nodelay(true);
    let (control, tls) = match (start, &context.tls) {
        (Start::Plain, _) => (Stream::Plain(stream), None),
        (Start::ImplicitTls, Some(base)) => {
            let tls = SessionTls::new(base);
            match Stream::Plain(stream)
                .into_tls(&tls.control, context.data_timeout)
                .await
            {
                Ok(secured) => (secured, Some(tls)),
                Err(err) => {
                    return Outcome {
                        traffic: Traffic::default(),
                        result: Err(err),
                    };
                }
            }
        }
        (Start::ImplicitTls, None) => {
            return Outcome {
                traffic: Traffic::default(),
                result: Err(io::Error::other("implicit TLS without a certificate")),
            };
        }
    };

    let mut session = Session {
        control: BufReader::new(control),
        tls,
        protection_buffer_set: false,
        protect_data: start == Start::ImplicitTls,
        peer,
        local_ip,
        login: Login::AwaitingUser,
        cwd: VirtualPath::root(),
        transfer_type: TransferType::Ascii,
        passive: None,
        active: None,
        epsv_all: false,
        restart: 0,
        rename_from: None,
        context: context_for_session,
        traffic: Traffic::default(),
        line: Vec::new(),
        line_too_long: false,
        skip_lf: false,
        pending: Default::default(),
    };
    let result = session.run(&shutdown).await;
    let traffic = session.traffic;
    // Free the address's slot before the socket closes, so a client that
    // saw the close can connect again at once.
    drop(slot);
    drop(session);
    Outcome { traffic, result }
}

/// The most control lines kept while a transfer runs; beyond them the
/// control connection is not read until it ends.
const MAX_PENDING: usize = 32;

/// A line read from the control connection.
enum Line {
    Text(String),
    TooLong,
    Closed,
}

impl Session {
    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.send(&format!("{code} {text}\r\n")).await
    }

    /// Writes `text` (whole reply lines) to the control connection.
    async fn send(&mut self, text: &str) -> io::Result<()> {
        self.traffic.bytes_out += text.len() as u64;
        self.control.write_all(text.as_bytes()).await?;
        self.control.flush().await
    }

    async fn run(&mut self, shutdown: &Shutdown) -> io::Result<()> {
        self.reply(220, "sockit FTP server ready").await?;
        loop {
            let line = match self.pending.pop_front() {
                Some(line) => line,
                None => {
                    let line = tokio::select! {
                        _ = shutdown.stopping() => {
                            return self.reply(421, "Server shutting down, closing the control connection").await;
                        }
                        line = tokio::time::timeout(self.context.idle_timeout, self.read_line()) => line,
                    };
                    match line {
                        Err(_idle) => {
                            return self
                                .reply(421, "Idle timeout, closing the control connection")
                                .await;
                        }
                        Ok(line) => line?,
                    }
                }
            };
            let text = match line {
                Line::Closed => return Ok(()),
                Line::TooLong => {
                    self.reply(500, "Command line too long").await?;
                    continue;
                }
                Line::Text(text) => text,
            };
            let command = command::parse(&text);
            if matches!(command, Command::Pass(_)) {
                info!(peer = %self.peer, "PASS ****");
            } else {
                info!(peer = %self.peer, command = %text.chars().take(200).collect::<String>(), "command");
            }
            if command == Command::Quit {
                return self.reply(221, "Goodbye").await;
            }
            self.execute(command).await?;
        }
    }

    /// Reads one line, at most [`MAX_LINE`] bytes; a longer one is consumed
    /// to its end and reported, so the session stays in step. Telnet
    /// commands in it are dropped. Cancel-safe: a partly read line is kept.
    ///
    /// A line may end at a CR whose LF has not arrived. Clients that send
    /// ABOR as urgent data (Python's ftplib) mark its final LF urgent, and
    /// a read stops in front of the urgent byte without the socket becoming
    /// readable again until more data comes: waiting for that LF would
    /// leave the ABOR unanswered. The LF is skipped when it comes.
    async fn read_line(&mut self) -> io::Result<Line> {
        loop {
            let available = self.control.fill_buf().await?;
            if available.is_empty() {
                return Ok(Line::Closed);
            }
            if std::mem::take(&mut self.skip_lf) && available[0] == b'\n' {
                self.control.consume(1);
                self.traffic.bytes_in += 1;
                continue;
            }
            // A line ends at LF, or at a CR that is the last byte there is.
            // A CR followed by anything else (RFC 2640 sends a CR in a path
            // as CR NUL) stays in the line, for the path check to refuse.
            let end = available.iter().enumerate().position(|(at, byte)| {
                *byte == b'\n' || (*byte == b'\r' && at + 1 == available.len())
            });
            let (taken, done) = match end {
                Some(at) => {
                    self.skip_lf = available[at] == b'\r';
                    (at + 1, true)
                }
                None => (available.len(), false),
            };
            if !self.line_too_long {
                self.line.extend_from_slice(&available[..taken]);
                if self.line.len() > MAX_LINE + 2 {
                    self.line_too_long = true;
                    self.line.clear();
                }
            }
            self.control.consume(taken);
            self.traffic.bytes_in += taken as u64;
            if done {
                let line = std::mem::take(&mut self.line);
                return Ok(if std::mem::take(&mut self.line_too_long) {
                    Line::TooLong
                } else {
                    Line::Text(
                        String::from_utf8_lossy(&command::without_telnet(&line))
                            .trim_end_matches(['\r', '\n'])
                            .to_owned(),
                    )
                });
            }
        }
    }

    /// Runs a transfer while still reading the control connection: `ABOR`
    /// stops it (the caller replies 426 and then 226), `STAT` reports the
    /// bytes `moved` so far, and other commands wait until it ends. Dropping
    /// `work` closes the data connection it holds.
    async fn while_transferring(
        &mut self,
        work: impl Future<Output = Result<(), TransferError>>,
        moved: &AtomicU64,
    ) -> io::Result<Result<(), Failure>> {
        let mut work = std::pin::pin!(work);
        loop {
            let line = tokio::select! {
                done = &mut work => return Ok(done.map_err(Failure::Error)),
                line = self.read_line(), if self.pending.len() < MAX_PENDING => line?,
            };
            match line {
                Line::Closed => return Ok(Err(Failure::ControlClosed)),
                Line::Text(text) => match command::parse(&text) {
                    Command::Abor => return Ok(Err(Failure::Aborted)),
                    Command::Stat => {
                        let so_far = moved.load(Ordering::Relaxed);
                        self.reply(213, &format!("Transfer in progress: {so_far} bytes so far"))
                            .await?;
                    }
                    _ => self.pending.push_back(Line::Text(text)),
                },
                Line::TooLong => self.pending.push_back(Line::TooLong),
            }
        }
    }

    async fn execute(&mut self, command: Command) -> io::Result<()> {
        match command {
            Command::User(_) | Command::Pass(_)
                if self.context.require_tls && !self.control.get_ref().is_tls() =>
            {
                self.reply(530, "This server requires AUTH TLS before login")
                    .await
            }
            Command::User(name) if self.anonymous(&name).is_some() => {
                self.login = Login::AwaitingPass { user: name };
                self.reply(
                    331,
                    "Anonymous login ok; send your e-mail address as the password",
                )
                .await
            }
            Command::User(name) => {
                self.login = Login::AwaitingPass { user: name };
                self.reply(331, "Password required").await
            }
            Command::Auth(mechanism) => self.start_tls(&mechanism).await,
            Command::Pbsz(_) if !self.control.get_ref().is_tls() => {
                self.reply(503, "Use AUTH TLS first").await
            }
            Command::Pbsz(_) => {
                self.protection_buffer_set = true;
                self.reply(200, "PBSZ=0").await
            }
            Command::Prot(level) => match level.trim().to_ascii_uppercase().as_str() {
                "C" if self.context.require_tls => {
                    self.reply(534, "This server requires encrypted data connections")
                        .await
                }
                "P" | "C" if !self.protection_buffer_set => self.reply(503, "Use PBSZ first").await,
                "P" => {
                    self.protect_data = true;
                    self.reply(200, "Data connections will be encrypted").await
                }
                "C" => {
                    self.protect_data = false;
                    self.reply(200, "Data connections will be in the clear")
                        .await
                }
                _ => {
                    self.reply(504, "Only PROT C and PROT P are supported")
                        .await
                }
            },
            Command::Pass(password) => self.pass(password.expose()).await,
            Command::Syst => self.reply(215, "UNIX Type: L8").await,
            Command::Feat => {
                let tls = if self.context.tls.is_some() {
                    " AUTH TLS\r\n PBSZ\r\n PROT\r\n"
                } else {
                    ""
                };
                let features = format!(
                    "211-Features:\r\n{tls} EPSV\r\n EPRT\r\n PASV\r\n SIZE\r\n MDTM\r\n MFMT\r\n MLST type*;size*;modify*;UNIX.mode*;\r\n REST STREAM\r\n UTF8\r\n TVFS\r\n211 End\r\n"
                );
                self.send(&features).await
            }
            Command::Opts(option) if option.eq_ignore_ascii_case("UTF8 ON") => {
                self.reply(200, "UTF8 set to on").await
            }
            Command::Opts(_) => self.reply(501, "Option not understood").await,
            Command::Noop => self.reply(200, "OK").await,
            Command::Help => {
                let help = "214-Commands recognised:\r\n USER PASS ACCT QUIT NOOP SYST FEAT OPTS HELP STAT TYPE MODE STRU\r\n PWD CWD CDUP PASV EPSV PORT EPRT LIST NLST MLSD MLST RETR STOR APPE\r\n STOU REST ABOR SIZE MDTM MFMT MKD RMD DELE RNFR RNTO ALLO AUTH PBSZ\r\n PROT SITE\r\n214 Help OK\r\n";
                self.send(help).await
            }
            Command::Superfluous => self.reply(202, "Not needed on this server").await,
            Command::Abor => {
                // A transfer in progress is stopped in `while_transferring`;
                // here there is none.
                self.passive = None;
                self.active = None;
                self.reply(225, "No transfer to abort").await
            }
            Command::Mode(mode) if mode.eq_ignore_ascii_case("S") => {
                self.reply(200, "Mode set to S").await
            }
            Command::Mode(_) => self.reply(504, "Only stream mode (S) is supported").await,
            Command::Stru(structure) if structure.eq_ignore_ascii_case("F") => {
                self.reply(200, "Structure set to F").await
            }
            Command::Stru(_) => {
                self.reply(504, "Only file structure (F) is supported")
                    .await
            }
            Command::Quit => self.reply(221, "Goodbye").await,
            Command::BadArgument(name) => {
                self.reply(501, &format!("Syntax error in the arguments of {name}"))
                    .await
            }
            Command::UnsupportedArgument(name) => {
                self.reply(504, &format!("{name}: that parameter is not supported"))
                    .await
            }
            Command::NotImplemented(name) => {
                self.reply(502, &format!("{name} not implemented")).await
            }
            Command::Unknown(name) => {
                self.reply(500, &format!("{name}: command not understood"))
                    .await
            }
            other => {
                if !matches!(self.login, Login::LoggedIn { .. }) {
                    return self.reply(530, "Please log in with USER and PASS").await;
                }
                self.logged_in(other).await
            }
        }
    }

    /// The read-only user that `anonymous` and `ftp` log in as, when the
    /// server has an anonymous root.
    fn anonymous(&self, name: &str) -> Option<User> {
        let root = self.context.anonymous_root.as_ref()?;
        ["anonymous", "ftp"]
            .iter()
            .any(|anonymous| name.eq_ignore_ascii_case(anonymous))
            .then(|| User {
                name: "anonymous".to_owned(),
                password: String::new(),
                home: root.clone(),
                quota: None,
                max_files: None,
                permissions: Permissions::READ_ONLY,
                admin: false,
            })
    }

    async fn pass(&mut self, password: &str) -> io::Result<()> {
        let Login::AwaitingPass { user } = std::mem::replace(&mut self.login, Login::AwaitingUser)
        else {
            return self.reply(503, "Login with USER first").await;
        };
        if let Some(anonymous) = self.anonymous(&user) {
            // Any password: by custom an e-mail address, never checked.
            let Ok(jail) = Jail::new(&anonymous.home) else {
                return self.reply(550, "The anonymous root is not available").await;
            };
            return self
                .logged_in_as(anonymous, jail, "Anonymous login ok; read-only access")
                .await;
        }
        let ip = self.peer.ip();
        if let Verdict::LockedOut { remaining } = self.context.throttle.check(ip) {
            return self
                .reply(
                    421,
                    &format!(
                        "Too many failed logins; try again in {} s",
                        remaining.as_secs().max(1)
                    ),
                )
                .await;
        }
        let users = self.context.users.clone();
        let name = user.clone();
        let password = password.to_owned();
        let checked = tokio::task::spawn_blocking(move || users.verify(&name, &password)).await;
        let user = match checked {
            Ok(Ok(user)) => user,
            _ => {
                let delay = self.context.throttle.failure(ip);
                crate::throttle::log_failure("ftp", ip, &user);
                stats::counter("sockit_auth_failures_total", &[("service", "ftp")])
                    .fetch_add(1, Ordering::Relaxed);
                stats::record(
                    "ftp",
                    "login-failed",
                    format!(
                        "{:?} from {}",
                        user.chars().take(64).collect::<String>(),
                        self.peer
                    ),
                );
                tokio::time::sleep(delay).await;
                return self.reply(530, "Login incorrect").await;
            }
        };
        self.context.throttle.success(ip);
        let jail = match std::fs::create_dir_all(&user.home).and_then(|()| Jail::new(&user.home)) {
            Ok(jail) => jail,
            Err(_) => {
                return self
                    .reply(550, "Your home directory is not available")
                    .await;
            }
        };
        self.logged_in_as(user, jail, "Login successful").await
    }

    /// Starts the session of `user` at the root of `jail`, with 230 `text`.
    async fn logged_in_as(&mut self, user: User, jail: Jail, text: &str) -> io::Result<()> {
        stats::record("ftp", "login", format!("{} from {}", user.name, self.peer));
        let Ok(home) = Home::open(jail.root()) else {
            return self
                .reply(550, "Your home directory is not available")
                .await;
        };
        self.cwd = VirtualPath::root();
        self.login = Login::LoggedIn { user, jail, home };
        self.reply(230, text).await
    }

    fn user(&self) -> (&User, &Jail) {
        match &self.login {
            Login::LoggedIn { user, jail, .. } => (user, jail),
            _ => unreachable!("checked by execute"),
        }
    }

    /// The logged-in user's home, held open.
    fn home(&self) -> Home {
        match &self.login {
            Login::LoggedIn { home, .. } => home.clone(),
            _ => unreachable!("checked by execute"),
        }
    }

    /// Runs `operation` on the logged-in user's home, in one hop to the
    /// blocking pool (the storage layer's blocking policy).
    async fn in_home<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Home) -> storage::Result<T> + Send + 'static,
    ) -> storage::Result<T> {
        let home = self.home();
        tokio::task::spawn_blocking(move || operation(&home))
            .await
            .map_err(|err| StorageError::Io(io::Error::other(err)))?
    }

    /// The client path `client` from the current directory.
    fn locate(&self, client: &str) -> storage::Result<VirtualPath> {
        Ok(self.cwd.join(client)?)
    }

    /// Replies to a refused storage operation (see [`storage_reply`]).
    async fn refuse(&mut self, err: &StorageError) -> io::Result<()> {
        let (code, text) = storage_reply(err);
        self.reply(code, &text).await
    }

    /// Resolves a client path to (virtual, real) or the reply explaining why not.
    fn resolve(&self, client: &str) -> Result<(VirtualPath, PathBuf), (u16, &'static str)> {
        let (_, jail) = self.user();
        let virtual_path = self.cwd.join(client).map_err(refusal)?;
        if virtual_path
            .file_name()
            .is_some_and(|n| n.starts_with(UPLOAD_PREFIX))
        {
            return Err((550, "No such file or directory"));
        }
        let real = jail.resolve(&virtual_path).map_err(refusal)?;
        Ok((virtual_path, real))
    }

    async fn logged_in(&mut self, command: Command) -> io::Result<()> {
        let permissions = self.user().0.permissions;
        match command {
            Command::Type(kind) => {
                self.transfer_type = kind;
                let name = if kind == TransferType::Ascii {
                    "A"
                } else {
                    "I"
                };
                self.reply(200, &format!("Type set to {name}")).await
            }
            Command::Pwd => {
                let quoted = self.cwd.as_str().replace('"', "\"\"");
                self.reply(257, &format!("\"{quoted}\" is the current directory"))
                    .await
            }
            Command::Cwd(path) => self.change_directory(&path).await,
            Command::Cdup => self.change_directory("..").await,
            Command::Pasv | Command::Port(_) if self.epsv_all => {
                self.reply(503, "After EPSV ALL only EPSV sets up data connections")
                    .await
            }
            Command::Pasv => self.passive(false).await,
            Command::Port(target) => {
                // RFC 2577: data goes only to the client itself (no FTP
                // bounce), and never to a privileged port.
                if target.ip() != self.peer.ip() || target.port() < 1024 {
                    return self
                        .reply(
                            500,
                            "PORT/EPRT refused: only to your own address, port 1024 or above",
                        )
                        .await;
                }
                self.passive = None;
                self.active = Some(target);
                self.reply(200, "PORT command successful").await
            }
            Command::Epsv(Some(protocol)) if protocol != self.network_protocol() => {
                let supported = self.network_protocol();
                self.reply(
                    522,
                    &format!("Network protocol not supported, use ({supported})"),
                )
                .await
            }
            Command::Epsv(_) => self.passive(true).await,
            Command::EpsvAll => {
                self.epsv_all = true;
                self.reply(200, "EPSV ALL ok").await
            }
            // While an interrupted upload of the file is kept, SIZE says how
            // much of it arrived: that is what clients resuming an upload ask.
            Command::Size(path) => {
                let found = match self.locate(&path) {
                    Ok(target) => {
                        self.in_home(move |home| match home.partial_len(&target)? {
                            Some(kept) => Ok(kept),
                            None => home.open_read(&target).map(|(_, entry)| entry.size),
                        })
                        .await
                    }
                    Err(err) => Err(err),
                };
                match found {
                    Ok(size) => self.reply(213, &size.to_string()).await,
                    Err(err) => self.refuse(&err).await,
                }
            }
            Command::Mdtm(path) => {
                let found = match self.locate(&path) {
                    Ok(target) => {
                        self.in_home(move |home| home.open_read(&target).map(|(_, entry)| entry))
                            .await
                    }
                    Err(err) => Err(err),
                };
                match found.map(|entry| entry.modified) {
                    Ok(Some(modified)) => self.reply(213, &listing::time_val(modified)).await,
                    Ok(None) => self.reply(550, "No modification time").await,
                    Err(err) => self.refuse(&err).await,
                }
            }
            Command::Mfmt { modified, path } if permissions.write => {
                let seconds = modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| {
                        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
                    });
                let done = match self.locate(&path) {
                    Ok(target) => {
                        self.in_home(move |home| {
                            // Only a plain file's time is set (never a pipe's).
                            home.open_read(&target)?;
                            home.set_modified(&target, seconds)
                        })
                        .await
                    }
                    Err(err) => Err(err),
                };
                match done {
                    Ok(()) => {
                        let stamp = listing::time_val(modified);
                        self.reply(213, &format!("Modify={stamp}; {path}")).await
                    }
                    Err(err) => self.refuse(&err).await,
                }
            }
            Command::Chmod { mode, path } if permissions.write => {
                let done = match self.locate(&path) {
                    Ok(target) => self.in_home(move |home| home.set_mode(&target, mode)).await,
                    Err(err) => Err(err),
                };
                match done {
                    Ok(()) => self.reply(200, "SITE CHMOD command ok").await,
                    Err(err) => self.refuse(&err).await,
                }
            }
            Command::SiteHelp => self.reply(214, "CHMOD HELP").await,
            Command::UnknownSite => self.reply(500, "Unknown SITE command").await,
            Command::Rest(offset) => {
                self.restart = offset;
                self.reply(350, &format!("Restarting at {offset}; send RETR"))
                    .await
            }
            Command::Rnfr(path) if permissions.rename => match self.resolve(&path) {
                Ok((virtual_path, real))
                    if !virtual_path.is_root() && std::fs::symlink_metadata(&real).is_ok() =>
                {
                    self.rename_from = Some((virtual_path, real));
                    self.reply(350, "Ready for RNTO").await
                }
                Ok(_) => self.reply(550, "No such file or directory").await,
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::Rnto(path) if permissions.rename => {
                let Some((_, from)) = self.rename_from.take() else {
                    return self.reply(503, "Send RNFR first").await;
                };
                match self.resolve(&path) {
                    Ok((to, _)) if to.is_root() => {
                        self.reply(553, "Cannot rename onto the home").await
                    }
                    Ok((_, real)) => match vfs::rename_no_replace(&from, &real) {
                        Ok(()) => self.reply(250, "Renamed").await,
                        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                            self.reply(553, "The target exists; delete it first").await
                        }
                        _ => self.reply(553, "Cannot rename").await,
                    },
                    Err((code, text)) => self.reply(code, text).await,
                }
            }
            Command::Rnfr(_) | Command::Rnto(_) => self.reply(550, "Permission denied").await,
            Command::List(_) | Command::Nlst(_) | Command::Mlsd(_) | Command::StatPath(_)
                if !permissions.read =>
            {
                self.reply(550, "Permission denied").await
            }
            Command::StatPath(path) => {
                let entries = match self.listed(Some(&path), Format::Long).await {
                    Ok((entries, _)) => entries,
                    Err((code, text)) => return self.reply(code, text).await,
                };
                let now = SystemTime::now();
                let mut text = format!("213-Status of {path}:\r\n");
                for entry in &entries {
                    // A leading space keeps a line from passing for a reply code.
                    text.push(' ');
                    text.push_str(&listing::long_line(entry, now));
                    text.push_str("\r\n");
                }
                text.push_str("213 End of status\r\n");
                self.send(&text).await
            }
            Command::Stat => {
                let (user, jail) = self.user();
                let used = self
                    .context
                    .quotas
                    .used(&user.name, jail.root(), user.limits())
                    .await
                    .ok()
                    .flatten();
                let limits: String = quota::describe(user.limits(), used)
                    .iter()
                    .map(|phrase| format!(" Limit: {phrase}\r\n"))
                    .collect();
                let status = format!(
                    "211-sockit FTP status:\r\n Logged in as {}\r\n Directory {}\r\n TYPE {}, MODE S, STRU F\r\n{limits}211 End of status\r\n",
                    user.name,
                    self.cwd,
                    if self.transfer_type == TransferType::Ascii {
                        "A"
                    } else {
                        "I"
                    }
                );
                self.send(&status).await
            }
            Command::Mlst(path) => {
                let found = match self.locate(path.as_deref().unwrap_or(".")) {
                    Ok(target) => {
                        self.in_home(move |home| {
                            home.stat(&target).map(|entry| storage::Entry {
                                name: target.to_string(),
                                ..entry
                            })
                        })
                        .await
                    }
                    Err(err) => Err(err),
                };
                match found {
                    Ok(entry) => {
                        let entry = DirEntry::from(entry);
                        let text =
                            format!("250-Listing\r\n {}\r\n250 End\r\n", listing::facts(&entry));
                        self.send(&text).await
                    }
                    Err(err) => self.refuse(&err).await,
                }
            }
            Command::List(_)
            | Command::Nlst(_)
            | Command::Mlsd(_)
            | Command::Retr(_)
            | Command::Stor(_)
            | Command::Appe(_)
            | Command::Stou(_)
                if self.context.require_tls && !self.protect_data =>
            {
                self.passive = None;
                self.active = None;
                self.reply(521, "Data connections must be encrypted: send PROT P")
                    .await
            }
            Command::List(path) => self.list(path.as_deref(), Format::Long).await,
            Command::Nlst(path) => self.list(path.as_deref(), Format::Names).await,
            Command::Mlsd(path) => self.list(path.as_deref(), Format::Facts).await,
            Command::Retr(path) if permissions.read => self.retrieve(&path).await,
            Command::Stor(path) if permissions.write => self.store(&path, StoreMode::Replace).await,
            Command::Appe(path) if permissions.write => self.store(&path, StoreMode::Append).await,
            Command::Stou(name) if permissions.write => {
                let name = name.as_deref().unwrap_or("upload");
                self.store(name, StoreMode::Unique).await
            }
            Command::Mkd(path) if permissions.mkdir => self.make_dir(&path).await,
            Command::Rmd(path) if permissions.delete => match self.resolve(&path) {
                Ok((virtual_path, _)) if virtual_path.is_root() => {
                    self.reply(550, "Permission denied").await
                }
                Ok((_, real)) => {
                    let removing = tokio::task::spawn_blocking(move || vfs::remove_dir(&real));
                    match removing.await {
                        Ok(Ok((uploads, bytes))) => {
                            let (user, jail) = self.user();
                            let freed = Usage {
                                bytes,
                                entries: uploads as u64 + 1,
                            };
                            self.context.quotas.freed(&user.name, jail.root(), freed);
                            self.reply(250, "Directory removed").await
                        }
                        _ => {
                            self.reply(550, "Cannot remove the directory (is it empty?)")
                                .await
                        }
                    }
                }
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::Dele(path) if permissions.delete => self.delete(&path).await,
            Command::Retr(_)
            | Command::Stor(_)
            | Command::Appe(_)
            | Command::Stou(_)
            | Command::Mkd(_)
            | Command::Rmd(_)
            | Command::Dele(_)
            | Command::Mfmt { .. }
            | Command::Chmod { .. } => self.reply(550, "Permission denied").await,
            _ => self.reply(502, "Command not implemented").await,
        }
    }

    /// A write counted against the logged-in user's limits (see `quota`).
    async fn quota_writer(&self) -> io::Result<QuotaWriter> {
        let (user, jail) = self.user();
        self.context
            .quotas
            .writer(&user.name, jail.root(), user.limits())
            .await
    }

    /// MKD, counted against the user's file limit.
    async fn make_dir(&mut self, path: &str) -> io::Result<()> {
        let (virtual_path, real) = match self.resolve(path) {
            Ok(found) => found,
            Err((code, text)) => return self.reply(code, text).await,
        };
        let Ok(quota) = self.quota_writer().await else {
            return self.reply(451, "Cannot count your files").await;
        };
        if let Err(exceeded) = quota.add_entry(false) {
            return self
                .reply(550, &format!("Over your limit: {exceeded}"))
                .await;
        }
        match std::fs::create_dir(&real) {
            Ok(()) => {
                let quoted = virtual_path.as_str().replace('"', "\"\"");
                self.reply(257, &format!("\"{quoted}\" created")).await
            }
            Err(_) => {
                quota.remove_entry();
                self.reply(550, "Cannot create the directory").await
            }
        }
    }

    /// DELE: the file, and the kept partial upload of it if there is one.
    async fn delete(&mut self, path: &str) -> io::Result<()> {
        let (virtual_path, real) = match self.resolve(path) {
            Ok(found) => found,
            Err((code, text)) => return self.reply(code, text).await,
        };
        let mut freed = Usage::default();
        if let Ok(meta) = std::fs::symlink_metadata(&real) {
            if meta.is_dir() {
                return self.reply(550, "That is a directory; use RMD").await;
            }
            if std::fs::remove_file(&real).is_err() {
                return self.reply(550, "Cannot delete the file").await;
            }
            freed.bytes += if meta.is_file() { meta.len() } else { 0 };
            freed.entries += 1;
        }
        if let Some(partial) = vfs::partial_of(&virtual_path, &real)
            && let Ok(meta) = std::fs::metadata(&partial)
            && std::fs::remove_file(&partial).is_ok()
        {
            freed.bytes += meta.len();
            freed.entries += 1;
        }
        if freed.entries == 0 {
            return self.reply(550, "No such file").await;
        }
        let (user, jail) = self.user();
        self.context.quotas.freed(&user.name, jail.root(), freed);
        self.reply(250, "File deleted").await
    }

    async fn change_directory(&mut self, path: &str) -> io::Result<()> {
        match self.resolve(path) {
            Ok((virtual_path, real)) => match std::fs::metadata(&real) {
                Ok(meta) if meta.is_dir() => {
                    self.cwd = virtual_path;
                    self.reply(250, "Directory changed").await
                }
                _ => self.reply(550, "No such directory").await,
            },
            Err((code, text)) => self.reply(code, text).await,
        }
    }

    /// PASV / EPSV: listen for one data connection on the control
    /// connection's own address, on a port of the configured range.
    /// Whether PASV, EPSV, PORT or EPRT has prepared a data connection. A
    /// transfer without one is refused before its 150, so that a client
    /// reading one reply per command stays in step.
    fn data_connection_set_up(&self) -> bool {
        self.passive.is_some() || self.active.is_some()
    }

    /// The RFC 2428 number of the control connection's network protocol: 1
    /// for IPv4, 2 for IPv6.
    fn network_protocol(&self) -> u8 {
        match self.local_ip {
            IpAddr::V4(_) => 1,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => 1,
            IpAddr::V6(_) => 2,
        }
    }

    /// PASV and EPSV: a listener for the data connection, and its port.
    async fn passive(&mut self, extended: bool) -> io::Result<()> {
        self.passive = None;
        let Some(listener) = self.bind_passive().await else {
            return self.reply(425, "Cannot open a data port").await;
        };
        let port = listener.local_addr()?.port();
        self.passive = Some(listener);
        self.active = None;
        // See `PASSIVE_REPLY_HOLD`; without a timer the reply goes at once.
        let _ = pause(PASSIVE_REPLY_HOLD).await;
        if extended {
            return self
                .reply(229, &format!("Entering Extended Passive Mode (|||{port}|)"))
                .await;
        }
        let announced = match (self.context.passive_address, self.local_ip) {
            (Some(nat), _) => nat,
            (None, IpAddr::V4(ip)) => ip,
            (None, IpAddr::V6(_)) => return self.reply(522, "Use EPSV over IPv6").await,
        };
        let [a, b, c, d] = announced.octets();
        let text = format!(
            "Entering Passive Mode ({a},{b},{c},{d},{},{})",
            port >> 8,
            port & 0xff
        );
        self.reply(227, &text).await
    }

    /// A listener on the control connection's address, on a free port of
    /// `ftp.passive_ports` (the first free one from a random start), or
    /// without that range on a random port of the kernel's ephemeral range.
    ///
    /// Not on port 0, the kernel's own choice: it searches the range for a
    /// port, and that search slows down as closed data connections pile up
    /// on their ports for TIME_WAIT's minute: after some thousands of
    /// transfers a bind took 2.7 ms of the kernel's time, and rounds of 8
    /// lftp clients mirroring small files fell from about 2 000 files/s to
    /// 400-700, one round after another. A port named outright is one
    /// lookup; vsftpd picks its ports the same way.
    async fn bind_passive(&self) -> Option<TcpListener> {
        let (range, tries) = match &self.context.passive_ports {
            Some(range) => (range.clone(), u32::MAX),
            None => (ephemeral_ports(), RANDOM_PORT_TRIES),
        };
        let (first, count) = (*range.start(), u32::from(range.end() - range.start()) + 1);
        let mut random = [0u8; 4];
        getrandom::fill(&mut random).expect("the OS random source works");
        let start = u32::from_le_bytes(random) % count;
        for step in 0..count.min(tries) {
            let port = first + ((start + step) % count) as u16;
            if let Ok(listener) = TcpListener::bind(SocketAddr::new(self.local_ip, port)).await {
                return Some(listener);
            }
        }
        if self.context.passive_ports.is_some() {
            return None;
        }
        TcpListener::bind(SocketAddr::new(self.local_ip, 0))
            .await
            .ok()
    }

    /// AUTH TLS: 234, then the TLS handshake on the control connection.
    async fn start_tls(&mut self, mechanism: &str) -> io::Result<()> {
        let Some(base) = self.context.tls.clone() else {
            return self.reply(502, "TLS is not set up on this server").await;
        };
        if !["TLS", "TLS-C", "SSL"].contains(&mechanism.trim().to_ascii_uppercase().as_str()) {
            return self.reply(504, "Only AUTH TLS is supported").await;
        }
        if self.control.get_ref().is_tls() {
            return self.reply(503, "TLS is already on").await;
        }
        if !self.control.buffer().is_empty() || !self.pending.is_empty() {
            // Whatever the client sent after AUTH, before the 234, would be
            // read as if it had come through TLS.
            return self
                .reply(503, "Send nothing after AUTH until it is answered")
                .await;
        }
        self.reply(234, "Switching to TLS").await?;
        let tls = SessionTls::new(&base);
        let plain = std::mem::replace(self.control.get_mut(), Stream::Switching);
        let secured = plain
            .into_tls(&tls.control, self.context.data_timeout)
            .await?;
        *self.control.get_mut() = secured;
        self.tls = Some(tls);
        // A new security context: the login starts over (RFC 4217 section 4).
        self.login = Login::AwaitingUser;
        Ok(())
    }

    /// Opens the data connection: to the PORT/EPRT address, or by accepting
    /// on the PASV/EPSV listener, only from the control connection's own
    /// address (no one else may take the data). With PROT P it is then
    /// switched to TLS.
    async fn data_connection(&mut self) -> Result<Stream, (u16, &'static str)> {
        let stream = if let Some(target) = self.active.take() {
            let connecting =
                tokio::time::timeout(self.context.data_timeout, TcpStream::connect(target));
            match connecting.await {
                Ok(Ok(stream)) => stream,
                _ => return Err((425, "Cannot open the data connection")),
            }
        } else {
            let listener = self.passive.take().ok_or((425, NO_DATA_CONNECTION))?;
            let deadline = tokio::time::Instant::now() + self.context.data_timeout;
            loop {
                let accepted = tokio::time::timeout_at(deadline, listener.accept()).await;
                match accepted {
                    Err(_) => return Err((425, "No data connection came")),
                    Ok(Err(_)) => return Err((425, "Cannot open the data connection")),
                    Ok(Ok((stream, from))) if from.ip() == self.peer.ip() => break stream,
                    Ok(Ok((stream, _other))) => drop(stream),
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = Stream::Plain(stream);
        match &self.tls {
            Some(tls) if self.protect_data => {
                let mut secured = stream
                    .into_tls(&tls.data, self.context.data_timeout)
                    .await
                    .map_err(|_| (425, "The TLS handshake on the data connection failed"))?;
                if self.context.require_tls_resumption && !secured.resumed_tls() {
                    // Closed cleanly (close_notify), so the client reads an
                    // empty transfer and then the reply.
                    let _ =
                        tokio::time::timeout(self.context.data_timeout, secured.shutdown()).await;
                    return Err((
                        522,
                        "The data connection must resume the control connection's TLS session",
                    ));
                }
                Ok(secured)
            }
            _ => Ok(stream),
        }
    }

    /// Whether the client has closed the control connection (or it broke),
    /// without waiting for anything more to arrive. A line that did arrive
    /// is kept for the command loop.
    async fn control_closed(&mut self) -> bool {
        match tokio::time::timeout(Duration::ZERO, self.read_line()).await {
            Err(_nothing_yet) => false,
            Ok(Ok(Line::Closed) | Err(_)) => true,
            Ok(Ok(line)) => {
                self.pending.push_back(line);
                false
            }
        }
    }

    /// The replies for a transfer that did not complete; `kept` ends the
    /// text (what an upload left to resume).
    async fn transfer_failed(&mut self, failure: Failure, kept: &str) -> io::Result<()> {
        match failure {
            Failure::Error(TransferError::Quota(_)) => {
                self.reply(552, "Disk quota exceeded; the upload was discarded")
                    .await
            }
            Failure::Error(TransferError::File(_)) => {
                self.reply(
                    451,
                    &format!("Local error reading or writing the file{kept}"),
                )
                .await
            }
            Failure::Error(err) => {
                self.reply(426, &format!("Transfer aborted: {err}{kept}"))
                    .await
            }
            Failure::Aborted => {
                self.reply(426, &format!("Transfer aborted{kept}")).await?;
                self.reply(226, "ABOR successful").await
            }
            // Nobody to tell: the session ends at the next read.
            Failure::ControlClosed => Ok(()),
        }
    }

    async fn list(&mut self, path: Option<&str>, format: Format) -> io::Result<()> {
        let (entries, prefix) = match self.listed(path, format).await {
            Ok(listed) => listed,
            Err((code, text)) => return self.reply(code, text).await,
        };
        if !self.data_connection_set_up() {
            return self.reply(425, NO_DATA_CONNECTION).await;
        }
        self.reply(150, "Here comes the listing").await?;
        let mut data = match self.data_connection().await {
            Ok(data) => data,
            Err((code, reason)) => return self.reply(code, reason).await,
        };
        let sent = AtomicU64::new(0);
        let mut listing = ListingText::new(entries, format, prefix);
        // Listings are not paced, as in vsftpd.
        let mut unpaced = transfer::Pace::new(None);
        let sending = transfer::download(
            &mut listing,
            &mut data,
            None,
            &sent,
            self.context.data_timeout,
            &mut unpaced,
        );
        match self.while_transferring(sending, &sent).await? {
            Ok(()) => self.reply(226, "Listing sent").await,
            Err(failure) => self.transfer_failed(failure, "").await,
        }
    }

    /// What LIST, NLST or MLSD of `asked` lists: a directory's entries. LIST
    /// and NLST also take a file (listed alone), or a last component with
    /// `*` or `?` that no name matches literally (the matching entries of
    /// its directory, as vsftpd does, so that `mget *.txt` and
    /// `nlst("*.csv")` work). NLST names entries as asked, with the path
    /// given before them (`NLST sub` gives `sub/a.txt`, as vsftpd does):
    /// the returned prefix, for which `asked` of `None` is empty.
    async fn listed(
        &self,
        asked: Option<&str>,
        format: Format,
    ) -> Result<(Vec<DirEntry>, String), (u16, &'static str)> {
        let Some(asked) = asked else {
            let here = self.cwd.clone();
            return match self.in_home(move |home| home.list(&here)).await {
                Ok(entries) => Ok((
                    entries.into_iter().map(DirEntry::from).collect(),
                    String::new(),
                )),
                Err(_) => Err((550, "No such directory")),
            };
        };
        let prefix = asked.rfind('/').map_or("", |slash| &asked[..=slash]);
        let literal = self.locate(asked);
        if let Ok(target) = &literal {
            enum Found {
                Directory(Vec<storage::Entry>),
                File(storage::Entry),
            }
            let target = target.clone();
            // A directory (links inside the home followed) is listed; anything
            // else is described from its own lstat, a link as a link.
            let found = self
                .in_home(move |home| match home.list(&target) {
                    Ok(entries) => Ok(Found::Directory(entries)),
                    Err(StorageError::NotADirectory) => home.stat(&target).map(Found::File),
                    Err(err) => Err(err),
                })
                .await;
            match found {
                Ok(Found::Directory(entries)) => {
                    let inside = if asked.ends_with('/') {
                        asked.to_owned()
                    } else {
                        format!("{asked}/")
                    };
                    return Ok((entries.into_iter().map(DirEntry::from).collect(), inside));
                }
                Ok(Found::File(_)) if format == Format::Facts => {
                    return Err((501, "MLSD lists directories only"));
                }
                Ok(Found::File(file)) => return Ok((vec![file.into()], prefix.to_owned())),
                Err(StorageError::InvalidName) => return Err((553, "File name not allowed")),
                Err(StorageError::OutsideHome) => return Err((550, "Permission denied")),
                Err(_) => {}
            }
        }
        let pattern = &asked[prefix.len()..];
        if format == Format::Facts || !pattern.contains(['*', '?']) {
            return Err(match literal {
                Err(StorageError::InvalidName) => (553, "File name not allowed"),
                Err(StorageError::OutsideHome) => (550, "Permission denied"),
                _ => (550, "No such file or directory"),
            });
        }
        let Ok(dir) = self.locate(if prefix.is_empty() { "." } else { prefix }) else {
            return Err((550, "No such directory"));
        };
        let Some(wildcard) = listing::Wildcard::new(pattern) else {
            return Ok((Vec::new(), prefix.to_owned()));
        };
        match self.in_home(move |home| home.list(&dir)).await {
            Ok(entries) => Ok((
                entries
                    .into_iter()
                    .filter(|entry| wildcard.matches(&entry.name))
                    .map(DirEntry::from)
                    .collect(),
                prefix.to_owned(),
            )),
            Err(_) => Err((550, "No such directory")),
        }
    }

    async fn retrieve(&mut self, path: &str) -> io::Result<()> {
        let offset = std::mem::take(&mut self.restart);
        let opened = match self.locate(path) {
            Ok(target) => {
                let wanted = target.clone();
                self.in_home(move |home| home.open_read(&wanted))
                    .await
                    .map(|(file, _)| (target, file))
            }
            Err(err) => Err(err),
        };
        let (virtual_path, mut file) = match opened {
            Ok((target, file)) => (target, tokio::fs::File::from_std(file)),
            Err(err) => return self.refuse(&err).await,
        };
        let ascii = self.transfer_type == TransferType::Ascii;
        if offset > 0 {
            if ascii {
                return self.reply(550, "REST works in TYPE I only").await;
            }
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                return self.reply(550, "Cannot seek to the restart offset").await;
            }
        }
        if !self.data_connection_set_up() {
            return self.reply(425, NO_DATA_CONNECTION).await;
        }
        self.reply(150, "Opening the data connection").await?;
        let mut data = match self.data_connection().await {
            Ok(data) => data,
            Err((code, reason)) => return self.reply(code, reason).await,
        };
        let started = Instant::now();
        let sent = AtomicU64::new(0);
        let stall = self.context.data_timeout;
        let mut pace = transfer::Pace::new(self.context.max_rate);
        let sending = async {
            match &mut data {
                // Bytes as they are, in the clear: the kernel copies them.
                Stream::Plain(tcp) if !ascii => {
                    transfer::download_zero_copy(&file, offset, tcp, &sent, stall, &mut pace).await
                }
                data => {
                    let ascii = ascii.then(Ascii::default);
                    transfer::download(&mut file, data, ascii, &sent, stall, &mut pace).await
                }
            }
        };
        let outcome = self.while_transferring(sending, &sent).await?;
        drop(data);
        let bytes = sent.load(Ordering::Relaxed);
        self.log_transfer("RETR", &virtual_path, bytes, started, outcome.is_ok());
        match outcome {
            Ok(()) => self.reply(226, "Transfer complete").await,
            Err(failure) => self.transfer_failed(failure, "").await,
        }
    }

    /// STOR, APPE and STOU. The bytes go to the target's partial file (see
    /// [`vfs::upload_partial`]), which replaces the target by a rename once
    /// the upload completed. An upload that breaks off keeps its partial
    /// file: `REST n` + `STOR`, or `APPE`, continue it later, and `SIZE`
    /// of the target says how much of it arrived.
    async fn store(&mut self, path: &str, mode: StoreMode) -> io::Result<()> {
        let offset = std::mem::take(&mut self.restart);
        let (virtual_path, real) = match self.resolve(path) {
            Ok(found) => found,
            Err((code, text)) => return self.reply(code, text).await,
        };
        let (virtual_path, real) = match mode {
            StoreMode::Unique => match unique_name(&virtual_path, &real) {
                Some(found) => found,
                None => return self.reply(553, "No unique name is free").await,
            },
            _ => (virtual_path, real),
        };
        let (Some(partial), Some(name)) = (
            vfs::partial_of(&virtual_path, &real),
            virtual_path.file_name(),
        ) else {
            return self.reply(553, "Cannot store there").await;
        };
        let target = std::fs::metadata(&real).ok();
        if target.as_ref().is_some_and(std::fs::Metadata::is_dir) {
            return self.reply(553, "That name is a directory").await;
        }
        let ascii = self.transfer_type == TransferType::Ascii;
        if ascii && (offset > 0 || mode == StoreMode::Append) {
            return self
                .reply(550, "Resuming and appending work in TYPE I only")
                .await;
        }
        if !self.data_connection_set_up() {
            return self.reply(425, NO_DATA_CONNECTION).await;
        }
        let context = self.context.clone();
        let Some(_claim) = UploadClaim::take(&context, &partial) else {
            return self
                .reply(450, "Another upload to this file is running")
                .await;
        };
        let quota = match self.quota_writer().await {
            Ok(quota) => quota,
            Err(_) => return self.reply(451, "Cannot count your disk usage").await,
        };
        let start = match mode {
            StoreMode::Replace | StoreMode::Unique => offset,
            StoreMode::Append => u64::MAX,
        };
        let existing = target.filter(std::fs::Metadata::is_file).map(|m| m.len());
        let mut file =
            match open_partial(self.home(), virtual_path.clone(), existing, start, &quota).await {
                Ok(file) => file,
                Err(PartialError::Beyond(available)) => {
                    return self
                        .reply(
                            554,
                            &format!("Invalid REST offset: only {available} bytes are there"),
                        )
                        .await;
                }
                Err(PartialError::Over(exceeded)) => {
                    return self
                        .reply(552, &format!("Over your limit: {exceeded}"))
                        .await;
                }
                Err(PartialError::Storage(err)) => {
                    tracing::warn!(path = %partial.display(), %err, "cannot prepare an upload");
                    return self.refuse(&err).await;
                }
            };
        let resumed_at = std::io::Seek::stream_position(&mut file).unwrap_or(0);
        let opening = match mode {
            StoreMode::Unique => format!("FILE: {name}"),
            _ if resumed_at > 0 => format!("Ok to send data, continuing at byte {resumed_at}"),
            _ => "Ok to send data".to_owned(),
        };
        self.reply(150, &opening).await?;
        let mut data = match self.data_connection().await {
            Ok(data) => data,
            Err((code, reason)) => {
                drop(file);
                if remove_if_empty(&partial) {
                    quota.remove_entry();
                }
                return self.reply(code, reason).await;
            }
        };
        let started = Instant::now();
        let received = AtomicU64::new(0);
        let mut pace = transfer::Pace::new(self.context.max_rate);
        let receiving = transfer::upload(
            &mut data,
            &mut file,
            ascii.then(Ascii::default),
            &quota,
            &received,
            self.context.data_timeout,
            &mut pace,
        );
        let mut outcome = self.while_transferring(receiving, &received).await?;
        let bytes = received.load(Ordering::Relaxed);
        // The end of the data is the end of the file in stream mode, but a
        // client that was killed closes its data connection the same way.
        // One that waits for this upload's reply keeps its control
        // connection open, so a closed one means the upload broke off.
        if outcome.is_ok() && self.control_closed().await {
            outcome = Err(Failure::ControlClosed);
        }
        if outcome.is_ok() {
            let replaced = std::fs::symlink_metadata(&real).ok();
            let landed = async {
                // New content is synced before it takes an old file's place,
                // so that not even a crash of the machine can leave the old
                // file lost and the new one incomplete. A new file replaces
                // nothing and is left to the kernel's write-back, as vsftpd
                // leaves every upload: syncing each one made many small
                // uploads wait for the disk one at a time.
                if replaced.is_some() {
                    // Blocks this worker; the runtime moves its other tasks.
                    tokio::task::block_in_place(|| file.sync_all())?;
                }
                match mode {
                    // The name was free when chosen; it must still be.
                    StoreMode::Unique => vfs::rename_no_replace(&partial, &real),
                    _ => std::fs::rename(&partial, &real),
                }
            };
            match landed.await {
                Ok(()) => {
                    if let Some(old) = replaced {
                        // A link's own size is not counted (see `quota::usage`).
                        if old.is_file() {
                            quota.refund(old.len());
                        }
                        quota.remove_entry();
                    }
                }
                Err(err) => outcome = Err(Failure::Error(TransferError::File(err))),
            }
        }
        drop(file);
        self.log_transfer("STOR", &virtual_path, bytes, started, outcome.is_ok());
        match outcome {
            Ok(()) if mode == StoreMode::Unique => {
                self.reply(226, &format!("Transfer complete; stored as {name}"))
                    .await
            }
            Ok(()) => self.reply(226, "Transfer complete").await,
            Err(Failure::Error(TransferError::Quota(exceeded))) => {
                // Let the client finish sending before answering: closing a
                // socket with unread data resets it, and the client would
                // report a reset, not the 552.
                discard_rest(&mut data).await;
                drop(data);
                let size = std::fs::metadata(&partial).map_or(0, |m| m.len());
                if std::fs::remove_file(&partial).is_ok() {
                    quota.refund(size);
                    quota.remove_entry();
                }
                self.transfer_failed(Failure::Error(TransferError::Quota(exceeded)), "")
                    .await
            }
            Err(failure) => {
                drop(data);
                let kept = std::fs::metadata(&partial).map_or(0, |m| m.len());
                let note = format!("; {kept} bytes kept: REST {kept} and STOR, or APPE, resume");
                self.transfer_failed(failure, &note).await
            }
        }
    }

    fn log_transfer(
        &self,
        kind: &str,
        path: &VirtualPath,
        bytes: u64,
        started: Instant,
        completed: bool,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        let rate = bytes as f64 / seconds.max(1e-6) / 1e6;
        let user = &self.user().0.name;
        let status = if completed { "completed" } else { "aborted" };
        info!(user = %user, kind, path = %path, bytes, seconds, rate_mb_s = rate, status, "transfer");
        let direction = if kind == "RETR" { "download" } else { "upload" };
        stats::counter(
            "sockit_ftp_transfers_total",
            &[("direction", direction), ("status", status)],
        )
        .fetch_add(1, Ordering::Relaxed);
        stats::counter(
            "sockit_ftp_transfer_bytes_total",
            &[("direction", direction)],
        )
        .fetch_add(bytes, Ordering::Relaxed);
        stats::record(
            "ftp",
            "transfer",
            format!("{user} {kind} {path}: {bytes} bytes, {status}"),
        );
    }
}

/// The most a refused upload may still send, and for how long, before its
/// data connection is simply closed.
const DISCARD_LIMIT: u64 = 64 << 20;
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Reads and drops what is left on a data connection, within the limits.
async fn discard_rest(data: &mut Stream) {
    let draining = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut dropped = 0u64;
        while dropped < DISCARD_LIMIT {
            match data.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(read) => dropped += read as u64,
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, draining).await;
}

const NO_DATA_CONNECTION: &str = "Use PASV, EPSV, PORT or EPRT first";

/// The one table from storage errors to FTP replies. A full quota is 552
/// whatever the command (RFC 959: "Requested file action aborted. Exceeded
/// storage allocation").
fn storage_reply(err: &StorageError) -> (u16, String) {
    match err {
        StorageError::NotFound => (550, "No such file or directory".to_owned()),
        StorageError::Exists => (550, "That name is taken".to_owned()),
        StorageError::NotADirectory => (550, "Not a directory".to_owned()),
        StorageError::IsADirectory => (550, "Not a plain file: a directory".to_owned()),
        StorageError::NotEmpty => (550, "The directory is not empty".to_owned()),
        StorageError::NotPermitted(why) => (550, format!("Permission denied: {why}")),
        StorageError::OutsideHome => (550, "Permission denied".to_owned()),
        StorageError::ByteQuota { .. } | StorageError::FileQuota { .. } => {
            (552, format!("Exceeded storage allocation: {err}"))
        }
        StorageError::InvalidName => (553, "File name not allowed".to_owned()),
        StorageError::Unsupported | StorageError::Io(_) => {
            (451, "Local error in processing".to_owned())
        }
    }
}

/// The reply for a path that cannot be used.
fn refusal(err: VfsError) -> (u16, &'static str) {
    match err {
        VfsError::InvalidCharacter => (553, "File name not allowed"),
        VfsError::OutsideJail | VfsError::EscapingLink => (550, "Permission denied"),
        VfsError::Io(_) => (550, "No such file or directory"),
    }
}

/// Why a transfer did not complete.
enum Failure {
    /// The copy failed (see [`TransferError`]).
    Error(TransferError),
    /// The client sent ABOR.
    Aborted,
    /// The control connection closed during the transfer.
    ControlClosed,
}

/// What an upload does with the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreMode {
    /// STOR: replace it (from the REST offset, if one was given).
    Replace,
    /// APPE: add to its end.
    Append,
    /// STOU: store under a name that is not taken.
    Unique,
}

/// Removes the partial file of an upload whose data connection never came,
/// if it holds nothing (it was made for this upload, and there is nothing
/// in it to resume). True when it was removed.
fn remove_if_empty(partial: &Path) -> bool {
    std::fs::metadata(partial).is_ok_and(|m| m.len() == 0) && std::fs::remove_file(partial).is_ok()
}

/// The target's name if free, else the first free `NAME.N`: neither a file
/// nor a kept upload has it.
fn unique_name(virtual_path: &VirtualPath, real: &Path) -> Option<(VirtualPath, PathBuf)> {
    let name = virtual_path.file_name()?;
    let parent = virtual_path.parent()?;
    for n in 0..1000 {
        let candidate = match n {
            0 => name.to_owned(),
            n => format!("{name}.{n}"),
        };
        let real_candidate = real.with_file_name(&candidate);
        let partial = vfs::upload_partial(real.parent()?, &candidate);
        if std::fs::symlink_metadata(&real_candidate).is_err()
            && std::fs::symlink_metadata(&partial).is_err()
        {
            return Some((parent.join(&candidate).ok()?, real_candidate));
        }
    }
    None
}

/// How many random ports a passive listener tries before it leaves the
/// choice to the kernel, when no `ftp.passive_ports` range is set.
const RANDOM_PORT_TRIES: u32 = 16;

/// The kernel's range of ephemeral ports (`ip_local_port_range`; Linux's
/// default when it cannot be read), where passive listeners take their
/// ports when no range is configured.
fn ephemeral_ports() -> std::ops::RangeInclusive<u16> {
    static RANGE: std::sync::LazyLock<std::ops::RangeInclusive<u16>> =
        std::sync::LazyLock::new(|| {
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .ok()
                .and_then(|text| {
                    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
                    match (bounds.next(), bounds.next()) {
                        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some(low..=high),
                        _ => None,
                    }
                })
                .unwrap_or(32768..=60999)
        });
    RANGE.clone()
}

/// How long the reply to PASV or EPSV is held back. curl 7.88 (Debian 12's)
/// looks for the reply once, straight after sending the command; if it is
/// already there, curl takes a path that connects the data socket only when
/// its 200 ms happy-eyeballs timer fires, so every transfer took 200 ms
/// longer (21 of 30 small downloads, sockit answering within about 15 µs).
/// A reply that comes a little later is handled at once. vsftpd, which
/// passes the command to a second process, answers after about 100 µs and
/// never met it; holding sockit's reply for 50 µs was already enough (0 of
/// 30). The hold costs a data connection 0.1 ms.
const PASSIVE_REPLY_HOLD: Duration = Duration::from_micros(100);

/// Waits `length`, which may be well under a millisecond: Tokio's timers
/// count whole milliseconds, so this arms a one-shot timer descriptor
/// (`timerfd`, nanoseconds) and waits for it as for a socket. It took the
/// place of a sleep on the blocking pool, which kept a thread per pending
/// reply: 8 busy lftp clients had the server peak at 21-36 threads, now
/// at 19-26.
async fn pause(length: Duration) -> io::Result<()> {
    // SAFETY: timerfd_create takes no pointers; it returns a new descriptor
    // or -1.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let timer = unsafe { OwnedFd::from_raw_fd(fd) };
    let when = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: length.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            // An all-zero time would disarm the timer: wait at least 1 ns.
            tv_nsec: length.subsec_nanos().max(1).into(),
        },
    };
    // SAFETY: `timer` is open and `when` outlives the call; the old setting
    // is not asked for.
    if unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &when, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the `OwnedFd` keeps its descriptor open, and the same, for as
    // long as the `AsyncFd` owns it.
    let expiry = unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) }
        .map_err(|failed| failed.into_parts().1)?;
    let _ready = expiry.readable().await?;
    Ok(())
}

/// Why a partial file could not be prepared.
#[derive(Debug)]
enum PartialError {
    /// The REST offset lies past the bytes that are there.
    Beyond(u64),
    /// The partial file would pass the file limit, or copying the target's
    /// bytes into it the quota.
    Over(QuotaExceeded),
    Storage(StorageError),
}

/// Opens the partial file of an upload, positioned where the client's bytes
/// go. `existing` is the length of the target if it is a plain file.
/// `start` is the REST offset (0: an empty file), or `u64::MAX` for APPE
/// (the end). A kept partial file is continued, cut to `start`; without
/// one, the partial file begins as a copy of the target's first `start`
/// bytes. Bytes copied are charged to the quota; bytes cut are refunded; a
/// new partial file counts as an entry.
async fn open_partial(
    home: Home,
    target: VirtualPath,
    existing: Option<u64>,
    start: u64,
    quota: &QuotaWriter,
) -> Result<std::fs::File, PartialError> {
    let kept = home.partial_len(&target).map_err(PartialError::Storage)?;
    let (copy, keep) = match (kept, existing) {
        (Some(len), _) if start == u64::MAX || start <= len => (false, start.min(len)),
        (Some(len), _) => return Err(PartialError::Beyond(len)),
        (None, _) if start == 0 => (false, 0),
        (None, Some(len)) if start == u64::MAX || start <= len => (true, start.min(len)),
        (None, None) if start == u64::MAX => (false, 0),
        (None, existing) => return Err(PartialError::Beyond(existing.unwrap_or(0))),
    };
    // A partial file that will replace the target may take the file limit
    // one over (see `QuotaWriter::add_entry`).
    let new_entry = kept.is_none();
    if new_entry {
        quota
            .add_entry(existing.is_some())
            .map_err(PartialError::Over)?;
    }
    if copy {
        if let Err(exceeded) = quota.charge(keep) {
            quota.remove_entry();
            return Err(PartialError::Over(exceeded));
        }
    } else if let Some(len) = kept {
        quota.refund(len - keep);
    }
    let prepare = move || -> storage::Result<std::fs::File> {
        use std::io::{Read, Seek};
        let mut partial = home.open_partial(&target)?;
        let file = &mut partial.file;
        let prepared = (|| -> storage::Result<()> {
            if copy {
                file.set_len(0)?;
                let (source, _) = home.open_read(&target)?;
                std::io::copy(&mut source.take(keep), file)?;
            }
            file.set_len(keep)?;
            file.seek(std::io::SeekFrom::Start(keep))?;
            Ok(())
        })();
        match prepared {
            Ok(()) => Ok(partial.file),
            Err(err) => {
                let _ = partial.discard();
                Err(err)
            }
        }
    };
    // Copying the target's first bytes, or cutting a kept partial file
    // short (freeing its blocks), can take long: that goes to the blocking
    // pool. A new partial file, or a kept one continued, opens in place.
    let cut = kept.is_some_and(|len| keep < len);
    let opened = if copy || cut {
        tokio::task::spawn_blocking(prepare)
            .await
            .map_err(|err| StorageError::Io(io::Error::other(err)))
            .and_then(|opened| opened)
    } else {
        prepare()
    };
    match opened {
        Ok(file) => Ok(file),
        Err(err) => {
            if copy {
                quota.refund(keep);
            }
            if new_entry {
                quota.remove_entry();
            }
            Err(PartialError::Storage(err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_lasts_at_least_its_length() {
        for length in [
            Duration::ZERO,
            Duration::from_micros(100),
            Duration::from_millis(3),
        ] {
            let started = Instant::now();
            pause(length).await.unwrap();
            assert!(
                started.elapsed() >= length,
                "{length:?} took {:?}",
                started.elapsed()
            );
        }
    }
}
