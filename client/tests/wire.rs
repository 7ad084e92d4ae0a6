//! The client against a scripted broker on 127.0.0.1: the test plays the
//! broker packet by packet, so it can check exactly what the client sends
//! after a reconnect, how it treats a re-sent QoS 2 message, and that it
//! notices a broker that stops answering.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use midge_client::{
    Client, ConnectError, ConnectReturnCode, ConnectionError, Event, QoS, Reconnect,
};
use midge_protocol::{
    ConnAck, Connect, Packet, PacketId, Publish, QosPid, SubAck, SubscribeReturnCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::within;

/// One accepted connection, speaking packets.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn recv(&mut self) -> Packet {
        within("packet from the client", async {
            loop {
                if let Some(p) =
                    midge_protocol::decode(&mut self.buf, 1 << 20).expect("valid packet")
                {
                    return p;
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "client closed the connection");
            }
        })
        .await
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        midge_protocol::encode(&packet, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    /// Reads CONNECT and answers CONNACK.
    async fn handshake(&mut self, session_present: bool) -> Connect {
        let Packet::Connect(connect) = self.recv().await else {
            panic!("expected CONNECT");
        };
        self.send(Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        }))
        .await;
        connect
    }
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("mqtt://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

async fn accept(listener: &TcpListener) -> Conn {
    let (stream, _) = within("client connects", listener.accept())
        .await
        .expect("accept");
    Conn {
        stream,
        buf: BytesMut::new(),
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn publish_of(p: &Packet) -> &Publish {
    match p {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn fast_reconnect(url: &str) -> midge_client::ClientBuilder {
    Client::builder(url)
        .client_id("wire")
        .clean_session(false)
        .reconnect(Reconnect::exponential(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
}

#[tokio::test]
async fn unacknowledged_publishes_are_resent_in_order_with_dup_after_a_reconnect() {
    let (listener, url) = listen().await;
    let connecting = tokio::spawn(async move { fast_reconnect(&url).connect().await });
    let mut conn = accept(&listener).await;
    let connect = conn.handshake(false).await;
    assert!(!connect.clean_session);
    let client = connecting.await.expect("join").expect("connect");

    let a = client
        .try_publish("t/a", "A", QoS::AtLeastOnce, false)
        .expect("queued");
    let b = client
        .try_publish("t/b", "B", QoS::ExactlyOnce, false)
        .expect("queued");
    let c = client
        .try_publish("t/c", "C", QoS::AtLeastOnce, false)
        .expect("queued");
    let first: Vec<Publish> = [conn.recv().await, conn.recv().await, conn.recv().await]
        .iter()
        .map(|p| publish_of(p).clone())
        .collect();
    assert_eq!(
        first
            .iter()
            .map(|p| p.topic.to_string())
            .collect::<Vec<_>>(),
        ["t/a", "t/b", "t/c"]
    );
    assert!(first.iter().all(|p| !p.dup));
    let pkid_b = first[1].pkid().expect("pkid");
    conn.send(Packet::PubRec(pkid_b)).await;
    assert_eq!(conn.recv().await, Packet::PubRel(pkid_b));
    drop(conn);

    let mut conn = accept(&listener).await;
    conn.handshake(true).await;
    let again = conn.recv().await;
    let again_a = publish_of(&again);
    assert!(again_a.dup && again_a.topic == "t/a" && again_a.pkid() == first[0].pkid());
    assert_eq!(
        conn.recv().await,
        Packet::PubRel(pkid_b),
        "past PUBREC, only PUBREL is re-sent"
    );
    let again = conn.recv().await;
    let again_c = publish_of(&again);
    assert!(again_c.dup && again_c.topic == "t/c" && again_c.pkid() == first[2].pkid());
    conn.send(Packet::PubAck(first[0].pkid().expect("pkid")))
        .await;
    conn.send(Packet::PubComp(pkid_b)).await;
    conn.send(Packet::PubAck(first[2].pkid().expect("pkid")))
        .await;
    for token in [a, b, c] {
        within("publish completes", token)
            .await
            .expect("acknowledged");
    }
}

#[tokio::test]
async fn a_qos2_message_resent_by_the_broker_is_delivered_once() {
    let (listener, url) = listen().await;
    let connecting =
        tokio::spawn(async move { Client::builder(&url).client_id("wire-q2").connect().await });
    let mut conn = accept(&listener).await;
    conn.handshake(false).await;
    let client = connecting.await.expect("join").expect("connect");
    let subscribing = tokio::spawn(async move {
        let sub = client.subscribe("t", QoS::ExactlyOnce).await;
        (client, sub)
    });
    let Packet::Subscribe(subscribe) = conn.recv().await else {
        panic!("expected SUBSCRIBE");
    };
    conn.send(Packet::SubAck(SubAck {
        pkid: subscribe.pkid,
        return_codes: vec![SubscribeReturnCode::Success(QoS::ExactlyOnce)],
    }))
    .await;
    let (_client, sub) = subscribing.await.expect("join");
    let mut sub = sub.expect("subscribed");

    let mut message = Publish::new("t", "once");
    message.qos_pid = QosPid::ExactlyOnce(pid(7));
    conn.send(Packet::Publish(message.clone())).await;
    assert_eq!(conn.recv().await, Packet::PubRec(pid(7)));
    message.dup = true;
    conn.send(Packet::Publish(message)).await;
    assert_eq!(
        conn.recv().await,
        Packet::PubRec(pid(7)),
        "a re-sent PUBLISH is acknowledged again"
    );
    conn.send(Packet::PubRel(pid(7))).await;
    assert_eq!(conn.recv().await, Packet::PubComp(pid(7)));
    conn.send(Packet::Publish(Publish::new("t", "marker")))
        .await;

    assert_eq!(
        &within("message", sub.next())
            .await
            .expect("message")
            .payload[..],
        b"once"
    );
    assert_eq!(
        &within("message", sub.next())
            .await
            .expect("message")
            .payload[..],
        b"marker",
        "the duplicate was not delivered"
    );
}

#[tokio::test]
async fn subscriptions_are_restored_only_when_the_broker_has_no_session() {
    let (listener, url) = listen().await;
    let connecting = tokio::spawn(async move { fast_reconnect(&url).connect().await });
    let mut conn = accept(&listener).await;
    conn.handshake(false).await;
    let client = connecting.await.expect("join").expect("connect");
    let subscribing = {
        let client = client.clone();
        tokio::spawn(async move { client.subscribe("a/#", QoS::AtLeastOnce).await })
    };
    let Packet::Subscribe(subscribe) = conn.recv().await else {
        panic!("expected SUBSCRIBE");
    };
    conn.send(Packet::SubAck(SubAck {
        pkid: subscribe.pkid,
        return_codes: vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)],
    }))
    .await;
    let _sub = subscribing.await.expect("join").expect("subscribed");
    drop(conn);

    // No session: the client subscribes again, with the same filter and QoS.
    let mut conn = accept(&listener).await;
    conn.handshake(false).await;
    let Packet::Subscribe(restored) = conn.recv().await else {
        panic!("expected the SUBSCRIBE that restores the subscription");
    };
    assert_eq!(restored.filters, subscribe.filters);
    conn.send(Packet::SubAck(SubAck {
        pkid: restored.pkid,
        return_codes: vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)],
    }))
    .await;
    drop(conn);

    // Session present: nothing to restore; the next packet is our probe.
    let mut conn = accept(&listener).await;
    conn.handshake(true).await;
    let probe = client
        .try_publish("probe", "", QoS::AtMostOnce, false)
        .expect("queued");
    assert_eq!(publish_of(&conn.recv().await).topic, "probe");
    within("probe", probe).await.expect("sent");
}

#[tokio::test]
async fn a_broker_that_stops_answering_is_detected_by_keep_alive() {
    let (listener, url) = listen().await;
    let connecting = tokio::spawn(async move {
        Client::builder(&url)
            .keep_alive(Duration::from_secs(1))
            .reconnect(Reconnect::disabled())
            .connect()
            .await
    });
    let mut conn = accept(&listener).await;
    conn.handshake(false).await;
    let client = connecting.await.expect("join").expect("connect");
    let mut events = client.events();
    assert_eq!(
        conn.recv().await,
        Packet::PingReq,
        "idle for a keep-alive period"
    );
    // Never answer: the socket stays open but the broker is gone.
    let reason = within("dead connection noticed", async {
        loop {
            match events.next().await {
                Some(Event::Disconnected { reason }) => return reason,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await;
    assert!(
        matches!(reason, ConnectionError::PingTimeout(_)),
        "{reason:?}"
    );
    drop(conn);
}

#[tokio::test]
async fn a_refused_connect_reports_the_return_code_by_name() {
    let (listener, url) = listen().await;
    let connecting =
        tokio::spawn(async move { Client::builder(&url).client_id("nope").connect().await });
    let mut conn = accept(&listener).await;
    let _ = conn.recv().await;
    conn.send(Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::IdentifierRejected,
    }))
    .await;
    let err = connecting.await.expect("join").expect_err("refused");
    assert!(matches!(
        err,
        ConnectError::Refused(ConnectReturnCode::IdentifierRejected)
    ));
    assert!(err.to_string().contains("identifier rejected"), "{err}");
}
