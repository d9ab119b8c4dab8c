//! The console in a real browser: headless Chromium, driven by Playwright
//! (`tests/browser/*.mjs`), against a real `sockit serve`.
//!
//! Needs node, `npm ci` in `tests/browser` and Debian's chromium; scripts/test
//! installs them. With `SOCKIT_SCREENSHOT_DIR` set, the screenshots land there
//! (scripts/screenshots uses it to refresh docs/img).

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::ServeProcess;

fn browser_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(name)
}

fn run_node(args: &[String]) {
    let modules = browser_script("node_modules/playwright-core");
    assert!(
        modules.exists(),
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    let output = Command::new("node")
        .args(args)
        .output()
        .expect("node is installed (scripts/test installs it)");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn screenshot_path(name: &str, scratch: &std::path::Path) -> String {
    let dir = std::env::var_os("SOCKIT_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.to_owned());
    dir.join(name).to_str().unwrap().to_owned()
}

#[test]
fn the_dashboard_counters_move_when_an_echo_client_connects() {
    let server = ServeProcess::with_config(
        "[echo]\nport = 0\nudp = false\n\n[http]\nport = 0\n\n[bot]\nenabled = false\n[ftp]\nenabled = false\n",
        2,
    );
    let echo = server.address("echo", "tcp");
    let (echo_host, echo_port) = echo.rsplit_once(':').unwrap();
    run_node(&[
        browser_script("dashboard.mjs").to_str().unwrap().to_owned(),
        format!("http://{}", server.address("http", "tcp")),
        echo_host.to_owned(),
        echo_port.to_owned(),
        "admin".to_owned(),
        server.admin_password(),
        screenshot_path("dashboard.png", server.data_dir()),
    ]);
}

#[test]
fn a_file_uploaded_through_the_page_downloads_byte_identical_and_deletes() {
    let server = ServeProcess::with_config(
        "[echo]\nenabled = false\n\n[http]\nport = 0\n\n[bot]\nenabled = false\n[ftp]\nenabled = false\n",
        1,
    );
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("report 2026 (final).bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    run_node(&[
        browser_script("files.mjs").to_str().unwrap().to_owned(),
        format!("http://{}", server.address("http", "tcp")),
        "admin".to_owned(),
        server.admin_password(),
        file.to_str().unwrap().to_owned(),
        screenshot_path("files.png", scratch.path()),
    ]);
    let stored = server
        .data_dir()
        .join("homes/admin/report 2026 (final).bin");
    assert!(!stored.exists(), "the page's delete removed the file");
}
