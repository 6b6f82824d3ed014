//! Subscriptions (a topic trie with `+` and `#`) and retained messages.
//!
//! Subscribers are session slots (indices), so routing a PUBLISH never hashes a client id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::mqtt::QoS;

/// One application message. Its topic and payload are each allocated once and shared (cloning
/// a `Message` bumps two reference counts) by every subscriber queue and the retained store.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Rc<str>,
    pub payload: crate::buffer::SharedBytes,
    pub qos: QoS,
    pub retain: bool,
    /// A 5.0 publisher's properties and expiry; `None` for 3.1.1 (one null pointer).
    pub v5: Option<Rc<crate::broker::v5::MessageV5>>,
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

/// A subscriber of one filter: the session slot, the QoS it was granted, and its 5.0 options
/// (in what was padding: still 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub session: usize,
    pub qos: QoS,
    /// `subscriber::NO_LOCAL`, `subscriber::RETAIN_AS_PUBLISHED` (0 for 3.1.1).
    pub flags: u8,
    /// 5.0 Subscription Identifier (3.8.2.1.2); 0: none.
    pub id: u32,
}

/// `Subscriber::flags` bits.
pub mod subscriber {
    /// 3.8.3-3: not delivered to the publishing session.
    pub const NO_LOCAL: u8 = 1;
    /// 3.3.1-12: the RETAIN flag is forwarded as published.
    pub const RETAIN_AS_PUBLISHED: u8 = 2;
    /// A shared subscription group (`broker::shared`): `session` names the group, and a
    /// member is chosen per message.
    pub const SHARED: u8 = 4;
}

impl Subscriber {
    /// A 3.1.1 subscription.
    pub const fn new(session: usize, qos: QoS) -> Self {
        Subscriber { session, qos, flags: 0, id: 0 }
    }
}

/// Children of a trie node by exact level name. Most nodes have a handful, where a scan beats
/// hashing; wide nodes (one level per device id, say) switch to a map.
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<str>, usize)>),
    Many(Box<LevelMap<usize>>),
}

/// Beyond this many children a node hashes.
const FEW_CHILDREN: usize = 8;

