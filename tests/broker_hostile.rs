//! Broker scenarios: hostile input. Each test is one attack a peer can make
//! with bytes we did not expect, and checks two things: the attacker is
//! treated as the rules say (bounded, refused, or closed alone with one log
//! line [MQTT-4.8.0-1]), and a well-behaved client on the same broker still
//! publishes and receives afterwards.
//!
//! Every test is bounded in time (the `support` timeouts) and in size (a
//! few MB at most). Malformed-packet closes are in `broker_limits.rs`, slow
//! subscribers in `broker_slow_subscriber.rs`, keep alive in
//! `broker_keepalive.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use midge_protocol::{
    ConnectReturnCode, LastWill, Packet, Publish, QoS, QosPid, SubscribeReturnCode,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A client connected before the attack, subscribed to its own topic:
/// afterwards it must still receive, and new clients must still get in.
struct Bystander {
    client: Client,
    topic: String,
}

impl Bystander {
    async fn join(broker: &TestBroker, tag: &str) -> Bystander {
        let topic = format!("bystander/{tag}");
        let mut client = broker.client(&format!("bystander-{tag}")).await;
        client.subscribe(&topic, QoS::AtLeastOnce).await;
        Bystander { client, topic }
    }

    /// A newcomer connects and publishes; the bystander receives it.
    async fn still_served(mut self, broker: &TestBroker) {
        let mut newcomer = broker.client(&format!("newcomer-{}", self.topic)).await;
        newcomer
            .publish(&self.topic, b"still fine", QoS::AtLeastOnce, false)
            .await;
        let got = self.client.recv_and_ack().await;
        assert_eq!(&got.payload[..], b"still fine");
        self.client.ping().await;
        newcomer.ping().await;
    }
}

/// A raw SUBSCRIBE: packet id, then (filter, requested QoS) pairs.
fn raw_subscribe(pkid: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for (filter, qos) in filters {
        body.extend(field(filter));
        body.push(*qos);
    }
    raw_packet(0x82, &body)
}

/// A topic or filter of `levels` levels, each `level`.
fn levels(level: &str, levels: usize) -> String {
    vec![level; levels].join("/")
}

