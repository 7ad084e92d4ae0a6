//! [`Plan`]: who publishes to whom, how fast, for how long.
//!
//! | scenario | publishers | subscribers | publisher `i` topic | subscriber `j` filter |
//! |----------|------------|-------------|---------------------|-----------------------|
//! | fanout   | P (1)      | N (100)     | `ROOT/all`          | `ROOT/all`            |
//! | p2p      | N (100)    | N           | `ROOT/i`            | `ROOT/j`              |
//! | fanin    | N (100)    | S (1)       | `ROOT/i`            | `ROOT/+`              |
//!
//! `ROOT` is the topic prefix and a run id, so a run never sees another's
//! messages.

use std::ops::Range;
use std::time::Duration;

use midge_protocol::QoS;

use super::cli::LoadArgs;

/// The shape of a message load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Publishers to many subscribers of one topic.
    Fanout,
    /// Publisher `i` to subscriber `i`.
    P2p,
    /// Many publishers to wildcard subscribers.
    Fanin,
}

impl Scenario {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::P2p => "p2p",
            Scenario::Fanin => "fanin",
        }
    }
}

/// How fast publishers go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as the window of outstanding deliveries allows: each
    /// publisher's share, in deliveries; `None` is unbounded.
    Max(Option<u64>),
    /// Messages per second per publisher.
    Rate(f64),
}

/// A message load, resolved from the command line.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The shape.
    pub scenario: Scenario,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// QoS of publishes and subscriptions.
    pub qos: QoS,
    /// Payload bytes.
    pub payload: usize,
    /// Pace.
    pub pace: Pace,
    /// `--max-outstanding` as given.
    pub max_outstanding: u64,
    /// Load before measuring.
    pub warmup: Duration,
    /// Load measured.
    pub duration: Duration,
    /// Most time to wait for deliveries after publishing stops.
    pub drain: Duration,
    /// Topic prefix and run id.
    pub root: String,
}

impl Plan {
    /// Resolves the counts and pace of `scenario` from `args`.
    pub fn new(scenario: Scenario, args: &LoadArgs) -> Result<Plan, String> {
        let (publishers, subscribers) = match scenario {
            Scenario::Fanout => (
                args.publishers.unwrap_or(1),
                args.subscribers.unwrap_or(100),
            ),
            Scenario::Fanin => (
                args.publishers.unwrap_or(100),
                args.subscribers.unwrap_or(1),
            ),
            Scenario::P2p => {
                if args.publishers.is_some() || args.subscribers.is_some() {
                    return Err("p2p takes --pairs, not --publishers or --subscribers".into());
                }
                let pairs = args.pairs.unwrap_or(100);
                (pairs, pairs)
            }
        };
        if scenario != Scenario::P2p && args.pairs.is_some() {
            return Err(format!("--pairs is for p2p, not {}", scenario.name()));
        }
        if publishers == 0 || subscribers == 0 {
            return Err("publishers and subscribers must be at least 1".into());
        }
        let secs = |name: &str, s: f64| {
            Duration::try_from_secs_f64(s).map_err(|_| format!("--{name} {s}: not a duration"))
        };
        let mut plan = Plan {
            scenario,
            publishers,
            subscribers,
            qos: QoS::from_u8(args.qos).ok_or("QoS must be 0, 1 or 2")?,
            payload: args.size as usize,
            pace: Pace::Max(None),
            max_outstanding: args.max_outstanding,
            warmup: secs("warmup", args.warmup)?,
            duration: secs("duration", args.duration)?,
            drain: secs("drain", args.drain)?,
            root: format!("{}/{}", args.topic_prefix, run_id()),
        };
        if plan.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        plan.pace = match args.rate {
            Some(r) if r > 0.0 && r.is_finite() => Pace::Rate(r),
            Some(r) => return Err(format!("--rate {r}: must be more than 0")),
            None if args.max_outstanding == 0 => Pace::Max(None),
            // Each publisher may always have one message out.
            None => Pace::Max(Some(
                (args.max_outstanding / publishers as u64).max(plan.recipients()),
            )),
        };
        Ok(plan)
    }

    /// Deliveries one message makes.
    pub fn recipients(&self) -> u64 {
        match self.scenario {
            Scenario::Fanout | Scenario::Fanin => self.subscribers as u64,
            Scenario::P2p => 1,
        }
    }

    /// The topic publisher `i` publishes to.
    pub fn topic(&self, i: usize) -> String {
        match self.scenario {
            Scenario::Fanout => format!("{}/all", self.root),
            Scenario::P2p | Scenario::Fanin => format!("{}/{i}", self.root),
        }
    }

    /// The filter subscriber `j` subscribes to.
    pub fn filter(&self, j: usize) -> String {
        match self.scenario {
            Scenario::Fanout => format!("{}/all", self.root),
            Scenario::P2p => format!("{}/{j}", self.root),
            Scenario::Fanin => format!("{}/+", self.root),
        }
    }

    /// The publishers subscriber `j` hears from.
    pub fn sources(&self, j: usize) -> Range<usize> {
        match self.scenario {
            Scenario::Fanout | Scenario::Fanin => 0..self.publishers,
            Scenario::P2p => j..j + 1,
        }
    }

    /// Read buffer per subscriber: big enough to take a burst in one read,
    /// small enough that a thousand of them stay modest.
    pub fn subscriber_read_buffer(&self) -> usize {
        (8 << 20) / self.subscribers.clamp(8, 512)
    }
}

/// An id unique enough to keep runs apart on one broker.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::super::cli::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn plan(scenario: Scenario, args: &[&str]) -> Result<Plan, String> {
        let argv = ["midge-bench", scenario.name()]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::parse_from(argv).command {
            Command::Fanout(a) | Command::P2p(a) | Command::Fanin(a) => Plan::new(scenario, &a),
            _ => unreachable!("a load scenario"),
        }
    }

    #[test]
    fn fanout_shares_the_window_among_its_publishers() {
        let p = plan(Scenario::Fanout, &["-n", "1000", "-P", "2"]).expect("plan");
        assert_eq!(p.recipients(), 1000);
        assert_eq!(p.pace, Pace::Max(Some(5000)));
        assert_eq!(p.topic(1), p.filter(7));
    }

    #[test]
    fn a_window_smaller_than_one_message_still_lets_one_out() {
        let p = plan(Scenario::Fanout, &["-n", "1000", "-o", "10"]).expect("plan");
        assert_eq!(p.pace, Pace::Max(Some(1000)));
    }

    #[test]
    fn p2p_pairs_publisher_i_with_subscriber_i() {
        let p = plan(Scenario::P2p, &["--pairs", "10", "--rate", "1"]).expect("plan");
        assert_eq!(p.sources(3), 3..4);
        assert_eq!(p.topic(3), p.filter(3));
        assert_eq!(p.pace, Pace::Rate(1.0));
        assert!(plan(Scenario::P2p, &["-n", "10"]).is_err());
    }

    #[test]
    fn fanin_subscribes_with_a_wildcard_and_may_be_unbounded() {
        let p = plan(Scenario::Fanin, &["-o", "0"]).expect("plan");
        assert_eq!((p.publishers, p.subscribers), (100, 1));
        assert_eq!(p.pace, Pace::Max(None));
        assert!(midge_protocol::topic::matches(&p.filter(0), &p.topic(42)));
    }
}
