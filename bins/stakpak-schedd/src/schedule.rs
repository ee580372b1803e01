//! Schedules as schedd understands them: validated definitions, their cron expression and
//! time zone, and the decisions about when they fire (pure functions of a given time).

use std::{collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};
use serde::{Deserialize, Serialize};
use stakpak_proto::RunOutcome;

/// Seconds a check may run when nothing says otherwise.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Seconds an agent session may run when nothing says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest schedule name: `autopilot-<name>` must stay a valid sandbox session id (64).
const MAX_NAME: usize = 48;

/// Why a schedule's setting is refused; the message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("name `{0}` must be 1 to {MAX_NAME} letters, digits, `-` or `_`")]
    Name(String),
    #[error("prompt is empty")]
    EmptyPrompt,
    #[error("notify_channel and notify_target go together")]
    NotifyPair,
    #[error("trigger_on `{0}` is not one of success, failure, any")]
    TriggerOn(String),
    #[error("notify_on `{0}` is not one of all, completions, failures, none")]
    NotifyOn(String),
    #[error("invalid cron `{expr}`: expected 5 fields (6 with seconds), got {fields}")]
    CronFields { expr: String, fields: usize },
    /// croner's reason, as text: its error type is not `Clone`.
    #[error("invalid cron `{expr}`: {reason}")]
    Cron { expr: String, reason: String },
    #[error("invalid `{expr}`: {why}")]
    Every { expr: String, why: &'static str },
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
    #[error("`{0}` is not a duration (e.g. 30s, 15m, 2h)")]
    Duration(String),
    /// A duration of `autopilot.toml`, with its key.
    #[error("{key}: {source}")]
    Key {
        key: &'static str,
        source: Box<ScheduleError>,
    },
}

/// Which exit of the check wakes the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerOn {
    Success,
    #[default]
    Failure,
    Any,
}

impl TriggerOn {
    pub fn parse(value: &str) -> Result<Self, ScheduleError> {
        match value {
            "" | "failure" => Ok(TriggerOn::Failure),
            "success" => Ok(TriggerOn::Success),
            "any" => Ok(TriggerOn::Any),
            other => Err(ScheduleError::TriggerOn(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerOn::Success => "success",
            TriggerOn::Failure => "failure",
            TriggerOn::Any => "any",
        }
    }

    /// Whether a check that succeeded (`true`) or failed wakes the agent.
    pub fn wakes(self, check_ok: bool) -> bool {
        match self {
            TriggerOn::Success => check_ok,
            TriggerOn::Failure => !check_ok,
            TriggerOn::Any => true,
        }
    }
}

/// Which run outcomes are notified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyOn {
    All,
    Completions,
    #[default]
    Failures,
    None,
}

impl NotifyOn {
    pub fn parse(value: &str) -> Result<Self, ScheduleError> {
        match value {
            "" | "failures" => Ok(NotifyOn::Failures),
            "all" => Ok(NotifyOn::All),
            "completions" => Ok(NotifyOn::Completions),
            "none" => Ok(NotifyOn::None),
            other => Err(ScheduleError::NotifyOn(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::All => "all",
            NotifyOn::Completions => "completions",
            NotifyOn::Failures => "failures",
            NotifyOn::None => "none",
        }
    }

    /// Whether a run that ended with `outcome` is worth a notification. `all` includes
    /// runs the check kept from waking the agent; `completions` only agent sessions that
    /// ended, whatever their end.
    pub fn wants(self, outcome: RunOutcome) -> bool {
        use RunOutcome as O;
        let failure = matches!(
            outcome,
            O::Failed | O::TimedOut | O::CheckDenied | O::CheckFailed | O::Missed | O::Interrupted
        );
        match self {
            NotifyOn::All => true,
            NotifyOn::Completions => outcome == O::Finished || failure,
            NotifyOn::Failures => failure,
            NotifyOn::None => false,
        }
    }
}

/// A schedule's settings with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    pub cron: String,
    pub prompt: String,
    pub check: String,
    pub check_timeout: Duration,
    pub trigger_on: TriggerOn,
    pub profile: String,
    pub max_turns: u32,
    pub timeout: Duration,
    /// Empty: UTC.
    pub timezone: String,
    pub catch_up: bool,
    pub notify_channel: String,
    pub notify_target: String,
    pub notify_on: NotifyOn,
    pub enabled: bool,
}

/// A definition whose cron expression and time zone parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub def: Definition,
    pub when: When,
}

impl Schedule {
    /// Checks every field; the message names the field at fault.
    pub fn new(def: Definition) -> Result<Self, ScheduleError> {
        Self::new_shared(def, &mut HashMap::new())
    }

