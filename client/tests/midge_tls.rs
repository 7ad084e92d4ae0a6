//! The client library against midge's own TLS listeners and its
//! Mosquitto-format password file: the TLS and login scenarios that
//! `mosquitto_client.rs` runs against Mosquitto, here against midge.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use midge_broker::config::{PersistenceConfig, SysConfig};
use midge_broker::{AuthConfig, Broker, Config, ListenerConfig, TlsConfig};
use midge_client::{Client, ConnectError, ConnectReturnCode, QoS, Reconnect, TlsError, TlsOptions};
use support::certs::Certs;
use support::scenarios::{tls_roundtrip, tls_url};
use support::{within, PASSWORD, USER};

/// A midge broker with a plain listener, a TLS listener, a TLS listener
/// that requires client certificates, and a password file made by
/// `mosquitto_passwd`.
struct TlsMidge {
    broker: Broker,
    certs: Certs,
    _dir: tempfile::TempDir,
}

impl TlsMidge {
    async fn start() -> TlsMidge {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certs::generate(dir.path());
        let passwd = dir.path().join("passwd");
        make_password_file(&passwd);
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let tls = |client_ca: bool| TlsConfig {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            client_ca: client_ca.then(|| certs.ca.clone()),
            require_client_cert: client_ca,
            identity_as_username: false,
        };
        let config = Config {
            listeners: vec![
                ListenerConfig {
                    bind: any,
                    ..Default::default()
                },
                ListenerConfig {
                    bind: any,
                    tls: Some(tls(false)),
                    ..Default::default()
                },
                ListenerConfig {
                    bind: any,
                    tls: Some(tls(true)),
                    ..Default::default()
                },
            ],
            sys: SysConfig { interval_s: 0 },
            auth: AuthConfig {
                password_file: Some(passwd),
                allow_anonymous: Some(true),
                ..Default::default()
            },
            persistence: PersistenceConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let broker = Broker::start(config).await.expect("start midge");
        TlsMidge {
            broker,
            certs,
            _dir: dir,
        }
    }

    fn port(&self, listener: usize) -> u16 {
        self.broker.local_addrs()[listener].port()
    }
}

fn make_password_file(path: &Path) {
    let status = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(path)
        .args([USER, PASSWORD])
        .status()
        .expect("mosquitto_passwd is not installed: apt-get install -y mosquitto");
    assert!(status.success(), "mosquitto_passwd failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_and_a_password_from_a_mosquitto_passwd_file() {
    let broker = TlsMidge::start().await;
    let url = format!("mqtts://{USER}:{PASSWORD}@localhost:{}", broker.port(1));
    let client = within(
        "connect",
        Client::builder(&url)
            .tls(TlsOptions::new().ca_file(&broker.certs.ca))
            .connect(),
    )
    .await
    .expect("TLS connect with password");
    tls_roundtrip(client, QoS::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_an_ip_address_checks_the_ip_in_the_certificate() {
    let broker = TlsMidge::start().await;
    let client = within(
        "connect",
        Client::builder(&tls_url(broker.port(1), "127.0.0.1"))
            .tls(TlsOptions::new().ca_file(&broker.certs.ca))
            .connect(),
    )
    .await
    .expect("TLS connect by IP");
    tls_roundtrip(client, QoS::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    let broker = TlsMidge::start().await;
    let client = within(
        "connect",
        Client::builder(&tls_url(broker.port(2), "localhost"))
            .tls(
                TlsOptions::new()
                    .ca_file(&broker.certs.ca)
                    .client_auth_files(&broker.certs.client_cert, &broker.certs.client_key),
            )
            .connect(),
    )
    .await
    .expect("mutual TLS connect");
    tls_roundtrip(client, QoS::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_required_client_certificate_is_refused() {
    let broker = TlsMidge::start().await;
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.port(2), "localhost"))
            .tls(TlsOptions::new().ca_file(&broker.certs.ca))
            .reconnect(Reconnect::disabled())
            .connect(),
    )
    .await
    .expect_err("needs a client certificate");
    assert!(
        matches!(
            err,
            ConnectError::Tls(TlsError::AlertReceived { .. })
                | ConnectError::ClosedBeforeConnAck
                | ConnectError::Handshake { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_name_mismatch_is_reported_as_such() {
    let broker = TlsMidge::start().await;
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.port(1), "127.0.0.1"))
            .tls(
                TlsOptions::new()
                    .ca_file(&broker.certs.ca)
                    .server_name("broker.example.org"),
            )
            .connect(),
    )
    .await
    .expect_err("name mismatch");
    assert!(
        matches!(err, ConnectError::Tls(TlsError::NameMismatch { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("broker.example.org"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_wrong_ca_is_an_unknown_ca() {
    let broker = TlsMidge::start().await;
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.port(1), "localhost"))
            .tls(TlsOptions::new().ca_file(&broker.certs.other_ca))
            .connect(),
    )
    .await
    .expect_err("unknown CA");
    assert!(
        matches!(err, ConnectError::Tls(TlsError::UnknownCa)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_in_the_password_file_is_refused_by_name() {
    let broker = TlsMidge::start().await;
    let url = format!(
        "mqtt://{USER}:not-the-password@127.0.0.1:{}",
        broker.port(0)
    );
    let err = within(
        "connect",
        Client::builder(&url)
            .reconnect(Reconnect::disabled())
            .connect(),
    )
    .await
    .expect_err("wrong password");
    assert_eq!(
        err.return_code(),
        Some(ConnectReturnCode::BadUserNameOrPassword),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("bad user name or password"),
        "{err}"
    );
}
