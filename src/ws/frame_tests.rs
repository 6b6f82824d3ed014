//! Tests for the frame layer; names cite the rule each one proves.
//! Test-only: included under #[cfg(test)] by the parent module.

use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: masked, minimal length encoding.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(fin, opcode, payload, MASK, None)
}

/// A client frame with a chosen mask and optionally a forced length form (7, 16 or 64).
fn frame_with(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], form: Option<u8>) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    let form = form.unwrap_or(if len <= 125 {
        7
    } else if len <= 0xFFFF {
        16
    } else {
        64
    });
    match form {
        7 => out.push(0x80 | len as u8),
        16 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn bin(payload: &[u8]) -> Vec<u8> {
    frame(true, 0x2, payload)
}

/// What a connection observes: MQTT bytes, control frames, and the error that stopped it.
#[derive(Debug, PartialEq)]
struct Seen {
    mqtt: Vec<u8>,
    controls: Vec<WsControl>,
    error: Option<WsError>,
    /// Most bytes the caller ever had to keep unconsumed.
    max_pending: usize,
}

/// Feed `chunks` the way a connection would: keep the unconsumed tail, append the next read.
fn feed(dec: &mut FrameDecoder, chunks: &[&[u8]]) -> Seen {
    let mut seen = Seen { mqtt: Vec::new(), controls: Vec::new(), error: None, max_pending: 0 };
    let mut pending: Vec<u8> = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            match dec.decode(&pending, &mut seen.mqtt) {
                Ok((n, ctrl)) => {
                    assert!(n <= pending.len());
                    pending.drain(..n);
                    match ctrl {
                        Some(c) => seen.controls.push(c),
                        None => break,
                    }
                }
                Err(e) => {
                    seen.error = Some(e);
                    return seen;
                }
            }
        }
        seen.max_pending = seen.max_pending.max(pending.len());
    }
    seen
}

fn feed_all(input: &[u8], max: usize) -> Seen {
    feed(&mut FrameDecoder::new(max), &[input])
}

fn error_of(input: &[u8]) -> WsError {
    match feed_all(input, 1 << 20).error {
        Some(e) => e,
        None => panic!("no error for {input:02x?}"),
    }
}

#[test]
fn rfc6455_5_1_unmasked_client_frame_closes_1002() {
    let e = error_of(&[0x82, 0x01, 0x10]);
    assert_eq!(e, WsError::Unmasked);
    assert_eq!(e.close_code(), 1002);
}

#[test]
fn rfc6455_5_2_reserved_bits_close_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        let mut f = bin(b"x");
        f[0] |= rsv;
        assert_eq!(error_of(&f), WsError::ReservedBits);
        assert_eq!(WsError::ReservedBits.close_code(), 1002);
    }
}

