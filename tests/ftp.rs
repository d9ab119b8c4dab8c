//! The FTP server with real clients: Python's ftplib and curl, over a real
//! `sockit serve ftp`. Users are added with `sockit user` while it runs.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{ServeProcess, run_sockit};

fn start() -> (ServeProcess, String) {
    let server = ServeProcess::serve(&["ftp", "--addr", "127.0.0.1:0"], 1);
    let addr = server.address("ftp", "tcp");
    (server, addr)
}

fn add_user(server: &ServeProcess, name: &str, password: &str, extra: &[&str]) {
    add_user_in(server.data_dir(), name, password, extra);
}

fn add_user_in(data_dir: &Path, name: &str, password: &str, extra: &[&str]) {
    let mut args = vec![
        "user",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "add",
        name,
        "--password-stdin",
    ];
    args.extend_from_slice(extra);
    let output = run_sockit(&args, format!("{password}\n").as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs curl and fails the test, with curl's message, if curl failed.
fn curl_ok(args: &[&str]) -> std::process::Output {
    let output = curl(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test installs it)")
}

/// Runs the Python peer `tests/peers/SCRIPT` against `addr` as USER and
/// returns the JSON object it prints.
fn python_peer(script: &str, addr: &str, user: &str, password: &str) -> Value {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let output = Command::new("python3")
        .arg(format!(
            "{}/tests/peers/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([host, port, user, password])
        .output()
        .expect("python3 is installed");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn python_ftplib_uses_every_core_command() {
    let (server, addr) = start();
    add_user(&server, "alice", "s3cret", &[]);
    let out = python_peer("ftplib_session.py", &addr, "alice", "s3cret");
    assert!(out["welcome"].as_str().unwrap().starts_with("220"));
    assert!(out["login"].as_str().unwrap().starts_with("230"));
    assert_eq!(out["syst"], "215 UNIX Type: L8");
    assert_eq!(out["pwd"], "/docs");
    assert!(out["stor"].as_str().unwrap().starts_with("226"));
    assert_eq!(out["size"], 1_048_576);
    assert_eq!(out["identical"], true);
    let mdtm = out["mdtm"].as_str().unwrap();
    assert!(mdtm.starts_with("213 ") && mdtm.len() == 18, "{mdtm}");
    assert_eq!(
        out["rest_identical"], true,
        "REST 1000 then RETR sends the rest"
    );
    assert_eq!(
        out["active_identical"], true,
        "active mode (PORT) transfers"
    );
    assert_eq!(
        out["bounce"], "500",
        "PORT towards another address is refused"
    );
    assert_eq!(
        out["low_port"], "500",
        "PORT towards a privileged port is refused"
    );
    assert!(
        out["nlst"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "报告.bin")
    );
    assert!(
        out["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().ends_with(" 报告.bin"))
    );
    assert_eq!(out["ascii_lines"], serde_json::json!(["one", "two"]));
    assert_eq!(out["refused"], serde_json::json!(["550", "550", "550"]));
    assert!(out.get("escaped").is_none(), "{out}");
    assert_eq!(out["cwd_above_root"], "550");
    assert!(
        out["long_line"].as_str().unwrap().starts_with("500"),
        "{out}"
    );
    assert!(
        out["after_long_line"].as_str().unwrap().starts_with("257"),
        "the session stays in step"
    );
    assert!(out["dele"].as_str().unwrap().starts_with("250"));
    // What ftplib stored is on disk in alice's home, byte for byte.
    let stored = server.data_dir().join("homes/alice/docs/报告.bin");
    assert_eq!(std::fs::metadata(stored).unwrap().len(), 1_048_576);
}

#[test]
fn curl_uploads_lists_downloads_and_manages_files() {
    let (server, addr) = start();
    add_user(&server, "bob", "pw", &[]);
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("data.bin");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let base = format!("ftp://bob:pw@{addr}");
    assert!(
        curl(&["-T", file.to_str().unwrap(), &format!("{base}/data.bin")])
            .status
            .success()
    );
    let listing = curl(&["--list-only", &format!("{base}/")]);
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["data.bin"]
    );
    let back = scratch.path().join("back.bin");
    assert!(
        curl(&["-o", back.to_str().unwrap(), &format!("{base}/data.bin")])
            .status
            .success()
    );
    assert!(std::fs::read(&back).unwrap() == content);
    assert!(
        curl(&["-Q", "MKD sub", "-Q", "DELE data.bin", &format!("{base}/")])
            .status
            .success()
    );
    let listing = curl(&["--list-only", &format!("{base}/")]);
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["sub"]
    );
}

#[test]
fn a_wrong_password_and_a_read_only_user_are_refused() {
    let (server, addr) = start();
    add_user(&server, "reader", "pw", &["--read-only"]);
    std::fs::write(server.data_dir().join("homes/reader/keep.txt"), b"precious").unwrap();
    let wrong = curl(&["--list-only", &format!("ftp://reader:nope@{addr}/")]);
    assert!(!wrong.status.success());
    server.wait_for_stderr("login failed: service=ftp peer=127.0.0.1 user=\"reader\"");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("530"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let base = format!("ftp://reader:pw@{addr}");
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("x.txt");
    std::fs::write(&file, b"new").unwrap();
    assert!(
        !curl(&["-T", file.to_str().unwrap(), &format!("{base}/keep.txt")])
            .status
            .success()
    );
    assert!(
        !curl(&["-Q", "DELE keep.txt", &format!("{base}/")])
            .status
            .success()
    );
    assert!(!curl(&["-Q", "MKD d", &format!("{base}/")]).status.success());
    assert_eq!(
        std::fs::read(server.data_dir().join("homes/reader/keep.txt")).unwrap(),
        b"precious"
    );
    assert!(
        curl(&[&format!("{base}/keep.txt")]).stdout == b"precious",
        "reading is allowed"
    );
}

#[test]
fn an_upload_over_quota_gets_552_and_the_old_file_stays() {
    let (server, addr) = start();
    add_user(&server, "small", "pw", &["--quota", "100K"]);
    let home = server.data_dir().join("homes/small");
    std::fs::write(home.join("report.txt"), b"the old report").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 200 * 1024]).unwrap();
    let output = curl(&[
        "-T",
        big.to_str().unwrap(),
        &format!("ftp://small:pw@{addr}/report.txt"),
    ]);
    assert!(!output.status.success());
    // curl reports a 552 reply as "Exceeded storage allocation".
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Exceeded storage allocation"), "{stderr}");
    assert_eq!(
        std::fs::read(home.join("report.txt")).unwrap(),
        b"the old report"
    );
    let names: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["report.txt".to_owned()],
        "no partial upload left behind"
    );

    // The running server takes a new quota at the next login.
    let set_quota = |quota: &str| {
        let data_dir = server.data_dir().to_str().unwrap();
        let args = [
            "user",
            "--data-dir",
            data_dir,
            "set",
            "small",
            "--quota",
            quota,
        ];
        let output = run_sockit(&args, b"");
        assert!(output.status.success(), "{output:?}");
    };
    set_quota("1M");
    let url = format!("ftp://small:pw@{addr}/report.txt");
    curl_ok(&["-T", big.to_str().unwrap(), &url]);
    assert!(std::fs::read(home.join("report.txt")).unwrap() == vec![1u8; 200 * 1024]);
    set_quota("100K");
    let output = curl(&["-T", big.to_str().unwrap(), &url]);
    assert!(!output.status.success());
}

#[test]
fn curl_resumes_a_download_and_renames() {
    let (server, addr) = start();
    add_user(&server, "carol", "pw", &[]);
    let home = server.data_dir().join("homes/carol");
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(home.join("big.bin"), &content).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let partial = scratch.path().join("big.bin");
    std::fs::write(&partial, &content[..400_000]).unwrap();
    let base = format!("ftp://carol:pw@{addr}");
    curl_ok(&[
        "-C",
        "-",
        "-o",
        partial.to_str().unwrap(),
        &format!("{base}/big.bin"),
    ]);
    assert!(
        std::fs::read(&partial).unwrap() == content,
        "the resumed download is byte-identical"
    );

    curl_ok(&[
        "-Q",
        "RNFR big.bin",
        "-Q",
        "RNTO moved.bin",
        "--list-only",
        &format!("{base}/"),
    ]);
    assert!(home.join("moved.bin").exists() && !home.join("big.bin").exists());
    let onto_existing = curl(&[
        "-Q",
        "RNFR moved.bin",
        "-Q",
        "RNTO ../escape.bin",
        &format!("{base}/"),
    ]);
    assert!(!onto_existing.status.success());
    assert!(home.join("moved.bin").exists());

    // Renaming never replaces: the check and the rename are one step.
    std::fs::write(home.join("other.bin"), b"other").unwrap();
    let mut control = Control::login(&addr, "carol", "pw");
    assert!(control.command("RNFR moved.bin").starts_with("350"));
    let reply = control.command("RNTO other.bin");
    assert!(reply.starts_with("553"), "{reply}");
    assert_eq!(std::fs::read(home.join("other.bin")).unwrap(), b"other");
    assert!(std::fs::read(home.join("moved.bin")).unwrap() == content);
}

#[test]
fn one_address_gets_at_most_max_per_ip_sessions() {
    use std::io::Read;
    let config = "[echo]\nenabled = false\n[http]\nenabled = false\n[bot]\nenabled = false\n[ftp]\nenabled = true\nport = 0\nmax_per_ip = 2\n";
    let server = ServeProcess::with_config(config, 1);
    let addr = server.address("ftp", "tcp");
    let greeting = |stream: &std::net::TcpStream| {
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line
    };
    let first = std::net::TcpStream::connect(&addr).unwrap();
    let second = std::net::TcpStream::connect(&addr).unwrap();
    assert!(greeting(&first).starts_with("220"));
    assert!(greeting(&second).starts_with("220"));
    let third = std::net::TcpStream::connect(&addr).unwrap();
    assert!(
        greeting(&third).starts_with("421"),
        "a third session from one address is refused"
    );
    // Once one leaves, there is room again.
    let mut leaving = first;
    leaving.write_all(b"QUIT\r\n").unwrap();
    let mut rest = String::new();
    leaving.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("221"), "{rest}");
    let fourth = std::net::TcpStream::connect(&addr).unwrap();
    assert!(greeting(&fourth).starts_with("220"));
    drop(second);
}

#[test]
fn ftplib_aborts_transfers_and_resumes_uploads() {
    let (server, addr) = start();
    add_user(&server, "dora", "pw", &[]);
    let out = python_peer("ftplib_resume.py", &addr, "dora", "pw");
    assert_eq!(out["abor_idle"], "225", "{out}");
    assert_eq!(out["abor_retr"], serde_json::json!(["426", "226"]), "{out}");
    assert_eq!(out["noop_after_abor"], "200");
    assert_eq!(out["abor_stor"], serde_json::json!(["426", "226"]), "{out}");
    assert_eq!(out["old_kept"], true, "an aborted STOR keeps the old file");
    assert_eq!(out["kept_in_range"], true, "{out}");
    assert_eq!(
        out["listed_once"],
        serde_json::json!(["doc.bin"]),
        "the partial upload is not listed"
    );
    assert_eq!(out["rest_beyond"], "554", "{out}");
    assert_eq!(out["rest_stor_identical"], true);
    assert_eq!(out["size_after"], 8 << 20);
    assert_eq!(out["new_file_absent"], "550", "{out}");
    assert_eq!(out["appe_identical"], true);
    assert_eq!(out["appe_appends"], true);
    let stou = out["stou_reply"].as_str().unwrap();
    assert!(
        stou.starts_with("226") && stou.contains("doc.bin.1"),
        "{stou}"
    );
    assert_eq!(
        out["stou_names"],
        serde_json::json!(["doc.bin", "doc.bin.1"])
    );
    assert_eq!(out["stou_content"], true);
    assert_eq!(out["dele_partial"], "250");
    assert_eq!(out["gone"], true);
    assert_eq!(out["quit"], "221");
    let home = server.data_dir().join("homes/dora");
    let hidden: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "no partial upload left: {hidden:?}");
}

