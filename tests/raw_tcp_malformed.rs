//! MQTT 3.1.1 over raw TCP: malformed input and protocol violations. Each case closes only the
//! offending connection (no answer) while the broker keeps routing for everyone else.

mod common;

use std::time::Duration;

use common::*;

// ---------------------------------------------------------------------------------------------
// Malformed input closes only that connection
// ---------------------------------------------------------------------------------------------

/// Send `bad` on a fresh connection (after a good CONNECT when `connected`), expect it closed
/// without an answer, and check the broker still routes for a subscriber connected before.
fn malformed_closes_only_that_connection(connected: bool, bad: &[u8]) {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "ok/#", 0);
    let mut c = b.raw();
    if connected {
        c.connect_ok("offender");
    }
    c.send_lenient(bad);
    c.expect_closed_silently();
    // Others are unaffected, old connections and new ones.
    let mut p = b.client("after");
    p.send(&publish0("ok/after", b"still here"));
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("ok/after", &b"still here"[..]));
    sub.ping();
}

#[test]
fn mqtt_1_5_5_remaining_length_five_bytes_closes() {
    malformed_closes_only_that_connection(true, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00]);
}

#[test]
fn mqtt_1_5_5_remaining_length_five_bytes_before_connect_closes() {
    malformed_closes_only_that_connection(false, &[0x10, 0x80, 0x80, 0x80, 0x80, 0x01]);
}

#[test]
fn mqtt_2_2_1_reserved_packet_type_0_closes() {
    malformed_closes_only_that_connection(true, &[0x00, 0x00]);
}

#[test]
fn mqtt_2_2_1_reserved_packet_type_15_closes() {
    malformed_closes_only_that_connection(true, &[0xF0, 0x00]);
}

#[test]
fn mqtt_3_8_1_1_subscribe_flags_0_closes() {
    let mut bad = subscribe(1, &[("ok/#", 0)]);
    bad[0] = 0x80;
    malformed_closes_only_that_connection(true, &bad);
}

#[test]
fn mqtt_3_6_1_1_pubrel_flags_0_closes() {
    malformed_closes_only_that_connection(true, &[0x60, 0x02, 0x00, 0x01]);
}

#[test]
fn mqtt_2_2_2_pingreq_flags_nonzero_closes() {
    malformed_closes_only_that_connection(true, &[0xC1, 0x00]);
}

#[test]
fn mqtt_3_3_1_4_publish_qos_3_closes() {
    let mut bad = publish("ok/q3", b"x", 2, false, false, 1);
    bad[0] = 0x36;
    malformed_closes_only_that_connection(true, &bad);
}

#[test]
fn mqtt_3_3_1_2_publish_qos_0_with_dup_closes() {
    let bad = publish("ok/dup", b"x", 0, false, true, 0);
    assert_eq!(bad[0], 0x38);
    malformed_closes_only_that_connection(true, &bad);
}

#[test]
fn mqtt_3_3_2_2_publish_topic_with_plus_wildcard_closes() {
    malformed_closes_only_that_connection(true, &publish0("ok/+", b"x"));
}

#[test]
fn mqtt_3_3_2_2_publish_topic_with_hash_wildcard_closes() {
    malformed_closes_only_that_connection(true, &publish0("ok/#", b"x"));
}

#[test]
fn mqtt_4_7_3_1_publish_empty_topic_closes() {
    malformed_closes_only_that_connection(true, &publish0("", b"x"));
}

#[test]
fn mqtt_1_5_3_1_publish_invalid_utf8_topic_closes() {
    malformed_closes_only_that_connection(true, &publish_raw_topic(b"ok/\xFF\xFE", b"x", 0, false, false, 0));
}

#[test]
fn mqtt_1_5_3_1_publish_overlong_utf8_topic_closes() {
    malformed_closes_only_that_connection(true, &publish_raw_topic(b"ok/\xC0\xAF", b"x", 0, false, false, 0));
}

#[test]
fn mqtt_1_5_3_1_publish_surrogate_utf8_topic_closes() {
    malformed_closes_only_that_connection(true, &publish_raw_topic(b"ok/\xED\xA0\x80", b"x", 0, false, false, 0));
}

#[test]
fn mqtt_1_5_3_2_publish_topic_with_nul_closes() {
    malformed_closes_only_that_connection(true, &publish_raw_topic(b"ok/a\x00b", b"x", 0, false, false, 0));
}

#[test]
fn mqtt_1_5_3_2_subscribe_filter_with_nul_closes() {
    let mut body = vec![0, 1];
    body.extend(field(b"ok/\x00"));
    body.push(0);
    malformed_closes_only_that_connection(true, &packet(0x82, &body));
}

#[test]
fn mqtt_2_3_1_1_publish_qos_1_packet_id_0_closes() {
    malformed_closes_only_that_connection(true, &publish("ok/id0", b"x", 1, false, false, 0));
}

