//! Session state (MQTT 4.1): subscriptions, outbound messages in flight, QoS 2 receive state and
//! the queue of messages waiting for the in-flight window or for the client to come back.
//!
//! Plain data with no I/O, so it can be persisted by a later issue.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::mqtt::QoS;
use crate::router::Message;

/// A message owed to this session, with the QoS it is delivered at (min of publish and grant).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub msg: Message,
    pub qos: QoS,
    /// Retain flag as sent: set only for retained messages sent because of a new subscription.
    pub retain: bool,
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

#[derive(Debug)]
pub struct Session {
    pub client_id: Rc<str>,
    /// Token of the connection using this session, if one is.
    pub connection: Option<usize>,
    /// Clean session (3.1.2.4): discarded when the connection ends.
    pub clean: bool,
    /// Filters and granted QoS, for cleanup and for re-subscription.
    pub subscriptions: Vec<(Box<str>, QoS)>,
    /// Outbound QoS 1/2 messages not yet acknowledged, in send order.
    pub inflight: VecDeque<Inflight>,
    /// QoS 1/2 messages waiting for a free in-flight slot or for the client to reconnect.
    pub queue: VecDeque<Outgoing>,
    /// Packet ids of inbound QoS 2 PUBLISHes received and not yet released by PUBREL.
    pub inbound_qos2: PacketIdSet,
    /// Packet ids of `inflight`, for allocation without a scan.
    outbound_ids: PacketIdSet,
    next_packet_id: u16,
    /// Messages dropped because the queue was full (for the log and, later, metrics).
    pub dropped: u64,
}

impl Session {
    pub fn new(client_id: Rc<str>, clean: bool) -> Self {
        Session {
            client_id,
            connection: None,
            clean,
            subscriptions: Vec::new(),
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            inbound_qos2: PacketIdSet::Empty,
            outbound_ids: PacketIdSet::Empty,
            next_packet_id: 1,
            dropped: 0,
        }
    }

    /// Send `out` as a new in-flight message: allocate a packet id not used by any other
    /// (2.3.1-2..4) and record it. The caller guarantees fewer than 65535 are in flight (the
    /// window is at most that), so the search ends.
    pub fn start_inflight(&mut self, out: Outgoing) -> u16 {
        let packet_id = loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if self.outbound_ids.insert(id) {
                break id;
            }
        };
        let state = if out.qos == QoS::ExactlyOnce { InflightState::AwaitPubrec } else { InflightState::AwaitPuback };
        self.inflight.push_back(Inflight { packet_id, state, out: Some(out) });
        packet_id
    }

    /// Queue a QoS > 0 message; when the queue holds `max` messages the new one is dropped
    /// (mosquitto's behaviour: what is queued keeps its order, newest is lost).
    pub fn enqueue(&mut self, out: Outgoing, max: usize) -> Result<(), QueueFull> {
        if self.queue.len() >= max {
            self.dropped += 1;
            return Err(QueueFull::Dropped);
        }
        self.queue.push_back(out);
        Ok(())
    }

    /// Complete a QoS 1 delivery. Returns whether the id was in flight at that stage.
    pub fn puback(&mut self, packet_id: u16) -> bool {
        self.remove_inflight(packet_id, InflightState::AwaitPuback)
    }

    /// PUBREC for a QoS 2 delivery: move it to awaiting PUBCOMP and release the payload.
    /// Returns whether the id was in flight at that stage.
    pub fn pubrec(&mut self, packet_id: u16) -> bool {
        match self.inflight.iter_mut().find(|f| f.packet_id == packet_id) {
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

    /// Complete a QoS 2 delivery. Returns whether the id was in flight at that stage.
    pub fn pubcomp(&mut self, packet_id: u16) -> bool {
        self.remove_inflight(packet_id, InflightState::AwaitPubcomp)
    }

    fn remove_inflight(&mut self, packet_id: u16, state: InflightState) -> bool {
        // Acknowledgements usually arrive in order: the front matches.
        match self.inflight.iter().position(|f| f.packet_id == packet_id && f.state == state) {
            Some(pos) => {
                self.inflight.remove(pos);
                self.outbound_ids.remove(packet_id);
                true
            }
            None => false,
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
        let msg = Message { topic: "t".into(), payload: b"p"[..].into(), qos: QoS::ExactlyOnce, retain: false };
        Outgoing { msg, qos: QoS::ExactlyOnce, retain: false }
    }

    #[test]
    fn mqtt_2_3_1_packet_ids_skip_zero_and_ids_in_flight() {
        let mut s = Session::new("c".into(), false);
        assert_eq!(s.start_inflight(out()), 1);
        s.next_packet_id = u16::MAX;
        assert_eq!(s.start_inflight(out()), u16::MAX);
        assert_eq!(s.start_inflight(out()), 2, "wraps past 0 and skips 1, still in flight");
        assert!(s.pubrec(1));
        assert!(s.pubcomp(1));
        s.next_packet_id = 1;
        assert_eq!(s.start_inflight(out()), 1, "free again once completed");
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
        assert_eq!(s.start_inflight(out()), 7);
        assert!(!s.pubcomp(7), "PUBCOMP before PUBREC is not a completion");
        assert!(s.pubrec(7));
        assert!(s.inflight[0].out.is_none());
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
        assert!(s.enqueue(out(), 1).is_ok());
        assert_eq!(s.enqueue(out(), 1), Err(QueueFull::Dropped));
        assert_eq!(s.queue.len(), 1);
        assert_eq!(s.dropped, 1);
    }
}
