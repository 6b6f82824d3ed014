//! Properties (MQTT 5.0, 2.2.2): the identifier table, the validating parser, iterators and
//! forwarding, each test named after the statement it proves.
use super::*;
use crate::mqtt::codec::Reader;

/// Every identifier 2.2.2.2 defines.
const IDS: [u8; 27] = [
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C, 0x1F, 0x21, 0x22,
    0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
];
/// Packet kinds that have properties: will (0), CONNECT .. UNSUBACK, DISCONNECT, AUTH.
const KINDS: [u8; 14] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15];

fn field(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// A valid value of `ty` (valid for every property of that type).
fn value(ty: PropertyType) -> Vec<u8> {
    match ty {
        PropertyType::Byte => vec![1],
        PropertyType::TwoByteInteger => vec![0, 5],
        PropertyType::FourByteInteger => vec![0, 0, 0, 5],
        PropertyType::VariableByteInteger => vec![0x85, 0x01],
        PropertyType::Utf8String => field(b"a/b"),
        PropertyType::BinaryData => field(b"\x00\xff"),
        PropertyType::Utf8StringPair => [field(b"k"), field(b"v")].concat(),
    }
}

/// `id` with a valid value.
fn prop(id: u8) -> Vec<u8> {
    let (ty, _) = property_info(id).unwrap();
    let mut v = vec![id];
    v.extend(value(ty));
    v
}

/// Parse `block` (length prefix added) as the properties of packet kind `packet`.
fn parse(packet: u8, block: &[u8]) -> Result<Vec<Property<'_>>, DecodeError> {
    // Leak the prefixed copy: tests only, and the properties borrow from it.
    let mut bytes = Vec::new();
    put_varint(&mut bytes, block.len());
    bytes.extend_from_slice(block);
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let mut r = Reader { rest: bytes };
    let mut got = Vec::new();
    parse_block(&mut r, packet, |p| got.push(p))?;
    assert!(r.is_empty());
    Ok(got)
}

#[test]
fn mqtt_2_2_2_2_every_identifier_reads_its_data_type() {
    for id in IDS {
        let bytes = prop(id);
        let mut r = Reader { rest: &bytes };
        let p = Property::read(&mut r).unwrap();
        assert!(r.is_empty(), "{id:#04x} read all of its value");
        assert_eq!(p.id(), id);
        assert_eq!(p.encoded_len(), bytes.len(), "{id:#04x}");
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(out, bytes, "{id:#04x} writes what it read");
    }
    let defined = (0..=255u8).filter(|&id| property_info(id).is_some()).count();
    assert_eq!(defined, IDS.len());
}

#[test]
fn mqtt_2_2_2_2_unknown_identifier_is_malformed() {
    for id in (0..=255u8).filter(|id| !IDS.contains(id)) {
        assert_eq!(parse(3, &[id, 0, 0, 0, 0]), Err(DecodeError::UnknownProperty(id)));
        assert_eq!(DecodeError::UnknownProperty(id).reason_code(), crate::mqtt::ReasonCode::MALFORMED_PACKET);
    }
}

#[test]
fn mqtt_2_2_2_2_identifier_not_valid_for_packet_is_malformed() {
    // Table 2-4 row by row: (identifier, packet kinds).
    let table: &[(u8, &[u8])] = &[
        (0x01, &[3, 0]),
        (0x02, &[3, 0]),
        (0x03, &[3, 0]),
        (0x08, &[3, 0]),
        (0x09, &[3, 0]),
        (0x0B, &[3, 8]),
        (0x11, &[1, 2, 14]),
        (0x12, &[2]),
        (0x13, &[2]),
        (0x15, &[1, 2, 15]),
        (0x16, &[1, 2, 15]),
        (0x17, &[1]),
        (0x18, &[0]),
        (0x19, &[1]),
        (0x1A, &[2]),
        (0x1C, &[2, 14]),
        (0x1F, &[2, 4, 5, 6, 7, 9, 11, 14, 15]),
        (0x21, &[1, 2]),
        (0x22, &[1, 2]),
        (0x23, &[3]),
        (0x24, &[2]),
        (0x25, &[2]),
        (0x26, &[1, 2, 3, 0, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15]),
        (0x27, &[1, 2]),
        (0x28, &[2]),
        (0x29, &[2]),
        (0x2A, &[2]),
    ];
    for &(id, kinds) in table {
        for packet in KINDS {
            let mut block = prop(id);
            if id == 0x16 {
                block.extend(prop(0x15)); // Authentication Data needs its method
            }
            let got = parse(packet, &block);
            if kinds.contains(&packet) {
                assert!(got.is_ok(), "{id:#04x} in kind {packet}: {got:?}");
                assert!(allowed_in(id, packet));
            } else {
                assert_eq!(got, Err(DecodeError::PropertyNotAllowed { id, packet_type: packet }));
                assert!(!allowed_in(id, packet));
            }
        }
    }
}

