//! Subscribes to `TEMPERATURE` and prints each reading that
//! `temperature_pub` sends.
//!
//! ```text
//! cargo run -p midge-client --example temperature_sub -- [mqtt://host:port] [count]
//! ```
//! The broker URL defaults to `$MQTT_URL`, then `mqtt://localhost:1883`; the
//! count (how many readings before exiting) defaults to forever.

use futures::StreamExt;
use midge_client::{Client, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("MQTT_URL").ok())
        .unwrap_or_else(|| "mqtt://localhost:1883".to_string());
    let count: Option<u64> = args.next().map(|c| c.parse()).transpose()?;

    let client = Client::builder(&url).connect().await?;
    let mut readings = client.subscribe("TEMPERATURE", QoS::AtMostOnce).await?;
    println!("Subscribed to TEMPERATURE, waiting for readings");
    let mut received = 0;
    while count.map_or(true, |c| received < c) {
        let Some(msg) = readings.next().await else {
            break;
        };
        println!(
            "Received temperature {} from topic {}",
            String::from_utf8_lossy(&msg.payload),
            msg.topic
        );
        received += 1;
    }
    client.disconnect().await?;
    Ok(())
}
