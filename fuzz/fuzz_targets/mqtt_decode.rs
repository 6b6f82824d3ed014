//! MQTT codec: `decode_packet` on arbitrary bytes at every protocol level.
//!
//! Input: a selector byte (picks the small `max_packet_size`), a split plan (see `Splits`), then
//! the byte stream. Checks:
//! - decoding never panics, and agrees with `fixed_header` about sizes and header errors;
//! - a decoded packet re-encodes to something that decodes to the same packet, byte for byte the
//!   input when the input used the shortest remaining-length form;
//! - a packet is never reported before all its bytes are there, and never depends on bytes after
//!   it (what lets the broker decode in place and keep only the tail);
//! - the stream decodes to the same packets and the same error however it is cut into reads,
//!   consumed the way `src/broker/input.rs` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use midge::mqtt::{
    decode_packet, encode_packet, encode_publish_header, fixed_header, Packet, ProtocolLevel, PublishV5Extras, QoS,
};
use midge_fuzz::{Input, Splits};

/// The spec's largest packet: 4-byte remaining length plus the fixed header.
const SPEC_MAX: usize = 268_435_455 + 5;
const LEVELS: [ProtocolLevel; 3] = [ProtocolLevel::V31, ProtocolLevel::V311, ProtocolLevel::V5];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let small_max = 2 + usize::from(input.u8()) * 2;
    let splits = Splits::read(&mut input);
    let stream = input.rest();
    for level in LEVELS {
        for max in [small_max, SPEC_MAX] {
            let whole = decode_stream(&[stream], level, max);
            let split = decode_stream(&splits.chunks(stream), level, max);
            assert_eq!(whole, split, "stream decodes differently when split ({level:?}, max {max})");
        }
    }
});

/// What a connection sees: each packet (its size and its re-encoding), then why decoding stopped
/// (an error), and the bytes left over waiting for more.
#[derive(Debug, PartialEq)]
struct Decoded {
    packets: Vec<(usize, Vec<u8>)>,
    error: Option<midge::mqtt::DecodeError>,
    leftover: usize,
}

/// Feed `chunks` as successive reads: decode every complete packet where it lies, keep the
/// unconsumed tail and put the next read behind it (`consume_with_leftover` in the broker).
fn decode_stream(chunks: &[&[u8]], level: ProtocolLevel, max: usize) -> Decoded {
    let mut d = Decoded { packets: Vec::new(), error: None, leftover: 0 };
    let mut held: Vec<u8> = Vec::new();
    for chunk in chunks {
        if held.is_empty() {
            let n = consume(chunk, level, max, &mut d);
            held.extend_from_slice(&chunk[n..]);
        } else {
            held.extend_from_slice(chunk);
            let n = consume(&held, level, max, &mut d);
            held.drain(..n);
        }
        if d.error.is_some() {
            // The broker closes the connection: later reads are never decoded.
            return d;
        }
        // A partial packet is smaller than the largest packet allowed, or an unfinished fixed
        // header (the first byte and at most three continued length bytes).
        assert!(held.len() < max || held.len() <= 4, "{} bytes held with max_packet_size {max}", held.len());
    }
    d.leftover = held.len();
    d
}

/// Decode packets from the front of `buf` until one is incomplete or invalid; returns the bytes
/// consumed.
fn consume(buf: &[u8], level: ProtocolLevel, max: usize, d: &mut Decoded) -> usize {
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        match decode_packet(rest, level, max) {
            Ok(None) => {
                check_incomplete(rest, level, max);
                return pos;
            }
            Ok(Some((packet, n))) => {
                let encoded = check_packet(rest, &packet, n, level, max);
                d.packets.push((n, encoded));
                pos += n;
            }
            Err(e) => {
                check_error(rest, &e, level, max);
                // Every error has a 5.0 reason code a CONNACK or DISCONNECT can carry.
                let code = e.reason_code();
                assert!(code.allowed_in(2) || code.allowed_in(14), "{e:?} maps to {code}");
                d.error = Some(e);
                return buf.len();
            }
        }
    }
}

/// `Ok(None)` means the fixed header or the body is not all there yet.
fn check_incomplete(buf: &[u8], level: ProtocolLevel, max: usize) {
    match fixed_header(buf, level, max) {
        Ok(None) => {}
        Ok(Some(h)) => assert!(h.header_len + h.remaining_len > buf.len(), "complete packet reported incomplete"),
        Err(e) => panic!("fixed_header says {e:?} but decode_packet wants more bytes"),
    }
}

