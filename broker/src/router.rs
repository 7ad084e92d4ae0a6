//! [`Router`]: from a published message to the mailboxes of its subscribers.
//!
//! Publishing takes the trie's read lock, collects the matching
//! subscriptions, merges a subscriber's overlapping ones into a single
//! delivery at the highest granted QoS, encodes the message once, and pushes
//! a [`Delivery`] sharing it into each mailbox. Nothing in here awaits: the
//! locks are held for the length of one fan-out at most, and a full mailbox
//! drops the delivery instead of making the publisher wait. A congested
//! mailbox is reported back ([`Routed::congested`]) so the publisher's
//! connection can pause reading, and [`Router::drained`] wakes it.
//!
//! With persistence on, a publish that a persistent session must receive
//! at QoS 1/2, or that changes a retained message, is journaled: the
//! retained change, the message and one queue entry per such session go
//! into one journal transaction, taken before the first mailbox push and
//! committed after the last, so the journal orders them before anything a
//! subscriber does with the delivery ([`crate::persist`]).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use midge_protocol::QoS;
use tokio::sync::Notify;

use crate::mailbox::{Delivery, Mailbox, Push};
use crate::message::Message;
use crate::metrics::{DropReason, Metrics};
use crate::persist::{Journal, Op};
use crate::retained::RetainedStore;
use crate::trie::Trie;

/// One subscription's entry in the trie.
#[derive(Debug)]
pub struct Subscriber {
    /// Where deliveries go.
    pub mailbox: Arc<Mailbox>,
    /// The granted QoS.
    pub qos: QoS,
}

/// The longest a publisher stops reading for one congested subscriber
/// before it is taken as stuck.
pub const MAX_PAUSE: Duration = Duration::from_millis(100);

/// The routing state shared by all connections.
pub struct Router {
    trie: RwLock<Trie<Subscriber>>,
    retained: Arc<dyn RetainedStore>,
    metrics: Arc<Metrics>,
    journal: Option<Journal>,
    /// Notified when a congested mailbox drains ([`Router::drained`]).
    drained: Notify,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("subscriptions", &self.subscription_count())
            .field("retained", &self.retained.len())
            .finish()
    }
}

impl Router {
    /// A router with no subscriptions over `retained`.
    pub fn new(retained: Arc<dyn RetainedStore>, metrics: Arc<Metrics>) -> Router {
        Router {
            trie: RwLock::new(Trie::new()),
            retained,
            metrics,
            journal: None,
            drained: Notify::new(),
        }
    }

    /// Woken (all waiters) whenever a congested mailbox drains: publishers
    /// paused for one check whether theirs is still congested.
    pub fn drained(&self) -> &Notify {
        &self.drained
    }

    /// Waits until `mailbox` is no longer congested. A subscriber that
    /// takes nothing from it for [`MAX_PAUSE`] is marked stuck, so it
    /// stalls no publisher again until it drains (its messages drop
    /// instead).
    ///
    /// A subscriber that keeps taking batches is slow, not stuck, and its
    /// publishers keep waiting (TCP then slows them down), however often a
    /// woken publisher finds the mailbox congested again because others
    /// ran first and filled it.
    pub async fn wait_drained(self: Arc<Self>, mailbox: Arc<Mailbox>) {
        let mut taken = mailbox.batches_taken();
        let mut deadline = tokio::time::Instant::now() + MAX_PAUSE;
        loop {
            // Registered before the check, so a drain in between is not
            // missed.
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !mailbox.is_congested() {
                return;
            }
            let now_taken = mailbox.batches_taken();
            if now_taken != taken {
                taken = now_taken;
                deadline = tokio::time::Instant::now() + MAX_PAUSE;
            }
            let timed_out = tokio::time::timeout_at(deadline, drained).await.is_err();
            if timed_out && mailbox.batches_taken() == taken {
                mailbox.set_stuck();
                return;
            }
        }
    }

    /// The router journaling through `journal` (persistence on).
    pub fn with_journal(mut self, journal: Option<Journal>) -> Router {
        self.journal = journal;
        self
    }

