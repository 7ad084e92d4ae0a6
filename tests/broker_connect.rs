//! Broker scenarios: CONNECT and CONNACK, protocol levels, client ids,
//! session-present and takeover [MQTT-3.1] [MQTT-3.2].
//!
//! Each test starts its own broker on 127.0.0.1:0 and talks raw packets.

mod support;

use std::time::Duration;

use midge_protocol::{Connect, ConnectReturnCode, Packet, QoS};
use support::*;

#[tokio::test]
async fn mqtt_3_1_0_1_first_packet_must_be_connect() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    client.send(Packet::PingReq).await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_0_1_publish_before_connect_closes() {
    let broker = TestBroker::start().await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("t", QoS::AtMostOnce).await;
    let mut client = broker.tcp().await;
    client
        .send(Packet::Publish(publish_packet(
            "t",
            b"x",
            QoS::AtMostOnce,
            pid(1),
            false,
        )))
        .await;
    client.expect_closed().await;
    watcher.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_0_1_no_connect_within_connect_timeout_closes() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_s = 1).await;
    let mut client = broker.tcp().await;
    let started = tokio::time::Instant::now();
    client.expect_closed_within(Duration::from_secs(4)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before the 1 s CONNECT timeout",
        started.elapsed()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_0_1_partial_connect_within_timeout_still_closes() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_s = 1).await;
    let mut client = broker.tcp().await;
    let connect = raw_connect(b"MQTT", 4, 0x02, 60, &[b"slowloris"]);
    // Half a CONNECT, then silence: the timeout covers the whole packet.
    client.send_raw(&connect[..connect.len() / 2]).await;
    client.expect_closed_within(Duration::from_secs(4)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_0_2_second_connect_closes() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("twice").await;
    client
        .send(Packet::Connect(connect_packet("twice", true)))
        .await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_1_level_4_mqtt_is_accepted() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    client
        .send_raw(&raw_connect(b"MQTT", 4, 0x02, 60, &[b"v311"]))
        .await;
    client
        .expect(Packet::ConnAck(midge_protocol::ConnAck {
            session_present: false,
            code: ConnectReturnCode::Accepted,
        }))
        .await;
    client.ping().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_2_mqtt5_connect_gets_connack_0x01_and_close() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    // A well-formed MQTT 5 CONNECT: level 5 and an empty property list.
    let mut body = field(b"MQTT");
    body.extend([5, 0x02, 0, 60, 0]);
    body.extend(field(b"v5"));
    client.send_raw(&raw_packet(0x10, &body)).await;
    let ack = client.expect_connack().await;
    assert_eq!(ack.code, ConnectReturnCode::UnacceptableProtocolVersion);
    assert!(!ack.session_present, "[MQTT-3.2.2-4]");
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_2_unknown_protocol_level_gets_connack_0x01_and_close() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    client
        .send_raw(&raw_connect(b"MQTT", 6, 0x02, 60, &[b"v6"]))
        .await;
    let ack = client.expect_connack().await;
    assert_eq!(ack.code, ConnectReturnCode::UnacceptableProtocolVersion);
    assert!(!ack.session_present, "[MQTT-3.2.2-4]");
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_3_reserved_connect_flag_closes() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    client
        .send_raw(&raw_connect(b"MQTT", 4, 0x03, 60, &[b"reserved"]))
        .await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_bridge_level_0x84_is_served_and_not_sent_its_own_messages() {
    // Mosquitto's bridges set the top bit of the level (`try_private`);
    // Mosquitto, EMQX and others serve them, and a bridge that subscribes
    // to what it publishes (a two-way bridge) must not get it back.
    let broker = TestBroker::start().await;
    let (mut bridge, ack) = broker
        .connect_with(Connect {
            bridge: true,
            ..connect_packet("a-bridge", true)
        })
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    bridge.subscribe("b/#", QoS::AtLeastOnce).await;
    let mut other = broker.client("other").await;
    other.subscribe("b/#", QoS::AtLeastOnce).await;

    bridge
        .publish("b/from-bridge", b"1", QoS::AtLeastOnce, false)
        .await;
    let got = other.recv_and_ack().await;
    assert_eq!(&got.topic[..], "b/from-bridge");
    other
        .publish("b/from-other", b"2", QoS::AtLeastOnce, false)
        .await;
    let got = bridge.recv_and_ack().await;
    assert_eq!(
        &got.topic[..],
        "b/from-other",
        "the bridge's own message came back"
    );
    // An ordinary client does get its own messages [MQTT-3.3.5-1].
    let got = other.recv_and_ack().await;
    assert_eq!(&got.topic[..], "b/from-other");
    bridge.expect_nothing(Duration::from_millis(200)).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_2_top_bit_on_an_unknown_level_gets_connack_0x01() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    client
        .send_raw(&raw_connect(b"MQTT", 0x85, 0x02, 60, &[b"b5"]))
        .await;
    let ack = client.expect_connack().await;
    assert_eq!(ack.code, ConnectReturnCode::UnacceptableProtocolVersion);
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn protocol_level_3_mqisdp_is_served() {
    let broker = TestBroker::start().await;
    let mut old = broker.tcp().await;
    let ack = old.handshake(connect_v31("old-client")).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    old.subscribe("v31/t", QoS::AtLeastOnce).await;
    let mut publisher = broker.client("v311-publisher").await;
    publisher
        .publish("v31/t", b"hello 3.1", QoS::AtLeastOnce, false)
        .await;
    let got = old.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"hello 3.1");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_v31_client_id_of_23_chars_accepted() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    let ack = client.handshake(connect_v31(&"a".repeat(23))).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_v31_client_id_over_23_chars_rejected_with_0x02() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    let ack = client.handshake(connect_v31(&"a".repeat(24))).await;
    assert_eq!(ack.code, ConnectReturnCode::IdentifierRejected);
    assert!(!ack.session_present, "[MQTT-3.2.2-4]");
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_v31_empty_client_id_rejected_with_0x02() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    // MQTT 3.1 requires 1 to 23 characters.
    let ack = client.handshake(connect_v31("")).await;
    assert_eq!(ack.code, ConnectReturnCode::IdentifierRejected);
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_6_empty_client_id_with_clean_session_1_gets_unique_id() {
    let broker = TestBroker::start().await;
    let mut first = broker.tcp().await;
    let ack = first.handshake(connect_packet("", true)).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    assert!(!ack.session_present);
    let mut second = broker.tcp().await;
    let ack = second.handshake(connect_packet("", true)).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    // Two assigned ids are distinct, so the second did not take over the
    // first [MQTT-3.1.3-6].
    first.ping().await;
    second.ping().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_8_empty_client_id_with_clean_session_0_rejected() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    let ack = client.handshake(connect_packet("", false)).await;
    assert_eq!(ack.code, ConnectReturnCode::IdentifierRejected);
    assert!(!ack.session_present, "[MQTT-3.2.2-4]");
    // [MQTT-3.1.3-9]: CONNACK 0x02, then close.
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_1_clean_session_1_has_session_present_0() {
    let broker = TestBroker::start().await;
    let (client, _) = broker.persistent("sp-clean").await;
    client.disconnect().await;
    // Even with a stored session, CleanSession=1 answers 0.
    let (_client, ack) = broker.connect_with(connect_packet("sp-clean", true)).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    assert!(!ack.session_present);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_2_resumed_session_has_session_present_1() {
    let broker = TestBroker::start().await;
    let (mut client, present) = broker.persistent("sp-resume").await;
    assert!(!present);
    client.subscribe("sp/t", QoS::AtLeastOnce).await;
    client.disconnect().await;
    let (_client, present) = broker.persistent("sp-resume").await;
    assert!(present, "the session was kept [MQTT-3.2.2-2]");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_3_no_stored_session_has_session_present_0() {
    let broker = TestBroker::start().await;
    let (_client, present) = broker.persistent("sp-new").await;
    assert!(!present);
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_4_2_takeover_closes_old_connection() {
    let broker = TestBroker::start().await;
    let mut old = broker.client("same-id").await;
    let mut new = broker.client("same-id").await;
    old.expect_closed().await;
    new.ping().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_4_2_takeover_closes_old_connection_and_publishes_will() {
    let broker = TestBroker::start().await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let (mut old, ack) = broker
        .connect_with(connect_with_will(
            "taken-over",
            "wills/taken-over",
            b"gone",
            QoS::AtLeastOnce,
            false,
        ))
        .await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    let _new = broker.client("taken-over").await;
    old.expect_closed().await;
    let will = watcher.recv_and_ack().await;
    assert_eq!(&*will.topic, "wills/taken-over");
    assert_eq!(&will.payload[..], b"gone");
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_4_2_takeover_continues_persistent_session() {
    let broker = TestBroker::start().await;
    let (mut old, _) = broker.persistent("roaming").await;
    old.subscribe("roam/t", QoS::AtLeastOnce).await;
    let (mut new, present) = broker.persistent("roaming").await;
    assert!(present, "the session continues on the new connection");
    old.expect_closed().await;
    let mut publisher = broker.client("roam-pub").await;
    publisher
        .publish("roam/t", b"follow me", QoS::AtLeastOnce, false)
        .await;
    let got = new.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"follow me");
    broker.shutdown().await;
}

#[tokio::test]
async fn section_3_14_4_server_closes_the_connection_after_disconnect() {
    let broker = TestBroker::start().await;
    let mut client = broker.client("bye").await;
    client.send(Packet::Disconnect).await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_22_password_without_user_name_closes() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    // Password flag (0x40) without the user name flag (0x80).
    client
        .send_raw(&raw_connect(b"MQTT", 4, 0x42, 60, &[b"pw", b"secret"]))
        .await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_13_will_qos_without_will_flag_closes() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    // Will QoS 1 (0x08) with the will flag clear.
    client
        .send_raw(&raw_connect(b"MQTT", 4, 0x0a, 60, &[b"willqos"]))
        .await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_14_will_qos_3_closes() {
    let broker = TestBroker::start().await;
    let mut client = broker.tcp().await;
    // Will flag with will QoS 3 (0x18).
    client
        .send_raw(&raw_connect(
            b"MQTT",
            4,
            0x1e,
            60,
            &[b"willqos3", b"w/t", b"payload"],
        ))
        .await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_user_name_and_password_accepted_without_access_control() {
    let broker = TestBroker::start().await;
    let mut connect = connect_packet("credentials", true);
    connect.username = Some("alice".into());
    connect.password = Some(bytes::Bytes::from_static(b"\x00binary\xff"));
    let (mut client, ack) = broker.connect_with(connect).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    client.ping().await;
    broker.shutdown().await;
}
