//! The examples in `client/examples/`, run against a real Mosquitto.

mod support;

use std::path::PathBuf;

use support::cli::{run, Output};
use support::{Mosquitto, PASSWORD, USER};

/// The built example, building it first if this test ran on its own.
fn example(name: &str) -> String {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "midge-client", "--example", name])
            .status()
            .expect("cargo build --example");
        assert!(status.success(), "building example {name}");
    }
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn temperature_pub_and_sub_talk() {
    let broker = Mosquitto::start();
    let url = broker.url();
    let sub_bin = example("temperature_sub");
    let pub_bin = example("temperature_pub");
    let sub = tokio::spawn({
        let url = url.clone();
        async move { run(&sub_bin, &[&url, "2"], b"").await }
    });
    // The subscriber announces itself once subscribed; give it a head start
    // by publishing more readings than it waits for.
    let published: Output = run(&pub_bin, &[&url, "4"], b"").await;
    assert_eq!(published.code(), 0, "{published:?}");
    let lines: Vec<&str> = published.stdout.lines().collect();
    assert_eq!(lines.len(), 4);
    for line in &lines {
        let value = line
            .strip_prefix("Just published ")
            .and_then(|rest| rest.strip_suffix(" to topic TEMPERATURE"))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let reading: f64 = value.parse().expect("a number");
        assert!((20.0..21.0).contains(&reading));
    }
    let received = sub.await.expect("join");
    assert_eq!(received.code(), 0, "{received:?}");
    let readings: Vec<&str> = received
        .stdout
        .lines()
        .filter(|l| l.starts_with("Received temperature "))
        .collect();
    assert_eq!(readings.len(), 2, "{received:?}");
    assert!(readings[0].ends_with(" from topic TEMPERATURE"));
}

#[tokio::test]
async fn cloud_tls_subscribes_publishes_and_prints() {
    let broker = Mosquitto::start();
    let out = run(
        &example("cloud_tls"),
        &[
            "--host",
            "localhost",
            "--port",
            &broker.tls_port.to_string(),
            "--username",
            USER,
            "--password",
            PASSWORD,
            "--cafile",
            &broker.certs.ca.to_string_lossy(),
            "--count",
            "1",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout
            .contains("Published hot to encyclopedia/temperature"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "encyclopedia/temperature hot"),
        "{out:?}"
    );
}
