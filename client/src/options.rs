//! Connection options: the [`ClientBuilder`] returned by
//! [`Client::builder`](crate::Client::builder), the will ([`Will`]), the reconnect policy ([`Reconnect`]) and the policy
//! for slow subscribers ([`SlowConsumer`]).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use midge_protocol::{ByteStr, Connect, LastWill, ProtocolLevel, QoS};

use crate::error::ConnectError;
use crate::tls::TlsOptions;
use crate::url::BrokerUrl;
use crate::Client;

/// The message the broker publishes for this client if it goes away without
/// DISCONNECT.
#[derive(Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic of the will message.
    pub topic: String,
    /// Payload of the will message.
    pub payload: Bytes,
    /// QoS of the will message.
    pub qos: QoS,
    /// Whether the will message is retained.
    pub retain: bool,
}

impl fmt::Debug for Will {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Will")
            .field("topic", &self.topic)
            .field("payload", &format_args!("{} bytes", self.payload.len()))
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .finish()
    }
}

impl Will {
    /// A QoS 0, non-retained will.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Will {
        Will {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
        }
    }

    /// Sets the QoS.
    pub fn qos(mut self, qos: QoS) -> Will {
        self.qos = qos;
        self
    }

    /// Sets the retain flag.
    pub fn retain(mut self, retain: bool) -> Will {
        self.retain = retain;
        self
    }
}

/// When and how often to reconnect after the connection is lost.
///
/// Attempt `n` (from 0) waits `min(initial_delay * multiplier^n, max_delay)`,
/// less a random share of up to `jitter` of it, so clients that lost the same
/// broker do not come back in lock step. The default reconnects forever,
/// starting at 250 ms and doubling up to 30 s, with jitter 0.5.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconnect {
    /// Whether to reconnect at all.
    pub enabled: bool,
    /// Delay before the first attempt.
    pub initial_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Growth factor per attempt (at least 1).
    pub multiplier: f64,
    /// Share of the delay, 0.0 to 1.0, that is randomly taken off.
    pub jitter: f64,
    /// Give up after this many failed attempts in a row; `None` never gives up.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// No reconnecting: a lost connection closes the client.
    pub fn disabled() -> Reconnect {
        Reconnect {
            enabled: false,
            ..Reconnect::default()
        }
    }

    /// Exponential backoff from `initial` to `max`, doubling, jitter 0.5.
    pub fn exponential(initial: Duration, max: Duration) -> Reconnect {
        Reconnect {
            initial_delay: initial,
            max_delay: max,
            ..Reconnect::default()
        }
    }

    /// Sets the jitter share (clamped to 0.0..=1.0).
    pub fn jitter(mut self, jitter: f64) -> Reconnect {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Sets the growth factor per attempt.
    pub fn multiplier(mut self, multiplier: f64) -> Reconnect {
        self.multiplier = multiplier;
        self
    }

    /// Gives up after `attempts` failed attempts in a row.
    pub fn max_attempts(mut self, attempts: u32) -> Reconnect {
        self.max_attempts = Some(attempts);
        self
    }

    /// The delay before attempt `attempt` (from 0), given a random number in
    /// `0.0..1.0`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let base = self.initial_delay.as_secs_f64()
            * self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let capped = base.min(self.max_delay.as_secs_f64()).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter))
    }
}

/// What happens when a subscription's bounded channel is full because its
/// consumer is not keeping up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlowConsumer {
    /// The connection stops reading from the broker until the subscription
    /// has room. No message is lost and memory stays bounded, but every
    /// subscription and acknowledgement of this client waits for the slowest
    /// consumer (the broker queues or drops meanwhile, by its own policy).
    /// Keep-alive pings continue. The default.
    #[default]
    Block,
    /// The message is dropped for the full subscription only (and counted
    /// in [`Subscription::dropped`](crate::Subscription::dropped)); other
    /// subscriptions keep flowing. QoS 1/2 messages are still acknowledged,
    /// so dropped ones are gone for good.
    DropNewest,
}

/// Everything the connection task needs; built by [`ClientBuilder`].
#[derive(Clone)]
pub(crate) struct Options {
    pub host: String,
    pub port: Option<u16>,
    pub tls: Option<TlsOptions>,
    pub client_id: Option<String>,
    pub clean_session: bool,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<Will>,
    pub protocol: ProtocolLevel,
    pub reconnect: Reconnect,
    pub connect_timeout: Duration,
    pub ping_timeout: Option<Duration>,
    pub write_timeout: Duration,
    pub disconnect_timeout: Duration,
    pub max_inflight: usize,
    pub offline_buffer: usize,
    pub request_queue: usize,
    pub subscription_capacity: usize,
    pub slow_consumer: SlowConsumer,
    pub max_packet_size: usize,
}

