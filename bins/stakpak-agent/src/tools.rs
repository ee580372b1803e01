//! The tools the model gets, and how each one is carried out: every side effect through
//! sandboxd (which asks the warden again and resolves placeholders), nothing here.
//!
//! Arguments are checked here (valid JSON, the fields each tool needs); a problem becomes an
//! error result the model can read and recover from, never a failed session.

use serde_json::{Value, json};
use stakpak_llm::ToolSpec;
use stakpak_proto::{
    Decision, ExecReply, ExecRequest, ExecStatus, SandboxProxy, ViewRequest, zbus,
};

use crate::peers::Peers;

/// Tools that only read: approved without asking unless the profile says otherwise.
pub const READ_ONLY: [&str; 5] = [
    "view",
    "get_all_tasks",
    "get_task_details",
    "wait_for_tasks",
    "generate_password",
];

/// Why a tool call could not be carried out; the message is for the model.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("the arguments of {tool} must be a JSON object, got: {got}")]
    NotAnObject { tool: String, got: String },
    #[error(
        "the arguments of {tool} are not valid JSON ({error}); send them again as one JSON object"
    )]
    NotJson {
        tool: String,
        error: serde_json::Error,
    },
    #[error("{tool} needs a string argument `{key}`")]
    Missing { tool: String, key: &'static str },
    #[error("there is no tool {0:?}")]
    NoSuchTool(String),
    #[error("sandboxd is not reachable: {0}")]
    Unreachable(zbus::Error),
    #[error("sandboxd refused or failed: {0}")]
    Sandbox(#[from] stakpak_proto::Error),
}

/// The result of one tool call, as the model will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub content: String,
    pub is_error: bool,
    /// The warden's verdict when sandboxd reported one.
    pub verdict: Option<Decision>,
    pub rule: String,
    pub reason: String,
}

impl Outcome {
    pub fn ok(content: impl Into<String>) -> Self {
        Outcome {
            content: content.into(),
            is_error: false,
            verdict: None,
            rule: String::new(),
            reason: String::new(),
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        Outcome {
            is_error: true,
            ..Outcome::ok(content)
        }
    }
}

/// A parsed tool call.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: String,
    pub args: serde_json::Map<String, Value>,
}

impl Call {
    /// Parses the model's arguments; the error is the message for the model.
    pub fn parse(name: &str, arguments: &str) -> Result<Call, ToolError> {
        let text = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(args)) => Ok(Call {
                name: name.to_string(),
                args,
            }),
            Ok(_) => Err(ToolError::NotAnObject {
                tool: name.to_string(),
                got: short(text),
            }),
            Err(error) => Err(ToolError::NotJson {
                tool: name.to_string(),
                error,
            }),
        }
    }

    fn str(&self, key: &'static str) -> Result<&str, ToolError> {
        self.args
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::Missing {
                tool: self.name.clone(),
                key,
            })
    }

    fn opt_str(&self, key: &str) -> Option<&str> {
        self.args.get(key).and_then(Value::as_str)
    }

    fn opt_u64(&self, key: &str) -> Option<u64> {
        self.args.get(key).and_then(Value::as_u64)
    }

    fn opt_bool(&self, key: &str) -> Option<bool> {
        self.args.get(key).and_then(Value::as_bool)
    }

    /// The shell command of `run_command`/`run_command_task`, for approval keys.
    pub fn command(&self) -> Option<&str> {
        match self.name.as_str() {
            "run_command" | "run_command_task" => self.opt_str("command"),
            _ => None,
        }
    }
}

fn short(text: &str) -> String {
    let s: String = text.chars().take(200).collect();
    if s.len() < text.len() {
        format!("{s}…")
    } else {
        s
    }
}

