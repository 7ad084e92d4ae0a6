//! [`BrokerError`]: why the broker could not start; [`ReloadError`]: why a
//! reload (SIGHUP) kept some files as they were.

use std::net::SocketAddr;

use crate::auth::state::AuthError;
use crate::config::ConfigError;
use crate::persist::PersistError;
use crate::tls::TlsError;

/// Why [`Broker::start`](crate::Broker::start) failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The password or ACL file could not be loaded.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A listener's TLS certificate, key or client CA could not be used.
    #[error("listener {addr}: {source}")]
    Tls {
        /// The listener's address from the configuration.
        addr: SocketAddr,
        /// Why.
        source: TlsError,
    },
    /// The data directory cannot be used (not its contents: damaged files
    /// are recovered from, never a reason to stop).
    #[error(transparent)]
    Persistence(#[from] PersistError),
}

/// Why [`Broker::reload`](crate::Broker::reload) failed, for each file that
/// could not be loaded; whatever failed keeps its previous version.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ReloadError(pub Vec<String>);