/// A bare control connection, to ask the server questions while a real
/// client works.
struct Control(BufReader<TcpStream>);

impl Control {
    fn login(addr: &str, user: &str, password: &str) -> Control {
        let mut control = Control(BufReader::new(TcpStream::connect(addr).unwrap()));
        assert!(control.reply().starts_with("220"));
        assert!(control.command(&format!("USER {user}")).starts_with("331"));
        assert!(
            control
                .command(&format!("PASS {password}"))
                .starts_with("230")
        );
        control
    }

    /// The last line of the next reply.
    fn reply(&mut self) -> String {
        self.reply_lines().pop().unwrap_or_default()
    }

    /// Every line of the next reply.
    fn reply_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.0.read_line(&mut line).unwrap() > 0, "control closed");
            lines.push(line.trim_end().to_owned());
            let bytes = line.as_bytes();
            if bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ' {
                return lines;
            }
        }
    }

    fn command(&mut self, line: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// Asks `SIZE name` until the answer satisfies `ready`, within a limit.
    fn wait_for_size(&mut self, name: &str, ready: impl Fn(u64) -> bool) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let reply = self.command(&format!("SIZE {name}"));
            if let Some(size) = reply.strip_prefix("213 ").and_then(|s| s.parse().ok())
                && ready(size)
            {
                return size;
            }
        }
        panic!("SIZE {name} never became ready");
    }
}

