//! The client's MQTT session state, without sockets or clocks.
//!
//! [`MqttState`] owns what must survive a reconnect: the packet ids in use,
//! outgoing QoS 1 and 2 publishes awaiting their acknowledgements (in the
//! order they were first sent), SUBSCRIBE and UNSUBSCRIBE requests awaiting
//! SUBACK and UNSUBACK, and the ids of incoming QoS 2 messages already
//! delivered but not yet released (exactly-once receive). It also runs the
//! keep-alive timer with times passed in.
//!
//! Events go in through `handle_*` and actions come out through `poll_*`,
//! as in quinn-proto: the connection task feeds it packets and the time, and
//! writes whatever [`MqttState::poll_transmit`] yields. That keeps the QoS
//! flows unit-testable with explicit instants.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use midge_protocol::{
    ByteStr, Packet, PacketId, Publish, QoS, QosPid, SubAck, Subscribe, SubscribeFilter,
    SubscribeReturnCode, Unsubscribe,
};
use tokio::sync::oneshot;

use crate::error::{ConnectionError, PublishError, SubscribeError, UnsubscribeError};

/// Where the result of a publish goes.
pub(crate) type PublishReply = oneshot::Sender<Result<(), PublishError>>;

/// Where the result of an unsubscribe goes.
pub(crate) type UnsubscribeReply = oneshot::Sender<Result<(), UnsubscribeError>>;

/// Where the SUBACK codes of a user's subscribe go.
pub(crate) type SubscribeReply = oneshot::Sender<Result<Vec<SubscribeReturnCode>, SubscribeError>>;

/// A message the application asked to publish, before it has a packet id.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingMessage {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// Who waits for a SUBACK.
#[derive(Debug)]
pub(crate) enum SubscribeWaiter {
    /// A `subscribe` call, for subscription `sid`.
    Request { sid: u64, reply: SubscribeReply },
    /// The re-subscription after a reconnect without a session.
    Restore,
}

/// What the state machine tells the connection task.
#[derive(Debug)]
pub(crate) enum StateEvent {
    /// An application message to hand to the subscriptions.
    Deliver(Publish),
    /// A SUBACK for the SUBSCRIBE with these filters.
    SubAck {
        filters: Vec<SubscribeFilter>,
        codes: Vec<SubscribeReturnCode>,
        waiter: SubscribeWaiter,
    },
}

/// Which acknowledgement an outgoing QoS 1/2 publish waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// QoS 1, PUBLISH sent: waits for PUBACK.
    Qos1Sent,
    /// QoS 2, PUBLISH sent: waits for PUBREC.
    Qos2Sent,
    /// QoS 2, PUBREL sent: waits for PUBCOMP.
    Released,
}

#[derive(Debug)]
struct Inflight {
    publish: Publish,
    stage: Stage,
    reply: Option<PublishReply>,
}

#[derive(Debug)]
struct PendingSubscribe {
    packet: Subscribe,
    waiter: SubscribeWaiter,
}

#[derive(Debug)]
struct PendingUnsubscribe {
    packet: Unsubscribe,
    reply: Option<UnsubscribeReply>,
}

/// The session state of one client, across connections.
#[derive(Debug)]
pub(crate) struct MqttState {
    max_inflight: usize,
    keep_alive: Option<Duration>,
    ping_timeout: Duration,
    next_pkid: u16,
    pkids_in_use: HashSet<u16>,
    /// Outgoing QoS 1/2 publishes in the order they were first sent.
    inflight: VecDeque<Inflight>,
    subscribes: VecDeque<PendingSubscribe>,
    unsubscribes: VecDeque<PendingUnsubscribe>,
    /// Incoming QoS 2 ids delivered and awaiting PUBREL [MQTT-4.3.3-2].
    incoming_qos2: HashSet<u16>,
    transmit: VecDeque<Packet>,
    events: VecDeque<StateEvent>,
    last_outgoing: Instant,
    ping_sent: Option<Instant>,
}

