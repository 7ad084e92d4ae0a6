//! # midge-client
//!
//! An async MQTT 3.1.1 client for tokio. [`Client::builder`] connects and
//! returns a cloneable [`Client`] handle; one background task per client owns
//! the connection, so there is no event loop to poll. Publishes resolve when
//! their QoS flow completes, subscriptions are `Stream`s, the connection
//! comes back by itself (with subscriptions restored and unacknowledged
//! messages re-sent), and TLS uses rustls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use midge_client::{Client, QoS, TlsOptions};
//!
//! let client = Client::builder("mqtts://user:secret@broker.example.com")
//!     .tls(TlsOptions::new().ca_file("ca.pem"))
//!     .connect()
//!     .await?;
//! let mut temps = client.subscribe("home/+/temperature", QoS::AtLeastOnce).await?;
//! client.publish("home/kitchen/temperature", "21.5", QoS::AtLeastOnce, true).await?;
//! if let Some(msg) = temps.next().await {
//!     println!("{}: {}", msg.topic, String::from_utf8_lossy(&msg.payload));
//! }
//! client.disconnect().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`options`]: [`ClientBuilder`], [`Will`], [`Reconnect`] backoff, the
//!   [`SlowConsumer`] policy.
//! - [`url`]: [`BrokerUrl`], `mqtt://` and `mqtts://` URLs.
//! - [`client`]: the [`Client`] handle, [`Event`]s and [`Status`].
//! - [`subscription`]: [`Subscription`] (a `Stream` of [`Message`]s).
//! - `connection`: the connection task — one `select!` loop, reconnects,
//!   the offline buffer, routing to subscriptions.
//! - `state`: the sans-IO session: packet ids, QoS 1/2 flows in both
//!   directions, re-sending after reconnect, keep-alive, with time passed in.
//! - `subs`: the subscription table inside the task.
//! - `transport`: TCP/TLS, CONNECT/CONNACK, buffered packet I/O.
//! - [`tls`]: [`TlsOptions`] and rustls error wording.
//! - [`error`]: one error enum per operation.
//!
//! # Slow consumers
//! Each subscription has a bounded channel (1,024 messages by default,
//! [`ClientBuilder::subscription_capacity`]). When it is full the client
//! follows its [`SlowConsumer`] policy: by default it stops reading from the
//! broker until there is room (nothing lost, memory bounded, every
//! subscription waits), or it drops the message for that subscription and
//! counts it ([`Subscription::dropped`]).

pub mod client;
mod connection;
pub mod error;
pub mod options;
mod state;
mod subs;
pub mod subscription;
pub mod tls;
mod trace;
mod transport;
pub mod url;

pub use client::{Client, Event, Events, PublishToken, Status};
pub use error::{
    ConnectError, ConnectionError, DisconnectError, PublishError, SubscribeError, TlsError,
    UnsubscribeError,
};
pub use options::{ClientBuilder, Reconnect, SlowConsumer, Will};
pub use subscription::{Message, Subscription};
pub use tls::TlsOptions;
pub use url::BrokerUrl;

pub use bytes::Bytes;
pub use midge_protocol::{
    ByteStr, ConnectReturnCode, PacketId, ProtocolLevel, QoS, SubscribeReturnCode,
};
