//! Helpers shared by the codec's integration tests: byte-level shortcuts and
//! proptest strategies that generate only packets the specification allows.
//!
//! Each test crate uses a different subset of it.
#![allow(dead_code)]

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use midge_protocol::{
    decode, encode, ByteStr, ConnAck, Connect, ConnectReturnCode, DecodeError, LastWill, Packet,
    PacketId, ProtocolLevel, Publish, QoS, QosPid, SubAck, Subscribe, SubscribeFilter,
    SubscribeReturnCode, Unsubscribe,
};
use proptest::prelude::*;

/// A packet id for tests; panics on zero, which no test passes.
pub fn pid(id: u16) -> PacketId {
    NonZeroU16::new(id).expect("test packet ids are non-zero")
}

/// The bytes `encode` writes for `packet`.
pub fn encoded(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, &mut buf).expect("test packets are encodable");
    buf.to_vec()
}

/// Decodes every packet of `bytes`, fed as one read, with `max` as limit;
/// all of `bytes` must be used.
pub fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::new();
    while let Some(p) = decode(&mut buf, max)? {
        packets.push(p);
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(packets)
}

/// Decodes `bytes` fed in reads of the given sizes (the last size repeats);
/// all of `bytes` must be used. See [`feed_in_reads`].
pub fn decode_in_reads(
    bytes: &[u8],
    sizes: &[usize],
    max: usize,
) -> Result<Vec<Packet>, DecodeError> {
    let (packets, rest) = feed_in_reads(bytes, sizes, max)?;
    assert_eq!(rest, 0, "{rest} bytes left undecoded");
    Ok(packets)
}

/// Feeds `bytes` to the decoder in reads of the given sizes (the last size
/// repeats) until the first error, checking the `Decoder` contract on the
/// way: `Ok(None)` leaves the buffer as it was, and the decoder never grows
/// the buffer past `max` (or past what it was, if larger). Gives the packets
/// and the number of bytes left in the buffer.
pub fn feed_in_reads(
    bytes: &[u8],
    sizes: &[usize],
    max: usize,
) -> Result<(Vec<Packet>, usize), DecodeError> {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.iter().copied();
    let mut size = 1;
    while !rest.is_empty() {
        size = sizes.next().unwrap_or(size).max(1);
        let (read, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(read);
        loop {
            let before = buf.clone();
            let cap_before = buf.capacity();
            let next = decode(&mut buf, max);
            assert!(
                buf.capacity() <= cap_before.max(max),
                "decode grew the buffer to {} bytes; limit {max}, was {cap_before}",
                buf.capacity()
            );
            match next? {
                Some(p) => packets.push(p),
                None => {
                    assert_eq!(buf, before, "Ok(None) must consume nothing");
                    break;
                }
            }
        }
    }
    Ok((packets, buf.len()))
}

/// One packet of every type, each with its fields set to something other
/// than the defaults.
pub fn one_of_each() -> Vec<Packet> {
    vec![
        Packet::Connect(Connect {
            protocol: ProtocolLevel::V3_1_1,
            clean_session: false,
            keep_alive: 300,
            client_id: "sensor-7".into(),
            last_will: Some(LastWill {
                topic: "status/sensor-7".into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"\x00\xffsecret")),
            bridge: false,
        }),
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }),
        Packet::Publish(Publish {
            dup: true,
            qos_pid: QosPid::ExactlyOnce(pid(0x1234)),
            retain: true,
            topic: "a/b/c".into(),
            payload: Bytes::from(vec![0xa5; 300]),
        }),
        Packet::PubAck(pid(1)),
        Packet::PubRec(pid(2)),
        Packet::PubRel(pid(3)),
        Packet::PubComp(pid(4)),
        Packet::Subscribe(Subscribe {
            pkid: pid(5),
            filters: vec![
                SubscribeFilter {
                    filter: "a/+/c".into(),
                    qos: QoS::ExactlyOnce,
                },
                SubscribeFilter {
                    filter: "#".into(),
                    qos: QoS::AtMostOnce,
                },
            ],
        }),
        Packet::SubAck(SubAck {
            pkid: pid(5),
            return_codes: vec![
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Failure,
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: pid(6),
            filters: vec!["a/+/c".into(), "#".into()],
        }),
        Packet::UnsubAck(pid(6)),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect,
    ]
}

// ---- proptest strategies: valid packets only ----

/// Any QoS.
pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce),
    ]
}

/// Any packet id.
pub fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(pid)
}

/// A string without U+0000, of up to `max` characters.
pub fn text(max: usize) -> impl Strategy<Value = ByteStr> {
    proptest::string::string_regex(&format!("[^\\x00]{{0,{max}}}"))
        .expect("valid regex")
        .prop_map(ByteStr::from)
}

