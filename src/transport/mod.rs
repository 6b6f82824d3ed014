//! The layers under MQTT, one stack per connection, sans-IO in the manner of rustls'
//! `ServerConnection`: socket bytes -> [TLS] -> [HTTP upgrade, then WebSocket frames] -> MQTT
//! bytes, and the reverse for output. A `Transport` never owns a socket or reads the clock: the
//! event loop hands it something to read from (`read_from`) and to write to (`write_to`), and
//! it hands MQTT bytes up to an `Upper` (the broker core's side of the connection, which
//! decodes and acts on packets) and takes what the core queued on the way down.
//!
//! What a transport holds is the input it could not hand up yet: a partial packet, frame header
//! or HTTP head, and whatever was read but not taken while the core paused the connection (at
//! most one read chunk). It holds no memory once that is drained, so idle connections stay
//! small; TLS connections add rustls' state.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;

use crate::buffer::{InBuf, OutQueue};
use crate::ws::{HandshakeConfig, HandshakeError, WsError};

pub mod tls;
pub mod websocket;

#[cfg(test)]
mod tests;

use tls::{TlsEvent, TlsLayer, TlsRead};
use websocket::{Upgrade, Upgraded, WebSocket};

/// The broker core's side of one connection, as the transport sees it.
pub trait Upper {
    /// Whether input is taken now: not while the connection is paused by backpressure, nor once
    /// it is closing. A transport hands nothing up while this is false, and keeps the rest.
    fn wants_input(&self) -> bool;
    /// MQTT stream bytes. Returns how many were consumed (whole packets, until input paused);
    /// the transport keeps the rest and offers it again with what follows.
    fn mqtt(&mut self, bytes: &[u8]) -> usize;
    /// The connection's output, for bytes a layer answers with itself (HTTP response, pong).
    fn output(&mut self) -> Option<&mut OutQueue>;
    /// A layer queued bytes on `output`, or has its own to send (TLS handshake): flush this
    /// connection this turn.
    fn queued(&mut self);
    /// May an HTTP upgrade be accepted now (`memory_limit`)? A refusal is counted by the core.
    fn admit_upgrade(&mut self) -> bool;
    /// The HTTP upgrade succeeded; `forwarded_for` is the client address a trusted proxy gave.
    fn upgraded(&mut self, forwarded_for: Option<String>);
    /// The TLS handshake verified a client certificate with this subject CN.
    fn tls_identity(&mut self, common_name: Option<String>);
    /// A layer failed, or the peer closed it: the connection ends for this reason.
    fn fail(&mut self, error: TransportError);
}

/// Why a layer under MQTT ended the connection. Each maps to one wire outcome: the HTTP answer
/// is already queued; a WebSocket close frame with the error's code; the TLS alert rustls
/// queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The HTTP upgrade was refused (the HTTP answer is queued).
    Handshake(HandshakeError),
    /// The client's WebSocket frames broke RFC 6455.
    WebSocket(WsError),
    /// The peer sent a WebSocket close frame, with this status code.
    WebSocketClosed(Option<u16>),
    /// TLS failed (a plain client on a TLS port, a bad certificate...).
    Tls(String),
}

/// What one `read_from` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// `n` bytes read and handed on; there may be more to read.
    More(usize),
    /// `n` bytes read, and the source had no more (a short read): the next arrival is a new
    /// readiness event.
    Drained(usize),
    /// The peer closed its side (end of file, or TLS close_notify).
    Eof,
}

/// The framing layer between the bytes (after TLS) and MQTT.
#[derive(Debug)]
enum Framing {
    /// MQTT straight over the stream.
    Mqtt,
    /// A WebSocket listener, waiting for the HTTP upgrade request.
    Upgrade(Box<Upgrade>),
    /// WebSocket frames carry the MQTT byte stream. Boxed: TCP connections, the many idle
    /// sensors of a gateway, should not pay for it.
    WebSocket(Box<WebSocket>),
}

