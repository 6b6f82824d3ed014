//! Property tests: a byte stream decodes the same however the network cuts it into reads.
//!
//! Streams are random bytes, or valid MQTT packets / WebSocket frames with random mutations;
//! each is decoded whole and again cut at random points, consumed the way `src/broker/input.rs`
//! consumes reads (decode where the bytes lie, keep the unconsumed tail, put the next read behind
//! it). Both runs must see the same packets (or frames), the same error and the same leftover,
//! and neither may panic. Deterministic (fixed seeds, a tiny PRNG), and a few seconds in debug;
//! the fuzz targets in fuzz/ explore the same properties open-endedly.

use midge::mqtt::{
    decode_packet, encode_packet, Ack, Connack, Connect, ConnectReturnCode, DecodeError, Disconnect, Packet,
    ProtocolLevel, Publish, QoS, ReasonCode, Suback, Subscribe, Unsuback, Unsubscribe, Will,
};
use midge::ws::{FrameDecoder, WsControl, WsError, WsEvent};

/// SplitMix64: tiny, deterministic, good enough to pick bytes and cut points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Fewer than `n` random bytes.
    fn up_to(&mut self, n: usize) -> Vec<u8> {
        let len = self.below(n);
        self.bytes(len)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Cut `stream` into 1 to 8 reads at random points (possibly a single read of everything).
fn random_cuts<'s>(rng: &mut Rng, stream: &'s [u8]) -> Vec<&'s [u8]> {
    let mut cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain(std::iter::once(stream.len())) {
        if cut > from {
            chunks.push(&stream[from..cut]);
            from = cut;
        }
    }
    chunks
}

