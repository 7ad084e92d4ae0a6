//! A bounded soak test: 500 persistent clients (CleanSession=0) publish to
//! and subscribe from each other while dropping their connections at random
//! and coming back.
//!
//! At the end every message the broker acknowledged (PUBACK at QoS 1,
//! PUBCOMP at QoS 2) was delivered to its subscriber; at QoS 2 none was
//! delivered twice; nothing panicked; and the process's resident memory is
//! back near where it started. Each client behaves as MQTT 3.1.1 asks of a
//! client: on reconnect it re-sends unacknowledged PUBLISHes with DUP=1 and
//! pending PUBRELs [MQTT-4.4.0-1], and as a QoS 2 receiver it delivers a
//! packet id once until the PUBREL [MQTT-4.3.3-2].
//!
//! Both variants share one process, so they run one after the other, and the
//! whole file stays well under two minutes on two cores.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use midge_protocol::{Packet, PacketId, Publish, QoS, QosPid};
use support::*;
use tokio::time::Instant;

const CLIENTS: usize = 500;
/// How long clients publish and churn.
const CHURN: Duration = Duration::from_secs(12);
/// How long the final drain may take before the test fails.
const DRAIN: Duration = Duration::from_secs(30);
/// Most unacknowledged publishes a client keeps in flight.
const WINDOW: usize = 4;

/// One at a time: both variants measure this process's memory.
static SERIAL: Mutex<()> = Mutex::new(());

/// Panics anywhere in the process, broker tasks included.
static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn soak_500_clients_qos1_with_random_abrupt_reconnects() {
    soak(QoS::AtLeastOnce);
}

#[test]
fn soak_500_clients_qos2_with_random_abrupt_reconnects() {
    soak(QoS::ExactlyOnce);
}

fn soak(qos: QoS) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    count_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let panics_before = PANICS.load(Ordering::SeqCst);
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(100), run(qos))
            .await
            .expect("the soak finishes within 100 s");
    });
    drop(runtime);
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics_before,
        "something panicked during the soak"
    );
}

/// Installs, once, a panic hook that counts panics and then reports them.
fn count_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// What every client reports, shared.
#[derive(Default)]
struct Ledger {
    /// Message ids the broker acknowledged to their publisher.
    acked: HashSet<u64>,
    /// How many times each message id was delivered to its subscriber.
    delivered: HashMap<u64, u32>,
    /// Connections that found no session where one should have been.
    lost_sessions: Vec<String>,
    /// Reconnects performed.
    reconnects: usize,
}

async fn run(qos: QoS) {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_queued_messages = 10_000;
        c.limits.connect_timeout_s = 10;
    })
    .await;
    let rss_start = vm_rss_kib();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let ready = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let addr = broker.addr;
        let ledger = ledger.clone();
        let (ready, drained) = (ready.clone(), drained.clone());
        tasks.push(tokio::spawn(async move {
            SoakClient::new(i, qos, addr, ledger)
                .run(ready, drained)
                .await
        }));
    }
    let mut rss_peak = vm_rss_kib();
    for task in tasks {
        task.await.expect("a soak client task");
        rss_peak = rss_peak.max(vm_rss_kib());
    }
    broker.shutdown().await;
    // Let the runtime reap what the broker left behind before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_end = vm_rss_kib();

    let ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "soak {qos:?}: {} acknowledged, {} delivered, {} reconnects; \
         VmRSS start {rss_start} KiB, peak {rss_peak} KiB, end {rss_end} KiB",
        ledger.acked.len(),
        ledger.delivered.len(),
        ledger.reconnects
    );
    assert!(
        ledger.lost_sessions.is_empty(),
        "sessions lost: {:?}",
        ledger.lost_sessions
    );
    assert!(ledger.acked.len() > CLIENTS, "the soak barely published");
    assert!(ledger.reconnects > CLIENTS / 2, "the soak barely churned");
    let missing: Vec<u64> = ledger
        .acked
        .iter()
        .filter(|id| !ledger.delivered.contains_key(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages never delivered, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    if qos == QoS::ExactlyOnce {
        let twice: Vec<(&u64, &u32)> = ledger.delivered.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "QoS 2 messages delivered more than once: {twice:?}"
        );
    }
    // Generous: allocator caches and runtime buffers stay, a leak of the
    // traffic (tens of thousands of messages, 500 sessions) would not fit.
    let growth = rss_end.saturating_sub(rss_start);
    assert!(
        growth < 96 * 1024,
        "VmRSS grew by {growth} KiB (start {rss_start}, peak {rss_peak}, end {rss_end})"
    );
}

/// Where an outgoing message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent, waiting for PUBACK or PUBREC.
    Published,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// One soak client's state, kept across its connections as a persistent
