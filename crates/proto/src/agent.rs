//! Wire types of `dev.stakpak.Agent1`: sessions, their messages and tool calls, approvals.

use serde::{Deserialize, Serialize};
use zbus::Type;

use crate::Decision;
use crate::wire::{Opt, wire_enum};

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
    pub state: SessionState,
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
    pub state: ToolCallState,
    /// Why approval is asked (`profile` or the warden's rule), empty when auto-approved.
    pub approval: String,
    /// The warden's verdict on the action, when one was asked.
    pub decision: Opt<Decision>,
    pub rule: String,
    pub reason: String,
    /// The redacted result given to the model.
    pub output: String,
    pub is_error: bool,
}

/// One message of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct MessageInfo {
    pub role: Role,
    pub text: String,
    /// For `tool`: the call it answers; for `assistant`: the calls it makes.
    pub tool_calls: Vec<String>,
    pub created_ms: i64,
}

/// `ShowSession`: a session with its messages and tool calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SessionDetail {
    pub info: SessionInfo,
    pub messages: Vec<MessageInfo>,
    pub tool_calls: Vec<ToolCallInfo>,
}

wire_enum! {
    /// Where a session is ([`SessionInfo::state`]).
    /// `Interrupted`: the agent stopped while the session ran.
    #[derive(Default)]
    pub enum SessionState ("session state") {
        #[default] Running = "running", WaitingApproval = "waiting-approval", Paused = "paused",
        WaitingUser = "waiting-user", Finished = "finished", MaxTurns = "max-turns",
        Cancelled = "cancelled", Failed = "failed", Interrupted = "interrupted",
    }
}

impl SessionState {
    /// Whether the session's loop is not running.
    pub fn is_stopped(self) -> bool {
        !matches!(self, SessionState::Running | SessionState::WaitingApproval)
    }
}

wire_enum! {
    /// Where a tool call is ([`ToolCallInfo::state`]).
    /// `Proposed`: the model asked for it; not judged yet.
    #[derive(Default)]
    pub enum ToolCallState ("tool call state") {
        Proposed = "proposed", #[default] WaitingApproval = "waiting-approval",
        Approved = "approved", Rejected = "rejected", Running = "running", Done = "done",
        Failed = "failed", Denied = "denied",
    }
}

wire_enum! {
    /// Who wrote a message ([`MessageInfo::role`]).
    #[derive(Default)]
    pub enum Role ("role") {
        #[default] User = "user", Assistant = "assistant", Tool = "tool",
    }
}

/// Object path of a session's signals.
///
/// Session ids are `[A-Za-z0-9_-]`; an object path element allows only `[A-Za-z0-9_]`, so
/// every other byte and `_` itself are written as `_` and two hex digits (systemd's
/// `sd_bus_path_encode`): `a-b` and `a_b` get different paths.
pub fn session_path(id: &str) -> String {
    let mut path = String::from("/dev/stakpak/Agent1/sessions/");
    if id.is_empty() {
        path.push('_');
    }
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_are_unambiguous() {
        let cases = [
            ("abc", "/dev/stakpak/Agent1/sessions/abc"),
            ("a-b", "/dev/stakpak/Agent1/sessions/a_2db"),
            ("a_b", "/dev/stakpak/Agent1/sessions/a_5fb"),
            ("", "/dev/stakpak/Agent1/sessions/_"),
        ];
        for (id, path) in cases {
            assert_eq!(session_path(id), path, "{id}");
            assert!(zbus::ObjectPath::try_from(session_path(id)).is_ok());
        }
    }

    #[test]
    fn states_travel_as_their_names() {
        for s in SessionState::ALL {
            assert_eq!(s.as_str().parse::<SessionState>(), Ok(*s));
        }
        assert!(SessionState::Paused.is_stopped());
        // Widths apply as they did to the strings the states used to be.
        assert_eq!(format!("{:<9}|", SessionState::Paused), "paused   |");
        assert_eq!(format!("{:>6}|", Opt::<Role>::NONE), "      |");
        assert!(!SessionState::WaitingApproval.is_stopped());
        let err = "dead".parse::<ToolCallState>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown tool call state `dead`"),
            "{err}"
        );
    }
}
