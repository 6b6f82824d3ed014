//! Session state (MQTT 4.1): subscriptions, outbound messages in flight, QoS 2 receive state and
//! the queue of messages waiting for the in-flight window or for the client to come back.
//!
//! Plain data with no I/O, so it can be persisted by a later issue.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::mqtt::QoS;
use crate::router::Message;

/// A message owed to this session, with the QoS it is delivered at (min of publish and grant).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub msg: Message,
    pub qos: QoS,
    /// Retain flag as sent: set for retained messages sent because of a new subscription, and
    /// (5.0 Retain As Published) for messages published with it.
    pub retain: bool,
    /// 5.0 Subscription Identifier of the subscription it matched; 0: none.
    pub sub_id: u32,
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitPuback,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitPubrec,
    /// PUBREL sent, waiting for PUBCOMP (the payload is no longer needed).
    AwaitPubcomp,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    /// Send order, for resending in order on resume (4.6).
    pub seq: u64,
    pub packet_id: u16,
    pub state: InflightState,
    /// `None` once the message has been released (after PUBREC).
    pub out: Option<Outgoing>,
}

/// A set of packet ids: a short list while small (the usual case, and what an idle session
/// holds), a 65536-bit map once large, so a client with thousands of ids outstanding costs O(1)
/// per packet instead of a scan.
#[derive(Debug, Default)]
pub enum PacketIdSet {
    #[default]
    Empty,
    Few(Vec<u16>),
    Many {
        bits: Box<[u64; 1024]>,
        count: usize,
    },
}

/// Ids kept in a list before switching to the bit map.
const FEW_IDS: usize = 64;

impl PacketIdSet {
    pub fn len(&self) -> usize {
        match self {
            PacketIdSet::Empty => 0,
            PacketIdSet::Few(v) => v.len(),
            PacketIdSet::Many { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: u16) -> bool {
        match self {
            PacketIdSet::Empty => false,
            PacketIdSet::Few(v) => v.contains(&id),
            PacketIdSet::Many { bits, .. } => bits.get(usize::from(id >> 6)).is_some_and(|w| w & (1 << (id & 63)) != 0),
        }
    }

    /// Add `id`; false if it was there already.
    pub fn insert(&mut self, id: u16) -> bool {
        if self.contains(id) {
            return false;
        }
        match self {
            PacketIdSet::Empty => *self = PacketIdSet::Few(vec![id]),
            PacketIdSet::Few(v) if v.len() < FEW_IDS => v.push(id),
            PacketIdSet::Few(v) => {
                let mut bits = Box::new([0u64; 1024]);
                for &old in v.iter().chain(std::iter::once(&id)) {
                    if let Some(w) = bits.get_mut(usize::from(old >> 6)) {
                        *w |= 1 << (old & 63);
                    }
                }
                *self = PacketIdSet::Many { bits, count: v.len() + 1 };
            }
            PacketIdSet::Many { bits, count } => {
                if let Some(w) = bits.get_mut(usize::from(id >> 6)) {
                    *w |= 1 << (id & 63);
                    *count += 1;
                }
            }
        }
        true
    }

    pub fn remove(&mut self, id: u16) {
        match self {
            PacketIdSet::Empty => {}
            PacketIdSet::Few(v) => {
                if let Some(pos) = v.iter().position(|&x| x == id) {
                    v.swap_remove(pos);
                }
                if v.is_empty() {
                    *self = PacketIdSet::Empty;
                }
            }
            PacketIdSet::Many { bits, count } => {
                if let Some(w) = bits.get_mut(usize::from(id >> 6)) {
                    if *w & (1 << (id & 63)) != 0 {
                        *w &= !(1 << (id & 63));
                        *count -= 1;
                    }
                }
                if *count == 0 {
                    *self = PacketIdSet::Empty;
                }
            }
        }
    }
}

/// Why a QoS > 0 message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    Dropped,
}

/// Hashes packet ids for `InflightWindow`: ids are ours (allocated in sequence), so a multiply
/// that spreads them over the table's bits is all that is needed.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.0 = u64::from(id);
    }

    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// Outbound QoS 1/2 messages not yet acknowledged, by packet id: an acknowledgement finds its
