//! Wire types of `dev.stakpak.Warden1.Check`.

use serde::{Deserialize, Serialize};
use zbus::Type;

/// What the warden is asked to judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CheckRequest {
    /// `command` (a shell command line), `write` or `delete` (a file path).
    pub kind: String,
    /// The command line or the path.
    pub subject: String,
    /// Session the action belongs to (empty when none); recorded in the audit trail.
    pub session: String,
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CheckMatch {
    pub rule: String,
    pub pack: String,
    pub decision: String,
    pub reason: String,
    pub action: String,
}

/// The warden's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct CheckReply {
    /// `allow`, `ask` or `deny`.
    pub decision: String,
    /// The deciding rule; empty when no rule matched and the default applied.
    pub rule: String,
    pub reason: String,
    /// The normalised action the decision is about.
    pub action: String,
    /// Every rule that matched, strictest first.
    pub matches: Vec<CheckMatch>,
}

/// The kinds `CheckRequest.kind` accepts.
pub const CHECK_KINDS: [&str; 3] = ["command", "write", "delete"];
