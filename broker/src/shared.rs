//! [`Shared`]: the state every connection task holds an `Arc` of.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::auth::throttle::LoginThrottle;
use crate::auth::Authorizer;
use crate::config::Config;
use crate::metrics::{Metrics, Stats};
use crate::persist::Journal;
use crate::registry::Registry;
use crate::retained::MemoryRetained;
use crate::router::Router;
use crate::store::MemorySessions;

/// Broker-wide state: configuration, routing, sessions, counters, hooks.
pub struct Shared {
    /// The configuration the broker started with.
    pub config: Config,
    /// Subscriptions and retained messages.
    pub router: Arc<Router>,
    /// Sessions by client id.
    pub registry: Registry,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Access control.
    pub auth: Arc<dyn Authorizer>,
    /// Slows down repeated login failures per address.
    pub login_throttle: LoginThrottle,
    /// When the broker started.
    pub started: Instant,
    /// The journal, when persistence is on.
    pub journal: Option<Journal>,
    next_conn: AtomicU64,
    id_salt: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("router", &self.router)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Broker state with in-memory stores.
    pub fn new(config: Config, auth: Arc<dyn Authorizer>) -> Shared {
        Shared::with_journal(config, auth, None)
    }

    /// Broker state whose persistent sessions and retained messages are
    /// journaled through `journal`.
    pub fn with_journal(
        config: Config,
        auth: Arc<dyn Authorizer>,
        journal: Option<Journal>,
    ) -> Shared {
        let metrics = Arc::new(Metrics::default());
        let router = Router::new(Arc::new(MemoryRetained::new()), metrics.clone());
        let router = Arc::new(router.with_journal(journal.clone()));
        let registry = Registry::new(
            Arc::new(MemorySessions::new()),
            router.clone(),
            config.limits.max_queued_messages,
        )
        .with_journal(journal.clone());
        Shared {
            config,
            router,
            registry,
            metrics,
            auth,
            login_throttle: LoginThrottle::default(),
            started: Instant::now(),
            journal,
            next_conn: AtomicU64::new(1),
            // Random per broker run, so assigned ids do not repeat across
            // restarts.
            id_salt: RandomState::new().hash_one(0u8) & 0xffff_ffff,
        }
    }

    /// A connection id, unique for this broker.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A client id for a client that sent none [MQTT-3.1.3-6].
    pub fn assign_client_id(&self, conn_id: u64) -> String {
        format!("midge-{:08x}-{conn_id}", self.id_salt)
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::from_metrics(&self.metrics);
        stats.uptime_s = self.started.elapsed().as_secs();
        stats.clients_total = self.registry.len() as u64;
        stats.clients_disconnected = self.registry.parked() as u64;
        stats.subscriptions = self.router.subscription_count() as u64;
        stats.retained = self.router.retained_count() as u64;
        stats.queued += self.registry.queued() as u64;
        stats
    }
}
