//! Connects to a cloud broker (such as HiveMQ Cloud) over TLS on port 8883
//! with a user name and password, subscribes to `encyclopedia/#` at QoS 1,
//! publishes `hot` to `encyclopedia/temperature` at QoS 1, and prints what
//! arrives.
//!
//! ```text
//! cargo run -p midge-client --example cloud_tls -- \
//!     --host xxxxxx.s1.eu.hivemq.cloud --username me --password secret
//! ```
//! Every flag can come from the environment instead: `MQTT_HOST`,
//! `MQTT_PORT` (default 8883), `MQTT_USERNAME`, `MQTT_PASSWORD`, and
//! `MQTT_CAFILE` (default: the platform's root certificates, which is what a
//! public cloud broker needs). `--count N` exits after N messages.

use clap::Parser;
use futures::StreamExt;
use midge_client::{Client, QoS, TlsOptions};

/// Command-line flags, with environment fallbacks.
#[derive(Parser, Debug)]
struct Args {
    /// Broker host name.
    #[arg(long, env = "MQTT_HOST")]
    host: String,
    /// Broker TLS port.
    #[arg(long, env = "MQTT_PORT", default_value_t = 8883)]
    port: u16,
    /// User name.
    #[arg(long, env = "MQTT_USERNAME")]
    username: String,
    /// Password.
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    password: String,
    /// CA file to trust instead of the platform's roots.
    #[arg(long, env = "MQTT_CAFILE")]
    cafile: Option<std::path::PathBuf>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tls = match &args.cafile {
        Some(ca) => TlsOptions::new().ca_file(ca),
        None => TlsOptions::new(),
    };
    let client = Client::builder(&format!("mqtts://{}:{}", args.host, args.port))
        .credentials(args.username.clone(), args.password.clone().into_bytes())
        .tls(tls)
        .connect()
        .await?;
    println!("Connected to {}:{} over TLS", args.host, args.port);

    let mut messages = client.subscribe("encyclopedia/#", QoS::AtLeastOnce).await?;
    println!(
        "Subscribed to encyclopedia/# (granted {:?})",
        messages.granted_qos()
    );
    client
        .publish("encyclopedia/temperature", "hot", QoS::AtLeastOnce, false)
        .await?;
    println!("Published hot to encyclopedia/temperature");

    let mut received = 0;
    while args.count.map_or(true, |c| received < c) {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else { break };
                println!("{} {}", msg.topic, String::from_utf8_lossy(&msg.payload));
                received += 1;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await?;
    Ok(())
}
