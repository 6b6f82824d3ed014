//! RFC 6455 section 5 frames, server side, sans-IO.
//!
//! Buffering contract: `decode` never consumes part of a frame header, nor part of a control
//! frame (ping/pong/close); it returns having consumed fewer bytes than given, and the caller
//! keeps the unconsumed tail and presents it again followed by newly read bytes. At most 131
//! bytes (2 + 4 mask + 125 payload) are ever left unconsumed. Binary payload bytes, in contrast,
//! are consumed and unmasked into the MQTT stream as soon as they arrive.
//!
//! The broker's decoder (`FrameDecoder::new`) yields one MQTT byte stream and refuses text frames.
//! `FrameDecoder::for_messages` is the general RFC 6455 variant (text allowed and validated,
//! message boundaries reported), for tools such as the Autobahn echo server.

use std::fmt;

use super::utf8::Utf8Stream;

/// Why the client's frames are refused; each maps to one close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// Client frame without the MASK bit (RFC 6455 5.1): 1002.
    Unmasked,
    /// RSV1/2/3 set though no extension was negotiated (5.2): 1002.
    ReservedBits,
    /// Opcode 3-7 or 0xB-0xF (5.2): 1002.
    UnknownOpcode(u8),
    /// Control frame fragmented or with payload > 125 bytes (5.5): 1002.
    BadControlFrame,
    /// Continuation frame with no fragmented message in progress (5.4): 1002.
    UnexpectedContinuation,
    /// New binary/text frame while a fragmented message is unfinished (5.4): 1002.
    UnfinishedMessage,
    /// Text frame: MQTT is carried in binary frames only [MQTT-6.0.0-1]: 1003.
    TextFrame,
    /// 64-bit payload length with the most significant bit set (5.2): 1002.
    BadLength,
    /// Frame or reassembled message larger than `max_message_size`: 1009.
    MessageTooBig,
    /// Close frame with a 1-byte body (5.5.1): 1002.
    BadClosePayload,
    /// Close status code that may not be sent on the wire (7.4): 1002.
    InvalidCloseCode(u16),
    /// Close reason not valid UTF-8 (5.5.1): 1007.
    InvalidUtf8,
    /// Text message not valid UTF-8 (8.1; `for_messages` decoders only): 1007.
    InvalidText,
}

impl WsError {
    /// The RFC 6455 7.4.1 status code to close with.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TextFrame => 1003,
            WsError::InvalidUtf8 | WsError::InvalidText => 1007,
            WsError::MessageTooBig => 1009,
            WsError::Unmasked
            | WsError::ReservedBits
            | WsError::UnknownOpcode(_)
            | WsError::BadControlFrame
            | WsError::UnexpectedContinuation
            | WsError::UnfinishedMessage
            | WsError::BadLength
            | WsError::BadClosePayload
            | WsError::InvalidCloseCode(_) => 1002,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Unmasked => f.write_str("unmasked client frame"),
            WsError::ReservedBits => f.write_str("reserved bits set"),
            WsError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            WsError::BadControlFrame => f.write_str("fragmented or oversized control frame"),
            WsError::UnexpectedContinuation => f.write_str("continuation without a message"),
            WsError::UnfinishedMessage => f.write_str("new message inside a fragmented one"),
            WsError::TextFrame => f.write_str("text frame (MQTT needs binary frames)"),
            WsError::BadLength => f.write_str("64-bit length with the high bit set"),
            WsError::MessageTooBig => f.write_str("message too big"),
            WsError::BadClosePayload => f.write_str("close frame with a 1-byte body"),
            WsError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            WsError::InvalidUtf8 => f.write_str("close reason not UTF-8"),
            WsError::InvalidText => f.write_str("text message not UTF-8"),
        }
    }
}

impl std::error::Error for WsError {}

