//! Broker scenarios: SUBSCRIBE and UNSUBSCRIBE, retained messages and topic
//! matching [MQTT-3.8] [MQTT-3.10] [MQTT-3.3.1-5..12] [MQTT-4.7].

mod support;

use std::sync::Arc;

use midge_broker::auth::{Authorizer, ClientInfo};
use midge_protocol::{Packet, QoS, SubscribeReturnCode, Unsubscribe};
use support::*;

/// Refuses every filter under `secret/`.
struct NoSecrets;

impl Authorizer for NoSecrets {
    fn may_subscribe(&self, _client: &ClientInfo<'_>, filter: &str) -> bool {
        !filter.starts_with("secret/")
    }
}

#[tokio::test]
async fn mqtt_3_8_4_2_suback_has_the_subscribe_packet_id() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("sub").await;
    // `subscribe_many` asserts the SUBACK's id matches.
    let codes = client.subscribe_many(&[("a/b", QoS::AtLeastOnce)]).await;
    assert_eq!(codes, vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)]);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_9_3_1_suback_has_one_granted_qos_per_filter_in_order() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("sub").await;
    let codes = client
        .subscribe_many(&[
            ("a/2", QoS::ExactlyOnce),
            ("a/0", QoS::AtMostOnce),
            ("a/+/1", QoS::AtLeastOnce),
            ("#", QoS::AtMostOnce),
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReturnCode::Success(QoS::ExactlyOnce),
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Success(QoS::AtMostOnce),
        ]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_9_3_refused_filter_gets_0x80_and_the_others_are_granted() {
    let broker = TestBroker::start_with_auth(|_| {}, Arc::new(NoSecrets)).await;
    let mut sub = broker.client("sub").await;
    let codes = sub
        .subscribe_many(&[
            ("open/t", QoS::AtLeastOnce),
            ("secret/t", QoS::AtLeastOnce),
            ("open/u", QoS::ExactlyOnce),
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Success(QoS::ExactlyOnce),
        ]
    );
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("secret/t", b"no", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("open/t", b"yes", QoS::AtLeastOnce, false)
        .await;
    let got = sub.recv_and_ack().await;
    assert_eq!(
        &got.payload[..],
        b"yes",
        "nothing through the refused filter"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_8_4_1_subscription_receives_matching_publishes() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("s/+/x", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("s/1/x", b"yes", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("s/1/y", b"no", QoS::AtLeastOnce, false)
        .await;
    let got = sub.recv_and_ack().await;
    assert_eq!(&*got.topic, "s/1/x");
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_7_1_wildcards_match_per_the_topic_rules() {
    // (filter, topic, matches)
    let table: &[(&str, &str, bool)] = &[
        ("sport/#", "sport", true),
        ("sport/#", "sport/", true),
        ("sport/#", "sport/tennis/player1", true),
        ("sport/#", "sports", false),
        ("sport/+", "sport/", true),
        ("sport/+", "sport/tennis", true),
        ("sport/+", "sport", false),
        ("sport/+", "sport/tennis/player1", false),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("#", "any/thing/at/all", true),
        ("a/+/c", "a//c", true),
        ("Case", "case", false),
        ("a/b", "a/b/", false),
    ];
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    for (i, (filter, topic, matches)) in table.iter().enumerate() {
        let mut sub = broker.client(&format!("sub-{i}")).await;
        sub.subscribe(filter, QoS::AtMostOnce).await;
        // A marker published after `topic` bounds the wait: anything before
        // it was routed for `topic`.
        sub.subscribe("marker/done", QoS::AtMostOnce).await;
        publisher
            .publish(topic, b"m", QoS::AtLeastOnce, false)
            .await;
        publisher
            .publish("marker/done", b"end", QoS::AtLeastOnce, false)
            .await;
        let first = sub.recv_publish().await;
        let matched = &*first.topic == *topic;
        if matched {
            let marker = sub.recv_publish().await;
            assert_eq!(&*marker.topic, "marker/done");
        }
        assert_eq!(
            matched, *matches,
            "filter {filter:?} vs topic {topic:?} [MQTT-4.7.1]"
        );
        sub.disconnect().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_7_2_1_wildcard_filters_do_not_match_dollar_topics() {
    let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
    let mut wild = broker.client("wild").await;
    let codes = wild
        .subscribe_many(&[
            ("#", QoS::AtMostOnce),
            ("+/broker/#", QoS::AtMostOnce),
            ("+/+/+", QoS::AtMostOnce),
        ])
        .await;
    assert_eq!(codes.len(), 3);
    let mut sys = broker.client("sys").await;
    sys.subscribe("$SYS/#", QoS::AtMostOnce).await;
    // The broker publishes $SYS topics every second: the explicit filter
    // sees them, the wildcard ones must not.
    let got = sys.recv_publish().await;
    assert!(got.topic.starts_with("$SYS/"), "{got:?}");
    wild.expect_nothing(std::time::Duration::from_millis(2500))
        .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_8_retained_message_sent_on_subscribe_with_retain_1() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/a", b"stored", QoS::AtLeastOnce, true)
        .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/a", QoS::AtLeastOnce).await;
    let got = sub.recv_and_ack().await;
    assert!(got.retain, "sent because of a new subscription: RETAIN=1");
    assert_eq!(&got.payload[..], b"stored");
    assert_eq!(got.qos(), QoS::AtLeastOnce);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_6_retained_messages_of_every_matching_topic_are_sent() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    for topic in ["many/a", "many/b/c", "other/x"] {
        publisher
            .publish(topic, topic.as_bytes(), QoS::AtMostOnce, true)
            .await;
    }
    let mut sub = broker.client("sub").await;
    sub.subscribe("many/#", QoS::AtMostOnce).await;
    let mut topics = vec![
        sub.recv_publish().await.topic.to_string(),
        sub.recv_publish().await.topic.to_string(),
    ];
    topics.sort();
    assert_eq!(topics, ["many/a", "many/b/c"]);
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_6_retained_message_delivered_at_min_of_stored_and_granted_qos() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/q2", b"q2", QoS::ExactlyOnce, true)
        .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/q2", QoS::AtLeastOnce).await;
    let got = sub.recv_and_ack().await;
    assert_eq!(got.qos(), QoS::AtLeastOnce);
    assert!(got.retain);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_8_4_3_resubscribe_replaces_subscription_and_resends_retained() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("resub/t", b"retained", QoS::AtLeastOnce, true)
        .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("resub/t", QoS::AtLeastOnce).await;
    let first = sub.recv_and_ack().await;
    assert!(first.retain);
    // Same filter again, lower QoS: replaces, and the retained message is
    // sent again.
    sub.subscribe("resub/t", QoS::AtMostOnce).await;
    let again = sub.recv_publish().await;
    assert!(again.retain);
    assert_eq!(&again.payload[..], b"retained");
    assert_eq!(again.qos(), QoS::AtMostOnce);
    // One subscription, at the new QoS: one copy at QoS 0.
    publisher
        .publish("resub/t", b"live", QoS::AtLeastOnce, false)
        .await;
    let live = sub.recv_publish().await;
    assert_eq!(&live.payload[..], b"live");
    assert_eq!(live.qos(), QoS::AtMostOnce);
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_5_newer_retained_message_replaces_older() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/r", b"old", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("ret/r", b"new", QoS::AtLeastOnce, true)
        .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/r", QoS::AtLeastOnce).await;
    let got = sub.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"new");
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_10_zero_length_retained_publish_removes_retained() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/d", b"doomed", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("ret/d", b"", QoS::AtLeastOnce, true)
        .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/d", QoS::AtLeastOnce).await;
    // [MQTT-3.3.1-11]: the zero-length message itself is not stored.
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_10_zero_length_retained_publish_is_forwarded_to_subscribers() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/z", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/z", b"", QoS::AtLeastOnce, true)
        .await;
    let got = sub.recv_and_ack().await;
    assert!(got.payload.is_empty());
    assert!(!got.retain);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_12_non_retained_publish_leaves_retained_message_alone() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/k", b"keep", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("ret/k", b"passing", QoS::AtLeastOnce, false)
        .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/k", QoS::AtLeastOnce).await;
    let got = sub.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"keep");
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_7_qos0_retained_message_discards_previous_retained() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/q0", b"one", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("ret/q0", b"two", QoS::AtMostOnce, true)
        .await;
    // Route a marker through the same connection so the QoS 0 publish was
    // handled before the new subscription.
    publisher
        .publish("ret/other", b"m", QoS::AtLeastOnce, false)
        .await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/q0", QoS::AtLeastOnce).await;
    // The old message MUST be gone; storing the QoS 0 one is a SHOULD.
    match sub.next_event(QUIET).await {
        Event::Timeout => {}
        Event::Packet(Packet::Publish(got)) => {
            assert_eq!(&got.payload[..], b"two");
            assert_eq!(got.qos(), QoS::AtMostOnce);
        }
        other => panic!("unexpected {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_10_4_4_unsuback_has_the_unsubscribe_packet_id() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("unsub").await;
    client.subscribe("u/t", QoS::AtMostOnce).await;
    client
        .send(Packet::Unsubscribe(Unsubscribe {
            pkid: pid(321),
            filters: vec!["u/t".into()],
        }))
        .await;
    client.expect(Packet::UnsubAck(pid(321))).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_10_4_5_unsuback_even_when_nothing_matched() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("unsub").await;
    client
        .send(Packet::Unsubscribe(Unsubscribe {
            pkid: pid(9),
            filters: vec!["never/subscribed".into(), "nor/+/this".into()],
        }))
        .await;
    client.expect(Packet::UnsubAck(pid(9))).await;
    client.ping().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_10_4_2_unsubscribe_stops_delivery() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("u/stop", QoS::AtLeastOnce).await;
    sub.unsubscribe("u/stop").await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("u/stop", b"x", QoS::AtLeastOnce, false)
        .await;
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_10_4_1_unsubscribe_matches_filters_character_by_character() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("u/+", QoS::AtMostOnce).await;
    // `u/x` is not the filter `u/+`; the subscription stays.
    sub.unsubscribe("u/x").await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("u/x", b"still", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"still");
    broker.shutdown().await;
}
