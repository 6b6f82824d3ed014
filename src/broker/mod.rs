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

use crate::buffer::Slab;
use crate::config::Config;
use crate::connection::{Connection, Phase, Transport};
use crate::mqtt::{ConnectReturnCode, DecodeError};
use crate::router::{RetainedStore, Router, Subscriber};
use crate::session::Session;
use crate::ws::{self, HandshakeConfig, HandshakeError, WsError};

/// A client whose unsent output exceeds this loses QoS 0 messages instead of growing without
/// bound (QoS 1/2 are held back by the in-flight window and the session queue instead).
const SLOW_CONSUMER_BYTES: usize = 32 * 1024 * 1024;

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

    pub(crate) conns: Slab<Connection>,
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
            // At most 65535 packet ids exist: a larger window could never find a free one.
            max_inflight: config.max_inflight.clamp(1, usize::from(u16::MAX)),
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

mod input;
mod packets;

#[cfg(test)]
mod tests;