/// A control frame (or the end of the stream) the connection must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsControl {
    /// Answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// Peer sent a pong (keepalive evidence only).
    Pong,
    /// Peer sent close: echo a close with `code` (if any), then close the socket.
    Close { code: Option<u16> },
}

/// Data frames up to this payload size are slid together by `decode_in_place` (a short move
/// costs less than a decoding pass per frame); larger payloads are decoded where they lie.
const SLIDE_MAX: usize = 512;

/// The opcode a whole message was sent with (reported by `for_messages` decoders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
}

/// One step of `FrameDecoder::decode_in_place`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// These bytes of the input are unmasked MQTT stream bytes (`for_messages`: payload bytes of
    /// the current message, which goes on).
    Data(std::ops::Range<usize>),
    /// `for_messages` decoders only: these bytes (possibly none) end the current message, which
    /// was of this kind (text: all of it was valid UTF-8).
    MessageEnd(MessageKind, std::ops::Range<usize>),
    Control(WsControl),
    NeedMore,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Incremental decoder of client-to-server frames. Binary payload bytes are unmasked straight into
/// the MQTT byte stream as they arrive (a frame need not be complete), so one MQTT packet may span
/// frames and one frame may carry several packets, with no extra copy.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message_size: u64,
    /// Payload bytes still to come for the data frame whose header was consumed; 0 = expecting
    /// a header.
    remaining: u64,
    /// Masking key of that frame, already rotated so index 0 applies to its next payload byte.
    mask: [u8; 4],
    /// That frame had FIN: its last byte ends the message.
    fin: bool,
    /// A fragmented message is in progress (its first frame lacked FIN).
    in_message: bool,
    /// Payload bytes announced so far by the current message's frames.
    message_len: u64,
    /// A close frame was decoded: everything after it is discarded.
    closed: bool,
    /// `for_messages`: text accepted, message ends reported, no sliding across frames.
    messages: bool,
    /// `for_messages`: the current message is text, so its payload is validated.
    text: bool,
    utf8: Utf8Stream,
}

/// A frame header parsed from the front of the input.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: u64,
    /// Data frames: message length including this frame (applied only once it is consumed).
    message_len: u64,
    /// Bytes the header occupies (2..=14).
    size: usize,
}

impl FrameDecoder {
    /// `max_message_size`: largest frame / reassembled message accepted (else close 1009).
    pub fn new(max_message_size: usize) -> Self {
        FrameDecoder {
            max_message_size: u64::try_from(max_message_size).unwrap_or(u64::MAX),
            remaining: 0,
            mask: [0; 4],
            fin: true,
            in_message: false,
            message_len: 0,
            closed: false,
            messages: false,
            text: false,
            utf8: Utf8Stream::default(),
        }
    }

    /// A general RFC 6455 message decoder, not the broker's: text frames are accepted and their
    /// payload checked as UTF-8 as it arrives (close 1007 on the first invalid byte, RFC 6455 8.1),
    /// and the last bytes of each message come as `WsEvent::MessageEnd` with the message's kind.
    /// Data ranges never reach into the next frame.
    pub fn for_messages(max_message_size: usize) -> Self {
        FrameDecoder { messages: true, ..FrameDecoder::new(max_message_size) }
    }

