//! Differential tests against `mqttbytes` 0.6 (its `v4` module, MQTT 3.1.1):
//! what we encode, mqttbytes decodes to the same content, and what mqttbytes
//! encodes, we decode to the same content, for generated packets.
//!
//! Where mqttbytes does not follow the specification, the generated packet is
//! skipped; each such case is named in [`to_mqttbytes`].

mod common;

use bytes::{Bytes, BytesMut};
use common::{encoded, pid};
use midge_protocol::{
    decode, ByteStr, ConnAck, Connect, ConnectReturnCode, LastWill, Packet, ProtocolLevel, Publish,
    QoS, QosPid, SubAck, Subscribe, SubscribeFilter, SubscribeReturnCode, Unsubscribe,
};
use mqttbytes::v4 as mb;
use proptest::prelude::*;

fn mb_qos(q: QoS) -> mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
    }
}

fn our_qos(q: mqttbytes::QoS) -> QoS {
    match q {
        mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn text(s: &ByteStr) -> String {
    s.as_str().to_owned()
}

/// Our packet as an mqttbytes packet, or `None` where mqttbytes cannot
/// represent it because it departs from MQTT 3.1.1 (or 3.1):
///
/// 1. mqttbytes' `v4` speaks only protocol name "MQTT" with level 4 (or 5):
///    a 3.1 CONNECT ("MQIsdp", level 3) is refused with `InvalidProtocol`.
/// 2. mqttbytes reads and writes the CONNECT password as a UTF-8 string; the
///    specification makes it binary data [MQTT-3.1.3.5], so a password that
///    is not UTF-8 fails with `TopicNotUtf8`.
/// 3. mqttbytes keys the user name and password flags on the strings being
///    non-empty: an empty user name or password is written as absent, though
///    both may be present and empty [MQTT-3.1.3.4] [MQTT-3.1.3.5].
fn to_mqttbytes(packet: &Packet) -> Option<mb::Packet> {
    Some(match packet {
        Packet::Connect(c) => {
            if c.protocol != ProtocolLevel::V3_1_1 {
                return None; // case 1
            }
            let login = match (&c.username, &c.password) {
                (None, None) => None,
                (Some(u), p) => {
                    let password = match p {
                        None => String::new(),
                        Some(p) => String::from_utf8(p.to_vec()).ok()?, // case 2
                    };
                    if u.is_empty() || p.as_ref().is_some_and(|p| p.is_empty()) {
                        return None; // case 3
                    }
                    Some(mb::Login {
                        username: text(u),
                        password,
                    })
                }
                // Never generated: a password needs a user name [MQTT-3.1.2-22].
                (None, Some(_)) => return None,
            };
            mb::Packet::Connect(mb::Connect {
                protocol: mqttbytes::Protocol::V4,
                keep_alive: c.keep_alive,
                client_id: text(&c.client_id),
                clean_session: c.clean_session,
                last_will: c.last_will.as_ref().map(|w| mb::LastWill {
                    topic: text(&w.topic),
                    message: w.payload.clone(),
                    qos: mb_qos(w.qos),
                    retain: w.retain,
                }),
                login,
            })
        }
        Packet::ConnAck(c) => mb::Packet::ConnAck(mb::ConnAck {
            session_present: c.session_present,
            code: match c.code {
                ConnectReturnCode::Accepted => mb::ConnectReturnCode::Success,
                ConnectReturnCode::UnacceptableProtocolVersion => {
                    mb::ConnectReturnCode::RefusedProtocolVersion
                }
                ConnectReturnCode::IdentifierRejected => mb::ConnectReturnCode::BadClientId,
                ConnectReturnCode::ServerUnavailable => mb::ConnectReturnCode::ServiceUnavailable,
                ConnectReturnCode::BadUserNameOrPassword => {
                    mb::ConnectReturnCode::BadUserNamePassword
                }
                ConnectReturnCode::NotAuthorized => mb::ConnectReturnCode::NotAuthorized,
            },
        }),
        Packet::Publish(p) => mb::Packet::Publish(mb::Publish {
            dup: p.dup,
            qos: mb_qos(p.qos()),
            retain: p.retain,
            topic: text(&p.topic),
            pkid: p.pkid().map_or(0, |id| id.get()),
            payload: p.payload.clone(),
        }),
        Packet::PubAck(id) => mb::Packet::PubAck(mb::PubAck { pkid: id.get() }),
        Packet::PubRec(id) => mb::Packet::PubRec(mb::PubRec { pkid: id.get() }),
        Packet::PubRel(id) => mb::Packet::PubRel(mb::PubRel { pkid: id.get() }),
        Packet::PubComp(id) => mb::Packet::PubComp(mb::PubComp { pkid: id.get() }),
        Packet::Subscribe(s) => mb::Packet::Subscribe(mb::Subscribe {
            pkid: s.pkid.get(),
            filters: s
                .filters
                .iter()
                .map(|f| mb::SubscribeFilter::new(text(&f.filter), mb_qos(f.qos)))
                .collect(),
        }),
        Packet::SubAck(s) => mb::Packet::SubAck(mb::SubAck {
            pkid: s.pkid.get(),
            return_codes: s
                .return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReturnCode::Success(q) => mb::SubscribeReasonCode::Success(mb_qos(*q)),
                    SubscribeReturnCode::Failure => mb::SubscribeReasonCode::Failure,
                })
                .collect(),
        }),
        Packet::Unsubscribe(u) => mb::Packet::Unsubscribe(mb::Unsubscribe {
            pkid: u.pkid.get(),
            topics: u.filters.iter().map(text).collect(),
        }),
        Packet::UnsubAck(id) => mb::Packet::UnsubAck(mb::UnsubAck { pkid: id.get() }),
        Packet::PingReq => mb::Packet::PingReq,
        Packet::PingResp => mb::Packet::PingResp,
        Packet::Disconnect => mb::Packet::Disconnect,
    })
}