    /// Like [`Schedule::new`], sharing compiled cron expressions through `cache`.
    pub fn new_shared(
        def: Definition,
        cache: &mut HashMap<String, Arc<Cron>>,
    ) -> Result<Self, ScheduleError> {
        check_name(&def.name)?;
        if def.prompt.trim().is_empty() {
            return Err(ScheduleError::EmptyPrompt);
        }
        if def.notify_channel.is_empty() != def.notify_target.is_empty() {
            return Err(ScheduleError::NotifyPair);
        }
        let when = When::parse_shared(&def.cron, &def.timezone, cache)?;
        Ok(Schedule { def, when })
    }
}

/// `[A-Za-z0-9_-]{1,48}`.
pub fn check_name(name: &str) -> Result<(), ScheduleError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::Name(name.to_string()))
    }
}

/// When a schedule fires: a cron expression in a time zone, or a fixed interval.
#[derive(Debug, Clone)]
pub struct When(Kind);

#[derive(Debug, Clone)]
enum Kind {
    Cron {
        /// Shared between schedules with the same expression: a compiled one holds a
        /// bitfield per field (about 1.5 KiB, most of it for years).
        cron: Arc<Cron>,
        tz: Tz,
    },
    /// `@every <duration>`: at every multiple of the interval since the Unix epoch, so the
    /// firings do not drift and stay the same across restarts.
    Every { ms: i64 },
}

/// Longest `@every` interval: a year (longer ones are cron's job).
const MAX_EVERY_SECS: u64 = 366 * 86_400;

impl When {
    /// Standard 5 fields, 6 with seconds first, `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`/`@annually`, or `@every <duration>` (`30s`, `15m`, `2h`, `1d`);
    /// `timezone` an IANA name, empty for UTC.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let tz = zone(timezone)?;
        if let Some(rest) = expr.trim().strip_prefix("@every") {
            return every(expr, rest);
        }
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ScheduleError::CronFields {
                expr: expr.to_string(),
                fields,
            });
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expr).map_err(|e| ScheduleError::Cron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(When(Kind::Cron {
            cron: Arc::new(cron),
            tz,
        }))
    }

    /// Like [`When::parse`], reusing the compiled expression of an earlier equal one.
    pub fn parse_shared(
        expr: &str,
        timezone: &str,
        cache: &mut HashMap<String, Arc<Cron>>,
    ) -> Result<Self, ScheduleError> {
        if let Some(cron) = cache.get(expr) {
            return Ok(When(Kind::Cron {
                cron: cron.clone(),
                tz: zone(timezone)?,
            }));
        }
        let when = When::parse(expr, timezone)?;
        if let Kind::Cron { cron, .. } = &when.0 {
            cache.insert(expr.to_string(), cron.clone());
        }
        Ok(when)
    }

    /// The first firing strictly after `after_ms` (Unix milliseconds), if there is one.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match &self.0 {
            Kind::Every { ms } => {
                let next = after_ms.div_euclid(*ms).checked_add(1)?;
                next.checked_mul(*ms)
            }
            Kind::Cron { cron, tz } => {
                // Whole seconds: cron has no finer unit, and croner keeps a fraction it is
                // given.
                let start = Utc
                    .timestamp_millis_opt(after_ms - after_ms.rem_euclid(1000))
                    .single()?;
                let local: DateTime<Tz> = start.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
        }
    }
}

/// `@every <duration>`: 1 s to a year, in s, m, h or d.
fn every(expr: &str, rest: &str) -> Result<When, ScheduleError> {
    let bad = |why: &'static str| ScheduleError::Every {
        expr: expr.trim().to_string(),
        why,
    };
    let value = rest.trim();
    if value.is_empty() {
        return Err(bad("give an interval, e.g. `@every 15m`"));
    }
    let secs = match value.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .map(|d| d.saturating_mul(86_400))
            .map_err(|_| bad("the interval is not a duration (e.g. 30s, 15m, 2h, 1d)"))?,
        None => parse_duration(value)
            .map_err(|_| bad("the interval is not a duration (e.g. 30s, 15m, 2h, 1d)"))?
            .as_secs(),
    };
    if secs == 0 || secs > MAX_EVERY_SECS {
        return Err(bad("the interval must be from 1s to 366d"));
    }
    let ms = i64::try_from(secs * 1000).map_err(|_| bad("the interval is too long"))?;
    Ok(When(Kind::Every { ms }))
}

