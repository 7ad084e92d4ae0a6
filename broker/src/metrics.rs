//! Broker-wide counters and gauges ([`Metrics`]), a connection's unshared
//! share of them ([`Tally`]) and the [`Stats`] snapshot, which
//! [`crate::samples`] turns into the one list of numbers that both the
//! `$SYS` topics ([`crate::sys`]) and the Prometheus endpoint
//! ([`crate::http`]) publish, so the two never disagree.
//!
//! Plain relaxed atomics, never a lock: a connection task counts into its
//! own [`Tally`] per packet and adds it to the shared [`Metrics`] once per
//! loop turn. The gauges a connection owns (its in-flight and waiting
//! messages) travel the same way, as the change since the last turn.
//! Reading the numbers (a scrape, a `$SYS` round) costs the message path
//! nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use midge_protocol::QoS;

/// Why a message was dropped instead of delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The subscriber's queue (`max_queued_messages`) was full.
    QueueFull,
    /// A client published into `$SYS/`, which is read-only.
    SysTopic,
    /// The ACL does not let the client publish to the topic.
    NotAuthorized,
    /// Anything else: drops counted straight into
    /// [`Metrics::publish_dropped`].
    Other,
}

impl DropReason {
    /// Every reason, in the order they are reported.
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::SysTopic,
        DropReason::NotAuthorized,
        DropReason::Other,
    ];

    /// The Prometheus label value and `$SYS` topic suffix.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::SysTopic => "sys_topic",
            DropReason::NotAuthorized => "not_authorized",
            DropReason::Other => "other",
        }
    }
}

/// The live counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Packets of any type received from clients.
    pub messages_received: AtomicU64,
    /// Packets of any type sent to clients.
    pub messages_sent: AtomicU64,
    /// PUBLISH packets received, by QoS.
    pub publish_received: [AtomicU64; 3],
    /// PUBLISH packets sent, by QoS.
    pub publish_sent: [AtomicU64; 3],
    /// Payload bytes of the PUBLISH packets received, by QoS.
    pub publish_bytes_received: [AtomicU64; 3],
    /// Payload bytes of the PUBLISH packets sent, by QoS.
    pub publish_bytes_sent: [AtomicU64; 3],
    /// Messages dropped for a reason not in [`DropReason`], reported as
    /// `other`; [`Metrics::dropped`] counts the rest.
    pub publish_dropped: AtomicU64,
    /// Messages dropped, by [`DropReason`] (all but `Other`).
    dropped: [AtomicU64; 3],
    /// Bytes read from clients.
    pub bytes_received: AtomicU64,
    /// Bytes written to clients.
    pub bytes_sent: AtomicU64,
    /// Clients connected now (past CONNACK).
    pub clients_connected: AtomicU64,
    /// The most clients ever connected at once.
    pub clients_maximum: AtomicU64,
    /// Sockets accepted on the MQTT listeners.
    pub connections_accepted: AtomicU64,
    /// Connections that got CONNACK 0 (accepted).
    pub connections_established: AtomicU64,
    /// Connections refused because of `max_connections`.
    pub connections_refused: AtomicU64,
    /// Logins refused: a bad user name or password, a missing password, an
    /// anonymous client where none are allowed, or a client certificate
    /// without a name.
    pub auth_failures: AtomicU64,
    /// Gauge: QoS 1/2 messages sent to connected clients and not yet
    /// acknowledged.
    pub inflight: AtomicU64,
    /// Gauge: messages held by connected clients' sessions behind the
    /// in-flight window (the mailboxes' count is added at snapshot time).
    pub waiting: AtomicU64,
    /// Gauge: MQTT listeners accepting connections.
    pub listeners_up: AtomicU64,
}

fn qos_index(qos: QoS) -> usize {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn get_all<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| get(&counters[i]))
}

