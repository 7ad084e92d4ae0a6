//! Chaos: many raw clients send random, mostly valid packet sequences at
//! once (publishes at every QoS, wildcard subscriptions, stray
//! acknowledgements, takeovers, clean and persistent sessions, a few
//! malformed packets). Afterwards no thread may have panicked, a
//! well-behaved client must still get service, and the broker must shut
//! down cleanly. Each client's sequence comes from a fixed seed, so a
//! failure names the seed that reproduces it.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_protocol::{
    decode, encode, Connect, Packet, PacketId, Publish, QoS, QosPid, Subscribe, SubscribeFilter,
    Unsubscribe, DEFAULT_MAX_PACKET_SIZE,
};
use support::rng::Rng;
use support::{pid, raw_packet, TestBroker, TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::timeout;

const CLIENTS: u64 = 20;
const PACKETS: usize = 200;
/// Fewer ids than clients: clients take over each other's sessions.
const IDS: u64 = 12;
const TOPICS: [&str; 5] = ["a", "a/b", "a/b/c", "x/y", "retained/r"];
const FILTERS: [&str; 7] = ["a", "a/+", "a/#", "#", "+/y", "+/+/c", "retained/#"];

/// What the chaos picks beyond [`Rng`]'s own.
trait PickPacket {
    fn qos(&mut self) -> QoS;
    fn pkid(&mut self) -> PacketId;
}

impl PickPacket for Rng {
    fn qos(&mut self) -> QoS {
        match self.below(3) {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    fn pkid(&mut self) -> PacketId {
        pid(1 + self.below(10) as u16)
    }
}

/// Records the message of every panic, on any thread: a panicking tokio
/// task would otherwise only end that task.
fn record_panics() -> Arc<Mutex<Vec<String>>> {
    let panics = Arc::new(Mutex::new(Vec::new()));
    let seen = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut seen) = seen.lock() {
            seen.push(info.to_string());
        }
        previous(info);
    }));
    panics
}

type Writer = Arc<tokio::sync::Mutex<OwnedWriteHalf>>;

async fn write(writer: &Writer, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = writer.lock().await;
    match timeout(Duration::from_secs(2), w.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

fn bytes_of(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, &mut out).expect("a chaos packet encodes");
    out.to_vec()
}

/// One connection: a CONNECT, then a task that reads everything the
/// broker sends and answers most PUBLISHes and every PUBREL.
async fn open(
    addr: SocketAddr,
    rng: &mut Rng,
    n: u64,
    received: Arc<AtomicU64>,
) -> Option<(Writer, tokio::task::JoinHandle<()>)> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut read, write_half) = stream.into_split();
    let writer: Writer = Arc::new(tokio::sync::Mutex::new(write_half));
    let mut connect = Connect::new(format!("chaos-{}", n % IDS));
    connect.clean_session = rng.chance(50);
    connect.keep_alive = 30;
    write(&writer, &bytes_of(&Packet::Connect(connect)))
        .await
        .ok()?;
    let answers = writer.clone();
    let mut answer_rng = Rng(rng.next() | 1);
    let reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            // What the broker sends must decode [MQTT-4.8.0-1].
            while let Some(packet) = decode(&mut buf, DEFAULT_MAX_PACKET_SIZE)
                .unwrap_or_else(|e| panic!("the broker sent a malformed packet: {e}"))
            {
                received.fetch_add(1, Ordering::Relaxed);
                let answer = match packet {
                    Packet::Publish(p) if answer_rng.chance(85) => match p.qos_pid {
                        QosPid::AtMostOnce => None,
                        QosPid::AtLeastOnce(id) => Some(Packet::PubAck(id)),
                        QosPid::ExactlyOnce(id) => Some(Packet::PubRec(id)),
                    },
                    Packet::PubRel(id) => Some(Packet::PubComp(id)),
                    _ => None,
                };
                if let Some(answer) = answer {
                    if write(&answers, &bytes_of(&answer)).await.is_err() {
                        return;
                    }
                }
            }
            match timeout(Duration::from_secs(5), read.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    });
    Some((writer, reader))
}

