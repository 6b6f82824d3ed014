//! MQTT broker semantics, sans-IO: connections, sessions, routing, retained messages, wills,
//! limits and timeouts. Each connection's transport hands it MQTT bytes through an `Endpoint`
//! (with the current time); it leaves MQTT bytes to send in each connection's output queue.
//!
//! What the event loop gets from it, each a handle the next call takes, so the order is the
//! types', not a comment's: `endpoint(token)` to read into (only while the connection wants
//! input); `poll_resume` for paused connections that may go on; `poll_transmit` for each
//! connection with output, whose `Transmit` goes back with `transmitted` after the write;
//! `poll_closed` for each closed connection, whose `Closed` says what its transport should send
//! last and goes back with `release` (at once, or after lingering, via `poll_finished`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::auth::security::Security;
use crate::buffer::{OutQueue, Slab};
use crate::config::Config;
use crate::connection::{Connection, Phase, Timeouts};
#[cfg(test)]
use crate::mqtt::ConnectReturnCode;
use crate::mqtt::{DecodeError, ReasonCode};
use crate::router::{RetainedStore, Router, Subscriber};
use crate::session::Session;
use crate::ws::{HandshakeError, WsError};

pub use input::Endpoint;

/// How long a closing connection that owes its peer an answer is kept to deliver it.
const LINGER: Duration = Duration::from_secs(2);
/// Output above the high watermark for this long, while publishers wait on it, makes a
/// connection a slow consumer: a healthy reader drains half the watermark far sooner.
const SLOW_GRACE: Duration = Duration::from_millis(500);
/// A slow consumer stays one at least this long, so one that alternates stalling and draining
/// cannot keep pausing publishers.
const SLOW_PENALTY: Duration = Duration::from_secs(10);
/// QoS 0 to a connection whose unsent output exceeds this many high watermarks is dropped even
/// if it is not (yet) a slow consumer: the bound on what a burst can queue.
const HARD_OUTPUT_FACTOR: usize = 8;

/// A connection with output to send (from `Core::poll_transmit`), until `transmitted`.
#[derive(Debug)]
#[must_use = "give it back with Core::transmitted"]
pub struct Transmit {
    token: usize,
}

impl Transmit {
    pub fn token(&self) -> usize {
        self.token
    }
}

/// A closed connection (from `Core::poll_closed`/`poll_finished`), until `release`.
#[derive(Debug)]
#[must_use = "give it back with Core::release"]
pub struct Closed {
    token: usize,
    /// The connection's serial: a handle of a released (and reused) slot does nothing.
    serial: u64,
    /// A WebSocket close frame is owed, with this status code (if any).
    ws_close: Option<Option<u16>>,
}

impl Closed {
    pub fn token(&self) -> usize {
        self.token
    }

    /// For the transport's `close`: whether (and with which status) to send a WebSocket close.
    pub fn ws_close(&self) -> Option<Option<u16>> {
        self.ws_close
    }
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
    /// 5.0, 4.12: AUTH from a client whose CONNECT named no Authentication Method (only a 5.0
    /// session decodes AUTH).
    UnexpectedAuth,
    /// A PUBLISH (or will) topic over `max_topic_levels` levels or `max_topic_length` bytes.
    TopicTooLong {
        levels: usize,
        bytes: usize,
    },
    /// 5.0, 3.3.2-8/9: Topic Alias 0 or above our Topic Alias Maximum.
    TopicAliasInvalid(u16),
    /// 5.0, 3.3.2.3.4: an empty topic with an alias the client never defined.
    UnknownTopicAlias(u16),
    /// 5.0, 3.3.4-7..9: more unreleased QoS 2 PUBLISHes than our Receive Maximum.
    ReceiveMaximumExceeded,
    /// 5.0, 3.3.4-6: a client PUBLISH with a Subscription Identifier.
    SubscriptionIdentifierFromClient,
    /// 5.0, 3.8.3-4: No Local on a shared subscription.
    NoLocalOnSharedSubscription,
    /// 5.0, 3.14.2-2: DISCONNECT sets a Session Expiry Interval after CONNECT's was 0.
    SessionExpiryFromZero,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::Decode(e) => write!(f, "{e}"),
            ProtocolError::FirstPacketNotConnect => write!(f, "first packet is not CONNECT"),
            ProtocolError::SecondConnect => write!(f, "second CONNECT"),
            ProtocolError::ServerOnlyPacket(p) => write!(f, "client sent {p}"),
            ProtocolError::UnexpectedAuth => write!(f, "AUTH without an authentication method"),
            ProtocolError::TopicTooLong { levels, bytes } => {
                write!(f, "topic of {levels} levels and {bytes} bytes exceeds the configured limits")
            }
            ProtocolError::TopicAliasInvalid(a) => write!(f, "topic alias {a} out of range"),
            ProtocolError::UnknownTopicAlias(a) => write!(f, "unknown topic alias {a}"),
            ProtocolError::ReceiveMaximumExceeded => write!(f, "receive maximum exceeded"),
            ProtocolError::SubscriptionIdentifierFromClient => write!(f, "PUBLISH with a subscription identifier"),
            ProtocolError::SessionExpiryFromZero => write!(f, "DISCONNECT set a session expiry after 0"),
            ProtocolError::NoLocalOnSharedSubscription => write!(f, "No Local on a shared subscription"),
        }
    }
}

