//! One client connection: the CONNECT handshake, then one task running a
//! `select!` loop over the socket, the session's mailbox, the keep-alive
//! timer, takeover and shutdown.
//!
//! Every turn of the loop first moves deliveries from the mailbox into the
//! [`Session`] (as many as its window and a byte budget allow) and encodes
//! whatever the session has to send into one output buffer; the loop then
//! waits for whichever comes first: bytes to read, room to write the buffer,
//! a delivery into an empty mailbox, the keep-alive deadline, a takeover or
//! shutdown, or the end of a pause for a congested subscriber. So packets produced in one turn leave in one write, and a
//! client that does not read stops receiving (its mailbox fills and drops)
//! without stalling anyone else. Only cancel-safe operations (`read_buf`,
//! `write_buf`, `flush`, `Notified`, timers) are raced.
//!
//! With persistence on, each turn journals the session's changes (and each
//! publish its fan-out, in [`Router::publish_with`]) and binds the
//! session's held acknowledgements to the journal ticket; the connection's
//! own `Notify` wakes it when the writer has made the ticket durable, and
//! in between it keeps serving reads, deliveries and timers.
//!
//! [`Router::publish_with`]: crate::router::Router::publish_with

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use midge_protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, LastWill, Packet, PacketType,
    Publish, QoS, Subscribe, SubscribeReturnCode, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use crate::auth::ClientInfo;
use crate::handshake::accept;
use crate::mailbox::{Delivery, Mailbox};
use crate::metrics::{DropReason, Tally};
use crate::persist::Op;
use crate::registry::LiveConn;
use crate::session::{Event, ProtocolError, Session, SessionLimits, Transmit};
use crate::shared::Shared;
use crate::tls::PeerIdentity;

/// The most bytes one read takes from the socket.
const READ_CHUNK: usize = 16 * 1024;
/// Stop taking deliveries while this many bytes wait to be written.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Deliveries an idle connection's batch vector may keep room for.
const KEEP_BATCH: usize = 64;
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
            Close::Decode(_) | Close::Protocol(_) | Close::NotConnect(_) | Close::ConnectTimeout(_)
        )
    }
}

/// The socket halves and buffers.
pub(crate) struct Io<R, W> {
    pub(crate) rd: R,
    pub(crate) wr: W,
    pub(crate) inbuf: BytesMut,
    pub(crate) outbuf: BytesMut,
    pub(crate) needs_flush: bool,
}

/// Serves one accepted connection to its end. `cert` is the TLS client
/// identity on listeners with `identity_as_username`, else `None`.
///
/// The handshake and the loop each run in a box of their own, and the
/// handshake's box is freed before the loop's is made: a task's future is as
/// large as its largest state, so an idle connection holds only what the
/// loop needs, not what CONNECT (login, a blocking password check, the
/// takeover wait) once did.
pub fn serve<S>(
    stream: S,
    peer: SocketAddr,
    cert: Option<PeerIdentity>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    // Boxed before the task's own future is made, which then holds only
    // the box and the token (not the arguments a second time).
    let handshake = Box::pin(accept(stream, peer, cert, shared, shutdown.clone()));
    async move {
        let Some((conn, live, _exited)) = handshake.await else {
            return;
        };
        Box::pin(conn.run(&shutdown, &live.kick)).await;
    }
}

/// A connection past CONNACK, how the registry reaches it, and the guard
/// that tells waiters it ended.
pub(crate) type Accepted<S> = (
    Box<Connection<ReadHalf<S>, WriteHalf<S>>>,
    LiveConn,
    DropGuard,
);

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
    Close(Close),
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
    Mail,
    Timer,
    Resumed,
}

/// A connection past CONNACK.
pub(crate) struct Connection<R, W> {
    io: Io<R, W>,
    conn_id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    client_id: Arc<str>,
    username: Option<String>,
    session: Session,
    mailbox: Arc<Mailbox>,
    /// Boxed: most clients have none, and every idle connection would
    /// carry the room for one.
    will: Option<Box<LastWill>>,
    batch: Vec<Delivery>,
    tally: Tally,
    /// Notified when this connection's journal writes are durable: the
    /// mailbox's own `Notify`, so one wait covers both.
    waker: Arc<Notify>,
    /// The keep-alive timer, made on first use and moved only when it
    /// fires: re-arming a timer every turn would cost more than the turn.
    timer: Option<Pin<Box<Sleep>>>,
    /// While set, a subscriber this client publishes to is congested: the
    /// connection neither reads nor decodes until it drains or the wait
    /// ends, so TCP slows the client down instead of the subscriber's queue
    /// dropping its messages.
    pause: Option<Pause>,
    /// Journal changes on their way out (kept for its allocation).
    ops: Vec<Op>,
}

