//! Subscriptions (a topic trie with `+` and `#`) and retained messages.
//!
//! Subscribers are session slots (indices), so routing a PUBLISH never hashes a client id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::mqtt::topic;
use crate::mqtt::QoS;

/// One application message. Its topic and payload are each allocated once and shared (cloning
/// a `Message` bumps two reference counts) by every subscriber queue and the retained store.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Rc<str>,
    pub payload: crate::buffer::SharedBytes,
    pub qos: QoS,
    pub retain: bool,
}

/// A fast, non-cryptographic hasher for topic levels on the routing hot path (the std SipHash
/// costs more than the rest of a trie step). Flooding the trie with colliding level names needs
/// subscribe rights, and each subscription is bounded by the packet size.
#[derive(Default, Clone, Copy)]
pub struct LevelHasher(u64);

impl Hasher for LevelHasher {
    fn write(&mut self, bytes: &[u8]) {
        // FxHash's multiply-rotate step, a word at a time.
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type LevelMap<V> = HashMap<Box<str>, V, BuildHasherDefault<LevelHasher>>;

/// A subscriber of one filter: the session slot and the QoS it was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub session: usize,
    pub qos: QoS,
}

/// Children of a trie node by exact level name. Most nodes have a handful, where a scan beats
/// hashing; wide nodes (one level per device id, say) switch to a map.
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<str>, usize)>),
    Many(LevelMap<usize>),
}

/// Beyond this many children a node hashes.
const FEW_CHILDREN: usize = 8;

