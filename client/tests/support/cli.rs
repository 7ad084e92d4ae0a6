//! `midge-pub` and `midge-sub` run as subprocesses: helpers and scenarios
//! shared by the test files for each broker.

use std::process::{ExitStatus, Stdio};

use midge_client::{ConnectReturnCode, QoS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::scenarios::{client, next, TestBroker};
use super::within;

/// Path of the built `midge-pub`.
pub const PUB: &str = env!("CARGO_BIN_EXE_midge-pub");
/// Path of the built `midge-sub`.
pub const SUB: &str = env!("CARGO_BIN_EXE_midge-sub");

/// What a finished process left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// The exit code.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Runs a tool to completion with `stdin` as its input.
pub async fn run(bin: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    let out = within(&format!("{bin} {args:?}"), child.wait_with_output())
        .await
        .expect("wait");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `midge-sub`, started with `-d` so the test can wait until it
/// has subscribed; debug lines are skipped when reading its output.
pub struct RunningSub {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

fn is_debug(line: &str) -> bool {
    line.starts_with("Client ") || line.starts_with("Subscribed (mid:")
}

impl RunningSub {
    /// Starts `midge-sub -d ARGS` and waits for its SUBACK.
    pub async fn start(args: &[&str]) -> RunningSub {
        let mut child = Command::new(SUB)
            .arg("-d")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn midge-sub");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        within("midge-sub subscribed", async {
            loop {
                match lines.next_line().await.expect("read") {
                    Some(line) if line.starts_with("Subscribed (mid:") => return,
                    Some(_) => {}
                    None => panic!("midge-sub exited before subscribing"),
                }
            }
        })
        .await;
        RunningSub { child, lines }
    }

    /// The next output line that is not debug output; `None` at exit.
    pub async fn next_line(&mut self) -> Option<String> {
        within("midge-sub output", async {
            loop {
                match self.lines.next_line().await.expect("read") {
                    Some(line) if is_debug(&line) => {}
                    other => return other,
                }
            }
        })
        .await
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for exit; the remaining non-debug lines and stderr.
    pub async fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let mut rest = Vec::new();
        while let Some(line) = self.next_line().await {
            rest.push(line);
        }
        let status = within("midge-sub exit", self.child.wait())
            .await
            .expect("wait");
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr).await;
        }
        (status, rest, stderr)
    }

    /// Kills it with SIGKILL: no DISCONNECT, so the broker sends its will.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

fn port(broker: &impl TestBroker) -> String {
    broker.port().to_string()
}

/// `midge-pub` messages at every QoS reach `midge-sub -v -C 3`, which exits 0.
pub async fn pub_to_sub_with_count(broker: &impl TestBroker) {
    let p = port(broker);
    let sub = RunningSub::start(&["-p", &p, "-t", "cli/#", "-v", "-q", "2", "-C", "3"]).await;
    for (qos, text) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        let out = run(
            PUB,
            &["-p", &p, "-t", &format!("cli/{qos}"), "-m", text, "-q", qos],
            b"",
        )
        .await;
        assert_eq!(out.code(), 0, "{out:?}");
    }
    let (status, lines, _) = sub.finish().await;
    assert_eq!(lines, vec!["cli/0 zero", "cli/1 one", "cli/2 two"]);
    assert_eq!(status.code(), Some(0), "-C exits 0");
}

