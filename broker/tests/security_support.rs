//! Helpers shared by the `security_*` tests, included with
//! `#[path = "security_support.rs"] mod support;`: a throw-away PKI made with
//! rcgen, a raw MQTT client over TCP or TLS, and a broker on 127.0.0.1:0.
//! (Cargo also builds this file as a test target of its own, with no tests.)
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use midge_broker::auth::state::AuthConfig;
use midge_broker::tls::TlsConfig;
use midge_broker::{Broker, Config, ListenerConfig};
use midge_protocol::{
    Codec, ConnectReturnCode, LastWill, Packet, Publish, QoS, QosPid, Subscribe, SubscribeFilter,
    SubscribeReturnCode,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits for something that should not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// A CA and the files of a TLS listener, in a temporary directory.
pub struct Pki {
    /// The directory holding the files.
    pub dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).expect("CA"), key)
}

fn leaf(
    issuer: &rcgen::Certificate,
    issuer_key: &KeyPair,
    cn: &str,
    client: bool,
    expired: bool,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, issuer, issuer_key).expect("signed");
    (cert.pem(), key.serialize_pem())
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    /// A CA, `server.crt` (leaf then CA: a full chain), `server.key` and
    /// `ca.crt`.
    pub fn new() -> Pki {
        let (ca, ca_key) = new_ca("Midge Test CA");
        let pki = Pki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca,
            ca_key,
        };
        pki.issue_server_cert();
        pki.write("ca.crt", &pki.ca.pem());
        pki
    }

    /// Writes a fresh server certificate and key, signed by the CA.
    pub fn issue_server_cert(&self) {
        let (cert, key) = leaf(&self.ca, &self.ca_key, "localhost", false, false);
        self.write("server.crt", &format!("{cert}{}", self.ca.pem()));
        self.write("server.key", &key);
    }

    /// A path in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file in the directory.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write");
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A client certificate and key (PEM) signed by the CA.
    pub fn client_cert(&self, cn: &str, expired: bool) -> (String, String) {
        leaf(&self.ca, &self.ca_key, cn, true, expired)
    }

    /// A client certificate and key from a CA the broker does not trust.
    pub fn foreign_client_cert(&self, cn: &str) -> (String, String) {
        let (ca, key) = new_ca("Stranger CA");
        leaf(&ca, &key, cn, true, false)
    }

    /// The listener's `tls` table.
    pub fn tls(&self, client_ca: bool, require: bool, identity: bool) -> TlsConfig {
        TlsConfig {
            cert: self.path("server.crt"),
            key: self.path("server.key"),
            client_ca: client_ca.then(|| self.path("ca.crt")),
            require_client_cert: require,
            identity_as_username: identity,
        }
    }

    /// A rustls client trusting the CA, on one TLS version, optionally
    /// with a client certificate.
    pub fn client(
        &self,
        version: &'static rustls::SupportedProtocolVersion,
        identity: Option<(String, String)>,
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca.pem().as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots);
        match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = rustls_pemfile::certs(&mut cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain");
                let key = rustls_pemfile::private_key(&mut key.as_bytes())
                    .expect("pem")
                    .expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
        }
    }
}

/// A listener on 127.0.0.1 with a free port.
pub fn listener(tls: Option<TlsConfig>) -> ListenerConfig {
    ListenerConfig {
        bind: "127.0.0.1:0".parse().expect("address"),
        tls,
        ..Default::default()
    }
}

/// A configuration with the given listeners and `[auth]` table.
pub fn config(listeners: Vec<ListenerConfig>, auth: AuthConfig) -> Config {
    let mut config = Config {
        listeners,
        auth,
        ..Default::default()
    };
    // In memory: tests run in parallel and must not share a data directory.
    config.persistence.enabled = false;
    config
}

/// Starts a broker; panics with the error if it cannot.
pub async fn start(config: Config) -> Broker {
    Broker::start(config).await.expect("broker starts")
}

/// A raw MQTT 3.1.1 client.
pub struct Client<S> {
    framed: Framed<S, Codec>,
    next_pkid: u16,
    /// Packets read while waiting for an acknowledgement, for later.
    pending: VecDeque<Packet>,
}

/// Connects over plain TCP.
pub async fn tcp(addr: SocketAddr) -> Client<TcpStream> {
    let stream = TcpStream::connect(addr).await.expect("tcp connect");
    Client::new(stream)
}