/// 16 MiB that no old content resembles.
fn new_content() -> Vec<u8> {
    (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Starts curl uploading `file` to `url` slowly, so it can be cut short.
fn slow_upload(file: &Path, url: &str) -> std::process::Child {
    Command::new("curl")
        .args(["--silent", "--limit-rate", "2M", "-T"])
        .arg(file)
        .arg(url)
        .spawn()
        .expect("curl is installed (scripts/test installs it)")
}

#[test]
fn a_client_killed_mid_upload_leaves_the_old_file_and_curl_resumes() {
    let (server, addr) = start();
    add_user(&server, "erin", "pw", &[]);
    let home = server.data_dir().join("homes/erin");
    std::fs::write(home.join("data.bin"), b"old content").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("data.bin");
    let content = new_content();
    std::fs::write(&file, &content).unwrap();
    let url = format!("ftp://erin:pw@{addr}/data.bin");

    let mut uploading = slow_upload(&file, &url);
    let mut control = Control::login(&addr, "erin", "pw");
    control.wait_for_size("data.bin", |size| size > 64 * 1024);
    uploading.kill().unwrap();
    uploading.wait().unwrap();
    let logged = server.wait_for_stderr("path=/data.bin");
    assert!(logged.contains("aborted"), "{logged}");
    assert_eq!(
        std::fs::read(home.join("data.bin")).unwrap(),
        b"old content"
    );
    let kept = control.wait_for_size("data.bin", |_| true);
    assert!(kept > 64 * 1024 && kept < content.len() as u64, "{kept}");

    resume_upload_with_curl(&file, &url, &home.join("data.bin"));
}

#[test]
fn the_server_killed_mid_upload_leaves_the_old_file_and_curl_resumes() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let serve = || {
        ServeProcess::start(
            &["serve", "--data-dir", dir, "ftp", "--addr", "127.0.0.1:0"],
            1,
        )
    };
    add_user_in(data.path(), "fred", "pw", &[]);
    let home = data.path().join("homes/fred");
    std::fs::write(home.join("data.bin"), b"old content").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("data.bin");
    let content = new_content();
    std::fs::write(&file, &content).unwrap();

    let mut server = serve();
    let addr = server.address("ftp", "tcp");
    let mut uploading = slow_upload(&file, &format!("ftp://fred:pw@{addr}/data.bin"));
    Control::login(&addr, "fred", "pw").wait_for_size("data.bin", |size| size > 64 * 1024);
    server.signal(libc::SIGKILL);
    server.wait_exit(std::time::Duration::from_secs(10));
    assert!(
        !uploading.wait().unwrap().success(),
        "curl saw the server go"
    );
    assert_eq!(
        std::fs::read(home.join("data.bin")).unwrap(),
        b"old content"
    );

    let server = serve();
    let addr = server.address("ftp", "tcp");
    let kept = Control::login(&addr, "fred", "pw").wait_for_size("data.bin", |_| true);
    assert!(kept > 64 * 1024 && kept < content.len() as u64, "{kept}");
    resume_upload_with_curl(
        &file,
        &format!("ftp://fred:pw@{addr}/data.bin"),
        &home.join("data.bin"),
    );
}

/// `curl -C -` uploads `file` to `url` again (it asks SIZE, skips that much
/// of the file and sends APPE); the server's `stored` must then equal it.
fn resume_upload_with_curl(file: &Path, url: &str, stored: &Path) {
    curl_ok(&["-C", "-", "-T", file.to_str().unwrap(), url]);
    assert!(
        std::fs::read(stored).unwrap() == std::fs::read(file).unwrap(),
        "byte-identical"
    );
}

#[test]
fn paths_and_names_that_would_leave_the_home_are_refused() {
    let (server, addr) = start();
    add_user(&server, "gail", "pw", &[]);
    let home = server.data_dir().join("homes/gail");
    std::fs::write(home.join("mine.txt"), b"mine").unwrap();
    std::os::unix::fs::symlink("/etc", home.join("etc")).unwrap();
    let mut control = Control::login(&addr, "gail", "pw");
    for escaping in [
        "SIZE ../../etc/passwd",
        "SIZE /etc/passwd",
        "SIZE /../etc/passwd",
        "SIZE etc/passwd",
        "CWD etc",
        "CWD ..",
        "MKD etc/sockit-was-here",
        "DELE ../gail/mine.txt/../../../etc/passwd",
        "RNFR etc/passwd",
        "MDTM %2e%2e/%2e%2e/etc/passwd",
    ] {
        let reply = control.command(escaping);
        assert!(reply.starts_with("550"), "{escaping}: {reply}");
    }
    assert_eq!(control.command("PWD"), "257 \"/\" is the current directory");
    // A NUL, or a CR sent as RFC 2640's CR NUL, is never part of a name.
    for bad in ["SIZE mine.txt\0../x", "MKD a\r\0b", "STOR a\0b"] {
        let reply = control.command(bad);
        assert!(reply.starts_with("553"), "{bad:?}: {reply}");
    }
    assert!(!Path::new("/etc/sockit-was-here").exists());
    assert_eq!(std::fs::read(home.join("mine.txt")).unwrap(), b"mine");
    let mut names: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["etc", "mine.txt"], "nothing was created");
}

#[test]
fn a_named_pipe_in_a_home_is_refused_and_holds_nothing_up() {
    let (server, addr) = start();
    add_user(&server, "pia", "pw", &[]);
    let home = server.data_dir().join("homes/pia");
    let made = Command::new("mkfifo")
        .arg(home.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let mut control = Control::login(&addr, "pia", "pw");
    // Opening a pipe for reading waits for a writer: a server that did
    // would never answer these.
    control
        .0
        .get_ref()
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    for refused in ["RETR pipe", "MFMT 20200101000000 pipe"] {
        let reply = control.command(refused);
        assert!(reply.starts_with("550"), "{refused}: {reply}");
    }
    assert!(control.command("NOOP").starts_with("200"));
}

#[test]
fn a_read_only_user_changes_nothing() {
    let (server, addr) = start();
    add_user(&server, "ro", "pw", &["--read-only"]);
    let home = server.data_dir().join("homes/ro");
    std::fs::write(home.join("keep.txt"), b"precious").unwrap();
    std::fs::create_dir(home.join("dir")).unwrap();
    let mut control = Control::login(&addr, "ro", "pw");
    for refused in [
        "STOR keep.txt",
        "STOR new.txt",
        "APPE keep.txt",
        "STOU keep.txt",
        "DELE keep.txt",
        "RNFR keep.txt",
        "RNTO other.txt",
        "MKD made",
        "RMD dir",
        "SITE CHMOD 600 keep.txt",
    ] {
        let reply = control.command(refused);
        assert!(reply.starts_with("550"), "{refused}: {reply}");
    }
    assert!(control.command("SIZE keep.txt").starts_with("213 8"));
    assert_eq!(std::fs::read(home.join("keep.txt")).unwrap(), b"precious");
    assert!(home.join("dir").is_dir() && !home.join("made").exists());
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 2);
}

