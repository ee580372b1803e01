//! `stakpak autopilot`: schedules of schedd (`Scheduler1`): add, list, remove, enable,
//! disable, history, trigger, show a run, clean old runs; chat channels: add, list, remove,
//! test; and the scheduler's status.
//!
//! A channel's tokens go from here to secretd (set for consumer schedd), never to schedd's
//! database or a log; schedd fetches them from secretd when it connects the channel.

use std::{io::Read, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use stakpak_proto::{
    ChannelInfo, ChannelSpec, RunInfo, RunOutcome, ScheduleInfo, ScheduleSpec, SchedulerProxy,
    SecretsProxy,
};
use stakpak_secrets::placeholder::SecretString;

use crate::{
    locate,
    suite::Layout,
    table::{Column, Table, utc_ms},
};

#[derive(Debug, Subcommand)]
pub enum AutopilotCommand {
    /// Schedules: the agent woken on a cron expression, after an optional check script.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Chat channels (Slack): mentions and DMs start agent sessions, approvals become
    /// buttons, schedule notifications go there.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Schedules with their next firing and last run, rejected entries, runs in progress,
    /// channels and their connection.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule (kept in schedd's database).
    Add(Box<AddArgs>),
    /// Every schedule.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule added here; its history stays.
    Remove { name: String },
    /// Enable a schedule.
    Enable { name: String },
    /// Disable a schedule.
    Disable { name: String },
    /// Runs of a schedule, newest first.
    History {
        name: String,
        #[arg(long)]
        json: bool,
        /// How many runs.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
    },
    /// Run a schedule now; `--dry-run` only runs the check and says whether the agent
    /// would wake.
    Trigger {
        name: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// One run.
    Show {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete runs older than N days.
    Clean {
        #[arg(long, default_value_t = 30, value_name = "N")]
        older_than_days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel. The tokens are read from stdin (one per line, or asked for without
    /// echo on a terminal) unless given as flags; they are stored in secretd for schedd
    /// alone and checked with the service before the channel is kept.
    Add(ChannelAddArgs),
    /// Every channel and its connection state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a channel and delete its tokens from secretd.
    Remove { kind: String },
    /// Check a channel's bot token; with --target, post a test message there.
    Test {
        kind: String,
        /// A channel id (C…) or user id (U…) to post a test message to.
        #[arg(long)]
        target: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ChannelAddArgs {
    /// The kind of channel: slack.
    pub kind: String,
    /// The bot token (xoxb-…). A flag is visible to other users in the process list;
    /// prefer stdin.
    #[arg(long, value_name = "TOKEN")]
    pub bot_token: Option<String>,
    /// The app-level token with connections:write (xapp-…), for Socket Mode.
    #[arg(long, value_name = "TOKEN")]
    pub app_token: Option<String>,
    /// Agent profile of sessions started from the channel (default: default).
    #[arg(long)]
    pub profile: Option<String>,
    /// The service's Web API base URL (default: https://slack.com/api).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub name: String,
    /// 5 fields, 6 with seconds first, @hourly/@daily/@weekly/@monthly/@yearly, or
    /// `@every 15m` (s, m, h, d).
    #[arg(long)]
    pub cron: String,
    #[arg(long)]
    pub prompt: String,
    /// A shell script run through sandboxd first; its exit decides whether the agent wakes.
    #[arg(long)]
    pub check: Option<String>,
    #[arg(long, value_name = "SECS")]
    pub check_timeout: Option<u64>,
    /// success | failure | any (default failure).
    #[arg(long)]
    pub trigger_on: Option<String>,
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long)]
    pub max_turns: Option<u32>,
    /// Seconds the agent session may run before it is cancelled.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// IANA time zone of the cron expression (default UTC).
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Run once after a due time passed while schedd was down.
    #[arg(long)]
    pub catch_up: bool,
    #[arg(long)]
    pub notify_channel: Option<String>,
    #[arg(long)]
    pub notify_target: Option<String>,
    /// all | completions | failures | none (default failures).
    #[arg(long)]
    pub notify_on: Option<String>,
    /// Add it disabled.
    #[arg(long)]
    pub disabled: bool,
}

/// Runs one `stakpak autopilot` command.
pub fn run(
    command: AutopilotCommand,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    locate::on_bus(bus_address, layout, async |_, conn| {
        let proxy = SchedulerProxy::new(conn).await?;
        execute(command, &proxy, conn).await
    })
}

/// Secret names of the Slack tokens (schedd's `channels.rs` reads the same).
const SLACK_BOT_TOKEN: &str = "slack.bot_token";
const SLACK_APP_TOKEN: &str = "slack.app_token";

async fn channel(
    command: ChannelCommand,
    s: &SchedulerProxy<'_>,
    secrets: &SecretsProxy<'_>,
) -> anyhow::Result<ExitCode> {
    match command {
        ChannelCommand::Add(a) => {
            if a.kind != "slack" {
                bail!("unknown channel kind `{}`: schedd knows `slack`", a.kind);
            }
            let existing = s.list_channels().await.map_err(plain)?;
            if existing.iter().any(|c| c.spec.kind == a.kind) {
                bail!(
                    "a {} channel is already configured; remove it first (`stakpak autopilot channel remove {}`)",
                    a.kind,
                    a.kind
                );
            }
            let (bot, app) = slack_tokens(a.bot_token, a.app_token)?;
            let store = async |name: &str, value: &SecretString| {
                secrets
                    .set(
                        name.to_owned(),
                        value.expose().to_owned(),
                        vec!["schedd".into()],
                    )
                    .await
                    .map_err(plain)
                    .with_context(|| format!("secretd: cannot store {name}"))
            };
            store(SLACK_BOT_TOKEN, &bot).await?;
            if let Err(e) = store(SLACK_APP_TOKEN, &app).await {
                let _ = secrets.delete(SLACK_BOT_TOKEN.into()).await;
                return Err(e);
            }
            let spec = ChannelSpec {
                kind: a.kind.clone(),
                profile: a.profile.unwrap_or_default(),
                api_url: a.api_url.unwrap_or_default(),
            };
            match s.add_channel(spec).await {
                Ok(info) => println!(
                    "added {} channel: bot user {}, {}",
                    info.spec.kind, info.bot_user, info.state
                ),
                Err(e) => {
                    // Nothing half-configured stays behind: the tokens go again.
                    let _ = secrets.delete(SLACK_BOT_TOKEN.into()).await;
                    let _ = secrets.delete(SLACK_APP_TOKEN.into()).await;
                    return Err(plain(e).context(format!("the {} channel was not added", a.kind)));
                }
            }
        }
        ChannelCommand::List { json } => {
            let list = s.list_channels().await.map_err(plain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render_channels(&list));
            }
        }
        ChannelCommand::Remove { kind } => {
            s.remove_channel(kind.clone()).await.map_err(plain)?;
            if kind == "slack" {
                for name in [SLACK_BOT_TOKEN, SLACK_APP_TOKEN] {
                    if let Err(e) = secrets.delete(name.into()).await {
                        eprintln!(
                            "stakpak: warning: secretd: cannot delete {name}: {}",
                            plain(e)
                        );
                    }
                }
            }
            println!("removed {kind} channel and its tokens");
        }
        ChannelCommand::Test { kind, target } => {
            let said = s
                .test_channel(kind, target.unwrap_or_default())
                .await
                .map_err(plain)?;
            println!("{said}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The bot and app tokens: from the flags, else from stdin (asked for without echo on a
/// terminal; otherwise one token per line, told apart by their `xoxb-`/`xapp-` prefixes).
fn slack_tokens(
    bot: Option<String>,
    app: Option<String>,
) -> anyhow::Result<(SecretString, SecretString)> {
    let mut bot = bot.map(SecretString::new);
    let mut app = app.map(SecretString::new);
    if bot.is_none() || app.is_none() {
        let stdin = std::io::stdin();
        if rustix::termios::isatty(&stdin) {
            if bot.is_none() {
                bot = Some(crate::secret::read_stdin("the bot token (xoxb-…)")?);
            }
            if app.is_none() {
                app = Some(crate::secret::read_stdin("the app token (xapp-…)")?);
            }
        } else {
            let mut bytes = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut bytes)
                .context("cannot read the tokens from stdin")?;
            let text = crate::secret::into_secret(bytes).context("stdin is not UTF-8 text")?;
            for line in text.expose().lines().map(str::trim) {
                if line.starts_with("xoxb-") && bot.is_none() {
                    bot = Some(SecretString::new(line.to_owned()));
                } else if line.starts_with("xapp-") && app.is_none() {
                    app = Some(SecretString::new(line.to_owned()));
                }
            }
        }
    }
    let (Some(bot), Some(app)) = (bot, app) else {
        bail!(
            "the slack channel needs a bot token (xoxb-…) and an app token (xapp-…): \
             give them on stdin, one per line, or with --bot-token and --app-token"
        );
    };
    if !bot.expose().starts_with("xoxb-") {
        bail!("the bot token must start with xoxb- (a bot user OAuth token)");
    }
    if !app.expose().starts_with("xapp-") {
        bail!("the app token must start with xapp- (an app-level token with connections:write)");
    }
    if bot.expose().len() < 10 || app.expose().len() < 10 {
        bail!("a slack token is too short to be real");
    }
    Ok((bot, app))
}

fn render_channels(list: &[ChannelInfo]) -> String {
    if list.is_empty() {
        return "no channels (add one: stakpak autopilot channel add slack)\n".into();
    }
    let mut table = Table::new(
        2,
        [
            Column::fixed("KIND", 8),
            Column::fixed("STATE", 12),
            Column::fixed("SINCE", 19),
            Column::fixed("BOT", 11),
            Column::fixed("PROFILE", 10),
            Column::fit("ERROR"),
        ],
    );
    for c in list {
        table.row([
            c.spec.kind.as_str(),
            c.state.as_str(),
            &time(c.since_ms),
            or_dash(&c.bot_user),
            if c.spec.profile.is_empty() {
                "default"
            } else {
                &c.spec.profile
            },
            &c.error,
        ]);
    }
    table.render()
}

/// `-` for an empty cell.
fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

async fn execute(
    command: AutopilotCommand,
    s: &SchedulerProxy<'_>,
    conn: &stakpak_proto::zbus::Connection,
) -> anyhow::Result<ExitCode> {
    match command {
        AutopilotCommand::Status { json } => {
            let status = s.scheduler_status().await.context("schedd")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render_schedules(&status.schedules));
                for r in &status.rejected {
                    println!("rejected: {r}");
                }
                for run in &status.active {
                    println!(
                        "running: {} {} since {}",
                        run.schedule,
                        run.id,
                        time(run.started_ms)
                    );
                }
                for c in &status.channels {
                    println!(
                        "channel {}: {} since {} ({} connections){}",
                        c.spec.kind,
                        c.state,
                        time(c.since_ms),
                        c.connections,
                        if c.error.is_empty() {
                            String::new()
                        } else {
                            format!(", last error: {}", c.error)
                        }
                    );
                }
            }
        }
        AutopilotCommand::Channel(cmd) => {
            let secrets = SecretsProxy::new(conn).await?;
            return channel(cmd, s, &secrets).await;
        }
        AutopilotCommand::Schedule(cmd) => match cmd {
            ScheduleCommand::Add(a) => {
                let a = *a;
                let spec = ScheduleSpec {
                    name: a.name,
                    cron: a.cron,
                    prompt: a.prompt,
                    check: a.check.unwrap_or_default(),
                    check_timeout_secs: a.check_timeout.unwrap_or(0),
                    trigger_on: a.trigger_on.unwrap_or_default(),
                    profile: a.profile.unwrap_or_default(),
                    max_turns: a.max_turns.unwrap_or(0),
                    timeout_secs: a.timeout.unwrap_or(0),
                    timezone: a.timezone.unwrap_or_default(),
                    catch_up: a.catch_up,
                    notify_channel: a.notify_channel.unwrap_or_default(),
                    notify_target: a.notify_target.unwrap_or_default(),
                    notify_on: a.notify_on.unwrap_or_default(),
                    enabled: !a.disabled,
                };
                let info = s.add_schedule(spec).await.map_err(plain)?;
                println!(
                    "added {} (next: {})",
                    info.spec.name,
                    time(info.next_fire_ms)
                );
            }
            ScheduleCommand::List { json } => {
                let list = s.list_schedules().await.map_err(plain)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    print!("{}", render_schedules(&list));
                }
            }
            ScheduleCommand::Remove { name } => {
                s.remove_schedule(name.clone()).await.map_err(plain)?;
                println!("removed {name}");
            }
            ScheduleCommand::Enable { name } => {
                let info = s.enable_schedule(name, true).await.map_err(plain)?;
                println!(
                    "enabled {} (next: {})",
                    info.spec.name,
                    time(info.next_fire_ms)
                );
            }
            ScheduleCommand::Disable { name } => {
                let info = s.enable_schedule(name, false).await.map_err(plain)?;
                println!("disabled {}", info.spec.name);
            }
            ScheduleCommand::History { name, json, limit } => {
                let runs = s.history(name, limit).await.map_err(plain)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&runs)?);
                } else {
                    print!("{}", render_runs(&runs));
                }
            }
            ScheduleCommand::Trigger { name, dry_run } => {
                let mut run = s.trigger(name, dry_run).await.map_err(plain)?;
                if !dry_run {
                    println!("started run {}", run.id);
                    return Ok(ExitCode::SUCCESS);
                }
                // A dry run is the check only: wait for it (its timeout bounds it).
                while run.outcome == RunOutcome::Running {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    run = s.show_run(run.id.clone()).await.map_err(plain)?;
                }
                println!("{}", describe_run(&run));
                return Ok(match run.outcome {
                    RunOutcome::WouldRun | RunOutcome::WouldSkip => ExitCode::SUCCESS,
                    _ => ExitCode::FAILURE,
                });
            }
            ScheduleCommand::Show { run_id, json } => {
                let run = s.show_run(run_id).await.map_err(plain)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&run)?);
                } else {
                    println!("{}", describe_run(&run));
                }
            }
            ScheduleCommand::Clean { older_than_days } => {
                let n = s.clean(older_than_days).await.map_err(plain)?;
                println!("deleted {n} runs");
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// schedd's message without the D-Bus error name around it.
fn plain(e: stakpak_proto::Error) -> anyhow::Error {
    use stakpak_proto::Error as E;
    match e {
        E::InvalidArgument(m)
        | E::InvalidConfig(m)
        | E::PermissionDenied(m)
        | E::Unavailable(m)
        | E::Internal(m) => anyhow::anyhow!(m),
        E::ZBus(z) => anyhow::Error::from(z).context("schedd"),
    }
}

/// Unix milliseconds as UTC `YYYY-MM-DD HH:MM:SS`, `-` for 0.
fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    utc_ms(ms)
}

fn render_schedules(list: &[ScheduleInfo]) -> String {
    let mut table = Table::new(
        1,
        [
            Column::fixed("NAME", 20),
            Column::fixed("CRON", 16),
            Column::fixed("ENABLED", 7),
            Column::fixed("FROM", 5),
            Column::fixed("NEXT (UTC)", 20),
            Column::fixed("LAST", 18),
            Column::fit("LAST AT"),
        ],
    );
    for s in list {
        table.row([
            s.spec.name.as_str(),
            &s.spec.cron,
            if s.spec.enabled { "yes" } else { "no" },
            s.source.as_str(),
            &time(s.next_fire_ms),
            if s.last_run.id.is_empty() {
                "-"
            } else {
                s.last_run.outcome.as_str()
            },
            &time(s.last_run.started_ms),
        ]);
    }
    table.render()
}

fn render_runs(runs: &[RunInfo]) -> String {
    let mut table = Table::new(
        1,
        [
            Column::fixed("RUN", 16),
            Column::fixed("TRIGGER", 9),
            Column::fixed("STARTED (UTC)", 20),
            Column::fixed("OUTCOME", 18),
            Column::fixed("CHECK", 12),
            Column::fit("SESSION"),
        ],
    );
    for r in runs {
        let check = match r.check_status.get() {
            None => "-".to_string(),
            Some(status) => format!("{status} {}", r.check_code),
        };
        table.row([
            r.id.as_str(),
            r.trigger.as_str(),
            &time(r.started_ms),
            r.outcome.as_str(),
            &check,
            or_dash(&r.session),
        ]);
    }
    table.render()
}

fn describe_run(r: &RunInfo) -> String {
    let mut out = format!(
        "run {} of {}: {}\n  trigger {}, started {}, ended {}",
        r.id,
        r.schedule,
        r.outcome,
        r.trigger,
        time(r.started_ms),
        time(r.ended_ms)
    );
    if let Some(status) = r.check_status.get() {
        out.push_str(&format!("\n  check: {status} {}", r.check_code));
        if !r.check_rule.is_empty() {
            out.push_str(&format!(" (rule {})", r.check_rule));
        }
    }
    if !r.session.is_empty() {
        out.push_str(&format!(
            "\n  session {} ({} input, {} output tokens)",
            r.session, r.input_tokens, r.output_tokens
        ));
    }
    if !r.reason.is_empty() {
        out.push_str(&format!("\n  {}", r.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_in_utc() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_767_261_600_000), "2026-01-01 10:00:00");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn tables_line_up() {
        let channels = [
            ChannelInfo {
                spec: ChannelSpec {
                    kind: "slack".into(),
                    ..ChannelSpec::default()
                },
                state: stakpak_proto::ChannelState::Connecting,
                ..ChannelInfo::default()
            },
            ChannelInfo {
                spec: ChannelSpec {
                    kind: "slack".into(),
                    profile: "ops".into(),
                    api_url: String::new(),
                },
                state: stakpak_proto::ChannelState::Reconnecting,
                error: "socket closed".into(),
                since_ms: 1_767_261_600_000,
                bot_user: "U0123456789AB".into(),
                connections: 2,
            },
        ];
        assert_eq!(
            render_channels(&channels),
            "KIND      STATE         SINCE                BOT          PROFILE     ERROR\n\
             slack     connecting    -                    -            default     \n\
             slack     reconnecting  2026-01-01 10:00:00  U0123456789AB  ops         socket closed\n"
        );
        let last = RunInfo {
            id: "r-1".into(),
            outcome: RunOutcome::SkippedByCheck,
            started_ms: 1_767_261_600_000,
            ..RunInfo::default()
        };
        let schedules = [
            ScheduleInfo {
                spec: ScheduleSpec {
                    name: "disk".into(),
                    cron: "*/5 * * * *".into(),
                    enabled: true,
                    ..ScheduleSpec::default()
                },
                next_fire_ms: 1_767_261_600_000,
                last_run: last.clone(),
                ..ScheduleInfo::default()
            },
            ScheduleInfo {
                spec: ScheduleSpec {
                    name: "a-very-long-schedule-name".into(),
                    cron: "@every 15m".into(),
                    ..ScheduleSpec::default()
                },
                source: stakpak_proto::ScheduleSource::Cli,
                ..ScheduleInfo::default()
            },
        ];
        assert_eq!(
            render_schedules(&schedules),
            "NAME                 CRON             ENABLED FROM  NEXT (UTC)           LAST               LAST AT\n\
             disk                 */5 * * * *      yes     file  2026-01-01 10:00:00  skipped-by-check   2026-01-01 10:00:00\n\
             a-very-long-schedule-name @every 15m       no      cli   -                    -                  -\n"
        );
        let runs = [
            RunInfo {
                check_status: stakpak_proto::ExecStatus::Exited.into(),
                check_code: 1,
                session: "s-0a1b2c".into(),
                trigger: stakpak_proto::RunTrigger::CatchUp,
                ..last.clone()
            },
            RunInfo {
                id: "r-2".into(),
                outcome: RunOutcome::Running,
                ..RunInfo::default()
            },
        ];
        assert_eq!(
            render_runs(&runs),
            "RUN              TRIGGER   STARTED (UTC)        OUTCOME            CHECK        SESSION\n\
             r-1              catch-up  2026-01-01 10:00:00  skipped-by-check   exited 1     s-0a1b2c\n\
             r-2              schedule  -                    running            -            -\n"
        );
    }
}
