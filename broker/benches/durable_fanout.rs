//! Fan-out 1 -> N persistent subscribers at QoS 1: deliveries per second
//! and publish-to-PUBACK latency, with the journal (`sync = "always"`,
//! `"periodic"`) or in memory, or against another broker.
//!
//! `cargo bench -p midge-broker --bench durable_fanout -- [always|periodic|memory|HOST:PORT]
//! [--subs N] [--secs S] [--window W] [--size BYTES] [--qos 1|2]`
//!
//! With `--qos 2` everything is QoS 2 and the latency is publish-to-PUBREC.
//!
//! The subscribers connect with CleanSession=0 and subscribe at QoS 1, so
//! every message is journaled for each of them; they acknowledge at once.
//! One publisher keeps `--window` QoS 1 messages unacknowledged, and at
//! most 200 deliveries per subscriber on their way (so the rate measured
//! is what the subscribers receive, not a queue filling up). Clients
//! and an in-process broker share this process (and the machine's cores);
//! compare modes with each other, not with another machine.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use midge_protocol::{
    decode, encode, Connect, Packet, PacketId, Publish, QoS, QosPid, Subscribe, SubscribeFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    target: String,
    subs: usize,
    secs: u64,
    window: usize,
    size: usize,
    qos: QoS,
}

fn args() -> Args {
    let mut a = Args {
        target: "always".into(),
        subs: 100,
        secs: 5,
        window: 100,
        size: 64,
        qos: QoS::AtLeastOnce,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--subs" => a.subs = num("--subs"),
            "--secs" => a.secs = num("--secs") as u64,
            "--window" => a.window = num("--window"),
            "--size" => a.size = num("--size"),
            "--qos" => {
                a.qos = match num("--qos") {
                    2 => QoS::ExactlyOnce,
                    _ => QoS::AtLeastOnce,
                }
            }
            "--bench" => {}
            other => a.target = other.to_owned(),
        }
    }
    a
}

async fn connect(addr: SocketAddr, id: &str, clean: bool) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut c = Connect::new(id);
    c.clean_session = clean;
    c.keep_alive = 0;
    let mut out = BytesMut::new();
    encode(&Packet::Connect(c), &mut out).expect("encode");
    s.write_all(&out).await.expect("write");
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if let Some(p) = decode(&mut buf, usize::MAX).expect("decode") {
            assert!(matches!(p, Packet::ConnAck(_)), "{p:?}");
            return (s, buf);
        }
        assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed");
    }
}

