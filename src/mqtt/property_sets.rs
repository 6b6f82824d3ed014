//! The typed property sets of each MQTT 5.0 packet: the fields the broker acts on, decoded in
//! the one validating pass of `parse_block`, and the repeatable properties over the borrowed
//! block. `Default` is "no properties", so building a 3.1.1 packet costs a few zero stores.
use super::codec::Reader;
use super::error::DecodeError;
use super::properties::{
    parse_block, put_block, Property, PropertyIter, SubscriptionIdentifiers, UserProperties, WILL_PROPERTIES,
};

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const SUBSCRIBE: u8 = 8;
const UNSUBSCRIBE: u8 = 10;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// Emit `$p` when the option is set.
macro_rules! opt {
    ($f:expr, $v:expr, $p:path) => {
        if let Some(v) = $v {
            $f($p(v));
        }
    };
}

/// CONNECT properties (3.1.2.11), with the spec's defaults for absent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectProperties<'a> {
    /// Seconds; 0 (the default) ends the session with the connection.
    pub session_expiry_interval: u32,
    /// None: 65,535 (3.1.2.11.3).
    pub receive_maximum: Option<u16>,
    /// None: no limit beyond the protocol's.
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: u16,
    pub request_response_information: bool,
    pub request_problem_information: bool,
    pub authentication_method: Option<&'a str>,
    pub authentication_data: Option<&'a [u8]>,
    pub user_properties: UserProperties<'a>,
}

impl Default for ConnectProperties<'_> {
    fn default() -> Self {
        ConnectProperties {
            session_expiry_interval: 0,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            request_response_information: false,
            request_problem_information: true,
            authentication_method: None,
            authentication_data: None,
            user_properties: UserProperties::EMPTY,
        }
    }
}

impl<'a> ConnectProperties<'a> {
    pub(super) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut c = ConnectProperties::default();
        let block = parse_block(r, CONNECT, |p| match p {
            Property::SessionExpiryInterval(v) => c.session_expiry_interval = v,
            Property::ReceiveMaximum(v) => c.receive_maximum = Some(v),
            Property::MaximumPacketSize(v) => c.maximum_packet_size = Some(v),
            Property::TopicAliasMaximum(v) => c.topic_alias_maximum = v,
            Property::RequestResponseInformation(v) => c.request_response_information = v == 1,
            Property::RequestProblemInformation(v) => c.request_problem_information = v == 1,
            Property::AuthenticationMethod(v) => c.authentication_method = Some(v),
            Property::AuthenticationData(v) => c.authentication_data = Some(v),
            _ => {}
        })?;
        // 3.1.2.11.10: "It is a Protocol Error to include Authentication Data if there is no
        // Authentication Method".
        if c.authentication_data.is_some() && c.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        c.user_properties = UserProperties::in_block(block);
        Ok(c)
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        if self.session_expiry_interval != 0 {
            f(Property::SessionExpiryInterval(self.session_expiry_interval));
        }
        opt!(f, self.receive_maximum, Property::ReceiveMaximum);
        opt!(f, self.maximum_packet_size, Property::MaximumPacketSize);
        if self.topic_alias_maximum != 0 {
            f(Property::TopicAliasMaximum(self.topic_alias_maximum));
        }
        if self.request_response_information {
            f(Property::RequestResponseInformation(1));
        }
        if !self.request_problem_information {
            f(Property::RequestProblemInformation(0));
        }
        opt!(f, self.authentication_method, Property::AuthenticationMethod);
        opt!(f, self.authentication_data, Property::AuthenticationData);
        self.user_properties.each(f);
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_block(out, |f| self.each(f));
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::properties::block_len(|f| self.each(f))
    }
}

/// Append the properties a message forwards unchanged (everything but the ones the broker
/// rewrites per subscriber: Topic Alias, Message Expiry Interval, Subscription Identifiers).
fn forward_each<'a>(m: &MessageFields<'a>, user: &UserProperties<'a>, f: &mut dyn FnMut(Property<'a>)) {
    opt!(f, m.payload_format_indicator, Property::PayloadFormatIndicator);
    opt!(f, m.content_type, Property::ContentType);
    opt!(f, m.response_topic, Property::ResponseTopic);
    opt!(f, m.correlation_data, Property::CorrelationData);
    user.each(f);
}

