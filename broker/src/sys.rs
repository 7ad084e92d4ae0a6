//! The `$SYS/broker/...` statistics topics, with Mosquitto's names.
//!
//! Every `sys.interval_s` seconds the values that changed since the last
//! round (and always the uptime) are published as retained QoS 0 messages,
//! so a dashboard that subscribes later still gets the current values.
//! `$SYS/broker/version` is published once at start. Clients cannot
//! publish into `$SYS/` themselves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use midge_protocol::QoS;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::metrics::Stats;
use crate::shared::Shared;

/// The version string published on `$SYS/broker/version`.
pub const VERSION: &str = concat!("midge version ", env!("CARGO_PKG_VERSION"));

/// Publishes `$SYS` topics until `shutdown`; returns at once when
/// `sys.interval_s` is 0.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let interval_s = shared.config.sys.interval_s;
    if interval_s == 0 {
        return;
    }
    publish(&shared, "$SYS/broker/version", VERSION.to_owned());
    let mut ticker = tokio::time::interval(Duration::from_secs(interval_s));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stats = shared.stats();
        publish(
            &shared,
            "$SYS/broker/uptime",
            format!("{} seconds", stats.uptime_s),
        );
        for (topic, value) in values(&stats) {
            if last.insert(topic, value) != Some(value) {
                publish(&shared, topic, value.to_string());
            }
        }
    }
}

/// The numeric topics and their values.
pub fn values(s: &Stats) -> [(&'static str, u64); 13] {
    [
        ("$SYS/broker/clients/connected", s.clients_connected),
        ("$SYS/broker/clients/disconnected", s.clients_disconnected),
        ("$SYS/broker/clients/total", s.clients_total),
        ("$SYS/broker/clients/maximum", s.clients_maximum),
        ("$SYS/broker/messages/received", s.messages_received),
        ("$SYS/broker/messages/sent", s.messages_sent),
        ("$SYS/broker/publish/messages/received", s.publish_received),
        ("$SYS/broker/publish/messages/sent", s.publish_sent),
        ("$SYS/broker/publish/messages/dropped", s.publish_dropped),
        ("$SYS/broker/bytes/received", s.bytes_received),
        ("$SYS/broker/bytes/sent", s.bytes_sent),
        ("$SYS/broker/subscriptions/count", s.subscriptions),
        ("$SYS/broker/retained messages/count", s.retained),
    ]
}

fn publish(shared: &Shared, topic: &str, value: String) {
    shared
        .router
        .publish(topic, value.as_bytes(), QoS::AtMostOnce, true);
}
