//! Why bytes from a peer are not a valid MQTT packet, and the reason code each case earns.
use super::reason::ReasonCode;

/// Every variant closes the connection; only `UnsupportedProtocolLevel` and `IdentifierRejected`-
/// style cases get a CONNACK first (the broker decides). At 5.0 the broker can send one CONNACK
/// (before CONNECT completed) or DISCONNECT (after) with `reason_code()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Remaining length uses more than 4 bytes (2.2.3).
    MalformedRemainingLength,
    /// Declared packet size exceeds the configured maximum; known from the fixed header alone.
    PacketTooLarge { size: usize, max: usize },
    /// Packet type 0, or 15 below MQTT 5.0 (reserved there; AUTH at 5.0).
    ReservedPacketType(u8),
    /// Fixed-header flags differ from the ones the spec mandates for this type (2.2.2).
    InvalidHeaderFlags { packet_type: u8, flags: u8 },
    /// CONNECT protocol name is not "MQTT" (level 4/5) or "MQIsdp" (level 3).
    InvalidProtocolName,
    /// Protocol level this broker does not speak; answered with CONNACK 0x01 (3.1.1) / 0x84.
    UnsupportedProtocolLevel(u8),
    /// CONNECT reserved flag set, or will QoS/retain set without the will flag, or QoS 3 will;
    /// CONNACK with reserved acknowledge flags or an unknown 3.1.1 return code.
    InvalidConnectFlags,
    /// Password flag without user name flag (3.1.1: 3.1.2-22; allowed at 5.0, 3.1.2.9).
    PasswordWithoutUsername,
    /// QoS 3 in a PUBLISH header or a 3.1.1 subscription.
    InvalidQoS,
    /// A string is not well-formed UTF-8 or contains U+0000 (1.5.3, 5.0: 1.5.4).
    InvalidUtf8,
    /// Topic name empty or containing a wildcard (4.7).
    InvalidTopicName,
    /// Topic filter empty or with a misplaced `#`/`+` (4.7.1).
    InvalidTopicFilter,
    /// Packet identifier 0 where one is required (2.3.1-1).
    ZeroPacketId,
    /// SUBSCRIBE/UNSUBSCRIBE with no filters (3.8.3-3, 3.10.3-2), SUBACK/UNSUBACK without codes.
    NoTopicFilters,
    /// Fields run past the remaining length (or a property past its property length).
    Truncated,
    /// Bytes left over after the last field of a packet that has no payload.
    TrailingBytes,
    /// 5.0: a variable byte integer (property length, identifier or value) of more than 4 bytes
    /// (1.5.5).
    MalformedVariableByteInteger,
    /// 5.0: a property identifier that 2.2.2.2 does not define.
    UnknownProperty(u8),
    /// 5.0: a property not valid for this packet type (2.2.2.2: a Malformed Packet). The packet
    /// type is 0 for the will properties of a CONNECT.
    PropertyNotAllowed { id: u8, packet_type: u8 },
    /// 5.0: a property other than User Property (and Subscription Identifier in PUBLISH) given
    /// twice: "It is a Protocol Error to include ... more than once".
    DuplicateProperty(u8),
    /// 5.0: a property value out of its range (Receive Maximum 0, a 0/1 byte above 1, Topic
    /// Alias 0, Subscription Identifier 0, a Response Topic with wildcards, ...): Protocol Error.
    InvalidPropertyValue(u8),
    /// 5.0: Authentication Data without Authentication Method (3.1.2.11.10, 3.2.2.3.18).
    AuthenticationDataWithoutMethod,
    /// 5.0: a reason code table 2-6 does not list for this packet type.
    InvalidReasonCode { packet_type: u8, code: u8 },
    /// 5.0: PUBLISH with an empty topic and no Topic Alias (3.3.2.3.4): Protocol Error.
    EmptyTopicWithoutAlias,
    /// 5.0: subscription options with reserved bits 6-7 set: Malformed (3.8.3-5).
    ReservedSubscriptionOptions,
    /// 5.0: subscription options with QoS 3, Retain Handling 3, or No Local on a shared
    /// subscription (3.8.3-4): Protocol Error.
    InvalidSubscriptionOptions,
}