#[test]
fn mqtt_2_3_1_1_subscribe_packet_id_0_closes() {
    malformed_closes_only_that_connection(true, &subscribe(0, &[("ok/#", 0)]));
}

#[test]
fn mqtt_3_8_3_3_subscribe_without_filters_closes() {
    malformed_closes_only_that_connection(true, &[0x82, 0x02, 0x00, 0x01]);
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters_closes() {
    malformed_closes_only_that_connection(true, &[0xA2, 0x02, 0x00, 0x01]);
}

#[test]
fn mqtt_3_8_3_4_subscribe_qos_3_closes() {
    malformed_closes_only_that_connection(true, &subscribe(1, &[("ok/#", 3)]));
}

#[test]
fn mqtt_4_7_1_2_subscribe_invalid_filter_closes() {
    malformed_closes_only_that_connection(true, &subscribe(1, &[("ok/#/x", 0)]));
}

#[test]
fn mqtt_3_1_0_2_second_connect_closes() {
    malformed_closes_only_that_connection(true, &connect("offender"));
}

#[test]
fn mqtt_3_1_0_1_first_packet_not_connect_closes() {
    malformed_closes_only_that_connection(false, &pingreq());
}

#[test]
fn mqtt_3_1_0_1_first_packet_publish_closes() {
    malformed_closes_only_that_connection(false, &publish0("ok/early", b"nope"));
}

#[test]
fn mqtt_3_1_0_1_first_packet_subscribe_closes() {
    malformed_closes_only_that_connection(false, &subscribe(1, &[("#", 0)]));
}

#[test]
fn mqtt_server_only_packet_from_client_closes() {
    // CONNACK from a client.
    malformed_closes_only_that_connection(true, &[0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn mqtt_garbage_bytes_before_connect_closes() {
    malformed_closes_only_that_connection(false, b"\xDE\xAD\xBE\xEF garbage garbage garbage");
}

#[test]
fn mqtt_http_request_on_mqtt_port_closes() {
    malformed_closes_only_that_connection(false, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
}

#[test]
fn mqtt_garbage_bytes_after_connect_closes() {
    malformed_closes_only_that_connection(true, &pattern(64, 7).iter().map(|b| b | 0xF0).collect::<Vec<_>>());
}

#[test]
fn mqtt_3_1_3_connect_trailing_bytes_closes() {
    let mut body = connect("trail")[2..].to_vec();
    body.extend_from_slice(b"xx");
    malformed_closes_only_that_connection(false, &packet(0x10, &body));
}

#[test]
fn mqtt_3_1_3_connect_truncated_payload_closes() {
    // Remaining length says 12: the variable header, and a client id field that is cut short.
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[4, 2, 0, 0]);
    body.extend_from_slice(&[0, 10, b'a']);
    malformed_closes_only_that_connection(false, &packet(0x10, &body));
}

#[test]
fn mqtt_3_1_2_22_password_without_username_closes() {
    let mut c = ConnectBuilder::new("pw");
    c.password = Some(b"secret".to_vec());
    malformed_closes_only_that_connection(false, &c.build());
}

#[test]
fn mqtt_max_packet_size_closes_before_body_is_sent() {
    let b = TestBroker::start_with(|c| c.max_packet_size = 1024);
    let mut sub = b.subscriber("watcher", "ok/#", 0);
    // A packet just under the limit passes.
    // 1 + 2 (fixed header) + 2 + 7 (topic) + 1012 (payload) = 1024 bytes exactly.
    let fits = publish0("ok/fits", &[b'f'; 1012]);
    assert_eq!(fits.len(), 1024);
    let mut p = b.client("pub");
    p.send(&fits);
    assert_eq!(sub.recv_publish().payload.len(), 1012);
    // Header announcing 2000 bytes: closed before any of the body is sent.
    let mut c = b.client("big");
    let mut header = vec![0x30];
    header.extend(remaining_length(2000));
    c.send(&header);
    c.expect_closed_within(Duration::from_secs(2));
    assert!(c.buf.is_empty());
    // The broker still serves.
    p.send(&publish0("ok/after", b"1"));
    assert_eq!(sub.recv_publish().topic, "ok/after");
}

#[test]
fn mqtt_max_packet_size_connect_too_big_closes() {
    let b = TestBroker::start_with(|c| c.max_packet_size = 1024);
    let mut c = b.raw();
    c.send(&[0x10, 0xD0, 0x0F]);
    c.expect_closed_within(Duration::from_secs(2));
    b.client("fine").ping();
}

#[test]
fn mqtt_3_1_2_9_will_topic_with_wildcard_closes() {
    malformed_closes_only_that_connection(false, &ConnectBuilder::new("w").will("ok/#", b"x", 0, false).build());
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_closes() {
    let mut bytes = ConnectBuilder::new("w").will("ok/w", b"x", 0, false).build();
    bytes[9] |= 0x18;
    malformed_closes_only_that_connection(false, &bytes);
}
