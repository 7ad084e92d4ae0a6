//! End-to-end fan-out through an in-process broker: the time from writing
//! one PUBLISH to the moment all 1,000 subscribers have read it.
//!
//! The broker runs on `127.0.0.1:0` in a two-thread tokio runtime that the
//! clients share, as `midge_broker::Broker::start` gives it. The clients are
//! raw sockets speaking through `midge_protocol`'s codec, so the figure is
//! the broker's routing, encoding and writing plus the kernel's loopback,
//! with as little client cost as possible. QoS 1 subscribers answer each
//! delivery with PUBACK.
//!
//! - `e2e_fanout_1000/qos0`, `e2e_fanout_1000/qos1`: one message per
//!   iteration, published only after the previous one reached everyone.
//!
//! `cargo bench -p midge --bench fanout_e2e -- --warm-up-time 1 --measurement-time 5`

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_main, Criterion, Throughput};
use futures::StreamExt;
use midge_protocol::{
    decode, encode, Connect, Packet, Publish, QoS, QosPid, Subscribe, SubscribeFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;

const SUBSCRIBERS: u64 = 1000;
const TOPIC: &str = "bench/e2e";
const MAX_PACKET: usize = 1 << 20;

/// Deliveries counted by all subscribers, and the count the publisher
/// waits for.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

/// Writes `packets` and reads until one packet answers; setup only.
async fn exchange(stream: &mut TcpStream, packets: &[Packet]) -> Packet {
    let mut out = BytesMut::new();
    for p in packets {
        encode(p, &mut out).expect("encodable");
    }
    stream.write_all(&out).await.expect("write");
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some(p) = decode(&mut buf, MAX_PACKET).expect("valid packet") {
            return p;
        }
        assert!(stream.read_buf(&mut buf).await.expect("read") > 0, "closed");
    }
}

async fn connect(addr: SocketAddr, id: String) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    match exchange(&mut stream, &[Packet::Connect(Connect::new(id))]).await {
        Packet::ConnAck(_) => stream,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A subscriber: counts deliveries, acknowledges QoS 1 ones.
async fn subscriber(addr: SocketAddr, j: u64, qos: QoS, progress: Arc<Progress>) {
    let mut stream = connect(addr, format!("e2e-sub-{j}")).await;
    let subscribe = Subscribe {
        pkid: NonZeroU16::MIN,
        filters: vec![SubscribeFilter {
            filter: TOPIC.into(),
            qos,
        }],
    };
    match exchange(&mut stream, &[Packet::Subscribe(subscribe)]).await {
        Packet::SubAck(_) => {}
        other => panic!("expected SUBACK, got {other:?}"),
    }
    tokio::spawn(async move {
        let (mut buf, mut acks) = (BytesMut::with_capacity(4096), BytesMut::new());
        while stream.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
            let mut n = 0;
            while let Ok(Some(packet)) = decode(&mut buf, MAX_PACKET) {
                if let Packet::Publish(p) = packet {
                    n += 1;
                    if let Some(id) = p.pkid() {
                        encode(&Packet::PubAck(id), &mut acks).expect("encodable");
                    }
                }
            }
            if !acks.is_empty() && stream.write_all(&acks).await.is_err() {
                return;
            }
            acks.clear();
            let total = progress.received.fetch_add(n, Ordering::AcqRel) + n;
            if n > 0 && total >= progress.target.load(Ordering::Acquire) {
                progress.reached.notify_one();
            }
        }
    });
}

/// A broker with 1,000 subscribers and one publisher, ready to time.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    _broker: midge_broker::Broker,
    publisher: OwnedWriteHalf,
    progress: Arc<Progress>,
    qos: QoS,
    sent: u64,
}

impl Fixture {
    fn new(qos: QoS) -> Fixture {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let progress = Arc::new(Progress::default());
        let (broker, publisher) = runtime.block_on(async {
            let config = midge_broker::Config {
                listeners: vec![midge_broker::ListenerConfig {
                    bind: "127.0.0.1:0".parse().expect("address"),
                    ..Default::default()
                }],
                // In memory: no data directory shared between brokers.
                persistence: midge_broker::PersistenceConfig {
                    enabled: false,
                    ..Default::default()
                },
                ..Default::default()
            };
            let broker = midge_broker::Broker::start(config).await.expect("broker");
            let addr = broker.local_addrs()[0];
            futures::stream::iter(0..SUBSCRIBERS)
                .map(|j| subscriber(addr, j, qos, progress.clone()))
                .buffer_unordered(100)
                .collect::<Vec<()>>()
                .await;
            let (mut read, write) = connect(addr, "e2e-pub".into()).await.into_split();
            // PUBACKs for the publisher: read and dropped.
            tokio::spawn(async move {
                let mut sink = vec![0; 4096];
                while read.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            });
            (broker, write)
        });
        Fixture {
            runtime,
            _broker: broker,
            publisher,
            progress,
            qos,
            sent: 0,
        }
    }

    /// Publishes `iters` messages one after another, each once the last
    /// reached every subscriber; returns the time taken.
    fn run(&mut self, iters: u64) -> Duration {
        let Fixture {
            runtime,
            publisher,
            progress,
            qos,
            sent,
            ..
        } = self;
        runtime.block_on(async {
            let mut out = BytesMut::new();
            let start = Instant::now();
            for _ in 0..iters {
                *sent += 1;
                let target = *sent * SUBSCRIBERS;
                progress.target.store(target, Ordering::Release);
                let mut p = Publish::new(TOPIC, vec![0x5a; 64]);
                let id = NonZeroU16::new((*sent % 65_535 + 1) as u16).expect("non-zero");
                p.qos_pid = QosPid::new(*qos, id);
                out.clear();
                encode(&Packet::Publish(p), &mut out).expect("encodable");
                publisher.write_all(&out).await.expect("publish");
                loop {
                    let reached = progress.reached.notified();
                    if progress.received.load(Ordering::Acquire) >= target {
                        break;
                    }
                    tokio::time::timeout(Duration::from_secs(10), reached)
                        .await
                        .expect("every subscriber gets the message within 10 s");
                }
            }
            start.elapsed()
        })
    }
}

fn bench_e2e(c: &mut Criterion) {
    let mut group = c.benchmark_group("e2e_fanout_1000");
    group.throughput(Throughput::Elements(SUBSCRIBERS));
    group.sample_size(20);
    for (name, qos) in [("qos0", QoS::AtMostOnce), ("qos1", QoS::AtLeastOnce)] {
        let mut fixture = Fixture::new(qos);
        group.bench_function(name, |b| b.iter_custom(|iters| fixture.run(iters)));
    }
    group.finish();
}

mod harness {
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench_e2e);
}
criterion_main!(harness::benches);