impl MqttState {
    /// A fresh session. `keep_alive` of zero turns pings off.
    pub fn new(
        max_inflight: usize,
        keep_alive: Duration,
        ping_timeout: Duration,
        now: Instant,
    ) -> Self {
        MqttState {
            max_inflight: max_inflight.max(1),
            keep_alive: (!keep_alive.is_zero()).then_some(keep_alive),
            ping_timeout,
            next_pkid: 0,
            pkids_in_use: HashSet::new(),
            inflight: VecDeque::new(),
            subscribes: VecDeque::new(),
            unsubscribes: VecDeque::new(),
            incoming_qos2: HashSet::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            last_outgoing: now,
            ping_sent: None,
        }
    }

    /// Whether the window of unacknowledged QoS 1/2 publishes is full.
    pub fn inflight_full(&self) -> bool {
        self.inflight.len() >= self.max_inflight
    }

    /// Outgoing publishes not yet acknowledged.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether nothing the client started is waiting for the broker.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_empty() && self.subscribes.is_empty() && self.unsubscribes.is_empty()
    }

    fn next_pkid(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.pkids_in_use.contains(&self.next_pkid) {
                self.pkids_in_use.insert(self.next_pkid);
                return PacketId::new(self.next_pkid);
            }
        }
        None
    }

    fn release_pkid(&mut self, pkid: PacketId) {
        self.pkids_in_use.remove(&pkid.get());
    }

    /// Starts a publish. QoS 0 completes as soon as it is queued; QoS 1 and 2
    /// complete on PUBACK / PUBCOMP. The caller checks
    /// [`inflight_full`](Self::inflight_full) first.
    pub fn publish(&mut self, msg: OutgoingMessage, reply: Option<PublishReply>) {
        let pkid = match msg.qos {
            QoS::AtMostOnce => None,
            _ => match self.next_pkid() {
                Some(pkid) => Some(pkid),
                None => {
                    // Unreachable with a window below 65,535; fail loudly rather than reuse an id.
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(PublishError::QueueFull));
                    }
                    return;
                }
            },
        };
        let publish = Publish {
            dup: false,
            qos_pid: match pkid {
                Some(pkid) => QosPid::new(msg.qos, pkid),
                None => QosPid::AtMostOnce,
            },
            retain: msg.retain,
            topic: msg.topic,
            payload: msg.payload,
        };
        self.transmit.push_back(Packet::Publish(publish.clone()));
        let stage = match msg.qos {
            QoS::AtMostOnce => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
                return;
            }
            QoS::AtLeastOnce => Stage::Qos1Sent,
            QoS::ExactlyOnce => Stage::Qos2Sent,
        };
        self.inflight.push_back(Inflight {
            publish,
            stage,
            reply,
        });
    }

    /// Starts a SUBSCRIBE; its SUBACK comes back as [`StateEvent::SubAck`].
    pub fn subscribe(&mut self, filters: Vec<SubscribeFilter>, waiter: SubscribeWaiter) {
        let Some(pkid) = self.next_pkid() else {
            if let SubscribeWaiter::Request { reply, .. } = waiter {
                let _ = reply.send(Err(SubscribeError::Closed));
            }
            return;
        };
        let packet = Subscribe { pkid, filters };
        self.transmit.push_back(Packet::Subscribe(packet.clone()));
        self.subscribes
            .push_back(PendingSubscribe { packet, waiter });
    }

    /// Starts an UNSUBSCRIBE; `reply` gets the result on UNSUBACK.
    pub fn unsubscribe(&mut self, filters: Vec<ByteStr>, reply: Option<UnsubscribeReply>) {
        let Some(pkid) = self.next_pkid() else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(UnsubscribeError::Closed));
            }
            return;
        };
        let packet = Unsubscribe { pkid, filters };
        self.transmit.push_back(Packet::Unsubscribe(packet.clone()));
        self.unsubscribes
            .push_back(PendingUnsubscribe { packet, reply });
    }

    /// Handles a packet from the broker.
    pub fn handle_incoming(&mut self, packet: Packet) -> Result<(), ConnectionError> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::PubAck(pkid) => self.on_puback(pkid),
            Packet::PubRec(pkid) => self.on_pubrec(pkid),
            Packet::PubRel(pkid) => {
                // PUBCOMP even for an unknown id: the broker may be retrying
                // a PUBREL whose PUBCOMP was lost [MQTT-4.3.3].
                self.incoming_qos2.remove(&pkid.get());
                self.transmit.push_back(Packet::PubComp(pkid));
            }
            Packet::PubComp(pkid) => self.on_pubcomp(pkid),
            Packet::SubAck(suback) => return self.on_suback(suback),
            Packet::UnsubAck(pkid) => self.on_unsuback(pkid),
            Packet::PingResp => self.ping_sent = None,
            other => return Err(ConnectionError::UnexpectedPacket(other.packet_type())),
        }
        Ok(())
    }

    fn on_publish(&mut self, publish: Publish) {
        match publish.qos_pid {
            QosPid::AtMostOnce => self.events.push_back(StateEvent::Deliver(publish)),
            QosPid::AtLeastOnce(pkid) => {
                self.events.push_back(StateEvent::Deliver(publish));
                self.transmit.push_back(Packet::PubAck(pkid));
            }
            QosPid::ExactlyOnce(pkid) => {
                // Deliver on first receipt, remember the id until PUBREL:
                // a re-sent PUBLISH with the same id is acknowledged again,
                // never delivered twice [MQTT-4.3.3-2].
                if self.incoming_qos2.insert(pkid.get()) {
                    self.events.push_back(StateEvent::Deliver(publish));
                }
                self.transmit.push_back(Packet::PubRec(pkid));
            }
        }
    }

    fn position(&self, pkid: PacketId, stage: Stage) -> Option<usize> {
        self.inflight
            .iter()
            .position(|i| i.publish.pkid() == Some(pkid) && i.stage == stage)
    }

    fn complete(&mut self, index: usize) {
        if let Some(done) = self.inflight.remove(index) {
            if let Some(pkid) = done.publish.pkid() {
                self.release_pkid(pkid);
            }
            if let Some(reply) = done.reply {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn on_puback(&mut self, pkid: PacketId) {
        match self.position(pkid, Stage::Qos1Sent) {
            Some(index) => self.complete(index),
            None => tracing::debug!(pkid, "PUBACK for an unknown packet id ignored"),
        }
    }

    fn on_pubrec(&mut self, pkid: PacketId) {
        if let Some(index) = self.position(pkid, Stage::Qos2Sent) {
            self.inflight[index].stage = Stage::Released;
            self.transmit.push_back(Packet::PubRel(pkid));
        } else if self.position(pkid, Stage::Released).is_some() {
            // The broker did not see our PUBREL; send it again.
            self.transmit.push_back(Packet::PubRel(pkid));
        } else {
            tracing::debug!(pkid, "PUBREC for an unknown packet id ignored");
        }
    }

    fn on_pubcomp(&mut self, pkid: PacketId) {
        match self.position(pkid, Stage::Released) {
            Some(index) => self.complete(index),
            None => tracing::debug!(pkid, "PUBCOMP for an unknown packet id ignored"),
        }
    }

    fn on_suback(&mut self, suback: SubAck) -> Result<(), ConnectionError> {
        let Some(index) = self
            .subscribes
            .iter()
            .position(|s| s.packet.pkid == suback.pkid)
        else {
            tracing::debug!(
                pkid = suback.pkid,
                "SUBACK for an unknown packet id ignored"
            );
            return Ok(());
        };
        let expected = self.subscribes[index].packet.filters.len();
        if expected != suback.return_codes.len() {
            return Err(ConnectionError::SubAckMismatch {
                expected,
                got: suback.return_codes.len(),
            });
        }
        if let Some(done) = self.subscribes.remove(index) {
            self.release_pkid(done.packet.pkid);
            self.events.push_back(StateEvent::SubAck {
                filters: done.packet.filters,
                codes: suback.return_codes,
                waiter: done.waiter,
            });
        }
        Ok(())
    }

    fn on_unsuback(&mut self, pkid: PacketId) {
        let Some(index) = self.unsubscribes.iter().position(|u| u.packet.pkid == pkid) else {
            tracing::debug!(pkid, "UNSUBACK for an unknown packet id ignored");
            return;
        };
        if let Some(done) = self.unsubscribes.remove(index) {
            self.release_pkid(pkid);
            if let Some(reply) = done.reply {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Checks the keep-alive timer: queues a PINGREQ when nothing was sent
    /// for a keep-alive period, and fails when a PINGREQ went unanswered for
    /// the ping timeout.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnectionError> {
        let Some(keep_alive) = self.keep_alive else {
            return Ok(());
        };
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.ping_timeout {
                return Err(ConnectionError::PingTimeout(self.ping_timeout));
            }
        } else if now >= self.last_outgoing + keep_alive {
            self.transmit.push_back(Packet::PingReq);
            self.ping_sent = Some(now);
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let keep_alive = self.keep_alive?;
        Some(match self.ping_sent {
            Some(sent) => sent + self.ping_timeout,
            None => self.last_outgoing + keep_alive,
        })
    }

    /// The next packet to write; `now` is when it is written.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        let packet = self.transmit.pop_front()?;
        self.last_outgoing = now;
        Some(packet)
    }

    /// The next event for the connection task.
    pub fn poll_event(&mut self) -> Option<StateEvent> {
        self.events.pop_front()
    }

    /// A new connection is up (CONNACK accepted). Forgets what was queued for
    /// the old one and, when the broker kept no session, the QoS 2 ids it
    /// would have released. Call [`resend_unacked`](Self::resend_unacked)
    /// after queueing any re-subscription.
    pub fn on_connected(&mut self, session_present: bool, now: Instant) {
        self.transmit.clear();
        self.ping_sent = None;
        self.last_outgoing = now;
        if !session_present {
            self.incoming_qos2.clear();
        }
    }

    /// Queues everything unacknowledged again, in the original order:
    /// pending SUBSCRIBE and UNSUBSCRIBE, then each publish as PUBLISH with
    /// DUP set or, past PUBREC, as PUBREL [MQTT-4.4.0-1].
    pub fn resend_unacked(&mut self) {
        for sub in &self.subscribes {
            self.transmit
                .push_back(Packet::Subscribe(sub.packet.clone()));
        }
        for unsub in &self.unsubscribes {
            self.transmit
                .push_back(Packet::Unsubscribe(unsub.packet.clone()));
        }
        for inflight in &mut self.inflight {
            match inflight.stage {
                Stage::Qos1Sent | Stage::Qos2Sent => {
                    inflight.publish.dup = true;
                    self.transmit
                        .push_back(Packet::Publish(inflight.publish.clone()));
                }
                Stage::Released => {
                    if let Some(pkid) = inflight.publish.pkid() {
                        self.transmit.push_back(Packet::PubRel(pkid));
                    }
                }
            }
        }
    }

    /// The client is closing for good: fails every waiter with "connection
    /// lost" (or "closed" when `closed` is set) and forgets everything.
    pub fn fail_all(&mut self, closed: bool) {
        for inflight in self.inflight.drain(..) {
            if let Some(reply) = inflight.reply {
                let _ = reply.send(Err(if closed {
                    PublishError::Closed
                } else {
                    PublishError::ConnectionLost
                }));
            }
        }
        for sub in self.subscribes.drain(..) {
            if let SubscribeWaiter::Request { reply, .. } = sub.waiter {
                let _ = reply.send(Err(if closed {
                    SubscribeError::Closed
                } else {
                    SubscribeError::ConnectionLost
                }));
            }
        }
        for unsub in self.unsubscribes.drain(..) {
            if let Some(reply) = unsub.reply {
                let _ = reply.send(Err(if closed {
                    UnsubscribeError::Closed
                } else {
                    UnsubscribeError::ConnectionLost
                }));
            }
        }
        self.pkids_in_use.clear();
        self.transmit.clear();
        self.events.clear();
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
