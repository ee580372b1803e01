//! The tool calls of one model turn: each is parsed, checked against the profile, judged by
//! the warden (advisory here; sandboxd enforces), approved (by the profile, or by a human
//! through `Approve`/`Reject`) and carried out through sandboxd, in order. `ask_user` stops
//! the loop with the question; `generate_password` goes to secretd.

use std::collections::HashMap;

use stakpak_config::Profile;
use stakpak_llm::{Message, ToolCall as Requested};
use tokio::sync::watch;

use crate::{
    error::RunError,
    events::Events,
    model::{Answer, End, SessionState, ToolCall, ToolCallState, Verdict},
    peers::{PeerError, Peers},
    state::{Answers, Shared},
    tools::{self, Call, Outcome, READ_ONLY, ToolError},
};

/// Whether a call may run without asking.
enum Approval {
    Auto,
    /// A human decides; why.
    Ask(String),
    /// The warden refused it outright.
    Denied,
}

/// A call of the turn, judged.
struct Judged {
    requested: Requested,
    record: ToolCall,
    parsed: Result<Call, ToolError>,
}

/// Everything the calls of a turn need.
pub struct Calls<'a> {
    pub shared: &'a Shared,
    pub events: &'a dyn Events,
    pub peers: &'a Peers,
    pub session: &'a str,
    pub profile: &'a Profile,
    pub answers: &'a Answers,
    pub cancel: &'a watch::Receiver<bool>,
    /// Stop (`paused`) instead of waiting when a call needs approval.
    pub pause_on_approval: bool,
    /// Default `run_command` timeout, seconds.
    pub command_timeout: u64,
}

