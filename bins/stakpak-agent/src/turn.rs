//! One run of a session's loop, from its start (or resumption) until it stops: the prompt
//! (redacted by secretd), then model turns (streamed; text deltas are reported as they
//! come), each followed by its tool calls (`calls.rs`) and a checkpoint in the session
//! database. Whatever the loop hands the model or stores has passed secretd first: prompts
//! through `Register`, tool output through sandboxd's redaction.
//!
//! A run stops when the model answers without tool calls (`finished`), after its turns
//! (`max-turns`), on `Cancel`, on an error (`failed`), when it asks the user
//! (`waiting-user`: the next prompt is the answer), or, with `pause_on_approval`, when a
//! call waits for approval (`paused`: `Approve`/`Reject` start it again).

use std::sync::Arc;

use stakpak_config::Profile;
use stakpak_llm::{
    ChatRequest, ChatResponse, Client, Message, ToolCall as Requested, ToolSpec, Usage,
};
use tokio::sync::watch;

use crate::{
    calls::Calls,
    config::AgentdConfig,
    error::RunError,
    events::Link,
    model::{End, SessionState, Start, ToolCall},
    peers::{PeerError, Peers},
    profile,
    state::{Answers, Shared},
    tools,
};

/// A session's loop as the registry starts it.
pub struct Run {
    pub shared: Arc<Shared>,
    pub link: Link,
    pub id: String,
    pub start: Start,
    pub cancel: watch::Receiver<bool>,
    pub answers: Arc<Answers>,
}

/// A run under way: the conversation and what every turn needs.
struct Turns {
    run: Run,
    config: Arc<AgentdConfig>,
    peers: Peers,
    profile: Profile,
    client: Client,
    model: String,
    system: String,
    specs: Vec<ToolSpec>,
    messages: Vec<Message>,
    /// How many of `messages` the database holds as they are.
    stored: usize,
    turn: u32,
    /// Model turns of this run, and the most it may take.
    steps: u32,
    max_steps: u32,
}

impl Run {
    /// Runs the loop until it stops; `Err` leaves the session `failed`.
    pub async fn go(self) -> Result<End, RunError> {
        let config = Arc::clone(&self.shared.config.borrow());
        let peers = Peers::new(self.link.conn.clone(), &self.id, config.peers.timeout_ms);
        let profile = profile::load(&self.shared.config_dir, &self.start.profile)?;
        let model = profile::model(&profile, self.start.model.as_deref())?;
        let label = format!("{}/{model}", profile.provider_key);
        self.shared
            .store()
            .set_model(&self.id, &profile.name, &label)?;
        let client = profile::client(&profile, &config.llm)?;

        // Where the loop starts: the newest checkpoint.
        let resumed = self
            .shared
            .store()
            .resume(&self.id, None)?
            .ok_or_else(|| RunError::NoCheckpoint(self.id.clone()))?;
        let mut messages = resumed.messages;
        let stored = messages.len();
        self.take_prompt(&peers, &mut messages, resumed.info.title.is_empty())
            .await?;
        if messages.is_empty() {
            return Err(RunError::NothingToDo);
        }
        let system = profile::system_prompt(&profile, &self.shared.rulebook_dirs)?;
        let specs = tools::specs()
            .into_iter()
            .filter(|s| profile.tool_allowed(&s.name))
            .collect();
        let max_steps = self.start.max_steps.unwrap_or(profile.max_turns);
        Turns {
            run: self,
            config,
            peers,
            profile,
            client,
            model,
            system,
            specs,
            messages,
            stored,
            turn: resumed.info.turns,
            steps: 0,
            max_steps,
        }
        .until_stopped()
        .await
    }

    /// Adds the prompt (with the caller's project context), redacted and remembered in the
    /// session by secretd: as the answer to a pending `ask_user`, else as a user message.
    /// The first prompt's first line becomes the title.
    async fn take_prompt(
        &self,
        peers: &Peers,
        messages: &mut Vec<Message>,
        untitled: bool,
    ) -> Result<(), RunError> {
        let mut prompt = self.start.prompt.clone();
        if !self.start.context.is_empty() {
            prompt = format!(
                "{prompt}\n\n<project-context>\n{}\n</project-context>",
                self.start.context
            );
        }
        if prompt.trim().is_empty() {
            return Ok(());
        }
        let redacted = peers.register(&prompt).await.map_err(|e| match e {
            PeerError::Call(e) => RunError::Redact(e),
            PeerError::Timeout => RunError::RedactTimeout,
        })?;
        let pending_question = pending_calls(messages)
            .into_iter()
            .find(|c| c.name == "ask_user")
            .map(|c| c.id);
        match pending_question {
            Some(call_id) => messages.push(Message::Tool {
                call_id,
                content: redacted.clone(),
                is_error: false,
            }),
            None => messages.push(Message::User {
                text: redacted.clone(),
            }),
        }
        if untitled {
            let title: String = redacted
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect();
            let _ = self.shared.store().set_title(&self.id, &title);
        }
        Ok(())
    }
}

impl Turns {
    fn cancelled(&self) -> bool {
        *self.run.cancel.borrow()
    }

    async fn until_stopped(mut self) -> Result<End, RunError> {
        loop {
            if let Some(end) = self.answer_open_calls().await? {
                return Ok(end);
            }
            if self.cancelled() {
                return Ok(End::cancelled());
            }
            if self.steps >= self.max_steps {
                return Ok(End::new(
                    SessionState::MaxTurns,
                    format!("stopped after {} turns", self.max_steps),
                ));
            }
            if let Some(end) = self.model_turn().await? {
                return Ok(end);
            }
        }
    }