/// message in O(1) whatever order acks arrive in. Holds no memory while empty.
#[derive(Debug, Default)]
pub struct InflightWindow {
    by_id: HashMap<u16, Inflight, BuildHasherDefault<IdHasher>>,
    next_seq: u64,
}

impl InflightWindow {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn contains(&self, packet_id: u16) -> bool {
        self.by_id.contains_key(&packet_id)
    }

    /// O(1).
    pub fn get_mut(&mut self, packet_id: u16) -> Option<&mut Inflight> {
        self.by_id.get_mut(&packet_id)
    }

    /// O(1). Gives the memory back once the window is empty (an idle session holds none).
    pub fn remove(&mut self, packet_id: u16) -> Option<Inflight> {
        let removed = self.by_id.remove(&packet_id);
        if self.by_id.is_empty() && self.by_id.capacity() > 0 {
            self.by_id = HashMap::default();
        }
        removed
    }

    /// Record a message sent with `packet_id` (not in the window). O(1).
    fn insert(&mut self, packet_id: u16, state: InflightState, out: Outgoing) -> &Inflight {
        debug_assert!(!self.contains(packet_id), "packet id {packet_id} already in flight");
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.by_id.entry(packet_id) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.insert(Inflight { seq, packet_id, state, out: Some(out) });
                e.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Inflight { seq, packet_id, state, out: Some(out) })
            }
        }
    }

    /// Every entry in send order (for resending on resume). O(n log n): once per reconnect.
    pub fn in_send_order(&self) -> Vec<&Inflight> {
        let mut v: Vec<&Inflight> = self.by_id.values().collect();
        v.sort_unstable_by_key(|f| f.seq);
        v
    }
}

/// A session's subscriptions (filter -> granted QoS): a short list while small (most clients
/// hold one or two), a map once large, so SUBSCRIBE and UNSUBSCRIBE cost O(1) per filter
/// however many a client holds.
#[derive(Debug, Default)]
pub enum SubscriptionSet {
    #[default]
    Empty,
    Few(Vec<(Box<str>, QoS)>),
    /// SipHash: the keys are client-chosen.
    Many(HashMap<Box<str>, QoS>),
}

/// Filters kept in a list before switching to the map.
const FEW_FILTERS: usize = 8;