#[test]
fn rfc6455_5_2_unknown_opcodes_close_1002() {
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        let e = error_of(&frame(true, op, b""));
        assert_eq!(e, WsError::UnknownOpcode(op));
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn rfc6455_5_5_control_frame_over_125_closes_1002() {
    for op in [0x8, 0x9, 0xA] {
        let e = error_of(&frame(true, op, &[0u8; 126]));
        assert_eq!(e, WsError::BadControlFrame);
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn rfc6455_5_5_fragmented_control_frame_closes_1002() {
    for op in [0x8, 0x9, 0xA] {
        assert_eq!(error_of(&frame(false, op, b"")), WsError::BadControlFrame);
    }
}

#[test]
fn rfc6455_5_4_continuation_without_message_closes_1002() {
    let e = error_of(&frame(true, 0x0, b"x"));
    assert_eq!(e, WsError::UnexpectedContinuation);
    assert_eq!(e.close_code(), 1002);
    // Also right after a complete (FIN) message.
    let mut s = bin(b"a");
    s.extend(frame(true, 0x0, b"b"));
    assert_eq!(error_of(&s), WsError::UnexpectedContinuation);
}

#[test]
fn rfc6455_5_4_new_message_inside_fragmented_closes_1002() {
    let mut s = frame(false, 0x2, b"ab");
    s.extend(bin(b"cd"));
    let e = error_of(&s);
    assert_eq!(e, WsError::UnfinishedMessage);
    assert_eq!(e.close_code(), 1002);
    let mut s = frame(false, 0x2, b"ab");
    s.extend(frame(true, 0x1, b"cd"));
    assert_eq!(error_of(&s), WsError::UnfinishedMessage);
}

#[test]
fn mqtt_6_0_0_1_text_frame_closes_1003() {
    let e = error_of(&frame(true, 0x1, b"\x10\x00"));
    assert_eq!(e, WsError::TextFrame);
    assert_eq!(e.close_code(), 1003);
    // Rejected from the header alone.
    let f = frame(true, 0x1, b"hello");
    assert_eq!(error_of(&f[..2]), WsError::TextFrame);
}

#[test]
fn rfc6455_5_2_64bit_length_high_bit_closes_1002() {
    let mut f = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
    f.extend_from_slice(&MASK);
    let e = feed_all(&f, usize::MAX).error;
    assert_eq!(e, Some(WsError::BadLength));
    assert_eq!(WsError::BadLength.close_code(), 1002);
}

#[test]
fn rfc6455_5_2_non_minimal_lengths_accepted() {
    let mut s = frame_with(true, 0x2, b"ab", MASK, Some(16));
    s.extend(frame_with(true, 0x2, b"cd", MASK, Some(64)));
    s.extend(frame_with(true, 0x9, b"p", MASK, Some(7)));
    let seen = feed_all(&s, 100);
    assert_eq!(seen.error, None);
    assert_eq!(seen.mqtt, b"abcd");
    assert_eq!(seen.controls, vec![WsControl::Ping(b"p".to_vec())]);
}

#[test]
fn rfc6455_5_2_all_length_forms_decode() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let seen = feed_all(&bin(&payload), 1 << 20);
        assert_eq!(seen.error, None, "len {len}");
        assert_eq!(seen.mqtt, payload, "len {len}");
    }
}

#[test]
fn max_message_size_frame_closes_1009_from_header() {
    let f = bin(&[0u8; 101]);
    // Only the 2-byte header has arrived: refused before any payload is read.
    let e = feed_all(&f[..2], 100).error;
    assert_eq!(e, Some(WsError::MessageTooBig));
    assert_eq!(WsError::MessageTooBig.close_code(), 1009);
    assert_eq!(feed_all(&bin(&[0u8; 100]), 100).error, None);
    // 64-bit length near u64::MAX / 2 never allocates or overflows.
    let mut f = vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    f.extend_from_slice(&MASK);
    assert_eq!(feed_all(&f, 1 << 20).error, Some(WsError::MessageTooBig));
}

#[test]
fn max_message_size_cumulative_fragments_close_1009() {
    let mut s = frame(false, 0x2, &[1u8; 60]);
    s.extend(frame(false, 0x0, &[2u8; 40]));
    let ok = feed_all(&s, 100);
    assert_eq!(ok.error, None);
    assert_eq!(ok.mqtt.len(), 100);
    s.extend(frame(true, 0x0, &[3u8; 1]));
    let seen = feed_all(&s, 100);
    assert_eq!(seen.error, Some(WsError::MessageTooBig));
    // The over-limit fragment's payload was never delivered.
    assert_eq!(seen.mqtt.len(), 100);
    // A finished message resets the count.
    let mut s = frame(false, 0x2, &[1u8; 60]);
    s.extend(frame(true, 0x0, &[2u8; 40]));
    s.extend(bin(&[3u8; 100]));
    assert_eq!(feed_all(&s, 100).error, None);
}

#[test]
fn max_message_size_counted_once_when_header_arrives_in_pieces() {
    let mut s = frame(false, 0x2, &[1u8; 50]);
    s.extend(frame(true, 0x0, &[2u8; 50]));
    // Every split point re-parses the continuation header; it must not count twice.
    for split in 0..=s.len() {
        let seen = feed(&mut FrameDecoder::new(100), &[&s[..split], &s[split..]]);
        assert_eq!(seen.error, None, "split {split}");
        assert_eq!(seen.mqtt.len(), 100);
    }
}

#[test]
fn rfc6455_5_5_1_close_one_byte_body_closes_1002() {
    let e = error_of(&frame(true, 0x8, &[0x03]));
    assert_eq!(e, WsError::BadClosePayload);
    assert_eq!(e.close_code(), 1002);
}

#[test]
fn rfc6455_7_4_invalid_close_codes_close_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        let e = error_of(&frame(true, 0x8, &code.to_be_bytes()));
        assert_eq!(e, WsError::InvalidCloseCode(code));
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn rfc6455_7_4_valid_close_codes_echoed() {
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999] {
        let seen = feed_all(&frame(true, 0x8, &code.to_be_bytes()), 100);
        assert_eq!(seen.error, None);
        assert_eq!(seen.controls, vec![WsControl::Close { code: Some(code) }]);
    }
}