/// Why a connection ends. Each maps to one log line, one wire outcome, and whether the will is
/// published (everything but a DISCONNECT from the client, 3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT: no will.
    ClientDisconnect,
    /// 5.0: the client sent DISCONNECT 0x04, Disconnect with Will Message: the will goes out.
    ClientDisconnectWithWill,
    /// The peer closed the TCP connection.
    PeerClosed,
    /// A socket error (its kind).
    Io(std::io::ErrorKind),
    KeepAliveTimeout,
    /// No CONNECT (or no WebSocket handshake) within the connect timeout.
    ConnectTimeout,
    /// Still without CONNECT when `max_pending_connections` newer ones were waiting.
    PendingLimit,
    /// Unsent output made no progress for `send_timeout`.
    SendTimeout,
    /// `memory_limit` reached while the client needed the broker to hold more (a QoS 1/2
    /// PUBLISH, which MQTT 3.1.1 cannot refuse otherwise, or a large partial packet).
    MemoryLimit,
    Protocol(ProtocolError),
    /// The WebSocket frame layer refused the client's frames.
    WebSocket(WsError),
    /// The peer sent a WebSocket close frame (with this status code).
    WebSocketClosed(Option<u16>),
    /// The TLS layer failed (a plain client on a TLS port, a bad certificate...): its alert is
    /// sent, nothing else.
    Tls(String),
    /// The HTTP upgrade was refused (the HTTP answer is already queued).
    Handshake(HandshakeError),
    /// CONNECT refused with this code (CONNACK already queued; at 3.1.1 its return code).
    ConnectRefused(ReasonCode),
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
            CloseReason::Handshake(_)
            | CloseReason::PeerClosed
            | CloseReason::Io(_)
            | CloseReason::SendTimeout
            | CloseReason::Tls(_) => None,
            CloseReason::WebSocketClosed(code) => Some(*code),
            CloseReason::WebSocket(e) => Some(Some(e.close_code())),
            CloseReason::Protocol(ProtocolError::Decode(DecodeError::PacketTooLarge { .. })) => Some(Some(1009)),
            CloseReason::Protocol(_) => Some(Some(1002)),
            CloseReason::ConnectRefused(_) => Some(Some(1008)),
            CloseReason::MemoryLimit => Some(Some(1013)),
            CloseReason::Shutdown => Some(Some(1001)),
            _ => Some(Some(1000)),
        }
    }

    /// Whether the socket should stay open a little to deliver an answer: not when the peer is
    /// gone or not reading, nor when the peer itself closed the WebSocket (its close is echoed
    /// and the server closes the TCP connection first, RFC 6455 7.1.1).
    fn lingers(&self) -> bool {
        !matches!(
            self,
            CloseReason::PeerClosed
                | CloseReason::Io(_)
                | CloseReason::SendTimeout
                | CloseReason::ClientDisconnect
                | CloseReason::ClientDisconnectWithWill
                | CloseReason::WebSocketClosed(_)
                | CloseReason::Shutdown
                | CloseReason::Tls(_)
        )
    }
}

/// Limits from the configuration, as the core applies them.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_packet_size: usize,
    pub max_connect_packet_size: usize,
    pub message_size_limit: usize,
    pub max_topic_levels: usize,
    pub max_topic_length: usize,
    pub max_subscribe_filters: usize,
    pub max_subscriptions: usize,
    pub max_inflight: usize,
    pub max_keepalive: u16,
    pub max_queued: usize,
    pub max_queued_bytes: usize,
    pub high_watermark: usize,
    pub low_watermark: usize,
    pub hard_output_cap: usize,
    pub persistent_client_expiration: Option<Duration>,
    pub max_pending: usize,
    /// `None`: no limit; else bytes of heap (see `memory`).
    pub memory_limit: Option<usize>,
}