impl Calls<'_> {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Handles the calls of the last assistant message that have no result yet, adding a
    /// result message for each. `Some` when the loop must stop (waiting for the user,
    /// paused for approval, cancelled).
    pub async fn handle(
        &self,
        open: &[Requested],
        turn: u32,
        messages: &mut Vec<Message>,
    ) -> Result<Option<End>, RunError> {
        let judged = self.judge(open, turn).await?;
        if let Some(end) = self.wait_for_answers(&judged).await {
            return Ok(Some(end));
        }
        // Carry out what was approved, in order.
        for call in judged {
            if self.cancelled() {
                return Ok(Some(End::cancelled()));
            }
            match self.carry_out(call).await {
                Ok(result) => messages.push(result),
                Err(end) => return Ok(Some(end)),
            }
        }
        Ok(None)
    }

    /// Judges every call not judged before (a resumed turn has some already).
    async fn judge(&self, open: &[Requested], turn: u32) -> Result<Vec<Judged>, RunError> {
        let known: HashMap<String, ToolCall> = self
            .shared
            .store()
            .calls(self.session)?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut judged = Vec::new();
        for requested in open {
            let mut record = known
                .get(&requested.id)
                .cloned()
                .unwrap_or_else(|| ToolCall::proposed(self.session, turn, requested));
            let parsed = Call::parse(&requested.name, &requested.arguments);
            if record.state == ToolCallState::Proposed {
                if let Ok(call) = &parsed
                    && self.profile.tool_allowed(&requested.name)
                {
                    match self.approval(call, &mut record).await {
                        Approval::Auto => record.state = ToolCallState::Approved,
                        Approval::Ask(why) => {
                            record.state = ToolCallState::WaitingApproval;
                            record.approval = why;
                        }
                        Approval::Denied => record.state = ToolCallState::Denied,
                    }
                }
                self.shared.put_call(self.events, &record).await;
            }
            if record.state == ToolCallState::Running {
                // The agent stopped while it ran: its effect is unknown, do not run it twice.
                record.state = ToolCallState::Failed;
                record.is_error = true;
                record.output = "interrupted by a restart of the agent while it ran; check its effect before running it again".into();
            }
            judged.push(Judged {
                requested: requested.clone(),
                record,
                parsed,
            });
        }
        Ok(judged)
    }

    /// Waits until a human answered every call that waits for approval; `Some` when the
    /// loop stops instead (paused, or cancelled meanwhile).
    async fn wait_for_answers(&self, judged: &[Judged]) -> Option<End> {
        let waiting: Vec<String> = judged
            .iter()
            .filter(|j| j.record.state == ToolCallState::WaitingApproval)
            .map(|j| j.record.id.clone())
            .collect();
        if waiting.is_empty() {
            return None;
        }
        if self.pause_on_approval {
            return Some(End::new(
                SessionState::Paused,
                format!("{} tool call(s) wait for approval", waiting.len()),
            ));
        }
        self.shared
            .set_state(self.events, self.session, SessionState::WaitingApproval, "")
            .await;
        let mut cancel = self.cancel.clone();
        tokio::select! {
            biased;
            _ = self.answers.all(&waiting) => {}
            _ = cancel.wait_for(|c| *c) => return Some(End::cancelled()),
        }
        self.shared
            .set_state(self.events, self.session, SessionState::Running, "")
            .await;
        None
    }

    /// Carries out one judged call and records it; `Ok` is the result for the model, `Err`
    /// stops the loop (`ask_user`).
    async fn carry_out(&self, judged: Judged) -> Result<Message, End> {
        let Judged {
            requested,
            mut record,
            parsed,
        } = judged;
        match self.answers.get(&record.id) {
            Some(Answer::Approve) => record.state = ToolCallState::Approved,
            Some(Answer::Reject(reason)) => {
                record.state = ToolCallState::Rejected;
                record.reason = reason;
            }
            None => {}
        }
        let outcome = self.outcome(&requested, &mut record, &parsed).await?;
        record.state = match record.state {
            ToolCallState::Running | ToolCallState::Approved if outcome.is_error => {
                ToolCallState::Failed
            }
            ToolCallState::Running | ToolCallState::Approved => ToolCallState::Done,
            other => other,
        };
        if !outcome.rule.is_empty() {
            record.verdict = outcome.verdict;
            record.rule = outcome.rule.clone();
            record.reason = outcome.reason.clone();
        }
        record.output = outcome.content.clone();
        record.is_error = outcome.is_error;
        self.shared.put_call(self.events, &record).await;
        Ok(Message::Tool {
            call_id: requested.id,
            content: outcome.content,
            is_error: outcome.is_error,
        })
    }

    /// What the model is told about a call: why it was not run, or what running it gave.
    async fn outcome(
        &self,
        requested: &Requested,
        record: &mut ToolCall,
        parsed: &Result<Call, ToolError>,
    ) -> Result<Outcome, End> {
        Ok(match (parsed, record.state) {
            (Err(e), _) => Outcome::error(e.to_string()),
            (Ok(_), _) if !self.profile.tool_allowed(&requested.name) => Outcome::error(format!(
                "the tool {} is not allowed in profile {}",
                requested.name, self.profile.name
            )),
            (_, ToolCallState::Failed) => Outcome::error(record.output.clone()),
            (_, ToolCallState::Denied) => Outcome::error(format!(
                "refused by the warden ({}, rule {}): {}",
                record.verdict.map(Verdict::as_str).unwrap_or(""),
                record.rule,
                record.reason
            )),
            (_, ToolCallState::Rejected) => Outcome::error(if record.reason.is_empty() {
                "the user rejected this call".to_string()
            } else {
                format!("the user rejected this call: {}", record.reason)
            }),
            (Ok(call), ToolCallState::Approved) => return self.run(call, record).await,
            (Ok(_), other) => Outcome::error(format!("the call is {other}; not run")),
        })
    }

    /// Runs an approved call; `ask_user` stops the loop with its question instead.
    async fn run(&self, call: &Call, record: &mut ToolCall) -> Result<Outcome, End> {
        if call.name == "ask_user" {
            let question = call
                .args
                .get("question")
                .and_then(|q| q.as_str())
                .unwrap_or("(no question given)")
                .to_string();
            record.state = ToolCallState::Done;
            record.output = question.clone();
            self.shared.put_call(self.events, record).await;
            return Err(End::new(SessionState::WaitingUser, question));
        }
        record.state = ToolCallState::Running;
        self.shared.put_call(self.events, record).await;
        Ok(if call.name == "generate_password" {
            self.generate_password(call).await
        } else {
            tools::run(
                call,
                &tools::Context {
                    peers: self.peers,
                    command_timeout: self.command_timeout,
                },
            )
            .await
        })
    }

    /// Whether a call runs without asking: the profile's auto_approve, read-only tools, and
    /// the warden's advisory verdict (`ask` asks, `deny` refuses at once).
    async fn approval(&self, call: &Call, record: &mut ToolCall) -> Approval {
        let Some(command) = call.command() else {
            return if READ_ONLY.contains(&call.name.as_str())
                || call.name == "ask_user"
                || self.profile.auto_approves(&call.name, None, None)
            {
                Approval::Auto
            } else {
                Approval::Ask("profile".into())
            };
        };
        let Ok(judgement) = self.peers.check_command(command).await else {
            // No advisory verdict: ask a human (sandboxd will still judge).
            return Approval::Ask("warden unavailable".into());
        };
        record.verdict = Some(judgement.decision);
        record.rule = judgement.rule.clone();
        record.reason = judgement.reason.clone();
        match judgement.decision {
            Verdict::Deny => return Approval::Denied,
            Verdict::Ask => {
                return Approval::Ask(format!(
                    "warden: {}",
                    if judgement.rule.is_empty() {
                        judgement.reason
                    } else {
                        judgement.rule
                    }
                ));
            }
            Verdict::Allow => {}
        }
        let (program, sub) = tools::program_and_subcommand(command);
        let whole_tool = self.profile.auto_approves(&call.name, None, None);
        let by_key = tools::is_simple(command)
            && self
                .profile
                .auto_approves(&call.name, program.as_deref(), sub.as_deref());
        if whole_tool || by_key {
            Approval::Auto
        } else {
            Approval::Ask("profile".into())
        }
    }

    /// A random password the model never sees: secretd remembers it in the session and the
    /// model gets its placeholder.
    async fn generate_password(&self, call: &Call) -> Outcome {
        let length = call
            .args
            .get("length")
            .and_then(|v| v.as_u64())
            .unwrap_or(24)
            .clamp(8, 128) as usize;
        let symbols = call
            .args
            .get("symbols")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let alphabet: &[u8] = if symbols {
            b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.:+=@%"
        } else {
            b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
        };
        // Every symbol equally likely (no `byte % len` bias).
        let Ok(password) = stakpak_util::random::string(alphabet, length) else {
            return Outcome::error("no randomness available to generate a password");
        };
        match self.peers.remember("generated-password", password).await {
            Ok(placeholder) => Outcome::ok(format!(
                "generated a {length}-character password: {placeholder} (use this placeholder; the value is filled in inside the sandbox)"
            )),
            Err(PeerError::Call(e)) => {
                Outcome::error(format!("secretd could not keep the password: {e}"))
            }
            Err(PeerError::Timeout) => Outcome::error("secretd did not answer"),
        }
    }
}