/// An IANA time zone; empty: UTC.
fn zone(timezone: &str) -> Result<Tz, ScheduleError> {
    if timezone.is_empty() {
        Ok(Tz::UTC)
    } else {
        Tz::from_str(timezone).map_err(|_| ScheduleError::TimeZone(timezone.to_string()))
    }
}

/// What to do, at start, about due times that passed while schedd was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// Nothing was due.
    Nothing,
    /// Run once now for the first due time missed (`catch_up`).
    CatchUp { due_ms: i64 },
    /// Record a `missed` run for it.
    Missed { due_ms: i64 },
}

/// Decides, for a schedule last handled at `last_due_ms`, what the gap until `now_ms`
/// calls for. However many due times passed, the answer is one run or one `missed` entry.
pub fn on_start(when: &When, catch_up: bool, last_due_ms: i64, now_ms: i64) -> Startup {
    match when.next_after(last_due_ms) {
        Some(due_ms) if due_ms <= now_ms => {
            if catch_up {
                Startup::CatchUp { due_ms }
            } else {
                Startup::Missed { due_ms }
            }
        }
        _ => Startup::Nothing,
    }
}

/// The next firing to wait for after handling `due_ms` at `now_ms`: never in the past, so
/// a loop that fell behind fires once, not once per lost period.
pub fn next_fire(when: &When, due_ms: i64, now_ms: i64) -> Option<i64> {
    let next = when.next_after(due_ms)?;
    if next > now_ms {
        Some(next)
    } else {
        when.next_after(now_ms)
    }
}