/// A random packet, or raw bytes that are not a valid packet.
fn chaos_packet(rng: &mut Rng) -> Vec<u8> {
    let packet = match rng.below(100) {
        0..=39 => {
            let topic = rng.pick(&TOPICS);
            let payload = if rng.chance(10) {
                Bytes::new()
            } else {
                Bytes::from(vec![b'p'; rng.below(64) as usize + 1])
            };
            let qos = rng.qos();
            Packet::Publish(Publish {
                dup: qos != QoS::AtMostOnce && rng.chance(10),
                qos_pid: QosPid::new(qos, rng.pkid()),
                retain: topic.starts_with("retained") || rng.chance(5),
                topic: topic.into(),
                payload,
            })
        }
        40..=51 => Packet::Subscribe(Subscribe {
            pkid: rng.pkid(),
            filters: (0..1 + rng.below(3))
                .map(|_| SubscribeFilter {
                    filter: rng.pick(&FILTERS).into(),
                    qos: rng.qos(),
                })
                .collect(),
        }),
        52..=57 => Packet::Unsubscribe(Unsubscribe {
            pkid: rng.pkid(),
            filters: vec![rng.pick(&FILTERS).into()],
        }),
        58..=65 => Packet::PubAck(rng.pkid()),
        66..=73 => Packet::PubRec(rng.pkid()),
        74..=81 => Packet::PubRel(rng.pkid()),
        82..=89 => Packet::PubComp(rng.pkid()),
        90..=98 => Packet::PingReq,
        _ => {
            return match rng.below(5) {
                // Reserved packet type 15.
                0 => raw_packet(0xF0, &[]),
                // PUBLISH with QoS 3 [MQTT-3.3.1-4].
                1 => raw_packet(0x36, &[0, 1, b'a', 0, 1]),
                // SUBSCRIBE with the wrong flags [MQTT-3.8.1-1].
                2 => raw_packet(0x80, &[0, 1, 0, 1, b'a', 0]),
                // A wildcard in a PUBLISH topic [MQTT-3.3.2-2].
                3 => raw_packet(0x30, &[0, 3, b'a', b'/', b'#']),
                // Random bytes.
                _ => (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect(),
            };
        }
    };
    bytes_of(&packet)
}

/// Sends `PACKETS` random packets over as many connections as it takes;
/// returns the connections made and the packets received.
async fn chaos_client(addr: SocketAddr, n: u64) -> (u64, u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n + 1).wrapping_mul(0x1000_0001));
    let (mut sent, mut connections) = (0, 0);
    let received = Arc::new(AtomicU64::new(0));
    while sent < PACKETS {
        let Some((writer, reader)) = open(addr, &mut rng, n, received.clone()).await else {
            sent += 1;
            continue;
        };
        connections += 1;
        while sent < PACKETS {
            sent += 1;
            if rng.below(1000) < 15 {
                if rng.chance(50) {
                    let _ = write(&writer, &bytes_of(&Packet::Disconnect)).await;
                }
                break;
            }
            if write(&writer, &chaos_packet(&mut rng)).await.is_err() {
                // Closed by the broker: a malformed packet or a takeover.
                break;
            }
            if rng.chance(10) {
                tokio::task::yield_now().await;
            }
        }
        // Let the broker's answers to the last packets arrive.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(writer);
        reader.abort();
        let _ = reader.await;
    }
    (connections, received.load(Ordering::Relaxed))
}

/// A client that follows the rules gets every QoS through.
async fn check_service(addr: SocketAddr) {
    let mut sub = support::Client::connect(addr, "final-sub").await;
    sub.subscribe("final/#", QoS::ExactlyOnce).await;
    let mut publisher = support::Client::connect(addr, "final-pub").await;
    let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for (n, qos) in levels.into_iter().enumerate() {
        publisher.publish("final/t", &[n as u8], qos, false).await;
    }
    let got = sub.recv_publishes(3).await;
    let mut payloads: Vec<(QoS, Bytes)> =
        got.iter().map(|p| (p.qos(), p.payload.clone())).collect();
    payloads.sort_by_key(|(_, p)| p.clone());
    assert_eq!(
        payloads,
        levels
            .into_iter()
            .enumerate()
            .map(|(n, q)| (q, Bytes::from(vec![n as u8])))
            .collect::<Vec<_>>()
    );
}

async fn chaos(broker: TestBroker) {
    let addr = broker.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(chaos_client(addr, n)))
        .collect();
    let (mut connections, mut received) = (0, 0);
    for (n, client) in clients.into_iter().enumerate() {
        let (c, r) = timeout(Duration::from_secs(8), client)
            .await
            .unwrap_or_else(|_| panic!("chaos client {n} did not finish"))
            .unwrap_or_else(|e| panic!("chaos client {n} failed: {e}"));
        connections += c;
        received += r;
    }
    eprintln!("chaos: {connections} connections, {received} packets received");
    // The chaos reached the broker: clients were served, not just refused.
    assert!(
        connections >= CLIENTS && received >= connections,
        "{connections} {received}"
    );
    timeout(TIMEOUT, check_service(addr))
        .await
        .expect("a well-behaved client is served after the chaos");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_and_unusual_clients_neither_panic_nor_break_the_broker() {
    let panics = record_panics();
    let started = std::time::Instant::now();
    chaos(
        TestBroker::start_with(|c| {
            c.limits.max_inflight = 4;
            c.limits.max_queued_messages = 16;
        })
        .await,
    )
    .await;
    // Again with the journal on: acknowledgements wait for the disk.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().to_path_buf();
    chaos(
        TestBroker::start_with(move |c| {
            c.limits.max_inflight = 4;
            c.limits.max_queued_messages = 16;
            c.persistence.enabled = true;
            c.persistence.dir = path;
        })
        .await,
    )
    .await;
    let panics = panics.lock().map(|p| p.clone()).unwrap_or_default();
    assert!(panics.is_empty(), "panics: {panics:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
