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
//!   each behind a trait so durable stores can replace the in-memory ones.
//! - [`auth`]: the access-control hook, [`auth::Authorizer`]; its
//!   implementation over Mosquitto-format password and ACL files
//!   ([`auth::state`], [`auth::password`], [`auth::acl`]) and the login
//!   failure throttle ([`auth::throttle`]).
//! - [`passwd_cmd`]: `midge passwd`, which edits password files.
//! - [`metrics`] and [`sys`]: counters and the `$SYS/broker/...` topics.
//! - [`shutdown`]: the cancellation token and task tracker.
//! - `main.rs`: the command line.
//!
//! # Design
//!
//! **One task per connection.** Each accepted socket gets a task that owns
//! its [`Session`](session::Session) and both socket halves. After the
//! CONNECT handshake (read under `connect_timeout_s`) the task loops over a
//! `select!` of: shutdown, takeover, bytes to read, room to write, a
//! delivery arriving in its mailbox, and the keep-alive deadline. Reads are
//! decoded into packets in a batch and fed to the session; everything the
//! session has to send in that turn is encoded into one output buffer and
//! written with one call, so a burst of small packets leaves in one
//! syscall. Sockets have `TCP_NODELAY`.
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
//! **Bounded memory.** A mailbox holds at most `max_queued_messages`
//! deliveries; beyond that new ones are dropped, counted in
//! `$SYS/broker/publish/messages/dropped` and logged once per overflow. A
//! slow subscriber therefore never stalls a publisher or another
//! subscriber. A connection takes deliveries from its mailbox only while its
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
//! **Security.** [`auth::Authorizer`] is asked at CONNECT (password, then
//! the will topic), SUBSCRIBE (0x80 when refused), PUBLISH (dropped but
//! acknowledged) and at every delivery, so a granted wildcard never leaks
//! a topic the ACL denies. [`Broker::start`] answers it from the `[auth]`
//! files, held in an `ArcSwap` that [`Broker::reload`] swaps without
//! dropping a connection. Password hashes are checked on a blocking
//! thread; a refused login waits a delay that grows per address. TLS
//! handshakes run in the connection's task, under the CONNECT timeout.
//!
//! **Later issues** plug in at: [`store::SessionStore`] and
//! [`retained::RetainedStore`] (persistence), [`auth::Authorizer`] (other
//! authentication back ends) and [`metrics::Metrics`] (monitoring).

pub mod auth;
pub mod config;
mod connection;
pub mod error;
mod handshake;
pub mod mailbox;
pub mod message;
pub mod metrics;
pub mod passwd_cmd;
pub mod registry;
pub mod retained;
pub mod router;
pub mod server;
pub mod session;
pub mod shared;
pub mod shutdown;
pub mod store;
pub mod sys;
pub mod tls;
pub mod trie;

pub use config::{AuthConfig, TlsConfig};
pub use config::{
    Config, ConfigError, LimitsConfig, ListenerConfig, LoadOptions, LogConfig, SysConfig,
};
pub use error::{BrokerError, ReloadError};
pub use metrics::Stats;
pub use server::Broker;
