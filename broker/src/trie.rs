//! The subscription trie: topic filters to subscribers, read on every publish.
//!
//! Each node is one topic level. A node has its literal children, one child
//! for `+`, the subscribers whose filter ends in `#` at that level, and the
//! subscribers whose filter ends exactly there. Matching a topic walks one
//! path per wildcard branch, so its cost depends on the topic's depth and
//! the wildcards in use, not on the number of subscriptions.
//!
//! | filter     | matches                   | does not match          |
//! |------------|---------------------------|-------------------------|
//! | `a/b`      | `a/b`                     | `a`, `a/b/c`, `a/c`     |
//! | `a/+`      | `a/b`, `a/`               | `a`, `a/b/c`            |
//! | `a/#`      | `a`, `a/b`, `a/b/c`       | `ab`                    |
//! | `#`, `+/x` | `x/y`, `a/x`              | `$SYS/x` [MQTT-4.7.2-1] |
//! | `$SYS/#`   | `$SYS/broker/uptime`      | `SYS/x`                 |
//!
//! A level costs one small node (a test keeps it at 40 bytes) plus its
//! name: children sit in an exactly sized list until there are many, and
//! subscriber lists are allocated only where filters end. The
//! `trie_memory` bench measures it.
//!
//! The trie stores any value `V` per `(filter, subscriber id)`; the broker
//! stores the subscriber's mailbox and granted QoS. Filters must be valid
//! (the codec checks them).

use std::collections::HashMap;

use crate::levels::Children;

/// Subscriptions indexed by topic filter.
#[derive(Debug)]
pub struct Trie<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Debug)]
struct Node<V> {
    /// The literal children ([`crate::levels`]).
    children: Children<Node<V>>,
    plus: Option<Box<Node<V>>>,
    /// The filters ending at this level, if any.
    ends: Option<Box<Ends<V>>>,
}

/// The subscribers of the filters that end at one node. Boxed, because
/// most nodes are inner levels and have none: inline they would more than
/// double the size of every node.
#[derive(Debug)]
struct Ends<V> {
    /// Filters ending in `#` at this level.
    hash: Subs<V>,
    /// Filters ending exactly at this level.
    exact: Subs<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: Children::default(),
            plus: None,
            ends: None,
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.ends.is_none()
    }
}

/// The subscribers of one filter. A plain vector scans fastest for the
/// usual handful; an index keeps removal O(1) for filters with thousands.
#[derive(Debug)]
struct Subs<V> {
    list: Vec<(u64, V)>,
    /// Boxed: almost every filter has none, and a map inline would double
    /// the size of [`Ends`].
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<u64, usize>>>,
}

impl<V> Default for Subs<V> {
    fn default() -> Self {
        Subs {
            list: Vec::new(),
            index: None,
        }
    }
}

const INDEX_FROM: usize = 32;

impl<V> Subs<V> {
    fn position(&self, id: u64) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&id).copied(),
            None => self.list.iter().position(|(i, _)| *i == id),
        }
    }

    fn insert(&mut self, id: u64, value: V) -> Option<V> {
        if let Some(pos) = self.position(id) {
            return Some(std::mem::replace(&mut self.list[pos].1, value));
        }
        if self.list.capacity() == 0 {
            // Most filters have one subscriber: room for one, not four.
            self.list.reserve_exact(1);
        }
        self.list.push((id, value));
        if let Some(index) = &mut self.index {
            index.insert(id, self.list.len() - 1);
        } else if self.list.len() > INDEX_FROM {
            let index = self.list.iter().enumerate().map(|(p, (i, _))| (*i, p));
            self.index = Some(Box::new(index.collect()));
        }
        None
    }

    fn remove(&mut self, id: u64) -> Option<V> {
        let pos = self.position(id)?;
        let (_, value) = self.list.swap_remove(pos);
        if let Some(index) = &mut self.index {
            index.remove(&id);
            if let Some((moved, _)) = self.list.get(pos) {
                index.insert(*moved, pos);
            }
        }
        if self.list.is_empty() {
            // Frees the list and index of a node that stays for its children.
            *self = Subs::default();
        }
        Some(value)
    }

    fn for_each<'a>(&'a self, f: &mut impl FnMut(u64, &'a V)) {
        for (id, v) in &self.list {
            f(*id, v);
        }
    }
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Trie {
            root: Node::default(),
            len: 0,
        }
    }
}

