//! The MQTT 3.1.1 control packets as Rust types.
//!
//! Every packet of the protocol is a variant of [`Packet`]. Strings are
//! [`ByteStr`] and payloads [`Bytes`]: slices of the buffer the packet was
//! decoded from. Values of these types are valid by construction where the
//! type can say so (packet ids are [`NonZeroU16`], a QoS 0 publish carries no
//! id); the rest is checked by the decoder and, where a peer cannot be blamed,
//! by the encoder.
//!
//! The protocol level is carried by [`Connect`] and kept by the codec, so a
//! later protocol version can add its own fields (MQTT 5 properties) without
//! reshaping the 3.1.1 types.

use std::fmt;
use std::num::NonZeroU16;

use bytes::Bytes;

use crate::ByteStr;

/// A packet identifier: never zero [MQTT-2.3.1-1].
pub type PacketId = NonZeroU16;

/// The protocol level a client asked for in CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolLevel {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
}

impl ProtocolLevel {
    /// The protocol name written in CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolLevel::V3_1 => "MQIsdp",
            ProtocolLevel::V3_1_1 => "MQTT",
        }
    }

    /// The level byte written in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolLevel::V3_1 => 3,
            ProtocolLevel::V3_1_1 => 4,
        }
    }
}

/// Quality of service of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// At most once: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// At least once: acknowledged with PUBACK.
    AtLeastOnce = 1,
    /// Exactly once: PUBREC, PUBREL, PUBCOMP.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value 0..=2; `None` for anything else.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A PUBLISH's QoS together with its packet id, which only QoS 1 and 2 carry
/// [MQTT-2.3.1-5].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosPid {
    /// QoS 0, no packet id.
    AtMostOnce,
    /// QoS 1 with its packet id.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet id.
    ExactlyOnce(PacketId),
}

impl QosPid {
    /// Builds from a QoS and a packet id; the id is ignored for QoS 0.
    pub fn new(qos: QoS, pkid: PacketId) -> QosPid {
        match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(pkid),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(pkid),
        }
    }

    /// The QoS.
    pub fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet id, for QoS 1 and 2.
    pub fn pkid(self) -> Option<PacketId> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(p) | QosPid::ExactlyOnce(p) => Some(p),
        }
    }
}

/// The will message a client leaves in CONNECT.
#[derive(Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Topic the will is published to.
    pub topic: ByteStr,
    /// Will payload.
    pub payload: Bytes,
    /// QoS of the will publish.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
}

impl fmt::Debug for LastWill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastWill")
            .field("topic", &self.topic)
            .field("payload", &format_args!("{} bytes", self.payload.len()))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .finish()
    }
}

/// CONNECT: the first packet a client sends.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol name and level.
    pub protocol: ProtocolLevel,
    /// CleanSession flag.
    pub clean_session: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server assigns one when
    /// CleanSession is set [MQTT-3.1.3-6]).
    pub client_id: ByteStr,
    /// The will, when the will flag is set.
    pub last_will: Option<LastWill>,
    /// User name, when the flag is set.
    pub username: Option<ByteStr>,
    /// Password, when the flag is set: binary data, not a string.
    pub password: Option<Bytes>,
    /// The top bit of the protocol level byte: a bridge between brokers
    /// (Mosquitto's `try_private`; level 0x84 or 0x83 on the wire). Not in
    /// the specification, but a broker that knows of it does not send a
    /// bridge back the messages the bridge published, which breaks the
    /// loop a two-way bridge would otherwise make.
    pub bridge: bool,
}

impl Connect {
    /// A 3.1.1 CONNECT with the given client id, CleanSession set, keep alive
    /// 60 s and nothing else.
    pub fn new(client_id: impl Into<ByteStr>) -> Connect {
        Connect {
            protocol: ProtocolLevel::V3_1_1,
            clean_session: true,
            keep_alive: 60,
            client_id: client_id.into(),
            last_will: None,
            username: None,
            password: None,
            bridge: false,
        }
    }
}

impl fmt::Debug for Connect {
    // The password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("last_will", &self.last_will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// CONNACK return codes [MQTT-3.2.2.3].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0x00 Connection accepted.
    Accepted = 0,
    /// 0x01 The server does not support the requested protocol level.
    UnacceptableProtocolVersion = 1,
    /// 0x02 The client identifier is correct UTF-8 but not allowed.
    IdentifierRejected = 2,
    /// 0x03 The MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 0x04 The data in the user name or password is malformed.
    BadUserNameOrPassword = 4,
    /// 0x05 The client is not authorized to connect.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The code for a wire value; `None` for the reserved values 6..=255.
    pub fn from_u8(v: u8) -> Option<ConnectReturnCode> {
        Some(match v {
            0 => ConnectReturnCode::Accepted,
            1 => ConnectReturnCode::UnacceptableProtocolVersion,
            2 => ConnectReturnCode::IdentifierRejected,
            3 => ConnectReturnCode::ServerUnavailable,
            4 => ConnectReturnCode::BadUserNameOrPassword,
            5 => ConnectReturnCode::NotAuthorized,
            _ => return None,
        })
    }

