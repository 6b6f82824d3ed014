//! MQTT 5.0 properties (2.2.2): the identifier table, a one-pass validating parser of a
//! property block, borrowed iterators, and the encoder.
//!
//! A decoded packet keeps its validated block (`&'a [u8]`, nothing copied or allocated) and the
//! typed fields the broker acts on (`property_sets.rs`); the properties that may repeat (User
//! Property, Subscription Identifier) are iterated over the block in wire order when needed.
use super::codec::{field_len, put_field, put_varint, varint_len, Reader};
use super::error::DecodeError;
use super::topic::valid_topic_name;

pub use super::property_sets::*;

/// Property identifiers (2.2.2.2, table 2-4).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}
use id::*;

/// The data type of a property's value (2.2.2.2, 1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    Byte,
    TwoByteInteger,
    FourByteInteger,
    VariableByteInteger,
    Utf8String,
    BinaryData,
    Utf8StringPair,
}

/// Packet kinds for `allowed_in`: MQTT packet types, plus 0 for the will properties of CONNECT
/// (type 0 is reserved, so it cannot be confused with a packet).
pub const WILL_PROPERTIES: u8 = 0;
const WILL: u16 = 1 << WILL_PROPERTIES;
const CONNECT: u16 = 1 << 1;
const CONNACK: u16 = 1 << 2;
const PUBLISH: u16 = 1 << 3;
const PUBACK: u16 = 1 << 4;
const PUBREC: u16 = 1 << 5;
const PUBREL: u16 = 1 << 6;
const PUBCOMP: u16 = 1 << 7;
const SUBSCRIBE: u16 = 1 << 8;
const SUBACK: u16 = 1 << 9;
const UNSUBSCRIBE: u16 = 1 << 10;
const UNSUBACK: u16 = 1 << 11;
const DISCONNECT: u16 = 1 << 14;
const AUTH: u16 = 1 << 15;

/// Table 2-4: each identifier's type and the packets it may appear in (bit n: packet type n).
/// O(1); `None` for identifiers 5.0 does not define.
pub fn property_info(id: u8) -> Option<(PropertyType, u16)> {
    use PropertyType::*;
    const MESSAGE: u16 = PUBLISH | WILL;
    let info = match id {
        PAYLOAD_FORMAT_INDICATOR => (Byte, MESSAGE),
        MESSAGE_EXPIRY_INTERVAL => (FourByteInteger, MESSAGE),
        CONTENT_TYPE | RESPONSE_TOPIC => (Utf8String, MESSAGE),
        CORRELATION_DATA => (BinaryData, MESSAGE),
        SUBSCRIPTION_IDENTIFIER => (VariableByteInteger, PUBLISH | SUBSCRIBE),
        SESSION_EXPIRY_INTERVAL => (FourByteInteger, CONNECT | CONNACK | DISCONNECT),
        ASSIGNED_CLIENT_IDENTIFIER | RESPONSE_INFORMATION => (Utf8String, CONNACK),
        SERVER_KEEP_ALIVE => (TwoByteInteger, CONNACK),
        AUTHENTICATION_METHOD => (Utf8String, CONNECT | CONNACK | AUTH),
        AUTHENTICATION_DATA => (BinaryData, CONNECT | CONNACK | AUTH),
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => (Byte, CONNECT),
        WILL_DELAY_INTERVAL => (FourByteInteger, WILL),
        SERVER_REFERENCE => (Utf8String, CONNACK | DISCONNECT),
        REASON_STRING => {
            (Utf8String, CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH)
        }
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM => (TwoByteInteger, CONNECT | CONNACK),
        TOPIC_ALIAS => (TwoByteInteger, PUBLISH),
        MAXIMUM_QOS | RETAIN_AVAILABLE => (Byte, CONNACK),
        USER_PROPERTY => (
            Utf8StringPair,
            WILL | CONNECT
                | CONNACK
                | PUBLISH
                | PUBACK
                | PUBREC
                | PUBREL
                | PUBCOMP
                | SUBSCRIBE
                | SUBACK
                | UNSUBSCRIBE
                | UNSUBACK
                | DISCONNECT
                | AUTH,
        ),
        MAXIMUM_PACKET_SIZE => (FourByteInteger, CONNECT | CONNACK),
        WILDCARD_SUBSCRIPTION_AVAILABLE | SUBSCRIPTION_IDENTIFIER_AVAILABLE | SHARED_SUBSCRIPTION_AVAILABLE => {
            (Byte, CONNACK)
        }
        _ => return None,
    };
    Some(info)
}

