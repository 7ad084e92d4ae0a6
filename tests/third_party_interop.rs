//! The scenarios of the Eclipse Paho MQTT 3.1.1 interoperability suite
//! (eclipse/paho.mqtt.testing, `interoperability/client_test.py`), as
//! outsiders run it against a broker: our own rewrite for paho-mqtt 2.x,
//! `tests/python/interop_suite.py`, one case per test against a fresh
//! broker, so a failure names its case and shows the script's output.
//!
//! paho-mqtt is required: without it these tests fail and say how to
//! install it.

mod support;

use std::sync::Arc;

use midge_broker::auth::state::FileAuthorizer;
use midge_broker::AuthConfig;
use support::paho::run_paho_with;
use support::TestBroker;

const SUITE: &str = "interop_suite.py";

/// Runs one case of the suite against a broker with the test defaults.
async fn run_case(case: &str) {
    let broker = TestBroker::start().await;
    run_paho_with(&broker, SUITE, &[case]).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_round_trip_at_each_qos_and_bad_connects_refused() {
    run_case("basic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_delivered_then_cleared_by_empty_ones() {
    run_case("retained_messages").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_are_queued_for_a_persistent_session() {
    run_case("offline_message_queueing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_message_is_published_on_abrupt_close() {
    run_case("will_message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_length_client_id_needs_a_clean_session() {
    run_case("zero_length_clientid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_at_the_highest_qos() {
    run_case("overlapping_subscriptions").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_expiry_closes_the_client_and_publishes_its_will() {
    run_case("keepalive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_are_redelivered_with_dup_on_reconnect() {
    run_case("redelivery_on_reconnect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    run_case("dollar_topics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_topic_is_no_longer_delivered() {
    run_case("unsubscribe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_present_follows_the_stored_session() {
    run_case("session_present").await;
}

/// The original expects SUBACK 0x80 for a filter the broker refuses; ours
/// refuses it through an ACL file, as an operator would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_failure_is_suback_0x80_for_a_denied_filter() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite #\ntopic deny test/nosubscribe\n")
        .expect("write the ACL file");
    let auth = AuthConfig {
        allow_anonymous: Some(true),
        password_file: None,
        acl_file: Some(acl),
    };
    let authorizer = FileAuthorizer::load(&auth).expect("the ACL file loads");
    let broker = TestBroker::start_with_auth(|c| c.auth = auth, Arc::new(authorizer)).await;
    run_paho_with(
        &broker,
        SUITE,
        &["subscribe_failure", "--nosubscribe", "test/nosubscribe"],
    )
    .await;
    broker.shutdown().await;
}
