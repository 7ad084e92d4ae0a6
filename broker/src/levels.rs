//! [`Children`]: a topic tree node's children by level name, shared by the
//! subscription trie ([`crate::trie`]) and the retained store
//! ([`crate::retained`]).
//!
//! Most levels have one child or a few (a long topic is a chain of
//! one-child levels), and the smallest hash table holds four entries plus
//! control bytes, so a few children live in an exactly sized vector searched
//! linearly: comparing a few short strings is also faster than hashing one
//! with SipHash. Past [`LIST_MAX`] children a map keeps lookups O(1); it
//! stays keyed with `RandomState` because level names come from peers'
//! SUBSCRIBEs and PUBLISHes.

use std::collections::HashMap;

/// A node's children `N`, keyed by level name. The same size as a `Vec`.
#[derive(Debug)]
pub(crate) enum Children<N> {
    /// Up to [`LIST_MAX`] children, in no particular order.
    List(Vec<(Box<str>, N)>),
    /// More children. Boxed so that the enum is no bigger than the vector.
    #[allow(clippy::box_collection)]
    Map(Box<HashMap<Box<str>, N>>),
}

/// The most children kept in a [`Children::List`].
pub(crate) const LIST_MAX: usize = 8;

impl<N> Default for Children<N> {
    fn default() -> Self {
        Children::List(Vec::new())
    }
}

impl<N> Children<N> {
    /// The number of children.
    pub(crate) fn len(&self) -> usize {
        match self {
            Children::List(list) => list.len(),
            Children::Map(map) => map.len(),
        }
    }

    /// Whether there are no children.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The child named `level`.
    pub(crate) fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::List(list) => list.iter().find(|(k, _)| **k == *level).map(|(_, n)| n),
            Children::Map(map) => map.get(level),
        }
    }

    /// The child named `level`, to change.
    pub(crate) fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::List(list) => list.iter_mut().find(|(k, _)| **k == *level).map(|(_, n)| n),
            Children::Map(map) => map.get_mut(level),
        }
    }

    /// The child named `level`, added empty if there is none.
    pub(crate) fn get_or_insert(&mut self, level: &str) -> &mut N
    where
        N: Default,
    {
        if let Children::List(list) = self {
            if list.len() >= LIST_MAX && !list.iter().any(|(k, _)| **k == *level) {
                let map = std::mem::take(list).into_iter().collect();
                *self = Children::Map(Box::new(map));
            }
        }
        match self {
            Children::List(list) => {
                let pos = match list.iter().position(|(k, _)| **k == *level) {
                    Some(pos) => pos,
                    None => {
                        // Exactly sized: the usual one child costs one node,
                        // not the four a doubling vector starts with.
                        list.reserve_exact(1);
                        list.push((level.into(), N::default()));
                        list.len() - 1
                    }
                };
                &mut list[pos].1
            }
            Children::Map(map) => map.entry(level.into()).or_default(),
        }
    }

    /// Removes the child named `level` with everything below it.
    pub(crate) fn remove(&mut self, level: &str) {
        match self {
            Children::List(list) => {
                if let Some(pos) = list.iter().position(|(k, _)| **k == *level) {
                    list.swap_remove(pos);
                    list.shrink_to_fit();
                }
            }
            Children::Map(map) => {
                map.remove(level);
                // Back to a list well below the switch, so that one level
                // going and coming back does not convert every time.
                if map.len() <= LIST_MAX / 2 {
                    let list: Vec<_> = std::mem::take(&mut **map).into_iter().collect();
                    *self = Children::List(list);
                }
            }
        }
    }

    /// Every child with its level name, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &N)> {
        let (list, map) = match self {
            Children::List(list) => (Some(list.iter()), None),
            Children::Map(map) => (None, Some(map.iter())),
        };
        let list = list.into_iter().flatten().map(|(k, n)| (&**k, n));
        list.chain(map.into_iter().flatten().map(|(k, n)| (&**k, n)))
    }

    /// Moves every child into `work`, leaving none. Trees drop their nodes
    /// through a work list with this, not recursively: a topic may have
    /// very many levels.
    pub(crate) fn drain_into(&mut self, work: &mut Vec<N>) {
        match std::mem::take(self) {
            Children::List(list) => work.extend(list.into_iter().map(|(_, n)| n)),
            Children::Map(map) => work.extend(map.into_values()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(children: &Children<u32>) -> Vec<(String, u32)> {
        let mut out: Vec<_> = children.iter().map(|(k, n)| (k.to_owned(), *n)).collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn many_children_switch_to_a_map_and_few_back_to_a_list() {
        let mut children = Children::<u32>::default();
        let n = 3 * LIST_MAX as u32;
        for i in 0..n {
            *children.get_or_insert(&i.to_string()) = i;
            let is_map = matches!(children, Children::Map(_));
            assert_eq!(is_map, i as usize >= LIST_MAX, "after {i}");
        }
        assert_eq!(children.len(), n as usize);
        assert_eq!(names(&children).len(), n as usize);
        for i in 0..n {
            assert_eq!(children.get(&i.to_string()), Some(&i));
        }
        for i in 0..n - 1 {
            children.remove(&i.to_string());
            assert_eq!(children.get(&i.to_string()), None);
        }
        assert!(matches!(&children, Children::List(l) if l.len() == 1));
        assert_eq!(names(&children), vec![((n - 1).to_string(), n - 1)]);
    }

    #[test]
    fn an_existing_child_is_found_not_added_again() {
        let mut children = Children::<u32>::default();
        *children.get_or_insert("a") = 1;
        *children.get_or_insert("a") += 1;
        if let Some(n) = children.get_mut("a") {
            *n += 1;
        }
        assert_eq!(names(&children), vec![("a".to_owned(), 3)]);
        children.remove("b");
        children.remove("a");
        assert!(children.is_empty());
        let mut work = Vec::new();
        *children.get_or_insert("") = 7;
        children.drain_into(&mut work);
        assert_eq!((work, children.len()), (vec![7], 0));
    }

    #[test]
    fn children_are_no_bigger_than_a_vector() {
        assert_eq!(
            std::mem::size_of::<Children<[u64; 4]>>(),
            std::mem::size_of::<Vec<u8>>()
        );
    }
}