/// Whether property `id` may appear in packet type `packet` (`WILL_PROPERTIES` for a will).
pub fn allowed_in(id: u8, packet: u8) -> bool {
    property_info(id).is_some_and(|(_, mask)| packet < 16 && mask & (1 << packet) != 0)
}

/// One property with its typed value, borrowed from the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property<'a> {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(&'a str),
    ResponseTopic(&'a str),
    CorrelationData(&'a [u8]),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(&'a str),
    ServerKeepAlive(u16),
    AuthenticationMethod(&'a str),
    AuthenticationData(&'a [u8]),
    RequestProblemInformation(u8),
    WillDelayInterval(u32),
    RequestResponseInformation(u8),
    ResponseInformation(&'a str),
    ServerReference(&'a str),
    ReasonString(&'a str),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQoS(u8),
    RetainAvailable(u8),
    UserProperty(&'a str, &'a str),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(u8),
    SubscriptionIdentifierAvailable(u8),
    SharedSubscriptionAvailable(u8),
}

/// A value that is 0 or 1 (2.2.2.2: "It is a Protocol Error to ... have a value other than 0
/// or 1").
fn zero_or_one(r: &mut Reader<'_>, id: u8) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

/// A two-byte or four-byte value that must not be 0 (Receive Maximum, Topic Alias, Maximum
/// Packet Size): Protocol Error.
fn nonzero<T: PartialEq + Default>(v: T, id: u8) -> Result<T, DecodeError> {
    if v == T::default() {
        Err(DecodeError::InvalidPropertyValue(id))
    } else {
        Ok(v)
    }
}

impl<'a> Property<'a> {
    /// Read one identifier and its value, checking the value's type and range (not whether the
    /// packet allows it: that is `parse_block`'s job). O(value length).
    fn read(r: &mut Reader<'a>) -> Result<Property<'a>, DecodeError> {
        // The identifier is a variable byte integer, but every defined one is a single byte: a
        // first byte with the continuation bit is not a defined identifier.
        let id = r.u8()?;
        use Property as P;
        Ok(match id {
            PAYLOAD_FORMAT_INDICATOR => P::PayloadFormatIndicator(zero_or_one(r, id)?),
            MESSAGE_EXPIRY_INTERVAL => P::MessageExpiryInterval(r.u32()?),
            CONTENT_TYPE => P::ContentType(r.string()?),
            RESPONSE_TOPIC => {
                // 3.3.2-14 / 3.1.3-?: a topic name, so no wildcards.
                let t = r.string()?;
                if !valid_topic_name(t) {
                    return Err(DecodeError::InvalidPropertyValue(id));
                }
                P::ResponseTopic(t)
            }
            CORRELATION_DATA => P::CorrelationData(r.binary()?),
            SUBSCRIPTION_IDENTIFIER => P::SubscriptionIdentifier(nonzero(r.varint()?, id)?),
            SESSION_EXPIRY_INTERVAL => P::SessionExpiryInterval(r.u32()?),
            ASSIGNED_CLIENT_IDENTIFIER => P::AssignedClientIdentifier(r.string()?),
            SERVER_KEEP_ALIVE => P::ServerKeepAlive(r.u16()?),
            AUTHENTICATION_METHOD => P::AuthenticationMethod(r.string()?),
            AUTHENTICATION_DATA => P::AuthenticationData(r.binary()?),
            REQUEST_PROBLEM_INFORMATION => P::RequestProblemInformation(zero_or_one(r, id)?),
            WILL_DELAY_INTERVAL => P::WillDelayInterval(r.u32()?),
            REQUEST_RESPONSE_INFORMATION => P::RequestResponseInformation(zero_or_one(r, id)?),
            RESPONSE_INFORMATION => P::ResponseInformation(r.string()?),
            SERVER_REFERENCE => P::ServerReference(r.string()?),
            REASON_STRING => P::ReasonString(r.string()?),
            RECEIVE_MAXIMUM => P::ReceiveMaximum(nonzero(r.u16()?, id)?),
            TOPIC_ALIAS_MAXIMUM => P::TopicAliasMaximum(r.u16()?),
            TOPIC_ALIAS => P::TopicAlias(nonzero(r.u16()?, id)?),
            MAXIMUM_QOS => P::MaximumQoS(zero_or_one(r, id)?),
            RETAIN_AVAILABLE => P::RetainAvailable(zero_or_one(r, id)?),
            USER_PROPERTY => {
                let key = r.string()?;
                P::UserProperty(key, r.string()?)
            }
            MAXIMUM_PACKET_SIZE => P::MaximumPacketSize(nonzero(r.u32()?, id)?),
            WILDCARD_SUBSCRIPTION_AVAILABLE => P::WildcardSubscriptionAvailable(zero_or_one(r, id)?),
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => P::SubscriptionIdentifierAvailable(zero_or_one(r, id)?),
            SHARED_SUBSCRIPTION_AVAILABLE => P::SharedSubscriptionAvailable(zero_or_one(r, id)?),
            _ => return Err(DecodeError::UnknownProperty(id)),
        })
    }

    /// The identifier of this property.
    pub fn id(&self) -> u8 {
        use Property as P;
        match self {
            P::PayloadFormatIndicator(_) => PAYLOAD_FORMAT_INDICATOR,
            P::MessageExpiryInterval(_) => MESSAGE_EXPIRY_INTERVAL,
            P::ContentType(_) => CONTENT_TYPE,
            P::ResponseTopic(_) => RESPONSE_TOPIC,
            P::CorrelationData(_) => CORRELATION_DATA,
            P::SubscriptionIdentifier(_) => SUBSCRIPTION_IDENTIFIER,
            P::SessionExpiryInterval(_) => SESSION_EXPIRY_INTERVAL,
            P::AssignedClientIdentifier(_) => ASSIGNED_CLIENT_IDENTIFIER,
            P::ServerKeepAlive(_) => SERVER_KEEP_ALIVE,
            P::AuthenticationMethod(_) => AUTHENTICATION_METHOD,
            P::AuthenticationData(_) => AUTHENTICATION_DATA,
            P::RequestProblemInformation(_) => REQUEST_PROBLEM_INFORMATION,
            P::WillDelayInterval(_) => WILL_DELAY_INTERVAL,
            P::RequestResponseInformation(_) => REQUEST_RESPONSE_INFORMATION,
            P::ResponseInformation(_) => RESPONSE_INFORMATION,
            P::ServerReference(_) => SERVER_REFERENCE,
            P::ReasonString(_) => REASON_STRING,
            P::ReceiveMaximum(_) => RECEIVE_MAXIMUM,
            P::TopicAliasMaximum(_) => TOPIC_ALIAS_MAXIMUM,
            P::TopicAlias(_) => TOPIC_ALIAS,
            P::MaximumQoS(_) => MAXIMUM_QOS,
            P::RetainAvailable(_) => RETAIN_AVAILABLE,
            P::UserProperty(..) => USER_PROPERTY,
            P::MaximumPacketSize(_) => MAXIMUM_PACKET_SIZE,
            P::WildcardSubscriptionAvailable(_) => WILDCARD_SUBSCRIPTION_AVAILABLE,
            P::SubscriptionIdentifierAvailable(_) => SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            P::SharedSubscriptionAvailable(_) => SHARED_SUBSCRIPTION_AVAILABLE,
        }
    }

    /// Bytes the property takes on the wire (identifier included).
    pub fn encoded_len(&self) -> usize {
        use Property as P;
        1 + match self {
            P::PayloadFormatIndicator(_)
            | P::RequestProblemInformation(_)
            | P::RequestResponseInformation(_)
            | P::MaximumQoS(_)
            | P::RetainAvailable(_)
            | P::WildcardSubscriptionAvailable(_)
            | P::SubscriptionIdentifierAvailable(_)
            | P::SharedSubscriptionAvailable(_) => 1,
            P::ServerKeepAlive(_) | P::ReceiveMaximum(_) | P::TopicAliasMaximum(_) | P::TopicAlias(_) => 2,
            P::MessageExpiryInterval(_)
            | P::SessionExpiryInterval(_)
            | P::WillDelayInterval(_)
            | P::MaximumPacketSize(_) => 4,
            P::SubscriptionIdentifier(v) => varint_len(*v as usize),
            P::ContentType(s)
            | P::ResponseTopic(s)
            | P::AssignedClientIdentifier(s)
            | P::AuthenticationMethod(s)
            | P::ResponseInformation(s)
            | P::ServerReference(s)
            | P::ReasonString(s) => field_len(s.as_bytes()),
            P::CorrelationData(b) | P::AuthenticationData(b) => field_len(b),
            P::UserProperty(k, v) => field_len(k.as_bytes()) + field_len(v.as_bytes()),
        }
    }

    /// Append the property (identifier and value).
    pub fn write(&self, out: &mut Vec<u8>) {
        use Property as P;
        out.push(self.id());
        match self {
            P::PayloadFormatIndicator(v)
            | P::RequestProblemInformation(v)
            | P::RequestResponseInformation(v)
            | P::MaximumQoS(v)
            | P::RetainAvailable(v)
            | P::WildcardSubscriptionAvailable(v)
            | P::SubscriptionIdentifierAvailable(v)
            | P::SharedSubscriptionAvailable(v) => out.push(*v),
            P::ServerKeepAlive(v) | P::ReceiveMaximum(v) | P::TopicAliasMaximum(v) | P::TopicAlias(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            P::MessageExpiryInterval(v)
            | P::SessionExpiryInterval(v)
            | P::WillDelayInterval(v)
            | P::MaximumPacketSize(v) => out.extend_from_slice(&v.to_be_bytes()),
            P::SubscriptionIdentifier(v) => put_varint(out, *v as usize),
            P::ContentType(s)
            | P::ResponseTopic(s)
            | P::AssignedClientIdentifier(s)
            | P::AuthenticationMethod(s)
            | P::ResponseInformation(s)
            | P::ServerReference(s)
            | P::ReasonString(s) => put_field(out, s.as_bytes()),
            P::CorrelationData(b) | P::AuthenticationData(b) => put_field(out, b),
            P::UserProperty(k, v) => {
                put_field(out, k.as_bytes());
                put_field(out, v.as_bytes());
            }
        }
    }
}

/// Read a property block (variable byte integer length, then that many bytes) of packet kind
/// `packet`, validating every property in one pass and handing each to `each`. Returns the
/// block (without its length). O(block length); no allocation.
pub(super) fn parse_block<'a>(
    r: &mut Reader<'a>,
    packet: u8,
    mut each: impl FnMut(Property<'a>),
) -> Result<&'a [u8], DecodeError> {
    let len = r.varint()?;
    let block = r.take(len as usize)?;
    let mut b = Reader { rest: block };
    // Every defined identifier is below 64: one bit each.
    let mut seen = 0u64;
    while !b.is_empty() {
        let p = Property::read(&mut b)?;
        let id = p.id();
        if !allowed_in(id, packet) {
            return Err(DecodeError::PropertyNotAllowed { id, packet_type: packet });
        }
        // 3.3.4-4: a PUBLISH to a subscriber carries one identifier per matching subscription.
        let repeatable = id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && packet == super::codec::PUBLISH);
        let bit = 1u64 << id;
        if seen & bit != 0 && !repeatable {
            return Err(DecodeError::DuplicateProperty(id));
        }
        seen |= bit;
        each(p);
    }
    Ok(block)
}

/// Append a property block: its length as a variable byte integer computed up front, then the
/// properties `each` produces (called twice: once to count, once to write).
pub(super) fn put_block<'a>(out: &mut Vec<u8>, each: impl Fn(&mut dyn FnMut(Property<'a>))) {
    let mut len = 0usize;
    each(&mut |p| len += p.encoded_len());
    put_varint(out, len);
    out.reserve(len);
    each(&mut |p| p.write(out));
}

/// Bytes `put_block` would write.
pub(super) fn block_len<'a>(each: impl Fn(&mut dyn FnMut(Property<'a>))) -> usize {
    let mut len = 0usize;
    each(&mut |p| len += p.encoded_len());
    varint_len(len) + len
}

