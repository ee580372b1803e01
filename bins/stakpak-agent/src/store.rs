//! Sessions in SQLite (`<state>/sessions.db`): sessions, their messages, tool calls with
//! verdicts, a checkpoint after every turn, token usage.
//!
//! Only redacted text is ever stored: prompts pass secretd's `Register` and tool output its
//! redactor before they get here, and the model only ever writes placeholders.
//!
//! A checkpoint names a message count: resuming from it (after a crash, or with
//! `--checkpoint`) drops the messages after it, so a turn cut short is done again, never
//! half-kept. Writes are one transaction each.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use stakpak_llm::{Message, Usage};
use stakpak_proto::{Opt, UnknownValue};
use stakpak_sqlite::{MigrateError, Migrations, Step};

use crate::model::{Logged, Session, SessionState, ToolCall, ToolCallState, Verdict};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    profile TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    workdir TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE IF NOT EXISTS messages (
    session TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    json TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (session, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions(id),
    turn INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS checkpoints_by_session ON checkpoints(session, created_ms);
CREATE TABLE IF NOT EXISTS tool_calls (
    id TEXT NOT NULL,
    session TEXT NOT NULL REFERENCES sessions(id),
    turn INTEGER NOT NULL,
    name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    state TEXT NOT NULL,
    approval TEXT NOT NULL DEFAULT '',
    decision TEXT NOT NULL DEFAULT '',
    rule TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    output TEXT NOT NULL DEFAULT '',
    is_error INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (session, id)
) STRICT;
";

/// Version 1 is the schema above, written with `IF NOT EXISTS` so that it holds on any file
/// the first agents made.
const MIGRATIONS: Migrations = Migrations::new(&[Step::Sql(SCHEMA)]);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("session database {0}")]
    Schema(#[from] MigrateError),
    #[error("session database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("session database holds a message that does not parse: {0}")]
    Corrupt(String),
}

/// The session database; one connection, used from one task at a time (the manager holds
/// it behind a mutex).
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

/// Where a session's loop starts again.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub info: Session,
    pub messages: Vec<Message>,
}

/// Unix milliseconds now, as every table stores time.
pub use stakpak_util::now_ms;

/// A column holding one of the names of a state or verdict (the names the wire uses too).
fn named<T: std::str::FromStr<Err = UnknownValue>>(
    row: &rusqlite::Row<'_>,
    column: usize,
) -> rusqlite::Result<T> {
    row.get::<_, String>(column)?.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn info_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: row.get(0)?,
        title: row.get(1)?,
        profile: row.get(2)?,
        model: row.get(3)?,
        state: named(row, 4)?,
        reason: row.get(5)?,
        created_ms: row.get(6)?,
        updated_ms: row.get(7)?,
        turns: row.get(8)?,
        input_tokens: row.get::<_, i64>(9)?.max(0) as u64,
        output_tokens: row.get::<_, i64>(10)?.max(0) as u64,
        pending: row.get(11)?,
        checkpoint: row.get(12)?,
    })
}

/// The columns of a [`Session`], for `SELECT … FROM sessions s`.
fn info_columns() -> String {
    format!(
        "s.id, s.title, s.profile, s.model, s.state, s.reason, s.created_ms, \
         s.updated_ms, s.turns, s.input_tokens, s.output_tokens, \
         (SELECT COUNT(*) FROM tool_calls t WHERE t.session = s.id AND t.state = '{}'), \
         (SELECT c.id FROM checkpoints c WHERE c.session = s.id ORDER BY c.created_ms DESC, c.turn DESC LIMIT 1)",
        ToolCallState::WaitingApproval.as_str()
    )
}

fn call_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ToolCall> {
    Ok(ToolCall {
        id: row.get(0)?,
        session: row.get(1)?,
        turn: row.get(2)?,
        name: row.get(3)?,
        arguments: row.get(4)?,
        state: named(row, 5)?,
        approval: row.get(6)?,
        verdict: named::<Opt<Verdict>>(row, 7)?.get(),
        rule: row.get(8)?,
        reason: row.get(9)?,
        output: row.get(10)?,
        is_error: row.get::<_, i64>(11)? != 0,
    })
}

const CALL_COLUMNS: &str =
    "id, session, turn, name, arguments, state, approval, decision, rule, reason, output, is_error";