/// `midge-pub -l` sends one message per line, empty lines included.
pub async fn line_mode_sends_each_line(broker: &impl TestBroker) {
    let c = client(broker, "line-watcher").await;
    let mut sub = within("subscribe", c.subscribe("lines", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let out = run(
        PUB,
        &["-p", &port(broker), "-t", "lines", "-l", "-q", "1"],
        b"one\n\nthree\nfour",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(String::from_utf8(next(&mut sub).await.payload.to_vec()).expect("utf8"));
    }
    assert_eq!(got, vec!["one", "", "three", "four"]);
}

/// `-f`, `-n`, `-s` and `--repeat` produce the expected payloads.
pub async fn file_null_stdin_and_repeat(broker: &impl TestBroker, dir: &std::path::Path) {
    let c = client(broker, "payload-watcher").await;
    let mut sub = within("subscribe", c.subscribe("payload", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let p = port(broker);
    let file = dir.join("payload.bin");
    std::fs::write(&file, b"from a file\n").expect("write");
    let file = file.to_string_lossy().into_owned();
    for (args, stdin) in [
        (vec!["-f", file.as_str()], &b""[..]),
        (vec!["-n"], &b""[..]),
        (vec!["-s"], &b"all of\nstdin"[..]),
        (
            vec!["-m", "again", "--repeat", "2", "--repeat-delay", "0.01"],
            &b""[..],
        ),
    ] {
        let mut full = vec!["-p", p.as_str(), "-t", "payload", "-q", "1"];
        full.extend(args);
        let out = run(PUB, &full, stdin).await;
        assert_eq!(out.code(), 0, "{out:?}");
    }
    let expected: [&[u8]; 5] = [b"from a file\n", b"", b"all of\nstdin", b"again", b"again"];
    for want in expected {
        assert_eq!(&next(&mut sub).await.payload[..], want);
    }
}

/// `-W` with nothing arriving prints `Timed out` and exits 27.
pub async fn timeout_exits_27(broker: &impl TestBroker) {
    let out = run(
        SUB,
        &["-p", &port(broker), "-t", "nothing/here", "-W", "1"],
        b"",
    )
    .await;
    assert_eq!(out.code(), 27, "{out:?}");
    assert!(out.stderr.contains("Timed out"), "{out:?}");
}

/// `-R` skips the retained message and prints the live one.
pub async fn no_retained_flag_skips_stale_messages(broker: &impl TestBroker) {
    let c = client(broker, "retainer").await;
    within("publish", c.publish("cli/r", "old", QoS::AtLeastOnce, true))
        .await
        .expect("publish");
    let sub = RunningSub::start(&["-p", &port(broker), "-t", "cli/r", "-R", "-C", "1", "-v"]).await;
    within(
        "publish",
        c.publish("cli/r", "new", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    let (status, lines, _) = sub.finish().await;
    assert_eq!(lines, vec!["cli/r new"]);
    assert_eq!(status.code(), Some(0));
    within("clear", c.publish("cli/r", "", QoS::AtLeastOnce, true))
        .await
        .expect("clear");
}

/// `--retained-only --remove-retained` prints the retained messages, clears
/// them, and exits at the first live message (the echo of a clear).
pub async fn retained_only_and_remove_retained(broker: &impl TestBroker) {
    let c = client(broker, "rr-setup").await;
    within("publish", c.publish("rr/a", "A", QoS::AtLeastOnce, true))
        .await
        .expect("publish");
    within("publish", c.publish("rr/b", "B", QoS::AtLeastOnce, true))
        .await
        .expect("publish");
    let out = run(
        SUB,
        &[
            "-p",
            &port(broker),
            "-t",
            "rr/#",
            "-v",
            "--retained-only",
            "--remove-retained",
            "-W",
            "10",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, vec!["rr/a A", "rr/b B"]);
    let mut sub = within("subscribe", c.subscribe("rr/#", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    within(
        "publish",
        c.publish("rr/z", "live", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    let first = next(&mut sub).await;
    assert_eq!(first.topic, "rr/z", "retained messages were removed");
}

/// `midge-sub -t '#' -v` flushes each line: it is readable while the
/// process keeps running.
pub async fn sub_flushes_each_message(broker: &impl TestBroker) {
    let mut sub = RunningSub::start(&["-p", &port(broker), "-t", "#", "-v"]).await;
    let c = client(broker, "flush-check").await;
    within(
        "publish",
        c.publish("pipe/x", "now", QoS::AtMostOnce, false),
    )
    .await
    .expect("publish");
    assert_eq!(sub.next_line().await.as_deref(), Some("pipe/x now"));
    assert!(sub.running(), "line arrived before exit, so it was flushed");
    sub.kill().await;
}

/// `--json` and `-F` output.
pub async fn json_and_format_output(broker: &impl TestBroker) {
    let p = port(broker);
    let c = client(broker, "json-pub").await;
    let sub = RunningSub::start(&["-p", &p, "-t", "fmt/+", "--json", "-C", "1", "-q", "1"]).await;
    within(
        "publish",
        c.publish("fmt/j", "{\"t\":1}", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    let (status, lines, _) = sub.finish().await;
    assert_eq!(status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
    assert_eq!(v["topic"], "fmt/j");
    assert_eq!(v["qos"], 1);
    assert_eq!(v["retain"], 0);
    assert_eq!(v["payloadlen"], 7);
    assert_eq!(v["payload"], "{\"t\":1}");
    assert!(v["tst"].as_str().is_some_and(|t| t.ends_with("Z+0000")));

    let sub = RunningSub::start(&[
        "-p",
        &p,
        "-t",
        "fmt/+",
        "-F",
        "%t|%p|%q|%r|%l|%x",
        "-C",
        "1",
    ])
    .await;
    within("publish", c.publish("fmt/f", "hi", QoS::AtMostOnce, false))
        .await
        .expect("publish");
    let (_, lines, _) = sub.finish().await;
    assert_eq!(lines, vec!["fmt/f|hi|0|0|2|6869"]);
}

/// `-T` filters topics out; `-E` exits after subscribing.
pub async fn filter_out_and_exit_after_subscribe(broker: &impl TestBroker) {
    let p = port(broker);
    let c = client(broker, "filter-pub").await;
    let sub = RunningSub::start(&["-p", &p, "-t", "f/#", "-T", "f/skip", "-C", "1", "-v"]).await;
    within(
        "publish",
        c.publish("f/skip", "no", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    within(
        "publish",
        c.publish("f/keep", "yes", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    let (status, lines, _) = sub.finish().await;
    assert_eq!(
        (status.code(), lines),
        (Some(0), vec!["f/keep yes".to_string()])
    );
    let out = run(SUB, &["-p", &p, "-t", "e/#", "-E"], b"").await;
    assert_eq!(out.code(), 0, "{out:?}");
}

/// `-r` retains; `-N` prints without a newline; `-I` prefixes the id.
pub async fn retain_no_eol_and_id_prefix(broker: &impl TestBroker) {
    let p = port(broker);
    let out = run(
        PUB,
        &[
            "-p", &p, "-t", "cli/kept", "-m", "value", "-r", "-q", "1", "-I", "prefix-", "-d",
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.starts_with("Client prefix-"), "{out:?}");
    let out = run(
        SUB,
        &["-p", &p, "-t", "cli/kept", "-C", "1", "-N", "-W", "10"],
        b"",
    )
    .await;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "value"), "{out:?}");
    let out = run(PUB, &["-p", &p, "-t", "cli/kept", "-n", "-r"], b"").await;
    assert_eq!(out.code(), 0, "clearing the retained message: {out:?}");
}

/// `-c -E` leaves a persistent session behind; the next `-c` run gets
/// the QoS 1 message queued meanwhile.
pub async fn persistent_session_with_c_and_e(broker: &impl TestBroker) {
    let p = port(broker);
    let args = [
        "-p",
        p.as_str(),
        "-c",
        "-i",
        "cli-keeper",
        "-t",
        "kept/#",
        "-q",
        "1",
    ];
    let mut first = args.to_vec();
    first.push("-E");
    let out = run(SUB, &first, b"").await;
    assert_eq!(out.code(), 0, "{out:?}");
    let c = client(broker, "kept-pub").await;
    within(
        "publish",
        c.publish("kept/x", "while away", QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
    let mut second = args.to_vec();
    second.extend(["-C", "1", "-v", "-W", "10"]);
    let out = run(SUB, &second, b"").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "kept/x while away");
}

/// `-L` carries host, port and topic.
pub async fn url_flag(broker: &impl TestBroker) {
    let c = client(broker, "url-watcher").await;
    let mut sub = within("subscribe", c.subscribe("from/url", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let url = format!("mqtt://127.0.0.1:{}/from/url", broker.port());
    let out = run(PUB, &["-L", &url, "-m", "via -L", "-q", "1"], b"").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(&next(&mut sub).await.payload[..], b"via -L");
}

/// A `midge-sub` killed without DISCONNECT leaves its will.
pub async fn will_is_published_when_the_cli_dies(broker: &impl TestBroker) {
    let c = client(broker, "will-watcher").await;
    let mut wills = within("subscribe", c.subscribe("wills/#", QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let sub = RunningSub::start(&[
        "-p",
        &port(broker),
        "-t",
        "x",
        "--will-topic",
        "wills/cli",
        "--will-payload",
        "gone",
        "--will-qos",
        "1",
    ])
    .await;
    sub.kill().await;
    let msg = next(&mut wills).await;
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..]),
        ("wills/cli", &b"gone"[..])
    );
}

/// A wrong password: mosquitto's words on stderr, the CONNACK code as exit code.
pub async fn wrong_password_exit_code(
    broker: &impl TestBroker,
    user: &str,
    expected: &[ConnectReturnCode],
) {
    let p = port(broker);
    for (bin, extra) in [(PUB, &["-t", "t", "-m", "x"][..]), (SUB, &["-t", "t"][..])] {
        let mut args = vec!["-p", p.as_str(), "-u", user, "-P", "wrong"];
        args.extend_from_slice(extra);
        let out = run(bin, &args, b"").await;
        let code = expected
            .iter()
            .find(|c| out.code() == **c as i32)
            .unwrap_or_else(|| panic!("unexpected exit code: {out:?}"));
        assert_eq!(
            out.stderr.trim(),
            format!("Connection error: {}", code.reason()),
            "{out:?}"
        );
    }
}

/// Usage errors: mosquitto's messages, exit code 1.
pub async fn usage_errors() {
    let out = run(PUB, &["-t", "a/#", "-m", "x"], b"").await;
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr
            .starts_with("Error: Invalid publish topic 'a/#', does it contain '+' or '#'?"),
        "{out:?}"
    );
    let out = run(PUB, &["-t", "a"], b"").await;
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr
            .starts_with("Error: Both topic and message must be supplied."),
        "{out:?}"
    );
    let out = run(SUB, &["-p", "1"], b"").await;
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr
            .starts_with("Error: You must specify a topic to subscribe to."),
        "{out:?}"
    );
    let out = run(SUB, &["-t", "a/+b"], b"").await;
    assert!(
        out.stderr.contains("Invalid subscription topic 'a/+b'"),
        "{out:?}"
    );
    let out = run(SUB, &["-t", "a", "-c"], b"").await;
    assert!(
        out.stderr
            .contains("You must provide a client id if you are using the -c option."),
        "{out:?}"
    );
    let out = run(PUB, &["-t", "a", "-m", "x", "-V", "7"], b"").await;
    assert!(
        out.stderr
            .contains("Invalid protocol version argument given."),
        "{out:?}"
    );
    let out = run(PUB, &["--help"], b"").await;
    assert_eq!(out.code(), 0);
    assert!(
        out.stdout.contains("--host"),
        "-h is the host, --help the help"
    );
}

/// Nothing listening: `Error: Connection refused`, exit 1.
pub async fn connection_refused(free_port: u16) {
    let out = run(
        PUB,
        &["-p", &free_port.to_string(), "-t", "a", "-m", "x"],
        b"",
    )
    .await;
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.trim(), "Error: Connection refused");
}
