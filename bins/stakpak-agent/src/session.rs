//! Sessions: the registry of live loops, approvals, and the loop itself.
//!
//! One tokio task runs a session's loop: a model turn (streamed; text deltas become
//! signals), then each tool call of the turn — parsed, checked against the profile, judged
//! by the warden (advisory here; sandboxd enforces), approved (by the profile, or by a human
//! through `Approve`/`Reject`), carried out through sandboxd — and a checkpoint in the
//! session database after every turn and at every pause. Whatever the loop hands the model
//! or stores has passed secretd first: prompts through `Register`, tool output through
//! sandboxd's redaction.
//!
//! A session stops when the model answers without tool calls (`finished`), after
//! `max_steps` turns (`max-turns`), on `Cancel`, on an error (`failed`), when it asks the
//! user (`waiting-user`: the next prompt is the answer), or, with `pause_on_approval`, when a
//! call waits for approval (`paused`: `Approve`/`Reject` start it again).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use stakpak_config::{AgentConfig, Profile};
use stakpak_llm::{ChatRequest, Client, Message, ProviderConfig, ToolCall, Usage};
use stakpak_proto::{
    AgentInterface, Caller, CheckKind, CheckRequest, Decision as Verdict, Error, SecretsProxy,
    SessionDetail, SessionInfo, SessionState as St, StartRequest, ToolCallInfo,
    ToolCallState as Tc, WardenProxy, session_path, zbus,
};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::{
    config::AgentdConfig,
    dbus::Handler,
    store::{Store, now_ms},
    tools::{self, Call, Outcome, READ_ONLY},
};

/// What a human decided about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Approve,
    Reject(String),
}

/// A session whose loop runs.
#[derive(Debug)]
struct Live {
    cancel: watch::Sender<bool>,
    decisions: Arc<Mutex<HashMap<String, Decision>>>,
    decided: Arc<Notify>,
}

/// The sessions of this agent.
#[derive(Debug, Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Mutex<Store>,
    live: Mutex<HashMap<String, Live>>,
    /// Woken whenever a session's state changes (for `WaitSession`).
    changed: watch::Sender<u64>,
    config: watch::Receiver<Arc<AgentdConfig>>,
    config_dir: PathBuf,
    rulebook_dirs: Vec<PathBuf>,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// `[A-Za-z0-9_-]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("s-{hex}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a loop ended.
enum End {
    State(St, String),
}