/// A decoded packet: sizes agree with the fixed header, no look-ahead, no early report, and the
/// encoder round-trips it. Returns its canonical encoding.
fn check_packet(buf: &[u8], packet: &Packet<'_>, n: usize, level: ProtocolLevel, max: usize) -> Vec<u8> {
    assert!(n >= 2 && n <= buf.len() && n <= max, "consumed {n} of {} (max {max})", buf.len());
    let h = fixed_header(buf, level, max).expect("decoded packet has a valid fixed header").expect("complete header");
    assert_eq!(h.header_len + h.remaining_len, n, "decode_packet and fixed_header disagree on size");

    // Exactly its own bytes decide the packet.
    let alone = decode_packet(&buf[..n], level, max);
    assert_eq!(alone, Ok(Some((packet.clone(), n))), "packet depends on the bytes after it");
    for k in [0, 1, 2, 3, 4, 5, n - 1] {
        if k < n {
            assert_eq!(decode_packet(&buf[..k], level, max), Ok(None), "packet reported from {k} of its {n} bytes");
        }
    }

    // 5.0: what the broker would keep of a PUBLISH (or will) to forward is itself a valid block
    // of PUBLISH properties, in a PUBLISH that decodes to the same forwarded properties.
    let mut forwarded = Vec::new();
    match packet {
        Packet::Publish(p) => p.properties.get().forward(&mut forwarded),
        Packet::Connect(c) => {
            if let Some(w) = &c.will {
                w.properties.forward(&mut forwarded);
            }
        }
        _ => {}
    }
    if !forwarded.is_empty() {
        let extras = PublishV5Extras { forwarded: &forwarded, ..Default::default() };
        let mut out = Vec::new();
        let v5 = ProtocolLevel::V5;
        encode_publish_header("t", QoS::AtMostOnce, false, false, None, 0, v5, Some(&extras), &mut out);
        match decode_packet(&out, v5, SPEC_MAX) {
            Ok(Some((Packet::Publish(p), _))) => {
                let mut again = Vec::new();
                p.properties.get().forward(&mut again);
                assert_eq!(again, forwarded, "forwarded properties change when forwarded again");
            }
            other => panic!("forwarded properties do not decode: {other:?}"),
        }
    }

    // Round trip. Encoding appends: a byte already in the buffer must stay.
    let mut encoded = vec![0xAB];
    encode_packet(packet, level, &mut encoded);
    assert_eq!(encoded[0], 0xAB, "encode_packet overwrote the buffer");
    encoded.remove(0);
    assert!(encoded.len() <= n, "re-encoding ({} bytes) longer than the input ({n})", encoded.len());
    let again = decode_packet(&encoded, level, SPEC_MAX);
    assert_eq!(again, Ok(Some((packet.clone(), encoded.len()))), "re-encoded packet decodes differently");
    // At 5.0 the encoder writes properties in its own order, leaves out ones at their default
    // and uses the short ack forms, so only the packet (above) must survive the round trip.
    // A CONNECT carries its own level, so a 5.0 one can come at any session level.
    let v5 = level == ProtocolLevel::V5 || matches!(packet, Packet::Connect(c) if c.level == ProtocolLevel::V5);
    if h.header_len == 1 + remaining_len_bytes(h.remaining_len) && !v5 {
        assert_eq!(encoded, &buf[..n], "canonical input does not re-encode to itself");
    }
    encoded
}

/// An error is reported from the fixed header alone, or once the whole packet is there, and
/// the same error again with nothing after the packet.
fn check_error(buf: &[u8], e: &midge::mqtt::DecodeError, level: ProtocolLevel, max: usize) {
    match fixed_header(buf, level, max) {
        Err(fe) => assert_eq!(&fe, e, "fixed_header and decode_packet report different header errors"),
        Ok(None) => panic!("decode_packet reported {e:?} before the fixed header was complete"),
        Ok(Some(h)) => {
            let total = h.header_len + h.remaining_len;
            assert!(total <= buf.len(), "{e:?} reported before the packet was complete");
            assert_eq!(decode_packet(&buf[..total], level, max), Err(e.clone()), "error depends on later bytes");
            if total > 0 {
                assert_eq!(decode_packet(&buf[..total - 1], level, max), Ok(None), "body error before body");
            }
        }
    }
}

fn remaining_len_bytes(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}
