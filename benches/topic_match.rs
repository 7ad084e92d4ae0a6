//! Topic matching against 100,000 subscriptions of mixed wildcards: the
//! broker's subscription trie (`midge_broker::trie::Trie`, what every
//! PUBLISH reads) against the linear scan with `midge_protocol::topic::matches`
//! that a trie exists to avoid.
//!
//! The subscriptions, generated from a fixed seed, look like a device fleet:
//!
//! | share | filter                          | example                      |
//! |-------|---------------------------------|------------------------------|
//! | 70%   | exact                           | `fleet/r12/d3456/telemetry`  |
//! | 10%   | `+` for the device              | `fleet/r12/+/telemetry`      |
//! | 5%    | `+` for the region              | `fleet/+/d3456/status`       |
//! | 10%   | `#` under a device or region    | `fleet/r12/d3456/#`          |
//! | 5%    | leading `+`, several wildcards  | `+/r12/+/alerts`             |
//!
//! and topics are `fleet/rR/dD/KIND` for random R, D and KIND, so a topic
//! matches a handful of filters, as in a real fleet.
//!
//! - `match/trie`: one topic matched against the populated trie;
//! - `match/linear_scan`: the same with `topic::matches` over every filter;
//! - `churn/trie`: one subscribe plus one unsubscribe in the populated trie.
//!
//! The retained store (`midge_broker::retained::MemoryRetained`, read on
//! every SUBSCRIBE) holds 100,000 random fleet topics:
//!
//! - `retained/exact`, `retained/device_hash` (`fleet/rR/dD/#`),
//!   `retained/region_plus` (`fleet/rR/+/KIND`, ~500 messages): one lookup;
//! - `retained/churn`: one topic retained, then cleared.
//!
//! `cargo bench -p midge --bench topic_match -- --warm-up-time 1 --measurement-time 3`

// Shared with the tests, which use more of it.
#[allow(dead_code)]
#[path = "../tests/support/rng.rs"]
mod rng;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_main, Criterion, Throughput};
use midge_broker::message::Message;
use midge_broker::retained::{MemoryRetained, RetainedStore};
use midge_broker::trie::Trie;
use midge_protocol::{topic, QoS};
use rng::Rng;

const SUBSCRIPTIONS: usize = 100_000;
const REGIONS: u64 = 50;
const DEVICES: u64 = 20_000;
const KINDS: [&str; 4] = ["telemetry", "status", "alerts", "config"];

fn filters(rng: &mut Rng) -> Vec<String> {
    (0..SUBSCRIPTIONS)
        .map(|_| {
            let (r, d) = (rng.below(REGIONS), rng.below(DEVICES));
            match rng.below(100) {
                0..=69 => format!("fleet/r{r}/d{d}/{}", rng.pick(&KINDS)),
                70..=79 => format!("fleet/r{r}/+/{}", rng.pick(&KINDS)),
                80..=84 => format!("fleet/+/d{d}/{}", rng.pick(&KINDS)),
                85..=89 => format!("fleet/r{r}/d{d}/#"),
                90..=94 => format!("fleet/r{r}/#"),
                _ => format!("+/r{r}/+/{}", rng.pick(&KINDS)),
            }
        })
        .collect()
}

fn topics(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let (r, d) = (rng.below(REGIONS), rng.below(DEVICES));
            format!("fleet/r{r}/d{d}/{}", rng.pick(&KINDS))
        })
        .collect()
}

fn bench_match(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let filters = filters(&mut rng);
    let topics = topics(&mut rng, 1024);
    let mut trie = Trie::new();
    for (id, f) in filters.iter().enumerate() {
        trie.insert(f, id as u64, ());
    }
    assert_eq!(trie.len(), SUBSCRIPTIONS);
    // The two must agree before either is timed.
    for t in topics.iter().take(16) {
        let mut by_trie = 0;
        trie.for_each_match(t, |_, _| by_trie += 1);
        let by_scan = filters.iter().filter(|f| topic::matches(f, t)).count();
        assert_eq!(by_trie, by_scan, "{t}");
    }

    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("trie", |b| {
        b.iter(|| {
            i = (i + 1) % topics.len();
            let mut n = 0usize;
            trie.for_each_match(black_box(&topics[i]), |id, _| n += id as usize);
            n
        })
    });
    group.sample_size(10);
    group.bench_function("linear_scan", |b| {
        b.iter(|| {
            i = (i + 1) % topics.len();
            let t = black_box(&topics[i]);
            filters.iter().filter(|f| topic::matches(f, t)).count()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("churn");
    group.bench_function("trie", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let f = &filters[(n % SUBSCRIPTIONS as u64) as usize];
            let id = SUBSCRIPTIONS as u64 + n;
            trie.insert(black_box(f), id, ());
            trie.remove(f, id)
        })
    });
    group.finish();
}

fn bench_retained(c: &mut Criterion) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let msg = |t: &str, p: &[u8]| Message::new(t, p, QoS::AtMostOnce, true).expect("message");
    let store = MemoryRetained::new();
    for t in topics(&mut rng, SUBSCRIPTIONS) {
        store.put(msg(&t, b"v"));
    }
    let probes = topics(&mut rng, 1024);
    let filters = |f: fn(&mut Rng, &str) -> String| -> Vec<String> {
        let mut rng = Rng(7);
        probes.iter().map(|t| f(&mut rng, t)).collect()
    };
    let exact = filters(|_, t| t.to_owned());
    let device = filters(|_, t| {
        t.rsplit_once('/')
            .map_or(t.into(), |(d, _)| format!("{d}/#"))
    });
    let region = filters(|rng, t| {
        let r = t.split('/').nth(1).unwrap_or("r0");
        format!("fleet/{r}/+/{}", rng.pick(&KINDS))
    });

    let mut group = c.benchmark_group("retained");
    group.throughput(Throughput::Elements(1));
    for (name, filters) in [
        ("exact", &exact),
        ("device_hash", &device),
        ("region_plus", &region),
    ] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % filters.len();
                let mut n = 0usize;
                store.for_each_match(black_box(&filters[i]), &mut |m| n += m.payload_len());
                n
            })
        });
    }
    let (set, clear): (Vec<Arc<Message>>, Vec<Arc<Message>>) = probes
        .iter()
        .map(|t| (msg(&format!("{t}/x"), b"v"), msg(&format!("{t}/x"), b"")))
        .unzip();
    let mut i = 0;
    group.bench_function("churn", |b| {
        b.iter(|| {
            i = (i + 1) % set.len();
            store.put(set[i].clone());
            store.put(clear[i].clone());
        })
    });
    group.finish();
}

mod harness {
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench_match, super::bench_retained);
}
criterion_main!(harness::benches);
