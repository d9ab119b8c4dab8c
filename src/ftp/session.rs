//! One FTP control connection: its state, and what each command does.
//!
//! The session owns its control stream and its state: the login (an enum,
//! not flags), the current directory inside the user's jail, the transfer
//! type, and a passive data listener once PASV or EPSV made one. Every path
//! goes through [`crate::vfs`]; every password check through
//! [`UserStore::verify`]; uploads charge the shared [`crate::quota`] ledger
//! and land by rename, so an interrupted STOR never damages the old file.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tracing::info;

use super::command::{self, Command, MAX_LINE, TransferType};
use super::listing;
use crate::listener::{Outcome, Traffic};
use crate::quota::Quotas;
use crate::shutdown::Shutdown;
use crate::stats;
use crate::throttle::{Throttle, Verdict};
use crate::users::{User, UserStore};
use crate::vfs::{self, Jail, UPLOAD_PREFIX, VfsError, VirtualPath};

/// What every session of one FTP service shares.
#[derive(Debug)]
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
}

/// Holds one of an address's session slots; frees it when dropped.
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
    }
}

/// Where the login stands.
enum Login {
    AwaitingUser,
    AwaitingPass { user: String },
    LoggedIn { user: User, jail: Jail },
}

struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    peer: SocketAddr,
    local_ip: IpAddr,
    login: Login,
    cwd: VirtualPath,
    transfer_type: TransferType,
    passive: Option<TcpListener>,
    /// The client's address for the next data connection, set by PORT/EPRT.
    active: Option<SocketAddr>,
    /// The offset of the next RETR, set by REST.
    restart: u64,
    /// The path named by RNFR, waiting for RNTO.
    rename_from: Option<(VirtualPath, PathBuf)>,
    context: Arc<FtpContext>,
    traffic: Traffic,
}

/// Runs one control connection until QUIT, a drop, idleness or shutdown.
pub async fn session(
    stream: TcpStream,
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
    let (reader, writer) = stream.into_split();
    let mut session = Session {
        reader: BufReader::new(reader),
        writer,
        peer,
        local_ip,
        login: Login::AwaitingUser,
        cwd: VirtualPath::root(),
        transfer_type: TransferType::Ascii,
        passive: None,
        active: None,
        restart: 0,
        rename_from: None,
        context: context_for_session,
        traffic: Traffic::default(),
    };
    let result = session.run(&shutdown).await;
    let traffic = session.traffic;
    // Free the address's slot before the socket closes, so a client that
    // saw the close can connect again at once.
    drop(slot);
    drop(session);
    Outcome { traffic, result }
}

/// A line read from the control connection.
enum Line {
    Text(String),
    TooLong,
    Closed,
}

