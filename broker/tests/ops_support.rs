//! Helpers shared by the `ops_*` tests, included with
//! `#[path = "ops_support.rs"] mod support;`: a broker on 127.0.0.1:0 with
//! its metrics listener, a raw MQTT client that counts the packets and
//! bytes it exchanges, and an HTTP client with a Prometheus text parser.
//! (Cargo also builds this file as a test target of its own, with no tests.)
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_broker::{Broker, Config, ListenerConfig};
use midge_protocol::{
    decode, encode, Connect, ConnectReturnCode, Packet, Publish, QoS, QosPid, Subscribe,
    SubscribeFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// A configuration for tests: one plain listener and the metrics listener
/// on free loopback ports, no `$SYS` rounds (they would publish too).
#[allow(clippy::needless_update)]
pub fn config() -> Config {
    let mut config = Config {
        listeners: vec![ListenerConfig {
            bind: "127.0.0.1:0".parse().expect("address"),
            ..Default::default()
        }],
        ..Config::default()
    };
    config.sys.interval_s = 0;
    config.limits.connect_timeout_s = 2;
    config.metrics.bind = Some("127.0.0.1:0".parse().expect("address"));
    config.persistence.enabled = false;
    config
}

/// Starts a broker with [`config`], changed by `configure`.
pub async fn start(configure: impl FnOnce(&mut Config)) -> Broker {
    let mut config = config();
    configure(&mut config);
    Broker::start(config).await.expect("broker starts")
}

/// The broker's metrics address.
pub fn metrics(broker: &Broker) -> SocketAddr {
    broker.metrics_addr().expect("a metrics listener")
}

/// A raw MQTT 3.1.1 client that counts what it sends and receives.
pub struct Mqtt {
    stream: TcpStream,
    inbuf: BytesMut,
    next_pkid: u16,
    pending: VecDeque<Packet>,
    /// Packets written.
    pub packets_out: u64,
    /// Packets read.
    pub packets_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
}

impl Mqtt {
    /// Opens a TCP connection, nothing sent.
    pub async fn open(addr: SocketAddr) -> Mqtt {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        Mqtt {
            stream,
            inbuf: BytesMut::new(),
            next_pkid: 1,
            pending: VecDeque::new(),
            packets_out: 0,
            packets_in: 0,
            bytes_out: 0,
            bytes_in: 0,
        }
    }

    /// Connects with `client_id`; panics unless the CONNACK accepts.
    pub async fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> Mqtt {
        let mut c = Mqtt::open(addr).await;
        let mut connect = Connect::new(client_id);
        connect.clean_session = clean;
        let code = c.handshake(connect).await;
        assert_eq!(code, Some(ConnectReturnCode::Accepted), "{client_id}");
        c
    }

    /// Sends CONNECT; the CONNACK code, `None` if the connection closed.
    pub async fn handshake(&mut self, connect: Connect) -> Option<ConnectReturnCode> {
        self.send(Packet::Connect(connect)).await;
        match self.recv(WAIT).await {
            Some(Packet::ConnAck(ack)) => Some(ack.code),
            _ => None,
        }
    }

    fn pkid(&mut self) -> NonZeroU16 {
        let id = NonZeroU16::new(self.next_pkid).expect("non-zero");
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        id
    }

    /// Writes one packet.
    pub async fn send(&mut self, packet: Packet) {
        let mut buf = BytesMut::new();
        encode(&packet, &mut buf).expect("encode");
        self.stream.write_all(&buf).await.expect("write");
        self.packets_out += 1;
        self.bytes_out += buf.len() as u64;
    }

    /// The next packet (one read earlier first), `None` after `wait` or at
    /// the end of the connection.
    pub async fn recv(&mut self, wait: Duration) -> Option<Packet> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        self.recv_new(wait).await
    }

    async fn recv_new(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = decode(&mut self.inbuf, 1 << 20).expect("a valid packet") {
                self.packets_in += 1;
                return Some(p);
            }
            let read = self.stream.read_buf(&mut self.inbuf);
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.bytes_in += n as u64,
            }
        }
    }

    /// Waits for a packet `want` accepts, keeping the others for later.
    async fn expect(&mut self, what: &str, want: impl Fn(&Packet) -> bool) -> Packet {
        loop {
            match self.recv_new(WAIT).await {
                Some(p) if want(&p) => return p,
                Some(p) => self.pending.push_back(p),
                None => panic!("no {what}"),
            }
        }
    }

    /// Subscribes to one filter and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let pkid = self.pkid();
        let filters = vec![SubscribeFilter {
            filter: filter.into(),
            qos,
        }];
        self.send(Packet::Subscribe(Subscribe { pkid, filters }))
            .await;
        self.expect(
            "SUBACK",
            |p| matches!(p, Packet::SubAck(a) if a.pkid == pkid),
        )
        .await;
    }

    /// Publishes and completes the QoS 1 or 2 handshake.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let mut p = Publish::new(topic, Bytes::copy_from_slice(payload));
        p.retain = retain;
        let pkid = (qos != QoS::AtMostOnce).then(|| self.pkid());
        if let Some(pkid) = pkid {
            p.qos_pid = QosPid::new(qos, pkid);
        }
        self.send(Packet::Publish(p)).await;
        match (qos, pkid) {
            (QoS::AtLeastOnce, Some(id)) => {
                self.expect("PUBACK", |p| *p == Packet::PubAck(id)).await;
            }
            (QoS::ExactlyOnce, Some(id)) => {
                self.expect("PUBREC", |p| *p == Packet::PubRec(id)).await;
                self.send(Packet::PubRel(id)).await;
                self.expect("PUBCOMP", |p| *p == Packet::PubComp(id)).await;
            }
            _ => {}
        }
    }

    /// The next PUBLISH, with its QoS 1 or 2 handshake completed.
    pub async fn receive(&mut self) -> Publish {
        let p = match self.recv(WAIT).await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        match (p.qos(), p.pkid()) {
            (QoS::AtLeastOnce, Some(id)) => self.send(Packet::PubAck(id)).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(Packet::PubRec(id)).await;
                self.expect("PUBREL", |p| *p == Packet::PubRel(id)).await;
                self.send(Packet::PubComp(id)).await;
            }
            _ => {}
        }
        p
    }

    /// PINGREQ, PINGRESP: everything sent before has been handled.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        self.expect("PINGRESP", |p| *p == Packet::PingResp).await;
    }

    /// DISCONNECT, then waits for the broker to close the connection.
    pub async fn disconnect(mut self) -> Mqtt {
        self.send(Packet::Disconnect).await;
        assert!(
            self.recv_new(WAIT).await.is_none(),
            "closed after DISCONNECT"
        );
        self
    }
}

