//! The file browser: each signed-in user's home, through the same jail
//! ([`crate::vfs`]), permissions and quotas ([`crate::quota`]) as FTP.
//!
//! Browsing and downloading are plain links and work without JavaScript.
//! Browsing and downloads go through the storage layer ([`crate::storage`]):
//! the file is opened from the home's descriptor with `openat2`, listings
//! describe links as links, and the opened file is streamed in large chunks,
//! honouring a single `Range` (resumed downloads). Uploads are multipart, streamed to
//! a hidden temporary file in the target directory chunk by chunk, each chunk
//! charged to the quota before it is written, and renamed over the target only
//! when complete: an interrupted upload never damages what was there.

use std::path::PathBuf;

use axum::Json;
use axum::extract::{Multipart, Query, Request, State};
use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::assets::{escape, page_with_scripts};
use super::auth::{Protected, SignedIn, percent_encode};
use super::error::FileError;
use super::session::Session;
use crate::quota::{self, Usage};
use crate::storage::{self, StorageError};
use crate::users::{Permissions, User};
use crate::vfs::{self, DirEntry, Jail, UPLOAD_PREFIX, VirtualPath};
use crate::{size, stats};

/// A signed-in user's home: their account as it is now, its jail, and
/// the home held open for the storage layer.
struct Home {
    user: User,
    jail: Jail,
    files: storage::Home,
}

impl Home {
    fn of(state: &AppState, session: &Session) -> Result<Home, FileError> {
        let user = state.users().find(&session.user)?;
        std::fs::create_dir_all(&user.home)?;
        let jail = Jail::new(&user.home)?;
        let files = storage::Home::open(jail.root())?;
        Ok(Home { user, jail, files })
    }

    /// Runs `operation` on the home in one hop to the blocking pool (the
    /// storage layer's blocking policy).
    async fn in_home<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&storage::Home) -> storage::Result<T> + Send + 'static,
    ) -> Result<T, FileError> {
        let files = self.files.clone();
        let done = tokio::task::spawn_blocking(move || operation(&files))
            .await
            .map_err(|err| FileError::Io(std::io::Error::other(err)))?;
        Ok(done?)
    }

    /// A write counted against the user's limits (see `crate::quota`).
    async fn quota_writer(&self, state: &AppState) -> std::io::Result<quota::QuotaWriter> {
        state
            .quotas()
            .writer(&self.user.name, self.jail.root(), self.user.limits())
            .await
    }

    fn require(
        &self,
        allowed: fn(&Permissions) -> bool,
        action: &'static str,
    ) -> Result<(), FileError> {
        if allowed(&self.user.permissions) {
            Ok(())
        } else {
            Err(FileError::NotPermitted(action))
        }
    }

    fn locate(&self, client: &str) -> Result<(VirtualPath, PathBuf), FileError> {
        let virtual_path = VirtualPath::root().join(client)?;
        let real = self.jail.resolve(&virtual_path)?;
        Ok((virtual_path, real))
    }
}

/// Checks a single file name sent by a client: no separators, no `.` or
/// `..`, no control characters, at most 255 bytes.
fn valid_file_name(name: &str) -> Result<&str, FileError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.contains('/')
        || name.chars().any(char::is_control)
        || name.starts_with(UPLOAD_PREFIX);
    if bad {
        Err(FileError::BadName(name.chars().take(80).collect()))
    } else {
        Ok(name)
    }
}

/// `GET /files/`: the home's root.
pub async fn browse_root(
    state: State<AppState>,
    signed_in: SignedIn,
    request: Request,
) -> Response {
    browse_path(state, signed_in, String::new(), request).await
}

/// `GET /files/{*path}`: a directory listing or a file download.
pub async fn browse(
    state: State<AppState>,
    signed_in: SignedIn,
    axum::extract::Path(path): axum::extract::Path<String>,
    request: Request,
) -> Response {
    browse_path(state, signed_in, path, request).await
}