/// One connection's stack of layers under MQTT.
#[derive(Debug)]
pub struct Transport {
    /// TLS under everything (boxed: plain connections pay one pointer).
    tls: Option<Box<TlsLayer>>,
    framing: Framing,
    /// Bytes from below (after TLS) that the framing layer did not consume yet.
    held: InBuf,
}

impl Transport {
    /// MQTT straight over TCP.
    pub fn mqtt() -> Self {
        Transport { tls: None, framing: Framing::Mqtt, held: InBuf::default() }
    }

    /// MQTT over WebSocket: the HTTP upgrade first, checked against `config`; `peer` decides
    /// whether forwarded-for headers are trusted; frames carry at most `max_message_size`.
    pub fn websocket(config: Arc<HandshakeConfig>, peer: IpAddr, max_message_size: usize) -> Self {
        let upgrade = Upgrade::new(config, peer, max_message_size);
        Transport { tls: None, framing: Framing::Upgrade(Box::new(upgrade)), held: InBuf::default() }
    }

    /// The same stack, under TLS.
    pub fn with_tls(mut self, tls: TlsLayer) -> Self {
        self.tls = Some(Box::new(tls));
        self
    }

    /// Read once from `src` and hand what can be handed up to `upper`: for TLS, plaintext
    /// rustls already decrypted comes first, else ciphertext is read. A connection holding a
    /// partial unit reads straight behind it; others read into `scratch` (the loop's shared
    /// buffer) and keep only a trailing partial unit. Call only while `upper.wants_input()`.
    /// Errors are the reader's (`WouldBlock` included). O(bytes read).
    pub fn read_from<R: Read>(
        &mut self,
        src: &mut R,
        scratch: &mut [u8],
        upper: &mut dyn Upper,
    ) -> io::Result<Received> {
        if let Some(tls) = &mut self.tls {
            return read_tls(tls, &mut self.framing, &mut self.held, src, scratch, upper);
        }
        if self.held.is_empty() {
            let n = src.read(scratch)?;
            let Some(data) = scratch.get_mut(..n).filter(|_| n > 0) else { return Ok(Received::Eof) };
            deliver(&mut self.framing, &mut self.held, data, upper);
            return Ok(if n < scratch.len() { Received::Drained(n) } else { Received::More(n) });
        }
        let spare = self.held.spare(scratch.len());
        let room = spare.len();
        let n = src.read(spare)?;
        if n == 0 {
            return Ok(Received::Eof);
        }
        self.held.commit(n);
        self.process_held(upper);
        Ok(if n < room { Received::Drained(n) } else { Received::More(n) })
    }

    /// The core let a paused connection go on: hand up what its pause left (MQTT bytes already
    /// out of frames first, then undecoded input), as far as the core takes it. The caller then
    /// reads the socket while `upper.wants_input()`.
    pub fn resume(&mut self, upper: &mut dyn Upper) {
        if let Framing::WebSocket(ws) = &mut self.framing {
            ws.resume(upper);
        }
        if upper.wants_input() {
            self.process_held(upper);
        }
    }

    fn process_held(&mut self, upper: &mut dyn Upper) {
        let mut held = std::mem::take(&mut self.held);
        let n = process(&mut self.framing, held.filled_mut(), upper);
        held.consume(n);
        self.held = held;
    }

    /// Write what `out` holds (the core's output, framed here) to `dst`, through TLS if there
    /// is any. `Ok(true)`: everything, ciphertext included, went out; `Ok(false)`: `dst` would
    /// block, and `out` (or, for TLS, rustls' bounded buffer) keeps the rest. O(bytes written).
    pub fn write_to<W: Write>(&mut self, out: &mut OutQueue, dst: &mut W) -> io::Result<bool> {
        websocket::seal(out);
        let Some(tls) = &mut self.tls else { return out.write_to(dst) };
        loop {
            if !tls.write_tls(dst)? {
                return Ok(false);
            }
            if out.is_empty() {
                return Ok(true);
            }
            let before = out.len();
            out.write_to(&mut tls.plaintext_sink())?;
            if out.len() == before && !tls.wants_write() {
                return Ok(false);
            }
        }
    }

