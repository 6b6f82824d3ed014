//! MQTT 5.0 packet layouts (chapter 3): reason codes and property blocks on top of the 3.1.1
//! fields. `codec.rs` sends every packet of a 5.0 session here except CONNECT (which carries its
//! own level), so 3.1.1 never runs this code.
use super::codec::*;
use super::property_sets::{decode_unsubscribe_properties, encode_user_properties, user_properties_len};
use super::topic::valid_topic_filter;
use super::*;

/// A reason code byte that table 2-6 allows in `packet_type`.
fn reason(r: &mut Reader<'_>, packet_type: u8) -> Result<ReasonCode, DecodeError> {
    let code = ReasonCode(r.u8()?);
    if code.allowed_in(packet_type) {
        Ok(code)
    } else {
        Err(DecodeError::InvalidReasonCode { packet_type, code: code.0 })
    }
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP (3.4.2): the reason code and the properties may be left out,
/// meaning Success and none (remaining length 2), or the properties alone (length 3).
fn decode_ack<'a>(r: &mut Reader<'a>, packet_type: u8) -> Result<Ack<'a>, DecodeError> {
    let packet_id = r.packet_id()?;
    if r.is_empty() {
        return Ok(Ack::new(packet_id));
    }
    let reason = reason(r, packet_type)?;
    let properties = if r.is_empty() { AckProperties::EMPTY } else { AckProperties::decode(r, packet_type)? };
    r.finish()?;
    Ok(Ack { packet_id, reason, properties })
}

/// SUBSCRIBE options byte (3.8.3.1).
fn subscription_options(byte: u8, filter: &str) -> Result<SubscriptionOptions, DecodeError> {
    // Bits 6-7 reserved: Malformed (3.8.3-5).
    if byte & 0xC0 != 0 {
        return Err(DecodeError::ReservedSubscriptionOptions);
    }
    // QoS 3 and Retain Handling 3 are Protocol Errors (3.8.3.1).
    let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidSubscriptionOptions)?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidSubscriptionOptions),
    };
    let no_local = byte & 0b100 != 0;
    // 3.8.3-4: No Local on a shared subscription is a Protocol Error.
    if no_local && filter.starts_with("$share/") {
        return Err(DecodeError::InvalidSubscriptionOptions);
    }
    Ok(SubscriptionOptions { qos, no_local, retain_as_published: byte & 0b1000 != 0, retain_handling })
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    o.qos as u8 | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | (o.retain_handling as u8) << 4
}

/// At least one reason code, each allowed in `packet_type` (SUBACK 3.9.3, UNSUBACK 3.11.3).
fn reason_codes(r: &Reader<'_>, packet_type: u8) -> Result<Vec<ReasonCode>, DecodeError> {
    if r.rest.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    r.rest
        .iter()
        .map(|&c| {
            let code = ReasonCode(c);
            if code.allowed_in(packet_type) {
                Ok(code)
            } else {
                Err(DecodeError::InvalidReasonCode { packet_type, code: c })
            }
        })
        .collect()
}

