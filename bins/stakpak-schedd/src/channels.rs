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
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, params};
use stakpak_daemon::OwnConnection;
use stakpak_proto::{AgentProxy, ChannelInfo, ChannelSpec, SecretsProxy, channel_state};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    db::MIGRATIONS,
    notify::{LogNotifier, Notification, Notifier},
    scheduler::now_ms,
    slack::{SlackChannel, SlackConfig, SlackToken, ThreadStore},
};

/// The one kind of channel so far.
pub const SLACK: &str = "slack";
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
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
    #[error("channel database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("channel database {0}")]
    Schema(#[from] stakpak_sqlite::MigrateError),
}

impl ChannelError {
    pub fn into_wire(self) -> stakpak_proto::Error {
        use stakpak_proto::Error as E;
        match self {
            ChannelError::Invalid(m) | ChannelError::Refused(m) => E::InvalidArgument(m),
            ChannelError::Unavailable(m) => E::Unavailable(m),
            ChannelError::Sql(e) => E::Internal(format!("channel database: {e}")),
            ChannelError::Schema(e) => E::Internal(format!("channel database {e}")),
        }
    }
}

/// A channel that runs, or is being brought up.
struct Live {
    spec: ChannelSpec,
    /// The channel once it is built (tokens fetched and checked).
    channel: Option<SlackChannel>,
    bot_user: String,
    /// State while there is no channel (`connecting`, `failed`) and why.
    pending_state: &'static str,
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
    own: OwnConnection,
    live: Mutex<BTreeMap<String, Live>>,
}