/// Splits the first level off a topic or filter: `a/b/c` gives `a` and
/// `Some("b/c")`, `a` gives `a` and `None`.
fn split(levels: &str) -> (&str, Option<&str>) {
    match levels.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (levels, None),
    }
}

impl<V> Trie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of `(filter, subscriber)` pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces subscriber `id`'s subscription to `filter`; returns
    /// the value it replaced [MQTT-3.8.4-3].
    pub fn insert(&mut self, filter: &str, id: u64, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut rest = Some(filter);
        while let Some(levels) = rest {
            let (level, next) = split(levels);
            if level == "#" {
                let old = node.ends_mut().hash.insert(id, value);
                self.len += usize::from(old.is_none());
                return old;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.get_or_insert(level)
            };
            rest = next;
        }
        let old = node.ends_mut().exact.insert(id, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Removes subscriber `id`'s subscription to `filter`, pruning nodes left
    /// empty; returns its value if there was one.
    pub fn remove(&mut self, filter: &str, id: u64) -> Option<V> {
        let mut levels: Vec<&str> = filter.split('/').collect();
        let hash = levels.last() == Some(&"#");
        if hash {
            levels.pop();
        }
        // Find the node, and the deepest node on the way that stays needed
        // whatever happens below it: the edge out of it is where an emptied
        // branch is cut off.
        let mut cut = 0;
        let mut node = &mut self.root;
        for (depth, level) in levels.iter().enumerate() {
            if node.holds_more_than_one_edge() {
                cut = depth;
            }
            node = node.child_mut(level)?;
        }
        let ends = node.ends.as_deref_mut()?;
        let old = if hash {
            ends.hash.remove(id)
        } else {
            ends.exact.remove(id)
        }?;
        if ends.hash.list.is_empty() && ends.exact.list.is_empty() {
            node.ends = None;
        }
        self.len -= 1;
        if node.is_empty() && !levels.is_empty() {
            let mut parent = &mut self.root;
            for level in &levels[..cut] {
                let Some(next) = parent.child_mut(level) else {
                    return Some(old);
                };
                parent = next;
            }
            parent.remove_child(levels[cut]);
        }
        Some(old)
    }

    /// Calls `f` with every subscription whose filter matches the topic name
    /// `topic`. A subscriber with several matching filters is seen once per
    /// filter; the caller merges them.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(u64, &'a V)) {
        // An explicit stack, not recursion: a topic may have tens of
        // thousands of levels and must not exhaust the task's stack.
        let mut stack: Vec<(&'a Node<V>, Option<&str>)> = Vec::new();
        let (level, next) = split(topic);
        // Wildcards at the first level never match `$` topics [MQTT-4.7.2-1].
        if !topic.starts_with('$') {
            if let Some(ends) = &self.root.ends {
                ends.hash.for_each(&mut f);
            }
            if let Some(plus) = &self.root.plus {
                stack.push((plus, next));
            }
        }
        // The literal path is walked in place and only `+` branches wait on
        // the stack, so a topic no `+` filter reaches never allocates it.
        // Each step is the node of the level just matched and the levels
        // still to match below it.
        let mut step = self.root.children.get(level).map(|child| (child, next));
        while let Some((node, rest)) = step.take().or_else(|| stack.pop()) {
            // `#` also matches the parent level itself: `a/#` matches `a`.
            let ends = node.ends.as_deref();
            if let Some(ends) = ends {
                ends.hash.for_each(&mut f);
            }
            let Some(levels) = rest else {
                if let Some(ends) = ends {
                    ends.exact.for_each(&mut f);
                }
                continue;
            };
            let (level, next) = split(levels);
            if let Some(plus) = &node.plus {
                stack.push((plus, next));
            }
            step = node.children.get(level).map(|child| (child, next));
        }
    }
}

impl<V> Node<V> {
    /// Whether the node must stay even if one of its edges goes: it has
    /// subscribers or more than one child.
    fn holds_more_than_one_edge(&self) -> bool {
        self.ends.is_some() || self.children.len() + usize::from(self.plus.is_some()) > 1
    }

    fn ends_mut(&mut self) -> &mut Ends<V> {
        self.ends.get_or_insert_with(|| {
            Box::new(Ends {
                hash: Subs::default(),
                exact: Subs::default(),
            })
        })
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    fn remove_child(&mut self, level: &str) {
        if level == "+" {
            self.plus = None;
        } else {
            self.children.remove(level);
        }
    }
}

impl<V> Drop for Node<V> {
    // Dropping level by level from a work list: the default recursive drop
    // could exhaust the stack on a filter with very many levels.
    fn drop(&mut self) {
        let mut work: Vec<Node<V>> = Vec::new();
        take_children(self, &mut work);
        while let Some(mut node) = work.pop() {
            take_children(&mut node, &mut work);
        }
    }
}

fn take_children<V>(node: &mut Node<V>, work: &mut Vec<Node<V>>) {
    node.children.drain_into(work);
    if let Some(plus) = node.plus.take() {
        work.push(*plus);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(trie: &Trie<u8>, topic: &str) -> Vec<(u64, u8)> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |id, v| out.push((id, *v)));
        out.sort_unstable();
        out
    }

    /// Every row: a filter, a topic and whether they match; each checked in
    /// a trie holding that filter alone and against the codec's reference
    /// matcher.
    #[test]
    fn the_trie_agrees_with_the_matching_table() {
        let table = [
            ("a/b", "a/b", true),
            ("a/b", "a", false),
            ("a/b", "a/b/c", false),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("#", "x", true),
            ("#", "/x", true),
            ("#", "$SYS/x", false),
            ("+/x", "a/x", true),
            ("+/x", "$SYS/x", false),
            ("+", "/x", false),
            ("/+", "/x", true),
            ("+/+", "/x", true),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("$SYS/+/uptime", "$SYS/broker/uptime", true),
            ("$SYS/#", "SYS/x", false),
            ("a//c", "a//c", true),
            ("a/+/c", "a//c", true),
            ("+/+/+", "a/b", false),
            ("a/+/#", "a/b", true),
            ("a/+/#", "a", false),
            ("sport/tennis/#", "sport/tennis/player1/ranking", true),
            ("a/$b", "a/$b", true),
            ("a/+", "a/$b", true),
        ];
        for (filter, topic, want) in table {
            let mut trie = Trie::new();
            trie.insert(filter, 1, 0u8);
            let got = !matches(&trie, topic).is_empty();
            assert_eq!(got, want, "filter {filter:?} topic {topic:?}");
            assert_eq!(
                midge_protocol::topic::matches(filter, topic),
                want,
                "reference: {filter:?} {topic:?}"
            );
        }
    }

    #[test]
    fn a_subscriber_with_overlapping_filters_is_seen_once_per_filter() {
        let mut trie = Trie::new();
        trie.insert("a/+", 1, 1);
        trie.insert("a/#", 1, 2);
        trie.insert("a/b", 2, 0);
        assert_eq!(matches(&trie, "a/b"), vec![(1, 1), (1, 2), (2, 0)]);
        assert_eq!(trie.len(), 3);
    }

    #[test]
    fn resubscribing_replaces_the_value_mqtt_3_8_4_3() {
        let mut trie = Trie::new();
        assert_eq!(trie.insert("a", 1, 0), None);
        assert_eq!(trie.insert("a", 1, 2), Some(0));
        assert_eq!(matches(&trie, "a"), vec![(1, 2)]);
        assert_eq!(trie.len(), 1);
    }

    #[test]
    fn removing_prunes_empty_nodes_and_leaves_others() {
        let mut trie = Trie::new();
        trie.insert("a/+/c", 1, 0);
        trie.insert("a/b/#", 2, 0);
        trie.insert("a/b/#", 3, 0);
        assert_eq!(trie.remove("a/+/c", 1), Some(0));
        assert_eq!(trie.remove("a/+/c", 1), None);
        assert_eq!(trie.remove("x/y", 1), None);
        assert!(trie.root.children.get("a").expect("a").plus.is_none());
        assert_eq!(trie.remove("a/b/#", 2), Some(0));
        assert_eq!(matches(&trie, "a/b/c"), vec![(3, 0)]);
        assert_eq!(trie.remove("a/b/#", 3), Some(0));
        assert!(trie.root.is_empty());
        assert!(trie.is_empty());
    }

    #[test]
    fn many_subscribers_of_one_filter_are_indexed() {
        let mut trie = Trie::new();
        for id in 0..200 {
            trie.insert("t", id, (id % 3) as u8);
        }
        for id in (0..200).step_by(2) {
            assert_eq!(trie.remove("t", id), Some((id % 3) as u8));
        }
        let got = matches(&trie, "t");
        assert_eq!(got.len(), 100);
        assert!(got
            .iter()
            .all(|(id, v)| id % 2 == 1 && u64::from(*v) == id % 3));
        assert_eq!(trie.insert("t", 1, 9), Some(1));
        assert_eq!(trie.len(), 100);
    }

    #[test]
    fn topics_with_tens_of_thousands_of_levels_do_not_exhaust_the_stack() {
        // A small stack makes any recursion over levels fail loudly.
        let run = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let deep = vec!["a"; 30_000].join("/");
                let plus = vec!["+"; 30_000].join("/");
                let mut trie = Trie::new();
                trie.insert(&deep, 1, 1u8);
                trie.insert(&plus, 2, 2u8);
                trie.insert(&format!("{deep}/#"), 3, 3u8);
                assert_eq!(matches(&trie, &deep), vec![(1, 1), (2, 2), (3, 3)]);
                assert_eq!(trie.remove(&deep, 1), Some(1));
                assert_eq!(trie.remove(&format!("{deep}/#"), 3), Some(3));
                assert_eq!(matches(&trie, &deep), vec![(2, 2)]);
                assert!(trie.root.children.is_empty());
                drop(trie);
            });
        run.expect("thread").join().expect("no stack overflow");
    }

    #[test]
    fn a_node_with_many_children_switches_to_a_map_and_back() {
        let mut trie = Trie::new();
        let n = 3 * crate::levels::LIST_MAX as u64;
        for id in 0..n {
            trie.insert(&format!("a/{id}/x"), id, 0u8);
        }
        let a = trie.root.children.get("a").expect("a");
        assert!(matches!(a.children, Children::Map(_)));
        for id in 0..n {
            assert_eq!(matches(&trie, &format!("a/{id}/x")), vec![(id, 0)]);
        }
        for id in 0..n - 1 {
            assert_eq!(trie.remove(&format!("a/{id}/x"), id), Some(0));
        }
        let a = trie.root.children.get("a").expect("a");
        assert!(matches!(&a.children, Children::List(l) if l.len() == 1));
        assert_eq!(matches(&trie, &format!("a/{}/x", n - 1)), vec![(n - 1, 0)]);
        assert_eq!(matches(&trie, "a/0/x"), vec![]);
    }

    /// A node is paid once per topic level of every filter, next to its
    /// level's name in its parent's child list. With the children as a hash
    /// map and both subscriber lists inline it was 200 bytes, and a
    /// one-child level cost a whole table: about 900 bytes a level. Now it
    /// is a vector (24) and two pointers (the `+` child and the subscribers);
    /// with its name, 56 bytes, in jemalloc's 64-byte size class.
    #[test]
    fn a_node_stays_small() {
        assert!(std::mem::size_of::<Node<(u64, u64)>>() <= 40);
        assert!(std::mem::size_of::<(Box<str>, Node<(u64, u64)>)>() <= 56);
    }
}
