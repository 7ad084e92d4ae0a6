//! What `midge-pub` and `midge-sub` share: the mosquitto-compatible
//! connection flags, turning them into a [`ClientBuilder`], and printing
//! errors with mosquitto's wording and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use midge_client::{
    BrokerUrl, Client, ClientBuilder, ConnectError, ProtocolLevel, QoS, TlsOptions, Will,
};

/// mosquitto's exit code for a lost connection (`MOSQ_ERR_CONN_LOST`).
pub const EXIT_CONN_LOST: u8 = 7;

/// Connection flags common to both tools, as mosquitto spells them.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// mqtt host to connect to. Defaults to localhost.
    #[arg(short = 'h', long = "host", value_name = "host")]
    pub host: Option<String>,
    /// network port to connect to. Defaults to 1883 for plain MQTT and 8883 for MQTT over TLS.
    #[arg(short = 'p', long = "port", value_name = "port")]
    pub port: Option<i64>,
    /// User, password, host, port and topic as one `mqtt(s)://` URL.
    #[arg(
        short = 'L',
        long = "url",
        value_name = "URL",
        help = "specify user, password, hostname, port and topic as a URL in the form: mqtt(s)://[username[:password]@]host[:port]/topic"
    )]
    pub url: Option<String>,
    /// id to use for this client. Defaults to an id assigned by the broker.
    #[arg(short = 'i', long = "id", value_name = "id")]
    pub id: Option<String>,
    /// define the client id as id_prefix appended with the process id.
    #[arg(short = 'I', long = "id-prefix", value_name = "id_prefix")]
    pub id_prefix: Option<String>,
    /// provide a username
    #[arg(short = 'u', long = "username", value_name = "username")]
    pub username: Option<String>,
    /// provide a password
    #[arg(short = 'P', long = "pw", value_name = "password")]
    pub password: Option<String>,
    /// keep alive in seconds for this client. Defaults to 60.
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "keepalive",
        default_value_t = 60
    )]
    pub keepalive: i64,
    /// disable clean session/enable persistent client mode
    #[arg(short = 'c', long = "disable-clean-session")]
    pub no_clean_session: bool,
    /// quality of service level to use. Defaults to 0.
    #[arg(short = 'q', long = "qos", value_name = "qos", default_value_t = 0)]
    pub qos: i64,
    /// specify the version of the MQTT protocol to use when connecting.
    /// Can be mqttv311 (311) or mqttv31 (31). Defaults to mqttv311.
    #[arg(short = 'V', long = "protocol-version", value_name = "version")]
    pub protocol: Option<String>,
    /// enable debug messages.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// don't print error messages.
    #[arg(long = "quiet")]
    pub quiet: bool,
    /// path to a file containing trusted CA certificates to enable encrypted communication.
    #[arg(long = "cafile", value_name = "file")]
    pub cafile: Option<PathBuf>,
    /// path to a directory containing trusted CA certificates (PEM files) to enable encrypted communication.
    #[arg(long = "capath", value_name = "dir")]
    pub capath: Option<PathBuf>,
    /// client certificate for authentication, if required by server.
    #[arg(long = "cert", value_name = "file")]
    pub cert: Option<PathBuf>,
    /// client private key for authentication, if required by server.
    #[arg(long = "key", value_name = "file")]
    pub key: Option<PathBuf>,
    /// do not check that the server certificate hostname matches the remote hostname.
    #[arg(long = "insecure")]
    pub insecure: bool,
    /// Load and trust OS provided CA certificates.
    #[arg(long = "tls-use-os-certs")]
    pub tls_use_os_certs: bool,
    /// the topic on which to publish the client Will.
    #[arg(long = "will-topic", value_name = "topic")]
    pub will_topic: Option<String>,
    /// payload for the client Will.
    #[arg(long = "will-payload", value_name = "payload")]
    pub will_payload: Option<String>,
    /// QoS level for the client Will.
    #[arg(long = "will-qos", value_name = "qos", default_value_t = 0)]
    pub will_qos: i64,
    /// if given, make the client Will retained.
    #[arg(long = "will-retain")]
    pub will_retain: bool,
    /// display this message.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// A command-line problem: the message, and whether to add the usage hint.
pub struct Usage {
    /// Text after "Error: ".
    pub message: String,
    /// Whether to point at `--help`.
    pub hint: bool,
}

