//! The journal on its own: what it restores, recovery from every damage the
//! issue names, and compaction.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use midge_protocol::QoS;

use super::*;

fn open(dir: &Path) -> (Journal, Restored) {
    open_opts(dir, Options::default())
}

fn open_opts(dir: &Path, opts: Options) -> (Journal, Restored) {
    Journal::open_with(dir, SyncMode::Always, Duration::from_secs(1), opts).expect("opens")
}

fn msg(j: &Journal, topic: &str, payload: &str) -> Arc<Message> {
    Message::stored(
        topic,
        payload.as_bytes(),
        QoS::AtLeastOnce,
        false,
        j.next_mid(),
    )
    .expect("msg")
}

/// Submits `ops` as one transaction and waits until it is durable.
fn commit(j: &Journal, ops: Vec<Op>) {
    let mut ops = ops;
    let ticket = j.submit(&mut ops, None);
    while j.durable() < ticket {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A readable summary of what was restored, for comparisons.
fn describe(r: &Restored) -> String {
    let mut retained: Vec<String> = r
        .retained
        .iter()
        .map(|m| format!("{}={}", m.topic(), String::from_utf8_lossy(&m.payload())))
        .collect();
    retained.sort();
    let mut out = format!("retained {retained:?}\n");
    for s in &r.sessions {
        let entries: Vec<String> = s
            .entries
            .iter()
            .map(|(seq, m, qos, _, st)| {
                let p = String::from_utf8_lossy(&m.payload()).into_owned();
                format!("{seq}:{p}:{qos:?}:{st:?}")
            })
            .collect();
        out += &format!(
            "session {} {} subs {:?} in2 {:?} entries {entries:?}\n",
            s.sid, s.client_id, s.subs, s.in2
        );
    }
    out
}

/// The commits of a small store: a session, subscriptions, messages queued,
/// sent, acknowledged, QoS 2 ids, retained messages set and cleared.
fn small_store_commits(j: &Journal) -> Vec<Vec<Op>> {
    let (m1, m2, m3) = (
        msg(j, "t/1", "one"),
        msg(j, "t/2", "two"),
        msg(j, "t/3", "3"),
    );
    let r = Message::stored("r", b"kept", QoS::AtMostOnce, true, j.next_mid()).expect("msg");
    let sid = 7;
    let enqueue = |seq, msg: &Arc<Message>| Op::Enqueue {
        sid,
        seq,
        msg: msg.clone(),
        qos: QoS::ExactlyOnce,
        retain: false,
    };
    vec![
        vec![Op::SessionNew {
            sid,
            client_id: "c".into(),
        }],
        vec![Op::Sub {
            sid,
            filter: "t/#".into(),
            qos: QoS::ExactlyOnce,
        }],
        vec![enqueue(1, &m1), enqueue(2, &m2), Op::Retain(r)],
        vec![
            Op::Sent {
                sid,
                seq: 1,
                pkid: 1,
            },
            Op::In2Add { sid, pkid: 9 },
        ],
        vec![Op::Released { sid, seq: 1 }, enqueue(3, &m3)],
        vec![Op::Done { sid, seq: 1 }, Op::In2Del { sid, pkid: 9 }],
        vec![
            Op::Unretain("r".into()),
            Op::Sent {
                sid,
                seq: 2,
                pkid: 2,
            },
        ],
    ]
}

fn only_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    segs.remove(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_reopened_journal_restores_sessions_queues_and_retained_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, r) = open(dir.path());
    assert!(r.sessions.is_empty() && r.retained.is_empty() && r.report.is_clean());
    for ops in small_store_commits(&j) {
        commit(&j, ops);
    }
    j.close();
    let (j, r) = open(dir.path());
    assert_eq!(
        describe(&r),
        "retained []\nsession 7 c subs [(\"t/#\", ExactlyOnce)] in2 [] entries \
         [\"2:two:ExactlyOnce:Sent(2)\", \"3:3:ExactlyOnce:Queued\"]\n"
    );
    assert!(r.next_sid > 7);
    assert!(r.report.is_clean(), "{}", r.report);
    j.close();
}

#[test]
fn every_truncation_point_of_a_small_store_starts_with_the_commits_before_it() {
    let root = tempfile::tempdir().expect("tempdir");
    // The state after each prefix of the commits, each in a store of its own.
    let n = small_store_commits(&open(&root.path().join("probe")).0).len();
    let mut expected = Vec::new();
    for k in 0..=n {
        let dir = root.path().join(format!("prefix{k}"));
        let (j, _) = open(&dir);
        for ops in small_store_commits(&j).into_iter().take(k) {
            commit(&j, ops);
        }
        j.close();
        let (j, r) = open(&dir);
        j.close();
        expected.push(describe(&r));
    }
    // The whole store: one segment, one frame per commit.
    let full = root.path().join(format!("prefix{n}"));
    let (j, _) = open(&root.path().join("whole"));
    for ops in small_store_commits(&j) {
        commit(&j, ops);
    }
    j.close();
    let whole = root.path().join("whole");
    let seg = only_segment(&whole);
    let bytes = std::fs::read(&seg).expect("read");
    let frames = segment::scan(&bytes).frames;
    assert_eq!(frames.len(), n, "{full:?}");
    for cut in 0..=bytes.len() {
        let dir = root.path().join(format!("cut{cut}"));
        copy_dir(&whole, &dir);
        let cut_seg = dir.join(seg.file_name().expect("name"));
        std::fs::write(&cut_seg, &bytes[..cut]).expect("truncate");
        let (j, r) = open(&dir);
        j.close();
        let whole_frames = frames.iter().filter(|f| f.end <= cut).count();
        assert_eq!(describe(&r), expected[whole_frames], "cut at {cut}");
        let at_boundary =
            cut == segment::HEADER_LEN || frames.iter().any(|f| f.end == cut) || cut == 0;
        assert_eq!(
            r.report.is_clean(),
            at_boundary,
            "cut at {cut}: {}",
            r.report
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}

#[test]
fn damage_in_the_middle_of_a_segment_costs_only_the_damaged_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path());
    for i in 0..5 {
        let m = Message::stored(&format!("r/{i}"), b"v", QoS::AtMostOnce, true, j.next_mid());
        commit(&j, vec![Op::Retain(m.expect("msg"))]);
    }
    j.close();
    let seg = only_segment(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    let frames = segment::scan(&bytes).frames;
    let third = frames[2].clone();
    for b in &mut bytes[third.start..third.end] {
        *b ^= 0x5a;
    }
    std::fs::write(&seg, &bytes).expect("write");
    let (j, r) = open(dir.path());
    let topics: Vec<String> = {
        let mut t: Vec<String> = r.retained.iter().map(|m| m.topic().to_owned()).collect();
        t.sort();
        t
    };
    assert_eq!(topics, ["r/0", "r/1", "r/3", "r/4"]);
    assert!(
        r.report.to_string().contains("damaged bytes"),
        "{}",
        r.report
    );
    j.close();
    // The damage was restated away: the next start is clean.
    let (j, r) = open(dir.path());
    assert_eq!(r.retained.len(), 4);
    assert!(r.report.is_clean(), "{}", r.report);
    j.close();
}

#[test]
fn an_unreadable_segment_is_moved_aside_and_a_missing_one_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path());
    commit(&j, small_store_commits(&j).remove(0));
    j.close();
    let seg = only_segment(dir.path());
    std::fs::write(&seg, b"this is not a segment at all").expect("write");
    let (j, r) = open(dir.path());
    assert!(r.sessions.is_empty());
    assert!(r.report.to_string().contains("moved aside"), "{}", r.report);
    let aside = seg.with_file_name(format!(
        "{}.damaged",
        seg.file_name().expect("name").to_string_lossy()
    ));
    assert!(aside.exists());
    commit(&j, small_store_commits(&j).remove(0));
    j.close();
    std::fs::remove_file(only_segment(dir.path())).expect("delete");
    let (j, r) = open(dir.path());
    assert!(r.report.to_string().contains("missing"), "{}", r.report);
    j.close();
}