    /// Take the next step through `input`, unmasking binary payload bytes in place. Returns how
    /// many bytes were consumed and what they held:
    /// - `WsEvent::Data(range)`: `input[range]` is now plain MQTT stream bytes (the caller decodes
    ///   them right there: no copy unless a packet spans frames);
    /// - `WsEvent::Control(c)`: a complete control frame;
    /// - `WsEvent::MessageEnd(kind, range)`: `for_messages` decoders only, see there;
    /// - `WsEvent::NeedMore`: the rest of the input is part of a frame header or control frame
    ///   (keep it and call again with more bytes), or the input is exhausted.
    ///
    /// After `Close` every later call consumes all its input and yields `NeedMore`. After an
    /// error the decoder's state is unspecified: close the connection with `close_code()`.
    pub fn decode_in_place(&mut self, input: &mut [u8]) -> Result<(usize, WsEvent), WsError> {
        if self.closed {
            return Ok((input.len(), WsEvent::NeedMore));
        }
        let mut pos = 0usize;
        loop {
            if self.remaining > 0 {
                let avail = input.len().saturating_sub(pos);
                let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(avail);
                if n == 0 {
                    return Ok((pos, WsEvent::NeedMore));
                }
                if let Some(chunk) = input.get_mut(pos..pos + n) {
                    unmask(chunk, self.mask);
                }
                self.mask.rotate_left(n % 4);
                self.remaining -= n as u64;
                if self.messages {
                    return self.message_payload(input, pos..pos + n).map(|event| (pos + n, event));
                }
                if self.remaining > 0 {
                    return Ok((pos + n, WsEvent::Data(pos..pos + n)));
                }
                self.end_data_frame();
                let (consumed, end) = self.slide_small_frames(input, pos + n);
                return Ok((consumed, WsEvent::Data(pos..end)));
            }
            debug_assert!(pos <= input.len(), "frame decoder past its input");
            let rest = input.get(pos..).unwrap_or(&[]);
            let Some(h) = self.parse_header(rest)? else {
                return Ok((pos, WsEvent::NeedMore));
            };
            if h.opcode >= OP_CLOSE {
                let total = h.size + h.len as usize;
                let Some(payload) = rest.get(h.size..total) else {
                    return Ok((pos, WsEvent::NeedMore));
                };
                let ctrl = self.control(h.opcode, payload, h.mask)?;
                return Ok((pos + total, WsEvent::Control(ctrl)));
            }
            pos += h.size;
            self.fin = h.fin;
            self.in_message = !h.fin;
            self.mask = h.mask;
            self.remaining = h.len;
            self.message_len = h.message_len;
            if self.messages {
                if h.opcode != OP_CONTINUATION {
                    self.text = h.opcode == OP_TEXT;
                    self.utf8.reset();
                }
                // An empty frame still ends its message (an empty message, or the empty last
                // fragment of a longer one).
                if h.len == 0 {
                    if let WsEvent::MessageEnd(kind, r) = self.end_message_frame(pos..pos)? {
                        return Ok((pos, WsEvent::MessageEnd(kind, r)));
                    }
                }
                continue;
            }
            if h.len == 0 {
                self.end_data_frame();
            }
        }
    }

    /// Like `decode_in_place` for input that cannot be modified: binary payload bytes are
    /// appended, unmasked, to `mqtt_out`. Returns the bytes consumed and a control frame if one
    /// completed (call again with the rest after handling it).
    pub fn decode(&mut self, input: &[u8], mqtt_out: &mut Vec<u8>) -> Result<(usize, Option<WsControl>), WsError> {
        let mut buf = input.to_vec();
        let mut pos = 0;
        loop {
            let (n, event) = self.decode_in_place(buf.get_mut(pos..).unwrap_or(&mut []))?;
            match event {
                WsEvent::Data(range) | WsEvent::MessageEnd(_, range) => {
                    mqtt_out.extend_from_slice(buf.get(pos + range.start..pos + range.end).unwrap_or(&[]));
                    pos += n;
                }
                WsEvent::Control(c) => return Ok((pos + n, Some(c))),
                WsEvent::NeedMore => return Ok((pos + n, None)),
            }
        }
    }

