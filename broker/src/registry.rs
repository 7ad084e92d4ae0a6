//! [`Registry`]: which sessions exist, which connection holds each, and
//! session takeover.
//!
//! A session is known by client id. It is *live* while a connection holds
//! it and *parked* (its state in the [`SessionStore`], its mailbox offline)
//! while a persistent client is away. A second connection with the same
//! client id kicks the live one and waits for it to park or end its session
//! before claiming it [MQTT-3.1.4-2]; the old connection publishes its will
//! on the way out like any connection closed without DISCONNECT.
//!
//! With persistence on, a persistent session is journaled from its start
//! ([`Op::SessionNew`]) to its end ([`Op::SessionDel`]) under its mailbox
//! id, and [`Registry::restore`] brings the journaled sessions back,
//! parked, at start-up.
//!
//! Lock order: the registry's mutex, then the router's trie, then the
//! journal's queue. Nothing takes them the other way round, and none is
//! held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use midge_protocol::{PacketId, QoS};

use crate::keepalive::Deadline;
use crate::mailbox::{Delivery, Mailbox};
use crate::persist::{EntryState, Journal, Op, RestoredSession};
use crate::router::Router;
use crate::session::{OutState, Outgoing, Session, SessionState};
use crate::store::SessionStore;

/// How a connection is reached by the registry.
#[derive(Clone, Debug)]
pub struct LiveConn {
    /// Unique per connection.
    pub conn_id: u64,
    /// Takeover's two signals: to the connection, and back.
    pub signal: Arc<ConnSignal>,
}

impl LiveConn {
    /// A connection's handle, not yet kicked nor ended.
    pub fn new(conn_id: u64) -> LiveConn {
        LiveConn {
            conn_id,
            signal: Arc::default(),
        }
    }
}

/// A connection's takeover signals: *kicked* (a newer connection wants its
/// session: close) and *exited* (it has let the session go).
///
/// Two flags and a `Notify`, not two cancellation tokens: every idle
/// connection holds one, and tokens cost a few hundred bytes between them.
/// The kicked connection is woken through its mailbox's `Notify`, which its
/// loop always waits on.
#[derive(Debug, Default)]
pub struct ConnSignal {
    kicked: AtomicBool,
    exited: AtomicBool,
    on_exit: Notify,
    /// The session's keep-alive deadline, for the sweeper.
    pub deadline: Deadline,
}

impl ConnSignal {
    /// Tells the connection to close; the caller wakes it (its mailbox).
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
    }

    /// Whether the connection was told to close.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Marks the connection ended and wakes whoever waits for that.
    pub fn exit(&self) {
        self.exited.store(true, Ordering::Release);
        self.on_exit.notify_waiters();
    }

    /// Whether the connection has ended.
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Waits until the connection has ended.
    pub async fn exited(&self) {
        loop {
            let notified = self.on_exit.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: an `exit` in between
            // still wakes this wait.
            notified.as_mut().enable();
            if self.has_exited() {
                return;
            }
            notified.await;
        }
    }

    /// A guard that calls [`ConnSignal::exit`] when dropped, however the
    /// connection ends.
    pub fn exit_guard(self: &Arc<Self>) -> ExitGuard {
        ExitGuard(self.clone())
    }
}

/// Marks a connection ended when dropped ([`ConnSignal::exit_guard`]).
#[derive(Debug)]
pub struct ExitGuard(Arc<ConnSignal>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.exit();
    }
}

#[derive(Debug)]
struct Entry {
    mailbox: Arc<Mailbox>,
    conn: Option<LiveConn>,
}

/// The answer to [`Registry::claim`].
#[derive(Debug)]
pub enum Claim {
    /// The session is the caller's. `resumed` is the parked state of a
    /// persistent session (session present), `None` for a new session.
    Granted {
        /// The session's mailbox, online.
        mailbox: Arc<Mailbox>,
        /// Parked state to resume.
        resumed: Option<SessionState>,
        /// The journal ticket CONNACK waits for: an old session discarded
        /// must stay discarded after a crash (0: nothing to wait for).
        ticket: u64,
    },
    /// Another connection holds the session and has been told to close:
    /// wait for it to exit ([`ConnSignal::exited`]), then claim again.
    Busy(Arc<ConnSignal>),
}

