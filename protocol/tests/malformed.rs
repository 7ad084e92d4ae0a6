//! Malformed packets as byte literals: each test names the rule of MQTT 3.1.1
//! that the bytes break and checks the [`DecodeError`] the decoder gives.
//! `every_decode_error_variant_has_a_vector` keeps the list complete.

mod common;

use bytes::BytesMut;
use midge_protocol::{decode, DecodeError, PacketType, DEFAULT_MAX_PACKET_SIZE};

/// Decodes `bytes` as one read with the default limit.
fn decode_err(bytes: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, DEFAULT_MAX_PACKET_SIZE) {
        Err(e) => e,
        Ok(p) => panic!("{bytes:02x?} decoded as {p:?}"),
    }
}

#[track_caller]
fn assert_malformed(bytes: &[u8], want: DecodeError) {
    assert_eq!(decode_err(bytes), want, "bytes {bytes:02x?}");
}

/// A CONNECT for "MQTT" level 4 with the given flags and the fields after
/// the keep alive.
fn connect(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x04".to_vec();
    body.push(flags);
    body.extend_from_slice(b"\x00\x3c");
    body.extend_from_slice(payload);
    packet(0x10, &body)
}

/// A packet with the given first byte and body (remaining length < 128).
fn packet(byte1: u8, body: &[u8]) -> Vec<u8> {
    let len = u8::try_from(body.len()).expect("short test body");
    assert!(len < 128);
    let mut p = vec![byte1, len];
    p.extend_from_slice(body);
    p
}

/// A QoS 0 PUBLISH of `topic` (raw bytes) with an empty payload.
fn publish_topic(topic: &[u8]) -> Vec<u8> {
    let mut body = vec![0, u8::try_from(topic.len()).expect("short topic")];
    body.extend_from_slice(topic);
    packet(0x30, &body)
}

/// A SUBSCRIBE (id 1) of one raw filter with the given options byte.
fn subscribe_filter(filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = vec![0, 1, 0, u8::try_from(filter.len()).expect("short filter")];
    body.extend_from_slice(filter);
    body.push(options);
    packet(0x82, &body)
}

/// An UNSUBSCRIBE (id 1) of one raw filter.
fn unsubscribe_filter(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, 0, u8::try_from(filter.len()).expect("short filter")];
    body.extend_from_slice(filter);
    packet(0xa2, &body)
}

// ---- fixed header and remaining length [MQTT-2.2] ----

#[test]
fn mqtt_2_2_3_five_byte_remaining_length_is_malformed() {
    assert_malformed(
        b"\x30\xff\xff\xff\xff\x01",
        DecodeError::MalformedRemainingLength,
    );
}

#[test]
fn mqtt_2_2_3_fourth_length_byte_with_continuation_is_malformed_without_waiting() {
    // The error is known from the fourth length byte: no fifth is awaited.
    assert_malformed(
        b"\x30\x80\x80\x80\x80",
        DecodeError::MalformedRemainingLength,
    );
}

#[test]
fn mqtt_2_2_3_largest_four_byte_length_is_framed_then_limited() {
    let mut buf = BytesMut::from(&b"\x30\xff\xff\xff\x7f"[..]);
    assert_eq!(
        decode(&mut buf, 1 << 20),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_455 + 5,
            max: 1 << 20
        })
    );
}

#[test]
fn packet_over_max_size_is_rejected_once_the_length_header_is_known() {
    let max = 1024;
    let mut buf = BytesMut::with_capacity(16);
    // Type and the first length byte: not enough to know the length yet.
    buf.extend_from_slice(b"\x30\xe0");
    assert_eq!(decode(&mut buf, max), Ok(None));
    assert_eq!(&buf[..], b"\x30\xe0", "Ok(None) consumes nothing");
    // 0xe0 0xd4 0x03 = 60,000: known now, before any of the body arrives.
    buf.extend_from_slice(b"\xd4\x03");
    assert_eq!(
        decode(&mut buf, max),
        Err(DecodeError::PacketTooLarge {
            size: 60_004,
            max: 1024
        })
    );
    assert!(
        buf.capacity() < 1024,
        "capacity grew to {} for a rejected packet",
        buf.capacity()
    );
}

