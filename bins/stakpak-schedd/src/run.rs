//! One run of a schedule as schedd keeps it: what started it, what the check said and how it
//! ended. The store keeps it in `runs`; the D-Bus side shows it as `RunInfo`.

use stakpak_proto::{ExecStatus, RunOutcome, RunTrigger};

/// A run, in progress or ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub schedule: String,
    pub trigger: RunTrigger,
    /// Unix milliseconds of the due time it answers (0 for manual runs).
    pub due_ms: i64,
    pub started_ms: i64,
    /// 0 while running.
    pub ended_ms: i64,
    /// sandboxd's status of the check; `None`: no check ran.
    pub check_status: Option<ExecStatus>,
    pub check_code: i32,
    /// The warden's rule when the check was refused.
    pub check_rule: String,
    /// The agent session; empty when the agent did not wake.
    pub session: String,
    pub outcome: RunOutcome,
    /// Why, in words, when there is more to say than the outcome.
    pub reason: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}