#[test]
fn mqtt_2_2_2_2_duplicate_property_is_protocol_error() {
    for id in IDS {
        let (_, mask) = property_info(id).unwrap();
        for packet in KINDS.into_iter().filter(|&k| mask & (1 << k) != 0) {
            let block = [prop(id), prop(id)].concat();
            let got = parse(packet, &block);
            let repeatable = id == 0x26 || (id == 0x0B && packet == 3);
            if repeatable {
                assert_eq!(got.unwrap().len(), 2, "{id:#04x} twice in kind {packet}");
            } else {
                assert_eq!(got, Err(DecodeError::DuplicateProperty(id)), "{id:#04x} twice in kind {packet}");
            }
        }
    }
}

#[test]
fn mqtt_3_8_2_1_2_subscription_identifier_more_than_once_in_subscribe_is_protocol_error() {
    let block = [prop(0x0B), prop(0x0B)].concat();
    assert_eq!(parse(8, &block), Err(DecodeError::DuplicateProperty(0x0B)));
    // 3.3.4-4: a PUBLISH to a subscriber carries one per matching subscription.
    assert_eq!(parse(3, &block).unwrap().len(), 2);
}

/// (identifier, invalid value, a packet kind it belongs to): each "It is a Protocol Error ..."
/// value rule.
#[test]
fn mqtt_2_2_2_2_values_out_of_range_are_protocol_errors() {
    let cases: &[(&str, u8, &[u8], u8)] = &[
        ("3.3.2.3.2 payload format indicator above 1", 0x01, &[2], 3),
        ("3.1.3.2.3 will payload format indicator above 1", 0x01, &[0xFF], 0),
        ("3.1.2.11.3 receive maximum 0", 0x21, &[0, 0], 1),
        ("3.2.2.3.3 server receive maximum 0", 0x21, &[0, 0], 2),
        ("3.1.2.11.4 maximum packet size 0", 0x27, &[0, 0, 0, 0], 1),
        ("3.2.2.3.6 server maximum packet size 0", 0x27, &[0, 0, 0, 0], 2),
        ("3.1.2.11.6 request response information above 1", 0x19, &[2], 1),
        ("3.1.2.11.7 request problem information above 1", 0x17, &[2], 1),
        ("3.2.2.3.4 maximum qos above 1", 0x24, &[2], 2),
        ("3.2.2.3.5 retain available above 1", 0x25, &[2], 2),
        ("3.2.2.3.11 wildcard subscription available above 1", 0x28, &[2], 2),
        ("3.2.2.3.12 subscription identifiers available above 1", 0x29, &[2], 2),
        ("3.2.2.3.13 shared subscription available above 1", 0x2A, &[2], 2),
        ("3.8.2.1.2 subscription identifier 0", 0x0B, &[0], 8),
        ("3.3.2.3.8 subscription identifier 0 in publish", 0x0B, &[0x80, 0], 3),
        ("3.3.2.3.4 topic alias 0", 0x23, &[0, 0], 3),
    ];
    for &(rule, id, v, packet) in cases {
        let block = [&[id][..], v].concat();
        assert_eq!(parse(packet, &block), Err(DecodeError::InvalidPropertyValue(id)), "{rule}");
    }
    // The boundaries that are allowed.
    for (id, v, packet) in [(0x01u8, &[1u8][..], 3u8), (0x21, &[0, 1], 1), (0x27, &[0, 0, 0, 1], 1), (0x22, &[0, 0], 1)]
    {
        assert!(parse(packet, &[&[id][..], v].concat()).is_ok(), "{id:#04x} {v:?}");
    }
    let max_id = [0x0B, 0xFF, 0xFF, 0xFF, 0x7F];
    assert_eq!(parse(3, &max_id).unwrap(), vec![Property::SubscriptionIdentifier(268_435_455)]);
}

#[test]
fn mqtt_3_3_2_14_response_topic_must_be_a_topic_name() {
    for t in [&b"a/+"[..], b"#", b"a/#", b""] {
        let block = [&[0x08][..], &field(t)].concat();
        assert_eq!(parse(3, &block), Err(DecodeError::InvalidPropertyValue(0x08)), "{t:?}");
        assert_eq!(parse(0, &block), Err(DecodeError::InvalidPropertyValue(0x08)), "will {t:?}");
    }
}

