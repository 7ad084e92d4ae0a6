//! Broker scenarios: PUBLISH in both directions at QoS 0, 1 and 2, QoS
//! downgrade, overlapping subscriptions, ordering and flags [MQTT-3.3]
//! [MQTT-4.3] [MQTT-4.6].

mod support;

use midge_protocol::{Packet, Publish, QoS, QosPid};
use support::*;

const ALL_QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

#[tokio::test]
async fn mqtt_4_3_1_qos0_publish_is_forwarded_at_qos0() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("q0/t", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("q0/t", b"zero", QoS::AtMostOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(got.qos_pid, QosPid::AtMostOnce);
    assert_eq!(&*got.topic, "q0/t");
    assert_eq!(&got.payload[..], b"zero");
    assert!(!got.dup);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_2_qos1_publish_is_acknowledged_with_puback() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    let id = pid(4242);
    publisher
        .send(Packet::Publish(publish_packet(
            "q1/none",
            b"x",
            QoS::AtLeastOnce,
            id,
            false,
        )))
        .await;
    // Acknowledged with the same id even when nobody subscribes.
    publisher.expect(Packet::PubAck(id)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_2_qos1_is_delivered_with_a_packet_id_and_accepts_puback() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("q1/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("q1/t", b"one", QoS::AtLeastOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert!(matches!(got.qos_pid, QosPid::AtLeastOnce(_)), "{got:?}");
    assert_eq!(&got.payload[..], b"one");
    sub.ack(&got).await;
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_qos2_inbound_flow_is_pubrec_pubrel_pubcomp() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    let id = pid(7);
    publisher
        .send(Packet::Publish(publish_packet(
            "q2/in",
            b"x",
            QoS::ExactlyOnce,
            id,
            false,
        )))
        .await;
    publisher.expect(Packet::PubRec(id)).await;
    publisher.send(Packet::PubRel(id)).await;
    publisher.expect(Packet::PubComp(id)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_qos2_outbound_flow_to_subscriber() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("q2/out", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("q2/out", b"two", QoS::ExactlyOnce, false)
        .await;
    let got = sub.recv_publish().await;
    let QosPid::ExactlyOnce(id) = got.qos_pid else {
        panic!("expected QoS 2, got {got:?}");
    };
    assert_eq!(&got.payload[..], b"two");
    sub.send(Packet::PubRec(id)).await;
    sub.expect(Packet::PubRel(id)).await;
    sub.send(Packet::PubComp(id)).await;
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_2_qos2_resent_publish_before_pubrel_is_not_forwarded_twice() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("q2/once", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    let id = pid(9);
    let first = publish_packet("q2/once", b"only once", QoS::ExactlyOnce, id, false);
    publisher.send(Packet::Publish(first.clone())).await;
    publisher.expect(Packet::PubRec(id)).await;
    let again = Publish { dup: true, ..first };
    publisher.send(Packet::Publish(again)).await;
    publisher.expect(Packet::PubRec(id)).await;
    publisher.send(Packet::PubRel(id)).await;
    publisher.expect(Packet::PubComp(id)).await;
    let got = sub.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"only once");
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_2_after_pubrel_the_same_packet_id_is_a_new_message() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("q2/reuse", QoS::ExactlyOnce).await;
    let mut publisher = broker.client("pub").await;
    let id = pid(3);
    for payload in [&b"first"[..], b"second"] {
        publisher
            .send(Packet::Publish(publish_packet(
                "q2/reuse",
                payload,
                QoS::ExactlyOnce,
                id,
                false,
            )))
            .await;
        publisher.finish_publish(QoS::ExactlyOnce, id).await;
    }
    let got = sub.recv_publishes(2).await;
    assert_eq!(&got[0].payload[..], b"first");
    assert_eq!(&got[1].payload[..], b"second");
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_pubrel_for_unknown_id_gets_pubcomp() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("stray").await;
    // A PUBREL after a lost PUBCOMP is answered again [MQTT-4.3.3-2].
    client.send(Packet::PubRel(pid(77))).await;
    client.expect(Packet::PubComp(pid(77))).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_8_4_6_delivered_qos_is_min_of_published_and_granted() {
    let broker = TestBroker::start().await;
    let mut publisher = broker.client("pub").await;
    for granted in ALL_QOS {
        let topic = format!("min/{}", granted as u8);
        let mut sub = broker.client(&format!("sub-{}", granted as u8)).await;
        sub.subscribe(&topic, granted).await;
        for published in ALL_QOS {
            publisher.publish(&topic, b"m", published, false).await;
            let got = sub.recv_and_ack().await;
            assert_eq!(
                got.qos(),
                published.min(granted),
                "published at {published:?}, granted {granted:?}"
            );
        }
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_5_1_overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    let codes = sub
        .subscribe_many(&[
            ("over/+", QoS::AtMostOnce),
            ("over/#", QoS::ExactlyOnce),
            ("over/t", QoS::AtLeastOnce),
        ])
        .await;
    assert_eq!(codes.len(), 3);
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("over/t", b"once", QoS::ExactlyOnce, false)
        .await;
    let got = sub.recv_and_ack().await;
    assert_eq!(got.qos(), QoS::ExactlyOnce);
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_9_retain_flag_is_0_on_normal_forwarding() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ret/live", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("ret/live", b"kept", QoS::AtLeastOnce, true)
        .await;
    let got = sub.recv_and_ack().await;
    assert!(
        !got.retain,
        "forwarded to an existing subscription: RETAIN=0"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_3_incoming_dup_flag_is_not_propagated() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("dup/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    let id = pid(5);
    let publish = Publish {
        dup: true,
        ..publish_packet("dup/t", b"d", QoS::AtLeastOnce, id, false)
    };
    publisher.send(Packet::Publish(publish)).await;
    publisher.expect(Packet::PubAck(id)).await;
    let got = sub.recv_and_ack().await;
    assert!(!got.dup, "first delivery to the subscriber: DUP=0");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_2_3_1_2_unacknowledged_deliveries_use_distinct_packet_ids() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("ids/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    for i in 0..5u8 {
        publisher
            .publish("ids/t", &[i], QoS::AtLeastOnce, false)
            .await;
    }
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            sub.recv_publish()
                .await
                .pkid()
                .expect("QoS 1 carries an id"),
        );
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "ids in flight must differ: {ids:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_4_publish_to_a_topic_without_subscribers_is_dropped() {
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("quiet/a", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("pub").await;
    publisher
        .publish("quiet/b", b"x", QoS::AtLeastOnce, false)
        .await;
    sub.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_6_0_6_order_kept_per_topic_at_qos0() {
    ordered_delivery(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn mqtt_4_6_0_6_order_kept_per_topic_at_qos1() {
    ordered_delivery(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn mqtt_4_6_0_6_order_kept_per_topic_at_qos2() {
    ordered_delivery(QoS::ExactlyOnce).await;
}

/// Publishes 100 messages on one topic in one burst, without waiting for
/// acknowledgements, and checks they arrive in order [MQTT-4.6.0-6].
async fn ordered_delivery(qos: QoS) {
    const N: u16 = 100;
    let broker = TestBroker::start().await;
    let mut sub = broker.client("sub").await;
    sub.subscribe("order/t", qos).await;
    let mut publisher = broker.client("pub").await;
    let publishing = tokio::spawn(async move {
        let burst = (1..=N).map(|i| {
            Packet::Publish(publish_packet(
                "order/t",
                &i.to_be_bytes(),
                qos,
                pid(i),
                false,
            ))
        });
        publisher.send_all(burst).await;
        complete_as_sender(&mut publisher, qos, N).await;
    });
    // Acknowledged as they come, so the inflight window never blocks.
    let got = sub.recv_publishes(usize::from(N)).await;
    let payloads: Vec<_> = got.iter().map(|p| p.payload.clone()).collect();
    assert!(got.iter().all(|p| p.qos() == qos));
    for (i, payload) in (1..=N).zip(&payloads) {
        assert_eq!(&payload[..], &i.to_be_bytes(), "message {i} out of order");
    }
    publishing.await.expect("the publisher finishes");
    broker.shutdown().await;
}

/// Reads the broker's acknowledgements for `n` publishes sent at `qos`,
/// sending PUBREL for each PUBREC, until every one is complete.
async fn complete_as_sender(publisher: &mut Client, qos: QoS, n: u16) {
    let mut done = 0;
    while qos != QoS::AtMostOnce && done < n {
        match publisher.recv().await {
            Packet::PubAck(_) if qos == QoS::AtLeastOnce => done += 1,
            Packet::PubRec(id) if qos == QoS::ExactlyOnce => {
                publisher.send(Packet::PubRel(id)).await;
            }
            Packet::PubComp(_) if qos == QoS::ExactlyOnce => done += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
}
