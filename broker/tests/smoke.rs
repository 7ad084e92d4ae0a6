//! End-to-end smoke tests: a broker in-process on 127.0.0.1:0 and raw
//! packets over TCP. The exhaustive suite lives in the workspace's `tests/`;
//! these make sure the crate works on its own.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_broker::{Broker, Config, ListenerConfig};
use midge_protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PacketId, Publish, QoS,
    QosPid, Subscribe, SubscribeFilter, SubscribeReturnCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

// Listeners grow fields (TLS) in later issues.
#[allow(clippy::needless_update)]
fn local_listener() -> ListenerConfig {
    ListenerConfig {
        bind: "127.0.0.1:0".parse().expect("address"),
        ..Default::default()
    }
}

async fn broker(configure: impl FnOnce(&mut Config)) -> Broker {
    let mut config = Config {
        listeners: vec![local_listener()],
        ..Config::default()
    };
    config.sys.interval_s = 0;
    config.limits.connect_timeout_s = 2;
    // In memory: tests run in parallel and must not share a data directory.
    config.persistence.enabled = false;
    configure(&mut config);
    Broker::start(config).await.expect("broker starts")
}

struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn tcp(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        Raw {
            stream,
            buf: BytesMut::new(),
        }
    }

    async fn connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::tcp(addr).await;
        raw.send(Packet::Connect(connect)).await;
        match raw.recv().await {
            Some(Packet::ConnAck(ack)) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn client(addr: SocketAddr, id: &str) -> Raw {
        let (raw, ack) = Raw::connect(addr, Connect::new(id)).await;
        assert_eq!(ack.code, ConnectReturnCode::Accepted);
        raw
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, &mut out).expect("encode");
        self.send_bytes(&out).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet; `None` when the broker closed the connection or
    /// nothing came within `wait`.
    async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = decode(&mut self.buf, usize::MAX).expect("broker sends valid packets")
            {
                return Some(p);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf));
            match read.await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT).await
    }

    async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let sub = Subscribe {
            pkid: pid(1),
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                qos,
            }],
        };
        self.send(Packet::Subscribe(sub)).await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => {
                assert_eq!(ack.return_codes, vec![SubscribeReturnCode::Success(qos)])
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// True if the broker closes the connection within `WAIT`.
    async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf));
            match read.await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => self.buf.clear(),
                Err(_) => return false,
            }
        }
    }
}

fn publish(topic: &str, payload: &'static [u8], qos_pid: QosPid, retain: bool) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos_pid,
        retain,
        topic: topic.into(),
        payload: Bytes::from_static(payload),
    })
}

#[tokio::test]
async fn a_client_connects_pings_and_disconnects() {
    let broker = broker(|_| {}).await;
    let mut c = Raw::client(broker.local_addrs()[0], "c1").await;
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    c.send(Packet::Disconnect).await;
    assert!(c.closed().await);
    broker.shutdown().await;
}

#[tokio::test]
async fn qos1_publish_reaches_a_subscriber_with_retain_0_mqtt_3_3_1_9() {
    let broker = broker(|_| {}).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Raw::client(addr, "sub").await;
    sub.subscribe("a/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::client(addr, "pub").await;
    publ.send(publish("a/b", b"hi", QosPid::AtLeastOnce(pid(9)), true))
        .await;
    assert_eq!(publ.recv().await, Some(Packet::PubAck(pid(9))));
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos(), p.retain),
        ("a/b", &b"hi"[..], QoS::AtLeastOnce, false)
    );
    sub.send(Packet::PubAck(p.pkid().expect("id"))).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_resent_qos2_publish_is_delivered_once_mqtt_4_3_3_2() {
    let broker = broker(|_| {}).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Raw::client(addr, "sub").await;
    sub.subscribe("t", QoS::ExactlyOnce).await;
    let mut publ = Raw::client(addr, "pub").await;
    for _ in 0..2 {
        publ.send(publish("t", b"once", QosPid::ExactlyOnce(pid(3)), false))
            .await;
        assert_eq!(publ.recv().await, Some(Packet::PubRec(pid(3))));
    }
    publ.send(Packet::PubRel(pid(3))).await;
    assert_eq!(publ.recv().await, Some(Packet::PubComp(pid(3))));
    let p = sub.recv_publish().await;
    assert_eq!(p.qos(), QoS::ExactlyOnce);
    assert_eq!(sub.recv_within(QUIET).await, None, "delivered twice");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_new_subscription_gets_the_retained_message_with_retain_1_mqtt_3_3_1_8() {
    let broker = broker(|_| {}).await;
    let addr = broker.local_addrs()[0];
    let mut publ = Raw::client(addr, "pub").await;
    publ.send(publish("r/1", b"kept", QosPid::AtMostOnce, true))
        .await;
    publ.send(Packet::PingReq).await;
    assert_eq!(publ.recv().await, Some(Packet::PingResp));
    let mut sub = Raw::client(addr, "sub").await;
    sub.subscribe("r/+", QoS::AtLeastOnce).await;
    let p = sub.recv_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"kept");
    assert_eq!(p.qos(), QoS::AtMostOnce);
    broker.shutdown().await;
}

