//! Codec errors. A [`DecodeError`] is a protocol violation by the peer; its
//! message names the rule of MQTT 3.1.1 it breaks, so a broker can log one
//! clear line and close the connection.

use crate::packet::PacketType;

/// Why bytes from a peer are not a valid MQTT 3.1.1 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length uses more than four bytes.
    #[error("malformed remaining length: more than 4 bytes [MQTT-2.2.3]")]
    MalformedRemainingLength,
    /// The packet is larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the maximum of {max} bytes")]
    PacketTooLarge {
        /// Size of the whole packet, fixed header included.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Packet type 0 or 15, reserved.
    #[error("reserved packet type {0} [MQTT-2.2.1]")]
    ReservedPacketType(u8),
    /// The fixed-header flags are not the ones the packet type requires.
    #[error("invalid fixed header flags {flags:#06b} for {packet_type:?} [MQTT-2.2.2-2]")]
    InvalidFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A PUBLISH with both QoS bits set.
    #[error("PUBLISH with QoS 3 [MQTT-3.3.1-4]")]
    InvalidQoS,
    /// A QoS 0 PUBLISH with DUP set.
    #[error("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQoS0,
    /// CONNECT's protocol name is neither `MQTT` nor `MQIsdp`.
    #[error("invalid protocol name [MQTT-3.1.2-1]")]
    InvalidProtocolName,
    /// CONNECT's protocol level is not one this codec serves; the server
    /// answers CONNACK 0x01 and closes.
    #[error("unsupported protocol level {0} [MQTT-3.1.2-2]")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT's reserved flag bit is set.
    #[error("CONNECT reserved flag is set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    /// Will QoS or will retain set while the will flag is clear.
    #[error("will QoS or retain set without the will flag [MQTT-3.1.2-13] [MQTT-3.1.2-15]")]
    WillFlagsWithoutWill,
    /// Will QoS 3.
    #[error("will QoS 3 [MQTT-3.1.2-14]")]
    InvalidWillQoS,
    /// Password flag set while the user name flag is clear.
    #[error("password flag set without user name flag [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    /// A string is not well-formed UTF-8 (this includes encoded surrogates).
    #[error("string is not well-formed UTF-8 [MQTT-1.5.3-1]")]
    InvalidUtf8,
    /// A string contains U+0000.
    #[error("string contains U+0000 [MQTT-1.5.3-2]")]
    NullCharacter,
    /// A topic name or filter is empty.
    #[error("empty topic [MQTT-4.7.3-1]")]
    EmptyTopic,
    /// A PUBLISH topic name contains `+` or `#`.
    #[error("wildcard in topic name [MQTT-3.3.2-2]")]
    WildcardInTopicName,
    /// A topic filter uses `+` or `#` where they are not allowed.
    #[error("invalid topic filter [MQTT-4.7.1-2] [MQTT-4.7.1-3]")]
    InvalidTopicFilter,
    /// A SUBSCRIBE or UNSUBSCRIBE without any filter.
    #[error("SUBSCRIBE or UNSUBSCRIBE without topic filters [MQTT-3.8.3-3] [MQTT-3.10.3-2]")]
    NoTopicFilters,
    /// A requested QoS byte other than 0, 1 or 2.
    #[error("requested QoS byte {0:#04x} is invalid [MQTT-3.8.3-4]")]
    InvalidRequestedQoS(u8),
    /// A packet identifier of zero.
    #[error("packet identifier is zero [MQTT-2.3.1-1]")]
    ZeroPacketId,
    /// CONNACK acknowledge flags with reserved bits set.
    #[error("CONNACK reserved flags are set [MQTT-3.2.2.1]")]
    InvalidConnAckFlags,
    /// CONNACK return code 6..=255.
    #[error("CONNACK return code {0} is reserved [MQTT-3.2.2.3]")]
    InvalidConnectReturnCode(u8),
    /// CONNACK with session present set on a refusal.
    #[error("CONNACK session present set with a non-zero return code [MQTT-3.2.2-4]")]
    SessionPresentOnRefusal,
    /// SUBACK return code other than 0x00, 0x01, 0x02 or 0x80.
    #[error("SUBACK return code {0:#04x} is invalid [MQTT-3.9.3-2]")]
    InvalidSubAckCode(u8),
    /// The packet's fields run past its declared remaining length.
    #[error("packet shorter than its fields require [MQTT-2.2.3]")]
    Truncated,
    /// Bytes are left over after a packet's declared content.
    #[error("unexpected bytes after the packet's content [MQTT-2.2.3]")]
    TrailingBytes,
}

/// Why a packet could not be encoded: the packet is not one the
/// specification allows, which is the caller's fault, never the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes.
    #[error("field of {0} bytes is longer than 65535 bytes [MQTT-1.5.3]")]
    FieldTooLong(usize),
    /// The packet is longer than the 268,435,455 bytes MQTT can frame.
    #[error("packet with remaining length {0} is too large to encode [MQTT-2.2.3]")]
    PacketTooLarge(usize),
    /// A SUBSCRIBE, SUBACK or UNSUBSCRIBE without entries.
    #[error("SUBSCRIBE, SUBACK or UNSUBSCRIBE needs at least one entry")]
    Empty,
    /// A PUBLISH with DUP set at QoS 0.
    #[error("DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQoS0,
}

/// Errors of the [`Codec`](crate::Codec) adapter: a protocol violation or an
/// I/O failure of the underlying stream.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer sent a malformed packet.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