#[test]
fn rfc6455_5_5_1_close_reason_not_utf8_closes_1007() {
    let e = error_of(&frame(true, 0x8, &[0x03, 0xE8, 0xFF, 0xFE]));
    assert_eq!(e, WsError::InvalidUtf8);
    assert_eq!(e.close_code(), 1007);
    let body = [&[0x03, 0xE8][..], "bye \u{e9}".as_bytes()].concat();
    let seen = feed_all(&frame(true, 0x8, &body), 100);
    assert_eq!(seen.error, None);
    assert_eq!(seen.controls, vec![WsControl::Close { code: Some(1000) }]);
}

#[test]
fn rfc6455_5_5_1_close_empty_body_has_no_code() {
    let seen = feed_all(&frame(true, 0x8, b""), 100);
    assert_eq!(seen.controls, vec![WsControl::Close { code: None }]);
}

#[test]
fn rfc6455_5_5_1_data_after_close_is_ignored() {
    let mut s = bin(b"ab");
    s.extend(frame(true, 0x8, &[0x03, 0xE8, b'o', b'k']));
    s.extend(bin(b"cd"));
    s.extend_from_slice(&[0xFF; 7]);
    let seen = feed_all(&s, 100);
    assert_eq!(seen.error, None);
    assert_eq!(seen.mqtt, b"ab");
    assert_eq!(seen.controls, vec![WsControl::Close { code: Some(1000) }]);
}

#[test]
fn rfc6455_5_5_2_ping_returns_payload_and_pong_is_reported() {
    let mut s = frame(true, 0x9, b"hello");
    s.extend(frame(true, 0xA, b"x"));
    s.extend(frame(true, 0x9, &[7u8; 125]));
    let seen = feed_all(&s, 100);
    assert_eq!(
        seen.controls,
        vec![WsControl::Ping(b"hello".to_vec()), WsControl::Pong, WsControl::Ping(vec![7u8; 125]),]
    );
}

#[test]
fn mqtt_6_0_0_2_packet_may_span_frames() {
    // A PUBLISH split across a fragmented message and then across two whole messages.
    let packet = b"\x30\x0b\x00\x03a/bhello";
    let mut s = frame(false, 0x2, &packet[..3]);
    s.extend(frame(false, 0x0, &packet[3..7]));
    s.extend(frame(true, 0x0, &packet[7..]));
    s.extend(bin(&packet[..5]));
    s.extend(bin(&packet[5..]));
    let seen = feed_all(&s, 100);
    assert_eq!(seen.error, None);
    assert_eq!(seen.mqtt, [&packet[..], &packet[..]].concat());
}

#[test]
fn mqtt_6_0_0_2_frame_may_carry_several_packets() {
    let packets = b"\xc0\x00\xc0\x00\xe0\x00";
    assert_eq!(feed_all(&bin(packets), 100).mqtt, packets);
}