/// The properties of an already validated block, in wire order. Stops at the first byte that
/// is not a property (which a block from the decoder never has).
#[derive(Debug, Clone)]
pub struct PropertyIter<'a> {
    r: Reader<'a>,
}

impl<'a> PropertyIter<'a> {
    pub fn new(block: &'a [u8]) -> Self {
        PropertyIter { r: Reader { rest: block } }
    }
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = Property<'a>;
    fn next(&mut self) -> Option<Property<'a>> {
        if self.r.is_empty() {
            return None;
        }
        match Property::read(&mut self.r) {
            Ok(p) => Some(p),
            Err(_) => {
                self.r.rest = &[];
                None
            }
        }
    }
}

/// The User Properties (2.2.2.2, 3.1.2.11.8) of a packet as (name, value) pairs in wire order,
/// borrowed from its property block. Iterating is O(block length).
#[derive(Clone, Copy, Default)]
pub struct UserProperties<'a> {
    block: &'a [u8],
}

impl<'a> UserProperties<'a> {
    pub const EMPTY: UserProperties<'static> = UserProperties { block: &[] };

    /// Over a property block from the decoder (other properties in it are skipped).
    pub(super) fn in_block(block: &'a [u8]) -> Self {
        UserProperties { block }
    }

    /// Over a block of User Properties built with `write_user_property` (to send some).
    /// Anything else in the block is refused.
    pub fn from_block(block: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { rest: block };
        while !r.is_empty() {
            let p = Property::read(&mut r)?;
            if p.id() != USER_PROPERTY {
                return Err(DecodeError::PropertyNotAllowed { id: p.id(), packet_type: 0 });
            }
        }
        Ok(UserProperties { block })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        PropertyIter::new(self.block).filter_map(|p| match p {
            Property::UserProperty(k, v) => Some((k, v)),
            _ => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub(super) fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        for (k, v) in self.iter() {
            f(Property::UserProperty(k, v));
        }
    }
}

/// Append one User Property (identifier, name, value) to a block for `UserProperties::from_block`.
pub fn write_user_property(out: &mut Vec<u8>, name: &str, value: &str) {
    Property::UserProperty(name, value).write(out);
}

/// Equal when the pairs are, in order: blocks with other properties around them compare equal.
impl PartialEq for UserProperties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for UserProperties<'_> {}

impl std::fmt::Debug for UserProperties<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The Subscription Identifiers of a PUBLISH (3.3.2.3.8), in wire order, over its block.
#[derive(Clone, Copy, Default)]
pub struct SubscriptionIdentifiers<'a> {
    block: &'a [u8],
}

impl<'a> SubscriptionIdentifiers<'a> {
    pub(super) fn in_block(block: &'a [u8]) -> Self {
        SubscriptionIdentifiers { block }
    }

    /// Over a block of Subscription Identifier properties (to encode a PUBLISH with some).
    pub fn from_block(block: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { rest: block };
        while !r.is_empty() {
            let p = Property::read(&mut r)?;
            if p.id() != SUBSCRIPTION_IDENTIFIER {
                return Err(DecodeError::PropertyNotAllowed { id: p.id(), packet_type: 3 });
            }
        }
        Ok(SubscriptionIdentifiers { block })
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        PropertyIter::new(self.block).filter_map(|p| match p {
            Property::SubscriptionIdentifier(v) => Some(v),
            _ => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub(super) fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        for v in self.iter() {
            f(Property::SubscriptionIdentifier(v));
        }
    }
}

impl PartialEq for SubscriptionIdentifiers<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for SubscriptionIdentifiers<'_> {}

impl std::fmt::Debug for SubscriptionIdentifiers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
#[path = "properties_tests.rs"]
mod tests;
