//! Test fixtures: a real Mosquitto started on free ports with a generated
//! configuration (plain, TLS, mutual-TLS and wrong-name TLS listeners, a password file made
//! with `mosquitto_passwd`), certificates generated with rcgen, and small
//! helpers shared by the test files.
#![allow(dead_code)]

pub mod certs;
pub mod cli;
pub mod midge;
pub mod scenarios;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certs::Certs;

/// The user and password in every generated password file.
pub const USER: &str = "alice";
/// The password of [`USER`].
pub const PASSWORD: &str = "wonderland";

/// Fails the test if `fut` takes longer than 20 s.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// The path of the mosquitto binary.
pub fn mosquitto_bin() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients");
}

/// A Mosquitto broker for one test; killed when dropped.
pub struct Mosquitto {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Plain MQTT port.
    pub port: u16,
    /// TLS port (server certificate only).
    pub tls_port: u16,
    /// TLS port that requires a client certificate.
    pub mtls_port: u16,
    /// TLS port whose certificate is for `not-this-host.example`.
    pub wrong_name_port: u16,
    /// The certificates the TLS listeners use.
    pub certs: Certs,
    /// Configuration lines added at the end (a bridge, say).
    extra: String,
}

impl Mosquitto {
    /// Starts Mosquitto with anonymous access allowed and [`USER`] /
    /// [`PASSWORD`] in its password file.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// [`Mosquitto::start`], with `extra` appended to the configuration.
    pub fn start_with(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certs::generate(dir.path());
        let passwd = dir.path().join("passwd");
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([USER, PASSWORD])
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd failed");
        let mut broker = Mosquitto {
            child: None,
            dir,
            port: 0,
            tls_port: 0,
            mtls_port: 0,
            wrong_name_port: 0,
            certs,
            extra: extra.to_owned(),
        };
        let mut last_log = String::new();
        for _ in 0..5 {
            broker.port = free_port();
            broker.tls_port = free_port();
            broker.mtls_port = free_port();
            broker.wrong_name_port = free_port();
            broker.write_config();
            match broker.spawn() {
                Ok(()) => return broker,
                // A port was taken between probing and binding: try others.
                Err(log) => last_log = log,
            }
        }
        panic!("mosquitto did not start:\n{last_log}");
    }

    /// The directory holding the configuration, certificates and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let (ca, cert, key) = (d.join("ca.pem"), d.join("server.pem"), d.join("server.key"));
        // max_inflight_messages: Mosquitto 2.0.11 stalls QoS 2 messages it
        // had to queue behind a full in-flight window (the default 20) until
        // the client sends something else; mosquitto_sub shows the same. A
        // window larger than our bursts keeps the tests about the client.
        let config = format!(
            "per_listener_settings false\n\
             allow_anonymous true\n\
             password_file {passwd}\n\
             persistence false\n\
             max_inflight_messages 1000\n\
             log_dest stderr\n\
             log_type all\n\
             listener {port} 127.0.0.1\n\
             listener {tls} 127.0.0.1\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             listener {mtls} 127.0.0.1\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             require_certificate true\n\
             listener {wrong} 127.0.0.1\n\
             cafile {ca}\ncertfile {wcert}\nkeyfile {wkey}\n",
            passwd = d.join("passwd").display(),
            port = self.port,
            tls = self.tls_port,
            mtls = self.mtls_port,
            wrong = self.wrong_name_port,
            wcert = d.join("wrong-name.pem").display(),
            wkey = d.join("wrong-name.key").display(),
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
        );
        let config = config + &self.extra;
        std::fs::write(d.join("mosquitto.conf"), config).expect("write config");
    }

    /// Starts the process and waits until every listener accepts TCP.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("mosquitto.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open log");
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [
            self.port,
            self.tls_port,
            self.mtls_port,
            self.wrong_name_port,
        ] {
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .is_some();
                if exited || Instant::now() > deadline {
                    self.kill();
                    return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Kills the broker (SIGKILL: no clean shutdown, no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same ports, with the same configuration.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(log) if Instant::now() > deadline => {
                    panic!("mosquitto did not restart:\n{log}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
