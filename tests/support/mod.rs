//! Shared test support: an in-process broker fixture and a raw-packet MQTT
//! client; [`paho`] runs the paho-mqtt scripts of `tests/python/`.
//!
//! The client speaks bytes over a plain `TcpStream` and uses only the codec,
//! never the client crate, so a test sees exactly what the broker put on the
//! wire. Every wait is bounded by a timeout and every socket is on
//! 127.0.0.1 with a port the kernel picked, so tests run in parallel and a
//! broken broker fails a test instead of hanging it.
//!
//! Each test file includes this module with `mod support;` and uses only a
//! part of it.
#![allow(dead_code)]

pub mod paho;
pub mod rng;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_protocol::{
    decode, encode, ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PacketId, ProtocolLevel,
    Publish, QoS, QosPid, Subscribe, SubscribeFilter, SubscribeReturnCode, Unsubscribe,
    DEFAULT_MAX_PACKET_SIZE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// How long a test waits for something that should happen.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// How long a test waits to be fairly sure that something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// A packet id from a number; panics on zero, which is a test bug.
pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("packet ids are never zero")
}

/// A broker running in this process on 127.0.0.1 with a kernel-chosen port.
pub struct TestBroker {
    broker: midge_broker::Broker,
    /// Where the plain listener accepts connections.
    pub addr: SocketAddr,
}

impl TestBroker {
    /// A broker with the test defaults: one listener on 127.0.0.1:0, a short
    /// CONNECT timeout and `$SYS` publishing off.
    pub async fn start() -> TestBroker {
        TestBroker::start_with(|_| {}).await
    }

    /// A broker with the test defaults changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut midge_broker::Config)) -> TestBroker {
        TestBroker::start_with_auth(configure, Arc::new(midge_broker::auth::AllowAll)).await
    }

    /// A broker with the test defaults changed by `configure` that asks
    /// `auth` what clients may do.
    // Listeners gain fields (TLS) in later issues; the update keeps this
    // building when they do.
    #[allow(clippy::needless_update)]
    pub async fn start_with_auth(
        configure: impl FnOnce(&mut midge_broker::Config),
        auth: Arc<dyn midge_broker::auth::Authorizer>,
    ) -> TestBroker {
        let mut config = midge_broker::Config {
            listeners: vec![midge_broker::ListenerConfig {
                bind: "127.0.0.1:0".parse().expect("a socket address"),
                ..Default::default()
            }],
            ..Default::default()
        };
        config.limits.connect_timeout_s = 2;
        config.sys.interval_s = 0;
        // In memory unless a test says otherwise: tests run in parallel and
        // must not share a data directory.
        config.persistence.enabled = false;
        configure(&mut config);
        let broker = timeout(TIMEOUT, midge_broker::Broker::start_with_auth(config, auth))
            .await
            .expect("the broker starts within the timeout")
            .expect("the broker starts");
        let addr = broker.local_addrs()[0];
        TestBroker { broker, addr }
    }

    /// A TCP connection to the broker that has sent nothing yet.
    pub async fn tcp(&self) -> Client {
        Client::tcp(self.addr).await
    }

    /// A client connected with CleanSession=1 and the given id.
    pub async fn client(&self, id: &str) -> Client {
        Client::connect(self.addr, id).await
    }

    /// A client connected with CleanSession=0; also returns session present.
    pub async fn persistent(&self, id: &str) -> (Client, bool) {
        Client::connect_persistent(self.addr, id).await
    }

    /// Connects with `connect` and returns the client and the CONNACK.
    pub async fn connect_with(&self, connect: Connect) -> (Client, ConnAck) {
        let mut client = self.tcp().await;
        let ack = client.handshake(connect).await;
        (client, ack)
    }

    /// Stops the broker and waits for it to finish.
    pub async fn shutdown(self) {
        timeout(TIMEOUT, self.broker.shutdown())
            .await
            .expect("the broker shuts down within the timeout");
    }
}

