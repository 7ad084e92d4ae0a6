//! The publisher and subscriber tasks, and the [`Shared`] counters they
//! keep on the one thread they all run on.
//!
//! Every task owns one [`Wire`] and waits only on its socket's readiness
//! (and, for a publisher, on room in its window or its next send time).
//! When the socket is readable it takes everything there in one `read`,
//! handles every whole packet in place and queues the acknowledgements;
//! whatever is queued leaves in one `write`. A publisher writes a batch of
//! messages stamped with one clock reading per batch.
//!
//! State is `Rc`/`Cell`: the load runs on one thread (`LocalSet`), and a
//! delivery then costs no atomic operation.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::Ready;
use tokio::sync::{watch, Notify};

use super::plan::{Pace, Plan};
use super::report::ns_histogram;
use super::track::{Track, Verdict};
use super::wire::{
    next_frame, put_ack, read_stamp, stamp_key, Frame, PublishTemplate, Wire, WireError, PUBACK,
    PUBCOMP, PUBREC, PUBREL,
};

/// Bytes a publisher queues per batch.
const BATCH_BYTES: usize = 64 << 10;
/// A publisher makes no new messages while this much waits to be written.
const HIGH_WATER: usize = 64 << 10;
/// Most QoS 1/2 messages a publisher has unacknowledged: below the 65,535
/// packet ids, so an id is never reused while in flight.
const MAX_INFLIGHT: u64 = 60_000;
/// Publisher read buffer: acknowledgements only.
pub const PUBLISHER_READ_BUFFER: usize = 16 << 10;
/// A publisher whose window stays full this long with no delivery writes
/// its outstanding messages off as lost.
const STALL: Duration = Duration::from_secs(1);
/// Loops a task may run without waiting before it yields to the others.
const SPIN: u32 = 8;

/// One publisher's counters.
#[derive(Debug, Default)]
pub struct PubState {
    /// Messages made so far: the next sequence number.
    pub sent: Cell<u64>,
    /// Deliveries sent and not yet received (or known lost).
    pub outstanding: Cell<u64>,
    /// Deliveries received or known lost so far: the window's progress.
    settled: Cell<u64>,
    /// Set while the publisher waits for room in its window.
    waiting: Cell<bool>,
    /// Outstanding level at which a waiting publisher is woken.
    wake_at: Cell<u64>,
    wake: Notify,
}

/// What all tasks of a run share.
pub struct Shared {
    /// The load.
    pub plan: Plan,
    /// Time zero of the stamps.
    pub epoch: Instant,
    /// Per publisher.
    pub pubs: Vec<PubState>,
    /// Deliveries received so far.
    pub delivered: Cell<u64>,
    /// Latency is recorded for messages sent from this stamp time...
    pub measure_from_ns: Cell<u64>,
    /// ...until this one.
    pub measure_until_ns: Cell<u64>,
    /// End-to-end latency, nanoseconds.
    pub latency: RefCell<Histogram<u64>>,
    /// Connections that ended before the run did.
    pub disconnects: Cell<u64>,
    /// Windows written off as lost.
    pub stalls: Cell<u64>,
    /// Deliveries whose stamp names no publisher of this run.
    pub foreign: Cell<u64>,
    /// The first few connection errors.
    pub errors: RefCell<Vec<String>>,
}