/// Counters of what the limits did (for logs now, `$SYS` and metrics later).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// QoS 0 deliveries dropped to slow or over-full consumers.
    pub dropped_qos0_slow: u64,
    /// Messages not accepted or not delivered because `memory_limit` was reached.
    pub dropped_memory: u64,
    /// QoS 1/2 messages dropped because a session's queue was full.
    pub dropped_queue_full: u64,
    /// PUBLISHes over `message_size_limit`.
    pub dropped_oversize: u64,
    /// Connections refused: listener at `max_connections`.
    pub refused_max_connections: u64,
    /// CONNECTs and upgrades refused because `memory_limit` was reached.
    pub refused_memory: u64,
    /// Connections dropped for `max_pending_connections`.
    pub pending_evicted: u64,
    /// Connections closed by `send_timeout`.
    pub send_timeouts: u64,
    pub sessions_expired: u64,
}

/// Per-connection "logged once" marks for limits a client hits.
pub(crate) mod warned {
    pub const TOPIC: u8 = 1;
    pub const FILTERS: u8 = 2;
    pub const SUBSCRIPTIONS: u8 = 4;
    pub const MESSAGE_SIZE: u8 = 8;
    pub const SLOW: u8 = 16;
}

/// The broker's state: everything but sockets and the clock.
pub struct Core {
    pub(crate) limits: Limits,
    timeouts: Timeouts,
    /// Per listener: who may connect, and the ACL (listeners with the same files share them).
    security: Vec<Rc<Security>>,
    /// Some listener has an ACL file: deliveries are checked for read access.
    acl_active: bool,
    /// Per listener: `max_connections` and the current count.
    listener_limits: Vec<Option<usize>>,
    listener_counts: Vec<usize>,

    pub(crate) conns: Slab<Connection>,
    sessions: Slab<Session>,
    client_ids: HashMap<Rc<str>, usize>,
    router: Router,
    retained: RetainedStore,
    /// Shared subscription groups (`$share/...`).
    shared: shared::SharedGroups,
    /// (deadline, token, serial): checked lazily; a stale entry is re-armed or dropped.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// (expiry, session slot, session serial) of offline persistent sessions; lazy like `timers`.
    session_timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_serial: u64,
    /// Connections with output to flush this turn.
    dirty: Vec<usize>,
    /// A control packet for a 5.0 client with a Maximum Packet Size is encoded here first, to
    /// be dropped if over it (3.1.2-24). Holds one small packet.
    scratch: Vec<u8>,
    /// Connections closed this turn; the event loop drops (or lingers on) their sockets.
    closed: Vec<Closed>,
    /// Lingering connections whose time is up; the event loop drops their sockets.
    finished: Vec<(usize, u64)>,
    /// Connections whose input may be read again; the event loop calls `resume` for each.
    resumed: Vec<usize>,
    /// (token, serial) of connections without CONNECT yet, oldest first; entries go stale
    /// (and are skipped) once a connection CONNECTs or closes.
    pending: VecDeque<(usize, u64)>,
    pending_count: usize,
    /// Reused buffers for routing, so a PUBLISH allocates only its message.
    matches: Vec<Subscriber>,
    /// Per session slot: (route epoch, index in `matches`), to merge overlapping subscriptions.
    marks: Vec<(u64, usize)>,
    epoch: u64,
    /// The time of the call being handled (time is an input: the event loop passes it in).
    now: Instant,
    /// The connection whose packets are being handled: a publisher to pause when a subscriber
    /// it feeds is congested.
    current: Option<usize>,
    /// `memory_limit` was reached and it was logged; cleared once below it again.
    memory_full_logged: bool,
    pub stats: Stats,
}

