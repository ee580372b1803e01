//! The audit log through its public API, on real database files, with a plain SQLite
//! connection playing the careless tool or the tamperer.

// Helpers outside #[test] functions panic on purpose too: a failed set-up fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use rusqlite::Connection;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stakpak_audit::{
    Appended, AuditLog, Entry, GENESIS_HASH, Problem, Record, SCHEMA_VERSION, VerifyReport,
};

/// The fixtures' fields, written as the canonical text the log must store for them.
const FIXTURES: [(&str, &str, &str); 3] = [
    (
        "warden",
        "verdict",
        r#"{"command":"ls -la /srv","decision":"allow","rule":"read-only"}"#,
    ),
    (
        "sandboxd",
        "exec",
        r#"{"argv":["ls","-la","/srv"],"exit":0,"limits":{"cpu_ms":500,"mem":"64M"}}"#,
    ),
    (
        "warden",
        "verdict",
        r#"{"command":"rm -rf /","decision":"deny","reason":"destructive","score":0.25}"#,
    ),
];

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    log: AuditLog,
    entries: Vec<Entry>,
    appended: Vec<Appended>,
}

/// A log holding the three fixture entries.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut log = AuditLog::open(&path).unwrap();
    let entries: Vec<Entry> = FIXTURES
        .iter()
        .map(|(source, kind, text)| entry(source, kind, serde_json::from_str(text).unwrap()))
        .collect();
    let appended = entries.iter().map(|e| log.append(e).unwrap()).collect();
    Fixture {
        _dir: dir,
        path,
        log,
        entries,
        appended,
    }
}

fn entry(source: &str, kind: &str, fields: Value) -> Entry {
    Entry {
        source: source.to_string(),
        kind: kind.to_string(),
        fields: serde_json::from_value(fields).unwrap(),
    }
}