/// The JSON schemas given to the model.
pub fn specs() -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: Value| ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters,
    };
    vec![
        spec(
            "run_command",
            "Run a shell command in the session's sandboxed workspace and return its exit status and output. Use {{secret:NAME}} placeholders for credentials; they are filled in only inside the sandbox. Output past the cap is kept in a file you can `view`.",
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": "the shell command line"},
                "timeout": {"type": "integer", "description": "seconds before the command and everything it started are killed"},
                "workdir": {"type": "string", "description": "directory relative to the workspace"}
            }, "required": ["command"]}),
        ),
        spec(
            "run_command_task",
            "Start a long-running command in the background (a port-forward, a build); returns a task id at once.",
            json!({"type": "object", "properties": {
                "command": {"type": "string"},
                "timeout": {"type": "integer", "description": "seconds; default one hour"}
            }, "required": ["command"]}),
        ),
        spec(
            "get_all_tasks",
            "List the background tasks of this session with their state.",
            json!({"type": "object", "properties": {}}),
        ),
        spec(
            "get_task_details",
            "A background task's state and the tail of its output.",
            json!({"type": "object", "properties": {
                "task_id": {"type": "string"},
                "tail_bytes": {"type": "integer"}
            }, "required": ["task_id"]}),
        ),
        spec(
            "wait_for_tasks",
            "Wait until the given background tasks have ended, at most `timeout` seconds.",
            json!({"type": "object", "properties": {
                "task_ids": {"type": "array", "items": {"type": "string"}},
                "timeout": {"type": "integer"}
            }, "required": ["task_ids"]}),
        ),
        spec(
            "cancel_task",
            "Stop a background task and everything it started.",
            json!({"type": "object", "properties": {"task_id": {"type": "string"}}, "required": ["task_id"]}),
        ),
        spec(
            "view",
            "Read a file of the workspace (optionally a line range), list a directory as a tree, or grep a file or tree with a regular expression.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "relative to the workspace; empty: the workspace"},
                "start_line": {"type": "integer"},
                "end_line": {"type": "integer"},
                "depth": {"type": "integer"},
                "grep": {"type": "string"}
            }}),
        ),
        spec(
            "create",
            "Create or overwrite a file in the workspace (recorded, revertible).",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        ),
        spec(
            "str_replace",
            "Replace a text in a file: `old_str` must occur exactly once unless `replace_all`.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "old_str": {"type": "string"},
                "new_str": {"type": "string"},
                "replace_all": {"type": "boolean"}
            }, "required": ["path", "old_str", "new_str"]}),
        ),
        spec(
            "remove",
            "Remove a file or directory (moved to a backup; revertible).",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        ),
        spec(
            "generate_password",
            "Generate a random password. You get a placeholder for it, never the value; use the placeholder in commands and files.",
            json!({"type": "object", "properties": {
                "length": {"type": "integer", "description": "8 to 128; default 24"},
                "symbols": {"type": "boolean", "description": "include punctuation; default true"}
            }}),
        ),
        spec(
            "ask_user",
            "Ask the user a question and stop until they answer. Use it before anything destructive or when the goal is unclear.",
            json!({"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}),
        ),
    ]
}

/// Everything a tool needs to act.
pub struct Context<'a> {
    /// sandboxd, and the session the calls are for.
    pub peers: &'a Peers,
    /// Default `run_command` timeout, seconds.
    pub command_timeout: u64,
}

/// Carries out one approved call through sandboxd. `generate_password` and `ask_user` are
/// handled by the session loop, not here.
pub async fn run(call: &Call, ctx: &Context<'_>) -> Outcome {
    match run_inner(call, ctx).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::error(e.to_string()),
    }
}

async fn run_inner(call: &Call, ctx: &Context<'_>) -> Result<Outcome, ToolError> {
    let sandbox = ctx.peers.sandbox().await.map_err(ToolError::Unreachable)?;
    let session = ctx.peers.session().to_string();
    match call.name.as_str() {
        "run_command" | "run_command_task" => run_command(call, ctx, &sandbox, session).await,
        "get_all_tasks" | "get_task_details" | "wait_for_tasks" | "cancel_task" => {
            tasks(call, &sandbox, session).await
        }
        "view" | "create" | "str_replace" | "remove" => files(call, &sandbox, session).await,
        other => Err(ToolError::NoSuchTool(other.to_string())),
    }
}