#[test]
fn a_second_broker_cannot_open_a_directory_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path());
    let second = Journal::open_with(
        dir.path(),
        SyncMode::Always,
        Duration::from_secs(1),
        Options::default(),
    );
    assert!(second.is_err());
    j.close();
    open(dir.path()).0.close();
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn compaction_keeps_the_disk_bounded_and_the_state_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        segment_bytes: 8 << 10,
        compact_min_bytes: 32 << 10,
        chunk_bytes: 2 << 10,
        ..Options::default()
    };
    let (j, _) = open_opts(dir.path(), opts);
    let sid = 3;
    commit(
        &j,
        vec![Op::SessionNew {
            sid,
            client_id: "c".into(),
        }],
    );
    // A few long-lived messages, then many that come and go.
    let keep: Vec<Op> = (1..=20)
        .map(|seq| Op::Enqueue {
            sid,
            seq,
            msg: msg(&j, "keep", &format!("k{seq}")),
            qos: QoS::AtLeastOnce,
            retain: false,
        })
        .collect();
    commit(&j, keep);
    let mut peak = 0;
    for seq in 100..3100u64 {
        let m = msg(&j, "churn", &"x".repeat(100));
        let ops = vec![
            Op::Enqueue {
                sid,
                seq,
                msg: m,
                qos: QoS::AtLeastOnce,
                retain: false,
            },
            Op::Sent { sid, seq, pkid: 1 },
            Op::Done { sid, seq },
        ];
        commit(&j, ops);
        peak = peak.max(dir_bytes(dir.path()));
    }
    j.close();
    // About 3000 x 160 bytes were written; the directory never held more
    // than a few compaction thresholds.
    assert!(peak < 160 << 10, "peak {peak} bytes");
    let (j, r) = open_opts(dir.path(), opts);
    let s = &r.sessions[0];
    let payloads: Vec<String> = s
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.1.payload()).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (1..=20).map(|i| format!("k{i}")).collect::<Vec<_>>()
    );
    assert!(r.report.is_clean(), "{}", r.report);
    j.close();
}

