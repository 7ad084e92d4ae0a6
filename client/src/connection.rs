//! The connection task: one per client, fed [`Command`]s by the handles, it
//! owns the socket, the session state, the subscription table and the
//! offline buffer, and reconnects by itself.
//!
//! While connected, one `select!` turn waits on the next inbound bytes
//! (a cancel-safe read; off while a delivery waits for a full
//! subscription), progress writing the write buffer (a cancel-safe partial
//! write; off while it is empty), a stalled delivery getting room, the next
//! command (off while the publish backlog or the write buffer is full, which
//! is the backpressure), and the next deadline (keep-alive, disconnect, and
//! the write timeout: a write making no progress that long means a dead
//! connection). Packets produced in a turn are queued in the write buffer and
//! leave together. Reads and writes progress independently, so a write
//! blocked by the broker never stops us reading what the broker is blocked
//! on sending. While offline, commands keep being served:
//! publishes wait in the bounded offline buffer, or fail at once with
//! `BufferFull`; nothing ever waits for a connection that may not return.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use midge_protocol::{ByteStr, Packet, Publish, QoS, SubscribeFilter, SubscribeReturnCode};
use rustls::ClientConfig;
use tokio::sync::mpsc::error::SendError;
use tokio::sync::mpsc::OwnedPermit;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::client::{Event, Status};
use crate::error::{
    ConnectionError, DisconnectError, PublishError, SubscribeError, UnsubscribeError,
};
use crate::options::{Options, SlowConsumer};
use crate::state::{
    MqttState, OutgoingMessage, PublishReply, StateEvent, SubscribeReply, SubscribeWaiter,
    UnsubscribeReply,
};
use crate::subs::{Delivery, SubscriptionTable};
use crate::subscription::Message;
use crate::transport::{self, Io};

/// Above this many bytes waiting to be written, the task takes no new
/// commands and feeds no more publishes into the session (it still reads).
const WRITE_HIGH_WATER: usize = 256 * 1024;

/// A request from a handle to the connection task.
pub(crate) enum Command {
    /// Publish a message; `reply` learns when its QoS flow completes.
    Publish {
        msg: OutgoingMessage,
        reply: Option<PublishReply>,
    },
    /// Subscribe; messages for these filters go to `sender`.
    Subscribe {
        sid: u64,
        filters: Vec<SubscribeFilter>,
        sender: mpsc::Sender<Message>,
        dropped: Arc<AtomicU64>,
        reply: SubscribeReply,
    },
    /// Unsubscribe these filters, from every subscription.
    Unsubscribe {
        filters: Vec<ByteStr>,
        reply: UnsubscribeReply,
    },
    /// A subscription was dropped or unsubscribed as a whole.
    DropSubscription {
        sid: u64,
        reply: Option<UnsubscribeReply>,
    },
    /// Flush in-flight work, send DISCONNECT, stop.
    Disconnect {
        reply: oneshot::Sender<Result<(), DisconnectError>>,
    },
}

struct PendingPublish {
    msg: OutgoingMessage,
    reply: Option<PublishReply>,
}

type Reserve = Pin<Box<dyn Future<Output = Result<OwnedPermit<Message>, SendError<()>>> + Send>>;

/// A delivery waiting for room in a full subscription channel
/// ([`SlowConsumer::Block`]).
struct Stalled {
    message: Message,
    sid: u64,
    remaining: VecDeque<u64>,
    reserve: Reserve,
}

struct Closing {
    reply: Option<oneshot::Sender<Result<(), DisconnectError>>>,
    deadline: Instant,
}

/// The connection task's state.
pub(crate) struct Connection {
    opts: Arc<Options>,
    tls: Option<Arc<ClientConfig>>,
    client_id: Arc<str>,
    state: MqttState,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    pending: VecDeque<PendingPublish>,
    subs: SubscriptionTable,
    stalled: Option<Stalled>,
    events: broadcast::Sender<Event>,
    status: watch::Sender<Status>,
    closing: Option<Closing>,
    /// Whether the broker resumed a session on the current connection.
    session_present: bool,
    /// Messages that matched no subscription while a resumed session was
    /// delivering its backlog, kept for the first subscription that matches.
    unmatched: VecDeque<Message>,
}

