//! Property tests of [`Session`]: random sequences of what a client, the
//! router and the journal do to a session, each step checked against a
//! model of what MQTT 3.1.1 and the session's docs promise.
//!
//! The model knows every delivery by a number in its payload (a *tag*,
//! given in offer order) and every acknowledgement the session owes, with
//! the journal ticket it must wait for. A case ends by settling: journal
//! everything, answer everything correctly, and check that nothing was lost
//! that the API did not report dropped.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use midge_protocol::{Connect, QosPid, Subscribe, SubscribeFilter, Unsubscribe};
use proptest::prelude::*;

use super::*;
use crate::message::Message;

/// One thing that happens to the session.
#[derive(Clone, Debug)]
enum Step {
    /// The client publishes (ids 1..=4: repeats are common).
    Publish {
        qos: u8,
        id: u16,
        dup: bool,
    },
    /// The client sends an acknowledgement for an arbitrary id.
    Ack {
        kind: u8,
        id: u16,
    },
    /// SUBSCRIBE, and the connection grants it or not.
    Subscribe {
        id: u16,
        filter: u8,
        qos: u8,
        granted: bool,
    },
    Unsubscribe {
        id: u16,
        filter: u8,
    },
    PingReq,
    Disconnect,
    SecondConnect,
    /// CONNACK, SUBACK, UNSUBACK or PINGRESP from the client.
    ServerPacket(u8),
    /// A delivery from the mailbox (`offer`) or a retained one (`enqueue`).
    Deliver {
        qos: u8,
        journaled: bool,
        enqueue: bool,
    },
    /// Polls up to this many transmits (0: until none).
    Poll(u8),
    /// The client answers the oldest PUBLISH or PUBREL it owes an answer,
    /// correctly or with the wrong packet type.
    Answer {
        right: bool,
    },
    Advance(u16),
    Timeout,
    /// The connection journals the turn's changes and binds held packets.
    Journal {
        zero_when_empty: bool,
    },
    /// The journal makes the latest ticket (or an earlier one) durable.
    Durable {
        all: bool,
    },
    /// The connection drops: a persistent session resumes, a clean one
    /// starts over.
    Reconnect,
    /// The packet id counter has gone round since the oldest message in
    /// flight was sent (65,535 messages later, in a long-lived session).
    Wrap,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 1u16..5, any::<bool>())
            .prop_map(|(qos, id, dup)| Step::Publish { qos, id, dup }),
        3 => (0u8..4, 1u16..7).prop_map(|(kind, id)| Step::Ack { kind, id }),
        1 => (1u16..5, 0u8..3, 0u8..3, any::<bool>())
            .prop_map(|(id, filter, qos, granted)| Step::Subscribe { id, filter, qos, granted }),
        1 => (1u16..5, 0u8..3).prop_map(|(id, filter)| Step::Unsubscribe { id, filter }),
        1 => Just(Step::PingReq),
        1 => prop_oneof![
            Just(Step::Disconnect),
            Just(Step::SecondConnect),
            (0u8..4).prop_map(Step::ServerPacket),
            Just(Step::Timeout),
        ],
        6 => (0u8..3, any::<bool>(), any::<bool>())
            .prop_map(|(qos, journaled, enqueue)| Step::Deliver { qos, journaled, enqueue }),
        5 => (0u8..4).prop_map(Step::Poll),
        4 => prop_oneof![3 => Just(true), 1 => Just(false)].prop_map(|right| Step::Answer { right }),
        1 => (0u16..20_000).prop_map(Step::Advance),
        3 => any::<bool>().prop_map(|zero_when_empty| Step::Journal { zero_when_empty }),
        3 => any::<bool>().prop_map(|all| Step::Durable { all }),
        1 => Just(Step::Reconnect),
        1 => Just(Step::Wrap),
    ]
}

/// The journal ticket a queued packet waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ticket {
    Free,
    Unbound,
    Bound(u64),
}