/// Moves a gauge from `old` to `new`.
fn adjust(gauge: &AtomicU64, old: u64, new: u64) {
    if new > old {
        gauge.fetch_add(new - old, Ordering::Relaxed);
    } else if old > new {
        gauge.fetch_sub(old - new, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` messages dropped for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        let counter = match reason {
            DropReason::QueueFull => &self.dropped[0],
            DropReason::SysTopic => &self.dropped[1],
            DropReason::NotAuthorized => &self.dropped[2],
            DropReason::Other => &self.publish_dropped,
        };
        Metrics::add(counter, n);
    }

    /// A client finished CONNECT.
    pub fn client_connected(&self) {
        Metrics::add(&self.connections_established, 1);
        let now = self.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Ordering::Relaxed);
    }

    /// A connected client went away.
    pub fn client_disconnected(&self) {
        self.clients_connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a listener as up until the returned guard is dropped.
    pub fn listener_up(self: &Arc<Self>) -> ListenerUp {
        Metrics::add(&self.listeners_up, 1);
        ListenerUp(self.clone())
    }
}

/// Held by a listener's accept loop: while it lives, the listener counts
/// in [`Metrics::listeners_up`].
#[derive(Debug)]
pub struct ListenerUp(Arc<Metrics>);

impl Drop for ListenerUp {
    fn drop(&mut self) {
        self.0.listeners_up.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection's counts since its last flush: the hot paths add here, and
/// the connection adds the lot to the shared [`Metrics`] once per loop turn,
/// so per-packet work touches no shared cache line.
///
/// Small, because every idle connection carries one: byte counts are 32-bit
/// (one turn moves at most a read's and a write's worth, or one packet of
/// at most 256 MiB), packet counts 16-bit (a turn decodes at most a 16 KiB
/// read and encodes at most 64 KiB: at most 32,768 packets), in-flight
/// 16-bit (`max_inflight` is at most 65,535). Additions saturate rather
/// than wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Packets received.
    pub messages_received: u16,
    /// Packets sent.
    pub messages_sent: u16,
    /// Bytes received.
    pub bytes_received: u32,
    /// Bytes sent.
    pub bytes_sent: u32,
    publish_received: [u16; 3],
    publish_sent: [u16; 3],
    publish_bytes_received: [u32; 3],
    publish_bytes_sent: [u32; 3],
    /// The session's in-flight and waiting messages as last observed, and
    /// as last added to the shared gauges.
    inflight: u16,
    waiting: u32,
    reported_inflight: u16,
    reported_waiting: u32,
}

/// `n` as a 32-bit count, saturated.
pub fn count32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Tally {
    /// A PUBLISH with `payload_len` payload bytes came in.
    pub fn on_publish_in(&mut self, qos: QoS, payload_len: usize) {
        let q = qos_index(qos);
        self.publish_received[q] = self.publish_received[q].saturating_add(1);
        self.publish_bytes_received[q] =
            self.publish_bytes_received[q].saturating_add(count32(payload_len));
    }

    /// A PUBLISH with `payload_len` payload bytes went out.
    pub fn on_publish_out(&mut self, qos: QoS, payload_len: usize) {
        let q = qos_index(qos);
        self.publish_sent[q] = self.publish_sent[q].saturating_add(1);
        self.publish_bytes_sent[q] =
            self.publish_bytes_sent[q].saturating_add(count32(payload_len));
    }

    /// `n` bytes came in.
    pub fn on_bytes_in(&mut self, n: usize) {
        self.bytes_received = self.bytes_received.saturating_add(count32(n));
    }

    /// `n` bytes went out.
    pub fn on_bytes_out(&mut self, n: usize) {
        self.bytes_sent = self.bytes_sent.saturating_add(count32(n));
    }

    /// A packet came in.
    pub fn on_packet_in(&mut self) {
        self.messages_received = self.messages_received.saturating_add(1);
    }

    /// A packet went out.
    pub fn on_packet_out(&mut self) {
        self.messages_sent = self.messages_sent.saturating_add(1);
    }

    /// The session now has `inflight` unacknowledged messages and `waiting`
    /// ones behind its window; (0, 0) when the connection ends.
    pub fn observe_session(&mut self, inflight: usize, waiting: usize) {
        self.inflight = u16::try_from(inflight).unwrap_or(u16::MAX);
        self.waiting = count32(waiting);
    }

    /// Adds the counts to `m`, moves the gauges by what changed, and starts
    /// counting again from zero.
    pub fn flush(&mut self, m: &Metrics) {
        let pairs = [
            (&m.messages_received, self.messages_received.into()),
            (&m.messages_sent, self.messages_sent.into()),
            (&m.bytes_received, self.bytes_received),
            (&m.bytes_sent, self.bytes_sent),
        ];
        let by_qos = [
            (&m.publish_received, self.publish_received.map(u32::from)),
            (&m.publish_sent, self.publish_sent.map(u32::from)),
            (&m.publish_bytes_received, self.publish_bytes_received),
            (&m.publish_bytes_sent, self.publish_bytes_sent),
        ];
        let by_qos = by_qos
            .into_iter()
            .flat_map(|(counters, counts)| counters.iter().zip(counts));
        for (counter, n) in pairs.into_iter().chain(by_qos) {
            if n > 0 {
                Metrics::add(counter, u64::from(n));
            }
        }
        adjust(
            &m.inflight,
            self.reported_inflight.into(),
            self.inflight.into(),
        );
        adjust(
            &m.waiting,
            self.reported_waiting.into(),
            self.waiting.into(),
        );
        *self = Tally {
            inflight: self.inflight,
            waiting: self.waiting,
            reported_inflight: self.inflight,
            reported_waiting: self.waiting,
            ..Tally::default()
        };
    }
}

/// A snapshot of the broker's statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Seconds since start.
    pub uptime_s: u64,
    /// MQTT listeners accepting connections.
    pub listeners_up: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// Persistent sessions whose client is away.
    pub clients_disconnected: u64,
    /// Connected plus disconnected persistent sessions.
    pub clients_total: u64,
    /// The most clients ever connected at once.
    pub clients_maximum: u64,
    /// Sockets accepted on the MQTT listeners.
    pub connections_accepted: u64,
    /// Connections that got CONNACK 0.
    pub connections_established: u64,
    /// Connections refused by `max_connections`.
    pub connections_refused: u64,
    /// Logins refused.
    pub auth_failures: u64,
    /// Packets received.
    pub messages_received: u64,
    /// Packets sent.
    pub messages_sent: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// PUBLISH packets received, by QoS.
    pub publish_received_by_qos: [u64; 3],
    /// PUBLISH packets sent, by QoS.
    pub publish_sent_by_qos: [u64; 3],
    /// Payload bytes received, by QoS.
    pub publish_bytes_received_by_qos: [u64; 3],
    /// Payload bytes sent, by QoS.
    pub publish_bytes_sent_by_qos: [u64; 3],
    /// Messages dropped.
    pub publish_dropped: u64,
    /// Messages dropped, by reason in [`DropReason::ALL`] order.
    pub dropped_by_reason: [u64; 4],
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Active subscriptions, offline sessions' included.
    pub subscriptions: u64,
    /// Retained messages.
    pub retained: u64,
    /// Messages waiting for a client: in session mailboxes (connected and
    /// away), and behind connected clients' in-flight windows.
    pub queued: u64,
    /// QoS 1/2 messages sent to connected clients and not yet acknowledged.
    pub inflight: u64,
}

impl Stats {
    /// Fills the fields kept in `m`; the caller fills the rest (uptime,
    /// sessions, subscriptions, retained, and the mailboxes' share of
    /// `queued`).
    pub fn from_metrics(m: &Metrics) -> Stats {
        let dropped = get_all(&m.dropped);
        let dropped_by_reason = [dropped[0], dropped[1], dropped[2], get(&m.publish_dropped)];
        let publish_received_by_qos = get_all(&m.publish_received);
        let publish_sent_by_qos = get_all(&m.publish_sent);
        Stats {
            listeners_up: get(&m.listeners_up),
            clients_connected: get(&m.clients_connected),
            clients_maximum: get(&m.clients_maximum),
            connections_accepted: get(&m.connections_accepted),
            connections_established: get(&m.connections_established),
            connections_refused: get(&m.connections_refused),
            auth_failures: get(&m.auth_failures),
            messages_received: get(&m.messages_received),
            messages_sent: get(&m.messages_sent),
            publish_received: publish_received_by_qos.iter().sum(),
            publish_sent: publish_sent_by_qos.iter().sum(),
            publish_received_by_qos,
            publish_sent_by_qos,
            publish_bytes_received_by_qos: get_all(&m.publish_bytes_received),
            publish_bytes_sent_by_qos: get_all(&m.publish_bytes_sent),
            publish_dropped: dropped_by_reason.iter().sum(),
            dropped_by_reason,
            bytes_received: get(&m.bytes_received),
            bytes_sent: get(&m.bytes_sent),
            queued: get(&m.waiting),
            inflight: get(&m.inflight),
            ..Stats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_adds_its_counts_once_and_starts_again() {
        let m = Metrics::default();
        let mut t = Tally {
            messages_received: 3,
            bytes_received: 40,
            ..Tally::default()
        };
        t.on_publish_in(QoS::AtLeastOnce, 5);
        t.on_publish_in(QoS::AtLeastOnce, 7);
        t.on_publish_out(QoS::ExactlyOnce, 9);
        t.flush(&m);
        t.flush(&m);
        let s = Stats::from_metrics(&m);
        assert_eq!((s.messages_received, s.bytes_received), (3, 40));
        assert_eq!(s.publish_received_by_qos, [0, 2, 0]);
        assert_eq!(s.publish_bytes_received_by_qos, [0, 12, 0]);
        assert_eq!(s.publish_sent_by_qos, [0, 0, 1]);
        assert_eq!(s.publish_bytes_sent_by_qos, [0, 0, 9]);
        assert_eq!((s.publish_received, s.publish_sent), (2, 1));
    }

    #[test]
    fn session_gauges_move_by_the_change_and_return_to_zero_at_the_end() {
        let m = Metrics::default();
        let (mut a, mut b) = (Tally::default(), Tally::default());
        a.observe_session(3, 1);
        a.flush(&m);
        b.observe_session(2, 0);
        b.flush(&m);
        a.observe_session(1, 4);
        a.flush(&m);
        let s = Stats::from_metrics(&m);
        assert_eq!((s.inflight, s.queued), (3, 4));
        a.observe_session(0, 0);
        a.flush(&m);
        b.observe_session(0, 0);
        b.flush(&m);
        let s = Stats::from_metrics(&m);
        assert_eq!((s.inflight, s.queued), (0, 0));
    }

    #[test]
    fn drops_are_counted_by_reason_and_in_total() {
        let m = Metrics::default();
        m.dropped(DropReason::QueueFull, 2);
        m.dropped(DropReason::NotAuthorized, 1);
        Metrics::add(&m.publish_dropped, 4);
        let s = Stats::from_metrics(&m);
        assert_eq!(s.dropped_by_reason, [2, 0, 1, 4]);
        assert_eq!(s.publish_dropped, 7);
    }

    #[test]
    fn a_listener_counts_as_up_while_its_guard_lives() {
        let m = Arc::new(Metrics::default());
        let up = m.listener_up();
        let up2 = m.listener_up();
        assert_eq!(get(&m.listeners_up), 2);
        drop(up);
        drop(up2);
        assert_eq!(get(&m.listeners_up), 0);
    }

    #[test]
    fn client_connected_counts_the_total_and_the_maximum() {
        let m = Metrics::default();
        m.client_connected();
        m.client_connected();
        m.client_disconnected();
        m.client_connected();
        let s = Stats::from_metrics(&m);
        assert_eq!(s.clients_connected, 2);
        assert_eq!(s.clients_maximum, 2);
        assert_eq!(s.connections_established, 3);
    }
}