#[tokio::test]
async fn a_writer_that_falls_behind_backlogs_the_journal_until_it_takes_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        max_backlog_bytes: 4096,
        ..Options::default()
    };
    let (j, _) = open_opts(dir.path(), opts);
    // The disk stalls: the writer takes nothing.
    j.hold_writer(true);
    let payload = "x".repeat(1000);
    let mut tickets = Vec::new();
    for i in 0..3 {
        let mut ops = vec![Op::Retain(msg(&j, &format!("t/{i}"), &payload))];
        tickets.push(j.submit(&mut ops, None));
    }
    assert!(!j.is_backlogged(), "3 KB queued is under the 4 KB limit");
    for i in 3..6 {
        let mut ops = vec![Op::Retain(msg(&j, &format!("t/{i}"), &payload))];
        tickets.push(j.submit(&mut ops, None));
    }
    assert!(j.is_backlogged(), "6 KB queued is over it");
    let waiting = tokio::spawn(j.clone().backlog_taken());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "publishers wait while the writer is stuck"
    );
    // The disk comes back: the writer takes the queue, the wait ends, and
    // everything submitted becomes durable.
    j.hold_writer(false);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the wait ends")
        .expect("no panic");
    assert!(!j.is_backlogged());
    let last = *tickets.last().expect("tickets");
    while j.durable() < last {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn backlog_counts_a_retained_payload_and_small_ops_by_their_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, _) = open(dir.path());
    let small = Op::Done { sid: 1, seq: 1 }.backlog_bytes();
    let retained = Op::Retain(msg(&j, "a/b", &"y".repeat(500))).backlog_bytes();
    assert_eq!(retained, small + 3 + 500);
}
