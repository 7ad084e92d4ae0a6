//! Session behaviour, driven with explicit times.

use std::time::{Duration, Instant};

use bytes::Bytes;
use midge_protocol::{PacketType, QosPid, Subscribe, SubscribeFilter};

use super::*;
use crate::message::Message;

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

const LIMITS: SessionLimits = SessionLimits {
    max_inflight: 2,
    max_pending: 3,
};

fn session(now: Instant) -> Session {
    Session::new("c".into(), false, 10, LIMITS, now)
}

fn delivery(qos: QoS, n: u8) -> Delivery {
    Delivery {
        msg: Message::new("t", &[n], qos, false).expect("message"),
        qos,
        retain: false,
        seq: 0,
    }
}

fn publish(qos_pid: QosPid, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos_pid,
        retain: false,
        topic: "t".into(),
        payload: Bytes::from_static(payload),
    })
}

fn drain(s: &mut Session) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

/// The sent publishes as (payload byte, packet id, dup).
fn publishes(ts: &[Transmit]) -> Vec<(u8, Option<u16>, bool)> {
    ts.iter()
        .filter_map(|t| match t {
            Transmit::Publish {
                delivery,
                pkid,
                dup,
            } => Some((delivery.msg.payload()[0], pkid.map(|p| p.get()), *dup)),
            Transmit::Packet(_) => None,
        })
        .collect()
}

fn packets(ts: &[Transmit]) -> Vec<Packet> {
    ts.iter()
        .filter_map(|t| match t {
            Transmit::Packet(p) => Some(p.clone()),
            Transmit::Publish { .. } => None,
        })
        .collect()
}

#[test]
fn a_qos0_publish_is_routed_without_acknowledgement() {
    let now = Instant::now();
    let mut s = session(now);
    let ev = s.handle_incoming(publish(QosPid::AtMostOnce, b"x"), now);
    assert!(matches!(ev, Ok(Some(Event::Publish(_)))));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_qos1_publish_is_routed_and_acknowledged_with_puback() {
    let now = Instant::now();
    let mut s = session(now);
    let ev = s.handle_incoming(publish(QosPid::AtLeastOnce(pid(5)), b"x"), now);
    assert!(matches!(ev, Ok(Some(Event::Publish(_)))));
    assert_eq!(packets(&drain(&mut s)), vec![Packet::PubAck(pid(5))]);
}

#[test]
fn a_resent_qos2_publish_before_pubrel_is_acknowledged_but_not_routed_again_mqtt_4_3_3_2() {
    let now = Instant::now();
    let mut s = session(now);
    let first = s.handle_incoming(publish(QosPid::ExactlyOnce(pid(7)), b"x"), now);
    assert!(matches!(first, Ok(Some(Event::Publish(_)))));
    let again = s.handle_incoming(publish(QosPid::ExactlyOnce(pid(7)), b"x"), now);
    assert_eq!(again, Ok(None));
    assert_eq!(
        packets(&drain(&mut s)),
        vec![Packet::PubRec(pid(7)), Packet::PubRec(pid(7))]
    );
    assert_eq!(s.handle_incoming(Packet::PubRel(pid(7)), now), Ok(None));
    assert_eq!(packets(&drain(&mut s)), vec![Packet::PubComp(pid(7))]);
    // After PUBREL the id is free: a new PUBLISH with it is a new message.
    let next = s.handle_incoming(publish(QosPid::ExactlyOnce(pid(7)), b"y"), now);
    assert!(matches!(next, Ok(Some(Event::Publish(_)))));
}

#[test]
fn a_pubrel_for_an_unknown_id_is_still_completed() {
    let now = Instant::now();
    let mut s = session(now);
    assert_eq!(s.handle_incoming(Packet::PubRel(pid(3)), now), Ok(None));
    assert_eq!(packets(&drain(&mut s)), vec![Packet::PubComp(pid(3))]);
}

#[test]
fn a_pingreq_is_answered_with_pingresp() {
    let now = Instant::now();
    let mut s = session(now);
    assert_eq!(s.handle_incoming(Packet::PingReq, now), Ok(None));
    assert_eq!(packets(&drain(&mut s)), vec![Packet::PingResp]);
}

#[test]
fn a_second_connect_is_a_protocol_violation_mqtt_3_1_0_2() {
    let now = Instant::now();
    let mut s = session(now);
    let err = s.handle_incoming(Packet::Connect(midge_protocol::Connect::new("c")), now);
    assert_eq!(err, Err(ProtocolError::SecondConnect));
}

#[test]
fn packets_only_a_server_sends_are_protocol_violations() {
    let now = Instant::now();
    let mut s = session(now);
    let err = s.handle_incoming(Packet::PingResp, now);
    assert_eq!(err, Err(ProtocolError::ServerPacket(PacketType::PingResp)));
}

#[test]
fn subscribe_and_unsubscribe_are_handed_to_the_connection_then_acknowledged() {
    let now = Instant::now();
    let mut s = session(now);
    let sub = Subscribe {
        pkid: pid(1),
        filters: vec![SubscribeFilter {
            filter: "a/#".into(),
            qos: QoS::ExactlyOnce,
        }],
    };
    let ev = s.handle_incoming(Packet::Subscribe(sub.clone()), now);
    assert_eq!(ev, Ok(Some(Event::Subscribe(sub))));
    let results = [
        ("a/#".into(), SubscribeReturnCode::Success(QoS::AtLeastOnce)),
        ("x".into(), SubscribeReturnCode::Failure),
    ];
    s.subscribed(pid(1), &results);
    assert_eq!(
        s.subscriptions().collect::<Vec<_>>(),
        vec![("a/#", QoS::AtLeastOnce)]
    );
    s.unsubscribed(pid(2), &["a/#".into(), "never".into()]);
    assert_eq!(s.subscriptions().count(), 0);
    assert_eq!(
        packets(&drain(&mut s)),
        vec![
            Packet::SubAck(SubAck {
                pkid: pid(1),
                return_codes: vec![
                    SubscribeReturnCode::Success(QoS::AtLeastOnce),
                    SubscribeReturnCode::Failure
                ],
            }),
            Packet::UnsubAck(pid(2)),
        ]
    );
}

#[test]
fn the_connection_is_closed_after_one_and_a_half_keep_alives_of_silence_mqtt_3_1_2_24() {
    let t0 = Instant::now();
    let mut s = session(t0);
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(15)));
    assert_eq!(s.handle_timeout(t0 + Duration::from_millis(14_999)), Ok(()));
    // Any packet restarts the clock.
    let t1 = t0 + Duration::from_secs(14);
    s.handle_incoming(Packet::PingReq, t1).expect("ping");
    assert_eq!(s.handle_timeout(t0 + Duration::from_secs(20)), Ok(()));
    assert_eq!(
        s.handle_timeout(t1 + Duration::from_secs(15)),
        Err(ProtocolError::KeepAliveTimeout(10))
    );
}

