//! The Slack channel: Socket Mode in, Web API out, one Slack thread = one agent session.
//!
//! [`SlackChannel::run`] keeps a Socket Mode connection (slack-morphism; it acknowledges
//! every envelope and reconnects when the connection drops or Slack asks it to). An app
//! mention, or a message in a DM, gets an `:eyes:` reaction and starts the thread's agent
//! session (or continues it: the caller's [`ThreadStore`] maps the thread to the session).
//! The work runs in its own task so the envelope is acknowledged at once, as Slack wants
//! within three seconds. Tool calls waiting for approval are posted in the thread with
//! Allow/Deny buttons whose value names the session and the call; a press becomes
//! `Approve`/`Reject` and the message is updated to say who decided. When the session stops,
//! its last assistant message is posted in the thread. [`SlackChannel::notify`] posts the
//! scheduler's notifications.
//!
//! The tokens are [`SlackToken`]s: `Debug` prints their kind only, and no error or log line
//! carries them.

use std::{collections::HashMap, collections::HashSet, sync::Arc, sync::Mutex, time::Duration};

use async_trait::async_trait;
use slack_morphism::prelude::*;
use stakpak_proto::{
    ChannelState, Role, SessionDetail, SessionInfo, SessionState, StartRequest, ToolCallInfo,
    ToolCallState,
};
use stakpak_util::now_ms;
use tracing::{debug, warn};

/// Action id of the Allow button.
pub const ALLOW_ACTION: &str = "stakpak-allow";
/// Action id of the Deny button.
pub const DENY_ACTION: &str = "stakpak-deny";

/// How often a session waiting for approval is looked at again.
const APPROVAL_POLL: Duration = Duration::from_millis(300);

/// A Slack token (`xoxb-…` bot or `xapp-…` app); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackToken(String);

impl SlackToken {
    pub fn new(value: impl Into<String>) -> SlackToken {
        SlackToken(value.into())
    }

    fn api_token(&self) -> SlackApiToken {
        SlackApiToken::new(SlackApiTokenValue::new(self.0.clone()))
    }
}

impl std::fmt::Debug for SlackToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.0.split('-').next().unwrap_or("");
        let kind = if matches!(kind, "xoxb" | "xapp" | "xoxp") {
            kind
        } else {
            "?"
        };
        write!(f, "SlackToken({kind}-***)")
    }
}

/// What the channel needs to run.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The bot token, for the Web API.
    pub bot_token: SlackToken,
    /// The app-level token (`connections:write`), for Socket Mode.
    pub app_token: SlackToken,
    /// The Web API base URL without a trailing slash; `None`: `https://slack.com/api`.
    pub api_url: Option<String>,
    /// The agent profile of sessions started from Slack; empty: `default`.
    pub profile: String,
    /// Seconds between attempts to connect again when `apps.connections.open` or the
    /// WebSocket fails (a dropped connection is reopened at once first).
    pub reconnect_secs: u64,
}

impl SlackConfig {
    pub fn new(bot_token: SlackToken, app_token: SlackToken) -> SlackConfig {
        SlackConfig {
            bot_token,
            app_token,
            api_url: None,
            profile: String::new(),
            reconnect_secs: 10,
        }
    }
}

/// Errors of the Slack channel; none carries a token.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("slack {method}: {message}")]
    Api {
        method: &'static str,
        message: String,
    },
    #[error("slack http client: {0}")]
    Client(String),
    #[error("agent {call}: {message}")]
    Agent { call: &'static str, message: String },
}

impl SlackError {
    fn api(method: &'static str, err: slack_morphism::errors::SlackClientError) -> SlackError {
        // slack-morphism's errors hold the method's response, never the request's token.
        let message = match &err {
            slack_morphism::errors::SlackClientError::ApiError(e) => e.code.clone(),
            other => other.to_string(),
        };
        SlackError::Api { method, message }
    }
}

/// The calls of `dev.stakpak.Agent1` the channel makes; the agent daemon's peer in schedd
/// (`channels.rs`), a scripted double in the tests.
#[async_trait]
pub trait Agent: Send + Sync + 'static {
    async fn start(&self, request: StartRequest) -> Result<SessionInfo, SlackError>;
    async fn approve(
        &self,
        session: &str,
        ids: Vec<String>,
    ) -> Result<Vec<ToolCallInfo>, SlackError>;
    async fn reject(
        &self,
        session: &str,
        ids: Vec<String>,
        reason: &str,
    ) -> Result<Vec<ToolCallInfo>, SlackError>;
    /// Returns when the session is not `running` (`waiting-approval` returns at once).
    async fn wait_session(&self, id: &str, timeout_ms: u64) -> Result<SessionInfo, SlackError>;
    async fn show_session(&self, id: &str) -> Result<SessionDetail, SlackError>;
}

