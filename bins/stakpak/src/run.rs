//! `stakpak -a PROMPT` / `stakpak run PROMPT`, `-p`, `-s ID --approve …`, and `stakpak
//! sessions list|show`: the non-interactive face of the agent.
//!
//! A run picks its session id itself so it can listen to the session's signals (streamed
//! text, tool calls, state changes) before the agent starts; then it waits until the
//! session stops. Exit status: 0 finished (or waiting for the user's answer, printed), 10
//! paused for approval (`--pause-on-approval`), 2 stopped by `--max-steps`, 1 failed,
//! cancelled or interrupted.

use std::{io::Write, path::Path, process::ExitCode};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use stakpak_proto::{
    AgentProxy, SessionDetail, SessionInfo, SessionState as St, StartRequest, ToolCallInfo,
    ToolCallState, session_path,
};

use crate::{
    locate,
    suite::Layout,
    table::{Column, Table},
};

/// Exit status when a call waits for approval (stakpak's `--pause-on-approval`).
pub const EXIT_PAUSED: u8 = 10;
/// Exit status when the turn limit stopped the session.
pub const EXIT_MAX_TURNS: u8 = 2;

/// Options of a run, from the root command or `stakpak run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Run until done (stakpak's async mode); the default for a prompt given here.
    #[arg(short = 'a', long = "async")]
    pub run_async: bool,
    /// One model turn, then stop.
    #[arg(short = 'p', long = "print")]
    pub print: bool,
    /// Most model turns (default: the profile's max_turns).
    #[arg(short = 'm', long = "max-steps", value_name = "N")]
    pub max_steps: Option<u32>,
    /// Stop with exit status 10 when a tool call needs approval, instead of waiting.
    #[arg(long)]
    pub pause_on_approval: bool,
    /// Continue this session (resume it, answer it, approve its calls).
    #[arg(short = 's', long = "session", value_name = "ID")]
    pub session: Option<String>,
    /// Start a new session from this checkpoint of an earlier one.
    #[arg(short = 'c', long = "checkpoint", value_name = "ID")]
    pub checkpoint: Option<String>,
    /// Approve a waiting tool call of the session (repeatable).
    #[arg(long = "approve", value_name = "CALL_ID")]
    pub approve: Vec<String>,
    /// Reject a waiting tool call of the session (repeatable).
    #[arg(long = "reject", value_name = "CALL_ID")]
    pub reject: Vec<String>,
    /// Approve every waiting tool call of the session.
    #[arg(long)]
    pub approve_all: bool,
    /// Reject every waiting tool call of the session.
    #[arg(long)]
    pub reject_all: bool,
    /// `text` (stream to the terminal) or `json` (the session at the end).
    #[arg(short = 'o', long = "output", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    /// Profile of config.toml (default: `default`).
    #[arg(long, env = "STAKPAK_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// `<provider-key>/<model>` instead of the profile's.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// The project folder: its AGENTS.md and APPS.md are given to the model (default: here).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<std::path::PathBuf>,
}

/// Files of the project folder read as context for the model, at most 64 KiB each.
pub(crate) fn project_context(workdir: &Path) -> String {
    let mut context = String::new();
    for name in ["AGENTS.md", "APPS.md"] {
        let path = workdir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let text: String = text.chars().take(64 * 1024).collect();
            context.push_str(&format!("## {name}\n\n{text}\n"));
        }
    }
    context
}

/// `s-` and 12 random hex digits; no randomness is an error, never an all-zero id.
fn new_id() -> Result<String, stakpak_util::RandomError> {
    stakpak_util::random::id("s")
}

