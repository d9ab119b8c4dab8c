//! Remote command execution: the course's remote CMD, authenticated by keys
//! and encrypted end to end.
//!
//! A session is a Noise XX handshake ([`channel`]) in which the client checks
//! the server's key against its `known_hosts` and the server checks the
//! client's against its `authorized_keys` ([`keys`]); then [`wire`] messages
//! run commands and carry their streams. The server side is [`server`] (one
//! connection), [`policy`] (what may run, as whom) and [`process`] (process
//! groups, killing and reaping); [`client`] is what `sockit exec` runs. The
//! threat model and the message formats are in `docs/protocol.md`.

pub mod cgroup;
pub mod channel;
pub mod client;
pub mod keys;
pub mod policy;
pub mod process;
pub mod server;
pub mod wire;

use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};

use crate::config::ExecSettings;
use crate::endpoint::{self, Endpoint, Origin, SetupError, SocketFile};
use crate::listener;
use crate::shutdown::Shutdown;
use crate::throttle::{Policy as ThrottlePolicy, Throttle};
use keys::{AuthorizedKeys, KeyPair, PublicKey};
use server::ExecContext;

/// `shell = false` refuses shells by their file only: a client allowed any
/// program still reaches one through `env`, `busybox`, `find -exec`, `awk`
/// or an interpreter, so it holds only with an allow list.
const SHELL_WITHOUT_ALLOW_LIST: &str = "exec: shell = false without an allow list does not stop shell commands (env, busybox, awk and interpreters start shells): list the programs clients may run in [exec] allow";

const TCP_ORIGIN: Origin = Origin {
    service: "exec",
    protocol: "tcp",
    flag: "sockit serve exec --addr ADDR",
    config_key: "exec.port",
};

const UNIX_ORIGIN: Origin = Origin {
    service: "exec",
    protocol: "unix",
    flag: "sockit serve exec --unix PATH",
    config_key: "exec.unix_path",
};

/// Why the exec service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExecSetupError {
    #[error("exec: no client key is authorized in {0}")]
    NoClients(std::path::PathBuf),
    #[error("exec")]
    Keys(#[from] keys::KeyError),
    #[error("exec")]
    Policy(#[from] policy::PolicyError),
}

impl ExecSetupError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ExecSetupError::NoClients(path) => Some(format!(
                "on the client, run `sockit keygen`; then add its output and a name as a line `<public key> <name>` to {}",
                path.display()
            )),
            ExecSetupError::Keys(err) => err.hint(),
            ExecSetupError::Policy(err) => err.hint(),
        }
    }
}

/// The exec service with its sockets bound and its key loaded.
#[derive(Debug)]
pub struct Exec {
    tcp: Option<TcpListener>,
    unix: Option<(UnixListener, SocketFile)>,
    context: Arc<ExecContext>,
    max_connections: usize,
    created_key: bool,
}

impl Exec {
    /// Whether the service has anyone to serve: `authorized_keys` lists a key.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn has_clients(settings: &ExecSettings) -> Result<bool, ExecSetupError> {
        Ok(!AuthorizedKeys::load(&settings.authorized_keys)?.is_empty())
    }

    /// Loads (or creates) the server key, checks the policy and binds.
    ///
    /// # Errors
    /// No authorized key, an unusable key or policy, or a socket that cannot
    /// be bound.
    pub async fn bind(settings: &ExecSettings) -> Result<Exec, SetupError> {
        if !Exec::has_clients(settings)? {
            return Err(ExecSetupError::NoClients(settings.authorized_keys.clone()).into());
        }
        let policy = policy::Policy::new(&settings.policy).map_err(ExecSetupError::from)?;
        if !settings.policy.shell && settings.policy.allow.is_empty() {
            tracing::warn!("{SHELL_WITHOUT_ALLOW_LIST}");
        }
        let (keys, created_key) =
            KeyPair::load_or_create(&settings.key_file).map_err(ExecSetupError::from)?;
        let tcp = match settings.tcp {
            Some(addr) => Some(endpoint::bind_tcp(addr, TCP_ORIGIN).await?),
            None => None,
        };
        let unix = match &settings.unix {
            Some(path) => Some(endpoint::bind_unix(path, UNIX_ORIGIN)?),
            None => None,
        };
        let context = ExecContext {
            keys,
            authorized_keys: settings.authorized_keys.clone(),
            policy,
            throttle: Throttle::new(ThrottlePolicy::default(), 10_000),
            max_per_client: settings.max_per_client,
            max_commands: settings.max_commands,
            running: Default::default(),
        };
        Ok(Exec {
            tcp,
            unix,
            context: Arc::new(context),
            max_connections: settings.max_connections,
            created_key,
        })
    }

    /// The server's public key, which clients pin.
    pub fn public_key(&self) -> PublicKey {
        self.context.keys.public()
    }

    /// True when this start created the server key.
    pub fn created_key(&self) -> bool {
        self.created_key
    }

    /// The bound sockets.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let tcp = self
            .tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|addr| Endpoint {
                service: "exec",
                protocol: "tcp",
                address: addr.to_string(),
            });
        let unix = self.unix.iter().map(|(_, file)| Endpoint {
            service: "exec",
            protocol: "unix",
            address: file.path().display().to_string(),
        });
        tcp.chain(unix).collect()
    }

    /// Serves until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(tcp) = self.tcp {
            let context = self.context.clone();
            tasks.spawn(listener::run(
                tcp,
                "exec",
                self.max_connections,
                shutdown.clone(),
                move |stream, peer, shutdown| {
                    server::session(stream, peer, context.clone(), shutdown)
                },
            ));
        }
        if let Some((unix, file)) = self.unix {
            let context = self.context.clone();
            tasks.spawn(async move {
                listener::run(
                    unix,
                    "exec",
                    self.max_connections,
                    shutdown,
                    move |stream, peer, shutdown| {
                        server::session(stream, peer, context.clone(), shutdown)
                    },
                )
                .await;
                drop(file);
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}
