//! Graceful shutdown: one [`CancellationToken`] that every task watches and
//! one [`TaskTracker`] to wait for them all.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The broker's task set and its stop signal.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A new, running task set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token tasks watch: cancelled when shutdown starts.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a task that shutdown waits for.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Spawns a task on another runtime that shutdown waits for.
    pub fn spawn_on<F>(&self, task: F, runtime: &tokio::runtime::Handle)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn_on(task, runtime);
    }

    /// Signals every task to stop without waiting.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Signals every task to stop and waits up to `grace` for them; false
    /// if some were still running then.
    pub async fn run(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
