//! Protocol scenarios against the sans-IO core: an in-memory client/broker pair, no sockets.
//! Test-only: included under #[cfg(test)] by the parent module.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::connection::Connection;
use crate::mqtt::{
    decode_packet, encode_packet, Ack, Connack, Connect, ConnectReturnCode, Disconnect, Packet, ProtocolLevel, Publish,
    QoS, ReasonCode, Suback, Subscribe, Unsubscribe, Will,
};
use crate::session::Session;
use crate::transport::Transport;

/// The core with a transport per connection and, in front of it, what the "socket" received
/// and the transport has not read yet (as the kernel would keep it).
pub(super) struct Harness {
    pub core: Core,
    pub now: Instant,
    transports: HashMap<usize, Transport>,
    unread: HashMap<usize, Vec<u8>>,
}

/// The event loop's read size, smaller here so pauses leave a partial read behind.
const SCRATCH: usize = 64 * 1024;

pub(super) const MAX: usize = 1 << 20;

impl Harness {
    pub fn new() -> Self {
        Harness::with(|_| {})
    }

    /// A core whose config `tweak` adjusted (starting from in-flight 2, queue 3).
    pub fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config { max_inflight: 2, max_queued: 3, ..Config::default() };
        tweak(&mut config);
        Harness { core: Core::new(&config), now: Instant::now(), transports: HashMap::new(), unread: HashMap::new() }
    }

    pub fn open(&mut self) -> usize {
        let token = self.core.accept(0, "127.0.0.1:1".parse().unwrap(), self.now).unwrap();
        self.transports.insert(token, Transport::mqtt());
        self.unread.remove(&token);
        token
    }

    pub fn send(&mut self, token: usize, packet: &Packet<'_>) {
        let mut bytes = Vec::new();
        encode_packet(packet, ProtocolLevel::V311, &mut bytes);
        self.input(token, &bytes, self.now);
    }

    /// Bytes arrive on `token`'s socket at `at`: read as the event loop would, while the core
    /// takes input.
    pub fn input(&mut self, token: usize, bytes: &[u8], at: Instant) {
        self.unread.entry(token).or_default().extend_from_slice(bytes);
        self.pump(token, at);
    }

    fn pump(&mut self, token: usize, at: Instant) {
        let mut scratch = vec![0; SCRATCH];
        let transport = self.transports.entry(token).or_insert_with(Transport::mqtt);
        let unread = self.unread.entry(token).or_default();
        while !unread.is_empty() {
            let Some(mut endpoint) = self.core.endpoint(token, at) else { break };
            let mut src: &[u8] = unread;
            transport.read_from(&mut src, &mut scratch, &mut endpoint).unwrap();
            let read = unread.len() - src.len();
            unread.drain(..read);
        }
    }

    /// Run `poll_resume` as the event loop does; returns the tokens that went on.
    pub fn resume_all(&mut self) -> Vec<usize> {
        let mut tokens = Vec::new();
        while let Some(mut endpoint) = self.core.poll_resume(self.now) {
            let token = endpoint.token();
            self.transports.entry(token).or_insert_with(Transport::mqtt).resume(&mut endpoint);
            tokens.push(token);
        }
        for &token in &tokens {
            self.pump(token, self.now);
        }
        tokens
    }

    /// (Input held by the transport and the socket, output queued) of `token`.
    pub fn buffered(&self, token: usize) -> (usize, usize) {
        let held = self.transports.get(&token).map_or(0, Transport::held_input);
        let unread = self.unread.get(&token).map_or(0, Vec::len);
        (held + unread, self.core.buffered_output(token).unwrap_or(0))
    }

    /// Input the transport holds (a partial packet, what a pause left of one read).
    pub fn held(&self, token: usize) -> usize {
        self.transports.get(&token).map_or(0, Transport::held_input)
    }

    pub fn connect(&mut self, id: &str, clean: bool) -> (usize, Vec<Vec<u8>>) {
        let t = self.open();
        let c = Connect {
            level: ProtocolLevel::V311,
            client_id: id,
            clean_session: clean,
            keep_alive: 10,
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        self.send(t, &Packet::Connect(Box::new(c)));
        let out = self.received(t);
        (t, out)
    }

    /// Raw packets written to `token` since the last call.
    pub fn received(&mut self, token: usize) -> Vec<Vec<u8>> {
        let mut wire = Vec::new();
        if let (Some(out), Some(transport)) = (self.core.output(token), self.transports.get_mut(&token)) {
            transport.write_to(out, &mut wire).unwrap();
        }
        self.core.wrote(token, wire.len(), self.now);
        while let Some(transmit) = self.core.poll_transmit() {
            // Not written: only `token`'s socket reads.
            drop(transmit);
        }
        if let Err(e) = self.core.check_invariants() {
            panic!("broken invariant: {e}");
        }
        if let Some(held) = self.transports.get(&token).map(Transport::held_input) {
            assert!(held <= self.core.input_bound(), "transport holds {held} bytes of input");
        }
        let mut packets = Vec::new();
        let mut pos = 0;
        // 3.1.1 packets, or the 5.0 CONNACK that refuses a 5.0 client.
        let size = |rest: &[u8]| match decode_packet(rest, ProtocolLevel::V311, MAX) {
            Ok(Some((_, n))) => Some(n),
            _ => decode_packet(rest, ProtocolLevel::V5, MAX).ok().flatten().map(|(_, n)| n),
        };
        while let Some(n) = size(&wire[pos..]) {
            packets.push(wire[pos..pos + n].to_vec());
            pos += n;
        }
        assert_eq!(pos, wire.len(), "broker wrote a partial or invalid packet");
        packets
    }

    pub fn is_closed(&self, token: usize) -> bool {
        self.core.conns.get(token).is_none_or(|c| c.closing)
    }

    pub fn subscribe(&mut self, token: usize, filter: &str, qos: QoS) {
        self.send(
            token,
            &Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![(filter, qos.into())],
                properties: Default::default(),
            }),
        );
        let acks = self.received(token);
        assert_eq!(decode(&acks[0]), Packet::Suback(Suback::new(1, vec![ReasonCode::granted(qos)])));
    }

    pub fn publish(&mut self, token: usize, topic: &str, payload: &[u8], qos: QoS, id: u16, retain: bool) {
        let packet_id = if qos == QoS::AtMostOnce { None } else { Some(id) };
        self.send(
            token,
            &Packet::Publish(Publish {
                dup: false,
                qos,
                retain,
                topic,
                packet_id,
                payload,
                properties: Default::default(),
            }),
        );
    }
}

