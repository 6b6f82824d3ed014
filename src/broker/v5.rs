//! MQTT 5.0 in the core: the state only a 5.0 connection or message has (boxed, so a 3.1.1
//! connection pays one null pointer for it), CONNACK properties, topic aliases from the client,
//! message expiry, the server's DISCONNECT reason codes, and the hook for enhanced
//! authentication. The 3.1.1 paths call in here only behind a level (or `Option`) check.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CloseReason, Core, ProtocolError};
use crate::mqtt::{
    ConnackProperties, ConnectProperties, PublishProperties, PublishPropertyBlock, QoS, ReasonCode, WillProperties,
};
use crate::router::Message;
use crate::session::Outgoing;

/// The most topic aliases a client may define toward us (CONNACK Topic Alias Maximum): the
/// alias table of a connection never holds more.
pub const TOPIC_ALIAS_MAXIMUM: u16 = 10;
/// The most aliases we define toward one client (fewer if its Topic Alias Maximum says so): the
/// busiest topics of a subscriber are usually few.
pub const OUTGOING_ALIASES: u16 = 16;
/// Session Expiry Interval meaning "never" (3.1.2.11.2).
const NEVER: u32 = u32::MAX;
/// The protocol's largest packet (2.2.3): a Maximum Packet Size at or above it is not sent.
const PROTOCOL_MAX_PACKET: usize = 268_435_455;

/// Enhanced authentication methods (4.12) midge implements: none yet. A method (SCRAM-SHA-256,
/// say) becomes a variant named by `from_name`, and its AUTH exchange a state on `ConnV5`; a
/// CONNECT naming any other method is refused with 0x8C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {}

impl AuthMethod {
    pub fn from_name(_name: &str) -> Option<AuthMethod> {
        None
    }
}

/// The 5.0 state of one connection (`Connection::v5`; `None` below 5.0).
#[derive(Debug)]
pub struct ConnV5 {
    /// The client's Receive Maximum: caps our in-flight window toward it (3.3.4-9).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size: nothing larger is sent to it (3.1.2-24/25).
    pub maximum_packet_size: usize,
    /// Session Expiry Interval from CONNECT, as updated by DISCONNECT (seconds; `NEVER`).
    pub session_expiry: u32,
    /// Will Delay Interval (seconds).
    pub will_delay: u32,
    /// The will's Message Expiry Interval, started when the will is published.
    pub will_expiry: Option<u32>,
    /// Alias - 1 -> topic, as the client defined them; at most `TOPIC_ALIAS_MAXIMUM` entries.
    aliases: Vec<Option<Rc<str>>>,
    /// PUBLISHes not sent because they exceeded the client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// Aliases we defined toward the client (alias - 1 -> topic), first come first served, at
    /// most min(its Topic Alias Maximum, `OUTGOING_ALIASES`).
    out_aliases: Vec<Rc<str>>,
    out_alias_max: u16,
}

impl ConnV5 {
    pub fn new(p: &ConnectProperties<'_>, will: Option<&WillProperties<'_>>) -> Self {
        ConnV5 {
            // 3.1.2.11.3: absent is 65,535 (0 is refused by the codec).
            receive_maximum: p.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: p.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
            session_expiry: p.session_expiry_interval,
            will_delay: will.map_or(0, |w| w.will_delay_interval),
            will_expiry: will.and_then(|w| w.message_expiry_interval),
            aliases: Vec::new(),
            dropped_too_large: 0,
            out_aliases: Vec::new(),
            out_alias_max: p.topic_alias_maximum.min(OUTGOING_ALIASES),
        }
    }

    /// Whether this client takes topic aliases from us (its Topic Alias Maximum is not 0).
    pub fn sends_aliases(&self) -> bool {
        self.out_alias_max != 0
    }

    /// The alias for `topic` toward this client, and whether the client knows it already (then
    /// the topic itself is left out, 3.3.2.3.4). A new topic takes a free alias while there is
    /// one; later topics go without. O(aliases), at most `OUTGOING_ALIASES`.
    pub fn outgoing_alias(&mut self, topic: &Rc<str>) -> Option<(u16, bool)> {
        if self.out_alias_max == 0 {
            return None;
        }
        if let Some(i) = self.out_aliases.iter().position(|t| Rc::ptr_eq(t, topic) || **t == **topic) {
            return Some((u16::try_from(i + 1).ok()?, true));
        }
        if self.out_aliases.len() >= usize::from(self.out_alias_max) {
            return None;
        }
        self.out_aliases.push(Rc::clone(topic));
        Some((u16::try_from(self.out_aliases.len()).ok()?, false))
    }

