//! MQTT 5.0 packets (chapter 3): round trips of every packet, the layout rules, and decoding
//! that never panics on damaged 5.0 input. Named after the statement each test proves.
use super::*;

const MAX: usize = usize::MAX;
const V5: ProtocolLevel = ProtocolLevel::V5;

/// Two user properties, the second with an empty value, as a block the structs borrow.
const USER: &[u8] = &[0x26, 0, 1, b'k', 0, 1, b'v', 0x26, 0, 2, b'k', b'2', 0, 0];
const SUB_IDS: &[u8] = &[0x0B, 0x01, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F];

fn user() -> UserProperties<'static> {
    UserProperties::from_block(USER).unwrap()
}

fn enc(p: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_packet(p, V5, &mut out);
    out
}

fn dec(b: &[u8]) -> Result<Option<(Packet<'_>, usize)>, DecodeError> {
    decode_packet(b, V5, MAX)
}

fn err(b: &[u8]) -> DecodeError {
    match dec(b) {
        Err(e) => e,
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

/// A packet from its first byte and body (leaked: decoded packets borrow from it; tests only).
fn raw(first: u8, body: &[u8]) -> &'static [u8] {
    let mut out = Vec::new();
    put_fixed_header(&mut out, first, body.len(), body.len());
    out.extend_from_slice(body);
    Box::leak(out.into_boxed_slice())
}

fn field(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn connect_full() -> Connect<'static> {
    Connect {
        level: V5,
        client_id: "v5-client",
        clean_session: true,
        keep_alive: 30,
        will: Some(Will {
            topic: "last/will",
            payload: b"bye",
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: 10,
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(3600),
                content_type: Some("text/plain"),
                response_topic: Some("resp/onse"),
                correlation_data: Some(b"\x00corr"),
                user_properties: user(),
            },
        }),
        username: None,
        password: Some(b"secret"),
        properties: ConnectProperties {
            session_expiry_interval: 120,
            receive_maximum: Some(10),
            maximum_packet_size: Some(65536),
            topic_alias_maximum: 5,
            request_response_information: true,
            request_problem_information: false,
            authentication_method: Some("SCRAM-SHA-1"),
            authentication_data: Some(b"client-first"),
            user_properties: user(),
        },
    }
}

fn publish(topic: &'static str, properties: PublishProperties<'static>) -> Publish<'static> {
    let properties = PublishPropertyBlock::new(Box::leak(properties.to_block().into_boxed_slice())).unwrap();
    Publish { dup: false, qos: QoS::ExactlyOnce, retain: true, topic, packet_id: Some(9), payload: b"data", properties }
}

fn reason_props() -> AckProperties<'static> {
    AckProperties { reason_string: Some("because"), user_properties: user() }
}

