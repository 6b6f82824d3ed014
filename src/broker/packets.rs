//! MQTT semantics for each packet a client sends: CONNECT and sessions, PUBLISH routing and
//! delivery, acknowledgements, subscriptions.

use std::rc::Rc;
use std::time::Instant;

use log::{info, warn};

use super::{warned, CloseReason, Core, ProtocolError};
use crate::auth::acl::Access;
use crate::auth::security::Credentials;
use crate::connection::{keep_alive_grace, Connection, LastPublish, Phase};
use crate::mqtt::{
    encode_packet, Ack, Connack, Connect, ConnectReturnCode, Packet, ProtocolLevel, Publish, QoS, ReasonCode,
};
use crate::router::{subscriber, Message, Subscriber};
use crate::session::{InflightState, Outgoing, Session};

use super::v5::{AuthMethod, ConnV5, MessageV5};

/// `$SYS/...`: the broker's own topics, which no client may publish to (mosquitto refuses it
/// whatever the ACL says). O(1).
fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// Levels of a topic name or filter. O(length).
fn topic_levels(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

impl Core {
    /// Encode a control packet for `token` and schedule a flush.
    pub(super) fn send(&mut self, token: usize, packet: &Packet<'_>) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let level = conn.level;
        match conn.v5.as_deref_mut().filter(|v| v.maximum_packet_size != usize::MAX) {
            None => encode_packet(packet, level, conn.out.tail()),
            Some(v5) => {
                // 3.1.2-24: a packet over the client's Maximum Packet Size is dropped, as if
                // sent (counted with the PUBLISHes dropped for it).
                let scratch = &mut self.scratch;
                scratch.clear();
                encode_packet(packet, level, scratch);
                if scratch.len() > v5.maximum_packet_size {
                    v5.dropped_too_large += 1;
                    log::debug!(
                        "Client {}: {} bytes over its Maximum Packet Size, not sent",
                        conn.label(),
                        scratch.len()
                    );
                    return;
                }
                conn.out.tail().extend_from_slice(scratch);
            }
        }
        self.mark_dirty(token);
        self.after_output(token);
    }

    /// Whether `topic` is within `max_topic_levels` and `max_topic_length`. O(length).
    pub(super) fn topic_within_limits(&self, topic: &str) -> bool {
        topic.len() <= self.limits.max_topic_length && topic_levels(topic) <= self.limits.max_topic_levels
    }

    fn topic_too_long(topic: &str) -> CloseReason {
        CloseReason::Protocol(ProtocolError::TopicTooLong { levels: topic_levels(topic), bytes: topic.len() })
    }

    /// Log a limit the client hit, once per connection (`mark` 0: not logged here, because it
    /// is logged once globally).
    pub(super) fn warn_once(&mut self, token: usize, mark: u8, what: std::fmt::Arguments<'_>) {
        let Some(conn) = self.conns.get_mut(token).filter(|_| mark != 0) else { return };
        if conn.warned & mark == 0 {
            conn.warned |= mark;
            warn!("Client {}: {what}", conn.label());
        }
    }

    /// Act on one complete packet from `token` (which counts for its keep alive).
    #[inline]
    pub(super) fn handle_packet(&mut self, token: usize, packet: Packet<'_>, now: Instant) -> Result<(), CloseReason> {
        let phase = self.conns.get_mut(token).map(|c| {
            c.touch(now);
            c.phase
        });
        let session = match phase {
            None => return Ok(()),
            Some(Phase::AwaitConnect) => {
                return match packet {
                    Packet::Connect(c) => self.on_connect(token, *c, now),
                    _ => Err(CloseReason::Protocol(ProtocolError::FirstPacketNotConnect)),
                };
            }
            Some(Phase::Connected { session }) => session,
        };
        let server_only = |name| Err(CloseReason::Protocol(ProtocolError::ServerOnlyPacket(name)));
        match packet {
            Packet::Publish(p) => self.on_publish(token, session, p),
            Packet::Puback(Ack { packet_id, .. }) => {
                if let Some(s) = self.sessions.get_mut(session) {
                    if s.puback(packet_id) {
                        self.fill_window(session);
                    }
                }
                Ok(())
            }
            Packet::Pubrec(Ack { packet_id, reason, .. }) if reason.is_error() => {
                // 5.0, 4.3.3: a refusing PUBREC ends the delivery; no PUBREL.
                if self.sessions.get_mut(session).is_some_and(|s| s.pubrec_refused(packet_id)) {
                    self.fill_window(session);
                }
                Ok(())
            }
            Packet::Pubrec(Ack { packet_id, .. }) => {
                if self.sessions.get_mut(session).is_some_and(|s| s.pubrec(packet_id)) {
                    self.send(token, &Packet::Pubrel(Ack::new(packet_id)));
                }
                Ok(())
            }
            Packet::Pubrel(Ack { packet_id, .. }) => {
                let known = self.sessions.get_mut(session).is_some_and(|s| {
                    let known = s.inbound_qos2.contains(packet_id);
                    s.release_qos2(packet_id);
                    known
                });
                // 4.3.3: PUBCOMP answers every PUBREL, known id or not; 5.0 says which
                // (0x92, 3.7.2.1; 3.1.1 encodes only the id).
                let reason = if known { ReasonCode::SUCCESS } else { ReasonCode::PACKET_IDENTIFIER_NOT_FOUND };
                self.send(token, &Packet::Pubcomp(Ack { reason, ..Ack::new(packet_id) }));
                Ok(())
            }
            Packet::Pubcomp(Ack { packet_id, .. }) => {
                if self.sessions.get_mut(session).is_some_and(|s| s.pubcomp(packet_id)) {
                    self.fill_window(session);
                }
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(token, session, s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(token, session, u);
                Ok(())
            }
            Packet::Pingreq => {
                self.send(token, &Packet::Pingresp);
                Ok(())
            }
            Packet::Disconnect(d) => Err(self.on_disconnect(token, session, &d)),
            // Only a 5.0 session decodes AUTH, and midge has no authentication method, so no
            // CONNECT it accepted named one: 4.12.0-1 makes AUTH a Protocol Error then.
            Packet::Auth(_) => Err(CloseReason::Protocol(ProtocolError::UnexpectedAuth)),
            Packet::Connect(_) => Err(CloseReason::Protocol(ProtocolError::SecondConnect)),
            Packet::Connack(_) => server_only("CONNACK"),
            Packet::Suback(_) => server_only("SUBACK"),
            Packet::Unsuback(_) => server_only("UNSUBACK"),
            Packet::Pingresp => server_only("PINGRESP"),
        }
    }

    /// Answer CONNECT with a refusal (a 3.1.1 client gets the nearest return code) and close.
    fn refuse_connect(&mut self, token: usize, code: impl Into<ReasonCode>) -> Result<(), CloseReason> {
        let code = code.into();
        self.send(token, &Packet::Connack(Box::new(Connack::new(false, code))));
        Err(CloseReason::ConnectRefused(code))
    }

    #[inline(never)]
    fn on_connect(&mut self, token: usize, c: Connect<'_>, now: Instant) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get_mut(token) else { return Ok(()) };
        conn.level = c.level;
        let v5 = c.level == ProtocolLevel::V5;
        if let Some(method) = c.properties.authentication_method {
            // 4.12: no enhanced authentication method is implemented yet (see `AuthMethod`).
            if AuthMethod::from_name(method).is_none() {
                info!("Client {:?} asked for authentication method {method:?}: not supported.", c.client_id);
                return self.refuse_connect(token, ReasonCode::BAD_AUTHENTICATION_METHOD);
            }
        }
        let listener = conn.listener;
        let identity = conn.identity.take();
        let Some(security) = self.security_of(listener) else { return Ok(()) };
        let username = match security.check(c.username, c.password, identity.as_deref()) {
            Credentials::Accepted { username } => username,
            refused => {
                let code = match refused {
                    Credentials::BadUsernameOrPassword => ConnectReturnCode::BadUsernameOrPassword,
                    _ => ConnectReturnCode::NotAuthorized,
                };
                if let Some(conn) = self.conns.get(token) {
                    let who = c.username.map(|u| format!(" as user {u:?}")).unwrap_or_default();
                    info!(
                        "Client {:?} from {}{who} not authorised (CONNACK {}).",
                        c.client_id,
                        conn.peer_label(),
                        code as u8
                    );
                }
                return self.refuse_connect(token, code);
            }
        };
        if self.memory_full() {
            self.stats.refused_memory += 1;
            return self.refuse_connect(token, ConnectReturnCode::ServerUnavailable);
        }
        if let Some(w) = &c.will {
            if !self.topic_within_limits(w.topic) {
                return Err(Self::topic_too_long(w.topic));
            }
        }
        let assigned = c.client_id.is_empty();
        let client_id: Rc<str> = if assigned {
            // 5.0 (3.1.3-6) assigns an id whatever Clean Start says.
            if !c.clean_session && !v5 {
                // 3.1.3-8: a zero-length id needs a clean session.
                return self.refuse_connect(token, ConnectReturnCode::IdentifierRejected);
            }
            self.generate_client_id()
        } else {
            c.client_id.into()
        };
        let acl = security.client_acl(username.clone(), Rc::clone(&client_id));
        if let (Some(w), Some(acl)) = (&c.will, &acl) {
            // mosquitto 2 refuses the connection whose will it would not let the client publish.
            if !acl.allows(w.topic, Access::Write) || is_sys_topic(w.topic) {
                info!("Client {client_id} not authorised to publish its will to {:?}.", w.topic);
                return self.refuse_connect(token, ConnectReturnCode::NotAuthorized);
            }
        }
        if c.will.as_ref().is_some_and(|w| is_sys_topic(w.topic)) {
            return self.refuse_connect(token, ConnectReturnCode::NotAuthorized);
        }

        // Take over: 3.1.4-2, the existing connection with this id is closed.
        if let Some(&old) = self.client_ids.get(&client_id) {
            if let Some(old_token) = self.sessions.get(old).and_then(|s| s.connection) {
                self.close(old_token, CloseReason::TakenOver);
            }
        }
        let existing = self.client_ids.get(&client_id).copied();
        if let Some(s) = existing.and_then(|s| self.sessions.get_mut(s)) {
            // 3.1.3-9: a new connection to the session before the Will Delay: no will.
            s.delayed_will = None;
        }
        // 3.1.1's Clean Session both discards the old session and ends the new one with the
        // connection; 5.0 splits it into Clean Start and Session Expiry Interval 0 (3.1.2.4).
        let ends_with_connection = if v5 { c.properties.session_expiry_interval == 0 } else { c.clean_session };
        let (session, present) = match existing {
            Some(s) if c.clean_session => {
                self.destroy_session(s);
                (self.create_session(client_id.clone(), ends_with_connection), false)
            }
            Some(s) => (s, true),
            None => (self.create_session(client_id.clone(), ends_with_connection), false),
        };
        if let Some(s) = self.sessions.get_mut(session) {
            s.connection = Some(token);
            s.clean = ends_with_connection;
            s.expires_at = None;
            if acl.is_some() || s.acl.is_some() {
                s.acl = acl.map(Box::new);
                // Routes cached by publishers were filtered with the old rights.
                self.router.invalidate_routes();
            }
        }
        let will = c.will.as_ref().map(|w| Message {
            topic: w.topic.into(),
            payload: w.payload.into(),
            qos: w.qos,
            retain: w.retain,
            v5: if v5 { MessageV5::of_will(&w.properties) } else { None },
        });
        self.leave_pending();
        let Some(conn) = self.conns.get_mut(token) else { return Ok(()) };
        conn.phase = Phase::Connected { session };
        conn.client_id = Some(Rc::clone(&client_id));
        conn.identity = username;
        // 5.0: a keep alive over max_keepalive (or none, when there is a maximum) is replaced
        // by it, and CONNACK says so (3.2.2.3.14); 3.1.1 has no way to say it (mosquitto too
        // applies max_keepalive to 5.0 clients only).
        let max_keepalive = self.limits.max_keepalive;
        let server_keep_alive =
            (v5 && max_keepalive != u16::MAX && (c.keep_alive == 0 || c.keep_alive > max_keepalive))
                .then_some(max_keepalive);
        let keep_alive = server_keep_alive.unwrap_or(c.keep_alive);
        conn.keep_alive = keep_alive;
        conn.will = will;
        conn.last_received = now;
        if v5 {
            conn.v5 = Some(Box::new(ConnV5::new(&c.properties, c.will.as_ref().map(|w| &w.properties))));
        }
        let timer_at = conn.timer_at;
        info!(
            "New client connected from {} as {} (p{}, c{}, k{}{}{}).",
            conn.peer_label(),
            client_id,
            c.level as u8,
            u8::from(c.clean_session),
            keep_alive,
            conn.identity.as_ref().map(|u| format!(", u'{u}'")).unwrap_or_default(),
            if conn.is_websocket() { ", websocket" } else { "" }
        );
        // The connect-timeout entry re-arms itself to the keep-alive deadline when it fires;
        // a keep alive shorter than that needs an earlier entry now.
        let keep_alive_at = now + keep_alive_grace(keep_alive);
        if keep_alive != 0 && timer_at.is_none_or(|at| keep_alive_at < at) {
            self.arm_timer(token, keep_alive_at);
        }
        let mut connack = Connack::new(present, ConnectReturnCode::Accepted);
        if v5 {
            let asked = c.properties.session_expiry_interval;
            // 3.2.2.3.2: say so when the expiry used differs from the one asked for.
            let used = match self.session_expiry(asked) {
                _ if asked == 0 => 0,
                None => u32::MAX,
                Some(d) => u32::try_from(d.as_secs()).unwrap_or(u32::MAX - 1),
            };
            let assigned_id = assigned.then_some(&*client_id);
            connack.properties = self.connack_properties(assigned_id, (used != asked).then_some(used));
            connack.properties.server_keep_alive = server_keep_alive;
        }
        self.send(token, &Packet::Connack(Box::new(connack)));
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
        self.next_serial += 1;
        let mut session = Session::new(Rc::clone(&client_id), clean);
        session.serial = self.next_serial;
        let slot = self.sessions.insert(session);
        self.client_ids.insert(client_id, slot);
        slot
    }

    pub(super) fn destroy_session(&mut self, slot: usize) {
        let Some(session) = self.sessions.remove(slot) else { return };
        for (filter, _) in session.subscriptions.iter() {
            self.unsubscribe_filter(filter, slot);
        }
        if self.client_ids.get(&session.client_id) == Some(&slot) {
            self.client_ids.remove(&session.client_id);
        }
        if let Some(will) = session.delayed_will {
            // 3.1.3.2.2: the session ended before the Will Delay Interval did.
            self.publish_will(&will.0);
        }
    }

    /// A client came back to a stored session: resend what was in flight (4.4), with DUP on
    /// PUBLISH, then whatever waited in the queue.
    fn resume_session(&mut self, token: usize, slot: usize) {
        let now = self.now;
        let (Some(session), Some(conn)) = (self.sessions.get_mut(slot), self.conns.get_mut(token)) else { return };
        for f in session.inflight.in_send_order() {
            match (&f.out, f.state) {
                (Some(out), InflightState::AwaitPuback | InflightState::AwaitPubrec) => {
                    conn.write_publish(out, Some(f.packet_id), true, now);
                }
                _ => {
                    let level = conn.level;
                    encode_packet(&Packet::Pubrel(Ack::new(f.packet_id)), level, conn.out.tail());
                }
            }
        }
        self.mark_dirty(token);
        self.after_output(token);
        self.fill_window(slot);
    }

    fn on_publish(&mut self, token: usize, session: usize, p: Publish<'_>) -> Result<(), CloseReason> {
        let v5 = self.conns.get(token).is_some_and(|c| c.v5.is_some());
        let aliased;
        let p = match self.v5_inbound_if(v5, token, session, &p)? {
            Some(topic) => {
                aliased = topic;
                Publish { topic: &aliased, ..p }
            }
            None => p,
        };
        if self.limits.message_size_limit != 0 && p.payload.len() > self.limits.message_size_limit {
            // mosquitto's behaviour: acknowledged (3.1.1 has no way to refuse it) and dropped.
            self.stats.dropped_oversize += 1;
            let (len, limit) = (p.payload.len(), self.limits.message_size_limit);
            self.warn_once(
                token,
                warned::MESSAGE_SIZE,
                format_args!("dropped PUBLISH of {len} bytes over message_size_limit ({limit})."),
            );
            self.ack_publish(token, &p);
            return Ok(());
        }
        if self.memory_full() {
            self.stats.dropped_memory += 1;
            if p.qos == QoS::AtMostOnce {
                return Ok(());
            }
            // Not acknowledged, so the client keeps it and resends it after reconnecting.
            return Err(CloseReason::MemoryLimit);
        }
        if let (QoS::ExactlyOnce, Some(id)) = (p.qos, p.packet_id) {
            let first = self.sessions.get_mut(session).is_some_and(|s| s.receive_qos2(id));
            if !first {
                // Duplicate of a message already delivered (4.3.3): acknowledge, do not deliver.
                // (At 5.0 too: the first PUBREC said what there was to say.)
                self.send(token, &Packet::Pubrec(Ack::new(id)));
                return Ok(());
            }
        }
        // Same topic as this client's last PUBLISH (the usual case: a sensor repeats its
        // topic): reuse its topic string, which passed the limits check then, and, if
        // subscriptions have not changed since, its subscriber list.
        let generation = self.router.generation();
        let mut write_allowed = None;
        let cached = match self.conns.get_mut(token).and_then(|c| c.last_publish.as_deref_mut()) {
            Some(last) if *last.topic == *p.topic => {
                let list = std::mem::take(&mut last.matches);
                let topic = Rc::clone(&last.topic);
                let fresh = last.generation == generation;
                if fresh {
                    write_allowed = Some(last.write_allowed);
                }
                Some((topic, if fresh { Ok(list) } else { Err(list) }))
            }
            _ => None,
        };
        if cached.is_none() && !self.topic_within_limits(p.topic) {
            // The connection closes, so the cache entry need not be put back.
            return Err(Self::topic_too_long(p.topic));
        }
        // Ok: the cached list is current; Err: a stale list whose allocation is reused.
        let (topic, cached) = match cached {
            Some(c) => c,
            None => {
                let spare = self
                    .conns
                    .get_mut(token)
                    .and_then(|c| c.last_publish.as_deref_mut())
                    .map(|last| std::mem::take(&mut last.matches))
                    .unwrap_or_default();
                (Rc::from(p.topic), Err(spare))
            }
        };
        let write_allowed = match write_allowed {
            Some(known) => known,
            None => self.may_publish(session, &topic),
        };
        if !write_allowed {
            // Dropped silently, as MQTT 3.1.1 has no refusal (mosquitto acknowledges it too);
            // the decision is cached with the topic.
            let spare = match cached {
                Ok(list) | Err(list) => list,
            };
            self.remember_route(token, topic, generation, spare, false);
            if v5 {
                // 5.0 can refuse it: 0x87, which ends a QoS 2 exchange (4.3.3), so its id is
                // free again.
                if let (QoS::ExactlyOnce, Some(id), Some(s)) = (p.qos, p.packet_id, self.sessions.get_mut(session)) {
                    s.release_qos2(id);
                }
                self.ack_publish_with(token, &p, ReasonCode::NOT_AUTHORIZED);
            } else {
                self.ack_publish(token, &p);
            }
            return Ok(());
        }
        let v5_part =
            if v5 && !p.properties.is_empty() { MessageV5::of_publish(&p.properties, self.now) } else { None };
        let msg = Message { topic, payload: p.payload.into(), qos: p.qos, retain: p.retain, v5: v5_part };
        if p.retain {
            self.retained.update(&msg);
        }
        let matches = match cached {
            Ok(matches) => matches,
            Err(spare) => {
                let mut fresh = self.subscribers_of(&msg.topic, spare);
                // 3.8.3-3: No Local. The cached route is this connection's (one session), so
                // filtering it once is right for every later hit.
                if fresh.iter().any(|s| s.flags & subscriber::NO_LOCAL != 0) {
                    fresh.retain(|s| s.session != session || s.flags & subscriber::NO_LOCAL == 0);
                }
                fresh
            }
        };
        self.deliver_to(&msg, &matches);
        // 5.0 acks say when nobody got it (mosquitto does too); 3.1.1 encodes only the id.
        let reason = if matches.is_empty() { ReasonCode::NO_MATCHING_SUBSCRIBERS } else { ReasonCode::SUCCESS };
        self.remember_route(token, Rc::clone(&msg.topic), generation, matches, true);
        self.ack_publish_with(token, &p, reason);
        Ok(())
    }

    /// `v5_inbound` for a 5.0 connection; nothing to do below 5.0.
    #[inline]
    fn v5_inbound_if(
        &mut self,
        v5: bool,
        token: usize,
        session: usize,
        p: &Publish<'_>,
    ) -> Result<Option<Rc<str>>, CloseReason> {
        // Without properties only a QoS 2 PUBLISH has something to check.
        if v5 && (!p.properties.is_empty() || p.qos == QoS::ExactlyOnce) {
            self.v5_inbound(token, session, p)
        } else {
            Ok(None)
        }
    }

    /// Keep `topic`'s route (and write decision) as the publisher's cache entry. O(1).
    fn remember_route(
        &mut self,
        token: usize,
        topic: Rc<str>,
        generation: u64,
        mut matches: Vec<Subscriber>,
        write_allowed: bool,
    ) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        if !write_allowed {
            matches.clear();
        }
        match conn.last_publish.as_deref_mut() {
            Some(last) => {
                last.topic = topic;
                last.generation = generation;
                last.matches = matches;
                last.write_allowed = write_allowed;
            }
            None => conn.last_publish = Some(Box::new(LastPublish { topic, generation, matches, write_allowed })),
        }
    }

    /// Whether the client of `session` may publish to `topic`: never to `$SYS`, and where an
    /// ACL file applies, only what it grants. O(ACL rules of the client x levels).
    fn may_publish(&self, session: usize, topic: &str) -> bool {
        if is_sys_topic(topic) {
            return false;
        }
        let acl = self.sessions.get(session).and_then(|s| s.acl.as_deref());
        acl.is_none_or(|acl| acl.allows(topic, Access::Write))
    }

    /// Whether the client of `session` may receive a message on `topic` (ACL read access).
    /// O(ACL rules of the client x levels); O(1) without an ACL file.
    pub(super) fn may_read(&self, session: usize, topic: &str) -> bool {
        let acl = self.sessions.get(session).and_then(|s| s.acl.as_deref());
        acl.is_none_or(|acl| acl.allows(topic, Access::Read))
    }

    fn ack_publish(&mut self, token: usize, p: &Publish<'_>) {
        self.ack_publish_with(token, p, ReasonCode::SUCCESS);
    }

    /// PUBACK / PUBREC with `reason` (on the wire at 5.0 only).
    fn ack_publish_with(&mut self, token: usize, p: &Publish<'_>, reason: ReasonCode) {
        let ack = |packet_id| Ack { reason, ..Ack::new(packet_id) };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(packet_id)) => self.send(token, &Packet::Puback(ack(packet_id))),
            (QoS::ExactlyOnce, Some(packet_id)) => self.send(token, &Packet::Pubrec(ack(packet_id))),
            _ => {}
        }
    }

    /// Deliver `msg` to every matching subscription, once per session at the highest granted QoS
    /// of its matching filters (3.3.5: we choose one delivery, at the maximum QoS).
    pub(super) fn route(&mut self, msg: &Message) {
        let matches = std::mem::take(&mut self.matches);
        let matches = self.subscribers_of(&msg.topic, matches);
        self.deliver_to(msg, &matches);
        self.matches = matches;
    }

    /// The sessions subscribed to `topic`, one entry each at its highest granted QoS, in `out`
    /// (cleared first; passed in so its allocation can be reused).
    fn subscribers_of(&mut self, topic: &str, mut out: Vec<Subscriber>) -> Vec<Subscriber> {
        out.clear();
        self.router.matches(topic, &mut out);
        if out.len() > 1 {
            self.merge_overlapping(&mut out);
        }
        if self.acl_active {
            // A wildcard subscription never leaks a topic its client may not read. Paid once
            // per route: publishers cache the filtered list until subscriptions or rights change.
            // (Shared groups are checked per member, at delivery.)
            out.retain(|s| s.flags & subscriber::SHARED != 0 || self.may_read(s.session, topic));
        }
        out
    }

    // Always inlined: out of line it cost ~4% of a small fan-in message (callgrind, benches/ir).
    #[inline(always)]
    fn deliver_to(&mut self, msg: &Message, subscribers: &[Subscriber]) {
        for sub in subscribers {
            let picked;
            let sub = if sub.flags & subscriber::SHARED == 0 {
                sub
            } else {
                // One member of the group gets it (4.8.2).
                let Some(member) = self.pick_shared(sub, &msg.topic) else { continue };
                picked = member;
                &picked
            };
            let qos = msg.qos.min(sub.qos);
            // 3.3.1-12/13: RETAIN is kept only for Retain As Published subscriptions.
            let retain = msg.retain && sub.flags & subscriber::RETAIN_AS_PUBLISHED != 0;
            self.deliver(sub.session, Outgoing { msg: msg.clone(), qos, retain, sub_id: sub.id });
        }
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
            if sub.flags & subscriber::SHARED != 0 {
                // A group, not a session: never merged (its member may also hold its own
                // subscription, and gets both, as 4.8.2 has it).
                if let Some(slot) = matches.get_mut(kept) {
                    *slot = sub;
                }
                kept += 1;
                continue;
            }
            let Some(mark) = self.marks.get_mut(sub.session) else { continue };
            let first = matches.get(mark.1).filter(|_| mark.0 == epoch).copied();
            // 5.0: two different Subscription Identifiers stay two deliveries (3.3.4-2 allows
            // one per subscription), each with its own identifier.
            if first.is_some_and(|f| f.id == 0 || sub.id == 0 || f.id == sub.id) {
                if let Some(first) = matches.get_mut(mark.1) {
                    first.qos = first.qos.max(sub.qos);
                    first.id = first.id.max(sub.id);
                    // Not local only if every matching subscription says so; retain as
                    // published if any does.
                    let no_local = first.flags & sub.flags & subscriber::NO_LOCAL;
                    first.flags = (first.flags | sub.flags) & !subscriber::NO_LOCAL | no_local;
                }
            } else if first.is_some() {
                if let Some(slot) = matches.get_mut(kept) {
                    *slot = sub;
                }
                kept += 1;
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

    /// Send or queue one message for a session. O(1): one session and one connection lookup
    /// on the usual path; flow control only looks further when the output is over its
    /// high watermark.
    pub(super) fn deliver(&mut self, slot: usize, out: Outgoing) {
        let now = self.now;
        let Some(session) = self.sessions.get_mut(slot) else { return };
        let Some(token) = session.connection else {
            // Offline: QoS 0 is not kept for offline clients (as mosquitto's default); QoS 1/2
            // wait in the bounded queue.
            if out.qos != QoS::AtMostOnce {
                self.enqueue(slot, out);
            }
            return;
        };
        let Some(conn) = self.conns.get_mut(token).filter(|c| !c.closing) else { return };
        if !conn.may_send(&out, now) {
            return;
        }
        let high = self.limits.high_watermark;
        if out.qos == QoS::AtMostOnce {
            let pending = conn.out.len();
            if pending > high && (pending > self.limits.hard_output_cap || conn.is_slow()) {
                self.count_qos0_drop(token);
                return;
            }
            conn.write_publish(&out, None, false, now);
        } else if session.queue.is_empty() && session.inflight.len() < conn.send_window(self.limits.max_inflight) {
            send_inflight(session, conn, out, now);
        } else {
            self.enqueue(slot, out);
            return;
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(token);
        }
        if conn.out.len() > high {
            self.after_output(token);
        }
    }

    /// Queue a QoS 1/2 message for a session (offline, or its window is full), within
    /// `max_queued_messages`, `max_queued_bytes` and `memory_limit`.
    fn enqueue(&mut self, slot: usize, out: Outgoing) {
        let full = self.memory_full();
        let (max, max_bytes) = (self.limits.max_queued, self.limits.max_queued_bytes);
        let Some(session) = self.sessions.get_mut(slot) else { return };
        if full {
            session.dropped += 1;
            self.stats.dropped_memory += 1;
            return;
        }
        if session.enqueue(out, max, max_bytes).is_err() {
            self.stats.dropped_queue_full += 1;
            if session.dropped == 1 {
                warn!("Outgoing messages are being dropped for client {}.", session.client_id);
            }
        }
    }

    /// Move queued messages into free in-flight slots, in order (4.6).
    fn fill_window(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else { return };
        let Some(token) = session.connection else { return };
        let Some(conn) = self.conns.get_mut(token) else { return };
        let now = self.now;
        let window = conn.send_window(self.limits.max_inflight);
        let mut wrote = false;
        while session.inflight.len() < window {
            let Some(out) = session.dequeue() else { break };
            // 3.3.2-5: a message that expired while queued is not sent.
            if conn.may_send(&out, now) {
                send_inflight(session, conn, out, now);
                wrote = true;
            }
        }
        if wrote {
            self.mark_dirty(token);
            self.after_output(token);
        }
    }
}

/// Start a QoS 1/2 delivery on a connected session: allocate its packet id and encode it.
fn send_inflight(session: &mut Session, conn: &mut Connection, out: Outgoing, now: Instant) {
    let inflight = session.start_inflight(out);
    if let Some(out) = &inflight.out {
        conn.write_publish(out, Some(inflight.packet_id), false, now);
    }
}