impl Core {
    pub fn new(config: &Config) -> Self {
        let memory_limit = crate::memory::resolve_limit(config.memory_limit);
        let high = config.output_high_watermark.max(1);
        Core {
            limits: Limits {
                max_packet_size: config.max_packet_size,
                max_connect_packet_size: config.max_connect_packet_size.min(config.max_packet_size),
                message_size_limit: config.message_size_limit,
                max_topic_levels: config.max_topic_levels,
                max_topic_length: config.max_topic_length,
                max_subscribe_filters: config.max_subscribe_filters,
                max_subscriptions: config.max_subscriptions,
                // At most 65535 packet ids exist: a larger window could never find a free one.
                max_inflight: config.max_inflight.clamp(1, usize::from(u16::MAX)),
                max_keepalive: config.max_keepalive,
                max_queued: config.max_queued,
                max_queued_bytes: config.max_queued_bytes,
                high_watermark: high,
                low_watermark: high / 2,
                hard_output_cap: high.saturating_mul(HARD_OUTPUT_FACTOR),
                persistent_client_expiration: config.persistent_client_expiration,
                max_pending: config.max_pending_connections.max(1),
                memory_limit,
            },
            timeouts: Timeouts { connect: config.connect_timeout, send: config.send_timeout, slow_grace: SLOW_GRACE },
            security: (0..config.listeners.len().max(1))
                .map(|i| {
                    let auth = config.auth_for(i);
                    let identity = config.listeners.get(i).is_some_and(|l| l.tls.use_identity_as_username);
                    Rc::new(Security::open(auth.allow_anonymous.unwrap_or(config.allow_anonymous), identity))
                })
                .collect(),
            acl_active: false,
            listener_limits: config.listeners.iter().map(|l| l.max_connections.or(config.max_connections)).collect(),
            listener_counts: vec![0; config.listeners.len()],
            conns: Slab::default(),
            sessions: Slab::default(),
            client_ids: HashMap::new(),
            router: Router::default(),
            retained: RetainedStore::default(),
            shared: shared::SharedGroups::default(),
            timers: BinaryHeap::new(),
            session_timers: BinaryHeap::new(),
            next_serial: 0,
            dirty: Vec::new(),
            scratch: Vec::new(),
            closed: Vec::new(),
            finished: Vec::new(),
            resumed: Vec::new(),
            pending: VecDeque::new(),
            pending_count: 0,
            matches: Vec::new(),
            marks: Vec::new(),
            epoch: 0,
            now: Instant::now(),
            current: None,
            memory_full_logged: false,
            stats: Stats::default(),
        }
    }

    /// Use these loaded password and ACL files, one entry per listener (see
    /// `auth::security::LoadedSecurity`). Cached routes are recomputed.
    pub fn set_security(&mut self, security: Vec<Rc<Security>>) {
        if security.is_empty() {
            return;
        }
        self.acl_active = security.iter().any(|s| s.acl.is_some());
        self.security = security;
        self.router.invalidate_routes();
    }

    /// The TLS layer verified a client certificate with this CN (before any plaintext).
    pub fn set_tls_identity(&mut self, token: usize, common_name: Option<String>) {
        if let Some(conn) = self.conns.get_mut(token) {
            if conn.phase == Phase::AwaitConnect {
                conn.identity = common_name.map(Rc::from);
            }
        }
    }

    /// The security settings of the listener that accepted `token`. O(1).
    pub(crate) fn security_of(&self, listener: u16) -> Option<Rc<Security>> {
        self.security.get(usize::from(listener)).or_else(|| self.security.first()).cloned()
    }

    /// The resolved `memory_limit`, in bytes (`None`: unlimited).
    pub fn memory_limit(&self) -> Option<usize> {
        self.limits.memory_limit
    }

    /// Whether `memory_limit` is reached. O(1): one load, one comparison.
    #[inline]
    pub(crate) fn memory_full(&mut self) -> bool {
        let Some(limit) = self.limits.memory_limit else { return false };
        let full = crate::memory::heap_used() >= limit;
        if full != self.memory_full_logged {
            self.memory_state_changed(full, limit);
        }
        full
    }

    /// Log crossing `memory_limit`, once each way.
    #[cold]
    fn memory_state_changed(&mut self, full: bool, limit: usize) {
        let used = crate::memory::human(crate::memory::heap_used());
        if full {
            warn!(
                "memory_limit reached ({used} of {}): refusing new clients, QoS 0 messages and QoS 1/2 publishes until memory is freed.",
                crate::memory::human(limit)
            );
        } else {
            info!("Memory use is below memory_limit again ({used}).");
        }
        self.memory_full_logged = full;
    }

