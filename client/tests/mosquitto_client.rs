//! The client library against a real Mosquitto: QoS flows, reconnects,
//! authentication and TLS.

mod support;

use midge_client::{Client, ConnectError, ConnectReturnCode, QoS, Reconnect, TlsError, TlsOptions};
use support::scenarios::{self, next, tls_roundtrip, tls_url};
use support::{within, Mosquitto, PASSWORD, USER};

#[tokio::test]
async fn every_qos_both_ways() {
    let broker = Mosquitto::start();
    scenarios::every_qos_both_ways(&broker).await;
}

#[tokio::test]
async fn qos2_burst_arrives_exactly_once_in_order() {
    let broker = Mosquitto::start();
    scenarios::qos2_burst_arrives_exactly_once_in_order(&broker).await;
}

#[tokio::test]
async fn retained_then_unsubscribe() {
    let broker = Mosquitto::start();
    scenarios::retained_then_unsubscribe(&broker).await;
}

#[tokio::test]
async fn reconnect_restores_subscriptions_and_delivers_offline_publishes() {
    let mut broker = Mosquitto::start();
    scenarios::reconnect_restores_subscriptions_and_delivers_offline_publishes(&mut broker).await;
}

#[tokio::test]
async fn without_reconnect_a_lost_connection_closes_the_client() {
    let mut broker = Mosquitto::start();
    scenarios::without_reconnect_a_lost_connection_closes_the_client(&mut broker).await;
}

#[tokio::test]
async fn a_full_offline_buffer_fails_fast() {
    let mut broker = Mosquitto::start();
    scenarios::a_full_offline_buffer_fails_fast(&mut broker).await;
}

#[tokio::test]
async fn disconnect_flushes_in_flight_publishes() {
    let broker = Mosquitto::start();
    scenarios::disconnect_flushes_in_flight_publishes(&broker).await;
}

#[tokio::test]
async fn a_slow_subscription_drops_and_counts_under_drop_newest() {
    let broker = Mosquitto::start();
    scenarios::a_slow_subscription_drops_and_counts_under_drop_newest(&broker).await;
}

#[tokio::test]
async fn a_slow_subscription_loses_nothing_under_block() {
    let broker = Mosquitto::start();
    scenarios::a_slow_subscription_loses_nothing_under_block(&broker).await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_the_named_connack_code() {
    let broker = Mosquitto::start();
    // Mosquitto 2 answers a bad password with "not authorised" (5).
    scenarios::wrong_password_is_refused_by_name(
        &broker,
        USER,
        &[
            ConnectReturnCode::NotAuthorized,
            ConnectReturnCode::BadUserNameOrPassword,
        ],
    )
    .await;
    scenarios::right_password_is_accepted(&broker, USER, PASSWORD).await;
}

#[tokio::test]
async fn a_persistent_session_keeps_qos1_messages_while_the_client_is_away() {
    let broker = Mosquitto::start();
    let url = broker.url();
    let connect = || {
        Client::builder(&url)
            .client_id("persistent-sub")
            .clean_session(false)
            .reconnect(Reconnect::disabled())
            .connect()
    };
    let c = within("connect", connect()).await.expect("connect");
    let first = within("subscribe", c.subscribe("persist", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    // Disconnect before dropping: dropping a live subscription unsubscribes.
    within("disconnect", c.disconnect())
        .await
        .expect("disconnect");
    drop(first);
    let publisher = scenarios::client(&broker, "persist-pub").await;
    within(
        "publish",
        publisher.publish("persist", "kept", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    let c = within("reconnect", connect()).await.expect("connect");
    assert_eq!(
        c.status(),
        midge_client::Status::Connected {
            session_present: true
        }
    );
    // The broker sends the queued message right after CONNACK; the client
    // keeps it for the subscription made afterwards.
    let mut sub = within("subscribe", c.subscribe("persist", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    assert_eq!(&next(&mut sub).await.payload[..], b"kept");
}

#[tokio::test]
async fn tls_with_a_custom_ca_by_host_name() {
    let broker = Mosquitto::start();
    let client = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "localhost"))
            .tls(TlsOptions::new().ca_file(&broker.certs.ca))
            .connect(),
    )
    .await
    .expect("TLS connect");
    tls_roundtrip(client, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn tls_to_an_ip_address_checks_the_ip_in_the_certificate() {
    let broker = Mosquitto::start();
    let client = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "127.0.0.1"))
            .tls(TlsOptions::new().ca_file(&broker.certs.ca))
            .connect(),
    )
    .await
    .expect("TLS connect by IP");
    tls_roundtrip(client, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let broker = Mosquitto::start();
    let client = within(
        "connect",
        Client::builder(&tls_url(broker.mtls_port, "localhost"))
            .tls(
                TlsOptions::new()
                    .ca_file(&broker.certs.ca)
                    .client_auth_files(&broker.certs.client_cert, &broker.certs.client_key),
            )
            .connect(),
    )
    .await
    .expect("mutual TLS connect");
    tls_roundtrip(client, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn tls_without_the_required_client_certificate_is_refused_in_words() {
    let broker = Mosquitto::start();
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.mtls_port, "localhost"))
            .tls(TlsOptions::new().ca_file(&broker.certs.ca))
            .reconnect(Reconnect::disabled())
            .connect(),
    )
    .await
    .expect_err("needs a client certificate");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ConnectError::Tls(TlsError::AlertReceived { .. })
                | ConnectError::ClosedBeforeConnAck
                | ConnectError::Handshake { .. }
        ),
        "{err:?}"
    );
    assert!(!text.is_empty());
}

#[tokio::test]
async fn tls_name_mismatch_is_reported_as_such() {
    let broker = Mosquitto::start();
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "127.0.0.1"))
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
    let text = err.to_string();
    assert!(
        text.contains("name mismatch") && text.contains("broker.example.org"),
        "{text}"
    );
    assert!(
        text.contains("localhost"),
        "names the certificate's names: {text}"
    );
}