#[test]
fn multiple_frames_in_one_input() {
    let mut s = bin(b"one");
    s.extend(bin(b""));
    s.extend(bin(b"two"));
    s.extend(frame(true, 0x9, b"p"));
    s.extend(bin(b"three"));
    let mut dec = FrameDecoder::new(100);
    let mut out = Vec::new();
    // First call stops at the ping, having delivered the data before it.
    let (n, ctrl) = dec.decode(&s, &mut out).unwrap_or((0, None));
    assert_eq!(ctrl, Some(WsControl::Ping(b"p".to_vec())));
    assert_eq!(out, b"onetwo");
    let (m, ctrl) = dec.decode(&s[n..], &mut out).unwrap_or((0, None));
    assert_eq!((n + m, ctrl), (s.len(), None));
    assert_eq!(out, b"onetwothree");
}

#[test]
fn one_byte_frames() {
    let data: Vec<u8> = (0..=255u8).collect();
    let s: Vec<u8> = data.iter().flat_map(|b| bin(&[*b])).collect();
    assert_eq!(feed_all(&s, 1).mqtt, data);
}

#[test]
fn fragmented_message_with_interleaved_ping() {
    let mut s = frame(false, 0x2, b"ab");
    s.extend(frame(true, 0x9, b"!"));
    s.extend(frame(false, 0x0, b"cd"));
    s.extend(frame(true, 0xA, b""));
    s.extend(frame(true, 0x0, b"ef"));
    let seen = feed_all(&s, 100);
    assert_eq!(seen.error, None);
    assert_eq!(seen.mqtt, b"abcdef");
    assert_eq!(seen.controls, vec![WsControl::Ping(b"!".to_vec()), WsControl::Pong]);
}

/// A stream exercising every frame kind, with varied masks and lengths.
fn mixed_stream() -> (Vec<u8>, Vec<u8>, Vec<WsControl>) {
    let mut s = Vec::new();
    let mut mqtt = Vec::new();
    let big: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
    let push = |s: &mut Vec<u8>, f: Vec<u8>| s.extend(f);
    push(&mut s, frame_with(true, 0x2, b"\x10\x0c", [1, 2, 3, 4], None));
    mqtt.extend_from_slice(b"\x10\x0c");
    push(&mut s, frame_with(false, 0x2, &big[..7], [9, 8, 7, 6], None));
    push(&mut s, frame(true, 0x9, b"ping!"));
    push(&mut s, frame_with(false, 0x0, &big[7..], [0xff, 0, 0xaa, 0x55], None));
    push(&mut s, frame(true, 0x0, b""));
    mqtt.extend_from_slice(&big);
    push(&mut s, bin(b"x"));
    mqtt.push(b'x');
    push(&mut s, frame_with(true, 0x2, b"abcdefgh", MASK, Some(64)));
    mqtt.extend_from_slice(b"abcdefgh");
    push(&mut s, frame(true, 0xA, b"pong"));
    push(&mut s, frame(true, 0x8, &[0x03, 0xE9]));
    let controls = vec![WsControl::Ping(b"ping!".to_vec()), WsControl::Pong, WsControl::Close { code: Some(1001) }];
    (s, mqtt, controls)
}

#[test]
fn stream_split_at_every_point_yields_same_bytes() {
    let (s, mqtt, controls) = mixed_stream();
    let whole = feed_all(&s, 1000);
    assert_eq!(whole.error, None);
    assert_eq!(whole.mqtt, mqtt);
    assert_eq!(whole.controls, controls);
    for a in 0..=s.len() {
        let seen = feed(&mut FrameDecoder::new(1000), &[&s[..a], &s[a..]]);
        assert_eq!((&seen.mqtt, &seen.controls), (&mqtt, &controls), "split {a}");
    }
    // Two split points, coarser step to keep it quick.
    for a in (0..=s.len()).step_by(3) {
        for b in (a..=s.len()).step_by(5) {
            let seen = feed(&mut FrameDecoder::new(1000), &[&s[..a], &s[a..b], &s[b..]]);
            assert_eq!((&seen.mqtt, &seen.controls), (&mqtt, &controls));
        }
    }
}

