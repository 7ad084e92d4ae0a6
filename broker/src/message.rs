//! [`Message`]: an application message as the broker routes it, encoded once.
//!
//! A PUBLISH that has subscribers is encoded a single time, as a QoS 0,
//! non-retained packet, into one buffer of its own. Every subscriber shares
//! that buffer: a QoS 0 delivery copies it to the socket buffer as it is, a
//! QoS 1/2 or retained delivery rewrites only the small fixed header and
//! splices the packet id in after the topic. Owning the bytes also means a
//! stored (retained or queued) message does not pin the connection read
//! buffer it was decoded from.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use midge_protocol::encode::{publish_byte1, remaining_len_len, MAX_REMAINING_LENGTH};
use midge_protocol::{ByteStr, PacketId, QoS};

/// An application message: topic, payload, the QoS it was published with and
/// its RETAIN flag, plus its encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The whole QoS 0, DUP 0, RETAIN 0 PUBLISH packet.
    frame: Bytes,
    /// Offset of the topic length field in `frame` (the fixed header size).
    header_len: usize,
    /// The topic: a slice of `frame`.
    topic: ByteStr,
    qos: QoS,
    retain: bool,
    /// Its journal id ([`crate::persist`]); 0 when it is not journaled.
    id: u64,
}

/// Why a message cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The topic is longer than a string field can hold.
    #[error("topic of {0} bytes is longer than 65535 bytes")]
    TopicTooLong(usize),
    /// The packet would be larger than MQTT can frame.
    #[error("message of {0} bytes is too large to frame")]
    TooLarge(usize),
}