    /// A socket was accepted on listener `listener` (index in the configuration): its token,
    /// or `None` when the listener is at `max_connections` (the caller closes the socket).
    pub fn accept(&mut self, listener: usize, peer: SocketAddr, now: Instant) -> Option<usize> {
        self.now = now;
        let count = self.listener_counts.get(listener).copied().unwrap_or(0);
        if let Some(Some(max)) = self.listener_limits.get(listener) {
            if count >= *max {
                if self.stats.refused_max_connections == 0 || count == *max {
                    debug!("Refusing connection from {peer}: listener at max_connections ({max}).");
                }
                self.stats.refused_max_connections += 1;
                return None;
            }
        }
        if self.pending_count >= self.limits.max_pending {
            self.evict_oldest_pending();
        }
        self.next_serial += 1;
        let serial = self.next_serial;
        let listener_index = u16::try_from(listener).unwrap_or(u16::MAX);
        let token = self.conns.insert(Connection::new(serial, listener_index, peer, now));
        if let Some(c) = self.listener_counts.get_mut(listener) {
            *c += 1;
        }
        self.pending.push_back((token, serial));
        self.pending_count += 1;
        self.arm_timer(token, now + self.timeouts.connect);
        debug!("New connection from {peer}.");
        Some(token)
    }

    /// Close the connection that has waited longest without CONNECT. Amortised O(1): stale
    /// entries are skipped once each.
    fn evict_oldest_pending(&mut self) {
        while let Some((token, serial)) = self.pending.pop_front() {
            let live = self.conns.get(token).is_some_and(|c| c.serial == serial && c.phase == Phase::AwaitConnect);
            if live {
                self.stats.pending_evicted += 1;
                self.close(token, CloseReason::PendingLimit);
                return;
            }
        }
    }

    /// A connection left the CONNECT-pending state (CONNECT accepted, or closed).
    fn leave_pending(&mut self) {
        self.pending_count = self.pending_count.saturating_sub(1);
        // Keep the queue proportional to what is pending: drop stale entries now and then.
        if self.pending.len() > 2 * self.pending_count + 64 {
            let conns = &self.conns;
            self.pending
                .retain(|&(t, s)| conns.get(t).is_some_and(|c| c.serial == s && c.phase == Phase::AwaitConnect));
        }
    }