impl Session {
    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        let line = format!("{code} {text}\r\n");
        self.traffic.bytes_out += line.len() as u64;
        self.writer.write_all(line.as_bytes()).await
    }

    async fn run(&mut self, shutdown: &Shutdown) -> io::Result<()> {
        self.reply(220, "sockit FTP server ready").await?;
        loop {
            let line = tokio::select! {
                _ = shutdown.stopping() => {
                    return self.reply(421, "Server shutting down, closing the control connection").await;
                }
                line = tokio::time::timeout(self.context.idle_timeout, self.read_line()) => line,
            };
            let line = match line {
                Err(_idle) => {
                    return self
                        .reply(421, "Idle timeout, closing the control connection")
                        .await;
                }
                Ok(line) => line?,
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
    /// to its end and reported, so the session stays in step.
    async fn read_line(&mut self) -> io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(Line::Closed);
            }
            let (taken, done) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if !too_long {
                line.extend_from_slice(&available[..taken]);
                if line.len() > MAX_LINE + 2 {
                    too_long = true;
                    line.clear();
                }
            }
            self.reader.consume(taken);
            self.traffic.bytes_in += taken as u64;
            if done {
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Text(
                        String::from_utf8_lossy(&line)
                            .trim_end_matches(['\r', '\n'])
                            .to_owned(),
                    )
                });
            }
        }
    }

    async fn execute(&mut self, command: Command) -> io::Result<()> {
        match command {
            Command::User(name) => {
                self.login = Login::AwaitingPass { user: name };
                self.reply(331, "Password required").await
            }
            Command::Pass(password) => self.pass(password.expose()).await,
            Command::Syst => self.reply(215, "UNIX Type: L8").await,
            Command::Feat => {
                let features = "211-Features:\r\n EPSV\r\n PASV\r\n SIZE\r\n MDTM\r\n MLST type*;size*;modify*;\r\n REST STREAM\r\n UTF8\r\n TVFS\r\n211 End\r\n";
                self.traffic.bytes_out += features.len() as u64;
                self.writer.write_all(features.as_bytes()).await
            }
            Command::Opts(option) if option.eq_ignore_ascii_case("UTF8 ON") => {
                self.reply(200, "UTF8 set to on").await
            }
            Command::Opts(_) => self.reply(501, "Option not understood").await,
            Command::Noop => self.reply(200, "OK").await,
            Command::Help => {
                let help = "214-Commands recognised:\r\n USER PASS ACCT QUIT NOOP SYST FEAT OPTS HELP STAT TYPE MODE STRU\r\n PWD CWD CDUP PASV EPSV PORT EPRT LIST NLST MLSD MLST RETR STOR REST\r\n SIZE MDTM MKD RMD DELE RNFR RNTO ALLO\r\n214 Help OK\r\n";
                self.traffic.bytes_out += help.len() as u64;
                self.writer.write_all(help.as_bytes()).await
            }
            Command::Superfluous => self.reply(202, "Not needed on this server").await,
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
            Command::Unknown(name) => self.reply(502, &format!("{name} not implemented")).await,
            other => {
                if !matches!(self.login, Login::LoggedIn { .. }) {
                    return self.reply(530, "Please log in with USER and PASS").await;
                }
                self.logged_in(other).await
            }
        }
    }

    async fn pass(&mut self, password: &str) -> io::Result<()> {
        let Login::AwaitingPass { user } = std::mem::replace(&mut self.login, Login::AwaitingUser)
        else {
            return self.reply(503, "Login with USER first").await;
        };
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
        stats::record("ftp", "login", format!("{} from {}", user.name, self.peer));
        self.cwd = VirtualPath::root();
        self.login = Login::LoggedIn { user, jail };
        self.reply(230, "Login successful").await
    }

    fn user(&self) -> (&User, &Jail) {
        match &self.login {
            Login::LoggedIn { user, jail } => (user, jail),
            _ => unreachable!("checked by execute"),
        }
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
            Command::Epsv => self.passive(true).await,
            Command::Size(path) => match self.resolve(&path) {
                Ok((_, real)) => match tokio::fs::metadata(&real).await {
                    Ok(meta) if meta.is_file() => self.reply(213, &meta.len().to_string()).await,
                    _ => self.reply(550, "Not a plain file").await,
                },
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::Mdtm(path) => match self.resolve(&path) {
                Ok((_, real)) => {
                    match tokio::fs::metadata(&real).await.and_then(|m| m.modified()) {
                        Ok(modified) => {
                            // RFC 3659: YYYYMMDDHHMMSS in UTC.
                            let stamp = humantime::format_rfc3339_seconds(modified).to_string();
                            let digits: String =
                                stamp.chars().filter(char::is_ascii_digit).collect();
                            self.reply(213, &digits).await
                        }
                        Err(_) => self.reply(550, "No such file").await,
                    }
                }
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::Rest(offset) => {
                self.restart = offset;
                self.reply(350, &format!("Restarting at {offset}; send RETR"))
                    .await
            }
            Command::Rnfr(path) if permissions.rename => match self.resolve(&path) {
                Ok((virtual_path, real))
                    if !virtual_path.is_root()
                        && tokio::fs::symlink_metadata(&real).await.is_ok() =>
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
                    Ok((_, real)) if tokio::fs::symlink_metadata(&real).await.is_ok() => {
                        self.reply(553, "The target exists; delete it first").await
                    }
                    Ok((_, real)) => match tokio::fs::rename(&from, &real).await {
                        Ok(()) => self.reply(250, "Renamed").await,
                        Err(_) => self.reply(553, "Cannot rename").await,
                    },
                    Err((code, text)) => self.reply(code, text).await,
                }
            }
            Command::Rnfr(_) | Command::Rnto(_) => self.reply(550, "Permission denied").await,
            Command::List(_) | Command::Nlst(_) | Command::Mlsd(_) if !permissions.read => {
                self.reply(550, "Permission denied").await
            }
            Command::Stat => {
                let (user, _) = self.user();
                let status = format!(
                    "211-sockit FTP status:\r\n Logged in as {}\r\n Directory {}\r\n TYPE {}, MODE S, STRU F\r\n211 End of status\r\n",
                    user.name,
                    self.cwd,
                    if self.transfer_type == TransferType::Ascii {
                        "A"
                    } else {
                        "I"
                    }
                );
                self.traffic.bytes_out += status.len() as u64;
                self.writer.write_all(status.as_bytes()).await
            }
            Command::Mlst(path) => match self.resolve(path.as_deref().unwrap_or(".")) {
                Ok((virtual_path, real)) => match tokio::fs::metadata(&real).await {
                    Ok(meta) => {
                        let entry = vfs::DirEntry {
                            name: virtual_path.to_string(),
                            dir: meta.is_dir(),
                            size: meta.len(),
                            modified: meta.modified().ok(),
                        };
                        let text =
                            format!("250-Listing\r\n {}\r\n250 End\r\n", listing::facts(&entry));
                        self.traffic.bytes_out += text.len() as u64;
                        self.writer.write_all(text.as_bytes()).await
                    }
                    Err(_) => self.reply(550, "No such file or directory").await,
                },
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::List(path) => self.list(path.as_deref(), Format::Long).await,
            Command::Nlst(path) => self.list(path.as_deref(), Format::Names).await,
            Command::Mlsd(path) => self.list(path.as_deref(), Format::Facts).await,
            Command::Retr(path) if permissions.read => self.retrieve(&path).await,
            Command::Stor(path) if permissions.write => self.store(&path).await,
            Command::Mkd(path) if permissions.mkdir => match self.resolve(&path) {
                Ok((virtual_path, real)) => match tokio::fs::create_dir(&real).await {
                    Ok(()) => {
                        let quoted = virtual_path.as_str().replace('"', "\"\"");
                        self.reply(257, &format!("\"{quoted}\" created")).await
                    }
                    Err(_) => self.reply(550, "Cannot create the directory").await,
                },
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::Rmd(path) if permissions.delete => match self.resolve(&path) {
                Ok((virtual_path, _)) if virtual_path.is_root() => {
                    self.reply(550, "Permission denied").await
                }
                Ok((_, real)) => match tokio::fs::remove_dir(&real).await {
                    Ok(()) => self.reply(250, "Directory removed").await,
                    Err(_) => {
                        self.reply(550, "Cannot remove the directory (is it empty?)")
                            .await
                    }
                },
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::Dele(path) if permissions.delete => match self.resolve(&path) {
                Ok((_, real)) => match tokio::fs::symlink_metadata(&real).await {
                    Ok(meta) if !meta.is_dir() => match tokio::fs::remove_file(&real).await {
                        Ok(()) => {
                            let name = self.user().0.name.clone();
                            self.context.quotas.freed(&name, meta.len());
                            self.reply(250, "File deleted").await
                        }
                        Err(_) => self.reply(550, "Cannot delete the file").await,
                    },
                    _ => self.reply(550, "No such file").await,
                },
                Err((code, text)) => self.reply(code, text).await,
            },
            Command::Retr(_)
            | Command::Stor(_)
            | Command::Mkd(_)
            | Command::Rmd(_)
            | Command::Dele(_) => self.reply(550, "Permission denied").await,
            _ => self.reply(502, "Command not implemented").await,
        }
    }

    async fn change_directory(&mut self, path: &str) -> io::Result<()> {
        match self.resolve(path) {
            Ok((virtual_path, real)) => match tokio::fs::metadata(&real).await {
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
    /// connection's own address.
    async fn passive(&mut self, extended: bool) -> io::Result<()> {
        let listener = match TcpListener::bind(SocketAddr::new(self.local_ip, 0)).await {
            Ok(listener) => listener,
            Err(_) => return self.reply(425, "Cannot open a data port").await,
        };
        let port = listener.local_addr()?.port();
        self.passive = Some(listener);
        self.active = None;
        if extended {
            return self
                .reply(229, &format!("Entering Extended Passive Mode (|||{port}|)"))
                .await;
        }
        match self.local_ip {
            IpAddr::V4(ip) => {
                let [a, b, c, d] = ip.octets();
                let text = format!(
                    "Entering Passive Mode ({a},{b},{c},{d},{},{})",
                    port >> 8,
                    port & 0xff
                );
                self.reply(227, &text).await
            }
            IpAddr::V6(_) => self.reply(522, "Use EPSV over IPv6").await,
        }
    }

    /// Opens the data connection: to the PORT/EPRT address, or by accepting
    /// on the PASV/EPSV listener, only from the control connection's own
    /// address (no one else may take the data).
    async fn data_connection(&mut self) -> Result<TcpStream, (u16, &'static str)> {
        if let Some(target) = self.active.take() {
            let connecting =
                tokio::time::timeout(self.context.data_timeout, TcpStream::connect(target));
            return match connecting.await {
                Ok(Ok(stream)) => Ok(stream),
                _ => Err((425, "Cannot open the data connection")),
            };
        }
        let listener = self
            .passive
            .take()
            .ok_or((425, "Use PASV, EPSV, PORT or EPRT first"))?;
        let deadline = tokio::time::Instant::now() + self.context.data_timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, listener.accept()).await;
            match accepted {
                Err(_) => return Err((425, "No data connection came")),
                Ok(Err(_)) => return Err((425, "Cannot open the data connection")),
                Ok(Ok((stream, from))) if from.ip() == self.peer.ip() => return Ok(stream),
                Ok(Ok((stream, _other))) => drop(stream),
            }
        }
    }

    async fn list(&mut self, path: Option<&str>, format: Format) -> io::Result<()> {
        let (_, real) = match self.resolve(path.unwrap_or(".")) {
            Ok(found) => found,
            Err((code, text)) => return self.reply(code, text).await,
        };
        let entries = match tokio::task::spawn_blocking(move || vfs::list_dir(&real)).await {
            Ok(Ok(entries)) => entries,
            _ => return self.reply(550, "No such directory").await,
        };
        let now = SystemTime::now();
        let mut text = String::new();
        for entry in &entries {
            match format {
                Format::Long => text.push_str(&listing::long_line(entry, now)),
                Format::Names => text.push_str(&entry.name),
                Format::Facts => text.push_str(&listing::facts(entry)),
            }
            text.push_str("\r\n");
        }
        self.reply(150, "Here comes the listing").await?;
        let mut data = match self.data_connection().await {
            Ok(data) => data,
            Err((code, reason)) => return self.reply(code, reason).await,
        };
        if data.write_all(text.as_bytes()).await.is_err() || data.shutdown().await.is_err() {
            return self.reply(426, "The data connection broke").await;
        }
        self.reply(226, "Listing sent").await
    }

    async fn retrieve(&mut self, path: &str) -> io::Result<()> {
        let (virtual_path, real) = match self.resolve(path) {
            Ok(found) => found,
            Err((code, text)) => return self.reply(code, text).await,
        };
        let offset = std::mem::take(&mut self.restart);
        let mut file = match tokio::fs::File::open(&real).await {
            Ok(file) if file.metadata().await.is_ok_and(|m| m.is_file()) => file,
            _ => return self.reply(550, "No such file").await,
        };
        if offset > 0 {
            if self.transfer_type == TransferType::Ascii {
                return self.reply(550, "REST works in TYPE I only").await;
            }
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                return self.reply(550, "Cannot seek to the restart offset").await;
            }
        }
        self.reply(150, "Opening the data connection").await?;
        let mut data = match self.data_connection().await {
            Ok(data) => data,
            Err((code, reason)) => return self.reply(code, reason).await,
        };
        let started = Instant::now();
        let ascii = self.transfer_type == TransferType::Ascii;
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent: u64 = 0;
        let copied: io::Result<()> = async {
            loop {
                let read = file.read(&mut buf).await?;
                if read == 0 {
                    break;
                }
                if ascii {
                    let converted = to_crlf(&buf[..read]);
                    data.write_all(&converted).await?;
                } else {
                    data.write_all(&buf[..read]).await?;
                }
                sent += read as u64;
            }
            data.shutdown().await
        }
        .await;
        self.log_transfer("RETR", &virtual_path, sent, started, copied.is_ok());
        match copied {
            Ok(()) => self.reply(226, "Transfer complete").await,
            Err(_) => {
                self.reply(426, "The data connection broke; transfer aborted")
                    .await
            }
        }
    }

    async fn store(&mut self, path: &str) -> io::Result<()> {
        let (virtual_path, real) = match self.resolve(path) {
            Ok(found) => found,
            Err((code, text)) => return self.reply(code, text).await,
        };
        if tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_dir()) {
            return self.reply(553, "That name is a directory").await;
        }
        let (user, jail) = self.user();
        let quota = match self
            .context
            .quotas
            .writer(&user.name, jail.root(), user.quota)
        {
            Ok(quota) => quota,
            Err(_) => return self.reply(451, "Cannot count your disk usage").await,
        };
        let replaced = tokio::fs::metadata(&real).await.map(|m| m.len()).ok();
        let Some(temporary) = real.parent().map(vfs::upload_temporary) else {
            return self.reply(553, "Cannot store there").await;
        };
        let mut file = match tokio::fs::File::create(&temporary).await {
            Ok(file) => file,
            Err(_) => return self.reply(553, "Cannot create the file").await,
        };
        self.reply(150, "Ok to send data").await?;
        let mut data = match self.data_connection().await {
            Ok(data) => data,
            Err((code, reason)) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return self.reply(code, reason).await;
            }
        };
        let started = Instant::now();
        let ascii = self.transfer_type == TransferType::Ascii;
        let mut buf = vec![0u8; 256 * 1024];
        let mut received: u64 = 0;
        let mut charged: u64 = 0;
        #[derive(Debug)]
        enum Failure {
            Quota,
            Io,
        }
        let stored: Result<(), Failure> = async {
            loop {
                let read = data.read(&mut buf).await.map_err(|_| Failure::Io)?;
                if read == 0 {
                    break;
                }
                let bytes = if ascii {
                    from_crlf(&buf[..read])
                } else {
                    buf[..read].to_vec()
                };
                quota
                    .charge(bytes.len() as u64)
                    .map_err(|_| Failure::Quota)?;
                charged += bytes.len() as u64;
                file.write_all(&bytes).await.map_err(|_| Failure::Io)?;
                received += read as u64;
            }
            file.sync_all().await.map_err(|_| Failure::Io)?;
            tokio::fs::rename(&temporary, &real)
                .await
                .map_err(|_| Failure::Io)
        }
        .await;
        drop(file);
        self.log_transfer("STOR", &virtual_path, received, started, stored.is_ok());
        match stored {
            Ok(()) => {
                if let Some(old) = replaced {
                    quota.refund(old);
                }
                self.reply(226, "Transfer complete").await
            }
            Err(failure) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                quota.refund(charged);
                match failure {
                    Failure::Quota => {
                        // Let the client finish sending before answering:
                        // closing a socket with unread data resets it, and
                        // the client would report a reset, not the 552.
                        discard_rest(&mut data, &mut buf).await;
                        self.reply(552, "Disk quota exceeded; the upload was discarded")
                            .await
                    }
                    Failure::Io => {
                        self.reply(426, "The data connection broke; the upload was discarded")
                            .await
                    }
                }
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
async fn discard_rest(data: &mut TcpStream, buf: &mut [u8]) {
    let draining = async {
        let mut dropped = 0u64;
        while dropped < DISCARD_LIMIT {
            match data.read(buf).await {
                Ok(0) | Err(_) => break,
                Ok(read) => dropped += read as u64,
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, draining).await;
}

/// How a directory listing is written.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// LIST: `ls -l` lines.
    Long,
    /// NLST: names only.
    Names,
    /// MLSD: RFC 3659 facts.
    Facts,
}

/// The reply for a path that cannot be used.
fn refusal(err: VfsError) -> (u16, &'static str) {
    match err {
        VfsError::InvalidCharacter => (553, "File name not allowed"),
        VfsError::OutsideJail | VfsError::EscapingLink => (550, "Permission denied"),
        VfsError::Io(_) => (550, "No such file or directory"),
    }
}

/// TYPE A sending: LF becomes CRLF (an existing CR before LF is kept once).
fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &byte in bytes {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// TYPE A receiving: CRLF becomes LF.
fn from_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &byte) in bytes.iter().enumerate() {
        if byte == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_mode_converts_line_ends_both_ways() {
        assert_eq!(to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        assert_eq!(from_crlf(b"a\r\nb\nc\r"), b"a\nb\nc\r");
    }
}
