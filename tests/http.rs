//! The browser console over HTTP: routes through the router in-process, and
//! through a real `sockit serve` process with curl as the client.

mod support;

use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sockit::http::{AppState, router};
use sockit::shutdown::Shutdown;
use support::{ServeProcess, run_sockit};
use tower::ServiceExt;

fn app() -> axum::Router {
    router(AppState::new(&[], Shutdown::new(Duration::from_secs(1))))
}

async fn get(path: &str) -> (StatusCode, String, String) {
    let response = app()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn hello_is_the_course_page_as_plain_text() {
    let (status, content_type, body) = get("/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(body, "Hello, World");
}

#[tokio::test]
async fn healthz_answers_ok() {
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_use_the_prometheus_text_format() {
    let (status, content_type, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for family in [
        "sockit_connections_open",
        "sockit_connections_total",
        "sockit_received_bytes_total",
        "sockit_sent_bytes_total",
        "sockit_errors_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{body}"
        );
    }
}

#[tokio::test]
async fn the_dashboard_and_its_assets_are_served_with_a_strict_policy() {
    let response = app()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    for asset in ["/assets/console.css", "/assets/dashboard.js"] {
        assert_eq!(get(asset).await.0, StatusCode::OK, "{asset}");
    }
    assert_eq!(get("/assets/../Cargo.toml").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get("/assets/nothing.js").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    assert_eq!(get("/no/such/page").await.0, StatusCode::NOT_FOUND);
}

/// Runs curl with `args` and returns its stdout; fails loudly without curl.
fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test installs it)");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const ECHO_AND_HTTP: &str = "[echo]\nport = 0\nudp = false\n\n[http]\nport = 0\n";

fn counter(status: &serde_json::Value, service: &str, field: &str) -> u64 {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap_or_else(|| panic!("{service} missing from {status}"))["counters"][field]
        .as_u64()
        .unwrap()
}

#[test]
fn a_real_server_answers_curl_and_counts_echo_connections() {
    let server = ServeProcess::with_config(ECHO_AND_HTTP, 2);
    let base = format!("http://{}", server.address("http", "tcp"));
    assert_eq!(curl(&[&format!("{base}/hello")]), "Hello, World");
    assert_eq!(curl(&[&format!("{base}/healthz")]), "ok");

    let status = |base: &str| -> serde_json::Value {
        serde_json::from_str(&curl(&[&format!("{base}/api/status")])).unwrap()
    };
    let before = status(&base);
    let echo = server.address("echo", "tcp");
    assert_eq!(
        before["services"][0]["endpoints"][0]["address"],
        echo.as_str()
    );
    let output = run_sockit(&["connect", "tcp", &echo], b"count me\n");
    assert_eq!(output.stdout, b"COUNT ME\n");
    // The close is counted when the server's session ends, which may be just
    // after the client returns: wait for it (bounded), no fixed sleep.
    let deadline = std::time::Instant::now() + support::PATIENCE;
    loop {
        let after = status(&base);
        if counter(&after, "echo", "connections_total")
            > counter(&before, "echo", "connections_total")
            && counter(&after, "echo", "bytes_in") >= counter(&before, "echo", "bytes_in") + 9
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "echo counters never moved: {after}"
        );
        std::thread::yield_now();
    }
    let metrics = curl(&[&format!("{base}/metrics")]);
    assert!(
        metrics.contains("sockit_connections_total{service=\"echo\"} "),
        "{metrics}"
    );
}

#[test]
fn the_event_stream_sends_status_snapshots() {
    let server = ServeProcess::with_config(ECHO_AND_HTTP, 2);
    let base = format!("http://{}", server.address("http", "tcp"));
    // curl stops after --max-time; the first snapshot is sent at once.
    let output = Command::new("curl")
        .args(["--silent", "--no-buffer", "--max-time", "3"])
        .arg(format!("{base}/api/events"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    let data_line = text
        .lines()
        .skip_while(|l| *l != "event: status")
        .nth(1)
        .unwrap_or_else(|| panic!("no status event in {text:?}"));
    let status: serde_json::Value =
        serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
    assert!(
        status["services"].as_array().unwrap().len() >= 2,
        "{status}"
    );
}

#[test]
fn with_a_certificate_the_console_speaks_https_and_http2() {
    let data = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = data.path().join("cert.pem");
    let key_file = data.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let config = format!(
        "[echo]\nenabled = false\n\n[http]\nport = 0\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert_file.to_str().unwrap(),
        key_file.to_str().unwrap()
    );
    let server = ServeProcess::with_config(&config, 1);
    let addr = server.address("http", "https");
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}/hello");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let cacert = cert_file.to_str().unwrap();
    assert_eq!(
        curl(&["--cacert", cacert, "--resolve", &resolve, &url]),
        "Hello, World"
    );
    let version = curl(&[
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        "--http2",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_version}",
        &url,
    ]);
    assert_eq!(version, "2");
    // Plain HTTP to the TLS port gets no page.
    let plain = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "10",
            &format!("http://{addr}/hello"),
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("Hello, World"));
}

#[test]
fn an_unusable_certificate_stops_the_start_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("sockit.toml");
    std::fs::write(
        &config,
        "[echo]\nenabled = false\n[http]\nport = 0\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n",
    )
    .unwrap();
    let output = run_sockit(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "sockit: http: TLS: cannot read the certificate chain /nonexistent/cert.pem"
        ),
        "{stderr}"
    );
}

#[test]
fn sigterm_ends_open_event_streams_instead_of_waiting_out_the_grace_period() {
    // A grace period far longer than the wait below: only a clean end of the
    // event stream lets the process exit in time.
    let config = "[serve]\ngrace_period = \"10m\"\n[echo]\nenabled = false\n[http]\nport = 0\n";
    let mut server = ServeProcess::with_config(config, 1);
    let url = format!("http://{}/api/events", server.address("http", "tcp"));
    let mut stream = Command::new("curl")
        .args(["--silent", "--no-buffer", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl is installed");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stream.stdout.take().unwrap()));
    assert!(
        lines.any(|line| line.unwrap() == "event: status"),
        "the stream never sent a status"
    );
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(support::PATIENCE / 3).code(),
        Some(0),
        "{}",
        server.stderr()
    );
    assert!(
        stream.wait().unwrap().success(),
        "curl saw the stream end cleanly"
    );
}