/// A run: start or continue a session and follow it until it stops.
pub fn run(
    prompt: Option<String>,
    args: &RunArgs,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    locate::on_bus(bus_address, layout, async |_, conn| {
        let agent = AgentProxy::new(conn).await?;
        let workdir = match &args.workdir {
            Some(w) => w.clone(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        let prompt = prompt.unwrap_or_default();
        let json = args.output == "json";

        let (id, must_start) = match &args.session {
            Some(id) => {
                let mut restarted = false;
                if args.approve_all || !args.approve.is_empty() {
                    let ids = if args.approve_all {
                        vec![]
                    } else {
                        args.approve.clone()
                    };
                    let done = agent.approve(id.clone(), ids).await?;
                    if !json {
                        for c in &done {
                            eprintln!("approved {} ({})", c.id, c.name);
                        }
                    }
                    restarted = true;
                }
                if args.reject_all || !args.reject.is_empty() {
                    let ids = if args.reject_all {
                        vec![]
                    } else {
                        args.reject.clone()
                    };
                    let done = agent
                        .reject(id.clone(), ids, "rejected by the user".into())
                        .await?;
                    if !json {
                        for c in &done {
                            eprintln!("rejected {} ({})", c.id, c.name);
                        }
                    }
                    restarted = true;
                }
                let info = agent.wait_session(id.clone(), 1).await?;
                let resumable = matches!(
                    info.state,
                    St::Interrupted | St::Failed | St::Cancelled | St::MaxTurns | St::Paused
                ) && info.pending == 0;
                let start = !prompt.is_empty()
                    || (resumable && !restarted)
                    || (resumable && info.state != St::Paused);
                (id.clone(), start && info.state != St::Running)
            }
            None => (new_id().context("cannot make a session id")?, true),
        };

        // Listen before starting, so nothing streamed is missed.
        let path = session_path(&id);
        let session_proxy = AgentProxy::builder(conn).path(path).build().await?;
        let mut deltas = session_proxy.receive_text_delta().await?;
        let mut calls = session_proxy.receive_tool_call().await?;

        if must_start {
            let request = StartRequest {
                prompt: prompt.clone(),
                session: args.session.clone().unwrap_or_default(),
                new_id: if args.session.is_none() {
                    id.clone()
                } else {
                    String::new()
                },
                checkpoint: args.checkpoint.clone().unwrap_or_default(),
                profile: args.profile.clone().unwrap_or_default(),
                model: args.model.clone().unwrap_or_default(),
                workdir: workdir.display().to_string(),
                context: if args.session.is_none() {
                    project_context(&workdir)
                } else {
                    String::new()
                },
                max_steps: args.max_steps.unwrap_or(0),
                pause_on_approval: args.pause_on_approval,
                one_step: args.print,
            };
            agent
                .start(request)
                .await
                .context("the agent did not start the session")?;
        }
        if !json {
            eprintln!("session {id}");
        }

        let mut out = std::io::stdout();
        let mut at_line_start = true;
        let info = loop {
            tokio::select! {
                Some(signal) = deltas.next() => {
                    if let Ok(a) = signal.args() && !json {
                        let _ = out.write_all(a.text.as_bytes());
                        let _ = out.flush();
                        at_line_start = a.text.ends_with('\n');
                    }
                }
                Some(signal) = calls.next() => {
                    if let Ok(a) = signal.args() && !json {
                        if !at_line_start {
                            println!();
                            at_line_start = true;
                        }
                        print_call(&a.call);
                    }
                }
                info = agent.wait_session(id.clone(), 500) => {
                    let info = info?;
                    if info.state == St::Running {
                        continue;
                    }
                    if info.state == St::WaitingApproval {
                        if !json {
                            waiting_hint(&agent, &id).await?;
                        }
                        // Someone approves from elsewhere; keep following.
                        let _ = agent.wait_session(id.clone(), 0).await;
                        continue;
                    }
                    break info;
                }
            }
        };
        // Signals sent just before the state changed may still be queued.
        while let Ok(Some(signal)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), deltas.next()).await
        {
            if let Ok(a) = signal.args()
                && !json
                && !a.text.is_empty()
            {
                let _ = out.write_all(a.text.as_bytes());
                at_line_start = a.text.ends_with('\n');
            }
        }
        let _ = out.flush();
        if json {
            let detail = agent.show_session(id.clone()).await?;
            println!("{}", serde_json::to_string_pretty(&detail_json(&detail))?);
        } else {
            if !at_line_start {
                println!();
            }
            finish_message(&agent, &info).await?;
        }
        Ok(ExitCode::from(exit_code(&info)))
    })
}

fn exit_code(info: &SessionInfo) -> u8 {
    match info.state {
        St::Finished | St::WaitingUser => 0,
        St::Paused if info.pending > 0 => EXIT_PAUSED,
        St::Paused => 0,
        St::MaxTurns => EXIT_MAX_TURNS,
        St::Running | St::WaitingApproval | St::Cancelled | St::Failed | St::Interrupted => 1,
    }
}

fn print_call(call: &ToolCallInfo) {
    let args: String = call.arguments.chars().take(200).collect();
    match call.state {
        ToolCallState::Proposed | ToolCallState::Approved => {}
        ToolCallState::WaitingApproval => eprintln!(
            "⏸ {} {} {args}  (needs approval: {}; id {})",
            call.id, call.name, call.approval, call.id
        ),
        ToolCallState::Running => eprintln!("▶ {} {args}", call.name),
        ToolCallState::Done
        | ToolCallState::Failed
        | ToolCallState::Denied
        | ToolCallState::Rejected => {
            let first: String = call
                .output
                .lines()
                .take(12)
                .collect::<Vec<_>>()
                .join("\n    ");
            eprintln!("  {} {}: {}\n    {first}", call.name, call.state, call.id);
        }
    }
}

async fn waiting_hint(agent: &AgentProxy<'_>, id: &str) -> anyhow::Result<()> {
    let detail = agent.show_session(id.to_string()).await?;
    let waiting: Vec<&ToolCallInfo> = detail
        .tool_calls
        .iter()
        .filter(|c| c.state == ToolCallState::WaitingApproval)
        .collect();
    if !waiting.is_empty() {
        eprintln!(
            "waiting for approval of {}; in another terminal: stakpak -s {id} --approve-all (or --approve ID / --reject ID)",
            waiting
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

async fn finish_message(agent: &AgentProxy<'_>, info: &SessionInfo) -> anyhow::Result<()> {
    let usage = format!(
        "{} turns, {} input and {} output tokens",
        info.turns, info.input_tokens, info.output_tokens
    );
    match info.state {
        St::Finished => eprintln!("session {} finished ({usage})", info.id),
        St::Paused if info.pending > 0 => {
            waiting_hint(agent, &info.id).await?;
            eprintln!(
                "session {} paused: {} call(s) wait for approval; continue with stakpak -s {} --approve-all",
                info.id, info.pending, info.id
            );
        }
        St::WaitingUser => eprintln!(
            "the agent asks: {}\nanswer with: stakpak -s {} \"your answer\"",
            info.reason, info.id
        ),
        _ => eprintln!(
            "session {} {}{} ({usage})",
            info.id,
            info.state,
            if info.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", info.reason)
            }
        ),
    }
    Ok(())
}

fn info_json(i: &SessionInfo) -> serde_json::Value {
    serde_json::json!({
        "id": i.id, "title": i.title, "profile": i.profile, "model": i.model,
        "state": i.state, "reason": i.reason, "created_ms": i.created_ms,
        "updated_ms": i.updated_ms, "turns": i.turns, "input_tokens": i.input_tokens,
        "output_tokens": i.output_tokens, "pending": i.pending, "checkpoint": i.checkpoint,
    })
}

fn detail_json(d: &SessionDetail) -> serde_json::Value {
    serde_json::json!({
        "session": info_json(&d.info),
        "messages": d.messages.iter().map(|m| serde_json::json!({
            "role": m.role, "text": m.text,
            // Comma-separated, as the JSON has always had it.
            "tool_calls": m.tool_calls.join(","), "created_ms": m.created_ms,
        })).collect::<Vec<_>>(),
        "tool_calls": d.tool_calls.iter().map(|c| serde_json::json!({
            "id": c.id, "turn": c.turn, "name": c.name, "arguments": c.arguments,
            "state": c.state, "approval": c.approval, "decision": c.decision, "rule": c.rule,
            "reason": c.reason, "output": c.output, "is_error": c.is_error,
        })).collect::<Vec<_>>(),
    })
}

/// `stakpak sessions list [--json]`.
pub fn list(json: bool, bus_address: Option<&str>, layout: &Layout) -> anyhow::Result<ExitCode> {
    let sessions = locate::on_bus(bus_address, layout, async |_, conn| {
        let agent = AgentProxy::new(conn).await?;
        agent.list_sessions().await.map_err(anyhow::Error::from)
    })?;
    if json {
        let list: Vec<_> = sessions.iter().map(info_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_sessions(&sessions));
    Ok(ExitCode::SUCCESS)
}

/// The table of `stakpak sessions list`.
fn render_sessions(sessions: &[SessionInfo]) -> String {
    if sessions.is_empty() {
        return "no sessions\n".into();
    }
    let mut table = Table::new(
        1,
        [
            Column::fixed("ID", 16),
            Column::fixed("STATE", 17),
            Column::fixed("TURNS", 5).right(),
            Column::fixed("TOKENS", 9).right(),
            Column::fixed("PROFILE", 10),
            Column::fit("TITLE"),
        ],
    );
    for s in sessions {
        table.row([
            s.id.clone(),
            s.state.to_string(),
            s.turns.to_string(),
            (s.input_tokens + s.output_tokens).to_string(),
            s.profile.clone(),
            s.title.clone(),
        ]);
    }
    table.render()
}

/// `stakpak sessions cancel ID`.
pub fn cancel(id: &str, bus_address: Option<&str>, layout: &Layout) -> anyhow::Result<ExitCode> {
    let info = locate::on_bus(bus_address, layout, async |_, conn| {
        let agent = AgentProxy::new(conn).await?;
        agent
            .cancel(id.to_string())
            .await
            .map_err(anyhow::Error::from)
    })?;
    println!("session {} {}", info.id, info.state);
    Ok(ExitCode::SUCCESS)
}

/// `stakpak sessions show ID [--json]`.
pub fn show(
    id: &str,
    json: bool,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    let detail = locate::on_bus(bus_address, layout, async |_, conn| {
        let agent = AgentProxy::new(conn).await?;
        agent
            .show_session(id.to_string())
            .await
            .map_err(anyhow::Error::from)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&detail_json(&detail))?);
        return Ok(ExitCode::SUCCESS);
    }
    let i = &detail.info;
    println!(
        "session {} — {} ({}), profile {}, model {}\n{} turns, {} input / {} output tokens, checkpoint {}",
        i.id,
        i.state,
        i.reason,
        i.profile,
        i.model,
        i.turns,
        i.input_tokens,
        i.output_tokens,
        i.checkpoint
    );
    for m in &detail.messages {
        println!("\n[{}] {}", m.role, m.text.trim_end());
    }
    if !detail.tool_calls.is_empty() {
        println!("\ntool calls:");
        for c in &detail.tool_calls {
            println!(
                "  {} {} {} {}{}",
                c.id,
                c.name,
                c.state,
                c.arguments.chars().take(120).collect::<String>(),
                if c.rule.is_empty() {
                    String::new()
                } else {
                    format!(" [{} {}]", c.decision, c.rule)
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks that a run has something to do.
pub fn check(prompt: Option<&str>, args: &RunArgs) -> anyhow::Result<()> {
    if prompt.is_none_or(|p| p.trim().is_empty())
        && args.session.is_none()
        && args.checkpoint.is_none()
    {
        bail!("give a prompt, or -s SESSION to continue one");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_table() {
        assert_eq!(render_sessions(&[]), "no sessions\n");
        let sessions = [
            SessionInfo {
                id: "s-0a1b2c3d4e5f".into(),
                title: "why is web slow?".into(),
                profile: "default".into(),
                state: St::WaitingApproval,
                turns: 3,
                input_tokens: 1200,
                output_tokens: 34,
                ..SessionInfo::default()
            },
            SessionInfo {
                id: "nightly-disk-check-with-a-long-id".into(),
                title: "df".into(),
                profile: "a-long-profile".into(),
                state: St::Finished,
                turns: 123_456,
                input_tokens: 9_999_999_999,
                ..SessionInfo::default()
            },
        ];
        assert_eq!(
            render_sessions(&sessions),
            "ID               STATE             TURNS    TOKENS PROFILE    TITLE\n\
             s-0a1b2c3d4e5f   waiting-approval      3      1234 default    why is web slow?\n\
             nightly-disk-check-with-a-long-id finished          123456 9999999999 a-long-profile df\n"
        );
    }
}
