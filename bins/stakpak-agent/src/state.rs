//! What the registry and the session loops share: the session database, the counter that
//! wakes `WaitSession`, the configuration, and each live session's answers to its waiting
//! calls.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::{Notify, watch};
use tracing::warn;

use crate::{
    config::AgentdConfig,
    error::AgentError,
    events::Events,
    model::{Answer, Session, SessionState, ToolCall},
    store::Store,
};

/// A mutex whose holder panicked is still usable: every write to what it guards is one
/// statement or one transaction.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state behind every session.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    /// Bumped whenever a session's state changes (for `WaitSession`).
    changed: watch::Sender<u64>,
    pub config: watch::Receiver<Arc<AgentdConfig>>,
    pub config_dir: PathBuf,
    pub rulebook_dirs: Vec<PathBuf>,
}

impl Shared {
    pub fn new(
        store: Store,
        config: watch::Receiver<Arc<AgentdConfig>>,
        config_dir: PathBuf,
        rulebook_dirs: Vec<PathBuf>,
    ) -> Self {
        Shared {
            store: Mutex::new(store),
            changed: watch::channel(0).0,
            config,
            config_dir,
            rulebook_dirs,
        }
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Wakes whoever waits for a session to change.
    pub fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Follows [`Shared::bump`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn session(&self, id: &str) -> Result<Session, AgentError> {
        self.store()
            .info(id)?
            .ok_or_else(|| AgentError::NoSession(id.to_string()))
    }

    /// Records a session's state (a failure to is logged: the loop goes on), wakes the
    /// waiters and reports the change.
    pub async fn set_state(
        &self,
        events: &dyn Events,
        id: &str,
        state: SessionState,
        reason: &str,
    ) {
        if let Err(e) = self.store().set_state(id, state, reason) {
            warn!(session = id, error = %e, "cannot record the session's state");
        }
        self.bump();
        if let Ok(session) = self.session(id) {
            events.session_changed(&session).await;
        }
    }

    /// Records a tool call and reports it.
    pub async fn put_call(&self, events: &dyn Events, call: &ToolCall) {
        if let Err(e) = self.store().put_call(call) {
            warn!(session = %call.session, error = %e, "cannot record a tool call");
        }
        events.tool_call(call).await;
    }
}

/// The answers given to a live session's waiting calls, and a wake-up for its loop.
#[derive(Debug, Default)]
pub struct Answers {
    given: Mutex<HashMap<String, Answer>>,
    notify: Notify,
}

impl Answers {
    pub fn give(&self, call: &str, answer: Answer) {
        lock(&self.given).insert(call.to_string(), answer);
        self.notify.notify_waiters();
    }

    pub fn get(&self, call: &str) -> Option<Answer> {
        lock(&self.given).get(call).cloned()
    }

    /// Waits until every call of `ids` has an answer.
    pub async fn all(&self, ids: &[String]) {
        loop {
            let notified = self.notify.notified();
            let all = {
                let given = lock(&self.given);
                ids.iter().all(|i| given.contains_key(i))
            };
            if all {
                return;
            }
            notified.await;
        }
    }
}
