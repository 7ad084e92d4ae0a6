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

/// Appends `packet` to `buf`. On error `buf` is left as it was.
pub fn encode(packet: &Packet, buf: &mut BytesMut) -> Result<(), EncodeError> {
    // One dispatch: each packet type checks its fields, reserves its exact
    // size and writes itself, in a function of its own so that the compiler
    // inlines the small writes of each.
    match packet {
        Packet::Connect(c) => connect(c, buf)?,
        Packet::ConnAck(c) => {
            buf.put_slice(&[0x20, 2, u8::from(c.session_present), c.code as u8]);
        }
        Packet::Publish(p) => publish(p, buf)?,
        Packet::PubAck(id) => ack(buf, 0x40, *id),
        Packet::PubRec(id) => ack(buf, 0x50, *id),
        Packet::PubRel(id) => ack(buf, 0x62, *id),
        Packet::PubComp(id) => ack(buf, 0x70, *id),
        Packet::Subscribe(s) => subscribe(s, buf)?,
        Packet::SubAck(s) => suback(s, buf)?,
        Packet::Unsubscribe(u) => unsubscribe(u, buf)?,
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
pub fn header(buf: &mut BytesMut, byte1: u8, remaining: usize) -> Result<(), EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    put_header(buf, byte1, remaining);
    Ok(())
}

/// Reserves room for a whole packet of `remaining` checked bytes and writes
/// its fixed header, so the rest of the packet is written without growing
/// the buffer.
#[inline(always)]
fn start(buf: &mut BytesMut, byte1: u8, remaining: usize) {
    buf.reserve(1 + remaining_len_len(remaining) + remaining);
    put_header(buf, byte1, remaining);
}

/// [`header`] for a remaining length already checked against the maximum.
#[inline(always)]
fn put_header(buf: &mut BytesMut, byte1: u8, remaining: usize) {
    // Packets of up to 16 KiB, most of them, take one fixed-size write.
    if remaining < 0x80 {
        buf.put_slice(&[byte1, remaining as u8]);
    } else if remaining < 0x4000 {
        let low = (remaining & 0x7f) as u8 | 0x80;
        buf.put_slice(&[byte1, low, (remaining >> 7) as u8]);
    } else {
        put_long_header(buf, byte1, remaining);
    }
}

fn put_long_header(buf: &mut BytesMut, byte1: u8, mut remaining: usize) {
    buf.put_u8(byte1);
    loop {
        let b = (remaining & 0x7f) as u8;
        remaining >>= 7;
        if remaining == 0 {
            buf.put_u8(b);
            return;
        }
        buf.put_u8(b | 0x80);
    }
}

/// The first byte of a PUBLISH's fixed header.
pub fn publish_byte1(dup: bool, qos: QoS, retain: bool) -> u8 {
    0x30 | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain)
}

fn ack(buf: &mut BytesMut, byte1: u8, id: PacketId) {
    let [hi, lo] = id.get().to_be_bytes();
    buf.put_slice(&[byte1, 2, hi, lo]);
}