impl SubscriptionSet {
    pub fn len(&self) -> usize {
        match self {
            SubscriptionSet::Empty => 0,
            SubscriptionSet::Few(v) => v.len(),
            SubscriptionSet::Many(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, filter: &str) -> bool {
        match self {
            SubscriptionSet::Empty => false,
            SubscriptionSet::Few(v) => v.iter().any(|(f, _)| **f == *filter),
            SubscriptionSet::Many(m) => m.contains_key(filter),
        }
    }

    /// Add or update; returns true if the filter is new. O(1).
    pub fn insert(&mut self, filter: &str, qos: QoS) -> bool {
        match self {
            SubscriptionSet::Empty => {
                *self = SubscriptionSet::Few(vec![(filter.into(), qos)]);
                true
            }
            SubscriptionSet::Few(v) => {
                if let Some(existing) = v.iter_mut().find(|(f, _)| **f == *filter) {
                    existing.1 = qos;
                    return false;
                }
                if v.len() < FEW_FILTERS {
                    // Do not round up to four: most sessions hold one or two.
                    v.reserve_exact(1);
                    v.push((filter.into(), qos));
                } else {
                    let mut m: HashMap<Box<str>, QoS> = std::mem::take(v).into_iter().collect();
                    m.insert(filter.into(), qos);
                    *self = SubscriptionSet::Many(m);
                }
                true
            }
            SubscriptionSet::Many(m) => m.insert(filter.into(), qos).is_none(),
        }
    }

    /// Remove; returns whether it was there. O(1).
    pub fn remove(&mut self, filter: &str) -> bool {
        let removed = match self {
            SubscriptionSet::Empty => false,
            SubscriptionSet::Few(v) => match v.iter().position(|(f, _)| **f == *filter) {
                Some(pos) => {
                    v.swap_remove(pos);
                    true
                }
                None => false,
            },
            SubscriptionSet::Many(m) => m.remove(filter).is_some(),
        };
        if removed && self.is_empty() {
            *self = SubscriptionSet::Empty;
        }
        removed
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, QoS)> + '_> {
        match self {
            SubscriptionSet::Empty => Box::new(std::iter::empty()),
            SubscriptionSet::Few(v) => Box::new(v.iter().map(|(f, q)| (&**f, *q))),
            SubscriptionSet::Many(m) => Box::new(m.iter().map(|(f, q)| (&**f, *q))),
        }
    }
}

#[derive(Debug)]
pub struct Session {
    pub client_id: Rc<str>,
    /// Unique for the broker's lifetime, so an expiry timer for a reused slot is stale.
    pub serial: u64,
    /// When this offline persistent session expires (`persistent_client_expiration`).
    pub expires_at: Option<std::time::Instant>,
    /// Token of the connection using this session, if one is.
    pub connection: Option<usize>,
    /// Clean session (3.1.2.4): discarded when the connection ends.
    pub clean: bool,
    /// Filters and granted QoS, for cleanup and for re-subscription.
    pub subscriptions: SubscriptionSet,
    /// Outbound QoS 1/2 messages not yet acknowledged.
    pub inflight: InflightWindow,
    /// QoS 1/2 messages waiting for a free in-flight slot or for the client to reconnect.
    pub queue: VecDeque<Outgoing>,
    /// Topic and payload bytes of `queue` (for `max_queued_bytes`).
    pub queued_bytes: usize,
    /// Packet ids of inbound QoS 2 PUBLISHes received and not yet released by PUBREL.
    pub inbound_qos2: PacketIdSet,
    next_packet_id: u16,
    /// Messages dropped because the queue was full (for the log and, later, metrics).
    pub dropped: u64,
    /// What this client may read and write, when its listener has an ACL file (boxed: most
    /// sessions have none). Set at each CONNECT, since the user name may change.
    pub acl: Option<Box<crate::auth::acl::ClientAcl>>,
    /// 5.0: the will of the last connection and when it is due (Will Delay Interval,
    /// 3.1.3.2.2); dropped if a connection takes the session first (3.1.3-9).
    pub delayed_will: Option<Box<(Message, std::time::Instant)>>,
}

/// What one queued message counts against `max_queued_bytes`.
fn queued_size(out: &Outgoing) -> usize {
    out.msg.payload.len() + out.msg.topic.len()
}

impl Session {
    pub fn new(client_id: Rc<str>, clean: bool) -> Self {
        Session {
            client_id,
            serial: 0,
            expires_at: None,
            connection: None,
            clean,
            subscriptions: SubscriptionSet::Empty,
            inflight: InflightWindow::default(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inbound_qos2: PacketIdSet::Empty,
            next_packet_id: 1,
            dropped: 0,
            acl: None,
            delayed_will: None,
        }
    }

    /// Send `out` as a new in-flight message: allocate a packet id not used by any other
    /// (2.3.1-2..4) and record it. The caller guarantees fewer than 65535 are in flight (the
    /// window is at most that), so the search ends; with the usual small window it is O(1).
    pub fn start_inflight(&mut self, out: Outgoing) -> &Inflight {
        debug_assert!(self.inflight.len() < usize::from(u16::MAX), "in-flight window larger than the id space");
        let packet_id = loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains(id) {
                break id;
            }
        };
        let state = if out.qos == QoS::ExactlyOnce { InflightState::AwaitPubrec } else { InflightState::AwaitPuback };
        self.inflight.insert(packet_id, state, out)
    }

