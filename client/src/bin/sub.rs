//! `midge-sub`: subscribe and print messages, with mosquitto_sub's flags,
//! output, messages and exit codes. Output is flushed after every message,
//! so `midge-sub -t '#' -v | grep …` sees each line as it arrives.

mod common;
mod sub_format;

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use midge_client::{Client, Message, QoS, SubscribeError};

use common::{ConnectArgs, Usage};
use sub_format::Printer;

const TOOL: &str = "midge-sub";

/// mosquitto_sub's exit code after `-W` (`MOSQ_ERR_TIMEOUT`... as its
/// `Timed out` path returns).
const EXIT_TIMED_OUT: u8 = 27;

/// midge-sub is a simple MQTT 3.1.1 client that will subscribe to topic
/// filters and print the messages it receives. Its flags follow mosquitto_sub.
#[derive(Parser, Debug)]
#[command(
    name = "midge-sub",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Cli {
    #[command(flatten)]
    conn: ConnectArgs,
    /// mqtt topic to subscribe to. May be repeated multiple times.
    #[arg(short = 't', long = "topic", value_name = "topic")]
    topics: Vec<String>,
    /// topic string to filter out of results. May be repeated.
    #[arg(short = 'T', long = "filter-out", value_name = "filter_out")]
    filter_out: Vec<String>,
    /// print published messages verbosely.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// disconnect and exit after receiving the 'msg_count' messages.
    #[arg(short = 'C', long = "count", value_name = "msg_count")]
    count: Option<i64>,
    /// Specifies a timeout in seconds how long to process incoming MQTT messages.
    #[arg(short = 'W', long = "timeout", value_name = "timeout")]
    timeout: Option<i64>,
    /// do not print stale messages (those with retain set).
    #[arg(short = 'R', long = "no-retained")]
    no_retain: bool,
    /// do not add an end of line character when printing the payload.
    #[arg(short = 'N', long = "no-eol")]
    no_eol: bool,
    /// Exit once all subscriptions have been acknowledged by the broker.
    #[arg(short = 'E', long = "exit-after-sub")]
    exit_after_sub: bool,
    /// only print retained messages; exit at the first non-retained one.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// clear any retained messages received.
    #[arg(long = "remove-retained")]
    remove_retained: bool,
    /// output format string (%t topic, %p payload, %q QoS, %r retain, %l length,
    /// %m packet id, %x/%X hex payload, %U/%I time, %j/%J JSON, @Y…@S time fields).
    #[arg(short = 'F', long = "format", value_name = "format")]
    format: Option<String>,
    /// print each message as one JSON object per line.
    #[arg(long = "json")]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match common::parse::<Cli>(TOOL) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

/// Checks the sub-specific flags; returns the topics to subscribe to.
fn validate(cli: &Cli, url_topic: Option<String>) -> Result<Vec<String>, Usage> {
    let mut topics = cli.topics.clone();
    topics.extend(url_topic);
    if topics.is_empty() {
        return Err(Usage::hint("You must specify a topic to subscribe to."));
    }
    if let Some(bad) = topics.iter().find(|t| !filter_ok(t)) {
        return Err(Usage::hint(format!(
            "Invalid subscription topic '{bad}', are all '+' and '#' wildcards correct?"
        )));
    }
    if let Some(bad) = cli.filter_out.iter().find(|t| !filter_ok(t)) {
        return Err(Usage::hint(format!(
            "Invalid filter topic '{bad}', are all '+' and '#' wildcards correct?"
        )));
    }
    if cli.count.is_some_and(|c| c < 1) {
        return Err(Usage::hint(format!(
            "Invalid message count \"{}\".",
            cli.count.unwrap_or(0)
        )));
    }
    if cli.timeout.is_some_and(|t| !(1..=3600).contains(&t)) {
        return Err(Usage::hint(format!(
            "Invalid timeout \"{}\".",
            cli.timeout.unwrap_or(0)
        )));
    }
    if cli.json && cli.format.is_some() {
        return Err(Usage::hint("--json and -F cannot be used together."));
    }
    Ok(topics)
}

async fn run(cli: Cli) -> ExitCode {
    let resolved = match common::resolve(&cli.conn) {
        Ok(r) => r,
        Err(usage) => return usage.exit(TOOL),
    };
    let topics = match validate(&cli, resolved.url_topic.clone()) {
        Ok(t) => t,
        Err(usage) => return usage.exit(TOOL),
    };
    // mosquitto_sub arms its -W alarm before connecting.
    let timeout = cli
        .timeout
        .map(|t| tokio::time::Instant::now() + Duration::from_secs(t as u64));
    common::init_debug(cli.conn.debug);
    // Like mosquitto_sub, keep reconnecting if the broker goes away.
    let client = match resolved.builder.connect().await {
        Ok(c) => c,
        Err(e) => return common::connect_failed(&e, cli.conn.quiet),
    };
    let filters = topics.iter().map(|t| (t.as_str(), resolved.qos));
    let mut subscription = match client.subscribe_many(filters).await {
        Ok(s) => s,
        Err(SubscribeError::Refused(_)) => {
            if !cli.conn.quiet {
                eprintln!("All subscription requests were denied.");
            }
            let _ = client.disconnect().await;
            return ExitCode::from(1);
        }
        Err(e) => {
            if !cli.conn.quiet {
                eprintln!("Error: {e}");
            }
            return ExitCode::from(common::EXIT_CONN_LOST);
        }
    };
    if cli.exit_after_sub {
        let _ = client.disconnect().await;
        return ExitCode::SUCCESS;
    }
    let code = receive(&cli, &client, &mut subscription, timeout).await;
    // Disconnect before the subscription is dropped: dropping it first would
    // unsubscribe, and with -c the session must keep it.
    let _ = client.disconnect().await;
    drop(subscription);
    code
}

async fn receive(
    cli: &Cli,
    client: &Client,
    subscription: &mut midge_client::Subscription,
    timeout: Option<tokio::time::Instant>,
) -> ExitCode {
    let printer = Printer {
        verbose: cli.verbose,
        eol: !cli.no_eol,
        format: cli.format.clone(),
        json: cli.json,
    };
    let mut received: i64 = 0;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            msg = subscription.next() => msg,
            _ = sleep_until(timeout) => {
                if !cli.conn.quiet {
                    eprintln!("Timed out");
                }
                return ExitCode::from(EXIT_TIMED_OUT);
            }
            _ = &mut shutdown => return ExitCode::SUCCESS,
        };
        let Some(msg) = msg else {
            if !cli.conn.quiet {
                eprintln!("Error: The connection was lost.");
            }
            return ExitCode::from(common::EXIT_CONN_LOST);
        };
        match on_message(cli, client, &printer, &msg) {
            Flow::Skip => {}
            Flow::Stop => return ExitCode::SUCCESS,
            Flow::Printed => {
                received += 1;
                if cli.count.is_some_and(|c| received >= c) {
                    return ExitCode::SUCCESS;
                }
            }
            Flow::OutputClosed => return ExitCode::SUCCESS,
        }
    }
}