#[tokio::test]
async fn the_will_is_published_when_the_connection_drops_mqtt_3_1_2_8() {
    let broker = broker(|_| {}).await;
    let addr = broker.local_addrs()[0];
    let mut watcher = Raw::client(addr, "watcher").await;
    watcher.subscribe("will/#", QoS::AtMostOnce).await;
    let mut connect = Connect::new("dying");
    connect.last_will = Some(LastWill {
        topic: "will/dying".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
    });
    let (dying, ack) = Raw::connect(addr, connect).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    drop(dying);
    let p = watcher.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("will/dying", &b"gone"[..])
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_persistent_session_queues_while_offline_and_resumes_with_session_present() {
    let broker = broker(|_| {}).await;
    let addr = broker.local_addrs()[0];
    let mut connect = Connect::new("p");
    connect.clean_session = false;
    let (mut c, ack) = Raw::connect(addr, connect.clone()).await;
    assert!(!ack.session_present);
    c.subscribe("q", QoS::AtLeastOnce).await;
    c.send(Packet::Disconnect).await;
    assert!(c.closed().await);

    let mut publ = Raw::client(addr, "pub").await;
    publ.send(publish("q", b"m1", QosPid::AtLeastOnce(pid(1)), false))
        .await;
    assert_eq!(publ.recv().await, Some(Packet::PubAck(pid(1))));
    publ.send(publish("q", b"m0", QosPid::AtMostOnce, false))
        .await;

    let (mut c, ack) = Raw::connect(addr, connect).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    let p = c.recv_publish().await;
    assert_eq!(&p.payload[..], b"m1");
    // QoS 0 messages are not queued for an absent client.
    c.send(Packet::PubAck(p.pkid().expect("id"))).await;
    assert_eq!(c.recv_within(QUIET).await, None);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_closes_the_first_mqtt_3_1_4_2() {
    let broker = broker(|_| {}).await;
    let addr = broker.local_addrs()[0];
    let mut first = Raw::client(addr, "same").await;
    let mut second = Raw::client(addr, "same").await;
    assert!(first.closed().await);
    second.send(Packet::PingReq).await;
    assert_eq!(second.recv().await, Some(Packet::PingResp));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_first_packet_other_than_connect_closes_the_connection_mqtt_3_1_0_1() {
    let broker = broker(|_| {}).await;
    let mut c = Raw::tcp(broker.local_addrs()[0]).await;
    c.send(Packet::PingReq).await;
    assert!(c.closed().await);
    broker.shutdown().await;
}

#[tokio::test]
async fn an_unsupported_protocol_level_gets_connack_1_mqtt_3_1_2_2() {
    let broker = broker(|_| {}).await;
    let mut c = Raw::tcp(broker.local_addrs()[0]).await;
    // CONNECT "MQTT" level 5, clean session, keep alive 60, client id "x".
    c.send_bytes(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 1, b'x',
    ])
    .await;
    assert_eq!(
        c.recv().await,
        Some(Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::UnacceptableProtocolVersion,
        }))
    );
    assert!(c.closed().await);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_packet_over_max_packet_size_closes_only_that_connection() {
    let broker = broker(|c| c.limits.max_packet_size = 1024).await;
    let addr = broker.local_addrs()[0];
    let mut good = Raw::client(addr, "good").await;
    let mut bad = Raw::client(addr, "bad").await;
    let big: &'static [u8] = Box::leak(vec![0u8; 2000].into_boxed_slice());
    bad.send(publish("t", big, QosPid::AtMostOnce, false)).await;
    assert!(bad.closed().await);
    good.send(Packet::PingReq).await;
    assert_eq!(good.recv().await, Some(Packet::PingResp));
    broker.shutdown().await;
}

#[tokio::test]
async fn silence_for_one_and_a_half_keep_alives_closes_the_connection_mqtt_3_1_2_24() {
    let broker = broker(|_| {}).await;
    let mut connect = Connect::new("sleepy");
    connect.keep_alive = 1;
    let (mut c, _) = Raw::connect(broker.local_addrs()[0], connect).await;
    let started = std::time::Instant::now();
    assert!(c.closed().await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn connections_over_max_connections_are_refused_with_connack_3() {
    let broker = broker(|c| c.limits.max_connections = 1).await;
    let addr = broker.local_addrs()[0];
    let _first = Raw::client(addr, "one").await;
    let (mut second, ack) = Raw::connect(addr, Connect::new("two")).await;
    assert_eq!(ack.code, ConnectReturnCode::ServerUnavailable);
    assert!(second.closed().await);
    assert_eq!(broker.stats().connections_refused, 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn sys_topics_are_published_and_clients_cannot_publish_into_sys() {
    let broker = broker(|c| c.sys.interval_s = 1).await;
    let addr = broker.local_addrs()[0];
    let mut c = Raw::client(addr, "dash").await;
    c.send(publish(
        "$SYS/broker/version",
        b"fake",
        QosPid::AtMostOnce,
        true,
    ))
    .await;
    c.subscribe("$SYS/broker/version", QoS::AtMostOnce).await;
    let p = c.recv_publish().await;
    assert!(String::from_utf8_lossy(&p.payload).starts_with("midge version"));
    c.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    let p = c.recv_publish().await;
    assert_eq!(&p.payload[..], b"1");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_stall_the_publisher() {
    let broker = broker(|c| c.limits.max_queued_messages = 100).await;
    let addr = broker.local_addrs()[0];
    let mut stuck = Raw::client(addr, "stuck").await;
    stuck.subscribe("flood", QoS::AtMostOnce).await;
    let mut publ = Raw::client(addr, "pub").await;
    let payload: &'static [u8] = Box::leak(vec![1u8; 4096].into_boxed_slice());
    let mut batch = BytesMut::new();
    for _ in 0..5000 {
        encode(
            &publish("flood", payload, QosPid::AtMostOnce, false),
            &mut batch,
        )
        .expect("encode");
    }
    timeout(WAIT, publ.send_bytes(&batch))
        .await
        .expect("publisher never blocked");
    publ.send(Packet::PingReq).await;
    assert_eq!(publ.recv().await, Some(Packet::PingResp));
    assert!(broker.stats().publish_dropped > 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_client_connections() {
    let broker = broker(|_| {}).await;
    let mut c = Raw::client(broker.local_addrs()[0], "c").await;
    timeout(WAIT, broker.shutdown())
        .await
        .expect("shutdown in time");
    assert!(c.closed().await);
}

#[tokio::test]
async fn topics_with_thirty_thousand_levels_are_routed_without_harm() {
    // Past the default limits.max_topic_levels (200) on purpose: the trees
    // must not recurse on a deep topic whatever the configured limit.
    let broker = broker(|c| c.limits.max_topic_levels = 40_000).await;
    let addr = broker.local_addrs()[0];
    let deep: &'static str = Box::leak(vec!["a"; 30_000].join("/").into_boxed_str());
    let mut sub = Raw::client(addr, "deep-sub").await;
    sub.subscribe(&vec!["+"; 30_000].join("/"), QoS::AtMostOnce)
        .await;
    sub.subscribe("#", QoS::AtMostOnce).await;
    let mut publ = Raw::client(addr, "deep-pub").await;
    publ.send(publish(deep, b"x", QosPid::AtMostOnce, true))
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.topic.len(), deep.len());
    drop(sub);
    let mut late = Raw::client(addr, "late").await;
    late.subscribe(&format!("{deep}/#"), QoS::AtMostOnce).await;
    assert!(late.recv_publish().await.retain);
    late.send(Packet::Disconnect).await;
    assert!(late.closed().await);
    let mut check = Raw::client(addr, "check").await;
    check.send(Packet::PingReq).await;
    assert_eq!(check.recv().await, Some(Packet::PingResp));
    broker.shutdown().await;
}

/// Connections spread over three runtimes (this test's and two shard
/// threads): routing, acknowledgements, takeover and shutdown all cross
/// shards.
#[tokio::test]
async fn connections_on_different_shards_route_take_over_and_shut_down() {
    use midge_broker::shards::{ShardThreads, Shards};
    let threads = ShardThreads::start(2).expect("shard threads");
    let mut config = Config {
        listeners: vec![local_listener()],
        ..Config::default()
    };
    config.sys.interval_s = 0;
    config.persistence.enabled = false;
    let shards = Shards::new(threads.handles().to_vec());
    let broker = Broker::start_sharded(config, shards)
        .await
        .expect("broker starts");
    let addr = broker.local_addrs()[0];
    // Six subscribers: two on each runtime, round-robin.
    let mut subs = Vec::new();
    for i in 0..6 {
        let mut s = Raw::client(addr, &format!("s{i}")).await;
        s.subscribe("t/#", QoS::AtLeastOnce).await;
        subs.push(s);
    }
    let mut publisher = Raw::client(addr, "p").await;
    for n in 1..=20u16 {
        publisher
            .send(publish("t/x", b"m", QosPid::AtLeastOnce(pid(n)), false))
            .await;
        assert_eq!(publisher.recv().await, Some(Packet::PubAck(pid(n))));
    }
    for s in &mut subs {
        for _ in 0..20 {
            let p = s.recv_publish().await;
            assert_eq!(&*p.topic, "t/x");
            if let QosPid::AtLeastOnce(id) = p.qos_pid {
                s.send(Packet::PubAck(id)).await;
            }
        }
    }
    // Connections go round-robin: s2 is on the third runtime, this one on
    // the second. It takes the session over [MQTT-3.1.4-2].
    let mut again = Raw::client(addr, "s2").await;
    assert!(subs[2].closed().await, "the old connection is closed");
    again.send(Packet::PingReq).await;
    assert_eq!(again.recv().await, Some(Packet::PingResp));
    broker.shutdown().await;
    assert!(
        again.closed().await,
        "shutdown closes every shard's connections"
    );
    assert!(subs[4].closed().await);
    threads.stop();
}