/// The SUBACK's return codes, checking its packet id.
async fn suback(client: &mut Client, pkid: u16) -> Vec<SubscribeReturnCode> {
    match client.recv().await {
        Packet::SubAck(ack) => {
            assert_eq!(ack.pkid, pid(pkid));
            ack.return_codes
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn publish(topic: &str, qos_pid: QosPid, dup: bool, retain: bool, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos_pid,
        retain,
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
    })
}

#[tokio::test]
async fn mqtt_4_3_3_2_qos2_with_ever_new_ids_and_no_pubrel_stays_exactly_once() {
    // The awaiting-PUBREL set is bounded by the 65,535 packet ids (about
    // 650 KB when full); what matters here is that a flood of unreleased ids
    // neither closes the client nor breaks exactly-once for the others.
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "qos2").await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("q2/once", QoS::AtMostOnce).await;
    let mut attacker = broker.client("attacker").await;
    attacker
        .send(publish(
            "q2/once",
            QosPid::ExactlyOnce(pid(1)),
            false,
            false,
            b"1",
        ))
        .await;
    attacker.expect(Packet::PubRec(pid(1))).await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"1");
    const FLOOD: u16 = 3000;
    attacker
        .send_all(
            (2..=FLOOD)
                .map(|id| publish("q2/other", QosPid::ExactlyOnce(pid(id)), false, false, b"x")),
        )
        .await;
    for id in 2..=FLOOD {
        attacker.expect(Packet::PubRec(pid(id))).await;
    }
    // The first id is still unreleased: a re-sent PUBLISH is acknowledged
    // but not routed again [MQTT-4.3.3-2].
    attacker
        .send(publish(
            "q2/once",
            QosPid::ExactlyOnce(pid(1)),
            true,
            false,
            b"1",
        ))
        .await;
    attacker.expect(Packet::PubRec(pid(1))).await;
    watcher.expect_nothing(QUIET).await;
    // Released, the id is new again.
    attacker.send(Packet::PubRel(pid(1))).await;
    attacker.expect(Packet::PubComp(pid(1))).await;
    attacker
        .send(publish(
            "q2/once",
            QosPid::ExactlyOnce(pid(1)),
            false,
            false,
            b"2",
        ))
        .await;
    attacker.expect(Packet::PubRec(pid(1))).await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"2");
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_7_filter_over_max_topic_levels_gets_suback_0x80() {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "deep-filter").await;
    let mut attacker = broker.client("attacker").await;
    let at_limit = levels("d", 200);
    let over = format!("{at_limit}/d");
    // 30,000 levels in 60 KB: without the limit about 30 MB of trie.
    let huge = levels("a", 30_000);
    let huge_wild = levels("+", 30_000);
    let started = Instant::now();
    attacker
        .send_raw(&raw_subscribe(
            7,
            &[
                (at_limit.as_bytes(), 0),
                (over.as_bytes(), 0),
                (huge.as_bytes(), 1),
                (huge_wild.as_bytes(), 1),
            ],
        ))
        .await;
    let codes = suback(&mut attacker, 7).await;
    assert_eq!(
        codes,
        vec![
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Failure,
        ]
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The granted one works.
    let mut publisher = broker.client("publisher").await;
    publisher
        .publish(&at_limit, b"deep", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&attacker.recv_publish().await.payload[..], b"deep");
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn publish_to_a_topic_over_max_topic_levels_closes_only_that_connection() {
    let broker = TestBroker::start_with(|c| c.limits.max_topic_levels = 10).await;
    let bystander = Bystander::join(&broker, "deep-topic").await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("#", QoS::AtLeastOnce).await;
    let mut attacker = broker.client("attacker").await;
    // Retained, so without the limit every level would stay in memory.
    attacker
        .send(publish(
            &levels("t", 11),
            QosPid::AtLeastOnce(pid(1)),
            false,
            true,
            b"x",
        ))
        .await;
    attacker.expect_closed().await;
    watcher.expect_nothing(QUIET).await;
    // At the limit it is served, and nothing deeper was retained.
    let mut ok = broker.client("ok").await;
    ok.publish(&levels("t", 10), b"fits", QoS::AtLeastOnce, true)
        .await;
    assert_eq!(&watcher.recv_and_ack().await.payload[..], b"fits");
    let mut late = broker.client("late").await;
    late.subscribe("#", QoS::AtMostOnce).await;
    assert_eq!(&late.recv_publish().await.payload[..], b"fits");
    late.expect_nothing(QUIET).await;
    drop(watcher);
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_topic_over_max_topic_levels_is_refused() {
    let broker = TestBroker::start_with(|c| c.limits.max_topic_levels = 10).await;
    let bystander = Bystander::join(&broker, "deep-will").await;
    let mut attacker = broker.tcp().await;
    let topic = levels("w", 11);
    attacker
        .send_raw(&raw_connect(
            b"MQTT",
            4,
            0x06,
            60,
            &[b"deep-will", topic.as_bytes(), b"bye"],
        ))
        .await;
    attacker.expect_closed().await;
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn subscriptions_past_max_subscriptions_get_0x80_and_resubscribing_still_works() {
    let broker = TestBroker::start_with(|c| c.limits.max_subscriptions = 100).await;
    let bystander = Bystander::join(&broker, "many-subs").await;
    let mut attacker = broker.client("attacker").await;
    let filters: Vec<String> = (0..150).map(|i| format!("s/{i}")).collect();
    let raw: Vec<(&[u8], u8)> = filters.iter().map(|f| (f.as_bytes(), 0)).collect();
    attacker.send_raw(&raw_subscribe(1, &raw)).await;
    let codes = suback(&mut attacker, 1).await;
    let granted = SubscribeReturnCode::Success(QoS::AtMostOnce);
    assert!(codes[..100].iter().all(|c| *c == granted), "{codes:?}");
    assert!(codes[100..]
        .iter()
        .all(|c| *c == SubscribeReturnCode::Failure));
    // Replacing a held subscription is not a new one [MQTT-3.8.4-3].
    attacker.subscribe("s/0", QoS::AtLeastOnce).await;
    assert_eq!(
        attacker.subscribe_many(&[("s/120", QoS::AtMostOnce)]).await,
        vec![SubscribeReturnCode::Failure]
    );
    // Unsubscribing makes room.
    attacker.unsubscribe("s/0").await;
    attacker.subscribe("s/120", QoS::AtMostOnce).await;
    let mut publisher = broker.client("publisher").await;
    publisher
        .publish("s/120", b"in", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("s/130", b"out", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("s/99", b"in too", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&attacker.recv_publish().await.payload[..], b"in");
    assert_eq!(&attacker.recv_publish().await.payload[..], b"in too");
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn hundred_thousand_distinct_filters_hold_at_most_max_subscriptions() {
    // The default limit (10,000); the filters come in ten SUBSCRIBEs of
    // about 90 KB each.
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "100k").await;
    let mut attacker = broker.client("attacker").await;
    let mut granted = 0;
    for batch in 0..10u16 {
        let filters: Vec<String> = (0..10_000)
            .map(|i| format!("m/{}", u32::from(batch) * 10_000 + i))
            .collect();
        let raw: Vec<(&[u8], u8)> = filters.iter().map(|f| (f.as_bytes(), 1)).collect();
        attacker.send_raw(&raw_subscribe(batch + 1, &raw)).await;
        let codes = suback(&mut attacker, batch + 1).await;
        assert_eq!(codes.len(), 10_000);
        granted += codes
            .iter()
            .filter(|c| **c != SubscribeReturnCode::Failure)
            .count();
    }
    assert_eq!(granted, 10_000);
    // Publishing stays quick for everybody.
    let mut publisher = broker.client("publisher").await;
    let started = Instant::now();
    for i in 0..200 {
        publisher
            .publish(&format!("m/{}", i * 7), b"x", QoS::AtLeastOnce, false)
            .await;
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_8_4_3_a_filter_repeated_50000_times_in_one_subscribe_sends_retained_once() {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "repeat").await;
    let mut retainer = broker.client("retainer").await;
    for i in 0..20 {
        retainer
            .publish(&format!("r/{i}"), b"kept", QoS::AtLeastOnce, true)
            .await;
    }
    let mut attacker = broker.client("attacker").await;
    let raw: Vec<(&[u8], u8)> = vec![(b"r/#", 0); 50_000];
    attacker.send_raw(&raw_subscribe(3, &raw)).await;
    let codes = suback(&mut attacker, 3).await;
    assert_eq!(
        codes.len(),
        50_000,
        "one return code per filter [MQTT-3.8.4-5]"
    );
    assert!(codes
        .iter()
        .all(|c| *c == SubscribeReturnCode::Success(QoS::AtMostOnce)));
    // The twenty retained messages once, not once per copy of the filter.
    let mut topics: Vec<String> = Vec::new();
    for _ in 0..20 {
        let p = attacker.recv_publish().await;
        assert!(p.retain);
        topics.push(p.topic.to_string());
    }
    topics.sort();
    topics.dedup();
    assert_eq!(topics.len(), 20);
    attacker.expect_nothing(QUIET).await;
    // One subscription, one copy per message.
    retainer
        .publish("r/x", b"live", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&attacker.recv_publish().await.payload[..], b"live");
    attacker.expect_nothing(QUIET).await;
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn many_retained_topics_reach_a_new_subscriber_only_up_to_its_queue() {
    // Retained messages on distinct topics are bounded by nothing but
    // memory (as in Mosquitto); what one SUBSCRIBE gathers of them is bounded
    // by the subscriber's queue.
    let broker = TestBroker::start_with(|c| c.limits.max_queued_messages = 100).await;
    let bystander = Bystander::join(&broker, "retained").await;
    let mut retainer = broker.client("retainer").await;
    let msgs =
        (0..2000u16).map(|i| publish(&format!("many/{i}"), QosPid::AtMostOnce, false, true, b"r"));
    retainer.send_all(msgs).await;
    retainer.ping().await;
    let mut attacker = broker.client("attacker").await;
    attacker.subscribe("many/#", QoS::AtLeastOnce).await;
    let mut got = 0;
    loop {
        match attacker.next_event(QUIET).await {
            Event::Packet(Packet::Publish(p)) => {
                got += 1;
                attacker.ack(&p).await;
            }
            Event::Timeout => break,
            other => panic!("expected retained messages, got {other:?}"),
        }
    }
    assert!((1..=100).contains(&got), "got {got}");
    attacker.ping().await;
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn will_payload_of_65535_bytes_is_published_intact() {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "big-will").await;
    let mut watcher = broker.client("watcher").await;
    watcher.subscribe("wills/big", QoS::AtLeastOnce).await;
    let payload: Vec<u8> = (0..65_535u32).map(|i| i as u8).collect();
    let mut connect = connect_packet("big-will", true);
    connect.last_will = Some(LastWill {
        topic: "wills/big".into(),
        payload: payload.clone().into(),
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    let (attacker, ack) = broker.connect_with(connect).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    attacker.reset();
    let will = watcher.recv_and_ack().await;
    assert_eq!(&will.payload[..], &payload[..]);
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn client_id_user_name_password_and_topic_of_65535_bytes_are_served() {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "long-fields").await;
    let long = "c".repeat(65_535);
    let mut connect = connect_packet(&long, true);
    connect.username = Some("u".repeat(65_535).as_str().into());
    connect.password = Some(vec![0xff; 65_535].into());
    let (mut client, ack) = broker.connect_with(connect).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    let topic = "t".repeat(65_535);
    client.subscribe(&topic, QoS::AtLeastOnce).await;
    client
        .publish(&topic, b"long", QoS::AtLeastOnce, false)
        .await;
    let got = client.recv_and_ack().await;
    assert_eq!(got.topic.len(), 65_535);
    assert_eq!(&got.payload[..], b"long");
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_24_publish_dribbled_one_byte_at_a_time_is_closed_by_keep_alive() {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "slowloris").await;
    let mut attacker = broker.tcp().await;
    attacker
        .send_raw(&raw_connect(b"MQTT", 4, 0x02, 1, &[b"slowloris"]))
        .await;
    assert_eq!(
        attacker.expect_connack().await.code,
        ConnectReturnCode::Accepted
    );
    // A PUBLISH announcing 1000 bytes, then one byte every 200 ms: bytes
    // arrive, but no packet does, so keep alive (1.5 s) must still end it.
    let packet = raw_packet(0x30, &[b'x'; 1000]);
    let started = Instant::now();
    let mut closed = false;
    for byte in packet.iter().take(40) {
        if attacker.try_send_raw(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        if let Event::Closed = attacker.next_event(Duration::from_millis(200)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1200) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}"
    );
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_0_1_silent_and_half_connect_connections_all_time_out() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_s = 1).await;
    let bystander = Bystander::join(&broker, "silent").await;
    let half = raw_connect(b"MQTT", 4, 0x02, 60, &[b"half-a-connect"]);
    let mut idle = Vec::new();
    for i in 0..80 {
        let mut c = broker.tcp().await;
        if i % 2 == 1 {
            c.send_raw(&half[..half.len() / 2]).await;
        }
        idle.push(c);
    }
    // Served while they wait.
    let mut newcomer = broker.client("newcomer").await;
    newcomer.ping().await;
    for c in &mut idle {
        c.expect_closed_within(Duration::from_secs(4)).await;
    }
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn acks_for_unknown_packet_ids_neither_close_nor_disturb() {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "unknown-ids").await;
    let mut attacker = broker.client("attacker").await;
    attacker
        .send_all([
            Packet::PubAck(pid(7)),
            Packet::PubRec(pid(8)),
            Packet::PubRel(pid(9)),
            Packet::PubComp(pid(10)),
            Packet::PubAck(pid(65_535)),
        ])
        .await;
    // PUBREC and PUBREL are answered so the peer can finish its flow.
    attacker.expect(Packet::PubRel(pid(8))).await;
    attacker.expect(Packet::PubComp(pid(9))).await;
    attacker.ping().await;
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

/// Connects a client, sends `bytes` and asserts that only it is closed.
async fn assert_closes_only_that_connection(bytes: &[u8]) {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "closes").await;
    let mut attacker = broker.client("attacker").await;
    attacker.send_raw(bytes).await;
    attacker.expect_closed().await;
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_2_3_1_1_subscribe_with_packet_id_0_closes() {
    assert_closes_only_that_connection(&{
        let mut p = raw_subscribe(0, &[(b"a/b", 0)]);
        p[0] = 0x82;
        p
    })
    .await;
}

#[tokio::test]
async fn mqtt_2_3_1_1_unsubscribe_with_packet_id_0_closes() {
    let mut body = vec![0, 0];
    body.extend(field(b"a/b"));
    assert_closes_only_that_connection(&raw_packet(0xa2, &body)).await;
}

#[tokio::test]
async fn mqtt_3_1_2_2_mqtt_name_with_level_3_gets_connack_0x01() {
    for (name, level) in [(&b"MQTT"[..], 3u8), (&b"MQIsdp"[..], 4)] {
        let broker = TestBroker::start().await;
        let bystander = Bystander::join(&broker, "level").await;
        let mut attacker = broker.tcp().await;
        attacker
            .send_raw(&raw_connect(name, level, 0x02, 60, &[b"mixed"]))
            .await;
        let ack = attacker.expect_connack().await;
        assert_eq!(ack.code, ConnectReturnCode::UnacceptableProtocolVersion);
        attacker.expect_closed().await;
        bystander.still_served(&broker).await;
        broker.shutdown().await;
    }
}

#[tokio::test]
async fn mqtt_3_1_2_1_unknown_protocol_name_closes_without_connack() {
    let broker = TestBroker::start().await;
    let bystander = Bystander::join(&broker, "name").await;
    let mut attacker = broker.tcp().await;
    attacker
        .send_raw(&raw_connect(b"MQTX", 4, 0x02, 60, &[b"name"]))
        .await;
    attacker.expect_closed().await;
    bystander.still_served(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn tls_listener_drops_plain_mqtt_garbage_and_stalled_handshakes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: openssl could not make a test certificate");
        return;
    }
    let mut config = midge_broker::Config::default();
    let bind = "127.0.0.1:0".parse().expect("a socket address");
    config.listeners = vec![
        midge_broker::ListenerConfig {
            bind,
            ..Default::default()
        },
        midge_broker::ListenerConfig {
            bind,
            tls: Some(midge_broker::TlsConfig {
                cert,
                key,
                client_ca: None,
                require_client_cert: false,
                identity_as_username: false,
            }),
            ..Default::default()
        },
    ];
    config.limits.connect_timeout_s = 1;
    config.sys.interval_s = 0;
    config.persistence.enabled = false;
    let broker =
        midge_broker::Broker::start_with_auth(config, Arc::new(midge_broker::auth::AllowAll))
            .await
            .expect("the broker starts");
    let (plain, tls) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let mut bystander = Client::connect(plain, "bystander").await;
    bystander.subscribe("tls/t", QoS::AtLeastOnce).await;
    let attacks: [&[u8]; 3] = [
        // Plain MQTT: not a TLS record.
        &raw_connect(b"MQTT", 4, 0x02, 60, &[b"plain"]),
        // Garbage.
        &[0xde, 0xad, 0xbe, 0xef].repeat(64),
        // A handshake record announcing 16 KB, then silence.
        &[0x16, 0x03, 0x01, 0x40, 0x00, 0x01],
    ];
    let mut sockets = Vec::new();
    for bytes in attacks {
        let mut s = tokio::net::TcpStream::connect(tls).await.expect("tcp");
        let _ = s.write_all(bytes).await;
        sockets.push(s);
    }
    for mut s in sockets {
        // Whatever it answers (a TLS alert at most), it must then close.
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "left open");
        assert!(sink.len() < 64, "answered {sink:02x?}");
    }
    let mut newcomer = Client::connect(plain, "newcomer").await;
    newcomer
        .publish("tls/t", b"plain still fine", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        &bystander.recv_and_ack().await.payload[..],
        b"plain still fine"
    );
    tokio::time::timeout(TIMEOUT, broker.shutdown())
        .await
        .expect("shuts down");
}
