//! Shared by the durability tests: the `midge` binary as a child process
//! on a data directory, and a raw MQTT client that survives the broker
//! being killed under it.
#![allow(dead_code)]

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use midge_protocol::{decode, encode, Connect, Packet, DEFAULT_MAX_PACKET_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// The `midge` broker as a child process.
pub struct Midge {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

impl Midge {
    /// Starts `midge` on `data` (a data directory) listening on `port`, with
    /// its log in `work/<name>.log`; waits until it accepts connections.
    /// Session queues are practically unbounded, so no message is dropped
    /// for `max_queued_messages`.
    pub async fn start(work: &Path, data: &Path, port: u16, name: &str) -> Midge {
        Midge::start_with(work, data, port, name, "").await
    }

    /// [`Midge::start`] with more TOML appended to its configuration.
    pub async fn start_with(work: &Path, data: &Path, port: u16, name: &str, extra: &str) -> Midge {
        let config = work.join("broker.toml");
        let text = format!(
            "[[listeners]]\nbind = \"127.0.0.1:{port}\"\n[sys]\ninterval_s = 0\n\
             [limits]\nmax_queued_messages = 1000000\n\
             [log]\nlevel = \"warn,midge_broker::persist=info\"\n{extra}"
        );
        std::fs::write(&config, text).expect("write the config");
        let log = work.join(format!("{name}.log"));
        let err = File::create(&log).expect("create the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_midge"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn midge");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut midge = Midge { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(addr).await.is_err() {
            if let Ok(Some(status)) = midge.child.try_wait() {
                panic!("midge exited with {status} at start:\n{}", midge.log());
            }
            assert!(
                Instant::now() < deadline,
                "midge never listened:\n{}",
                midge.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        midge
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (10 s at most) for it to exit; its status.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "midge still running after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Midge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the next read gave.
#[derive(Debug)]
pub enum Event {
    /// A whole packet.
    Packet(Packet),
    /// The connection ended (or the broker died mid-packet).
    Closed,
    /// Nothing within the wait.
    Timeout,
}

/// A raw MQTT client that never panics on a dead broker.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
    /// Set once a write failed or the connection ended.
    pub dead: bool,
}

impl Raw {
    /// Connects and completes CONNECT; returns the client and session
    /// present.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (Raw, bool) {
        let stream = timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .expect("connect within 5 s")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            dead: false,
        };
        raw.queue(Packet::Connect(connect));
        raw.flush().await;
        match raw.next(Duration::from_secs(10)).await {
            Event::Packet(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, midge_protocol::ConnectReturnCode::Accepted);
                (raw, ack.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Adds a packet to the next write.
    pub fn queue(&mut self, packet: Packet) {
        encode(&packet, &mut self.out).expect("the test packet encodes");
    }

    /// Writes what is queued; a failure marks the client dead.
    pub async fn flush(&mut self) {
        if self.dead || self.out.is_empty() {
            self.out.clear();
            return;
        }
        let out = self.out.split();
        let write = timeout(Duration::from_secs(5), self.stream.write_all(&out)).await;
        if !matches!(write, Ok(Ok(()))) {
            self.dead = true;
        }
    }

    /// The next packet, the end of the connection, or a timeout.
    pub async fn next(&mut self, within: Duration) -> Event {
        let deadline = Instant::now() + within;
        loop {
            match decode(&mut self.buf, DEFAULT_MAX_PACKET_SIZE) {
                Ok(Some(p)) => return Event::Packet(p),
                Ok(None) => {}
                Err(e) => panic!("malformed packet from the broker: {e}"),
            }
            if self.dead {
                return Event::Closed;
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Event::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.dead = true;
                    return Event::Closed;
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}