/// A valid topic name: not empty, no wildcards, no U+0000.
pub fn topic_name() -> impl Strategy<Value = ByteStr> {
    prop_oneof![
        "[a-z0-9/$ ]{1,16}",
        "[^+#\\x00]{1,12}",
        Just("/".to_owned()),
        Just("$SYS/broker/uptime".to_owned()),
    ]
    .prop_map(ByteStr::from)
}

/// A valid topic filter: levels of text, `+` levels, and maybe a final `#`.
pub fn topic_filter() -> impl Strategy<Value = ByteStr> {
    let level = prop_oneof![
        3 => "[^+#/\\x00]{0,6}",
        1 => Just("+".to_owned()),
    ];
    (proptest::collection::vec(level, 1..5), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash {
            levels.push("#".to_owned());
        }
        let filter = levels.join("/");
        // A single empty level would be the empty filter.
        ByteStr::from(if filter.is_empty() {
            "+".into()
        } else {
            filter
        })
    })
}

/// Arbitrary binary data of up to `max` bytes.
pub fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// A valid CONNECT of either protocol level.
pub fn connect() -> impl Strategy<Value = Connect> {
    let will = (topic_name(), binary(32), qos(), any::<bool>()).prop_map(
        |(topic, payload, qos, retain)| LastWill {
            topic,
            payload,
            qos,
            retain,
        },
    );
    // A password only with a user name [MQTT-3.1.2-22].
    let login = proptest::option::of((text(12), proptest::option::of(binary(16))));
    (
        prop_oneof![Just(ProtocolLevel::V3_1_1), Just(ProtocolLevel::V3_1)],
        any::<bool>(),
        any::<u16>(),
        text(23),
        proptest::option::of(will),
        login,
    )
        .prop_map(
            |(protocol, clean_session, keep_alive, client_id, last_will, login)| {
                let (username, password) = match login {
                    Some((u, p)) => (Some(u), p),
                    None => (None, None),
                };
                Connect {
                    protocol,
                    clean_session,
                    keep_alive,
                    client_id,
                    last_will,
                    username,
                    password,
                    // Not in the specification: mqttbytes, the oracle,
                    // refuses it; tests/vectors.rs covers it.
                    bridge: false,
                }
            },
        )
}

/// A valid CONNACK: session present only with acceptance [MQTT-3.2.2-4].
pub fn connack() -> impl Strategy<Value = ConnAck> {
    (0u8..=5, any::<bool>()).prop_map(|(code, sp)| {
        let code = ConnectReturnCode::from_u8(code).expect("0..=5 are return codes");
        ConnAck {
            session_present: sp && code == ConnectReturnCode::Accepted,
            code,
        }
    })
}

/// A valid PUBLISH with a payload of up to `max_payload` bytes.
pub fn publish(max_payload: usize) -> impl Strategy<Value = Publish> {
    (
        qos(),
        packet_id(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        binary(max_payload),
    )
        .prop_map(|(qos, id, dup, retain, topic, payload)| Publish {
            // DUP never on QoS 0 [MQTT-3.3.1-2].
            dup: dup && qos != QoS::AtMostOnce,
            qos_pid: QosPid::new(qos, id),
            retain,
            topic,
            payload,
        })
}

/// A valid SUBSCRIBE.
pub fn subscribe() -> impl Strategy<Value = Subscribe> {
    let filter = (topic_filter(), qos()).prop_map(|(filter, qos)| SubscribeFilter { filter, qos });
    (packet_id(), proptest::collection::vec(filter, 1..6))
        .prop_map(|(pkid, filters)| Subscribe { pkid, filters })
}

/// A valid SUBACK.
pub fn suback() -> impl Strategy<Value = SubAck> {
    let code = prop_oneof![
        qos().prop_map(SubscribeReturnCode::Success),
        Just(SubscribeReturnCode::Failure),
    ];
    (packet_id(), proptest::collection::vec(code, 1..6))
        .prop_map(|(pkid, return_codes)| SubAck { pkid, return_codes })
}

/// A valid UNSUBSCRIBE.
pub fn unsubscribe() -> impl Strategy<Value = Unsubscribe> {
    (packet_id(), proptest::collection::vec(topic_filter(), 1..6))
        .prop_map(|(pkid, filters)| Unsubscribe { pkid, filters })
}

/// A valid packet of any of the 14 types.
pub fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(Packet::Connect),
        connack().prop_map(Packet::ConnAck),
        publish(200).prop_map(Packet::Publish),
        packet_id().prop_map(Packet::PubAck),
        packet_id().prop_map(Packet::PubRec),
        packet_id().prop_map(Packet::PubRel),
        packet_id().prop_map(Packet::PubComp),
        subscribe().prop_map(Packet::Subscribe),
        suback().prop_map(Packet::SubAck),
        unsubscribe().prop_map(Packet::Unsubscribe),
        packet_id().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}
