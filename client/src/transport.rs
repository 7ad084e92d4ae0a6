//! One network connection to the broker: TCP or TLS, the CONNECT/CONNACK
//! handshake under a timeout ([`connect`]), and [`Io`], which hides the bytes:
//! packets are queued into a write buffer and leave in one flush, and are
//! decoded from a read buffer that is filled by a cancel-safe read.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use midge_protocol::{ConnAck, ConnectReturnCode, Packet};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{ConnectError, ConnectionError};
use crate::options::Options;
use crate::tls;
use crate::trace;

/// A byte stream to the broker: TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A connected stream with its read and write buffers.
pub(crate) struct Io {
    stream: Box<dyn Stream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    max_packet_size: usize,
    /// The TLS server name, for wording TLS errors; `None` for plain TCP.
    tls_name: Option<String>,
    client_id: Arc<str>,
}

impl Io {
    fn new(
        stream: Box<dyn Stream>,
        max_packet_size: usize,
        tls_name: Option<String>,
        client_id: Arc<str>,
    ) -> Io {
        Io {
            stream,
            read_buf: BytesMut::with_capacity(8 * 1024),
            write_buf: BytesMut::with_capacity(8 * 1024),
            max_packet_size,
            tls_name,
            client_id,
        }
    }

    /// Encodes `packet` into the write buffer; nothing is sent until [`flush`](Self::flush).
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        trace::sending(&self.client_id, packet);
        midge_protocol::encode(packet, &mut self.write_buf).map_err(ConnectionError::Encode)
    }

    /// Writes the whole write buffer, failing after `timeout`.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), ConnectionError> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.write_buf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {
                self.write_buf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(self.io_error(e)),
            Err(_) => Err(ConnectionError::WriteTimeout(timeout)),
        }
    }

    /// Reads more bytes into the read buffer. Cancel-safe: a read that is
    /// dropped before completing has not consumed anything.
    pub async fn read_more(&mut self) -> Result<(), ConnectionError> {
        self.read_buf.reserve(4096);
        match self.stream.read_buf(&mut self.read_buf).await {
            Ok(0) => Err(ConnectionError::ClosedByBroker),
            Ok(_) => Ok(()),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// The next complete packet in the read buffer, if there is one.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ConnectionError> {
        let packet = midge_protocol::decode(&mut self.read_buf, self.max_packet_size)
            .map_err(ConnectionError::Protocol)?;
        if let Some(packet) = &packet {
            trace::received(&self.client_id, packet);
        }
        Ok(packet)
    }

    /// Shuts the stream down (TLS close_notify, TCP FIN), best effort.
    pub async fn shutdown(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.stream.shutdown()).await;
    }

    fn io_error(&self, e: std::io::Error) -> ConnectionError {
        match (&self.tls_name, tls::rustls_error(&e)) {
            (Some(name), Some(err)) => {
                ConnectionError::Tls(Arc::new(tls::describe_rustls_error(err, name)))
            }
            _ => ConnectionError::Io(Arc::new(e)),
        }
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
                Some(name_text),
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
