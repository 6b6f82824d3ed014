//! MQTT 3.1.1 over raw TCP, byte by byte: each test is named after the rule it checks and runs
//! its own broker.

mod common;

use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------
// CONNECT / CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_2_2_connack_bytes_exact() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&connect("exact"));
    assert_eq!(c.recv().bytes, [0x20, 0x02, 0x00, 0x00]);
    c.ping();
}

#[test]
fn mqtt_3_2_2_1_clean_session_never_session_present() {
    let b = TestBroker::start();
    for _ in 0..2 {
        let mut c = b.raw();
        c.send(&ConnectBuilder::new("clean1").clean(true).build());
        c.expect_bytes(&[0x20, 2, 0, 0]);
        c.subscribe_ok(1, "x", 1);
        c.send(&disconnect());
        c.expect_closed_silently();
    }
}

#[test]
fn mqtt_3_2_2_2_session_present_on_resume() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("persist").clean(false).build());
    // No stored session yet: session present 0.
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.subscribe_ok(1, "persist/t", 1);
    c.send(&disconnect());
    c.expect_closed_silently();

    // A QoS 1 message while offline waits in the session.
    let mut p = b.client("pub");
    p.publish1("persist/t", b"queued", 5);

    let mut c = b.raw();
    c.send(&ConnectBuilder::new("persist").clean(false).build());
    c.expect_bytes(&[0x20, 2, 1, 0]);
    let m = c.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.qos), ("persist/t", &b"queued"[..], 1));
    c.send(&puback(m.packet_id.unwrap()));
    c.send(&disconnect());
    c.expect_closed_silently();

    // Clean session 1 discards it: session present 0 again.
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("persist").clean(true).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
}

#[test]
fn mqtt_3_1_v31_mqisdp_level_3_accepted() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("old").v31().build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.subscribe_ok(3, "v31/#", 1);
    let mut p = b.raw();
    p.send(&ConnectBuilder::new("oldpub").v31().build());
    p.expect_bytes(&[0x20, 2, 0, 0]);
    p.publish1("v31/a", b"hello", 9);
    let m = c.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.qos), ("v31/a", &b"hello"[..], 1));
}

#[test]
fn mqtt_3_1_2_2_protocol_level_5_is_accepted_with_a_v5_connack() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("five").protocol(b"MQTT", 5).build());
    let p = c.recv();
    // A 5.0 CONNACK: flags, reason 0x00 Success, then the properties midge states.
    assert_eq!((p.kind(), p.body()[0], p.body()[1]), (2, 0, 0), "{p:?}");
    assert!(p.body().len() > 3, "CONNACK properties: {p:?}");
    c.ping();
    // 5.0's short DISCONNECT; the broker closes without answering.
    c.send(&[0xE0, 0]);
    assert!(c.expect_closed().is_empty());
}

#[test]
fn mqtt_3_1_2_2_protocol_level_unknown_connack_1_then_close() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("six").protocol(b"MQTT", 6).build());
    let got = c.expect_closed();
    assert_eq!(got.iter().map(|p| p.bytes.clone()).collect::<Vec<_>>(), [vec![0x20, 2, 0, 1]]);
}

#[test]
fn mqtt_3_1_2_1_bad_protocol_name_closes_without_connack() {
    let b = TestBroker::start();
    for name in [&b"MQTX"[..], b"mqtt", b"", b"MQIsdpX"] {
        let mut c = b.raw();
        c.send(&ConnectBuilder::new("badname").protocol(name, 4).build());
        c.expect_closed_silently();
    }
    b.client("still-serving").ping();
}

#[test]
fn mqtt_3_1_3_8_empty_client_id_clean_0_rejected_with_0x02() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("").clean(false).build());
    let got = c.expect_closed();
    assert_eq!(got.iter().map(|p| p.bytes.clone()).collect::<Vec<_>>(), [vec![0x20, 2, 0, 2]]);
}