pub(super) fn decode(bytes: &[u8]) -> Packet<'_> {
    decode_packet(bytes, ProtocolLevel::V311, MAX).unwrap().unwrap().0
}

pub(super) fn publish_of(bytes: &[u8]) -> Publish<'_> {
    match decode(bytes) {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn mqtt_3_1_0_1_first_packet_must_be_connect() {
    let mut h = Harness::new();
    let t = h.open();
    h.send(t, &Packet::Pingreq);
    assert!(h.is_closed(t));
}

#[test]
fn mqtt_3_1_0_2_second_connect_closes() {
    let mut h = Harness::new();
    let (t, out) = h.connect("a", true);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::Accepted))));
    let c = Connect {
        level: ProtocolLevel::V311,
        client_id: "a",
        clean_session: true,
        keep_alive: 0,
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    };
    h.send(t, &Packet::Connect(Box::new(c)));
    assert!(h.is_closed(t));
}

#[test]
fn mqtt_3_1_2_2_unknown_level_gets_connack_1_then_close() {
    let mut h = Harness::new();
    let t = h.open();
    let bytes = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 0];
    h.input(t, &bytes, h.now);
    let out = h.received(t);
    assert_eq!(out[0], [0x20, 2, 0, 1]);
    assert!(h.is_closed(t));
}

#[test]
fn mqtt_3_1_3_8_empty_client_id_without_clean_session_rejected() {
    let mut h = Harness::new();
    let (t, out) = h.connect("", false);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::IdentifierRejected))));
    assert!(h.is_closed(t));
    let (t, out) = h.connect("", true);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::Accepted))));
    assert!(!h.is_closed(t));
}

