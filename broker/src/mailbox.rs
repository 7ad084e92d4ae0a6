//! [`Mailbox`]: the bounded queue of deliveries waiting for one session.
//!
//! Publishers push into a subscriber's mailbox under a short mutex and never
//! wait: when the mailbox holds `max_queued_messages` deliveries the new one
//! is dropped and counted, so a slow or absent subscriber costs publishers
//! nothing and its memory stays bounded. The subscriber's connection task is
//! woken only when the mailbox goes from empty to non-empty, then takes a
//! whole batch under one lock.
//!
//! A mailbox outlives connections for a persistent session: while the client
//! is away it is *offline* and keeps QoS 1/2 deliveries only (QoS 0 messages
//! are not queued for absent clients), and the next connection with the same
//! client id picks it up again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use midge_protocol::QoS;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::message::Message;

/// One message on its way to one subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The message, shared among all its subscribers.
    pub msg: Arc<Message>,
    /// The QoS it is delivered at: min(published, granted).
    pub qos: QoS,
    /// RETAIN flag on the wire: set only for retained messages sent because
    /// of a new subscription [MQTT-3.3.1-8] [MQTT-3.3.1-9].
    pub retain: bool,
}

/// What became of a pushed delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Queued.
    Queued,
    /// Dropped because the mailbox is full. `first` is true for the first
    /// drop since the mailbox last had room, so callers can log once per
    /// overflow rather than once per message.
    Dropped {
        /// First drop of this overflow.
        first: bool,
    },
    /// Not queued: a QoS 0 message for an offline client.
    Skipped,
    /// The session is gone.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Online,
    Offline,
    Closed,
}

#[derive(Debug)]
struct Inner {
    queue: VecDeque<Delivery>,
    state: State,
    overflowing: bool,
}

