//! Tests for the codec, named after the spec rule each one proves.
//! Test-only: included under #[cfg(test)] by the parent module.
use super::*;

const MAX: usize = usize::MAX;

fn enc(p: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_packet(p, ProtocolLevel::V311, &mut out);
    out
}

fn dec(b: &[u8]) -> Result<Option<(Packet<'_>, usize)>, DecodeError> {
    decode_packet(b, ProtocolLevel::V311, MAX)
}

fn err(b: &[u8]) -> DecodeError {
    match dec(b) {
        Err(e) => e,
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

/// Build a packet from its first byte and body, with a correct remaining length.
fn raw(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_fixed_header(&mut out, first, body.len(), body.len());
    out.extend_from_slice(body);
    out
}

fn field(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// CONNECT body: name, level, flags, keep alive 60, then `payload` verbatim.
fn connect_body(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = field(name);
    b.extend_from_slice(&[level, flags, 0, 60]);
    b.extend_from_slice(payload);
    b
}

fn connect_v311() -> Packet<'static> {
    Packet::Connect(Box::new(Connect {
        level: ProtocolLevel::V311,
        client_id: "client-1",
        clean_session: true,
        keep_alive: 30,
        will: Some(Will {
            topic: "last/will",
            payload: b"bye",
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some("user"),
        password: Some(b"p\0ss"),
        properties: Default::default(),
    }))
}

fn all_packets() -> Vec<Packet<'static>> {
    vec![
        connect_v311(),
        Packet::Connect(Box::new(Connect {
            level: ProtocolLevel::V31,
            client_id: "",
            clean_session: false,
            keep_alive: 0,
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })),
        Packet::Connect(Box::new(Connect {
            level: ProtocolLevel::V311,
            client_id: "ü",
            clean_session: false,
            keep_alive: 65535,
            will: Some(Will {
                topic: "w",
                payload: b"",
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
            }),
            username: Some(""),
            password: None,
            properties: Default::default(),
        })),
        Packet::Connack(Box::new(Connack::new(true, ConnectReturnCode::Accepted))),
        Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::NotAuthorized))),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a/b",
            packet_id: None,
            payload: b"hello",
            properties: Default::default(),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "$SYS/x",
            packet_id: Some(65535),
            payload: b"",
            properties: Default::default(),
        }),
        Packet::Puback(Ack::new(1)),
        Packet::Pubrec(Ack::new(2)),
        Packet::Pubrel(Ack::new(3)),
        Packet::Pubcomp(Ack::new(4)),
        Packet::Subscribe(Subscribe {
            packet_id: 5,
            filters: vec![
                ("a/+", QoS::AtMostOnce.into()),
                ("#", QoS::AtLeastOnce.into()),
                ("x", QoS::ExactlyOnce.into()),
            ],
            properties: Default::default(),
        }),
        Packet::Suback(Suback::new(6, vec![ReasonCode(0), ReasonCode(1), ReasonCode(2), ReasonCode(SUBACK_FAILURE)])),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 7,
            filters: vec!["a/+", "b/#"],
            user_properties: Default::default(),
        }),
        Packet::Unsuback(Unsuback::new(8)),
        Packet::Pingreq,
        Packet::Pingresp,
        Packet::Disconnect(Disconnect::NORMAL),
    ]
}

#[test]
fn round_trip_all_14_packet_types() {
    let mut kinds = std::collections::HashSet::new();
    for p in all_packets() {
        let bytes = enc(&p);
        kinds.insert(bytes[0] >> 4);
        let (q, n) = dec(&bytes).unwrap().unwrap();
        assert_eq!(q, p);
        assert_eq!(n, bytes.len());
        assert_eq!(enc(&q), bytes, "re-encoding is byte-identical");
    }
    assert_eq!(kinds.len(), 14);
}