/// What the next read from the broker gave.
#[derive(Debug)]
pub enum Event {
    /// A whole packet.
    Packet(Packet),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing within the wait.
    Timeout,
}

/// A raw MQTT client over TCP: sends packets or bytes and reads packets.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    next_pkid: u16,
}

impl Client {
    /// Opens a TCP connection and sends nothing.
    pub async fn tcp(addr: SocketAddr) -> Client {
        let stream = timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("TCP connect within the timeout")
            .expect("TCP connect");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Client {
            stream,
            buf: BytesMut::with_capacity(4096),
            next_pkid: 0,
        }
    }

    /// Connects with CleanSession=1 and asserts the CONNACK accepts.
    pub async fn connect(addr: SocketAddr, id: &str) -> Client {
        let mut client = Client::tcp(addr).await;
        let ack = client.handshake(Connect::new(id)).await;
        assert_eq!(ack.code, ConnectReturnCode::Accepted, "CONNACK for {id}");
        assert!(!ack.session_present, "CleanSession=1 never has a session");
        client
    }

    /// Connects with CleanSession=0, asserts acceptance, and returns the
    /// session-present flag.
    pub async fn connect_persistent(addr: SocketAddr, id: &str) -> (Client, bool) {
        let mut client = Client::tcp(addr).await;
        let ack = client.handshake(connect_packet(id, false)).await;
        assert_eq!(ack.code, ConnectReturnCode::Accepted, "CONNACK for {id}");
        (client, ack.session_present)
    }

    /// Sends `connect` and returns the CONNACK.
    pub async fn handshake(&mut self, connect: Connect) -> ConnAck {
        self.send(Packet::Connect(connect)).await;
        self.expect_connack().await
    }

    /// A fresh packet id for this connection, never zero.
    pub fn pkid(&mut self) -> PacketId {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        pid(self.next_pkid)
    }