/// The channels of schedd; cheap to clone.
#[derive(Clone)]
pub struct Channels {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks what `AddChannel` got, apart from the profile (see `profiles.rs`).
pub fn check_spec(spec: &ChannelSpec) -> Result<(), ChannelError> {
    if spec.kind != SLACK {
        return Err(ChannelError::Invalid(format!(
            "unknown channel kind `{}`: schedd knows `slack`",
            spec.kind
        )));
    }
    let url = spec.api_url.as_str();
    let local = url.starts_with("http://127.0.0.1:")
        || url.starts_with("http://localhost:")
        || url.starts_with("http://[::1]:");
    if !url.is_empty() && !url.starts_with("https://") && !local {
        return Err(ChannelError::Invalid(format!(
            "api URL `{url}`: use https:// (plain http only to this machine)"
        )));
    }
    Ok(())
}

impl Channels {
    /// Opens the channel tables in `db` (schedd's database, shared with the scheduler's
    /// store through SQLite's own locking).
    pub fn open(db: &Path, own: OwnConnection) -> Result<Channels, ChannelError> {
        let mut conn = Connection::open(db)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        MIGRATIONS.apply(&mut conn, db)?;
        Ok(Channels {
            shared: Arc::new(Shared {
                db: Mutex::new(conn),
                own,
                live: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    fn stored(&self) -> Result<Vec<ChannelSpec>, ChannelError> {
        let db = lock(&self.shared.db);
        let mut stmt = db.prepare("SELECT kind, profile, api_url FROM channels ORDER BY kind")?;
        let rows = stmt.query_map([], |r| {
            Ok(ChannelSpec {
                kind: r.get(0)?,
                profile: r.get(1)?,
                api_url: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Brings up every stored channel, each in its own task.
    pub fn start_stored(&self) -> Result<(), ChannelError> {
        for spec in self.stored()? {
            self.spawn(spec, None);
        }
        Ok(())
    }

    /// Starts the task of `spec`: with `ready` (a channel built and checked by `add`) it
    /// runs at once, otherwise it is built first, retried until it comes up.
    fn spawn(&self, spec: ChannelSpec, ready: Option<(SlackChannel, String)>) {
        let kind = spec.kind.clone();
        let mut live = Live {
            spec: spec.clone(),
            channel: None,
            bot_user: String::new(),
            pending_state: channel_state::CONNECTING,
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
            async move { this.bring_up(spec, ready).await },
        ));
        map.insert(kind, live);
    }

    async fn bring_up(self, spec: ChannelSpec, ready: Option<(SlackChannel, String)>) {
        let channel = match ready {
            Some((channel, _)) => channel,
            None => {
                let mut pause = Duration::from_secs(1);
                loop {
                    match self.build(&spec).await {
                        Ok((channel, bot_user)) => {
                            let mut map = lock(&self.shared.live);
                            let Some(live) = map.get_mut(&spec.kind) else {
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
                            let state = match e {
                                ChannelError::Unavailable(_) => channel_state::CONNECTING,
                                _ => channel_state::FAILED,
                            };
                            warn!(channel = %spec.kind, error = %e, retry_secs = pause.as_secs(), "channel not up");
                            if let Some(live) = lock(&self.shared.live).get_mut(&spec.kind) {
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
        info!(channel = %spec.kind, "channel up; opening its socket mode connection");
        if let Err(e) = channel.run().await {
            warn!(channel = %spec.kind, error = %e, "channel stopped");
            if let Some(live) = lock(&self.shared.live).get_mut(&spec.kind) {
                live.channel = None;
                live.pending_state = channel_state::FAILED;
                live.error = e.to_string();
                live.since_ms = now_ms();
            }
        }
    }

    /// Fetches the tokens from secretd, builds the channel and checks the bot token.
    async fn build(&self, spec: &ChannelSpec) -> Result<(SlackChannel, String), ChannelError> {
        let conn = self
            .shared
            .own
            .get()
            .await
            .ok_or_else(|| ChannelError::Unavailable("schedd is stopping".into()))?;
        let secrets = SecretsProxy::new(&conn).await.map_err(|e| {
            ChannelError::Unavailable(format!("cannot reach secretd for the tokens: {e}"))
        })?;
        let reveal = async |name: &str| {
            secrets
                .reveal(name.to_owned(), CONSUMER.to_owned())
                .await
                .map(SlackToken::new)
                .map_err(|e| match e {
                    stakpak_proto::Error::Unavailable(m) => {
                        ChannelError::Unavailable(format!("secretd cannot give {name}: {m}"))
                    }
                    stakpak_proto::Error::ZBus(m) => {
                        ChannelError::Unavailable(format!("cannot reach secretd for {name}: {m}"))
                    }
                    other => ChannelError::Refused(format!(
                        "token {name}: {other}; set it with `stakpak autopilot channel add slack`"
                    )),
                })
        };
        let bot = reveal(SLACK_BOT_TOKEN).await?;
        let app = reveal(SLACK_APP_TOKEN).await?;
        let mut config = SlackConfig::new(bot, app);
        if !spec.api_url.is_empty() {
            config.api_url = Some(spec.api_url.trim_end_matches('/').to_owned());
        }
        config.profile = spec.profile.clone();
        let agent = AgentProxy::new(&conn)
            .await
            .map_err(|e| ChannelError::Unavailable(format!("agent proxy: {e}")))?;
        let threads = Threads(self.shared.clone());
        let channel = SlackChannel::new(config, Arc::new(agent), Arc::new(threads))
            .map_err(|e| ChannelError::Refused(e.to_string()))?;
        let bot_user = channel
            .check()
            .await
            .map_err(|e| ChannelError::Refused(format!("the bot token does not work: {e}")))?;
        Ok((channel, bot_user))
    }

    /// `AddChannel`: checks the tokens with the service, then stores and connects it.
    pub async fn add(&self, spec: ChannelSpec) -> Result<ChannelInfo, ChannelError> {
        check_spec(&spec)?;
        let taken = lock(&self.shared.db)
            .query_row(
                "SELECT 1 FROM channels WHERE kind = ?1",
                params![spec.kind],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if taken {
            return Err(ChannelError::Invalid(format!(
                "a {} channel is already configured; remove it first (`stakpak autopilot channel remove {}`)",
                spec.kind, spec.kind
            )));
        }
        let (channel, bot_user) = self.build(&spec).await?;
        lock(&self.shared.db).execute(
            "INSERT INTO channels (kind, profile, api_url, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![spec.kind, spec.profile, spec.api_url, now_ms()],
        )?;
        info!(channel = %spec.kind, bot_user = %bot_user, "channel added");
        self.spawn(spec.clone(), Some((channel, bot_user)));
        self.info(&spec.kind)
            .ok_or_else(|| ChannelError::Invalid(format!("channel {} vanished", spec.kind)))
    }

    /// `RemoveChannel`: disconnects it and forgets it (threads stay, for a later channel).
    pub fn remove(&self, kind: &str) -> Result<(), ChannelError> {
        let removed =
            lock(&self.shared.db).execute("DELETE FROM channels WHERE kind = ?1", params![kind])?;
        let live = lock(&self.shared.live).remove(kind);
        if removed == 0 && live.is_none() {
            return Err(ChannelError::Invalid(format!("no channel `{kind}`")));
        }
        drop(live);
        info!(channel = %kind, "channel removed");
        Ok(())
    }

    fn info(&self, kind: &str) -> Option<ChannelInfo> {
        let live = lock(&self.shared.live);
        let l = live.get(kind)?;
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
                ChannelInfo {
                    spec: l.spec.clone(),
                    state: link.state().into(),
                    error: link.last_error,
                    since_ms: since,
                    bot_user: l.bot_user.clone(),
                    connections: link.hellos,
                }
            }
            None => ChannelInfo {
                spec: l.spec.clone(),
                state: l.pending_state.into(),
                error: l.error.clone(),
                since_ms: l.since_ms,
                bot_user: String::new(),
                connections: 0,
            },
        })
    }

    /// Every channel and its state.
    pub fn list(&self) -> Vec<ChannelInfo> {
        let kinds: Vec<String> = lock(&self.shared.live).keys().cloned().collect();
        kinds.iter().filter_map(|k| self.info(k)).collect()
    }

    /// `TestChannel`: checks the bot token and, with a target, posts a test message.
    pub async fn test(&self, kind: &str, target: &str) -> Result<String, ChannelError> {
        let (spec, running) = {
            let live = lock(&self.shared.live);
            let l = live
                .get(kind)
                .ok_or_else(|| ChannelError::Invalid(format!("no channel `{kind}`")))?;
            (l.spec.clone(), l.channel.clone())
        };
        let (channel, bot_user) = match running {
            Some(channel) => {
                let user = channel.check().await.map_err(|e| {
                    ChannelError::Refused(format!("the bot token does not work: {e}"))
                })?;
                (channel, user)
            }
            None => self.build(&spec).await?,
        };
        let mut said = format!("{kind}: the bot token works (bot user {bot_user})");
        if !target.is_empty() {
            let ts = channel
                .notify(target, "stakpak autopilot: test message from schedd")
                .await
                .map_err(|e| ChannelError::Refused(format!("posting to {target}: {e}")))?;
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
        let channel = lock(&self.shared.live)
            .get(&n.channel)
            .and_then(|l| l.channel.clone());
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

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(kind: &str, url: &str) -> ChannelSpec {
        ChannelSpec {
            kind: kind.into(),
            profile: String::new(),
            api_url: url.into(),
        }
    }

    #[test]
    fn kinds_and_urls_are_checked() {
        assert!(check_spec(&spec("slack", "")).is_ok());
        assert!(check_spec(&spec("slack", "https://slack.example/api")).is_ok());
        assert!(check_spec(&spec("slack", "http://127.0.0.1:9000/api")).is_ok());
        let e = check_spec(&spec("teams", "")).unwrap_err().to_string();
        assert_eq!(e, "unknown channel kind `teams`: schedd knows `slack`");
        let e = check_spec(&spec("slack", "http://slack.example/api"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use https://"), "{e}");
    }

    #[test]
    fn threads_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("schedd.db");
        let (_tx, own) = stakpak_daemon::OwnConnection::new();
        let channels = Channels::open(&db, own.clone()).unwrap();
        let threads = Threads(channels.shared.clone());
        assert_eq!(threads.session("C1", "1.2"), None);
        threads.remember("C1", "1.2", "s-1");
        drop(threads);
        drop(channels);
        let again = Channels::open(&db, own).unwrap();
        let threads = Threads(again.shared.clone());
        assert_eq!(threads.session("C1", "1.2").as_deref(), Some("s-1"));
        assert_eq!(threads.session("C2", "1.2"), None);
    }
}
