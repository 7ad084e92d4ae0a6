//! [`LoginThrottle`]: slows down repeated login failures from one address,
//! in a table of bounded size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Slows down repeated login failures from one address.
///
/// Each failure from an address makes the next refusal wait longer: 100 ms,
/// 200 ms, 400 ms, ... up to 5 s. An address is forgotten after 10 minutes
/// without failures. Successes do not reset it: they cost nothing, and
/// an attacker holding one valid account must not be able to clear its
/// record between guesses. The table holds at most `capacity`
/// addresses; when full, the address whose last failure is oldest makes
/// room, so a flood of addresses costs bounded memory. The caller sleeps
/// for the returned delay before it sends the refusal.
#[derive(Debug)]
pub struct LoginThrottle {
    capacity: usize,
    table: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// First delay after a failure.
const THROTTLE_BASE: Duration = Duration::from_millis(100);
/// The longest delay.
const THROTTLE_MAX: Duration = Duration::from_secs(5);
/// How long an address is remembered after its last failure.
const THROTTLE_FORGET: Duration = Duration::from_secs(600);

impl Default for LoginThrottle {
    /// Room for 4096 addresses.
    fn default() -> LoginThrottle {
        LoginThrottle::new(4096)
    }
}

impl LoginThrottle {
    /// A throttle remembering at most `capacity` addresses (at least 1).
    pub fn new(capacity: usize) -> LoginThrottle {
        LoginThrottle {
            capacity: capacity.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failed login from `addr` at `now`; returns how long to
    /// wait before answering it.
    pub fn on_failure(&self, addr: IpAddr, now: Instant) -> Duration {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |f: &Failures| now.saturating_duration_since(f.last) < THROTTLE_FORGET;
        if !table.contains_key(&addr) && table.len() >= self.capacity {
            table.retain(|_, f| fresh(f));
            if table.len() >= self.capacity {
                let oldest = table.iter().min_by_key(|(_, f)| f.last).map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(addr).or_insert(Failures {
            count: 0,
            last: now,
        });
        if !fresh(entry) {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        delay_for(entry.count)
    }

    /// Number of addresses remembered.
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 100 ms doubled for each earlier failure, at most 5 s.
fn delay_for(count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(16);
    THROTTLE_BASE
        .saturating_mul(1u32 << doublings)
        .min(THROTTLE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_delays_grow_and_are_capped() {
        let t = LoginThrottle::new(8);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        let delays: Vec<_> = (0..10).map(|_| t.on_failure(ip, now)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[2], Duration::from_millis(400));
        assert_eq!(delays[9], THROTTLE_MAX);
    }

    #[test]
    fn throttle_forgets_old_failures() {
        let t = LoginThrottle::new(8);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        t.on_failure(ip, now);
        t.on_failure(ip, now);
        let later = now + THROTTLE_FORGET + Duration::from_secs(1);
        assert_eq!(t.on_failure(ip, later), Duration::from_millis(100));
    }

    #[test]
    fn throttle_table_is_bounded() {
        let t = LoginThrottle::new(16);
        let now = Instant::now();
        for i in 0..1000u32 {
            let ip: IpAddr = std::net::Ipv4Addr::from(i).into();
            t.on_failure(ip, now + Duration::from_millis(u64::from(i)));
            assert!(t.len() <= 16);
        }
        // The most recent addresses are the ones kept.
        let recent: IpAddr = std::net::Ipv4Addr::from(999u32).into();
        assert_eq!(
            t.on_failure(recent, now + Duration::from_secs(1)),
            Duration::from_millis(200)
        );
    }
}
