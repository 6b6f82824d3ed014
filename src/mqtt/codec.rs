//! Encode and decode MQTT 3.1 / 3.1.1 packets.
//!
//! Decoding never panics and never copies: every field is a slice of the input. Encoding writes
//! straight into the caller's `Vec` after a single `reserve`.
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

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// Largest value a 4-byte remaining length can carry (2.2.3).
const MAX_REMAINING_LEN: usize = 268_435_455;

/// Check the first byte against 2.2.2 so a bad packet is refused before its body is buffered.
fn check_first_byte(first: u8) -> Result<(), DecodeError> {
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    let bad_flags = Err(DecodeError::InvalidHeaderFlags { packet_type, flags });
    match packet_type {
        0 | 15 => Err(DecodeError::ReservedPacketType(packet_type)),
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
/// Rejects a total size over `max_packet_size` before the body is buffered.
#[inline]
pub fn fixed_header(buf: &[u8], max_packet_size: usize) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(first_byte)?;
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
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (Some(head), Some(tail)) = (self.rest.get(..n), self.rest.get(n..)) else {
            return Err(DecodeError::Truncated);
        };
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.take(1)? {
            [b] => Ok(*b),
            _ => Err(DecodeError::Truncated),
        }
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        match self.take(2)? {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(DecodeError::Truncated),
        }
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// Two-byte length followed by that many bytes (1.5.3, 3.1.3.5).
    fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 string: well-formed (which also excludes surrogates) and without U+0000 (1.5.3).
    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.binary()?;
        if bytes.contains(&0) {
            return Err(DecodeError::InvalidUtf8);
        }
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn finish(&self) -> Result<(), DecodeError> {
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
    // 3.1 and 3.1.1 share every packet layout after CONNECT. V5 (properties, reason codes) is a
    // later issue: it decodes like 3.1.1 for now, and CONNECT level 5 is refused anyway.
    let _ = level;
    let Some(h) = fixed_header(buf, max_packet_size)? else {
        return Ok(None);
    };
    // Cannot overflow: fixed_header bounded the sum by max_packet_size.
    let total = h.header_len + h.remaining_len;
    let Some(body) = buf.get(h.header_len..total) else {
        return Ok(None);
    };
    let mut r = Reader { rest: body };
    let flags = h.first_byte & 0x0F;
    let packet = match h.first_byte >> 4 {
        CONNECT => Packet::Connect(decode_connect(&mut r)?),
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
            Packet::Connack { session_present: ack_flags & 1 != 0, code }
        }
        PUBLISH => {
            let qos = match QoS::from_u8((flags >> 1) & 0b11) {
                Some(q) => q,
                None => return Err(DecodeError::InvalidQoS),
            };
            let topic = r.string()?;
            if !valid_topic_name(topic) {
                return Err(DecodeError::InvalidTopicName);
            }
            let packet_id = match qos {
                QoS::AtMostOnce => None,
                _ => Some(r.packet_id()?),
            };
            Packet::Publish(Publish {
                dup: flags & 0b1000 != 0,
                qos,
                retain: flags & 1 != 0,
                topic,
                packet_id,
                payload: r.rest,
            })
        }
        t @ (PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK) => {
            let packet_id = r.packet_id()?;
            r.finish()?;
            match t {
                PUBACK => Packet::Puback { packet_id },
                PUBREC => Packet::Pubrec { packet_id },
                PUBREL => Packet::Pubrel { packet_id },
                PUBCOMP => Packet::Pubcomp { packet_id },
                _ => Packet::Unsuback { packet_id },
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
                    Some(q) => filters.push((filter, q)),
                    None => return Err(DecodeError::InvalidQoS),
                }
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters);
            }
            Packet::Subscribe(Subscribe { packet_id, filters })
        }
        SUBACK => {
            let packet_id = r.packet_id()?;
            let return_codes = r.rest.to_vec();
            if return_codes.is_empty() {
                return Err(DecodeError::NoTopicFilters);
            }
            if return_codes.iter().any(|&c| c > 2 && c != SUBACK_FAILURE) {
                return Err(DecodeError::InvalidQoS);
            }
            Packet::Suback { packet_id, return_codes }
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
            Packet::Unsubscribe(Unsubscribe { packet_id, filters })
        }
        t @ (PINGREQ | PINGRESP | DISCONNECT) => {
            r.finish()?;
            match t {
                PINGREQ => Packet::Pingreq,
                PINGRESP => Packet::Pingresp,
                _ => Packet::Disconnect,
            }
        }
        // check_first_byte already refused 0 and 15.
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
    if password_flag && !username_flag {
        return Err(DecodeError::PasswordWithoutUsername);
    }

    // May be empty: whether to assign one or refuse is the broker's decision (3.1.3-6..8).
    let client_id = r.string()?;
    let will = if will_flag {
        let topic = r.string()?;
        if !valid_topic_name(topic) {
            return Err(DecodeError::InvalidTopicName);
        }
        let payload = r.binary()?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain })
    } else {
        None
    };
    let username = if username_flag { Some(r.string()?) } else { None };
    let password = if password_flag { Some(r.binary()?) } else { None };
    r.finish()?;
    Ok(Connect { level, client_id, clean_session, keep_alive, will, username, password })
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Bytes a length-prefixed field takes. Fields over 65535 bytes cannot come out of the decoder;
/// should a caller build one, it is cut to 65535 so the frame stays self-consistent.
fn field_len(s: &[u8]) -> usize {
    2 + s.len().min(usize::from(u16::MAX))
}