#[test]
fn packet_one_byte_over_max_size_is_rejected() {
    let bytes = b"\x30\x0a\x00\x03a/bhello";
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(
        decode(&mut buf, bytes.len() - 1),
        Err(DecodeError::PacketTooLarge {
            size: bytes.len(),
            max: bytes.len() - 1
        })
    );
}

#[test]
fn packet_within_max_size_reserves_at_most_its_own_size() {
    // A 600-byte buffer holding the start of a 900-byte packet: the decoder
    // may make room for the packet, but not beyond the limit.
    let max = 1000;
    let mut head = b"\x30\x80\x07\x00\x01t".to_vec();
    head.resize(600, 0x55);
    let mut buf = BytesMut::with_capacity(600);
    buf.extend_from_slice(&head);
    assert_eq!(decode(&mut buf, max), Ok(None));
    assert_eq!(buf.len(), 600, "Ok(None) consumes nothing");
    assert!(
        buf.capacity() <= max,
        "capacity {} exceeds the limit {max}",
        buf.capacity()
    );
}

#[test]
fn mqtt_2_2_1_reserved_packet_types_are_malformed() {
    assert_malformed(b"\x00\x00", DecodeError::ReservedPacketType(0));
    assert_malformed(b"\xf0\x00", DecodeError::ReservedPacketType(15));
}

#[test]
fn mqtt_2_2_2_2_pubrel_subscribe_unsubscribe_need_flags_0010() {
    let cases: [(&[u8], PacketType, u8); 6] = [
        (b"\x60\x02\x00\x01", PacketType::PubRel, 0b0000),
        (b"\x63\x02\x00\x01", PacketType::PubRel, 0b0011),
        (
            b"\x80\x06\x00\x01\x00\x01#\x00",
            PacketType::Subscribe,
            0b0000,
        ),
        (
            b"\x8a\x06\x00\x01\x00\x01#\x00",
            PacketType::Subscribe,
            0b1010,
        ),
        (
            b"\xa0\x05\x00\x01\x00\x01#",
            PacketType::Unsubscribe,
            0b0000,
        ),
        (
            b"\xa6\x05\x00\x01\x00\x01#",
            PacketType::Unsubscribe,
            0b0110,
        ),
    ];
    for (bytes, packet_type, flags) in cases {
        assert_malformed(bytes, DecodeError::InvalidFlags { packet_type, flags });
    }
}

#[test]
fn mqtt_2_2_2_2_other_packets_need_flags_0000() {
    let cases: [(&[u8], PacketType); 10] = [
        (b"\x11\x00", PacketType::Connect),
        (b"\x21\x02\x00\x00", PacketType::ConnAck),
        (b"\x42\x02\x00\x01", PacketType::PubAck),
        (b"\x58\x02\x00\x01", PacketType::PubRec),
        (b"\x72\x02\x00\x01", PacketType::PubComp),
        (b"\x92\x03\x00\x01\x00", PacketType::SubAck),
        (b"\xb2\x02\x00\x01", PacketType::UnsubAck),
        (b"\xc2\x00", PacketType::PingReq),
        (b"\xd4\x00", PacketType::PingResp),
        (b"\xef\x00", PacketType::Disconnect),
    ];
    for (bytes, packet_type) in cases {
        let flags = bytes[0] & 0x0f;
        assert_malformed(bytes, DecodeError::InvalidFlags { packet_type, flags });
    }
}

