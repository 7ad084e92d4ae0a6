//! `[log] format = "json"`: the `midge` binary, run as a subprocess, writes
//! one JSON object per line, and connection events carry the client id,
//! the address (`peer`) and the reason as fields of their own.

#[path = "ops_support.rs"]
mod support;

use std::time::Duration;

use midge_protocol::{Connect, ConnectReturnCode, Packet};
use serde_json::{Map, Value};
use support::*;

/// The first event whose message is `message` and whose fields include
/// every pair of `fields`.
fn find<'a>(
    events: &'a [Map<String, Value>],
    message: &str,
    fields: &[(&str, &str)],
) -> &'a Map<String, Value> {
    events
        .iter()
        .find(|e| {
            e.get("message").and_then(Value::as_str) == Some(message)
                && fields
                    .iter()
                    .all(|(k, v)| e.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {message:?} event with {fields:?} in {events:#?}"))
}

fn field<'a>(event: &'a Map<String, Value>, key: &str) -> &'a str {
    event
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string field {key:?} in {event:?}"))
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_client_id_peer_and_reason() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker.toml");
    let text = format!(
        "[[listeners]]\nbind = \"127.0.0.1:{port}\"\n\
         [persistence]\nenabled = false\n\
         [log]\nformat = \"json\"\n"
    );
    std::fs::write(&path, text).expect("write config");
    let args = ["--config".to_owned(), path.display().to_string()];
    let child = spawn_midge(&args, dir.path(), port).await;
    let addr = ([127, 0, 0, 1], port).into();

    let probe = Mqtt::connect(addr, "json-probe", true).await;
    probe.disconnect().await;
    let mut rejected = Mqtt::open(addr).await;
    let mut connect = Connect::new("");
    connect.clean_session = false;
    let code = rejected.handshake(connect).await;
    assert_eq!(code, Some(ConnectReturnCode::IdentifierRejected));
    let mut rude = Mqtt::open(addr).await;
    rude.send(Packet::PingReq).await;
    assert!(rude.recv(WAIT).await.is_none(), "closed");
    tokio::time::sleep(Duration::from_millis(200)).await;

    terminate(&child);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("exits in time")
        .expect("output");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "logs go to stderr only");
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    let events: Vec<Map<String, Value>> = stderr
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(event)) => event,
            other => panic!("not a JSON object: {line:?} ({other:?})"),
        })
        .collect();
    assert!(events.len() >= 5, "{stderr}");
    for e in &events {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(e.contains_key(key), "{key} missing in {e:?}");
        }
    }

    let connected = find(&events, "client connected", &[("client_id", "json-probe")]);
    assert!(field(connected, "peer").starts_with("127.0.0.1:"));
    assert_eq!(field(connected, "level"), "INFO");
    let gone = find(
        &events,
        "client disconnected",
        &[("client_id", "json-probe")],
    );
    assert_eq!(field(gone, "reason"), "client sent DISCONNECT");
    assert_eq!(field(gone, "peer"), field(connected, "peer"));
    let refused = find(&events, "connection refused", &[("client_id", "")]);
    assert!(
        field(refused, "reason").contains("identifier rejected"),
        "{refused:?}"
    );
    assert!(field(refused, "peer").starts_with("127.0.0.1:"));
    let closed = find(&events, "connection closed", &[]);
    assert!(
        field(closed, "reason").contains("not CONNECT"),
        "{closed:?}"
    );
    assert_eq!(field(closed, "level"), "WARN");
    find(&events, "stopping", &[("signal", "SIGTERM")]);
}
