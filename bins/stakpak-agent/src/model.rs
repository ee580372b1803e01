//! The agent's own view of sessions, tool calls and requests: what the registry, the turn
//! loop and the store work with. Only `dbus.rs` turns these into wire structs and back.
//!
//! The closed sets (session and tool-call states, the warden's verdict) are the proto enums:
//! they are plain values, and converting them into copies of themselves would buy nothing.

use stakpak_llm::Message;
pub use stakpak_proto::{Decision as Verdict, SessionState, ToolCallState};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    /// The first line of the first prompt, redacted; empty until there is one.
    pub title: String,
    pub profile: String,
    pub model: String,
    pub state: SessionState,
    /// Why it is in that state (an error, the question for the user); may be empty.
    pub reason: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub turns: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Tool calls waiting for approval.
    pub pending: u32,
    /// The newest checkpoint.
    pub checkpoint: Option<String>,
}

/// One tool call of a session: what the model asked, how it was judged, what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub session: String,
    pub turn: u32,
    pub name: String,
    /// The arguments as the model wrote them.
    pub arguments: String,
    pub state: ToolCallState,
    /// Why approval is asked (`profile` or the warden's rule); empty when auto-approved.
    pub approval: String,
    /// The warden's verdict, when it was asked.
    pub verdict: Option<Verdict>,
    pub rule: String,
    pub reason: String,
    /// The redacted result given to the model.
    pub output: String,
    pub is_error: bool,
}

impl ToolCall {
    /// A call the model just asked for, not judged yet.
    pub fn proposed(session: &str, turn: u32, call: &stakpak_llm::ToolCall) -> Self {
        ToolCall {
            id: call.id.clone(),
            session: session.to_string(),
            turn,
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            state: ToolCallState::Proposed,
            approval: String::new(),
            verdict: None,
            rule: String::new(),
            reason: String::new(),
            output: String::new(),
            is_error: false,
        }
    }
}

/// A stored message and when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub message: Message,
    pub created_ms: i64,
}

/// A session with its messages and tool calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub session: Session,
    pub messages: Vec<Logged>,
    pub calls: Vec<ToolCall>,
}

/// Which session a start is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// More of an existing session.
    Resume(String),
    /// A new session: with the caller's id or one the agent picks, from nothing or from a
    /// checkpoint.
    New {
        id: Option<String>,
        checkpoint: Option<String>,
    },
}

/// A start, checked: ids are valid, defaults are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub target: Target,
    /// The user's prompt; may be empty when resuming.
    pub prompt: String,
    pub profile: String,
    /// `<provider-key>/<model>` overriding the profile's.
    pub model: Option<String>,
    pub workdir: String,
    /// Project context the caller read for the model.
    pub context: String,
    /// Most model turns for this run; `None`: the profile's.
    pub max_steps: Option<u32>,
    /// Stop instead of waiting when a call needs approval.
    pub pause_on_approval: bool,
    /// One model turn only.
    pub one_step: bool,
}

impl Start {
    /// The profile used when none is named.
    pub const DEFAULT_PROFILE: &'static str = "default";

    /// Going on with a paused session once its calls are decided.
    pub fn resume(id: &str, profile: &str) -> Self {
        Start {
            target: Target::Resume(id.to_string()),
            prompt: String::new(),
            profile: if profile.is_empty() {
                Start::DEFAULT_PROFILE.to_string()
            } else {
                profile.to_string()
            },
            model: None,
            workdir: String::new(),
            context: String::new(),
            max_steps: None,
            pause_on_approval: false,
            one_step: false,
        }
    }
}

/// How a run of a session's loop ended: the state it leaves the session in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub state: SessionState,
    pub reason: String,
}

impl End {
    pub fn new(state: SessionState, reason: impl Into<String>) -> Self {
        End {
            state,
            reason: reason.into(),
        }
    }

    /// Stopped by `Cancel`; the reason is the state's name.
    pub fn cancelled() -> Self {
        End::new(SessionState::Cancelled, SessionState::Cancelled.as_str())
    }
}

/// What a human decided about a call waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Reject(String),
}

/// `[A-Za-z0-9_-]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        let cases = [
            ("s-abc_1", true),
            ("a/b", false),
            ("", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ];
        for (id, valid) in cases {
            assert_eq!(valid_id(id), valid, "{id}");
        }
    }
}