    /// Puts a retained message restored from the journal, without
    /// journaling it again.
    pub fn restore_retained(&self, msg: Arc<Message>) {
        self.retained.put(msg);
    }

    // The trie is only changed by whole insertions and removals, so a lock
    // poisoned by a panic elsewhere still guards a consistent trie.
    fn read(&self) -> RwLockReadGuard<'_, Trie<Subscriber>> {
        self.trie.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Trie<Subscriber>> {
        self.trie.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes a message to every matching subscriber and, when `retain` is
    /// set, stores it as the topic's retained message (an empty payload
    /// removes that). Returns the number of mailboxes it was queued in.
    pub fn publish(&self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> usize {
        self.publish_with(topic, payload, qos, retain, &mut Vec::new(), None, None)
            .queued
    }

    /// [`Router::publish`] for a connection: `ops` (the publisher's own
    /// pending journal changes, drained) are journaled in the same
    /// transaction as the publish, and `waker` is notified when it is
    /// durable. `not_to` is a mailbox the message must not reach: a
    /// bridge's own, so that a two-way bridge does not loop.
    #[allow(clippy::too_many_arguments)]
    pub fn publish_with(
        &self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        ops: &mut Vec<Op>,
        waker: Option<&Arc<Mailbox>>,
        not_to: Option<u64>,
    ) -> Routed {
        let trie = self.read();
        let mut targets: Vec<(u64, QoS, &Arc<Mailbox>)> = Vec::new();
        trie.for_each_match(topic, |id, sub| targets.push((id, sub.qos, &sub.mailbox)));
        if let Some(me) = not_to {
            targets.retain(|(id, _, _)| *id != me);
        }
        let submit = |ops: &mut Vec<Op>| self.journal.as_ref().map_or(0, |j| j.submit(ops, waker));
        if targets.is_empty() && !retain {
            return Routed::new(0, submit(ops));
        }
        // The journal is written only for what must survive: a retained
        // change, or a QoS 1/2 delivery to a persistent session.
        let journal = self.journal.as_ref().filter(|_| {
            (retain && !crate::sys::is_sys(topic))
                || (qos != QoS::AtMostOnce
                    && targets
                        .iter()
                        .any(|(_, granted, mb)| *granted != QoS::AtMostOnce && mb.is_journaled()))
        });
        let id = journal.map_or(0, Journal::next_mid);
        let msg = match Message::stored(topic, payload, qos, retain, id) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!(topic, error = %e, "message not routed");
                return Routed::new(0, submit(ops));
            }
        };
        merge_overlaps(&mut targets);
        let Some(journal) = journal else {
            if retain {
                // Under the trie's read lock, so a subscription made after
                // this publish missed it finds it retained [MQTT-3.3.1-6].
                self.retained.put(msg.clone());
            }
            let mut queued = 0;
            for (_, granted, mailbox) in &targets {
                queued += usize::from(self.push(mailbox, delivery(&msg, qos.min(*granted))));
            }
            let mut routed = Routed::new(queued, submit(ops));
            routed.congested = congested(&targets);
            return routed;
        };
        // One transaction: the journal's order is the memory's order.
        let mut txn = journal.txn(waker);
        for op in ops.drain(..) {
            txn.push(op);
        }
        if retain {
            self.retained.put(msg.clone());
            txn.push(match msg.payload_len() {
                0 => Op::Unretain(topic.to_owned()),
                _ => Op::Retain(msg.clone()),
            });
        }
        let mut queued = 0;
        for &(_, granted, mailbox) in &targets {
            let qos = qos.min(granted);
            let (ok, seq) = self.push_numbered(mailbox, delivery(&msg, qos));
            queued += usize::from(ok);
            if seq != 0 {
                let (sid, msg) = (mailbox.id(), msg.clone());
                txn.push(Op::Enqueue {
                    sid,
                    seq,
                    msg,
                    qos,
                    retain: false,
                });
            }
        }
        let mut routed = Routed::new(queued, txn.commit());
        routed.congested = congested(&targets);
        routed
    }

