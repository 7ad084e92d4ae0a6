//! Broker scenarios: a subscriber that stops reading never stalls the
//! publisher or other subscribers, and never makes the broker buffer its
//! backlog without bound: QoS 0 is dropped and counted, QoS 1/2 is bounded
//! by the session queue. A subscriber that reads, only slower than its
//! publisher, slows the publisher down instead of losing messages.
//!
//! These tests measure this process's resident memory, so they run one at a
//! time, each on its own runtime.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use midge_protocol::{Packet, QoS};
use support::*;
use tokio::time::Instant;

/// One at a time: the memory bound is measured for the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` alone on a two-worker runtime.
fn serial<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(test());
}

const PAYLOAD: usize = 4096;
/// 64 MiB of QoS 0 traffic: far more than socket buffers and the
/// 1000-message queue hold together.
const FLOOD: usize = 16_384;

#[test]
fn slow_qos0_subscriber_does_not_stall_publisher_or_others_and_is_dropped_and_counted() {
    serial(|| async {
        let broker = TestBroker::start_with(|c| c.sys.interval_s = 1).await;
        // Subscribes and then never reads again: its socket buffers fill up.
        let mut slow = broker.client("slow").await;
        slow.subscribe("flood/#", QoS::AtMostOnce).await;
        let mut fast = broker.client("fast").await;
        fast.subscribe("flood/#", QoS::AtLeastOnce).await;
        let reader = tokio::spawn(async move {
            // Reads until the end marker; QoS 0 messages may be dropped.
            loop {
                let p = fast.recv_publish().await;
                fast.ack(&p).await;
                if &*p.topic == "flood/end" {
                    return;
                }
            }
        });
        let mut publisher = broker.client("pub").await;
        let payload = vec![0xab; PAYLOAD];
        let rss_start = vm_rss_kib();
        let mut rss_peak = rss_start;
        let started = Instant::now();
        for _ in 0..FLOOD / 256 {
            let chunk = (0..256).map(|_| {
                Packet::Publish(publish_packet(
                    "flood/data",
                    &payload,
                    QoS::AtMostOnce,
                    pid(1),
                    false,
                ))
            });
            publisher.send_all(chunk).await;
            rss_peak = rss_peak.max(vm_rss_kib());
        }
        publisher
            .publish("flood/end", b"end", QoS::AtLeastOnce, false)
            .await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(30),
            "publishing took {elapsed:?}"
        );
        tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("the fast subscriber got the end marker in time")
            .expect("the reader task");
        rss_peak = rss_peak.max(vm_rss_kib());
        let growth = rss_peak.saturating_sub(rss_start);
        eprintln!("VmRSS start {rss_start} KiB, peak {rss_peak} KiB");
        // The slow client's backlog is bounded by its queue (about 4 MiB
        // here) plus buffers, not by the 64 MiB published.
        assert!(
            growth < 40 * 1024,
            "VmRSS grew by {growth} KiB while a slow subscriber fell behind"
        );
        let mut dashboard = broker.client("dashboard").await;
        dashboard
            .subscribe("$SYS/broker/publish/messages/dropped", QoS::AtMostOnce)
            .await;
        dashboard
            .wait_for_number("$SYS/broker/publish/messages/dropped", |n| n >= 1)
            .await;
        drop(slow);
        broker.shutdown().await;
    });
}

#[test]
fn slow_qos1_subscriber_does_not_stall_publisher() {
    serial(|| async {
        let broker = TestBroker::start_with(|c| c.limits.max_queued_messages = 100).await;
        // A persistent QoS 1 subscriber that never acknowledges nor reads.
        let (mut slow, _) = broker.persistent("slow").await;
        slow.subscribe("q1flood/#", QoS::AtLeastOnce).await;
        let mut fast = broker.client("fast").await;
        fast.subscribe("q1flood/#", QoS::AtLeastOnce).await;
        let mut publisher = broker.client("pub").await;
        let started = Instant::now();
        for i in 0..2_000u16 {
            publisher
                .publish("q1flood/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
                .await;
            // The other subscriber keeps up, in order.
            let got = fast.recv_and_ack().await;
            assert_eq!(&got.payload[..], &i.to_be_bytes());
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(30),
            "2000 QoS 1 round trips took {elapsed:?}"
        );
        drop(slow);
        broker.shutdown().await;
    });
}

#[test]
fn a_subscriber_slower_than_its_publisher_slows_the_publisher_instead_of_dropping() {
    serial(|| async {
        // A small queue, so an unpaused publisher would overflow it at once.
        let broker = TestBroker::start_with(|c| c.limits.max_queued_messages = 100).await;
        let mut sub = broker.client("reader").await;
        sub.subscribe("bp/#", QoS::AtMostOnce).await;
        let mut publisher = broker.client("pub").await;
        const N: u32 = 20_000;
        let reader = tokio::spawn(async move {
            // Decodes one packet at a time: slower than the publisher's
            // batched writes.
            for i in 0..N {
                let p = sub.recv_publish().await;
                assert_eq!(&p.payload[..], &i.to_be_bytes(), "in order, none lost");
            }
        });
        for chunk in 0..N / 500 {
            let packets = (chunk * 500..(chunk + 1) * 500).map(|i| {
                Packet::Publish(publish_packet(
                    "bp/t",
                    &i.to_be_bytes(),
                    QoS::AtMostOnce,
                    pid(1),
                    false,
                ))
            });
            publisher.send_all(packets).await;
        }
        tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("every message arrived in time")
            .expect("the reader task");
        broker.shutdown().await;
    });
}
