//! [`Mailbox`]: the bounded queue of deliveries waiting for one session.
//!
//! Publishers push into a subscriber's mailbox under a short mutex and never
//! wait: when the mailbox holds `max_queued_messages` deliveries the new one
//! is dropped and counted, so a slow or absent subscriber costs publishers
//! nothing and its memory stays bounded. The subscriber's connection task is
//! woken only when the mailbox goes from empty to non-empty, then takes a
//! whole batch under one lock.
//!
//! Filled past three quarters of its limit a mailbox is *congested*
//! ([`Mailbox::is_congested`]): publishers that route to it pause reading
//! until a batch taken by its connection brings it down to a quarter
//! ([`Mailbox::take_batch`] says so). A publisher that waited in vain marks
//! it *stuck* ([`Mailbox::set_stuck`]): nobody waits for it again until it
//! drains, and it drops as before.
//!
//! A mailbox outlives connections for a persistent session: while the client
//! is away it is *offline* and keeps QoS 1/2 deliveries only (QoS 0 messages
//! are not queued for absent clients), and the next connection with the same
//! client id picks it up again.
//!
//! A *journaled* mailbox (a persistent session while persistence is on)
//! numbers its QoS 1/2 deliveries as they are queued: the number (`seq`)
//! names the delivery in the journal until it is acknowledged.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use midge_protocol::QoS;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::message::Message;

/// Not congested.
const CLEAR: u8 = 0;
/// Filled past the high-water mark: publishers routing to it pause reading.
const CONGESTED: u8 = 1;
/// Congested, and a publisher waited the longest it may: the subscriber is
/// not reading, so publishers no longer pause for it (new deliveries drop
/// once it is full) until it drains.
const STUCK: u8 = 2;

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
    /// Its number in a journaled session's queue; 0 when not journaled.
    pub seq: u64,
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
    /// The next `seq` for a journaled mailbox.
    next_seq: u64,
}

/// A session's queue of deliveries, shared by publishers and its connection.
#[derive(Debug)]
pub struct Mailbox {
    id: u64,
    client_id: Arc<str>,
    limit: usize,
    journaled: bool,
    /// Backpressure: [`CLEAR`], [`CONGESTED`] or [`STUCK`].
    pressure: AtomicU8,
    inner: Mutex<Inner>,
    /// The queue's length as of the last unlock, for lock-free counting.
    len: AtomicUsize,
    /// Batches taken by the connection (wrapping): a waiting publisher
    /// tells a slow subscriber from a stuck one by it.
    taken: AtomicU32,
    /// Wakes the connection task; shared with the journal, which wakes it
    /// through the same `Notify` when its writes are durable, so the task
    /// waits on one notification for both.
    notify: Notify,
}

/// The mailbox's lock, held. Releasing it publishes the queue's length to
/// [`Mailbox::len`], whatever the critical section did, so metrics count
/// queued messages without taking the lock.
struct Locked<'a> {
    inner: MutexGuard<'a, Inner>,
    len: &'a AtomicUsize,
}

impl Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Runs before the guard field is dropped: still under the lock.
        self.len.store(self.inner.queue.len(), Ordering::Relaxed);
    }
}

impl Mailbox {
    /// An online mailbox holding at most `limit` deliveries. `id` is unique
    /// for the broker's lifetime: the subscription trie keys on it.
    pub fn new(id: u64, client_id: Arc<str>, limit: usize) -> Arc<Mailbox> {
        Mailbox::build(id, client_id, limit, None)
    }

    /// A mailbox whose QoS 1/2 deliveries are journaled, numbered from
    /// `next_seq` on (above every number the journal holds for it).
    pub fn journaled(id: u64, client_id: Arc<str>, limit: usize, next_seq: u64) -> Arc<Mailbox> {
        Mailbox::build(id, client_id, limit, Some(next_seq.max(1)))
    }

