//! `midge-pub` and `midge-sub` as subprocesses against a real Mosquitto.

mod support;

use midge_client::{ConnectReturnCode, QoS};
use support::cli::{self, run, RunningSub, PUB};
use support::scenarios::{client, next};
use support::{free_port, within, Mosquitto, USER};

#[tokio::test]
async fn pub_to_sub_with_count() {
    cli::pub_to_sub_with_count(&Mosquitto::start()).await;
}

#[tokio::test]
async fn line_mode_sends_each_line() {
    cli::line_mode_sends_each_line(&Mosquitto::start()).await;
}

#[tokio::test]
async fn file_null_stdin_and_repeat() {
    let broker = Mosquitto::start();
    cli::file_null_stdin_and_repeat(&broker, broker.dir()).await;
}

#[tokio::test]
async fn timeout_exits_27() {
    cli::timeout_exits_27(&Mosquitto::start()).await;
}

#[tokio::test]
async fn no_retained_flag_skips_stale_messages() {
    cli::no_retained_flag_skips_stale_messages(&Mosquitto::start()).await;
}

#[tokio::test]
async fn retained_only_and_remove_retained() {
    cli::retained_only_and_remove_retained(&Mosquitto::start()).await;
}

#[tokio::test]
async fn sub_flushes_each_message() {
    cli::sub_flushes_each_message(&Mosquitto::start()).await;
}

#[tokio::test]
async fn json_and_format_output() {
    cli::json_and_format_output(&Mosquitto::start()).await;
}

#[tokio::test]
async fn filter_out_and_exit_after_subscribe() {
    cli::filter_out_and_exit_after_subscribe(&Mosquitto::start()).await;
}

#[tokio::test]
async fn persistent_session_with_c_and_e() {
    cli::persistent_session_with_c_and_e(&Mosquitto::start()).await;
}

#[tokio::test]
async fn retain_no_eol_and_id_prefix() {
    cli::retain_no_eol_and_id_prefix(&Mosquitto::start()).await;
}

#[tokio::test]
async fn url_flag() {
    cli::url_flag(&Mosquitto::start()).await;
}

#[tokio::test]
async fn will_is_published_when_the_cli_dies() {
    cli::will_is_published_when_the_cli_dies(&Mosquitto::start()).await;
}

#[tokio::test]
async fn wrong_password_exit_code() {
    // Mosquitto 2 refuses a bad password with "not authorised" (5).
    cli::wrong_password_exit_code(
        &Mosquitto::start(),
        USER,
        &[ConnectReturnCode::NotAuthorized],
    )
    .await;
}

#[tokio::test]
async fn mqtt_3_1_with_a_generated_client_id() {
    let broker = Mosquitto::start();
    let c = client(&broker, "v31-watcher").await;
    let mut sub = within("subscribe", c.subscribe("v31", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let out = run(
        PUB,
        &[
            "-p",
            &broker.port.to_string(),
            "-V",
            "31",
            "-t",
            "v31",
            "-m",
            "old protocol",
            "-q",
            "1",
            "-d",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("Client mosq-") && l.ends_with(" sending CONNECT")),
        "{out:?}"
    );
    assert_eq!(&next(&mut sub).await.payload[..], b"old protocol");
    assert!(
        broker.log().contains("(p1, c1, k60)"),
        "Mosquitto saw protocol level 3"
    );
}

#[tokio::test]
async fn usage_errors() {
    cli::usage_errors().await;
}

#[tokio::test]
async fn connection_refused() {
    cli::connection_refused(free_port()).await;
}

#[tokio::test]
async fn tls_with_cafile_and_client_certificate() {
    let broker = Mosquitto::start();
    let c = client(&broker, "tls-watcher").await;
    let mut sub = within("subscribe", c.subscribe("tls/cli", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let ca = broker.certs.ca.to_string_lossy().into_owned();
    let cert = broker.certs.client_cert.to_string_lossy().into_owned();
    let key = broker.certs.client_key.to_string_lossy().into_owned();
    let tls = broker.tls_port.to_string();
    let mtls = broker.mtls_port.to_string();

    let out = run(
        PUB,
        &[
            "-h",
            "localhost",
            "-p",
            &tls,
            "--cafile",
            &ca,
            "-t",
            "tls/cli",
            "-m",
            "server-auth",
            "-q",
            "1",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(&next(&mut sub).await.payload[..], b"server-auth");

    let out = run(
        PUB,
        &[
            "-h",
            "localhost",
            "-p",
            &mtls,
            "--cafile",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "tls/cli",
            "-m",
            "mutual",
            "-q",
            "1",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(&next(&mut sub).await.payload[..], b"mutual");

    // A subscriber over mutual TLS too.
    let sub_tls = RunningSub::start(&[
        "-h",
        "localhost",
        "-p",
        &mtls,
        "--cafile",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-t",
        "tls/cli",
        "-C",
        "1",
    ])
    .await;
    within(
        "publish",
        c.publish("tls/cli", "to tls sub", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    let (status, lines, _) = sub_tls.finish().await;
    assert_eq!(
        (status.code(), lines),
        (Some(0), vec!["to tls sub".to_string()])
    );
}

#[tokio::test]
async fn tls_name_mismatch_unknown_ca_and_insecure() {
    let broker = Mosquitto::start();
    let ca = broker.certs.ca.to_string_lossy().into_owned();
    let tls = broker.tls_port.to_string();
    let wrong = broker.wrong_name_port.to_string();
    let out = run(
        PUB,
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &tls,
            "--cafile",
            &ca,
            "-t",
            "t",
            "-m",
            "x",
        ],
        b"",
    )
    .await;
    assert_eq!(
        out.code(),
        0,
        "the certificate has 127.0.0.1 as an IP address name: {out:?}"
    );

    let out = run(
        PUB,
        &[
            "-h",
            "localhost",
            "-p",
            &wrong,
            "--cafile",
            &ca,
            "-t",
            "t",
            "-m",
            "x",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("name mismatch") && out.stderr.contains("not-this-host.example"),
        "{out:?}"
    );

    // --insecure skips the name check only, like mosquitto's.
    let out = run(
        PUB,
        &[
            "-h",
            "localhost",
            "-p",
            &wrong,
            "--cafile",
            &ca,
            "--insecure",
            "-t",
            "t",
            "-m",
            "x",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");

    let other = broker.certs.other_ca.to_string_lossy().into_owned();
    let out = run(
        PUB,
        &[
            "-h",
            "localhost",
            "-p",
            &tls,
            "--cafile",
            &other,
            "--insecure",
            "-t",
            "t",
            "-m",
            "x",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("unknown CA"), "{out:?}");
}