/// The hash as the crate documentation describes it, written again from that description.
fn documented_hash(
    seq: u64,
    ts_ms: i64,
    source: &str,
    kind: &str,
    fields: &str,
    prev_hash: &str,
) -> String {
    fn put(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    put(&mut h, b"stakpak-audit/1");
    h.update(seq.to_be_bytes());
    h.update(ts_ms.to_be_bytes());
    for text in [source, kind, fields, prev_hash] {
        put(&mut h, text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The records the fixture must read back as, each hash computed independently.
fn expected_records(f: &Fixture) -> Vec<Record> {
    let mut prev = GENESIS_HASH.to_string();
    let mut records = Vec::new();
    for (i, (e, a)) in f.entries.iter().zip(&f.appended).enumerate() {
        let seq = i as u64 + 1;
        let hash = documented_hash(seq, a.ts_ms, &e.source, &e.kind, FIXTURES[i].2, &prev);
        records.push(Record {
            seq,
            ts_ms: a.ts_ms,
            source: e.source.clone(),
            kind: e.kind.clone(),
            fields: e.fields.clone(),
            prev_hash: prev,
            hash: hash.clone(),
        });
        prev = hash;
    }
    records
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn stored_fields(path: &Path) -> Vec<String> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare("SELECT fields FROM audit ORDER BY seq")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn appended_entries_read_back_whole() {
    let f = fixture();
    let expected = expected_records(&f);

    let appended: Vec<Appended> = expected
        .iter()
        .map(|r| Appended {
            seq: r.seq,
            ts_ms: r.ts_ms,
            hash: r.hash.clone(),
        })
        .collect();
    assert_eq!(f.appended, appended);
    assert_eq!(f.log.recent(10).unwrap(), expected);
    assert_eq!(
        stored_fields(&f.path),
        FIXTURES
            .iter()
            .map(|(_, _, t)| t.to_string())
            .collect::<Vec<_>>()
    );
}

#[test]
fn recent_and_since_pick_their_window_oldest_first() {
    let f = fixture();
    let all = expected_records(&f);

    assert_eq!(f.log.recent(2).unwrap(), all[1..].to_vec());
    assert_eq!(f.log.recent(0).unwrap(), Vec::<Record>::new());
    assert_eq!(f.log.since(2, 10).unwrap(), all[1..].to_vec());
    assert_eq!(f.log.since(1, 2).unwrap(), all[..2].to_vec());
    assert_eq!(f.log.since(0, usize::MAX).unwrap(), all);
    assert_eq!(f.log.since(4, 10).unwrap(), Vec::<Record>::new());
    assert_eq!(f.log.since(u64::MAX, 10).unwrap(), Vec::<Record>::new());
}

#[test]
fn an_empty_log_verifies_and_reads_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("audit.db")).unwrap();
    assert_eq!(log.verify().unwrap(), VerifyReport::Intact { entries: 0 });
    assert_eq!(log.recent(5).unwrap(), Vec::<Record>::new());
}

#[test]
fn an_untouched_chain_verifies() {
    let f = fixture();
    assert_eq!(f.log.verify().unwrap(), VerifyReport::Intact { entries: 3 });
}

#[test]
fn a_batch_chains_like_single_appends_and_a_bad_entry_keeps_all_of_it_out() {
    let mut f = fixture();
    let batch = vec![
        entry("warden", "request", json!({"verdict": "deny", "n": 1})),
        entry("warden", "request", json!({"verdict": "allow", "n": 2})),
    ];
    let appended = f.log.append_all(&batch).unwrap();
    assert_eq!(appended.iter().map(|a| a.seq).collect::<Vec<_>>(), [4, 5]);
    let prev = f.appended[2].hash.clone();
    let fourth = documented_hash(
        4,
        appended[0].ts_ms,
        "warden",
        "request",
        r#"{"n":1,"verdict":"deny"}"#,
        &prev,
    );
    assert_eq!(appended[0].hash, fourth);
    let fifth = documented_hash(
        5,
        appended[1].ts_ms,
        "warden",
        "request",
        r#"{"n":2,"verdict":"allow"}"#,
        &fourth,
    );
    assert_eq!(appended[1].hash, fifth);
    assert_eq!(f.log.verify().unwrap(), VerifyReport::Intact { entries: 5 });

    let bad = vec![
        entry("warden", "request", json!({"n": 3})),
        entry("", "request", json!({"n": 4})),
    ];
    assert!(f.log.append_all(&bad).is_err());
    assert_eq!(f.log.verify().unwrap(), VerifyReport::Intact { entries: 5 });
    assert_eq!(f.log.append_all(&[]).unwrap(), vec![]);
}

#[test]
fn reopening_continues_the_chain() {
    let mut f = fixture();
    drop(f.log);
    f.log = AuditLog::open(&f.path).unwrap();
    let fourth = entry("warden", "verdict", json!({"decision": "allow"}));
    let appended = f.log.append(&fourth).unwrap();

    let mut expected = expected_records(&f);
    let prev = expected[2].hash.clone();
    let hash = documented_hash(
        4,
        appended.ts_ms,
        "warden",
        "verdict",
        r#"{"decision":"allow"}"#,
        &prev,
    );
    assert_eq!(
        appended,
        Appended {
            seq: 4,
            ts_ms: appended.ts_ms,
            hash: hash.clone()
        }
    );
    expected.push(Record {
        seq: 4,
        ts_ms: appended.ts_ms,
        source: "warden".to_string(),
        kind: "verdict".to_string(),
        fields: fourth.fields,
        prev_hash: prev,
        hash,
    });
    assert_eq!(f.log.recent(10).unwrap(), expected);
    assert_eq!(f.log.verify().unwrap(), VerifyReport::Intact { entries: 4 });
}

#[test]
fn edited_fields_are_reported_at_their_seq() {
    let f = fixture();
    let tampered = r#"{"argv":["true"],"exit":0,"limits":{"cpu_ms":500,"mem":"64M"}}"#;
    raw(&f.path)
        .execute_batch(&format!(
            "DROP TRIGGER audit_no_update; UPDATE audit SET fields = '{tampered}' WHERE seq = 2;"
        ))
        .unwrap();

    let computed = documented_hash(
        2,
        f.appended[1].ts_ms,
        "sandboxd",
        "exec",
        tampered,
        &f.appended[0].hash,
    );
    assert_eq!(
        f.log.verify().unwrap(),
        VerifyReport::Broken {
            seq: 2,
            problem: Problem::Hash {
                stored: f.appended[1].hash.clone(),
                computed,
            },
            good: 1,
        }
    );
}

#[test]
fn an_edit_with_its_hash_recomputed_breaks_the_next_link() {
    let f = fixture();
    let tampered = r#"{"command":"ls -la /srv","decision":"deny","rule":"read-only"}"#;
    let forged = documented_hash(
        1,
        f.appended[0].ts_ms,
        "warden",
        "verdict",
        tampered,
        GENESIS_HASH,
    );
    raw(&f.path)
        .execute_batch(&format!(
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET fields = '{tampered}', hash = '{forged}' WHERE seq = 1;"
        ))
        .unwrap();

    assert_eq!(
        f.log.verify().unwrap(),
        VerifyReport::Broken {
            seq: 2,
            problem: Problem::PrevHash {
                stored: f.appended[0].hash.clone(),
                expected: forged,
            },
            good: 1,
        }
    );
}

#[test]
fn a_deleted_middle_row_is_reported_as_a_gap() {
    let f = fixture();
    raw(&f.path)
        .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 2;")
        .unwrap();

    assert_eq!(
        f.log.verify().unwrap(),
        VerifyReport::Broken {
            seq: 3,
            problem: Problem::Gap { expected: 2 },
            good: 1,
        }
    );
}

#[test]
fn a_deleted_first_row_is_reported_as_a_gap() {
    let f = fixture();
    raw(&f.path)
        .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 1;")
        .unwrap();

    assert_eq!(
        f.log.verify().unwrap(),
        VerifyReport::Broken {
            seq: 2,
            problem: Problem::Gap { expected: 1 },
            good: 0,
        }
    );
}

#[test]
fn correctly_hashed_but_non_canonical_fields_are_reported() {
    let f = fixture();
    let reordered =
        r#"{"reason":"destructive","command":"rm -rf /","decision":"deny","score":0.25}"#;
    let hash = documented_hash(
        3,
        f.appended[2].ts_ms,
        "warden",
        "verdict",
        reordered,
        &f.appended[1].hash,
    );
    raw(&f.path)
        .execute_batch(&format!(
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET fields = '{reordered}', hash = '{hash}' WHERE seq = 3;"
        ))
        .unwrap();

    assert_eq!(
        f.log.verify().unwrap(),
        VerifyReport::Broken {
            seq: 3,
            problem: Problem::Fields {
                reason: "not in canonical form".to_string()
            },
            good: 2,
        }
    );
}

#[test]
fn triggers_refuse_update_delete_and_out_of_order_inserts() {
    let f = fixture();
    let before = f.log.recent(10).unwrap();
    let conn = raw(&f.path);
    let last = &f.appended[2].hash;
    let zeros = GENESIS_HASH;

    let statements = [
        "UPDATE audit SET fields = '{}' WHERE seq = 2".to_string(),
        "UPDATE audit SET ts_ms = ts_ms + 1".to_string(),
        "DELETE FROM audit WHERE seq = 3".to_string(),
        "DELETE FROM audit".to_string(),
        format!(
            "INSERT OR REPLACE INTO audit VALUES (1, 0, 'x', 'y', '{{}}', '{zeros}', '{zeros}')"
        ),
        format!("INSERT INTO audit VALUES (5, 0, 'x', 'y', '{{}}', '{last}', '{zeros}')"),
        format!("INSERT INTO audit VALUES (4, 0, 'x', 'y', '{{}}', '{zeros}', '{zeros}')"),
    ];
    let outcomes: Vec<String> = statements
        .iter()
        .map(|sql| conn.execute(sql, []).unwrap_err().to_string())
        .collect();

    let append_only = "audit rows are append-only".to_string();
    let in_sequence = "audit rows are appended in sequence, chained to the last hash".to_string();
    assert_eq!(
        outcomes,
        vec![
            append_only.clone(),
            append_only.clone(),
            append_only.clone(),
            append_only,
            in_sequence.clone(),
            in_sequence.clone(),
            in_sequence,
        ]
    );
    assert_eq!(f.log.recent(10).unwrap(), before);
    assert_eq!(f.log.verify().unwrap(), VerifyReport::Intact { entries: 3 });
}

#[test]
fn two_handles_appending_alternately_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut warden = AuditLog::open(&path).unwrap();
    let mut sandboxd = AuditLog::open(&path).unwrap();

    for i in 0..6 {
        let (log, source) = if i % 2 == 0 {
            (&mut warden, "warden")
        } else {
            (&mut sandboxd, "sandboxd")
        };
        log.append(&entry(source, "event", json!({ "i": i })))
            .unwrap();
    }

    assert_eq!(
        warden.verify().unwrap(),
        VerifyReport::Intact { entries: 6 }
    );
    assert_eq!(
        sandboxd.verify().unwrap(),
        VerifyReport::Intact { entries: 6 }
    );
    let order: Vec<(u64, String, Value)> = sandboxd
        .recent(10)
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.source, r.fields["i"].clone()))
        .collect();
    let expected: Vec<(u64, String, Value)> = (0..6)
        .map(|i| {
            let source = if i % 2 == 0 { "warden" } else { "sandboxd" };
            (i + 1, source.to_string(), json!(i))
        })
        .collect();
    assert_eq!(order, expected);
}

