//! Unit tests of the sans-IO session state, with explicit instants.

use std::time::{Duration, Instant};

use bytes::Bytes;
use midge_protocol::{
    ByteStr, Packet, PacketId, Publish, QoS, QosPid, SubAck, SubscribeFilter, SubscribeReturnCode,
};
use tokio::sync::oneshot;

use super::*;

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn msg(topic: &str, qos: QoS) -> OutgoingMessage {
    OutgoingMessage {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(b"x"),
        qos,
        retain: false,
    }
}

fn state(now: Instant) -> MqttState {
    MqttState::new(10, Duration::from_secs(60), Duration::from_secs(5), now)
}

fn drain(s: &mut MqttState, now: Instant) -> Vec<Packet> {
    std::iter::from_fn(|| s.poll_transmit(now)).collect()
}

fn incoming(topic: &str, qos_pid: QosPid) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos_pid,
        retain: false,
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(b"p"),
    })
}

#[test]
fn qos1_publish_completes_on_puback() {
    let now = Instant::now();
    let mut s = state(now);
    let (tx, mut rx) = oneshot::channel();
    s.publish(msg("a", QoS::AtLeastOnce), Some(tx));
    let sent = drain(&mut s, now);
    assert!(matches!(&sent[..], [Packet::Publish(p)] if p.pkid() == Some(pid(1)) && !p.dup));
    assert!(rx.try_recv().is_err());
    s.handle_incoming(Packet::PubAck(pid(1))).expect("ok");
    assert_eq!(rx.try_recv().expect("resolved"), Ok(()));
    assert!(s.is_idle());
}

#[test]
fn qos2_publish_sends_pubrel_on_pubrec_and_completes_on_pubcomp() {
    let now = Instant::now();
    let mut s = state(now);
    let (tx, mut rx) = oneshot::channel();
    s.publish(msg("a", QoS::ExactlyOnce), Some(tx));
    drain(&mut s, now);
    s.handle_incoming(Packet::PubRec(pid(1))).expect("ok");
    assert_eq!(drain(&mut s, now), vec![Packet::PubRel(pid(1))]);
    assert!(rx.try_recv().is_err());
    s.handle_incoming(Packet::PubComp(pid(1))).expect("ok");
    assert_eq!(rx.try_recv().expect("resolved"), Ok(()));
}

#[test]
fn qos0_publish_completes_when_queued_and_takes_no_packet_id() {
    let now = Instant::now();
    let mut s = state(now);
    let (tx, mut rx) = oneshot::channel();
    s.publish(msg("a", QoS::AtMostOnce), Some(tx));
    assert_eq!(rx.try_recv().expect("resolved"), Ok(()));
    assert!(matches!(&drain(&mut s, now)[..], [Packet::Publish(p)] if p.pkid().is_none()));
    assert_eq!(s.inflight_len(), 0);
}

#[test]
fn unacked_publishes_are_resent_in_order_with_dup_and_pubrel_after_pubrec() {
    let now = Instant::now();
    let mut s = state(now);
    s.publish(msg("first", QoS::AtLeastOnce), None);
    s.publish(msg("second", QoS::ExactlyOnce), None);
    s.publish(msg("third", QoS::ExactlyOnce), None);
    drain(&mut s, now);
    s.handle_incoming(Packet::PubRec(pid(3))).expect("ok");
    drain(&mut s, now);
    s.on_connected(true, now);
    s.resend_unacked();
    let resent = drain(&mut s, now);
    assert_eq!(resent.len(), 3);
    assert!(
        matches!(&resent[0], Packet::Publish(p) if p.dup && p.topic == "first" && p.pkid() == Some(pid(1)))
    );
    assert!(
        matches!(&resent[1], Packet::Publish(p) if p.dup && p.topic == "second" && p.pkid() == Some(pid(2)))
    );
    assert_eq!(resent[2], Packet::PubRel(pid(3)));
}

#[test]
fn a_reconnect_forgets_acks_queued_for_the_old_connection() {
    let now = Instant::now();
    let mut s = state(now);
    s.handle_incoming(incoming("t", QosPid::AtLeastOnce(pid(9))))
        .expect("ok");
    s.on_connected(false, now);
    s.resend_unacked();
    assert!(drain(&mut s, now).is_empty());
}

#[test]
fn incoming_qos1_is_delivered_and_acknowledged() {
    let now = Instant::now();
    let mut s = state(now);
    s.handle_incoming(incoming("t", QosPid::AtLeastOnce(pid(4))))
        .expect("ok");
    assert!(matches!(s.poll_event(), Some(StateEvent::Deliver(p)) if p.topic == "t"));
    assert_eq!(drain(&mut s, now), vec![Packet::PubAck(pid(4))]);
}

#[test]
fn incoming_qos2_is_delivered_once_even_if_the_broker_resends_it() {
    let now = Instant::now();
    let mut s = state(now);
    s.handle_incoming(incoming("t", QosPid::ExactlyOnce(pid(7))))
        .expect("ok");
    s.handle_incoming(incoming("t", QosPid::ExactlyOnce(pid(7))))
        .expect("ok");
    assert!(matches!(s.poll_event(), Some(StateEvent::Deliver(_))));
    assert!(s.poll_event().is_none());
    assert_eq!(
        drain(&mut s, now),
        vec![Packet::PubRec(pid(7)), Packet::PubRec(pid(7))]
    );
    s.handle_incoming(Packet::PubRel(pid(7))).expect("ok");
    assert_eq!(drain(&mut s, now), vec![Packet::PubComp(pid(7))]);
    // After PUBREL the id is free: a new message with it is a new delivery.
    s.handle_incoming(incoming("t", QosPid::ExactlyOnce(pid(7))))
        .expect("ok");
    assert!(matches!(s.poll_event(), Some(StateEvent::Deliver(_))));
}

