//! The D-Bus side of the daemon: turns wire structs into schedd's own types, hands them to
//! the scheduler's loop or to the channels, turns their answers back into wire structs and
//! maps their errors to D-Bus errors, in [`to_wire`] only.

use std::{path::PathBuf, sync::Arc, time::Duration};

use stakpak_daemon::ControlHandle;
use stakpak_proto::{
    ChannelInfo, ChannelSpec, Error, RunInfo, ScheduleInfo, ScheduleSpec, SchedulerHandler,
    SchedulerStatus,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    channels::{ChannelError, ChannelStatus, Channels, Settings},
    profiles::{Profiles, UnknownProfile},
    run::Run,
    schedule::{
        DEFAULT_CHECK_TIMEOUT, DEFAULT_TIMEOUT, Definition, NotifyOn, Schedule, ScheduleError,
        TriggerOn, check_name,
    },
    scheduler::{Command, CoreError, ScheduleView, Status},
};

/// Why a call failed, until [`to_wire`] names it.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("schedule `{name}`: {source}")]
    Schedule { name: String, source: ScheduleError },
    #[error("schedule `{name}`: {source}")]
    ScheduleProfile {
        name: String,
        source: UnknownProfile,
    },
    #[error("channel {kind}: {source}")]
    ChannelProfile {
        kind: String,
        source: UnknownProfile,
    },
    #[error("the scheduler is stopping")]
    Stopping,
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// The one place schedd's errors become D-Bus errors: its database failing is `Internal`,
/// a peer or the loop away is `Unavailable`, everything else is the caller's argument.
fn to_wire(e: CallError) -> Error {
    let message = e.to_string();
    match e {
        CallError::Stopping => Error::Unavailable(message),
        CallError::Core(CoreError::Store(_)) => Error::Internal(message),
        CallError::Channel(c) if c.is_internal() => Error::Internal(message),
        CallError::Channel(c) if c.is_unavailable() => Error::Unavailable(message),
        CallError::Schedule { .. }
        | CallError::ScheduleProfile { .. }
        | CallError::ChannelProfile { .. }
        | CallError::Core(_)
        | CallError::Channel(_) => Error::InvalidArgument(message),
    }
}

/// Behind `dev.stakpak.Scheduler1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
    commands: mpsc::Sender<Command>,
    channels: Channels,
    /// Where `config.toml` is, for checking profiles.
    config_dir: PathBuf,
}

impl Handler {
    pub(crate) fn new(
        control: ControlHandle,
        commands: mpsc::Sender<Command>,
        channels: Channels,
        config_dir: PathBuf,
    ) -> Self {
        Handler {
            control,
            commands,
            channels,
            config_dir,
        }
    }

    /// Sends a command to the scheduler's loop and waits for its answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, CoreError>>) -> Command,
    ) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| CallError::Stopping)?;
        Ok(rx.await.map_err(|_| CallError::Stopping)??)
    }

    fn check_profile(&self, profile: &str) -> Result<(), UnknownProfile> {
        Profiles::load(&self.config_dir).check(profile)
    }

    async fn add(&self, spec: ScheduleSpec) -> Result<ScheduleInfo, CallError> {
        let name = spec.name.clone();
        let schedule = from_spec(spec).map_err(|source| CallError::Schedule {
            name: name.clone(),
            source,
        })?;
        self.check_profile(&schedule.def.profile)
            .map_err(|source| CallError::ScheduleProfile { name, source })?;
        let view = self.ask(|r| Command::Add(Arc::new(schedule), r)).await?;
        Ok(schedule_info(view))
    }

    async fn add_channel(&self, spec: ChannelSpec) -> Result<ChannelInfo, CallError> {
        if !spec.profile.is_empty() {
            self.check_profile(&spec.profile)
                .map_err(|source| CallError::ChannelProfile {
                    kind: spec.kind.clone(),
                    source,
                })?;
        }
        let settings = Settings::new(&spec.kind, spec.profile, spec.api_url)?;
        Ok(channel_info(self.channels.add(settings).await?))
    }
}

/// The wire form of a definition.
fn to_spec(def: Definition) -> ScheduleSpec {
    ScheduleSpec {
        check_timeout_secs: def.check_timeout.as_secs(),
        trigger_on: def.trigger_on.as_str().into(),
        timeout_secs: def.timeout.as_secs(),
        notify_on: def.notify_on.as_str().into(),
        name: def.name,
        cron: def.cron,
        prompt: def.prompt,
        check: def.check,
        profile: def.profile,
        max_turns: def.max_turns,
        timezone: def.timezone,
        catch_up: def.catch_up,
        notify_channel: def.notify_channel,
        notify_target: def.notify_target,
        enabled: def.enabled,
    }
}