impl Store {
    /// Opens (or creates) the database; mode 0600.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        MIGRATIONS.apply(&mut conn, path)?;
        Ok(Store { conn })
    }

    /// Sessions that were running when the agent stopped become `interrupted`.
    pub fn mark_interrupted(&mut self) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE sessions SET state = ?2, reason = 'the agent stopped while it ran; resume it with stakpak -s ID', updated_ms = ?1 \
             WHERE state IN (?3, ?4)",
            params![
                now_ms(),
                SessionState::Interrupted.as_str(),
                SessionState::Running.as_str(),
                SessionState::WaitingApproval.as_str()
            ],
        )?)
    }

    pub fn create(&mut self, info: &Session, workdir: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sessions (id, title, profile, model, state, reason, workdir, created_ms, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, ?7)",
            params![
                info.id,
                info.title,
                info.profile,
                info.model,
                info.state.as_str(),
                workdir,
                info.created_ms
            ],
        )?;
        Ok(())
    }

    pub fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM sessions WHERE id = ?1", params![id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    pub fn set_state(
        &mut self,
        id: &str,
        state: SessionState,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sessions SET state = ?2, reason = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, state.as_str(), reason, now_ms()],
        )?;
        Ok(())
    }

    pub fn set_title(&mut self, id: &str, title: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sessions SET title = ?2 WHERE id = ?1",
            params![id, title],
        )?;
        Ok(())
    }

    pub fn set_model(&mut self, id: &str, profile: &str, model: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sessions SET profile = ?2, model = ?3 WHERE id = ?1",
            params![id, profile, model],
        )?;
        Ok(())
    }

    pub fn info(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {} FROM sessions s WHERE s.id = ?1", info_columns()),
                params![id],
                info_from_row,
            )
            .optional()?)
    }

    pub fn list(&self) -> Result<Vec<Session>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM sessions s ORDER BY s.created_ms DESC, s.id",
            info_columns()
        ))?;
        let rows = stmt.query_map([], info_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The messages of a session up to its newest checkpoint, or up to `checkpoint`.
    pub fn resume(
        &self,
        id: &str,
        checkpoint: Option<&str>,
    ) -> Result<Option<Resumed>, StoreError> {
        let Some(info) = self.info(id)? else {
            return Ok(None);
        };
        let cp = checkpoint.or(info.checkpoint.as_deref());
        let count: Option<i64> = match cp {
            Some(cp) => self
                .conn
                .query_row(
                    "SELECT messages FROM checkpoints WHERE id = ?1 AND session = ?2",
                    params![cp, id],
                    |r| r.get(0),
                )
                .optional()?,
            None => Some(0),
        };
        let Some(count) = count else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM messages WHERE session = ?1 AND seq < ?2 ORDER BY seq")?;
        let rows = stmt.query_map(params![id, count], |r| r.get::<_, String>(0))?;
        let mut messages = Vec::new();
        for json in rows {
            let json = json?;
            messages.push(
                serde_json::from_str::<Message>(&json)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(Some(Resumed { info, messages }))
    }

    /// Which session a checkpoint belongs to.
    pub fn checkpoint_session(&self, checkpoint: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT session FROM checkpoints WHERE id = ?1",
                params![checkpoint],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Ends a turn: the session's messages become exactly `messages`, of which the first
    /// `unchanged` are already stored as they are (what the loop resumed from or last
    /// checkpointed); stored rows after those are replaced. Usage is added, and a
    /// checkpoint records the count. One transaction.
    pub fn checkpoint(
        &mut self,
        id: &str,
        turn: u32,
        messages: &[Message],
        unchanged: usize,
        usage: Usage,
    ) -> Result<String, StoreError> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        let keep = unchanged.min(messages.len()) as i64;
        tx.execute(
            "DELETE FROM messages WHERE session = ?1 AND seq >= ?2",
            params![id, keep],
        )?;
        for (seq, message) in messages.iter().enumerate().skip(keep as usize) {
            let json =
                serde_json::to_string(message).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO messages (session, seq, json, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, seq as i64, json, now],
            )?;
        }
        let cp = format!("{id}.{turn}.{}", messages.len());
        tx.execute(
            "INSERT OR REPLACE INTO checkpoints (id, session, turn, messages, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![cp, id, turn, messages.len() as i64, now],
        )?;
        tx.execute(
            "UPDATE sessions SET turns = ?2, input_tokens = input_tokens + ?3, output_tokens = output_tokens + ?4, updated_ms = ?5 WHERE id = ?1",
            params![
                id,
                turn,
                i64::try_from(usage.input_tokens).unwrap_or(i64::MAX),
                i64::try_from(usage.output_tokens).unwrap_or(i64::MAX),
                now
            ],
        )?;
        tx.commit()?;
        Ok(cp)
    }

    /// Copies a session's messages up to `checkpoint` into a new session `new`.
    pub fn fork(
        &mut self,
        from: &str,
        checkpoint: &str,
        new: &Session,
    ) -> Result<bool, StoreError> {
        let Some(resumed) = self.resume(from, Some(checkpoint))? else {
            return Ok(false);
        };
        self.create(new, "")?;
        self.checkpoint(&new.id, 0, &resumed.messages, 0, Usage::default())?;
        Ok(true)
    }

    pub fn put_call(&mut self, call: &ToolCall) -> Result<(), StoreError> {
        let now = now_ms();
        self.conn.execute(
            &format!(
                "INSERT INTO tool_calls ({CALL_COLUMNS}, created_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13) \
                 ON CONFLICT(session, id) DO UPDATE SET state = excluded.state, approval = excluded.approval, \
                 decision = excluded.decision, rule = excluded.rule, reason = excluded.reason, \
                 output = excluded.output, is_error = excluded.is_error, updated_ms = excluded.updated_ms"
            ),
            params![
                call.id,
                call.session,
                call.turn,
                call.name,
                call.arguments,
                call.state.as_str(),
                call.approval,
                Opt(call.verdict).as_str(),
                call.rule,
                call.reason,
                call.output,
                i64::from(call.is_error),
                now
            ],
        )?;
        Ok(())
    }

    pub fn calls(&self, session: &str) -> Result<Vec<ToolCall>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CALL_COLUMNS} FROM tool_calls WHERE session = ?1 ORDER BY created_ms, turn, id"
        ))?;
        let rows = stmt.query_map(params![session], call_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn messages(&self, session: &str) -> Result<Vec<Logged>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT json, created_ms FROM messages WHERE session = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![session], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (json, created_ms) = row?;
            let message: Message =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(Logged {
                message,
                created_ms,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(id: &str) -> Session {
        Session {
            id: id.into(),
            title: "t".into(),
            profile: "default".into(),
            model: "m/x".into(),
            state: SessionState::Running,
            reason: String::new(),
            created_ms: 1,
            updated_ms: 1,
            turns: 0,
            input_tokens: 0,
            output_tokens: 0,
            pending: 0,
            checkpoint: None,
        }
    }

    #[test]
    fn checkpoints_resume_and_forks() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store.create(&info("a"), "/w").unwrap();
        let m1 = vec![Message::User { text: "hi".into() }];
        let cp1 = store
            .checkpoint(
                "a",
                1,
                &m1,
                0,
                Usage {
                    input_tokens: 10,
                    output_tokens: 2,
                },
            )
            .unwrap();
        let mut m2 = m1.clone();
        m2.push(Message::Assistant {
            text: "hello".into(),
            tool_calls: vec![],
        });
        let cp2 = store.checkpoint("a", 2, &m2, 1, Usage::default()).unwrap();
        let info_a = store.info("a").unwrap().unwrap();
        assert_eq!(info_a.checkpoint, Some(cp2));
        assert_eq!((info_a.turns, info_a.input_tokens), (2, 10));
        assert_eq!(store.resume("a", None).unwrap().unwrap().messages.len(), 2);
        assert_eq!(
            store
                .resume("a", Some(&cp1))
                .unwrap()
                .unwrap()
                .messages
                .len(),
            1
        );
        // Continuing from the earlier checkpoint drops what came after it.
        let mut m3 = m1.clone();
        m3.push(Message::User {
            text: "again".into(),
        });
        store.checkpoint("a", 2, &m3, 1, Usage::default()).unwrap();
        let msgs = store.messages("a").unwrap();
        assert_eq!(msgs.into_iter().map(|m| m.message).collect::<Vec<_>>(), m3);
        assert!(store.fork("a", &cp1, &info("b")).unwrap());
        assert_eq!(store.messages("b").unwrap().len(), 1);
        assert_eq!(store.mark_interrupted().unwrap(), 2);
        assert_eq!(
            store.info("a").unwrap().unwrap().state,
            SessionState::Interrupted
        );
    }
}
