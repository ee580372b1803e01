//! The D-Bus side of the daemon: validates calls, turns wire structs into schedd's own
//! types and hands them to the scheduler's loop.

use std::{path::PathBuf, time::Duration};

use stakpak_daemon::ControlHandle;
use stakpak_proto::{
    ChannelInfo, ChannelSpec, DaemonControl, DaemonStatus, Error, RunInfo, ScheduleInfo,
    ScheduleSpec, SchedulerHandler, SchedulerStatus,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    channels::Channels,
    profiles::Profiles,
    schedule::{
        DEFAULT_CHECK_TIMEOUT, DEFAULT_TIMEOUT, Definition, NotifyOn, Schedule, TriggerOn,
        check_name,
    },
    scheduler::{Command, CoreError},
};

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

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, CoreError>>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let stopping = || Error::Unavailable("the scheduler is stopping".into());
        self.commands.send(make(tx)).await.map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?.map_err(|e| match e {
            CoreError::Store(e) => Error::Internal(e.to_string()),
            other => Error::InvalidArgument(other.to_string()),
        })
    }
}

/// The wire form of a definition.
pub(crate) fn to_spec(def: &Definition) -> ScheduleSpec {
    ScheduleSpec {
        name: def.name.clone(),
        cron: def.cron.clone(),
        prompt: def.prompt.clone(),
        check: def.check.clone(),
        check_timeout_secs: def.check_timeout.as_secs(),
        trigger_on: def.trigger_on.as_str().into(),
        profile: def.profile.clone(),
        max_turns: def.max_turns,
        timeout_secs: def.timeout.as_secs(),
        timezone: def.timezone.clone(),
        catch_up: def.catch_up,
        notify_channel: def.notify_channel.clone(),
        notify_target: def.notify_target.clone(),
        notify_on: def.notify_on.as_str().into(),
        enabled: def.enabled,
    }
}

/// Checks a wire spec and fills in the defaults.
fn from_spec(spec: ScheduleSpec) -> Result<Schedule, String> {
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

impl DaemonControl for Handler {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        self.control.status().await
    }

    async fn reload(&self) -> Result<(), Error> {
        self.control.reload().await
    }
}

impl SchedulerHandler for Handler {
    async fn add_schedule(&self, spec: ScheduleSpec) -> Result<ScheduleInfo, Error> {
        let label = spec.name.clone();
        let schedule = from_spec(spec)
            .and_then(|s| {
                Profiles::load(&self.config_dir)
                    .check(&s.def.profile)
                    .map(|()| s)
            })
            .map_err(|reason| Error::InvalidArgument(format!("schedule `{label}`: {reason}")))?;
        self.ask(|r| Command::Add(std::sync::Arc::new(schedule), r))
            .await
    }

    async fn remove_schedule(&self, name: String) -> Result<(), Error> {
        self.ask(|r| Command::Remove(name, r)).await
    }

    async fn enable_schedule(&self, name: String, enabled: bool) -> Result<ScheduleInfo, Error> {
        self.ask(|r| Command::Enable(name, enabled, r)).await
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>, Error> {
        self.ask(Command::List).await
    }

    async fn history(&self, name: String, limit: u32) -> Result<Vec<RunInfo>, Error> {
        self.ask(|r| Command::History(name, limit, r)).await
    }

    async fn trigger(&self, name: String, dry_run: bool) -> Result<RunInfo, Error> {
        self.ask(|r| Command::Trigger(name, dry_run, r)).await
    }

    async fn show_run(&self, id: String) -> Result<RunInfo, Error> {
        self.ask(|r| Command::ShowRun(id, r)).await
    }

    async fn clean(&self, older_than_days: u32) -> Result<u64, Error> {
        self.ask(|r| Command::Clean(older_than_days, r)).await
    }

    async fn scheduler_status(&self) -> Result<SchedulerStatus, Error> {
        let mut status = self.ask(Command::Status).await?;
        status.channels = self.channels.list();
        Ok(status)
    }

    async fn add_channel(&self, spec: ChannelSpec) -> Result<ChannelInfo, Error> {
        if !spec.profile.is_empty() {
            Profiles::load(&self.config_dir)
                .check(&spec.profile)
                .map_err(|reason| {
                    Error::InvalidArgument(format!("channel {}: {reason}", spec.kind))
                })?;
        }
        self.channels.add(spec).await.map_err(|e| e.into_wire())
    }

    async fn remove_channel(&self, kind: String) -> Result<(), Error> {
        self.channels.remove(&kind).map_err(|e| e.into_wire())
    }

    async fn list_channels(&self) -> Result<Vec<ChannelInfo>, Error> {
        Ok(self.channels.list())
    }

    async fn test_channel(&self, kind: String, target: String) -> Result<String, Error> {
        self.channels
            .test(&kind, &target)
            .await
            .map_err(|e| e.into_wire())
    }
}
