//! `midge health`: is the broker serving? The container health check.
//!
//! ```text
//! midge health [--config FILE] [--host HOST] [--port PORT] [--timeout SECONDS]
//!              [--username USER] [--password PASS] [--metrics] [--metrics-addr HOST:PORT]
//! ```
//!
//! Connects to the broker's first plain listener (from the configuration,
//! loaded like the broker loads it: file, then `MIDGE_*` environment), sends
//! CONNECT and PINGREQ and waits for CONNACK and PINGRESP, then sends
//! DISCONNECT. A listener bound to every address (`0.0.0.0`, `[::]`) is
//! reached on loopback. A CONNACK refusing the login (0x04, 0x05) still
//! proves the broker serves, so it passes unpinged; give `--username` and
//! `--password` to ping on a broker that refuses anonymous clients. With
//! `--metrics` (or `--metrics-addr`) `GET /health` on the `[metrics]`
//! listener must answer 200 as well.
//!
//! Synchronous, with standard-library sockets: no runtime to start for a
//! check that runs every few seconds. Exit codes: 0 healthy, 1 not, 2 the
//! configuration or the flags are unusable.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use midge_protocol::{decode, encode, Connect, ConnectReturnCode, Packet};

use crate::config::{Config, ConfigError, LoadOptions};

/// The arguments of `midge health`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct HealthArgs {
    /// The broker's configuration file: the check uses its first plain
    /// listener's port and its `[metrics] bind`.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Host to connect to. Default: the listener's address, or loopback
    /// when it binds every address.
    #[arg(long)]
    pub host: Option<String>,
    /// Port to connect to. Default: the first plain listener's (1883).
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds each check may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub timeout: f64,
    /// User name for CONNECT.
    #[arg(long, env = "MIDGE_HEALTH_USERNAME")]
    pub username: Option<String>,
    /// Password for CONNECT.
    #[arg(long, env = "MIDGE_HEALTH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Also require 200 from `GET /health` on the `[metrics]` listener.
    #[arg(long)]
    pub metrics: bool,
    /// The metrics listener to ask (implies --metrics). Default: `[metrics]
    /// bind`, on loopback when it binds every address.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

/// Why `midge health` failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The configuration cannot be used (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The flags and configuration leave nothing to check (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A check failed (exit 1).
    #[error("{0}")]
    Unhealthy(String),
}

/// The exit code for `result`, after printing its report or error.
pub fn exit_code(result: Result<Vec<String>, HealthError>) -> u8 {
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            0
        }
        Err(e) => {
            eprintln!("midge health: {e}");
            match e {
                HealthError::Unhealthy(_) => 1,
                HealthError::Config(_) | HealthError::Usage(_) => 2,
            }
        }
    }
}

/// Runs the checks; on success one line per check passed. `config` is the
/// `--config` given before the subcommand, if any.
pub fn execute(args: &HealthArgs, config: Option<PathBuf>) -> Result<Vec<String>, HealthError> {
    let config = Config::load(&LoadOptions {
        file: args.config.clone().or(config),
        env: None,
        port: None,
    })?;
    execute_with(args, &config)
}

