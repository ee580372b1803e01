//! The attached session as the console holds it: the stored history (`ShowSession`), the
//! calls and streamed text that arrived since, and what the operator selected or expanded.
//!
//! It sits below both the console's state (`app`), which changes it, and the chat's rows
//! (`chat`), which draw it, so `chat` never reaches up into `app`.

use std::collections::HashSet;

use stakpak_proto::{MessageInfo, Role, SessionDetail, SessionInfo, ToolCallInfo, ToolCallState};

/// What the model produced in one turn that the session's stored history does not hold
/// yet: streamed text and the calls that followed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveTurn {
    pub text: String,
    pub calls: Vec<String>,
}

/// The attached session: its stored history (from `ShowSession`) and what arrived since.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub info: SessionInfo,
    pub messages: Vec<MessageInfo>,
    /// Every call, in the order first seen.
    pub calls: Vec<ToolCallInfo>,
    /// A prompt sent but not in the stored history yet.
    pub pending_prompt: Option<String>,
    pub live: Vec<LiveTurn>,
    /// Assistant and user messages stored when `live`/`pending_prompt` began.
    assistant_base: usize,
    user_base: usize,
    pub expanded: HashSet<String>,
    /// The selected tool card (Alt+↑/↓), which Ctrl+E expands.
    pub selected: Option<String>,
}

impl Session {
    pub fn new(info: SessionInfo) -> Session {
        Session {
            info,
            ..Session::default()
        }
    }

    fn count(&self, role: Role) -> usize {
        self.messages.iter().filter(|m| m.role == role).count()
    }

    pub fn call(&self, id: &str) -> Option<&ToolCallInfo> {
        self.calls.iter().find(|c| c.id == id)
    }

    /// Takes a call's newer state; whether the call is new.
    pub fn upsert(&mut self, call: ToolCallInfo) -> bool {
        match self.calls.iter_mut().find(|c| c.id == call.id) {
            Some(c) => {
                *c = call;
                false
            }
            None => {
                self.calls.push(call);
                true
            }
        }
    }

    /// Calls waiting for a human, in order.
    pub fn pending(&self) -> Vec<&ToolCallInfo> {
        self.calls
            .iter()
            .filter(|c| c.state == ToolCallState::WaitingApproval)
            .collect()
    }

    /// Takes a newer stored history; drops what of the live part it now holds.
    pub fn sync(&mut self, detail: SessionDetail) {
        self.info = detail.info;
        self.messages = detail.messages;
        for call in detail.tool_calls {
            self.upsert(call);
        }
        let assistant = self.count(Role::Assistant);
        let stored_turns = assistant.saturating_sub(self.assistant_base);
        let drop = stored_turns.min(self.live.len());
        self.live.drain(..drop);
        self.assistant_base += drop;
        if self.live.is_empty() {
            self.assistant_base = assistant;
        }
        if self.count(Role::User) > self.user_base {
            self.pending_prompt = None;
        }
    }

    /// Streamed text of the turn under way.
    pub fn delta(&mut self, text: &str) {
        if self.live.is_empty() {
            self.assistant_base = self.count(Role::Assistant);
        }
        match self.live.last_mut() {
            Some(turn) if turn.calls.is_empty() => turn.text.push_str(text),
            _ => self.live.push(LiveTurn {
                text: text.to_string(),
                calls: Vec::new(),
            }),
        }
    }

    /// A call seen for the first time: it belongs to the live turn unless a stored message
    /// names it already.
    pub fn new_call(&mut self, id: &str) {
        let referenced = self
            .messages
            .iter()
            .any(|m| m.role == Role::Assistant && m.tool_calls.iter().any(|c| c == id));
        if referenced {
            return;
        }
        if self.live.is_empty() {
            self.assistant_base = self.count(Role::Assistant);
            self.live.push(LiveTurn::default());
        }
        if let Some(turn) = self.live.last_mut() {
            turn.calls.push(id.to_string());
        }
    }

    /// A prompt sent to the agent, shown until the stored history holds it.
    pub fn send_prompt(&mut self, text: String) {
        self.user_base = self.count(Role::User);
        self.pending_prompt = Some(text);
    }

    /// Every tool card in display order (what Alt+↑/↓ walks through).
    pub fn card_order(&self) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        for m in &self.messages {
            if m.role == Role::Assistant {
                for id in m.tool_calls.iter().filter(|s| !s.is_empty()) {
                    if self.call(id).is_some() && !order.contains(id) {
                        order.push(id.clone());
                    }
                }
            }
        }
        let live: Vec<&String> = self.live.iter().flat_map(|t| t.calls.iter()).collect();
        for c in &self.calls {
            if !order.contains(&c.id) && !live.contains(&&c.id) {
                order.push(c.id.clone());
            }
        }
        for id in live {
            if !order.contains(id) {
                order.push(id.clone());
            }
        }
        order
    }
}