struct MessageFields<'a> {
    payload_format_indicator: Option<u8>,
    content_type: Option<&'a str>,
    response_topic: Option<&'a str>,
    correlation_data: Option<&'a [u8]>,
}

/// Will properties (3.1.3.2): those of the PUBLISH the will becomes, and its delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WillProperties<'a> {
    /// Seconds after the connection ends before the will is published (default 0).
    pub will_delay_interval: u32,
    /// 1: the payload is UTF-8 (3.1.3.2.3).
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<&'a str>,
    pub response_topic: Option<&'a str>,
    pub correlation_data: Option<&'a [u8]>,
    pub user_properties: UserProperties<'a>,
}

impl<'a> WillProperties<'a> {
    pub(super) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut w = WillProperties::default();
        let block = parse_block(r, WILL_PROPERTIES, |p| match p {
            Property::WillDelayInterval(v) => w.will_delay_interval = v,
            Property::PayloadFormatIndicator(v) => w.payload_format_indicator = Some(v),
            Property::MessageExpiryInterval(v) => w.message_expiry_interval = Some(v),
            Property::ContentType(v) => w.content_type = Some(v),
            Property::ResponseTopic(v) => w.response_topic = Some(v),
            Property::CorrelationData(v) => w.correlation_data = Some(v),
            _ => {}
        })?;
        w.user_properties = UserProperties::in_block(block);
        Ok(w)
    }

    fn fields(&self) -> MessageFields<'a> {
        MessageFields {
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type,
            response_topic: self.response_topic,
            correlation_data: self.correlation_data,
        }
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        if self.will_delay_interval != 0 {
            f(Property::WillDelayInterval(self.will_delay_interval));
        }
        opt!(f, self.message_expiry_interval, Property::MessageExpiryInterval);
        forward_each(&self.fields(), &self.user_properties, f);
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_block(out, |f| self.each(f));
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::properties::block_len(|f| self.each(f))
    }

    /// Append the properties the will's PUBLISH carries unchanged to every subscriber (no
    /// length prefix; see `PublishProperties::forward`). O(properties).
    pub fn forward(&self, out: &mut Vec<u8>) {
        forward_each(&self.fields(), &self.user_properties, &mut |p| p.write(out));
    }
}

/// PUBLISH properties (3.3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishProperties<'a> {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    /// Never 0 (3.3.2.3.4).
    pub topic_alias: Option<u16>,
    /// A topic name: no wildcards (3.3.2-14).
    pub response_topic: Option<&'a str>,
    pub correlation_data: Option<&'a [u8]>,
    /// Only a server sends these (3.3.4-6): a client's are for the broker to refuse.
    pub subscription_identifiers: SubscriptionIdentifiers<'a>,
    pub content_type: Option<&'a str>,
    pub user_properties: UserProperties<'a>,
}

/// A PUBLISH's property block as it came off the wire (without its length), validated by the
/// decoder and read with `get` only where the broker needs it: a 3.1.1 PUBLISH and a 5.0 one
/// without properties carry an empty slice, so `Publish` stays small on the hot path. 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishPropertyBlock<'a> {
    block: &'a [u8],
}

impl<'a> PublishPropertyBlock<'a> {
    pub const EMPTY: PublishPropertyBlock<'static> = PublishPropertyBlock { block: &[] };

    /// Read and validate a PUBLISH property block (3.3.2.3); also says whether it holds a
    /// Topic Alias (the decoder needs that for an empty topic). O(block length).
    #[inline(always)]
    pub(super) fn decode(r: &mut Reader<'a>) -> Result<(Self, bool), DecodeError> {
        // The common case: no properties, one byte, nothing to parse.
        if let [0, rest @ ..] = r.rest {
            r.rest = rest;
            return Ok((PublishPropertyBlock::EMPTY, false));
        }
        Self::decode_block(r)
    }

