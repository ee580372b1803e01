//! Wire types of `dev.stakpak.Sandbox1.Exec`.

use serde::{Deserialize, Serialize};
use zbus::Type;

/// One shell command to run in a session's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ExecRequest {
    /// Session id, `[A-Za-z0-9_-]{1,64}`; names the workspace.
    pub session: String,
    /// The shell command line, as the agent wrote it (placeholders included).
    pub command: String,
    /// Working directory relative to the session workspace; empty: the workspace itself.
    pub workdir: String,
    /// Milliseconds before the command and every descendant are killed; 0: the default.
    pub timeout_ms: u64,
    /// `none` (default when empty) or `host`.
    pub network: String,
}

/// How an [`ExecRequest`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ExecReply {
    /// `exited`, `signaled`, `timed-out` or `denied`.
    pub status: String,
    /// Exit code for `exited`, signal number for `signaled`, else 0.
    pub code: i32,
    /// Redacted stdout.
    pub stdout: String,
    /// Redacted stderr.
    pub stderr: String,
    /// Whether the output went past the cap.
    pub truncated: bool,
    /// The warden's decision (`allow`, `ask`, `deny`), or `deny` when sandboxd refused.
    pub decision: String,
    /// The deciding rule id, when there is one.
    pub rule: String,
    pub reason: String,
}

/// The values of [`ExecReply::status`].
pub mod exec_status {
    pub const EXITED: &str = "exited";
    pub const SIGNALED: &str = "signaled";
    pub const TIMED_OUT: &str = "timed-out";
    pub const DENIED: &str = "denied";
}
