//! Logins through a running broker: password files made by
//! `mosquitto_passwd` and by `midge passwd`, the CONNACK codes, the
//! throttle on repeated failures, and reloading the files while clients
//! stay connected.

#[path = "security_support.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use midge_broker::auth::state::AuthConfig;
use midge_broker::Broker;
use midge_protocol::{ConnectReturnCode, QoS, SubscribeReturnCode};
use support::{config, listener, tcp, Pki, WAIT};

const ACCEPTED: Option<ConnectReturnCode> = Some(ConnectReturnCode::Accepted);
const BAD_LOGIN: Option<ConnectReturnCode> = Some(ConnectReturnCode::BadUserNameOrPassword);
const NOT_AUTHORIZED: Option<ConnectReturnCode> = Some(ConnectReturnCode::NotAuthorized);

async fn broker(pki: &Pki, acl: bool) -> Broker {
    let auth = AuthConfig {
        allow_anonymous: None,
        password_file: Some(pki.path("passwd")),
        acl_file: acl.then(|| pki.path("acl")),
    };
    support::start(config(vec![listener(None)], auth)).await
}

async fn login(b: &Broker, user: Option<&str>, pass: Option<&str>) -> Option<ConnectReturnCode> {
    let mut c = tcp(b.local_addrs()[0]).await;
    c.connect("login", user, pass).await
}

/// `midge passwd ARGS...` through the real binary.
fn midge_passwd(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_midge"))
        .arg("passwd")
        .args(args)
        .output()
        .expect("runs midge");
    assert!(
        out.status.success(),
        "midge passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_file_made_by_mosquitto_passwd_is_accepted() {
    let pki = Pki::new();
    let file = pki.path("passwd");
    let made = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&file)
        .args(["pbkdf2", "secret one"])
        .status();
    if made.is_err() {
        panic!("mosquitto_passwd is not installed: ./scripts/test.sh installs it (apt-get install mosquitto)");
    }
    let status = Command::new("mosquitto_passwd")
        .args(["-H", "sha512", "-b"])
        .arg(&file)
        .args(["sha", "secret two"])
        .status()
        .expect("mosquitto_passwd");
    assert!(status.success());
    let b = broker(&pki, false).await;
    assert_eq!(
        login(&b, Some("pbkdf2"), Some("secret one")).await,
        ACCEPTED
    );
    assert_eq!(login(&b, Some("sha"), Some("secret two")).await, ACCEPTED);
    assert_eq!(login(&b, Some("sha"), Some("secret one")).await, BAD_LOGIN);
    b.shutdown().await;
}

#[tokio::test]
async fn a_file_written_by_midge_passwd_works() {
    let pki = Pki::new();
    let file = pki.path("passwd");
    let f = file.to_str().expect("utf-8 path");
    midge_passwd(&["-c", "-b", f, "sensor", "hunter2"]);
    midge_passwd(&["-b", f, "gateway", "correct horse"]);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("sensor:$argon2id$"), "{text}");
    let b = broker(&pki, false).await;
    assert_eq!(login(&b, Some("sensor"), Some("hunter2")).await, ACCEPTED);
    assert_eq!(
        login(&b, Some("gateway"), Some("correct horse")).await,
        ACCEPTED
    );
    midge_passwd(&["-D", f, "sensor"]);
    b.reload().expect("reload");
    assert_eq!(login(&b, Some("sensor"), Some("hunter2")).await, BAD_LOGIN);
    b.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_get_0x04_and_anonymous_clients_0x05() {
    let pki = Pki::new();
    let f = pki.path("passwd");
    midge_passwd(&["-c", "-b", f.to_str().expect("utf-8"), "alice", "pw"]);
    let b = broker(&pki, false).await;
    assert_eq!(login(&b, Some("alice"), Some("pw")).await, ACCEPTED);
    assert_eq!(login(&b, Some("alice"), Some("PW")).await, BAD_LOGIN);
    assert_eq!(login(&b, Some("alice"), None).await, BAD_LOGIN);
    assert_eq!(login(&b, Some("mallory"), Some("pw")).await, BAD_LOGIN);
    // A password file turns anonymous access off by default.
    assert_eq!(login(&b, None, None).await, NOT_AUTHORIZED);
    b.shutdown().await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_slowed_down() {
    let pki = Pki::new();
    let f = pki.path("passwd");
    midge_passwd(&["-c", "-b", f.to_str().expect("utf-8"), "alice", "pw"]);
    let b = broker(&pki, false).await;
    let mut took = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        assert_eq!(login(&b, Some("alice"), Some("guess")).await, BAD_LOGIN);
        took.push(t.elapsed());
    }
    // 100, 200, 400, 800 ms: each refusal waits longer than the one before.
    assert!(took[3] >= Duration::from_millis(700), "{took:?}");
    assert!(took[3] > took[0], "{took:?}");
    // The right password is not slowed down, and the broker is fine.
    let t = Instant::now();
    assert_eq!(login(&b, Some("alice"), Some("pw")).await, ACCEPTED);
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    b.shutdown().await;
}

#[tokio::test]
async fn reloading_passwords_and_acl_keeps_clients_connected() {
    let pki = Pki::new();
    let f = pki.path("passwd");
    let f = f.to_str().expect("utf-8");
    midge_passwd(&["-c", "-b", f, "alice", "one"]);
    pki.write("acl", "user alice\ntopic readwrite a/#\n");
    let b = broker(&pki, true).await;
    let mut alice = tcp(b.local_addrs()[0]).await;
    assert_eq!(
        alice.connect("alice", Some("alice"), Some("one")).await,
        ACCEPTED
    );
    let granted = alice.subscribe("a/#", QoS::AtMostOnce).await;
    assert_eq!(granted, SubscribeReturnCode::Success(QoS::AtMostOnce));

    // New password, new user, new rules.
    midge_passwd(&["-b", f, "alice", "two"]);
    midge_passwd(&["-b", f, "bob", "three"]);
    pki.write("acl", "user alice\ntopic read a/#\ntopic readwrite b/#\n");
    b.reload().expect("reload");
    assert!(alice.ping().await, "still connected");
    assert_eq!(login(&b, Some("alice"), Some("one")).await, BAD_LOGIN);
    assert_eq!(login(&b, Some("alice"), Some("two")).await, ACCEPTED);
    assert_eq!(login(&b, Some("bob"), Some("three")).await, ACCEPTED);
    // The new ACL applies to the connected client at once.
    alice
        .publish("a/x", "now read-only", QoS::AtLeastOnce)
        .await;
    let granted = alice.subscribe("b/#", QoS::AtMostOnce).await;
    assert_eq!(granted, SubscribeReturnCode::Success(QoS::AtMostOnce));
    alice.publish("b/x", "allowed", QoS::AtMostOnce).await;
    assert_eq!(
        alice.next_publish(WAIT).await,
        Some(("b/x".into(), "allowed".into()))
    );

    // A broken file: the reload fails and the last good state stays.
    pki.write("acl", "user alice\ntopic sideways b/#\n");
    let err = b.reload().expect_err("broken ACL");
    assert!(err.to_string().contains(":2:"), "{err}");
    alice.publish("b/y", "still allowed", QoS::AtMostOnce).await;
    assert_eq!(
        alice.next_publish(WAIT).await,
        Some(("b/y".into(), "still allowed".into()))
    );
    assert_eq!(login(&b, Some("bob"), Some("three")).await, ACCEPTED);
    b.shutdown().await;
}
