//! [`AuditLog`]: the database file, its schema, appending, verifying and reading back.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;
use stakpak_sqlite::{MigrateError, Migrations, Step};

use crate::canonical;
use crate::chain::{GENESIS_HASH, Hashed};

/// The schema this build writes and reads, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.latest();

/// How long a writer waits for another connection's write transaction before giving up.
/// Appends are one small insert each, so waiting this long means something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `seq` and `prev_hash` are checked by the insert trigger too, so even a hand-written
/// `INSERT` (or an `INSERT OR REPLACE`, which would otherwise delete a row without firing the
/// delete trigger) cannot leave a gap or overwrite a row. The hash itself is not checked
/// here: SQLite has no SHA-256, and verifying it is [`AuditLog::verify`]'s job.
const SCHEMA: &str = "
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY CHECK (seq >= 1),
    ts_ms     INTEGER NOT NULL,
    source    TEXT NOT NULL CHECK (length(source) > 0),
    kind      TEXT NOT NULL CHECK (length(kind) > 0),
    fields    TEXT NOT NULL,
    prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash      TEXT NOT NULL CHECK (length(hash) = 64)
) STRICT;

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

CREATE TRIGGER audit_append_in_order BEFORE INSERT ON audit
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit)
  OR NEW.prev_hash IS NOT coalesce(
        (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1),
        '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
    SELECT RAISE(ABORT, 'audit rows are appended in sequence, chained to the last hash');
END;
";

/// Version 1 is the schema above; the log kept its version from the start, so a file at 0
/// is a new one.
const MIGRATIONS: Migrations = Migrations::new(&[Step::Sql(SCHEMA)]);

const COLUMNS: &str = "seq, ts_ms, source, kind, fields, prev_hash, hash";

/// Something to record: who records it, what kind of event it is, and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The daemon that records it, e.g. `warden`.
    pub source: String,
    /// What happened, e.g. `verdict` or `exec`.
    pub kind: String,
    /// The event's details; stored as canonical JSON.
    pub fields: BTreeMap<String, Value>,
}

/// Where [`AuditLog::append`] put an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Unix milliseconds, taken inside the appending transaction.
    pub ts_ms: i64,
    /// Lower-case hex SHA-256 of the row.
    pub hash: String,
}

/// One row read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub ts_ms: i64,
    pub source: String,
    pub kind: String,
    pub fields: BTreeMap<String, Value>,
    pub prev_hash: String,
    pub hash: String,
}

/// The outcome of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyReport {
    /// Every row is where it should be and hashes to what it says.
    Intact { entries: u64 },
    /// The row `seq` is the first that is wrong; the `good` rows before it are intact.
    Broken {
        seq: u64,
        problem: Problem,
        good: u64,
    },
}

/// What is wrong with the first broken row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The row's `seq` is not the one after its predecessor's: rows are missing before it.
    Gap { expected: u64 },
    /// The row's `prev_hash` is not its predecessor's `hash`.
    PrevHash { stored: String, expected: String },
    /// The row does not hash to its stored `hash`: a column was changed after writing.
    Hash { stored: String, computed: String },
    /// The hash is right but `fields` is not a JSON object in canonical form, so this crate
    /// did not write it.
    Fields { reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Gap { expected } => write!(f, "seq {expected} is missing"),
            Problem::PrevHash { stored, expected } => {
                write!(f, "prev_hash is {stored}, expected {expected}")
            }
            Problem::Hash { stored, computed } => {
                write!(f, "hash is {stored}, the row hashes to {computed}")
            }
            Problem::Fields { reason } => write!(f, "fields are not canonical JSON: {reason}"),
        }
    }
}

