//! [`Model`]: the durable state as the journal's records describe it.
//!
//! Replay builds a model from the records on disk; the writer keeps one up
//! to date as it writes, to know which messages are already on disk and to
//! restate everything live in a checkpoint. It holds messages as shared
//! [`Message`]s, so it costs pointers, not payload copies.
//!
//! Messages are counted by reference: a queued delivery or a retained topic
//! holds one. A message's record may come before or after the records that
//! refer to it (a checkpoint writes what it finds, in its own order), so
//! references are resolved only when the state is read back
//! ([`Model::sessions`], [`Model::retained`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use midge_protocol::QoS;

use super::record::{EntryState, Record};
use crate::message::Message;

/// A message and how many places refer to it.
#[derive(Debug, Default)]
pub struct MsgSlot {
    /// The message, once its record was seen.
    pub msg: Option<Arc<Message>>,
    /// Deliveries and retained topics referring to it.
    pub refs: u32,
}

/// One queued delivery of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The message id.
    pub mid: u64,
    /// The delivery QoS.
    pub qos: QoS,
    /// RETAIN on the wire.
    pub retain: bool,
    /// Sent or not, and how far.
    pub state: EntryState,
}

/// A persistent session.
#[derive(Debug, Default)]
pub struct SessionModel {
    /// Its client id.
    pub client_id: String,
    /// Filter to granted QoS.
    pub subs: BTreeMap<String, QoS>,
    /// Inbound QoS 2 ids awaiting PUBREL.
    pub in2: BTreeSet<u16>,
    /// Deliveries by queue position.
    pub entries: BTreeMap<u64, Entry>,
}

/// A session as restored: its messages resolved.
#[derive(Debug)]
pub struct RestoredSession {
    /// The session id.
    pub sid: u64,
    /// The client id.
    pub client_id: String,
    /// Filter to granted QoS.
    pub subs: Vec<(String, QoS)>,
    /// Inbound QoS 2 ids awaiting PUBREL.
    pub in2: Vec<u16>,
    /// Deliveries in queue order: position, message, QoS, RETAIN, state.
    pub entries: Vec<(u64, Arc<Message>, QoS, bool, EntryState)>,
}

/// The durable state; see the module docs.
#[derive(Debug, Default)]
pub struct Model {
    /// Persistent sessions by id.
    pub sessions: HashMap<u64, SessionModel>,
    /// Retained message ids by topic.
    pub retained: HashMap<String, u64>,
    /// Messages by id.
    pub msgs: HashMap<u64, MsgSlot>,
    /// Above every session id seen.
    pub next_sid: u64,
    /// Above every message id seen.
    pub next_mid: u64,
    /// Records about sessions not (or no longer) known.
    pub orphans: u64,
}

impl Model {
    /// Forgets everything but the id counters (a checkpoint restates it).
    pub fn reset(&mut self) {
        self.sessions.clear();
        self.retained.clear();
        self.msgs.clear();
    }

    /// Whether message `mid` is held with its bytes.
    pub fn has_msg(&self, mid: u64) -> bool {
        self.msgs.get(&mid).is_some_and(|s| s.msg.is_some())
    }

    fn add_ref(&mut self, mid: u64) {
        self.msgs.entry(mid).or_default().refs += 1;
    }

    fn release(&mut self, mid: u64) {
        if let Some(slot) = self.msgs.get_mut(&mid) {
            slot.refs = slot.refs.saturating_sub(1);
            if slot.refs == 0 {
                self.msgs.remove(&mid);
            }
        }
    }

    fn drop_session(&mut self, sid: u64) {
        if let Some(s) = self.sessions.remove(&sid) {
            for e in s.entries.values() {
                self.release(e.mid);
            }
        }
    }

    fn session(&mut self, sid: u64) -> Option<&mut SessionModel> {
        let found = self.sessions.get_mut(&sid);
        if found.is_none() {
            self.orphans += 1;
        }
        found
    }