impl fmt::Debug for Options {
    // The password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("client_id", &self.client_id)
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("will", &self.will)
            .field("protocol", &self.protocol)
            .field("reconnect", &self.reconnect)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_inflight", &self.max_inflight)
            .field("offline_buffer", &self.offline_buffer)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("slow_consumer", &self.slow_consumer)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// The port to use: explicit, or 1883 / 8883.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }

    /// `host:port`, for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port())
        } else {
            format!("{}:{}", self.host, self.port())
        }
    }

    /// How long an unanswered PINGREQ may wait.
    pub fn ping_timeout(&self) -> Duration {
        self.ping_timeout.unwrap_or(self.keep_alive)
    }

    /// The CONNECT packet for these options, with the resolved client id.
    pub fn connect_packet(&self, client_id: &str) -> Connect {
        Connect {
            protocol: self.protocol,
            clean_session: self.clean_session,
            keep_alive: self.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16,
            client_id: ByteStr::from(client_id),
            last_will: self.will.as_ref().map(|w| LastWill {
                topic: ByteStr::from(w.topic.as_str()),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
            }),
            username: self.username.as_deref().map(ByteStr::from),
            password: self.password.clone(),
            bridge: false,
        }
    }

    /// Checks what the broker would reject anyway, before connecting.
    pub fn validate(&self, client_id: &str) -> Result<(), ConnectError> {
        let bad = |m: &str| Err(ConnectError::InvalidOptions(m.to_string()));
        if client_id.is_empty() && !self.clean_session {
            return bad("an empty client id needs clean_session(true) [MQTT-3.1.3-7]");
        }
        if self.protocol == ProtocolLevel::V3_1 && (client_id.is_empty() || client_id.len() > 23) {
            return bad("MQTT 3.1 needs a client id of 1 to 23 bytes");
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("a password needs a user name [MQTT-3.1.2-22]");
        }
        if let Some(will) = &self.will {
            if !midge_protocol::topic::valid_topic_name(&will.topic) {
                return bad(&format!("invalid will topic {:?}", will.topic));
            }
        }
        if self.keep_alive.as_secs() > u64::from(u16::MAX) {
            return bad("keep alive must be at most 65535 s");
        }
        Ok(())
    }
}

/// Builds a [`Client`]: `Client::builder("mqtt://host").client_id("me").connect().await?`.
///
/// Defaults: port 1883 (8883 for `mqtts://`), a random client id `midge-…`,
/// clean session, keep alive 60 s, no credentials, no will, MQTT 3.1.1,
/// [`Reconnect::default`], connect timeout 10 s, 64 QoS 1/2 publishes in
/// flight, an offline buffer of 1,024 publishes, 1,024 messages per
/// subscription with [`SlowConsumer::Block`], maximum packet size 1 MiB
/// incoming, disconnect timeout 10 s.
#[derive(Debug)]
pub struct ClientBuilder {
    pub(crate) options: Options,
    pub(crate) url_error: Option<ConnectError>,
}

impl ClientBuilder {
    pub(crate) fn new(url: &str) -> ClientBuilder {
        let mut options = Options {
            host: "localhost".to_string(),
            port: None,
            tls: None,
            client_id: None,
            clean_session: true,
            keep_alive: Duration::from_secs(60),
            username: None,
            password: None,
            will: None,
            protocol: ProtocolLevel::V3_1_1,
            reconnect: Reconnect::default(),
            connect_timeout: Duration::from_secs(10),
            ping_timeout: None,
            write_timeout: Duration::from_secs(30),
            disconnect_timeout: Duration::from_secs(10),
            max_inflight: 64,
            offline_buffer: 1024,
            request_queue: 128,
            subscription_capacity: 1024,
            slow_consumer: SlowConsumer::Block,
            max_packet_size: 1024 * 1024,
        };
        let url_error = match BrokerUrl::parse(url) {
            Ok(parsed) => {
                options.host = parsed.host;
                options.port = parsed.port;
                options.tls = parsed.tls.then(TlsOptions::default);
                options.username = parsed.username;
                options.password = parsed.password.map(Bytes::from);
                None
            }
            Err(e) => Some(e),
        };
        ClientBuilder { options, url_error }
    }

