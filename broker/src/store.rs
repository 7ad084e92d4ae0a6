//! Where persistent sessions wait while their client is away.
//!
//! When a CleanSession=0 client disconnects, its connection parks the
//! session's [`SessionState`] (subscriptions, unacknowledged and waiting
//! messages, inbound QoS 2 ids) in a [`SessionStore`]; the next connection
//! with that client id takes it back. Messages that arrive meanwhile are
//! queued in the session's mailbox. [`MemorySessions`] keeps everything in
//! memory. Durability does not live here: a parked state is only a
//! snapshot, and the broker must promise more (each acknowledged message on
//! disk as it is acknowledged), so the journal ([`crate::persist`]) records
//! every change, online or parked, and restores parked sessions into this
//! store at start-up.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::session::SessionState;

/// Storage for the state of persistent sessions whose client is offline.
pub trait SessionStore: Send + Sync + 'static {
    /// Keeps `state` for `client_id`, replacing any earlier state.
    fn park(&self, client_id: &str, state: SessionState);

    /// Removes and returns the state parked for `client_id`.
    fn take(&self, client_id: &str) -> Option<SessionState>;

    /// The number of parked sessions.
    fn len(&self) -> usize;

    /// Whether no session is parked.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every parked session, for rebuilding routing state at start-up. The
    /// in-memory store starts empty.
    fn load(&self) -> Vec<(String, SessionState)> {
        Vec::new()
    }
}

/// The in-memory [`SessionStore`].
#[derive(Debug, Default)]
pub struct MemorySessions {
    parked: Mutex<HashMap<String, SessionState>>,
}

impl MemorySessions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionState>> {
        // Inserts and removals leave the map consistent even if a holder
        // panicked.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemorySessions {
    fn park(&self, client_id: &str, state: SessionState) {
        self.lock().insert(client_id.to_owned(), state);
    }

    fn take(&self, client_id: &str) -> Option<SessionState> {
        self.lock().remove(client_id)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_session_is_taken_back_once() {
        let store = MemorySessions::new();
        let state = SessionState {
            last_pkid: 9,
            ..SessionState::default()
        };
        store.park("a", state.clone());
        assert_eq!(store.len(), 1);
        assert_eq!(store.take("a"), Some(state));
        assert_eq!(store.take("a"), None);
        assert!(store.is_empty());
    }
}
