//! Appending from a daemon without waiting for the disk.
//!
//! SQLite writes wait for fsync; a verdict or an execution reply must not. A thread of its
//! own appends the entries a [`Recorder`] sends it, in order (what queued up during a sync
//! goes in together, in one transaction), and logs each new chain head.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::mpsc::{Sender, channel},
};

use serde_json::Value;

use crate::{AuditError, AuditLog, Entry};

/// Most entries written in one transaction.
const MAX_BATCH: usize = 512;

/// Hands entries to the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    source: &'static str,
    tx: Sender<Entry>,
}

/// Why [`Recorder::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(transparent)]
    Open(#[from] AuditError),
    #[error("cannot start the audit writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl Recorder {
    /// Opens the database now (so a broken one stops the daemon's start) and starts the
    /// writer; every entry is recorded with `source` (`warden`, `sandboxd`).
    pub fn start(path: &Path, source: &'static str) -> Result<Recorder, RecorderError> {
        let mut log = AuditLog::open(path)?;
        let (tx, rx) = channel::<Entry>();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                // Whatever queued up while the last batch was synced goes in the next one:
                // one transaction and one fsync for a burst instead of one per entry.
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(entry) => batch.push(entry),
                            Err(_) => break,
                        }
                    }
                    match log.append_all(&batch) {
                        // The chain head goes to the journal too: a copy outside the database
                        // is what shows a rewrite of the whole chain from some row on.
                        Ok(heads) => {
                            if let Some(head) = heads.last() {
                                tracing::info!(
                                    audit_seq = head.seq,
                                    audit_hash = %head.hash,
                                    entries = heads.len(),
                                    "audit trail appended"
                                );
                            }
                        }
                        // One bad entry must not take the others with it: one at a time.
                        Err(_) if batch.len() > 1 => {
                            for entry in &batch {
                                if let Err(e) = log.append(entry) {
                                    tracing::error!(error = %e, "cannot append to the audit trail");
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot append to the audit trail"),
                    }
                }
            })
            .map_err(RecorderError::Thread)?;
        Ok(Recorder { source, tx })
    }

    /// Queues one entry of `kind`.
    pub fn record(&self, kind: &str, fields: BTreeMap<String, Value>) {
        let entry = Entry {
            source: self.source.into(),
            kind: kind.into(),
            fields,
        };
        if self.tx.send(entry).is_err() {
            tracing::error!("the audit writer has stopped; an entry was not recorded");
        }
    }
}