    /// The next connection with output to send: write its `output`, then give the handle back
    /// with `transmitted`. Connections marked while flushing (wills of ones that failed) come
    /// in the same pass. O(1).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let token = self.dirty.pop()?;
        if let Some(conn) = self.conns.get_mut(token) {
            conn.dirty = false;
        }
        Some(Transmit { token })
    }

    /// `written` bytes of the transmitted connection's output went out (see `flow::wrote`).
    pub fn transmitted(&mut self, transmit: Transmit, written: usize, now: Instant) {
        self.wrote(transmit.token, written, now);
    }

    /// The next connection closed since the last call: its transport sends `Closed::ws_close`
    /// and what is queued, then the loop either lingers (`lingers`) or drops the socket and
    /// gives the handle back with `release`.
    pub fn poll_closed(&mut self) -> Option<Closed> {
        self.closed.pop()
    }

    /// The next lingering connection whose time ran out (or whose peer finished): drop the
    /// socket and `release` it.
    pub fn poll_finished(&mut self) -> Option<Closed> {
        let (token, serial) = self.finished.pop()?;
        Some(Closed { token, serial, ws_close: None })
    }

    /// Whether a closed connection should be kept to deliver its last answer (see `LINGER`).
    pub fn lingers(&self, closed: &Closed) -> bool {
        self.is_lingering(closed.token)
    }

    /// Whether `token` is closed and lingering.
    pub fn is_lingering(&self, token: usize) -> bool {
        self.conns.get(token).is_some_and(|c| c.closing && c.linger_until.is_some())
    }

    /// Whether `token` is closing (or gone): its socket is only read to discard.
    pub fn is_closing(&self, token: usize) -> bool {
        self.conns.get(token).is_none_or(|c| c.closing)
    }

    /// The socket of a closed connection is gone: forget the connection. Handles of a token
    /// already released (a lingering one finished twice) do nothing.
    pub fn release(&mut self, closed: Closed) {
        let Some(conn) = self.conns.get(closed.token).filter(|c| c.closing && c.serial == closed.serial) else {
            return;
        };
        let listener = usize::from(conn.listener);
        self.conns.remove(closed.token);
        if let Some(c) = self.listener_counts.get_mut(listener) {
            *c = c.saturating_sub(1);
        }
    }

    /// The connection's queued output (MQTT bytes, framed by its transport at the write).
    pub fn output(&mut self, token: usize) -> Option<&mut OutQueue> {
        self.conns.get_mut(token).map(|c| &mut c.out)
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

    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// The earliest instant `handle_timeouts` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let session = self.session_timers.peek().map(|Reverse((at, _, _))| *at);
        conn.into_iter().chain(session).min()
    }

    /// Act on every deadline that has passed: connect, keep-alive and send timeouts, slow
    /// consumers, lingering closes, and offline sessions' expiry. O(log n) per expired entry.
    pub fn handle_timeouts(&mut self, now: Instant) {
        self.now = now;
        while let Some(&Reverse((at, token, serial))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get(token) else { continue };
            // One live entry per connection: others are stale (slot reused, or re-armed earlier).
            if conn.serial != serial || conn.timer_at != Some(at) {
                continue;
            }
            if let Some(c) = self.conns.get_mut(token) {
                c.timer_at = None;
            }
            self.connection_timeout(token, now);
        }
        while let Some(&Reverse((at, slot, serial))) = self.session_timers.peek() {
            if at > now {
                break;
            }
            self.session_timers.pop();
            let will_due = self
                .sessions
                .get_mut(slot)
                .filter(|s| s.serial == serial)
                .and_then(|s| s.delayed_will.take_if(|w| w.1 <= now));
            if let Some(will) = will_due {
                self.publish_will(&will.0);
            }
            let expired = self
                .sessions
                .get(slot)
                .is_some_and(|s| s.serial == serial && s.connection.is_none() && s.expires_at == Some(at));
            if expired {
                if let Some(s) = self.sessions.get(slot) {
                    info!("Expiring client {} due to timeout.", s.client_id);
                }
                self.stats.sessions_expired += 1;
                self.destroy_session(slot);
            }
        }
    }

    /// The connection's timer fired: act on whichever of its deadlines passed, then re-arm.
    fn connection_timeout(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conns.get(token) else { return };
        if conn.closing {
            if conn.linger_until.is_some_and(|at| at <= now) {
                self.finished.push((token, conn.serial));
            }
            return;
        }
        let phase_deadline = match conn.phase {
            Phase::AwaitConnect => Some((conn.last_received + self.timeouts.connect, CloseReason::ConnectTimeout)),
            Phase::Connected { .. } if conn.keep_alive == 0 => None,
            Phase::Connected { .. } => Some((
                conn.last_received + crate::connection::keep_alive_grace(conn.keep_alive),
                CloseReason::KeepAliveTimeout,
            )),
        };
        let paused = !conn.wants_input();
        let stalled =
            conn.congestion.as_ref().and_then(|c| c.stalled_since).is_some_and(|at| at + self.timeouts.send <= now);
        if stalled {
            self.stats.send_timeouts += 1;
            self.close(token, CloseReason::SendTimeout);
            return;
        }
        if let Some((at, reason)) = phase_deadline {
            if at <= now {
                if paused && reason == CloseReason::KeepAliveTimeout {
                    // Its packets may be waiting unread behind our own pause: not its fault.
                    if let Some(c) = self.conns.get_mut(token) {
                        c.last_received = now;
                    }
                } else {
                    self.close(token, reason);
                    return;
                }
            }
        }
        self.check_slow(token, now);
        self.rearm(token);
    }

    /// Re-arm the connection's timer to its next deadline, if it has one.
    pub(crate) fn rearm(&mut self, token: usize) {
        let timeouts = self.timeouts;
        let Some(conn) = self.conns.get(token) else { return };
        let Some(deadline) = conn.deadline(&timeouts) else { return };
        if conn.timer_at.is_none_or(|at| deadline < at) {
            self.arm_timer(token, deadline);
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
        match self.conns.get(token) {
            // A lingering connection's peer is done: drop it now.
            Some(c) if c.closing => self.finished.push((token, c.serial)),
            Some(_) => self.close(token, reason),
            None => {}
        }
    }

    /// Close every connection (the broker is stopping); lingering ones are finished at once.
    pub fn shutdown(&mut self) {
        let tokens: Vec<(usize, u64, bool)> = self.conns.iter().map(|(t, c)| (t, c.serial, c.closing)).collect();
        for (token, serial, lingering) in tokens {
            if lingering {
                self.finished.push((token, serial));
            } else {
                self.close(token, CloseReason::Shutdown);
            }
        }
    }
}

mod close;
mod flow;
mod input;
mod invariants;
mod packets;
mod shared;
mod subscriptions;
pub(crate) mod v5;

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "limits_tests.rs"]
mod limits_tests;

#[cfg(test)]
#[path = "v5_tests.rs"]
mod v5_tests;
