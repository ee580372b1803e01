//! The scheduler's event loop: it owns the schedules, the timer set and the store, and is
//! the only place they change.
//!
//! One timer for every schedule: a `BTreeSet` of `(next firing, name)` whose first entry is
//! the only thing slept on, so thousands of idle schedules cost nothing between firings.
//! Commands from D-Bus, configuration reloads and finished runs arrive on channels.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use stakpak_proto::{RunOutcome, RunTrigger, ScheduleSource as Source};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    config::{Autopilot, ScheddConfig},
    notify::{Notification, Notifier},
    run::Run,
    runner::Runner,
    schedule::{Definition, Schedule, Startup, next_fire, on_start},
    store::{Store, StoreError},
};

/// Longest sleep: a wall clock that jumps (suspend, NTP step) is noticed this late at most.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// `History` without a limit.
const DEFAULT_HISTORY: u32 = 50;

/// Milliseconds since the Unix epoch, now.
pub use stakpak_util::now_ms;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("no schedule named `{0}`")]
    NoSchedule(String),
    #[error("no run with id `{0}`")]
    NoRun(String),
    #[error("a schedule named `{0}` already exists")]
    Duplicate(String),
    #[error("`{0}` comes from autopilot.toml: remove it there and reload")]
    FromFile(String),
    #[error("a run of `{name}` is in progress: {run}")]
    InProgress { name: String, run: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A schedule as the loop shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleView {
    /// The definition, with `enabled` as it is now (after `EnableSchedule`).
    pub def: Definition,
    pub source: Source,
    /// The next firing; `None` when disabled or never.
    pub next_fire_ms: Option<i64>,
    /// The run in progress, or else the newest one.
    pub last_run: Option<Run>,
}

/// The loop's part of `SchedulerStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub schedules: Vec<ScheduleView>,
    /// Entries of `autopilot.toml` that were not taken, as `name: reason`.
    pub rejected: Vec<String>,
    /// Runs in progress.
    pub active: Vec<Run>,
}

type Reply<T> = oneshot::Sender<Result<T, CoreError>>;

/// What D-Bus handlers can ask of the loop.
#[derive(Debug)]
pub enum Command {
    Add(Arc<Schedule>, Reply<ScheduleView>),
    Remove(String, Reply<()>),
    Enable(String, bool, Reply<ScheduleView>),
    List(Reply<Vec<ScheduleView>>),
    History(String, u32, Reply<Vec<Run>>),
    Trigger(String, bool, Reply<Run>),
    ShowRun(String, Reply<Run>),
    Clean(u32, Reply<u64>),
    Status(Reply<Status>),
}

#[derive(Debug)]
struct Entry {
    schedule: Arc<Schedule>,
    source: Source,
    /// Set by `EnableSchedule`; `None`: the definition's `enabled`.
    enabled_override: Option<bool>,
    last_due_ms: i64,
    next_ms: Option<i64>,
}

impl Entry {
    fn enabled(&self) -> bool {
        self.enabled_override.unwrap_or(self.schedule.def.enabled)
    }
}

/// The scheduler's state.
#[derive(Debug)]
pub struct Core {
    store: Store,
    entries: BTreeMap<String, Entry>,
    timers: BTreeSet<(i64, String)>,
    /// Runs in progress, by schedule.
    active: HashMap<String, Run>,
    rejected: Vec<String>,
    runner: Runner,
    notifier: Arc<dyn Notifier>,
    done_tx: mpsc::UnboundedSender<(Run, bool)>,
    done_rx: Option<mpsc::UnboundedReceiver<(Run, bool)>>,
}

/// A run id: 16 random hex digits. No randomness is an error, never a clock-made id that
/// could collide with another run's.
fn new_run_id() -> Result<String, StoreError> {
    Ok(stakpak_util::random::hex(8)?)
}

