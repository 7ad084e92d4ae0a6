//! The `midge` binary as a subprocess: configuration layering, start-up
//! errors (exit code 2), signals (exit 0 within 5 s) and connection logs.
//!
//! Cargo only builds a package's own binaries for its integration tests, and
//! `midge` belongs to `midge-broker`, so build it first:
//! `cargo build --workspace --bins && cargo test --workspace` (what
//! `scripts/test.sh` does). The binary is looked up next to this test's
//! executable, and a binary older than the broker's sources fails the test
//! instead of testing stale code.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

use midge_protocol::{ConnectReturnCode, Packet};
use support::*;
use tokio::process::{Child, Command};
use tokio::time::{timeout, Instant};

/// The `midge` binary in this build's target directory.
fn midge_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/broker_cli-<hash> -> target/<profile>/midge
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target profile directory");
    let bin = dir.join(format!("midge{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} not found: build the binaries first with `cargo build --workspace --bins` \
         (scripts/test.sh does this before `cargo test`)",
        bin.display()
    );
    let built = modified(&bin);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["broker/src", "protocol/src"] {
        if let Some(newer) = newest_source(&root.join(dir)).filter(|(t, _)| *t > built) {
            panic!(
                "{} is older than {}: rebuild with `cargo build --workspace --bins`",
                bin.display(),
                newer.1.display()
            );
        }
    }
    bin
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("file modification time")
}

/// The most recently modified file under `dir`.
fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_source(&path)
        } else {
            Some((modified(&path), path))
        };
        if let Some(c) = candidate {
            match &newest {
                Some(n) if n.0 >= c.0 => {}
                _ => newest = Some(c),
            }
        }
    }
    newest
}

/// Runs `midge` with `args` to completion (at most 10 s).
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(midge_bin());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    timeout(Duration::from_secs(10), cmd.output())
        .await
        .expect("midge finishes within 10 s")
        .expect("run midge")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts some line of `text` holds both `key` and `value`.
fn assert_key_value(text: &str, key: &str, value: &str) {
    assert!(
        text.lines().any(|l| l.contains(key) && l.contains(value)),
        "no line with {key:?} and {value:?} in:\n{text}"
    );
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A config file in a temporary directory.
fn config_file(contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, contents).expect("write the config file");
    (dir, path)
}

/// Starts `midge` with `args` and waits until it accepts on `port`.
async fn spawn_listening(args: &[&str], port: u16) -> Child {
    let mut cmd = Command::new(midge_bin());
    cmd.args(args);
    spawn_command(cmd, port).await
}