#[test]
fn stream_fed_one_byte_at_a_time_yields_same_bytes() {
    let (s, mqtt, controls) = mixed_stream();
    let chunks: Vec<&[u8]> = s.chunks(1).collect();
    let seen = feed(&mut FrameDecoder::new(1000), &chunks);
    assert_eq!(seen.mqtt, mqtt);
    assert_eq!(seen.controls, controls);
    // Never more than one control frame (2 + 4 + 125) is held back.
    assert!(seen.max_pending <= 131);
}

#[test]
fn partial_header_and_partial_control_frame_consume_nothing() {
    let mut dec = FrameDecoder::new(100);
    let mut out = Vec::new();
    let f = frame_with(true, 0x2, b"abc", MASK, Some(64));
    for k in 0..14 {
        assert_eq!(dec.decode(&f[..k], &mut out), Ok((0, None)), "header {k}");
    }
    let p = frame(true, 0x9, b"12345");
    for k in 0..p.len() {
        assert_eq!(dec.decode(&p[..k], &mut out), Ok((0, None)), "ping {k}");
    }
    assert!(out.is_empty());
}

#[test]
fn large_frame_payload_streams_without_buffering() {
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let f = bin(&payload);
    let mut dec = FrameDecoder::new(1 << 20);
    let mut out = Vec::new();
    let (n, _) = dec.decode(&f[..1000], &mut out).unwrap_or((0, None));
    // Header plus every payload byte so far is consumed and already in the MQTT stream.
    assert_eq!(n, 1000);
    assert_eq!(out, payload[..1000 - 14]);
    let chunks: Vec<&[u8]> = f[1000..].chunks(4093).collect();
    let seen = feed(&mut dec, &chunks);
    assert_eq!(seen.max_pending, 0);
    out.extend(seen.mqtt);
    assert_eq!(out, payload);
}

