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
    pub msg: Rc<Message>,
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

/// The message to publish when the connection ends abnormally.
#[derive(Debug, Clone)]
pub struct WillMessage {
    pub msg: Rc<Message>,
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
    pub inbound_qos2: Vec<u16>,
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
            inbound_qos2: Vec::new(),
            next_packet_id: 1,
            dropped: 0,
        }
    }

    /// A packet id not used by any message in flight (2.3.1-2..4). With at most 65535 in flight
    /// one is always free; the window keeps far fewer.
    pub fn allocate_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
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
                true
            }
            None => false,
        }
    }

    /// Record an inbound QoS 2 packet id. Returns false if it was already recorded (a duplicate
    /// PUBLISH that must not be delivered again, 4.3.3).
    pub fn receive_qos2(&mut self, packet_id: u16) -> bool {
        if self.inbound_qos2.contains(&packet_id) {
            false
        } else {
            self.inbound_qos2.push(packet_id);
            true
        }
    }

    /// PUBREL: forget the inbound id.
    pub fn release_qos2(&mut self, packet_id: u16) {
        if let Some(pos) = self.inbound_qos2.iter().position(|&id| id == packet_id) {
            self.inbound_qos2.swap_remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> Outgoing {
        let msg =
            Rc::new(Message { topic: "t".into(), payload: b"p"[..].into(), qos: QoS::ExactlyOnce, retain: false });
        Outgoing { msg, qos: QoS::ExactlyOnce, retain: false }
    }

    #[test]
    fn mqtt_2_3_1_packet_ids_skip_zero_and_ids_in_flight() {
        let mut s = Session::new("c".into(), false);
        s.next_packet_id = u16::MAX;
        assert_eq!(s.allocate_packet_id(), u16::MAX);
        s.inflight.push_back(Inflight { packet_id: 1, state: InflightState::AwaitPuback, out: None });
        assert_eq!(s.allocate_packet_id(), 2);
    }

    #[test]
    fn mqtt_4_3_3_qos2_flow_and_duplicate_detection() {
        let mut s = Session::new("c".into(), false);
        s.inflight.push_back(Inflight { packet_id: 7, state: InflightState::AwaitPubrec, out: Some(out()) });
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
