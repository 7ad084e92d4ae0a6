//! Bytes to packets.
//!
//! [`decode`] reads one packet from the front of a buffer. It looks at the
//! fixed header first and rejects a reserved type, wrong flags or an
//! oversized remaining length before waiting for (or buffering) the rest, so
//! a peer cannot make us hold more than `max_packet_size` bytes. The body is
//! split off the buffer and frozen; strings and the payload are slices of it.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::*;
use crate::topic::valid_topic_filter_bytes;
use crate::ByteStr;

/// The most room [`decode`] makes for a packet before any of its body has
/// arrived.
const FIRST_ROOM: usize = 64 * 1024;

/// The largest remaining length MQTT can frame, plus the largest fixed
/// header: the default limit when the caller has none.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 268_435_455 + 5;

/// What the fixed header says: first byte, its own length, remaining length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type and flags.
    pub byte1: u8,
    /// Length of the fixed header itself, 2 to 5 bytes.
    pub header_len: usize,
    /// The remaining length: variable header plus payload.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Length of the whole packet.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads a fixed header from the front of `buf` without consuming it.
/// `Ok(None)` when more bytes are needed.
pub fn parse_fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining_len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining_len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(FixedHeader {
                byte1,
                header_len: 2 + i,
                remaining_len,
            }));
        }
    }
    // The fourth length byte still has its continuation bit set [MQTT-2.2.3].
    Err(DecodeError::MalformedRemainingLength)
}

/// Checks the packet type and the fixed-header flags it requires
/// [MQTT-2.2.2-1] [MQTT-2.2.2-2].
fn check_flags(byte1: u8) -> Result<PacketType, DecodeError> {
    let flags = byte1 & 0x0f;
    let (packet_type, required) = match byte1 >> 4 {
        1 => (PacketType::Connect, 0),
        2 => (PacketType::ConnAck, 0),
        3 => {
            // PUBLISH flags are DUP, QoS and RETAIN.
            if flags & 0b0110 == 0b0110 {
                return Err(DecodeError::InvalidQoS);
            }
            if flags & 0b1000 != 0 && flags & 0b0110 == 0 {
                return Err(DecodeError::DupOnQoS0);
            }
            return Ok(PacketType::Publish);
        }
        4 => (PacketType::PubAck, 0),
        5 => (PacketType::PubRec, 0),
        6 => (PacketType::PubRel, 0b0010),
        7 => (PacketType::PubComp, 0),
        8 => (PacketType::Subscribe, 0b0010),
        9 => (PacketType::SubAck, 0),
        10 => (PacketType::Unsubscribe, 0b0010),
        11 => (PacketType::UnsubAck, 0),
        12 => (PacketType::PingReq, 0),
        13 => (PacketType::PingResp, 0),
        14 => (PacketType::Disconnect, 0),
        t => return Err(DecodeError::ReservedPacketType(t)),
    };
    if flags != required {
        return Err(DecodeError::InvalidFlags { packet_type, flags });
    }
    Ok(packet_type)
}

/// Decodes one packet from the front of `buf`.
///
/// `Ok(None)` means the buffer does not yet hold a whole packet; nothing is
/// consumed then. On success the packet's bytes are removed from `buf`. A
/// packet longer than `max_packet_size` (fixed header included) is an error
/// as soon as its remaining length has been read. After an error the
/// connection must be closed: the buffer's contents are unspecified.
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = parse_fixed_header(buf)? else {
        return Ok(None);
    };
    let packet_type = check_flags(header.byte1)?;
    let size = header.packet_len();
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        // Room for the rest of the packet, grown with what arrives: twice
        // what is here (at least FIRST_ROOM), never past the packet's size.
        // A claimed length alone, within the limit, commits no more than
        // that, whatever many connections claim; a packet that does come
        // is copied a few times at most. Not with `reserve`: it may double
        // the allocation, past the packet.
        let room_for = size.min((buf.len() * 2).max(FIRST_ROOM));
        if buf.capacity() < room_for {
            let mut room = BytesMut::with_capacity(room_for);
            room.extend_from_slice(buf);
            *buf = room;
        }
        return Ok(None);
    }
    // The acknowledgements, most of what a subscriber sends: read in place,
    // without making the buffer shared for a two-byte body.
    if header.remaining_len == 2 {
        let ack: Option<fn(PacketId) -> Packet> = match packet_type {
            PacketType::PubAck => Some(Packet::PubAck),
            PacketType::PubRec => Some(Packet::PubRec),
            PacketType::PubRel => Some(Packet::PubRel),
            PacketType::PubComp => Some(Packet::PubComp),
            PacketType::UnsubAck => Some(Packet::UnsubAck),
            _ => None,
        };
        if let Some(ack) = ack {
            let at = header.header_len;
            let id = u16::from_be_bytes([buf[at], buf[at + 1]]);
            // [MQTT-2.3.1-1]
            let pkid = PacketId::new(id).ok_or(DecodeError::ZeroPacketId)?;
            buf.advance(size);
            return Ok(Some(ack(pkid)));
        }
    }
    let mut body = buf.split_to(size).freeze();
    body.advance(header.header_len);
    decode_body(packet_type, header.byte1 & 0x0f, body).map(Some)
}