#[test]
fn mqtt_1_5_4_property_strings_must_be_well_formed_utf8_without_null() {
    for bad in [&b"\xff"[..], b"a\0", b"\xed\xa0\x80", b"\xc0\x80"] {
        for id in [0x03u8, 0x1F, 0x15] {
            let block = [&[id][..], &field(bad)].concat();
            let packet = if id == 0x03 { 3 } else { 2 };
            assert_eq!(parse(packet, &block), Err(DecodeError::InvalidUtf8), "{id:#04x} {bad:?}");
        }
        let key = [&[0x26][..], &field(bad), &field(b"v")].concat();
        let val = [&[0x26][..], &field(b"k"), &field(bad)].concat();
        assert_eq!(parse(3, &key), Err(DecodeError::InvalidUtf8));
        assert_eq!(parse(3, &val), Err(DecodeError::InvalidUtf8));
    }
    // Binary data is not UTF-8 checked.
    assert!(parse(3, &[&[0x09][..], &field(b"\xff\0")].concat()).is_ok());
}

#[test]
fn mqtt_1_5_5_variable_byte_integer_over_4_bytes_is_malformed() {
    // A property length of five bytes.
    let mut r = Reader { rest: &[0x80, 0x80, 0x80, 0x80, 0x01] };
    assert_eq!(parse_block(&mut r, 3, |_| {}), Err(DecodeError::MalformedVariableByteInteger));
    // A subscription identifier of five bytes.
    assert_eq!(parse(3, &[0x0B, 0x81, 0x81, 0x81, 0x81, 0x01]), Err(DecodeError::MalformedVariableByteInteger));
}

#[test]
fn property_length_and_values_are_bounded_by_their_block() {
    // Property length past the packet.
    let mut r = Reader { rest: &[5, 0x23, 0] };
    assert_eq!(parse_block(&mut r, 3, |_| {}), Err(DecodeError::Truncated));
    // A value that runs past the block though the packet has more bytes after it.
    let mut r = Reader { rest: &[2, 0x23, 0, 1, 2, 3] };
    assert_eq!(parse_block(&mut r, 3, |_| {}), Err(DecodeError::Truncated));
    // Empty block.
    let mut r = Reader { rest: &[0, 9] };
    assert_eq!(parse_block(&mut r, 3, |_| {}), Ok(&[][..]));
    assert_eq!(r.rest, [9]);
}

#[test]
fn mqtt_3_1_2_11_10_authentication_data_without_method_is_protocol_error() {
    let mut bytes = vec![4, 0x16, 0, 1, 7];
    let mut r = Reader { rest: &bytes };
    assert_eq!(ConnectProperties::decode(&mut r), Err(DecodeError::AuthenticationDataWithoutMethod));
    let mut r = Reader { rest: &bytes };
    assert_eq!(ConnackProperties::decode(&mut r), Err(DecodeError::AuthenticationDataWithoutMethod));
    let mut r = Reader { rest: &bytes };
    assert_eq!(AuthProperties::decode(&mut r), Err(DecodeError::AuthenticationDataWithoutMethod));
    bytes.extend([0x15, 0, 1, b'M']);
    bytes[0] = 8;
    let mut r = Reader { rest: &bytes };
    let c = ConnectProperties::decode(&mut r).unwrap();
    assert_eq!((c.authentication_method, c.authentication_data), (Some("M"), Some(&[7u8][..])));
}

#[test]
fn mqtt_3_1_2_11_connect_property_defaults() {
    let mut r = Reader { rest: &[0] };
    let c = ConnectProperties::decode(&mut r).unwrap();
    assert_eq!(c, ConnectProperties::default());
    assert_eq!(c.session_expiry_interval, 0);
    assert_eq!(c.receive_maximum, None);
    assert_eq!(c.topic_alias_maximum, 0);
    assert!(!c.request_response_information);
    assert!(c.request_problem_information, "3.1.2.11.7: absent means 1");
}

