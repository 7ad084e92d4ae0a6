//! The command line of `midge-bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// midge-bench: an MQTT 3.1.1 load generator for any broker.
///
/// It speaks MQTT itself over raw sockets with batched reads and writes on
/// one thread, measures deliveries per second, end-to-end latency (a send
/// time travels in each payload), loss, duplicates and ordering, and says
/// when it is itself the bottleneck.
#[derive(Parser, Debug)]
#[command(name = "midge-bench", version)]
pub struct Cli {
    /// The scenario, or a tool for results.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios and result tools.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// P publishers (default 1) to N subscribers (default 100) of one topic.
    Fanout(LoadArgs),
    /// N publisher/subscriber pairs (default 100), each on its own topic.
    P2p(LoadArgs),
    /// N publishers (default 100), each on its own topic, to wildcard
    /// subscribers (default 1).
    Fanin(LoadArgs),
    /// A burst of connections: connects/s and CONNACK latency; with
    /// --hold, then the broker's memory per idle connection.
    Conns(ConnsArgs),
    /// Prints results side by side with ratios.
    Table(TableArgs),
    /// Draws deliveries/s against subscriber count as an SVG file.
    Chart(ChartArgs),
}

/// Where the broker is, and how the run is reported.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Broker host.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(short, long, default_value_t = 1883)]
    pub port: u16,
    /// The broker's process id: its RSS and CPU time are read from
    /// /proc/PID during the run.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// MQTT keep alive of every connection, in seconds; 0 turns it off.
    #[arg(long, default_value_t = 0)]
    pub keepalive: u16,
    /// Connections being set up at once, so the broker's accept queue and
    /// limits are not tripped.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Print the report as one line of JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// The broker's name, recorded in the report (for `table`, `chart`).
    #[arg(long)]
    pub label: Option<String>,
    /// The case name, recorded in the report (for `table`).
    #[arg(long)]
    pub case: Option<String>,
    /// The goal of this case, recorded in the report (for `table`).
    #[arg(long)]
    pub goal: Option<String>,
}

/// A message load: `fanout`, `p2p` or `fanin`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Broker and reporting.
    #[command(flatten)]
    pub target: Target,
    /// Subscriber connections (fanout: default 100; fanin: default 1).
    #[arg(short = 'n', long)]
    pub subscribers: Option<usize>,
    /// Publisher connections (fanout: default 1; fanin: default 100).
    #[arg(short = 'P', long)]
    pub publishers: Option<usize>,
    /// Publisher/subscriber pairs (p2p: default 100).
    #[arg(long)]
    pub pairs: Option<usize>,
    /// QoS of publishes and subscriptions.
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes per message; at least 16, which carry the sequence
    /// number and the send time.
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub size: u32,
    /// Messages per second per publisher. Without it, publishers go as fast
    /// as --max-outstanding allows ("max" mode).
    #[arg(short, long, conflicts_with = "max_outstanding")]
    pub rate: Option<f64>,
    /// Max mode: most deliveries sent and not yet received, shared among
    /// the publishers; 0: unbounded, publishers are held back by TCP alone.
    /// One lagging subscriber may hold more than its share: keep the
    /// window per subscriber under the broker's per-client queue (1,000 in
    /// Mosquitto and Midge) or the loss check counts the broker's drops.
    #[arg(short = 'o', long, default_value_t = 10_000)]
    pub max_outstanding: u64,
    /// Seconds to measure.
    #[arg(short, long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(short, long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Most seconds to wait, after publishing stops, for deliveries still
    /// on their way.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// First topic level; a run id and the publisher index follow.
    #[arg(long, default_value = "midge-bench")]
    pub topic_prefix: String,
}

/// A connection burst.
#[derive(Args, Debug, Clone)]
pub struct ConnsArgs {
    /// Broker and reporting.
    #[command(flatten)]
    pub target: Target,
    /// Connections to open.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub count: usize,
    /// After the burst, hold the connections idle this many seconds, then
    /// read the broker's RSS (needs --broker-pid).
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
}

/// `table`.
#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    /// Reports: JSON lines or a JSON array, as `--json` prints them.
    pub results: PathBuf,
    /// The label the others are compared with (default: the first seen).
    #[arg(long)]
    pub baseline: Option<String>,
}

/// `chart`.
#[derive(Args, Debug, Clone)]
pub struct ChartArgs {
    /// Reports: JSON lines or a JSON array, as `--json` prints them.
    pub results: PathBuf,
    /// The SVG file to write.
    pub out: PathBuf,
    /// A line under the title: the machine, say.
    #[arg(long)]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
