//! The configuration file: its serde model, the embedded default, and the
//! resolution into [`Settings`], which is what services run with.
//!
//! Files are TOML. Unknown keys and wrong types are errors that name the key and
//! the line. A user file may be partial: a missing key keeps its default, and the
//! defaults are exactly the embedded `sockit.toml` (a unit test holds the two
//! together).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tls::TlsFiles;

/// The embedded default configuration, as printed by `sockit config default`.
pub const DEFAULT_TOML: &str = include_str!("sockit.toml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("{origin}: line {line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
    /// The file parsed, but a value is out of range.
    #[error("{origin}: {key}: {message}")]
    OutOfRange {
        origin: String,
        key: &'static str,
        message: String,
    },
}

/// The whole file, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub serve: ServeSection,
    pub echo: EchoSection,
    pub http: HttpSection,
    pub bot: BotSection,
    pub ftp: FtpSection,
    pub exec: ExecSection,
}

/// `[exec]`: remote command execution.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecSection {
    pub enabled: bool,
    pub port: u16,
    pub unix_path: PathBuf,
    pub authorized_keys: PathBuf,
    pub shell: bool,
    pub allow: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_per_client: usize,
    pub max_commands: usize,
    pub max_connections: usize,
    pub working_dir: PathBuf,
    pub keep_env: Vec<String>,
    pub run_as: String,
}

impl Default for ExecSection {
    fn default() -> Self {
        ExecSection {
            enabled: true,
            port: 9999,
            unix_path: PathBuf::new(),
            authorized_keys: PathBuf::new(),
            shell: true,
            allow: Vec::new(),
            timeout: Duration::from_secs(60),
            max_per_client: 4,
            max_commands: 32,
            max_connections: 100,
            working_dir: PathBuf::new(),
            keep_env: ["PATH", "LANG", "LC_ALL", "TZ"].map(str::to_owned).to_vec(),
            run_as: String::new(),
        }
    }
}

/// Resolved exec settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSettings {
    pub tcp: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    /// The server's private key, created on first start.
    pub key_file: PathBuf,
    pub authorized_keys: PathBuf,
    pub policy: crate::exec::policy::PolicySettings,
    pub max_per_client: usize,
    pub max_commands: usize,
    pub max_connections: usize,
}

/// `[ftp]`: the FTP server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpSection {
    pub enabled: bool,
    pub port: u16,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// The most bytes per second one upload or download moves, as a size
    /// ("10M"); empty: no limit.
    pub max_rate: String,
    /// `"FIRST-LAST"`, or empty for any free port.
    pub passive_ports: String,
    /// The IPv4 address PASV announces (behind NAT); empty: the control
    /// connection's own.
    pub passive_address: String,
    /// PEM files for `AUTH TLS`; both empty: no TLS.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Refuse logins and data connections that are not encrypted.
    pub require_tls: bool,
    /// Refuse TLS data connections that do not resume the control
    /// connection's TLS session.
    pub require_tls_resumption: bool,
    /// Also serve implicit FTPS (TLS from the first byte) on
    /// `implicit_tls_port`.
    pub implicit_tls: bool,
    pub implicit_tls_port: u16,
    /// A directory `anonymous` may browse and download from; empty: no
    /// anonymous login.
    pub anonymous_root: PathBuf,
    /// How long an interrupted upload is kept for resuming.
    #[serde(with = "humantime_serde")]
    pub keep_partial_uploads: Duration,
}

