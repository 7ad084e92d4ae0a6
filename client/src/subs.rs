//! The connection task's table of live subscriptions: which
//! [`Subscription`](crate::Subscription) wants which filters, routing of
//! incoming messages to them through their bounded channels, and the filters
//! to restore after a reconnect without a session.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use midge_protocol::{ByteStr, QoS, SubscribeFilter, SubscribeReturnCode};
use tokio::sync::mpsc;

use crate::subscription::Message;

#[derive(Debug)]
struct FilterEntry {
    filter: ByteStr,
    qos: QoS,
    /// Whether the broker granted it (SUBACK seen); only those are restored,
    /// the others are still pending in the session state and re-sent from there.
    acked: bool,
}

#[derive(Debug)]
struct Entry {
    sid: u64,
    filters: Vec<FilterEntry>,
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

/// The outcome of handing a message to one subscription.
pub(crate) enum Delivery {
    /// Queued.
    Sent,
    /// The channel is full; the sender to wait on.
    Full(mpsc::Sender<Message>),
    /// The subscription is gone (its receiver was dropped).
    Closed,
}

/// All subscriptions of a client.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionTable {
    entries: Vec<Entry>,
}

impl SubscriptionTable {
    /// Adds subscription `sid`, not yet acknowledged.
    pub fn insert(
        &mut self,
        sid: u64,
        filters: &[SubscribeFilter],
        sender: mpsc::Sender<Message>,
        dropped: Arc<AtomicU64>,
    ) {
        let filters = filters
            .iter()
            .map(|f| FilterEntry {
                filter: f.filter.clone(),
                qos: f.qos,
                acked: false,
            })
            .collect();
        self.entries.push(Entry {
            sid,
            filters,
            sender,
            dropped,
        });
    }

    /// Records the SUBACK of subscription `sid`: granted filters are
    /// acknowledged, refused ones removed; a subscription left without
    /// filters ends.
    pub fn on_suback(
        &mut self,
        sid: u64,
        filters: &[SubscribeFilter],
        codes: &[SubscribeReturnCode],
    ) {
        let Some(entry) = self.entries.iter_mut().find(|e| e.sid == sid) else {
            return;
        };
        for (filter, code) in filters.iter().zip(codes) {
            let position = entry.filters.iter().position(|f| f.filter == filter.filter);
            match (code, position) {
                (SubscribeReturnCode::Success(_), Some(i)) => entry.filters[i].acked = true,
                (SubscribeReturnCode::Failure, Some(i)) => {
                    entry.filters.remove(i);
                }
                (_, None) => {}
            }
        }
        self.entries.retain(|e| !e.filters.is_empty());
    }

    /// Removes these filters from every subscription (an explicit
    /// unsubscribe); subscriptions left without filters end.
    pub fn remove_filters(&mut self, filters: &[ByteStr]) {
        for entry in &mut self.entries {
            entry.filters.retain(|f| !filters.contains(&f.filter));
        }
        self.entries.retain(|e| !e.filters.is_empty());
    }

    /// Removes subscription `sid`; returns its filters that no other
    /// subscription uses, which the broker should forget.
    pub fn remove(&mut self, sid: u64) -> Vec<ByteStr> {
        let Some(index) = self.entries.iter().position(|e| e.sid == sid) else {
            return Vec::new();
        };
        let entry = self.entries.remove(index);
        entry
            .filters
            .into_iter()
            .map(|f| f.filter)
            .filter(|filter| {
                !self
                    .entries
                    .iter()
                    .any(|e| e.filters.iter().any(|f| &f.filter == filter))
            })
            .collect()
    }

    /// The acknowledged filters, once each at the highest QoS asked for, to
    /// subscribe again when the broker kept no session.
    pub fn restore_filters(&self) -> Vec<SubscribeFilter> {
        let mut out: Vec<SubscribeFilter> = Vec::new();
        for f in self
            .entries
            .iter()
            .flat_map(|e| &e.filters)
            .filter(|f| f.acked)
        {
            match out.iter_mut().find(|o| o.filter == f.filter) {
                Some(o) => o.qos = o.qos.max(f.qos),
                None => out.push(SubscribeFilter {
                    filter: f.filter.clone(),
                    qos: f.qos,
                }),
            }
        }
        out
    }

