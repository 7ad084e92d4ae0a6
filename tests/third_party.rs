//! Third-party clients against an in-process broker: paho-mqtt for Python
//! (the scripts in `tests/python/`) and Mosquitto's `mosquitto_pub` and
//! `mosquitto_sub`.
//!
//! These tools are required, not optional: when one is missing the tests
//! fail and say how to install it (`scripts/test.sh` installs them).

mod support;

use std::process::Stdio;

use midge_protocol::QoS;
use support::paho::{run_paho, SCRIPT_TIMEOUT};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// Fails with a clear message unless the Mosquitto clients are there.
fn require_mosquitto_clients() {
    for tool in ["mosquitto_pub", "mosquitto_sub"] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is required: `apt-get install mosquitto-clients` (scripts/test.sh installs it)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_retained_message_and_its_removal() {
    let broker = TestBroker::start().await;
    run_paho(&broker, "paho_retained.py").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_will_on_abrupt_close_not_on_disconnect() {
    let broker = TestBroker::start().await;
    run_paho(&broker, "paho_will.py").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_qos2_round_trip_exactly_once_in_order() {
    let broker = TestBroker::start().await;
    run_paho(&broker, "paho_qos2.py").await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_persistent_session_with_offline_queue() {
    let broker = TestBroker::start().await;
    run_paho(&broker, "paho_persistent.py").await;
    broker.shutdown().await;
}

/// A running `mosquitto_sub -d` that has its SUBACK.
struct Sub {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<String>,
}

impl Sub {
    /// Starts `mosquitto_sub` with `args` and waits for its SUBACK.
    async fn start(broker: &TestBroker, args: &[&str]) -> Sub {
        require_mosquitto_clients();
        // Line-buffered, or the SUBACK line sits in a pipe buffer.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.addr.port().to_string(),
                "-d",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn `stdbuf -oL mosquitto_sub` (stdbuf is in coreutils)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut sub = Sub {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        };
        sub.read_until(|l| l.contains("SUBACK")).await;
        sub
    }

    /// Reads lines until one satisfies `done`; returns it.
    async fn read_until(&mut self, done: impl Fn(&str) -> bool) -> String {
        loop {
            let line = timeout(TIMEOUT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("mosquitto_sub silent; so far: {:#?}", self.seen))
                .expect("read mosquitto_sub output")
                .unwrap_or_else(|| panic!("mosquitto_sub ended; output: {:#?}", self.seen));
            self.seen.push(line.clone());
            if done(&line) {
                return line;
            }
        }
    }

    /// Waits for the process to exit (it was given `-C`) and asserts success.
    async fn finish(mut self) -> Vec<String> {
        while let Ok(Ok(Some(line))) = timeout(TIMEOUT, self.lines.next_line()).await {
            self.seen.push(line);
        }
        let status = timeout(TIMEOUT, self.child.wait())
            .await
            .expect("mosquitto_sub exits")
            .expect("wait for mosquitto_sub");
        assert!(status.success(), "mosquitto_sub {status}: {:#?}", self.seen);
        self.seen
    }
}

/// Runs `mosquitto_pub -d` with `args` to completion; returns its stdout.
async fn mosquitto_pub(broker: &TestBroker, args: &[&str]) -> String {
    require_mosquitto_clients();
    let out = timeout(
        SCRIPT_TIMEOUT,
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.addr.port().to_string(),
                "-d",
            ])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mosquitto_pub finishes")
    .expect("run mosquitto_pub");
    assert_success("mosquitto_pub", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_to_mosquitto_sub_qos0() {
    let broker = TestBroker::start().await;
    let sub = Sub::start(&broker, &["-t", "mosq/q0", "-C", "1"]).await;
    mosquitto_pub(
        &broker,
        &["-t", "mosq/q0", "-m", "hello from mosquitto_pub"],
    )
    .await;
    let out = sub.finish().await;
    assert!(
        out.iter().any(|l| l == "hello from mosquitto_pub"),
        "{out:#?}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_to_mosquitto_sub_qos1() {
    let broker = TestBroker::start().await;
    let sub = Sub::start(&broker, &["-t", "mosq/q1", "-q", "1", "-C", "1"]).await;
    let pub_out = mosquitto_pub(&broker, &["-t", "mosq/q1", "-q", "1", "-m", "one"]).await;
    assert!(pub_out.contains("received PUBACK"), "{pub_out}");
    let out = sub.finish().await;
    assert!(
        out.iter().any(|l| l.contains("received PUBLISH (d0, q1")),
        "delivered at QoS 1: {out:#?}"
    );
    assert!(out.iter().any(|l| l.contains("sending PUBACK")), "{out:#?}");
    assert!(out.iter().any(|l| l == "one"), "{out:#?}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_to_mosquitto_sub_qos2() {
    let broker = TestBroker::start().await;
    let sub = Sub::start(&broker, &["-t", "mosq/q2", "-q", "2", "-C", "1"]).await;
    let pub_out = mosquitto_pub(&broker, &["-t", "mosq/q2", "-q", "2", "-m", "two"]).await;
    for step in ["received PUBREC", "sending PUBREL", "received PUBCOMP"] {
        assert!(
            pub_out.contains(step),
            "publisher missing {step}: {pub_out}"
        );
    }
    let out = sub.finish().await;
    assert!(
        out.iter().any(|l| l.contains("received PUBLISH (d0, q2")),
        "delivered at QoS 2: {out:#?}"
    );
    for step in ["sending PUBREC", "received PUBREL", "sending PUBCOMP"] {
        assert!(
            out.iter().any(|l| l.contains(step)),
            "subscriber missing {step}: {out:#?}"
        );
    }
    assert!(out.iter().any(|l| l == "two"), "{out:#?}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_retained_message_reaches_a_later_subscriber() {
    let broker = TestBroker::start().await;
    mosquitto_pub(&broker, &["-t", "mosq/ret", "-q", "1", "-r", "-m", "kept"]).await;
    let sub = Sub::start(&broker, &["-t", "mosq/ret", "-q", "1", "-C", "1", "-v"]).await;
    let out = sub.finish().await;
    assert!(
        out.iter()
            .any(|l| l.contains("received PUBLISH") && l.contains("r1")),
        "retained flag set: {out:#?}"
    );
    assert!(out.iter().any(|l| l == "mosq/ret kept"), "{out:#?}");
    // A zero-length retained message clears it (`-n` sends a null message).
    mosquitto_pub(&broker, &["-t", "mosq/ret", "-r", "-n"]).await;
    let mut check = broker.client("check").await;
    check.subscribe("mosq/ret", QoS::AtLeastOnce).await;
    check.expect_nothing(QUIET).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_speak_mqtt_3_1() {
    let broker = TestBroker::start().await;
    let sub = Sub::start(
        &broker,
        &[
            "-V",
            "mqttv31",
            "-i",
            "mosq-v31-sub",
            "-t",
            "mosq/v31",
            "-q",
            "1",
            "-C",
            "1",
        ],
    )
    .await;
    mosquitto_pub(
        &broker,
        &[
            "-V",
            "mqttv31",
            "-i",
            "mosq-v31-pub",
            "-t",
            "mosq/v31",
            "-q",
            "1",
            "-m",
            "old",
        ],
    )
    .await;
    let out = sub.finish().await;
    assert!(out.iter().any(|l| l == "old"), "{out:#?}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_receives_a_raw_client_publish_and_vice_versa() {
    let broker = TestBroker::start().await;
    let mut raw = broker.client("raw").await;
    raw.subscribe("mosq/back", QoS::AtLeastOnce).await;
    let sub = Sub::start(&broker, &["-t", "mosq/fwd", "-q", "1", "-C", "1"]).await;
    raw.publish("mosq/fwd", b"from raw", QoS::AtLeastOnce, false)
        .await;
    let out = sub.finish().await;
    assert!(out.iter().any(|l| l == "from raw"), "{out:#?}");
    mosquitto_pub(
        &broker,
        &["-t", "mosq/back", "-q", "1", "-m", "from mosquitto"],
    )
    .await;
    let got = raw.recv_and_ack().await;
    assert_eq!(&got.payload[..], b"from mosquitto");
    broker.shutdown().await;
}
