//! The `$SYS/broker/...` statistics topics, with Mosquitto's names where
//! Mosquitto has the number and Midge's own beside them (per-QoS message
//! and byte counts, drops by reason, queued and in-flight messages,
//! connections, login failures). The numbers and topics come from
//! [`crate::samples`], which the Prometheus endpoint reads too.
//!
//! Every `sys.interval_s` seconds the values that changed since the last
//! round (and always the uptime) are published as retained QoS 0 messages,
//! so a dashboard that subscribes later still gets the current values.
//! `$SYS/broker/version` is published once at start. Clients cannot
//! publish into `$SYS/` themselves, but for the state of a bridge
//! ([`client_may_write`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use midge_protocol::QoS;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::metrics::Stats;
use crate::samples::samples;
use crate::shared::Shared;

/// Whether `topic` is one of the broker's own `$SYS` topics.
pub fn is_sys(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// Whether a client may publish on `topic` as far as `$SYS` goes: not into
/// `$SYS`, but for `$SYS/broker/connection/<name>/state`, where a Mosquitto
/// bridge announces itself (a retained "1" on connect, its will "0"), as
/// Mosquitto allows. Without it a bridge whose notifications are on (its
/// default) is refused at CONNECT for its will topic.
pub fn client_may_write(topic: &str) -> bool {
    if !is_sys(topic) {
        return true;
    }
    let mut levels = topic.split('/');
    matches!(
        (levels.next(), levels.next(), levels.next(), levels.next(), levels.next(), levels.next()),
        (Some("$SYS"), Some("broker"), Some("connection"), Some(name), Some("state"), None)
            if !name.is_empty() && !name.contains(['+', '#'])
    )
}

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
pub fn values(s: &Stats) -> Vec<(&'static str, u64)> {
    samples(s)
        .into_iter()
        .filter_map(|sample| Some((sample.sys_topic?, sample.value)))
        .collect()
}

fn publish(shared: &Shared, topic: &str, value: String) {
    shared
        .router
        .publish(topic, value.as_bytes(), QoS::AtMostOnce, true);
}