async fn browse_path(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    path: String,
    request: Request,
) -> Response {
    match serve(&state, &session, &path, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn serve(
    state: &AppState,
    session: &Session,
    path: &str,
    request: Request,
) -> Result<Response, FileError> {
    let home = Home::of(state, session)?;
    home.require(|p| p.read, "read")?;
    let virtual_path = VirtualPath::root().join(path)?;
    let wanted = virtual_path.clone();
    let found = home
        .in_home(move |files| match files.open_read(&wanted) {
            Ok((file, entry)) => Ok(Found::File(file, entry)),
            Err(StorageError::IsADirectory) => files.list(&wanted).map(Found::Directory),
            Err(err) => Err(err),
        })
        .await?;
    let (file, entry) = match found {
        Found::File(file, entry) => (file, entry),
        Found::Directory(entries) => {
            if !request.uri().path().ends_with('/') {
                return Ok(
                    Redirect::permanent(&format!("{}/", request.uri().path())).into_response()
                );
            }
            let mut entries: Vec<DirEntry> = entries.into_iter().map(DirEntry::from).collect();
            entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
            // Shown beside the limits; a home that cannot be counted just
            // shows them alone.
            let used = state
                .quotas()
                .used(&home.user.name, home.jail.root(), home.user.limits())
                .await
                .ok()
                .flatten();
            return Ok(listing(session, &home, &virtual_path, &entries, used));
        }
    };
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    let mut response = match byte_range(range, entry.size) {
        Err(Unsatisfiable) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", entry.size)) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
        Ok(None) => file_response(StatusCode::OK, file, 0, entry.size),
        Ok(Some((first, last))) => {
            let mut response =
                file_response(StatusCode::PARTIAL_CONTENT, file, first, last + 1 - first);
            if let Ok(value) =
                HeaderValue::from_str(&format!("bytes {first}-{last}/{}", entry.size))
            {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
    };
    let mime = mime_guess::from_path(&entry.name).first_or_octet_stream();
    if let Ok(value) = HeaderValue::from_str(mime.as_ref()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let download = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "download"));
    if download && let Some(name) = virtual_path.file_name() {
        let disposition = format!("attachment; filename*=UTF-8''{}", percent_encode(name));
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// What a browsed path turned out to be, opened through the storage layer.
enum Found {
    File(std::fs::File, storage::Entry),
    Directory(Vec<storage::Entry>),
}

/// A `Range` header that no byte of the file satisfies (416).
#[derive(Debug, PartialEq, Eq)]
struct Unsatisfiable;

/// The one byte range (first and last byte, inclusive) a `Range` header asks
/// of a file of `len` bytes: `None` for the whole file (no header, or one
/// this server does not take, such as several ranges, which RFC 9110 lets a
/// server ignore).
fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = (first.trim(), last.trim());
    let (first, last) = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(first), Ok(last)) if first <= last => (first, last.min(len.saturating_sub(1))),
        (Ok(first), Err(_)) if last.is_empty() => (first, len.saturating_sub(1)),
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 {
                return Err(Unsatisfiable);
            }
            (len.saturating_sub(suffix), len.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if first >= len {
        return Err(Unsatisfiable);
    }
    Ok(Some((first, last)))
}

/// How much of a download is read from the file at a time.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// A response of `status` carrying `len` bytes of `file` from `start`, read
/// in large chunks as the client takes them.
fn file_response(status: StatusCode, mut file: std::fs::File, start: u64, len: u64) -> Response {
    use tokio::io::AsyncReadExt;
    // lseek only moves the descriptor's offset: it does not touch the disk.
    if let Err(err) = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)) {
        return FileError::Io(err).into_response();
    }
    let chunks = futures::stream::try_unfold(
        (tokio::fs::File::from_std(file), len),
        |(mut file, remaining)| async move {
            if remaining == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            let want = usize::try_from(remaining).map_or(DOWNLOAD_CHUNK, |r| r.min(DOWNLOAD_CHUNK));
            let mut chunk = bytes::BytesMut::zeroed(want);
            let read = file.read(&mut chunk).await?;
            if read == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            chunk.truncate(read);
            let read = read as u64;
            Ok(Some((chunk.freeze(), (file, remaining - read))))
        },
    );
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&len.to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, value);
    }
    response
}

