//! # Midge
//!
//! A small, fast, self-contained MQTT broker with bundled clients. This facade
//! re-exports the workspace crates and hosts the cross-crate tests and benches.
//!
//! # Layout
//! - [`protocol`]: the MQTT 3.1.1 packet codec and topic helpers.
//! - [`broker`]: the `midge` broker.
//! - [`client`]: the async client library behind `midge-pub` and `midge-sub`.

pub use midge_broker as broker;
pub use midge_client as client;
pub use midge_protocol as protocol;