#[test]
fn site_chmod_sets_permission_bits_inside_the_home_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let (server, addr) = start();
    add_user(&server, "cam", "pw", &[]);
    let home = server.data_dir().join("homes/cam");
    std::fs::write(home.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(home.join("shared")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("theirs.txt"), b"not cam's").unwrap();
    std::fs::set_permissions(
        outside.path().join("theirs.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), home.join("out")).unwrap();

    // lftp's chmod sends SITE CHMOD.
    lftp(&addr, "cam,pw", "chmod 600 notes.txt; chmod 750 shared");
    assert_eq!(mode(&home.join("notes.txt")), 0o600);
    assert_eq!(mode(&home.join("shared")), 0o750);
    // Listings show the bits, as clients read them back.
    let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
    ftp.login("cam", "pw").unwrap();
    let listed = ftp.list(None).unwrap();
    for (name, shown) in [("notes.txt", "-rw------- "), ("shared", "drwxr-x--- ")] {
        let line = listed.iter().find(|line| line.ends_with(name)).unwrap();
        assert!(line.starts_with(shown), "{line}");
    }
    let facts = ftp.mlsd(None).unwrap();
    let notes = facts
        .iter()
        .find(|line| line.ends_with(" notes.txt"))
        .unwrap();
    assert!(notes.contains(";UNIX.mode=600;"), "{notes}");
    ftp.quit().unwrap();

    let mut control = Control::login(&addr, "cam", "pw");
    assert!(control.command("SITE HELP").starts_with("214"));
    for (command, code) in [
        // No set-user-ID, set-group-ID or sticky bit: a server running as
        // root would otherwise let users make set-user-ID root programs.
        ("SITE CHMOD 4755 notes.txt", "501"),
        ("SITE CHMOD 1777 shared", "501"),
        ("SITE CHMOD rw notes.txt", "501"),
        ("SITE CHMOD 640 missing.txt", "550"),
        ("SITE CHMOD 600 out/theirs.txt", "550"),
        ("SITE CHMOD 600 ../../../../../../etc/passwd", "550"),
    ] {
        let reply = control.command(command);
        assert!(reply.starts_with(code), "{command}: {reply}");
    }
    assert_eq!(mode(&home.join("notes.txt")), 0o600);
    assert_eq!(mode(&home.join("shared")), 0o750);
    assert_eq!(mode(&outside.path().join("theirs.txt")), 0o644);
}

#[test]
fn a_file_limit_counts_files_and_directories_but_lets_a_file_be_replaced() {
    let (server, addr) = start();
    add_user(&server, "few", "pw", &["--max-files", "3"]);
    let home = server.data_dir().join("homes/few");
    let scratch = tempfile::tempdir().unwrap();
    let (old, new) = (scratch.path().join("old"), scratch.path().join("new"));
    std::fs::write(&old, b"old").unwrap();
    std::fs::write(&new, b"new").unwrap();
    let put = |local: &Path, name: &str| {
        let url = format!("ftp://few:pw@{addr}/{name}");
        curl(&["-T", local.to_str().unwrap(), &url])
    };
    let mut control = Control::login(&addr, "few", "pw");
    assert!(control.command("MKD dir").starts_with("257"));
    assert!(put(&old, "one.txt").status.success());
    assert!(put(&old, "dir/two.txt").status.success());

    // Three entries, the limit: no fourth, file or directory.
    let refused = put(&old, "three.txt");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("upload: 552"), "{stderr}");
    let reply = control.command("MKD more");
    assert!(
        reply.starts_with("550") && reply.contains("file limit"),
        "{reply}"
    );

    // Replacing a file at the limit works and leaves no partial file.
    assert!(put(&new, "one.txt").status.success());
    assert_eq!(std::fs::read(home.join("one.txt")).unwrap(), b"new");
    let mut entries = 0;
    sockit::vfs::for_each_entry(&home, |_, _| entries += 1).unwrap();
    assert_eq!(entries, 3);

    control.0.get_mut().write_all(b"STAT\r\n").unwrap();
    let status = control.reply_lines();
    assert!(
        status.contains(&" Limit: 3 of 3 files and directories".to_owned()),
        "{status:?}"
    );

    // A delete makes room for one more.
    assert!(control.command("DELE dir/two.txt").starts_with("250"));
    assert!(control.command("MKD more").starts_with("257"));
    assert!(control.command("MKD again").starts_with("550"));
}

#[test]
fn user_set_reaches_the_running_server_at_the_next_login() {
    let (server, addr) = start();
    add_user(&server, "mover", "pw", &[]);
    let moved = tempfile::tempdir().unwrap();
    std::fs::write(moved.path().join("waiting.txt"), b"here").unwrap();
    let set = |args: &[&str]| {
        let data_dir = server.data_dir().to_str().unwrap();
        let mut all = vec!["user", "--data-dir", data_dir, "set", "mover"];
        all.extend_from_slice(args);
        let output = run_sockit(&all, b"");
        assert!(output.status.success(), "{output:?}");
    };
    set(&["--home", moved.path().to_str().unwrap(), "--read-only"]);
    let listing = curl_ok(&["--list-only", &format!("ftp://mover:pw@{addr}/")]);
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "waiting.txt"
    );
    let mut control = Control::login(&addr, "mover", "pw");
    assert!(control.command("MKD made").starts_with("550"));
    set(&["--read-write"]);
    let mut control = Control::login(&addr, "mover", "pw");
    assert!(control.command("MKD made").starts_with("257"));
    assert!(moved.path().join("made").is_dir());
}

#[test]
fn two_sessions_of_one_user_cannot_pass_the_quota_together() {
    let (server, addr) = start();
    add_user(&server, "quo", "pw", &["--quota", "1M"]);
    let home = server.data_dir().join("homes/quo");
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("part.bin");
    std::fs::write(&file, vec![9u8; 700 * 1024]).unwrap();
    // Slow enough that both uploads are running at the same time.
    let children: Vec<_> = ["one.bin", "two.bin"]
        .iter()
        .map(|name| {
            Command::new("curl")
                .args(["--silent", "--show-error", "--limit-rate", "1M", "-T"])
                .arg(&file)
                .arg(format!("ftp://quo:pw@{addr}/{name}"))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("curl is installed")
        })
        .collect();
    let mut succeeded = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            succeeded += 1;
        } else {
            // Which one loses depends on how the two interleave (both may,
            // when each has charged part of its file when the quota runs
            // out), but only ever to the quota: curl's words for a 552.
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("Exceeded storage allocation"), "{stderr}");
        }
    }
    assert!(succeeded <= 1, "both uploads together do not fit");
    let files: Vec<(String, u64)> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        files.len(),
        succeeded,
        "no partial upload is left: {files:?}"
    );
    assert!(files.iter().all(|(_, len)| *len == 700 * 1024), "{files:?}");
}