#[test]
fn round_trip_with_trailing_next_packet() {
    let mut bytes = enc(&Packet::Puback(Ack::new(9)));
    let first_len = bytes.len();
    bytes.extend(enc(&Packet::Pingreq));
    let (p, n) = dec(&bytes).unwrap().unwrap();
    assert_eq!(p, Packet::Puback(Ack::new(9)));
    assert_eq!(n, first_len);
    assert_eq!(dec(&bytes[n..]).unwrap().unwrap(), (Packet::Pingreq, 2));
}

#[test]
fn mqtt_3_1_2_1_v31_connect_uses_mqisdp_level_3() {
    let p = all_packets().remove(1);
    let bytes = enc(&p);
    assert_eq!(&bytes[2..11], b"\x00\x06MQIsdp\x03");
    let bytes = enc(&connect_v311());
    assert_eq!(&bytes[2..9], b"\x00\x04MQTT\x04");
}

#[test]
fn mqtt_2_2_3_remaining_length_encoding_boundaries() {
    for (len, n) in [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_151, 3)] {
        let mut out = Vec::new();
        put_fixed_header(&mut out, 0x30, len, 0);
        assert_eq!(out.len(), 1 + n, "length {len}");
        let h = fixed_header(&out, ProtocolLevel::V311, MAX).unwrap().unwrap();
        assert_eq!((h.header_len, h.remaining_len), (1 + n, len));
    }
    let mut out = Vec::new();
    put_fixed_header(&mut out, 0x30, 268_435_455, 0);
    assert_eq!(out, [0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
    let h = fixed_header(&out, ProtocolLevel::V311, MAX).unwrap().unwrap();
    assert_eq!(h.remaining_len, 268_435_455);
    // Non-minimal encodings are accepted by 3.1.1.
    let h = fixed_header(&[0xC0, 0x80, 0x00], ProtocolLevel::V311, MAX).unwrap().unwrap();
    assert_eq!((h.header_len, h.remaining_len), (3, 0));
}

#[test]
fn mqtt_2_2_3_remaining_length_over_4_bytes_rejected() {
    let e = fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], ProtocolLevel::V311, MAX);
    assert_eq!(e, Err(DecodeError::MalformedRemainingLength));
    // Known as soon as the 4th length byte arrives with its continuation bit.
    let e = fixed_header(&[0x30, 0x80, 0x80, 0x80, 0x80], ProtocolLevel::V311, MAX);
    assert_eq!(e, Err(DecodeError::MalformedRemainingLength));
    assert_eq!(fixed_header(&[0x30, 0x80, 0x80, 0x80], ProtocolLevel::V311, MAX), Ok(None));
}

#[test]
fn max_packet_size_rejected_from_header_alone() {
    // 2 header bytes + 200 = 202 > 100, with none of the body present.
    let e = fixed_header(&[0x30, 0xC8, 0x01], ProtocolLevel::V311, 100);
    assert_eq!(e, Err(DecodeError::PacketTooLarge { size: 203, max: 100 }));
    let e = decode_packet(&[0x30, 0xC8, 0x01], ProtocolLevel::V311, 100);
    assert_eq!(e, Err(DecodeError::PacketTooLarge { size: 203, max: 100 }));
    // Exactly at the limit is fine.
    let bytes = enc(&Packet::Puback(Ack::new(1)));
    assert!(decode_packet(&bytes, ProtocolLevel::V311, 4).unwrap().is_some());
    let e = decode_packet(&bytes, ProtocolLevel::V311, 3);
    assert_eq!(e, Err(DecodeError::PacketTooLarge { size: 4, max: 3 }));
}

#[test]
fn mqtt_2_2_reserved_packet_types_rejected() {
    assert_eq!(err(&[0x00, 0x00]), DecodeError::ReservedPacketType(0));
    assert_eq!(err(&[0xF0, 0x00]), DecodeError::ReservedPacketType(15));
    assert_eq!(fixed_header(&[0xF0], ProtocolLevel::V311, MAX), Err(DecodeError::ReservedPacketType(15)));
}

