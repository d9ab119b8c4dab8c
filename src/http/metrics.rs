//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Per service: connections open and total, bytes received and sent, sessions
//! that ended in an error. Then every labelled counter services keep in
//! [`crate::stats`] (FTP transfers, exec commands by exit status,
//! authentication failures, UDP datagrams, ...).

use std::fmt::Write;

use axum::http::header;
use axum::response::IntoResponse;

use crate::stats::{self, ServiceSnapshot};

/// The content type Prometheus expects for the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render())
}

type Field = fn(&ServiceSnapshot) -> u64;

const SERVICE_METRICS: [(&str, &str, &str, Field); 5] = [
    (
        "sockit_connections_open",
        "gauge",
        "Connections open now.",
        |s| s.connections_open,
    ),
    (
        "sockit_connections_total",
        "counter",
        "Connections accepted.",
        |s| s.connections_total,
    ),
    (
        "sockit_received_bytes_total",
        "counter",
        "Bytes received from clients.",
        |s| s.bytes_in,
    ),
    (
        "sockit_sent_bytes_total",
        "counter",
        "Bytes sent to clients.",
        |s| s.bytes_out,
    ),
    (
        "sockit_errors_total",
        "counter",
        "Sessions that ended in an error.",
        |s| s.errors,
    ),
];

/// The whole exposition text.
pub fn render() -> String {
    let services = stats::services();
    let mut out = String::new();
    for (name, kind, help, field) in SERVICE_METRICS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (service, snapshot) in &services {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\"}} {}",
                escape(service),
                field(snapshot)
            );
        }
    }
    let mut last_name = "";
    for (key, value) in stats::counters() {
        if key.name != last_name {
            let _ = writeln!(out, "# TYPE {} counter", key.name);
            last_name = key.name;
        }
        let labels: Vec<String> = key
            .labels
            .iter()
            .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
            .collect();
        let _ = writeln!(out, "{}{{{}}} {value}", key.name, labels.join(","));
    }
    out
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn counters_render_with_their_labels() {
        stats::counter(
            "sockit_metrics_test_total",
            &[("status", "0"), ("user", "x\"y")],
        )
        .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        let text = render();
        assert!(
            text.contains("# TYPE sockit_metrics_test_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("sockit_metrics_test_total{status=\"0\",user=\"x\\\"y\"} 3\n"),
            "{text}"
        );
    }
}