    /// Resolve the Topic Alias of an inbound PUBLISH (3.3.2.3.4): a topic with an alias
    /// (re)defines it, an empty topic uses it. Returns the stored topic for an empty one.
    /// O(topic length) to define, O(1) to use.
    fn resolve_alias(&mut self, alias: u16, topic: &str) -> Result<Option<Rc<str>>, ProtocolError> {
        // 3.3.2-8/9: 0 and values above our maximum are errors.
        if alias == 0 || alias > TOPIC_ALIAS_MAXIMUM {
            return Err(ProtocolError::TopicAliasInvalid(alias));
        }
        let index = usize::from(alias - 1);
        if topic.is_empty() {
            return match self.aliases.get(index) {
                Some(Some(t)) => Ok(Some(Rc::clone(t))),
                _ => Err(ProtocolError::UnknownTopicAlias(alias)),
            };
        }
        if self.aliases.len() <= index {
            self.aliases.resize(index + 1, None);
        }
        if let Some(slot) = self.aliases.get_mut(index) {
            *slot = Some(Rc::from(topic));
        }
        Ok(None)
    }
}

/// What a 5.0 publisher's message carries beyond a 3.1.1 one (`Message::v5`; `None` for 3.1.1
/// publishers and for 5.0 ones without properties).
#[derive(Debug)]
pub struct MessageV5 {
    /// `PublishProperties::forward` / `WillProperties::forward` bytes, sent unchanged to 5.0
    /// subscribers.
    pub forwarded: Box<[u8]>,
    /// From the Message Expiry Interval: never sent after this (3.3.2-5).
    pub expires_at: Option<Instant>,
}

