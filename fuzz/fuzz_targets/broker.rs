//! The whole sans-IO broker: several clients (raw TCP and WebSocket listeners) whose byte streams
//! are cut into reads at fuzzer-chosen points, a fake clock the input advances, fake sockets that
//! take output at a fuzzer-chosen rate, and the event loop's turn (timeouts, flush, close,
//! release) after every step.
//!
//! Input: a config byte, then a program of one-byte operations with their arguments (see `Op`).
//! Reads past the end of the input are zero, so every input is a valid program. Checks:
//! - no panic;
//! - buffered input and output per connection stay bounded (see `adapter::check_limits`);
//! - everything the broker writes is well formed: a valid HTTP answer, then unmasked server
//!   frames, carrying valid server-to-client MQTT packets, CONNACK first, nothing after a
//!   refusing CONNACK or a close frame;
//! - after `handle_timeouts(now)` no deadline is left in the past, and a client that never got
//!   a CONNACK is gone once its connect timeout has passed;
//! - at the end, fresh TCP and WebSocket clients are still served (CONNECT gets a CONNACK,
//!   PINGREQ a PINGRESP), and once every client hangs up no connection is left.
#![no_main]

use std::io::{self, IoSlice, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use midge::mqtt::{
    decode_packet, encode_packet, Ack, Connect, ConnectReturnCode, Disconnect, Packet, ProtocolLevel, Publish, QoS,
    ReasonCode, Subscribe, Unsubscribe, Will,
};
use midge::ws::HandshakeConfig;
use midge::{Config, ListenerConfig, MemoryLimit};
use midge_fuzz::{client_frame, Input};

/// Small, so packets the fuzzer builds reach the size limits.
const MAX_PACKET_SIZE: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SLOTS: usize = 4;

/// `MIDGE_FUZZ_TRACE=1 target/.../broker crash-file` prints each operation and what each client
/// received, to see what a crashing input does.
fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("MIDGE_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Everything this target needs from `midge::broker::Core`, in one place, driving it as
/// `src/event_loop.rs` does: reads only while `wants_input` (bytes refused meanwhile wait, as in
/// a kernel buffer, and are read after `resume`), `wrote` after every flush, lingering closes
/// that discard what the peer still sends, and `check_invariants` after every turn.
mod adapter {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Instant;

    use midge::broker::Core;
    use midge::transport::Transport;
    use midge::ws::HandshakeConfig;
    use midge::Config;

    /// The event loop's shared read buffer size: one read never delivers more.
    const READ_CHUNK: usize = 64 * 1024;

    /// The fake sockets, by connection token.
    pub trait Sockets {
        type Socket: Write;
        fn socket(&mut self, token: usize) -> Option<&mut Self::Socket>;
        /// The broker is done with `token`: the socket is dropped.
        fn closed(&mut self, token: usize);
        /// Whether the last flush left output behind (the socket would block).
        fn set_blocked(&mut self, token: usize, blocked: bool);
    }

    pub enum Listener {
        Tcp,
        WebSocket(usize),
    }

    pub struct Broker {
        core: Core,
        scratch: Vec<u8>,
        /// The WebSocket listeners' upgrade settings, by `Listener::WebSocket` index.
        ws: Vec<Arc<HandshakeConfig>>,
        max_packet_size: usize,
        transports: HashMap<usize, Transport>,
        /// Bytes sent to a connection whose input was paused: the kernel would hold them.
        unread: HashMap<usize, Vec<u8>>,
    }

    impl Broker {
        pub fn new(config: &Config) -> Self {
            let ws = config
                .listeners
                .iter()
                .filter(|l| l.protocol == midge::Protocol::WebSockets)
                .map(|l| Arc::new(l.ws.clone()))
                .collect();
            Broker {
                core: Core::new(config),
                scratch: vec![0; READ_CHUNK],
                ws,
                max_packet_size: config.max_packet_size,
                transports: HashMap::new(),
                unread: HashMap::new(),
            }
        }

        /// A connection accepted on `listener` (None: the listener is full).
        pub fn accept(&mut self, listener: Listener, now: Instant) -> Option<usize> {
            let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().expect("address");
            let (index, transport) = match listener {
                Listener::Tcp => (0, Transport::mqtt()),
                Listener::WebSocket(i) => {
                    let config = Arc::clone(self.ws.get(i)?);
                    (1 + i, Transport::websocket(config, peer.ip(), self.max_packet_size))
                }
            };
            let token = self.core.accept(index, peer, now)?;
            self.unread.remove(&token);
            self.transports.insert(token, transport);
            Some(token)
        }

        /// Bytes from the peer arrive in `token`'s socket and are read as `read_once` does,
        /// through the connection's transport, a chunk at a time, while the core wants input.
        pub fn read(&mut self, token: usize, bytes: &[u8], now: Instant) {
            let buffer = self.unread.entry(token).or_default();
            buffer.extend_from_slice(bytes);
            self.read_unread(token, now);
        }

        fn read_unread(&mut self, token: usize, now: Instant) {
            if self.core.is_closing(token) {
                // A lingering connection's input is read and discarded.
                self.unread.remove(&token);
                return;
            }
            let Some(transport) = self.transports.get_mut(&token) else { return };
            let Some(unread) = self.unread.get_mut(&token) else { return };
            while !unread.is_empty() {
                let Some(mut endpoint) = self.core.endpoint(token, now) else { break };
                let mut src: &[u8] = unread;
                if transport.read_from(&mut src, &mut self.scratch, &mut endpoint).is_err() {
                    break;
                }
                let read = unread.len() - src.len();
                unread.drain(..read);
            }
            let held = transport.held_input();
            assert!(held <= self.core.input_bound(), "transport of {token} holds {held} bytes of input");
        }

        pub fn hangup(&mut self, token: usize, error: Option<std::io::ErrorKind>) {
            self.core.handle_hangup(token, error);
        }

        /// The socket became writable again (the peer read).
        pub fn writable(&mut self, token: usize) {
            self.core.mark_dirty(token);
        }

        /// The end of an event-loop turn: resumed connections read, timers, flush, then close,
        /// linger and release; then the invariants.
        pub fn turn<S: Sockets>(&mut self, now: Instant, sockets: &mut S) {
            let mut resumed = Vec::new();
            while let Some(mut endpoint) = self.core.poll_resume(now) {
                let token = endpoint.token();
                if let Some(transport) = self.transports.get_mut(&token) {
                    transport.resume(&mut endpoint);
                }
                resumed.push(token);
            }
            for token in resumed {
                self.read_unread(token, now);
            }
            self.core.handle_timeouts(now);
            if let Some(at) = self.core.poll_timeout() {
                assert!(at > now, "handle_timeouts left a deadline in the past");
            }
            self.flush_dirty(sockets, now);
            loop {
                let mut any = false;
                while let Some(closed) = self.core.poll_closed() {
                    any = true;
                    let token = closed.token();
                    if let (Some(socket), Some(out), Some(transport)) =
                        (sockets.socket(token), self.core.output(token), self.transports.get_mut(&token))
                    {
                        transport.close(out, closed.ws_close());
                        let _ = transport.write_to(out, socket);
                    }
                    if self.core.lingers(&closed) {
                        continue;
                    }
                    sockets.closed(token);
                    self.unread.remove(&token);
                    self.transports.remove(&token);
                    self.core.release(closed);
                }
                while let Some(finished) = self.core.poll_finished() {
                    any = true;
                    let token = finished.token();
                    sockets.closed(token);
                    self.unread.remove(&token);
                    self.transports.remove(&token);
                    self.core.release(finished);
                }
                if !any {
                    break;
                }
                // Closing may have produced output for others (wills).
                self.flush_dirty(sockets, now);
            }
            if let Err(e) = self.core.check_invariants() {
                panic!("broken invariant: {e}");
            }
        }

        fn flush_dirty<S: Sockets>(&mut self, sockets: &mut S, now: Instant) {
            while let Some(transmit) = self.core.poll_transmit() {
                let token = transmit.token();
                let (Some(socket), Some(out), Some(transport)) =
                    (sockets.socket(token), self.core.output(token), self.transports.get_mut(&token))
                else {
                    self.core.transmitted(transmit, 0, now);
                    continue;
                };
                let before = out.len();
                let result = transport.write_to(out, socket);
                let written = before - out.len();
                self.core.transmitted(transmit, written, now);
                match result {
                    Ok(done) => sockets.set_blocked(token, !done),
                    Err(e) => self.core.handle_hangup(token, Some(e.kind())),
                }
            }
        }

        /// The broker is stopping: every connection closes.
        pub fn shutdown(&mut self) {
            self.core.shutdown();
        }

        pub fn is_closing(&self, token: usize) -> bool {
            self.core.is_closing(token)
        }

        pub fn connection_count(&self) -> usize {
            self.core.connection_count()
        }
    }
}

use adapter::{Broker, Listener, Sockets};

// ---------------------------------------------------------------------------------------------
// The client side: fake sockets and a checker of what the broker sends.
// ---------------------------------------------------------------------------------------------

/// What a client has received, checked as it arrives.
#[derive(Default)]
struct Received {
    websocket: bool,
    /// Status of the HTTP answer, once its head is complete.
    http_status: Option<u16>,
    /// Body bytes of a refusing HTTP answer still to come; nothing may follow them.
    http_body_left: usize,
    /// Bytes not yet parsed (HTTP head or frame).
    raw: Vec<u8>,
    /// MQTT bytes not yet decoded.
    mqtt: Vec<u8>,
    ws_closed: bool,
    first_packet_seen: bool,
    /// The CONNACK's return code, if one came.
    connack: Option<ConnectReturnCode>,
    pingresps: usize,
}

impl Received {
    fn push(&mut self, bytes: &[u8]) {
        if !self.websocket {
            self.mqtt.extend_from_slice(bytes);
            self.decode_mqtt();
            return;
        }
        self.raw.extend_from_slice(bytes);
        loop {
            match self.http_status {
                None => {
                    let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                        assert!(self.raw.len() < 4096, "HTTP answer head never ends");
                        return;
                    };
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut resp = httparse::Response::new(&mut headers);
                    let parsed = resp.parse(&self.raw);
                    assert_eq!(parsed, Ok(httparse::Status::Complete(end + 4)), "malformed HTTP answer");
                    let status = resp.code.expect("status");
                    if status != 101 {
                        let length = resp
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                            .expect("refusal without Content-Length");
                        self.http_body_left = length;
                    }
                    self.http_status = Some(status);
                    self.raw.drain(..end + 4);
                }
                Some(101) => {
                    if !self.next_frame() {
                        return;
                    }
                }
                Some(_) => {
                    assert!(self.raw.len() <= self.http_body_left, "bytes after an HTTP refusal");
                    self.http_body_left -= self.raw.len();
                    self.raw.clear();
                    return;
                }
            }
        }
    }

    /// Take one complete server frame from `raw`; false if none is complete yet.
    fn next_frame(&mut self) -> bool {
        let (Some(&b0), Some(&b1)) = (self.raw.first(), self.raw.get(1)) else { return false };
        assert!(!self.ws_closed, "frame after the close frame");
        assert_eq!(b0 & 0xF0, 0x80, "server frame without FIN or with RSV bits: {b0:#x}");
        assert_eq!(b1 & 0x80, 0, "server frame masked");
        let (len, header) = match b1 & 0x7F {
            126 => match self.raw.get(2..4) {
                Some(l) => (usize::from(u16::from_be_bytes([l[0], l[1]])), 4),
                None => return false,
            },
            127 => match self.raw.get(2..10) {
                Some(l) => (usize::try_from(u64::from_be_bytes(l.try_into().expect("8 bytes"))).expect("len"), 10),
                None => return false,
            },
            n => (usize::from(n), 2),
        };
        let Some(payload) = self.raw.get(header..header + len) else { return false };
        match b0 & 0x0F {
            0x2 => {
                self.mqtt.extend_from_slice(payload);
                self.decode_mqtt();
            }
            0x8 => {
                assert!(len == 0 || len >= 2, "close frame with a 1-byte body");
                self.ws_closed = true;
            }
            0xA => assert!(len <= 125, "oversized pong"),
            op => panic!("server sent opcode {op:#x}"),
        }
        self.raw.drain(..header + len);
        true
    }

    fn decode_mqtt(&mut self) {
        let mut mqtt = std::mem::take(&mut self.mqtt);
        let mut pos = 0;
        loop {
            // A 5.0 CONNECT (from raw bytes) is refused with a 5.0 CONNACK 0x84, the only 5.0
            // packet the broker sends for now.
            let rest = &mqtt[pos..];
            let decoded = match decode_packet(rest, ProtocolLevel::V311, usize::MAX) {
                Err(_) if !self.first_packet_seen => match decode_packet(rest, ProtocolLevel::V5, usize::MAX) {
                    Ok(Some((Packet::Connack(c), n))) if c.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {
                        Ok(Some((Packet::Connack(c), n)))
                    }
                    _ => decode_packet(rest, ProtocolLevel::V311, usize::MAX),
                },
                other => other,
            };
            match decoded {
                Ok(Some((packet, n))) => {
                    self.packet(&packet);
                    pos += n;
                }
                Ok(None) => break,
                Err(e) => panic!("broker sent an invalid packet ({e}): {:?}", &mqtt[pos..]),
            }
        }
        mqtt.drain(..pos);
        self.mqtt = mqtt;
    }

    fn packet(&mut self, packet: &Packet<'_>) {
        trace!("    received {packet:?}");
        // 3.2.0-1: the server's first packet is CONNACK.
        if !self.first_packet_seen {
            assert!(matches!(packet, Packet::Connack(_)), "first packet from the broker is {packet:?}");
            self.first_packet_seen = true;
        } else {
            assert!(
                self.connack == Some(ConnectReturnCode::Accepted),
                "broker sent {packet:?} after refusing with {:?}",
                self.connack
            );
        }
        match packet {
            Packet::Connack(c) => {
                assert!(self.connack.is_none(), "second CONNACK");
                self.connack = Some(c.reason.connect_return_code());
            }
            Packet::Pingresp => self.pingresps += 1,
            Packet::Publish(_)
            | Packet::Puback(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_)
            | Packet::Suback(_)
            | Packet::Unsuback(_) => {}
            other => panic!("broker sent a client-only packet {other:?}"),
        }
    }

    /// The connection is gone: whatever it received must have ended on a boundary.
    fn finish(&self, all_written: bool) {
        if all_written {
            assert!(self.mqtt.is_empty(), "connection closed inside an MQTT packet");
            if self.http_status == Some(101) {
                assert!(self.raw.is_empty(), "connection closed inside a frame");
            } else if self.websocket && self.http_status.is_some() {
                assert_eq!(self.http_body_left, 0, "HTTP answer cut short");
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tcp,
    Ws(usize),
}

struct Client {
    token: usize,
    kind: Kind,
    opened: Instant,
    /// Bytes "sent" by the client and not yet read by the broker.
    pending: Vec<u8>,
    received: Received,
    /// Bytes the socket takes per turn (None: everything).
    budget: Option<usize>,
    left: Option<usize>,
    /// Ever limited: the client may legitimately not have seen everything the broker queued.
    ever_limited: bool,
    blocked: bool,
    /// Template packets wait in `pending` until a Deliver op instead of being read at once.
    hold: bool,
    /// WebSocket: payload bytes per frame for template packets (0: one frame each).
    fragment: usize,
    masks: u32,
}

impl Client {
    fn new(token: usize, kind: Kind, now: Instant) -> Self {
        Client {
            token,
            kind,
            opened: now,
            pending: Vec::new(),
            received: Received { websocket: kind != Kind::Tcp, ..Received::default() },
            budget: None,
            left: None,
            ever_limited: false,
            blocked: false,
            hold: false,
            fragment: 0,
            masks: 0,
        }
    }

    /// MQTT bytes as this client sends them: raw on TCP, in masked binary frames on WebSocket.
    fn send_mqtt(&mut self, bytes: &[u8]) {
        if self.kind == Kind::Tcp {
            self.pending.extend_from_slice(bytes);
            return;
        }
        let size = if self.fragment == 0 { bytes.len().max(1) } else { self.fragment };
        let mut chunks = bytes.chunks(size).peekable();
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let mask = self.next_mask();
            client_frame(chunks.peek().is_none(), if first { 0x2 } else { 0x0 }, chunk, mask, &mut self.pending);
            first = false;
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.masks = self.masks.wrapping_add(1);
        self.masks.wrapping_mul(0x9E37_79B9).to_be_bytes()
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut room = self.left.unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(room);
            self.received.push(&buf[..take]);
            n += take;
            room -= take;
            if room == 0 {
                break;
            }
        }
        if let Some(left) = &mut self.left {
            *left -= n;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The clients, fuzzed slots first, then the probes of the final check.
struct Net {
    clients: Vec<Option<Client>>,
    /// What each slot's last closed connection received (the probes look at a refused one).
    gone: Vec<Option<Received>>,
}

impl Net {
    fn find(&mut self, token: usize) -> Option<&mut Client> {
        self.clients.iter_mut().flatten().find(|c| c.token == token)
    }
}

impl Sockets for Net {
    type Socket = Client;

    fn socket(&mut self, token: usize) -> Option<&mut Client> {
        self.find(token)
    }

    fn closed(&mut self, token: usize) {
        trace!("    connection {token} closed");
        for (i, slot) in self.clients.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|c| c.token == token) {
                if let Some(c) = slot.take() {
                    c.received.finish(!c.ever_limited);
                    if self.gone.len() <= i {
                        self.gone.resize_with(i + 1, || None);
                    }
                    self.gone[i] = Some(c.received);
                }
            }
        }
    }

    fn set_blocked(&mut self, token: usize, blocked: bool) {
        if let Some(c) = self.find(token) {
            c.blocked = blocked;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The program.
// ---------------------------------------------------------------------------------------------

struct World {
    broker: Broker,
    net: Net,
    now: Instant,
    start: Instant,
    allow_anonymous: bool,
}

impl World {
    /// After every operation: writable edges for sockets that drained, then the loop's turn, then
    /// the invariants.
    fn turn(&mut self) {
        for c in self.net.clients.iter_mut().flatten() {
            c.left = c.budget;
            if c.blocked && c.budget != Some(0) {
                self.broker.writable(c.token);
            }
        }
        self.broker.turn(self.now, &mut self.net);
        for c in self.net.clients.iter().flatten() {
            // The connect timeout runs from accept; with all output seen, no CONNACK means none
            // was sent, so the connection must be closed once the timeout has passed (it may
            // still linger to deliver a close frame or an HTTP answer).
            if !c.ever_limited && c.received.connack.is_none() && self.now >= c.opened + CONNECT_TIMEOUT {
                assert!(self.broker.is_closing(c.token), "connection outlived its connect timeout");
            }
        }
    }

    fn deliver(&mut self, slot: usize, limit: usize) {
        let now = self.now;
        let Some(c) = self.net.clients[slot].as_mut() else { return };
        let n = limit.min(c.pending.len());
        if n == 0 {
            return;
        }
        let bytes: Vec<u8> = c.pending.drain(..n).collect();
        let token = c.token;
        self.broker.read(token, &bytes, now);
    }

    fn client(&mut self, slot: usize) -> Option<&mut Client> {
        self.net.clients[slot].as_mut()
    }

    /// Queue a template packet for `slot` and, unless it holds, deliver everything pending.
    fn send(&mut self, slot: usize, packet: &Packet<'_>) {
        let mut bytes = Vec::new();
        encode_packet(packet, ProtocolLevel::V311, &mut bytes);
        self.send_mqtt(slot, &bytes);
    }

    fn send_mqtt(&mut self, slot: usize, bytes: &[u8]) {
        let Some(c) = self.client(slot) else { return };
        c.send_mqtt(bytes);
        let hold = c.hold;
        if !hold {
            self.deliver(slot, usize::MAX);
        }
    }

    fn send_raw(&mut self, slot: usize, bytes: &[u8], deliver: bool) {
        let Some(c) = self.client(slot) else { return };
        c.pending.extend_from_slice(bytes);
        let hold = c.hold;
        if deliver && !hold {
            self.deliver(slot, usize::MAX);
        }
    }

    fn open(&mut self, slot: usize, kind: Kind) {
        if self.net.clients[slot].is_some() {
            return;
        }
        let listener = match kind {
            Kind::Tcp => Listener::Tcp,
            Kind::Ws(i) => Listener::WebSocket(i),
        };
        let Some(token) = self.broker.accept(listener, self.now) else { return };
        assert!(self.net.find(token).is_none(), "token {token} handed out twice");
        self.net.clients[slot] = Some(Client::new(token, kind, self.now));
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.u8();
        let slot = usize::from(op >> 4 & 3);
        let flags = op >> 6;
        trace!("op {} slot {slot} flags {flags} at +{:?}", op & 0x0F, self.now - self.start);
        match op & 0x0F {
            // Open a connection on a listener.
            0 => self.open(slot, [Kind::Tcp, Kind::Ws(0), Kind::Ws(1), Kind::Tcp][usize::from(flags)]),
            // Raw socket bytes.
            1 => {
                let len = usize::from(input.u8());
                let bytes = input.bytes(len);
                self.send_raw(slot, bytes, false);
            }
            // One read of pending bytes.
            2 => {
                let k = usize::from(input.u8()) + 1;
                self.deliver(slot, if flags & 1 == 1 { usize::MAX } else { k });
            }
            // Time passes.
            3 => {
                let unit = [
                    Duration::from_millis(1),
                    Duration::from_millis(100),
                    Duration::from_secs(1),
                    Duration::from_secs(60),
                ];
                self.now += unit[usize::from(flags)] * u32::from(input.u8());
            }
            // The peer hangs up.
            4 => {
                if let Some(c) = self.client(slot) {
                    let token = c.token;
                    self.broker.hangup(token, (flags & 1 == 1).then_some(io::ErrorKind::ConnectionReset));
                }
            }
            // How much output the socket takes per turn.
            5 => {
                let b = input.u8();
                if let Some(c) = self.client(slot) {
                    c.budget = match b {
                        255 => None,
                        b => Some(usize::from(b) * 8),
                    };
                    c.ever_limited |= c.budget.is_some();
                }
            }
            // The HTTP upgrade.
            6 => {
                // Each listener's own path (a wrong one is the raw ops' business).
                let path = match self.client(slot).map(|c| c.kind) {
                    Some(Kind::Ws(1)) => "/",
                    _ => "/mqtt",
                };
                let extra = [
                    "Sec-WebSocket-Protocol: mqtt\r\n",
                    "Sec-WebSocket-Protocol: mqttv3.1, x\r\n",
                    "",
                    "Sec-WebSocket-Protocol: mqtt\r\nX-Forwarded-For: 10.0.0.1\r\nOrigin: http://ok.example\r\n",
                ][usize::from(flags)];
                let head = format!(
                    "GET {path} HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
                );
                self.send_raw(slot, head.as_bytes(), true);
            }
            7 => {
                let (id, cflags, keep_alive) = (input.u8(), input.u8(), input.u8());
                let ids = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", ""];
                let will = (cflags & 4 != 0).then(|| Will {
                    topic: ["a/b", "will", "x/y"][usize::from(cflags >> 6) % 3],
                    payload: b"gone",
                    qos: QoS::from_u8(cflags >> 3 & 3).unwrap_or(QoS::AtMostOnce),
                    retain: cflags & 0x20 != 0,
                    properties: Default::default(),
                });
                let connect = Connect {
                    level: if cflags & 1 == 0 { ProtocolLevel::V311 } else { ProtocolLevel::V31 },
                    client_id: ids[usize::from(id & 7)],
                    clean_session: cflags & 2 != 0,
                    keep_alive: u16::from(keep_alive),
                    will,
                    username: (cflags & 0x80 != 0).then_some("user"),
                    password: (cflags & 0x80 != 0 && flags & 1 == 1).then_some(&b"pw"[..]),
                    properties: Default::default(),
                };
                self.send(slot, &Packet::Connect(Box::new(connect)));
            }
            8 => {
                let (topic, pflags, id, len) = (input.u8(), input.u8(), input.u8(), input.u8());
                let qos = QoS::from_u8(pflags & 3).unwrap_or(QoS::AtLeastOnce);
                let payload = vec![topic ^ id; usize::from(len) * 2];
                let publish = Publish {
                    dup: pflags & 4 != 0 && qos != QoS::AtMostOnce,
                    qos,
                    retain: pflags & 8 != 0,
                    topic: TOPICS[usize::from(topic) % TOPICS.len()],
                    packet_id: (qos != QoS::AtMostOnce).then_some(u16::from(id).max(1)),
                    payload: &payload,
                    properties: Default::default(),
                };
                self.send(slot, &Packet::Publish(publish));
            }
            9 => {
                let (id, f1, f2) = (input.u8(), input.u8(), input.u8());
                let mut filters = vec![(FILTERS[usize::from(f1 >> 2) % FILTERS.len()], qos_of(f1).into())];
                if flags & 1 == 1 {
                    filters.push((FILTERS[usize::from(f2 >> 2) % FILTERS.len()], qos_of(f2).into()));
                }
                self.send(
                    slot,
                    &Packet::Subscribe(Subscribe {
                        packet_id: u16::from(id).max(1),
                        filters,
                        properties: Default::default(),
                    }),
                );
            }
            10 => {
                let (id, f) = (input.u8(), input.u8());
                let filters = vec![FILTERS[usize::from(f) % FILTERS.len()]];
                self.send(
                    slot,
                    &Packet::Unsubscribe(Unsubscribe {
                        packet_id: u16::from(id).max(1),
                        filters,
                        user_properties: Default::default(),
                    }),
                );
            }
            // Acknowledgements; the broker numbers its messages from 1.
            11 => {
                let packet_id = u16::from(input.u8()).max(1);
                let packet = match flags {
                    0 => Packet::Puback(Ack::new(packet_id)),
                    1 => Packet::Pubrec(Ack::new(packet_id)),
                    2 => Packet::Pubrel(Ack::new(packet_id)),
                    _ => Packet::Pubcomp(Ack::new(packet_id)),
                };
                self.send(slot, &packet);
            }
            12 => self.send(slot, if flags == 1 { &Packet::Disconnect(Disconnect::NORMAL) } else { &Packet::Pingreq }),
            // WebSocket control frames (plain garbage on TCP).
            13 => {
                let arg = input.u8();
                let Some(c) = self.client(slot) else { return };
                let mask = c.next_mask();
                let mut frame = Vec::new();
                match flags {
                    0 => client_frame(true, 0x9, &vec![arg; usize::from(arg % 126)], mask, &mut frame),
                    1 => client_frame(true, 0xA, &[arg], mask, &mut frame),
                    2 => client_frame(true, 0x8, &[0x03, 0xE8 ^ (arg & 1), b'b', b'y', b'e'], mask, &mut frame),
                    _ => client_frame(true, 0x8, &[], mask, &mut frame),
                }
                self.send_raw(slot, &frame, true);
            }
            // How this client sends: hold templates, WebSocket fragment size.
            14 => {
                let frag = usize::from(input.u8());
                if let Some(c) = self.client(slot) {
                    c.hold = flags & 1 == 1;
                    c.fragment = frag;
                }
            }
            // Arbitrary MQTT bytes, framed on WebSocket.
            _ => {
                let len = usize::from(input.u8());
                let bytes = input.bytes(len);
                self.send_mqtt(slot, bytes);
            }
        }
    }

    /// A well-behaved client on a fresh connection is still served.
    fn probe(&mut self, kind: Kind) {
        let slot = self.net.clients.len();
        self.net.clients.push(None);
        self.open(slot, kind);
        if let Kind::Ws(_) = kind {
            let head = "GET /mqtt HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                        Sec-WebSocket-Protocol: mqtt\r\n\r\n";
            self.send_raw(slot, head.as_bytes(), false);
        }
        let id = if kind == Kind::Tcp { "probe-tcp" } else { "probe-ws" };
        let connect = Connect {
            level: ProtocolLevel::V311,
            client_id: id,
            clean_session: true,
            keep_alive: 60,
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        self.send(slot, &Packet::Connect(Box::new(connect)));
        self.turn();
        let expected =
            if self.allow_anonymous { ConnectReturnCode::Accepted } else { ConnectReturnCode::NotAuthorized };
        let got = self.received_of(slot, kind).connack;
        assert_eq!(got, Some(expected), "fresh {:?} client got no CONNACK", kind == Kind::Tcp);
        if self.allow_anonymous {
            self.send(slot, &Packet::Pingreq);
            self.turn();
            assert_eq!(self.received_of(slot, kind).pingresps, 1, "fresh client got no PINGRESP");
        }
    }

    fn received_of(&self, slot: usize, kind: Kind) -> &Received {
        let received = match &self.net.clients[slot] {
            Some(c) => &c.received,
            None => self.net.gone.get(slot).and_then(Option::as_ref).expect("probe connection never opened"),
        };
        if let Kind::Ws(_) = kind {
            assert_eq!(received.http_status, Some(101), "fresh WebSocket client not upgraded");
        }
        received
    }
}

const TOPICS: [&str; 6] = ["a", "a/b", "a/b/c", "x/y", "will", "$SYS/t"];
const FILTERS: [&str; 8] = ["#", "a/#", "a/+", "+/b", "a/b", "x/y", "+", "$SYS/#"];

fn qos_of(b: u8) -> QoS {
    QoS::from_u8(b & 3).unwrap_or(QoS::ExactlyOnce)
}

fn config(cfg: u8) -> Config {
    let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let mut second = ListenerConfig::websockets(lo);
    second.ws = HandshakeConfig {
        path: "/".to_string(),
        require_subprotocol: false,
        allowed_origins: vec!["http://ok.example".to_string()],
        max_request_bytes: 512,
        trusted_proxies: vec!["127.0.0.1".to_string()],
    };
    Config {
        listeners: vec![ListenerConfig::mqtt(lo), ListenerConfig::websockets(lo), second],
        max_packet_size: MAX_PACKET_SIZE,
        max_inflight: 1 + usize::from(cfg >> 1 & 3),
        max_queued: usize::from(cfg >> 3 & 7),
        connect_timeout: CONNECT_TIMEOUT,
        allow_anonymous: cfg & 1 == 0,
        // Small limits, so the fuzzer reaches them.
        max_connect_packet_size: 256,
        message_size_limit: if cfg & 0x40 != 0 { 64 } else { 0 },
        max_topic_levels: 6,
        max_topic_length: 100,
        max_subscribe_filters: 4,
        max_subscriptions: 5,
        output_high_watermark: 4096,
        send_timeout: Duration::from_secs(3),
        // Heap use differs between runs of one input: keep the target deterministic.
        memory_limit: MemoryLimit::Unlimited,
        max_pending_connections: 3,
        max_connections: Some(SLOTS + 1),
        ..Config::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cfg = input.u8();
    let config = config(cfg);
    let start = Instant::now();
    let mut world = World {
        broker: Broker::new(&config),
        net: Net { clients: (0..SLOTS).map(|_| None).collect(), gone: Vec::new() },
        now: start,
        start,
        allow_anonymous: config.allow_anonymous,
    };
    while !input.is_empty() {
        world.step(&mut input);
        world.turn();
    }
    // Whatever the clients still have to say is read, and sockets drain.
    for slot in 0..SLOTS {
        if let Some(c) = world.client(slot) {
            c.budget = None;
        }
        world.deliver(slot, usize::MAX);
    }
    world.turn();

    world.probe(Kind::Tcp);
    world.probe(Kind::Ws(0));

    // The end: every client hangs up, or the broker stops (config bit 7 picks).
    if cfg & 0x80 == 0 {
        for token in world.net.clients.iter().flatten().map(|c| c.token).collect::<Vec<_>>() {
            world.broker.hangup(token, None);
        }
    } else {
        world.broker.shutdown();
    }
    world.turn();
    assert_eq!(world.broker.connection_count(), 0, "connections left after the end");
});
