//! Broker scenarios: keepalive and PINGREQ [MQTT-3.1.2-23] [MQTT-3.1.2-24]
//! [MQTT-3.12].

mod support;

use std::time::Duration;

use midge_protocol::{ConnectReturnCode, Packet, QoS};
use support::*;
use tokio::time::Instant;

#[tokio::test]
async fn mqtt_3_12_4_1_pingreq_is_answered_with_pingresp() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("pinger").await;
    client.send(Packet::PingReq).await;
    client.expect(Packet::PingResp).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_24_keepalive_timeout_closes() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet("sleepy", true);
    connect.keep_alive = 1;
    let (mut client, ack) = broker.connect_with(connect).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    let started = Instant::now();
    client.expect_closed_within(Duration::from_secs(4)).await;
    let elapsed = started.elapsed();
    // One and a half times the keepalive: 1.5 s, with scheduling slack.
    assert!(
        elapsed >= Duration::from_millis(1200),
        "closed after {elapsed:?}, before 1.5 x keepalive"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_24_keepalive_timeout_closes_and_publishes_will() {
    let broker = TestBroker::start().await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut connect = connect_with_will(
        "sleepy",
        "wills/sleepy",
        b"timed out",
        QoS::AtLeastOnce,
        false,
    );
    connect.keep_alive = 1;
    let (mut client, ack) = broker.connect_with(connect).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    client.expect_closed_within(Duration::from_secs(4)).await;
    let will = watcher.recv_and_ack().await;
    assert_eq!(&*will.topic, "wills/sleepy");
    assert_eq!(&will.payload[..], b"timed out");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_23_pingreq_keeps_the_connection_alive() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet("pinger", true);
    connect.keep_alive = 1;
    let (mut client, _) = broker.connect_with(connect).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.ping().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_23_any_control_packet_resets_the_keepalive_timer() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet("chatty", true);
    connect.keep_alive = 1;
    let (mut client, _) = broker.connect_with(connect).await;
    for i in 0..6u8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.publish("chat/t", &[i], QoS::AtMostOnce, false).await;
    }
    client.ping().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn section_3_1_2_10_keepalive_0_turns_the_timeout_off() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet("forever", true);
    connect.keep_alive = 0;
    let (mut client, _) = broker.connect_with(connect).await;
    client.expect_nothing(Duration::from_millis(2500)).await;
    client.ping().await;
    broker.shutdown().await;
}