impl MessageV5 {
    /// Whole seconds left of the expiry interval at `now`, rounded up (`None`: no expiry).
    pub fn remaining(&self, now: Instant) -> Option<u32> {
        let left = self.expires_at?.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    fn new(forwarded: Vec<u8>, expires_at: Option<Instant>) -> Option<Rc<MessageV5>> {
        if forwarded.is_empty() && expires_at.is_none() {
            return None;
        }
        Some(Rc::new(MessageV5 { forwarded: forwarded.into_boxed_slice(), expires_at }))
    }

    /// The 5.0 part of a message published with these properties at `now`. O(block length).
    #[inline(never)]
    pub fn of_publish(block: &PublishPropertyBlock<'_>, now: Instant) -> Option<Rc<MessageV5>> {
        if block.is_empty() {
            return None;
        }
        let p = block.get();
        let mut forwarded = Vec::new();
        p.forward(&mut forwarded);
        MessageV5::new(forwarded, deadline(p.message_expiry_interval, now))
    }

    /// The 5.0 part of a will (its expiry starts when it is published: `will_expiry`).
    pub fn of_will(p: &WillProperties<'_>) -> Option<Rc<MessageV5>> {
        let mut forwarded = Vec::new();
        p.forward(&mut forwarded);
        MessageV5::new(forwarded, None)
    }

    /// The same properties with the expiry interval starting at `now` (a will being published).
    pub fn starting(v5: Option<&MessageV5>, expiry: Option<u32>, now: Instant) -> Option<Rc<MessageV5>> {
        let forwarded = v5.map(|v| v.forwarded.to_vec()).unwrap_or_default();
        MessageV5::new(forwarded, deadline(expiry, now))
    }
}

/// The instant an expiry interval of `secs` from `now` ends.
fn deadline(secs: Option<u32>, now: Instant) -> Option<Instant> {
    secs.map(|s| now + Duration::from_secs(u64::from(s)))
}

/// Whether `msg` has expired at `now` (3.3.2-5). O(1); false at once for 3.1.1 messages.
#[inline]
pub fn expired(msg: &Message, now: Instant) -> bool {
    msg.v5.as_ref().and_then(|v| v.expires_at).is_some_and(|at| at <= now)
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The size of the 5.0 PUBLISH that carries `out` at `now` (as `encode_publish_header` writes
/// it, without a topic alias). O(1).
pub fn publish_size(out: &Outgoing, now: Instant) -> usize {
    let msg = &out.msg;
    let sub_ids = if out.sub_id == 0 { 0 } else { 1 + varint_len(out.sub_id as usize) };
    let v5 = msg.v5.as_deref();
    let props = v5.map_or(0, |v| v.forwarded.len() + v.remaining(now).map_or(0, |_| 5)) + sub_ids;
    let id = if out.qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + msg.topic.len() + id + varint_len(props) + props + msg.payload.len();
    1 + varint_len(remaining) + remaining
}

/// Whether `bytes` start with a CONNECT of protocol level 5 (for answering a malformed one with
/// a 5.0 CONNACK, 4.13.1-1). O(1).
pub fn looks_like_v5_connect(bytes: &[u8]) -> bool {
    let Some((&first, rest)) = bytes.split_first() else { return false };
    if first != 0x10 {
        return false;
    }
    // Skip the remaining length (at most 4 bytes), then "MQTT" and the level.
    let Some(len_bytes) = rest.iter().take(4).position(|b| b & 0x80 == 0) else { return false };
    let body = rest.get(len_bytes + 1..).unwrap_or(&[]);
    body.get(..7) == Some(&[0, 4, b'M', b'Q', b'T', b'T', 5][..])
}

impl CloseReason {
    /// The reason code of the DISCONNECT a 5.0 client gets before the server closes its
    /// connection (4.13.2, 3.14.2.1); `None`: no DISCONNECT (the client ended it, the socket is
    /// gone, or it was never connected).
    pub(super) fn v5_disconnect(&self) -> Option<ReasonCode> {
        Some(match self {
            CloseReason::KeepAliveTimeout => ReasonCode::KEEP_ALIVE_TIMEOUT,
            CloseReason::TakenOver => ReasonCode::SESSION_TAKEN_OVER,
            CloseReason::Shutdown => ReasonCode::SERVER_SHUTTING_DOWN,
            CloseReason::MemoryLimit => ReasonCode::QUOTA_EXCEEDED,
            CloseReason::Protocol(e) => e.reason_code(),
            _ => return None,
        })
    }
}

impl ProtocolError {
    /// The 5.0 reason code of this error (DISCONNECT, or CONNACK before CONNECT completed).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            // 3.3.2-8: the codec refuses alias 0 as a bad value; 5.0 names it.
            ProtocolError::Decode(crate::mqtt::DecodeError::InvalidPropertyValue(
                crate::mqtt::properties::id::TOPIC_ALIAS,
            )) => ReasonCode::TOPIC_ALIAS_INVALID,
            ProtocolError::Decode(e) => e.reason_code(),
            ProtocolError::TopicTooLong { .. } => ReasonCode::TOPIC_NAME_INVALID,
            ProtocolError::TopicAliasInvalid(_) => ReasonCode::TOPIC_ALIAS_INVALID,
            ProtocolError::ReceiveMaximumExceeded => ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            ProtocolError::FirstPacketNotConnect
            | ProtocolError::SecondConnect
            | ProtocolError::ServerOnlyPacket(_)
            | ProtocolError::UnexpectedAuth
            | ProtocolError::UnknownTopicAlias(_)
            | ProtocolError::SubscriptionIdentifierFromClient
            | ProtocolError::SessionExpiryFromZero
            | ProtocolError::NoLocalOnSharedSubscription => ReasonCode::PROTOCOL_ERROR,
        }
    }
}

impl Core {
    /// The CONNACK properties of an accepted 5.0 CONNECT: what midge supports (3.2.2.3).
    pub(super) fn connack_properties<'a>(
        &self,
        assigned_client_identifier: Option<&'a str>,
        session_expiry: Option<u32>,
    ) -> ConnackProperties<'a> {
        let max_packet = self.limits.max_packet_size;
        ConnackProperties {
            session_expiry_interval: session_expiry,
            receive_maximum: u16::try_from(self.limits.max_inflight).ok().filter(|&m| m < u16::MAX),
            maximum_packet_size: u32::try_from(max_packet).ok().filter(|_| max_packet < PROTOCOL_MAX_PACKET),
            assigned_client_identifier,
            topic_alias_maximum: Some(TOPIC_ALIAS_MAXIMUM),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            ..ConnackProperties::default()
        }
    }

    /// The session expiry midge applies to a 5.0 request of `secs`: `persistent_client_expiration`
    /// bounds it, as it bounds 3.1.1 sessions. `None`: never.
    pub(super) fn session_expiry(&self, secs: u32) -> Option<Duration> {
        let asked = (secs != NEVER).then(|| Duration::from_secs(u64::from(secs)));
        match (asked, self.limits.persistent_client_expiration) {
            (Some(a), Some(max)) => Some(a.min(max)),
            (a, max) => a.or(max),
        }
    }

    /// 5.0 checks of an inbound PUBLISH before it is routed: no Subscription Identifier from a
    /// client (3.3.4-6), the topic alias resolved (returned when the topic came from it), and
    /// our Receive Maximum for QoS 2 still unreleased (3.3.4-7..9). O(1) but the alias topic.
    #[inline(never)]
    pub(super) fn v5_inbound(
        &mut self,
        token: usize,
        session: usize,
        p: &crate::mqtt::Publish<'_>,
    ) -> Result<Option<Rc<str>>, CloseReason> {
        // The usual 5.0 PUBLISH has no properties: nothing to type.
        let props = if p.properties.is_empty() { PublishProperties::default() } else { p.properties.get() };
        if !props.subscription_identifiers.is_empty() {
            return Err(CloseReason::Protocol(ProtocolError::SubscriptionIdentifierFromClient));
        }
        if let (QoS::ExactlyOnce, Some(id)) = (p.qos, p.packet_id) {
            let max = self.limits.max_inflight;
            let over =
                self.sessions.get(session).is_some_and(|s| !s.inbound_qos2.contains(id) && s.inbound_qos2.len() >= max);
            if over {
                return Err(CloseReason::Protocol(ProtocolError::ReceiveMaximumExceeded));
            }
        }
        let Some(alias) = props.topic_alias else { return Ok(None) };
        let Some(v5) = self.conns.get_mut(token).and_then(|c| c.v5.as_deref_mut()) else {
            return Err(CloseReason::Protocol(ProtocolError::TopicAliasInvalid(alias)));
        };
        v5.resolve_alias(alias, p.topic).map_err(CloseReason::Protocol)
    }

    /// Publish a will now: retained if flagged, routed to subscribers.
    pub(super) fn publish_will(&mut self, will: &Message) {
        if will.retain {
            self.retained.update(will);
        }
        self.route(will);
    }
}

