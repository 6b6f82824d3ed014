//! MQTT broker semantics, sans-IO: connections, sessions, routing, retained messages, wills and
//! timeouts. The event loop hands it bytes read from a socket and the current time; it leaves
//! bytes to write in each connection's output queue and lists which connections to flush and
//! which to close.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::buffer::{InBuf, Slab};
use crate::config::Config;
use crate::connection::{keep_alive_grace, Connection, Phase, Transport, WsState};
use crate::mqtt::{
    decode_packet, encode_packet, Connect, ConnectReturnCode, DecodeError, Packet, Publish, QoS, Subscribe, Unsubscribe,
};
use crate::router::{Message, RetainedStore, Router, Subscriber};
use crate::session::{Inflight, InflightState, Outgoing, Session};
use crate::ws::{self, HandshakeConfig, HandshakeError, HandshakeOutcome, WsControl, WsError, WsEvent};

/// A client whose unsent output exceeds this loses QoS 0 messages instead of growing without
/// bound (QoS 1/2 are held back by the in-flight window and the session queue instead).
const SLOW_CONSUMER_BYTES: usize = 32 * 1024 * 1024;

/// WebSocket payloads up to this size are slid together before MQTT decoding (a short move is
/// cheaper than a decoding pass per frame); larger ones are decoded where they lie.
const COMPACT_FRAME_MAX: usize = 512;

/// Which kind of listener accepted a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Tcp,
    /// Index into the broker's WebSocket handshake settings.
    WebSocket(usize),
}

/// MQTT-level protocol violations found by the broker (the codec finds the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    Decode(DecodeError),
    /// 3.1.0-1: the first packet was not CONNECT.
    FirstPacketNotConnect,
    /// 3.1.0-2: a second CONNECT.
    SecondConnect,
    /// A packet only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP).
    ServerOnlyPacket(&'static str),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::Decode(e) => write!(f, "{e}"),
            ProtocolError::FirstPacketNotConnect => write!(f, "first packet is not CONNECT"),
            ProtocolError::SecondConnect => write!(f, "second CONNECT"),
            ProtocolError::ServerOnlyPacket(p) => write!(f, "client sent {p}"),
        }
    }
}

/// Why a connection ends. Each maps to one log line, one wire outcome, and whether the will is
/// published (everything but a DISCONNECT from the client, 3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT: no will.
    ClientDisconnect,
    /// The peer closed the TCP connection.
    PeerClosed,
    /// A socket error (its kind).
    Io(std::io::ErrorKind),
    KeepAliveTimeout,
    /// No CONNECT (or no WebSocket handshake) within the connect timeout.
    ConnectTimeout,
    Protocol(ProtocolError),
    /// The WebSocket frame layer refused the client's frames.
    WebSocket(WsError),
    /// The peer sent a WebSocket close frame (with this status code).
    WebSocketClosed(Option<u16>),
    /// The HTTP upgrade was refused (the HTTP answer is already queued).
    Handshake(HandshakeError),
    /// CONNECT refused with this return code (CONNACK already queued).
    ConnectRefused(ConnectReturnCode),
    /// Another connection CONNECTed with the same client id (3.1.4-2).
    TakenOver,
    /// The broker is stopping.
    Shutdown,
}

impl CloseReason {
    fn publishes_will(&self) -> bool {
        !matches!(self, CloseReason::ClientDisconnect | CloseReason::Shutdown)
    }

    /// The WebSocket close status sent to the peer, if a close frame is sent at all.
    fn ws_close_code(&self) -> Option<Option<u16>> {
        match self {
            CloseReason::Handshake(_) | CloseReason::PeerClosed | CloseReason::Io(_) => None,
            CloseReason::WebSocketClosed(code) => Some(*code),
            CloseReason::WebSocket(e) => Some(Some(e.close_code())),
            CloseReason::Protocol(_) => Some(Some(1002)),
            CloseReason::ConnectRefused(_) => Some(Some(1008)),
            CloseReason::Shutdown => Some(Some(1001)),
            _ => Some(Some(1000)),
        }
    }
}

/// The broker's state: everything but sockets and the clock.
pub struct Core {
    max_packet_size: usize,
    max_inflight: usize,
    max_queued: usize,
    connect_timeout: Duration,
    allow_anonymous: bool,
    ws_configs: Vec<HandshakeConfig>,

