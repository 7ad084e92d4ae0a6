//! The client library against midge's own broker, in-process: the same
//! scenarios as against Mosquitto.

mod support;

use midge_client::ConnectReturnCode;
use support::midge::Midge;
use support::scenarios;
use support::{PASSWORD, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_qos_both_ways() {
    scenarios::every_qos_both_ways(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_burst_arrives_exactly_once_in_order() {
    scenarios::qos2_burst_arrives_exactly_once_in_order(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_then_unsubscribe() {
    scenarios::retained_then_unsubscribe(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_restores_subscriptions_and_delivers_offline_publishes() {
    let mut broker = Midge::start().await;
    scenarios::reconnect_restores_subscriptions_and_delivers_offline_publishes(&mut broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_a_lost_connection_closes_the_client() {
    let mut broker = Midge::start().await;
    scenarios::without_reconnect_a_lost_connection_closes_the_client(&mut broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_offline_buffer_fails_fast() {
    let mut broker = Midge::start().await;
    scenarios::a_full_offline_buffer_fails_fast(&mut broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_flushes_in_flight_publishes() {
    scenarios::disconnect_flushes_in_flight_publishes(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscription_drops_and_counts_under_drop_newest() {
    scenarios::a_slow_subscription_drops_and_counts_under_drop_newest(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscription_loses_nothing_under_block() {
    scenarios::a_slow_subscription_loses_nothing_under_block(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_the_named_connack_code() {
    let broker = Midge::start().await;
    scenarios::wrong_password_is_refused_by_name(
        &broker,
        USER,
        &[ConnectReturnCode::BadUserNameOrPassword],
    )
    .await;
    scenarios::right_password_is_accepted(&broker, USER, PASSWORD).await;
}