impl Usage {
    /// A usage error followed by the `--help` hint.
    pub fn hint(message: impl Into<String>) -> Usage {
        Usage {
            message: message.into(),
            hint: true,
        }
    }

    /// A usage error on its own.
    pub fn plain(message: impl Into<String>) -> Usage {
        Usage {
            message: message.into(),
            hint: false,
        }
    }

    /// Prints it mosquitto-style and gives exit code 1.
    pub fn exit(self, tool: &str) -> ExitCode {
        eprintln!("Error: {}", self.message);
        if self.hint {
            eprintln!("\nUse '{tool} --help' to see usage.");
        }
        ExitCode::from(1)
    }
}

/// Parses a QoS flag the way mosquitto checks it.
pub fn parse_qos(value: i64, what: &str) -> Result<QoS, Usage> {
    u8::try_from(value)
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| Usage::hint(format!("Invalid {what} given: {value}")))
}

/// The connection settings resolved from the flags.
pub struct Resolved {
    /// The builder, ready to connect.
    pub builder: ClientBuilder,
    /// The topic from `-L`'s path, if any.
    pub url_topic: Option<String>,
    /// The QoS from `-q`.
    pub qos: QoS,
}

/// Turns the flags into a client builder, validating them like mosquitto.
pub fn resolve(args: &ConnectArgs) -> Result<Resolved, Usage> {
    let qos = parse_qos(args.qos, "QoS")?;
    let protocol = match args.protocol.as_deref() {
        None | Some("mqttv311") | Some("311") => ProtocolLevel::V3_1_1,
        Some("mqttv31") | Some("31") => ProtocolLevel::V3_1,
        Some("mqttv5") | Some("5") => {
            return Err(Usage::plain(
                "MQTT v5 is not supported by midge; use -V 311 or -V 31.",
            ))
        }
        Some(_) => return Err(Usage::hint("Invalid protocol version argument given.")),
    };
    if !(5..=65535).contains(&args.keepalive) {
        return Err(Usage::hint(
            "Invalid keepalive given, it must be between 5 and 65535 inclusive.",
        ));
    }
    if args.id.is_some() && args.id_prefix.is_some() {
        return Err(Usage::hint("-i and -I argument cannot be used together."));
    }
    let client_id = match (&args.id, &args.id_prefix) {
        (Some(id), _) => id.clone(),
        (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
        (None, None) if protocol == ProtocolLevel::V3_1 => random_mosq_id(),
        (None, None) => String::new(),
    };
    if args.no_clean_session && client_id.is_empty() {
        return Err(Usage::hint(
            "You must provide a client id if you are using the -c option.",
        ));
    }
    if args.password.is_some() && args.username.is_none() && args.url.is_none() {
        return Err(Usage::hint("Password given, but no username given."));
    }

    let mut builder = Client::builder("mqtt://localhost")
        .client_id(client_id)
        .clean_session(!args.no_clean_session)
        .keep_alive(Duration::from_secs(args.keepalive as u64))
        .protocol(protocol)
        .connect_timeout(Duration::from_secs(30));
    let mut url_topic = None;
    let mut tls_from_url = false;
    let (mut username, mut password) = (None, None);
    if let Some(url) = &args.url {
        let parsed = BrokerUrl::parse(url)
            .map_err(|e| Usage::hint(format!("Invalid URL for -L argument specified: {e}")))?;
        builder = builder.host(parsed.host.clone());
        if let Some(port) = parsed.port {
            builder = builder.port(port);
        }
        tls_from_url = parsed.tls;
        username = parsed.username;
        password = parsed.password;
        if !parsed.path.is_empty() {
            url_topic = Some(parsed.path);
        }
    }
    if let Some(host) = &args.host {
        builder = builder.host(host.clone());
    }
    if let Some(port) = args.port {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| Usage::hint(format!("Invalid port given: {port}")))?;
        builder = builder.port(port);
    }
    username = args.username.clone().or(username);
    password = args.password.clone().or(password);
    match (username, password) {
        (Some(u), Some(p)) => builder = builder.credentials(u, p.into_bytes()),
        (Some(u), None) => builder = builder.username(u),
        (None, _) => {}
    }
    builder = builder.no_tls();
    if let Some(tls) = tls_options(args, tls_from_url)? {
        builder = builder.tls(tls);
    }
    if let Some(will) = will(args)? {
        builder = builder.will(will);
    }
    Ok(Resolved {
        builder,
        url_topic,
        qos,
    })
}