fn put_field(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(s.get(..len).unwrap_or(s));
}

fn remaining_len_bytes(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Write the first byte and the remaining length, reserving room for `body` more bytes. Lengths
/// over the 4-byte maximum (only possible with a payload over 256 MiB, which no peer accepts) are
/// clamped rather than panicking.
fn put_fixed_header(out: &mut Vec<u8>, first_byte: u8, remaining_len: usize, body: usize) {
    let mut len = remaining_len.min(MAX_REMAINING_LEN);
    out.reserve(1 + remaining_len_bytes(len) + body);
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

fn put_id_packet(out: &mut Vec<u8>, first_byte: u8, packet_id: u16) {
    let [hi, lo] = packet_id.to_be_bytes();
    out.extend_from_slice(&[first_byte, 2, hi, lo]);
}

/// Append the encoding of `packet` to `out`.
pub fn encode_packet(packet: &Packet<'_>, level: ProtocolLevel, out: &mut Vec<u8>) {
    // 3.1 and 3.1.1 encode identically outside CONNECT (which carries its own level); V5 is a
    // later issue and encodes like 3.1.1 for now.
    let _ = level;
    match packet {
        Packet::Connect(c) => encode_connect(c, out),
        Packet::Connack { session_present, code } => {
            out.extend_from_slice(&[CONNACK << 4, 2, u8::from(*session_present), *code as u8]);
        }
        Packet::Publish(p) => {
            out.reserve(p.payload.len().saturating_add(p.topic.len()).saturating_add(9));
            encode_publish_header(p.topic, p.qos, p.retain, p.dup, p.packet_id, p.payload.len(), level, out);
            out.extend_from_slice(p.payload);
        }
        Packet::Puback { packet_id } => put_id_packet(out, PUBACK << 4, *packet_id),
        Packet::Pubrec { packet_id } => put_id_packet(out, PUBREC << 4, *packet_id),
        Packet::Pubrel { packet_id } => put_id_packet(out, PUBREL << 4 | 0b0010, *packet_id),
        Packet::Pubcomp { packet_id } => put_id_packet(out, PUBCOMP << 4, *packet_id),
        Packet::Unsuback { packet_id } => put_id_packet(out, UNSUBACK << 4, *packet_id),
        Packet::Subscribe(s) => {
            let len = 2 + s.filters.iter().map(|(f, _)| field_len(f.as_bytes()) + 1).sum::<usize>();
            put_fixed_header(out, SUBSCRIBE << 4 | 0b0010, len, len);
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            for (filter, qos) in &s.filters {
                put_field(out, filter.as_bytes());
                out.push(*qos as u8);
            }
        }
        Packet::Suback { packet_id, return_codes } => {
            let len = 2 + return_codes.len();
            put_fixed_header(out, SUBACK << 4, len, len);
            out.extend_from_slice(&packet_id.to_be_bytes());
            out.extend_from_slice(return_codes);
        }
        Packet::Unsubscribe(u) => {
            let len = 2 + u.filters.iter().map(|f| field_len(f.as_bytes())).sum::<usize>();
            put_fixed_header(out, UNSUBSCRIBE << 4 | 0b0010, len, len);
            out.extend_from_slice(&u.packet_id.to_be_bytes());
            for filter in &u.filters {
                put_field(out, filter.as_bytes());
            }
        }
        Packet::Pingreq => out.extend_from_slice(&[PINGREQ << 4, 0]),
        Packet::Pingresp => out.extend_from_slice(&[PINGRESP << 4, 0]),
        Packet::Disconnect => out.extend_from_slice(&[DISCONNECT << 4, 0]),
    }
}

fn encode_connect(c: &Connect<'_>, out: &mut Vec<u8>) {
    let name: &[u8] = match c.level {
        ProtocolLevel::V31 => b"MQIsdp",
        ProtocolLevel::V311 | ProtocolLevel::V5 => b"MQTT",
    };
    let mut flags = 0u8;
    // name + level + flags + keep alive, then the payload fields present.
    let mut len = field_len(name) + 4 + field_len(c.client_id.as_bytes());
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3;
        if w.retain {
            flags |= 0x20;
        }
        len += field_len(w.topic.as_bytes()) + field_len(w.payload);
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
    put_field(out, c.client_id.as_bytes());
    if let Some(w) = &c.will {
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

/// Append a PUBLISH fixed header + variable header for a payload of `payload_len` bytes; the
/// caller appends (or references) the payload itself, so a shared payload is never re-encoded.
#[allow(clippy::too_many_arguments)]
pub fn encode_publish_header(
    topic: &str,
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: Option<u16>,
    payload_len: usize,
    level: ProtocolLevel,
    out: &mut Vec<u8>,
) {
    // Identical for 3.1 and 3.1.1; V5 (properties) is a later issue.
    let _ = level;
    let mut first = PUBLISH << 4 | (qos as u8) << 1;
    if dup {
        first |= 0b1000;
    }
    if retain {
        first |= 1;
    }
    let has_id = qos != QoS::AtMostOnce;
    let header_len = field_len(topic.as_bytes()) + if has_id { 2 } else { 0 };
    // Reserve only the header: the caller may reference the payload instead of copying it.
    put_fixed_header(out, first, header_len.saturating_add(payload_len), header_len);
    put_field(out, topic.as_bytes());
    if has_id {
        out.extend_from_slice(&packet_id.unwrap_or(0).to_be_bytes());
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
