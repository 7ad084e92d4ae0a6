//! One client connection: the CONNECT handshake, then one task running a
//! `select!` loop over the socket and the session's mailbox.
//!
//! Every turn of the loop first moves deliveries from the mailbox into the
//! [`Session`] (as many as its window and a byte budget allow) and encodes
//! whatever the session has to send into one output buffer; the loop then
//! waits for whichever comes first: bytes to read or room to write (one
//! future polls both directions of the unsplit stream), the mailbox's
//! `Notify`, or the end of a pause for a congested subscriber. So packets
//! produced in one turn leave in one write, and a client that does not read
//! stops receiving (its mailbox fills and drops) without stalling anyone
//! else. Only cancel-safe operations (single reads, writes and flushes,
//! `Notified`) are raced.
//!
//! An idle connection waits on two things only, its socket and the
//! mailbox's `Notify`, which carries every other event: mail, the journal's
//! word that held packets are durable, a takeover or shutdown (a flag in the
//! [`ConnSignal`], checked each turn), and the keep-alive sweeper
//! ([`crate::keepalive`]) waking a connection past its deadline, which the
//! session then judges.
//!
//! With persistence on, each turn journals the session's changes (and each
//! publish its fan-out, in [`Router::publish_with`]) and binds the
//! session's held acknowledgements to the journal ticket; the connection's
//! own `Notify` wakes it when the writer has made the ticket durable, and
//! in between it keeps serving reads, deliveries and timers.
//!
//! [`Router::publish_with`]: crate::router::Router::publish_with

mod subscribe;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
pub(crate) use subscribe::too_deep;

use bytes::BytesMut;
use midge_protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, LastWill, Packet, PacketType,
    Publish, QoS,
};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::ClientInfo;
use crate::conn_io::{io_ready, Io, IoReady};
use crate::handshake::accept;
use crate::keepalive::now;
use crate::mailbox::Mailbox;
use crate::metrics::{DropReason, Tally};
use crate::registry::{ConnSignal, ExitGuard, LiveConn};
use crate::scratch;
use crate::session::{Event, ProtocolError, Session, SessionLimits, Transmit};
use crate::shared::Shared;
use crate::sys;
use crate::tls::PeerIdentity;

