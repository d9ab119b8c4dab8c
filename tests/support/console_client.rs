//! A bare HTTP/1.1 client of the browser console over `std::net`: it sends
//! request targets exactly as written (no `..` folding, no re-encoding),
//! and can hold an upload's body open to pace it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one read of a response may take.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// The multipart boundary of every upload; no test content contains it.
const BOUNDARY: &str = "sockit-attack-boundary-7f3a";

/// A response: status, headers (names in lower case) and the decoded body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A signed-in console session.
pub struct ConsoleClient {
    addr: String,
    cookie: String,
    csrf: String,
}

impl ConsoleClient {
    /// Signs in to the console at `addr` as `user`, failing the test if it
    /// is refused, and reads the session's CSRF token from the files page.
    pub fn sign_in(addr: &str, user: &str, password: &str) -> ConsoleClient {
        let form = format!("user={user}&password={password}&next=/files/");
        let mut stream = connect(addr);
        write!(
            stream,
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .unwrap();
        let response = read_response(stream);
        assert_eq!(response.status, 303, "sign-in of {user}");
        let cookie = response
            .header("set-cookie")
            .expect("the sign-in sets a cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut client = ConsoleClient {
            addr: addr.to_owned(),
            cookie,
            csrf: String::new(),
        };
        let page = client.get("/files/");
        assert_eq!(page.status, 200, "the files page after sign-in");
        client.csrf = String::from_utf8_lossy(&page.body)
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the files page carries a CSRF token")
            .to_owned();
        client
    }

    /// `GET target`, the target sent as written.
    pub fn get(&self, target: &str) -> Response {
        let mut stream = connect(&self.addr);
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {}\r\n\r\n",
            self.addr, self.cookie
        )
        .unwrap();
        read_response(stream)
    }

    /// `POST path` with a JSON body and the CSRF token.
    pub fn post_json(&self, path: &str, json: &str) -> Response {
        let mut stream = connect(&self.addr);
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            self.addr,
            self.cookie,
            self.csrf,
            json.len()
        )
        .unwrap();
        read_response(stream)
    }

    /// Uploads one file `name` with `content` into `dir` (already
    /// percent-encoded for the query).
    pub fn upload(&self, dir: &str, name: &str, content: &[u8]) -> Response {
        let mut upload = self.start_upload(dir, name, content.len());
        upload.send(content);
        upload.finish()
    }

    /// Starts uploading a file `name` of `length` bytes into `dir`: the
    /// request's head and the part's header are sent, the content is the
    /// caller's to send with [`UploadInFlight::send`].
    pub fn start_upload(&self, dir: &str, name: &str, length: usize) -> UploadInFlight {
        let part_head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let mut stream = connect(&self.addr);
        write!(
            stream,
            "POST /api/upload?dir={dir} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n{part_head}",
            self.addr,
            self.cookie,
            self.csrf,
            part_head.len() + length + tail.len()
        )
        .unwrap();
        UploadInFlight { stream, tail }
    }
}

/// An upload whose content is still being sent.
pub struct UploadInFlight {
    stream: TcpStream,
    tail: String,
}

impl UploadInFlight {
    /// Sends the next piece of the content.
    pub fn send(&mut self, piece: &[u8]) {
        // A server that answered early (a refusal) may have closed its end;
        // the response says why.
        let _ = self.stream.write_all(piece);
    }

    /// Ends the body and reads the response.
    pub fn finish(mut self) -> Response {
        let _ = self.stream.write_all(self.tail.as_bytes());
        read_response(self.stream)
    }
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the console");
    stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
    stream
}

/// Reads a whole `Connection: close` response, decoding a chunked body.
fn read_response(mut stream: TcpStream) -> Response {
    let mut raw = Vec::new();
    // A reset after the response (the server closing on an unread body)
    // still leaves the response to read.
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body);
    }
    response
}

/// The content of a chunked body (RFC 9112 section 7.1), as far as it goes.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        if size == 0 {
            break;
        }
        let start = end + 2;
        let stop = (start + size).min(body.len());
        content.extend_from_slice(&body[start..stop]);
        body = &body[(stop + 2).min(body.len())..];
    }
    content
}