/// Where the caller keeps which session a Slack thread belongs to, so a thread continues its
/// session across restarts of schedd.
pub trait ThreadStore: Send + Sync + 'static {
    /// The session of the thread `thread_ts` in `channel`, if it has one.
    fn session(&self, channel: &str, thread_ts: &str) -> Option<String>;
    /// Records that the thread belongs to `session`.
    fn remember(&self, channel: &str, thread_ts: &str, session: &str);
}

/// A [`ThreadStore`] in memory, for tests (schedd keeps threads in its database).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryThreadStore(Mutex<HashMap<(String, String), String>>);

#[cfg(test)]
impl ThreadStore for MemoryThreadStore {
    fn session(&self, channel: &str, thread_ts: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(channel.to_owned(), thread_ts.to_owned()))
            .cloned()
    }
    fn remember(&self, channel: &str, thread_ts: &str, session: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(
            (channel.to_owned(), thread_ts.to_owned()),
            session.to_owned(),
        );
    }
}

type Client = SlackClient<SlackClientHyperHttpsConnector>;

/// What the channel knows about its Socket Mode connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// `hello`s received: one per connection made.
    pub hellos: u32,
    /// Unix milliseconds of the last `hello` (0: none yet).
    pub last_hello_ms: i64,
    /// The last error of the connection, if any (never a token).
    pub last_error: String,
    pub last_error_ms: i64,
}

impl Link {
    /// `connecting` before the first hello, `reconnecting` after an error newer than the
    /// last hello, `connected` otherwise.
    pub fn state(&self) -> ChannelState {
        if self.last_error_ms > self.last_hello_ms {
            if self.hellos == 0 {
                ChannelState::Connecting
            } else {
                ChannelState::Reconnecting
            }
        } else if self.hellos == 0 {
            ChannelState::Connecting
        } else {
            ChannelState::Connected
        }
    }
}

/// The shared part, reachable from slack-morphism's callbacks through its user state.
struct Inner {
    config: SlackConfig,
    client: Arc<Client>,
    agent: Arc<dyn Agent>,
    store: Arc<dyn ThreadStore>,
    /// Threads with a turn in progress (`<channel> <thread_ts>`); a message of the thread
    /// meanwhile waits for it.
    busy: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    link: Mutex<Link>,
    /// Set by [`SlackChannel::stop`]: `run` closes its connection and returns.
    stop: tokio::sync::watch::Sender<bool>,
}

/// The Slack channel of schedd.
#[derive(Clone)]
pub struct SlackChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A message that starts or continues a session.
#[derive(Debug, Clone)]
struct Incoming {
    channel: String,
    ts: String,
    thread_ts: String,
    text: String,
}

