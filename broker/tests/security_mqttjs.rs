//! MQTT.js (the npm package `mqtt`, pinned in `tests/js/package.json`) over
//! TLS: `mqtts://` to a TLS listener whose certificate the rcgen test CA of
//! `security_support.rs` signed. The script is `tests/js/tls.mjs`; the
//! plain-TCP MQTT.js scenarios are in the facade's `tests/third_party_js.rs`.
//! Fails, saying how to install them, when node or the node modules are
//! missing (`scripts/test.sh` installs them).

#[path = "security_support.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use midge_broker::auth::state::AuthConfig;
use support::{config, listener, Pki};

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/js")
}

/// Fails with a clear message unless node and the pinned MQTT.js are there.
fn require_mqttjs() {
    match Command::new("node").arg("--version").output() {
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
    assert!(
        js_dir().join("node_modules/mqtt/package.json").is_file(),
        "MQTT.js is not installed in tests/js/node_modules: run scripts/test.sh, \
         or `npm ci --prefix tests/js`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttjs_over_tls_with_the_test_ca_and_refused_without_it() {
    require_mqttjs();
    let pki = Pki::new();
    let broker = support::start(config(
        vec![listener(Some(pki.tls(false, false, false)))],
        AuthConfig::default(),
    ))
    .await;
    let url = format!("mqtts://127.0.0.1:{}", broker.local_addrs()[0].port());
    let ca = pki.path("ca.crt");
    // Blocking: node talks to the broker running on this runtime's workers.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(js_dir().join("tls.mjs"))
            .arg(&url)
            .arg(&ca)
            .current_dir(js_dir())
            .stdin(Stdio::null())
            .output()
    })
    .await
    .expect("join")
    .expect("run node");
    assert!(
        out.status.success(),
        "tls.mjs failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    broker.shutdown().await;
}
