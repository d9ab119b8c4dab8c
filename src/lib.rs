//! sockit: the classic client/server systems of a network-programming course,
//! built as one Rust toolkit.
//!
//! # Layout
//!
//! - [`address`]: `HOST:PORT` and `[IPv6]:PORT` as every client command parses them.
//! - [`config`]: the TOML file model, the embedded default, resolution into `Settings`.
//! - [`shutdown`]: the stop token, task tracker and grace period every service shares.
//! - [`endpoint`]: binding listening sockets (TCP, UDP, Unix) and naming them.
//! - [`listener`]: the one accept loop stream services run (connection limit, close log line).
//! - [`frame`]: the length-prefixed frame codec that puts message boundaries on TCP.
//! - [`echo`]: the uppercase echo service over TCP, UDP and Unix sockets.
//! - [`exec`]: remote command execution over a Noise channel (keys, policy, process groups).
//! - [`ftp`]: the FTP server (first part: passive mode, core commands).
//! - [`http`]: the browser console: Hello World, health, metrics, live dashboard.
//! - [`bench`]: load generators that check every reply, and the models side by side.
//! - [`bot`]: the 10086 menu bot (menu scripts, line sessions, telnet-safe).
//! - [`connect`]: the client behind `sockit connect` (prompt loop, `nc`-style pipe).
//! - [`size`]: byte sizes as people write them (`500M`) and read them (`1.5 KiB`).
//! - [`stats`]: live per-service counters and recent events, for the HTTP console.
//! - [`throttle`]: per-address delays and lockouts after failed logins.
//! - [`tools`]: the socket utilities: well-known ports, resolve, probe.
//! - [`tls`]: TLS server configuration from PEM files.
//! - [`users`]: the user store (users.toml, argon2id) shared by FTP, HTTP and `sockit user`.
//! - [`vfs`]: the jail every client path is resolved through (FTP, HTTP).
//! - [`quota`]: per-user byte quotas shared by every service that writes into homes.
//! - [`serve`]: binds and runs every enabled service for `sockit serve`.
//!
//! The binary (`src/main.rs`, `src/cli/`) only parses arguments, sets up logging
//! and a runtime, and presents results; everything a test can drive in-process
//! lives here.

pub mod address;
pub mod bench;
pub mod bot;
pub mod config;
pub mod connect;
pub mod echo;
pub mod endpoint;
pub mod exec;
pub mod frame;
pub mod ftp;
pub mod hex;
pub mod http;
pub mod listener;
pub mod memory;
pub mod quota;
pub mod serve;
pub mod shutdown;
pub mod size;
pub mod stats;
pub mod storage;
pub mod throttle;
pub mod tls;
pub mod tools;
pub mod users;
pub mod vfs;
