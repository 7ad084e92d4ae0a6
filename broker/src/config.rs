//! Configuration: the [`Config`] tree, its defaults, and loading it in layers.
//!
//! The layers, weakest first: built-in defaults, the TOML file given with
//! `--config`, the environment (`MIDGE_` prefix, `__` between levels, so
//! `MIDGE_LIMITS__MAX_INFLIGHT=50` sets `limits.max_inflight`), then
//! command-line flags. Layering is done by the `config` crate; every struct
//! denies unknown keys, so a typo stops start-up instead of being ignored.
//!
//! Errors are meant to be read by a person: [`ConfigError`] names the source
//! (file, environment or command line), the key and the problem, on one line.
//! The key names are user interface and are documented, with their defaults,
//! in the repository's `broker.toml`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::auth::state::AuthConfig;
pub use crate::tls::TlsConfig;

/// The broker's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the broker accepts connections, in order. Default: one plain
    /// listener on `0.0.0.0:1883`.
    pub listeners: Vec<ListenerConfig>,
    /// Resource limits.
    pub limits: LimitsConfig,
    /// The `$SYS/broker/...` statistics topics.
    pub sys: SysConfig,
    /// Logging.
    pub log: LogConfig,
    /// Authentication and authorization: password and ACL files.
    pub auth: AuthConfig,
    /// Where persistent sessions and retained messages are kept on disk.
    pub persistence: PersistenceConfig,
    /// The Prometheus `/metrics` and `/health` HTTP listener.
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: vec![ListenerConfig::default()],
            limits: LimitsConfig::default(),
            sys: SysConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            persistence: PersistenceConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// One `[[listeners]]` entry: a socket the broker accepts MQTT on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port to bind. Default `0.0.0.0:1883`; port 0 picks a free
    /// port (see [`Broker::local_addrs`](crate::Broker::local_addrs)).
    pub bind: SocketAddr,
    /// TLS for this listener (certificate, key, optional client
    /// certificates); default none: plain MQTT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// For a TLS listener: when its certificate or key file does not exist
    /// at start-up, skip the listener (and log it) instead of refusing to
    /// start. Other certificate problems still stop start-up. Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 1883)),
            tls: None,
            optional: false,
        }
    }
}

impl ListenerConfig {
    /// Whether this is an `optional` TLS listener whose certificate or key
    /// file is missing: [`Broker::start`](crate::Broker::start) skips it.
    pub fn is_absent(&self) -> bool {
        self.optional
            && self
                .tls
                .as_ref()
                .is_some_and(|t| !t.cert.exists() || !t.key.exists())
    }
}

/// The `[limits]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest packet accepted from a client, fixed header included, in
    /// bytes. A larger packet closes the connection. Default 1 MiB.
    pub max_packet_size: usize,
    /// Most client connections open at once; the excess is refused with
    /// CONNACK 0x03 and closed. Default 100,000.
    pub max_connections: usize,
    /// Most unacknowledged outgoing QoS 1/2 messages per client (1 to
    /// 65,535); the rest wait in order. Default 100: a wide window lets many
    /// messages share one write and one round trip.
    pub max_inflight: usize,
    /// Most messages waiting for one client, online or offline; beyond that
    /// new messages for it are dropped and counted. Default 1,000.
    pub max_queued_messages: usize,
    /// Seconds a new connection has to send CONNECT. Default 10.
    pub connect_timeout_s: u64,
    /// Most levels a topic name or topic filter may have. Each level of a
    /// subscription or retained topic is a node of a tree (about 1 KB for
    /// a subscription), so without a bound one 64 KB filter of 30,000
    /// levels costs some 30 MB. A deeper filter gets SUBACK 0x80; a deeper
    /// PUBLISH or will topic closes the connection. Default 200, as
    /// Mosquitto's `TOPIC_HIERARCHY_LIMIT`.
    pub max_topic_levels: usize,
    /// Most subscriptions one client (its session) may hold; filters past
    /// it get SUBACK 0x80. Re-subscribing to a held filter always works.
    /// Default 10,000.
    pub max_subscriptions: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_packet_size: 1_048_576,
            max_connections: 100_000,
            max_inflight: 100,
            max_queued_messages: 1000,
            connect_timeout_s: 10,
            max_topic_levels: 200,
            max_subscriptions: 10_000,
        }
    }
}

/// The `[sys]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SysConfig {
    /// Seconds between `$SYS/broker/...` updates; 0 turns them off.
    /// Default 10.
    pub interval_s: u64,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig { interval_s: 10 }
    }
}