/// Checks a wire spec and fills in the defaults.
fn from_spec(spec: ScheduleSpec) -> Result<Schedule, ScheduleError> {
    check_name(&spec.name)?;
    let secs = |s: u64, default: Duration| {
        if s == 0 {
            default
        } else {
            Duration::from_secs(s)
        }
    };
    Schedule::new(Definition {
        trigger_on: TriggerOn::parse(&spec.trigger_on)?,
        notify_on: NotifyOn::parse(&spec.notify_on)?,
        check_timeout: secs(spec.check_timeout_secs, DEFAULT_CHECK_TIMEOUT),
        timeout: secs(spec.timeout_secs, DEFAULT_TIMEOUT),
        profile: if spec.profile.is_empty() {
            "default".into()
        } else {
            spec.profile
        },
        name: spec.name,
        cron: spec.cron,
        prompt: spec.prompt,
        check: spec.check,
        max_turns: spec.max_turns,
        timezone: spec.timezone,
        catch_up: spec.catch_up,
        notify_channel: spec.notify_channel,
        notify_target: spec.notify_target,
        enabled: spec.enabled,
    })
}

fn schedule_info(view: ScheduleView) -> ScheduleInfo {
    ScheduleInfo {
        spec: to_spec(view.def),
        source: view.source,
        next_fire_ms: view.next_fire_ms.unwrap_or(0),
        last_run: view.last_run.map(run_info).unwrap_or_default(),
    }
}

fn run_info(run: Run) -> RunInfo {
    RunInfo {
        id: run.id,
        schedule: run.schedule,
        trigger: run.trigger,
        due_ms: run.due_ms,
        started_ms: run.started_ms,
        ended_ms: run.ended_ms,
        check_status: run.check_status.into(),
        check_code: run.check_code,
        check_rule: run.check_rule,
        session: run.session,
        outcome: run.outcome,
        reason: run.reason,
        input_tokens: run.input_tokens,
        output_tokens: run.output_tokens,
    }
}

fn channel_info(status: ChannelStatus) -> ChannelInfo {
    ChannelInfo {
        spec: ChannelSpec {
            kind: status.settings.kind.as_str().into(),
            profile: status.settings.profile,
            api_url: status.settings.api_url,
        },
        state: status.state,
        error: status.error,
        since_ms: status.since_ms,
        bot_user: status.bot_user,
        connections: status.connections,
    }
}

fn scheduler_status(status: Status, channels: Vec<ChannelStatus>) -> SchedulerStatus {
    SchedulerStatus {
        schedules: status.schedules.into_iter().map(schedule_info).collect(),
        rejected: status.rejected,
        active: status.active.into_iter().map(run_info).collect(),
        channels: channels.into_iter().map(channel_info).collect(),
    }
}

stakpak_daemon::control_through!(Handler, control);

impl SchedulerHandler for Handler {
    async fn add_schedule(&self, spec: ScheduleSpec) -> Result<ScheduleInfo, Error> {
        self.add(spec).await.map_err(to_wire)
    }

    async fn remove_schedule(&self, name: String) -> Result<(), Error> {
        self.ask(|r| Command::Remove(name, r))
            .await
            .map_err(to_wire)
    }