impl Connection {
    /// A task for a client whose first connection is up.
    pub fn new(
        opts: Arc<Options>,
        tls: Option<Arc<ClientConfig>>,
        client_id: Arc<str>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
        status: watch::Sender<Status>,
    ) -> Connection {
        let state = MqttState::new(
            opts.max_inflight,
            opts.keep_alive,
            opts.ping_timeout(),
            Instant::now().into_std(),
        );
        Connection {
            opts,
            tls,
            client_id,
            state,
            commands,
            commands_open: true,
            pending: VecDeque::new(),
            subs: SubscriptionTable::default(),
            stalled: None,
            events,
            status,
            closing: None,
            session_present: false,
            unmatched: VecDeque::new(),
        }
    }

    /// Runs until the client is disconnected, dropped, or gives up reconnecting.
    pub async fn run(mut self, mut io: Io, session_present: bool) {
        self.on_connected(session_present);
        let reason = loop {
            let reason = match self.serve(&mut io).await {
                Ok(()) => break None,
                Err(reason) => reason,
            };
            tracing::warn!(client_id = %self.client_id, "connection lost: {reason}");
            let _ = self.events.send(Event::Disconnected {
                reason: reason.clone(),
            });
            if self.closing.is_some() || !self.opts.reconnect.enabled {
                break Some(reason);
            }
            self.status.send_replace(Status::Reconnecting);
            match self.reconnect().await {
                Some((new_io, session_present)) => {
                    io = new_io;
                    self.on_connected(session_present);
                }
                None => break Some(reason),
            }
        };
        self.finish(reason.is_some());
    }

    fn on_connected(&mut self, session_present: bool) {
        self.state
            .on_connected(session_present, Instant::now().into_std());
        self.session_present = session_present;
        if !session_present {
            self.unmatched.clear();
            // The broker forgot our subscriptions [MQTT-3.2.2-2]; ask again
            // before re-sending publishes, so that on this connection the
            // broker sees them first.
            let restore = self.subs.restore_filters();
            if !restore.is_empty() {
                self.state.subscribe(restore, SubscribeWaiter::Restore);
            }
        }
        self.state.resend_unacked();
        self.status
            .send_replace(Status::Connected { session_present });
        let _ = self.events.send(Event::Connected { session_present });
    }