    /// After a data frame that ended at `at`: take the complete small data frames that follow
    /// too, unmasking each payload and sliding it up against the previous one, so a burst of
    /// tiny frames (one short MQTT packet each, as most clients send) comes out as one range.
    /// Stops at anything else (a control frame, a large or partial frame, an invalid header,
    /// which the next call reports). Returns (bytes consumed, end of the MQTT bytes).
    fn slide_small_frames(&mut self, input: &mut [u8], at: usize) -> (usize, usize) {
        let (mut next, mut end) = (at, at);
        while let Some(Ok(Some(h))) = input.get(next..).map(|rest| self.parse_header(rest)) {
            let len = usize::try_from(h.len).unwrap_or(usize::MAX);
            if h.opcode >= OP_CLOSE || len > SLIDE_MAX {
                break;
            }
            let (start, stop) = (next + h.size, next + h.size + len);
            let Some(payload) = input.get_mut(start..stop) else { break };
            unmask(payload, h.mask);
            input.copy_within(start..stop, end);
            end += len;
            next = stop;
            self.fin = h.fin;
            self.in_message = !h.fin;
            self.message_len = h.message_len;
            self.end_data_frame();
        }
        (next, end)
    }

    fn end_data_frame(&mut self) {
        if self.fin {
            self.message_len = 0;
        }
    }

    /// `for_messages`: the payload bytes at `chunk` were unmasked. Kept out of the broker's path
    /// (one branch on `messages` there), so its decoding costs what it did before this mode.
    #[inline(never)]
    fn message_payload(&mut self, input: &[u8], chunk: std::ops::Range<usize>) -> Result<WsEvent, WsError> {
        if self.text {
            self.utf8.push(input.get(chunk.clone()).unwrap_or(&[])).map_err(|_| WsError::InvalidText)?;
        }
        if self.remaining > 0 {
            return Ok(WsEvent::Data(chunk));
        }
        self.end_message_frame(chunk)
    }

    /// `for_messages`: a data frame's payload ended with the bytes `last`. Reports them as the
    /// end of the message if the frame had FIN (text must then not stop inside a code point).
    fn end_message_frame(&mut self, last: std::ops::Range<usize>) -> Result<WsEvent, WsError> {
        if !self.fin {
            return Ok(WsEvent::Data(last));
        }
        self.message_len = 0;
        if !self.text {
            return Ok(WsEvent::MessageEnd(MessageKind::Binary, last));
        }
        self.utf8.finish().map_err(|_| WsError::InvalidText)?;
        Ok(WsEvent::MessageEnd(MessageKind::Text, last))
    }

    /// Parse and validate a header at the front of `buf`; `None` if not all of it is there yet.
    /// Everything decidable from the first two bytes is checked before waiting for the rest.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            op => return Err(WsError::UnknownOpcode(op)),
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        let len7 = b1 & 0x7F;
        let is_control = opcode >= OP_CLOSE;
        if is_control && (!fin || len7 > 125) {
            return Err(WsError::BadControlFrame);
        }
        match opcode {
            OP_CONTINUATION if !self.in_message => return Err(WsError::UnexpectedContinuation),
            OP_TEXT | OP_BINARY if self.in_message => return Err(WsError::UnfinishedMessage),
            OP_TEXT if !self.messages => return Err(WsError::TextFrame),
            _ => {}
        }
        let (len, len_size) = match len7 {
            126 => match (buf.get(2), buf.get(3)) {
                (Some(&a), Some(&b)) => (u64::from(u16::from_be_bytes([a, b])), 2),
                _ => return Ok(None),
            },
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                (len, 8)
            }
            n => (u64::from(n), 0),
        };
        let mut message_len = 0;
        if !is_control {
            // Checked from the header, before any of the payload is accepted.
            let base = if opcode == OP_CONTINUATION { self.message_len } else { 0 };
            match base.checked_add(len) {
                Some(total) if total <= self.max_message_size => message_len = total,
                _ => return Err(WsError::MessageTooBig),
            }
        }
        let size = 2 + len_size + 4;
        let Some(key) = buf.get(2 + len_size..size) else {
            return Ok(None);
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(key);
        Ok(Some(Header { fin, opcode, mask, len, message_len, size }))
    }

    fn control(&mut self, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Result<WsControl, WsError> {
        // At most 125 bytes: unmasking into a stack buffer avoids allocating for pong/close.
        let mut buf = [0u8; 125];
        let Some(body) = buf.get_mut(..payload.len()) else {
            return Err(WsError::BadControlFrame);
        };
        body.copy_from_slice(payload);
        unmask(body, mask);
        match opcode {
            OP_PING => Ok(WsControl::Ping(body.to_vec())),
            OP_PONG => Ok(WsControl::Pong),
            _ => {
                let code = match *body {
                    [] => None,
                    [_] => return Err(WsError::BadClosePayload),
                    [hi, lo, ref reason @ ..] => {
                        let code = u16::from_be_bytes([hi, lo]);
                        if !close_code_is_valid(code) {
                            return Err(WsError::InvalidCloseCode(code));
                        }
                        if std::str::from_utf8(reason).is_err() {
                            return Err(WsError::InvalidUtf8);
                        }
                        Some(code)
                    }
                };
                self.closed = true;
                Ok(WsControl::Close { code })
            }
        }
    }
}

