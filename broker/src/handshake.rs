//! The CONNECT phase of a connection: reading the first packet, checking the
//! client id, logging in (password, or TLS client certificate, and the will
//! topic), refusing with a CONNACK code, and claiming the session (which
//! may mean waiting for an older connection with the same client id to let
//! go [MQTT-3.1.4-2]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use midge_protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, Packet, ProtocolLevel,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::ClientInfo;
use crate::conn_io::{read_some, Io};
use crate::connection::{log_close, too_deep, Accepted, Close, Connection};
use crate::mailbox::Mailbox;
use crate::metrics::Metrics;
use crate::registry::Claim;
use crate::registry::LiveConn;
use crate::session::SessionState;
use crate::shared::Shared;
use crate::tls::PeerIdentity;

/// How long a refused client gets to take its CONNACK.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest client id MQTT 3.1 allows.
const MQTT31_MAX_CLIENT_ID: usize = 23;
/// The longest a connection over `max_connections` may take to send CONNECT
/// before it is closed without an answer.
const REFUSAL_READ_TIMEOUT_S: u64 = 5;

/// The CONNECT phase, to CONNACK: `None` when the connection ended in it.
/// CONNECT must have come by `deadline` (`connect_timeout_s` from accept).
pub(crate) async fn accept<S>(
    stream: S,
    peer: SocketAddr,
    cert: Option<PeerIdentity>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    deadline: tokio::time::Instant,
) -> Option<Accepted<S>>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut io = Io::new(stream);
    let timeout_s = shared.config.limits.connect_timeout_s;
    let first = tokio::select! {
        _ = shutdown.cancelled() => return None,
        r = tokio::time::timeout_at(deadline, read_connect(&mut io, &shared)) => r,
    };
    let mut connect = match first {
        Ok(Ok(connect)) => connect,
        Ok(Err(Close::Decode(DecodeError::UnsupportedProtocolLevel(level)))) => {
            let code = ConnectReturnCode::UnacceptableProtocolVersion;
            refuse(&mut io, code, &shared).await;
            warn!(%peer, level, reason = "unsupported protocol level [MQTT-3.1.2-2]", "connection refused");
            return None;
        }
        Ok(Err(close)) => {
            log_close(peer, None, &close);
            return None;
        }
        Err(_) => {
            log_close(peer, None, &Close::ConnectTimeout(timeout_s));
            return None;
        }
    };
    Metrics::add(&shared.metrics.messages_received, 1);
    let max_levels = shared.config.limits.max_topic_levels;
    if let Some(will) = connect.last_will.as_ref() {
        if too_deep(&will.topic, max_levels) {
            let close = Close::TooManyLevels("will topic", max_levels);
            log_close(peer, Some(connect.client_id.as_str()), &close);
            return None;
        }
    }
    let conn_id = shared.next_conn_id();
    let client_id = match check_client_id(&connect, &shared, conn_id) {
        Ok(id) => id,
        Err(code) => {
            refuse(&mut io, code, &shared).await;
            let id = connect.client_id.as_str();
            warn!(%peer, client_id = id, reason = code.reason(), "connection refused");
            return None;
        }
    };
    if let Err(code) = login(&mut connect, &client_id, peer, cert, &shared, &shutdown).await {
        refuse(&mut io, code, &shared).await;
        warn!(%peer, client_id = %client_id, reason = code.reason(), "connection refused");
        return None;
    }
    let live = LiveConn::new(conn_id);
    // Whatever happens from here, waiters learn that this connection ended.
    let exited = live.signal.exit_guard();
    let claim = claim_session(&shared, &client_id, &connect, &live, &shutdown).await?;
    let conn = Connection::start(io, peer, shared, client_id, connect, claim);
    Some((conn, live, exited))
}

/// Reads until a whole first packet is there; it must be CONNECT.
pub(crate) async fn read_connect<S>(io: &mut Io<S>, shared: &Shared) -> Result<Connect, Close>
where
    S: AsyncRead + Unpin,
{
    let max = shared.config.limits.max_packet_size;
    loop {
        match decode(&mut io.inbuf, max)? {
            Some(Packet::Connect(connect)) => return Ok(connect),
            Some(other) => return Err(Close::NotConnect(other.packet_type())),
            None => {}
        }
        match read_some(&mut io.stream, &mut io.inbuf).await? {
            0 => return Err(Close::PeerClosed),
            n => Metrics::add(&shared.metrics.bytes_received, n as u64),
        }
    }
}

/// The client id to use, or the CONNACK code refusing it.
pub(crate) fn check_client_id(
    connect: &Connect,
    shared: &Shared,
    conn_id: u64,
) -> Result<Arc<str>, ConnectReturnCode> {
    let id = connect.client_id.as_str();
    let rejected = ConnectReturnCode::IdentifierRejected;
    match connect.protocol {
        // MQTT 3.1: 1 to 23 characters.
        ProtocolLevel::V3_1 if id.is_empty() || id.chars().count() > MQTT31_MAX_CLIENT_ID => {
            Err(rejected)
        }
        // A zero-length id needs CleanSession=1 [MQTT-3.1.3-7] [MQTT-3.1.3-8].
        ProtocolLevel::V3_1_1 if id.is_empty() && !connect.clean_session => Err(rejected),
        ProtocolLevel::V3_1_1 if id.is_empty() => Ok(shared.assign_client_id(conn_id).into()),
        _ => Ok(id.into()),
    }
}

