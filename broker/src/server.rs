//! [`Broker`]: binds the listeners, accepts connections under the
//! `max_connections` cap, runs the `$SYS` task, reloads the security files
//! (SIGHUP), and shuts everything down. On TLS listeners the handshake runs
//! in the connection's own task, never in the accept loop.
//!
//! With persistence on, start-up opens the data directory before anything
//! is served, restores retained messages and parked persistent sessions
//! from it, and says in one warning what recovery had to drop; shutdown
//! flushes the journal after the connections have closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::auth::state::{AuthConfig, FileAuthorizer};
use crate::auth::Authorizer;
use crate::config::Config;
use crate::connection;
use crate::error::{BrokerError, ReloadError};
use crate::handshake;
use crate::http::MetricsListener;
use crate::keepalive;
use crate::metrics::{ListenerUp, Metrics, Stats};
use crate::persist::{Journal, PersistError, Restored};
use crate::shards::Shards;
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::sys;
use crate::tls::{PeerIdentity, TlsListener};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long [`Broker::shutdown`] waits for connection tasks to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// Refusals of excess connections answered at once; beyond that the socket
/// is just closed.
const MAX_REFUSALS_IN_PROGRESS: usize = 64;
/// Pause after a failed `accept` (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running broker. Dropping it stops the broker without waiting;
/// [`Broker::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct Broker {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    shutdown: Shutdown,
    /// The `[auth]` files, when the broker loaded them (reloadable).
    file_auth: Option<Arc<FileAuthorizer>>,
    /// The TLS listeners by configured address, for reloading.
    tls: Vec<(SocketAddr, Arc<TlsListener>)>,
    /// The bound `[metrics]` HTTP listener.
    metrics_addr: Option<SocketAddr>,
}

impl Broker {
    /// Starts a broker: checks `config`, loads the `[auth]` files and the
    /// listeners' certificates, binds every listener and spawns the tasks.
    /// Returns once all listeners accept connections.
    pub async fn start(config: Config) -> Result<Broker, BrokerError> {
        Broker::start_sharded(config, Shards::local()).await
    }

    /// Like [`Broker::start`], with client connections spread over
    /// `shards` ([`crate::shards`]); the listeners and the broker's own
    /// tasks run on the calling runtime, which is one of the shards.
    pub async fn start_sharded(config: Config, shards: Shards) -> Result<Broker, BrokerError> {
        config.validate("configuration")?;
        let auth = Arc::new(FileAuthorizer::load(&config.auth)?);
        Broker::start_inner(config, auth.clone(), Some(auth), shards).await
    }

    /// Like [`Broker::start`], with an access-control hook instead of the
    /// `[auth]` files.
    pub async fn start_with_auth(
        config: Config,
        auth: Arc<dyn Authorizer>,
    ) -> Result<Broker, BrokerError> {
        Broker::start_inner(config, auth, None, Shards::local()).await
    }

