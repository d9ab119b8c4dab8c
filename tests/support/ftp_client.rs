//! A bare FTP client over `std::net`: every reply comes back as text, so a
//! test can send commands a polite client would not and judge any answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// How long one read on a control or data connection may take.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// A logged-in control connection.
pub struct FtpClient {
    control: BufReader<TcpStream>,
}

impl FtpClient {
    /// Connects to `addr`, logs in and switches to `TYPE I`, as clients do
    /// before transfers, failing the test if the server refuses.
    pub fn login(addr: &str, user: &str, password: &str) -> FtpClient {
        let stream = TcpStream::connect(addr).expect("connect to the FTP server");
        stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
        let mut client = FtpClient {
            control: BufReader::new(stream),
        };
        let greeting = client.reply();
        assert!(greeting.starts_with("220"), "greeting: {greeting}");
        let reply = client.command(&format!("USER {user}"));
        assert!(reply.starts_with("331"), "USER: {reply}");
        let reply = client.command(&format!("PASS {password}"));
        assert!(reply.starts_with("230"), "PASS: {reply}");
        let reply = client.command("TYPE I");
        assert!(reply.starts_with("200"), "TYPE I: {reply}");
        client
    }

    /// Sends `line` and returns the whole reply, its lines joined by `\n`.
    pub fn command(&mut self, line: &str) -> String {
        self.control
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send a command");
        self.reply()
    }

    /// Reads one reply: up to the line that starts with its code and a space.
    fn reply(&mut self) -> String {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            let read = self.control.read_line(&mut line).expect("read a reply");
            assert!(read > 0, "the server closed the control connection");
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            let code = lines.first().unwrap_or(&line)[..3.min(line.len())].to_owned();
            let last = line.len() >= 4
                && line.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                && line.as_bytes()[3] == b' '
                && line.starts_with(&code);
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Opens a passive data connection; the refusal's reply if there is none.
    fn passive(&mut self) -> Result<TcpStream, String> {
        let reply = self.command("PASV");
        if !reply.starts_with("227") {
            return Err(reply);
        }
        let numbers: Vec<u16> = reply
            .split(['(', ')'])
            .nth(1)
            .unwrap_or_else(|| panic!("PASV reply without an address: {reply}"))
            .split(',')
            .map(|n| n.trim().parse().unwrap())
            .collect();
        let addr = format!(
            "{}.{}.{}.{}:{}",
            numbers[0],
            numbers[1],
            numbers[2],
            numbers[3],
            numbers[4] * 256 + numbers[5]
        );
        let data = TcpStream::connect(addr).expect("connect the data connection");
        data.set_read_timeout(Some(READ_LIMIT)).unwrap();
        Ok(data)
    }

    /// Sends a command that sends data (`RETR`, `LIST`, `MLSD`) and returns
    /// the final reply with what arrived (nothing when it was refused).
    pub fn download(&mut self, command: &str) -> (String, Vec<u8>) {
        let mut data = match self.passive() {
            Ok(data) => data,
            Err(reply) => return (reply, Vec::new()),
        };
        let reply = self.command(command);
        if !reply.starts_with('1') {
            return (reply, Vec::new());
        }
        let mut received = Vec::new();
        // A connection reset mid-transfer still leaves what arrived to judge.
        let _ = data.read_to_end(&mut received);
        drop(data);
        (self.reply(), received)
    }

    /// Sends a command that receives data (`STOR`, `APPE`) with `content`
    /// and returns the final reply (the refusal when it was refused).
    pub fn upload(&mut self, command: &str, content: &[u8]) -> String {
        let mut data = match self.passive() {
            Ok(data) => data,
            Err(reply) => return reply,
        };
        let reply = self.command(command);
        if !reply.starts_with('1') {
            return reply;
        }
        // The server may refuse part-way (a quota); its reply says so.
        let _ = data.write_all(content);
        let _ = data.shutdown(Shutdown::Write);
        drop(data);
        self.reply()
    }
}