/// An mqttbytes packet as ours. mqttbytes has no types for what the
/// specification forbids beyond a zero packet id, which `pid` refuses.
fn from_mqttbytes(packet: mb::Packet) -> Packet {
    match packet {
        mb::Packet::Connect(c) => {
            let (username, password) = match c.login {
                None => (None, None),
                Some(l) => (
                    Some(ByteStr::from(l.username)).filter(|u| !u.is_empty()),
                    Some(Bytes::from(l.password)).filter(|p| !p.is_empty()),
                ),
            };
            Packet::Connect(Connect {
                protocol: match c.protocol {
                    mqttbytes::Protocol::V4 => ProtocolLevel::V3_1_1,
                    mqttbytes::Protocol::V5 => panic!("mqttbytes decoded MQTT 5 in v4"),
                },
                clean_session: c.clean_session,
                keep_alive: c.keep_alive,
                client_id: c.client_id.into(),
                last_will: c.last_will.map(|w| LastWill {
                    topic: w.topic.into(),
                    payload: w.message,
                    qos: our_qos(w.qos),
                    retain: w.retain,
                }),
                username,
                password,
                bridge: false,
            })
        }
        mb::Packet::ConnAck(c) => Packet::ConnAck(ConnAck {
            session_present: c.session_present,
            code: ConnectReturnCode::from_u8(c.code as u8).expect("0..=5"),
        }),
        mb::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos_pid: match p.qos {
                mqttbytes::QoS::AtMostOnce => QosPid::AtMostOnce,
                mqttbytes::QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(p.pkid)),
                mqttbytes::QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(p.pkid)),
            },
            retain: p.retain,
            topic: p.topic.into(),
            payload: p.payload,
        }),
        mb::Packet::PubAck(a) => Packet::PubAck(pid(a.pkid)),
        mb::Packet::PubRec(a) => Packet::PubRec(pid(a.pkid)),
        mb::Packet::PubRel(a) => Packet::PubRel(pid(a.pkid)),
        mb::Packet::PubComp(a) => Packet::PubComp(pid(a.pkid)),
        mb::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            pkid: pid(s.pkid),
            filters: s
                .filters
                .into_iter()
                .map(|f| SubscribeFilter {
                    filter: f.path.into(),
                    qos: our_qos(f.qos),
                })
                .collect(),
        }),
        mb::Packet::SubAck(s) => Packet::SubAck(SubAck {
            pkid: pid(s.pkid),
            return_codes: s
                .return_codes
                .into_iter()
                .map(|c| match c {
                    mb::SubscribeReasonCode::Success(q) => SubscribeReturnCode::Success(our_qos(q)),
                    mb::SubscribeReasonCode::Failure => SubscribeReturnCode::Failure,
                })
                .collect(),
        }),
        mb::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            pkid: pid(u.pkid),
            filters: u.topics.into_iter().map(ByteStr::from).collect(),
        }),
        mb::Packet::UnsubAck(a) => Packet::UnsubAck(pid(a.pkid)),
        mb::Packet::PingReq => Packet::PingReq,
        mb::Packet::PingResp => Packet::PingResp,
        mb::Packet::Disconnect => Packet::Disconnect,
    }
}