#[test]
fn mqtt_3_1_3_6_empty_client_id_clean_1_assigned() {
    let b = TestBroker::start();
    let mut c1 = b.raw();
    c1.send(&ConnectBuilder::new("").clean(true).build());
    c1.expect_bytes(&[0x20, 2, 0, 0]);
    // A second anonymous client gets its own id: the first is not taken over.
    let mut c2 = b.raw();
    c2.send(&ConnectBuilder::new("").clean(true).build());
    c2.expect_bytes(&[0x20, 2, 0, 0]);
    c1.ping();
    c2.ping();
}

#[test]
fn mqtt_3_1_4_2_same_client_id_takes_over() {
    let b = TestBroker::start();
    let mut old = b.client("dup-id");
    let _new = b.client("dup-id");
    old.expect_closed_silently();
}

#[test]
fn mqtt_3_1_2_3_reserved_connect_flag_closes() {
    let b = TestBroker::start();
    let mut bytes = connect("reserved");
    // Flags byte: 2 (len) + 4 ("MQTT") + 1 (level) after the 2-byte fixed header.
    bytes[9] |= 0x01;
    let mut c = b.raw();
    c.send(&bytes);
    c.expect_closed_silently();
}

// ---------------------------------------------------------------------------------------------
// Will
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_2_8_will_published_on_abnormal_close() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "will/#", 1);
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("dying").will("will/dying", b"gone", 1, false).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.ping();
    // Drop the socket without DISCONNECT.
    drop(c);
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.qos, m.retain), ("will/dying", &b"gone"[..], 1, false));
    sub.send(&puback(m.packet_id.unwrap()));
    sub.ping();
}

#[test]
fn mqtt_3_1_2_8_will_published_on_protocol_error() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "will/#", 0);
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("violator").will("will/violator", b"bad", 0, false).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.send(&[0xF0, 0x00]);
    c.expect_closed_silently();
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("will/violator", &b"bad"[..]));
}

#[test]
fn mqtt_3_1_2_10_will_not_published_after_disconnect() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "will/#", 0);
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("polite").will("will/polite", b"gone", 0, false).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.send(&disconnect());
    // The broker closes after DISCONNECT; once it has, the will is either out or discarded.
    c.expect_closed_silently();
    let mut p = b.client("sentinel");
    p.send(&publish0("will/sentinel", b"s"));
    let m = sub.recv_publish();
    assert_eq!(m.topic, "will/sentinel", "the will was published after DISCONNECT: {m:?}");
}

#[test]
fn mqtt_3_1_2_17_will_retain_is_retained() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "will/#", 0);
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("retainer").will("will/retained", b"last words", 0, true).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.ping();
    c.wire.shutdown(Shutdown::Both).unwrap();
    drop(c);
    // A live subscriber gets it without the retain flag (3.3.1-9)...
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.retain), ("will/retained", &b"last words"[..], false));
    // ...a new subscription gets the retained copy with it (3.3.1-8).
    let mut late = b.client("late");
    late.send(&subscribe(4, &[("will/+", 0)]));
    late.expect_bytes(&[0x90, 3, 0, 4, 0]);
    let r = late.recv_publish();
    assert_eq!((r.topic.as_str(), &r.payload[..], r.retain), ("will/retained", &b"last words"[..], true));
}

// ---------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_2_24_keep_alive_exceeded_closes_and_publishes_will() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "ka/#", 0);
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("sleepy").keep_alive(1).will("ka/sleepy", b"timeout", 0, false).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    let start = Instant::now();
    c.expect_closed_within(Duration::from_secs(3));
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(1200), "closed too early: {elapsed:?} (keep alive 1 s x 1.5)");
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("ka/sleepy", &b"timeout"[..]));
}

#[test]
fn mqtt_3_1_2_24_keep_alive_reset_by_pingreq() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("pinger").keep_alive(1).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    let start = Instant::now();
    // 2.4 s of activity every 0.6 s: beyond 1.5 x keep alive, yet the connection stays.
    while start.elapsed() < Duration::from_millis(2400) {
        std::thread::sleep(Duration::from_millis(600));
        c.ping();
    }
}

#[test]
fn mqtt_connect_timeout_closes_silent_socket() {
    let b = TestBroker::start_with(|c| c.connect_timeout = Duration::from_millis(300));
    let mut c = b.raw();
    let start = Instant::now();
    c.expect_closed_within(Duration::from_secs(2));
    assert!(start.elapsed() >= Duration::from_millis(250), "closed before the timeout: {:?}", start.elapsed());
    // A prompt client is unaffected, and stays past the connect timeout once connected.
    let mut ok = b.client("prompt");
    std::thread::sleep(Duration::from_millis(500));
    ok.ping();
}