/// The audit database could not be used; every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database {path}: cannot create: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit database {path}: not an SQLite database")]
    NotADatabase { path: PathBuf },
    #[error(
        "audit database {path}: schema version {found} is newer than this build knows ({known})"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("audit database {0}")]
    Schema(MigrateError),
    #[error("audit database {path}: journal mode is {mode}, expected wal")]
    NotWal { path: PathBuf, mode: String },
    #[error("audit database {path}: entry has an empty {what}")]
    EmptyEntry { path: PathBuf, what: &'static str },
    #[error("audit database {path}: cannot encode entry fields: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("audit database {path}: the system clock is before 1970")]
    Clock { path: PathBuf },
    #[error("audit database {path}: seq {seq} is unreadable: {reason}")]
    CorruptRow {
        path: PathBuf,
        seq: i64,
        reason: String,
    },
    #[error("audit database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// An open audit database. Several handles, in one process or several, may append to the
/// same file: each append is its own write transaction.
#[derive(Debug)]
pub struct AuditLog {
    conn: Connection,
    path: PathBuf,
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl AuditLog {
    /// Opens the database at `path`, creating it (mode 0600) and its schema if absent.
    ///
    /// Checks only that the last row is readable; [`AuditLog::verify`] checks the chain.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        // The entries say what the agent tried to run and where; only the daemon that owns
        // the log should read them. SQLite gives its -wal and -shm files the same mode.
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError::Create {
                path: path.to_path_buf(),
                source,
            })?;

        // No SQLITE_OPEN_URI: a file named `file:…?mode=ro` is a file name, not options.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error(path))?;
        let mut log = AuditLog {
            conn,
            path: path.to_path_buf(),
        };
        // Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY at once
        // (without its busy handler) when another process is doing the same: two daemons
        // starting together must both get the log, so the set-up is retried for as long as a
        // writer would wait.
        let started = std::time::Instant::now();
        loop {
            match log.configure().and_then(|()| log.create_schema()) {
                Err(AuditError::Sqlite { source, .. })
                    if is_busy(&source) && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        log.recent(1)?;
        Ok(log)
    }

    fn configure(&self) -> Result<(), AuditError> {
        let err = sqlite_error(&self.path);
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        // A file someone else edited may carry triggers or views of their own; with an
        // untrusted schema they cannot call functions with side effects on our behalf.
        self.conn
            .pragma_update(None, "trusted_schema", "OFF")
            .map_err(&err)?;
        // WAL lets `verify` and readers run while a daemon appends, and lets writers in
        // several processes take turns without blocking readers.
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AuditError::NotWal {
                path: self.path.clone(),
                mode,
            });
        }
        // FULL, not NORMAL: with NORMAL a power cut can lose the last commits, and warden
        // answers "allow" only after its verdict is appended, so a lost row would be an
        // execution with no record of why it was allowed. One fsync an append is cheap next
        // to running a command.
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
        Ok(())
    }

    fn create_schema(&mut self) -> Result<(), AuditError> {
        // Each step runs in a `BEGIN IMMEDIATE` transaction, so two processes opening a new
        // file at once do not both see version 0 and both try to create the table.
        match MIGRATIONS.apply(&mut self.conn, &self.path) {
            Ok(_) => Ok(()),
            Err(MigrateError::Newer { found, known, .. }) => Err(AuditError::NewerSchema {
                path: self.path.clone(),
                found,
                known,
            }),
            // Kept apart so that `open` retries a file that another process holds busy.
            Err(MigrateError::Sqlite { source, .. }) => Err(sqlite_error(&self.path)(source)),
            Err(e) => Err(AuditError::Schema(e)),
        }
    }

    /// The file this log was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` after the last row, whoever wrote it.
    ///
    /// Reading the last hash and inserting happen in one `BEGIN IMMEDIATE` transaction: it
    /// takes the write lock before reading, so another handle (in this or another process)
    /// cannot append between the two and fork the chain. A deferred transaction would not
    /// do: in WAL mode its upgrade to a writer fails at once instead of waiting.
    pub fn append(&mut self, entry: &Entry) -> Result<Appended, AuditError> {
        let mut appended = self.append_all(std::slice::from_ref(entry))?;
        appended.pop().ok_or_else(|| AuditError::CorruptRow {
            path: self.path.clone(),
            seq: 0,
            reason: "an append returned no row".to_string(),
        })
    }

    /// Appends `entries` in order, in one transaction and so with one sync of the disk: all
    /// of them or, on an error, none. A writer that has many entries queued uses it to keep
    /// up with a burst.
    pub fn append_all(&mut self, entries: &[Entry]) -> Result<Vec<Appended>, AuditError> {
        let mut encoded = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.source.is_empty() {
                return Err(self.empty("source"));
            }
            if entry.kind.is_empty() {
                return Err(self.empty("kind"));
            }
            let fields =
                canonical::to_canonical(&entry.fields).map_err(|source| AuditError::Encode {
                    path: self.path.clone(),
                    source,
                })?;
            encoded.push((entry, fields));
        }

        let err = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        // The table's CHECK keeps seq at 1 or more; this fails only on a file whose last
        // row is i64::MAX, or one rebuilt without the CHECK: refuse rather than wrap around.
        let no_next = |last_seq: i64| AuditError::CorruptRow {
            path: self.path.clone(),
            seq: last_seq,
            reason: "no seq can follow it".to_string(),
        };
        let (mut last_seq, mut prev_hash) = match last {
            None => (0, GENESIS_HASH.to_string()),
            Some(last) => last,
        };
        let mut appended = Vec::with_capacity(encoded.len());
        for (entry, fields) in &encoded {
            let seq_sql = last_seq.checked_add(1).ok_or_else(|| no_next(last_seq))?;
            let seq = u64::try_from(seq_sql).map_err(|_| no_next(last_seq))?;
            // Taken under the write lock, so timestamps follow seq unless the clock steps
            // back.
            let ts_ms = unix_ms().ok_or_else(|| AuditError::Clock {
                path: self.path.clone(),
            })?;
            let hash = Hashed {
                seq,
                ts_ms,
                source: &entry.source,
                kind: &entry.kind,
                fields,
                prev_hash: &prev_hash,
            }
            .hash();
            tx.execute(
                &format!("INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                rusqlite::params![
                    seq_sql,
                    ts_ms,
                    entry.source,
                    entry.kind,
                    fields,
                    prev_hash,
                    hash
                ],
            )
            .map_err(&err)?;
            last_seq = seq_sql;
            prev_hash.clone_from(&hash);
            appended.push(Appended { seq, ts_ms, hash });
        }
        tx.commit().map_err(&err)?;
        Ok(appended)
    }

    /// Walks the whole chain from seq 1 and reports the first row that is wrong.
    ///
    /// Reads one row at a time, in one read transaction (a consistent snapshot while other
    /// handles keep appending); its time grows with the length of the log.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let err = sqlite_error(&self.path);
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        let mut good: u64 = 0;
        let mut expected_prev = GENESIS_HASH.to_string();
        while let Some(row) = rows.next().map_err(&err)? {
            let raw = RawRow::read(row).map_err(&err)?;
            let seq = raw.seq(&self.path)?;
            let expected_seq = good + 1;
            let problem = if seq != expected_seq {
                Some(Problem::Gap {
                    expected: expected_seq,
                })
            } else if raw.prev_hash != expected_prev {
                Some(Problem::PrevHash {
                    stored: raw.prev_hash.clone(),
                    expected: expected_prev.clone(),
                })
            } else {
                let computed = raw.hashed(seq).hash();
                if computed != raw.hash {
                    Some(Problem::Hash {
                        stored: raw.hash.clone(),
                        computed,
                    })
                } else {
                    match canonical::is_canonical(&raw.fields) {
                        Ok(true) => None,
                        Ok(false) => Some(Problem::Fields {
                            reason: "not in canonical form".to_string(),
                        }),
                        Err(e) => Some(Problem::Fields {
                            reason: e.to_string(),
                        }),
                    }
                }
            };
            if let Some(problem) = problem {
                return Ok(VerifyReport::Broken { seq, problem, good });
            }
            good += 1;
            expected_prev = raw.hash;
        }
        Ok(VerifyReport::Intact { entries: good })
    }

    /// The last `limit` entries, oldest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Record>, AuditError> {
        self.select(
            &format!(
                "SELECT {COLUMNS} FROM \
                 (SELECT {COLUMNS} FROM audit ORDER BY seq DESC LIMIT ?1) ORDER BY seq"
            ),
            rusqlite::params![sql_limit(limit)],
        )
    }

    /// At most `limit` entries from `seq` on (inclusive), oldest first.
    pub fn since(&self, seq: u64, limit: usize) -> Result<Vec<Record>, AuditError> {
        // Past i64::MAX there are no rows; clamping keeps the query meaningful.
        let from = i64::try_from(seq).unwrap_or(i64::MAX);
        self.select(
            &format!("SELECT {COLUMNS} FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2"),
            rusqlite::params![from, sql_limit(limit)],
        )
    }

    fn select(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Record>, AuditError> {
        let err = sqlite_error(&self.path);
        let mut stmt = self.conn.prepare(sql).map_err(&err)?;
        let mut rows = stmt.query(params).map_err(&err)?;
        let mut records = Vec::new();
        while let Some(row) = rows.next().map_err(&err)? {
            let raw = RawRow::read(row).map_err(&err)?;
            records.push(raw.into_record(&self.path)?);
        }
        Ok(records)
    }

    fn empty(&self, what: &'static str) -> AuditError {
        AuditError::EmptyEntry {
            path: self.path.clone(),
            what,
        }
    }
}