    pub conns: Slab<Connection>,
    sessions: Slab<Session>,
    client_ids: HashMap<Rc<str>, usize>,
    router: Router,
    retained: RetainedStore,
    /// (deadline, token, serial): checked lazily; a stale entry is re-armed or dropped.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_serial: u64,
    /// Connections with output to flush this turn.
    dirty: Vec<usize>,
    /// Connections closed this turn; the event loop drops their sockets.
    closed: Vec<usize>,
    /// Reused buffers for routing, so a PUBLISH allocates only its message.
    matches: Vec<Subscriber>,
    /// Per session slot: (route epoch, index in `matches`), to merge overlapping subscriptions.
    marks: Vec<(u64, usize)>,
    epoch: u64,
}

impl Core {
    pub fn new(config: &Config) -> Self {
        Core {
            max_packet_size: config.max_packet_size,
            max_inflight: config.max_inflight.max(1),
            max_queued: config.max_queued,
            connect_timeout: config.connect_timeout,
            allow_anonymous: config.allow_anonymous,
            // Indexed by `ListenerKind::WebSocket`: the WebSocket listeners in config order.
            ws_configs: config
                .listeners
                .iter()
                .filter(|l| l.protocol == crate::config::Protocol::WebSockets)
                .map(|l| l.ws.clone())
                .collect(),
            conns: Slab::default(),
            sessions: Slab::default(),
            client_ids: HashMap::new(),
            router: Router::default(),
            retained: RetainedStore::default(),
            timers: BinaryHeap::new(),
            next_serial: 0,
            dirty: Vec::new(),
            closed: Vec::new(),
            matches: Vec::new(),
            marks: Vec::new(),
            epoch: 0,
        }
    }

    /// A socket was accepted: returns its token.
    pub fn accept(&mut self, kind: ListenerKind, peer: SocketAddr, now: Instant) -> usize {
        let transport = match kind {
            ListenerKind::Tcp => Transport::Tcp,
            ListenerKind::WebSocket(listener) => Transport::WsHandshake { listener },
        };
        self.next_serial += 1;
        let serial = self.next_serial;
        let token = self.conns.insert(Connection::new(serial, peer, transport, now));
        self.arm_timer(token, now + self.connect_timeout);
        debug!("New connection from {peer}.");
        token
    }

