//! Wire types of `dev.stakpak.Agent1`: sessions, their messages and tool calls, approvals.

use serde::{Deserialize, Serialize};
use zbus::Type;

/// `Start`: a new session, or more of an existing one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct StartRequest {
    /// The user's prompt; redacted by secretd (`Register`) before the model sees it. May be
    /// empty when resuming.
    pub prompt: String,
    /// An existing session to continue; empty: a new one.
    pub session: String,
    /// Id for a new session, chosen by the caller so it can listen before the start;
    /// `[A-Za-z0-9_-]{1,64}`, empty: the agent picks one.
    pub new_id: String,
    /// A checkpoint to resume from (a new session continues from it); empty: none.
    pub checkpoint: String,
    /// Profile of `config.toml`; empty: `default`.
    pub profile: String,
    /// `<provider-key>/<model>` overriding the profile's; empty: the profile's.
    pub model: String,
    /// The caller's working directory (recorded; its `AGENTS.md`/`APPS.md` come in `context`).
    pub workdir: String,
    /// Project context the caller read for the model (`AGENTS.md`, `APPS.md`); redacted
    /// like the prompt.
    pub context: String,
    /// Most model turns for this run; 0: the profile's `max_turns`.
    pub max_steps: u32,
    /// Stop (state `paused`) instead of waiting when a tool call needs approval.
    pub pause_on_approval: bool,
    /// One model turn only (stakpak's `-p`).
    pub one_step: bool,
}

/// A session as listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SessionInfo {
    pub id: String,
    /// The first line of the first prompt, redacted.
    pub title: String,
    pub profile: String,
    pub model: String,
    /// `running`, `waiting-approval`, `paused`, `waiting-user`, `finished`, `max-turns`,
    /// `cancelled`, `failed` or `interrupted` (the agent stopped while it ran).
    pub state: String,
    /// Why it is in that state (an error, the question for the user), when there is one.
    pub reason: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub turns: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Tool calls waiting for approval.
    pub pending: u32,
    /// The newest checkpoint (one after every turn).
    pub checkpoint: String,
}

/// One tool call of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ToolCallInfo {
    pub id: String,
    pub session: String,
    pub turn: u32,
    pub name: String,
    /// The arguments as the model wrote them (it only ever sees placeholders).
    pub arguments: String,
    /// `waiting-approval`, `approved`, `rejected`, `running`, `done`, `failed` or `denied`.
    pub state: String,
    /// Why approval is asked (`profile` or the warden's rule), empty when auto-approved.
    pub approval: String,
    /// The warden's verdict on the action, when one was asked.
    pub decision: String,
    pub rule: String,
    pub reason: String,
    /// The redacted result given to the model.
    pub output: String,
    pub is_error: bool,
}

/// One message of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct MessageInfo {
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub text: String,
    /// For `tool`: the call it answers; for `assistant`: the calls it makes, comma-separated.
    pub tool_calls: String,
    pub created_ms: i64,
}

/// `ShowSession`: a session with its messages and tool calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SessionDetail {
    pub info: SessionInfo,
    pub messages: Vec<MessageInfo>,
    pub tool_calls: Vec<ToolCallInfo>,
}

/// The values of [`SessionInfo::state`].
pub mod session_state {
    pub const RUNNING: &str = "running";
    pub const WAITING_APPROVAL: &str = "waiting-approval";
    pub const PAUSED: &str = "paused";
    pub const WAITING_USER: &str = "waiting-user";
    pub const FINISHED: &str = "finished";
    pub const MAX_TURNS: &str = "max-turns";
    pub const CANCELLED: &str = "cancelled";
    pub const FAILED: &str = "failed";
    pub const INTERRUPTED: &str = "interrupted";

    /// States in which the session's loop is not running.
    pub fn is_stopped(state: &str) -> bool {
        !matches!(state, RUNNING | WAITING_APPROVAL)
    }
}

/// Object path of a session's signals.
pub fn session_path(id: &str) -> String {
    format!("/dev/stakpak/Agent1/sessions/{}", id.replace('-', "_"))
}
