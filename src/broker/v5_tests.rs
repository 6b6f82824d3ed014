//! MQTT 5.0 scenarios against the sans-IO core (the harness of `tests.rs`, packets at level 5),
//! named after the normative statements they check. Test-only.

use std::time::Duration;

use super::tests::{Harness, MAX};
use crate::mqtt::properties::write_user_property;
use crate::mqtt::{
    decode_packet, encode_packet, Ack, ConnectProperties, Disconnect, DisconnectProperties, Packet, ProtocolLevel,
    Publish, PublishProperties, PublishPropertyBlock, QoS, ReasonCode, Subscribe, UserProperties, Will, WillProperties,
};
use crate::mqtt::{Connect, RetainHandling, SubscriptionOptions};

fn decode5(bytes: &[u8]) -> Packet<'_> {
    decode_packet(bytes, ProtocolLevel::V5, MAX).unwrap().unwrap().0
}

fn publish5(bytes: &[u8]) -> Publish<'_> {
    match decode5(bytes) {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn connect5<'a>(id: &'a str, clean_start: bool, properties: ConnectProperties<'a>) -> Connect<'a> {
    Connect {
        level: ProtocolLevel::V5,
        client_id: id,
        clean_session: clean_start,
        keep_alive: 10,
        will: None,
        username: None,
        password: None,
        properties,
    }
}

impl Harness {
    fn send5(&mut self, token: usize, packet: &Packet<'_>) {
        let mut bytes = Vec::new();
        encode_packet(packet, ProtocolLevel::V5, &mut bytes);
        self.input(token, &bytes, self.now);
    }

    /// A 5.0 CONNECT; returns the token and what came back.
    fn connect_with(&mut self, c: Connect<'_>) -> (usize, Vec<Vec<u8>>) {
        let t = self.open();
        self.send5(t, &Packet::Connect(Box::new(c)));
        let out = self.received(t);
        (t, out)
    }

    fn connect5(&mut self, id: &str, clean_start: bool, expiry: u32) -> usize {
        let props = ConnectProperties { session_expiry_interval: expiry, ..Default::default() };
        let (t, out) = self.connect_with(connect5(id, clean_start, props));
        match decode5(&out[0]) {
            Packet::Connack(c) => assert_eq!(c.reason, ReasonCode::SUCCESS),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        t
    }

    fn subscribe5(&mut self, token: usize, filter: &str, options: SubscriptionOptions) -> Vec<ReasonCode> {
        self.send5(
            token,
            &Packet::Subscribe(Subscribe {
                packet_id: 9,
                filters: vec![(filter, options)],
                properties: Default::default(),
            }),
        );
        let out = self.received(token);
        match decode5(&out[0]) {
            Packet::Suback(s) => s.reason_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    fn publish5(&mut self, token: usize, topic: &str, qos: QoS, properties: PublishProperties<'_>) {
        let packet_id = (qos != QoS::AtMostOnce).then_some(7);
        let block = properties.to_block();
        // Unvalidated: some tests send what a broker must refuse.
        let properties = PublishPropertyBlock::raw(&block);
        let p = Publish { dup: false, qos, retain: false, topic, packet_id, payload: b"m", properties };
        self.send5(token, &Packet::Publish(p));
    }

    /// The reason of the DISCONNECT the server sent last, checking the connection closed.
    fn disconnected_with(&mut self, token: usize) -> ReasonCode {
        let out = self.received(token);
        assert!(self.is_closed(token), "still open");
        match out.last().map(|b| decode5(b)) {
            Some(Packet::Disconnect(d)) => d.reason,
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }
}

#[test]
fn mqtt_3_1_2_2_level_5_connect_accepted_with_what_midge_supports() {
    let mut h = Harness::new();
    let t = h.open();
    // CONNECT, protocol MQTT level 5, clean start, keep alive 60, no properties, empty id.
    let bytes = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0];
    h.input(t, &bytes, h.now);
    let out = h.received(t);
    let Packet::Connack(c) = decode5(&out[0]) else { panic!("no CONNACK") };
    assert_eq!(c.reason, ReasonCode::SUCCESS);
    assert!(!h.is_closed(t));
    let p = &c.properties;
    assert_eq!(p.topic_alias_maximum, Some(10));
    assert_eq!(p.wildcard_subscription_available, Some(true));
    assert_eq!(p.shared_subscription_available, Some(true));
    assert_eq!(p.receive_maximum, Some(2), "ours: max_inflight of the harness");
    assert_eq!(p.retain_available, None, "absent means available");
    assert_eq!(p.maximum_packet_size, None, "default max_packet_size is the protocol's");
}

#[test]
fn mqtt_3_2_2_16_empty_client_id_gets_an_assigned_client_identifier() {
    let mut h = Harness::new();
    // 5.0 allows it without Clean Start (3.1.3-6).
    let (t, out) = h.connect_with(connect5("", false, Default::default()));
    let Packet::Connack(c) = decode5(&out[0]) else { panic!("no CONNACK") };
    assert_eq!(c.reason, ReasonCode::SUCCESS);
    let id = c.properties.assigned_client_identifier.expect("assigned id");
    assert!(!id.is_empty());
    assert_eq!(h.core.conns.get(t).unwrap().client_id.as_deref(), Some(id));
}

#[test]
fn mqtt_3_1_2_23_session_expiry_0_ends_the_session_with_the_connection() {
    let mut h = Harness::new();
    let t = h.connect5("e0", false, 0);
    h.core.handle_hangup(t, None);
    assert_eq!(h.core.session_count(), 0);
}

#[test]
fn mqtt_3_1_2_23_session_kept_for_its_expiry_interval_then_gone() {
    let mut h = Harness::new();
    let t = h.connect5("e5", true, 5);
    h.core.handle_hangup(t, None);
    assert_eq!(h.core.session_count(), 1);
    // Back within the interval: Clean Start 0 finds it (3.2.2-2).
    h.now += Duration::from_secs(4);
    let (t, out) =
        h.connect_with(connect5("e5", false, ConnectProperties { session_expiry_interval: 5, ..Default::default() }));
    let Packet::Connack(c) = decode5(&out[0]) else { panic!() };
    assert!(c.session_present);
    h.core.handle_hangup(t, None);
    h.core.handle_timeouts(h.now + Duration::from_secs(4));
    assert_eq!(h.core.session_count(), 1);
    h.core.handle_timeouts(h.now + Duration::from_secs(6));
    assert_eq!(h.core.session_count(), 0);
}

#[test]
fn mqtt_3_1_2_11_session_expiry_0xffffffff_never_expires() {
    let mut h = Harness::new();
    let t = h.connect5("forever", true, u32::MAX);
    h.core.handle_hangup(t, None);
    h.core.handle_timeouts(h.now + Duration::from_secs(400 * 24 * 3600));
    assert_eq!(h.core.session_count(), 1);
    assert!(h.core.poll_timeout().is_none() || h.core.session_timers.is_empty());
}

#[test]
fn mqtt_3_3_4_9_client_receive_maximum_caps_the_in_flight_window() {
    let mut h = Harness::with(|c| c.max_inflight = 20);
    let props = ConnectProperties { receive_maximum: Some(3), ..Default::default() };
    let (s, _) = h.connect_with(connect5("s", true, props));
    h.subscribe5(s, "t", SubscriptionOptions::qos(QoS::AtLeastOnce));
    let (p, _) = h.connect("p", true);
    for i in 0..8 {
        h.publish(p, "t", b"x", QoS::AtLeastOnce, i + 1, false);
    }
    let got = h.received(s);
    assert_eq!(got.len(), 3, "no more than the client's Receive Maximum unacknowledged");
    let id = publish5(&got[0]).packet_id.unwrap();
    h.send5(s, &Packet::Puback(Ack::new(id)));
    assert_eq!(h.received(s).len(), 1, "one ack, one more");
}

#[test]
fn mqtt_3_1_2_24_any_packet_over_client_maximum_packet_size_is_dropped_as_if_sent() {
    let mut h = Harness::new();
    let props = ConnectProperties { maximum_packet_size: Some(20), ..Default::default() };
    let (s, _) = h.connect_with(connect5("s", true, props));
    // SUBACK for 30 filters: 35 bytes, over 20. Not sent; the subscriptions hold.
    let names: Vec<String> = (0..30).map(|i| format!("f/{i}")).collect();
    let filters = names.iter().map(|n| (n.as_str(), SubscriptionOptions::qos(QoS::AtMostOnce))).collect();
    h.send5(s, &Packet::Subscribe(Subscribe { packet_id: 3, filters, properties: Default::default() }));
    assert!(h.received(s).is_empty(), "the SUBACK is dropped");
    assert_eq!(h.core.conns.get(s).unwrap().v5.as_ref().unwrap().dropped_too_large, 1, "counted");
    let (p, _) = h.connect("p", true);
    h.publish(p, "f/29", b"m", QoS::AtMostOnce, 0, false);
    let got = h.received(s);
    assert_eq!(got.len(), 1);
    assert_eq!(publish5(&got[0]).topic, "f/29");
    // A small control packet still goes.
    h.send5(s, &Packet::Pingreq);
    assert_eq!(h.received(s), [vec![0xD0, 0]]);
}

#[test]
fn mqtt_3_1_2_25_publish_over_client_maximum_packet_size_is_dropped() {
    let mut h = Harness::new();
    let props = ConnectProperties { maximum_packet_size: Some(64), ..Default::default() };
    let (s, _) = h.connect_with(connect5("s", true, props));
    h.subscribe5(s, "t", SubscriptionOptions::qos(QoS::AtMostOnce));
    let (p, _) = h.connect("p", true);
    h.publish(p, "t", &[b'x'; 100], QoS::AtMostOnce, 0, false);
    h.publish(p, "t", b"small", QoS::AtMostOnce, 0, false);
    let got = h.received(s);
    assert_eq!(got.len(), 1);
    assert_eq!(publish5(&got[0]).payload, b"small");
    assert!(got.iter().all(|b| b.len() <= 64));
    assert_eq!(h.core.conns.get(s).unwrap().v5.as_ref().unwrap().dropped_too_large, 1, "counted");
}

#[test]
fn mqtt_3_3_2_8_topic_alias_0_is_disconnect_0x94() {
    let mut h = Harness::new();
    let t = h.connect5("a", true, 0);
    h.publish5(t, "t", QoS::AtMostOnce, PublishProperties { topic_alias: Some(0), ..Default::default() });
    assert_eq!(h.disconnected_with(t), ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn mqtt_3_3_2_9_topic_alias_above_our_maximum_is_disconnect_0x94() {
    let mut h = Harness::new();
    let t = h.connect5("a", true, 0);
    h.publish5(t, "t", QoS::AtMostOnce, PublishProperties { topic_alias: Some(11), ..Default::default() });
    assert_eq!(h.disconnected_with(t), ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn mqtt_3_3_2_12_topic_alias_stands_for_its_topic_and_unknown_one_is_protocol_error() {
    let mut h = Harness::new();
    let (s, _) = h.connect("s", true);
    h.subscribe(s, "long/topic", QoS::AtMostOnce);
    let t = h.connect5("a", true, 0);
    let alias = |a| PublishProperties { topic_alias: Some(a), ..Default::default() };
    h.publish5(t, "long/topic", QoS::AtMostOnce, alias(3));
    h.publish5(t, "", QoS::AtMostOnce, alias(3));
    let got = h.received(s);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|b| super::tests::publish_of(b).topic == "long/topic"));
    h.publish5(t, "", QoS::AtMostOnce, alias(4));
    assert_eq!(h.disconnected_with(t), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn mqtt_3_3_4_6_publish_with_subscription_identifier_is_protocol_error() {
    let mut h = Harness::new();
    let t = h.connect5("a", true, 0);
    // PUBLISH QoS 0 "t", properties: Subscription Identifier 1, payload "m".
    h.input(t, &[0x30, 7, 0, 1, b't', 2, 0x0B, 1, b'm'], h.now);
    assert_eq!(h.disconnected_with(t), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn mqtt_3_3_4_7_receive_maximum_exceeded_is_disconnect_0x93() {
    let mut h = Harness::new(); // our Receive Maximum: max_inflight, 2
    let t = h.connect5("a", true, 0);
    for id in 1..=3u16 {
        let p = Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "t",
            packet_id: Some(id),
            payload: b"",
            properties: Default::default(),
        };
        h.send5(t, &Packet::Publish(p));
    }
    assert_eq!(h.disconnected_with(t), ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
}

#[test]
fn mqtt_3_4_2_1_puback_no_matching_subscribers_and_pubcomp_id_not_found() {
    let mut h = Harness::new();
    let t = h.connect5("a", true, 0);
    h.publish5(t, "nobody", QoS::AtLeastOnce, Default::default());
    let got = h.received(t);
    let Packet::Puback(a) = decode5(&got[0]) else { panic!() };
    assert_eq!(a.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    h.subscribe5(t, "somebody", SubscriptionOptions::qos(QoS::AtMostOnce));
    h.publish5(t, "somebody", QoS::AtLeastOnce, Default::default());
    let got = h.received(t);
    let acks: Vec<_> = got
        .iter()
        .filter_map(|b| match decode5(b) {
            Packet::Puback(a) => Some(a.reason),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [ReasonCode::SUCCESS]);
    h.send5(t, &Packet::Pubrel(Ack::new(42)));
    let got = h.received(t);
    let Packet::Pubcomp(c) = decode5(&got[0]) else { panic!() };
    assert_eq!(c.reason, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
}

#[test]
fn mqtt_3_1_4_takeover_sends_the_old_v5_client_disconnect_0x8e() {
    let mut h = Harness::new();
    let a = h.connect5("same", true, 0);
    let _b = h.connect5("same", true, 0);
    assert_eq!(h.disconnected_with(a), ReasonCode::SESSION_TAKEN_OVER);
}

#[test]
fn mqtt_3_1_2_22_keep_alive_timeout_sends_disconnect_0x8d() {
    let mut h = Harness::new();
    let a = h.connect5("k", true, 0); // keep alive 10 s
    h.core.handle_timeouts(h.now + Duration::from_secs(16));
    assert_eq!(h.disconnected_with(a), ReasonCode::KEEP_ALIVE_TIMEOUT);
}

#[test]
fn mqtt_3_2_2_3_14_server_keep_alive_replaces_a_longer_or_absent_keep_alive() {
    for (asked, told) in [(10, Some(5)), (0, Some(5)), (5, None), (3, None)] {
        let mut h = Harness::with(|c| c.max_keepalive = 5);
        let (t, out) = h.connect_with(Connect { keep_alive: asked, ..connect5("k", true, Default::default()) });
        let Packet::Connack(c) = decode5(&out[0]) else { panic!() };
        assert_eq!(c.properties.server_keep_alive, told, "asked for {asked}");
        // The server holds the client to the value it uses (3.1.2-22: 1.5 times it).
        let used = told.unwrap_or(asked);
        h.core.handle_timeouts(h.now + Duration::from_millis(u64::from(used) * 1500 - 100));
        assert!(!h.is_closed(t), "asked for {asked}: closed early");
        h.core.handle_timeouts(h.now + Duration::from_millis(u64::from(used) * 1500 + 100));
        assert!(h.is_closed(t), "asked for {asked}: not closed after 1.5 x {used} s");
    }
    // No maximum: none is sent, and a 3.1.1 client is never told.
    let mut h = Harness::new();
    let (_, out) = h.connect_with(Connect { keep_alive: 0, ..connect5("k", true, Default::default()) });
    let Packet::Connack(c) = decode5(&out[0]) else { panic!() };
    assert_eq!(c.properties.server_keep_alive, None);
}

#[test]
fn server_shutting_down_sends_disconnect_0x8b() {
    let mut h = Harness::new();
    let a = h.connect5("k", true, 0);
    h.core.shutdown();
    assert_eq!(h.disconnected_with(a), ReasonCode::SERVER_SHUTTING_DOWN);
}

#[test]
fn mqtt_4_12_authentication_method_gets_connack_0x8c() {
    let mut h = Harness::new();
    let props = ConnectProperties { authentication_method: Some("SCRAM-SHA-256"), ..Default::default() };
    let (t, out) = h.connect_with(connect5("a", true, props));
    let Packet::Connack(c) = decode5(&out[0]) else { panic!() };
    assert_eq!(c.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(h.is_closed(t));
}

#[test]
fn mqtt_4_13_1_1_malformed_v5_connect_gets_connack_with_its_reason() {
    let mut h = Harness::new();
    let t = h.open();
    // Session Expiry Interval twice: a protocol error (2.2.2.2).
    let bytes = [0x10, 23, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2, 0, 0];
    h.input(t, &bytes, h.now);
    let out = h.received(t);
    let Packet::Connack(c) = decode5(&out[0]) else { panic!("{out:?}") };
    assert_eq!(c.reason, ReasonCode::PROTOCOL_ERROR);
    assert!(h.is_closed(t));
}

#[test]
fn mqtt_3_3_2_17_properties_forwarded_to_v5_not_to_3_1_1_subscribers() {
    let mut h = Harness::new();
    let s5 = h.connect5("s5", true, 0);
    h.subscribe5(s5, "t", SubscriptionOptions::qos(QoS::AtMostOnce));
    let (s3, _) = h.connect("s3", true);
    h.subscribe(s3, "t", QoS::AtMostOnce);
    let p = h.connect5("p", true, 0);
    let mut block = Vec::new();
    write_user_property(&mut block, "b", "2");
    write_user_property(&mut block, "a", "1");
    write_user_property(&mut block, "b", "3");
    let props = PublishProperties {
        content_type: Some("text/plain"),
        response_topic: Some("reply"),
        correlation_data: Some(b"cd"),
        user_properties: UserProperties::from_block(&block).unwrap(),
        ..Default::default()
    };
    h.publish5(p, "t", QoS::AtMostOnce, props);
    let got = h.received(s5);
    let got5 = publish5(&got[0]);
    assert_eq!(got5.properties.get().content_type, Some("text/plain"));
    assert_eq!(got5.properties.get().response_topic, Some("reply"));
    assert_eq!(got5.properties.get().correlation_data, Some(&b"cd"[..]));
    let pairs: Vec<_> = got5.properties.get().user_properties.iter().collect();
    assert_eq!(pairs, [("b", "2"), ("a", "1"), ("b", "3")], "in order (3.3.2-18)");
    let got = h.received(s3);
    assert_eq!(super::tests::publish_of(&got[0]).payload, b"m", "3.1.1 subscriber gets it bare");
    // And a 3.1.1 publisher's message reaches the 5.0 subscriber without properties.
    let (p3, _) = h.connect("p3", true);
    h.publish(p3, "t", b"old", QoS::AtMostOnce, 0, false);
    let got = h.received(s5);
    assert!(publish5(&got[0]).properties.is_empty());
}

#[test]
fn mqtt_3_3_2_5_expired_queued_message_not_sent_and_remaining_interval_forwarded() {
    let mut h = Harness::new();
    let s = h.connect5("s", true, 100);
    h.subscribe5(s, "t", SubscriptionOptions::qos(QoS::AtLeastOnce));
    h.core.handle_hangup(s, None);
    let p = h.connect5("p", true, 0);
    h.publish5(p, "t", QoS::AtLeastOnce, PublishProperties { message_expiry_interval: Some(1), ..Default::default() });
    h.publish5(p, "t", QoS::AtLeastOnce, PublishProperties { message_expiry_interval: Some(10), ..Default::default() });
    h.now += Duration::from_secs(2);
    let (_s, got) =
        h.connect_with(connect5("s", false, ConnectProperties { session_expiry_interval: 100, ..Default::default() }));
    let got: Vec<_> = got[1..].iter().map(|b| publish5(b)).collect();
    assert_eq!(got.len(), 1, "the 1 s message expired while queued");
    assert_eq!(got[0].properties.get().message_expiry_interval, Some(8), "3.3.2-6: the remaining interval");
}

#[test]
fn mqtt_3_3_2_5_expired_retained_message_not_sent() {
    let mut h = Harness::new();
    let p = h.connect5("p", true, 0);
    let retained = |expiry| Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: "r",
        packet_id: None,
        payload: b"kept",
        properties: leak_block(PublishProperties { message_expiry_interval: Some(expiry), ..Default::default() }),
    };
    h.send5(p, &Packet::Publish(retained(1)));
    h.now += Duration::from_secs(2);
    let s = h.connect5("s", true, 0);
    h.subscribe5(s, "r", SubscriptionOptions::qos(QoS::AtMostOnce));
    assert!(h.received(s).is_empty());
    assert_eq!(h.core.retained_count(), 0, "dropped when found expired");
}

fn will_connect<'a>(id: &'a str, expiry: u32, delay: u32) -> Connect<'a> {
    let mut c = connect5(id, true, ConnectProperties { session_expiry_interval: expiry, ..Default::default() });
    c.will = Some(Will {
        topic: "will",
        payload: b"gone",
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties { will_delay_interval: delay, content_type: Some("x"), ..Default::default() },
    });
    c
}

#[test]
fn mqtt_3_14_4_3_disconnect_0x04_publishes_the_will_other_reasons_do_not() {
    let mut h = Harness::new();
    let s = h.connect5("s", true, 0);
    h.subscribe5(s, "will", SubscriptionOptions::qos(QoS::AtMostOnce));
    let (w, _) = h.connect_with(will_connect("w", 0, 0));
    h.send5(w, &Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)));
    let got = h.received(s);
    assert_eq!(got.len(), 1);
    assert_eq!(publish5(&got[0]).properties.get().content_type, Some("x"), "will properties forwarded");
    let (w, _) = h.connect_with(will_connect("w", 0, 0));
    h.send5(w, &Packet::Disconnect(Disconnect::NORMAL));
    assert!(h.received(s).is_empty());
}

#[test]
fn mqtt_3_14_2_2_session_expiry_set_after_zero_is_protocol_error() {
    let mut h = Harness::new();
    let t = h.connect5("z", true, 0);
    let d = Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties { session_expiry_interval: Some(60), ..DisconnectProperties::EMPTY },
    };
    h.send5(t, &Packet::Disconnect(d));
    assert_eq!(h.disconnected_with(t), ReasonCode::PROTOCOL_ERROR);
    assert_eq!(h.core.session_count(), 0);
}

#[test]
fn mqtt_3_14_2_session_expiry_in_disconnect_replaces_connects() {
    let mut h = Harness::new();
    let t = h.connect5("z", true, 60);
    let d = Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties { session_expiry_interval: Some(0), ..DisconnectProperties::EMPTY },
    };
    h.send5(t, &Packet::Disconnect(d));
    assert_eq!(h.core.session_count(), 0, "0 now: the session ends with the connection");
}

#[test]
fn mqtt_3_1_3_9_will_delayed_and_not_sent_if_the_client_reconnects_in_time() {
    let mut h = Harness::new();
    let s = h.connect5("s", true, 0);
    h.subscribe5(s, "will", SubscriptionOptions::qos(QoS::AtMostOnce));
    let (w, _) = h.connect_with(will_connect("w", 100, 5));
    h.core.handle_hangup(w, None);
    assert!(h.received(s).is_empty(), "delayed");
    h.now += Duration::from_secs(3);
    let back = connect5("w", false, ConnectProperties { session_expiry_interval: 100, ..Default::default() });
    let (w, _) = h.connect_with(back);
    h.core.handle_timeouts(h.now + Duration::from_secs(10));
    assert!(h.received(s).is_empty(), "reconnected within the delay: no will");
    // This connection has no will; a new one with a will, dropped, publishes after the delay.
    h.core.handle_hangup(w, None);
    let (w, _) = h.connect_with(will_connect("w2", 100, 5));
    h.core.handle_hangup(w, None);
    h.core.handle_timeouts(h.now + Duration::from_secs(4));
    assert!(h.received(s).is_empty());
    h.core.handle_timeouts(h.now + Duration::from_secs(6));
    assert_eq!(h.received(s).len(), 1, "after its delay");
}

#[test]
fn mqtt_3_1_2_8_will_published_when_the_session_ends_before_its_delay() {
    let mut h = Harness::new();
    let s = h.connect5("s", true, 0);
    h.subscribe5(s, "will", SubscriptionOptions::qos(QoS::AtMostOnce));
    let (w, _) = h.connect_with(will_connect("w", 2, 60));
    h.core.handle_hangup(w, None);
    assert!(h.received(s).is_empty());
    h.core.handle_timeouts(h.now + Duration::from_secs(3));
    assert_eq!(h.received(s).len(), 1, "session expired at 2 s, will with it");
    assert_eq!(h.core.session_count(), 1, "only the subscriber's");
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::qos(qos)
}

#[test]
fn mqtt_3_8_3_3_no_local_not_delivered_to_own_session_also_from_the_route_cache() {
    let mut h = Harness::new();
    let a = h.connect5("a", true, 0);
    h.subscribe5(a, "t", SubscriptionOptions { no_local: true, ..options(QoS::AtMostOnce) });
    let b = h.connect5("b", true, 0);
    h.subscribe5(b, "t", options(QoS::AtMostOnce));
    for _ in 0..3 {
        h.publish5(a, "t", QoS::AtMostOnce, Default::default());
    }
    assert!(h.received(a).is_empty(), "own publications, cached route or not");
    assert_eq!(h.received(b).len(), 3);
    h.publish5(b, "t", QoS::AtMostOnce, Default::default());
    assert_eq!(h.received(a).len(), 1, "others' still come");
    // A second, local subscription of the same session matching too: delivered once.
    h.subscribe5(a, "#", options(QoS::AtMostOnce));
    h.publish5(a, "t", QoS::AtMostOnce, Default::default());
    assert_eq!(h.received(a).len(), 1);
}

#[test]
fn mqtt_3_3_1_12_retain_as_published_keeps_the_flag_else_cleared() {
    let mut h = Harness::new();
    let keep = h.connect5("keep", true, 0);
    h.subscribe5(keep, "t", SubscriptionOptions { retain_as_published: true, ..options(QoS::AtMostOnce) });
    let clear = h.connect5("clear", true, 0);
    h.subscribe5(clear, "t", options(QoS::AtMostOnce));
    let p = h.connect5("p", true, 0);
    let retained = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: "t",
        packet_id: None,
        payload: b"r",
        properties: Default::default(),
    };
    h.send5(p, &Packet::Publish(retained));
    assert!(publish5(&h.received(keep)[0]).retain, "3.3.1-13");
    assert!(!publish5(&h.received(clear)[0]).retain, "3.3.1-12");
}

#[test]
fn mqtt_3_3_1_9_to_11_retain_handling_0_1_2() {
    let mut h = Harness::new();
    let (p, _) = h.connect("p", true);
    h.publish(p, "r", b"kept", QoS::AtMostOnce, 0, true);
    let s = h.connect5("s", true, 0);
    let with = |rh| SubscriptionOptions { retain_handling: rh, ..options(QoS::AtMostOnce) };
    let count = |h: &mut Harness, rh| {
        h.send5(
            s,
            &Packet::Subscribe(Subscribe {
                packet_id: 9,
                filters: vec![("r", with(rh))],
                properties: Default::default(),
            }),
        );
        h.received(s).len() - 1 // less the SUBACK
    };
    assert_eq!(count(&mut h, RetainHandling::DoNotSend), 0, "2: never");
    assert_eq!(count(&mut h, RetainHandling::SendIfNew), 0, "1: the subscription exists already");
    assert_eq!(count(&mut h, RetainHandling::SendAtSubscribe), 1, "0: at every subscribe");
    h.send5(
        s,
        &Packet::Unsubscribe(crate::mqtt::Unsubscribe {
            packet_id: 3,
            filters: vec!["r"],
            user_properties: Default::default(),
        }),
    );
    h.received(s);
    assert_eq!(count(&mut h, RetainHandling::SendIfNew), 1, "1: new again");
}

#[test]
fn mqtt_3_3_4_3_subscription_identifiers_delivered_with_each_match() {
    let mut h = Harness::new();
    let s = h.connect5("s", true, 0);
    let sub = |h: &mut Harness, filter, id| {
        let properties = crate::mqtt::SubscribeProperties { subscription_identifier: Some(id), ..Default::default() };
        h.send5(
            s,
            &Packet::Subscribe(Subscribe {
                packet_id: 9,
                filters: vec![(filter, options(QoS::AtMostOnce))],
                properties,
            }),
        );
        h.received(s);
    };
    sub(&mut h, "a/+", 5);
    let (p, _) = h.connect("p", true);
    h.publish(p, "a/b", b"x", QoS::AtMostOnce, 0, false);
    let got = h.received(s);
    let ids: Vec<u32> = publish5(&got[0]).properties.get().subscription_identifiers.iter().collect();
    assert_eq!(ids, [5]);
    // Two matching subscriptions with their identifiers: each delivery carries one (3.3.4-2
    // allows a copy per subscription), so together they carry both.
    sub(&mut h, "a/#", 7);
    h.publish(p, "a/b", b"x", QoS::AtMostOnce, 0, false);
    let got = h.received(s);
    let mut ids: Vec<u32> = got
        .iter()
        .flat_map(|b| publish5(b).properties.get().subscription_identifiers.iter().collect::<Vec<_>>())
        .collect();
    ids.sort();
    assert_eq!(ids, [5, 7]);
}

#[test]
fn mqtt_3_9_3_suback_and_unsuback_reason_codes() {
    let mut h = Harness::with(|c| c.max_subscriptions = 1);
    let s = h.connect5("s", true, 0);
    assert_eq!(h.subscribe5(s, "a", options(QoS::ExactlyOnce)), [ReasonCode::GRANTED_QOS_2]);
    assert_eq!(h.subscribe5(s, "b", options(QoS::AtMostOnce)), [ReasonCode::QUOTA_EXCEEDED]);
    assert_eq!(h.subscribe5(s, "$share/+/a", options(QoS::AtMostOnce)), [ReasonCode::TOPIC_FILTER_INVALID]);
    h.send5(
        s,
        &Packet::Unsubscribe(crate::mqtt::Unsubscribe {
            packet_id: 3,
            filters: vec!["a", "zz"],
            user_properties: Default::default(),
        }),
    );
    let got = h.received(s);
    let Packet::Unsuback(u) = decode5(&got[0]) else { panic!() };
    assert_eq!(u.reason_codes, [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]);
}

#[test]
fn mqtt_3_3_4_publish_the_acl_refuses_gets_puback_0x87_and_pubrec_0x87_frees_its_id() {
    let mut h = Harness::new();
    let (acl, _) = crate::auth::acl::Acl::parse("topic readwrite open/#\n").unwrap();
    let mut security = crate::auth::security::Security::open(true, false);
    security.acl = Some(std::rc::Rc::new(acl));
    h.core.set_security(vec![std::rc::Rc::new(security)]);
    let t = h.connect5("a", true, 0);
    h.publish5(t, "closed", QoS::AtLeastOnce, Default::default());
    let got = h.received(t);
    let Packet::Puback(a) = decode5(&got[0]) else { panic!() };
    assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED);
    h.publish5(t, "closed", QoS::ExactlyOnce, Default::default());
    let got = h.received(t);
    let Packet::Pubrec(a) = decode5(&got[0]) else { panic!() };
    assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED);
    assert!(h.core.sessions.iter().all(|(_, s)| s.inbound_qos2.is_empty()), "the refused exchange is over (4.3.3)");
    // A 3.1.1 client keeps mosquitto's behaviour: acknowledged, dropped.
    let (o, _) = h.connect("old", true);
    h.publish(o, "closed", b"x", QoS::AtLeastOnce, 1, false);
    assert_eq!(h.received(o)[0], [0x40, 2, 0, 1]);
}

#[test]
fn mqtt_4_13_2_packet_too_large_gets_disconnect_0x95_and_malformed_0x81() {
    let mut h = Harness::with(|c| c.max_packet_size = 100);
    let t = h.connect5("big", true, 0);
    h.publish5(t, "t", QoS::AtMostOnce, Default::default());
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: None,
        payload: &[0; 200],
        properties: Default::default(),
    };
    h.send5(t, &Packet::Publish(p));
    assert_eq!(h.disconnected_with(t), ReasonCode::PACKET_TOO_LARGE);
    let t = h.connect5("bad", true, 0);
    // PUBLISH with QoS 3.
    h.input(t, &[0x36, 4, 0, 1, b't', 0], h.now);
    assert_eq!(h.disconnected_with(t), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn mqtt_3_2_2_3_connack_states_our_maximum_packet_size_when_configured() {
    let mut h = Harness::with(|c| c.max_packet_size = 4096);
    let (_, out) = h.connect_with(connect5("m", true, Default::default()));
    let Packet::Connack(c) = decode5(&out[0]) else { panic!() };
    assert_eq!(c.properties.maximum_packet_size, Some(4096));
    assert_eq!(c.properties.subscription_identifiers_available, Some(true));
}

#[test]
fn mqtt_4_8_2_shared_subscription_one_delivery_per_group_round_robin_and_no_retained() {
    let mut h = Harness::new();
    let (p, _) = h.connect("p", true);
    h.publish(p, "jobs/x", b"old", QoS::AtMostOnce, 0, true);
    let a = h.connect5("a", true, 0);
    let b = h.connect5("b", true, 0);
    let (c, _) = h.connect("c311", true); // 3.1.1 clients may share too
    assert_eq!(h.subscribe5(a, "$share/g/jobs/+", options(QoS::AtLeastOnce)), [ReasonCode::GRANTED_QOS_1]);
    assert!(h.received(a).is_empty(), "no retained message on a shared subscription");
    h.subscribe5(b, "$share/g/jobs/+", options(QoS::AtLeastOnce));
    h.subscribe(c, "$share/g/jobs/+", QoS::AtMostOnce);
    let other = h.connect5("other", true, 0);
    h.subscribe5(other, "$share/h/jobs/#", options(QoS::AtMostOnce));
    for i in 0..6u16 {
        h.publish(p, "jobs/x", b"job", QoS::AtMostOnce, i + 1, false);
    }
    let (na, nb, nc) = (h.received(a).len(), h.received(b).len(), h.received(c).len());
    assert_eq!((na, nb, nc), (2, 2, 2), "round robin over the members");
    assert_eq!(h.received(other).len(), 6, "each group gets every message once");
}

#[test]
fn mqtt_4_8_2_shared_group_fails_over_when_a_member_leaves_and_goes_with_its_last() {
    let mut h = Harness::new();
    let a = h.connect5("a", true, 0);
    let b = h.connect5("b", true, 0);
    h.subscribe5(a, "$share/g/t", options(QoS::AtMostOnce));
    h.subscribe5(b, "$share/g/t", options(QoS::AtMostOnce));
    let (p, _) = h.connect("p", true);
    h.core.handle_hangup(a, None);
    for _ in 0..4 {
        h.publish(p, "t", b"x", QoS::AtMostOnce, 0, false);
    }
    assert_eq!(h.received(b).len(), 4, "all to the member left");
    h.send5(
        b,
        &Packet::Unsubscribe(crate::mqtt::Unsubscribe {
            packet_id: 3,
            filters: vec!["$share/g/t"],
            user_properties: Default::default(),
        }),
    );
    assert_eq!(h.core.shared_group_count(), 0);
    h.publish(p, "t", b"x", QoS::AtMostOnce, 0, false);
    assert_eq!(h.received(b).len(), 1, "only the UNSUBACK");
}

#[test]
fn mqtt_3_8_3_4_no_local_on_a_shared_subscription_is_protocol_error() {
    let mut h = Harness::new();
    let a = h.connect5("a", true, 0);
    h.send5(
        a,
        &Packet::Subscribe(Subscribe {
            packet_id: 9,
            filters: vec![("$share/g/t", SubscriptionOptions { no_local: true, ..options(QoS::AtMostOnce) })],
            properties: Default::default(),
        }),
    );
    assert_eq!(h.disconnected_with(a), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn mqtt_3_3_2_3_4_outgoing_topic_alias_within_the_client_maximum() {
    let mut h = Harness::new();
    let props = ConnectProperties { topic_alias_maximum: 1, ..Default::default() };
    let (s, _) = h.connect_with(connect5("s", true, props));
    h.subscribe5(s, "#", options(QoS::AtMostOnce));
    let (p, _) = h.connect("p", true);
    for topic in ["busy/topic", "busy/topic", "other", "busy/topic"] {
        h.publish(p, topic, b"x", QoS::AtMostOnce, 0, false);
    }
    let got = h.received(s);
    let seen: Vec<(&str, Option<u16>)> = got
        .iter()
        .map(|b| {
            let p = publish5(b);
            (p.topic, p.properties.get().topic_alias)
        })
        .collect();
    assert_eq!(seen, [("busy/topic", Some(1)), ("", Some(1)), ("other", None), ("", Some(1))]);
    // A client that allows none gets none (3.3.2-10).
    let s2 = h.connect5("s2", true, 0);
    h.subscribe5(s2, "#", options(QoS::AtMostOnce));
    h.publish(p, "busy/topic", b"x", QoS::AtMostOnce, 0, false);
    h.publish(p, "busy/topic", b"x", QoS::AtMostOnce, 0, false);
    assert!(h.received(s2).iter().all(|b| publish5(b).properties.get().topic_alias.is_none()));
}

/// A property block that lives for the test (a `Publish<'static>` to build).
fn leak_block(p: PublishProperties<'_>) -> PublishPropertyBlock<'static> {
    PublishPropertyBlock::new(Box::leak(p.to_block().into_boxed_slice())).unwrap()
}