#[test]
fn malformed_bytes_close_only_that_connection() {
    let mut h = Harness::new();
    let (good, _) = h.connect("good", true);
    h.subscribe(good, "t", QoS::AtMostOnce);
    let (bad, _) = h.connect("bad", true);
    h.input(bad, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], h.now);
    assert!(h.is_closed(bad));
    let (pubr, _) = h.connect("pub", true);
    h.publish(pubr, "t", b"still here", QoS::AtMostOnce, 0, false);
    assert_eq!(publish_of(&h.received(good)[0]).payload, b"still here");
}

#[test]
fn mqtt_3_3_5_overlapping_subscriptions_deliver_once_at_highest_qos() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "a/+", QoS::AtMostOnce);
    h.subscribe(s, "a/#", QoS::AtLeastOnce);
    h.subscribe(s, "a/b", QoS::AtMostOnce);
    let (p, _) = h.connect("p", true);
    h.publish(p, "a/b", b"x", QoS::ExactlyOnce, 5, false);
    let got = h.received(s);
    assert_eq!(got.len(), 1);
    assert_eq!(publish_of(&got[0]).qos, QoS::AtLeastOnce);
}

#[test]
fn mqtt_4_3_3_duplicate_qos2_publish_not_delivered_twice() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "q", QoS::ExactlyOnce);
    let (p, _) = h.connect("p", true);
    h.publish(p, "q", b"once", QoS::ExactlyOnce, 9, false);
    h.publish(p, "q", b"once", QoS::ExactlyOnce, 9, false);
    let acks = h.received(p);
    assert_eq!(acks.iter().map(|a| decode(a)).collect::<Vec<_>>(), vec![Packet::Pubrec(Ack::new(9)); 2]);
    assert_eq!(h.received(s).len(), 1);
    h.send(p, &Packet::Pubrel(Ack::new(9)));
    assert_eq!(decode(&h.received(p)[0]), Packet::Pubcomp(Ack::new(9)));
    // After PUBREL the id is free again: a new message with it is delivered.
    h.publish(p, "q", b"again", QoS::ExactlyOnce, 9, false);
    assert_eq!(h.received(s).len(), 1);
}

#[test]
fn mqtt_4_3_3_outbound_qos2_flow() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "q", QoS::ExactlyOnce);
    let (p, _) = h.connect("p", true);
    h.publish(p, "q", b"m", QoS::ExactlyOnce, 1, false);
    let id = publish_of(&h.received(s)[0]).packet_id.unwrap();
    h.send(s, &Packet::Pubrec(Ack::new(id)));
    assert_eq!(decode(&h.received(s)[0]), Packet::Pubrel(Ack::new(id)));
    h.send(s, &Packet::Pubcomp(Ack::new(id)));
    let slot = h.core.client_ids["s"];
    assert!(h.core.sessions.get(slot).unwrap().inflight.is_empty());
}

#[test]
fn inflight_window_holds_back_then_releases_in_order() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "q", QoS::AtLeastOnce);
    let (p, _) = h.connect("p", true);
    for i in 0..5u8 {
        h.publish(p, "q", &[i], QoS::AtLeastOnce, u16::from(i) + 1, false);
    }
    let first = h.received(s);
    assert_eq!(first.len(), 2, "window of 2");
    let mut seen: Vec<u8> = first.iter().map(|b| publish_of(b).payload[0]).collect();
    for _ in 0..3 {
        let id = publish_of(&first[0]).packet_id.unwrap();
        let _ = id;
    }
    let mut pending: Vec<u16> = first.iter().map(|b| publish_of(b).packet_id.unwrap()).collect();
    while let Some(id) = pending.first().copied() {
        pending.remove(0);
        h.send(s, &Packet::Puback(Ack::new(id)));
        for b in h.received(s) {
            let p = publish_of(&b);
            seen.push(p.payload[0]);
            pending.push(p.packet_id.unwrap());
        }
    }
    // max_queued is 3: 2 in flight + 3 queued = all 5, in order (4.6).
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