impl Default for FtpSection {
    fn default() -> Self {
        FtpSection {
            enabled: true,
            port: 2121,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(60),
            max_connections: 200,
            max_per_ip: 10,
            max_rate: String::new(),
            passive_ports: String::new(),
            passive_address: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            require_tls: false,
            require_tls_resumption: false,
            implicit_tls: false,
            implicit_tls_port: 9990,
            anonymous_root: PathBuf::new(),
            keep_partial_uploads: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Resolved FTP settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FtpSettings {
    pub addr: SocketAddr,
    pub idle_timeout: Duration,
    /// How long a data connection may take to open, or stall.
    pub data_timeout: Duration,
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// The most bytes per second one upload or download moves; `None`: no
    /// limit.
    pub max_rate: Option<u64>,
    /// Ports passive data connections listen on; `None`: any free port.
    pub passive_ports: Option<std::ops::RangeInclusive<u16>>,
    /// The address PASV announces; `None`: the control connection's own.
    pub passive_address: Option<std::net::Ipv4Addr>,
    /// The certificate and key for `AUTH TLS`; `None`: no TLS.
    pub tls: Option<TlsFiles>,
    /// Logins and data connections must be encrypted.
    pub require_tls: bool,
    /// TLS data connections must resume the control connection's session.
    pub require_tls_resumption: bool,
    /// Where implicit FTPS is served; `None`: not served.
    pub implicit_tls_addr: Option<SocketAddr>,
    /// Where `anonymous` logs in, read-only; `None`: no anonymous login.
    pub anonymous_root: Option<PathBuf>,
    /// How long an interrupted upload is kept for resuming.
    pub keep_partial_uploads: Duration,
}

/// `[bot]`: the 10086 menu bot.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotSection {
    pub enabled: bool,
    pub port: u16,
    pub script: PathBuf,
    pub encoding: String,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub max_line: usize,
    pub max_connections: usize,
}

impl Default for BotSection {
    fn default() -> Self {
        BotSection {
            enabled: true,
            port: 10086,
            script: PathBuf::new(),
            encoding: "utf-8".to_owned(),
            idle_timeout: Duration::from_secs(300),
            max_line: 1024,
            max_connections: 1000,
        }
    }
}

/// `[serve]`: settings shared by every service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSection {
    pub bind: IpAddr,
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

/// `[echo]`: the uppercase echo service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EchoSection {
    pub enabled: bool,
    pub port: u16,
    pub tcp: bool,
    pub udp: bool,
    pub unix_path: PathBuf,
    pub plain: bool,
    pub max_connections: usize,
}

/// `[http]`: the browser console.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub enabled: bool,
    pub port: u16,
    pub max_connections: usize,
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            enabled: true,
            port: 8000,
            max_connections: 1000,
            workers: 0,
            idle_timeout: Duration::from_secs(60),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

impl Default for ServeSection {
    fn default() -> Self {
        ServeSection {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            grace_period: Duration::from_secs(5),
        }
    }
}

impl Default for EchoSection {
    fn default() -> Self {
        EchoSection {
            enabled: true,
            port: 8080,
            tcp: true,
            udp: true,
            unix_path: PathBuf::new(),
            plain: false,
            max_connections: 10_000,
        }
    }
}

impl FileConfig {
    /// Parses a configuration text; `origin` names it in errors (a path, or
    /// "embedded default").
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with the line and, where it can be found, the key.
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|err| {
            let (line, key) = match err.span() {
                Some(span) => locate(text, span.start),
                None => (1, None),
            };
            let message = match key {
                Some(key) if !err.message().contains(&format!("`{key}`")) => {
                    format!("key `{key}`: {}", err.message())
                }
                _ => err.message().to_owned(),
            };
            ConfigError::Invalid {
                origin: origin.to_owned(),
                line,
                message: message.replace('\n', " "),
            }
        })
    }

    /// Reads and parses a file, or the embedded default when `path` is `None`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, else as [`FileConfig::parse`].
    pub fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        match path {
            None => FileConfig::parse(DEFAULT_TOML, "embedded default config"),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                FileConfig::parse(&text, &path.display().to_string())
            }
        }
    }
}

/// The 1-based line of byte offset `at`, and the key written on that line, if any.
fn locate(text: &str, at: usize) -> (usize, Option<String>) {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..at].matches('\n').count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(key, _)| key.trim().trim_matches('"').to_owned())
        .filter(|key| !key.is_empty() && !key.starts_with('['));
    (line_no, key)
}

/// What the services run with: addresses resolved, limits checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where keys, users and other state live (created by `sockit serve`).
    pub data_dir: PathBuf,
    pub grace_period: Duration,
    pub echo: Option<EchoSettings>,
    pub http: Option<HttpSettings>,
    pub bot: Option<BotConfig>,
    pub ftp: Option<FtpSettings>,
    pub exec: Option<ExecSettings>,
}