#[test]
fn mqtt_3_3_1_4_publish_qos_3_is_malformed() {
    assert_malformed(b"\x36\x07\x00\x03a/b\x00\x01", DecodeError::InvalidQoS);
    assert_malformed(b"\x3f\x07\x00\x03a/b\x00\x01", DecodeError::InvalidQoS);
}

#[test]
fn mqtt_3_3_1_2_dup_on_qos_0_publish_is_malformed() {
    assert_malformed(b"\x38\x05\x00\x03a/b", DecodeError::DupOnQoS0);
    assert_malformed(b"\x39\x05\x00\x03a/b", DecodeError::DupOnQoS0);
}

// ---- CONNECT [MQTT-3.1] ----

#[test]
fn mqtt_3_1_2_1_unknown_protocol_name_is_malformed() {
    for name in [&b"MQTX"[..], b"mqtt", b"MQ", b"", b"MQIsdp\x00"] {
        let mut body = vec![0, u8::try_from(name.len()).expect("short")];
        body.extend_from_slice(name);
        body.extend_from_slice(b"\x04\x02\x00\x3c\x00\x01c");
        assert_malformed(&packet(0x10, &body), DecodeError::InvalidProtocolName);
    }
}

#[test]
fn mqtt_3_1_2_2_mqtt_level_5_is_reported_as_unsupported_level() {
    assert_malformed(
        b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x01c",
        DecodeError::UnsupportedProtocolLevel(5),
    );
}

#[test]
fn mqtt_3_1_2_2_known_names_with_other_levels_are_unsupported_levels() {
    assert_malformed(
        b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01c",
        DecodeError::UnsupportedProtocolLevel(3),
    );
    assert_malformed(
        b"\x10\x0f\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01c",
        DecodeError::UnsupportedProtocolLevel(4),
    );
    assert_malformed(
        b"\x10\x0d\x00\x04MQTT\xff\x02\x00\x3c\x00\x01c",
        DecodeError::UnsupportedProtocolLevel(255),
    );
}

#[test]
fn mqtt_3_1_2_3_reserved_connect_flag_is_malformed() {
    assert_malformed(
        &connect(0x03, b"\x00\x01c"),
        DecodeError::ConnectReservedFlag,
    );
    assert_malformed(
        &connect(0x01, b"\x00\x01c"),
        DecodeError::ConnectReservedFlag,
    );
}

#[test]
fn mqtt_3_1_2_13_will_qos_without_will_flag_is_malformed() {
    assert_malformed(
        &connect(0x0a, b"\x00\x01c"),
        DecodeError::WillFlagsWithoutWill,
    );
    assert_malformed(
        &connect(0x12, b"\x00\x01c"),
        DecodeError::WillFlagsWithoutWill,
    );
}