/// Decode the body of a 5.0 packet other than CONNECT and PUBLISH (which `decode_packet` decodes
/// at every level); `first_byte` passed `check_first_byte`.
pub(super) fn decode<'a>(first_byte: u8, mut r: Reader<'a>) -> Result<Packet<'a>, DecodeError> {
    let r = &mut r;
    let packet_type = first_byte >> 4;
    Ok(match packet_type {
        CONNACK => {
            let ack_flags = r.u8()?;
            // Bits 7-1 reserved (3.2.2.1).
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::InvalidConnectFlags);
            }
            let reason = reason(r, CONNACK)?;
            let properties = ConnackProperties::decode(r)?;
            r.finish()?;
            Packet::Connack(Box::new(Connack { session_present: ack_flags & 1 != 0, reason, properties }))
        }
        PUBACK => Packet::Puback(decode_ack(r, PUBACK)?),
        PUBREC => Packet::Pubrec(decode_ack(r, PUBREC)?),
        PUBREL => Packet::Pubrel(decode_ack(r, PUBREL)?),
        PUBCOMP => Packet::Pubcomp(decode_ack(r, PUBCOMP)?),
        SUBSCRIBE => {
            let packet_id = r.packet_id()?;
            let properties = SubscribeProperties::decode(r)?;
            // Bounded by the packet size: each filter takes at least 3 bytes.
            let mut filters = Vec::new();
            while !r.is_empty() {
                let filter = r.string()?;
                if !valid_topic_filter(filter) {
                    return Err(DecodeError::InvalidTopicFilter);
                }
                let options = subscription_options(r.u8()?, filter)?;
                filters.push((filter, options));
            }
            if filters.is_empty() {
                return Err(DecodeError::NoTopicFilters);
            }
            Packet::Subscribe(Subscribe { packet_id, filters, properties })
        }
        SUBACK => {
            let packet_id = r.packet_id()?;
            let properties = AckProperties::decode(r, SUBACK)?;
            let reason_codes = reason_codes(r, SUBACK)?;
            Packet::Suback(Suback { packet_id, reason_codes, properties })
        }
        UNSUBSCRIBE => {
            let packet_id = r.packet_id()?;
            let user_properties = decode_unsubscribe_properties(r)?;
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
            Packet::Unsubscribe(Unsubscribe { packet_id, filters, user_properties })
        }
        UNSUBACK => {
            let packet_id = r.packet_id()?;
            let properties = AckProperties::decode(r, UNSUBACK)?;
            let reason_codes = reason_codes(r, UNSUBACK)?;
            Packet::Unsuback(Unsuback { packet_id, reason_codes, properties })
        }
        PINGREQ | PINGRESP => {
            r.finish()?;
            if packet_type == PINGREQ {
                Packet::Pingreq
            } else {
                Packet::Pingresp
            }
        }
        DISCONNECT => {
            // Remaining length 0: Normal disconnection; below 2: no properties (3.14.2.1).
            if r.is_empty() {
                return Ok(Packet::Disconnect(Disconnect::NORMAL));
            }
            let reason = reason(r, DISCONNECT)?;
            let properties = if r.is_empty() { DisconnectProperties::EMPTY } else { DisconnectProperties::decode(r)? };
            r.finish()?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        AUTH => {
            // Remaining length 0: Success without properties (3.15.2.1).
            if r.is_empty() {
                return Ok(Packet::Auth(Box::default()));
            }
            let reason = reason(r, AUTH)?;
            let properties = AuthProperties::decode(r)?;
            r.finish()?;
            Packet::Auth(Box::new(Auth { reason, properties }))
        }
        // CONNECT and PUBLISH are decoded by the caller; check_first_byte refused 0.
        t => return Err(DecodeError::ReservedPacketType(t)),
    })
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP in the shortest form 3.4.2.1 allows: 4 bytes for Success
/// without properties, as in 3.1.1.
fn encode_ack(out: &mut Vec<u8>, first_byte: u8, a: &Ack<'_>) {
    if a.properties.is_empty() {
        if a.reason == ReasonCode::SUCCESS {
            put_id_packet(out, first_byte, a.packet_id);
        } else {
            let [hi, lo] = a.packet_id.to_be_bytes();
            out.extend_from_slice(&[first_byte, 3, hi, lo, a.reason.0]);
        }
        return;
    }
    let len = 3 + a.properties.encoded_len();
    put_fixed_header(out, first_byte, len, len);
    out.extend_from_slice(&a.packet_id.to_be_bytes());
    out.push(a.reason.0);
    a.properties.encode(out);
}