/// Resolved bot settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BotConfig {
    pub addr: SocketAddr,
    /// `None`: the built-in 10086 script.
    pub script: Option<PathBuf>,
    pub encoding: &'static encoding_rs::Encoding,
    pub idle_timeout: Duration,
    pub max_line: usize,
    pub max_connections: usize,
}

/// The encodings the bot speaks: `utf-8`, or `gbk` for legacy Windows terminals.
pub fn bot_encoding(name: &str) -> Option<&'static encoding_rs::Encoding> {
    match name.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Some(encoding_rs::UTF_8),
        "gbk" | "gb2312" | "gb18030" => Some(encoding_rs::GBK),
        _ => None,
    }
}

/// Resolved HTTP console settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    pub max_connections: usize,
    /// Worker threads, each with its own event loop (at least 1).
    pub workers: usize,
    /// The idle watchdog's period: a connection is closed when it moves no
    /// bytes for a period, or sends bytes for two without starting a
    /// request (see [`crate::http::idle`]).
    pub idle_timeout: Duration,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// Resolved echo service settings; `None` fields are not served.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoSettings {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    pub plain: bool,
    pub max_connections: usize,
}

/// Overrides given on the command line, which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--bind IP`: the address for every service.
    pub bind: Option<IpAddr>,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
}