fn now() -> std::time::Instant {
    // tokio's clock, so tests with a paused clock drive keep alive.
    tokio::time::Instant::now().into_std()
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(crate) fn start(
        io: Io<R, W>,
        peer: SocketAddr,
        conn_id: u64,
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
            keep_alive, session_present, protocol = ?connect.protocol, "client connected"
        );
        shared.metrics.client_connected();
        let mut conn = Box::new(Connection {
            io,
            conn_id,
            peer,
            shared,
            client_id,
            username: connect.username.map(|u| u.to_string()),
            session,
            mailbox: mailbox.clone(),
            will: connect.last_will.map(Box::new),
            batch: Vec::new(),
            tally: Tally::default(),
            waker: mailbox.waker().clone(),
            timer: None,
            pause: None,
            ops: Vec::new(),
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
    async fn run(mut self: Box<Self>, shutdown: &CancellationToken, kick: &CancellationToken) {
        // Packets sent right behind CONNECT are already buffered.
        let close = match self.on_bytes() {
            Ok(()) => self.drive(shutdown, kick).await,
            Err(close) => close,
        };
        (*self).finish(close);
    }

    async fn drive(&mut self, shutdown: &CancellationToken, kick: &CancellationToken) -> Close {
        let mailbox = self.mailbox.clone();
        loop {
            if let Some(journal) = &self.shared.journal {
                self.session.handle_durable(journal.durable());
            }
            self.pump();
            let held = self.session.waiting_for().is_some();
            if self.timer.is_none() {
                if let Some(deadline) = self.session.next_deadline() {
                    let deadline = tokio::time::Instant::from_std(deadline);
                    self.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
                }
            }
            let can_read =
                self.session.transmit_len() < MAX_QUEUED_TRANSMITS && self.pause.is_none();
            let want_mail = self.io.outbuf.len() < OUT_HIGH_WATER
                && self.session.would_send_now(QoS::AtMostOnce);
            let (io, timer, pause) = (&mut self.io, &mut self.timer, &mut self.pause);
            // `kick` is a child of `shutdown`: one wait covers both.
            let wake = tokio::select! {
                _ = kick.cancelled() => match shutdown.is_cancelled() {
                    true => Wake::Close(Close::Shutdown),
                    false => Wake::Close(Close::TakenOver),
                },
                r = read_some(&mut io.rd, &mut io.inbuf), if can_read => Wake::Read(r),
                w = write_or_flush(&mut io.wr, &mut io.outbuf), if !io.outbuf.is_empty() || io.needs_flush => w,
                // Mail into an empty mailbox, or the journal made held
                // packets durable: the same `Notify`.
                _ = mailbox.notified(), if want_mail || held => Wake::Mail,
                _ = tick(timer) => Wake::Timer,
                _ = resumed(pause) => Wake::Resumed,
            };
            let result = self.on_wake(wake);
            self.tally
                .observe_session(self.session.inflight_len(), self.session.pending_len());
            self.tally.flush(&self.shared.metrics);
            if let Err(close) = result {
                return close;
            }
        }
    }

    fn on_wake(&mut self, wake: Wake) -> Result<(), Close> {
        match wake {
            Wake::Close(close) => return Err(close),
            Wake::Read(Ok(0)) => return Err(Close::PeerClosed),
            Wake::Read(Ok(n)) => {
                self.tally.bytes_received += n as u64;
                self.on_bytes()?;
            }
            Wake::Wrote(Ok(0)) => {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into())
            }
            Wake::Wrote(Ok(n)) => {
                self.tally.bytes_sent += n as u64;
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
            Wake::Flushed(Ok(())) => self.io.needs_flush = false,
            Wake::Read(Err(e)) | Wake::Wrote(Err(e)) | Wake::Flushed(Err(e)) => {
                return Err(e.into())
            }
            Wake::Mail => {}
            Wake::Resumed => {
                self.pause = None;
                // What was read before the pause, then the socket again.
                self.on_bytes()?;
            }
            Wake::Timer => {
                self.session.handle_timeout(now())?;
                // Not expired: packets came since it was set.
                if let (Some(timer), Some(d)) = (&mut self.timer, self.session.next_deadline()) {
                    timer.as_mut().reset(tokio::time::Instant::from_std(d));
                }
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
            self.tally.messages_received += 1;
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
        self.session.take_ops(&mut self.ops);
        let ticket = journal.submit(&mut self.ops, Some(&self.waker));
        self.session.bind(ticket);
    }

    fn info(&self) -> ClientInfo<'_> {
        ClientInfo {
            client_id: &self.client_id,
            username: self.username.as_deref(),
            peer: self.peer,
        }
    }

    fn on_publish(&mut self, p: Publish) {
        let metrics = &self.shared.metrics;
        self.tally.on_publish_in(p.qos(), p.payload.len());
        // Clients cannot write into the broker's own topics.
        if is_sys(&p.topic) {
            metrics.dropped(DropReason::SysTopic, 1);
            debug!(client_id = %self.client_id, topic = %p.topic, "publish to $SYS dropped");
            return;
        }
        if !self.shared.auth.may_publish(&self.info(), &p.topic) {
            metrics.dropped(DropReason::NotAuthorized, 1);
            debug!(client_id = %self.client_id, topic = %p.topic, "publish not authorised: dropped");
            return;
        }
        // The session's changes so far (an inbound QoS 2 id) go into the
        // publish's own journal transaction: both or neither survive.
        self.session.take_ops(&mut self.ops);
        let waker = Some(&self.waker);
        let routed = self.shared.router.publish_with(
            &p.topic,
            &p.payload,
            p.qos(),
            p.retain,
            &mut self.ops,
            waker,
        );
        self.session.bind(routed.ticket);
        if let Some(mailbox) = routed.congested {
            if self.pause.is_none() {
                let router = self.shared.router.clone();
                self.pause = Some(Box::pin(router.wait_drained(mailbox)));
            }
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) {
        let mut results = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for f in s.filters {
            let code = if self.shared.auth.may_subscribe(&self.info(), &f.filter) {
                // Granted as asked: the broker serves every QoS.
                self.shared
                    .router
                    .subscribe(&f.filter, &self.mailbox, f.qos);
                self.shared
                    .router
                    .retained_for(&f.filter, f.qos, &mut retained);
                SubscribeReturnCode::Success(f.qos)
            } else {
                SubscribeReturnCode::Failure
            };
            results.push((f.filter, code));
        }
        // SUBACK first, then the retained messages [MQTT-3.3.1-6].
        self.session.subscribed(s.pkid, &results);
        let mut dropped = 0;
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
                client_id = %self.client_id, dropped,
                "client queue full: retained messages for its new subscription dropped"
            );
        }
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        for filter in &u.filters {
            self.shared.router.unsubscribe(filter, self.mailbox.id());
        }
        self.session.unsubscribed(u.pkid, &u.filters);
    }

    /// Moves deliveries from the mailbox into the session while the window
    /// and the output budget allow, then encodes what the session has to
    /// send.
    fn pump(&mut self) {
        if self.io.outbuf.len() < OUT_HIGH_WATER && self.session.would_send_now(QoS::AtMostOnce) {
            let mut room = self.session.window_room();
            let mut budget = OUT_HIGH_WATER - self.io.outbuf.len();
            let mut batch = std::mem::take(&mut self.batch);
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
            for d in batch.drain(..) {
                if self.shared.auth.may_receive(&self.info(), d.msg.topic()) {
                    self.session.offer(d);
                } else {
                    self.session.discard(&d);
                }
            }
            if batch.capacity() <= KEEP_BATCH || !self.mailbox.is_empty() {
                self.batch = batch;
            }
        }
        if self.session.has_ops() {
            self.journal_ops();
        }
        while self.io.outbuf.len() < OUT_HIGH_WATER {
            let Some(t) = self.session.poll_transmit() else {
                break;
            };
            self.encode(t);
        }
    }

    fn encode(&mut self, t: Transmit) {
        match t {
            Transmit::Packet(p) => {
                if let Err(e) = encode(&p, &mut self.io.outbuf) {
                    warn!(client_id = %self.client_id, error = %e, "cannot encode {:?}", p.packet_type());
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
        self.tally.messages_sent += 1;
    }

    /// Publishes the will if the end calls for it, releases the session and
    /// logs the end.
    fn finish(mut self, close: Close) {
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
        log_close(self.peer, Some(&self.client_id), &close);
        let Connection {
            shared,
            session,
            mailbox,
            conn_id,
            ..
        } = self;
        shared.registry.release(conn_id, &mailbox, session);
    }

    fn publish_will(&self, will: &LastWill) {
        if is_sys(&will.topic) || !self.shared.auth.may_publish(&self.info(), &will.topic) {
            debug!(client_id = %self.client_id, topic = %will.topic, "will not published: not allowed");
            return;
        }
        debug!(client_id = %self.client_id, topic = %will.topic, "publishing will");
        let router = &self.shared.router;
        router.publish(&will.topic, &will.payload, will.qos, will.retain);
    }
}

/// Whether `topic` is one of the broker's `$SYS` topics.
fn is_sys(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// Writes what it can of `out`, or flushes once it is all written. Either
/// is a single cancel-safe call.
async fn write_or_flush<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut BytesMut) -> Wake {
    if out.is_empty() {
        Wake::Flushed(wr.flush().await)
    } else {
        Wake::Wrote(wr.write_buf(out).await)
    }
}

/// Reads what the socket has (at most [`READ_CHUNK`] bytes) and appends it
/// to `inbuf`. The bytes land in a stack buffer first, so the connection
/// keeps no spare read capacity between reads; a copy of a few KB costs
/// little next to the system call. Cancel-safe: the bytes are appended in
/// the same poll that reads them.
pub(crate) async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    inbuf: &mut BytesMut,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        std::task::ready!(std::pin::Pin::new(&mut *rd).poll_read(cx, &mut buf))?;
        inbuf.extend_from_slice(buf.filled());
        std::task::Poll::Ready(Ok(buf.filled().len()))
    })
    .await
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

/// Waits for the keep-alive timer, forever when there is none.
async fn tick(timer: &mut Option<Pin<Box<Sleep>>>) {
    std::future::poll_fn(|cx| match timer {
        Some(t) => t.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
    .await
}
