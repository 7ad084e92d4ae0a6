//! What a run found: the [`Report`] printed as text or JSON, and read back
//! by `midge-bench table` and `midge-bench chart`.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::procfs::Usage;

/// Above this share of one core, `midge-bench` itself may be what limits
/// the figures.
pub const BENCH_BOUND_CORES: f64 = 0.85;

/// One run of one scenario.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// The broker's name, from `--label` (`midge`, `mosquitto`).
    pub label: Option<String>,
    /// The case name, from `--case`.
    pub case: Option<String>,
    /// The goal for this case, from `--goal`: carried to the table.
    pub goal: Option<String>,
    /// `fanout`, `p2p`, `fanin` or `conns`.
    pub scenario: String,
    /// `host:port`.
    pub target: String,
    /// Message load figures (`fanout`, `p2p`, `fanin`).
    pub load: Option<LoadReport>,
    /// Connection figures (`conns`).
    pub conns: Option<ConnsReport>,
    /// The broker process over the measured window, with `--broker-pid`.
    pub broker: Option<BrokerReport>,
    /// `midge-bench` itself over the measured window.
    pub bench: Usage,
    /// Whether `midge-bench` used most of its core: then the broker may be
    /// faster than the figures say.
    pub bench_bound: bool,
    /// Anything that makes the figures suspect.
    pub warnings: Vec<String>,
}

/// Figures of a message load.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// `max` (bounded outstanding deliveries) or `rate`.
    pub mode: String,
    /// Messages per second per publisher, in `rate` mode.
    pub rate_per_publisher: Option<f64>,
    /// Most deliveries outstanding at once in `max` mode; 0 is unbounded.
    pub max_outstanding: u64,
    /// Seconds measured (after the warm-up).
    pub seconds: f64,
    /// Messages published in the measured window.
    pub published: u64,
    /// Deliveries received in the measured window.
    pub delivered: u64,
    /// Messages published per second.
    pub publish_per_s: f64,
    /// Deliveries received per second.
    pub deliveries_per_s: f64,
    /// End-to-end latency of messages sent in the measured window, from
    /// the send time in the payload to the read that brought them.
    pub latency_us: Option<Percentiles>,
    /// Deliveries the whole run should have made.
    pub expected: u64,
    /// Distinct deliveries missing at the end of the run.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Deliveries that arrived after a later message of their publisher.
    pub reordered: u64,
    /// Connections the broker closed during the run.
    pub disconnects: u64,
    /// Times a publisher waited a second with no delivery and wrote its
    /// outstanding messages off as lost.
    pub stalls: u64,
}

/// Figures of a connection burst.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConnsReport {
    /// Connections tried.
    pub attempted: usize,
    /// Connections that got an accepting CONNACK.
    pub connected: usize,
    /// Connections that failed, with the first error.
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Connections set up at once.
    pub concurrency: usize,
    /// Seconds from the first connect to the last CONNACK.
    pub seconds: f64,
    /// Accepted connections per second.
    pub connects_per_s: f64,
    /// From the TCP connect to the CONNACK.
    pub connack_us: Option<Percentiles>,
    /// Seconds the connections were then held idle.
    pub held_s: f64,
    /// Broker RSS before the burst, KiB.
    pub rss_before_kib: Option<u64>,
    /// Broker RSS after holding the connections, KiB.
    pub rss_held_kib: Option<u64>,
    /// Broker RSS growth per held connection, bytes.
    pub rss_per_conn_bytes: Option<f64>,
}

/// The broker process over the measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BrokerReport {
    /// Its pid.
    pub pid: u32,
    /// CPU use.
    pub usage: Usage,
    /// RSS at the start of the window, KiB.
    pub rss_start_kib: Option<u64>,
    /// Highest RSS seen (sampled once a second), KiB.
    pub rss_peak_kib: Option<u64>,
    /// RSS at the end of the run, KiB.
    pub rss_end_kib: Option<u64>,
}

/// Percentiles of a histogram of nanoseconds, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Summarises `h` (nanoseconds); `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        Some(Percentiles {
            count: h.len(),
            min: us(h.min()),
            mean: (h.mean() / 100.0).round() / 10.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// A histogram of nanoseconds from 1 ns to 100 s at three significant
/// digits.
pub fn ns_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static histogram bounds are valid")
}

impl Report {
    /// Sets `bench_bound` and its warning from the bench's CPU use.
    pub fn judge_bench(&mut self) {
        let Some(cores) = self.bench.cores else {
            return;
        };
        if cores >= BENCH_BOUND_CORES {
            self.bench_bound = true;
            self.warnings.push(format!(
                "midge-bench used {:.0}% of a core: it may be the bottleneck, \
                 and the broker faster than these figures",
                cores * 100.0
            ));
        }
    }