impl SlackChannel {
    /// A channel talking to Slack (or `config.api_url`) and to `agent`.
    pub fn new(
        config: SlackConfig,
        agent: Arc<dyn Agent>,
        store: Arc<dyn ThreadStore>,
    ) -> Result<SlackChannel, SlackError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| SlackError::Client(format!("native root certificates: {e}")))?;
        // Plain http only for a local endpoint (the test double); Slack itself is https.
        let local = config.api_url.as_deref().is_some_and(|u| {
            u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost")
        });
        let https = if local {
            builder
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .build()
        } else {
            builder.https_only().enable_http1().enable_http2().build()
        };
        let mut connector = SlackClientHyperConnector::from(https);
        if let Some(url) = &config.api_url {
            connector = connector.with_slack_api_url(url);
        }
        Ok(SlackChannel {
            inner: Arc::new(Inner {
                config,
                client: Arc::new(SlackClient::new(connector)),
                agent,
                store,
                busy: tokio::sync::Mutex::new(HashMap::new()),
                link: Mutex::new(Link::default()),
                stop: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// How the Socket Mode connection is doing.
    pub fn link(&self) -> Link {
        self.inner
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks the bot token (`auth.test`); returns the bot's user id.
    pub async fn check(&self) -> Result<String, SlackError> {
        let token = self.inner.config.bot_token.api_token();
        let res = self
            .inner
            .client
            .open_session(&token)
            .auth_test()
            .await
            .map_err(|e| SlackError::api("auth.test", e))?;
        Ok(res.user_id.to_string())
    }

    /// Posts a notification to `target` (a channel id, or a user id for a DM); returns its
    /// `ts`.
    pub async fn notify(&self, target: &str, text: &str) -> Result<String, SlackError> {
        self.inner.post(target, None, text, None).await
    }

    /// Closes the Socket Mode connection: `run` shuts its listener down and returns.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Runs the Socket Mode listener until [`SlackChannel::stop`]; slack-morphism reconnects
    /// it when the connection drops. Fails only when it cannot start.
    pub async fn run(&self) -> Result<(), SlackError> {
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_hello_events(|_hello, _client, state| on_hello(state))
            .with_push_events(on_push_event)
            .with_interaction_events(on_interaction);
        let env = Arc::new(
            SlackClientEventsListenerEnvironment::new(self.inner.client.clone())
                .with_error_handler(on_error)
                .with_user_state(self.inner.clone()),
        );
        let sm_config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(1)
            .with_reconnect_timeout_in_seconds(self.inner.config.reconnect_secs.max(1))
            .with_initial_backoff_in_seconds(self.inner.config.reconnect_secs.max(1));
        let listener = SlackClientSocketModeListener::new(&sm_config, env, callbacks);
        listener
            .listen_for(&self.inner.config.app_token.api_token())
            .await
            .map_err(|e| SlackError::api("apps.connections.open", e))?;
        listener.start().await;
        let mut stop = self.inner.stop.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = stop.wait_for(|stopped| *stopped).await;
        listener.shutdown().await;
        debug!("slack socket mode stopped");
        Ok(())
    }
}

impl SlackChannel {
    /// Posts a schedule notification to its `notify_target` from a task of its own, as the
    /// scheduler's loop must not wait on Slack.
    pub fn notify_later(&self, n: crate::notify::Notification) {
        if n.target.is_empty() {
            warn!(schedule = %n.schedule, "slack notification without notify_target: dropped");
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(schedule = %n.schedule, "slack notification outside a runtime: dropped");
            return;
        };
        let channel = self.clone();
        runtime.spawn(async move {
            if let Err(e) = channel.notify(&n.target, &n.text).await {
                warn!(error = %e, schedule = %n.schedule, run = %n.run_id, "slack notification");
            }
        });
    }
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> HttpStatusCode {
    warn!(error = %err, "slack socket mode");
    let message = err.to_string();
    // The error handler is synchronous: record the error from a task.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Some(inner) = inner_of(&state).await {
                let mut link = inner.link.lock().unwrap_or_else(|p| p.into_inner());
                link.last_error = message;
                link.last_error_ms = now_ms().max(link.last_hello_ms + 1);
            }
        });
    }
    HttpStatusCode::OK
}

/// A `hello`: a connection is up. (Called from a closure, since slack-morphism does not
/// export the event's type.)
async fn on_hello(state: SlackClientEventsUserState) {
    if let Some(inner) = inner_of(&state).await {
        let mut link = inner.link.lock().unwrap_or_else(|p| p.into_inner());
        link.hellos += 1;
        link.last_hello_ms = now_ms().max(link.last_error_ms + 1);
        debug!(connections = link.hellos, "slack socket mode connected");
    }
}

async fn inner_of(state: &SlackClientEventsUserState) -> Option<Arc<Inner>> {
    state.read().await.get_user_state::<Arc<Inner>>().cloned()
}

async fn on_push_event(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some(inner) = inner_of(&state).await else {
        return Ok(());
    };
    let incoming = match event.event {
        SlackEventCallbackBody::AppMention(m) => {
            let Some(text) = m.content.text else {
                return Ok(());
            };
            Some(Incoming {
                channel: m.channel.to_string(),
                ts: m.origin.ts.to_string(),
                thread_ts: m.origin.thread_ts.unwrap_or(m.origin.ts).to_string(),
                text: strip_mentions(&text),
            })
        }
        SlackEventCallbackBody::Message(m) => direct_message(m),
        _ => None,
    };
    if let Some(incoming) = incoming {
        tokio::spawn(async move {
            if let Err(e) = inner.converse(&incoming).await {
                warn!(error = %e, channel = %incoming.channel, "slack message");
                let _ = inner
                    .post(
                        &incoming.channel,
                        Some(&incoming.thread_ts),
                        &format!("Sorry, that failed: {e}"),
                        None,
                    )
                    .await;
            }
        });
    }
    Ok(())
}

/// A user's message in a DM; not the bot's own, nor an edit or other subtype.
fn direct_message(m: SlackMessageEvent) -> Option<Incoming> {
    let is_im = matches!(m.origin.channel_type, Some(ref t) if t.0 == "im");
    if !is_im || m.subtype.is_some() || m.sender.bot_id.is_some() || m.sender.user.is_none() {
        return None;
    }
    let channel = m.origin.channel?.to_string();
    let text = m.content.and_then(|c| c.text)?;
    let ts = m.origin.ts.to_string();
    Some(Incoming {
        channel,
        thread_ts: m
            .origin
            .thread_ts
            .map_or_else(|| ts.clone(), |t| t.to_string()),
        ts,
        text: strip_mentions(&text),
    })
}

/// The text without `<@U…>` mentions.
fn strip_mentions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        out.push_str(&rest[..start]);
        match rest[start..].find('>') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some(inner) = inner_of(&state).await else {
        return Ok(());
    };
    let SlackInteractionEvent::BlockActions(actions) = event else {
        return Ok(());
    };
    let SlackInteractionActionContainer::Message(container) = &actions.container else {
        return Ok(());
    };
    let channel = container
        .channel_id
        .clone()
        .or_else(|| actions.channel.as_ref().map(|c| c.id.clone()));
    let Some(channel) = channel else {
        return Ok(());
    };
    let user = actions
        .user
        .as_ref()
        .map(|u| u.id.to_string())
        .unwrap_or_default();
    for action in actions.actions.unwrap_or_default() {
        let allow = match action.action_id.0.as_str() {
            ALLOW_ACTION => true,
            DENY_ACTION => false,
            _ => continue,
        };
        let Some((session, call)) = action.value.as_deref().and_then(parse_action_value) else {
            continue;
        };
        let inner = inner.clone();
        let channel = channel.to_string();
        let message_ts = container.message_ts.to_string();
        let user = user.clone();
        tokio::spawn(async move {
            if let Err(e) = inner
                .decide(&channel, &message_ts, &session, &call, allow, &user)
                .await
            {
                warn!(error = %e, session = %session, call = %call, "slack approval");
            }
        });
    }
    Ok(())
}

