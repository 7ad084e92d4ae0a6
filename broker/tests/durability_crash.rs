//! Crash tests: `midge` as a child process on a temporary data directory is
//! killed with SIGKILL at a random point while a publisher streams
//! numbered QoS 1 (or QoS 2) messages to an offline persistent subscriber
//! and an online one, and restarted. Whatever the publisher saw
//! acknowledged (PUBACK, PUBREC) is delivered after the restart, at QoS 2
//! exactly once; the sessions are present; the last acknowledged retained
//! message is back. Several rounds on one directory, random kill points.

mod durability_support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use durability_support::{free_port, Event, Midge, Raw};
use midge_protocol::{Connect, Packet, PacketId, Publish, QoS, QosPid, Subscribe, SubscribeFilter};
use rand::Rng;
use tokio::time::Instant;

/// Rounds per QoS: each kills the broker once.
const ROUNDS: usize = 3;
/// Most messages the publisher has unacknowledged.
const WINDOW: usize = 32;
/// Every this many messages, one also goes to the retained topic.
const RETAIN_EVERY: u64 = 10;
/// Messages per round at most, so that a round stays short.
const MAX_MESSAGES: u64 = 3000;

fn connect(id: &str, clean: bool) -> Connect {
    let mut c = Connect::new(id);
    c.clean_session = clean;
    c.keep_alive = 0;
    c
}

fn number(p: &Publish) -> u64 {
    String::from_utf8_lossy(&p.payload)
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {p:?}"))
}

/// A subscriber's side of the QoS flows, kept across reconnects as a
/// client's persistent session is: what reached the application, and the
/// QoS 2 packet ids received and not yet released [MQTT-4.3.3-2].
#[derive(Default)]
struct Receiver {
    delivered: Vec<u64>,
    awaiting_pubrel: HashSet<PacketId>,
}

impl Receiver {
    /// Reads and acknowledges until the connection ends, `done` holds, or
    /// `within` passes with nothing to read.
    async fn run(&mut self, raw: &mut Raw, within: Duration, done: impl Fn(&Receiver) -> bool) {
        while !done(self) {
            match raw.next(within).await {
                Event::Packet(Packet::Publish(p)) => {
                    match p.qos_pid {
                        QosPid::AtLeastOnce(id) => {
                            self.delivered.push(number(&p));
                            raw.queue(Packet::PubAck(id));
                        }
                        QosPid::ExactlyOnce(id) => {
                            // Method B: delivered on the first PUBLISH only.
                            if self.awaiting_pubrel.insert(id) {
                                self.delivered.push(number(&p));
                            }
                            raw.queue(Packet::PubRec(id));
                        }
                        QosPid::AtMostOnce => panic!("QoS 0 delivery: {p:?}"),
                    }
                    raw.flush().await;
                }
                Event::Packet(Packet::PubRel(id)) => {
                    self.awaiting_pubrel.remove(&id);
                    raw.queue(Packet::PubComp(id));
                    raw.flush().await;
                }
                Event::Packet(other) => panic!("unexpected {other:?}"),
                Event::Closed | Event::Timeout => return,
            }
        }
    }
}

/// What the publisher saw.
#[derive(Default)]
struct Sent {
    acked: Vec<u64>,
    /// The highest retained value acknowledged, and the highest sent.
    retained_acked: Option<u64>,
    retained_sent: Option<u64>,
}

/// Streams numbered messages until the connection dies; records what was
/// acknowledged (PUBACK at QoS 1, PUBREC at QoS 2).
async fn publish_until_killed(raw: &mut Raw, topic: &str, ret: &str, qos: QoS, sent: &mut Sent) {
    let mut inflight: HashMap<u16, (u64, bool)> = HashMap::new();
    let mut next_pkid: u16 = 0;
    let mut n = 0u64;
    loop {
        while inflight.len() < WINDOW && n < MAX_MESSAGES {
            let retain = n % RETAIN_EVERY == RETAIN_EVERY - 1 && !inflight.values().any(|v| v.1);
            loop {
                next_pkid = next_pkid.wrapping_add(1).max(1);
                if !inflight.contains_key(&next_pkid) {
                    break;
                }
            }
            let id = PacketId::new(next_pkid).expect("non-zero");
            let (t, value) = match retain {
                true => (ret, sent.retained_sent.map_or(0, |v| v + 1)),
                false => (topic, n),
            };
            raw.queue(Packet::Publish(Publish {
                dup: false,
                qos_pid: QosPid::new(qos, id),
                retain,
                topic: t.into(),
                payload: Bytes::from(value.to_string()),
            }));
            inflight.insert(next_pkid, (value, retain));
            if retain {
                sent.retained_sent = Some(value);
            } else {
                n += 1;
            }
        }
        raw.flush().await;
        let on_ack = |id: PacketId, sent: &mut Sent| {
            let Some(&(value, retain)) = inflight.get(&id.get()) else {
                return;
            };
            match retain {
                true => sent.retained_acked = Some(value),
                false => sent.acked.push(value),
            }
        };
        match raw.next(Duration::from_secs(10)).await {
            Event::Packet(Packet::PubAck(id)) => {
                on_ack(id, sent);
                inflight.remove(&id.get());
            }
            Event::Packet(Packet::PubRec(id)) => {
                on_ack(id, sent);
                raw.queue(Packet::PubRel(id));
            }
            Event::Packet(Packet::PubComp(id)) => {
                inflight.remove(&id.get());
            }
            Event::Packet(other) => panic!("publisher got {other:?}"),
            Event::Closed => return,
            Event::Timeout => panic!("the broker stopped acknowledging"),
        }
    }
}