    /// The report as text, for a person.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let name = match (&self.label, &self.case) {
            (Some(l), Some(c)) => format!(" {c} on {l}"),
            (Some(x), None) | (None, Some(x)) => format!(" {x}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(s, "midge-bench {}{name} ({})", self.scenario, self.target);
        if let Some(l) = &self.load {
            write_load(&mut s, l);
        }
        if let Some(c) = &self.conns {
            write_conns(&mut s, c);
        }
        if let Some(b) = &self.broker {
            let _ = writeln!(
                s,
                "  broker     pid {}: {}, RSS start {} / peak {} / end {}",
                b.pid,
                usage_text(&b.usage),
                kib_text(b.rss_start_kib),
                kib_text(b.rss_peak_kib),
                kib_text(b.rss_end_kib)
            );
        }
        let _ = writeln!(s, "  bench      {}", usage_text(&self.bench));
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        s
    }
}

fn write_load(s: &mut String, l: &LoadReport) {
    let mode = match l.rate_per_publisher {
        Some(r) => format!("{r} msg/s per publisher"),
        None if l.max_outstanding == 0 => "max, unbounded".to_owned(),
        None => format!("max, {} outstanding", l.max_outstanding),
    };
    let _ = writeln!(
        s,
        "  load       {} -> {}, QoS {}, {} B, {mode}, {:.1} s measured",
        l.publishers, l.subscribers, l.qos, l.payload_bytes, l.seconds
    );
    let _ = writeln!(
        s,
        "  throughput {} deliveries/s, {} publishes/s",
        si(l.deliveries_per_s),
        si(l.publish_per_s)
    );
    if let Some(p) = &l.latency_us {
        let _ = writeln!(s, "  latency    {}", percentiles_text(p));
    }
    let _ = writeln!(
        s,
        "  checks     expected {}, lost {}, duplicates {}, reordered {}, disconnects {}, stalls {}",
        l.expected, l.lost, l.duplicates, l.reordered, l.disconnects, l.stalls
    );
}

fn write_conns(s: &mut String, c: &ConnsReport) {
    let _ = writeln!(
        s,
        "  conns      {} of {} connected ({} failed) in {:.2} s, concurrency {}: {} connects/s",
        c.connected,
        c.attempted,
        c.failed,
        c.seconds,
        c.concurrency,
        si(c.connects_per_s)
    );
    if let Some(p) = &c.connack_us {
        let _ = writeln!(s, "  CONNACK    {}", percentiles_text(p));
    }
    if let Some(e) = &c.first_error {
        let _ = writeln!(s, "  first error: {e}");
    }
    if c.held_s > 0.0 {
        let per = c
            .rss_per_conn_bytes
            .map_or("?".to_owned(), |b| format!("{b:.0} B"));
        let _ = writeln!(
            s,
            "  idle hold  {:.1} s: broker RSS {} -> {}, {per} per connection",
            c.held_s,
            kib_text(c.rss_before_kib),
            kib_text(c.rss_held_kib)
        );
    }
}

/// `p50 1.2 ms  p99 ...`.
pub fn percentiles_text(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        micros(p.p50),
        micros(p.p90),
        micros(p.p99),
        micros(p.p999),
        micros(p.max),
        p.count
    )
}

fn usage_text(u: &Usage) -> String {
    match (u.cores, u.ns_per_delivery) {
        (Some(c), Some(ns)) => format!("{:.0}% of a core, {ns:.0} ns CPU per delivery", c * 100.0),
        (Some(c), None) => format!("{:.0}% of a core", c * 100.0),
        _ => "CPU unknown".to_owned(),
    }
}

fn kib_text(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| {
        format!("{:.1} MB", k as f64 * 1024.0 / 1e6)
    })
}

/// A duration in microseconds, in the unit that reads best.
pub fn micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}

/// `1.23M`, `45.6k`, `789`.
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Reads reports from a file of JSON values: one report per line (as
/// `compare.sh` appends them), concatenated, or a JSON array of them.
pub fn read_reports(path: &Path) -> Result<Vec<Report>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reports = Vec::new();
    for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| format!("{}: {e}", path.display()))?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        for item in items {
            let report =
                serde_json::from_value(item).map_err(|e| format!("{}: {e}", path.display()))?;
            reports.push(report);
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_in_their_best_unit() {
        assert_eq!(si(5_500_000.0), "5.50M");
        assert_eq!(si(333_000.0), "333.0k");
        assert_eq!(micros(6200.0), "6.20 ms");
        assert_eq!(micros(327.0), "327 us");
    }

    #[test]
    fn reports_read_back_from_lines_and_arrays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        let one = serde_json::to_string(&Report {
            scenario: "fanout".into(),
            ..Default::default()
        })
        .expect("json");
        std::fs::write(&path, format!("{one}\n{one}\n[{one},{one}]")).expect("write");
        assert_eq!(read_reports(&path).expect("reports").len(), 4);
    }
}
