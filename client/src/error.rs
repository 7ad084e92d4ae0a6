//! Errors, one enum per operation: [`ConnectError`] for establishing a
//! connection, [`PublishError`], [`SubscribeError`], [`UnsubscribeError`] and
//! [`DisconnectError`] for the calls on a [`Client`](crate::Client),
//! [`ConnectionError`] for why a live connection went away, and [`TlsError`]
//! for everything TLS, worded so the fix is obvious ("name mismatch",
//! "unknown CA", "bad PEM").

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use midge_protocol::{ConnectReturnCode, DecodeError, EncodeError, PacketType};

/// Why [`ClientBuilder::connect`](crate::ClientBuilder::connect) (or a
/// reconnect attempt) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The broker URL could not be parsed.
    #[error("invalid broker URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The options contradict each other or the protocol.
    #[error("invalid client options: {0}")]
    InvalidOptions(String),
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The TCP connection failed (refused, unreachable, ...).
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// The address (or host:port) tried last.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// The connection was lost while waiting for CONNACK.
    #[error("connection to {addr} lost before CONNACK: {source}")]
    Handshake {
        /// host:port of the broker.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// Nothing (TCP, TLS or CONNACK) completed within the connect timeout.
    #[error("timed out after {timeout:?} connecting to {addr}")]
    Timeout {
        /// host:port of the broker.
        addr: String,
        /// The connect timeout in force.
        timeout: Duration,
    },
    /// TLS setup or the TLS handshake failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The broker answered CONNACK with a refusal; the code is named in the
    /// message the way mosquitto words it.
    #[error("{} (CONNACK return code {} {:?})", .0.reason(), *.0 as u8, .0)]
    Refused(ConnectReturnCode),
    /// The broker sent something that is not MQTT.
    #[error("protocol error while connecting: {0}")]
    Protocol(#[from] DecodeError),
    /// The first packet from the broker was not CONNACK [MQTT-3.2.0-1].
    #[error("expected CONNACK from the broker, got {0:?}")]
    UnexpectedPacket(PacketType),
    /// The broker closed the connection without answering CONNECT.
    #[error("the broker closed the connection before sending CONNACK")]
    ClosedBeforeConnAck,
    /// The CONNECT packet could not be encoded (a field too long).
    #[error("cannot encode CONNECT: {0}")]
    Encode(#[from] EncodeError),
}

impl ConnectError {
    /// The CONNACK return code, when the broker refused the connection.
    pub fn return_code(&self) -> Option<ConnectReturnCode> {
        match self {
            ConnectError::Refused(code) => Some(*code),
            _ => None,
        }
    }
}

/// TLS configuration and handshake failures, in words.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The error from the file system.
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("bad PEM in {what}: {reason}")]
    BadPem {
        /// Which file or value ("CA file /etc/ca.pem").
        what: String,
        /// What the parser said.
        reason: String,
    },
    /// A PEM file holds no certificate.
    #[error("bad PEM in {what}: no certificate found (expected a \"BEGIN CERTIFICATE\" block)")]
    NoCertificate {
        /// Which file or value.
        what: String,
    },
    /// A PEM file holds no private key.
    #[error("bad PEM in {what}: no private key found (expected a \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)")]
    NoPrivateKey {
        /// Which file or value.
        what: String,
    },
    /// A CA certificate was rejected as a trust anchor.
    #[error("unusable CA certificate in {what}: {reason}")]
    BadCaCertificate {
        /// Which file or value.
        what: String,
        /// Why.
        reason: String,
    },
    /// No trusted root certificates could be loaded from the platform.
    #[error("no trusted root certificates: the platform store is empty or unreadable ({0}); give a CA file")]
    NoRootCertificates(String),
    /// The client certificate and key cannot be used together.
    #[error("unusable client certificate or key: {0}")]
    ClientCertificate(String),
    /// The host name (or SNI override) is not a valid DNS name or IP address.
    #[error("{0:?} is not a valid TLS server name")]
    InvalidServerName(String),
    /// The server's certificate is valid, but not for the name we connected to.
    #[error("certificate name mismatch: the server's certificate is not valid for {expected:?}{}", presented_names(.presented))]
    NameMismatch {
        /// The name we expected (host or SNI override).
        expected: String,
        /// The names the certificate presents, when known.
        presented: Vec<String>,
    },
    /// The server's certificate chain does not lead to a trusted root.
    #[error("unknown CA: the server's certificate is not signed by a trusted certificate authority (use a CA file that contains the broker's CA)")]
    UnknownCa,
    /// The server's certificate has expired.
    #[error("the server's certificate has expired")]
    Expired,
    /// The server's certificate is not valid yet.
    #[error("the server's certificate is not valid yet")]
    NotValidYet,
    /// The server's certificate was rejected for another reason.
    #[error("invalid server certificate: {0}")]
    InvalidCertificate(String),
    /// The server aborted the handshake with an alert, typically because it
    /// requires a client certificate or rejected ours.
    #[error("the server rejected the TLS connection: alert {alert}{}", alert_hint(.alert))]
    AlertReceived {
        /// The alert, as rustls names it.
        alert: String,
    },
    /// The connection failed during the handshake, without a TLS alert.
    #[error("the connection failed during the TLS handshake: {0} (is this port a TLS listener?)")]
    HandshakeIo(io::Error),
    /// Any other TLS failure.
    #[error("TLS error: {0}")]
    Other(String),
}

