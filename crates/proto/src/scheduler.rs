//! Wire types of `dev.stakpak.Scheduler1`: autopilot schedules and their runs.

use serde::{Deserialize, Serialize};
use zbus::Type;

use crate::wire::{Opt, wire_enum};
use crate::{ExecStatus, SessionState};

/// A schedule as added (`AddSchedule`) or listed. Empty strings and zeros mean "the default"
/// (`[defaults]` of `autopilot.toml`, then schedd's own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ScheduleSpec {
    /// `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// 5 fields, 6 with seconds first, a macro (`@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`) or `@every <duration>` (`30s`, `15m`, `2h`, `1d`).
    pub cron: String,
    pub prompt: String,
    /// A shell script run through sandboxd first; empty: none (the agent always wakes).
    pub check: String,
    /// Seconds the check may run; 0: the default.
    pub check_timeout_secs: u64,
    /// `success`, `failure` or `any`: which exit of the check wakes the agent.
    pub trigger_on: String,
    /// Profile of the agent's `config.toml`.
    pub profile: String,
    /// Most model turns; 0: the profile's.
    pub max_turns: u32,
    /// Seconds the agent session may run before it is cancelled; 0: the default.
    pub timeout_secs: u64,
    /// An IANA time zone (`Europe/Berlin`); empty: UTC.
    pub timezone: String,
    /// Run once after a due time passed while schedd was down (systemd's `Persistent=`).
    pub catch_up: bool,
    pub notify_channel: String,
    pub notify_target: String,
    /// `all`, `completions`, `failures` or `none`.
    pub notify_on: String,
    pub enabled: bool,
}

/// A schedule with where it came from and when it fires next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ScheduleInfo {
    pub spec: ScheduleSpec,
    pub source: ScheduleSource,
    /// Unix milliseconds of the next firing; 0 when disabled or never.
    pub next_fire_ms: i64,
    /// The newest run, when there is one (`id` empty otherwise).
    pub last_run: RunInfo,
}

/// One run of a schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RunInfo {
    pub id: String,
    pub schedule: String,
    pub trigger: RunTrigger,
    /// Unix milliseconds of the due time it answers (0 for manual runs).
    pub due_ms: i64,
    pub started_ms: i64,
    /// 0 while running.
    pub ended_ms: i64,
    /// sandboxd's status of the check; none: no check ran.
    pub check_status: Opt<ExecStatus>,
    pub check_code: i32,
    /// The warden's rule when the check was refused.
    pub check_rule: String,
    /// The agent session; empty when the agent did not wake.
    pub session: String,
    pub outcome: RunOutcome,
    /// Why, in words, when there is more to say than the outcome.
    pub reason: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// `SchedulerStatus`: schedules, rejected ones and runs in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SchedulerStatus {
    pub schedules: Vec<ScheduleInfo>,
    /// Entries of `autopilot.toml` that were not taken, as `name: reason`.
    pub rejected: Vec<String>,
    /// Runs in progress.
    pub active: Vec<RunInfo>,
    /// Chat channels and their connection state.
    pub channels: Vec<ChannelInfo>,
}

/// A chat channel of schedd. Its tokens are not here: they live in secretd, set for
/// consumer schedd (`slack.bot_token`, `slack.app_token`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ChannelSpec {
    /// `slack`.
    pub kind: String,
    /// Profile of agent sessions started from the channel; empty: `default`.
    pub profile: String,
    /// The service's Web API base URL; empty: its public one (`https://slack.com/api`).
    pub api_url: String,
}

/// A channel and how its connection is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ChannelInfo {
    pub spec: ChannelSpec,
    pub state: ChannelState,
    /// The last error, when there is one.
    pub error: String,
    /// Unix milliseconds of the last change of `state`.
    pub since_ms: i64,
    /// The bot's user id, once the bot token was checked.
    pub bot_user: String,
    /// Socket Mode connections made so far (1 + reconnections).
    pub connections: u32,
}

wire_enum! {
    /// Where a schedule came from ([`ScheduleInfo::source`]).
    /// `File`: `autopilot.toml`; `Cli`: `stakpak autopilot schedule add` (`AddSchedule`).
    #[derive(Default)]
    pub enum ScheduleSource ("schedule source") {
        #[default] File = "file", Cli = "cli",
    }
}

wire_enum! {
    /// What started a run ([`RunInfo::trigger`]).
    /// `Schedule`: its due time came; `CatchUp`: a due time passed while schedd was down and
    /// the schedule catches up; `Manual`: `Trigger`; `DryRun`: `Trigger` with `dry_run`: the
    /// check only.
    #[derive(Default)]
    pub enum RunTrigger ("run trigger") {
        #[default] Schedule = "schedule", CatchUp = "catch-up", Manual = "manual",
        DryRun = "dry-run",
    }
}

wire_enum! {
    /// How a run ended, or that it runs ([`RunInfo::outcome`]); a run whose session stopped
    /// has the session's state.
    /// `Missed`: a due time passed while schedd was down, without catch-up; `Skipped`: the
    /// previous run of the schedule was still going.
    #[derive(Default)]
    pub enum RunOutcome ("run outcome") {
        #[default] Running = "running", Finished = "finished", Failed = "failed",
        TimedOut = "timed-out", SkippedByCheck = "skipped-by-check",
        CheckDenied = "check-denied", CheckFailed = "check-failed", Missed = "missed",
        Skipped = "skipped", Interrupted = "interrupted", WouldRun = "would-run",
        WouldSkip = "would-skip", MaxTurns = "max-turns", Cancelled = "cancelled",
        Paused = "paused", WaitingUser = "waiting-user", WaitingApproval = "waiting-approval",
    }
}

impl From<SessionState> for RunOutcome {
    fn from(state: SessionState) -> Self {
        match state {
            SessionState::Running => RunOutcome::Running,
            SessionState::WaitingApproval => RunOutcome::WaitingApproval,
            SessionState::Paused => RunOutcome::Paused,
            SessionState::WaitingUser => RunOutcome::WaitingUser,
            SessionState::Finished => RunOutcome::Finished,
            SessionState::MaxTurns => RunOutcome::MaxTurns,
            SessionState::Cancelled => RunOutcome::Cancelled,
            SessionState::Failed => RunOutcome::Failed,
            SessionState::Interrupted => RunOutcome::Interrupted,
        }
    }
}

wire_enum! {
    /// How a channel's connection is doing ([`ChannelInfo::state`]).
    /// `Connecting`: waiting for the tokens, for the service, or for the first `hello`;
    /// `Connected`: the service said `hello` on the live connection; `Reconnecting`: the
    /// connection failed or dropped; it is being opened again; `Failed`: it cannot run (tokens
    /// missing or refused); `error` says why.
    #[derive(Default)]
    pub enum ChannelState ("channel state") {
        #[default] Connecting = "connecting", Connected = "connected",
        Reconnecting = "reconnecting", Failed = "failed",
    }
}
