//! Mosquitto as a peer: a real Mosquitto bridge connected to midge, both
//! ways, with its defaults (`try_private true`: CONNECT level 0x84; state
//! notifications on `$SYS/broker/connection/<name>/state`, with a will).
//! Every message crosses once and comes back never: midge does not send a
//! bridge what the bridge published, or a two-way bridge would loop.

mod support;

use std::time::Duration;

use futures::StreamExt;
use midge_client::{Message, QoS, Subscription};
use support::midge::Midge;
use support::scenarios::{client, next, TestBroker};
use support::{within, Mosquitto};

/// The messages that arrive on `sub` until it is quiet for `quiet`.
async fn drain(sub: &mut Subscription, quiet: Duration) -> Vec<Message> {
    let mut got = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(quiet, sub.next()).await {
        got.push(msg);
    }
    got
}

fn topics(msgs: &[Message]) -> Vec<String> {
    let mut t: Vec<String> = msgs.iter().map(|m| m.topic.to_string()).collect();
    t.sort();
    t
}

#[tokio::test]
async fn a_mosquitto_bridge_carries_each_message_once_both_ways() {
    let midge = Midge::start().await;
    let bridge = format!(
        "connection to-midge\n\
         address 127.0.0.1:{}\n\
         topic bridge/# both 1\n\
         restart_timeout 1\n",
        midge.port()
    );
    let mosquitto = Mosquitto::start_with(&bridge);

    // The bridge announces itself with a retained "1" (its will is "0").
    let watcher = client(&midge, "state-watch").await;
    let mut state = within(
        "subscribe",
        watcher.subscribe("$SYS/broker/connection/+/state", QoS::AtLeastOnce),
    )
    .await
    .expect("subscribe");
    let up = next(&mut state).await;
    // Mosquitto names the bridge's client HOSTNAME.to-midge.
    let topic: &str = up.topic.as_ref();
    assert!(
        topic.starts_with("$SYS/broker/connection/") && topic.ends_with("to-midge/state"),
        "{topic}"
    );
    assert_eq!(&up.payload[..], b"1", "bridge state: {:?}", mosquitto.log());

    let on_midge = client(&midge, "sub-on-midge").await;
    let mut midge_sub = within(
        "subscribe",
        on_midge.subscribe("bridge/#", QoS::AtLeastOnce),
    )
    .await
    .expect("subscribe");
    let on_mosquitto = client(&mosquitto, "sub-on-mosquitto").await;
    let mut mosquitto_sub = within(
        "subscribe",
        on_mosquitto.subscribe("bridge/#", QoS::AtLeastOnce),
    )
    .await
    .expect("subscribe");
    // The bridge's own subscriptions on both sides are in place once a
    // message crosses: retry a probe until it does.
    let probe = client(&mosquitto, "probe").await;
    within("the bridge carries a probe", async {
        loop {
            probe
                .publish("bridge/probe", "p", QoS::AtLeastOnce, false)
                .await
                .expect("probe");
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(300), midge_sub.next()).await
            {
                break;
            }
        }
    })
    .await;
    let settle = Duration::from_millis(500);
    drain(&mut midge_sub, settle).await;
    drain(&mut mosquitto_sub, settle).await;

    let to_midge = client(&midge, "pub-on-midge").await;
    within(
        "publish",
        to_midge.publish("bridge/from-midge", "m", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    within(
        "publish",
        probe.publish("bridge/from-mosquitto", "q", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");

    let want = vec![
        "bridge/from-midge".to_owned(),
        "bridge/from-mosquitto".to_owned(),
    ];
    let got = drain(&mut midge_sub, Duration::from_secs(1)).await;
    assert_eq!(topics(&got), want, "on midge");
    let got = drain(&mut mosquitto_sub, Duration::from_secs(1)).await;
    assert_eq!(
        topics(&got),
        want,
        "on Mosquitto (a copy echoed back by midge would show twice)"
    );
}
