//! One network connection to the broker: TCP or TLS, the CONNECT/CONNACK
//! handshake under a timeout ([`connect`]), and [`Io`], which hides the bytes.
//!
//! The stream is split into a [`Reader`] and a [`Writer`] so that the
//! connection task can read while a write is blocked: with heavy traffic both
//! ways, a client that stops reading until its write completes deadlocks
//! with a broker that stops reading until its own writes to the client
//! complete. Packets are queued into the writer's buffer and leave through
//! cancel-safe partial writes; packets are decoded from a read buffer filled
//! by a cancel-safe read.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use midge_protocol::{ConnAck, ConnectReturnCode, Packet};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::{ConnectError, ConnectionError};
use crate::options::Options;
use crate::tls;
use crate::trace;

/// A byte stream to the broker: TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A connected stream, split into its reading and writing halves.
pub(crate) struct Io {
    pub reader: Reader,
    pub writer: Writer,
}

/// The reading half and its buffer of undecoded bytes.
pub(crate) struct Reader {
    stream: ReadHalf<Box<dyn Stream>>,
    buf: BytesMut,
    max_packet_size: usize,
    /// The TLS server name, for wording TLS errors; `None` for plain TCP.
    tls_name: Option<Arc<str>>,
    client_id: Arc<str>,
}

/// The writing half and its buffer of encoded packets not yet written.
pub(crate) struct Writer {
    stream: WriteHalf<Box<dyn Stream>>,
    buf: BytesMut,
    /// Bytes were written since the last completed flush (TLS buffers them).
    unflushed: bool,
    /// When the writer last had nothing to do or made progress: the start
    /// of the write timeout.
    last_progress: Instant,
    tls_name: Option<Arc<str>>,
    client_id: Arc<str>,
}

impl Io {
    fn new(
        stream: Box<dyn Stream>,
        max_packet_size: usize,
        tls_name: Option<Arc<str>>,
        client_id: Arc<str>,
    ) -> Io {
        // `tokio::io::split` rather than `TcpStream::into_split`: it works for
        // TLS too, and both halves live in the one connection task, so its
        // lock is never contended.
        let (read, write) = tokio::io::split(stream);
        Io {
            reader: Reader {
                stream: read,
                buf: BytesMut::with_capacity(8 * 1024),
                max_packet_size,
                tls_name: tls_name.clone(),
                client_id: client_id.clone(),
            },
            writer: Writer {
                stream: write,
                buf: BytesMut::with_capacity(8 * 1024),
                unflushed: false,
                last_progress: Instant::now(),
                tls_name,
                client_id,
            },
        }
    }

    /// Encodes `packet` into the write buffer; see [`Writer::queue`].
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        self.writer.queue(packet)
    }

    /// Writes the whole write buffer; see [`Writer::flush`].
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), ConnectionError> {
        self.writer.flush(timeout).await
    }

    /// Reads more bytes; see [`Reader::read_more`].
    pub async fn read_more(&mut self) -> Result<(), ConnectionError> {
        self.reader.read_more().await
    }

    /// The next complete packet read, if there is one.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ConnectionError> {
        self.reader.next_packet()
    }

    /// Shuts the stream down (TLS close_notify, TCP FIN), best effort.
    pub async fn shutdown(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.writer.stream.shutdown()).await;
    }
}

impl Reader {
    /// Reads more bytes into the read buffer. Cancel-safe: a read that is
    /// dropped before completing has not consumed anything.
    pub async fn read_more(&mut self) -> Result<(), ConnectionError> {
        self.buf.reserve(4096);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(ConnectionError::ClosedByBroker),
            Ok(_) => Ok(()),
            Err(e) => Err(io_error(self.tls_name.as_deref(), e)),
        }
    }

    /// The next complete packet in the read buffer, if there is one.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ConnectionError> {
        let packet = midge_protocol::decode(&mut self.buf, self.max_packet_size)
            .map_err(ConnectionError::Protocol)?;
        if let Some(packet) = &packet {
            trace::received(&self.client_id, packet);
        }
        Ok(packet)
    }
}

impl Writer {
    /// Encodes `packet` into the write buffer; nothing is sent until
    /// [`write_some`](Self::write_some) or [`flush`](Self::flush).
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        trace::sending(&self.client_id, packet);
        if !self.has_work() {
            // The write timeout counts from when there is something to write.
            self.last_progress = Instant::now();
        }
        midge_protocol::encode(packet, &mut self.buf).map_err(ConnectionError::Encode)
    }

    /// Bytes queued and not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether bytes wait to be written or flushed.
    pub fn has_work(&self) -> bool {
        !self.buf.is_empty() || self.unflushed
    }

    /// When the pending write counts as stuck: `timeout` after the writer
    /// last made progress; `None` with nothing to write.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.has_work().then(|| self.last_progress + timeout)
    }

    /// One step of writing: one write of as much of the buffer as the
    /// stream takes and, once the buffer is empty, a flush. Cancel-safe:
    /// `write_buf` writes nothing if dropped before completing, the buffer
    /// only advances by what was written, and a dropped flush resumes on
    /// the next call.
    pub async fn write_some(&mut self) -> Result<(), ConnectionError> {
        if !self.buf.is_empty() {
            match self.stream.write_buf(&mut self.buf).await {
                Ok(0) => return Err(self.error(std::io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) => return Err(self.error(e)),
            }
            self.unflushed = true;
            self.last_progress = Instant::now();
            if !self.buf.is_empty() {
                return Ok(());
            }
        }
        self.stream.flush().await.map_err(|e| self.error(e))?;
        self.unflushed = false;
        self.last_progress = Instant::now();
        Ok(())
    }

    /// Writes and flushes the whole write buffer, failing after `timeout`.
    /// For the handshake and the final DISCONNECT, when nothing else needs
    /// reading.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), ConnectionError> {
        let write = async {
            while self.has_work() {
                self.write_some().await?;
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(ConnectionError::WriteTimeout(timeout)),
        }
    }

    fn error(&self, e: std::io::Error) -> ConnectionError {
        io_error(self.tls_name.as_deref(), e)
    }
}

