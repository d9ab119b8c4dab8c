//! The browser console over HTTP: routes through the router in-process, and
//! through a real `sockit serve` process with curl as the client.

mod support;

use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use sockit::http::{AppState, router};
use sockit::quota::Quotas;
use sockit::shutdown::Shutdown;
use sockit::users::{NewUser, Permissions, Secret, UserStore};
use support::{ServeProcess, run_sockit};
use tower::ServiceExt;

/// An in-process console with three users: `admin`, `alice` (full rights,
/// 1 MiB quota) and `bob` (read-only); every password is the name reversed.
struct Console {
    app: axum::Router,
    users: Arc<UserStore>,
    _data: tempfile::TempDir,
}

impl Console {
    fn new() -> Console {
        let data = tempfile::tempdir().unwrap();
        let users = Arc::new(UserStore::open(data.path()).unwrap());
        for (name, permissions, quota, max_files, admin) in [
            ("admin", Permissions::FULL, None, None, true),
            ("alice", Permissions::FULL, Some(1 << 20), None, false),
            ("bob", Permissions::READ_ONLY, None, None, false),
            ("dave", Permissions::FULL, None, Some(3), false),
        ] {
            users
                .add(NewUser {
                    name: name.to_owned(),
                    password: Secret::new(name.chars().rev().collect::<String>()),
                    home: None,
                    quota,
                    max_files,
                    permissions,
                    admin,
                })
                .unwrap();
        }
        let state = AppState::new(
            &[],
            users.clone(),
            Arc::new(Quotas::default()),
            false,
            Shutdown::new(Duration::from_secs(1)),
        );
        Console {
            app: router(state),
            users,
            _data: data,
        }
    }

    fn home(&self, user: &str) -> std::path::PathBuf {
        self.users.find(user).unwrap().home
    }

    async fn send(&self, request: Request<Body>) -> axum::response::Response {
        let mut request = request;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        self.app.clone().oneshot(request).await.unwrap()
    }

