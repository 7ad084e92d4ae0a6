//! CPU time and resident memory of a process, from Linux's `/proc`.
//!
//! `midge-bench` watches itself, to say when it is the bottleneck, and the
//! broker when given its pid, to report its memory and CPU per delivery.
//! Elsewhere these read as `None` and the report leaves the figures out.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/PID/stat` times: `USER_HZ`, 100 on
/// every Linux architecture that has it fixed in its ABI.
const USER_HZ: u64 = 100;

/// User plus system CPU time of process `pid` (`None`: this process).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces:
    // count fields from the last `)`. utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Resident set size of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A point in time with a process's CPU time then.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    cpu: Option<Duration>,
}

impl Sample {
    /// Samples process `pid` (`None`: this process) now.
    pub fn take(pid: Option<u32>) -> Sample {
        Sample {
            at: Instant::now(),
            cpu: cpu_time(pid),
        }
    }

    /// CPU and wall time from `self` to `later`.
    pub fn usage_to(&self, later: &Sample) -> Usage {
        let wall_s = later.at.duration_since(self.at).as_secs_f64();
        let cpu_s = match (self.cpu, later.cpu) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
            _ => None,
        };
        Usage {
            wall_s,
            cpu_s,
            cores: cpu_s.map(|c| round3(c / wall_s.max(1e-9))),
            ns_per_delivery: None,
        }
    }
}

/// What a process used over a measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Wall-clock seconds of the window.
    pub wall_s: f64,
    /// CPU seconds, user plus system.
    pub cpu_s: Option<f64>,
    /// CPU seconds per wall second: 1.0 is one core busy all the time.
    pub cores: Option<f64>,
    /// CPU nanoseconds per delivery over the window.
    pub ns_per_delivery: Option<f64>,
}

impl Usage {
    /// Fills `ns_per_delivery` for `deliveries` over the window.
    pub fn per_delivery(mut self, deliveries: u64) -> Usage {
        if deliveries > 0 {
            self.ns_per_delivery = self
                .cpu_s
                .map(|c| (c * 1e9 / deliveries as f64 * 10.0).round() / 10.0);
        }
        self
    }
}

/// Rounds to three decimals, for reports.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(cpu_time(None).is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