/// Decides who the client is and whether it may connect; on success
/// `connect.username` is the name it acts as. `cert` is given on listeners
/// with `identity_as_username`: the verified client certificate's common
/// name replaces the user name and no password is checked (no certificate:
/// 0x05). The will topic must be writable (else 0x05, as Mosquitto does).
/// A failed login first waits out the address's growing throttle delay.
pub(crate) async fn login(
    connect: &mut Connect,
    client_id: &str,
    peer: SocketAddr,
    cert: Option<PeerIdentity>,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> Result<(), ConnectReturnCode> {
    let verdict = match cert {
        Some(PeerIdentity {
            common_name: Some(cn),
            ..
        }) if !cn.is_empty() => {
            connect.username = Some(cn.into());
            connect.password = None;
            Ok(())
        }
        Some(_) => Err(ConnectReturnCode::NotAuthorized),
        None => authenticate(connect, client_id, peer, shared).await,
    };
    if verdict.is_err() {
        Metrics::add(&shared.metrics.auth_failures, 1);
        let delay = shared.login_throttle.on_failure(peer.ip(), Instant::now());
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        return verdict;
    }
    let info = ClientInfo {
        client_id,
        username: connect.username.as_deref(),
        peer,
    };
    match &connect.last_will {
        Some(will) if !shared.auth.may_publish(&info, &will.topic) => {
            debug!(%peer, client_id, topic = %will.topic, "will topic not authorised");
            Err(ConnectReturnCode::NotAuthorized)
        }
        _ => Ok(()),
    }
}

/// Asks the authorizer. A client with a user name is checked on a blocking
/// thread: password hashes are slow on purpose (a missing password costs
/// as much as a wrong one).
async fn authenticate(
    connect: &Connect,
    client_id: &str,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<(), ConnectReturnCode> {
    let Some(username) = connect.username.clone() else {
        let info = ClientInfo {
            client_id,
            username: None,
            peer,
        };
        return shared.auth.authenticate(&info, connect.password.as_deref());
    };
    let password = connect.password.clone();
    let (auth, client_id) = (shared.auth.clone(), client_id.to_owned());
    let check = tokio::task::spawn_blocking(move || {
        let info = ClientInfo {
            client_id: &client_id,
            username: Some(&username),
            peer,
        };
        auth.authenticate(&info, password.as_deref())
    });
    check
        .await
        .unwrap_or(Err(ConnectReturnCode::ServerUnavailable))
}

/// Answers CONNECT with a refusal and gives the client a moment to read it;
/// the caller then closes the connection [MQTT-3.2.2-5].
pub(crate) async fn refuse<S>(io: &mut Io<S>, code: ConnectReturnCode, shared: &Shared)
where
    S: AsyncWrite + Unpin,
{
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        code,
    });
    let mut buf = BytesMut::with_capacity(4);
    if encode(&connack, &mut buf).is_ok() {
        let write = async {
            io.stream.write_all(&buf).await?;
            io.stream.shutdown().await
        };
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
        Metrics::add(&shared.metrics.messages_sent, 1);
        Metrics::add(&shared.metrics.bytes_sent, buf.len() as u64);
    }
}

/// Answers a connection over `max_connections`: CONNACK 0x03 (server
/// unavailable) if it sends CONNECT in time, then close.
pub(crate) async fn refuse_excess<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut io = Io::new(stream);
    let limit = shared.config.limits.max_connections;
    warn!(%peer, limit, reason = "max_connections reached", "connection refused");
    let wait = Duration::from_secs(
        shared
            .config
            .limits
            .connect_timeout_s
            .min(REFUSAL_READ_TIMEOUT_S),
    );
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(wait, read_connect(&mut io, &shared)) => r,
    };
    if let Ok(Ok(_)) = first {
        refuse(&mut io, ConnectReturnCode::ServerUnavailable, &shared).await;
    }
}

/// Claims the session, waiting for a connection that holds it to let go,
/// and, when an old persistent session was discarded, for the journal to
/// hold that (CONNACK promises a clean start). `None` if the broker shuts
/// down meanwhile.
pub(crate) async fn claim_session(
    shared: &Shared,
    client_id: &Arc<str>,
    connect: &Connect,
    live: &LiveConn,
    shutdown: &CancellationToken,
) -> Option<(Arc<Mailbox>, Option<SessionState>)> {
    loop {
        match shared
            .registry
            .claim(client_id, connect.clean_session, live)
        {
            Claim::Granted {
                mailbox,
                resumed,
                ticket,
            } => {
                if let Some(journal) = shared.journal.as_ref().filter(|_| ticket != 0) {
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = journal.wait_durable(ticket) => {}
                    }
                }
                return Some((mailbox, resumed));
            }
            Claim::Busy(old) => {
                debug!(client_id = %client_id, "taking over the session from its connection");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = old.exited() => {}
                }
            }
        }
    }
}
