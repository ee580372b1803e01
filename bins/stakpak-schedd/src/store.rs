//! `<state>/schedd.db`: schedules added from the command line, the state of every schedule
//! (last due time handled, enable override) and the history of runs.
//!
//! Every write is its own transaction, made before the effect it records is started (a
//! run's row exists before its check runs, a due time is marked handled before its run
//! starts), so a kill -9 loses neither schedules nor history and never runs a due time twice.

use std::{path::Path, str::FromStr};

use rusqlite::{Connection, OptionalExtension, params};
use stakpak_proto::{ExecStatus, Opt, RunOutcome, ScheduleSource as Source, UnknownValue};

use crate::{db::MIGRATIONS, run::Run, schedule::Definition};

/// A stored schedule row.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub source: Source,
    /// Present for `cli` rows; `file` rows keep the file's current one.
    pub definition: Option<Definition>,
    /// `None`: as the definition says.
    pub enabled: Option<bool>,
    pub last_due_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("schedule database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("schedule database {0}")]
    Schema(#[from] stakpak_sqlite::MigrateError),
    #[error("schedule database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("schedule database holds a bad definition: {0}")]
    Json(#[from] serde_json::Error),
    /// A run is recorded under an id, and the kernel gave no randomness to make one.
    #[error("cannot make a run id: {0}")]
    Id(#[from] stakpak_util::RandomError),
}

/// The database; used from the scheduler's loop only.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

const RUN_COLUMNS: &str = "id, schedule, trigger, due_ms, started_ms, ended_ms, check_status, \
     check_code, check_rule, session, outcome, reason, input_tokens, output_tokens";

/// A text column holding one of an enum's names (`Opt` for columns where empty means none).
fn named<T: FromStr<Err = UnknownValue>>(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = row.get(i)?;
    text.parse().map_err(|e: UnknownValue| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn run_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: row.get(0)?,
        schedule: row.get(1)?,
        trigger: named(row, 2)?,
        due_ms: row.get(3)?,
        started_ms: row.get(4)?,
        ended_ms: row.get(5)?,
        check_status: named::<Opt<ExecStatus>>(row, 6)?.get(),
        check_code: row.get(7)?,
        check_rule: row.get(8)?,
        session: row.get(9)?,
        outcome: named(row, 10)?,
        reason: row.get(11)?,
        input_tokens: u64::try_from(row.get::<_, i64>(12)?).unwrap_or(0),
        output_tokens: u64::try_from(row.get::<_, i64>(13)?).unwrap_or(0),
    })
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        MIGRATIONS.apply(&mut conn, path)?;
        Ok(Store { conn })
    }

    /// Starts a transaction: many writes with one sync (loading thousands of schedules).
    pub fn begin(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    /// Ends the transaction [`Store::begin`] started, keeping its writes or not.
    pub fn end(&mut self, keep: bool) -> Result<(), StoreError> {
        Ok(self
            .conn
            .execute_batch(if keep { "COMMIT" } else { "ROLLBACK" })?)
    }

    /// Runs left `running` by a schedd that died become `interrupted`; returns how many.
    pub fn mark_interrupted(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE runs SET outcome = ?1, ended_ms = ?2, \
             reason = 'schedd stopped while the run was in progress' WHERE outcome = ?3",
            params![
                RunOutcome::Interrupted.as_str(),
                now_ms,
                RunOutcome::Running.as_str()
            ],
        )?)
    }

    pub fn rows(&self) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, source, definition, enabled, last_due_ms FROM schedules ORDER BY name",
        )?;
        let raw = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<bool>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(name, source, definition, enabled, last_due_ms)| {
                // Read as it was always read: anything but `cli` is the file's.
                let source = if source == Source::Cli.as_str() {
                    Source::Cli
                } else {
                    Source::File
                };
                let definition = match source {
                    Source::Cli => Some(serde_json::from_str(&definition)?),
                    Source::File => None,
                };
                Ok(Row {
                    name,
                    source,
                    definition,
                    enabled,
                    last_due_ms,
                })
            })
            .collect()
    }

    /// Adds a schedule row; `Ok(false)` when the name is taken.
    pub fn insert(
        &mut self,
        def: &Definition,
        source: Source,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let json = match source {
            Source::Cli => serde_json::to_string(def)?,
            Source::File => String::new(),
        };
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO schedules (name, source, definition, enabled, last_due_ms, \
             created_ms) VALUES (?1, ?2, ?3, NULL, ?4, ?4)",
            params![def.name, source.as_str(), json, now_ms],
        )?;
        Ok(n == 1)
    }

    pub fn delete(&mut self, name: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM schedules WHERE name = ?1", params![name])?;
        Ok(())
    }

    pub fn set_enabled(&mut self, name: &str, enabled: Option<bool>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE schedules SET enabled = ?2 WHERE name = ?1",
            params![name, enabled],
        )?;
        Ok(())
    }

    pub fn set_last_due(&mut self, name: &str, due_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE schedules SET last_due_ms = ?2 WHERE name = ?1",
            params![name, due_ms],
        )?;
        Ok(())
    }

    /// Writes a run, new or updated.
    pub fn put_run(&mut self, run: &Run) -> Result<(), StoreError> {
        self.conn.execute(
            &format!("INSERT OR REPLACE INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
            params![
                run.id,
                run.schedule,
                run.trigger.as_str(),
                run.due_ms,
                run.started_ms,
                run.ended_ms,
                Opt::<ExecStatus>::from(run.check_status).as_str(),
                run.check_code,
                run.check_rule,
                run.session,
                run.outcome.as_str(),
                run.reason,
                i64::try_from(run.input_tokens).unwrap_or(i64::MAX),
                i64::try_from(run.output_tokens).unwrap_or(i64::MAX),
            ],
        )?;
        Ok(())
    }

    pub fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                params![id],
                run_from,
            )
            .optional()?)
    }

    /// Runs of a schedule, newest first.
    pub fn history(&self, name: &str, limit: u32) -> Result<Vec<Run>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE schedule = ?1 \
             ORDER BY started_ms DESC, rowid DESC LIMIT ?2"
        ))?;
        let runs = stmt
            .query_map(params![name, limit], run_from)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(runs)
    }

    /// Deletes ended runs that started before `before_ms`.
    pub fn clean(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM runs WHERE started_ms < ?1 AND outcome != ?2",
            params![before_ms, RunOutcome::Running.as_str()],
        )?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::schedule::{NotifyOn, TriggerOn};
    use stakpak_proto::RunTrigger;
    use std::time::Duration;

    fn def(name: &str) -> Definition {
        Definition {
            name: name.into(),
            cron: "@daily".into(),
            prompt: "p".into(),
            check: String::new(),
            check_timeout: Duration::from_secs(5),
            trigger_on: TriggerOn::Failure,
            profile: "default".into(),
            max_turns: 0,
            timeout: Duration::from_secs(60),
            timezone: String::new(),
            catch_up: true,
            notify_channel: String::new(),
            notify_target: String::new(),
            notify_on: NotifyOn::Failures,
            enabled: true,
        }
    }

    #[test]
    fn schedules_and_runs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedd.db");
        {
            let mut store = Store::open(&path).unwrap();
            assert!(store.insert(&def("a"), Source::Cli, 1000).unwrap());
            assert!(!store.insert(&def("a"), Source::Cli, 1000).unwrap());
            assert!(store.insert(&def("f"), Source::File, 1000).unwrap());
            store.set_enabled("a", Some(false)).unwrap();
            store.set_last_due("a", 5000).unwrap();
            for (id, started, outcome) in [
                ("r1", 10, RunOutcome::Finished),
                ("r2", 20, RunOutcome::Running),
            ] {
                store
                    .put_run(&Run {
                        id: id.into(),
                        schedule: "a".into(),
                        trigger: RunTrigger::Schedule,
                        started_ms: started,
                        outcome,
                        ..Run::default()
                    })
                    .unwrap();
            }
        }
        let mut store = Store::open(&path).unwrap();
        let rows = store.rows().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].definition.as_ref(), Some(&def("a")));
        assert_eq!(rows[0].enabled, Some(false));
        assert_eq!(rows[0].last_due_ms, 5000);
        assert_eq!(rows[1].source, Source::File);
        assert!(rows[1].definition.is_none());
        assert_eq!(store.mark_interrupted(30).unwrap(), 1);
        let history = store.history("a", 10).unwrap();
        let outcomes: Vec<_> = history.iter().map(|r| (r.id.as_str(), r.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("r2", RunOutcome::Interrupted),
                ("r1", RunOutcome::Finished)
            ]
        );
        assert_eq!(store.clean(15).unwrap(), 1);
        assert_eq!(store.history("a", 10).unwrap().len(), 1);
        assert_eq!(store.run("r2").unwrap().unwrap().ended_ms, 30);
        store.delete("a").unwrap();
        assert_eq!(store.rows().unwrap().len(), 1);
    }
}