impl FileConfig {
    /// Resolves the file and the command-line overrides into [`Settings`].
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] for values that parse but cannot work.
    pub fn resolve(&self, overrides: &Overrides, origin: &str) -> Result<Settings, ConfigError> {
        let bind = overrides.bind.unwrap_or(self.serve.bind);
        let out_of_range = |key, message: &str| ConfigError::OutOfRange {
            origin: origin.to_owned(),
            key,
            message: message.to_owned(),
        };
        if self.serve.grace_period > Duration::from_secs(3600) {
            return Err(out_of_range("serve.grace_period", "must be at most 1h"));
        }
        if self.echo.max_connections == 0 {
            return Err(out_of_range("echo.max_connections", "must be at least 1"));
        }
        if self.http.workers > 1024 {
            return Err(out_of_range("http.workers", "must be at most 1024"));
        }
        if self.http.max_connections == 0 {
            return Err(out_of_range("http.max_connections", "must be at least 1"));
        }
        // A certificate and its key come together, or not at all.
        let tls_pair =
            |[cert_name, key_name]: [&'static str; 2], cert: &PathBuf, key: &PathBuf| match (
                cert.as_os_str().is_empty(),
                key.as_os_str().is_empty(),
            ) {
                (true, true) => Ok(None),
                (false, false) => Ok(Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })),
                _ => Err(out_of_range(
                    cert_name,
                    &format!("set both {cert_name} and {key_name}, or neither"),
                )),
            };
        let tls = tls_pair(
            ["http.tls_cert", "http.tls_key"],
            &self.http.tls_cert,
            &self.http.tls_key,
        )?;
        if self.http.idle_timeout.is_zero() {
            return Err(out_of_range("http.idle_timeout", "must be more than 0s"));
        }
        let http = self.http.enabled.then(|| HttpSettings {
            addr: SocketAddr::new(bind, self.http.port),
            max_connections: self.http.max_connections,
            workers: match self.http.workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            idle_timeout: self.http.idle_timeout,
            tls,
        });
        let bot = &self.bot;
        let encoding = bot_encoding(&bot.encoding)
            .ok_or_else(|| out_of_range("bot.encoding", "must be \"utf-8\" or \"gbk\""))?;
        if bot.max_line == 0 || bot.max_line > 1 << 20 {
            return Err(out_of_range(
                "bot.max_line",
                "must be between 1 and 1048576",
            ));
        }
        if bot.max_connections == 0 {
            return Err(out_of_range("bot.max_connections", "must be at least 1"));
        }
        if bot.idle_timeout.is_zero() {
            return Err(out_of_range("bot.idle_timeout", "must be more than 0s"));
        }
        let bot = bot.enabled.then(|| BotConfig {
            addr: SocketAddr::new(bind, bot.port),
            script: (!bot.script.as_os_str().is_empty()).then(|| bot.script.clone()),
            encoding,
            idle_timeout: bot.idle_timeout,
            max_line: bot.max_line,
            max_connections: bot.max_connections,
        });
        if self.ftp.max_connections == 0 {
            return Err(out_of_range("ftp.max_connections", "must be at least 1"));
        }
        if self.ftp.max_per_ip == 0 {
            return Err(out_of_range("ftp.max_per_ip", "must be at least 1"));
        }
        if self.ftp.idle_timeout.is_zero() {
            return Err(out_of_range("ftp.idle_timeout", "must be more than 0s"));
        }
        if self.ftp.data_timeout.is_zero() {
            return Err(out_of_range("ftp.data_timeout", "must be more than 0s"));
        }
        let max_rate = match self.ftp.max_rate.trim() {
            "" => None,
            rate => match crate::size::parse(rate) {
                Ok(rate) if rate > 0 => Some(rate),
                _ => {
                    return Err(out_of_range(
                        "ftp.max_rate",
                        "must be bytes per second, or a number with K, M or G, or empty",
                    ));
                }
            },
        };
        let passive_ports = match self.ftp.passive_ports.trim() {
            "" => None,
            range => {
                let parsed = range.split_once('-').and_then(|(first, last)| {
                    Some(first.trim().parse::<u16>().ok()?..=last.trim().parse::<u16>().ok()?)
                });
                match parsed {
                    Some(ports) if *ports.start() >= 1024 && ports.start() <= ports.end() => {
                        Some(ports)
                    }
                    _ => {
                        return Err(out_of_range(
                            "ftp.passive_ports",
                            "must be \"FIRST-LAST\" with 1024 <= FIRST <= LAST, or empty",
                        ));
                    }
                }
            }
        };
        let passive_address = match self.ftp.passive_address.trim() {
            "" => None,
            address => Some(address.parse().map_err(|_| {
                out_of_range("ftp.passive_address", "must be an IPv4 address, or empty")
            })?),
        };
        let ftp_tls = tls_pair(
            ["ftp.tls_cert", "ftp.tls_key"],
            &self.ftp.tls_cert,
            &self.ftp.tls_key,
        )?;
        let needs_tls = [
            (self.ftp.require_tls, "ftp.require_tls"),
            (
                self.ftp.require_tls_resumption,
                "ftp.require_tls_resumption",
            ),
            (self.ftp.implicit_tls, "ftp.implicit_tls"),
        ];
        if ftp_tls.is_none()
            && let Some((_, key)) = needs_tls.into_iter().find(|(wanted, _)| *wanted)
        {
            return Err(out_of_range(key, "needs ftp.tls_cert and ftp.tls_key"));
        }
        let ftp = self.ftp.enabled.then(|| FtpSettings {
            addr: SocketAddr::new(bind, self.ftp.port),
            idle_timeout: self.ftp.idle_timeout,
            data_timeout: self.ftp.data_timeout,
            max_connections: self.ftp.max_connections,
            max_per_ip: self.ftp.max_per_ip,
            max_rate,
            passive_ports,
            passive_address,
            tls: ftp_tls,
            require_tls: self.ftp.require_tls,
            require_tls_resumption: self.ftp.require_tls_resumption,
            implicit_tls_addr: self
                .ftp
                .implicit_tls
                .then(|| SocketAddr::new(bind, self.ftp.implicit_tls_port)),
            anonymous_root: (!self.ftp.anonymous_root.as_os_str().is_empty())
                .then(|| self.ftp.anonymous_root.clone()),
            keep_partial_uploads: self.ftp.keep_partial_uploads,
        });
        let data_dir = overrides.data_dir.clone().unwrap_or_else(default_data_dir);
        let exec = &self.exec;
        if exec.max_per_client == 0 {
            return Err(out_of_range("exec.max_per_client", "must be at least 1"));
        }
        if exec.max_commands == 0 {
            return Err(out_of_range("exec.max_commands", "must be at least 1"));
        }
        if exec.max_connections == 0 {
            return Err(out_of_range("exec.max_connections", "must be at least 1"));
        }
        if exec.timeout.is_zero() {
            return Err(out_of_range("exec.timeout", "must be more than 0s"));
        }
        let set = |path: &PathBuf| (!path.as_os_str().is_empty()).then(|| path.clone());
        let exec = exec.enabled.then(|| ExecSettings {
            tcp: Some(SocketAddr::new(bind, exec.port)),
            unix: set(&exec.unix_path),
            key_file: data_dir.join("exec.key"),
            authorized_keys: set(&exec.authorized_keys)
                .unwrap_or_else(|| data_dir.join("authorized_keys")),
            policy: crate::exec::policy::PolicySettings {
                shell: exec.shell,
                allow: exec.allow.clone(),
                timeout: exec.timeout,
                working_dir: set(&exec.working_dir),
                keep_env: exec.keep_env.clone(),
                run_as: (!exec.run_as.is_empty()).then(|| exec.run_as.clone()),
            },
            max_per_client: exec.max_per_client,
            max_commands: exec.max_commands,
            max_connections: exec.max_connections,
        });
        let echo = &self.echo;
        let echo = echo.enabled.then(|| EchoSettings {
            tcp: echo.tcp.then_some(SocketAddr::new(bind, echo.port)),
            udp: echo.udp.then_some(SocketAddr::new(bind, echo.port)),
            unix: (!echo.unix_path.as_os_str().is_empty()).then(|| echo.unix_path.clone()),
            plain: echo.plain,
            max_connections: echo.max_connections,
        });
        Ok(Settings {
            data_dir,
            grace_period: self.serve.grace_period,
            echo,
            http,
            bot,
            ftp,
            exec,
        })
    }
}

