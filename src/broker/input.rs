//! Bytes to packets: each connection's transport layers (raw TCP, the WebSocket upgrade,
//! WebSocket frames) feed MQTT decoding, which hands each packet to the broker. Decoding stops
//! where a connection's input is paused (see `flow`); what is left waits in the connection's
//! buffers for `resume`.

use std::time::Instant;

use log::debug;

use super::{CloseReason, Core, ProtocolError};
use crate::buffer::InBuf;
use crate::connection::{Phase, Transport, WsState};
use crate::mqtt::{decode_packet, fixed_header, ConnectReturnCode, DecodeError, Packet};
use crate::ws::{self, HandshakeOutcome, WsControl, WsEvent};

/// A partial packet this large is only buffered while `memory_limit` has room for it.
const LARGE_PARTIAL: usize = 64 * 1024;

impl Core {
    /// Bytes arrived on `token`'s socket, read into a shared buffer (the event loop does that
    /// when the connection holds nothing; if it does, they are appended to it). They may be
    /// modified in place (WebSocket unmasking).
    pub fn handle_input(&mut self, token: usize, data: &mut [u8], now: Instant) {
        self.now = now;
        let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) else { return };
        let mut held = std::mem::take(&mut conn.raw_in);
        consume_with_leftover(&mut held, data, |bytes| self.process_raw(token, bytes));
        if let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) {
            conn.raw_in = held;
        }
    }

    /// Where to read `token`'s next bytes when it already holds a partial unit: straight behind
    /// it (no copy). `None`: read into the shared buffer and call `handle_input`.
    pub fn held_input(&mut self, token: usize) -> Option<&mut InBuf> {
        self.conns.get_mut(token).map(|c| &mut c.raw_in).filter(|b| !b.is_empty())
    }

    /// Bytes were committed into `held_input(token)`.
    pub fn handle_buffered_input(&mut self, token: usize, now: Instant) {
        self.now = now;
        self.process_held_raw(token);
    }

    /// Whether the event loop may read `token`'s socket now: not while its input is paused by
    /// backpressure, nor once it is closing. O(1).
    pub fn wants_input(&self, token: usize) -> bool {
        self.conns.get(token).is_some_and(|c| c.wants_input())
    }

    /// A paused connection may go on (it was in `take_resumed`): decode what it already holds.
    /// The caller then reads its socket if `wants_input` still says so.
    pub fn resume(&mut self, token: usize, now: Instant) {
        self.now = now;
        let Some(conn) = self.conns.get_mut(token) else { return };
        conn.resume_pending = false;
        if !conn.wants_input() {
            // Paused again before its turn: it is listed again when that pause ends.
            return;
        }
        // MQTT bytes already taken out of WebSocket frames come first, then undecoded frames.
        if let Transport::Ws(ws) = &mut conn.transport {
            let mut held = std::mem::take(&mut ws.mqtt_in);
            let n = self.process_mqtt(token, held.filled_mut());
            held.consume(n);
            match self.conns.get_mut(token).map(|c| &mut c.transport) {
                Some(Transport::Ws(ws)) if !held.is_empty() => ws.mqtt_in = held,
                _ => {}
            }
        }
        if self.conns.get(token).is_some_and(|c| c.wants_input()) {
            self.process_held_raw(token);
        }
    }

    fn process_held_raw(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) else { return };
        let mut held = std::mem::take(&mut conn.raw_in);
        let n = self.process_raw(token, held.filled_mut());
        held.consume(n);
        if let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) {
            conn.raw_in = held;
        }
    }

    /// Run raw socket bytes through the transport layers. Returns how many bytes were consumed.
    fn process_raw(&mut self, token: usize, data: &mut [u8]) -> usize {
        let memory_full = matches!(self.conns.get(token).map(|c| &c.transport), Some(Transport::WsHandshake { .. }))
            && self.memory_full();
        let Some(conn) = self.conns.get_mut(token) else { return data.len() };
        match &mut conn.transport {
            Transport::Tcp => self.process_mqtt(token, data),
            Transport::WsHandshake { listener } => {
                let listener = *listener;
                let Some(cfg) = self.ws_configs.get(listener) else { return data.len() };
                let peer_ip = conn.peer.ip().to_string();
                let outcome = match ws::handshake::handle_request(data, cfg, &peer_ip) {
                    HandshakeOutcome::Accept { .. } if memory_full => {
                        self.stats.refused_memory += 1;
                        ws::handshake::service_unavailable()
                    }
                    outcome => outcome,
                };
                match outcome {
                    HandshakeOutcome::Partial => 0,
                    HandshakeOutcome::Accept { response, consumed, subprotocol, forwarded_for } => {
                        debug!("WebSocket upgrade from {} (subprotocol {subprotocol:?})", conn.peer);
                        conn.out.push_slice(&response);
                        conn.forwarded_for = forwarded_for.map(Into::into);
                        conn.transport = Transport::Ws(Box::new(WsState::new(self.limits.max_packet_size)));
                        self.mark_dirty(token);
                        match data.get_mut(consumed..) {
                            Some(rest) => consumed + self.process_raw(token, rest),
                            None => data.len(),
                        }
                    }
                    HandshakeOutcome::Reject { response, error } => {
                        conn.out.push_slice(&response);
                        self.mark_dirty(token);
                        self.close(token, CloseReason::Handshake(error));
                        data.len()
                    }
                }
            }
            Transport::Ws(_) => self.process_frames(token, data),
        }
    }

    /// WebSocket frames: payloads are unmasked in place and decoded as MQTT right there (the
    /// decoder slides a burst of small frames together into one range); only a packet that spans
    /// reads is copied (into the connection's `mqtt_in`). Stops after the frame during which
    /// input was paused; returns the bytes consumed.
    fn process_frames(&mut self, token: usize, data: &mut [u8]) -> usize {
        let mut pos = 0;
        let mut failure = None;
        while let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) {
            if !conn.wants_input() {
                return pos;
            }
            let Transport::Ws(ws) = &mut conn.transport else { break };
            let Some(rest) = data.get_mut(pos..) else { break };
            match ws.decoder.decode_in_place(rest) {
                // MessageEnd only comes from `for_messages` decoders, never the broker's.
                Ok((n, WsEvent::Data(range) | WsEvent::MessageEnd(_, range))) => {
                    let (start, end) = (pos + range.start, pos + range.end);
                    pos += n;
                    if let Some(bytes) = data.get_mut(start..end) {
                        self.feed_ws_stream(token, bytes);
                    }
                }
                Ok((n, WsEvent::Control(WsControl::Ping(payload)))) => {
                    pos += n;
                    // Close the open data frame first: frames never nest.
                    conn.prepare_flush();
                    ws::frame::encode_pong(&payload, conn.out.tail());
                    self.mark_dirty(token);
                    self.after_output(token);
                }
                Ok((n, WsEvent::Control(WsControl::Pong))) => pos += n,
                Ok((_, WsEvent::Control(WsControl::Close { code }))) => {
                    failure = Some(CloseReason::WebSocketClosed(code));
                    break;
                }
                Ok((n, WsEvent::NeedMore)) => return pos + n,
                Err(e) => {
                    failure = Some(CloseReason::WebSocket(e));
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            self.close(token, reason);
        }
        data.len()
    }

    /// MQTT stream bytes from one WebSocket frame.
    fn feed_ws_stream(&mut self, token: usize, bytes: &mut [u8]) {
        let Some(Transport::Ws(ws)) = self.conns.get_mut(token).map(|c| &mut c.transport) else { return };
        let mut held = std::mem::take(&mut ws.mqtt_in);
        consume_with_leftover(&mut held, bytes, |b| self.process_mqtt(token, b));
        if let Some(Transport::Ws(ws)) = self.conns.get_mut(token).filter(|c| !c.closing).map(|c| &mut c.transport) {
            ws.mqtt_in = held;
        }
    }

    /// Decode and act on every complete MQTT packet in `buf`, until input is paused. Returns
    /// the bytes consumed.
    fn process_mqtt(&mut self, token: usize, buf: &mut [u8]) -> usize {
        let buf: &[u8] = buf;
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get(token) else { return buf.len() };
            if conn.closing {
                return buf.len();
            }
            if !conn.wants_input() {
                return pos;
            }
            let level = conn.level;
            let awaiting_connect = conn.phase == Phase::AwaitConnect;
            // Before CONNECT only a small packet is buffered: an unauthenticated socket cannot
            // make the broker hold much.
            let max = if awaiting_connect { self.limits.max_connect_packet_size } else { self.limits.max_packet_size };
            debug_assert!(pos <= buf.len(), "decoded past the input");
            let rest = buf.get(pos..).unwrap_or(&[]);
            match decode_packet(rest, level, max) {
                Ok(None) => {
                    if rest.len() > LARGE_PARTIAL / 2 && self.refuse_large_partial(token, rest, max) {
                        return buf.len();
                    }
                    return pos;
                }
                Ok(Some((packet, n))) => {
                    pos += n;
                    self.current = Some(token);
                    let result = self.handle_packet(token, packet, self.now);
                    self.current = None;
                    if let Err(reason) = result {
                        self.close(token, reason);
                        return buf.len();
                    }
                }
                Err(DecodeError::UnsupportedProtocolLevel(l)) if awaiting_connect => {
                    // 3.1.2-2: answer CONNACK 0x01, then disconnect.
                    debug!("Client from {} asked for protocol level {l}", conn.peer);
                    self.send(
                        token,
                        &Packet::Connack {
                            session_present: false,
                            code: ConnectReturnCode::UnacceptableProtocolVersion,
                        },
                    );
                    self.close(token, CloseReason::ConnectRefused(ConnectReturnCode::UnacceptableProtocolVersion));
                    return buf.len();
                }
                Err(e) => {
                    self.close(token, CloseReason::Protocol(ProtocolError::Decode(e)));
                    return buf.len();
                }
            }
        }
    }
}

