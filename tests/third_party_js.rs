//! MQTT.js, the npm package `mqtt` (5.x, pinned in `tests/js/package.json`),
//! speaking MQTT 3.1.1 (protocolVersion 4) against an in-process broker: the
//! scripts in `tests/js/`, one scenario each. The TLS scenario needs the
//! rcgen test PKI and lives in `broker/tests/security_mqttjs.rs`.
//!
//! Node and the installed node modules are required, not optional: when
//! either is missing the tests fail and say how to get them
//! (`scripts/test.sh` runs `npm ci --prefix tests/js`).

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use midge_broker::auth::password::PasswordHash;
use midge_broker::auth::state::{AuthConfig, FileAuthorizer};
use support::*;
use tokio::process::Command;
use tokio::time::timeout;

/// A backstop: each script fails itself well before this (`tests/js/common.mjs`).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(40);

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Fails with a clear message unless node and the pinned MQTT.js are there.
async fn require_mqttjs() {
    let probe = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await;
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "node is required to run the MQTT.js tests: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "node (v18 or later) is required to run the MQTT.js tests, then \
             `npm ci --prefix tests/js` (scripts/test.sh does both checks and the install): {e}"
        ),
    }
    let package = js_dir().join("node_modules/mqtt/package.json");
    assert!(
        package.is_file(),
        "MQTT.js is not installed in tests/js/node_modules: run scripts/test.sh, \
         or `npm ci --prefix tests/js`"
    );
}

/// Runs `node tests/js/<script> <args>` and asserts it passed.
async fn run_mqttjs(script: &str, args: &[&str]) {
    require_mqttjs().await;
    let out = timeout(
        SCRIPT_TIMEOUT,
        Command::new("node")
            .arg(js_dir().join(script))
            .args(args)
            .current_dir(js_dir())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} still running after {SCRIPT_TIMEOUT:?}"))
    .expect("run node");
    assert_success(script, &out);
}

/// Runs a script that takes only the broker's port.
async fn run_against(broker: &TestBroker, script: &str) {
    run_mqttjs(script, &[&broker.addr.port().to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_connack_session_present_for_clean_and_persistent_sessions() {
    let broker = TestBroker::start().await;
    run_against(&broker, "connect_sessions.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_subscribe_several_filters_with_wildcards_and_granted_qos() {
    let broker = TestBroker::start().await;
    run_against(&broker, "subscribe_wildcards.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_qos_0_1_2_round_trip_with_payload_bytes_intact() {
    let broker = TestBroker::start().await;
    run_against(&broker, "qos_roundtrip.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_retained_message_and_its_removal() {
    let broker = TestBroker::start().await;
    run_against(&broker, "retained.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_will_on_destroyed_stream_not_on_end() {
    let broker = TestBroker::start().await;
    run_against(&broker, "will.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_unsubscribe_stops_deliveries() {
    let broker = TestBroker::start().await;
    run_against(&broker, "unsubscribe.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_persistent_session_gets_messages_queued_while_offline() {
    let broker = TestBroker::start().await;
    run_against(&broker, "persistent_queue.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_qos2_flows_cut_by_a_lost_connection_finish_exactly_once() {
    let broker = TestBroker::start().await;
    run_against(&broker, "qos2_interrupted.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_keepalive_1_pings_and_a_silent_client_is_closed() {
    let broker = TestBroker::start().await;
    run_against(&broker, "keepalive.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_reconnects_and_resubscribes_after_a_takeover() {
    let broker = TestBroker::start().await;
    run_against(&broker, "takeover_reconnect.mjs").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_bad_credentials_get_connack_4_and_anonymous_connack_5() {
    const USER: &str = "js-user";
    const PASSWORD: &str = "S3cure!js";
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    let hash = PasswordHash::new_argon2id(PASSWORD.as_bytes()).expect("hash a password");
    std::fs::write(&passwd, format!("{USER}:{hash}\n")).expect("write the password file");
    let auth_config = AuthConfig {
        allow_anonymous: Some(false),
        password_file: Some(passwd),
        acl_file: None,
    };
    let auth = FileAuthorizer::load(&auth_config).expect("load the password file");
    let broker = TestBroker::start_with_auth(|c| c.auth = auth_config, Arc::new(auth)).await;
    run_mqttjs(
        "auth.mjs",
        &[&broker.addr.port().to_string(), USER, PASSWORD],
    )
    .await;
    broker.shutdown().await;
}
