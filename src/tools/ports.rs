//! Well-known ports: the table from the course's notes, merged with the
//! system's services database (`/etc/services`) when there is one.
//!
//! A query is a port number (`22`), a range (`8000-8100`) or a name, matched
//! case-insensitively against service names, aliases and descriptions; a
//! `/tcp` or `/udp` suffix keeps one protocol (`53/udp`).

use serde::Serialize;

/// Transport protocol of a port entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The course's table of common ports.
    Course,
    /// The system's services database.
    System,
}

/// One port of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortEntry {
    pub port: u16,
    pub protocol: Protocol,
    pub name: String,
    pub aliases: Vec<String>,
    pub description: String,
    pub source: Source,
}

use Protocol::{Tcp, Udp};

/// The course's table: port, protocol, name, description.
const COURSE: &[(u16, Protocol, &str, &str)] = &[
    (20, Tcp, "ftp-data", "FTP data connection"),
    (21, Tcp, "ftp", "FTP control connection"),
    (
        22,
        Tcp,
        "ssh",
        "SSH remote login, SCP file transfer, port forwarding",
    ),
    (23, Tcp, "telnet", "Telnet remote login (unencrypted)"),
    (25, Tcp, "smtp", "SMTP e-mail delivery"),
    (53, Udp, "dns", "DNS name resolution"),
    (
        53,
        Tcp,
        "dns",
        "DNS name resolution (large answers, zone transfers)",
    ),
    (69, Udp, "tftp", "TFTP trivial file transfer"),
    (
        80,
        Tcp,
        "http",
        "HTTP web server; also common for HTTP proxies",
    ),
    (110, Tcp, "pop3", "POP3 e-mail retrieval"),
    (443, Tcp, "https", "HTTPS, HTTP over TLS"),
    (443, Udp, "https", "HTTPS over QUIC (HTTP/3)"),
    (1080, Tcp, "socks", "SOCKS proxy"),
    (
        1158,
        Tcp,
        "oracle-emctl",
        "Oracle Enterprise Manager console",
    ),
    (1433, Tcp, "ms-sql-s", "Microsoft SQL Server"),
    (1433, Udp, "ms-sql-s", "Microsoft SQL Server"),
    (1434, Tcp, "ms-sql-m", "Microsoft SQL Server monitor"),
    (
        1434,
        Udp,
        "ms-sql-m",
        "Microsoft SQL Server monitor (browser service)",
    ),
    (1521, Tcp, "oracle", "Oracle database listener"),
    (2100, Tcp, "oracle-xdb-ftp", "Oracle XML DB FTP service"),
    (3128, Tcp, "http-proxy", "HTTP proxy (Squid)"),
    (3306, Tcp, "mysql", "MySQL database"),
    (3389, Tcp, "rdp", "Windows Remote Desktop (RDP)"),
    (5000, Tcp, "flask", "Flask development server"),
    (5601, Tcp, "kibana", "Kibana web interface"),
    (6379, Tcp, "redis", "Redis"),
    (8000, Tcp, "django", "Django development server"),
    (
        8080,
        Tcp,
        "tomcat",
        "Tomcat, JBoss, Oracle XML DB HTTP; common HTTP proxy port",
    ),
    (
        8081,
        Tcp,
        "http-alt",
        "HTTP proxy; Symantec AV/Filter for MSE",
    ),
    (9080, Tcp, "websphere", "IBM WebSphere application server"),
    (
        9090,
        Tcp,
        "websphere-admin",
        "IBM WebSphere administration console",
    ),
    (9098, Tcp, "http-proxy-alt", "HTTP proxy"),
    (27017, Tcp, "mongodb", "MongoDB"),
];

/// The course's table as entries.
pub fn course_table() -> Vec<PortEntry> {
    COURSE
        .iter()
        .map(|(port, protocol, name, description)| PortEntry {
            port: *port,
            protocol: *protocol,
            name: (*name).to_owned(),
            aliases: Vec::new(),
            description: (*description).to_owned(),
            source: Source::Course,
        })
        .collect()
}

/// Parses the services database format: `name port/proto [aliases] [# comment]`.
/// Lines that do not fit are skipped.
pub fn parse_services(text: &str) -> Vec<PortEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let (fields, comment) = match line.split_once('#') {
            Some((fields, comment)) => (fields, comment.trim()),
            None => (line, ""),
        };
        let mut words = fields.split_whitespace();
        let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, protocol)) = port_proto.split_once('/') else {
            continue;
        };
        let (Ok(port), protocol) = (port.parse::<u16>(), protocol) else {
            continue;
        };
        let protocol = match protocol {
            "tcp" => Tcp,
            "udp" => Udp,
            _ => continue,
        };
        entries.push(PortEntry {
            port,
            protocol,
            name: name.to_owned(),
            aliases: words.map(str::to_owned).collect(),
            description: comment.to_owned(),
            source: Source::System,
        });
    }
    entries
}

/// The course's table merged with `/etc/services`, if readable, sorted by
/// port, protocol and source. A system entry that repeats a course entry's
/// port, protocol and name is dropped.
pub fn table() -> Vec<PortEntry> {
    let system = std::fs::read_to_string("/etc/services")
        .map(|text| parse_services(&text))
        .unwrap_or_default();
    merge(course_table(), system)
}

