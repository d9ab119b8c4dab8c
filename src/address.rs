//! `HOST:PORT` as the command line takes it, for every client command.
//!
//! One parser, so `sockit connect`, `sockit exec` and the listen addresses
//! agree: `host:port`, `[IPv6]:port`, a bare IPv6 address (`::1`), and, where
//! the command has a default port, `host` or `[IPv6]` alone.

use std::fmt;

/// What an address could not be parsed as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?}: the port must be a number from 0 to 65535")]
    BadPort(String),
    #[error("{0:?}: no port (expected HOST:PORT or [IPv6]:PORT)")]
    NoPort(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?}: an IPv6 address in brackets lacks its closing `]`")]
    Unclosed(String),
}

/// A host (name or IP, without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `text`; `default_port` is used when it names no port (with
    /// `None` a port is required).
    ///
    /// # Errors
    /// A missing or non-numeric port, an empty host, an unclosed `[`.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<HostPort, AddressError> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| AddressError::Unclosed(text.to_owned()))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(AddressError::BadPort(text.to_owned())),
                },
            }
        } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
            (text, None)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(AddressError::NoHost(text.to_owned()));
        }
        let port = match (port, default_port) {
            (Some(port), _) => port
                .parse()
                .map_err(|_| AddressError::BadPort(text.to_owned()))?,
            (None, Some(default)) => default,
            (None, None) => return Err(AddressError::NoPort(text.to_owned())),
        };
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    /// `host:port`, or `[v6]:port` for an IPv6 address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn every_form_parses_with_a_default_port() {
        let parse = |text| HostPort::parse(text, Some(9));
        assert_eq!(parse("127.0.0.1:2000"), Ok(hp("127.0.0.1", 2000)));
        assert_eq!(parse("127.0.0.1"), Ok(hp("127.0.0.1", 9)));
        assert_eq!(parse("localhost"), Ok(hp("localhost", 9)));
        assert_eq!(parse("::1"), Ok(hp("::1", 9)));
        assert_eq!(parse("[::1]"), Ok(hp("::1", 9)));
        assert_eq!(parse("[::1]:7"), Ok(hp("::1", 7)));
        assert_eq!(parse("[fe80::1%lo]:7"), Ok(hp("fe80::1%lo", 7)));
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let parse = |text| HostPort::parse(text, None);
        assert!(matches!(parse("h:x"), Err(AddressError::BadPort(_))));
        assert!(matches!(parse("h:70000"), Err(AddressError::BadPort(_))));
        assert!(matches!(parse("[::1]x"), Err(AddressError::BadPort(_))));
        assert!(matches!(parse("[::1"), Err(AddressError::Unclosed(_))));
        assert!(matches!(parse(":80"), Err(AddressError::NoHost(_))));
        assert!(matches!(parse("[]:80"), Err(AddressError::NoHost(_))));
        assert!(matches!(parse("localhost"), Err(AddressError::NoPort(_))));
        assert!(matches!(parse("[::1]"), Err(AddressError::NoPort(_))));
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(hp("::1", 7).to_string(), "[::1]:7");
        assert_eq!(hp("example.org", 7).to_string(), "example.org:7");
    }
}