#[test]
fn mqtt_connect_timeout_closes_partial_connect() {
    let b = TestBroker::start_with(|c| c.connect_timeout = Duration::from_millis(300));
    let mut c = b.raw();
    let bytes = connect("partial");
    c.send(&bytes[..bytes.len() - 2]);
    c.expect_closed_within(Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// Pipelining and fragmentation
// ---------------------------------------------------------------------------------------------

fn pipelined_session() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut all = connect("pipe");
    all.extend(subscribe(1, &[("pipe/#", 1)]));
    all.extend(publish0("pipe/a", b"zero"));
    all.extend(publish("pipe/b", b"one", 1, false, false, 2));
    all.extend(pingreq());
    all.extend(unsubscribe(3, &["pipe/#"]));
    all.extend(publish0("pipe/c", b"not delivered"));
    all.extend(pingreq());
    let expected = vec![
        vec![0x20, 2, 0, 0],
        vec![0x90, 3, 0, 1, 1],
        publish0("pipe/a", b"zero"),
        // Order between our PUBACK and our own delivery is the broker's choice; checked apart.
    ];
    (all, expected)
}

fn check_pipelined<W: Wire>(c: &mut Client<W>, expected: &[Vec<u8>]) {
    for e in expected {
        assert_eq!(&c.recv().bytes, e);
    }
    // The rest: PUBACK 2 and the QoS 1 delivery of pipe/b (either order), PINGRESP, UNSUBACK 3,
    // PINGRESP, and nothing for pipe/c.
    let mut rest: Vec<Packet> = (0..5).map(|_| c.recv()).collect();
    let delivery = rest.iter().position(|p| p.kind() == 3).expect("delivery of pipe/b");
    let m = rest.remove(delivery).as_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.qos), ("pipe/b", &b"one"[..], 1));
    c.send(&puback(m.packet_id.unwrap()));
    let rest: Vec<Vec<u8>> = rest.into_iter().map(|p| p.bytes).collect();
    assert_eq!(rest, [vec![0x40, 2, 0, 2], vec![0xD0, 0], vec![0xB0, 2, 0, 3], vec![0xD0, 0]]);
    c.expect_silence(Duration::from_millis(100));
}

#[test]
fn mqtt_pipelined_packets_in_one_write() {
    let b = TestBroker::start();
    let (all, expected) = pipelined_session();
    let mut c = b.raw();
    c.send(&all);
    check_pipelined(&mut c, &expected);
}

#[test]
fn mqtt_packets_split_byte_by_byte() {
    let b = TestBroker::start();
    let (all, expected) = pipelined_session();
    let mut c = b.raw();
    for (i, byte) in all.iter().enumerate() {
        c.send(&[*byte]);
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    check_pipelined(&mut c, &expected);
}

#[test]
fn mqtt_large_remaining_length_split_across_writes() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("s", "split/#", 0);
    let mut p = b.client("p");
    let payload = pattern(300_000, 3);
    let bytes = publish0("split/big", &payload);
    // Split inside the remaining-length bytes, then in the topic, then in the payload.
    for piece in [&bytes[..2], &bytes[2..6], &bytes[6..1000], &bytes[1000..]] {
        p.send(piece);
        std::thread::sleep(Duration::from_millis(5));
    }
    let m = sub.recv_publish();
    assert_eq!(m.topic, "split/big");
    assert!(m.payload == payload, "payload corrupted");
}

// ---------------------------------------------------------------------------------------------
// QoS flows
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_4_3_2_qos_1_inbound_puback_exact() {
    let b = TestBroker::start();
    let mut c = b.client("q1");
    c.send(&publish("q/1", b"x", 1, false, false, 0x1234));
    c.expect_bytes(&[0x40, 0x02, 0x12, 0x34]);
}