impl Manager {
    pub fn new(
        store: Store,
        config: watch::Receiver<Arc<AgentdConfig>>,
        config_dir: PathBuf,
        rulebook_dirs: Vec<PathBuf>,
    ) -> Self {
        Manager {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                live: Mutex::new(HashMap::new()),
                changed: watch::channel(0).0,
                config,
                config_dir,
                rulebook_dirs,
            }),
        }
    }

    fn bump(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn info(&self, id: &str) -> Result<SessionInfo, Error> {
        lock(&self.inner.store)
            .info(id)
            .map_err(internal)?
            .ok_or_else(|| Error::InvalidArgument(format!("no session {id:?}")))
    }

    async fn set_state(&self, conn: &zbus::Connection, id: &str, state: St, reason: &str) {
        if let Err(e) = lock(&self.inner.store).set_state(id, state, reason) {
            warn!(session = id, error = %e, "cannot record the session's state");
        }
        self.bump();
        if let Ok(info) = self.info(id) {
            emit_session(conn, &info).await;
        }
    }

    pub fn list(&self) -> Result<Vec<SessionInfo>, Error> {
        lock(&self.inner.store).list().map_err(internal)
    }

    pub fn show(&self, id: &str) -> Result<SessionDetail, Error> {
        let info = self.info(id)?;
        let store = lock(&self.inner.store);
        Ok(SessionDetail {
            info,
            messages: store.messages(id).map_err(internal)?,
            tool_calls: store.calls(id).map_err(internal)?,
        })
    }

    pub async fn wait(&self, id: &str, timeout_ms: u64) -> Result<SessionInfo, Error> {
        let mut changed = self.inner.changed.subscribe();
        let wait = async {
            loop {
                let info = self.info(id)?;
                if info.state != St::Running {
                    return Ok(info);
                }
                if changed.changed().await.is_err() {
                    return Ok(info);
                }
            }
        };
        if timeout_ms == 0 {
            wait.await
        } else {
            match tokio::time::timeout(Duration::from_millis(timeout_ms), wait).await {
                Ok(r) => r,
                Err(_) => self.info(id),
            }
        }
    }

    /// `Start`: a new session, more of one, or one from a checkpoint.
    pub async fn start(
        &self,
        request: StartRequest,
        caller: &Caller,
    ) -> Result<SessionInfo, Error> {
        let conn = caller.connection.clone();
        let profile_name = if request.profile.is_empty() {
            "default".to_string()
        } else {
            request.profile.clone()
        };
        let id = if !request.session.is_empty() {
            if !valid_id(&request.session) {
                return Err(Error::InvalidArgument(format!(
                    "session {:?} is not 1 to 64 of A-Z a-z 0-9 _ -",
                    request.session
                )));
            }
            let info = self.info(&request.session)?;
            if lock(&self.inner.live).contains_key(&info.id) {
                return Err(Error::InvalidArgument(format!(
                    "session {} is running; wait for it, approve its calls or cancel it",
                    info.id
                )));
            }
            info.id
        } else {
            let id = if request.new_id.is_empty() {
                new_session_id()
            } else if valid_id(&request.new_id) {
                request.new_id.clone()
            } else {
                return Err(Error::InvalidArgument(format!(
                    "new_id {:?} is not 1 to 64 of A-Z a-z 0-9 _ -",
                    request.new_id
                )));
            };
            let mut store = lock(&self.inner.store);
            if store.exists(&id).map_err(internal)? {
                return Err(Error::InvalidArgument(format!(
                    "session {id} exists already"
                )));
            }
            let info = SessionInfo {
                id: id.clone(),
                title: String::new(),
                profile: profile_name.clone(),
                model: request.model.clone(),
                state: St::Running,
                created_ms: now_ms(),
                updated_ms: now_ms(),
                ..SessionInfo::default()
            };
            if request.checkpoint.is_empty() {
                store.create(&info, &request.workdir).map_err(internal)?;
            } else {
                let from = store
                    .checkpoint_session(&request.checkpoint)
                    .map_err(internal)?
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("no checkpoint {:?}", request.checkpoint))
                    })?;
                store
                    .fork(&from, &request.checkpoint, &info)
                    .map_err(internal)?;
            }
            id
        };
        // The title is the first line of the first prompt, redacted.
        let (cancel, _) = watch::channel(false);
        let live = Live {
            cancel,
            decisions: Arc::new(Mutex::new(HashMap::new())),
            decided: Arc::new(Notify::new()),
        };
        let cancel_rx = live.cancel.subscribe();
        let decisions = Arc::clone(&live.decisions);
        let decided = Arc::clone(&live.decided);
        lock(&self.inner.live).insert(id.clone(), live);
        self.set_state(&conn, &id, St::Running, "").await;
        let this = self.clone();
        let loop_id = id.clone();
        tokio::spawn(async move {
            let run = Run {
                manager: this.clone(),
                conn: conn.clone(),
                id: loop_id.clone(),
                request,
                profile_name,
                cancel: cancel_rx,
                decisions,
                decided,
            };
            let End::State(state, reason) = match run.go().await {
                Ok(end) => end,
                Err(e) => End::State(St::Failed, e),
            };
            info!(session = %loop_id, state = %state, reason = %reason, "session stopped");
            // The state is stored before the session stops counting as live, and only then
            // are waiters woken: whoever sees it gone sees its final state.
            if let Err(e) = lock(&this.inner.store).set_state(&loop_id, state, &reason) {
                warn!(session = %loop_id, error = %e, "cannot record the session's state");
            }
            lock(&this.inner.live).remove(&loop_id);
            this.bump();
            if let Ok(info) = this.info(&loop_id) {
                emit_session(&conn, &info).await;
            }
        });
        self.info(&id)
    }

    fn decide(
        &self,
        id: &str,
        ids: &[String],
        decision: Decision,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        let info = self.info(id)?;
        let calls = lock(&self.inner.store).calls(id).map_err(internal)?;
        let waiting: Vec<ToolCallInfo> = calls
            .into_iter()
            .filter(|c| c.state == Tc::WaitingApproval)
            .filter(|c| ids.is_empty() || ids.contains(&c.id))
            .collect();
        if let Some(missing) = ids.iter().find(|i| !waiting.iter().any(|c| &c.id == *i)) {
            return Err(Error::InvalidArgument(format!(
                "no tool call {missing:?} waiting for approval in session {}",
                info.id
            )));
        }
        let mut decided = Vec::new();
        for mut call in waiting {
            call.state = match &decision {
                Decision::Approve => Tc::Approved,
                Decision::Reject(_) => Tc::Rejected,
            };
            if let Decision::Reject(reason) = &decision {
                call.reason = reason.clone();
            }
            lock(&self.inner.store).put_call(&call).map_err(internal)?;
            if let Some(live) = lock(&self.inner.live).get(id) {
                lock(&live.decisions).insert(call.id.clone(), decision.clone());
                live.decided.notify_waiters();
            }
            decided.push(call);
        }
        Ok(decided)
    }

    /// `Approve`/`Reject`. A paused session starts again once nothing waits any more.
    pub async fn approve_or_reject(
        &self,
        id: &str,
        ids: Vec<String>,
        reject: Option<String>,
        caller: &Caller,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        let decision = match reject {
            None => Decision::Approve,
            Some(reason) => Decision::Reject(reason),
        };
        let decided = self.decide(id, &ids, decision)?;
        for call in &decided {
            emit_call(&caller.connection, call).await;
        }
        let info = self.info(id)?;
        let running = lock(&self.inner.live).contains_key(id);
        if !running && info.pending == 0 && info.state == St::Paused {
            self.start(
                StartRequest {
                    session: id.to_string(),
                    profile: info.profile.clone(),
                    ..StartRequest::default()
                },
                caller,
            )
            .await?;
        }
        Ok(decided)
    }

    pub async fn cancel(&self, id: &str, conn: &zbus::Connection) -> Result<SessionInfo, Error> {
        let info = self.info(id)?;
        let live = lock(&self.inner.live)
            .get(id)
            .map(|l| l.cancel.send(true).is_ok());
        if live.is_none() && !info.state.is_stopped() {
            self.set_state(conn, id, St::Cancelled, "cancelled").await;
        }
        if live.is_some() {
            // The loop stops at its next step and records the state itself.
            let mut changed = self.inner.changed.subscribe();
            let gone = async {
                while lock(&self.inner.live).contains_key(id) {
                    if changed.changed().await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), gone).await;
        }
        self.info(id)
    }
}

