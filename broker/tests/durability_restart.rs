//! Persistence across a clean restart of an in-process broker: persistent
//! sessions, their queues, unacknowledged messages, QoS 2 state and
//! retained messages come back from the data directory.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;

use midge_protocol::{Packet, QoS, QosPid};
use support::*;

/// A broker journaling into `dir`.
async fn broker(dir: &Path) -> TestBroker {
    let dir = dir.to_owned();
    TestBroker::start_with(move |c| {
        c.persistence.enabled = true;
        c.persistence.dir = dir;
    })
    .await
}

#[tokio::test]
async fn a_restart_keeps_persistent_sessions_their_queues_and_retained_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path()).await;
    let (mut sub, present) = b.persistent("sub").await;
    assert!(!present);
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    sub.subscribe("q2", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut publisher = b.client("pub").await;
    for i in 0..5 {
        let payload = format!("m{i}");
        publisher
            .publish("t/x", payload.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    for i in 0..3 {
        let payload = format!("e{i}");
        publisher
            .publish("q2", payload.as_bytes(), QoS::ExactlyOnce, false)
            .await;
    }
    // QoS 0 retained messages are kept too.
    publisher
        .publish("r/a", b"kept", QoS::AtMostOnce, true)
        .await;
    publisher
        .publish("r/b", b"gone", QoS::AtMostOnce, true)
        .await;
    publisher.publish("r/b", b"", QoS::AtMostOnce, true).await;
    publisher.disconnect().await;
    b.shutdown().await;

    let b = broker(dir.path()).await;
    let (mut sub, present) = b.persistent("sub").await;
    assert!(present, "the session survived the restart");
    let got = sub.recv_publishes(8).await;
    let payloads: Vec<String> = got
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["m0", "m1", "m2", "m3", "m4", "e0", "e1", "e2"]);
    assert!(got[..5].iter().all(|p| p.qos() == QoS::AtLeastOnce));
    assert!(got[5..].iter().all(|p| p.qos() == QoS::ExactlyOnce));
    // The subscriptions came back too.
    let mut publisher = b.client("pub").await;
    publisher
        .publish("t/y", b"live", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&sub.recv_and_ack().await.payload[..], b"live");
    let mut reader = b.client("reader").await;
    reader.subscribe("r/#", QoS::AtMostOnce).await;
    let retained = reader.recv_publish().await;
    assert_eq!(
        (&*retained.topic, &retained.payload[..]),
        ("r/a", &b"kept"[..])
    );
    assert!(retained.retain);
    reader.expect_nothing(QUIET).await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_unacknowledged_message_is_resent_with_its_packet_id_and_dup_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path()).await;
    let (mut sub, _) = b.persistent("sub").await;
    sub.subscribe("t", QoS::ExactlyOnce).await;
    let mut publisher = b.client("pub").await;
    publisher
        .publish("t", b"once", QoS::ExactlyOnce, false)
        .await;
    let first = sub.recv_publish().await;
    let QosPid::ExactlyOnce(id) = first.qos_pid else {
        panic!("not QoS 2: {first:?}");
    };
    // Not acknowledged; the broker goes away.
    sub.drop_connection();
    b.shutdown().await;

    let b = broker(dir.path()).await;
    let (mut sub, present) = b.persistent("sub").await;
    assert!(present);
    let again = sub.recv_publish().await;
    assert_eq!(again.qos_pid, QosPid::ExactlyOnce(id), "same packet id");
    assert!(again.dup, "DUP set on the re-delivery [MQTT-3.3.1-1]");
    sub.send(Packet::PubRec(id)).await;
    sub.expect(Packet::PubRel(id)).await;
    sub.send(Packet::PubComp(id)).await;
    sub.expect_nothing(QUIET).await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_inbound_qos2_packet_id_survives_a_restart_and_is_not_routed_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path()).await;
    let (mut sub, _) = b.persistent("sub").await;
    sub.subscribe("t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = b.persistent("pub").await;
    let id = pid(5);
    let p = publish_packet("t", b"x", QoS::ExactlyOnce, id, false);
    publisher.send(Packet::Publish(p.clone())).await;
    publisher.expect(Packet::PubRec(id)).await;
    assert_eq!(&sub.recv_and_ack().await.payload[..], b"x");
    // PINGRESP follows the PUBACK's processing: the broker has the ack.
    sub.ping().await;
    publisher.drop_connection();
    sub.drop_connection();
    b.shutdown().await;

    let b = broker(dir.path()).await;
    let (mut sub, _) = b.persistent("sub").await;
    let (mut publisher, present) = b.persistent("pub").await;
    assert!(present);
    // The publisher did not see PUBCOMP: it sends the PUBLISH again.
    let mut again = p;
    again.dup = true;
    publisher.send(Packet::Publish(again)).await;
    publisher.expect(Packet::PubRec(id)).await;
    publisher.send(Packet::PubRel(id)).await;
    publisher.expect(Packet::PubComp(id)).await;
    sub.expect_nothing(QUIET).await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_clean_session_connect_discards_the_persistent_session_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path()).await;
    let (mut sub, _) = b.persistent("c").await;
    sub.subscribe("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    b.client("c").await.disconnect().await;
    b.shutdown().await;

    let b = broker(dir.path()).await;
    let (c, present) = b.persistent("c").await;
    assert!(!present, "discarded before the restart [MQTT-3.1.2-6]");
    c.disconnect().await;
    let mut publisher = b.client("pub").await;
    publisher.publish("t", b"x", QoS::AtLeastOnce, false).await;
    let (mut c, present) = b.persistent("c").await;
    assert!(present);
    c.expect_nothing(QUIET).await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_unsubscribe_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path()).await;
    let (mut sub, _) = b.persistent("c").await;
    sub.subscribe("a", QoS::AtLeastOnce).await;
    sub.subscribe("b", QoS::AtLeastOnce).await;
    sub.unsubscribe("a").await;
    sub.disconnect().await;
    b.shutdown().await;

    let b = broker(dir.path()).await;
    let mut publisher = b.client("pub").await;
    publisher.publish("a", b"no", QoS::AtLeastOnce, false).await;
    publisher
        .publish("b", b"yes", QoS::AtLeastOnce, false)
        .await;
    let (mut sub, _) = b.persistent("c").await;
    assert_eq!(&sub.recv_and_ack().await.payload[..], b"yes");
    sub.expect_nothing(QUIET).await;
    b.shutdown().await;
}

