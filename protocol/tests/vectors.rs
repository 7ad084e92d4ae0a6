//! Byte-literal vectors for each of the 14 MQTT 3.1.1 control packets: the
//! bytes decode to the expected value, and encoding the value gives back
//! exactly those bytes.

mod common;

use bytes::{Bytes, BytesMut};
use common::pid;
use midge_protocol::{
    decode, encode, encoded_len, ConnAck, Connect, ConnectReturnCode, DecodeError, EncodeError,
    LastWill, Packet, ProtocolLevel, Publish, QoS, QosPid, SubAck, Subscribe, SubscribeFilter,
    SubscribeReturnCode, Unsubscribe, DEFAULT_MAX_PACKET_SIZE,
};

/// `bytes` is exactly `packet`: decoding consumes all of it and gives
/// `packet`, a following packet's bytes are left alone, and encoding gives
/// `bytes` back.
#[track_caller]
fn assert_vector(bytes: &[u8], packet: Packet) {
    let mut buf = BytesMut::from(bytes);
    let decoded = decode(&mut buf, DEFAULT_MAX_PACKET_SIZE);
    assert_eq!(decoded, Ok(Some(packet.clone())));
    assert!(buf.is_empty(), "{} bytes left", buf.len());

    let mut buf = BytesMut::from(bytes);
    buf.extend_from_slice(b"\xc0\x00");
    assert_eq!(
        decode(&mut buf, DEFAULT_MAX_PACKET_SIZE),
        Ok(Some(packet.clone()))
    );
    assert_eq!(&buf[..], b"\xc0\x00", "the next packet is left in place");

    let mut out = BytesMut::new();
    encode(&packet, &mut out).expect("encodable");
    assert_eq!(&out[..], bytes, "encoding of {packet:?}");
    assert_eq!(encoded_len(&packet), Ok(bytes.len()));
}

#[test]
fn connect_minimal_mqtt_3_1_1() {
    assert_vector(
        b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test",
        Packet::Connect(Connect::new("test")),
    );
}

#[test]
fn connect_with_will_username_and_binary_password() {
    assert_vector(
        b"\x10\x24\x00\x04MQTT\x04\xee\x00\x0a\x00\x02c1\
          \x00\x03w/t\x00\x07offline\x00\x01u\x00\x03\xff\x00\x80",
        Packet::Connect(Connect {
            protocol: ProtocolLevel::V3_1_1,
            clean_session: true,
            keep_alive: 10,
            client_id: "c1".into(),
            last_will: Some(LastWill {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("u".into()),
            // The password is binary data, not a string [MQTT-3.1.3.5].
            password: Some(Bytes::from_static(b"\xff\x00\x80")),
            bridge: false,
        }),
    );
}

#[test]
fn connect_mqisdp_3_1_with_empty_client_id_and_qos2_will() {
    assert_vector(
        b"\x10\x13\x00\x06MQIsdp\x03\x14\xff\xff\x00\x00\x00\x01t\x00\x00",
        Packet::Connect(Connect {
            protocol: ProtocolLevel::V3_1,
            clean_session: false,
            keep_alive: u16::MAX,
            client_id: "".into(),
            last_will: Some(LastWill {
                topic: "t".into(),
                payload: Bytes::new(),
                qos: QoS::ExactlyOnce,
                retain: false,
            }),
            username: None,
            password: None,
            bridge: false,
        }),
    );
}

#[test]
fn connect_with_username_only() {
    assert_vector(
        b"\x10\x13\x00\x04MQTT\x04\x82\x00\x00\x00\x01c\x00\x04user",
        Packet::Connect(Connect {
            keep_alive: 0,
            username: Some("user".into()),
            ..Connect::new("c")
        }),
    );
}

#[test]
fn connect_from_a_bridge_sets_the_top_bit_of_the_level() {
    // Mosquitto's bridges (`try_private`) send 0x84 (0x83 for 3.1).
    assert_vector(
        b"\x10\x0d\x00\x04MQTT\x84\x02\x00\x3c\x00\x01b",
        Packet::Connect(Connect {
            bridge: true,
            ..Connect::new("b")
        }),
    );
    assert_vector(
        b"\x10\x0f\x00\x06MQIsdp\x83\x02\x00\x3c\x00\x01b",
        Packet::Connect(Connect {
            protocol: ProtocolLevel::V3_1,
            bridge: true,
            ..Connect::new("b")
        }),
    );
}

#[test]
fn mqtt_3_1_2_2_top_bit_on_an_unknown_level_is_still_unknown() {
    let mut buf = BytesMut::from(&b"\x10\x0d\x00\x04MQTT\x85\x02\x00\x3c\x00\x01b"[..]);
    assert!(matches!(
        decode(&mut buf, 1024),
        Err(DecodeError::UnsupportedProtocolLevel(0x85))
    ));
}

#[test]
fn mqtt_3_1_3_8_empty_client_id_without_clean_session_is_left_to_the_server() {
    // Not malformed: the server answers CONNACK 0x02 [MQTT-3.1.3-8], so the
    // decoder hands the CONNECT over as it is.
    assert_vector(
        b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00",
        Packet::Connect(Connect {
            clean_session: false,
            ..Connect::new("")
        }),
    );
}

#[test]
fn mqtt_3_1_3_4_client_id_may_be_any_utf8_and_longer_than_23_bytes() {
    // Servers MAY accept more than [0-9a-zA-Z]{1,23} [MQTT-3.1.3-5]; the
    // decoder only enforces the string rules.
    let id = "ünïcödé/client+id#with-more-than-23-bytes";
    let mut bytes = vec![0x10, 12 + id.len() as u8];
    bytes.extend_from_slice(b"\x00\x04MQTT\x04\x02\x00\x3c\x00");
    bytes.push(id.len() as u8);
    bytes.extend_from_slice(id.as_bytes());
    assert_vector(&bytes, Packet::Connect(Connect::new(id)));
}

#[test]
fn connack_accepted_with_session_present() {
    assert_vector(
        b"\x20\x02\x01\x00",
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }),
    );
}