#[test]
fn two_threads_appending_at_once_keep_one_chain() {
    const PER_THREAD: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    // Created before the threads, so they race on appends rather than on the schema.
    drop(AuditLog::open(&path).unwrap());
    let start = Arc::new(Barrier::new(2));

    let threads: Vec<_> = ["t0", "t1"]
        .into_iter()
        .map(|source| {
            let path = path.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut log = AuditLog::open(&path).unwrap();
                start.wait();
                for i in 0..PER_THREAD {
                    log.append(&entry(source, "event", json!({ "i": i })))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(
        log.verify().unwrap(),
        VerifyReport::Intact {
            entries: 2 * PER_THREAD
        }
    );
    let records = log.recent(usize::MAX).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=2 * PER_THREAD).collect::<Vec<_>>());
    let mut per_source: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        per_source
            .entry(r.source)
            .or_default()
            .push(r.fields["i"].clone());
    }
    let in_order: Vec<Value> = (0..PER_THREAD).map(|i| json!(i)).collect();
    assert_eq!(
        per_source,
        BTreeMap::from([
            ("t0".to_string(), in_order.clone()),
            ("t1".to_string(), in_order),
        ])
    );
}

/// Set for a copy of this test binary started by the test below: the database to append to
/// and the source to append as.
const CHILD_DB: &str = "STAKPAK_AUDIT_TEST_CHILD_DB";
const CHILD_SOURCE: &str = "STAKPAK_AUDIT_TEST_CHILD_SOURCE";