    fn build(id: u64, client_id: Arc<str>, limit: usize, seq: Option<u64>) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            id,
            client_id,
            limit,
            journaled: seq.is_some(),
            pressure: AtomicU8::new(CLEAR),
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                state: State::Online,
                overflowing: false,
                next_seq: seq.unwrap_or(0),
            }),
            len: AtomicUsize::new(0),
            taken: AtomicU32::new(0),
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

    fn lock(&self) -> Locked<'_> {
        // Every critical section leaves `Inner` consistent, so a poisoned
        // lock (a panic elsewhere) is safe to keep using.
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Locked {
            inner,
            len: &self.len,
        }
    }

    /// Whether its QoS 1/2 deliveries are journaled.
    pub fn is_journaled(&self) -> bool {
        self.journaled
    }

    /// A fresh `seq` for a delivery that bypasses the queue (retained
    /// messages for a new subscription); 0 when not journaled.
    pub fn next_seq(&self) -> u64 {
        if !self.journaled {
            return 0;
        }
        let mut inner = self.lock();
        inner.next_seq += 1;
        inner.next_seq - 1
    }

    /// Queues `delivery` unless the mailbox is full, closed, or offline and
    /// the delivery is QoS 0.
    pub fn push(&self, delivery: Delivery) -> Push {
        self.push_numbered(delivery).0
    }

    /// [`Mailbox::push`], also returning the `seq` given to the delivery (0
    /// unless it was queued in a journaled mailbox at QoS 1/2).
    pub fn push_numbered(&self, mut delivery: Delivery) -> (Push, u64) {
        let mut inner = self.lock();
        match inner.state {
            State::Closed => return (Push::Closed, 0),
            State::Offline if delivery.qos == QoS::AtMostOnce => return (Push::Skipped, 0),
            _ => {}
        }
        if inner.queue.len() >= self.limit {
            let first = !inner.overflowing;
            inner.overflowing = true;
            return (Push::Dropped { first }, 0);
        }
        inner.overflowing = false;
        if self.journaled && delivery.qos != QoS::AtMostOnce {
            delivery.seq = inner.next_seq;
            inner.next_seq += 1;
        }
        let seq = delivery.seq;
        inner.queue.push_back(delivery);
        let online = inner.state == State::Online;
        let wake = inner.queue.len() == 1 && online;
        if online && inner.queue.len() >= self.high_water() {
            // Under the lock, so it cannot race the drain that clears it.
            let _ = self.pressure.compare_exchange(
                CLEAR,
                CONGESTED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        drop(inner);
        if wake {
            // Wakes the connection task, or leaves a permit if it is busy:
            // it takes everything queued before it waits again.
            self.notify.notify_one();
        }
        (Push::Queued, seq)
    }

    /// Moves deliveries from the front into `out` while `accept` says yes.
    /// The first refused delivery stays at the front, keeping the order.
    /// True when this ended a congestion: publishers waiting for it to
    /// drain may go on ([`crate::router::Router::drained`]).
    pub fn take_batch(
        &self,
        out: &mut Vec<Delivery>,
        mut accept: impl FnMut(&Delivery) -> bool,
    ) -> bool {
        let mut inner = self.lock();
        let before = out.len();
        while let Some(front) = inner.queue.front() {
            if !accept(front) {
                break;
            }
            if let Some(d) = inner.queue.pop_front() {
                out.push(d);
            }
        }
        if out.len() > before {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        if inner.queue.len() <= self.low_water() {
            return self.pressure.swap(CLEAR, Ordering::Relaxed) == CONGESTED;
        }
        false
    }

    /// Queue length from which publishers are asked to pause.
    fn high_water(&self) -> usize {
        (self.limit - self.limit / 4).max(1)
    }

    /// Queue length at or below which a congestion ends.
    fn low_water(&self) -> usize {
        self.limit / 4
    }

    /// Whether publishers should pause until it drains: it is filled past
    /// its high-water mark and its subscriber is not known to be stuck.
    pub fn is_congested(&self) -> bool {
        self.pressure.load(Ordering::Relaxed) == CONGESTED
    }

    /// How many batches its connection has taken (wrapping): unchanged
    /// over a wait, the subscriber is stuck.
    pub fn batches_taken(&self) -> u32 {
        self.taken.load(Ordering::Relaxed)
    }

    /// A publisher waited for it to drain as long as it may: until it
    /// drains, publishers no longer wait for it.
    pub fn set_stuck(&self) {
        let _ =
            self.pressure
                .compare_exchange(CONGESTED, STUCK, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Waits until a delivery is queued into an empty mailbox. Create the
    /// future, then check for work, then await it, and nothing is missed.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The `Notify` behind [`Mailbox::notified`], for other events that
    /// must wake the same connection task (the journal's durability).
    pub fn waker(&self) -> &Notify {
        &self.notify
    }

    /// The number of queued deliveries (as of the last change; no lock).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
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
        // Nobody drains an offline mailbox: publishers must not wait for it.
        self.pressure.store(CLEAR, Ordering::Relaxed);
        let before = inner.queue.len();
        inner.queue.retain(|d| d.qos != QoS::AtMostOnce);
        before - inner.queue.len()
    }

    /// The session ended: everything queued is discarded and later pushes
    /// are refused. Returns how many deliveries were discarded.
    pub fn close(&self) -> usize {
        let mut inner = self.lock();
        inner.state = State::Closed;
        self.pressure.store(CLEAR, Ordering::Relaxed);
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
            seq: 0,
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
    fn a_mailbox_past_its_high_water_mark_is_congested_until_it_drains() {
        let mb = Mailbox::new(1, "c".into(), 8);
        for n in 1..=5 {
            mb.push(delivery(QoS::AtMostOnce, n));
        }
        assert!(!mb.is_congested());
        mb.push(delivery(QoS::AtMostOnce, 6));
        assert!(mb.is_congested(), "6 of 8 is the high-water mark");
        let mut out = Vec::new();
        assert!(!mb.take_batch(&mut out, |d| d.msg.payload()[0] <= 3));
        assert!(mb.is_congested(), "3 left is above the low-water mark");
        assert!(mb.take_batch(&mut out, |d| d.msg.payload()[0] <= 4));
        assert!(!mb.is_congested());
    }

    #[test]
    fn a_stuck_mailbox_stops_asking_publishers_to_wait_until_it_drains() {
        let mb = Mailbox::new(1, "c".into(), 4);
        for n in 1..=4 {
            mb.push(delivery(QoS::AtMostOnce, n));
        }
        mb.set_stuck();
        assert!(!mb.is_congested());
        mb.push(delivery(QoS::AtMostOnce, 5));
        assert!(!mb.is_congested(), "still stuck: no new congestion");
        assert!(!mb.take_batch(&mut Vec::new(), |_| true));
        for n in 1..=3 {
            mb.push(delivery(QoS::AtMostOnce, n));
        }
        assert!(mb.is_congested(), "drained, then filled again");
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
