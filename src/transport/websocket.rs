//! MQTT over WebSocket as a transport layer (MQTT chapter 6, RFC 6455): the HTTP upgrade, then
//! frames. The codecs are in `crate::ws`; this is their state per connection and how they sit
//! between the bytes and MQTT.

use std::net::IpAddr;
use std::sync::Arc;

use log::debug;

use super::{consume_with_leftover, TransportError, Upper};
use crate::buffer::{InBuf, OutQueue};
use crate::ws::{self, FrameDecoder, HandshakeConfig, HandshakeOutcome, WsControl, WsEvent};

/// Room for the longest frame header a server sends (no mask): 2 + 8 bytes.
const FRAME_HEADER_ROOM: u8 = 10;

/// Waiting for the HTTP upgrade request.
#[derive(Debug)]
pub(super) struct Upgrade {
    config: Arc<HandshakeConfig>,
    peer: IpAddr,
    max_message_size: usize,
}

/// What the upgrade layer did with the bytes so far.
pub(super) enum Upgraded {
    /// The request head is not complete: keep it and read more.
    Partial,
    /// Refused: the HTTP answer is queued and the connection failed.
    Refused,
    /// Accepted (the response is queued): `consumed` bytes were the request, frames follow.
    Done { consumed: usize, ws: Box<WebSocket> },
}

impl Upgrade {
    pub(super) fn new(config: Arc<HandshakeConfig>, peer: IpAddr, max_message_size: usize) -> Self {
        Upgrade { config, peer, max_message_size }
    }

    /// Parse the request head received so far (everything held: `httparse` needs the whole
    /// head; the handshake settings bound it). O(head).
    pub(super) fn process(&mut self, data: &[u8], upper: &mut dyn Upper) -> Upgraded {
        let peer_ip = self.peer.to_string();
        let outcome = match ws::handshake::handle_request(data, &self.config, &peer_ip) {
            HandshakeOutcome::Accept { .. } if !upper.admit_upgrade() => ws::handshake::service_unavailable(),
            outcome => outcome,
        };
        match outcome {
            HandshakeOutcome::Partial => Upgraded::Partial,
            HandshakeOutcome::Accept { response, consumed, subprotocol, forwarded_for } => {
                debug!("WebSocket upgrade from {} (subprotocol {subprotocol:?})", self.peer);
                if let Some(out) = upper.output() {
                    out.raw_tail().extend_from_slice(&response);
                    // From now on every run of MQTT bytes the core queues gets a frame header.
                    out.set_frame_room(FRAME_HEADER_ROOM);
                }
                upper.queued();
                upper.upgraded(forwarded_for);
                Upgraded::Done { consumed, ws: Box::new(WebSocket::new(self.max_message_size)) }
            }
            HandshakeOutcome::Reject { response, error } => {
                if let Some(out) = upper.output() {
                    out.raw_tail().extend_from_slice(&response);
                }
                upper.queued();
                upper.fail(TransportError::Handshake(error));
                Upgraded::Refused
            }
        }
    }
}

/// An upgraded connection: frames in, MQTT bytes up; the core's output framed on the way out.
#[derive(Debug)]
pub(super) struct WebSocket {
    decoder: FrameDecoder,
    /// MQTT bytes unmasked from frames and not taken yet (a partial packet, or what a pause
    /// left).
    mqtt_in: InBuf,
}

impl WebSocket {
    fn new(max_message_size: usize) -> Self {
        WebSocket { decoder: FrameDecoder::new(max_message_size), mqtt_in: InBuf::default() }
    }

    /// Frames: payloads are unmasked in place and handed up right there (the decoder slides a
    /// burst of small frames together into one range); only a packet that spans reads is copied
    /// (into `mqtt_in`). Stops after the frame during which input was paused; returns the bytes
    /// consumed. O(bytes).
    pub(super) fn process(&mut self, data: &mut [u8], upper: &mut dyn Upper) -> usize {
        let mut pos = 0;
        while upper.wants_input() {
            let Some(rest) = data.get_mut(pos..) else { break };
            match self.decoder.decode_in_place(rest) {
                // MessageEnd only comes from `for_messages` decoders, never this one.
                Ok((n, WsEvent::Data(range) | WsEvent::MessageEnd(_, range))) => {
                    let (start, end) = (pos + range.start, pos + range.end);
                    pos += n;
                    if let Some(bytes) = data.get_mut(start..end) {
                        consume_with_leftover(&mut self.mqtt_in, bytes, |b| upper.mqtt(b));
                    }
                }
                Ok((n, WsEvent::Control(WsControl::Ping(payload)))) => {
                    pos += n;
                    if let Some(out) = upper.output() {
                        // Close the open data frame first: frames never nest.
                        seal(out);
                        ws::frame::encode_pong(&payload, out.raw_tail());
                    }
                    upper.queued();
                }
                Ok((n, WsEvent::Control(WsControl::Pong))) => pos += n,
                Ok((_, WsEvent::Control(WsControl::Close { code }))) => {
                    upper.fail(TransportError::WebSocketClosed(code));
                    return data.len();
                }
                Ok((n, WsEvent::NeedMore)) => return pos + n,
                Err(e) => {
                    upper.fail(TransportError::WebSocket(e));
                    return data.len();
                }
            }
        }
        pos
    }

    /// Hand up the MQTT bytes a pause left.
    pub(super) fn resume(&mut self, upper: &mut dyn Upper) {
        let mut held = std::mem::take(&mut self.mqtt_in);
        let n = upper.mqtt(held.filled_mut());
        held.consume(n);
        self.mqtt_in = held;
    }

    /// Closing: release held input, and queue a close frame (`Some(code)`) behind the output.
    pub(super) fn close(&mut self, out: &mut OutQueue, close: Option<Option<u16>>) {
        self.mqtt_in = InBuf::default();
        if let Some(code) = close {
            seal(out);
            ws::frame::encode_close(code, out.raw_tail());
        }
    }

    pub(super) fn held_input(&self) -> usize {
        self.mqtt_in.len()
    }
}

/// Close the binary frame holding the MQTT bytes queued since the last call (fill its header):
/// before every write and before any control frame. A no-op without framing. O(segments).
pub(super) fn seal(out: &mut OutQueue) {
    let Some((at, payload_len)) = out.take_open_frame() else { return };
    let (header, len) = ws::frame::binary_header(payload_len);
    let room = usize::from(FRAME_HEADER_ROOM);
    debug_assert!(len <= room, "frame header of {len} bytes");
    out.fill_placeholder(at, room, header.get(..len).unwrap_or(&header));
}
