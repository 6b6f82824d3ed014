//! Per-connection MQTT state in the broker core: the phase, timers, flow control, and the output
//! owed to the peer (MQTT bytes; the connection's transport frames them on the way out). The
//! layers under MQTT (TLS, HTTP upgrade, WebSocket frames) and the input they hold are in
//! `transport`; no sockets here either.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::buffer::OutQueue;
use crate::mqtt::{encode_publish_header, ProtocolLevel, PublishV5Extras};
use crate::router::{Message, Subscriber};
use crate::session::Outgoing;

/// A route cache of one entry per publishing client: most clients (sensors) publish to the
/// same topic again and again, so the topic string and its subscriber list are reused until the
/// subscriptions change, instead of allocating the topic and walking the trie per message.
#[derive(Debug)]
pub struct LastPublish {
    pub topic: Rc<str>,
    /// `Router::generation` when `matches` was computed.
    pub generation: u64,
    /// Matching sessions, one entry each, at their highest granted QoS (and allowed to read it).
    pub matches: Vec<Subscriber>,
    /// Whether this client may publish to `topic` (ACL, `$SYS`), decided with `matches`.
    pub write_allowed: bool,
}

/// 1.5 x keep alive: how long a client may stay silent (3.1.2-24).
pub fn keep_alive_grace(keep_alive_secs: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive_secs) * 1500)
}

/// The per-connection time limits, as configured.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Accept to CONNECT, WebSocket handshake included.
    pub connect: Duration,
    /// Output pending without progress this long closes the connection.
    pub send: Duration,
    /// Output above the high watermark for this long, while it holds publishers paused,
    /// makes a connection a slow consumer.
    pub slow_grace: Duration,
}

/// Where the MQTT conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Socket accepted; the first packet must be CONNECT (3.1.0-1).
    AwaitConnect,
    /// CONNECT accepted; bound to a session slot.
    Connected { session: usize },
}

/// Output flow control state of a connection that is, or recently was, congested. Boxed and
/// allocated only then, so an idle connection pays one pointer for it.
#[derive(Debug, Default)]
pub struct Congestion {
    /// Unsent output has been above the high watermark since then (cleared below the low one).
    pub above_high_since: Option<Instant>,
    /// Marked a slow consumer then: QoS 0 to it is dropped while above the high watermark, and
    /// it no longer pauses publishers.
    pub slow_since: Option<Instant>,
    /// Output pending with no write progress since then (for `send_timeout`).
    pub stalled_since: Option<Instant>,
    /// Publishers paused because this connection's output is above the high watermark.
    pub waiters: Vec<usize>,
    /// QoS 0 deliveries dropped (slow consumer, hard output cap, memory limit).
    pub dropped_qos0: u64,
}

impl Congestion {
    /// Nothing left worth keeping: the box can be freed.
    pub fn is_idle(&self) -> bool {
        self.above_high_since.is_none()
            && self.slow_since.is_none()
            && self.stalled_since.is_none()
            && self.waiters.is_empty()
    }
}