impl Shared {
    /// Fresh counters for `plan`.
    pub fn new(plan: Plan) -> Shared {
        let pubs = (0..plan.publishers).map(|_| PubState::default()).collect();
        Shared {
            plan,
            epoch: Instant::now(),
            pubs,
            delivered: Cell::new(0),
            measure_from_ns: Cell::new(u64::MAX),
            measure_until_ns: Cell::new(u64::MAX),
            latency: RefCell::new(ns_histogram()),
            disconnects: Cell::new(0),
            stalls: Cell::new(0),
            foreign: Cell::new(0),
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Nanoseconds since the epoch: the stamp clock.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Messages published so far.
    pub fn published(&self) -> u64 {
        self.pubs.iter().map(|p| p.sent.get()).sum()
    }

    /// Deliveries outstanding now.
    pub fn outstanding(&self) -> u64 {
        self.pubs.iter().map(|p| p.outstanding.get()).sum()
    }

    /// Notes a connection that ended early.
    fn on_closed(&self, who: &str, error: Option<WireError>) {
        self.disconnects.set(self.disconnects.get() + 1);
        let mut errors = self.errors.borrow_mut();
        if errors.len() < 5 {
            let why = error.map_or("closed by the broker".to_owned(), |e| e.to_string());
            errors.push(format!("{who}: {why}"));
        }
    }

    /// `n` deliveries of `publisher`'s messages are settled.
    fn settle(&self, publisher: &PubState, n: u64) {
        publisher.settled.set(publisher.settled.get() + n);
        let left = publisher.outstanding.get().saturating_sub(n);
        publisher.outstanding.set(left);
        if publisher.waiting.get() && left <= publisher.wake_at.get() {
            publisher.waiting.set(false);
            publisher.wake.notify_one();
        }
    }
}

/// A subscriber: checks and times every delivery until `stop` changes;
/// returns its tracks, one per publisher in `sources`.
pub async fn subscriber(
    mut wire: Wire,
    j: usize,
    sources: Range<usize>,
    shared: Rc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Track> {
    let mut tracks = vec![Track::default(); sources.len()];
    let mut result = on_deliveries(&mut wire, &sources, &mut tracks, &shared);
    while result.is_ok() {
        let ready = tokio::select! {
            biased;
            _ = stop.changed() => return tracks,
            ready = wire.stream.ready(wire.interest()) => ready,
        };
        result = match ready {
            Ok(r) if r.is_readable() => match wire.try_read() {
                Ok(true) => on_deliveries(&mut wire, &sources, &mut tracks, &shared),
                Ok(false) => Err(WireError::Closed),
                Err(e) => Err(e),
            },
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
        .and_then(|()| wire.try_write());
    }
    let error = result.err().filter(|e| !matches!(e, WireError::Closed));
    shared.on_closed(&format!("subscriber {j}"), error);
    tracks
}

/// Handles every whole packet in the read buffer, queueing the
/// acknowledgements.
fn on_deliveries(
    wire: &mut Wire,
    sources: &Range<usize>,
    tracks: &mut [Track],
    shared: &Shared,
) -> Result<(), WireError> {
    let now = shared.now_ns();
    let (from, until) = (shared.measure_from_ns.get(), shared.measure_until_ns.get());
    let mut latency = shared.latency.borrow_mut();
    let mut delivered = 0;
    let mut offset = 0;
    let Wire { rbuf, wbuf, .. } = wire;
    while let Some((frame, len)) = next_frame(&rbuf.data()[offset..])? {
        offset += len;
        let payload = match frame {
            Frame::Publish { qos, pkid, payload } => {
                match qos {
                    1 => put_ack(wbuf, PUBACK, pkid),
                    2 => put_ack(wbuf, PUBREC, pkid),
                    _ => {}
                }
                payload
            }
            Frame::Ack { kind: PUBREL, pkid } => {
                put_ack(wbuf, PUBCOMP, pkid);
                continue;
            }
            Frame::Ack { .. } | Frame::Other => continue,
        };
        delivered += 1;
        let Some((p, seq, sent_ns)) = read_stamp(payload).filter(|s| sources.contains(&s.0)) else {
            shared.foreign.set(shared.foreign.get() + 1);
            continue;
        };
        let settled = match tracks[p - sources.start].on_seq(seq) {
            Verdict::InOrder => 1,
            Verdict::Gap(n) => n + 1,
            Verdict::Reordered | Verdict::Duplicate => 0,
        };
        shared.settle(&shared.pubs[p], settled);
        if (from..until).contains(&sent_ns) {
            latency.saturating_record(now.saturating_sub(sent_ns).max(1));
        }
    }
    rbuf.consume(offset);
    shared.delivered.set(shared.delivered.get() + delivered);
    Ok(())
}

/// What a publisher may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Room {
    /// Make this many messages.
    Send(u64),
    /// Wait for deliveries to free the window.
    Window,
    /// Wait until the next message is due.
    Until(Instant),
    /// Wait for acknowledgements (packet ids) or writable socket only.
    Acks,
}

/// A publisher's own state.
struct Publisher {
    index: usize,
    shared: Rc<Shared>,
    template: PublishTemplate,
    batch: u64,
    /// QoS 1/2 messages acknowledged (PUBACK or PUBCOMP).
    acked: u64,
    pkid: u16,
    /// When the first message is due, in rate mode.
    start: Instant,
    /// When the window last made progress: the time, and the settled
    /// count then.
    progress: (Instant, u64),
}

impl Publisher {
    fn new(index: usize, shared: Rc<Shared>, template: PublishTemplate) -> Publisher {
        let batch = (BATCH_BYTES / template.len()).max(1) as u64;
        let now = Instant::now();
        let start = match shared.plan.pace {
            // Spread the publishers over one period, so they do not all
            // send in the same millisecond.
            Pace::Rate(rate) => {
                let offset = index as f64 / shared.plan.publishers as f64 / rate;
                now + Duration::from_secs_f64(offset)
            }
            Pace::Max(_) => now,
        };
        Publisher {
            index,
            shared,
            template,
            batch,
            acked: 0,
            pkid: 1,
            start,
            progress: (now, 0),
        }
    }

    fn state(&self) -> &PubState {
        &self.shared.pubs[self.index]
    }

    /// What the publisher may do now.
    fn room(&self, now: Instant) -> Room {
        let st = self.state();
        let plan = &self.shared.plan;
        let inflight = if plan.qos as u8 > 0 {
            MAX_INFLIGHT.saturating_sub(st.sent.get() - self.acked)
        } else {
            u64::MAX
        };
        let (allowed, otherwise) = match plan.pace {
            Pace::Max(None) => (self.batch, Room::Window),
            Pace::Max(Some(window)) => {
                let free = window.saturating_sub(st.outstanding.get());
                (free / plan.recipients(), Room::Window)
            }
            Pace::Rate(rate) => {
                // Message k is due at start + k / rate.
                let due = match now.checked_duration_since(self.start) {
                    Some(elapsed) => (elapsed.as_secs_f64() * rate) as u64 + 1,
                    None => 0,
                };
                let sent = st.sent.get();
                let next = self.start + Duration::from_secs_f64(sent as f64 / rate);
                (due.saturating_sub(sent), Room::Until(next))
            }
        };
        match allowed.min(inflight).min(self.batch) {
            0 if inflight == 0 => Room::Acks,
            0 => otherwise,
            n => Room::Send(n),
        }
    }

    /// Makes what may be made (while little waits to be written) and
    /// writes what the socket takes.
    fn step(&mut self, wire: &mut Wire, publishing: bool, now: Instant) -> Result<Room, WireError> {
        let room = if publishing && wire.wbuf.len() < HIGH_WATER {
            self.room(now)
        } else {
            Room::Acks
        };
        if let Room::Send(n) = room {
            self.make(wire, n);
        }
        wire.try_write()?;
        Ok(room)
    }

    /// Queues `n` messages stamped now.
    fn make(&mut self, wire: &mut Wire, n: u64) {
        let st = &self.shared.pubs[self.index];
        let sent_ns = self.shared.now_ns();
        let first = st.sent.get();
        for seq in first..first + n {
            self.template.put(
                &mut wire.wbuf,
                self.pkid,
                stamp_key(self.index, seq),
                sent_ns,
            );
            self.pkid = self.pkid.checked_add(1).unwrap_or(1);
        }
        st.sent.set(first + n);
        let recipients = self.shared.plan.recipients();
        st.outstanding.set(st.outstanding.get() + n * recipients);
    }

    /// When to look again if nothing else happens first.
    fn deadline(&mut self, room: Room, now: Instant) -> Option<Instant> {
        match room {
            Room::Window => {
                self.wait_for_window(now);
                Some(now + STALL / 4)
            }
            Room::Until(t) => Some(t),
            Room::Send(_) | Room::Acks => None,
        }
    }

    /// Reads and handles the acknowledgements when the socket is readable.
    fn on_ready(&mut self, wire: &mut Wire, ready: io::Result<Ready>) -> Result<(), WireError> {
        if !ready?.is_readable() {
            return Ok(());
        }
        if !wire.try_read()? {
            return Err(WireError::Closed);
        }
        let mut offset = 0;
        while let Some((frame, len)) = next_frame(&wire.rbuf.data()[offset..])? {
            offset += len;
            match frame {
                Frame::Ack { kind: PUBACK, .. } | Frame::Ack { kind: PUBCOMP, .. } => {
                    self.acked += 1;
                }
                Frame::Ack { kind: PUBREC, pkid } => put_ack(&mut wire.wbuf, PUBREL, pkid),
                _ => {}
            }
        }
        wire.rbuf.consume(offset);
        Ok(())
    }

    /// Arms the wake-up for room in the window, and writes the window off
    /// as lost when nothing came back for [`STALL`].
    fn wait_for_window(&mut self, now: Instant) {
        let plan = &self.shared.plan;
        let st = &self.shared.pubs[self.index];
        if let Pace::Max(Some(window)) = plan.pace {
            // Wake when a quarter of the window (or one message) is free,
            // so messages leave in batches.
            let slack = plan.recipients().max(window / 4);
            st.wake_at.set(window.saturating_sub(slack));
        }
        st.waiting.set(true);
        let settled = st.settled.get();
        if settled != self.progress.1 {
            self.progress = (now, settled);
        } else if st.outstanding.get() > 0 && now.duration_since(self.progress.0) >= STALL {
            st.outstanding.set(0);
            self.shared.stalls.set(self.shared.stalls.get() + 1);
            self.progress = (now, settled);
        }
    }

    fn closed(&self, error: WireError) {
        let error = Some(error).filter(|e| !matches!(e, WireError::Closed));
        let who = format!("publisher {}", self.index);
        self.shared.on_closed(&who, error);
    }
}

/// A publisher: publishes at its pace until `stop_publishing` changes,
/// then keeps answering acknowledgements until `stop` changes.
pub async fn publisher(
    mut wire: Wire,
    index: usize,
    shared: Rc<Shared>,
    template: PublishTemplate,
    mut stop_publishing: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut me = Publisher::new(index, shared, template);
    let mut publishing = true;
    let mut spins = 0;
    loop {
        // Checked here too: a publisher that never has to wait never
        // reaches the `select!` below.
        if *stop.borrow() {
            return;
        }
        publishing &= !*stop_publishing.borrow();
        let now = Instant::now();
        let room = match me.step(&mut wire, publishing, now) {
            Ok(room) => room,
            Err(e) => return me.closed(e),
        };
        if matches!(room, Room::Send(_)) && wire.wbuf.is_empty() {
            // All written and maybe more allowed: go on, but let the other
            // tasks run now and then.
            spins += 1;
            if spins >= SPIN {
                spins = 0;
                tokio::task::yield_now().await;
            }
            continue;
        }
        spins = 0;
        let deadline = me.deadline(room, now);
        let sleep = tokio::time::sleep_until(deadline.unwrap_or(now).into());
        let ready = tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = stop_publishing.changed(), if publishing => continue,
            ready = wire.stream.ready(wire.interest()) => ready,
            _ = me.state().wake.notified(), if room == Room::Window => continue,
            _ = sleep, if deadline.is_some() => continue,
        };
        if let Err(e) = me.on_ready(&mut wire, ready) {
            return me.closed(e);
        }
    }
}
