//! The `[metrics]` HTTP listener: `GET /metrics` in the Prometheus text
//! format (version 0.0.4) and `GET /health`.
//!
//! A deliberately small HTTP/1.1 server rather than a framework: two
//! read-only routes need no more. One request per connection
//! (`Connection: close`); the request head must arrive within
//! [`READ_TIMEOUT`] and fit in [`MAX_REQUEST`] bytes (a body is never read);
//! at most [`MAX_CONNECTIONS`] requests are served at once and the excess is
//! closed unanswered. Nothing here touches the message path: a scrape reads
//! the relaxed atomic counters of [`crate::metrics`] and a few sizes
//! (sessions, subscriptions, retained messages, queued messages).
//!
//! `/health` answers 200 while every configured MQTT listener accepts
//! connections and the broker is not shutting down, 503 otherwise.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::MetricsConfig;
use crate::error::BrokerError;
use crate::samples::{samples, Sample};
use crate::shared::Shared;
use crate::shutdown::Shutdown;

/// The largest request head accepted, in bytes; larger gets 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request head; slower gets 408.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection is kept open after the response for the client to
/// close it.
const LINGER: Duration = Duration::from_secs(1);
/// Pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The Prometheus text format's content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The bound, not yet serving, metrics listener.
#[derive(Debug)]
pub(crate) struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `[metrics] bind`, if set.
    pub(crate) async fn bind(config: &MetricsConfig) -> Result<Option<Self>, BrokerError> {
        let Some(bind) = config.bind else {
            return Ok(None);
        };
        let err = |source| BrokerError::Bind { addr: bind, source };
        let listener = TcpListener::bind(bind).await.map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        Ok(Some(MetricsListener { listener, addr }))
    }

    /// Starts serving; returns the bound address.
    pub(crate) fn start(self, shared: Arc<Shared>, shutdown: &Shutdown) -> SocketAddr {
        info!(
            "metrics on http://{}/metrics, health on http://{}/health",
            self.addr, self.addr
        );
        shutdown.spawn(run(self.listener, shared, shutdown.clone()));
        self.addr
    }
}

async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let token = shutdown.token().clone();
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (shared, token) = (shared.clone(), token.clone());
                    shutdown.spawn(async move {
                        serve(stream, peer, &shared, &token).await;
                        drop(permit);
                    });
                }
                Err(_) => debug!(%peer, "metrics request refused: too many at once"),
            },
            Err(e) => {
                warn!(error = %e, "metrics listener: accept failed");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// Reads one request head, answers it and closes.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    token: &CancellationToken,
) {
    let head = tokio::select! {
        _ = token.cancelled() => return,
        r = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)) => r,
    };
    let response = match head {
        Ok(Ok(Some(head))) => route(&head, || Status::of(shared, token), || metrics_text(shared)),
        Ok(Ok(None)) => Response::error(431, "Request Header Fields Too Large"),
        // The client went away or broke the connection: nobody to answer.
        Ok(Err(_)) => return,
        Err(_) => Response::error(408, "Request Timeout"),
    };
    debug!(%peer, status = response.status, "metrics request");
    let write = async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, write).await {
        // Closing with unread request bytes would send a reset, which can
        // destroy the response before the client reads it: take what is
        // left (bounded) until the client closes its side.
        let _ = tokio::time::timeout(LINGER, drain(&mut stream)).await;
    }
}

/// Reads and discards up to [`MAX_REQUEST`] * 8 bytes, until end of stream.
async fn drain(stream: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    let mut left = MAX_REQUEST * 8;
    while left > 0 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Reads until the blank line ending the head; `None` if it does not fit
/// in [`MAX_REQUEST`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&buf) {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let room = (MAX_REQUEST - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Where the head ends: after CRLF CRLF (or LF LF, which some clients send).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the broker is fit to serve, for `/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// MQTT listeners accepting connections.
    pub listeners_up: u64,
    /// MQTT listeners configured (and not skipped as absent).
    pub listeners: u64,
    /// Whether shutdown has begun.
    pub stopping: bool,
}

impl Status {
    fn of(shared: &Shared, token: &CancellationToken) -> Status {
        Status {
            listeners_up: shared.metrics.listeners_up.load(Ordering::Relaxed),
            listeners: shared.config.listeners.len() as u64,
            stopping: token.is_cancelled(),
        }
    }

    /// Healthy: every listener up and not stopping.
    pub fn healthy(&self) -> bool {
        !self.stopping && self.listeners_up >= self.listeners
    }
}

fn metrics_text(shared: &Shared) -> String {
    render(&samples(&shared.stats()))
}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// Extra header lines, without CRLF.
    pub headers: Vec<String>,
    /// Content type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// HEAD: send the headers (with the body's length) but not the body.
    pub head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: String) -> Response {
        Response {
            status,
            reason,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body,
            head_only: false,
        }
    }

    fn error(status: u16, reason: &'static str) -> Response {
        Response::text(status, reason, format!("{status} {reason}\n"))
    }

    /// The response on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        for h in &self.headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        if !self.head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