    /// Encodes and sends one packet.
    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, &mut out).expect("the test packet encodes");
        self.send_raw(&out).await;
    }

    /// Encodes several packets and sends them in one write.
    pub async fn send_all(&mut self, packets: impl IntoIterator<Item = Packet>) {
        let mut out = BytesMut::new();
        for packet in packets {
            encode(&packet, &mut out).expect("the test packet encodes");
        }
        self.send_raw(&out).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        timeout(TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("write within the timeout")
            .expect("write to the broker");
    }

    /// Sends bytes, ignoring a connection the broker already closed.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match timeout(TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// The next packet, a close, or a timeout after `within`.
    pub async fn next_event(&mut self, within: Duration) -> Event {
        let deadline = Instant::now() + within;
        loop {
            match decode(&mut self.buf, DEFAULT_MAX_PACKET_SIZE) {
                Ok(Some(packet)) => return Event::Packet(packet),
                Ok(None) => {}
                Err(e) => panic!("the broker sent a malformed packet: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Event::Timeout,
                Ok(Ok(0)) => {
                    if !self.buf.is_empty() {
                        panic!("the broker closed mid-packet: {:?}", &self.buf[..]);
                    }
                    return Event::Closed;
                }
                Ok(Ok(_)) => {}
                // A close with unread data in the broker's receive buffer
                // arrives as a reset.
                Ok(Err(_)) => return Event::Closed,
            }
        }
    }

    /// The next packet within [`TIMEOUT`]; panics on a close or a timeout.
    pub async fn recv(&mut self) -> Packet {
        match self.next_event(TIMEOUT).await {
            Event::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next packet, which must be a CONNACK.
    pub async fn expect_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Asserts that the next packet is `expected`.
    pub async fn expect(&mut self, expected: Packet) {
        let got = self.recv().await;
        assert_eq!(got, expected);
    }

    /// Asserts that the broker closes the connection within [`TIMEOUT`]
    /// without sending anything first.
    pub async fn expect_closed(&mut self) {
        self.expect_closed_within(TIMEOUT).await;
    }

    /// Asserts that the broker closes the connection within `within`
    /// without sending anything first.
    pub async fn expect_closed_within(&mut self, within: Duration) {
        match self.next_event(within).await {
            Event::Closed => {}
            other => panic!("expected the broker to close the connection, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives and the connection stays open for
    /// `within`.
    pub async fn expect_nothing(&mut self, within: Duration) {
        match self.next_event(within).await {
            Event::Timeout => {}
            other => panic!("expected nothing for {within:?}, got {other:?}"),
        }
    }

    /// Asserts the connection is alive: PINGREQ is answered by PINGRESP.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        self.expect(Packet::PingResp).await;
    }

    /// Subscribes and returns the return codes; checks the SUBACK's id.
    pub async fn subscribe_many(&mut self, filters: &[(&str, QoS)]) -> Vec<SubscribeReturnCode> {
        let pkid = self.pkid();
        let filters = filters
            .iter()
            .map(|(f, qos)| SubscribeFilter {
                filter: (*f).into(),
                qos: *qos,
            })
            .collect();
        self.send(Packet::Subscribe(Subscribe { pkid, filters }))
            .await;
        match self.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.pkid, pkid, "SUBACK carries the SUBSCRIBE's id");
                ack.return_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter and asserts it was granted `qos`.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe_many(&[(filter, qos)]).await;
        assert_eq!(
            codes,
            vec![SubscribeReturnCode::Success(qos)],
            "SUBACK for {filter}"
        );
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        let pkid = self.pkid();
        self.send(Packet::Unsubscribe(Unsubscribe {
            pkid,
            filters: vec![filter.into()],
        }))
        .await;
        self.expect(Packet::UnsubAck(pkid)).await;
    }

    /// Publishes and completes the QoS flow as the sender: waits for PUBACK
    /// at QoS 1, runs PUBREC / PUBREL / PUBCOMP at QoS 2.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let pkid = self.pkid();
        let publish = publish_packet(topic, payload, qos, pkid, retain);
        self.send(Packet::Publish(publish)).await;
        self.finish_publish(qos, pkid).await;
    }

    /// Completes an already sent publish as the sender.
    pub async fn finish_publish(&mut self, qos: QoS, pkid: PacketId) {
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.expect(Packet::PubAck(pkid)).await,
            QoS::ExactlyOnce => {
                self.expect(Packet::PubRec(pkid)).await;
                self.send(Packet::PubRel(pkid)).await;
                self.expect(Packet::PubComp(pkid)).await;
            }
        }
    }

    /// Acknowledges a received publish as the receiver: PUBACK at QoS 1,
    /// PUBREC / PUBREL / PUBCOMP at QoS 2.
    pub async fn ack(&mut self, publish: &Publish) {
        match publish.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(Packet::PubAck(id)).await,
            QosPid::ExactlyOnce(id) => {
                self.send(Packet::PubRec(id)).await;
                self.expect(Packet::PubRel(id)).await;
                self.send(Packet::PubComp(id)).await;
            }
        }
    }

    /// Receives a PUBLISH, acknowledges it and returns it.
    pub async fn recv_and_ack(&mut self) -> Publish {
        let publish = self.recv_publish().await;
        self.ack(&publish).await;
        publish
    }

    /// Receives `n` PUBLISHes and acknowledges each, completing QoS 2 flows
    /// whose PUBRELs may interleave with later PUBLISHes; returns them in
    /// arrival order once every flow is complete.
    pub async fn recv_publishes(&mut self, n: usize) -> Vec<Publish> {
        let mut got = Vec::new();
        let mut awaiting_pubrel = 0;
        while got.len() < n || awaiting_pubrel > 0 {
            match self.recv().await {
                Packet::Publish(p) => {
                    match p.qos_pid {
                        QosPid::AtMostOnce => {}
                        QosPid::AtLeastOnce(id) => self.send(Packet::PubAck(id)).await,
                        QosPid::ExactlyOnce(id) => {
                            self.send(Packet::PubRec(id)).await;
                            awaiting_pubrel += 1;
                        }
                    }
                    got.push(p);
                }
                Packet::PubRel(id) => {
                    assert!(awaiting_pubrel > 0, "PUBREL {id} without a PUBREC");
                    self.send(Packet::PubComp(id)).await;
                    awaiting_pubrel -= 1;
                }
                other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
            }
        }
        assert_eq!(got.len(), n, "more PUBLISHes than expected: {got:?}");
        got
    }

    /// Waits up to 6 s for a PUBLISH on `topic` whose payload is a number
    /// for which `accept` holds (for `$SYS` counters); acknowledges what
    /// comes meanwhile.
    pub async fn wait_for_number(&mut self, topic: &str, accept: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut last = None;
        while Instant::now() < deadline {
            match self
                .next_event(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Event::Packet(Packet::Publish(p)) => {
                    self.ack(&p).await;
                    if &*p.topic == topic {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        let n: u64 = text
                            .trim()
                            .parse()
                            .unwrap_or_else(|_| panic!("{topic} is not a number: {text:?}"));
                        if accept(n) {
                            return n;
                        }
                        last = Some(n);
                    }
                }
                Event::Timeout => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("{topic} never reached the expected value; last {last:?}");
    }

    /// Sends DISCONNECT and waits for the broker to close.
    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect).await;
        // The broker closes after DISCONNECT [MQTT-3.14.4-3]; a broker that
        // keeps the socket open only delays this by the timeout.
        let _ = self.next_event(TIMEOUT).await;
    }

    /// Closes the socket abruptly (FIN), without DISCONNECT.
    pub fn drop_connection(self) {
        drop(self);
    }

    /// Resets the connection (RST): an I/O error on the broker's side.
    pub fn reset(self) {
        self.stream
            .set_zero_linger()
            .expect("set SO_LINGER to zero");
        drop(self);
    }
}

/// A CONNECT with the given id and CleanSession flag, keepalive 60 s.
pub fn connect_packet(id: &str, clean_session: bool) -> Connect {
    let mut connect = Connect::new(id);
    connect.clean_session = clean_session;
    connect
}

/// A CONNECT (CleanSession=1) that leaves a will.
pub fn connect_with_will(id: &str, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Connect {
    let mut connect = Connect::new(id);
    connect.last_will = Some(LastWill {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
    });
    connect
}

/// A 3.1 (`MQIsdp`, level 3) CONNECT.
pub fn connect_v31(id: &str) -> Connect {
    let mut connect = Connect::new(id);
    connect.protocol = ProtocolLevel::V3_1;
    connect
}

/// A PUBLISH; `pkid` is ignored at QoS 0.
pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    pkid: PacketId,
    retain: bool,
) -> Publish {
    Publish {
        dup: false,
        qos_pid: QosPid::new(qos, pkid),
        retain,
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// The resident set size of this process in KiB, from /proc/self/status.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Builds a raw packet: the first byte, the remaining length (encoded), and
/// the body. For tests of malformed input, where the codec would refuse.
pub fn raw_packet(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed MQTT string or binary field.
pub fn field(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).expect("a field of at most 65535 bytes");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A raw CONNECT body: protocol name, level, flags, keepalive, then the
/// payload fields as given.
pub fn raw_connect(
    name: &[u8],
    level: u8,
    flags: u8,
    keepalive: u16,
    payload: &[&[u8]],
) -> Vec<u8> {
    let mut body = field(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keepalive.to_be_bytes());
    for f in payload {
        body.extend_from_slice(&field(f));
    }
    raw_packet(0x10, &body)
}

/// Asserts a finished process succeeded; shows its output when not.
pub fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