    /// Queue a QoS > 0 message; when the queue holds `max` messages (or `max_bytes` bytes, if
    /// not 0) the new one is dropped (mosquitto's behaviour: what is queued keeps its order,
    /// newest is lost).
    pub fn enqueue(&mut self, out: Outgoing, max: usize, max_bytes: usize) -> Result<(), QueueFull> {
        let size = queued_size(&out);
        if self.queue.len() >= max || (max_bytes != 0 && self.queued_bytes + size > max_bytes) {
            self.dropped += 1;
            return Err(QueueFull::Dropped);
        }
        self.queued_bytes += size;
        self.queue.push_back(out);
        Ok(())
    }

    /// The next queued message, if any.
    pub fn dequeue(&mut self) -> Option<Outgoing> {
        let out = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(queued_size(&out));
        if self.queue.is_empty() {
            debug_assert_eq!(self.queued_bytes, 0, "queued byte count drifted");
            // Give a drained queue's memory back.
            self.queue = VecDeque::new();
        }
        Some(out)
    }

    /// Complete a QoS 1 delivery. Returns whether the id was in flight at that stage. O(1).
    pub fn puback(&mut self, packet_id: u16) -> bool {
        self.remove_inflight(packet_id, InflightState::AwaitPuback)
    }

    /// PUBREC for a QoS 2 delivery: move it to awaiting PUBCOMP and release the payload.
    /// Returns whether the id was in flight at that stage. O(1).
    pub fn pubrec(&mut self, packet_id: u16) -> bool {
        match self.inflight.get_mut(packet_id) {
            Some(f) if f.state == InflightState::AwaitPubrec => {
                f.state = InflightState::AwaitPubcomp;
                f.out = None;
                true
            }
            // A repeated PUBREC after we already sent PUBREL: answer PUBREL again.
            Some(f) => f.state == InflightState::AwaitPubcomp,
            None => false,
        }
    }

    /// 5.0: a PUBREC with an error reason ends the QoS 2 delivery (4.3.3). O(1).
    pub fn pubrec_refused(&mut self, packet_id: u16) -> bool {
        self.remove_inflight(packet_id, InflightState::AwaitPubrec)
    }

    /// Complete a QoS 2 delivery. Returns whether the id was in flight at that stage. O(1).
    pub fn pubcomp(&mut self, packet_id: u16) -> bool {
        self.remove_inflight(packet_id, InflightState::AwaitPubcomp)
    }

    fn remove_inflight(&mut self, packet_id: u16, state: InflightState) -> bool {
        match self.inflight.get_mut(packet_id) {
            Some(f) if f.state == state => {
                self.inflight.remove(packet_id);
                true
            }
            _ => false,
        }
    }

    /// Record an inbound QoS 2 packet id. Returns false if it was already recorded (a duplicate
    /// PUBLISH that must not be delivered again, 4.3.3).
    pub fn receive_qos2(&mut self, packet_id: u16) -> bool {
        self.inbound_qos2.insert(packet_id)
    }

