//! The encode-once fan-out path: one 64-byte PUBLISH to 1,000 subscriber
//! output buffers.
//!
//! - `per_subscriber_encode`: build and encode a QoS 1 PUBLISH for each
//!   subscriber with its own packet id (what a naive broker does);
//! - `broker_message_qos1`: the broker's path, `midge_broker::message::Message`
//!   encoded once, then written per subscriber with only the fixed header
//!   and packet id rewritten;
//! - `encode_once_copy_qos0`: encode once, copy the same bytes into every
//!   buffer (a QoS 0 delivery);
//! - `encode_once_share_qos0`: encode once and hand every subscriber a
//!   reference-counted `Bytes` of it, copying nothing (a writev-style queue).
//!
//! Buffers are cleared, not freed, between iterations, as a connection's
//! output buffer is reused. Throughput is in deliveries.
//!
//! `cargo bench -p midge --bench fanout_encode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_main, Criterion, Throughput};
use midge_broker::message::Message;
use midge_protocol::{encode, Packet, PacketId, Publish, QoS, QosPid};

const SUBSCRIBERS: usize = 1000;
const TOPIC: &str = "sensors/building-7/floor-3";

fn pid(n: usize) -> PacketId {
    PacketId::new((n % 65_535 + 1) as u16).expect("non-zero by construction")
}

fn bench_fanout(c: &mut Criterion) {
    let payload = Bytes::from(vec![0xa5u8; 64]);
    let mut buffers: Vec<BytesMut> = (0..SUBSCRIBERS)
        .map(|_| BytesMut::with_capacity(4096))
        .collect();
    let mut queues: Vec<Vec<Bytes>> = (0..SUBSCRIBERS).map(|_| Vec::with_capacity(16)).collect();

    let mut group = c.benchmark_group("fanout_1000");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));

    group.bench_function("per_subscriber_encode", |b| {
        b.iter(|| {
            for (i, buf) in buffers.iter_mut().enumerate() {
                buf.clear();
                let mut p = Publish::new(TOPIC, payload.clone());
                p.qos_pid = QosPid::AtLeastOnce(pid(i));
                encode(&Packet::Publish(p), buf).expect("encodable");
            }
            black_box(&buffers);
        })
    });

    group.bench_function("broker_message_qos1", |b| {
        b.iter(|| {
            let m = Message::new(TOPIC, &payload, QoS::AtLeastOnce, false).expect("encodable");
            for (i, buf) in buffers.iter_mut().enumerate() {
                buf.clear();
                m.write_to(buf, QoS::AtLeastOnce, Some(pid(i)), false, false);
            }
            black_box(&buffers);
        })
    });

    group.bench_function("encode_once_copy_qos0", |b| {
        b.iter(|| {
            let mut once = BytesMut::new();
            let p = Publish::new(TOPIC, payload.clone());
            encode(&Packet::Publish(p), &mut once).expect("encodable");
            for buf in &mut buffers {
                buf.clear();
                buf.extend_from_slice(&once);
            }
            black_box(&buffers);
        })
    });

    group.bench_function("encode_once_share_qos0", |b| {
        b.iter(|| {
            let mut once = BytesMut::new();
            let p = Publish::new(TOPIC, payload.clone());
            encode(&Packet::Publish(p), &mut once).expect("encodable");
            let shared = once.freeze();
            for q in &mut queues {
                q.clear();
                q.push(shared.clone());
            }
            black_box(&queues);
        })
    });
    group.finish();
}

mod harness {
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench_fanout);
}
criterion_main!(harness::benches);