/// The `[log]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `error`, `warn`, `info`, `debug`, `trace`, or
    /// directives such as `midge_broker=debug`. `RUST_LOG` overrides it.
    /// Default `info`.
    pub level: String,
    /// `text` (one line per event, for people) or `json` (one JSON object
    /// per line, for log pipelines). Default `text`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log events are written, to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2024-01-01T00:00:00.000000Z  INFO midge_broker::connection: client
    /// connected client_id=c1 peer=127.0.0.1:50000 ...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's own fields (`client_id`, `peer`, `reason`, ...) at
    /// the top level.
    Json,
}

/// The `[metrics]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener serving `GET /metrics` (Prometheus text
    /// format) and `GET /health`. Default none: no HTTP listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
}

/// The `[persistence]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistenceConfig {
    /// Whether retained messages and persistent sessions are kept on disk.
    /// Default true; false keeps everything in memory only.
    pub enabled: bool,
    /// The data directory, relative to the working directory; created if
    /// missing. `--data-dir` overrides it. Default `data`.
    pub dir: PathBuf,
    /// When acknowledgements are sent relative to the disk. Default
    /// [`SyncMode::Always`].
    pub sync: SyncMode,
    /// With `sync = "periodic"`: milliseconds between syncs. Default 1000.
    pub sync_interval_ms: u64,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            enabled: true,
            dir: PathBuf::from("data"),
            sync: SyncMode::Always,
            sync_interval_ms: 1000,
        }
    }
}

/// How the journal uses `fdatasync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// PUBACK, PUBREC and SUBACK wait until what they promise is synced to
    /// disk; concurrent writes share one sync (group commit).
    #[default]
    Always,
    /// Acknowledge once written to the operating system; sync every
    /// `sync_interval_ms`. A power cut can lose that last interval.
    Periodic,
    /// Acknowledge once written to the operating system and leave syncing
    /// to it.
    Off,
}

impl SyncMode {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Periodic => "periodic",
            SyncMode::Off => "off",
        }
    }
}

/// The smallest `max_packet_size` accepted: room for a CONNECT.
const MIN_PACKET_SIZE: usize = 64;
/// The largest packet MQTT can frame.
const MAX_PACKET_SIZE: usize = midge_protocol::DEFAULT_MAX_PACKET_SIZE;

/// Why a configuration cannot be used. The message names where the bad value
/// came from, the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is missing, malformed, unknown or out of range.
    #[error("{origin}: {}{problem}", key.as_deref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Invalid {
        /// Where the value came from: a file path, `environment` or
        /// `command line`.
        origin: String,
        /// The dotted key, when known.
        key: Option<String>,
        /// What is wrong.
        problem: String,
    },
}

/// What [`Config::load`] layers over the defaults.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// A TOML file, as given with `--config`.
    pub file: Option<PathBuf>,
    /// Environment variables to read (`MIDGE_*`); `None` reads the process
    /// environment. Tests pass their own map.
    pub env: Option<HashMap<String, String>>,
    /// `-p/--port`: replaces the port of the first listener.
    pub port: Option<u16>,
}