/// The value of an approval button: `<session> <call id>`.
fn action_value(session: &str, call: &str) -> String {
    format!("{session} {call}")
}

fn parse_action_value(value: &str) -> Option<(String, String)> {
    let (session, call) = value.split_once(' ')?;
    (!session.is_empty() && !call.is_empty()).then(|| (session.to_owned(), call.to_owned()))
}

impl Inner {
    async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<Vec<SlackBlock>>,
    ) -> Result<String, SlackError> {
        let token = self.config.bot_token.api_token();
        let mut content = SlackMessageContent::new().with_text(text.to_owned());
        if let Some(blocks) = blocks {
            content = content.with_blocks(blocks);
        }
        let mut req = SlackApiChatPostMessageRequest::new(channel.into(), content);
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(ts.into());
        }
        let res = self
            .client
            .open_session(&token)
            .chat_post_message(&req)
            .await
            .map_err(|e| SlackError::api("chat.postMessage", e))?;
        Ok(res.ts.to_string())
    }

    async fn react(&self, channel: &str, ts: &str, name: &str) -> Result<(), SlackError> {
        let token = self.config.bot_token.api_token();
        let req = SlackApiReactionsAddRequest::new(channel.into(), name.into(), ts.into());
        self.client
            .open_session(&token)
            .reactions_add(&req)
            .await
            .map_err(|e| SlackError::api("reactions.add", e))?;
        Ok(())
    }

    /// A message of the thread: acknowledge it, run the session's turn, post what it asks
    /// and what it answers.
    async fn converse(&self, msg: &Incoming) -> Result<(), SlackError> {
        if let Err(e) = self.react(&msg.channel, &msg.ts, "eyes").await {
            // The reaction is a courtesy; the conversation goes on without it.
            debug!(error = %e, "slack reaction");
        }
        let key = format!("{} {}", msg.channel, msg.thread_ts);
        let lock = {
            let mut busy = self.busy.lock().await;
            busy.entry(key.clone()).or_default().clone()
        };
        let result = {
            let _turn = lock.lock().await;
            self.turn(msg).await
        };
        // Forget the thread's lock unless another message of it is waiting for it.
        let mut busy = self.busy.lock().await;
        if Arc::strong_count(&lock) == 2 {
            busy.remove(&key);
        }
        result
    }

    /// One turn of the thread's session: start (or continue) it and follow it to its stop.
    async fn turn(&self, msg: &Incoming) -> Result<(), SlackError> {
        let existing = self.store.session(&msg.channel, &msg.thread_ts);
        let request = StartRequest {
            prompt: msg.text.clone(),
            session: existing.clone().unwrap_or_default(),
            profile: self.config.profile.clone(),
            ..StartRequest::default()
        };
        let info = self.agent.start(request).await?;
        if existing.is_none() {
            self.store.remember(&msg.channel, &msg.thread_ts, &info.id);
        }
        self.follow(&msg.channel, &msg.thread_ts, &info.id).await
    }

    /// Follows the session until it stops: approval requests as buttons, then the reply.
    async fn follow(
        &self,
        channel: &str,
        thread_ts: &str,
        session: &str,
    ) -> Result<(), SlackError> {
        let mut asked: HashSet<String> = HashSet::new();
        loop {
            let info = self.agent.wait_session(session, 0).await?;
            if info.state == SessionState::WaitingApproval {
                let detail = self.agent.show_session(session).await?;
                for call in &detail.tool_calls {
                    if call.state == ToolCallState::WaitingApproval && !asked.contains(&call.id) {
                        self.ask(channel, thread_ts, call).await?;
                        asked.insert(call.id.clone());
                    }
                }
                // WaitSession returns at once while approval is pending: look again shortly.
                tokio::time::sleep(APPROVAL_POLL).await;
                continue;
            }
            if info.state.is_stopped() {
                let detail = self.agent.show_session(session).await?;
                let text = final_reply(&detail);
                self.post(channel, Some(thread_ts), &text, None).await?;
                return Ok(());
            }
        }
    }

    /// Posts an approval request for `call` with Allow/Deny buttons.
    async fn ask(
        &self,
        channel: &str,
        thread_ts: &str,
        call: &ToolCallInfo,
    ) -> Result<(), SlackError> {
        let text = approval_text(call);
        let value = action_value(&call.session, &call.id);
        let blocks = vec![
            SlackBlock::Section(SlackSectionBlock::new().with_text(md!("{}", text))),
            SlackBlock::Actions(
                SlackActionsBlock::new(vec![
                    SlackActionBlockElement::Button(
                        SlackBlockButtonElement::new("Allow".into())
                            .with_action_id(ALLOW_ACTION.into())
                            .with_value(value.clone())
                            .with_style(SlackBlockButtonStyle::Primary),
                    ),
                    SlackActionBlockElement::Button(
                        SlackBlockButtonElement::new("Deny".into())
                            .with_action_id(DENY_ACTION.into())
                            .with_value(value)
                            .with_style(SlackBlockButtonStyle::Danger),
                    ),
                ])
                .with_block_id("approval".into()),
            ),
        ];
        self.post(channel, Some(thread_ts), &text, Some(blocks))
            .await?;
        Ok(())
    }

    /// A button press: `Approve` or `Reject` the call, then replace the buttons with the
    /// decision.
    async fn decide(
        &self,
        channel: &str,
        message_ts: &str,
        session: &str,
        call: &str,
        allow: bool,
        user: &str,
    ) -> Result<(), SlackError> {
        let ids = vec![call.to_owned()];
        let result = if allow {
            self.agent.approve(session, ids).await
        } else {
            let reason = format!("denied in Slack by {user}");
            self.agent.reject(session, ids, &reason).await
        };
        let text = match &result {
            Ok(_) if allow => format!("Allowed by <@{user}>: `{call}`"),
            Ok(_) => format!("Denied by <@{user}>: `{call}`"),
            Err(e) => format!("Could not record the decision on `{call}`: {e}"),
        };
        let token = self.config.bot_token.api_token();
        let req = SlackApiChatUpdateRequest::new(
            channel.into(),
            SlackMessageContent::new()
                .with_text(text.clone())
                .with_blocks(vec![SlackBlock::Section(
                    SlackSectionBlock::new().with_text(md!("{}", text)),
                )]),
            message_ts.into(),
        );
        self.client
            .open_session(&token)
            .chat_update(&req)
            .await
            .map_err(|e| SlackError::api("chat.update", e))?;
        result.map(|_| ())
    }
}

