//! A message load from start to report: connect and subscribe (ramped),
//! start the publishers, warm up, measure, stop publishing, drain, then
//! count what arrived.
//!
//! Everything runs on one thread: a `current_thread` runtime and a
//! `LocalSet`, so the load generator holds one core at most and its own
//! CPU time tells whether it was the bottleneck.

use std::cell::Cell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::{JoinHandle, LocalSet};

use super::cli::{LoadArgs, Target};
use super::peer::{self, Shared, PUBLISHER_READ_BUFFER};
use super::plan::{Pace, Plan, Scenario};
use super::procfs::{self, round3, Sample};
use super::progress::{self, Watch};
use super::report::{BrokerReport, LoadReport, Percentiles, Report};
use super::track::Track;
use super::wire::{PublishTemplate, Wire};

/// Runs `scenario` as `args` say.
pub fn run(scenario: Scenario, args: LoadArgs) -> Result<Report, String> {
    let plan = Plan::new(scenario, &args)?;
    let addr = resolve(&args.target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    LocalSet::new().block_on(&runtime, drive(plan, addr, args.target))
}

/// The broker's address.
pub fn resolve(target: &Target) -> Result<SocketAddr, String> {
    (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}:{}: {e}", target.host, target.port))?
        .next()
        .ok_or_else(|| format!("{}:{}: no address", target.host, target.port))
}

/// The counters at one instant: the start or the end of the measured
/// window.
struct Snapshot {
    at: Instant,
    published: u64,
    delivered: u64,
    bench: Sample,
    broker: Option<Sample>,
}

impl Snapshot {
    fn take(shared: &Shared, broker_pid: Option<u32>) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            published: shared.published(),
            delivered: shared.delivered.get(),
            bench: Sample::take(None),
            broker: broker_pid.map(|pid| Sample::take(Some(pid))),
        }
    }
}

/// The stop signals: publishing first, then everything.
struct Stops {
    publishing: watch::Sender<bool>,
    all: watch::Sender<bool>,
}

async fn drive(plan: Plan, addr: SocketAddr, target: Target) -> Result<Report, String> {
    let shared = Rc::new(Shared::new(plan));
    let stops = Stops {
        publishing: watch::channel(false).0,
        all: watch::channel(false).0,
    };
    let subscribers = start_subscribers(&shared, addr, &target, &stops.all.subscribe()).await?;
    let mut tasks = start_publishers(&shared, addr, &target, &stops).await?;
    let rss_peak = Rc::new(Cell::new(None));
    let watch = |show| Watch {
        broker_pid: target.broker_pid,
        show,
        rss_peak_kib: rss_peak.clone(),
    };
    let progress = progress::run(shared.clone(), watch(!target.quiet), stops.all.subscribe());
    tasks.push(tokio::task::spawn_local(progress));

    tokio::time::sleep(shared.plan.warmup).await;
    shared.latency.borrow_mut().reset();
    shared.measure_from_ns.set(shared.now_ns());
    let rss_start = watch(false).sample_rss();
    let first = Snapshot::take(&shared, target.broker_pid);
    tokio::time::sleep(shared.plan.duration).await;
    let last = Snapshot::take(&shared, target.broker_pid);
    shared.measure_until_ns.set(shared.now_ns());

    let tracks = stop(&shared, &stops, tasks, subscribers).await?;
    let delivered = last.delivered - first.delivered;
    let secs = last.at.duration_since(first.at).as_secs_f64();
    let load = load_report(
        &shared,
        &tracks,
        secs,
        last.published - first.published,
        delivered,
    );
    let broker = target.broker_pid.map(|pid| BrokerReport {
        pid,
        usage: match (&first.broker, &last.broker) {
            (Some(a), Some(b)) => a.usage_to(b).per_delivery(delivered),
            _ => Default::default(),
        },
        rss_start_kib: rss_start,
        rss_peak_kib: rss_peak.get(),
        rss_end_kib: procfs::rss_kib(pid),
    });
    let mut report = Report {
        label: target.label,
        case: target.case,
        goal: target.goal,
        scenario: shared.plan.scenario.name().to_owned(),
        target: addr.to_string(),
        bench: first.bench.usage_to(&last.bench).per_delivery(delivered),
        broker,
        warnings: load_warnings(&shared, &load),
        load: Some(load),
        ..Default::default()
    };
    report.judge_bench();
    Ok(report)
}

/// Stops publishing, waits for the deliveries still on their way (at most
/// `--drain`), stops every task and collects the subscribers' tracks.
async fn stop(
    shared: &Shared,
    stops: &Stops,
    tasks: Vec<JoinHandle<()>>,
    subscribers: Vec<(usize, JoinHandle<Vec<Track>>)>,
) -> Result<Vec<(usize, Vec<Track>)>, String> {
    stops.publishing.send_replace(true);
    let drain_until = Instant::now() + shared.plan.drain;
    while shared.outstanding() > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stops.all.send_replace(true);
    for task in tasks {
        let _ = task.await;
    }
    let mut tracks = Vec::with_capacity(subscribers.len());
    for (j, task) in subscribers {
        let t = task.await.map_err(|e| format!("subscriber {j}: {e}"))?;
        tracks.push((j, t));
    }
    Ok(tracks)
}