    /// Applies one record.
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Msg(m) => {
                self.next_mid = self.next_mid.max(m.id() + 1);
                self.msgs.entry(m.id()).or_default().msg = Some(m.clone());
            }
            Record::RetainSet { topic, mid } => {
                self.add_ref(*mid);
                if let Some(old) = self.retained.insert(topic.clone(), *mid) {
                    self.release(old);
                }
            }
            Record::RetainClear { topic } => {
                if let Some(old) = self.retained.remove(topic) {
                    self.release(old);
                }
            }
            Record::SessionNew { sid, client_id } => {
                self.next_sid = self.next_sid.max(sid + 1);
                self.drop_session(*sid);
                let s = SessionModel {
                    client_id: client_id.clone(),
                    ..SessionModel::default()
                };
                self.sessions.insert(*sid, s);
            }
            Record::SessionDel { sid } => self.drop_session(*sid),
            Record::Sub { sid, filter, qos } => {
                if let Some(s) = self.session(*sid) {
                    s.subs.insert(filter.clone(), *qos);
                }
            }
            Record::Unsub { sid, filter } => {
                if let Some(s) = self.session(*sid) {
                    s.subs.remove(filter);
                }
            }
            Record::Enqueue {
                sid,
                seq,
                mid,
                qos,
                retain,
            } => {
                let entry = Entry {
                    mid: *mid,
                    qos: *qos,
                    retain: *retain,
                    state: EntryState::Queued,
                };
                let Some(s) = self.session(*sid) else { return };
                let old = s.entries.insert(*seq, entry);
                self.add_ref(*mid);
                if let Some(old) = old {
                    self.release(old.mid);
                }
            }
            Record::Sent { sid, seq, pkid } => {
                self.set_state(*sid, *seq, EntryState::Sent(*pkid));
            }
            Record::Released { sid, seq } => {
                let pkid = self
                    .sessions
                    .get(sid)
                    .and_then(|s| s.entries.get(seq))
                    .map(|e| match e.state {
                        EntryState::Sent(p) | EntryState::Released(p) => p,
                        EntryState::Queued => 0,
                    });
                if let Some(p) = pkid.filter(|p| *p != 0) {
                    self.set_state(*sid, *seq, EntryState::Released(p));
                }
            }
            Record::Done { sid, seq } => {
                let removed = self.session(*sid).and_then(|s| s.entries.remove(seq));
                if let Some(e) = removed {
                    self.release(e.mid);
                }
            }
            Record::In2Add { sid, pkid } => {
                if let Some(s) = self.session(*sid) {
                    s.in2.insert(*pkid);
                }
            }
            Record::In2Del { sid, pkid } => {
                if let Some(s) = self.session(*sid) {
                    s.in2.remove(pkid);
                }
            }
            Record::CkptBegin {
                next_sid, next_mid, ..
            } => {
                self.next_sid = self.next_sid.max(*next_sid);
                self.next_mid = self.next_mid.max(*next_mid);
            }
            Record::CkptEnd { .. } => {}
        }
    }

    fn set_state(&mut self, sid: u64, seq: u64, state: EntryState) {
        if let Some(e) = self.session(sid).and_then(|s| s.entries.get_mut(&seq)) {
            e.state = state;
        }
    }

    /// The retained messages whose bytes are known.
    pub fn retained(&self) -> Vec<Arc<Message>> {
        let msg = |mid: &u64| self.msgs.get(mid).and_then(|s| s.msg.clone());
        self.retained.values().filter_map(msg).collect()
    }

    /// Retained topics whose message bytes were lost.
    pub fn retained_lost(&self) -> usize {
        self.retained
            .values()
            .filter(|m| !self.has_msg(**m))
            .count()
    }

    /// The sessions, with their deliveries resolved to messages; also the
    /// number of deliveries dropped because their message was lost.
    pub fn sessions(&self) -> (Vec<RestoredSession>, usize) {
        let mut lost = 0;
        let mut out = Vec::with_capacity(self.sessions.len());
        for (sid, s) in &self.sessions {
            let mut entries = Vec::with_capacity(s.entries.len());
            for (seq, e) in &s.entries {
                match self.msgs.get(&e.mid).and_then(|m| m.msg.clone()) {
                    Some(msg) => entries.push((*seq, msg, e.qos, e.retain, e.state)),
                    None => lost += 1,
                }
            }
            out.push(RestoredSession {
                sid: *sid,
                client_id: s.client_id.clone(),
                subs: s.subs.iter().map(|(f, q)| (f.clone(), *q)).collect(),
                in2: s.in2.iter().copied().collect(),
                entries,
            });
        }
        out.sort_by_key(|s| s.sid);
        (out, lost)
    }
}