    /// PUBREL: forget the inbound id.
    pub fn release_qos2(&mut self, packet_id: u16) {
        self.inbound_qos2.remove(packet_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> Outgoing {
        let msg =
            Message { topic: "t".into(), payload: b"p"[..].into(), qos: QoS::ExactlyOnce, retain: false, v5: None };
        Outgoing { msg, qos: QoS::ExactlyOnce, retain: false, sub_id: 0 }
    }

    #[test]
    fn mqtt_2_3_1_packet_ids_skip_zero_and_ids_in_flight() {
        let mut s = Session::new("c".into(), false);
        assert_eq!(s.start_inflight(out()).packet_id, 1);
        s.next_packet_id = u16::MAX;
        assert_eq!(s.start_inflight(out()).packet_id, u16::MAX);
        assert_eq!(s.start_inflight(out()).packet_id, 2, "wraps past 0 and skips 1, still in flight");
        assert!(s.pubrec(1));
        assert!(s.pubcomp(1));
        s.next_packet_id = 1;
        assert_eq!(s.start_inflight(out()).packet_id, 1, "free again once completed");
    }

    #[test]
    fn acks_in_any_order_complete_in_o1_and_resend_keeps_send_order() {
        let mut s = Session::new("c".into(), false);
        let ids: Vec<u16> = (0..1000).map(|_| s.start_inflight(out()).packet_id).collect();
        // Acknowledge every other one, newest first.
        for &id in ids.iter().rev().step_by(2) {
            assert!(s.pubrec(id) && s.pubcomp(id));
        }
        let left: Vec<u16> = s.inflight.in_send_order().iter().map(|f| f.packet_id).collect();
        let want: Vec<u16> = ids.iter().copied().filter(|id| id % 2 == 1).collect();
        assert_eq!(left, want);
        for id in want {
            assert!(s.pubrec(id) && s.pubcomp(id));
        }
        assert!(s.inflight.is_empty());
    }

    #[test]
    fn subscription_set_grows_into_a_map_and_back() {
        let mut set = SubscriptionSet::default();
        for i in 0..100 {
            assert!(set.insert(&format!("f/{i}"), QoS::AtMostOnce));
        }
        assert!(!set.insert("f/7", QoS::ExactlyOnce), "re-subscribe updates");
        assert!(matches!(set, SubscriptionSet::Many(_)));
        assert_eq!(set.iter().find(|(f, _)| *f == "f/7").map(|(_, q)| q), Some(QoS::ExactlyOnce));
        for i in 0..100 {
            assert!(set.remove(&format!("f/{i}")));
        }
        assert!(!set.remove("f/1"));
        assert!(matches!(set, SubscriptionSet::Empty));
    }

    #[test]
    fn packet_id_set_grows_into_a_bit_map_and_back() {
        let mut set = PacketIdSet::default();
        for id in 1..=1000u16 {
            assert!(set.insert(id));
        }
        assert!(!set.insert(500));
        assert!(matches!(set, PacketIdSet::Many { count: 1000, .. }));
        assert!(set.contains(1000) && !set.contains(1001));
        for id in 1..=1000u16 {
            set.remove(id);
        }
        assert!(matches!(set, PacketIdSet::Empty), "memory given back");
    }

    #[test]
    fn mqtt_4_3_3_qos2_flow_and_duplicate_detection() {
        let mut s = Session::new("c".into(), false);
        s.next_packet_id = 7;
        assert_eq!(s.start_inflight(out()).packet_id, 7);
        assert!(!s.pubcomp(7), "PUBCOMP before PUBREC is not a completion");
        assert!(s.pubrec(7));
        assert!(s.inflight.get_mut(7).unwrap().out.is_none());
        assert!(s.pubrec(7), "repeated PUBREC is answered again");
        assert!(s.pubcomp(7));
        assert!(s.inflight.is_empty());
        assert!(s.receive_qos2(3));
        assert!(!s.receive_qos2(3));
        s.release_qos2(3);
        assert!(s.receive_qos2(3));
    }

    #[test]
    fn full_queue_drops_newest() {
        let mut s = Session::new("c".into(), false);
        assert!(s.enqueue(out(), 1, 0).is_ok());
        assert_eq!(s.enqueue(out(), 1, 0), Err(QueueFull::Dropped));
        assert_eq!(s.queue.len(), 1);
        assert_eq!(s.dropped, 1);
    }

    #[test]
    fn max_queued_bytes_counts_topic_and_payload() {
        let mut s = Session::new("c".into(), false);
        // Each message is topic "t" + payload "p": 2 bytes.
        assert!(s.enqueue(out(), 100, 4).is_ok());
        assert!(s.enqueue(out(), 100, 4).is_ok());
        assert_eq!(s.enqueue(out(), 100, 4), Err(QueueFull::Dropped));
        assert!(s.dequeue().is_some());
        assert_eq!(s.queued_bytes, 2);
        assert!(s.enqueue(out(), 100, 4).is_ok());
    }
}
