//! The schema of `<state>/schedd.db`: the scheduler's tables (`store.rs`) and the channels'
//! (`channels.rs`) share the file, and so one list of migrations and one version.
//!
//! Both open the file through [`MIGRATIONS`]; whichever comes first brings it up to date.

use stakpak_sqlite::{Migrations, Step};

/// Version 1: the tables as they were before the file kept a version. `IF NOT EXISTS`, so a
/// file made then (at version 0 with every table present) takes it as already applied.
const V1: &str = "
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    definition TEXT NOT NULL,
    enabled INTEGER,
    last_due_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    trigger TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER NOT NULL DEFAULT 0,
    check_status TEXT NOT NULL DEFAULT '',
    check_code INTEGER NOT NULL DEFAULT 0,
    check_rule TEXT NOT NULL DEFAULT '',
    session TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS runs_by_schedule ON runs(schedule, started_ms);
CREATE TABLE IF NOT EXISTS channels (
    kind TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    api_url TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS slack_threads (
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    session TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (channel, thread_ts)
) STRICT;
";

pub(crate) const MIGRATIONS: Migrations = Migrations::new(&[Step::Sql(V1)]);

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    /// What `store.rs` and `channels.rs` ran on every open before the file kept a version.
    const UNVERSIONED: &str = "
    CREATE TABLE schedules (name TEXT PRIMARY KEY, source TEXT NOT NULL,
        definition TEXT NOT NULL, enabled INTEGER, last_due_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL) STRICT;
    CREATE TABLE runs (id TEXT PRIMARY KEY, schedule TEXT NOT NULL, trigger TEXT NOT NULL,
        due_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL DEFAULT 0, check_status TEXT NOT NULL DEFAULT '',
        check_code INTEGER NOT NULL DEFAULT 0, check_rule TEXT NOT NULL DEFAULT '',
        session TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '', input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0) STRICT;
    CREATE INDEX runs_by_schedule ON runs(schedule, started_ms);
    CREATE TABLE channels (kind TEXT PRIMARY KEY, profile TEXT NOT NULL,
        api_url TEXT NOT NULL, created_ms INTEGER NOT NULL) STRICT;
    CREATE TABLE slack_threads (channel TEXT NOT NULL, thread_ts TEXT NOT NULL,
        session TEXT NOT NULL, created_ms INTEGER NOT NULL,
        PRIMARY KEY (channel, thread_ts)) STRICT;
    INSERT INTO schedules VALUES ('nightly', 'cli', '{}', NULL, 5, 1);
    INSERT INTO slack_threads VALUES ('C1', '1.2', 's-1', 3);
    ";

    #[test]
    fn a_file_from_before_versions_opens_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedd.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(UNVERSIONED).unwrap();

        let applied = MIGRATIONS.apply(&mut conn, &path).unwrap();
        assert_eq!((applied.from, applied.to), (0, 1));
        assert_eq!(stakpak_sqlite::version(&conn).unwrap(), 1);
        let kept: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT last_due_ms FROM schedules), (SELECT count(*) FROM slack_threads)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kept, (5, 1));
    }
}
