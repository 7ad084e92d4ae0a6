//! [`samples`]: every number of a [`Stats`] snapshot with its Prometheus
//! name, help text and labels and its `$SYS/broker/...` topic. `$SYS`
//! ([`crate::sys`]) and `/metrics` ([`crate::http`]) both read this one
//! list, so they publish the same numbers under their own names.
//!
//! Prometheus names follow its conventions (`_total` for counters, base
//! units); `$SYS` topics keep Mosquitto's names where Mosquitto has the
//! number and add Midge's own beside them.

use crate::metrics::{DropReason, Stats};

/// Whether a number only grows (from start) or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    /// The Prometheus `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A Prometheus metric family.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// The metric name.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// The `# TYPE`.
    pub kind: Kind,
}

/// One number: where Prometheus shows it and where `$SYS` publishes it
/// (either may be absent).
#[derive(Debug, PartialEq, Eq)]
pub struct Sample {
    /// Its Prometheus family; `None` for `$SYS`-only totals that Prometheus
    /// sums from the labelled series itself.
    pub family: Option<&'static Family>,
    /// Its label, as (name, value).
    pub label: Option<(&'static str, &'static str)>,
    /// Its `$SYS` topic.
    pub sys_topic: Option<&'static str>,
    /// The value.
    pub value: u64,
}

macro_rules! family {
    ($id:ident, $name:literal, $kind:ident, $help:literal) => {
        static $id: Family = Family {
            name: $name,
            help: $help,
            kind: Kind::$kind,
        };
    };
}

family!(
    UPTIME,
    "midge_uptime_seconds",
    Gauge,
    "Seconds since the broker started."
);
family!(
    LISTENERS_UP,
    "midge_listeners_up",
    Gauge,
    "MQTT listeners accepting connections."
);
family!(
    CLIENTS_CONNECTED,
    "midge_clients_connected",
    Gauge,
    "Clients connected now (past CONNACK)."
);
family!(
    CLIENTS_MAXIMUM,
    "midge_clients_maximum",
    Gauge,
    "The most clients connected at once since start."
);
family!(
    SESSIONS,
    "midge_sessions",
    Gauge,
    "Sessions: connected clients plus persistent sessions whose client is away."
);
family!(
    SESSIONS_AWAY,
    "midge_sessions_disconnected",
    Gauge,
    "Persistent sessions whose client is away."
);
family!(
    ACCEPTED,
    "midge_connections_accepted_total",
    Counter,
    "TCP connections accepted on the MQTT listeners."
);
family!(
    ESTABLISHED,
    "midge_connections_established_total",
    Counter,
    "Connections whose CONNECT was accepted (CONNACK 0)."
);
family!(
    REFUSED,
    "midge_connections_refused_total",
    Counter,
    "Connections refused because max_connections was reached."
);
family!(
    AUTH_FAILURES,
    "midge_auth_failures_total",
    Counter,
    "Logins refused: bad or missing credentials, or anonymous where not allowed."
);
family!(
    PACKETS_IN,
    "midge_packets_received_total",
    Counter,
    "MQTT packets of any type received from clients."
);
family!(
    PACKETS_OUT,
    "midge_packets_sent_total",
    Counter,
    "MQTT packets of any type sent to clients."
);
family!(
    BYTES_IN,
    "midge_bytes_received_total",
    Counter,
    "Bytes received from clients, all packets."
);
family!(
    BYTES_OUT,
    "midge_bytes_sent_total",
    Counter,
    "Bytes sent to clients, all packets."
);
family!(
    MESSAGES_IN,
    "midge_messages_received_total",
    Counter,
    "PUBLISH messages received from clients, by QoS."
);
family!(
    MESSAGES_OUT,
    "midge_messages_sent_total",
    Counter,
    "PUBLISH messages sent to clients, by delivery QoS."
);
family!(
    PAYLOAD_IN,
    "midge_message_bytes_received_total",
    Counter,
    "Payload bytes of the PUBLISH messages received, by QoS."
);
family!(
    PAYLOAD_OUT,
    "midge_message_bytes_sent_total",
    Counter,
    "Payload bytes of the PUBLISH messages sent, by delivery QoS."
);
family!(
    DROPPED,
    "midge_messages_dropped_total",
    Counter,
    "Messages dropped instead of delivered, by reason."
);
family!(
    QUEUED,
    "midge_messages_queued",
    Gauge,
    "Messages waiting to be sent to clients, connected or away."
);
family!(
    INFLIGHT,
    "midge_messages_inflight",
    Gauge,
    "QoS 1/2 messages sent to connected clients and not yet acknowledged."
);
family!(
    RETAINED,
    "midge_retained_messages",
    Gauge,
    "Retained messages stored."
);
family!(
    SUBSCRIPTIONS,
    "midge_subscriptions",
    Gauge,
    "Subscriptions, persistent sessions' included."
);