/// A session's queue of deliveries, shared by publishers and its connection.
#[derive(Debug)]
pub struct Mailbox {
    id: u64,
    client_id: Arc<str>,
    limit: usize,
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Mailbox {
    /// An online mailbox holding at most `limit` deliveries. `id` is unique
    /// for the broker's lifetime: the subscription trie keys on it.
    pub fn new(id: u64, client_id: Arc<str>, limit: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            id,
            client_id,
            limit,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                state: State::Online,
                overflowing: false,
            }),
            notify: Notify::new(),
        })
    }

    /// This mailbox's unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The most deliveries it holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The client id of its session.
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent, so a poisoned
        // lock (a panic elsewhere) is safe to keep using.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `delivery` unless the mailbox is full, closed, or offline and
    /// the delivery is QoS 0.
    pub fn push(&self, delivery: Delivery) -> Push {
        let mut inner = self.lock();
        match inner.state {
            State::Closed => return Push::Closed,
            State::Offline if delivery.qos == QoS::AtMostOnce => return Push::Skipped,
            _ => {}
        }
        if inner.queue.len() >= self.limit {
            let first = !inner.overflowing;
            inner.overflowing = true;
            return Push::Dropped { first };
        }
        inner.overflowing = false;
        inner.queue.push_back(delivery);
        let wake = inner.queue.len() == 1 && inner.state == State::Online;
        drop(inner);
        if wake {
            // Wakes the connection task, or leaves a permit if it is busy:
            // it takes everything queued before it waits again.
            self.notify.notify_one();
        }
        Push::Queued
    }

    /// Moves deliveries from the front into `out` while `accept` says yes.
    /// The first refused delivery stays at the front, keeping the order.
    pub fn take_batch(&self, out: &mut Vec<Delivery>, mut accept: impl FnMut(&Delivery) -> bool) {
        let mut inner = self.lock();
        while let Some(front) = inner.queue.front() {
            if !accept(front) {
                break;
            }
            if let Some(d) = inner.queue.pop_front() {
                out.push(d);
            }
        }
    }

    /// Waits until a delivery is queued into an empty mailbox. Create the
    /// future, then check for work, then await it, and nothing is missed.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The number of queued deliveries.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A connection took the session: deliveries wake it again.
    pub fn set_online(&self) {
        let mut inner = self.lock();
        if inner.state != State::Closed {
            inner.state = State::Online;
        }
        let wake = !inner.queue.is_empty();
        drop(inner);
        if wake {
            self.notify.notify_one();
        }
    }

    /// The client went away and its session persists: QoS 0 deliveries still
    /// queued are discarded (they are not kept for absent clients) and later
    /// ones are not queued. Returns how many were discarded.
    pub fn set_offline(&self) -> usize {
        let mut inner = self.lock();
        if inner.state == State::Closed {
            return 0;
        }
        inner.state = State::Offline;
        let before = inner.queue.len();
        inner.queue.retain(|d| d.qos != QoS::AtMostOnce);
        before - inner.queue.len()
    }

    /// The session ended: everything queued is discarded and later pushes
    /// are refused. Returns how many deliveries were discarded.
    pub fn close(&self) -> usize {
        let mut inner = self.lock();
        inner.state = State::Closed;
        let n = inner.queue.len();
        inner.queue = VecDeque::new();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(qos: QoS, n: u8) -> Delivery {
        Delivery {
            msg: Message::new("t", &[n], qos, false).expect("message"),
            qos,
            retain: false,
        }
    }

    fn take_all(mb: &Mailbox) -> Vec<u8> {
        let mut out = Vec::new();
        mb.take_batch(&mut out, |_| true);
        out.iter().map(|d| d.msg.payload()[0]).collect()
    }

    #[test]
    fn a_full_mailbox_drops_new_deliveries_and_reports_the_first_drop() {
        let mb = Mailbox::new(1, "c".into(), 2);
        assert_eq!(mb.push(delivery(QoS::AtMostOnce, 1)), Push::Queued);
        assert_eq!(mb.push(delivery(QoS::AtLeastOnce, 2)), Push::Queued);
        assert_eq!(
            mb.push(delivery(QoS::AtMostOnce, 3)),
            Push::Dropped { first: true }
        );
        assert_eq!(
            mb.push(delivery(QoS::ExactlyOnce, 4)),
            Push::Dropped { first: false }
        );
        assert_eq!(take_all(&mb), vec![1, 2]);
        assert_eq!(mb.push(delivery(QoS::AtMostOnce, 5)), Push::Queued);
        assert_eq!(mb.push(delivery(QoS::AtMostOnce, 6)), Push::Queued);
        assert_eq!(
            mb.push(delivery(QoS::AtMostOnce, 7)),
            Push::Dropped { first: true }
        );
    }

    #[test]
    fn take_batch_stops_at_the_first_refused_delivery() {
        let mb = Mailbox::new(1, "c".into(), 10);
        for n in 1..=4 {
            mb.push(delivery(QoS::AtLeastOnce, n));
        }
        let mut out = Vec::new();
        let mut room = 2;
        mb.take_batch(&mut out, |_| {
            room -= 1;
            room >= 0
        });
        assert_eq!(out.len(), 2);
        assert_eq!(take_all(&mb), vec![3, 4]);
    }

    #[test]
    fn an_offline_mailbox_keeps_only_qos_1_and_2() {
        let mb = Mailbox::new(1, "c".into(), 10);
        mb.push(delivery(QoS::AtMostOnce, 1));
        mb.push(delivery(QoS::AtLeastOnce, 2));
        assert_eq!(mb.set_offline(), 1);
        assert_eq!(mb.push(delivery(QoS::AtMostOnce, 3)), Push::Skipped);
        assert_eq!(mb.push(delivery(QoS::ExactlyOnce, 4)), Push::Queued);
        mb.set_online();
        assert_eq!(take_all(&mb), vec![2, 4]);
    }

    #[test]
    fn a_closed_mailbox_refuses_everything() {
        let mb = Mailbox::new(1, "c".into(), 10);
        mb.push(delivery(QoS::AtLeastOnce, 1));
        assert_eq!(mb.close(), 1);
        assert_eq!(mb.push(delivery(QoS::AtLeastOnce, 2)), Push::Closed);
        mb.set_online();
        assert_eq!(mb.push(delivery(QoS::AtLeastOnce, 2)), Push::Closed);
        assert!(mb.is_empty());
    }

    #[tokio::test]
    async fn a_push_into_an_empty_mailbox_wakes_the_waiter() {
        let mb = Mailbox::new(1, "c".into(), 10);
        let waiter = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.notified().await })
        };
        tokio::task::yield_now().await;
        mb.push(delivery(QoS::AtMostOnce, 1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
    }
}
