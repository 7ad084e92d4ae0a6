//! Property tests of the broker's two topic trees against the codec's
//! reference matcher, `midge_protocol::topic::matches`.
//!
//! Filters and topics are drawn from a tiny alphabet (`a`, `b`, the empty
//! level, `$x`) so that random ones often overlap; filters use `+` at any
//! level and `#` last, and sometimes start with a `$x` level, which leading
//! wildcards must not match [MQTT-4.7.2-1]. Each case mixes additions with
//! removals and ends by removing everything, so pruning runs on every shape
//! and must leave a tree equal to a new one.

use std::collections::HashMap;
use std::sync::Arc;

use midge_broker::message::Message;
use midge_broker::retained::{MemoryRetained, RetainedStore};
use midge_broker::trie::Trie;
use midge_protocol::{topic, QoS};
use proptest::prelude::*;

/// A level below the first: mostly the two names and the empty level,
/// sometimes a `$` name (an ordinary name below the first level).
fn name() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just("a"), 3 => Just("b"), 2 => Just(""), 1 => Just("$x")]
}

/// A first level: `$x` one time in five, so `$` topics come up often.
fn first() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![4 => Just(None), 1 => Just(Some("$x"))]
}

/// A valid topic name of one to five levels.
fn topic_name() -> impl Strategy<Value = String> {
    (first(), prop::collection::vec(name(), 1..5))
        .prop_map(|(first, rest)| first.into_iter().chain(rest).collect::<Vec<_>>().join("/"))
        .prop_filter("a topic is not empty", |t| topic::valid_topic_name(t))
}

/// A valid topic filter of one to five levels: names or `+`, then maybe `#`.
fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => name(), 2 => Just("+")];
    (first(), prop::collection::vec(level, 0..4), any::<bool>())
        .prop_map(|(first, rest, hash)| {
            let hash = hash.then_some("#");
            let levels: Vec<_> = first.into_iter().chain(rest).chain(hash).collect();
            levels.join("/")
        })
        .prop_filter("a filter is valid", |f| topic::valid_topic_filter(f))
}

/// What a trie holds, kept the simple way: the value of each
/// `(filter, subscriber)`.
type Subscriptions = HashMap<(String, u64), u32>;

/// The trie's matches for `topic`, sorted, against the model's filters
/// that the reference matcher says match, sorted: equal, so each
/// subscription is seen exactly once.
fn check_trie(trie: &Trie<u32>, model: &Subscriptions, topic: &str) -> Result<(), TestCaseError> {
    let mut got = Vec::new();
    trie.for_each_match(topic, |id, v| got.push((id, *v)));
    got.sort_unstable();
    let mut want: Vec<(u64, u32)> = model
        .iter()
        .filter(|((f, _), _)| topic::matches(f, topic))
        .map(|((_, id), v)| (*id, *v))
        .collect();
    want.sort_unstable();
    prop_assert_eq!(got, want, "topic {:?} in {:?}", topic, model);
    prop_assert_eq!(trie.len(), model.len());
    Ok(())
}

proptest! {
    /// Subscribing and unsubscribing at random, the trie finds exactly the
    /// subscriptions whose filters match each topic, and is empty again
    /// once all are gone.
    #[test]
    fn the_trie_matches_what_the_reference_matcher_matches(
        filters in prop::collection::vec(filter(), 1..8),
        ops in prop::collection::vec((0..8usize, 0..3u64, prop::bool::weighted(0.65)), 0..40),
        topics in prop::collection::vec(topic_name(), 1..8),
    ) {
        let mut trie = Trie::new();
        let mut model = Subscriptions::new();
        for (stamp, (i, id, add)) in (0u32..).zip(ops) {
            let key = (filters[i % filters.len()].clone(), id);
            if add {
                let old = trie.insert(&key.0, id, stamp);
                prop_assert_eq!(old, model.insert(key, stamp));
            } else {
                prop_assert_eq!(trie.remove(&key.0, id), model.remove(&key));
            }
            for t in &topics {
                check_trie(&trie, &model, t)?;
            }
        }
        for (f, id) in model.keys() {
            prop_assert!(trie.remove(f, *id).is_some());
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(format!("{trie:?}"), format!("{:?}", Trie::<u32>::new()));
    }
}

fn retained(topic: &str, payload: &str) -> Arc<Message> {
    Message::new(topic, payload.as_bytes(), QoS::AtMostOnce, true).expect("message")
}

/// The store's messages for `filter` against the model's topics that the
/// reference matcher says match, each with its latest payload, sorted.
fn check_retained(
    store: &MemoryRetained,
    model: &HashMap<String, String>,
    filter: &str,
) -> Result<(), TestCaseError> {
    let mut got = Vec::new();
    store.for_each_match(filter, &mut |m| {
        let payload = String::from_utf8_lossy(&m.payload()).into_owned();
        got.push((m.topic().to_owned(), payload))
    });
    got.sort_unstable();
    let mut want: Vec<(String, String)> = model
        .iter()
        .filter(|(t, _)| topic::matches(filter, t))
        .map(|(t, p)| (t.clone(), p.clone()))
        .collect();
    want.sort_unstable();
    prop_assert_eq!(got, want, "filter {:?} in {:?}", filter, model);
    prop_assert_eq!(store.len(), model.len());
    Ok(())
}

proptest! {
    /// Retaining, replacing and clearing at random, the store returns
    /// exactly the messages whose topics each filter matches, and is empty
    /// again once all are cleared.
    #[test]
    fn the_retained_store_matches_what_the_reference_matcher_matches(
        topics in prop::collection::vec(topic_name(), 1..10),
        ops in prop::collection::vec((0..10usize, prop::bool::weighted(0.65)), 0..30),
        filters in prop::collection::vec(filter(), 1..6),
    ) {
        let store = MemoryRetained::new();
        let mut model = HashMap::new();
        for (stamp, (i, set)) in (0u32..).zip(ops) {
            let t = &topics[i % topics.len()];
            if set {
                store.put(retained(t, &stamp.to_string()));
                model.insert(t.clone(), stamp.to_string());
            } else {
                store.put(retained(t, ""));
                model.remove(t);
            }
            for f in &filters {
                check_retained(&store, &model, f)?;
            }
        }
        for t in model.keys() {
            store.put(retained(t, ""));
        }
        prop_assert!(store.is_empty());
        prop_assert_eq!(format!("{store:?}"), format!("{:?}", MemoryRetained::new()));
    }
}
