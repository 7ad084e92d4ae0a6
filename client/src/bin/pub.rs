//! `midge-pub`: publish one message, a file, stdin, or stdin line by line,
//! with mosquitto_pub's flags, messages and exit codes.

mod common;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use midge_client::{Client, PublishError, PublishToken, QoS, Reconnect};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use common::{ConnectArgs, Usage};

const TOOL: &str = "midge-pub";

/// midge-pub is a simple MQTT 3.1.1 client that will publish a message on a
/// single topic and exit. Its flags follow mosquitto_pub.
#[derive(Parser, Debug)]
#[command(
    name = "midge-pub",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Cli {
    #[command(flatten)]
    conn: ConnectArgs,
    /// mqtt topic to publish to.
    #[arg(short = 't', long = "topic", value_name = "topic")]
    topic: Option<String>,
    /// message payload to send.
    #[arg(short = 'm', long = "message", value_name = "message")]
    message: Option<String>,
    /// send the contents of a file as the message.
    #[arg(short = 'f', long = "file", value_name = "file")]
    file: Option<PathBuf>,
    /// read messages from stdin, sending a separate message for each line.
    #[arg(short = 'l', long = "stdin-line")]
    stdin_line: bool,
    /// send a null (zero length) message.
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// read message from stdin, sending the entire input as a message.
    #[arg(short = 's', long = "stdin-file")]
    stdin_file: bool,
    /// message should be retained.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// if publish mode is -f, -m, -n or -s, then repeat the publish N times.
    #[arg(long = "repeat", value_name = "count", default_value_t = 1)]
    repeat: u64,
    /// if using --repeat, wait time seconds between publishes. Defaults to 0.
    #[arg(long = "repeat-delay", value_name = "seconds", default_value_t = 0.0)]
    repeat_delay: f64,
}

/// Where the payload comes from.
enum Source {
    Fixed(Bytes),
    Lines,
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

async fn run(cli: Cli) -> ExitCode {
    let resolved = match common::resolve(&cli.conn) {
        Ok(r) => r,
        Err(usage) => return usage.exit(TOOL),
    };
    let topic = match cli.topic.clone().or(resolved.url_topic.clone()) {
        Some(t) => t,
        None => return Usage::hint("Both topic and message must be supplied.").exit(TOOL),
    };
    if !common::topic_ok(&topic) {
        return Usage::hint(format!(
            "Invalid publish topic '{topic}', does it contain '+' or '#'?"
        ))
        .exit(TOOL);
    }
    if !cli.repeat_delay.is_finite() || cli.repeat_delay < 0.0 {
        return Usage::hint("Invalid repeat delay given.").exit(TOOL);
    }
    let source = match source(&cli).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    common::init_debug(cli.conn.debug);
    let client = match resolved
        .builder
        .reconnect(Reconnect::disabled())
        .connect()
        .await
    {
        Ok(c) => c,
        Err(e) => return common::connect_failed(&e, cli.conn.quiet),
    };
    let result = match source {
        Source::Fixed(payload) => {
            publish_repeated(&client, &cli, &topic, payload, resolved.qos).await
        }
        Source::Lines => publish_lines(&client, &cli, &topic, resolved.qos).await,
    };
    let disconnected = client.disconnect().await;
    match (result, disconnected) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) => publish_failed(&e, cli.conn.quiet),
        (Ok(()), Err(e)) => {
            if !cli.conn.quiet {
                eprintln!("Error: {e}");
            }
            ExitCode::from(common::EXIT_CONN_LOST)
        }
    }
}

fn publish_failed(err: &PublishError, quiet: bool) -> ExitCode {
    if !quiet {
        match err {
            PublishError::ConnectionLost | PublishError::Closed => {
                eprintln!("Error: The connection was lost.")
            }
            other => eprintln!("Error: {other}"),
        }
    }
    match err {
        PublishError::ConnectionLost | PublishError::Closed => {
            ExitCode::from(common::EXIT_CONN_LOST)
        }
        _ => ExitCode::from(1),
    }
}

/// Reads the payload as mosquitto_pub does; exactly one mode is allowed.
async fn source(cli: &Cli) -> Result<Source, ExitCode> {
    let modes = [
        cli.message.is_some(),
        cli.file.is_some(),
        cli.stdin_line,
        cli.null_message,
        cli.stdin_file,
    ]
    .iter()
    .filter(|m| **m)
    .count();
    if modes > 1 {
        return Err(Usage::hint("Only one type of message can be sent at once.").exit(TOOL));
    }
    if let Some(m) = &cli.message {
        return Ok(Source::Fixed(Bytes::from(m.clone().into_bytes())));
    }
    if let Some(path) = &cli.file {
        return match tokio::fs::read(path).await {
            Ok(data) => Ok(Source::Fixed(Bytes::from(data))),
            Err(_) => {
                eprintln!("Error loading input file \"{}\".", path.display());
                Err(ExitCode::from(1))
            }
        };
    }
    if cli.null_message {
        return Ok(Source::Fixed(Bytes::new()));
    }
    if cli.stdin_file {
        let mut data = Vec::new();
        if let Err(e) = tokio::io::stdin().read_to_end(&mut data).await {
            eprintln!("Error: reading stdin: {e}");
            return Err(ExitCode::from(1));
        }
        return Ok(Source::Fixed(Bytes::from(data)));
    }
    if cli.stdin_line {
        return Ok(Source::Lines);
    }
    Err(Usage::hint("Both topic and message must be supplied.").exit(TOOL))
}

async fn publish_repeated(
    client: &Client,
    cli: &Cli,
    topic: &str,
    payload: Bytes,
    qos: QoS,
) -> Result<(), PublishError> {
    let delay = Duration::from_secs_f64(cli.repeat_delay);
    for i in 0..cli.repeat.max(1) {
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        client
            .publish(topic.to_string(), payload.clone(), qos, cli.retain)
            .await?;
    }
    Ok(())
}

/// One message per stdin line, keeping up to 20 in flight like
/// mosquitto_pub's default `-M`.
async fn publish_lines(
    client: &Client,
    cli: &Cli,
    topic: &str,
    qos: QoS,
) -> Result<(), PublishError> {
    const WINDOW: usize = 20;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut outstanding: VecDeque<PublishToken> = VecDeque::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("Error: reading stdin: {e}");
                break;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        while outstanding.len() >= WINDOW {
            if let Some(token) = outstanding.pop_front() {
                token.await?;
            }
        }
        let payload = Bytes::copy_from_slice(&line);
        loop {
            match client.try_publish(topic.to_string(), payload.clone(), qos, cli.retain) {
                Ok(token) => {
                    outstanding.push_back(token);
                    break;
                }
                Err(PublishError::QueueFull) => match outstanding.pop_front() {
                    Some(token) => token.await?,
                    None => tokio::task::yield_now().await,
                },
                Err(e) => return Err(e),
            }
        }
    }
    for token in outstanding {
        token.await?;
    }
    Ok(())
}