#[test]
fn close_codes_of_every_error() {
    use WsError::*;
    let cases = [
        (Unmasked, 1002),
        (ReservedBits, 1002),
        (UnknownOpcode(3), 1002),
        (BadControlFrame, 1002),
        (UnexpectedContinuation, 1002),
        (UnfinishedMessage, 1002),
        (TextFrame, 1003),
        (BadLength, 1002),
        (MessageTooBig, 1009),
        (BadClosePayload, 1002),
        (InvalidCloseCode(1005), 1002),
        (InvalidUtf8, 1007),
        (InvalidText, 1007),
    ];
    for (e, code) in cases {
        assert_eq!(e.close_code(), code, "{e}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn rfc6455_5_2_encode_binary_header_length_forms() {
    let enc = |n: usize| {
        let mut v = Vec::new();
        encode_binary_header(n, &mut v);
        v
    };
    assert_eq!(enc(0), [0x82, 0]);
    assert_eq!(enc(125), [0x82, 125]);
    assert_eq!(enc(126), [0x82, 126, 0, 126]);
    assert_eq!(enc(65535), [0x82, 126, 0xFF, 0xFF]);
    assert_eq!(enc(65536), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
}

#[test]
fn rfc6455_5_5_encode_pong_and_close() {
    let mut v = Vec::new();
    encode_pong(b"hi", &mut v);
    assert_eq!(v, [0x8A, 2, b'h', b'i']);
    v.clear();
    encode_pong(&[1u8; 200], &mut v);
    assert_eq!(v.len(), 2 + 125);
    assert_eq!(v[1], 125);
    v.clear();
    encode_close(Some(1002), &mut v);
    assert_eq!(v, [0x88, 2, 0x03, 0xEA]);
    v.clear();
    encode_close(None, &mut v);
    assert_eq!(v, [0x88, 0]);
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias half the rounds toward plausible headers to reach deeper states.
        if round % 2 == 0 {
            let mut i = 0;
            while i + 1 < bytes.len() {
                bytes[i] &= 0x8F;
                bytes[i + 1] |= 0x80;
                i += 2 + (rng.next() % 12) as usize;
            }
        }
        let max = [0usize, 1, 10, 1000, usize::MAX][round % 5];
        let mut dec = FrameDecoder::new(max);
        let mut cuts = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let step = 1 + (rng.next() % 9) as usize;
            cuts.push(&bytes[at..(at + step).min(bytes.len())]);
            at += step;
        }
        let _ = feed(&mut dec, &cuts);
    }
}

#[test]
fn small_frames_in_one_input_come_out_as_one_range() {
    let mut input =
        [bin(b"ab"), frame(false, 0x2, b"cd"), frame(true, 0x0, b"e"), bin(&[b'f'; 600]), bin(b"g")].concat();
    let mut dec = FrameDecoder::new(1 << 20);
    let (n, event) = dec.decode_in_place(&mut input).unwrap();
    let WsEvent::Data(range) = event else { panic!("{event:?}") };
    assert_eq!(&input[range], b"abcde", "fragments slid together; the large frame stops the run");
    let (m, event) = dec.decode_in_place(&mut input[n..]).unwrap();
    let WsEvent::Data(range) = event else { panic!("{event:?}") };
    assert_eq!(range.len(), 601, "large payload in place, then the small one after it");
    assert_eq!(n + m, input.len());
}

#[test]
fn a_control_frame_ends_the_run_and_comes_next() {
    let mut input = [bin(b"ab"), bin(b"cd"), frame(true, 0x9, b"hi"), bin(b"ef")].concat();
    let mut dec = FrameDecoder::new(1 << 20);
    let (n, event) = dec.decode_in_place(&mut input).unwrap();
    assert!(matches!(event, WsEvent::Data(ref r) if input[r.clone()] == *b"abcd"));
    let (m, event) = dec.decode_in_place(&mut input[n..]).unwrap();
    assert_eq!(event, WsEvent::Control(WsControl::Ping(b"hi".to_vec())));
    let (_, event) = dec.decode_in_place(&mut input[n + m..]).unwrap();
    assert!(matches!(event, WsEvent::Data(ref r) if r.len() == 2));
}

/// What a `for_messages` user observes: whole messages, control frames, the error that stopped it.
#[derive(Debug, Default, PartialEq)]
struct Messages {
    done: Vec<(MessageKind, Vec<u8>)>,
    /// Payload of the message still in progress.
    partial: Vec<u8>,
    controls: Vec<WsControl>,
    error: Option<WsError>,
}

/// Feed `chunks` to a `for_messages` decoder the way the echo server does: decode in place, keep
/// the unconsumed tail, append the next read.
fn feed_messages(max: usize, chunks: &[&[u8]]) -> Messages {
    let mut dec = FrameDecoder::for_messages(max);
    let mut seen = Messages::default();
    let mut pending: Vec<u8> = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let (n, event) = match dec.decode_in_place(&mut pending[pos..]) {
                Ok(step) => step,
                Err(e) => {
                    seen.error = Some(e);
                    return seen;
                }
            };
            let base = pos;
            pos += n;
            match event {
                WsEvent::Data(r) => {
                    assert!(!r.is_empty(), "Data is never empty");
                    seen.partial.extend_from_slice(&pending[base + r.start..base + r.end]);
                }
                WsEvent::MessageEnd(kind, r) => {
                    seen.partial.extend_from_slice(&pending[base + r.start..base + r.end]);
                    seen.done.push((kind, std::mem::take(&mut seen.partial)));
                }
                WsEvent::Control(c) => seen.controls.push(c),
                WsEvent::NeedMore => break,
            }
        }
        pending.drain(..pos);
        assert!(pending.len() <= 131);
    }
    seen
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, 0x1, payload)
}

fn messages_error(input: &[u8]) -> Option<WsError> {
    feed_messages(1 << 20, &[input]).error
}

#[test]
fn rfc6455_5_6_for_messages_accepts_text_and_reports_each_message() {
    let s = [text("h\u{e9}llo".as_bytes()), bin(b"\x00\xff"), text(b""), bin(b""), text(b"z")].concat();
    let seen = feed_messages(100, &[&s]);
    assert_eq!(seen.error, None);
    let expected: Vec<(MessageKind, Vec<u8>)> = vec![
        (MessageKind::Text, "h\u{e9}llo".into()),
        (MessageKind::Binary, vec![0x00, 0xff]),
        (MessageKind::Text, vec![]),
        (MessageKind::Binary, vec![]),
        (MessageKind::Text, b"z".to_vec()),
    ];
    assert_eq!(seen.done, expected);
    assert!(seen.partial.is_empty());
}

