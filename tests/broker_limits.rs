//! Broker scenarios: limits and bad input. A packet over `max_packet_size`,
//! malformed bytes or a protocol violation closes that one connection
//! [MQTT-4.8.0-1]; other clients carry on; `max_connections` refuses the
//! excess. Slow subscribers are in `broker_slow_subscriber.rs`.

mod support;

use std::time::Duration;

use midge_protocol::{encoded_len, ConnectReturnCode, Packet, QoS};
use support::*;
use tokio::time::Instant;

/// Sends `bytes` on a connected client and asserts that the broker closes
/// that connection while a bystander keeps publishing and receiving.
async fn assert_closes_only_that_connection(bytes: &[u8]) {
    let broker = TestBroker::start().await;
    let mut bystander = broker.client("bystander").await;
    bystander.subscribe("by/t", QoS::AtLeastOnce).await;
    let mut offender = broker.client("offender").await;
    offender.send_raw(bytes).await;
    offender.expect_closed().await;
    // New clients are still served, and existing ones still receive.
    let mut newcomer = broker.client("newcomer").await;
    newcomer
        .publish("by/t", b"still fine", QoS::AtLeastOnce, false)
        .await;
    let got = bystander.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"still fine");
    bystander.ping().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn packet_over_max_packet_size_closes_only_that_connection() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 1024).await;
    let mut bystander = broker.client("bystander").await;
    bystander.subscribe("big/#", QoS::AtLeastOnce).await;
    let mut offender = broker.client("offender").await;
    offender
        .send(Packet::Publish(publish_packet(
            "big/t",
            &[7; 2000],
            QoS::AtLeastOnce,
            pid(1),
            false,
        )))
        .await;
    offender.expect_closed().await;
    bystander.expect_nothing(QUIET).await;
    // A packet within the limit still goes through.
    let mut newcomer = broker.client("newcomer").await;
    newcomer
        .publish("big/ok", &[1; 900], QoS::AtLeastOnce, false)
        .await;
    assert_eq!(bystander.recv_and_ack().await.payload.len(), 900);
    broker.shutdown().await;
}

#[tokio::test]
async fn max_packet_size_counts_the_whole_packet_and_is_inclusive() {
    const MAX: usize = 1024;
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = MAX).await;
    let sized = |extra: usize| {
        let mut p = publish_packet("big/t", b"", QoS::AtLeastOnce, pid(1), false);
        let empty = encoded_len(&Packet::Publish(p.clone())).expect("encodes");
        // Both sizes use a two-byte remaining length.
        p.payload = vec![0x5a; MAX - empty - 1 + extra].into();
        let packet = Packet::Publish(p);
        assert_eq!(encoded_len(&packet).expect("encodes"), MAX + extra);
        packet
    };
    let mut at_limit = broker.client("at-limit").await;
    at_limit.send(sized(0)).await;
    at_limit.expect(Packet::PubAck(pid(1))).await;
    let mut over = broker.client("over").await;
    over.send(sized(1)).await;
    over.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_remaining_length_closes_before_the_body_arrives() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 1024).await;
    let mut offender = broker.client("offender").await;
    // A PUBLISH announcing 200 MB, and only its fixed header: the broker
    // must not wait for (or buffer) the body.
    offender.send_raw(&[0x30, 0x80, 0x80, 0x80, 0x60]).await;
    offender.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_connect_closes_the_connection() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 1024).await;
    let mut client = broker.tcp().await;
    let id = "x".repeat(2000);
    client
        .send_raw(&raw_connect(b"MQTT", 4, 0x02, 60, &[id.as_bytes()]))
        .await;
    client.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_2_2_1_reserved_packet_type_0_closes() {
    assert_closes_only_that_connection(&[0x00, 0x00]).await;
}

#[tokio::test]
async fn mqtt_2_2_1_reserved_packet_type_15_closes() {
    assert_closes_only_that_connection(&[0xf0, 0x00]).await;
}

#[tokio::test]
async fn mqtt_2_2_2_2_invalid_fixed_header_flags_close() {
    // SUBSCRIBE with flags 0000 instead of 0010 [MQTT-3.8.1-1].
    let mut body = pid(1).get().to_be_bytes().to_vec();
    body.extend(field(b"a/b"));
    body.push(0);
    assert_closes_only_that_connection(&raw_packet(0x80, &body)).await;
}

#[tokio::test]
async fn mqtt_3_6_1_1_pubrel_with_wrong_flags_closes() {
    assert_closes_only_that_connection(&[0x60, 0x02, 0x00, 0x01]).await;
}

