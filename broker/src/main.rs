//! The `midge` command: load the configuration, start the broker, reload
//! its `[auth]` section and its password, ACL and certificate files on
//! SIGHUP, stop it on SIGINT or SIGTERM. `midge passwd` manages password files; `midge health` checks a
//! running broker (for container health checks).
//!
//! Logs go to standard error, as text lines or (`[log] format = "json"`)
//! one JSON object per line.
//!
//! Exit codes: 0 after a clean stop, 2 for a configuration that cannot be
//! used (the message names the file, key and problem), 1 when the broker
//! cannot start otherwise (a port in use, say).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use midge_broker::health_cmd::{self, HealthArgs};
use midge_broker::passwd_cmd::{self, PasswdArgs};
use midge_broker::shards::{ShardThreads, Shards};
use midge_broker::{Broker, BrokerError, Config, LoadOptions, LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// jemalloc, not the system allocator: see broker/Cargo.toml.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Midge: a small, fast MQTT 3.1.1 broker.
#[derive(Debug, Parser)]
#[command(name = "midge", version, about)]
struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults apply.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Port for the plain listener, overriding the configuration.
    #[arg(short, long)]
    port: Option<u16>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,

    /// Data directory for persistent sessions and retained messages,
    /// overriding `[persistence] dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands; without one, `midge` runs the broker.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Add, change (-b for batch) or delete (-D) a user in a
    /// Mosquitto-format password file; new entries use argon2id.
    Passwd(PasswdArgs),
    /// Check that a broker is serving: CONNECT and PINGREQ on its first
    /// plain listener (and `GET /health` with --metrics). Exit 0 healthy,
    /// 1 not, 2 bad configuration.
    Health(HealthArgs),
}

/// How long the broker gets to stop after a signal before the process exits
/// anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Passwd(args)) = &cli.command {
        let code = passwd_cmd::exit_code(passwd_cmd::execute(args));
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    if let Some(Command::Health(args)) = &cli.command {
        let result = health_cmd::execute(args, cli.config.clone());
        return ExitCode::from(health_cmd::exit_code(result));
    }
    let opts = LoadOptions {
        file: cli.config,
        env: None,
        port: cli.port,
    };
    let mut config = match Config::load(&opts) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("midge: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &cli.data_dir {
        // A flag: the strongest layer, over file and environment.
        config.persistence.dir = dir.clone();
    }
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&config.log);
    #[cfg(unix)]
    raise_open_files_limit(&config);
    // One single-threaded runtime per core the process may use (see
    // midge_broker::shards): this thread's, and one thread each for the rest.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|rt| Ok((rt, ShardThreads::start(cores - 1)?)));
    let (runtime, shards) = match started {
        Ok(both) => both,
        Err(e) => {
            eprintln!("midge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reread = Reread {
        opts,
        data_dir: cli.data_dir,
    };
    let code = runtime.block_on(run(config, reread, Shards::new(shards.handles().to_vec())));
    // Tasks that did not stop in time must not hold the process.
    runtime.shutdown_timeout(Duration::from_millis(100));
    shards.stop();
    code
}

/// Raises the soft limit on open files to the hard limit: every client is
/// a descriptor, and a shell's usual soft limit (1,024) would refuse
/// connections long before `max_connections`. Says so when even the hard
/// limit is below what the configuration allows.
#[cfg(unix)]
fn raise_open_files_limit(config: &Config) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = match (limit.current, limit.maximum) {
        (Some(soft), hard) if hard.map_or(true, |h| h > soft) => {
            match setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: hard,
                    ..limit
                },
            ) {
                Ok(()) => {
                    let to = hard.map_or("unlimited".to_owned(), |h| h.to_string());
                    tracing::debug!(from = soft, to, "open files limit raised");
                    hard
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot raise the open files limit");
                    Some(soft)
                }
            }
        }
        (current, _) => current,
    };
    // Listeners, the journal and the runtime need a few descriptors too.
    let wanted = config.limits.max_connections as u64 + 64;
    if let Some(files) = raised.filter(|&f| f < wanted) {
        tracing::warn!(
            open_files = files,
            max_connections = config.limits.max_connections,
            "the process may open fewer files than limits.max_connections needs: \
             clients past that are refused at accept (raise `ulimit -n`)"
        );
    }
}

/// How the configuration was made, to make it again on SIGHUP.
struct Reread {
    opts: LoadOptions,
    data_dir: Option<PathBuf>,
}

impl Reread {
    fn load(&self) -> Result<Config, midge_broker::config::ConfigError> {
        let mut config = Config::load(&self.opts)?;
        if let Some(dir) = &self.data_dir {
            config.persistence.dir = dir.clone();
        }
        Ok(config)
    }
}

async fn run(config: Config, reread: Reread, shards: Shards) -> ExitCode {
    let broker = match Broker::start_sharded(config, shards).await {
        Ok(broker) => broker,
        Err(e @ (BrokerError::Config(_) | BrokerError::Auth(_) | BrokerError::Tls { .. })) => {
            eprintln!("midge: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("midge: {e}");
            return ExitCode::FAILURE;
        }
    };
    match wait_for_signal(&broker, &reread).await {
        Ok(name) => tracing::info!(signal = name, "stopping"),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for signals");
            return ExitCode::FAILURE;
        }
    }
    if tokio::time::timeout(STOP_DEADLINE, broker.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("stop took too long; exiting anyway");
    }
    ExitCode::SUCCESS
}

/// Logs to standard error at `RUST_LOG` when set, else the configured
/// level, in the configured format.
fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => {
            // Colours only for a person at a terminal, not in log files.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            fmt.with_ansi(ansi).init();
        }
        // One object per line, the event's fields at the top level next to
        // `message`, so pipelines index `client_id`, `peer` and `reason`
        // without digging.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// Waits for SIGTERM or SIGINT, reloading on each SIGHUP meanwhile.
#[cfg(unix)]
async fn wait_for_signal(broker: &Broker, reread: &Reread) -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => reload(broker, reread),
        }
    }
}

/// SIGHUP: the configuration file again, then its `[auth]` and the
/// password, ACL and certificate files; what else changed waits for a
/// restart, and says so. A file that does not load changes nothing.
#[cfg(unix)]
fn reload(broker: &Broker, reread: &Reread) {
    let config = match reread.load() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("SIGHUP: reload failed, previous configuration kept: {e}");
            return;
        }
    };
    match broker.reload_config(&config) {
        Ok(later) => {
            tracing::info!(
                "SIGHUP: configuration [auth], password, ACL and certificate files reloaded"
            );
            for section in later {
                tracing::warn!(
                    section,
                    "SIGHUP: [{section}] changed: it applies after a restart"
                );
            }
        }
        Err(e) => tracing::error!("SIGHUP: reload failed, previous files kept: {e}"),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(_broker: &Broker, _reread: &Reread) -> std::io::Result<&'static str> {
    tokio::signal::ctrl_c().await?;
    Ok("Ctrl-C")
}
