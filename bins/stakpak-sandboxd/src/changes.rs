//! The changesets: every file change the file tools made, in SQLite at `<state>/changes.db`.
//!
//! A row says what a change did (`create`, `edit`, `remove`), to which workspace-relative
//! path, whether the path existed before and with which mode, where the previous bytes (or
//! the removed tree) were moved (`<state>/backups/<session>/<change-id>`), the SHA-256 of the
//! bytes the change left behind, and when it was reverted. Never the content itself: the
//! content may hold resolved secrets, which live only in the target file (and, for the
//! previous bytes, in the 0700 backups folder).

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OptionalExtension, Row, params};
use stakpak_sqlite::{MigrateError, Migrations, Step};

const SCHEMA: &str = "
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    session TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('create', 'edit', 'remove')),
    path TEXT NOT NULL,
    existed INTEGER NOT NULL,
    prev_mode INTEGER,
    backup TEXT,
    new_sha256 TEXT,
    created_ms INTEGER NOT NULL,
    reverted_ms INTEGER NOT NULL DEFAULT 0,
    revert_backup TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX changes_by_session ON changes (session, seq);
";

/// Version 1 is the schema above; the file kept its version from the start, so a file at 0
/// is a new one.
const MIGRATIONS: Migrations = Migrations::new(&[Step::Sql(SCHEMA)]);

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Create,
    Edit,
    Remove,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Edit => "edit",
            Kind::Remove => "remove",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "create" => Some(Kind::Create),
            "edit" => Some(Kind::Edit),
            "remove" => Some(Kind::Remove),
            _ => None,
        }
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub id: String,
    pub session: String,
    pub kind: Kind,
    /// Workspace-relative.
    pub path: String,
    /// Whether the path existed before the change.
    pub existed: bool,
    /// Permission bits of what was there before.
    pub prev_mode: Option<u32>,
    /// Absolute path of the previous bytes (create over a file, edit) or of the removed
    /// file or tree (remove).
    pub backup: Option<String>,
    /// Lower-case hex SHA-256 of the file the change left (create, edit).
    pub new_sha256: Option<String>,
    pub created_ms: i64,
    /// 0 while not reverted.
    pub reverted_ms: i64,
    /// Where a revert of a `create` moved the created file.
    pub revert_backup: Option<String>,
    pub summary: String,
}

/// Failures of the database, with the file they concern.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Schema(#[from] MigrateError),
}

/// The open database.
#[derive(Debug)]
pub(crate) struct ChangeDb {
    conn: Connection,
    path: String,
}

impl ChangeDb {
    /// Opens (creating when missing) the database and its schema.
    pub(crate) fn open(path: &Path) -> Result<ChangeDb, DbError> {
        let display = path.display().to_string();
        let err = |source| DbError::Sqlite {
            path: display.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "trusted_schema", "OFF")
            .map_err(err)?;
        let _: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        MIGRATIONS.apply(&mut conn, path)?;
        Ok(ChangeDb {
            conn,
            path: display,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn insert(&self, c: &Change) -> Result<(), DbError> {
        self.conn
            .execute(
                "INSERT INTO changes (id, session, kind, path, existed, prev_mode, backup, \
                 new_sha256, created_ms, reverted_ms, revert_backup, summary) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    c.id,
                    c.session,
                    c.kind.as_str(),
                    c.path,
                    c.existed,
                    c.prev_mode,
                    c.backup,
                    c.new_sha256,
                    c.created_ms,
                    c.reverted_ms,
                    c.revert_backup,
                    c.summary
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<Change>, DbError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM changes WHERE id = ?1"),
                [id],
                row_to_change,
            )
            .optional()
            .map_err(self.err())
    }

    /// Changes of one session (every session when `None`), newest first.
    pub(crate) fn list(&self, session: Option<&str>) -> Result<Vec<Change>, DbError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM changes WHERE ?1 IS NULL OR session = ?1 ORDER BY seq DESC"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map([session], row_to_change)
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Marks a change reverted; false when it already was.
    pub(crate) fn mark_reverted(
        &self,
        id: &str,
        when_ms: i64,
        revert_backup: Option<&str>,
    ) -> Result<bool, DbError> {
        let n = self
            .conn
            .execute(
                "UPDATE changes SET reverted_ms = ?2, revert_backup = ?3 \
                 WHERE id = ?1 AND reverted_ms = 0",
                params![id, when_ms, revert_backup],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }
}

const COLUMNS: &str = "id, session, kind, path, existed, prev_mode, backup, new_sha256, \
                       created_ms, reverted_ms, revert_backup, summary";

fn row_to_change(row: &Row<'_>) -> rusqlite::Result<Change> {
    let kind: String = row.get(2)?;
    let kind = Kind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown change kind {kind:?}").into(),
        )
    })?;
    Ok(Change {
        id: row.get(0)?,
        session: row.get(1)?,
        kind,
        path: row.get(3)?,
        existed: row.get(4)?,
        prev_mode: row.get(5)?,
        backup: row.get(6)?,
        new_sha256: row.get(7)?,
        created_ms: row.get(8)?,
        reverted_ms: row.get(9)?,
        revert_backup: row.get(10)?,
        summary: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn change(id: &str, session: &str, created_ms: i64) -> Change {
        Change {
            id: id.into(),
            session: session.into(),
            kind: Kind::Edit,
            path: "a/b.txt".into(),
            existed: true,
            prev_mode: Some(0o640),
            backup: Some(format!("/s/backups/{session}/{id}")),
            new_sha256: Some("00".repeat(32)),
            created_ms,
            reverted_ms: 0,
            revert_backup: None,
            summary: "replaced 1 match".into(),
        }
    }

    #[test]
    fn insert_list_revert_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.db");
        let db = ChangeDb::open(&path).unwrap();
        let (a, b, c) = (
            change("c-1", "s1", 1),
            change("c-2", "s2", 2),
            change("c-3", "s1", 3),
        );
        for x in [&a, &b, &c] {
            db.insert(x).unwrap();
        }
        assert_eq!(db.list(Some("s1")).unwrap(), vec![c.clone(), a.clone()]);
        assert_eq!(
            db.list(None).unwrap(),
            vec![c.clone(), b.clone(), a.clone()]
        );
        assert!(db.insert(&a).is_err(), "ids are unique");

        assert!(db.mark_reverted("c-1", 9, Some("/x")).unwrap());
        assert!(!db.mark_reverted("c-1", 10, None).unwrap());
        drop(db);

        let db = ChangeDb::open(&path).unwrap();
        let got = db.get("c-1").unwrap().unwrap();
        assert_eq!(
            got,
            Change {
                reverted_ms: 9,
                revert_backup: Some("/x".into()),
                ..a
            }
        );
        assert_eq!(db.get("c-9").unwrap(), None);
    }
}
