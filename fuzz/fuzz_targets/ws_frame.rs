//! WebSocket frame decoder on arbitrary client bytes, cut into reads at fuzzer-chosen points.
//!
//! Input: a selector byte (max message size, and which API the split run uses), a split plan
//! (see `Splits`), then the byte stream. The split run follows the decoder's buffering contract
//! the way `src/broker/input.rs` does: the caller keeps the unconsumed tail and presents it again
//! followed by the next read. Checks:
//! - no panic; every event's range lies in the consumed bytes, and the decoder makes progress;
//! - the unconsumed tail is never modified and never longer than 131 bytes;
//! - nothing is reported after a close frame, and everything after it is consumed;
//! - whole and split runs (in place, and through the copying `decode`) see the same MQTT bytes,
//!   the same control frames at the same points of the MQTT stream, the same error and the same
//!   leftover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use midge::ws::{FrameDecoder, WsControl, WsError, WsEvent};
use midge_fuzz::{Input, Splits};

/// Documented bound on what `decode_in_place` leaves unconsumed: 2 + 4 mask + 125 payload.
const MAX_UNCONSUMED: usize = 131;

const MAX_SIZES: [usize; 8] = [1, 16, 125, 126, 512, 65_535, 65_536, usize::MAX];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.u8();
    let max = MAX_SIZES[usize::from(sel & 7)];
    let splits = Splits::read(&mut input);
    let stream = input.rest();

    let whole = feed_in_place(&[stream], max);
    let chunks = splits.chunks(stream);
    let split = if sel & 8 == 0 { feed_in_place(&chunks, max) } else { feed_copying(&chunks, max) };
    assert_eq!(whole, split, "frames decode differently when split (max {max}, copying {})", sel & 8 != 0);
});

#[derive(Debug, PartialEq)]
enum Seen {
    /// MQTT stream bytes (adjacent data merged: how reads cut them is not observable).
    Data(Vec<u8>),
    Control(WsControl),
}

#[derive(Debug, PartialEq, Default)]
struct Outcome {
    seen: Vec<Seen>,
    error: Option<WsError>,
    closed: bool,
    /// Bytes still held for the next read when the stream ended (no error).
    leftover: usize,
}

impl Outcome {
    fn data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.seen.last_mut() {
            Some(Seen::Data(d)) => d.extend_from_slice(bytes),
            _ => self.seen.push(Seen::Data(bytes.to_vec())),
        }
    }

    fn control(&mut self, c: WsControl) {
        assert!(!self.closed, "{c:?} reported after a close frame");
        self.closed = matches!(c, WsControl::Close { .. });
        self.seen.push(Seen::Control(c));
    }
}

/// Reads through `decode_in_place`, as the broker does (`consume_with_leftover` +
/// `process_frames`): a read is decoded where it lies unless a tail is held, in which case it is
/// appended behind the tail.
fn feed_in_place(chunks: &[&[u8]], max: usize) -> Outcome {
    let mut dec = FrameDecoder::new(max);
    let mut out = Outcome::default();
    let mut held: Vec<u8> = Vec::new();
    for chunk in chunks {
        if held.is_empty() {
            let mut buf = chunk.to_vec();
            let n = process(&mut dec, &mut buf, &mut out);
            if out.error.is_none() {
                assert_eq!(buf[n..], chunk[n..], "decoder modified bytes it did not consume");
            }
            held.extend_from_slice(&buf[n..]);
        } else {
            held.extend_from_slice(chunk);
            let before = held.clone();
            let n = process(&mut dec, &mut held, &mut out);
            if out.error.is_none() {
                assert_eq!(held[n..], before[n..], "decoder modified bytes it did not consume");
            }
            held.drain(..n);
        }
        if out.error.is_some() {
            return out;
        }
        assert!(held.len() <= MAX_UNCONSUMED, "{} bytes left unconsumed", held.len());
    }
    out.leftover = held.len();
    out
}

/// One read's worth of `decode_in_place` steps. Returns the bytes consumed.
fn process(dec: &mut FrameDecoder, buf: &mut [u8], out: &mut Outcome) -> usize {
    let mut pos = 0;
    loop {
        let avail = buf.len() - pos;
        let was_closed = out.closed;
        match dec.decode_in_place(&mut buf[pos..]) {
            Ok((n, event)) => {
                assert!(n <= avail, "consumed {n} of {avail} bytes");
                match event {
                    WsEvent::Data(range) => {
                        assert!(!was_closed, "data reported after a close frame");
                        assert!(range.start < range.end && range.end <= n, "data {range:?} outside consumed {n}");
                        out.data(&buf[pos + range.start..pos + range.end]);
                        pos += n;
                    }
                    // Only decoders built with `for_messages` (the Autobahn echo server) report
                    // message ends; this one is the broker's stream decoder.
                    WsEvent::MessageEnd(..) => panic!("message end from a stream decoder"),
                    WsEvent::Control(c) => {
                        assert!(n > 0, "control frame from no bytes");
                        out.control(c);
                        pos += n;
                    }
                    WsEvent::NeedMore => {
                        if was_closed {
                            assert_eq!(n, avail, "bytes after a close frame not discarded");
                        }
                        return pos + n;
                    }
                }
            }
            Err(e) => {
                assert!(!was_closed, "error {e:?} after a close frame");
                out.error = Some(e);
                return buf.len();
            }
        }
    }
}

/// Reads through the copying `decode`: pending bytes are presented again with the next read.
fn feed_copying(chunks: &[&[u8]], max: usize) -> Outcome {
    let mut dec = FrameDecoder::new(max);
    let mut out = Outcome::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut mqtt = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            let was_closed = out.closed;
            let result = dec.decode(&pending, &mut mqtt);
            out.data(&mqtt);
            assert!(!(was_closed && !mqtt.is_empty()), "data reported after a close frame");
            mqtt.clear();
            match result {
                Ok((n, ctrl)) => {
                    assert!(n <= pending.len(), "consumed {n} of {} bytes", pending.len());
                    pending.drain(..n);
                    match ctrl {
                        Some(c) => out.control(c),
                        None => break,
                    }
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        assert!(pending.len() <= MAX_UNCONSUMED, "{} bytes left unconsumed", pending.len());
    }
    out.leftover = pending.len();
    out
}
