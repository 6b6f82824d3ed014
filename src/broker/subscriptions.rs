//! SUBSCRIBE and UNSUBSCRIBE: filters into the router and the session, 5.0 options (No Local,
//! Retain As Published, Retain Handling, Subscription Identifiers) and reason codes, and the
//! retained messages a new subscription gets.

use super::{shared, warned, CloseReason, Core, ProtocolError};
use crate::mqtt::{Packet, QoS, ReasonCode, RetainHandling, Suback, Subscribe, Unsuback, Unsubscribe};
use crate::router::{subscriber, Subscriber};
use crate::session::Outgoing;

impl Core {
    /// SUBSCRIBE: each filter within the limits is added (O(levels) in the trie, O(1) in the
    /// session's set); the others get 0x80. Retained messages follow the SUBACK.
    #[inline(never)]
    pub(super) fn on_subscribe(&mut self, token: usize, slot: usize, s: Subscribe<'_>) -> Result<(), CloseReason> {
        let memory_full = self.memory_full();
        let mut reason_codes = Vec::with_capacity(s.filters.len());
        let mut granted: Vec<(&str, QoS, u32)> = Vec::with_capacity(s.filters.len());
        // 3.8.2.1.2: one identifier for every filter of this SUBSCRIBE.
        let id = s.properties.subscription_identifier.unwrap_or(0);
        for (i, &(filter, options)) in s.filters.iter().enumerate() {
            let qos = options.qos;
            // (log mark, why, 5.0 reason; 3.1.1 encodes any failure as 0x80)
            let refusal = if i >= self.limits.max_subscribe_filters {
                Some((
                    warned::FILTERS,
                    "more filters in one SUBSCRIBE than max_subscribe_filters",
                    ReasonCode::UNSPECIFIED_ERROR,
                ))
            } else if !self.topic_within_limits(filter) {
                Some((
                    warned::TOPIC,
                    "topic filter over max_topic_levels or max_topic_length",
                    ReasonCode::TOPIC_FILTER_INVALID,
                ))
            } else if shared::parse(filter).is_some_and(|p| p.is_err()) {
                Some((0, "invalid shared subscription filter", ReasonCode::TOPIC_FILTER_INVALID))
            } else if memory_full {
                Some((0, "memory_limit reached", ReasonCode::UNSPECIFIED_ERROR))
            } else {
                let limit = self.limits.max_subscriptions;
                let at_limit = self.sessions.get(slot).is_some_and(|session| {
                    limit != 0 && session.subscriptions.len() >= limit && !session.subscriptions.contains(filter)
                });
                at_limit.then_some((warned::SUBSCRIPTIONS, "max_subscriptions reached", ReasonCode::QUOTA_EXCEEDED))
            };
            if let Some((mark, why, code)) = refusal {
                self.warn_once(token, mark, format_args!("subscription to {filter:?} refused: {why}."));
                reason_codes.push(code);
                continue;
            }
            let mut flags = 0;
            if options.no_local {
                flags |= subscriber::NO_LOCAL;
            }
            if options.retain_as_published {
                flags |= subscriber::RETAIN_AS_PUBLISHED;
            }
            let sub = Subscriber { session: slot, qos, flags, id };
            let shared = shared::parse(filter).and_then(Result::ok);
            match shared {
                Some(_) if options.no_local => {
                    // 3.8.3-4: No Local on a shared subscription is a protocol error.
                    return Err(CloseReason::Protocol(ProtocolError::NoLocalOnSharedSubscription));
                }
                Some((_, inner)) => self.join_shared(filter, inner, sub),
                None => {
                    self.router.subscribe(filter, sub);
                }
            }
            let new = self.sessions.get_mut(slot).is_some_and(|session| session.subscriptions.insert(filter, qos));
            reason_codes.push(ReasonCode::granted(qos));
            // 3.3.1-9/10/11: Retain Handling 0 sends retained messages, 1 only for a new
            // subscription, 2 never.
            let send_retained = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => new,
                RetainHandling::DoNotSend => false,
            };
            // 4.8.2: no retained messages on a shared subscription.
            if send_retained && shared.is_none() {
                granted.push((filter, qos, id));
            }
        }
        self.send(token, &Packet::Suback(Suback::new(s.packet_id, reason_codes)));
        // 3.3.1-6: retained messages matching a new subscription follow the SUBACK, retain set.
        let mut retained = Vec::new();
        for (filter, qos, sub_id) in granted {
            retained.clear();
            self.retained.matching(filter, &mut retained);
            if retained.iter().any(|m| m.v5.is_some()) {
                self.drop_expired_retained(&mut retained);
            }
            if self.acl_active {
                retained.retain(|m| self.may_read(slot, &m.topic));
            }
            for msg in retained.drain(..) {
                let qos = msg.qos.min(qos);
                self.deliver(slot, Outgoing { msg, qos, retain: true, sub_id });
            }
        }
        Ok(())
    }

    /// UNSUBSCRIBE: O(levels) per filter.
    #[inline(never)]
    pub(super) fn on_unsubscribe(&mut self, token: usize, slot: usize, u: Unsubscribe<'_>) {
        let v5 = self.conns.get(token).is_some_and(|c| c.v5.is_some());
        let mut ack = Unsuback::new(u.packet_id);
        for filter in &u.filters {
            let removed = self.sessions.get_mut(slot).is_some_and(|session| session.subscriptions.remove(filter));
            if removed {
                self.unsubscribe_filter(filter, slot);
            }
            if v5 {
                // 3.11.3: one code per filter; 0x11 No subscription existed.
                ack.reason_codes.push(if removed { ReasonCode::SUCCESS } else { ReasonCode::NO_SUBSCRIPTION_EXISTED });
            }
        }
        self.send(token, &Packet::Unsuback(ack));
    }

    /// Remove `session`'s subscription to `filter` from the router, or from its shared group.
    /// O(levels).
    pub(super) fn unsubscribe_filter(&mut self, filter: &str, session: usize) {
        if shared::parse(filter).is_some_and(|p| p.is_ok()) {
            self.leave_shared(filter, session);
        } else {
            self.router.unsubscribe(filter, session);
        }
    }
}