#[derive(Debug)]
pub struct Connection {
    /// Unique for the broker's lifetime, so a timer for a reused slot is recognised as stale.
    pub serial: u64,
    /// Index of the listener that accepted it (for per-listener connection counts).
    pub listener: u16,
    pub peer: SocketAddr,
    /// Client address reported by a trusted proxy (X-Forwarded-For / X-Real-IP).
    pub forwarded_for: Option<Box<str>>,
    /// MQTT over WebSocket (upgraded): closes get a WebSocket close frame.
    pub websocket: bool,
    /// MQTT bytes for the peer (framed by its transport at flush).
    pub out: OutQueue,
    pub phase: Phase,
    pub level: ProtocolLevel,
    /// Set by CONNECT; shared with the session and the broker's id map.
    pub client_id: Option<Rc<str>>,
    /// Before CONNECT: the verified client certificate's CN, as the TLS layer reported it
    /// (for `use_identity_as_username`). After: the user name CONNECT was accepted with, for
    /// logs. One field for both keeps idle connections small.
    pub identity: Option<Rc<str>>,
    /// Keep alive from CONNECT, in seconds; zero disables the check (3.1.2.10).
    pub keep_alive: u16,
    /// Accept time until CONNECT (the connect timeout runs from accept, however slowly bytes
    /// trickle in); then the last time bytes arrived.
    pub last_received: Instant,
    /// Deadline of this connection's live entry in the broker's timer heap.
    pub timer_at: Option<Instant>,
    pub will: Option<Message>,
    /// This client's last PUBLISH topic and where it went (see `LastPublish`).
    pub last_publish: Option<Box<LastPublish>>,
    /// Queued in the broker's dirty list for a flush this turn.
    pub dirty: bool,
    /// Own output went above the high watermark: input is not read until it is below the low
    /// one (the client cannot make us produce more for it than it takes).
    pub over_high: bool,
    /// Input is not read because a subscriber this client published to is congested (that
    /// subscriber's token; it wakes this connection when it drains or turns out to be slow).
    pub waiting_on: Option<usize>,
    /// Unpaused, and listed for `Core::resume`, which has not run yet: not read until it has,
    /// since what the pause left undecoded must go first (reading more behind it would let the
    /// held input grow past one read chunk).
    pub resume_pending: bool,
    pub congestion: Option<Box<Congestion>>,
    /// Limits this client hit and that were logged (`broker::warned` bits): once per client.
    pub warned: u8,
    /// Closed by the broker; the event loop flushes what it can and drops the socket.
    pub closing: bool,
    /// While closing: keep the socket until this instant, reading and discarding, so the peer
    /// sees our last answer (CONNACK, HTTP error, close frame) and not a reset.
    pub linger_until: Option<Instant>,
    /// 5.0 state (`None` below 5.0, so a 3.1.1 connection pays one pointer).
    pub v5: Option<Box<crate::broker::v5::ConnV5>>,
}

impl Connection {
    pub fn new(serial: u64, listener: u16, peer: SocketAddr, now: Instant) -> Self {
        Connection {
            serial,
            listener,
            peer,
            forwarded_for: None,
            websocket: false,
            out: OutQueue::default(),
            phase: Phase::AwaitConnect,
            level: ProtocolLevel::V311,
            client_id: None,
            identity: None,
            keep_alive: 0,
            last_received: now,
            timer_at: None,
            will: None,
            last_publish: None,
            dirty: false,
            over_high: false,
            waiting_on: None,
            resume_pending: false,
            congestion: None,
            warned: 0,
            closing: false,
            linger_until: None,
            v5: None,
        }
    }

    /// Whether the event loop may read this connection's socket (and the core decode its held
    /// input). O(1).
    pub fn wants_input(&self) -> bool {
        !self.closing && !self.over_high && self.waiting_on.is_none() && !self.resume_pending
    }

    pub fn congestion_mut(&mut self) -> &mut Congestion {
        self.congestion.get_or_insert_with(Box::default)
    }

    /// A slow consumer (see `Congestion::slow_since`).
    pub fn is_slow(&self) -> bool {
        self.congestion.as_ref().is_some_and(|c| c.slow_since.is_some())
    }

    /// Bytes owed to this client at the MQTT level (for the slow-consumer limit).
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// The in-flight window toward this client: `max`, or less if its 5.0 Receive Maximum
    /// says so (3.3.4-9). O(1).
    #[inline]
    pub fn send_window(&self, max: usize) -> usize {
        match &self.v5 {
            None => max,
            Some(v) => max.min(usize::from(v.receive_maximum)),
        }
    }

    /// Whether `out` may be sent to this client at `now`: not expired (3.3.2-5) and, for a
    /// 5.0 client, within its Maximum Packet Size (3.1.2-25; counted when not). O(1); a
    /// 3.1.1 message to a 3.1.1 client costs two null checks.
    #[inline]
    pub fn may_send(&mut self, out: &Outgoing, now: Instant) -> bool {
        // Nothing to expire, and no Maximum Packet Size to check against.
        if out.msg.v5.is_none() && self.v5.as_deref().is_none_or(|v| v.maximum_packet_size == usize::MAX) {
            return true;
        }
        self.may_send_v5(out, now)
    }

    #[cold]
    fn may_send_v5(&mut self, out: &Outgoing, now: Instant) -> bool {
        if crate::broker::v5::expired(&out.msg, now) {
            return false;
        }
        let Some(v5) = self.v5.as_deref_mut() else { return true };
        if crate::broker::v5::publish_size(out, now) > v5.maximum_packet_size {
            v5.dropped_too_large += 1;
            return false;
        }
        true
    }