    async fn start_inner(
        mut config: Config,
        auth: Arc<dyn Authorizer>,
        file_auth: Option<Arc<FileAuthorizer>>,
        shards: Shards,
    ) -> Result<Broker, BrokerError> {
        for l in config.remove_absent_listeners() {
            info!(
                "listener {} skipped: optional, and its certificate or key file is missing",
                l.bind
            );
        }
        config.validate("configuration")?;
        // Certificates first: a bad file stops start-up before any bind.
        let mut tls = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let loaded = l.tls.clone().map(TlsListener::load).transpose();
            let loaded = loaded.map_err(|source| BrokerError::Tls {
                addr: l.bind,
                source,
            })?;
            tls.push(loaded.map(Arc::new));
        }
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut local_addrs = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let bind_err = |source| BrokerError::Bind {
                addr: l.bind,
                source,
            };
            let listener = TcpListener::bind(l.bind).await.map_err(bind_err)?;
            local_addrs.push(listener.local_addr().map_err(bind_err)?);
            listeners.push(listener);
        }
        let metrics = MetricsListener::bind(&config.metrics).await?;
        let permits = Arc::new(Semaphore::new(
            config.limits.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        let opened = open_journal(&config).await?;
        let journal = opened.as_ref().map(|(j, _)| j.clone());
        let shared = Arc::new(Shared::with_journal(config, auth, journal));
        if let Some((_, restored)) = opened {
            restore(&shared, restored);
        }
        let shutdown = Shutdown::new();
        let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_PROGRESS));
        let anonymous = file_auth.as_ref().map(|a| a.current().allow_anonymous());
        for ((listener, addr), tls) in listeners.into_iter().zip(&local_addrs).zip(&tls) {
            announce(*addr, tls.as_deref(), anonymous);
            let accept = Acceptor {
                listener,
                tls: tls.clone(),
                shared: shared.clone(),
                permits: permits.clone(),
                refusals: refusals.clone(),
                shutdown: shutdown.clone(),
                shards: shards.clone(),
                _up: shared.metrics.listener_up(),
            };
            shutdown.spawn(accept.run());
        }
        shutdown.spawn(sys::run(shared.clone(), shutdown.token().clone()));
        shutdown.spawn(keepalive::run(shared.clone(), shutdown.token().clone()));
        // Connections do not each wait on the shutdown token (every idle
        // one would carry the wait): they are kicked, like a takeover, and
        // see the token cancelled when they wake.
        let (token, registered) = (shutdown.token().clone(), shared.clone());
        shutdown.spawn(async move {
            token.cancelled().await;
            registered.registry.kick_all();
        });
        let metrics_addr = metrics.map(|m| m.start(shared.clone(), &shutdown));
        let binds = shared.config.listeners.iter().map(|l| l.bind);
        let tls = binds
            .zip(tls)
            .filter_map(|(addr, t)| Some((addr, t?)))
            .collect();
        Ok(Broker {
            shared,
            local_addrs,
            shutdown,
            file_auth,
            tls,
            metrics_addr,
        })
    }

    /// Re-reads the password file, the ACL file and every listener's
    /// certificates (what SIGHUP does). Connected clients stay connected and
    /// are checked against the new files from their next packet on; new
    /// handshakes use the new certificates. Whatever fails to load keeps
    /// its previous version, and the error says which and why.
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.reload_files(None)
    }

    /// What SIGHUP does with a re-read configuration file: `[auth]` is
    /// applied from `config` (other password or ACL files, another
    /// `allow_anonymous`), and the files are re-read as in
    /// [`Broker::reload`]. Returns the other sections whose values changed
    /// and apply only after a restart.
    pub fn reload_config(&self, config: &Config) -> Result<Vec<&'static str>, ReloadError> {
        self.reload_files(Some(&config.auth))?;
        let running = &self.shared.config;
        let sections = [
            ("listeners", config.listeners != running.listeners),
            ("limits", config.limits != running.limits),
            ("sys", config.sys != running.sys),
            ("log", config.log != running.log),
            ("persistence", config.persistence != running.persistence),
            ("metrics", config.metrics != running.metrics),
        ];
        Ok(sections
            .into_iter()
            .filter_map(|(name, changed)| changed.then_some(name))
            .collect())
    }

    fn reload_files(&self, auth_config: Option<&AuthConfig>) -> Result<(), ReloadError> {
        let mut failed = Vec::new();
        if let Some(auth) = &self.file_auth {
            let reloaded = match auth_config {
                Some(config) => auth.reload_with(config),
                None => auth.reload(),
            };
            if let Err(e) = reloaded {
                failed.push(e.to_string());
            }
        }
        for (addr, tls) in &self.tls {
            if let Err(e) = tls.reload() {
                failed.push(format!("listener {addr}: {e}"));
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(ReloadError(failed)),
        }
    }

    /// The bound address of each listener, in configuration order (with the
    /// real port where the configuration said 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound address of the `[metrics]` HTTP listener (with the real
    /// port where the configuration said 0), if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The journal, when persistence is on.
    pub fn journal(&self) -> Option<&Journal> {
        self.shared.journal.as_ref()
    }

    /// The configuration the broker runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A snapshot of the statistics also published under `$SYS`.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops accepting, closes every client connection and waits (a few
    /// seconds at most) for the tasks to end, then flushes the journal:
    /// with persistence on, a restart finds every persistent session and
    /// retained message as they were. Wills are not published.
    pub async fn shutdown(&self) {
        if !self.shutdown.run(SHUTDOWN_GRACE).await {
            warn!("some connections did not close in time");
        }
        if let Some(journal) = self.shared.journal.clone() {
            if tokio::task::spawn_blocking(move || journal.close())
                .await
                .is_err()
            {
                warn!("the journal did not close cleanly");
            }
        }
        info!("broker stopped");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(journal) = &self.shared.journal {
            // Writes what was submitted and releases the directory, in the
            // background.
            journal.close_detached();
        }
    }
}

/// The start-up line of a listener: address, TLS or plain, and whether
/// anonymous clients get in (`None`: a custom authorizer decides). A
/// listener reachable from other hosts that lets anonymous clients in is
/// warned about, unless it requires client certificates.
fn announce(addr: SocketAddr, tls: Option<&TlsListener>, anonymous: Option<bool>) {
    let transport = tls.map_or_else(|| "plain".to_owned(), TlsListener::describe);
    let by_cert = tls.is_some_and(TlsListener::identity_as_username);
    let anonymous = anonymous.map(|allowed| allowed && !by_cert);
    let access = match anonymous {
        Some(true) => "anonymous allowed",
        Some(false) => "anonymous refused",
        None => "custom access control",
    };
    info!("listening on {addr}: {transport}, {access}");
    let cert_required = tls.is_some_and(|t| t.config().require_client_cert);
    if anonymous == Some(true) && !addr.ip().is_loopback() && !cert_required {
        warn!(
            "listener {addr} lets anonymous clients in from other hosts; \
             set [auth] password_file or allow_anonymous = false to close it"
        );
    }
}