async fn emit_session(conn: &zbus::Connection, info: &SessionInfo) {
    let path = session_path(&info.id);
    if let Ok(emitter) = zbus::object_server::SignalEmitter::new(conn, path) {
        let _ = AgentInterface::<Handler>::session_changed(&emitter, info.clone()).await;
    }
}

async fn emit_call(conn: &zbus::Connection, call: &ToolCallInfo) {
    let path = session_path(&call.session);
    if let Ok(emitter) = zbus::object_server::SignalEmitter::new(conn, path) {
        let _ = AgentInterface::<Handler>::tool_call(&emitter, call.clone()).await;
    }
}

/// One run of a session's loop.
struct Run {
    manager: Manager,
    conn: zbus::Connection,
    id: String,
    request: StartRequest,
    profile_name: String,
    cancel: watch::Receiver<bool>,
    decisions: Arc<Mutex<HashMap<String, Decision>>>,
    decided: Arc<Notify>,
}

const DEFAULT_SYSTEM_PROMPT: &str = "You are stakpak, a DevOps agent that lives on this Linux server and keeps its applications running. \
You act only through your tools: every command runs in a sandbox after a policy check, and credentials appear to you only as placeholders such as {{secret:NAME}} or [REDACTED_SECRET:rule:code] \
(use them as they are in commands and files; they are filled in inside the sandbox). Diagnose with read-only commands first, change as little as needed, \
verify the result, and ask the user before anything destructive or irreversible. When a call is refused, read the reason and take another way. \
Finish with a short report of what you found and did.";