#[test]
fn mqtt_4_3_3_qos_2_inbound_flow_exact() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("s", "q/#", 2);
    let mut c = b.client("q2");
    c.send(&publish("q/2", b"exactly", 2, false, false, 0xBEEF));
    c.expect_bytes(&[0x50, 0x02, 0xBE, 0xEF]);
    c.send(&pubrel(0xBEEF));
    c.expect_bytes(&[0x70, 0x02, 0xBE, 0xEF]);
    // Outbound QoS 2 to the subscriber: PUBLISH, PUBREC -> PUBREL 62 02 id, PUBCOMP.
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.qos, m.dup), ("q/2", &b"exactly"[..], 2, false));
    let id = m.packet_id.unwrap();
    assert_ne!(id, 0);
    sub.send(&pubrec(id));
    sub.expect_bytes(&pubrel(id));
    sub.send(&pubcomp(id));
    sub.ping();
}

#[test]
fn mqtt_4_3_2_qos_1_outbound_flow_exact() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("s", "q/#", 1);
    let mut p = b.client("p");
    p.publish1("q/one", b"payload", 77);
    let got = sub.recv();
    let id = got.as_publish().packet_id.unwrap();
    let [hi, lo] = id.to_be_bytes();
    let mut expected = vec![0x32, 2 + 5 + 2 + 7, 0, 5];
    expected.extend_from_slice(b"q/one");
    expected.extend_from_slice(&[hi, lo]);
    expected.extend_from_slice(b"payload");
    assert_eq!(got.bytes, expected);
    sub.send(&puback(id));
    sub.ping();
}

#[test]
fn mqtt_3_3_5_delivery_qos_is_min_of_publish_and_grant() {
    let b = TestBroker::start();
    let mut s0 = b.subscriber("s0", "m/#", 0);
    let mut s1 = b.subscriber("s1", "m/#", 1);
    let mut p = b.client("p");
    p.send(&publish("m/x", b"2", 2, false, false, 1));
    p.expect_bytes(&pubrec(1));
    p.send(&pubrel(1));
    p.expect_bytes(&pubcomp(1));
    assert_eq!(s0.recv_publish().qos, 0);
    let m = s1.recv_publish();
    assert_eq!(m.qos, 1);
    s1.send(&puback(m.packet_id.unwrap()));
    p.send(&publish0("m/y", b"0"));
    assert_eq!(s1.recv_publish().qos, 0);
}

#[test]
fn mqtt_4_3_3_duplicate_qos_2_publish_delivered_once() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("s", "dup/#", 2);
    let mut p = b.client("p");
    p.send(&publish("dup/t", b"once", 2, false, false, 7));
    p.expect_bytes(&pubrec(7));
    // Retransmission before PUBREL, DUP set: acknowledged again, not delivered again.
    let again = publish("dup/t", b"once", 2, false, true, 7);
    assert_eq!(again[0], 0x3C);
    p.send(&again);
    p.expect_bytes(&pubrec(7));
    p.send(&pubrel(7));
    p.expect_bytes(&pubcomp(7));
    // After the release the id is free: the same id is a new message.
    p.send(&publish("dup/t", b"new", 2, false, false, 7));
    p.expect_bytes(&pubrec(7));
    p.send(&pubrel(7));
    p.expect_bytes(&pubcomp(7));
    p.send(&publish0("dup/sentinel", b"end"));

    // Both QoS 2 deliveries may be in flight at once: answer whatever comes.
    let mut got = Vec::new();
    let mut released = Vec::new();
    loop {
        let p = sub.recv();
        match p.kind() {
            3 => {
                let m = p.as_publish();
                if m.topic == "dup/sentinel" {
                    break;
                }
                assert_eq!(m.qos, 2);
                sub.send(&pubrec(m.packet_id.unwrap()));
                got.push(m.payload);
            }
            6 => {
                assert_eq!(p.bytes[..2], [0x62, 2]);
                let id = u16::from_be_bytes([p.bytes[2], p.bytes[3]]);
                released.push(id);
                sub.send(&pubcomp(id));
            }
            _ => panic!("unexpected {p:?}"),
        }
    }
    assert_eq!(got, [b"once".to_vec(), b"new".to_vec()]);
    while released.len() < 2 {
        let p = sub.recv();
        assert_eq!(p.bytes[..2], [0x62, 2], "{p:?}");
        sub.send(&pubcomp(u16::from_be_bytes([p.bytes[2], p.bytes[3]])));
        released.push(0);
    }
    sub.ping();
}