    /// The reason in words, as mosquitto prints it.
    pub fn reason(self) -> &'static str {
        match self {
            ConnectReturnCode::Accepted => "Connection Accepted.",
            ConnectReturnCode::UnacceptableProtocolVersion => {
                "Connection Refused: unacceptable protocol version."
            }
            ConnectReturnCode::IdentifierRejected => "Connection Refused: identifier rejected.",
            ConnectReturnCode::ServerUnavailable => "Connection Refused: broker unavailable.",
            ConnectReturnCode::BadUserNameOrPassword => {
                "Connection Refused: bad user name or password."
            }
            ConnectReturnCode::NotAuthorized => "Connection Refused: not authorised.",
        }
    }
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server had a session for this client [MQTT-3.2.2-1..3].
    pub session_present: bool,
    /// The verdict.
    pub code: ConnectReturnCode,
}

/// PUBLISH: an application message.
#[derive(Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag: this may be a re-delivery (never set for QoS 0 [MQTT-3.3.1-2]).
    pub dup: bool,
    /// QoS and, for QoS 1 and 2, the packet id.
    pub qos_pid: QosPid,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name: no wildcards, not empty.
    pub topic: ByteStr,
    /// Application payload.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0, non-retained publish.
    pub fn new(topic: impl Into<ByteStr>, payload: impl Into<Bytes>) -> Publish {
        Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: false,
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    /// The QoS.
    pub fn qos(&self) -> QoS {
        self.qos_pid.qos()
    }

    /// The packet id, for QoS 1 and 2.
    pub fn pkid(&self) -> Option<PacketId> {
        self.qos_pid.pkid()
    }
}

impl fmt::Debug for Publish {
    // Payloads can be large or private: show their size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos_pid", &self.qos_pid)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("payload", &format_args!("{} bytes", self.payload.len()))
            .finish()
    }
}

/// One topic filter of a SUBSCRIBE with the QoS asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeFilter {
    /// The topic filter; may hold `+` and `#`.
    pub filter: ByteStr,
    /// Maximum QoS requested.
    pub qos: QoS,
}

/// SUBSCRIBE: one or more topic filters [MQTT-3.8.3-3].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet id.
    pub pkid: PacketId,
    /// The filters, in order.
    pub filters: Vec<SubscribeFilter>,
}

/// One return code of a SUBACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscribeReturnCode {
    /// Granted, at this maximum QoS.
    Success(QoS),
    /// 0x80: refused.
    Failure,
}

/// SUBACK: one return code per filter of the SUBSCRIBE, in order [MQTT-3.9.3-1].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// Packet id of the SUBSCRIBE.
    pub pkid: PacketId,
    /// Return codes.
    pub return_codes: Vec<SubscribeReturnCode>,
}

/// UNSUBSCRIBE: one or more topic filters [MQTT-3.10.3-2].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet id.
    pub pkid: PacketId,
    /// The filters, in order.
    pub filters: Vec<ByteStr>,
}

/// The packet types as numbered in the fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// 1
    Connect = 1,
    /// 2
    ConnAck = 2,
    /// 3
    Publish = 3,
    /// 4
    PubAck = 4,
    /// 5
    PubRec = 5,
    /// 6
    PubRel = 6,
    /// 7
    PubComp = 7,
    /// 8
    Subscribe = 8,
    /// 9
    SubAck = 9,
    /// 10
    Unsubscribe = 10,
    /// 11
    UnsubAck = 11,
    /// 12
    PingReq = 12,
    /// 13
    PingResp = 13,
    /// 14
    Disconnect = 14,
}

/// An MQTT 3.1.1 control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT
    Connect(Connect),
    /// CONNACK
    ConnAck(ConnAck),
    /// PUBLISH
    Publish(Publish),
    /// PUBACK
    PubAck(PacketId),
    /// PUBREC
    PubRec(PacketId),
    /// PUBREL
    PubRel(PacketId),
    /// PUBCOMP
    PubComp(PacketId),
    /// SUBSCRIBE
    Subscribe(Subscribe),
    /// SUBACK
    SubAck(SubAck),
    /// UNSUBSCRIBE
    Unsubscribe(Unsubscribe),
    /// UNSUBACK
    UnsubAck(PacketId),
    /// PINGREQ
    PingReq,
    /// PINGRESP
    PingResp,
    /// DISCONNECT
    Disconnect,
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect => PacketType::Disconnect,
        }
    }
}
