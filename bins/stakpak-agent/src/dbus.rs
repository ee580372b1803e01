//! The D-Bus side of the daemon: checks each call of `dev.stakpak.Agent1`, turns it into a
//! call of the session registry, and turns the answer back into wire structs. Errors of the
//! registry become D-Bus errors here and nowhere else ([`wire_error`]); what the core reports
//! becomes signals on the session's path ([`Signals`]).

use std::sync::Arc;

use stakpak_daemon::ControlHandle;
use stakpak_llm::Message;
use stakpak_proto::{
    AgentHandler, AgentInterface, Caller, Error, MessageInfo, Role, SessionDetail, SessionInfo,
    StartRequest, ToolCallInfo, session_path, zbus,
};

use crate::{
    error::AgentError,
    events::{Events, Link, Reported},
    model::{Answer, Detail, Logged, Session, Start, Target, ToolCall, valid_id},
    registry::Manager,
};

/// Behind `dev.stakpak.Agent1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
    sessions: Manager,
}

impl Handler {
    pub(crate) fn new(control: ControlHandle, sessions: Manager) -> Self {
        Handler { control, sessions }
    }
}

/// The one place where the registry's errors become D-Bus errors: what the caller asked
/// for wrongly is `InvalidArgument`, a failing database or random source is `Internal`.
fn wire_error(e: AgentError) -> Error {
    match e {
        AgentError::BadId { .. }
        | AgentError::NoSession(_)
        | AgentError::Running(_)
        | AgentError::Exists(_)
        | AgentError::NoCheckpoint(_)
        | AgentError::NotWaiting { .. } => Error::InvalidArgument(e.to_string()),
        AgentError::NoId(_) | AgentError::Store(_) => Error::Internal(e.to_string()),
    }
}

/// Signals on the session's object path, through the connection the call came in on.
struct Signals {
    conn: zbus::Connection,
}

impl Signals {
    fn emitter(&self, session: &str) -> Option<zbus::object_server::SignalEmitter<'static>> {
        zbus::object_server::SignalEmitter::new(&self.conn, session_path(session)).ok()
    }
}

impl Events for Signals {
    fn session_changed<'a>(&'a self, session: &'a Session) -> Reported<'a> {
        Box::pin(async move {
            if let Some(emitter) = self.emitter(&session.id) {
                let _ = AgentInterface::<Handler>::session_changed(&emitter, session_info(session))
                    .await;
            }
        })
    }

    fn tool_call<'a>(&'a self, call: &'a ToolCall) -> Reported<'a> {
        Box::pin(async move {
            if let Some(emitter) = self.emitter(&call.session) {
                let _ = AgentInterface::<Handler>::tool_call(&emitter, call_info(call)).await;
            }
        })
    }

    fn text_delta<'a>(&'a self, session: &'a str, text: &'a str) -> Reported<'a> {
        Box::pin(async move {
            if let Some(emitter) = self.emitter(session) {
                let _ = AgentInterface::<Handler>::text_delta(&emitter, session, text).await;
            }
        })
    }
}

/// `id` when it is a valid session id; `field` names it in the error.
fn session_id(field: &'static str, id: String) -> Result<String, AgentError> {
    if valid_id(&id) {
        Ok(id)
    } else {
        Err(AgentError::BadId { field, id })
    }
}

fn link(caller: &Caller) -> Link {
    Link {
        events: Arc::new(Signals {
            conn: caller.connection.clone(),
        }),
        conn: caller.connection.clone(),
    }
}

/// A `Start` request, checked: a session to continue, or a new one; empty fields are the
/// defaults.
fn start_of(request: StartRequest) -> Result<Start, AgentError> {
    let some = |s: String| (!s.is_empty()).then_some(s);
    let target = if !request.session.is_empty() {
        Target::Resume(session_id("session", request.session)?)
    } else {
        Target::New {
            id: some(request.new_id)
                .map(|id| session_id("new_id", id))
                .transpose()?,
            checkpoint: some(request.checkpoint),
        }
    };
    Ok(Start {
        target,
        prompt: request.prompt,
        profile: some(request.profile).unwrap_or_else(|| Start::DEFAULT_PROFILE.to_string()),
        model: some(request.model),
        workdir: request.workdir,
        context: request.context,
        max_steps: (request.max_steps > 0).then_some(request.max_steps),
        pause_on_approval: request.pause_on_approval,
        one_step: request.one_step,
    })
}

fn session_info(s: &Session) -> SessionInfo {
    SessionInfo {
        id: s.id.clone(),
        title: s.title.clone(),
        profile: s.profile.clone(),
        model: s.model.clone(),
        state: s.state,
        reason: s.reason.clone(),
        created_ms: s.created_ms,
        updated_ms: s.updated_ms,
        turns: s.turns,
        input_tokens: s.input_tokens,
        output_tokens: s.output_tokens,
        pending: s.pending,
        checkpoint: s.checkpoint.clone().unwrap_or_default(),
    }
}

