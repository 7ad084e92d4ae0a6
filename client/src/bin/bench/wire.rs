//! The raw MQTT connection `midge-bench` drives: a socket, a read buffer
//! and a write buffer, no tasks and no channels.
//!
//! Setup packets (CONNECT, SUBSCRIBE and their answers) go through
//! `midge_protocol`'s `encode` and `decode`. The hot path does not: a
//! PUBLISH is written by copying a template encoded once and patching its
//! packet id and stamp in place ([`PublishTemplate`]), and received
//! packets are framed with the protocol's `parse_fixed_header` and read in
//! place ([`next_frame`]), so a delivery costs no allocation and no
//! reference count. Many packets share one `read` and one `write`.
//!
//! Reads go into a [`ReadBuf`] zeroed once, and a read that does not fill
//! it clears the socket's readiness itself ([`Wire::try_read`]): the
//! socket was drained, so the usual extra `read` that only returns
//! `WouldBlock` is skipped. That is a third of the syscalls of a QoS 1
//! subscriber (read, acknowledgements written, wait).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use midge_protocol::decode::parse_fixed_header;
use midge_protocol::{
    decode, encode, ConnectReturnCode, DecodeError, EncodeError, Packet, Publish, QoS, QosPid,
    Subscribe, SubscribeFilter, SubscribeReturnCode,
};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// The largest packet accepted from the broker.
pub const MAX_PACKET: usize = 1 << 20;

/// How long CONNECT/CONNACK and SUBSCRIBE/SUBACK may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a payload needs for its stamp: sequence key and send time.
pub const STAMP_LEN: usize = 16;

/// Bits of the stamp's key holding the sequence number; the publisher
/// index takes the bits above.
const SEQ_BITS: u32 = 40;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The broker sent bytes that are not MQTT.
    #[error("bad packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (a topic too long, say).
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// The broker closed the connection.
    #[error("connection closed by the broker")]
    Closed,
    /// CONNACK refused the connection.
    #[error("CONNACK refused: {}", .0.reason())]
    Refused(ConnectReturnCode),
    /// SUBACK refused the subscription.
    #[error("SUBACK refused the subscription to {0}")]
    SubscribeRefused(String),
    /// A setup step took longer than [`SETUP_TIMEOUT`].
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The broker answered with a packet that makes no sense here.
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
}

/// Free room below which a [`ReadBuf`] makes more before a read.
const READ_MIN: usize = 4096;