fn tls_options(args: &ConnectArgs, tls_from_url: bool) -> Result<Option<TlsOptions>, Usage> {
    let wanted = tls_from_url
        || args.cafile.is_some()
        || args.capath.is_some()
        || args.cert.is_some()
        || args.tls_use_os_certs;
    if !wanted {
        if args.insecure || args.key.is_some() {
            return Err(Usage::hint(
                "TLS options given, but no --cafile, --capath or --cert.",
            ));
        }
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &args.cafile {
        tls = tls.ca_file(ca);
    }
    if let Some(dir) = &args.capath {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Usage::plain(format!("Unable to read --capath {}: {e}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths
            .into_iter()
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pem" | "crt")))
        {
            tls = tls.ca_file(path);
        }
    }
    if args.tls_use_os_certs {
        tls = tls.platform_roots(true);
    }
    match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => tls = tls.client_auth_files(cert, key),
        (None, None) => {}
        _ => {
            return Err(Usage::hint(
                "Both certfile and keyfile must be provided if one of them is set.",
            ))
        }
    }
    if args.insecure {
        tls = tls.skip_hostname_verification(true);
    }
    Ok(Some(tls))
}

fn will(args: &ConnectArgs) -> Result<Option<Will>, Usage> {
    let Some(topic) = &args.will_topic else {
        if args.will_payload.is_some() {
            return Err(Usage::hint("Will payload given, but no will topic given."));
        }
        if args.will_retain {
            return Err(Usage::hint("Will retain given, but no will topic given."));
        }
        return Ok(None);
    };
    if !topic_ok(topic) {
        return Err(Usage::hint(format!(
            "Invalid will topic '{topic}', does it contain '+' or '#'?"
        )));
    }
    let qos = parse_qos(args.will_qos, "will QoS")?;
    let payload = args.will_payload.clone().unwrap_or_default();
    Ok(Some(
        Will::new(topic.clone(), payload.into_bytes())
            .qos(qos)
            .retain(args.will_retain),
    ))
}

/// Whether `topic` can be published to.
pub fn topic_ok(topic: &str) -> bool {
    midge_protocol::topic::valid_topic_name(topic) && !topic.contains('\0')
}

/// `mosq-` and 18 random characters, as libmosquitto makes for MQTT 3.1.
fn random_mosq_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("mosq-{}", Alphanumeric.sample_string(&mut rand::rng(), 18))
}

/// Prints a connection failure the way mosquitto does and gives its exit code.
pub fn connect_failed(err: &ConnectError, quiet: bool) -> ExitCode {
    let (text, code) = match err {
        ConnectError::Refused(code) => {
            (format!("Connection error: {}", code.reason()), *code as u8)
        }
        ConnectError::Io { source, .. } | ConnectError::Resolve { source, .. } => {
            (format!("Error: {}", os_error_text(source)), 1)
        }
        ConnectError::Handshake { .. } | ConnectError::ClosedBeforeConnAck => {
            (format!("Error: {err}"), EXIT_CONN_LOST)
        }
        other => (format!("Error: {other}"), 1),
    };
    if !quiet {
        eprintln!("{text}");
    }
    ExitCode::from(code)
}

/// An I/O error as `strerror` words it ("Connection refused"), without
/// Rust's "(os error 111)".
pub fn os_error_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Sends the library's packet trace to stdout, like mosquitto's `-d`.
pub fn init_debug(debug: bool) {
    if !debug {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::new("midge_client::packet=debug");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
}

/// Parses the command line; on a problem prints it mosquitto-style.
pub fn parse<T: clap::Parser>(tool: &str) -> Result<T, ExitCode> {
    match T::try_parse() {
        Ok(args) => Ok(args),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                let _ = e.print();
                Err(ExitCode::SUCCESS)
            }
            _ => {
                let text = e.to_string();
                let first = text
                    .lines()
                    .next()
                    .unwrap_or("invalid arguments")
                    .trim_start_matches("error: ");
                Err(Usage::hint(first.to_string()).exit(tool))
            }
        },
    }
}