#[tokio::test]
async fn mqtt_2_2_3_remaining_length_over_four_bytes_closes() {
    assert_closes_only_that_connection(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
}

#[tokio::test]
async fn mqtt_3_3_1_4_publish_with_qos_3_closes() {
    let mut body = field(b"a/b");
    body.extend([0x00, 0x01]);
    assert_closes_only_that_connection(&raw_packet(0x36, &body)).await;
}

#[tokio::test]
async fn mqtt_3_3_1_2_dup_on_qos0_publish_closes() {
    assert_closes_only_that_connection(&raw_packet(0x38, &field(b"a/b"))).await;
}

#[tokio::test]
async fn mqtt_2_3_1_1_zero_packet_id_closes() {
    let mut body = field(b"a/b");
    body.extend([0x00, 0x00]);
    assert_closes_only_that_connection(&raw_packet(0x32, &body)).await;
}

#[tokio::test]
async fn mqtt_3_3_2_2_wildcard_in_topic_name_closes() {
    assert_closes_only_that_connection(&raw_packet(0x30, &field(b"a/+/b"))).await;
}

#[tokio::test]
async fn mqtt_4_7_3_1_empty_topic_name_closes() {
    assert_closes_only_that_connection(&raw_packet(0x30, &field(b""))).await;
}

#[tokio::test]
async fn mqtt_1_5_3_1_invalid_utf8_topic_closes() {
    assert_closes_only_that_connection(&raw_packet(0x30, &field(&[b'a', 0xc3, 0x28]))).await;
}

#[tokio::test]
async fn mqtt_1_5_3_1_utf16_surrogate_in_topic_closes() {
    // U+D800 encoded as UTF-8: ill-formed.
    assert_closes_only_that_connection(&raw_packet(0x30, &field(&[0xed, 0xa0, 0x80]))).await;
}

#[tokio::test]
async fn mqtt_1_5_3_2_null_character_in_topic_closes() {
    assert_closes_only_that_connection(&raw_packet(0x30, &field(b"a\0b"))).await;
}

#[tokio::test]
async fn mqtt_3_8_3_3_subscribe_without_filters_closes() {
    assert_closes_only_that_connection(&raw_packet(0x82, &pid(1).get().to_be_bytes())).await;
}

#[tokio::test]
async fn mqtt_3_8_3_4_subscribe_with_reserved_qos_bits_closes() {
    let mut body = pid(1).get().to_be_bytes().to_vec();
    body.extend(field(b"a/b"));
    body.push(0x03);
    assert_closes_only_that_connection(&raw_packet(0x82, &body)).await;
}

#[tokio::test]
async fn mqtt_4_7_1_2_misplaced_multi_level_wildcard_in_filter_closes() {
    let mut body = pid(1).get().to_be_bytes().to_vec();
    body.extend(field(b"a/#/b"));
    body.push(0x00);
    assert_closes_only_that_connection(&raw_packet(0x82, &body)).await;
}

#[tokio::test]
async fn mqtt_4_7_1_3_partial_level_single_level_wildcard_in_filter_closes() {
    let mut body = pid(1).get().to_be_bytes().to_vec();
    body.extend(field(b"a/b+"));
    body.push(0x00);
    assert_closes_only_that_connection(&raw_packet(0x82, &body)).await;
}

#[tokio::test]
async fn mqtt_3_10_3_2_unsubscribe_without_filters_closes() {
    assert_closes_only_that_connection(&raw_packet(0xa2, &pid(1).get().to_be_bytes())).await;
}

#[tokio::test]
async fn mqtt_2_2_3_truncated_packet_body_closes() {
    // A SUBSCRIBE whose filter length runs past the remaining length.
    assert_closes_only_that_connection(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x09, b'a']).await;
}

#[tokio::test]
async fn mqtt_4_8_0_1_server_to_client_packet_from_a_client_closes() {
    // CONNACK, SUBACK, UNSUBACK and PINGRESP only go server to client.
    assert_closes_only_that_connection(&[0x20, 0x02, 0x00, 0x00]).await;
}

#[tokio::test]
async fn mqtt_4_8_0_1_pingresp_from_a_client_closes() {
    assert_closes_only_that_connection(&[0xd0, 0x00]).await;
}

#[tokio::test]
async fn mqtt_4_8_0_1_garbage_never_takes_the_broker_down() {
    let broker = TestBroker::start().await;
    let mut bystander = broker.client("bystander").await;
    bystander.subscribe("g/t", QoS::AtMostOnce).await;
    // A deterministic xorshift stream: random bytes, some after a valid
    // CONNECT, some as the first bytes of a connection.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let len = 1 + (next() % 64) as usize;
        let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut client = if round % 2 == 0 {
            broker.tcp().await
        } else {
            broker.client(&format!("junk-{round}")).await
        };
        // The broker may close before all junk is written; either way it
        // must not stop serving others.
        let _ = client.try_send_raw(&junk).await;
        let _ = client.next_event(Duration::from_millis(50)).await;
        drop(client);
    }
    let mut newcomer = broker.client("newcomer").await;
    newcomer
        .publish("g/t", b"alive", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&bystander.recv_publish().await.payload[..], b"alive");
    broker.shutdown().await;
}

#[tokio::test]
async fn max_connections_refuses_the_excess_cleanly() {
    const MAX: usize = 3;
    let broker = TestBroker::start_with(|c| c.limits.max_connections = MAX as _).await;
    let mut clients = Vec::new();
    for i in 0..MAX {
        clients.push(broker.client(&format!("c{i}")).await);
    }
    // The excess connection is either closed at once or answered with
    // CONNACK 0x03 (server unavailable) and closed; never accepted.
    let mut excess = broker.tcp().await;
    let _ = excess
        .try_send_raw(&raw_connect(b"MQTT", 4, 0x02, 60, &[b"excess"]))
        .await;
    match excess.next_event(TIMEOUT).await {
        Event::Closed => {}
        Event::Packet(Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, ConnectReturnCode::ServerUnavailable);
            excess.expect_closed().await;
        }
        other => panic!("the excess connection got {other:?}"),
    }
    // Those already in are untouched.
    for client in &mut clients {
        client.ping().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn max_connections_frees_a_slot_when_a_client_leaves() {
    const MAX: usize = 2;
    let broker = TestBroker::start_with(|c| c.limits.max_connections = MAX as _).await;
    let first = broker.client("c0").await;
    let _second = broker.client("c1").await;
    first.disconnect().await;
    // The slot is freed when the broker has seen the close: retry briefly.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut client = broker.tcp().await;
        let _ = client
            .try_send_raw(&raw_connect(b"MQTT", 4, 0x02, 60, &[b"c2"]))
            .await;
        if let Event::Packet(Packet::ConnAck(ack)) = client.next_event(TIMEOUT).await {
            if ack.code == ConnectReturnCode::Accepted {
                client.ping().await;
                break;
            }
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.shutdown().await;
}
