//! The memory of the topic trees: live heap bytes after inserting a set of
//! filters into the subscription trie, or of topics into the retained
//! store, counted by a global allocator that wraps the system one. Each
//! case reports the bytes asked for and the bytes they take once rounded up
//! to jemalloc's size classes (what the `midge` binary allocates with).
//! The retained messages are built first and not counted: only the tree
//! that indexes them is.
//!
//! | case       | filters or topics                         | shows                      |
//! |------------|-------------------------------------------|----------------------------|
//! | `chains`   | 10,000 of 20 levels, distinct below 2     | the cost of a one-child level |
//! | `deep`     | 1,000 of 200 levels, distinct from 1      | the same, on long filters  |
//! | `fleet`    | `topic_match`'s 100,000 device filters    | a realistic mix            |
//! | `r-*`      | the same shapes as retained topics; `r-fleet` is 100,000 device status topics | the retained store |
//!
//! `cargo bench -p midge --bench trie_memory`

// A `GlobalAlloc` can only be written with `unsafe`; it forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use std::sync::Arc;

use midge_broker::message::Message;
use midge_broker::retained::{MemoryRetained, RetainedStore};
use midge_broker::trie::Trie;
use midge_protocol::QoS;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static CLASSED: AtomicUsize = AtomicUsize::new(0);

/// jemalloc's size class for `size`: 8, then steps of 16 up to 128, then
/// four classes per doubling (160, 192, 224, 256, 320, ...).
fn class(size: usize) -> usize {
    let step = match size {
        0..=8 => return 8,
        9..=128 => 16,
        _ => size.next_power_of_two() / 8,
    };
    size.div_ceil(step) * step
}

fn count(add: usize, sub: usize) {
    LIVE.fetch_add(add, Relaxed);
    LIVE.fetch_sub(sub, Relaxed);
    CLASSED.fetch_add(if add == 0 { 0 } else { class(add) }, Relaxed);
    CLASSED.fetch_sub(if sub == 0 { 0 } else { class(sub) }, Relaxed);
}

// SAFETY: every call forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes, asked for and size-classed, of what `build` returns
/// (its inputs are built first and not counted).
fn measure<T>(build: impl FnOnce() -> T) -> (usize, usize) {
    let before = (LIVE.load(Relaxed), CLASSED.load(Relaxed));
    let built = build();
    let bytes = (
        LIVE.load(Relaxed) - before.0,
        CLASSED.load(Relaxed) - before.1,
    );
    drop(built);
    bytes
}

/// A subscription trie holding `filters`.
fn trie(filters: &[String]) -> Trie<()> {
    let mut trie = Trie::new();
    for (id, f) in filters.iter().enumerate() {
        trie.insert(f, id as u64, ());
    }
    trie
}

/// A retained store holding `msgs`.
fn retained(msgs: &[Arc<Message>]) -> MemoryRetained {
    let store = MemoryRetained::new();
    for m in msgs {
        store.put(m.clone());
    }
    store
}

fn messages(topics: &[String]) -> Vec<Arc<Message>> {
    let msg = |t: &String| Message::new(t, b"v", QoS::AtMostOnce, true).expect("message");
    topics.iter().map(msg).collect()
}

fn report_trie(case: &str, filters: &[String], levels: usize) {
    let bytes = measure(|| trie(filters));
    report(case, "filters", filters.len(), levels, bytes);
}

fn report_retained(case: &str, topics: &[String], levels: usize) {
    let msgs = messages(topics);
    let bytes = measure(|| retained(&msgs));
    report(case, "topics", topics.len(), levels, bytes);
}

/// Prints one case: `n` filters or topics (`noun`) of `levels` levels in
/// all, and the bytes [`measure`] counted.
fn report(case: &str, noun: &str, n: usize, levels: usize, (asked, classed): (usize, usize)) {
    let count = n;
    let n = n as f64;
    println!(
        "{case:8} {count:>6} {noun:7} {levels:>6} levels: {:>5.1} MB asked ({:>7.1} B/each, {:>5.1} B/level), \
         {:>5.1} MB classed ({:>7.1} B/each, {:>5.1} B/level)",
        asked as f64 / 1e6,
        asked as f64 / n,
        asked as f64 / levels as f64,
        classed as f64 / 1e6,
        classed as f64 / n,
        classed as f64 / levels as f64,
    );
}

/// `n` filters of `depth` levels sharing their first `shared` levels' names
/// in groups of 10, so almost every level below is a one-child node.
fn chains(n: usize, depth: usize, shared: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let levels: Vec<String> = (0..depth)
                .map(|l| {
                    if l < shared {
                        format!("g{}", i % 10)
                    } else {
                        format!("l{i}x{l}")
                    }
                })
                .collect();
            levels.join("/")
        })
        .collect()
}

/// The filters of `benches/topic_match.rs`, from the same generator.
fn fleet() -> Vec<String> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut below = |n: u64| {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    };
    let kinds = ["telemetry", "status", "alerts", "config"];
    (0..100_000)
        .map(|_| {
            let (r, d) = (below(50), below(20_000));
            match below(100) {
                0..=69 => format!("fleet/r{r}/d{d}/{}", kinds[below(4) as usize]),
                70..=79 => format!("fleet/r{r}/+/{}", kinds[below(4) as usize]),
                80..=84 => format!("fleet/+/d{d}/{}", kinds[below(4) as usize]),
                85..=89 => format!("fleet/r{r}/d{d}/#"),
                90..=94 => format!("fleet/r{r}/#"),
                _ => format!("+/r{r}/+/{}", kinds[below(4) as usize]),
            }
        })
        .collect()
}

/// 100,000 device status topics: `fleet/r{region}/d{device}/{kind}`.
fn fleet_topics() -> Vec<String> {
    let kinds = ["telemetry", "status", "alerts", "config"];
    (0..100_000)
        .map(|i| format!("fleet/r{}/d{}/{}", i % 50, i / 4, kinds[i % 4]))
        .collect()
}

fn levels(names: &[String]) -> usize {
    names.iter().map(|f| f.split('/').count()).sum()
}

fn main() {
    let chains20 = chains(10_000, 20, 2);
    let deep = chains(1_000, 200, 1);
    let fleet = fleet();
    report_trie("chains", &chains20, levels(&chains20));
    report_trie("deep", &deep, levels(&deep));
    report_trie("fleet", &fleet, levels(&fleet));
    let topics = fleet_topics();
    report_retained("r-chains", &chains20, levels(&chains20));
    report_retained("r-deep", &deep, levels(&deep));
    report_retained("r-fleet", &topics, levels(&topics));
}