/// What the model knows of one delivery.
#[derive(Clone, Debug)]
struct Tag {
    qos: QoS,
    /// The connection numbers it was sent on.
    sent_on: Vec<u32>,
    /// Removed from the in-flight window by an acknowledgement.
    completed: bool,
    /// May legitimately never arrive: a QoS 0 message queued when its
    /// connection ended, or anything a clean session had when it ended.
    may_be_lost: bool,
    /// In flight when its connection ended: may come again, with DUP.
    resendable: bool,
    /// A held QoS 2 PUBLISH: the ticket it waits for.
    held: Ticket,
}

struct Harness {
    s: Session,
    now: Instant,
    last_rx: Instant,
    clean: bool,
    keep_alive: u16,
    limits: SessionLimits,
    gated: bool,
    sid: Option<u64>,
    conn: u32,
    tags: Vec<Tag>,
    /// Tags in the window after the last step.
    inflight: BTreeSet<u32>,
    /// The highest tag sent for the first time.
    last_first: Option<u32>,
    /// Control packets owed, in order, with their tickets.
    expected: VecDeque<(Packet, Ticket)>,
    /// Inbound QoS 2 ids routed and not yet released [MQTT-4.3.3-2].
    in2: BTreeSet<u16>,
    /// What the client owes an answer: (pkid, qos 1 or 2, PUBREL received).
    owed: VecDeque<(PacketId, QoS, bool)>,
    issued: u64,
    durable: u64,
    seq: u64,
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

const FILTERS: [&str; 3] = ["a/#", "+/b", "c"];

fn tag_of(delivery: &Delivery) -> u32 {
    let p = delivery.msg.payload();
    u32::from_be_bytes([p[0], p[1], p[2], p[3]])
}

impl Harness {
    fn new(clean: bool, keep_alive: u16, limits: SessionLimits, gated: bool, start: u16) -> Self {
        let now = Instant::now();
        let mut h = Harness {
            s: Session::new("c".into(), clean, keep_alive, limits, now),
            now,
            last_rx: now,
            clean,
            keep_alive,
            limits,
            gated,
            sid: (gated && !clean).then_some(9),
            conn: 0,
            tags: Vec::new(),
            inflight: BTreeSet::new(),
            last_first: None,
            expected: VecDeque::new(),
            in2: BTreeSet::new(),
            owed: VecDeque::new(),
            issued: 0,
            durable: 0,
            seq: 0,
        };
        h.s.state.last_pkid = start;
        if gated {
            h.s.set_journal(h.sid, h.issued);
        }
        h
    }

    /// Checks the invariants that hold between any two steps, and notes
    /// which deliveries entered or left the window.
    fn sync(&mut self) {
        let st = &self.s.state;
        assert!(
            st.inflight.len() <= self.limits.max_inflight,
            "window overrun"
        );
        assert!(st.pending.len() <= self.limits.max_pending, "queue overrun");
        assert_eq!(
            self.s.window_room(),
            self.limits.max_inflight - st.inflight.len()
        );
        // Packet ids in flight are unique (and non-zero by type) [MQTT-2.3.1-2].
        let ids: BTreeSet<_> = st.inflight.iter().map(|o| o.pkid).collect();
        assert_eq!(ids.len(), st.inflight.len(), "packet id reused in flight");
        let now: BTreeSet<u32> = st.inflight.iter().map(|o| tag_of(&o.delivery)).collect();
        for out in &st.inflight {
            let tag = tag_of(&out.delivery);
            assert_ne!(
                out.delivery.qos,
                QoS::AtMostOnce,
                "QoS 0 never waits for an ack"
            );
            if !self.inflight.contains(&tag) {
                let journaled = out.delivery.seq != 0 && self.sid.is_some();
                if journaled && out.delivery.qos == QoS::ExactlyOnce {
                    self.tags[tag as usize].held = Ticket::Unbound;
                }
            }
        }
        for gone in self.inflight.difference(&now) {
            self.tags[*gone as usize].completed = true;
        }
        self.inflight = now;
        if self.sid.is_none() {
            assert!(
                !self.s.has_ops(),
                "a session without a journal id records nothing"
            );
        }
    }