/// Restates a model as records, a bounded piece at a time, while the model
/// keeps changing: what is gone by the time its turn comes is skipped,
/// what changed is written as it is then. Records written between the
/// pieces (ordinary commits) keep everything else current.
#[derive(Debug)]
pub struct Restatement {
    mids: Vec<u64>,
    topics: Vec<String>,
    sids: Vec<u64>,
    /// A session part-way through: its id and the last position written.
    open: Option<(u64, u64)>,
}

impl Restatement {
    /// Takes the keys to restate from `model`.
    pub fn new(model: &Model) -> Restatement {
        let mut sids: Vec<u64> = model.sessions.keys().copied().collect();
        sids.sort_unstable_by(|a, b| b.cmp(a));
        Restatement {
            mids: model.msgs.keys().copied().collect(),
            topics: model.retained.keys().cloned().collect(),
            sids,
            open: None,
        }
    }

    /// Appends records to `out` until about `budget` bytes were added;
    /// true once everything is restated.
    pub fn step(&mut self, model: &Model, budget: usize, out: &mut Vec<u8>) -> bool {
        let limit = out.len() + budget;
        while out.len() < limit {
            if let Some(mid) = self.mids.pop() {
                if let Some(msg) = model.msgs.get(&mid).and_then(|s| s.msg.clone()) {
                    Record::Msg(msg).encode(out);
                }
            } else if let Some(topic) = self.topics.pop() {
                if let Some(mid) = model.retained.get(&topic) {
                    Record::RetainSet { topic, mid: *mid }.encode(out);
                }
            } else if let Some((sid, after)) = self.open.take() {
                self.session_entries(model, sid, after, limit, out);
            } else if let Some(sid) = self.sids.pop() {
                let Some(s) = model.sessions.get(&sid) else {
                    continue;
                };
                let client_id = s.client_id.clone();
                Record::SessionNew { sid, client_id }.encode(out);
                for (filter, qos) in &s.subs {
                    let (filter, qos) = (filter.clone(), *qos);
                    Record::Sub { sid, filter, qos }.encode(out);
                }
                for pkid in &s.in2 {
                    Record::In2Add { sid, pkid: *pkid }.encode(out);
                }
                self.session_entries(model, sid, 0, limit, out);
            } else {
                return true;
            }
        }
        false
    }

    fn session_entries(
        &mut self,
        model: &Model,
        sid: u64,
        after: u64,
        limit: usize,
        out: &mut Vec<u8>,
    ) {
        let Some(s) = model.sessions.get(&sid) else {
            return;
        };
        let from = std::ops::Bound::Excluded(after);
        let mut range = s.entries.range((from, std::ops::Bound::Unbounded));
        for (&seq, e) in range.by_ref() {
            Record::Enqueue {
                sid,
                seq,
                mid: e.mid,
                qos: e.qos,
                retain: e.retain,
            }
            .encode(out);
            match e.state {
                EntryState::Queued => {}
                EntryState::Sent(pkid) => Record::Sent { sid, seq, pkid }.encode(out),
                EntryState::Released(pkid) => {
                    Record::Sent { sid, seq, pkid }.encode(out);
                    Record::Released { sid, seq }.encode(out);
                }
            }
            if out.len() >= limit {
                self.open = Some((sid, seq));
                return;
            }
        }
    }
}