/// `run_command` (waits for the command) and `run_command_task` (starts it in the
/// background).
async fn run_command(
    call: &Call,
    ctx: &Context<'_>,
    sandbox: &SandboxProxy<'_>,
    session: String,
) -> Result<Outcome, ToolError> {
    let request = ExecRequest {
        session,
        command: call.str("command")?.to_string(),
        workdir: call.opt_str("workdir").unwrap_or("").to_string(),
        timeout_ms: call
            .opt_u64("timeout")
            .unwrap_or(if call.name == "run_command" {
                ctx.command_timeout
            } else {
                0
            })
            .saturating_mul(1000),
        ..ExecRequest::default()
    };
    if call.name == "run_command_task" {
        let info = sandbox.start_task(request).await?;
        let mut out = Outcome::ok(
            json!({"task_id": info.id, "state": info.state, "reason": info.reason}).to_string(),
        );
        out.is_error = info.state == ExecStatus::Denied;
        out.verdict = info.decision.get();
        out.rule = info.rule;
        out.reason = info.reason;
        return Ok(out);
    }
    let reply = sandbox.exec(request).await?;
    Ok(Outcome {
        content: exec_text(&reply),
        is_error: reply.status != ExecStatus::Exited || reply.code != 0,
        verdict: reply.decision.get(),
        rule: reply.rule,
        reason: reply.reason,
    })
}

