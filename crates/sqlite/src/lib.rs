//! Schema migrations for the daemons' SQLite databases: each database's ordered [`Step`]s,
//! and how many of them a file has had, kept in `PRAGMA user_version`.
//!
//! Step `n` (counting from 1) takes a file from version `n - 1` to `n`, in one `BEGIN
//! IMMEDIATE` transaction together with the new version, so a step that fails leaves the
//! file as the previous step left it. A file at the newest version is only read, never
//! written; a file newer than the code is refused rather than guessed at.
//!
//! Files made before their database kept a version are at 0 with their tables present: the
//! first step of such a database is written so that it holds there too (`CREATE TABLE IF NOT
//! EXISTS`), and they come out at version 1 like a new file.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// One step of a schema.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Statements run as one batch.
    Sql(&'static str),
    /// Code, for what statements alone cannot do (rewriting rows through Rust, say).
    Fn(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// The steps of one database, oldest first; the version of a file that has had them all is
/// their number.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    steps: &'static [Step],
}

/// What [`Migrations::apply`] found and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The file's version when it was opened.
    pub from: i64,
    /// Its version now: always [`Migrations::latest`].
    pub to: i64,
}

/// A database's schema could not be brought up to date; every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{path}: schema version {found} is newer than this build knows ({known})")]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path}: schema version {found} is not one this build knows (0 to {known})")]
    Unknown {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path}: cannot migrate to schema version {version}: {source}")]
    Step {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl MigrateError {
    /// The SQLite error underneath, if any: callers that retry on a busy file look at it.
    pub fn sqlite(&self) -> Option<&rusqlite::Error> {
        match self {
            MigrateError::Step { source, .. } | MigrateError::Sqlite { source, .. } => Some(source),
            MigrateError::Newer { .. } | MigrateError::Unknown { .. } => None,
        }
    }
}

impl Migrations {
    pub const fn new(steps: &'static [Step]) -> Migrations {
        Migrations { steps }
    }

    /// The version a file has once every step is applied.
    pub const fn latest(&self) -> i64 {
        // A schema of 2^63 steps is not written by hand.
        self.steps.len() as i64
    }

    /// Brings the file behind `conn` (opened from `path`, which errors name) to
    /// [`Migrations::latest`], one transaction a step.
    ///
    /// Several processes may open the same file at once: each step's transaction takes the
    /// write lock before it reads the version, so a step is applied by exactly one of them
    /// and the others see it done. The connection's busy timeout says how long they wait.
    pub fn apply(&self, conn: &mut Connection, path: &Path) -> Result<Applied, MigrateError> {
        let sqlite = |source| MigrateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        // Read outside a transaction first: the usual open finds the file up to date and
        // then takes no write lock at all.
        let from = self.checked(path, version(conn).map_err(sqlite)?)?;
        if from == self.latest() {
            return Ok(Applied { from, to: from });
        }
        loop {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite)?;
            let now = self.checked(path, version(&tx).map_err(sqlite)?)?;
            let Some(step) = usize::try_from(now).ok().and_then(|i| self.steps.get(i)) else {
                // Up to date, by this or another process meanwhile.
                tx.commit().map_err(sqlite)?;
                return Ok(Applied {
                    from,
                    to: self.latest(),
                });
            };
            let next = now + 1;
            let failed = |source| MigrateError::Step {
                path: path.to_path_buf(),
                version: next,
                source,
            };
            match step {
                Step::Sql(sql) => tx.execute_batch(sql),
                Step::Fn(f) => f(&tx),
            }
            .map_err(failed)?;
            tx.pragma_update(None, "user_version", next)
                .map_err(failed)?;
            tx.commit().map_err(failed)?;
        }
    }

    fn checked(&self, path: &Path, found: i64) -> Result<i64, MigrateError> {
        let known = self.latest();
        if found > known {
            return Err(MigrateError::Newer {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        if found < 0 {
            return Err(MigrateError::Unknown {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        Ok(found)
    }
}

/// The file's `PRAGMA user_version`.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: Step = Step::Sql("CREATE TABLE IF NOT EXISTS a (x INTEGER NOT NULL);");
    const TWO: Step = Step::Sql("ALTER TABLE a ADD COLUMN y TEXT NOT NULL DEFAULT '';");
    const THREE: Step = Step::Fn(|tx| {
        tx.execute("INSERT INTO a (x, y) VALUES (3, 'three')", [])
            .map(drop)
    });
    const ALL: Migrations = Migrations::new(&[ONE, TWO, THREE]);

    fn open(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    /// A database file in a directory of its own, removed when the fixture drops.
    struct Db {
        _dir: tempfile::TempDir,
        path: PathBuf,
        conn: Connection,
    }

    impl Db {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let conn = open(&path);
            Self {
                _dir: dir,
                path,
                conn,
            }
        }

        fn apply(&mut self, migrations: Migrations) -> Result<Applied, MigrateError> {
            migrations.apply(&mut self.conn, &self.path)
        }

        /// Applies [`ALL`] to a file that stands at version `from`.
        fn upgrade(&mut self, from: i64) {
            assert_eq!(self.apply(ALL).unwrap(), Applied { from, to: 3 });
        }

        /// The error of applying `migrations`, whose second step fails, after the check that
        /// the file was left at version 1.
        fn fail_at_step_two(&mut self, migrations: Migrations) -> MigrateError {
            let err = self.apply(migrations).unwrap_err();
            assert!(
                matches!(err, MigrateError::Step { version: 2, .. }),
                "{err:?}"
            );
            assert_eq!(version(&self.conn).unwrap(), 1);
            err
        }
    }

    /// A file whose `user_version` was set to `found`, and the error [`ALL`] refuses it with.
    fn refused_at(found: i64) -> (Db, MigrateError) {
        let mut db = Db::new();
        db.conn.pragma_update(None, "user_version", found).unwrap();
        let err = db.apply(ALL).unwrap_err();
        (db, err)
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn rows(conn: &Connection) -> Vec<(i64, String)> {
        let mut stmt = conn.prepare("SELECT x, y FROM a ORDER BY x").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The rows of a file that held row 1 before [`ALL`] upgraded it.
    fn upgraded_rows() -> Vec<(i64, String)> {
        vec![(1, String::new()), (3, "three".to_string())]
    }

    #[test]
    fn a_new_file_gets_every_step() {
        let mut db = Db::new();
        assert_eq!(ALL.latest(), 3);
        db.upgrade(0);
        assert_eq!(version(&db.conn).unwrap(), 3);
        assert_eq!(rows(&db.conn), vec![(3, "three".to_string())]);
    }

    #[test]
    fn reopening_applies_nothing() {
        let mut db = Db::new();
        db.apply(ALL).unwrap();

        db.conn = open(&db.path);
        assert_eq!(db.apply(ALL).unwrap(), Applied { from: 3, to: 3 });
        // Step three inserts a row: run twice, there would be two.
        assert_eq!(rows(&db.conn), vec![(3, "three".to_string())]);
        assert_eq!(version(&db.conn).unwrap(), 3);
    }

    #[test]
    fn an_older_file_is_upgraded() {
        let mut db = Db::new();
        db.apply(Migrations::new(&[ONE])).unwrap();
        db.conn.execute("INSERT INTO a (x) VALUES (1)", []).unwrap();

        db.upgrade(1);
        assert_eq!(rows(&db.conn), upgraded_rows());
    }

    #[test]
    fn a_file_from_before_versions_takes_the_first_step_as_done() {
        let mut db = Db::new();
        db.conn
            .execute_batch("CREATE TABLE a (x INTEGER NOT NULL); INSERT INTO a VALUES (1);")
            .unwrap();
        assert_eq!(version(&db.conn).unwrap(), 0);

        db.upgrade(0);
        assert_eq!(rows(&db.conn), upgraded_rows());
    }

    #[test]
    fn a_newer_file_is_refused_untouched() {
        let (db, err) = refused_at(4);
        assert!(
            matches!(
                err,
                MigrateError::Newer {
                    found: 4,
                    known: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}: schema version 4 is newer than this build knows (3)",
                db.path.display()
            )
        );
        assert!(tables(&db.conn).is_empty());
        assert_eq!(version(&db.conn).unwrap(), 4);
    }

    #[test]
    fn a_negative_version_is_refused() {
        let (db, err) = refused_at(-1);
        assert!(
            matches!(
                err,
                MigrateError::Unknown {
                    found: -1,
                    known: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(tables(&db.conn).is_empty());
    }

    #[test]
    fn a_failing_step_rolls_back_and_keeps_the_version() {
        const BROKEN: Migrations = Migrations::new(&[
            ONE,
            // The first statement would succeed; the second fails, taking it back too.
            Step::Sql("CREATE TABLE b (z INTEGER); INSERT INTO nowhere VALUES (1);"),
            THREE,
        ]);
        let mut db = Db::new();

        let err = db.fail_at_step_two(BROKEN);
        assert!(err.sqlite().is_some());
        assert!(
            err.to_string().starts_with(&format!(
                "{}: cannot migrate to schema version 2: ",
                db.path.display()
            )),
            "{err}"
        );
        assert_eq!(tables(&db.conn), vec!["a".to_string()]);

        // Once fixed, the same file goes on from where it stopped.
        db.upgrade(1);
    }

    #[test]
    fn a_failing_fn_step_rolls_back_too() {
        const BROKEN: Migrations = Migrations::new(&[
            ONE,
            Step::Fn(|tx| {
                tx.execute("INSERT INTO a (x) VALUES (1)", [])?;
                Err(rusqlite::Error::InvalidQuery)
            }),
        ]);
        let mut db = Db::new();

        db.fail_at_step_two(BROKEN);
        let count: i64 = db
            .conn
            .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn two_connections_migrating_at_once_apply_each_step_once() {
        // No connection before the threads: they race to create the file, too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut conn = open(&path);
                    conn.busy_timeout(std::time::Duration::from_secs(5))
                        .unwrap();
                    ALL.apply(&mut conn, &path).unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().to, 3);
        }
        assert_eq!(rows(&open(&path)), vec![(3, "three".to_string())]);
    }
}