fn string(buf: &mut BytesMut, s: &[u8]) {
    // Lengths were checked by `remaining_len`.
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

fn connect(c: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = connect_len(c)?;
    start(buf, 0x10, remaining);
    string(buf, c.protocol.name().as_bytes());
    buf.put_u8(c.protocol.level() | if c.bridge { 0x80 } else { 0 });
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
    Ok(())
}

fn subscribe(s: &Subscribe, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = subscribe_len(s)?;
    start(buf, 0x82, remaining);
    buf.put_u16(s.pkid.get());
    for f in &s.filters {
        string(buf, f.filter.as_bytes());
        buf.put_u8(f.qos as u8);
    }
    Ok(())
}

fn suback(s: &SubAck, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = suback_len(s)?;
    start(buf, 0x90, remaining);
    buf.put_u16(s.pkid.get());
    for code in &s.return_codes {
        buf.put_u8(match code {
            SubscribeReturnCode::Success(q) => *q as u8,
            SubscribeReturnCode::Failure => 0x80,
        });
    }
    Ok(())
}

fn unsubscribe(u: &Unsubscribe, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = unsubscribe_len(u)?;
    start(buf, 0xa2, remaining);
    buf.put_u16(u.pkid.get());
    for f in &u.filters {
        string(buf, f.as_bytes());
    }
    Ok(())
}

fn publish(p: &Publish, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = publish_len(p)?;
    let byte1 = publish_byte1(p.dup, p.qos(), p.retain);
    let topic = p.topic.as_bytes();
    // Lengths were checked by `publish_len`.
    let [hi, lo] = (topic.len() as u16).to_be_bytes();
    if remaining < 0x80 {
        // The hottest packet: fixed header and topic length in one write.
        buf.reserve(2 + remaining);
        buf.put_slice(&[byte1, remaining as u8, hi, lo]);
    } else {
        start(buf, byte1, remaining);
        buf.put_slice(&[hi, lo]);
    }
    buf.put_slice(topic);
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

/// The remaining length of `packet`, with every field checked. String
/// lengths are taken from the bytes: `ByteStr`'s `&str` view would check
/// UTF-8 on every call.
fn remaining_len(packet: &Packet) -> Result<usize, EncodeError> {
    match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::ConnAck(_) => Ok(2),
        Packet::Publish(p) => publish_len(p),
        Packet::PubAck(_)
        | Packet::PubRec(_)
        | Packet::PubRel(_)
        | Packet::PubComp(_)
        | Packet::UnsubAck(_) => Ok(2),
        Packet::Subscribe(s) => subscribe_len(s),
        Packet::SubAck(s) => suback_len(s),
        Packet::Unsubscribe(u) => unsubscribe_len(u),
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => Ok(0),
    }
}

/// `len` if it fits in the remaining-length field.
fn checked(len: usize) -> Result<usize, EncodeError> {
    if len > MAX_REMAINING_LENGTH {
        Err(EncodeError::PacketTooLarge(len))
    } else {
        Ok(len)
    }
}

fn connect_len(c: &Connect) -> Result<usize, EncodeError> {
    let mut n = field(c.protocol.name().len())? + 1 + 1 + 2 + field(c.client_id.as_bytes().len())?;
    if let Some(w) = &c.last_will {
        n += field(w.topic.as_bytes().len())? + field(w.payload.len())?;
    }
    if let Some(u) = &c.username {
        n += field(u.as_bytes().len())?;
    }
    if let Some(p) = &c.password {
        n += field(p.len())?;
    }
    // Six fields of at most 65,537 bytes: always within the maximum.
    Ok(n)
}

fn publish_len(p: &Publish) -> Result<usize, EncodeError> {
    if p.dup && p.qos() == QoS::AtMostOnce {
        return Err(EncodeError::DupOnQoS0);
    }
    let id = if p.pkid().is_some() { 2 } else { 0 };
    checked(field(p.topic.as_bytes().len())? + id + p.payload.len())
}

fn subscribe_len(s: &Subscribe) -> Result<usize, EncodeError> {
    if s.filters.is_empty() {
        return Err(EncodeError::Empty);
    }
    let mut n = 2;
    for f in &s.filters {
        n += field(f.filter.as_bytes().len())? + 1;
    }
    checked(n)
}

fn suback_len(s: &SubAck) -> Result<usize, EncodeError> {
    if s.return_codes.is_empty() {
        return Err(EncodeError::Empty);
    }
    checked(2 + s.return_codes.len())
}

fn unsubscribe_len(u: &Unsubscribe) -> Result<usize, EncodeError> {
    if u.filters.is_empty() {
        return Err(EncodeError::Empty);
    }
    let mut n = 2;
    for f in &u.filters {
        n += field(f.as_bytes().len())?;
    }
    checked(n)
}
