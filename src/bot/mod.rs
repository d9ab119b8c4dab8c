//! The 10086 menu bot: the course's customer-service robot as a line-based
//! TCP service, driven by a menu script.
//!
//! [`script`] parses and validates menu scripts (the built-in one reproduces
//! the course's 10086 flow in Chinese and English); [`session`] runs one
//! caller's conversation. Connections come from the shared accept loop.

pub mod script;
pub mod session;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::BotConfig;
use crate::endpoint::{self, Endpoint, Origin, SetupError};
use crate::listener;
use crate::shutdown::Shutdown;
use script::Script;
use session::BotSettings;

const ORIGIN: Origin = Origin {
    service: "bot",
    protocol: "tcp",
    flag: "sockit serve bot --addr ADDR",
    config_key: "bot.port",
};

/// The bot with its socket bound and its script loaded.
#[derive(Debug)]
pub struct Bot {
    listener: TcpListener,
    settings: Arc<BotSettings>,
    max_connections: usize,
}

impl Bot {
    /// Loads the script and binds the address.
    ///
    /// # Errors
    /// The script is invalid, or the address cannot be bound.
    pub async fn bind(config: &BotConfig) -> Result<Bot, SetupError> {
        let script = match &config.script {
            Some(path) => Script::load(path)?,
            None => Script::built_in(),
        };
        Ok(Bot {
            listener: endpoint::bind_tcp(config.addr, ORIGIN).await?,
            settings: Arc::new(BotSettings {
                script: Arc::new(script),
                encoding: config.encoding,
                idle_timeout: config.idle_timeout,
                max_line: config.max_line,
            }),
            max_connections: config.max_connections,
        })
    }

    /// The bound socket.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.listener
            .local_addr()
            .map(|addr| Endpoint {
                service: "bot",
                protocol: "tcp",
                address: addr.to_string(),
            })
            .into_iter()
            .collect()
    }

    /// Serves callers until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let settings = self.settings;
        listener::run(
            self.listener,
            "bot",
            self.max_connections,
            shutdown,
            move |stream, _peer, shutdown| session::session(stream, settings.clone(), shutdown),
        )
        .await
    }
}
