//! Signing in to the console with the FTP users' credentials.
//!
//! `POST /login` checks the name and password through [`UserStore::verify`],
//! the same check FTP makes, on a blocking thread (argon2 is deliberately
//! slow). Failures are throttled per client address ([`crate::throttle`]):
//! after a few, each answer is delayed, then the address is locked out for a
//! while. The login form carries no CSRF token (there is no session yet);
//! instead a cross-site `Origin` is refused, so another site cannot sign a
//! browser in to an account of its choosing.
//!
//! Pages use the [`SignedIn`] extractor (no session: redirect to the login
//! page; API routes answer 401) and state-changing routes use [`Protected`],
//! which also requires the session's CSRF token in `X-CSRF-Token`.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::AppState;
use super::assets::{escape, page};
use super::session::{self, Session};
use crate::stats;
use crate::throttle::Verdict;
use crate::users::UserStore;

/// A request from a signed-in user.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Session);

/// A request from a signed-in admin (the dashboard and its data).
#[derive(Debug, Clone)]
pub struct Admin(pub Session);

/// A state-changing request from a signed-in user, with a valid CSRF token.
#[derive(Debug, Clone)]
pub struct Protected(pub Session);

/// Why a request was turned away before its handler ran.
#[derive(Debug)]
pub enum Refusal {
    /// No session: pages go to the login page, API calls get 401.
    SignIn { api: bool, next: String },
    /// Missing or wrong CSRF token.
    Csrf,
    /// Signed in, but not an admin.
    NotAdmin,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn { api: true, .. } => {
                (StatusCode::UNAUTHORIZED, "sign in first").into_response()
            }
            Refusal::SignIn { api: false, next } => {
                Redirect::to(&format!("/login?next={}", percent_encode(&next))).into_response()
            }
            Refusal::NotAdmin => (StatusCode::FORBIDDEN, "for admins only").into_response(),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (reload the page)",
            )
                .into_response(),
        }
    }
}

/// The request's live session, checked against the user store: a session
/// whose user was deleted, or whose password or admin flag changed since
/// sign-in, is ended here, at its next request.
fn session_of(headers: &HeaderMap, state: &AppState) -> Option<(String, Session)> {
    let cookies = headers.get_all(header::COOKIE);
    let (token, session) = cookies
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(session::token_from_cookie_header)
        .find_map(|token| Some((token.to_owned(), state.sessions().find(token)?)))?;
    match state.users().find(&session.user) {
        Ok(current) if session.still_valid_for(&current) => Some((token, session)),
        _ => {
            state.sessions().end(&token);
            None
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        match session_of(&parts.headers, state) {
            Some((_, session)) => Ok(SignedIn(session)),
            None => Err(Refusal::SignIn {
                api: parts.uri.path().starts_with("/api/"),
                next: parts.uri.path().to_owned(),
            }),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        if session.admin {
            Ok(Admin(session))
        } else {
            Err(Refusal::NotAdmin)
        }
    }
}

impl FromRequestParts<AppState> for Protected {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        let given = parts
            .headers
            .get(session::CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if session::tokens_match(given, &session.csrf) {
            Ok(Protected(session))
        } else {
            Err(Refusal::Csrf)
        }
    }
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: the sign-in form.
pub async fn login_page(Query(query): Query<LoginQuery>) -> Response {
    login_form(StatusCode::OK, "", query.next.as_deref().unwrap_or("/"))
}

fn login_form(status: StatusCode, message: &str, next: &str) -> Response {
    let message = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message))
    };
    let body = format!(
        r#"<section class="narrow">
<h2>Sign in</h2>
{message}
<form method="post" action="/login">
  <input type="hidden" name="next" value="{next}">
  <label>User <input name="user" autocomplete="username" required autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
<p class="muted">The same users as the FTP server (<code>sockit user</code>).</p>
</section>"#,
        next = escape(next)
    );
    (status, page("Sign in", None, &body)).into_response()
}

/// The form posted to `/login`.
#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// True when the request names an `Origin` other than the host it was sent to.
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