impl Run {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        lock(&self.manager.inner.store)
    }

    async fn go(mut self) -> Result<End, String> {
        let config = Arc::clone(&self.manager.inner.config.borrow());
        let profile = self.profile()?;
        let model = if self.request.model.is_empty() {
            profile.model.clone()
        } else {
            match self.request.model.split_once('/') {
                Some((key, model)) if key == profile.provider_key => model.to_string(),
                _ => {
                    return Err(format!(
                        "model {:?} must be `{}/<model>`: profile {} uses provider {}",
                        self.request.model,
                        profile.provider_key,
                        profile.name,
                        profile.provider_key
                    ));
                }
            }
        };
        let model_label = format!("{}/{model}", profile.provider_key);
        self.store()
            .set_model(&self.id, &profile.name, &model_label)
            .map_err(|e| e.to_string())?;
        let mut provider = ProviderConfig::new(
            profile.provider.kind,
            profile.provider.base_url.clone(),
            profile.provider.api_key.clone(),
        );
        provider.timeout = Duration::from_secs(config.llm.timeout_secs);
        provider.idle_timeout = Duration::from_secs(config.llm.idle_timeout_secs);
        provider.max_retries = config.llm.max_retries;
        let client = Client::new(provider).map_err(|e| e.to_string())?;

        // Where the loop starts: the newest checkpoint.
        let resumed = self
            .store()
            .resume(&self.id, None)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("session {} has no checkpoint to resume from", self.id))?;
        let mut messages = resumed.messages;
        let mut stored = messages.len();
        let mut turn = resumed.info.turns;

        // The prompt, redacted (and remembered in the session) by secretd.
        let mut prompt = self.request.prompt.clone();
        if !self.request.context.is_empty() {
            prompt = format!(
                "{prompt}\n\n<project-context>\n{}\n</project-context>",
                self.request.context
            );
        }
        if !prompt.trim().is_empty() {
            let redacted = self.register(&prompt, config.peers.timeout_ms).await?;
            // An answer to ask_user becomes that call's result; anything else a user message.
            let pending_question = pending_calls(&messages)
                .into_iter()
                .find(|c| c.name == "ask_user")
                .map(|c| c.id.clone());
            match pending_question {
                Some(call_id) => messages.push(Message::Tool {
                    call_id,
                    content: redacted.clone(),
                    is_error: false,
                }),
                None => messages.push(Message::User {
                    text: redacted.clone(),
                }),
            }
            if resumed.info.title.is_empty() {
                let title: String = redacted
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect();
                let _ = self.store().set_title(&self.id, &title);
            }
        }
        if messages.is_empty() {
            return Err("nothing to do: the session has no prompt".into());
        }

        let system = self.system_prompt(&profile)?;
        let specs: Vec<_> = tools::specs()
            .into_iter()
            .filter(|s| profile.tool_allowed(&s.name))
            .collect();
        let max_steps = if self.request.max_steps > 0 {
            self.request.max_steps
        } else {
            profile.max_turns
        };
        let mut steps = 0u32;
        loop {
            // Calls of the last turn that have no result yet (a resumed or paused turn).
            let open = pending_calls(&messages);
            if !open.is_empty() {
                match self
                    .handle_calls(&open, turn, &profile, &mut messages, &config)
                    .await?
                {
                    None => {}
                    Some(end) => {
                        self.checkpoint(turn, &messages, &mut stored, Usage::default())?;
                        return Ok(end);
                    }
                }
                self.checkpoint(turn, &messages, &mut stored, Usage::default())?;
                if self.request.one_step && steps > 0 {
                    return Ok(End::State(St::Paused, "one step done".into()));
                }
            }
            if self.cancelled() {
                return Ok(End::State(St::Cancelled, "cancelled".into()));
            }
            if steps >= max_steps {
                return Ok(End::State(
                    St::MaxTurns,
                    format!("stopped after {max_steps} turns"),
                ));
            }
            steps += 1;
            turn += 1;
            let request = ChatRequest {
                model: model.clone(),
                system: system.clone(),
                messages: within_budget(&messages, config.run.context_budget_chars),
                tools: specs.clone(),
                max_tokens: config.run.max_tokens,
            };
            let response = self.chat(&client, &request).await?;
            let Some(response) = response else {
                return Ok(End::State(St::Cancelled, "cancelled".into()));
            };
            messages.push(Message::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            for call in &response.tool_calls {
                let info = ToolCallInfo {
                    id: call.id.clone(),
                    session: self.id.clone(),
                    turn,
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    state: Tc::Proposed,
                    ..ToolCallInfo::default()
                };
                self.put_call(&info).await;
            }
            self.checkpoint(turn, &messages, &mut stored, response.usage)?;
            if response.tool_calls.is_empty() {
                return Ok(End::State(St::Finished, String::new()));
            }
        }
    }

    fn profile(&self) -> Result<Profile, String> {
        let dir = &self.manager.inner.config_dir;
        let config = AgentConfig::load(&dir.join("config.toml")).map_err(|e| e.to_string())?;
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|d| PathBuf::from(d).join("llm-credentials.toml"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| dir.join("credentials.toml"));
        let credentials = credentials.exists().then_some(credentials);
        config
            .profile(
                &self.profile_name,
                &|name| std::env::var(name).ok(),
                credentials.as_deref(),
            )
            .map_err(|e| e.to_string())
    }

    fn system_prompt(&self, profile: &Profile) -> Result<String, String> {
        let mut system = profile
            .system_prompt
            .clone()
            .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_string());
        let all = stakpak_config::load_rulebooks(&self.manager.inner.rulebook_dirs)
            .map_err(|e| e.to_string())?;
        let selected = profile.rulebooks.select(&all);
        if !selected.is_empty() {
            system.push_str("\n\n# Rulebooks (standard operating procedures)\n");
            for rb in selected {
                system.push_str(&format!(
                    "\n## {} — {}\n\n{}\n",
                    rb.uri,
                    rb.description,
                    rb.body.trim()
                ));
            }
        }
        Ok(system)
    }

    async fn register(&self, text: &str, timeout_ms: u64) -> Result<String, String> {
        let call = async {
            let secrets = SecretsProxy::new(&self.conn).await?;
            secrets.register(self.id.clone(), text.to_string()).await
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), call).await {
            Ok(Ok(reply)) => Ok(reply.redacted),
            Ok(Err(e)) => Err(format!(
                "secretd could not redact the prompt, so it was not sent to the model: {e}"
            )),
            Err(_) => Err("secretd did not answer; the prompt was not sent to the model".into()),
        }
    }

    /// One model turn; `None` when cancelled.
    async fn chat(
        &mut self,
        client: &Client,
        request: &ChatRequest,
    ) -> Result<Option<stakpak_llm::ChatResponse>, String> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let conn = self.conn.clone();
        let id = self.id.clone();
        let forward = tokio::spawn(async move {
            let path = session_path(&id);
            let Ok(emitter) = zbus::object_server::SignalEmitter::new(&conn, path) else {
                return;
            };
            while let Some(text) = rx.recv().await {
                let _ = AgentInterface::<Handler>::text_delta(&emitter, &id, &text).await;
            }
        });
        let mut on_text = move |t: &str| {
            let _ = tx.send(t.to_string());
        };
        let mut cancel = self.cancel.clone();
        let result = tokio::select! {
            r = client.chat(request, &mut on_text) => Some(r),
            _ = cancel.wait_for(|c| *c) => None,
        };
        drop(on_text);
        let _ = forward.await;
        match result {
            None => Ok(None),
            Some(Ok(response)) => Ok(Some(response)),
            Some(Err(e)) => Err(format!("the model call failed: {e}")),
        }
    }

    async fn put_call(&self, call: &ToolCallInfo) {
        if let Err(e) = self.store().put_call(call) {
            warn!(session = %self.id, error = %e, "cannot record a tool call");
        }
        emit_call(&self.conn, call).await;
    }

    fn checkpoint(
        &self,
        turn: u32,
        messages: &[Message],
        stored: &mut usize,
        usage: Usage,
    ) -> Result<(), String> {
        self.store()
            .checkpoint(&self.id, turn, messages, *stored, usage)
            .map_err(|e| e.to_string())?;
        *stored = messages.len();
        self.manager.bump();
        Ok(())
    }

    /// Handles the calls of the last assistant message that have no result yet. `Some` when
    /// the loop must stop (waiting for the user, paused for approval, cancelled).
    async fn handle_calls(
        &mut self,
        open: &[ToolCall],
        turn: u32,
        profile: &Profile,
        messages: &mut Vec<Message>,
        config: &AgentdConfig,
    ) -> Result<Option<End>, String> {
        let known: HashMap<String, ToolCallInfo> = self
            .store()
            .calls(&self.id)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        // First pass: judge every call; collect those that need a human.
        let mut ready: Vec<(ToolCall, ToolCallInfo, Result<Call, String>)> = Vec::new();
        for call in open {
            let mut info = known
                .get(&call.id)
                .cloned()
                .unwrap_or_else(|| ToolCallInfo {
                    id: call.id.clone(),
                    session: self.id.clone(),
                    turn,
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    state: Tc::Proposed,
                    ..ToolCallInfo::default()
                });
            let parsed = Call::parse(&call.name, &call.arguments);
            if info.state == Tc::Proposed {
                match &parsed {
                    Err(_) => {}
                    Ok(_) if !profile.tool_allowed(&call.name) => {}
                    Ok(parsed) => {
                        let approval = self.approval(profile, parsed, &mut info, config).await;
                        match approval {
                            Approval::Auto => info.state = Tc::Approved,
                            Approval::Ask(why) => {
                                info.state = Tc::WaitingApproval;
                                info.approval = why;
                            }
                            Approval::Denied => info.state = Tc::Denied,
                        }
                    }
                }
                self.put_call(&info).await;
            }
            if info.state == Tc::Running {
                // The agent stopped while it ran: its effect is unknown, do not run it twice.
                info.state = Tc::Failed;
                info.is_error = true;
                info.output = "interrupted by a restart of the agent while it ran; check its effect before running it again".into();
            }
            ready.push((call.clone(), info, parsed));
        }
        let waiting: Vec<&ToolCallInfo> = ready
            .iter()
            .map(|(_, i, _)| i)
            .filter(|i| i.state == Tc::WaitingApproval)
            .collect();
        if !waiting.is_empty() {
            if self.request.pause_on_approval {
                return Ok(Some(End::State(
                    St::Paused,
                    format!("{} tool call(s) wait for approval", waiting.len()),
                )));
            }
            self.manager
                .set_state(&self.conn, &self.id, St::WaitingApproval, "")
                .await;
            // Wait until each is decided (or the session is cancelled).
            let ids: Vec<String> = waiting.iter().map(|i| i.id.clone()).collect();
            loop {
                let notified = self.decided.notified();
                let all = {
                    let d = lock(&self.decisions);
                    ids.iter().all(|i| d.contains_key(i))
                };
                if all {
                    break;
                }
                let mut cancel = self.cancel.clone();
                tokio::select! {
                    _ = notified => {}
                    _ = cancel.wait_for(|c| *c) => return Ok(Some(End::State(St::Cancelled, "cancelled".into()))),
                }
            }
            self.manager
                .set_state(&self.conn, &self.id, St::Running, "")
                .await;
        }
        // Second pass: carry out what was approved, in order.
        for (call, mut info, parsed) in ready {
            if self.cancelled() {
                return Ok(Some(End::State(St::Cancelled, "cancelled".into())));
            }
            let decision = lock(&self.decisions).get(&info.id).cloned();
            match decision {
                Some(Decision::Approve) => info.state = Tc::Approved,
                Some(Decision::Reject(reason)) => {
                    info.state = Tc::Rejected;
                    info.reason = reason;
                }
                None => {}
            }
            let outcome = match (&parsed, info.state) {
                (Err(message), _) => Outcome::error(message.clone()),
                (Ok(_), _) if !profile.tool_allowed(&call.name) => Outcome::error(format!(
                    "the tool {} is not allowed in profile {}",
                    call.name, profile.name
                )),
                (_, Tc::Failed) => Outcome::error(info.output.clone()),
                (_, Tc::Denied) => Outcome::error(format!(
                    "refused by the warden ({}, rule {}): {}",
                    info.decision, info.rule, info.reason
                )),
                (_, Tc::Rejected) => Outcome::error(if info.reason.is_empty() {
                    "the user rejected this call".to_string()
                } else {
                    format!("the user rejected this call: {}", info.reason)
                }),
                (Ok(parsed), Tc::Approved) => {
                    if parsed.name == "ask_user" {
                        let question = parsed
                            .args
                            .get("question")
                            .and_then(|q| q.as_str())
                            .unwrap_or("(no question given)")
                            .to_string();
                        info.state = Tc::Done;
                        info.output = question.clone();
                        self.put_call(&info).await;
                        return Ok(Some(End::State(St::WaitingUser, question)));
                    }
                    info.state = Tc::Running;
                    self.put_call(&info).await;
                    if parsed.name == "generate_password" {
                        self.generate_password(parsed, config.peers.timeout_ms)
                            .await
                    } else {
                        tools::run(
                            parsed,
                            &tools::Context {
                                connection: &self.conn,
                                session: &self.id,
                                command_timeout: config.run.command_timeout_secs,
                            },
                        )
                        .await
                    }
                }
                (Ok(_), other) => Outcome::error(format!("the call is {other}; not run")),
            };
            info.state = match info.state {
                Tc::Running | Tc::Approved => {
                    if outcome.is_error {
                        Tc::Failed
                    } else {
                        Tc::Done
                    }
                }
                other => other,
            };
            if !outcome.rule.is_empty() {
                info.decision = outcome.decision;
                info.rule = outcome.rule.clone();
                info.reason = outcome.reason.clone();
            }
            info.output = outcome.content.clone();
            info.is_error = outcome.is_error;
            self.put_call(&info).await;
            messages.push(Message::Tool {
                call_id: call.id.clone(),
                content: outcome.content,
                is_error: outcome.is_error,
            });
        }
        Ok(None)
    }

    /// Whether a call runs without asking: the profile's auto_approve, read-only tools, and
    /// the warden's advisory verdict (`ask` asks, `deny` refuses at once).
    async fn approval(
        &self,
        profile: &Profile,
        call: &Call,
        info: &mut ToolCallInfo,
        config: &AgentdConfig,
    ) -> Approval {
        if let Some(command) = call.command() {
            let verdict =
                tokio::time::timeout(Duration::from_millis(config.peers.timeout_ms), async {
                    let warden = WardenProxy::new(&self.conn).await?;
                    warden
                        .check(CheckRequest {
                            kind: CheckKind::Command,
                            subject: command.to_string(),
                            session: self.id.clone(),
                        })
                        .await
                })
                .await;
            match verdict {
                Ok(Ok(v)) => {
                    info.decision = v.decision.into();
                    info.rule = v.rule.clone();
                    info.reason = v.reason.clone();
                    match v.decision {
                        Verdict::Deny => return Approval::Denied,
                        Verdict::Ask => {
                            return Approval::Ask(format!(
                                "warden: {}",
                                if v.rule.is_empty() { v.reason } else { v.rule }
                            ));
                        }
                        Verdict::Allow => {}
                    }
                }
                // No advisory verdict: ask a human (sandboxd will still judge).
                _ => return Approval::Ask("warden unavailable".into()),
            }
            let (program, sub) = tools::program_and_subcommand(command);
            let whole_tool = profile.auto_approves(&call.name, None, None);
            let by_key = tools::is_simple(command)
                && profile.auto_approves(&call.name, program.as_deref(), sub.as_deref());
            return if whole_tool || by_key {
                Approval::Auto
            } else {
                Approval::Ask("profile".into())
            };
        }
        if READ_ONLY.contains(&call.name.as_str())
            || call.name == "ask_user"
            || profile.auto_approves(&call.name, None, None)
        {
            Approval::Auto
        } else {
            Approval::Ask("profile".into())
        }
    }

    /// A random password the model never sees: secretd remembers it in the session and the
    /// model gets its placeholder.
    async fn generate_password(&self, call: &Call, timeout_ms: u64) -> Outcome {
        let length = call
            .args
            .get("length")
            .and_then(|v| v.as_u64())
            .unwrap_or(24)
            .clamp(8, 128) as usize;
        let symbols = call
            .args
            .get("symbols")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let alphabet: &[u8] = if symbols {
            b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.:+=@%"
        } else {
            b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
        };
        let mut bytes = vec![0u8; length];
        if getrandom::fill(&mut bytes).is_err() {
            return Outcome::error("no randomness available to generate a password");
        }
        let password: String = bytes
            .iter()
            .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
            .collect();
        let call = async {
            let secrets = SecretsProxy::new(&self.conn).await?;
            secrets
                .remember(self.id.clone(), "generated-password".into(), password)
                .await
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), call).await {
            Ok(Ok(placeholder)) => Outcome::ok(format!(
                "generated a {length}-character password: {placeholder} (use this placeholder; the value is filled in inside the sandbox)"
            )),
            Ok(Err(e)) => Outcome::error(format!("secretd could not keep the password: {e}")),
            Err(_) => Outcome::error("secretd did not answer"),
        }
    }
}

