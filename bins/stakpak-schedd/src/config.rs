//! `schedd.toml` (`[log]`) and, read beside it at start and on every reload,
//! `autopilot.toml`: `[defaults]`, `[notifications]`, `[[schedules]]` and `[channels]`.
//!
//! ```toml
//! [defaults]
//! profile = "default"
//! timeout = "30m"          # agent session; seconds or 30s/15m/2h
//! check_timeout = "60s"
//! trigger_on = "failure"   # success | failure | any
//! timezone = "UTC"
//! catch_up = false
//!
//! [notifications]
//! channel = "slack"
//! target = "#ops"
//! notify_on = "failures"   # all | completions | failures | none
//!
//! [[schedules]]
//! name = "disk"
//! cron = "*/15 * * * *"
//! check = "test $(df --output=pcent / | tail -1 | tr -dc 0-9) -lt 90"
//! prompt = "The root filesystem is almost full; find out why and free space safely."
//! ```
//!
//! A file that is not TOML, or has unknown keys outside a schedule, fails as a whole (the
//! running configuration stays). A schedule entry that is wrong (bad cron, unknown
//! `trigger_on`, a duplicate name) is rejected alone, with its reason; the rest are taken.

use std::{io, path::Path, sync::Arc};

use serde::Deserialize;
use stakpak_daemon::{DaemonConfig, LogConfig, Paths};

use crate::schedule::{
    DEFAULT_CHECK_TIMEOUT, DEFAULT_TIMEOUT, Definition, NotifyOn, Schedule, ScheduleError,
    TriggerOn, parse_duration,
};

/// Why `autopilot.toml` was not taken at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: NotToml },
}

/// The file is not TOML, or has unknown keys outside a schedule: the first line of toml's
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotToml(String);

/// Why one `[[schedules]]` entry was not taken.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    /// The first line of toml's message (an unknown or missing key).
    #[error("{0}")]
    Entry(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("duplicate name `{0}`")]
    Duplicate(String),
}

/// schedd's configuration as the shared runtime loads it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheddConfig {
    #[serde(default)]
    pub log: LogConfig,
    /// Read from `autopilot.toml` by `prepare`.
    #[serde(skip)]
    pub autopilot: Autopilot,
}

impl DaemonConfig for ScheddConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }

    /// The signature is `stakpak-daemon`'s: the runtime reports the text.
    fn prepare(&mut self, paths: &Paths) -> Result<(), String> {
        let mut autopilot =
            Autopilot::load(&paths.config_dir.join("autopilot.toml")).map_err(|e| e.to_string())?;
        let profiles = crate::profiles::Profiles::load(&paths.config_dir);
        for schedule in std::mem::take(&mut autopilot.schedules) {
            match profiles.check(&schedule.def.profile) {
                Ok(()) => autopilot.schedules.push(schedule),
                Err(reason) => autopilot
                    .rejected
                    .push(format!("{}: {reason}", schedule.def.name)),
            }
        }
        self.autopilot = autopilot;
        Ok(())
    }
}

/// What `autopilot.toml` holds, checked.
#[derive(Debug, Default)]
pub struct Autopilot {
    /// Shared with the scheduler's entries: a compiled cron expression is not small.
    pub schedules: Vec<Arc<Schedule>>,
    /// `name: reason` of entries not taken.
    pub rejected: Vec<String>,
    /// `[channels.*]`, kept as written for the channel modules.
    pub channels: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    notifications: Notifications,
    #[serde(default)]
    schedules: Vec<toml::Value>,
    #[serde(default)]
    channels: toml::Table,
    /// stakpak's HTTP server settings; schedd has no server, accepted for compatibility.
    #[serde(default)]
    server: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    profile: Option<String>,
    timeout: Option<DurationValue>,
    check_timeout: Option<DurationValue>,
    trigger_on: Option<String>,
    max_turns: Option<u32>,
    timezone: Option<String>,
    catch_up: Option<bool>,
    pause_on_approval: Option<bool>,
    sandbox: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Notifications {
    channel: Option<String>,
    target: Option<String>,
    notify_on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    cron: String,
    prompt: String,
    check: Option<String>,
    check_timeout: Option<DurationValue>,
    trigger_on: Option<String>,
    profile: Option<String>,
    max_turns: Option<u32>,
    timeout: Option<DurationValue>,
    timezone: Option<String>,
    catch_up: Option<bool>,
    notify_channel: Option<String>,
    notify_target: Option<String>,
    notify_on: Option<String>,
    enabled: Option<bool>,
    sandbox: Option<bool>,
}

/// Seconds as a number, or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Secs(u64),
    Text(String),
}

impl DurationValue {
    fn get(&self) -> Result<std::time::Duration, ScheduleError> {
        match self {
            DurationValue::Secs(s) => Ok(std::time::Duration::from_secs(*s)),
            DurationValue::Text(t) => parse_duration(t),
        }
    }
}