#[test]
fn mqtt_4_3_3_pubrel_unknown_id_gets_pubcomp() {
    let b = TestBroker::start();
    let mut c = b.client("c");
    c.send(&pubrel(999));
    c.expect_bytes(&pubcomp(999));
}

#[test]
fn mqtt_4_6_qos_1_order_preserved_with_window() {
    const N: u32 = 1000;
    const WINDOW: usize = 20;
    let b = TestBroker::start();
    let mut sub = b.subscriber("ordered-sub", "order/t", 1);

    let tcp = b.tcp;
    let publisher = std::thread::spawn(move || {
        let mut p = Client::new(tcp_connect(tcp));
        p.connect_ok("ordered-pub");
        let mut batch = Vec::new();
        for i in 0..N {
            batch.extend(publish("order/t", &i.to_be_bytes(), 1, false, false, (i % 60000 + 1) as u16));
        }
        p.send(&batch);
        for i in 0..N {
            p.expect_bytes(&puback((i % 60000 + 1) as u16));
        }
    });

    // Without acknowledging, exactly the window arrives.
    let mut unacked = Vec::new();
    let mut next = 0u32;
    for _ in 0..WINDOW {
        let m = sub.recv_publish();
        assert_eq!(m.payload, next.to_be_bytes(), "out of order");
        assert_eq!(m.qos, 1);
        next += 1;
        unacked.push(m.packet_id.unwrap());
    }
    let mut ids = unacked.clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), WINDOW, "packet ids in flight must be distinct: {unacked:?}");
    sub.expect_silence(Duration::from_millis(300));
    for id in unacked {
        sub.send(&puback(id));
    }
    while next < N {
        let m = sub.recv_publish();
        assert_eq!(m.payload, next.to_be_bytes(), "out of order at {next}");
        assert!(!m.dup);
        sub.send(&puback(m.packet_id.unwrap()));
        next += 1;
    }
    publisher.join().unwrap();
    sub.expect_silence(Duration::from_millis(100));
}

// ---------------------------------------------------------------------------------------------
// Size and scale
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_one_megabyte_payload() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("big-sub", "big/#", 1);
    let payload = pattern(1 << 20, 11);
    let tcp = b.tcp;
    let sent = payload.clone();
    let publisher = std::thread::spawn(move || {
        let mut p = Client::new(tcp_connect(tcp));
        p.connect_ok("big-pub");
        p.publish1("big/one", &sent, 1);
    });
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), m.qos, m.payload.len()), ("big/one", 1, payload.len()));
    assert!(m.payload == payload, "1 MB payload corrupted");
    sub.send(&puback(m.packet_id.unwrap()));
    publisher.join().unwrap();
}

#[test]
fn mqtt_200_concurrent_connections() {
    const N: usize = 200;
    let b = TestBroker::start();
    let mut clients: Vec<Client<_>> = (0..N)
        .map(|i| {
            let mut c = b.raw();
            c.send(&connect(&format!("many-{i}")));
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.expect_bytes(&[0x20, 2, 0, 0]);
        c.send(&subscribe(1, &[(&format!("many/{i}"), 1), ("many/all", 0)]));
    }
    for c in clients.iter_mut() {
        c.expect_bytes(&[0x90, 4, 0, 1, 1, 0]);
    }
    let mut p = b.client("many-pub");
    let mut batch = Vec::new();
    for i in 0..N {
        batch.extend(publish(&format!("many/{i}"), format!("to {i}").as_bytes(), 1, false, false, (i + 1) as u16));
    }
    batch.extend(publish0("many/all", b"everyone"));
    p.send(&batch);
    for i in 0..N {
        p.expect_bytes(&puback((i + 1) as u16));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let m = c.recv_publish();
        assert_eq!((m.topic, m.payload), (format!("many/{i}"), format!("to {i}").into_bytes()));
        c.send(&puback(m.packet_id.unwrap()));
        let all = c.recv_publish();
        assert_eq!((all.topic.as_str(), &all.payload[..]), ("many/all", &b"everyone"[..]));
    }
    for c in clients.iter_mut() {
        c.ping();
    }
}

// ---------------------------------------------------------------------------------------------
// Retained messages and subscriptions
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_3_1_5_retained_message_sent_on_subscribe() {
    let b = TestBroker::start();
    let mut p = b.client("p");
    p.send(&publish("ret/a", b"kept", 1, true, false, 1));
    p.expect_bytes(&puback(1));
    let mut s = b.client("s");
    s.send(&subscribe(2, &[("ret/#", 1)]));
    s.expect_bytes(&[0x90, 3, 0, 2, 1]);
    let m = s.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.retain, m.qos), ("ret/a", &b"kept"[..], true, 1));
    s.send(&puback(m.packet_id.unwrap()));
    // 3.3.1-10/11: an empty retained payload clears it.
    p.send(&publish("ret/a", b"", 0, true, false, 0));
    p.ping();
    let mut s2 = b.client("s2");
    s2.send(&subscribe(3, &[("ret/#", 0)]));
    s2.expect_bytes(&[0x90, 3, 0, 3, 0]);
    s2.expect_silence(Duration::from_millis(150));
}