impl Core {
    /// A partial packet is about to be buffered: if it is large and `memory_limit` is
    /// reached, close the connection instead. Returns whether it did.
    #[cold]
    fn refuse_large_partial(&mut self, token: usize, partial: &[u8], max: usize) -> bool {
        let Ok(Some(h)) = fixed_header(partial, max) else { return false };
        if h.header_len + h.remaining_len <= LARGE_PARTIAL || !self.memory_full() {
            return false;
        }
        self.stats.dropped_memory += 1;
        self.close(token, CloseReason::MemoryLimit);
        true
    }
}

/// Hand `held` + `data` to `consume`, which returns how many bytes it used; keep the rest in
/// `held`. When nothing is held, `data` is consumed where it lies and only a trailing partial
/// unit (or what a pause left) is copied; a drained `held` gives its memory back (idle
/// connections stay small).
fn consume_with_leftover(held: &mut InBuf, data: &mut [u8], mut consume: impl FnMut(&mut [u8]) -> usize) {
    if held.is_empty() {
        let n = consume(data);
        debug_assert!(n <= data.len(), "consumed {n} of {} bytes", data.len());
        held.extend_from_slice(data.get(n..).unwrap_or(&[]));
    } else {
        // Keep byte order: append behind what is held.
        held.extend_from_slice(data);
        let n = consume(held.filled_mut());
        debug_assert!(n <= held.len(), "consumed {n} of {} held bytes", held.len());
        held.consume(n);
    }
}