#[tokio::test]
async fn tls_to_a_broker_whose_certificate_names_another_host_is_a_name_mismatch() {
    let broker = Mosquitto::start();
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.wrong_name_port, "localhost"))
            .tls(TlsOptions::new().ca_file(&broker.certs.ca))
            .connect(),
    )
    .await
    .expect_err("name mismatch");
    assert!(
        matches!(&err, ConnectError::Tls(TlsError::NameMismatch { expected, .. }) if expected == "localhost"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not-this-host.example"), "{err}");
}

#[tokio::test]
async fn tls_with_the_wrong_ca_is_an_unknown_ca() {
    let broker = Mosquitto::start();
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "localhost"))
            .tls(TlsOptions::new().ca_file(&broker.certs.other_ca))
            .connect(),
    )
    .await
    .expect_err("unknown CA");
    assert!(
        matches!(err, ConnectError::Tls(TlsError::UnknownCa)),
        "{err:?}"
    );
    assert!(err.to_string().contains("unknown CA"));
}

#[tokio::test]
async fn tls_insecure_modes_accept_what_verification_would_reject() {
    let broker = Mosquitto::start();
    let client = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "localhost"))
            .tls(
                TlsOptions::new()
                    .ca_file(&broker.certs.other_ca)
                    .insecure(true),
            )
            .connect(),
    )
    .await
    .expect("insecure accepts an unknown CA");
    tls_roundtrip(client, QoS::AtLeastOnce).await;
    let client = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "localhost"))
            .tls(
                TlsOptions::new()
                    .ca_file(&broker.certs.ca)
                    .server_name("broker.example.org")
                    .skip_hostname_verification(true),
            )
            .connect(),
    )
    .await
    .expect("skipping the hostname check accepts a name mismatch");
    tls_roundtrip(client, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn tls_bad_pem_files_are_reported_before_connecting() {
    let broker = Mosquitto::start();
    let junk = broker.dir().join("junk.pem");
    std::fs::write(&junk, "this is not a certificate\n").expect("write");
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "localhost"))
            .tls(TlsOptions::new().ca_file(&junk))
            .connect(),
    )
    .await
    .expect_err("bad PEM");
    assert!(err.to_string().contains("bad PEM"), "{err}");
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.mtls_port, "localhost"))
            .tls(
                TlsOptions::new()
                    .ca_file(&broker.certs.ca)
                    .client_auth_files(&broker.certs.client_cert, &junk),
            )
            .connect(),
    )
    .await
    .expect_err("bad key PEM");
    assert!(
        matches!(err, ConnectError::Tls(TlsError::NoPrivateKey { .. })),
        "{err:?}"
    );
    let missing = broker.dir().join("missing.pem");
    let err = within(
        "connect",
        Client::builder(&tls_url(broker.tls_port, "localhost"))
            .tls(TlsOptions::new().ca_file(&missing))
            .connect(),
    )
    .await
    .expect_err("missing file");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