async fn subscribe(addr: std::net::SocketAddr, id: &str, filter: &str, qos: QoS) -> Raw {
    let (mut raw, _) = Raw::connect(addr, connect(id, false)).await;
    raw.queue(Packet::Subscribe(Subscribe {
        pkid: PacketId::new(1).expect("non-zero"),
        filters: vec![SubscribeFilter {
            filter: filter.into(),
            qos,
        }],
    }));
    raw.flush().await;
    match raw.next(Duration::from_secs(10)).await {
        Event::Packet(Packet::SubAck(_)) => raw,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn assert_all_delivered(who: &str, got: &Receiver, acked: &[u64], qos: QoS, log: &str) {
    let have: HashSet<u64> = got.delivered.iter().copied().collect();
    let missing: Vec<u64> = acked
        .iter()
        .filter(|n| !have.contains(n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{who}: {} acknowledged messages lost, e.g. {:?}\nbroker log:\n{log}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    if qos == QoS::ExactlyOnce {
        assert_eq!(
            have.len(),
            got.delivered.len(),
            "{who}: a QoS 2 message was delivered twice\nbroker log:\n{log}"
        );
    }
}

async fn rounds(qos: QoS) {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let port = free_port();
    let mut rng = rand::rng();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut midge = Midge::start(work.path(), &data, port, &format!("r{round}a")).await;
        let (topic, ret) = (format!("crash/{round}/n"), format!("crash-ret/{round}"));
        let filter = format!("crash/{round}/#");
        let (off_id, on_id) = (format!("off-{round}"), format!("on-{round}"));
        // The offline subscriber subscribes and goes away.
        let raw = subscribe(midge.addr, &off_id, &filter, qos).await;
        drop(raw);
        // The online one reads in a task of its own until the broker dies.
        let mut online = subscribe(midge.addr, &on_id, &filter, qos).await;
        let reader = tokio::spawn(async move {
            let mut got = Receiver::default();
            got.run(&mut online, Duration::from_secs(30), |_| false)
                .await;
            got
        });
        let (mut publisher, _) =
            Raw::connect(midge.addr, connect(&format!("pub-{round}"), true)).await;
        let mut sent = Sent::default();
        let kill_after = Duration::from_millis(rng.random_range(20..300));
        tokio::select! {
            _ = tokio::time::sleep(kill_after) => {}
            _ = publish_until_killed(&mut publisher, &topic, &ret, qos, &mut sent) => {
                panic!("the publisher stopped before the kill");
            }
        }
        midge.kill();
        let mut online_got = reader.await.expect("reader task");
        assert!(
            sent.acked.len() > 10,
            "round {round}: only {} messages acknowledged in {kill_after:?}",
            sent.acked.len()
        );

        let killed = Instant::now();
        let mut midge = Midge::start(work.path(), &data, port, &format!("r{round}b")).await;
        let restarted = killed.elapsed();
        let acked = sent.acked.clone();
        let all_in = |r: &Receiver| {
            let have: HashSet<u64> = r.delivered.iter().copied().collect();
            acked.iter().all(|n| have.contains(n)) && r.awaiting_pubrel.is_empty()
        };
        let (mut online, present) = Raw::connect(midge.addr, connect(&on_id, false)).await;
        assert!(
            present,
            "round {round}: the online subscriber's session is present"
        );
        online_got
            .run(&mut online, Duration::from_secs(10), &all_in)
            .await;
        online_got
            .run(&mut online, Duration::from_millis(300), |_| false)
            .await;
        let (mut offline, present) = Raw::connect(midge.addr, connect(&off_id, false)).await;
        assert!(
            present,
            "round {round}: the offline subscriber's session is present"
        );
        let mut offline_got = Receiver::default();
        offline_got
            .run(&mut offline, Duration::from_secs(10), &all_in)
            .await;
        offline_got
            .run(&mut offline, Duration::from_millis(300), |_| false)
            .await;
        let log = midge.log();
        assert_all_delivered("online", &online_got, &sent.acked, qos, &log);
        assert_all_delivered("offline", &offline_got, &sent.acked, qos, &log);

        // The retained topic holds the last acknowledged value or one sent
        // after it (acknowledged or not, it was on disk when the kill came).
        if let Some(acked) = sent.retained_acked {
            let (mut reader, _) = Raw::connect(midge.addr, connect("ret-reader", true)).await;
            reader.queue(Packet::Subscribe(Subscribe {
                pkid: PacketId::new(1).expect("non-zero"),
                filters: vec![SubscribeFilter {
                    filter: ret.as_str().into(),
                    qos: QoS::AtMostOnce,
                }],
            }));
            reader.flush().await;
            let mut value = None;
            while let Event::Packet(p) = reader.next(Duration::from_secs(5)).await {
                if let Packet::Publish(p) = p {
                    value = Some(number(&p));
                    break;
                }
            }
            let value = value.unwrap_or_else(|| panic!("round {round}: retained lost\n{log}"));
            let last_sent = sent.retained_sent.unwrap_or(acked);
            assert!(
                (acked..=last_sent).contains(&value),
                "round {round}: retained {value}, acknowledged {acked}, sent up to {last_sent}"
            );
        }
        assert!(!log.contains("panicked"), "{log}");
        let status = midge.stop().await;
        assert!(
            status.success(),
            "round {round}: exit {status} after SIGTERM\n{}",
            midge.log()
        );
        eprintln!(
            "{qos:?} round {round}: killed after {kill_after:?}, restarted in {restarted:?}, \
             checked in {:?}; {} acknowledged, {} and {} delivered",
            killed.elapsed(),
            sent.acked.len(),
            online_got.delivered.len(),
            offline_got.delivered.len()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_qos1_message() {
    rounds(QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_qos2_message_and_duplicates_none() {
    rounds(QoS::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_everything_even_with_sync_off() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let port = free_port();
    let off = "[persistence]\nsync = \"off\"\n";
    let mut midge = Midge::start_with(work.path(), &data, port, "before", off).await;
    drop(subscribe(midge.addr, "away", "t/#", QoS::ExactlyOnce).await);
    let (mut publisher, _) = Raw::connect(midge.addr, connect("pub", true)).await;
    for (i, (topic, qos, retain)) in [
        ("t/1", QoS::AtLeastOnce, false),
        ("t/2", QoS::ExactlyOnce, false),
        ("r/0", QoS::AtMostOnce, true),
    ]
    .into_iter()
    .enumerate()
    {
        let id = PacketId::new(i as u16 + 1).expect("non-zero");
        publisher.queue(Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::new(qos, id),
            retain,
            topic: topic.into(),
            payload: Bytes::from(i.to_string()),
        }));
    }
    // A PINGRESP after them: the broker has handled all three.
    publisher.queue(Packet::PingReq);
    publisher.flush().await;
    loop {
        match publisher.next(Duration::from_secs(5)).await {
            Event::Packet(Packet::PingResp) => break,
            Event::Packet(Packet::PubRec(id)) => {
                publisher.queue(Packet::PubRel(id));
                publisher.flush().await;
            }
            Event::Packet(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(midge.stop().await.success(), "{}", midge.log());

    let midge = Midge::start_with(work.path(), &data, port, "after", off).await;
    let (mut away, present) = Raw::connect(midge.addr, connect("away", false)).await;
    assert!(present);
    let mut got = Receiver::default();
    got.run(&mut away, Duration::from_secs(5), |r| {
        r.delivered.len() == 2 && r.awaiting_pubrel.is_empty()
    })
    .await;
    assert_eq!(got.delivered, [0, 1], "{}", midge.log());
    let (mut reader, _) = Raw::connect(midge.addr, connect("reader", true)).await;
    reader.queue(Packet::Subscribe(Subscribe {
        pkid: PacketId::new(1).expect("non-zero"),
        filters: vec![SubscribeFilter {
            filter: "r/#".into(),
            qos: QoS::AtMostOnce,
        }],
    }));
    reader.flush().await;
    let retained = loop {
        match reader.next(Duration::from_secs(5)).await {
            Event::Packet(Packet::Publish(p)) => break p,
            Event::Packet(_) => {}
            other => panic!("no retained message: {other:?}\n{}", midge.log()),
        }
    };
    assert_eq!(
        (&*retained.topic, &retained.payload[..]),
        ("r/0", &b"2"[..])
    );
}
