//! One client connection: the CONNECT handshake, then one task running a
//! `select!` loop over the socket, the session's mailbox, the keep-alive
//! timer, takeover and shutdown.
//!
//! Every turn of the loop first moves deliveries from the mailbox into the
//! [`Session`] (as many as its window and a byte budget allow) and encodes
//! whatever the session has to send into one output buffer; the loop then
//! waits for whichever comes first: bytes to read, room to write the buffer,
//! a delivery into an empty mailbox, the keep-alive deadline, a takeover or
//! shutdown. So packets produced in one turn leave in one write, and a
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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use midge_protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, LastWill, Packet, PacketType,
    Publish, QoS, Subscribe, SubscribeReturnCode, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::ClientInfo;
use crate::handshake::{check_client_id, claim_session, login, read_connect, refuse};
use crate::mailbox::{Delivery, Mailbox};
use crate::metrics::{DropReason, Metrics, Tally};
use crate::persist::Op;
use crate::registry::LiveConn;
use crate::session::{Event, ProtocolError, Session, SessionLimits, Transmit};
use crate::shared::Shared;
use crate::tls::PeerIdentity;

/// Room kept free in the read buffer before each read.
pub(crate) const READ_RESERVE: usize = 8 * 1024;
/// Stop taking deliveries while this many bytes wait to be written.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Buffers emptied with more capacity than this are released, so a burst of
/// large packets does not pin memory for the connection's lifetime.
const KEEP_CAPACITY: usize = 256 * 1024;
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
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    cert: Option<PeerIdentity>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut io = Io {
        rd,
        wr,
        inbuf: BytesMut::with_capacity(READ_RESERVE),
        outbuf: BytesMut::new(),
        needs_flush: false,
    };
    let timeout_s = shared.config.limits.connect_timeout_s;
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(Duration::from_secs(timeout_s), read_connect(&mut io, &shared)) => r,
    };
    let mut connect = match first {
        Ok(Ok(connect)) => connect,
        Ok(Err(Close::Decode(DecodeError::UnsupportedProtocolLevel(level)))) => {
            let code = ConnectReturnCode::UnacceptableProtocolVersion;
            refuse(&mut io, code, &shared).await;
            warn!(%peer, level, reason = "unsupported protocol level [MQTT-3.1.2-2]", "connection refused");
            return;
        }
        Ok(Err(close)) => return log_close(peer, None, &close),
        Err(_) => return log_close(peer, None, &Close::ConnectTimeout(timeout_s)),
    };
    Metrics::add(&shared.metrics.messages_received, 1);
    let conn_id = shared.next_conn_id();
    let client_id = match check_client_id(&connect, &shared, conn_id) {
        Ok(id) => id,
        Err(code) => {
            refuse(&mut io, code, &shared).await;
            let id = connect.client_id.as_str();
            warn!(%peer, client_id = id, reason = code.reason(), "connection refused");
            return;
        }
    };
    if let Err(code) = login(&mut connect, &client_id, peer, cert, &shared, &shutdown).await {
        refuse(&mut io, code, &shared).await;
        warn!(%peer, client_id = %client_id, reason = code.reason(), "connection refused");
        return;
    }
    let live = LiveConn {
        conn_id,
        kick: CancellationToken::new(),
        exited: CancellationToken::new(),
    };
    // Whatever happens from here, waiters learn that this connection ended.
    let _exited = live.exited.clone().drop_guard();
    let Some(claim) = claim_session(&shared, &client_id, &connect, &live, &shutdown).await else {
        return;
    };
    let conn = Connection::start(io, peer, conn_id, shared, client_id, connect, claim);
    conn.run(&shutdown, &live.kick).await;
}

fn log_close(peer: SocketAddr, client_id: Option<&str>, close: &Close) {
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
    Durable,
}