#[test]
fn mqtt_3_10_4_unsubscribe_stops_delivery() {
    let b = TestBroker::start();
    let mut s = b.subscriber("s", "uns/#", 0);
    s.send(&unsubscribe(9, &["uns/#"]));
    s.expect_bytes(&[0xB0, 2, 0, 9]);
    let mut p = b.client("p");
    p.send(&publish0("uns/x", b"x"));
    p.ping();
    s.expect_silence(Duration::from_millis(150));
}

#[test]

fn mqtt_eof_arriving_with_data_closes_and_publishes_will() {
    // The client sends CONNECT + PUBLISH and half-closes at once, so the data and the FIN arrive
    // together. The broker must notice the end of the stream (close its side, publish the will),
    // not only when a FIN arrives on its own. Repeated: the timing decides which case occurs.
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "hc/#", 0);
    for i in 0..5 {
        let mut c = b.raw();
        let mut bytes =
            ConnectBuilder::new(&format!("half-{i}")).will(&format!("hc/will-{i}"), b"gone", 0, false).build();
        bytes.extend(publish0("hc/data", b"x"));
        c.send(&bytes);
        c.wire.shutdown(Shutdown::Write).unwrap();
        assert_eq!(sub.recv_publish().topic, "hc/data");
        let got = c.expect_closed_within(Duration::from_secs(2));
        assert_eq!(got.iter().map(|p| p.bytes.clone()).collect::<Vec<_>>(), [vec![0x20, 2, 0, 0]]);
        assert_eq!(sub.recv_publish().topic, format!("hc/will-{i}"));
    }
}

#[test]
fn mqtt_slow_consumer_partial_writes_intact() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("slow", "slow/#", 0);
    let mut p = b.client("fast");
    slow_consumer_gets_everything_intact(&mut sub, &mut p);
}

// ---------------------------------------------------------------------------------------------
// Sessions and routing details
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_4_4_resume_resends_unacknowledged_with_dup() {
    let b = TestBroker::start();
    let mut s = b.raw();
    s.send(&ConnectBuilder::new("resumer").clean(false).build());
    s.expect_bytes(&[0x20, 2, 0, 0]);
    s.send(&subscribe(1, &[("r/1", 1), ("r/2", 2)]));
    s.expect_bytes(&[0x90, 4, 0, 1, 1, 2]);
    let mut p = b.client("p");
    for i in 0..3u8 {
        p.publish1("r/1", &[i], u16::from(i) + 1);
    }
    p.send(&publish("r/2", b"two", 2, false, false, 9));
    p.expect_bytes(&pubrec(9));
    p.send(&pubrel(9));
    p.expect_bytes(&pubcomp(9));
    let first: Vec<Pub> = (0..4).map(|_| s.recv_publish()).collect();
    // QoS 2: PUBREC sent, PUBREL received, PUBCOMP never sent.
    let q2 = first[3].packet_id.unwrap();
    s.send(&pubrec(q2));
    s.expect_bytes(&pubrel(q2));
    drop(s);
    p.ping();

    let mut s = b.raw();
    s.send(&ConnectBuilder::new("resumer").clean(false).build());
    s.expect_bytes(&[0x20, 2, 1, 0]);
    for (i, old) in first[..3].iter().enumerate() {
        let again = s.recv();
        assert_eq!(again.first(), 0x3A, "QoS 1 resend must have DUP set: {again:?}");
        let m = again.as_publish();
        assert_eq!((m.packet_id, &m.payload[..]), (old.packet_id, &[i as u8][..]));
    }
    s.expect_bytes(&pubrel(q2));
    for old in &first[..3] {
        s.send(&puback(old.packet_id.unwrap()));
    }
    s.send(&pubcomp(q2));
    s.ping();
    s.send(&disconnect());
    s.expect_closed_silently();
    // Everything was acknowledged: nothing is resent next time.
    let mut s = b.raw();
    s.send(&ConnectBuilder::new("resumer").clean(false).build());
    s.expect_bytes(&[0x20, 2, 1, 0]);
    s.expect_silence(Duration::from_millis(150));
}

