//! MQTT packets and their sans-IO codec.
//!
//! Decoding borrows from the caller's buffer (topics, payloads and strings are slices of it), so the
//! broker copies a PUBLISH payload exactly once: into the shared message every subscriber gets.
//! The protocol level is an input to both directions so MQTT 5.0 (properties, reason codes) can
//! slot into the same functions without changing their callers.

mod codec;
pub mod topic;

pub use codec::{decode_packet, encode_packet, encode_publish_header, fixed_header, FixedHeader};

/// Quality of service of a PUBLISH or of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Protocol level from CONNECT: 3 = MQTT 3.1 ("MQIsdp"), 4 = MQTT 3.1.1, 5 = MQTT 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolLevel {
    V31 = 3,
    V311 = 4,
    V5 = 5,
}

/// CONNACK return codes of MQTT 3.1/3.1.1 (section 3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUsernameOrPassword = 4,
    NotAuthorized = 5,
}

/// Return code for one filter in SUBACK: granted QoS, or 0x80 failure.
pub const SUBACK_FAILURE: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    pub level: ProtocolLevel,
    pub client_id: &'a str,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    /// Present exactly when qos > 0 (and then non-zero).
    pub packet_id: Option<u16>,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    pub packet_id: u16,
    /// At least one (topic filter, requested QoS).
    pub filters: Vec<(&'a str, QoS)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    pub packet_id: u16,
    /// At least one topic filter.
    pub filters: Vec<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    Connack {
        session_present: bool,
        code: ConnectReturnCode,
    },
    Publish(Publish<'a>),
    Puback {
        packet_id: u16,
    },
    Pubrec {
        packet_id: u16,
    },
    Pubrel {
        packet_id: u16,
    },
    Pubcomp {
        packet_id: u16,
    },
    Subscribe(Subscribe<'a>),
    /// One return code per filter: 0, 1, 2 (granted QoS) or `SUBACK_FAILURE`.
    Suback {
        packet_id: u16,
        return_codes: Vec<u8>,
    },
    Unsubscribe(Unsubscribe<'a>),
    Unsuback {
        packet_id: u16,
    },
    Pingreq,
    Pingresp,
    Disconnect,
}

/// Why bytes from a peer are not a valid MQTT packet. Every variant closes the connection; only
/// `UnsupportedProtocolLevel` and `IdentifierRejected`-style cases get a CONNACK first (the broker decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Remaining length uses more than 4 bytes (2.2.3).
    MalformedRemainingLength,
    /// Declared packet size exceeds the configured maximum; known from the fixed header alone.
    PacketTooLarge { size: usize, max: usize },
    /// Packet type 0 or 15 (reserved).
    ReservedPacketType(u8),
    /// Fixed-header flags differ from the ones the spec mandates for this type (2.2.2).
    InvalidHeaderFlags { packet_type: u8, flags: u8 },
    /// CONNECT protocol name is not "MQTT" (level 4/5) or "MQIsdp" (level 3).
    InvalidProtocolName,
    /// Protocol level this broker does not speak (yet); answered with CONNACK 0x01.
    UnsupportedProtocolLevel(u8),
    /// CONNECT reserved flag set, or will QoS/retain set without the will flag, or QoS 3 will.
    InvalidConnectFlags,
    /// Password flag without user name flag (3.1.2-22).
    PasswordWithoutUsername,
    /// QoS 3 in a PUBLISH header or a subscription.
    InvalidQoS,
    /// A string is not well-formed UTF-8 or contains U+0000 (1.5.3).
    InvalidUtf8,
    /// Topic name empty or containing a wildcard (4.7).
    InvalidTopicName,
    /// Topic filter empty or with a misplaced `#`/`+` (4.7.1).
    InvalidTopicFilter,
    /// Packet identifier 0 where one is required (2.3.1-1).
    ZeroPacketId,
    /// SUBSCRIBE/UNSUBSCRIBE with no filters (3.8.3-3, 3.10.3-2).
    NoTopicFilters,
    /// Fields run past the remaining length.
    Truncated,
    /// Bytes left over after the last field of a packet that has no payload.
    TrailingBytes,
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
        }
    }
}

impl std::error::Error for DecodeError {}
