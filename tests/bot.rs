//! The 10086 bot over real connections: the built-in flow in both languages,
//! hostile input, many callers at once, idle callers, other encodings and
//! broken scripts.

mod support;

use std::time::Duration;

use sockit::bot::Bot;
use sockit::config::BotConfig;
use sockit::shutdown::Shutdown;
use support::{bounded, run_sockit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(idle_timeout: Duration) -> BotConfig {
    BotConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        script: None,
        encoding: encoding_rs::UTF_8,
        idle_timeout,
        max_line: 64,
        max_connections: 1000,
    }
}

async fn start(config: BotConfig) -> (std::net::SocketAddr, Shutdown) {
    let bot = Bot::bind(&config).await.expect("bot binds");
    let addr = bot.endpoints()[0].address.parse().unwrap();
    let shutdown = Shutdown::new(Duration::from_secs(1));
    tokio::spawn(bot.run(shutdown.clone()));
    (addr, shutdown)
}

/// A caller: reads until the bot's prompt marker, line by line.
struct Caller {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Caller {
    async fn dial(addr: std::net::SocketAddr) -> Caller {
        Caller {
            stream: TcpStream::connect(addr).await.unwrap(),
            pending: Vec::new(),
        }
    }

    /// Reads until the next "> " prompt and returns the text before it.
    async fn until_prompt(&mut self) -> String {
        bounded("a prompt", async {
            loop {
                if let Some(at) = find(&self.pending, b"\r\n> ") {
                    let text = String::from_utf8_lossy(&self.pending[..at]).into_owned();
                    self.pending.drain(..at + 4);
                    return text;
                }
                let mut buf = [0u8; 4096];
                let read = self.stream.read(&mut buf).await.unwrap();
                assert!(
                    read > 0,
                    "the bot hung up; so far: {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
                self.pending.extend_from_slice(&buf[..read]);
            }
        })
        .await
    }

    /// Reads everything until the bot closes the connection.
    async fn until_hangup(&mut self) -> String {
        bounded("the hang-up", async {
            let mut rest = std::mem::take(&mut self.pending);
            self.stream.read_to_end(&mut rest).await.unwrap();
            String::from_utf8_lossy(&rest).into_owned()
        })
        .await
    }

    async fn say(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn the_chinese_flow_walks_every_menu() {
    let (addr, _shutdown) = start(config(Duration::from_secs(60))).await;
    let mut caller = Caller::dial(addr).await;
    assert!(caller.until_prompt().await.contains("欢迎致电 10086"));
    caller.say(b"1\r\n").await;
    assert!(caller.until_prompt().await.contains("0  人工服务"));
    caller.say(b"1\n").await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("您本月话费余额为 58.60 元.")
    );
    caller.say(b"2\n").await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("您本月剩余国内流量")
    );
    caller.say(b"3\n").await;
    assert!(caller.until_prompt().await.contains("套餐办理"));
    caller.say(b"1\n").await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("已为您办理 5G 畅享套餐")
    );
    caller.say(b"0\n").await;
    assert!(caller.until_prompt().await.starts_with("通话可能会被录音"));
    caller.say("我要投诉\n".as_bytes()).await;
    assert!(caller.until_prompt().await.starts_with("您的留言已记录"));
    caller.say(b"0\n").await;
    caller.until_prompt().await;
    caller.say(b"42\n").await;
    assert!(caller.until_prompt().await.starts_with("请重新输入."));
    caller.say(b"exit\n").await;
    assert!(caller.until_hangup().await.contains("再见"));
}

#[tokio::test]
async fn the_english_flow_walks_every_menu() {
    let (addr, _shutdown) = start(config(Duration::from_secs(60))).await;
    let mut caller = Caller::dial(addr).await;
    caller.until_prompt().await;
    caller.say(b"2\n").await;
    assert!(caller.until_prompt().await.contains("Account balance"));
    caller.say(b"1\n").await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("Your balance this month")
    );
    caller.say(b"3\n").await;
    assert!(caller.until_prompt().await.contains("Plans:"));
    caller.say(b"2\n").await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("Your data top-up is active")
    );
    caller.say(b"9\n").await;
    assert!(caller.until_prompt().await.contains("Welcome to 10086"));
    caller.say(b"2\n  0  \n").await;
    caller.until_prompt().await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("This call may be recorded")
    );
    caller.say(b"QUIT\n").await;
    assert!(caller.until_hangup().await.contains("Goodbye"));
}

#[tokio::test]
async fn bad_input_gets_an_answer_and_the_session_stays_in_step() {
    let (addr, _shutdown) = start(config(Duration::from_secs(60))).await;
    let mut caller = Caller::dial(addr).await;
    caller.until_prompt().await;
    // Invalid UTF-8 (0xFF is left out: on a line service it starts a telnet command).
    caller.say(b"\xc3(\xa0\xa1\xfe\n").await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("Unreadable input: not UTF-8")
    );
    // Binary garbage that happens to be valid UTF-8 is just an unknown choice.
    caller.say(b"\x01\x02\x03\x7f\n").await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("请重新输入 / Please choose")
    );
    // A line over the 64-byte limit, then a good one in the same write.
    let mut long = vec![b'9'; 500];
    long.extend_from_slice(b"\n2\n");
    caller.say(&long).await;
    assert!(
        caller
            .until_prompt()
            .await
            .starts_with("Line too long (at most 64 bytes)")
    );
    assert!(
        caller.until_prompt().await.contains("Account balance"),
        "the next line is read normally"
    );
}