#[test]
fn incoming_qos2_ids_survive_a_reconnect_with_session_present() {
    let now = Instant::now();
    let mut s = state(now);
    s.handle_incoming(incoming("t", QosPid::ExactlyOnce(pid(2))))
        .expect("ok");
    assert!(s.poll_event().is_some());
    s.on_connected(true, now);
    let mut dup = incoming("t", QosPid::ExactlyOnce(pid(2)));
    if let Packet::Publish(p) = &mut dup {
        p.dup = true;
    }
    s.handle_incoming(dup).expect("ok");
    assert!(
        s.poll_event().is_none(),
        "redelivered QoS 2 message must not be delivered twice"
    );
}

#[test]
fn a_pubrel_for_an_unknown_id_is_still_answered_with_pubcomp() {
    let now = Instant::now();
    let mut s = state(now);
    s.handle_incoming(Packet::PubRel(pid(11))).expect("ok");
    assert_eq!(drain(&mut s, now), vec![Packet::PubComp(pid(11))]);
}

#[test]
fn pingreq_is_sent_after_a_keep_alive_of_silence_and_a_missing_pingresp_is_fatal() {
    let t0 = Instant::now();
    let mut s = state(t0);
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(60)));
    s.handle_timeout(t0 + Duration::from_secs(59)).expect("ok");
    assert!(drain(&mut s, t0).is_empty());
    let t1 = t0 + Duration::from_secs(60);
    s.handle_timeout(t1).expect("ok");
    assert_eq!(drain(&mut s, t1), vec![Packet::PingReq]);
    assert_eq!(s.next_deadline(), Some(t1 + Duration::from_secs(5)));
    let err = s
        .handle_timeout(t1 + Duration::from_secs(5))
        .expect_err("dead");
    assert!(matches!(err, ConnectionError::PingTimeout(_)));
}

#[test]
fn a_pingresp_clears_the_ping_and_traffic_postpones_the_next_one() {
    let t0 = Instant::now();
    let mut s = state(t0);
    let t1 = t0 + Duration::from_secs(60);
    s.handle_timeout(t1).expect("ok");
    drain(&mut s, t1);
    s.handle_incoming(Packet::PingResp).expect("ok");
    assert_eq!(s.next_deadline(), Some(t1 + Duration::from_secs(60)));
    let t2 = t1 + Duration::from_secs(30);
    s.publish(msg("a", QoS::AtMostOnce), None);
    drain(&mut s, t2);
    assert_eq!(s.next_deadline(), Some(t2 + Duration::from_secs(60)));
}

#[test]
fn keep_alive_zero_never_pings() {
    let t0 = Instant::now();
    let mut s = MqttState::new(10, Duration::ZERO, Duration::from_secs(5), t0);
    assert_eq!(s.next_deadline(), None);
    s.handle_timeout(t0 + Duration::from_secs(3600))
        .expect("ok");
    assert!(drain(&mut s, t0).is_empty());
}

#[test]
fn the_inflight_window_fills_and_packet_ids_are_reused_only_when_free() {
    let now = Instant::now();
    let mut s = MqttState::new(2, Duration::ZERO, Duration::ZERO, now);
    s.publish(msg("a", QoS::AtLeastOnce), None);
    assert!(!s.inflight_full());
    s.publish(msg("b", QoS::AtLeastOnce), None);
    assert!(s.inflight_full());
    s.handle_incoming(Packet::PubAck(pid(1))).expect("ok");
    assert!(!s.inflight_full());
    s.next_pkid = u16::MAX;
    s.publish(msg("c", QoS::AtLeastOnce), None);
    // Wrapped past 65535 to 1 (free again); 2 is still in use.
    let sent = drain(&mut s, now);
    assert!(matches!(sent.last(), Some(Packet::Publish(p)) if p.pkid() == Some(pid(1))));
}

#[test]
fn suback_is_matched_to_its_subscribe_and_a_wrong_count_is_an_error() {
    let now = Instant::now();
    let mut s = state(now);
    let filters = vec![SubscribeFilter {
        filter: ByteStr::from("a/#"),
        qos: QoS::AtLeastOnce,
    }];
    s.subscribe(filters.clone(), SubscribeWaiter::Restore);
    s.subscribe(filters, SubscribeWaiter::Restore);
    s.handle_incoming(Packet::SubAck(SubAck {
        pkid: pid(1),
        return_codes: vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)],
    }))
    .expect("ok");
    assert!(matches!(s.poll_event(), Some(StateEvent::SubAck { codes, .. }) if codes.len() == 1));
    let err = s
        .handle_incoming(Packet::SubAck(SubAck {
            pkid: pid(2),
            return_codes: vec![],
        }))
        .expect_err("mismatch");
    assert!(matches!(
        err,
        ConnectionError::SubAckMismatch {
            expected: 1,
            got: 0
        }
    ));
}

#[test]
fn a_server_only_packet_from_the_broker_is_a_protocol_error() {
    let mut s = state(Instant::now());
    assert!(s.handle_incoming(Packet::PingReq).is_err());
}

#[test]
fn closing_fails_every_waiter() {
    let now = Instant::now();
    let mut s = state(now);
    let (tx, mut rx) = oneshot::channel();
    s.publish(msg("a", QoS::AtLeastOnce), Some(tx));
    let (utx, mut urx) = oneshot::channel();
    s.unsubscribe(vec![ByteStr::from("x")], Some(utx));
    s.fail_all(false);
    assert_eq!(
        rx.try_recv().expect("answered"),
        Err(PublishError::ConnectionLost)
    );
    assert_eq!(
        urx.try_recv().expect("answered"),
        Err(UnsubscribeError::ConnectionLost)
    );
    assert!(s.is_idle());
}