impl Core {
    /// DISCONNECT from the client: how the connection ends. 0x04 asks for the will (3.14.2.1);
    /// a Session Expiry Interval replaces CONNECT's, except that one which was 0 stays 0
    /// (3.14.2-2: a protocol error). O(1).
    #[inline(never)]
    pub(super) fn on_disconnect(
        &mut self,
        token: usize,
        session: usize,
        d: &crate::mqtt::Disconnect<'_>,
    ) -> CloseReason {
        let Some(v5) = self.conns.get_mut(token).and_then(|c| c.v5.as_deref_mut()) else {
            return CloseReason::ClientDisconnect;
        };
        if let Some(expiry) = d.properties.session_expiry_interval {
            if v5.session_expiry == 0 && expiry != 0 {
                return CloseReason::Protocol(ProtocolError::SessionExpiryFromZero);
            }
            v5.session_expiry = expiry;
            if let Some(s) = self.sessions.get_mut(session) {
                s.clean = expiry == 0;
            }
        }
        if d.reason == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
            CloseReason::ClientDisconnectWithWill
        } else {
            CloseReason::ClientDisconnect
        }
    }
}

impl Core {
    /// Remove the expired ones from `found` and from the retained store (3.3.2-5: found
    /// expired, dropped). O(found).
    pub(super) fn drop_expired_retained(&mut self, found: &mut Vec<Message>) {
        let now = self.now;
        found.retain(|m| {
            if !expired(m, now) {
                return true;
            }
            // An empty payload removes the topic's retained message.
            let empty =
                Message { topic: Rc::clone(&m.topic), payload: (&[][..]).into(), qos: m.qos, retain: true, v5: None };
            self.retained.update(&empty);
            false
        });
    }
}