/// session's client side must be.
struct SoakClient {
    index: usize,
    id: String,
    qos: QoS,
    addr: std::net::SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    rng: u64,
    next_pkid: u16,
    next_seq: u32,
    /// Outgoing messages in flight: packet id to (message id, target topic,
    /// stage), in send order.
    outgoing: BTreeMap<u16, (u64, String, Stage)>,
    /// Incoming QoS 2 packet ids received and not yet released.
    incoming: HashSet<u16>,
    subscribed: bool,
}

impl SoakClient {
    fn new(index: usize, qos: QoS, addr: std::net::SocketAddr, ledger: Arc<Mutex<Ledger>>) -> Self {
        SoakClient {
            index,
            id: format!("soak-{index}"),
            qos,
            addr,
            ledger,
            rng: 0x2545_f491_4f6c_dd1d ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            next_pkid: 0,
            next_seq: 0,
            outgoing: BTreeMap::new(),
            incoming: HashSet::new(),
            subscribed: false,
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn pkid(&mut self) -> PacketId {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.outgoing.contains_key(&self.next_pkid) {
                return pid(self.next_pkid);
            }
        }
    }

    /// Connects and subscribes, waits until every client has, then churns
    /// for [`CHURN`]; then drains: stays connected until its own messages
    /// are acknowledged, waits for every client to get there, and leaves
    /// once nothing has arrived for a second.
    async fn run(mut self, ready: Arc<AtomicUsize>, drained: Arc<AtomicUsize>) {
        // Spread the initial connects over the first half second.
        let jitter = self.random() % 500;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let mut client = self.connect().await;
        // Nobody publishes before every subscription exists, or a message
        // could be acknowledged with no subscriber to deliver it to.
        ready.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + DRAIN;
        while ready.load(Ordering::SeqCst) < CLIENTS {
            assert!(
                Instant::now() < deadline,
                "{}: the others never subscribed",
                self.id
            );
            let slice = Instant::now() + Duration::from_millis(100);
            if !self.converse(&mut client, slice, false).await {
                client = self.connect().await;
            }
        }
        let churn_until = Instant::now() + CHURN;
        loop {
            let stay = Duration::from_millis(200 + self.random() % 1200);
            let until = churn_until.min(Instant::now() + stay);
            let alive = self.converse(&mut client, until, true).await;
            if Instant::now() >= churn_until {
                if !alive {
                    client = self.connect().await;
                }
                break;
            }
            // A quarter polite, the rest abrupt: half closed, half reset.
            match self.random() % 4 {
                0 if alive => {
                    let _ = client.try_send_raw(&[0xe0, 0x00]).await;
                    drop(client);
                }
                1 => client.reset(),
                _ => drop(client),
            }
            self.ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reconnects += 1;
            tokio::time::sleep(Duration::from_millis(self.random() % 100)).await;
            client = self.connect().await;
        }
        let deadline = Instant::now() + DRAIN;
        let mut counted = false;
        loop {
            assert!(
                Instant::now() < deadline,
                "{}: not drained in {DRAIN:?}: {} own publishes unacknowledged, {}/{CLIENTS} clients drained",
                self.id,
                self.outgoing.len(),
                drained.load(Ordering::SeqCst)
            );
            let slice = Instant::now() + Duration::from_millis(500);
            if !self.converse(&mut client, slice, false).await {
                client = self.connect().await;
                continue;
            }
            if self.outgoing.is_empty() && !counted {
                drained.fetch_add(1, Ordering::SeqCst);
                counted = true;
            }
            if counted && drained.load(Ordering::SeqCst) == CLIENTS {
                break;
            }
        }
        // Every publisher is done; take the last deliveries, then leave.
        loop {
            assert!(
                Instant::now() < deadline,
                "{}: deliveries never stopped",
                self.id
            );
            match client.next_event(Duration::from_secs(1)).await {
                Event::Timeout => break,
                Event::Closed => client = self.connect().await,
                Event::Packet(packet) => {
                    if !self.handle_quietly(&mut client, packet).await {
                        client = self.connect().await;
                    }
                }
            }
        }
        client.disconnect().await;
    }

    /// Connects with CleanSession=0, subscribes the first time, and re-sends
    /// what is unacknowledged [MQTT-4.4.0-1].
    async fn connect(&mut self) -> Client {
        let mut client = Client::tcp(self.addr).await;
        let ack = client.handshake(connect_packet(&self.id, false)).await;
        assert_eq!(
            ack.code,
            midge_protocol::ConnectReturnCode::Accepted,
            "{}",
            self.id
        );
        if self.subscribed && !ack.session_present {
            self.ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .lost_sessions
                .push(self.id.clone());
        }
        if !self.subscribed {
            client
                .subscribe(&format!("soak/{}", self.index), self.qos)
                .await;
            self.subscribed = true;
        }
        let resend: Vec<Packet> = self
            .outgoing
            .iter()
            .map(|(&pkid, (msg, topic, stage))| match stage {
                Stage::Published => Packet::Publish(Publish {
                    dup: true,
                    ..message(topic, *msg, self.qos, pid(pkid))
                }),
                Stage::Released => Packet::PubRel(pid(pkid)),
            })
            .collect();
        if !resend.is_empty() {
            client.send_all(resend).await;
        }
        client
    }

    /// Handles traffic until `until`, publishing new messages if `publish`;
    /// false when the connection went away (or this client dropped it).
    async fn converse(&mut self, client: &mut Client, until: Instant, publish: bool) -> bool {
        let mut next_publish = Instant::now();
        loop {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            if publish && now >= next_publish && self.outgoing.len() < WINDOW {
                let target = (self.random() as usize) % CLIENTS;
                let topic = format!("soak/{target}");
                let msg = (self.index as u64) << 32 | u64::from(self.next_seq);
                self.next_seq += 1;
                let pkid = self.pkid();
                self.outgoing
                    .insert(pkid.get(), (msg, topic.clone(), Stage::Published));
                let packet = Packet::Publish(message(&topic, msg, self.qos, pkid));
                if client.try_send_raw(&encoded(&packet)).await.is_err() {
                    return false;
                }
                next_publish = now + Duration::from_millis(50 + self.random() % 250);
            }
            let wait_until = if publish {
                until.min(next_publish)
            } else {
                until
            };
            let wait = wait_until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            match client.next_event(wait).await {
                Event::Timeout => {}
                // Dropped by the broker: reconnect.
                Event::Closed => return false,
                Event::Packet(packet) => {
                    if !self.handle(client, packet, publish).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Handles one packet without ever dropping the connection on purpose.
    async fn handle_quietly(&mut self, client: &mut Client, packet: Packet) -> bool {
        self.handle(client, packet, false).await
    }

    /// Handles one packet from the broker; false when the connection broke.
    /// While `churning`, sometimes vanishes before acknowledging a PUBLISH.
    async fn handle(&mut self, client: &mut Client, packet: Packet, churning: bool) -> bool {
        let reply = match packet {
            Packet::Publish(p) => {
                let msg = message_id(&p);
                let first_time = match p.qos_pid {
                    QosPid::ExactlyOnce(id) => self.incoming.insert(id.get()),
                    _ => true,
                };
                if first_time {
                    *self
                        .ledger
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .delivered
                        .entry(msg)
                        .or_default() += 1;
                }
                // Sometimes vanish before acknowledging, to force redelivery.
                if churning && self.random() % 50 == 0 {
                    return false;
                }
                match p.qos_pid {
                    QosPid::AtMostOnce => None,
                    QosPid::AtLeastOnce(id) => Some(Packet::PubAck(id)),
                    QosPid::ExactlyOnce(id) => Some(Packet::PubRec(id)),
                }
            }
            Packet::PubRel(id) => {
                self.incoming.remove(&id.get());
                Some(Packet::PubComp(id))
            }
            Packet::PubAck(id) => {
                self.acknowledged(id, Stage::Published);
                None
            }
            Packet::PubRec(id) => match self.outgoing.get_mut(&id.get()) {
                Some(entry) => {
                    entry.2 = Stage::Released;
                    Some(Packet::PubRel(id))
                }
                // A PUBREC for a message already complete: release again.
                None => Some(Packet::PubRel(id)),
            },
            Packet::PubComp(id) => {
                self.acknowledged(id, Stage::Released);
                None
            }
            other => panic!("{}: unexpected {other:?}", self.id),
        };
        match reply {
            Some(reply) => client.try_send_raw(&encoded(&reply)).await.is_ok(),
            None => true,
        }
    }

    /// The broker completed the flow for outgoing `id`.
    fn acknowledged(&mut self, id: PacketId, expected: Stage) {
        if let Some((msg, _, stage)) = self.outgoing.get(&id.get()) {
            if *stage == expected || self.qos == QoS::AtLeastOnce {
                let msg = *msg;
                self.outgoing.remove(&id.get());
                self.ledger
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .acked
                    .insert(msg);
            }
        }
    }
}

fn message(topic: &str, msg: u64, qos: QoS, pkid: PacketId) -> Publish {
    Publish {
        dup: false,
        qos_pid: QosPid::new(qos, pkid),
        retain: false,
        topic: topic.into(),
        payload: Bytes::copy_from_slice(&msg.to_be_bytes()),
    }
}

fn message_id(p: &Publish) -> u64 {
    let bytes: [u8; 8] = p.payload[..].try_into().expect("an 8-byte soak payload");
    u64::from_be_bytes(bytes)
}

fn encoded(packet: &Packet) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    midge_protocol::encode(packet, &mut out).expect("the soak packet encodes");
    out.to_vec()
}
