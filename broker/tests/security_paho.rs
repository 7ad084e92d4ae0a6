//! The HiveMQ Cloud flow with the real paho-mqtt Python client (2.x): TLS
//! with a CA file, user name and password, subscribe `encyclopedia/#` at
//! QoS 1, publish `encyclopedia/temperature` `hot` at QoS 1 and receive
//! it; a wrong password is refused with CONNACK code 4. Fails, saying
//! so, when python3 or paho-mqtt is missing.

#[path = "security_support.rs"]
mod support;

use std::process::Command;

use midge_broker::auth::state::AuthConfig;
use support::{config, listener, Pki};

const SCRIPT: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt

port, ca, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
done = threading.Event()
state = {"connack": None, "message": None}

def on_log(client, userdata, level, buf):
    # paho 2 maps 3.1.1 CONNACK codes to MQTT 5 reason codes in on_connect;
    # its log line has the code from the wire.
    if buf.startswith("Received CONNACK"):
        state["connack"] = int(buf.rstrip(")").split(",")[-1])

def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        done.set()
        return
    client.subscribe("encyclopedia/#", qos=1)

def on_subscribe(client, userdata, mid, reason_codes, properties):
    client.publish("encyclopedia/temperature", "hot", qos=1)

def on_message(client, userdata, msg):
    state["message"] = (msg.topic, msg.payload.decode(), msg.qos)
    done.set()

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-" + user,
                     protocol=mqtt.MQTTv311)
client.on_log = on_log
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.tls_set(ca_certs=ca)
client.username_pw_set(user, password)
client.connect("localhost", port, keepalive=30)
client.loop_start()
done.wait(10)
client.loop_stop()
print("CONNACK", state["connack"])
print("MESSAGE", state["message"])
"#;

/// Runs the script; `None` when paho is not available.
fn paho(port: u16, ca: &std::path::Path, user: &str, password: &str) -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        panic!("python3 with paho-mqtt is not installed: ./scripts/test.sh installs it (pip install paho-mqtt)");
    }
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &port.to_string()])
        .arg(ca)
        .args([user, password])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "paho script failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_over_tls_with_a_password_subscribes_publishes_and_receives() {
    let pki = Pki::new();
    let status = Command::new(env!("CARGO_BIN_EXE_midge"))
        .arg("passwd")
        .args(["-c", "-b"])
        .arg(pki.path("passwd"))
        .args(["hivemq-user", "S3cure!pass"])
        .status()
        .expect("midge passwd");
    assert!(status.success());
    let auth = AuthConfig {
        allow_anonymous: None,
        password_file: Some(pki.path("passwd")),
        acl_file: None,
    };
    let broker = support::start(config(
        vec![listener(Some(pki.tls(false, false, false)))],
        auth,
    ))
    .await;
    let port = broker.local_addrs()[0].port();
    let ca = pki.path("ca.crt");

    let run = |user: &'static str, pw: &'static str| {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || paho(port, &ca, user, pw))
    };
    let Some(ok) = run("hivemq-user", "S3cure!pass").await.expect("join") else {
        return;
    };
    assert!(ok.contains("CONNACK 0"), "{ok}");
    assert!(
        ok.contains("MESSAGE ('encyclopedia/temperature', 'hot', 1)"),
        "{ok}"
    );

    let refused = run("hivemq-user", "wrong")
        .await
        .expect("join")
        .expect("paho");
    assert!(refused.contains("CONNACK 4"), "{refused}");
    assert!(refused.contains("MESSAGE None"), "{refused}");
    broker.shutdown().await;
}