impl Autopilot {
    /// Reads `path`; a missing file means no schedules.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Autopilot::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, NotToml> {
        let file: File = toml::from_str(text).map_err(|e| {
            NotToml(
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or("not TOML")
                    .to_string(),
            )
        })?;
        let _ = (
            &file.server,
            file.defaults.pause_on_approval,
            file.defaults.sandbox,
        );
        let mut out = Autopilot::default();
        for (kind, table) in file.channels {
            let holds_token = table
                .as_table()
                .is_some_and(|t| t.keys().any(|k| k.ends_with("token")));
            if holds_token {
                // Reported like a bad schedule; the channel section is not taken.
                out.rejected.push(format!(
                    "channels.{kind}: tokens do not belong in autopilot.toml; remove them and run \
                     `stakpak autopilot channel add {kind}` (secretd keeps them)"
                ));
            } else {
                out.channels.insert(kind, table);
            }
        }
        let mut crons = std::collections::HashMap::new();
        for (i, value) in file.schedules.into_iter().enumerate() {
            let label = value
                .get("name")
                .and_then(toml::Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("schedules[{i}]"));
            let schedule = value
                .try_into::<Entry>()
                .map_err(|e| {
                    Rejected::Entry(e.to_string().lines().next().unwrap_or("").to_string())
                })
                .and_then(|entry| {
                    Ok(resolve(
                        entry,
                        &file.defaults,
                        &file.notifications,
                        &mut crons,
                    )?)
                })
                .and_then(|s| {
                    if out.schedules.iter().any(|o| o.def.name == s.def.name) {
                        Err(Rejected::Duplicate(s.def.name.clone()))
                    } else {
                        Ok(s)
                    }
                });
            match schedule {
                Ok(s) => out.schedules.push(Arc::new(s)),
                Err(reason) => out.rejected.push(format!("{label}: {reason}")),
            }
        }
        Ok(out)
    }
}

fn resolve(
    e: Entry,
    d: &Defaults,
    n: &Notifications,
    crons: &mut std::collections::HashMap<String, Arc<croner::Cron>>,
) -> Result<Schedule, ScheduleError> {
    let _ = e.sandbox;
    let duration = |own: &Option<DurationValue>,
                    default: &Option<DurationValue>,
                    fallback: std::time::Duration,
                    key: &'static str| {
        match own.as_ref().or(default.as_ref()) {
            Some(v) => v.get().map_err(|e| ScheduleError::Key {
                key,
                source: Box::new(e),
            }),
            None => Ok(fallback),
        }
    };
    let def = Definition {
        cron: e.cron,
        prompt: e.prompt,
        check: e.check.unwrap_or_default(),
        check_timeout: duration(
            &e.check_timeout,
            &d.check_timeout,
            DEFAULT_CHECK_TIMEOUT,
            "check_timeout",
        )?,
        trigger_on: TriggerOn::parse(
            e.trigger_on
                .as_deref()
                .or(d.trigger_on.as_deref())
                .unwrap_or(""),
        )?,
        profile: e
            .profile
            .or_else(|| d.profile.clone())
            .unwrap_or_else(|| "default".into()),
        max_turns: e.max_turns.or(d.max_turns).unwrap_or(0),
        timeout: duration(&e.timeout, &d.timeout, DEFAULT_TIMEOUT, "timeout")?,
        timezone: e
            .timezone
            .or_else(|| d.timezone.clone())
            .unwrap_or_default(),
        catch_up: e.catch_up.or(d.catch_up).unwrap_or(false),
        notify_channel: e
            .notify_channel
            .or_else(|| n.channel.clone())
            .unwrap_or_default(),
        notify_target: e
            .notify_target
            .or_else(|| n.target.clone())
            .unwrap_or_default(),
        notify_on: NotifyOn::parse(
            e.notify_on
                .as_deref()
                .or(n.notify_on.as_deref())
                .unwrap_or(""),
        )?,
        enabled: e.enabled.unwrap_or(true),
        name: e.name,
    };
    Schedule::new_shared(def, crons)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn good_entries_are_taken_and_bad_ones_rejected_with_their_reason() {
        let text = r#"
[defaults]
trigger_on = "any"
timeout = "15m"

[[schedules]]
name = "ok"
cron = "*/2 * * * * *"
prompt = "look"
check = "exit 1"

[[schedules]]
name = "badcron"
cron = "every day"
prompt = "x"

[[schedules]]
name = "badtrigger"
cron = "@daily"
prompt = "x"
trigger_on = "sometimes"

[[schedules]]
name = "ok"
cron = "@daily"
prompt = "again"

[[schedules]]
name = "typo"
cron = "@daily"
prompt = "x"
promt = "y"
"#;
        let a = Autopilot::parse(text).unwrap();
        let names: Vec<_> = a.schedules.iter().map(|s| s.def.name.as_str()).collect();
        assert_eq!(names, ["ok"]);
        let ok = &a.schedules[0].def;
        assert_eq!(ok.trigger_on, TriggerOn::Any);
        assert_eq!(ok.timeout, std::time::Duration::from_secs(900));
        assert_eq!(ok.check_timeout, DEFAULT_CHECK_TIMEOUT);
        assert_eq!(ok.profile, "default");
        assert_eq!(a.rejected.len(), 4, "{:?}", a.rejected);
        assert_eq!(
            a.rejected[0],
            "badcron: invalid cron `every day`: expected 5 fields (6 with seconds), got 2"
        );
        assert_eq!(
            a.rejected[1],
            "badtrigger: trigger_on `sometimes` is not one of success, failure, any"
        );
        assert_eq!(a.rejected[2], "ok: duplicate name `ok`");
        assert!(
            a.rejected[3].starts_with("typo: unknown field `promt`"),
            "{}",
            a.rejected[3]
        );
    }

    #[test]
    fn a_file_that_is_not_toml_fails_as_a_whole() {
        assert!(Autopilot::parse("[[schedules]\n").is_err());
        let a = Autopilot::parse("[channels.slack]\nbot_token = \"xoxb-1\"\nprofile = \"ops\"\n")
            .unwrap();
        assert!(a.channels.is_empty());
        assert_eq!(a.rejected.len(), 1);
        assert!(
            a.rejected[0].starts_with("channels.slack: tokens do not belong"),
            "{:?}",
            a.rejected
        );
        assert!(Autopilot::parse("[defaults]\nprofle = \"x\"\n").is_err());
    }
}
