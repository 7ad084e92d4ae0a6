//! SUBSCRIBE and UNSUBSCRIBE for a [`Connection`]: the limits on what a
//! client may subscribe to, the ACL, and the retained messages a new
//! subscription receives.

use midge_protocol::{QoS, Subscribe, SubscribeReturnCode, Unsubscribe};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::Connection;
use crate::metrics::DropReason;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) fn on_subscribe(&mut self, s: Subscribe) {
        let limits = &self.shared.config.limits;
        let (max_levels, max_subs) = (limits.max_topic_levels, limits.max_subscriptions);
        // Retained messages beyond the queue's room would only be dropped:
        // they are not collected (a SUBSCRIBE repeating `#` thousands of
        // times must not gather every retained message each time).
        let room = limits
            .max_queued_messages
            .saturating_sub(self.session.pending_len());
        let mut results = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        let (mut held, mut refused) = (self.session.subscription_count(), 0);
        let mut dropped = 0u64;
        // Filters granted by this packet: a repeated one is subscribed again
        // (its QoS replaces) but neither counts again nor collects the
        // retained messages again.
        let mut granted = std::collections::HashSet::new();
        for f in &s.filters {
            let repeated = granted.contains(f.filter.as_str());
            let new = !repeated && !self.session.is_subscribed(&f.filter);
            let code = if too_deep(&f.filter, max_levels) || (new && held >= max_subs) {
                refused += 1;
                SubscribeReturnCode::Failure
            } else if self.shared.auth.may_subscribe(&self.info(), &f.filter) {
                held += usize::from(new);
                granted.insert(f.filter.as_str());
                // Granted as asked: the broker serves every QoS.
                self.shared
                    .router
                    .subscribe(&f.filter, &self.mailbox, f.qos);
                if !repeated {
                    let router = &self.shared.router;
                    dropped += router.retained_for(&f.filter, f.qos, &mut retained, room) as u64;
                }
                SubscribeReturnCode::Success(f.qos)
            } else {
                SubscribeReturnCode::Failure
            };
            results.push((f.filter.clone(), code));
        }
        if refused > 0 {
            warn!(
                client_id = %self.session.client_id(), refused,
                max_subscriptions = max_subs, max_topic_levels = max_levels,
                "subscriptions refused (SUBACK 0x80): too many, or too many topic levels"
            );
        }
        // SUBACK first, then the retained messages [MQTT-3.3.1-6].
        self.session.subscribed(s.pkid, &results);
        for mut d in retained {
            if d.qos != QoS::AtMostOnce {
                // Numbered like the mailbox's own: a persistent session
                // journals it.
                d.seq = self.mailbox.next_seq();
            }
            if self.shared.auth.may_receive(&self.info(), d.msg.topic()) && !self.session.enqueue(d)
            {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.shared.metrics.dropped(DropReason::QueueFull, dropped);
            warn!(
                client_id = %self.session.client_id(), dropped,
                "client queue full: retained messages for its new subscription dropped"
            );
        }
    }

    pub(super) fn on_unsubscribe(&mut self, u: Unsubscribe) {
        for filter in &u.filters {
            self.shared.router.unsubscribe(filter, self.mailbox.id());
        }
        self.session.unsubscribed(u.pkid, &u.filters);
    }
}

/// Whether a topic name or filter has more than `max` levels. A topic of
/// `n` bytes has at most `n + 1` levels, so the common short topic is not
/// scanned.
pub(crate) fn too_deep(topic: &str, max: usize) -> bool {
    topic.len() >= max && topic.bytes().filter(|&b| b == b'/').count() >= max
}
