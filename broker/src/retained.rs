//! Retained messages: the last retained PUBLISH per topic [MQTT-3.3.1-5].
//!
//! A retained PUBLISH replaces the topic's message; one with an empty
//! payload removes it [MQTT-3.3.1-10] [MQTT-3.3.1-11]. A new subscription
//! receives the retained messages its filter matches, with RETAIN set
//! [MQTT-3.3.1-6] [MQTT-3.3.1-8].
//!
//! Storage sits behind [`RetainedStore`]; [`MemoryRetained`] is a tree of
//! topic levels, so a filter visits only the branches it can match instead
//! of every stored topic. With persistence on, the router journals each
//! change in the same transaction as the publish ([`crate::persist`]) and
//! start-up puts the journaled messages back here.
//!
//! | filter     | selects                   | skips                   |
//! |------------|---------------------------|-------------------------|
//! | `a/+`      | `a/b`, `a/`, `a/$b`       | `a`, `a/b/c`            |
//! | `a/#`      | `a`, `a/b`, `a/b/c`       | `ab`                    |
//! | `#`, `+/x` | `x/y`, `a/x`              | `$SYS/x` [MQTT-4.7.2-1] |
//!
//! A level costs one small node (a test keeps it at 32 bytes) next to its
//! name in its parent's child list (`levels.rs`), like the
//! subscription trie's; the `trie_memory` bench measures both.

use std::sync::{Arc, RwLock};

use crate::levels::Children;
use crate::message::Message;

/// Where retained messages are kept.
pub trait RetainedStore: Send + Sync + 'static {
    /// Stores `msg` as its topic's retained message, replacing any other;
    /// an empty payload removes the topic's message instead.
    fn put(&self, msg: Arc<Message>);

    /// Calls `f` with every retained message whose topic matches `filter`.
    fn for_each_match(&self, filter: &str, f: &mut dyn FnMut(&Arc<Message>));

    /// The number of retained messages.
    fn len(&self) -> usize;

    /// Whether no message is retained.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-memory [`RetainedStore`].
#[derive(Debug, Default)]
pub struct MemoryRetained {
    tree: RwLock<Tree>,
}

#[derive(Debug, Default)]
struct Tree {
    /// The level above the first: it never holds a message.
    root: Level,
    /// The number of messages.
    len: usize,
}

/// One topic level. Every leaf holds a message: removing one prunes the
/// levels left without messages below them.
#[derive(Debug, Default)]
struct Level {
    children: Children<Level>,
    msg: Option<Arc<Message>>,
}

impl MemoryRetained {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RetainedStore for MemoryRetained {
    fn put(&self, msg: Arc<Message>) {
        // A poisoned lock only means another thread panicked mid-update; the
        // tree is still structurally sound, so keep serving.
        let mut tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        if msg.payload_len() == 0 {
            tree.remove(msg.topic());
        } else {
            tree.insert(msg);
        }
    }

    fn for_each_match(&self, filter: &str, f: &mut dyn FnMut(&Arc<Message>)) {
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        tree.for_each_match(filter, f);
    }

    fn len(&self) -> usize {
        self.tree.read().unwrap_or_else(|e| e.into_inner()).len
    }
}

fn split(levels: &str) -> (&str, Option<&str>) {
    match levels.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (levels, None),
    }
}

impl Tree {
    fn insert(&mut self, msg: Arc<Message>) {
        let mut node = &mut self.root;
        for level in msg.topic().split('/') {
            node = node.children.get_or_insert(level);
        }
        if node.msg.replace(msg).is_none() {
            self.len += 1;
        }
    }