    fn owe(&mut self, packet: Packet, held: bool) {
        let ticket = if held && self.gated {
            Ticket::Unbound
        } else {
            Ticket::Free
        };
        self.expected.push_back((packet, ticket));
    }

    fn incoming(&mut self, packet: Packet) -> Result<Option<Event>, ProtocolError> {
        self.last_rx = self.now;
        self.s.handle_incoming(packet, self.now)
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Publish { qos: q, id, dup } => self.publish(q, id, dup),
            Step::Ack { kind, id } => self.ack(kind, pid(id)),
            Step::Subscribe {
                id,
                filter,
                qos: q,
                granted,
            } => {
                let filter = FILTERS[usize::from(filter)];
                let sub = Subscribe {
                    pkid: pid(id),
                    filters: vec![SubscribeFilter {
                        filter: filter.into(),
                        qos: qos(q),
                    }],
                };
                let ev = self.incoming(Packet::Subscribe(sub.clone()));
                assert_eq!(ev, Ok(Some(Event::Subscribe(sub))));
                let code = if granted {
                    SubscribeReturnCode::Success(qos(q))
                } else {
                    SubscribeReturnCode::Failure
                };
                self.s.subscribed(pid(id), &[(filter.into(), code)]);
                let return_codes = vec![code];
                let pkid = pid(id);
                // SUBACK answers every SUBSCRIBE [MQTT-3.8.4-1].
                self.owe(
                    Packet::SubAck(SubAck { pkid, return_codes }),
                    self.sid.is_some(),
                );
                if granted {
                    assert!(self.s.is_subscribed(filter));
                }
            }
            Step::Unsubscribe { id, filter } => {
                let filter = FILTERS[usize::from(filter)];
                let unsub = Unsubscribe {
                    pkid: pid(id),
                    filters: vec![filter.into()],
                };
                let ev = self.incoming(Packet::Unsubscribe(unsub.clone()));
                assert_eq!(ev, Ok(Some(Event::Unsubscribe(unsub))));
                self.s.unsubscribed(pid(id), &[filter.into()]);
                assert!(!self.s.is_subscribed(filter));
                // UNSUBACK even when nothing matched [MQTT-3.10.4-5].
                self.owe(Packet::UnsubAck(pid(id)), self.sid.is_some());
            }
            Step::PingReq => {
                assert_eq!(self.incoming(Packet::PingReq), Ok(None));
                self.owe(Packet::PingResp, false);
            }
            Step::Disconnect => {
                assert_eq!(
                    self.incoming(Packet::Disconnect),
                    Ok(Some(Event::Disconnect))
                );
                self.reconnect();
            }
            Step::SecondConnect => {
                let ev = self.incoming(Packet::Connect(Connect::new("c")));
                assert_eq!(ev, Err(ProtocolError::SecondConnect));
                self.reconnect();
            }
            Step::ServerPacket(kind) => {
                let packet = match kind {
                    0 => Packet::ConnAck(midge_protocol::ConnAck {
                        session_present: false,
                        code: midge_protocol::ConnectReturnCode::Accepted,
                    }),
                    1 => Packet::SubAck(SubAck {
                        pkid: pid(1),
                        return_codes: vec![SubscribeReturnCode::Failure],
                    }),
                    2 => Packet::UnsubAck(pid(1)),
                    _ => Packet::PingResp,
                };
                let ty = packet.packet_type();
                assert_eq!(self.incoming(packet), Err(ProtocolError::ServerPacket(ty)));
                self.reconnect();
            }
            Step::Deliver {
                qos: q,
                journaled,
                enqueue,
            } => self.deliver(qos(q), journaled, enqueue),
            Step::Poll(n) => self.poll(if n == 0 { usize::MAX } else { usize::from(n) }),
            Step::Answer { right } => self.answer(right),
            Step::Advance(ms) => self.now += Duration::from_millis(u64::from(ms)),
            Step::Timeout => {
                let limit = Duration::from_millis(u64::from(self.keep_alive) * 1500);
                let late = self.keep_alive > 0 && self.now >= self.last_rx + limit;
                // Closed after 1.5 keep alives of silence [MQTT-3.1.2-24].
                match self.s.handle_timeout(self.now) {
                    Ok(()) => assert!(!late, "keep alive not enforced"),
                    Err(e) => {
                        assert!(late, "timed out early");
                        assert_eq!(e, ProtocolError::KeepAliveTimeout(self.keep_alive));
                        self.reconnect();
                    }
                }
            }
            Step::Journal { zero_when_empty } => self.journal(zero_when_empty),
            Step::Durable { all } => {
                let t = if all { self.issued } else { self.issued / 2 };
                self.durable = self.durable.max(t);
                self.s.handle_durable(t);
            }
            Step::Reconnect => self.reconnect(),
            Step::Wrap => {
                let oldest = self.s.state.inflight.iter().map(|o| o.pkid.get()).min();
                if let Some(id) = oldest {
                    self.s.state.last_pkid = id - 1;
                }
            }
        }
        self.sync();
    }