#[test]
fn repeated_wrong_passwords_are_delayed_then_locked_out() {
    let (server, addr) = start();
    add_user(&server, "hal", "right", &[]);
    // Ten wrong passwords at once, on ten connections (the most one
    // address may hold), so the growing delays overlap.
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut control = Control(BufReader::new(TcpStream::connect(&addr).unwrap()));
                assert!(control.reply().starts_with("220"));
                control.command("USER hal");
                let started = std::time::Instant::now();
                let reply = control.command("PASS wrong");
                (reply, started.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = attempts.into_iter().map(|a| a.join().unwrap()).collect();
    assert!(
        results.iter().all(|(reply, _)| reply.starts_with("530")),
        "{results:?}"
    );
    let slowest = results.iter().map(|(_, took)| *took).max().unwrap();
    assert!(
        slowest >= std::time::Duration::from_millis(500),
        "later failures are answered only after a delay: {results:?}"
    );
    // Now even the right password is refused for a while.
    let mut control = Control(BufReader::new(TcpStream::connect(&addr).unwrap()));
    assert!(control.reply().starts_with("220"));
    control.command("USER hal");
    let locked = control.command("PASS right");
    assert!(locked.starts_with("421"), "{locked}");
}

/// Writes 500 files in nested directories (some empty, some of 100 KiB,
/// names with spaces and UTF-8) and returns their relative paths.
fn write_tree(root: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    for a in 0..5 {
        for b in 0..10 {
            let dir = root.join(format!("dir {a}")).join(format!("子{b}"));
            std::fs::create_dir_all(&dir).unwrap();
            for c in 0..10 {
                let n = (a * 100 + b * 10 + c) as usize;
                let len = match n % 50 {
                    0 => 0,
                    1 => 100 * 1024,
                    _ => n * 13 % 4096,
                };
                let bytes: Vec<u8> = (0..len).map(|i| ((i * 31 + n) % 251) as u8).collect();
                let name = format!("file {c}.bin");
                std::fs::write(dir.join(&name), bytes).unwrap();
                paths.push(format!("dir {a}/子{b}/{name}"));
            }
        }
    }
    paths
}

/// Runs lftp's `script` as `user` on the plain FTP server at `addr`, which
/// must succeed.
fn lftp(addr: &str, user: &str, script: &str) {
    lftp_url(
        &format!("ftp://{addr}"),
        Some(user),
        &format!("set ftp:ssl-allow no; set xfer:clobber on; {script}"),
    )
}

/// Runs lftp's `script` against `url` (logged in as `user`, if given),
/// stopping at the first failing command, with one retry and 20 s timeouts;
/// fails the test, with lftp's message, if lftp failed.
fn lftp_url(url: &str, user: Option<&str>, script: &str) {
    let settings = "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20";
    let mut lftp = Command::new("lftp");
    if let Some(user) = user {
        lftp.args(["-u", user]);
    }
    let output = lftp
        .args(["-e", &format!("{settings}; {script}; quit")])
        .arg(url)
        .output()
        .expect("lftp is installed (scripts/test installs it)");
    assert!(
        output.status.success(),
        "lftp {script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn lftp_mirrors_a_tree_up_and_back_byte_identical_in_both_modes() {
    let (server, addr) = start();
    add_user(&server, "lena", "pw", &[]);
    let home = server.data_dir().join("homes/lena");
    let local = tempfile::tempdir().unwrap();
    let paths = write_tree(local.path());
    assert_eq!(paths.len(), 500);
    for (passive, remote) in [("on", "up-passive"), ("off", "up-active")] {
        lftp(
            &addr,
            "lena,pw",
            &format!(
                "set ftp:passive-mode {passive}; mirror -R {} {remote}",
                local.path().display()
            ),
        );
        let back = tempfile::tempdir().unwrap();
        lftp(
            &addr,
            "lena,pw",
            &format!(
                "set ftp:passive-mode {passive}; mirror {remote} {}",
                back.path().join("t").display()
            ),
        );
        for path in &paths {
            let original = std::fs::read(local.path().join(path)).unwrap();
            assert!(
                std::fs::read(home.join(remote).join(path)).unwrap() == original,
                "{remote}/{path} on the server"
            );
            assert!(
                std::fs::read(back.path().join("t").join(path)).unwrap() == original,
                "{path} mirrored back, passive {passive}"
            );
        }
    }
    let log = server.stderr();
    assert!(log.contains("command=EPSV") || log.contains("command=PASV"));
    assert!(
        log.contains("command=EPRT") || log.contains("command=PORT"),
        "passive mode off made lftp use active mode"
    );
}

/// One session of the `suppaftp` crate against a server at `addr`: every
/// common call, LIST and MLSD parsed by the crate's own parsers.
fn suppaftp_session(addr: &str, mode: suppaftp::Mode) {
    use suppaftp::list::File;
    let mut ftp = suppaftp::FtpStream::connect(addr).unwrap();
    ftp.set_mode(mode);
    ftp.login("ivy", "pw").unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .unwrap();
    ftp.mkdir("reports").unwrap();
    ftp.cwd("reports").unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/reports");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    ftp.put_file("年报.bin", &mut &payload[..]).unwrap();
    assert_eq!(ftp.size("年报.bin").unwrap(), payload.len());
    assert!(ftp.retr_as_buffer("年报.bin").unwrap().into_inner() == payload);
    ftp.append_file("年报.bin", &mut &b"more"[..]).unwrap();
    assert_eq!(ftp.size("年报.bin").unwrap(), payload.len() + 4);
    ftp.mkdir("sub").unwrap();

    let listed: Vec<File> = ftp
        .list(None)
        .unwrap()
        .iter()
        .map(|line| File::from_posix_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    let file = listed.iter().find(|f| f.name() == "年报.bin").unwrap();
    assert!(file.is_file() && file.size() == payload.len() + 4);
    assert!(listed.iter().any(|f| f.name() == "sub" && f.is_directory()));
    let facts: Vec<File> = ftp
        .mlsd(None)
        .unwrap()
        .iter()
        .map(|line| File::from_mlsx_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert!(
        facts
            .iter()
            .any(|f| f.name() == "年报.bin" && f.size() == payload.len() + 4)
    );

    ftp.rename("年报.bin", "old.bin").unwrap();
    ftp.rm("old.bin").unwrap();
    ftp.rmdir("sub").unwrap();
    assert!(ftp.nlst(None).unwrap().is_empty());
    ftp.cdup().unwrap();
    ftp.rmdir("reports").unwrap();
    ftp.quit().unwrap();
}

#[test]
fn a_rust_ftp_client_works_over_ipv4_and_ipv6() {
    for (bind, mode) in [
        ("127.0.0.1:0", suppaftp::Mode::Passive),
        ("127.0.0.1:0", suppaftp::Mode::Active),
        ("[::1]:0", suppaftp::Mode::ExtendedPassive),
    ] {
        let server = ServeProcess::serve(&["ftp", "--addr", bind], 1);
        add_user(&server, "ivy", "pw", &[]);
        let addr = server.address("ftp", "tcp");
        suppaftp_session(&addr, mode);
    }
}

#[test]
fn list_and_nlst_take_a_file_or_wildcards_and_stay_in_the_home() {
    let (server, addr) = start();
    add_user(&server, "wes", "pw", &[]);
    let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
    ftp.login("wes", "pw").unwrap();
    for name in ["a.txt", "b.txt", "c.log", "sub/d.txt"] {
        if name == "sub/d.txt" {
            ftp.mkdir("sub").unwrap();
        }
        ftp.put_file(name, &mut &b"x"[..]).unwrap();
    }
    assert_eq!(ftp.nlst(Some("*.txt")).unwrap(), ["a.txt", "b.txt"]);
    assert_eq!(ftp.nlst(Some("?.log")).unwrap(), ["c.log"]);
    assert_eq!(ftp.nlst(Some("sub/*.txt")).unwrap(), ["sub/d.txt"]);
    assert!(ftp.nlst(Some("*.none")).unwrap().is_empty());
    assert_eq!(ftp.nlst(Some("a.txt")).unwrap(), ["a.txt"]);
    assert_eq!(ftp.nlst(Some("sub/d.txt")).unwrap(), ["sub/d.txt"]);
    // A directory's names come with the path as given (as vsftpd does).
    assert_eq!(ftp.nlst(Some("sub")).unwrap(), ["sub/d.txt"]);
    assert_eq!(ftp.nlst(Some("/sub/")).unwrap(), ["/sub/d.txt"]);
    assert_eq!(ftp.nlst(None).unwrap(), ["a.txt", "b.txt", "c.log", "sub"]);
    let long = ftp.list(Some("c.log")).unwrap();
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(
        long[0].starts_with("-rw-r--r--") && long[0].ends_with(" c.log"),
        "{long:?}"
    );
    // The directory part is resolved in the jail like any path.
    for outside in ["../../*.txt", "../*", "/etc/pass*", "sub/../../*"] {
        let refused = ftp.nlst(Some(outside)).unwrap_err().to_string();
        assert!(refused.contains("550"), "{outside}: {refused}");
    }
    // MLSD lists directories only (RFC 3659).
    assert!(
        ftp.mlsd(Some("a.txt"))
            .unwrap_err()
            .to_string()
            .contains("501")
    );
    ftp.quit().unwrap();
}

#[test]
fn lftp_mirror_keeps_modification_times_through_mfmt() {
    let (server, addr) = start();
    add_user(&server, "max", "pw", &[]);
    add_user(&server, "rita", "pw", &["--read-only"]);
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("old.txt");
    std::fs::write(&file, "from 2020\n").unwrap();
    let then = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_577_934_245);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(then)
        .unwrap();
    lftp(
        &addr,
        "max,pw",
        &format!("mirror -R {} up", local.path().display()),
    );
    let uploaded = server.data_dir().join("homes/max/up/old.txt");
    assert_eq!(
        std::fs::metadata(&uploaded).unwrap().modified().unwrap(),
        then
    );

    let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
    ftp.login("max", "pw").unwrap();
    let set = ftp
        .custom_command("MFMT 20211224000000 up/old.txt", &[suppaftp::Status::File])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&set.body).trim(),
        "213 Modify=20211224000000; up/old.txt"
    );
    assert_eq!(
        ftp.custom_command("MDTM up/old.txt", &[suppaftp::Status::File])
            .map(|r| String::from_utf8_lossy(&r.body).trim().to_owned())
            .unwrap(),
        "213 20211224000000"
    );
    let bad = ftp.custom_command("MFMT yesterday up/old.txt", &[suppaftp::Status::File]);
    assert!(bad.unwrap_err().to_string().contains("501"));
    ftp.quit().unwrap();

    // A read-only user may not change times, even in a home they can read.
    let mut reader = suppaftp::FtpStream::connect(&addr).unwrap();
    reader.login("rita", "pw").unwrap();
    reader.put_file("never.txt", &mut &b""[..]).unwrap_err();
    let refused = reader.custom_command("MFMT 20211224000000 x", &[suppaftp::Status::File]);
    assert!(refused.unwrap_err().to_string().contains("550"));
    reader.quit().unwrap();
}

#[test]
fn reply_codes_follow_the_rfcs_for_unsupported_and_unknown_commands() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let server = ServeProcess::serve(&["ftp", "--addr", bind], 1);
        add_user(&server, "rex", "pw", &[]);
        let addr = server.address("ftp", "tcp");
        std::fs::write(server.data_dir().join("homes/rex/x"), b"x").unwrap();
        let mut control = Control::login(&addr, "rex", "pw");
        let mut code = |line: &str| control.command(line)[..3].to_owned();
        // RFC 959: 504 for a parameter not implemented, 502 for a command
        // not implemented, 500 for one not recognised.
        assert_eq!(code("TYPE E"), "504");
        assert_eq!(code("TYPE L 7"), "504");
        assert_eq!(code("TYPE Q"), "501");
        assert_eq!(code("SMNT /mnt"), "502");
        assert_eq!(code("XYZZY"), "500");
        // SITE has CHMOD and HELP; vsftpd answers 500 to other SITE commands.
        assert_eq!(code("SITE UMASK 022"), "500");
        assert_eq!(code("MKD dir"), "257");
        assert_eq!(code("MDTM dir"), "550");
        // A transfer with no data connection prepared gets 425 and no 150,
        // so a client reading one reply per command stays in step.
        assert_eq!(code("TYPE I"), "200");
        for transfer in ["RETR x", "STOR x", "STOU", "APPE x", "LIST", "NLST", "MLSD"] {
            assert_eq!(code(transfer), "425", "{transfer}");
            assert_eq!(code("NOOP"), "200", "after {transfer}");
        }
        // RFC 2428: EPSV names the control connection's protocol or gets
        // 522; after EPSV ALL only EPSV sets up data connections.
        let (own, other) = if bind.starts_with('[') {
            ("2", "1")
        } else {
            ("1", "2")
        };
        assert_eq!(code(&format!("EPSV {other}")), "522");
        assert_eq!(code(&format!("EPSV {own}")), "229");
        assert_eq!(code("EPSV ALL"), "200");
        assert_eq!(code("PASV"), "503");
        assert_eq!(code("EPRT |1|127.0.0.1|5000|"), "503");
        assert_eq!(code("EPSV"), "229");
    }
}