/// Starts `cmd` (which runs `midge`) and waits until it accepts on `port`.
async fn spawn_command(mut cmd: Command, port: u16) -> Child {
    let child = cmd
        .env_remove("RUST_LOG")
        // In memory: these brokers run in parallel in one working directory.
        .env("MIDGE_PERSISTENCE__ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn midge");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "midge never listened on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Sends `signal` (a `kill` name such as `TERM`) to the child.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Connects a raw MQTT client to 127.0.0.1:`port`.
async fn mqtt_client(port: u16, id: &str) -> Client {
    let mut client = Client::tcp(([127, 0, 0, 1], port).into()).await;
    let ack = client.handshake(connect_packet(id, true)).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    client
}

#[tokio::test]
async fn print_config_shows_the_built_in_defaults() {
    let out = run(&["--print-config"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_key_value(&text, "bind", "0.0.0.0:1883");
    assert_key_value(&text, "max_packet_size", "1048576");
    assert_key_value(&text, "max_connections", "100000");
    assert_key_value(&text, "max_inflight", "100");
    assert_key_value(&text, "max_queued_messages", "1000");
    assert_key_value(&text, "connect_timeout_s", "10");
    assert_key_value(&text, "interval_s", "10");
    assert_key_value(&text, "level", "info");
}

#[tokio::test]
async fn print_config_with_repo_broker_toml_equals_the_defaults() {
    let documented = Path::new(env!("CARGO_MANIFEST_DIR")).join("broker.toml");
    let documented = documented.to_str().expect("a UTF-8 path");
    let defaults = run(&["--print-config"], &[]).await;
    let from_file = run(&["--config", documented, "--print-config"], &[]).await;
    assert!(from_file.status.success(), "{from_file:?}");
    // broker.toml documents every key with its default value.
    assert_eq!(stdout(&from_file), stdout(&defaults));
}

#[tokio::test]
async fn port_flag_overrides_the_listener_port() {
    for flag in ["-p", "--port"] {
        let out = run(&["--print-config", flag, "18831"], &[]).await;
        assert!(out.status.success(), "{out:?}");
        assert_key_value(&stdout(&out), "bind", ":18831");
    }
}

#[tokio::test]
async fn config_file_values_are_used() {
    let (_dir, path) = config_file("[limits]\nmax_inflight = 7\nconnect_timeout_s = 3\n");
    let out = run(
        &["--config", path.to_str().expect("UTF-8"), "--print-config"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_key_value(&text, "max_inflight", "7");
    assert_key_value(&text, "connect_timeout_s", "3");
    // Keys the file leaves out keep their defaults.
    assert_key_value(&text, "max_queued_messages", "1000");
}

#[tokio::test]
async fn environment_overrides_the_file_and_flags_override_both() {
    let (_dir, path) =
        config_file("[[listeners]]\nbind = \"127.0.0.1:1111\"\n[limits]\nmax_inflight = 7\n");
    let path = path.to_str().expect("UTF-8");
    let out = run(
        &["--config", path, "--print-config", "-p", "2222"],
        &[("MIDGE_LIMITS__MAX_INFLIGHT", "9")],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_key_value(&text, "max_inflight", "9");
    assert_key_value(&text, "bind", ":2222");
    assert!(
        !text.contains("1111"),
        "the flag wins over the file:\n{text}"
    );
}

#[tokio::test]
async fn port_flag_moves_the_configured_listener() {
    let (from_file, from_flag) = (free_port(), free_port());
    let (_dir, path) = config_file(&format!(
        "[[listeners]]\nbind = \"127.0.0.1:{from_file}\"\n"
    ));
    let port = from_flag.to_string();
    let mut child = spawn_listening(
        &["--config", path.to_str().expect("UTF-8"), "-p", &port],
        from_flag,
    )
    .await;
    let mut client = mqtt_client(from_flag, "flagged").await;
    client.ping().await;
    signal(&child, "TERM");
    let status = timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exit within 5 s")
        .expect("wait for midge");
    assert!(status.success());
}

#[tokio::test]
async fn bad_value_stops_start_up_with_exit_2_naming_file_and_key() {
    let (_dir, path) = config_file("[limits]\nmax_inflight = \"lots\"\n");
    let out = run(&["--config", path.to_str().expect("UTF-8")], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("broker.toml"), "names the file: {err}");
    assert!(err.contains("max_inflight"), "names the key: {err}");
    assert!(err.lines().count() <= 3, "one clear message: {err}");
}

#[tokio::test]
async fn unknown_key_stops_start_up_with_exit_2_naming_file_and_key() {
    let (_dir, path) = config_file("[limits]\nmax_flux_capacitors = 3\n");
    let out = run(&["--config", path.to_str().expect("UTF-8")], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("broker.toml"), "names the file: {err}");
    assert!(err.contains("max_flux_capacitors"), "names the key: {err}");
}

#[tokio::test]
async fn unknown_section_stops_start_up_with_exit_2() {
    let (_dir, path) = config_file("[limitz]\nmax_inflight = 3\n");
    let out = run(&["--config", path.to_str().expect("UTF-8")], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("limitz"), "{out:?}");
}

#[tokio::test]
async fn unreadable_file_stops_start_up_with_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("missing.toml");
    let out = run(&["--config", path.to_str().expect("UTF-8")], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("missing.toml"), "{out:?}");
}

#[tokio::test]
async fn toml_syntax_error_stops_start_up_with_exit_2_naming_the_file() {
    let (_dir, path) = config_file("[limits\nmax_inflight = 3\n");
    let out = run(&["--config", path.to_str().expect("UTF-8")], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("broker.toml"), "{out:?}");
}

#[tokio::test]
async fn sigterm_closes_clients_and_exits_0_within_5s() {
    stops_cleanly_on("TERM").await;
}

#[tokio::test]
async fn sigint_closes_clients_and_exits_0_within_5s() {
    stops_cleanly_on("INT").await;
}

async fn stops_cleanly_on(sig: &str) {
    let port = free_port();
    let (_dir, path) = config_file(&format!("[[listeners]]\nbind = \"127.0.0.1:{port}\"\n"));
    let mut child = spawn_listening(&["--config", path.to_str().expect("UTF-8")], port).await;
    let mut client = mqtt_client(port, "bystander").await;
    client.ping().await;
    let started = Instant::now();
    signal(&child, sig);
    let status = timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap_or_else(|_| panic!("midge still running 5 s after SIG{sig}"))
        .expect("wait for midge");
    assert_eq!(status.code(), Some(0), "exit status after SIG{sig}");
    client.expect_closed_within(Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // It stopped accepting, too.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}

#[tokio::test]
async fn logs_one_line_per_connect_and_per_disconnect() {
    let port = free_port();
    let (_dir, path) = config_file(&format!("[[listeners]]\nbind = \"127.0.0.1:{port}\"\n"));
    let child = spawn_listening(&["--config", path.to_str().expect("UTF-8")], port).await;
    let client = mqtt_client(port, "log-probe-7f3a").await;
    client.disconnect().await;
    // Give the broker a moment to log the disconnect, then stop it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "TERM");
    let out = timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("exit within 5 s")
        .expect("midge output");
    let logs = format!("{}{}", stdout(&out), stderr(&out));
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("log-probe-7f3a"))
        .collect();
    assert!(
        lines.len() >= 2,
        "expected a connect and a disconnect line naming the client:\n{logs}"
    );
    assert!(
        lines.iter().any(|l| l.contains("127.0.0.1")),
        "the connect line names the address:\n{logs}"
    );
}

#[tokio::test]
async fn unknown_flag_exits_2() {
    let out = run(&["--no-such-flag"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_low_soft_open_files_limit_is_raised_at_start() {
    // Started from a shell whose soft limit is 128 files, the broker still
    // takes 300 clients: it raises its soft limit to the hard one.
    let port = free_port();
    let (_dir, path) = config_file(&format!("[[listeners]]\nbind = \"127.0.0.1:{port}\"\n"));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -Sn 128 && exec \"$0\" \"$@\"")
        .arg(midge_bin())
        .arg("--config")
        .arg(&path);
    let child = spawn_command(cmd, port).await;
    let clients = timeout(Duration::from_secs(30), async {
        let mut clients = Vec::new();
        for i in 0..300 {
            clients.push(mqtt_client(port, &format!("many-{i}")).await);
        }
        clients
    })
    .await
    .expect("300 clients connected (a broker held to 128 files stops near 120)");
    assert_eq!(clients.len(), 300);
    signal(&child, "TERM");
    drop(child);
}

#[tokio::test]
async fn raw_packets_work_against_the_binary() {
    let port = free_port();
    let (_dir, path) = config_file(&format!("[[listeners]]\nbind = \"127.0.0.1:{port}\"\n"));
    let child = spawn_listening(&["--config", path.to_str().expect("UTF-8")], port).await;
    let mut sub = mqtt_client(port, "bin-sub").await;
    sub.subscribe("bin/t", midge_protocol::QoS::AtLeastOnce)
        .await;
    let mut publisher = mqtt_client(port, "bin-pub").await;
    publisher
        .publish(
            "bin/t",
            b"via the binary",
            midge_protocol::QoS::AtLeastOnce,
            false,
        )
        .await;
    assert_eq!(&sub.recv_and_ack().await.payload[..], b"via the binary");
    sub.send(Packet::Disconnect).await;
    signal(&child, "TERM");
    drop(child);
}