    fn publish(&mut self, q: u8, id: u16, dup: bool) {
        let qos_pid = match q {
            0 => QosPid::AtMostOnce,
            1 => QosPid::AtLeastOnce(pid(id)),
            _ => QosPid::ExactlyOnce(pid(id)),
        };
        let p = Publish {
            dup: dup && q > 0,
            qos_pid,
            retain: false,
            topic: "t".into(),
            payload: Bytes::from_static(b"x"),
        };
        let ev = self.incoming(Packet::Publish(p.clone()));
        let routed = ev == Ok(Some(Event::Publish(p)));
        match q {
            0 => assert!(routed),
            1 => {
                assert!(routed);
                self.owe(Packet::PubAck(pid(id)), true);
            }
            _ => {
                // Routed once until its PUBREL [MQTT-4.3.3-2], PUBREC each time.
                let new = self.in2.insert(id);
                assert_eq!(routed, new, "QoS 2 PUBLISH {id} routed={routed}, new={new}");
                if !routed {
                    assert_eq!(ev, Ok(None));
                }
                self.owe(Packet::PubRec(pid(id)), true);
            }
        }
    }

    fn ack(&mut self, kind: u8, id: PacketId) {
        let out = self.s.state.inflight.iter().find(|o| o.pkid == id).cloned();
        let packet = match kind {
            0 => Packet::PubAck(id),
            1 => Packet::PubRec(id),
            2 => Packet::PubRel(id),
            _ => Packet::PubComp(id),
        };
        assert_eq!(self.incoming(packet), Ok(None));
        match kind {
            1 => match out {
                // PUBREC for a QoS 1 message: nothing to answer.
                Some(o) if o.state == OutState::AwaitPubAck => {}
                Some(o) => {
                    let held = o.delivery.seq != 0 && self.sid.is_some();
                    self.owe(Packet::PubRel(id), held);
                }
                None => self.owe(Packet::PubRel(id), false),
            },
            2 => {
                // PUBREL is always answered with PUBCOMP [MQTT-4.3.3-1].
                let known = self.in2.remove(&id.get());
                self.owe(Packet::PubComp(id), known && self.sid.is_some());
            }
            _ => {}
        }
    }

    fn deliver(&mut self, q: QoS, journaled: bool, enqueue: bool) {
        let tag = u32::try_from(self.tags.len()).expect("few tags");
        let payload = tag.to_be_bytes();
        self.seq += 1;
        let (msg, seq) = if journaled {
            let msg = Message::stored("t", &payload, q, false, self.seq).expect("msg");
            (msg, self.seq)
        } else {
            (Message::new("t", &payload, q, false).expect("msg"), 0)
        };
        let d = Delivery {
            msg,
            qos: q,
            retain: false,
            seq,
        };
        let room = self.s.pending_len() < self.limits.max_pending;
        let (accepted, want) = if enqueue {
            (self.s.enqueue(d), room)
        } else {
            let now = self.s.would_send_now(q);
            (self.s.offer(d), now || room)
        };
        // Dropped only, and always, when max_pending messages wait.
        assert_eq!(accepted, want, "drop decision");
        self.tags.push(Tag {
            qos: q,
            sent_on: Vec::new(),
            completed: !accepted,
            may_be_lost: !accepted,
            resendable: false,
            held: Ticket::Free,
        });
    }

