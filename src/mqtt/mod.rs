//! MQTT packets and their sans-IO codec.
//!
//! Decoding borrows from the caller's buffer (topics, payloads and strings are slices of it), so the
//! broker copies a PUBLISH payload exactly once: into the shared message every subscriber gets.
//! The protocol level is an input to both directions: 3.1 and 3.1.1 decode without touching any
//! 5.0 code, and 5.0 (properties, reason codes, AUTH) goes through the same functions with its
//! property blocks validated in one pass and kept borrowed (`properties`, `reason`).

mod codec;
mod codec_v5;
mod error;
pub mod properties;
mod property_sets;
pub mod reason;
pub mod topic;

pub use codec::{decode_packet, encode_packet, encode_publish_header, fixed_header, FixedHeader, PublishV5Extras};
pub use error::DecodeError;
pub use properties::{
    AckProperties, AuthProperties, ConnackProperties, ConnectProperties, DisconnectProperties, PublishProperties,
    PublishPropertyBlock, SubscribeProperties, SubscriptionIdentifiers, UserProperties, WillProperties,
};
pub use reason::ReasonCode;

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

/// Return code for one filter in a 3.1.1 SUBACK: granted QoS, or 0x80 failure.
pub const SUBACK_FAILURE: u8 = 0x80;

/// What a subscriber gets of retained messages when it subscribes (5.0, 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time (the only behaviour of 3.1.1).
    #[default]
    SendAtSubscribe = 0,
    /// 1: only if the subscription did not exist yet.
    SendIfNew = 1,
    /// 2: never.
    DoNotSend = 2,
}

/// Options of one SUBSCRIBE filter (5.0, 3.8.3.1). A 3.1.1 filter has only its QoS; the rest
/// take the defaults, which are 3.1.1's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    /// Do not deliver the subscriber's own publications back to it.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// The options of a 3.1.1 subscription at `qos`.
    pub const fn qos(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

impl From<QoS> for SubscriptionOptions {
    fn from(qos: QoS) -> Self {
        SubscriptionOptions::qos(qos)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 only (3.1.3.2); empty below.
    pub properties: WillProperties<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    pub level: ProtocolLevel,
    pub client_id: &'a str,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_session: bool,
    pub keep_alive: u16,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    /// At 5.0 allowed without a user name (3.1.2.9).
    pub password: Option<&'a [u8]>,
    /// 5.0 only; the defaults below.
    pub properties: ConnectProperties<'a>,
}

/// CONNACK. The code is a 5.0 reason code at every level: at 3.1/3.1.1 the six return codes
/// travel as their 5.0 equivalents (`From<ConnectReturnCode>`), and encoding at 3.1.1 maps
/// back with `ReasonCode::connect_return_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connack<'a> {
    pub session_present: bool,
    pub reason: ReasonCode,
    /// 5.0 only.
    pub properties: ConnackProperties<'a>,
}

impl Connack<'_> {
    pub fn new(session_present: bool, reason: impl Into<ReasonCode>) -> Connack<'static> {
        Connack { session_present, reason: reason.into(), properties: ConnackProperties::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// At 5.0 empty when a Topic Alias stands for it (3.3.2.3.4).
    pub topic: &'a str,
    /// Present exactly when qos > 0 (and then non-zero).
    pub packet_id: Option<u16>,
    pub payload: &'a [u8],
    /// 5.0 only; `properties.get()` reads them.
    pub properties: PublishPropertyBlock<'a>,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP. Below 5.0 only the packet id is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack<'a> {
    pub packet_id: u16,
    pub reason: ReasonCode,
    pub properties: AckProperties<'a>,
}

impl Ack<'_> {
    /// Success without properties: all there is at 3.1.1, and 5.0's 4-byte short form.
    pub const fn new(packet_id: u16) -> Ack<'static> {
        Ack { packet_id, reason: ReasonCode::SUCCESS, properties: AckProperties::EMPTY }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    pub packet_id: u16,
    /// At least one (topic filter, options).
    pub filters: Vec<(&'a str, SubscriptionOptions)>,
    /// 5.0 only.
    pub properties: SubscribeProperties<'a>,
}

/// SUBACK: one code per filter. 3.1.1 has 0, 1, 2 (granted QoS) and 0x80; encoding at 3.1.1
/// writes any 5.0 failure (0x80 and above) as 0x80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suback<'a> {
    pub packet_id: u16,
    pub reason_codes: Vec<ReasonCode>,
    /// 5.0 only.
    pub properties: AckProperties<'a>,
}

impl Suback<'_> {
    pub fn new(packet_id: u16, reason_codes: Vec<ReasonCode>) -> Suback<'static> {
        Suback { packet_id, reason_codes, properties: AckProperties::EMPTY }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    pub packet_id: u16,
    /// At least one topic filter.
    pub filters: Vec<&'a str>,
    /// 5.0 only.
    pub user_properties: UserProperties<'a>,
}

/// UNSUBACK. 3.1.1 has only the packet id; 5.0 a code per filter (3.11.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsuback<'a> {
    pub packet_id: u16,
    /// 5.0 only (one per filter, at least one); empty at 3.1.1.
    pub reason_codes: Vec<ReasonCode>,
    pub properties: AckProperties<'a>,
}

impl Unsuback<'_> {
    /// The 3.1.1 UNSUBACK.
    pub fn new(packet_id: u16) -> Unsuback<'static> {
        Unsuback { packet_id, reason_codes: Vec::new(), properties: AckProperties::EMPTY }
    }
}

/// DISCONNECT. Below 5.0 it has no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect<'a> {
    pub reason: ReasonCode,
    pub properties: DisconnectProperties<'a>,
}

impl Disconnect<'_> {
    /// Normal disconnection without properties: 3.1.1's DISCONNECT, 5.0's 2-byte form.
    pub const NORMAL: Disconnect<'static> =
        Disconnect { reason: ReasonCode::NORMAL_DISCONNECTION, properties: DisconnectProperties::EMPTY };

    pub fn new(reason: ReasonCode) -> Disconnect<'static> {
        Disconnect { reason, properties: DisconnectProperties::EMPTY }
    }
}

/// AUTH (5.0 only, 3.15): 0x00 success, 0x18 continue, 0x19 re-authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Auth<'a> {
    pub reason: ReasonCode,
    pub properties: AuthProperties<'a>,
}

/// CONNECT and CONNACK are boxed: they come once per connection and their 5.0 properties would
/// otherwise make every PUBLISH moved through the broker twice as large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect(Box<Connect<'a>>),
    Connack(Box<Connack<'a>>),
    Publish(Publish<'a>),
    Puback(Ack<'a>),
    Pubrec(Ack<'a>),
    Pubrel(Ack<'a>),
    Pubcomp(Ack<'a>),
    Subscribe(Subscribe<'a>),
    Suback(Suback<'a>),
    Unsubscribe(Unsubscribe<'a>),
    Unsuback(Unsuback<'a>),
    Pingreq,
    Pingresp,
    Disconnect(Disconnect<'a>),
    /// 5.0 only; boxed, being rare and the largest variant otherwise.
    Auth(Box<Auth<'a>>),
}
