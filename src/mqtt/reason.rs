//! MQTT 5.0 reason codes (2.4, table 2-6) and the packets each may appear in.
//!
//! A newtype over the wire byte rather than an enum: decoding is one table lookup and the broker
//! names codes by constant. Several codes share a value (0x00 is Success, Normal disconnection
//! and Granted QoS 0), so the constants are aliases, not variants.
use super::ConnectReturnCode;

/// One reason code byte. Only values of table 2-6 come out of the decoder, and only those the
/// packet allows (`allowed_in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReasonCode(pub u8);

// Packet-type bits of the "allowed in" masks (bit n = MQTT packet type n).
const CONNACK: u16 = 1 << 2;
const PUBACK: u16 = 1 << 4;
const PUBREC: u16 = 1 << 5;
const PUBREL: u16 = 1 << 6;
const PUBCOMP: u16 = 1 << 7;
const SUBACK: u16 = 1 << 9;
const UNSUBACK: u16 = 1 << 11;
const DISCONNECT: u16 = 1 << 14;
const AUTH: u16 = 1 << 15;

impl ReasonCode {
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    pub const DISCONNECT_WITH_WILL_MESSAGE: ReasonCode = ReasonCode(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    pub const CONTINUE_AUTHENTICATION: ReasonCode = ReasonCode(0x18);
    pub const RE_AUTHENTICATE: ReasonCode = ReasonCode(0x19);
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: ReasonCode = ReasonCode(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: ReasonCode = ReasonCode(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    pub const BANNED: ReasonCode = ReasonCode(0x8A);
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: ReasonCode = ReasonCode(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: ReasonCode = ReasonCode(0x96);
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    pub const ADMINISTRATIVE_ACTION: ReasonCode = ReasonCode(0x98);
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    pub const USE_ANOTHER_SERVER: ReasonCode = ReasonCode(0x9C);
    pub const SERVER_MOVED: ReasonCode = ReasonCode(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: ReasonCode = ReasonCode(0x9F);
    pub const MAXIMUM_CONNECT_TIME: ReasonCode = ReasonCode(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    /// The SUBACK code granting `qos` (0x00, 0x01, 0x02, as in 3.1.1).
    pub fn granted(qos: super::QoS) -> ReasonCode {
        ReasonCode(qos as u8)
    }

    /// Bit n set: the code may appear in packet type n (table 2-6). 0: not a reason code.
    fn packets(self) -> u16 {
        // The acks that carry a PUBLISH outcome, and the "refusal" groups of the table.
        const PUB_ACKS: u16 = PUBACK | PUBREC;
        const REFUSALS: u16 = CONNACK | PUB_ACKS | SUBACK | UNSUBACK | DISCONNECT;
        match self.0 {
            0x00 => CONNACK | PUB_ACKS | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH,
            0x01 | 0x02 => SUBACK,
            0x04 => DISCONNECT,
            0x10 => PUB_ACKS,
            0x11 => UNSUBACK,
            0x18 | 0x19 => AUTH,
            0x80 | 0x83 | 0x87 => REFUSALS,
            0x81 | 0x82 | 0x89 | 0x8C | 0x95 | 0x9A..=0x9D | 0x9F => CONNACK | DISCONNECT,
            0x84 | 0x85 | 0x86 | 0x88 | 0x8A => CONNACK,
            0x8B | 0x8D | 0x8E | 0x93 | 0x94 | 0x96 | 0x98 | 0xA0 => DISCONNECT,
            0x8F => SUBACK | UNSUBACK | DISCONNECT,
            0x90 | 0x99 => CONNACK | PUB_ACKS | DISCONNECT,
            0x91 => PUB_ACKS | SUBACK | UNSUBACK,
            0x92 => PUBREL | PUBCOMP,
            0x97 => CONNACK | PUB_ACKS | SUBACK | DISCONNECT,
            0x9E | 0xA1 | 0xA2 => SUBACK | DISCONNECT,
            _ => 0,
        }
    }

    /// Whether table 2-6 lists this code for MQTT packet type `packet_type` (2 = CONNACK, ...,
    /// 15 = AUTH). O(1).
    pub fn allowed_in(self, packet_type: u8) -> bool {
        packet_type < 16 && self.packets() & (1 << packet_type) != 0
    }

    /// Whether the code is one of table 2-6 at all.
    pub fn is_known(self) -> bool {
        self.packets() != 0
    }

    /// 0x80 and above are failures (2.4).
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The MQTT 3.1.1 CONNACK return code closest to this v5 CONNACK reason: the six that
    /// exist map back exactly (the inverse of `From<ConnectReturnCode>`), a refusal 3.1.1 cannot
    /// name becomes "not authorized" for authorisation failures and "server unavailable" for
    /// the rest.
    pub fn connect_return_code(self) -> ConnectReturnCode {
        match self {
            ReasonCode::SUCCESS => ConnectReturnCode::Accepted,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => ConnectReturnCode::UnacceptableProtocolVersion,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => ConnectReturnCode::IdentifierRejected,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD => ConnectReturnCode::BadUsernameOrPassword,
            ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED | ReasonCode::BAD_AUTHENTICATION_METHOD => {
                ConnectReturnCode::NotAuthorized
            }
            _ => ConnectReturnCode::ServerUnavailable,
        }
    }
}

/// 3.1.1 return code to the v5 CONNACK reason code (table 3-1 of 5.0 keeps their meanings).
impl From<ConnectReturnCode> for ReasonCode {
    fn from(code: ConnectReturnCode) -> ReasonCode {
        match code {
            ConnectReturnCode::Accepted => ReasonCode::SUCCESS,
            ConnectReturnCode::UnacceptableProtocolVersion => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ConnectReturnCode::IdentifierRejected => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ConnectReturnCode::ServerUnavailable => ReasonCode::SERVER_UNAVAILABLE,
            ConnectReturnCode::BadUsernameOrPassword => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ConnectReturnCode::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

#[cfg(test)]
#[path = "reason_tests.rs"]
mod tests;