/// A row as stored, before its fields are parsed.
struct RawRow {
    seq: i64,
    ts_ms: i64,
    source: String,
    kind: String,
    fields: String,
    prev_hash: String,
    hash: String,
}

impl RawRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            seq: row.get(0)?,
            ts_ms: row.get(1)?,
            source: row.get(2)?,
            kind: row.get(3)?,
            fields: row.get(4)?,
            prev_hash: row.get(5)?,
            hash: row.get(6)?,
        })
    }

    fn seq(&self, path: &Path) -> Result<u64, AuditError> {
        u64::try_from(self.seq).map_err(|_| self.corrupt(path, "negative seq".to_string()))
    }

    fn hashed(&self, seq: u64) -> Hashed<'_> {
        Hashed {
            seq,
            ts_ms: self.ts_ms,
            source: &self.source,
            kind: &self.kind,
            fields: &self.fields,
            prev_hash: &self.prev_hash,
        }
    }

    fn into_record(self, path: &Path) -> Result<Record, AuditError> {
        let seq = self.seq(path)?;
        // serde_json's messages give a line and column, never the text around them.
        let fields = serde_json::from_str(&self.fields)
            .map_err(|e| self.corrupt(path, format!("fields: {e}")))?;
        Ok(Record {
            seq,
            ts_ms: self.ts_ms,
            source: self.source,
            kind: self.kind,
            fields,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }

    fn corrupt(&self, path: &Path, reason: String) -> AuditError {
        AuditError::CorruptRow {
            path: path.to_path_buf(),
            seq: self.seq,
            reason,
        }
    }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |source| {
        if source.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
            AuditError::NotADatabase {
                path: path.to_path_buf(),
            }
        } else {
            AuditError::Sqlite {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// SQLite's LIMIT is an i64; a larger `usize` means "no limit" anyway.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn unix_ms() -> Option<i64> {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}