    /// Pushes one delivery, counting and logging drops. True if queued.
    pub fn push(&self, mailbox: &Mailbox, delivery: Delivery) -> bool {
        self.push_numbered(mailbox, delivery).0
    }

    /// [`Router::push`], also returning the `seq` the mailbox gave the
    /// delivery (0 unless the mailbox is journaled and it is QoS 1/2).
    pub fn push_numbered(&self, mailbox: &Mailbox, delivery: Delivery) -> (bool, u64) {
        let (push, seq) = mailbox.push_numbered(delivery);
        let queued = match push {
            Push::Queued => true,
            Push::Dropped { first } => {
                self.metrics.dropped(DropReason::QueueFull, 1);
                if first {
                    tracing::warn!(
                        client_id = %mailbox.client_id(),
                        limit = mailbox.limit(),
                        "client queue full: dropping messages until it drains"
                    );
                }
                false
            }
            Push::Skipped | Push::Closed => false,
        };
        (queued, seq)
    }

    /// Adds or replaces `mailbox`'s subscription to `filter` [MQTT-3.8.4-3].
    pub fn subscribe(&self, filter: &str, mailbox: &Arc<Mailbox>, qos: QoS) {
        let sub = Subscriber {
            mailbox: mailbox.clone(),
            qos,
        };
        self.write().insert(filter, mailbox.id(), sub);
    }

    /// Removes mailbox `id`'s subscription to `filter`; true if it existed.
    pub fn unsubscribe(&self, filter: &str, id: u64) -> bool {
        self.write().remove(filter, id).is_some()
    }

    /// Removes all of a session's subscriptions at once.
    pub fn unsubscribe_all<'a>(&self, filters: impl IntoIterator<Item = &'a str>, id: u64) {
        let mut trie = self.write();
        for filter in filters {
            trie.remove(filter, id);
        }
    }

    /// The retained messages matching `filter`, as deliveries at
    /// min(published, `granted`) with RETAIN set [MQTT-3.3.1-8], added to
    /// `out` while it holds fewer than `limit`; returns how many matched
    /// past that. The limit is the room in the subscriber's queue: without
    /// it a SUBSCRIBE repeating `#` could collect every retained message
    /// once per filter before the queue dropped them.
    pub fn retained_for(
        &self,
        filter: &str,
        granted: QoS,
        out: &mut Vec<Delivery>,
        limit: usize,
    ) -> usize {
        let mut over = 0;
        self.retained.for_each_match(filter, &mut |msg| {
            if out.len() >= limit {
                over += 1;
                return;
            }
            out.push(Delivery {
                msg: msg.clone(),
                qos: msg.qos().min(granted),
                retain: true,
                seq: 0,
            })
        });
        over
    }

    /// The number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.read().len()
    }

    /// The number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }
}

/// What [`Router::publish_with`] did.
#[derive(Debug)]
pub struct Routed {
    /// The number of mailboxes the message was queued in.
    pub queued: usize,
    /// The journal ticket the acknowledgement must wait for (0: nothing).
    pub ticket: u64,
    /// A subscriber's mailbox filled past its high-water mark: the
    /// publisher should stop reading until it drains (a bounded wait).
    pub congested: Option<Arc<Mailbox>>,
}

impl Routed {
    fn new(queued: usize, ticket: u64) -> Routed {
        Routed {
            queued,
            ticket,
            congested: None,
        }
    }
}

/// The first congested mailbox among the targets.
fn congested(targets: &[(u64, QoS, &Arc<Mailbox>)]) -> Option<Arc<Mailbox>> {
    let found = targets.iter().find(|(_, _, mb)| mb.is_congested());
    found.map(|(_, _, mb)| Arc::clone(mb))
}

/// A normally forwarded delivery: RETAIN is 0 [MQTT-3.3.1-9].
fn delivery(msg: &Arc<Message>, qos: QoS) -> Delivery {
    Delivery {
        msg: msg.clone(),
        qos,
        retain: false,
        seq: 0,
    }
}