fn call_info(c: &ToolCall) -> ToolCallInfo {
    ToolCallInfo {
        id: c.id.clone(),
        session: c.session.clone(),
        turn: c.turn,
        name: c.name.clone(),
        arguments: c.arguments.clone(),
        state: c.state,
        approval: c.approval.clone(),
        decision: c.verdict.into(),
        rule: c.rule.clone(),
        reason: c.reason.clone(),
        output: c.output.clone(),
        is_error: c.is_error,
    }
}

fn message_info(logged: &Logged) -> MessageInfo {
    let (role, text, tool_calls) = match &logged.message {
        Message::User { text } => (Role::User, text.clone(), Vec::new()),
        Message::Assistant { text, tool_calls } => (
            Role::Assistant,
            text.clone(),
            tool_calls.iter().map(|c| c.id.clone()).collect(),
        ),
        Message::Tool {
            call_id, content, ..
        } => (Role::Tool, content.clone(), vec![call_id.clone()]),
    };
    MessageInfo {
        role,
        text,
        tool_calls,
        created_ms: logged.created_ms,
    }
}

fn detail(d: &Detail) -> SessionDetail {
    SessionDetail {
        info: session_info(&d.session),
        messages: d.messages.iter().map(message_info).collect(),
        tool_calls: d.calls.iter().map(call_info).collect(),
    }
}

stakpak_daemon::control_through!(Handler, control);

impl AgentHandler for Handler {
    async fn start(&self, request: StartRequest, caller: Caller) -> Result<SessionInfo, Error> {
        let start = start_of(request).map_err(wire_error)?;
        self.sessions
            .start(start, link(&caller))
            .await
            .map(|s| session_info(&s))
            .map_err(wire_error)
    }

    async fn approve(
        &self,
        session: String,
        ids: Vec<String>,
        caller: Caller,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        let session = session_id("session", session).map_err(wire_error)?;
        self.sessions
            .answer(&session, &ids, Answer::Approve, link(&caller))
            .await
            .map(|calls| calls.iter().map(call_info).collect())
            .map_err(wire_error)
    }

    async fn reject(
        &self,
        session: String,
        ids: Vec<String>,
        reason: String,
        caller: Caller,
    ) -> Result<Vec<ToolCallInfo>, Error> {
        let session = session_id("session", session).map_err(wire_error)?;
        self.sessions
            .answer(&session, &ids, Answer::Reject(reason), link(&caller))
            .await
            .map(|calls| calls.iter().map(call_info).collect())
            .map_err(wire_error)
    }

    async fn cancel(&self, session: String, caller: Caller) -> Result<SessionInfo, Error> {
        let session = session_id("session", session).map_err(wire_error)?;
        self.sessions
            .cancel(&session, link(&caller))
            .await
            .map(|s| session_info(&s))
            .map_err(wire_error)
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        self.sessions
            .list()
            .map(|all| all.iter().map(session_info).collect())
            .map_err(wire_error)
    }

    async fn show_session(&self, id: String) -> Result<SessionDetail, Error> {
        let id = session_id("session", id).map_err(wire_error)?;
        self.sessions
            .show(&id)
            .map(|d| detail(&d))
            .map_err(wire_error)
    }

    async fn wait_session(&self, id: String, timeout_ms: u64) -> Result<SessionInfo, Error> {
        let id = session_id("session", id).map_err(wire_error)?;
        self.sessions
            .wait(&id, timeout_ms)
            .await
            .map(|s| session_info(&s))
            .map_err(wire_error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn start_requests_become_starts() {
        let start = start_of(StartRequest {
            prompt: "hi".into(),
            new_id: "a-b".into(),
            ..StartRequest::default()
        })
        .unwrap();
        assert_eq!(
            start,
            Start {
                target: Target::New {
                    id: Some("a-b".into()),
                    checkpoint: None
                },
                prompt: "hi".into(),
                profile: "default".into(),
                model: None,
                workdir: String::new(),
                context: String::new(),
                max_steps: None,
                pause_on_approval: false,
                one_step: false,
            }
        );
        // The session to continue wins over a new id, which is then not looked at.
        let start = start_of(StartRequest {
            session: "s-1".into(),
            new_id: "not/valid".into(),
            max_steps: 3,
            ..StartRequest::default()
        })
        .unwrap();
        assert_eq!(start.target, Target::Resume("s-1".into()));
        assert_eq!(start.max_steps, Some(3));
        let err = start_of(StartRequest {
            new_id: "a/b".into(),
            ..StartRequest::default()
        })
        .unwrap_err();
        assert_eq!(
            wire_error(err),
            Error::InvalidArgument("new_id \"a/b\" is not 1 to 64 of A-Z a-z 0-9 _ -".into())
        );
    }
}