fn listing(
    session: &Session,
    home: &Home,
    dir: &VirtualPath,
    entries: &[DirEntry],
    used: Option<Usage>,
) -> Response {
    let mut crumbs = String::from("<a href=\"/files/\">home</a>");
    let mut href = String::from("/files/");
    for part in dir.components() {
        href.push_str(&percent_encode(part));
        href.push('/');
        crumbs.push_str(&format!(
            " / <a href=\"{}\">{}</a>",
            escape(&href),
            escape(part)
        ));
    }
    let mut rows = String::new();
    if let Some(parent) = dir.parent() {
        let up = if parent.is_root() {
            "/files/".to_owned()
        } else {
            format!("/files{}/", percent_encode(parent.as_str()))
        };
        rows.push_str(&format!(
            "<tr class=\"up\"><td><a href=\"{}\">..</a></td><td></td><td></td><td></td></tr>\n",
            escape(&up)
        ));
    }
    for entry in entries {
        let link = percent_encode(&entry.name);
        let (href, shown, size) = if entry.dir {
            (
                format!("{link}/"),
                format!("{}/", entry.name),
                String::new(),
            )
        } else {
            (link.clone(), entry.name.clone(), size::format(entry.size))
        };
        let modified = entry
            .modified
            .map(|t| {
                humantime::format_rfc3339_seconds(t)
                    .to_string()
                    .replace('T', " ")
                    .replace('Z', "")
            })
            .unwrap_or_default();
        let download = if entry.dir {
            String::new()
        } else {
            format!(
                "<a class=\"download\" href=\"{}?download\" download>download</a>",
                escape(&link)
            )
        };
        rows.push_str(&format!(
            "<tr data-name=\"{name}\" data-kind=\"{kind}\"><td><a href=\"{href}\">{shown}</a></td>\
             <td class=\"num\">{size}</td><td>{modified}</td><td class=\"actions\">{download}</td></tr>\n",
            name = escape(&entry.name),
            kind = if entry.dir { "dir" } else { "file" },
            href = escape(&href),
            shown = escape(&shown),
        ));
    }
    if entries.is_empty() {
        rows.push_str("<tr><td colspan=\"4\" class=\"muted\">This directory is empty.</td></tr>\n");
    }
    let p = home.user.permissions;
    let limits: String = quota::describe(home.user.limits(), used)
        .iter()
        .map(|phrase| format!(" · {phrase}"))
        .collect();
    let changes = if p.write || p.mkdir {
        format!(
            r#"<section id="changes">
  <h2>Add</h2>
  {upload}
  {mkdir}
  <p id="status" class="muted" role="status"></p>
</section>"#,
            upload = if p.write {
                r#"<form id="upload" class="drop-zone">
    <label>Upload files <input id="upload-files" type="file" multiple></label>
    <p class="muted">or drop files here</p>
    <progress id="upload-progress" max="100" value="0" hidden></progress>
  </form>"#
            } else {
                ""
            },
            mkdir = if p.mkdir {
                r#"<form id="mkdir" class="inline"><input id="mkdir-name" placeholder="New directory name" required><button type="submit">Create directory</button></form>"#
            } else {
                ""
            },
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<section>
  <h2 class="crumbs">{crumbs}</h2>
  <table id="listing" data-dir="{dir}" data-can-rename="{rename}" data-can-delete="{delete}">
    <thead><tr><th>name</th><th class="num">size</th><th>modified (UTC)</th><th></th></tr></thead>
    <tbody>
{rows}    </tbody>
  </table>
  <p class="muted">Signed in as {user}{limits}.</p>
</section>
{changes}"#,
        dir = escape(dir.as_str()),
        rename = p.rename,
        delete = p.delete,
        user = escape(&home.user.name),
    );
    page_with_scripts("Files", Some(session), &body, &["files.js"])
}

/// Query of `POST /api/upload`.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    /// The directory to upload into, e.g. `/docs`.
    dir: String,
}

/// What an upload stored.
#[derive(Debug, Serialize)]
pub struct Uploaded {
    pub files: Vec<String>,
    pub bytes: u64,
}