enum Flow {
    Skip,
    Printed,
    Stop,
    OutputClosed,
}

/// mosquitto_sub's message callback, in its order of checks.
fn on_message(cli: &Cli, client: &Client, printer: &Printer, msg: &Message) -> Flow {
    if cli.remove_retained && msg.retain {
        // QoS 1 like mosquitto_sub; disconnect() waits for it.
        if let Ok(token) =
            client.try_publish(msg.topic.clone(), Bytes::new(), QoS::AtLeastOnce, true)
        {
            drop(token);
        }
    }
    if cli.retained_only && !msg.retain {
        return Flow::Stop;
    }
    if cli.no_retain && msg.retain {
        return Flow::Skip;
    }
    if cli
        .filter_out
        .iter()
        .any(|f| midge_protocol::topic::matches(f, &msg.topic))
    {
        return Flow::Skip;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match printer.print(msg, &mut out) {
        Ok(()) => Flow::Printed,
        // A closed pipe (`| head -1`) ends the program quietly.
        Err(_) => Flow::OutputClosed,
    }
}

/// Whether `filter` is a valid subscription.
fn filter_ok(filter: &str) -> bool {
    midge_protocol::topic::valid_topic_filter(filter) && !filter.contains('\0')
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Ctrl-C or SIGTERM: disconnect cleanly and exit 0, as mosquitto_sub does.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