#[test]
fn broker_decoder_still_refuses_text_after_for_messages_exists() {
    assert_eq!(error_of(&text(b"hi")), WsError::TextFrame);
}

#[test]
fn rfc6455_5_4_for_messages_reassembles_fragments_with_interleaved_control() {
    let s = [
        frame(false, 0x1, b"fr"),
        frame(true, 0x9, b"ping"),
        frame(false, 0x0, b""),
        frame(false, 0x0, b"ag"),
        frame(true, 0xA, b""),
        frame(true, 0x0, b"ments"),
        frame(false, 0x2, b"\x01"),
        frame(true, 0x0, b""),
    ]
    .concat();
    let seen = feed_messages(100, &[&s]);
    assert_eq!(seen.error, None);
    assert_eq!(seen.done, vec![(MessageKind::Text, b"fragments".to_vec()), (MessageKind::Binary, vec![1])]);
    assert_eq!(seen.controls, vec![WsControl::Ping(b"ping".to_vec()), WsControl::Pong]);
}

#[test]
fn for_messages_data_never_reaches_into_the_next_frame() {
    // The broker's decoder slides these into one range; a message decoder must not.
    let mut input = [bin(b"ab"), bin(b"cd")].concat();
    let mut dec = FrameDecoder::for_messages(100);
    let (n, event) = dec.decode_in_place(&mut input).unwrap();
    assert_eq!(event, WsEvent::MessageEnd(MessageKind::Binary, 6..8));
    assert_eq!(&input[6..8], b"ab");
    let (m, event) = dec.decode_in_place(&mut input[n..]).unwrap();
    assert_eq!(event, WsEvent::MessageEnd(MessageKind::Binary, 6..8));
    assert_eq!(n + m, input.len());
}

#[test]
fn rfc6455_8_1_invalid_utf8_text_closes_1007() {
    for bad in [&b"\xff"[..], b"ab\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"] {
        let e = messages_error(&text(bad));
        assert_eq!(e, Some(WsError::InvalidText), "{bad:02x?}");
        assert_eq!(WsError::InvalidText.close_code(), 1007);
    }
    // Ending a fragmented message inside a code point, through an empty last fragment too.
    let s = [frame(false, 0x1, b"\xe2\x82"), frame(true, 0x0, b"")].concat();
    assert_eq!(messages_error(&s), Some(WsError::InvalidText));
}

#[test]
fn rfc6455_8_1_utf8_split_across_fragments_and_reads_is_valid() {
    let t = "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5} \u{1f600}".as_bytes();
    for cut in 0..=t.len() {
        let s = [frame(false, 0x1, &t[..cut]), frame(true, 0x0, &t[cut..])].concat();
        for split in 0..=s.len() {
            let seen = feed_messages(100, &[&s[..split], &s[split..]]);
            assert_eq!(seen.error, None, "cut {cut} split {split}");
            assert_eq!(seen.done, vec![(MessageKind::Text, t.to_vec())]);
        }
    }
}

#[test]
fn rfc6455_8_1_invalid_utf8_fails_before_the_frame_is_complete() {
    // Valid first fragment, then a frame whose invalid bytes come first and whose rest has not
    // arrived: the decoder must not wait for the rest (Autobahn 6.4.x "fail fast").
    let first = frame(false, 0x1, "\u{3ba}\u{1f79}".as_bytes());
    let second = frame(true, 0x0, &[&b"\xf4\x90\x80\x80"[..], &[b'a'; 100]].concat());
    let seen = feed_messages(1000, &[&first, &second[..2 + 4 + 4]]);
    assert_eq!(seen.error, Some(WsError::InvalidText));
    // Byte by byte: refused on the byte that makes the text hopeless (0x90 after 0xF4).
    let f = text(b"ab\xf4\x90\x80\x80cd");
    let chunks: Vec<&[u8]> = f.chunks(1).collect();
    let mut dec = FrameDecoder::for_messages(100);
    let mut buf = Vec::new();
    let mut failed_at = None;
    for (i, c) in chunks.iter().enumerate() {
        buf.extend_from_slice(c);
        match dec.decode_in_place(&mut buf) {
            Ok((n, _)) => drop(buf.drain(..n)),
            Err(e) => {
                failed_at = Some((i, e));
                break;
            }
        }
    }
    assert_eq!(failed_at, Some((6 + 3, WsError::InvalidText)));
}