/// `POST /api/upload?dir=/path`: multipart upload of one or more files.
pub async fn upload(
    State(state): State<AppState>,
    Protected(session): Protected,
    Query(query): Query<UploadQuery>,
    mut multipart: Multipart,
) -> Result<Json<Uploaded>, FileError> {
    let home = Home::of(&state, &session)?;
    home.require(|p| p.write, "upload")?;
    let (dir, real_dir) = home.locate(&query.dir)?;
    if !tokio::fs::metadata(&real_dir).await?.is_dir() {
        return Err(FileError::NotFound);
    }
    let quota = home.quota_writer(&state).await?;
    let mut uploaded = Uploaded {
        files: Vec::new(),
        bytes: 0,
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|err| FileError::BadUpload(err.body_text()))?
    {
        let Some(name) = field.file_name().map(str::to_owned) else {
            continue; // not a file part
        };
        let name = valid_file_name(&name)?.to_owned();
        let (target, real) = home.locate(&dir.join(&name)?.to_string())?;
        let replaced = match tokio::fs::symlink_metadata(&real).await {
            Ok(meta) if meta.is_dir() => {
                return Err(FileError::Conflict(format!("{name} is a directory")));
            }
            Ok(meta) => Some(meta),
            Err(_) => None,
        };
        let temporary = vfs::upload_temporary(&real_dir);
        // One over the file limit for a file that replaces another (see
        // `QuotaWriter::add_entry`).
        quota.add_entry(replaced.is_some())?;
        let mut file = match tokio::fs::File::create(&temporary).await {
            Ok(file) => file,
            Err(err) => {
                quota.remove_entry();
                return Err(err.into());
            }
        };
        let mut written: u64 = 0;
        let streamed: Result<(), FileError> = async {
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|err| FileError::BadUpload(err.body_text()))?
            {
                quota.charge(chunk.len() as u64)?;
                written += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            // Synced only when it replaces a file, as FTP does (see
            // `ftp::session`'s uploads).
            if replaced.is_some() {
                file.sync_all().await?;
            } else {
                file.flush().await?;
            }
            Ok(())
        }
        .await;
        drop(file);
        // Rename only after the whole body arrived: a failed upload must not
        // replace what was there.
        let stored = match streamed {
            Ok(()) => tokio::fs::rename(&temporary, &real)
                .await
                .map_err(FileError::from),
            Err(err) => Err(err),
        };
        if let Err(err) = stored {
            let _ = tokio::fs::remove_file(&temporary).await;
            quota.refund(written);
            quota.remove_entry();
            stats::record(
                "http",
                "upload-failed",
                format!("{} {target}: {err}", session.user),
            );
            return Err(err);
        }
        if let Some(old) = replaced {
            // A link's own size is not counted towards the quota (see `quota::usage`).
            if old.is_file() {
                quota.refund(old.len());
            }
            quota.remove_entry();
        }
        stats::counter("sockit_http_uploads_total", &[])
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats::record(
            "http",
            "upload",
            format!("{} {target}: {written} bytes", session.user),
        );
        uploaded.files.push(target.to_string());
        uploaded.bytes += written;
    }
    Ok(Json(uploaded))
}

/// Body of `POST /api/mkdir`.
#[derive(Debug, Deserialize)]
pub struct MakeDirectory {
    dir: String,
    name: String,
}

/// `POST /api/mkdir`.
pub async fn mkdir(
    State(state): State<AppState>,
    Protected(session): Protected,
    Json(request): Json<MakeDirectory>,
) -> Result<Json<String>, FileError> {
    let home = Home::of(&state, &session)?;
    home.require(|p| p.mkdir, "create directories")?;
    let name = valid_file_name(&request.name)?;
    let dir = VirtualPath::root().join(&request.dir)?;
    let (created, real) = home.locate(&dir.join(name)?.to_string())?;
    let quota = home.quota_writer(&state).await?;
    quota.add_entry(false)?;
    if let Err(err) = tokio::fs::create_dir(&real).await {
        quota.remove_entry();
        return Err(err.into());
    }
    stats::record("http", "mkdir", format!("{} {created}", session.user));
    Ok(Json(created.to_string()))
}

/// Body of `POST /api/rename`.
#[derive(Debug, Deserialize)]
pub struct Rename {
    from: String,
    to: String,
}