#[tokio::test]
async fn telnet_negotiation_is_refused_and_filtered() {
    let (addr, _shutdown) = start(config(Duration::from_secs(60))).await;
    let mut caller = Caller::dial(addr).await;
    caller.until_prompt().await;
    // What a telnet client opens with: DO/WILL requests and a subnegotiation,
    // then "2" with telnet's CR NUL line end style.
    caller
        .say(&[
            255, 253, 1, 255, 251, 31, 255, 250, 24, 1, 255, 240, b'2', b'\r', 0, b'\r', b'\n',
        ])
        .await;
    let text = caller.until_prompt().await;
    assert!(text.contains("Account balance"), "{text:?}");
}

#[tokio::test]
async fn telnet_option_requests_are_answered_wont_and_dont() {
    let (addr, _shutdown) = start(config(Duration::from_secs(60))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&[255, 253, 1, 255, 251, 3]).await.unwrap();
    let mut seen = Vec::new();
    bounded("telnet answers", async {
        while find(&seen, &[255, 252, 1]).is_none() || find(&seen, &[255, 254, 3]).is_none() {
            let mut buf = [0u8; 4096];
            let read = stream.read(&mut buf).await.unwrap();
            assert!(read > 0);
            seen.extend_from_slice(&buf[..read]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_callers_walk_the_menu_at_once() {
    // 500 callers and 500 sessions in this one process: past the usual 1024.
    sockit::listener::raise_open_file_limit();
    let (addr, _shutdown) = start(config(Duration::from_secs(60))).await;
    let mut callers = tokio::task::JoinSet::new();
    for n in 0..500u32 {
        callers.spawn(async move {
            let mut caller = Caller::dial(addr).await;
            caller.until_prompt().await;
            let (language, expected) = if n % 2 == 0 {
                (b"1\n", "您本月话费余额")
            } else {
                (b"2\n", "Your balance")
            };
            caller.say(language).await;
            caller.until_prompt().await;
            caller.say(b"1\n").await;
            let text = caller.until_prompt().await;
            assert!(text.starts_with(expected), "caller {n}: {text:?}");
            caller.say(b"exit\n").await;
            caller.until_hangup().await;
        });
    }
    bounded("500 callers", async {
        while let Some(done) = callers.join_next().await {
            done.expect("a caller failed");
        }
    })
    .await;
}

#[tokio::test]
async fn an_idle_caller_is_told_and_disconnected() {
    let (addr, _shutdown) = start(config(Duration::from_millis(300))).await;
    let mut caller = Caller::dial(addr).await;
    caller.until_prompt().await;
    let farewell = caller.until_hangup().await;
    assert!(farewell.contains("No input for"), "{farewell:?}");
}

#[tokio::test]
async fn gbk_callers_get_gbk() {
    let mut gbk = config(Duration::from_secs(60));
    gbk.encoding = encoding_rs::GBK;
    let (addr, _shutdown) = start(gbk).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"1\n1\n").await.unwrap();
    let mut received = Vec::new();
    let (expected, _, _) = encoding_rs::GBK.encode("您本月话费余额为 58.60 元.");
    bounded("a GBK reply", async {
        while find(&received, &expected).is_none() {
            let mut buf = [0u8; 4096];
            let read = stream.read(&mut buf).await.unwrap();
            assert!(read > 0, "hung up");
            received.extend_from_slice(&buf[..read]);
        }
    })
    .await;
    assert!(
        std::str::from_utf8(&received).is_err(),
        "the bytes are GBK, not UTF-8"
    );
}

#[test]
fn a_broken_script_stops_the_start_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("menu.toml");
    std::fs::write(
        &script,
        "start = \"main\"\nfallback = \"?\"\n[states.main]\nprompt = \"hi\"\noptions = [ { input = \"1\", next = \"gone\" } ]\n",
    )
    .unwrap();
    let output = run_sockit(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "bot",
            "--addr",
            "127.0.0.1:0",
            "--script",
            script.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "sockit: bot: {}: line 5: no state named \"gone\"",
            script.display()
        )
    );
}

#[test]
fn sockit_connect_talks_to_the_bot() {
    let server = support::ServeProcess::serve(&["bot", "--addr", "127.0.0.1:0"], 1);
    let output = run_sockit(
        &["connect", "tcp", &server.address("bot", "tcp")],
        b"2\n1\nexit\n",
    );
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("Your balance this month is 58.60 CNY."),
        "{text}"
    );
    assert!(text.trim_end().ends_with("再见 / Goodbye."), "{text}");
}