/// Damage a valid stream the ways a broken or hostile peer would: flipped bits, changed,
/// inserted or removed bytes, a cut-off end.
fn mutate(rng: &mut Rng, stream: &mut Vec<u8>) {
    for _ in 0..rng.below(4) {
        if stream.is_empty() {
            stream.push(rng.byte());
            continue;
        }
        let at = rng.below(stream.len());
        match rng.below(5) {
            0 => stream[at] ^= 1 << rng.below(8),
            1 => stream[at] = rng.byte(),
            2 => stream.insert(at, rng.byte()),
            3 => {
                stream.remove(at);
            }
            _ => stream.truncate(at),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT
// ---------------------------------------------------------------------------------------------

const TOPICS: [&str; 5] = ["a", "a/b", "sensors/1/temp", "x/y/z", "é/ü"];
const CLIENT_IDS: [&str; 3] = ["", "c1", "client-with-a-longer-id"];
const FILTERS: [&str; 6] = ["#", "a/#", "+/b", "a/b", "+", "sensors/+/temp"];

fn qos(rng: &mut Rng) -> QoS {
    *rng.pick(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn packet_id(rng: &mut Rng) -> u16 {
    (rng.next() as u16).max(1)
}

/// Append one valid packet of a random type, encoded for a session at `level`.
fn random_packet(rng: &mut Rng, level: ProtocolLevel, out: &mut Vec<u8>) {
    let payload = if rng.chance(8) { rng.up_to(400) } else { rng.up_to(20) };
    let id = packet_id(rng);
    let packet = match rng.below(14) {
        0 => Packet::Connect(Box::new(Connect {
            level: *rng.pick(&[ProtocolLevel::V31, ProtocolLevel::V311]),
            client_id: CLIENT_IDS[rng.below(CLIENT_IDS.len())],
            clean_session: rng.chance(2),
            keep_alive: rng.next() as u16,
            will: rng.chance(2).then(|| Will {
                topic: TOPICS[rng.below(TOPICS.len())],
                payload: &payload,
                qos: qos(rng),
                retain: rng.chance(2),
                properties: Default::default(),
            }),
            username: rng.chance(2).then_some("user"),
            password: None,
            properties: Default::default(),
        })),
        1 => Packet::Connack(Box::new(Connack::new(rng.chance(2), ConnectReturnCode::Accepted))),
        2 => {
            let q = qos(rng);
            Packet::Publish(Publish {
                dup: q != QoS::AtMostOnce && rng.chance(2),
                qos: q,
                retain: rng.chance(2),
                topic: TOPICS[rng.below(TOPICS.len())],
                packet_id: (q != QoS::AtMostOnce).then_some(id),
                payload: &payload,
                properties: Default::default(),
            })
        }
        3 => Packet::Puback(Ack::new(id)),
        4 => Packet::Pubrec(Ack::new(id)),
        5 => Packet::Pubrel(Ack::new(id)),
        6 => Packet::Pubcomp(Ack::new(id)),
        7 => Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: (0..1 + rng.below(3)).map(|_| (FILTERS[rng.below(FILTERS.len())], qos(rng).into())).collect(),
            properties: Default::default(),
        }),
        8 => Packet::Suback(Suback::new(
            id,
            [0, 1, 2, 0x80][..1 + rng.below(4)].iter().map(|&c| ReasonCode(c)).collect(),
        )),
        9 => Packet::Unsubscribe(Unsubscribe {
            packet_id: id,
            filters: (0..1 + rng.below(3)).map(|_| FILTERS[rng.below(FILTERS.len())]).collect(),
            user_properties: Default::default(),
        }),
        10 => Packet::Unsuback(Unsuback::new(id)),
        11 => Packet::Pingreq,
        12 => Packet::Pingresp,
        _ => Packet::Disconnect(Disconnect::NORMAL),
    };
    encode_packet(&packet, level, out);
}

/// What a connection sees: each packet's size and re-encoding, the error that stopped decoding,
/// and the bytes left waiting for more.
#[derive(Debug, PartialEq)]
struct Packets {
    packets: Vec<(usize, Vec<u8>)>,
    error: Option<DecodeError>,
    leftover: usize,
}

fn decode_mqtt(chunks: &[&[u8]], level: ProtocolLevel, max: usize) -> Packets {
    let mut seen = Packets { packets: Vec::new(), error: None, leftover: 0 };
    let mut held: Vec<u8> = Vec::new();
    let consume = |buf: &[u8], seen: &mut Packets| -> usize {
        let mut pos = 0;
        loop {
            match decode_packet(&buf[pos..], level, max) {
                Ok(None) => return pos,
                Ok(Some((packet, n))) => {
                    let mut encoded = Vec::new();
                    encode_packet(&packet, level, &mut encoded);
                    seen.packets.push((n, encoded));
                    pos += n;
                }
                Err(e) => {
                    seen.error = Some(e);
                    return buf.len();
                }
            }
        }
    };
    for chunk in chunks {
        if held.is_empty() {
            let n = consume(chunk, &mut seen);
            held.extend_from_slice(&chunk[n..]);
        } else {
            held.extend_from_slice(chunk);
            let n = consume(&held, &mut seen);
            held.drain(..n);
        }
        if seen.error.is_some() {
            // The broker closes the connection: later reads are never decoded.
            return seen;
        }
    }
    seen.leftover = held.len();
    seen
}

fn mqtt_stream(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => rng.up_to(64),
        kind => {
            let mut stream = Vec::new();
            // One stream in three is a 5.0 session's (reason codes, property lengths).
            let level = if rng.chance(3) { ProtocolLevel::V5 } else { ProtocolLevel::V311 };
            for _ in 0..1 + rng.below(6) {
                random_packet(rng, level, &mut stream);
            }
            if kind != 1 {
                mutate(rng, &mut stream);
            }
            stream
        }
    }
}

#[test]
fn mqtt_streams_decode_identically_however_split() {
    let mut rng = Rng(0x6D71_7474);
    let mut packets_seen = 0;
    for case in 0..20_000 {
        let stream = mqtt_stream(&mut rng);
        let level = *rng.pick(&[ProtocolLevel::V31, ProtocolLevel::V311, ProtocolLevel::V5]);
        let max = if rng.chance(2) { 268_435_460 } else { 2 + rng.below(300) };
        let whole = decode_mqtt(&[&stream], level, max);
        packets_seen += whole.packets.len();
        for _ in 0..3 {
            let chunks = random_cuts(&mut rng, &stream);
            let split = decode_mqtt(&chunks, level, max);
            assert_eq!(
                whole,
                split,
                "case {case}: {stream:?} cut {:?}",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
        }
    }
    // The generator must mostly produce decodable streams, or the test proves little.
    assert!(packets_seen > 20_000, "only {packets_seen} packets decoded");
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames
// ---------------------------------------------------------------------------------------------

fn client_frame(rng: &mut Rng, fin: bool, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mask = [rng.byte(), rng.byte(), rng.byte(), rng.byte()];
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    // Sometimes a longer length form than needed (allowed: RFC 6455 5.2 does not require the
    // shortest for a server to accept).
    if len <= 125 && !rng.chance(10) {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF && !rng.chance(10) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// Valid client frames: binary messages (some fragmented, with control frames between the
/// fragments), pings, pongs, and now and then a close.
fn frame_stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(6) {
        match rng.below(8) {
            0 => {
                let payload = rng.up_to(126);
                client_frame(rng, true, 0x9, &payload, &mut out);
            }
            1 => client_frame(rng, true, 0xA, &[], &mut out),
            2 if rng.chance(3) => {
                let mut body = 1000u16.to_be_bytes().to_vec();
                body.extend_from_slice(b"bye");
                client_frame(rng, true, 0x8, &body, &mut out);
            }
            3 => {
                let parts = 2 + rng.below(3);
                for i in 0..parts {
                    let payload = rng.up_to(40);
                    client_frame(rng, i == parts - 1, if i == 0 { 0x2 } else { 0x0 }, &payload, &mut out);
                    if rng.chance(3) {
                        client_frame(rng, true, 0x9, b"mid", &mut out);
                    }
                }
            }
            _ => {
                let len = if rng.chance(10) { 126 + rng.below(2000) } else { rng.below(30) };
                let payload = rng.bytes(len);
                client_frame(rng, true, 0x2, &payload, &mut out);
            }
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Seen {
    /// MQTT stream bytes, adjacent data merged (where reads cut them is not observable).
    Data(Vec<u8>),
    Control(WsControl),
}

#[derive(Debug, PartialEq, Default)]
struct Frames {
    seen: Vec<Seen>,
    error: Option<WsError>,
    leftover: usize,
}

impl Frames {
    fn data(&mut self, bytes: &[u8]) {
        match self.seen.last_mut() {
            Some(Seen::Data(d)) => d.extend_from_slice(bytes),
            _ if bytes.is_empty() => {}
            _ => self.seen.push(Seen::Data(bytes.to_vec())),
        }
    }
}

/// One read's worth of `decode_in_place` steps, as `process_frames` takes them; returns the bytes
/// consumed.
fn frames_in(dec: &mut FrameDecoder, buf: &mut [u8], seen: &mut Frames) -> usize {
    let mut pos = 0;
    loop {
        match dec.decode_in_place(&mut buf[pos..]) {
            Ok((n, WsEvent::Data(range))) => {
                assert!(range.end <= n);
                seen.data(&buf[pos + range.start..pos + range.end]);
                pos += n;
            }
            Ok((n, WsEvent::Control(c))) => {
                seen.seen.push(Seen::Control(c));
                pos += n;
            }
            Ok((n, WsEvent::NeedMore)) => return pos + n,
            Ok((_, WsEvent::MessageEnd(..))) => panic!("the broker's decoder reported a message end"),
            Err(e) => {
                seen.error = Some(e);
                return buf.len();
            }
        }
    }
}

fn decode_frames(chunks: &[&[u8]], max: usize) -> Frames {
    let mut dec = FrameDecoder::new(max);
    let mut seen = Frames::default();
    let mut held: Vec<u8> = Vec::new();
    for chunk in chunks {
        if held.is_empty() {
            let mut buf = chunk.to_vec();
            let n = frames_in(&mut dec, &mut buf, &mut seen);
            held.extend_from_slice(&buf[n..]);
        } else {
            held.extend_from_slice(chunk);
            let n = frames_in(&mut dec, &mut held, &mut seen);
            held.drain(..n);
        }
        if seen.error.is_some() {
            return seen;
        }
        // The decoder's buffering contract: at most a control frame's worth is left over.
        assert!(held.len() <= 131, "{} bytes left unconsumed", held.len());
    }
    seen.leftover = held.len();
    seen
}

/// The same through the copying `decode`.
fn decode_frames_copying(chunks: &[&[u8]], max: usize) -> Frames {
    let mut dec = FrameDecoder::new(max);
    let mut seen = Frames::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut mqtt = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            let result = dec.decode(&pending, &mut mqtt);
            seen.data(&mqtt);
            mqtt.clear();
            match result {
                Ok((n, ctrl)) => {
                    pending.drain(..n);
                    match ctrl {
                        Some(c) => seen.seen.push(Seen::Control(c)),
                        None => break,
                    }
                }
                Err(e) => {
                    seen.error = Some(e);
                    return seen;
                }
            }
        }
    }
    seen.leftover = pending.len();
    seen
}

#[test]
fn websocket_frames_decode_identically_however_split() {
    let mut rng = Rng(0x7773);
    let mut data_seen = 0;
    for case in 0..12_000 {
        let stream = match rng.below(4) {
            0 => rng.up_to(64),
            1 => frame_stream(&mut rng),
            _ => {
                let mut s = frame_stream(&mut rng);
                mutate(&mut rng, &mut s);
                s
            }
        };
        let max = *rng.pick(&[16, 125, 512, 65_536, usize::MAX]);
        let whole = decode_frames(&[&stream], max);
        data_seen += whole.seen.iter().filter(|s| matches!(s, Seen::Data(_))).count();
        for _ in 0..3 {
            let chunks = random_cuts(&mut rng, &stream);
            let cuts: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert_eq!(whole, decode_frames(&chunks, max), "case {case}: {stream:?} cut {cuts:?}");
            assert_eq!(whole, decode_frames_copying(&chunks, max), "case {case} (copying): {stream:?} cut {cuts:?}");
        }
    }
    assert!(data_seen > 8000, "only {data_seen} data runs decoded");
}
