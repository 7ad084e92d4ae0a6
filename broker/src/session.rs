//! [`Session`]: the server side of one MQTT session, without I/O.
//!
//! The session is a state machine fed with packets and times and polled for
//! packets to send; it touches neither sockets nor clocks, so its rules are
//! tested with explicit `now`s:
//!
//! - [`Session::handle_incoming`] takes a packet the client sent. It answers
//!   what needs no broker state (PUBACK, PUBREC, PUBCOMP, PUBREL, PINGRESP)
//!   itself and hands the rest back as an [`Event`] for the connection to
//!   route (PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT).
//! - [`Session::offer`] takes a message for the client; at most
//!   `max_inflight` QoS 1/2 messages are unacknowledged at once, the rest wait
//!   in order behind them.
//! - [`Session::poll_transmit`] yields what to send next, in order.
//! - [`Session::handle_timeout`] / [`Session::next_deadline`]: keep alive.
//!
//! Inbound QoS 2 is exactly-once: a PUBLISH is routed when it first arrives
//! and its packet id remembered until PUBREL, so a re-sent PUBLISH is
//! acknowledged again but not routed twice [MQTT-4.3.3-2].
//!
//! What outlives a connection of a persistent session is [`SessionState`]:
//! subscriptions, unacknowledged outgoing messages, waiting messages and the
//! inbound QoS 2 ids. [`Session::resume`] re-sends the unacknowledged
//! messages first, with DUP set and in their original order [MQTT-4.4.0-1].
//!
//! **Durability.** With persistence on ([`Session::set_journal`]) a
//! persistent session records each change of that state as an [`Op`]
//! ([`Session::take_ops`]; the connection journals them), and packets that
//! promise a change is on disk are *held*: PUBACK and PUBREC, PUBCOMP,
//! SUBACK and UNSUBACK, PUBREL, and a QoS 2 PUBLISH (its packet id must
//! survive a crash, or the client could get it twice). A held packet waits
//! for a journal ticket: first unknown (held by the turn's changes), then
//! [`Session::bind`] names it, and [`Session::handle_durable`] releases it.
//! Packets leave in order, so everything queued behind a held packet waits
//! too; MQTT's acknowledgement order is kept [MQTT-4.6.0-2].

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use midge_protocol::{ByteStr, Packet, PacketId, Publish, QoS, SubAck, SubscribeReturnCode};

use crate::mailbox::Delivery;
use crate::persist::Op;

mod types;

pub use types::{Event, OutState, Outgoing, ProtocolError, SessionLimits, SessionState, Transmit};

/// Most waiting messages moved into the transmit queue at once.
const FILL_BATCH: usize = 64;
/// The ticket of a held packet whose journal ticket is not known yet.
const UNBOUND: u64 = u64::MAX;

/// The server side of one MQTT session; see the module docs.
#[derive(Debug)]
pub struct Session {
    client_id: Arc<str>,
    clean: bool,
    keep_alive: u16,
    last_rx: Instant,
    state: SessionState,
    limits: SessionLimits,
    /// Packets to send, each with the journal ticket it waits for.
    transmit: VecDeque<(u64, Transmit)>,
    /// Whether acknowledgements may wait for the journal.
    gated: bool,
    /// This session's journal id, for a persistent session.
    sid: Option<NonZeroU64>,
    /// Every ticket up to this is durable.
    durable: u64,
    /// Held packets not yet bound to a ticket.
    unbound: usize,
    /// Changes to journal.
    ops: Vec<Op>,
}

impl Session {
    /// A new session for a client that connected at `now`.
    pub fn new(
        client_id: Arc<str>,
        clean: bool,
        keep_alive: u16,
        limits: SessionLimits,
        now: Instant,
    ) -> Session {
        Session {
            client_id,
            clean,
            keep_alive,
            last_rx: now,
            state: SessionState::default(),
            limits,
            transmit: VecDeque::new(),
            gated: false,
            sid: None,
            durable: 0,
            unbound: 0,
            ops: Vec::new(),
        }
    }