/// Not a test of its own: the body of a child process of the test below, doing nothing when
/// this binary runs as a whole.
#[test]
fn child_appender() {
    let (Some(db), Some(source)) = (std::env::var_os(CHILD_DB), std::env::var(CHILD_SOURCE).ok())
    else {
        return;
    };
    let mut log = AuditLog::open(Path::new(&db)).unwrap();
    for i in 0..PER_PROCESS {
        log.append(&entry(&source, "event", json!({ "i": i })))
            .unwrap();
    }
}

const PER_PROCESS: u64 = 40;

#[test]
fn two_processes_appending_at_once_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let exe = std::env::current_exe().unwrap();

    // Both children open the new file at once, so they race on creating the schema too.
    let children: Vec<_> = ["p0", "p1"]
        .into_iter()
        .map(|source| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_appender", "--test-threads=1"])
                .env(CHILD_DB, &path)
                .env(CHILD_SOURCE, source)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<std::process::Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "a child appender failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(
        log.verify().unwrap(),
        VerifyReport::Intact {
            entries: 2 * PER_PROCESS
        }
    );
    let mut per_source: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in log.recent(usize::MAX).unwrap() {
        per_source
            .entry(r.source)
            .or_default()
            .push(r.fields["i"].clone());
    }
    let in_order: Vec<Value> = (0..PER_PROCESS).map(|i| json!(i)).collect();
    assert_eq!(
        per_source,
        BTreeMap::from([
            ("p0".to_string(), in_order.clone()),
            ("p1".to_string(), in_order),
        ])
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let garbage = "this is a configuration file, not a database\n".repeat(100);
    std::fs::write(&path, &garbage).unwrap();

    let err = AuditLog::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("audit database {}: not an SQLite database", path.display())
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), garbage);
}

#[test]
fn a_missing_folder_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("audit.db");

    let err = AuditLog::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "audit database {}: cannot create: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let f = fixture();
    drop(f.log);
    raw(&f.path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();

    let err = AuditLog::open(&f.path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "audit database {}: schema version 2 is newer than this build knows (1)",
            f.path.display()
        )
    );
}

#[test]
fn an_unreadable_last_row_fails_open() {
    let f = fixture();
    drop(f.log);
    raw(&f.path)
        .execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET fields = 'oops' WHERE seq = 3;",
        )
        .unwrap();

    let err = AuditLog::open(&f.path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "audit database {}: seq 3 is unreadable: fields: expected value at line 1 column 1",
            f.path.display()
        )
    );
}

#[test]
fn an_entry_without_source_or_kind_is_refused() {
    let mut f = fixture();
    let no_source = f.log.append(&entry("", "verdict", json!({}))).unwrap_err();
    let no_kind = f.log.append(&entry("warden", "", json!({}))).unwrap_err();

    let path = f.path.display();
    assert_eq!(
        [no_source.to_string(), no_kind.to_string()],
        [
            format!("audit database {path}: entry has an empty source"),
            format!("audit database {path}: entry has an empty kind"),
        ]
    );
    assert_eq!(f.log.verify().unwrap(), VerifyReport::Intact { entries: 3 });
}

#[test]
fn a_new_database_is_private_to_its_owner() {
    let f = fixture();
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn problems_read_as_sentences() {
    let cases = [
        (Problem::Gap { expected: 7 }, "seq 7 is missing"),
        (
            Problem::PrevHash {
                stored: "aa".to_string(),
                expected: "bb".to_string(),
            },
            "prev_hash is aa, expected bb",
        ),
        (
            Problem::Hash {
                stored: "aa".to_string(),
                computed: "bb".to_string(),
            },
            "hash is aa, the row hashes to bb",
        ),
        (
            Problem::Fields {
                reason: "not in canonical form".to_string(),
            },
            "fields are not canonical JSON: not in canonical form",
        ),
    ];
    let got: Vec<(Problem, String)> = cases
        .iter()
        .map(|(p, _)| (p.clone(), p.to_string()))
        .collect();
    let want: Vec<(Problem, String)> = cases.into_iter().map(|(p, s)| (p, s.to_string())).collect();
    assert_eq!(got, want);
}
