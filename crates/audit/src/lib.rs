//! An append-only, hash-chained audit trail in SQLite: warden writes its policy verdicts
//! here, sandboxd its executions.
//!
//! [`AuditLog::open`] opens (or creates) one database file; [`AuditLog::append`] adds an
//! [`Entry`] at the end of the chain; [`AuditLog::verify`] walks the whole chain;
//! [`AuditLog::recent`] and [`AuditLog::since`] read entries back.
//!
//! # Storage
//!
//! One `STRICT` table, `audit`, one row per entry: `seq` (1, 2, 3, … without gaps), `ts_ms`
//! (unix milliseconds, taken inside the appending transaction), `source`, `kind`, `fields`
//! (the entry's fields as canonical JSON, see below), `prev_hash` and `hash` (lower-case hex
//! SHA-256). The first row's `prev_hash` is 64 zeros ([`GENESIS_HASH`]); every later row's
//! `prev_hash` is the previous row's `hash`. The schema version is `PRAGMA user_version`
//! ([`SCHEMA_VERSION`]).
//!
//! # Hash encoding
//!
//! `hash` is the SHA-256 of these bytes, in this order, written as 64 lower-case hex digits:
//!
//! | what | bytes |
//! |---|---|
//! | domain tag | `u64be(15)` then the 15 ASCII bytes `stakpak-audit/1` |
//! | `seq` | `u64be(seq)` |
//! | `ts_ms` | `i64be(ts_ms)` (two's complement) |
//! | `source` | `u64be(len)` then its UTF-8 bytes |
//! | `kind` | `u64be(len)` then its UTF-8 bytes |
//! | `fields` | `u64be(len)` then the UTF-8 bytes of the stored JSON text |
//! | `prev_hash` | `u64be(64)` then the 64 ASCII hex digits as stored |
//!
//! `u64be`/`i64be` are 8-byte big-endian integers and `len` is a length in bytes. The
//! integers have a fixed width and every string carries its length, so no two different rows
//! encode to the same bytes. The hash covers the stored `fields` text, so a verifier needs
//! only the row, never a JSON serializer.
//!
//! `fields` is a JSON object written without whitespace, with the keys of every object
//! (nested ones too) sorted by their UTF-8 bytes, strings escaped as `serde_json` does, and
//! numbers as `serde_json` prints them; so the same [`Entry`] always gives the same text and
//! the same hash. This is not RFC 8785 (JCS), which orders keys by UTF-16 code units.
//!
//! # What protects what
//!
//! Triggers make SQLite refuse `UPDATE` and `DELETE` of `audit` rows, and any `INSERT` that is
//! not the next `seq` chained to the last `hash`. They guard against mistakes (a stray
//! statement, a tool run on the wrong file); anyone who can write the file can drop them.
//! The hash chain is what detects such tampering afterwards: [`AuditLog::verify`] finds an
//! edited, removed or reordered row. It cannot detect a chain recomputed from the edit
//! onwards, or rows cut off the end, unless the caller keeps the latest `(seq, hash)`
//! somewhere the writer of the file cannot reach.
//!
//! This crate logs nothing; what an entry's fields hold is its callers' business, and they
//! must not put secret values there.

mod canonical;
mod chain;
mod log;
mod recorder;

pub use chain::GENESIS_HASH;
pub use log::{
    Appended, AuditError, AuditLog, Entry, Problem, Record, SCHEMA_VERSION, VerifyReport,
};
pub use recorder::{Recorder, RecorderError};
