//! Broker scenarios: the `$SYS/broker/...` topics, under the names
//! Mosquitto uses, and the rule that clients cannot publish into `$SYS/`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use midge_protocol::{Packet, QoS};
use support::*;
use tokio::time::Instant;

/// The topics a Mosquitto dashboard reads.
const MOSQUITTO_SYS_TOPICS: [&str; 12] = [
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total",
    "$SYS/broker/clients/maximum",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/publish/messages/dropped",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
];

/// Collects every (topic, payload) `client` receives during `window`.
async fn collect(client: &mut Client, window: Duration) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + window;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event(left).await {
            Event::Packet(Packet::Publish(p)) => {
                client.ack(&p).await;
                let value = String::from_utf8_lossy(&p.payload).into_owned();
                seen.push((p.topic.to_string(), value));
            }
            Event::Timeout => return seen,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The latest value per topic seen by `client` during `window`.
async fn collect_sys(client: &mut Client, window: Duration) -> HashMap<String, String> {
    collect(client, window).await.into_iter().collect()
}

#[tokio::test]
async fn sys_broker_topics_published_with_mosquitto_names() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
    let mut client = broker.client("dashboard").await;
    client.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let seen = collect_sys(&mut client, Duration::from_millis(2500)).await;
    let missing: Vec<&str> = MOSQUITTO_SYS_TOPICS
        .iter()
        .copied()
        .filter(|t| !seen.contains_key(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "missing $SYS topics: {missing:?}; seen {seen:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_counters_are_plain_decimal_numbers() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
    let mut client = broker.client("dashboard").await;
    client.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let seen = collect_sys(&mut client, Duration::from_millis(2500)).await;
    for topic in MOSQUITTO_SYS_TOPICS {
        if topic.ends_with("/version") || topic.ends_with("/uptime") {
            continue;
        }
        if let Some(value) = seen.get(topic) {
            assert!(
                value.trim().parse::<u64>().is_ok(),
                "{topic} = {value:?} is not a number"
            );
        }
    }
    let version = seen
        .get("$SYS/broker/version")
        .expect("$SYS/broker/version");
    assert!(!version.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_clients_connected_counts_connected_clients() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
    let mut dashboard = broker.client("dashboard").await;
    dashboard
        .subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    let mut others = Vec::new();
    for i in 0..3 {
        others.push(broker.client(&format!("extra-{i}")).await);
    }
    dashboard
        .wait_for_number("$SYS/broker/clients/connected", |n| n == 4)
        .await;
    drop(others);
    dashboard
        .wait_for_number("$SYS/broker/clients/connected", |n| n == 1)
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_messages_received_grows_with_publishes() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
    let mut dashboard = broker.client("dashboard").await;
    dashboard
        .subscribe("$SYS/broker/messages/received", QoS::AtMostOnce)
        .await;
    let before = dashboard
        .wait_for_number("$SYS/broker/messages/received", |_| true)
        .await;
    let mut publisher = broker.client("pub").await;
    for _ in 0..10 {
        publisher
            .publish("count/t", b"x", QoS::AtLeastOnce, false)
            .await;
    }
    dashboard
        .wait_for_number("$SYS/broker/messages/received", |n| n >= before + 10)
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_retained_messages_count_tracks_the_store() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("keep/a", b"1", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("keep/b", b"2", QoS::AtLeastOnce, true)
        .await;
    let mut dashboard = broker.client("dashboard").await;
    dashboard
        .subscribe("$SYS/broker/retained messages/count", QoS::AtMostOnce)
        .await;
    dashboard
        .wait_for_number("$SYS/broker/retained messages/count", |n| n >= 2)
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_publish_messages_dropped_counts_queue_overflow() {
    let broker = TestBroker::start_with(|c| {
        c.sys.interval_s = 1;
        c.limits.max_queued_messages = 2;
    })
    .await;
    let (mut away, _) = broker.persistent("away").await;
    away.subscribe("drop/t", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = broker.client("pub").await;
    for i in 0..10u8 {
        publisher
            .publish("drop/t", &[i], QoS::AtLeastOnce, false)
            .await;
    }
    let mut dashboard = broker.client("dashboard").await;
    dashboard
        .subscribe("$SYS/broker/publish/messages/dropped", QoS::AtMostOnce)
        .await;
    dashboard
        .wait_for_number("$SYS/broker/publish/messages/dropped", |n| n >= 1)
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_interval_0_publishes_nothing() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 0).await;
    let mut client = broker.client("dashboard").await;
    client.subscribe("$SYS/#", QoS::AtMostOnce).await;
    client.expect_nothing(Duration::from_millis(1500)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn clients_cannot_publish_into_sys() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("$SYS/#", QoS::AtLeastOnce).await;
    let mut forger = broker.client("forger").await;
    let id = pid(1);
    forger
        .send(Packet::Publish(publish_packet(
            "$SYS/broker/version",
            b"forged",
            QoS::AtLeastOnce,
            id,
            true,
        )))
        .await;
    // The broker may acknowledge and drop, or close the connection; either
    // way the message must go nowhere.
    let _ = forger.next_event(QUIET).await;
    let seen = collect(&mut watcher, Duration::from_millis(2500)).await;
    assert!(seen.iter().all(|(_, v)| v != "forged"), "{seen:?}");
    // Nor is it retained for later subscribers.
    let mut late = broker.client("late").await;
    late.subscribe("$SYS/broker/version", QoS::AtLeastOnce)
        .await;
    let later = collect(&mut late, Duration::from_millis(1500)).await;
    assert!(later.iter().all(|(_, v)| v != "forged"), "{later:?}");
    broker.shutdown().await;
}
