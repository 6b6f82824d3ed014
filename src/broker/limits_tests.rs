//! Limits, backpressure, timeouts and memory accounting against the sans-IO core: each test
//! is named after the rule or attack it proves bounded.
//! Test-only: included under #[cfg(test)] by the parent module.

use std::time::Duration;

use super::tests::{decode, publish_of, Harness};
use super::*;
use crate::mqtt::{
    encode_packet, Ack, Connack, Connect, Packet, ProtocolLevel, QoS, Subscribe, SubscriptionOptions, Will,
    SUBACK_FAILURE,
};

fn suback_codes(bytes: &[u8]) -> Vec<u8> {
    match decode(bytes) {
        Packet::Suback(s) => s.reason_codes.iter().map(|c| c.0).collect(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn encoded(packet: &Packet<'_>) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_packet(packet, ProtocolLevel::V311, &mut bytes);
    bytes
}

fn publish0(topic: &str, payload: &[u8]) -> Vec<u8> {
    let p = crate::mqtt::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic,
        packet_id: None,
        payload,
        properties: Default::default(),
    };
    encoded(&Packet::Publish(p))
}

fn connect_with_will(h: &mut Harness, id: &str, will_topic: &str) -> usize {
    let t = h.open();
    let will = Will {
        topic: will_topic,
        payload: b"gone",
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    };
    let c = Connect {
        level: ProtocolLevel::V311,
        client_id: id,
        clean_session: true,
        keep_alive: 0,
        will: Some(will),
        username: None,
        password: None,
        properties: Default::default(),
    };
    h.send(t, &Packet::Connect(Box::new(c)));
    h.received(t);
    t
}

#[test]
fn mqtt_3_1_2_24_keep_alive_counts_complete_packets_only() {
    let mut h = Harness::new();
    let (t, _) = h.connect("trickle", true); // keep alive 10 s: closed after 15 s of silence
    let start = h.now;
    // One byte of a PUBLISH every 4 s: bytes, but never a complete Control Packet.
    let mut partial = publish0("t", &[0; 100]);
    for (i, byte) in partial.iter_mut().take(5).enumerate() {
        let at = start + Duration::from_secs(4 * (i as u64 + 1));
        h.input(t, std::slice::from_ref(byte), at);
        h.core.handle_timeouts(at);
    }
    assert!(h.is_closed(t), "closed 15 s after its last complete packet despite the trickle");

    let (t, _) = h.connect("pinger", true);
    let start = h.now;
    for i in 1..=6 {
        let at = start + Duration::from_secs(10 * i);
        h.input(t, &encoded(&Packet::Pingreq), at);
        h.core.handle_timeouts(at);
    }
    assert!(!h.is_closed(t), "complete PINGREQs keep it alive");
}

#[test]
fn connect_over_max_connect_packet_size_closes_before_buffering() {
    let mut h = Harness::with(|c| c.max_connect_packet_size = 1024);
    let t = h.open();
    // CONNECT announcing 100 kB: refused from the fixed header, before the body arrives.
    h.input(t, &[0x10, 0xA0, 0x8D, 0x06], h.now);
    assert!(h.is_closed(t));
    // After CONNECT the normal max_packet_size applies.
    let (t, _) = h.connect("big", true);
    h.input(t, &[0x30, 0xA0, 0x8D, 0x06, 0, 1], h.now);
    assert!(!h.is_closed(t));
    assert_eq!(h.held(t), 6, "partial PUBLISH held");
}

#[test]
fn subscribe_amplification_filter_over_max_topic_levels_refused_0x80() {
    let mut h = Harness::new();
    let (t, _) = h.connect("amp", true);
    let deep = format!("f1{}", "/".repeat(4000));
    let s = Subscribe {
        packet_id: 1,
        filters: vec![(deep.as_str(), QoS::AtMostOnce.into()), ("ok/+", QoS::AtLeastOnce.into())],
        properties: Default::default(),
    };
    h.send(t, &Packet::Subscribe(s));
    assert_eq!(suback_codes(&h.received(t)[0]), vec![SUBACK_FAILURE, 1]);
    assert_eq!(h.core.router.node_count(), 3, "only the accepted filter built trie nodes");
    let max = format!("f{}", "/x".repeat(199)); // exactly 200 levels
    h.send(
        t,
        &Packet::Subscribe(Subscribe {
            packet_id: 2,
            filters: vec![(max.as_str(), QoS::AtMostOnce.into())],
            properties: Default::default(),
        }),
    );
    assert_eq!(suback_codes(&h.received(t)[0]), vec![0], "200 levels are allowed, as in mosquitto");
}

#[test]
fn publish_topic_over_max_topic_levels_closes() {
    let mut h = Harness::with(|c| c.max_topic_levels = 3);
    let (t, _) = h.connect("p", true);
    h.publish(t, "a/b/c", b"ok", QoS::AtMostOnce, 0, false);
    assert!(!h.is_closed(t));
    h.publish(t, "a/b/c/d", b"too deep", QoS::AtMostOnce, 0, false);
    assert!(h.is_closed(t));
}

#[test]
fn max_subscriptions_and_max_subscribe_filters_answer_0x80() {
    let mut h = Harness::with(|c| {
        c.max_subscriptions = 3;
        c.max_subscribe_filters = 4;
    });
    let (t, _) = h.connect("many", true);
    let q0 = SubscriptionOptions::qos(QoS::AtMostOnce);
    let filters = vec![("a", q0), ("b", q0), ("c", q0), ("d", q0)];
    let mut five = filters.clone();
    five.push(("e", q0));
    h.send(t, &Packet::Subscribe(Subscribe { packet_id: 1, filters: five, properties: Default::default() }));
    assert_eq!(suback_codes(&h.received(t)[0]), vec![0, 0, 0, SUBACK_FAILURE, SUBACK_FAILURE]);
    // At the limit, re-subscribing to a held filter still works (it replaces, 3.8.4).
    let again = vec![("b", QoS::ExactlyOnce.into())];
    h.send(t, &Packet::Subscribe(Subscribe { packet_id: 2, filters: again, properties: Default::default() }));
    assert_eq!(suback_codes(&h.received(t)[0]), vec![2]);
}

#[test]
fn message_size_limit_acknowledged_and_dropped() {
    let mut h = Harness::with(|c| c.message_size_limit = 10);
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "t", QoS::AtLeastOnce);
    let (p, _) = h.connect("p", true);
    h.publish(p, "t", b"this payload is too long", QoS::AtLeastOnce, 7, false);
    assert_eq!(decode(&h.received(p)[0]), Packet::Puback(Ack::new(7)));
    assert!(h.received(s).is_empty());
    h.publish(p, "t", b"short", QoS::AtLeastOnce, 8, false);
    assert_eq!(publish_of(&h.received(s)[0]).payload, b"short");
    assert_eq!(h.core.stats.dropped_oversize, 1);
}

/// A subscriber and a publisher that floods it with `count` QoS 0 messages of `size` bytes in
/// one read, with a 4 KB high watermark.
fn flood(count: usize, size: usize) -> (Harness, usize, usize) {
    let mut h = Harness::with(|c| c.output_high_watermark = 4096);
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "t", QoS::AtMostOnce);
    let (p, _) = h.connect("p", true);
    let burst: Vec<u8> = (0..count).flat_map(|i| publish0("t", &vec![i as u8; size])).collect();
    h.input(p, &burst, h.now);
    (h, s, p)
}