impl DecodeError {
    /// The MQTT 5.0 reason code of a CONNACK (before CONNECT completed) or DISCONNECT answering
    /// this error (4.13: malformed packets and protocol errors; 3.1.2.1 / 3.1.2.2 for CONNECT).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::InvalidProtocolName | DecodeError::UnsupportedProtocolLevel(_) => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            DecodeError::InvalidTopicName => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::InvalidTopicFilter => ReasonCode::TOPIC_FILTER_INVALID,
            DecodeError::NoTopicFilters
            | DecodeError::DuplicateProperty(_)
            | DecodeError::InvalidPropertyValue(_)
            | DecodeError::AuthenticationDataWithoutMethod
            | DecodeError::InvalidReasonCode { .. }
            | DecodeError::EmptyTopicWithoutAlias
            | DecodeError::InvalidSubscriptionOptions => ReasonCode::PROTOCOL_ERROR,
            DecodeError::MalformedRemainingLength
            | DecodeError::ReservedPacketType(_)
            | DecodeError::InvalidHeaderFlags { .. }
            | DecodeError::InvalidConnectFlags
            | DecodeError::PasswordWithoutUsername
            | DecodeError::InvalidQoS
            | DecodeError::InvalidUtf8
            | DecodeError::ZeroPacketId
            | DecodeError::Truncated
            | DecodeError::TrailingBytes
            | DecodeError::MalformedVariableByteInteger
            | DecodeError::UnknownProperty(_)
            | DecodeError::PropertyNotAllowed { .. }
            | DecodeError::ReservedSubscriptionOptions => ReasonCode::MALFORMED_PACKET,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::MalformedRemainingLength => write!(f, "malformed remaining length"),
            DecodeError::PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds maximum {max}")
            }
            DecodeError::ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            DecodeError::InvalidHeaderFlags { packet_type, flags } => {
                write!(f, "invalid flags {flags:#x} for packet type {packet_type}")
            }
            DecodeError::InvalidProtocolName => write!(f, "invalid protocol name"),
            DecodeError::UnsupportedProtocolLevel(l) => write!(f, "unsupported protocol level {l}"),
            DecodeError::InvalidConnectFlags => write!(f, "invalid CONNECT flags"),
            DecodeError::PasswordWithoutUsername => write!(f, "password without user name"),
            DecodeError::InvalidQoS => write!(f, "invalid QoS 3"),
            DecodeError::InvalidUtf8 => write!(f, "invalid UTF-8 string"),
            DecodeError::InvalidTopicName => write!(f, "invalid topic name"),
            DecodeError::InvalidTopicFilter => write!(f, "invalid topic filter"),
            DecodeError::ZeroPacketId => write!(f, "packet identifier 0"),
            DecodeError::NoTopicFilters => write!(f, "no topic filters"),
            DecodeError::Truncated => write!(f, "packet shorter than its fields"),
            DecodeError::TrailingBytes => write!(f, "unexpected bytes after packet fields"),
            DecodeError::MalformedVariableByteInteger => write!(f, "variable byte integer over 4 bytes"),
            DecodeError::UnknownProperty(id) => write!(f, "unknown property {id:#04x}"),
            DecodeError::PropertyNotAllowed { id, packet_type: 0 } => {
                write!(f, "property {id:#04x} not allowed in will properties")
            }
            DecodeError::PropertyNotAllowed { id, packet_type } => {
                write!(f, "property {id:#04x} not allowed in packet type {packet_type}")
            }
            DecodeError::DuplicateProperty(id) => write!(f, "property {id:#04x} more than once"),
            DecodeError::InvalidPropertyValue(id) => write!(f, "invalid value for property {id:#04x}"),
            DecodeError::AuthenticationDataWithoutMethod => {
                write!(f, "authentication data without authentication method")
            }
            DecodeError::InvalidReasonCode { packet_type, code } => {
                write!(f, "reason code {code:#04x} not allowed in packet type {packet_type}")
            }
            DecodeError::EmptyTopicWithoutAlias => write!(f, "empty topic name without topic alias"),
            DecodeError::ReservedSubscriptionOptions => write!(f, "reserved subscription option bits set"),
            DecodeError::InvalidSubscriptionOptions => write!(f, "invalid subscription options"),
        }
    }
}

impl std::error::Error for DecodeError {}