fn all_v5_packets() -> Vec<Packet<'static>> {
    let rich_publish = PublishProperties {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(7),
        topic_alias: Some(3),
        response_topic: Some("r/t"),
        correlation_data: Some(b"c"),
        subscription_identifiers: SubscriptionIdentifiers::from_block(SUB_IDS).unwrap(),
        content_type: Some("application/json"),
        user_properties: user(),
    };
    let alias_only = PublishProperties { topic_alias: Some(1), ..Default::default() };
    vec![
        Packet::Connect(Box::new(connect_full())),
        Packet::Connect(Box::new(Connect {
            level: V5,
            client_id: "",
            clean_session: false,
            keep_alive: 0,
            will: None,
            username: Some("u"),
            password: None,
            properties: ConnectProperties::default(),
        })),
        Packet::Connack(Box::new(Connack::new(true, ReasonCode::SUCCESS))),
        Packet::Connack(Box::new(Connack {
            session_present: false,
            reason: ReasonCode::SUCCESS,
            properties: ConnackProperties {
                session_expiry_interval: Some(60),
                receive_maximum: Some(100),
                maximum_qos: Some(1),
                retain_available: Some(false),
                maximum_packet_size: Some(1 << 20),
                assigned_client_identifier: Some("auto-1"),
                topic_alias_maximum: Some(16),
                reason_string: Some("welcome"),
                wildcard_subscription_available: Some(true),
                subscription_identifiers_available: Some(true),
                shared_subscription_available: Some(false),
                server_keep_alive: Some(45),
                response_information: Some("resp/"),
                server_reference: Some("other:1883"),
                authentication_method: Some("SCRAM-SHA-1"),
                authentication_data: Some(b"server-final"),
                user_properties: user(),
            },
        })),
        Packet::Connack(Box::new(Connack::new(false, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION))),
        Packet::Publish(publish("a/b", PublishProperties::default())),
        Packet::Publish(publish("a/b", rich_publish)),
        Packet::Publish(publish("", alias_only)),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "q0",
            packet_id: None,
            payload: b"",
            properties: PublishPropertyBlock::EMPTY,
        }),
        Packet::Puback(Ack::new(1)),
        Packet::Puback(Ack {
            packet_id: 2,
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: AckProperties::EMPTY,
        }),
        Packet::Pubrec(Ack { packet_id: 3, reason: ReasonCode::QUOTA_EXCEEDED, properties: reason_props() }),
        Packet::Pubrel(Ack {
            packet_id: 4,
            reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: AckProperties::EMPTY,
        }),
        Packet::Pubcomp(Ack { packet_id: 5, reason: ReasonCode::SUCCESS, properties: reason_props() }),
        Packet::Subscribe(Subscribe {
            packet_id: 6,
            filters: vec![
                ("a/+", SubscriptionOptions::qos(QoS::AtMostOnce)),
                (
                    "b/#",
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                ),
                (
                    "$share/g/c",
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                ),
            ],
            properties: SubscribeProperties { subscription_identifier: Some(268_435_455), user_properties: user() },
        }),
        Packet::Suback(Suback {
            packet_id: 6,
            reason_codes: vec![ReasonCode::GRANTED_QOS_0, ReasonCode::GRANTED_QOS_2, ReasonCode::NOT_AUTHORIZED],
            properties: reason_props(),
        }),
        Packet::Suback(Suback::new(7, vec![ReasonCode::GRANTED_QOS_1])),
        Packet::Unsubscribe(Unsubscribe { packet_id: 8, filters: vec!["a/+", "b"], user_properties: user() }),
        Packet::Unsubscribe(Unsubscribe { packet_id: 8, filters: vec!["x"], user_properties: UserProperties::EMPTY }),
        Packet::Unsuback(Unsuback {
            packet_id: 8,
            reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: reason_props(),
        }),
        Packet::Unsuback(Unsuback {
            packet_id: 9,
            reason_codes: vec![ReasonCode::TOPIC_FILTER_INVALID],
            properties: AckProperties::EMPTY,
        }),
        Packet::Pingreq,
        Packet::Pingresp,
        Packet::Disconnect(Disconnect::NORMAL),
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::SERVER_MOVED,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("moved"),
                server_reference: Some("b:1883"),
                user_properties: user(),
            },
        }),
        Packet::Auth(Box::default()),
        Packet::Auth(Box::new(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some("SCRAM-SHA-1"),
                authentication_data: Some(b"\x01\x02"),
                reason_string: Some("next"),
                user_properties: user(),
            },
        })),
        Packet::Auth(Box::new(Auth {
            reason: ReasonCode::RE_AUTHENTICATE,
            properties: AuthProperties { authentication_method: Some("M"), ..Default::default() },
        })),
    ]
}

#[test]
fn round_trip_every_v5_packet_type() {
    let mut kinds = std::collections::HashSet::new();
    for p in all_v5_packets() {
        let bytes = enc(&p);
        kinds.insert(bytes[0] >> 4);
        let (q, n) = dec(&bytes).unwrap_or_else(|e| panic!("{p:?}: {e}")).unwrap();
        assert_eq!(q, p);
        assert_eq!(n, bytes.len());
        assert_eq!(enc(&q), bytes, "re-encoding is byte-identical");
    }
    assert_eq!(kinds.len(), 15, "all 15 packet types, AUTH included");
}