    fn poll(&mut self, n: usize) {
        for _ in 0..n {
            let Some(t) = self.s.poll_transmit() else {
                break;
            };
            self.sync();
            match t {
                Transmit::Packet(p) => {
                    let (want, ticket) = self.expected.pop_front().expect("a packet nobody owed");
                    // Acknowledgements leave in the order owed [MQTT-4.6.0-2].
                    assert_eq!(p, want, "unexpected control packet");
                    self.check_released(ticket);
                    if let Packet::PubRel(id) = p {
                        self.owed.push_back((id, QoS::ExactlyOnce, true));
                    }
                }
                Transmit::Publish {
                    delivery,
                    pkid,
                    dup,
                } => self.sent(&delivery, pkid, dup),
            }
        }
    }

    /// Held packets leave only once their ticket is durable.
    fn check_released(&self, ticket: Ticket) {
        match ticket {
            Ticket::Free => {}
            Ticket::Unbound => panic!("a held packet left before it was bound"),
            Ticket::Bound(t) => assert!(t <= self.durable, "ticket {t} not durable"),
        }
    }

    fn sent(&mut self, delivery: &Delivery, pkid: Option<PacketId>, dup: bool) {
        let tag = tag_of(delivery);
        let info = self.tags[tag as usize].clone();
        assert_eq!(delivery.qos, info.qos);
        assert_eq!(pkid.is_some(), info.qos != QoS::AtMostOnce);
        assert!(!info.sent_on.contains(&self.conn), "tag {tag} sent twice");
        if dup {
            // Re-sent only on a resumed session [MQTT-4.4.0-1], with DUP
            // [MQTT-3.3.1-1]; never for QoS 0 [MQTT-3.3.1-2].
            assert!(info.resendable, "DUP on tag {tag}, which was not in flight");
        } else {
            assert!(info.sent_on.is_empty(), "re-send of tag {tag} without DUP");
        }
        if info.sent_on.is_empty() {
            // First sends keep the order messages were offered in.
            assert!(self.last_first < Some(tag), "tag {tag} out of order");
            self.last_first = Some(tag);
        }
        self.check_released(info.held);
        self.tags[tag as usize].sent_on.push(self.conn);
        if let Some(id) = pkid {
            self.owed.push_back((id, info.qos, false));
        }
    }

    fn answer(&mut self, right: bool) {
        let Some((id, q, released)) = self.owed.pop_front() else {
            return;
        };
        let kind = match (q, released, right) {
            (_, true, true) => 3,
            (QoS::AtLeastOnce, _, true) => 0,
            (_, _, true) => 1,
            (QoS::AtLeastOnce, _, false) => 3,
            (_, _, false) => 0,
        };
        self.ack(kind, id);
        if !right {
            self.owed.push_back((id, q, released));
        }
    }

    fn journal(&mut self, zero_when_empty: bool) {
        let mut ops = Vec::new();
        self.s.take_ops(&mut ops);
        let ticket = if !ops.is_empty() {
            self.issued += 1;
            self.issued
        } else if zero_when_empty {
            0
        } else {
            self.issued
        };
        self.s.bind(ticket);
        let bound = |t: &mut Ticket| {
            if *t == Ticket::Unbound {
                *t = Ticket::Bound(ticket);
            }
        };
        self.expected.iter_mut().for_each(|(_, t)| bound(t));
        self.tags.iter_mut().for_each(|tag| bound(&mut tag.held));
    }