/// Encodes with mqttbytes, which has one `write` per packet type.
fn mb_encode(packet: &mb::Packet) -> Result<Vec<u8>, mqttbytes::Error> {
    let mut buf = BytesMut::new();
    match packet {
        mb::Packet::Connect(p) => p.write(&mut buf),
        mb::Packet::ConnAck(p) => p.write(&mut buf),
        mb::Packet::Publish(p) => p.write(&mut buf),
        mb::Packet::PubAck(p) => p.write(&mut buf),
        mb::Packet::PubRec(p) => p.write(&mut buf),
        mb::Packet::PubRel(p) => p.write(&mut buf),
        mb::Packet::PubComp(p) => p.write(&mut buf),
        mb::Packet::Subscribe(p) => p.write(&mut buf),
        mb::Packet::SubAck(p) => p.write(&mut buf),
        mb::Packet::Unsubscribe(p) => p.write(&mut buf),
        mb::Packet::UnsubAck(p) => p.write(&mut buf),
        mb::Packet::PingReq => mb::PingReq.write(&mut buf),
        mb::Packet::PingResp => mb::PingResp.write(&mut buf),
        mb::Packet::Disconnect => mb::Disconnect.write(&mut buf),
    }?;
    Ok(buf.to_vec())
}

/// Decodes one whole packet with mqttbytes.
fn mb_decode(bytes: &[u8]) -> Result<mb::Packet, mqttbytes::Error> {
    let mut buf = BytesMut::from(bytes);
    let packet = mb::read(&mut buf, bytes.len())?;
    assert!(buf.is_empty(), "mqttbytes left {} bytes", buf.len());
    Ok(packet)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn what_we_encode_mqttbytes_decodes_the_same(packet in common::packet()) {
        let Some(theirs) = to_mqttbytes(&packet) else {
            return Ok(());
        };
        let decoded = mb_decode(&encoded(&packet))
            .map_err(|e| TestCaseError::fail(format!("mqttbytes: {e:?}")))?;
        prop_assert_eq!(&decoded, &theirs);
        prop_assert_eq!(from_mqttbytes(decoded), packet);
    }

    #[test]
    fn what_mqttbytes_encodes_we_decode_the_same(packet in common::packet()) {
        let Some(theirs) = to_mqttbytes(&packet) else {
            return Ok(());
        };
        let bytes = mb_encode(&theirs)
            .map_err(|e| TestCaseError::fail(format!("mqttbytes: {e:?}")))?;
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, bytes.len()), Ok(Some(packet.clone())));
        prop_assert!(buf.is_empty());
        // Both write the shortest form of every field, so the bytes agree too.
        prop_assert_eq!(bytes, encoded(&packet));
    }

    #[test]
    fn what_we_accept_after_a_byte_flip_mqttbytes_reads_the_same(
        packet in common::packet(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        // A corrupted packet: where our stricter decoder still accepts it,
        // mqttbytes must agree on its content (minus the cases above).
        let mut bytes = encoded(&packet);
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        let mut buf = BytesMut::from(&bytes[..]);
        let Ok(Some(ours)) = decode(&mut buf, bytes.len()) else {
            return Ok(());
        };
        if !buf.is_empty() {
            // The flip shortened the remaining length: only a prefix was read.
            return Ok(());
        }
        let Some(theirs) = to_mqttbytes(&ours) else {
            return Ok(());
        };
        let decoded = mb_decode(&bytes)
            .map_err(|e| TestCaseError::fail(format!("mqttbytes: {e:?}")))?;
        prop_assert_eq!(decoded, theirs);
    }
}

#[test]
fn mqttbytes_known_departures_are_what_the_skips_say() {
    // Case 1: a 3.1 CONNECT.
    let v31 = Packet::Connect(Connect {
        protocol: ProtocolLevel::V3_1,
        ..Connect::new("c")
    });
    assert_eq!(
        mb_decode(&encoded(&v31)),
        Err(mqttbytes::Error::InvalidProtocol)
    );
    assert!(to_mqttbytes(&v31).is_none());
    // Case 2: a binary password.
    let binary_password = Packet::Connect(Connect {
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"\xff")),
        ..Connect::new("c")
    });
    assert_eq!(
        mb_decode(&encoded(&binary_password)),
        Err(mqttbytes::Error::TopicNotUtf8)
    );
    assert!(to_mqttbytes(&binary_password).is_none());
    // Case 3: an empty user name is present on the wire, absent in mqttbytes.
    let empty_username = Packet::Connect(Connect {
        username: Some("".into()),
        ..Connect::new("c")
    });
    let Ok(mb::Packet::Connect(c)) = mb_decode(&encoded(&empty_username)) else {
        panic!("mqttbytes reads it");
    };
    assert_eq!(c.login, None);
    assert!(to_mqttbytes(&empty_username).is_none());
}