    #[inline(never)]
    fn decode_block(r: &mut Reader<'a>) -> Result<(Self, bool), DecodeError> {
        let mut alias = false;
        let block = parse_block(r, PUBLISH, |p| alias |= matches!(p, Property::TopicAlias(_)))?;
        Ok((PublishPropertyBlock { block }, alias))
    }

    /// Validate `block` (property content without the length) as a PUBLISH's, to build one.
    pub fn new(block: &'a [u8]) -> Result<Self, DecodeError> {
        let mut framed = Vec::with_capacity(block.len() + 4);
        super::codec::put_varint(&mut framed, block.len());
        framed.extend_from_slice(block);
        parse_block(&mut Reader { rest: &framed }, PUBLISH, |_| {})?;
        Ok(PublishPropertyBlock { block })
    }

    /// `block` as it is, unvalidated: for a client or test that means to send what it wrote
    /// (a decoder never hands one out).
    pub fn raw(block: &'a [u8]) -> Self {
        PublishPropertyBlock { block }
    }

    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The typed properties. O(block length); the block was validated, so nothing can fail.
    pub fn get(&self) -> PublishProperties<'a> {
        let mut m = PublishProperties::default();
        if self.block.is_empty() {
            return m;
        }
        for p in PropertyIter::new(self.block) {
            match p {
                Property::PayloadFormatIndicator(v) => m.payload_format_indicator = Some(v),
                Property::MessageExpiryInterval(v) => m.message_expiry_interval = Some(v),
                Property::TopicAlias(v) => m.topic_alias = Some(v),
                Property::ResponseTopic(v) => m.response_topic = Some(v),
                Property::CorrelationData(v) => m.correlation_data = Some(v),
                Property::ContentType(v) => m.content_type = Some(v),
                _ => {}
            }
        }
        m.subscription_identifiers = SubscriptionIdentifiers::in_block(self.block);
        m.user_properties = UserProperties::in_block(self.block);
        m
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        super::codec::put_varint(out, self.block.len());
        out.extend_from_slice(self.block);
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::codec::varint_len(self.block.len()) + self.block.len()
    }
}

impl<'a> PublishProperties<'a> {
    /// The wire form of these properties (without the length), for `PublishPropertyBlock::new`.
    pub fn to_block(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.each(&mut |p| p.write(&mut out));
        out
    }

    fn fields(&self) -> MessageFields<'a> {
        MessageFields {
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type,
            response_topic: self.response_topic,
            correlation_data: self.correlation_data,
        }
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        opt!(f, self.topic_alias, Property::TopicAlias);
        opt!(f, self.message_expiry_interval, Property::MessageExpiryInterval);
        self.subscription_identifiers.each(f);
        forward_each(&self.fields(), &self.user_properties, f);
    }

    /// Append the properties forwarded unchanged to every subscriber (no length prefix), for the
    /// broker to keep with the message and hand to `encode_publish_header` in
    /// `PublishV5Extras::forwarded`: Payload Format Indicator, Content Type, Response Topic,
    /// Correlation Data, then the User Properties in their wire order (3.3.2.3.7: the order is
    /// kept). Topic Alias, Message Expiry Interval and Subscription Identifiers are left out:
    /// the broker writes its own per subscriber. O(properties).
    pub fn forward(&self, out: &mut Vec<u8>) {
        forward_each(&self.fields(), &self.user_properties, &mut |p| p.write(out));
    }
}

/// CONNACK properties (3.2.2.3): what the server states about itself. `None`: not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnackProperties<'a> {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    /// 0 or 1; absent means 2 (3.2.2.3.4).
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<&'a str>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<&'a str>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<&'a str>,
    pub server_reference: Option<&'a str>,
    pub authentication_method: Option<&'a str>,
    pub authentication_data: Option<&'a [u8]>,
    pub user_properties: UserProperties<'a>,
}

