//! Broker scenarios: clean and persistent sessions, the offline queue,
//! redelivery on reconnect and the inflight window [MQTT-3.1.2-4..6]
//! [MQTT-4.4].

mod support;

use midge_protocol::{Packet, Publish, QoS, QosPid};
use support::*;

#[tokio::test]
async fn mqtt_3_1_2_6_clean_session_1_state_ends_with_the_connection() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("short-lived").await;
    client.subscribe("cs/t", QoS::AtLeastOnce).await;
    client.disconnect().await;
    let (mut client, present) = broker.persistent("short-lived").await;
    assert!(!present, "nothing of the CleanSession=1 session is kept");
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("cs/t", b"x", QoS::AtLeastOnce, false)
        .await;
    client.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_6_clean_session_1_discards_a_stored_session() {
    let broker = TestBroker::start().await;
    let (mut client, _) = broker.persistent("wiped").await;
    client.subscribe("cs/w", QoS::AtLeastOnce).await;
    client.disconnect().await;
    let mut client = broker.client("wiped").await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("cs/w", b"x", QoS::AtLeastOnce, false)
        .await;
    client.expect_nothing(QUIET).await;
    client.disconnect().await;
    let (_client, present) = broker.persistent("wiped").await;
    assert!(!present, "the stored session was discarded");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_4_persistent_session_keeps_subscriptions() {
    let broker = TestBroker::start().await;
    let (mut client, _) = broker.persistent("keeper").await;
    client.subscribe("keep/t", QoS::AtLeastOnce).await;
    client.disconnect().await;
    let (mut client, present) = broker.persistent("keeper").await;
    assert!(present);
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("keep/t", b"still here", QoS::AtLeastOnce, false)
        .await;
    let got = client.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"still here");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_5_qos1_and_qos2_messages_are_queued_while_offline() {
    let broker = TestBroker::start().await;
    let (mut client, _) = broker.persistent("away").await;
    client.subscribe("away/t", QoS::ExactlyOnce).await;
    client.disconnect().await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("away/t", b"1", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("away/t", b"2", QoS::ExactlyOnce, false)
        .await;
    publisher
        .publish("away/t", b"3", QoS::AtLeastOnce, false)
        .await;
    let (mut client, present) = broker.persistent("away").await;
    assert!(present);
    let got = client.recv_publishes(3).await;
    assert!(got.iter().all(|p| !p.dup), "never sent before: DUP=0");
    let at = |qos: QoS| -> Vec<&[u8]> {
        got.iter()
            .filter(|p| p.qos() == qos)
            .map(|p| &p.payload[..])
            .collect()
    };
    // Order is kept per topic and QoS [MQTT-4.6.0-6].
    assert_eq!(at(QoS::AtLeastOnce), [b"1", b"3"]);
    assert_eq!(at(QoS::ExactlyOnce), [b"2"]);
    client.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn offline_queue_is_bounded_by_max_queued_messages() {
    const MAX: usize = 5;
    let broker = TestBroker::start_with(|c| c.limits.max_queued_messages = MAX as _).await;
    let (mut client, _) = broker.persistent("overflow").await;
    client.subscribe("full/t", QoS::AtLeastOnce).await;
    client.disconnect().await;
    let mut publisher = broker.client("pub").await;
    for i in 0..20u8 {
        publisher
            .publish("full/t", &[i], QoS::AtLeastOnce, false)
            .await;
    }
    // The publisher is never refused because a subscriber's queue is full.
    publisher.ping().await;
    let (mut client, present) = broker.persistent("overflow").await;
    assert!(present);
    let mut got = Vec::new();
    while let Event::Packet(packet) = client.next_event(QUIET).await {
        let Packet::Publish(p) = packet else {
            panic!("unexpected {packet:?}");
        };
        client.ack(&p).await;
        got.push(p.payload[0]);
    }
    assert!(
        !got.is_empty() && got.len() <= MAX,
        "{} messages delivered from a queue bounded at {MAX}: {got:?}",
        got.len()
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_unacknowledged_publishes_resent_with_dup_in_original_order() {
    let broker = TestBroker::start().await;
    let (mut client, _) = broker.persistent("forgetful").await;
    client.subscribe("re/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    for payload in [b"a", b"b", b"c"] {
        publisher
            .publish("re/t", payload, QoS::AtLeastOnce, false)
            .await;
    }
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(client.recv_publish().await);
    }
    // Gone without acknowledging anything.
    client.drop_connection();
    let (mut client, present) = broker.persistent("forgetful").await;
    assert!(present);
    for original in &first {
        let again = client.recv_publish().await;
        assert!(again.dup, "a re-delivery carries DUP=1 [MQTT-3.3.1-1]");
        assert_eq!(again.pkid(), original.pkid(), "original packet id");
        assert_eq!(again.payload, original.payload, "original order");
        client.ack(&again).await;
    }
    client.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_acknowledged_publishes_are_not_resent() {
    let broker = TestBroker::start().await;
    let (mut client, _) = broker.persistent("diligent").await;
    client.subscribe("re/acked", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("re/acked", b"a", QoS::AtLeastOnce, false)
        .await;
    client.recv_and_ack().await;
    // Make sure the PUBACK was processed before the connection goes.
    client.ping().await;
    client.drop_connection();
    let (mut client, _) = broker.persistent("diligent").await;
    client.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_resent_publishes_come_before_queued_messages() {
    let broker = TestBroker::start().await;
    let (mut client, _) = broker.persistent("behind").await;
    client.subscribe("re/q", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("re/q", b"1", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("re/q", b"2", QoS::AtLeastOnce, false)
        .await;
    let one = client.recv_publish().await;
    let two = client.recv_publish().await;
    client.drop_connection();
    publisher
        .publish("re/q", b"3", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("re/q", b"4", QoS::AtLeastOnce, false)
        .await;
    let (mut client, present) = broker.persistent("behind").await;
    assert!(present);
    let mut got: Vec<Publish> = Vec::new();
    for _ in 0..4 {
        got.push(client.recv_and_ack().await);
    }
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [b"1", b"2", b"3", b"4"]);
    assert_eq!(got[0].pkid(), one.pkid());
    assert_eq!(got[1].pkid(), two.pkid());
    assert!(got[0].dup && got[1].dup, "re-deliveries: DUP=1");
    assert!(!got[2].dup && !got[3].dup, "queued, never sent: DUP=0");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_unacknowledged_pubrel_resent_on_reconnect() {
    let broker = TestBroker::start().await;
    let (mut client, _) = broker.persistent("half-done").await;
    client.subscribe("re/q2", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("re/q2", b"x", QoS::ExactlyOnce, false)
        .await;
    let got = client.recv_publish().await;
    let QosPid::ExactlyOnce(id) = got.qos_pid else {
        panic!("expected QoS 2, got {got:?}");
    };
    client.send(Packet::PubRec(id)).await;
    client.expect(Packet::PubRel(id)).await;
    // Gone without PUBCOMP.
    client.drop_connection();
    let (mut client, present) = broker.persistent("half-done").await;
    assert!(present);
    // The PUBREL again, not the PUBLISH: the message was already received.
    client.expect(Packet::PubRel(id)).await;
    client.send(Packet::PubComp(id)).await;
    client.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_qos2_inbound_exactly_once_across_publisher_reconnect() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("re/in2", QoS::ExactlyOnce).await;
    let (mut publisher, _) = broker.persistent("pub-q2").await;
    let id = pid(11);
    let publish = publish_packet("re/in2", b"once", QoS::ExactlyOnce, id, false);
    publisher.send(Packet::Publish(publish.clone())).await;
    publisher.expect(Packet::PubRec(id)).await;
    publisher.drop_connection();
    // The publisher comes back and, as it must [MQTT-4.4.0-1], re-sends
    // the PUBLISH it has no PUBCOMP for, then completes the flow.
    let (mut publisher, present) = broker.persistent("pub-q2").await;
    assert!(present);
    publisher
        .send(Packet::Publish(Publish {
            dup: true,
            ..publish
        }))
        .await;
    publisher.expect(Packet::PubRec(id)).await;
    publisher.send(Packet::PubRel(id)).await;
    publisher.expect(Packet::PubComp(id)).await;
    let got = sub.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"once");
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn max_inflight_bounds_unacknowledged_outgoing_messages() {
    const WINDOW: usize = 3;
    let broker = TestBroker::start_with(|c| c.limits.max_inflight = WINDOW as _).await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("win/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    for i in 0..10u8 {
        publisher
            .publish("win/t", &[i], QoS::AtLeastOnce, false)
            .await;
    }
    let mut window = Vec::new();
    for _ in 0..WINDOW {
        window.push(sub.recv_publish().await);
    }
    sub.expect_nothing(QUIET).await;
    // One acknowledgement lets exactly one more through.
    let mut window = window.into_iter();
    let first = window.next().expect("a full window");
    sub.ack(&first).await;
    let more = sub.recv_publish().await;
    assert_eq!(more.payload[0], WINDOW as u8, "the next one in order");
    sub.expect_nothing(QUIET).await;
    // Then everything else, in order, as acknowledgements open the window.
    for p in window.chain([more]) {
        sub.ack(&p).await;
    }
    let mut rest = Vec::new();
    while let Event::Packet(packet) = sub.next_event(QUIET).await {
        let Packet::Publish(p) = packet else {
            panic!("unexpected {packet:?}");
        };
        sub.ack(&p).await;
        rest.push(p.payload[0]);
    }
    let expected: Vec<u8> = (WINDOW as u8 + 1..10).collect();
    assert_eq!(rest, expected, "the rest, in order");
    broker.shutdown().await;
}

#[tokio::test]
async fn max_inflight_bounds_unacknowledged_qos2_messages() {
    const WINDOW: usize = 2;
    let broker = TestBroker::start_with(|c| c.limits.max_inflight = WINDOW as _).await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("win/q2", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    for i in 0..5u8 {
        publisher
            .publish("win/q2", &[i], QoS::ExactlyOnce, false)
            .await;
    }
    for _ in 0..WINDOW {
        sub.recv_publish().await;
    }
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}
