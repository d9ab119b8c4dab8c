//! The console's page layout and its static files, embedded in the binary.
//!
//! Pages are server-rendered HTML that works without JavaScript; scripts only
//! add live updates and the actions that change things. Every page carries a
//! `Content-Security-Policy` that allows nothing from elsewhere and no inline
//! script, so text a user controls (file names, user names) can never run,
//! and all such text goes through [`escape`].

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::SignedIn;
use super::session::Session;

/// Scripts and styles only from this origin; no framing, no plugins.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The embedded static files: name, content type, bytes.
const FILES: [(&str, &str, &str); 4] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    ),
    (
        "files.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/files.js"),
    ),
];

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: the header (with the user and a sign-out button when signed
/// in), then `body`. `scripts` are names of embedded files to load.
pub fn page_with_scripts(
    title: &str,
    session: Option<&Session>,
    body: &str,
    scripts: &[&str],
) -> Response {
    let (csrf, nav) = match session {
        Some(session) => {
            let dashboard = if session.admin {
                "<a href=\"/\">Dashboard</a>"
            } else {
                ""
            };
            (
                format!(
                    "<meta name=\"csrf-token\" content=\"{}\">",
                    escape(&session.csrf)
                ),
                format!(
                    "<nav>{dashboard}<a href=\"/files/\">Files</a><a href=\"/hello\">Hello</a></nav>\
                     <span class=\"spacer\"></span>\
                     <span class=\"who\">{}</span> <button id=\"sign-out\" type=\"button\">Sign out</button>",
                    escape(&session.user)
                ),
            )
        }
        None => (
            String::new(),
            "<nav><a href=\"/hello\">Hello</a></nav><span class=\"spacer\"></span>".to_owned(),
        ),
    };
    let scripts: String = std::iter::once("console.js")
        .chain(scripts.iter().copied())
        .map(|name| format!("<script src=\"/assets/{name}\" defer></script>\n"))
        .collect();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{csrf}\n\
         <title>{title} · sockit</title>\n<link rel=\"stylesheet\" href=\"/assets/console.css\">\n{scripts}</head>\n\
         <body>\n<header><h1>sockit</h1>{nav}</header>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// A page without scripts of its own.
pub fn page(title: &str, session: Option<&Session>, body: &str) -> Response {
    page_with_scripts(title, session, body, &[])
}

const DASHBOARD_BODY: &str = include_str!("assets/dashboard.html");

/// `GET /`: the dashboard, for admins; other users go to their files.
pub async fn dashboard(SignedIn(session): SignedIn) -> Response {
    if !session.admin {
        return Redirect::to("/files/").into_response();
    }
    page_with_scripts(
        "Dashboard",
        Some(&session),
        DASHBOARD_BODY,
        &["dashboard.js"],
    )
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