    /// Encode a PUBLISH for `out` (at 5.0 with the message's forwarded properties and what is
    /// left of its expiry at `now`). The payload is referenced, not copied, when it is large.
    #[inline]
    pub fn write_publish(&mut self, out: &Outgoing, packet_id: Option<u16>, dup: bool, now: Instant) {
        let msg = &out.msg;
        let (level, payload_len) = match self.level {
            ProtocolLevel::V5 => {
                // A 5.0 PUBLISH with properties (the message's 5.0 part, a subscription
                // identifier, an alias toward this client) takes the 5.0 encoder.
                if msg.v5.is_some() || out.sub_id != 0 || self.v5.as_deref().is_some_and(|v| v.sends_aliases()) {
                    return self.write_publish_v5(out, packet_id, dup, now);
                }
                // Without: 3.1.1's header counting one byte more, the zero property length
                // pushed below, between the packet id and the payload.
                (ProtocolLevel::V311, msg.payload.len() + 1)
            }
            level => (level, msg.payload.len()),
        };
        let q = &mut self.out;
        encode_publish_header(&msg.topic, out.qos, out.retain, dup, packet_id, payload_len, level, None, q.tail());
        if payload_len != msg.payload.len() {
            q.tail().push(0);
        }
        q.push_shared(&msg.payload);
    }

    #[inline(never)]
    fn write_publish_v5(&mut self, out: &Outgoing, packet_id: Option<u16>, dup: bool, now: Instant) {
        let msg = &out.msg;
        let alias = self.v5.as_deref_mut().and_then(|v| v.outgoing_alias(&msg.topic));
        // A topic the client knows by its alias is sent as the alias alone.
        let topic = if alias.is_some_and(|(_, known)| known) { "" } else { &*msg.topic };
        let q = &mut self.out;
        let v5 = msg.v5.as_deref();
        let extras = PublishV5Extras {
            topic_alias: alias.map(|(a, _)| a),
            message_expiry_interval: v5.and_then(|v| v.remaining(now)),
            subscription_identifiers: if out.sub_id == 0 { &[] } else { std::slice::from_ref(&out.sub_id) },
            forwarded: v5.map_or(&[][..], |v| &v.forwarded[..]),
        };
        encode_publish_header(
            topic,
            out.qos,
            out.retain,
            dup,
            packet_id,
            msg.payload.len(),
            ProtocolLevel::V5,
            Some(&extras),
            q.tail(),
        );
        q.push_shared(&msg.payload);
    }

    /// The instant of this connection's next timed event, if any: the linger deadline while
    /// closing; else the earliest of the CONNECT (and WebSocket handshake) deadline before
    /// CONNECT or 1.5 x keep alive of silence after it (3.1.2-24), `send_timeout` after output
    /// stalled, and `slow_grace` after its output went above the high watermark while it holds
    /// publishers paused.
    pub fn deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        if self.closing {
            return self.linger_until;
        }
        let phase = match self.phase {
            Phase::AwaitConnect => Some(self.last_received + timeouts.connect),
            Phase::Connected { .. } if self.keep_alive == 0 => None,
            Phase::Connected { .. } => Some(self.last_received + keep_alive_grace(self.keep_alive)),
        };
        let Some(c) = &self.congestion else { return phase };
        let stall = c.stalled_since.map(|at| at + timeouts.send);
        let slow = match (c.above_high_since, c.slow_since) {
            (Some(at), None) if !c.waiters.is_empty() => Some(at + timeouts.slow_grace),
            _ => None,
        };
        [phase, stall, slow].into_iter().flatten().min()
    }

    /// A complete Control Packet arrived: restart the keep-alive clock (not the connect
    /// timeout, which runs from accept). Partial packets do not count ([MQTT-3.1.2-24]).
    pub fn touch(&mut self, now: Instant) {
        if self.phase != Phase::AwaitConnect {
            self.last_received = now;
        }
    }

    /// Client id, or the address before CONNECT, for log lines.
    pub fn label(&self) -> String {
        match &self.client_id {
            Some(id) => id.to_string(),
            None => self.peer_label(),
        }
    }

    /// Client address for log lines.
    pub fn peer_label(&self) -> String {
        match &self.forwarded_for {
            Some(f) => format!("{f} (via {})", self.peer),
            None => self.peer.to_string(),
        }
    }

    pub fn is_websocket(&self) -> bool {
        self.websocket
    }
}
