//! Broker-wide counters, read by `$SYS` and [`Broker::stats`].
//!
//! Plain relaxed atomics: a connection task adds its bytes once per read or
//! write call and its packets once per packet, never under a lock.
//!
//! [`Broker::stats`]: crate::Broker::stats

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Packets of any type received from clients.
    pub messages_received: AtomicU64,
    /// Packets of any type sent to clients.
    pub messages_sent: AtomicU64,
    /// PUBLISH packets received.
    pub publish_received: AtomicU64,
    /// PUBLISH packets sent.
    pub publish_sent: AtomicU64,
    /// Messages dropped: full queues, or refused because `$SYS` is read-only.
    pub publish_dropped: AtomicU64,
    /// Bytes read from clients.
    pub bytes_received: AtomicU64,
    /// Bytes written to clients.
    pub bytes_sent: AtomicU64,
    /// Clients connected now (past CONNACK).
    pub clients_connected: AtomicU64,
    /// The most clients ever connected at once.
    pub clients_maximum: AtomicU64,
    /// Connections refused because of `max_connections`.
    pub connections_refused: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A client finished CONNECT.
    pub fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Ordering::Relaxed);
    }

    /// A connected client went away.
    pub fn client_disconnected(&self) {
        self.clients_connected.fetch_sub(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One connection's counts since its last flush: the hot paths add here, and
/// the connection adds the lot to the shared [`Metrics`] once per loop turn,
/// so per-packet work touches no shared cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Packets received.
    pub messages_received: u64,
    /// Packets sent.
    pub messages_sent: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
}

impl Tally {
    /// Adds the counts to `m` and starts again from zero.
    pub fn flush(&mut self, m: &Metrics) {
        let pairs = [
            (&m.messages_received, self.messages_received),
            (&m.messages_sent, self.messages_sent),
            (&m.publish_received, self.publish_received),
            (&m.publish_sent, self.publish_sent),
            (&m.bytes_received, self.bytes_received),
            (&m.bytes_sent, self.bytes_sent),
        ];
        for (counter, n) in pairs {
            if n > 0 {
                Metrics::add(counter, n);
            }
        }
        *self = Tally::default();
    }
}

/// A snapshot of the broker's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Seconds since start.
    pub uptime_s: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// Persistent sessions whose client is away.
    pub clients_disconnected: u64,
    /// Connected plus disconnected persistent sessions.
    pub clients_total: u64,
    /// The most clients ever connected at once.
    pub clients_maximum: u64,
    /// Packets received.
    pub messages_received: u64,
    /// Packets sent.
    pub messages_sent: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// Messages dropped.
    pub publish_dropped: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Active subscriptions, offline sessions' included.
    pub subscriptions: u64,
    /// Retained messages.
    pub retained: u64,
    /// Connections refused by `max_connections`.
    pub connections_refused: u64,
}

impl Stats {
    /// Fills the counter fields from `m`; the caller fills the rest.
    pub fn from_metrics(m: &Metrics) -> Stats {
        Stats {
            clients_connected: Metrics::get(&m.clients_connected),
            clients_maximum: Metrics::get(&m.clients_maximum),
            messages_received: Metrics::get(&m.messages_received),
            messages_sent: Metrics::get(&m.messages_sent),
            publish_received: Metrics::get(&m.publish_received),
            publish_sent: Metrics::get(&m.publish_sent),
            publish_dropped: Metrics::get(&m.publish_dropped),
            bytes_received: Metrics::get(&m.bytes_received),
            bytes_sent: Metrics::get(&m.bytes_sent),
            connections_refused: Metrics::get(&m.connections_refused),
            ..Stats::default()
        }
    }
}
