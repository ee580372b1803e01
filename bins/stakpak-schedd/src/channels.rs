//! Chat channels: which are configured (`channels` in `<state>/schedd.db`), their tokens
//! (kept by secretd for consumer schedd and fetched with `Reveal` over schedd's own bus
//! connection), the running Slack channel, the Slack thread → session map (`slack_threads`),
//! and the [`Notifier`] that sends schedule notifications through them.
//!
//! Adding a channel checks its tokens with the service before anything is stored, so a
//! refused token leaves no half-configured channel behind. A stored channel is connected at
//! start; while secretd or the service cannot be reached it is retried with a growing pause
//! and its state says why.

use std::{
    collections::BTreeMap,
    fmt,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use stakpak_proto::{ChannelState, SessionDetail, SessionInfo, StartRequest, ToolCallInfo};
use stakpak_util::now_ms;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    db::MIGRATIONS,
    notify::{LogNotifier, Notification, Notifier},
    peers::{self, PeerError, Peers},
    slack::{self, SlackChannel, SlackConfig, SlackError, SlackToken, ThreadStore},
};

/// Names of the Slack tokens in secretd (set for consumer `schedd`).
pub const SLACK_BOT_TOKEN: &str = "slack.bot_token";
pub const SLACK_APP_TOKEN: &str = "slack.app_token";
/// The consumer name secretd knows schedd by.
const CONSUMER: &str = "schedd";
/// Longest pause between attempts to bring a stored channel up.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Why a channel operation failed; never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("unknown channel kind `{0}`: schedd knows `slack`")]
    UnknownKind(String),
    #[error("api URL `{0}`: use https:// (plain http only to this machine)")]
    InsecureUrl(String),
    #[error(
        "a {0} channel is already configured; remove it first (`stakpak autopilot channel remove {0}`)"
    )]
    Exists(ChannelKind),
    #[error("no channel `{0}`")]
    NoChannel(String),
    #[error("channel {0} vanished")]
    Vanished(ChannelKind),
    #[error("schedd is stopping")]
    Stopping,
    #[error("cannot reach secretd for the tokens: {0}")]
    Secretd(#[source] PeerError),
    #[error("secretd cannot give {name}: {message}")]
    TokenUnavailable { name: &'static str, message: String },
    #[error("cannot reach secretd for {name}: {message}")]
    SecretdUnreachable { name: &'static str, message: String },
    /// secretd refused the token (not set, not for schedd).
    #[error("token {name}: {answer}; set it with `stakpak autopilot channel add slack`")]
    TokenRefused { name: &'static str, answer: String },
    #[error("agent proxy: {0}")]
    Agent(#[source] PeerError),
    /// The channel's HTTP client could not be made.
    #[error(transparent)]
    Client(SlackError),
    #[error("the bot token does not work: {0}")]
    BadToken(#[source] SlackError),
    #[error("posting to {target}: {source}")]
    Post { target: String, source: SlackError },
    #[error("channel database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("channel database {0}")]
    Schema(#[from] stakpak_sqlite::MigrateError),
}

impl ChannelError {
    /// Whether it may pass by itself (secretd or the agent away, schedd stopping): a stored
    /// channel keeps `connecting` meanwhile rather than `failed`.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ChannelError::Stopping
                | ChannelError::Secretd(_)
                | ChannelError::TokenUnavailable { .. }
                | ChannelError::SecretdUnreachable { .. }
                | ChannelError::Agent(_)
        )
    }

    /// Whether schedd's database failed rather than the request or a peer.
    pub fn is_internal(&self) -> bool {
        matches!(self, ChannelError::Sql(_) | ChannelError::Schema(_))
    }
}

/// The kinds of channel schedd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChannelKind {
    Slack,
}

impl ChannelKind {
    pub fn parse(kind: &str) -> Result<ChannelKind, ChannelError> {
        match kind {
            "slack" => Ok(ChannelKind::Slack),
            other => Err(ChannelError::UnknownKind(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel as configured: what `AddChannel` gave, as `channels` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub kind: ChannelKind,
    /// Profile of agent sessions started from the channel; empty: `default`.
    pub profile: String,
    /// The service's Web API base URL; empty: its public one.
    pub api_url: String,
}

impl Settings {
    /// Checks what `AddChannel` got, apart from the profile (see `profiles.rs`).
    pub fn new(kind: &str, profile: String, api_url: String) -> Result<Settings, ChannelError> {
        let kind = ChannelKind::parse(kind)?;
        let url = api_url.as_str();
        let local = url.starts_with("http://127.0.0.1:")
            || url.starts_with("http://localhost:")
            || url.starts_with("http://[::1]:");
        if !url.is_empty() && !url.starts_with("https://") && !local {
            return Err(ChannelError::InsecureUrl(api_url));
        }
        Ok(Settings {
            kind,
            profile,
            api_url,
        })
    }
}

/// A channel and how its connection is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    pub settings: Settings,
    pub state: ChannelState,
    /// The last error, when there is one.
    pub error: String,
    /// Unix milliseconds of the last change of `state`.
    pub since_ms: i64,
    /// The bot's user id, once the bot token was checked.
    pub bot_user: String,
    /// Connections made so far (1 + reconnections).
    pub connections: u32,
}

/// A channel that runs, or is being brought up.
struct Live {
    settings: Settings,
    /// The channel once it is built (tokens fetched and checked).
    channel: Option<SlackChannel>,
    bot_user: String,
    /// State while there is no channel (`connecting`, `failed`) and why.
    pending_state: ChannelState,
    error: String,
    since_ms: i64,
    /// The task that brings it up and runs it.
    task: Option<JoinHandle<()>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        match &self.channel {
            // A running channel closes its connection and its task ends by itself.
            Some(channel) => channel.stop(),
            None => {
                if let Some(task) = self.task.take() {
                    task.abort();
                }
            }
        }
    }
}

struct Shared {
    db: Mutex<Connection>,
    peers: Peers,
    live: Mutex<BTreeMap<ChannelKind, Live>>,
}

/// The channels of schedd; cheap to clone.
#[derive(Clone)]
pub struct Channels {
    shared: Arc<Shared>,
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Channels {
    /// Opens the channel tables in `db` (schedd's database, shared with the scheduler's
    /// store through SQLite's own locking).
    pub fn open(db: &Path, peers: Peers) -> Result<Channels, ChannelError> {
        let mut conn = Connection::open(db)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        MIGRATIONS.apply(&mut conn, db)?;
        Ok(Channels {
            shared: Arc::new(Shared {
                db: Mutex::new(conn),
                peers,
                live: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    fn stored(&self) -> Result<Vec<Settings>, ChannelError> {
        let db = lock(&self.shared.db);
        let mut stmt = db.prepare("SELECT kind, profile, api_url FROM channels ORDER BY kind")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for (kind, profile, api_url) in rows {
            match ChannelKind::parse(&kind) {
                Ok(kind) => out.push(Settings {
                    kind,
                    profile,
                    api_url,
                }),
                Err(e) => warn!(error = %e, "stored channel skipped"),
            }
        }
        Ok(out)
    }

    /// Brings up every stored channel, each in its own task.
    pub fn start_stored(&self) -> Result<(), ChannelError> {
        for settings in self.stored()? {
            self.spawn(settings, None);
        }
        Ok(())
    }

    /// Starts the task of `settings`: with `ready` (a channel built and checked by `add`)
    /// it runs at once, otherwise it is built first, retried until it comes up.
    fn spawn(&self, settings: Settings, ready: Option<(SlackChannel, String)>) {
        let kind = settings.kind;
        let mut live = Live {
            settings: settings.clone(),
            channel: None,
            bot_user: String::new(),
            pending_state: ChannelState::Connecting,
            error: String::new(),
            since_ms: now_ms(),
            task: None,
        };
        if let Some((channel, bot_user)) = &ready {
            live.channel = Some(channel.clone());
            live.bot_user = bot_user.clone();
        }
        // In the map before the task starts: the task looks itself up there.
        let mut map = lock(&self.shared.live);
        let this = self.clone();
        live.task = Some(tokio::spawn(
            async move { this.bring_up(settings, ready).await },
        ));
        map.insert(kind, live);
    }

    async fn bring_up(self, settings: Settings, ready: Option<(SlackChannel, String)>) {
        let kind = settings.kind;
        let channel = match ready {
            Some((channel, _)) => channel,
            None => {
                let mut pause = Duration::from_secs(1);
                loop {
                    match self.build(&settings).await {
                        Ok((channel, bot_user)) => {
                            let mut map = lock(&self.shared.live);
                            let Some(live) = map.get_mut(&kind) else {
                                // Removed meanwhile.
                                return;
                            };
                            live.channel = Some(channel.clone());
                            live.bot_user = bot_user;
                            live.error.clear();
                            live.since_ms = now_ms();
                            break channel;
                        }
                        Err(e) => {
                            let state = if e.is_unavailable() {
                                ChannelState::Connecting
                            } else {
                                ChannelState::Failed
                            };
                            warn!(channel = %kind, error = %e, retry_secs = pause.as_secs(), "channel not up");
                            if let Some(live) = lock(&self.shared.live).get_mut(&kind) {
                                if live.pending_state != state {
                                    live.since_ms = now_ms();
                                }
                                live.pending_state = state;
                                live.error = e.to_string();
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(MAX_RETRY);
                        }
                    }
                }
            }
        };
        info!(channel = %kind, "channel up; opening its socket mode connection");
        if let Err(e) = channel.run().await {
            warn!(channel = %kind, error = %e, "channel stopped");
            if let Some(live) = lock(&self.shared.live).get_mut(&kind) {
                live.channel = None;
                live.pending_state = ChannelState::Failed;
                live.error = e.to_string();
                live.since_ms = now_ms();
            }
        }
    }

    /// A token from secretd.
    async fn reveal(
        secrets: &peers::Secrets,
        name: &'static str,
    ) -> Result<SlackToken, ChannelError> {
        use stakpak_proto::Error as E;
        secrets
            .reveal(name, CONSUMER)
            .await
            .map(SlackToken::new)
            .map_err(|e| match e {
                PeerError::Stopping => ChannelError::Stopping,
                PeerError::Call(E::Unavailable(message)) => {
                    ChannelError::TokenUnavailable { name, message }
                }
                PeerError::Call(E::ZBus(z)) => ChannelError::SecretdUnreachable {
                    name,
                    message: z.to_string(),
                },
                PeerError::Call(source) => ChannelError::TokenRefused {
                    name,
                    answer: source.to_string(),
                },
                other => ChannelError::SecretdUnreachable {
                    name,
                    message: other.to_string(),
                },
            })
    }

    /// Fetches the tokens from secretd, builds the channel and checks the bot token.
    async fn build(&self, settings: &Settings) -> Result<(SlackChannel, String), ChannelError> {
        let peers = &self.shared.peers;
        let secrets = peers.secrets().await.map_err(|e| match e {
            PeerError::Stopping => ChannelError::Stopping,
            other => ChannelError::Secretd(other),
        })?;
        let bot = Self::reveal(&secrets, SLACK_BOT_TOKEN).await?;
        let app = Self::reveal(&secrets, SLACK_APP_TOKEN).await?;
        let mut config = SlackConfig::new(bot, app);
        if !settings.api_url.is_empty() {
            config.api_url = Some(settings.api_url.trim_end_matches('/').to_owned());
        }
        config.profile = settings.profile.clone();
        let agent = peers.agent().await.map_err(ChannelError::Agent)?;
        let threads = Threads(self.shared.clone());
        let channel = SlackChannel::new(config, Arc::new(agent), Arc::new(threads))
            .map_err(ChannelError::Client)?;
        let bot_user = channel.check().await.map_err(ChannelError::BadToken)?;
        Ok((channel, bot_user))
    }

    /// `AddChannel`: checks the tokens with the service, then stores and connects it.
    pub async fn add(&self, settings: Settings) -> Result<ChannelStatus, ChannelError> {
        let kind = settings.kind;
        let taken = lock(&self.shared.db)
            .query_row(
                "SELECT 1 FROM channels WHERE kind = ?1",
                params![kind.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if taken {
            return Err(ChannelError::Exists(kind));
        }
        let (channel, bot_user) = self.build(&settings).await?;
        lock(&self.shared.db).execute(
            "INSERT INTO channels (kind, profile, api_url, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![kind.as_str(), settings.profile, settings.api_url, now_ms()],
        )?;
        info!(channel = %kind, bot_user = %bot_user, "channel added");
        self.spawn(settings, Some((channel, bot_user)));
        self.status(kind).ok_or(ChannelError::Vanished(kind))
    }

    /// `RemoveChannel`: disconnects it and forgets it (threads stay, for a later channel).
    pub fn remove(&self, kind: &str) -> Result<(), ChannelError> {
        let removed =
            lock(&self.shared.db).execute("DELETE FROM channels WHERE kind = ?1", params![kind])?;
        let live = ChannelKind::parse(kind)
            .ok()
            .and_then(|k| lock(&self.shared.live).remove(&k));
        if removed == 0 && live.is_none() {
            return Err(ChannelError::NoChannel(kind.to_string()));
        }
        drop(live);
        info!(channel = %kind, "channel removed");
        Ok(())
    }

    fn status(&self, kind: ChannelKind) -> Option<ChannelStatus> {
        let live = lock(&self.shared.live);
        let l = live.get(&kind)?;
        Some(match &l.channel {
            Some(channel) => {
                let link = channel.link();
                let since = if link.last_error_ms > link.last_hello_ms {
                    link.last_error_ms
                } else if link.last_hello_ms > 0 {
                    link.last_hello_ms
                } else {
                    l.since_ms
                };
                ChannelStatus {
                    settings: l.settings.clone(),
                    state: link.state(),
                    error: link.last_error,
                    since_ms: since,
                    bot_user: l.bot_user.clone(),
                    connections: link.hellos,
                }
            }
            None => ChannelStatus {
                settings: l.settings.clone(),
                state: l.pending_state,
                error: l.error.clone(),
                since_ms: l.since_ms,
                bot_user: String::new(),
                connections: 0,
            },
        })
    }

    /// Every channel and its state.
    pub fn list(&self) -> Vec<ChannelStatus> {
        let kinds: Vec<ChannelKind> = lock(&self.shared.live).keys().copied().collect();
        kinds.into_iter().filter_map(|k| self.status(k)).collect()
    }

    /// `TestChannel`: checks the bot token and, with a target, posts a test message.
    pub async fn test(&self, kind: &str, target: &str) -> Result<String, ChannelError> {
        let (settings, running) = {
            let live = lock(&self.shared.live);
            let l = ChannelKind::parse(kind)
                .ok()
                .and_then(|k| live.get(&k))
                .ok_or_else(|| ChannelError::NoChannel(kind.to_string()))?;
            (l.settings.clone(), l.channel.clone())
        };
        let (channel, bot_user) = match running {
            Some(channel) => {
                let user = channel.check().await.map_err(ChannelError::BadToken)?;
                (channel, user)
            }
            None => self.build(&settings).await?,
        };
        let mut said = format!("{kind}: the bot token works (bot user {bot_user})");
        if !target.is_empty() {
            let ts = channel
                .notify(target, "stakpak autopilot: test message from schedd")
                .await
                .map_err(|source| ChannelError::Post {
                    target: target.to_string(),
                    source,
                })?;
            said.push_str(&format!("; test message posted to {target} (ts {ts})"));
        }
        Ok(said)
    }
}

/// Notifications go to the log, and to Slack when the schedule says `notify_channel =
/// "slack"` and the channel is up.
impl Notifier for Channels {
    fn notify(&self, n: Notification) {
        LogNotifier.notify(n.clone());
        if n.channel.is_empty() {
            return;
        }
        let channel = ChannelKind::parse(&n.channel).ok().and_then(|kind| {
            lock(&self.shared.live)
                .get(&kind)
                .and_then(|l| l.channel.clone())
        });
        match channel {
            Some(channel) => channel.notify_later(n),
            None => warn!(
                schedule = %n.schedule,
                channel = %n.channel,
                "notification not sent: the channel is not configured or not up"
            ),
        }
    }
}

/// The agent a Slack channel talks to is the agent daemon.
#[async_trait]
impl slack::Agent for peers::Agent {
    async fn start(&self, request: StartRequest) -> Result<SessionInfo, SlackError> {
        peers::Agent::start(self, request)
            .await
            .map_err(agent_err("Start"))
    }
    async fn approve(
        &self,
        session: &str,
        ids: Vec<String>,
    ) -> Result<Vec<ToolCallInfo>, SlackError> {
        peers::Agent::approve(self, session, ids)
            .await
            .map_err(agent_err("Approve"))
    }
    async fn reject(
        &self,
        session: &str,
        ids: Vec<String>,
        reason: &str,
    ) -> Result<Vec<ToolCallInfo>, SlackError> {
        peers::Agent::reject(self, session, ids, reason)
            .await
            .map_err(agent_err("Reject"))
    }
    async fn wait_session(&self, id: &str, timeout_ms: u64) -> Result<SessionInfo, SlackError> {
        peers::Agent::wait_session(self, id, timeout_ms)
            .await
            .map_err(agent_err("WaitSession"))
    }
    async fn show_session(&self, id: &str) -> Result<SessionDetail, SlackError> {
        peers::Agent::show_session(self, id)
            .await
            .map_err(agent_err("ShowSession"))
    }
}

fn agent_err(call: &'static str) -> impl FnOnce(PeerError) -> SlackError {
    move |e| SlackError::Agent {
        call,
        message: e.to_string(),
    }
}

/// The Slack thread → session map, in schedd's database.
struct Threads(Arc<Shared>);

impl ThreadStore for Threads {
    fn session(&self, channel: &str, thread_ts: &str) -> Option<String> {
        let db = lock(&self.0.db);
        let found = db
            .query_row(
                "SELECT session FROM slack_threads WHERE channel = ?1 AND thread_ts = ?2",
                params![channel, thread_ts],
                |r| r.get(0),
            )
            .optional();
        match found {
            Ok(session) => session,
            Err(e) => {
                warn!(error = %e, "slack thread lookup");
                None
            }
        }
    }

    fn remember(&self, channel: &str, thread_ts: &str, session: &str) {
        let db = lock(&self.0.db);
        if let Err(e) = db.execute(
            "INSERT OR REPLACE INTO slack_threads (channel, thread_ts, session, created_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![channel, thread_ts, session, now_ms()],
        ) {
            warn!(error = %e, "slack thread not recorded");
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;
    use stakpak_proto::{AgentProxy, SessionState, ToolCallState};
    use stakpak_testkit::{SlackDouble, app_mention};

    use crate::slack::{ALLOW_ACTION, MemoryThreadStore};

    const BOT: &str = "xoxb-test-bot-token-0123456789";
    const APP: &str = "xapp-1-test-app-token-0123456789";

    fn settings(kind: &str, url: &str) -> Result<Settings, ChannelError> {
        Settings::new(kind, String::new(), url.into())
    }

    #[test]
    fn kinds_and_urls_are_checked() {
        assert_eq!(
            settings("slack", "").unwrap(),
            Settings {
                kind: ChannelKind::Slack,
                profile: String::new(),
                api_url: String::new()
            }
        );
        assert!(settings("slack", "https://slack.example/api").is_ok());
        assert!(settings("slack", "http://127.0.0.1:9000/api").is_ok());
        let e = settings("teams", "").unwrap_err().to_string();
        assert_eq!(e, "unknown channel kind `teams`: schedd knows `slack`");
        let e = settings("slack", "http://slack.example/api")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "api URL `http://slack.example/api`: use https:// (plain http only to this machine)"
        );
    }

    #[test]
    fn threads_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("schedd.db");
        let (_tx, own) = stakpak_daemon::OwnConnection::new();
        let peers = Peers::new(own);
        let channels = Channels::open(&db, peers.clone()).unwrap();
        let threads = Threads(channels.shared.clone());
        assert_eq!(threads.session("C1", "1.2"), None);
        threads.remember("C1", "1.2", "s-1");
        drop(threads);
        drop(channels);
        let again = Channels::open(&db, peers).unwrap();
        let threads = Threads(again.shared.clone());
        assert_eq!(threads.session("C1", "1.2").as_deref(), Some("s-1"));
        assert_eq!(threads.session("C2", "1.2"), None);
    }

    /// The real agent of an embedded suite, driven by the LLM double, behind schedd's agent
    /// peer: a mention's session answers in its thread, a reply in the thread continues it,
    /// and a tool call that needs approval runs once Allow is pressed.
    #[test]
    fn a_slack_channel_drives_the_embedded_agent() {
        use stakpak_testkit::{EmbeddedSuite, LlmDouble, Turn};
        let llm = LlmDouble::start(vec![
            Turn::text("The disk is 42% full.").expecting("how full"),
            Turn::tools(vec![(
                "run_command",
                json!({"command": "echo slack-approved"}),
            )])
            .expecting("say hi"),
            Turn::text("Said hi.").expecting("slack-approved"),
        ]);
        let config = format!(
            "[profiles.default]\nmodel = \"double/test-model\"\nmax_turns = 12\n\
             [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
            llm.base_url()
        );
        let suite = EmbeddedSuite::builder()
            .config_file("config.toml", &config)
            .start();
        let double = SlackDouble::start(BOT, APP);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (conn, proxy) = rt.block_on(async {
            let conn =
                stakpak_proto::zbus::connection::Builder::address(suite.bus_address().as_str())
                    .build()
                    .await
                    .unwrap();
            let proxy = AgentProxy::new(&conn).await.unwrap();
            (conn, proxy)
        });
        let (tx, own) = stakpak_daemon::OwnConnection::new();
        tx.send_replace(Some(conn));
        let agent = rt.block_on(Peers::new(own).agent()).unwrap();
        let mut config = SlackConfig::new(SlackToken::new(BOT), SlackToken::new(APP));
        config.api_url = Some(double.api_url());
        config.reconnect_secs = 1;
        let channel = SlackChannel::new(
            config,
            Arc::new(agent),
            Arc::new(MemoryThreadStore::default()),
        )
        .unwrap();
        let running = channel.clone();
        rt.spawn(async move { running.run().await });

        let ts = "1700000800.000100";
        double.send_event(app_mention("C5", "U1", "how full is the disk?", ts, None));
        let reply = double.wait_call("chat.postMessage", 1, Duration::from_secs(60));
        assert_eq!(
            (reply.args["thread_ts"].clone(), reply.args["text"].clone()),
            (json!(ts), json!("The disk is 42% full."))
        );

        double.send_event(app_mention(
            "C5",
            "U1",
            "now say hi",
            "1700000801.000100",
            Some(ts),
        ));
        let ask = double.wait_call("chat.postMessage", 2, Duration::from_secs(60));
        assert_eq!(ask.args["thread_ts"], json!(ts));
        let value = ask.args["blocks"][1]["elements"][0]["value"]
            .as_str()
            .unwrap()
            .to_owned();
        let (session, call) = value.split_once(' ').unwrap();
        let (session, call) = (session.to_owned(), call.to_owned());
        let posted = double.posted();
        double.press_button(ALLOW_ACTION, &value, "C5", &posted[1].ts, "U7");

        let reply = double.wait_call("chat.postMessage", 3, Duration::from_secs(60));
        assert_eq!(
            (reply.args["thread_ts"].clone(), reply.args["text"].clone()),
            (json!(ts), json!("Said hi."))
        );
        let detail = rt.block_on(proxy.show_session(session)).unwrap();
        let states: Vec<(String, ToolCallState)> = detail
            .tool_calls
            .iter()
            .map(|c| (c.id.clone(), c.state))
            .collect();
        assert_eq!(states, vec![(call, ToolCallState::Done)]);
        assert_eq!(detail.info.state, SessionState::Finished);
        // Both mentions went to one session.
        let sessions = rt.block_on(proxy.list_sessions()).unwrap();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
    }
}