    /// Posts the login form with `form` (urlencoded) and extra `headers`.
    async fn post_login(&self, form: &str, headers: &[(&str, &str)]) -> axum::response::Response {
        let mut request =
            Request::post("/login").header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(form.to_owned())).unwrap())
            .await
    }

    /// Signs in and returns (cookie header value, CSRF token).
    async fn sign_in(&self, user: &str) -> (String, String) {
        let password: String = user.chars().rev().collect();
        let response = self
            .send(
                Request::post("/login")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(format!(
                        "user={user}&password={password}&next=/files/"
                    )))
                    .unwrap(),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "sign-in of {user}"
        );
        let set_cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let page = self.get("/files/", Some(&cookie)).await;
        let csrf = page
            .2
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page carries a CSRF token")
            .to_owned();
        (cookie, csrf)
    }

    async fn get(
        &self,
        path: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut request = Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = self.send(request.body(Body::empty()).unwrap()).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn post_json(
        &self,
        path: &str,
        session: &(String, String),
        csrf: Option<&str>,
        body: &str,
    ) -> StatusCode {
        let mut request = Request::post(path)
            .header("cookie", &session.0)
            .header("content-type", "application/json");
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        self.send(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .status()
    }
}

async fn get(path: &str) -> (StatusCode, String, String) {
    let (status, headers, body) = Console::new().get(path, None).await;
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, body)
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
    let console = Console::new();
    let (cookie, _) = console.sign_in("admin").await;
    let (status, headers, _) = console.get("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
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

#[tokio::test]
async fn a_wrong_password_is_refused_and_pages_need_a_session() {
    let console = Console::new();
    let response = console.post_login("user=alice&password=alice", &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("set-cookie").is_none());
    let (status, headers, _) = console.get("/files/", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login?next=/files/");
    assert_eq!(
        console.get("/api/status", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_strict() {
    let console = Console::new();
    let response = console.post_login("user=alice&password=ecila", &[]).await;
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert_eq!(response.headers()["location"], "/files/");
}

#[tokio::test]
async fn sign_in_follows_only_same_origin_paths() {
    let console = Console::new();
    // Form values, as a crafted link or form would send them.
    for (next, expected) in [
        ("/files/docs/", "/files/docs/"),
        ("/%09/evil.example/", "/"),
        ("/%2509/evil.example/", "/"),
        ("//evil", "/"),
        ("/%5Cevil", "/"),
        ("https://evil", "/"),
        ("https%3A%2F%2Fevil", "/"),
    ] {
        let response = console
            .post_login(&format!("user=admin&password=nimda&next={next}"), &[])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(response.headers()["location"], expected, "next={next}");
    }
}

#[tokio::test]
async fn a_cross_site_sign_in_is_refused() {
    let console = Console::new();
    let response = console
        .post_login(
            "user=alice&password=ecila",
            &[
                ("host", "127.0.0.1:8000"),
                ("origin", "https://evil.example"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn only_admins_see_the_dashboard_and_status() {
    let console = Console::new();
    let alice = console.sign_in("alice").await;
    let (status, headers, _) = console.get("/", Some(&alice.0)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/files/");
    assert_eq!(
        console.get("/api/status", Some(&alice.0)).await.0,
        StatusCode::FORBIDDEN
    );
    let admin = console.sign_in("admin").await;
    assert_eq!(
        console.get("/api/status", Some(&admin.0)).await.0,
        StatusCode::OK
    );
}

/// Runs `sockit user ARGS` on the console's data dir, as an operator would
/// while the server runs.
fn sockit_user(console: &Console, args: &[&str], stdin: &[u8]) {
    let data_dir = console._data.path().to_str().unwrap();
    let mut all = vec!["user", "--data-dir", data_dir];
    all.extend_from_slice(args);
    let output = run_sockit(&all, stdin);
    assert!(output.status.success(), "sockit {all:?}: {output:?}");
}

#[tokio::test]
async fn user_changes_end_that_users_sessions_at_the_next_request() {
    let console = Console::new();
    let alice = console.sign_in("alice").await;
    let admin = console.sign_in("admin").await;
    let dave = console.sign_in("dave").await;
    let bob = console.sign_in("bob").await;
    let mkdir = r#"{"dir":"/","name":"made"}"#;
    assert_eq!(
        console
            .post_json("/api/mkdir", &alice, Some(&alice.1), mkdir)
            .await,
        StatusCode::OK
    );
    assert_eq!(
        console.get("/api/status", Some(&admin.0)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        console.get("/files/", Some(&dave.0)).await.0,
        StatusCode::OK
    );

    sockit_user(
        &console,
        &["passwd", "alice", "--password-stdin"],
        b"new
",
    );
    sockit_user(&console, &["set", "admin", "--no-admin"], b"");
    sockit_user(&console, &["del", "dave"], b"");

    let mkdir = r#"{"dir":"/","name":"again"}"#;
    assert_eq!(
        console
            .post_json("/api/mkdir", &alice, Some(&alice.1), mkdir)
            .await,
        StatusCode::UNAUTHORIZED,
        "the old password's session"
    );
    assert_eq!(
        console.get("/files/", Some(&alice.0)).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        console.get("/api/status", Some(&admin.0)).await.0,
        StatusCode::UNAUTHORIZED,
        "the former admin's session"
    );
    let (status, headers, _) = console.get("/files/", Some(&dave.0)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the deleted user's session");
    assert_eq!(headers["location"], "/login?next=/files/");
    assert_eq!(
        console.get("/files/", Some(&bob.0)).await.0,
        StatusCode::OK,
        "an unchanged user stays signed in"
    );
}

#[tokio::test]
async fn state_changes_need_the_session_csrf_token() {
    let console = Console::new();
    let alice = console.sign_in("alice").await;
    let body = r#"{"dir":"/","name":"made"}"#;
    assert_eq!(
        console.post_json("/api/mkdir", &alice, None, body).await,
        StatusCode::FORBIDDEN
    );
    let wrong = "0".repeat(64);
    assert_eq!(
        console
            .post_json("/api/mkdir", &alice, Some(&wrong), body)
            .await,
        StatusCode::FORBIDDEN
    );
    // Another session's token does not do either.
    let admin = console.sign_in("admin").await;
    assert_eq!(
        console
            .post_json("/api/mkdir", &alice, Some(&admin.1), body)
            .await,
        StatusCode::FORBIDDEN
    );
    assert!(!console.home("alice").join("made").exists());
    assert_eq!(
        console
            .post_json("/api/mkdir", &alice, Some(&alice.1), body)
            .await,
        StatusCode::OK
    );
    assert!(console.home("alice").join("made").is_dir());
    let logout = console
        .send(
            Request::post("/logout")
                .header("cookie", &alice.0)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        logout.status(),
        StatusCode::FORBIDDEN,
        "sign-out needs the token too"
    );
}

#[tokio::test]
async fn paths_cannot_leave_the_home_however_they_are_spelled() {
    let console = Console::new();
    std::fs::write(console.home("bob").join("bobs.txt"), b"bob's").unwrap();
    let alice = console.sign_in("alice").await;
    for path in [
        "/files/../../etc/passwd",
        "/files/..%2f..%2fetc%2fpasswd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/files/..%5c..%5cetc%5cpasswd",
        "/files/%252e%252e/%252e%252e/etc/passwd",
        "/files/../bob/bobs.txt",
        "/files/%2e%2e/bob/bobs.txt",
        "/files//etc/passwd",
        "/files/%00",
    ] {
        let (status, _, body) = console.get(path, Some(&alice.0)).await;
        assert!(
            status == StatusCode::FORBIDDEN
                || status == StatusCode::NOT_FOUND
                || status == StatusCode::BAD_REQUEST,
            "{path}: {status}"
        );
        assert!(
            !body.contains("root:") && !body.contains("bob's"),
            "{path} leaked"
        );
    }
    assert_eq!(
        console
            .post_json(
                "/api/delete",
                &alice,
                Some(&alice.1),
                r#"{"path":"../bob/bobs.txt"}"#
            )
            .await,
        StatusCode::FORBIDDEN
    );
    assert!(console.home("bob").join("bobs.txt").exists());
}

#[tokio::test]
async fn a_symlink_out_of_the_home_is_refused() {
    let console = Console::new();
    std::os::unix::fs::symlink("/etc", console.home("alice").join("etc")).unwrap();
    let alice = console.sign_in("alice").await;
    let (status, _, body) = console.get("/files/etc/passwd", Some(&alice.0)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("root:"));
}

#[tokio::test]
async fn downloads_honour_range_requests() {
    let console = Console::new();
    let content: Vec<u8> = (0..100u8).collect();
    std::fs::write(console.home("alice").join("numbers.bin"), &content).unwrap();
    let alice = console.sign_in("alice").await;
    let response = console
        .send(
            Request::get("/files/numbers.bin")
                .header("cookie", &alice.0)
                .header("range", "bytes=10-19")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()["content-range"], "bytes 10-19/100");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &content[10..20]);
}

fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "sockit-test-boundary";
    let mut body = Vec::new();
    for (name, content) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(
    console: &Console,
    session: &(String, String),
    dir: &str,
    files: &[(&str, &[u8])],
) -> StatusCode {
    let (content_type, body) = multipart(files);
    console
        .send(
            Request::post(format!("/api/upload?dir={dir}"))
                .header("cookie", &session.0)
                .header("x-csrf-token", &session.1)
                .header("content-type", content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .status()
}

#[tokio::test]
async fn an_uploaded_page_cannot_script_the_console() {
    let console = Console::new();
    let alice = console.sign_in("alice").await;
    let page = b"<html><script>fetch('/api/delete')</script></html>";
    let picture = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
    assert_eq!(
        upload(
            &console,
            &alice,
            "/",
            &[("x.html", page), ("x.svg", picture)]
        )
        .await,
        StatusCode::OK
    );
    for file in ["/files/x.html", "/files/x.svg", "/files/x.html?download"] {
        let (status, headers, body) = console.get(file, Some(&alice.0)).await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert!(body.contains("<script>"), "{file} is served as uploaded");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{file}");
        assert_eq!(headers["content-security-policy"], "sandbox", "{file}");
    }
    // The console's own pages keep their own policy.
    let (status, headers, _) = console.get("/files/", Some(&alice.0)).await;
    assert_eq!(status, StatusCode::OK);
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_file_limit_counts_uploads_and_directories_but_lets_a_file_be_replaced() {
    let console = Console::new();
    let dave = console.sign_in("dave").await;
    let csrf = Some(dave.1.as_str());
    let home = console.home("dave");
    let mkdir = |name: &str| format!(r#"{{"dir":"/","name":"{name}"}}"#);
    assert_eq!(
        console
            .post_json("/api/mkdir", &dave, csrf, &mkdir("d"))
            .await,
        StatusCode::OK
    );
    assert_eq!(
        upload(&console, &dave, "/", &[("a", b"1"), ("b", b"2")]).await,
        StatusCode::OK
    );
    let (_, _, page) = console.get("/files/", Some(&dave.0)).await;
    assert!(
        page.contains("3 of 3 files and directories"),
        "the page shows the limit and its use: {page}"
    );
    // Three entries, dave's limit: no fourth of either kind.
    assert_eq!(
        upload(&console, &dave, "/d", &[("c", b"3")]).await,
        StatusCode::INSUFFICIENT_STORAGE
    );
    assert_eq!(
        console
            .post_json("/api/mkdir", &dave, csrf, &mkdir("e"))
            .await,
        StatusCode::INSUFFICIENT_STORAGE
    );
    // Replacing a file at the limit is allowed, and leaves no temporary file.
    assert_eq!(
        upload(&console, &dave, "/", &[("a", b"new")]).await,
        StatusCode::OK
    );
    assert_eq!(std::fs::read(home.join("a")).unwrap(), b"new");
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 3);
    // A delete makes room for one more.
    assert_eq!(
        console
            .post_json("/api/delete", &dave, csrf, r#"{"path":"/b"}"#)
            .await,
        StatusCode::OK
    );
    assert_eq!(
        upload(&console, &dave, "/d", &[("c", b"3")]).await,
        StatusCode::OK
    );
    assert_eq!(
        console
            .post_json("/api/mkdir", &dave, csrf, &mkdir("e"))
            .await,
        StatusCode::INSUFFICIENT_STORAGE
    );
}

#[tokio::test]
async fn delete_takes_kept_partial_uploads_along_as_ftp_does() {
    let console = Console::new();
    let alice = console.sign_in("alice").await;
    let csrf = Some(alice.1.as_str());
    let home = console.home("alice");
    // A directory that looks empty: it holds only an interrupted upload.
    std::fs::create_dir(home.join("held")).unwrap();
    let hidden = sockit::vfs::upload_partial(&home.join("held"), "video.bin");
    std::fs::write(&hidden, b"half").unwrap();
    // A file with an interrupted upload of its next version.
    std::fs::write(home.join("notes.txt"), b"v1").unwrap();
    let next = sockit::vfs::upload_partial(&home, "notes.txt");
    std::fs::write(&next, b"v2, half").unwrap();
    for path in ["/held", "/notes.txt"] {
        let body = format!(r#"{{"path":"{path}"}}"#);
        assert_eq!(
            console.post_json("/api/delete", &alice, csrf, &body).await,
            StatusCode::OK,
            "{path}"
        );
    }
    assert!(!home.join("held").exists());
    assert!(!home.join("notes.txt").exists() && !next.exists());
}

#[tokio::test]
async fn uploads_land_whole_and_respect_permissions_and_quota() {
    let console = Console::new();
    let alice = console.sign_in("alice").await;
    let home = console.home("alice");
    assert_eq!(
        upload(
            &console,
            &alice,
            "/",
            &[("a.txt", b"first"), ("报告.txt", b"second")]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(std::fs::read(home.join("a.txt")).unwrap(), b"first");
    assert_eq!(std::fs::read(home.join("报告.txt")).unwrap(), b"second");

    // Over the 1 MiB quota: refused, and the old content of the target stays.
    let big = vec![7u8; (1 << 20) + 1];
    assert_eq!(
        upload(&console, &alice, "/", &[("a.txt", &big)]).await,
        StatusCode::INSUFFICIENT_STORAGE
    );
    assert_eq!(std::fs::read(home.join("a.txt")).unwrap(), b"first");
    let leftovers: Vec<_> = std::fs::read_dir(&home).unwrap().collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left behind");

    // Names that try to leave the directory are refused.
    for name in ["../escape.txt", "..", "a/b"] {
        assert_eq!(
            upload(&console, &alice, "/", &[(name, b"x")]).await,
            StatusCode::BAD_REQUEST,
            "{name}"
        );
    }

    let bob = console.sign_in("bob").await;
    assert_eq!(
        upload(&console, &bob, "/", &[("b.txt", b"x")]).await,
        StatusCode::FORBIDDEN
    );
    for (route, body) in [
        ("/api/mkdir", r#"{"dir":"/","name":"d"}"#),
        ("/api/rename", r#"{"from":"/x","to":"/y"}"#),
        ("/api/delete", r#"{"path":"/x"}"#),
    ] {
        assert_eq!(
            console.post_json(route, &bob, Some(&bob.1), body).await,
            StatusCode::FORBIDDEN,
            "{route}"
        );
    }
}

#[tokio::test]
async fn rename_and_delete_work_and_never_overwrite() {
    let console = Console::new();
    let home = console.home("alice");
    std::fs::write(home.join("one"), b"1").unwrap();
    std::fs::write(home.join("two"), b"2").unwrap();
    std::fs::create_dir(home.join("full")).unwrap();
    std::fs::write(home.join("full/inside"), b"x").unwrap();
    let alice = console.sign_in("alice").await;
    let csrf = Some(alice.1.as_str());
    assert_eq!(
        console
            .post_json(
                "/api/rename",
                &alice,
                csrf,
                r#"{"from":"/one","to":"/two"}"#
            )
            .await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        console
            .post_json(
                "/api/rename",
                &alice,
                csrf,
                r#"{"from":"/one","to":"/uno"}"#
            )
            .await,
        StatusCode::OK
    );
    assert_eq!(std::fs::read(home.join("uno")).unwrap(), b"1");
    assert_eq!(
        console
            .post_json("/api/delete", &alice, csrf, r#"{"path":"/full"}"#)
            .await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        console
            .post_json("/api/delete", &alice, csrf, r#"{"path":"/uno"}"#)
            .await,
        StatusCode::OK
    );
    assert!(!home.join("uno").exists());
}

#[tokio::test(start_paused = true)]
async fn repeated_wrong_passwords_are_delayed_then_locked_out() {
    let console = Console::new();
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let response = console.post_login("user=alice&password=guess", &[]).await;
        statuses.push(response.status());
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    // Even the right password is refused during the lockout.
    let response = console.post_login("user=alice&password=ecila", &[]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
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
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const ECHO_AND_HTTP: &str = "[echo]\nport = 0\nudp = false\n\n[http]\nport = 0\n\n[bot]\nenabled = false\n[ftp]\nenabled = false\n";

/// A signed-in curl: a cookie jar in a temporary dir, and the session's CSRF token.
struct CurlSession {
    base: String,
    jar: std::path::PathBuf,
    csrf: String,
    _dir: tempfile::TempDir,
}

impl CurlSession {
    fn sign_in(base: &str, user: &str, password: &str) -> CurlSession {
        let dir = tempfile::tempdir().unwrap();
        let jar = dir.path().join("cookies");
        let jar_arg = jar.to_str().unwrap();
        let code = curl(&[
            "--cookie-jar",
            jar_arg,
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
            "--data-urlencode",
            &format!("user={user}"),
            "--data-urlencode",
            &format!("password={password}"),
            &format!("{base}/login"),
        ]);
        assert_eq!(code, "303", "sign-in of {user}");
        let page = curl(&["--cookie", jar_arg, &format!("{base}/files/")]);
        let csrf = page
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the files page carries a CSRF token")
            .to_owned();
        CurlSession {
            base: base.to_owned(),
            jar,
            csrf,
            _dir: dir,
        }
    }

    /// curl with the session cookie and `args`; returns (HTTP status, body).
    fn request(&self, args: &[&str]) -> (u16, String) {
        let mut all = vec![
            "--cookie",
            self.jar.to_str().unwrap(),
            "--write-out",
            "\n%{http_code}",
        ];
        all.extend_from_slice(args);
        let output = curl(&all);
        let (body, code) = output.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_owned())
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.request(&[&format!("{}{path}", self.base)])
    }

    fn post_json(&self, path: &str, json: &str) -> (u16, String) {
        let csrf = format!("X-CSRF-Token: {}", self.csrf);
        self.request(&[
            "--header",
            &csrf,
            "--header",
            "Content-Type: application/json",
            "--data",
            json,
            &format!("{}{path}", self.base),
        ])
    }
}

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
    let refused = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data",
        "user=x%20peer%3D9.9.9.9&password=no",
        &format!("{base}/login"),
    ]);
    assert_eq!(refused, "401");
    server.wait_for_stderr(r#"login failed: service=http peer=127.0.0.1 user="x peer=9.9.9.9""#);
    let admin = CurlSession::sign_in(&base, "admin", &server.admin_password());

    let status = || -> serde_json::Value {
        let (code, body) = admin.get("/api/status");
        assert_eq!(code, 200);
        serde_json::from_str(&body).unwrap()
    };
    let before = status();
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
        let after = status();
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
fn every_file_route_works_from_curl() {
    let server = ServeProcess::with_config(ECHO_AND_HTTP, 2);
    let base = format!("http://{}", server.address("http", "tcp"));
    let admin = CurlSession::sign_in(&base, "admin", &server.admin_password());
    assert_eq!(admin.get("/").0, 200);
    assert_eq!(admin.get("/assets/files.js").0, 200);

    // Upload two files in one request, one with a UTF-8 name.
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("data.bin"), &content).unwrap();
    std::fs::write(dir.path().join("报告.txt"), "你好").unwrap();
    let csrf = format!("X-CSRF-Token: {}", admin.csrf);
    let (code, body) = admin.request(&[
        "--header",
        &csrf,
        "--form",
        &format!("file=@{}", dir.path().join("data.bin").display()),
        "--form",
        &format!("file=@{}", dir.path().join("报告.txt").display()),
        &format!("{base}/api/upload?dir=/"),
    ]);
    assert_eq!(code, 200, "{body}");
    let (code, listing) = admin.get("/files/");
    assert_eq!(code, 200);
    assert!(
        listing.contains("data.bin") && listing.contains("报告.txt"),
        "{listing}"
    );

    // Download it whole, then resume from the middle with a range.
    let whole = dir.path().join("whole.bin");
    admin.request(&[
        "--output",
        whole.to_str().unwrap(),
        &format!("{base}/files/data.bin"),
    ]);
    assert!(std::fs::read(&whole).unwrap() == content);
    let partial = dir.path().join("partial.bin");
    std::fs::write(&partial, &content[..40_000]).unwrap();
    let (code, _) = admin.request(&[
        "--continue-at",
        "-",
        "--output",
        partial.to_str().unwrap(),
        &format!("{base}/files/data.bin"),
    ]);
    assert_eq!(code, 206);
    assert!(
        std::fs::read(&partial).unwrap() == content,
        "a resumed download is byte-identical"
    );
    let (code, text) = admin.get(&format!("/files/{}", "%E6%8A%A5%E5%91%8A.txt"));
    assert_eq!((code, text.as_str()), (200, "你好"));

    assert_eq!(
        admin
            .post_json("/api/mkdir", r#"{"dir":"/","name":"docs"}"#)
            .0,
        200
    );
    assert_eq!(
        admin
            .post_json(
                "/api/rename",
                r#"{"from":"/data.bin","to":"/docs/data.bin"}"#
            )
            .0,
        200
    );
    assert_eq!(admin.get("/files/docs/data.bin").0, 200);
    assert_eq!(
        admin
            .post_json("/api/delete", r#"{"path":"/docs/data.bin"}"#)
            .0,
        200
    );
    assert_eq!(admin.get("/files/docs/data.bin").0, 404);
    let traversal = format!("{base}/files/../../etc/passwd");
    assert_eq!(admin.request(&["--path-as-is", &traversal]).0, 403);

    let (code, _) = admin.request(&[
        "--header",
        &csrf,
        "--request",
        "POST",
        &format!("{base}/logout"),
    ]);
    assert_eq!(code, 303);
    assert_eq!(admin.get("/api/status").0, 401, "signed out");
}

#[test]
fn the_event_stream_sends_status_snapshots() {
    let server = ServeProcess::with_config(ECHO_AND_HTTP, 2);
    let base = format!("http://{}", server.address("http", "tcp"));
    let admin = CurlSession::sign_in(&base, "admin", &server.admin_password());
    // curl stops after --max-time; the first snapshot is sent at once.
    let output = Command::new("curl")
        .args([
            "--silent",
            "--no-buffer",
            "--max-time",
            "3",
            "--cookie",
            admin.jar.to_str().unwrap(),
        ])
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
    let (cert_file, key_file) = support::self_signed_pair(data.path());
    let config = format!(
        "[echo]\nenabled = false\n\n[bot]\nenabled = false\n[ftp]\nenabled = false\n\n[http]\nport = 0\ntls_cert = {:?}\ntls_key = {:?}\n",
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
    // Under TLS the session cookie is marked Secure.
    let password = format!("password={}", server.admin_password());
    let headers = curl(&[
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        "--output",
        "/dev/null",
        "--dump-header",
        "-",
        "--data-urlencode",
        "user=admin",
        "--data-urlencode",
        &password,
        &format!("https://localhost:{port}/login"),
    ]);
    let cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {headers}"));
    assert!(cookie.contains("; Secure"), "{cookie}");
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
    let config = "[serve]\ngrace_period = \"10m\"\n[echo]\nenabled = false\n[http]\nport = 0\n[bot]\nenabled = false\n[ftp]\nenabled = false\n";
    let mut server = ServeProcess::with_config(config, 1);
    let base = format!("http://{}", server.address("http", "tcp"));
    let admin = CurlSession::sign_in(&base, "admin", &server.admin_password());
    let mut stream = Command::new("curl")
        .args([
            "--silent",
            "--no-buffer",
            "--cookie",
            admin.jar.to_str().unwrap(),
        ])
        .arg(format!("{base}/api/events"))
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

/// Peak resident memory of a process, from /proc (kB → bytes).
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

#[test]
fn a_2_gib_upload_streams_to_disk_in_bounded_memory() {
    let server = ServeProcess::with_config(
        "[echo]\nenabled = false\n[http]\nport = 0\n[bot]\nenabled = false\n[ftp]\nenabled = false\n",
        1,
    );
    let base = format!("http://{}", server.address("http", "tcp"));
    let admin = CurlSession::sign_in(&base, "admin", &server.admin_password());
    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("big.bin");
    // Sparse: 2 GiB that costs the test no disk to create.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let csrf = format!("X-CSRF-Token: {}", admin.csrf);
    let (code, body) = admin.request(&[
        "--max-time",
        "600",
        "--header",
        &csrf,
        "--form",
        &format!("file=@{}", big.display()),
        &format!("{base}/api/upload?dir=/"),
    ]);
    assert_eq!(code, 200, "{body}");
    let stored = server.data_dir().join("homes/admin/big.bin");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), 2 << 30);
    let peak = peak_rss(server.pid());
    assert!(
        peak < 100 << 20,
        "server peak RSS {} MiB during a 2 GiB upload",
        peak >> 20
    );
    eprintln!("server peak RSS {} MiB", peak >> 20);
}

#[test]
fn idle_silent_slow_and_stalled_connections_are_closed() {
    use std::io::{Read, Write};
    let config = "[echo]\nenabled = false\n[http]\nport = 0\nidle_timeout = \"1s\"\n[bot]\nenabled = false\n[ftp]\nenabled = false\n";
    let server = ServeProcess::with_config(config, 1);
    let address = server.address("http", "tcp");
    // Opens a connection, lets `client` do its part on it, and reads until
    // the server closes it, which must come after one of the configured
    // one-second periods and within a few. Returns what came. A close with
    // bytes of ours still unread on the server's side arrives as a reset.
    let closed_after = |client: &dyn Fn(&mut std::net::TcpStream)| -> String {
        let opened = std::time::Instant::now();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        client(&mut stream);
        stream.set_read_timeout(Some(support::PATIENCE)).unwrap();
        let mut received = Vec::new();
        if let Err(err) = stream.read_to_end(&mut received) {
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset,
                "the server did not close the connection: {err}"
            );
        }
        let after = opened.elapsed();
        assert!(
            (Duration::from_secs(1)..Duration::from_secs(20)).contains(&after),
            "closed after {after:?}"
        );
        String::from_utf8_lossy(&received).into_owned()
    };

    // Silent from the start.
    closed_after(&|_| {});

    // Half a request head, then nothing.
    let received = closed_after(&|stream| {
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
    });
    assert!(!received.contains("Hello, World"), "{received}");

    // A head sent a byte at a time, never idle for long, never finished.
    let received = closed_after(&|stream| {
        let mut writer = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let head = format!("GET /hello HTTP/1.1\r\nX-Slow: {}", "a".repeat(1000));
            for byte in head.as_bytes() {
                if writer.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    });
    assert!(!received.contains("Hello, World"), "{received}");

    // An upload that stops after its first bytes, its handler waiting.
    let received = closed_after(&|stream| {
        stream
            .write_all(
                b"POST /login HTTP/1.1\r\nHost: x\r\n\
                  Content-Type: application/x-www-form-urlencoded\r\n\
                  Content-Length: 1000\r\n\r\nuser=admin&",
            )
            .unwrap();
    });
    assert!(!received.contains("303"), "{received}");

    // One whole request is answered; the idle keep-alive connection is then
    // closed.
    let received = closed_after(&|stream| {
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    });
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{received}");
    assert!(received.ends_with("Hello, World"), "{received}");
}
