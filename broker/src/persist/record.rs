//! The journal's records and their bytes.
//!
//! A record is one state change (or, in a checkpoint, one piece of state):
//! a tag byte, then its fields as LEB128 varints and length-prefixed byte
//! strings. Records travel in frames ([`super::segment`]); a frame's CRC
//! covers them all, so a record is never read half-written.
//!
//! [`Op`] is what the broker submits. It differs from [`Record`] only in
//! carrying the message itself where a record names it by id: the writer
//! writes a [`Record::Msg`] the first time a message is referred to, so a
//! message fanned out to a hundred sessions is on disk once.

use std::sync::Arc;

use midge_protocol::QoS;

use crate::message::Message;

/// A state change submitted to the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `msg` (non-empty payload, non-zero id) is its topic's retained message.
    Retain(Arc<Message>),
    /// The topic has no retained message any more.
    Unretain(String),
    /// A persistent session began.
    SessionNew {
        /// Its id (its mailbox id), unique across restarts.
        sid: u64,
        /// Its client id.
        client_id: Arc<str>,
    },
    /// A persistent session ended, with everything it held.
    SessionDel {
        /// The session.
        sid: u64,
    },
    /// A subscription was added or replaced.
    Sub {
        /// The session.
        sid: u64,
        /// The topic filter.
        filter: String,
        /// The granted QoS.
        qos: QoS,
    },
    /// A subscription was removed.
    Unsub {
        /// The session.
        sid: u64,
        /// The topic filter.
        filter: String,
    },
    /// A QoS 1/2 delivery was queued for a session.
    Enqueue {
        /// The session.
        sid: u64,
        /// Its place in the session's queue.
        seq: u64,
        /// The message (non-zero id).
        msg: Arc<Message>,
        /// The delivery QoS.
        qos: QoS,
        /// RETAIN on the wire (a retained message for a new subscription).
        retain: bool,
    },
    /// A queued delivery was sent with packet id `pkid`.
    Sent {
        /// The session.
        sid: u64,
        /// The delivery.
        seq: u64,
        /// Its packet id.
        pkid: u16,
    },
    /// PUBREC arrived for a QoS 2 delivery: only PUBREL/PUBCOMP remain.
    Released {
        /// The session.
        sid: u64,
        /// The delivery.
        seq: u64,
    },
    /// A delivery is finished (acknowledged or dropped).
    Done {
        /// The session.
        sid: u64,
        /// The delivery.
        seq: u64,
    },
    /// An inbound QoS 2 packet id awaits PUBREL.
    In2Add {
        /// The session.
        sid: u64,
        /// The packet id.
        pkid: u16,
    },
    /// An inbound QoS 2 packet id was released.
    In2Del {
        /// The session.
        sid: u64,
        /// The packet id.
        pkid: u16,
    },
}

impl Op {
    /// About how much memory the op holds while it waits for the writer:
    /// the op itself, and a retained message's topic and payload (the
    /// queue may be all that keeps them; a queued delivery's message is
    /// shared with the subscribers' queues, which bound it themselves).
    pub fn backlog_bytes(&self) -> usize {
        let own = std::mem::size_of::<Op>();
        match self {
            Op::Retain(msg) => own + msg.topic().len() + msg.payload_len(),
            Op::Unretain(topic)
            | Op::Sub { filter: topic, .. }
            | Op::Unsub { filter: topic, .. } => own + topic.len(),
            Op::SessionNew { client_id, .. } => own + client_id.len(),
            _ => own,
        }
    }
}

/// Where a queued delivery is in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Not sent yet.
    Queued,
    /// Sent with this packet id, not acknowledged.
    Sent(u16),
    /// QoS 2: PUBREC received, PUBREL sent with this packet id.
    Released(u16),
}

