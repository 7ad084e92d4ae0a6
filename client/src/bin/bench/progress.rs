//! The live progress line on stderr, once a second, and the broker's
//! peak RSS, sampled at the same time.
//!
//! On a terminal the line rewrites itself; otherwise (a log file) each
//! second gets a line of its own.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::peer::Shared;
use super::procfs;
use super::report::{micros, si};

/// What the progress task watches besides the load.
pub struct Watch {
    /// The broker, when known.
    pub broker_pid: Option<u32>,
    /// Print the line (else only sample).
    pub show: bool,
    /// Highest broker RSS seen, KiB.
    pub rss_peak_kib: Rc<Cell<Option<u64>>>,
}

impl Watch {
    /// Records one RSS sample of the broker; returns it.
    pub fn sample_rss(&self) -> Option<u64> {
        let rss = procfs::rss_kib(self.broker_pid?)?;
        let peak = self.rss_peak_kib.get().map_or(rss, |p| p.max(rss));
        self.rss_peak_kib.set(Some(peak));
        Some(rss)
    }
}

/// Prints a line a second until `stop` changes.
pub async fn run(shared: Rc<Shared>, watch: Watch, mut stop: watch::Receiver<bool>) {
    let start = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    let mut last = (Instant::now(), shared.published(), shared.delivered.get());
    let mut last_cpu = procfs::cpu_time(None);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let rss = watch.sample_rss();
        if !watch.show {
            continue;
        }
        let now = (Instant::now(), shared.published(), shared.delivered.get());
        let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-9);
        let cpu = procfs::cpu_time(None);
        let busy = match (last_cpu, cpu) {
            (Some(a), Some(b)) => format!("{:3.0}%", (b - a).as_secs_f64() / secs * 100.0),
            _ => "  ?".to_owned(),
        };
        let p99 = {
            let h = shared.latency.borrow();
            if h.is_empty() {
                "-".to_owned()
            } else {
                micros(h.value_at_quantile(0.99) as f64 / 1000.0)
            }
        };
        let mut line = format!(
            "[{:5.1}s] pub {:>7}/s  recv {:>7}/s  outstanding {:>6}  p99 {p99}  bench cpu {busy}",
            start.elapsed().as_secs_f64(),
            si((now.1 - last.1) as f64 / secs),
            si((now.2 - last.2) as f64 / secs),
            shared.outstanding(),
        );
        if let Some(kib) = rss {
            line.push_str(&format!("  broker rss {:.1} MB", kib as f64 * 1024.0 / 1e6));
        }
        let disconnects = shared.disconnects.get();
        if disconnects > 0 {
            line.push_str(&format!("  disconnects {disconnects}"));
        }
        print_line(&line, terminal);
        last = now;
        last_cpu = cpu;
    }
    if watch.show && terminal {
        eprintln!();
    }
}

/// Prints a progress line: in place on a terminal.
pub fn print_line(line: &str, terminal: bool) {
    let mut err = std::io::stderr().lock();
    let _ = if terminal {
        write!(err, "\r{line}\x1b[K")
    } else {
        writeln!(err, "{line}")
    };
    let _ = err.flush();
}