/// One delivery per subscriber, at the highest QoS of its matching
/// subscriptions.
fn merge_overlaps(targets: &mut Vec<(u64, QoS, &Arc<Mailbox>)>) {
    if targets.len() < 2 {
        return;
    }
    targets.sort_unstable_by_key(|t| t.0);
    targets.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 = kept.1.max(later.1);
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retained::MemoryRetained;

    fn router() -> Router {
        Router::new(Arc::new(MemoryRetained::new()), Arc::default())
    }

    fn take(mb: &Mailbox) -> Vec<Delivery> {
        let mut out = Vec::new();
        mb.take_batch(&mut out, |_| true);
        out
    }

    #[test]
    fn overlapping_subscriptions_deliver_one_copy_at_the_highest_granted_qos() {
        let r = router();
        let mb = Mailbox::new(1, "a".into(), 10);
        r.subscribe("a/+", &mb, QoS::AtMostOnce);
        r.subscribe("a/#", &mb, QoS::ExactlyOnce);
        r.subscribe("#", &mb, QoS::AtLeastOnce);
        assert_eq!(r.publish("a/b", b"x", QoS::ExactlyOnce, false), 1);
        let got = take(&mb);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].qos, QoS::ExactlyOnce);
    }

    #[test]
    fn the_delivered_qos_is_the_lower_of_published_and_granted() {
        let r = router();
        let low = Mailbox::new(1, "low".into(), 10);
        let high = Mailbox::new(2, "high".into(), 10);
        r.subscribe("t", &low, QoS::AtMostOnce);
        r.subscribe("t", &high, QoS::ExactlyOnce);
        assert_eq!(r.publish("t", b"x", QoS::AtLeastOnce, true), 2);
        assert_eq!(take(&low)[0].qos, QoS::AtMostOnce);
        let d = &take(&high)[0];
        assert_eq!(d.qos, QoS::AtLeastOnce);
        assert!(!d.retain, "RETAIN is 0 on normal forwarding [MQTT-3.3.1-9]");
    }

    #[test]
    fn a_retained_publish_is_stored_and_offered_to_later_subscriptions_with_retain() {
        let r = router();
        assert_eq!(r.publish("t/1", b"x", QoS::ExactlyOnce, true), 0);
        assert_eq!(r.retained_count(), 1);
        let mut out = Vec::new();
        r.retained_for("t/#", QoS::AtLeastOnce, &mut out, usize::MAX);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].qos, out[0].retain), (QoS::AtLeastOnce, true));
        r.publish("t/1", b"", QoS::AtMostOnce, true);
        assert_eq!(r.retained_count(), 0);
    }

    #[test]
    fn a_full_mailbox_drops_and_counts_without_blocking_the_publisher() {
        let metrics = Arc::new(Metrics::default());
        let r = Router::new(Arc::new(MemoryRetained::new()), metrics.clone());
        let slow = Mailbox::new(1, "slow".into(), 2);
        let fast = Mailbox::new(2, "fast".into(), 100);
        r.subscribe("t", &slow, QoS::AtMostOnce);
        r.subscribe("t", &fast, QoS::AtMostOnce);
        for _ in 0..5 {
            r.publish("t", b"x", QoS::AtMostOnce, false);
        }
        assert_eq!(take(&slow).len(), 2);
        assert_eq!(take(&fast).len(), 5);
        let stats = crate::metrics::Stats::from_metrics(&metrics);
        assert_eq!(stats.dropped_by_reason, [3, 0, 0, 0]);
    }

    #[test]
    fn unsubscribing_stops_deliveries() {
        let r = router();
        let mb = Mailbox::new(1, "a".into(), 10);
        r.subscribe("t", &mb, QoS::AtMostOnce);
        assert!(r.unsubscribe("t", 1));
        assert!(!r.unsubscribe("t", 1));
        assert_eq!(r.publish("t", b"x", QoS::AtMostOnce, false), 0);
        assert_eq!(r.subscription_count(), 0);
    }
}
