//! Consistency checks of the core's state, for tests and fuzz targets: what each connection
//! holds stays within what the limits allow, and the cross-references (sessions, pauses,
//! counts, timers) agree. O(connections + sessions); never called by the event loop.

use super::Core;
use crate::connection::Phase;

/// Input a transport may hold beyond one packet: an HTTP head, plus what was read but not yet
/// decoded when its input was paused (at most one read chunk), plus frame header room.
pub const INPUT_SLACK: usize = 256 * 1024 + 8 * 1024;

impl Core {
    /// Input a connection's transport may hold (see `transport::Transport::held_input`).
    pub fn input_bound(&self) -> usize {
        self.limits.max_packet_size.saturating_add(INPUT_SLACK)
    }

    /// Output a connection has queued.
    pub fn buffered_output(&self, token: usize) -> Option<usize> {
        self.conns.get(token).map(|c| c.out.len())
    }

    /// The most output one connection may have queued: QoS 0 is dropped above the hard cap,
    /// control packets stop once it is above the high watermark (its input pauses), and
    /// beyond that come one packet per publisher that delivered before pausing, the in-flight
    /// window, and the retained messages of one SUBSCRIBE (which the queue limit bounds).
    pub fn output_bound(&self) -> usize {
        let packet = self.limits.max_packet_size + 16;
        let publishers = self.conns.len() + 1;
        self.limits
            .hard_output_cap
            .saturating_add(packet.saturating_mul(publishers))
            .saturating_add(packet.saturating_mul(self.limits.max_inflight))
            .saturating_add(packet.saturating_mul(self.limits.max_queued.min(1 << 16)))
    }

    /// Check every invariant; the first broken one is described in the error.
    pub fn check_invariants(&self) -> Result<(), String> {
        let output_bound = self.output_bound();
        let mut pending = 0;
        let mut per_listener = vec![0usize; self.listener_counts.len()];
        for (token, conn) in self.conns.iter() {
            let output = conn.out.len();
            if output > output_bound {
                return Err(format!("connection {token} has {output} bytes of output queued (bound {output_bound})"));
            }
            if let Some(c) = per_listener.get_mut(usize::from(conn.listener)) {
                *c += 1;
            }
            if conn.closing {
                continue;
            }
            match conn.phase {
                Phase::AwaitConnect => pending += 1,
                Phase::Connected { session } => {
                    let owner = self.sessions.get(session).and_then(|s| s.connection);
                    if owner != Some(token) {
                        return Err(format!("connection {token} is bound to session {session} owned by {owner:?}"));
                    }
                }
            }
            if let Some(s) = conn.waiting_on {
                let listed =
                    self.conns.get(s).and_then(|sc| sc.congestion.as_ref()).is_some_and(|c| c.waiters.contains(&token));
                if !listed {
                    return Err(format!("connection {token} waits on {s}, which does not list it"));
                }
            }
            if let Some(c) = &conn.congestion {
                for &w in &c.waiters {
                    if self.conns.get(w).and_then(|wc| wc.waiting_on) != Some(token) {
                        return Err(format!("connection {token} lists waiter {w}, which does not wait on it"));
                    }
                }
            }
            if let Some(deadline) = conn.deadline(&self.timeouts) {
                if conn.timer_at.is_none_or(|at| at > deadline) {
                    return Err(format!("connection {token}: deadline {deadline:?} but timer at {:?}", conn.timer_at));
                }
            }
        }
        if pending != self.pending_count {
            return Err(format!("{pending} connections await CONNECT but pending_count is {}", self.pending_count));
        }
        if per_listener != self.listener_counts {
            return Err(format!(
                "listener counts {:?}, connections per listener {per_listener:?}",
                self.listener_counts
            ));
        }
        for (slot, session) in self.sessions.iter() {
            if self.client_ids.get(&session.client_id) != Some(&slot) {
                return Err(format!("session {slot} ({}) is not in the client id map", session.client_id));
            }
            if let Some(token) = session.connection {
                let bound = self.conns.get(token).is_some_and(|c| c.phase == Phase::Connected { session: slot });
                if !bound {
                    return Err(format!("session {slot} names connection {token}, which is not bound to it"));
                }
            }
            if session.subscriptions.len() > self.limits.max_subscriptions && self.limits.max_subscriptions != 0 {
                return Err(format!("session {slot} holds {} subscriptions", session.subscriptions.len()));
            }
            if session.inflight.len() > self.limits.max_inflight {
                return Err(format!("session {slot} has {} messages in flight", session.inflight.len()));
            }
            if session.queue.len() > self.limits.max_queued {
                return Err(format!("session {slot} has {} messages queued", session.queue.len()));
            }
        }
        Ok(())
    }
}