impl Default for Children {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl Children {
    fn get(&self, level: &str) -> Option<usize> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| k.len() == level.len() && **k == *level).map(|&(_, n)| n),
            Children::Many(m) => m.get(level).copied(),
        }
    }

    fn insert(&mut self, level: &str, node: usize) {
        match self {
            Children::Few(v) if v.len() < FEW_CHILDREN => v.push((level.into(), node)),
            Children::Few(v) => {
                let mut m: LevelMap<usize> = std::mem::take(v).into_iter().collect();
                m.insert(level.into(), node);
                *self = Children::Many(m);
            }
            Children::Many(m) => {
                m.insert(level.into(), node);
            }
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => v.retain(|(k, _)| **k != *level),
            Children::Many(m) => {
                m.remove(level);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }
}

/// Split off the first level of a topic: `("a", Some("b/c"))` for `"a/b/c"`. A byte scan: levels
/// are short, and `str::split` sets up a searcher per call.
fn split_level(topic: &str) -> (&str, Option<&str>) {
    match topic.bytes().position(|b| b == b'/') {
        Some(i) => (topic.get(..i).unwrap_or(""), topic.get(i + 1..)),
        None => (topic, None),
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Children by exact level name.
    children: Children,
    /// Child for the `+` level.
    plus: Option<usize>,
    /// Subscribers of `.../#` at this node (they match this level and everything below it).
    multi: Vec<Subscriber>,
    /// Subscribers of a filter ending exactly here.
    exact: Vec<Subscriber>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.multi.is_empty() && self.exact.is_empty()
    }
}

/// The subscription trie. Nodes live in an arena; emptied nodes are pruned and reused.
#[derive(Debug)]
pub struct Router {
    nodes: Vec<Node>,
    free: Vec<usize>,
    /// Bumped by every change of subscriptions, so cached match lists know they are stale.
    generation: u64,
}

impl Default for Router {
    fn default() -> Self {
        Router { nodes: vec![Node::default()], free: Vec::new(), generation: 0 }
    }
}

const ROOT: usize = 0;

impl Router {
    fn new_node(&mut self) -> usize {
        if let Some(i) = self.free.pop() {
            return i;
        }
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Add or replace (same session, same filter) a subscription. Returns true if it replaced one.
    /// `filter` must be valid (the codec checks).
    pub fn subscribe(&mut self, filter: &str, sub: Subscriber) -> bool {
        self.generation += 1;
        let mut node = ROOT;
        let mut multi = false;
        for level in filter.split('/') {
            if level == "#" {
                multi = true;
                break;
            }
            let next = if level == "+" {
                self.nodes.get(node).and_then(|n| n.plus)
            } else {
                self.nodes.get(node).and_then(|n| n.children.get(level))
            };
            node = match next {
                Some(n) => n,
                None => {
                    let child = self.new_node();
                    if let Some(parent) = self.nodes.get_mut(node) {
                        if level == "+" {
                            parent.plus = Some(child);
                        } else {
                            parent.children.insert(level, child);
                        }
                    }
                    child
                }
            };
        }
        let Some(n) = self.nodes.get_mut(node) else { return false };
        let list = if multi { &mut n.multi } else { &mut n.exact };
        if let Some(existing) = list.iter_mut().find(|s| s.session == sub.session) {
            existing.qos = sub.qos;
            true
        } else {
            list.push(sub);
            false
        }
    }

    /// Remove a session's subscription to `filter`. Returns whether it existed.
    pub fn unsubscribe(&mut self, filter: &str, session: usize) -> bool {
        self.generation += 1;
        // Walk down remembering the path so emptied nodes can be pruned bottom-up.
        let mut path: Vec<(usize, &str)> = Vec::new();
        let mut node = ROOT;
        let mut multi = false;
        for level in filter.split('/') {
            if level == "#" {
                multi = true;
                break;
            }
            let next = match self.nodes.get(node) {
                Some(n) if level == "+" => n.plus,
                Some(n) => n.children.get(level),
                None => None,
            };
            let Some(next) = next else { return false };
            path.push((node, level));
            node = next;
        }
        let Some(n) = self.nodes.get_mut(node) else { return false };
        let list = if multi { &mut n.multi } else { &mut n.exact };
        let Some(pos) = list.iter().position(|s| s.session == session) else { return false };
        list.swap_remove(pos);
        // Prune empty nodes from the leaf up.
        let mut child = node;
        while let Some((parent, level)) = path.pop() {
            if !self.nodes.get(child).is_some_and(Node::is_empty) {
                break;
            }
            if let Some(p) = self.nodes.get_mut(parent) {
                if level == "+" {
                    p.plus = None;
                } else {
                    p.children.remove(level);
                }
            }
            if let Some(c) = self.nodes.get_mut(child) {
                *c = Node::default();
            }
            self.free.push(child);
            child = parent;
        }
        true
    }

    /// Changes whenever the subscriptions change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Append every subscriber whose filter matches `topic` to `out` (a session may appear more
    /// than once if several of its filters match; the caller merges).
    pub fn matches(&self, topic: &str, out: &mut Vec<Subscriber>) {
        // 4.7.2: filters starting with a wildcard do not match topics starting with `$`.
        let dollar = topic.starts_with('$');
        self.collect(ROOT, topic, true, dollar, out);
    }

    fn collect(&self, node: usize, rest: &str, first: bool, dollar: bool, out: &mut Vec<Subscriber>) {
        let Some(n) = self.nodes.get(node) else { return };
        let wild_ok = !(first && dollar);
        if wild_ok {
            // `a/#` matches `a` itself and everything below (4.7.1.2).
            out.extend_from_slice(&n.multi);
        }
        let (level, tail) = split_level(rest);
        let mut visit = |child: usize| match tail {
            Some(t) => self.collect(child, t, false, dollar, out),
            None => {
                if let Some(c) = self.nodes.get(child) {
                    out.extend_from_slice(&c.exact);
                    // `a/#` also matches `a` (the parent level).
                    out.extend_from_slice(&c.multi);
                }
            }
        };
        if let Some(child) = n.children.get(level) {
            visit(child);
        }
        if wild_ok {
            if let Some(child) = n.plus {
                visit(child);
            }
        }
    }
}

/// Retained messages by topic.
#[derive(Debug, Default)]
pub struct RetainedStore {
    // SipHash here: any publisher chooses these keys, and this is not the per-message path.
    by_topic: HashMap<Rc<str>, Message>,
}

impl RetainedStore {
    /// Store `msg` as the retained message of its topic, or clear it when the payload is empty
    /// (3.3.1-10/11).
    pub fn update(&mut self, msg: &Message) {
        if msg.payload.is_empty() {
            self.by_topic.remove(&msg.topic);
        } else {
            self.by_topic.insert(Rc::clone(&msg.topic), msg.clone());
        }
    }

    /// Retained messages matching `filter`.
    pub fn matching<'a>(&'a self, filter: &'a str) -> impl Iterator<Item = &'a Message> + 'a {
        let exact = if filter.contains(['+', '#']) { None } else { self.by_topic.get(filter) };
        let scan = exact.is_none() && filter.contains(['+', '#']);
        exact.into_iter().chain(self.by_topic.values().filter(move |m| scan && topic::matches(filter, &m.topic)))
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(session: usize, qos: QoS) -> Subscriber {
        Subscriber { session, qos }
    }

    fn sessions(r: &Router, topic: &str) -> Vec<usize> {
        let mut out = Vec::new();
        r.matches(topic, &mut out);
        let mut v: Vec<usize> = out.iter().map(|s| s.session).collect();
        v.sort();
        v
    }

    #[test]
    fn mqtt_4_7_1_wildcards_match() {
        let mut r = Router::default();
        r.subscribe("a/b", sub(1, QoS::AtMostOnce));
        r.subscribe("a/+", sub(2, QoS::AtMostOnce));
        r.subscribe("a/#", sub(3, QoS::AtMostOnce));
        r.subscribe("#", sub(4, QoS::AtMostOnce));
        r.subscribe("+/+/c", sub(5, QoS::AtMostOnce));
        r.subscribe("+", sub(6, QoS::AtMostOnce));
        assert_eq!(sessions(&r, "a/b"), vec![1, 2, 3, 4]);
        assert_eq!(sessions(&r, "a"), vec![3, 4, 6]);
        assert_eq!(sessions(&r, "a/b/c"), vec![3, 4, 5]);
        assert_eq!(sessions(&r, "x/y/c"), vec![4, 5]);
        assert_eq!(sessions(&r, "a/"), vec![2, 3, 4]);
        assert_eq!(sessions(&r, "/b"), vec![4]);
    }

    #[test]
    fn mqtt_4_7_2_dollar_topics_not_matched_by_leading_wildcards() {
        let mut r = Router::default();
        r.subscribe("#", sub(1, QoS::AtMostOnce));
        r.subscribe("+/x", sub(2, QoS::AtMostOnce));
        r.subscribe("$SYS/#", sub(3, QoS::AtMostOnce));
        r.subscribe("$SYS/+", sub(4, QoS::AtMostOnce));
        assert_eq!(sessions(&r, "$SYS/x"), vec![3, 4]);
        assert_eq!(sessions(&r, "a/x"), vec![1, 2]);
    }

    #[test]
    fn resubscribe_replaces_and_unsubscribe_prunes() {
        let mut r = Router::default();
        assert!(!r.subscribe("a/+/c", sub(1, QoS::AtMostOnce)));
        assert!(r.subscribe("a/+/c", sub(1, QoS::ExactlyOnce)));
        let mut out = Vec::new();
        r.matches("a/b/c", &mut out);
        assert_eq!(out, vec![sub(1, QoS::ExactlyOnce)]);
        assert!(r.unsubscribe("a/+/c", 1));
        assert!(!r.unsubscribe("a/+/c", 1));
        assert!(r.nodes[ROOT].is_empty());
        assert_eq!(r.free.len(), 3);
        r.subscribe("x/y", sub(2, QoS::AtMostOnce));
        assert_eq!(r.nodes.len(), 4, "pruned nodes are reused");
        assert_eq!(sessions(&r, "x/y"), vec![2]);
    }

    #[test]
    fn wide_nodes_switch_to_a_map_and_still_match() {
        let mut r = Router::default();
        for i in 0..50 {
            r.subscribe(&format!("dev/{i}/t"), sub(i, QoS::AtMostOnce));
        }
        assert!(matches!(r.nodes[r.nodes[ROOT].children.get("dev").unwrap()].children, Children::Many(_)));
        for i in 0..50 {
            assert_eq!(sessions(&r, &format!("dev/{i}/t")), vec![i]);
        }
        for i in 0..50 {
            assert!(r.unsubscribe(&format!("dev/{i}/t"), i));
        }
        assert!(r.nodes[ROOT].is_empty());
    }

    #[test]
    fn retained_exact_and_wildcard_lookup() {
        let mut store = RetainedStore::default();
        let msg =
            |t: &str, p: &[u8]| Message { topic: t.into(), payload: p.into(), qos: QoS::AtMostOnce, retain: true };
        store.update(&msg("a/b", b"1"));
        store.update(&msg("a/c", b"2"));
        store.update(&msg("$SYS/x", b"3"));
        assert_eq!(store.matching("a/b").count(), 1);
        assert_eq!(store.matching("a/+").count(), 2);
        assert_eq!(store.matching("#").count(), 2);
        store.update(&msg("a/b", b""));
        assert_eq!(store.matching("a/b").count(), 0);
        assert_eq!(store.len(), 2);
    }
}