    fn reconnect(&mut self) {
        // What was queued and not sent is dropped with the connection; the
        // queue held exactly the control packets still owed.
        let queued: Vec<Packet> = self
            .s
            .transmit
            .iter()
            .filter_map(|(_, t)| match t {
                Transmit::Packet(p) => Some(p.clone()),
                Transmit::Publish { delivery, .. } => {
                    self.tags[tag_of(delivery) as usize].may_be_lost |=
                        delivery.qos == QoS::AtMostOnce;
                    None
                }
            })
            .collect();
        let owed: Vec<Packet> = self.expected.drain(..).map(|(p, _)| p).collect();
        assert_eq!(queued, owed, "queued control packets");
        self.owed.clear();
        self.conn += 1;
        self.now += Duration::from_millis(10);
        self.last_rx = self.now;
        let s = std::mem::replace(
            &mut self.s,
            Session::new("c".into(), true, 0, self.limits, self.now),
        );
        if self.clean {
            for tag in &mut self.tags {
                tag.may_be_lost |= !tag.completed;
                tag.completed = true;
            }
            self.in2.clear();
            self.inflight.clear();
            self.s = Session::new("c".into(), true, self.keep_alive, self.limits, self.now);
        } else {
            let state = s.into_state();
            for out in &state.inflight {
                self.tags[tag_of(&out.delivery) as usize].resendable = true;
            }
            self.s = Session::resume("c".into(), self.keep_alive, state, self.limits, self.now);
            let resent = self.s.state.inflight.clone();
            for out in resent {
                if out.state == OutState::AwaitPubComp {
                    self.expected
                        .push_back((Packet::PubRel(out.pkid), Ticket::Free));
                }
            }
        }
        if self.gated {
            let ticket = self.issued;
            self.s.set_journal(self.sid, ticket);
            for (_, t) in &mut self.expected {
                *t = Ticket::Bound(ticket);
            }
            for tag in &mut self.tags {
                tag.held = Ticket::Free;
            }
            for out in &self.s.state.inflight {
                self.tags[tag_of(&out.delivery) as usize].held = Ticket::Bound(ticket);
            }
        }
    }

    /// Journals everything and answers everything correctly until the
    /// session is idle, then checks that nothing was lost.
    fn settle(&mut self) {
        for _ in 0..64 {
            self.journal(false);
            self.durable = self.issued;
            self.s.handle_durable(self.issued);
            self.poll(usize::MAX);
            while !self.owed.is_empty() {
                self.answer(true);
            }
            self.sync();
            if self.s.transmit_len() == 0
                && self.s.inflight_len() == 0
                && self.s.pending_len() == 0
                && !self.s.has_ops()
            {
                break;
            }
        }
        assert_eq!(self.s.inflight_len(), 0, "window never drained");
        assert_eq!(self.s.pending_len(), 0, "queue never drained");
        assert_eq!(self.s.transmit_len(), 0);
        assert!(self.expected.is_empty(), "owed {:?}", self.expected);
        for (n, tag) in self.tags.iter().enumerate() {
            if tag.may_be_lost {
                continue;
            }
            match tag.qos {
                QoS::AtMostOnce => assert!(!tag.sent_on.is_empty(), "QoS 0 tag {n} never sent"),
                _ => assert!(tag.completed, "tag {n} never completed"),
            }
        }
    }
}

fn limits() -> impl Strategy<Value = SessionLimits> {
    (1usize..4, 1usize..4).prop_map(|(max_inflight, max_pending)| SessionLimits {
        max_inflight,
        max_pending,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_session_keeps_its_promises_whatever_the_client_does(
        clean in any::<bool>(),
        keep_alive in prop_oneof![Just(0u16), 1u16..30],
        limits in limits(),
        gated in any::<bool>(),
        // Near the top, packet ids wrap past zero.
        start in prop_oneof![Just(0u16), (u16::MAX - 3)..=u16::MAX],
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut h = Harness::new(clean, keep_alive, limits, gated, start);
        for s in steps {
            h.run(s);
        }
        h.settle();
    }
}
