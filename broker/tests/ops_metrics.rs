//! The `[metrics]` HTTP listener against an in-process broker: `/metrics`
//! counts a known workload exactly, `/health` answers while the listeners
//! are up, the HTTP edges (404, 405, HEAD, oversized heads, garbage) are
//! refused, and `$SYS` publishes the same numbers.

#[path = "ops_support.rs"]
mod support;

use std::sync::Arc;

use midge_broker::auth::{Authorizer, ClientInfo};
use midge_broker::Broker;
use midge_protocol::{Connect, ConnectReturnCode, QoS};
use support::*;

#[tokio::test]
async fn metrics_count_a_known_workload_exactly() {
    let broker = start(|_| {}).await;
    let (mqtt, http) = (broker.local_addrs()[0], metrics(&broker));
    let idle = scrape(http).await;
    assert_eq!(idle.get("midge_listeners_up"), 1);
    assert_eq!(idle.get("midge_clients_connected"), 0);
    assert_eq!(idle.get("midge_packets_received_total"), 0);

    let mut sub = Mqtt::connect(mqtt, "sub", true).await;
    sub.subscribe("w/#", QoS::ExactlyOnce).await;
    let mut publisher = Mqtt::connect(mqtt, "pub", true).await;
    publisher
        .publish("w/a", b"zero", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("w/b", b"one-1", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("w/c", b"two-22", QoS::ExactlyOnce, false)
        .await;
    publisher
        .publish("nobody/x", b"lost", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("$SYS/x", b"no", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("w/r", b"kept", QoS::AtLeastOnce, true)
        .await;
    publisher.ping().await;
    let got: Vec<_> = [sub.receive().await, sub.receive().await]
        .into_iter()
        .chain([sub.receive().await, sub.receive().await])
        .map(|p| (p.topic.as_str().to_owned(), p.qos()))
        .collect();
    assert_eq!(
        got,
        [
            ("w/a".to_owned(), QoS::AtMostOnce),
            ("w/b".to_owned(), QoS::AtLeastOnce),
            ("w/c".to_owned(), QoS::ExactlyOnce),
            ("w/r".to_owned(), QoS::AtLeastOnce),
        ]
    );
    sub.ping().await;

    let s = scrape_until(http, |s| {
        s.get("midge_messages_sent_total{qos=\"1\"}") == 2
            && s.get("midge_packets_sent_total") == sub.packets_in + publisher.packets_in
    })
    .await;
    let expected = [
        ("midge_clients_connected", 2),
        ("midge_clients_maximum", 2),
        ("midge_sessions", 2),
        ("midge_sessions_disconnected", 0),
        ("midge_connections_accepted_total", 2),
        ("midge_connections_established_total", 2),
        ("midge_connections_refused_total", 0),
        ("midge_auth_failures_total", 0),
        ("midge_messages_received_total{qos=\"0\"}", 3),
        ("midge_messages_received_total{qos=\"1\"}", 2),
        ("midge_messages_received_total{qos=\"2\"}", 1),
        ("midge_message_bytes_received_total{qos=\"0\"}", 10),
        ("midge_message_bytes_received_total{qos=\"1\"}", 9),
        ("midge_message_bytes_received_total{qos=\"2\"}", 6),
        ("midge_messages_sent_total{qos=\"0\"}", 1),
        ("midge_messages_sent_total{qos=\"1\"}", 2),
        ("midge_messages_sent_total{qos=\"2\"}", 1),
        ("midge_message_bytes_sent_total{qos=\"0\"}", 4),
        ("midge_message_bytes_sent_total{qos=\"1\"}", 9),
        ("midge_message_bytes_sent_total{qos=\"2\"}", 6),
        ("midge_messages_dropped_total{reason=\"queue_full\"}", 0),
        ("midge_messages_dropped_total{reason=\"sys_topic\"}", 1),
        ("midge_messages_dropped_total{reason=\"not_authorized\"}", 0),
        ("midge_messages_dropped_total{reason=\"other\"}", 0),
        ("midge_messages_queued", 0),
        ("midge_messages_inflight", 0),
        ("midge_retained_messages", 1),
        ("midge_subscriptions", 1),
        ("midge_listeners_up", 1),
    ];
    for (series, value) in expected {
        assert_eq!(s.get(series), value, "{series}");
    }

    let sub = sub.disconnect().await;
    let publisher = publisher.disconnect().await;
    let s = scrape_until(http, |s| s.get("midge_clients_connected") == 0).await;
    // What the clients counted on their sockets, and what the packets add
    // up to: CONNECT, SUBSCRIBE, PUBACK, PUBREC, PUBCOMP, PUBACK, PINGREQ,
    // DISCONNECT from the subscriber; CONNECT, six PUBLISH, PUBREL, PINGREQ,
    // DISCONNECT from the publisher. Back: CONNACK, SUBACK, four PUBLISH,
    // PUBREL, PINGRESP; CONNACK, PUBACK, PUBREC, PUBCOMP, PUBACK, PINGRESP.
    assert_eq!((sub.packets_out, publisher.packets_out), (8, 10));
    assert_eq!((sub.packets_in, publisher.packets_in), (8, 6));
    assert_eq!(s.get("midge_packets_received_total"), 18);
    assert_eq!(s.get("midge_packets_sent_total"), 14);
    let bytes_out = sub.bytes_out + publisher.bytes_out;
    let bytes_in = sub.bytes_in + publisher.bytes_in;
    assert_eq!(s.get("midge_bytes_received_total"), bytes_out);
    assert_eq!(s.get("midge_bytes_sent_total"), bytes_in);
    assert_eq!(s.get("midge_sessions"), 0);
    assert_eq!(s.get("midge_clients_maximum"), 2);
    assert_eq!(s.get("midge_subscriptions"), 0);
    assert_eq!(s.get("midge_retained_messages"), 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn an_away_sessions_queue_is_counted_and_its_overflow_dropped_as_queue_full() {
    let broker = start(|c| c.limits.max_queued_messages = 3).await;
    let (mqtt, http) = (broker.local_addrs()[0], metrics(&broker));
    let mut away = Mqtt::connect(mqtt, "away", false).await;
    away.subscribe("q", QoS::AtLeastOnce).await;
    away.disconnect().await;
    scrape_until(http, |s| s.get("midge_sessions_disconnected") == 1).await;

    let mut publisher = Mqtt::connect(mqtt, "pub", true).await;
    for n in 0..5u8 {
        publisher.publish("q", &[n], QoS::AtLeastOnce, false).await;
    }
    let s = scrape(http).await;
    assert_eq!(s.get("midge_messages_queued"), 3);
    assert_eq!(
        s.get("midge_messages_dropped_total{reason=\"queue_full\"}"),
        2
    );
    assert_eq!(s.get("midge_sessions"), 2);

    let mut back = Mqtt::connect(mqtt, "away", false).await;
    for n in 0..3u8 {
        assert_eq!(&back.receive().await.payload[..], &[n]);
    }
    back.ping().await;
    let s = scrape_until(http, |s| s.get("midge_messages_inflight") == 0).await;
    assert_eq!(s.get("midge_messages_queued"), 0);
    assert_eq!(s.get("midge_messages_sent_total{qos=\"1\"}"), 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn inflight_counts_unacknowledged_messages_and_queued_those_behind_the_window() {
    let broker = start(|c| c.limits.max_inflight = 2).await;
    let (mqtt, http) = (broker.local_addrs()[0], metrics(&broker));
    let mut sub = Mqtt::connect(mqtt, "slow", true).await;
    sub.subscribe("f", QoS::AtLeastOnce).await;
    let mut publisher = Mqtt::connect(mqtt, "pub", true).await;
    for n in 0..5u8 {
        publisher.publish("f", &[n], QoS::AtLeastOnce, false).await;
    }
    let s = scrape_until(http, |s| s.get("midge_messages_inflight") == 2).await;
    assert_eq!(s.get("midge_messages_queued"), 3);
    for n in 0..5u8 {
        assert_eq!(&sub.receive().await.payload[..], &[n]);
    }
    sub.ping().await;
    let s = scrape_until(http, |s| s.get("midge_messages_inflight") == 0).await;
    assert_eq!(s.get("midge_messages_queued"), 0);
    broker.shutdown().await;
}

/// Refuses the password "wrong" and publishing under `deny/`.
struct Strict;

impl Authorizer for Strict {
    fn authenticate(
        &self,
        _: &ClientInfo<'_>,
        password: Option<&[u8]>,
    ) -> Result<(), ConnectReturnCode> {
        match password {
            Some(b"wrong") => Err(ConnectReturnCode::BadUserNameOrPassword),
            _ => Ok(()),
        }
    }

    fn may_publish(&self, _: &ClientInfo<'_>, topic: &str) -> bool {
        !topic.starts_with("deny/")
    }
}

#[tokio::test]
async fn refused_logins_and_acl_denied_publishes_are_counted() {
    let config = config();
    let broker = Broker::start_with_auth(config, Arc::new(Strict))
        .await
        .expect("broker starts");
    let (mqtt, http) = (broker.local_addrs()[0], metrics(&broker));
    let mut bad = Mqtt::open(mqtt).await;
    let mut connect = Connect::new("intruder");
    connect.username = Some("u".into());
    connect.password = Some(bytes::Bytes::from_static(b"wrong"));
    let code = bad.handshake(connect).await;
    assert_eq!(code, Some(ConnectReturnCode::BadUserNameOrPassword));

    let mut ok = Mqtt::connect(mqtt, "ok", true).await;
    ok.publish("deny/x", b"secret", QoS::AtLeastOnce, false)
        .await;
    ok.publish("allow/x", b"fine", QoS::AtLeastOnce, false)
        .await;
    let s = scrape(http).await;
    assert_eq!(s.get("midge_auth_failures_total"), 1);
    assert_eq!(s.get("midge_connections_accepted_total"), 2);
    assert_eq!(s.get("midge_connections_established_total"), 1);
    assert_eq!(
        s.get("midge_messages_dropped_total{reason=\"not_authorized\"}"),
        1
    );
    assert_eq!(s.get("midge_messages_received_total{qos=\"1\"}"), 2);
    broker.shutdown().await;
}

#[tokio::test]
async fn connections_over_max_connections_are_counted_as_refused() {
    let broker = start(|c| c.limits.max_connections = 1).await;
    let (mqtt, http) = (broker.local_addrs()[0], metrics(&broker));
    let _first = Mqtt::connect(mqtt, "first", true).await;
    let mut second = Mqtt::open(mqtt).await;
    let code = second.handshake(Connect::new("second")).await;
    assert_eq!(code, Some(ConnectReturnCode::ServerUnavailable));
    let s = scrape(http).await;
    assert_eq!(s.get("midge_connections_accepted_total"), 2);
    assert_eq!(s.get("midge_connections_refused_total"), 1);
    assert_eq!(s.get("midge_connections_established_total"), 1);
    assert_eq!(s.get("midge_clients_connected"), 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn health_is_200_while_the_listeners_accept_and_gone_after_shutdown() {
    let broker = start(|c| {
        let second = c.listeners[0].clone();
        c.listeners.push(second);
    })
    .await;
    let http = metrics(&broker);
    let r = get(http, "/health").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "ok: 2 of 2 listeners up\n");
    assert!(r.head.contains("Connection: close"), "{}", r.head);
    broker.shutdown().await;
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
}

#[tokio::test]
async fn the_http_listener_refuses_what_it_does_not_serve() {
    let broker = start(|_| {}).await;
    let http = metrics(&broker);
    assert_eq!(get(http, "/").await.status, 404);
    assert_eq!(get(http, "/metrics/extra").await.status, 404);
    let post = http_raw(http, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(post.status, 405);
    assert!(post.head.contains("Allow: GET, HEAD"), "{}", post.head);
    assert_eq!(http_raw(http, b"hello\r\n\r\n").await.status, 400);
    let head = http_raw(http, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    huge.resize(20_000, b'a');
    let r = http_raw(http, &huge).await;
    assert_eq!(r.status, 431);
    // Still serving after all that.
    assert_eq!(get(http, "/metrics").await.status, 200);
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_topics_publish_the_numbers_metrics_shows() {
    let broker = start(|c| c.sys.interval_s = 1).await;
    let (mqtt, http) = (broker.local_addrs()[0], metrics(&broker));
    let mut watcher = Mqtt::connect(mqtt, "watcher", true).await;
    let mut publisher = Mqtt::connect(mqtt, "pub", true).await;
    publisher
        .publish("t/1", b"abc", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("t/2", b"de", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("$SYS/no", b"x", QoS::AtMostOnce, false)
        .await;
    publisher.ping().await;
    let s = scrape(http).await;
    let pairs = [
        (
            "$SYS/broker/publish/messages/received/qos1",
            "midge_messages_received_total{qos=\"1\"}",
        ),
        (
            "$SYS/broker/publish/bytes/received/qos1",
            "midge_message_bytes_received_total{qos=\"1\"}",
        ),
        (
            "$SYS/broker/publish/messages/dropped/sys_topic",
            "midge_messages_dropped_total{reason=\"sys_topic\"}",
        ),
        (
            "$SYS/broker/connections/established",
            "midge_connections_established_total",
        ),
        ("$SYS/broker/auth/failures", "midge_auth_failures_total"),
    ];
    // Subscribed after the workload: the retained values arrive at once,
    // and a value retained by a round that ran mid-workload is replaced by
    // the next round's.
    watcher.subscribe("$SYS/broker/#", QoS::AtMostOnce).await;
    let want: Vec<(&str, String)> = pairs
        .iter()
        .map(|(topic, series)| (*topic, s.get(series).to_string()))
        .collect();
    let mut seen = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while want.iter().any(|(t, v)| seen.get(*t) != Some(v)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "$SYS {seen:#?} never matched /metrics {want:#?}"
        );
        let p = watcher.receive().await;
        let value = String::from_utf8_lossy(&p.payload).into_owned();
        seen.insert(p.topic.as_str().to_owned(), value);
    }
    assert_eq!(seen["$SYS/broker/publish/messages/received/qos1"], "2");
    assert_eq!(seen["$SYS/broker/publish/bytes/received/qos1"], "5");
    broker.shutdown().await;
}