/// [`execute`] against an already loaded configuration.
pub fn execute_with(args: &HealthArgs, config: &Config) -> Result<Vec<String>, HealthError> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(HealthError::Usage(format!(
            "--timeout must be between 0 and 3600 seconds, got {}",
            args.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let target = mqtt_target(args, config)?;
    let metrics = metrics_target(args, config)?;
    let mut report = vec![check_mqtt(&target, args, timeout)?];
    if let Some(target) = metrics {
        report.push(check_http(&target, timeout)?);
    }
    Ok(report)
}

/// `bind`'s host as a client reaches it: loopback for "every address".
fn reachable(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
        ip => ip.to_string(),
    }
}

fn host_port(host: &str, port: u16) -> String {
    match host.parse::<Ipv6Addr>() {
        Ok(_) => format!("[{host}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    }
}

fn mqtt_target(args: &HealthArgs, config: &Config) -> Result<String, HealthError> {
    let plain = config.listeners.iter().find(|l| l.tls.is_none());
    let port = args.port.or(plain.map(|l| l.bind.port())).ok_or_else(|| {
        HealthError::Usage("the configuration has no plain listener; give --port".into())
    })?;
    let host = match (&args.host, plain) {
        (Some(host), _) => host.clone(),
        (None, Some(l)) => reachable(l.bind.ip()),
        (None, None) => Ipv4Addr::LOCALHOST.to_string(),
    };
    Ok(host_port(&host, port))
}

fn metrics_target(args: &HealthArgs, config: &Config) -> Result<Option<String>, HealthError> {
    if let Some(addr) = &args.metrics_addr {
        return Ok(Some(addr.clone()));
    }
    if !args.metrics {
        return Ok(None);
    }
    match config.metrics.bind {
        Some(bind) => Ok(Some(host_port(&reachable(bind.ip()), bind.port()))),
        None => Err(HealthError::Usage(
            "--metrics needs [metrics] bind in the configuration, or --metrics-addr".into(),
        )),
    }
}

/// Connects to the first address `target` resolves to that answers.
fn connect(target: &str, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = format!("{target} resolves to no address");
    for addr in addrs {
        let left = remaining(deadline)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err("timed out".into()),
    }
}

fn check_mqtt(target: &str, args: &HealthArgs, timeout: Duration) -> Result<String, HealthError> {
    let started = Instant::now();
    let result = ping(target, args, started + timeout);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(None) => Ok(format!(
            "ok: mqtt {target}: CONNACK accepted, PINGRESP in {ms:.1} ms"
        )),
        Ok(Some(code)) => Ok(format!(
            "ok: mqtt {target}: broker answered in {ms:.1} ms ({}); not pinged",
            code.reason()
        )),
        Err(e) => Err(HealthError::Unhealthy(format!("mqtt {target}: {e}"))),
    }
}

/// CONNECT, CONNACK, PINGREQ, PINGRESP, DISCONNECT. `Some(code)` when the
/// login was refused (and nothing was pinged).
fn ping(
    target: &str,
    args: &HealthArgs,
    deadline: Instant,
) -> Result<Option<ConnectReturnCode>, String> {
    let mut stream = connect(target, deadline)?;
    let mut connect = Connect::new(format!("midge-health-{}", std::process::id()));
    connect.keep_alive = 30;
    connect.username = args.username.as_deref().map(Into::into);
    connect.password = (args.password.as_deref()).map(|p| Bytes::copy_from_slice(p.as_bytes()));
    let mut inbuf = BytesMut::new();
    send(&mut stream, &Packet::Connect(connect), deadline)?;
    let code = match recv(&mut stream, &mut inbuf, deadline)? {
        Packet::ConnAck(ack) => ack.code,
        other => return Err(format!("expected CONNACK, got {:?}", other.packet_type())),
    };
    match code {
        ConnectReturnCode::Accepted => {}
        ConnectReturnCode::BadUserNameOrPassword | ConnectReturnCode::NotAuthorized => {
            return Ok(Some(code))
        }
        other => return Err(format!("CONNECT refused: {}", other.reason())),
    }
    send(&mut stream, &Packet::PingReq, deadline)?;
    loop {
        match recv(&mut stream, &mut inbuf, deadline)? {
            Packet::PingResp => break,
            // Nothing is subscribed, but a broker may send what it likes.
            _ => continue,
        }
    }
    // Best effort: the check has passed.
    let _ = send(&mut stream, &Packet::Disconnect, deadline);
    Ok(None)
}

fn send(stream: &mut TcpStream, packet: &Packet, deadline: Instant) -> Result<(), String> {
    let mut buf = BytesMut::new();
    encode(packet, &mut buf).map_err(|e| format!("cannot encode: {e}"))?;
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| e.to_string())?;
    stream.write_all(&buf).map_err(io_message)
}

/// The largest packet the check accepts from the broker.
const MAX_PACKET: usize = 64 * 1024;

fn recv(stream: &mut TcpStream, inbuf: &mut BytesMut, deadline: Instant) -> Result<Packet, String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(packet) = decode(inbuf, MAX_PACKET).map_err(|e| format!("bad packet: {e}"))? {
            return Ok(packet);
        }
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk).map_err(io_message)? {
            0 => return Err("the broker closed the connection".into()),
            n => inbuf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn io_message(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// `GET /health` on the metrics listener; 200 passes.
fn check_http(target: &str, timeout: Duration) -> Result<String, HealthError> {
    let started = Instant::now();
    let fail = |e: String| HealthError::Unhealthy(format!("http://{target}/health: {e}"));
    let deadline = started + timeout;
    let mut stream = connect(target, deadline).map_err(fail)?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline).map_err(fail)?))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| fail(io_message(e)))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while response.len() < 16 * 1024 {
        let left = remaining(deadline).map_err(fail)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| fail(e.to_string()))?;
        match stream.read(&mut chunk).map_err(|e| fail(io_message(e)))? {
            0 => break,
            n => response.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or("").trim();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match status.split(' ').nth(1) {
        Some("200") => Ok(format!("ok: http://{target}/health: {body} in {ms:.1} ms")),
        _ if status.is_empty() => Err(fail("no response".into())),
        _ => Err(fail(format!("{status}: {body}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenerConfig;

    fn args() -> HealthArgs {
        HealthArgs {
            config: None,
            host: None,
            port: None,
            timeout: 3.0,
            username: None,
            password: None,
            metrics: false,
            metrics_addr: None,
        }
    }

    fn listener(bind: &str, tls: bool) -> ListenerConfig {
        ListenerConfig {
            bind: bind.parse().expect("address"),
            tls: tls.then(|| crate::TlsConfig {
                cert: "c".into(),
                key: "k".into(),
                client_ca: None,
                require_client_cert: false,
                identity_as_username: false,
            }),
            optional: false,
        }
    }

    #[test]
    fn the_first_plain_listener_is_checked_on_loopback_when_it_binds_everything() {
        let target = |listeners: Vec<ListenerConfig>| {
            let config = Config {
                listeners,
                ..Config::default()
            };
            mqtt_target(&args(), &config).expect("target")
        };
        let tls_then_plain = vec![
            listener("0.0.0.0:8883", true),
            listener("0.0.0.0:1884", false),
        ];
        assert_eq!(target(tls_then_plain), "127.0.0.1:1884");
        assert_eq!(target(vec![listener("[::]:1885", false)]), "[::1]:1885");
        assert_eq!(
            target(vec![listener("10.1.2.3:1886", false)]),
            "10.1.2.3:1886"
        );
    }

    #[test]
    fn flags_override_the_configuration() {
        let a = HealthArgs {
            host: Some("broker.local".into()),
            port: Some(2000),
            ..args()
        };
        let target = mqtt_target(&a, &Config::default()).expect("target");
        assert_eq!(target, "broker.local:2000");
    }

    #[test]
    fn tls_only_configurations_need_a_port() {
        let config = Config {
            listeners: vec![listener("0.0.0.0:8883", true)],
            ..Config::default()
        };
        assert!(matches!(
            mqtt_target(&args(), &config),
            Err(HealthError::Usage(_))
        ));
    }

    #[test]
    fn metrics_check_uses_the_metrics_bind_or_needs_one() {
        let mut config = Config::default();
        let a = HealthArgs {
            metrics: true,
            ..args()
        };
        assert!(matches!(
            metrics_target(&a, &config),
            Err(HealthError::Usage(_))
        ));
        config.metrics.bind = Some("0.0.0.0:9100".parse().expect("address"));
        let target = metrics_target(&a, &config).expect("target");
        assert_eq!(target.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(metrics_target(&args(), &config).expect("none"), None);
    }

    #[test]
    fn a_closed_port_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let a = HealthArgs {
            port: Some(port),
            timeout: 1.0,
            ..args()
        };
        let result = execute_with(&a, &Config::default());
        assert!(
            matches!(result, Err(HealthError::Unhealthy(_))),
            "{result:?}"
        );
    }

    #[test]
    fn a_bad_timeout_is_a_usage_error() {
        for timeout in [0.0, -1.0, f64::NAN, 1e9] {
            let a = HealthArgs { timeout, ..args() };
            let result = execute_with(&a, &Config::default());
            assert!(matches!(result, Err(HealthError::Usage(_))), "{timeout}");
        }
    }
}