    /// The subscriptions with a filter matching `topic`, in subscription order.
    pub fn matching(&self, topic: &str) -> VecDeque<u64> {
        self.entries
            .iter()
            .filter(|e| {
                e.filters
                    .iter()
                    .any(|f| midge_protocol::topic::matches(&f.filter, topic))
            })
            .map(|e| e.sid)
            .collect()
    }

    /// Hands `message` to subscription `sid` without waiting.
    pub fn try_send(&self, sid: u64, message: Message) -> Delivery {
        let Some(entry) = self.entries.iter().find(|e| e.sid == sid) else {
            return Delivery::Closed;
        };
        match entry.sender.try_send(message) {
            Ok(()) => Delivery::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full(entry.sender.clone()),
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    /// Counts a message dropped for subscription `sid`.
    pub fn count_drop(&self, sid: u64) {
        if let Some(entry) = self.entries.iter().find(|e| e.sid == sid) {
            entry.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether there are no subscriptions.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: &str, qos: QoS) -> SubscribeFilter {
        SubscribeFilter {
            filter: ByteStr::from(f),
            qos,
        }
    }

    fn table_with(
        sid: u64,
        filters: &[SubscribeFilter],
    ) -> (SubscriptionTable, mpsc::Receiver<Message>) {
        let mut table = SubscriptionTable::default();
        let (tx, rx) = mpsc::channel(1);
        table.insert(sid, filters, tx, Arc::default());
        (table, rx)
    }

    #[test]
    fn only_acknowledged_filters_are_restored_once_at_the_highest_qos() {
        let (mut table, _rx) = table_with(
            1,
            &[
                filter("a/#", QoS::AtMostOnce),
                filter("b", QoS::AtLeastOnce),
            ],
        );
        let (tx, _rx2) = mpsc::channel(1);
        table.insert(2, &[filter("a/#", QoS::ExactlyOnce)], tx, Arc::default());
        table.on_suback(
            1,
            &[
                filter("a/#", QoS::AtMostOnce),
                filter("b", QoS::AtLeastOnce),
            ],
            &[
                SubscribeReturnCode::Success(QoS::AtMostOnce),
                SubscribeReturnCode::Failure,
            ],
        );
        table.on_suback(
            2,
            &[filter("a/#", QoS::ExactlyOnce)],
            &[SubscribeReturnCode::Success(QoS::ExactlyOnce)],
        );
        assert_eq!(
            table.restore_filters(),
            vec![filter("a/#", QoS::ExactlyOnce)]
        );
    }

    #[test]
    fn removing_a_subscription_unsubscribes_only_filters_nobody_else_uses() {
        let (mut table, _rx) = table_with(
            1,
            &[filter("a", QoS::AtMostOnce), filter("b", QoS::AtMostOnce)],
        );
        let (tx, _rx2) = mpsc::channel(1);
        table.insert(2, &[filter("a", QoS::AtMostOnce)], tx, Arc::default());
        assert_eq!(table.remove(1), vec![ByteStr::from("b")]);
        assert_eq!(table.remove(2), vec![ByteStr::from("a")]);
        assert!(table.is_empty());
    }

    #[test]
    fn a_message_matching_two_filters_of_one_subscription_is_routed_once() {
        let (table, _rx) = table_with(
            7,
            &[
                filter("a/#", QoS::AtMostOnce),
                filter("a/b", QoS::AtMostOnce),
            ],
        );
        assert_eq!(table.matching("a/b"), VecDeque::from([7]));
        assert!(table.matching("c").is_empty());
    }

    #[test]
    fn a_full_channel_reports_full_and_a_dropped_receiver_reports_closed() {
        let (table, rx) = table_with(1, &[filter("t", QoS::AtMostOnce)]);
        let msg = Message::new("t", "x", QoS::AtMostOnce, false);
        assert!(matches!(table.try_send(1, msg.clone()), Delivery::Sent));
        assert!(matches!(table.try_send(1, msg.clone()), Delivery::Full(_)));
        drop(rx);
        assert!(matches!(table.try_send(1, msg), Delivery::Closed));
    }
}