/// One record as it is on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A message's bytes, referred to by id elsewhere.
    Msg(Arc<Message>),
    /// The retained message of `topic` is message `mid`.
    RetainSet {
        /// The topic.
        topic: String,
        /// The message id.
        mid: u64,
    },
    /// See [`Op::Unretain`].
    RetainClear {
        /// The topic.
        topic: String,
    },
    /// See [`Op::SessionNew`]. In replay it replaces any session `sid`
    /// already known: a checkpoint restates sessions this way.
    SessionNew {
        /// The session.
        sid: u64,
        /// Its client id.
        client_id: String,
    },
    /// See [`Op::SessionDel`].
    SessionDel {
        /// The session.
        sid: u64,
    },
    /// See [`Op::Sub`].
    Sub {
        /// The session.
        sid: u64,
        /// The filter.
        filter: String,
        /// The granted QoS.
        qos: QoS,
    },
    /// See [`Op::Unsub`].
    Unsub {
        /// The session.
        sid: u64,
        /// The filter.
        filter: String,
    },
    /// See [`Op::Enqueue`]; the message by id.
    Enqueue {
        /// The session.
        sid: u64,
        /// Its place in the queue.
        seq: u64,
        /// The message id.
        mid: u64,
        /// The delivery QoS.
        qos: QoS,
        /// RETAIN on the wire.
        retain: bool,
    },
    /// See [`Op::Sent`].
    Sent {
        /// The session.
        sid: u64,
        /// The delivery.
        seq: u64,
        /// The packet id.
        pkid: u16,
    },
    /// See [`Op::Released`].
    Released {
        /// The session.
        sid: u64,
        /// The delivery.
        seq: u64,
    },
    /// See [`Op::Done`].
    Done {
        /// The session.
        sid: u64,
        /// The delivery.
        seq: u64,
    },
    /// See [`Op::In2Add`].
    In2Add {
        /// The session.
        sid: u64,
        /// The packet id.
        pkid: u16,
    },
    /// See [`Op::In2Del`].
    In2Del {
        /// The session.
        sid: u64,
        /// The packet id.
        pkid: u16,
    },
    /// A checkpoint starts here; the id counters at that moment.
    CkptBegin {
        /// The checkpoint.
        id: u64,
        /// The next session id to hand out.
        next_sid: u64,
        /// The next message id to hand out.
        next_mid: u64,
    },
    /// Checkpoint `id` restated everything live: older records are obsolete.
    CkptEnd {
        /// The checkpoint.
        id: u64,
    },
}

/// A record that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed journal record")]
pub struct Malformed;

const MSG: u8 = 1;
const RETAIN_SET: u8 = 2;
const RETAIN_CLEAR: u8 = 3;
const SESSION_NEW: u8 = 4;
const SESSION_DEL: u8 = 5;
const SUB: u8 = 6;
const UNSUB: u8 = 7;
const ENQUEUE: u8 = 8;
const SENT: u8 = 9;
const RELEASED: u8 = 10;
const DONE: u8 = 11;
const IN2_ADD: u8 = 12;
const IN2_DEL: u8 = 13;
const CKPT_BEGIN: u8 = 14;
const CKPT_END: u8 = 15;

fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_var(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn qos_bits(qos: QoS, retain: bool) -> u8 {
    let q = match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    };
    q | (u8::from(retain) << 2)
}

fn bits_qos(b: u8) -> Result<(QoS, bool), Malformed> {
    let qos = match b & 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => return Err(Malformed),
    };
    Ok((qos, b & 4 != 0))
}