#[test]
fn persistent_session_queues_while_offline_and_resends_inflight_with_dup() {
    let mut h = Harness::new();
    let (s, _) = h.connect("persist", false);
    h.subscribe(s, "q", QoS::AtLeastOnce);
    let (p, _) = h.connect("p", true);
    h.publish(p, "q", b"0", QoS::AtLeastOnce, 1, false);
    assert_eq!(h.received(s).len(), 1); // in flight, never acknowledged
    h.core.handle_hangup(s, None);
    for i in 1..=5u8 {
        h.publish(p, "q", &[b'0' + i], QoS::AtLeastOnce, u16::from(i) + 1, false);
    }
    h.publish(p, "q", b"qos0 dropped while offline", QoS::AtMostOnce, 0, false);
    let (s2, out) = h.connect("persist", false);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(true, ConnectReturnCode::Accepted))));
    let resent = publish_of(&out[1]);
    assert!(resent.dup, "4.4: re-sent PUBLISH has DUP set");
    assert_eq!(resent.payload, b"0");
    // Window 2: "0" (resent) and "1"; max_queued 3 kept "1","2","3"; "4","5" were dropped.
    assert_eq!(publish_of(&out[2]).payload, b"1");
    assert_eq!(out.len(), 3);
    let _ = s2;
}

#[test]
fn clean_session_discards_previous_state() {
    let mut h = Harness::new();
    let (s, _) = h.connect("c", false);
    h.subscribe(s, "q", QoS::AtLeastOnce);
    h.core.handle_hangup(s, None);
    let (s, out) = h.connect("c", true);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::Accepted))));
    let (p, _) = h.connect("p", true);
    h.publish(p, "q", b"x", QoS::AtLeastOnce, 1, false);
    assert!(h.received(s).is_empty(), "old subscription is gone");
}

#[test]
fn mqtt_3_1_4_2_takeover_closes_first_connection() {
    let mut h = Harness::new();
    let (a, _) = h.connect("same", false);
    let (b, out) = h.connect("same", false);
    assert!(h.is_closed(a));
    assert!(!h.is_closed(b));
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(true, ConnectReturnCode::Accepted))));
}

#[test]
fn will_published_on_abnormal_close_not_on_disconnect() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "will/#", QoS::AtLeastOnce);
    for (id, graceful) in [("w1", false), ("w2", true)] {
        let t = h.open();
        let topic = format!("will/{id}");
        let c = Connect {
            level: ProtocolLevel::V311,
            client_id: id,
            clean_session: true,
            keep_alive: 0,
            will: Some(Will {
                topic: &topic,
                payload: b"gone",
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            }),
            username: None,
            password: None,
            properties: Default::default(),
        };
        h.send(t, &Packet::Connect(Box::new(c)));
        if graceful {
            h.send(t, &Packet::Disconnect(Disconnect::NORMAL));
        } else {
            h.core.handle_hangup(t, Some(std::io::ErrorKind::ConnectionReset));
        }
    }
    let got = h.received(s);
    assert_eq!(got.len(), 1);
    assert_eq!(publish_of(&got[0]).topic, "will/w1");
}

#[test]
fn mqtt_3_3_1_retained_delivered_on_subscribe_and_cleared_by_empty_payload() {
    let mut h = Harness::new();
    let (p, _) = h.connect("p", true);
    h.publish(p, "r/1", b"keep", QoS::AtLeastOnce, 1, true);
    let (s, _) = h.connect("s", true);
    h.send(
        s,
        &Packet::Subscribe(Subscribe {
            packet_id: 3,
            filters: vec![("r/+", QoS::AtMostOnce.into())],
            properties: Default::default(),
        }),
    );
    let got = h.received(s);
    assert!(matches!(decode(&got[0]), Packet::Suback(_)), "SUBACK precedes retained messages");
    let r = publish_of(&got[1]);
    assert!(r.retain && r.payload == b"keep" && r.qos == QoS::AtMostOnce);
    // Live delivery to an existing subscription has retain cleared (3.3.1-9).
    h.publish(p, "r/1", b"", QoS::AtMostOnce, 0, true);
    let live = h.received(s);
    assert!(!publish_of(&live[0]).retain);
    let (s2, _) = h.connect("s2", true);
    h.send(
        s2,
        &Packet::Subscribe(Subscribe {
            packet_id: 3,
            filters: vec![("r/+", QoS::AtMostOnce.into())],
            properties: Default::default(),
        }),
    );
    assert_eq!(h.received(s2).len(), 1, "only the SUBACK: retained message was cleared");
}