#[test]
fn overload_pauses_the_publisher_and_a_reading_subscriber_loses_nothing() {
    let (mut h, s, p) = flood(100, 1000);
    assert!(!h.core.wants_input(p), "publisher paused while the subscriber is behind");
    let (_, queued) = h.buffered(s);
    assert!(queued <= 4096 + 1010, "subscriber output bounded near the watermark: {queued}");
    let mut got = Vec::new();
    for _ in 0..200 {
        got.extend(h.received(s));
        h.resume_all();
        if got.len() == 100 {
            break;
        }
    }
    assert_eq!(got.len(), 100, "every message delivered once the subscriber reads");
    for (i, bytes) in got.iter().enumerate() {
        assert_eq!(publish_of(bytes).payload[0], i as u8, "in order");
    }
    assert_eq!(h.core.stats.dropped_qos0_slow, 0);
    assert!(h.core.wants_input(p));
}

#[test]
fn slow_consumer_after_grace_drops_qos0_and_releases_the_publisher() {
    let (mut h, s, p) = flood(100, 1000);
    assert!(!h.core.wants_input(p));
    h.core.handle_timeouts(h.now + SLOW_GRACE + Duration::from_millis(1));
    assert_eq!(h.resume_all(), vec![p], "publisher goes on without the slow consumer");
    assert!(h.core.wants_input(p));
    assert!(h.core.stats.dropped_qos0_slow > 80, "dropped: {}", h.core.stats.dropped_qos0_slow);
    let (_, queued) = h.buffered(s);
    assert!(queued <= 4096 + 1010, "slow consumer's output stays bounded: {queued}");
    // Another, reading subscriber is not affected.
    let (r, _) = h.connect("r", true);
    h.subscribe(r, "t", QoS::AtMostOnce);
    h.publish(p, "t", b"live", QoS::AtMostOnce, 0, false);
    assert_eq!(publish_of(&h.received(r)[0]).payload, b"live");
}