    /// Handles the calls of the last turn that have no result yet (a resumed or paused
    /// turn, or the one just taken) and checkpoints.
    async fn answer_open_calls(&mut self) -> Result<Option<End>, RunError> {
        let open = pending_calls(&self.messages);
        if open.is_empty() {
            return Ok(None);
        }
        let calls = Calls {
            shared: &self.run.shared,
            events: &*self.run.link.events,
            peers: &self.peers,
            session: &self.run.id,
            profile: &self.profile,
            answers: &self.run.answers,
            cancel: &self.run.cancel,
            pause_on_approval: self.run.start.pause_on_approval,
            command_timeout: self.config.run.command_timeout_secs,
        };
        let end = calls.handle(&open, self.turn, &mut self.messages).await?;
        self.checkpoint(Usage::default())?;
        if end.is_some() {
            return Ok(end);
        }
        if self.run.start.one_step && self.steps > 0 {
            return Ok(Some(End::new(SessionState::Paused, "one step done")));
        }
        Ok(None)
    }

    /// One model turn: its answer and proposed calls are stored; `Some` when the loop stops
    /// (no calls: finished; cancelled while the model answered).
    async fn model_turn(&mut self) -> Result<Option<End>, RunError> {
        self.steps += 1;
        self.turn += 1;
        let request = ChatRequest {
            model: self.model.clone(),
            system: self.system.clone(),
            messages: within_budget(&self.messages, self.config.run.context_budget_chars),
            tools: self.specs.clone(),
            max_tokens: self.config.run.max_tokens,
        };
        let Some(response) = self.chat(&request).await? else {
            return Ok(Some(End::cancelled()));
        };
        self.messages.push(Message::Assistant {
            text: response.text.clone(),
            tool_calls: response.tool_calls.clone(),
        });
        let events = &*self.run.link.events;
        for call in &response.tool_calls {
            let record = ToolCall::proposed(&self.run.id, self.turn, call);
            self.run.shared.put_call(events, &record).await;
        }
        self.checkpoint(response.usage)?;
        if response.tool_calls.is_empty() {
            return Ok(Some(End::new(SessionState::Finished, String::new())));
        }
        Ok(None)
    }

    /// Asks the model, reporting its text as it streams; `None` when cancelled meanwhile.
    async fn chat(&self, request: &ChatRequest) -> Result<Option<ChatResponse>, RunError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let events = Arc::clone(&self.run.link.events);
        let id = self.run.id.clone();
        let forward = tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                events.text_delta(&id, &text).await;
            }
        });
        let mut on_text = move |t: &str| {
            let _ = tx.send(t.to_string());
        };
        let mut cancel = self.run.cancel.clone();
        let result = tokio::select! {
            r = self.client.chat(request, &mut on_text) => Some(r),
            _ = cancel.wait_for(|c| *c) => None,
        };
        drop(on_text);
        let _ = forward.await;
        match result {
            None => Ok(None),
            Some(Ok(response)) => Ok(Some(response)),
            Some(Err(e)) => Err(RunError::ModelCall(e)),
        }
    }

    /// Stores the conversation as it is now, with a checkpoint, and wakes the waiters.
    fn checkpoint(&mut self, usage: Usage) -> Result<(), RunError> {
        self.run.shared.store().checkpoint(
            &self.run.id,
            self.turn,
            &self.messages,
            self.stored,
            usage,
        )?;
        self.stored = self.messages.len();
        self.run.shared.bump();
        Ok(())
    }
}

/// Calls of the last assistant message without a tool result after it.
fn pending_calls(messages: &[Message]) -> Vec<Requested> {
    let Some(pos) = messages
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))
    else {
        return Vec::new();
    };
    let Message::Assistant { tool_calls, .. } = &messages[pos] else {
        return Vec::new();
    };
    let answered: Vec<&str> = messages[pos + 1..]
        .iter()
        .filter_map(|m| match m {
            Message::Tool { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    tool_calls
        .iter()
        .filter(|c| !answered.contains(&c.id.as_str()))
        .cloned()
        .collect()
}

/// The messages as sent to the model: when they are longer than `budget` characters, the
/// oldest tool results are cut to a note first (the stored session keeps them whole).
fn within_budget(messages: &[Message], budget: usize) -> Vec<Message> {
    let size = |m: &Message| match m {
        Message::User { text } => text.len(),
        Message::Assistant { text, tool_calls } => {
            text.len() + tool_calls.iter().map(|c| c.arguments.len()).sum::<usize>()
        }
        Message::Tool { content, .. } => content.len(),
    };
    let mut out = messages.to_vec();
    let mut total: usize = out.iter().map(size).sum();
    // Never the last message: the model must see what it is answering.
    let last = out.len().saturating_sub(1);
    for m in out.iter_mut().take(last) {
        if total <= budget {
            break;
        }
        if let Message::Tool { content, .. } = m
            && content.len() > 200
        {
            let note = format!(
                "[output of {} bytes trimmed to save context; run the tool again if you need it]",
                content.len()
            );
            total = total - content.len() + note.len();
            *content = note;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn call(id: &str) -> Requested {
        Requested {
            id: id.into(),
            name: "run_command".into(),
            arguments: "{}".into(),
        }
    }

    #[test]
    fn pending_and_budget() {
        let mut m = vec![
            Message::User { text: "go".into() },
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![call("a"), call("b")],
            },
            Message::Tool {
                call_id: "a".into(),
                content: "x".repeat(1000),
                is_error: false,
            },
        ];
        let open = pending_calls(&m);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, "b");
        m.push(Message::User {
            text: "more".into(),
        });
        let trimmed = within_budget(&m, 100);
        let Message::Tool { content, .. } = &trimmed[2] else {
            panic!()
        };
        assert!(content.starts_with("[output of 1000 bytes trimmed"));
        assert_eq!(within_budget(&m, 10_000), m);
    }
}
