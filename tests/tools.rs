//! `sockit ports`, `resolve` and `probe` against loopback only: servers the
//! tests start on ephemeral ports, closed ports, and names from /etc/hosts.
//! The `--json` outputs are checked against the shapes in docs/tools.md.

mod support;

use std::net::{TcpListener, UdpSocket};

use serde_json::Value;
use support::run_sockit;

fn json_of(args: &[&str]) -> Value {
    let output = run_sockit(args, b"");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{args:?}: not JSON: {err}"))
}

/// A JSON field's name and the check its value must pass.
type Field<'a> = (&'a str, fn(&Value) -> bool);

/// Checks that `value` is an object with exactly `fields`, each passing its check.
fn shape(value: &Value, fields: &[Field]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected, "fields of {value}");
    for (key, check) in fields {
        assert!(check(&value[*key]), "field {key} of {value}");
    }
}

fn is_port(v: &Value) -> bool {
    v.as_u64().is_some_and(|p| p <= 65_535)
}
fn is_string(v: &Value) -> bool {
    v.is_string()
}
fn is_string_or_null(v: &Value) -> bool {
    v.is_string() || v.is_null()
}
fn is_protocol(v: &Value) -> bool {
    v == "tcp" || v == "udp"
}
fn is_port_entry(v: &Value) -> bool {
    shape(
        v,
        &[
            ("port", is_port),
            ("protocol", is_protocol),
            ("name", is_string),
            ("aliases", |a| {
                a.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }),
            ("description", is_string),
            ("source", |s| s == "course" || s == "system"),
        ],
    );
    true
}

#[test]
fn ports_finds_by_number_range_and_name() {
    let entries = json_of(&["ports", "3306", "--json"]);
    let entries = entries.as_array().unwrap();
    assert!(entries.iter().all(is_port_entry));
    assert!(
        entries
            .iter()
            .any(|e| e["name"] == "mysql" && e["source"] == "course")
    );

    let range = json_of(&["ports", "20-23", "--json"]);
    let ports: Vec<u64> = range
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["port"].as_u64().unwrap())
        .collect();
    assert!(
        ports.iter().all(|p| (20..=23).contains(p)) && ports.contains(&22),
        "{ports:?}"
    );

    let udp = json_of(&["ports", "53/udp", "--json"]);
    assert!(!udp.as_array().unwrap().is_empty());
    assert!(
        udp.as_array()
            .unwrap()
            .iter()
            .all(|e| e["port"] == 53 && e["protocol"] == "udp")
    );

    let named = json_of(&["ports", "MongoDB", "--json"]);
    assert_eq!(named[0]["port"], 27017);

    let output = run_sockit(&["ports", "no-such-service-anywhere"], b"");
    assert_eq!(output.status.code(), Some(1));
    let output = run_sockit(&["ports", "9-1"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("runs backwards"));
}

#[test]
fn the_table_lists_every_port_of_the_course_notes() {
    let all = json_of(&["ports", "--json"]);
    let all = all.as_array().unwrap();
    for (port, protocol) in [
        (20, "tcp"),
        (21, "tcp"),
        (22, "tcp"),
        (23, "tcp"),
        (25, "tcp"),
        (53, "udp"),
        (69, "udp"),
        (80, "tcp"),
        (110, "tcp"),
        (443, "tcp"),
        (1080, "tcp"),
        (1433, "tcp"),
        (1434, "udp"),
        (1521, "tcp"),
        (3306, "tcp"),
        (3389, "tcp"),
        (5000, "tcp"),
        (5601, "tcp"),
        (6379, "tcp"),
        (8000, "tcp"),
        (8080, "tcp"),
        (27017, "tcp"),
    ] {
        assert!(
            all.iter()
                .any(|e| e["port"] == port && e["protocol"] == protocol && e["source"] == "course"),
            "{port}/{protocol} missing"
        );
    }
}

fn check_resolution(value: &Value) {
    shape(
        value,
        &[
            ("host_name", is_string),
            ("query", is_string),
            ("kind", |k| {
                ["name", "service", "address", "number", "packed"]
                    .iter()
                    .any(|x| k == x)
            }),
            ("canonical_name", is_string_or_null),
            ("addresses", |a| {
                a.as_array().is_some_and(|a| {
                    a.iter().all(|x| {
                        x.as_str()
                            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok())
                    })
                })
            }),
            ("lookup_error", is_string_or_null),
            ("reverse_name", is_string_or_null),
            ("services", |s| {
                s.as_array().is_some_and(|s| s.iter().all(is_port_entry))
            }),
            ("conversions", |c| {
                c.is_null() || {
                    shape(
                        c,
                        &[
                            ("address", is_string),
                            ("integer", is_string),
                            ("hex", is_string),
                            ("packed", is_string),
                            ("bytes", |b| {
                                b.as_array().is_some_and(|b| {
                                    b.iter().all(|x| x.as_u64().is_some_and(|n| n < 256))
                                })
                            }),
                        ],
                    );
                    true
                }
            }),
        ],
    );
}