impl<'a> ConnackProperties<'a> {
    pub(super) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut c = ConnackProperties::default();
        let block = parse_block(r, CONNACK, |p| match p {
            Property::SessionExpiryInterval(v) => c.session_expiry_interval = Some(v),
            Property::ReceiveMaximum(v) => c.receive_maximum = Some(v),
            Property::MaximumQoS(v) => c.maximum_qos = Some(v),
            Property::RetainAvailable(v) => c.retain_available = Some(v == 1),
            Property::MaximumPacketSize(v) => c.maximum_packet_size = Some(v),
            Property::AssignedClientIdentifier(v) => c.assigned_client_identifier = Some(v),
            Property::TopicAliasMaximum(v) => c.topic_alias_maximum = Some(v),
            Property::ReasonString(v) => c.reason_string = Some(v),
            Property::WildcardSubscriptionAvailable(v) => c.wildcard_subscription_available = Some(v == 1),
            Property::SubscriptionIdentifierAvailable(v) => c.subscription_identifiers_available = Some(v == 1),
            Property::SharedSubscriptionAvailable(v) => c.shared_subscription_available = Some(v == 1),
            Property::ServerKeepAlive(v) => c.server_keep_alive = Some(v),
            Property::ResponseInformation(v) => c.response_information = Some(v),
            Property::ServerReference(v) => c.server_reference = Some(v),
            Property::AuthenticationMethod(v) => c.authentication_method = Some(v),
            Property::AuthenticationData(v) => c.authentication_data = Some(v),
            _ => {}
        })?;
        if c.authentication_data.is_some() && c.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        c.user_properties = UserProperties::in_block(block);
        Ok(c)
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        let flag = |b: bool| u8::from(b);
        opt!(f, self.session_expiry_interval, Property::SessionExpiryInterval);
        opt!(f, self.receive_maximum, Property::ReceiveMaximum);
        opt!(f, self.maximum_qos, Property::MaximumQoS);
        opt!(f, self.retain_available.map(flag), Property::RetainAvailable);
        opt!(f, self.maximum_packet_size, Property::MaximumPacketSize);
        opt!(f, self.assigned_client_identifier, Property::AssignedClientIdentifier);
        opt!(f, self.topic_alias_maximum, Property::TopicAliasMaximum);
        opt!(f, self.reason_string, Property::ReasonString);
        opt!(f, self.wildcard_subscription_available.map(flag), Property::WildcardSubscriptionAvailable);
        opt!(f, self.subscription_identifiers_available.map(flag), Property::SubscriptionIdentifierAvailable);
        opt!(f, self.shared_subscription_available.map(flag), Property::SharedSubscriptionAvailable);
        opt!(f, self.server_keep_alive, Property::ServerKeepAlive);
        opt!(f, self.response_information, Property::ResponseInformation);
        opt!(f, self.server_reference, Property::ServerReference);
        opt!(f, self.authentication_method, Property::AuthenticationMethod);
        opt!(f, self.authentication_data, Property::AuthenticationData);
        self.user_properties.each(f);
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_block(out, |f| self.each(f));
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::properties::block_len(|f| self.each(f))
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK (3.4.2.2, ...): a
/// reason string and user properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AckProperties<'a> {
    pub reason_string: Option<&'a str>,
    pub user_properties: UserProperties<'a>,
}

impl<'a> AckProperties<'a> {
    pub const EMPTY: AckProperties<'static> =
        AckProperties { reason_string: None, user_properties: UserProperties::EMPTY };

    /// `packet_type` is the ack's MQTT packet type (4..=7, 9 or 11).
    pub(super) fn decode(r: &mut Reader<'a>, packet_type: u8) -> Result<Self, DecodeError> {
        let mut a = AckProperties::default();
        let block = parse_block(r, packet_type, |p| {
            if let Property::ReasonString(v) = p {
                a.reason_string = Some(v);
            }
        })?;
        a.user_properties = UserProperties::in_block(block);
        Ok(a)
    }

    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        opt!(f, self.reason_string, Property::ReasonString);
        self.user_properties.each(f);
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_block(out, |f| self.each(f));
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::properties::block_len(|f| self.each(f))
    }
}

/// SUBSCRIBE properties (3.8.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscribeProperties<'a> {
    /// 1..=268,435,455, at most one (3.8.2.1.2).
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties<'a>,
}

