//! The `conns` scenario: open many connections at once and time each from
//! its TCP connect to its CONNACK; then, with `--hold`, keep them all open
//! and idle and read how much the broker's RSS grew per connection.
//!
//! Connections are opened `--connect-concurrency` at a time and kept open
//! until the end, so the broker holds all of them at once. They send
//! nothing after CONNECT; keep alive is off by default.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::net::TcpStream;

use super::cli::ConnsArgs;
use super::load::resolve;
use super::procfs::{self, round3, Sample};
use super::progress::print_line;
use super::report::{ns_histogram, BrokerReport, ConnsReport, Percentiles, Report};
use super::wire::Wire;

/// Runs the burst as `args` say.
pub fn run(args: ConnsArgs) -> Result<Report, String> {
    let addr = resolve(&args.target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(drive(args, addr))
}

/// What the burst left: the open connections and how they went.
struct Burst {
    held: Vec<TcpStream>,
    latency: Histogram<u64>,
    failed: usize,
    first_error: Option<String>,
    secs: f64,
}

/// Opens `args.count` connections, `concurrency` at a time, keeping each.
async fn burst(args: &ConnsArgs, addr: SocketAddr, concurrency: usize) -> Burst {
    let keep_alive = args.target.keepalive;
    let show = !args.target.quiet;
    let terminal = std::io::stderr().is_terminal();
    let tag = std::process::id();
    let start = Instant::now();
    let mut attempts = futures::stream::iter(0..args.count)
        .map(|i| async move {
            let t = Instant::now();
            let wire = Wire::connect(addr, &format!("mb-{tag}-c{i}"), keep_alive, 64).await;
            (t.elapsed(), wire)
        })
        .buffer_unordered(concurrency);
    let mut b = Burst {
        held: Vec::with_capacity(args.count),
        latency: ns_histogram(),
        failed: 0,
        first_error: None,
        secs: 0.0,
    };
    let mut next_line = start + Duration::from_secs(1);
    while let Some((took, wire)) = attempts.next().await {
        match wire {
            Ok(wire) => {
                b.latency.saturating_record((took.as_nanos() as u64).max(1));
                b.held.push(wire.stream);
            }
            Err(e) => {
                b.failed += 1;
                b.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        if show && Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            let line = format!(
                "[{:5.1}s] connected {}  failed {}",
                start.elapsed().as_secs_f64(),
                b.held.len(),
                b.failed
            );
            print_line(&line, terminal);
        }
    }
    b.secs = start.elapsed().as_secs_f64().max(1e-9);
    if show && terminal {
        eprintln!();
    }
    b
}

async fn drive(args: ConnsArgs, addr: SocketAddr) -> Result<Report, String> {
    let pid = args.target.broker_pid;
    let concurrency = args.target.connect_concurrency.max(1);
    let hold = Duration::try_from_secs_f64(args.hold).map_err(|_| "--hold: not a duration")?;
    let rss_before = pid.and_then(procfs::rss_kib);
    let (bench0, broker0) = (Sample::take(None), pid.map(|p| Sample::take(Some(p))));
    let burst = burst(&args, addr, concurrency).await;
    let (bench1, broker1) = (Sample::take(None), pid.map(|p| Sample::take(Some(p))));
    let rss_burst = pid.and_then(procfs::rss_kib);
    let rss_held = if hold.is_zero() {
        None
    } else {
        tokio::time::sleep(hold).await;
        pid.and_then(procfs::rss_kib)
    };
    let connected = burst.held.len();
    drop(burst.held);
    let rss_per_conn_bytes = match (rss_before, rss_held) {
        (Some(a), Some(b)) if connected > 0 => {
            Some((b.saturating_sub(a) as f64 * 1024.0 / connected as f64).round())
        }
        _ => None,
    };
    let mut warnings = Vec::new();
    if burst.failed > 0 {
        warnings.push(format!(
            "{} of {} connections failed",
            burst.failed, args.count
        ));
    }
    if !hold.is_zero() && rss_per_conn_bytes.is_none() {
        warnings.push("no broker RSS per connection: give --broker-pid".to_owned());
    }
    let conns = ConnsReport {
        attempted: args.count,
        connected,
        failed: burst.failed,
        first_error: burst.first_error,
        concurrency,
        seconds: round3(burst.secs),
        connects_per_s: (connected as f64 / burst.secs).round(),
        connack_us: Percentiles::of(&burst.latency),
        held_s: args.hold,
        rss_before_kib: rss_before,
        rss_held_kib: rss_held,
        rss_per_conn_bytes,
    };
    let mut report = Report {
        label: args.target.label,
        case: args.target.case,
        goal: args.target.goal,
        scenario: "conns".to_owned(),
        target: addr.to_string(),
        conns: Some(conns),
        broker: pid.map(|pid| BrokerReport {
            pid,
            usage: match (broker0, broker1) {
                (Some(a), Some(b)) => a.usage_to(&b),
                _ => Default::default(),
            },
            rss_start_kib: rss_before,
            rss_peak_kib: rss_burst.max(rss_held),
            rss_end_kib: procfs::rss_kib(pid),
        }),
        bench: bench0.usage_to(&bench1),
        warnings,
        ..Default::default()
    };
    report.judge_bench();
    Ok(report)
}