fn merge(course: Vec<PortEntry>, system: Vec<PortEntry>) -> Vec<PortEntry> {
    let mut all = course;
    for entry in system {
        let duplicate = all.iter().any(|known| {
            known.port == entry.port && known.protocol == entry.protocol && known.name == entry.name
        });
        if !duplicate {
            all.push(entry);
        }
    }
    all.sort_by_key(|entry| (entry.port, entry.protocol, entry.source));
    all
}

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Port(u16),
    Range(u16, u16),
    Name(String),
}

/// Reads a query: a number, `low-high`, or anything else as a name.
///
/// # Errors
/// A range whose ends are not ports or are reversed.
pub fn parse_query(text: &str) -> Result<Query, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(Query::Port(port));
    }
    if let Some((low, high)) = text.split_once('-')
        && !low.is_empty()
        && low.bytes().all(|b| b.is_ascii_digit())
        && high.bytes().all(|b| b.is_ascii_digit())
    {
        let parse = |end: &str| {
            end.parse::<u16>()
                .map_err(|_| format!("{end:?} is not a port (0-65535)"))
        };
        let (low, high) = (parse(low)?, parse(high)?);
        if low > high {
            return Err(format!("the range {low}-{high} runs backwards"));
        }
        return Ok(Query::Range(low, high));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        return Err(format!("{text:?} is not a port (0-65535)"));
    }
    Ok(Query::Name(text.to_lowercase()))
}

/// Splits a `/tcp` or `/udp` suffix off a query: `53/udp` → (`53`, udp).
pub fn split_protocol(text: &str) -> (&str, Option<Protocol>) {
    match text.rsplit_once('/') {
        Some((rest, protocol)) if protocol.eq_ignore_ascii_case("tcp") => (rest, Some(Tcp)),
        Some((rest, protocol)) if protocol.eq_ignore_ascii_case("udp") => (rest, Some(Udp)),
        _ => (text, None),
    }
}

/// The entries matching `query`.
pub fn lookup<'a>(table: &'a [PortEntry], query: &Query) -> Vec<&'a PortEntry> {
    table
        .iter()
        .filter(|entry| match query {
            Query::Port(port) => entry.port == *port,
            Query::Range(low, high) => (*low..=*high).contains(&entry.port),
            Query::Name(name) => {
                entry.name.to_lowercase().contains(name.as_str())
                    || entry
                        .aliases
                        .iter()
                        .any(|a| a.to_lowercase().contains(name.as_str()))
                    || entry.description.to_lowercase().contains(name.as_str())
            }
        })
        .collect()
}

/// The best-known service name on `port` over `protocol`: the course's first,
/// then the system's.
pub fn service_name(table: &[PortEntry], port: u16, protocol: Protocol) -> Option<&str> {
    table
        .iter()
        .find(|e| e.port == port && e.protocol == protocol)
        .map(|e| e.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_course_table_has_the_notes_ports() {
        let table = course_table();
        for (port, name) in [
            (21, "ftp"),
            (22, "ssh"),
            (3306, "mysql"),
            (6379, "redis"),
            (27017, "mongodb"),
        ] {
            assert_eq!(service_name(&table, port, Tcp), Some(name));
        }
        assert_eq!(service_name(&table, 69, Udp), Some("tftp"));
    }

    #[test]
    fn services_lines_parse_and_junk_is_skipped() {
        let text = "# comment\nssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol\nhttp 80/tcp www # WorldWideWeb HTTP\nbroken line\nx 99999/tcp\ny 7/sctp\n";
        let entries = parse_services(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].aliases, vec!["www".to_owned()]);
        assert_eq!(entries[0].description, "SSH Remote Login Protocol");
    }

    #[test]
    fn merging_drops_repeats_but_keeps_new_names() {
        let system = parse_services("ssh 22/tcp\nmy-app 22/tcp\n");
        let merged = merge(course_table(), system);
        let on_22: Vec<&str> = lookup(&merged, &Query::Port(22))
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(on_22, vec!["ssh", "my-app"]);
    }

    #[test]
    fn a_protocol_suffix_filters() {
        assert_eq!(split_protocol("53/udp"), ("53", Some(Udp)));
        assert_eq!(split_protocol("dns/TCP"), ("dns", Some(Tcp)));
        assert_eq!(split_protocol("8000-8100"), ("8000-8100", None));
    }

    #[test]
    fn queries_parse() {
        assert_eq!(parse_query("22"), Ok(Query::Port(22)));
        assert_eq!(parse_query("8000-8100"), Ok(Query::Range(8000, 8100)));
        assert_eq!(parse_query("Redis"), Ok(Query::Name("redis".to_owned())));
        assert!(parse_query("70000").is_err());
        assert!(parse_query("9-1").is_err());
        let table = course_table();
        assert_eq!(lookup(&table, &Query::Range(20, 23)).len(), 4);
        assert_eq!(lookup(&table, &Query::Name("sql".to_owned())).len(), 5);
    }
}
