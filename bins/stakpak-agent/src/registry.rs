//! The sessions of this agent: starting one (new, more of one, or from a checkpoint),
//! listing, showing, waiting for one to stop, answering its waiting calls, cancelling it.
//!
//! Each started session gets one tokio task running its loop (`turn.rs`); the registry
//! keeps what it needs to reach that loop while it runs (a cancel switch and the answers to
//! its waiting calls).

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    error::AgentError,
    events::Link,
    model::{Answer, Detail, End, Session, SessionState, Start, Target, ToolCall, ToolCallState},
    state::{Answers, Shared, lock},
    store::now_ms,
    turn::Run,
};

/// A session whose loop runs.
#[derive(Debug)]
struct Live {
    cancel: watch::Sender<bool>,
    answers: Arc<Answers>,
}

/// The sessions of this agent.
#[derive(Debug, Clone)]
pub struct Manager {
    shared: Arc<Shared>,
    live: Arc<Mutex<HashMap<String, Live>>>,
}

/// `s-` and 12 random hex digits. No randomness is an error: an all-zero id would name the
/// same session every time.
fn new_session_id() -> Result<String, AgentError> {
    stakpak_util::random::id("s").map_err(AgentError::NoId)
}

impl Manager {
    /// The sessions over `shared` (store and settings); none runs yet.
    pub fn new(shared: Shared) -> Self {
        Manager {
            shared: Arc::new(shared),
            live: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn is_live(&self, id: &str) -> bool {
        lock(&self.live).contains_key(id)
    }

    pub fn list(&self) -> Result<Vec<Session>, AgentError> {
        Ok(self.shared.store().list()?)
    }

    pub fn show(&self, id: &str) -> Result<Detail, AgentError> {
        let session = self.shared.session(id)?;
        let store = self.shared.store();
        Ok(Detail {
            session,
            messages: store.messages(id)?,
            calls: store.calls(id)?,
        })
    }

    /// The session once it is not `running` any more, or as it is after `timeout_ms` (0: no
    /// limit).
    pub async fn wait(&self, id: &str, timeout_ms: u64) -> Result<Session, AgentError> {
        let mut changed = self.shared.subscribe();
        let wait = async {
            loop {
                let session = self.shared.session(id)?;
                if session.state != SessionState::Running {
                    return Ok(session);
                }
                if changed.changed().await.is_err() {
                    return Ok(session);
                }
            }
        };
        if timeout_ms == 0 {
            wait.await
        } else {
            match tokio::time::timeout(Duration::from_millis(timeout_ms), wait).await {
                Ok(r) => r,
                Err(_) => self.shared.session(id),
            }
        }
    }

    /// The id the loop will run: an existing session that is not running, or a new one
    /// (created here, empty or from a checkpoint).
    fn claim(&self, start: &Start) -> Result<String, AgentError> {
        let (id, checkpoint) = match &start.target {
            Target::Resume(id) => {
                let session = self.shared.session(id)?;
                if self.is_live(&session.id) {
                    return Err(AgentError::Running(session.id));
                }
                return Ok(session.id);
            }
            Target::New { id, checkpoint } => (id, checkpoint),
        };
        let id = match id {
            Some(id) => id.clone(),
            None => new_session_id()?,
        };
        let mut store = self.shared.store();
        if store.exists(&id)? {
            return Err(AgentError::Exists(id));
        }
        let session = Session {
            id: id.clone(),
            title: String::new(),
            profile: start.profile.clone(),
            model: start.model.clone().unwrap_or_default(),
            state: SessionState::Running,
            reason: String::new(),
            created_ms: now_ms(),
            updated_ms: now_ms(),
            turns: 0,
            input_tokens: 0,
            output_tokens: 0,
            pending: 0,
            checkpoint: None,
        };
        match checkpoint {
            None => store.create(&session, &start.workdir)?,
            Some(checkpoint) => {
                let from = store
                    .checkpoint_session(checkpoint)?
                    .ok_or_else(|| AgentError::NoCheckpoint(checkpoint.clone()))?;
                store.fork(&from, checkpoint, &session)?;
            }
        }
        Ok(id)
    }

    /// `Start`: a new session, more of one, or one from a checkpoint.
    pub async fn start(&self, start: Start, link: Link) -> Result<Session, AgentError> {
        let id = self.claim(&start)?;
        let (cancel, cancelled) = watch::channel(false);
        let answers = Arc::new(Answers::default());
        lock(&self.live).insert(
            id.clone(),
            Live {
                cancel,
                answers: Arc::clone(&answers),
            },
        );
        self.shared
            .set_state(&*link.events, &id, SessionState::Running, "")
            .await;
        let run = Run {
            shared: Arc::clone(&self.shared),
            link,
            id: id.clone(),
            start,
            cancel: cancelled,
            answers,
        };
        tokio::spawn(self.clone().drive(run));
        self.shared.session(&id)
    }

    /// Runs a session's loop to its end and records how it ended.
    async fn drive(self, run: Run) {
        let id = run.id.clone();
        let events = Arc::clone(&run.link.events);
        let End { state, reason } = run
            .go()
            .await
            .unwrap_or_else(|e| End::new(SessionState::Failed, e.to_string()));
        info!(session = %id, state = %state, reason = %reason, "session stopped");
        // The state is stored before the session stops counting as live, and only then
        // are waiters woken: whoever sees it gone sees its final state.
        if let Err(e) = self.shared.store().set_state(&id, state, &reason) {
            warn!(session = %id, error = %e, "cannot record the session's state");
        }
        lock(&self.live).remove(&id);
        self.shared.bump();
        if let Ok(session) = self.shared.session(&id) {
            events.session_changed(&session).await;
        }
    }

    /// Records `answer` for the waiting calls `ids` (empty: all of them) and hands it to the
    /// session's loop when it runs.
    fn decide(
        &self,
        id: &str,
        ids: &[String],
        answer: &Answer,
    ) -> Result<Vec<ToolCall>, AgentError> {
        let session = self.shared.session(id)?;
        let calls = self.shared.store().calls(id)?;
        let waiting: Vec<ToolCall> = calls
            .into_iter()
            .filter(|c| c.state == ToolCallState::WaitingApproval)
            .filter(|c| ids.is_empty() || ids.contains(&c.id))
            .collect();
        if let Some(missing) = ids.iter().find(|i| !waiting.iter().any(|c| &c.id == *i)) {
            return Err(AgentError::NotWaiting {
                call: missing.clone(),
                session: session.id,
            });
        }
        let mut decided = Vec::new();
        for mut call in waiting {
            match answer {
                Answer::Approve => call.state = ToolCallState::Approved,
                Answer::Reject(reason) => {
                    call.state = ToolCallState::Rejected;
                    call.reason = reason.clone();
                }
            }
            self.shared.store().put_call(&call)?;
            if let Some(live) = lock(&self.live).get(id) {
                live.answers.give(&call.id, answer.clone());
            }
            decided.push(call);
        }
        Ok(decided)
    }

    /// `Approve`/`Reject`. A paused session starts again once nothing waits any more.
    pub async fn answer(
        &self,
        id: &str,
        ids: &[String],
        answer: Answer,
        link: Link,
    ) -> Result<Vec<ToolCall>, AgentError> {
        let decided = self.decide(id, ids, &answer)?;
        for call in &decided {
            link.events.tool_call(call).await;
        }
        let session = self.shared.session(id)?;
        if !self.is_live(id) && session.pending == 0 && session.state == SessionState::Paused {
            self.start(Start::resume(id, &session.profile), link)
                .await?;
        }
        Ok(decided)
    }

    /// `Cancel`: a running loop stops at its next step (waited for, up to 10 s); a stopped
    /// session that is not finished becomes `cancelled`.
    pub async fn cancel(&self, id: &str, link: Link) -> Result<Session, AgentError> {
        let session = self.shared.session(id)?;
        let live = lock(&self.live)
            .get(id)
            .map(|l| l.cancel.send(true).is_ok());
        if live.is_none() && !session.state.is_stopped() {
            self.shared
                .set_state(
                    &*link.events,
                    id,
                    SessionState::Cancelled,
                    SessionState::Cancelled.as_str(),
                )
                .await;
        }
        if live.is_some() {
            // The loop stops at its next step and records the state itself.
            let mut changed = self.shared.subscribe();
            let gone = async {
                while self.is_live(id) {
                    if changed.changed().await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), gone).await;
        }
        self.shared.session(id)
    }
}