/// A persistent subscriber acknowledging at once; counts deliveries.
async fn subscriber(
    addr: SocketAddr,
    i: usize,
    qos: QoS,
    count: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
) {
    let (mut s, mut buf) = connect(addr, &format!("bench-sub-{i}"), false).await;
    let mut out = BytesMut::new();
    let sub = Subscribe {
        pkid: PacketId::new(1).expect("id"),
        filters: vec![SubscribeFilter {
            filter: "bench/fanout".into(),
            qos,
        }],
    };
    encode(&Packet::Subscribe(sub), &mut out).expect("encode");
    s.write_all(&out).await.expect("write");
    out.clear();
    let mut subscribed = false;
    loop {
        let mut n = 0;
        while let Some(p) = decode(&mut buf, usize::MAX).expect("decode") {
            match p {
                Packet::SubAck(_) if !subscribed => {
                    subscribed = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                Packet::Publish(p) => {
                    let ack = match p.qos_pid {
                        QosPid::AtLeastOnce(id) => Packet::PubAck(id),
                        QosPid::ExactlyOnce(id) => Packet::PubRec(id),
                        QosPid::AtMostOnce => continue,
                    };
                    encode(&ack, &mut out).expect("encode");
                    n += 1;
                }
                Packet::PubRel(id) => {
                    encode(&Packet::PubComp(id), &mut out).expect("encode");
                }
                _ => {}
            }
        }
        count.fetch_add(n, Ordering::Relaxed);
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The publisher: keeps `window` messages unacknowledged until `stop`;
/// returns the publish-to-PUBACK latencies of the measured period.
async fn publisher(
    addr: SocketAddr,
    a: &Args,
    delivered: Arc<AtomicU64>,
    measure: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let max_ahead = 200 * a.subs as u64;
    let mut published = 0u64;
    let (mut s, mut buf) = connect(addr, "bench-pub", true).await;
    let payload = Bytes::from(vec![b'x'; a.size]);
    let mut sent_at: Vec<Option<Instant>> = vec![None; 65_536];
    let mut outstanding = 0;
    let mut next: u16 = 0;
    let mut lat = Vec::new();
    let mut out = BytesMut::new();
    while !stop.load(Ordering::Relaxed) {
        let ahead = (published * a.subs as u64).saturating_sub(delivered.load(Ordering::Relaxed));
        if ahead > max_ahead && outstanding == 0 {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        while outstanding < a.window && ahead <= max_ahead {
            next = next.wrapping_add(1).max(1);
            if sent_at[next as usize].is_some() {
                break;
            }
            let id = PacketId::new(next).expect("id");
            let p = Publish {
                dup: false,
                qos_pid: QosPid::new(a.qos, id),
                retain: false,
                topic: "bench/fanout".into(),
                payload: payload.clone(),
            };
            encode(&Packet::Publish(p), &mut out).expect("encode");
            sent_at[next as usize] = Some(Instant::now());
            outstanding += 1;
            published += 1;
        }
        if !out.is_empty() {
            s.write_all(&out).await.expect("write");
            out.clear();
        }
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_buf(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(n)) if n > 0), "publisher stalled");
        while let Some(p) = decode(&mut buf, usize::MAX).expect("decode") {
            match p {
                Packet::PubAck(id) | Packet::PubRec(id) => {
                    if let Some(t) = sent_at[id.get() as usize] {
                        if measure.load(Ordering::Relaxed) {
                            lat.push(t.elapsed());
                        }
                    }
                    if matches!(p, Packet::PubRec(_)) {
                        encode(&Packet::PubRel(id), &mut out).expect("encode");
                    } else if sent_at[id.get() as usize].take().is_some() {
                        outstanding -= 1;
                    }
                }
                Packet::PubComp(id) if sent_at[id.get() as usize].take().is_some() => {
                    outstanding -= 1;
                }
                _ => {}
            }
        }
    }
    lat
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let data = tempfile::tempdir().expect("tempdir");
    let mut broker = None;
    let addr: SocketAddr = match a.target.parse() {
        Ok(addr) => addr,
        Err(_) => {
            let mut c = midge_broker::Config::default();
            c.listeners[0].bind = "127.0.0.1:0".parse().expect("addr");
            c.sys.interval_s = 0;
            c.limits.max_queued_messages = 100_000;
            c.persistence.dir = data.path().to_owned();
            match a.target.as_str() {
                "memory" => c.persistence.enabled = false,
                "always" => c.persistence.sync = midge_broker::SyncMode::Always,
                "periodic" => c.persistence.sync = midge_broker::SyncMode::Periodic,
                other => panic!("unknown target {other}: always, periodic, memory or HOST:PORT"),
            }
            let b = midge_broker::Broker::start(c).await.expect("broker");
            let addr = b.local_addrs()[0];
            broker = Some(b);
            addr
        }
    };
    let count = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    for i in 0..a.subs {
        tokio::spawn(subscriber(addr, i, a.qos, count.clone(), ready.clone()));
    }
    while ready.load(Ordering::Relaxed) < a.subs as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (measure, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let secs = a.secs;
    let timer = {
        let (measure, stop, count) = (measure.clone(), stop.clone(), count.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let start = (Instant::now(), count.load(Ordering::Relaxed));
            measure.store(true, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            measure.store(false, Ordering::Relaxed);
            let end = (Instant::now(), count.load(Ordering::Relaxed));
            stop.store(true, Ordering::Relaxed);
            (end.1 - start.1) as f64 / (end.0 - start.0).as_secs_f64()
        })
    };
    let mut lat = publisher(addr, &a, count.clone(), measure, stop).await;
    let rate = timer.await.expect("timer");
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!(
        "fanout 1 -> {} persistent {:?} subscribers, {} B, window {}, {}: {:.0} deliveries/s, \
         {:.0} publishes/s, ack p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        a.subs,
        a.qos,
        a.size,
        a.window,
        a.target,
        rate,
        lat.len() as f64 / a.secs as f64,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(lat.last()),
    );
    if let Some(b) = broker {
        b.shutdown().await;
    }
}