#[test]
fn mqtt_3_1_2_15_will_retain_without_will_flag_is_malformed() {
    assert_malformed(
        &connect(0x22, b"\x00\x01c"),
        DecodeError::WillFlagsWithoutWill,
    );
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_is_malformed() {
    assert_malformed(
        &connect(0x1e, b"\x00\x01c\x00\x01t\x00\x00"),
        DecodeError::InvalidWillQoS,
    );
}

#[test]
fn mqtt_3_1_2_22_password_without_username_is_malformed() {
    assert_malformed(
        &connect(0x42, b"\x00\x01c\x00\x02pw"),
        DecodeError::PasswordWithoutUsername,
    );
}

#[test]
fn mqtt_3_1_3_will_topic_follows_topic_name_rules() {
    assert_malformed(
        &connect(0x06, b"\x00\x01c\x00\x00\x00\x00"),
        DecodeError::EmptyTopic,
    );
    assert_malformed(
        &connect(0x06, b"\x00\x01c\x00\x03a/#\x00\x00"),
        DecodeError::WildcardInTopicName,
    );
}

#[test]
fn mqtt_3_1_3_missing_flagged_fields_are_truncated() {
    // Will flag set, no will topic.
    assert_malformed(&connect(0x06, b"\x00\x01c"), DecodeError::Truncated);
    // User name flag set, no user name.
    assert_malformed(&connect(0x82, b"\x00\x01c"), DecodeError::Truncated);
    // No client id at all.
    assert_malformed(&connect(0x02, b""), DecodeError::Truncated);
}

// ---- UTF-8 strings [MQTT-1.5.3] ----

#[test]
fn mqtt_1_5_3_1_ill_formed_utf8_is_malformed() {
    assert_malformed(&publish_topic(b"a/\xff"), DecodeError::InvalidUtf8);
    assert_malformed(
        &connect(0x02, b"\x00\x02\xc3\x28"),
        DecodeError::InvalidUtf8,
    );
    // A lone continuation byte and a truncated sequence.
    assert_malformed(&publish_topic(b"\x80"), DecodeError::InvalidUtf8);
    assert_malformed(&publish_topic(b"a\xe2\x82"), DecodeError::InvalidUtf8);
}

#[test]
fn mqtt_1_5_3_1_encoded_surrogate_u_d800_is_malformed() {
    assert_malformed(&publish_topic(b"a\xed\xa0\x80"), DecodeError::InvalidUtf8);
    assert_malformed(&publish_topic(b"\xed\xbf\xbf"), DecodeError::InvalidUtf8);
    assert_malformed(
        &subscribe_filter(b"\xed\xa0\x80", 0),
        DecodeError::InvalidUtf8,
    );
}

#[test]
fn mqtt_1_5_3_1_overlong_encoding_is_malformed() {
    // U+002F '/' as two bytes, and U+0000 as two bytes.
    assert_malformed(&publish_topic(b"a\xc0\xafb"), DecodeError::InvalidUtf8);
    assert_malformed(&publish_topic(b"a\xc0\x80"), DecodeError::InvalidUtf8);
}

#[test]
fn mqtt_1_5_3_2_null_character_is_malformed() {
    assert_malformed(&publish_topic(b"a\x00b"), DecodeError::NullCharacter);
    assert_malformed(&connect(0x02, b"\x00\x01\x00"), DecodeError::NullCharacter);
    assert_malformed(
        &connect(0x82, b"\x00\x01c\x00\x02u\x00"),
        DecodeError::NullCharacter,
    );
    assert_malformed(&unsubscribe_filter(b"a/\x00"), DecodeError::NullCharacter);
}

#[test]
fn mqtt_1_5_3_3_bom_is_kept_not_stripped() {
    // U+FEFF is a valid character and must not be skipped [MQTT-1.5.3-3].
    let mut buf = BytesMut::from(&publish_topic(b"\xef\xbb\xbfa")[..]);
    let Ok(Some(midge_protocol::Packet::Publish(p))) = decode(&mut buf, 64) else {
        panic!("a publish");
    };
    assert_eq!(p.topic, "\u{feff}a");
}

// ---- topics [MQTT-4.7] ----

#[test]
fn mqtt_4_7_3_1_empty_topic_name_is_malformed() {
    assert_malformed(&publish_topic(b""), DecodeError::EmptyTopic);
}

#[test]
fn mqtt_3_3_2_2_wildcards_in_topic_name_are_malformed() {
    for topic in [&b"a/+"[..], b"#", b"a/#", b"a+b", b"+"] {
        assert_malformed(&publish_topic(topic), DecodeError::WildcardInTopicName);
    }
}

#[test]
fn mqtt_4_7_3_1_empty_topic_filter_is_malformed() {
    assert_malformed(&subscribe_filter(b"", 0), DecodeError::EmptyTopic);
    assert_malformed(&unsubscribe_filter(b""), DecodeError::EmptyTopic);
}

#[test]
fn mqtt_4_7_1_2_hash_not_last_or_not_alone_is_malformed() {
    for filter in [&b"a/#/b"[..], b"#/a", b"a#", b"sport#", b"##", b"a/b#"] {
        assert_malformed(
            &subscribe_filter(filter, 0),
            DecodeError::InvalidTopicFilter,
        );
        assert_malformed(&unsubscribe_filter(filter), DecodeError::InvalidTopicFilter);
    }
}

#[test]
fn mqtt_4_7_1_3_plus_not_alone_in_its_level_is_malformed() {
    for filter in [&b"a+"[..], b"+a/b", b"a/b+", b"sp+rt", b"++"] {
        assert_malformed(
            &subscribe_filter(filter, 1),
            DecodeError::InvalidTopicFilter,
        );
        assert_malformed(&unsubscribe_filter(filter), DecodeError::InvalidTopicFilter);
    }
}

// ---- SUBSCRIBE, UNSUBSCRIBE, SUBACK [MQTT-3.8] [MQTT-3.9] [MQTT-3.10] ----

#[test]
fn mqtt_3_8_3_3_subscribe_without_filters_is_malformed() {
    assert_malformed(b"\x82\x02\x00\x01", DecodeError::NoTopicFilters);
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters_is_malformed() {
    assert_malformed(b"\xa2\x02\x00\x01", DecodeError::NoTopicFilters);
}

#[test]
fn mqtt_3_8_3_4_requested_qos_3_is_malformed() {
    assert_malformed(
        &subscribe_filter(b"a", 0x03),
        DecodeError::InvalidRequestedQoS(0x03),
    );
}

#[test]
fn mqtt_3_8_3_4_reserved_bits_in_requested_qos_are_malformed() {
    for options in [0x04, 0x41, 0x80, 0xfc] {
        assert_malformed(
            &subscribe_filter(b"a", options),
            DecodeError::InvalidRequestedQoS(options),
        );
    }
}

#[test]
fn mqtt_3_8_3_subscribe_filter_without_qos_byte_is_truncated() {
    assert_malformed(b"\x82\x05\x00\x01\x00\x01a", DecodeError::Truncated);
}

#[test]
fn mqtt_3_9_3_2_suback_reserved_return_codes_are_malformed() {
    for code in [0x03, 0x04, 0x81, 0xff] {
        assert_malformed(
            &[0x90, 0x03, 0x00, 0x01, code],
            DecodeError::InvalidSubAckCode(code),
        );
    }
}

#[test]
fn mqtt_3_9_3_suback_without_return_codes_is_truncated() {
    assert_malformed(b"\x90\x02\x00\x01", DecodeError::Truncated);
}

// ---- packet identifiers [MQTT-2.3.1-1] ----

#[test]
fn mqtt_2_3_1_1_zero_packet_ids_are_malformed() {
    let cases: [&[u8]; 10] = [
        b"\x32\x07\x00\x03a/b\x00\x00",
        b"\x34\x07\x00\x03a/b\x00\x00",
        b"\x40\x02\x00\x00",
        b"\x50\x02\x00\x00",
        b"\x62\x02\x00\x00",
        b"\x70\x02\x00\x00",
        b"\x82\x06\x00\x00\x00\x01#\x00",
        b"\x90\x03\x00\x00\x00",
        b"\xa2\x05\x00\x00\x00\x01#",
        b"\xb0\x02\x00\x00",
    ];
    for bytes in cases {
        assert_malformed(bytes, DecodeError::ZeroPacketId);
    }
}

// ---- CONNACK [MQTT-3.2] ----

#[test]
fn mqtt_3_2_2_1_connack_reserved_flags_are_malformed() {
    assert_malformed(b"\x20\x02\x02\x00", DecodeError::InvalidConnAckFlags);
    assert_malformed(b"\x20\x02\x81\x00", DecodeError::InvalidConnAckFlags);
}

#[test]
fn mqtt_3_2_2_3_connack_reserved_return_codes_are_malformed() {
    assert_malformed(
        b"\x20\x02\x00\x06",
        DecodeError::InvalidConnectReturnCode(6),
    );
    assert_malformed(
        b"\x20\x02\x00\xff",
        DecodeError::InvalidConnectReturnCode(255),
    );
}

#[test]
fn mqtt_3_2_2_4_session_present_with_refusal_is_malformed() {
    assert_malformed(b"\x20\x02\x01\x05", DecodeError::SessionPresentOnRefusal);
}

// ---- lengths: truncated and trailing [MQTT-2.2.3] ----

#[test]
fn mqtt_2_2_3_fields_past_the_remaining_length_are_truncated() {
    let cases: [&[u8]; 8] = [
        b"\x40\x00",
        b"\x40\x01\x00",
        b"\x20\x01\x00",
        // Topic length 4 but 3 bytes left.
        b"\x30\x05\x00\x04a/b",
        // QoS 1 without its packet id.
        b"\x32\x05\x00\x03a/b",
        b"\x32\x06\x00\x03a/b\x00",
        // Protocol name length past the end.
        b"\x10\x03\x00\x04M",
        b"\xa2\x04\x00\x01\x00\x02",
    ];
    for bytes in cases {
        assert_malformed(bytes, DecodeError::Truncated);
    }
}

#[test]
fn mqtt_2_2_3_bytes_after_the_packet_content_are_malformed() {
    let cases: [&[u8]; 9] = [
        b"\x40\x03\x00\x01\x00",
        b"\x50\x04\x00\x01\x00\x00",
        b"\x62\x03\x00\x01\x00",
        b"\x70\x03\x00\x01\x00",
        b"\xb0\x03\x00\x01\x00",
        b"\x20\x03\x00\x00\x00",
        b"\xc0\x01\x00",
        b"\xd0\x01\x00",
        b"\xe0\x01\x00",
    ];
    for bytes in cases {
        assert_malformed(bytes, DecodeError::TrailingBytes);
    }
    let mut connect = connect(0x02, b"\x00\x01c");
    connect[1] += 1;
    connect.push(0);
    assert_malformed(&connect, DecodeError::TrailingBytes);
}

/// One byte literal per variant, and a `match` without a wildcard: a new
/// variant fails to compile here until it has a vector.
#[test]
fn every_decode_error_variant_has_a_vector() {
    fn index(e: DecodeError) -> usize {
        match e {
            DecodeError::MalformedRemainingLength => 0,
            DecodeError::PacketTooLarge { .. } => 1,
            DecodeError::ReservedPacketType(_) => 2,
            DecodeError::InvalidFlags { .. } => 3,
            DecodeError::InvalidQoS => 4,
            DecodeError::DupOnQoS0 => 5,
            DecodeError::InvalidProtocolName => 6,
            DecodeError::UnsupportedProtocolLevel(_) => 7,
            DecodeError::ConnectReservedFlag => 8,
            DecodeError::WillFlagsWithoutWill => 9,
            DecodeError::InvalidWillQoS => 10,
            DecodeError::PasswordWithoutUsername => 11,
            DecodeError::InvalidUtf8 => 12,
            DecodeError::NullCharacter => 13,
            DecodeError::EmptyTopic => 14,
            DecodeError::WildcardInTopicName => 15,
            DecodeError::InvalidTopicFilter => 16,
            DecodeError::NoTopicFilters => 17,
            DecodeError::InvalidRequestedQoS(_) => 18,
            DecodeError::ZeroPacketId => 19,
            DecodeError::InvalidConnAckFlags => 20,
            DecodeError::InvalidConnectReturnCode(_) => 21,
            DecodeError::SessionPresentOnRefusal => 22,
            DecodeError::InvalidSubAckCode(_) => 23,
            DecodeError::Truncated => 24,
            DecodeError::TrailingBytes => 25,
        }
    }
    const VARIANTS: usize = 26;
    let table: Vec<(Vec<u8>, DecodeError)> = vec![
        (
            b"\x30\xff\xff\xff\xff\x01".to_vec(),
            DecodeError::MalformedRemainingLength,
        ),
        (b"\xf0\x00".to_vec(), DecodeError::ReservedPacketType(15)),
        (
            b"\x60\x02\x00\x01".to_vec(),
            DecodeError::InvalidFlags {
                packet_type: PacketType::PubRel,
                flags: 0,
            },
        ),
        (
            b"\x36\x07\x00\x03a/b\x00\x01".to_vec(),
            DecodeError::InvalidQoS,
        ),
        (b"\x38\x05\x00\x03a/b".to_vec(), DecodeError::DupOnQoS0),
        (
            b"\x10\x0d\x00\x04MQTX\x04\x02\x00\x3c\x00\x01c".to_vec(),
            DecodeError::InvalidProtocolName,
        ),
        (
            b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x01c".to_vec(),
            DecodeError::UnsupportedProtocolLevel(5),
        ),
        (
            connect(0x03, b"\x00\x01c"),
            DecodeError::ConnectReservedFlag,
        ),
        (
            connect(0x22, b"\x00\x01c"),
            DecodeError::WillFlagsWithoutWill,
        ),
        (
            connect(0x1e, b"\x00\x01c\x00\x01t\x00\x00"),
            DecodeError::InvalidWillQoS,
        ),
        (
            connect(0x42, b"\x00\x01c\x00\x01p"),
            DecodeError::PasswordWithoutUsername,
        ),
        (publish_topic(b"\xed\xa0\x80"), DecodeError::InvalidUtf8),
        (publish_topic(b"a\x00"), DecodeError::NullCharacter),
        (publish_topic(b""), DecodeError::EmptyTopic),
        (publish_topic(b"a/+"), DecodeError::WildcardInTopicName),
        (
            subscribe_filter(b"a/#/b", 0),
            DecodeError::InvalidTopicFilter,
        ),
        (b"\x82\x02\x00\x01".to_vec(), DecodeError::NoTopicFilters),
        (
            subscribe_filter(b"a", 3),
            DecodeError::InvalidRequestedQoS(3),
        ),
        (b"\x40\x02\x00\x00".to_vec(), DecodeError::ZeroPacketId),
        (
            b"\x20\x02\x02\x00".to_vec(),
            DecodeError::InvalidConnAckFlags,
        ),
        (
            b"\x20\x02\x00\x06".to_vec(),
            DecodeError::InvalidConnectReturnCode(6),
        ),
        (
            b"\x20\x02\x01\x01".to_vec(),
            DecodeError::SessionPresentOnRefusal,
        ),
        (
            b"\x90\x03\x00\x01\x03".to_vec(),
            DecodeError::InvalidSubAckCode(3),
        ),
        (b"\x40\x01\x00".to_vec(), DecodeError::Truncated),
        (b"\xc0\x01\x00".to_vec(), DecodeError::TrailingBytes),
    ];
    let mut seen = [false; VARIANTS];
    for (bytes, want) in &table {
        assert_malformed(bytes, *want);
        seen[index(*want)] = true;
    }
    // PacketTooLarge depends on the limit, not the bytes alone.
    let mut buf = BytesMut::from(&b"\xc0\x00"[..]);
    let too_large = DecodeError::PacketTooLarge { size: 2, max: 1 };
    assert_eq!(decode(&mut buf, 1), Err(too_large));
    seen[index(too_large)] = true;
    let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "variants without a vector: {missing:?}");
}

#[test]
fn decode_errors_name_the_rule() {
    let e = decode_err(b"\x60\x02\x00\x01");
    assert!(e.to_string().contains("[MQTT-2.2.2-2]"), "{e}");
    let e = decode_err(b"\x38\x05\x00\x03a/b");
    assert!(e.to_string().contains("[MQTT-3.3.1-2]"), "{e}");
}