#[test]
fn a_keep_alive_of_zero_never_times_out() {
    let t0 = Instant::now();
    let mut s = Session::new("c".into(), true, 0, LIMITS, t0);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(
        s.handle_timeout(t0 + Duration::from_secs(1_000_000)),
        Ok(())
    );
}

#[test]
fn at_most_max_inflight_messages_are_unacknowledged_and_the_rest_wait_in_order() {
    let now = Instant::now();
    let mut s = session(now);
    for n in 1..=4 {
        assert!(s.offer(delivery(QoS::AtLeastOnce, n)));
    }
    assert_eq!(
        publishes(&drain(&mut s)),
        vec![(1, Some(1), false), (2, Some(2), false)]
    );
    assert_eq!((s.inflight_len(), s.pending_len()), (2, 2));
    assert!(!s.would_send_now(QoS::AtLeastOnce));
    // An out-of-order ack frees one place; the oldest waiting message goes.
    s.handle_incoming(Packet::PubAck(pid(2)), now).expect("ack");
    assert_eq!(publishes(&drain(&mut s)), vec![(3, Some(3), false)]);
    s.handle_incoming(Packet::PubAck(pid(1)), now).expect("ack");
    assert_eq!(publishes(&drain(&mut s)), vec![(4, Some(4), false)]);
}

#[test]
fn a_qos0_message_waits_behind_queued_messages_to_keep_the_order_mqtt_4_6_0_6() {
    let now = Instant::now();
    let mut s = session(now);
    for n in 1..=3 {
        s.offer(delivery(QoS::AtLeastOnce, n));
    }
    assert!(!s.would_send_now(QoS::AtMostOnce));
    s.offer(delivery(QoS::AtMostOnce, 4));
    assert_eq!(publishes(&drain(&mut s)).len(), 2);
    s.handle_incoming(Packet::PubAck(pid(1)), now).expect("ack");
    assert_eq!(
        publishes(&drain(&mut s)),
        vec![(3, Some(3), false), (4, None, false)]
    );
}