fn io_error(tls_name: Option<&str>, e: std::io::Error) -> ConnectionError {
    match (tls_name, tls::rustls_error(&e)) {
        (Some(name), Some(err)) => {
            ConnectionError::Tls(Arc::new(tls::describe_rustls_error(err, name)))
        }
        _ => ConnectionError::Io(Arc::new(e)),
    }
}

/// Connects to the broker, performs the TLS handshake if configured, sends
/// CONNECT and waits for CONNACK, all within the connect timeout.
pub(crate) async fn connect(
    opts: &Options,
    tls_config: Option<&Arc<ClientConfig>>,
    client_id: &Arc<str>,
) -> Result<(Io, ConnAck), ConnectError> {
    let addr = opts.addr();
    match tokio::time::timeout(opts.connect_timeout, handshake(opts, tls_config, client_id)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            addr,
            timeout: opts.connect_timeout,
        }),
    }
}

async fn handshake(
    opts: &Options,
    tls_config: Option<&Arc<ClientConfig>>,
    client_id: &Arc<str>,
) -> Result<(Io, ConnAck), ConnectError> {
    let tcp = tcp_connect(opts).await?;
    let _ = tcp.set_nodelay(true);
    let addr = opts.addr();
    let mut io = match (tls_config, &opts.tls) {
        (Some(config), Some(tls_opts)) => {
            let name = tls_opts.server_name_for(&opts.host)?;
            let name_text = name.to_str().into_owned();
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let stream =
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| match tls::rustls_error(&e) {
                        Some(err) => ConnectError::Tls(tls::describe_rustls_error(err, &name_text)),
                        None => ConnectError::Tls(crate::error::TlsError::HandshakeIo(e)),
                    })?;
            Io::new(
                Box::new(stream),
                opts.max_packet_size,
                Some(name_text.into()),
                client_id.clone(),
            )
        }
        _ => Io::new(Box::new(tcp), opts.max_packet_size, None, client_id.clone()),
    };
    io.queue(&Packet::Connect(opts.connect_packet(client_id)))
        .map_err(|e| match e {
            ConnectionError::Encode(e) => ConnectError::Encode(e),
            other => ConnectError::InvalidOptions(other.to_string()),
        })?;
    io.flush(opts.connect_timeout)
        .await
        .map_err(|e| handshake_error(e, &addr))?;
    loop {
        match io.next_packet() {
            Ok(Some(Packet::ConnAck(connack))) => {
                if connack.code != ConnectReturnCode::Accepted {
                    return Err(ConnectError::Refused(connack.code));
                }
                return Ok((io, connack));
            }
            Ok(Some(other)) => return Err(ConnectError::UnexpectedPacket(other.packet_type())),
            Ok(None) => {}
            Err(ConnectionError::Protocol(e)) => return Err(ConnectError::Protocol(e)),
            Err(e) => return Err(handshake_error(e, &addr)),
        }
        io.read_more()
            .await
            .map_err(|e| handshake_error(e, &addr))?;
    }
}

fn handshake_error(e: ConnectionError, addr: &str) -> ConnectError {
    match e {
        ConnectionError::ClosedByBroker => ConnectError::ClosedBeforeConnAck,
        ConnectionError::Tls(tls) => match Arc::try_unwrap(tls) {
            Ok(tls) => ConnectError::Tls(tls),
            Err(shared) => ConnectError::Tls(crate::error::TlsError::Other(shared.to_string())),
        },
        ConnectionError::Io(io) => ConnectError::Handshake {
            addr: addr.to_string(),
            source: Arc::try_unwrap(io)
                .unwrap_or_else(|shared| std::io::Error::new(shared.kind(), shared.to_string())),
        },
        ConnectionError::WriteTimeout(_) => ConnectError::Handshake {
            addr: addr.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"),
        },
        ConnectionError::Protocol(e) => ConnectError::Protocol(e),
        ConnectionError::Encode(e) => ConnectError::Encode(e),
        other => ConnectError::InvalidOptions(other.to_string()),
    }
}

async fn tcp_connect(opts: &Options) -> Result<TcpStream, ConnectError> {
    let port = opts.port();
    let addrs = tokio::net::lookup_host((opts.host.as_str(), port))
        .await
        .map_err(|source| ConnectError::Resolve {
            host: opts.host.clone(),
            source,
        })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some((addr.to_string(), e)),
        }
    }
    Err(match last {
        Some((addr, source)) => ConnectError::Io { addr, source },
        None => ConnectError::Resolve {
            host: opts.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses found"),
        },
    })
}