enum Approval {
    Auto,
    Ask(String),
    Denied,
}

/// Calls of the last assistant message without a tool result after it.
fn pending_calls(messages: &[Message]) -> Vec<ToolCall> {
    let Some(pos) = messages
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))
    else {
        return Vec::new();
    };
    let Message::Assistant { tool_calls, .. } = &messages[pos] else {
        return Vec::new();
    };
    let answered: Vec<&str> = messages[pos + 1..]
        .iter()
        .filter_map(|m| match m {
            Message::Tool { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    tool_calls
        .iter()
        .filter(|c| !answered.contains(&c.id.as_str()))
        .cloned()
        .collect()
}

/// The messages as sent to the model: when they are longer than `budget` characters, the
/// oldest tool results are cut to a note first (the stored session keeps them whole).
fn within_budget(messages: &[Message], budget: usize) -> Vec<Message> {
    let size = |m: &Message| match m {
        Message::User { text } => text.len(),
        Message::Assistant { text, tool_calls } => {
            text.len() + tool_calls.iter().map(|c| c.arguments.len()).sum::<usize>()
        }
        Message::Tool { content, .. } => content.len(),
    };
    let mut out = messages.to_vec();
    let mut total: usize = out.iter().map(size).sum();
    // Never the last message: the model must see what it is answering.
    let last = out.len().saturating_sub(1);
    for m in out.iter_mut().take(last) {
        if total <= budget {
            break;
        }
        if let Message::Tool { content, .. } = m
            && content.len() > 200
        {
            let note = format!(
                "[output of {} bytes trimmed to save context; run the tool again if you need it]",
                content.len()
            );
            total = total - content.len() + note.len();
            *content = note;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "run_command".into(),
            arguments: "{}".into(),
        }
    }

    #[test]
    fn pending_and_budget() {
        let mut m = vec![
            Message::User { text: "go".into() },
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![call("a"), call("b")],
            },
            Message::Tool {
                call_id: "a".into(),
                content: "x".repeat(1000),
                is_error: false,
            },
        ];
        let open = pending_calls(&m);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, "b");
        m.push(Message::User {
            text: "more".into(),
        });
        let trimmed = within_budget(&m, 100);
        let Message::Tool { content, .. } = &trimmed[2] else {
            panic!()
        };
        assert!(content.starts_with("[output of 1000 bytes trimmed"));
        assert_eq!(within_budget(&m, 10_000), m);
        assert!(valid_id("s-abc_1") && !valid_id("a/b") && !valid_id(""));
    }
}
