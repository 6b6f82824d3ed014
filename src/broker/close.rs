//! Ending a connection: the log line, the 5.0 DISCONNECT that says why, the session detached
//! (ended, or kept until its expiry) and the will (now, delayed, or not at all).

use std::cmp::Reverse;
use std::time::Duration;

use log::{debug, info, warn};

use super::{v5, CloseReason, Closed, Core, LINGER};
use crate::connection::Phase;
use crate::mqtt::{encode_packet, Disconnect, Packet, ProtocolLevel};

impl Core {
    /// End a connection: log it, publish its will if the end was abnormal, detach its session
    /// (discarding a clean one), wake publishers paused on it, and queue a WebSocket close frame
    /// where one is due.
    pub fn close(&mut self, token: usize, reason: CloseReason) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else { return };
        if conn.closing {
            return;
        }
        conn.closing = true;
        let who = conn.label();
        match &reason {
            CloseReason::ClientDisconnect => info!("Client {who} disconnected."),
            CloseReason::ClientDisconnectWithWill => info!("Client {who} disconnected, asking for its will."),
            CloseReason::PeerClosed => info!("Client {who} closed its connection."),
            CloseReason::Io(kind) => info!("Client {who} disconnected: socket error ({kind})."),
            CloseReason::KeepAliveTimeout => info!("Client {who} has exceeded timeout, disconnecting."),
            CloseReason::ConnectTimeout => info!("Client {who} sent no CONNECT in time, disconnecting."),
            CloseReason::PendingLimit => {
                info!("Client {who} sent no CONNECT before max_pending_connections newer ones, disconnecting.")
            }
            CloseReason::SendTimeout => {
                warn!("Client {who} has not read its output in time (send_timeout), disconnecting.")
            }
            CloseReason::MemoryLimit => warn!("Client {who} disconnected: memory_limit reached."),
            CloseReason::Protocol(e) => warn!("Client {who} disconnected due to protocol error: {e}."),
            CloseReason::WebSocket(e) => warn!("Client {who} disconnected due to WebSocket error: {e}."),
            CloseReason::WebSocketClosed(code) => info!("Client {who} closed its WebSocket (code {code:?})."),
            CloseReason::Tls(e) => info!("Client {who} disconnected: TLS error: {e}."),
            CloseReason::Handshake(e) => info!("Refused WebSocket upgrade from {who}: {e}."),
            CloseReason::ConnectRefused(code) => info!("Refused client {who}: CONNACK code {code}."),
            CloseReason::TakenOver => info!("Client {who} already connected, closing old connection."),
            CloseReason::Shutdown => debug!("Closing client {who}: broker stopping."),
        }
        let will = conn.will.take();
        let phase = conn.phase;
        let serial = conn.serial;
        let v5 = conn.v5.take();
        if let (ProtocolLevel::V5, Phase::Connected { .. }) = (conn.level, phase) {
            // 4.13.2 / 3.14: a 5.0 client is told why the server closes, before the close.
            if let Some(code) = reason.v5_disconnect() {
                encode_packet(&Packet::Disconnect(Disconnect::new(code)), ProtocolLevel::V5, conn.out.tail());
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(token);
                }
            }
        }
        let Some(conn) = self.conns.get_mut(token) else { return };
        let ws_close = if conn.websocket { reason.ws_close_code() } else { None };
        // The transport adds the close frame, so it counts as an answer owed.
        if reason.lingers() && (!conn.out.is_empty() || ws_close.is_some()) {
            conn.linger_until = Some(now + LINGER);
        }
        let waiting_on = conn.waiting_on.take();
        let waiters = conn.congestion.as_mut().map(|c| std::mem::take(&mut c.waiters)).unwrap_or_default();
        if phase == Phase::AwaitConnect {
            self.leave_pending();
        }
        if let Some(s) = waiting_on {
            self.forget_waiter(s, token);
        }
        self.wake(waiters);
        let mut will = will.filter(|_| reason.publishes_will());
        if let Some(w) = will.as_mut().filter(|_| v5.as_ref().is_some_and(|v| v.will_expiry.is_some())) {
            // The will's Message Expiry Interval runs from its publication.
            w.v5 = v5::MessageV5::starting(w.v5.as_deref(), v5.as_ref().and_then(|v| v.will_expiry), now);
        }
        let will_delay = v5.as_ref().map_or(0, |v| v.will_delay);
        if let Phase::Connected { session } = phase {
            let expiry = match &v5 {
                Some(v) => self.session_expiry(v.session_expiry),
                None => self.limits.persistent_client_expiration,
            };
            if let Some(s) = self.sessions.get_mut(session) {
                if s.connection == Some(token) {
                    s.connection = None;
                    if s.clean {
                        self.destroy_session(session);
                    } else {
                        if let Some(after) = expiry {
                            let at = now + after;
                            s.expires_at = Some(at);
                            self.session_timers.push(Reverse((at, session, s.serial)));
                        }
                        if let Some(w) = will.take_if(|_| will_delay > 0) {
                            // 3.1.3.2.2: held until the delay passes or the session ends.
                            let at = now + Duration::from_secs(u64::from(will_delay));
                            s.delayed_will = Some(Box::new((w, at)));
                            self.session_timers.push(Reverse((at, session, s.serial)));
                        }
                    }
                }
            }
        }
        if let Some(will) = will {
            self.publish_will(&will);
        }
        self.closed.push(Closed { token, serial, ws_close });
        self.rearm(token);
    }
}