    /// The connection is closing: input is never handed up again (its memory is released), and
    /// a WebSocket gets a close frame with `ws_close` (`Some(code)`: a frame, whose status is
    /// `code` if any), behind what is already queued.
    pub fn close(&mut self, out: &mut OutQueue, ws_close: Option<Option<u16>>) {
        self.held = InBuf::default();
        if let Framing::WebSocket(ws) = &mut self.framing {
            ws.close(out, ws_close);
        }
    }

    /// Our side is done: for TLS, queue close_notify and write it. Returns whether everything
    /// went out, so the caller may shut the socket for writing (else it retries when writable).
    pub fn finish<W: Write>(&mut self, dst: &mut W) -> bool {
        let Some(tls) = &mut self.tls else { return true };
        tls.send_close_notify();
        matches!(tls.write_tls(dst), Ok(true))
    }

    /// Input held (for the invariant checks of tests and fuzzing).
    pub fn held_input(&self) -> usize {
        let ws = match &self.framing {
            Framing::WebSocket(ws) => ws.held_input(),
            _ => 0,
        };
        self.held.len() + ws
    }

    /// Whether the HTTP upgrade is done (or there is none).
    pub fn is_upgrading(&self) -> bool {
        matches!(self.framing, Framing::Upgrade(_))
    }
}

/// One step of reading under TLS (see `Transport::read_from`): ciphertext is read and every
/// record it completes is decrypted and handed up at once, so nothing decrypted waits inside
/// the TLS layer.
fn read_tls<R: Read>(
    tls: &mut TlsLayer,
    framing: &mut Framing,
    held: &mut InBuf,
    src: &mut R,
    scratch: &mut [u8],
    upper: &mut dyn Upper,
) -> io::Result<Received> {
    let result = tls.read_from(src, scratch, &mut |event| match event {
        TlsEvent::Handshaken(identity) => upper.tls_identity(identity),
        TlsEvent::Plaintext(data) => deliver(framing, held, data, upper),
    })?;
    if tls.wants_write() {
        // Handshake answers and alerts go out with the turn's output.
        upper.queued();
    }
    match result {
        TlsRead::Read { n, filled: false } => Ok(Received::Drained(n)),
        TlsRead::Read { n, filled: true } => Ok(Received::More(n)),
        TlsRead::Eof => Ok(Received::Eof),
        TlsRead::Failed(e) => {
            // The alert is queued; it goes out with the closing write.
            upper.fail(TransportError::Tls(e.to_string()));
            Ok(Received::Drained(0))
        }
    }
}

/// Hand `held` + `data` to the framing layer; keep what it did not consume in `held`. When
/// nothing is held, `data` is consumed where it lies and only a trailing partial unit (or
/// what a pause left) is copied; a drained `held` gives its memory back.
fn deliver(framing: &mut Framing, held: &mut InBuf, data: &mut [u8], upper: &mut dyn Upper) {
    consume_with_leftover(held, data, |bytes| process(framing, bytes, upper));
}

/// Run bytes through the framing layer; returns how many it consumed.
fn process(framing: &mut Framing, data: &mut [u8], upper: &mut dyn Upper) -> usize {
    match framing {
        Framing::Mqtt => upper.mqtt(data),
        Framing::WebSocket(ws) => ws.process(data, upper),
        Framing::Upgrade(upgrade) => match upgrade.process(data, upper) {
            Upgraded::Partial => 0,
            Upgraded::Refused => data.len(),
            Upgraded::Done { consumed, ws } => {
                let mut ws = ws;
                // Frames may follow the request in the same read.
                let rest = data.get_mut(consumed..).map_or(0, |rest| ws.process(rest, upper));
                *framing = Framing::WebSocket(ws);
                consumed + rest
            }
        },
    }
}

/// Hand `held` + `data` to `consume`, which returns how many bytes it used; keep the rest in
/// `held` (see `deliver`).
pub(crate) fn consume_with_leftover(held: &mut InBuf, data: &mut [u8], mut consume: impl FnMut(&mut [u8]) -> usize) {
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