/// The data directory when `--data-dir` is not given: `$XDG_DATA_HOME/sockit`,
/// else `~/.local/share/sockit`, else `./sockit-data` when there is no home.
pub fn default_data_dir() -> PathBuf {
    let from_env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(xdg) = from_env("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return xdg.join("sockit");
    }
    match from_env("HOME") {
        Some(home) => home.join(".local/share/sockit"),
        None => PathBuf::from("sockit-data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_the_built_in_defaults() {
        let parsed = FileConfig::parse(DEFAULT_TOML, "embedded").unwrap();
        assert_eq!(parsed, FileConfig::default());
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let parsed = FileConfig::parse("[echo]\nport = 9000\n", "t").unwrap();
        assert_eq!(parsed.echo.port, 9000);
        assert!(parsed.echo.udp);
        assert_eq!(parsed.serve, ServeSection::default());
    }

    #[test]
    fn unknown_key_names_the_key_and_the_line() {
        let err = FileConfig::parse("[echo]\nport = 1\ncolour = 3\n", "f.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("f.toml: line 3: "), "{text}");
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key_and_the_line() {
        let err = FileConfig::parse("[serve]\n\nbind = 17\n", "f.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("f.toml: line 3: "), "{text}");
        assert!(text.contains("`bind`"), "{text}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = FileConfig::parse("[echoo]\nport = 1\n", "f.toml").unwrap_err();
        assert!(err.to_string().contains("echoo"), "{err}");
    }

    #[test]
    fn bind_override_wins_over_the_file() {
        let file = FileConfig::default();
        let overrides = Overrides {
            bind: Some("::1".parse().unwrap()),
            ..Overrides::default()
        };
        let settings = file.resolve(&overrides, "t").unwrap();
        let echo = settings.echo.unwrap();
        assert_eq!(echo.tcp, Some("[::1]:8080".parse().unwrap()));
        assert_eq!(echo.udp, Some("[::1]:8080".parse().unwrap()));
    }

    #[test]
    fn tls_modes_without_a_certificate_are_refused_naming_the_key() {
        for key in ["require_tls", "require_tls_resumption", "implicit_tls"] {
            let file = FileConfig::parse(&format!("[ftp]\n{key} = true\n"), "t").unwrap();
            let err = file.resolve(&Overrides::default(), "t").unwrap_err();
            assert!(err.to_string().contains(&format!("ftp.{key}")), "{err}");
        }
    }

    #[test]
    fn disabled_echo_is_not_served() {
        let file = FileConfig::parse("[echo]\nenabled = false\n", "t").unwrap();
        let settings = file.resolve(&Overrides::default(), "t").unwrap();
        assert_eq!(settings.echo, None);
    }
}
