//! A client that publishes to its own subscription faster than it consumes
//! keeps reading while its writes are blocked. Otherwise, once its
//! subscription is full and it stops reading, the broker's output to it backs
//! up, the broker stops reading once too many packets wait to be sent, the
//! client blocks writing, and when the subscription has room again the client
//! cannot read because it is still waiting for the write: both sides stall
//! until the write timeout drops the connection.
//!
//! Reading on while writing must not hide a dead peer: a write that makes
//! no progress for the write timeout still ends the connection.

use std::time::Duration;

use futures::StreamExt;
use midge_broker::config::SysConfig;
use midge_broker::{Broker, Config, ListenerConfig};
use midge_client::ConnectionError;
use midge_client::{Bytes, Client, Event, PublishError, QoS, Reconnect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MESSAGES: usize = 6_000;
const PAYLOAD: usize = 32 * 1024;

/// An in-process midge broker that queues the whole flood for its subscriber
/// (nothing is dropped, so only a stall can fail the test) and sends it with
/// no in-flight limit (so its output to the client is heavy, not just
/// PUBACKs behind a window of 20).
// `..Default::default()` keeps this compiling as listeners gain settings.
#[allow(clippy::needless_update)]
async fn roomy_broker() -> Broker {
    let mut config = Config {
        listeners: vec![ListenerConfig {
            bind: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        }],
        sys: SysConfig { interval_s: 0 },
        ..Default::default()
    };
    config.persistence.enabled = false;
    config.limits.max_queued_messages = 4 * MESSAGES;
    config.limits.max_inflight = 65_535;
    Broker::start(config).await.expect("start midge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_its_own_subscription_keeps_reading_while_writing() {
    let broker = roomy_broker().await;
    let client = Client::builder(&format!("mqtt://{}", broker.local_addrs()[0]))
        .client_id("flood")
        // Publishes are not held back by missing PUBACKs, and the small
        // subscription fills at once, so the client stops reading
        // (SlowConsumer::Block) while it still has much to write.
        .max_inflight(65_000)
        .request_queue(1024)
        .subscription_capacity(16)
        .connect()
        .await
        .expect("connect");
    let mut events = client.events();
    let mut sub = client
        .subscribe("flood", QoS::AtLeastOnce)
        .await
        .expect("subscribe");

    let publisher = tokio::spawn(publish_all(client.clone()));
    let consume = async {
        // A slow start lets both directions back up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..MESSAGES {
            let msg = sub.next().await.expect("subscription ended");
            assert_eq!(msg.payload.len(), PAYLOAD);
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), consume)
        .await
        .is_err()
    {
        panic!("timed out: {MESSAGES} messages of {PAYLOAD} bytes did not arrive within 20 s");
    }
    tokio::time::timeout(Duration::from_secs(20), publisher)
        .await
        .expect("publishes acknowledged within 20 s")
        .expect("publisher task");

    while let Ok(Some(event)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
        assert!(
            !matches!(event, Event::Disconnected { .. }),
            "the connection dropped: {event:?}"
        );
    }
    client.disconnect().await.expect("disconnect");
    broker.shutdown().await;
}

/// Queues every publish without waiting for its PUBACK, then waits for all
/// the PUBACKs.
async fn publish_all(client: Client) {
    let payload = Bytes::from(vec![0x5a; PAYLOAD]);
    let mut tokens = Vec::with_capacity(MESSAGES);
    for _ in 0..MESSAGES {
        loop {
            match client.try_publish("flood", payload.clone(), QoS::AtLeastOnce, false) {
                Ok(token) => break tokens.push(token),
                Err(PublishError::QueueFull) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => panic!("publish: {e}"),
            }
        }
    }
    for token in tokens {
        token.await.expect("puback");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_making_no_progress_for_the_write_timeout_drops_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A broker that accepts the connection, then never reads again.
    let broker = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut connect = [0u8; 256];
        let _ = socket.read(&mut connect).await.expect("CONNECT");
        socket
            .write_all(&[0x20, 0x02, 0x00, 0x00])
            .await
            .expect("CONNACK");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let client = Client::builder(&format!("mqtt://{addr}"))
        .write_timeout(Duration::from_secs(1))
        .reconnect(Reconnect::disabled())
        .connect()
        .await
        .expect("connect");
    let mut events = client.events();
    let payload = Bytes::from(vec![0u8; 64 * 1024]);
    // Far more than the socket buffers hold; QoS 0 is not held back by
    // acknowledgements that never come.
    for _ in 0..1_000 {
        if client
            .try_publish("stuck", payload.clone(), QoS::AtMostOnce, false)
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await.expect("events ended") {
                Event::Disconnected { reason } => break reason,
                _ => continue,
            }
        }
    })
    .await
    .expect("the stuck connection was dropped within 10 s");
    assert!(
        matches!(reason, ConnectionError::WriteTimeout(t) if t == Duration::from_secs(1)),
        "{reason:?}"
    );
    broker.abort();
}
