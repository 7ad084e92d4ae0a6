//! Running the paho-mqtt (Python) scripts of `tests/python/` against a
//! [`TestBroker`]: each script takes the broker's host and port, then any
//! arguments of its own, and exits 0 when its checks held.
//!
//! paho-mqtt 2.x is required, not optional: when it is missing the tests
//! fail and say how to install it (`scripts/test.sh` installs it).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

use super::{assert_success, TestBroker};

/// The most one script run may take.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(40);

/// `tests/python/`.
pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Fails with a clear message unless python3 with paho-mqtt 2.x is there.
pub async fn require_paho() {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import paho.mqtt; assert int(paho.mqtt.__version__.split('.')[0]) >= 2, paho.mqtt.__version__",
        ])
        .output()
        .await;
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "paho-mqtt 2.x for python3 is required: `python3 -m pip install 'paho-mqtt>=2,<3'` \
             (scripts/test.sh installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("python3 is required to run the paho-mqtt tests: {e}"),
    }
}

/// Runs `tests/python/<script> HOST PORT <args>` against `broker` and
/// asserts it passed.
pub async fn run_paho_with(broker: &TestBroker, script: &str, args: &[&str]) {
    require_paho().await;
    let out = timeout(
        SCRIPT_TIMEOUT,
        Command::new("python3")
            .arg(python_dir().join(script))
            .arg(broker.addr.ip().to_string())
            .arg(broker.addr.port().to_string())
            .args(args)
            // No __pycache__ in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} {args:?} still running after {SCRIPT_TIMEOUT:?}"))
    .expect("run python3");
    assert_success(&format!("{script} {}", args.join(" ")), &out);
}

/// Runs `tests/python/<script>` against `broker` and asserts it passed.
pub async fn run_paho(broker: &TestBroker, script: &str) {
    run_paho_with(broker, script, &[]).await;
}