#[test]
fn mqtt_3_1_2_v5_connect_layout_properties_after_keep_alive_will_properties_before_topic() {
    let c = Connect {
        level: V5,
        client_id: "c",
        clean_session: true,
        keep_alive: 60,
        will: Some(Will {
            topic: "w",
            payload: b"p",
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties { will_delay_interval: 5, ..Default::default() },
        }),
        username: None,
        password: None,
        properties: ConnectProperties { session_expiry_interval: 1, ..Default::default() },
    };
    let bytes = enc(&Packet::Connect(Box::new(c)));
    let mut body = field(b"MQTT");
    body.extend([5, 0x06, 0, 60]);
    body.extend([5, 0x11, 0, 0, 0, 1]); // properties
    body.extend(field(b"c"));
    body.extend([5, 0x18, 0, 0, 0, 5]); // will properties
    body.extend(field(b"w"));
    body.extend(field(b"p"));
    assert_eq!(bytes, raw(0x10, &body));
    // A 5.0 CONNECT decodes whatever the session's level is.
    let (p, _) = decode_packet(&bytes, ProtocolLevel::V311, MAX).unwrap().unwrap();
    assert!(matches!(p, Packet::Connect(c) if c.level == ProtocolLevel::V5));
}

#[test]
fn mqtt_3_1_2_9_v5_password_without_user_name_allowed() {
    let mut body = field(b"MQTT");
    body.extend([5, 0x42, 0, 10, 0]);
    body.extend(field(b"c"));
    body.extend(field(b"pw"));
    let (p, _) = dec(raw(0x10, &body)).unwrap().unwrap();
    match p {
        Packet::Connect(c) => assert_eq!((c.username, c.password), (None, Some(&b"pw"[..]))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mqtt_3_1_2_3_v5_reserved_flag_is_malformed() {
    let mut body = field(b"MQTT");
    body.extend([5, 0x03, 0, 10, 0]);
    body.extend(field(b"c"));
    assert_eq!(err(raw(0x10, &body)), DecodeError::InvalidConnectFlags);
    assert_eq!(DecodeError::InvalidConnectFlags.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn mqtt_3_1_2_11_connect_property_not_allowed_and_duplicates() {
    let connect = |props: &[u8]| {
        let mut body = field(b"MQTT");
        body.extend([5, 0x02, 0, 10]);
        put_varint(&mut body, props.len());
        body.extend_from_slice(props);
        body.extend(field(b"c"));
        raw(0x10, &body)
    };
    assert_eq!(err(connect(&[0x23, 0, 1])), DecodeError::PropertyNotAllowed { id: 0x23, packet_type: 1 });
    assert_eq!(err(connect(&[0x21, 0, 1, 0x21, 0, 2])), DecodeError::DuplicateProperty(0x21));
    assert_eq!(err(connect(&[0x21, 0, 0])), DecodeError::InvalidPropertyValue(0x21));
    assert_eq!(err(connect(&[0x27, 0, 0, 0, 0])), DecodeError::InvalidPropertyValue(0x27));
    // Will properties belong to the will: a will property in CONNECT's block is not allowed.
    assert_eq!(err(connect(&[0x18, 0, 0, 0, 1])), DecodeError::PropertyNotAllowed { id: 0x18, packet_type: 1 });
}

#[test]
fn mqtt_3_1_3_2_will_properties_rules() {
    let connect = |props: &[u8]| {
        let mut body = field(b"MQTT");
        body.extend([5, 0x06, 0, 10, 0]);
        body.extend(field(b"c"));
        put_varint(&mut body, props.len());
        body.extend_from_slice(props);
        body.extend(field(b"w/t"));
        body.extend(field(b"m"));
        raw(0x10, &body)
    };
    assert!(dec(connect(&[0x18, 0, 0, 0, 9, 0x01, 1])).unwrap().is_some());
    assert_eq!(err(connect(&[0x11, 0, 0, 0, 1])), DecodeError::PropertyNotAllowed { id: 0x11, packet_type: 0 });
    assert_eq!(err(connect(&[0x01, 2])), DecodeError::InvalidPropertyValue(0x01));
    assert_eq!(err(connect(&[0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1])), DecodeError::DuplicateProperty(0x18));
    let mut rt = vec![0x08];
    rt.extend(field(b"a/#"));
    assert_eq!(err(connect(&rt)), DecodeError::InvalidPropertyValue(0x08));
}

#[test]
fn mqtt_3_2_2_v5_connack_rules() {
    assert_eq!(err(raw(0x20, &[0, 0])), DecodeError::Truncated, "property length required");
    assert_eq!(err(raw(0x20, &[2, 0, 0])), DecodeError::InvalidConnectFlags);
    assert_eq!(err(raw(0x20, &[0, 0x01, 0])), DecodeError::InvalidReasonCode { packet_type: 2, code: 1 });
    assert_eq!(err(raw(0x20, &[0, 0x8B, 0])), DecodeError::InvalidReasonCode { packet_type: 2, code: 0x8B });
    assert_eq!(err(raw(0x20, &[0, 0, 2, 0x24, 2])), DecodeError::InvalidPropertyValue(0x24));
    assert_eq!(err(raw(0x20, &[0, 0, 2, 0x17, 1])), DecodeError::PropertyNotAllowed { id: 0x17, packet_type: 2 });
    assert_eq!(err(raw(0x20, &[0, 0, 0, 9])), DecodeError::TrailingBytes);
    assert_eq!(enc(&Packet::Connack(Box::new(Connack::new(false, ReasonCode::SUCCESS)))), [0x20, 3, 0, 0, 0]);
}

#[test]
fn v311_connack_maps_reason_codes_to_return_codes() {
    let mut out = Vec::new();
    encode_packet(
        &Packet::Connack(Box::new(Connack::new(false, ReasonCode::BAD_USER_NAME_OR_PASSWORD))),
        ProtocolLevel::V311,
        &mut out,
    );
    assert_eq!(out, [0x20, 2, 0, 4]);
    let (p, _) = decode_packet(&out, ProtocolLevel::V311, MAX).unwrap().unwrap();
    assert_eq!(p, Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::BadUsernameOrPassword))));
}

#[test]
fn mqtt_3_3_2_3_4_empty_topic_needs_topic_alias() {
    // QoS 0, empty topic, no properties.
    assert_eq!(err(raw(0x30, &[0, 0, 0])), DecodeError::EmptyTopicWithoutAlias);
    let (p, _) = dec(raw(0x30, &[0, 0, 3, 0x23, 0, 4, b'x'])).unwrap().unwrap();
    match p {
        Packet::Publish(p) => {
            assert_eq!((p.topic, p.properties.get().topic_alias, p.payload), ("", Some(4), &b"x"[..]))
        }
        other => panic!("{other:?}"),
    }
    // 3.1.1 still refuses an empty topic.
    let e = decode_packet(raw(0x30, &[0, 0, 3, 0x23, 0, 4]), ProtocolLevel::V311, MAX);
    assert_eq!(e, Err(DecodeError::InvalidTopicName));
}

#[test]
fn mqtt_3_3_2_v5_publish_rules() {
    let mut b = field(b"a/+");
    b.push(0);
    assert_eq!(err(raw(0x30, &b)), DecodeError::InvalidTopicName);
    // Properties come after the packet identifier.
    let mut b = field(b"t");
    b.extend([0, 7, 2, 0x23, 0]);
    assert_eq!(err(raw(0x32, &b)), DecodeError::Truncated);
    let mut b = field(b"t");
    b.extend([0, 7, 3, 0x23, 0, 0]);
    assert_eq!(err(raw(0x32, &b)), DecodeError::InvalidPropertyValue(0x23));
    let mut b = field(b"t");
    b.extend([0, 7, 5, 0x11, 0, 0, 0, 1]);
    assert_eq!(err(raw(0x32, &b)), DecodeError::PropertyNotAllowed { id: 0x11, packet_type: 3 });
    // The payload is everything after the properties, and may be empty.
    let mut b = field(b"t");
    b.extend([0]);
    let (p, _) = dec(raw(0x30, &b)).unwrap().unwrap();
    assert!(matches!(p, Packet::Publish(Publish { payload: &[], .. })));
    // Missing property length.
    assert_eq!(err(raw(0x30, &field(b"t"))), DecodeError::Truncated);
}

#[test]
fn mqtt_3_4_2_1_ack_short_forms() {
    for first in [0x40u8, 0x50, 0x62, 0x70] {
        let t = first >> 4;
        // Remaining length 2: Success, no properties.
        let (p, _) = dec(raw(first, &[0, 5])).unwrap().unwrap();
        let a = match p {
            Packet::Puback(a) | Packet::Pubrec(a) | Packet::Pubrel(a) | Packet::Pubcomp(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(a, Ack::new(5));
        // Remaining length 3: a reason code, no properties; 4: with property length 0.
        let code = if t == 6 || t == 7 { 0x92 } else { 0x10 };
        for body in [&[0, 5, code][..], &[0, 5, code, 0]] {
            let (p, _) = dec(raw(first, body)).unwrap().unwrap();
            let bytes = enc(&p);
            assert_eq!(bytes, [first, 3, 0, 5, code], "shortest form with a reason code");
        }
        // The encoder writes Success without properties in 4 bytes, like 3.1.1.
        let (p, _) = dec(raw(first, &[0, 5, 0, 0])).unwrap().unwrap();
        assert_eq!(enc(&p), [first, 2, 0, 5]);
        assert_eq!(err(raw(first, &[0, 0])), DecodeError::ZeroPacketId);
        assert_eq!(err(raw(first, &[0, 5, 0, 0, 0])), DecodeError::TrailingBytes);
        assert_eq!(err(raw(first, &[0, 5, 0, 3, 0x1F, 0])), DecodeError::Truncated);
    }
}

#[test]
fn mqtt_3_4_2_1_ack_reason_codes_per_packet() {
    for (first, t, good, bad) in [
        (0x40u8, 4u8, &[0x00u8, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99][..], &[0x92u8, 0x01, 0x81][..]),
        (0x50, 5, &[0x00, 0x10, 0x80, 0x87, 0x99], &[0x92, 0x04]),
        (0x62, 6, &[0x00, 0x92], &[0x10, 0x80]),
        (0x70, 7, &[0x00, 0x92], &[0x10, 0x87]),
    ] {
        for &c in good {
            assert!(dec(raw(first, &[0, 1, c])).unwrap().is_some(), "{c:#04x} in {t}");
        }
        for &c in bad {
            assert_eq!(err(raw(first, &[0, 1, c])), DecodeError::InvalidReasonCode { packet_type: t, code: c });
        }
    }
}

#[test]
fn mqtt_3_8_3_1_subscription_options() {
    let sub = |filter: &[u8], options: u8| {
        let mut b = vec![0, 1, 0];
        b.extend(field(filter));
        b.push(options);
        raw(0x82, &b)
    };
    let (p, _) = dec(sub(b"a", 0b0010_1110)).unwrap().unwrap();
    match p {
        Packet::Subscribe(s) => assert_eq!(
            s.filters[0].1,
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend
            }
        ),
        other => panic!("{other:?}"),
    }
    // [MQTT-3.8.3-5] reserved bits: Malformed.
    for o in [0x40u8, 0x80, 0xC0] {
        assert_eq!(err(sub(b"a", o)), DecodeError::ReservedSubscriptionOptions);
    }
    assert_eq!(DecodeError::ReservedSubscriptionOptions.reason_code(), ReasonCode::MALFORMED_PACKET);
    // Retain Handling 3 and QoS 3: Protocol Error.
    assert_eq!(err(sub(b"a", 0x30)), DecodeError::InvalidSubscriptionOptions);
    assert_eq!(err(sub(b"a", 0x03)), DecodeError::InvalidSubscriptionOptions);
    assert_eq!(DecodeError::InvalidSubscriptionOptions.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn mqtt_3_8_3_4_no_local_on_shared_subscription_is_protocol_error() {
    let mut b = vec![0, 1, 0];
    b.extend(field(b"$share/g/a"));
    b.push(0b100);
    assert_eq!(err(raw(0x82, &b)), DecodeError::InvalidSubscriptionOptions);
    b.pop();
    b.push(0);
    assert!(dec(raw(0x82, &b)).unwrap().is_some());
}

#[test]
fn mqtt_3_8_v5_subscribe_rules() {
    // No filters: Protocol Error (3.8.3-2).
    assert_eq!(err(raw(0x82, &[0, 1, 0])), DecodeError::NoTopicFilters);
    assert_eq!(DecodeError::NoTopicFilters.reason_code(), ReasonCode::PROTOCOL_ERROR);
    // Property length missing.
    assert_eq!(err(raw(0x82, &[0, 1])), DecodeError::Truncated);
    // One subscription identifier only, non-zero.
    let mut b = vec![0, 1, 4, 0x0B, 1, 0x0B, 2];
    b.extend(field(b"a"));
    b.push(0);
    assert_eq!(err(raw(0x82, &b)), DecodeError::DuplicateProperty(0x0B));
    let mut b = vec![0, 1, 2, 0x0B, 0];
    b.extend(field(b"a"));
    b.push(0);
    assert_eq!(err(raw(0x82, &b)), DecodeError::InvalidPropertyValue(0x0B));
    // 3.1.1 filters get the default options.
    let mut b = vec![0, 1];
    b.extend(field(b"a"));
    b.push(1);
    let (p, _) = decode_packet(raw(0x82, &b), ProtocolLevel::V311, MAX).unwrap().unwrap();
    match p {
        Packet::Subscribe(s) => assert_eq!(s.filters[0].1, SubscriptionOptions::qos(QoS::AtLeastOnce)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mqtt_3_9_3_and_3_11_3_suback_unsuback_reason_codes() {
    assert_eq!(err(raw(0x90, &[0, 1, 0])), DecodeError::NoTopicFilters);
    assert_eq!(err(raw(0x90, &[0, 1, 0, 0x11])), DecodeError::InvalidReasonCode { packet_type: 9, code: 0x11 });
    assert!(dec(raw(0x90, &[0, 1, 0, 0xA2, 0x9E, 0xA1, 0x97, 2])).unwrap().is_some());
    assert_eq!(err(raw(0xB0, &[0, 1, 0])), DecodeError::NoTopicFilters);
    assert_eq!(err(raw(0xB0, &[0, 1, 0, 0x01])), DecodeError::InvalidReasonCode { packet_type: 11, code: 1 });
    assert!(dec(raw(0xB0, &[0, 1, 0, 0x00, 0x11, 0x8F])).unwrap().is_some());
    // At 3.1.1 every 5.0 failure of a SUBACK is 0x80.
    let s = Suback::new(1, vec![ReasonCode::GRANTED_QOS_1, ReasonCode::QUOTA_EXCEEDED]);
    let mut out = Vec::new();
    encode_packet(&Packet::Suback(s), ProtocolLevel::V311, &mut out);
    assert_eq!(out, [0x90, 4, 0, 1, 1, 0x80]);
}

#[test]
fn mqtt_3_14_2_1_disconnect_short_forms_and_codes() {
    assert_eq!(dec(&[0xE0, 0]).unwrap().unwrap().0, Packet::Disconnect(Disconnect::NORMAL));
    let (p, _) = dec(&[0xE0, 1, 0x04]).unwrap().unwrap();
    assert_eq!(p, Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)));
    assert_eq!(enc(&p), [0xE0, 1, 0x04]);
    assert_eq!(enc(&Packet::Disconnect(Disconnect::NORMAL)), [0xE0, 0]);
    assert_eq!(err(&[0xE0, 1, 0x84]), DecodeError::InvalidReasonCode { packet_type: 14, code: 0x84 });
    assert_eq!(err(&[0xE0, 3, 0x8E, 1, 0x24]), DecodeError::Truncated);
    assert_eq!(err(&[0xE0, 4, 0x8E, 2, 0x24, 1]), DecodeError::PropertyNotAllowed { id: 0x24, packet_type: 14 });
    // 3.1.1 DISCONNECT has no body whatever the struct says.
    let mut out = Vec::new();
    encode_packet(&Packet::Disconnect(Disconnect::new(ReasonCode::SERVER_BUSY)), ProtocolLevel::V311, &mut out);
    assert_eq!(out, [0xE0, 0]);
}

#[test]
fn mqtt_3_15_auth_packet() {
    assert_eq!(dec(&[0xF0, 0]).unwrap().unwrap().0, Packet::Auth(Box::default()));
    assert_eq!(enc(&Packet::Auth(Box::default())), [0xF0, 0]);
    assert_eq!(err(&[0xF0, 1, 0x18]), DecodeError::Truncated, "property length required after a reason code");
    assert_eq!(err(&[0xF0, 2, 0x87, 0]), DecodeError::InvalidReasonCode { packet_type: 15, code: 0x87 });
    assert_eq!(err(&[0xF1, 0]), DecodeError::InvalidHeaderFlags { packet_type: 15, flags: 1 });
    // Type 15 is reserved below 5.0, from the fixed header alone.
    for level in [ProtocolLevel::V31, ProtocolLevel::V311] {
        assert_eq!(fixed_header(&[0xF0], level, MAX), Err(DecodeError::ReservedPacketType(15)));
        assert_eq!(decode_packet(&[0xF0, 0], level, MAX), Err(DecodeError::ReservedPacketType(15)));
    }
    assert_eq!(fixed_header(&[0xF0, 0], V5, MAX).unwrap().unwrap().remaining_len, 0);
    // Nothing is written for an AUTH below 5.0.
    let mut out = Vec::new();
    encode_packet(&Packet::Auth(Box::default()), ProtocolLevel::V311, &mut out);
    assert!(out.is_empty());
}

#[test]
fn encode_publish_header_v5_matches_encode_packet() {
    let mut fwd_block = vec![0x03];
    fwd_block.extend(field(b"text/plain"));
    fwd_block.extend(USER);
    let mut bytes = Vec::new();
    put_varint(&mut bytes, fwd_block.len() + 3 + 5 + 2 + 5);
    bytes.extend([0x23, 0, 2, 0x02, 0, 0, 0, 30, 0x0B, 7, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F]);
    bytes.extend(&fwd_block);
    let props = PublishPropertyBlock::decode(&mut codec::Reader { rest: &bytes }).unwrap().0.get();
    let mut forwarded = Vec::new();
    props.forward(&mut forwarded);
    assert_eq!(forwarded, fwd_block);
    let extras = PublishV5Extras {
        topic_alias: Some(2),
        message_expiry_interval: Some(30),
        subscription_identifiers: &[7, 268_435_455],
        forwarded: &forwarded,
    };
    for (topic, qos, id) in [("t/o", QoS::AtLeastOnce, Some(5)), ("", QoS::AtMostOnce, None)] {
        let payload = b"payload";
        let mut out = Vec::new();
        encode_publish_header(topic, qos, false, false, id, payload.len(), V5, Some(&extras), &mut out);
        out.extend_from_slice(payload);
        let (p, n) = dec(&out).unwrap().unwrap();
        assert_eq!(n, out.len());
        let Packet::Publish(p) = p else { panic!() };
        assert_eq!((p.topic, p.packet_id, p.payload), (topic, id, &payload[..]));
        assert_eq!(p.properties.get(), props);
        assert_eq!(enc(&Packet::Publish(p)), out, "same bytes as encode_packet");
    }
    // No extras at 5.0: a property length of 0. Extras at 3.1.1: ignored.
    let mut out = Vec::new();
    encode_publish_header("t", QoS::AtMostOnce, false, false, None, 0, V5, None, &mut out);
    assert_eq!(out, [0x30, 4, 0, 1, b't', 0]);
    let mut out = Vec::new();
    encode_publish_header("t", QoS::AtMostOnce, false, false, None, 0, ProtocolLevel::V311, Some(&extras), &mut out);
    assert_eq!(out, [0x30, 3, 0, 1, b't']);
}

#[test]
fn v5_fields_are_left_out_at_3_1_1() {
    // A 5.0 packet encoded for a 3.1.1 session is exactly the 3.1.1 packet.
    let mut c = connect_full();
    c.level = ProtocolLevel::V311;
    c.username = Some("u");
    let mut out = Vec::new();
    encode_packet(&Packet::Connect(Box::new(c.clone())), ProtocolLevel::V311, &mut out);
    let (p, _) = decode_packet(&out, ProtocolLevel::V311, MAX).unwrap().unwrap();
    let Packet::Connect(d) = p else { panic!() };
    assert_eq!(d.properties, ConnectProperties::default());
    assert_eq!(d.will.unwrap().properties, WillProperties::default());
    for p in all_v5_packets().into_iter().skip(2) {
        let mut out = Vec::new();
        encode_packet(&p, ProtocolLevel::V311, &mut out);
        if out.is_empty() {
            assert!(matches!(p, Packet::Auth(_)));
            continue;
        }
        // An empty topic (alias) is invalid at 3.1.1; everything else decodes.
        if let Packet::Publish(Publish { topic: "", .. }) = p {
            continue;
        }
        assert!(decode_packet(&out, ProtocolLevel::V311, MAX).unwrap().is_some(), "{p:?}");
    }
}

#[test]
fn v5_partial_input_at_every_split_point_is_incomplete() {
    for p in all_v5_packets() {
        let bytes = enc(&p);
        for split in 0..bytes.len() {
            assert_eq!(dec(&bytes[..split]), Ok(None), "{p:?} split {split}");
        }
    }
}

#[test]
fn v5_truncated_bodies_are_errors_never_panics() {
    // The body cut short with a consistent remaining length: an error or a shorter valid packet.
    for p in all_v5_packets() {
        let bytes = enc(&p);
        let h = fixed_header(&bytes, V5, MAX).unwrap().unwrap();
        let body = &bytes[h.header_len..];
        for cut in 0..body.len() {
            let short = raw(bytes[0], &body[..cut]);
            if let Ok(Some((q, n))) = dec(short) {
                assert_eq!(n, short.len());
                let again = enc(&q);
                assert_eq!(dec(&again).unwrap().unwrap().0, q);
            }
        }
    }
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
fn v5_mutated_packets_never_panic_and_round_trip() {
    let mut rng = XorShift(0x5EED_0005_0000_0001);
    let seeds: Vec<Vec<u8>> = all_v5_packets().iter().map(enc).collect();
    let mut buf = Vec::new();
    let mut decoded = 0;
    for _ in 0..100_000u32 {
        buf.clear();
        let seed = &seeds[(rng.next() % seeds.len() as u64) as usize];
        buf.extend_from_slice(seed);
        for _ in 0..1 + rng.next() % 3 {
            let at = (rng.next() % buf.len() as u64) as usize;
            // Small values hit lengths, identifiers and flags more often than random bytes.
            buf[at] = if rng.next() % 2 == 0 { rng.next() as u8 } else { (rng.next() % 0x30) as u8 };
        }
        match rng.next() % 3 {
            0 => buf.truncate((rng.next() % (buf.len() as u64 + 1)) as usize),
            1 => buf.push(rng.next() as u8),
            _ => {}
        }
        for level in [V5, ProtocolLevel::V311] {
            if let Ok(Some((p, n))) = decode_packet(&buf, level, MAX) {
                decoded += 1;
                assert!(n <= buf.len());
                let mut again = Vec::new();
                encode_packet(&p, level, &mut again);
                assert!(again.len() <= n, "re-encoding is never longer: {p:?}");
                assert_eq!(decode_packet(&again, level, MAX).unwrap().unwrap(), (p, again.len()));
            }
        }
    }
    assert!(decoded > 5_000, "only {decoded} mutated packets decoded");
}

#[test]
fn packet_stays_small_for_the_publish_path() {
    // CONNECT, CONNACK and AUTH are boxed and PUBLISH keeps its properties as the borrowed
    // block, so a 3.1.1 PUBLISH moves few bytes (typed properties made it 136 bytes, and 3.1.1
    // fan-in cost ~12% more instructions per message under callgrind).
    assert!(std::mem::size_of::<Publish<'_>>() <= 56);
    assert!(std::mem::size_of::<Packet<'_>>() <= 72);
}