#[tokio::test]
async fn every_sync_mode_acknowledges_and_restores() {
    for sync in [
        midge_broker::SyncMode::Always,
        midge_broker::SyncMode::Periodic,
        midge_broker::SyncMode::Off,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = |dir: std::path::PathBuf| {
            TestBroker::start_with(move |c| {
                c.persistence.enabled = true;
                c.persistence.dir = dir;
                c.persistence.sync = sync;
                c.persistence.sync_interval_ms = 20;
            })
        };
        let b = start(dir.path().to_owned()).await;
        let (mut sub, _) = b.persistent("sub").await;
        sub.subscribe("t", QoS::ExactlyOnce).await;
        sub.disconnect().await;
        let mut publisher = b.client("pub").await;
        publisher.publish("t", b"q1", QoS::AtLeastOnce, false).await;
        publisher.publish("t", b"q2", QoS::ExactlyOnce, true).await;
        b.shutdown().await;
        let b = start(dir.path().to_owned()).await;
        let (mut sub, present) = b.persistent("sub").await;
        assert!(present, "{sync:?}");
        let got: Vec<Vec<u8>> = sub
            .recv_publishes(2)
            .await
            .iter()
            .map(|p| p.payload.to_vec())
            .collect();
        assert_eq!(got, [b"q1".to_vec(), b"q2".to_vec()], "{sync:?}");
        b.shutdown().await;
    }
}