impl<'a> SubscribeProperties<'a> {
    pub(super) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut s = SubscribeProperties::default();
        let block = parse_block(r, SUBSCRIBE, |p| {
            if let Property::SubscriptionIdentifier(v) = p {
                s.subscription_identifier = Some(v);
            }
        })?;
        s.user_properties = UserProperties::in_block(block);
        Ok(s)
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        opt!(f, self.subscription_identifier, Property::SubscriptionIdentifier);
        self.user_properties.each(f);
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_block(out, |f| self.each(f));
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::properties::block_len(|f| self.each(f))
    }
}

/// UNSUBSCRIBE properties (3.10.2.1): user properties only.
pub(super) fn decode_unsubscribe_properties<'a>(r: &mut Reader<'a>) -> Result<UserProperties<'a>, DecodeError> {
    let block = parse_block(r, UNSUBSCRIBE, |_| {})?;
    Ok(UserProperties::in_block(block))
}

pub(super) fn encode_user_properties(u: &UserProperties<'_>, out: &mut Vec<u8>) {
    put_block(out, |f| u.each(f));
}

pub(super) fn user_properties_len(u: &UserProperties<'_>) -> usize {
    super::properties::block_len(|f| u.each(f))
}

/// DISCONNECT properties (3.14.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DisconnectProperties<'a> {
    /// From the client only, and not to non-zero from a zero CONNECT value (3.14.2.2.2; the
    /// broker checks that).
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<&'a str>,
    pub server_reference: Option<&'a str>,
    pub user_properties: UserProperties<'a>,
}

impl<'a> DisconnectProperties<'a> {
    pub const EMPTY: DisconnectProperties<'static> = DisconnectProperties {
        session_expiry_interval: None,
        reason_string: None,
        server_reference: None,
        user_properties: UserProperties::EMPTY,
    };

    pub(super) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut d = DisconnectProperties::default();
        let block = parse_block(r, DISCONNECT, |p| match p {
            Property::SessionExpiryInterval(v) => d.session_expiry_interval = Some(v),
            Property::ReasonString(v) => d.reason_string = Some(v),
            Property::ServerReference(v) => d.server_reference = Some(v),
            _ => {}
        })?;
        d.user_properties = UserProperties::in_block(block);
        Ok(d)
    }

    pub fn is_empty(&self) -> bool {
        self.session_expiry_interval.is_none()
            && self.reason_string.is_none()
            && self.server_reference.is_none()
            && self.user_properties.is_empty()
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        opt!(f, self.session_expiry_interval, Property::SessionExpiryInterval);
        opt!(f, self.reason_string, Property::ReasonString);
        opt!(f, self.server_reference, Property::ServerReference);
        self.user_properties.each(f);
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_block(out, |f| self.each(f));
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::properties::block_len(|f| self.each(f))
    }
}

/// AUTH properties (3.15.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthProperties<'a> {
    pub authentication_method: Option<&'a str>,
    pub authentication_data: Option<&'a [u8]>,
    pub reason_string: Option<&'a str>,
    pub user_properties: UserProperties<'a>,
}

impl<'a> AuthProperties<'a> {
    pub(super) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut a = AuthProperties::default();
        let block = parse_block(r, AUTH, |p| match p {
            Property::AuthenticationMethod(v) => a.authentication_method = Some(v),
            Property::AuthenticationData(v) => a.authentication_data = Some(v),
            Property::ReasonString(v) => a.reason_string = Some(v),
            _ => {}
        })?;
        if a.authentication_data.is_some() && a.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        a.user_properties = UserProperties::in_block(block);
        Ok(a)
    }

    pub fn is_empty(&self) -> bool {
        self.authentication_method.is_none()
            && self.authentication_data.is_none()
            && self.reason_string.is_none()
            && self.user_properties.is_empty()
    }

    fn each(&self, f: &mut dyn FnMut(Property<'a>)) {
        opt!(f, self.authentication_method, Property::AuthenticationMethod);
        opt!(f, self.authentication_data, Property::AuthenticationData);
        opt!(f, self.reason_string, Property::ReasonString);
        self.user_properties.each(f);
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        put_block(out, |f| self.each(f));
    }

    pub(super) fn encoded_len(&self) -> usize {
        super::properties::block_len(|f| self.each(f))
    }
}
