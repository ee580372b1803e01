//! Wire types of `dev.stakpak.Sandbox1`: commands, background tasks, files and changesets.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zbus::Type;

use crate::Decision;
use crate::wire::{Opt, wire_enum};

wire_enum! {
    /// How a sandboxed command reaches the network.
    /// `None`: loopback only; `Host`: the host's network (Docker's host network; never for the
    /// local backend's default); `Proxied`: only the warden's egress proxy; `Bridge`: docker's
    /// default bridge (the Docker backend only, when its containers have it).
    pub enum NetworkMode ("network mode") {
        None = "none", Host = "host", Proxied = "proxied", Bridge = "bridge",
    }
}

wire_enum! {
    /// Where a sandboxed command runs.
    /// `Local`: a process of sandboxd's, confined by namespaces, Landlock and seccomp;
    /// `Docker`: a container of the Docker engine.
    pub enum Backend ("backend") {
        Local = "local", Docker = "docker",
    }
}

wire_enum! {
    /// How a command ended ([`ExecReply::status`]), or where a task is ([`TaskInfo::state`]).
    /// `Running`: a task still running; `Failed`: sandboxd could not run it (sandbox set-up
    /// failed); `reason` says why.
    #[derive(Default)]
    pub enum ExecStatus ("exec status") {
        Exited = "exited", Signaled = "signaled", TimedOut = "timed-out",
        Cancelled = "cancelled", Denied = "denied", Running = "running",
        #[default] Failed = "failed",
    }
}

wire_enum! {
    /// What `View` looked at ([`ViewReply::kind`]).
    #[derive(Default)]
    pub enum ViewKind ("view kind") {
        #[default] File = "file", Dir = "dir", Grep = "grep",
    }
}

wire_enum! {
    /// What a recorded file change did ([`ChangeInfo::kind`]).
    #[derive(Default)]
    pub enum ChangeKind ("change kind") {
        #[default] Create = "create", Edit = "edit", Remove = "remove",
    }
}

/// One shell command to run in a session's workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ExecRequest {
    /// Session id, `[A-Za-z0-9_-]{1,64}`; names the workspace.
    pub session: String,
    /// The shell command line, as the agent wrote it (placeholders included).
    pub command: String,
    /// Working directory relative to the session workspace; empty: the workspace itself.
    pub workdir: String,
    /// Milliseconds before the command and every descendant are killed; 0: the default.
    pub timeout_ms: u64,
    /// Empty: sandboxd's default for the backend.
    pub network: Opt<NetworkMode>,
    /// Empty: the configured default.
    pub backend: Opt<Backend>,
    /// Variables added to the child's environment. Every name must be in sandboxd's
    /// `exec.env_allow`; values may hold placeholders, resolved like the command's.
    pub env: HashMap<String, String>,
}

/// How an [`ExecRequest`] ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ExecReply {
    pub status: ExecStatus,
    /// Exit code for `exited`, signal number for `signaled`, else 0.
    pub code: i32,
    /// Redacted stdout, up to the output cap.
    pub stdout: String,
    /// Redacted stderr, up to the output cap.
    pub stderr: String,
    /// Whether the output went past the cap; the whole of it is then in `artifact`.
    pub truncated: bool,
    /// The warden's decision, or `deny` when sandboxd refused; none when the warden was
    /// never asked.
    pub decision: Opt<Decision>,
    /// The deciding rule id, when there is one.
    pub rule: String,
    pub reason: String,
    /// Id of this execution in the audit trail and in artifact names.
    pub exec_id: String,
    pub duration_ms: u64,
    /// Workspace-relative path of the whole redacted output (stdout then stderr) when it
    /// went past the cap, for `View`; empty otherwise.
    pub artifact: String,
}

/// A background task (`run_command_task`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TaskInfo {
    pub id: String,
    pub session: String,
    /// The command as sent: placeholders, never values.
    pub command: String,
    pub state: ExecStatus,
    /// Exit code or signal number once ended.
    pub code: i32,
    /// Unix milliseconds.
    pub started_ms: i64,
    /// Unix milliseconds; 0 while running.
    pub ended_ms: i64,
    pub decision: Opt<Decision>,
    pub rule: String,
    pub reason: String,
    /// Redacted output bytes so far, stdout and stderr together.
    pub output_bytes: u64,
}

/// [`TaskInfo`] with the tail of the task's redacted output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TaskDetails {
    pub info: TaskInfo,
    /// The last bytes of the redacted output (stdout and stderr interleaved as they came).
    pub tail: String,
    /// Workspace-relative path of the whole redacted output, for `View`.
    pub output_path: String,
}

/// `View`: a file (line range, size cap), a directory tree (depth) or a grep over a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ViewRequest {
    pub session: String,
    /// Relative to the workspace (an absolute path must lie inside it); empty: the workspace.
    pub path: String,
    /// First line, 1-based; 0: from the start.
    pub start_line: u32,
    /// Last line, inclusive; 0: to the end.
    pub end_line: u32,
    /// Bytes returned at most; 0: the configured cap.
    pub max_bytes: u64,
    /// Directory depth; 0: the default.
    pub depth: u32,
    /// A regular expression: grep mode over the file or tree; empty: no grep.
    pub grep: String,
}

/// What `View` found, redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ViewReply {
    pub kind: ViewKind,
    pub content: String,
    /// Whether the size cap or depth cut anything.
    pub truncated: bool,
    /// Lines of the file (`file`) or matches (`grep`); entries for `dir`.
    pub total: u64,
}

/// One recorded file change of a session's changeset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ChangeInfo {
    pub id: String,
    pub session: String,
    pub kind: ChangeKind,
    /// Workspace-relative path.
    pub path: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds of the revert; 0 when not reverted.
    pub reverted_ms: i64,
    /// A short human description (e.g. "replaced 1 match, +3 -1 lines").
    pub summary: String,
}
