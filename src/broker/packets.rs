//! MQTT semantics for each packet a client sends: CONNECT and sessions, PUBLISH routing and
//! delivery, acknowledgements, subscriptions.

use std::rc::Rc;
use std::time::Instant;

use log::{info, warn};

use super::{CloseReason, Core, ProtocolError, SLOW_CONSUMER_BYTES};
use crate::connection::{keep_alive_grace, Connection, LastPublish, Phase};
use crate::mqtt::{encode_packet, Connect, ConnectReturnCode, Packet, Publish, QoS, Subscribe, Unsubscribe};
use crate::router::{Message, Subscriber};
use crate::session::{Inflight, InflightState, Outgoing, Session};

impl Core {
    /// Encode a control packet for `token` and schedule a flush.
    pub(super) fn send(&mut self, token: usize, packet: &Packet<'_>) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let level = conn.level;
        let out = conn.mqtt_out();
        encode_packet(packet, level, out.tail());
        self.mark_dirty(token);
    }

    pub(super) fn handle_packet(&mut self, token: usize, packet: Packet<'_>, now: Instant) -> Result<(), CloseReason> {
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

    pub(super) fn destroy_session(&mut self, slot: usize) {
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
        // Same topic as this client's last PUBLISH: reuse its topic string and, if subscriptions
        // have not changed since, its subscriber list.
        let generation = self.router.generation();
        let (topic, cached) = match self.conns.get_mut(token).and_then(|c| c.last_publish.as_deref_mut()) {
            Some(last) => {
                let list = std::mem::take(&mut last.matches);
                if *last.topic != *p.topic {
                    (Rc::from(p.topic), Err(list))
                } else if last.generation != generation {
                    (Rc::clone(&last.topic), Err(list))
                } else {
                    (Rc::clone(&last.topic), Ok(list))
                }
            }
            None => (Rc::from(p.topic), Err(Vec::new())),
        };
        let msg = Message { topic, payload: p.payload.into(), qos: p.qos, retain: p.retain };
        if p.retain {
            self.retained.update(&msg);
        }
        // Ok: the cached list is current; Err: a stale list whose allocation is reused.
        let matches = match cached {
            Ok(matches) => matches,
            Err(spare) => self.subscribers_of(&msg.topic, spare),
        };
        self.deliver_to(&msg, &matches);
        if let Some(conn) = self.conns.get_mut(token) {
            let topic = Rc::clone(&msg.topic);
            match conn.last_publish.as_deref_mut() {
                Some(last) => {
                    last.topic = topic;
                    last.generation = generation;
                    last.matches = matches;
                }
                None => conn.last_publish = Some(Box::new(LastPublish { topic, generation, matches })),
            }
        }
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(packet_id)) => self.send(token, &Packet::Puback { packet_id }),
            (QoS::ExactlyOnce, Some(packet_id)) => self.send(token, &Packet::Pubrec { packet_id }),
            _ => {}
        }
        Ok(())
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
        out
    }

    fn deliver_to(&mut self, msg: &Message, subscribers: &[Subscriber]) {
        for sub in subscribers {
            let qos = msg.qos.min(sub.qos);
            self.deliver(sub.session, Outgoing { msg: msg.clone(), qos, retain: false });
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
}

/// Start a QoS 1/2 delivery on a connected session: allocate its packet id and encode it.
fn send_inflight(session: &mut Session, conn: &mut Connection, out: Outgoing) {
    let packet_id = session.start_inflight(out);
    if let Some(Inflight { out: Some(out), .. }) = session.inflight.back() {
        conn.write_publish(out, Some(packet_id), false);
    }
}