impl Config {
    /// Builds the effective configuration: defaults < file < environment <
    /// flags, then checks every value.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        let file_text = match &opts.file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let file_origin = opts
            .file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "defaults".to_owned());

        // The file alone first, so its mistakes are reported against it.
        let mut builder = config::Config::builder();
        if let Some(text) = &file_text {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        let from_file = deserialize(builder.clone(), &file_origin, file_text.as_deref())?;
        from_file.validate(&file_origin)?;

        let env = config::Environment::with_prefix("MIDGE")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(opts.env.clone().map(|m| m.into_iter().collect()));
        let mut config = deserialize(builder.add_source(env), "environment", None)?;
        config.validate("environment").map_err(|e| match e {
            ConfigError::Invalid {
                key: Some(key),
                problem,
                ..
            } => ConfigError::Invalid {
                origin: format!("environment variable {}", env_var(&key)),
                key: Some(key),
                problem,
            },
            other => other,
        })?;

        if let Some(port) = opts.port {
            match config.listeners.first_mut() {
                Some(listener) => listener.bind.set_port(port),
                None => config.listeners.push(ListenerConfig {
                    bind: SocketAddr::from(([0, 0, 0, 0], port)),
                    ..ListenerConfig::default()
                }),
            }
        }
        config.validate("command line")?;
        Ok(config)
    }

    /// Checks values that their types alone do not bound; `origin` names the
    /// layer that supplied them, for the message.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: Some(key.to_owned()),
            problem,
        };
        if self.listeners.is_empty() {
            return Err(bad("listeners", "at least one listener is needed".into()));
        }
        if let Some(i) = self
            .listeners
            .iter()
            .position(|l| l.optional && l.tls.is_none())
        {
            return Err(bad(
                &format!("listeners[{i}].optional"),
                "only a TLS listener can be optional".into(),
            ));
        }
        let l = &self.limits;
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&l.max_packet_size) {
            return Err(bad(
                "limits.max_packet_size",
                format!(
                    "must be between {MIN_PACKET_SIZE} and {MAX_PACKET_SIZE} bytes, got {}",
                    l.max_packet_size
                ),
            ));
        }
        if l.max_connections == 0 {
            return Err(bad("limits.max_connections", "must be at least 1".into()));
        }
        if !(1..=65_535).contains(&l.max_inflight) {
            return Err(bad(
                "limits.max_inflight",
                format!("must be between 1 and 65535, got {}", l.max_inflight),
            ));
        }
        if l.max_queued_messages == 0 {
            return Err(bad(
                "limits.max_queued_messages",
                "must be at least 1".into(),
            ));
        }
        if l.connect_timeout_s == 0 {
            return Err(bad("limits.connect_timeout_s", "must be at least 1".into()));
        }
        if l.max_topic_levels == 0 {
            return Err(bad("limits.max_topic_levels", "must be at least 1".into()));
        }
        if l.max_subscriptions == 0 {
            return Err(bad("limits.max_subscriptions", "must be at least 1".into()));
        }
        if self.persistence.sync_interval_ms == 0 {
            return Err(bad(
                "persistence.sync_interval_ms",
                "must be at least 1".into(),
            ));
        }
        if self.persistence.dir.as_os_str().is_empty() {
            return Err(bad("persistence.dir", "must not be empty".into()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(bad(
                "log.level",
                format!("`{}` is not a valid log filter: {e}", self.log.level),
            ));
        }
        Ok(())
    }

    /// Removes the listeners [`ListenerConfig::is_absent`] says to skip
    /// and returns them.
    pub fn remove_absent_listeners(&mut self) -> Vec<ListenerConfig> {
        let (absent, present) = std::mem::take(&mut self.listeners)
            .into_iter()
            .partition(ListenerConfig::is_absent);
        self.listeners = present;
        absent
    }

    /// The configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        // Every field is a plain string, number or table: serialising cannot
        // fail, but a message beats a panic if that ever changes.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

/// Deserialises the layers in `builder`, turning the `config` crate's error
/// into a one-line [`ConfigError`] naming `origin`.
fn deserialize(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    origin: &str,
    text: Option<&str>,
) -> Result<Config, ConfigError> {
    let result = builder.build().and_then(|c| c.try_deserialize::<Config>());
    result.map_err(|e| translate(e, origin, text))
}

fn translate(err: config::ConfigError, origin: &str, text: Option<&str>) -> ConfigError {
    use config::ConfigError as E;
    let (key, problem) = match err {
        E::FileParse { cause, .. } => {
            let problem = match (cause.downcast_ref::<toml::de::Error>(), text) {
                (Some(e), Some(text)) => match e.span().map(|s| line_col(text, s.start)) {
                    Some((line, col)) => format!(
                        "TOML syntax error at line {line}, column {col}: {}",
                        one_line(e.message())
                    ),
                    None => format!("TOML syntax error: {}", one_line(e.message())),
                },
                _ => format!("TOML syntax error: {}", one_line(&cause.to_string())),
            };
            (None, problem)
        }
        E::Type {
            unexpected,
            expected,
            key,
            ..
        } => (
            key,
            format!("invalid value {unexpected}, expected {expected}"),
        ),
        E::At { error, key, .. } => (key, one_line(&error.to_string())),
        E::NotFound(key) => (Some(key), "missing".into()),
        other => (None, one_line(&other.to_string())),
    };
    let (key, problem) = name_unknown_key(key.map(|k| dotted(&k)), problem);
    let origin = match (origin, &key) {
        ("environment", Some(key)) => format!("environment variable {}", env_var(key)),
        _ => origin.to_owned(),
    };
    ConfigError::Invalid {
        origin,
        key,
        problem,
    }
}

/// serde reports an unknown field against its parent; name the field itself.
fn name_unknown_key(key: Option<String>, problem: String) -> (Option<String>, String) {
    let Some(rest) = problem.strip_prefix("unknown field `") else {
        return (key, problem);
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return (key, problem);
    };
    let full = match key {
        Some(parent) => format!("{parent}.{field}"),
        None => field.to_owned(),
    };
    let expected = expected.trim_start_matches(',').trim();
    (Some(full), format!("unknown key; {expected}"))
}

/// `listeners[0]bind`, as the `config` crate writes it, to `listeners[0].bind`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev = ' ';
    for c in key.chars() {
        if prev == ']' && c != '[' && c != '.' {
            out.push('.');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// The environment variable that sets `key`.
fn env_var(key: &str) -> String {
    format!("MIDGE_{}", key.to_uppercase().replace('.', "__"))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Reads `path` as the configuration file with no environment and no flags:
/// a shortcut for tests and tools.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    Config::load(&LoadOptions {
        file: Some(path.to_owned()),
        env: Some(HashMap::new()),
        port: None,
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