#[test]
fn mqtt_2_2_2_1_fixed_header_flags_enforced() {
    for t in [PUBREL, SUBSCRIBE, UNSUBSCRIBE] {
        for flags in [0u8, 1, 3, 0b1010] {
            let e = fixed_header(&[t << 4 | flags], ProtocolLevel::V311, MAX);
            assert_eq!(e, Err(DecodeError::InvalidHeaderFlags { packet_type: t, flags }));
        }
    }
    for t in [CONNECT, CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGREQ, PINGRESP] {
        let e = fixed_header(&[t << 4 | 0b0010], ProtocolLevel::V311, MAX);
        assert_eq!(e, Err(DecodeError::InvalidHeaderFlags { packet_type: t, flags: 2 }));
    }
    assert_eq!(err(&[0xE1, 0x00]), DecodeError::InvalidHeaderFlags { packet_type: DISCONNECT, flags: 1 });
}

#[test]
fn mqtt_3_3_1_4_publish_qos_3_rejected() {
    assert_eq!(err(&[0x36, 0x00]), DecodeError::InvalidQoS);
}

#[test]
fn mqtt_3_3_1_2_dup_with_qos_0_rejected() {
    let e = err(&raw(0x38, &field(b"a")));
    assert_eq!(e, DecodeError::InvalidHeaderFlags { packet_type: PUBLISH, flags: 0b1000 });
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level() {
    // Level 5 is MQTT 5.0 (codec_v5_tests.rs); 6 does not exist.
    for (name, level) in [(&b"MQTT"[..], 6u8), (b"MQTT", 3), (b"MQIsdp", 4), (b"MQIsdp", 5), (b"MQTT", 0)] {
        let e = err(&raw(0x10, &connect_body(name, level, 0x02, &field(b"c"))));
        assert_eq!(e, DecodeError::UnsupportedProtocolLevel(level));
    }
}

#[test]
fn mqtt_3_1_2_1_invalid_protocol_name() {
    for name in [&b"MQTTX"[..], b"mqtt", b"", b"\xff\xfe"] {
        let e = err(&raw(0x10, &connect_body(name, 4, 0x02, &field(b"c"))));
        assert_eq!(e, DecodeError::InvalidProtocolName);
    }
}

#[test]
fn mqtt_3_1_2_3_reserved_connect_flag_rejected() {
    let e = err(&raw(0x10, &connect_body(b"MQTT", 4, 0x03, &field(b"c"))));
    assert_eq!(e, DecodeError::InvalidConnectFlags);
}

#[test]
fn mqtt_3_1_2_13_will_qos_and_retain_need_will_flag() {
    for flags in [0x08, 0x10, 0x20, 0x22] {
        let e = err(&raw(0x10, &connect_body(b"MQTT", 4, flags, &field(b"c"))));
        assert_eq!(e, DecodeError::InvalidConnectFlags, "flags {flags:#x}");
    }
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_rejected() {
    let mut payload = field(b"c");
    payload.extend(field(b"t"));
    payload.extend(field(b"m"));
    let e = err(&raw(0x10, &connect_body(b"MQTT", 4, 0x1C, &payload)));
    assert_eq!(e, DecodeError::InvalidConnectFlags);
}

#[test]
fn mqtt_3_1_2_22_password_without_username_rejected() {
    let mut payload = field(b"c");
    payload.extend(field(b"pw"));
    for (name, level) in [(&b"MQTT"[..], 4u8), (b"MQIsdp", 3)] {
        let e = err(&raw(0x10, &connect_body(name, level, 0x40, &payload)));
        assert_eq!(e, DecodeError::PasswordWithoutUsername);
    }
}

#[test]
fn mqtt_3_1_3_6_empty_client_id_decodes() {
    let bytes = raw(0x10, &connect_body(b"MQTT", 4, 0x02, &field(b"")));
    let (p, _) = dec(&bytes).unwrap().unwrap();
    match p {
        Packet::Connect(c) => assert_eq!(c.client_id, ""),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mqtt_3_1_3_11_will_topic_must_be_valid_name() {
    for topic in [&b""[..], b"a/+", b"#"] {
        let mut payload = field(b"c");
        payload.extend(field(topic));
        payload.extend(field(b"m"));
        let e = err(&raw(0x10, &connect_body(b"MQTT", 4, 0x06, &payload)));
        assert_eq!(e, DecodeError::InvalidTopicName);
    }
}

#[test]
fn mqtt_1_5_3_invalid_utf8_and_null_rejected() {
    for s in [&b"\xff"[..], b"a\0b", b"\xed\xa0\x80", b"\xc0\x80"] {
        let e = err(&raw(0x10, &connect_body(b"MQTT", 4, 0x02, &field(s))));
        assert_eq!(e, DecodeError::InvalidUtf8, "client id {s:?}");
        assert_eq!(err(&raw(0x30, &field(s))), DecodeError::InvalidUtf8, "topic {s:?}");
        let mut body = vec![0, 1];
        body.extend(field(s));
        body.push(0);
        assert_eq!(err(&raw(0x82, &body)), DecodeError::InvalidUtf8, "filter {s:?}");
    }
    let mut payload = field(b"c");
    payload.extend(field(b"\xff"));
    let e = err(&raw(0x10, &connect_body(b"MQTT", 4, 0x82, &payload)));
    assert_eq!(e, DecodeError::InvalidUtf8, "user name");
}

#[test]
fn connect_fields_beyond_remaining_length_truncated() {
    let full = enc(&connect_v311());
    // Shrink the remaining length (one byte here) so every field boundary is cut by the body end.
    for cut in 1..full.len() - 2 {
        let body = &full[2..2 + cut];
        let e = err(&raw(0x10, body));
        assert!(
            matches!(e, DecodeError::Truncated | DecodeError::InvalidProtocolName | DecodeError::InvalidUtf8),
            "cut {cut}: {e:?}"
        );
    }
    let e = err(&raw(0x10, &full[2..full.len() - 1]));
    assert_eq!(e, DecodeError::Truncated);
}

#[test]
fn connect_trailing_bytes_rejected() {
    let mut body = enc(&connect_v311())[2..].to_vec();
    body.push(0);
    assert_eq!(err(&raw(0x10, &body)), DecodeError::TrailingBytes);
}

#[test]
fn mqtt_3_3_2_2_publish_topic_name_rules() {
    for t in [&b""[..], b"a/+", b"a/#", b"+"] {
        assert_eq!(err(&raw(0x30, &field(t))), DecodeError::InvalidTopicName);
    }
    assert_eq!(err(&[0x30, 0x01, 0x00]), DecodeError::Truncated);
}

#[test]
fn mqtt_2_3_1_1_publish_packet_id_rules() {
    let mut body = field(b"t");
    body.extend([0, 0]);
    assert_eq!(err(&raw(0x32, &body)), DecodeError::ZeroPacketId);
    assert_eq!(err(&raw(0x34, &field(b"t"))), DecodeError::Truncated);
    // QoS 0: the two bytes are payload, not an id.
    let bytes = raw(0x30, &body);
    let (p, _) = dec(&bytes).unwrap().unwrap();
    match p {
        Packet::Publish(p) => assert_eq!((p.packet_id, p.payload), (None, &[0u8, 0][..])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mqtt_3_8_3_subscribe_rules() {
    let sub = |id: [u8; 2], rest: &[u8]| {
        let mut b = id.to_vec();
        b.extend_from_slice(rest);
        raw(0x82, &b)
    };
    let mut ok = field(b"a/#");
    ok.push(1);
    assert_eq!(err(&sub([0, 0], &ok)), DecodeError::ZeroPacketId);
    assert_eq!(err(&sub([0, 1], &[])), DecodeError::NoTopicFilters);
    for f in [&b""[..], b"a#", b"a/#/b", b"a+"] {
        let mut b = field(f);
        b.push(0);
        assert_eq!(err(&sub([0, 1], &b)), DecodeError::InvalidTopicFilter);
    }
    for q in [3u8, 0x04, 0x80, 0xFC | 1] {
        let mut b = field(b"a");
        b.push(q);
        assert_eq!(err(&sub([0, 1], &b)), DecodeError::InvalidQoS, "qos byte {q:#x}");
    }
    // Filter without its QoS byte.
    assert_eq!(err(&sub([0, 1], &field(b"a"))), DecodeError::Truncated);
    assert_eq!(err(&raw(0x82, &[0])), DecodeError::Truncated);
}

#[test]
fn mqtt_3_10_3_unsubscribe_rules() {
    assert_eq!(err(&raw(0xA2, &[0, 1])), DecodeError::NoTopicFilters);
    let mut b = vec![0, 0];
    b.extend(field(b"a"));
    assert_eq!(err(&raw(0xA2, &b)), DecodeError::ZeroPacketId);
    let mut b = vec![0, 1];
    b.extend(field(b"a/#/b"));
    assert_eq!(err(&raw(0xA2, &b)), DecodeError::InvalidTopicFilter);
    assert_eq!(err(&raw(0xA2, &[0, 1, 0, 5, b'a'])), DecodeError::Truncated);
}

#[test]
fn mqtt_3_4_ack_packets_need_exactly_a_nonzero_id() {
    for first in [0x40, 0x50, 0x62, 0x70, 0xB0] {
        assert_eq!(err(&raw(first, &[0, 0])), DecodeError::ZeroPacketId);
        assert_eq!(err(&raw(first, &[0])), DecodeError::Truncated);
        assert_eq!(err(&raw(first, &[])), DecodeError::Truncated);
        assert_eq!(err(&raw(first, &[0, 1, 0])), DecodeError::TrailingBytes);
    }
}

#[test]
fn mqtt_3_12_pingreq_pingresp_disconnect_have_no_body() {
    for first in [0xC0, 0xD0, 0xE0] {
        assert_eq!(err(&raw(first, &[0])), DecodeError::TrailingBytes);
    }
}

#[test]
fn mqtt_3_2_connack_rules() {
    assert_eq!(err(&raw(0x20, &[0])), DecodeError::Truncated);
    assert_eq!(err(&raw(0x20, &[0, 0, 0])), DecodeError::TrailingBytes);
    assert_eq!(err(&raw(0x20, &[2, 0])), DecodeError::InvalidConnectFlags);
    assert_eq!(err(&raw(0x20, &[0, 6])), DecodeError::InvalidConnectFlags);
}

#[test]
fn mqtt_3_9_3_suback_return_codes() {
    assert_eq!(err(&raw(0x90, &[0, 1, 3])), DecodeError::InvalidQoS);
    assert_eq!(err(&raw(0x90, &[0, 1, 0x81])), DecodeError::InvalidQoS);
    assert_eq!(err(&raw(0x90, &[0, 1])), DecodeError::NoTopicFilters);
    assert_eq!(err(&raw(0x90, &[0, 0, 0])), DecodeError::ZeroPacketId);
}

#[test]
fn partial_input_at_every_split_point_is_incomplete() {
    let mut big = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "big/topic",
        packet_id: Some(77),
        payload: &[],
        properties: Default::default(),
    };
    let payload = vec![0xAB; 300];
    big.payload = &payload;
    let mut packets = all_packets();
    packets.push(Packet::Publish(big));
    for p in &packets {
        let bytes = enc(p);
        for split in 0..bytes.len() {
            assert_eq!(dec(&bytes[..split]), Ok(None), "{p:?} split {split}");
        }
        assert!(dec(&bytes).unwrap().is_some());
    }
}

#[test]
fn one_byte_at_a_time_feed() {
    let packets = all_packets();
    let mut stream = Vec::new();
    for p in &packets {
        stream.extend(enc(p));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut got = 0;
    for &b in &stream {
        buf.push(b);
        let consumed = match dec(&buf).unwrap() {
            Some((p, n)) => {
                assert_eq!(p, packets[got]);
                got += 1;
                n
            }
            None => 0,
        };
        buf.drain(..consumed);
    }
    assert_eq!(got, packets.len());
    assert!(buf.is_empty());
}

#[test]
fn encode_publish_header_then_payload_equals_encode_packet() {
    for (qos, id) in [(QoS::AtMostOnce, None), (QoS::AtLeastOnce, Some(1)), (QoS::ExactlyOnce, Some(2))] {
        for len in [0usize, 1, 120, 200, 20_000] {
            let payload = vec![7u8; len];
            let p = Packet::Publish(Publish {
                dup: qos != QoS::AtMostOnce,
                qos,
                retain: true,
                topic: "t/o/p",
                packet_id: id,
                payload: &payload,
                properties: Default::default(),
            });
            let mut out = Vec::new();
            encode_publish_header(
                "t/o/p",
                qos,
                true,
                qos != QoS::AtMostOnce,
                id,
                len,
                ProtocolLevel::V31,
                None,
                &mut out,
            );
            out.extend_from_slice(&payload);
            assert_eq!(out, enc(&p));
        }
    }
}

#[test]
fn encode_appends_without_clobbering() {
    let mut out = vec![1, 2, 3];
    encode_packet(&Packet::Pingresp, ProtocolLevel::V311, &mut out);
    encode_packet(&Packet::Puback(Ack::new(0x1234)), ProtocolLevel::V311, &mut out);
    assert_eq!(out, [1, 2, 3, 0xD0, 0, 0x40, 2, 0x12, 0x34]);
}

#[test]
fn encode_oversized_inputs_do_not_panic() {
    let long = "x".repeat(70_000);
    let p = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(&long, QoS::AtMostOnce.into())],
        properties: Default::default(),
    });
    let bytes = enc(&p);
    // The filter is cut to 65535 bytes and the frame stays consistent.
    let (q, _) = dec(&bytes).unwrap().unwrap();
    match q {
        Packet::Subscribe(s) => assert_eq!(s.filters[0].0.len(), 65535),
        other => panic!("{other:?}"),
    }
    let mut out = Vec::new();
    encode_publish_header("t", QoS::AtMostOnce, false, false, None, usize::MAX, ProtocolLevel::V311, None, &mut out);
    assert_eq!(out[..5], [0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let seeds: Vec<Vec<u8>> = all_packets().iter().map(enc).collect();
    let mut buf = Vec::new();
    for i in 0..200_000u32 {
        buf.clear();
        if i % 2 == 0 {
            // Pure noise, often with a plausible first byte and short length.
            let len = (rng.next() % 40) as usize;
            buf.extend((0..len).map(|_| rng.next() as u8));
            if let Some(b) = buf.get_mut(1) {
                *b &= 0x3F;
            }
        } else {
            // A valid packet with a few bytes flipped, truncated or extended.
            let seed = &seeds[(rng.next() % seeds.len() as u64) as usize];
            buf.extend_from_slice(seed);
            for _ in 0..(rng.next() % 4) {
                let at = (rng.next() % buf.len() as u64) as usize;
                buf[at] = rng.next() as u8;
            }
            match rng.next() % 3 {
                0 => buf.truncate((rng.next() % (buf.len() as u64 + 1)) as usize),
                1 => buf.push(rng.next() as u8),
                _ => {}
            }
        }
        let max = if i % 5 == 0 { 16 } else { MAX };
        for level in [ProtocolLevel::V31, ProtocolLevel::V311, ProtocolLevel::V5] {
            let _ = fixed_header(&buf, level, max);
            if let Ok(Some((p, n))) = decode_packet(&buf, level, max) {
                assert!(n <= buf.len());
                // Whatever decodes must encode back to the same packet at its level.
                let mut again = Vec::new();
                encode_packet(&p, level, &mut again);
                assert_eq!(decode_packet(&again, level, MAX).unwrap().unwrap().0, p);
            }
        }
    }
}