/// An HTTP response: status, header lines and body.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The head, status line included.
    pub head: String,
    /// The body.
    pub body: String,
}

/// Sends `request` as is and reads the response to the end.
pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("http connect");
    stream.write_all(request).await.expect("http write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("a response in time")
        .expect("http read");
    let text = String::from_utf8(out).expect("UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a blank line after the head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    HttpResponse {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    http_raw(addr, request.as_bytes()).await
}

/// A parsed `/metrics` page: series (name and labels, as written) to value.
#[derive(Debug)]
pub struct Scrape(pub BTreeMap<String, u64>);

impl Scrape {
    /// The value of `series`, e.g. `midge_messages_received_total{qos="1"}`;
    /// panics if it is missing.
    pub fn get(&self, series: &str) -> u64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:#?}", self.0))
    }
}

/// Parses the Prometheus text format strictly: every sample's family has
/// `# HELP` and `# TYPE` lines before it, and every value is an integer.
pub fn parse(text: &str) -> Scrape {
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().expect("name").to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("name");
            let kind = parts.next().expect("type");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            typed.insert(name.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let name = series.split('{').next().expect("name");
            assert!(typed.contains(name) && helped.contains(name), "{line}");
            let value = value.parse().unwrap_or_else(|_| panic!("integer: {line}"));
            assert!(
                out.insert(series.to_owned(), value).is_none(),
                "twice: {line}"
            );
        }
    }
    Scrape(out)
}

/// Scrapes `/metrics`.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.head
            .contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        r.head
    );
    parse(&r.body)
}

/// Scrapes until `done` holds (numbers settle asynchronously), then returns
/// that scrape; panics with the last one after [`WAIT`].
pub async fn scrape_until(addr: SocketAddr, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = scrape(addr).await;
        if done(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("the metrics did not settle: {:#?}", s.0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Starts the `midge` binary with `args` in `dir` (output piped) and waits
/// until it accepts on 127.0.0.1:`port`.
pub async fn spawn_midge(
    args: &[String],
    dir: &std::path::Path,
    port: u16,
) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_midge"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn midge");
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().await.expect("output");
            panic!(
                "midge exited with {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never listened on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Sends SIGTERM to the child.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}