#[test]
fn connack_every_return_code() {
    for code in 0u8..=5 {
        let rc = ConnectReturnCode::from_u8(code).expect("0..=5");
        assert_eq!(rc as u8, code);
        assert_vector(
            &[0x20, 0x02, 0x00, code],
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: rc,
            }),
        );
    }
}

#[test]
fn publish_qos0() {
    assert_vector(
        b"\x30\x0a\x00\x03a/bhello",
        Packet::Publish(Publish::new("a/b", &b"hello"[..])),
    );
}

#[test]
fn publish_qos1_dup_retain() {
    assert_vector(
        b"\x3b\x09\x00\x03a/b\x00\x0a\xf1\xf2",
        Packet::Publish(Publish {
            dup: true,
            qos_pid: QosPid::AtLeastOnce(pid(10)),
            retain: true,
            topic: "a/b".into(),
            payload: Bytes::from_static(b"\xf1\xf2"),
        }),
    );
}

#[test]
fn publish_qos2_empty_payload() {
    assert_vector(
        b"\x34\x07\x00\x03a/b\x12\x34",
        Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::ExactlyOnce(pid(0x1234)),
            retain: false,
            topic: "a/b".into(),
            payload: Bytes::new(),
        }),
    );
}

#[test]
fn publish_with_unicode_topic() {
    // "ä/€/𝄞": two-, three- and four-byte sequences.
    assert_vector(
        b"\x30\x0d\x00\x0b\xc3\xa4/\xe2\x82\xac/\xf0\x9d\x84\x9e",
        Packet::Publish(Publish::new("ä/€/𝄞", Bytes::new())),
    );
}

#[test]
fn publish_with_two_byte_remaining_length() {
    // 5 bytes of topic and 200 of payload: 205 = 0xcd 0x01.
    let mut bytes = b"\x30\xcd\x01\x00\x03a/b".to_vec();
    bytes.extend_from_slice(&[0x5a; 200]);
    assert_vector(
        &bytes,
        Packet::Publish(Publish::new("a/b", vec![0x5a; 200])),
    );
}

#[test]
fn publish_with_three_byte_remaining_length() {
    // 16,384 = 0x80 0x80 0x01, the smallest three-byte length.
    let mut bytes = b"\x30\x80\x80\x01\x00\x01t".to_vec();
    bytes.extend_from_slice(&[7; 16_381]);
    assert_vector(&bytes, Packet::Publish(Publish::new("t", vec![7; 16_381])));
}

#[test]
fn publish_payload_is_a_slice_of_the_read_buffer() {
    let mut buf = BytesMut::from(&b"\x30\x0a\x00\x03a/bhello"[..]);
    let start = buf.as_ptr() as usize;
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, 64) else {
        panic!("a publish");
    };
    assert_eq!(p.payload.as_ptr() as usize, start + 7, "payload not copied");
    assert_eq!(p.topic.as_ptr() as usize, start + 4, "topic not copied");
}

#[test]
fn puback() {
    assert_vector(b"\x40\x02\x00\x01", Packet::PubAck(pid(1)));
}

#[test]
fn pubrec() {
    assert_vector(b"\x50\x02\x12\x34", Packet::PubRec(pid(0x1234)));
}

#[test]
fn pubrel() {
    assert_vector(b"\x62\x02\xff\xff", Packet::PubRel(pid(u16::MAX)));
}

#[test]
fn pubcomp() {
    assert_vector(b"\x70\x02\x00\x07", Packet::PubComp(pid(7)));
}