#[test]
fn messages_beyond_max_pending_are_dropped() {
    let now = Instant::now();
    let mut s = session(now);
    let accepted = (1..=7)
        .filter(|n| s.offer(delivery(QoS::ExactlyOnce, *n)))
        .count();
    assert_eq!(accepted, 5);
    assert_eq!((s.inflight_len(), s.pending_len()), (2, 3));
}

#[test]
fn an_outgoing_qos2_message_completes_with_pubrec_pubrel_pubcomp() {
    let now = Instant::now();
    let mut s = session(now);
    s.offer(delivery(QoS::ExactlyOnce, 1));
    drain(&mut s);
    // PUBACK is not the right answer to a QoS 2 message: ignored.
    s.handle_incoming(Packet::PubAck(pid(1)), now)
        .expect("ignored");
    assert_eq!(s.inflight_len(), 1);
    s.handle_incoming(Packet::PubRec(pid(1)), now).expect("rec");
    assert_eq!(packets(&drain(&mut s)), vec![Packet::PubRel(pid(1))]);
    assert_eq!(s.inflight_len(), 1);
    s.handle_incoming(Packet::PubComp(pid(1)), now)
        .expect("comp");
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn a_resumed_session_resends_unacknowledged_messages_with_dup_in_order_then_waiting_ones_mqtt_4_4_0_1(
) {
    let now = Instant::now();
    let mut s = session(now);
    s.offer(delivery(QoS::ExactlyOnce, 1));
    s.offer(delivery(QoS::AtLeastOnce, 2));
    s.offer(delivery(QoS::AtLeastOnce, 3));
    drain(&mut s);
    // Message 1 got as far as PUBREC: it is resumed with a PUBREL.
    s.handle_incoming(Packet::PubRec(pid(1)), now).expect("rec");
    let state = s.into_state();

    let later = now + Duration::from_secs(60);
    let mut s = Session::resume("c".into(), 10, state, LIMITS, later);
    let sent = drain(&mut s);
    assert_eq!(packets(&sent), vec![Packet::PubRel(pid(1))]);
    assert_eq!(publishes(&sent), vec![(2, Some(2), true)]);
    assert!(matches!(sent[0], Transmit::Packet(Packet::PubRel(_))));
    s.handle_incoming(Packet::PubComp(pid(1)), later)
        .expect("comp");
    assert_eq!(publishes(&drain(&mut s)), vec![(3, Some(3), false)]);
    assert_eq!(s.next_deadline(), Some(later + Duration::from_secs(15)));
}

#[test]
fn packet_ids_skip_zero_and_ids_still_in_flight() {
    let now = Instant::now();
    let limits = SessionLimits {
        max_inflight: 3,
        max_pending: 0,
    };
    let mut s = Session::new("c".into(), true, 0, limits, now);
    s.state.last_pkid = u16::MAX - 1;
    s.offer(delivery(QoS::AtLeastOnce, 1)); // 65535
    s.offer(delivery(QoS::AtLeastOnce, 2)); // wraps past 0 to 1
    s.state.last_pkid = 0;
    s.offer(delivery(QoS::AtLeastOnce, 3)); // 1 is taken: 2
    let ids: Vec<_> = publishes(&drain(&mut s)).iter().map(|p| p.1).collect();
    assert_eq!(ids, vec![Some(65535), Some(1), Some(2)]);
}

fn journaled(delivery_qos: QoS, seq: u64) -> Delivery {
    let msg = Message::stored("t", &[seq as u8], delivery_qos, false, 100 + seq).expect("msg");
    Delivery {
        msg,
        qos: delivery_qos,
        retain: false,
        seq,
    }
}

#[test]
fn a_held_puback_waits_for_its_ticket_and_what_follows_waits_behind_it() {
    let now = Instant::now();
    let mut s = session(now);
    s.set_journal(None, 0);
    let ev = s
        .handle_incoming(publish(QosPid::AtLeastOnce(pid(1)), b"x"), now)
        .expect("ok");
    assert!(matches!(ev, Some(Event::Publish(_))));
    // The connection journals the fan-out: ticket 7.
    s.bind(7);
    s.handle_incoming(Packet::PingReq, now).expect("ok");
    s.bind(0);
    assert_eq!(s.waiting_for(), Some(7));
    assert!(drain(&mut s).is_empty(), "nothing leaves before ticket 7");
    s.handle_durable(6);
    assert!(drain(&mut s).is_empty());
    s.handle_durable(7);
    assert_eq!(
        packets(&drain(&mut s)),
        vec![Packet::PubAck(pid(1)), Packet::PingResp]
    );
    assert_eq!(s.waiting_for(), None);
}

#[test]
fn an_ack_with_nothing_to_journal_leaves_at_once() {
    let now = Instant::now();
    let mut s = session(now);
    s.set_journal(None, 0);
    s.handle_incoming(publish(QosPid::AtLeastOnce(pid(1)), b"x"), now)
        .expect("ok");
    s.bind(0);
    assert_eq!(packets(&drain(&mut s)), vec![Packet::PubAck(pid(1))]);
}

#[test]
fn a_persistent_session_records_each_change_of_its_durable_state() {
    let now = Instant::now();
    let mut s = session(now);
    s.set_journal(Some(5), 0);
    let mut ops = Vec::new();
    // Inbound QoS 2: the id is recorded, then released.
    s.handle_incoming(publish(QosPid::ExactlyOnce(pid(3)), b"x"), now)
        .expect("ok");
    s.handle_incoming(Packet::PubRel(pid(3)), now).expect("ok");
    s.take_ops(&mut ops);
    assert_eq!(
        ops,
        vec![
            Op::In2Add { sid: 5, pkid: 3 },
            Op::In2Del { sid: 5, pkid: 3 }
        ]
    );
    // Outbound QoS 2: sent (held until durable), released, completed.
    ops.clear();
    s.bind(1);
    s.handle_durable(1);
    drain(&mut s);
    assert!(s.offer(journaled(QoS::ExactlyOnce, 9)));
    s.take_ops(&mut ops);
    assert_eq!(
        ops,
        vec![Op::Sent {
            sid: 5,
            seq: 9,
            pkid: 1
        }]
    );
    s.bind(2);
    assert!(
        drain(&mut s).is_empty(),
        "the QoS 2 PUBLISH waits for its packet id"
    );
    s.handle_durable(2);
    assert_eq!(publishes(&drain(&mut s)), vec![(9, Some(1), false)]);
    ops.clear();
    s.handle_incoming(Packet::PubRec(pid(1)), now).expect("ok");
    s.bind(3);
    assert!(
        drain(&mut s).is_empty(),
        "PUBREL waits until it is recorded"
    );
    s.handle_durable(3);
    assert_eq!(packets(&drain(&mut s)), vec![Packet::PubRel(pid(1))]);
    s.handle_incoming(Packet::PubComp(pid(1)), now).expect("ok");
    s.take_ops(&mut ops);
    assert_eq!(
        ops,
        vec![Op::Released { sid: 5, seq: 9 }, Op::Done { sid: 5, seq: 9 }]
    );
}

#[test]
fn a_clean_session_records_nothing_and_holds_only_acks() {
    let now = Instant::now();
    let mut s = Session::new("c".into(), true, 0, LIMITS, now);
    s.set_journal(None, 0);
    assert!(s.offer(journaled(QoS::ExactlyOnce, 0)));
    s.handle_incoming(Packet::PubRec(pid(1)), now).expect("ok");
    assert!(!s.has_ops());
    let sent = drain(&mut s);
    assert_eq!(publishes(&sent), vec![(0, Some(1), false)]);
    assert_eq!(packets(&sent), vec![Packet::PubRel(pid(1))]);
}

#[test]
fn a_resumed_session_resends_once_earlier_writes_are_durable() {
    let now = Instant::now();
    let mut s = session(now);
    s.set_journal(Some(5), 0);
    assert!(s.offer(journaled(QoS::AtLeastOnce, 4)));
    drain(&mut s);
    let state = s.into_state();
    let mut s = Session::resume("c".into(), 10, state, LIMITS, now);
    s.set_journal(Some(5), 12);
    assert!(drain(&mut s).is_empty());
    s.handle_durable(12);
    assert_eq!(publishes(&drain(&mut s)), vec![(4, Some(1), true)]);
}