/// The text of an approval request.
fn approval_text(call: &ToolCallInfo) -> String {
    let why = if call.reason.is_empty() {
        call.approval.clone()
    } else {
        call.reason.clone()
    };
    let mut text = format!(
        "Approval needed: `{}`\n```{}```",
        call.name,
        truncate(&call.arguments, 2500)
    );
    if !why.is_empty() {
        text.push_str(&format!("\n({why})"));
    }
    text
}

/// The reply of a stopped session: its last assistant message, or its state and reason.
fn final_reply(detail: &SessionDetail) -> String {
    let last = detail
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant && !m.text.trim().is_empty());
    match last {
        Some(m) if detail.info.state == SessionState::Finished => truncate(&m.text, 39_000),
        Some(m) => format!(
            "{}\n\n_(session {}: {})_",
            truncate(&m.text, 39_000),
            detail.info.state,
            detail.info.reason
        ),
        None => format!(
            "_(session {}{}{})_",
            detail.info.state,
            if detail.info.reason.is_empty() {
                ""
            } else {
                ": "
            },
            detail.info.reason
        ),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    //! The channel against the Slack double of `stakpak-testkit`, with a scripted agent
    //! behind the [`Agent`] trait: a prompt containing "approve" makes a tool call that
    //! waits for approval, any other prompt is answered at once.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::{Value, json};
    use stakpak_proto::MessageInfo;
    use stakpak_testkit::{SlackDouble, app_mention, message_im};

    const BOT: &str = "xoxb-test-bot-token-0123456789";
    const APP: &str = "xapp-1-test-app-token-0123456789";
    const WAIT: Duration = Duration::from_secs(20);

    #[derive(Default)]
    struct FakeAgent {
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        sessions: HashMap<String, SessionDetail>,
        starts: Vec<StartRequest>,
        next: u32,
    }

    fn say(detail: &mut SessionDetail, role: Role, text: &str) {
        detail.messages.push(MessageInfo {
            role,
            text: text.into(),
            ..MessageInfo::default()
        });
    }

    fn missing(id: &str) -> SlackError {
        SlackError::Agent {
            call: "fake",
            message: format!("no session {id}"),
        }
    }

    #[async_trait]
    impl Agent for FakeAgent {
        async fn start(&self, request: StartRequest) -> Result<SessionInfo, SlackError> {
            let mut state = self.state.lock().unwrap();
            state.starts.push(request.clone());
            let id = if request.session.is_empty() {
                state.next += 1;
                let id = format!("s{}", state.next);
                let mut detail = SessionDetail::default();
                detail.info.id = id.clone();
                state.sessions.insert(id.clone(), detail);
                id
            } else {
                request.session.clone()
            };
            let detail = state.sessions.get_mut(&id).ok_or_else(|| missing(&id))?;
            say(detail, Role::User, &request.prompt);
            if request.prompt.contains("approve") {
                let call_id = format!("c{}", detail.tool_calls.len() + 1);
                detail.tool_calls.push(ToolCallInfo {
                    id: call_id,
                    session: id.clone(),
                    name: "run_command".into(),
                    arguments: r#"{"command":"systemctl restart nginx"}"#.into(),
                    state: ToolCallState::WaitingApproval,
                    approval: "profile".into(),
                    ..ToolCallInfo::default()
                });
                detail.info.state = SessionState::WaitingApproval;
                detail.info.pending = 1;
            } else {
                say(
                    detail,
                    Role::Assistant,
                    &format!("echo: {}", request.prompt),
                );
                detail.info.state = SessionState::Finished;
            }
            Ok(detail.info.clone())
        }

        async fn approve(
            &self,
            session: &str,
            ids: Vec<String>,
        ) -> Result<Vec<ToolCallInfo>, SlackError> {
            self.decide(session, ids, true)
        }

        async fn reject(
            &self,
            session: &str,
            ids: Vec<String>,
            _reason: &str,
        ) -> Result<Vec<ToolCallInfo>, SlackError> {
            self.decide(session, ids, false)
        }

        async fn wait_session(&self, id: &str, _: u64) -> Result<SessionInfo, SlackError> {
            let state = self.state.lock().unwrap();
            let detail = state.sessions.get(id).ok_or_else(|| missing(id))?;
            Ok(detail.info.clone())
        }

        async fn show_session(&self, id: &str) -> Result<SessionDetail, SlackError> {
            let state = self.state.lock().unwrap();
            state.sessions.get(id).cloned().ok_or_else(|| missing(id))
        }
    }

    impl FakeAgent {
        fn decide(
            &self,
            session: &str,
            ids: Vec<String>,
            allow: bool,
        ) -> Result<Vec<ToolCallInfo>, SlackError> {
            let mut state = self.state.lock().unwrap();
            let detail = state
                .sessions
                .get_mut(session)
                .ok_or_else(|| missing(session))?;
            let mut changed = vec![];
            for call in detail.tool_calls.iter_mut().filter(|c| ids.contains(&c.id)) {
                call.state = if allow {
                    ToolCallState::Done
                } else {
                    ToolCallState::Rejected
                };
                call.output = if allow { "restarted" } else { "" }.into();
                changed.push(call.clone());
            }
            say(
                detail,
                Role::Assistant,
                if allow {
                    "nginx restarted"
                } else {
                    "left nginx alone"
                },
            );
            detail.info.state = SessionState::Finished;
            detail.info.pending = 0;
            Ok(changed)
        }

        fn call_state(&self, session: &str, call: &str) -> ToolCallState {
            let state = self.state.lock().unwrap();
            state.sessions[session]
                .tool_calls
                .iter()
                .find(|c| c.id == call)
                .map(|c| c.state)
                .unwrap_or_default()
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    struct Setup {
        double: SlackDouble,
        agent: Arc<FakeAgent>,
        channel: SlackChannel,
        rt: tokio::runtime::Runtime,
    }

    /// The double, the fake agent and a running channel connected to both.
    fn setup() -> Setup {
        let double = SlackDouble::start(BOT, APP);
        let agent = Arc::new(FakeAgent::default());
        let mut config = SlackConfig::new(SlackToken::new(BOT), SlackToken::new(APP));
        config.api_url = Some(double.api_url());
        config.reconnect_secs = 1;
        let channel = SlackChannel::new(
            config,
            agent.clone(),
            Arc::new(MemoryThreadStore::default()),
        )
        .unwrap();
        let rt = runtime();
        let running = channel.clone();
        rt.spawn(async move { running.run().await });
        double.wait_until("a socket mode connection", WAIT, |d| {
            d.live_connections() == 1
        });
        Setup {
            double,
            agent,
            channel,
            rt,
        }
    }

    fn args(call: &stakpak_testkit::ApiCall) -> &Value {
        &call.args
    }

    #[test]
    fn a_mention_becomes_a_session_answered_in_its_thread() {
        let s = setup();
        let ts = "1700000500.000100";
        let envelope = s
            .double
            .send_event(app_mention("C1", "U1", "how full is /var?", ts, None));

        let reply = s.double.wait_call("chat.postMessage", 1, WAIT);
        assert_eq!(
            (
                args(&reply)["channel"].clone(),
                args(&reply)["thread_ts"].clone(),
                args(&reply)["text"].clone()
            ),
            (json!("C1"), json!(ts), json!("echo: how full is /var?"))
        );
        assert_eq!(reply.token.as_deref(), Some(BOT));
        assert!(s.double.acked(&envelope), "acks: {:?}", s.double.acks());
        let reaction = s.double.wait_call("reactions.add", 1, WAIT);
        assert_eq!(
            reaction.args,
            json!({"channel": "C1", "name": "eyes", "timestamp": ts})
        );

        // A reply in the thread continues the same session.
        s.double.send_event(app_mention(
            "C1",
            "U1",
            "and /home?",
            "1700000501.000100",
            Some(ts),
        ));
        let reply = s.double.wait_call("chat.postMessage", 2, WAIT);
        assert_eq!(
            (
                args(&reply)["thread_ts"].clone(),
                args(&reply)["text"].clone()
            ),
            (json!(ts), json!("echo: and /home?"))
        );
        // A DM starts its own session, answered in the DM's thread.
        s.double
            .send_event(message_im("D1", "U1", "hello", "1700000502.000100", None));
        let reply = s.double.wait_call("chat.postMessage", 3, WAIT);
        assert_eq!(
            (
                args(&reply)["channel"].clone(),
                args(&reply)["thread_ts"].clone()
            ),
            (json!("D1"), json!("1700000502.000100"))
        );
        let starts: Vec<(String, String)> = s
            .agent
            .state
            .lock()
            .unwrap()
            .starts
            .iter()
            .map(|r| (r.prompt.clone(), r.session.clone()))
            .collect();
        assert_eq!(
            starts,
            vec![
                ("how full is /var?".to_owned(), String::new()),
                ("and /home?".to_owned(), "s1".to_owned()),
                ("hello".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn pressing_allow_approves_the_call_and_the_reply_follows() {
        let s = setup();
        let ts = "1700000600.000100";
        s.double.send_event(app_mention(
            "C2",
            "U1",
            "restart nginx, approve it",
            ts,
            None,
        ));
        let ask = s.double.wait_call("chat.postMessage", 1, WAIT);
        assert_eq!(args(&ask)["thread_ts"], json!(ts));
        let buttons: Vec<(Value, Value)> = args(&ask)["blocks"][1]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["action_id"].clone(), b["value"].clone()))
            .collect();
        assert_eq!(
            buttons,
            vec![
                (json!(ALLOW_ACTION), json!("s1 c1")),
                (json!(DENY_ACTION), json!("s1 c1")),
            ]
        );
        let posted = s.double.posted();
        let envelope = s
            .double
            .press_button(ALLOW_ACTION, "s1 c1", "C2", &posted[0].ts, "U7");

        let update = s.double.wait_call("chat.update", 1, WAIT);
        assert_eq!(
            (args(&update)["ts"].clone(), args(&update)["text"].clone()),
            (json!(posted[0].ts), json!("Allowed by <@U7>: `c1`"))
        );
        assert_eq!(s.agent.call_state("s1", "c1"), ToolCallState::Done);
        let reply = s.double.wait_call("chat.postMessage", 2, WAIT);
        assert_eq!(
            (
                args(&reply)["thread_ts"].clone(),
                args(&reply)["text"].clone()
            ),
            (json!(ts), json!("nginx restarted"))
        );
        assert!(s.double.acked(&envelope), "acks: {:?}", s.double.acks());
    }

    #[test]
    fn pressing_deny_rejects_the_call() {
        let s = setup();
        s.double.send_event(app_mention(
            "C2",
            "U1",
            "approve a restart",
            "1700000650.000100",
            None,
        ));
        s.double.wait_call("chat.postMessage", 1, WAIT);
        let ts = s.double.posted()[0].ts.clone();
        s.double.press_button(DENY_ACTION, "s1 c1", "C2", &ts, "U7");
        s.double.wait_call("chat.update", 1, WAIT);
        assert_eq!(s.agent.call_state("s1", "c1"), ToolCallState::Rejected);
        let reply = s.double.wait_call("chat.postMessage", 2, WAIT);
        assert_eq!(args(&reply)["text"], json!("left nginx alone"));
    }

    #[test]
    fn a_notification_reaches_its_target() {
        let s = setup();
        let ts =
            s.rt.block_on(s.channel.notify("C9", "schedule backup failed"))
                .unwrap();
        let call = s.double.wait_call("chat.postMessage", 1, WAIT);
        assert_eq!(
            call.args,
            json!({"channel": "C9", "text": "schedule backup failed"})
        );
        assert_eq!(s.double.posted()[0].ts, ts);
        assert_eq!(
            s.rt.block_on(s.channel.check()).unwrap(),
            stakpak_testkit::SLACK_BOT_USER_ID
        );
    }

    #[test]
    fn a_wrong_token_is_an_error_that_does_not_show_it() {
        let double = SlackDouble::start(BOT, APP);
        let wrong = "xoxb-wrong-token-9876543210";
        let mut config = SlackConfig::new(SlackToken::new(wrong), SlackToken::new(APP));
        config.api_url = Some(double.api_url());
        let shown = format!("{config:?}");
        let channel = SlackChannel::new(
            config,
            Arc::new(FakeAgent::default()),
            Arc::new(MemoryThreadStore::default()),
        )
        .unwrap();
        let err = runtime()
            .block_on(channel.notify("C9", "hello"))
            .unwrap_err();
        assert_eq!(err.to_string(), "slack chat.postMessage: invalid_auth");
        assert!(!shown.contains(wrong) && !shown.contains(APP), "{shown}");
        assert!(!format!("{channel:?}").contains(wrong));
    }

    #[test]
    fn a_dropped_connection_is_reopened() {
        let s = setup();
        assert_eq!(s.double.connections_opened(), 1);
        s.double.drop_connection();
        s.double
            .wait_until("a second apps.connections.open", WAIT, |d| {
                d.connections_opened() >= 2 && d.live_connections() == 1
            });
        s.double.send_event(app_mention(
            "C3",
            "U1",
            "still there?",
            "1700000700.000100",
            None,
        ));
        let reply = s.double.wait_call("chat.postMessage", 1, WAIT);
        assert_eq!(args(&reply)["text"], json!("echo: still there?"));

        // Slack's own `disconnect` (refresh_requested) is followed by a new connection too.
        s.double.send_disconnect();
        s.double
            .wait_until("a third apps.connections.open", WAIT, |d| {
                d.connections_opened() >= 3 && d.live_connections() >= 1
            });
        for call in s.double.calls_to("apps.connections.open") {
            assert_eq!(call.token.as_deref(), Some(APP));
        }
    }

    #[test]
    fn a_schedule_notification_reaches_notify_target() {
        use crate::notify::Notification;
        let s = setup();
        let notification = Notification {
            schedule: "backup".into(),
            run_id: "r1".into(),
            outcome: stakpak_proto::RunOutcome::Failed,
            text: "backup failed: check exited 1".into(),
            channel: "slack".into(),
            target: "C42".into(),
        };
        let _guard = s.rt.enter();
        // Without a target there is nowhere to post.
        s.channel.notify_later(Notification {
            target: String::new(),
            ..notification.clone()
        });
        s.channel.notify_later(notification);
        let call = s.double.wait_call("chat.postMessage", 1, WAIT);
        assert_eq!(
            call.args,
            json!({"channel": "C42", "text": "backup failed: check exited 1"})
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(s.double.calls_to("chat.postMessage").len(), 1);
    }
}