/// A receive buffer of initialised bytes, so reading needs no `unsafe`
/// and no zeroing per read: `start..end` holds bytes not yet handled.
#[derive(Debug)]
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// A buffer of `capacity` bytes (it grows for a larger packet).
    pub fn new(capacity: usize) -> ReadBuf {
        ReadBuf {
            buf: vec![0; capacity.max(READ_MIN)],
            start: 0,
            end: 0,
        }
    }

    /// The bytes received and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` bytes of [`data`](Self::data).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into: at least [`READ_MIN`] bytes, made by moving the
    /// unconsumed bytes to the front or, failing that, by growing.
    fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < READ_MIN {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < READ_MIN {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` more bytes as received.
    fn filled(&mut self, n: usize) {
        self.end += n;
    }
}

/// One connection to the broker.
pub struct Wire {
    /// The socket, with `TCP_NODELAY`.
    pub stream: TcpStream,
    /// Received bytes not yet handled.
    pub rbuf: ReadBuf,
    /// Bytes waiting to be written.
    pub wbuf: BytesMut,
}

impl Wire {
    /// Connects, sends CONNECT (clean session) and waits for an accepting
    /// CONNACK. Bytes after the CONNACK stay in `rbuf`.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
        read_capacity: usize,
    ) -> Result<Wire, WireError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut wire = Wire {
            stream,
            rbuf: ReadBuf::new(read_capacity),
            wbuf: BytesMut::new(),
        };
        let mut connect = midge_protocol::Connect::new(client_id);
        connect.keep_alive = keep_alive;
        wire.send(&Packet::Connect(connect)).await?;
        let step = async {
            match wire.read_packet().await? {
                Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Accepted => Ok(()),
                Packet::ConnAck(ack) => Err(WireError::Refused(ack.code)),
                _ => Err(WireError::Unexpected("packet before CONNACK")),
            }
        };
        tokio::time::timeout(SETUP_TIMEOUT, step)
            .await
            .map_err(|_| WireError::Timeout("CONNECT"))??;
        Ok(wire)
    }

    /// Subscribes to one filter and waits for its SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), WireError> {
        let pkid = NonZeroU16::MIN;
        let subscribe = Subscribe {
            pkid,
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                qos,
            }],
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        let step = async {
            match self.read_packet().await? {
                Packet::SubAck(ack) if ack.pkid == pkid => match ack.return_codes[..] {
                    [SubscribeReturnCode::Success(_)] => Ok(()),
                    _ => Err(WireError::SubscribeRefused(filter.to_owned())),
                },
                _ => Err(WireError::Unexpected("packet before SUBACK")),
            }
        };
        tokio::time::timeout(SETUP_TIMEOUT, step)
            .await
            .map_err(|_| WireError::Timeout("SUBSCRIBE"))?
    }

    /// Encodes and writes one packet, waiting until it is written.
    async fn send(&mut self, packet: &Packet) -> Result<(), WireError> {
        encode(packet, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads until one whole packet has arrived and decodes it.
    async fn read_packet(&mut self) -> Result<Packet, WireError> {
        loop {
            // Setup only: copying the few bytes to decode them is fine.
            let mut bytes = BytesMut::from(self.rbuf.data());
            if let Some(packet) = decode(&mut bytes, MAX_PACKET)? {
                self.rbuf.consume(self.rbuf.data().len() - bytes.len());
                return Ok(packet);
            }
            let n = self.stream.read(self.rbuf.spare()).await?;
            if n == 0 {
                return Err(WireError::Closed);
            }
            self.rbuf.filled(n);
        }
    }

    /// Reads what the socket holds without waiting: `Ok(false)` at end of
    /// stream. A read that leaves room in the buffer drained the socket,
    /// so it clears the readiness (through `try_io`, which does so only if
    /// no new event came meanwhile) and the next wait is a real one.
    pub fn try_read(&mut self) -> Result<bool, WireError> {
        let Wire { stream, rbuf, .. } = self;
        let stream: &TcpStream = stream;
        let spare = rbuf.spare();
        let room = spare.len();
        let mut got = 0;
        let result = stream.try_io(Interest::READABLE, || {
            got = (&*SockRef::from(stream)).read(spare)?;
            if got == 0 || got == room {
                Ok(())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        match result {
            Ok(()) if got == 0 => return Ok(false),
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        rbuf.filled(got);
        Ok(true)
    }

    /// Writes what the socket takes of the queued bytes.
    pub fn try_write(&mut self) -> Result<(), WireError> {
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// What to wait for: reading, and writing while bytes are queued.
    pub fn interest(&self) -> Interest {
        if self.wbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }
}

/// A packet read in place from a receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A PUBLISH.
    Publish {
        /// QoS 0, 1 or 2.
        qos: u8,
        /// The packet id, for QoS 1 and 2.
        pkid: u16,
        /// The payload.
        payload: &'a [u8],
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP: its packet type and id.
    Ack {
        /// The packet type, 4 to 7.
        kind: u8,
        /// The packet id.
        pkid: u16,
    },
    /// Anything else (PINGRESP, a late SUBACK): ignored by the load.
    Other,
}

/// Packet type numbers of the acknowledgements.
pub const PUBACK: u8 = 4;
/// PUBREC.
pub const PUBREC: u8 = 5;
/// PUBREL.
pub const PUBREL: u8 = 6;
/// PUBCOMP.
pub const PUBCOMP: u8 = 7;

/// Reads the packet at the front of `buf` without copying: the frame and
/// the packet's length, or `None` when it has not fully arrived.
pub fn next_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    let Some(header) = parse_fixed_header(buf)? else {
        return Ok(None);
    };
    let len = header.packet_len();
    if len > MAX_PACKET {
        return Err(DecodeError::PacketTooLarge {
            size: len,
            max: MAX_PACKET,
        }
        .into());
    }
    let Some(body) = buf.get(header.header_len..len) else {
        return Ok(None);
    };
    let kind = header.byte1 >> 4;
    let frame = match kind {
        3 => publish_frame(header.byte1, body)?,
        PUBACK..=PUBCOMP => match body {
            [hi, lo] => Frame::Ack {
                kind,
                pkid: u16::from_be_bytes([*hi, *lo]),
            },
            _ => return Err(WireError::Unexpected("acknowledgement of the wrong length")),
        },
        _ => Frame::Other,
    };
    Ok(Some((frame, len)))
}

fn publish_frame(byte1: u8, body: &[u8]) -> Result<Frame<'_>, WireError> {
    let qos = (byte1 >> 1) & 0x03;
    let short = WireError::Unexpected("PUBLISH shorter than its topic");
    let [hi, lo, rest @ ..] = body else {
        return Err(short);
    };
    let topic_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let id_len = if qos == 0 { 0 } else { 2 };
    if rest.len() < topic_len + id_len {
        return Err(short);
    }
    let pkid = match qos {
        0 => 0,
        _ => u16::from_be_bytes([rest[topic_len], rest[topic_len + 1]]),
    };
    Ok(Frame::Publish {
        qos,
        pkid,
        payload: &rest[topic_len + id_len..],
    })
}

/// Appends PUBACK, PUBREC, PUBREL or PUBCOMP for `pkid`.
pub fn put_ack(out: &mut BytesMut, kind: u8, pkid: u16) {
    // PUBREL's fixed-header flags are 0b0010 [MQTT-3.6.1-1].
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    let [hi, lo] = pkid.to_be_bytes();
    out.put_slice(&[(kind << 4) | flags, 2, hi, lo]);
}

/// A PUBLISH encoded once, written many times with a new packet id and
/// stamp each time.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    frame: Vec<u8>,
    pkid_at: Option<usize>,
    stamp_at: usize,
}

impl PublishTemplate {
    /// Encodes a PUBLISH of `payload_len` bytes (at least [`STAMP_LEN`]).
    pub fn new(topic: &str, qos: QoS, payload_len: usize) -> Result<Self, WireError> {
        let payload_len = payload_len.max(STAMP_LEN);
        let mut publish = Publish::new(topic, vec![0u8; payload_len]);
        publish.qos_pid = QosPid::new(qos, NonZeroU16::MIN);
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(publish), &mut buf)?;
        let stamp_at = buf.len() - payload_len;
        let pkid_at = (qos != QoS::AtMostOnce).then(|| stamp_at - 2);
        Ok(PublishTemplate {
            frame: buf.to_vec(),
            pkid_at,
            stamp_at,
        })
    }

    /// Bytes one PUBLISH takes.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Appends the PUBLISH with packet id `pkid` (ignored for QoS 0) and a
    /// stamp of `key` and `sent_ns`.
    pub fn put(&self, out: &mut BytesMut, pkid: u16, key: u64, sent_ns: u64) {
        let start = out.len();
        out.extend_from_slice(&self.frame);
        let packet = &mut out[start..];
        if let Some(at) = self.pkid_at {
            packet[at..at + 2].copy_from_slice(&pkid.to_be_bytes());
        }
        let stamp = &mut packet[self.stamp_at..self.stamp_at + STAMP_LEN];
        stamp[..8].copy_from_slice(&key.to_be_bytes());
        stamp[8..].copy_from_slice(&sent_ns.to_be_bytes());
    }
}

/// The stamp key of publisher `publisher`'s message `seq`.
pub fn stamp_key(publisher: usize, seq: u64) -> u64 {
    ((publisher as u64) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))
}

/// Reads a payload's stamp: publisher index, sequence number, send time.
pub fn read_stamp(payload: &[u8]) -> Option<(usize, u64, u64)> {
    let stamp = payload.get(..STAMP_LEN)?;
    let mut stamp = stamp;
    let key = stamp.get_u64();
    let sent_ns = stamp.get_u64();
    let publisher = usize::try_from(key >> SEQ_BITS).ok()?;
    Some((publisher, key & ((1 << SEQ_BITS) - 1), sent_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_publish_decodes_with_its_packet_id_and_stamp() {
        let t = PublishTemplate::new("bench/x", QoS::AtLeastOnce, 64).expect("template");
        let mut out = BytesMut::new();
        t.put(&mut out, 7, stamp_key(3, 42), 123_456);
        t.put(&mut out, 8, stamp_key(3, 43), 123_457);
        assert_eq!(out.len(), 2 * t.len());
        match decode(&mut out, MAX_PACKET).expect("valid").expect("whole") {
            Packet::Publish(p) => {
                assert_eq!(p.pkid().map(|p| p.get()), Some(7));
                assert_eq!(p.topic, "bench/x");
                assert_eq!(p.payload.len(), 64);
                assert_eq!(read_stamp(&p.payload), Some((3, 42, 123_456)));
            }
            other => panic!("not a publish: {other:?}"),
        }
    }

    #[test]
    fn next_frame_reads_a_publish_in_place_and_waits_for_the_rest() {
        let t = PublishTemplate::new("t", QoS::ExactlyOnce, 16).expect("template");
        let mut out = BytesMut::new();
        t.put(&mut out, 9, stamp_key(0, 5), 77);
        put_ack(&mut out, PUBREL, 9);
        let (frame, len) = next_frame(&out).expect("ok").expect("whole");
        assert_eq!(len, t.len());
        let Frame::Publish { qos, pkid, payload } = frame else {
            panic!("not a publish");
        };
        assert_eq!((qos, pkid), (2, 9));
        assert_eq!(read_stamp(payload), Some((0, 5, 77)));
        assert_eq!(
            next_frame(&out[len..]).expect("ok"),
            Some((
                Frame::Ack {
                    kind: PUBREL,
                    pkid: 9
                },
                4
            ))
        );
        assert_eq!(next_frame(&out[..len - 1]).expect("ok"), None);
    }

    #[test]
    fn a_pubrel_carries_its_required_flags_mqtt_3_6_1_1() {
        let mut out = BytesMut::new();
        put_ack(&mut out, PUBREL, 1);
        let packet = decode(&mut out, MAX_PACKET).expect("valid").expect("whole");
        assert_eq!(packet, Packet::PubRel(NonZeroU16::MIN));
    }

    #[test]
    fn a_read_buffer_moves_its_bytes_forward_and_grows_for_a_big_packet() {
        let mut b = ReadBuf::new(READ_MIN);
        let spare = b.spare();
        assert_eq!(spare.len(), READ_MIN);
        spare[..3].copy_from_slice(b"abc");
        b.filled(READ_MIN);
        b.consume(1);
        assert_eq!(&b.data()[..2], b"bc");
        // Full: the unconsumed bytes move to the front, then it grows.
        assert!(b.spare().len() >= READ_MIN);
        assert_eq!(&b.data()[..2], b"bc");
        b.consume(READ_MIN);
        assert!(b.data().is_empty());
    }

    #[test]
    fn a_short_payload_has_no_stamp() {
        assert_eq!(read_stamp(&[0; 15]), None);
    }
}