const QOS_LABELS: [&str; 3] = ["0", "1", "2"];

const SYS_PUBLISH_RECEIVED: [&str; 3] = [
    "$SYS/broker/publish/messages/received/qos0",
    "$SYS/broker/publish/messages/received/qos1",
    "$SYS/broker/publish/messages/received/qos2",
];
const SYS_PUBLISH_SENT: [&str; 3] = [
    "$SYS/broker/publish/messages/sent/qos0",
    "$SYS/broker/publish/messages/sent/qos1",
    "$SYS/broker/publish/messages/sent/qos2",
];
const SYS_PAYLOAD_RECEIVED: [&str; 3] = [
    "$SYS/broker/publish/bytes/received/qos0",
    "$SYS/broker/publish/bytes/received/qos1",
    "$SYS/broker/publish/bytes/received/qos2",
];
const SYS_PAYLOAD_SENT: [&str; 3] = [
    "$SYS/broker/publish/bytes/sent/qos0",
    "$SYS/broker/publish/bytes/sent/qos1",
    "$SYS/broker/publish/bytes/sent/qos2",
];
const SYS_DROPPED: [&str; 4] = [
    "$SYS/broker/publish/messages/dropped/queue_full",
    "$SYS/broker/publish/messages/dropped/sys_topic",
    "$SYS/broker/publish/messages/dropped/not_authorized",
    "$SYS/broker/publish/messages/dropped/other",
];

struct List(Vec<Sample>);

impl List {
    fn one(&mut self, family: &'static Family, sys_topic: Option<&'static str>, value: u64) {
        self.0.push(Sample {
            family: Some(family),
            label: None,
            sys_topic,
            value,
        });
    }

    fn sys_only(&mut self, topic: &'static str, value: u64) {
        self.0.push(Sample {
            family: None,
            label: None,
            sys_topic: Some(topic),
            value,
        });
    }

    /// One labelled series per value, and the total on `total_topic`.
    fn by<const N: usize>(
        &mut self,
        family: &'static Family,
        label: (&'static str, [&'static str; N]),
        topics: [&'static str; N],
        values: [u64; N],
        total_topic: &'static str,
    ) {
        for i in 0..N {
            self.0.push(Sample {
                family: Some(family),
                label: Some((label.0, label.1[i])),
                sys_topic: Some(topics[i]),
                value: values[i],
            });
        }
        self.sys_only(total_topic, values.iter().sum());
    }
}