/// What the model reads of a command's end: the refusal, or its status and output.
fn exec_text(reply: &ExecReply) -> String {
    if reply.status == ExecStatus::Denied {
        return format!(
            "refused by the warden ({}{}): {}",
            reply.decision,
            if reply.rule.is_empty() {
                String::new()
            } else {
                format!(", rule {}", reply.rule)
            },
            reply.reason
        );
    }
    let mut text = format!("status: {} {}\n", reply.status, reply.code);
    for (name, output) in [("stdout", &reply.stdout), ("stderr", &reply.stderr)] {
        if !output.is_empty() {
            text.push_str(&format!("{name}:\n{output}"));
            if !output.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    if reply.truncated {
        text.push_str(&format!(
            "(output truncated; the whole output is in {})\n",
            reply.artifact
        ));
    }
    if reply.reason.starts_with("output withheld") {
        text.push_str(&reply.reason);
    }
    text
}

/// The background-task tools.
async fn tasks(
    call: &Call,
    sandbox: &SandboxProxy<'_>,
    session: String,
) -> Result<Outcome, ToolError> {
    let json = match call.name.as_str() {
        "get_all_tasks" => {
            let tasks = sandbox.list_tasks(session).await?;
            let list: Vec<Value> = tasks
                .iter()
                .map(|t| {
                    json!({"task_id": t.id, "command": t.command, "state": t.state,
                        "code": t.code, "output_bytes": t.output_bytes})
                })
                .collect();
            Value::Array(list)
        }
        "get_task_details" => {
            let id = call.str("task_id")?.to_string();
            let d = sandbox
                .task_details(id, call.opt_u64("tail_bytes").unwrap_or(0))
                .await?;
            json!({"task_id": d.info.id, "state": d.info.state, "code": d.info.code,
                "output_tail": d.tail, "output_file": d.output_path})
        }
        "wait_for_tasks" => {
            let ids: Vec<String> = call
                .args
                .get("task_ids")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let timeout = call.opt_u64("timeout").unwrap_or(60).min(3600) * 1000;
            let tasks = sandbox.wait_tasks(ids, timeout).await?;
            let list: Vec<Value> = tasks
                .iter()
                .map(|t| json!({"task_id": t.id, "state": t.state, "code": t.code}))
                .collect();
            Value::Array(list)
        }
        _ => {
            let id = call.str("task_id")?.to_string();
            let t = sandbox.cancel_task(id).await?;
            json!({"task_id": t.id, "state": t.state})
        }
    };
    Ok(Outcome::ok(json.to_string()))
}

/// The workspace tools: reading, and the recorded (revertible) changes.
async fn files(
    call: &Call,
    sandbox: &SandboxProxy<'_>,
    session: String,
) -> Result<Outcome, ToolError> {
    let path = || call.str("path").map(str::to_string);
    let text = match call.name.as_str() {
        "view" => {
            let request = ViewRequest {
                session,
                path: call.opt_str("path").unwrap_or("").to_string(),
                start_line: call
                    .opt_u64("start_line")
                    .unwrap_or(0)
                    .min(u64::from(u32::MAX)) as u32,
                end_line: call
                    .opt_u64("end_line")
                    .unwrap_or(0)
                    .min(u64::from(u32::MAX)) as u32,
                depth: call.opt_u64("depth").unwrap_or(0).min(64) as u32,
                grep: call.opt_str("grep").unwrap_or("").to_string(),
                max_bytes: 0,
            };
            let reply = sandbox.view(request).await?;
            let mut text = reply.content;
            if reply.truncated {
                text.push_str("\n(truncated)");
            }
            text
        }
        "create" => {
            let c = sandbox
                .create(session, path()?, call.str("content")?.to_string())
                .await?;
            format!("{} {} (change {}: {})", c.kind, c.path, c.id, c.summary)
        }
        "str_replace" => {
            let c = sandbox
                .str_replace(
                    session,
                    path()?,
                    call.str("old_str")?.to_string(),
                    call.str("new_str")?.to_string(),
                    call.opt_bool("replace_all").unwrap_or(false),
                )
                .await?;
            format!("edited {} (change {}: {})", c.path, c.id, c.summary)
        }
        _ => {
            let c = sandbox.remove(session, path()?).await?;
            format!("removed {} (moved to a backup; change {})", c.path, c.id)
        }
    };
    Ok(Outcome::ok(text))
}

/// The program and first subcommand of a shell command, for `run_command::<program>::<sub>`
/// approval keys: the first word that is not an assignment, and the next word that is not
/// an option.
pub fn program_and_subcommand(command: &str) -> (Option<String>, Option<String>) {
    let mut words = command
        .split_whitespace()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'));
    let program = words.next().map(|w| {
        w.rsplit('/')
            .next()
            .unwrap_or(w)
            .trim_matches(['"', '\''])
            .to_string()
    });
    let sub = words
        .find(|w| !w.starts_with('-'))
        .map(|w| w.trim_matches(['"', '\'']).to_string());
    (program, sub)
}

/// Whether a command line is one simple command (no pipes, lists, substitutions or
/// redirections): only those may be auto-approved by a `run_command::<program>` key.
pub fn is_simple(command: &str) -> bool {
    !command.contains([';', '|', '&', '$', '`', '>', '<', '(', ')', '\n'])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments() {
        assert!(Call::parse("view", "").is_ok());
        let e = Call::parse("run_command", "{\"command\": ")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the arguments of run_command are not valid JSON ("),
            "{e}"
        );
        let e = Call::parse("run_command", "[1]").unwrap_err().to_string();
        assert_eq!(
            e,
            "the arguments of run_command must be a JSON object, got: [1]"
        );
        let c = Call::parse("run_command", r#"{"command":"ls"}"#).unwrap();
        assert_eq!(c.command(), Some("ls"));
        assert_eq!(
            c.str("nope").unwrap_err().to_string(),
            "run_command needs a string argument `nope`"
        );
    }

    #[test]
    fn approval_keys() {
        assert_eq!(
            program_and_subcommand("git status --short"),
            (Some("git".into()), Some("status".into()))
        );
        assert_eq!(
            program_and_subcommand("LANG=C /usr/bin/kubectl get pods -n x"),
            (Some("kubectl".into()), Some("get".into()))
        );
        assert!(is_simple("git status"));
        assert!(!is_simple("git status; rm -rf /"));
        assert!(!is_simple("echo $(id)"));
        assert_eq!(specs().len(), 12);
    }
}