fn presented_names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (it is valid for {})", names.join(", "))
    }
}

fn alert_hint(alert: &str) -> &'static str {
    match alert {
        "CertificateRequired" | "HandshakeFailure" => {
            " (the broker may require a client certificate)"
        }
        "BadCertificate" | "UnknownCA" | "CertificateUnknown" => {
            " (the broker did not accept our client certificate)"
        }
        _ => "",
    }
}

/// Why a live connection ended; carried by
/// [`Event::Disconnected`](crate::Event::Disconnected).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectionError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(Arc<io::Error>),
    /// A TLS failure after the handshake (for instance an alert).
    #[error(transparent)]
    Tls(Arc<TlsError>),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    ClosedByBroker,
    /// No PINGRESP arrived in time: the connection is dead.
    #[error("no PINGRESP within {0:?}: the connection is dead")]
    PingTimeout(Duration),
    /// Writing to the broker did not complete in time.
    #[error("writing to the broker timed out after {0:?}")]
    WriteTimeout(Duration),
    /// The broker sent bytes that are not valid MQTT.
    #[error("protocol violation by the broker: {0}")]
    Protocol(DecodeError),
    /// The broker sent a packet a client must never receive.
    #[error("unexpected {0:?} packet from the broker")]
    UnexpectedPacket(PacketType),
    /// A SUBACK's return codes did not match its SUBSCRIBE [MQTT-3.9.3-1].
    #[error("SUBACK has {got} return codes for {expected} topic filters [MQTT-3.9.3-1]")]
    SubAckMismatch {
        /// Filters in the SUBSCRIBE.
        expected: usize,
        /// Codes in the SUBACK.
        got: usize,
    },
    /// A packet could not be encoded.
    #[error("cannot encode packet: {0}")]
    Encode(EncodeError),
}

/// Why a publish did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic is empty, holds a wildcard or a NUL [MQTT-4.7.3-1] [MQTT-3.3.2-2].
    #[error("invalid topic name {0:?}: it must be non-empty and contain no '+', '#' or NUL")]
    InvalidTopic(String),
    /// The packet would exceed the maximum packet size.
    #[error("publish of {size} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge {
        /// Encoded size of the PUBLISH.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The client is offline and its offline buffer is full.
    #[error("offline buffer full: {capacity} publishes are already waiting for the connection to return")]
    BufferFull {
        /// The buffer's capacity.
        capacity: usize,
    },
    /// `try_publish` only: the request queue to the connection task is full.
    #[error("the client's request queue is full; retry later or use publish().await")]
    QueueFull,
    /// The connection was lost and reconnecting is off (or gave up) before
    /// the broker acknowledged the message.
    #[error("connection lost before the broker acknowledged the message")]
    ConnectionLost,
    /// The client was disconnected or closed.
    #[error("the client is closed")]
    Closed,
}

/// Why a subscribe did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// A topic filter is malformed [MQTT-4.7.1-2] [MQTT-4.7.1-3].
    #[error(
        "invalid topic filter {0:?}: '+' and '#' must fill a whole level and '#' must be last"
    )]
    InvalidFilter(String),
    /// No filters were given.
    #[error("subscribe needs at least one topic filter")]
    NoFilters,
    /// The broker refused the subscription (SUBACK return code 0x80).
    #[error("the broker refused the subscription to {}", .0.join(", "))]
    Refused(Vec<String>),
    /// The connection was lost and reconnecting is off (or gave up).
    #[error("connection lost before the broker acknowledged the subscription")]
    ConnectionLost,
    /// The client was disconnected or closed.
    #[error("the client is closed")]
    Closed,
}

/// Why an unsubscribe did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsubscribeError {
    /// A topic filter is malformed.
    #[error("invalid topic filter {0:?}")]
    InvalidFilter(String),
    /// The connection was lost and reconnecting is off (or gave up).
    #[error("connection lost before the broker acknowledged the unsubscribe")]
    ConnectionLost,
    /// The client was disconnected or closed.
    #[error("the client is closed")]
    Closed,
}

/// Why a disconnect was not clean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectError {
    /// In-flight work did not finish within the disconnect timeout;
    /// DISCONNECT was sent anyway and the unfinished publishes failed.
    #[error(
        "{unfinished} publishes were still unacknowledged after {timeout:?}; disconnected anyway"
    )]
    Timeout {
        /// Publishes that had not completed.
        unfinished: usize,
        /// The disconnect timeout.
        timeout: Duration,
    },
    /// The client was offline (or the connection was lost while flushing):
    /// its unfinished publishes failed.
    #[error("the client was not connected; {unfinished} unfinished publishes were dropped")]
    NotConnected {
        /// Publishes that had not completed.
        unfinished: usize,
    },
    /// The client was already closed.
    #[error("the client is already closed")]
    Closed,
}
