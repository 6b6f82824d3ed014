//! Encode and decode MQTT packets: the fixed header, the shared field readers and writers, and
//! the 3.1 / 3.1.1 layouts; 5.0's are in `codec_v5.rs`, reached by one level comparison.
//!
//! Decoding never panics and never copies: every field is a slice of the input. Encoding writes
//! straight into the caller's `Vec` after a single `reserve`.
use super::codec_v5;
use super::topic::{valid_topic_filter, valid_topic_name};
use super::*;

/// The fixed header of a packet: first byte, its length including the remaining-length bytes,
/// and the remaining length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    pub first_byte: u8,
    pub header_len: usize,
    pub remaining_len: usize,
}

pub(super) const CONNECT: u8 = 1;
pub(super) const CONNACK: u8 = 2;
pub(super) const PUBLISH: u8 = 3;
pub(super) const PUBACK: u8 = 4;
pub(super) const PUBREC: u8 = 5;
pub(super) const PUBREL: u8 = 6;
pub(super) const PUBCOMP: u8 = 7;
pub(super) const SUBSCRIBE: u8 = 8;
pub(super) const SUBACK: u8 = 9;
pub(super) const UNSUBSCRIBE: u8 = 10;
pub(super) const UNSUBACK: u8 = 11;
pub(super) const PINGREQ: u8 = 12;
pub(super) const PINGRESP: u8 = 13;
pub(super) const DISCONNECT: u8 = 14;
/// 5.0 only; reserved below (2.1.2).
pub(super) const AUTH: u8 = 15;

/// Largest value a 4-byte remaining length can carry (2.2.3).
const MAX_REMAINING_LEN: usize = 268_435_455;

/// Check the first byte against 2.2.2 so a bad packet is refused before its body is buffered.
fn check_first_byte(first: u8, level: ProtocolLevel) -> Result<(), DecodeError> {
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    let bad_flags = Err(DecodeError::InvalidHeaderFlags { packet_type, flags });
    match packet_type {
        0 => Err(DecodeError::ReservedPacketType(packet_type)),
        AUTH if level != ProtocolLevel::V5 => Err(DecodeError::ReservedPacketType(packet_type)),
        PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                Err(DecodeError::InvalidQoS)
            } else if qos == 0 && flags & 0b1000 != 0 {
                // DUP must be 0 for QoS 0 (3.3.1-2).
                bad_flags
            } else {
                Ok(())
            }
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE if flags != 0b0010 => bad_flags,
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => Ok(()),
        _ if flags != 0 => bad_flags,
        _ => Ok(()),
    }
}