/// Decodes a packet's variable header and payload, `body`, given its type
/// and fixed-header flags (already checked).
pub fn decode_body(packet_type: PacketType, flags: u8, body: Bytes) -> Result<Packet, DecodeError> {
    let mut r = Reader(body);
    let packet = match packet_type {
        PacketType::Connect => Packet::Connect(connect(&mut r)?),
        PacketType::ConnAck => Packet::ConnAck(connack(&mut r)?),
        PacketType::Publish => Packet::Publish(publish(&mut r, flags)?),
        PacketType::PubAck => Packet::PubAck(r.pkid()?),
        PacketType::PubRec => Packet::PubRec(r.pkid()?),
        PacketType::PubRel => Packet::PubRel(r.pkid()?),
        PacketType::PubComp => Packet::PubComp(r.pkid()?),
        PacketType::Subscribe => Packet::Subscribe(subscribe(&mut r)?),
        PacketType::SubAck => Packet::SubAck(suback(&mut r)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(&mut r)?),
        PacketType::UnsubAck => Packet::UnsubAck(r.pkid()?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect,
    };
    r.finish()?;
    Ok(packet)
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    // The top bit marks a bridge (a private extension Mosquitto, EMQX and
    // others accept); the rest is the level proper.
    let bridge = level & 0x80 != 0 && matches!(level & 0x7f, 3 | 4);
    let level = if bridge { level & 0x7f } else { level };
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolLevel::V3_1_1,
        (b"MQIsdp", 3) => ProtocolLevel::V3_1,
        // A known name with a level we do not serve: the server answers
        // CONNACK 0x01 [MQTT-3.1.2-2].
        (b"MQTT", l) | (b"MQIsdp", l) => return Err(DecodeError::UnsupportedProtocolLevel(l)),
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_session = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillQoS)?;
    if password_flag && !username_flag {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let last_will = if will_flag {
        let topic = r.topic_name()?;
        Some(LastWill {
            topic,
            payload: r.binary()?,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_session,
        keep_alive,
        client_id,
        last_will,
        username,
        password,
        bridge,
    })
}

fn connack(r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xfe != 0 {
        return Err(DecodeError::InvalidConnAckFlags);
    }
    let code = r.u8()?;
    let code =
        ConnectReturnCode::from_u8(code).ok_or(DecodeError::InvalidConnectReturnCode(code))?;
    let session_present = flags & 0x01 != 0;
    if session_present && code != ConnectReturnCode::Accepted {
        return Err(DecodeError::SessionPresentOnRefusal);
    }
    Ok(ConnAck {
        session_present,
        code,
    })
}

fn publish(r: &mut Reader, flags: u8) -> Result<Publish, DecodeError> {
    let topic = r.topic_name()?;
    let qos_pid = match (flags >> 1) & 0x03 {
        0 => QosPid::AtMostOnce,
        1 => QosPid::AtLeastOnce(r.pkid()?),
        _ => QosPid::ExactlyOnce(r.pkid()?),
    };
    Ok(Publish {
        dup: flags & 0x08 != 0,
        qos_pid,
        retain: flags & 0x01 != 0,
        topic,
        payload: r.rest(),
    })
}

fn subscribe(r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let pkid = r.pkid()?;
    let mut filters = Vec::with_capacity(r.count_fields(1));
    while r.has_remaining() {
        let filter = r.topic_filter()?;
        // The upper six bits are reserved and must be zero [MQTT-3-8.3-4].
        let q = r.u8()?;
        let qos = QoS::from_u8(q).ok_or(DecodeError::InvalidRequestedQoS(q))?;
        filters.push(SubscribeFilter { filter, qos });
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(Subscribe { pkid, filters })
}

fn suback(r: &mut Reader) -> Result<SubAck, DecodeError> {
    let pkid = r.pkid()?;
    // One byte per code; capped like `count_fields`.
    let mut return_codes = Vec::with_capacity(r.0.len().min(256));
    while r.has_remaining() {
        let code = r.u8()?;
        return_codes.push(match code {
            0x80 => SubscribeReturnCode::Failure,
            c => SubscribeReturnCode::Success(
                QoS::from_u8(c).ok_or(DecodeError::InvalidSubAckCode(c))?,
            ),
        });
    }
    if return_codes.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(SubAck { pkid, return_codes })
}

fn unsubscribe(r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let pkid = r.pkid()?;
    let mut filters = Vec::with_capacity(r.count_fields(0));
    while r.has_remaining() {
        let filter = r.topic_filter()?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(Unsubscribe { pkid, filters })
}

/// What a string's bytes hold, as far as the checks on strings care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Scan {
    nul: bool,
    wildcard: bool,
    non_ascii: bool,
}

impl Scan {
    /// Scans `bytes` eight at a time: topics are the hottest strings, and a
    /// byte-at-a-time loop costs several instructions per byte.
    fn of(bytes: &[u8]) -> Scan {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // Non-zero if and only if some byte of `x` is zero.
        fn any_zero(x: u64) -> u64 {
            x.wrapping_sub(ONES) & !x & HIGHS
        }
        let (mut all, mut nul, mut wildcard) = (0u64, 0u64, 0u64);
        let mut word = |chunk: &[u8]| {
            if let Ok(chunk) = <[u8; 8]>::try_from(chunk) {
                let x = u64::from_le_bytes(chunk);
                all |= x;
                nul |= any_zero(x);
                wildcard |=
                    any_zero(x ^ (ONES * u64::from(b'+'))) | any_zero(x ^ (ONES * u64::from(b'#')));
            }
        };
        if bytes.len() >= 8 {
            bytes.chunks_exact(8).for_each(&mut word);
            // The last eight bytes again, overlapping: the checks are ORs,
            // so bytes seen twice do no harm.
            word(&bytes[bytes.len() - 8..]);
        } else {
            let mut last = [b'a'; 8];
            last[..bytes.len()].copy_from_slice(bytes);
            word(&last);
        }
        Scan {
            nul: nul != 0,
            wildcard: wildcard != 0,
            non_ascii: all & HIGHS != 0,
        }
    }
}

/// A cursor over a packet body that never reads past its end.
struct Reader(Bytes);

impl Reader {
    fn has_remaining(&self) -> bool {
        !self.0.is_empty()
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.0.is_empty() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.0.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.get_u16())
    }

    fn pkid(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// A length-prefixed byte field [MQTT-1.5.3].
    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.0.len() < len {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.split_to(len))
    }

    /// A length-prefixed UTF-8 string: well-formed, so no encoded surrogates
    /// [MQTT-1.5.3-1], and without U+0000 [MQTT-1.5.3-2].
    fn string(&mut self) -> Result<ByteStr, DecodeError> {
        self.text().map(|(s, _)| s)
    }

    /// A topic name: a string, not empty [MQTT-4.7.3-1], without wildcards
    /// [MQTT-3.3.2-2].
    fn topic_name(&mut self) -> Result<ByteStr, DecodeError> {
        let (topic, wildcard) = self.text()?;
        if topic.as_bytes().is_empty() {
            Err(DecodeError::EmptyTopic)
        } else if wildcard {
            Err(DecodeError::WildcardInTopicName)
        } else {
            Ok(topic)
        }
    }

    /// A topic filter: a string, not empty [MQTT-4.7.3-1], with wildcards
    /// only as whole levels [MQTT-4.7.1-2] [MQTT-4.7.1-3].
    fn topic_filter(&mut self) -> Result<ByteStr, DecodeError> {
        let (filter, wildcard) = self.text()?;
        // Checked as bytes, and only when there is a wildcard to check:
        // `ByteStr`'s `&str` view would check UTF-8 again.
        if filter.as_bytes().is_empty() {
            Err(DecodeError::EmptyTopic)
        } else if wildcard && !valid_topic_filter_bytes(filter.as_bytes()) {
            Err(DecodeError::InvalidTopicFilter)
        } else {
            Ok(filter)
        }
    }

    /// A string, and whether it holds `+` or `#`. One pass finds U+0000,
    /// wildcards and any non-ASCII byte; most strings are ASCII and need no
    /// further UTF-8 check.
    #[inline(always)]
    fn text(&mut self) -> Result<(ByteStr, bool), DecodeError> {
        let bytes = self.binary()?;
        let scan = Scan::of(&bytes);
        if scan.nul {
            return Err(DecodeError::NullCharacter);
        }
        if scan.non_ascii && std::str::from_utf8(&bytes).is_err() {
            return Err(DecodeError::InvalidUtf8);
        }
        Ok((ByteStr::from_checked_utf8(bytes), scan.wildcard))
    }

    /// How many length-prefixed fields, each followed by `trailer` bytes,
    /// the rest of the body holds, at most 64: a capacity hint that spares
    /// SUBSCRIBE and UNSUBSCRIBE repeated growth. Capped, because the fields
    /// are not checked yet and a hostile packet must not buy a large vector.
    fn count_fields(&self, trailer: usize) -> usize {
        let (body, mut i, mut n) = (&self.0[..], 0, 0);
        while n < 64 && i + 2 <= body.len() {
            i += 2 + usize::from(u16::from_be_bytes([body[i], body[i + 1]])) + trailer;
            n += 1;
        }
        n
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}
