//! `sockit ports`, `sockit resolve` and `sockit probe`: the course's socket
//! utilities, as tables for people or JSON for scripts (docs/tools.md).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sockit::tools::ports::{self, PortEntry, Protocol};
use sockit::tools::probe::{self, PortState};
use sockit::tools::resolve;

/// Look up well-known ports: the course's table merged with /etc/services.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit ports                 the whole table\n  sockit ports 3306\n  sockit ports 8000-8100\n  sockit ports redis --json"
)]
pub struct PortsArgs {
    /// A port (22), a range (8000-8100) or a name to search for (ssh, sql);
    /// add /tcp or /udp for one protocol (53/udp).
    query: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Look up a host name or address; convert addresses between notations.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit resolve localhost\n  sockit resolve 127.0.0.1        reverse lookup and conversions\n  sockit resolve -n 2130706433    an address written as a number, not looked up\n  sockit resolve http --json      a service name: its ports"
)]
pub struct ResolveArgs {
    /// A host name, an IPv4 or IPv6 address, an address as a number
    /// (3232235777, 0xc0a80101), or a service name.
    query: String,
    /// Do not look an address up by name (no reverse lookup).
    #[arg(short = 'n', long)]
    numeric: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Check which ports of a host accept connections (connect_ex style).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit probe 127.0.0.1 22,80,8000-8100\n  sockit probe localhost 53,123 --udp --timeout 500ms\n  sockit probe ::1 1-1024 --concurrency 200 --json"
)]
pub struct ProbeArgs {
    /// Host name or address.
    host: String,
    /// Ports and ranges, comma-separated: 22,80,8000-8100.
    ports: String,
    /// Probe UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    /// How long to wait for each port.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Ports probed at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn ports(args: PortsArgs) -> anyhow::Result<ExitCode> {
    let table = ports::table();
    let found: Vec<&PortEntry> = match &args.query {
        Some(query) => {
            let (query, protocol) = ports::split_protocol(query);
            let query = ports::parse_query(query).map_err(anyhow::Error::msg)?;
            let mut found = ports::lookup(&table, &query);
            found.retain(|entry| protocol.is_none_or(|p| entry.protocol == p));
            found
        }
        None => table.iter().collect(),
    };
    if args.json {
        super::print_json(&found)?;
    } else if !found.is_empty() {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{:<7} {:<5} {:<20} {:<7} description",
            "port", "proto", "name", "source"
        )?;
        for entry in &found {
            let source = match entry.source {
                ports::Source::Course => "course",
                ports::Source::System => "system",
            };
            let mut name = entry.name.clone();
            if !entry.aliases.is_empty() {
                name = format!("{name} ({})", entry.aliases.join(", "));
            }
            writeln!(
                out,
                "{:<7} {:<5} {:<20} {source:<7} {}",
                entry.port, entry.protocol, name, entry.description
            )?;
        }
    }
    if found.is_empty() {
        if !args.json {
            eprintln!(
                "sockit: no port matches {:?}",
                args.query.unwrap_or_default()
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resolve(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    let found = resolve::resolve(&args.query, args.numeric)?;
    if args.json {
        super::print_json(&found)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "this host:      {}", found.host_name)?;
    if let Some(name) = &found.canonical_name {
        writeln!(out, "canonical name: {name}")?;
    }
    for address in &found.addresses {
        let family = if address.is_ipv4() { "A   " } else { "AAAA" };
        writeln!(out, "{family}            {address}")?;
    }
    if let Some(reason) = &found.lookup_error {
        writeln!(out, "host lookup:    {reason}")?;
    }
    if let Some(conversions) = &found.conversions {
        let unnamed = if args.numeric {
            "(not looked up: -n)"
        } else {
            "(none)"
        };
        writeln!(
            out,
            "reverse name:   {}",
            found.reverse_name.as_deref().unwrap_or(unnamed)
        )?;
        writeln!(out, "as integer:     {}", conversions.integer)?;
        writeln!(out, "as hex:         {}", conversions.hex)?;
        writeln!(out, "packed (inet_aton/inet_pton): {}", conversions.packed)?;
    }
    for service in &found.services {
        writeln!(
            out,
            "service:        {} {}/{}",
            service.name, service.port, service.protocol
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON document `sockit probe --json` prints.
#[derive(serde::Serialize)]
struct ProbeReport<'a> {
    host: &'a str,
    address: String,
    protocol: Protocol,
    timeout_ms: u128,
    results: Vec<probe::PortResult>,
}

pub fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let ports = probe::parse_ports(&args.ports).map_err(anyhow::Error::msg)?;
    let protocol = if args.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (address, results) = runtime.block_on(async {
        let address = tokio::net::lookup_host((args.host.as_str(), 0))
            .await
            .with_context(|| format!("cannot resolve {}", args.host))?
            .next()
            .map(|a| a.ip());
        let Some(address) = address else {
            bail!("{} has no address", args.host);
        };
        let results = probe::probe(
            address,
            &ports,
            protocol,
            args.timeout,
            args.concurrency.into(),
        )
        .await;
        Ok((address, results))
    })?;
    if args.json {
        super::print_json(&ProbeReport {
            host: &args.host,
            address: address.to_string(),
            protocol,
            timeout_ms: args.timeout.as_millis(),
            results,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} ({address}), {protocol}", args.host)?;
    writeln!(out, "{:<7} {:<9} {:<16} detail", "port", "state", "service")?;
    let open = results
        .iter()
        .filter(|r| r.state == PortState::Open)
        .count();
    for result in &results {
        writeln!(
            out,
            "{:<7} {:<9} {:<16} {}",
            result.port,
            result.state,
            result.service.as_deref().unwrap_or("-"),
            result.error.as_deref().unwrap_or("")
        )?;
    }
    writeln!(out, "{open} of {} ports open", results.len())?;
    Ok(ExitCode::SUCCESS)
}