/// Parse the fixed header at the start of `buf`. `Ok(None)`: not enough bytes yet.
/// Rejects a total size over `max_packet_size` before the body is buffered. `level` decides
/// whether type 15 is AUTH (5.0) or reserved.
#[inline]
pub fn fixed_header(
    buf: &[u8],
    level: ProtocolLevel,
    max_packet_size: usize,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(first_byte, level)?;
    let mut remaining_len: usize = 0;
    // At most 4 length bytes; each contributes 7 bits, so the sum stays below 2^28 (no overflow).
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining_len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            let header_len = 2 + i;
            let size = header_len + remaining_len;
            if size > max_packet_size {
                return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
            }
            return Ok(Some(FixedHeader { first_byte, header_len, remaining_len }));
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

/// Cursor over a packet body; every read past the end is `Truncated`.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (Some(head), Some(tail)) = (self.rest.get(..n), self.rest.get(n..)) else {
            return Err(DecodeError::Truncated);
        };
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.take(1)? {
            [b] => Ok(*b),
            _ => Err(DecodeError::Truncated),
        }
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        match self.take(2)? {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(DecodeError::Truncated),
        }
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        match self.take(4)? {
            [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// Variable byte integer (5.0, 1.5.5): at most 4 bytes, so below 2^28.
    pub(super) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVariableByteInteger)
    }

    pub(super) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// Two-byte length followed by that many bytes (1.5.3, 3.1.3.5).
    pub(super) fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 string: well-formed (which also excludes surrogates) and without U+0000 (1.5.3).
    pub(super) fn string(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.binary()?;
        if bytes.contains(&0) {
            return Err(DecodeError::InvalidUtf8);
        }
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Decode one packet from the start of `buf`. `Ok(None)`: incomplete, read more.
/// `Ok(Some((packet, n)))`: the packet used the first `n` bytes. `level` is the session's
/// protocol level (ignored for CONNECT, which carries its own).
pub fn decode_packet<'a>(
    buf: &'a [u8],
    level: ProtocolLevel,
    max_packet_size: usize,
) -> Result<Option<(Packet<'a>, usize)>, DecodeError> {
    let Some(h) = fixed_header(buf, level, max_packet_size)? else {
        return Ok(None);
    };
    // Cannot overflow: fixed_header bounded the sum by max_packet_size.
    let total = h.header_len + h.remaining_len;
    let Some(body) = buf.get(h.header_len..total) else {
        return Ok(None);
    };
    let mut r = Reader { rest: body };
    // 3.1 and 3.1.1 share every packet layout after CONNECT (which carries its own level); 5.0
    // differs in all but PINGREQ/PINGRESP. One comparison keeps 3.1.1 off the 5.0 code; PUBLISH,
    // the hot packet at every level, is decoded here for both.
    let v5 = level == ProtocolLevel::V5;
    if v5 && !matches!(h.first_byte >> 4, CONNECT | PUBLISH) {
        return Ok(Some((codec_v5::decode(h.first_byte, r)?, total)));
    }
    let flags = h.first_byte & 0x0F;
    let packet = match h.first_byte >> 4 {
        CONNECT => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        CONNACK => {
            let ack_flags = r.u8()?;
            let code = r.u8()?;
            r.finish()?;
            // Bits 7-1 of the acknowledge flags are reserved (3.2.2.1).
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::InvalidConnectFlags);
            }
            let code = match code {
                0 => ConnectReturnCode::Accepted,
                1 => ConnectReturnCode::UnacceptableProtocolVersion,
                2 => ConnectReturnCode::IdentifierRejected,
                3 => ConnectReturnCode::ServerUnavailable,
                4 => ConnectReturnCode::BadUsernameOrPassword,
                5 => ConnectReturnCode::NotAuthorized,
                _ => return Err(DecodeError::InvalidConnectFlags),
            };
            Packet::Connack(Box::new(Connack::new(ack_flags & 1 != 0, code)))
        }
        PUBLISH => {
            let qos = match QoS::from_u8((flags >> 1) & 0b11) {
                Some(q) => q,
                None => return Err(DecodeError::InvalidQoS),
            };
            let topic = r.string()?;
            // 5.0: an empty topic stands for its Topic Alias (3.3.2.3.4), known after the
            // properties.
            if !(valid_topic_name(topic) || (v5 && topic.is_empty())) {
                return Err(DecodeError::InvalidTopicName);
            }
            let packet_id = match qos {
                QoS::AtMostOnce => None,
                _ => Some(r.packet_id()?),
            };
            let (properties, has_alias) =
                if v5 { PublishPropertyBlock::decode(&mut r)? } else { (PublishPropertyBlock::EMPTY, false) };
            if v5 && topic.is_empty() && !has_alias {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            Packet::Publish(Publish {
                dup: flags & 0b1000 != 0,
                qos,
                retain: flags & 1 != 0,
                topic,
                packet_id,
                payload: r.rest,
                properties,
            })
        }
        t @ (PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK) => {
            let packet_id = r.packet_id()?;
            r.finish()?;
            match t {
                PUBACK => Packet::Puback(Ack::new(packet_id)),
                PUBREC => Packet::Pubrec(Ack::new(packet_id)),
                PUBREL => Packet::Pubrel(Ack::new(packet_id)),
                PUBCOMP => Packet::Pubcomp(Ack::new(packet_id)),
                _ => Packet::Unsuback(Unsuback::new(packet_id)),
            }
        }
        SUBSCRIBE => {
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while !r.is_empty() {
                let filter = r.string()?;
                if !valid_topic_filter(filter) {
                    return Err(DecodeError::InvalidTopicFilter);
                }
                // Upper 6 bits reserved (3.8.3-4); QoS 3 invalid.
                let qos = r.u8()?;
                match QoS::from_u8(qos) {
                    Some(q) => filters.push((filter, SubscriptionOptions::qos(q))),
                    None => return Err(DecodeError::InvalidQoS),
                }
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters);
            }
            Packet::Subscribe(Subscribe { packet_id, filters, properties: SubscribeProperties::default() })
        }
        SUBACK => {
            let packet_id = r.packet_id()?;
            if r.rest.is_empty() {
                return Err(DecodeError::NoTopicFilters);
            }
            if r.rest.iter().any(|&c| c > 2 && c != SUBACK_FAILURE) {
                return Err(DecodeError::InvalidQoS);
            }
            let reason_codes = r.rest.iter().map(|&c| ReasonCode(c)).collect();
            Packet::Suback(Suback { packet_id, reason_codes, properties: AckProperties::EMPTY })
        }
        UNSUBSCRIBE => {
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while !r.is_empty() {
                let filter = r.string()?;
                if !valid_topic_filter(filter) {
                    return Err(DecodeError::InvalidTopicFilter);
                }
                filters.push(filter);
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters);
            }
            Packet::Unsubscribe(Unsubscribe { packet_id, filters, user_properties: UserProperties::EMPTY })
        }
        t @ (PINGREQ | PINGRESP | DISCONNECT) => {
            r.finish()?;
            match t {
                PINGREQ => Packet::Pingreq,
                PINGRESP => Packet::Pingresp,
                _ => Packet::Disconnect(Disconnect::NORMAL),
            }
        }
        // check_first_byte already refused 0, and 15 below 5.0.
        t => return Err(DecodeError::ReservedPacketType(t)),
    };
    Ok(Some((packet, total)))
}