    /// Serves one connection until it ends: `Ok` after a clean DISCONNECT.
    async fn serve(&mut self, io: &mut Io) -> Result<(), ConnectionError> {
        // Bytes that arrived with CONNACK.
        self.process_incoming(io)?;
        loop {
            let room = io.writer.buffered() < WRITE_HIGH_WATER;
            if room {
                self.feed_pending();
            }
            let now = Instant::now().into_std();
            while let Some(packet) = self.state.poll_transmit(now) {
                io.queue(&packet)?;
            }
            if self.close_if_drained(io).await? {
                return Ok(());
            }
            let deadline = self.next_deadline(io);
            // A full write buffer stops intake like a full backlog; reading
            // goes on, or the broker could block on us while we block on it.
            let accept = self.accepting_commands(true) && (room || self.closing.is_some());
            let reading = self.stalled.is_none();
            let stalled = self.stalled.is_some();
            let writing = io.writer.has_work();
            tokio::select! {
                res = io.writer.write_some(), if writing => res?,
                res = io.reader.read_more(), if reading => {
                    res?;
                    self.process_incoming(io)?;
                }
                res = wait_stalled(&mut self.stalled), if stalled => {
                    self.on_stall_resolved(res);
                    self.process_incoming(io)?;
                }
                cmd = self.commands.recv(), if accept => self.on_command(cmd, true),
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    // A write that made no progress for the write timeout
                    // means a dead connection.
                    if io.writer.deadline(self.opts.write_timeout).is_some_and(|d| now >= d) {
                        return Err(ConnectionError::WriteTimeout(self.opts.write_timeout));
                    }
                    self.state.handle_timeout(now.into_std())?;
                }
            }
        }
    }

    /// While closing: once everything in flight is done (or the disconnect
    /// timeout passed), sends DISCONNECT and shuts the stream down.
    async fn close_if_drained(&mut self, io: &mut Io) -> Result<bool, ConnectionError> {
        let Some(closing) = &self.closing else {
            return Ok(false);
        };
        if let Some(stalled) = self.stalled.take() {
            // Closing: nobody should wait for a consumer that is not
            // reading, or in-flight acks could not be read.
            self.subs.count_drop(stalled.sid);
        }
        let drained = self.pending.is_empty() && self.state.is_idle();
        if !drained && Instant::now() < closing.deadline {
            return Ok(false);
        }
        io.queue(&Packet::Disconnect)?;
        io.flush(self.opts.write_timeout).await?;
        io.shutdown(Duration::from_secs(1)).await;
        Ok(true)
    }

    /// The earliest of the session's timers, the disconnect timeout and the
    /// write timeout.
    fn next_deadline(&self, io: &Io) -> Option<Instant> {
        [
            self.state.next_deadline().map(Instant::from_std),
            self.closing.as_ref().map(|c| c.deadline),
            io.writer.deadline(self.opts.write_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn accepting_commands(&self, online: bool) -> bool {
        // Online, a full backlog stops intake so callers wait (backpressure);
        // offline, intake continues and overflow fails fast.
        self.commands_open
            && (!online
                || self.closing.is_some()
                || self.pending.len() < self.opts.offline_buffer.max(1))
    }

    /// Moves waiting publishes into the session while the window has room.
    fn feed_pending(&mut self) {
        while let Some(front) = self.pending.front() {
            if front.msg.qos != QoS::AtMostOnce && self.state.inflight_full() {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                self.state.publish(p.msg, p.reply);
            }
        }
    }

    /// Decodes and handles buffered packets until the buffer runs dry or a
    /// delivery stalls.
    fn process_incoming(&mut self, io: &mut Io) -> Result<(), ConnectionError> {
        while self.stalled.is_none() {
            let Some(packet) = io.next_packet()? else {
                break;
            };
            self.state.handle_incoming(packet)?;
            self.process_events();
        }
        Ok(())
    }

    fn process_events(&mut self) {
        while let Some(event) = self.state.poll_event() {
            match event {
                StateEvent::Deliver(publish) => self.deliver(publish),
                StateEvent::SubAck {
                    filters,
                    codes,
                    waiter,
                } => self.on_suback(filters, codes, waiter),
            }
        }
    }

    fn on_suback(
        &mut self,
        filters: Vec<SubscribeFilter>,
        codes: Vec<SubscribeReturnCode>,
        waiter: SubscribeWaiter,
    ) {
        match waiter {
            SubscribeWaiter::Request { sid, reply } => {
                self.subs.on_suback(sid, &filters, &codes);
                let _ = reply.send(Ok(codes));
            }
            SubscribeWaiter::Restore => {
                for (f, code) in filters.iter().zip(&codes) {
                    if *code == SubscribeReturnCode::Failure {
                        tracing::warn!(filter = %f.filter, "the broker refused to restore a subscription");
                    }
                }
            }
        }
    }

    fn deliver(&mut self, publish: Publish) {
        let targets = self.subs.matching(&publish.topic);
        if targets.is_empty() {
            if self.session_present {
                // A resumed session delivers its backlog right after
                // CONNACK, before the application had a chance to subscribe
                // again: keep a bounded number for the next subscribe.
                if self.unmatched.len() >= self.opts.subscription_capacity {
                    self.unmatched.pop_front();
                }
                self.unmatched.push_back(Message::from(publish));
            } else {
                tracing::debug!(topic = %publish.topic, "message matches no subscription");
            }
            return;
        }
        self.deliver_to(Message::from(publish), targets);
    }

    fn deliver_to(&mut self, message: Message, mut targets: VecDeque<u64>) {
        while let Some(sid) = targets.pop_front() {
            match self.subs.try_send(sid, message.clone()) {
                Delivery::Sent => {}
                Delivery::Closed => self.drop_subscription(sid, None),
                Delivery::Full(sender) => match self.opts.slow_consumer {
                    SlowConsumer::DropNewest => self.subs.count_drop(sid),
                    SlowConsumer::Block => {
                        self.stalled = Some(Stalled {
                            message,
                            sid,
                            remaining: targets,
                            reserve: Box::pin(sender.reserve_owned()),
                        });
                        return;
                    }
                },
            }
        }
    }

    /// Hands kept messages that match a new subscription to it.
    fn replay_unmatched(&mut self, sid: u64, filters: &[SubscribeFilter]) {
        if self.unmatched.is_empty() {
            return;
        }
        let (matching, rest): (VecDeque<Message>, VecDeque<Message>) =
            self.unmatched.drain(..).partition(|m| {
                filters
                    .iter()
                    .any(|f| midge_protocol::topic::matches(&f.filter, &m.topic))
            });
        self.unmatched = rest;
        for message in matching {
            if !matches!(self.subs.try_send(sid, message), Delivery::Sent) {
                self.subs.count_drop(sid);
            }
        }
    }

    fn on_stall_resolved(&mut self, res: Result<OwnedPermit<Message>, SendError<()>>) {
        let Some(stalled) = self.stalled.take() else {
            return;
        };
        match res {
            Ok(permit) => {
                permit.send(stalled.message.clone());
            }
            Err(_) => self.drop_subscription(stalled.sid, None),
        }
        self.deliver_to(stalled.message, stalled.remaining);
    }

    fn drop_subscription(&mut self, sid: u64, reply: Option<UnsubscribeReply>) {
        let orphans = self.subs.remove(sid);
        if orphans.is_empty() {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
        } else {
            self.state.unsubscribe(orphans, reply);
        }
    }

    fn on_command(&mut self, cmd: Option<Command>, online: bool) {
        let Some(cmd) = cmd else {
            // Every handle is gone: close as if disconnect() had been called.
            self.commands_open = false;
            if self.closing.is_none() {
                self.closing = Some(Closing {
                    reply: None,
                    deadline: Instant::now() + self.opts.disconnect_timeout,
                });
            }
            return;
        };
        if self.closing.is_some() {
            reject(cmd);
            return;
        }
        match cmd {
            Command::Publish { msg, reply } => {
                if !online && self.pending.len() >= self.opts.offline_buffer {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(PublishError::BufferFull {
                            capacity: self.opts.offline_buffer,
                        }));
                    }
                } else {
                    self.pending.push_back(PendingPublish { msg, reply });
                }
            }
            Command::Subscribe {
                sid,
                filters,
                sender,
                dropped,
                reply,
            } => {
                self.subs.insert(sid, &filters, sender, dropped);
                self.replay_unmatched(sid, &filters);
                self.state
                    .subscribe(filters, SubscribeWaiter::Request { sid, reply });
            }
            Command::Unsubscribe { filters, reply } => {
                self.subs.remove_filters(&filters);
                self.state.unsubscribe(filters, Some(reply));
            }
            Command::DropSubscription { sid, reply } => self.drop_subscription(sid, reply),
            Command::Disconnect { reply } => {
                self.closing = Some(Closing {
                    reply: Some(reply),
                    deadline: Instant::now() + self.opts.disconnect_timeout,
                });
            }
        }
    }

    /// Waits out the backoff and tries again, serving commands meanwhile.
    /// `None` when the client is closing or gave up.
    async fn reconnect(&mut self) -> Option<(Io, bool)> {
        let policy = self.opts.reconnect.clone();
        let mut attempt: u32 = 0;
        loop {
            if policy.max_attempts.is_some_and(|max| attempt >= max) {
                return None;
            }
            let delay = policy.delay(attempt, rand::random::<f64>());
            attempt += 1;
            let _ = self.events.send(Event::Reconnecting { attempt, delay });
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                let accept = self.accepting_commands(false);
                let stalled = self.stalled.is_some();
                tokio::select! {
                    _ = &mut sleep => break,
                    res = wait_stalled(&mut self.stalled), if stalled => self.on_stall_resolved(res),
                    cmd = self.commands.recv(), if accept => {
                        self.on_command(cmd, false);
                        if self.closing.is_some() {
                            return None;
                        }
                    }
                }
            }
            let opts = self.opts.clone();
            let tls = self.tls.clone();
            let client_id = self.client_id.clone();
            let connect = async move { transport::connect(&opts, tls.as_ref(), &client_id).await };
            tokio::pin!(connect);
            loop {
                let accept = self.accepting_commands(false);
                let stalled = self.stalled.is_some();
                tokio::select! {
                    res = &mut connect => match res {
                        Ok((io, connack)) => return Some((io, connack.session_present)),
                        Err(error) => {
                            tracing::warn!(client_id = %self.client_id, attempt, "reconnect failed: {error}");
                            let _ = self.events.send(Event::ReconnectFailed {
                                attempt,
                                error: Arc::new(error),
                            });
                            break;
                        }
                    },
                    res = wait_stalled(&mut self.stalled), if stalled => self.on_stall_resolved(res),
                    cmd = self.commands.recv(), if accept => {
                        self.on_command(cmd, false);
                        if self.closing.is_some() {
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Ends the client: fails whatever is waiting, answers `disconnect()`.
    fn finish(&mut self, lost: bool) {
        let unfinished = self.pending.len() + self.state.inflight_len();
        let closing = self.closing.take();
        let closed = closing.is_some();
        for p in self.pending.drain(..) {
            if let Some(reply) = p.reply {
                let _ = reply.send(Err(if closed {
                    PublishError::Closed
                } else {
                    PublishError::ConnectionLost
                }));
            }
        }
        self.state.fail_all(closed);
        if let Some(Closing {
            reply: Some(reply), ..
        }) = closing
        {
            let _ = reply.send(match (unfinished, lost) {
                (0, _) => Ok(()),
                (unfinished, false) => Err(DisconnectError::Timeout {
                    unfinished,
                    timeout: self.opts.disconnect_timeout,
                }),
                (unfinished, true) => Err(DisconnectError::NotConnected { unfinished }),
            });
        }
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            reject(cmd);
        }
        self.status.send_replace(Status::Closed);
        let _ = self.events.send(Event::Closed);
    }
}

/// Answers a command that arrives while the client is closing.
fn reject(cmd: Command) {
    match cmd {
        Command::Publish { reply, .. } => {
            if let Some(reply) = reply {
                let _ = reply.send(Err(PublishError::Closed));
            }
        }
        Command::Subscribe { reply, .. } => {
            let _ = reply.send(Err(SubscribeError::Closed));
        }
        Command::Unsubscribe { reply, .. } => {
            let _ = reply.send(Err(UnsubscribeError::Closed));
        }
        Command::DropSubscription { reply, .. } => {
            if let Some(reply) = reply {
                let _ = reply.send(Err(UnsubscribeError::Closed));
            }
        }
        Command::Disconnect { reply } => {
            let _ = reply.send(Err(DisconnectError::Closed));
        }
    }
}

async fn wait_stalled(
    stalled: &mut Option<Stalled>,
) -> Result<OwnedPermit<Message>, SendError<()>> {
    match stalled {
        // Polled by reference: the reservation survives a cancelled select turn.
        Some(s) => s.reserve.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
