//! Keep-alive deadlines without a timer per connection [MQTT-3.1.2-24].
//!
//! Each connection publishes its session's deadline (one and a half times
//! the keep alive after the last packet it read) into its [`ConnSignal`] as
//! milliseconds since a process-wide epoch; one sweeper task walks the live
//! connections every [`SWEEP`] and wakes those past their deadline through
//! their mailbox's `Notify`. The woken connection asks its session whether
//! the deadline has really passed (packets may have come since), so the
//! session stays the one judge and this module only decides when to ask.
//!
//! A timer per connection would cost every idle connection a boxed `Sleep`
//! (about 150 bytes) and the runtime a timer-wheel entry each; a late
//! answer by at most one sweep is well inside what the rule asks.
//!
//! [`ConnSignal`]: crate::registry::ConnSignal

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// How often the sweeper looks: the most a keep-alive close can be late.
pub const SWEEP: Duration = Duration::from_millis(250);

/// No deadline (keep alive 0).
const NONE: u64 = u64::MAX;

/// Now, on tokio's clock (so tests with a paused clock drive keep alive).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The instant deadlines are counted from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(now)
}

/// `t` as milliseconds since [`epoch`], rounded up (so a deadline is never
/// seen as passed early).
fn millis(t: Instant) -> u64 {
    let d = t.saturating_duration_since(epoch());
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
    u64::try_from(ms).unwrap_or(NONE - 1)
}

/// A connection's keep-alive deadline, readable by the sweeper.
#[derive(Debug)]
pub struct Deadline(AtomicU64);

impl Default for Deadline {
    fn default() -> Self {
        Deadline(AtomicU64::new(NONE))
    }
}

impl Deadline {
    /// Sets the deadline (`None`: there is none).
    pub fn set(&self, deadline: Option<Instant>) {
        self.0
            .store(deadline.map_or(NONE, millis), Ordering::Relaxed);
    }

    /// Whether the deadline is at or before `now_ms`.
    pub fn passed(&self, now_ms: u64) -> bool {
        self.0.load(Ordering::Relaxed) <= now_ms
    }
}

/// The sweeper: until `shutdown`, every [`SWEEP`] wakes the connections
/// past their deadline.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => shared.registry.wake_expired(millis(now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_passes_at_its_millisecond_and_not_before() {
        let d = Deadline::default();
        assert!(!d.passed(u64::MAX - 1), "none never passes");
        let at = epoch() + Duration::from_micros(2_500);
        d.set(Some(at));
        // 2.5 ms rounds up to 3: not passed at 2.
        assert!(!d.passed(2));
        assert!(d.passed(3));
        d.set(None);
        assert!(!d.passed(1_000_000));
    }
}