/// `POST /api/rename`: never replaces an existing entry.
pub async fn rename(
    State(state): State<AppState>,
    Protected(session): Protected,
    Json(request): Json<Rename>,
) -> Result<Json<String>, FileError> {
    let home = Home::of(&state, &session)?;
    home.require(|p| p.rename, "rename")?;
    let (from, real_from) = home.locate(&request.from)?;
    let (to, real_to) = home.locate(&request.to)?;
    if from.is_root() || to.is_root() {
        return Err(FileError::NotPermitted("rename the home itself"));
    }
    valid_file_name(to.file_name().unwrap_or_default())?;
    let renaming =
        tokio::task::spawn_blocking(move || vfs::rename_no_replace(&real_from, &real_to));
    match renaming.await.map_err(std::io::Error::other)? {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(FileError::Conflict(format!("{to} exists already")));
        }
        Err(err) => return Err(err.into()),
    }
    stats::record("http", "rename", format!("{} {from} -> {to}", session.user));
    Ok(Json(to.to_string()))
}

/// Body of `POST /api/delete`.
#[derive(Debug, Deserialize)]
pub struct Delete {
    path: String,
}

/// `POST /api/delete`: a file, or an empty directory, as FTP's DELE and RMD
/// do it: a file's kept partial upload goes with it, and a directory that
/// holds nothing but kept partial uploads (hidden from listings) counts as
/// empty.
pub async fn delete(
    State(state): State<AppState>,
    Protected(session): Protected,
    Json(request): Json<Delete>,
) -> Result<Json<String>, FileError> {
    let home = Home::of(&state, &session)?;
    home.require(|p| p.delete, "delete")?;
    let (path, real) = home.locate(&request.path)?;
    if path.is_root() {
        return Err(FileError::NotPermitted("delete the home itself"));
    }
    let meta = tokio::fs::symlink_metadata(&real).await?;
    let freed = if meta.is_dir() {
        let dir = real.clone();
        let (uploads, bytes) = tokio::task::spawn_blocking(move || vfs::remove_dir(&dir))
            .await
            .map_err(std::io::Error::other)??;
        Usage {
            bytes,
            entries: uploads as u64 + 1,
        }
    } else {
        tokio::fs::remove_file(&real).await?;
        // A link's own size is not counted towards the quota (see `quota::usage`).
        let mut freed = Usage {
            bytes: if meta.is_file() { meta.len() } else { 0 },
            entries: 1,
        };
        if let Some(partial) = vfs::partial_of(&path, &real)
            && let Ok(kept) = tokio::fs::metadata(&partial).await
            && tokio::fs::remove_file(&partial).await.is_ok()
        {
            freed.bytes += kept.len();
            freed.entries += 1;
        }
        freed
    };
    state
        .quotas()
        .freed(&home.user.name, home.jail.root(), freed);
    stats::record("http", "delete", format!("{} {path}", session.user));
    Ok(Json(path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_file_names_are_checked() {
        for good in [
            "a.txt",
            "報告.txt",
            "with space",
            "..hidden-but-fine",
            "%2e%2e",
        ] {
            assert!(valid_file_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "nul\0",
            "cr\r",
            "lf\n",
            ".sockit-upload-x",
        ] {
            assert!(valid_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(valid_file_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        let range = |header| byte_range(Some(header), 100);
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(range("bytes=10-19"), Ok(Some((10, 19))));
        assert_eq!(range("bytes=90-"), Ok(Some((90, 99))));
        assert_eq!(range("bytes=90-500"), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-30"), Ok(Some((70, 99))));
        assert_eq!(range("bytes=-300"), Ok(Some((0, 99))));
        assert_eq!(range("bytes=100-"), Err(Unsatisfiable));
        assert_eq!(range("bytes=-0"), Err(Unsatisfiable));
        assert_eq!(byte_range(Some("bytes=0-"), 0), Err(Unsatisfiable));
        // Not taken: served whole.
        for ignored in ["bytes=5-1", "bytes=0-1,5-9", "items=0-1", "bytes=x-y"] {
            assert_eq!(range(ignored), Ok(None), "{ignored}");
        }
    }
}
