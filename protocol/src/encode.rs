//! Packets to bytes.
//!
//! [`encode`] appends one packet to a `BytesMut`, reserving its exact size
//! first so a packet is written with at most one allocation. Fields the
//! specification bounds (strings of at most 65,535 bytes, a remaining length
//! of at most 268,435,455) are checked, since the caller, not the peer, is at
//! fault when they are exceeded.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::packet::*;

/// The largest remaining length the four-byte encoding can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Appends `packet` to `buf`.
pub fn encode(packet: &Packet, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = remaining_len(packet)?;
    buf.reserve(remaining + 5);
    match packet {
        Packet::Connect(c) => connect(c, remaining, buf),
        Packet::ConnAck(c) => {
            header(buf, 0x20, remaining)?;
            buf.put_u8(u8::from(c.session_present));
            buf.put_u8(c.code as u8);
        }
        Packet::Publish(p) => publish(p, remaining, buf)?,
        Packet::PubAck(id) => ack(buf, 0x40, *id),
        Packet::PubRec(id) => ack(buf, 0x50, *id),
        Packet::PubRel(id) => ack(buf, 0x62, *id),
        Packet::PubComp(id) => ack(buf, 0x70, *id),
        Packet::Subscribe(s) => {
            header(buf, 0x82, remaining)?;
            buf.put_u16(s.pkid.get());
            for f in &s.filters {
                string(buf, f.filter.as_bytes());
                buf.put_u8(f.qos as u8);
            }
        }
        Packet::SubAck(s) => {
            header(buf, 0x90, remaining)?;
            buf.put_u16(s.pkid.get());
            for code in &s.return_codes {
                buf.put_u8(match code {
                    SubscribeReturnCode::Success(q) => *q as u8,
                    SubscribeReturnCode::Failure => 0x80,
                });
            }
        }
        Packet::Unsubscribe(u) => {
            header(buf, 0xa2, remaining)?;
            buf.put_u16(u.pkid.get());
            for f in &u.filters {
                string(buf, f.as_bytes());
            }
        }
        Packet::UnsubAck(id) => ack(buf, 0xb0, *id),
        Packet::PingReq => buf.put_slice(&[0xc0, 0]),
        Packet::PingResp => buf.put_slice(&[0xd0, 0]),
        Packet::Disconnect => buf.put_slice(&[0xe0, 0]),
    }
    Ok(())
}

/// The number of bytes [`encode`] writes for `packet`, fixed header
/// included.
pub fn encoded_len(packet: &Packet) -> Result<usize, EncodeError> {
    let remaining = remaining_len(packet)?;
    Ok(1 + remaining_len_len(remaining) + remaining)
}

/// The size of the remaining-length field for `len`.
pub fn remaining_len_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a fixed header: the first byte and the remaining length.
pub fn header(buf: &mut BytesMut, byte1: u8, mut remaining: usize) -> Result<(), EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    buf.put_u8(byte1);
    loop {
        let mut b = (remaining & 0x7f) as u8;
        remaining >>= 7;
        if remaining > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if remaining == 0 {
            return Ok(());
        }
    }
}

/// The first byte of a PUBLISH's fixed header.
pub fn publish_byte1(dup: bool, qos: QoS, retain: bool) -> u8 {
    0x30 | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain)
}

fn ack(buf: &mut BytesMut, byte1: u8, id: PacketId) {
    buf.put_slice(&[byte1, 2]);
    buf.put_u16(id.get());
}

fn string(buf: &mut BytesMut, s: &[u8]) {
    // Lengths were checked by `remaining_len`.
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

fn connect(c: &Connect, remaining: usize, buf: &mut BytesMut) {
    // `remaining` was checked against the limit by the caller.
    let _ = header(buf, 0x10, remaining);
    string(buf, c.protocol.name().as_bytes());
    buf.put_u8(c.protocol.level());
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.last_will {
        flags |= 0x04 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    string(buf, c.client_id.as_bytes());
    if let Some(w) = &c.last_will {
        string(buf, w.topic.as_bytes());
        string(buf, &w.payload);
    }
    if let Some(u) = &c.username {
        string(buf, u.as_bytes());
    }
    if let Some(p) = &c.password {
        string(buf, p);
    }
}

fn publish(p: &Publish, remaining: usize, buf: &mut BytesMut) -> Result<(), EncodeError> {
    header(buf, publish_byte1(p.dup, p.qos(), p.retain), remaining)?;
    string(buf, p.topic.as_bytes());
    if let Some(id) = p.pkid() {
        buf.put_u16(id.get());
    }
    buf.put_slice(&p.payload);
    Ok(())
}

/// Length of a length-prefixed field, checked against 65,535 bytes.
fn field(len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        Err(EncodeError::FieldTooLong(len))
    } else {
        Ok(2 + len)
    }
}

/// The remaining length of `packet`, with every field checked.
fn remaining_len(packet: &Packet) -> Result<usize, EncodeError> {
    let len = match packet {
        Packet::Connect(c) => {
            let mut n = field(c.protocol.name().len())? + 1 + 1 + 2 + field(c.client_id.len())?;
            if let Some(w) = &c.last_will {
                n += field(w.topic.len())? + field(w.payload.len())?;
            }
            if let Some(u) = &c.username {
                n += field(u.len())?;
            }
            if let Some(p) = &c.password {
                n += field(p.len())?;
            }
            n
        }
        Packet::ConnAck(_) => 2,
        Packet::Publish(p) => {
            if p.dup && p.qos() == QoS::AtMostOnce {
                return Err(EncodeError::DupOnQoS0);
            }
            let id = if p.pkid().is_some() { 2 } else { 0 };
            field(p.topic.len())? + id + p.payload.len()
        }
        Packet::PubAck(_)
        | Packet::PubRec(_)
        | Packet::PubRel(_)
        | Packet::PubComp(_)
        | Packet::UnsubAck(_) => 2,
        Packet::Subscribe(s) => {
            if s.filters.is_empty() {
                return Err(EncodeError::Empty);
            }
            let mut n = 2;
            for f in &s.filters {
                n += field(f.filter.len())? + 1;
            }
            n
        }
        Packet::SubAck(s) => {
            if s.return_codes.is_empty() {
                return Err(EncodeError::Empty);
            }
            2 + s.return_codes.len()
        }
        Packet::Unsubscribe(u) => {
            if u.filters.is_empty() {
                return Err(EncodeError::Empty);
            }
            let mut n = 2;
            for f in &u.filters {
                n += field(f.len())?;
            }
            n
        }
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
    };
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(len));
    }
    Ok(len)
}
