//! Encode and decode of three packets, Midge's codec and `mqttbytes` 0.6
//! (`v4`) side by side in the same groups: `encode/publish_64B/midge` against
//! `encode/publish_64B/mqttbytes`, and so on.
//!
//! - `publish_64B`: a QoS 1 PUBLISH with a 64-byte payload on a 26-byte topic;
//! - `publish_16KiB`: the same with a 16,384-byte payload;
//! - `subscribe_10`: a SUBSCRIBE with 10 topic filters.
//!
//! Encoding writes into one reused buffer, as a connection's write buffer is.
//! Decoding reads from a fresh buffer holding the packet, made outside the
//! timed part; the decoded packet is dropped outside it too.
//!
//! `cargo bench -p midge-protocol --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use midge_protocol::{
    decode, encode, Packet, PacketId, Publish, QoS, QosPid, Subscribe, SubscribeFilter,
};
use mqttbytes::v4 as mb;

const MAX: usize = 1 << 20;
const TOPIC: &str = "sensors/building-7/floor-3";

/// One packet in both codecs' types.
struct Case {
    name: &'static str,
    ours: Packet,
    theirs: mb::Packet,
}

fn publish(payload_len: usize) -> (Packet, mb::Packet) {
    let payload = Bytes::from(vec![0xa5; payload_len]);
    let ours = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(PacketId::MIN.saturating_add(41)),
        retain: false,
        topic: TOPIC.into(),
        payload: payload.clone(),
    });
    let mut theirs = mb::Publish::from_bytes(TOPIC, mqttbytes::QoS::AtLeastOnce, payload);
    theirs.pkid = 42;
    (ours, mb::Packet::Publish(theirs))
}

fn subscribe(n: usize) -> (Packet, mb::Packet) {
    let filters: Vec<(String, u8)> = (0..n)
        .map(|i| match i % 3 {
            0 => (format!("sensors/+/floor-{i}/temperature"), 0),
            1 => (format!("alerts/building-{i}/#"), 1),
            _ => (format!("commands/device-{i}/set"), 2),
        })
        .collect();
    let qos = |q: u8| match q {
        0 => (QoS::AtMostOnce, mqttbytes::QoS::AtMostOnce),
        1 => (QoS::AtLeastOnce, mqttbytes::QoS::AtLeastOnce),
        _ => (QoS::ExactlyOnce, mqttbytes::QoS::ExactlyOnce),
    };
    let ours = Packet::Subscribe(Subscribe {
        pkid: PacketId::MIN.saturating_add(6),
        filters: filters
            .iter()
            .map(|(f, q)| SubscribeFilter {
                filter: f.as_str().into(),
                qos: qos(*q).0,
            })
            .collect(),
    });
    let theirs = mb::Subscribe {
        pkid: 7,
        filters: filters
            .iter()
            .map(|(f, q)| mb::SubscribeFilter::new(f.clone(), qos(*q).1))
            .collect(),
    };
    (ours, mb::Packet::Subscribe(theirs))
}

fn cases() -> Vec<Case> {
    let (p64, m64) = publish(64);
    let (p16k, m16k) = publish(16 * 1024);
    let (s10, ms10) = subscribe(10);
    vec![
        Case {
            name: "publish_64B",
            ours: p64,
            theirs: m64,
        },
        Case {
            name: "publish_16KiB",
            ours: p16k,
            theirs: m16k,
        },
        Case {
            name: "subscribe_10",
            ours: s10,
            theirs: ms10,
        },
    ]
}

/// mqttbytes has one `write` per packet type; the benchmark only needs two.
fn mb_write(packet: &mb::Packet, buf: &mut BytesMut) -> Result<usize, mqttbytes::Error> {
    match packet {
        mb::Packet::Publish(p) => p.write(buf),
        mb::Packet::Subscribe(s) => s.write(buf),
        _ => unreachable!("only PUBLISH and SUBSCRIBE are benchmarked"),
    }
}

fn ours_bytes(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, &mut buf).expect("encodable");
    buf.to_vec()
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for case in cases() {
        let len = ours_bytes(&case.ours).len();
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = BytesMut::with_capacity(2 * len);
        group.bench_function(BenchmarkId::new(case.name, "midge"), |b| {
            b.iter(|| {
                buf.clear();
                encode(black_box(&case.ours), &mut buf).expect("encodable");
                black_box(&buf);
            })
        });
        group.bench_function(BenchmarkId::new(case.name, "mqttbytes"), |b| {
            b.iter(|| {
                buf.clear();
                mb_write(black_box(&case.theirs), &mut buf).expect("encodable");
                black_box(&buf);
            })
        });
    }
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for case in cases() {
        let bytes = ours_bytes(&case.ours);
        // Both codecs read the same bytes.
        let mut theirs = BytesMut::new();
        mb_write(&case.theirs, &mut theirs).expect("encodable");
        assert_eq!(theirs[..], bytes[..], "{}: both encode alike", case.name);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new(case.name, "midge"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| decode(buf, MAX).expect("valid").expect("whole"),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(BenchmarkId::new(case.name, "mqttbytes"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| mb::read(buf, MAX).expect("valid"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

mod harness {
    // The macro makes a public function without documentation.
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench_encode, super::bench_decode);
}
criterion_main!(harness::benches);