/// Connects and subscribes every subscriber, a few at a time, starting
/// each one's task as soon as its SUBACK is in.
async fn start_subscribers(
    shared: &Rc<Shared>,
    addr: SocketAddr,
    target: &Target,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<(usize, JoinHandle<Vec<Track>>)>, String> {
    let plan = &shared.plan;
    let keep_alive = target.keepalive;
    let read_buffer = plan.subscriber_read_buffer();
    let id = |j| format!("mb-{}-s{j}", plan.root.rsplit('/').next().unwrap_or("run"));
    let mut ready = futures::stream::iter(0..plan.subscribers)
        .map(|j| async move {
            let mut wire = Wire::connect(addr, &id(j), keep_alive, read_buffer).await?;
            wire.subscribe(&plan.filter(j), plan.qos).await?;
            Ok::<_, super::wire::WireError>((j, wire))
        })
        .buffer_unordered(target.connect_concurrency.max(1));
    let mut tasks = Vec::with_capacity(plan.subscribers);
    while let Some(result) = ready.next().await {
        let (j, wire) = result.map_err(|e| format!("subscriber: {e}"))?;
        let task = peer::subscriber(wire, j, plan.sources(j), shared.clone(), stop.clone());
        tasks.push((j, tokio::task::spawn_local(task)));
    }
    Ok(tasks)
}

/// Connects every publisher, a few at a time, then starts them all at
/// once.
async fn start_publishers(
    shared: &Rc<Shared>,
    addr: SocketAddr,
    target: &Target,
    stops: &Stops,
) -> Result<Vec<JoinHandle<()>>, String> {
    let plan = &shared.plan;
    let keep_alive = target.keepalive;
    let id = |i| format!("mb-{}-p{i}", plan.root.rsplit('/').next().unwrap_or("run"));
    let mut wires: Vec<(usize, Wire)> = futures::stream::iter(0..plan.publishers)
        .map(|i| async move {
            let wire = Wire::connect(addr, &id(i), keep_alive, PUBLISHER_READ_BUFFER).await;
            wire.map(|w| (i, w))
                .map_err(|e| format!("publisher {i}: {e}"))
        })
        .buffer_unordered(target.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    wires.sort_by_key(|(i, _)| *i);
    let mut tasks = Vec::with_capacity(wires.len());
    for (i, wire) in wires {
        let template = PublishTemplate::new(&plan.topic(i), plan.qos, plan.payload)
            .map_err(|e| e.to_string())?;
        let run = peer::publisher(
            wire,
            i,
            shared.clone(),
            template,
            stops.publishing.subscribe(),
            stops.all.subscribe(),
        );
        tasks.push(tokio::task::spawn_local(run));
    }
    Ok(tasks)
}

/// Throughput, latency and the checks.
fn load_report(
    shared: &Shared,
    tracks: &[(usize, Vec<Track>)],
    secs: f64,
    published: u64,
    delivered: u64,
) -> LoadReport {
    let plan = &shared.plan;
    let sent: Vec<u64> = shared.pubs.iter().map(|p| p.sent.get()).collect();
    let (mut expected, mut unique, mut duplicates, mut reordered) = (0, 0, 0, 0);
    for (j, subscriber) in tracks {
        let sources = plan.sources(*j);
        expected += sent[sources].iter().sum::<u64>();
        for t in subscriber {
            unique += t.unique();
            duplicates += t.duplicates;
            reordered += t.reordered;
        }
    }
    // A subscriber whose task failed left no tracks: its deliveries count
    // as lost.
    let missing: u64 = (0..plan.subscribers)
        .filter(|j| !tracks.iter().any(|(k, _)| k == j))
        .map(|j| sent[plan.sources(j)].iter().sum::<u64>())
        .sum();
    expected += missing;
    let secs = secs.max(1e-9);
    LoadReport {
        qos: plan.qos as u8,
        payload_bytes: plan.payload,
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        mode: match plan.pace {
            Pace::Max(_) => "max".to_owned(),
            Pace::Rate(_) => "rate".to_owned(),
        },
        rate_per_publisher: match plan.pace {
            Pace::Rate(r) => Some(r),
            Pace::Max(_) => None,
        },
        max_outstanding: plan.max_outstanding,
        seconds: round3(secs),
        published,
        delivered,
        publish_per_s: (published as f64 / secs).round(),
        deliveries_per_s: (delivered as f64 / secs).round(),
        latency_us: Percentiles::of(&shared.latency.borrow()),
        expected,
        lost: expected.saturating_sub(unique),
        duplicates,
        reordered,
        disconnects: shared.disconnects.get(),
        stalls: shared.stalls.get(),
    }
}

/// What makes the figures suspect.
fn load_warnings(shared: &Shared, load: &LoadReport) -> Vec<String> {
    let mut warnings: Vec<String> = shared.errors.borrow().clone();
    if load.lost > 0 && load.qos > 0 {
        warnings.push(format!(
            "{} deliveries lost at QoS {} (a broker drops them when a client's queue is full)",
            load.lost, load.qos
        ));
    }
    if load.disconnects > 0 {
        warnings.push(format!("{} connections closed early", load.disconnects));
    }
    if load.stalls > 0 {
        warnings.push(format!(
            "publishers waited {} times a second with nothing delivered",
            load.stalls
        ));
    }
    if shared.foreign.get() > 0 {
        warnings.push(format!(
            "{} deliveries without a stamp of this run",
            shared.foreign.get()
        ));
    }
    if let Pace::Rate(rate) = shared.plan.pace {
        let target = rate * shared.plan.publishers as f64;
        if load.publish_per_s < 0.95 * target {
            warnings.push(format!(
                "published {:.0}/s of the {target:.0}/s asked for",
                load.publish_per_s
            ));
        }
    }
    if load.latency_us.is_none() {
        warnings.push(format!(
            "no message sent in the measured window arrived within {:.1} s of its end",
            shared.plan.drain.as_secs_f64()
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cli::{Cli, Command};
    use clap::Parser;

    /// A broker on 127.0.0.1:0 in a runtime of its own.
    fn broker() -> (tokio::runtime::Runtime, midge_broker::Broker, u16) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let config = midge_broker::Config {
            listeners: vec![midge_broker::ListenerConfig {
                bind: "127.0.0.1:0".parse().expect("address"),
                ..Default::default()
            }],
            // In memory: no data directory shared between brokers.
            persistence: midge_broker::PersistenceConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let broker = runtime
            .block_on(midge_broker::Broker::start(config))
            .expect("broker");
        let port = broker.local_addrs()[0].port();
        (runtime, broker, port)
    }

    fn run_load(scenario: Scenario, port: u16, args: &[&str]) -> Report {
        let port = port.to_string();
        let argv = ["midge-bench", scenario.name(), "-p", &port, "--quiet"]
            .into_iter()
            .chain(["-d", "0.3", "-w", "0.1", "--drain", "3"])
            .chain(args.iter().copied());
        let (Command::Fanout(a) | Command::P2p(a) | Command::Fanin(a)) =
            Cli::parse_from(argv).command
        else {
            unreachable!("a load scenario");
        };
        run(scenario, a).expect("run")
    }

    fn assert_clean(report: &Report) {
        let load = report.load.as_ref().expect("load figures");
        assert!(load.delivered > 0, "{}", report.to_text());
        assert_eq!(
            (load.lost, load.duplicates, load.reordered, load.disconnects),
            (0, 0, 0, 0),
            "{}",
            report.to_text()
        );
        assert!(load.latency_us.is_some(), "{}", report.to_text());
    }

    #[test]
    fn a_qos1_fanout_delivers_everything_in_order() {
        let (_rt, _broker, port) = broker();
        let report = run_load(Scenario::Fanout, port, &["-n", "20", "-q", "1"]);
        assert_clean(&report);
        let load = report.load.expect("load");
        assert_eq!(load.expected % 20, 0);
    }

    #[test]
    fn qos2_pairs_at_a_fixed_rate_deliver_everything() {
        let (_rt, _broker, port) = broker();
        let report = run_load(
            Scenario::P2p,
            port,
            &["--pairs", "10", "-q", "2", "-r", "50"],
        );
        assert_clean(&report);
    }

    #[test]
    fn a_wildcard_subscriber_hears_every_publisher() {
        let (_rt, _broker, port) = broker();
        let report = run_load(Scenario::Fanin, port, &["-P", "5", "-q", "1", "-o", "500"]);
        assert_clean(&report);
    }

    #[test]
    fn a_burst_of_connections_is_counted() {
        let (_rt, _broker, port) = broker();
        let argv = [
            "midge-bench",
            "conns",
            "-p",
            &port.to_string(),
            "--quiet",
            "-n",
            "50",
        ]
        .map(str::to_owned);
        let Command::Conns(args) = Cli::parse_from(argv).command else {
            unreachable!("conns");
        };
        let report = crate::bench::conns::run(args).expect("run");
        let conns = report.conns.expect("conns figures");
        assert_eq!((conns.connected, conns.failed), (50, 0));
        assert_eq!(conns.connack_us.expect("latency").count, 50);
    }
}