#[test]
fn rfc6455_5_4_for_messages_keeps_fragmentation_rules() {
    let s = [frame(false, 0x1, b"a"), text(b"b")].concat();
    assert_eq!(messages_error(&s), Some(WsError::UnfinishedMessage));
    assert_eq!(messages_error(&frame(true, 0x0, b"a")), Some(WsError::UnexpectedContinuation));
    let s = [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat();
    assert_eq!(messages_error(&s), Some(WsError::UnfinishedMessage));
}

#[test]
fn for_messages_max_message_size_closes_1009() {
    let s = [frame(false, 0x1, &[b'a'; 60]), frame(true, 0x0, &[b'b'; 41])].concat();
    assert_eq!(feed_messages(100, &[&s]).error, Some(WsError::MessageTooBig));
}

#[test]
fn for_messages_stream_split_at_every_point_yields_same_messages() {
    let big: Vec<u8> = "\u{20ac}\u{e9}x".repeat(200).into_bytes();
    let s = [
        text(&big),
        frame(false, 0x2, b"\x00\x01"),
        frame(true, 0x9, b"p"),
        frame(true, 0x0, &[7u8; 300]),
        frame(false, 0x1, &big[..5]),
        frame(false, 0x0, &big[5..600]),
        frame(true, 0x0, &big[600..]),
        text(b""),
        frame(true, 0x8, &[0x03, 0xE8]),
    ]
    .concat();
    let whole = feed_messages(10_000, &[&s]);
    assert_eq!(whole.error, None);
    assert_eq!(whole.done.len(), 4);
    assert_eq!(whole.done[0], (MessageKind::Text, big.clone()));
    assert_eq!(whole.done[1], (MessageKind::Binary, [&b"\x00\x01"[..], &[7u8; 300]].concat()));
    assert_eq!(whole.done[2], (MessageKind::Text, big.clone()));
    assert_eq!(whole.controls, vec![WsControl::Ping(b"p".to_vec()), WsControl::Close { code: Some(1000) }]);
    for a in (0..=s.len()).step_by(7) {
        assert_eq!(feed_messages(10_000, &[&s[..a], &s[a..]]), whole, "split {a}");
    }
    let chunks: Vec<&[u8]> = s.chunks(1).collect();
    assert_eq!(feed_messages(10_000, &chunks), whole);
}

#[test]
fn rfc6455_5_6_encode_text_header_length_forms() {
    let hdr = |n: usize| {
        let (h, len) = text_header(n);
        h[..len].to_vec()
    };
    assert_eq!(hdr(0), [0x81, 0]);
    assert_eq!(hdr(125), [0x81, 125]);
    assert_eq!(hdr(126), [0x81, 126, 0, 126]);
    assert_eq!(hdr(65536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
}

#[test]
fn for_messages_random_bytes_never_panic() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    for round in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Plausible headers (text and continuation opcodes included) to reach deeper states.
        if round % 2 == 0 {
            let mut i = 0;
            while i + 1 < bytes.len() {
                bytes[i] &= 0x8F;
                bytes[i + 1] = (bytes[i + 1] | 0x80) & 0x8F;
                i += 6 + (rng.next() % 12) as usize;
            }
        }
        let max = [0usize, 1, 10, 1000, usize::MAX][round % 5];
        let cuts: Vec<&[u8]> = bytes.chunks(1 + (rng.next() % 9) as usize).collect();
        let _ = feed_messages(max, &cuts);
    }
}