impl Message {
    /// Encodes a message. The topic and payload are copied once, here.
    pub fn new(
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<Arc<Message>, MessageError> {
        Message::stored(topic, payload, qos, retain, 0)
    }

    /// Encodes a message that the journal knows as `id` (non-zero).
    pub fn stored(
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        id: u64,
    ) -> Result<Arc<Message>, MessageError> {
        let topic_len =
            u16::try_from(topic.len()).map_err(|_| MessageError::TopicTooLong(topic.len()))?;
        let remaining = 2 + topic.len() + payload.len();
        // Leave room for the packet id a QoS 1/2 delivery adds.
        if remaining + 2 > MAX_REMAINING_LENGTH {
            return Err(MessageError::TooLarge(remaining));
        }
        let header_len = 1 + remaining_len_len(remaining);
        let mut buf = BytesMut::with_capacity(header_len + remaining);
        put_header(&mut buf, 0x30, remaining);
        buf.put_u16(topic_len);
        buf.put_slice(topic.as_bytes());
        buf.put_slice(payload);
        let frame = buf.freeze();
        let topic_bytes = frame.slice(header_len + 2..header_len + 2 + topic.len());
        // The bytes were copied from a `&str`: they are UTF-8.
        let topic = ByteStr::from_utf8(topic_bytes).unwrap_or_default();
        Ok(Arc::new(Message {
            frame,
            header_len,
            topic,
            qos,
            retain,
            id,
        }))
    }

    /// Its journal id; 0 when it is not journaled.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// The topic name as a shared string.
    pub fn topic_str(&self) -> &ByteStr {
        &self.topic
    }

    /// The payload, sharing the encoded packet's buffer.
    pub fn payload(&self) -> Bytes {
        self.frame.slice(self.payload_start()..)
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.frame.len() - self.payload_start()
    }

    /// The QoS the message was published with.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// Whether it was published with RETAIN set.
    pub fn retain(&self) -> bool {
        self.retain
    }

    /// Bytes a delivery of this message takes on the wire, at most.
    pub fn wire_len(&self) -> usize {
        self.frame.len() + 3
    }

    fn payload_start(&self) -> usize {
        self.header_len + 2 + self.topic.len()
    }

    /// Appends this message as a PUBLISH with the given delivery flags.
    ///
    /// `pkid` must be `Some` exactly when `qos` is 1 or 2; DUP is only ever
    /// set for QoS 1/2 [MQTT-3.3.1-2].
    pub fn write_to(
        &self,
        out: &mut BytesMut,
        qos: QoS,
        pkid: Option<PacketId>,
        dup: bool,
        retain: bool,
    ) {
        match (qos, pkid) {
            (QoS::AtMostOnce, _) | (_, None) if !retain => out.extend_from_slice(&self.frame),
            (QoS::AtMostOnce, _) | (_, None) => {
                out.reserve(self.frame.len());
                out.put_u8(publish_byte1(false, QoS::AtMostOnce, true));
                out.extend_from_slice(&self.frame[1..]);
            }
            (qos, Some(id)) => {
                let remaining = self.frame.len() - self.header_len + 2;
                let topic_end = self.header_len + 2 + self.topic.len();
                out.reserve(remaining + 5);
                put_header(out, publish_byte1(dup, qos, retain), remaining);
                out.extend_from_slice(&self.frame[self.header_len..topic_end]);
                out.put_u16(id.get());
                out.extend_from_slice(&self.frame[topic_end..]);
            }
        }
    }
}

/// Writes a fixed header; `remaining` was checked against the MQTT maximum.
fn put_header(out: &mut BytesMut, byte1: u8, mut remaining: usize) {
    out.put_u8(byte1);
    loop {
        let mut b = (remaining & 0x7f) as u8;
        remaining >>= 7;
        if remaining > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if remaining == 0 {
            return;
        }
    }
}

impl fmt::Debug for Message {
    // Payloads can be large or private: show their size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload", &format_args!("{} bytes", self.payload_len()))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midge_protocol::{decode, Packet, Publish, QosPid};

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).expect("non-zero")
    }

    fn roundtrip(
        m: &Message,
        qos: QoS,
        pkid: Option<PacketId>,
        dup: bool,
        retain: bool,
    ) -> Publish {
        let mut out = BytesMut::new();
        m.write_to(&mut out, qos, pkid, dup, retain);
        match decode(&mut out, usize::MAX).expect("valid").expect("whole") {
            Packet::Publish(p) => {
                assert!(out.is_empty());
                p
            }
            other => panic!("not a publish: {other:?}"),
        }
    }

    #[test]
    fn a_qos0_delivery_is_the_shared_frame_unchanged() {
        let m = Message::new("a/b", b"hello", QoS::ExactlyOnce, true).expect("msg");
        let p = roundtrip(&m, QoS::AtMostOnce, None, false, false);
        assert_eq!(p, Publish::new("a/b", &b"hello"[..]));
    }

    #[test]
    fn a_qos1_delivery_splices_the_packet_id_after_the_topic() {
        let m = Message::new("t", b"xyz", QoS::AtLeastOnce, false).expect("msg");
        let p = roundtrip(&m, QoS::AtLeastOnce, Some(pid(7)), true, false);
        assert_eq!(p.qos_pid, QosPid::AtLeastOnce(pid(7)));
        assert!(p.dup);
        assert!(!p.retain);
        assert_eq!(&p.payload[..], b"xyz");
        assert_eq!(p.topic, "t");
    }

    #[test]
    fn a_retained_delivery_sets_retain_mqtt_3_3_1_8() {
        let m = Message::new("t", b"", QoS::AtMostOnce, true).expect("msg");
        let p = roundtrip(&m, QoS::AtMostOnce, None, false, true);
        assert!(p.retain);
        let p = roundtrip(&m, QoS::ExactlyOnce, Some(pid(9)), false, true);
        assert!(p.retain);
        assert_eq!(p.qos_pid, QosPid::ExactlyOnce(pid(9)));
    }

    #[test]
    fn a_long_payload_needs_a_longer_remaining_length_for_qos2() {
        // 2 + 1 + 125 = 128 needs two length bytes; +2 for the id as well.
        let payload = vec![7u8; 123];
        let m = Message::new("t", &payload, QoS::ExactlyOnce, false).expect("msg");
        let p = roundtrip(&m, QoS::ExactlyOnce, Some(pid(1)), false, false);
        assert_eq!(p.payload.len(), 123);
        let payload = vec![7u8; 20_000];
        let m = Message::new("topic/x", &payload, QoS::ExactlyOnce, false).expect("msg");
        let p = roundtrip(&m, QoS::AtLeastOnce, Some(pid(2)), false, false);
        assert_eq!(&p.payload[..], &payload[..]);
        assert_eq!(m.payload_len(), 20_000);
    }
}