/// Stop taking deliveries while this many bytes wait to be written.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Stop reading while this many packets wait to be encoded: a client that
/// sends without reading cannot grow our queues.
const MAX_QUEUED_TRANSMITS: usize = 4096;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Close {
    #[error("client sent DISCONNECT")]
    Disconnect,
    #[error("client closed the connection without DISCONNECT")]
    PeerClosed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet: {0}")]
    Decode(#[from] DecodeError),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("first packet was {0:?}, not CONNECT [MQTT-3.1.0-1]")]
    NotConnect(PacketType),
    #[error("no CONNECT within {0} s [MQTT-3.1.0-1]")]
    ConnectTimeout(u64),
    #[error("taken over by a new connection with the same client id [MQTT-3.1.4-2]")]
    TakenOver,
    #[error("broker shutting down")]
    Shutdown,
    #[error("{0} has more than limits.max_topic_levels = {1} levels")]
    TooManyLevels(&'static str, usize),
}

impl Close {
    /// Whether the will is published: for every end but DISCONNECT
    /// [MQTT-3.1.2-8] [MQTT-3.1.2-10]. A broker shutting down has nobody
    /// left to tell.
    fn publishes_will(&self) -> bool {
        !matches!(self, Close::Disconnect | Close::Shutdown)
    }

    /// Whether the client broke the rules (logged as a warning).
    fn is_violation(&self) -> bool {
        matches!(
            self,
            Close::Decode(_)
                | Close::Protocol(_)
                | Close::NotConnect(_)
                | Close::ConnectTimeout(_)
                | Close::TooManyLevels(..)
        )
    }
}

/// Serves one accepted connection to its end: `open` yields the stream
/// (registered with this task's runtime, past any TLS handshake) and the
/// TLS client identity on listeners with `identity_as_username`, or `None`
/// when the connection ended there; `permit` (a place under
/// `max_connections`) is held to the end.
///
/// Opening and the handshake run in one box and the loop in another, and
/// the first box is freed before the second is made: a task's future is as
/// large as its largest state, so an idle connection holds only what the
/// loop needs, not what TLS, CONNECT (login, a blocking password check, the
/// takeover wait) once did.
pub fn serve<S, O>(
    open: O,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    O: Future<Output = Option<(S, Option<PeerIdentity>)>> + Send + 'static,
{
    // Boxed before the task's own future is made, which then holds only
    // the box, the token and the permit (not the arguments a second time).
    let token = shutdown.clone();
    let handshake = Box::pin(async move {
        // One deadline for the TLS handshake and CONNECT together, so a TLS
        // peer cannot hold a slot for twice `connect_timeout_s`.
        let timeout = std::time::Duration::from_secs(shared.config.limits.connect_timeout_s);
        let deadline = tokio::time::Instant::now() + timeout;
        let (stream, cert) = open.await?;
        accept(stream, peer, cert, shared, token, deadline).await
    });
    async move {
        let Some((conn, live, _exited)) = handshake.await else {
            return;
        };
        Box::pin(conn.run(&shutdown, &live)).await;
        // The connection counts against `max_connections` to its end.
        drop(permit);
    }
}

/// A connection past CONNACK, how the registry reaches it, and the guard
/// that tells waiters it ended.
pub(crate) type Accepted<S> = (Box<Connection<S>>, LiveConn, ExitGuard);

pub(crate) fn log_close(peer: SocketAddr, client_id: Option<&str>, close: &Close) {
    let client_id = client_id.unwrap_or("");
    if close.is_violation() {
        warn!(%peer, %client_id, reason = %close, "connection closed");
    } else if matches!(close, Close::PeerClosed) && client_id.is_empty() {
        debug!(%peer, reason = %close, "connection closed before CONNECT");
    } else {
        info!(%peer, %client_id, reason = %close, "client disconnected");
    }
}

/// What one turn of the loop waited for.
enum Wake {
    Io(IoReady),
    Mail,
    Resumed,
}

/// A connection past CONNACK.
pub(crate) struct Connection<S> {
    io: Io<S>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    username: Option<Box<str>>,
    /// The MQTT session (which also holds the client id).
    session: Session,
    mailbox: Arc<Mailbox>,
    /// Boxed: most clients have none, and every idle connection would
    /// carry the room for one.
    will: Option<Box<LastWill>>,
    tally: Tally,
    /// While set, a subscriber this client publishes to is congested, or
    /// the journal's disk is behind: the connection neither reads nor
    /// decodes until that clears (or, for a subscriber, the wait ends), so
    /// TCP slows the client down instead of queues growing or dropping.
    pause: Option<Pause>,
    /// This turn queued messages for other connections: they write first.
    routed: bool,
    /// Packets came in: the keep-alive deadline moved (a flag, not the
    /// last deadline published, which would cost the loop 16 bytes).
    deadline_moved: bool,
    /// The client is a bridge (CONNECT level with the top bit set): what
    /// it publishes is not sent back to it.
    bridge: bool,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn start(
        io: Io<S>,
        peer: SocketAddr,
        shared: Arc<Shared>,
        client_id: Arc<str>,
        connect: Connect,
        (mailbox, resumed): (Arc<Mailbox>, Option<crate::session::SessionState>),
    ) -> Box<Self> {
        let limits = SessionLimits {
            max_inflight: shared.config.limits.max_inflight,
            max_pending: shared.config.limits.max_queued_messages,
        };
        let session_present = resumed.is_some();
        let keep_alive = connect.keep_alive;
        let mut session = match resumed {
            Some(state) => Session::resume(client_id.clone(), keep_alive, state, limits, now()),
            None => Session::new(
                client_id.clone(),
                connect.clean_session,
                keep_alive,
                limits,
                now(),
            ),
        };
        if let Some(journal) = &shared.journal {
            let sid = mailbox.is_journaled().then(|| mailbox.id());
            session.set_journal(sid, journal.last_ticket());
        }
        info!(
            client_id = %client_id, %peer, clean_session = connect.clean_session,
            keep_alive, session_present, protocol = ?connect.protocol, bridge = connect.bridge,
            "client connected"
        );
        shared.metrics.client_connected();
        let mut conn = Box::new(Connection {
            io,
            peer,
            shared,
            username: connect.username.map(|u| u.as_str().into()),
            session,
            mailbox,
            will: connect.last_will.map(Box::new),
            tally: Tally::default(),
            pause: None,
            routed: false,
            // CONNECT set the first deadline.
            deadline_moved: true,
            bridge: connect.bridge,
        });
        let connack = Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        });
        conn.encode(Transmit::Packet(connack));
        conn
    }

    // Boxed: an async fn keeps its arguments apart from its locals, so an
    // unboxed `self` would take twice its size in the task.
    async fn run(mut self: Box<Self>, shutdown: &CancellationToken, live: &LiveConn) {
        // Packets sent right behind CONNECT are already buffered.
        let close = match self.on_bytes() {
            Ok(()) => self.drive(shutdown, &live.signal).await,
            Err(close) => close,
        };
        (*self).finish(close, live.conn_id);
    }

    async fn drive(&mut self, shutdown: &CancellationToken, signal: &ConnSignal) -> Close {
        let mailbox = self.mailbox.clone();
        loop {
            // Shutdown cancels the token, then kicks every connection; a
            // takeover only kicks. A kick sets the flag, then wakes the
            // mailbox's `Notify`. (A connection that claimed its session
            // after the kicks sees the token here.)
            if shutdown.is_cancelled() {
                return Close::Shutdown;
            }
            if signal.is_kicked() {
                return Close::TakenOver;
            }
            if let Some(journal) = &self.shared.journal {
                self.session.handle_durable(journal.durable());
            }
            self.pump();
            // Packets read move the deadline: the sweeper sees the new one.
            if std::mem::take(&mut self.deadline_moved) {
                signal.deadline.set(self.session.next_deadline());
            }
            let can_read =
                self.session.transmit_len() < MAX_QUEUED_TRANSMITS && self.pause.is_none();
            let (io, pause) = (&mut self.io, &mut self.pause);
            let wake = tokio::select! {
                w = io_ready(io, can_read) => Wake::Io(w),
                // Mail into an empty mailbox, the journal made held packets
                // durable, a takeover or shutdown: the same `Notify`, always
                // waited on (a wake with nothing to do costs one turn).
                _ = mailbox.notified() => Wake::Mail,
                _ = resumed(pause) => Wake::Resumed,
            };
            let result = self.on_wake(wake);
            self.tally
                .observe_session(self.session.inflight_len(), self.session.pending_len());
            self.tally.flush(&self.shared.metrics);
            if let Err(close) = result {
                return close;
            }
            if std::mem::take(&mut self.routed) {
                // Let the subscribers just woken write before this client's
                // PUBACK goes out (tokio resumes a yielded task after the
                // tasks already queued): the message leaves first, as from
                // Mosquitto, and the publisher's write is off its path. On
                // 1000 publisher/subscriber pairs this takes the p90 from
                // about 70 to 59 us.
                tokio::task::yield_now().await;
            }
        }
    }

    fn on_wake(&mut self, wake: Wake) -> Result<(), Close> {
        match wake {
            Wake::Io(IoReady::Read(Ok(0))) => return Err(Close::PeerClosed),
            Wake::Io(IoReady::Read(Ok(n))) => {
                self.tally.on_bytes_in(n);
                self.on_bytes()?;
            }
            Wake::Io(IoReady::Wrote(Ok(0))) => {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into())
            }
            Wake::Io(IoReady::Wrote(Ok(n))) => {
                self.tally.on_bytes_out(n);
                self.io.needs_flush = true;
                if self.io.outbuf.is_empty()
                    && self.mailbox.is_empty()
                    && self.session.transmit_len() == 0
                {
                    // All sent and nothing waits: an idle connection keeps
                    // no output buffer (busy ones keep theirs, full or not).
                    self.io.outbuf = BytesMut::new();
                }
            }
            Wake::Io(IoReady::Flushed(Ok(()))) => self.io.needs_flush = false,
            Wake::Io(IoReady::Read(Err(e)) | IoReady::Wrote(Err(e)) | IoReady::Flushed(Err(e))) => {
                return Err(e.into())
            }
            // Mail, or the keep-alive sweeper: the session judges the
            // deadline (packets may have come since the sweep looked). Not
            // while paused: this broker stopped reading the client, whose
            // packets wait unread, so silence is not the client's
            // [MQTT-3.1.2-24]; the packets read on resuming reset the clock.
            Wake::Mail if self.pause.is_none() => self.session.handle_timeout(now())?,
            Wake::Mail => {}
            Wake::Resumed => {
                self.pause = None;
                // What was read before the pause, then the socket again.
                self.on_bytes()?;
            }
        }
        Ok(())
    }

    /// Decodes and handles every whole packet in the read buffer.
    fn on_bytes(&mut self) -> Result<(), Close> {
        let max = self.shared.config.limits.max_packet_size;
        // One clock read per batch, not per packet (acknowledgements come
        // by the thousand).
        let now = now();
        // A pause stops decoding too: the packets left wait in the buffer.
        while self.pause.is_none() {
            let Some(packet) = decode(&mut self.io.inbuf, max)? else {
                break;
            };
            self.tally.on_packet_in();
            self.deadline_moved = true;
            let max_levels = self.shared.config.limits.max_topic_levels;
            // Checked before the session sees it: no acknowledgement is
            // queued and no QoS 2 id is kept for a PUBLISH that is refused.
            if matches!(&packet, Packet::Publish(p) if too_deep(&p.topic, max_levels)) {
                return Err(Close::TooManyLevels("PUBLISH topic", max_levels));
            }
            match self.session.handle_incoming(packet, now)? {
                None => {}
                Some(Event::Publish(p)) => self.on_publish(p),
                Some(Event::Subscribe(s)) => self.on_subscribe(s),
                Some(Event::Unsubscribe(u)) => self.on_unsubscribe(u),
                Some(Event::Disconnect) => return Err(Close::Disconnect),
            }
        }
        self.journal_ops();
        if self.io.inbuf.is_empty() {
            // Nothing partial is left: an idle connection holds no read
            // buffer (the next read sizes a new one to what arrives).
            self.io.inbuf = BytesMut::new();
        }
        Ok(())
    }

    /// Journals the session's pending changes and binds its held packets
    /// to them (to nothing when there were none).
    fn journal_ops(&mut self) {
        let Some(journal) = &self.shared.journal else {
            return;
        };
        let mut ops = scratch::take_ops();
        self.session.take_ops(&mut ops);
        // The mailbox's `Notify`: the loop's one wait covers this too.
        let ticket = journal.submit(&mut ops, Some(&self.mailbox));
        scratch::put_ops(ops);
        self.session.bind(ticket);
    }

    fn info(&self) -> ClientInfo<'_> {
        ClientInfo {
            client_id: self.session.client_id(),
            username: self.username.as_deref(),
            peer: self.peer,
        }
    }

    fn on_publish(&mut self, p: Publish) {
        let metrics = &self.shared.metrics;
        self.tally.on_publish_in(p.qos(), p.payload.len());
        // Clients cannot write into the broker's own topics.
        if !sys::client_may_write(&p.topic) {
            metrics.dropped(DropReason::SysTopic, 1);
            debug!(client_id = %self.session.client_id(), topic = %p.topic, "publish to $SYS dropped");
            return;
        }
        if !self.shared.auth.may_publish(&self.info(), &p.topic) {
            metrics.dropped(DropReason::NotAuthorized, 1);
            debug!(client_id = %self.session.client_id(), topic = %p.topic, "publish not authorised: dropped");
            return;
        }
        // The session's changes so far (an inbound QoS 2 id) go into the
        // publish's own journal transaction: both or neither survive.
        let mut ops = scratch::take_ops();
        self.session.take_ops(&mut ops);
        let waker = Some(&self.mailbox);
        let routed = self.shared.router.publish_with(
            &p.topic,
            &p.payload,
            p.qos(),
            p.retain,
            &mut ops,
            waker,
            self.bridge.then(|| self.mailbox.id()),
        );
        scratch::put_ops(ops);
        self.session.bind(routed.ticket);
        self.routed |= routed.queued > 0;
        if self.pause.is_some() {
            return;
        }
        if let Some(mailbox) = routed.congested {
            let router = self.shared.router.clone();
            self.pause = Some(Box::pin(router.wait_drained(mailbox)));
        } else if let Some(journal) = self.shared.journal.as_ref().filter(|j| j.is_backlogged()) {
            // The disk is behind: what publishers send would only pile up
            // in the journal's queue (a QoS 0 retained flood holds no
            // acknowledgement back), so TCP slows them down instead.
            self.pause = Some(Box::pin(journal.clone().backlog_taken()));
        }
    }

    /// Moves deliveries from the mailbox into the session while the window
    /// and the output budget allow, then encodes what the session has to
    /// send.
    fn pump(&mut self) {
        if self.io.outbuf.len() < OUT_HIGH_WATER && self.session.would_send_now(QoS::AtMostOnce) {
            let mut room = self.session.window_room();
            let mut budget = OUT_HIGH_WATER - self.io.outbuf.len();
            let mut batch = scratch::take_batch();
            let drained = self.mailbox.take_batch(&mut batch, |d| {
                if budget == 0 || (d.qos != QoS::AtMostOnce && room == 0) {
                    return false;
                }
                room -= usize::from(d.qos != QoS::AtMostOnce);
                budget = budget.saturating_sub(d.msg.wire_len());
                true
            });
            if drained {
                self.shared.router.drained().notify_waiters();
            }
            // One allocation for the turn's output, not one per doubling.
            let bytes = batch.iter().map(|d| d.msg.wire_len()).sum();
            self.io.outbuf.reserve(bytes);
            let check = self.shared.auth.checks_receiving();
            for d in batch.drain(..) {
                if !check || self.shared.auth.may_receive(&self.info(), d.msg.topic()) {
                    self.session.offer(d);
                } else {
                    self.session.discard(&d);
                }
            }
            scratch::put_batch(batch);
        }
        // Twice at most: polling can move a waiting message into the window
        // (a retained or resumed one), which records a change and holds a
        // QoS 2 PUBLISH; journaled in the same turn, it does not wait for
        // another wake to be bound.
        loop {
            if self.session.has_ops() {
                self.journal_ops();
            }
            while self.io.outbuf.len() < OUT_HIGH_WATER {
                let Some(t) = self.session.poll_transmit() else {
                    break;
                };
                self.encode(t);
            }
            if !self.session.has_ops() {
                break;
            }
        }
    }

    fn encode(&mut self, t: Transmit) {
        match t {
            Transmit::Packet(p) => {
                if let Err(e) = encode(&p, &mut self.io.outbuf) {
                    warn!(client_id = %self.session.client_id(), error = %e, "cannot encode {:?}", p.packet_type());
                    return;
                }
            }
            Transmit::Publish {
                delivery,
                pkid,
                dup,
            } => {
                let out = &mut self.io.outbuf;
                delivery
                    .msg
                    .write_to(out, delivery.qos, pkid, dup, delivery.retain);
                self.tally
                    .on_publish_out(delivery.qos, delivery.msg.payload_len());
            }
        }
        self.tally.on_packet_out();
    }

    /// Publishes the will if the end calls for it, releases the session and
    /// logs the end.
    fn finish(mut self, close: Close, conn_id: u64) {
        // What the session changed in its last turn is kept too.
        self.journal_ops();
        let mut tally = self.tally;
        tally.observe_session(0, 0);
        tally.flush(&self.shared.metrics);
        self.shared.metrics.client_disconnected();
        if close.publishes_will() {
            if let Some(will) = &self.will {
                self.publish_will(will);
            }
        }
        log_close(self.peer, Some(self.session.client_id()), &close);
        let Connection {
            shared,
            session,
            mailbox,
            ..
        } = self;
        shared.registry.release(conn_id, &mailbox, session);
    }

    fn publish_will(&self, will: &LastWill) {
        if !sys::client_may_write(&will.topic)
            || !self.shared.auth.may_publish(&self.info(), &will.topic)
        {
            debug!(client_id = %self.session.client_id(), topic = %will.topic, "will not published: not allowed");
            return;
        }
        debug!(client_id = %self.session.client_id(), topic = %will.topic, "publishing will");
        let router = &self.shared.router;
        router.publish(&will.topic, &will.payload, will.qos, will.retain);
    }
}

/// A publisher's wait for a congested subscriber
/// ([`Router::wait_drained`]).
type Pause = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Waits for a paused connection's wait to end, forever when not paused.
async fn resumed(pause: &mut Option<Pause>) {
    std::future::poll_fn(|cx| match pause {
        Some(p) => p.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
    .await
}
