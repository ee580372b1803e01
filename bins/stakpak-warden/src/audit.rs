//! Recording verdicts in the append-only, hash-chained audit trail.
//!
//! SQLite writes wait for the disk; a verdict must not. A thread of its own appends the
//! entries the D-Bus handler sends it, in order.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::mpsc::{Sender, channel},
};

use serde_json::Value;
use stakpak_audit::{AuditLog, Entry};
use tracing::{error, info};

/// Hands entries to the writer thread.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: Sender<Entry>,
}

impl Recorder {
    /// Opens the database now (so a broken one stops the start) and starts the writer.
    pub fn start(path: &Path) -> Result<Recorder, Box<dyn std::error::Error + Send + Sync>> {
        let mut log = AuditLog::open(path)?;
        let (tx, rx) = channel::<Entry>();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                for entry in rx {
                    match log.append(&entry) {
                        // The chain head goes to the journal too: a copy outside the database
                        // is what shows a rewrite of the whole chain from some row on.
                        Ok(head) => info!(audit_seq = head.seq, audit_hash = %head.hash, "audit trail appended"),
                        Err(e) => error!(error = %e, "cannot append to the audit trail"),
                    }
                }
            })
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(Recorder { tx })
    }

    pub fn record(&self, kind: &str, fields: BTreeMap<String, Value>) {
        let entry = Entry {
            source: "warden".into(),
            kind: kind.into(),
            fields,
        };
        if self.tx.send(entry).is_err() {
            error!("the audit writer has stopped; an entry was not recorded");
        }
    }
}
