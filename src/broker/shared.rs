//! Shared subscriptions `$share/{group}/{filter}` (MQTT 5.0 4.8.2, also offered to 3.1/3.1.1
//! clients as mosquitto and EMQX do): each message matching the filter goes to one member of
//! the group, round robin over the members, preferring connected ones; retained messages are
//! not sent on them.
//!
//! A group is one entry in the router under its filter, with the `SHARED` flag and a session
//! field that names the group (`router_id`), so the publisher's route cache holds groups, not
//! members: the member is chosen per message at delivery, and joining or leaving a group bumps
//! the router's generation like any subscription change.

use std::collections::HashMap;

use super::Core;
use crate::buffer::Slab;
use crate::mqtt::QoS;
use crate::router::{subscriber, Subscriber};

/// One group on one filter: its members (each with its own options) and whose turn is next.
#[derive(Debug)]
pub struct SharedGroup {
    /// The filter after `$share/{group}/`.
    filter: Box<str>,
    members: Vec<Subscriber>,
    next: usize,
}

/// Every shared group, by its full `$share/...` filter. O(1) to find one.
#[derive(Debug, Default)]
pub struct SharedGroups {
    groups: Slab<SharedGroup>,
    by_name: HashMap<Box<str>, usize>,
}

/// The router entry's "session" for group `slot`: counted down from the top, so it never
/// equals a session slot and the router's per-session replace/remove keeps them apart.
fn router_id(slot: usize) -> usize {
    usize::MAX - slot
}

fn group_slot(router_id: usize) -> usize {
    usize::MAX - router_id
}

/// A shared subscription filter split into (group, filter), or `None` if it is not one.
/// `Some(Err(()))`: it starts with `$share/` but is not valid (4.8.2: a non-empty group without
/// wildcards, then a filter). O(length).
pub fn parse(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, inner)) = rest.split_once('/') else { return Some(Err(())) };
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Some(Err(()));
    }
    Some(Ok((group, inner)))
}

impl Core {
    /// Add (or update) `member` in the group of the full shared filter `name`. O(levels +
    /// members of the group).
    pub(super) fn join_shared(&mut self, name: &str, inner: &str, member: Subscriber) {
        let slot = match self.shared.by_name.get(name) {
            Some(&slot) => slot,
            None => {
                let slot =
                    self.shared.groups.insert(SharedGroup { filter: inner.into(), members: Vec::new(), next: 0 });
                self.shared.by_name.insert(name.into(), slot);
                let entry =
                    Subscriber { session: router_id(slot), qos: QoS::ExactlyOnce, flags: subscriber::SHARED, id: 0 };
                self.router.subscribe(inner, entry);
                slot
            }
        };
        let Some(group) = self.shared.groups.get_mut(slot) else { return };
        match group.members.iter_mut().find(|m| m.session == member.session) {
            Some(m) => *m = member,
            None => group.members.push(member),
        }
        // Cached routes are unchanged (they name the group), but options may be new.
        self.router.invalidate_routes();
    }

    /// Remove `session` from the group `name`; the group goes when its last member does.
    /// O(levels + members).
    pub(super) fn leave_shared(&mut self, name: &str, session: usize) {
        let Some(&slot) = self.shared.by_name.get(name) else { return };
        let Some(group) = self.shared.groups.get_mut(slot) else { return };
        group.members.retain(|m| m.session != session);
        if group.members.is_empty() {
            let filter = std::mem::take(&mut group.filter);
            self.shared.groups.remove(slot);
            self.shared.by_name.remove(name);
            self.router.unsubscribe(&filter, router_id(slot));
        }
    }

    /// The member of the group behind router entry `entry` that gets the next message on
    /// `topic`: round robin, skipping members that are offline (if any is online) or may not
    /// read it. O(members) at worst, O(1) usually.
    pub(super) fn pick_shared(&mut self, entry: &Subscriber, topic: &str) -> Option<Subscriber> {
        let slot = group_slot(entry.session);
        let n = self.shared.groups.get(slot)?.members.len();
        let mut fallback = None;
        for step in 0..n {
            let group = self.shared.groups.get(slot)?;
            let i = (group.next + step) % n;
            let member = *group.members.get(i)?;
            if self.acl_active && !self.may_read(member.session, topic) {
                continue;
            }
            let online = self.sessions.get(member.session).is_some_and(|s| s.connection.is_some());
            if online {
                if let Some(group) = self.shared.groups.get_mut(slot) {
                    group.next = (i + 1) % n;
                }
                return Some(member);
            }
            fallback = fallback.or(Some((i, member)));
        }
        // Nobody online: an offline member's session queues it (QoS 1/2).
        let (i, member) = fallback?;
        if let Some(group) = self.shared.groups.get_mut(slot) {
            group.next = (i + 1) % n;
        }
        Some(member)
    }

    pub fn shared_group_count(&self) -> usize {
        self.shared.groups.len()
    }
}
