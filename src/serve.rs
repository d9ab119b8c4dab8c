//! `sockit serve`: bind every enabled service, then run them all until stopped.
//!
//! Binding happens first and all at once, so a taken port fails the whole start
//! before anything is printed or served. [`Services::run`] then serves until the
//! shared [`Shutdown`] is requested; draining live sessions is the caller's
//! step ([`Shutdown::drain`]), as the caller owns the signal handling.

use std::sync::Arc;

use crate::bot::Bot;
use crate::config::Settings;
use crate::echo::Echo;
use crate::endpoint::{Endpoint, SetupError};
use crate::exec::Exec;
use crate::ftp::Ftp;
use crate::http::{self, AppState, Http};
use crate::quota::Quotas;
use crate::shutdown::Shutdown;
use crate::users::UserStore;

/// Every enabled service, bound and ready to run.
#[derive(Debug)]
pub struct Services {
    echo: Option<Echo>,
    http: Option<Http>,
    bot: Option<Bot>,
    ftp: Option<Ftp>,
    exec: Option<Exec>,
    users: Arc<UserStore>,
    quotas: Arc<Quotas>,
}

impl Services {
    /// Binds the sockets of every service the settings enable.
    ///
    /// # Errors
    /// The first service that cannot be set up.
    pub async fn bind(settings: &Settings) -> Result<Services, SetupError> {
        let echo = match &settings.echo {
            Some(echo) => Some(Echo::bind(echo).await?),
            None => None,
        };
        let http = match &settings.http {
            Some(http) => Some(Http::bind(http).await?),
            None => None,
        };
        let bot = match &settings.bot {
            Some(bot) => Some(Bot::bind(bot).await?),
            None => None,
        };
        let ftp = match &settings.ftp {
            Some(ftp) => Some(Ftp::bind(ftp).await?),
            None => None,
        };
        let exec = match &settings.exec {
            Some(exec) => Some(Exec::bind(exec).await?),
            None => None,
        };
        let users = Arc::new(UserStore::open(&settings.data_dir)?);
        Ok(Services {
            echo,
            http,
            bot,
            ftp,
            exec,
            users,
            quotas: Arc::new(Quotas::default()),
        })
    }

    /// The exec service's public key, when it runs.
    pub fn exec_key(&self) -> Option<(crate::exec::keys::PublicKey, bool)> {
        self.exec
            .as_ref()
            .map(|exec| (exec.public_key(), exec.created_key()))
    }

    /// One line per listening socket, in start order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let echo = self.echo.iter().flat_map(Echo::endpoints);
        let http = self.http.iter().flat_map(Http::endpoints);
        let bot = self.bot.iter().flat_map(Bot::endpoints);
        let ftp = self.ftp.iter().flat_map(Ftp::endpoints);
        let exec = self.exec.iter().flat_map(Exec::endpoints);
        echo.chain(http).chain(bot).chain(ftp).chain(exec).collect()
    }

    /// Runs every service until `shutdown` is requested.
    pub async fn run(self, shutdown: Shutdown) {
        let endpoints = self.endpoints();
        let mut running = tokio::task::JoinSet::new();
        if let Some(echo) = self.echo {
            running.spawn(echo.run(shutdown.clone()));
        }
        if let Some(ftp) = self.ftp {
            running.spawn(ftp.run(self.users.clone(), self.quotas.clone(), shutdown.clone()));
        }
        if let Some(exec) = self.exec {
            running.spawn(exec.run(shutdown.clone()));
        }
        if let Some(bot) = self.bot {
            running.spawn(bot.run(shutdown.clone()));
        }
        if let Some(server) = self.http {
            let secure = server.is_tls();
            let state = AppState::new(
                &endpoints,
                self.users.clone(),
                self.quotas.clone(),
                secure,
                shutdown.clone(),
            );
            let app = http::router(state);
            running.spawn(server.run(app, shutdown.clone()));
        }
        while running.join_next().await.is_some() {}
    }
}
