//! Reason codes: table 2-6 of MQTT 5.0, row by row, and the mappings to and from 3.1.1.
use super::*;
use crate::mqtt::DecodeError;

/// Table 2-6: (code, packets it may appear in), by MQTT packet type.
const TABLE: &[(u8, &[u8])] = &[
    (0x00, &[2, 4, 5, 6, 7, 9, 11, 14, 15]),
    (0x01, &[9]),
    (0x02, &[9]),
    (0x04, &[14]),
    (0x10, &[4, 5]),
    (0x11, &[11]),
    (0x18, &[15]),
    (0x19, &[15]),
    (0x80, &[2, 4, 5, 9, 11, 14]),
    (0x81, &[2, 14]),
    (0x82, &[2, 14]),
    (0x83, &[2, 4, 5, 9, 11, 14]),
    (0x84, &[2]),
    (0x85, &[2]),
    (0x86, &[2]),
    (0x87, &[2, 4, 5, 9, 11, 14]),
    (0x88, &[2]),
    (0x89, &[2, 14]),
    (0x8A, &[2]),
    (0x8B, &[14]),
    (0x8C, &[2, 14]),
    (0x8D, &[14]),
    (0x8E, &[14]),
    (0x8F, &[9, 11, 14]),
    (0x90, &[2, 4, 5, 14]),
    (0x91, &[4, 5, 9, 11]),
    (0x92, &[6, 7]),
    (0x93, &[14]),
    (0x94, &[14]),
    (0x95, &[2, 14]),
    (0x96, &[14]),
    (0x97, &[2, 4, 5, 9, 14]),
    (0x98, &[14]),
    (0x99, &[2, 4, 5, 14]),
    (0x9A, &[2, 14]),
    (0x9B, &[2, 14]),
    (0x9C, &[2, 14]),
    (0x9D, &[2, 14]),
    (0x9E, &[9, 14]),
    (0x9F, &[2, 14]),
    (0xA0, &[14]),
    (0xA1, &[9, 14]),
    (0xA2, &[9, 14]),
];

#[test]
fn mqtt_2_4_table_2_6_every_code_in_exactly_its_packets() {
    for code in 0..=255u8 {
        let row = TABLE.iter().find(|(c, _)| *c == code);
        assert_eq!(ReasonCode(code).is_known(), row.is_some(), "{code:#04x}");
        for packet in 0..16u8 {
            let listed = row.is_some_and(|(_, packets)| packets.contains(&packet));
            assert_eq!(ReasonCode(code).allowed_in(packet), listed, "{code:#04x} in packet type {packet}");
        }
        assert!(!ReasonCode(code).allowed_in(16) && !ReasonCode(code).allowed_in(255));
    }
}

#[test]
fn mqtt_2_4_named_constants() {
    let named = [
        (ReasonCode::SUCCESS, 0x00),
        (ReasonCode::NORMAL_DISCONNECTION, 0x00),
        (ReasonCode::GRANTED_QOS_0, 0x00),
        (ReasonCode::GRANTED_QOS_1, 0x01),
        (ReasonCode::GRANTED_QOS_2, 0x02),
        (ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, 0x04),
        (ReasonCode::NO_MATCHING_SUBSCRIBERS, 0x10),
        (ReasonCode::NO_SUBSCRIPTION_EXISTED, 0x11),
        (ReasonCode::CONTINUE_AUTHENTICATION, 0x18),
        (ReasonCode::RE_AUTHENTICATE, 0x19),
        (ReasonCode::UNSPECIFIED_ERROR, 0x80),
        (ReasonCode::MALFORMED_PACKET, 0x81),
        (ReasonCode::PROTOCOL_ERROR, 0x82),
        (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 0x84),
        (ReasonCode::SESSION_TAKEN_OVER, 0x8E),
        (ReasonCode::PACKET_TOO_LARGE, 0x95),
        (ReasonCode::QUOTA_EXCEEDED, 0x97),
        (ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, 0xA2),
    ];
    for (code, value) in named {
        assert_eq!(code.0, value);
    }
    assert!(ReasonCode::UNSPECIFIED_ERROR.is_error() && !ReasonCode::NO_SUBSCRIPTION_EXISTED.is_error());
    assert_eq!(ReasonCode::granted(crate::mqtt::QoS::ExactlyOnce), ReasonCode::GRANTED_QOS_2);
}

#[test]
fn mqtt_3_2_2_2_connect_return_codes_map_to_v5_reasons_and_back() {
    use ConnectReturnCode::*;
    let pairs = [
        (Accepted, 0x00),
        (UnacceptableProtocolVersion, 0x84),
        (IdentifierRejected, 0x85),
        (ServerUnavailable, 0x88),
        (BadUsernameOrPassword, 0x86),
        (NotAuthorized, 0x87),
    ];
    for (v3, v5) in pairs {
        assert_eq!(ReasonCode::from(v3), ReasonCode(v5));
        assert_eq!(ReasonCode(v5).connect_return_code(), v3);
        assert!(ReasonCode(v5).allowed_in(2), "a CONNACK code");
    }
    // Refusals 3.1.1 cannot name.
    assert_eq!(ReasonCode::BANNED.connect_return_code(), NotAuthorized);
    assert_eq!(ReasonCode::BAD_AUTHENTICATION_METHOD.connect_return_code(), NotAuthorized);
    assert_eq!(ReasonCode::QUOTA_EXCEEDED.connect_return_code(), ServerUnavailable);
}

#[test]
fn mqtt_4_13_decode_errors_map_to_one_reason_code_each() {
    let cases = [
        (DecodeError::MalformedRemainingLength, 0x81),
        (DecodeError::PacketTooLarge { size: 10, max: 5 }, 0x95),
        (DecodeError::UnsupportedProtocolLevel(6), 0x84),
        (DecodeError::InvalidProtocolName, 0x84),
        (DecodeError::InvalidTopicName, 0x90),
        (DecodeError::InvalidTopicFilter, 0x8F),
        (DecodeError::InvalidUtf8, 0x81),
        (DecodeError::Truncated, 0x81),
        (DecodeError::UnknownProperty(0x7F), 0x81),
        (DecodeError::PropertyNotAllowed { id: 0x23, packet_type: 1 }, 0x81),
        (DecodeError::MalformedVariableByteInteger, 0x81),
        (DecodeError::ReservedSubscriptionOptions, 0x81),
        (DecodeError::DuplicateProperty(0x11), 0x82),
        (DecodeError::InvalidPropertyValue(0x21), 0x82),
        (DecodeError::AuthenticationDataWithoutMethod, 0x82),
        (DecodeError::InvalidReasonCode { packet_type: 6, code: 0x10 }, 0x82),
        (DecodeError::EmptyTopicWithoutAlias, 0x82),
        (DecodeError::InvalidSubscriptionOptions, 0x82),
        (DecodeError::NoTopicFilters, 0x82),
    ];
    for (e, code) in cases {
        let r = e.reason_code();
        assert_eq!(r, ReasonCode(code), "{e}");
        // Every one can be sent: in a CONNACK (before CONNECT completed) or a DISCONNECT.
        assert!(r.allowed_in(14) || r == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, "{e}");
    }
}
