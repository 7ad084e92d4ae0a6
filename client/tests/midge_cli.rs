//! `midge-pub` and `midge-sub` as subprocesses against midge's own broker,
//! in-process: the same scenarios as against Mosquitto.

mod support;

use midge_client::ConnectReturnCode;
use support::cli;
use support::midge::Midge;
use support::USER;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_to_sub_with_count() {
    cli::pub_to_sub_with_count(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_mode_sends_each_line() {
    cli::line_mode_sends_each_line(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_null_stdin_and_repeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    cli::file_null_stdin_and_repeat(&Midge::start().await, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_exits_27() {
    cli::timeout_exits_27(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retained_flag_skips_stale_messages() {
    cli::no_retained_flag_skips_stale_messages(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_only_and_remove_retained() {
    cli::retained_only_and_remove_retained(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_flushes_each_message() {
    cli::sub_flushes_each_message(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_format_output() {
    cli::json_and_format_output(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_out_and_exit_after_subscribe() {
    cli::filter_out_and_exit_after_subscribe(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_with_c_and_e() {
    cli::persistent_session_with_c_and_e(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_no_eol_and_id_prefix() {
    cli::retain_no_eol_and_id_prefix(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_flag() {
    cli::url_flag(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_cli_dies() {
    cli::will_is_published_when_the_cli_dies(&Midge::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_exit_code() {
    cli::wrong_password_exit_code(
        &Midge::start().await,
        USER,
        &[ConnectReturnCode::BadUserNameOrPassword],
    )
    .await;
}