/// Every number of `s`, each family's series together, in a fixed order.
pub fn samples(s: &Stats) -> Vec<Sample> {
    let mut l = List(Vec::with_capacity(48));
    l.one(&UPTIME, None, s.uptime_s);
    l.one(&LISTENERS_UP, None, s.listeners_up);
    l.one(
        &CLIENTS_CONNECTED,
        Some("$SYS/broker/clients/connected"),
        s.clients_connected,
    );
    l.one(
        &SESSIONS_AWAY,
        Some("$SYS/broker/clients/disconnected"),
        s.clients_disconnected,
    );
    l.one(
        &SESSIONS,
        Some("$SYS/broker/clients/total"),
        s.clients_total,
    );
    l.one(
        &CLIENTS_MAXIMUM,
        Some("$SYS/broker/clients/maximum"),
        s.clients_maximum,
    );
    l.one(
        &ACCEPTED,
        Some("$SYS/broker/connections/accepted"),
        s.connections_accepted,
    );
    l.one(
        &ESTABLISHED,
        Some("$SYS/broker/connections/established"),
        s.connections_established,
    );
    l.one(
        &REFUSED,
        Some("$SYS/broker/connections/refused"),
        s.connections_refused,
    );
    l.one(
        &AUTH_FAILURES,
        Some("$SYS/broker/auth/failures"),
        s.auth_failures,
    );
    l.one(
        &PACKETS_IN,
        Some("$SYS/broker/messages/received"),
        s.messages_received,
    );
    l.one(
        &PACKETS_OUT,
        Some("$SYS/broker/messages/sent"),
        s.messages_sent,
    );
    l.one(
        &BYTES_IN,
        Some("$SYS/broker/bytes/received"),
        s.bytes_received,
    );
    l.one(&BYTES_OUT, Some("$SYS/broker/bytes/sent"), s.bytes_sent);
    let qos = ("qos", QOS_LABELS);
    l.by(
        &MESSAGES_IN,
        qos,
        SYS_PUBLISH_RECEIVED,
        s.publish_received_by_qos,
        "$SYS/broker/publish/messages/received",
    );
    l.by(
        &MESSAGES_OUT,
        qos,
        SYS_PUBLISH_SENT,
        s.publish_sent_by_qos,
        "$SYS/broker/publish/messages/sent",
    );
    l.by(
        &PAYLOAD_IN,
        qos,
        SYS_PAYLOAD_RECEIVED,
        s.publish_bytes_received_by_qos,
        "$SYS/broker/publish/bytes/received",
    );
    l.by(
        &PAYLOAD_OUT,
        qos,
        SYS_PAYLOAD_SENT,
        s.publish_bytes_sent_by_qos,
        "$SYS/broker/publish/bytes/sent",
    );
    l.by(
        &DROPPED,
        ("reason", DropReason::ALL.map(DropReason::label)),
        SYS_DROPPED,
        s.dropped_by_reason,
        "$SYS/broker/publish/messages/dropped",
    );
    l.one(&QUEUED, Some("$SYS/broker/messages/queued"), s.queued);
    l.one(&INFLIGHT, Some("$SYS/broker/messages/inflight"), s.inflight);
    l.one(
        &RETAINED,
        Some("$SYS/broker/retained messages/count"),
        s.retained,
    );
    l.one(
        &SUBSCRIPTIONS,
        Some("$SYS/broker/subscriptions/count"),
        s.subscriptions,
    );
    l.0
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn each_family_is_one_contiguous_run_and_each_topic_appears_once() {
        let all = samples(&Stats::default());
        let mut seen = HashSet::new();
        let mut last = "";
        for f in all.iter().filter_map(|s| s.family) {
            if f.name != last {
                assert!(seen.insert(f.name), "{} is split", f.name);
                last = f.name;
            }
        }
        let topics: Vec<_> = all.iter().filter_map(|s| s.sys_topic).collect();
        let unique: HashSet<_> = topics.iter().collect();
        assert_eq!(unique.len(), topics.len());
    }

    #[test]
    fn counter_names_end_in_total_and_gauge_names_do_not() {
        for s in samples(&Stats::default()) {
            if let Some(f) = s.family {
                let total = f.name.ends_with("_total");
                assert_eq!(total, f.kind == Kind::Counter, "{}", f.name);
            }
        }
    }

    #[test]
    fn sys_totals_are_the_sums_of_their_labelled_series() {
        let stats = Stats {
            publish_received_by_qos: [1, 2, 3],
            dropped_by_reason: [4, 0, 1, 0],
            ..Stats::default()
        };
        let all = samples(&stats);
        let topic = |t: &str| all.iter().find(|s| s.sys_topic == Some(t)).map(|s| s.value);
        assert_eq!(topic("$SYS/broker/publish/messages/received"), Some(6));
        assert_eq!(topic("$SYS/broker/publish/messages/received/qos2"), Some(3));
        assert_eq!(topic("$SYS/broker/publish/messages/dropped"), Some(5));
        assert_eq!(
            topic("$SYS/broker/publish/messages/dropped/not_authorized"),
            Some(1)
        );
    }
}