#[test]
fn mqtt_3_1_2_11_8_user_properties_kept_in_wire_order_with_repeats() {
    let mut block = Vec::new();
    write_user_property(&mut block, "b", "1");
    block.extend(prop(0x11));
    write_user_property(&mut block, "a", "2");
    write_user_property(&mut block, "b", "3");
    let got = parse(1, &block).unwrap();
    assert_eq!(got.len(), 4);
    let u = UserProperties::in_block(&block);
    assert_eq!(u.iter().collect::<Vec<_>>(), [("b", "1"), ("a", "2"), ("b", "3")]);
    assert!(!u.is_empty() && UserProperties::EMPTY.is_empty());
    // Equality is by the pairs, whatever else is in the block.
    let mut only = Vec::new();
    for (k, v) in u.iter() {
        write_user_property(&mut only, k, v);
    }
    assert_eq!(UserProperties::from_block(&only).unwrap(), u);
    assert!(UserProperties::from_block(&prop(0x11)).is_err(), "only user properties");
    assert_eq!(format!("{u:?}"), r#"[("b", "1"), ("a", "2"), ("b", "3")]"#);
}

/// A PUBLISH property block with every property, two user properties and two identifiers.
fn rich_publish_block() -> Vec<u8> {
    let mut b = vec![0x23, 0, 7]; // topic alias
    b.extend([0x26]);
    b.extend(field(b"first"));
    b.extend(field(b"1"));
    b.extend([0x02, 0, 0, 0, 60]); // message expiry
    b.extend([0x0B, 0x05]); // subscription identifier
    b.extend([0x01, 1]);
    b.extend([0x03]);
    b.extend(field(b"text/plain"));
    b.extend([0x08]);
    b.extend(field(b"reply/here"));
    b.extend([0x09]);
    b.extend(field(b"\x01\x02"));
    b.extend([0x0B, 0x80, 0x01]);
    b.extend([0x26]);
    b.extend(field(b"second"));
    b.extend(field(b"2"));
    b
}

#[test]
fn mqtt_3_3_2_3_publish_properties_decode_typed_and_iterated() {
    let block = rich_publish_block();
    let mut bytes = Vec::new();
    put_varint(&mut bytes, block.len());
    bytes.extend(&block);
    let mut r = Reader { rest: &bytes };
    let (decoded, has_alias) = PublishPropertyBlock::decode(&mut r).unwrap();
    assert!(has_alias);
    let p = decoded.get();
    assert_eq!(p.topic_alias, Some(7));
    assert_eq!(p.message_expiry_interval, Some(60));
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(p.content_type, Some("text/plain"));
    assert_eq!(p.response_topic, Some("reply/here"));
    assert_eq!(p.correlation_data, Some(&[1u8, 2][..]));
    assert_eq!(p.subscription_identifiers.iter().collect::<Vec<_>>(), [5, 128]);
    assert_eq!(p.user_properties.iter().collect::<Vec<_>>(), [("first", "1"), ("second", "2")]);
    // Re-encoded canonically, it decodes to the same.
    let again = p.to_block();
    assert_eq!(again.len(), block.len(), "same properties, other order");
    assert_eq!(PublishPropertyBlock::new(&again).unwrap().get(), p);
}

#[test]
fn mqtt_3_3_2_3_7_forwarded_properties_leave_out_alias_expiry_and_identifiers() {
    let block = rich_publish_block();
    let mut bytes = Vec::new();
    put_varint(&mut bytes, block.len());
    bytes.extend(&block);
    let p = PublishPropertyBlock::decode(&mut Reader { rest: &bytes }).unwrap().0.get();
    let mut fwd = Vec::new();
    p.forward(&mut fwd);
    let got: Vec<_> = PropertyIter::new(&fwd).collect();
    assert_eq!(
        got,
        [
            Property::PayloadFormatIndicator(1),
            Property::ContentType("text/plain"),
            Property::ResponseTopic("reply/here"),
            Property::CorrelationData(&[1, 2]),
            Property::UserProperty("first", "1"),
            Property::UserProperty("second", "2"),
        ]
    );
    // What forward writes is a valid PUBLISH block.
    assert_eq!(parse(3, &fwd).unwrap(), got);
    // Nothing to forward: nothing written.
    let mut none = Vec::new();
    PublishProperties::default().forward(&mut none);
    assert!(none.is_empty());
}

#[test]
fn mqtt_3_1_3_2_will_properties_forward_as_publish_properties_without_will_delay() {
    let mut block = vec![0x18, 0, 0, 0, 30, 0x02, 0, 0, 1, 0, 0x01, 0];
    block.push(0x08);
    block.extend(field(b"r/t"));
    write_user_property(&mut block, "k", "v");
    let mut bytes = Vec::new();
    put_varint(&mut bytes, block.len());
    bytes.extend(&block);
    let w = WillProperties::decode(&mut Reader { rest: &bytes }).unwrap();
    assert_eq!(w.will_delay_interval, 30);
    assert_eq!(w.message_expiry_interval, Some(256));
    assert_eq!(w.payload_format_indicator, Some(0));
    let mut fwd = Vec::new();
    w.forward(&mut fwd);
    let got: Vec<_> = PropertyIter::new(&fwd).collect();
    assert_eq!(
        got,
        [Property::PayloadFormatIndicator(0), Property::ResponseTopic("r/t"), Property::UserProperty("k", "v")]
    );
    assert!(parse(3, &fwd).is_ok());
}

#[test]
fn property_iterator_stops_at_garbage() {
    let mut block = prop(0x26);
    block.extend([0x7F, 1, 2]);
    let got: Vec<_> = PropertyIter::new(&block).collect();
    assert_eq!(got, [Property::UserProperty("k", "v")]);
    assert_eq!(
        SubscriptionIdentifiers::from_block(&prop(0x26)),
        Err(DecodeError::PropertyNotAllowed { id: 0x26, packet_type: 3 })
    );
    let ids = [0x0B, 1, 0x0B, 2];
    assert_eq!(SubscriptionIdentifiers::from_block(&ids).unwrap().iter().collect::<Vec<_>>(), [1, 2]);
}
