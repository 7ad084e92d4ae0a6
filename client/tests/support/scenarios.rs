//! Library scenarios written once and run against every broker: each test
//! file supplies a [`TestBroker`] (Mosquitto as a process, midge in-process).

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use midge_client::QoS;
use midge_client::{
    Client, ConnectError, ConnectReturnCode, Event, Message, PublishError, Reconnect, SlowConsumer,
    Status, Subscription,
};

use super::within;

/// A broker the scenarios can talk to, stop and start again.
pub trait TestBroker {
    /// The plain MQTT port on 127.0.0.1.
    fn port(&self) -> u16;
    /// Stops the broker abruptly, dropping every connection.
    fn stop(&mut self) -> impl Future<Output = ()>;
    /// Starts it again on the same port.
    fn restart(&mut self) -> impl Future<Output = ()>;
    /// `mqtt://127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port())
    }
}

impl TestBroker for super::Mosquitto {
    fn port(&self) -> u16 {
        self.port
    }
    async fn stop(&mut self) {
        self.kill();
    }
    async fn restart(&mut self) {
        super::Mosquitto::restart(self);
    }
}

/// A client with reconnecting off unless the test wants it.
pub async fn client(broker: &impl TestBroker, id: &str) -> Client {
    within(
        "connect",
        Client::builder(&broker.url())
            .client_id(id)
            .reconnect(Reconnect::disabled())
            .connect(),
    )
    .await
    .expect("connect")
}

/// The next message, within the test timeout.
pub async fn next(sub: &mut Subscription) -> Message {
    within("message", sub.next())
        .await
        .expect("subscription ended")
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).expect("qos")
}

/// Every publish QoS to every subscription QoS: delivered once, at the
/// lower of the two.
pub async fn every_qos_both_ways(broker: &impl TestBroker) {
    let subscriber = client(broker, "qos-sub").await;
    let publisher = client(broker, "qos-pub").await;
    for p in 0..=2u8 {
        for s in 0..=2u8 {
            let topic = format!("qos/{p}{s}");
            let mut sub = within("subscribe", subscriber.subscribe(&topic, qos(s)))
                .await
                .expect("subscribe");
            assert_eq!(sub.granted_qos(), qos(s));
            let payload = format!("pub {p} sub {s}");
            within(
                "publish",
                publisher.publish(topic.clone(), payload.clone(), qos(p), false),
            )
            .await
            .expect("publish completes");
            let msg = next(&mut sub).await;
            assert_eq!(msg.topic, topic.as_str());
            assert_eq!(&msg.payload[..], payload.as_bytes());
            assert_eq!(
                msg.qos,
                qos(p.min(s)),
                "delivered QoS is min(publish, granted)"
            );
            assert!(!msg.retain);
        }
    }
    within("disconnect", publisher.disconnect())
        .await
        .expect("disconnect");
    within("disconnect", subscriber.disconnect())
        .await
        .expect("disconnect");
}

/// A burst of QoS 2 messages arrives exactly once each, in order.
pub async fn qos2_burst_arrives_exactly_once_in_order(broker: &impl TestBroker) {
    let subscriber = client(broker, "burst-sub").await;
    let publisher = within(
        "connect",
        Client::builder(&broker.url())
            .client_id("burst-pub")
            .request_queue(256)
            .reconnect(Reconnect::disabled())
            .connect(),
    )
    .await
    .expect("connect");
    let mut sub = within("subscribe", subscriber.subscribe("burst", QoS::ExactlyOnce))
        .await
        .expect("subscribe");
    // try_publish keeps the order of the calls; concurrent publish() calls
    // would not promise any order among themselves.
    let tokens: Vec<_> = (0..200)
        .map(|i| {
            publisher
                .try_publish("burst", i.to_string(), QoS::ExactlyOnce, false)
                .expect("queued")
        })
        .collect();
    for token in tokens {
        within("pubcomp", token).await.expect("publish completes");
    }
    within(
        "publish",
        publisher.publish("burst", "end", QoS::ExactlyOnce, false),
    )
    .await
    .expect("end");
    let mut got = Vec::new();
    loop {
        let msg = next(&mut sub).await;
        if &msg.payload[..] == b"end" {
            break;
        }
        got.push(String::from_utf8(msg.payload.to_vec()).expect("utf8"));
    }
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
}

