//! MQTT bytes to packets: a connection's transport (see `transport`) hands up the MQTT stream
//! through an `Endpoint`, the core's side of that connection; each complete packet is decoded
//! (borrowed from the bytes) and acted on. Decoding stops where the connection's input is paused
//! (see `flow`); the transport keeps what is left until `resume`.

use std::time::Instant;

use log::debug;

use super::{CloseReason, Core, ProtocolError};
use crate::buffer::OutQueue;
use crate::connection::Phase;
use crate::mqtt::{decode_packet, fixed_header, Connack, ConnectReturnCode, DecodeError, Packet};
use crate::transport::{TransportError, Upper};

/// A partial packet this large is only buffered while `memory_limit` has room for it.
const LARGE_PARTIAL: usize = 64 * 1024;

/// The core's side of one connection, handed to its transport for one call (`read_from`,
/// `resume`): what the transport may tell the core and take from it. Obtained from
/// `Core::endpoint` or `Core::poll_resume`.
pub struct Endpoint<'a> {
    core: &'a mut Core,
    token: usize,
}

impl Endpoint<'_> {
    pub fn token(&self) -> usize {
        self.token
    }

    /// The peer closed its side (EOF), or reading failed with `error`.
    pub fn hangup(&mut self, error: Option<std::io::ErrorKind>) {
        self.core.handle_hangup(self.token, error);
    }
}

impl Upper for Endpoint<'_> {
    fn wants_input(&self) -> bool {
        self.core.wants_input(self.token)
    }

    fn mqtt(&mut self, bytes: &[u8]) -> usize {
        self.core.process_mqtt(self.token, bytes)
    }

    fn output(&mut self) -> Option<&mut OutQueue> {
        self.core.conns.get_mut(self.token).map(|c| &mut c.out)
    }

    fn queued(&mut self) {
        self.core.mark_dirty(self.token);
        self.core.after_output(self.token);
    }

    fn admit_upgrade(&mut self) -> bool {
        if self.core.memory_full() {
            self.core.stats.refused_memory += 1;
            return false;
        }
        true
    }

    fn upgraded(&mut self, forwarded_for: Option<String>) {
        if let Some(conn) = self.core.conns.get_mut(self.token) {
            conn.websocket = true;
            conn.forwarded_for = forwarded_for.map(Into::into);
        }
    }

    fn tls_identity(&mut self, common_name: Option<String>) {
        self.core.set_tls_identity(self.token, common_name);
    }

    fn fail(&mut self, error: TransportError) {
        let reason = match error {
            TransportError::Handshake(e) => CloseReason::Handshake(e),
            TransportError::WebSocket(e) => CloseReason::WebSocket(e),
            TransportError::WebSocketClosed(code) => CloseReason::WebSocketClosed(code),
            TransportError::Tls(e) => CloseReason::Tls(e),
        };
        self.core.close(self.token, reason);
    }
}

impl Core {
    /// The core's side of `token` for its transport to read into, at `now`; `None` when the
    /// connection is gone, paused or closing (then its socket is not read). O(1).
    pub fn endpoint(&mut self, token: usize, now: Instant) -> Option<Endpoint<'_>> {
        if !self.wants_input(token) {
            return None;
        }
        self.now = now;
        Some(Endpoint { core: self, token })
    }

    /// Whether the event loop may read `token`'s socket now: not while its input is paused by
    /// backpressure, nor once it is closing. O(1).
    pub fn wants_input(&self, token: usize) -> bool {
        self.conns.get(token).is_some_and(|c| c.wants_input())
    }

    /// Whether a paused connection is waiting to go on (the event loop must not sleep then).
    pub fn has_resumed(&self) -> bool {
        !self.resumed.is_empty()
    }

    /// The next paused connection that may go on: its transport hands up what the pause left
    /// (`Transport::resume`), then the loop reads its socket while it wants input. `None` when
    /// there is none.
    pub fn poll_resume(&mut self, now: Instant) -> Option<Endpoint<'_>> {
        self.now = now;
        while let Some(token) = self.resumed.pop() {
            let Some(conn) = self.conns.get_mut(token) else { continue };
            conn.resume_pending = false;
            // Paused again before its turn: it is listed again when that pause ends.
            if conn.wants_input() {
                return Some(Endpoint { core: self, token });
            }
        }
        None
    }

    /// Decode and act on every complete MQTT packet in `buf`, until input is paused. Returns
    /// the bytes consumed.
    fn process_mqtt(&mut self, token: usize, buf: &[u8]) -> usize {
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
                        &Packet::Connack(Box::new(Connack::new(false, ConnectReturnCode::UnacceptableProtocolVersion))),
                    );
                    self.close(
                        token,
                        CloseReason::ConnectRefused(ConnectReturnCode::UnacceptableProtocolVersion.into()),
                    );
                    return buf.len();
                }
                Err(e) if awaiting_connect && super::v5::looks_like_v5_connect(rest) => {
                    // 4.13.1-1 allows a CONNACK with the reason before the close.
                    let code = e.reason_code();
                    if let Some(c) = self.conns.get_mut(token) {
                        c.level = crate::mqtt::ProtocolLevel::V5;
                    }
                    self.send(token, &Packet::Connack(Box::new(Connack::new(false, code))));
                    self.close(token, CloseReason::Protocol(ProtocolError::Decode(e)));
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
        let level = self.conns.get(token).map_or(crate::mqtt::ProtocolLevel::V311, |c| c.level);
        let Ok(Some(h)) = fixed_header(partial, level, max) else { return false };
        if h.header_len + h.remaining_len <= LARGE_PARTIAL || !self.memory_full() {
            return false;
        }
        self.stats.dropped_memory += 1;
        self.close(token, CloseReason::MemoryLimit);
        true
    }
}
