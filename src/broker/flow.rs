//! Output flow control: every connection's unsent bytes are accounted (its output queue's
//! length), and above the high watermark
//! - the connection's own input is not read (it cannot make us produce more for it);
//! - the publisher whose message put it there is paused too (not read: TCP flow control slows
//!   it down), so when the broker is the bottleneck it slows publishers instead of dropping
//!   messages to subscribers that read as fast as they can;
//! - unless the connection is a slow consumer (above the watermark for `SLOW_GRACE` while
//!   publishers wait on it): then QoS 0 to it is dropped and it pauses nobody.
//!
//! Everything resumes below the low watermark. Output that makes no progress for
//! `send_timeout` closes the connection. The hot-path cost is one comparison per output.

use std::time::Instant;

use log::warn;

use super::{warned, Core, SLOW_PENALTY};

impl Core {
    /// Output was queued for `token`: pause what must pause if it is now above the high
    /// watermark. O(1).
    pub(super) fn after_output(&mut self, token: usize) {
        let high = self.limits.high_watermark;
        let Some(conn) = self.conns.get_mut(token) else { return };
        if conn.out.len() <= high {
            return;
        }
        let now = self.now;
        conn.over_high = true;
        let slow = conn.is_slow();
        let c = conn.congestion_mut();
        let first = c.above_high_since.is_none();
        if first {
            c.above_high_since = Some(now);
        }
        let publisher = self.current.filter(|&p| p != token && !slow);
        if let Some(p) = publisher {
            if let Some(pc) = self.conns.get_mut(p).filter(|pc| pc.waiting_on.is_none() && !pc.closing) {
                pc.waiting_on = Some(token);
                if let Some(c) = self.conns.get_mut(token).and_then(|c| c.congestion.as_mut()) {
                    c.waiters.push(p);
                }
            }
        }
        if first || publisher.is_some() {
            self.rearm(token);
        }
    }

    /// The event loop wrote `written` bytes of `token`'s output (`output`, then a write). Tracks
    /// stalls for `send_timeout` and resumes what waited once below the low watermark. O(1)
    /// plus the publishers woken.
    pub fn wrote(&mut self, token: usize, written: usize, now: Instant) {
        self.now = now;
        let low = self.limits.low_watermark;
        let Some(conn) = self.conns.get_mut(token) else { return };
        let pending = conn.out.len();
        if conn.congestion.is_none() && pending == 0 {
            return;
        }
        let was_over = conn.over_high;
        let c = conn.congestion_mut();
        if pending == 0 {
            c.stalled_since = None;
        } else if written > 0 || c.stalled_since.is_none() {
            c.stalled_since = Some(now);
        }
        let mut waiters = Vec::new();
        if pending <= low {
            c.above_high_since = None;
            waiters = std::mem::take(&mut c.waiters);
            if c.slow_since.is_some_and(|at| now.saturating_duration_since(at) >= SLOW_PENALTY) {
                c.slow_since = None;
            }
            conn.over_high = false;
        }
        if conn.congestion.as_ref().is_some_and(|c| c.is_idle()) {
            conn.congestion = None;
        }
        if was_over && conn.wants_input() {
            conn.resume_pending = true;
            self.resumed.push(token);
        }
        self.wake(waiters);
        self.rearm(token);
    }

    /// Let publishers that waited on a drained (or slow, or closed) connection read again.
    pub(super) fn wake(&mut self, waiters: Vec<usize>) {
        for w in waiters {
            let Some(conn) = self.conns.get_mut(w) else { continue };
            conn.waiting_on = None;
            if conn.wants_input() {
                conn.resume_pending = true;
                self.resumed.push(w);
            }
        }
    }

    /// `publisher` no longer waits on `subscriber` (it closed). O(waiters of `subscriber`).
    pub(super) fn forget_waiter(&mut self, subscriber: usize, publisher: usize) {
        if let Some(c) = self.conns.get_mut(subscriber).and_then(|c| c.congestion.as_mut()) {
            if let Some(pos) = c.waiters.iter().position(|&w| w == publisher) {
                c.waiters.swap_remove(pos);
            }
        }
    }

    /// A connection that has held publishers paused for `slow_grace` without draining below
    /// the low watermark is a slow consumer: from now on QoS 0 to it is dropped while it is
    /// above the high watermark, and the publishers it held go on.
    pub(super) fn check_slow(&mut self, token: usize, now: Instant) {
        let grace = self.timeouts.slow_grace;
        let Some(conn) = self.conns.get_mut(token) else { return };
        let Some(c) = conn.congestion.as_mut() else { return };
        let overdue = c.above_high_since.is_some_and(|at| at + grace <= now);
        if !overdue || c.slow_since.is_some() || c.waiters.is_empty() {
            return;
        }
        c.slow_since = Some(now);
        let waiters = std::mem::take(&mut c.waiters);
        if conn.warned & warned::SLOW == 0 {
            conn.warned |= warned::SLOW;
            warn!(
                "Client {} is a slow consumer ({} bytes unsent): dropping QoS 0 messages to it while it is behind.",
                conn.label(),
                conn.out.len()
            );
        }
        self.wake(waiters);
    }

    /// Count a QoS 0 delivery dropped to a slow or over-full consumer.
    pub(super) fn count_qos0_drop(&mut self, token: usize) {
        self.stats.dropped_qos0_slow += 1;
        if let Some(conn) = self.conns.get_mut(token) {
            conn.congestion_mut().dropped_qos0 += 1;
        }
    }
}