#[test]
fn mqtt_3_3_5_overlapping_subscriptions_one_delivery_at_max_qos() {
    let b = TestBroker::start();
    let mut s = b.client("overlap");
    s.send(&subscribe(1, &[("ov/#", 0), ("ov/+", 1), ("ov/a", 0)]));
    s.expect_bytes(&[0x90, 5, 0, 1, 0, 1, 0]);
    let mut p = b.client("p");
    p.publish1("ov/a", b"once", 1);
    let m = s.recv_publish();
    assert_eq!((m.qos, &m.payload[..]), (1, &b"once"[..]));
    s.send(&puback(m.packet_id.unwrap()));
    s.expect_silence(Duration::from_millis(150));
}

#[test]
fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
    let b = TestBroker::start();
    let mut all = b.subscriber("all", "#", 0);
    let mut plus = b.subscriber("plus", "+/x", 0);
    let mut dollar = b.subscriber("dollar", "$app/#", 0);
    let mut p = b.client("p");
    p.send(&publish0("$app/x", b"d"));
    p.send(&publish0("app/x", b"n"));
    assert_eq!(dollar.recv_publish().topic, "$app/x");
    assert_eq!(all.recv_publish().topic, "app/x");
    assert_eq!(plus.recv_publish().topic, "app/x");
}

#[test]
fn mqtt_4_7_1_wildcard_matching() {
    let b = TestBroker::start();
    let mut s = b.client("wild");
    s.send(&subscribe(1, &[("sport/tennis/#", 0), ("+/+", 0), ("/finance", 0)]));
    s.expect_bytes(&[0x90, 5, 0, 1, 0, 0, 0]);
    let mut p = b.client("p");
    for t in ["sport/tennis", "sport/tennis/player1/ranking", "a/b", "/finance", "a/b/c", "sport", "a"] {
        p.send(&publish0(t, t.as_bytes()));
    }
    p.send(&publish0("x/end", b"end"));
    let mut got = Vec::new();
    loop {
        let m = s.recv_publish();
        if m.topic == "x/end" {
            break;
        }
        got.push(m.topic);
    }
    // "/finance" matches both "+/+" and "/finance": delivered once.
    assert_eq!(got, ["sport/tennis", "sport/tennis/player1/ranking", "a/b", "/finance"]);
}

#[test]
fn mqtt_3_8_4_3_resubscribe_replaces_qos_and_resends_retained() {
    let b = TestBroker::start();
    let mut p = b.client("p");
    p.send(&publish("rs/a", b"kept", 1, true, false, 1));
    p.expect_bytes(&puback(1));
    let mut s = b.client("s");
    s.send(&subscribe(1, &[("rs/#", 0)]));
    s.expect_bytes(&[0x90, 3, 0, 1, 0]);
    assert_eq!(s.recv_publish().qos, 0);
    s.send(&subscribe(2, &[("rs/#", 1)]));
    s.expect_bytes(&[0x90, 3, 0, 2, 1]);
    let r = s.recv_publish();
    assert_eq!((r.qos, r.retain), (1, true));
    s.send(&puback(r.packet_id.unwrap()));
    p.publish1("rs/b", b"new", 2);
    let m = s.recv_publish();
    assert_eq!((m.topic.as_str(), m.qos), ("rs/b", 1));
    s.send(&puback(m.packet_id.unwrap()));
    s.expect_silence(Duration::from_millis(100));
}