impl Core {
    pub fn new(store: Store, runner: Runner, notifier: Arc<dyn Notifier>) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Core {
            store,
            entries: BTreeMap::new(),
            timers: BTreeSet::new(),
            active: HashMap::new(),
            rejected: Vec::new(),
            runner,
            notifier,
            done_tx,
            done_rx: Some(done_rx),
        }
    }

    /// Takes the stored schedules and the file's, and settles due times that passed while
    /// schedd was down: one catch-up run, or one `missed` entry, per schedule.
    pub fn load(&mut self, autopilot: &Autopilot, now: i64) -> Result<(), StoreError> {
        self.store.begin()?;
        let result = self.load_in_transaction(autopilot, now);
        self.store.end(result.is_ok())?;
        result
    }

    fn load_in_transaction(&mut self, autopilot: &Autopilot, now: i64) -> Result<(), StoreError> {
        let interrupted = self.store.mark_interrupted(now)?;
        if interrupted > 0 {
            tracing::warn!(
                runs = interrupted,
                "runs were in progress when schedd stopped"
            );
        }
        let rows = self.store.rows()?;
        let mut file_rows = HashMap::new();
        for row in rows {
            match (row.source, row.definition) {
                (Source::Cli, Some(def)) => match Schedule::new(def) {
                    Ok(schedule) => {
                        let schedule = Arc::new(schedule);
                        self.entries.insert(
                            row.name.clone(),
                            Entry {
                                schedule,
                                source: Source::Cli,
                                enabled_override: row.enabled,
                                last_due_ms: row.last_due_ms,
                                next_ms: None,
                            },
                        );
                    }
                    Err(reason) => self.rejected.push(format!("{}: {reason}", row.name)),
                },
                _ => {
                    file_rows.insert(row.name.clone(), (row.enabled, row.last_due_ms));
                }
            }
        }
        self.rejected.extend(autopilot.rejected.iter().cloned());
        for schedule in &autopilot.schedules {
            let name = schedule.def.name.clone();
            if self.entries.contains_key(&name) {
                self.rejected.push(format!(
                    "{name}: the name is taken by a schedule added from the command line"
                ));
                continue;
            }
            let (enabled_override, last_due_ms) = match file_rows.remove(&name) {
                Some(state) => state,
                None => {
                    self.store.insert(&schedule.def, Source::File, now)?;
                    (None, now)
                }
            };
            self.entries.insert(
                name,
                Entry {
                    schedule: schedule.clone(),
                    source: Source::File,
                    enabled_override,
                    last_due_ms,
                    next_ms: None,
                },
            );
        }
        for gone in file_rows.keys() {
            self.store.delete(gone)?;
        }
        for reason in &self.rejected {
            tracing::warn!("schedule rejected: {reason}");
        }
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            let Some(entry) = self.entries.get(&name) else {
                continue;
            };
            if entry.enabled() {
                let def = &entry.schedule.def;
                match on_start(&entry.schedule.when, def.catch_up, entry.last_due_ms, now) {
                    Startup::Nothing => {}
                    Startup::CatchUp { due_ms } => {
                        tracing::info!(schedule = %name, due_ms, "catching up a run missed while schedd was down");
                        self.mark_due(&name, now)?;
                        self.start_run(&name, RunTrigger::CatchUp, due_ms, false)?;
                    }
                    Startup::Missed { due_ms } => {
                        self.record(
                            &name,
                            RunTrigger::Schedule,
                            due_ms,
                            RunOutcome::Missed,
                            "schedd was not running when it was due and catch_up is off".into(),
                        )?;
                    }
                }
            }
            self.mark_due(&name, now)?;
            self.arm(&name, now);
        }
        tracing::info!(
            schedules = self.entries.len(),
            rejected = self.rejected.len(),
            "schedules loaded"
        );
        Ok(())
    }

    fn mark_due(&mut self, name: &str, due_ms: i64) -> Result<(), StoreError> {
        if let Some(entry) = self.entries.get_mut(name)
            && entry.last_due_ms < due_ms
        {
            entry.last_due_ms = due_ms;
            self.store.set_last_due(name, due_ms)?;
        }
        Ok(())
    }

    /// (Re)places the schedule's timer: its next firing after `after_ms`, or none.
    fn arm(&mut self, name: &str, after_ms: i64) {
        let Some(entry) = self.entries.get_mut(name) else {
            return;
        };
        if let Some(old) = entry.next_ms.take() {
            self.timers.remove(&(old, name.to_string()));
        }
        if entry.enabled() {
            entry.next_ms = entry.schedule.when.next_after(after_ms);
            if let Some(next) = entry.next_ms {
                self.timers.insert((next, name.to_string()));
            }
        }
    }

    fn disarm(&mut self, name: &str) {
        if let Some(old) = self.entries.get_mut(name).and_then(|e| e.next_ms.take()) {
            self.timers.remove(&(old, name.to_string()));
        }
    }

    /// Applies a reloaded `autopilot.toml`: changed schedules keep their history and state.
    pub fn sync_file(&mut self, autopilot: &Autopilot, now: i64) -> Result<(), StoreError> {
        self.store.begin()?;
        let result = self.sync_in_transaction(autopilot, now);
        self.store.end(result.is_ok())?;
        result
    }

    fn sync_in_transaction(&mut self, autopilot: &Autopilot, now: i64) -> Result<(), StoreError> {
        let mut rejected: Vec<String> = autopilot.rejected.clone();
        let wanted: HashMap<&str, &Arc<Schedule>> = autopilot
            .schedules
            .iter()
            .map(|s| (s.def.name.as_str(), s))
            .collect();
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|(n, e)| e.source == Source::File && !wanted.contains_key(n.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.disarm(&name);
            self.entries.remove(&name);
            self.store.delete(&name)?;
            tracing::info!(schedule = %name, "schedule removed from autopilot.toml");
        }
        for schedule in &autopilot.schedules {
            let name = schedule.def.name.clone();
            match self.entries.get_mut(&name) {
                Some(entry) if entry.source == Source::Cli => {
                    rejected.push(format!(
                        "{name}: the name is taken by a schedule added from the command line"
                    ));
                    continue;
                }
                Some(entry) => {
                    if entry.schedule.def == schedule.def {
                        continue;
                    }
                    entry.schedule = schedule.clone();
                    tracing::info!(schedule = %name, "schedule changed");
                }
                None => {
                    self.store.insert(&schedule.def, Source::File, now)?;
                    self.entries.insert(
                        name.clone(),
                        Entry {
                            schedule: schedule.clone(),
                            source: Source::File,
                            enabled_override: None,
                            last_due_ms: now,
                            next_ms: None,
                        },
                    );
                    tracing::info!(schedule = %name, "schedule added from autopilot.toml");
                }
            }
            self.arm(&name, now);
        }
        for reason in &rejected {
            tracing::warn!("schedule rejected: {reason}");
        }
        self.rejected = rejected;
        Ok(())
    }

    /// When the loop should wake next.
    fn sleep_for(&self, now: i64) -> Duration {
        match self.timers.first() {
            Some((due, _)) => {
                Duration::from_millis(u64::try_from(due - now).unwrap_or(0)).min(MAX_SLEEP)
            }
            None => MAX_SLEEP,
        }
    }

    /// Fires every schedule due at `now`.
    fn fire_due(&mut self, now: i64) -> Result<(), StoreError> {
        while let Some((due, name)) = self.timers.first().cloned() {
            if due > now {
                break;
            }
            self.timers.remove(&(due, name.clone()));
            let Some(entry) = self.entries.get_mut(&name) else {
                continue;
            };
            entry.next_ms = None;
            let next = next_fire(&entry.schedule.when, due, now);
            entry.next_ms = next;
            if let Some(next) = next {
                self.timers.insert((next, name.clone()));
            }
            self.mark_due(&name, due)?;
            if self.active.contains_key(&name) {
                self.record(
                    &name,
                    RunTrigger::Schedule,
                    due,
                    RunOutcome::Skipped,
                    "the previous run was still in progress".into(),
                )?;
            } else {
                self.start_run(&name, RunTrigger::Schedule, due, false)?;
            }
        }
        Ok(())
    }

    fn start_run(
        &mut self,
        name: &str,
        trigger: RunTrigger,
        due_ms: i64,
        dry_run: bool,
    ) -> Result<Run, StoreError> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(Run::default());
        };
        let run = Run {
            id: new_run_id()?,
            schedule: name.to_string(),
            trigger,
            due_ms,
            started_ms: now_ms(),
            outcome: RunOutcome::Running,
            ..Run::default()
        };
        self.store.put_run(&run)?;
        self.active.insert(name.to_string(), run.clone());
        tracing::info!(schedule = %name, run = %run.id, %trigger, "run started");
        let runner = self.runner.clone();
        let def = entry.schedule.def.clone();
        let done = self.done_tx.clone();
        let started = run.clone();
        tokio::spawn(async move {
            let ended = runner.execute(def, started, dry_run).await;
            let _ = done.send((ended, dry_run));
        });
        Ok(run)
    }

    /// Records a run that did nothing (`missed`, `skipped`).
    fn record(
        &mut self,
        name: &str,
        trigger: RunTrigger,
        due_ms: i64,
        outcome: RunOutcome,
        reason: String,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let run = Run {
            id: new_run_id()?,
            schedule: name.to_string(),
            trigger,
            due_ms,
            started_ms: now,
            ended_ms: now,
            outcome,
            reason,
            ..Run::default()
        };
        self.store.put_run(&run)?;
        tracing::info!(schedule = %name, run = %run.id, %outcome, "{}", run.reason);
        self.notify(&run);
        Ok(())
    }

    fn finish(&mut self, mut run: Run, dry_run: bool) -> Result<(), StoreError> {
        run.ended_ms = now_ms();
        self.store.put_run(&run)?;
        self.active.remove(&run.schedule);
        tracing::info!(
            schedule = %run.schedule,
            run = %run.id,
            outcome = %run.outcome,
            session = %run.session,
            "run ended"
        );
        if !dry_run {
            self.notify(&run);
        }
        Ok(())
    }

    fn notify(&self, run: &Run) {
        let Some(entry) = self.entries.get(&run.schedule) else {
            return;
        };
        let def = &entry.schedule.def;
        if !def.notify_on.wants(run.outcome) {
            return;
        }
        let mut text = format!("autopilot `{}`: {}", run.schedule, run.outcome);
        if !run.reason.is_empty() {
            text.push_str(&format!(": {}", run.reason));
        }
        if !run.session.is_empty() {
            text.push_str(&format!(" (session {})", run.session));
        }
        self.notifier.notify(Notification {
            schedule: run.schedule.clone(),
            run_id: run.id.clone(),
            outcome: run.outcome,
            text,
            channel: def.notify_channel.clone(),
            target: def.notify_target.clone(),
        });
    }

    fn info(&self, name: &str) -> Result<ScheduleView, CoreError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| CoreError::NoSchedule(name.into()))?;
        let last_run = match self.active.get(name) {
            Some(run) => Some(run.clone()),
            None => self.store.history(name, 1)?.into_iter().next(),
        };
        let mut def = entry.schedule.def.clone();
        def.enabled = entry.enabled();
        Ok(ScheduleView {
            def,
            source: entry.source,
            next_fire_ms: entry.next_ms,
            last_run,
        })
    }

    fn list(&self) -> Result<Vec<ScheduleView>, CoreError> {
        self.entries.keys().map(|n| self.info(n)).collect()
    }

    fn handle(&mut self, command: Command) {
        let now = now_ms();
        match command {
            Command::Add(schedule, reply) => {
                let name = schedule.def.name.clone();
                let result = (|| {
                    if self.entries.contains_key(&name) {
                        return Err(CoreError::Duplicate(name.clone()));
                    }
                    if !self.store.insert(&schedule.def, Source::Cli, now)? {
                        return Err(CoreError::Duplicate(name.clone()));
                    }
                    self.entries.insert(
                        name.clone(),
                        Entry {
                            schedule,
                            source: Source::Cli,
                            enabled_override: None,
                            last_due_ms: now,
                            next_ms: None,
                        },
                    );
                    self.arm(&name, now);
                    tracing::info!(schedule = %name, "schedule added");
                    self.info(&name)
                })();
                let _ = reply.send(result);
            }
            Command::Remove(name, reply) => {
                let result = match self.entries.get(&name) {
                    None => Err(CoreError::NoSchedule(name.clone())),
                    Some(e) if e.source == Source::File => Err(CoreError::FromFile(name.clone())),
                    Some(_) => self.store.delete(&name).map_err(CoreError::from).map(|()| {
                        self.disarm(&name);
                        self.entries.remove(&name);
                        tracing::info!(schedule = %name, "schedule removed");
                    }),
                };
                let _ = reply.send(result);
            }
            Command::Enable(name, enabled, reply) => {
                let result = (|| {
                    let entry = self
                        .entries
                        .get_mut(&name)
                        .ok_or_else(|| CoreError::NoSchedule(name.clone()))?;
                    entry.enabled_override = Some(enabled);
                    self.store.set_enabled(&name, Some(enabled))?;
                    // Re-enabling does not make up for the time it was off.
                    self.mark_due(&name, now)?;
                    self.arm(&name, now);
                    self.info(&name)
                })();
                let _ = reply.send(result);
            }
            Command::List(reply) => {
                let _ = reply.send(self.list());
            }
            Command::History(name, limit, reply) => {
                let limit = if limit == 0 { DEFAULT_HISTORY } else { limit };
                let result = self.store.history(&name, limit).map_err(CoreError::from);
                let result = match result {
                    Ok(runs) if runs.is_empty() && !self.entries.contains_key(&name) => {
                        Err(CoreError::NoSchedule(name))
                    }
                    other => other,
                };
                let _ = reply.send(result);
            }
            Command::Trigger(name, dry_run, reply) => {
                let result = if !self.entries.contains_key(&name) {
                    Err(CoreError::NoSchedule(name))
                } else if let Some(run) = self.active.get(&name) {
                    Err(CoreError::InProgress {
                        run: run.id.clone(),
                        name,
                    })
                } else {
                    let trigger = if dry_run {
                        RunTrigger::DryRun
                    } else {
                        RunTrigger::Manual
                    };
                    self.start_run(&name, trigger, 0, dry_run)
                        .map_err(CoreError::from)
                };
                let _ = reply.send(result);
            }
            Command::ShowRun(id, reply) => {
                let result = match self.store.run(&id) {
                    Ok(Some(run)) => Ok(run),
                    Ok(None) => Err(CoreError::NoRun(id)),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::Clean(days, reply) => {
                let before = now - i64::from(days) * 86_400_000;
                let _ = reply.send(self.store.clean(before).map_err(CoreError::from));
            }
            Command::Status(reply) => {
                let result = self.list().map(|schedules| Status {
                    schedules,
                    rejected: self.rejected.clone(),
                    active: self.active.values().cloned().collect(),
                });
                let _ = reply.send(result);
            }
        }
    }

    /// The loop; ends when every command sender is gone.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut config: watch::Receiver<Arc<ScheddConfig>>,
    ) {
        let Some(mut done) = self.done_rx.take() else {
            return;
        };
        loop {
            let sleep = self.sleep_for(now_ms());
            let result = tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => {
                        self.handle(c);
                        Ok(())
                    }
                    None => break,
                },
                Ok(()) = config.changed() => {
                    let current = config.borrow_and_update().clone();
                    self.sync_file(&current.autopilot, now_ms())
                }
                Some((run, dry_run)) = done.recv() => self.finish(run, dry_run),
                () = tokio::time::sleep(sleep) => self.fire_due(now_ms()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "schedule database write failed");
            }
        }
    }
}