/// All sessions, live and parked.
pub struct Registry {
    clients: Mutex<HashMap<Arc<str>, Entry>>,
    store: Arc<dyn SessionStore>,
    router: Arc<Router>,
    queue_limit: usize,
    next_mailbox: AtomicU64,
    journal: Option<Journal>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sessions", &self.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry; mailboxes hold at most `queue_limit` deliveries.
    pub fn new(store: Arc<dyn SessionStore>, router: Arc<Router>, queue_limit: usize) -> Self {
        Registry {
            clients: Mutex::new(HashMap::new()),
            store,
            router,
            queue_limit,
            next_mailbox: AtomicU64::new(1),
            journal: None,
        }
    }

    /// The registry journaling persistent sessions through `journal`.
    pub fn with_journal(mut self, journal: Option<Journal>) -> Self {
        self.journal = journal;
        self
    }

    /// The journal, when persistence is on.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Journals `op` on its own; its ticket (0 without a journal).
    fn journal_op(&self, op: Op) -> u64 {
        self.journal
            .as_ref()
            .map_or(0, |j| j.submit(&mut vec![op], None))
    }

    /// Ends a session's mailbox; a journaled session is deleted from the
    /// journal. Returns the journal ticket (0 if none).
    fn end(&self, mailbox: &Mailbox) -> u64 {
        mailbox.close();
        match mailbox.is_journaled() {
            true => self.journal_op(Op::SessionDel { sid: mailbox.id() }),
            false => 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // Entries are inserted, updated and removed whole: a poisoned lock
        // still guards a consistent map.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_mailbox(&self, client_id: &Arc<str>) -> Arc<Mailbox> {
        let id = self.next_mailbox.fetch_add(1, Ordering::Relaxed);
        Mailbox::new(id, client_id.clone(), self.queue_limit)
    }

    /// Wakes every connection whose keep-alive deadline is at or before
    /// `now_ms` ([`crate::keepalive`]); each then checks its session.
    pub fn wake_expired(&self, now_ms: u64) {
        for entry in self.lock().values() {
            if let Some(live) = &entry.conn {
                if live.signal.deadline.passed(now_ms) {
                    entry.mailbox.waker().notify_one();
                }
            }
        }
    }

    /// Tells every connection that holds a session to close (the broker is
    /// shutting down).
    pub fn kick_all(&self) {
        for entry in self.lock().values() {
            if let Some(live) = &entry.conn {
                live.signal.kick();
                entry.mailbox.waker().notify_one();
            }
        }
    }

    /// Claims the session `client_id` for connection `conn`. With `clean`
    /// any existing session is discarded and a new one started
    /// [MQTT-3.1.2-6]; without it a parked session is resumed
    /// [MQTT-3.1.2-4].
    pub fn claim(&self, client_id: &Arc<str>, clean: bool, conn: &LiveConn) -> Claim {
        let mut clients = self.lock();
        let mut ticket = 0;
        if let Some(entry) = clients.get_mut(client_id) {
            if let Some(live) = &entry.conn {
                if !live.signal.has_exited() {
                    live.signal.kick();
                    // Its loop always waits on the mailbox's `Notify`.
                    entry.mailbox.waker().notify_one();
                    return Claim::Busy(live.signal.clone());
                }
                // The holder ended without releasing (it panicked): its
                // session state is gone. Refuse its mailbox further
                // deliveries; its trie entries then route nowhere.
                tracing::error!(client_id = %client_id, "session lost by a failed connection");
                self.end(&entry.mailbox);
                clients.remove(client_id);
            } else {
                let parked = self.store.take(client_id);
                if !clean {
                    if let Some(state) = parked {
                        entry.mailbox.set_online();
                        entry.conn = Some(conn.clone());
                        return Claim::Granted {
                            mailbox: entry.mailbox.clone(),
                            resumed: Some(state),
                            ticket: 0,
                        };
                    }
                }
                // Discard the old session [MQTT-3.1.2-6].
                if let Some(state) = parked {
                    let filters = state.subscriptions.keys().map(String::as_str);
                    self.router.unsubscribe_all(filters, entry.mailbox.id());
                }
                ticket = self.end(&entry.mailbox);
                clients.remove(client_id);
            }
        }
        self.grant_new(&mut clients, client_id, clean, conn, ticket)
    }

    /// Starts a new session; a persistent one is journaled from here on.
    fn grant_new(
        &self,
        clients: &mut HashMap<Arc<str>, Entry>,
        client_id: &Arc<str>,
        clean: bool,
        conn: &LiveConn,
        ticket: u64,
    ) -> Claim {
        let mailbox = match (&self.journal, clean) {
            (Some(_), false) => {
                let id = self.next_mailbox.fetch_add(1, Ordering::Relaxed);
                let client_id = client_id.clone();
                let mailbox = Mailbox::journaled(id, client_id.clone(), self.queue_limit, 1);
                self.journal_op(Op::SessionNew { sid: id, client_id });
                mailbox
            }
            _ => self.new_mailbox(client_id),
        };
        let entry = Entry {
            mailbox: mailbox.clone(),
            conn: Some(conn.clone()),
        };
        clients.insert(client_id.clone(), entry);
        Claim::Granted {
            mailbox,
            resumed: None,
            ticket,
        }
    }

    /// The connection `conn_id` is done with `session`: a clean session
    /// ends (its subscriptions are removed, its mailbox closed); a persistent
    /// one is parked with an offline mailbox.
    pub fn release(&self, conn_id: u64, mailbox: &Arc<Mailbox>, session: Session) {
        let client_id = session.client_id().clone();
        let mut clients = self.lock();
        let ours = clients.get(&client_id).is_some_and(|e| {
            e.mailbox.id() == mailbox.id() && e.conn.as_ref().is_some_and(|c| c.conn_id == conn_id)
        });
        if session.is_clean() || !ours {
            if ours {
                clients.remove(&client_id);
            }
            let filters = session.subscriptions().map(|(f, _)| f);
            self.router.unsubscribe_all(filters, mailbox.id());
            self.end(mailbox);
            return;
        }
        if let Some(entry) = clients.get_mut(&client_id) {
            entry.conn = None;
        }
        mailbox.set_offline();
        self.store.park(&client_id, session.into_state());
    }

    /// Brings back the persistent sessions of the journal, parked, with
    /// their subscriptions routed; session ids handed out from now on are
    /// at least `next_id`. Of two sessions with the same client id (a lost
    /// deletion) the newer is kept.
    pub fn restore(&self, sessions: Vec<RestoredSession>, next_id: u64) {
        self.next_mailbox.fetch_max(next_id, Ordering::Relaxed);
        let mut clients = self.lock();
        for s in sessions {
            let client_id: Arc<str> = s.client_id.as_str().into();
            if let Some(old) = clients.remove(&client_id) {
                if let Some(state) = self.store.take(&client_id) {
                    let filters = state.subscriptions.keys().map(String::as_str);
                    self.router.unsubscribe_all(filters, old.mailbox.id());
                }
                self.end(&old.mailbox);
            }
            let next_seq = s.entries.last().map_or(1, |e| e.0 + 1);
            let mailbox = Mailbox::journaled(s.sid, client_id.clone(), self.queue_limit, next_seq);
            mailbox.set_offline();
            for (filter, qos) in &s.subs {
                self.router.subscribe(filter, &mailbox, *qos);
            }
            self.store.park(&client_id, restored_state(s));
            let entry = Entry {
                mailbox,
                conn: None,
            };
            clients.insert(client_id, entry);
        }
    }

    /// Sessions known, live and parked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parked persistent sessions.
    pub fn parked(&self) -> usize {
        self.store.len()
    }

    /// Deliveries waiting in all sessions' mailboxes, live and parked. Reads
    /// each mailbox's lock-free count: no mailbox lock is taken.
    pub fn queued(&self) -> usize {
        self.lock().values().map(|e| e.mailbox.len()).sum()
    }
}

/// A journaled session as the session layer keeps it: sent deliveries in
/// flight with their packet ids, the rest waiting in order.
fn restored_state(s: RestoredSession) -> SessionState {
    let mut state = SessionState {
        subscriptions: s.subs.into_iter().collect(),
        incoming_qos2: s.in2.into_iter().filter_map(PacketId::new).collect(),
        ..SessionState::default()
    };
    for (seq, msg, qos, retain, entry) in s.entries {
        let delivery = Delivery {
            msg,
            qos,
            retain,
            seq,
        };
        let sent = match entry {
            EntryState::Queued => None,
            EntryState::Sent(p) => PacketId::new(p).map(|id| (id, false)),
            EntryState::Released(p) => PacketId::new(p).map(|id| (id, true)),
        };
        let taken = |id: PacketId| state.inflight.iter().any(|o| o.pkid == id);
        match sent {
            Some((pkid, released)) if !taken(pkid) => {
                let out_state = match (released, qos) {
                    (true, _) => OutState::AwaitPubComp,
                    (false, QoS::ExactlyOnce) => OutState::AwaitPubRec,
                    (false, _) => OutState::AwaitPubAck,
                };
                state.last_pkid = state.last_pkid.max(pkid.get());
                state.inflight.push_back(Outgoing {
                    pkid,
                    delivery,
                    state: out_state,
                });
            }
            _ => state.pending.push_back(delivery),
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use midge_protocol::QoS;

    use super::*;
    use crate::retained::MemoryRetained;
    use crate::session::SessionLimits;
    use crate::store::MemorySessions;

    const LIMITS: SessionLimits = SessionLimits {
        max_inflight: 10,
        max_pending: 10,
    };

    fn registry() -> (Registry, Arc<Router>) {
        let router = Arc::new(Router::new(Arc::new(MemoryRetained::new()), Arc::default()));
        let reg = Registry::new(Arc::new(MemorySessions::new()), router.clone(), 100);
        (reg, router)
    }

    fn conn(id: u64) -> LiveConn {
        LiveConn::new(id)
    }

    fn granted(claim: Claim) -> (Arc<Mailbox>, Option<SessionState>) {
        match claim {
            Claim::Granted {
                mailbox, resumed, ..
            } => (mailbox, resumed),
            Claim::Busy(_) => panic!("busy"),
        }
    }

    fn subscribed_session(id: &Arc<str>, clean: bool, mb: &Arc<Mailbox>, r: &Router) -> Session {
        let mut s = Session::new(id.clone(), clean, 0, LIMITS, Instant::now());
        r.subscribe("t", mb, QoS::AtLeastOnce);
        let pkid = midge_protocol::PacketId::new(1).expect("id");
        s.subscribed(
            pkid,
            &[(
                "t".into(),
                midge_protocol::SubscribeReturnCode::Success(QoS::AtLeastOnce),
            )],
        );
        s
    }

    #[test]
    fn a_persistent_session_is_parked_and_resumed_with_its_queue() {
        let (reg, router) = registry();
        let id: Arc<str> = "c".into();
        let (mb, resumed) = granted(reg.claim(&id, false, &conn(1)));
        assert!(resumed.is_none());
        let s = subscribed_session(&id, false, &mb, &router);
        reg.release(1, &mb, s);
        assert_eq!((reg.len(), reg.parked()), (1, 1));
        // Offline: QoS 1 is queued for it.
        assert_eq!(router.publish("t", b"x", QoS::AtLeastOnce, false), 1);
        let (mb2, resumed) = granted(reg.claim(&id, false, &conn(2)));
        assert_eq!(mb2.id(), mb.id());
        assert_eq!(mb2.len(), 1);
        assert_eq!(resumed.expect("session present").subscriptions.len(), 1);
    }

    #[test]
    fn a_clean_session_ends_with_its_connection() {
        let (reg, router) = registry();
        let id: Arc<str> = "c".into();
        let (mb, _) = granted(reg.claim(&id, true, &conn(1)));
        let s = subscribed_session(&id, true, &mb, &router);
        reg.release(1, &mb, s);
        assert!(reg.is_empty());
        assert_eq!(router.subscription_count(), 0);
    }

    #[test]
    fn connecting_with_clean_session_discards_a_parked_session_mqtt_3_1_2_6() {
        let (reg, router) = registry();
        let id: Arc<str> = "c".into();
        let (mb, _) = granted(reg.claim(&id, false, &conn(1)));
        let s = subscribed_session(&id, false, &mb, &router);
        reg.release(1, &mb, s);
        let (mb2, resumed) = granted(reg.claim(&id, true, &conn(2)));
        assert!(resumed.is_none());
        assert_ne!(mb2.id(), mb.id());
        assert_eq!(router.subscription_count(), 0);
        assert_eq!(reg.parked(), 0);
    }

    #[test]
    fn a_second_connection_kicks_the_live_one_and_waits_for_it_mqtt_3_1_4_2() {
        let (reg, router) = registry();
        let id: Arc<str> = "c".into();
        let first = conn(1);
        let (mb, _) = granted(reg.claim(&id, false, &first));
        let s = subscribed_session(&id, false, &mb, &router);
        let Claim::Busy(wait) = reg.claim(&id, false, &conn(2)) else {
            panic!("not busy");
        };
        assert!(first.signal.is_kicked());
        assert!(!wait.has_exited());
        reg.release(1, &mb, s);
        drop(first.signal.exit_guard());
        assert!(wait.has_exited());
        let (_, resumed) = granted(reg.claim(&id, false, &conn(2)));
        assert!(resumed.is_some());
    }
}