/// Connects over TLS; the error is the handshake's.
pub async fn tls(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<Client<tokio_rustls::client::TlsStream<TcpStream>>> {
    let stream = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tokio::time::timeout(WAIT, connector.connect(name, stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake"))??;
    Ok(Client::new(tls))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Client<S> {
        Client {
            framed: Framed::new(stream, Codec::default()),
            next_pkid: 1,
            pending: VecDeque::new(),
        }
    }

    fn pkid(&mut self) -> NonZeroU16 {
        let id = NonZeroU16::new(self.next_pkid).expect("non-zero");
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        id
    }

    /// Sends a packet.
    pub async fn send(&mut self, packet: Packet) {
        self.framed.send(packet).await.expect("send");
    }

    /// The next packet, `None` after `wait` or when the connection ends.
    pub async fn recv(&mut self, wait: Duration) -> Option<Packet> {
        if let Some(packet) = self.pending.pop_front() {
            return Some(packet);
        }
        self.recv_new(wait).await
    }

    /// The next packet from the wire, ignoring what is pending.
    async fn recv_new(&mut self, wait: Duration) -> Option<Packet> {
        match tokio::time::timeout(wait, self.framed.next()).await {
            Ok(Some(Ok(packet))) => Some(packet),
            _ => None,
        }
    }

    /// Sends CONNECT (clean session) and returns the CONNACK code; `None`
    /// if the connection closed first.
    pub async fn connect_with(
        &mut self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
        will: Option<&str>,
    ) -> Option<ConnectReturnCode> {
        let mut connect = midge_protocol::Connect::new(client_id);
        connect.username = username.map(Into::into);
        connect.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
        connect.last_will = will.map(|topic| LastWill {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
        });
        self.send(Packet::Connect(connect)).await;
        match self.recv(WAIT).await {
            Some(Packet::ConnAck(ack)) => Some(ack.code),
            _ => None,
        }
    }

    /// CONNECT with a user name and password; the CONNACK code.
    pub async fn connect(
        &mut self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Option<ConnectReturnCode> {
        self.connect_with(client_id, username, password, None).await
    }

    /// Subscribes to one filter; the SUBACK return code.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReturnCode {
        let pkid = self.pkid();
        self.send(Packet::Subscribe(Subscribe {
            pkid,
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                qos,
            }],
        }))
        .await;
        loop {
            match self.recv_new(WAIT).await {
                Some(Packet::SubAck(ack)) if ack.pkid == pkid => return ack.return_codes[0],
                Some(other) => self.pending.push_back(other),
                None => panic!("no SUBACK for {filter}"),
            }
        }
    }

    /// Publishes; for QoS 1 waits for the PUBACK and panics without one.
    pub async fn publish(&mut self, topic: &str, payload: &str, qos: QoS) {
        let mut publish = Publish::new(topic, bytes::Bytes::copy_from_slice(payload.as_bytes()));
        let pkid = (qos != QoS::AtMostOnce).then(|| self.pkid());
        if let Some(pkid) = pkid {
            publish.qos_pid = QosPid::new(qos, pkid);
        }
        self.send(Packet::Publish(publish)).await;
        if let Some(pkid) = pkid {
            loop {
                match self.recv_new(WAIT).await {
                    Some(Packet::PubAck(id)) if id == pkid => return,
                    Some(other) => self.pending.push_back(other),
                    None => panic!("no PUBACK for {topic}"),
                }
            }
        }
    }

    /// The next PUBLISH within `wait` (acknowledging QoS 1), as
    /// (topic, payload).
    pub async fn next_publish(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                Packet::Publish(p) => {
                    if let Some(pkid) = p.pkid() {
                        if p.qos() == QoS::AtLeastOnce {
                            self.send(Packet::PubAck(pkid)).await;
                        }
                    }
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    return Some((p.topic.as_str().to_owned(), payload));
                }
                _ => continue,
            }
        }
    }

    /// Every PUBLISH until nothing arrives for `QUIET`.
    pub async fn drain(&mut self) -> Vec<(String, String)> {
        let mut got = Vec::new();
        while let Some(p) = self.next_publish(QUIET).await {
            got.push(p);
        }
        got
    }

    /// Sends PINGREQ and waits for PINGRESP: a round trip proving the
    /// broker handled everything sent before.
    pub async fn ping(&mut self) -> bool {
        self.send(Packet::PingReq).await;
        loop {
            match self.recv_new(WAIT).await {
                Some(Packet::PingResp) => return true,
                Some(other) => self.pending.push_back(other),
                None => return false,
            }
        }
    }

    /// Whether the broker closed the connection within `wait`.
    pub async fn closed(&mut self, wait: Duration) -> bool {
        match tokio::time::timeout(wait, self.framed.next()).await {
            Ok(None) | Ok(Some(Err(_))) => true,
            Ok(Some(Ok(_))) | Err(_) => false,
        }
    }
}