    /// Turns durability on: acknowledgements wait for the journal, and a
    /// persistent session (`sid`, its journal id) records its changes.
    /// Packets already queued (a resumption's re-sends) wait for
    /// `ticket`: what earlier connections journaled must be durable before
    /// they go out again.
    pub fn set_journal(&mut self, sid: Option<u64>, ticket: u64) {
        self.gated = true;
        // Journal ids start at 1 (0 is no session): the niche keeps the
        // field at 8 bytes in every idle connection.
        debug_assert_ne!(sid, Some(0), "journal ids start at 1");
        self.sid = sid.and_then(NonZeroU64::new);
        for (after, _) in &mut self.transmit {
            *after = ticket;
        }
    }

    /// Moves the changes to journal into `out`.
    pub fn take_ops(&mut self, out: &mut Vec<Op>) {
        out.append(&mut self.ops);
    }

    /// Whether changes wait to be journaled.
    pub fn has_ops(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Held packets queued since the last call wait for `ticket` (0: for
    /// nothing). Call after journaling this turn's changes.
    pub fn bind(&mut self, ticket: u64) {
        for (after, _) in self.transmit.iter_mut().rev() {
            if self.unbound == 0 {
                break;
            }
            if *after == UNBOUND {
                *after = ticket;
                self.unbound -= 1;
            }
        }
    }

    /// The journal made everything up to `ticket` durable.
    pub fn handle_durable(&mut self, ticket: u64) {
        self.durable = self.durable.max(ticket);
    }

    /// The ticket the next packet waits for, if it waits.
    pub fn waiting_for(&self) -> Option<u64> {
        match self.transmit.front() {
            Some((after, _)) if *after > self.durable => Some(*after),
            _ => None,
        }
    }

    /// Records a change of a persistent session's state.
    fn record(&mut self, op: impl FnOnce(u64) -> Op) {
        if let Some(sid) = self.sid {
            self.ops.push(op(sid.get()));
        }
    }

    /// Continues a persistent session on a new connection made at `now`:
    /// unacknowledged PUBLISHes are queued again with DUP set and PUBRELs
    /// again, in their original order [MQTT-4.4.0-1], then waiting messages.
    pub fn resume(
        client_id: Arc<str>,
        keep_alive: u16,
        state: SessionState,
        limits: SessionLimits,
        now: Instant,
    ) -> Session {
        let mut session = Session::new(client_id, false, keep_alive, limits, now);
        session.state = state;
        for out in &session.state.inflight {
            session.transmit.push_back((
                0,
                match out.state {
                    OutState::AwaitPubAck | OutState::AwaitPubRec => Transmit::Publish {
                        delivery: out.delivery.clone(),
                        pkid: Some(out.pkid),
                        dup: true,
                    },
                    OutState::AwaitPubComp => Transmit::Packet(Packet::PubRel(out.pkid)),
                },
            ));
        }
        session
    }

    /// The client id.
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    /// Whether the session ends with the connection (CleanSession=1).
    pub fn is_clean(&self) -> bool {
        self.clean
    }

    /// The subscriptions: filter and granted QoS.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, QoS)> + '_ {
        self.state
            .subscriptions
            .iter()
            .map(|(f, q)| (f.as_str(), *q))
    }

    /// The number of subscriptions the session holds.
    pub fn subscription_count(&self) -> usize {
        self.state.subscriptions.len()
    }

    /// Whether the session holds a subscription to exactly `filter`.
    pub fn is_subscribed(&self, filter: &str) -> bool {
        self.state.subscriptions.contains_key(filter)
    }

    /// The number of unacknowledged outgoing messages.
    pub fn inflight_len(&self) -> usize {
        self.state.inflight.len()
    }

    /// The number of messages waiting behind the in-flight window.
    pub fn pending_len(&self) -> usize {
        self.state.pending.len()
    }

    /// Takes a packet the client sent at `now`.
    pub fn handle_incoming(
        &mut self,
        packet: Packet,
        now: Instant,
    ) -> Result<Option<Event>, ProtocolError> {
        self.last_rx = now;
        match packet {
            Packet::Publish(p) => Ok(self.on_publish(p)),
            Packet::PubAck(id) => {
                self.ack(id, OutState::AwaitPubAck);
                Ok(None)
            }
            Packet::PubRec(id) => {
                self.on_pubrec(id);
                Ok(None)
            }
            Packet::PubRel(id) => {
                // Released: a PUBLISH with this id is new again. PUBCOMP is
                // sent even for an unknown id so the client can finish.
                if self.state.incoming_qos2.remove(&id) && self.sid.is_some() {
                    self.record(|sid| Op::In2Del {
                        sid,
                        pkid: id.get(),
                    });
                    self.send_held(Packet::PubComp(id));
                } else {
                    self.send(Packet::PubComp(id));
                }
                Ok(None)
            }
            Packet::PubComp(id) => {
                self.ack(id, OutState::AwaitPubComp);
                Ok(None)
            }
            Packet::Subscribe(s) => Ok(Some(Event::Subscribe(s))),
            Packet::Unsubscribe(u) => Ok(Some(Event::Unsubscribe(u))),
            Packet::PingReq => {
                self.send(Packet::PingResp);
                Ok(None)
            }
            Packet::Disconnect => Ok(Some(Event::Disconnect)),
            Packet::Connect(_) => Err(ProtocolError::SecondConnect),
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => Err(ProtocolError::ServerPacket(other.packet_type())),
        }
    }

    fn on_publish(&mut self, p: Publish) -> Option<Event> {
        match p.pkid() {
            None => Some(Event::Publish(p)),
            Some(id) if p.qos() == QoS::AtLeastOnce => {
                self.send_held(Packet::PubAck(id));
                Some(Event::Publish(p))
            }
            Some(id) => {
                self.send_held(Packet::PubRec(id));
                // A re-sent PUBLISH before PUBREL is acknowledged, not
                // routed again [MQTT-4.3.3-2].
                let new = self.state.incoming_qos2.insert(id);
                if new {
                    self.record(|sid| Op::In2Add {
                        sid,
                        pkid: id.get(),
                    });
                }
                new.then_some(Event::Publish(p))
            }
        }
    }

    fn on_pubrec(&mut self, id: PacketId) {
        let found = self.state.inflight.iter_mut().find(|o| o.pkid == id);
        match found {
            Some(out) if out.state == OutState::AwaitPubAck => {
                // PUBREC for a QoS 1 message: nothing sensible to do.
            }
            Some(out) => {
                out.state = OutState::AwaitPubComp;
                let seq = out.delivery.seq;
                if seq != 0 && self.sid.is_some() {
                    // PUBREL forbids sending the PUBLISH again: that must
                    // survive a crash before PUBREL leaves.
                    self.record(|sid| Op::Released { sid, seq });
                    self.send_held(Packet::PubRel(id));
                } else {
                    self.send(Packet::PubRel(id));
                }
            }
            // Unknown id: release it anyway so the client can finish.
            None => self.send(Packet::PubRel(id)),
        }
    }

    /// Completes an outgoing handshake if `id` is in state `expected`.
    fn ack(&mut self, id: PacketId, expected: OutState) {
        let pos = self.state.inflight.iter().position(|o| o.pkid == id);
        if let Some(pos) = pos {
            if self.state.inflight[pos].state == expected {
                if let Some(out) = self.state.inflight.remove(pos) {
                    self.done(&out.delivery);
                }
            }
        }
    }

    /// Checks the keep alive at `now` [MQTT-3.1.2-24].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        match self.next_deadline() {
            Some(deadline) if now >= deadline => {
                Err(ProtocolError::KeepAliveTimeout(self.keep_alive))
            }
            _ => Ok(()),
        }
    }

    /// When [`Session::handle_timeout`] must next be called: 1.5 times the
    /// keep alive after the last packet; `None` when keep alive is off.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.keep_alive > 0)
            .then(|| self.last_rx + Duration::from_millis(u64::from(self.keep_alive) * 1500))
    }

    /// The next thing to send, if any. Waiting messages move into the
    /// transmit queue a batch at a time, so it stays short.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmit.is_empty() {
            self.fill_window();
        }
        match self.transmit.front() {
            Some((after, _)) if *after <= self.durable => self.transmit.pop_front().map(|(_, t)| t),
            _ => None,
        }
    }

    /// Whether offering a delivery of `qos` now would send it at once rather
    /// than queue it: nothing is waiting and, for QoS 1/2, the window has room.
    pub fn would_send_now(&self, qos: QoS) -> bool {
        self.state.pending.is_empty()
            && (qos == QoS::AtMostOnce || self.state.inflight.len() < self.limits.max_inflight)
    }

    /// Free places in the in-flight window.
    pub fn window_room(&self) -> usize {
        self.limits
            .max_inflight
            .saturating_sub(self.state.inflight.len())
    }

    /// Takes a message for the client. It is sent at once if it can be,
    /// else it waits in order; false if it was dropped because
    /// `max_pending` messages already wait.
    pub fn offer(&mut self, delivery: Delivery) -> bool {
        if self.would_send_now(delivery.qos) {
            self.send_delivery(delivery);
            true
        } else if self.state.pending.len() < self.limits.max_pending {
            self.state.pending.push_back(delivery);
            true
        } else {
            self.done(&delivery);
            false
        }
    }

    /// Drops a delivery taken from the mailbox without sending it (the
    /// client may not receive its topic).
    pub fn discard(&mut self, delivery: &Delivery) {
        self.done(delivery);
    }

    /// A journaled delivery is finished.
    fn done(&mut self, delivery: &Delivery) {
        let seq = delivery.seq;
        if seq != 0 {
            self.record(|sid| Op::Done { sid, seq });
        }
    }

    /// Queues a message behind any waiting ones, to be sent as the window
    /// and the transmit queue allow (retained messages for a new
    /// subscription arrive in bursts this way); false if it was dropped
    /// because `max_pending` messages already wait.
    /// A delivery with a non-zero `seq` (from the session's mailbox) is
    /// journaled.
    pub fn enqueue(&mut self, mut delivery: Delivery) -> bool {
        if self.state.pending.len() >= self.limits.max_pending {
            return false;
        }
        if delivery.msg.id() == 0 || delivery.qos == QoS::AtMostOnce {
            delivery.seq = 0;
        }
        if delivery.seq != 0 {
            let (seq, msg, qos, retain) = (
                delivery.seq,
                delivery.msg.clone(),
                delivery.qos,
                delivery.retain,
            );
            self.record(|sid| Op::Enqueue {
                sid,
                seq,
                msg,
                qos,
                retain,
            });
        }
        self.state.pending.push_back(delivery);
        true
    }

    /// The number of packets queued to send.
    pub fn transmit_len(&self) -> usize {
        self.transmit.len()
    }

    /// Moves up to [`FILL_BATCH`] waiting messages into the window while it
    /// has room. QoS 0 messages take no room but still wait their turn,
    /// keeping the order [MQTT-4.6.0-6].
    fn fill_window(&mut self) {
        for _ in 0..FILL_BATCH {
            let Some(front) = self.state.pending.front() else {
                return;
            };
            if front.qos != QoS::AtMostOnce && self.state.inflight.len() >= self.limits.max_inflight
            {
                return;
            }
            if let Some(delivery) = self.state.pending.pop_front() {
                self.send_delivery(delivery);
            }
        }
    }

    fn send_delivery(&mut self, delivery: Delivery) {
        let (pkid, state) = match delivery.qos {
            QoS::AtMostOnce => (None, None),
            QoS::AtLeastOnce => (Some(self.next_pkid()), Some(OutState::AwaitPubAck)),
            QoS::ExactlyOnce => (Some(self.next_pkid()), Some(OutState::AwaitPubRec)),
        };
        let mut held = false;
        if let (Some(pkid), Some(state)) = (pkid, state) {
            let seq = delivery.seq;
            if seq != 0 && self.sid.is_some() {
                self.record(|sid| Op::Sent {
                    sid,
                    seq,
                    pkid: pkid.get(),
                });
                // A QoS 2 message must not reach the client under a packet
                // id a crash could forget; QoS 1 may arrive twice anyway.
                held = delivery.qos == QoS::ExactlyOnce;
            }
            self.state.inflight.push_back(Outgoing {
                pkid,
                delivery: delivery.clone(),
                state,
            });
        }
        let t = Transmit::Publish {
            delivery,
            pkid,
            dup: false,
        };
        if held {
            self.hold(t);
        } else {
            self.transmit.push_back((0, t));
        }
    }

    /// The next packet id not in flight. The window is at most 65,535 wide,
    /// so a free id exists whenever there is room.
    fn next_pkid(&mut self) -> PacketId {
        loop {
            self.state.last_pkid = self.state.last_pkid.wrapping_add(1);
            if let Some(id) = PacketId::new(self.state.last_pkid) {
                if !self.state.inflight.iter().any(|o| o.pkid == id) {
                    return id;
                }
            }
        }
    }

    /// Records the outcome of a SUBSCRIBE, one entry per filter in order,
    /// and queues the SUBACK [MQTT-3.8.4-1] [MQTT-3.9.3-1].
    pub fn subscribed(&mut self, pkid: PacketId, results: &[(ByteStr, SubscribeReturnCode)]) {
        for (filter, code) in results {
            if let SubscribeReturnCode::Success(qos) = code {
                self.state.subscriptions.insert(filter.to_string(), *qos);
                let (filter, qos) = (filter.to_string(), *qos);
                self.record(|sid| Op::Sub { sid, filter, qos });
            }
        }
        let return_codes = results.iter().map(|(_, c)| *c).collect();
        self.send_durable(Packet::SubAck(SubAck { pkid, return_codes }));
    }

    /// Forgets the filters of an UNSUBSCRIBE and queues the UNSUBACK, which
    /// is sent even when nothing matched [MQTT-3.10.4-5].
    pub fn unsubscribed(&mut self, pkid: PacketId, filters: &[ByteStr]) {
        for filter in filters {
            self.state.subscriptions.remove(filter.as_str());
            let filter = filter.to_string();
            self.record(|sid| Op::Unsub { sid, filter });
        }
        self.send_durable(Packet::UnsubAck(pkid));
    }

    /// Ends the connection's part: what a persistent session keeps. Packets
    /// not yet sent are dropped; unacknowledged messages are re-sent on
    /// resumption.
    pub fn into_state(self) -> SessionState {
        self.state
    }

    fn send(&mut self, packet: Packet) {
        self.transmit.push_back((0, Transmit::Packet(packet)));
    }

    /// Queues a packet that waits for this turn's journal changes.
    fn send_held(&mut self, packet: Packet) {
        self.hold(Transmit::Packet(packet));
    }

    /// Held for a persistent session's changes, else sent in order.
    fn send_durable(&mut self, packet: Packet) {
        match self.sid {
            Some(_) => self.send_held(packet),
            None => self.send(packet),
        }
    }

    fn hold(&mut self, t: Transmit) {
        if self.gated {
            self.unbound += 1;
            self.transmit.push_back((UNBOUND, t));
        } else {
            self.transmit.push_back((0, t));
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "session_props.rs"]
mod props;
