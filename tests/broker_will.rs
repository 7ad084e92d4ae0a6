//! Broker scenarios: the will message [MQTT-3.1.2-8..17].
//!
//! Keepalive and takeover wills are in `broker_keepalive.rs` and
//! `broker_connect.rs`, next to the behaviour that triggers them.

mod support;

use midge_protocol::{ConnectReturnCode, Packet, QoS};
use support::*;

/// A watcher subscribed to `wills/#` at `qos`, and a client that left a will
/// on `wills/<id>`.
async fn watcher_and_willing_client(
    broker: &TestBroker,
    id: &str,
    will_qos: QoS,
    will_retain: bool,
    watch_qos: QoS,
) -> (Client, Client) {
    let mut watcher = broker.client(&format!("watcher-{id}")).await;
    watcher.subscribe("wills/#", watch_qos).await;
    let (client, ack) = broker
        .connect_with(connect_with_will(
            id,
            &format!("wills/{id}"),
            format!("{id} is gone").as_bytes(),
            will_qos,
            will_retain,
        ))
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    (watcher, client)
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_when_connection_drops() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) =
        watcher_and_willing_client(&broker, "dropper", QoS::AtMostOnce, false, QoS::AtMostOnce)
            .await;
    client.drop_connection();
    let will = watcher.recv_publish().await;
    assert_eq!(&*will.topic, "wills/dropper");
    assert_eq!(&will.payload[..], b"dropper is gone");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_when_connection_is_reset() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) =
        watcher_and_willing_client(&broker, "resetter", QoS::AtMostOnce, false, QoS::AtMostOnce)
            .await;
    client.reset();
    let will = watcher.recv_publish().await;
    assert_eq!(&*will.topic, "wills/resetter");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_not_published_while_connected() {
    let broker = TestBroker::start().await;
    let (mut watcher, mut client) =
        watcher_and_willing_client(&broker, "stayer", QoS::AtMostOnce, false, QoS::AtMostOnce)
            .await;
    client.ping().await;
    watcher.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_10_will_discarded_on_disconnect() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) =
        watcher_and_willing_client(&broker, "polite", QoS::AtLeastOnce, false, QoS::AtLeastOnce)
            .await;
    client.disconnect().await;
    watcher.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_on_protocol_violation() {
    let broker = TestBroker::start().await;
    let (mut watcher, mut client) =
        watcher_and_willing_client(&broker, "violator", QoS::AtMostOnce, false, QoS::AtMostOnce)
            .await;
    // A reserved packet type [MQTT-2.2.1].
    client.send_raw(&[0xf0, 0x00]).await;
    client.expect_closed().await;
    let will = watcher.recv_publish().await;
    assert_eq!(&*will.topic, "wills/violator");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_after_second_connect() {
    let broker = TestBroker::start().await;
    let (mut watcher, mut client) = watcher_and_willing_client(
        &broker,
        "reconnector",
        QoS::AtMostOnce,
        false,
        QoS::AtMostOnce,
    )
    .await;
    client
        .send(Packet::Connect(connect_packet("reconnector", true)))
        .await;
    client.expect_closed().await;
    let will = watcher.recv_publish().await;
    assert_eq!(&*will.topic, "wills/reconnector");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_14_will_published_with_its_qos() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) =
        watcher_and_willing_client(&broker, "q2", QoS::ExactlyOnce, false, QoS::ExactlyOnce).await;
    client.drop_connection();
    let will = watcher.recv_and_ack().await;
    assert_eq!(will.qos(), QoS::ExactlyOnce);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_14_will_delivered_at_min_of_will_qos_and_granted() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) =
        watcher_and_willing_client(&broker, "q1", QoS::AtLeastOnce, false, QoS::ExactlyOnce).await;
    client.drop_connection();
    let will = watcher.recv_and_ack().await;
    assert_eq!(will.qos(), QoS::AtLeastOnce);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_16_will_retain_0_is_not_retained() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) = watcher_and_willing_client(
        &broker,
        "fleeting",
        QoS::AtLeastOnce,
        false,
        QoS::AtLeastOnce,
    )
    .await;
    client.drop_connection();
    let will = watcher.recv_and_ack().await;
    assert!(!will.retain);
    let mut late = broker.client("late").await;
    late.subscribe("wills/fleeting", QoS::AtLeastOnce).await;
    late.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_17_will_retain_1_publishes_a_retained_message() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) =
        watcher_and_willing_client(&broker, "lasting", QoS::AtLeastOnce, true, QoS::AtLeastOnce)
            .await;
    client.drop_connection();
    // Existing subscribers get it as a normal forward (RETAIN=0).
    let will = watcher.recv_and_ack().await;
    assert!(!will.retain, "[MQTT-3.3.1-9]");
    let mut late = broker.client("late").await;
    late.subscribe("wills/lasting", QoS::AtLeastOnce).await;
    let retained = late.recv_and_ack().await;
    assert!(retained.retain);
    assert_eq!(&retained.payload[..], b"lasting is gone");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_10_will_published_only_once() {
    let broker = TestBroker::start().await;
    let (mut watcher, client) =
        watcher_and_willing_client(&broker, "once", QoS::AtLeastOnce, false, QoS::AtLeastOnce)
            .await;
    client.drop_connection();
    watcher.recv_and_ack().await;
    // Reconnecting with the same id and dropping again, without a will this
    // time, publishes nothing: the old will was removed once published.
    let again = broker.client("once").await;
    again.drop_connection();
    watcher.expect_nothing(QUIET).await;
    broker.shutdown().await;
}