impl Default for Children {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl Children {
    /// O(1): a scan of at most `FEW_CHILDREN`, or one hash.
    fn get(&self, level: &str) -> Option<usize> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| k.len() == level.len() && **k == *level).map(|&(_, n)| n),
            Children::Many(m) => m.get(level).copied(),
        }
    }

    fn insert(&mut self, level: &str, node: usize) {
        match self {
            Children::Few(v) if v.len() < FEW_CHILDREN => {
                // Grow one entry at a time: a deep chain of single children (the common shape,
                // and what a hostile filter builds) then costs one entry per level, not four.
                v.reserve_exact(1);
                v.push((level.into(), node));
            }
            Children::Few(v) => {
                let mut m: LevelMap<usize> = std::mem::take(v).into_iter().collect();
                m.insert(level.into(), node);
                *self = Children::Many(Box::new(m));
            }
            Children::Many(m) => {
                m.insert(level.into(), node);
            }
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => {
                if let Some(pos) = v.iter().position(|(k, _)| **k == *level) {
                    v.swap_remove(pos);
                }
            }
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

    /// Every (level, child) pair, in no particular order.
    fn for_each(&self, mut f: impl FnMut(&str, usize)) {
        match self {
            Children::Few(v) => v.iter().for_each(|(k, n)| f(k, *n)),
            Children::Many(m) => m.iter().for_each(|(k, n)| f(k, *n)),
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

/// An arena of trie nodes addressed by index; emptied nodes go on a free list and are reused.
#[derive(Debug)]
struct Arena<N> {
    nodes: Vec<N>,
    free: Vec<usize>,
}

const ROOT: usize = 0;

impl<N: Default> Default for Arena<N> {
    fn default() -> Self {
        Arena { nodes: vec![N::default()], free: Vec::new() }
    }
}

impl<N: Default> Arena<N> {
    fn alloc(&mut self) -> usize {
        if let Some(i) = self.free.pop() {
            return i;
        }
        self.nodes.push(N::default());
        self.nodes.len() - 1
    }

    fn release(&mut self, index: usize) {
        debug_assert_ne!(index, ROOT, "the root is never released");
        if let Some(n) = self.nodes.get_mut(index) {
            *n = N::default();
            self.free.push(index);
        }
    }

    fn get(&self, index: usize) -> Option<&N> {
        let n = self.nodes.get(index);
        debug_assert!(n.is_some(), "trie index {index} out of range");
        n
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut N> {
        let n = self.nodes.get_mut(index);
        debug_assert!(n.is_some(), "trie index {index} out of range");
        n
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

/// The subscription trie: one node per filter level, shared by filters with a common prefix.
#[derive(Debug, Default)]
pub struct Router {
    arena: Arena<Node>,
    /// Bumped by every change of subscriptions, so cached match lists know they are stale.
    generation: u64,
    /// Reused by `matches`: the nodes matching the topic's levels so far, and the next ones.
    frontier: Vec<usize>,
    next: Vec<usize>,
}

impl Router {
    /// Add or replace (same session, same filter) a subscription. Returns true if it replaced one.
    /// `filter` must be valid (the codec checks). O(levels) plus a scan of the subscribers of
    /// that one filter.
    pub fn subscribe(&mut self, filter: &str, sub: Subscriber) -> bool {
        self.generation += 1;
        let mut node = ROOT;
        let mut multi = false;
        for level in filter.split('/') {
            if level == "#" {
                multi = true;
                break;
            }
            let next = match self.arena.get(node) {
                Some(n) if level == "+" => n.plus,
                Some(n) => n.children.get(level),
                None => return false,
            };
            node = match next {
                Some(n) => n,
                None => {
                    let child = self.arena.alloc();
                    if let Some(parent) = self.arena.get_mut(node) {
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
        let Some(n) = self.arena.get_mut(node) else { return false };
        let list = if multi { &mut n.multi } else { &mut n.exact };
        if let Some(existing) = list.iter_mut().find(|s| s.session == sub.session) {
            *existing = sub;
            true
        } else {
            list.push(sub);
            false
        }
    }

    /// Remove a session's subscription to `filter`. Returns whether it existed. O(levels) plus a
    /// scan of that filter's subscribers.
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
            let next = match self.arena.get(node) {
                Some(n) if level == "+" => n.plus,
                Some(n) => n.children.get(level),
                None => None,
            };
            let Some(next) = next else { return false };
            path.push((node, level));
            node = next;
        }
        let Some(n) = self.arena.get_mut(node) else { return false };
        let list = if multi { &mut n.multi } else { &mut n.exact };
        let Some(pos) = list.iter().position(|s| s.session == session) else { return false };
        list.swap_remove(pos);
        // Prune empty nodes from the leaf up.
        let mut child = node;
        while let Some((parent, level)) = path.pop() {
            if !self.arena.get(child).is_some_and(Node::is_empty) {
                break;
            }
            if let Some(p) = self.arena.get_mut(parent) {
                if level == "+" {
                    p.plus = None;
                } else {
                    p.children.remove(level);
                }
            }
            self.arena.release(child);
            child = parent;
        }
        true
    }

    /// Trie nodes in use, the root included (for tests of what subscriptions cost).
    pub fn node_count(&self) -> usize {
        self.arena.nodes.len() - self.arena.free.len()
    }

    /// Changes whenever the subscriptions change.
    /// Make every cached route stale (what a client may read changed). O(1).
    pub fn invalidate_routes(&mut self) {
        self.generation += 1;
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Append every subscriber whose filter matches `topic` to `out` (a session may appear more
    /// than once if several of its filters match; the caller merges).
    ///
    /// Iterative, level by level: the frontier holds the nodes whose filters match the levels
    /// seen so far (each node at most once: it sits at one depth). O(levels x frontier width)
    /// plus the subscribers appended; no recursion, so no stack depth driven by input.
    pub fn matches(&mut self, topic: &str, out: &mut Vec<Subscriber>) {
        // 4.7.2: filters starting with a wildcard do not match topics starting with `$`.
        let dollar = topic.starts_with('$');
        let (mut frontier, mut next) = (std::mem::take(&mut self.frontier), std::mem::take(&mut self.next));
        frontier.clear();
        frontier.push(ROOT);
        let mut rest = topic;
        let mut first = true;
        loop {
            let wild_ok = !(first && dollar);
            let (level, tail) = split_level(rest);
            next.clear();
            for &index in &frontier {
                let Some(n) = self.arena.get(index) else { continue };
                if wild_ok {
                    // `a/#` matches everything below `a`.
                    out.extend_from_slice(&n.multi);
                    next.extend(n.plus);
                }
                next.extend(n.children.get(level));
            }
            std::mem::swap(&mut frontier, &mut next);
            first = false;
            match tail {
                Some(t) => rest = t,
                None => break,
            }
        }
        for &index in &frontier {
            if let Some(n) = self.arena.get(index) {
                out.extend_from_slice(&n.exact);
                // `a/#` also matches `a` itself (4.7.1.2).
                out.extend_from_slice(&n.multi);
            }
        }
        self.frontier = frontier;
        self.next = next;
    }
}

#[derive(Debug, Default)]
struct RetainedNode {
    children: Children,
    msg: Option<Message>,
}

/// Retained messages in a trie of topic levels, so a wildcard filter visits only the branches
/// it can match instead of every retained topic.
#[derive(Debug, Default)]
pub struct RetainedStore {
    arena: Arena<RetainedNode>,
    count: usize,
}

impl RetainedStore {
    /// Store `msg` as the retained message of its topic, or clear it when the payload is empty
    /// (3.3.1-10/11). O(levels).
    pub fn update(&mut self, msg: &Message) {
        if msg.payload.is_empty() {
            self.remove(&msg.topic);
            return;
        }
        let mut node = ROOT;
        for level in msg.topic.split('/') {
            let next = self.arena.get(node).and_then(|n| n.children.get(level));
            node = match next {
                Some(n) => n,
                None => {
                    let child = self.arena.alloc();
                    if let Some(parent) = self.arena.get_mut(node) {
                        parent.children.insert(level, child);
                    }
                    child
                }
            };
        }
        if let Some(n) = self.arena.get_mut(node) {
            if n.msg.replace(msg.clone()).is_none() {
                self.count += 1;
            }
        }
    }

    /// O(levels), pruning the nodes the topic no longer needs.
    fn remove(&mut self, topic: &str) {
        let mut path: Vec<(usize, &str)> = Vec::new();
        let mut node = ROOT;
        for level in topic.split('/') {
            let Some(next) = self.arena.get(node).and_then(|n| n.children.get(level)) else { return };
            path.push((node, level));
            node = next;
        }
        if self.arena.get_mut(node).and_then(|n| n.msg.take()).is_none() {
            return;
        }
        self.count -= 1;
        let mut child = node;
        while let Some((parent, level)) = path.pop() {
            if !self.arena.get(child).is_some_and(|n| n.msg.is_none() && n.children.is_empty()) {
                break;
            }
            if let Some(p) = self.arena.get_mut(parent) {
                p.children.remove(level);
            }
            self.arena.release(child);
            child = parent;
        }
    }

    /// Append the retained messages matching `filter` (a valid filter) to `out`. Iterative;
    /// O(nodes on the branches the filter can match), which for `#` is the whole store.
    pub fn matching(&self, filter: &str, out: &mut Vec<Message>) {
        // (node, rest of the filter; None once every level matched, depth 0 = at the root).
        let mut stack: Vec<(usize, Option<&str>, bool)> = vec![(ROOT, Some(filter), true)];
        while let Some((index, rest, at_root)) = stack.pop() {
            let Some(n) = self.arena.get(index) else { continue };
            let Some(rest) = rest else {
                out.extend(n.msg.iter().cloned());
                continue;
            };
            let (level, tail) = split_level(rest);
            match level {
                "#" => {
                    // `a/#` matches `a` itself and everything below; at the root, not `$` topics.
                    out.extend(n.msg.iter().cloned());
                    self.subtree(index, at_root, out);
                }
                "+" => n.children.for_each(|name, child| {
                    // 4.7.2: a leading wildcard does not match a `$` level.
                    if !(at_root && name.starts_with('$')) {
                        stack.push((child, tail, false));
                    }
                }),
                _ => {
                    if let Some(child) = n.children.get(level) {
                        stack.push((child, tail, false));
                    }
                }
            }
        }
    }

    /// Every message strictly below `index`.
    fn subtree(&self, index: usize, at_root: bool, out: &mut Vec<Message>) {
        let mut stack = Vec::new();
        if let Some(n) = self.arena.get(index) {
            n.children.for_each(|name, child| {
                if !(at_root && name.starts_with('$')) {
                    stack.push(child);
                }
            });
        }
        while let Some(i) = stack.pop() {
            let Some(n) = self.arena.get(i) else { continue };
            out.extend(n.msg.iter().cloned());
            n.children.for_each(|_, child| stack.push(child));
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(session: usize, qos: QoS) -> Subscriber {
        Subscriber::new(session, qos)
    }

    fn sessions(r: &mut Router, topic: &str) -> Vec<usize> {
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
        assert_eq!(sessions(&mut r, "a/b"), vec![1, 2, 3, 4]);
        assert_eq!(sessions(&mut r, "a"), vec![3, 4, 6]);
        assert_eq!(sessions(&mut r, "a/b/c"), vec![3, 4, 5]);
        assert_eq!(sessions(&mut r, "x/y/c"), vec![4, 5]);
        assert_eq!(sessions(&mut r, "a/"), vec![2, 3, 4]);
        assert_eq!(sessions(&mut r, "/b"), vec![4]);
    }

    #[test]
    fn mqtt_4_7_2_dollar_topics_not_matched_by_leading_wildcards() {
        let mut r = Router::default();
        r.subscribe("#", sub(1, QoS::AtMostOnce));
        r.subscribe("+/x", sub(2, QoS::AtMostOnce));
        r.subscribe("$SYS/#", sub(3, QoS::AtMostOnce));
        r.subscribe("$SYS/+", sub(4, QoS::AtMostOnce));
        assert_eq!(sessions(&mut r, "$SYS/x"), vec![3, 4]);
        assert_eq!(sessions(&mut r, "a/x"), vec![1, 2]);
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
        assert!(r.arena.nodes[ROOT].is_empty());
        assert_eq!(r.arena.free.len(), 3);
        r.subscribe("x/y", sub(2, QoS::AtMostOnce));
        assert_eq!(r.arena.nodes.len(), 4, "pruned nodes are reused");
        assert_eq!(sessions(&mut r, "x/y"), vec![2]);
    }

    #[test]
    fn wide_nodes_switch_to_a_map_and_still_match() {
        let mut r = Router::default();
        for i in 0..50 {
            r.subscribe(&format!("dev/{i}/t"), sub(i, QoS::AtMostOnce));
        }
        let dev = r.arena.nodes[ROOT].children.get("dev").unwrap();
        assert!(matches!(r.arena.nodes[dev].children, Children::Many(_)));
        for i in 0..50 {
            assert_eq!(sessions(&mut r, &format!("dev/{i}/t")), vec![i]);
        }
        for i in 0..50 {
            assert!(r.unsubscribe(&format!("dev/{i}/t"), i));
        }
        assert!(r.arena.nodes[ROOT].is_empty());
    }

    #[test]
    fn deep_filters_match_without_recursion() {
        // Far deeper than any configured limit: the walk must not use the call stack per level.
        let deep = "a/".repeat(50_000) + "b";
        let mut r = Router::default();
        r.subscribe(&deep, sub(1, QoS::AtMostOnce));
        r.subscribe(&("+/".repeat(50_000) + "#"), sub(2, QoS::AtMostOnce));
        assert_eq!(sessions(&mut r, &deep), vec![1, 2]);
        assert!(r.unsubscribe(&deep, 1));
    }

    fn retained(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.matching(filter, &mut out);
        let mut v: Vec<String> = out.iter().map(|m| m.topic.to_string()).collect();
        v.sort();
        v
    }

    fn msg(t: &str, p: &[u8]) -> Message {
        Message { topic: t.into(), payload: p.into(), qos: QoS::AtMostOnce, retain: true, v5: None }
    }

    #[test]
    fn retained_exact_and_wildcard_lookup() {
        let mut store = RetainedStore::default();
        store.update(&msg("a/b", b"1"));
        store.update(&msg("a/c", b"2"));
        store.update(&msg("$SYS/x", b"3"));
        assert_eq!(retained(&store, "a/b"), ["a/b"]);
        assert_eq!(retained(&store, "a/+"), ["a/b", "a/c"]);
        assert_eq!(retained(&store, "#"), ["a/b", "a/c"]);
        store.update(&msg("a/b", b""));
        assert!(retained(&store, "a/b").is_empty());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn mqtt_4_7_retained_match_the_same_filters_as_live_messages() {
        let mut store = RetainedStore::default();
        let topics = ["a", "a/b", "a/b/c", "a//c", "/", "/x", "$SYS/up", "$SYS", "x/$y", "", "a/"];
        for t in topics.iter().filter(|t| !t.is_empty()) {
            store.update(&msg(t, b"p"));
        }
        let filters = ["#", "+", "a/#", "a/+", "+/+", "/#", "+/b/+", "a//c", "$SYS/#", "$SYS/+", "+/$y", "a/+/c", "/+"];
        for f in filters {
            let mut want: Vec<String> = topics
                .iter()
                .filter(|t| !t.is_empty() && crate::mqtt::topic::matches(f, t))
                .map(|t| t.to_string())
                .collect();
            want.sort();
            assert_eq!(retained(&store, f), want, "filter {f}");
        }
        for t in topics.iter().filter(|t| !t.is_empty()) {
            store.update(&msg(t, b""));
        }
        assert!(store.is_empty());
        assert!(store.arena.nodes[ROOT].children.is_empty(), "emptied branches are pruned");
    }
}