    /// Connections to flush now; the caller calls `flush_done` for each.
    pub fn take_dirty(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.dirty)
    }

    /// Give back the (emptied) list from `take_dirty`, to reuse its allocation.
    pub fn return_dirty(&mut self, mut list: Vec<usize>) {
        list.clear();
        if self.dirty.is_empty() {
            self.dirty = list;
        }
    }

    /// Connections closed since the last call; the caller flushes what it can, drops the socket
    /// and calls `release`.
    pub fn take_closed(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.closed)
    }

    pub fn release(&mut self, token: usize) {
        self.conns.remove(token);
    }

    /// The connection's wire output, framed and ready to write.
    pub fn output(&mut self, token: usize) -> Option<&mut crate::buffer::OutQueue> {
        let conn = self.conns.get_mut(token)?;
        conn.dirty = false;
        conn.prepare_flush();
        Some(&mut conn.out)
    }

    pub fn mark_dirty(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The earliest instant `handle_timeouts` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Close connections whose CONNECT or keep-alive deadline has passed.
    pub fn handle_timeouts(&mut self, now: Instant) {
        while let Some(&Reverse((at, token, serial))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get(token) else { continue };
            // One live entry per connection: others are stale (slot reused, or re-armed earlier).
            if conn.serial != serial || conn.closing || conn.timer_at != Some(at) {
                continue;
            }
            match conn.deadline(self.connect_timeout) {
                Some(deadline) if deadline <= now => {
                    let reason = match conn.phase {
                        Phase::AwaitConnect => CloseReason::ConnectTimeout,
                        Phase::Connected { .. } => CloseReason::KeepAliveTimeout,
                    };
                    self.close(token, reason);
                }
                Some(deadline) => self.arm_timer(token, deadline),
                None => {
                    if let Some(conn) = self.conns.get_mut(token) {
                        conn.timer_at = None;
                    }
                }
            }
        }
    }

    /// Make `at` the connection's timer deadline (its previous heap entry goes stale).
    fn arm_timer(&mut self, token: usize, at: Instant) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        conn.timer_at = Some(at);
        self.timers.push(Reverse((at, token, conn.serial)));
    }

    /// Bytes arrived on `token`'s socket, read into a shared buffer because the connection held
    /// nothing. They may be modified in place (WebSocket unmasking).
    pub fn handle_input(&mut self, token: usize, data: &mut [u8], now: Instant) {
        let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) else { return };
        conn.touch(now);
        if !conn.raw_in.is_empty() {
            // Keep byte order: append behind what is held.
            conn.raw_in.extend_from_slice(data);
            self.handle_buffered_input(token, now);
            return;
        }
        let n = self.process_raw(token, data, now);
        if let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) {
            if let Some(rest) = data.get(n..).filter(|r| !r.is_empty()) {
                conn.raw_in.extend_from_slice(rest);
            }
        }
    }

    /// Where to read `token`'s next bytes when it already holds a partial unit: straight behind
    /// it (no copy). `None`: read into the shared buffer and call `handle_input`.
    pub fn held_input(&mut self, token: usize) -> Option<&mut InBuf> {
        self.conns.get_mut(token).map(|c| &mut c.raw_in).filter(|b| !b.is_empty())
    }

    /// Bytes were committed into `held_input(token)`.
    pub fn handle_buffered_input(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) else { return };
        conn.touch(now);
        let mut held = std::mem::take(&mut conn.raw_in);
        let n = self.process_raw(token, held.filled_mut(), now);
        held.consume(n);
        if let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) {
            conn.raw_in = held;
        }
    }

    /// The peer closed its side (EOF) or the socket failed.
    pub fn handle_hangup(&mut self, token: usize, error: Option<std::io::ErrorKind>) {
        let reason = match error {
            Some(kind) => CloseReason::Io(kind),
            None => CloseReason::PeerClosed,
        };
        self.close(token, reason);
    }

    /// Close every connection (the broker is stopping).
    pub fn shutdown(&mut self) {
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for token in tokens {
            self.close(token, CloseReason::Shutdown);
        }
    }

    /// Run raw socket bytes through the transport layers. Returns how many bytes were consumed.
    fn process_raw(&mut self, token: usize, data: &mut [u8], now: Instant) -> usize {
        let Some(conn) = self.conns.get_mut(token) else { return data.len() };
        match &mut conn.transport {
            Transport::Tcp => self.process_mqtt(token, data, now),
            Transport::WsHandshake { listener } => {
                let listener = *listener;
                let Some(cfg) = self.ws_configs.get(listener) else { return data.len() };
                let peer_ip = conn.peer.ip().to_string();
                match ws::handshake::handle_request(data, cfg, &peer_ip) {
                    HandshakeOutcome::Partial => 0,
                    HandshakeOutcome::Accept { response, consumed, subprotocol, forwarded_for } => {
                        debug!("WebSocket upgrade from {} (subprotocol {subprotocol:?})", conn.peer);
                        conn.out.push_slice(&response);
                        conn.forwarded_for = forwarded_for.map(Into::into);
                        conn.transport = Transport::Ws(Box::new(WsState::new(self.max_packet_size)));
                        self.mark_dirty(token);
                        match data.get_mut(consumed..) {
                            Some(rest) => consumed + self.process_raw(token, rest, now),
                            None => data.len(),
                        }
                    }
                    HandshakeOutcome::Reject { response, error } => {
                        conn.out.push_slice(&response);
                        self.close(token, CloseReason::Handshake(error));
                        data.len()
                    }
                }
            }
            Transport::Ws(_) => self.process_frames(token, data, now),
        }
    }

    /// WebSocket frames: payloads are unmasked in place and decoded as MQTT right there; only a
    /// packet that spans reads is copied (into the connection's `mqtt_in`). Small payloads are
    /// first slid together over the frame headers between them, so a burst of tiny frames is
    /// decoded in one pass, as one TCP read would be.
    fn process_frames(&mut self, token: usize, data: &mut [u8], now: Instant) -> usize {
        let mut pos = 0;
        // Contiguous MQTT bytes collected so far: data[run.0..run.1].
        let mut run = (0, 0);
        let mut failure = None;
        let mut consumed = data.len();
        loop {
            let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) else { break };
            let Transport::Ws(ws) = &mut conn.transport else { break };
            let decoder = &mut ws.decoder;
            let Some(rest) = data.get_mut(pos..) else { break };
            let step = decoder.decode_in_place(rest);
            if let Ok((n, WsEvent::Data(range))) = &step {
                let (start, end) = (pos + range.start, pos + range.end);
                pos += n;
                if end - start <= COMPACT_FRAME_MAX {
                    if run.0 == run.1 {
                        run = (start, end);
                    } else {
                        data.copy_within(start..end, run.1);
                        run.1 += end - start;
                    }
                    continue;
                }
                // A large payload: decode it where it is, after what was collected.
                self.feed_ws_run(token, data, &mut run, now);
                if let Some(bytes) = data.get_mut(start..end) {
                    self.feed_ws_stream(token, bytes, now);
                }
                continue;
            }
            // Anything else ends the run: MQTT bytes before a control frame are handled first.
            self.feed_ws_run(token, data, &mut run, now);
            match step {
                Ok((_, WsEvent::Data(_))) => {}
                Ok((n, WsEvent::Control(WsControl::Ping(payload)))) => {
                    pos += n;
                    if let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) {
                        // Close the open data frame first: frames never nest.
                        conn.prepare_flush();
                        ws::frame::encode_pong(&payload, conn.out.tail());
                        self.mark_dirty(token);
                    }
                }
                Ok((n, WsEvent::Control(WsControl::Pong))) => pos += n,
                Ok((_, WsEvent::Control(WsControl::Close { code }))) => {
                    failure = Some(CloseReason::WebSocketClosed(code));
                    break;
                }
                Ok((n, WsEvent::NeedMore)) => {
                    consumed = pos + n;
                    break;
                }
                Err(e) => {
                    failure = Some(CloseReason::WebSocket(e));
                    break;
                }
            }
        }
        self.feed_ws_run(token, data, &mut run, now);
        if let Some(reason) = failure {
            self.close(token, reason);
        }
        match self.conns.get(token) {
            Some(c) if !c.closing => consumed,
            _ => data.len(),
        }
    }

    /// Decode the collected run of MQTT bytes, if any.
    fn feed_ws_run(&mut self, token: usize, data: &mut [u8], run: &mut (usize, usize), now: Instant) {
        if run.0 < run.1 {
            if let Some(bytes) = data.get_mut(run.0..run.1) {
                self.feed_ws_stream(token, bytes, now);
            }
        }
        *run = (0, 0);
    }

    /// MQTT stream bytes from one WebSocket frame.
    fn feed_ws_stream(&mut self, token: usize, bytes: &mut [u8], now: Instant) {
        let Some(Transport::Ws(ws)) = self.conns.get_mut(token).map(|c| &mut c.transport) else { return };
        let mut held = std::mem::take(&mut ws.mqtt_in);
        consume_with_leftover(&mut held, bytes, |b| self.process_mqtt(token, b, now));
        if let Some(Transport::Ws(ws)) = self.conns.get_mut(token).map(|c| &mut c.transport) {
            ws.mqtt_in = held;
        }
    }

    /// Decode and act on every complete MQTT packet in `buf`. Returns the bytes consumed.
    fn process_mqtt(&mut self, token: usize, buf: &mut [u8], now: Instant) -> usize {
        let buf: &[u8] = buf;
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get(token) else { return buf.len() };
            if conn.closing {
                return buf.len();
            }
            let level = conn.level;
            let awaiting_connect = conn.phase == Phase::AwaitConnect;
            match decode_packet(buf.get(pos..).unwrap_or(&[]), level, self.max_packet_size) {
                Ok(None) => return pos,
                Ok(Some((packet, n))) => {
                    pos += n;
                    if let Err(reason) = self.handle_packet(token, packet, now) {
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

    /// Encode a control packet for `token` and schedule a flush.
    fn send(&mut self, token: usize, packet: &Packet<'_>) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let level = conn.level;
        let out = conn.mqtt_out();
        encode_packet(packet, level, out.tail());
        self.mark_dirty(token);
    }

    fn handle_packet(&mut self, token: usize, packet: Packet<'_>, now: Instant) -> Result<(), CloseReason> {
        let phase = self.conns.get(token).map(|c| c.phase);
        let session = match phase {
            None => return Ok(()),
            Some(Phase::AwaitConnect) => {
                return match packet {
                    Packet::Connect(c) => self.on_connect(token, c, now),
                    _ => Err(CloseReason::Protocol(ProtocolError::FirstPacketNotConnect)),
                };
            }
            Some(Phase::Connected { session }) => session,
        };
        let server_only = |name| Err(CloseReason::Protocol(ProtocolError::ServerOnlyPacket(name)));
        match packet {
            Packet::Publish(p) => self.on_publish(token, session, p),
            Packet::Puback { packet_id } => {
                if let Some(s) = self.sessions.get_mut(session) {
                    if s.puback(packet_id) {
                        self.fill_window(session);
                    }
                }
                Ok(())
            }
            Packet::Pubrec { packet_id } => {
                if self.sessions.get_mut(session).is_some_and(|s| s.pubrec(packet_id)) {
                    self.send(token, &Packet::Pubrel { packet_id });
                }
                Ok(())
            }
            Packet::Pubrel { packet_id } => {
                if let Some(s) = self.sessions.get_mut(session) {
                    s.release_qos2(packet_id);
                }
                // 4.3.3: PUBCOMP answers every PUBREL, known id or not.
                self.send(token, &Packet::Pubcomp { packet_id });
                Ok(())
            }
            Packet::Pubcomp { packet_id } => {
                if self.sessions.get_mut(session).is_some_and(|s| s.pubcomp(packet_id)) {
                    self.fill_window(session);
                }
                Ok(())
            }
            Packet::Subscribe(s) => {
                self.on_subscribe(token, session, s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(token, session, u);
                Ok(())
            }
            Packet::Pingreq => {
                self.send(token, &Packet::Pingresp);
                Ok(())
            }
            Packet::Disconnect => Err(CloseReason::ClientDisconnect),
            Packet::Connect(_) => Err(CloseReason::Protocol(ProtocolError::SecondConnect)),
            Packet::Connack { .. } => server_only("CONNACK"),
            Packet::Suback { .. } => server_only("SUBACK"),
            Packet::Unsuback { .. } => server_only("UNSUBACK"),
            Packet::Pingresp => server_only("PINGRESP"),
        }
    }

    fn refuse_connect(&mut self, token: usize, code: ConnectReturnCode) -> Result<(), CloseReason> {
        self.send(token, &Packet::Connack { session_present: false, code });
        Err(CloseReason::ConnectRefused(code))
    }

    fn on_connect(&mut self, token: usize, c: Connect<'_>, now: Instant) -> Result<(), CloseReason> {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.level = c.level;
        }
        if !self.allow_anonymous {
            // No password file support yet: with anonymous access off, nobody can be verified.
            return self.refuse_connect(token, ConnectReturnCode::NotAuthorized);
        }
        let client_id: Rc<str> = if c.client_id.is_empty() {
            if !c.clean_session {
                // 3.1.3-8: a zero-length id needs a clean session.
                return self.refuse_connect(token, ConnectReturnCode::IdentifierRejected);
            }
            self.generate_client_id()
        } else {
            c.client_id.into()
        };

        // Take over: 3.1.4-2, the existing connection with this id is closed.
        if let Some(&old) = self.client_ids.get(&client_id) {
            if let Some(old_token) = self.sessions.get(old).and_then(|s| s.connection) {
                self.close(old_token, CloseReason::TakenOver);
            }
        }
        let existing = self.client_ids.get(&client_id).copied();
        let (session, present) = match existing {
            Some(s) if c.clean_session => {
                self.destroy_session(s);
                (self.create_session(client_id.clone(), true), false)
            }
            Some(s) => (s, true),
            None => (self.create_session(client_id.clone(), c.clean_session), false),
        };
        if let Some(s) = self.sessions.get_mut(session) {
            s.connection = Some(token);
            s.clean = c.clean_session;
        }
        let will = c.will.as_ref().map(|w| Message {
            topic: w.topic.into(),
            payload: w.payload.into(),
            qos: w.qos,
            retain: w.retain,
        });
        let Some(conn) = self.conns.get_mut(token) else { return Ok(()) };
        conn.phase = Phase::Connected { session };
        conn.client_id = Some(Rc::clone(&client_id));
        conn.keep_alive = c.keep_alive;
        conn.will = will;
        conn.last_received = now;
        let timer_at = conn.timer_at;
        info!(
            "New client connected from {} as {} (p{}, c{}, k{}{}).",
            conn.peer_label(),
            client_id,
            c.level as u8,
            u8::from(c.clean_session),
            c.keep_alive,
            if conn.is_websocket() { ", websocket" } else { "" }
        );
        // The connect-timeout entry re-arms itself to the keep-alive deadline when it fires;
        // a keep alive shorter than that needs an earlier entry now.
        let keep_alive_at = now + keep_alive_grace(c.keep_alive);
        if c.keep_alive != 0 && timer_at.is_none_or(|at| keep_alive_at < at) {
            self.arm_timer(token, keep_alive_at);
        }
        self.send(token, &Packet::Connack { session_present: present, code: ConnectReturnCode::Accepted });
        if present {
            self.resume_session(token, session);
        }
        Ok(())
    }

    fn generate_client_id(&mut self) -> Rc<str> {
        loop {
            self.next_serial += 1;
            // Mix the counter so ids do not look sequential across restarts of clients.
            let mixed = self.next_serial.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (std::process::id() as u64);
            let id: Rc<str> = format!("auto-{mixed:016x}").into();
            if !self.client_ids.contains_key(&id) {
                return id;
            }
        }
    }

    fn create_session(&mut self, client_id: Rc<str>, clean: bool) -> usize {
        let slot = self.sessions.insert(Session::new(Rc::clone(&client_id), clean));
        self.client_ids.insert(client_id, slot);
        slot
    }

    fn destroy_session(&mut self, slot: usize) {
        let Some(session) = self.sessions.remove(slot) else { return };
        for (filter, _) in &session.subscriptions {
            self.router.unsubscribe(filter, slot);
        }
        if self.client_ids.get(&session.client_id) == Some(&slot) {
            self.client_ids.remove(&session.client_id);
        }
    }

    /// A client came back to a stored session: resend what was in flight (4.4), with DUP on
    /// PUBLISH, then whatever waited in the queue.
    fn resume_session(&mut self, token: usize, slot: usize) {
        let (Some(session), Some(conn)) = (self.sessions.get_mut(slot), self.conns.get_mut(token)) else { return };
        for f in &session.inflight {
            match (&f.out, f.state) {
                (Some(out), InflightState::AwaitPuback | InflightState::AwaitPubrec) => {
                    conn.write_publish(out, Some(f.packet_id), true);
                }
                _ => {
                    let level = conn.level;
                    encode_packet(&Packet::Pubrel { packet_id: f.packet_id }, level, conn.mqtt_out().tail());
                }
            }
        }
        self.mark_dirty(token);
        self.fill_window(slot);
    }

    fn on_publish(&mut self, token: usize, session: usize, p: Publish<'_>) -> Result<(), CloseReason> {
        if let (QoS::ExactlyOnce, Some(id)) = (p.qos, p.packet_id) {
            let first = self.sessions.get_mut(session).is_some_and(|s| s.receive_qos2(id));
            if !first {
                // Duplicate of a message already delivered (4.3.3): acknowledge, do not deliver.
                self.send(token, &Packet::Pubrec { packet_id: id });
                return Ok(());
            }
        }
        let topic = self.conns.get_mut(token).map_or_else(|| p.topic.into(), |c| c.intern_topic(p.topic));
        let msg = Message { topic, payload: p.payload.into(), qos: p.qos, retain: p.retain };
        if p.retain {
            self.retained.update(&msg);
        }
        self.route(&msg);
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(packet_id)) => self.send(token, &Packet::Puback { packet_id }),
            (QoS::ExactlyOnce, Some(packet_id)) => self.send(token, &Packet::Pubrec { packet_id }),
            _ => {}
        }
        Ok(())
    }

    /// Deliver `msg` to every matching subscription, once per session at the highest granted QoS
    /// of its matching filters (3.3.5: we choose one delivery, at the maximum QoS).
    fn route(&mut self, msg: &Message) {
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.router.matches(&msg.topic, &mut matches);
        if matches.len() > 1 {
            self.merge_overlapping(&mut matches);
        }
        for sub in &matches {
            let qos = msg.qos.min(sub.qos);
            self.deliver(sub.session, Outgoing { msg: msg.clone(), qos, retain: false });
        }
        self.matches = matches;
    }

    /// Keep one entry per session, with the highest QoS among its matches. Linear, no sorting:
    /// a per-session mark says where that session's entry already is.
    fn merge_overlapping(&mut self, matches: &mut Vec<Subscriber>) {
        self.epoch += 1;
        let epoch = self.epoch;
        if self.marks.len() < self.sessions.capacity_keys() {
            self.marks.resize(self.sessions.capacity_keys(), (0, 0));
        }
        let mut kept = 0;
        for i in 0..matches.len() {
            let Some(&sub) = matches.get(i) else { break };
            let Some(mark) = self.marks.get_mut(sub.session) else { continue };
            if mark.0 == epoch {
                if let Some(first) = matches.get_mut(mark.1) {
                    first.qos = first.qos.max(sub.qos);
                }
            } else {
                *mark = (epoch, kept);
                if let Some(slot) = matches.get_mut(kept) {
                    *slot = sub;
                }
                kept += 1;
            }
        }
        matches.truncate(kept);
    }

    /// Send or queue one message for a session.
    fn deliver(&mut self, slot: usize, out: Outgoing) {
        let Some(session) = self.sessions.get_mut(slot) else { return };
        let Some(token) = session.connection else {
            // Offline: QoS 0 is not kept for offline clients (as mosquitto's default); QoS 1/2
            // wait in the bounded queue.
            if out.qos != QoS::AtMostOnce && session.enqueue(out, self.max_queued).is_err() && session.dropped == 1 {
                warn!("Outgoing messages are being dropped for client {}.", session.client_id);
            }
            return;
        };
        let Some(conn) = self.conns.get_mut(token) else { return };
        if conn.closing {
            return;
        }
        if out.qos == QoS::AtMostOnce {
            if conn.pending_output() > SLOW_CONSUMER_BYTES {
                session.dropped += 1;
                return;
            }
            conn.write_publish(&out, None, false);
        } else if session.queue.is_empty() && session.inflight.len() < self.max_inflight {
            send_inflight(session, conn, out);
        } else {
            if session.enqueue(out, self.max_queued).is_err() && session.dropped == 1 {
                warn!("Outgoing messages are being dropped for client {}.", session.client_id);
            }
            return;
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(token);
        }
    }

    /// Move queued messages into free in-flight slots, in order (4.6).
    fn fill_window(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else { return };
        let Some(token) = session.connection else { return };
        let Some(conn) = self.conns.get_mut(token) else { return };
        let mut wrote = false;
        while session.inflight.len() < self.max_inflight {
            let Some(out) = session.queue.pop_front() else { break };
            send_inflight(session, conn, out);
            wrote = true;
        }
        if wrote {
            self.mark_dirty(token);
        }
    }

    fn on_subscribe(&mut self, token: usize, slot: usize, s: Subscribe<'_>) {
        let mut return_codes = Vec::with_capacity(s.filters.len());
        for &(filter, qos) in &s.filters {
            self.router.subscribe(filter, Subscriber { session: slot, qos });
            if let Some(session) = self.sessions.get_mut(slot) {
                match session.subscriptions.iter_mut().find(|(f, _)| &**f == filter) {
                    Some(existing) => existing.1 = qos,
                    None => {
                        // Most clients hold one or two subscriptions: do not round up to four.
                        session.subscriptions.reserve_exact(1);
                        session.subscriptions.push((filter.into(), qos));
                    }
                }
            }
            return_codes.push(qos as u8);
        }
        self.send(token, &Packet::Suback { packet_id: s.packet_id, return_codes });
        // 3.3.1-6: retained messages matching a new subscription follow the SUBACK, retain set.
        for &(filter, qos) in &s.filters {
            let retained: Vec<Message> = self.retained.matching(filter).cloned().collect();
            for msg in retained {
                let qos = msg.qos.min(qos);
                self.deliver(slot, Outgoing { msg, qos, retain: true });
            }
        }
    }

    fn on_unsubscribe(&mut self, token: usize, slot: usize, u: Unsubscribe<'_>) {
        for filter in &u.filters {
            self.router.unsubscribe(filter, slot);
            if let Some(session) = self.sessions.get_mut(slot) {
                session.subscriptions.retain(|(f, _)| &**f != *filter);
            }
        }
        self.send(token, &Packet::Unsuback { packet_id: u.packet_id });
    }

    /// End a connection: log it, publish its will if the end was abnormal, detach its session
    /// (discarding a clean one), and queue a WebSocket close frame where one is due.
    pub fn close(&mut self, token: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        if conn.closing {
            return;
        }
        conn.closing = true;
        let who = conn.label();
        match &reason {
            CloseReason::ClientDisconnect => info!("Client {who} disconnected."),
            CloseReason::PeerClosed => info!("Client {who} closed its connection."),
            CloseReason::Io(kind) => info!("Client {who} disconnected: socket error ({kind})."),
            CloseReason::KeepAliveTimeout => info!("Client {who} has exceeded timeout, disconnecting."),
            CloseReason::ConnectTimeout => info!("Client {who} sent no CONNECT in time, disconnecting."),
            CloseReason::Protocol(e) => warn!("Client {who} disconnected due to protocol error: {e}."),
            CloseReason::WebSocket(e) => warn!("Client {who} disconnected due to WebSocket error: {e}."),
            CloseReason::WebSocketClosed(code) => info!("Client {who} closed its WebSocket (code {code:?})."),
            CloseReason::Handshake(e) => info!("Refused WebSocket upgrade from {who}: {e}."),
            CloseReason::ConnectRefused(code) => info!("Refused client {who}: CONNACK code {}.", *code as u8),
            CloseReason::TakenOver => info!("Client {who} already connected, closing old connection."),
            CloseReason::Shutdown => debug!("Closing client {who}: broker stopping."),
        }
        let will = conn.will.take();
        let phase = conn.phase;
        if conn.is_websocket() && !matches!(conn.transport, Transport::WsHandshake { .. }) {
            if let Some(code) = reason.ws_close_code() {
                conn.prepare_flush();
                ws::frame::encode_close(code, conn.out.tail());
            }
        }
        if let Phase::Connected { session } = phase {
            if let Some(s) = self.sessions.get_mut(session) {
                if s.connection == Some(token) {
                    s.connection = None;
                    if s.clean {
                        self.destroy_session(session);
                    }
                }
            }
        }
        if let Some(will) = will.filter(|_| reason.publishes_will()) {
            if will.retain {
                self.retained.update(&will);
            }
            self.route(&will);
        }
        self.closed.push(token);
    }
}

/// Start a QoS 1/2 delivery on a connected session: allocate its packet id and encode it.
fn send_inflight(session: &mut Session, conn: &mut Connection, out: Outgoing) {
    let packet_id = session.start_inflight(out);
    if let Some(Inflight { out: Some(out), .. }) = session.inflight.back() {
        conn.write_publish(out, Some(packet_id), false);
    }
}

/// Hand `held` + `data` to `consume`, which returns how many bytes it used; keep the rest in
/// `held`. When nothing is held, `data` is consumed where it lies and only a trailing partial
/// unit is copied; a drained `held` gives its memory back (idle connections stay small).
fn consume_with_leftover(held: &mut Vec<u8>, data: &mut [u8], mut consume: impl FnMut(&mut [u8]) -> usize) {
    if held.is_empty() {
        let n = consume(data);
        *held = data.get(n..).map(<[u8]>::to_vec).unwrap_or_default();
    } else {
        held.extend_from_slice(data);
        let n = consume(held);
        held.drain(..n.min(held.len()));
        if held.is_empty() {
            *held = Vec::new();
        }
    }
}

#[cfg(test)]
#[path = "broker_tests.rs"]
mod tests;