    /// Removes the message at `topic`; true if there was one. The deepest
    /// level on its path that keeps a message or another child stays, and
    /// the branch below it goes.
    fn remove(&mut self, topic: &str) -> bool {
        // Two walks down, not one: the node where the branch is cut cannot
        // stay borrowed while the walk goes on below it. Splitting twice
        // spares an allocation for an empty PUBLISH to a topic never stored.
        let mut cut = 0;
        let mut node = &mut self.root;
        for (depth, level) in topic.split('/').enumerate() {
            if node.msg.is_some() || node.children.len() > 1 {
                cut = depth;
            }
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        if node.msg.take().is_none() {
            return false;
        }
        self.len -= 1;
        if node.children.is_empty() {
            let mut levels = topic.split('/');
            let mut parent = &mut self.root;
            for level in levels.by_ref().take(cut) {
                match parent.children.get_mut(level) {
                    Some(child) => parent = child,
                    None => return true,
                }
            }
            if let Some(level) = levels.next() {
                parent.children.remove(level);
            }
        }
        true
    }

    fn for_each_match(&self, filter: &str, f: &mut dyn FnMut(&Arc<Message>)) {
        // An explicit stack, not recursion: topics and filters may have very
        // many levels. The literal path is walked in place and only
        // wildcard branches wait on the stack, so an exact filter never
        // allocates it.
        let mut stack: Vec<Visit<'_, '_>> = Vec::new();
        let (level, next) = split(filter);
        let mut step = None;
        if level == "#" || level == "+" {
            for (name, child) in self.root.children.iter() {
                // Wildcards at the first level skip `$` topics [MQTT-4.7.2-1].
                if !name.starts_with('$') {
                    stack.push(match level {
                        "#" => Visit::All(child),
                        _ => Visit::Walk(child, next),
                    });
                }
            }
        } else {
            step = self.root.children.get(level).map(|c| Visit::Walk(c, next));
        }
        while let Some(visit) = step.take().or_else(|| stack.pop()) {
            match visit {
                Visit::All(node) => {
                    if let Some(msg) = &node.msg {
                        f(msg);
                    }
                    stack.extend(node.children.iter().map(|(_, c)| Visit::All(c)));
                }
                Visit::Walk(node, None) => {
                    if let Some(msg) = &node.msg {
                        f(msg);
                    }
                }
                Visit::Walk(node, Some(levels)) => match split(levels) {
                    // `a/#` matches `a` itself and everything below it.
                    ("#", _) => step = Some(Visit::All(node)),
                    ("+", next) => {
                        let children = node.children.iter();
                        stack.extend(children.map(|(_, c)| Visit::Walk(c, next)));
                    }
                    (level, next) => {
                        step = node.children.get(level).map(|c| Visit::Walk(c, next));
                    }
                },
            }
        }
    }
}

/// A step of a filter walk over the tree.
enum Visit<'t, 'f> {
    /// `node` is the level just matched; the filter levels left follow.
    Walk(&'t Level, Option<&'f str>),
    /// Every message in `node`'s subtree, its own included.
    All(&'t Level),
}

impl Drop for Level {
    // Level by level from a work list: the default recursive drop could
    // exhaust the stack on a topic with very many levels.
    fn drop(&mut self) {
        let mut work: Vec<Level> = Vec::new();
        self.children.drain_into(&mut work);
        while let Some(mut level) = work.pop() {
            level.children.drain_into(&mut work);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midge_protocol::QoS;

    fn msg(topic: &str, payload: &str) -> Arc<Message> {
        Message::new(topic, payload.as_bytes(), QoS::AtMostOnce, true).expect("message")
    }

    fn matching(store: &MemoryRetained, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.for_each_match(filter, &mut |m| {
            out.push(format!(
                "{}={}",
                m.topic(),
                String::from_utf8_lossy(&m.payload())
            ))
        });
        out.sort();
        out
    }

    #[test]
    fn a_newer_retained_message_replaces_the_older_mqtt_3_3_1_5() {
        let store = MemoryRetained::new();
        store.put(msg("a/b", "1"));
        store.put(msg("a/b", "2"));
        assert_eq!(matching(&store, "a/b"), vec!["a/b=2"]);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn an_empty_retained_message_removes_the_topic_mqtt_3_3_1_10() {
        let store = MemoryRetained::new();
        store.put(msg("a/b", "1"));
        store.put(msg("a", "0"));
        store.put(msg("a/b", ""));
        assert_eq!(matching(&store, "#"), vec!["a=0"]);
        assert_eq!(store.len(), 1);
        store.put(msg("a", ""));
        store.put(msg("never/stored", ""));
        assert!(store.is_empty());
        assert!(store.tree.read().expect("lock").root.children.is_empty());
    }

    #[test]
    fn filters_select_the_matching_topics() {
        let store = MemoryRetained::new();
        for t in ["a", "a/b", "a/b/c", "a/c", "b", "/x", "$SYS/up", "a/$x"] {
            store.put(msg(t, "v"));
        }
        let table: [(&str, &[&str]); 10] = [
            ("#", &["/x", "a", "a/$x", "a/b", "a/b/c", "a/c", "b"]),
            ("a/#", &["a", "a/$x", "a/b", "a/b/c", "a/c"]),
            ("a/+", &["a/$x", "a/b", "a/c"]),
            ("+", &["a", "b"]),
            ("+/b", &["a/b"]),
            ("+/+", &["/x", "a/$x", "a/b", "a/c"]),
            ("$SYS/#", &["$SYS/up"]),
            ("+/up", &[]),
            ("a/b/c", &["a/b/c"]),
            ("a/b/c/d", &[]),
        ];
        for (filter, want) in table {
            let mut want: Vec<String> = want.iter().map(|t| format!("{t}=v")).collect();
            want.sort();
            assert_eq!(matching(&store, filter), want, "filter {filter}");
        }
        assert_eq!(store.len(), 8);
    }

    #[test]
    fn topics_with_tens_of_thousands_of_levels_do_not_exhaust_the_stack() {
        let run = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let deep = vec!["a"; 30_000].join("/");
                let store = MemoryRetained::new();
                store.put(msg(&deep, "v"));
                store.put(msg(&format!("{deep}/b"), "w"));
                assert_eq!(matching(&store, "#").len(), 2);
                assert_eq!(matching(&store, &vec!["+"; 30_000].join("/")).len(), 1);
                store.put(msg(&deep, ""));
                assert_eq!(store.len(), 1);
                drop(store);
            });
        run.expect("thread").join().expect("no stack overflow");
    }

    #[test]
    fn clearing_a_topic_prunes_only_the_levels_left_without_messages() {
        let store = MemoryRetained::new();
        for t in ["a", "a/b/c/d", "a/b/x"] {
            store.put(msg(t, "v"));
        }
        let children = |path: &[&str]| -> Vec<String> {
            let tree = store.tree.read().expect("lock");
            let mut node = &tree.root;
            for level in path {
                node = node.children.get(level).expect("level");
            }
            let mut names: Vec<String> = node.children.iter().map(|(k, _)| k.into()).collect();
            names.sort();
            names
        };
        store.put(msg("a/b/c/d", ""));
        assert_eq!(children(&["a", "b"]), vec!["x"]);
        store.put(msg("a/b/x", ""));
        assert!(children(&["a"]).is_empty());
        assert_eq!(matching(&store, "#"), vec!["a=v"]);
        store.put(msg("a", ""));
        assert!(children(&[]).is_empty());
        assert!(store.is_empty());
    }

    /// A level is paid once per topic level of every retained topic, next
    /// to its name in its parent's child list. With a hash map of children
    /// and a per-subtree count it was 56 bytes plus a table: ~340 bytes a
    /// level. Now it is a vector (24) and the message pointer; with its
    /// name, 48 bytes, a jemalloc size class of its own.
    #[test]
    fn a_level_stays_small() {
        assert!(std::mem::size_of::<Level>() <= 32);
        assert!(std::mem::size_of::<(Box<str>, Level)>() <= 48);
    }

    /// Checks the tree's invariants: every leaf below the root holds a
    /// message, each message sits at its own topic, and `len` counts them.
    fn check_shape(store: &MemoryRetained) {
        let tree = store.tree.read().expect("lock");
        assert!(tree.root.msg.is_none());
        let mut stack: Vec<(String, &Level)> = tree
            .root
            .children
            .iter()
            .map(|(k, c)| (k.to_owned(), c))
            .collect();
        let mut msgs = 0;
        while let Some((path, node)) = stack.pop() {
            assert!(
                node.msg.is_some() || !node.children.is_empty(),
                "{path:?} is an empty leaf"
            );
            if let Some(m) = &node.msg {
                assert_eq!(m.topic(), path);
                msgs += 1;
            }
            let children = node.children.iter();
            stack.extend(children.map(|(k, c)| (format!("{path}/{k}"), c)));
        }
        assert_eq!(msgs, tree.len);
    }

    proptest::proptest! {
        /// Random puts and clears over a few short topics leave no empty
        /// branch behind and keep the count.
        #[test]
        fn puts_and_clears_keep_the_tree_pruned_and_counted(
            ops in proptest::collection::vec(
                (proptest::collection::vec(
                    proptest::sample::select(vec!["a", "b", "", "$x"]), 1..5),
                 proptest::bool::weighted(0.6)),
                0..40),
        ) {
            let store = MemoryRetained::new();
            let mut topics: Vec<String> = Vec::new();
            for (levels, set) in ops {
                let topic = levels.join("/");
                if topic.is_empty() {
                    continue;
                }
                store.put(msg(&topic, if set { "v" } else { "" }));
                check_shape(&store);
                topics.push(topic);
            }
            for topic in topics {
                store.put(msg(&topic, ""));
            }
            check_shape(&store);
            proptest::prop_assert!(store.is_empty());
            proptest::prop_assert!(store.tree.read().expect("lock").root.children.is_empty());
        }
    }
}