#[test]
fn an_upload_that_never_gets_its_data_connection_leaves_nothing_behind() {
    let (server, addr) = start();
    add_user(&server, "nel", "pw", &[]);
    let home = server.data_dir().join("homes/nel");
    let mut control = Control::login(&addr, "nel", "pw");
    assert!(control.command("TYPE I").starts_with("200"));
    // A port nothing listens on, on the client's own address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let eprt = control.command(&format!("EPRT |1|127.0.0.1|{closed}|"));
    assert!(eprt.starts_with("200"), "{eprt}");
    assert!(control.command("STOR new.bin").starts_with("150"));
    let refused = control.reply();
    assert!(refused.starts_with("425"), "{refused}");
    let left: Vec<_> = std::fs::read_dir(&home).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn max_rate_paces_uploads_and_downloads() {
    let config = "[echo]\nenabled = false\n[http]\nenabled = false\n[bot]\nenabled = false\n\
                  [ftp]\nport = 0\nmax_rate = \"1M\"\n";
    let server = ServeProcess::with_config(config, 1);
    let addr = server.address("ftp", "tcp");
    add_user(&server, "pat", "pw", &[]);
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("paced.bin");
    let content: Vec<u8> = (0..1_500_000u32).map(|i| (i % 247) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let base = format!("ftp://pat:pw@{addr}");
    curl_ok(&["-T", file.to_str().unwrap(), &format!("{base}/paced.bin")]);
    let down = curl_ok(&[&format!("{base}/paced.bin")]);
    assert!(down.stdout == content, "byte-identical when paced");
    // The transfer log's rate (MB/s, 10^6) of each: never above 1 MiB/s.
    server.wait_for_stderr("kind=\"RETR\"");
    let log = server.stderr();
    let rates: Vec<f64> = log
        .lines()
        .filter(|line| line.contains("transfer") && line.contains("paced.bin"))
        .filter_map(|line| {
            line.split("rate_mb_s=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(rates.len(), 2, "{log}");
    for rate in rates {
        assert!(rate <= 1.048_576, "{rate} MB/s in\n{log}");
    }
}

#[test]
fn curl_works_over_ipv6() {
    let server = ServeProcess::serve(&["ftp", "--addr", "[::1]:0"], 1);
    add_user(&server, "six", "pw", &[]);
    let addr = server.address("ftp", "tcp");
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("v6.txt");
    std::fs::write(&file, b"over IPv6\n").unwrap();
    let base = format!("ftp://six:pw@{addr}");
    let up = curl(&["-T", file.to_str().unwrap(), &format!("{base}/v6.txt")]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let down = curl(&[&format!("{base}/v6.txt")]);
    assert_eq!(down.stdout, b"over IPv6\n");
    // Active mode over IPv6 is EPRT.
    let active = curl(&["--ftp-port", "::1", &format!("{base}/v6.txt")]);
    assert_eq!(
        active.stdout,
        b"over IPv6\n",
        "{}",
        String::from_utf8_lossy(&active.stderr)
    );
    let listed = curl(&["--list-only", &format!("{base}/")]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "v6.txt");
}

/// A running FTP server with a fresh self-signed certificate and `more`
/// lines of `[ftp]` config, once it has printed `endpoints` endpoint lines;
/// and its plain control address.
fn start_tls(more: &str, endpoints: usize) -> (ServeProcess, String) {
    let files = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = support::self_signed_pair(files.path());
    let config = format!(
        "[echo]\nenabled = false\n[http]\nenabled = false\n[bot]\nenabled = false\n\
         [ftp]\nport = 0\ntls_cert = {cert_file:?}\ntls_key = {key_file:?}\n{more}"
    );
    let server = ServeProcess::with_config(&config, endpoints);
    // The files are read at start; the directory may go.
    drop(files);
    let addr = server.address("ftp", "tcp");
    (server, addr)
}

#[test]
fn curl_uses_explicit_tls_and_plain_logins_are_refused_when_it_is_required() {
    let (server, addr) = start_tls("require_tls = true\n", 1);
    add_user(&server, "tess", "pw", &[]);
    let base = format!("ftp://tess:pw@{addr}");
    let plain = curl(&["--list-only", &format!("{base}/")]);
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("530"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("secret.bin");
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let tls = ["--ssl-reqd", "--insecure"];
    let up = curl(
        &[
            &tls[..],
            &["-T", file.to_str().unwrap(), &format!("{base}/secret.bin")],
        ]
        .concat(),
    );
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let down = curl(&[&tls[..], &[format!("{base}/secret.bin").as_str()]].concat());
    assert!(down.stdout == content, "byte-identical through TLS");
    let listed = curl(&[&tls[..], &["--list-only", &format!("{base}/")]].concat());
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "secret.bin");
    let log = server.stderr();
    assert!(
        log.contains("command=PROT P"),
        "data connections were protected"
    );
}

#[test]
fn the_implicit_tls_flag_needs_a_certificate_and_adds_an_endpoint() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let ftp = [
        "ftp",
        "--addr",
        "127.0.0.1:0",
        "--implicit-tls-addr",
        "127.0.0.1:0",
    ];
    let output = run_sockit(&[&["serve", "--data-dir", dir][..], &ftp].concat(), b"");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "sockit: --implicit-tls-addr needs ftp.tls_cert and ftp.tls_key in the config"
    );

    // With them in the config, the flag adds the implicit FTPS endpoint.
    let (cert_file, key_file) = support::self_signed_pair(data.path());
    let config = data.path().join("sockit.toml");
    std::fs::write(
        &config,
        format!("[ftp]\ntls_cert = {cert_file:?}\ntls_key = {key_file:?}\n"),
    )
    .unwrap();
    let serve = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir,
    ];
    let server = ServeProcess::start(&[&serve[..], &ftp].concat(), 2);
    let implicit = server.address("ftp", "ftps");
    assert_ne!(implicit, server.address("ftp", "tcp"));
}

#[test]
fn data_connections_resume_the_control_tls_session_and_may_be_required_to() {
    let (server, addr) = start_tls("require_tls = true\nrequire_tls_resumption = true\n", 1);
    add_user(&server, "rue", "pw", &[]);
    std::fs::write(server.data_dir().join("homes/rue/kept.txt"), b"kept").unwrap();
    let out = python_peer("ftplib_tls_resume.py", &addr, "rue", "pw");
    // ftplib as shipped starts a new TLS session on each data connection.
    assert_eq!(out["fresh"]["error"], "522", "{out}");
    assert_eq!(
        out["resumed"]["names"],
        serde_json::json!(["kept.txt"]),
        "{out}"
    );
    // curl resumes on its own.
    let listed = curl(&[
        "--ssl-reqd",
        "--insecure",
        "--list-only",
        &format!("ftp://rue:pw@{addr}/"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "kept.txt",
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}

#[test]
fn curl_and_lftp_use_implicit_tls_and_a_plain_client_gets_no_greeting() {
    let (server, _) = start_tls("implicit_tls = true\nimplicit_tls_port = 0\n", 2);
    add_user(&server, "ivy", "pw", &[]);
    let addr = server.address("ftp", "ftps");
    let base = format!("ftps://ivy:pw@{addr}");

    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("implicit.bin");
    let content: Vec<u8> = (0..1_500_000u32).map(|i| (i % 239) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    curl_ok(&[
        "--insecure",
        "-T",
        file.to_str().unwrap(),
        &format!("{base}/implicit.bin"),
    ]);
    let down = curl_ok(&["--insecure", &format!("{base}/implicit.bin")]);
    assert!(
        down.stdout == content,
        "byte-identical through implicit TLS"
    );

    let back = tempfile::tempdir().unwrap();
    lftp_url(
        &base,
        None,
        &format!(
            "set ssl:verify-certificate no; mirror / {}",
            back.path().display()
        ),
    );
    assert!(std::fs::read(back.path().join("implicit.bin")).unwrap() == content);

    // In the clear, the implicit port says nothing and drops what it gets.
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(Some(support::PATIENCE)).unwrap();
    std::io::Write::write_all(&mut plain, b"USER ivy\r\n").unwrap();
    let mut received = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut received);
    assert!(
        !String::from_utf8_lossy(&received).contains("220"),
        "{received:?}"
    );
    // The plain port still speaks FTP in the clear.
    let plain_addr = server.address("ftp", "tcp");
    let listed = curl(&["--list-only", &format!("ftp://ivy:pw@{plain_addr}/")]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "implicit.bin"
    );
}

#[test]
fn ftplib_and_lftp_use_explicit_tls() {
    let (server, addr) = start_tls("require_tls = true\n", 1);
    add_user(&server, "uma", "pw", &[]);
    let out = python_peer("ftplib_tls.py", &addr, "uma", "pw");
    let feat: Vec<&str> = out["feat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().trim())
        .collect();
    for feature in ["AUTH TLS", "PBSZ", "PROT", "EPSV", "EPRT"] {
        assert!(feat.contains(&feature), "FEAT lists {feature}: {feat:?}");
    }
    assert_eq!(out["plain_login"], "530", "{out}");
    assert_eq!(out["auth"], "234");
    assert_eq!(out["login"], "230");
    assert!(
        out["tls_version"].as_str().unwrap().starts_with("TLSv1."),
        "{out}"
    );
    assert_eq!(out["clear_data"], "521", "{out}");
    assert_eq!(out["prot_c"], "534", "{out}");
    assert_eq!(out["prot_p"], "200");
    assert_eq!(out["stor"], "226");
    assert_eq!(out["identical"], true);
    assert_eq!(out["nlst"], serde_json::json!(["tls.bin"]));
    assert_eq!(out["abor"], serde_json::json!(["426", "226"]), "{out}");
    assert_eq!(out["noop"], "200");
    assert_eq!(out["quit"], "221");

    // lftp, forced to TLS on both connections, mirrors a small tree up.
    let local = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::write(
            local.path().join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(i * 100),
        )
        .unwrap();
    }
    lftp_url(
        &format!("ftp://{addr}"),
        Some("uma,pw"),
        &format!(
            "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
             set ssl:verify-certificate no; mirror -R {} tree",
            local.path().display()
        ),
    );
    let home = server.data_dir().join("homes/uma/tree");
    for i in 0..20 {
        let name = format!("f{i}.txt");
        assert_eq!(
            std::fs::read(home.join(&name)).unwrap(),
            std::fs::read(local.path().join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn anonymous_reads_the_root_given_and_changes_nothing() {
    let public = tempfile::tempdir().unwrap();
    std::fs::write(public.path().join("readme.txt"), b"welcome\n").unwrap();
    std::fs::create_dir(public.path().join("pub")).unwrap();
    let root = public.path().to_str().unwrap();
    let server = ServeProcess::serve(&["ftp", "--addr", "127.0.0.1:0", "--root", root], 1);
    let addr = server.address("ftp", "tcp");
    // curl logs in as `anonymous` when the URL names no user.
    let read = curl(&[&format!("ftp://{addr}/readme.txt")]);
    assert_eq!(
        read.stdout,
        b"welcome\n",
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("x.txt");
    std::fs::write(&file, b"graffiti").unwrap();
    let write = curl(&[
        "-T",
        file.to_str().unwrap(),
        &format!("ftp://{addr}/pub/x.txt"),
    ]);
    assert!(!write.status.success());

    let mut control = Control::login(&addr, "ftp", "guest@example.com");
    let status = control.command("STAT .");
    assert!(status.starts_with("213 "), "{status}");
    let mut stat = Control::login(&addr, "anonymous", "x");
    stat.0.get_mut().write_all(b"STAT readme.txt\r\n").unwrap();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        stat.0.read_line(&mut line).unwrap();
        let done = line.starts_with("213 ");
        lines.push(line);
        if done {
            break;
        }
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[1].starts_with(" -r") && lines[1].trim_end().ends_with(" readme.txt"),
        "{lines:?}"
    );
    for refused in [
        "DELE readme.txt",
        "MKD new",
        "RNFR readme.txt",
        "STOR pub/y",
        "APPE readme.txt",
    ] {
        let reply = control.command(refused);
        assert!(reply.starts_with("550"), "{refused}: {reply}");
    }
    assert!(control.command("SIZE ../../etc/passwd").starts_with("550"));
    assert_eq!(std::fs::read_dir(public.path()).unwrap().count(), 2);

    // Without a root, there is no anonymous login.
    let (_plain, plain_addr) = start();
    let mut refused = Control(BufReader::new(TcpStream::connect(&plain_addr).unwrap()));
    assert!(refused.reply().starts_with("220"));
    assert!(refused.command("USER anonymous").starts_with("331"));
    assert!(refused.command("PASS guest@example.com").starts_with("530"));
}

#[test]
fn lftp_continues_an_interrupted_upload() {
    let (server, addr) = start();
    add_user(&server, "kim", "pw", &[]);
    let home = server.data_dir().join("homes/kim");
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("video.bin");
    let content = new_content();
    std::fs::write(&file, &content).unwrap();

    let mut uploading = slow_upload(&file, &format!("ftp://kim:pw@{addr}/video.bin"));
    let mut control = Control::login(&addr, "kim", "pw");
    control.wait_for_size("video.bin", |size| size > 64 * 1024);
    uploading.kill().unwrap();
    uploading.wait().unwrap();
    server.wait_for_stderr("path=/video.bin");
    assert!(
        !home.join("video.bin").exists(),
        "nothing lands until it is whole"
    );

    // `put -c` asks SIZE, then sends REST and STOR for the rest.
    lftp(
        &addr,
        "kim,pw",
        &format!("put -c {} -o video.bin", file.display()),
    );
    assert!(
        std::fs::read(home.join("video.bin")).unwrap() == content,
        "byte-identical"
    );
    let offsets: Vec<u64> = server
        .stderr()
        .lines()
        .filter_map(|line| line.split("command=REST ").nth(1))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect();
    assert!(
        offsets.iter().any(|&n| n > 0),
        "lftp resumed with REST: {offsets:?}"
    );
}

/// A network namespace on this host that only a NAT reaches, for a server
/// behind a router: the host talks to [`NatHost::PUBLIC`], which nftables
/// rewrites to the namespace's [`NatHost::PRIVATE`], and a connection made
/// straight to the private address is reset. Removed when dropped (and
/// before it is made, in case a killed run left one). Needs root, `ip` and
/// `nft` (scripts/test installs nftables).
struct NatHost;

impl NatHost {
    const NETNS: &str = "sockit-ftp-nat";
    const HOST_LINK: &str = "sockit-nat0";
    const SERVER_LINK: &str = "sockit-nat1";
    const TABLE: &str = "sockit_ftp_nat";
    /// The host's side of the link (RFC 2544's benchmarking range, never
    /// routed beyond this host).
    const HOST: &str = "198.18.0.1";
    const PRIVATE: &str = "198.18.0.2";
    const PUBLIC: &str = "198.18.0.50";

    fn new() -> NatHost {
        NatHost::remove();
        let host_cidr = format!("{}/24", NatHost::HOST);
        let private_cidr = format!("{}/24", NatHost::PRIVATE);
        let (netns, host_link, server_link) =
            (NatHost::NETNS, NatHost::HOST_LINK, NatHost::SERVER_LINK);
        for command in [
            &["netns", "add", netns][..],
            &[
                "link",
                "add",
                host_link,
                "type",
                "veth",
                "peer",
                "name",
                server_link,
            ],
            &["link", "set", server_link, "netns", netns],
            &["addr", "add", &host_cidr, "dev", host_link],
            &["link", "set", host_link, "up"],
            &[
                "-n",
                netns,
                "addr",
                "add",
                &private_cidr,
                "dev",
                server_link,
            ],
            &["-n", netns, "link", "set", server_link, "up"],
            &["-n", netns, "link", "set", "lo", "up"],
        ] {
            must_run("ip", command, b"");
        }
        let ruleset = format!(
            "table ip {table} {{\n\
             chain nat {{ type nat hook output priority -100; ip daddr {public} dnat to {private}; }}\n\
             chain filter {{ type filter hook output priority 0;\n\
               ip daddr {private} ct status dnat accept;\n\
               ip daddr {private} ct state new reject with tcp reset; }}\n\
             }}\n",
            table = NatHost::TABLE,
            public = NatHost::PUBLIC,
            private = NatHost::PRIVATE,
        );
        must_run("nft", &["-f", "-"], ruleset.as_bytes());
        NatHost
    }

    fn remove() {
        for (program, args) in [
            ("nft", &["delete", "table", "ip", NatHost::TABLE][..]),
            ("ip", &["link", "delete", NatHost::HOST_LINK]),
            ("ip", &["netns", "delete", NatHost::NETNS]),
        ] {
            let _ = Command::new(program)
                .args(args)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for NatHost {
    fn drop(&mut self) {
        NatHost::remove();
    }
}

/// Runs `program` with `args` and `stdin`, and fails the test, with what it
/// said, unless it succeeds.
fn must_run(program: &str, args: &[&str], stdin: &[u8]) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{program} runs (scripts/test installs it): {err}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} (needs root): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn behind_a_nat_pasv_announces_the_public_address_and_ports_of_the_range() {
    // Declared first, dropped last: the server goes before its namespace.
    let _nat = NatHost::new();
    let config = format!(
        "[serve]\nbind = \"{}\"\n\
         [echo]\nenabled = false\n[http]\nenabled = false\n[bot]\nenabled = false\n\
         [ftp]\nport = 0\npassive_ports = \"40100-40109\"\npassive_address = \"{}\"\n",
        NatHost::PRIVATE,
        NatHost::PUBLIC
    );
    let server =
        ServeProcess::with_config_through(&["ip", "netns", "exec", NatHost::NETNS], &config, 1);
    let private = server.address("ftp", "tcp");
    let port = private.rsplit_once(':').unwrap().1;
    add_user(&server, "nat", "pw", &[]);
    assert!(
        TcpStream::connect(&private).is_err(),
        "from this host the server is reachable only through the NAT"
    );

    let out = python_peer(
        "ftplib_nat.py",
        &format!("{}:{port}", NatHost::PUBLIC),
        "nat",
        "pw",
    );
    for reply in out["pasv"].as_array().unwrap() {
        let reply = reply.as_str().unwrap();
        let numbers: Vec<u16> = reply
            .split(['(', ')'])
            .nth(1)
            .unwrap_or_else(|| panic!("a 227 reply with an address: {reply}"))
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(reply.starts_with("227 "), "{reply}");
        assert_eq!(
            numbers[..4],
            [198, 18, 0, 50],
            "the public address: {reply}"
        );
        let announced = numbers[4] * 256 + numbers[5];
        assert!(
            (40100..=40109).contains(&announced),
            "a port of the range: {reply}"
        );
    }
    assert_eq!(
        out["passive_identical"], true,
        "passive transfers through the NAT to the announced address"
    );
    assert_eq!(
        out["active_identical"], true,
        "active transfers from the server's namespace back to the client"
    );
}
