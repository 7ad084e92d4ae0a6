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

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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
    tree: RwLock<Level>,
}

#[derive(Debug, Default)]
struct Level {
    children: HashMap<Box<str>, Level>,
    msg: Option<Arc<Message>>,
    /// Messages stored in this subtree, this level's included.
    count: usize,
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
            remove(&mut tree, msg.topic());
        } else {
            insert(&mut tree, msg);
        }
    }

    fn for_each_match(&self, filter: &str, f: &mut dyn FnMut(&Arc<Message>)) {
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        // An explicit stack, not recursion: topics and filters may have tens
        // of thousands of levels.
        let mut stack: Vec<Visit<'_, '_>> = Vec::new();
        let (level, next) = split(filter);
        for (name, child) in &tree.children {
            // Wildcards at the first level skip `$` topics [MQTT-4.7.2-1].
            let wild_ok = !name.starts_with('$');
            match level {
                "#" if wild_ok => stack.push(Visit::All(child)),
                "+" if wild_ok => stack.push(Visit::Walk(child, next)),
                _ => {}
            }
        }
        if level != "#" && level != "+" {
            if let Some(child) = tree.children.get(level) {
                stack.push(Visit::Walk(child, next));
            }
        }
        while let Some(visit) = stack.pop() {
            match visit {
                Visit::All(node) => {
                    if let Some(msg) = &node.msg {
                        f(msg);
                    }
                    stack.extend(node.children.values().map(Visit::All));
                }
                Visit::Walk(node, None) => {
                    if let Some(msg) = &node.msg {
                        f(msg);
                    }
                }
                Visit::Walk(node, Some(levels)) => match split(levels) {
                    // `a/#` matches `a` itself and everything below it.
                    ("#", _) => stack.push(Visit::All(node)),
                    ("+", next) => {
                        stack.extend(node.children.values().map(|c| Visit::Walk(c, next)))
                    }
                    (level, next) => {
                        if let Some(child) = node.children.get(level) {
                            stack.push(Visit::Walk(child, next));
                        }
                    }
                },
            }
        }
    }

    fn len(&self) -> usize {
        self.tree.read().unwrap_or_else(|e| e.into_inner()).count
    }
}

fn split(levels: &str) -> (&str, Option<&str>) {
    match levels.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (levels, None),
    }
}

fn insert(root: &mut Level, msg: Arc<Message>) {
    // Count first whether this adds a message, then walk down adding it to
    // every level's count on the way.
    let added = usize::from(find(root, msg.topic()).is_none());
    let mut node = root;
    node.count += added;
    let mut rest = Some(msg.topic());
    while let Some(levels) = rest {
        let (level, next) = split(levels);
        node = node.children.entry(level.into()).or_default();
        node.count += added;
        rest = next;
    }
    node.msg = Some(msg);
}

fn find<'a>(root: &'a Level, topic: &str) -> Option<&'a Arc<Message>> {
    let mut node = root;
    for level in topic.split('/') {
        node = node.children.get(level)?;
    }
    node.msg.as_ref()
}

/// Removes the message at `topic`; true if there was one. Counts drop
/// along the path, and the first level left without messages is cut off
/// with everything below it.
fn remove(root: &mut Level, topic: &str) -> bool {
    if find(root, topic).is_none() {
        return false;
    }
    let mut node = root;
    node.count -= 1;
    for level in topic.split('/') {
        let emptied = match node.children.get_mut(level) {
            Some(child) => {
                child.count -= 1;
                child.count == 0
            }
            None => return false,
        };
        if emptied {
            node.children.remove(level);
            return true;
        }
        match node.children.get_mut(level) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.msg = None;
    true
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
        let mut work: Vec<Level> = self.children.drain().map(|(_, c)| c).collect();
        while let Some(mut level) = work.pop() {
            work.extend(level.children.drain().map(|(_, c)| c));
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
        assert!(store.tree.read().expect("lock").children.is_empty());
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
}
