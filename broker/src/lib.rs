//! # midge-broker
//!
//! Midge's MQTT 3.1.1 (and 3.1) broker, on tokio. The `midge` binary wraps
//! it; tests and embedders start one in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), midge_broker::BrokerError> {
//! let mut config = midge_broker::Config::default();
//! config.listeners = vec![midge_broker::ListenerConfig {
//!     bind: "127.0.0.1:0".parse().expect("address"),
//!     ..Default::default()
//! }];
//! let broker = midge_broker::Broker::start(config).await?;
//! let addr = broker.local_addrs()[0];
//! # let _ = addr;
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! One-way layers: protocol (the `midge-protocol` codec) <- session <-
//! connection <- server.
//! - [`config`]: the configuration tree, defaults, layered loading and
//!   one-line error messages.
//! - [`server`]: [`Broker`]: listeners, the connection cap, reload
//!   (SIGHUP), shutdown.
//! - [`tls`]: a listener's TLS configuration, certificates and handshake.
//! - `connection`: one task per client: CONNECT, then the `select!` loop;
//!   `handshake`: the CONNECT phase (client id, login, will topic check,
//!   refusals, takeover wait).
//! - [`session`]: the sans-IO [`Session`](session::Session) state machine:
//!   QoS handshakes, the in-flight window, keep alive.
//! - [`registry`]: sessions by client id: takeover, parking, resumption.
//! - [`mailbox`]: the bounded queue of deliveries for one session.
//! - [`router`] and [`trie`]: from a topic to its subscribers.
//! - [`message`]: a routed message, encoded once.
//! - [`retained`] and [`store`]: retained messages and parked sessions,
//!   in memory.
//! - `levels`: a topic tree node's children, for [`trie`] and [`retained`].
//! - [`persist`]: durability: the journal (group commit, checkpoints) that
//!   keeps retained messages and persistent sessions on disk, and the
//!   recovery that restores them from a data directory in any state.
//! - [`auth`]: the access-control hook, [`auth::Authorizer`]; its
//!   implementation over Mosquitto-format password and ACL files
//!   ([`auth::state`], [`auth::password`], [`auth::acl`]) and the login
//!   failure throttle ([`auth::throttle`]).
//! - [`passwd_cmd`]: `midge passwd`, which edits password files.
//! - [`metrics`], [`samples`], [`sys`] and [`http`]: counters and gauges,
//!   the one list of numbers drawn from them, and its two publishers: the
//!   `$SYS/broker/...` topics and the `[metrics]` HTTP listener
//!   (Prometheus `/metrics`, `/health`).
//! - [`health_cmd`]: `midge health`, the container health check.
//! - [`shutdown`]: the cancellation token and task tracker.
//! - `main.rs`: the command line and logging (text or JSON lines).
//!
//! # Design
//!
//! **One task per connection.** Each accepted socket gets a task that owns
//! its [`Session`](session::Session) and both socket halves. After the
//! CONNECT handshake (read under `connect_timeout_s`) the task loops over a
//! `select!` of: shutdown or takeover, bytes to read, room to write, a
//! delivery arriving in its mailbox (or the journal's durability), the
//! keep-alive deadline and the end of a backpressure pause. Reads are
//! decoded into packets in a batch and fed to the session; everything the
//! session has to send in that turn is encoded into one output buffer and
//! written with one call, so a burst of small packets leaves in one
//! syscall. Sockets have `TCP_NODELAY`.
//!
//! **Idle connections hold little** (about 2.6 KB of broker memory each,
//! most of it tokio's task and I/O registration, the session and the
//! mailbox). Reads land in a stack buffer and are copied into a read buffer
//! sized to what arrived, which is released once decoded; the output buffer
//! and the batch vector are released when everything is sent and nothing
//! waits. The handshake runs in a box of its own, freed before the loop's
//! box is made, since a task's future is as large as its largest state;
//! the loop's state (a `Connection`) is boxed apart from the `select!`'s,
//! and the keep-alive timer is made only when keep alive is on.
//!
//! **Sans-IO session.** [`Session`](session::Session) takes packets and
//! times (`handle_incoming(packet, now)`, `handle_timeout(now)`) and yields
//! packets (`poll_transmit()`); it never touches a socket or a clock, so
//! the QoS 1/2 handshakes, the `max_inflight` window, exactly-once inbound
//! QoS 2 and keep alive are unit-tested with explicit times.
//!
//! **Fan-out without waiting.** A PUBLISH is routed by the publisher's own
//! task: the subscription trie (behind a read-mostly `RwLock`) yields the
//! matching subscriptions, a subscriber's overlapping subscriptions merge
//! into one delivery at the highest granted QoS, the message is encoded
//! *once* into a buffer of its own ([`message::Message`]) and a
//! [`Delivery`](mailbox::Delivery) sharing it is pushed into each
//! subscriber's [`Mailbox`](mailbox::Mailbox). A QoS 0 delivery is a copy of
//! the shared bytes; QoS 1/2 rewrites only the fixed header and packet id.
//! Pushing is a short mutex section; the subscriber's task is woken only
//! when its mailbox goes from empty to non-empty and then takes a whole
//! batch, so there is no task wake-up per message under load. No lock is
//! ever held across an `.await`.
//!
//! **Bounded memory, backpressure.** A mailbox holds at most
//! `max_queued_messages` deliveries; beyond that new ones are dropped,
//! counted in `$SYS/broker/publish/messages/dropped` and logged once per
//! overflow. Before that, a mailbox filled past three quarters is
//! *congested*: a publisher whose message went into it stops reading and
//! decoding its socket until the mailbox drains to a quarter (the draining
//! connection wakes the waiters), so an overloaded subscriber slows its
//! publishers through TCP instead of dropping their messages. The wait is
//! bounded (100 ms): a subscriber that drains nothing in that time is
//! marked stuck and stalls no publisher again until it drains, so a client
//! that stops reading never stalls a publisher or another subscriber for
//! longer than that once. A connection takes deliveries from its mailbox only while its
//! output buffer is under a high-water mark and its in-flight window has
//! room, so a client that stops reading has its messages queue (and then
//! drop) in its mailbox, not in broker buffers. Reading stops while too many
//! acknowledgements wait to be written.
//!
//! **Sessions.** The [`registry`](registry::Registry) maps client ids to
//! sessions. A CleanSession=0 session outlives its connection: its state
//! is parked in a [`SessionStore`](store::SessionStore), its mailbox turns
//! offline (queueing QoS 1/2 only) and its subscriptions stay in the trie.
//! A new connection with the same id resumes it, re-sending unacknowledged
//! messages with DUP set in order, then the queue. A second connection with
//! a live session's id kicks the first (which publishes its will) and waits
//! for it to let go.
//!
//! **Durability.** With `[persistence]` on (the default) the state stays in
//! memory and a journal ([`persist`]) records every change of what must
//! survive: retained messages and persistent sessions with their
//! subscriptions, queues, unacknowledged deliveries and QoS 2 ids. A
//! publish's fan-out to persistent sessions is one journal transaction; the
//! acknowledgements that promise something (PUBACK, PUBREC, SUBACK, ...)
//! wait in the session's ordered output until one writer thread has
//! synced it, many connections' changes per sync (group commit), while the
//! connection keeps serving. Clean sessions never touch the disk. Start-up
//! restores everything and recovers from any damage to the files.
//!
//! **Security.** [`auth::Authorizer`] is asked at CONNECT (password, then
//! the will topic), SUBSCRIBE (0x80 when refused), PUBLISH (dropped but
//! acknowledged) and at every delivery, so a granted wildcard never leaks
//! a topic the ACL denies. [`Broker::start`] answers it from the `[auth]`
//! files, held in an `ArcSwap` that [`Broker::reload`] swaps without
//! dropping a connection. Password hashes are checked on a blocking
//! thread; a refused login waits a delay that grows per address. TLS
//! handshakes run in the connection's task, under the CONNECT timeout.
//!
//! **Monitoring.** Counters and gauges are relaxed atomics in
//! [`metrics::Metrics`]; a connection counts into a private
//! [`metrics::Tally`] and adds it once per loop turn, so the message path
//! takes no lock and touches no shared cache line per packet. A snapshot
//! ([`Stats`]) becomes one list of numbers ([`samples::samples`]) that
//! feeds both the `$SYS/broker/...` topics and, when `[metrics] bind` is
//! set, the Prometheus `/metrics` endpoint of a small HTTP/1.1 listener
//! whose `/health` answers 200 while every MQTT listener accepts. A TLS
//! listener marked `optional` is skipped when its certificate files are
//! missing, so one configuration serves with and without mounted
//! certificates (the Docker image's).
//!
//! **Later issues** plug in at: [`auth::Authorizer`] (other
//! authentication back ends) and [`metrics::Metrics`] (monitoring).
//! Durability did not replace [`store::SessionStore`] or
//! [`retained::RetainedStore`] with disk-backed ones: their whole-state
//! `park`/`put` cannot promise that a single acknowledged message is on
//! disk, so the journal records changes as they happen instead.

pub mod auth;
pub mod config;
mod conn_io;
mod connection;
pub mod error;
mod handshake;
pub mod health_cmd;
pub mod http;
pub mod keepalive;
mod levels;
pub mod mailbox;
pub mod message;
pub mod metrics;
pub mod passwd_cmd;
pub mod persist;
pub mod registry;
pub mod retained;
pub mod router;
pub mod samples;
mod scratch;
pub mod server;
pub mod session;
pub mod shards;
pub mod shared;
pub mod shutdown;
pub mod store;
pub mod sys;
pub mod tls;
pub mod trie;

pub use config::{AuthConfig, TlsConfig};
pub use config::{
    Config, ConfigError, LimitsConfig, ListenerConfig, LoadOptions, LogConfig, LogFormat,
    MetricsConfig, SysConfig,
};
pub use config::{PersistenceConfig, SyncMode};
pub use error::{BrokerError, ReloadError};
pub use metrics::Stats;
pub use server::Broker;