#[test]
fn unread_output_client_is_not_read_either() {
    let mut h = Harness::with(|c| c.output_high_watermark = 4096);
    let (t, _) = h.connect("pinger", true);
    // 200 kB of PINGREQ from a client that never reads its PINGRESPs.
    let pings: Vec<u8> = encoded(&Packet::Pingreq).repeat(100_000);
    h.input(t, &pings, h.now);
    assert!(!h.core.wants_input(t));
    let (held, queued) = h.buffered(t);
    assert!(queued <= 4096 + 2, "PINGRESPs stop at the watermark: {queued}");
    assert!(held <= pings.len(), "the rest waits unparsed");
    h.core.check_invariants().unwrap();
}

#[test]
fn send_timeout_closes_a_stalled_connection_and_publishes_its_will() {
    let mut h = Harness::with(|c| {
        c.output_high_watermark = 4096;
        c.send_timeout = Duration::from_secs(5);
    });
    let (w, _) = h.connect("watcher", true);
    h.subscribe(w, "wills/#", QoS::AtMostOnce);
    let t = connect_with_will(&mut h, "stuck", "wills/stuck");
    h.input(t, &encoded(&Packet::Pingreq).repeat(10_000), h.now);
    // The socket takes nothing.
    let _ = h.core.output(t);
    h.core.wrote(t, 0, h.now);
    h.core.handle_timeouts(h.now + Duration::from_secs(4));
    assert!(!h.is_closed(t));
    h.core.handle_timeouts(h.now + Duration::from_secs(6));
    assert!(h.is_closed(t));
    assert_eq!(publish_of(&h.received(w)[0]).payload, b"gone");
    assert_eq!(h.core.stats.send_timeouts, 1);
}

#[test]
fn persistent_client_expiration_removes_offline_sessions() {
    let mut h = Harness::with(|c| c.persistent_client_expiration = Some(Duration::from_secs(60)));
    let (t, _) = h.connect("sensor", false);
    h.subscribe(t, "cmd", QoS::AtLeastOnce);
    h.core.handle_hangup(t, None);
    while let Some(closed) = h.core.poll_closed() {
        h.core.release(closed);
    }
    assert_eq!(h.core.session_count(), 1);
    h.core.handle_timeouts(h.now + Duration::from_secs(59));
    assert_eq!(h.core.session_count(), 1);
    h.core.handle_timeouts(h.now + Duration::from_secs(61));
    assert_eq!(h.core.session_count(), 0, "expired");
    assert_eq!(h.core.router.node_count(), 1, "its subscriptions are gone from the trie");
    let (_, out) = h.connect("sensor", false);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::Accepted))));
}

#[test]
fn reconnect_within_expiration_keeps_the_session() {
    let mut h = Harness::with(|c| c.persistent_client_expiration = Some(Duration::from_secs(60)));
    let (t, _) = h.connect("sensor", false);
    h.core.handle_hangup(t, None);
    h.now += Duration::from_secs(30);
    let (_, out) = h.connect("sensor", false);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(true, ConnectReturnCode::Accepted))));
    h.core.handle_timeouts(h.now + Duration::from_secs(45));
    assert_eq!(h.core.session_count(), 1, "the old expiry entry is stale once reconnected");
}

#[test]
fn oldest_pending_connection_dropped_at_max_pending_connections() {
    let mut h = Harness::with(|c| c.max_pending_connections = 2);
    let a = h.open();
    let b = h.open();
    assert!(!h.is_closed(a));
    let c = h.open();
    assert!(h.is_closed(a), "oldest pending dropped");
    assert!(!h.is_closed(b) && !h.is_closed(c));
    assert_eq!(h.core.stats.pending_evicted, 1);
    h.core.check_invariants().unwrap();
}