fn decode_connect<'a>(r: &mut Reader<'a>) -> Result<Connect<'a>, DecodeError> {
    let name = r.binary()?;
    let raw_level = r.u8()?;
    // A known name with a level we do not speak gets CONNACK 0x01 (3.1.2-2), so the name is
    // checked first and the level only after it.
    let level = match (name, raw_level) {
        (b"MQTT", 4) => ProtocolLevel::V311,
        (b"MQTT", 5) => ProtocolLevel::V5,
        (b"MQIsdp", 3) => ProtocolLevel::V31,
        (b"MQTT" | b"MQIsdp", l) => return Err(DecodeError::UnsupportedProtocolLevel(l)),
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let flags = r.u8()?;
    let keep_alive = r.u16()?;
    // Reserved bit (3.1.2-3).
    if flags & 0x01 != 0 {
        return Err(DecodeError::InvalidConnectFlags);
    }
    let clean_session = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    // Will QoS/retain must be 0 without the will flag (3.1.2-13, 3.1.2-15); QoS 3 never (3.1.2-14).
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::InvalidConnectFlags);
    }
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return Err(DecodeError::InvalidConnectFlags);
    };
    let v5 = level == ProtocolLevel::V5;
    // 5.0 allows a password without a user name (3.1.2.9).
    if password_flag && !username_flag && !v5 {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let properties = if v5 { ConnectProperties::decode(r)? } else { ConnectProperties::default() };

    // May be empty: whether to assign one or refuse is the broker's decision (3.1.3-6..8).
    let client_id = r.string()?;
    let will = if will_flag {
        // 5.0: the will properties come before the will topic (3.1.3.2).
        let properties = if v5 { WillProperties::decode(r)? } else { WillProperties::default() };
        let topic = r.string()?;
        if !valid_topic_name(topic) {
            return Err(DecodeError::InvalidTopicName);
        }
        let payload = r.binary()?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if username_flag { Some(r.string()?) } else { None };
    let password = if password_flag { Some(r.binary()?) } else { None };
    r.finish()?;
    Ok(Connect { level, client_id, clean_session, keep_alive, will, username, password, properties })
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Bytes a length-prefixed field takes. Fields over 65535 bytes cannot come out of the decoder;
/// should a caller build one, it is cut to 65535 so the frame stays self-consistent.
pub(super) fn field_len(s: &[u8]) -> usize {
    2 + s.len().min(usize::from(u16::MAX))
}

pub(super) fn put_field(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(s.get(..len).unwrap_or(s));
}

/// Bytes of a variable byte integer (the remaining length, 5.0 lengths and identifiers).
pub(super) fn varint_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Append a variable byte integer. Values over the 4-byte maximum (only possible with a payload
/// over 256 MiB, which no peer accepts) are clamped rather than panicking.
pub(super) fn put_varint(out: &mut Vec<u8>, value: usize) {
    let mut len = value.min(MAX_REMAINING_LEN);
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

/// Write the first byte and the remaining length, reserving room for `body` more bytes. Lengths
/// over the 4-byte maximum are clamped as in `put_varint`.
#[inline]
pub(super) fn put_fixed_header(out: &mut Vec<u8>, first_byte: u8, remaining_len: usize, body: usize) {
    let mut len = remaining_len.min(MAX_REMAINING_LEN);
    out.reserve(1 + varint_len(len) + body);
    out.push(first_byte);
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

pub(super) fn put_id_packet(out: &mut Vec<u8>, first_byte: u8, packet_id: u16) {
    let [hi, lo] = packet_id.to_be_bytes();
    out.extend_from_slice(&[first_byte, 2, hi, lo]);
}

/// Append the encoding of `packet` to `out` at the session's protocol `level` (CONNECT carries
/// its own). Fields a level does not have are left out: 5.0 reason codes and properties at
/// 3.1.1, an AUTH below 5.0 writes nothing.
pub fn encode_packet(packet: &Packet<'_>, level: ProtocolLevel, out: &mut Vec<u8>) {
    match packet {
        Packet::Connect(c) => return encode_connect(c, out),
        Packet::Pingreq => return out.extend_from_slice(&[PINGREQ << 4, 0]),
        Packet::Pingresp => return out.extend_from_slice(&[PINGRESP << 4, 0]),
        _ if level == ProtocolLevel::V5 => return codec_v5::encode(packet, out),
        _ => {}
    }
    match packet {
        Packet::Connack(c) => {
            let code = c.reason.connect_return_code() as u8;
            out.extend_from_slice(&[CONNACK << 4, 2, u8::from(c.session_present), code]);
        }
        Packet::Publish(p) => {
            out.reserve(p.payload.len().saturating_add(p.topic.len()).saturating_add(9));
            encode_publish_header(p.topic, p.qos, p.retain, p.dup, p.packet_id, p.payload.len(), level, None, out);
            out.extend_from_slice(p.payload);
        }
        Packet::Puback(a) => put_id_packet(out, PUBACK << 4, a.packet_id),
        Packet::Pubrec(a) => put_id_packet(out, PUBREC << 4, a.packet_id),
        Packet::Pubrel(a) => put_id_packet(out, PUBREL << 4 | 0b0010, a.packet_id),
        Packet::Pubcomp(a) => put_id_packet(out, PUBCOMP << 4, a.packet_id),
        Packet::Unsuback(u) => put_id_packet(out, UNSUBACK << 4, u.packet_id),
        Packet::Subscribe(s) => {
            let len = 2 + s.filters.iter().map(|(f, _)| field_len(f.as_bytes()) + 1).sum::<usize>();
            put_fixed_header(out, SUBSCRIBE << 4 | 0b0010, len, len);
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            for (filter, options) in &s.filters {
                put_field(out, filter.as_bytes());
                out.push(options.qos as u8);
            }
        }
        Packet::Suback(s) => {
            let len = 2 + s.reason_codes.len();
            put_fixed_header(out, SUBACK << 4, len, len);
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            // 3.1.1 has one failure code: every 5.0 failure becomes it.
            out.extend(s.reason_codes.iter().map(|c| if c.is_error() { SUBACK_FAILURE } else { c.0 }));
        }
        Packet::Unsubscribe(u) => {
            let len = 2 + u.filters.iter().map(|f| field_len(f.as_bytes())).sum::<usize>();
            put_fixed_header(out, UNSUBSCRIBE << 4 | 0b0010, len, len);
            out.extend_from_slice(&u.packet_id.to_be_bytes());
            for filter in &u.filters {
                put_field(out, filter.as_bytes());
            }
        }
        Packet::Disconnect(_) => out.extend_from_slice(&[DISCONNECT << 4, 0]),
        // AUTH does not exist below 5.0; PINGREQ, PINGRESP and CONNECT were written above.
        Packet::Auth(_) | Packet::Pingreq | Packet::Pingresp | Packet::Connect(_) => {}
    }
}

fn encode_connect(c: &Connect<'_>, out: &mut Vec<u8>) {
    let name: &[u8] = match c.level {
        ProtocolLevel::V31 => b"MQIsdp",
        ProtocolLevel::V311 | ProtocolLevel::V5 => b"MQTT",
    };
    let v5 = c.level == ProtocolLevel::V5;
    let mut flags = 0u8;
    // name + level + flags + keep alive, then the payload fields present.
    let mut len = field_len(name) + 4 + field_len(c.client_id.as_bytes());
    if v5 {
        len += c.properties.encoded_len();
    }
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3;
        if w.retain {
            flags |= 0x20;
        }
        len += field_len(w.topic.as_bytes()) + field_len(w.payload);
        if v5 {
            len += w.properties.encoded_len();
        }
    }
    if let Some(u) = c.username {
        flags |= 0x80;
        len += field_len(u.as_bytes());
    }
    if let Some(p) = c.password {
        flags |= 0x40;
        len += field_len(p);
    }
    put_fixed_header(out, CONNECT << 4, len, len);
    put_field(out, name);
    out.push(c.level as u8);
    out.push(flags);
    out.extend_from_slice(&c.keep_alive.to_be_bytes());
    if v5 {
        c.properties.encode(out);
    }
    put_field(out, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        if v5 {
            w.properties.encode(out);
        }
        put_field(out, w.topic.as_bytes());
        put_field(out, w.payload);
    }
    if let Some(u) = c.username {
        put_field(out, u.as_bytes());
    }
    if let Some(p) = c.password {
        put_field(out, p);
    }
}

/// What a 5.0 PUBLISH to one subscriber carries beyond the 3.1.1 fields: the properties the
/// broker sets per subscriber, and the ones forwarded unchanged from the publisher.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishV5Extras<'a> {
    /// The alias for the topic toward this subscriber (3.3.2.3.4). Once the subscriber knows
    /// it, pass an empty topic to `encode_publish_header` and only the alias is sent.
    pub topic_alias: Option<u16>,
    /// The remaining lifetime in seconds (3.3.2.3.3: the received value minus the time queued).
    pub message_expiry_interval: Option<u32>,
    /// The identifiers of the subscriptions this delivery matched (3.3.4-3).
    pub subscription_identifiers: &'a [u32],
    /// `PublishProperties::forward` (or `WillProperties::forward`) bytes kept with the message.
    pub forwarded: &'a [u8],
}

impl PublishV5Extras<'_> {
    /// The property block's content length. O(subscription identifiers).
    fn properties_len(&self) -> usize {
        let ids: usize = self.subscription_identifiers.iter().map(|&id| 1 + varint_len(id as usize)).sum();
        self.topic_alias.map_or(0, |_| 3) + self.message_expiry_interval.map_or(0, |_| 5) + ids + self.forwarded.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        use super::properties::id;
        if let Some(alias) = self.topic_alias {
            out.push(id::TOPIC_ALIAS);
            out.extend_from_slice(&alias.to_be_bytes());
        }
        if let Some(expiry) = self.message_expiry_interval {
            out.push(id::MESSAGE_EXPIRY_INTERVAL);
            out.extend_from_slice(&expiry.to_be_bytes());
        }
        for &sid in self.subscription_identifiers {
            out.push(id::SUBSCRIPTION_IDENTIFIER);
            put_varint(out, sid as usize);
        }
        out.extend_from_slice(self.forwarded);
    }
}

/// Append a PUBLISH fixed header + variable header for a payload of `payload_len` bytes; the
/// caller appends (or references) the payload itself, so a shared payload is never re-encoded.
/// At 5.0 the property block comes from `v5` (no properties when `None`); below 5.0 `v5` is
/// ignored and the bytes are exactly 3.1.1's. O(1) plus the property bytes.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn encode_publish_header(
    topic: &str,
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: Option<u16>,
    payload_len: usize,
    level: ProtocolLevel,
    v5: Option<&PublishV5Extras<'_>>,
    out: &mut Vec<u8>,
) {
    let mut first = PUBLISH << 4 | (qos as u8) << 1;
    if dup {
        first |= 0b1000;
    }
    if retain {
        first |= 1;
    }
    let has_id = qos != QoS::AtMostOnce;
    if level == ProtocolLevel::V5 {
        return encode_publish_header_v5(topic, first, has_id.then(|| packet_id.unwrap_or(0)), payload_len, v5, out);
    }
    let header_len = field_len(topic.as_bytes()) + if has_id { 2 } else { 0 };
    // Reserve only the header: the caller may reference the payload instead of copying it.
    put_fixed_header(out, first, header_len.saturating_add(payload_len), header_len);
    put_field(out, topic.as_bytes());
    if has_id {
        out.extend_from_slice(&packet_id.unwrap_or(0).to_be_bytes());
    }
}

/// The 5.0 PUBLISH header: 3.1.1's fields, then the property block (length computed up front).
/// Out of line so the 3.1.1 path above stays as small as it was.
#[inline(never)]
fn encode_publish_header_v5(
    topic: &str,
    first: u8,
    packet_id: Option<u16>,
    payload_len: usize,
    v5: Option<&PublishV5Extras<'_>>,
    out: &mut Vec<u8>,
) {
    let props = v5.map_or(0, |x| x.properties_len());
    let header_len = field_len(topic.as_bytes()) + if packet_id.is_some() { 2 } else { 0 } + varint_len(props) + props;
    put_fixed_header(out, first, header_len.saturating_add(payload_len), header_len);
    put_field(out, topic.as_bytes());
    if let Some(id) = packet_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    put_varint(out, props);
    if let Some(x) = v5 {
        x.write(out);
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