#[test]
fn subscribe_two_filters() {
    assert_vector(
        b"\x82\x0c\x00\x0a\x00\x03a/+\x01\x00\x01#\x02",
        Packet::Subscribe(Subscribe {
            pkid: pid(10),
            filters: vec![
                SubscribeFilter {
                    filter: "a/+".into(),
                    qos: QoS::AtLeastOnce,
                },
                SubscribeFilter {
                    filter: "#".into(),
                    qos: QoS::ExactlyOnce,
                },
            ],
        }),
    );
}

#[test]
fn suback_every_return_code() {
    assert_vector(
        b"\x90\x06\x00\x0a\x00\x01\x02\x80",
        Packet::SubAck(SubAck {
            pkid: pid(10),
            return_codes: vec![
                SubscribeReturnCode::Success(QoS::AtMostOnce),
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Success(QoS::ExactlyOnce),
                SubscribeReturnCode::Failure,
            ],
        }),
    );
}

#[test]
fn unsubscribe_two_filters() {
    assert_vector(
        b"\xa2\x0a\x00\x0b\x00\x03a/+\x00\x01#",
        Packet::Unsubscribe(Unsubscribe {
            pkid: pid(11),
            filters: vec!["a/+".into(), "#".into()],
        }),
    );
}

#[test]
fn unsuback() {
    assert_vector(b"\xb0\x02\x00\x0b", Packet::UnsubAck(pid(11)));
}

#[test]
fn pingreq() {
    assert_vector(b"\xc0\x00", Packet::PingReq);
}

#[test]
fn pingresp() {
    assert_vector(b"\xd0\x00", Packet::PingResp);
}

#[test]
fn disconnect() {
    assert_vector(b"\xe0\x00", Packet::Disconnect);
}

#[test]
fn mqtt_2_2_3_non_minimal_remaining_length_is_accepted() {
    // 3.1.1 does not require the shortest encoding (5.0 does); the decoder
    // takes the value, the encoder always writes the shortest form.
    let mut buf = BytesMut::from(&b"\xc0\x80\x00"[..]);
    assert_eq!(decode(&mut buf, 16), Ok(Some(Packet::PingReq)));
    assert!(buf.is_empty());
}

#[test]
fn packet_of_exactly_the_maximum_size_is_accepted() {
    let bytes = b"\x30\x0a\x00\x03a/bhello";
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        decode(&mut buf, bytes.len()),
        Ok(Some(Packet::Publish(_)))
    ));
}

// ---- what the encoder refuses: the caller's fault, never the peer's ----

/// `encode` fails with `want` and leaves the buffer as it was.
#[track_caller]
fn assert_encode_err(packet: Packet, want: EncodeError) {
    let mut buf = BytesMut::from(&b"kept"[..]);
    assert_eq!(encode(&packet, &mut buf), Err(want));
    assert_eq!(&buf[..], b"kept");
    assert_eq!(encoded_len(&packet), Err(want));
}

#[test]
fn mqtt_1_5_3_encode_refuses_strings_over_65535_bytes() {
    let long = "a".repeat(65_536);
    assert_encode_err(
        Packet::Publish(Publish::new(long.as_str(), Bytes::new())),
        EncodeError::FieldTooLong(65_536),
    );
    assert_encode_err(
        Packet::Connect(Connect {
            password: Some(Bytes::from(vec![0; 70_000])),
            username: Some("u".into()),
            ..Connect::new("c")
        }),
        EncodeError::FieldTooLong(70_000),
    );
    // 65,535 bytes is the longest allowed.
    let longest = Packet::Publish(Publish::new(&long[1..], Bytes::new()));
    let mut buf = BytesMut::new();
    assert_eq!(encode(&longest, &mut buf), Ok(()));
    assert_eq!(decode(&mut buf, 1 << 17), Ok(Some(longest)));
}

#[test]
fn mqtt_2_2_3_encode_refuses_packets_too_large_to_frame() {
    let payload = Bytes::from(vec![0u8; 268_435_455]);
    assert_encode_err(
        Packet::Publish(Publish::new("t", payload)),
        EncodeError::PacketTooLarge(268_435_455 + 3),
    );
}

#[test]
fn mqtt_3_8_3_3_encode_refuses_empty_subscribe_suback_unsubscribe() {
    assert_encode_err(
        Packet::Subscribe(Subscribe {
            pkid: pid(1),
            filters: vec![],
        }),
        EncodeError::Empty,
    );
    assert_encode_err(
        Packet::SubAck(SubAck {
            pkid: pid(1),
            return_codes: vec![],
        }),
        EncodeError::Empty,
    );
    assert_encode_err(
        Packet::Unsubscribe(Unsubscribe {
            pkid: pid(1),
            filters: vec![],
        }),
        EncodeError::Empty,
    );
}

#[test]
fn mqtt_3_3_1_2_encode_refuses_dup_on_qos_0() {
    assert_encode_err(
        Packet::Publish(Publish {
            dup: true,
            ..Publish::new("t", Bytes::new())
        }),
        EncodeError::DupOnQoS0,
    );
}