/// Codes a peer may put in a close frame (RFC 6455 7.4.1/7.4.2 and the IANA registry): 1000-1003,
/// 1007-1014, and 3000-4999 (registered / private use). 1004-1006, 1015 and 1016-2999 are
/// reserved or must never be sent; nothing is defined below 1000 or above 4999.
fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XOR `buf` with `mask` repeated from its first byte. Written so the compiler vectorizes it.
fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    // 32 mask bytes side by side: a plain zip over fixed-size chunks, which the compiler turns
    // into vector XORs. Each chunk starts at a multiple of 4, so the mask phase stays aligned.
    let mut wide = [0u8; 32];
    for (w, m) in wide.iter_mut().zip(mask.iter().cycle()) {
        *w = *m;
    }
    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for (b, m) in chunk.iter_mut().zip(wide.iter()) {
            *b ^= m;
        }
    }
    // Small frames (one short MQTT packet each) live in the remainder: words, then bytes.
    let [a, b, c, d] = mask;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = chunks.into_remainder().chunks_exact_mut(8);
    for w in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (b, m) in words.into_remainder().iter_mut().zip(wide.iter()) {
        *b ^= m;
    }
}

/// Append an unmasked, FIN binary frame header for `payload_len` bytes.
pub fn encode_binary_header(payload_len: usize, out: &mut Vec<u8>) {
    let (bytes, len) = binary_header(payload_len);
    out.extend_from_slice(bytes.get(..len).unwrap_or(&bytes));
}

/// An unmasked, FIN binary frame header for `payload_len` bytes, on the stack: the header bytes
/// are the first `.1` of the array.
pub fn binary_header(payload_len: usize) -> ([u8; 10], usize) {
    data_header(OP_BINARY, payload_len)
}

/// An unmasked, FIN text frame header for `payload_len` bytes, like `binary_header` (the broker
/// never sends text [MQTT-6.0.0-1]; for tools such as the Autobahn echo server).
pub fn text_header(payload_len: usize) -> ([u8; 10], usize) {
    data_header(OP_TEXT, payload_len)
}

fn data_header(opcode: u8, payload_len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if payload_len <= 125 {
        h[1] = payload_len as u8;
        (h, 2)
    } else if let Ok(len) = u16::try_from(payload_len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Append a pong frame with `payload` (at most 125 bytes; anything longer is truncated so the
/// frame stays valid).
pub fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    let payload = payload.get(..125).unwrap_or(payload);
    out.extend_from_slice(&[0x80 | OP_PONG, payload.len() as u8]);
    out.extend_from_slice(payload);
}

/// Append a close frame with `code` (none: empty body).
pub fn encode_close(code: Option<u16>, out: &mut Vec<u8>) {
    match code {
        Some(code) => {
            let [hi, lo] = code.to_be_bytes();
            out.extend_from_slice(&[0x80 | OP_CLOSE, 2, hi, lo]);
        }
        None => out.extend_from_slice(&[0x80 | OP_CLOSE, 0]),
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