    /// Sets the host name or IP address.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.options.host = host.into();
        self
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.options.port = Some(port);
        self
    }

    /// Sets the client id; an empty id asks the broker to assign one (needs
    /// a clean session).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.options.client_id = Some(id.into());
        self
    }

    /// Whether the broker discards the session on connect (default `true`).
    pub fn clean_session(mut self, clean: bool) -> Self {
        self.options.clean_session = clean;
        self
    }

    /// Keep-alive interval (whole seconds; zero turns keep-alive off).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.options.keep_alive = keep_alive;
        self
    }

    /// How long to wait for PINGRESP before the connection counts as dead
    /// (default: the keep-alive interval).
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.options.ping_timeout = Some(timeout);
        self
    }

    /// User name and password.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.options.username = Some(username.into());
        self.options.password = Some(password.into());
        self
    }

    /// User name without a password.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.options.username = Some(username.into());
        self
    }

    /// Sets the will message.
    pub fn will(mut self, will: Will) -> Self {
        self.options.will = Some(will);
        self
    }

    /// Uses TLS with these options (the port defaults to 8883).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.options.tls = Some(tls);
        self
    }

    /// Plain TCP even if the URL said `mqtts://`.
    pub fn no_tls(mut self) -> Self {
        self.options.tls = None;
        self
    }

    /// MQTT 3.1.1 (default) or 3.1.
    pub fn protocol(mut self, protocol: ProtocolLevel) -> Self {
        self.options.protocol = protocol;
        self
    }

    /// The reconnect policy; [`Reconnect::disabled`] turns it off.
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.options.reconnect = reconnect;
        self
    }

    /// Time allowed for TCP, TLS and CONNACK together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Time allowed for one write to the broker before the connection counts as dead.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.write_timeout = timeout;
        self
    }

    /// How long [`Client::disconnect`] waits for in-flight work.
    pub fn disconnect_timeout(mut self, timeout: Duration) -> Self {
        self.options.disconnect_timeout = timeout;
        self
    }

    /// Maximum unacknowledged QoS 1/2 publishes on the wire (at least 1).
    pub fn max_inflight(mut self, max: usize) -> Self {
        self.options.max_inflight = max.clamp(1, 65_000);
        self
    }

    /// Publishes held while offline (or while the in-flight window is full).
    /// When it is full, `publish` fails at once with
    /// [`PublishError::BufferFull`](crate::PublishError::BufferFull) while
    /// offline, and waits while connected.
    pub fn offline_buffer(mut self, capacity: usize) -> Self {
        self.options.offline_buffer = capacity;
        self
    }

    /// Capacity of the request queue from the handles to the connection task.
    pub fn request_queue(mut self, capacity: usize) -> Self {
        self.options.request_queue = capacity.max(1);
        self
    }

    /// Messages buffered per subscription before [`SlowConsumer`] applies.
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.options.subscription_capacity = capacity.max(1);
        self
    }

    /// What to do when a subscription's buffer is full.
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.options.slow_consumer = policy;
        self
    }

    /// Largest packet accepted from the broker, and sent to it.
    pub fn max_packet_size(mut self, bytes: usize) -> Self {
        self.options.max_packet_size = bytes.max(64);
        self
    }

    /// Connects, waits for CONNACK, and starts the connection task.
    ///
    /// The first connection is not retried: its failure is returned, with a
    /// refused CONNECT as [`ConnectError::Refused`]. Reconnecting applies to
    /// connections lost later.
    pub async fn connect(self) -> Result<Client, ConnectError> {
        if let Some(e) = self.url_error {
            return Err(e);
        }
        Client::connect(self.options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let r =
            Reconnect::exponential(Duration::from_millis(100), Duration::from_secs(1)).jitter(0.0);
        let delays: Vec<u128> = (0..6).map(|n| r.delay(n, 0.5).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.delay(u32::MAX, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_takes_off_at_most_its_share() {
        let r =
            Reconnect::exponential(Duration::from_secs(10), Duration::from_secs(10)).jitter(0.5);
        assert_eq!(r.delay(0, 0.0), Duration::from_secs(10));
        assert_eq!(r.delay(0, 1.0), Duration::from_secs(5));
        assert_eq!(r.delay(0, 0.5), Duration::from_millis(7500));
    }

    #[test]
    fn the_builder_takes_host_port_credentials_and_tls_from_the_url() {
        let b = ClientBuilder::new("mqtts://bob:s%40cret@broker.example:8884");
        assert!(b.url_error.is_none());
        assert_eq!(b.options.host, "broker.example");
        assert_eq!(b.options.port(), 8884);
        assert!(b.options.tls.is_some());
        assert_eq!(b.options.username.as_deref(), Some("bob"));
        assert_eq!(b.options.password.as_deref(), Some(&b"s@cret"[..]));
        assert_eq!(ClientBuilder::new("mqtts://h").options.port(), 8883);
        assert_eq!(ClientBuilder::new("mqtt://h").options.port(), 1883);
        assert!(
            !format!("{:?}", b.options).contains("s@cret"),
            "password is redacted"
        );
    }

    #[test]
    fn options_that_a_broker_would_reject_are_caught_before_connecting() {
        let mut o = ClientBuilder::new("mqtt://h").options;
        o.clean_session = false;
        assert!(o.validate("").is_err(), "empty id needs a clean session");
        assert!(o.validate("id").is_ok());
        o.protocol = ProtocolLevel::V3_1;
        assert!(o.validate("an-id-that-is-much-too-long-for-3.1").is_err());
        o.password = Some(Bytes::from_static(b"pw"));
        assert!(o.validate("id").is_err(), "password without user name");
    }
}