#[test]
fn mqtt_3_10_4_5_unsubscribe_unknown_filter_still_unsuback() {
    let b = TestBroker::start();
    let mut s = b.client("s");
    s.send(&unsubscribe(0x0102, &["never/subscribed", "a/+"]));
    s.expect_bytes(&[0xB0, 2, 1, 2]);
}

#[test]
fn mqtt_3_1_3_username_and_password_accepted_when_anonymous_allowed() {
    let b = TestBroker::start();
    let mut c = ConnectBuilder::new("user");
    c.username = Some("alice".into());
    c.password = Some(b"secret".to_vec());
    let mut cl = b.raw();
    cl.send(&c.build());
    cl.expect_bytes(&[0x20, 2, 0, 0]);
}

#[test]
fn mqtt_3_2_2_3_anonymous_refused_with_0x05_when_disallowed() {
    let b = TestBroker::start_with(|c| c.allow_anonymous = false);
    let mut cl = b.raw();
    cl.send(&connect("anon"));
    let got = cl.expect_closed();
    assert_eq!(got.iter().map(|p| p.bytes.clone()).collect::<Vec<_>>(), [vec![0x20, 2, 0, 5]]);
}

#[test]
fn mqtt_4_6_offline_queue_delivered_in_order_on_reconnect() {
    let b = TestBroker::start();
    let mut s = b.raw();
    s.send(&ConnectBuilder::new("offline").clean(false).build());
    s.expect_bytes(&[0x20, 2, 0, 0]);
    s.subscribe_ok(1, "off/t", 1);
    s.send(&disconnect());
    s.expect_closed_silently();
    let mut p = b.client("p");
    for i in 0..50u16 {
        p.publish1("off/t", &i.to_be_bytes(), i + 1);
    }
    // QoS 0 is not kept for an offline client.
    p.send(&publish0("off/t", b"q0"));
    p.ping();
    let mut s = b.raw();
    s.send(&ConnectBuilder::new("offline").clean(false).build());
    s.expect_bytes(&[0x20, 2, 1, 0]);
    for i in 0..50u16 {
        let m = s.recv_publish();
        assert_eq!(m.payload, i.to_be_bytes());
        s.send(&puback(m.packet_id.unwrap()));
    }
    s.expect_silence(Duration::from_millis(150));
}

#[test]
fn mqtt_3_1_4_2_takeover_keeps_persistent_session() {
    let b = TestBroker::start();
    let mut old = b.raw();
    old.send(&ConnectBuilder::new("moving").clean(false).build());
    old.expect_bytes(&[0x20, 2, 0, 0]);
    old.subscribe_ok(1, "mv/t", 1);
    let mut p = b.client("p");
    p.publish1("mv/t", b"unacked", 1);
    let first = old.recv_publish();
    // The same client id connects again while the first connection is open.
    let mut new = b.raw();
    new.send(&ConnectBuilder::new("moving").clean(false).build());
    new.expect_bytes(&[0x20, 2, 1, 0]);
    old.expect_closed_silently();
    let again = new.recv();
    assert_eq!(again.first() & 0x08, 0x08, "resent with DUP: {again:?}");
    assert_eq!(again.as_publish().packet_id, first.packet_id);
    new.send(&puback(first.packet_id.unwrap()));
    p.publish1("mv/t", b"next", 2);
    assert_eq!(new.recv_publish().payload, b"next");
}

#[test]
fn mqtt_3_14_v5_client_gets_disconnect_0x8b_when_the_broker_stops() {
    let b = TestBroker::start();
    let mut c = b.raw();
    c.send(&ConnectBuilder::new("five").protocol(b"MQTT", 5).build());
    assert_eq!(c.recv().kind(), 2);
    drop(b);
    let got = c.expect_closed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind(), got[0].body()[0]), (14, 0x8B), "DISCONNECT Server shutting down: {got:?}");
}