/// Parses `30`, `30s`, `15m`, `2h` (seconds without a unit).
pub fn parse_duration(value: &str) -> Result<Duration, ScheduleError> {
    let v = value.trim();
    let (digits, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| ScheduleError::Duration(value.to_string()))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(ScheduleError::Duration(value.to_string())),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn every_fires_at_multiples_of_its_interval_and_refuses_bad_ones() {
        let w = When::parse("@every 15m", "").unwrap();
        assert_eq!(
            w.next_after(ms("2026-01-01T10:02:00Z")),
            Some(ms("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            w.next_after(ms("2026-01-01T10:15:00Z")),
            Some(ms("2026-01-01T10:30:00Z"))
        );
        let w = When::parse(" @every 2 ", "Europe/Berlin").unwrap();
        assert_eq!(w.next_after(1_001), Some(2_000));
        let w = When::parse("@every 1d", "").unwrap();
        assert_eq!(
            w.next_after(ms("2026-01-01T10:02:00Z")),
            Some(ms("2026-01-02T00:00:00Z"))
        );
        for (expr, why) in [
            ("@every", "give an interval"),
            ("@every 0s", "from 1s to 366d"),
            ("@every 400d", "from 1s to 366d"),
            ("@every soon", "not a duration"),
            ("@every 5w", "not a duration"),
        ] {
            let err = When::parse(expr, "").unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid `{}`: ", expr.trim())) && err.contains(why),
                "{err}"
            );
        }
        // A missed run after downtime is settled like a cron one.
        let w = When::parse("@every 10s", "").unwrap();
        assert_eq!(
            on_start(&w, true, 5_000, 45_000),
            Startup::CatchUp { due_ms: 10_000 }
        );
        assert_eq!(next_fire(&w, 10_000, 45_000), Some(50_000));
    }

    #[test]
    fn next_firings() {
        // (cron, timezone, after, expected next)
        let cases = [
            (
                "*/5 * * * *",
                "",
                "2026-01-01T10:02:00Z",
                "2026-01-01T10:05:00Z",
            ),
            (
                "*/2 * * * * *",
                "",
                "2026-01-01T10:00:01Z",
                "2026-01-01T10:00:02Z",
            ),
            (
                "30 * * * * *",
                "",
                "2026-01-01T10:00:31Z",
                "2026-01-01T10:01:30Z",
            ),
            (
                "@hourly",
                "",
                "2026-01-01T10:02:00Z",
                "2026-01-01T11:00:00Z",
            ),
            ("@daily", "", "2026-01-01T10:02:00Z", "2026-01-02T00:00:00Z"),
            (
                "@weekly",
                "",
                "2026-01-01T10:00:00Z",
                "2026-01-04T00:00:00Z",
            ),
            (
                "@monthly",
                "",
                "2026-01-15T00:00:00Z",
                "2026-02-01T00:00:00Z",
            ),
            (
                "@yearly",
                "",
                "2026-01-15T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "0 9 * * *",
                "Europe/Berlin",
                "2026-01-01T00:00:00Z",
                "2026-01-01T08:00:00Z",
            ),
            (
                "0 9 * * *",
                "Europe/Berlin",
                "2026-07-01T00:00:00Z",
                "2026-07-01T07:00:00Z",
            ),
            (
                "0 9 * * 1-5",
                "America/New_York",
                "2026-01-03T00:00:00Z",
                "2026-01-05T14:00:00Z",
            ),
        ];
        for (cron, tz, after, expected) in cases {
            let when = When::parse(cron, tz).unwrap();
            assert_eq!(
                when.next_after(ms(after)),
                Some(ms(expected)),
                "{cron} {tz}"
            );
        }
    }

    #[test]
    fn bad_expressions_are_refused_with_the_reason() {
        let cases = [
            (
                "* * *",
                "",
                "invalid cron `* * *`: expected 5 fields (6 with seconds), got 3",
            ),
            (
                "* * * * * * *",
                "",
                "invalid cron `* * * * * * *`: expected 5 fields (6 with seconds), got 7",
            ),
            (
                "0 9 * * *",
                "Mars/Olympus",
                "unknown time zone `Mars/Olympus`",
            ),
        ];
        for (cron, tz, expected) in cases {
            assert_eq!(When::parse(cron, tz).unwrap_err().to_string(), expected);
        }
        assert!(
            When::parse("61 * * * *", "")
                .unwrap_err()
                .to_string()
                .starts_with("invalid cron `61 * * * *`")
        );
        assert!(When::parse("@sometimes", "").is_err());
    }

    #[test]
    fn startup_decisions() {
        let when = When::parse("0 * * * *", "").unwrap();
        let last = ms("2026-01-01T10:00:00Z");
        // (catch_up, now, expected)
        let cases = [
            (true, "2026-01-01T10:30:00Z", Startup::Nothing),
            (false, "2026-01-01T10:59:59Z", Startup::Nothing),
            (
                true,
                "2026-01-01T11:00:00Z",
                Startup::CatchUp {
                    due_ms: ms("2026-01-01T11:00:00Z"),
                },
            ),
            (
                true,
                "2026-01-01T15:20:00Z",
                Startup::CatchUp {
                    due_ms: ms("2026-01-01T11:00:00Z"),
                },
            ),
            (
                false,
                "2026-01-01T15:20:00Z",
                Startup::Missed {
                    due_ms: ms("2026-01-01T11:00:00Z"),
                },
            ),
        ];
        for (catch_up, now, expected) in cases {
            assert_eq!(
                on_start(&when, catch_up, last, ms(now)),
                expected,
                "{catch_up} {now}"
            );
        }
    }

    #[test]
    fn a_late_loop_fires_once_not_once_per_period() {
        let when = When::parse("*/2 * * * * *", "").unwrap();
        let due = ms("2026-01-01T10:00:00Z");
        assert_eq!(next_fire(&when, due, due + 100), Some(due + 2000));
        assert_eq!(next_fire(&when, due, due + 9_500), Some(due + 10_000));
    }

    #[test]
    fn trigger_and_notify_tables() {
        assert_eq!(TriggerOn::parse("").unwrap(), TriggerOn::Failure);
        assert!(!TriggerOn::Failure.wakes(true));
        assert!(TriggerOn::Failure.wakes(false));
        assert!(TriggerOn::Success.wakes(true));
        assert!(TriggerOn::Any.wakes(false));
        assert_eq!(
            TriggerOn::parse("sometimes").unwrap_err().to_string(),
            "trigger_on `sometimes` is not one of success, failure, any"
        );
        assert!(NotifyOn::Failures.wants(RunOutcome::Failed));
        assert!(!NotifyOn::Failures.wants(RunOutcome::Finished));
        assert!(NotifyOn::Completions.wants(RunOutcome::Finished));
        assert!(!NotifyOn::Completions.wants(RunOutcome::SkippedByCheck));
        assert!(NotifyOn::All.wants(RunOutcome::SkippedByCheck));
        assert!(!NotifyOn::None.wants(RunOutcome::Failed));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
    }
}
