//! The FTP server (RFC 959, with EPSV/EPRT from RFC 2428, SIZE, MDTM,
//! REST and MLSD/MLST from RFC 3659, and TLS: `AUTH TLS` from RFC 4217 on
//! the control socket, or implicit FTPS on a second one): the course's
//! multi-user file server, for real FTP clients.
//!
//! [`command`] parses control lines (pure); [`session`] runs one control
//! connection; [`transfer`] copies files over data connections; [`stream`]
//! is a connection in the clear or in TLS; [`listing`] formats LIST and MLSD
//! lines. Users, homes, permissions and quotas are the
//! shared ones (`users`, `vfs`, `quota`) that the HTTP console uses too.
//! What is built, and how uploads are kept for resuming, is in
//! `docs/ftp.md`.

pub mod command;
pub mod listing;
pub mod session;
pub mod stream;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;

use crate::config::FtpSettings;
use crate::endpoint::{self, Endpoint, Origin, SetupError};
use crate::listener;
use crate::quota::Quotas;
use crate::shutdown::Shutdown;
use crate::throttle::{Policy, Throttle};
use crate::tls;
use crate::users::UserStore;
use crate::vfs;
use session::{FtpContext, Start};

const ORIGIN: Origin = Origin {
    service: "ftp",
    protocol: "tcp",
    flag: "sockit serve ftp --addr ADDR",
    config_key: "ftp.port",
};

const IMPLICIT_TLS_ORIGIN: Origin = Origin {
    service: "ftp",
    protocol: "ftps",
    flag: "sockit serve ftp --implicit-tls-addr ADDR",
    config_key: "ftp.implicit_tls_port",
};

/// The FTP service with its control sockets bound.
pub struct Ftp {
    listener: TcpListener,
    /// Implicit FTPS: TLS from the first byte.
    implicit_tls: Option<TcpListener>,
    settings: FtpSettings,
    tls: Option<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Ftp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ftp")
            .field("listener", &self.listener)
            .field("implicit_tls", &self.implicit_tls)
            .field("settings", &self.settings)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Ftp {
    /// Loads the TLS files, if any, and binds the control address (and the
    /// implicit FTPS one, if set).
    ///
    /// # Errors
    /// The TLS files cannot be used, or the address cannot be bound.
    pub async fn bind(settings: &FtpSettings) -> Result<Ftp, SetupError> {
        let tls = match &settings.tls {
            Some(files) => {
                // Each session makes its own acceptors from it
                // (stream::SessionTls).
                let config =
                    tls::server_config(files, &[b"ftp"]).map_err(|source| SetupError::Tls {
                        service: "ftp",
                        source,
                    })?;
                Some(Arc::new(config))
            }
            None => None,
        };
        let implicit_tls = match settings.implicit_tls_addr {
            Some(addr) => Some(endpoint::bind_tcp(addr, IMPLICIT_TLS_ORIGIN).await?),
            None => None,
        };
        Ok(Ftp {
            listener: endpoint::bind_tcp(settings.addr, ORIGIN).await?,
            implicit_tls,
            settings: settings.clone(),
            tls,
        })
    }

    /// The bound control sockets: `tcp`, and `ftps` for implicit FTPS.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let plain = Some(("tcp", &self.listener));
        let implicit_tls = self
            .implicit_tls
            .as_ref()
            .map(|listener| ("ftps", listener));
        [plain, implicit_tls]
            .into_iter()
            .flatten()
            .filter_map(|(protocol, listener)| {
                let addr = listener.local_addr().ok()?;
                Some(Endpoint {
                    service: "ftp",
                    protocol,
                    address: addr.to_string(),
                })
            })
            .collect()
    }

    /// Serves until shutdown, with the shared users and quotas.
    pub async fn run(self, users: Arc<UserStore>, quotas: Arc<Quotas>, shutdown: Shutdown) {
        let context = Arc::new(FtpContext {
            users,
            quotas,
            throttle: Throttle::new(Policy::default(), 10_000),
            idle_timeout: self.settings.idle_timeout,
            data_timeout: self.settings.data_timeout,
            max_per_ip: self.settings.max_per_ip,
            per_ip: Default::default(),
            passive_ports: self.settings.passive_ports.clone(),
            passive_address: self.settings.passive_address,
            uploading: Default::default(),
            tls: self.tls,
            require_tls: self.settings.require_tls,
            require_tls_resumption: self.settings.require_tls_resumption,
            max_rate: self.settings.max_rate,
            anonymous_root: self.settings.anonymous_root.clone(),
        });
        let sweeping = tokio::spawn(sweep_partial_uploads(
            context.clone(),
            self.settings.keep_partial_uploads,
        ));
        // Each socket serves up to max_connections sessions; the limit per
        // address counts both.
        let serve = |listener: TcpListener, start: Start| {
            let context = context.clone();
            listener::run(
                listener,
                "ftp",
                self.settings.max_connections,
                shutdown.clone(),
                move |stream, _peer, shutdown| {
                    session::session(stream, start, context.clone(), shutdown)
                },
            )
        };
        match self.implicit_tls {
            Some(implicit_tls) => {
                tokio::join!(
                    serve(self.listener, Start::Plain),
                    serve(implicit_tls, Start::ImplicitTls)
                );
            }
            None => serve(self.listener, Start::Plain).await,
        }
        sweeping.abort();
    }
}

/// How often kept partial uploads are looked over.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Every [`SWEEP_EVERY`], from the start, removes partial uploads left
/// untouched for `keep` from every user's home, and gives their bytes back
/// to the quotas.
async fn sweep_partial_uploads(context: Arc<FtpContext>, keep: Duration) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        let Ok(users) = context.users.list() else {
            continue;
        };
        let Some(cutoff) = std::time::SystemTime::now().checked_sub(keep) else {
            continue;
        };
        for user in users {
            let home = user.home.clone();
            let swept = tokio::task::spawn_blocking(move || {
                // The quotas know a home by its canonical path, as the jail gives it.
                let root = home.canonicalize()?;
                vfs::remove_stale_uploads(&root, cutoff)
                    .map(|(removed, freed)| (root, removed, freed))
            })
            .await;
            if let Ok(Ok((root, removed, freed))) = swept
                && removed > 0
            {
                let freed_usage = crate::quota::Usage {
                    bytes: freed,
                    entries: removed as u64,
                };
                context.quotas.freed(&user.name, &root, freed_usage);
                tracing::info!(user = %user.name, removed, freed, "removed stale partial uploads");
            }
        }
    }
}