/// Answers a request head. `status` and `metrics` are only called for
/// their routes.
pub fn route(
    head: &[u8],
    status: impl FnOnce() -> Status,
    metrics: impl FnOnce() -> String,
) -> Response {
    let Some((method, path)) = request_line(head) else {
        return Response::error(400, "Bad Request");
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Response::error(405, "Method Not Allowed");
            r.headers.push("Allow: GET, HEAD".to_owned());
            return r;
        }
    };
    let path = path.split('?').next().unwrap_or(path);
    let mut response = match path {
        "/metrics" => Response {
            content_type: PROMETHEUS_CONTENT_TYPE,
            ..Response::text(200, "OK", metrics())
        },
        "/health" => {
            let s = status();
            let summary = format!("{} of {} listeners up", s.listeners_up, s.listeners);
            match (s.healthy(), s.stopping) {
                (true, _) => Response::text(200, "OK", format!("ok: {summary}\n")),
                (false, true) => {
                    Response::text(503, "Service Unavailable", "unavailable: stopping\n".into())
                }
                (false, false) => Response::text(
                    503,
                    "Service Unavailable",
                    format!("unavailable: {summary}\n"),
                ),
            }
        }
        _ => Response::error(404, "Not Found"),
    };
    response.head_only = head_only;
    response
}

/// The method and target of a request line `METHOD SP target SP HTTP/1.x`.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && !method.is_empty()
        && target.starts_with('/')
        && version.starts_with("HTTP/1.");
    valid.then_some((method, target))
}

/// `samples` in the Prometheus text format: `# HELP` and `# TYPE` once per
/// family, then one line per series.
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::with_capacity(4096);
    let mut last = "";
    for s in samples {
        let Some(f) = s.family else { continue };
        if f.name != last {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            last = f.name;
        }
        let _ = match s.label {
            Some((k, v)) => writeln!(out, "{}{{{k}=\"{v}\"}} {}", f.name, s.value),
            None => writeln!(out, "{} {}", f.name, s.value),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Stats;

    fn up() -> Status {
        Status {
            listeners_up: 2,
            listeners: 2,
            stopping: false,
        }
    }

    fn get(head: &str) -> Response {
        route(head.as_bytes(), up, || "m 1\n".to_owned())
    }

    #[test]
    fn get_metrics_answers_200_in_the_prometheus_text_format() {
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.status, r.body.as_str()), (200, "m 1\n"));
        let wire = String::from_utf8(r.to_bytes()).expect("utf-8");
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(wire.contains("Content-Length: 4\r\n"));
        assert!(wire.contains("Connection: close\r\n"));
        assert!(wire.ends_with("\r\n\r\nm 1\n"));
    }

    #[test]
    fn a_query_string_is_ignored() {
        assert_eq!(get("GET /metrics?x=1 HTTP/1.0\r\n\r\n").status, 200);
    }

    #[test]
    fn head_sends_the_length_but_not_the_body() {
        let wire = get("HEAD /metrics HTTP/1.1\r\n\r\n").to_bytes();
        let wire = String::from_utf8(wire).expect("utf-8");
        assert!(wire.contains("Content-Length: 4\r\n"));
        assert!(wire.ends_with("\r\n\r\n"));
    }

    #[test]
    fn health_is_503_while_a_listener_is_down_or_the_broker_stops() {
        assert_eq!(get("GET /health HTTP/1.1\r\n\r\n").status, 200);
        let down = || Status {
            listeners_up: 1,
            ..up()
        };
        let r = route(b"GET /health HTTP/1.1\r\n\r\n", down, String::new);
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "unavailable: 1 of 2 listeners up\n")
        );
        let stopping = || Status {
            stopping: true,
            ..up()
        };
        let r = route(b"GET /health HTTP/1.1\r\n\r\n", stopping, String::new);
        assert_eq!(r.status, 503);
    }

    #[test]
    fn other_paths_methods_and_garbage_are_refused() {
        assert_eq!(get("GET / HTTP/1.1\r\n\r\n").status, 404);
        assert_eq!(get("GET /metricsx HTTP/1.1\r\n\r\n").status, 404);
        let post = get("POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(post.status, 405);
        assert_eq!(post.headers, vec!["Allow: GET, HEAD".to_owned()]);
        for bad in [
            "",
            "GET\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(get(bad).status, 400, "{bad:?}");
        }
        assert_eq!(get("GET /metrics SPDY/3\r\n\r\n").status, 400);
        assert_eq!(get("GET /metrics HTTP/1.1 extra\r\n\r\n").status, 400);
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn render_writes_help_and_type_once_per_family() {
        let stats = Stats {
            clients_connected: 3,
            publish_received_by_qos: [5, 0, 1],
            ..Stats::default()
        };
        let text = render(&samples(&stats));
        assert!(text.contains(
            "# HELP midge_clients_connected Clients connected now (past CONNACK).\n\
             # TYPE midge_clients_connected gauge\n\
             midge_clients_connected 3\n"
        ));
        assert!(text.contains(
            "# TYPE midge_messages_received_total counter\n\
             midge_messages_received_total{qos=\"0\"} 5\n\
             midge_messages_received_total{qos=\"1\"} 0\n\
             midge_messages_received_total{qos=\"2\"} 1\n"
        ));
        assert_eq!(
            text.matches("# TYPE midge_messages_received_total").count(),
            1
        );
        assert!(text
            .lines()
            .all(|l| l.starts_with('#') || l.split(' ').count() == 2));
    }
}
