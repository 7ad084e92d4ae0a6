//! A damaged data directory never stops `midge` from starting: a data file
//! truncated to half, bytes overwritten in the middle of one, or one
//! deleted; each time the broker starts, keeps what is readable, and says
//! in one warning what it dropped.

mod durability_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use durability_support::{free_port, Event, Midge, Raw};
use midge_protocol::{Connect, Packet, PacketId, Publish, QoS, QosPid, Subscribe, SubscribeFilter};

/// Messages queued for the offline subscriber per broker run.
const PER_RUN: usize = 200;
/// Broker runs while preparing: each writes a segment of its own.
const RUNS: usize = 3;

fn connect(id: &str, clean: bool) -> Connect {
    let mut c = Connect::new(id);
    c.clean_session = clean;
    c
}

fn pkid(n: usize) -> PacketId {
    PacketId::new((n % 65_535 + 1) as u16).expect("non-zero")
}

/// A data directory holding a persistent session with `RUNS * PER_RUN`
/// queued messages, written over `RUNS` broker runs.
async fn prepare(work: &Path) -> PathBuf {
    let data = work.join("data");
    let port = free_port();
    for run in 0..RUNS {
        let mut midge = Midge::start(work, &data, port, &format!("prepare{run}")).await;
        if run == 0 {
            let (mut sub, _) = Raw::connect(midge.addr, connect("s", false)).await;
            sub.queue(Packet::Subscribe(Subscribe {
                pkid: pkid(0),
                filters: vec![SubscribeFilter {
                    filter: "d/#".into(),
                    qos: QoS::AtLeastOnce,
                }],
            }));
            sub.flush().await;
            assert!(matches!(
                sub.next(Duration::from_secs(5)).await,
                Event::Packet(Packet::SubAck(_))
            ));
        }
        let (mut publisher, _) = Raw::connect(midge.addr, connect("p", true)).await;
        for i in 0..PER_RUN {
            let n = run * PER_RUN + i;
            let mut payload = format!("{n} ").into_bytes();
            payload.resize(1000, b'.');
            publisher.queue(Packet::Publish(Publish {
                dup: false,
                qos_pid: QosPid::AtLeastOnce(pkid(n)),
                retain: i == PER_RUN - 1,
                topic: "d/x".into(),
                payload: Bytes::from(payload),
            }));
            publisher.flush().await;
            assert!(matches!(
                publisher.next(Duration::from_secs(5)).await,
                Event::Packet(Packet::PubAck(_))
            ));
        }
        assert!(midge.stop().await.success());
    }
    data
}

/// Copies the data directory (not its lock) to `to`.
fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// The segment files, largest first.
fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| (e.path(), e.metadata().expect("metadata").len()))
        .collect();
    out.sort_by_key(|(p, len)| (std::cmp::Reverse(*len), p.clone()));
    out
}

/// Starts on the damaged copy; returns the number of queued messages the
/// subscriber gets, whether its session was present, and the log.
async fn start_and_count(work: &Path, data: &Path, name: &str) -> (usize, bool, String) {
    let mut midge = Midge::start(work, data, free_port(), name).await;
    let (mut sub, present) = Raw::connect(midge.addr, connect("s", false)).await;
    let mut got = 0;
    while let Event::Packet(p) = sub.next(Duration::from_millis(500)).await {
        if let Packet::Publish(p) = p {
            if let QosPid::AtLeastOnce(id) = p.qos_pid {
                sub.queue(Packet::PubAck(id));
                sub.flush().await;
            }
            got += 1;
        }
    }
    let log = midge.log();
    assert!(midge.stop().await.success(), "{log}");
    (got, present, log)
}

fn assert_one_warning(log: &str, what: &str) {
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("was damaged")).collect();
    assert_eq!(warnings.len(), 1, "one warning expected:\n{log}");
    assert!(
        warnings[0].contains(what),
        "the warning says {what:?}:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_directory_never_stops_start_up() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = prepare(work.path()).await;
    let total = RUNS * PER_RUN;
    let (got, present, log) = start_and_count(
        work.path(),
        &copy_of(&data, work.path(), "intact"),
        "intact",
    )
    .await;
    assert_eq!((got, present), (total, true), "{log}");
    assert!(!log.contains("was damaged"), "{log}");

    // The largest data file truncated to half.
    let dir = copy_of(&data, work.path(), "half");
    let (largest, len) = segments(&dir)[0].clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&largest)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    let (got, present, log) = start_and_count(work.path(), &dir, "half").await;
    assert!(present, "{log}");
    assert!(got > 0 && got < total, "{got} of {total} kept\n{log}");
    assert_one_warning(&log, "damaged bytes");
    // Recovery repaired the directory: the next start is clean.
    let (again, _, log) = start_and_count(work.path(), &dir, "half-again").await;
    assert_eq!(again, 0, "all were acknowledged");
    assert!(!log.contains("was damaged"), "{log}");

    // Bytes overwritten in the middle of the largest file.
    let dir = copy_of(&data, work.path(), "garbled");
    let (largest, len) = segments(&dir)[0].clone();
    let mut bytes = std::fs::read(&largest).expect("read");
    let mid = (len / 2) as usize;
    bytes[mid..mid + 64].fill(0xa5);
    std::fs::write(&largest, &bytes).expect("write");
    let (got, present, log) = start_and_count(work.path(), &dir, "garbled").await;
    assert!(present, "{log}");
    assert!(
        got >= total - PER_RUN && got < total,
        "{got} of {total} kept\n{log}"
    );
    assert_one_warning(&log, "damaged bytes");

    // One segment deleted (not the one the session began in).
    let dir = copy_of(&data, work.path(), "deleted");
    let mut segs = segments(&dir);
    segs.sort();
    std::fs::remove_file(&segs[1].0).expect("delete");
    let (got, present, log) = start_and_count(work.path(), &dir, "deleted").await;
    assert!(present, "{log}");
    assert_eq!(got, total - PER_RUN, "{log}");
    assert_one_warning(&log, "missing");

    // A file that is not a segment at all is moved aside.
    let dir = copy_of(&data, work.path(), "foreign");
    let mut segs = segments(&dir);
    segs.sort();
    std::fs::write(&segs[0].0, b"garbage, not a segment").expect("write");
    let (_, present, log) = start_and_count(work.path(), &dir, "foreign").await;
    assert!(!present, "the session began in the moved file\n{log}");
    assert_one_warning(&log, "moved aside");
    let aside = segs[0].0.with_extension("log.damaged");
    assert!(aside.exists(), "{}", aside.display());
}

fn copy_of(data: &Path, work: &Path, name: &str) -> PathBuf {
    let dir = work.join(name);
    copy(data, &dir);
    dir
}
