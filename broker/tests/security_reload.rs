//! The `midge` binary: its start-up line per listener, and SIGHUP reloading
//! certificates, the password file and the ACL file while clients stay
//! connected; a broken file keeps the previous one.

#![cfg(unix)]

#[path = "security_support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use midge_protocol::{ConnectReturnCode, QoS, SubscribeReturnCode};
use rustls::version::TLS13;
use support::{tcp, tls, Pki, WAIT};

const ACCEPTED: Option<ConnectReturnCode> = Some(ConnectReturnCode::Accepted);
const BAD_LOGIN: Option<ConnectReturnCode> = Some(ConnectReturnCode::BadUserNameOrPassword);

/// A port free right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The running binary and its log lines.
struct Midge {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Midge {
    fn start(config: &std::path::Path) -> Midge {
        let mut child = Command::new(env!("CARGO_BIN_EXE_midge"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // In memory: tests must not share a data directory.
            .env("MIDGE_PERSISTENCE__ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts midge");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Midge {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing every one of `words`.
    fn wait_for(&mut self, words: &[&str]) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = self
                .seen
                .iter()
                .find(|l| words.iter().all(|w| l.contains(w)))
            {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no log line with {words:?}; got:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Midge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn midge_passwd(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_midge"))
        .arg("passwd")
        .args(args)
        .status()
        .expect("runs midge passwd");
    assert!(status.success());
}

#[tokio::test]
async fn start_up_lines_and_sighup_reload_keep_clients_connected() {
    let pki = Pki::new();
    let passwd = pki.path("passwd");
    let passwd = passwd.to_str().expect("utf-8");
    midge_passwd(&["-c", "-b", passwd, "alice", "one"]);
    pki.write("acl", "user alice\ntopic readwrite a/#\n");
    let (plain, secure) = (free_port(), free_port());
    let toml = format!(
        r#"
[[listeners]]
bind = "127.0.0.1:{plain}"

[[listeners]]
bind = "127.0.0.1:{secure}"
tls = {{ cert = "{cert}", key = "{key}" }}

[auth]
password_file = "{passwd}"
acl_file = "{acl}"

[sys]
interval_s = 0
"#,
        cert = pki.path("server.crt").display(),
        key = pki.path("server.key").display(),
        acl = pki.path("acl").display(),
    );
    pki.write("midge.toml", &toml);
    let mut midge = Midge::start(&pki.path("midge.toml"));
    let line = midge.wait_for(&[&format!("127.0.0.1:{plain}"), "plain"]);
    assert!(line.contains("anonymous refused"), "{line}");
    let line = midge.wait_for(&[&format!("127.0.0.1:{secure}"), "TLS"]);
    assert!(line.contains("anonymous refused"), "{line}");

    let plain: SocketAddr = ([127, 0, 0, 1], plain).into();
    let secure: SocketAddr = ([127, 0, 0, 1], secure).into();
    let mut alice = tcp(plain).await;
    assert_eq!(
        alice.connect("alice", Some("alice"), Some("one")).await,
        ACCEPTED
    );
    let mut alice_tls = tls(secure, pki.client(&TLS13, None)).await.expect("tls");
    assert_eq!(
        alice_tls
            .connect("alice-tls", Some("alice"), Some("one"))
            .await,
        ACCEPTED
    );

    // Change all three files, then SIGHUP.
    let fresh = Pki::new();
    std::fs::copy(fresh.path("server.crt"), pki.path("server.crt")).expect("copy");
    std::fs::copy(fresh.path("server.key"), pki.path("server.key")).expect("copy");
    midge_passwd(&["-b", passwd, "alice", "two"]);
    pki.write("acl", "user alice\ntopic readwrite b/#\n");
    midge.sighup();
    midge.wait_for(&["reloaded"]);

    assert!(
        alice.ping().await && alice_tls.ping().await,
        "still connected"
    );
    assert_eq!(
        alice.subscribe("a/#", QoS::AtMostOnce).await,
        SubscribeReturnCode::Failure
    );
    let b = alice.subscribe("b/#", QoS::AtMostOnce).await;
    assert_eq!(b, SubscribeReturnCode::Success(QoS::AtMostOnce));
    assert_eq!(
        tcp(plain)
            .await
            .connect("x", Some("alice"), Some("one"))
            .await,
        BAD_LOGIN
    );
    assert_eq!(
        tcp(plain)
            .await
            .connect("y", Some("alice"), Some("two"))
            .await,
        ACCEPTED
    );
    // New handshakes get the new certificate: the old CA no longer works.
    assert!(tls(secure, fresh.client(&TLS13, None)).await.is_ok());
    assert!(tls(secure, pki.client(&TLS13, None)).await.is_err());

    // A broken ACL: the reload is refused, the last good files stay.
    pki.write("acl", "user alice\ntopic sideways c/#\n");
    midge.sighup();
    let line = midge.wait_for(&["reload", "sideways"]);
    assert!(line.contains("acl"), "{line}");
    let b = alice.subscribe("b/#", QoS::AtLeastOnce).await;
    assert_eq!(b, SubscribeReturnCode::Success(QoS::AtLeastOnce));
    assert!(alice.ping().await);
}

#[tokio::test]
async fn sighup_applies_the_auth_section_of_the_edited_config_file() {
    let pki = Pki::new();
    let passwd = pki.path("passwd");
    let passwd = passwd.to_str().expect("utf-8");
    midge_passwd(&["-c", "-b", passwd, "alice", "one"]);
    let port = free_port();
    let toml = |anonymous: bool, inflight: u32| {
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:{port}\"\n\
             [limits]\nmax_inflight = {inflight}\n\
             [auth]\npassword_file = \"{passwd}\"\nallow_anonymous = {anonymous}\n\
             [sys]\ninterval_s = 0\n"
        )
    };
    pki.write("midge.toml", &toml(true, 100));
    let mut midge = Midge::start(&pki.path("midge.toml"));
    midge.wait_for(&[&format!("127.0.0.1:{port}"), "anonymous allowed"]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut anon = tcp(addr).await;
    assert_eq!(anon.connect("anon", None, None).await, ACCEPTED);

    // Anonymous access turned off in the file: new anonymous clients are
    // refused (0x05), the connected one stays; a changed [limits] is
    // reported as waiting for a restart.
    pki.write("midge.toml", &toml(false, 50));
    midge.sighup();
    midge.wait_for(&["reloaded"]);
    midge.wait_for(&["limits", "restart"]);
    assert_eq!(
        tcp(addr).await.connect("anon-2", None, None).await,
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        tcp(addr)
            .await
            .connect("alice", Some("alice"), Some("one"))
            .await,
        ACCEPTED
    );
    assert!(anon.ping().await, "the connected client stays");

    // A file that does not load changes nothing.
    pki.write("midge.toml", &(toml(true, 50) + "[auth.typo]\n"));
    midge.sighup();
    midge.wait_for(&["previous configuration kept"]);
    assert_eq!(
        tcp(addr).await.connect("anon-3", None, None).await,
        Some(ConnectReturnCode::NotAuthorized)
    );
}

#[test]
fn a_non_loopback_listener_allowing_anonymous_access_is_warned_about() {
    let pki = Pki::new();
    let port = free_port();
    pki.write(
        "midge.toml",
        &format!("[[listeners]]\nbind = \"0.0.0.0:{port}\"\n\n[sys]\ninterval_s = 0\n"),
    );
    let mut midge = Midge::start(&pki.path("midge.toml"));
    let line = midge.wait_for(&[&format!("0.0.0.0:{port}"), "plain", "anonymous allowed"]);
    assert!(line.contains("INFO"), "{line}");
    let warn = midge.wait_for(&["WARN", "anonymous"]);
    assert!(warn.contains(&format!("0.0.0.0:{port}")), "{warn}");
}