/// Opens and recovers the data directory, when persistence is on.
async fn open_journal(config: &Config) -> Result<Option<(Journal, Restored)>, BrokerError> {
    if !config.persistence.enabled {
        return Ok(None);
    }
    let p = config.persistence.clone();
    let dir = p.dir.clone();
    let started = std::time::Instant::now();
    let opened = tokio::task::spawn_blocking(move || Journal::open(&p))
        .await
        .map_err(|e| PersistError {
            dir: dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let restored = &opened.1;
    let queued: usize = restored.sessions.iter().map(|s| s.entries.len()).sum();
    info!(
        dir = %dir.display(), sessions = restored.sessions.len(),
        retained = restored.retained.len(), queued,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "persistence: data directory opened (sync = {})", config.persistence.sync.name()
    );
    if !restored.report.is_clean() {
        warn!(
            dir = %dir.display(),
            "persistence: the data directory was damaged; recovered what was readable. Lost: {}",
            restored.report
        );
    }
    Ok(Some(opened))
}

/// Puts what the journal held back into the broker.
fn restore(shared: &Shared, restored: Restored) {
    for msg in restored.retained {
        shared.router.restore_retained(msg);
    }
    shared
        .registry
        .restore(restored.sessions, restored.next_sid);
}

/// An accepted socket on its way to the runtime that will serve it.
enum Socket {
    /// Served where it was accepted: registered already.
    Here(TcpStream),
    /// Served on another shard: registered there, by its own task.
    Moved(std::net::TcpStream),
}

impl Socket {
    /// The socket as a tokio stream of the runtime this runs on.
    fn open(self, peer: SocketAddr) -> Option<TcpStream> {
        match self {
            Socket::Here(stream) => Some(stream),
            Socket::Moved(std) => TcpStream::from_std(std)
                .map_err(|e| warn!(%peer, error = %e, "cannot register the connection"))
                .ok(),
        }
    }
}

/// The TLS handshake, in the connection's own task and under the CONNECT
/// timeout: the stream and, on listeners with `identity_as_username`, the
/// client's certificate identity.
async fn open_tls(
    socket: Socket,
    peer: SocketAddr,
    tls: Arc<TlsListener>,
    timeout: Duration,
    shutdown: CancellationToken,
) -> Option<(TlsStream<TcpStream>, Option<PeerIdentity>)> {
    let stream = socket.open(peer)?;
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return None,
        r = tls.accept(stream, timeout) => r,
    };
    match handshake {
        Ok((stream, identity)) => Some((stream, tls.identity_as_username().then_some(identity))),
        Err(e) => {
            info!(%peer, error = %e, "connection closed");
            None
        }
    }
}

/// One listener's accept loop.
struct Acceptor {
    listener: TcpListener,
    tls: Option<Arc<TlsListener>>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    shutdown: Shutdown,
    /// Where accepted connections run.
    shards: Shards,
    /// Counts this listener as up while its accept loop lives.
    _up: ListenerUp,
}

impl Acceptor {
    async fn run(self) {
        let token = self.shutdown.token().clone();
        loop {
            let accepted = tokio::select! {
                _ = token.cancelled() => return,
                r = self.listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => self.on_accept(stream, peer),
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
    }

    /// Runs a connection's task on `shard`, or here.
    fn spawn_on<F>(&self, shard: Option<Handle>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match shard {
            Some(handle) => self.shutdown.spawn_on(task, &handle),
            None => self.shutdown.spawn(task),
        }
    }

    fn on_accept(&self, stream: TcpStream, peer: SocketAddr) {
        Metrics::add(&self.shared.metrics.connections_accepted, 1);
        // Small packets (acks, pings) must not wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            warn!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let shared = self.shared.clone();
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let token = self.shutdown.token().clone();
                let shard = self.shards.pick().cloned();
                let socket = match shard {
                    None => Socket::Here(stream),
                    Some(_) => match stream.into_std() {
                        Ok(std) => Socket::Moved(std),
                        Err(e) => {
                            warn!(%peer, error = %e, "cannot hand the connection to a shard");
                            return;
                        }
                    },
                };
                // The serve future itself is the task (which every idle
                // connection holds): no wrapper keeping its arguments.
                match self.tls.clone() {
                    None => {
                        let open = async move { Some((socket.open(peer)?, None)) };
                        let serve = connection::serve(open, peer, shared, token, permit);
                        self.spawn_on(shard, serve);
                    }
                    Some(tls) => {
                        let timeout = Duration::from_secs(shared.config.limits.connect_timeout_s);
                        let open = open_tls(socket, peer, tls, timeout, token.clone());
                        let serve = connection::serve(open, peer, shared, token, permit);
                        self.spawn_on(shard, serve);
                    }
                }
            }
            Err(_) => {
                Metrics::add(&shared.metrics.connections_refused, 1);
                // A TLS client could not read a plain CONNACK: just close.
                let refusal = match self.tls {
                    None => self.refusals.clone().try_acquire_owned().ok(),
                    Some(_) => None,
                };
                if let Some(permit) = refusal {
                    let token = self.shutdown.token().clone();
                    self.shutdown.spawn(async move {
                        handshake::refuse_excess(stream, peer, shared, token).await;
                        drop(permit);
                    });
                } else {
                    warn!(%peer, reason = "max_connections reached", "connection refused");
                }
            }
        }
    }
}
