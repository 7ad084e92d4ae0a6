//! Publishes a random temperature between 20.0 and 21.0 to `TEMPERATURE`
//! once a second, like the first program in many MQTT tutorials.
//!
//! ```text
//! cargo run -p midge-client --example temperature_pub -- [mqtt://host:port] [count]
//! ```
//! The broker URL defaults to `$MQTT_URL`, then `mqtt://localhost:1883`; the
//! count (how many readings before exiting) defaults to forever.

use std::time::Duration;

use midge_client::{Client, QoS};
use rand::Rng;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("MQTT_URL").ok())
        .unwrap_or_else(|| "mqtt://localhost:1883".to_string());
    let count: Option<u64> = args.next().map(|c| c.parse()).transpose()?;

    let client = Client::builder(&url).connect().await?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut sent = 0;
    while count.map_or(true, |c| sent < c) {
        ticker.tick().await;
        let reading: f64 = rand::rng().random_range(20.0..21.0);
        client
            .publish("TEMPERATURE", reading.to_string(), QoS::AtMostOnce, false)
            .await?;
        println!("Just published {reading} to topic TEMPERATURE");
        sent += 1;
    }
    client.disconnect().await?;
    Ok(())
}