    async fn enable_schedule(&self, name: String, enabled: bool) -> Result<ScheduleInfo, Error> {
        self.ask(|r| Command::Enable(name, enabled, r))
            .await
            .map(schedule_info)
            .map_err(to_wire)
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>, Error> {
        self.ask(Command::List)
            .await
            .map(|views| views.into_iter().map(schedule_info).collect())
            .map_err(to_wire)
    }

    async fn history(&self, name: String, limit: u32) -> Result<Vec<RunInfo>, Error> {
        self.ask(|r| Command::History(name, limit, r))
            .await
            .map(|runs| runs.into_iter().map(run_info).collect())
            .map_err(to_wire)
    }

    async fn trigger(&self, name: String, dry_run: bool) -> Result<RunInfo, Error> {
        self.ask(|r| Command::Trigger(name, dry_run, r))
            .await
            .map(run_info)
            .map_err(to_wire)
    }

    async fn show_run(&self, id: String) -> Result<RunInfo, Error> {
        self.ask(|r| Command::ShowRun(id, r))
            .await
            .map(run_info)
            .map_err(to_wire)
    }

    async fn clean(&self, older_than_days: u32) -> Result<u64, Error> {
        self.ask(|r| Command::Clean(older_than_days, r))
            .await
            .map_err(to_wire)
    }

    async fn scheduler_status(&self) -> Result<SchedulerStatus, Error> {
        let status = self.ask(Command::Status).await.map_err(to_wire)?;
        Ok(scheduler_status(status, self.channels.list()))
    }

    async fn add_channel(&self, spec: ChannelSpec) -> Result<ChannelInfo, Error> {
        self.add_channel(spec).await.map_err(to_wire)
    }

    async fn remove_channel(&self, kind: String) -> Result<(), Error> {
        self.channels.remove(&kind).map_err(|e| to_wire(e.into()))
    }

    async fn list_channels(&self) -> Result<Vec<ChannelInfo>, Error> {
        Ok(self.channels.list().into_iter().map(channel_info).collect())
    }

    async fn test_channel(&self, kind: String, target: String) -> Result<String, Error> {
        self.channels
            .test(&kind, &target)
            .await
            .map_err(|e| to_wire(e.into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use stakpak_proto::{ExecStatus, Opt, RunOutcome, RunTrigger, ScheduleSource};

    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_spec_round_trips_with_its_defaults_filled_in() {
        let spec = ScheduleSpec {
            name: "disk".into(),
            cron: "@daily".into(),
            prompt: "look".into(),
            enabled: true,
            ..ScheduleSpec::default()
        };
        let schedule = from_spec(spec.clone()).unwrap();
        assert_eq!(
            to_spec(schedule.def),
            ScheduleSpec {
                check_timeout_secs: DEFAULT_CHECK_TIMEOUT.as_secs(),
                trigger_on: "failure".into(),
                profile: "default".into(),
                timeout_secs: DEFAULT_TIMEOUT.as_secs(),
                notify_on: "failures".into(),
                ..spec
            }
        );
        let bad = ScheduleSpec {
            trigger_on: "often".into(),
            ..ScheduleSpec::default()
        };
        assert_eq!(
            from_spec(ScheduleSpec {
                name: "x".into(),
                ..bad
            })
            .unwrap_err(),
            ScheduleError::TriggerOn("often".into())
        );
    }

    #[test]
    fn a_run_shows_as_its_wire_form() {
        let run = Run {
            id: "r1".into(),
            schedule: "disk".into(),
            trigger: RunTrigger::CatchUp,
            check_status: Some(ExecStatus::Exited),
            check_code: 1,
            outcome: RunOutcome::Finished,
            ..Run::default()
        };
        let view = ScheduleView {
            def: from_spec(ScheduleSpec {
                name: "disk".into(),
                cron: "@daily".into(),
                prompt: "look".into(),
                ..ScheduleSpec::default()
            })
            .unwrap()
            .def,
            source: ScheduleSource::Cli,
            next_fire_ms: None,
            last_run: Some(run),
        };
        let info = schedule_info(view);
        assert_eq!(
            (info.source, info.next_fire_ms, info.last_run.clone()),
            (
                ScheduleSource::Cli,
                0,
                RunInfo {
                    id: "r1".into(),
                    schedule: "disk".into(),
                    trigger: RunTrigger::CatchUp,
                    check_status: Opt::from(ExecStatus::Exited),
                    check_code: 1,
                    outcome: RunOutcome::Finished,
                    ..RunInfo::default()
                }
            )
        );
    }

    #[test]
    fn errors_get_their_names() {
        let cases = [
            (
                CallError::Core(CoreError::NoSchedule("nope".into())),
                Error::InvalidArgument("no schedule named `nope`".into()),
            ),
            (
                CallError::Core(CoreError::Store(StoreError::Sql(
                    rusqlite::Error::InvalidQuery,
                ))),
                Error::Internal("schedule database: Query is not read-only".into()),
            ),
            (
                CallError::Stopping,
                Error::Unavailable("the scheduler is stopping".into()),
            ),
            (
                CallError::Channel(ChannelError::Stopping),
                Error::Unavailable("schedd is stopping".into()),
            ),
            (
                CallError::Channel(ChannelError::NoChannel("teams".into())),
                Error::InvalidArgument("no channel `teams`".into()),
            ),
            (
                CallError::Schedule {
                    name: "x".into(),
                    source: ScheduleError::TimeZone("Mars/Base".into()),
                },
                Error::InvalidArgument("schedule `x`: unknown time zone `Mars/Base`".into()),
            ),
        ];
        for (error, wire) in cases {
            assert_eq!(to_wire(error), wire);
        }
    }
}
