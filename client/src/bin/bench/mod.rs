//! The engine of `midge-bench`.
//!
//! # Layout
//! - [`cli`]: the command line.
//! - [`wire`]: one raw MQTT connection; setup through the protocol codec,
//!   publishes from a template and deliveries read in place.
//! - [`plan`]: a load's topology and pace.
//! - [`peer`]: the publisher and subscriber tasks and their shared
//!   counters.
//! - [`track`]: loss, duplicate and ordering checks per sequence.
//! - [`load`]: `fanout`, `p2p` and `fanin` from start to report.
//! - [`conns`]: the connection burst and idle hold.
//! - [`progress`]: the live line on stderr.
//! - [`procfs`]: CPU time and RSS from `/proc`.
//! - [`report`]: the [`Report`](report::Report), as text and JSON.
//! - [`table`] and [`chart`]: results side by side, and as an SVG chart.

pub mod chart;
pub mod cli;
pub mod conns;
pub mod load;
pub mod peer;
pub mod plan;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod table;
pub mod track;
pub mod wire;
