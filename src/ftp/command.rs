//! FTP commands: one control line in, one typed [`Command`] out. Pure: no
//! I/O, so every odd input can be tested here.
//!
//! RFC 959 section 4.1: a command is a keyword of up to four letters,
//! case-insensitive, then optionally a space and an argument, ended by
//! CRLF. Paths may contain spaces, so the argument is the rest of the line.

use crate::users::Secret;

/// The longest control line accepted (RFC 959 sets no limit; vsftpd uses 4 KiB).
pub const MAX_LINE: usize = 4096;

/// Representation types (RFC 959 3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE A`: text, line endings converted to CRLF on the wire.
    Ascii,
    /// `TYPE I`: bytes as they are.
    Image,
}

/// A parsed control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(Secret),
    Syst,
    Feat,
    Opts(String),
    Type(TransferType),
    Pwd,
    Cwd(String),
    Cdup,
    Pasv,
    /// `EPSV [1|2]` (RFC 2428): passive mode, for the given network
    /// protocol if one is named.
    Epsv(Option<u8>),
    /// `EPSV ALL`: from now on only EPSV sets up data connections.
    EpsvAll,
    /// `PORT h1,h2,h3,h4,p1,p2` or `EPRT |af|addr|port|`: active mode.
    Port(std::net::SocketAddr),
    List(Option<String>),
    Nlst(Option<String>),
    Retr(String),
    Stor(String),
    /// `APPE`: append to the file (or continue its interrupted upload).
    Appe(String),
    /// `STOU`: store under a new name, made from the argument if given.
    Stou(Option<String>),
    /// `ABOR`: stop the running transfer.
    Abor,
    /// `AUTH TLS` (or `AUTH SSL`): switch the control connection to TLS.
    Auth(String),
    /// `PBSZ 0`: the protection buffer size, always 0 with TLS.
    Pbsz(String),
    /// `PROT C` or `PROT P`: data connections in the clear or in TLS.
    Prot(String),
    Size(String),
    Mdtm(String),
    /// `MFMT YYYYMMDDHHMMSS path`: set a file's modification time
    /// (draft-somers-ftp-mfxx), as lftp and FileZilla do after an upload.
    Mfmt {
        modified: std::time::SystemTime,
        path: String,
    },
    /// `REST offset`: the next RETR starts at this byte (RFC 3659 section 5).
    Rest(u64),
    Rnfr(String),
    Rnto(String),
    Mkd(String),
    Rmd(String),
    Dele(String),
    Noop,
    Quit,
    Help,
    /// `STAT` without an argument: the session's status (during a
    /// transfer: its progress).
    Stat,
    /// `STAT path`: a listing sent over the control connection.
    StatPath(String),
    /// `MODE`, `STRU`: only stream mode and file structure exist here.
    Mode(String),
    Stru(String),
    /// `ACCT`, `ALLO`: accepted and not needed (RFC 959 reply 202).
    Superfluous,
    Mlsd(Option<String>),
    Mlst(Option<String>),
    /// `SITE CHMOD mode path`: set a file's or directory's permission bits
    /// (octal, at most 777: no set-user-ID, set-group-ID or sticky bit), as
    /// vsftpd does and lftp's `chmod` and FileZilla's permissions dialog ask.
    Chmod {
        mode: u32,
        path: String,
    },
    /// `SITE HELP`: the SITE commands there are.
    SiteHelp,
    /// A SITE command this server does not have (vsftpd answers 500).
    UnknownSite,
    /// A known command with a missing or malformed argument.
    BadArgument(&'static str),
    /// A known command with a well-formed argument this server does not
    /// support (`TYPE E`).
    UnsupportedArgument(&'static str),
    /// A command of the FTP RFCs this server does not implement (502).
    NotImplemented(&'static str),
    /// A command no FTP RFC defines (500).
    Unknown(String),
}

/// Parses one control line (without its CRLF).
pub fn parse(line: &str) -> Command {
    let line = line.trim_end_matches(['\r', '\n']);
    let (keyword, argument) = match line.split_once(' ') {
        Some((keyword, argument)) => (keyword, Some(argument)),
        None => (line, None),
    };
    let required = |name: &'static str| match argument {
        Some(arg) if !arg.is_empty() => Ok(arg.to_owned()),
        _ => Err(Command::BadArgument(name)),
    };
    // `LIST -la dir`: clients send ls options; they are not part of the path.
    let listing_path = || {
        argument
            .map(|arg| {
                arg.split(' ')
                    .filter(|word| !word.starts_with('-'))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|path| !path.is_empty())
    };
    let parsed = match keyword.to_ascii_uppercase().as_str() {
        "USER" => required("USER").map(Command::User),
        "PASS" => Ok(Command::Pass(Secret::new(argument.unwrap_or("")))),
        "SYST" => Ok(Command::Syst),
        "FEAT" => Ok(Command::Feat),
        "OPTS" => required("OPTS").map(Command::Opts),
        "TYPE" => match argument.map(|a| a.trim().to_ascii_uppercase()).as_deref() {
            Some("A") | Some("A N") => Ok(Command::Type(TransferType::Ascii)),
            Some("I") | Some("L 8") => Ok(Command::Type(TransferType::Image)),
            // EBCDIC, Telnet or carriage-control formats, other byte sizes.
            Some("E" | "A T" | "A C" | "E N" | "E T" | "E C") => {
                Err(Command::UnsupportedArgument("TYPE"))
            }
            Some(local)
                if local
                    .strip_prefix("L ")
                    .is_some_and(|size| size.parse::<u8>().is_ok()) =>
            {
                Err(Command::UnsupportedArgument("TYPE"))
            }
            _ => Err(Command::BadArgument("TYPE")),
        },
        "PWD" | "XPWD" => Ok(Command::Pwd),
        "CWD" | "XCWD" => required("CWD").map(Command::Cwd),
        "CDUP" | "XCUP" => Ok(Command::Cdup),
        "PASV" => Ok(Command::Pasv),
        "PORT" => argument
            .and_then(parse_port)
            .map(Command::Port)
            .ok_or(Command::BadArgument("PORT")),
        "EPRT" => argument
            .and_then(parse_eprt)
            .map(Command::Port)
            .ok_or(Command::BadArgument("EPRT")),
        "EPSV" => match argument.map(str::trim).filter(|a| !a.is_empty()) {
            None => Ok(Command::Epsv(None)),
            Some(all) if all.eq_ignore_ascii_case("ALL") => Ok(Command::EpsvAll),
            Some(protocol) => protocol
                .parse()
                .map(|protocol| Command::Epsv(Some(protocol)))
                .map_err(|_| Command::BadArgument("EPSV")),
        },
        "LIST" => Ok(Command::List(listing_path())),
        "NLST" => Ok(Command::Nlst(listing_path())),
        "RETR" => required("RETR").map(Command::Retr),
        "STOR" => required("STOR").map(Command::Stor),
        "APPE" => required("APPE").map(Command::Appe),
        "STOU" => Ok(Command::Stou(
            argument.map(str::to_owned).filter(|a| !a.is_empty()),
        )),
        "ABOR" => Ok(Command::Abor),
        "AUTH" => required("AUTH").map(Command::Auth),
        "PBSZ" => required("PBSZ").map(Command::Pbsz),
        "PROT" => required("PROT").map(Command::Prot),
        "SIZE" => required("SIZE").map(Command::Size),
        "MDTM" => required("MDTM").map(Command::Mdtm),
        "MFMT" => argument
            .and_then(|arg| arg.split_once(' '))
            .and_then(|(stamp, path)| {
                Some(Command::Mfmt {
                    modified: parse_time_val(stamp)?,
                    path: path.to_owned(),
                })
            })
            .filter(|command| !matches!(command, Command::Mfmt { path, .. } if path.is_empty()))
            .ok_or(Command::BadArgument("MFMT")),
        "REST" => match argument.map(|a| a.trim().parse::<u64>()) {
            Some(Ok(offset)) => Ok(Command::Rest(offset)),
            _ => Err(Command::BadArgument("REST")),
        },
        "RNFR" => required("RNFR").map(Command::Rnfr),
        "RNTO" => required("RNTO").map(Command::Rnto),
        "MKD" | "XMKD" => required("MKD").map(Command::Mkd),
        "RMD" | "XRMD" => required("RMD").map(Command::Rmd),
        "DELE" => required("DELE").map(Command::Dele),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "STAT" => Ok(match argument.filter(|a| !a.is_empty()) {
            None => Command::Stat,
            Some(_) => Command::StatPath(listing_path().unwrap_or_else(|| ".".to_owned())),
        }),
        "MODE" => required("MODE").map(Command::Mode),
        "STRU" => required("STRU").map(Command::Stru),
        "ACCT" | "ALLO" => Ok(Command::Superfluous),
        "MLSD" => Ok(Command::Mlsd(
            argument.map(str::to_owned).filter(|a| !a.is_empty()),
        )),
        "MLST" => Ok(Command::Mlst(
            argument.map(str::to_owned).filter(|a| !a.is_empty()),
        )),
        "QUIT" => Ok(Command::Quit),
        "SITE" => Ok(parse_site(argument.unwrap_or(""))),
        known => match NOT_IMPLEMENTED.iter().find(|name| **name == known) {
            Some(name) => Ok(Command::NotImplemented(name)),
            None => Ok(Command::Unknown(keyword.chars().take(16).collect())),
        },
    };
    parsed.unwrap_or_else(|bad| bad)
}

/// Commands of RFC 959 and its extensions that this server does not
/// implement: they get 502, where a command no RFC defines gets 500.
const NOT_IMPLEMENTED: &[&str] = &[
    "SMNT", "REIN", "CCC", "ADAT", "MIC", "CONF", "ENC", "LANG", "HOST", "LPRT", "LPSV",
];

/// The argument of `SITE`: a subcommand and its own arguments.
fn parse_site(argument: &str) -> Command {
    let (subcommand, rest) = argument.split_once(' ').unwrap_or((argument, ""));
    match subcommand.to_ascii_uppercase().as_str() {
        "CHMOD" => rest
            .split_once(' ')
            .filter(|(mode, path)| {
                (1..=4).contains(&mode.len())
                    && mode.bytes().all(|digit| matches!(digit, b'0'..=b'7'))
                    && !path.is_empty()
            })
            .and_then(|(mode, path)| {
                let mode = u32::from_str_radix(mode, 8).ok()?;
                (mode <= 0o777).then(|| Command::Chmod {
                    mode,
                    path: path.to_owned(),
                })
            })
            .unwrap_or(Command::BadArgument("SITE CHMOD")),
        "HELP" => Command::SiteHelp,
        _ => Command::UnknownSite,
    }
}

/// A control line's bytes without the Telnet commands in it (RFC 959 says
/// the control connection speaks Telnet): clients send `IAC IP` and
/// `IAC DM` before `ABOR`. `IAC IAC` stands for one 0xFF byte.
pub fn without_telnet(line: &[u8]) -> Vec<u8> {
    const IAC: u8 = 0xff;
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != IAC {
            out.push(byte);
        } else if bytes.next() == Some(IAC) {
            out.push(IAC);
        }
    }
    out
}

/// An RFC 3659 time-val, `YYYYMMDDHHMMSS` in UTC with an optional fraction
/// of a second (dropped).
fn parse_time_val(stamp: &str) -> Option<std::time::SystemTime> {
    let whole = stamp.split_once('.').map_or(stamp, |(whole, _)| whole);
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (date, time) = whole.split_at(8);
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[..4],
        &date[4..6],
        &date[6..],
        &time[..2],
        &time[2..4],
        &time[4..]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// `h1,h2,h3,h4,p1,p2` (RFC 959 section 4.1.2).
fn parse_port(argument: &str) -> Option<std::net::SocketAddr> {
    let numbers: Vec<u8> = argument
        .trim()
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    let [a, b, c, d, high, low] = numbers[..] else {
        return None;
    };
    let ip = std::net::Ipv4Addr::new(a, b, c, d);
    Some(std::net::SocketAddr::from((
        ip,
        u16::from(high) << 8 | u16::from(low),
    )))
}

/// `|1|132.235.1.2|6275|` or `|2|::1|6275|` (RFC 2428 section 2).
fn parse_eprt(argument: &str) -> Option<std::net::SocketAddr> {
    let argument = argument.trim();
    let delimiter = argument.chars().next()?;
    let parts: Vec<&str> = argument.split(delimiter).collect();
    let [_, family, address, port, ""] = parts[..] else {
        return None;
    };
    let ip: std::net::IpAddr = address.parse().ok()?;
    let family_matches = matches!(
        (family, ip),
        ("1", std::net::IpAddr::V4(_)) | ("2", std::net::IpAddr::V6(_))
    );
    family_matches.then_some(())?;
    Some(std::net::SocketAddr::new(ip, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively_with_their_arguments() {
        let table = [
            ("USER alice", Command::User("alice".into())),
            ("user alice", Command::User("alice".into())),
            ("PWD", Command::Pwd),
            (
                "CWD my dir/with spaces",
                Command::Cwd("my dir/with spaces".into()),
            ),
            ("TYPE I", Command::Type(TransferType::Image)),
            ("TYPE a", Command::Type(TransferType::Ascii)),
            ("LIST", Command::List(None)),
            ("LIST -la", Command::List(None)),
            ("LIST -la docs", Command::List(Some("docs".into()))),
            ("RETR 报告.txt\r\n", Command::Retr("报告.txt".into())),
            ("STOR a b.txt", Command::Stor("a b.txt".into())),
            ("QUIT", Command::Quit),
            ("XMKD new", Command::Mkd("new".into())),
            ("APPE log.txt", Command::Appe("log.txt".into())),
            ("STOU", Command::Stou(None)),
            ("STOU report", Command::Stou(Some("report".into()))),
            ("abor", Command::Abor),
            ("STAT", Command::Stat),
            ("STAT -l docs", Command::StatPath("docs".into())),
            ("REST 1024", Command::Rest(1024)),
            ("MDTM a.txt", Command::Mdtm("a.txt".into())),
            ("RNFR old name", Command::Rnfr("old name".into())),
            (
                "PORT 127,0,0,1,4,1",
                Command::Port("127.0.0.1:1025".parse().unwrap()),
            ),
            (
                "EPRT |2|::1|6275|",
                Command::Port("[::1]:6275".parse().unwrap()),
            ),
            (
                "EPRT |1|10.0.0.1|21|",
                Command::Port("10.0.0.1:21".parse().unwrap()),
            ),
        ];
        for (line, expected) in table {
            assert_eq!(parse(line), expected, "{line:?}");
        }
    }

    #[test]
    fn mfmt_takes_a_utc_time_val_and_a_path_with_spaces() {
        let at = |secs| std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(
            parse("MFMT 20200102030405 my file.txt"),
            Command::Mfmt {
                modified: at(1_577_934_245),
                path: "my file.txt".into()
            }
        );
        assert_eq!(
            parse("mfmt 19700101000001.123 a"),
            Command::Mfmt {
                modified: at(1),
                path: "a".into()
            }
        );
    }

    #[test]
    fn site_chmod_takes_octal_permission_bits_and_a_path() {
        assert_eq!(
            parse("SITE CHMOD 640 a b.txt"),
            Command::Chmod {
                mode: 0o640,
                path: "a b.txt".to_owned()
            }
        );
        assert_eq!(
            parse("site chmod 0755 dir"),
            Command::Chmod {
                mode: 0o755,
                path: "dir".to_owned()
            }
        );
        for bad in [
            "SITE CHMOD",
            "SITE CHMOD 644",
            "SITE CHMOD 644 ",
            "SITE CHMOD 4755 setuid",
            "SITE CHMOD 1777 sticky",
            "SITE CHMOD 8 x",
            "SITE CHMOD +7 x",
            "SITE CHMOD u+x x",
            "SITE CHMOD 00644 x",
        ] {
            assert_eq!(parse(bad), Command::BadArgument("SITE CHMOD"), "{bad}");
        }
        assert_eq!(parse("SITE HELP"), Command::SiteHelp);
        assert_eq!(parse("SITE UMASK 022"), Command::UnknownSite);
        assert_eq!(parse("SITE"), Command::UnknownSite);
    }

    #[test]
    fn missing_arguments_and_unknown_commands_are_values_not_panics() {
        assert_eq!(parse("RETR"), Command::BadArgument("RETR"));
        assert_eq!(parse("RETR "), Command::BadArgument("RETR"));
        assert_eq!(parse("TYPE X"), Command::BadArgument("TYPE"));
        assert_eq!(parse("REST -1"), Command::BadArgument("REST"));
        for bad in [
            "PORT 1,2,3",
            "PORT 256,0,0,1,0,1",
            "PORT a,b,c,d,e,f",
            "EPRT |1|::1|21|",
            "EPRT |3|x|1|",
            "EPRT",
            "MFMT 20200102030405",
            "MFMT 20200102030405 ",
            "MFMT 2020010203040 a",
            "MFMT 20201302030405 a",
            "MFMT 2020010203040x a",
            "MFMT",
        ] {
            assert!(matches!(parse(bad), Command::BadArgument(_)), "{bad}");
        }
        assert_eq!(
            parse("REST 99999999999999999999999"),
            Command::BadArgument("REST")
        );
        assert_eq!(parse("FOO"), Command::Unknown("FOO".into()));
        assert_eq!(parse("TYPE E"), Command::UnsupportedArgument("TYPE"));
        assert_eq!(parse("TYPE L 7"), Command::UnsupportedArgument("TYPE"));
        assert_eq!(parse("TYPE Q"), Command::BadArgument("TYPE"));
        assert_eq!(parse("EPSV"), Command::Epsv(None));
        assert_eq!(parse("EPSV 2"), Command::Epsv(Some(2)));
        assert_eq!(parse("epsv all"), Command::EpsvAll);
        assert_eq!(parse("EPSV x"), Command::BadArgument("EPSV"));
        assert_eq!(parse(""), Command::Unknown(String::new()));
        assert!(matches!(parse("\u{0}\u{1}garbage"), Command::Unknown(_)));
    }

    #[test]
    fn telnet_commands_are_dropped_from_a_line() {
        assert_eq!(without_telnet(b"\xff\xf4\xff\xf2ABOR\r\n"), b"ABOR\r\n");
        assert_eq!(without_telnet(b"a\xff\xffb"), b"a\xffb");
        assert_eq!(without_telnet(b"x\xff"), b"x");
    }

    #[test]
    fn the_password_is_kept_secret() {
        let Command::Pass(secret) = parse("PASS hunter2") else {
            panic!()
        };
        assert_eq!(secret.expose(), "hunter2");
        assert!(!format!("{:?}", parse("PASS hunter2")).contains("hunter2"));
    }
}