#[test]
fn keepalive_timeout_closes_and_publishes_will() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "w", QoS::AtMostOnce);
    let t = h.open();
    let c = Connect {
        level: ProtocolLevel::V311,
        client_id: "sleepy",
        clean_session: true,
        keep_alive: 2,
        will: Some(Will {
            topic: "w",
            payload: b"timeout",
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        }),
        username: None,
        password: None,
        properties: Default::default(),
    };
    h.send(t, &Packet::Connect(Box::new(c)));
    let at = h.core.poll_timeout().unwrap();
    h.core.handle_timeouts(h.now + Duration::from_millis(2900));
    assert!(!h.is_closed(t), "1.5 x keep alive not reached yet");
    assert!(at <= h.now + Duration::from_secs(3));
    h.core.handle_timeouts(h.now + Duration::from_millis(3001));
    assert!(h.is_closed(t));
    assert_eq!(publish_of(&h.received(s)[0]).payload, b"timeout");
}

#[test]
fn connect_timeout_closes_silent_sockets() {
    let mut h = Harness::new();
    let t = h.open();
    h.core.handle_timeouts(h.now + Duration::from_secs(11));
    assert!(h.is_closed(t));
    assert!(h.core.poll_timeout().is_none(), "no timers left: the loop can sleep");
}

#[test]
fn packet_split_across_reads_is_reassembled() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "t", QoS::AtMostOnce);
    let (p, _) = h.connect("p", true);
    let mut bytes = Vec::new();
    for i in 0..3u8 {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t",
            packet_id: None,
            payload: &[i; 300],
            properties: Default::default(),
        };
        encode_packet(&Packet::Publish(publish), ProtocolLevel::V311, &mut bytes);
    }
    for chunk in bytes.chunks(7) {
        h.input(p, chunk, h.now);
    }
    assert_eq!(h.received(s).len(), 3);
    assert_eq!(h.held(p), 0, "drained buffer is given back");
}

#[test]
fn server_only_packets_from_client_close() {
    let mut h = Harness::new();
    let (t, _) = h.connect("x", true);
    h.send(t, &Packet::Pingresp);
    assert!(h.is_closed(t));
}

#[test]
fn idle_connection_state_is_small() {
    // Per-connection broker state without buffers (they are allocated only while in use).
    let conn = std::mem::size_of::<Connection>();
    let session = std::mem::size_of::<Session>();
    println!("connection {conn} B + session {session} B");
    assert!(conn + session < 700, "connection {conn} B + session {session} B");
}

#[test]
fn one_live_timer_per_connection() {
    let mut h = Harness::new();
    let (_t, _) = h.connect("k", true); // keep alive 10 s -> deadline 15 s, later than connect timeout
    assert_eq!(h.core.timers.len(), 1);
    for secs in [11, 16, 30, 60] {
        h.input(_t, &[0xC0, 0x00], h.now + Duration::from_secs(secs - 1)); // PINGREQ
        h.core.handle_timeouts(h.now + Duration::from_secs(secs));
        assert_eq!(h.core.timers.len(), 1, "after {secs} s");
    }
}

#[test]
fn route_cache_follows_subscription_changes() {
    let mut h = Harness::new();
    let (p, _) = h.connect("p", true);
    h.publish(p, "t", b"nobody", QoS::AtMostOnce, 0, false);
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "t", QoS::AtMostOnce);
    h.publish(p, "t", b"one", QoS::AtMostOnce, 0, false);
    assert_eq!(publish_of(&h.received(s)[0]).payload, b"one", "new subscriber seen despite cache");
    h.send(
        s,
        &Packet::Unsubscribe(Unsubscribe { packet_id: 2, filters: vec!["t"], user_properties: Default::default() }),
    );
    h.received(s);
    h.publish(p, "t", b"two", QoS::AtMostOnce, 0, false);
    assert!(h.received(s).is_empty(), "unsubscribed session not served from cache");
    // A session slot freed and reused by another client must not inherit cached deliveries.
    h.subscribe(s, "t", QoS::AtMostOnce);
    h.publish(p, "t", b"three", QoS::AtMostOnce, 0, false);
    assert_eq!(h.received(s).len(), 1);
    h.core.handle_hangup(s, None);
    let (s2, _) = h.connect("other", true);
    h.publish(p, "t", b"four", QoS::AtMostOnce, 0, false);
    assert!(h.received(s2).is_empty());
}