/// Append a 5.0 packet other than CONNECT, PINGREQ and PINGRESP (which `encode_packet` writes).
pub(super) fn encode(packet: &Packet<'_>, out: &mut Vec<u8>) {
    match packet {
        Packet::Connack(c) => {
            let len = 2 + c.properties.encoded_len();
            put_fixed_header(out, CONNACK << 4, len, len);
            out.extend_from_slice(&[u8::from(c.session_present), c.reason.0]);
            c.properties.encode(out);
        }
        Packet::Publish(p) => {
            let mut first = PUBLISH << 4 | (p.qos as u8) << 1;
            if p.dup {
                first |= 0b1000;
            }
            if p.retain {
                first |= 1;
            }
            let has_id = p.qos != QoS::AtMostOnce;
            let header = field_len(p.topic.as_bytes()) + if has_id { 2 } else { 0 } + p.properties.encoded_len();
            put_fixed_header(out, first, header.saturating_add(p.payload.len()), header + p.payload.len());
            put_field(out, p.topic.as_bytes());
            if has_id {
                out.extend_from_slice(&p.packet_id.unwrap_or(0).to_be_bytes());
            }
            p.properties.encode(out);
            out.extend_from_slice(p.payload);
        }
        Packet::Puback(a) => encode_ack(out, PUBACK << 4, a),
        Packet::Pubrec(a) => encode_ack(out, PUBREC << 4, a),
        Packet::Pubrel(a) => encode_ack(out, PUBREL << 4 | 0b0010, a),
        Packet::Pubcomp(a) => encode_ack(out, PUBCOMP << 4, a),
        Packet::Subscribe(s) => {
            let filters: usize = s.filters.iter().map(|(f, _)| field_len(f.as_bytes()) + 1).sum();
            let len = 2 + s.properties.encoded_len() + filters;
            put_fixed_header(out, SUBSCRIBE << 4 | 0b0010, len, len);
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            s.properties.encode(out);
            for (filter, options) in &s.filters {
                put_field(out, filter.as_bytes());
                out.push(options_byte(options));
            }
        }
        Packet::Suback(s) => {
            let len = 2 + s.properties.encoded_len() + s.reason_codes.len();
            put_fixed_header(out, SUBACK << 4, len, len);
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            s.properties.encode(out);
            out.extend(s.reason_codes.iter().map(|c| c.0));
        }
        Packet::Unsubscribe(u) => {
            let filters: usize = u.filters.iter().map(|f| field_len(f.as_bytes())).sum();
            let len = 2 + user_properties_len(&u.user_properties) + filters;
            put_fixed_header(out, UNSUBSCRIBE << 4 | 0b0010, len, len);
            out.extend_from_slice(&u.packet_id.to_be_bytes());
            encode_user_properties(&u.user_properties, out);
            for filter in &u.filters {
                put_field(out, filter.as_bytes());
            }
        }
        Packet::Unsuback(u) => {
            let len = 2 + u.properties.encoded_len() + u.reason_codes.len();
            put_fixed_header(out, UNSUBACK << 4, len, len);
            out.extend_from_slice(&u.packet_id.to_be_bytes());
            u.properties.encode(out);
            out.extend(u.reason_codes.iter().map(|c| c.0));
        }
        Packet::Disconnect(d) => {
            // The short forms of 3.14.2.1: nothing for a normal disconnection, the reason alone
            // without properties.
            if d.properties.is_empty() {
                if d.reason == ReasonCode::NORMAL_DISCONNECTION {
                    out.extend_from_slice(&[DISCONNECT << 4, 0]);
                } else {
                    out.extend_from_slice(&[DISCONNECT << 4, 1, d.reason.0]);
                }
                return;
            }
            let len = 1 + d.properties.encoded_len();
            put_fixed_header(out, DISCONNECT << 4, len, len);
            out.push(d.reason.0);
            d.properties.encode(out);
        }
        Packet::Auth(a) => {
            if a.reason == ReasonCode::SUCCESS && a.properties.is_empty() {
                out.extend_from_slice(&[AUTH << 4, 0]);
                return;
            }
            let len = 1 + a.properties.encoded_len();
            put_fixed_header(out, AUTH << 4, len, len);
            out.push(a.reason.0);
            a.properties.encode(out);
        }
        Packet::Connect(_) | Packet::Pingreq | Packet::Pingresp => {}
    }
}

#[cfg(test)]
#[path = "codec_v5_tests.rs"]
mod tests;