#[test]
fn listener_at_max_connections_refuses_more() {
    let mut h = Harness::with(|c| c.max_connections = Some(2));
    let peer = "127.0.0.1:9".parse().unwrap();
    let a = h.core.accept(0, peer, h.now).unwrap();
    let _b = h.core.accept(0, peer, h.now).unwrap();
    assert_eq!(h.core.accept(0, peer, h.now), None);
    assert!(h.core.accept(1, peer, h.now).is_some(), "per listener");
    h.core.close(a, CloseReason::PeerClosed);
    let closed = h.core.poll_closed().unwrap();
    assert_eq!(closed.token(), a);
    h.core.release(closed);
    assert!(h.core.accept(0, peer, h.now).is_some());
}

#[test]
fn refused_connect_lingers_then_finishes() {
    let mut h = Harness::with(|c| c.allow_anonymous = false);
    let (t, out) = h.connect("nobody", true);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::NotAuthorized))));
    assert!(h.core.is_lingering(t), "kept to deliver the CONNACK");
    h.core.handle_timeouts(h.now + LINGER + Duration::from_millis(1));
    assert_eq!(h.core.poll_finished().map(|f| f.token()), Some(t));
}

#[test]
fn memory_limit_refuses_clients_qos0_and_qos1() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "t", QoS::AtLeastOnce);
    let (p, _) = h.connect("p", true);
    h.core.limits.memory_limit = Some(1);
    let (c, out) = h.connect("late", true);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::ServerUnavailable))));
    assert!(h.is_closed(c));
    h.publish(p, "t", b"q0", QoS::AtMostOnce, 0, false);
    assert!(h.received(s).is_empty(), "QoS 0 dropped");
    h.send(
        s,
        &Packet::Subscribe(Subscribe {
            packet_id: 2,
            filters: vec![("u", QoS::AtMostOnce.into())],
            properties: Default::default(),
        }),
    );
    assert_eq!(suback_codes(&h.received(s)[0]), vec![SUBACK_FAILURE]);
    h.publish(p, "t", b"q1", QoS::AtLeastOnce, 3, false);
    assert!(h.received(p).is_empty(), "no PUBACK: the client keeps the message");
    assert!(h.is_closed(p));
    h.core.limits.memory_limit = None;
    let (_, out) = h.connect("later", true);
    assert_eq!(decode(&out[0]), Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::Accepted))));
}

#[test]
fn retained_messages_for_a_wildcard_come_from_its_branch_only() {
    let mut h = Harness::new();
    let (p, _) = h.connect("p", true);
    for i in 0..1000 {
        h.publish(p, &format!("other/{i}"), b"x", QoS::AtMostOnce, 0, true);
    }
    h.publish(p, "dev/1/t", b"a", QoS::AtMostOnce, 0, true);
    h.publish(p, "dev/2/t", b"b", QoS::AtMostOnce, 0, true);
    let (s, _) = h.connect("s", true);
    h.send(
        s,
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![("dev/+/t", QoS::AtMostOnce.into())],
            properties: Default::default(),
        }),
    );
    let out = h.received(s);
    assert_eq!(out.len(), 3, "SUBACK and the two retained messages");
    assert_eq!(h.core.retained_count(), 1002);
}

#[test]
fn fuzz_regression_a_woken_publisher_is_not_read_before_resume() {
    // Found by the broker fuzz target (4M executions): a publisher paused with undecoded input
    // was woken (its subscriber closed) and read again before `resume` decoded what it held,
    // so its held input grew past one read chunk (104 KB with a 2 KB packet limit).
    let (mut h, s, p) = flood(100, 1000);
    let held = h.held(p);
    assert!(held > 0 && !h.core.wants_input(p));
    h.core.close(s, CloseReason::PeerClosed);
    assert!(!h.core.wants_input(p), "woken, but what it holds is decoded by resume first");
    assert_eq!(h.resume_all(), vec![p]);
    assert!(h.core.wants_input(p) || h.buffered(p).0 > 0, "paused again only by more input");
    assert!(h.held(p) <= 64 * 1024, "resume decoded what the pause left before reading more");
    h.core.check_invariants().unwrap();
}

#[test]
fn fuzz_regression_shutdown_finishes_lingering_connections() {
    // Found by the broker fuzz target: a connection lingering after a refused CONNACK was left
    // behind by shutdown (it was already closing, so closing it again did nothing).
    let mut h = Harness::with(|c| c.allow_anonymous = false);
    let (t, _) = h.connect("refused", true);
    assert!(h.core.is_lingering(t));
    while h.core.poll_closed().is_some() {}
    h.core.shutdown();
    assert_eq!(h.core.poll_finished().map(|f| f.token()), Some(t));
}