impl Record {
    /// Appends the record's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Msg(m) => {
                out.push(MSG);
                put_var(out, m.id());
                out.push(qos_bits(m.qos(), m.retain()));
                put_bytes(out, m.topic().as_bytes());
                put_bytes(out, &m.payload());
            }
            Record::RetainSet { topic, mid } => {
                out.push(RETAIN_SET);
                put_bytes(out, topic.as_bytes());
                put_var(out, *mid);
            }
            Record::RetainClear { topic } => {
                out.push(RETAIN_CLEAR);
                put_bytes(out, topic.as_bytes());
            }
            Record::SessionNew { sid, client_id } => {
                out.push(SESSION_NEW);
                put_var(out, *sid);
                put_bytes(out, client_id.as_bytes());
            }
            Record::SessionDel { sid } => id_rec(out, SESSION_DEL, *sid, &[]),
            Record::Sub { sid, filter, qos } => {
                out.push(SUB);
                put_var(out, *sid);
                out.push(qos_bits(*qos, false));
                put_bytes(out, filter.as_bytes());
            }
            Record::Unsub { sid, filter } => {
                out.push(UNSUB);
                put_var(out, *sid);
                put_bytes(out, filter.as_bytes());
            }
            Record::Enqueue {
                sid,
                seq,
                mid,
                qos,
                retain,
            } => {
                id_rec(out, ENQUEUE, *sid, &[*seq, *mid]);
                out.push(qos_bits(*qos, *retain));
            }
            Record::Sent { sid, seq, pkid } => id_rec(out, SENT, *sid, &[*seq, u64::from(*pkid)]),
            Record::Released { sid, seq } => id_rec(out, RELEASED, *sid, &[*seq]),
            Record::Done { sid, seq } => id_rec(out, DONE, *sid, &[*seq]),
            Record::In2Add { sid, pkid } => id_rec(out, IN2_ADD, *sid, &[u64::from(*pkid)]),
            Record::In2Del { sid, pkid } => id_rec(out, IN2_DEL, *sid, &[u64::from(*pkid)]),
            Record::CkptBegin {
                id,
                next_sid,
                next_mid,
            } => id_rec(out, CKPT_BEGIN, *id, &[*next_sid, *next_mid]),
            Record::CkptEnd { id } => id_rec(out, CKPT_END, *id, &[]),
        }
    }

    /// Decodes every record of a frame's payload.
    pub fn decode_all(mut buf: &[u8], out: &mut Vec<Record>) -> Result<(), Malformed> {
        while !buf.is_empty() {
            out.push(Record::decode(&mut buf)?);
        }
        Ok(())
    }

    /// Decodes one record from the front of `buf`.
    pub fn decode(buf: &mut &[u8]) -> Result<Record, Malformed> {
        let mut r = Reader(buf);
        let rec = match r.u8()? {
            MSG => {
                let mid = r.var()?;
                let (qos, retain) = bits_qos(r.u8()?)?;
                let topic = r.string()?;
                let payload = r.bytes()?;
                let msg =
                    Message::stored(&topic, payload, qos, retain, mid).map_err(|_| Malformed)?;
                Record::Msg(msg)
            }
            RETAIN_SET => Record::RetainSet {
                topic: r.string()?,
                mid: r.var()?,
            },
            RETAIN_CLEAR => Record::RetainClear { topic: r.string()? },
            SESSION_NEW => Record::SessionNew {
                sid: r.var()?,
                client_id: r.string()?,
            },
            SESSION_DEL => Record::SessionDel { sid: r.var()? },
            SUB => {
                let sid = r.var()?;
                let (qos, _) = bits_qos(r.u8()?)?;
                Record::Sub {
                    sid,
                    qos,
                    filter: r.string()?,
                }
            }
            UNSUB => Record::Unsub {
                sid: r.var()?,
                filter: r.string()?,
            },
            ENQUEUE => {
                let (sid, seq, mid) = (r.var()?, r.var()?, r.var()?);
                let (qos, retain) = bits_qos(r.u8()?)?;
                Record::Enqueue {
                    sid,
                    seq,
                    mid,
                    qos,
                    retain,
                }
            }
            SENT => Record::Sent {
                sid: r.var()?,
                seq: r.var()?,
                pkid: r.u16()?,
            },
            RELEASED => Record::Released {
                sid: r.var()?,
                seq: r.var()?,
            },
            DONE => Record::Done {
                sid: r.var()?,
                seq: r.var()?,
            },
            IN2_ADD => Record::In2Add {
                sid: r.var()?,
                pkid: r.u16()?,
            },
            IN2_DEL => Record::In2Del {
                sid: r.var()?,
                pkid: r.u16()?,
            },
            CKPT_BEGIN => Record::CkptBegin {
                id: r.var()?,
                next_sid: r.var()?,
                next_mid: r.var()?,
            },
            CKPT_END => Record::CkptEnd { id: r.var()? },
            _ => return Err(Malformed),
        };
        *buf = r.0;
        Ok(rec)
    }
}

fn id_rec(out: &mut Vec<u8>, tag: u8, id: u64, rest: &[u64]) {
    out.push(tag);
    put_var(out, id);
    for v in rest {
        put_var(out, *v);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.0.split_first().ok_or(Malformed)?;
        self.0 = rest;
        Ok(b)
    }

    fn var(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        u16::try_from(self.var()?).map_err(|_| Malformed)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(self.var()?).map_err(|_| Malformed)?;
        if len > self.0.len() {
            return Err(Malformed);
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(b)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_kind_survives_a_round_trip() {
        let msg = Message::stored("a/b", b"payload", QoS::ExactlyOnce, true, 77).expect("msg");
        let all = vec![
            Record::Msg(msg),
            Record::RetainSet {
                topic: "a/b".into(),
                mid: 77,
            },
            Record::RetainClear { topic: "x".into() },
            Record::SessionNew {
                sid: 300,
                client_id: "c-ü".into(),
            },
            Record::SessionDel { sid: 1 },
            Record::Sub {
                sid: 2,
                filter: "a/#".into(),
                qos: QoS::AtLeastOnce,
            },
            Record::Unsub {
                sid: 2,
                filter: "a/#".into(),
            },
            Record::Enqueue {
                sid: 2,
                seq: u64::MAX,
                mid: 77,
                qos: QoS::ExactlyOnce,
                retain: true,
            },
            Record::Sent {
                sid: 2,
                seq: 9,
                pkid: 65535,
            },
            Record::Released { sid: 2, seq: 9 },
            Record::Done { sid: 2, seq: 9 },
            Record::In2Add { sid: 2, pkid: 1 },
            Record::In2Del { sid: 2, pkid: 1 },
            Record::CkptBegin {
                id: 4,
                next_sid: 5,
                next_mid: 6,
            },
            Record::CkptEnd { id: 4 },
        ];
        let mut buf = Vec::new();
        for r in &all {
            r.encode(&mut buf);
        }
        let mut back = Vec::new();
        Record::decode_all(&buf, &mut back).expect("decodes");
        assert_eq!(back, all);
        // Every proper prefix fails to decode as a whole.
        for cut in 0..buf.len() {
            let mut out = Vec::new();
            let whole = Record::decode_all(&buf[..cut], &mut out).is_ok();
            assert!(!whole || out.len() < all.len(), "prefix {cut}");
        }
    }
}