/// A connection past CONNACK.
struct Connection<R, W> {
    io: Io<R, W>,
    conn_id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    client_id: Arc<str>,
    username: Option<String>,
    session: Session,
    mailbox: Arc<Mailbox>,
    will: Option<LastWill>,
    batch: Vec<Delivery>,
    tally: Tally,
    /// Notified when this connection's journal writes are durable.
    waker: Arc<Notify>,
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
    fn start(
        io: Io<R, W>,
        peer: SocketAddr,
        conn_id: u64,
        shared: Arc<Shared>,
        client_id: Arc<str>,
        connect: Connect,
        (mailbox, resumed): (Arc<Mailbox>, Option<crate::session::SessionState>),
    ) -> Self {
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
        let mut conn = Connection {
            io,
            conn_id,
            peer,
            shared,
            client_id,
            username: connect.username.map(|u| u.to_string()),
            session,
            mailbox,
            will: connect.last_will,
            batch: Vec::new(),
            tally: Tally::default(),
            waker: Arc::new(Notify::new()),
            ops: Vec::new(),
        };
        let connack = Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        });
        conn.encode(Transmit::Packet(connack));
        conn
    }

    async fn run(mut self, shutdown: &CancellationToken, kick: &CancellationToken) {
        // Packets sent right behind CONNECT are already buffered.
        let close = match self.on_bytes() {
            Ok(()) => self.drive(shutdown, kick).await,
            Err(close) => close,
        };
        self.finish(close);
    }

    async fn drive(&mut self, shutdown: &CancellationToken, kick: &CancellationToken) -> Close {
        let mailbox = self.mailbox.clone();
        let waker = self.waker.clone();
        loop {
            if let Some(journal) = &self.shared.journal {
                self.session.handle_durable(journal.durable());
            }
            self.pump();
            let held = self.session.waiting_for().is_some();
            let deadline = self
                .session
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            let can_read = self.session.transmit_len() < MAX_QUEUED_TRANSMITS;
            let want_mail = self.io.outbuf.len() < OUT_HIGH_WATER
                && self.session.would_send_now(QoS::AtMostOnce);
            let io = &mut self.io;
            if io.inbuf.capacity() - io.inbuf.len() < READ_RESERVE / 4 {
                io.inbuf.reserve(READ_RESERVE);
            }
            let wake = tokio::select! {
                _ = shutdown.cancelled() => Wake::Close(Close::Shutdown),
                _ = kick.cancelled() => Wake::Close(Close::TakenOver),
                r = io.rd.read_buf(&mut io.inbuf), if can_read => Wake::Read(r),
                w = write_or_flush(&mut io.wr, &mut io.outbuf), if !io.outbuf.is_empty() || io.needs_flush => w,
                _ = mailbox.notified(), if want_mail => Wake::Mail,
                _ = waker.notified(), if held => Wake::Durable,
                _ = sleep_until(deadline) => Wake::Timer,
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
                if self.io.outbuf.is_empty() && self.io.outbuf.capacity() > KEEP_CAPACITY {
                    // A burst of large messages is over: give the memory back.
                    self.io.outbuf = BytesMut::new();
                }
            }
            Wake::Flushed(Ok(())) => self.io.needs_flush = false,
            Wake::Read(Err(e)) | Wake::Wrote(Err(e)) | Wake::Flushed(Err(e)) => {
                return Err(e.into())
            }
            Wake::Mail | Wake::Durable => {}
            Wake::Timer => self.session.handle_timeout(now())?,
        }
        Ok(())
    }

    /// Decodes and handles every whole packet in the read buffer.
    fn on_bytes(&mut self) -> Result<(), Close> {
        let max = self.shared.config.limits.max_packet_size;
        while let Some(packet) = decode(&mut self.io.inbuf, max)? {
            self.tally.messages_received += 1;
            match self.session.handle_incoming(packet, now())? {
                None => {}
                Some(Event::Publish(p)) => self.on_publish(p),
                Some(Event::Subscribe(s)) => self.on_subscribe(s),
                Some(Event::Unsubscribe(u)) => self.on_unsubscribe(u),
                Some(Event::Disconnect) => return Err(Close::Disconnect),
            }
        }
        self.journal_ops();
        if self.io.inbuf.is_empty() && self.io.inbuf.capacity() > KEEP_CAPACITY {
            self.io.inbuf = BytesMut::with_capacity(READ_RESERVE);
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
        let (_, ticket) = self.shared.router.publish_with(
            &p.topic,
            &p.payload,
            p.qos(),
            p.retain,
            &mut self.ops,
            waker,
        );
        self.session.bind(ticket);
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
            self.mailbox.take_batch(&mut batch, |d| {
                if budget == 0 || (d.qos != QoS::AtMostOnce && room == 0) {
                    return false;
                }
                room -= usize::from(d.qos != QoS::AtMostOnce);
                budget = budget.saturating_sub(d.msg.wire_len());
                true
            });
            for d in batch.drain(..) {
                if self.shared.auth.may_receive(&self.info(), d.msg.topic()) {
                    self.session.offer(d);
                } else {
                    self.session.discard(&d);
                }
            }
            self.batch = batch;
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