/// Only same-origin paths are followed after sign-in: anything else goes to
/// `/`. Browsers drop tabs and newlines from a `Location` and read `\\` as
/// `/`, so `/\t/evil.example` and `/\\evil` lead off-site as `//evil` does;
/// the same checks are made after one more round of percent-decoding, for
/// whatever decodes the path again on its way.
fn safe_next(next: &str) -> &str {
    let same_origin_path = |path: &[u8]| {
        path.starts_with(b"/")
            && !path.windows(2).any(|pair| pair == b"//")
            && !path
                .iter()
                .any(|&byte| byte == b'\\' || byte.is_ascii_control())
    };
    let no_unicode_controls = !next.chars().any(char::is_control);
    if no_unicode_controls
        && same_origin_path(next.as_bytes())
        && same_origin_path(&percent_decode(next))
    {
        next
    } else {
        "/"
    }
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site sign-in refused").into_response();
    }
    let next = safe_next(&form.next).to_owned();
    if let Verdict::LockedOut { remaining } = state.throttle().check(peer.ip()) {
        let message = format!(
            "Too many failed sign-ins from your address; try again in {} s.",
            remaining.as_secs().max(1)
        );
        return login_form(StatusCode::TOO_MANY_REQUESTS, &message, &next);
    }
    let users = state.users().clone();
    let name = form.user.clone();
    let checked =
        tokio::task::spawn_blocking(move || UserStore::verify(&users, &name, &form.password)).await;
    match checked {
        Ok(Ok(user)) => {
            state.throttle().success(peer.ip());
            let token = state.sessions().create(&user);
            stats::record(
                "http",
                "login",
                format!("{} signed in from {peer}", user.name),
            );
            let target = if user.admin || next != "/" {
                next
            } else {
                "/files/".to_owned()
            };
            (
                [(
                    header::SET_COOKIE,
                    session::set_cookie(&token, state.secure()),
                )],
                Redirect::to(&target),
            )
                .into_response()
        }
        _ => {
            let delay = state.throttle().failure(peer.ip());
            crate::throttle::log_failure("http", peer.ip(), &form.user);
            stats::counter("sockit_auth_failures_total", &[("service", "http")])
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stats::record(
                "http",
                "login-failed",
                format!(
                    "{:?} from {peer}",
                    form.user.chars().take(64).collect::<String>()
                ),
            );
            tokio::time::sleep(delay).await;
            login_form(
                StatusCode::UNAUTHORIZED,
                "Wrong user name or password.",
                &next,
            )
        }
    }
}

/// `POST /logout`: ends the session (CSRF-protected like every change).
pub async fn logout(
    State(state): State<AppState>,
    Protected(session): Protected,
    headers: HeaderMap,
) -> Response {
    stats::record("http", "logout", format!("{} signed out", session.user));
    if let Some((token, _)) = session_of(&headers, &state) {
        state.sessions().end(&token);
    }
    (
        [(header::SET_COOKIE, session::clear_cookie(state.secure()))],
        Redirect::to("/login"),
    )
        .into_response()
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|_| bytes[at] == b'%')
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_site_paths_are_followed() {
        assert_eq!(safe_next("/files/docs"), "/files/docs");
        assert_eq!(safe_next("/files/a%20b/"), "/files/a%20b/");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\u{85}/evil.example/",
            "/%09/evil.example/",
            "/%2F/evil.example/",
            "/%5Cevil",
            "/files//x",
            "files",
            "",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }

    #[test]
    fn cross_site_origins_are_detected() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8000".parse().unwrap());
        assert!(!cross_site(&headers), "no Origin: a non-browser client");
        headers.insert(header::ORIGIN, "http://127.0.0.1:8000".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(cross_site(&headers));
    }

    #[test]
    fn percent_decoding_leaves_stray_percent_signs() {
        assert_eq!(percent_decode("/a%20b%2f%zz%4"), b"/a b/%zz%4");
    }

    #[test]
    fn percent_encoding_keeps_paths_readable() {
        assert_eq!(percent_encode("/files/a b/報"), "/files/a%20b/%E5%A0%B1");
    }
}