#[test]
fn resolve_looks_up_localhost_both_ways() {
    let forward = json_of(&["resolve", "localhost", "--json"]);
    check_resolution(&forward);
    assert_eq!(forward["kind"], "name");
    let addresses: Vec<&str> = forward["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        addresses.contains(&"127.0.0.1") || addresses.contains(&"::1"),
        "{addresses:?}"
    );

    let reverse = json_of(&["resolve", "127.0.0.1", "--json"]);
    check_resolution(&reverse);
    assert_eq!(reverse["kind"], "address");
    assert_eq!(reverse["reverse_name"], "localhost");
    assert_eq!(reverse["conversions"]["integer"], "2130706433");
    assert_eq!(reverse["conversions"]["hex"], "0x7f000001");
    assert_eq!(reverse["conversions"]["packed"], r"b'\x7f\x00\x00\x01'");
    assert_eq!(reverse["host_name"], resolve_host_name());
}

fn resolve_host_name() -> String {
    let output = std::process::Command::new("hostname").output();
    match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_owned(),
    }
}

#[test]
fn resolve_converts_numbers_and_ipv6() {
    let number = json_of(&["resolve", "0x7f000001", "--json"]);
    check_resolution(&number);
    assert_eq!(number["kind"], "number");
    assert_eq!(number["addresses"][0], "127.0.0.1");

    let packed = json_of(&["resolve", r"b'\x7f\x00\x00\x01'", "--json"]);
    check_resolution(&packed);
    assert_eq!(packed["kind"], "packed");
    assert_eq!(packed["addresses"][0], "127.0.0.1");

    // `-n`: no reverse lookup (hosts files often do not name ::1, and then
    // the lookup asks a DNS server: tests talk to loopback only).
    let six = json_of(&["resolve", "-n", "::1", "--json"]);
    check_resolution(&six);
    assert_eq!(six["reverse_name"], Value::Null);
    assert_eq!(six["conversions"]["integer"], "1");
    assert_eq!(six["conversions"]["bytes"].as_array().unwrap().len(), 16);
    let text = run_sockit(&["resolve", "-n", "127.0.0.1"], b"");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("reverse name:   (not looked up: -n)"),
        "{text:?}"
    );
}

#[test]
fn resolve_turns_a_service_name_into_its_ports() {
    let ssh = json_of(&["resolve", "ssh", "--json"]);
    check_resolution(&ssh);
    assert_eq!(ssh["kind"], "service");
    assert!(
        ssh["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["port"] == 22)
    );
}

fn check_probe(value: &Value) {
    shape(
        value,
        &[
            ("host", is_string),
            ("address", is_string),
            ("protocol", is_protocol),
            ("timeout_ms", Value::is_u64),
            ("results", |r| {
                r.as_array().is_some_and(|r| {
                    r.iter().all(|x| {
                        shape(
                            x,
                            &[
                                ("port", is_port),
                                ("state", |s| {
                                    ["open", "closed", "timeout", "no-reply", "error"]
                                        .iter()
                                        .any(|k| s == k)
                                }),
                                ("service", is_string_or_null),
                                ("error", is_string_or_null),
                                ("elapsed_ms", Value::is_f64),
                            ],
                        );
                        true
                    })
                })
            }),
        ],
    );
}

#[test]
fn probe_tells_open_from_closed_tcp_ports() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_port = {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        closed.local_addr().unwrap().port()
    };
    let ports = format!("{open_port},{closed_port}");
    let report = json_of(&["probe", "127.0.0.1", &ports, "--json", "--timeout", "2s"]);
    check_probe(&report);
    assert_eq!(report["address"], "127.0.0.1");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["port"], open_port);
    assert_eq!(results[0]["state"], "open");
    assert_eq!(results[1]["state"], "closed");
    assert!(results[1]["error"].as_str().unwrap().contains("refused"));
}

#[test]
fn probe_scans_a_range_with_bounded_concurrency_and_names_services() {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    ports.sort_unstable();
    let spec = format!("{}-{}", ports[0], ports[2]);
    let report = json_of(&[
        "probe",
        "localhost",
        &spec,
        "--json",
        "--concurrency",
        "64",
        "--timeout",
        "2s",
    ]);
    check_probe(&report);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), (ports[2] - ports[0] + 1) as usize);
    let open: Vec<u64> = results
        .iter()
        .filter(|r| r["state"] == "open")
        .map(|r| r["port"].as_u64().unwrap())
        .collect();
    for port in &ports {
        assert!(
            open.contains(&u64::from(*port)),
            "{port} not found open in {open:?}"
        );
    }
    let ssh = json_of(&["probe", "127.0.0.1", "22", "--json", "--timeout", "2s"]);
    assert_eq!(ssh["results"][0]["service"], "ssh");
}

#[test]
fn probe_over_udp_tells_open_closed_and_silent() {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let answering = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((n, peer)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], peer);
        }
    });
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let closed_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ports = format!("{echo_port},{silent_port},{closed_port}");
    let report = json_of(&[
        "probe",
        "127.0.0.1",
        &ports,
        "--udp",
        "--json",
        "--timeout",
        "500ms",
    ]);
    check_probe(&report);
    assert_eq!(report["protocol"], "udp");
    let states: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["open", "no-reply", "closed"]);
    answering.join().unwrap();
}

#[test]
fn probe_refuses_bad_port_lists() {
    let output = run_sockit(&["probe", "127.0.0.1", "80-70"], b"");
    assert_eq!(output.status.code(), Some(1));
    let output = run_sockit(&["probe", "127.0.0.1", "22", "--concurrency", "0"], b"");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn the_port_table_into_a_closed_pipe_ends_quietly() {
    // Like `sockit ports | head -1`: the reader leaves after one line.
    let mut child = std::process::Command::new(support::BIN)
        .arg("ports")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(&first, b"port");
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