/// A retained message comes with the retain flag; unsubscribing stops
/// delivery and ends the stream.
pub async fn retained_then_unsubscribe(broker: &impl TestBroker) {
    let c = client(broker, "retain-client").await;
    within(
        "publish",
        c.publish("keep/me", "stored", QoS::AtLeastOnce, true),
    )
    .await
    .expect("publish");
    let mut sub = within("subscribe", c.subscribe("keep/#", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let msg = next(&mut sub).await;
    assert!(msg.retain);
    assert_eq!(&msg.payload[..], b"stored");
    within("unsubscribe", c.unsubscribe("keep/#"))
        .await
        .expect("unsubscribe");
    assert!(
        within("stream end", sub.next()).await.is_none(),
        "stream ends after unsubscribe"
    );
    within("clear", c.publish("keep/me", "", QoS::AtLeastOnce, true))
        .await
        .expect("clear retained");
    within("disconnect", c.disconnect())
        .await
        .expect("disconnect");
}

/// The broker is killed and restarted on the same port: the client
/// reconnects, re-subscribes (no session), and QoS 1 publishes made during
/// the outage are delivered afterwards, in order.
pub async fn reconnect_restores_subscriptions_and_delivers_offline_publishes(
    broker: &mut impl TestBroker,
) {
    let c = within(
        "connect",
        Client::builder(&broker.url())
            .client_id("reconnector")
            .reconnect(Reconnect::exponential(
                Duration::from_millis(50),
                Duration::from_millis(400),
            ))
            .connect(),
    )
    .await
    .expect("connect");
    let mut events = c.events();
    let mut sub = within("subscribe", c.subscribe("outage/#", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    within(
        "publish",
        c.publish("outage/before", "0", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    assert_eq!(&next(&mut sub).await.payload[..], b"0");

    broker.stop().await;
    within("disconnected event", async {
        while let Some(event) = events.next().await {
            if matches!(event, Event::Disconnected { .. }) {
                return;
            }
        }
        panic!("events ended");
    })
    .await;
    assert_ne!(c.status(), Status::Closed);
    let tokens: Vec<_> = (1..=5)
        .map(|i| {
            c.try_publish("outage/during", i.to_string(), QoS::AtLeastOnce, false)
                .expect("buffered")
        })
        .collect();

    broker.restart().await;
    within("connected event", async {
        while let Some(event) = events.next().await {
            if let Event::Connected { session_present } = event {
                assert!(!session_present, "a restarted broker has no session");
                return;
            }
        }
        panic!("events ended");
    })
    .await;
    for token in tokens {
        within("offline publish completes", token)
            .await
            .expect("acknowledged after reconnect");
    }
    for i in 1..=5 {
        let msg = next(&mut sub).await;
        assert_eq!(msg.topic, "outage/during");
        assert_eq!(&msg.payload[..], i.to_string().as_bytes(), "in order");
    }
    // The restored subscription also serves other clients' messages.
    let other = client(broker, "after-outage").await;
    within(
        "publish",
        other.publish("outage/after", "later", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    assert_eq!(&next(&mut sub).await.payload[..], b"later");
    within("disconnect", c.disconnect())
        .await
        .expect("disconnect");
}

/// With reconnecting off, a lost connection fails waiting publishes and
/// closes the client.
pub async fn without_reconnect_a_lost_connection_closes_the_client(broker: &mut impl TestBroker) {
    let c = client(broker, "no-reconnect").await;
    let mut events = c.events();
    broker.stop().await;
    within("closed", async {
        while let Some(event) = events.next().await {
            if matches!(event, Event::Closed) {
                return;
            }
        }
    })
    .await;
    assert_eq!(c.status(), Status::Closed);
    let err = within("publish", c.publish("t", "x", QoS::AtLeastOnce, false))
        .await
        .expect_err("closed");
    assert_eq!(err, PublishError::Closed);
    broker.restart().await;
}

/// While offline, publishes beyond the offline buffer fail at once.
pub async fn a_full_offline_buffer_fails_fast(broker: &mut impl TestBroker) {
    let c = within(
        "connect",
        Client::builder(&broker.url())
            .client_id("buffer-full")
            .offline_buffer(2)
            .reconnect(Reconnect::exponential(
                Duration::from_secs(30),
                Duration::from_secs(30),
            ))
            .connect(),
    )
    .await
    .expect("connect");
    let mut events = c.events();
    broker.stop().await;
    within("disconnected", async {
        while let Some(event) = events.next().await {
            if matches!(event, Event::Disconnected { .. }) {
                return;
            }
        }
    })
    .await;
    let first = c
        .try_publish("t", "1", QoS::AtLeastOnce, false)
        .expect("queued");
    let second = c
        .try_publish("t", "2", QoS::AtLeastOnce, false)
        .expect("queued");
    let err = within(
        "third publish",
        c.publish("t", "3", QoS::AtLeastOnce, false),
    )
    .await
    .expect_err("buffer is full");
    assert_eq!(err, PublishError::BufferFull { capacity: 2 });
    let disconnect = within("disconnect", c.disconnect()).await;
    assert!(disconnect.is_err(), "two publishes were never sent");
    assert_eq!(within("token", first).await, Err(PublishError::Closed));
    assert_eq!(within("token", second).await, Err(PublishError::Closed));
    broker.restart().await;
}

/// `disconnect` waits for queued QoS 2 publishes to complete.
pub async fn disconnect_flushes_in_flight_publishes(broker: &impl TestBroker) {
    let subscriber = client(broker, "flush-sub").await;
    let mut sub = within("subscribe", subscriber.subscribe("flush", QoS::ExactlyOnce))
        .await
        .expect("subscribe");
    let publisher = client(broker, "flush-pub").await;
    let tokens: Vec<_> = (0..50)
        .map(|i| {
            publisher
                .try_publish("flush", i.to_string(), QoS::ExactlyOnce, false)
                .expect("queued")
        })
        .collect();
    within("disconnect", publisher.disconnect())
        .await
        .expect("clean disconnect");
    for token in tokens {
        assert_eq!(within("token", token).await, Ok(()));
    }
    for i in 0..50 {
        assert_eq!(&next(&mut sub).await.payload[..], i.to_string().as_bytes());
    }
}

/// A full subscription under `DropNewest` drops and counts; others flow.
pub async fn a_slow_subscription_drops_and_counts_under_drop_newest(broker: &impl TestBroker) {
    let c = within(
        "connect",
        Client::builder(&broker.url())
            .client_id("slow-drop")
            .subscription_capacity(2)
            .slow_consumer(SlowConsumer::DropNewest)
            .reconnect(Reconnect::disabled())
            .connect(),
    )
    .await
    .expect("connect");
    let mut slow = within("subscribe", c.subscribe("slow", QoS::AtMostOnce))
        .await
        .expect("subscribe");
    let mut marker = within("subscribe", c.subscribe("marker", QoS::AtMostOnce))
        .await
        .expect("subscribe");
    for i in 0..10 {
        within(
            "publish",
            c.publish("slow", i.to_string(), QoS::AtMostOnce, false),
        )
        .await
        .expect("publish");
    }
    within(
        "publish",
        c.publish("marker", "done", QoS::AtMostOnce, false),
    )
    .await
    .expect("publish");
    next(&mut marker).await;
    assert_eq!(slow.dropped(), 8);
    assert_eq!(&next(&mut slow).await.payload[..], b"0");
    assert_eq!(&next(&mut slow).await.payload[..], b"1");
}

/// A full subscription under `Block` loses nothing.
pub async fn a_slow_subscription_loses_nothing_under_block(broker: &impl TestBroker) {
    let c = within(
        "connect",
        Client::builder(&broker.url())
            .client_id("slow-block")
            .subscription_capacity(1)
            .reconnect(Reconnect::disabled())
            .connect(),
    )
    .await
    .expect("connect");
    let mut sub = within("subscribe", c.subscribe("block", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let publisher = client(broker, "block-pub").await;
    for i in 0..20 {
        within(
            "publish",
            publisher.publish("block", i.to_string(), QoS::AtLeastOnce, false),
        )
        .await
        .expect("publish");
    }
    for i in 0..20 {
        assert_eq!(&next(&mut sub).await.payload[..], i.to_string().as_bytes());
    }
    assert_eq!(sub.dropped(), 0);
}

/// A wrong password is refused with the CONNACK code named in the error.
pub async fn wrong_password_is_refused_by_name(
    broker: &impl TestBroker,
    user: &str,
    expected: &[ConnectReturnCode],
) {
    let url = format!("mqtt://{user}:definitely-wrong@127.0.0.1:{}", broker.port());
    let err = within(
        "connect",
        Client::builder(&url).client_id("intruder").connect(),
    )
    .await
    .expect_err("refused");
    let code = err
        .return_code()
        .unwrap_or_else(|| panic!("expected a CONNACK refusal, got {err}"));
    assert!(expected.contains(&code), "unexpected code {code:?}");
    let text = err.to_string();
    assert!(text.contains("Connection Refused"), "{text}");
    assert!(text.contains(&format!("{code:?}")), "{text}");
    assert!(matches!(err, ConnectError::Refused(_)));
}

/// The right password is accepted.
pub async fn right_password_is_accepted(broker: &impl TestBroker, user: &str, password: &str) {
    let url = format!("mqtt://{user}:{password}@127.0.0.1:{}", broker.port());
    let c = within(
        "connect",
        Client::builder(&url).client_id("alice-client").connect(),
    )
    .await
    .expect("accepted");
    within("disconnect", c.disconnect())
        .await
        .expect("disconnect");
}

/// `mqtts://host:port`.
pub fn tls_url(port: u16, host: &str) -> String {
    format!("mqtts://{host}:{port}")
}

/// Subscribes at QoS 1, publishes `secret` at `qos` to itself, expects it
/// back, and disconnects: proof that a TLS connection carries MQTT.
pub async fn tls_roundtrip(client: Client, qos: QoS) {
    let mut sub = within("subscribe", client.subscribe("tls/t", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    within("publish", client.publish("tls/t", "secret", qos, false))
        .await
        .expect("publish");
    assert_eq!(&next(&mut sub).await.payload[..], b"secret");
    within("disconnect", client.disconnect())
        .await
        .expect("disconnect");
}
